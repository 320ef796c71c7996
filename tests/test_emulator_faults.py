"""Fault injection: every kind, selection by route/rate/count, and the control endpoints."""

from __future__ import annotations

import json
import socket
import time

import pytest
import requests

from comet_journal.emulator import Emulator, FaultSpecError
from comet_journal.emulator.testing import EmulatorClient

METRIC = "/api/rest/v2/write/experiment/metric"


def start(factory, *rules, seed=0):
    emulator = factory(faults={"seed": seed, "rules": list(rules)})
    client = EmulatorClient(emulator)
    return emulator, client


def log_metric(client, key, value=1.0, **kwargs):
    return client.post(METRIC, json={"experimentKey": key, "metricName": "m",
                                     "metricValue": value}, **kwargs)


def applied_metrics(emulator, key):
    return [p["metricValue"] for p in emulator.state()["experiments"][key]["metrics"].get("m", [])]


def test_status_fault_for_the_next_n_requests(emulator_factory):
    emulator, client = start(emulator_factory,
                             {"route": "log_metric", "kind": "status", "status": 502, "count": 2})
    key = client.create_experiment()  # another route: unaffected
    answers = [log_metric(client, key, value=i) for i in range(3)]
    assert [a.status_code for a in answers] == [502, 502, 200]
    assert answers[0].json()["code"] == 502 and "msg" in answers[0].json()
    assert applied_metrics(emulator, key) == [2]
    assert emulator.state()["faults"]["status"] == 2


@pytest.mark.parametrize("header,expected", [
    ("standard", {"Retry-After"}), ("custom", {"Retry-After-Custom"}),
    ("both", {"Retry-After", "Retry-After-Custom"})])
def test_throttle_answers_429_with_the_chosen_header(emulator_factory, header, expected):
    emulator, client = start(emulator_factory, {"route": "log_metric", "kind": "throttle",
                                                "retry_after": 2, "header": header,
                                                "count": 1})
    key = client.create_experiment()
    response = log_metric(client, key)
    assert response.status_code == 429
    present = {h for h in ("Retry-After", "Retry-After-Custom") if h in response.headers}
    assert present == expected
    assert all(response.headers[h] == "2" for h in expected)
    assert applied_metrics(emulator, key) == []


def test_drop_before_is_not_applied_drop_after_is(emulator_factory):
    emulator, client = start(
        emulator_factory,
        {"route": "log_metric", "kind": "drop_before", "count": 1},
        {"route": "log_metric", "kind": "drop_after", "count": 1})
    key = client.create_experiment()
    with pytest.raises(requests.ConnectionError):
        log_metric(client, key, value=1)
    with pytest.raises(requests.ConnectionError):
        log_metric(client, key, value=2)
    assert log_metric(client, key, value=3).status_code == 200
    assert applied_metrics(emulator, key) == [2, 3]
    state = emulator.state()
    assert state["faults"]["drop_before"] == 1 and state["faults"]["drop_after"] == 1
    assert state["requests"]["by_status"]["dropped"] == 2


def test_latency_delays_every_request(emulator_factory):
    emulator, client = start(emulator_factory, {"kind": "latency", "ms": 60, "jitter_ms": 10})
    key = client.create_experiment()
    for _ in range(3):
        started = time.perf_counter()
        assert log_metric(client, key).status_code == 200
        assert 0.049 <= time.perf_counter() - started < 1.0
    assert emulator.state()["faults"]["latency"] == 4


def test_slow_body_sends_headers_then_trickles(emulator_factory):
    emulator, client = start(emulator_factory, {"route": "log_metric", "kind": "slow_body",
                                                "duration_ms": 400, "count": 1})
    key = client.create_experiment()
    started = time.perf_counter()
    response = log_metric(client, key, stream=True)
    headers_after = time.perf_counter() - started
    body = response.raw.read()
    total = time.perf_counter() - started
    assert response.status_code == 200 and json.loads(body) == {"msg": "Saved"}
    assert headers_after < 0.3 <= total
    assert applied_metrics(emulator, key) == [1.0]  # slow, but applied


def _refused(emulator) -> bool:
    try:
        socket.create_connection((emulator.host, emulator.port), timeout=1).close()
    except ConnectionRefusedError:
        return True
    except ConnectionResetError:  # accepted by the kernel just as the listener closed
        return False
    return False


def _wait_until(predicate, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False


def test_outage_triggered_by_a_request_refuses_connections_then_recovers(emulator_factory):
    emulator, client = start(emulator_factory, {"route": "log_metric", "kind": "outage",
                                                "duration_s": 0.6, "count": 1})
    key = client.create_experiment()
    port = emulator.port
    with pytest.raises(requests.ConnectionError):
        log_metric(client, key)
    assert _wait_until(lambda: _refused(emulator), timeout=1)
    assert _wait_until(lambda: not _refused(emulator))
    assert emulator.port == port
    assert log_metric(client, key, value=5).status_code == 200
    assert applied_metrics(emulator, key) == [5]
    assert emulator.state()["faults"]["outage"] == 1


def test_scheduled_outage_window(emulator_factory):
    emulator = emulator_factory(faults={"rules": [{"kind": "outage", "start_s": 0.2,
                                                   "duration_s": 0.5}]})
    assert not _refused(emulator)
    assert _wait_until(lambda: _refused(emulator), timeout=2)
    assert _wait_until(lambda: not _refused(emulator), timeout=3)


def _pattern(factory, seed, n=40):
    emulator, client = start(factory, {"route": "log_metric", "kind": "status", "rate": 0.3},
                             seed=seed)
    key = client.create_experiment()
    return [log_metric(client, key).status_code for _ in range(n)]


def test_rate_faults_are_reproducible_from_the_seed(emulator_factory):
    first, again, other = (_pattern(emulator_factory, seed) for seed in (7, 7, 8))
    assert first == again
    assert first != other
    assert 0 < first.count(503) < len(first)


def test_after_skips_the_first_selected_requests(emulator_factory):
    emulator, client = start(emulator_factory, {"route": METRIC, "kind": "status",
                                                "count": 1, "after": 2})
    key = client.create_experiment()
    assert [log_metric(client, key).status_code for _ in range(4)] == [200, 200, 503, 200]


def test_control_endpoints_replace_show_and_clear_faults(emulator_client):
    key = emulator_client.create_experiment()
    spec = {"seed": 3, "rules": [{"route": ["log_metric"], "kind": "status", "status": 500}]}
    assert emulator_client.post("/emulator/faults", json=spec).json()["spec"] == spec
    assert log_metric(emulator_client, key).status_code == 500
    shown = emulator_client.get("/emulator/faults").json()
    assert shown["spec"] == spec and shown["counts"]["status"] == 1
    assert emulator_client.state()["requests"]["total"] == 2  # control requests not counted
    assert emulator_client.delete("/emulator/faults").status_code == 200
    assert log_metric(emulator_client, key).status_code == 200


def test_control_endpoints_need_the_key_and_are_never_faulted(emulator_factory):
    emulator, client = start(emulator_factory, {"kind": "status", "status": 503})
    assert client.get("/emulator/state").status_code == 200
    assert requests.get(emulator.url + "/emulator/faults", timeout=5).status_code == 401


@pytest.mark.parametrize("spec,problem", [
    ({"rules": [{"kind": "explode"}]}, "kind must be one of"),
    ({"rules": [{"kind": "status", "route": "log_metrc"}]}, "unknown route 'log_metrc'"),
    ({"rules": [{"kind": "status", "rate": 0.5, "count": 2}]}, "not both"),
    ({"rules": [{"kind": "status", "status": 200}]}, "status must be between"),
    ({"rules": [{"kind": "latency"}]}, "ms is required"),
    ({"rules": [{"kind": "throttle", "retry_afte": 1}]}, "unknown keys ['retry_afte']"),
    ({"rules": [{"kind": "status", "rate": 1.5}]}, "rate must be between"),
])
def test_bad_specs_are_refused_with_the_reason(emulator_client, spec, problem):
    with pytest.raises(FaultSpecError, match=problem.replace("[", r"\[").replace("]", r"\]")
                       .replace("(", r"\(")):
        Emulator(faults=spec)
    response = emulator_client.post("/emulator/faults", json=spec)
    assert response.status_code == 400 and problem in response.json()["msg"]


def test_spec_from_inline_json_or_a_file(emulator_factory, tmp_path):
    spec = {"rules": [{"route": "log_metric", "kind": "status", "status": 504}]}
    path = tmp_path / "faults.json"
    path.write_text(json.dumps(spec))
    for given in (json.dumps(spec), str(path)):
        emulator = emulator_factory(faults=given)
        client = EmulatorClient(emulator)
        assert log_metric(client, client.create_experiment()).status_code == 504
