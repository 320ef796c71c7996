"""The endpoint catalogue: complete against the spec, and strict when validating."""

from __future__ import annotations

import os
import re

import pytest

from comet_journal.schema.catalogue import (BODY, ENDPOINTS, PART, QUERY, CatalogueError, documented_endpoints,
                              validate)

SPEC = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "reference",
                    "write-endpoints.md")

# The errata of write-endpoints.md: where the text is known to be wrong.
ERRATA = {
    # "Add CPU Metrics" repeats the RAM path in the text.
    ("POST", "/api/rest/v2/write/experiment/ram-metrics", "Add CPU Metrics"):
        ("POST", "/api/rest/v2/write/experiment/cpu-metrics"),
}


def _spec_routes() -> list[tuple[str, str]]:
    text = open(SPEC, encoding="utf-8").read().split("\n---\n", 1)[1]
    routes = []
    title = None
    for line in text.splitlines():
        m = re.match(r"^(GET|POST|PUT) /?(api/rest/v2/[^?\s;]+)", line)
        if m:
            route = (m.group(1), "/" + m.group(2))
            routes.append(ERRATA.get((*route, title), route))
        elif line.strip() and not line.startswith((" ", "{", "}", "Example")):
            title = line.strip()
    return sorted(set(routes))


@pytest.mark.skipif(not os.path.exists(SPEC), reason="shared/reference is not beside the repo")
def test_every_documented_route_is_in_the_catalogue_and_nothing_else():
    spec = _spec_routes()
    ours = sorted({(e.method, e.path) for e in documented_endpoints()})
    assert len(spec) >= 28
    assert ours == spec


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
            assert ep.field("experimentKey").required, ep.name


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
