"""The Directus REST API (``satchel.protocol.directus.rest``) as
``@directus/sdk``'s ``rest()`` and ``authentication('json')`` use it
(directus.md section 3), driven through the standard mount table on a
MemoryStore: sign-in, Bearer and static tokens, the items routes with their
envelope, query parameters and errors, the rules, and one data model with
Backpack."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from directus_rest_harness import PASSWORD, DirectusCore, errors, q
from satchel.protocol.directus import DirectusConfig, DirectusMount, ORIGIN_REST
from satchel.protocol.directus.rest import is_directus_path, query_params
from satchel.protocol.http import HttpRequest
from satchel.protocol.query import InvalidQuery
from satchel.protocol.tokens import authenticate, presented_token, revoke_static_token

HEX24 = re.compile(r"[0-9a-f]{24}\Z")
INVALID_CREDENTIALS = {"errors": [{"message": "Invalid user credentials.", "extensions": {"code": "INVALID_CREDENTIALS"}}]}
FORBIDDEN = {"errors": [{"message": "You don't have permission to access this.", "extensions": {"code": "FORBIDDEN"}}]}


@pytest.fixture
def core() -> DirectusCore:
    return DirectusCore()


# -- /auth ----------------------------------------------------------------------------


def test_login_answers_the_sdk_shape_on_the_shared_users(core: DirectusCore) -> None:
    ann = core.account("ann@example.com")
    answer = core.api("POST", "/auth/login", {"email": "ann@example.com", "password": PASSWORD, "mode": "json"})
    assert answer.status == 200
    assert answer.header("content-type").startswith("application/json")
    data = answer.json["data"]
    assert set(answer.json) == {"data"} and set(data) == {"access_token", "expires", "refresh_token"}
    assert data["expires"] == 15 * 60 * 1000 and data["expires"] > 30_000
    assert data["access_token"] != data["refresh_token"]
    me = core.api("GET", "/users/me", token=data["access_token"])
    assert me.status == 200 and me.json == {"data": {"id": ann.id, "email": "ann@example.com", "role": "authenticated"}}
    # The email compares without case; the SDK's otp is accepted (no second factor).
    again = core.api("POST", "/auth/login", {"email": "ANN@example.com", "password": PASSWORD, "otp": "123456"})
    assert again.status == 200


def test_an_account_made_through_asnity_logs_in_here(core: DirectusCore) -> None:
    signed_up = core.api("POST", "/api/user/auth/signup", {"id": "bo@example.com", "password": "password1", "nickname": "bo"})
    assert signed_up.status == 201, signed_up.json
    assert core.login("bo@example.com", "password1")["access_token"]
    # ...and Asnity's own access token is a Bearer here too.
    signin = core.api("POST", "/api/user/auth/signin", {"id": "bo@example.com", "password": "password1"})
    asnity_token = signin.json["result"]["accessToken"]
    assert core.api("GET", "/users/me", token=asnity_token).json["data"]["email"] == "bo@example.com"


@pytest.mark.parametrize("body", [
    {"email": "ann@example.com", "password": "wrong password"},
    {"email": "nobody@example.com", "password": PASSWORD},
    {"email": "ann@example.com", "password": "x" * 5000},
])
def test_wrong_credentials_are_401_invalid_credentials(core: DirectusCore, body: dict[str, Any]) -> None:
    core.account("ann@example.com")
    answer = core.api("POST", "/auth/login", {**body, "mode": "json"})
    assert answer.status == 401 and answer.json == INVALID_CREDENTIALS


@pytest.mark.parametrize("body,raw", [
    ({"password": PASSWORD}, None),
    ({"email": "ann@example.com"}, None),
    ({"email": 5, "password": PASSWORD}, None),
    ({"email": "ann@example.com", "password": PASSWORD, "otp": 7}, None),
    ({"email": "ann@example.com", "password": PASSWORD, "mode": "cookie"}, None),
    (["ann@example.com"], None),
    (None, b"{not json"),
    (None, b""),
])
def test_malformed_logins_are_400_invalid_payload(core: DirectusCore, body: Any, raw: bytes | None) -> None:
    core.account("ann@example.com")
    answer = core.api("POST", "/auth/login", body, raw=raw)
    assert errors(answer) == (400, "INVALID_PAYLOAD")
    assert answer.json["errors"][0]["message"].startswith("Invalid payload. ")


def test_refresh_rotates_and_refresh_tokens_are_never_access_tokens(core: DirectusCore) -> None:
    ann = core.account("ann@example.com")
    # A refresh token is no Bearer, and an access token refreshes nothing.
    assert errors(core.api("GET", "/users/me", token=ann.refresh)) == (401, "INVALID_CREDENTIALS")
    assert core.api("POST", "/auth/refresh", {"mode": "json", "refresh_token": ann.access}).json == INVALID_CREDENTIALS
    refreshed = core.api("POST", "/auth/refresh", {"mode": "json", "refresh_token": ann.refresh})
    assert refreshed.status == 200
    data = refreshed.json["data"]
    assert set(data) == {"access_token", "expires", "refresh_token"} and data["expires"] > 30_000
    assert data["refresh_token"] != ann.refresh and data["access_token"] != ann.access
    assert core.api("GET", "/users/me", token=data["access_token"]).status == 200
    # The old refresh token was rotated away.
    assert errors(core.api("POST", "/auth/refresh", {"refresh_token": ann.refresh})) == (401, "INVALID_CREDENTIALS")
    assert errors(core.api("POST", "/auth/refresh", {"mode": "json"})) == (400, "INVALID_PAYLOAD")
    assert errors(core.api("POST", "/auth/refresh", {"refresh_token": 5})) == (400, "INVALID_PAYLOAD")


def test_two_refreshes_racing_with_one_token_get_one_pair_of_tokens(core: DirectusCore) -> None:
    """Both read the live refresh token before either revokes it; only the
    one whose revocation finds it is answered (else one token forks in two)."""
    from satchel.protocol.directus import auth
    from satchel.protocol.directus.errors import DirectusError
    from satchel.protocol.operations import DeleteSession

    ann = core.account("ann@example.com")
    first = auth.refresh(ann.refresh, core.directus, core.env)
    operation = next(first)
    while not isinstance(operation, DeleteSession):
        operation = first.send(core.execute(operation))
    tokens = core.run(auth.refresh(ann.refresh, core.directus, core.env))  # the other one, start to end
    assert core.api("GET", "/users/me", token=tokens.access_token).status == 200
    with pytest.raises(DirectusError) as refused:
        while True:
            operation = first.send(core.execute(operation))
    assert refused.value.code == "INVALID_CREDENTIALS"


def test_logout_revokes_the_refresh_token_and_the_bearer(core: DirectusCore) -> None:
    ann = core.account("ann@example.com")
    out = core.api("POST", "/auth/logout", {"mode": "json", "refresh_token": ann.refresh}, token=ann.access)
    assert out.status == 204 and out.json is None
    assert errors(core.api("POST", "/auth/refresh", {"refresh_token": ann.refresh})) == (401, "INVALID_CREDENTIALS")
    assert errors(core.api("GET", "/users/me", token=ann.access)) == (401, "INVALID_CREDENTIALS")
    # Logging out twice, or with an unknown token, is no error (as in Directus).
    assert core.api("POST", "/auth/logout", {"mode": "json", "refresh_token": ann.refresh}).status == 204
    assert errors(core.api("POST", "/auth/logout", {"mode": "json"})) == (400, "INVALID_PAYLOAD")


def test_tokens_expire_by_the_configured_lifetimes() -> None:
    core = DirectusCore(DirectusConfig(access_token_ttl_ms=60_000, refresh_token_ttl_ms=120_000))
    ann = core.account("ann@example.com")
    assert core.api("POST", "/auth/login", {"email": ann.email, "password": PASSWORD}).json["data"]["expires"] == 60_000
    core.clock.advance(59_999)
    assert core.api("GET", "/users/me", token=ann.access).status == 200
    core.clock.advance(1)
    assert errors(core.api("GET", "/users/me", token=ann.access)) == (401, "INVALID_CREDENTIALS")
    assert core.api("POST", "/auth/refresh", {"refresh_token": ann.refresh}).status == 200
    later = core.login(ann.email)
    core.clock.advance(120_000)
    assert errors(core.api("POST", "/auth/refresh", {"refresh_token": later["refresh_token"]})) == (401, "INVALID_CREDENTIALS")


def test_lifetimes_the_sdk_cannot_use_are_refused() -> None:
    with pytest.raises(ValueError):
        DirectusConfig(access_token_ttl_ms=30_000)
    with pytest.raises(ValueError):
        DirectusConfig(max_batch=0)


def test_users_me_needs_a_bearer_and_never_shows_the_password(core: DirectusCore) -> None:
    ann = core.account("ann@example.com")
    me = core.api("GET", "/users/me", token=ann.access)
    assert "password" not in me.body.decode() and "fake$" not in me.body.decode()
    assert core.api("GET", "/users/me?fields=email", token=ann.access).json == {"data": {"email": ann.email}}
    assert core.api("GET", "/users/me?fields=*", token=ann.access).json == me.json
    assert core.api("GET", "/users/me").json == INVALID_CREDENTIALS
    assert errors(core.api("GET", "/users/me", token="not-a-token")) == (401, "INVALID_CREDENTIALS")
    assert errors(core.api("PATCH", "/users/me", {"email": "x"}, token=ann.access)) == (404, "ROUTE_NOT_FOUND")


# -- Bearer and static tokens -------------------------------------------------------------


def test_a_static_token_works_in_the_header_and_both_query_parameters(core: DirectusCore) -> None:
    ann = core.account("ann@example.com")
    token_id, token = core.static_token(ann.id)
    assert re.fullmatch(r"[0-9a-f]{16}", token_id) and token_id not in token
    assert core.api("GET", "/users/me", token=token).json["data"]["id"] == ann.id
    assert core.api("GET", f"/users/me?access_token={q(token)}").json["data"]["id"] == ann.id
    assert core.api("GET", f"/users/me?api_token={q(token)}").json["data"]["id"] == ann.id
    assert core.api("POST", f"/items/notes?access_token={q(token)}", {"text": "hi"}).status == 200
    # It never expires...
    core.clock.advance(10 * 365 * 86_400_000)
    assert core.api("GET", "/items/notes", token=token).status == 200
    # ...until it is revoked.
    assert core.run(revoke_static_token(ann.id, token_id)) is True
    assert errors(core.api("GET", "/items/notes", token=token)) == (401, "INVALID_CREDENTIALS")
    assert errors(core.api("GET", f"/items/notes?api_token={q(token)}")) == (401, "INVALID_CREDENTIALS")
    assert core.run(revoke_static_token(ann.id, token_id)) is False


def test_authenticate_is_the_one_answer_for_every_bearer(core: DirectusCore) -> None:
    ann = core.account("ann@example.com")
    _, static = core.static_token(ann.id)
    cookie_token = ann.cookie.split("=", 1)[1]
    for token, kind in [(ann.access, "access"), (static, "static")]:
        for given in (token, f"Bearer {token}", HttpRequest("GET", "/x", [("authorization", f"Bearer {token}")])):
            bearer = core.run(authenticate(given, core.env))
            assert bearer is not None and bearer.user.id == ann.id and bearer.kind == kind
            assert bearer.accountability.user == ann.id and bearer.accountability.role == "authenticated"
            assert (bearer.expires_ms is None) == (kind == "static")
    for refused in (ann.refresh, cookie_token, "nope", "", None, "Bearer", "Basic abc def"):
        assert core.run(authenticate(refused, core.env)) is None
    # The header first, then ?access_token=, then ?api_token=; another scheme presents nothing.
    both = HttpRequest("GET", "/x?api_token=b&access_token=a", [("authorization", "Bearer h")])
    assert presented_token(both) == "h"
    assert presented_token(HttpRequest("GET", "/x?api_token=b&access_token=a", [("authorization", "key K")])) == "a"
    assert presented_token(HttpRequest("GET", "/x?api_token=b&access_token=", [])) == "b"
    assert presented_token(HttpRequest("GET", "/x", [])) is None


def test_a_bad_token_is_401_not_the_public_role(core: DirectusCore) -> None:
    core.set_rules({"roles": {"public": {"rules": [{"collection": "open", "action": "read"}]}}})
    assert core.api("GET", "/items/open").status == 200
    assert core.api("GET", "/items/open", token="forged").json == INVALID_CREDENTIALS
    assert core.api("GET", "/items/open?access_token=forged").json == INVALID_CREDENTIALS


def test_a_role_change_applies_to_the_next_request(core: DirectusCore) -> None:
    core.set_rules({"roles": {"reader": {"rules": [{"collection": "*", "action": "read"}]}}})
    ann = core.account("ann@example.com")
    assert core.api("POST", "/items/notes", {"a": 1}, token=ann.access).status == 200
    core.run(_set_role(ann.id, "reader"))
    assert errors(core.api("POST", "/items/notes", {"a": 1}, token=ann.access)) == (403, "FORBIDDEN")
    assert core.api("GET", "/users/me", token=ann.access).json["data"]["role"] == "reader"


def _set_role(user_id: str, role: str) -> Any:
    from satchel.protocol.operations import SetUserRole

    return (yield SetUserRole(user_id, role))


# -- /items: the envelope, the id mapping, every route --------------------------------


def test_items_crud_in_the_data_envelope_with_id_for_underscore_id(core: DirectusCore) -> None:
    ann = core.account("ann@example.com")
    created = core.api("POST", "/items/articles", {"title": "hello", "n": 1, "id": "ignored", "_id": "ignored"},
                       token=ann.access)
    assert created.status == 200 and set(created.json) == {"data"}
    item = created.json["data"]
    assert HEX24.match(item["id"]) and "_id" not in item
    assert list(item) == ["id", "title", "n", "createdAt", "updatedAt", "__v"]
    key = item["id"]
    assert core.api("GET", f"/items/articles/{key}", token=ann.access).json == {"data": item}
    patched = core.api("PATCH", f"/items/articles/{key}", {"title": "edited", "n": None, "tags": ["a"]}, token=ann.access)
    assert patched.status == 200
    assert {k: v for k, v in patched.json["data"].items() if k not in ("createdAt", "updatedAt", "__v")} == \
        {"id": key, "title": "edited", "tags": ["a"]}  # null removes the field, as Backpack's PATCH
    listed = core.api("GET", "/items/articles", token=ann.access)
    assert listed.json == {"data": [patched.json["data"]]}
    deleted = core.api("DELETE", f"/items/articles/{key}", token=ann.access)
    assert deleted.status == 204 and deleted.body == b""
    assert core.api("GET", f"/items/articles/{key}", token=ann.access).json == FORBIDDEN
    assert core.api("GET", "/items/articles", token=ann.access).json == {"data": []}


def test_a_collection_with_no_records_is_empty_not_missing(core: DirectusCore) -> None:
    ann = core.account("ann@example.com")
    assert core.api("GET", "/items/never-written", token=ann.access).json == {"data": []}


@pytest.mark.parametrize("key", ["5e9f2fc00000000000000099", "not-an-id", "5E9F2FC00000000000000001", "7"])
def test_a_missing_item_is_forbidden_as_in_directus(core: DirectusCore, key: str) -> None:
    ann = core.account("ann@example.com")
    core.api("POST", "/items/articles", {"title": "x"}, token=ann.access)
    for method, body in [("GET", None), ("PATCH", {"title": "y"}), ("DELETE", None)]:
        assert core.api(method, f"/items/articles/{key}", body, token=ann.access).json == FORBIDDEN, method


@pytest.mark.parametrize("collection", ["users", "Users", "uploads", "sessions", "_asnity.chats", "_secret",
                                        "directus_users", "DIRECTUS_roles", "bad%20name", "a" * 65])
def test_collections_that_may_not_be_one_are_forbidden(core: DirectusCore, collection: str) -> None:
    ann = core.account("ann@example.com")
    for method, target, body in [("GET", f"/items/{collection}", None), ("POST", f"/items/{collection}", {"a": 1}),
                                 ("GET", f"/items/{collection}/5e9f2fc00000000000000001", None),
                                 ("DELETE", f"/items/{collection}", ["5e9f2fc00000000000000001"])]:
        assert core.api(method, target, body, token=ann.access).json == FORBIDDEN, (method, target)
    assert core.last_changes == []


def test_batch_creates_updates_and_deletes_as_the_sdk_sends_them(core: DirectusCore) -> None:
    ann = core.account("ann@example.com")
    # createItems: an array body.
    created = core.api("POST", "/items/todo", [{"t": "a", "n": 1}, {"t": "b", "n": 2}, {"t": "c", "n": 3}],
                       token=ann.access)
    assert created.status == 200
    keys = [item["id"] for item in created.json["data"]]
    assert [item["t"] for item in created.json["data"]] == ["a", "b", "c"] and len(set(keys)) == 3
    assert len(core.last_changes) == 3 and {c.kind for c in core.last_changes} == {"create"}
    # updateItems: {keys, data}.
    updated = core.api("PATCH", "/items/todo?fields=id,done", {"keys": keys[:2], "data": {"done": True}}, token=ann.access)
    assert updated.json == {"data": [{"id": keys[0], "done": True}, {"id": keys[1], "done": True}]}
    # updateItemsBatch: an array of items with their ids.
    batch = core.api("PATCH", "/items/todo?fields=id,t", [{"id": keys[2], "t": "C"}, {"id": keys[0], "t": "A"}],
                     token=ann.access)
    assert batch.json == {"data": [{"id": keys[2], "t": "C"}, {"id": keys[0], "t": "A"}]}
    # An update by query.
    by_query = core.api("PATCH", "/items/todo?fields=id", {"query": {"filter": {"n": {"_gte": 2}}}, "data": {"late": 1}},
                        token=ann.access)
    assert by_query.json == {"data": [{"id": keys[1]}, {"id": keys[2]}]}
    # deleteItems: {keys} (SDK v11+), a bare array (older clients), and a query.
    assert core.api("DELETE", "/items/todo", {"keys": [keys[0]]}, token=ann.access).status == 204
    assert core.api("DELETE", "/items/todo", {"query": {"filter": {"late": {"_eq": 1}}, "limit": 1}},
                    token=ann.access).status == 204
    left = core.api("GET", "/items/todo?fields=id", token=ann.access).json["data"]
    assert left == [{"id": keys[2]}]
    assert core.api("DELETE", "/items/todo", [keys[2]], token=ann.access).status == 204
    assert core.api("GET", "/items/todo", token=ann.access).json == {"data": []}


@pytest.mark.parametrize("method,body", [
    ("POST", "a string"),
    ("POST", [1, 2]),
    ("PATCH", {"title": "no keys"}),
    ("PATCH", {"keys": ["5e9f2fc00000000000000001"]}),
    ("PATCH", {"keys": "5e9f2fc00000000000000001", "data": {}}),
    ("PATCH", [{"t": "no id"}]),
    ("PATCH", [{"id": "5e9f2fc00000000000000001"}, {"id": "5e9f2fc00000000000000001"}]),
    ("PATCH", {"keys": [True], "data": {}}),
    ("PATCH", {"keys": ["5e9f2fc00000000000000001"], "data": "x"}),
    ("DELETE", None),
    ("DELETE", {"nothing": 1}),
    ("DELETE", "5e9f2fc00000000000000001"),
])
def test_batch_bodies_of_the_wrong_shape_are_invalid_payload(core: DirectusCore, method: str, body: Any) -> None:
    ann = core.account("ann@example.com")
    answer = core.api(method, "/items/todo", body, token=ann.access)
    assert errors(answer) == (400, "INVALID_PAYLOAD"), answer.json
    assert core.last_changes == []


def test_batches_are_bounded() -> None:
    core = DirectusCore(DirectusConfig(max_batch=3))
    ann = core.account("ann@example.com")
    assert errors(core.api("POST", "/items/t", [{}] * 4, token=ann.access)) == (400, "INVALID_PAYLOAD")
    assert core.api("POST", "/items/t", [{}] * 3, token=ann.access).status == 200
    assert core.api("POST", "/items/t", [{}] * 3, token=ann.access).status == 200
    assert errors(core.api("DELETE", "/items/t", {"query": {}}, token=ann.access)) == (400, "INVALID_PAYLOAD")
    assert errors(core.api("DELETE", "/items/t", ["5e9f2fc00000000000000001"] * 2 + ["a", "b"],
                           token=ann.access)) == (400, "INVALID_PAYLOAD")
    assert len(core.api("GET", "/items/t?limit=-1", token=ann.access).json["data"]) == 6


def test_a_batch_naming_a_missing_item_writes_nothing(core: DirectusCore) -> None:
    ann = core.account("ann@example.com")
    key = core.api("POST", "/items/t", {"v": 1}, token=ann.access).json["data"]["id"]
    missing = "5e9f2fc00000000000000abc"
    assert core.api("PATCH", "/items/t", {"keys": [key, missing], "data": {"v": 2}}, token=ann.access).json == FORBIDDEN
    assert core.api("DELETE", "/items/t", [key, missing], token=ann.access).json == FORBIDDEN
    assert core.api("GET", f"/items/t/{key}?fields=v", token=ann.access).json == {"data": {"v": 1}}


@pytest.mark.parametrize("method,target", [
    ("PUT", "/items/t/5e9f2fc00000000000000001"),
    ("POST", "/items/t/5e9f2fc00000000000000001"),
    ("PUT", "/items/t"),
    ("GET", "/items/t/5e9f2fc00000000000000001/more"),
    ("GET", "/auth/login"),
    ("POST", "/users/me"),
])
def test_unknown_routes_and_methods_are_route_not_found(core: DirectusCore, method: str, target: str) -> None:
    ann = core.account("ann@example.com")
    answer = core.api(method, target, {}, token=ann.access)
    assert errors(answer) == (404, "ROUTE_NOT_FOUND")
    assert answer.json["errors"][0]["message"] == f"Route {target} doesn't exist."


def test_nobody_signed_in_may_do_nothing_under_the_default_rules(core: DirectusCore) -> None:
    ann = core.account("ann@example.com")
    key = core.api("POST", "/items/t", {"v": 1}, token=ann.access).json["data"]["id"]
    for method, target, body in [("GET", "/items/t", None), ("POST", "/items/t", {"v": 2}),
                                 ("GET", f"/items/t/{key}", None), ("PATCH", f"/items/t/{key}", {"v": 3}),
                                 ("DELETE", f"/items/t/{key}", None)]:
        assert core.api(method, target, body).json == FORBIDDEN, (method, target)


def test_paths_directus_claims_and_those_it_leaves_to_backpack(core: DirectusCore) -> None:
    for path, claimed in [("/items/articles", True), ("/items/articles/5e9f2fc00000000000000001", True),
                          ("/items/a/b/c", True), ("/items/5e9f2fc00000000000000001", False), ("/items", False),
                          ("/auth/login", True), ("/auth/refresh", True), ("/auth/logout", True),
                          ("/auth/5e9f2fc00000000000000001", False), ("/auth", False), ("/users/me", True),
                          ("/users", False), ("/users/me/x", False), ("/articles", False), ("/", False)]:
        assert is_directus_path(path) is claimed, path
    # A Backpack collection named "items" is still Backpack's.
    ann = core.account("ann@example.com")
    made = core.http("POST", "/items", {"thing": 1}, cookie=ann.cookie)
    assert made.status == 200 and HEX24.match(made.json["_id"])
    assert core.http("GET", f"/items/{made.json['_id']}", cookie=ann.cookie).json == made.json


def test_cors_preflights_and_echoes_the_origin(core: DirectusCore) -> None:
    origin = [("origin", "http://app.example")]
    preflight = core.api("OPTIONS", "/items/t", headers=[*origin, ("access-control-request-headers", "authorization")])
    assert preflight.status == 204
    assert preflight.header("access-control-allow-origin") == "http://app.example"
    assert "PATCH" in preflight.header("access-control-allow-methods")
    assert preflight.header("access-control-allow-headers") == "authorization"
    assert core.api("GET", "/items/t", headers=origin).header("access-control-allow-origin") == "http://app.example"
    assert core.api("GET", "/items/t").header("access-control-allow-origin") is None


def test_transport_errors_on_directus_paths_keep_the_shape(core: DirectusCore) -> None:
    response = DirectusMount().error_response(413, "Request body too large")
    assert response.status == 413
    assert json.loads(response.body) == {"errors": [{"message": "Request body too large",
                                                     "extensions": {"code": "CONTENT_TOO_LARGE"}}]}
    answer = core.board.error_response(HttpRequest("POST", "/items/t", []), 400, "bad")
    assert json.loads(answer.body) == {"errors": [{"message": "bad", "extensions": {"code": "INVALID_PAYLOAD"}}]}


# -- query parameters -------------------------------------------------------------------


@pytest.fixture
def shelf(core: DirectusCore) -> tuple[DirectusCore, str, list[str]]:
    ann = core.account("ann@example.com")
    books = [
        {"title": "Alpha", "year": 1999, "tags": ["old"], "author": {"name": "Ann"}},
        {"title": "beta", "year": 2005, "tags": [], "author": {"name": "Bo"}},
        {"title": "Gamma", "year": 2020, "author": {"name": "Cy"}},
        {"title": "delta", "year": 2020, "tags": ["new"]},
    ]
    created = core.api("POST", "/items/books", books, token=ann.access).json["data"]
    return core, ann.access, [item["id"] for item in created]


def titles(answer: Any) -> list[str]:
    assert answer.status == 200, answer.json
    return [item.get("title") for item in answer.json["data"]]


def test_rest_style_query_strings(shelf: tuple[DirectusCore, str, list[str]]) -> None:
    core, token, keys = shelf
    get = lambda query: core.api("GET", f"/items/books?{query}", token=token)  # noqa: E731
    assert get("fields=id,title").json["data"][0] == {"id": keys[0], "title": "Alpha"}
    assert get("fields[]=title&fields[]=id").json["data"][0] == {"id": keys[0], "title": "Alpha"}
    assert get("fields=title&fields=year").json["data"][0] == {"title": "Alpha", "year": 1999}
    assert get("fields=author.name&limit=1").json["data"] == [{"author": {"name": "Ann"}}]
    assert titles(get(f"filter={q({'year': {'_eq': 2020}})}")) == ["Gamma", "delta"]
    assert titles(get("filter[year][_gte]=2005&filter[year][_lt]=2020")) == []  # bracket values are strings
    assert titles(get("filter[title][_icontains]=ta")) == ["beta", "delta"]
    assert titles(get(f"filter={q({'_or': [{'title': {'_eq': 'Alpha'}}, {'tags': {'_contains': 'new'}}]})}")) == \
        ["Alpha", "delta"]
    assert titles(get("filter[_or][0][title][_eq]=Alpha&filter[_or][1][title][_eq]=beta")) == ["Alpha", "beta"]
    assert titles(get(f"filter={q({'id': {'_in': keys[1:3]}})}")) == ["beta", "Gamma"]
    assert titles(get("sort=-year,title")) == ["Gamma", "delta", "beta", "Alpha"]
    assert titles(get("sort[]=-id")) == ["delta", "Gamma", "beta", "Alpha"]
    assert titles(get("sort=title&limit=2")) == ["Alpha", "Gamma"]
    assert titles(get("limit=2&offset=1")) == ["beta", "Gamma"]
    assert titles(get("limit=2&page=2")) == ["Gamma", "delta"]
    assert titles(get("search=ALP")) == ["Alpha"]
    counted = get(f"meta=total_count,filter_count&filter={q({'year': 2020})}&limit=1")
    assert counted.json["meta"] == {"total_count": 4, "filter_count": 2} and len(counted.json["data"]) == 1
    assert get("meta=*").json["meta"] == {"filter_count": 4, "total_count": 4}
    assert "meta" not in get("limit=1").json
    # Parameters that are not Directus's (the token, a cache buster) are ignored.
    assert len(get(f"access_token={token}&_=123&unknown=1").json["data"]) == 4


def test_the_default_page_is_query_limit_default() -> None:
    core = DirectusCore(DirectusConfig(query_limit_default=3))
    ann = core.account("ann@example.com")
    core.api("POST", "/items/n", [{"i": i} for i in range(5)], token=ann.access)
    assert len(core.api("GET", "/items/n", token=ann.access).json["data"]) == 3
    assert len(core.api("GET", "/items/n?limit=-1", token=ann.access).json["data"]) == 5
    assert len(core.api("GET", "/items/n?limit=4", token=ann.access).json["data"]) == 4


@pytest.mark.parametrize("query", [
    "filter={not json",
    f"filter={q({'year': {'_regex': 'x'}})}",
    f"filter={q({'year': {'_nope': 1}})}",
    "limit=abc",
    "limit=-2",
    "offset=-1",
    "page=0",
    "sort=?",
    "meta=everything",
    f"deep={q({'author': {'_limit': 1}})}",
    "aggregate[count]=*",
    "export=json",
    "filter=x&filter[a]=1",
    "limit=1&limit=2",
    "filter" + "[a]" * 12 + "=1",
    f"filter={q({'a': {'b': {'c': {'d': {'e': {'f': {'g': {'h': {'i': {'j': {'_eq': 1}}}}}}}}}}})}",
])
def test_queries_satchel_cannot_run_are_invalid_query(shelf: tuple[DirectusCore, str, list[str]], query: str) -> None:
    core, token, _ = shelf
    answer = core.api("GET", f"/items/books?{query}", token=token)
    assert errors(answer) == (400, "INVALID_QUERY"), answer.json
    assert answer.json["errors"][0]["message"].startswith("Invalid query.")


def test_query_params_reads_qs_brackets() -> None:
    assert query_params("fields[]=a&fields[]=b&filter[x][_in][]=1&filter[x][_in][]=2&limit=3") == \
        {"fields": ["a", "b"], "filter": {"x": {"_in": ["1", "2"]}}, "limit": "3"}
    assert query_params("filter[_and][0][a][_eq]=1&filter[_and][1][b][_eq]=2") == \
        {"filter": {"_and": [{"a": {"_eq": "1"}}, {"b": {"_eq": "2"}}]}}
    assert query_params("access_token=t&api_token=u&x[y]=1") == {}
    with pytest.raises(InvalidQuery):
        query_params("filter[a]=1&filter[a]=2")
    with pytest.raises(InvalidQuery):
        query_params("filter[a=1")
    with pytest.raises(InvalidQuery):
        query_params("&".join(f"p{n}=1" for n in range(1001)))


# -- the rules ---------------------------------------------------------------------------

OWN_RECORDS = {
    "roles": {
        "member": {"rules": [
            {"collection": "notes", "action": "read", "filter": {"userId": {"_eq": "$CURRENT_USER"}},
             "fields": ["title", "userId", "createdAt"]},
            {"collection": "notes", "action": "create", "filter": {"userId": {"_eq": "$CURRENT_USER"}},
             "fields": ["title", "userId", "secret"]},
            {"collection": "notes", "action": "update", "filter": {"userId": {"_eq": "$CURRENT_USER"}},
             "fields": ["title"]},
            {"collection": "drop-box", "action": "create"},
        ]},
    },
}


@pytest.fixture
def ruled(core: DirectusCore) -> tuple[DirectusCore, Any, Any, list[str]]:
    core.set_rules(OWN_RECORDS)
    ann = core.account("ann@example.com", role="member")
    bo = core.account("bo@example.com", role="member")
    keys = []
    for who, title in [(ann, "ann 1"), (bo, "bo 1"), (ann, "ann 2")]:
        made = core.api("POST", "/items/notes", {"title": title, "userId": who.id, "secret": f"s-{title}"}, token=who.access)
        assert made.status == 200, made.json
        keys.append(made.json["data"]["id"])
    return core, ann, bo, keys


def test_a_role_reads_only_its_own_records_and_only_its_fields(ruled: Any) -> None:
    core, ann, bo, keys = ruled
    listed = core.api("GET", "/items/notes?meta=total_count", token=ann.access)
    assert [item["title"] for item in listed.json["data"]] == ["ann 1", "ann 2"]
    assert listed.json["meta"] == {"total_count": 2}
    for item in listed.json["data"]:
        assert set(item) == {"id", "title", "userId", "createdAt"}  # no secret, no updatedAt, no __v
    assert core.api("GET", f"/items/notes/{keys[0]}", token=ann.access).json["data"]["title"] == "ann 1"
    assert core.api("GET", f"/items/notes/{keys[1]}", token=ann.access).json == FORBIDDEN
    # Naming a field it may not read is refused (a filter would reveal it).
    for query in ("fields=secret", f"filter={q({'secret': {'_eq': 's-ann 1'}})}", "sort=secret",
                  "filter[__v][_eq]=0"):
        answer = core.api("GET", f"/items/notes?{query}", token=ann.access)
        assert errors(answer) == (403, "FORBIDDEN"), query
    assert errors(core.api("GET", f"/items/notes/{keys[0]}?fields=secret", token=ann.access)) == (403, "FORBIDDEN")
    # Other collections: nothing.
    assert core.api("GET", "/items/other", token=ann.access).json == FORBIDDEN


def test_writes_the_rules_refuse_are_403_and_change_nothing(ruled: Any) -> None:
    core, ann, bo, keys = ruled
    for method, target, body in [
        ("POST", "/items/notes", {"title": "forged", "userId": bo.id}),          # someone else's record
        ("POST", "/items/notes", {"title": "extra", "userId": ann.id, "pinned": True}),  # a field it may not set
        ("POST", "/items/notes", [{"title": "ok", "userId": ann.id}, {"title": "bad", "userId": bo.id}]),
        ("PATCH", f"/items/notes/{keys[1]}", {"title": "mine now"}),               # another's record
        ("PATCH", f"/items/notes/{keys[0]}", {"userId": bo.id}),                   # giving it away
        ("PATCH", f"/items/notes/{keys[0]}", {"secret": "changed"}),               # a field it may not update
        ("PATCH", "/items/notes", {"keys": [keys[0], keys[1]], "data": {"title": "both"}}),
        ("DELETE", f"/items/notes/{keys[0]}", None),                               # no delete rule
        ("DELETE", "/items/notes", [keys[0]]),
        ("POST", "/items/other", {"title": "x"}),
    ]:
        answer = core.api(method, target, body, token=ann.access)
        assert errors(answer) == (403, "FORBIDDEN"), (method, target, body, answer.json)
        assert core.last_changes == []
    # What is stored is what was there.
    stored = core.api("GET", "/items/notes?fields=title&limit=-1", token=bo.access).json["data"]
    assert stored == [{"title": "bo 1"}]
    assert [i["title"] for i in core.api("GET", "/items/notes", token=ann.access).json["data"]] == ["ann 1", "ann 2"]


def test_allowed_writes_answer_what_the_writer_may_read(ruled: Any) -> None:
    core, ann, bo, keys = ruled
    patched = core.api("PATCH", f"/items/notes/{keys[0]}", {"title": "ann 1b"}, token=ann.access)
    assert patched.status == 200 and set(patched.json["data"]) == {"id", "title", "userId", "createdAt"}
    assert patched.json["data"]["title"] == "ann 1b"
    # A write whose result the writer may not read answers 204 with no body, as Directus does.
    dropped = core.api("POST", "/items/drop-box", {"letter": "hi"}, token=ann.access)
    assert dropped.status == 204 and dropped.body == b"" and len(core.last_changes) == 1
    assert core.api("GET", "/items/drop-box", token=ann.access).json == FORBIDDEN


def test_a_query_may_use_the_current_user(ruled: Any) -> None:
    core, ann, bo, keys = ruled
    mine = core.api("GET", f"/items/notes?filter={q({'userId': {'_eq': '$CURRENT_USER'}})}", token=ann.access)
    assert len(mine.json["data"]) == 2
    by_field = core.api("GET", f"/items/notes?filter={q({'userId': {'_eq': '$CURRENT_USER.id'}})}", token=ann.access)
    assert by_field.json == mine.json


# -- one data model --------------------------------------------------------------------


def test_an_item_created_here_is_a_backpack_record_and_reaches_backpack_websockets(core: DirectusCore) -> None:
    ann = core.account("ann@example.com")
    socket = core.connect(ann.cookie)
    core.take(socket)
    created = core.api("POST", "/items/messages", {"text": "from directus"}, token=ann.access).json["data"]
    [change] = core.last_changes
    assert change.origin == ORIGIN_REST and change.user_id == ann.id and change.kind == "create"
    record = core.http("GET", f"/messages/{created['id']}", cookie=ann.cookie).json
    assert record["_id"] == created["id"] and record["text"] == "from directus"
    assert {k: v for k, v in record.items() if k != "_id"} == {k: v for k, v in created.items() if k != "id"}
    [delivered] = core.take(socket)
    assert delivered["action"] == "create" and delivered["collection"] == "messages"
    assert delivered["response"] == record
    core.api("PATCH", f"/items/messages/{created['id']}", {"text": "edited"}, token=ann.access)
    [patched] = core.take(socket)
    assert patched["action"] == "patch" and patched["response"]["text"] == "edited"
    core.api("DELETE", f"/items/messages/{created['id']}", token=ann.access)
    [deleted] = core.take(socket)
    assert deleted["action"] == "delete" and deleted["response"]["_id"] == created["id"]
    assert core.http("GET", f"/messages/{created['id']}", cookie=ann.cookie).status == 404


def test_a_backpack_record_is_a_directus_item(core: DirectusCore) -> None:
    ann = core.account("ann@example.com")
    record = core.http("POST", "/messages", {"text": "from backpack", "id": 42}, cookie=ann.cookie).json
    item = core.api("GET", f"/items/messages/{record['_id']}", token=ann.access).json["data"]
    # _id is the id; a stored field named "id" is shadowed by the key.
    assert item == {"id": record["_id"], "text": "from backpack", "createdAt": record["createdAt"],
                    "updatedAt": record["updatedAt"], "__v": 0}
    assert core.api("GET", f"/items/messages?filter={q({'id': {'_eq': record['_id']}})}&fields=id",
                    token=ann.access).json == {"data": [{"id": record["_id"]}]}
    core.http("PATCH", f"/messages/{record['_id']}", {"text": "patched by backpack"}, cookie=ann.cookie)
    assert core.api("GET", f"/items/messages/{record['_id']}?fields=text", token=ann.access).json == \
        {"data": {"text": "patched by backpack"}}
    core.api("PATCH", f"/items/messages/{record['_id']}", {"more": True}, token=ann.access)
    after = core.http("GET", f"/messages/{record['_id']}", cookie=ann.cookie).json
    assert after["more"] is True and after["id"] == 42  # Backpack's own field is untouched
