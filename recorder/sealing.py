"""Writer-side sealing: the host writing a journal turns what it committed into sealed
segments (:mod:`comet_journal.schema.segments`) every ``interval_s``, so readers on other
hosts never open the live SQLite file.

:class:`Sealer` runs one daemon thread per journal:

* every tick it seals the rows committed since the last segment (nothing new: no file), and
  bumps the heartbeat (``heartbeat`` in the segments directory: a counter, written under a
  temporary name and renamed; readers compare it on their own clock, never across hosts'
  clocks);
* compaction by levels: ``fanout`` consecutive segments of one level are merged into one of
  the next level (like carries in a counter), so the file count grows with the logarithm of
  the run's length (a day of 1 s seals: about 40 files) and each row is rewritten only a
  few times;
* :meth:`close` seals the rest, merges everything into one segment and writes ``ended``
  (the run's end, as the recorder saw it).

Sealing reads the live journal read-only on the writer's host (where WAL is safe), attached
to the new segment, and SQLite copies the rows (no Python work per row: the thread shares the
training loop's process); it never blocks the writer for longer than a read snapshot. A failure to seal
(a full disk, a vanished directory) is reported once on the ``comet_journal`` logger and
retried at the next tick: the journal itself stays the durable copy.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid

from comet_journal.recorder.validation import boolean
from comet_journal.schema.segments import (ENDED_FILE_NAME, ENDED_WRITERS_PREFIX,
                                           HEARTBEAT_FILE_NAME,
                                           SegmentNotReady, Watermark, chain, list_segments,
                                           merge, read_segment, seal, segments_dir,
                                           watermark_of)

logger = logging.getLogger("comet_journal")

# Below 1 s, with ticks at a fixed rate: a call committed more than 1 s before a SIGKILL is
# sealed even when the seal itself takes a while (the loss window the README promises).
DEFAULT_INTERVAL_S = 0.8
DEFAULT_FANOUT = 8


class Sealer:
    """Seals ``journal_path`` into ``<journal_path>.segments/``; call :meth:`start`, then
    :meth:`close` at the run's end (or :meth:`stop` to stop without recording an end)."""

    def __init__(self, journal_path: str, interval_s: float = DEFAULT_INTERVAL_S,
                 fanout: int = DEFAULT_FANOUT):
        self.journal_path = os.fspath(journal_path)
        self.directory = segments_dir(self.journal_path)
        self.interval_s = interval_s
        self.fanout = max(2, fanout)
        # Names this process's segments: two processes writing one journal (DDP ranks
        # sharing a run) each seal it, and neither replaces nor compacts the other's files.
        self.writer = uuid.uuid4().hex[:12]
        self.levels: dict[str, int] = {}  # this writer's segment path -> compaction level
        self.ended_writer_keys: set[str] = set()  # journal writers this process ended
        os.makedirs(self.directory, exist_ok=True)
        self.mark = _resume_mark(self.directory)
        self.beats = _read_counter(os.path.join(self.directory, HEARTBEAT_FILE_NAME))
        self.sealed = 0  # segments sealed by this process
        self._stop = threading.Event()
        self._lock = threading.Lock()  # one seal at a time (tick, close, SIGTERM)
        self._thread = threading.Thread(target=self._run, name="comet_journal.sealer",
                                        daemon=True)
        self._failed = False

    def start(self) -> "Sealer":
        self._thread.start()
        return self

    def seal_now(self) -> str | None:
        """Seal what is committed now; return the new segment's path (None: nothing new)."""
        with self._lock:
            self.mark, path = seal(self.journal_path, self.directory, self.mark, self.writer)
            if path:
                self.sealed += 1
                self.levels[path] = 0
                self._compact()
            self.beats += 1
            _write_atomically(os.path.join(self.directory, HEARTBEAT_FILE_NAME), str(self.beats))
            return path

    def _compact(self) -> None:
        """Merge ``fanout`` consecutive segments of this writer's newest level into one of the
        next level (like carries in a counter); another writer's files are never touched."""
        self.levels = {p: lv for p, lv in self.levels.items() if os.path.exists(p)}
        while True:
            own = sorted((s for s in list_segments(self.directory) if s.path in self.levels),
                         key=lambda s: s.last)
            if not own:
                return
            level = self.levels[own[-1].path]
            tail = [own[-1]]
            for segment in reversed(own[:-1]):
                if self.levels[segment.path] != level or segment.last + 1 != tail[0].first:
                    break
                tail.insert(0, segment)
            if len(tail) < self.fanout:
                return
            try:
                merged = merge(tail, level + 1, self.writer, trusted=True)
            except SegmentNotReady:  # a part removed by another writer's end: next tick
                return
            for part in tail:
                self.levels.pop(part.path, None)
            self.levels[merged] = level + 1

    def _run(self) -> None:
        # Ticks at a fixed rate (not a pause after each seal): a slow seal does not push the
        # next one later, so what is committed waits at most one interval to be sealed.
        next_tick = time.monotonic() + self.interval_s
        while not self._stop.wait(max(0.0, next_tick - time.monotonic())):
            next_tick = max(next_tick + self.interval_s, time.monotonic())
            try:
                self.seal_now()
                self._failed = False
            except Exception as exc:  # a background thread never raises into the run
                if not self._failed:
                    logger.warning("comet_journal: sealing %s failed (retrying): %s",
                                   self.journal_path, exc)
                self._failed = True

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def record_ended_writer(self, writer_key: str) -> None:
        """Publish (temp name, fsync, rename) every writer key this process has ended."""
        with self._lock:
            self.ended_writer_keys.add(writer_key)
            _write_atomically(os.path.join(self.directory, ENDED_WRITERS_PREFIX + self.writer),
                              "\n".join(sorted(self.ended_writer_keys)) + "\n")

    def close(self, timeout: float = 5.0) -> None:
        """The run ended: seal the rest, merge the whole chain into one segment (leftovers
        covered by it removed), record the end."""
        self.stop(timeout)
        for _attempt in range(3):  # another writer of this journal may compact under us
            try:
                self.seal_now()
                with self._lock:
                    segments = chain(self.directory)
                    if len(segments) > 1:
                        self.levels[merge(segments, 1, self.writer)] = 1
                    _remove_covered(self.directory, segments[-1].last if segments else 0)
                break
            except SegmentNotReady:
                continue
        with self._lock:
            ended = os.path.join(self.directory, ENDED_FILE_NAME)
            _write_atomically(ended, str(max(self.mark.seq, _read_counter(ended))))


def _remove_covered(directory: str, end: int) -> None:
    """Remove segments outside the chain whose seqs it covers (duplicates sealed by another
    process writing the same journal, a merge's parts left by a kill)."""
    in_chain = set(chain(directory))
    for segment in list_segments(directory):
        if segment not in in_chain and segment.last <= end:
            _remove(segment.path)


def _resume_mark(directory: str) -> Watermark:
    """Where sealing goes on after a restart: the end of the sealed chain."""
    segments = chain(directory)
    if not segments:
        return Watermark()
    try:
        return watermark_of(read_segment(segments[-1].path)[0])
    except SegmentNotReady:
        return Watermark()


def _read_counter(path: str) -> int:
    try:
        with open(path) as f:
            return int(f.read().strip() or 0)
    except (OSError, ValueError):
        return 0


def _write_atomically(path: str, text: str) -> None:
    tmp = f"{path}.{uuid.uuid4().hex[:8]}.tmp"
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _remove(path: str) -> None:
    try:
        os.remove(path)
    except FileNotFoundError:
        pass


# --- one sealer per journal in this process, when segments are on ---------------------------

SEGMENTS_ENV = "COMET_JOURNAL_SEGMENTS"  # "1": every run seals; "0": none; unset: directory runs
_ACTIVE: dict[str, list] = {}  # journal path -> [sealer, experiments using it]
_ACTIVE_LOCK = threading.Lock()
_ON, _OFF = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def segments_enabled(choice: bool | None = None, directory_run: bool = False) -> bool:
    """Does a run seal segments? ``choice`` (the ``segments`` argument) wins, then
    ``$COMET_JOURNAL_SEGMENTS`` (1/0), else directory runs (``journal="/dir/"``, a shared
    directory of runs) do and single files (``journal="run.db"``, same-host use) do not."""
    if choice is not None:
        return boolean("Experiment", "segments", choice)
    value = os.environ.get(SEGMENTS_ENV, "").strip().lower()
    if value in _ON:
        return True
    if value in _OFF:
        return False
    return directory_run


def acquire(journal_path: str, enabled: bool | None = None) -> Sealer | None:
    """The journal's sealer, started (shared by the experiments of this process writing it);
    None when segments are off (``enabled`` None: :func:`segments_enabled` with the
    environment only). Never raises into the caller's run."""
    if not (segments_enabled() if enabled is None else enabled):
        return None
    key = os.path.abspath(journal_path)
    try:
        with _ACTIVE_LOCK:
            entry = _ACTIVE.get(key)
            if entry is None:
                entry = _ACTIVE[key] = [Sealer(key).start(), 0]
            entry[1] += 1
        _end_on_sigterm()
        return entry[0]
    except Exception as exc:  # sealing is an addition: the journal stays the durable copy
        logger.warning("comet_journal: cannot seal segments of %s: %s", journal_path, exc)
        return None


def release(sealer: Sealer | None, ended: bool = True, writer_key: str | None = None) -> None:
    """An experiment is done with the journal; the last one seals the end (``ended``) or
    just stops the thread. ``writer_key``: the experiment's journal writer, ended (its last
    call durable), recorded beside the segments (see ``ENDED_WRITERS_PREFIX``)."""
    if sealer is None:
        return
    if writer_key is not None:
        try:
            sealer.record_ended_writer(writer_key)
        except OSError as exc:  # then the run reads as stale, never wrongly finished
            logger.warning("comet_journal: recording the end of %s failed: %s",
                           sealer.journal_path, exc)
    with _ACTIVE_LOCK:
        entry = _ACTIVE.get(sealer.journal_path)
        if entry is None or entry[0] is not sealer:
            return
        entry[1] -= 1
        if entry[1] > 0:
            return
        del _ACTIVE[sealer.journal_path]
    try:
        if ended:
            sealer.close()
        else:
            sealer.stop()
    except Exception as exc:
        logger.warning("comet_journal: sealing the end of %s failed: %s", sealer.journal_path,
                       exc)


def _end_on_sigterm() -> None:
    """SIGTERM (what SLURM sends before SIGKILL) ends the run cleanly: it becomes SystemExit
    in the main thread, so the experiments end (their end recorded, everything sealed) on
    the way out. Only where nobody handles SIGTERM already, from the main thread."""
    import signal
    if threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        return

    def _exit(signum, _frame):
        signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a second SIGTERM kills at once
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, _exit)
