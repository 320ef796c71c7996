"""Unit tests of the uploader's small parts: retry policy, server gate, config, lock, builder."""

from __future__ import annotations

import threading

import pytest

from comet_journal.uploader.config import Secret, normalise_url, resolve, url_from_api_key
from comet_journal.uploader.errors import ConfigError, LockedError, ServerUnreachable, redact
from comet_journal.uploader.journal.lock import UploadLock
from comet_journal.uploader.wire.retry import RetryPolicy, ServerGate, parse_retry_after


class FakeClock:
    def __init__(self):
        self.now = 0.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def test_backoff_is_capped_full_jitter():
    top = RetryPolicy(base_s=0.5, cap_s=4, random=lambda: 0.999999)
    assert [round(top.backoff(n), 3) for n in range(6)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    assert RetryPolicy(random=lambda: 0.0).backoff(5) == 0.0  # full jitter reaches zero


def test_retry_after_headers():
    assert parse_retry_after({"Retry-After": "3"}) == 3
    assert parse_retry_after({"Retry-After-Custom": "2.5", "Retry-After": "1"}) == 2.5
    assert parse_retry_after({"Retry-After": "Wed, 21 Oct 2015 07:28:10 GMT"},
                             now_epoch=1445412480) == 10
    assert parse_retry_after({}) is None
    assert RetryPolicy.is_retryable_status(503) and RetryPolicy.is_retryable_status(429)
    assert not RetryPolicy.is_retryable_status(400)


def test_pause_holds_every_worker_and_deadline_gives_up():
    fake = FakeClock()
    gate = ServerGate(RetryPolicy(deadline_s=10, sleep=fake.sleep, clock=fake.clock,
                                  random=lambda: 0.99))
    gate.pause(2.5)
    gate.wait_turn()  # a different worker than the throttled one waits too
    assert fake.now == pytest.approx(2.5)
    gate.ok()
    fake.now += 9
    with pytest.raises(ServerUnreachable, match="deadline"):
        gate.backoff(5, "connection refused")  # would pass the deadline: give up now
    forever = ServerGate(RetryPolicy(deadline_s=None, sleep=fake.sleep, clock=fake.clock))
    fake.now += 10_000
    forever.check_deadline(100)


def test_url_forms_and_key_never_printed(tmp_path):
    assert normalise_url("http://127.0.0.1:8080/clientlib/") == "http://127.0.0.1:8080"
    assert normalise_url("HTTPS://Www.Comet.com:443/") == "https://www.comet.com"
    with pytest.raises(ConfigError):
        normalise_url("www.comet.com")
    import base64
    import json
    embedded = "abc*" + base64.b64encode(json.dumps({"baseUrl": "https://h.example"})
                                         .encode()).decode()
    assert url_from_api_key(embedded) == "https://h.example"
    secret = Secret("super-secret-value")
    assert "super" not in repr(secret) + str(secret)
    assert redact("oops super-secret-value leaked") == "oops *** leaked"
    cfg = resolve(api_key=None, url=None, environ={"COMET_API_KEY": "k1k1k1",
                                                   "COMET_URL_OVERRIDE": "http://x:1/clientlib"})
    assert cfg.url == "http://x:1" and cfg.api_key.reveal() == "k1k1k1"
    conf = tmp_path / "c.config"
    conf.write_text("[comet]\napi_key = fromfile\n")
    assert resolve(environ={"COMET_CONFIG": str(conf)}).key_source.startswith("config file")
    with pytest.raises(ConfigError, match="no API key"):
        resolve(environ={"COMET_CONFIG": str(tmp_path / "missing")})


def test_lock_refuses_second_holder_same_target_only(tmp_path):
    journal = str(tmp_path / "j.db")
    with UploadLock(journal, "http://a|ws=|project="):
        with pytest.raises(LockedError, match="another comet-upload"):
            UploadLock(journal, "http://a|ws=|project=").acquire()
        with UploadLock(journal, "http://b|ws=|project="):
            pass  # another server: independent
    done = threading.Event()
    holder = UploadLock(journal, "http://a|ws=|project=").acquire()

    def later():
        holder.release()
        done.set()

    threading.Timer(0.2, later).start()
    with UploadLock(journal, "http://a|ws=|project=", wait=True, poll_s=0.05):
        assert done.is_set()


def test_builder_uses_catalogue_locations(tmp_path):
    import json

    from comet_journal.schema import blobs
    from comet_journal.schema.journal import Journal, sqlite_connect
    from comet_journal.uploader.wire.requests import Overrides, RequestBuilder
    path = str(tmp_path / "j.db")
    Journal.open(path, create=True).close()
    conn = sqlite_connect(path)
    data = bytes(range(256)) * 10_000  # 2.5 MB: more than two journal chunks
    sha, size = blobs.put_bytes(conn, data)
    builder = RequestBuilder(Overrides(workspace="other-ws"), lambda: conn)
    metric = builder.build("log_metric", {"metricName": "m", "metricValue": 1}, server_key="K",
                           ts_ms=123)
    assert (metric.method, metric.path) == ("POST", "/api/rest/v2/write/experiment/metric")
    assert json.loads(metric.body) == {"metricName": "m", "metricValue": 1,
                                       "experimentKey": "K", "timestamp": 123}
    stop = builder.build("experiment_stop", {}, server_key="K", ts_ms=1)
    assert (stop.method, stop.params, stop.body) == ("GET", {"experimentKey": "K"}, None)
    create = builder.build("experiment_create", {"workspaceName": "ws", "projectName": "p"},
                           server_key=None, ts_ms=1)
    assert json.loads(create.body)["workspaceName"] == "other-ws"
    asset = builder.build("upload_asset", {"fileName": "a.bin", "overwrite": False,
                                           "file": {"$blob": sha, "size": size}},
                          server_key="K", ts_ms=1)
    assert asset.params == {"fileName": "a.bin", "overwrite": "false", "experimentKey": "K"}
    body = asset.stream()
    assert len(body) == asset.size
    streamed = b"".join(iter(lambda: body.read(8192), b""))
    assert len(streamed) == asset.size and data in streamed
    conn.close()
