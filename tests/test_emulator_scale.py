"""The emulator at scale: metric points indexed on write, a state summary of counts."""

from __future__ import annotations

import json
import sqlite3

from comet_journal.emulator import views
from comet_journal.emulator.store import Store

READ = "/api/rest/v2/"
WRITE = "/api/rest/v2/write/experiment/"


def _log_mixed(client, key: str) -> None:
    for step in range(5):
        client.post(WRITE + "metric", json={"experimentKey": key, "metricName": "loss",
                                            "metricValue": 1.0 / (step + 1), "step": step})
        client.post(WRITE + "metric", json={"experimentKey": key, "metricName": "acc",
                                            "metricValue": step, "step": step,
                                            "context": "train", "timestamp": 1000 + step})
    client.post(WRITE + "cpu-metrics", json={"experimentKey": key, "step": 1,
                                             "cpuPercentUtilization": [10, 30]})
    client.post(WRITE + "ram-metrics", json={"experimentKey": key, "step": 1,
                                             "totalRam": 8, "usedRam": 3})


def _read_metric(client, key: str, name: str) -> list[dict]:
    return client.get(READ + "experiment/metrics/get-metric",
                      params={"experimentKey": key, "metricName": name}).json()["metrics"]


def _folded(emulator, key: str, name: str) -> list[tuple]:
    """The same series folded from the applied log (what reads returned before the index)."""
    with emulator.app.store.reading() as conn:
        rows = emulator.app.store.applied_rows(conn, key, views.METRIC_READ_ENDPOINTS)
        return [(p["metricName"], views.comet_text(p["metricValue"]), p["step"],
                 p["timestamp"]) for p in views.metric_points(rows) if p["metricName"] == name]


def test_indexed_series_read_back_as_the_applied_log_says(emulator, emulator_client):
    key = emulator_client.create_experiment("ws", "proj", name="idx")
    _log_mixed(emulator_client, key)
    for name in ("loss", "acc", "sys.cpu.percent.avg", "sys.ram.used"):
        read = [(p["metricName"], p["metricValue"], p["step"], p["timestamp"])
                for p in _read_metric(emulator_client, key, name)]
        assert read and read == _folded(emulator, key, name), name
    assert [p["runContext"] for p in _read_metric(emulator_client, key, "acc")] == ["train"] * 5
    everything = emulator_client.get(READ + "experiment/metrics/get-all",
                                     params={"experimentKey": key}).json()["metrics"]
    assert len(everything) == 5 + 5 + 3 + 2  # cpu: two cores and the average; ram: two


def test_a_series_read_is_an_index_range_not_a_scan(tmp_path):
    store = Store(tmp_path / "emu.db")
    with store.reading() as conn:
        plan = " ".join(str(tuple(r)) for r in conn.execute(
            "EXPLAIN QUERY PLAN SELECT name, value FROM metric_points WHERE experiment_key=? "
            "AND name=? ORDER BY id", ("k", "loss")))
    store.close()
    assert "metric_points_by_name" in plan and "SCAN" not in plan.replace("SCAN CONSTANT", "")


def test_an_older_state_file_gets_its_points_indexed_on_open(emulator_factory, tmp_path):
    emu = emulator_factory()
    from comet_journal.emulator.testing import EmulatorClient
    client = EmulatorClient(emu)
    key = client.create_experiment("ws", "proj", name="old")
    _log_mixed(client, key)
    want = _read_metric(client, key, "loss")
    client.close()
    db = emu.db_path
    emu.stop()
    conn = sqlite3.connect(db)  # as a version-1 emulator left it: no index table
    conn.executescript("DROP TABLE metric_points; PRAGMA user_version=1;")
    conn.close()
    store = Store(db)
    with store.reading() as conn:
        got = list(store.metric_points(conn, key, "loss"))
        version = conn.execute("PRAGMA user_version").fetchone()[0]
    store.close()
    assert version == 2
    assert [(p["step"], views.comet_text(p["metricValue"])) for p in got] == \
        [(p["step"], p["metricValue"]) for p in want]


def test_state_summary_counts_instead_of_contents(emulator, emulator_client):
    key = emulator_client.create_experiment("ws", "proj", name="sum")
    values = [{"metricName": "loss", "metricValue": i, "step": i} for i in range(3000)]
    emulator_client.post("/clientlib/batch/logger/experiment/metric",
                         json={"experimentKey": key, "values": values})
    emulator_client.post(WRITE + "parameter", json={"experimentKey": key,
                                                    "parameterName": "lr",
                                                    "parameterValue": 0.1})
    answer = emulator_client.get("/emulator/state", params={"summary": "1"})
    summary = answer.json()
    experiment = summary["experiments"][key]
    assert experiment["metricPoints"] == {"loss": 3000}
    assert experiment["applied"]["batch_metrics"] == 1
    assert summary["applied"]["log_parameter"] == 1
    assert summary["requests"]["by_route"]["log_parameter"] == 1
    assert len(answer.content) < 5000  # no point in it
    full = emulator_client.get("/emulator/state").json()
    assert len(full["experiments"][key]["metrics"]["loss"]) == 3000
    assert json.dumps(summary)  # plain JSON


def test_batch_values_read_back_as_comet_shows_them(emulator_client):
    key = emulator_client.create_experiment("ws", "proj", name="values")
    body = ('{"experimentKey": "%s", "values": [{"metricName": "v", "metricValue": 0.1, '
            '"step": 0}, {"metricName": "v", "metricValue": "abc", "step": 1}, '
            '{"metricName": "v", "metricValue": 12345678901234567, "step": 2}]}' % key)
    first = emulator_client.post("/clientlib/batch/logger/experiment/metric", data=body,
                         headers={"Content-Type": "application/json"})
    assert first.status_code == 200, first.text
    emulator_client.post("/clientlib/batch/logger/experiment/metric",  # NaN: not strict JSON
                         data=body.replace("0.1", "NaN"),
                         headers={"Content-Type": "application/json"})
    assert [p["metricValue"] for p in _read_metric(emulator_client, key, "v")] == \
        ["0.1", "abc", "12345678901234567", "NaN", "abc", "12345678901234567"]


def test_a_series_answer_is_written_in_pages_with_running_offsets(tmp_path):
    store = Store(tmp_path / "emu.db")
    values = [{"metricName": "m", "metricValue": i / 3, "step": i} for i in range(2500)]
    with store.transaction() as conn:
        store.record_applied(conn, "batch_metrics", "k", None, json.dumps({"values": values}),
                             200, "{}")
    with store.reading() as conn:
        paged = json.loads(store.series_json(conn, "k", "m", page=1000))
        whole = json.loads(store.series_json(conn, "k", "m"))
        empty = json.loads(store.series_json(conn, "k", "nothing"))
    store.close()
    assert paged == whole and empty["metrics"] == []
    assert [p["offset"] for p in paged["metrics"]] == list(range(2500))
    assert [float(p["metricValue"]) for p in paged["metrics"]] == [i / 3 for i in range(2500)]
