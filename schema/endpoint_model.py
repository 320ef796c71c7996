"""The shape of a catalogue entry, and the checking of a call against it.

:class:`Endpoint` and :class:`Field` describe one write endpoint (types, where each field
travels, what is required); :func:`validate` checks a payload against one. The table of
endpoints themselves is :mod:`comet_journal.schema.catalogue`, which re-exports these names.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from typing import Any, Final, Mapping

REST_PREFIX: Final = "/api/rest/v2/"

# Field types. "number" accepts the SDK's string forms of special floats ("NaN", ...).
STR: Final = "str"
INT: Final = "int"
NUMBER: Final = "number"
BOOL: Final = "bool"
SCALAR: Final = "scalar"  # str, number or bool (parameter and "other" values)
PARAM_VALUE: Final = "param_value"  # a scalar or a list of scalars (the SDK sends lists)
METRIC_VALUE: Final = "metric_value"  # a number, or a string (Comet accepts text metrics)
STR_LIST: Final = "str_list"
NUMBER_LIST: Final = "number_list"
OBJECT_LIST: Final = "object_list"  # a list of objects whose fields are ``items``
JSON_OBJECT: Final = "object"  # any JSON object (asset metadata)
FILE: Final = "file"  # a multipart file part

# Where a field travels on the wire.
BODY: Final = "body"  # JSON body
QUERY: Final = "query"  # URL query string
PART: Final = "part"  # multipart/form-data part

# What an endpoint belongs to.
EXPERIMENT: Final = "experiment"
PROJECT: Final = "project"
VIZ_INSTANCE: Final = "viz_instance"

# The fields that carry the experiment's key, by route family.
KEY_FIELDS: Final = ("experimentKey", "experimentId")

SPECIAL_FLOATS: Final = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


@dataclass(frozen=True)
class Field:
    """One field of an endpoint: its wire name, type, location and whether it is required."""

    name: str
    type: str
    required: bool = False
    location: str = BODY
    items: tuple["Field", ...] = ()  # for OBJECT_LIST
    blob: bool = False  # stored in the journal's blob store, not inline


@dataclass(frozen=True)
class Endpoint:
    """One write endpoint.

    ``positioned`` endpoints carry their own position (step, timestamp, offset), so the
    uploader may send them concurrently; all others are applied in journal order.
    ``one_of`` lists alternative groups of fields of which exactly one group must be given
    (Update Project: ``projectId`` or ``workspaceName`` + ``projectName``).
    """

    name: str
    method: str
    path: str
    entity: str
    fields: tuple[Field, ...]
    response: Mapping[str, Any] = field(default_factory=dict)
    positioned: bool = False
    one_of: tuple[tuple[str, ...], ...] = ()
    documented: bool = True  # False for the official SDK's extra (clientlib/batch) routes

    @property
    def multipart(self) -> bool:
        return any(f.location == PART for f in self.fields)

    @property
    def needs_experiment_key(self) -> bool:
        return any(f.name == "experimentKey" for f in self.fields)

    @property
    def key_field(self) -> str | None:
        """The field naming the experiment (``experimentId`` on the SDK's upload routes);
        absent from a journaled payload: the uploader adds the server's key."""
        for f in self.fields:
            if f.name in KEY_FIELDS:
                return f.name
        return None

    def field(self, name: str) -> Field:
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(f"{self.name} has no field {name!r}")



class CatalogueError(ValueError):
    """A payload does not match its endpoint: names the endpoint, the field and the value."""

    def __init__(self, endpoint: str, field_name: str, problem: str, value: Any = None):
        self.endpoint = endpoint
        self.field = field_name
        self.problem = problem
        self.value = value
        shown = "" if value is None else f" (got {_short_repr(value)})"
        super().__init__(f"{endpoint}: field {field_name!r} {problem}{shown}")


def _short_repr(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


# --- validation ---------------------------------------------------------------------------

def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    if isinstance(v, bool):
        return False
    if isinstance(v, (int, float)):
        return True
    return isinstance(v, str) and v in SPECIAL_FLOATS


def _is_scalar(v: Any) -> bool:
    return isinstance(v, (str, int, float, bool))


_TYPE_CHECKS = {
    STR: (lambda v: isinstance(v, str), "must be a string"),
    INT: (_is_int, "must be an integer"),
    NUMBER: (_is_number, "must be a number"),
    BOOL: (lambda v: isinstance(v, bool), "must be a boolean"),
    SCALAR: (_is_scalar, "must be a string, number or boolean"),
    PARAM_VALUE: (lambda v: _is_scalar(v) or (isinstance(v, list) and all(map(_is_scalar, v))),
                  "must be a string, number, boolean or a list of those"),
    METRIC_VALUE: (lambda v: _is_number(v) or isinstance(v, str), "must be a number or a string"),
    STR_LIST: (lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v),
               "must be a list of strings"),
    NUMBER_LIST: (lambda v: isinstance(v, list) and all(map(_is_number, v)),
                  "must be a list of numbers"),
    OBJECT_LIST: (lambda v: isinstance(v, list) and all(isinstance(x, dict) for x in v),
                  "must be a list of objects"),
    JSON_OBJECT: (lambda v: isinstance(v, dict), "must be a JSON object"),
    FILE: (lambda v: v is not None, "must be a file"),
}


def check_type(type_name: str, value: Any) -> str | None:
    """Return None when ``value`` fits ``type_name``, else the problem in words."""
    check, problem = _TYPE_CHECKS[type_name]
    return None if check(value) else problem


def project_ref(workspace: str, project: str) -> dict:
    """A journal-side stand-in for a ``projectId`` that only the server knows; the uploader
    resolves it (from the project's creation or the read API) before sending."""
    return {"$project": {"workspaceName": workspace, "projectName": project}}


def is_project_ref(value: Any) -> bool:
    return isinstance(value, dict) and isinstance(value.get("$project"), dict)


def _is_blob_ref(value: Any) -> bool:
    return isinstance(value, dict) and isinstance(value.get("$blob"), str)


@functools.lru_cache(maxsize=None)
def _item_checks(items: tuple[Field, ...]) -> tuple[tuple, frozenset, bool]:
    """Per-item checks of an object list, computed once: a batch of a thousand metric values
    is validated in a tight loop rather than a thousand nested :func:`validate` calls."""
    checks = tuple((f.name, f.required, *_TYPE_CHECKS[f.type]) for f in items)
    nested = any(f.type == OBJECT_LIST and f.items for f in items)
    return checks, frozenset(f.name for f in items), nested


def _validate_items(name: str, entity: str, items: tuple[Field, ...], values: list,
                    allow_unknown: bool) -> None:
    """Validate each object of a list as :func:`validate` validates a payload."""
    checks, names, nested = _item_checks(items)
    if nested:
        item_ep = Endpoint(name, "", "", entity, items)
        for item in values:
            validate(item_ep, item, allow_unknown=allow_unknown)
        return
    for item in values:
        if not allow_unknown:
            for key in item:
                if key not in names:
                    raise CatalogueError(name, key, "is not a field of this endpoint")
        for field_name, required, check, problem in checks:
            value = item.get(field_name)
            if value is None:
                if required:
                    raise CatalogueError(name, field_name, "is required")
            elif not check(value):
                raise CatalogueError(name, field_name, problem, value)


def validate(endpoint: Endpoint, values: Mapping[str, Any], *, journal_form: bool = False,
             allow_unknown: bool = False) -> None:
    """Raise :class:`CatalogueError` when ``values`` do not fit ``endpoint``.

    :param values: field name to value, all locations merged (body, query and parts).
    :param journal_form: the payload as journaled: ``experimentKey`` is absent (the uploader
        adds it) and blob fields hold ``{"$blob": sha256, "size": n}`` references.
    :param allow_unknown: accept fields the catalogue does not name (the emulator is lenient
        there, as Comet is; the recorder is not).
    """
    known = {f.name: f for f in endpoint.fields}
    if not allow_unknown:
        for name in values:
            if name not in known:
                raise CatalogueError(endpoint.name, name, "is not a field of this endpoint")
    for f in endpoint.fields:
        if journal_form and f.name in KEY_FIELDS:
            continue
        value = values.get(f.name)
        if value is None:
            if f.required:
                raise CatalogueError(endpoint.name, f.name, "is required")
            continue
        if journal_form and f.name == "projectId" and is_project_ref(value):
            continue
        if journal_form and f.blob:
            if not _is_blob_ref(value):
                raise CatalogueError(endpoint.name, f.name, "must be a blob reference", value)
            continue
        problem = check_type(f.type, value)
        if problem:
            raise CatalogueError(endpoint.name, f.name, problem, value)
        if f.type == OBJECT_LIST and f.items:
            _validate_items(f"{endpoint.name}.{f.name}[]", endpoint.entity, f.items, value,
                            allow_unknown)
    if endpoint.one_of:
        given = [g for g in endpoint.one_of if all(values.get(n) is not None for n in g)]
        if len(given) != 1:
            names = " or ".join("+".join(g) for g in endpoint.one_of)
            raise CatalogueError(endpoint.name, "/".join(endpoint.one_of[0]),
                                 f"give exactly one of {names}")
