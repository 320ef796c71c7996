#!/usr/bin/env python3
"""Another host's view of a directory, through FUSE: what a network filesystem's client on a
second host shows of files a first host writes, faults included, so the real daemon (an
unpatched process) can run on top of it.

    python scripts/fuse_two_hosts.py SOURCE MOUNTPOINT --seed 3 --stats stats.json

mounts SOURCE read-only at MOUNTPOINT (foreground; ``fusermount3 -u MOUNTPOINT`` ends it).
The kernel's own caches are off (attributes, names, pages: ``direct_io``), so every call of
the process on top reaches this layer, which plays the second host's client caches:

* **stale attributes**: a ``stat`` answer (size, mtime, inode, or "no such file") is kept for
  a random part of ``attr_ms`` and served as is, whatever happened to the file meanwhile;
* **stale directory entries**: a listing is kept likewise for up to ``dir_ms``: new names
  show late, removed names linger (opening them fails with ENOENT);
* **delayed visibility of new names**: a new inode at a name (a new file, or a name replaced
  by a rename) stays invisible for up to ``hide_ms`` (half of them at once): ENOENT, also
  *after a successful rename* on the writer's host;
* **close-to-open**: an open revalidates with the "server"; a file's growth after the open is
  not seen through that descriptor (reads stop at its size as of the open);
* **torn reads**: a file modified within ``torn_ms`` is, at a ``torn_rate`` of opens, read with
  zeros from a random offset on (written but not yet visible to this host);
* **ESTALE**: an open fails with ESTALE at ``estale_rate``; a descriptor whose file was replaced
  or removed meanwhile may fail its reads with ESTALE.

Random choices derive from ``seed`` (per name and inode where it matters). The layer counts
the calls it receives (``ops``: getattr, which includes every name lookup, fgetattr, readdir,
open, read) and what a client with these caches would send to the server (``server``), plus
the faults it injected (``faults``), into ``--stats`` (JSON, every half second and at exit).
:class:`Mount` starts and stops it from Python (tests and ``bench_fs_metadata.py``).
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import random
import shutil
import stat
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, fields

METADATA_OPS = ("getattr", "fgetattr", "readdir", "open")  # "filesystem metadata operations"


@dataclass(frozen=True)
class Faults:
    """How the second host's client misbehaves (times in milliseconds)."""

    seed: int = 0
    attr_ms: float = 1000.0
    dir_ms: float = 1000.0
    hide_ms: float = 1500.0
    torn_ms: float = 2000.0
    torn_rate: float = 0.3
    estale_rate: float = 0.02


@dataclass
class _Handle:
    fd: int
    path: str
    ino: int
    size: int  # as of the open: later growth is not seen through this descriptor
    cut: int | None  # torn: bytes from here on read as zeros
    may_go_stale: bool  # reads fail with ESTALE once the name points elsewhere


def unavailable() -> str | None:
    """Why a FUSE mount cannot be made here (None: it can)."""
    if not os.path.exists("/dev/fuse"):
        return "no /dev/fuse in this machine or container"
    if shutil.which("fusermount3") is None:
        return "no fusermount3 (Debian package fuse3)"
    try:
        import mfusepy  # noqa: F401  (loads libfuse through ctypes)
    except Exception as exc:  # ImportError, or OSError when libfuse3 is missing
        return f"mfusepy cannot be loaded ({type(exc).__name__}: {exc})"
    return None


class TwoHostView:
    """The FUSE operations (mfusepy calls the methods it finds): SOURCE as the second
    host's client sees it."""

    use_ns = True

    def __init__(self, source: str, faults: Faults):
        self.source = os.path.abspath(source)
        self.faults = faults
        self.ops: Counter = Counter()
        self.server: Counter = Counter()
        self.injected: Counter = Counter()
        self.started = time.monotonic()
        self._lock = threading.Lock()
        self._rng = random.Random(faults.seed)
        self._attrs: dict[str, tuple[float, dict | None]] = {}  # path -> (expires, attrs)
        self._listings: dict[str, tuple[float, list]] = {}  # dir -> (expires, entries)
        self._born: dict[tuple[str, int], float] = {}  # (name, inode) -> first seen
        self._shown: dict[str, int] = {}  # name -> the inode last shown there
        self._handles: dict[int, _Handle] = {}
        self._next_fh = 1
        for root, dirs, files in os.walk(self.source):  # what is there at mount: visible
            for name in dirs + files:
                real = os.path.join(root, name)
                path = "/" + os.path.relpath(real, self.source)
                ino = os.lstat(real).st_ino
                self._born[(path, ino)] = float("-inf")
                self._shown[path] = ino

    # --- the second host's caches -------------------------------------------------------

    def _real(self, path: str) -> str:
        return os.path.join(self.source, path.lstrip("/"))

    def _chance(self, *key) -> float:
        """A random number fixed by the seed and ``key`` (whatever the threads' order)."""
        return random.Random(f"{self.faults.seed}/{key!r}").random()

    def _random(self) -> float:
        with self._lock:
            return self._rng.random()

    def _count(self, counter: Counter, name: str) -> None:
        with self._lock:
            counter[name] += 1

    def _server_stat(self, path: str) -> os.stat_result | None:
        self._count(self.server, "getattr")
        try:
            return os.lstat(self._real(path))
        except FileNotFoundError:
            return None

    def _visible(self, path: str, st: os.stat_result) -> bool:
        """A new inode at a name shows only after its random delay on this host."""
        if path == "/":
            return True
        key = (path, st.st_ino)
        now = time.monotonic()
        with self._lock:
            born = self._born.setdefault(key, now)
        delay = 0.0 if self._chance(key, "at once") < 0.5 else \
            self._chance(key, "delay") * self.faults.hide_ms / 1000
        if now < born + delay:
            self._count(self.injected, "hidden_name")
            return False
        with self._lock:
            self._shown[path] = st.st_ino
        return True

    def _lifetime(self, ms: float) -> float:
        return time.monotonic() + (0.25 + 0.75 * self._random()) * ms / 1000

    # --- operations -----------------------------------------------------------------------

    def getattr(self, path: str, fh: int | None = None) -> dict:
        if fh is not None and fh in self._handles:
            self._count(self.ops, "fgetattr")
            handle = self._handles[fh]
            return _attrs(os.fstat(handle.fd), size=handle.size)
        self._count(self.ops, "getattr")
        with self._lock:
            cached = self._attrs.get(path)
        if cached is not None and time.monotonic() < cached[0]:
            if self._changed_since(path, cached[1]):
                self._count(self.injected, "stale_attr")
            if cached[1] is None:
                raise OSError(errno.ENOENT, "no such file (cached)")
            return cached[1]
        st = self._server_stat(path)
        attrs = _attrs(st) if st is not None and self._visible(path, st) else None
        expires = self._lifetime(self.faults.attr_ms)
        with self._lock:
            self._attrs[path] = (expires, attrs)
        if attrs is None:
            raise OSError(errno.ENOENT, "no such file")
        return attrs

    def _changed_since(self, path: str, attrs: dict | None) -> bool:
        try:
            st = os.lstat(self._real(path))
        except FileNotFoundError:
            return attrs is not None
        return attrs is None or (attrs["st_ino"], attrs["st_size"], attrs["st_mtime"]) != (
            st.st_ino, st.st_size, st.st_mtime_ns)

    def readdir(self, path: str, fh: int) -> list:
        """Names with their type (as NFS's READDIRPLUS gives it: no stat to tell a directory)."""
        self._count(self.ops, "readdir")
        with self._lock:
            cached = self._listings.get(path)
        if cached is not None and time.monotonic() < cached[0]:
            return [".", "..", *cached[1]]
        self._count(self.server, "readdir")
        entries = []
        for name in os.listdir(self._real(path)):
            child = os.path.join(path, name)
            try:
                st = os.lstat(self._real(child))
            except FileNotFoundError:
                continue
            if self._visible(child, st) or child in self._shown:
                entries.append((name, {"st_mode": stat.S_IFMT(st.st_mode)}, 0))
        expires = self._lifetime(self.faults.dir_ms)
        with self._lock:
            self._listings[path] = (expires, entries)
        return [".", "..", *entries]

    def open(self, path: str, flags: int) -> int:
        self._count(self.ops, "open")
        self._count(self.server, "open")  # close-to-open: an open always asks the server
        if flags & (os.O_WRONLY | os.O_RDWR):
            raise OSError(errno.EROFS, "read-only view")
        if self._random() < self.faults.estale_rate:
            self._count(self.injected, "estale_open")
            raise OSError(errno.ESTALE, "stale file handle")
        st = self._server_stat(path)
        if st is None or not self._visible(path, st):
            raise OSError(errno.ENOENT, "no such file")
        fd = os.open(self._real(path), os.O_RDONLY)
        st = os.fstat(fd)
        cut = None
        recent = time.time() - st.st_mtime < self.faults.torn_ms / 1000
        if recent and st.st_size > 0 and self._random() < self.faults.torn_rate:
            cut = int(self._random() * st.st_size)
            self._count(self.injected, "torn_open")
        expires = self._lifetime(self.faults.attr_ms)
        with self._lock:
            self._attrs[path] = (expires, _attrs(st))
            fh, self._next_fh = self._next_fh, self._next_fh + 1
            self._handles[fh] = _Handle(fd, path, st.st_ino, st.st_size, cut,
                                        self._rng.random() < 0.5)
        return fh

    def read(self, path: str, size: int, offset: int, fh: int) -> bytes:
        self._count(self.ops, "read")
        handle = self._handles[fh]
        if handle.may_go_stale and self._replaced(handle):
            self._count(self.injected, "estale_read")
            raise OSError(errno.ESTALE, "stale file handle")
        end = min(offset + size, handle.size)
        if offset >= end:
            return b""
        data = os.pread(handle.fd, end - offset, offset)
        if handle.cut is not None and offset + len(data) > handle.cut:
            keep = max(0, handle.cut - offset)
            data = data[:keep] + bytes(len(data) - keep)
        return data

    def _replaced(self, handle: _Handle) -> bool:
        try:
            return os.lstat(self._real(handle.path)).st_ino != handle.ino
        except FileNotFoundError:
            return True

    def release(self, path: str, fh: int) -> int:
        with self._lock:
            handle = self._handles.pop(fh, None)
        if handle is not None:
            os.close(handle.fd)
        return 0

    def statfs(self, path: str) -> dict:
        sv = os.statvfs(self.source)
        return {k: getattr(sv, k) for k in ("f_bavail", "f_bfree", "f_blocks", "f_bsize",
                                            "f_favail", "f_ffree", "f_files", "f_flag",
                                            "f_frsize", "f_namemax")}

    # --- figures --------------------------------------------------------------------------

    def stats(self) -> dict:
        with self._lock:
            ops, server, injected = dict(self.ops), dict(self.server), dict(self.injected)
        return {"seconds": round(time.monotonic() - self.started, 3), "ops": ops,
                "metadata_ops": sum(ops.get(k, 0) for k in METADATA_OPS),
                "server": server, "faults": injected, "settings": asdict(self.faults)}


def _attrs(st: os.stat_result, size: int | None = None) -> dict:
    mode = st.st_mode & ~0o222  # read-only view
    return {"st_mode": mode, "st_ino": st.st_ino, "st_nlink": st.st_nlink,
            "st_uid": st.st_uid, "st_gid": st.st_gid,
            "st_size": st.st_size if size is None else size,
            "st_atime": st.st_atime_ns, "st_mtime": st.st_mtime_ns, "st_ctime": st.st_ctime_ns,
            "st_blocks": st.st_blocks, "st_blksize": st.st_blksize}


# --- running it ---------------------------------------------------------------------------

class Mount:
    """``with Mount(source, mountpoint, Faults(seed=1), stats_path) as m: m.stats()``: the
    layer in its own process, mounted on enter, unmounted (and its figures final) on exit."""

    def __init__(self, source: str, mountpoint: str, faults: Faults, stats_path: str):
        self.source, self.mountpoint = os.fspath(source), os.fspath(mountpoint)
        self.faults, self.stats_path = faults, os.fspath(stats_path)
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> "Mount":
        os.makedirs(self.mountpoint, exist_ok=True)
        args = [f"--{f.name.replace('_', '-')}={getattr(self.faults, f.name)}"
                for f in fields(Faults)]
        self.proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), self.source,
                                      self.mountpoint, "--stats", self.stats_path, *args],
                                     stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 20
        while not os.path.ismount(self.mountpoint):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.__exit__()
                raise RuntimeError(f"the FUSE layer did not mount {self.mountpoint}: "
                                   f"{self.proc.stderr.read()[-2000:]}")
            time.sleep(0.02)
        return self

    def stats(self) -> dict:
        with open(self.stats_path) as f:
            return json.load(f)

    def __exit__(self, *_exc) -> None:
        if os.path.ismount(self.mountpoint):
            done = subprocess.run(["fusermount3", "-u", self.mountpoint], capture_output=True)
            if done.returncode != 0:  # busy: detach it now, it goes when unused
                subprocess.run(["fusermount3", "-uz", self.mountpoint], capture_output=True)
        if self.proc is not None:
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("source")
    ap.add_argument("mountpoint")
    ap.add_argument("--stats", required=True, help="JSON file for the counts")
    for f in fields(Faults):
        ap.add_argument(f"--{f.name.replace('_', '-')}", type=type(f.default), default=f.default)
    args = ap.parse_args()
    faults = Faults(**{f.name: getattr(args, f.name) for f in fields(Faults)})
    view = TwoHostView(args.source, faults)
    stats_path = os.path.abspath(args.stats)  # libfuse changes to / once mounted

    def dump() -> None:
        tmp = stats_path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(view.stats(), f)
        os.replace(tmp, stats_path)

    done = threading.Event()

    def dump_often() -> None:
        while not done.wait(0.5):
            dump()

    dump()
    threading.Thread(target=dump_often, daemon=True).start()
    import mfusepy
    try:
        # Every kernel cache off: each lookup, stat and read comes here (see the docstring).
        mfusepy.FUSE(view, args.mountpoint, foreground=True, ro=True, attr_timeout=0,
                     entry_timeout=0, negative_timeout=0, direct_io=True,
                     fsname="two-hosts")
    finally:
        done.set()
        dump()


if __name__ == "__main__":
    main()
