"""Images, figures and tables, journaled as ``upload-asset`` calls (type ``image`` for
images and figures, a plain asset for tables), as the REST API documents them.

Pillow (arrays as images), matplotlib (the current figure) and pandas (DataFrames) are
optional: they are imported only when a call needs them, and a call that needs a missing one
is refused with a warning that names the package to install.
"""

from __future__ import annotations

import csv
import importlib
import io
import os
from typing import Any

from comet_journal.recorder import validation as check
from comet_journal.recorder.tolerance import tolerant


def optional_module(method: str, module: str, package: str, purpose: str):
    """Import ``module`` or raise a ValueError naming the package (a refusal, not a crash)."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ValueError(f"{method}(): {purpose} needs {package}, which is not installed; "
                         f"pip install {package}") from None


def image_bytes(method: str, image_data: Any, image_format: str) -> bytes:
    """The encoded image: a file's bytes, a PIL image, or an array/list of pixels."""
    if isinstance(image_data, (bytes, bytearray)):
        return bytes(image_data)
    if hasattr(image_data, "read"):
        data = image_data.read()
        return data if isinstance(data, bytes) else data.encode()
    pil_image = optional_module(method, "PIL.Image", "pillow", "an image from pixels") \
        if not hasattr(image_data, "save") else None
    if pil_image is not None:
        numpy = optional_module(method, "numpy", "numpy", "an image from pixels")
        array = numpy.asarray(image_data)
        if array.dtype.kind == "f":
            array = (array * (255.0 if array.max(initial=0) <= 1.0 else 1.0)).clip(0, 255)
        image_data = pil_image.fromarray(array.astype("uint8"))
    buffer = io.BytesIO()
    image_data.save(buffer, format=image_format.upper().replace("JPG", "JPEG"))
    return buffer.getvalue()


def table_bytes(method: str, file_name: str, tabular_data: Any, headers: Any) -> bytes:
    """CSV/TSV text for rows; a DataFrame is written as its extension asks (csv/tsv/json/
    html/md, like the SDK)."""
    extension = os.path.splitext(file_name)[1].lower()
    if hasattr(tabular_data, "to_csv"):  # a pandas DataFrame (pandas is installed, then)
        if extension == ".json":
            return tabular_data.to_json().encode()
        if extension == ".html":
            return tabular_data.to_html().encode()
        if extension == ".md":
            return tabular_data.to_markdown().encode()
        return tabular_data.to_csv(sep="\t" if extension == ".tsv" else ",").encode()
    if not isinstance(tabular_data, (list, tuple)) and not hasattr(tabular_data, "tolist"):
        raise check.type_error(method, "tabular_data", "a list of rows or a DataFrame",
                               tabular_data)
    rows = tabular_data.tolist() if hasattr(tabular_data, "tolist") else list(tabular_data)
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter="\t" if extension == ".tsv" else ",",
                        lineterminator="\n")
    if isinstance(headers, (list, tuple)):
        writer.writerow(headers)
    for row in rows:
        writer.writerow(row if isinstance(row, (list, tuple)) else [row])
    return buffer.getvalue().encode()


class MediaMixin:
    """Part of :class:`comet_journal.recorder.Experiment`."""

    @tolerant
    def log_image(self, image_data: Any, name: Any = None, overwrite: bool = False,
                  image_format: str = "png", image_scale: float = 1.0,
                  image_shape: Any = None, image_colormap: Any = None,
                  image_minmax: Any = None, image_channels: str = "last",
                  copy_to_tmp: bool = True, step: Any = None, annotations: Any = None,
                  metadata: Any = None) -> dict:
        """An image: a file path, a file object, encoded bytes, a PIL image or an array of
        pixels (Pillow and numpy needed). Scaling, colormaps and annotations are not
        applied."""
        method = "log_image"
        check.optional_str(method, "name", name)
        check.name(method, "image_format", image_format)
        check.boolean(method, "overwrite", overwrite)
        step = check.step(method, "step", step)
        metadata = self._asset_metadata(method, metadata)
        if isinstance(image_data, (str, os.PathLike)):
            path = check.existing_file(method, "image_data", image_data)
            return self._record_asset(name or os.path.basename(path), self._store_file(path),
                                      overwrite, step, metadata, None, "image")
        data = image_bytes(method, image_data, image_format)
        return self._record_asset(name or f"image.{image_format}", self._store_bytes(data),
                                  overwrite, step, metadata, None, "image")

    @tolerant
    def log_figure(self, figure_name: Any = None, figure: Any = None,
                   overwrite: bool = False, step: Any = None, metadata: Any = None,
                   format: str = "auto") -> dict:
        """A matplotlib figure (default: the current one) as an SVG image (``format``
        "auto"/"svg"), or "png"; named ``figure_name`` (default "Figure")."""
        method = "log_figure"
        check.optional_str(method, "figure_name", figure_name)
        check.boolean(method, "overwrite", overwrite)
        if format not in ("auto", "svg", "png"):
            raise check.value_error(method, "format", 'must be "auto", "svg" or "png"', format)
        step = check.step(method, "step", step)
        metadata = self._asset_metadata(method, metadata)
        if figure is None:
            pyplot = optional_module(method, "matplotlib.pyplot", "matplotlib",
                                     "the current figure")
            figure = pyplot.gcf()
        if not hasattr(figure, "savefig"):
            raise check.type_error(method, "figure", "a matplotlib figure", figure)
        extension = "png" if format == "png" else "svg"
        buffer = io.BytesIO()
        figure.savefig(buffer, format=extension)
        # The SDK's names: the figure's name (default "Figure"), the format as the extension.
        return self._record_asset(figure_name or "Figure", self._store_bytes(buffer.getvalue()),
                                  overwrite, step, metadata, None, "image",
                                  extension=extension)

    @tolerant
    def log_table(self, filename: Any, tabular_data: Any = None, headers: Any = False,
                  **format_kwargs: Any) -> dict:
        """A table as a file asset: rows (list of lists, array) or a pandas DataFrame, written
        as CSV (``.tsv``: tab-separated); with no data, the file ``filename`` itself."""
        method = "log_table"
        check.name(method, "filename", filename)
        if tabular_data is None:
            path = check.existing_file(method, "filename", filename)
            return self._record_asset(os.path.basename(path), self._store_file(path), False,
                                      None, None, None, None)
        data = table_bytes(method, filename, tabular_data, headers)
        return self._record_asset(filename, self._store_bytes(data), False, None, None, None,
                                  None)
