"""The replay against a destination that is not HTTP: the channel contract, kept in memory.

A real journal (written by the recorder) is replayed by the real Replayer (threads, progress,
scheduler, ledger), but jobs go to an in-memory channel: what the contract promises a
destination is what these tests check, with no server pretending to be Comet.
"""

from __future__ import annotations

import threading

from comet_journal import Experiment
from comet_journal.uploader.config import resolve
from comet_journal.uploader.errors import Stopped
from comet_journal.uploader.replay.replayer import Replayer
from comet_journal.uploader.replay.summary import Options
from comet_journal.uploader.send.context import SendContext
from comet_journal.uploader.wire.capabilities import Capabilities
from comet_journal.uploader.wire.exchange import Outcome

CONFIG = resolve(api_key="memory-key", url="http://memory.invalid")


class MemoryChannel:
    """Keeps every delivered call; creations get the journal's own key."""

    def __init__(self, context: SendContext, delivered: list, refuse: set[str],
                 stop_after: int | None, stop: threading.Event | None):
        self.context = context
        self.delivered = delivered
        self.refuse = refuse
        self.stop_after = stop_after
        self.stop = stop
        self.capabilities = Capabilities(clientlib=True)
        self.lock = threading.Lock()
        self.local = threading.local()

    def create_method(self, target) -> str:
        return "memory"

    def begin_job(self) -> None:
        self.local.sent = False

    def job_sent(self) -> bool:
        return self.local.sent

    def send(self, job, target) -> Outcome:
        calls = job if isinstance(job, list) else [job]
        with self.lock:
            if self.stop_after is not None and len(self.delivered) >= self.stop_after:
                self.stop.set()  # the user stops the upload (Ctrl-C, a time slice)
                raise Stopped()  # before anything of this job left: it stays pending
            self.local.sent = True
            parts = []
            for call in calls:
                if call.endpoint in self.refuse:
                    parts.append((call, Outcome(ok=False, status=400, message="refused here")))
                    continue
                self.delivered.append((call.seq, call.endpoint, target.server_key
                                       if target else None))
                parts.append((call, Outcome(ok=True)))
        out = Outcome(ok=all(o.ok for _c, o in parts), parts=parts)
        if calls[0].endpoint == "experiment_create" and out.ok:
            out.server_key = self.context.experiment_keys[calls[0].experiment_id]
            out.method = "memory"
        return out


class MemoryDestination:
    url = "memory:"

    def __init__(self, refuse: set[str] = frozenset(), stop_after: int | None = None,
                 stop: threading.Event | None = None):
        self.delivered: list = []
        self.refuse = set(refuse)
        self.stop_after = stop_after
        self.stop = stop
        self.closed = False

    def connect(self, context: SendContext) -> MemoryChannel:
        return MemoryChannel(context, self.delivered, self.refuse, self.stop_after, self.stop)

    def close(self) -> None:
        self.closed = True


def _journal(path, points: int = 50) -> str:
    with Experiment(journal=str(path), project_name="p", workspace="w") as exp:
        exp.log_parameter("lr", 0.1)
        for i in range(points):
            exp.log_metric("loss", 1.0 / (i + 1), step=i)
        exp.log_parameter("lr", 0.2)
        exp.log_other("note", "x")
    return str(path)


def test_every_call_reaches_the_destination_once_creation_first(tmp_path):
    path = tmp_path / "run.db"
    _journal(path)
    dest = MemoryDestination()
    summary = Replayer(str(path), CONFIG, Options(concurrency=4), destination=dest).run()
    seqs = [d[0] for d in dest.delivered]
    assert len(set(seqs)) == len(seqs) == summary.total == summary.uploaded  # all, once
    assert dest.delivered[0][1] == "experiment_create"  # nothing before the creation
    assert all(d[2] for d in dest.delivered[1:])  # the rest carried the server key
    lr = [d[0] for d in dest.delivered if d[1] == "log_parameter"]
    assert lr == sorted(lr)  # one ordered stream: in journal order
    assert dest.closed
    again = MemoryDestination()
    second = Replayer(str(path), CONFIG, Options(), destination=again).run()
    assert again.delivered == [] and second.pending == 0  # progress is kept


def test_rejections_from_the_channel_are_recorded_and_not_resent(tmp_path):
    path = tmp_path / "run.db"
    _journal(path, points=5)
    dest = MemoryDestination(refuse={"log_other"})
    summary = Replayer(str(path), CONFIG, Options(), destination=dest).run()
    assert [r["endpoint"] for r in summary.rejected] == ["log_other"]
    assert summary.rejected[0]["message"] == "refused here"
    again = MemoryDestination()
    assert Replayer(str(path), CONFIG, Options(), destination=again).run().pending == 0
    assert again.delivered == []


def test_a_job_stopped_before_it_left_stays_pending_and_is_sent_later(tmp_path):
    path = tmp_path / "run.db"
    _journal(path, points=40)
    stop = threading.Event()
    first = MemoryDestination(stop_after=10, stop=stop)
    summary = Replayer(str(path), CONFIG, Options(concurrency=1, stop=stop),
                       destination=first).run()
    assert 0 < len(first.delivered) <= 10 and summary.uploaded == len(first.delivered)
    assert summary.more_pending
    rest = MemoryDestination()
    Replayer(str(path), CONFIG, Options(), destination=rest).run()
    both = [d[0] for d in first.delivered] + [d[0] for d in rest.delivered]
    assert sorted(both) == sorted(set(both)) and len(both) == summary.total
