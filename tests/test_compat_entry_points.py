"""The SDK's entry points (``start``, ``OfflineExperiment``, ``ExistingExperiment``,
``ExperimentConfig``) and the optional packages of the media methods (Pillow, matplotlib,
pandas): installed, they work; missing, the call is refused with a warning naming them."""

from __future__ import annotations

import importlib.util
import logging

import pytest

import comet_journal
from journal_helpers import count, rows

QUIET = dict(log_code=False, log_git_metadata=False, log_git_patch=False, log_env_details=False,
             auto_output_logging=None, system_monitor_interval=None, keep_alive_interval=None)


def test_start_with_a_config_and_continuation(tmp_path, monkeypatch, caplog):
    monkeypatch.delenv("COMET_EXPERIMENT_KEY", raising=False)
    config = comet_journal.ExperimentConfig(name="run-1", tags=["a"],
                                            offline_directory=str(tmp_path), **QUIET)
    exp = comet_journal.start(project_name="p", workspace="w", experiment_config=config)
    exp.log_metric("m", 1.0, step=1)
    exp.end()
    assert exp.path == str(tmp_path / f"{exp.key}.db") and exp.name == "run-1"
    assert rows(exp.path, "add_tags")[0]["payload"] == {"addedTags": ["a"]}
    monkeypatch.setenv("COMET_EXPERIMENT_KEY", exp.key)
    again = comet_journal.ExistingExperiment(offline_directory=str(tmp_path), **QUIET)
    again.log_metric("m", 2.0)  # the current step is the process's: none yet
    again.end()
    assert again.path == exp.path and count(exp.path, "experiment_create") == 1
    with caplog.at_level(logging.WARNING, logger="comet_journal"):
        elsewhere = comet_journal.start(mode="get", journal=str(tmp_path / "other.db"), **QUIET)
        elsewhere.end()
    assert any("is not in" in r.getMessage() for r in caplog.records)


def test_entry_point_errors(monkeypatch):
    monkeypatch.delenv("COMET_EXPERIMENT_KEY", raising=False)
    with pytest.raises(ValueError, match="experiment_key"):
        comet_journal.start(mode="get")
    with pytest.raises(ValueError, match="mode"):
        comet_journal.start(mode="sometimes")
    with pytest.raises(ValueError, match="previous_experiment"):
        comet_journal.ExistingExperiment()
    with pytest.raises(TypeError, match="colour"):
        comet_journal.ExperimentConfig(colour="red")


def test_offline_experiment_argument_order(tmp_path):
    exp = comet_journal.OfflineExperiment("proj", "ws", offline_directory=str(tmp_path),
                                          api_key="k" * 20, **QUIET)
    exp.end()
    assert (exp.project_name, exp.workspace) == ("proj", "ws")
    assert exp.path == str(tmp_path / f"{exp.key}.db")


@pytest.mark.parametrize("module,call", [
    ("PIL", lambda e: e.log_image([[0, 255], [255, 0]], name="px.png")),
    ("matplotlib", lambda e: e.log_figure("fig")),
])
def test_optional_packages(tmp_path, caplog, module, call):
    journal = str(tmp_path / "run.db")
    with caplog.at_level(logging.WARNING, logger="comet_journal"):
        with comet_journal.Experiment(journal=journal, **QUIET) as exp:
            call(exp)
            summary = exp.end()
    assets = rows(journal, "upload_asset")
    if importlib.util.find_spec(module) is None:
        assert summary["refused"] == 1 and assets == []
        package = {"PIL": "pillow"}.get(module, module)
        assert any(f"pip install {package}" in r.getMessage() for r in caplog.records)
    else:
        assert summary["refused"] == 0 and assets[0]["payload"]["type"] == "image"


def test_log_table_with_pandas_when_installed(tmp_path):
    pandas = pytest.importorskip("pandas", reason="pandas is optional and not installed")
    journal = str(tmp_path / "run.db")
    with comet_journal.Experiment(journal=journal, **QUIET) as exp:
        exp.log_table("t.json", pandas.DataFrame({"a": [1, 2]}))
    assert rows(journal, "upload_asset")[0]["payload"]["fileName"] == "t.json"
