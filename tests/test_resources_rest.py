"""The resource protocol's REST API (seed 004, issue 12 part 1) through the
pure core: kv and live-config entries, scopes, versions, Bearer tokens, the
one rule set, limits and the error shape."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import pytest

from resources_harness import ResourcesCore
from satchel.protocol.changes import EntryChange
from satchel.protocol.records import format_timestamp

KEY = "World:kvstoreClient:testKey"


@pytest.fixture
def core() -> ResourcesCore:
    return ResourcesCore()


def error_of(response: Any) -> tuple[int, str]:
    body = response.json
    assert set(body) == {"error", "code", "message"}, body
    assert all(isinstance(body[name], str) for name in body)
    return response.status, body["code"]


def test_put_get_delete_a_kv_entry(core: ResourcesCore) -> None:
    alice = core.account("alice@example.com")
    put = core.rest("PUT", f"/realtime/kv/{KEY}", {"score": 1}, token=alice.access)
    assert put.status == 200
    assert put.json == {"id": KEY, "data": {"score": 1}, "version": format_timestamp(core.clock.now)}
    [change] = core.last_changes
    assert isinstance(change, EntryChange) and change.kind == "put" and change.user_id == alice.id
    assert core.rest("GET", f"/realtime/kv/{KEY}", token=alice.access).json == put.json

    core.clock.advance(7)
    deleted = core.rest("DELETE", f"/realtime/kv/{KEY}", token=alice.access)
    assert deleted.json == {"id": KEY, "data": {"score": 1}, "version": format_timestamp(core.clock.now)}
    [change] = core.last_changes
    assert change.kind == "delete" and change.value is None
    assert error_of(core.rest("GET", f"/realtime/kv/{KEY}", token=alice.access)) == (404, "not_found")
    assert error_of(core.rest("DELETE", f"/realtime/kv/{KEY}", token=alice.access)) == (404, "not_found")
    assert core.last_changes == []


@pytest.mark.parametrize("value", [None, 0, -1.5, "text", [], [1, [2, {"3": None}]], {"deep": {"er": True}}, "\u2603"])
def test_any_json_value(core: ResourcesCore, value: Any) -> None:
    alice = core.account("alice@example.com")
    assert core.rest("PUT", "/realtime/kv/v", raw=__import__("json").dumps(value).encode(), token=alice.access).status == 200
    assert core.rest("GET", "/realtime/kv/v", token=alice.access).json["data"] == value


@pytest.mark.parametrize("entry_id", [KEY, "a/b/c", "../../etc/passwd", "snow\u2603man", "\U0001f600", "x" * 512,
                                      "with space", "q?uery#frag", "a//b/", "%41"])
def test_ids_of_every_shape_are_plain_keys(core: ResourcesCore, entry_id: str) -> None:
    alice = core.account("alice@example.com")
    path = "/realtime/kv/" + quote(entry_id, safe=":")
    assert core.rest("PUT", path, {"id": entry_id}, token=alice.access).json["id"] == entry_id
    assert core.rest("GET", path, token=alice.access).json["data"] == {"id": entry_id}
    listed = core.rest("GET", "/realtime/kv", token=alice.access).json
    assert [entry["id"] for entry in listed["entries"]] == [entry_id]


@pytest.mark.parametrize("path", ["/realtime/kv/" + "x" * 513, "/realtime/kv/a%00b", "/realtime/kv/%FF", "/realtime/kv/a%0Ab"])
def test_bad_ids_are_refused(core: ResourcesCore, path: str) -> None:
    alice = core.account("alice@example.com")
    assert error_of(core.rest("PUT", path, 1, token=alice.access)) == (400, "invalid_request")
    assert core.last_changes == []


def test_versions_strictly_increase_even_when_the_clock_does_not(core: ResourcesCore) -> None:
    alice = core.account("alice@example.com")
    versions = [core.rest("PUT", "/realtime/kv/hot", n, token=alice.access).json["version"] for n in range(5)]
    start = core.clock.now
    assert versions == [format_timestamp(start + n) for n in range(5)]
    core.clock.advance(-10_000)  # the clock steps back
    assert core.rest("PUT", "/realtime/kv/hot", 9, token=alice.access).json["version"] == format_timestamp(start + 5)
    # A delete and a re-creation keep going up.
    assert core.rest("DELETE", "/realtime/kv/hot", token=alice.access).json["version"] == format_timestamp(start + 6)
    assert core.rest("PUT", "/realtime/kv/hot", 1, token=alice.access).json["version"] == format_timestamp(start + 7)
    core.clock.advance(20_000)
    assert core.rest("PUT", "/realtime/kv/hot", 2, token=alice.access).json["version"] == format_timestamp(core.clock.now)


def test_scopes_never_see_each_other(core: ResourcesCore) -> None:
    alice = core.account("alice@example.com")
    scopes = [None, ("org", ""), ("", "org"), ("org", "proj"), ("org", "proj2")]
    for n, scope in enumerate(scopes):
        assert core.rest("PUT", "/realtime/kv/shared", n, token=alice.access, scope=scope).status == 200
        assert core.rest("PUT", "/realtime/live-config/shared", -n, token=alice.access, scope=scope).status == 200
    for n, scope in enumerate(scopes):
        assert core.rest("GET", "/realtime/kv/shared", token=alice.access, scope=scope).json["data"] == n
        assert core.rest("GET", "/realtime/live-config/shared", token=alice.access, scope=scope).json["data"] == -n
        listed = core.rest("GET", "/realtime/kv", token=alice.access, scope=scope).json["entries"]
        assert [entry["data"] for entry in listed] == [n]
    # An empty header is the same as none.
    assert core.rest("GET", "/realtime/kv/shared", token=alice.access, scope=("", "")).json["data"] == 0
    bad = core.rest("GET", "/realtime/kv/shared", token=alice.access, scope=("o" * 200, ""))
    assert error_of(bad) == (400, "invalid_request")


def test_listing_by_prefix_pages(core: ResourcesCore) -> None:
    alice = core.account("alice@example.com")
    for name in ["a:1", "a:2", "a:3", "b:1", "a"]:
        core.rest("PUT", f"/realtime/kv/{name}", name, token=alice.access)
    listed = core.rest("GET", "/realtime/kv?prefix=a:", token=alice.access).json
    assert listed == {"entries": [{"id": n, "data": n, "version": listed["entries"][i]["version"]}
                                  for i, n in enumerate(["a:1", "a:2", "a:3"])], "next": None}
    first = core.rest("GET", "/realtime/kv?prefix=a:&limit=2", token=alice.access).json
    assert [e["id"] for e in first["entries"]] == ["a:1", "a:2"] and first["next"] == "a:2"
    rest = core.rest("GET", f"/realtime/kv?prefix=a:&limit=2&after={first['next']}", token=alice.access).json
    assert [e["id"] for e in rest["entries"]] == ["a:3"] and rest["next"] is None
    for query in ["limit=0", "limit=1001", "limit=x", "prefix=" + "p" * 600]:
        assert error_of(core.rest("GET", f"/realtime/kv?{query}", token=alice.access)) == (400, "invalid_request")


def test_sizes_are_bounded(core: ResourcesCore) -> None:
    alice = core.account("alice@example.com")
    limit = core.resources().config.max_value_bytes
    assert core.rest("PUT", "/realtime/kv/big", raw=b'"' + b"x" * (limit - 2) + b'"', token=alice.access).status == 200
    too_big = core.rest("PUT", "/realtime/kv/big", raw=b'"' + b"x" * (limit - 1) + b'"', token=alice.access)
    assert error_of(too_big) == (413, "too_large")
    assert error_of(core.rest("PUT", "/realtime/kv/j", raw=b"{nope", token=alice.access)) == (400, "invalid_request")
    assert error_of(core.rest("PUT", "/realtime/kv/j", raw=b"1 2", token=alice.access)) == (400, "invalid_request")
    assert error_of(core.rest("PUT", "/realtime/kv/j", raw=b"", token=alice.access)) == (400, "invalid_request")
    assert error_of(core.rest("PUT", "/realtime/kv/j", raw=b"[" * 100_000, token=alice.access)) == (400, "invalid_request")
    # The transport's limit on bodies answers in this protocol's format too.
    response = core.board.error_response(core_request("/realtime/kv/x"), 413, "Request body too large")
    assert response.status == 413 and b'"code":"too_large"' in response.body


def core_request(path: str) -> Any:
    from satchel.protocol.http import HttpRequest

    return HttpRequest("PUT", path, [])


def test_live_config_is_read_and_written_by_id(core: ResourcesCore) -> None:
    alice = core.account("alice@example.com")
    put = core.rest("PUT", "/realtime/live-config/game", {"maxPlayers": 8}, token=alice.access)
    assert put.status == 200 and put.json["data"] == {"maxPlayers": 8}
    assert core.last_changes[0].space == "liveConfig"
    assert core.rest("GET", "/realtime/live-config/game", token=alice.access).json == put.json
    # kv and live config are apart.
    assert error_of(core.rest("GET", "/realtime/kv/game", token=alice.access)) == (404, "not_found")
    not_allowed = core.rest("DELETE", "/realtime/live-config/game", token=alice.access)
    assert error_of(not_allowed) == (405, "method_not_allowed") and not_allowed.header("allow") == "GET, PUT"
    assert error_of(core.rest("GET", "/realtime/live-config", token=alice.access)) == (404, "not_found")
    assert error_of(core.rest("POST", "/realtime/kv/x", 1, token=alice.access)) == (405, "method_not_allowed")
    assert error_of(core.rest("GET", "/realtime/elsewhere")) == (404, "not_found")
    assert error_of(core.rest("GET", "/realtime")) == (426, "upgrade_required")


def test_tokens(core: ResourcesCore) -> None:
    alice = core.account("alice@example.com")
    # No token: the public role, which the default rules allow nothing.
    assert error_of(core.rest("GET", "/realtime/kv/k")) == (403, "forbidden")
    assert error_of(core.rest("PUT", "/realtime/kv/k", 1)) == (403, "forbidden")
    assert error_of(core.rest("GET", "/realtime/kv")) == (403, "forbidden")
    # A bad token is no public role: 401.
    assert error_of(core.rest("GET", "/realtime/kv/k", token="forged")) == (401, "unauthorized")
    # Access tokens of /auth/login, static tokens, and ?access_token= all work.
    _, static = core.static_token(alice.id)
    assert core.rest("PUT", "/realtime/kv/k", 1, token=static).status == 200
    assert core.rest("GET", f"/realtime/kv/k?access_token={alice.access}").json["data"] == 1
    # A refresh token and a Backpack cookie are not Bearer tokens.
    assert error_of(core.rest("GET", "/realtime/kv/k", token=alice.refresh)) == (401, "unauthorized")
    assert error_of(core.rest("GET", "/realtime/kv/k", headers=[("cookie", alice.cookie)])) == (403, "forbidden")


def test_the_one_rule_set_governs_entries(core: ResourcesCore) -> None:
    core.set_rules({"version": 1, "roles": {
        "player": {"rules": [
            {"collection": "kvStore", "action": "read", "filter": {"organization": {"_eq": "acme"}}},
            {"collection": "kvStore", "action": ["create", "update"], "filter": {"id": {"_starts_with": "mine:"}}},
            {"collection": "liveConfig", "action": "read"},
        ]},
        "public": {"rules": [{"collection": "liveConfig", "action": "read"}]},
    }})
    admin = core.account("admin@example.com", role="admin")
    player = core.account("player@example.com", role="player")
    acme = ("acme", "")
    for scope in (acme, None):
        assert core.rest("PUT", "/realtime/kv/shared", "s", token=admin.access, scope=scope).status == 200
        assert core.rest("PUT", "/realtime/live-config/game", "g", token=admin.access, scope=scope).status == 200
    assert core.rest("GET", "/realtime/kv/shared", token=player.access, scope=acme).json["data"] == "s"
    # Outside acme the entry is hidden as if absent.
    assert error_of(core.rest("GET", "/realtime/kv/shared", token=player.access)) == (404, "not_found")
    assert core.rest("GET", "/realtime/kv", token=player.access).json["entries"] == []
    assert [e["id"] for e in core.rest("GET", "/realtime/kv", token=player.access, scope=acme).json["entries"]] == ["shared"]
    # Writes: only ids under mine:, no deletes.
    assert core.rest("PUT", "/realtime/kv/mine:1", 1, token=player.access, scope=acme).status == 200
    assert error_of(core.rest("PUT", "/realtime/kv/shared", 1, token=player.access, scope=acme)) == (403, "forbidden")
    assert error_of(core.rest("DELETE", "/realtime/kv/mine:1", token=player.access, scope=acme)) == (403, "forbidden")
    assert error_of(core.rest("PUT", "/realtime/live-config/game", 1, token=player.access)) == (403, "forbidden")
    # The public role may read live config now, and nothing else.
    assert core.rest("GET", "/realtime/live-config/game").json["data"] == "g"
    assert error_of(core.rest("GET", "/realtime/kv/shared")) == (403, "forbidden")


def test_a_writer_who_may_create_but_not_update_cannot_overwrite(core: ResourcesCore) -> None:
    # With both rules open a write needs no read first (OverwriteEntry); a
    # rule set where what is stored matters must still read it.
    core.set_rules({"version": 1, "roles": {"player": {"rules": [
        {"collection": "kvStore", "action": ["read", "create"]},
    ]}}})
    player = core.account("player@example.com", role="player")
    assert core.rest("PUT", "/realtime/kv/once", 1, token=player.access).status == 200
    assert error_of(core.rest("PUT", "/realtime/kv/once", 2, token=player.access)) == (403, "forbidden")
    assert core.rest("GET", "/realtime/kv/once", token=player.access).json["data"] == 1
    core.set_rules({"version": 1, "roles": {"player": {"rules": [
        {"collection": "kvStore", "action": ["read", "update"]},
    ]}}})
    assert error_of(core.rest("PUT", "/realtime/kv/new", 1, token=player.access)) == (403, "forbidden")
    assert core.rest("PUT", "/realtime/kv/once", 3, token=player.access).status == 200


def test_the_entry_names_are_reserved_for_record_collections(core: ResourcesCore) -> None:
    alice = core.account("alice@example.com")
    for name in ["kvStore", "liveConfig", "KVSTORE", "liveconfig"]:
        assert core.http("POST", f"/{name}", {"a": 1}, cookie=alice.cookie).status == 403
        assert core.http("POST", "/collections", {"collectionName": name}).status == 403
        assert core.api("POST", f"/items/{name}", {"a": 1}, token=alice.access).status == 403
    assert core.store._collections == {}


def test_status_reports_health_and_counts(core: ResourcesCore) -> None:
    alice = core.account("alice@example.com")
    assert core.rest("GET", "/realtime/status").json == {"status": "ok", "connections": 0, "subscriptions": 0}
    first = core.open(token=alice.access)
    second = core.open()
    core.subscribe(first, "kvStore", "a")
    core.subscribe(first, "kvStore", "b")
    core.subscribe(first, "kvStore", "b")  # again: still one
    core.subscribe(second, "liveConfig", "a")  # refused: the public role
    assert core.rest("GET", "/realtime/status").json == {"status": "ok", "connections": 2, "subscriptions": 2}
    core.subscribe(first, "kvStore", "a", action="unsubscribe")
    assert core.rest("GET", "/realtime/status").json["subscriptions"] == 1
    core.close(first)
    core.close(second)
    assert core.rest("GET", "/realtime/status").json == {"status": "ok", "connections": 0, "subscriptions": 0}
    assert error_of(core.rest("POST", "/realtime/status")) == (405, "method_not_allowed")
