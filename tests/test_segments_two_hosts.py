"""A simulated second host reading the segments directory, driven with random interleavings.

:class:`OtherHostView` materialises, in a directory of its own, what another host's client of
a network filesystem may show of the writer's segments directory: new names appear late,
a new file is first seen torn (part of its bytes), a removed file lingers as a stale entry
(its old bytes, or a name that no longer opens: ENOENT), all at random. The real reader
(:class:`Mirror`) reads that view, unpatched. Writer and reader restart at random steps.
Asserted at every step: the private copy is an exact prefix of the journal (no torn record,
no seq skipped); after the end: exactly the journal.
"""

from __future__ import annotations

import os
import random
import shutil

import pytest

from comet_journal import Experiment
from comet_journal.recorder.sealing import Sealer
from comet_journal.uploader.journal.mirror import Mirror
from journal_helpers import call_rows


class OtherHostView:
    """Another host's view of ``source`` in ``directory``, advanced one :meth:`step` at a
    time; ``settle`` makes it exact (the caches expired)."""

    def __init__(self, source: str, directory: str, rng: random.Random):
        self.source, self.directory, self.rng = source, directory, rng
        os.makedirs(directory, exist_ok=True)
        self.pending: dict[str, int] = {}  # new name -> steps before it shows
        self.torn: dict[str, int] = {}  # shown torn -> steps before the whole file shows
        self.stale: dict[str, int] = {}  # removed at the source -> steps before it goes

    def step(self) -> None:
        real = {n for n in os.listdir(self.source) if not n.endswith(".tmp")}
        shown = set(os.listdir(self.directory))
        for name in real - shown - set(self.pending):
            self.pending[name] = self.rng.choice([0, 0, 1, 2])
        for name, left in list(self.pending.items()):
            if left > 0:
                self.pending[name] = left - 1
                continue
            del self.pending[name]
            if name.endswith(".seg") and self.rng.random() < 0.4:
                self._copy(name, torn=True)
                self.torn[name] = self.rng.choice([1, 2])
            else:
                self._copy(name)
        for name, left in list(self.torn.items()):
            if left > 0:
                self.torn[name] = left - 1
            elif name in real:
                del self.torn[name]
                self._copy(name)
        for name in shown - real:
            if name not in self.stale:
                self.stale[name] = self.rng.choice([0, 1, 3])
                if self.rng.random() < 0.5:  # the name lingers but no longer opens
                    os.remove(self._at(name))
                    os.symlink(os.path.join(self.source, name), self._at(name))
        for name, left in list(self.stale.items()):
            if left > 0:
                self.stale[name] = left - 1
            else:
                del self.stale[name]
                if os.path.lexists(self._at(name)):
                    os.remove(self._at(name))
        for name in ("heartbeat", "ended"):
            if name in real and name not in self.pending:
                self._copy(name)

    def settle(self) -> None:
        shutil.rmtree(self.directory)
        shutil.copytree(self.source, self.directory,
                        ignore=lambda _d, names: [n for n in names if n.endswith(".tmp")])
        for cache in (self.pending, self.torn, self.stale):
            cache.clear()

    def _at(self, name: str) -> str:
        return os.path.join(self.directory, name)

    def _copy(self, name: str, torn: bool = False) -> None:
        try:
            with open(os.path.join(self.source, name), "rb") as f:
                data = f.read()
        except FileNotFoundError:  # gone meanwhile (merged away)
            return
        if torn:
            data = data[: self.rng.randrange(1, max(2, len(data)))]
        tmp = self._at(name) + ".view"
        with open(tmp, "wb") as f:
            f.write(data)
        if os.path.lexists(self._at(name)):
            os.remove(self._at(name))
        os.rename(tmp, self._at(name))




@pytest.mark.parametrize("seed", range(6))
def test_random_interleavings_never_tear_skip_or_duplicate(tmp_path, seed):
    rng = random.Random(seed)
    path = str(tmp_path / "host-a" / "run.db")
    exp = Experiment(journal=path, project_name="p", workspace="w")
    exp.flush()
    sealer = Sealer(path, fanout=3)
    view = OtherHostView(sealer.directory, str(tmp_path / "host-b-view"), rng)
    copy = str(tmp_path / "host-b-state" / "copy.db")
    mirror = Mirror(view.directory, copy)
    step = 0
    for _ in range(40):
        for _ in range(rng.randrange(0, 15)):
            exp.log_metric("loss", rng.random(), step=step)
            step += 1
        exp.flush()
        if rng.random() < 0.1:  # the writer's sealer dies and a new one takes over
            sealer = Sealer(path, fanout=3)
        if rng.random() < 0.8:
            sealer.seal_now()
        view.step()
        if rng.random() < 0.1:  # the reader restarts
            mirror = Mirror(view.directory, copy)
        if rng.random() < 0.7:
            mirror.update()
        got, journal = call_rows(copy), call_rows(path)
        assert got == journal[: len(got)]  # an exact prefix: nothing torn, nothing skipped
    exp.end()
    sealer.close()
    for _ in range(4):
        view.step()
        mirror.update()
    view.settle()
    mirror.update()
    assert call_rows(copy) == call_rows(path) and mirror.ended()
