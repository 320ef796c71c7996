"""ExistingExperiment-style continuation: a later job (a real process) passing the experiment
key (``COMET_EXPERIMENT_KEY``) appends to the same experiment's journal, and the uploader sends
the continuation to the same server experiment, every call exactly once (real emulator)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from journal_helpers import rows
from test_upload_support import assert_server_matches, upload

JOB = """
import json, sys, comet_journal
exp = comet_journal.start(project_name="proj", workspace="ws",
                          experiment_config=comet_journal.ExperimentConfig(
                              offline_directory=sys.argv[1], name="run", log_code=False,
                              log_git_metadata=False, log_git_patch=False,
                              log_env_details=False, auto_output_logging=None))
first = int(sys.argv[2])
for step in range(first, first + 3):
    exp.log_metric("loss", 1.0 / (step + 1), step=step)
exp.log_parameter("job_start", first)
print(json.dumps({"key": exp.get_key(), "path": exp.path}))
exp.end()
"""


def _job(directory: str, first: int, key: str | None = None) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMET_")}
    if key:
        env["COMET_EXPERIMENT_KEY"] = key
    proc = subprocess.run([sys.executable, "-c", JOB, directory, str(first)], env=env,
                          capture_output=True, text=True, timeout=60, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("clientlib", [True, False], ids=["clientlib", "documented-only"])
def test_a_later_job_continues_the_same_server_experiment(emulator_factory, tmp_path,
                                                          clientlib):
    emu = emulator_factory(clientlib=clientlib)
    directory = str(tmp_path / "journals")
    first = _job(directory, 0)
    upload(emu, first["path"], check=0)
    second = _job(directory, 3, key=first["key"])
    assert second == first  # same key, same journal file (<dir>/<key>.db)
    creates = rows(first["path"], "experiment_create")
    assert len(creates) == 1  # the continuation did not journal a second experiment
    upload(emu, first["path"], check=0)
    assert_server_matches(emu, first["path"])  # every call exactly once, nothing more
    state = emu.state()
    points = sorted(a["fields"]["step"] for a in state["applied"]
                    if a["endpoint"] == "log_metric")
    assert points == [0, 1, 2, 3, 4, 5]
    created = [a for a in state["applied"] if a["endpoint"] in
               ("experiment_create", "clientlib_add_run")]
    assert len(created) == 1


def test_sdk_asset_calls_upload_with_their_types_and_fields(emulator, tmp_path):
    """The new asset methods' calls (epoch, groupingName, chart types) go through the
    uploader's upload-asset requests and arrive as journaled."""
    from comet_journal import Experiment

    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "w.bin").write_bytes(b"w" * 10)
    journal = str(tmp_path / "assets.db")
    with Experiment(journal=journal, project_name="p", workspace="ws", log_code=False,
                    log_git_metadata=False, log_git_patch=False, log_env_details=False,
                    auto_output_logging=None) as exp:
        exp.log_model("net", str(tmp_path / "model"))
        exp.log_asset_data("x", name="x.txt", epoch=2, step=1)
        exp.log_confusion_matrix(matrix=[[1, 0], [0, 1]])
        exp.log_curve("roc", [0, 1], [0, 1])
        exp.log_histogram_3d([1, 2, 3])
    upload(emulator, journal, check=0)
    assert_server_matches(emulator, journal)
    assets = {a["fields"].get("fileName"): a["fields"] for a in emulator.state()["applied"]
              if a["endpoint"] == "upload_asset"}
    assert assets["model/w.bin"]["type"] == "model-element"
    assert assets["x.txt"]["epoch"] == 2
    assert {assets[n]["type"] for n in ("confusion-matrix.json", "roc", "histogram_3d.json")} \
        == {"confusion-matrix", "curve", "histogram3d"}


def test_a_later_job_in_a_new_journal_file_continues_the_same_server_experiment(emulator,
                                                                                tmp_path):
    # the second job runs elsewhere (another directory, another host's scratch): a new
    # journal holding the same key is adopted by the server experiment, nothing duplicated
    first = _job(str(tmp_path / "job1"), 0)
    upload(emulator, first["path"], check=0)
    second = _job(str(tmp_path / "job2"), 3, key=first["key"])
    assert second["key"] == first["key"] and second["path"] != first["path"]
    upload(emulator, second["path"], check=0)
    state = emulator.state()
    points = sorted(a["fields"]["step"] for a in state["applied"]
                    if a["endpoint"] == "log_metric")
    assert points == [0, 1, 2, 3, 4, 5]
    assert list(state["experiments"]) == [first["key"]]  # one experiment on the server
    values = sorted(a["fields"]["parameterValue"] for a in state["applied"]
                    if a["endpoint"] == "log_parameter" and
                    a["fields"]["parameterName"] == "job_start")
    assert values in (["0", "3"], [0, 3])
