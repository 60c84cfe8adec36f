"""The switchboard's session cache (issue 13 part 3, ``protocol/sessions.py``):
a request with a cookie costs no session read, and no stale session is ever
accepted - not after a logout, not after its expiry, not after every token
of the user was revoked (what disabling an account does), not from a read
that raced a logout. A role change reaches a cached session at once (the
cache keeps sessions, never roles). And the cookie is found without
``http.cookies``, as ``SimpleCookie`` found it.
"""

from __future__ import annotations

from typing import Any

import pytest

from core_harness import API_KEY, Core
from satchel.protocol.backpack import BackpackConfig
from satchel.protocol.backpack.auth import session_token
from satchel.protocol.environment import Environment
from satchel.protocol.http import HttpRequest, HttpResponse, json_response
from satchel.protocol.mount_table import standard_mounts
from satchel.protocol.mounts import HttpOutcome, Mount
from satchel.protocol.operations import SESSION, Action, DeleteSessions, GetSession, SetUserRole
from satchel.protocol.permissions import RoleChanged, RuleSet
from satchel.protocol.sessions import SESSION_CACHE_MS, Revoked, SessionCache
from satchel.protocol.switchboard import Switchboard

DAY_MS = 24 * 60 * 60 * 1000


class Clock:
    """A clock that moves only when told to."""

    def __init__(self, now_ms: int = 1_700_000_000_000) -> None:
        self.now = now_ms

    def __call__(self) -> int:
        return self.now


class RevokeMount(Mount):
    """``POST /_test/revoke/{user_id}`` revokes every cookie session of that
    user, as an administrator disabling the account does (``DeleteSessions``)."""

    name = "revoke-test"

    def claims_request(self, request: HttpRequest) -> bool:
        return request.path.startswith("/_test/revoke/")

    def handle_request(self, request: HttpRequest, env: Environment, form: Any = None) -> Action[HttpOutcome]:
        count = yield DeleteSessions(request.path.rsplit("/", 1)[1], SESSION)
        return HttpOutcome(json_response(200, {"revoked": count}))

    def error_response(self, status: int, message: str) -> HttpResponse:
        return json_response(status, {"message": message})


def make_core(clock: Clock, ttl_ms: int = DAY_MS) -> Core:
    core = Core()
    tokens = iter(range(1, 1_000_000))
    ids = iter(range(1, 1_000_000))
    core.env = Environment(now_ms=clock, new_id=lambda: f"{next(ids):024x}", new_token=lambda: f"token-{next(tokens):040d}")
    core.config = BackpackConfig(api_key=API_KEY, session_ttl_ms=ttl_ms)
    core.board = Switchboard(standard_mounts(core.config, first=[RevokeMount()]), core.env)
    return core


class CountingCore:
    """Counts the ``GetSession`` reads that reach the store."""

    def __init__(self, core: Core) -> None:
        self.reads = 0
        execute = core.execute

        def counted(operation: Any) -> Any:
            if type(operation) is GetSession:
                self.reads += 1
            return execute(operation)

        core.execute = counted  # type: ignore[method-assign]


@pytest.fixture
def clock() -> Clock:
    return Clock()


def test_a_cached_session_costs_no_store_read(clock: Clock) -> None:
    core = make_core(clock)
    _, cookie = core.user("sally@example.com")
    counter = CountingCore(core)
    for _ in range(5):
        assert core.http("GET", "/messages", cookie=cookie).status == 200
    assert counter.reads == 1
    clock.now += SESSION_CACHE_MS  # trusted this long, then read again
    assert core.http("GET", "/messages", cookie=cookie).status == 200
    assert counter.reads == 2


def test_no_request_after_logout_is_served_from_the_cache(clock: Clock) -> None:
    core = make_core(clock)
    _, cookie = core.user("sally@example.com")
    assert core.http("GET", "/messages", cookie=cookie).status == 200  # cached now
    assert core.http("POST", "/logout", cookie=cookie).status == 200
    # The same millisecond: the cache would still trust the entry by age.
    assert core.http("GET", "/messages", cookie=cookie).status == 403
    assert len(core.board.sessions) == 0


def test_an_expired_session_is_refused_at_once_though_cached(clock: Clock) -> None:
    core = make_core(clock, ttl_ms=10_000)
    _, cookie = core.user("sally@example.com")
    clock.now += 10_000 - 200
    assert core.http("GET", "/messages", cookie=cookie).status == 200  # read now, cached
    clock.now += 199
    assert core.http("GET", "/messages", cookie=cookie).status == 200  # 1 ms left
    clock.now += 1
    assert core.http("GET", "/messages", cookie=cookie).status == 403
    assert core.connect(cookie).status == 401  # the websocket upgrade too


def test_revoking_every_session_of_a_user_takes_effect_at_once(clock: Clock) -> None:
    core = make_core(clock)
    sally, cookie = core.user("sally@example.com")
    other_tab = core.http("POST", "/login", {"email": "sally@example.com", "password": "correct horse"}).cookie
    bob, bob_cookie = core.user("bob@example.com")
    for each in (cookie, other_tab, bob_cookie):
        assert core.http("GET", "/messages", cookie=each).status == 200  # all cached
    assert core.http("POST", f"/_test/revoke/{sally}").json == {"revoked": 2}
    assert core.http("GET", "/messages", cookie=cookie).status == 403
    assert core.http("GET", "/messages", cookie=other_tab).status == 403
    assert core.http("GET", "/messages", cookie=bob_cookie).status == 200  # only hers


def test_a_session_read_that_raced_a_logout_is_not_kept(clock: Clock) -> None:
    core = make_core(clock)
    _, cookie = core.user("sally@example.com")
    counter = CountingCore(core)
    request = HttpRequest("GET", "/messages", [("authorization", f"key {API_KEY}"), ("cookie", cookie)])
    slow = core.board.handle_request(request)
    operation = next(slow)
    assert type(operation) is GetSession  # the read is in flight ...
    before_logout = core.store.execute_sync(operation)
    assert core.http("POST", "/logout", cookie=cookie).status == 200  # ... when the logout commits
    # The racing read answers with the row as it was; its request may pass
    # (it began before the logout), but what it read must not be kept.
    try:
        op = slow.send(before_logout)
        while True:
            op = slow.send(core.execute(op))
    except StopIteration:
        pass
    assert core.http("GET", "/messages", cookie=cookie).status == 403
    assert counter.reads == 1  # the store was asked: nothing stale was kept


def test_a_role_change_reaches_a_cached_session_at_once(clock: Clock) -> None:
    core = make_core(clock)
    core.board.rules = RuleSet.from_json(b"""{"version": 1, "roles": {
        "reader": {"rules": [{"collection": "notes", "action": "read"}]},
        "nobody": {"rules": []}}}""")
    sally, cookie = core.user("sally@example.com")
    assert core.execute(SetUserRole(sally, "reader")) is True
    assert core.http("GET", "/notes", cookie=cookie).status == 200  # session and role cached
    assert core.execute(SetUserRole(sally, "nobody")) is True
    core.publish([RoleChanged(sally, "nobody")])  # what the admin API's role change returns
    assert core.http("GET", "/notes", cookie=cookie).status == 403


def test_revocations_reach_listeners_for_other_processes(clock: Clock) -> None:
    # Two switchboards on one store stand for two server processes; the
    # listener stands for the broker that carries a revocation between them.
    first = make_core(clock)
    _, cookie = first.user("sally@example.com")
    second = make_core(clock)
    second.store = first.store
    told: list[Revoked] = []
    first.board.sessions.listen(told.append)
    first.board.sessions.listen(second.board.sessions.forget)
    assert second.http("GET", "/messages", cookie=cookie).status == 200  # cached there
    assert first.http("POST", "/logout", cookie=cookie).status == 200
    assert len(told) == 1 and told[0].token_hash and cookie.split("=", 1)[1] not in repr(told)
    assert second.http("GET", "/messages", cookie=cookie).status == 403


def test_unknown_tokens_are_not_cached_and_the_cache_is_bounded(clock: Clock) -> None:
    core = make_core(clock)
    core.board.sessions.size = 3
    for n in range(20):
        assert core.http("GET", "/messages", cookie=f"_redis=forged-{n}").status == 403
    assert len(core.board.sessions) == 0
    cookies = [core.user(f"u{n}@example.com")[1] for n in range(5)]
    for cookie in cookies:
        assert core.http("GET", "/messages", cookie=cookie).status == 200
    assert len(core.board.sessions) == 3


def test_the_cache_holds_no_token_in_the_clear(clock: Clock) -> None:
    core = make_core(clock)
    _, cookie = core.user("sally@example.com")
    assert core.http("GET", "/messages", cookie=cookie).status == 200
    cache: SessionCache = core.board.sessions
    assert len(cache) == 1
    assert cookie.split("=", 1)[1] not in repr(cache._entries)


# -- the cookie, without http.cookies ----------------------------------------------

COOKIES = [
    ("_redis=abc", "abc"),
    ("theme=dark; _redis=abc; lang=en", "abc"),
    ("theme=dark;_redis=abc", "abc"),
    ("  _redis = abc  ", "abc"),
    ('_redis="abc"', "abc"),
    ("_redis=old; _redis=new", "new"),  # the last pair counts, as in SimpleCookie
    ("x_redis=abc", None),
    ("_redis2=abc", None),
    ("_redis=", None),
    ("_redis", None),
    ("", None),
    ("theme=dark", None),
    ("a=b=c; _redis=t=u", "t=u"),
]


@pytest.mark.parametrize(("header", "token"), COOKIES)
def test_the_session_cookie_is_found_as_simplecookie_found_it(header: str, token: str | None) -> None:
    request = HttpRequest("GET", "/", [("cookie", header)])
    assert session_token(request, BackpackConfig(api_key="k")) == token


def test_the_first_cookie_header_naming_the_cookie_wins() -> None:
    request = HttpRequest("GET", "/", [("cookie", "theme=dark"), ("cookie", "_redis=one"), ("cookie", "_redis=two")])
    assert session_token(request, BackpackConfig(api_key="k")) == "one"


def test_the_api_key_digest_is_computed_once_and_compared_in_constant_time() -> None:
    import dataclasses
    import hashlib

    config = BackpackConfig(api_key="secret-key")
    assert config.api_key_digest == hashlib.sha256(b"secret-key").digest()
    assert "api_key_digest" not in repr(config)
    assert dataclasses.replace(config, api_key="other").api_key_digest == hashlib.sha256(b"other").digest()
