"""Charts Comet draws from JSON assets: confusion matrices, curves and 3D histograms.

Each is journaled as one ``upload-asset`` call with the SDK's asset ``type``
(``confusion-matrix``, ``curve``, ``histogram3d``) and the SDK's JSON layout, so Comet's
panels show them as they show runs logged by ``comet_ml``.
"""

from __future__ import annotations

import json
import math
from typing import Any

from comet_journal.recorder import compat
from comet_journal.recorder import validation as check
from comet_journal.recorder.tolerance import tolerant

# comet_ml's Histogram bins: exponentially distributed around ``offset``.
_HIST_START, _HIST_STOP, _HIST_STEP = 1e-12, 1e20, 1.1


def _numbers(method: str, arg: str, values: Any) -> list:
    """A flat list of numbers from a list, tuple or array (nested ones are flattened)."""
    items = compat.unwrap(values)
    listed = getattr(items, "tolist", None)
    if callable(listed):
        items = listed()
    if not isinstance(items, (list, tuple)):
        raise check.type_error(method, arg, "a list (or array) of numbers", values)
    flat: list = []
    for item in items:
        if isinstance(item, (list, tuple)) or getattr(item, "ndim", 0):
            flat.extend(_numbers(method, arg, item))
            continue
        item = compat.unwrap(item)
        if isinstance(item, bool) or not isinstance(item, (int, float)):
            raise check.type_error(method, arg, "a list (or array) of numbers", item)
        flat.append(item)
    return flat


def _category(value: Any) -> int:
    """A class index: an int, or the argmax of a one-hot / score vector (as the SDK)."""
    value = compat.unwrap(value)
    listed = getattr(value, "tolist", None)
    if callable(listed):
        value = listed()
    if isinstance(value, (list, tuple)):
        return max(range(len(value)), key=lambda i: value[i])
    return int(value)


def confusion_matrix_json(y_true, y_predicted, matrix, labels, title, row_label,
                          column_label, max_examples_per_cell) -> dict:
    samples = None
    kind = None
    if matrix is None:
        if y_true is None or y_predicted is None:
            raise TypeError("log_confusion_matrix(): give matrix, or y_true and y_predicted")
        actual = [_category(v) for v in y_true]
        predicted = [_category(v) for v in y_predicted]
        if len(actual) != len(predicted):
            raise check.value_error("log_confusion_matrix", "y_predicted",
                                    f"must have as many items as y_true ({len(actual)})",
                                    len(predicted))
        size = max([len(labels or [])] + [v + 1 for v in actual + predicted])
        matrix = [[0] * size for _ in range(size)]
        samples = [[None] * size for _ in range(size)]
        for index, (a, p) in enumerate(zip(actual, predicted)):
            matrix[a][p] += 1
            cell = samples[a][p] = samples[a][p] or []
            if len(cell) < max_examples_per_cell:
                cell.append(index)
        kind = "integer"
    else:
        matrix = [[compat.unwrap(v) for v in row] for row in
                  (matrix.tolist() if hasattr(matrix, "tolist") else matrix)]
    labels = [str(x) for x in labels] if labels is not None else \
        [str(i) for i in range(len(matrix))]
    return {"version": 1, "title": title, "labels": labels, "matrix": matrix,
            "rowLabel": row_label, "columnLabel": column_label,
            "maxSamplesPerCell": max_examples_per_cell, "sampleMatrix": samples, "type": kind}


def _bin_count(offset: float) -> int:
    n, value = 0, _HIST_START
    while offset + value <= _HIST_STOP:
        n += 1
        value *= _HIST_STEP
    return 2 * n + 3


def _bin_index(value: float, offset: float, midpoint: int, bins: int) -> int:
    if value >= _HIST_STOP:
        return bins - 2
    if value <= -_HIST_STOP:
        return 0
    if value == offset:
        return midpoint
    distance = math.ceil(math.log(abs(value - offset) / _HIST_START, _HIST_STEP))
    return midpoint - 1 - distance if value < offset else midpoint + distance


def histogram_json(values: list, offset: float = 0) -> dict:
    """comet_ml's ``Histogram(...).to_json()`` for ``values`` (version 2, sparse counts)."""
    bins = _bin_count(offset)
    midpoint = bins // 2
    counts: dict[int, int] = {}
    for value in values:
        value = 0.0 if abs(value) <= 1e-20 else value
        index = _bin_index(value, offset, midpoint, bins)
        counts[index] = counts.get(index, 0) + 1
    return {"version": 2, "index_values": [[i, counts[i]] for i in sorted(counts)],
            "values": None, "offset": offset, "start": _HIST_START, "stop": _HIST_STOP,
            "step": _HIST_STEP}


class ChartsMixin:
    """Part of :class:`comet_journal.recorder.Experiment`."""

    def _log_json_asset(self, method: str, content: dict, file_name: str, asset_type: str,
                        overwrite: Any, step: Any, epoch: Any, metadata: Any) -> dict:
        check.boolean(method, "overwrite", overwrite)
        step = check.step(method, "step", step)
        epoch = self._current_epoch(check.step(method, "epoch", epoch))
        metadata = self._asset_metadata(method, metadata)
        raw = json.dumps(content, separators=(",", ":")).encode()
        return self._record_asset(file_name, self._store_bytes(raw), overwrite, step, metadata,
                                  None, asset_type, epoch)

    @tolerant
    def log_confusion_matrix(self, y_true: Any = None, y_predicted: Any = None,
                             matrix: Any = None, labels: Any = None,
                             title: str = "Confusion Matrix",
                             row_label: str = "Actual Category",
                             column_label: str = "Predicted Category",
                             max_examples_per_cell: int = 25, max_categories: int = 25,
                             winner_function: Any = None, index_to_example_function: Any = None,
                             cache: bool = True, file_name: str = "confusion-matrix.json",
                             overwrite: bool = False, step: Any = None, epoch: Any = None,
                             images: Any = None, selected: Any = None,
                             images_annotations: Any = None, metadata: Any = None,
                             **kwargs: Any) -> dict:
        """A confusion matrix from ``y_true``/``y_predicted`` (labels or one-hot vectors) or
        a ``matrix``. Example images (``images``, ``index_to_example_function``) are not
        journaled."""
        method = "log_confusion_matrix"
        for arg, value in (("title", title), ("row_label", row_label),
                           ("column_label", column_label), ("file_name", file_name)):
            check.name(method, arg, value)
        max_examples_per_cell = check.positive_int(method, "max_examples_per_cell",
                                                   max_examples_per_cell)
        content = confusion_matrix_json(y_true, y_predicted, matrix, labels, title, row_label,
                                        column_label, max_examples_per_cell)
        return self._log_json_asset(method, content, file_name, "confusion-matrix", overwrite,
                                    step, epoch, metadata)

    @tolerant
    def log_curve(self, name: Any, x: Any, y: Any, overwrite: bool = False, step: Any = None,
                  metadata: Any = None) -> dict:
        """A curve (``x`` and ``y`` of the same length), drawn by Comet's curve panels."""
        method = "log_curve"
        check.name(method, "name", name)
        xs, ys = _numbers(method, "x", x), _numbers(method, "y", y)
        if len(xs) != len(ys):
            raise check.value_error(method, "y", f"must have as many items as x ({len(xs)})",
                                    len(ys))
        return self._log_json_asset(method, {"x": xs, "y": ys, "name": name}, name, "curve",
                                    overwrite, step, None, metadata)

    @tolerant
    def log_histogram_3d(self, values: Any, name: Any = None, step: Any = None,
                         epoch: Any = None, metadata: Any = None, **kwargs: Any) -> dict | None:
        """A histogram of ``values`` for this step (Comet's 3D histogram panel)."""
        method = "log_histogram_3d"
        check.optional_str(method, "name", name)
        offset = kwargs.pop("offset", 0)
        if kwargs:
            raise TypeError(f"{method}(): unexpected argument(s) {', '.join(sorted(kwargs))}")
        numbers = _numbers(method, "values", values)
        if not numbers:
            raise check.value_error(method, "values", "must not be empty", values)
        return self._log_json_asset(method, histogram_json(numbers, offset),
                                    name or "histogram_3d.json", "histogram3d", False, step,
                                    epoch, metadata)
