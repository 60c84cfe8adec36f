"""The landing page, the console's files and the admin API through the real
``satchel serve`` (issue 16 parts 1 and 2): first run prints a setup token,
the console is served without an API key, a non-admin gets 403 on every
admin route, and the change stream is a real websocket. The tests share one
fresh server, in order: the first-run test creates the admin the later ones use."""

from __future__ import annotations

import json
import re
from typing import Iterator

import pytest
import trio
from trio_websocket import open_websocket_url

from server_process import Http, ServerProcess, wait_until

SETUP = re.compile(r"/_/#setup=([A-Za-z0-9_-]+)")
PASSWORD = "correct horse battery"


@pytest.fixture(scope="module")
def fresh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    process = ServerProcess(tmp_path_factory.mktemp("console-data"))
    try:
        yield process
    finally:
        process.stop()


def setup_token(server: ServerProcess) -> str:
    wait_until(lambda: any(SETUP.search(line) for line in server.output))
    return next(SETUP.search(line).group(1) for line in server.output if SETUP.search(line))


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_the_landing_page_and_backpacks_answer_byte_for_byte(fresh: ServerProcess) -> None:
    client = Http(fresh)
    status, body, headers = client.request("GET", "/", key=None, headers={"Accept": "text/html,*/*;q=0.8"})
    assert status == 200 and headers["content-type"] == "text/html; charset=utf-8"
    page = body.decode()
    for expected in ('<a href="/_/">', '<a href="/sdk.js">', '<a href="/demo/chat">', "/realtime (websocket)",
                     "/socket.io/", "/backend/documents/{token}", 'href="/_/readme#two-commands"'):
        assert expected in page, expected
    # An API client (no text/html) gets exactly what Backpack answered before.
    client.connection.request("GET", "/", headers={"Accept": "application/json"})
    raw = client.connection.getresponse()
    assert raw.status == 401 and raw.read() == b'{"message":"Check your auth tokens"}'
    status, body, _ = client.request("GET", "/", key=None)
    assert status == 401 and body == {"message": "Check your auth tokens"}
    client.close()


def test_the_console_is_served_without_a_key_and_only_runs_its_own_code(fresh: ServerProcess) -> None:
    client = Http(fresh)
    for path, kind in (("/_/", "text/html"), ("/_", "text/html"), ("/_/console.js", "text/javascript"),
                       ("/_/console.css", "text/css"), ("/_/readme", "text/html")):
        status, body, headers = client.request("GET", path, key=None)
        assert status == 200 and headers["content-type"].startswith(kind), path
        assert "script-src 'self'" in headers["content-security-policy"] and "access-control-allow-origin" not in headers
    status, body, _ = client.request("GET", "/_/", key=None)
    assert b'src="/_/console.js"' in body and b"http" not in body.split(b"<body>")[0]  # nothing from elsewhere
    _, script, _ = client.request("GET", "/_/console.js", key=None)
    assert b"import " not in script and b"cdn" not in script.lower()
    client.close()


async def test_first_run_sign_in_and_the_admin_api_end_to_end(fresh: ServerProcess) -> None:
    client = Http(fresh)
    token = setup_token(fresh)
    assert client.request("GET", "/_/api/setup", key=None)[1] == {"data": {"open": True}}
    status, body, _ = client.request("POST", "/_/api/setup", {"token": token, "email": "root@example.com",
                                                              "password": PASSWORD}, key=None)
    assert status == 201 and body["data"]["role"] == "admin", body
    assert client.request("GET", "/_/api/setup", key=None)[1] == {"data": {"open": False}}
    assert client.request("POST", "/_/api/setup", {"token": token, "email": "x@example.com", "password": PASSWORD},
                          key=None)[0] == 403
    status, body, _ = client.request("POST", "/auth/login", {"email": "root@example.com", "password": PASSWORD},
                                     key=None)
    access = body["data"]["access_token"]

    # A non-admin gets 403 on the admin routes, over the wire too.
    client.login("ann@example.com")
    status, body, _ = client.request("POST", "/auth/login", {"email": "ann@example.com", "password": PASSWORD},
                                     key=None)
    ann = body["data"]["access_token"]
    for method, path in (("GET", "/_/api/users"), ("GET", "/_/api/collections"), ("GET", "/_/api/stats"),
                         ("POST", "/_/api/collections/notes/records"), ("GET", "/_/api/files"),
                         ("GET", "/_/api/documents"), ("GET", "/_/api/entries/kvStore"), ("PUT", "/_/api/rules")):
        assert client.request(method, path, {}, key=None, headers=bearer(ann))[0] == 403, path

    # The change stream over the real transport: a Backpack write, an admin write.
    url = f"ws://127.0.0.1:{fresh.port}/_/api/live"
    async with open_websocket_url(url) as live, open_websocket_url(url) as refused:
        await live.send_message(json.dumps({"type": "auth", "access_token": access}))
        assert json.loads(await live.get_message())["status"] == "ok"
        await refused.send_message(json.dumps({"type": "auth", "access_token": ann}))
        assert json.loads(await refused.get_message())["code"] == "FORBIDDEN"
        status, record, _ = client.request("POST", "/notes", {"title": "via backpack"})
        assert status == 200
        with trio.fail_after(5):
            change = json.loads(await live.get_message())
        assert change["type"] == "change" and change["id"] == record["_id"] and change["origin"] == "backpack-http"
        # The refused one is closed by the server; its close reaches the
        # switchboard a moment later on a loaded machine, so ask until it has.
        with trio.fail_after(5):
            while True:
                stats = client.request("GET", "/_/api/stats", key=None, headers=bearer(access))[1]["data"]
                if stats["connections"]["admin"] == 1:
                    break
                await trio.sleep(0.05)
        status, made, _ = client.request("POST", "/_/api/collections/notes/records", {"title": "via console"},
                                         key=None, headers=bearer(access))
        assert status == 201
        with trio.fail_after(5):
            change = json.loads(await live.get_message())
        assert change["origin"] == "admin-http" and change["record"] == made["data"]
    # What the console wrote, Backpack reads.
    assert client.request("GET", f"/notes/{made['data']['_id']}")[1] == made["data"]
    users = client.request("GET", "/_/api/users?search=example.com", key=None, headers=bearer(access))[1]["data"]
    assert [u["email"] for u in users] == ["root@example.com", "ann@example.com"]
    assert all("hash" not in json.dumps(u) and "argon2" not in json.dumps(u) for u in users)
    client.close()


def test_the_setup_token_is_printed_once_with_the_other_way(fresh: ServerProcess) -> None:
    # (prepare_setup prints none once an admin exists: tests/test_console_admin_api.py.)
    lines = [line for line in fresh.output if "No administrator yet" in line]
    assert len(lines) == 1 and "satchel admin create EMAIL" in lines[0]


def test_files_are_downloaded_and_deleted_through_the_admin_api(fresh: ServerProcess) -> None:
    from test_server_uploads import multipart, send_form

    client = Http(fresh)
    client.login("uploader@example.com")
    status, meta, _ = send_form(client, "POST", "/uploads",
                                multipart([("bucket", "b"), ("filename", "notes.txt")], ("notes.txt", b"hello file")))
    assert status == 200, meta
    status, body, _ = client.request("POST", "/auth/login", {"email": "root@example.com", "password": PASSWORD},
                                     key=None)
    access = body["data"]["access_token"]
    listed = client.request("GET", "/_/api/files?search=notes", key=None, headers=bearer(access))[1]
    assert [f["_id"] for f in listed["data"]] == [meta["_id"]]
    status, content, headers = client.request("GET", f"/_/api/files/{meta['_id']}/content", key=None,
                                              headers=bearer(access))
    assert status == 200 and content == b"hello file" and headers["content-type"].startswith("text/plain")
    assert client.request("DELETE", f"/_/api/files/{meta['_id']}", key=None, headers=bearer(access))[0] == 200
    assert client.request("GET", f"/uploads/{meta['userId']}/notes.txt")[0] == 404
    client.close()


def test_every_console_route_answers_over_the_wire(fresh: ServerProcess) -> None:
    """One call of each route the API-level tests drive in depth, through the
    real server: users, records, documents, entries."""
    client = Http(fresh)
    access = client.request("POST", "/auth/login", {"email": "root@example.com", "password": PASSWORD},
                            key=None)[1]["data"]["access_token"]

    def admin(method: str, path: str, body: object = None, expect: int = 200) -> object:
        status, answer, _ = client.request(method, path, body, key=None, headers=bearer(access))
        assert status == expect, (method, path, status, answer)
        return answer["data"] if isinstance(answer, dict) and "data" in answer else answer

    made = admin("POST", "/_/api/users", {"email": "wire@example.com", "password": "long enough"}, 201)
    assert admin("PUT", f"/_/api/users/{made['id']}/disabled", {"disabled": True})["disabled"] is True
    assert client.request("POST", "/auth/login", {"email": "wire@example.com", "password": "long enough"},
                          key=None)[0] == 401
    admin("PUT", f"/_/api/users/{made['id']}/disabled", {"disabled": False})
    admin("PUT", f"/_/api/users/{made['id']}/password", {"password": "another one"})
    assert client.request("POST", "/auth/login", {"email": "wire@example.com", "password": "another one"},
                          key=None)[0] == 200

    record = admin("POST", "/_/api/collections/wire/records", {"a": 1}, 201)
    path = f"/_/api/collections/wire/records/{record['_id']}"
    assert admin("PATCH", path, {"b": 2})["b"] == 2
    assert "a" not in admin("PUT", path, {"c": "Needle"})
    assert admin("GET", path)["c"] == "Needle"
    # Search looks in text fields, case-folded (a number would only match an
    # id or a timestamp that happens to hold the digit).
    found = admin("GET", "/_/api/collections/wire/records?search=needle")
    assert [item["_id"] for item in found] == [record["_id"]]
    admin("DELETE", path)
    admin("GET", path, expect=404)

    read = "ab" * 16
    status, _, _ = client.request("PUT", f"/backend/documents/{read}", {"#messages": {}}, key=None,
                                  headers={"Write-Token": "cd" * 16, "Derived-From": "0", "Revision": "1"})
    assert status == 200
    assert read in [d["read_token"] for d in admin("GET", "/_/api/documents")]
    assert admin("GET", f"/_/api/documents/{read}")["inbox"] is True

    assert admin("PUT", "/_/api/entries/liveConfig/theme?project=p", {"dark": True})["value"] == {"dark": True}
    assert [e["id"] for e in admin("GET", "/_/api/entries/liveConfig?project=p")["entries"]] == ["theme"]
    admin("DELETE", "/_/api/entries/liveConfig/theme?project=p")
    assert "rules" in admin("GET", "/_/api/rules") and admin("GET", "/_/api/roles")
    client.close()


async def test_the_change_stream_closes_after_its_admin_signs_out(fresh: ServerProcess) -> None:
    """The server's timer re-checks an open stream's session: a sign-out as the
    console makes it (both tokens revoked) closes the stream within
    ``RECHECK_MS``, with a last message saying why - it does not stream on."""
    from satchel.protocol.admin.live import RECHECK_MS
    from trio_websocket import ConnectionClosed

    client = Http(fresh)
    tokens = client.request("POST", "/auth/login", {"email": "root@example.com", "password": PASSWORD},
                            key=None)[1]["data"]
    async with open_websocket_url(f"ws://127.0.0.1:{fresh.port}/_/api/live") as live:
        await live.send_message(json.dumps({"type": "auth", "access_token": tokens["access_token"]}))
        assert json.loads(await live.get_message())["status"] == "ok"
        status, _, _ = client.request("POST", "/auth/logout", {"refresh_token": tokens["refresh_token"]}, key=None,
                                      headers=bearer(tokens["access_token"]))
        assert status == 204
        signed_out = trio.current_time()
        with trio.fail_after(RECHECK_MS / 1000 + 3):
            told = json.loads(await live.get_message())
            assert told == {"type": "auth", "status": "error", "code": "INVALID_CREDENTIALS"}
            with pytest.raises(ConnectionClosed) as closed:
                await live.get_message()
        assert trio.current_time() - signed_out <= RECHECK_MS / 1000 + 1
    assert (closed.value.reason.code, closed.value.reason.reason) == (4401, "session revoked")
    client.close()
