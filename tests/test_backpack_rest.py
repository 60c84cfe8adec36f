"""Backpack's REST API, driven through the pure core (seed 000, BRIEF section 1)."""

from __future__ import annotations

import pytest

from core_harness import API_KEY, Core

OBJECT_ID = "5e9f2fc00fb8899611d642a4"


@pytest.fixture
def core() -> Core:
    return Core()


# -- the API key and CORS ---------------------------------------------------


@pytest.mark.parametrize(
    "authorization",
    [None, "key wrong", "key", "", f"key {API_KEY}x", f"{API_KEY}extra"],
)
def test_a_wrong_or_missing_api_key_answers_401(core: Core, authorization: str | None) -> None:
    headers = [("authorization", authorization)] if authorization is not None else []
    response = core.http("GET", "/collections", key=None, headers=headers)
    assert (response.status, response.json) == (401, {"message": "Check your auth tokens"})


@pytest.mark.parametrize("word", ["key", "Bearer", "whatever"])
def test_the_word_before_the_key_is_ignored(core: Core, word: str) -> None:
    response = core.http("GET", "/collections", key=None, headers=[("authorization", f"{word} {API_KEY}")])
    assert (response.status, response.json) == (200, [])


def test_preflight_is_answered_before_the_key_check_and_echoes_the_origin(core: Core) -> None:
    response = core.http(
        "OPTIONS",
        "/messages",
        key=None,
        headers=[
            ("origin", "http://localhost:8080"),
            ("access-control-request-method", "POST"),
            ("access-control-request-headers", "authorization,content-type"),
        ],
    )
    assert response.status == 204
    assert response.header("access-control-allow-origin") == "http://localhost:8080"
    assert response.header("access-control-allow-credentials") == "true"
    assert "PATCH" in response.header("access-control-allow-methods")
    assert response.header("access-control-allow-headers") == "authorization,content-type"


def test_every_answer_carries_cors_headers_even_errors(core: Core) -> None:
    response = core.http("GET", "/collections", key="nope", headers=[("origin", "http://app.test")])
    assert response.status == 401
    assert response.header("access-control-allow-origin") == "http://app.test"
    assert response.header("access-control-allow-credentials") == "true"


# -- accounts ---------------------------------------------------------------


def test_register_answers_the_id_and_does_not_log_in(core: Core) -> None:
    response = core.http("POST", "/register", {"email": "Sally@Example.com", "password": "my_password123"})
    assert response.status == 200
    assert set(response.json) == {"id"} and len(response.json["id"]) == 24
    assert response.header("set-cookie") is None


@pytest.mark.parametrize(
    "body, message_part",
    [
        ({"email": "not-an-email", "password": "long enough"}, "email"),
        ({"email": "a@b.co", "password": "short"}, "Password"),
        ({"email": "a@b.co"}, "strings"),
        ({"email": 5, "password": "long enough"}, "strings"),
        ([1, 2], "JSON object"),
    ],
)
def test_register_refuses_bad_input_with_422(core: Core, body: object, message_part: str) -> None:
    response = core.http("POST", "/register", body)
    assert response.status == 422
    assert message_part in response.json["message"]


def test_register_refuses_an_existing_user_whatever_the_case(core: Core) -> None:
    core.http("POST", "/register", {"email": "sally@example.com", "password": "my_password123"})
    response = core.http("POST", "/register", {"email": "SALLY@example.com", "password": "other_password"})
    assert response.status == 422 and "exists" in response.json["message"]


def test_login_sets_a_session_cookie_and_answers_the_id(core: Core) -> None:
    registered = core.http("POST", "/register", {"email": "sally@example.com", "password": "my_password123"})
    response = core.http("POST", "/login", {"email": "sally@example.com", "password": "my_password123"})
    assert (response.status, response.json) == (200, {"id": registered.json["id"]})
    cookie = response.header("set-cookie")
    assert cookie.startswith("_redis=") and "HttpOnly" in cookie and "SameSite=Lax" in cookie


@pytest.mark.parametrize(
    "body",
    [
        {"email": "sally@example.com", "password": "wrong password"},
        {"email": "nobody@example.com", "password": "my_password123"},
        {"email": "sally@example.com"},
    ],
)
def test_login_failures_answer_401_with_a_message(core: Core, body: dict) -> None:
    core.http("POST", "/register", {"email": "sally@example.com", "password": "my_password123"})
    response = core.http("POST", "/login", body)
    assert response.status in (401, 422) and isinstance(response.json["message"], str)
    assert response.header("set-cookie") is None


def test_session_tokens_are_stored_only_hashed(core: Core) -> None:
    _, cookie = core.user("sally@example.com")
    token = cookie.split("=", 1)[1]
    assert token not in repr(core.store.__dict__)


def test_logout_ends_the_session(core: Core) -> None:
    _, cookie = core.user("sally@example.com")
    assert core.http("GET", "/messages", cookie=cookie).status == 200
    response = core.http("POST", "/logout", cookie=cookie)
    assert (response.status, response.json) == (200, {"message": "OK"})
    assert "Max-Age=0" in response.header("set-cookie")
    assert core.http("GET", "/messages", cookie=cookie).status == 403


def test_a_made_up_cookie_is_not_a_session(core: Core) -> None:
    response = core.http("GET", "/messages", cookie="_redis=forged-token")
    assert (response.status, response.json) == (403, {"message": "Unauthorized"})


# -- collections ------------------------------------------------------------


def test_a_collection_is_listed_once_it_holds_a_record(core: Core) -> None:
    _, cookie = core.user("sally@example.com")
    created = core.http("POST", "/collections", {"collectionName": "messages"})
    assert (created.status, created.json) == (200, "messages")
    assert core.http("GET", "/collections").json == []
    core.http("POST", "/messages", {"text": "hi"}, cookie=cookie)
    core.http("POST", "/comments", {"text": "yo"}, cookie=cookie)
    assert core.http("GET", "/collections").json == ["comments", "messages"]


@pytest.mark.parametrize("name", ["users", "Users", "uploads", "sessions"])
def test_users_and_uploads_are_never_collections(core: Core, name: str) -> None:
    _, cookie = core.user("sally@example.com")
    if name == "uploads":  # a route of its own: a JSON body is not an upload
        assert core.http("POST", "/uploads", {"email": "x"}, cookie=cookie).status == 400
    else:
        assert core.http("POST", f"/{name}", {"email": "x"}, cookie=cookie).status == 403
        assert core.http("GET", f"/{name}", cookie=cookie).status == 403
    assert core.http("POST", "/collections", {"collectionName": name}).status == 403
    assert core.http("GET", "/collections").json == []


@pytest.mark.parametrize("body", [{"collectionName": ""}, {"collectionName": "a/b"}, {"collectionName": 3}, {}])
def test_invalid_collection_names_answer_400(core: Core, body: dict) -> None:
    response = core.http("POST", "/collections", body)
    assert response.status == 400 and "collection names" in response.json["message"]


# -- records ----------------------------------------------------------------


def test_records_need_a_logged_in_session(core: Core) -> None:
    for method, target in [("GET", "/messages"), ("POST", "/messages"), ("GET", f"/messages/{OBJECT_ID}"),
                           ("PUT", f"/messages/{OBJECT_ID}"), ("PATCH", f"/messages/{OBJECT_ID}"),
                           ("DELETE", f"/messages/{OBJECT_ID}")]:
        response = core.http(method, target, {"a": 1} if method in ("POST", "PUT", "PATCH") else None)
        assert (response.status, response.json) == (403, {"message": "Unauthorized"}), (method, target)


def test_create_get_patch_overwrite_delete(core: Core) -> None:
    _, cookie = core.user("sally@example.com")
    created = core.http("POST", "/messages", {"text": "I am a message!", "_id": "ignored", "__v": 7}, cookie=cookie)
    record = created.json
    assert created.status == 200
    assert list(record) == ["_id", "text", "createdAt", "updatedAt", "__v"]
    assert len(record["_id"]) == 24 and record["__v"] == 0
    assert record["createdAt"] == record["updatedAt"] and record["createdAt"].endswith("Z")
    target = f"/messages/{record['_id']}"

    assert core.http("GET", target, cookie=cookie).json == record
    assert core.http("GET", "/messages", cookie=cookie).json == [record]

    patched = core.http("PATCH", target, {"text": "updated message", "new_field": 1}, cookie=cookie).json
    assert patched["text"] == "updated message" and patched["new_field"] == 1
    assert patched["createdAt"] == record["createdAt"] and patched["updatedAt"] > record["updatedAt"]

    removed_field = core.http("PATCH", target, {"new_field": None}, cookie=cookie).json
    assert "new_field" not in removed_field and removed_field["text"] == "updated message"

    overwritten = core.http("PUT", target, {"new_key": "some value"}, cookie=cookie).json
    assert {k: v for k, v in overwritten.items() if k not in ("updatedAt",)} == {
        "_id": record["_id"], "new_key": "some value", "createdAt": record["createdAt"], "__v": 0,
    }

    deleted = core.http("DELETE", target, cookie=cookie)
    assert (deleted.status, deleted.json) == (200, overwritten | {"updatedAt": overwritten["updatedAt"]})
    assert core.http("GET", target, cookie=cookie).status == 404
    assert core.http("GET", "/collections").json == []


@pytest.mark.parametrize("method", ["GET", "PUT", "PATCH", "DELETE"])
@pytest.mark.parametrize("record_id", [OBJECT_ID, "not-an-id", "5E9F2FC00FB8899611D642A4"])
def test_a_missing_record_answers_404_json(core: Core, method: str, record_id: str) -> None:
    _, cookie = core.user("sally@example.com")
    response = core.http(method, f"/messages/{record_id}", {"a": 1} if method in ("PUT", "PATCH") else None, cookie=cookie)
    assert response.status == 404 and "No record" in response.json["message"]


@pytest.mark.parametrize(
    "method, raw, status",
    [
        ("POST", b"{not json", 400),
        ("POST", b"[1,2,3]", 400),
        ("POST", b'"text"', 400),
        ("PATCH", b"{", 400),
        ("PUT", b"42", 400),
    ],
)
def test_bad_bodies_answer_400_and_store_nothing(core: Core, method: str, raw: bytes, status: int) -> None:
    _, cookie = core.user("sally@example.com")
    record = core.http("POST", "/messages", {"text": "keep me"}, cookie=cookie).json
    target = "/messages" if method == "POST" else f"/messages/{record['_id']}"
    response = core.http(method, target, raw=raw, cookie=cookie)
    assert response.status == status and isinstance(response.json["message"], str)
    assert core.http("GET", "/messages", cookie=cookie).json == [record]


def test_doubled_slashes_are_single(core: Core) -> None:
    core.http("POST", "//register", {"email": "sally@example.com", "password": "my_password123"})
    login = core.http("POST", "//login", {"email": "sally@example.com", "password": "my_password123"})
    assert login.status == 200
    created = core.http("POST", "//messages", {"a": 1}, cookie=login.cookie)
    assert core.http("GET", f"//messages//{created.json['_id']}/", cookie=login.cookie).json == created.json


def test_unknown_routes_and_methods(core: Core) -> None:
    _, cookie = core.user("sally@example.com")
    assert core.http("GET", "/a/b/c", cookie=cookie).status == 404
    assert core.http("GET", "/login").status == 405
    assert core.http("DELETE", "/messages", cookie=cookie).status == 405


# -- HTTP writes reach websockets --------------------------------------------


def test_http_writes_are_delivered_to_websockets_with_httpRequest(core: Core) -> None:
    _, cookie = core.user("sally@example.com")
    _, other_cookie = core.user("george@example.com")
    watcher = core.connect(other_cookie)
    core.take(watcher)
    record = core.http("POST", "/messages", {"text": "hi"}, cookie=cookie).json
    core.http("PATCH", f"/messages/{record['_id']}", {"text": "ho"}, cookie=cookie)
    core.http("PUT", f"/messages/{record['_id']}", {"text": "hu"}, cookie=cookie)
    core.http("DELETE", f"/messages/{record['_id']}", cookie=cookie)
    got = core.take(watcher)
    assert [(m["action"], m["collection"], m["httpRequest"]) for m in got] == [
        ("create", "messages", True), ("patch", "messages", True), ("update", "messages", True), ("delete", "messages", True),
    ]
    assert got[0]["response"] == record and got[3]["response"]["text"] == "hu"
