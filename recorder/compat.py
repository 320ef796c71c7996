"""Values and names the way ``comet_ml`` 3.58.8 turns them into a Comet call.

Used by the default (tolerant) mode: what the SDK accepts is accepted here and converted the
same way; what it refuses raises (and the caller's ``tolerant`` wrapper turns that into a
warning). ``strict=True`` skips these conversions and keeps the stricter checks of
:mod:`comet_journal.recorder.validation`.

Names: ``log_metrics`` joins a prefix with ``_`` and nested keys with ``/``
(``pre_a``, ``pre_b/c``); ``log_parameters`` joins a prefix with ``_`` and nested keys with
``|`` (``opt|lr``).

Where the SDK's own result is an accident, the journal keeps something useful instead (see
the README's "Coming from comet_ml"): ``None`` is journaled as the text ``"None"`` (the REST
endpoints need a value), ``Decimal`` parameters as their text, ``Decimal`` metrics as numbers
and lists of lists as JSON text (the parameter endpoint takes a flat list).
"""

from __future__ import annotations

import decimal
import json
import numbers
import os
from typing import Any, Iterator

NONE_TEXT = "None"
METRIC_PREFIX_SEP, METRIC_NEST_SEP = "_", "/"
PARAM_PREFIX_SEP, PARAM_NEST_SEP = "_", "|"


def unwrap(value: Any) -> Any:
    """numpy scalars, 0-d arrays and 0-d torch tensors as plain Python values."""
    item = getattr(value, "item", None)
    if callable(item) and getattr(value, "ndim", None) == 0:
        return item()
    return value


def _as_list(value: Any) -> list | None:
    """Arrays (numpy, torch: anything with ``tolist`` and ``ndim >= 1``), lists, tuples."""
    if isinstance(value, (list, tuple)):
        return list(value)
    tolist = getattr(value, "tolist", None)
    if callable(tolist) and isinstance(getattr(value, "ndim", None), int) and value.ndim >= 1:
        return tolist()
    return None


def _to_json_text(value: Any) -> str:
    return json.dumps(value, default=str)


def _plain_scalar(value: Any) -> Any:
    """A str/bool/int/float, or a best-effort text for everything else."""
    value = unwrap(value)
    if value is None:
        return NONE_TEXT
    if isinstance(value, (str, bool, int, float)):
        return value
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    if isinstance(value, dict):
        return _to_json_text(value)
    return str(value)


def param_value(value: Any) -> Any:
    """A parameter value: scalars as they are, flat lists as lists, the rest as text."""
    items = _as_list(value)
    if items is None:
        return _plain_scalar(value)
    flat = [unwrap(v) for v in items]
    if all(isinstance(v, (str, bool, int, float)) for v in flat):
        return flat
    return _to_json_text(flat)


def other_value(value: Any) -> Any:
    """A ``log_other`` value: the SDK stringifies containers (``"[1, 2]"``)."""
    items = _as_list(value)
    if items is not None:
        return str(items)
    return _plain_scalar(value)


def metric_value(value: Any) -> Any:
    """A metric value; None is refused (the SDK ignores it with a warning)."""
    value = unwrap(value)
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, (int, float, str)):
        return value
    if value is None:
        raise ValueError("log_metric(): value must not be None, got None; "
                         "log a number, or skip the call")
    if isinstance(value, (numbers.Real, decimal.Decimal)):
        return float(value)
    if isinstance(value, dict):
        return _to_json_text(value)
    items = _as_list(value)
    return str(items) if items is not None else str(value)


def name_text(value: Any) -> Any:
    """A key of a logged dict: the SDK uses ``str(key)``."""
    return value if isinstance(value, str) else str(value)


def flatten(dic: dict, prefix: str | None, prefix_sep: str, nest_sep: str
            ) -> Iterator[tuple[str, Any]]:
    """``(name, value)`` for every leaf of a nested dict, named as the SDK names them."""
    for key, value in dic.items():
        name = f"{prefix}{prefix_sep}{name_text(key)}" if prefix else name_text(key)
        if isinstance(value, dict) and value:
            yield from flatten(value, name, nest_sep, nest_sep)
        else:
            yield name, value


def has_nested(dic: dict) -> bool:
    return any(isinstance(v, dict) and v for v in dic.values())


def journal_location(journal: Any, offline_directory: Any, key: str) -> str:
    """Where an experiment's journal goes: ``journal``, then ``offline_directory``, then
    ``$COMET_JOURNAL``, then ``$COMET_OFFLINE_DIRECTORY``, then ``./.comet-journal/``.

    A directory holds one file per experiment, ``<dir>/<key>.db`` (never one shared file).
    """
    return journal_choice(journal, offline_directory, key)[0]


def journal_choice(journal: Any, offline_directory: Any, key: str) -> tuple[str, bool]:
    """(the journal's path, whether it was chosen as a directory: a *directory run*, which
    seals segments by default for readers on other hosts)."""
    for choice, is_dir in ((journal, False), (offline_directory, True),
                           (os.environ.get("COMET_JOURNAL") or None, False),
                           (os.environ.get("COMET_OFFLINE_DIRECTORY") or None, True)):
        if choice is not None:
            return _file_in(os.fspath(choice), key, is_dir)
    return _file_in(".comet-journal", key, True)


def _file_in(path: str, key: str, is_dir: bool) -> tuple[str, bool]:
    if is_dir or os.path.isdir(path) or path.endswith(os.sep):
        os.makedirs(path, exist_ok=True)
        return os.path.join(path, f"{key}.db"), True
    return path, False
