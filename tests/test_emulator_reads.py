"""REST v2 reads: Comet's paths, shapes and exact Content-Type."""

from __future__ import annotations

import io
import zipfile

import pytest

READ = "/api/rest/v2/"
WRITE = "/api/rest/v2/write/experiment/"


@pytest.fixture
def key(emulator_client):
    return emulator_client.create_experiment("ws", "proj", name="reader")


@pytest.mark.parametrize("path", [
    "experiment/metadata", "experiment/metrics/get-all", "experiment/metrics/summary",
    "experiment/parameters", "experiment/log-other", "experiment/output", "experiment/html",
    "experiment/code", "experiment/graph", "experiment/tags", "experiment/system-details",
    "experiment/git/metadata", "experiment/asset/list"])
def test_reads_answer_exactly_application_json(emulator_client, key, path):
    response = emulator_client.get(READ + path, params={"experimentKey": key})
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"  # no charset suffix


def test_an_unknown_experiment_reads_as_404(emulator_client):
    response = emulator_client.get(READ + "experiment/metadata",
                                   params={"experimentKey": "c" * 32})
    assert response.status_code == 404 and response.json()["code"] == 404


def test_metrics_read_back_as_comet_shows_them(emulator_client, key):
    for step, value in enumerate((3, 1.5, "NaN")):
        emulator_client.post(WRITE + "metric", json={"experimentKey": key, "metricName": "m",
                                                     "metricValue": value, "step": step,
                                                     "context": "train"})
    one = emulator_client.get(READ + "experiment/metrics/get-metric",
                              params={"experimentKey": key, "metricName": "m"}).json()
    assert [p["metricValue"] for p in one["metrics"]] == ["3", "1.5", "NaN"]
    assert [p["runContext"] for p in one["metrics"]] == ["train"] * 3
    summary = emulator_client.get(READ + "experiment/metrics/summary",
                                  params={"experimentKey": key}).json()["values"][0]
    assert (summary["valueMax"], summary["valueMin"], summary["valueCurrent"]) == \
        ("3", "1.5", "NaN")
    assert (summary["stepMax"], summary["stepMin"], summary["stepCurrent"]) == (0, 1, 2)


def test_listings_of_workspaces_projects_and_experiments(emulator_client, key):
    assert "ws" in emulator_client.get(READ + "workspaces").json()["workspaceNames"]
    projects = emulator_client.get(READ + "projects", params={"workspaceName": "ws"}).json()
    assert [(p["projectName"], p["numberOfExperiments"]) for p in projects["projects"]] == \
        [("proj", 1)]
    project_id = projects["projects"][0]["projectId"]
    by_id = emulator_client.get(READ + "experiments", params={"projectId": project_id}).json()
    assert [(e["experimentKey"], e["experimentName"]) for e in by_id["experiments"]] == \
        [(key, "reader")]
    details = emulator_client.get(READ + "account-details").json()
    assert set(details) == {"userName", "defaultWorkspaceName"}


def test_asset_overwrite_hides_the_older_upload_and_get_by_name(emulator_client, key):
    for data, overwrite in ((b"v1", False), (b"v2", True)):
        emulator_client.post(WRITE + "upload-asset",
                             params={"experimentKey": key, "fileName": "w.bin",
                                     "overwrite": str(overwrite)},
                             files={"file": ("file", data)})
    listed = emulator_client.get(READ + "experiment/asset/list",
                                 params={"experimentKey": key}).json()["assets"]
    assert [a["fileSize"] for a in listed] == [2] and len(listed) == 1
    named = emulator_client.get(READ + "experiment/asset/get-by-name",
                                params={"experimentKey": key, "assetName": "w.bin"}).json()
    body = emulator_client.get(READ + "experiment/asset/get-asset",
                               params={"experimentKey": key,
                                       "assetId": named["assets"][0]["assetId"]})
    assert body.content == b"v2"
    assert body.headers["Content-Type"] == "application/octet-stream"
    # both uploads remain in the record
    assert len(emulator_client.state()["experiments"][key]["assets"]) == 2


def test_git_patch_reads_back_as_bytes_or_a_msg(emulator_client, key):
    empty = emulator_client.get(READ + "experiment/git/patch", params={"experimentKey": key})
    assert empty.content.startswith(b'{"msg"')
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("git_diff.patch", "diff")
    emulator_client.post(WRITE + "git/patch", params={"experimentKey": key},
                         files={"file": ("filename", buffer.getvalue())})
    patch = emulator_client.get(READ + "experiment/git/patch", params={"experimentKey": key})
    assert patch.content == buffer.getvalue()


def test_system_details_have_every_key_the_sdk_reads(emulator_client, key):
    emulator_client.post("/clientlib/rest/v2/write/experiment/system-details",
                         json={"experimentKey": key, "command": "python x.py",
                               "env": {"A": "1"}, "pid": 7})
    details = emulator_client.get(READ + "experiment/system-details",
                                  params={"experimentKey": key}).json()
    assert details["pid"] == 7 and details["command"] == "python x.py"
    assert details["osPackages"] == [] and details["user"] is None
