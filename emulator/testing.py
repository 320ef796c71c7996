"""Helpers for tests that need a Comet server: start emulators, talk to them.

The pytest fixtures in ``tests/conftest.py`` (``emulator``, ``emulator_factory``,
``emulator_client``) are thin wrappers around these. Every emulator is a real server on a
real socket with its state in a real SQLite file under the test's temporary directory.
"""

from __future__ import annotations

import itertools
import os
from typing import Any

import requests

from comet_journal.emulator.server import Emulator

API_KEY = "test-key"


class EmulatorFactory:
    """Start emulators on ``<base_dir>/emulator-N.db`` and stop them all at the end."""

    def __init__(self, base_dir: str | os.PathLike):
        self.base_dir = os.fspath(base_dir)
        self._numbers = itertools.count(1)
        self._started: list[Emulator] = []

    def __call__(self, **kwargs: Any) -> Emulator:
        """A started :class:`Emulator`; ``kwargs`` are its constructor's."""
        if "db_path" not in kwargs:
            kwargs["db_path"] = os.path.join(self.base_dir, f"emulator-{next(self._numbers)}.db")
        emulator = Emulator(**kwargs).start()
        self._started.append(emulator)
        return emulator

    def stop_all(self) -> None:
        for emulator in reversed(self._started):
            emulator.stop()
        self._started.clear()


class EmulatorClient:
    """A ``requests`` session bound to one emulator, sending its API key.

    ``client.post("/api/rest/v2/write/experiment/metric", json={...})``
    """

    def __init__(self, emulator: Emulator, api_key: str | None = API_KEY):
        self.emulator = emulator
        self.session = requests.Session()
        if api_key is not None:
            self.session.headers["Authorization"] = api_key

    def request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", 30)
        return self.session.request(method, self.emulator.url + path, **kwargs)

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("POST", path, **kwargs)

    def put(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("PUT", path, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("DELETE", path, **kwargs)

    def create_experiment(self, workspace: str = "ws", project: str = "proj",
                          name: str | None = None) -> str:
        """Create an experiment through the documented endpoint; return its key."""
        body = {"workspaceName": workspace, "projectName": project}
        if name is not None:
            body["experimentName"] = name
        response = self.post("/api/rest/v2/write/experiment/create", json=body)
        response.raise_for_status()
        return response.json()["experimentKey"]

    def state(self) -> dict:
        response = self.get("/emulator/state")
        response.raise_for_status()
        return response.json()

    def close(self) -> None:
        self.session.close()
