"""The emulator serves every documented write endpoint, validated with the shared catalogue."""

from __future__ import annotations

import hashlib
import io
import json
import zipfile

import pytest

from comet_journal.schema.catalogue import BODY, ENDPOINTS, FILE, PART, QUERY, STR, documented_endpoints

K = "$key"  # stands for the experiment key in the samples below
PID = "$project"  # stands for the project id


def _zip_patch() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("git_diff.patch", "diff --git a/x b/x\n")
    return buffer.getvalue()


# One valid call per documented endpoint (values as the official SDK sends them).
SAMPLES = {
    "experiment_create": {"workspaceName": "ws", "projectName": "proj", "experimentName": "e1"},
    "experiment_stop": {"experimentKey": K},
    "experiment_archive": {"experimentKey": K},
    "experiment_delete": {"experimentKey": K},
    "experiment_restore": {"experimentKey": K},
    "experiment_keepalive": {"experimentKey": K},
    "experiment_start_end_time": {"experimentKey": K, "startTimeMillis": 1_700_000_000_000,
                                  "endTimeMillis": 1_700_000_100_000},
    "log_metric": {"experimentKey": K, "metricName": "loss", "metricValue": 0.25, "step": 3,
                   "epoch": 1, "context": "train", "timestamp": 1_700_000_000_000},
    "log_parameter": {"experimentKey": K, "parameterName": "lr", "parameterValue": 0.01,
                      "step": 0},
    "log_other": {"experimentKey": K, "key": "color", "value": "red"},
    "log_html": {"experimentKey": K, "html": "<b>hi</b>", "override": False},
    "add_tags": {"experimentKey": K, "addedTags": ["a", "b"]},
    "log_output": {"experimentKey": K, "context": "train", "outputLines": [
        {"output": "hello\n", "stderr": False, "localTimestamp": 1_700_000_000_000,
         "offset": 0}]},
    "log_graph": {"experimentKey": K, "graph": "{\"layers\": 3}"},
    "set_code": {"experimentKey": K, "code": "print(1)\n"},
    "upload_asset": {"experimentKey": K, "fileName": "a.txt", "extension": "txt", "step": 2,
                     "overwrite": False, "context": "train", "type": "asset",
                     "file": b"hello asset", "metadata": {"m": 1}},
    "upload_text_sample": {"experimentKey": K, "content": "some text", "step": 1},
    "upload_git_patch": {"experimentKey": K, "file": _zip_patch()},
    "git_metadata": {"experimentKey": K, "branch": "main", "origin": "git@x:y.git",
                     "parent": "abc", "root": "/src", "user": "me"},
    "system_details": {"experimentKey": K, "hostname": "h1", "pid": 42,
                       "command": ["train.py", "--x"], "installedPackages": ["numpy==2"],
                       "gpuStaticInfoList": [{"gpuIndex": 0, "name": "H200", "powerLimit": 700,
                                              "totalMemory": 141, "uuid": "GPU-1"}]},
    "gpu_metrics": {"experimentKey": K, "gpus": [
        {"freeMemory": 1, "gpuId": 0, "gpuUtilization": 50, "totalMemory": 2, "usedMemory": 1}]},
    "ram_metrics": {"experimentKey": K, "totalRam": 100, "usedRam": 50},
    "cpu_metrics": {"experimentKey": K, "cpuPercentUtilization": [12, 99]},
    "load_metrics": {"experimentKey": K, "loadAverage": 1.5},
    "project_create": {"isPublic": False, "projectDescription": "d", "projectName": "newproj",
                       "workspaceName": "ws"},
    "project_delete": {"deleteAllExperiments": False, "projectName": "proj",
                       "workspaceName": "ws"},
    "project_symlink": {"experimentKey": K, "projectName": "proj"},
    "project_notes": {"notes": "some notes", "projectId": PID},
    "project_update": {"projectId": PID, "newProjectDescription": "new description"},
    "viz_store_save": {"instanceId": "i1", "projectId": PID, "store": "{\"k\": 1}"},
}
DOCUMENTED = [e.name for e in documented_endpoints()]


def test_every_documented_endpoint_has_a_sample():
    assert sorted(SAMPLES) == sorted(DOCUMENTED)


def _fill(values: dict, key: str, project_id: str) -> dict:
    return {n: key if v == K else project_id if v == PID else v for n, v in values.items()}


def send(client, name: str, values: dict):
    """Send ``values`` to endpoint ``name`` where the catalogue says each field travels."""
    endpoint = ENDPOINTS[name]
    where = {f.name: f.location for f in endpoint.fields}
    params = {n: v for n, v in values.items() if where.get(n) == QUERY}
    parts = {n: v for n, v in values.items() if where.get(n) == PART}
    body = {n: v for n, v in values.items() if where.get(n, BODY) == BODY}
    kwargs = {"params": params or None}
    if endpoint.multipart:
        kwargs["files"] = {n: ("file", v) if isinstance(v, bytes) else (None, json.dumps(v))
                           for n, v in parts.items()}
    elif endpoint.method != "GET":
        kwargs["json"] = body
    return client.request(endpoint.method, endpoint.path, **kwargs)


@pytest.fixture
def target(emulator_client):
    """An experiment in ws/proj, and the project's id."""
    key = emulator_client.create_experiment("ws", "proj")
    project = emulator_client.get("/api/rest/v2/project",
                                  params={"workspaceName": "ws", "projectName": "proj"}).json()
    return key, project["projectId"]


@pytest.mark.parametrize("name", DOCUMENTED)
def test_documented_endpoint_is_applied_with_its_documented_response(emulator_client, target,
                                                                    name):
    key, project_id = target
    values = _fill(SAMPLES[name], key, project_id)
    response = send(emulator_client, name, values)

    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"] == "application/json"
    body = response.json()
    documented = ENDPOINTS[name].response
    assert set(body) == set(documented)
    for field, value in documented.items():
        if value:  # fixed texts ("Saved", intervals); placeholders are checked below
            assert body[field] == value
    state = emulator_client.state()
    last = state["applied"][-1]
    assert last["endpoint"] == name
    for field, value in values.items():
        if isinstance(value, bytes):
            assert last["fields"][field] == {"sha256": hashlib.sha256(value).hexdigest(),
                                             "size": len(value)}
        else:
            assert last["fields"][field] == value
    if name == "experiment_create":
        assert len(body["experimentKey"]) == 32 and body["experimentKey"] == last["experimentKey"]
        assert set(body["experimentKey"]) <= set("0123456789abcdef")
        assert body["link"].endswith(f"/ws/proj/{body['experimentKey']}")
        assert state["experiments"][body["experimentKey"]]["name"] == "e1"
    elif name == "project_create":
        assert state["projects"][body["projectId"]]["projectName"] == "newproj"
    elif name == "project_symlink":
        assert body["link"].endswith(f"/ws/proj/{key}")
    elif ENDPOINTS[name].needs_experiment_key:
        assert last["experimentKey"] == key


def _required_fields():
    for name in DOCUMENTED:
        for field in ENDPOINTS[name].fields:
            if field.required:
                yield name, field


@pytest.mark.parametrize("name,field", [pytest.param(n, f, id=f"{n}-{f.name}")
                                        for n, f in _required_fields()])
def test_missing_required_field_is_a_400_and_not_applied(emulator_client, target, name, field):
    key, project_id = target
    values = _fill(SAMPLES[name], key, project_id)
    del values[field.name]
    before = len(emulator_client.state()["applied"])

    response = send(emulator_client, name, values)

    assert response.status_code == 400
    assert response.headers["Content-Type"] == "application/json"
    body = response.json()
    assert body["code"] == 400 and isinstance(body["sdk_error_code"], int)
    assert field.name in body["msg"]
    assert len(emulator_client.state()["applied"]) == before


def _wrong_type_cases():
    for name in DOCUMENTED:
        for field in ENDPOINTS[name].fields:
            if (field.required and field.type != FILE and field.name != "experimentKey"
                    and not (field.location == QUERY and field.type == STR)):
                yield name, field
                break


@pytest.mark.parametrize("name,field", [pytest.param(n, f, id=f"{n}-{f.name}")
                                        for n, f in _wrong_type_cases()])
def test_wrong_type_is_a_400_and_not_applied(emulator_client, target, name, field):
    key, project_id = target
    values = _fill(SAMPLES[name], key, project_id)
    values[field.name] = {"not": "this"} if field.type == STR else "not-this"
    if field.location == QUERY:  # a query string holds text: give text that is no number
        values[field.name] = "not-a-number"
    before = len(emulator_client.state()["applied"])

    response = send(emulator_client, name, values)

    assert response.status_code == 400, response.text
    assert field.name in response.json()["msg"]
    assert len(emulator_client.state()["applied"]) == before


@pytest.mark.parametrize("name", [n for n in DOCUMENTED
                                  if ENDPOINTS[n].needs_experiment_key])
def test_unknown_experiment_key_is_a_400_and_not_applied(emulator_client, target, name):
    key, project_id = target
    values = _fill(SAMPLES[name], "f" * 32, project_id)
    before = len(emulator_client.state()["applied"])

    response = send(emulator_client, name, values)

    assert response.status_code == 400
    assert response.json()["sdk_error_code"] == 90210
    assert len(emulator_client.state()["applied"]) == before


@pytest.mark.parametrize("name,values", [
    ("project_notes", {"notes": "n", "projectId": "0" * 32}),
    ("project_update", {"projectId": "0" * 32, "newProjectName": "x"}),
    ("viz_store_save", {"instanceId": "i", "projectId": "0" * 32, "store": "{}"}),
    ("project_delete", {"deleteAllExperiments": True, "projectName": "nope",
                        "workspaceName": "ws"}),
    ("project_symlink", {"experimentKey": K, "projectName": "nope"}),
])
def test_unknown_project_is_a_400_and_not_applied(emulator_client, target, name, values):
    key, _ = target
    before = len(emulator_client.state()["applied"])
    response = send(emulator_client, name, _fill(values, key, ""))
    assert response.status_code == 400
    assert "project" in response.json()["msg"]
    assert len(emulator_client.state()["applied"]) == before


def test_query_values_are_typed_before_validation(emulator_client, target):
    key, _ = target
    response = emulator_client.post(
        "/api/rest/v2/write/experiment/upload-asset",
        params={"experimentKey": key, "fileName": "x.bin", "step": "7", "overwrite": "False"},
        files={"file": ("file", b"\x00\x01")})
    assert response.status_code == 200, response.text
    fields = emulator_client.state()["applied"][-1]["fields"]
    assert fields["step"] == 7 and fields["overwrite"] is False


@pytest.mark.parametrize("headers", [{}, {"Authorization": "wrong-key"},
                                     {"Authorization": "Bearer test-key"}])
def test_a_missing_or_wrong_api_key_is_a_401_and_nothing_is_applied(emulator, headers):
    import requests
    body = {"workspaceName": "ws", "projectName": "proj"}
    response = requests.post(emulator.url + "/api/rest/v2/write/experiment/create", json=body,
                             headers=headers, timeout=10)
    assert response.status_code == 401
    assert response.headers["Content-Type"] == "application/json"
    assert response.json()["sdk_error_code"] == 90212
    assert "test-key" not in response.text and "wrong-key" not in response.text
    assert emulator.state()["applied"] == []
    assert requests.get(emulator.url + "/emulator/state", headers=headers,
                        timeout=10).status_code == 401


def test_duplicates_are_kept_and_idempotency_replays_counted(emulator_client, target):
    key, _ = target
    metric = {"experimentKey": key, "metricName": "loss", "metricValue": 1.0, "step": 1}
    for idem in ("k-1", "k-1", "k-2", None):
        headers = {"Idempotency-Key": idem} if idem else {}
        assert emulator_client.post("/api/rest/v2/write/experiment/metric", json=metric,
                                    headers=headers).status_code == 200
    state = emulator_client.state()
    assert len(state["experiments"][key]["metrics"]["loss"]) == 4
    assert [a["idempotencyKey"] for a in state["applied"] if a["endpoint"] == "log_metric"] \
        == ["k-1", "k-1", "k-2", None]
    assert state["idempotency_replays"] == 1


def test_dedupe_answers_a_replay_with_the_stored_response(emulator_factory):
    from comet_journal.emulator.testing import EmulatorClient
    client = EmulatorClient(emulator_factory(dedupe=True))
    body = {"workspaceName": "ws", "projectName": "proj"}
    first = client.post("/api/rest/v2/write/experiment/create", json=body,
                        headers={"Idempotency-Key": "create-1"})
    second = client.post("/api/rest/v2/write/experiment/create", json=body,
                         headers={"Idempotency-Key": "create-1"})
    assert first.status_code == second.status_code == 200
    assert first.json() == second.json()
    state = client.state()
    assert len(state["experiments"]) == 1 and len(state["applied"]) == 1
    assert state["idempotency_replays"] == 1


def test_lifecycle_stop_archive_delete_restore(emulator_client, target):
    key, _ = target
    path = "/api/rest/v2/write/experiment/"
    listing = {"workspaceName": "ws", "projectName": "proj"}

    def listed(archived=False):
        return [e["experimentKey"] for e in emulator_client.get(
            "/api/rest/v2/experiments", params={**listing, "archived": archived}
        ).json()["experiments"]]

    assert emulator_client.get(path + "stop", params={"experimentKey": key}).json() \
        == {"msg": "Stop Requested"}
    view = emulator_client.state()["experiments"][key]
    assert view["state"] == "stopped" and view["endTimeMillis"] is not None
    emulator_client.get(path + "archive", params={"experimentKey": key})
    assert listed() == [] and listed(archived=True) == [key]
    emulator_client.get(path + "delete", params={"experimentKey": key})
    assert listed(archived=True) == []
    refused = emulator_client.post(path + "log-other",
                                   json={"experimentKey": key, "key": "a", "value": 1})
    assert refused.status_code == 400
    emulator_client.get(path + "restore", params={"experimentKey": key})
    assert listed() == [key]
    assert emulator_client.post(path + "log-other", json={"experimentKey": key, "key": "a",
                                                          "value": 1}).status_code == 200


def test_html_appends_unless_override_and_tags_are_a_set(emulator_client, target):
    key, _ = target
    path = "/api/rest/v2/write/experiment/"
    for html, override in (("<a>", False), ("<b>", False), ("<c>", True), ("<d>", False)):
        emulator_client.post(path + "html", json={"experimentKey": key, "html": html,
                                                  "override": override})
    for tags in (["x", "y"], ["y", "z"]):
        emulator_client.post(path + "tags", json={"experimentKey": key, "addedTags": tags})
    view = emulator_client.state()["experiments"][key]
    assert view["html"] == "<c><d>"
    assert view["tags"] == ["x", "y", "z"]


def test_project_update_renames_and_the_experiment_follows(emulator_client, target):
    key, project_id = target
    response = emulator_client.post("/api/rest/v2/write/project/update",
                                    json={"workspaceName": "ws", "projectName": "proj",
                                          "newProjectName": "renamed", "isPublic": True})
    assert response.json() == {"msg": "Updated"}
    metadata = emulator_client.get("/api/rest/v2/experiment/metadata",
                                   params={"experimentKey": key}).json()
    assert metadata["projectName"] == "renamed" and metadata["projectId"] == project_id
    both = emulator_client.post("/api/rest/v2/write/project/update",
                                json={"projectId": project_id, "workspaceName": "ws",
                                      "projectName": "renamed", "newProjectName": "x"})
    assert both.status_code == 400  # projectId and names together: not one of the two forms


def test_state_survives_a_restart(emulator_factory, tmp_path):
    from comet_journal.emulator.testing import EmulatorClient
    db = tmp_path / "kept.db"
    first = emulator_factory(db_path=db)
    client = EmulatorClient(first)
    key = client.create_experiment()
    client.post("/api/rest/v2/write/experiment/metric",
                json={"experimentKey": key, "metricName": "m", "metricValue": 1},
                headers={"Idempotency-Key": "once"})
    first.stop()

    second = emulator_factory(db_path=db)
    client = EmulatorClient(second)
    client.post("/api/rest/v2/write/experiment/metric",
                json={"experimentKey": key, "metricName": "m", "metricValue": 2},
                headers={"Idempotency-Key": "once"})
    state = client.state()
    assert [p["metricValue"] for p in state["experiments"][key]["metrics"]["m"]] == [1, 2]
    assert state["idempotency_replays"] == 1
    assert state["requests"]["by_route"]["log_metric"] == 2  # counts add up across restarts


def test_unknown_route_is_404_and_wrong_method_405(emulator_client):
    assert emulator_client.post("/api/rest/v2/write/experiment/nope", json={}).status_code == 404
    response = emulator_client.post("/api/rest/v2/write/experiment/stop", json={})
    assert response.status_code == 405 and "GET" in response.json()["msg"]
