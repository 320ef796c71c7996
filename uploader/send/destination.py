"""Where a replay sends its jobs: the contract, and Comet over HTTP.

A :class:`Destination` is connected once per replay (:meth:`Destination.connect`) and gives a
:class:`Channel`, used from the replay's worker threads. The contract a channel keeps:

* ``capabilities`` says, from the start, whether experiments can be created by client key
  (``clientlib``) and which batch routes may be used (it may switch one off later);
* ``send(job, target)`` delivers a job exactly once or says why not, as an
  :class:`~comet_journal.uploader.wire.exchange.Outcome`: ``ok`` (``found`` when it was
  already there), or a permanent rejection (``status``, ``message``); for a list of calls or
  a metric group, ``parts`` holds a verdict per call when they differ; an experiment's
  creation returns the destination's ``server_key``. It raises
  :class:`~comet_journal.uploader.errors.Stopped` when the replay's stop event ends it, and
  :class:`~comet_journal.uploader.errors.UploadError` (or a subclass) to end the replay;
* ``begin_job()`` / ``job_sent()``: whether any write of the thread's current job may have
  reached the destination (a stopped job that never left is not in doubt);
* ``create_method(target)``: how the experiment will be created (recorded before sending).

Tests use a channel that keeps jobs in memory; the viewer and the importer need no server.
"""

from __future__ import annotations

import threading
from typing import Protocol

from comet_journal.uploader.config import UploadConfig
from comet_journal.uploader.journal.history import History
from comet_journal.uploader.journal.progress import ExperimentTarget
from comet_journal.uploader.send.context import SendContext
from comet_journal.uploader.send.readback import ReadBack
from comet_journal.uploader.send.sender import Sender
from comet_journal.uploader.wire.capabilities import Capabilities, probe
from comet_journal.uploader.wire.client import Client
from comet_journal.uploader.wire.exchange import Link, Outcome
from comet_journal.uploader.wire.requests import RequestBuilder
from comet_journal.uploader.wire.retry import RetryPolicy, ServerGate


class Channel(Protocol):
    capabilities: Capabilities

    def create_method(self, target: ExperimentTarget) -> str: ...

    def send(self, job, target: ExperimentTarget | None) -> Outcome: ...

    def begin_job(self) -> None: ...

    def job_sent(self) -> bool: ...


class Destination(Protocol):
    url: str

    def connect(self, context: SendContext) -> Channel: ...

    def close(self) -> None: ...


class CometChannel:
    """A :class:`Channel` to a Comet server: the sender and the server's capabilities."""

    def __init__(self, link: Link, sender: Sender, capabilities: Capabilities):
        self.link = link
        self.sender = sender
        self.capabilities = capabilities

    def create_method(self, target: ExperimentTarget) -> str:
        return self.sender.creator.method_for(target)

    def send(self, job, target: ExperimentTarget | None) -> Outcome:
        return self.sender.send(job, target)

    def begin_job(self) -> None:
        self.link.begin_job()

    def job_sent(self) -> bool:
        return self.link.job_sent()


class CometServer:
    """A Comet server (or the emulator) over HTTP: one client, one link, for one replay.

    :param gate: shared with other uploads to the same server (one 429 pause and deadline).
    :param stop: the replay's stop event (ends retries and waits).
    """

    def __init__(self, config: UploadConfig, policy: RetryPolicy, gate: ServerGate,
                 stop: threading.Event, pool_size: int):
        self.url = config.url
        self.client = Client(config, policy, pool_size=pool_size)
        self.link = Link(self.client, gate, policy, stop, config.url, config.key_source)

    def connect(self, context: SendContext) -> CometChannel:
        capabilities = probe(self.link)
        builder = RequestBuilder(context.overrides, context.connect, context.project_id)
        history = History(context.connect, context.target_id, context.sent_at_start,
                          context.adopted)
        readback = ReadBack(self.link, history, context.overrides)
        sender = Sender(self.link, context, builder, readback, capabilities)
        return CometChannel(self.link, sender, capabilities)

    def close(self) -> None:
        self.client.close()
