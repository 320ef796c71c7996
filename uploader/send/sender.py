"""Sending one job (a call, a batch of calls, a metric group) exactly once.

Runs in the replay's worker threads; built from the collaborators it uses, never from the
replay. A call that an earlier run may have sent is read back first (only what the server
lacks is sent); an experiment's creation goes through :class:`~.create.Creator`; batches and
metric groups through :class:`~.batches.BatchSender`; everything else through the one retry
loop (:meth:`Link.exchange`), whose ambiguous failures are read back before any resend.

Parking: a metric point or system sample whose request failed after leaving (applied or
not?) is not read back at once: the job ends ``in_doubt`` and its points join the next pass
of their series (:meth:`ReadBack.park`); when the dispatcher sends the unit again, that one
pass (read once for every unit parked meanwhile) decides, and only what the server lacks is
sent.
"""

from __future__ import annotations

from comet_journal.schema.blobs import MissingBlobError
from comet_journal.schema.catalogue import ENDPOINTS, POINTS_3D
from comet_journal.uploader.errors import JournalDamagedError
from comet_journal.uploader.journal.calls import Call
from comet_journal.uploader.journal.groups import MetricGroup
from comet_journal.uploader.journal.progress import ExperimentTarget
from comet_journal.uploader.send.batches import FOUND, BatchSender
from comet_journal.uploader.send.context import SendContext
from comet_journal.uploader.send.create import Creator
from comet_journal.uploader.send.points3d import Points3DSender
from comet_journal.uploader.send.readback import ReadBack
from comet_journal.uploader.wire.capabilities import Capabilities
from comet_journal.uploader.wire.exchange import Link, Outcome
from comet_journal.uploader.wire.requests import BuiltRequest, RequestBuilder


class Sender:
    """Sends jobs to one server. ``send(job, target)`` returns an :class:`Outcome`."""

    def __init__(self, link: Link, context: SendContext, builder: RequestBuilder,
                 readback: ReadBack, capabilities: Capabilities):
        self.link = link
        self.context = context
        self.builder = builder
        self.readback = readback
        self.capabilities = capabilities
        self.creator = Creator(link, context, builder, readback, capabilities)
        # a call of a batch job settles inside that job: never parked
        self.batches = BatchSender(link, context, readback, capabilities,
                                   lambda call, target: self._send_call(call, target, False))
        self.points3d = Points3DSender(link, context, builder, readback)

    def send(self, job, target: ExperimentTarget | None) -> Outcome:
        if self.context.may_be_on_server(_experiment_of(job)):
            _mark_maybe_sent(job)  # uploaded from another copy: read back before sending
        try:
            self.readback.stamp(job)
            if isinstance(job, list):
                if self.readback.is_parked(target.server_key if target else None, job[0].seq):
                    return self._resolve_parked(job, target)
                return self.batches.send(job, target)
            if isinstance(job, MetricGroup):
                return self.batches.send_group(job, target)
            if job.endpoint == "experiment_create":
                return self.creator.create(job, target)
            return self._send_call(job, target)
        except MissingBlobError as exc:
            raise JournalDamagedError(
                self.context.journal_path, f"{job_label(job)}: MissingBlobError: {exc}",
                "the journal was altered or damaged after it was written: upload an intact "
                "copy (a backup) instead; the calls acknowledged so far stay recorded") from None

    def _send_call(self, call: Call, target: ExperimentTarget | None,
                   may_park: bool = True) -> Outcome:
        """One call; ``may_park``: it is a job of its own (its outcome may be ``in_doubt``)."""
        why = self.capabilities.not_sendable(call.endpoint)
        if why:  # an SDK route this server lacks: kept pending, counted, never an error loop
            return Outcome(ok=False, held=True, message=why)
        key = target.server_key if target else None
        readback = self.readback
        park = False
        if readback.is_parked(key, call.seq):  # back from parking: its pass decides
            if readback.applied_many([call], key, parked=call.seq)[0]:
                self.link.gate.ok()  # progress: the call is settled
                return Outcome(ok=True, found=True)
        elif call.maybe_sent and readback.applied(call, key):
            self.link.gate.ok()  # progress: the call is settled
            return Outcome(ok=True, found=True)
        else:
            park = may_park and readback.can_park(call, key)

        def build() -> BuiltRequest:
            return self.builder.build(call.endpoint, call.payload, server_key=key,
                                      ts_ms=call.ts_ms)

        self._resolve_projects(call)
        if call.endpoint == POINTS_3D:  # a compound call: its steps read themselves back
            outcome = self.points3d.send(call, key)
        else:
            outcome = self.link.exchange(build, self.context.idempotency_key(call.seq),
                                         call.label(),
                                         on_ambiguous=lambda: readback.applied(call, key, True),
                                         park=park)
            if outcome.in_doubt:  # resolved when the dispatcher sends it again
                readback.park([call], key, call.seq)
                return outcome
        if outcome.status == 404 and not ENDPOINTS[call.endpoint].documented:
            self.capabilities.route_gone(call.endpoint)
            return Outcome(ok=False, held=True, status=404, attempts=outcome.attempts,
                           message=self.capabilities.not_sendable(call.endpoint) or "")
        if outcome.ok and not outcome.found:
            readback.note_sent([call], key)
        if outcome.ok and call.endpoint == "project_create":
            self._learn_project_id(call, outcome)
        return outcome

    def _resolve_parked(self, units: list, target: ExperimentTarget) -> Outcome:
        """Parked units (calls, metric groups) of one endpoint, back together (the
        dispatcher bundles them): their passes say which rows the server has, with one
        journal query for all; the others are sent again (a group's as a batch, a call
        alone; read back at once if that fails too). ``parts``: a verdict per unit (a
        group's with a verdict per row)."""
        calls, owners = [], []
        for unit in units:
            mine = unit.calls() if isinstance(unit, MetricGroup) else [unit]
            calls.extend(mine)
            owners.extend([unit.seq] * len(mine))
        found = self.readback.applied_many(calls, target.server_key, parked=owners)
        totals, parts = Outcome(ok=True), []
        at = 0
        for unit in units:
            size = len(unit.seqs) if isinstance(unit, MetricGroup) else 1
            mine, flags = calls[at:at + size], found[at:at + size]
            at += size
            verdicts = [(call, FOUND) for call, f in zip(mine, flags) if f]
            rest = [call for call, f in zip(mine, flags) if not f]
            if verdicts:
                self.link.gate.ok()  # progress: calls settled
            if isinstance(unit, MetricGroup):
                again = self.batches.send(rest, target) if rest else Outcome(ok=True, parts=[])
                totals.add_counts(again)
                parts.append((unit, Outcome(ok=True, batch=again.batch,
                                            parts=verdicts + again.parts)))
            elif rest:
                again = self._send_call(unit, target, False)
                totals.add_counts(again)
                parts.append((unit, again))
            else:
                parts.append((unit, verdicts[0][1]))
        totals.parts = parts
        return totals

    def _learn_project_id(self, call: Call, outcome: Outcome) -> None:
        data = outcome.answer.json() if outcome.answer is not None else None
        pid = data.get("projectId") if isinstance(data, dict) else None
        if pid:
            p = self.builder.overrides.apply(ENDPOINTS["project_create"], call.payload)
            self.context.project_ids[(p["workspaceName"], p["projectName"])] = pid
            outcome.project_id = (p["workspaceName"], p["projectName"], pid)

    def _resolve_projects(self, call: Call) -> None:
        """A call naming a project by ``{"$project": ...}`` needs the server's project id."""
        ref = call.payload.get("projectId")
        if not (isinstance(ref, dict) and "$project" in ref):
            return
        payload = self.builder.overrides.apply(ENDPOINTS[call.endpoint], call.payload)
        inner = payload["projectId"]["$project"]
        ws, name = inner["workspaceName"], inner["projectName"]
        if (ws, name) not in self.context.project_ids:
            pid = self.readback.project_id(ws, name)
            if pid:
                self.context.project_ids[(ws, name)] = pid


def job_label(job) -> str:
    if isinstance(job, list):
        return f"batch of {len(job)} {job[0].endpoint} calls from call {job[0].seq}"
    return job.label()


def _experiment_of(job) -> int | None:
    return job[0].experiment_id if isinstance(job, list) else job.experiment_id


def _mark_maybe_sent(job) -> None:
    for unit in job if isinstance(job, list) else [job]:
        unit.maybe_sent = True
