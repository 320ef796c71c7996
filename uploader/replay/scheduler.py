"""The replay's scheduler: which units may go to the server now. Pure: no threads, no I/O.

A *unit* is a journal call (:class:`~comet_journal.uploader.journal.calls.Call`) or a metric
group (:class:`~comet_journal.uploader.journal.groups.MetricGroup`); anything with ``seq``,
``kind``, ``experiment_id``, ``stream``, ``endpoint``, ``payload``, ``ts_ms`` and ``text``
will do (groups add ``overlaps``). The dispatcher calls:

* :meth:`Scheduler.admit` for each unit read from the journal, in journal order;
* :meth:`Scheduler.release` once a unit's outcome is durable (committed);

and each returns the *actions* that became possible: :class:`Send` a job (a unit, or a list
of calls of one batch stream), :class:`Refuse` a unit without sending it, or
:class:`AlreadyDone` (a creation an earlier run completed). The rules (the orderings are
those of :mod:`comet_journal.schema.ordering`):

* an experiment's calls wait for its creation, whose server key is recorded before they are
  released; calls journaled *before* their experiment's create (another rank of a shared
  experiment may write first) wait for it too, uncounted in the read window
  (:attr:`Scheduler.waiting_rows`); :meth:`Scheduler.take_orphans` hands back those whose
  create never came; barriers (stop/archive/delete/restore) wait for every earlier call of their
  experiment and hold back every later one; global (project) calls do the same for
  everything;
* an ordered stream has one job in flight: its next call goes only after the previous one
  is released (so a crash leaves at most one call per ordered stream of unknown outcome);
* positioned calls go at once (their stream is the whole call: identical calls are
  serialised, so a read-back can count copies);
* calls of a batch stream (output lines; with batches on, parameters and metric points)
  go several per job, one job in flight per stream (lane);
* metric groups of an experiment fly up to ``lanes`` at once, never two sharing a point;
* a unit whose outcome is unknown may be *parked* (:meth:`Scheduler.park`) until it is sent
  again to be resolved (:meth:`Scheduler.unpark`): it frees its group lane, but still holds
  back its barriers, its identical calls (a positioned call's stream) and any group sharing
  a point with it (groups add ``items``, their points).

After :meth:`stop`, nothing more is sent.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable

from comet_journal.schema.ordering import BARRIER, CREATE, GLOBAL

# Whether an endpoint's batch route may be used now.
BatchRoute = Callable[[str], bool]


@dataclass(frozen=True)
class Send:
    job: Any  # a unit, or a list of calls of one batch stream


@dataclass(frozen=True)
class Refuse:
    unit: Any
    reason: str


@dataclass(frozen=True)
class AlreadyDone:
    unit: Any


@dataclass
class ExperimentGate:
    """Ordering state of one experiment."""

    created: bool  # its server key is known (and recorded)
    outstanding: int = 0  # admitted, not released, not barriers
    barrier: Any = None  # the create or barrier every later call waits for
    barrier_sent: bool = False
    blocked: deque = field(default_factory=deque)
    create_rejected: str | None = None
    create_seen: bool = False  # its create was admitted (in this replay, or done earlier)
    awaiting_create: list = field(default_factory=list)  # journaled before the create


class Stream:
    __slots__ = ("waiting", "inflight", "batch", "flying", "parked", "parked_items")

    def __init__(self, batch: bool = False, groups: bool = False):
        self.waiting: deque = deque()
        self.inflight = 0
        self.batch = batch
        self.flying: list | None = [] if groups else None  # a group stream's groups in flight
        self.parked: list = []  # groups of unknown outcome, parked (not in flight)
        self.parked_items: set = set()  # their points: no group sharing one may go


class Scheduler:
    """Ordering state of one replay.

    :param experiments: journal experiment id -> whether it is already created on the server.
    :param lanes: batch jobs (and metric groups) in flight per experiment.
    :param batch_size: calls per batch job at most.
    :param batch_route: whether an endpoint's batch route may be used now (batches may be
        switched off mid-run); ``None``: no batches (output lines still travel together).
    """

    def __init__(self, experiments: dict[int, bool], lanes: int = 1, batch_size: int = 1000,
                 batch_route: BatchRoute | None = None):
        self.gates = {exp: ExperimentGate(created) for exp, created in experiments.items()}
        self.lanes = max(1, lanes)
        self.batch_size = batch_size
        self.batch_route = batch_route
        self.streams: dict[Any, Stream] = {}
        self.global_barrier: Any = None
        self.global_sent = False
        self.global_blocked: deque = deque()
        self.outstanding = 0  # admitted and not released (barriers included)
        self.waiting_rows = 0  # rows of units waiting for a create not yet read
        self.stopping = False
        self._refused: set[int] = set()  # ids of units refused (never admitted)

    # --- what the dispatcher asks -----------------------------------------------------------

    def admit(self, unit, before_global: bool = False) -> list:
        """A unit read from the journal (or released from a barrier's hold).

        :param before_global: the unit precedes the pending global barrier in the journal (it
            was held by its experiment's barrier), so that barrier must not hold it.
        """
        actions: list = []
        self._admit(unit, before_global, actions)
        return actions

    def release(self, unit) -> list:
        """``unit``'s outcome is durable: let what waited for it go."""
        actions: list = []
        if id(unit) in self._refused:
            self._refused.discard(id(unit))
            return actions
        if unit is self.global_barrier:
            self.outstanding -= 1
            self.global_barrier = None
            blocked, self.global_blocked = list(self.global_blocked), deque()
            for u in blocked:
                self._admit(u, False, actions)
            return actions
        gate = self.gates.get(unit.experiment_id)
        if gate is not None and unit is gate.barrier:
            self.outstanding -= 1
            gate.barrier = None
            blocked, gate.blocked = list(gate.blocked), deque()
            for u in blocked:
                self._admit(u, True, actions)
            self._send_global(actions)
            return actions
        self.outstanding -= 1
        if gate is not None:
            gate.outstanding -= 1
            self._send_barrier(gate, actions)
        stream = self.streams.get(unit.stream)
        if stream is not None:
            stream.inflight -= 1
            if stream.flying is not None:
                stream.flying.remove(unit)
            if stream.waiting:
                self._pump(stream, actions)
            elif stream.inflight == 0 and not stream.parked:
                del self.streams[unit.stream]
        self._send_global(actions)
        return actions

    def park(self, unit) -> list:
        """``unit`` was sent and its outcome is unknown; it is resolved later (sent again,
        :meth:`unpark`). It still holds back what waits for it (barriers, identical calls:
        a positioned call's stream; a group's points), but no longer a lane."""
        actions: list = []
        stream = self.streams.get(unit.stream)
        if stream is not None and stream.flying is not None:
            stream.flying.remove(unit)
            stream.inflight -= 1
            stream.parked.append(unit)
            stream.parked_items.update(unit.items)
            self._pump(stream, actions)
        return actions

    def unpark(self, unit) -> None:
        """A parked unit goes out again (to be resolved); :meth:`release` ends it as usual."""
        stream = self.streams.get(unit.stream)
        if stream is not None and stream.flying is not None:
            stream.parked.remove(unit)
            stream.parked_items = set().union(*(g.items for g in stream.parked))
            stream.flying.append(unit)
            stream.inflight += 1

    def created(self, experiment_id: int) -> None:
        """The experiment's creation succeeded (its server key is recorded)."""
        self.gates[experiment_id].created = True

    def create_rejected(self, experiment_id: int, reason: str) -> None:
        self.gates[experiment_id].create_rejected = reason

    def stop(self) -> None:
        self.stopping = True

    def take_orphans(self) -> dict[int, list]:
        """The units still waiting for a create that never came in this replay, by
        experiment (forgotten here: the caller refuses them or leaves them pending)."""
        orphans = {}
        for exp, gate in self.gates.items():
            if gate.awaiting_create:
                orphans[exp], gate.awaiting_create = gate.awaiting_create, []
        self.waiting_rows = 0
        return orphans

    def refuse_all(self, units: list, reason: str) -> list:
        """Refuse units taken back by :meth:`take_orphans`."""
        actions: list = []
        for unit in units:
            self._refuse(unit, reason, actions)
        return actions

    def lane_busy(self, experiment_id: int) -> bool:
        """Are the experiment's metric-group lanes all busy (or is a group waiting)?"""
        stream = self.streams.get((experiment_id, "bulk"))
        return stream is not None and bool(stream.inflight >= self.lanes or stream.waiting)

    # --- the rules --------------------------------------------------------------------------

    def _admit(self, unit, before_global: bool, actions: list) -> None:
        if self.global_barrier is not None and not before_global:
            self.global_blocked.append(unit)
            return
        if unit.kind == GLOBAL:
            self.global_barrier, self.global_sent = unit, False
            self._send_global(actions)
            return
        gate = self.gates.get(unit.experiment_id)
        if gate is None:
            self._refuse(unit, f"experiment id {unit.experiment_id} is not in the journal's "
                               "experiments table", actions)
            return
        if gate.barrier is not None:
            gate.blocked.append(unit)
            return
        if unit.kind == CREATE:
            gate.barrier, gate.barrier_sent = unit, False
            gate.create_seen = True
            self.outstanding += 1
            if gate.awaiting_create:  # they go right after the create, in journal order
                gate.blocked.extend(gate.awaiting_create)
                self.waiting_rows -= sum(_rows(u) for u in gate.awaiting_create)
                gate.awaiting_create = []
            if gate.created:  # created by an earlier run whose ack was not committed
                gate.barrier_sent = True
                actions.append(AlreadyDone(unit))
                return
            self._send_barrier(gate, actions)
            return
        if gate.create_rejected:
            self._refuse(unit, f"not sent: {gate.create_rejected}", actions)
            return
        if not gate.created:  # journaled before its create: wait for it
            gate.awaiting_create.append(unit)
            self.waiting_rows += _rows(unit)
            return
        if unit.kind == BARRIER:
            gate.barrier, gate.barrier_sent = unit, False
            self.outstanding += 1
            self._send_barrier(gate, actions)
            return
        gate.outstanding += 1
        self.outstanding += 1
        groups = hasattr(unit, "overlaps")
        batch_key = None if groups else self._batch_key(unit)
        if batch_key is not None:
            unit.stream = batch_key
        stream = self.streams.get(unit.stream)
        if stream is None:
            stream = self.streams[unit.stream] = Stream(batch_key is not None, groups)
        stream.waiting.append(unit)
        self._pump(stream, actions)

    def _refuse(self, unit, reason: str, actions: list) -> None:
        self._refused.add(id(unit))
        actions.append(Refuse(unit, reason))

    def _batch_key(self, call) -> Any:
        if call.endpoint == "log_output":
            # One ordered output stream per experiment, several lines per request (the
            # documented endpoint takes a list too): the server shows output in the order it
            # arrives, and a read-back can tell by length which lines it has.
            return (call.experiment_id, "output")
        if self.batch_route is None or not self.batch_route(call.endpoint):
            return None
        if call.endpoint == "log_parameter":
            return (call.experiment_id, "batch", call.endpoint)
        lane = hash((call.ts_ms, call.text)) % self.lanes
        return (call.experiment_id, "batch", call.endpoint, lane)

    def _pump(self, stream: Stream, actions: list) -> None:
        waiting = stream.waiting
        if self.stopping:
            return
        if stream.flying is not None:  # groups: several in flight, in order, none sharing
            flying = stream.flying     # a point with another in flight (or parked)
            parked = stream.parked_items
            while waiting and len(flying) < self.lanes and \
                    not any(waiting[0].overlaps(g) for g in flying) and \
                    (not parked or parked.isdisjoint(waiting[0].items)):
                group = waiting.popleft()
                flying.append(group)
                stream.inflight += 1
                actions.append(Send(group))
            return
        if not waiting or stream.inflight:
            return
        if not stream.batch:
            stream.inflight = 1
            actions.append(Send(waiting.popleft()))
            return
        job = [waiting.popleft()]
        if job[0].endpoint == "log_output":  # one request carries one context
            context = job[0].payload.get("context")
            while waiting and len(job) < self.batch_size and \
                    waiting[0].payload.get("context") == context:
                job.append(waiting.popleft())
        else:
            while waiting and len(job) < self.batch_size:
                job.append(waiting.popleft())
        stream.inflight = len(job)
        actions.append(Send(job))

    def _send_barrier(self, gate: ExperimentGate, actions: list) -> None:
        if gate.barrier is not None and not gate.barrier_sent and gate.outstanding == 0 \
                and not self.stopping:
            gate.barrier_sent = True
            actions.append(Send(gate.barrier))

    def _send_global(self, actions: list) -> None:
        if self.global_barrier is not None and not self.global_sent and self.outstanding == 0 \
                and not self.stopping:
            self.global_sent = True
            self.outstanding += 1
            actions.append(Send(self.global_barrier))


def _rows(unit) -> int:
    return len(unit.seqs) if hasattr(unit, "overlaps") else 1
