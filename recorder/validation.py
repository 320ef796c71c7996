"""Argument checks for the public recorder API.

Every check raises at the call site with the method, the argument, the value and a hint,
so that a mistake in training code fails loudly and journals nothing.
"""

from __future__ import annotations

import math
import numbers
import os
from typing import Any


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def type_error(method: str, arg: str, expected: str, value: Any, hint: str = "") -> TypeError:
    msg = f"{method}(): {arg} must be {expected}, got {type(value).__name__} {_short(value)}"
    return TypeError(msg + (f"; {hint}" if hint else ""))


def value_error(method: str, arg: str, problem: str, value: Any, hint: str = "") -> ValueError:
    msg = f"{method}(): {arg} {problem}, got {_short(value)}"
    return ValueError(msg + (f"; {hint}" if hint else ""))


def name(method: str, arg: str, value: Any) -> str:
    if not isinstance(value, str):
        raise type_error(method, arg, "a string", value)
    if not value.strip():
        raise value_error(method, arg, "must not be empty", value)
    return value


def optional_str(method: str, arg: str, value: Any) -> str | None:
    if value is not None and not isinstance(value, str):
        raise type_error(method, arg, "a string or None", value)
    return value


def step(method: str, arg: str, value: Any) -> int | None:
    """A step or epoch: None or a non-negative integer (numpy integers accepted)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        else:
            raise type_error(method, arg, "a non-negative integer or None", value)
    value = int(value)
    if value < 0:
        raise value_error(method, arg, "must not be negative", value)
    return value


def timestamp_seconds(method: str, value: Any) -> int | None:
    """A timestamp given in seconds since the epoch (the SDK's convention), as epoch ms."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise type_error(method, "timestamp", "seconds since the epoch (a number)", value)
    if not math.isfinite(value) or value < 0:
        raise value_error(method, "timestamp", "must be a finite, non-negative number", value)
    return int(value * 1000)


def epoch_millis(method: str, arg: str, value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
        raise type_error(method, arg, "epoch milliseconds (a non-negative integer)", value)
    return int(value)


def metric_value(method: str, value: Any) -> int | float | str:
    """Numbers (including NaN/inf and numpy scalars), booleans as 0/1, or text."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, (int, float, str)):
        return value
    item = getattr(value, "item", None)  # numpy/torch scalars
    if callable(item) and getattr(value, "ndim", 0) == 0 and getattr(value, "size", 1) == 1:
        return metric_value(method, item())
    if isinstance(value, numbers.Real):
        return float(value)
    if value is None:
        raise value_error(method, "value", "must not be None", value,
                          "log a number, or skip the call")
    raise type_error(method, "value", "a number or a string", value,
                     "log each entry of a dict or list as its own metric")


def scalar(method: str, arg: str, value: Any) -> Any:
    """A parameter or 'other' value: str, number, bool; numpy scalars are unwrapped."""
    if isinstance(value, (str, bool, int, float)):
        return value
    item = getattr(value, "item", None)
    if callable(item) and getattr(value, "ndim", 0) == 0:
        return scalar(method, arg, item())
    if value is None:
        raise value_error(method, arg, "must not be None", value)
    raise type_error(method, arg, "a string, number or boolean", value)


def param_value(method: str, value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return [scalar(method, "value", v) for v in value]
    return scalar(method, "value", value)


def mapping(method: str, arg: str, value: Any) -> dict:
    if not isinstance(value, dict):
        raise type_error(method, arg, "a dict", value)
    return value


def string_list(method: str, arg: str, value: Any) -> list[str]:
    if isinstance(value, str) or not isinstance(value, (list, tuple, set, frozenset)):
        raise type_error(method, arg, "a list of strings", value)
    out = []
    for item in value:
        if not isinstance(item, str) or not item:
            raise type_error(method, arg, "a list of non-empty strings", item)
        out.append(item)
    return out


def boolean(method: str, arg: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise type_error(method, arg, "True or False", value)
    return value


def existing_file(method: str, arg: str, value: Any) -> str:
    if not isinstance(value, (str, os.PathLike)):
        raise type_error(method, arg, "a file path", value)
    path = os.fspath(value)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{method}(): {arg} {path!r} does not exist")
    if os.path.isdir(path):
        raise IsADirectoryError(f"{method}(): {arg} {path!r} is a directory; log the files "
                                "in it one by one")
    return path


def timeout(method: str, value: Any) -> float | None:
    """A wait in seconds: None (no limit) or a finite, non-negative number."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise type_error(method, "timeout", "a number of seconds or None", value)
    if not math.isfinite(value) or value < 0:
        raise value_error(method, "timeout", "must be a finite, non-negative number of "
                          "seconds", value)
    return float(value)


def journal_path(method: str, value: Any) -> Any:
    """The ``journal`` argument: None (the default), a path string or an ``os.PathLike``."""
    if value is not None and not isinstance(value, (str, os.PathLike)):
        raise type_error(method, "journal", "a file or directory path", value)
    if isinstance(value, str) and not value.strip():
        raise value_error(method, "journal", "must not be empty", value)
    return value


def positive_int(method: str, arg: str, value: Any, optional: bool = False) -> int | None:
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise type_error(method, arg, "a positive integer" + (" or None" if optional else ""),
                         value)
    if value < 1:
        raise value_error(method, arg, "must be a positive integer", value)
    return int(value)


def experiment_key(value: Any) -> str:
    """The SDK's rule for user keys: alphanumeric, 32 to 50 characters."""
    if not isinstance(value, str):
        raise type_error("Experiment", "experiment_key", "a string", value)
    if not (value.isascii() and value.isalnum() and 32 <= len(value) <= 50):
        raise value_error("Experiment", "experiment_key", "must be 32 to 50 letters and digits",
                          value, "omit it to get a fresh key")
    return value


def writer_options(durability: Any, flush_interval: Any, max_queue: Any) -> None:
    if durability not in ("window", "call"):
        raise value_error("Experiment", "durability", 'must be "window" or "call"',
                                durability)
    if not (isinstance(flush_interval, (int, float)) and 0 < flush_interval <= 60):
        raise value_error("Experiment", "flush_interval",
                                "must be a number of seconds in (0, 60]", flush_interval)
    if isinstance(max_queue, bool) or not (isinstance(max_queue, int) and max_queue >= 1):
        raise value_error("Experiment", "max_queue", "must be a positive integer",
                                max_queue)
