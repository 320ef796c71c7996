"""comet_ml-style tolerance and entry points: a logging call never kills the training loop by
default (values the SDK accepts are converted as it converts them, values it refuses are
refused with one warning per method and reason and counted), ``strict=True`` raises; the
SDK's positional order, ``disabled``, the journal location, the current step and the run's
identity."""

from __future__ import annotations

import argparse
import decimal
import logging
import os
import pathlib

import numpy as np
import pytest

from comet_journal import Experiment
from journal_helpers import count, rows

QUIET = dict(log_code=False, log_git_metadata=False, log_git_patch=False, log_env_details=False,
             auto_output_logging=None, system_monitor_interval=None, keep_alive_interval=None)


class Torch0d:
    """Shaped like a 0-d ``torch.Tensor``: ``item()``, ``ndim == 0`` and ``size`` a method."""

    ndim = 0

    def __init__(self, value):
        self._value = value

    def item(self):
        return self._value

    def size(self):
        return ()


def _args() -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--resume", default=None)
    parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path("/tmp/out"))
    parser.add_argument("--layers", type=int, nargs="+", default=[64, 32])
    return parser.parse_args([])


def _training_loop(exp: Experiment) -> None:
    exp.log_parameters(vars(_args()))
    exp.log_parameter("scheduler", {"name": "cosine", "warmup": 10})
    exp.log_other("data", pathlib.Path("/data/train"))
    for step in range(3):
        exp.log_metric("loss", np.float32(1.0 / (step + 1)), step=step)
        exp.log_metric("acc", Torch0d(0.5 + step / 10))
        exp.log_metric("lr", decimal.Decimal("0.1"))
        exp.log_metric("grad_norm", None)  # refused by the SDK too: skipped, counted
        exp.log_metrics({"val": {"loss": np.float64(0.3)}, "skipped": None}, prefix="eval")


def test_a_training_loop_with_awkward_values_runs_to_the_end(tmp_path, caplog):
    journal = str(tmp_path / "run.db")
    with caplog.at_level(logging.WARNING, logger="comet_journal"):
        exp = Experiment(journal=journal, **QUIET)
        _training_loop(exp)
        summary = exp.end()
    assert summary["refused"] == 6  # 3 x grad_norm, 3 x eval_skipped
    params = {r["payload"]["parameterName"]: r["payload"]["parameterValue"]
              for r in rows(journal, "log_parameter")}
    assert params == {"lr": 0.1, "resume": "None", "out": "/tmp/out", "layers": [64, 32],
                      "scheduler": '{"name": "cosine", "warmup": 10}'}
    others = {r["payload"]["key"]: r["payload"]["value"] for r in rows(journal, "log_other")}
    assert others == {"data": "/data/train"}
    points = [(r["payload"]["metricName"], r["payload"]["metricValue"], r["payload"].get("step"))
              for r in rows(journal, "log_metric")]
    assert points[:4] == [("loss", 1.0, 0), ("acc", 0.5, 0), ("lr", 0.1, 0),
                          ("eval_val/loss", 0.3, 0)]
    assert ("acc", 0.7, 2) in points and len(points) == 12
    refusals = [r for r in caplog.records if "refused" in r.getMessage()]
    assert len(refusals) == 1  # once per method and reason, however often it happens
    assert "log_metric()" in refusals[0].getMessage()


def test_strict_raises_at_the_first_bad_call(tmp_path):
    exp = Experiment(journal=str(tmp_path / "run.db"), strict=True, **QUIET)
    with pytest.raises(TypeError, match=r"log_parameters\(\).*PosixPath"):
        _training_loop(exp)
    exp.end()
    assert count(exp.path, "log_parameter") == 0  # the refused call journaled nothing


def test_strict_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("COMET_JOURNAL_STRICT", "1")
    with Experiment(journal=str(tmp_path / "run.db"), **QUIET) as exp:
        with pytest.raises(TypeError, match="log_other"):
            exp.log_other("k", object())
        exp.log_metric("ok", 1.0)
    monkeypatch.setenv("COMET_JOURNAL_STRICT", "0")
    with Experiment(journal=str(tmp_path / "run2.db"), **QUIET) as exp:
        exp.log_metric("bad", None)
        assert exp.end()["refused"] == 1


def test_refusals_are_warned_per_method_and_reason(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="comet_journal"):
        with Experiment(journal=str(tmp_path / "run.db"), **QUIET) as exp:
            for _ in range(3):
                exp.log_metric("m", None)
                exp.log_metric("m", 1.0, step=-1)
                exp.log_parameter("", 1)
            summary = exp.end()
    messages = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert summary["refused"] == 9 and len(messages) == 3
    assert any("log_parameter()" in m for m in messages)


def test_sdk_positional_order_never_stores_the_key(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    secret = "S3cr3tApiKeyValue0123456789"
    with Experiment(secret, "proj", "ws", **QUIET) as exp:
        exp.log_metric("m", 1.0)
    assert exp.project_name == "proj" and exp.workspace == "ws"
    files = [p for p in (tmp_path / ".comet-journal").iterdir()]
    # the journal, and the segments a directory run seals beside it (checked below too)
    assert sorted(p.name for p in files) == [f"{exp.key}.db", f"{exp.key}.db.segments"]
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert secret.encode() not in path.read_bytes()


def test_journal_location_order(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for var in ("COMET_JOURNAL", "COMET_OFFLINE_DIRECTORY"):
        monkeypatch.delenv(var, raising=False)
    first, second = Experiment(**QUIET), Experiment(**QUIET)
    assert first.path != second.path  # one file per run, never a shared one
    assert os.path.dirname(first.path) == ".comet-journal"
    monkeypatch.setenv("COMET_OFFLINE_DIRECTORY", str(tmp_path / "offline"))
    third = Experiment(**QUIET)
    assert third.path == str(tmp_path / "offline" / f"{third.key}.db")
    monkeypatch.setenv("COMET_JOURNAL", str(tmp_path / "env.db"))
    assert Experiment(**QUIET).path == str(tmp_path / "env.db")
    given = Experiment(offline_directory=tmp_path / "arg", **QUIET)
    assert given.path == str(tmp_path / "arg" / f"{given.key}.db")
    assert Experiment(journal=tmp_path / "j.db", offline_directory=tmp_path / "arg",
                      **QUIET).path == str(tmp_path / "j.db")


def test_disabled_journals_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    exp = Experiment(disabled=True, **QUIET)
    exp.log_parameters({"a": 1})
    exp.log_metric("m", 1.0)
    exp.log_asset_data("x", name="x.txt")
    exp.log_metric("bad", None)
    assert exp.end() == {"journaled": 0, "lost": 0, "errors": 0, "last_error": "",
                         "refused": 1}
    assert list(tmp_path.iterdir()) == []


def test_current_step_identity_tags_and_links(tmp_path):
    journal = str(tmp_path / "run.db")
    with Experiment(journal=journal, project_name="p", **QUIET) as exp:
        exp.log_metric("before", 1.0)
        exp.set_step(5)
        exp.set_epoch(2)
        exp.log_metric("after", 1.0)
        exp.log_parameter("lr", 0.1)
        exp.log_metric("explicit", 1.0, step=7)
        exp.log_metric("follows", 1.0)
        exp.set_name("run-a")
        exp.add_tags(["a", "b"])
        exp.add_tag("a")
        exp.log_html_url("https://x.test/f?a=1&b=2", label="File")
        assert (exp.id, exp.name, exp.get_name(), exp.url) == (exp.key, "run-a", "run-a", None)
        assert exp.get_tags() == ["a", "b"]
    metrics = {r["payload"]["metricName"]: r["payload"] for r in rows(journal, "log_metric")}
    assert "step" not in metrics["before"]
    assert (metrics["after"]["step"], metrics["after"]["epoch"]) == (5, 2)
    assert metrics["follows"]["step"] == 7
    assert rows(journal, "log_parameter")[0]["payload"]["step"] == 5
    assert {"key": "Name", "value": "run-a"} in [r["payload"] for r in rows(journal, "log_other")]
    assert rows(journal, "log_html")[0]["payload"]["html"] == (
        '<div><b>File</b>: <a href="https://x.test/f?a=1&amp;b=2" target="_blank">'
        'https://x.test/f?a=1&amp;b=2</a></div>')


def test_an_unexpected_error_in_a_call_is_refused_with_its_traceback(tmp_path, caplog):
    class BrokenFigure:
        def savefig(self, *args, **kwargs):
            raise RuntimeError("backend exploded")

    with caplog.at_level(logging.WARNING, logger="comet_journal"):
        with Experiment(journal=str(tmp_path / "run.db"), **QUIET) as exp:
            exp.log_figure("f", BrokenFigure())
            assert exp.end()["refused"] == 1
    (record,) = [r for r in caplog.records if "refused" in r.getMessage()]
    assert "backend exploded" in record.getMessage() and record.exc_info is not None
    with Experiment(journal=str(tmp_path / "strict.db"), strict=True, **QUIET) as exp:
        with pytest.raises(RuntimeError, match="exploded"):
            exp.log_figure("f", BrokenFigure())
