"""The official ``comet_ml`` package against the emulator: REST writes read back through
``API``/``APIExperiment``, and a real ``comet upload`` of an offline experiment."""

from __future__ import annotations

import glob
import os
import subprocess
import sys

import pytest


@pytest.fixture
def comet_env(emulator, monkeypatch, tmp_path):
    """Point the SDK at the emulator (and away from any user configuration)."""
    config = tmp_path / "comet.config"
    config.write_text("[comet]\n")
    env = {"COMET_URL_OVERRIDE": emulator.url + "/clientlib/", "COMET_API_KEY": "test-key",
           "COMET_CONFIG": str(config), "COMET_DISABLE_ANNOUNCEMENT": "1",
           "COMET_ERROR_TRACKING_ENABLE": "false"}  # no reports to the SDK's error service
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


def test_api_experiment_writes_and_reads_back(emulator, comet_env, tmp_path):
    from comet_ml import API, APIExperiment

    api = API(api_key="test-key", cache=False)
    exp = APIExperiment(api=api, workspace="ws", project_name="proj", experiment_name="run-1")
    assert len(exp.key) == 32 and exp.name == "run-1"

    exp.log_metric("loss", 0.5, step=1)
    exp.log_metric("loss", 0.25, step=2)
    exp.log_parameter("lr", 0.01)
    exp.log_other("color", "red")
    exp.log_html("<b>report</b>")
    exp.add_tags(["baseline", "cpu"])
    exp.log_output("hello\n")
    asset = tmp_path / "notes.txt"
    asset.write_text("asset body")
    exp.log_asset(str(asset), metadata={"kind": "notes"})
    exp.set_code("print(1)")
    exp.set_git_metadata("me", "/src", "main", "abc", "git@example:x.git")
    exp.set_hostname("node-7")
    exp.set_start_time(1_700_000_000_000)
    exp.set_end_time(1_700_000_100_000)

    # read back through the REST v2 read endpoints, as the SDK parses them
    loss = exp.get_metrics("loss")
    assert [(m["step"], float(m["metricValue"])) for m in loss] == [(1, 0.5), (2, 0.25)]
    assert [m["metricName"] for m in exp.get_metrics()] == ["loss", "loss"]
    summary = exp.get_metrics_summary("loss")
    assert float(summary["valueCurrent"]) == 0.25 and float(summary["valueMax"]) == 0.5
    assert float(exp.get_parameters_summary("lr")["valueCurrent"]) == 0.01
    assert exp.get_others_summary("color") == ["red"]
    assert exp.get_html() == "<b>report</b>"
    assert exp.get_tags() == ["baseline", "cpu"]
    assert exp.get_output() == "hello\n"
    assert exp.get_code() == "print(1)"
    assert exp.get_git_metadata()["branch"] == "main"
    assert exp.get_hostname() == "node-7"
    assets = exp.get_asset_list()
    assert [a["metadata"] for a in assets] == [{"kind": "notes"}]
    assert exp.get_asset(assets[0]["assetId"]) == b"asset body"
    metadata = exp.get_metadata()
    assert (metadata["startTimeMillis"], metadata["endTimeMillis"]) == (1_700_000_000_000,
                                                                       1_700_000_100_000)
    assert [e.key for e in api.get_experiments("ws", "proj")] == [exp.key]
    assert api.get_experiment_by_key(exp.key).name == "run-1"
    assert "proj" in api.get_projects("ws")

    # and the emulator's own record agrees
    view = emulator.state()["experiments"][exp.key]
    assert [p["metricValue"] for p in view["metrics"]["loss"]] == [0.5, 0.25]
    assert view["systemDetails"]["hostname"] == "node-7"


def test_api_project_life(emulator, comet_env):
    from comet_ml import API

    api = API(api_key="test-key", cache=False)
    api.create_project("ws", "p2", "first description")
    assert api.get_project("ws", "p2")["projectDescription"] == "first description"
    api.update_project("ws", "p2", new_project_name="p3")
    assert api.get_project("ws", "p3")["projectName"] == "p3"
    api.delete_project("ws", "p3")
    assert "p3" not in (api.get_projects("ws") or [])


def _offline_archive(directory) -> tuple[str, str]:
    import comet_ml

    exp = comet_ml.OfflineExperiment(
        project_name="proj", workspace="ws", offline_directory=str(directory),
        log_code=False, log_graph=False, auto_param_logging=False, auto_metric_logging=False,
        auto_output_logging=None, log_env_details=False, log_git_metadata=False,
        log_git_patch=False, log_env_gpu=False, log_env_host=False, log_env_cpu=False,
        display_summary_level=0)
    for step in range(30):
        exp.log_metric("loss", 1.0 / (step + 1), step=step)
    exp.log_parameter("lr", 0.1)
    exp.log_other("color", "red")
    exp.add_tag("offline")
    asset = directory / "weights.bin"
    asset.write_bytes(b"\x01\x02\x03")
    exp.log_asset(str(asset))
    key = exp.get_key()
    exp.end()
    return key, glob.glob(str(directory / "*.zip"))[0]


def test_comet_upload_of_an_offline_experiment(emulator, comet_env, tmp_path):
    key, archive = _offline_archive(tmp_path)
    upload = [sys.executable, "-m", "comet_ml.scripts.comet_upload", archive]
    env = {**os.environ, **comet_env}

    done = subprocess.run(upload, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr

    state = emulator.state()
    view = state["experiments"][key]
    assert [p["step"] for p in view["metrics"]["loss"]] == list(range(30))
    assert view["parameters"]["lr"][-1]["parameterValue"] == 0.1
    assert view["others"]["color"][-1]["value"] == "red"
    assert view["tags"] == ["offline"]
    assert [a["fileName"] for a in view["assets"]] == ["weights.bin"]
    assert view["state"] == "ended" and view["offline"] is True
    assert state["rejections"] == []

    # a second upload of the same archive is refused by the key check (sdk_error_code 90999)
    again = subprocess.run(upload, env=env, capture_output=True, text=True, timeout=120)
    assert again.returncode == 1
    assert "already uploaded" in again.stdout + again.stderr
    assert len(emulator.state()["experiments"]) == 1
