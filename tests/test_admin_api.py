"""The administration API under ``/_/api`` (``satchel.protocol.admin``) and
the command-line actions behind ``satchel admin create`` and ``satchel
serve --rules``, through the standard mount table on a MemoryStore."""

from __future__ import annotations

import json
from typing import Any

import pytest

from directus_rest_harness import PASSWORD, DirectusCore, errors
from satchel.protocol.admin import AdminMount, create_admin, install_rules
from satchel.protocol.errors import RemoteProtocolError
from satchel.protocol.http import HttpRequest
from satchel.protocol.permissions import DEFAULT_RULES, RulesChanged, RuleSet, load_rules

READ_ONLY = {"roles": {"authenticated": {"rules": [{"collection": "*", "action": "read"}]}}}


@pytest.fixture
def core() -> DirectusCore:
    return DirectusCore()


@pytest.fixture
def admin(core: DirectusCore) -> Any:
    return core.account("root@example.com", role="admin")


@pytest.fixture
def ann(core: DirectusCore) -> Any:
    return core.account("ann@example.com")


def test_every_route_needs_a_bearer(core: DirectusCore, ann: Any) -> None:
    for method, target in [("GET", "/_/api/rules"), ("PUT", "/_/api/rules"), ("GET", "/_/api/roles"),
                           ("GET", "/_/api/me"), ("GET", "/_/api/me/tokens"), ("GET", f"/_/api/users/{ann.id}"),
                           ("GET", "/_/api/nothing-here")]:
        assert errors(core.api(method, target)) == (401, "INVALID_CREDENTIALS"), target
        assert errors(core.api(method, target, token="forged")) == (401, "INVALID_CREDENTIALS"), target
        assert errors(core.api(method, target, token=ann.refresh)) == (401, "INVALID_CREDENTIALS"), target
    # A Backpack cookie is no Bearer either.
    assert errors(core.http("GET", "/_/api/rules", cookie=ann.cookie)) == (401, "INVALID_CREDENTIALS")


def test_only_admins_administer(core: DirectusCore, ann: Any, admin: Any) -> None:
    for method, target, body in [("GET", "/_/api/rules", None), ("PUT", "/_/api/rules", {"revision": 0, "rules": {}}),
                                 ("GET", "/_/api/roles", None), ("GET", "/_/api/users?email=ann@example.com", None),
                                 ("GET", f"/_/api/users/{ann.id}", None),
                                 ("PUT", f"/_/api/users/{ann.id}/role", {"role": "admin"}),
                                 ("GET", f"/_/api/users/{admin.id}/tokens", None),
                                 ("POST", f"/_/api/users/{admin.id}/tokens", None)]:
        answer = core.api(method, target, body, token=ann.access)
        assert errors(answer) == (403, "FORBIDDEN"), target
        assert core.last_changes == []
    assert core.stored_user(ann.email).role == "authenticated"
    assert core.api("GET", "/_/api/me", token=admin.access).json["data"] == {
        "id": admin.id, "email": "root@example.com", "role": "admin", "created_at": core.stored_user(admin.email).created_at,
        "admin": True, "disabled": False,
    }
    assert core.api("GET", "/_/api/me", token=ann.access).json["data"]["admin"] is False


def test_the_rules_are_read_and_replaced_by_compare_and_swap(core: DirectusCore, admin: Any, ann: Any) -> None:
    read = core.api("GET", "/_/api/rules", token=admin.access)
    assert read.status == 200
    assert read.json["data"]["revision"] == 0
    assert read.json["data"]["rules"] == {"version": 1, "roles": {}}
    assert {r["name"] for r in read.json["data"]["roles"]} == {"public", "authenticated", "admin"}
    # Ann may write before...
    assert core.api("POST", "/items/notes", {"a": 1}, token=ann.access).status == 200
    replaced = core.api("PUT", "/_/api/rules", {"revision": 0, "rules": READ_ONLY}, token=admin.access)
    assert replaced.status == 200, replaced.json
    assert replaced.json["data"]["revision"] == 1
    assert replaced.json["data"]["rules"]["roles"]["authenticated"]["rules"][0]["action"] == "read"
    [event] = core.last_changes
    assert isinstance(event, RulesChanged) and event.revision == 1
    assert RuleSet.from_json(event.rules) == RuleSet.from_json(json.dumps(READ_ONLY))
    # ...and not on the very next request: the switchboard applied the event.
    assert core.board.rules_revision == 1
    assert errors(core.api("POST", "/items/notes", {"a": 2}, token=ann.access)) == (403, "FORBIDDEN")
    assert core.api("GET", "/items/notes", token=ann.access).status == 200
    # Backpack obeys the same rule set (its refusal is in its own format).
    assert core.http("POST", "/notes", {"a": 3}, cookie=ann.cookie).status == 403
    # A stale revision is a conflict, and says which revision is current.
    stale = core.api("PUT", "/_/api/rules", {"revision": 0, "rules": {}}, token=admin.access)
    assert errors(stale) == (409, "CONFLICT")
    assert stale.json["errors"][0]["extensions"]["revision"] == 1
    assert core.last_changes == [] and core.board.rules_revision == 1
    assert core.api("GET", "/_/api/rules", token=admin.access).json["data"]["revision"] == 1
    # The stored rules are what a restarted server loads.
    assert core.run(load_rules())[1] == 1
    restored = core.api("PUT", "/_/api/rules", {"revision": 1, "rules": {}}, token=admin.access)
    assert restored.json["data"]["revision"] == 2
    assert core.api("POST", "/items/notes", {"a": 4}, token=ann.access).status == 200


@pytest.mark.parametrize("body,raw", [
    ({"rules": READ_ONLY}, None),
    ({"revision": "0", "rules": READ_ONLY}, None),
    ({"revision": -1, "rules": READ_ONLY}, None),
    ({"revision": 0}, None),
    ({"revision": 0, "rules": []}, None),
    ({"revision": 0, "rules": {"roles": {"admin": {"admin": False}}}}, None),
    ({"revision": 0, "rules": {"roles": {"x": {"rules": [{"collection": "users", "action": "read"}]}}}}, None),
    ({"revision": 0, "rules": {"roles": {"x": {"rules": [{"collection": "a", "action": "fly"}]}}}}, None),
    ({"revision": 0, "rules": {"roles": {"x": {"rules": [{"collection": "a", "action": "read",
                                                          "filter": {"a": {"_nope": 1}}}]}}}}, None),
    ({"revision": 0, "rules": {"version": 2}}, None),
    ({"revision": 0, "rules": {"unknown": 1}}, None),
    (None, b"{broken"),
    (None, b""),
])
def test_invalid_rules_are_refused_and_nothing_changes(core: DirectusCore, admin: Any, body: Any, raw: bytes | None) -> None:
    answer = core.api("PUT", "/_/api/rules", body, raw=raw, token=admin.access)
    assert errors(answer) == (400, "INVALID_PAYLOAD"), answer.json
    assert core.last_changes == [] and core.run(load_rules()) == (DEFAULT_RULES, 0)


def test_roles_are_listed(core: DirectusCore, admin: Any) -> None:
    core.api("PUT", "/_/api/rules", {"revision": 0, "rules": {"roles": {"editor": {}, "ops": {"admin": True}}}},
             token=admin.access)
    roles = core.api("GET", "/_/api/roles", token=admin.access).json["data"]
    assert roles == [
        {"name": "admin", "admin": True, "builtin": True},
        {"name": "authenticated", "admin": False, "builtin": True},
        {"name": "editor", "admin": False, "builtin": False},
        {"name": "ops", "admin": True, "builtin": False},
        {"name": "public", "admin": False, "builtin": True},
    ]


def test_users_are_found_and_given_roles(core: DirectusCore, admin: Any, ann: Any) -> None:
    core.api("PUT", "/_/api/rules", {"revision": 0, "rules": {"roles": {"reader": {"rules": [
        {"collection": "*", "action": "read"}]}}}}, token=admin.access)
    found = core.api("GET", "/_/api/users?email=ANN@example.com", token=admin.access).json["data"]
    assert [u["id"] for u in found] == [ann.id]
    assert set(found[0]) == {"id", "email", "role", "created_at", "disabled"}  # never the password hash
    assert core.api("GET", "/_/api/users?email=nobody@example.com", token=admin.access).json == {"data": []}
    # Without ?email= the users are listed in pages (tests/test_console_admin_api.py).
    assert [u["id"] for u in core.api("GET", "/_/api/users", token=admin.access).json["data"]] == [admin.id, ann.id]
    assert core.api("GET", f"/_/api/users/{ann.id}", token=admin.access).json["data"] == found[0]
    assert errors(core.api("GET", "/_/api/users/5e9f2fc00000000000000999", token=admin.access)) == (404, "NOT_FOUND")

    assert core.api("POST", "/items/n", {"a": 1}, token=ann.access).status == 200
    given = core.api("PUT", f"/_/api/users/{ann.id}/role", {"role": "reader"}, token=admin.access)
    assert given.status == 200 and given.json["data"]["role"] == "reader"
    assert core.stored_user(ann.email).role == "reader"
    assert errors(core.api("POST", "/items/n", {"a": 2}, token=ann.access)) == (403, "FORBIDDEN")  # at once
    # Rules that drop a role Ann holds are refused: every user keeps a defined role.
    dropped = core.api("PUT", "/_/api/rules", {"revision": 1, "rules": {}}, token=admin.access)
    assert errors(dropped) == (400, "INVALID_PAYLOAD") and "'reader'" in dropped.json["errors"][0]["message"]
    for bad in ({"role": "nonexistent"}, {"role": "public"}, {"role": 5}, {}):
        assert errors(core.api("PUT", f"/_/api/users/{ann.id}/role", bad, token=admin.access)) == (400, "INVALID_PAYLOAD")
    assert errors(core.api("PUT", "/_/api/users/5e9f2fc00000000000000999/role", {"role": "reader"},
                           token=admin.access)) == (404, "NOT_FOUND")
    # An admin may make another admin, who may then administer.
    core.api("PUT", f"/_/api/users/{ann.id}/role", {"role": "admin"}, token=admin.access)
    assert core.api("GET", "/_/api/rules", token=ann.access).status == 200


def test_static_tokens_made_by_an_admin_for_a_user(core: DirectusCore, admin: Any, ann: Any) -> None:
    made = core.api("POST", f"/_/api/users/{ann.id}/tokens", token=admin.access)
    assert made.status == 201
    data = made.json["data"]
    assert set(data) == {"id", "user", "token"} and data["user"] == ann.id
    token = data["token"]
    assert core.api("GET", "/users/me", token=token).json["data"]["id"] == ann.id
    listed = core.api("GET", f"/_/api/users/{ann.id}/tokens", token=admin.access).json["data"]
    assert listed == [{"id": data["id"], "user": ann.id}]
    assert token not in json.dumps(listed)
    # A static token of an admin is an admin's Bearer.
    admin_token = core.api("POST", f"/_/api/users/{admin.id}/tokens", token=admin.access).json["data"]["token"]
    assert core.api("GET", "/_/api/rules", token=admin_token).status == 200
    assert core.api("GET", f"/_/api/users/{ann.id}/tokens", token=token).status == 403
    revoked = core.api("DELETE", f"/_/api/users/{ann.id}/tokens/{data['id']}", token=admin.access)
    assert revoked.status == 204
    assert errors(core.api("GET", "/users/me", token=token)) == (401, "INVALID_CREDENTIALS")
    assert core.api("GET", f"/_/api/users/{ann.id}/tokens", token=admin.access).json == {"data": []}
    assert errors(core.api("DELETE", f"/_/api/users/{ann.id}/tokens/{data['id']}", token=admin.access)) == \
        (404, "NOT_FOUND")
    assert errors(core.api("POST", "/_/api/users/5e9f2fc00000000000000999/tokens", token=admin.access)) == \
        (404, "NOT_FOUND")


def test_a_user_makes_and_revokes_its_own_static_tokens(core: DirectusCore, ann: Any, admin: Any) -> None:
    first = core.api("POST", "/_/api/me/tokens", token=ann.access).json["data"]
    second = core.api("POST", "/_/api/me/tokens", token=ann.access).json["data"]
    assert first["token"] != second["token"] and first["user"] == ann.id
    mine = core.api("GET", "/_/api/me/tokens", token=first["token"]).json["data"]
    assert sorted(t["id"] for t in mine) == sorted([first["id"], second["id"]])
    # A user cannot revoke someone else's token by its id.
    admins = core.api("POST", "/_/api/me/tokens", token=admin.access).json["data"]
    assert errors(core.api("DELETE", f"/_/api/me/tokens/{admins['id']}", token=ann.access)) == (404, "NOT_FOUND")
    assert core.api("GET", "/users/me", token=admins["token"]).status == 200
    assert core.api("DELETE", f"/_/api/me/tokens/{first['id']}", token=ann.access).status == 204
    assert errors(core.api("GET", "/users/me", token=first["token"])) == (401, "INVALID_CREDENTIALS")
    assert core.api("GET", "/users/me", token=second["token"]).status == 200


@pytest.mark.parametrize("method,target", [
    ("GET", "/_/api"), ("GET", "/_/api/nothing"), ("POST", "/_/api/rules"), ("DELETE", "/_/api/roles"),
    ("PATCH", "/_/api/me"), ("PUT", "/_/api/me/tokens"), ("GET", "/_/api/me/tokens/x/y"),
])
def test_unknown_admin_routes(core: DirectusCore, admin: Any, method: str, target: str) -> None:
    assert errors(core.api(method, target, {}, token=admin.access)) == (404, "ROUTE_NOT_FOUND")


def test_the_admin_mount_claims_its_prefix_only(core: DirectusCore, ann: Any) -> None:
    mount = AdminMount()
    for path, claimed in [("/_/api", True), ("/_/api/rules", True), ("/_/apix", False), ("/_/other", False),
                          ("/api/x", False), ("/rules", False)]:
        assert mount.claims_request(HttpRequest("GET", path, [])) is claimed, path
    assert core.board.mount_for(HttpRequest("GET", "/_/api/rules", [])).name == "admin"
    assert json.loads(mount.error_response(413, "too large").body) == \
        {"errors": [{"message": "too large", "extensions": {"code": "CONTENT_TOO_LARGE"}}]}


# -- what the command line runs ----------------------------------------------------------


def test_create_admin_creates_or_promotes(core: DirectusCore) -> None:
    made = core.run(create_admin(" Root@Example.com ", "admin-password", core.env))
    assert made.created and not made.promoted and made.user.role == "admin" and made.user.email == "root@example.com"
    assert core.stored_user("root@example.com").role == "admin"
    token = core.login("root@example.com", "admin-password")["access_token"]
    assert core.api("GET", "/_/api/rules", token=token).status == 200
    again = core.run(create_admin("root@example.com", "ignored-password", core.env))
    assert not again.created and not again.promoted
    # An account registered through Backpack is promoted, its password kept.
    ann = core.account("ann@example.com")
    promoted = core.run(create_admin("ann@example.com", "another-password", core.env))
    assert promoted.promoted and promoted.user.id == ann.id
    assert core.api("GET", "/_/api/rules", token=core.login("ann@example.com", PASSWORD)["access_token"]).status == 200
    for email, password in [("not-an-email", "admin-password"), ("new@example.com", "short")]:
        with pytest.raises(RemoteProtocolError):
            core.run(create_admin(email, password, core.env))


def test_install_rules_replaces_the_stored_rules_once(core: DirectusCore) -> None:
    rules = RuleSet.from_json(json.dumps(READ_ONLY))
    first = core.run(install_rules(rules))
    assert first.changed and first.revision == 1
    assert core.run(load_rules()) == (rules, 1)
    same = core.run(install_rules(rules))
    assert not same.changed and same.revision == 1
    other = core.run(install_rules(DEFAULT_RULES))
    assert other.changed and other.revision == 2
    # A switchboard loads what is stored.
    core.run(install_rules(rules))
    assert core.run(core.board.load_rules()) == rules and core.board.rules_revision == 3


def test_a_new_role_reaches_the_users_open_websockets_at_once(core: DirectusCore, admin: Any, ann: Any) -> None:
    """A demotion is not postponed to the next sign-in: Ann's Backpack
    websocket and her Directus subscriptions (extension and core, opened
    while she could read everything) are sent only what her new role reads."""
    core.api("PUT", "/_/api/rules", {"revision": 0, "rules": {"roles": {"reader": {"rules": [
        {"collection": "notes", "action": "read", "filter": {"status": {"_eq": "published"}}, "fields": ["title"]}]}}}},
        token=admin.access)
    backpack = core.connect(ann.cookie)
    assert isinstance(backpack, str)
    sockets = {"backpack": backpack}
    for name, target in (("extension", f"/websocket?access_token={ann.access}"),
                         ("core", f"/websocket?protocol=directus-core&access_token={ann.access}")):
        accepted = core.run(core.board.accept(HttpRequest("GET", target, []), name))
        core.publish(accepted.events)
        sockets[name] = name
    core.send("extension", {"type": "SUBSCRIBE", "collection": "notes"})
    core.send("core", {"type": "subscribe", "collection": "notes", "uid": "n"})
    for connection in sockets.values():
        core.take(connection)

    def seen() -> dict[str, list[Any]]:
        return {name: core.take(connection) for name, connection in sockets.items()}

    def payloads(frames: dict[str, list[Any]]) -> dict[str, Any]:
        return {"backpack": [f["response"] for f in frames["backpack"]],
                "extension": [f["payload"] for f in frames["extension"]],
                "core": [item for f in frames["core"] for item in f["data"]]}

    core.api("POST", "/items/notes", {"title": "draft", "status": "draft", "body": "b"}, token=admin.access)
    before = payloads(seen())
    assert all(len(frames) == 1 and frames[0]["title"] == "draft" for frames in before.values()), before

    assert core.api("PUT", f"/_/api/users/{ann.id}/role", {"role": "reader"}, token=admin.access).status == 200
    core.api("POST", "/items/notes", {"title": "draft 2", "status": "draft", "body": "b"}, token=admin.access)
    core.api("POST", "/items/notes", {"title": "out", "status": "published", "body": "b"}, token=admin.access)
    after = payloads(seen())
    for name, frames in after.items():
        assert [frame["title"] for frame in frames] == ["out"], (name, after)
        assert "body" not in frames[0] and "status" not in frames[0], (name, frames)
    # Her websocket actions follow the new role too.
    core.send("core", {"type": "items", "collection": "notes", "action": "create", "data": {"title": "x"}, "uid": "w"})
    refused = [frame for frame in core.take("core") if frame.get("uid") == "w"]
    assert refused and refused[0]["status"] == "error" and refused[0]["error"]["code"] == "FORBIDDEN", refused
