"""The run's identity and position, as ``comet_ml`` exposes them: ``.id``, ``.name``,
``.project_name``, ``.url``, ``set_name``/``get_name`` and the current step and epoch
(``set_step``/``set_epoch``) that metrics and parameters logged without one are given, and
the context (``train()``, ``validate()``, ``test()``) that prefixes metrics logged inside.
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator

from comet_journal.recorder import validation as check
from comet_journal.recorder.tolerance import tolerant


class RunInfoMixin:
    """Part of :class:`comet_journal.recorder.Experiment`."""

    @property
    def id(self) -> str:
        """The experiment key (the SDK's ``id``)."""
        return self.key

    def get_key(self) -> str:
        return self.key

    @property
    def name(self) -> str | None:
        return self._name

    def get_name(self) -> str | None:
        return self._name

    @property
    def project_name(self) -> str | None:
        return self._project_name

    @property
    def workspace(self) -> str | None:
        return self._workspace

    @property
    def url(self) -> None:
        """None, as for the SDK's OfflineExperiment: the server (and so the experiment's
        address) is chosen when the journal is uploaded."""
        return None

    @tolerant
    def set_name(self, name: Any) -> None:
        """Name the experiment (journaled as the "other" ``Name``, as the SDK does)."""
        check.name("set_name", "name", name)
        self._record("log_other", {"key": "Name", "value": name})
        self._name = name

    @property
    def curr_step(self) -> int | None:
        return self._step

    @property
    def curr_epoch(self) -> int | None:
        return self._epoch

    def _current_step(self, step: int | None) -> int | None:
        """A call's step: the one given (which becomes the current step, as in the SDK), or
        the current one."""
        if step is None:
            return self._step
        self._step = step
        return step

    def _current_epoch(self, epoch: int | None) -> int | None:
        """Like :meth:`_current_step`, for the calls whose epoch the SDK fills in (metrics
        and in-memory assets)."""
        if epoch is None:
            return self._epoch
        self._epoch = epoch
        return epoch

    @tolerant
    def set_step(self, step: Any) -> None:
        """The current step: given to metrics and parameters logged without one."""
        step = check.step("set_step", "step", step)
        if step is not None:
            self._step = step

    @tolerant
    def set_epoch(self, epoch: Any) -> None:
        """The current epoch: given to metrics logged without one."""
        epoch = check.step("set_epoch", "epoch", epoch)
        if epoch is not None:
            self._epoch = epoch

    def context_manager(self, context: str):
        """Prefix metrics logged inside with ``context`` (as ``comet_ml`` does)."""
        check.name("context_manager", "context", context)  # at the call, not at ``with``
        return self._context(context)

    @contextlib.contextmanager
    def _context(self, context: str) -> Iterator["RunInfoMixin"]:
        previous, self.context = self.context, context
        try:
            yield self
        finally:
            self.context = previous

    def train(self):
        return self.context_manager("train")

    def validate(self):
        return self.context_manager("validate")

    def test(self):
        return self.context_manager("test")
