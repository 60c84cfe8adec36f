"""The official ``@directus/sdk`` 26 ``realtime()`` against the real ``satchel
serve`` (issue 11 parts 6 and 8; ``../shared/protocols/directus.md``
section 3): its default URL (``ws://host/websocket``) in handshake mode
with a static token and after ``login()``, subscribe with a query filter
(v26's string form), events for writes made through Backpack REST, through
the SDK's ``items`` messages and through the extension protocol, a
subscriber whose role may not read a record never receiving it, and
reconnect with re-subscribe (uid replacement) after the server is killed
and started again on the same port.

The setup is the operator's and the admin's, done as they would: a rule
file given to ``satchel serve --rules`` defines the role ``reader``
(published articles only, two fields); ``satchel admin create`` makes an
administrator, whose Bearer gives the reader account its role through the
admin API (``PUT /_/api/users/{id}/role``); the writer makes itself a
static token (``POST /_/api/me/tokens``). Accounts are registered through
Backpack (one account across protocols).

The client script is ``node_clients/directus_scenario.mjs``; it reports one
JSON line per check. ``make test`` installs the clients (``npm ci`` in
tests/node_clients, pinned by its lockfile); in CI (CI=1) a missing client
fails instead of skipping.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from server_process import Http, ServerProcess

CLIENTS = Path(__file__).parent / "node_clients"
PASSWORD = "correct horse battery"
RULES = {
    "version": 1,
    "roles": {
        "reader": {"rules": [{"collection": "articles", "action": "read",
                              "filter": {"status": {"_eq": "published"}}, "fields": ["title", "status"]}]},
    },
}

needs_directus_sdk = pytest.mark.skipif(
    not os.environ.get("CI") and (shutil.which("node") is None or not (CLIENTS / "node_modules" / "@directus" / "sdk").exists()),
    reason="needs node and `npm ci` in tests/node_clients (make test installs it)",
)


def _bearer(http: Http, method: str, path: str, token: str, body: Any = None) -> tuple[int, Any]:
    status, value, _ = http.request(method, path, body, key=None, headers={"Authorization": f"Bearer {token}"})
    return status, value


def _directus_login(http: Http, email: str) -> str:
    status, body, _ = http.request("POST", "/auth/login", {"email": email, "password": PASSWORD, "mode": "json"},
                                   key=None)
    assert status == 200, body
    return body["data"]["access_token"]


def _start(tmp_path: Path) -> tuple[ServerProcess, Path, Path]:
    """The operator's and the admin's setup: an admin made from the command
    line, the rule file given to ``serve``, two accounts registered through
    Backpack, and the reader given its role through the admin API."""
    data = tmp_path / "data"
    rules = tmp_path / "rules.json"
    rules.write_text(json.dumps(RULES))
    password_file = tmp_path / "admin-password"
    password_file.write_text(PASSWORD + "\n")
    subprocess.run([sys.executable, "-m", "satchel.transports", "admin", "create", "admin@example.com",
                    "--password-file", str(password_file), "--data-dir", str(data)],
                   check=True, capture_output=True, text=True, timeout=60)
    server = ServerProcess(data, extra=["--rules", str(rules)])
    http = Http(server)
    try:
        for email in ("writer@example.com", "reader@example.com"):
            status, body, _ = http.request("POST", "/register", {"email": email, "password": PASSWORD})
            assert status == 200, body
        admin = _directus_login(http, "admin@example.com")
        status, found = _bearer(http, "GET", "/_/api/users?email=reader@example.com", admin)
        assert status == 200 and len(found["data"]) == 1, found
        status, body = _bearer(http, "PUT", f"/_/api/users/{found['data'][0]['id']}/role", admin, {"role": "reader"})
        assert status == 200 and body["data"]["role"] == "reader", body
    except BaseException:
        server.stop()
        raise
    finally:
        http.close()
    return server, data, rules


CLIENT_ENV = {"WRITER_EMAIL": "writer@example.com", "WRITER_PASSWORD": PASSWORD,
              "READER_EMAIL": "reader@example.com", "READER_PASSWORD": PASSWORD}


@needs_directus_sdk
def test_the_directus_sdk_realtime_against_satchel(tmp_path: Path) -> None:
    server, data, rules = _start(tmp_path)
    port = server.port
    restarted: list[ServerProcess] = []
    lines: list[str] = []
    try:
        http = Http(server)
        status, body = _bearer(http, "POST", "/_/api/me/tokens", _directus_login(http, "writer@example.com"))
        assert status == 201, body
        static_token = body["data"]["token"]
        http.close()

        client = subprocess.Popen(
            ["node", "directus_scenario.mjs", server.url], cwd=CLIENTS, stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            env={**os.environ, **CLIENT_ENV, "WRITER_TOKEN": static_token, "API_KEY": server.api_key or ""},
        )
        timer = threading.Timer(120, client.kill)
        timer.start()
        try:
            assert client.stdout is not None and client.stdin is not None
            for line in client.stdout:
                lines.append(line.rstrip())
                if line.strip() == "RESTART":
                    # Every connection drops: killed, then started again on the same
                    # port and data (tokens and records are durable).
                    server.kill()
                    server = ServerProcess(data, extra=["--rules", str(rules), "--port", str(port)])
                    restarted.append(server)
                    client.stdin.write("restarted\n")
                    client.stdin.flush()
            client.wait(10)
        finally:
            timer.cancel()
            if client.poll() is None:
                client.kill()
    finally:
        server.stop()
    print("\n".join(lines))  # shown with -s, and on failure
    checks = [json.loads(line) for line in lines if line.startswith("{") and '"check"' in line]
    failures = [c for c in checks if not c["ok"]]
    assert client.returncode == 0 and not failures, "\n".join(lines)
    assert len(checks) >= 30 and restarted, "\n".join(lines)


@needs_directus_sdk
def test_the_directus_sdk_rest_against_satchel(tmp_path: Path) -> None:
    """``rest()`` with ``authentication('json')``: login, readMe, CRUD with
    filters, sort, fields, limit/offset and search, the reader role's
    rows and fields, refusals as the SDK throws them, refresh and logout, on
    the records Backpack serves (``node_clients/directus_rest_scenario.mjs``)."""
    server, _, _ = _start(tmp_path)
    try:
        run = subprocess.run(
            ["node", "directus_rest_scenario.mjs", server.url], cwd=CLIENTS, capture_output=True, text=True,
            timeout=120, env={**os.environ, **CLIENT_ENV, "API_KEY": server.api_key or ""},
        )
    finally:
        server.stop()
    print(run.stdout, run.stderr)
    checks = [json.loads(line) for line in run.stdout.splitlines() if line.startswith("{") and '"check"' in line]
    failures = [c for c in checks if not c["ok"]]
    assert run.returncode == 0 and not failures, run.stdout + run.stderr
    assert len(checks) >= 20, run.stdout
