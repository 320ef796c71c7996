"""The endpoint catalogue: complete against the spec, and strict when validating."""

from __future__ import annotations

import json
import os

import pytest

from comet_journal.schema.catalogue import (BODY, ENDPOINTS, PART, QUERY, CatalogueError, documented_endpoints,
                              validate)

# The documented write routes and their fields, as the project keeps them (written from
# Comet's public REST API documentation, errata applied: "Add CPU Metrics" is cpu-metrics,
# the symlink parameter is experimentKey, paths start with /api/rest/v2/).
FIXTURE = os.path.join(os.path.dirname(__file__), "fixtures", "write_endpoints.json")
# Documented, deliberately not in the catalogue: the API key never enters a journal.
NEVER_JOURNALED = {"apiKey"}


def _documented() -> list[dict]:
    with open(FIXTURE, encoding="utf-8") as fh:
        return json.load(fh)["routes"]


def test_every_documented_route_is_in_the_catalogue_and_nothing_else():
    spec = sorted({(r["method"], r["path"]) for r in _documented()})
    ours = sorted({(e.method, e.path) for e in documented_endpoints()})
    assert len(spec) >= 28
    assert ours == spec


def test_every_documented_field_is_in_the_catalogue_and_required_ones_are_required():
    endpoints = {(e.method, e.path): e for e in documented_endpoints()}
    for route in _documented():
        ep = endpoints[(route["method"], route["path"])]
        names = {f.name for f in ep.fields}
        missing = set(route["body"]) | set(route["query"])
        missing -= names | NEVER_JOURNALED
        assert not missing, (ep.name, sorted(missing))
        for name, required in route["body"].items():
            if required and name in names:
                assert ep.field(name).required, (ep.name, name)


def test_catalogue_entries_are_complete():
    for ep in ENDPOINTS.values():
        assert ep.method in ("GET", "POST", "PUT"), ep.name
        assert ep.path.startswith("/api/rest/v2/write/") or not ep.documented, ep.name
        assert ep.entity in ("experiment", "project", "viz_instance"), ep.name
        for f in ep.fields:
            assert f.location in (BODY, QUERY, PART), (ep.name, f.name)
        if ep.method == "GET":  # GET requests carry everything in the query string
            assert all(f.location == QUERY for f in ep.fields), ep.name
        if ep.entity == "experiment" and ep.name != "experiment_create":
            # (the SDK's upload routes name the experiment by experimentId)
            assert ep.key_field and ep.field(ep.key_field).required, ep.name


def test_errata_applied():
    assert ENDPOINTS["cpu_metrics"].path.endswith("/write/experiment/cpu-metrics")
    assert ENDPOINTS["project_symlink"].field("experimentKey").location == QUERY
    assert ENDPOINTS["viz_store_save"].path.endswith("/store/save")
    assert ENDPOINTS["upload_asset"].multipart and ENDPOINTS["upload_git_patch"].multipart
    assert ENDPOINTS["upload_asset"].field("fileName").location == QUERY
    assert ENDPOINTS["upload_asset"].field("metadata").location == PART


KEY = "a" * 32


@pytest.mark.parametrize("endpoint,values,field", [
    ("log_metric", {"experimentKey": KEY, "metricValue": 1}, "metricName"),
    ("log_metric", {"experimentKey": KEY, "metricName": 5, "metricValue": 1}, "metricName"),
    ("log_metric", {"experimentKey": KEY, "metricName": "m", "metricValue": {}}, "metricValue"),
    ("log_metric", {"experimentKey": KEY, "metricName": "m", "metricValue": 1, "step": 1.5},
     "step"),
    ("log_metric", {"experimentKey": KEY, "metricName": "m", "metricValue": 1, "bogus": 1},
     "bogus"),
    ("log_parameter", {"experimentKey": KEY, "parameterName": "p"}, "parameterValue"),
    ("log_html", {"experimentKey": KEY, "html": "x", "override": "yes"}, "override"),
    ("add_tags", {"experimentKey": KEY, "addedTags": ["a", 1]}, "addedTags"),
    ("gpu_metrics", {"experimentKey": KEY, "gpus": [{"gpuId": 0}]}, "freeMemory"),
    ("project_create", {"projectName": "p", "workspaceName": "w", "isPublic": True},
     "projectDescription"),
    ("project_update", {"newProjectName": "n"}, "projectId"),
    ("log_metric", {"metricName": "m", "metricValue": 1}, "experimentKey"),
])
def test_validate_refuses_and_names_the_field(endpoint, values, field):
    with pytest.raises(CatalogueError) as info:
        validate(ENDPOINTS[endpoint], values)
    assert field in str(info.value) and endpoint in str(info.value)


def test_validate_accepts_documented_shapes():
    validate(ENDPOINTS["log_metric"], {"experimentKey": KEY, "metricName": "m",
                                       "metricValue": "NaN", "step": 3, "timestamp": 1})
    validate(ENDPOINTS["project_update"], {"projectId": "p1", "isPublic": True})
    validate(ENDPOINTS["project_update"], {"workspaceName": "w", "projectName": "p"})
    with pytest.raises(CatalogueError):  # both forms at once is refused by the spec
        validate(ENDPOINTS["project_update"], {"projectId": "p1", "workspaceName": "w",
                                               "projectName": "p"})
    validate(ENDPOINTS["upload_asset"], {"file": {"$blob": "0" * 64, "size": 1}},
             journal_form=True)
    with pytest.raises(CatalogueError):
        validate(ENDPOINTS["upload_asset"], {"file": b"raw"}, journal_form=True)
