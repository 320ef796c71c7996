"""Reading journals back in tests, with plain sqlite3 (independent of the code under test)."""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import subprocess


def rows(path, endpoint: str | None = None) -> list[dict]:
    """Every call row as a dict: seq, endpoint, experiment_id, ts_ms, payload (decoded)."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        sql = "SELECT seq, endpoint, experiment_id, ts_ms, payload FROM calls"
        args: tuple = ()
        if endpoint:
            sql += " WHERE endpoint = ?"
            args = (endpoint,)
        out = []
        for seq, ep, exp_id, ts, payload in conn.execute(sql + " ORDER BY seq", args):
            out.append({"seq": seq, "endpoint": ep, "experiment_id": exp_id, "ts_ms": ts,
                        "payload": json.loads(payload)})
        return out
    finally:
        conn.close()


def count(path, endpoint: str | None = None) -> int:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        if endpoint:
            return conn.execute("SELECT count(*) FROM calls WHERE endpoint=?",
                                (endpoint,)).fetchone()[0]
        return conn.execute("SELECT count(*) FROM calls").fetchone()[0]
    finally:
        conn.close()


def integrity_ok(path) -> bool:
    conn = sqlite3.connect(path)
    try:
        return conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        conn.close()


@contextlib.contextmanager
def small_tmpfs(path, options: str):
    """A real tmpfs mounted at ``path`` (``options``: e.g. "size=2m", "ro,size=1m"),
    unmounted after; the test is skipped, saying why, where mounting is not permitted."""
    import pytest
    os.makedirs(path, exist_ok=True)
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs ({options}) here: "
                    f"{proc.stderr.strip() or proc.returncode}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def call_rows(path) -> list[tuple]:
    """Every call row of a journal or private copy, in seq order ([] while it does not exist
    or is being created)."""
    if not os.path.exists(path):
        return []
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return conn.execute("SELECT seq, endpoint, experiment_id, ts_ms, payload FROM calls "
                            "ORDER BY seq").fetchall()
    except sqlite3.OperationalError:  # a daemon is creating it
        return []
    finally:
        conn.close()
