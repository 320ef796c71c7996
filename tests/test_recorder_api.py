"""The public recorder API: every catalogue endpoint is reachable, payloads fit the catalogue,
and bad input is refused at the call site without journaling anything."""

from __future__ import annotations

import math
import os

import pytest

from journal_helpers import count, rows
from comet_journal import Experiment, Project
from comet_journal.schema.catalogue import ENDPOINTS, validate

GPU = {"gpuId": 0, "gpuUtilization": 50, "totalMemory": 100, "usedMemory": 40,
       "freeMemory": 60}

# One public call per catalogue endpoint. The test below fails if an endpoint is added to the
# catalogue without a way to journal it, or a call journals under the wrong endpoint.
EXPERIMENT_CALLS = {
    "experiment_create": None,  # journaled by Experiment() itself
    "experiment_start_end_time": lambda e, p: e.set_end_time(1_700_000_000_000),
    "experiment_stop": lambda e, p: e.stop(),
    "experiment_archive": lambda e, p: e.archive(),
    "experiment_delete": lambda e, p: e.delete(),
    "experiment_restore": lambda e, p: e.restore(),
    "experiment_keepalive": lambda e, p: e.keep_alive(),
    "log_metric": lambda e, p: e.log_metric("loss", 0.5, step=1),
    "log_parameter": lambda e, p: e.log_parameter("lr", 0.1),
    "log_other": lambda e, p: e.log_other("note", "x"),
    "log_html": lambda e, p: e.log_html("<b>hi</b>"),
    "add_tags": lambda e, p: e.add_tags(["a", "b"]),
    "log_output": lambda e, p: e.log_output("hello\n"),
    "log_graph": lambda e, p: e.set_model_graph("Linear(2, 1)"),
    "set_code": lambda e, p: e.set_code("print('hi')"),
    "upload_asset": lambda e, p: e.log_asset(str(p)),
    "upload_text_sample": lambda e, p: e.log_text("a sample", step=2),
    "upload_git_patch": lambda e, p: e.log_git_patch("diff --git a/x b/x\n"),
    "git_metadata": lambda e, p: e.log_git_metadata("main", "git@x:y.git", "abc", "/r", "me"),
    "system_details": lambda e, p: e.log_system_details(hostname="h", pid=1,
                                                        installedPackages=["a==1"]),
    "gpu_metrics": lambda e, p: e.log_gpu_metrics([GPU], step=1),
    "ram_metrics": lambda e, p: e.log_ram_metrics(1000, 400),
    "cpu_metrics": lambda e, p: e.log_cpu_metrics([10.0, 99]),
    "load_metrics": lambda e, p: e.log_load_metrics(1.5),
    "project_symlink": lambda e, p: e.create_symlink("other-project"),
    # the SDK's own routes (what no documented endpoint carries)
    "clientlib_asset_upload": lambda e, p: e.log_remote_asset("s3://bucket/data.csv"),
    "clientlib_log_remote_model": lambda e, p: e.log_remote_model("m", "s3://bucket/m"),
    "registry_model_item_create": lambda e, p: e.register_model("m", version="1.0.0"),
    "experiment_dependencies": lambda e, p: e.log_dependency("numpy", "2.0"),
    "experiment_file_path": lambda e, p: e.set_filename("train.py"),
    "experiment_cloud_details": lambda e, p: e.log_cloud_details("aws", {"region": "x"}),
    "clientlib_system_details": lambda e, p: e.log_system_details(machine="x86_64"),
    "clientlib_points_3d": lambda e, p: e.log_points_3d("scene", points=[[0, 0, 0]]),
}
PROJECT_CALLS = {
    "project_create": lambda pr: pr.create("a project", public=False),
    "project_update": lambda pr: pr.update(description="new"),
    "project_notes": lambda pr: pr.set_notes("notes"),
    "project_delete": lambda pr: pr.delete(delete_experiments=True),
    "viz_store_save": lambda pr: pr.save_viz_store("inst-1", {"k": "v"}),
}


def test_every_catalogue_endpoint_can_be_journaled_through_the_public_api(tmp_path):
    asset = tmp_path / "weights.bin"
    asset.write_bytes(os.urandom(3000))
    journal = str(tmp_path / "run.db")
    assert set(EXPERIMENT_CALLS) | set(PROJECT_CALLS) == set(ENDPOINTS)
    with Experiment(journal=journal, project_name="p", workspace="w",
                    experiment_name="walk") as exp:
        for name, call in EXPERIMENT_CALLS.items():
            if call is None:
                continue
            before = count(journal, name) if exp.flush() else None
            call(exp, asset)
            exp.flush()
            assert count(journal, name) == before + 1, name
    with Project(journal=journal, workspace="w", project_name="p") as project:
        for name, call in PROJECT_CALLS.items():
            call(project)
    journaled = rows(journal)
    assert {r["endpoint"] for r in journaled} == set(ENDPOINTS)
    for row in journaled:  # every row fits its catalogue entry
        validate(ENDPOINTS[row["endpoint"]], row["payload"], journal_form=True)
        assert (row["experiment_id"] is None) == (row["endpoint"] in PROJECT_CALLS)


def test_seq_is_strictly_increasing_and_rows_carry_time(tmp_path):
    journal = str(tmp_path / "run.db")
    with Experiment(journal=journal, project_name="p", workspace="w") as exp:
        for i in range(100):
            exp.log_metric("m", i, step=i)
    got = rows(journal)
    seqs = [r["seq"] for r in got]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    metric_steps = [r["payload"]["step"] for r in got if r["endpoint"] == "log_metric"]
    assert metric_steps == list(range(100))
    assert all(r["ts_ms"] > 1_600_000_000_000 for r in got)


def test_special_floats_are_kept_as_the_sdk_sends_them(tmp_path):
    journal = str(tmp_path / "run.db")
    with Experiment(journal=journal) as exp:
        exp.log_metric("a", math.nan)
        exp.log_metric("b", math.inf, step=1)
        exp.log_metric("c", -math.inf, step=2, epoch=1)
        exp.log_parameter("p", math.nan)
    values = {r["payload"]["metricName"]: r["payload"]["metricValue"]
              for r in rows(journal, "log_metric")}
    assert values == {"a": "NaN", "b": "Infinity", "c": "-Infinity"}
    assert rows(journal, "log_parameter")[0]["payload"]["parameterValue"] == "NaN"


def test_api_key_never_enters_the_journal(tmp_path):
    secret = "SECRETKEY1234567890abcdefSECRET"
    journal = tmp_path / "run.db"
    with Experiment(journal=str(journal), api_key=secret, project_name="p") as exp:
        exp.log_metric("m", 1)
    data = b"".join(p.read_bytes() for p in tmp_path.iterdir())
    assert secret.encode() not in data
    assert secret not in repr(exp) and secret not in str(vars(exp))


def test_context_and_nested_dicts(tmp_path):
    journal = str(tmp_path / "run.db")
    with Experiment(journal=journal) as exp:
        with exp.train():
            exp.log_metrics({"loss": 1.0, "acc": {"top1": 0.5}}, step=3)
        exp.log_metric("free", 2.0, include_context=True)
        exp.log_parameters({"opt": {"lr": 0.1, "beta": [0.9, 0.99]}})
    metrics = {r["payload"]["metricName"]: r["payload"] for r in rows(journal, "log_metric")}
    # The SDK's names: nested metric dicts join with "/"; a metric without a step gets the
    # current one (the last step given).
    assert metrics["loss"]["context"] == "train" and metrics["acc/top1"]["step"] == 3
    assert "context" not in metrics["free"] and metrics["free"]["step"] == 3
    params = {r["payload"]["parameterName"]: r["payload"]["parameterValue"]
              for r in rows(journal, "log_parameter")}
    assert params == {"opt|lr": 0.1, "opt|beta": [0.9, 0.99]}


def test_existing_key_continues_the_experiment(tmp_path):
    journal = str(tmp_path / "run.db")
    with Experiment(journal=journal, project_name="p") as first:
        first.log_metric("m", 1)
    with Experiment(journal=journal, experiment_key=first.key) as second:
        second.log_metric("m", 2)
    assert count(journal, "experiment_create") == 1
    assert {r["experiment_id"] for r in rows(journal, "log_metric")} == {1}


def test_directory_journal_gets_one_file_per_experiment(tmp_path):
    with Experiment(journal=str(tmp_path) + os.sep) as exp:
        exp.log_metric("m", 1)
    assert os.path.exists(tmp_path / f"{exp.key}.db")
    assert len(exp.key) == 32 and exp.key == exp.key.lower() and int(exp.key, 16) >= 0


def test_calls_after_end_are_ignored_not_raised(tmp_path, caplog):
    journal = str(tmp_path / "run.db")
    exp = Experiment(journal=journal)
    exp.end()
    before = count(journal)
    exp.log_metric("m", 1)
    exp.log_metric("m", 2, step=1)
    assert count(journal) == before
    assert "has ended" in caplog.text
    assert exp.end()["lost"] == 0  # idempotent


class _Bad:
    pass


BAD_CALLS = [
    ("log_metric", lambda e, p: e.log_metric(5, 1.0), TypeError, "name"),
    ("log_metric", lambda e, p: e.log_metric("", 1.0), ValueError, "name"),
    ("log_metric", lambda e, p: e.log_metric("m", {"a": 1}), TypeError, "value"),
    ("log_metric", lambda e, p: e.log_metric("m", None), ValueError, "value"),
    ("log_metric", lambda e, p: e.log_metric("m", [1, 2]), TypeError, "value"),
    ("log_metric", lambda e, p: e.log_metric("m", 1.0, step=-1), ValueError, "step"),
    ("log_metric", lambda e, p: e.log_metric("m", 1.0, step=1.5), TypeError, "step"),
    ("log_metric", lambda e, p: e.log_metric("m", 1.0, step="3"), TypeError, "step"),
    ("log_metric", lambda e, p: e.log_metric("m", 1.0, epoch=-2), ValueError, "epoch"),
    ("log_metric", lambda e, p: e.log_metric("m", 1.0, timestamp="now"), TypeError,
     "timestamp"),
    ("log_metrics", lambda e, p: e.log_metrics([1, 2]), TypeError, "dic"),
    ("log_metrics", lambda e, p: e.log_metrics({"a": 1, "b": object()}), TypeError, "value"),
    ("log_parameter", lambda e, p: e.log_parameter(None, 1), TypeError, "name"),
    ("log_parameter", lambda e, p: e.log_parameter("p", _Bad()), TypeError, "value"),
    ("log_parameters", lambda e, p: e.log_parameters("lr=1"), TypeError, "parameters"),
    ("log_other", lambda e, p: e.log_other("k", {"a": 1}), TypeError, "value"),
    ("log_others", lambda e, p: e.log_others({"a": [1]}), TypeError, "value"),
    ("log_html", lambda e, p: e.log_html(b"<b>"), TypeError, "html"),
    ("log_html", lambda e, p: e.log_html("<b>", clear="yes"), TypeError, "clear"),
    ("add_tag", lambda e, p: e.add_tag(3), TypeError, "tag"),
    ("add_tags", lambda e, p: e.add_tags("abc"), TypeError, "tags"),
    ("log_asset", lambda e, p: e.log_asset(str(p / "missing.bin")), FileNotFoundError,
     "missing.bin"),
    ("log_asset", lambda e, p: e.log_asset(str(p)), IsADirectoryError, "directory"),
    ("log_asset", lambda e, p: e.log_asset(12), TypeError, "file_data"),
    ("log_asset", lambda e, p: e.log_asset(str(p / "a.txt"), step=-1), ValueError, "step"),
    ("log_asset", lambda e, p: e.log_asset(str(p / "a.txt"), metadata=[1]), TypeError,
     "metadata"),
    ("log_asset_data", lambda e, p: e.log_asset_data(3.5), TypeError, "data"),
    ("log_text", lambda e, p: e.log_text(42), TypeError, "text"),
    ("set_code", lambda e, p: e.set_code(), TypeError, "code"),
    ("set_model_graph", lambda e, p: e.set_model_graph(None), ValueError, "graph"),
    ("log_git_patch", lambda e, p: e.log_git_patch(3), TypeError, "patch"),
    ("log_git_metadata", lambda e, p: e.log_git_metadata("b", "o", "p", "r", None), TypeError,
     "user"),
    ("log_system_details", lambda e, p: e.log_system_details(bogus=1), TypeError, "bogus"),
    ("log_system_details", lambda e, p: e.log_system_details(pid="x"), TypeError, "pid"),
    ("log_output", lambda e, p: e.log_output(b"bytes"), TypeError, "output"),
    ("log_cpu_metrics", lambda e, p: e.log_cpu_metrics([101]), TypeError, "cpu_percent"),
    ("log_cpu_metrics", lambda e, p: e.log_cpu_metrics(50), TypeError, "cpu_percent"),
    ("log_ram_metrics", lambda e, p: e.log_ram_metrics(10, 20), ValueError, "used_ram"),
    ("log_ram_metrics", lambda e, p: e.log_ram_metrics(-1, 0), TypeError, "total_ram"),
    ("log_load_metrics", lambda e, p: e.log_load_metrics("high"), TypeError, "load_average"),
    ("log_gpu_metrics", lambda e, p: e.log_gpu_metrics([{"gpuId": 0}]), ValueError, "gpus"),
    ("set_start_time", lambda e, p: e.set_start_time(-5), TypeError, "start_ms"),
    ("create_symlink", lambda e, p: e.create_symlink(""), ValueError, "project_name"),
]


@pytest.mark.parametrize("method,call,error,words", BAD_CALLS,
                         ids=[f"{m}-{i}" for i, (m, *_rest) in enumerate(BAD_CALLS)])
def test_bad_input_is_refused_at_the_call_site(tmp_path, monkeypatch, method, call, error,
                                              words):
    monkeypatch.setenv("COMET_JOURNAL_STRICT", "1")  # the default mode warns and counts
    (tmp_path / "a.txt").write_text("x")
    journal = str(tmp_path / "run.db")
    with Experiment(journal=journal) as exp:
        exp.flush()
        before = count(journal)
        with pytest.raises(error) as info:
            call(exp, tmp_path)
        exp.flush()
        assert count(journal) == before  # a refused call journals nothing
    assert words in str(info.value)
    if error in (TypeError, ValueError):
        assert f"{method}()" in str(info.value) or "log_" in str(info.value)


@pytest.mark.parametrize("kwargs,words", [
    ({"experiment_key": "short"}, "experiment_key"),
    ({"experiment_key": "x" * 31 + "!"}, "experiment_key"),
    ({"project_name": 3}, "project_name"),
    ({"durability": "sometimes"}, "durability"),
    ({"flush_interval": 0}, "flush_interval"),
    ({"max_queue": 0}, "max_queue"),
    ({"no_such_option": True}, "no_such_option"),
])
def test_bad_constructor_arguments(tmp_path, kwargs, words):
    with pytest.raises((TypeError, ValueError)) as info:
        Experiment(journal=str(tmp_path / "run.db"), **kwargs)
    assert words in str(info.value)


def test_project_bad_input(tmp_path):
    journal = str(tmp_path / "run.db")
    with pytest.raises(TypeError, match="workspace"):
        Project(journal=journal, workspace=None, project_name="p")
    with Project(journal=journal, workspace="w", project_name="p") as project:
        with pytest.raises(TypeError, match="new_name, description, public"):
            project.update()
        with pytest.raises(TypeError, match="public"):
            project.create("d", public="no")
