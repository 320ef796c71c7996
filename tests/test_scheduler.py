"""The replay's scheduler, driven with fake units: no threads, no sockets, no journal."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pytest

from comet_journal.schema.ordering import kind_of, stream_key
from comet_journal.uploader.replay.scheduler import AlreadyDone, Refuse, Scheduler, Send


@dataclass(eq=False)
class Unit:
    seq: int
    endpoint: str
    experiment_id: int | None
    ts_ms: int
    text: str
    payload: dict
    retry: bool = False
    kind: str = ""
    stream: Any = None

    def label(self) -> str:
        return f"unit {self.seq}"


def unit(seq: int, endpoint: str, exp: int | None = 1, ts: int | None = None, **payload) -> Unit:
    u = Unit(seq, endpoint, exp, seq if ts is None else ts, json.dumps(payload, sort_keys=True),
             payload)
    u.kind = kind_of(endpoint)
    u.stream = stream_key(u)
    return u


class Group:
    """A fake metric group: its points are strings; two groups overlap if they share one."""

    kind = "positioned"
    endpoint = "log_metric"
    retry = False

    def __init__(self, seq: int, points: list[str], exp: int = 1):
        self.seq, self.points, self.experiment_id = seq, points, exp
        self.stream = (exp, "bulk")
        self.seqs = list(range(seq, seq + len(points)))

    def overlaps(self, other: "Group") -> bool:
        return bool(set(self.points) & set(other.points))


def sent(actions) -> list:
    """The jobs of the Send actions (a batch job as a list of seqs)."""
    out = []
    for a in actions:
        if isinstance(a, Send):
            job = a.job
            out.append([u.seq for u in job] if isinstance(job, list) else job.seq)
    return out


def created(exps=(1,)) -> Scheduler:
    return Scheduler({e: True for e in exps})


def test_create_first_then_the_experiments_calls():
    s = Scheduler({1: False})
    create = unit(1, "experiment_create")
    assert sent(s.admit(create)) == [1]
    metric = unit(2, "log_metric", metricName="loss", metricValue=1)
    param = unit(3, "log_parameter", parameterName="lr", parameterValue=0.1)
    assert s.admit(metric) == [] and s.admit(param) == []  # held behind the create
    s.created(1)
    assert sent(s.release(create)) == [2, 3]


def test_a_rejected_create_refuses_the_experiments_calls_with_the_reason():
    s = Scheduler({1: False})
    create = unit(1, "experiment_create")
    s.admit(create)
    later = unit(2, "log_other", key="a", value=1)
    s.admit(later)
    s.create_rejected(1, "bad project")
    actions = s.release(create)
    assert [type(a) for a in actions] == [Refuse]
    assert actions[0].unit is later and "bad project" in actions[0].reason
    assert s.release(later) == []  # a refused unit's release changes nothing


def test_a_create_done_by_an_earlier_run_is_not_sent_again():
    s = created()
    create = unit(1, "experiment_create")
    actions = s.admit(create)
    assert [type(a) for a in actions] == [AlreadyDone]
    metric = unit(2, "log_metric", metricName="x", metricValue=1)
    assert s.admit(metric) == []
    assert sent(s.release(create)) == [2]


def test_calls_of_an_unknown_experiment_are_refused():
    s = created()
    actions = s.admit(unit(1, "log_metric", exp=7, metricName="x", metricValue=1))
    assert isinstance(actions[0], Refuse) and "experiment id 7" in actions[0].reason


def test_calls_journaled_before_their_create_wait_for_it():
    # another rank of a shared experiment wrote first: its calls precede the create
    s = Scheduler({1: False})
    early = [unit(1, "log_metric", metricName="x", metricValue=1),
             unit(2, "log_parameter", parameterName="lr", parameterValue=1)]
    for u in early:
        assert s.admit(u) == []  # neither sent nor refused
    assert s.waiting_rows == 2  # not counted in the read window
    create = unit(3, "experiment_create")
    assert sent(s.admit(create)) == [3] and s.waiting_rows == 0
    s.created(1)
    assert sent(s.release(create)) == [1, 2]


def test_calls_whose_create_never_comes_are_handed_back():
    s = Scheduler({1: False, 2: False})
    a = unit(1, "log_metric", exp=1, metricName="x", metricValue=1)
    b = unit(2, "log_other", exp=2, key="k", value=1)
    s.admit(a)
    s.admit(b)
    orphans = s.take_orphans()
    assert orphans == {1: [a], 2: [b]} and s.waiting_rows == 0
    actions = s.refuse_all(orphans[1], "never created")
    assert [type(x) for x in actions] == [Refuse] and s.release(a) == []


def test_an_ordered_stream_has_one_call_in_flight_and_streams_are_independent():
    s = created()
    a1 = unit(1, "log_parameter", parameterName="lr", parameterValue=1)
    a2 = unit(2, "log_parameter", parameterName="lr", parameterValue=2)
    b1 = unit(3, "log_parameter", parameterName="wd", parameterValue=1)
    assert sent(s.admit(a1)) == [1]
    assert sent(s.admit(a2)) == []  # same name: waits for the first
    assert sent(s.admit(b1)) == [3]  # another name: its own stream
    assert sent(s.release(a1)) == [2]


def test_positioned_calls_go_at_once_but_identical_ones_are_serialised():
    s = created()
    p1 = unit(1, "log_metric", ts=5, metricName="loss", metricValue=1, step=1)
    p2 = unit(2, "log_metric", ts=5, metricName="loss", metricValue=1, step=2)
    same = unit(3, "log_metric", ts=5, metricName="loss", metricValue=1, step=1)
    assert sent(s.admit(p1)) == [1] and sent(s.admit(p2)) == [2]
    assert sent(s.admit(same)) == []  # identical to p1 (payload and time): after it
    assert sent(s.release(p1)) == [3]


def test_a_barrier_waits_for_earlier_calls_and_holds_later_ones():
    s = created()
    m1 = unit(1, "log_metric", metricName="a", metricValue=1)
    stop = unit(2, "experiment_stop")
    m2 = unit(3, "log_metric", metricName="b", metricValue=1)
    assert sent(s.admit(m1)) == [1]
    assert sent(s.admit(stop)) == []  # m1 is still in flight
    assert sent(s.admit(m2)) == []  # after the barrier in the journal: held
    assert sent(s.release(m1)) == [2]
    assert sent(s.release(stop)) == [3]


def test_a_barrier_holds_only_its_own_experiment():
    s = created((1, 2))
    m1 = unit(1, "log_metric", exp=1, metricName="a", metricValue=1)
    s.admit(m1)
    s.admit(unit(2, "experiment_archive", exp=1))
    assert sent(s.admit(unit(3, "log_metric", exp=2, metricName="a", metricValue=1))) == [3]


def test_project_calls_go_alone_between_everything_before_and_after():
    s = created((1, 2))
    m1 = unit(1, "log_metric", exp=1, metricName="a", metricValue=1)
    project = unit(2, "project_create", exp=None, workspaceName="w", projectName="p")
    m2 = unit(3, "log_metric", exp=2, metricName="a", metricValue=1)
    assert sent(s.admit(m1)) == [1]
    assert sent(s.admit(project)) == []  # waits for everything before it
    assert sent(s.admit(m2)) == []  # everything after it waits for it
    assert sent(s.release(m1)) == [2]
    assert sent(s.release(project)) == [3]


def test_calls_held_by_an_experiment_barrier_are_not_held_by_a_later_global_call():
    s = created()
    m1 = unit(1, "log_metric", metricName="a", metricValue=1)
    stop = unit(2, "experiment_stop")
    held = unit(3, "log_other", key="k", value=1)
    project = unit(4, "project_notes", exp=None, workspaceName="w", projectName="p", notes="n")
    for u in (m1, stop, held, project):
        s.admit(u)
    assert sent(s.release(m1)) == [2]
    # the stop's release lets ``held`` go (it precedes the project call), not the project call
    assert sent(s.release(stop)) == [3]
    assert sent(s.release(held)) == [4]


def test_batch_streams_send_several_calls_per_job_and_one_job_per_stream():
    s = Scheduler({1: True}, lanes=1, batch_size=3, batch_route=lambda e: e == "log_parameter")
    params = [unit(i, "log_parameter", parameterName=f"p{i}", parameterValue=i)
              for i in range(1, 6)]
    jobs = [j for p in params for j in sent(s.admit(p))]
    assert jobs == [[1]]  # the first goes at once; the rest wait for it
    assert sent(s.release(params[0])) == [[2, 3, 4]]  # then up to batch_size together
    for p in params[1:3]:
        assert s.release(p) == []  # the job's calls are released one by one
    assert sent(s.release(params[3])) == [[5]]


def test_without_batches_output_lines_still_travel_together_per_context():
    s = created()
    lines = [unit(1, "log_output", outputLines=[{"output": "a"}]),
             unit(2, "log_output", outputLines=[{"output": "b"}]),
             unit(3, "log_output", outputLines=[{"output": "c"}], context="train"),
             unit(4, "log_output", outputLines=[{"output": "d"}], context="train")]
    assert sent(s.admit(lines[0])) == [[1]]
    for line in lines[1:]:
        assert s.admit(line) == []
    assert sent(s.release(lines[0])) == [[2]]  # one request carries one context
    assert sent(s.release(lines[1])) == [[3, 4]]


def test_metric_groups_fly_per_lane_and_never_two_sharing_a_point():
    s = Scheduler({1: True}, lanes=2)
    g1, g2 = Group(1, ["a", "b"]), Group(3, ["c", "d"])
    g3 = Group(5, ["e", "f"])
    assert sent(s.admit(g1)) == [1] and sent(s.admit(g2)) == [3]
    assert sent(s.admit(g3)) == [] and s.lane_busy(1)  # both lanes busy
    assert sent(s.release(g1)) == [5]
    twin = Group(7, ["e", "z"])  # shares the point "e" with g3, in flight
    assert sent(s.admit(twin)) == []
    assert sent(s.release(g2)) == []  # a lane is free, but the twin must wait for g3
    assert sent(s.release(g3)) == [7]


def test_after_stop_nothing_more_is_sent():
    s = created()
    a1 = unit(1, "log_parameter", parameterName="lr", parameterValue=1)
    a2 = unit(2, "log_parameter", parameterName="lr", parameterValue=2)
    s.admit(a1)
    s.admit(a2)
    s.stop()  # a time slice ended, or the user stopped
    assert s.release(a1) == []
    assert s.admit(unit(3, "log_metric", metricName="m", metricValue=1)) == []


@pytest.mark.parametrize("endpoint", ["experiment_delete", "experiment_restore",
                                      "experiment_archive", "experiment_stop"])
def test_every_barrier_endpoint_is_a_barrier(endpoint):
    s = created()
    m1 = unit(1, "log_metric", metricName="a", metricValue=1)
    s.admit(m1)
    assert sent(s.admit(unit(2, endpoint))) == []
    assert sent(s.release(m1)) == [2]
