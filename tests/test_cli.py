"""The ``satchel`` command's contract: flags, environment, the API key."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from server_process import Http, ServerProcess


def test_help_lists_serve_and_its_options() -> None:
    top = subprocess.run([sys.executable, "-m", "satchel.transports", "--help"], capture_output=True, text=True)
    assert top.returncode == 0 and "serve" in top.stdout
    serve = subprocess.run([sys.executable, "-m", "satchel.transports", "serve", "--help"], capture_output=True, text=True)
    for option, variable in [("--host", "SATCHEL_HOST"), ("--port", "SATCHEL_PORT"),
                             ("--data-dir", "SATCHEL_DATA_DIR"), ("--api-key", "SATCHEL_API_KEY")]:
        assert option in serve.stdout and variable in serve.stdout


def test_a_generated_api_key_is_printed_once_and_kept(tmp_path: Path) -> None:
    first = ServerProcess(tmp_path, api_key=None)
    try:
        key_file = tmp_path / "api_key"
        key = key_file.read_text().strip()
        assert oct(key_file.stat().st_mode & 0o777) == "0o600"
        assert any(key in line for line in first.output)
        first.api_key = key
        assert Http(first).request("GET", "/collections")[0] == 200
        assert Http(first).request("GET", "/collections", key="wrong")[0] == 401
    finally:
        first.stop()
    second = ServerProcess(tmp_path, api_key=None)
    try:
        assert not any(key in line for line in second.output)
        second.api_key = key
        assert Http(second).request("GET", "/collections")[0] == 200
    finally:
        second.stop()


def test_environment_variables_configure_the_server(tmp_path: Path) -> None:
    data_dir = tmp_path / "env-data"
    env = {"SATCHEL_API_KEY": "from-env", "SATCHEL_DATA_DIR": str(data_dir), "SATCHEL_HOST": "127.0.0.1"}
    server = ServerProcess(None, api_key=None, env=env)
    try:
        server.api_key = "from-env"
        assert Http(server).request("GET", "/collections")[0] == 200
        assert (data_dir / "satchel.sqlite3").exists()
    finally:
        server.stop()


# What "not installed" looks like to the import system: None in sys.modules.
_WITHOUT = "import sys\nfor name in {names!r}:\n    sys.modules[name] = None\n"


def _run_without(names: list[str], code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", _WITHOUT.format(names=names) + code],
                          capture_output=True, text=True, timeout=60)


def test_conformance_without_its_extra_says_how_to_install_it() -> None:
    for missing in (["hypothesis"], ["wsproto"], ["hypothesis", "wsproto"]):
        run = _run_without(missing, "from satchel.transports.cli import main\n"
                                    "sys.exit(main(['conformance', '--in-process']))\n")
        assert run.returncode == 2, run.stdout + run.stderr
        assert "Traceback" not in run.stderr
        lines = run.stderr.strip().splitlines()
        assert len(lines) == 1 and "pip install 'satchel[conformance]'" in lines[0], run.stderr


def test_the_other_extras_say_how_to_install_them_too() -> None:
    run = _run_without(["quart_trio"], "import satchel.transports.asgi\n")
    assert run.returncode != 0 and "pip install 'satchel[asgi]'" in run.stderr
    run = _run_without(["hypothesis"], "from satchel.protocol.conformance import check_target\n")
    assert run.returncode != 0 and "pip install 'satchel[conformance]'" in run.stderr
    # The kit's pure half needs no extra.
    run = _run_without(["hypothesis", "wsproto"], "from satchel.protocol.conformance import BackpackModel, replay\n")
    assert run.returncode == 0, run.stderr


# -- satchel admin create, satchel serve --rules ----------------------------------------

_SATCHEL = [sys.executable, "-m", "satchel.transports"]
_MEMBERS_READ_OPEN = {"roles": {"authenticated": {"rules": [{"collection": "open", "action": "read"}]}}}


def _admin_create(data_dir: Path, email: str, *extra: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*_SATCHEL, "admin", "create", email, "--data-dir", str(data_dir), *extra],
                          capture_output=True, text=True, input=stdin, timeout=60)


def _login(http: Http, email: str, password: str) -> tuple[int, Any]:
    status, body, _ = http.request("POST", "/auth/login", {"email": email, "password": password, "mode": "json"},
                                   key=None)
    return status, body


def _bearer(http: Http, method: str, path: str, token: str, body: Any = None) -> tuple[int, Any]:
    status, answer, _ = http.request(method, path, body, key=None, headers={"Authorization": f"Bearer {token}"})
    return status, answer


def test_help_lists_admin_create_and_the_rules_file() -> None:
    top = subprocess.run([*_SATCHEL, "--help"], capture_output=True, text=True)
    assert "admin" in top.stdout
    serve = subprocess.run([*_SATCHEL, "serve", "--help"], capture_output=True, text=True)
    assert "--rules" in serve.stdout and "SATCHEL_RULES_FILE" in serve.stdout
    create = subprocess.run([*_SATCHEL, "admin", "create", "--help"], capture_output=True, text=True)
    assert create.returncode == 0 and "--password-file" in create.stdout and "EMAIL" in create.stdout


def test_admin_create_then_log_in_as_that_admin_on_the_real_server(tmp_path: Path) -> None:
    made = _admin_create(tmp_path, "Root@Example.com")
    assert made.returncode == 0, made.stderr
    [password] = re.findall(r"Password \(shown once, keep it safe\): (\S+)", made.stdout)
    assert len(password) >= 16
    server = ServerProcess(tmp_path)
    try:
        http = Http(server)
        status, body = _login(http, "root@example.com", password)
        assert status == 200 and body["data"]["expires"] > 30_000, body
        token = body["data"]["access_token"]
        status, rules = _bearer(http, "GET", "/_/api/rules", token)
        assert status == 200 and rules["data"]["revision"] == 0
        assert _bearer(http, "GET", "/_/api/me", token)[1]["data"]["role"] == "admin"
        status, created = _bearer(http, "POST", "/items/notes", token, {"text": "from the admin"})
        assert status == 200, created
        assert _bearer(http, "GET", f"/items/notes/{created['data']['id']}?fields=text", token) == \
            (200, {"data": {"text": "from the admin"}})
        assert _login(http, "root@example.com", "wrong")[0] == 401
        # A Backpack account is no admin...
        http.login("ann@example.com", "ann-password-1")
        status, body = _login(http, "ann@example.com", "ann-password-1")
        ann_token = body["data"]["access_token"]
        assert _bearer(http, "GET", "/_/api/rules", ann_token)[0] == 403
        # ...until `satchel admin create` promotes it, beside the running server; its password stays.
        promoted = _admin_create(tmp_path, "ann@example.com")
        assert promoted.returncode == 0 and "now an administrator" in promoted.stdout
        assert "Password" not in promoted.stdout
        assert _bearer(http, "GET", "/_/api/rules", ann_token)[0] == 200
        again = _admin_create(tmp_path, "root@example.com")
        assert again.returncode == 0 and "already an administrator" in again.stdout
        http.close()
    finally:
        server.stop()


def test_admin_create_takes_its_password_from_a_file_or_stdin(tmp_path: Path) -> None:
    password_file = tmp_path / "password"
    password_file.write_text("from-a-file-123\n")
    data_dir = tmp_path / "data"
    assert _admin_create(data_dir, "one@example.com", "--password-file", str(password_file)).returncode == 0
    made = _admin_create(data_dir, "two@example.com", "--password-file", "-", stdin="from-stdin-456\n")
    assert made.returncode == 0 and "Password" not in made.stdout
    short = _admin_create(data_dir, "three@example.com", "--password-file", "-", stdin="short\n")
    assert short.returncode == 2 and "Traceback" not in short.stderr and "password" in short.stderr
    bad = _admin_create(data_dir, "not-an-email")
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    server = ServerProcess(data_dir)
    try:
        http = Http(server)
        assert _login(http, "one@example.com", "from-a-file-123")[0] == 200
        assert _login(http, "two@example.com", "from-stdin-456")[0] == 200
        assert _login(http, "three@example.com", "short")[0] == 401
        http.close()
    finally:
        server.stop()


def test_the_rules_file_replaces_the_stored_rules_at_start(tmp_path: Path) -> None:
    rules_file = tmp_path / "rules.json"
    rules_file.write_text(json.dumps(_MEMBERS_READ_OPEN))
    data_dir = tmp_path / "data"
    password_file = tmp_path / "password"
    password_file.write_text("root-password-1\n")
    assert _admin_create(data_dir, "root@example.com", "--password-file", str(password_file)).returncode == 0

    def tokens(http: Http) -> tuple[str, str]:
        http.login("ann@example.com", "ann-password-1")
        root = _login(http, "root@example.com", "root-password-1")[1]["data"]["access_token"]
        ann = _login(http, "ann@example.com", "ann-password-1")[1]["data"]["access_token"]
        return root, ann

    server = ServerProcess(data_dir, extra=["--rules", str(rules_file)])
    try:
        assert any("Rules from" in line and "installed" in line for line in server.output)
        http = Http(server)
        root, ann = tokens(http)
        status, stored = _bearer(http, "GET", "/_/api/rules", root)
        assert stored["data"]["revision"] == 1
        assert stored["data"]["rules"]["roles"]["authenticated"]["rules"][0]["collection"] == "open"
        assert _bearer(http, "GET", "/items/open", ann) == (200, {"data": []})
        assert _bearer(http, "GET", "/items/closed", ann)[0] == 403
        # The admin API changes them while the server runs...
        status, _ = _bearer(http, "PUT", "/_/api/rules", root, {"revision": 1, "rules": {}})
        assert status == 200
        assert _bearer(http, "GET", "/items/closed", ann)[0] == 200
        http.close()
    finally:
        server.stop()
    # ...until the next start with --rules, which installs the file again.
    server = ServerProcess(data_dir, extra=["--rules", str(rules_file)])
    try:
        http = Http(server)
        root, ann = tokens(http)
        assert _bearer(http, "GET", "/_/api/rules", root)[1]["data"]["revision"] == 3
        assert _bearer(http, "GET", "/items/closed", ann)[0] == 403
        http.close()
    finally:
        server.stop()
    # A start without --rules keeps what is stored; the same file again changes nothing.
    for extra in ([], ["--rules", str(rules_file)]):
        server = ServerProcess(data_dir, extra=extra)
        try:
            http = Http(server)
            root, ann = tokens(http)
            assert _bearer(http, "GET", "/_/api/rules", root)[1]["data"]["revision"] == 3
            assert _bearer(http, "GET", "/items/closed", ann)[0] == 403
            http.close()
        finally:
            server.stop()


@pytest.mark.parametrize("content", [
    '{"roles": {"x": {"rules": [{"collection": "users", "action": "read"}]}}}',
    '{"roles": {"admin": {}}}',
    "not json",
    None,
])
def test_an_invalid_rules_file_stops_serve_before_it_starts(tmp_path: Path, content: str | None) -> None:
    rules_file = tmp_path / "rules.json"
    if content is not None:
        rules_file.write_text(content)
    run = subprocess.run([*_SATCHEL, "serve", "--port", "0", "--data-dir", str(tmp_path / "data"),
                          "--rules", str(rules_file)], capture_output=True, text=True, timeout=60)
    assert run.returncode == 2
    assert "Traceback" not in run.stderr and "ready at" not in run.stdout + run.stderr
    assert str(rules_file) in run.stderr
    assert not (tmp_path / "data" / "satchel.sqlite3").exists()


async def test_the_directus_flags_configure_its_websocket(tmp_path: Path) -> None:
    import trio
    from trio_websocket import open_websocket_url

    server = ServerProcess(tmp_path / "data", extra=["--websocket-path", "/live", "--websocket-public",
                                                      "--websocket-heartbeat-ms", "300"])
    try:
        # Tokenless core realtime in public mode (no 401, no auth needed), on
        # the path given, with the heartbeat given.
        async with open_websocket_url(f"{server.ws_url}/live?protocol=directus-core") as ws:
            with trio.fail_after(5):
                assert json.loads(await ws.get_message()) == {"type": "ping"}
            await ws.send_message(json.dumps({"type": "pong"}))
            await ws.send_message(json.dumps({"type": "items", "action": "read", "collection": "notes", "uid": "1"}))
            with trio.fail_after(5):
                answer = json.loads(await ws.get_message())
            # The public role reads nothing by default: refused in core's format, uid kept.
            assert answer["uid"] == "1" and answer["status"] == "error", answer
    finally:
        server.stop()


@pytest.mark.parametrize("flags", [["--websocket-path", "live"], ["--access-token-ttl-ms", "1000"],
                                   ["--refresh-token-ttl-ms", "0"]])
def test_bad_directus_flags_stop_serve_before_it_starts(tmp_path: Path, flags: list[str]) -> None:
    run = subprocess.run([*_SATCHEL, "serve", "--port", "0", "--data-dir", str(tmp_path / "data"), *flags],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 2, run.stderr
    assert "Traceback" not in run.stderr and "ready at" not in run.stdout + run.stderr
    assert flags[0] in run.stderr or "must" in run.stderr
