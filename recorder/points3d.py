"""The files of a 3D point cloud (``log_points_3d``), made as the official SDK makes them.

Points go one per line into ``points.jsonl`` (``[x, y, z]`` or ``[x, y, z, r, g, b]``), boxes
one per line into ``boxes.jsonl`` (``{"segments": [[p1, p2, ...], ...], "color", ...}``); the
metadata gets the cloud's ``xRange``/``yRange``/``zRange``, and a 250x250 PNG thumbnail is
drawn with Pillow where it is installed (the SDK drops the whole call without it; a journal
keeps the cloud and goes without the picture). The SDK's limits (1,000,000 points, 250,000
boxes) are applied the same way: what is over is left out with a warning.
"""

from __future__ import annotations

import io
import json
import logging
import math
import numbers
from dataclasses import dataclass, field
from typing import Any, Final

from comet_journal.recorder import validation as check

logger = logging.getLogger(__name__)

MAX_POINTS: Final = 1_000_000
MAX_BOXES: Final = 250_000
THUMBNAIL_SIZE: Final = (250, 250)
_BACKGROUND: Final = (51, 51, 77)
_WHITE: Final = (255, 255, 255)
METHOD: Final = "log_points_3d"


@dataclass
class Cloud:
    """A cloud's files (bytes, None when absent) and the ranges its coordinates span."""

    points: bytes | None = None
    boxes: bytes | None = None
    ranges: list = field(default_factory=lambda: [[math.inf, -math.inf] for _ in range(3)])
    drawn_points: list = field(default_factory=list)
    drawn_segments: list = field(default_factory=list)

    def widen(self, xyz: list) -> None:
        for axis, value in enumerate(xyz[:3]):
            low, high = self.ranges[axis]
            self.ranges[axis] = [min(low, value), max(high, value)]

    def metadata(self, given: dict | None) -> dict:
        out = dict(given or {})
        out.update(xRange=self.ranges[0], yRange=self.ranges[1], zRange=self.ranges[2])
        return out


def _number(value: Any) -> int | float:
    if hasattr(value, "item") and not isinstance(value, (list, tuple)):
        value = value.item()  # a NumPy scalar
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise check.type_error(METHOD, "points", "points of numbers", value)
    if not math.isfinite(value):
        raise check.value_error(METHOD, "points", "must be finite numbers", value)
    return value if isinstance(value, int) else float(value)


def _point(value: Any, what: str, lengths: tuple) -> list:
    if hasattr(value, "tolist"):
        value = value.tolist()
    if not isinstance(value, (list, tuple)) or len(value) not in lengths:
        raise check.value_error(METHOD, what, f"each point must have {' or '.join(map(str, lengths))}"
                                " numbers ([x, y, z] or [x, y, z, r, g, b])", value)
    return [_number(v) for v in value]


def _sequence(value: Any, what: str) -> list:
    if hasattr(value, "tolist"):
        value = value.tolist()
    if not isinstance(value, (list, tuple)):
        raise check.type_error(METHOD, what, "a list", value)
    return list(value)


def build_cloud(points: Any, boxes: Any) -> Cloud:
    """The cloud's files; raises TypeError/ValueError for what the SDK could not draw."""
    cloud = Cloud()
    points = _sequence(points, "points") if points is not None else []
    boxes = _sequence(boxes, "boxes") if boxes is not None else []
    if not points and not boxes:
        raise check.value_error(METHOD, "points/boxes", "either points or boxes are required",
                                None)
    if points:
        if len(points) > MAX_POINTS:
            logger.warning("comet-journal: log_points_3d: %d points, over the limit: keeping "
                           "the first %d", len(points), MAX_POINTS)
        lines = []
        for raw in points[:MAX_POINTS]:
            point = _point(raw, "points", (3, 6))
            cloud.widen(point)
            cloud.drawn_points.append(point)
            lines.append(json.dumps(point))
        cloud.points = ("\n".join(lines) + "\n").encode()
    if boxes:
        cloud.boxes = _boxes(cloud, boxes)
    return cloud


def _boxes(cloud: Cloud, boxes: list) -> bytes:
    if len(boxes) > MAX_BOXES:
        logger.warning("comet-journal: log_points_3d: %d boxes, over the limit: keeping the "
                       "first %d", len(boxes), MAX_BOXES)
    lines = []
    for box in boxes[:MAX_BOXES]:
        if not isinstance(box, dict) or "segments" not in box:
            raise check.type_error(METHOD, "boxes", "dicts with 'segments'", box)
        segments = [[_point(p, "boxes", (3,)) for p in _sequence(s, "boxes")]
                    for s in _sequence(box["segments"], "boxes")]
        for segment in segments:
            for point in segment:
                cloud.widen(point)
        color = box.get("color")
        cloud.drawn_segments.append((segments, tuple(color) if color else _WHITE))
        try:
            lines.append(json.dumps({**box, "segments": segments}))
        except (TypeError, ValueError) as exc:
            raise check.type_error(METHOD, "boxes", "JSON-serialisable boxes", box,
                                   str(exc)) from None
    return ("\n".join(lines) + "\n").encode()


def thumbnail(cloud: Cloud) -> bytes | None:
    """A PNG picture of the cloud, seen from above at an angle; None without Pillow."""
    try:
        from PIL import Image, ImageDraw
    except ImportError:
        return None
    width, height = THUMBNAIL_SIZE
    image = Image.new("RGB", THUMBNAIL_SIZE, _BACKGROUND)
    canvas = ImageDraw.Draw(image)
    mid = [(low + high) / 2 for low, high in cloud.ranges]
    spans = [high - low or 1 for low, high in cloud.ranges]
    scale = min(width, height) / max(spans) * 0.9

    def project(p: list) -> tuple[float, float]:
        x, y, z = (p[i] - mid[i] for i in range(3))
        c = math.cos(math.pi / 4)
        return (width / 2 + (x - y) * c * scale, height / 2 - ((x + y) * c * 0.5 + z) * scale)

    for p in cloud.drawn_points:
        color = tuple(max(0, min(255, int(round(v)))) for v in p[3:6]) or _WHITE
        canvas.point(project(p), fill=color)
    for segments, color in cloud.drawn_segments:
        fill = tuple(max(0, min(255, int(v))) for v in color[:3])
        for segment in segments:
            if len(segment) > 1:
                canvas.line([project(p) for p in segment], fill=fill)
    out = io.BytesIO()
    image.save(out, "png")
    return out.getvalue()
