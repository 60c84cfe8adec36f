"""The log lines of the real ``satchel serve --log-format json`` (issue 16
part 4): one JSON object per line, one line per request and per websocket
and Engine.IO session opened and closed, each with a request id (a sane
incoming ``X-Request-Id`` is kept and answered back) - and not one secret of
a full scenario in any line: passwords, the Backpack session cookie, the
Directus access and refresh tokens, a static token made through the admin
API, the API key, the inbox document's tokens, the Engine.IO session id.

The access log is off unless ``--access-log`` (or ``SATCHEL_ACCESS_LOG=1``)
asks for it. The administrator is made with ``satchel admin create`` before the server
starts: on a first run without one, the server prints its one-time setup
token on purpose (the console's setup link), and this scenario has no use
for it."""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
from http.client import HTTPConnection
from pathlib import Path
from typing import Any

from websockets.sync.client import connect

from satchel.transports.udp import send_message_udp
from server_process import API_KEY, Http, ServerProcess, wait_until

ADMIN_PASSWORD = "admin-" + secrets.token_hex(12)
USER_PASSWORD = "user-" + secrets.token_hex(12)


def call(port: int, method: str, target: str, body: Any = None,
         headers: dict[str, str] | None = None) -> tuple[int, Any, dict[str, str]]:
    connection = HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        payload = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
        sent = {"Content-Type": "application/json", **(headers or {})} if payload is not None else dict(headers or {})
        connection.request(method, target, payload, sent)
        response = connection.getresponse()
        raw = response.read()
        try:
            value = json.loads(raw) if raw else None
        except ValueError:
            value = raw
        return response.status, value, {k.lower(): v for k, v in response.getheaders()}
    finally:
        connection.close()


def test_a_full_scenario_logs_json_lines_without_a_secret(tmp_path: Path) -> None:
    password_file = tmp_path / "admin-password"
    password_file.write_text(ADMIN_PASSWORD + "\n")
    made = subprocess.run([sys.executable, "-m", "satchel.transports", "admin", "create", "ops@example.com",
                           "--password-file", str(password_file), "--data-dir", str(tmp_path / "data")],
                          capture_output=True, text=True, timeout=60)
    assert made.returncode == 0, made.stderr
    server = ServerProcess(tmp_path / "data", extra=["--log-format", "json", "--access-log"])
    secrets_used = {"API key": API_KEY, "admin password": ADMIN_PASSWORD, "user password": USER_PASSWORD}
    try:
        port = server.port
        # Backpack: register and log in (a session cookie), a record, a websocket with the cookie.
        client = Http(server)
        client.login("user@example.com", USER_PASSWORD)
        assert client.cookie is not None
        secrets_used["session cookie"] = client.cookie.split("=", 1)[1]
        with connect(f"ws://127.0.0.1:{port}/", additional_headers={"Cookie": client.cookie}) as backpack:
            assert json.loads(backpack.recv(5))["action"] == "connection"
            status, _, headers = client.request("POST", "/notes", {"title": "logged"},
                                                headers={"X-Request-Id": "scenario-1"})
            assert status == 200 and headers["x-request-id"] == "scenario-1"
            assert json.loads(backpack.recv(5))["action"] == "create"
        # An id that is not sane (too long) is replaced by one of the server's.
        status, _, headers = client.request("GET", "/notes", headers={"X-Request-Id": "x" * 65})
        assert status == 200 and headers["x-request-id"] != "x" * 65 and len(headers["x-request-id"]) <= 64
        client.close()
        # Directus: /auth/login, a Bearer request, a static token from the admin API in ?access_token=.
        status, body, _ = call(port, "POST", "/auth/login", {"email": "ops@example.com", "password": ADMIN_PASSWORD})
        assert status == 200, body
        access, refresh = body["data"]["access_token"], body["data"]["refresh_token"]
        secrets_used.update({"access token": access, "refresh token": refresh})
        status, body, _ = call(port, "POST", "/_/api/me/tokens", {}, {"Authorization": f"Bearer {access}"})
        assert status == 201, body
        static = body["data"]["token"]
        secrets_used["static token"] = static
        assert call(port, "GET", "/items/notes", headers={"Authorization": f"Bearer {access}"})[0] == 200
        assert call(port, "GET", f"/items/notes?access_token={static}")[0] == 200
        status, body, _ = call(port, "POST", "/auth/refresh", {"mode": "json", "refresh_token": refresh})
        assert status == 200, body
        secrets_used["refreshed access token"] = body["data"]["access_token"]
        secrets_used["second refresh token"] = body["data"]["refresh_token"]
        with connect(f"ws://127.0.0.1:{port}/websocket?access_token={static}"):
            pass
        # The inbox: a document written with its write token, over HTTP and UDP.
        read_token, write_token = secrets.token_hex(16), secrets.token_hex(16)
        secrets_used.update({"inbox read token": read_token, "inbox write token": write_token})
        assert call(port, "PUT", f"/backend/documents/{read_token}", {"#messages": {}},
                    {"Write-Token": write_token, "Derived-From": "0", "Revision": "1"})[0] == 200
        assert send_message_udp("127.0.0.1", port, write_token, "00000000000000a1", {"v": 1}) == "M"
        assert call(port, "GET", f"/backend/documents/{read_token}")[0] == 200
        # Asnity's Engine.IO: a polling session opened, then closed by its client.
        status, body, _ = call(port, "GET", "/socket.io/?EIO=4&transport=polling")
        assert status == 200 and body.startswith(b"0{"), body
        sid = json.loads(body[1:])["sid"]
        secrets_used["Engine.IO session id"] = sid
        assert call(port, "POST", f"/socket.io/?EIO=4&transport=polling&sid={sid}", b"1",
                    {"Content-Type": "text/plain;charset=UTF-8"})[0] == 200
        wait_until(lambda: any('"engineio close"' in line for line in server.output), timeout=10)
        wait_until(lambda: sum('"websocket close"' in line for line in server.output) >= 2, timeout=10)
    finally:
        server.stop()
    lines = [line for line in server.output if line.strip()]
    records = []
    for line in lines:
        try:
            records.append(json.loads(line))
        except ValueError:
            raise AssertionError(f"not a JSON line: {line!r}") from None
    for name, secret in secrets_used.items():
        for line in lines:
            assert secret not in line, f"the {name} is in a log line: {line}"
    assert all({"ts", "level", "logger", "msg"} <= record.keys() for record in records)
    requests = [record for record in records if record["logger"] == "satchel.access" and "method" in record]
    assert requests
    for record in requests:
        assert {"request_id", "method", "route", "target", "status", "duration_ms", "peer"} <= record.keys(), record
        assert record["peer"] == "127.0.0.1" and "?" not in record["target"].replace("?<query>", "")
    assert any(r["request_id"] == "scenario-1" and r["route"] == "backpack" and r["status"] == 200 for r in requests)
    routes = {(r["route"], r["method"], r["status"]) for r in requests}
    assert {("backpack", "POST", 200), ("directus", "POST", 200), ("admin", "POST", 201), ("inbox", "PUT", 200),
            ("asnity", "GET", 200)} <= routes, routes
    assert len({r["request_id"] for r in requests}) == len(requests)  # one id per request
    events = [record for record in records if "event" in record]
    kinds = {(r["event"], r["route"]) for r in events}
    assert {("websocket open", "backpack"), ("websocket close", "backpack"), ("websocket open", "directus"),
            ("engineio open", "asnity"), ("engineio close", "asnity")} <= kinds, kinds
    opened = next(r for r in events if r["event"] == "websocket open" and r["route"] == "backpack")
    closed = next(r for r in events if r["event"] == "websocket close" and r["route"] == "backpack")
    assert opened["request_id"] == closed["request_id"] and closed["code"] in (1000, 1005) and closed["duration_ms"] >= 0


def test_the_access_log_is_off_unless_asked_for(tmp_path: Path) -> None:
    """Off by default (a line costs a keep-alive request ~15-35% of its
    time: README, "Logs"); the other lines are still JSON."""
    server = ServerProcess(tmp_path, extra=["--log-format", "json"])
    try:
        status, _, headers = call(server.port, "GET", "/health")
        assert status == 200 and "x-request-id" not in headers
    finally:
        server.stop()
    records = [json.loads(line) for line in server.output if line.strip()]
    assert records and not any(record["logger"] == "satchel.access" for record in records)
