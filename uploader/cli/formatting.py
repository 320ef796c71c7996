"""Human-readable figures for CLI output (no click here: the library stays click-free)."""

from __future__ import annotations

import datetime as _dt


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def human_time_ms(ms: int | None) -> str:
    if ms is None:
        return "-"
    return _dt.datetime.fromtimestamp(ms / 1000, _dt.timezone.utc).strftime(
        "%Y-%m-%d %H:%M:%S UTC")


def human_duration_s(seconds: float) -> str:
    if seconds < 10:  # "in 0s" for a 0.4 s upload says nothing
        return f"{seconds:.2f}s" if seconds < 1 else f"{seconds:.1f}s"
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else (f"{m}m{s:02d}s" if m else f"{s}s")
