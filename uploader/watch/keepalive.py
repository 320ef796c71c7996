"""Keeping live runs' experiments marked alive on the server while the daemon tails them."""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable

from comet_journal.uploader.config import UploadConfig
from comet_journal.uploader.errors import UploadError
from comet_journal.uploader.wire.client import Client, TransportError
from comet_journal.uploader.wire.requests import Overrides, RequestBuilder
from comet_journal.uploader.wire.retry import RetryPolicy

logger = logging.getLogger(__name__)

DEFAULT_KEEPALIVE_S = 10.0  # until the server says otherwise (isAliveBeatDurationMillis)


class KeepAlive(threading.Thread):
    """Keeps the experiments of live journals marked alive on the server (``set-status``),
    at the interval the server asks for (``isAliveBeatDurationMillis``)."""

    def __init__(self, config: UploadConfig, policy: RetryPolicy, stop: threading.Event,
                 live_keys: Callable[[], set[str]]):
        super().__init__(name="comet-upload.keepalive", daemon=True)
        self.stop = stop
        self.live_keys = live_keys
        self.interval = DEFAULT_KEEPALIVE_S
        self.client = Client(config, policy, pool_size=1)
        self.builder = RequestBuilder(Overrides(None, None, None), lambda: None)

    def run(self) -> None:
        stop = self.stop
        last_beat: dict[str, float] = {}  # a run that becomes live gets its first beat at once
        while not stop.wait(0.5):
            for key in sorted(self.live_keys()):
                if stop.is_set():
                    break
                if time.monotonic() - last_beat.get(key, float("-inf")) >= self.interval:
                    last_beat[key] = time.monotonic()
                    self._beat(key)
        self.client.close()

    def _beat(self, server_key: str) -> None:
        try:
            request = self.builder.build("experiment_keepalive", {}, server_key=server_key,
                                         ts_ms=int(time.time() * 1000))
            answer = self.client.send(request)
        except (TransportError, UploadError, ValueError) as exc:
            logger.debug("keep-alive for %s failed: %s", server_key, exc)
            return
        if answer.status == 200:
            try:
                millis = answer.json().get("isAliveBeatDurationMillis")
                if isinstance(millis, (int, float)) and millis >= 1000:
                    self.interval = min(millis / 1000, 600.0)
            except (ValueError, AttributeError):
                pass
