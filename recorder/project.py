"""Project-level calls (create, update, notes, delete) and viz-instance store saves.

These belong to a project, not an experiment. Comet identifies a project for notes and
viz stores by a ``projectId`` that only the server knows; when it is not given, the journal
keeps a reference (workspace + project name) that the uploader resolves.

Used without ``with`` (``Project(...).set_notes("hello")``), it is closed at interpreter
exit like an ``Experiment``: its calls are written, with a warning that it was not closed.

Example::

    from comet_journal.recorder import Project
    with Project(journal="run.db", workspace="me", project_name="mnist") as project:
        project.create(description="digits", public=False)
        project.set_notes("baseline runs")
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import time
from typing import Any

from comet_journal.recorder import registry
from comet_journal.recorder import validation as check
from comet_journal.recorder.compat import journal_location
from comet_journal.schema.catalogue import ENDPOINTS, project_ref, validate
from comet_journal.recorder.reporting import report_problem
from comet_journal.recorder.secrets import SecretFilter, configured_api_keys
from comet_journal.recorder.writer import JournalWriter, encode_payload


class _CloseAtExit:
    """What interpreter exit needs to close a project nobody closed: its writer (held here,
    since the ``Project`` itself may be long gone: ``Project(...).set_notes("x")``)."""

    def __init__(self, writer: JournalWriter, project_name: str):
        self.writer = writer
        self.project_name = project_name
        self.pid = os.getpid()
        self.closed = False

    def __call__(self) -> None:
        if self.closed:
            return
        pending = sum(1 for item in self.writer.queue if item.__class__ is tuple)
        if os.getpid() != self.pid:  # a forked child: write its calls, the parent closes
            self.writer.flush(10)
            return
        self.closed = True
        if pending:
            report_problem(f"Project {self.project_name!r} was not closed (use `with Project"
                           f"(...)` or close()); writing its {pending} pending calls at exit")
        registry.release(self.writer)


class Project:
    """Journal calls about one Comet project."""

    def __init__(self, journal: Any = None, workspace: Any = None, project_name: Any = None,
                 project_id: Any = None):
        self.workspace = check.name("Project", "workspace", workspace)
        self.project_name = check.name("Project", "project_name", project_name)
        self.project_id = check.optional_str("Project", "project_id", project_id)
        if self.project_id is not None and not self.project_id.strip():
            raise check.value_error("Project", "project_id", "must not be empty", project_id)
        self.path = journal_location(check.journal_path("Project", journal), None,
                                     f"project-{self.project_name}")
        self._secrets = SecretFilter(configured_api_keys())  # the key is masked in notes too
        self._writer = registry.acquire(self.path)
        self._closed = False
        self._at_exit = _CloseAtExit(self._writer, self.project_name)
        atexit.register(self._at_exit)

    def _id(self):
        return self.project_id or project_ref(self.workspace, self.project_name)

    def _record(self, endpoint: str, payload: dict) -> None:
        if self._closed:
            raise RuntimeError(f"Project {self.project_name!r} is closed")
        payload = self._secrets.mask_value({k: v for k, v in payload.items() if v is not None})
        validate(ENDPOINTS[endpoint], payload, journal_form=True)
        encode_payload(payload)
        self._writer.queue.append((endpoint, None, time.time(), payload))
        if len(self._writer.queue) > self._writer.max_queue:
            self._writer.wait_for_room()

    def create(self, description: str = "", public: bool = False) -> None:
        if not isinstance(description, str):
            raise check.type_error("create", "description", "a string", description)
        self._record("project_create", {
            "projectName": self.project_name, "workspaceName": self.workspace,
            "projectDescription": description,
            "isPublic": check.boolean("create", "public", public)})

    def update(self, new_name: Any = None, description: Any = None, public: Any = None) -> None:
        check.optional_str("update", "new_name", new_name)
        if new_name is not None:
            check.name("update", "new_name", new_name)
        check.optional_str("update", "description", description)
        if public is not None:
            check.boolean("update", "public", public)
        if new_name is None and description is None and public is None:
            raise TypeError("update(): give at least one of new_name, description, public")
        where = ({"projectId": self.project_id} if self.project_id else
                 {"workspaceName": self.workspace, "projectName": self.project_name})
        self._record("project_update", {**where, "newProjectName": new_name,
                                        "newProjectDescription": description,
                                        "isPublic": public})
        if new_name:
            self.project_name = new_name

    def set_notes(self, notes: Any) -> None:
        if not isinstance(notes, str):
            raise check.type_error("set_notes", "notes", "a string", notes)
        self._record("project_notes", {"projectId": self._id(), "notes": notes})

    def delete(self, delete_experiments: bool = False) -> None:
        self._record("project_delete", {
            "projectName": self.project_name, "workspaceName": self.workspace,
            "deleteAllExperiments": check.boolean("delete", "delete_experiments",
                                                  delete_experiments)})

    def save_viz_store(self, instance_id: Any, store: Any) -> None:
        """Save a visualization instance's whole store (a string, or a JSON-able dict)."""
        check.name("save_viz_store", "instance_id", instance_id)
        if isinstance(store, dict):
            try:
                store = json.dumps(store, allow_nan=False)
            except (TypeError, ValueError) as exc:
                raise check.type_error("save_viz_store", "store", "a JSON-serialisable dict",
                                       store, str(exc)) from None
        if not isinstance(store, str):
            raise check.type_error("save_viz_store", "store", "a string or a dict", store)
        self._record("viz_store_save", {"instanceId": instance_id, "projectId": self._id(),
                                        "store": store})

    def flush(self, timeout: float | None = 30.0) -> bool:
        return self._writer.flush(check.timeout("flush", timeout))

    def close(self) -> dict:
        if self._closed:
            return self._writer.stats.as_dict()
        self._closed = True
        self._at_exit.closed = True
        with contextlib.suppress(Exception):
            atexit.unregister(self._at_exit)
        return registry.release(self._writer)

    def __enter__(self) -> "Project":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
