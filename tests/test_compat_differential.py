"""Differential tests: the same calls (tests/sdk_scenario.py) through the official
``comet_ml.OfflineExperiment`` 3.58.8 and through comet-journal; the names, values, steps,
epochs, contexts, asset types, asset metadata and chart contents in the SDK's offline archive
(messages.json) must match our journal.

Normalised on purpose (documented in the README, "Coming from comet_ml"): the SDK's
``curr_step``/``curr_epoch`` auto-parameters, its "process duration" metric and its
"offline_experiment" other are not journaled; None is journaled as the text "None" where the
SDK sends null; a list of lists as a parameter is journaled as JSON text.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys

import pytest

from comet_journal import Experiment
from comet_journal.schema.blobs import read_blob
from journal_helpers import rows
from sdk_scenario import make_files, scenario

HERE = os.path.dirname(os.path.abspath(__file__))
SKIPPED_PARAMS = {"curr_step", "curr_epoch"}
CHART_TYPES = {"confusion-matrix", "curve", "histogram3d"}


def _sdk_value(value):
    if value is None:
        return "None"
    if isinstance(value, list) and any(isinstance(v, list) for v in value):
        return json.dumps(value)
    return value


def sdk_records(data: dict) -> dict[str, list]:
    out: dict[str, list] = {"metric": [], "param": [], "other": [], "html": [], "graph": [],
                            "text": [], "asset": [], "chart": []}
    for message in data["messages"]:
        kind, p = message["type"], message["payload"]
        if kind == "metric_msg" and p["metric"]["metricName"] != "process duration":
            m = p["metric"]
            out["metric"].append((m["metricName"], m["metricValue"], m.get("step"),
                                  m.get("epoch"), p.get("context")))
        elif kind == "parameter_msg":
            m = p.get("param") or p.get("params")
            if m["paramName"] not in SKIPPED_PARAMS:
                out["param"].append((m["paramName"], _sdk_value(m["paramValue"]),
                                     m.get("step")))
        elif kind == "log_other" and p["key"] != "offline_experiment":
            out["other"].append((p["key"], _sdk_value(p["value"])))
        elif kind == "html":
            out["html"].append(p["html"])
        elif kind == "graph":
            out["graph"].append(p["graph"])
        elif kind == "file_upload":
            extra = p.get("additional_params") or {}
            if p["upload_type"] == "text-sample":
                out["text"].append((extra.get("step"), p.get("metadata") or None))
                continue
            kind = extra.get("type") or {"visualization": "image"}.get(p["upload_type"])
            name = extra.get("fileName") or extra.get("figName")
            out["asset"].append((name, kind, extra.get("step"), extra.get("epoch"),
                                 extra.get("groupingName"), p.get("metadata") or None))
            if kind in CHART_TYPES:
                out["chart"].append((name, json.loads(data["contents"][p["file_path"]])))
    return out


def our_records(path: str) -> dict[str, list]:
    out: dict[str, list] = {k: [] for k in ("metric", "param", "other", "html", "graph",
                                            "text", "asset", "chart")}
    conn = sqlite3.connect(path)

    def blob(ref: dict) -> str:
        return read_blob(conn, ref["$blob"]).decode()

    for row in rows(path):
        endpoint, p = row["endpoint"], row["payload"]
        if endpoint == "log_metric":
            out["metric"].append((p["metricName"], p["metricValue"], p.get("step"),
                                  p.get("epoch"), p.get("context")))
        elif endpoint == "log_parameter":
            out["param"].append((p["parameterName"], p["parameterValue"], p.get("step")))
        elif endpoint == "log_other":
            out["other"].append((p["key"], p["value"]))
        elif endpoint == "log_html":
            out["html"].append(p["html"])
        elif endpoint == "log_graph":
            out["graph"].append(blob(p["graph"]))
        elif endpoint == "upload_text_sample":
            out["text"].append((p.get("step"), json.loads(p["metadata"]) if "metadata" in p
                                else None))
        elif endpoint == "upload_asset":
            out["asset"].append((p["fileName"], p.get("type"), p.get("step"), p.get("epoch"),
                                 p.get("groupingName"), p.get("metadata")))
            if p.get("type") in CHART_TYPES:
                out["chart"].append((p["fileName"], json.loads(blob(p["file"]))))
    conn.close()
    return out


@pytest.fixture(scope="module")
def both(tmp_path_factory):
    """(SDK records, our records, what the SDK's getters said, what ours said)."""
    tmp = tmp_path_factory.mktemp("differential")
    files = str(tmp / "files")
    make_files(files)
    out = str(tmp / "sdk.json")
    env = {**os.environ, "HOME": str(tmp), "COMET_API_KEY": "",
           "PYTHONPATH": HERE + os.pathsep + os.environ.get("PYTHONPATH", "")}
    env.pop("COMET_API_KEY")
    subprocess.run([sys.executable, os.path.join(HERE, "sdk_scenario.py"), out, files],
                   check=True, env=env, cwd=str(tmp), timeout=120, capture_output=True)
    with open(out) as fh:
        sdk = json.load(fh)
    exp = Experiment(journal=str(tmp / "ours.db"), project_name="diff", workspace="ws",
                     log_code=False, log_git_metadata=False, log_git_patch=False,
                     log_env_details=False, auto_output_logging=None)
    said = scenario(exp, files)
    summary = exp.end()
    return sdk_records(sdk), our_records(exp.path), sdk, said, summary


@pytest.mark.parametrize("kind", ["metric", "param", "other", "html", "graph", "text"])
def test_same_records_in_the_same_order(both, kind):
    sdk, ours = both[0], both[1]
    assert sdk[kind], f"the scenario logs no {kind}"
    assert ours[kind] == sdk[kind]


def test_same_assets_types_steps_and_metadata(both):
    sdk, ours = both[0], both[1]
    assert len(sdk["asset"]) >= 15
    key = lambda a: (a[0], a[1] or "")  # noqa: E731 - uploads finish in any order
    assert sorted(ours["asset"], key=key) == sorted(sdk["asset"], key=key)


def test_same_chart_contents(both):
    sdk, ours = both[0], both[1]
    assert len(sdk["chart"]) == 5  # 2 confusion matrices, a curve, 2 histograms
    assert sorted(ours["chart"], key=lambda c: json.dumps(c, sort_keys=True)) == \
        sorted(sdk["chart"], key=lambda c: json.dumps(c, sort_keys=True))


def test_same_identity_tags_and_refusals(both):
    _, _, sdk, said, summary = both
    theirs = sdk["said"]
    assert {k: v for k, v in said.items() if k != "id"} == \
        {k: v for k, v in theirs.items() if k != "id"}
    assert sorted(sdk["experiment"]["tags"]) == said["tags"]
    assert summary["refused"] == 1  # the None metric, which the SDK ignores too
