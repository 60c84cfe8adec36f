"""The admin API routes the console uses (issue 16 part 2), through the
pure core: the standard mount table on a MemoryStore (``DirectusCore``).

Each route is an administrator's only, and each write goes through the
action any client's write goes through: the tests watch the events and
what Backpack, Directus and change-stream subscribers are sent."""

from __future__ import annotations

import json
from typing import Any

import pytest

from directus_rest_harness import PASSWORD, DirectusCore, errors
from satchel.protocol.admin.setup import prepare_setup
from satchel.protocol.backpack.uploads import UploadForm
from satchel.protocol.changes import Change, DocumentChange, EntryChange
from satchel.protocol.channels import CloseConnection
from satchel.protocol.http import HttpRequest

MISSING = "5e9f2fc00000000000000999"
READ = "0123456789abcdef0123456789abcdef"
WRITE = "fedcba9876543210fedcba9876543210"


@pytest.fixture
def core() -> DirectusCore:
    return DirectusCore()


@pytest.fixture
def admin(core: DirectusCore) -> Any:
    return core.account("root@example.com", role="admin")


@pytest.fixture
def ann(core: DirectusCore) -> Any:
    return core.account("ann@example.com")


def bearer(token: str) -> list[tuple[str, str]]:
    return [("authorization", f"Bearer {token}")]


NEW_ROUTES = [
    ("GET", "/_/api/stats", None), ("GET", "/_/api/users", None), ("GET", "/_/api/users?search=a&limit=2", None),
    ("POST", "/_/api/users", {"email": "x@example.com", "password": "long enough"}),
    ("PUT", "/_/api/users/{ann}/password", {"password": "another one"}),
    ("PUT", "/_/api/users/{ann}/disabled", {"disabled": True}),
    ("GET", "/_/api/collections", None), ("GET", "/_/api/collections/notes/records", None),
    ("POST", "/_/api/collections/notes/records", {"a": 1}),
    ("GET", f"/_/api/collections/notes/records/{MISSING}", None),
    ("PATCH", f"/_/api/collections/notes/records/{MISSING}", {"a": 2}),
    ("PUT", f"/_/api/collections/notes/records/{MISSING}", {"a": 2}),
    ("DELETE", f"/_/api/collections/notes/records/{MISSING}", None),
    ("GET", "/_/api/files", None), ("GET", f"/_/api/files/{MISSING}", None),
    ("GET", f"/_/api/files/{MISSING}/content", None), ("DELETE", f"/_/api/files/{MISSING}", None),
    ("GET", "/_/api/documents", None), ("GET", f"/_/api/documents/{READ}", None),
    ("GET", "/_/api/entries/kvStore", None), ("PUT", "/_/api/entries/kvStore/k", 1),
    ("DELETE", "/_/api/entries/liveConfig/k", None),
]


def test_every_new_route_is_an_admins(core: DirectusCore, ann: Any, admin: Any) -> None:
    for method, target, body in NEW_ROUTES:
        target = target.replace("{ann}", ann.id)
        assert errors(core.api(method, target, body)) == (401, "INVALID_CREDENTIALS"), target
        assert errors(core.api(method, target, body, token=ann.access)) == (403, "FORBIDDEN"), target
        assert core.last_changes == [], target
    # Nothing was done: Ann still signs in with her password, nothing was stored.
    assert core.login("ann@example.com")["access_token"]
    assert core.api("GET", "/_/api/collections", token=admin.access).json == {"data": []}


def test_users_are_listed_in_pages_and_searched_never_with_a_hash(core: DirectusCore, admin: Any, ann: Any) -> None:
    for name in ("bob", "carl", "dora"):
        core.account(f"{name}@example.org")
    listed = core.api("GET", "/_/api/users", token=admin.access).json
    assert [u["email"] for u in listed["data"]] == ["root@example.com", "ann@example.com", "bob@example.org",
                                                    "carl@example.org", "dora@example.org"]
    assert listed["meta"] == {"offset": 0, "limit": 50}
    for user in listed["data"]:
        assert set(user) == {"id", "email", "role", "created_at", "disabled"} and user["disabled"] is False
        assert "fake$" not in json.dumps(user)
    page = core.api("GET", "/_/api/users?offset=1&limit=2", token=admin.access).json["data"]
    assert [u["email"] for u in page] == ["ann@example.com", "bob@example.org"]
    assert [u["email"] for u in core.api("GET", "/_/api/users?search=EXAMPLE.ORG&limit=2&offset=1",
                                         token=admin.access).json["data"]] == ["carl@example.org", "dora@example.org"]
    assert errors(core.api("GET", "/_/api/users?limit=x", token=admin.access)) == (400, "INVALID_PAYLOAD")


def test_an_admin_creates_users_who_sign_in_everywhere(core: DirectusCore, admin: Any) -> None:
    made = core.api("POST", "/_/api/users", {"email": "Eve@Example.com", "password": "long enough"},
                    token=admin.access)
    assert made.status == 201 and made.json["data"]["email"] == "eve@example.com"
    assert made.json["data"]["role"] == "authenticated"
    assert core.http("POST", "/login", {"email": "eve@example.com", "password": "long enough"}).status == 200
    assert core.login("eve@example.com", "long enough")["access_token"]
    assert errors(core.api("POST", "/_/api/users", {"email": "eve@example.com", "password": "long enough"},
                           token=admin.access)) == (409, "CONFLICT")
    for body in ({"email": "nope", "password": "long enough"}, {"email": "f@example.com", "password": "short"},
                 {"email": "f@example.com", "password": "long enough", "role": "public"},
                 {"email": "f@example.com", "password": "long enough", "role": "nonexistent"}, {}):
        assert errors(core.api("POST", "/_/api/users", body, token=admin.access)) == (400, "INVALID_PAYLOAD"), body
    ops = core.api("POST", "/_/api/users", {"email": "ops@example.com", "password": "long enough", "role": "admin"},
                   token=admin.access)
    assert ops.json["data"]["role"] == "admin"
    assert core.api("GET", "/_/api/rules", token=core.login("ops@example.com", "long enough")["access_token"]).status == 200


def test_disabling_revokes_every_token_and_enabling_restores_the_password(core: DirectusCore, admin: Any,
                                                                         ann: Any) -> None:
    static = core.api("POST", "/_/api/me/tokens", token=ann.access).json["data"]["token"]
    disabled = core.api("PUT", f"/_/api/users/{ann.id}/disabled", {"disabled": True}, token=admin.access)
    assert disabled.json["data"]["disabled"] is True
    # Every way in is closed: the password, the cookie, access, refresh and static tokens.
    assert core.http("POST", "/login", {"email": ann.email, "password": PASSWORD}).status == 401
    assert core.api("POST", "/auth/login", {"email": ann.email, "password": PASSWORD}).status == 401
    assert core.http("GET", "/notes", cookie=ann.cookie).status == 403
    for token in (ann.access, static):
        assert errors(core.api("GET", "/users/me", token=token)) == (401, "INVALID_CREDENTIALS")
    assert core.api("POST", "/auth/refresh", {"refresh_token": ann.refresh, "mode": "json"}).status == 401
    assert core.stored_user(ann.email).password_hash.startswith("!")
    assert [u["disabled"] for u in core.api("GET", f"/_/api/users?email={ann.email}",
                                            token=admin.access).json["data"]] == [True]
    # A new password keeps the account disabled.
    core.api("PUT", f"/_/api/users/{ann.id}/password", {"password": "brand new pw"}, token=admin.access)
    assert core.http("POST", "/login", {"email": ann.email, "password": "brand new pw"}).status == 401
    enabled = core.api("PUT", f"/_/api/users/{ann.id}/disabled", {"disabled": False}, token=admin.access)
    assert enabled.json["data"]["disabled"] is False
    assert core.http("POST", "/login", {"email": ann.email, "password": "brand new pw"}).status == 200
    assert core.http("POST", "/login", {"email": ann.email, "password": PASSWORD}).status == 401
    # An admin cannot lock itself out; bad bodies are refused.
    assert errors(core.api("PUT", f"/_/api/users/{admin.id}/disabled", {"disabled": True},
                           token=admin.access)) == (400, "INVALID_PAYLOAD")
    for route, body in (("disabled", {"disabled": "yes"}), ("password", {"password": "short"}), ("password", {})):
        assert errors(core.api("PUT", f"/_/api/users/{ann.id}/{route}", body, token=admin.access)) == \
            (400, "INVALID_PAYLOAD")
    assert errors(core.api("PUT", f"/_/api/users/{MISSING}/password", {"password": "long enough"},
                           token=admin.access)) == (404, "NOT_FOUND")


def test_a_password_reset_revokes_the_users_sessions(core: DirectusCore, admin: Any, ann: Any) -> None:
    reset = core.api("PUT", f"/_/api/users/{ann.id}/password", {"password": "reset by admin"}, token=admin.access)
    assert reset.status == 200 and set(reset.json["data"]) == {"id", "email", "role", "created_at", "disabled"}
    assert core.http("GET", "/notes", cookie=ann.cookie).status == 403
    assert errors(core.api("GET", "/users/me", token=ann.access)) == (401, "INVALID_CREDENTIALS")
    assert core.http("POST", "/login", {"email": ann.email, "password": "reset by admin"}).status == 200


def test_records_written_by_the_console_reach_backpack_and_directus_subscribers(core: DirectusCore, admin: Any,
                                                                                 ann: Any) -> None:
    backpack = core.connect(ann.cookie)
    accepted = core.run(core.board.accept(HttpRequest("GET", f"/websocket?access_token={ann.access}", []), "d1"))
    core.publish(accepted.events)
    core.send("d1", {"type": "SUBSCRIBE", "collection": "notes"})
    core.take(backpack), core.take("d1")

    made = core.api("POST", "/_/api/collections/notes/records", {"title": "hello"}, token=admin.access)
    assert made.status == 201
    record = made.json["data"]
    assert record["title"] == "hello" and len(record["_id"]) == 24 and record["__v"] == 0
    [change] = core.last_changes
    assert isinstance(change, Change) and change.origin == "admin-http" and change.user_id == admin.id
    assert core.take(backpack) == [{"action": "create", "collection": "notes", "httpRequest": True, "response": record}]
    [event] = core.take("d1")
    assert event["payload"]["title"] == "hello"

    patched = core.api("PATCH", f"/_/api/collections/notes/records/{record['_id']}", {"n": 1, "title": None},
                       token=admin.access).json["data"]
    assert "title" not in patched and patched["n"] == 1
    assert core.take(backpack)[0]["action"] == "patch"
    replaced = core.api("PUT", f"/_/api/collections/notes/records/{record['_id']}", {"only": True},
                        token=admin.access).json["data"]
    assert {k for k in replaced if k not in ("_id", "createdAt", "updatedAt", "__v")} == {"only"}
    assert core.take(backpack)[0]["action"] == "update"
    assert core.api("GET", f"/_/api/collections/notes/records/{record['_id']}", token=admin.access).json["data"] == \
        replaced
    # What the console wrote is what every client reads.
    assert core.http("GET", f"/notes/{record['_id']}", cookie=ann.cookie).json == replaced
    deleted = core.api("DELETE", f"/_/api/collections/notes/records/{record['_id']}", token=admin.access)
    assert deleted.json["data"]["_id"] == record["_id"]
    assert core.take(backpack)[0]["action"] == "delete"
    for method in ("GET", "PATCH", "PUT", "DELETE"):
        assert errors(core.api(method, f"/_/api/collections/notes/records/{record['_id']}", {"a": 1},
                               token=admin.access)) == (404, "NOT_FOUND"), method


def test_records_page_newest_first_with_search_and_counts(core: DirectusCore, admin: Any, ann: Any) -> None:
    for n in range(7):
        core.http("POST", "/notes", {"n": n, "tag": "even" if n % 2 == 0 else "odd"}, cookie=ann.cookie)
    core.http("POST", "/other", {"x": 1}, cookie=ann.cookie)
    assert core.api("GET", "/_/api/collections", token=admin.access).json["data"] == [
        {"name": "notes", "writable": True}, {"name": "other", "writable": True}]
    page = core.api("GET", "/_/api/collections/notes/records?limit=3&offset=1", token=admin.access).json
    assert [r["n"] for r in page["data"]] == [5, 4, 3]
    assert page["meta"] == {"total_count": 7, "filter_count": 7, "offset": 1, "limit": 3}
    found = core.api("GET", "/_/api/collections/notes/records?search=odd", token=admin.access).json
    assert [r["n"] for r in found["data"]] == [5, 3, 1] and found["meta"]["filter_count"] == 3
    assert errors(core.api("GET", "/_/api/collections/notes/records?offset=-1", token=admin.access)) == \
        (400, "INVALID_PAYLOAD")


def test_another_protocols_collections_are_read_only(core: DirectusCore, admin: Any) -> None:
    for name in ("_asnity.chats", "users", "uploads", "directus_users", "kvstore"):
        assert errors(core.api("POST", f"/_/api/collections/{name}/records", {"a": 1}, token=admin.access)) == \
            (403, "FORBIDDEN"), name
        assert core.last_changes == []
    assert errors(core.api("POST", "/_/api/collections/notes/records", [1], token=admin.access)) == \
        (400, "INVALID_PAYLOAD")
    assert errors(core.api("POST", "/_/api/collections/notes/records", raw=b"{", token=admin.access)) == \
        (400, "INVALID_PAYLOAD")


def test_files_are_listed_downloaded_and_deleted_as_their_owner_would(core: DirectusCore, admin: Any,
                                                                       ann: Any) -> None:
    for name in ("a.txt", "page.html"):
        form = UploadForm({"filename": name, "bucket": "docs"}, core.stage(b"bytes of " + name.encode()))
        assert core.http("POST", "/uploads", cookie=ann.cookie, form=form).status == 200
    listed = core.api("GET", "/_/api/files", token=admin.access).json
    assert [f["filename"] for f in listed["data"]] == ["page.html", "a.txt"] and listed["meta"]["total_count"] == 2
    assert [f["filename"] for f in core.api("GET", "/_/api/files?search=txt", token=admin.access).json["data"]] == \
        ["a.txt"]
    html = listed["data"][0]
    assert core.api("GET", f"/_/api/files/{html['_id']}", token=admin.access).json["data"] == html
    download = core.http("GET", f"/_/api/files/{html['_id']}/content", key=None, headers=bearer(admin.access))
    assert download.status == 200 and download.file.owner == ann.id and download.file.file_id == html["_id"]
    assert download.header("content-disposition").startswith("attachment")  # never run as the server's page
    assert core.files[(ann.id, html["_id"])] == b"bytes of page.html"
    socket = core.connect(ann.cookie)
    core.take(socket)
    gone = core.api("DELETE", f"/_/api/files/{html['_id']}", token=admin.access)
    assert gone.status == 200 and gone.json["data"]["filename"] == "page.html"
    assert (ann.id, html["_id"]) not in core.files
    assert [c.kind for c in core.last_changes] == ["delete"]
    assert [f["filename"] for f in core.http("GET", f"/uploads/{ann.id}", cookie=ann.cookie).json["records"]] == \
        ["a.txt"]
    assert errors(core.api("DELETE", f"/_/api/files/{html['_id']}", token=admin.access)) == (404, "NOT_FOUND")
    assert errors(core.api("GET", "/_/api/files/not-an-id", token=admin.access)) == (404, "NOT_FOUND")


def test_documents_are_listed_by_creation_with_their_messages(core: DirectusCore, admin: Any) -> None:
    tokens = [(f"{n:x}" * 32)[:32] for n in (9, 3)]
    for read in tokens:
        put = core.http("PUT", f"/backend/documents/{read}", {"#messages": {}, "title": read[:4]}, key=None,
                        headers=[("write-token", WRITE[:-1] + read[0]), ("derived-from", "0"), ("revision", "1")])
        assert put.status == 200, put.json
    posted = core.http("POST", f"/backend/documents/{WRITE[:-1] + tokens[0][0]}/messages/00000000000000aa",
                       {"#": 1, "text": "hi"}, key=None)
    assert posted.status == 200, posted.body
    listed = core.api("GET", "/_/api/documents", token=admin.access).json["data"]
    assert [d["read_token"] for d in listed] == tokens
    assert listed[0]["inbox"] is True and listed[0]["messages"] == 1 and listed[1]["messages"] == 0
    assert "write" not in json.dumps(listed)
    assert [d["read_token"] for d in core.api("GET", "/_/api/documents?offset=1", token=admin.access).json["data"]] == \
        tokens[1:]
    one = core.api("GET", f"/_/api/documents/{tokens[0]}", token=admin.access).json["data"]
    assert one["content"]["#messages"]["00000000000000aa"]["text"] == "hi" and one["revision"] >= 1
    assert errors(core.api("GET", f"/_/api/documents/{READ}", token=admin.access)) == (404, "NOT_FOUND")


def test_entries_are_written_as_the_resource_protocol_writes_them(core: DirectusCore, admin: Any) -> None:
    put = core.api("PUT", "/_/api/entries/kvStore/greeting?organization=acme", {"hello": "world"}, token=admin.access)
    assert put.status == 200 and put.json["data"]["value"] == {"hello": "world"}
    [change] = core.last_changes
    assert isinstance(change, EntryChange) and change.organization == "acme" and change.origin == "admin-http"
    # The resource protocol's own REST API reads what the console wrote.
    read = core.http("GET", "/realtime/kv/greeting", key=None, headers=[("x-m2-organization", "acme")] +
                     bearer(admin.access))
    assert read.status == 200 and b"world" in read.body
    listed = core.api("GET", "/_/api/entries/kvStore?organization=acme", token=admin.access).json["data"]
    assert [e["id"] for e in listed["entries"]] == ["greeting"] and listed["next"] is None
    assert core.api("GET", "/_/api/entries/kvStore", token=admin.access).json["data"]["entries"] == []
    assert core.api("PUT", "/_/api/entries/liveConfig/flag", True, token=admin.access).status == 200
    assert core.api("DELETE", "/_/api/entries/kvStore/greeting?organization=acme", token=admin.access).status == 200
    assert [c.kind for c in core.last_changes] == ["delete"]
    assert errors(core.api("DELETE", "/_/api/entries/kvStore/greeting?organization=acme", token=admin.access)) == \
        (404, "NOT_FOUND")
    assert errors(core.api("PUT", "/_/api/entries/nope/x", 1, token=admin.access)) == (404, "NOT_FOUND")
    assert errors(core.api("PUT", "/_/api/entries/kvStore/x", raw=b"{bad", token=admin.access)) == \
        (400, "INVALID_PAYLOAD")


def test_stats_count_the_open_connections_per_mount(core: DirectusCore, admin: Any, ann: Any) -> None:
    before = core.api("GET", "/_/api/stats", token=admin.access).json["data"]
    assert set(before["connections"]) == {"admin", "asnity", "resources", "directus", "backpack"}
    assert before["connections"]["backpack"] == 0
    socket = core.connect(ann.cookie)
    assert core.api("GET", "/_/api/stats", token=admin.access).json["data"]["connections"]["backpack"] == 1
    core.close(socket)
    assert core.api("GET", "/_/api/stats", token=admin.access).json["data"]["connections"]["backpack"] == 0
    assert core.board.connection_counts()["admin"] == 0


def test_first_run_setup_creates_one_administrator_once(core: DirectusCore) -> None:
    assert core.api("GET", "/_/api/setup").json == {"data": {"open": False}}  # no token printed yet
    token = core.run(prepare_setup(core.env))
    assert token is not None
    assert core.api("GET", "/_/api/setup").json == {"data": {"open": True}}
    body = {"token": token, "email": "First@Example.com", "password": "first password"}
    assert errors(core.api("POST", "/_/api/setup", {**body, "token": "guessed"})) == (403, "FORBIDDEN")
    assert errors(core.api("POST", "/_/api/setup", {**body, "password": "short"})) == (400, "INVALID_PAYLOAD")
    assert errors(core.api("POST", "/_/api/setup", {**body, "email": "nope"})) == (400, "INVALID_PAYLOAD")
    made = core.api("POST", "/_/api/setup", body)  # the failed tries did not spend the token
    assert made.status == 201 and made.json["data"]["role"] == "admin" and made.json["data"]["email"] == "first@example.com"
    access = core.login("first@example.com", "first password")["access_token"]
    assert core.api("GET", "/_/api/me", token=access).json["data"]["admin"] is True
    assert core.api("GET", "/_/api/setup").json == {"data": {"open": False}}
    assert errors(core.api("POST", "/_/api/setup", {**body, "email": "second@example.com"})) == (403, "FORBIDDEN")
    assert core.stored_user("second@example.com") is None
    assert core.run(prepare_setup(core.env)) is None  # an admin exists: no token at the next start


def test_the_change_stream_shows_every_write_to_admins_only(core: DirectusCore, admin: Any, ann: Any) -> None:
    def open_stream(name: str, token: str) -> list[Any]:
        accepted = core.run(core.board.accept(HttpRequest("GET", "/_/api/live", []), name))
        core.publish(accepted.events)
        assert core.board.opened(name).mount.name == "admin"
        core.send(name, {"type": "auth", "access_token": token})
        return core.take(name)

    assert open_stream("live", admin.access) == [{"type": "auth", "status": "ok", "user": admin.id}]
    refused = open_stream("ann", ann.access)
    assert refused[0] == {"type": "auth", "status": "error", "code": "FORBIDDEN"}
    assert isinstance(refused[1], CloseConnection) and refused[1].code == 4403
    assert core.board.opened("ann") is None
    record = core.http("POST", "/notes", {"title": "from backpack"}, cookie=ann.cookie).json
    core.api("PUT", "/_/api/entries/kvStore/k", 1, token=admin.access)
    [created, entry] = core.take("live")
    assert created == {"type": "change", "kind": "create", "collection": "notes", "id": record["_id"],
                       "origin": "backpack-http", "user": ann.id, "record": record}
    assert entry["type"] == "entry" and entry["id"] == "k" and entry["origin"] == "admin-http"
    core.send("live", {"type": "ping"})
    assert core.take("live") == [{"type": "pong"}]
    # Without an auth first, or with a bad token: refused and closed.
    accepted = core.run(core.board.accept(HttpRequest("GET", "/_/api/live", []), "anon"))
    core.send("anon", {"type": "subscribe"})
    assert core.take("anon")[0]["code"] == "INVALID_CREDENTIALS" and core.board.opened("anon") is None
    # A demoted admin's stream is sent nothing more.
    other = core.account("ops@example.com", role="admin")
    assert open_stream("ops", other.access)[0]["status"] == "ok"
    core.api("PUT", f"/_/api/users/{other.id}/role", {"role": "authenticated"}, token=admin.access)
    core.take("live")
    core.http("POST", "/notes", {"title": "second"}, cookie=ann.cookie)
    assert core.take("ops") == [] and len(core.take("live")) == 1
    assert isinstance(accepted.state, object) and DocumentChange  # the stream renders documents too (below)


def test_the_change_stream_renders_documents(core: DirectusCore, admin: Any) -> None:
    accepted = core.run(core.board.accept(HttpRequest("GET", "/_/api/live", []), "live"))
    core.publish(accepted.events)
    core.send("live", {"type": "auth", "access_token": admin.access})
    core.take("live")
    core.http("PUT", f"/backend/documents/{READ}", {"#messages": {}}, key=None,
              headers=[("write-token", WRITE), ("derived-from", "0"), ("revision", "1")])
    assert core.take("live") == [{"type": "document", "read_token": READ, "revision": 1, "origin": "inbox-http"}]


def test_disabling_or_resetting_closes_the_users_open_websockets(core: DirectusCore, admin: Any, ann: Any) -> None:
    backpack = core.connect(ann.cookie)
    accepted = core.run(core.board.accept(HttpRequest("GET", f"/websocket?access_token={ann.access}", []), "d1"))
    core.publish(accepted.events)
    mine = core.connect(admin.cookie)
    for connection in (backpack, "d1", mine):
        core.take(connection)
    core.api("PUT", f"/_/api/users/{ann.id}/disabled", {"disabled": True}, token=admin.access)
    for connection in (backpack, "d1"):
        [closed] = core.take(connection)
        assert isinstance(closed, CloseConnection) and closed.code == 4403 and closed.reason == "account disabled"
        assert core.board.opened(connection) is None
    # Nobody else's: the admin's socket stays open, told (as Backpack tells everyone) that Ann left.
    assert core.take(mine) == [{"action": "close", "userId": ann.id}] and core.board.opened(mine) is not None
    core.api("PUT", f"/_/api/users/{ann.id}/disabled", {"disabled": False}, token=admin.access)
    again = core.connect(core.http("POST", "/login", {"email": ann.email, "password": PASSWORD}).cookie)
    core.take(again)
    core.api("PUT", f"/_/api/users/{ann.id}/password", {"password": "a new password"}, token=admin.access)
    assert [type(m) for m in core.take(again)] == [CloseConnection] and core.board.opened(again) is None


def _timer(core: DirectusCore, connection: str) -> list[Any]:
    """Move the clock to ``connection``'s deadline and run its timer, as the transport does."""
    due = core.board.deadline_ms(connection)
    assert due is not None, f"{connection} has no timer"
    core.clock.now = max(core.clock.now, due)
    core.publish(core.run(core.board.on_timer(connection)))
    return core.take(connection)


def _stream(core: DirectusCore, name: str, token: str) -> None:
    core.publish(core.run(core.board.accept(HttpRequest("GET", "/_/api/live", []), name)).events)
    core.send(name, {"type": "auth", "access_token": token})
    assert core.take(name)[0]["status"] == "ok"


def test_the_change_stream_closes_when_its_access_token_expires(core: DirectusCore, admin: Any) -> None:
    from satchel.protocol.admin.live import RECHECK_MS

    core.clock.advance(1000)  # the account's tokens were issued a second before the stream opens
    _stream(core, "live", admin.access)
    expires = core.board.opened("live").state.expires_ms
    assert core.board.deadline_ms("live") == core.clock.now + RECHECK_MS < expires
    # Checked again and again while the session holds: nothing sent, still open, still delivered to.
    while core.board.deadline_ms("live") < expires:
        assert _timer(core, "live") == []
    assert core.board.deadline_ms("live") == expires
    core.clock.now = expires - 1
    core.http("POST", "/notes", {"title": "still watched"}, cookie=admin.cookie)
    assert [m["type"] for m in core.take("live")] == ["change"]
    [told, closed] = _timer(core, "live")
    assert told == {"type": "auth", "status": "error", "code": "TOKEN_EXPIRED"}
    assert isinstance(closed, CloseConnection) and (closed.code, closed.reason) == (4401, "token expired")
    assert core.board.opened("live") is None


def test_the_change_stream_closes_after_a_sign_out_or_a_demotion(core: DirectusCore, admin: Any) -> None:
    from satchel.protocol.admin.live import RECHECK_MS

    _stream(core, "live", admin.access)
    other = core.account("ops@example.com", role="admin")
    _stream(core, "ops", other.access)
    # The console's sign-out: the refresh token in the body, the access token as the Bearer.
    assert core.api("POST", "/auth/logout", {"refresh_token": admin.refresh}, token=admin.access).status == 204
    start = core.clock.now
    [told, closed] = _timer(core, "live")
    assert core.clock.now - start <= RECHECK_MS
    assert told == {"type": "auth", "status": "error", "code": "INVALID_CREDENTIALS"}
    assert isinstance(closed, CloseConnection) and (closed.code, closed.reason) == (4401, "session revoked")
    assert core.board.opened("live") is None
    # A demoted admin's stream: sent nothing at once, closed at its next check.
    root = core.login("root@example.com")["access_token"]
    core.api("PUT", f"/_/api/users/{other.id}/role", {"role": "authenticated"}, token=root)
    assert core.take("ops") == []
    [told, closed] = _timer(core, "ops")
    assert told["code"] == "FORBIDDEN" and (closed.code, closed.reason) == (4403, "not an administrator")


def test_a_static_tokens_stream_lives_until_the_token_is_revoked(core: DirectusCore, admin: Any) -> None:
    token_id, token = core.static_token(admin.id)
    _stream(core, "live", token)
    for _ in range(3):
        assert _timer(core, "live") == [] and core.board.opened("live") is not None
    assert core.api("DELETE", f"/_/api/users/{admin.id}/tokens/{token_id}", token=admin.access).status in (200, 204)
    [told, closed] = _timer(core, "live")
    assert told["code"] == "INVALID_CREDENTIALS" and closed.code == 4401
