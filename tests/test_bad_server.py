"""``comet-upload`` against servers that answer badly: the real CLI in a subprocess, talking
over real sockets to ``tests/misbehaving_server.py`` (a scripted reverse proxy, HTTP or HTTPS)
in front of a real emulator.

What must hold whatever the answers: the upload never crashes; garbage is retried (5xx pages,
2xx bodies that are not Comet's JSON) or reported at once when retrying cannot help
(redirects, an unverifiable certificate, a create without a key), with a message saying what
came back and what to do; no call is marked uploaded unless the server really acknowledged
it, which a later clean upload through the same address proves (every call on the emulator
exactly once). Decisions (see ``uploader/client.py`` and ``uploader/sender.py``): redirects
are refused, never followed; TLS is always verified, ``--ca-bundle`` is the only way to trust
a private certificate.
"""

from __future__ import annotations

import json

import pytest

from misbehaving_server import (LOGIN_PAGE, NGINX_502, MisbehavingServer, Rule,
                                self_signed_certificate)
from comet_journal.schema.catalogue import ENDPOINTS, endpoint_named
from test_upload_support import FAST, KEY, assert_server_matches, make_journal, run_cli

METRIC = ENDPOINTS["log_metric"].path
GET_METRIC = "/api/rest/v2/experiment/metrics/get-metric"
METRIC_CALLS = 21  # make_journal(points=20): 20 points and a NaN


@pytest.fixture
def journal(tmp_path):
    return make_journal(tmp_path / "run.db", points=20)


@pytest.fixture
def proxy(emulator):
    with MisbehavingServer(upstream=emulator.url) as server:
        yield server


def _upload(url, journal, *extra, timeout=60, env=None):
    return run_cli("--url", url, "--api-key", KEY, *FAST, "--json", *extra, journal,
                   timeout=timeout, env=env)


def _summary(proc) -> dict:
    return json.loads(proc.stdout)["journals"][0]


def _pending(url, journal, cli: bool = False) -> dict[str, int]:
    """Calls still pending per endpoint for the target ``url``: from ``comet-upload status
    --json`` (``cli``), else from the same report read in this process (faster)."""
    if cli:
        proc = run_cli("status", "--url", url, "--json", journal, check=0)
        report = json.loads(proc.stdout)["journals"][0]
    else:
        from comet_journal.uploader.config import Secret, UploadConfig, normalise_url
        from comet_journal.uploader.journal.status import pending_report
        cfg = UploadConfig(api_key=Secret(""), url=normalise_url(url), key_source="")
        report = pending_report(str(journal), cfg.identity, cfg.url).as_dict()
    out: dict[str, int] = {}
    for exp in report["experiments"]:
        for endpoint, info in exp["per_endpoint"].items():
            out[endpoint] = out.get(endpoint, 0) + info["calls"]
    return out


def _applied_metrics(emulator) -> int:
    return sum(1 for a in emulator.state()["applied"] if a["endpoint"] == "log_metric")


def _clean_upload_proves_exactly_once(proxy, emulator, journal) -> None:
    """Through the same address (so the same upload progress), with the proxy behaving:
    whatever was marked uploaded is not sent again, whatever was not is sent now."""
    proxy.clear()
    proc = _upload(proxy.url, journal)
    assert proc.returncode == 0, proc.stderr
    assert _pending(proxy.url, journal) == {}
    assert_server_matches(emulator, journal)


# --- 5xx HTML pages: transient, retried ----------------------------------------------------

def test_5xx_html_pages_are_retried_and_the_upload_completes(proxy, emulator, journal):
    proxy.add(Rule(path=METRIC, status=502, body=NGINX_502, content_type="text/html",
                   times=3))
    proxy.add(Rule(path=METRIC, status=503, body=b"", times=1))  # and an empty 503
    proc = _upload(proxy.url, journal)
    assert proc.returncode == 0, proc.stderr
    summary = _summary(proc)
    assert summary["retried"] >= 4 and summary["rejected"] == 0
    assert_server_matches(emulator, journal)


def test_5xx_pages_past_the_deadline_are_reported_clearly_and_nothing_is_marked(
        proxy, emulator, journal):
    proxy.add(Rule(path=METRIC, status=502, body=NGINX_502, content_type="text/html"))
    proc = _upload(proxy.url, journal, "--deadline", "1")
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "deadline" in proc.stderr and "HTTP 502" in proc.stderr
    assert "an HTML page ('502 Bad Gateway')" in proc.stderr  # not the raw page
    assert "<html>" not in proc.stderr
    assert _pending(proxy.url, journal, cli=True)["log_metric"] == METRIC_CALLS
    assert _applied_metrics(emulator) == 0
    _clean_upload_proves_exactly_once(proxy, emulator, journal)


# --- 2xx that is not Comet's JSON: unknown outcome, never acknowledged ------------------------

GARBAGE_200 = {
    "login-page": (LOGIN_PAGE, "text/html", "an HTML page ('Sign in - Corporate Network')"),
    "empty-body": (b"", None, "the body is empty"),
    "invalid-json": (b'{"msg": "ok", "code": 2', "application/json", "the body is not JSON"),
}


@pytest.mark.parametrize("kind,forward", [
    ("login-page", False), ("login-page", True), ("empty-body", True), ("invalid-json", True)],
    ids=["login-page-never-arrived", "login-page-applied-anyway", "empty-body-applied-anyway",
         "invalid-json-applied-anyway"])
def test_a_200_that_is_not_comet_is_retried_never_acknowledged(proxy, emulator, journal,
                                                                kind, forward):
    """Three metric calls get a 200 of garbage: either the request never reached the server
    or it was applied and the answer got lost; the read-back tells them apart, so every
    point ends up on the server exactly once."""
    body, ctype, _words = GARBAGE_200[kind]
    proxy.add(Rule(path=METRIC, status=200, body=body, content_type=ctype, times=3,
                   forward=forward))
    proc = _upload(proxy.url, journal)
    assert proc.returncode == 0, proc.stderr
    summary = _summary(proc)
    assert summary["retried"] >= 3 and summary["rejected"] == 0
    if forward:
        assert summary["found_by_readback"] >= 1
    assert_server_matches(emulator, journal)


def test_a_garbled_answer_to_a_batch_is_retried_never_acknowledged(proxy, emulator, journal):
    """--batch: the metric batch was applied but its answer is a login page; the read-back
    finds the points, none is sent twice."""
    proxy.add(Rule(path=endpoint_named("batch_metrics").path, status=200, body=LOGIN_PAGE,
                   content_type="text/html", times=1, forward=True))
    proc = _upload(proxy.url, journal, "--batch")
    assert proc.returncode == 0, proc.stderr
    assert _summary(proc)["retried"] >= 1
    assert any(path == endpoint_named("batch_metrics").path and forwarded
               for _m, path, _s, forwarded in proxy.hits)
    assert_server_matches(emulator, journal)


@pytest.mark.parametrize("kind", ["login-page", "empty-body"])
def test_a_200_of_garbage_until_the_deadline_is_reported_and_nothing_is_marked(
        proxy, emulator, journal, kind):
    body, ctype, words = GARBAGE_200[kind]
    proxy.add(Rule(path=METRIC, status=200, body=body, content_type=ctype))
    proc = _upload(proxy.url, journal, "--deadline", "1")
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "deadline" in proc.stderr and "HTTP 200 but" in proc.stderr and words in proc.stderr
    assert _pending(proxy.url, journal)["log_metric"] == METRIC_CALLS  # none marked uploaded
    _clean_upload_proves_exactly_once(proxy, emulator, journal)


# --- 200 with an unexpected shape ---------------------------------------------------------------

def test_a_create_answered_without_a_key_is_never_taken_as_done(emulator_factory, journal):
    emulator = emulator_factory(clientlib=False)  # creation by write/experiment/create
    with MisbehavingServer(upstream=emulator.url) as proxy:
        proxy.add(Rule(path=ENDPOINTS["experiment_create"].path, status=200,
                       body=b'{"status": "ok"}', content_type="application/json"))
        # an unknown outcome: looked up, retried, until the deadline; nothing else is sent
        proc = _upload(proxy.url, journal, "--deadline", "3")
        assert proc.returncode == 1, proc.stderr
        assert "Traceback" not in proc.stderr
        assert "no experimentKey in the answer" in proc.stderr
        pending = _pending(proxy.url, journal)
        assert pending["experiment_create"] == 1 and pending["log_metric"] == METRIC_CALLS
        assert not [a for a in emulator.state()["applied"] if a["endpoint"] != "experiment_create"]
        proxy.clear()
        assert _upload(proxy.url, journal).returncode == 0


def test_a_probe_of_an_unexpected_shape_falls_back_to_the_documented_endpoints(
        proxy, emulator, journal):
    proxy.add(Rule(path=endpoint_named("clientlib_is_alive").path, status=200,
                   body=b'["1.2.3"]', content_type="application/json"))
    proc = _upload(proxy.url, journal)
    assert proc.returncode == 0, proc.stderr
    assert {e["created_by"] for e in _summary(proc)["experiments"]} == {"rest-create"}
    assert_server_matches(emulator, journal)


# --- redirects: refused, with the address to use -------------------------------------------------

@pytest.mark.parametrize("status", [302, 308])  # the method-changing kind and the other
def test_a_redirect_is_refused_naming_the_new_address(proxy, emulator, journal, status):
    """The server moved (to the emulator's own address): comet-upload does not follow,
    says where to, and sends nothing there; with that --url it then works."""
    proxy.add(Rule(path="*", status=status, location=emulator.url + "{path}",
                   body=b"<html><body>Moved</body></html>", content_type="text/html"))
    proc = _upload(proxy.url, journal)
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert f"redirect (HTTP {status})" in proc.stderr and "does not follow redirects" in \
        proc.stderr
    assert f"--url {emulator.url}" in proc.stderr  # the hint names the new address
    assert emulator.state()["requests"]["total"] == 0  # not followed
    assert _pending(proxy.url, journal)["log_metric"] == METRIC_CALLS
    ok = _upload(emulator.url, journal)
    assert ok.returncode == 0, ok.stderr
    assert_server_matches(emulator, journal)


def test_a_redirected_write_mid_upload_marks_nothing(proxy, emulator, journal):
    """Only the metric POSTs are redirected (to a GET-able page that would answer 200 if
    followed): the upload stops with the redirect, the metrics stay pending."""
    proxy.add(Rule(path=METRIC, method="POST", status=302,
                   location=proxy.url + "/clientlib/isAlive/ver"))
    proc = _upload(proxy.url, journal, "--concurrency", "1")
    assert proc.returncode == 1, proc.stderr
    assert "redirect (HTTP 302)" in proc.stderr
    assert _applied_metrics(emulator) == 0
    assert _pending(proxy.url, journal)["log_metric"] == METRIC_CALLS
    _clean_upload_proves_exactly_once(proxy, emulator, journal)


# --- TLS: verified always; --ca-bundle trusts a private certificate ------------------------------

@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    return self_signed_certificate(str(tmp_path_factory.mktemp("tls")))


def test_a_self_signed_certificate_is_refused_unless_given_as_ca_bundle(
        emulator, journal, certificate, tmp_path):
    cert, _key = certificate
    with MisbehavingServer(upstream=emulator.url, tls=certificate) as proxy:
        assert proxy.url.startswith("https://")
        proc = _upload(proxy.url, journal, "--deadline", "60")
        assert proc.returncode == 1, proc.stderr
        assert "Traceback" not in proc.stderr
        assert "cannot verify the TLS certificate" in proc.stderr
        assert "--ca-bundle" in proc.stderr
        assert emulator.state()["requests"]["total"] == 0  # refused at the handshake
        # another certificate as the bundle: still refused, saying so
        other = tmp_path / "other"
        other.mkdir()
        other_cert, _ = self_signed_certificate(str(other))
        proc = _upload(proxy.url, journal, "--ca-bundle", other_cert)
        assert proc.returncode == 1 and "not signed by a CA in --ca-bundle" in proc.stderr
        # the server's own certificate as the bundle: uploads, even where the environment
        # names another bundle (requests would let $REQUESTS_CA_BUNDLE win over a session's)
        import certifi
        proc = _upload(proxy.url, journal, "--ca-bundle", cert,
                       env={"REQUESTS_CA_BUNDLE": certifi.where(),
                            "CURL_CA_BUNDLE": certifi.where()})
        assert proc.returncode == 0, proc.stderr
        assert_server_matches(emulator, journal)


def test_plain_http_on_an_https_address_is_reported(emulator, journal):
    https_url = emulator.url.replace("http://", "https://")
    proc = _upload(https_url, journal, "--deadline", "60", timeout=30)
    assert proc.returncode == 1, proc.stderr
    assert "does not answer TLS" in proc.stderr and "http://" in proc.stderr
