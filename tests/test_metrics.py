"""Health, readiness and metrics through the real ``satchel serve`` (issue 16
part 3): ``/metrics`` scraped with a plain HTTP client after traffic in every
protocol and parsed with ``prometheus_client``'s own text parser (a malformed
exposition fails here); only an administrator reads it on the main port;
``--metrics-listen`` serves it on a listener of its own; ``/ready`` answers
503 once the broker has gone away, and 200 again when it is back."""

from __future__ import annotations

import json
import re
import secrets
import shutil
import socket
import subprocess
import time
from http.client import HTTPConnection
from pathlib import Path
from typing import Any, Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families
from websockets.sync.client import connect

from satchel.transports.udp import send_message_udp
from server_process import Http, ServerProcess, wait_until

SETUP = re.compile(r"/_/#setup=([A-Za-z0-9_-]+)")
PASSWORD = "correct horse battery"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def get(port: int, path: str, headers: dict[str, str] | None = None, method: str = "GET") -> tuple[int, bytes, dict]:
    connection = HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request(method, path, headers=headers or {})
        response = connection.getresponse()
        return response.status, response.read(), {k.lower(): v for k, v in response.getheaders()}
    finally:
        connection.close()


def parse(text: bytes) -> dict[tuple[str, frozenset], float]:
    """Every sample of an exposition, by (name, labels); raises on a malformed one."""
    samples: dict[tuple[str, frozenset], float] = {}
    for family in text_string_to_metric_families(text.decode("utf-8")):
        for sample in family.samples:
            key = (sample.name, frozenset(sample.labels.items()))
            assert key not in samples, f"sample repeated: {key}"
            samples[key] = sample.value
    return samples


def value(samples: dict, name: str, **labels: Any) -> float:
    return samples.get((name, frozenset((k, str(v)) for k, v in labels.items())), 0.0)


def total(samples: dict, name: str, **labels: Any) -> float:
    """The sum of ``name`` over every sample carrying ``labels`` (and any others)."""
    wanted = {(k, str(v)) for k, v in labels.items()}
    return sum(v for (n, found), v in samples.items() if n == name and wanted <= found)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    process = ServerProcess(tmp_path_factory.mktemp("metrics-data"))
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture(scope="module")
def admin(server: ServerProcess) -> str:
    """An administrator's access token (made through the first-run setup)."""
    wait_until(lambda: any(SETUP.search(line) for line in server.output))
    token = next(SETUP.search(line).group(1) for line in server.output if SETUP.search(line))
    client = Http(server)
    status, body, _ = client.request("POST", "/_/api/setup", {"token": token, "email": "ops@example.com",
                                                              "password": PASSWORD}, key=None)
    assert status == 201, body
    status, body, _ = client.request("POST", "/auth/login", {"email": "ops@example.com", "password": PASSWORD},
                                     key=None)
    client.close()
    return body["data"]["access_token"]


def test_health_and_ready_answer_without_credentials(server: ServerProcess) -> None:
    status, body, headers = get(server.port, "/health")
    assert status == 200 and json.loads(body) == {"status": "ok", "pid": server.process.pid} and headers["cache-control"] == "no-store"
    status, body, _ = get(server.port, "/ready")
    assert status == 200 and json.loads(body) == {"status": "ready", "checks": {"store": "ok"}}
    assert get(server.port, "/health", method="HEAD")[:2] == (200, b"")
    status, _, headers = get(server.port, "/ready", method="POST")
    assert status == 405 and headers["allow"] == "GET, HEAD"


def test_metrics_count_traffic_in_every_protocol(server: ServerProcess, admin: str) -> None:
    client = Http(server)
    client.login("metrics@example.com")
    # Backpack: REST, and a websocket that sends a message and hears a broadcast.
    with connect(f"ws://127.0.0.1:{server.port}/", additional_headers={"Cookie": client.cookie}) as backpack:
        assert json.loads(backpack.recv(5))["action"] == "connection"
        backpack.send(json.dumps({"action": "getAll", "collection": "notes"}))
        assert json.loads(backpack.recv(5))["action"] == "getAll"
        assert client.request("POST", "/notes", {"title": "counted"})[0] == 200
        assert json.loads(backpack.recv(5))["action"] == "create"
        # Inbox documents over HTTP and UDP, heard by a resource subscriber of the document.
        read_token, write_token = secrets.token_hex(16), secrets.token_hex(16)
        status, _, _ = get(server.port, f"/backend/documents/{read_token}")
        assert status == 404
        connection = HTTPConnection("127.0.0.1", server.port, timeout=5)
        connection.request("PUT", f"/backend/documents/{read_token}", json.dumps({"#messages": {}}).encode(),
                           {"Write-Token": write_token, "Derived-From": "0", "Revision": "1"})
        assert connection.getresponse().status == 200
        connection.close()
        with connect(f"ws://127.0.0.1:{server.port}/realtime") as resources:
            resources.send(json.dumps({"action": "subscribe", "resource": {"type": "document", "id": read_token}}))
            assert send_message_udp("127.0.0.1", server.port, write_token, "00000000000000a1", {"v": 1}) == "M"
            assert "data" in json.loads(resources.recv(5))
            # Directus core realtime, as an administrator.
            with connect(f"ws://127.0.0.1:{server.port}/websocket") as directus:
                directus.send(json.dumps({"type": "auth", "access_token": admin}))
                assert json.loads(directus.recv(5))["status"] == "ok"
                # Asnity's Engine.IO handshake (long-polling first, as the stock client does).
                status, body, _ = get(server.port, "/socket.io/?EIO=4&transport=polling")
                assert status == 200 and body.startswith(b"0{")
                status, text, headers = get(server.port, "/metrics", {"Authorization": f"Bearer {admin}"})
    client.close()
    assert status == 200 and headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    samples = parse(text)
    # Connections per protocol, as they were while the three websockets were open.
    assert value(samples, "satchel_connections", protocol="backpack") == 1
    assert value(samples, "satchel_connections", protocol="resources") == 1
    assert value(samples, "satchel_connections", protocol="directus") == 1
    assert value(samples, "satchel_connections", protocol="asnity") == 1  # the polling session
    assert value(samples, "satchel_tcp_connections") >= 3
    assert value(samples, "satchel_messages_in_total", protocol="backpack") >= 1
    assert value(samples, "satchel_messages_in_total", protocol="resources") >= 1
    assert value(samples, "satchel_messages_in_total", protocol="directus") >= 1
    assert value(samples, "satchel_deliveries_total") >= 2  # the create broadcast, the document update
    assert value(samples, "satchel_messages_out_total") >= 5  # greetings, replies and the deliveries
    assert value(samples, "satchel_slow_consumer_closes_total") == 0
    assert value(samples, "satchel_websocket_outbox_bytes") >= 0
    # Requests by route (a mount's name, never the path) and status, with latency.
    for route, method, status_code in (("backpack", "POST", 200), ("inbox", "GET", 404), ("inbox", "PUT", 200),
                                       ("asnity", "GET", 200), ("directus", "POST", 200), ("admin", "POST", 201)):
        labels = {"route": route, "method": method, "status": status_code}
        count = value(samples, "satchel_http_request_duration_seconds_count", **labels)
        assert count >= 1, labels
        assert value(samples, "satchel_http_request_duration_seconds_bucket", le="+Inf", **labels) == count
        assert value(samples, "satchel_http_request_duration_seconds_sum", **labels) > 0
    assert not any(read_token in str(key) for key in samples)  # no path, no token in a label
    # The store: operations' latency and group-commit sizes; UDP datagrams.
    assert value(samples, "satchel_store_operation_duration_seconds_count", operation="InsertRecord") >= 1
    assert total(samples, "satchel_store_commit_batch_size_count") >= 1
    assert value(samples, "satchel_udp_datagrams_accepted_total") == 1
    assert value(samples, "satchel_udp_datagrams_dropped_total", reason="rate") == 0
    assert value(samples, "satchel_udp_datagrams_dropped_total", reason="unanswered") == 0
    assert value(samples, "process_resident_memory_bytes") > 0


def test_only_an_administrator_reads_the_metrics_on_the_main_port(server: ServerProcess, admin: str) -> None:
    client = Http(server)
    client.login("not-an-admin@example.com")
    status, body, _ = client.request("POST", "/auth/login", {"email": "not-an-admin@example.com",
                                                             "password": PASSWORD}, key=None)
    user = body["data"]["access_token"]
    client.close()
    assert get(server.port, "/metrics", {"Authorization": f"Bearer {user}"})[0] == 403
    status, body, _ = get(server.port, "/metrics")
    assert status == 401 and b"satchel_" not in body
    assert get(server.port, "/metrics", {"Authorization": f"key {server.api_key}"})[0] == 401  # the API key is no admin
    assert get(server.port, "/metrics", {"Authorization": f"Bearer {admin}"})[0] == 200


def test_a_metrics_listener_of_its_own_and_a_broker_that_goes_away(tmp_path: Path) -> None:
    if shutil.which("nats-server") is None:
        pytest.skip("nats-server is not installed")
    broker_port, metrics_port = _free_port(), _free_port()

    def start_broker() -> subprocess.Popen:
        process = subprocess.Popen(["nats-server", "-a", "127.0.0.1", "-p", str(broker_port)],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until(lambda: _reachable(broker_port), timeout=10)
        return process

    broker = start_broker()
    process = ServerProcess(tmp_path, extra=["--broker", f"nats://127.0.0.1:{broker_port}",
                                             "--metrics-listen", f"127.0.0.1:{metrics_port}"])
    try:
        assert get(process.port, "/metrics", {"Authorization": f"key {process.api_key}"})[0] == 404
        status, text, _ = get(metrics_port, "/metrics")  # no credentials: the address is the restriction
        assert status == 200 and value(parse(text), "satchel_broker_messages_total", outcome="dropped") == 0
        assert get(metrics_port, "/collections")[0] == 404  # nothing else there
        for port in (process.port, metrics_port):
            status, body, _ = get(port, "/ready")
            assert status == 200 and json.loads(body)["checks"] == {"store": "ok", "broker": "ok"}
        broker.kill()
        broker.wait(10)
        time.sleep(1.1)  # past the cached result
        status, body, _ = get(process.port, "/ready")
        checks = json.loads(body)["checks"]
        assert status == 503 and checks["store"] == "ok" and checks["broker"] != "ok", body
        assert get(process.port, "/health")[0] == 200 and get(metrics_port, "/health")[0] == 200
        broker = start_broker()
        wait_until(lambda: get(metrics_port, "/ready")[0] == 200, timeout=10)
    finally:
        process.stop()
        broker.kill()
        broker.wait(10)


def _reachable(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False
