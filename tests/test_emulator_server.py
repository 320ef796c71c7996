"""HTTP plumbing: keep-alive, TCP_NODELAY, body encodings, malformed requests, concurrency."""

from __future__ import annotations

import gzip
import http.client
import json
import socket
import threading

import pytest

from comet_journal.emulator.testing import EmulatorClient

METRIC = "/api/rest/v2/write/experiment/metric"
HEADERS = {"Authorization": "test-key", "Content-Type": "application/json"}


def _connection(emulator) -> http.client.HTTPConnection:
    return http.client.HTTPConnection(emulator.host, emulator.port, timeout=10)


def test_one_keep_alive_connection_serves_many_requests_without_nagle(emulator,
                                                                      emulator_client):
    key = emulator_client.create_experiment()
    conn = _connection(emulator)
    for i in range(20):
        conn.request("POST", METRIC, body=json.dumps({"experimentKey": key, "metricName": "m",
                                                      "metricValue": i}), headers=HEADERS)
        response = conn.getresponse()
        assert response.status == 200 and response.read() == b'{"msg":"Saved"}'
        assert response.getheader("Connection") != "close"
    local_port = conn.sock.getsockname()[1]
    server_side = [c for c in emulator._httpd._connections if c.getpeername()[1] == local_port]
    assert len(server_side) == 1  # the same connection all along
    assert server_side[0].getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
    conn.close()


def test_chunked_and_gzip_bodies_on_any_json_endpoint(emulator, emulator_client):
    key = emulator_client.create_experiment()
    body = gzip.compress(json.dumps({"experimentKey": key, "key": "a", "value": 1}).encode())
    conn = _connection(emulator)
    conn.request("POST", "/api/rest/v2/write/experiment/log-other", body=iter([body[:10],
                                                                              body[10:]]),
                 headers={**HEADERS, "Content-Encoding": "gzip"}, encode_chunked=True)
    assert conn.getresponse().status == 200
    assert emulator.state()["experiments"][key]["others"]["a"][0]["value"] == 1


@pytest.mark.parametrize("body,headers,problem", [
    (b"{not json", {}, "not valid JSON"),
    (b"[1, 2]", {}, "must be a JSON object"),
    (b"plain", {"Content-Encoding": "gzip"}, "body is not"),
])
def test_malformed_bodies_are_400_in_comet_convention(emulator, body, headers, problem):
    conn = _connection(emulator)
    conn.request("POST", METRIC, body=body, headers={**HEADERS, **headers})
    response = conn.getresponse()
    answer = json.loads(response.read())
    assert response.status == 400 and problem in answer["msg"]
    assert set(answer) == {"msg", "code", "sdk_error_code"}


def test_concurrent_clients_are_all_applied(emulator):
    key = EmulatorClient(emulator).create_experiment()

    def writer(worker: int) -> None:
        client = EmulatorClient(emulator)
        for i in range(25):
            assert client.post(METRIC, json={"experimentKey": key, "metricName": f"w{worker}",
                                             "metricValue": i}).status_code == 200

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    metrics = emulator.state()["experiments"][key]["metrics"]
    assert {name: [p["metricValue"] for p in points] for name, points in metrics.items()} == \
        {f"w{n}": list(range(25)) for n in range(4)}
