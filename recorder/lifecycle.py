"""Calls about the experiment's life and its surroundings: output lines, start and end
times, keep-alive, stop/archive/delete/restore, project links, git metadata, system details.
"""

from __future__ import annotations

import atexit
import os
import sys
import weakref
from typing import Any

from comet_journal.recorder import validation as check
from comet_journal.recorder.tolerance import tolerant
from comet_journal.schema.catalogue import ENDPOINTS


class LifecycleMixin:
    """Part of :class:`comet_journal.recorder.Experiment`."""

    @tolerant
    def log_output(self, output: Any, stderr: bool = False, context: str | None = None,
                   timestamp: Any = None) -> None:
        """Journal one line (or chunk) of standard output or standard error."""
        if not isinstance(output, str):
            raise check.type_error("log_output", "output", "a string", output)
        check.boolean("log_output", "stderr", stderr)
        check.optional_str("log_output", "context", context)
        ts = check.timestamp_seconds("log_output", timestamp) or self._now_ms()
        offset = self._output_offset
        self._output_offset += 1
        self._record("log_output", {"context": context, "outputLines": [
            {"output": output, "stderr": stderr, "localTimestamp": ts, "offset": offset}]})

    @tolerant
    def set_start_time(self, start_ms: Any) -> None:
        self._record("experiment_start_end_time", {
            "startTimeMillis": _required_millis("set_start_time", "start_ms", start_ms)})

    @tolerant
    def set_end_time(self, end_ms: Any) -> None:
        self._record("experiment_start_end_time", {
            "endTimeMillis": _required_millis("set_end_time", "end_ms", end_ms)})

    def keep_alive(self) -> None:
        """Journal a keep-alive signal (replayed as ``set-status``)."""
        self._record("experiment_keepalive", {})

    def stop(self) -> None:
        """Journal a stop request for the experiment (replayed after everything before it)."""
        self._record("experiment_stop", {})

    def archive(self) -> None:
        self._record("experiment_archive", {})

    def delete(self) -> None:
        self._record("experiment_delete", {})

    def restore(self) -> None:
        self._record("experiment_restore", {})

    @tolerant
    def create_symlink(self, project_name: Any) -> None:
        """Link this experiment into another project (``write/project/symlink``)."""
        self._record("project_symlink",
                     {"projectName": check.name("create_symlink", "project_name", project_name)})

    @tolerant
    def log_git_metadata(self, branch: Any, origin: Any, parent: Any, root: Any,
                         user: Any) -> None:
        values = {"branch": branch, "origin": origin, "parent": parent, "root": root,
                  "user": user}
        for arg, value in values.items():
            if not isinstance(value, str):
                raise check.type_error("log_git_metadata", arg, "a string", value)
        self._record("git_metadata", values)

    @tolerant
    def log_system_details(self, **details: Any) -> None:
        """Journal system details; keyword names are the endpoint's wire fields
        (``hostname``, ``os``, ``pythonVersion``, ``installedPackages``, ...)."""
        endpoint = ENDPOINTS["system_details"]
        # ``machine``, ``osRelease`` and ``processor`` only the SDK's route carries
        host = {k: details.pop(k) for k in SDK_ONLY_DETAILS if k in details}
        for arg in details:
            if arg == "experimentKey" or not any(f.name == arg for f in endpoint.fields):
                names = ", ".join([f.name for f in endpoint.fields if f.name != "experimentKey"]
                                  + list(SDK_ONLY_DETAILS))
                raise TypeError(f"log_system_details(): unknown detail {arg!r}; known: {names}")
        try:
            if details or not host:
                self._record("system_details", dict(details))
            if host:
                self._record("clientlib_system_details", host)
        except ValueError as exc:
            raise TypeError(f"log_system_details(): {exc}") from None


SDK_ONLY_DETAILS = ("machine", "osRelease", "processor")


def _required_millis(method: str, arg: str, value: Any) -> int:
    if value is None:
        raise check.type_error(method, arg, "epoch milliseconds (a non-negative integer)",
                               value)
    return check.epoch_millis(method, arg, value)


def register_atexit(experiment) -> Any:
    """End the experiment at interpreter exit (a forked child only flushes what it logged)."""
    ref = weakref.ref(experiment)

    def _end_at_exit():
        exp = ref()
        if exp is not None and not exp.ended:
            if os.getpid() != exp._owner_pid:
                # A forked child leaving: write what it logged, but the run is the parent's
                # to end (a child must not journal the experiment's end time).
                exp.flush()
                return
            pending = len(exp._queue)
            if pending:
                sys.stderr.write(f"comet-journal: writing {pending} pending calls of "
                                 f"experiment {exp.key} before exit\n")
            exp.end()

    atexit.register(_end_at_exit)
    return _end_at_exit
