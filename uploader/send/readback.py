"""Did the server already apply these calls? Asked before resending a call of unknown outcome
(a previous run was killed after sending it, or the connection failed after the request left).

The per-endpoint checks are in :mod:`comet_journal.uploader.send.checks`; this module gives
them the server's read API (through the one retry loop, :meth:`Link.read`) and the journal's
history, and never lets a failing check break the upload: it answers "cannot tell" and the
call is resent.
"""

from __future__ import annotations

import logging
from typing import Any, Callable

from comet_journal.uploader.errors import AuthError, Stopped
from comet_journal.uploader.journal.calls import Call
from comet_journal.uploader.journal.history import History
from comet_journal.uploader.send.checks import CHECKS, NEEDS_NO_EXPERIMENT
from comet_journal.uploader.send.output_length import OutputLength
from comet_journal.uploader.send.series import PointReader, SeriesReads
from comet_journal.uploader.send.signatures import (SERIES_ENDPOINTS, sample_point_sig,
                                                    series_point, server_metric_sig)
from comet_journal.uploader.send.wire_times import WireTimes
from comet_journal.uploader.wire.exchange import READ_PREFIX, Link
from comet_journal.uploader.wire.requests import BuiltRequest, Overrides

logger = logging.getLogger(__name__)


class ReadBack:
    """Read-backs for one replay: the server (``link``), the journal (``history``), and the
    workspace/project overrides the upload applies."""

    def __init__(self, link: Link, history: History, overrides: Overrides):
        self.link = link
        self.history = history
        self.overrides = overrides
        self.wire_times = WireTimes(history)
        self.series = SeriesReads(self._fetch_series, server_metric_sig,
                                  history.sent_at_start)
        # system samples read back as their probe metric's points, by (step, timestamp)
        self.samples = SeriesReads(self._fetch_series, sample_point_sig,
                                   history.sent_at_start)
        self._parked: dict[tuple[str, int], dict] = {}  # (key, unit seq) -> its passes

    def read(self, path: str, **params: Any) -> Any:
        return self.link.read(path, **params)

    def _fetch_series(self, key: str, name: str,
                      make_reader: Callable[[], PointReader]) -> PointReader | None:
        """One metric series, streamed into a fresh reader per attempt (never held whole):
        the reader that took the answer, or None when the server has no such series."""
        query = {"experimentKey": key, "metricName": name}
        out = self.link.exchange(
            lambda: BuiltRequest("GET", READ_PREFIX + "experiment/metrics/get-metric", query,
                                 answer_to=make_reader),
            None, f"read-back of metric {name!r}", write=False)
        return out.answer.streamed if out.ok and out.answer is not None else None

    def output_length(self, key: str) -> int:
        """Characters of the experiment's output on the server, counted as they stream in."""
        out = self.link.exchange(
            lambda: BuiltRequest("GET", READ_PREFIX + "experiment/output",
                                 {"experimentKey": key}, answer_to=OutputLength),
            None, "read-back experiment/output", write=False)
        return out.answer.streamed.length if out.ok and out.answer is not None and \
            out.answer.streamed is not None else 0

    # --- calls in doubt, resolved later together ----------------------------------------

    def can_park(self, call: Call, key: str | None) -> bool:
        """Can a request of unknown outcome for ``call`` be parked and resolved later with
        others (its series read once for all of them)?"""
        return key is not None and call.endpoint in SERIES_ENDPOINTS  # (all positioned)

    def park(self, calls: list[Call], key: str, unit_seq: int) -> None:
        """This run's request for ``calls`` (the unit ``unit_seq``) failed after leaving:
        their points join the next pass of their series, read when the unit comes back
        (:meth:`applied_many` with ``parked=unit_seq``)."""
        wanted: dict[tuple[str, str], tuple[set, set]] = {}
        for call in calls:
            point = series_point(call)
            if point is None:
                continue
            kind, name, sig = point
            hashes, times = wanted.setdefault((kind, name), (set(), set()))
            hashes.add(hash(sig))
            times.add(sig[-1])  # the timestamp, last in both signatures
        passes = {}
        for (kind, name), (hashes, times) in wanted.items():
            reads = self.series if kind == "metrics" else self.samples
            passes[(kind, name)] = reads.park(key, name, hashes, times)
        self._parked[(key, unit_seq)] = passes

    def is_parked(self, key: str | None, unit_seq: int) -> bool:
        return (key, unit_seq) in self._parked

    def stamp(self, job: Any) -> None:
        """Give the calls of a job their wire times (:mod:`.wire_times`)."""
        for call in job if isinstance(job, list) else (job,):
            if isinstance(call, Call):
                self.wire_times.stamp(call)

    def note_sent(self, calls: list[Call], key: str | None) -> None:
        """This run's requests applied ``calls`` (acked): series snapshots count them."""
        if key is None:
            return
        for call in calls:  # only calls an earlier run may have sent matter to snapshots
            if call.seq > self.series.sent_at_start:
                continue
            point = series_point(call)
            if point is not None:
                kind, name, sig = point
                reads = self.series if kind == "metrics" else self.samples
                reads.note_applied(key, name, sig, call.seq)

    def applied(self, call: Call, key: str | None, fresh: bool = False) -> bool | None:
        return self.applied_many([call], key, fresh)[0]

    def applied_many(self, calls: list[Call], key: str | None, fresh: bool = False,
                     parked: int | list[int] | None = None) -> list[bool | None]:
        """Verdicts for calls of one endpoint, in order (a batch, a single call, calls that
        were parked); ``None`` means "cannot tell". ``fresh``: this run sent them and the
        outcome is unknown (the server must be read after that); else an earlier run may
        have sent them. ``parked``: the unit they were parked as (:meth:`park`), or each
        call's: their passes answer them."""
        endpoint = calls[0].endpoint
        check = CHECKS[endpoint]
        doubt = None
        if parked is not None:
            units = [parked] * len(calls) if isinstance(parked, int) else parked
            passes = {u: self._parked.pop((key, u), {}) for u in set(units)}
            doubt = [passes[u] for u in units]
        if check is None or (key is None and endpoint not in NEEDS_NO_EXPERIMENT):
            return [None] * len(calls)
        try:
            return check(_Asking(self, fresh or doubt is not None, doubt), calls, key)
        except (AuthError, Stopped):
            raise
        except Exception as exc:  # a read-back must never break the upload: resend instead
            logger.warning("read-back of %s failed (%s); sending it again", calls[0].label(),
                           exc)
            return [None] * len(calls)

    def find_experiment(self, payload: dict, claimed: set[str]) -> tuple[str, str | None] | None:
        """An experiment an interrupted ``write/experiment/create`` made: in the project, not
        claimed by this journal, with the journal's name."""
        data = self.read("experiments", workspaceName=payload.get("workspaceName"),
                         projectName=payload.get("projectName")) or {}
        for exp in data.get("experiments") or []:
            key = exp.get("experimentKey")
            if not key or key in claimed:
                continue
            if (exp.get("experimentName") or None) != (payload.get("experimentName") or None):
                continue
            logger.info("found experiment %s made by an interrupted create", key)
            return key, exp.get("link")
        return None

    def project_id(self, workspace: str, project: str) -> str | None:
        data = self.read("project", workspaceName=workspace, projectName=project)
        return data.get("projectId") if isinstance(data, dict) else None

    def experiment_named(self, key: str, name: str) -> bool:
        data = self.read("experiment/metadata", experimentKey=key)
        return isinstance(data, dict) and data.get("experimentName") == name


class _Asking:
    """The read-back as one check sees it: with whether its answer must be fresh."""

    def __init__(self, readback: ReadBack, fresh: bool, doubt: list | None = None):
        self._readback = readback
        self.fresh = fresh
        self.doubt = doubt  # per call: (kind, series name) -> the pass it was parked into

    def __getattr__(self, name: str) -> Any:
        return getattr(self._readback, name)
