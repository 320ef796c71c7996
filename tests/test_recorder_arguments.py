"""Wrong argument types and values for every public method of ``recorder.Experiment`` and
``recorder.Project``: each is refused at the call site with an error naming the method and
the argument, journals nothing, and leaves the object usable.

``test_every_public_method_has_rows`` introspects both classes, so a new public method without
rows in the table fails the suite. (``tests/test_recorder_api.py::BAD_CALLS`` holds the first
rows; this table is the complete one.)
"""

from __future__ import annotations

import inspect
import math
import os
import sqlite3

import pytest

from comet_journal import Experiment, Project


@pytest.fixture(autouse=True)
def _strict(monkeypatch):
    """These rows are the strict checks (``COMET_JOURNAL_STRICT=1``); the default mode warns
    and counts instead (tests/test_compat_tolerance.py)."""
    monkeypatch.setenv("COMET_JOURNAL_STRICT", "1")


class _Opaque:
    """An object no recorder argument accepts."""


GPU = {"gpuId": 0, "gpuUtilization": 50, "totalMemory": 100, "usedMemory": 40,
       "freeMemory": 60}


def _gpu(**change):
    return [{**GPU, **change}]


# (method, call, error, words): ``call(exp, project, tmp_path)``; ``words`` must appear in the
# message, as must ``<method>()`` (``<Class>`` for the constructors). ``__init__`` rows get a
# fresh journal path as ``tmp_path / "new.db"``, which must not exist afterwards.
E, P = "Experiment", "Project"
ROWS: list[tuple[str, str, object, type, str]] = [
    # --- Experiment(...) ---
    (E, "__init__", lambda e, p, d: Experiment(journal=3), TypeError, "journal"),
    (E, "__init__", lambda e, p, d: Experiment(journal=str(d / "new.db"), workspace=3),
     TypeError, "workspace"),
    (E, "__init__", lambda e, p, d: Experiment(journal=str(d / "new.db"), project_name=["p"]),
     TypeError, "project_name"),
    (E, "__init__", lambda e, p, d: Experiment(journal=str(d / "new.db"), experiment_name=3),
     TypeError, "experiment_name"),
    (E, "__init__", lambda e, p, d: Experiment(journal=str(d / "new.db"), experiment_key="x" * 20),
     ValueError, "experiment_key"),
    (E, "__init__", lambda e, p, d: Experiment(journal=str(d / "new.db"), flush_interval="1"),
     ValueError, "flush_interval"),
    (E, "__init__", lambda e, p, d: Experiment(journal=str(d / "new.db"), max_queue=True),
     ValueError, "max_queue"),
    (E, "__init__", lambda e, p, d: Experiment(journal=str(d / "new.db"), max_journal_bytes="1G"),
     TypeError, "max_journal_bytes"),
    (E, "__init__", lambda e, p, d: Experiment(journal=str(d / "new.db"), max_journal_bytes=-1),
     ValueError, "max_journal_bytes"),
    (E, "__init__", lambda e, p, d: Experiment(journal=str(d / "new.db"), durability=True),
     ValueError, "durability"),
    (E, "__init__", lambda e, p, d: Experiment(journal=str(d / "new.db"),
                                               auto_output_logging="loud"),
     ValueError, "auto_output_logging"),
    (E, "__init__", lambda e, p, d: Experiment(journal=str(d / "new.db"), log_code="yes"),
     TypeError, "log_code"),
    (E, "__init__", lambda e, p, d: Experiment(journal=str(d / "new.db"),
                                               system_monitor_interval=0),
     ValueError, "system_monitor_interval"),
    (E, "__init__", lambda e, p, d: Experiment(journal=str(d / "new.db"), colour="red"),
     TypeError, "colour"),
    # --- lifecycle ---
    (E, "flush", lambda e, p, d: e.flush("soon"), TypeError, "timeout"),
    (E, "flush", lambda e, p, d: e.flush(-1), ValueError, "timeout"),
    (E, "flush", lambda e, p, d: e.flush(math.nan), ValueError, "timeout"),
    (E, "end", lambda e, p, d: e.end("soon"), TypeError, "timeout"),
    (E, "end", lambda e, p, d: e.end(-5), ValueError, "timeout"),
    (E, "end", lambda e, p, d: e.end(timeout=True), TypeError, "timeout"),
    (E, "get_key", lambda e, p, d: e.get_key(1), TypeError, "positional argument"),
    (E, "get_key", lambda e, p, d: e.get_key(full=True), TypeError, "full"),
    # --- metrics ---
    (E, "log_metric", lambda e, p, d: e.log_metric(5, 1.0), TypeError, "name"),
    (E, "log_metric", lambda e, p, d: e.log_metric("", 1.0), ValueError, "name"),
    (E, "log_metric", lambda e, p, d: e.log_metric("m", {"a": 1}), TypeError, "value"),
    (E, "log_metric", lambda e, p, d: e.log_metric("m", None), ValueError, "value"),
    (E, "log_metric", lambda e, p, d: e.log_metric("m", b"1"), TypeError, "value"),
    (E, "log_metric", lambda e, p, d: e.log_metric("m", 1.0, step=-1), ValueError, "step"),
    (E, "log_metric", lambda e, p, d: e.log_metric("m", 1.0, step=True), TypeError, "step"),
    (E, "log_metric", lambda e, p, d: e.log_metric("m", 1.0, step="3"), TypeError, "step"),
    (E, "log_metric", lambda e, p, d: e.log_metric("m", 1.0, epoch=1.5), TypeError, "epoch"),
    (E, "log_metric", lambda e, p, d: e.log_metric("m", 1.0, timestamp=-1.0), ValueError,
     "timestamp"),
    (E, "log_metric", lambda e, p, d: e.log_metric("m", 1.0, timestamp=math.inf), ValueError,
     "timestamp"),
    (E, "log_metric", lambda e, p, d: e.log_metric("m", 1.0, include_context="yes"),
     TypeError, "include_context"),
    (E, "log_metrics", lambda e, p, d: e.log_metrics([("a", 1)]), TypeError, "dic"),
    (E, "log_metrics", lambda e, p, d: e.log_metrics({"a": 1, "b": _Opaque()}), TypeError,
     "value"),
    (E, "log_metrics", lambda e, p, d: e.log_metrics({"": 1}), ValueError, "key"),
    (E, "log_metrics", lambda e, p, d: e.log_metrics({"a": 1}, prefix=3), TypeError, "prefix"),
    (E, "log_metrics", lambda e, p, d: e.log_metrics({"a": 1}, step=-1), ValueError, "step"),
    (E, "log_metrics", lambda e, p, d: e.log_metrics({"a": 1}, epoch="x"), TypeError, "epoch"),
    (E, "log_metrics", lambda e, p, d: e.log_metrics({"a": 1}, include_context=1), TypeError,
     "include_context"),
    (E, "context_manager", lambda e, p, d: e.context_manager(3), TypeError, "context"),
    (E, "context_manager", lambda e, p, d: e.context_manager(""), ValueError, "context"),
    (E, "train", lambda e, p, d: e.train("fold-1"), TypeError, "positional argument"),
    (E, "train", lambda e, p, d: e.train(context="x"), TypeError, "context"),
    (E, "validate", lambda e, p, d: e.validate("fold-1"), TypeError, "positional argument"),
    (E, "validate", lambda e, p, d: e.validate(context="x"), TypeError, "context"),
    (E, "test", lambda e, p, d: e.test("fold-1"), TypeError, "positional argument"),
    (E, "test", lambda e, p, d: e.test(context="x"), TypeError, "context"),
    # --- parameters, others, html, tags ---
    (E, "log_parameter", lambda e, p, d: e.log_parameter(None, 1), TypeError, "name"),
    (E, "log_parameter", lambda e, p, d: e.log_parameter(" ", 1), ValueError, "name"),
    (E, "log_parameter", lambda e, p, d: e.log_parameter("p", _Opaque()), TypeError, "value"),
    (E, "log_parameter", lambda e, p, d: e.log_parameter("p", None), ValueError, "value"),
    (E, "log_parameter", lambda e, p, d: e.log_parameter("p", [1, {"a": 1}]), TypeError,
     "value"),
    (E, "log_parameter", lambda e, p, d: e.log_parameter("p", 1, step=-1), ValueError, "step"),
    (E, "log_parameters", lambda e, p, d: e.log_parameters("lr=1"), TypeError, "parameters"),
    (E, "log_parameters", lambda e, p, d: e.log_parameters({"a": 1, "b": None}), ValueError,
     "value"),
    (E, "log_parameters", lambda e, p, d: e.log_parameters({"a": 1}, prefix=1), TypeError,
     "prefix"),
    (E, "log_parameters", lambda e, p, d: e.log_parameters({"a": 1}, step="1"), TypeError,
     "step"),
    (E, "log_parameters", lambda e, p, d: e.log_parameters({"a": 1}, nested_support="no"),
     TypeError, "nested_support"),
    (E, "log_other", lambda e, p, d: e.log_other(1, "x"), TypeError, "key"),
    (E, "log_other", lambda e, p, d: e.log_other("", "x"), ValueError, "key"),
    (E, "log_other", lambda e, p, d: e.log_other("k", {"a": 1}), TypeError, "value"),
    (E, "log_other", lambda e, p, d: e.log_other("k", None), ValueError, "value"),
    (E, "log_others", lambda e, p, d: e.log_others("a=1"), TypeError, "dictionary"),
    (E, "log_others", lambda e, p, d: e.log_others({1: "x"}), TypeError, "key"),
    (E, "log_others", lambda e, p, d: e.log_others({"a": 1, "b": [1]}), TypeError, "value"),
    (E, "log_html", lambda e, p, d: e.log_html(b"<b>"), TypeError, "html"),
    # --- the SDK-only items (journaled as calls to the SDK's routes) ---
    (E, "log_remote_asset", lambda e, p, d: e.log_remote_asset(3), TypeError, "uri"),
    (E, "log_remote_asset", lambda e, p, d: e.log_remote_asset("s3://b/k", overwrite="yes"),
     TypeError, "overwrite"),
    (E, "log_remote_asset", lambda e, p, d: e.log_remote_asset("s3://b/k", step=-1),
     ValueError, "step"),
    (E, "log_remote_model", lambda e, p, d: e.log_remote_model("", "s3://b"), TypeError,
     "model_name"),
    (E, "log_remote_model", lambda e, p, d: e.log_remote_model("m", 5), TypeError, "uri"),
    (E, "register_model", lambda e, p, d: e.register_model(3), TypeError, "model_name"),
    (E, "register_model", lambda e, p, d: e.register_model("m", version=2), TypeError,
     "version"),
    (E, "register_model", lambda e, p, d: e.register_model("m", tags="a"), TypeError, "tags"),
    (E, "log_dependency", lambda e, p, d: e.log_dependency(None, "1"), ValueError,
     "must not be None"),
    (E, "log_dependency", lambda e, p, d: e.log_dependency("x", None), ValueError,
     "must not be None"),
    (E, "set_filename", lambda e, p, d: e.set_filename(3), TypeError, "fname"),
    (E, "set_filename", lambda e, p, d: e.set_filename(""), TypeError, "fname"),
    (E, "log_cloud_details", lambda e, p, d: e.log_cloud_details(3), TypeError, "provider"),
    (E, "log_cloud_details", lambda e, p, d: e.log_cloud_details("aws", metadata=[1]),
     TypeError, "metadata"),
    (E, "log_html", lambda e, p, d: e.log_html(None), TypeError, "html"),
    (E, "log_html", lambda e, p, d: e.log_html("<b>", clear="yes"), TypeError, "clear"),
    (E, "add_tag", lambda e, p, d: e.add_tag(3), TypeError, "tag"),
    (E, "add_tag", lambda e, p, d: e.add_tag(""), ValueError, "tag"),
    (E, "add_tag", lambda e, p, d: e.add_tag(["a"]), TypeError, "tag"),
    (E, "add_tags", lambda e, p, d: e.add_tags("abc"), TypeError, "tags"),
    (E, "add_tags", lambda e, p, d: e.add_tags(["a", 3]), TypeError, "tags"),
    (E, "add_tags", lambda e, p, d: e.add_tags(["a", ""]), TypeError, "tags"),
    (E, "add_tags", lambda e, p, d: e.add_tags(None), TypeError, "tags"),
    # --- output, times, life of the experiment ---
    (E, "log_output", lambda e, p, d: e.log_output(b"bytes"), TypeError, "output"),
    (E, "log_output", lambda e, p, d: e.log_output("x", stderr="no"), TypeError, "stderr"),
    (E, "log_output", lambda e, p, d: e.log_output("x", context=3), TypeError, "context"),
    (E, "log_output", lambda e, p, d: e.log_output("x", timestamp="now"), TypeError,
     "timestamp"),
    (E, "set_start_time", lambda e, p, d: e.set_start_time(-5), TypeError, "start_ms"),
    (E, "set_start_time", lambda e, p, d: e.set_start_time(1.5e12), TypeError, "start_ms"),
    (E, "set_start_time", lambda e, p, d: e.set_start_time(None), TypeError, "start_ms"),
    (E, "set_start_time", lambda e, p, d: e.set_start_time(True), TypeError, "start_ms"),
    (E, "set_end_time", lambda e, p, d: e.set_end_time("tomorrow"), TypeError, "end_ms"),
    (E, "set_end_time", lambda e, p, d: e.set_end_time(-1), TypeError, "end_ms"),
    (E, "set_end_time", lambda e, p, d: e.set_end_time(None), TypeError, "end_ms"),
    (E, "keep_alive", lambda e, p, d: e.keep_alive(1), TypeError, "positional argument"),
    (E, "keep_alive", lambda e, p, d: e.keep_alive(interval=5), TypeError, "interval"),
    (E, "stop", lambda e, p, d: e.stop(True), TypeError, "positional argument"),
    (E, "stop", lambda e, p, d: e.stop(force=True), TypeError, "force"),
    (E, "archive", lambda e, p, d: e.archive(True), TypeError, "positional argument"),
    (E, "archive", lambda e, p, d: e.archive(now=True), TypeError, "now"),
    (E, "delete", lambda e, p, d: e.delete(True), TypeError, "positional argument"),
    (E, "delete", lambda e, p, d: e.delete(permanently=True), TypeError, "permanently"),
    (E, "restore", lambda e, p, d: e.restore("yes"), TypeError, "positional argument"),
    (E, "restore", lambda e, p, d: e.restore(force=True), TypeError, "force"),
    (E, "create_symlink", lambda e, p, d: e.create_symlink(""), ValueError, "project_name"),
    (E, "create_symlink", lambda e, p, d: e.create_symlink(3), TypeError, "project_name"),
    (E, "create_symlink", lambda e, p, d: e.create_symlink(None), TypeError, "project_name"),
    (E, "log_git_metadata", lambda e, p, d: e.log_git_metadata("b", "o", "p", "r", None),
     TypeError, "user"),
    (E, "log_git_metadata", lambda e, p, d: e.log_git_metadata(1, "o", "p", "r", "u"),
     TypeError, "branch"),
    (E, "log_git_metadata", lambda e, p, d: e.log_git_metadata("b", "o", "p", "r"),
     TypeError, "user"),
    (E, "log_system_details", lambda e, p, d: e.log_system_details(bogus=1), TypeError,
     "bogus"),
    (E, "log_system_details", lambda e, p, d: e.log_system_details(pid="x"), TypeError, "pid"),
    (E, "log_system_details", lambda e, p, d: e.log_system_details(hostname=3), TypeError,
     "hostname"),
    (E, "log_system_details", lambda e, p, d: e.log_system_details(installedPackages="a"),
     TypeError, "installedPackages"),
    (E, "log_system_details", lambda e, p, d: e.log_system_details(experimentKey="k" * 32),
     TypeError, "experimentKey"),
    # --- bytes: assets, text, code, graph, git patch ---
    (E, "log_asset", lambda e, p, d: e.log_asset(str(d / "missing.bin")), FileNotFoundError,
     "missing.bin"),
    (E, "log_asset", lambda e, p, d: e.log_asset(str(d)), IsADirectoryError, "directory"),
    (E, "log_asset", lambda e, p, d: e.log_asset(12), TypeError, "file_data"),
    (E, "log_asset", lambda e, p, d: e.log_asset(b"raw bytes"), TypeError, "file_data"),
    (E, "log_asset", lambda e, p, d: e.log_asset(str(d / "a.txt"), file_name=3), TypeError,
     "file_name"),
    (E, "log_asset", lambda e, p, d: e.log_asset(str(d / "a.txt"), file_name=""), ValueError,
     "file_name"),
    (E, "log_asset", lambda e, p, d: e.log_asset(str(d / "a.txt"), overwrite="yes"),
     TypeError, "overwrite"),
    (E, "log_asset", lambda e, p, d: e.log_asset(str(d / "a.txt"), copy_to_tmp="no"),
     TypeError, "copy_to_tmp"),
    (E, "log_asset", lambda e, p, d: e.log_asset(str(d / "a.txt"), step=-1), ValueError,
     "step"),
    (E, "log_asset", lambda e, p, d: e.log_asset(str(d / "a.txt"), metadata=[1]), TypeError,
     "metadata"),
    (E, "log_asset", lambda e, p, d: e.log_asset(str(d / "a.txt"), metadata={"x": math.nan}),
     TypeError, "metadata"),
    (E, "log_asset", lambda e, p, d: e.log_asset(str(d / "a.txt"), context=3), TypeError,
     "context"),
    (E, "log_asset", lambda e, p, d: e.log_asset(str(d / "a.txt"), asset_type=3), TypeError,
     "asset_type"),
    (E, "log_asset_data", lambda e, p, d: e.log_asset_data(3.5), TypeError, "data"),
    (E, "log_asset_data", lambda e, p, d: e.log_asset_data(None), TypeError, "data"),
    (E, "log_asset_data", lambda e, p, d: e.log_asset_data({"a": _Opaque()}), TypeError,
     "data"),
    (E, "log_asset_data", lambda e, p, d: e.log_asset_data(b"x", name=3), TypeError, "name"),
    (E, "log_asset_data", lambda e, p, d: e.log_asset_data(b"x", name=" "), ValueError, "name"),
    (E, "log_asset_data", lambda e, p, d: e.log_asset_data(b"x", overwrite=1), TypeError,
     "overwrite"),
    (E, "log_asset_data", lambda e, p, d: e.log_asset_data(b"x", step="1"), TypeError, "step"),
    (E, "log_asset_data", lambda e, p, d: e.log_asset_data(b"x", metadata="m"), TypeError,
     "metadata"),
    (E, "log_asset_data", lambda e, p, d: e.log_asset_data(b"x", context=1), TypeError,
     "context"),
    (E, "log_text", lambda e, p, d: e.log_text(42), TypeError, "text"),
    (E, "log_text", lambda e, p, d: e.log_text(None), TypeError, "text"),
    (E, "log_text", lambda e, p, d: e.log_text("x", step=-1), ValueError, "step"),
    (E, "log_text", lambda e, p, d: e.log_text("x", metadata=[1]), TypeError, "metadata"),
    (E, "log_text", lambda e, p, d: e.log_text("x", context=1), TypeError, "context"),
    (E, "log_points_3d", lambda e, p, d: e.log_points_3d(3, points=[[0, 0, 0]]), TypeError,
     "scene_name"),
    (E, "log_points_3d", lambda e, p, d: e.log_points_3d("s"), ValueError, "points"),
    (E, "log_points_3d", lambda e, p, d: e.log_points_3d("s", points=[[0, 0]]), ValueError,
     "points"),
    (E, "log_points_3d", lambda e, p, d: e.log_points_3d("s", boxes=[{"x": 1}]), TypeError,
     "boxes"),
    (E, "log_points_3d", lambda e, p, d: e.log_points_3d("s", points=[[0, 0, 0]], step=-1),
     ValueError, "step"),
    (E, "set_code", lambda e, p, d: e.set_code(), TypeError, "code"),
    (E, "set_code", lambda e, p, d: e.set_code(3), TypeError, "code"),
    (E, "set_code", lambda e, p, d: e.set_code(filename=3), TypeError, "filename"),
    (E, "set_code", lambda e, p, d: e.set_code(filename=str(d / "nope.py")), FileNotFoundError,
     "nope.py"),
    (E, "set_code", lambda e, p, d: e.set_code(filename=str(d)), IsADirectoryError,
     "directory"),
    (E, "set_code", lambda e, p, d: e.set_code(filename=str(d / "binary.bin")), ValueError,
     "UTF-8"),
    (E, "set_code", lambda e, p, d: e.set_code("x = 1", overwrite="yes"), TypeError,
     "overwrite"),
    (E, "set_model_graph", lambda e, p, d: e.set_model_graph(None), ValueError, "graph"),
    (E, "set_model_graph", lambda e, p, d: e.set_model_graph(""), ValueError, "graph"),
    (E, "set_model_graph", lambda e, p, d: e.set_model_graph("g", overwrite="x"), TypeError,
     "overwrite"),
    (E, "log_git_patch", lambda e, p, d: e.log_git_patch(3), TypeError, "patch"),
    (E, "log_git_patch", lambda e, p, d: e.log_git_patch(None), TypeError, "patch"),
    (E, "log_git_patch", lambda e, p, d: e.log_git_patch(str(d / "nope.patch")),
     FileNotFoundError, "nope.patch"),
    (E, "log_git_patch", lambda e, p, d: e.log_git_patch(str(d)), IsADirectoryError,
     "directory"),
    # --- system samples ---
    (E, "log_cpu_metrics", lambda e, p, d: e.log_cpu_metrics([101]), TypeError,
     "cpu_percent_utilization"),
    (E, "log_cpu_metrics", lambda e, p, d: e.log_cpu_metrics(50), TypeError,
     "cpu_percent_utilization"),
    (E, "log_cpu_metrics", lambda e, p, d: e.log_cpu_metrics([]), TypeError,
     "cpu_percent_utilization"),
    (E, "log_cpu_metrics", lambda e, p, d: e.log_cpu_metrics(["10"]), TypeError,
     "cpu_percent_utilization"),
    (E, "log_cpu_metrics", lambda e, p, d: e.log_cpu_metrics([math.nan]), TypeError,
     "cpu_percent_utilization"),
    (E, "log_cpu_metrics", lambda e, p, d: e.log_cpu_metrics([1], step=-1), ValueError,
     "step"),
    (E, "log_cpu_metrics", lambda e, p, d: e.log_cpu_metrics([1], timestamp="x"), TypeError,
     "timestamp"),
    (E, "log_ram_metrics", lambda e, p, d: e.log_ram_metrics(10, 20), ValueError, "used_ram"),
    (E, "log_ram_metrics", lambda e, p, d: e.log_ram_metrics(-1, 0), TypeError, "total_ram"),
    (E, "log_ram_metrics", lambda e, p, d: e.log_ram_metrics("1", 0), TypeError, "total_ram"),
    (E, "log_ram_metrics", lambda e, p, d: e.log_ram_metrics(1.5, 0), TypeError, "total_ram"),
    (E, "log_ram_metrics", lambda e, p, d: e.log_ram_metrics(10, 1, epoch=-1), ValueError,
     "epoch"),
    (E, "log_ram_metrics", lambda e, p, d: e.log_ram_metrics(10, 1, context=1), TypeError,
     "context"),
    (E, "log_load_metrics", lambda e, p, d: e.log_load_metrics("high"), TypeError,
     "load_average"),
    (E, "log_load_metrics", lambda e, p, d: e.log_load_metrics(-1), TypeError, "load_average"),
    (E, "log_load_metrics", lambda e, p, d: e.log_load_metrics(math.nan), TypeError,
     "load_average"),
    (E, "log_load_metrics", lambda e, p, d: e.log_load_metrics(True), TypeError,
     "load_average"),
    (E, "log_load_metrics", lambda e, p, d: e.log_load_metrics(1.0, step="x"), TypeError,
     "step"),
    (E, "log_gpu_metrics", lambda e, p, d: e.log_gpu_metrics([{"gpuId": 0}]), ValueError,
     "gpus"),
    (E, "log_gpu_metrics", lambda e, p, d: e.log_gpu_metrics([]), TypeError, "gpus"),
    (E, "log_gpu_metrics", lambda e, p, d: e.log_gpu_metrics(GPU), TypeError, "gpus"),
    (E, "log_gpu_metrics", lambda e, p, d: e.log_gpu_metrics(["gpu0"]), TypeError, "gpus"),
    (E, "log_gpu_metrics", lambda e, p, d: e.log_gpu_metrics(_gpu(gpuUtilization=101)),
     TypeError, "gpuUtilization"),
    (E, "log_gpu_metrics", lambda e, p, d: e.log_gpu_metrics(_gpu(gpuId=-1)), TypeError,
     "gpuId"),
    (E, "log_gpu_metrics", lambda e, p, d: e.log_gpu_metrics(_gpu(usedMemory="40")), TypeError,
     "usedMemory"),
    (E, "log_gpu_metrics", lambda e, p, d: e.log_gpu_metrics(_gpu(), step=-3), ValueError,
     "step"),
    # --- Project(...) and its methods ---
    (P, "__init__", lambda e, p, d: Project(journal=str(d / "new.db"), workspace=None,
                                            project_name="p"), TypeError, "workspace"),
    (P, "__init__", lambda e, p, d: Project(journal=str(d / "new.db"), workspace="w",
                                            project_name=""), ValueError, "project_name"),
    (P, "__init__", lambda e, p, d: Project(journal=str(d / "new.db"), workspace="w",
                                            project_name="p", project_id=3),
     TypeError, "project_id"),
    (P, "__init__", lambda e, p, d: Project(journal=3, workspace="w", project_name="p"),
     TypeError, "journal"),
    (P, "__init__", lambda e, p, d: Project(journal=str(d / "new.db"), workspace="w",
                                            project_name="p", colour="red"),
     TypeError, "colour"),
    (P, "create", lambda e, p, d: p.create(3), TypeError, "description"),
    (P, "create", lambda e, p, d: p.create("d", public="no"), TypeError, "public"),
    (P, "create", lambda e, p, d: p.create("d", public=1), TypeError, "public"),
    (P, "update", lambda e, p, d: p.update(), TypeError, "new_name, description, public"),
    (P, "update", lambda e, p, d: p.update(new_name=3), TypeError, "new_name"),
    (P, "update", lambda e, p, d: p.update(new_name=""), ValueError, "new_name"),
    (P, "update", lambda e, p, d: p.update(description=["d"]), TypeError, "description"),
    (P, "update", lambda e, p, d: p.update(public="x"), TypeError, "public"),
    (P, "set_notes", lambda e, p, d: p.set_notes(None), TypeError, "notes"),
    (P, "set_notes", lambda e, p, d: p.set_notes(3), TypeError, "notes"),
    (P, "set_notes", lambda e, p, d: p.set_notes(b"notes"), TypeError, "notes"),
    (P, "delete", lambda e, p, d: p.delete("yes"), TypeError, "delete_experiments"),
    (P, "delete", lambda e, p, d: p.delete(1), TypeError, "delete_experiments"),
    (P, "save_viz_store", lambda e, p, d: p.save_viz_store(3, "s"), TypeError, "instance_id"),
    (P, "save_viz_store", lambda e, p, d: p.save_viz_store("", "s"), ValueError,
     "instance_id"),
    # --- the SDK's identity, step and newer asset methods (issue 12) ---
    (E, "get_name", lambda e, p, d: e.get_name(1), TypeError, "positional argument"),
    (E, "get_name", lambda e, p, d: e.get_name(full=True), TypeError, "full"),
    (E, "get_tags", lambda e, p, d: e.get_tags(1), TypeError, "positional argument"),
    (E, "get_tags", lambda e, p, d: e.get_tags(full=True), TypeError, "full"),
    (E, "set_name", lambda e, p, d: e.set_name(3), TypeError, "name"),
    (E, "set_name", lambda e, p, d: e.set_name(""), ValueError, "name"),
    (E, "set_step", lambda e, p, d: e.set_step(-1), ValueError, "step"),
    (E, "set_step", lambda e, p, d: e.set_step("3"), TypeError, "step"),
    (E, "set_epoch", lambda e, p, d: e.set_epoch(-1), ValueError, "epoch"),
    (E, "set_epoch", lambda e, p, d: e.set_epoch(1.5), TypeError, "epoch"),
    (E, "log_html_url", lambda e, p, d: e.log_html_url(3), TypeError, "url"),
    (E, "log_html_url", lambda e, p, d: e.log_html_url("u", label=3), TypeError, "label"),
    (E, "log_model", lambda e, p, d: e.log_model("", str(d / "a.txt")), ValueError, "name"),
    (E, "log_model", lambda e, p, d: e.log_model("m", str(d / "nope.bin")), FileNotFoundError,
     "file_or_folder"),
    (E, "log_asset_folder", lambda e, p, d: e.log_asset_folder(str(d / "a.txt")),
     NotADirectoryError, "folder"),
    (E, "log_asset_folder", lambda e, p, d: e.log_asset_folder(str(d), step=-1), ValueError,
     "step"),
    (E, "log_code", lambda e, p, d: e.log_code(), TypeError, "exactly one"),
    (E, "log_code", lambda e, p, d: e.log_code(code="x=1"), TypeError, "code_name"),
    (E, "log_confusion_matrix", lambda e, p, d: e.log_confusion_matrix(), TypeError, "matrix"),
    (E, "log_confusion_matrix", lambda e, p, d: e.log_confusion_matrix([0, 1], [0]),
     ValueError, "y_predicted"),
    (E, "log_curve", lambda e, p, d: e.log_curve("c", [1, 2], [1]), ValueError, "y"),
    (E, "log_curve", lambda e, p, d: e.log_curve("c", "12", [1]), TypeError, "x"),
    (E, "log_table", lambda e, p, d: e.log_table("t.csv", 3), TypeError, "tabular_data"),
    (E, "log_table", lambda e, p, d: e.log_table(str(d / "nope.csv")), FileNotFoundError,
     "filename"),
    (E, "log_histogram_3d", lambda e, p, d: e.log_histogram_3d([]), ValueError, "values"),
    (E, "log_histogram_3d", lambda e, p, d: e.log_histogram_3d(["a"]), TypeError, "values"),
    (E, "log_image", lambda e, p, d: e.log_image(str(d / "nope.png")), FileNotFoundError,
     "image_data"),
    (E, "log_image", lambda e, p, d: e.log_image(str(d / "a.txt"), step=-1), ValueError,
     "step"),
    (E, "log_figure", lambda e, p, d: e.log_figure(figure=_Opaque()), TypeError, "figure"),
    (E, "log_figure", lambda e, p, d: e.log_figure(format="gif"), ValueError, "format"),
    (P, "save_viz_store", lambda e, p, d: p.save_viz_store("i", 3), TypeError, "store"),
    (P, "save_viz_store", lambda e, p, d: p.save_viz_store("i", {"a": _Opaque()}), TypeError,
     "store"),
    (P, "save_viz_store", lambda e, p, d: p.save_viz_store("i", {"a": math.nan}), TypeError,
     "store"),
    (P, "flush", lambda e, p, d: p.flush("soon"), TypeError, "timeout"),
    (P, "flush", lambda e, p, d: p.flush(-1), ValueError, "timeout"),
    (P, "close", lambda e, p, d: p.close(True), TypeError, "positional argument"),
    (P, "close", lambda e, p, d: p.close(timeout=1), TypeError, "timeout"),
]


def _public_methods(cls) -> set[str]:
    names = {name for name, member in inspect.getmembers(cls, inspect.isfunction)
             if not name.startswith("_")}
    return names | {"__init__"}


def test_every_public_method_has_rows():
    """Introspection: a public method (or constructor) with fewer than two rows fails."""
    rows_per = {}
    for owner, method, *_ in ROWS:
        rows_per[(owner, method)] = rows_per.get((owner, method), 0) + 1
    for cls in (Experiment, Project):
        for name in _public_methods(cls):
            assert rows_per.get((cls.__name__, name), 0) >= 2, \
                f"{cls.__name__}.{name} needs rows in ROWS (wrong types and values)"
    for owner, method in rows_per:  # no stale rows for methods that are gone
        cls = {"Experiment": Experiment, "Project": Project}[owner]
        assert method in _public_methods(cls), f"{owner}.{method} is not a public method"


def _journal_state(path) -> tuple:
    """What a refused call must not change: every call, experiment and blob."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return tuple(conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
                     for t in ("calls", "experiments", "blobs", "chunks"))
    finally:
        conn.close()


@pytest.fixture
def objects(tmp_path):
    (tmp_path / "a.txt").write_text("x")
    (tmp_path / "binary.bin").write_bytes(b"\xff\xfe\x00\x81")
    journal = str(tmp_path / "run.db")
    exp = Experiment(journal=journal, project_name="p", workspace="w")
    project = Project(journal=journal, workspace="w", project_name="p")
    yield exp, project, journal
    project.close()
    exp.end()


@pytest.mark.parametrize("owner,method,call,error,words", ROWS,
                         ids=[f"{o}.{m}-{i}" for i, (o, m, *_r) in enumerate(ROWS)])
def test_wrong_argument_is_refused_at_the_call_site(tmp_path, objects, owner, method, call,
                                                    error, words):
    exp, project, journal = objects
    exp.flush()
    project.flush()
    before = _journal_state(journal)
    with pytest.raises(error) as info:
        call(exp, project, tmp_path)
    message = str(info.value)
    assert words in message, message
    where = owner if method == "__init__" else f"{method}("
    assert where in message, f"the message does not name {where!r}: {message}"
    # nothing journaled, nothing created, and the objects still work
    assert not os.path.exists(tmp_path / "new.db")
    assert not exp.ended
    exp.flush()
    project.flush()
    assert _journal_state(journal) == before
    exp.log_metric("still-works", 1.0, step=1)
    project.set_notes("still works")
    assert exp.flush() and project.flush()
    assert _journal_state(journal)[0] == before[0] + 2


def test_the_refused_end_leaves_the_experiment_running(objects):
    """end() with a bad timeout must not journal the end time nor stop the experiment."""
    exp, _project, journal = objects
    exp.flush()
    before = _journal_state(journal)
    with pytest.raises(TypeError):
        exp.end(timeout="later")
    assert not exp.ended and _journal_state(journal) == before
    exp.log_metric("m", 1.0)
    assert exp.end()["lost"] == 0 and exp.ended
