"""Asnity's accounts (asnity.md section 2) on the accounts Backpack shares,
and the opaque Bearer tokens: kinds, expiry, revocation (bugs 13, 14)."""

from __future__ import annotations

import hashlib

import pytest
from asnity_harness import API_KEY, START_MS, Asnity
from satchel.protocol import tokens
from satchel.protocol.asnity import accounts
from satchel.protocol.asnity.accounts import AsnityUser
from satchel.protocol.asnity.model import PROFILES
from satchel.protocol.http import HttpRequest
from satchel.protocol.operations import InsertSession, ListRecords, Session

UNAUTHORIZED = {"statusCode": 401, "message": "Unauthorized"}
HOUR = 60 * 60 * 1000


@pytest.fixture
def asnity() -> Asnity:
    return Asnity()


def backpack(asnity: Asnity, method: str, path: str, body: dict | None = None, cookie: str | None = None):
    headers = [("authorization", f"key {API_KEY}")]
    if cookie:
        headers.append(("cookie", cookie))
    return asnity.http(method, path, body, headers=headers)


# -- signup and signin ----------------------------------------------------------


def test_signup_answers_201_in_the_envelope(asnity: Asnity) -> None:
    response = asnity.signup("sally@example.com", "sally")
    assert response.status == 201
    assert response.json == {"statusCode": 200, "result": {"message": "회원가입 성공!"}}
    assert response.header("set-cookie") is None


@pytest.mark.parametrize(
    "body, messages",
    [
        ({}, [
            "id should not be empty", "id must be an email",
            "password must be longer than or equal to 8 characters", "password must be a string",
            "password must be shorter than or equal to 1024 characters",
            "nickname must be longer than or equal to 2 characters", "nickname must be a string",
        ]),
        ({"id": "not-an-email", "password": "password1", "nickname": "ok"}, ["id must be an email"]),
        ({"id": "a@b.co", "password": "short", "nickname": "ok"}, ["password must be longer than or equal to 8 characters"]),
        ({"id": "a@b.co", "password": "password1", "nickname": "n"}, ["nickname must be longer than or equal to 2 characters"]),
        ({"id": "a@b.co", "password": "password1", "nickname": "ninechars"}, ["nickname must be shorter than or equal to 8 characters"]),
        # No coercion: a number is not a string, not even a long one.
        ({"id": "a@b.co", "password": 123456789, "nickname": "ok"}, [
            "password must be longer than or equal to 8 characters", "password must be a string",
            "password must be shorter than or equal to 1024 characters",
        ]),
        ({"id": "a@b.co", "password": "x" * 1025, "nickname": "ok"}, ["password must be shorter than or equal to 1024 characters"]),
    ],
)
def test_signup_validation_answers_every_message_as_an_array(asnity: Asnity, body: dict, messages: list[str]) -> None:
    response = asnity.http("POST", "/api/user/auth/signup", body)
    assert (response.status, response.json) == (400, {"statusCode": 400, "message": messages, "error": "Bad Request"})


def test_undeclared_fields_are_stripped_not_refused(asnity: Asnity) -> None:
    body = {"id": "a@b.co", "password": "password1", "nickname": "ok", "provider": "GITHUB", "isAdmin": True}
    assert asnity.http("POST", "/api/user/auth/signup", body).status == 201


def test_a_duplicate_email_is_403_whatever_its_case(asnity: Asnity) -> None:
    asnity.signup("sally@example.com")
    response = asnity.signup("SALLY@Example.com")
    assert (response.status, response.json) == (403, {"statusCode": 403, "message": "아이디가 중복되었습니다.", "error": "Forbidden"})


@pytest.mark.parametrize(
    "body, message",
    [
        ({"id": "nobody@example.com", "password": "password1"}, "존재하는 아이디가 없습니다."),
        ({"id": "sally@example.com", "password": "wrong password"}, "비밀번호가 일치하지 않습니다."),
    ],
)
def test_signin_failures_are_403(asnity: Asnity, body: dict, message: str) -> None:
    asnity.signup("sally@example.com")
    response = asnity.http("POST", "/api/user/auth/signin", body)
    assert (response.status, response.json) == (403, {"statusCode": 403, "message": message, "error": "Forbidden"})
    assert response.header("set-cookie") is None


def test_signin_answers_an_access_token_and_sets_the_refresh_cookie_on_its_path(asnity: Asnity) -> None:
    asnity.signup("sally@example.com")
    response = asnity.signin("sally@example.com")
    assert response.status == 201
    assert response.result["message"] == "로그인 성공!"
    assert isinstance(response.result["accessToken"], str)
    cookie = response.header("set-cookie")
    name_value, *attributes = cookie.split("; ")
    assert name_value.startswith("refreshToken=") and name_value != "refreshToken="
    assert attributes == ["Max-Age=360000", "Path=/api/user/auth/refresh", "Expires=Sun, 11 Dec 2022 11:04:05 GMT", "HttpOnly"]
    assert START_MS + 100 * HOUR == 1_670_756_645_000  # the Expires above


def test_signin_sets_online_and_signout_offline(asnity: Asnity) -> None:
    sally = asnity.account("sally@example.com", "sally")
    assert asnity.http("GET", "/api/user/auth/me", token=sally.token).result["status"] == "ONLINE"
    other = asnity.signin("sally@example.com").result["accessToken"]
    asnity.http("POST", "/api/user/auth/signout", {}, token=sally.token)
    assert asnity.http("GET", "/api/user/auth/me", token=other).result["status"] == "OFFLINE"


def test_me_answers_user_basic_info(asnity: Asnity) -> None:
    sally = asnity.account("Sally@Example.com", "sally")
    response = asnity.http("GET", "/api/user/auth/me", token=sally.token)
    assert response.status == 200
    me = response.result
    assert list(me) == ["_id", "id", "nickname", "status", "profileUrl", "description", "createdAt", "updatedAt"]
    assert me | {"_id": None, "createdAt": None, "updatedAt": None} == {
        "_id": None, "id": "sally@example.com", "nickname": "sally", "status": "ONLINE", "profileUrl": "url",
        "description": "default description", "createdAt": None, "updatedAt": None,
    }


# -- one account for Backpack and Asnity -------------------------------------------


def test_a_backpack_account_signs_in_to_asnity_with_the_default_nickname(asnity: Asnity) -> None:
    registered = backpack(asnity, "POST", "/register", {"email": "Jonathan.Smith@example.com", "password": "backpack pass"})
    assert registered.status == 200
    signed_in = asnity.signin("jonathan.smith@example.com", "backpack pass")
    assert signed_in.status == 201
    me = asnity.http("GET", "/api/user/auth/me", token=signed_in.result["accessToken"]).result
    assert me["_id"] == registered.json["id"]
    assert me["id"] == "jonathan.smith@example.com" and me["nickname"] == "jonathan"
    # And the email is taken for Asnity's signup.
    assert asnity.signup("jonathan.smith@example.com").status == 403


def test_the_default_nickname_is_the_local_part_cut_to_8_and_padded_to_2() -> None:
    from satchel.protocol.asnity.model import default_nickname

    assert default_nickname("jonathan.smith@example.com") == "jonathan"
    assert default_nickname("al@example.com") == "al"
    assert default_nickname("a@example.com") == "a_"


def test_an_asnity_account_logs_in_to_backpack_and_its_email_is_taken_there(asnity: Asnity) -> None:
    asnity.signup("sally@example.com", "sally", "asnity pass")
    registered = backpack(asnity, "POST", "/register", {"email": "SALLY@example.com", "password": "other password"})
    assert registered.status == 422 and "exists" in registered.json["message"]
    login = backpack(asnity, "POST", "/login", {"email": "sally@example.com", "password": "asnity pass"})
    assert login.status == 200
    me = asnity.http("GET", "/api/user/auth/me", token=asnity.signin("sally@example.com", "asnity pass").result["accessToken"])
    assert login.json["id"] == me.result["_id"]


def test_a_bearer_token_is_no_backpack_cookie_and_a_cookie_is_no_bearer_token(asnity: Asnity) -> None:
    sally = asnity.account("sally@example.com")
    as_cookie = backpack(asnity, "GET", "/notes", cookie=f"_redis={sally.token}")
    assert (as_cookie.status, as_cookie.json) == (403, {"message": "Unauthorized"})
    login = backpack(asnity, "POST", "/login", {"email": "sally@example.com", "password": "password1"})
    session = login.header("set-cookie").split(";")[0].split("=", 1)[1]
    assert asnity.http("GET", "/api/user/auth/me", token=session).json == UNAUTHORIZED
    # The Backpack session itself still works.
    assert backpack(asnity, "GET", "/notes", cookie=f"_redis={session}").status == 200


# -- the guard and the tokens --------------------------------------------------------


@pytest.mark.parametrize("authorization", [None, "", "Bearer", "Bearer nope", "Token abc", "bearer", "Bearer a b"])
def test_the_guard_answers_401_unauthorized_without_error(asnity: Asnity, authorization: str | None) -> None:
    headers = [("authorization", authorization)] if authorization is not None else []
    response = asnity.http("GET", "/api/user/auth/me", headers=headers)
    assert (response.status, response.json) == (401, UNAUTHORIZED)


def test_the_bearer_scheme_is_read_without_case(asnity: Asnity) -> None:
    sally = asnity.account("sally@example.com")
    response = asnity.http("GET", "/api/user/auth/me", headers=[("authorization", f"bearer {sally.token}")])
    assert response.status == 200


def test_tokens_are_stored_only_as_their_sha256(asnity: Asnity) -> None:
    sally = asnity.account("sally@example.com")
    stored = repr(asnity.store.__dict__)
    for token in (sally.token, sally.refresh):
        assert token not in stored
        assert hashlib.sha256(token.encode()).hexdigest() in stored


def test_an_access_token_expires_after_an_hour(asnity: Asnity) -> None:
    sally = asnity.account("sally@example.com")
    asnity.clock.advance(HOUR - 1)
    assert asnity.http("GET", "/api/user/auth/me", token=sally.token).status == 200
    asnity.clock.advance(1)
    assert asnity.http("GET", "/api/user/auth/me", token=sally.token).json == UNAUTHORIZED


def refresh(asnity: Asnity, cookie: str | None):
    headers = [("cookie", f"refreshToken={cookie}")] if cookie is not None else []
    return asnity.http("POST", "/api/user/auth/refresh", {}, headers=headers)


def test_refresh_issues_a_working_access_token_without_rotating(asnity: Asnity) -> None:
    sally = asnity.account("sally@example.com")
    asnity.clock.advance(2 * HOUR)
    response = refresh(asnity, sally.refresh)
    assert response.status == 201
    assert response.result["message"] == "accessToken 재발행 성공!"
    assert response.header("set-cookie") is None
    assert asnity.http("GET", "/api/user/auth/me", token=response.result["accessToken"]).status == 200
    assert refresh(asnity, sally.refresh).status == 201


@pytest.mark.parametrize("cookie", [None, "", "garbage"])
def test_refresh_without_a_live_refresh_token_is_401(asnity: Asnity, cookie: str | None) -> None:
    assert refresh(asnity, cookie).json == UNAUTHORIZED


def test_refresh_expires_after_100_hours(asnity: Asnity) -> None:
    sally = asnity.account("sally@example.com")
    asnity.clock.advance(100 * HOUR - 1)
    assert refresh(asnity, sally.refresh).status == 201
    asnity.clock.advance(1)
    assert refresh(asnity, sally.refresh).json == UNAUTHORIZED


def test_an_access_token_in_the_refresh_cookie_does_not_match(asnity: Asnity) -> None:
    sally = asnity.account("sally@example.com")
    response = refresh(asnity, sally.token)
    assert response.json == {"statusCode": 401, "message": "refreshToken이 일치하지 않습니다.", "error": "Unauthorized"}


def test_a_refresh_token_of_an_account_that_is_gone_is_403(asnity: Asnity) -> None:
    asnity.store.execute_sync(InsertSession(Session(tokens.hash_token("orphan"), "0" * 24, START_MS + HOUR, "refresh")))
    response = refresh(asnity, "orphan")
    assert response.json == {"statusCode": 403, "message": "잘못된 요청입니다.", "error": "Forbidden"}


def test_bug_14_a_refresh_token_is_never_an_access_token(asnity: Asnity) -> None:
    sally = asnity.account("sally@example.com")
    assert asnity.http("GET", "/api/user/auth/me", token=sally.refresh).json == UNAUTHORIZED
    assert asnity.run(accounts.authenticate(f"Bearer {sally.refresh}", asnity.env)) is None


def test_signout_revokes_the_access_token_and_every_refresh_token(asnity: Asnity) -> None:
    sally = asnity.account("sally@example.com")
    second = asnity.signin("sally@example.com")
    second_access = second.result["accessToken"]
    second_refresh = second.header("set-cookie").split(";")[0].split("=", 1)[1]
    response = asnity.http("POST", "/api/user/auth/signout", {}, token=sally.token)
    assert (response.status, response.json) == (201, {"statusCode": 200, "result": {"message": "로그아웃 성공!"}})
    assert asnity.http("GET", "/api/user/auth/me", token=sally.token).json == UNAUTHORIZED
    assert refresh(asnity, sally.refresh).json == UNAUTHORIZED
    assert refresh(asnity, second_refresh).json == UNAUTHORIZED
    # Another device's access token lives out its hour.
    assert asnity.http("GET", "/api/user/auth/me", token=second_access).status == 200
    assert asnity.http("POST", "/api/user/auth/signout", {}, token=sally.token).json == UNAUTHORIZED


def test_bug_13_signout_clears_the_cookie_on_the_refresh_path(asnity: Asnity) -> None:
    sally = asnity.account("sally@example.com")
    cookie = asnity.http("POST", "/api/user/auth/signout", {}, token=sally.token).header("set-cookie")
    assert cookie.startswith("refreshToken=expired; Max-Age=0; Path=/api/user/auth/refresh;")


# -- authenticate, for the socket layer ------------------------------------------------


def test_authenticate_takes_the_token_with_or_without_bearer(asnity: Asnity) -> None:
    sally = asnity.account("sally@example.com", "sally")
    expected = AsnityUser(sally.id, "sally")
    assert asnity.run(accounts.authenticate(f"Bearer {sally.token}", asnity.env)) == expected
    assert asnity.run(accounts.authenticate(sally.token, asnity.env)) == expected
    for bad in (None, "", "Bearer", "Bearer nope", f"Basic {sally.token}", 42):
        assert asnity.run(accounts.authenticate(bad, asnity.env)) is None


def test_authenticate_refuses_an_expired_or_revoked_token(asnity: Asnity) -> None:
    sally = asnity.account("sally@example.com")
    asnity.clock.advance(HOUR)
    assert asnity.run(accounts.authenticate(sally.token, asnity.env)) is None
    fresh = asnity.account("sally@example.com")
    asnity.http("POST", "/api/user/auth/signout", {}, token=fresh.token)
    assert asnity.run(accounts.authenticate(fresh.token, asnity.env)) is None


def test_authenticate_follows_the_nickname_and_writes_nothing(asnity: Asnity) -> None:
    sally = asnity.account("sally@example.com", "sally")
    asnity.http("PATCH", "/api/user/settings", {"nickname": "sal"}, token=sally.token)
    assert asnity.run(accounts.authenticate(sally.token, asnity.env)).nickname == "sal"
    # A Backpack account with no profile yet: the default nickname, nothing stored.
    backpack(asnity, "POST", "/register", {"email": "zed@example.com", "password": "password1"})
    token = asnity.run(tokens.issue_token(
        backpack(asnity, "POST", "/login", {"email": "zed@example.com", "password": "password1"}).json["id"],
        tokens.ACCESS_TOKEN, asnity.env,
    ))
    before = asnity.store.execute_sync(ListRecords(PROFILES))
    assert asnity.run(accounts.authenticate(token, asnity.env)).nickname == "zed"
    assert asnity.store.execute_sync(ListRecords(PROFILES)) == before


def test_bearer_user_reads_a_request_or_a_token(asnity: Asnity) -> None:
    sally = asnity.account("sally@example.com")
    request = HttpRequest("GET", "/anything", [("authorization", f"Bearer {sally.token}")])
    assert asnity.run(tokens.bearer_user(request, asnity.env)).id == sally.id
    assert asnity.run(tokens.bearer_user(sally.token, asnity.env)).id == sally.id
    assert asnity.run(tokens.bearer_user(HttpRequest("GET", "/", [("authorization", sally.token)]), asnity.env)) is None


# -- CORS ------------------------------------------------------------------------------


def test_cors_echoes_the_origin_with_credentials_on_answers_and_errors(asnity: Asnity) -> None:
    for response in (
        asnity.http("POST", "/api/user/auth/signup", {}, headers=[("origin", "http://app.test")]),
        asnity.http("GET", "/api/user/auth/me", headers=[("origin", "http://app.test")]),
    ):
        assert response.header("access-control-allow-origin") == "http://app.test"
        assert response.header("access-control-allow-credentials") == "true"


def test_a_preflight_is_204_with_the_methods_and_the_asked_headers(asnity: Asnity) -> None:
    response = asnity.http(
        "OPTIONS",
        "/api/user/auth/refresh",
        headers=[("origin", "http://app.test"), ("access-control-request-method", "POST"),
                 ("access-control-request-headers", "authorization,content-type")],
    )
    assert response.status == 204
    assert response.header("access-control-allow-origin") == "http://app.test"
    assert response.header("access-control-allow-credentials") == "true"
    assert response.header("access-control-allow-methods") == "GET,HEAD,PUT,PATCH,POST,DELETE,OPTIONS"
    assert response.header("access-control-allow-headers") == "authorization,content-type"
