"""The shape of the code, read from the source with ast: no import cycles, no ``_private``
names taken from another module, layers that import only downward, click only in CLIs, and
one decision per catalogue endpoint in each per-endpoint registry."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from comet_journal.schema.catalogue import ENDPOINTS
from comet_journal.schema.ordering import (BARRIER, CREATE, GLOBAL, ORDERING,
                                                     POSITIONED)
from comet_journal.uploader.send.batches import BATCH_ENDPOINT
from comet_journal.uploader.send.checks import CHECKS

REPO = Path(__file__).resolve().parent.parent
PARTS = {"recorder": "recorder", "uploader": "uploader", "schema": "schema",
         "emulator": "emulator"}
# The uploader's layers, lowest first: a module may import its own layer and those below.
UPLOADER_LAYERS = ["errors", "config", "state_home", "journal", "wire", "send", "replay",
                   "upload", "importer", "viewer", "watch", "cli"]


def _modules() -> dict[str, Path]:
    mods = {"comet_journal": REPO / "src" / "comet_journal" / "__init__.py"}
    for part, folder in PARTS.items():
        for path in (REPO / folder).rglob("*.py"):
            rel = path.relative_to(REPO / folder).with_suffix("").parts
            if rel[-1] == "__init__":
                rel = rel[:-1]
            mods[".".join(("comet_journal", part, *rel))] = path
    for path in (REPO / "src" / "comet_journal").rglob("*.py"):
        rel = path.relative_to(REPO / "src").with_suffix("").parts
        mods[".".join(rel[:-1] if rel[-1] == "__init__" else rel)] = path
    return mods


MODULES = _modules()


def _resolve(name: str) -> str | None:
    parts = name.split(".")
    for i in range(len(parts), 0, -1):
        if ".".join(parts[:i]) in MODULES:
            return ".".join(parts[:i])
    return None


def _imports(module: str) -> list[tuple[str, list[str]]]:
    """(imported module, names taken from it) for every import of ``module``."""
    path = MODULES[module]
    tree = ast.parse(path.read_text(), str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                target = _resolve(alias.name)
                if target:
                    found.append((target, []))
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")
                up = up[:len(up) - node.level + 1]
                base = ".".join(up + ([base] if base else []))
            for alias in node.names:
                sub = _resolve(f"{base}.{alias.name}")
                if sub and sub == f"{base}.{alias.name}":  # a submodule
                    found.append((sub, []))
                    continue
                target = _resolve(base)
                if target:
                    found.append((target, [alias.name]))
    return found


def _graph() -> dict[str, set[str]]:
    graph = {}
    for module in MODULES:
        deps = {t for t, _ in _imports(module) if t != module}
        if MODULES[module].name == "__init__.py":  # a package re-exporting its children
            deps = {d for d in deps if not d.startswith(module + ".")}
        graph[module] = deps
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    index, low, stack, on_stack, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_the_package_is_read_whole():
    assert len(MODULES) > 60 and "comet_journal.uploader.replay.scheduler" in MODULES


def test_no_import_cycles():
    assert _cycles(_graph()) == []


def test_the_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_private_name_is_imported_from_another_module():
    taken = [f"{m} imports {n} from {t}" for m in MODULES for t, names in _imports(m)
             for n in names if n.startswith("_") and not n.startswith("__") and t != m]
    assert taken == []


def _layer(module: str) -> int | None:
    parts = module.split(".")
    if parts[:2] != ["comet_journal", "uploader"] or len(parts) < 3:
        return None
    return UPLOADER_LAYERS.index(parts[2]) if parts[2] in UPLOADER_LAYERS else None


def test_the_uploaders_layers_import_only_downward():
    upward = []
    for module in MODULES:
        mine = _layer(module)
        if mine is None:
            continue
        for target, _ in _imports(module):
            theirs = _layer(target)
            if theirs is not None and theirs > mine:
                upward.append(f"{module} imports {target}")
    assert upward == []


def test_every_uploader_module_has_a_layer():
    loose = [m for m in MODULES if m.startswith("comet_journal.uploader.") and _layer(m) is None
             and m != "comet_journal.uploader"]
    assert loose == []


def test_only_command_line_modules_import_click():
    users = {m for m in MODULES if any(alias.name == "click" for node in ast.walk(
        ast.parse(MODULES[m].read_text())) if isinstance(node, (ast.Import, ast.ImportFrom))
        for alias in getattr(node, "names", []) if isinstance(node, ast.Import))
        or any(isinstance(node, ast.ImportFrom) and node.module == "click" for node in ast.walk(
            ast.parse(MODULES[m].read_text())))}
    assert users, "no module imports click: the check reads nothing"
    assert {m for m in users if ".cli" not in m and not m.endswith("cli")} == set()


def test_modules_stay_small():
    big = {m: n for m, p in MODULES.items()
           if (n := len(p.read_text().splitlines())) > 500
           and m != "comet_journal.schema.catalogue"}  # the catalogue's data
    assert big == {}


# --- per-endpoint registries: one decision for every catalogue endpoint ----------------------

def test_ordering_decides_every_endpoint_consistently_with_the_catalogue():
    assert set(ORDERING) == set(ENDPOINTS)
    for name, order in ORDERING.items():
        ep = ENDPOINTS[name]
        assert (order.kind == POSITIONED) == ep.positioned, name
        assert (order.kind == GLOBAL) == (ep.entity != "experiment"), name
        if order.stream_field:
            assert any(f.name == order.stream_field for f in ep.fields), name
    assert [n for n, o in ORDERING.items() if o.kind == CREATE] == ["experiment_create"]
    assert {n for n, o in ORDERING.items() if o.kind == BARRIER} == {
        "experiment_stop", "experiment_archive", "experiment_delete", "experiment_restore",
        "registry_model_item_create"}  # after the model's files


def test_read_back_decides_every_endpoint():
    assert set(CHECKS) == set(ENDPOINTS)


@pytest.mark.parametrize("endpoint,route", sorted(BATCH_ENDPOINT.items()))
def test_batch_routes_are_catalogue_routes(endpoint, route):
    from comet_journal.schema.catalogue import endpoint_named
    assert endpoint in ENDPOINTS and endpoint_named(route)


def test_no_name_is_used_that_is_not_defined():
    # A name missing from an import in an error branch fails only when that branch runs: in
    # the daemon, a worker's NameError was swallowed by its future and a run waited 10 s for
    # nothing (found by the lag benchmark). pyflakes reads every branch.
    from pyflakes import api, messages
    from pyflakes.reporter import Reporter

    class Collect(Reporter):
        def __init__(self):
            self.found = []

        def flake(self, message):
            if isinstance(message, (messages.UndefinedName, messages.UndefinedLocal,
                                    messages.UndefinedExport)):
                self.found.append(str(message))

        def syntaxError(self, filename, msg, lineno, offset, text):
            self.found.append(f"{filename}:{lineno}: {msg}")

        def unexpectedError(self, filename, msg):
            self.found.append(f"{filename}: {msg}")

    report = Collect()
    folders = [*PARTS.values(), "src", "scripts", "tests"]
    assert api.checkRecursive([str(REPO / folder) for folder in folders], report) >= 0
    assert report.found == []
