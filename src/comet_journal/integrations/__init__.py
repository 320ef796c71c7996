"""Framework integrations; each module imports its framework only when it is imported itself.

* :mod:`comet_journal.integrations.lightning`: ``CometJournalLogger``, a Lightning ``Logger``;
* :mod:`comet_journal.integrations.huggingface`: ``CometJournalCallback``, a ``TrainerCallback``;
* :mod:`comet_journal.integrations.keras`: ``CometJournalCallback``, a Keras ``Callback``.

Install the frameworks yourself (or ``pip install comet-journal[integrations-test]``).
"""

from __future__ import annotations

import argparse
from typing import Any, Iterator, Mapping

from comet_journal.recorder.compat import unwrap


def to_mapping(params: Any) -> dict:
    """Hyperparameters as a dict: a mapping, an ``argparse.Namespace``, or an object with
    ``to_dict()`` (Hugging Face arguments and configs)."""
    if params is None:
        return {}
    if isinstance(params, argparse.Namespace):
        return dict(vars(params))
    if isinstance(params, Mapping):
        return dict(params)
    to_dict = getattr(params, "to_dict", None)
    if callable(to_dict):
        return dict(to_dict())
    return dict(vars(params))


def flatten(params: Mapping, prefix: str = "", sep: str = "/") -> Iterator[tuple[str, Any]]:
    """``outer/inner`` names for nested mappings and namespaces (Lightning's convention)."""
    for key, value in params.items():
        name = f"{prefix}{sep}{key}" if prefix else str(key)
        if isinstance(value, argparse.Namespace):
            value = vars(value)
        if isinstance(value, Mapping) and value:
            yield from flatten(value, name, sep)
        else:
            yield name, value


def numeric_metrics(metrics: Mapping) -> dict:
    """The entries that are numbers (tensors and numpy scalars unwrapped); frameworks put
    strings and None in their logs too."""
    out = {}
    for name, value in metrics.items():
        value = unwrap(value)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            out[name] = value
    return out


def whole_epoch(epoch: Any) -> int | None:
    """Hugging Face counts epochs as floats (0.5 = half way through the first)."""
    return None if epoch is None else int(epoch)
