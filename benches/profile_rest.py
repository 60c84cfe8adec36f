"""Where one Backpack REST request spends its time, measured in process.

Three layers, each timed on its own, so that a change can be placed:

- ``core``: the pure action (``Switchboard.handle_request``) driven by
  ``run_sync`` against the memory store - no trio, no parser.
- ``app``: ``SatchelApp.handle_http`` under trio, through the ``Runner`` and
  the real ``SqliteStore`` (point reads inline, writes through the writer
  thread's group commit) - what the server does after parsing.
- ``wire``: the reference HTTP connection (``HttpConnection``: httptools,
  keep-alive, ``format_response``) over a socketpair, one request in flight,
  the client being raw socket writes and reads in the same trio run.
- ``server`` (``--profile server``, needs ``wrk``): the reference server
  (``serve_mounts``, SQLite) in this process, loaded by ``wrk`` with 16
  connections from another process - the profile of the server as the
  REST bench runs it, scheduling amortized over concurrent requests.

Then a cProfile of the chosen layer, by function (own time) and by area
(module groups: cookie parsing, hashing, storage, JSON, trio, ...).

Run:
    python benches/profile_rest.py                     # get by id, every layer, profile of 'wire'
    python benches/profile_rest.py --call create --profile app
    python benches/profile_rest.py --requests 20000 --top 30
    python benches/profile_rest.py --profile server --seconds 5   # under wrk, 16 connections

Figures are per request, one request at a time (no concurrency), so they
are a cost, not a throughput. The machine is shared: repeat, and compare
layers within one run.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import socket
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any, Callable

import msgspec
import trio

from satchel.protocol.backpack import BackpackConfig
from satchel.protocol.http import HttpRequest
from satchel.protocol.mount_table import standard_mounts
from satchel.protocol.operations import run_sync
from satchel.protocol.switchboard import Switchboard
from satchel.storage_backends.memory import MemoryStore
from satchel.storage_backends.sqlite import SqliteStore
from satchel.transports.app import SatchelApp
from satchel.transports.bus import LocalBus
from satchel.transports.http.connection import Deadlines, HttpConnection
from satchel.transports.hub import Hub
from satchel.transports.interfaces import ServerLimits
from satchel.transports.runner import Runner
from satchel.transports.system_environment import system_environment

API_KEY = "profile-api-key"
PASSWORD = "correct horse battery staple"
RECORD = {"title": "a record of typical size", "n": 42, "done": False}
COLLECTION = "benchitems"
# --rules: the permissions bench's auditor (benches/bench_permissions.py): a
# filter on two fields and three readable fields of four, so every read is
# checked and cut - the rule path, against the default rules' pass-through.
AUDITOR_RULES = b"""{"version": 1, "roles": {"auditor": {"rules": [
    {"collection": "benchitems", "action": "read",
     "filter": {"_and": [{"n": {"_gte": 0}}, {"done": {"_eq": false}}]}, "fields": ["title", "n", "done"]},
    {"collection": "benchitems", "action": "create"}]}}}"""
WITH_RULES = False

# Areas for the by-area table: the first pattern found in a function's file
# (or, for built-ins, its name) names its area.
AREAS: list[tuple[str, str]] = [
    ("http/cookies", "cookie parsing (SimpleCookie)"),
    ("Cookie", "cookie parsing (SimpleCookie)"),
    ("hashlib", "hashing (sha256) / hmac"),
    ("sha256", "hashing (sha256) / hmac"),
    ("hmac", "hashing (sha256) / hmac"),
    ("compare_digest", "hashing (sha256) / hmac"),
    ("sqlite3", "SQLite"),
    ("storage_backends/sqlite", "storage backend (SQLite)"),
    ("storage_backends/memory", "storage backend (memory)"),
    ("msgspec", "JSON (msgspec)"),
    ("json.", "JSON (msgspec)"),
    ("protocol/backpack/auth", "Backpack auth (key, cookie, session)"),
    ("protocol/backpack", "Backpack routes and permits"),
    ("protocol/permissions", "permission rules"),
    ("protocol/collections", "records (create/patch)"),
    ("protocol/records", "records (create/patch)"),
    ("protocol/switchboard", "switchboard (routing, caches)"),
    ("protocol/mounts", "mount table (which mount claims it)"),
    ("protocol/http", "request path / headers"),
    ("/mount.py", "mount table (which mount claims it)"),
    ("protocol/", "other protocol code"),
    ("transports/http", "HTTP transport (parse, format)"),
    ("httptools", "HTTP transport (parse, format)"),
    ("transports/runner", "runner"),
    ("transports/app", "app / bus"),
    ("transports/bus", "app / bus"),
    ("transports/hub", "hub (fan-out)"),
    ("transports/sockets", "socket reads and writes"),
    ("socket", "socket reads and writes"),
    ("recv", "socket reads and writes"),
    ("send", "socket reads and writes"),
    ("trio", "trio scheduler"),
    ("epoll", "trio scheduler"),
    ("select", "trio scheduler"),
    ("urllib", "request path / headers"),
    ("threading", "threads (writer wake-up)"),
]


def area_of(key: tuple[str, int, str]) -> str:
    filename, _, name = key
    where = f"{filename} {name}"
    for pattern, area in AREAS:
        if pattern in where:
            return area
    return "other (Python built-ins)"


def request_bytes(method: str, target: str, headers: list[tuple[str, str]], body: bytes = b"") -> bytes:
    lines = [f"{method} {target} HTTP/1.1", "host: 127.0.0.1"]
    lines += [f"{name}: {value}" for name, value in headers]
    if body:
        lines.append(f"content-length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


class Setup:
    """A user, its session cookie and one record, on a given switchboard."""

    def __init__(self, cookie: str, record_id: str) -> None:
        self.cookie = cookie
        self.record_id = record_id

    def headers(self, with_body: bool) -> list[tuple[str, str]]:
        headers = [("authorization", f"key {API_KEY}"), ("cookie", f"theme=dark; {self.cookie}; lang=en")]
        if with_body:
            headers.append(("content-type", "application/json"))
        return headers

    def request(self, call: str) -> HttpRequest:
        if call == "get":
            return HttpRequest("GET", f"/{COLLECTION}/{self.record_id}", self.headers(False))
        if call == "create":
            return HttpRequest("POST", f"/{COLLECTION}", self.headers(True), msgspec.json.encode(RECORD))
        if call == "list":
            return HttpRequest("GET", f"/{COLLECTION}", self.headers(False))
        raise ValueError(call)

    def raw(self, call: str) -> bytes:
        request = self.request(call)
        return request_bytes(request.method, request.target, request.headers, request.body)


def _cookie_of(headers: list[tuple[str, str]]) -> str:
    for name, value in headers:
        if name == "set-cookie":
            return value.split(";", 1)[0]
    raise RuntimeError("login set no cookie")


def board() -> Switchboard:
    switchboard = Switchboard(standard_mounts(BackpackConfig(API_KEY)), system_environment())
    if WITH_RULES:
        from satchel.protocol.permissions import RuleSet

        switchboard.rules = RuleSet.from_json(AUDITOR_RULES)
    return switchboard


def _auditor(user_id: str) -> Any:
    from satchel.protocol.operations import SetUserRole

    return SetUserRole(user_id, "auditor")


def json_request(method: str, target: str, body: Any, cookie: str | None = None) -> HttpRequest:
    headers = [("authorization", f"key {API_KEY}"), ("content-type", "application/json")]
    if cookie:
        headers.append(("cookie", cookie))
    return HttpRequest(method, target, headers, msgspec.json.encode(body))


# -- the core on the memory store ------------------------------------------------------


def core_setup() -> tuple[Callable[[HttpRequest], Any], Setup]:
    from argon2 import PasswordHasher

    from satchel.protocol.operations import HashPassword, VerifyPassword

    store = MemoryStore()
    hasher = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
    switchboard = board()

    def execute(operation: Any) -> Any:
        if type(operation) is HashPassword:
            return hasher.hash(operation.password)
        if type(operation) is VerifyPassword:
            return hasher.verify(operation.password_hash, operation.password)
        return store.execute_sync(operation)

    def handle(request: HttpRequest) -> Any:
        outcome = run_sync(switchboard.handle_request(request), execute)
        for _ in switchboard.deliveries(outcome.changes):
            pass
        return outcome.response

    registered = handle(json_request("POST", "/register", {"email": "p@example.com", "password": PASSWORD}))
    if WITH_RULES:
        store.execute_sync(_auditor(msgspec.json.decode(registered.body)["id"]))
    response = handle(json_request("POST", "/login", {"email": "p@example.com", "password": PASSWORD}))
    cookie = _cookie_of(response.headers)
    created = handle(json_request("POST", f"/{COLLECTION}", RECORD, cookie))
    return handle, Setup(cookie, msgspec.json.decode(created.body)["_id"])


def time_core(call: str, requests: int, profile: cProfile.Profile | None) -> float:
    handle, setup = core_setup()
    request = setup.request(call)
    for _ in range(min(requests // 10, 2000)):
        handle(request)
    if profile is not None:
        profile.enable()
    started = time.perf_counter()
    for _ in range(requests):
        handle(request)
    elapsed = time.perf_counter() - started
    if profile is not None:
        profile.disable()
    return elapsed / requests * 1e6


# -- under trio: the app, and the wire ---------------------------------------------------


async def app_setup(data_dir: Path) -> tuple[SatchelApp, SqliteStore, Setup, Hub]:
    from argon2 import PasswordHasher

    store = await SqliteStore.open(data_dir / "satchel.db")
    hub = Hub()
    switchboard = board()
    runner = Runner(store, hasher=PasswordHasher(time_cost=1, memory_cost=8, parallelism=1))
    app = SatchelApp(runner, LocalBus(hub, switchboard))
    await runner.run(switchboard.load_rules())
    registered = await app.handle_http(json_request("POST", "/register", {"email": "p@example.com", "password": PASSWORD}))
    if WITH_RULES:
        await store.execute(_auditor(msgspec.json.decode(registered.body)["id"]))
    response = await app.handle_http(json_request("POST", "/login", {"email": "p@example.com", "password": PASSWORD}))
    cookie = _cookie_of(response.headers)
    created = await app.handle_http(json_request("POST", f"/{COLLECTION}", RECORD, cookie))
    return app, store, Setup(cookie, msgspec.json.decode(created.body)["_id"]), hub


async def time_app(call: str, requests: int, profile: cProfile.Profile | None) -> float:
    with tempfile.TemporaryDirectory(prefix="satchel-profile-") as tmp:
        app, store, setup, _ = await app_setup(Path(tmp))
        try:
            request = setup.request(call)
            for _ in range(min(requests // 10, 2000)):
                await app.handle_http(request)
            if profile is not None:
                profile.enable()
            started = time.perf_counter()
            for _ in range(requests):
                await app.handle_http(request)
            elapsed = time.perf_counter() - started
            if profile is not None:
                profile.disable()
        finally:
            await store.aclose()
    return elapsed / requests * 1e6


async def time_wire(call: str, requests: int, profile: cProfile.Profile | None) -> float:
    with tempfile.TemporaryDirectory(prefix="satchel-profile-") as tmp:
        app, store, setup, hub = await app_setup(Path(tmp))
        limits = ServerLimits()
        deadlines = Deadlines.for_limits(limits)
        server_end, client = socket.socketpair()
        server_end.setblocking(False)
        client.setblocking(False)
        raw = setup.raw(call)
        elapsed = 0.0
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(deadlines.run)
                nursery.start_soon(HttpConnection(server_end, app, limits, deadlines).run)

                async def exchange() -> None:
                    client.send(raw)
                    received = b""
                    while True:
                        await trio.lowlevel.wait_readable(client)
                        received += client.recv(65536)
                        head, sep, rest = received.partition(b"\r\n\r\n")
                        if sep:
                            length = int(head.lower().split(b"content-length: ", 1)[1].split(b"\r\n", 1)[0])
                            if len(rest) >= length:
                                if not head.startswith(b"HTTP/1.1 200"):
                                    raise RuntimeError(head.decode())
                                return

                for _ in range(min(requests // 10, 2000)):
                    await exchange()
                if profile is not None:
                    profile.enable()
                started = time.perf_counter()
                for _ in range(requests):
                    await exchange()
                elapsed = time.perf_counter() - started
                if profile is not None:
                    profile.disable()
                nursery.cancel_scope.cancel()
        finally:
            client.close()
            server_end.close()
            await store.aclose()
    return elapsed / requests * 1e6


# -- the reference server under wrk ------------------------------------------------------------

WRK_GET = """wrk.method = "GET"
wrk.path = os.getenv("BENCH_PATH")
wrk.headers["Authorization"] = os.getenv("BENCH_AUTH")
wrk.headers["Cookie"] = os.getenv("BENCH_COOKIE")
"""
WRK_CREATE = WRK_GET.replace('"GET"', '"POST"') + """wrk.body = os.getenv("BENCH_BODY")
wrk.headers["Content-Type"] = "application/json"
"""


def _client_setup(port: int) -> tuple[str, str]:
    import http.client
    import json

    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    auth = {"Authorization": f"key {API_KEY}", "Content-Type": "application/json"}
    account = json.dumps({"email": "p@example.com", "password": PASSWORD})
    connection.request("POST", "/register", account, auth)
    connection.getresponse().read()
    connection.request("POST", "/login", account, auth)
    response = connection.getresponse()
    response.read()
    cookie = response.getheader("set-cookie").split(";", 1)[0]
    connection.request("POST", f"/{COLLECTION}", json.dumps(RECORD), {**auth, "Cookie": cookie})
    created = json.loads(connection.getresponse().read())
    connection.close()
    return cookie, created["_id"]


async def profile_server(call: str, seconds: int, connections: int, profile: cProfile.Profile) -> int:
    """Requests answered while the server was profiled under wrk."""
    import os
    import re
    import shutil

    from satchel.transports.app import serve_mounts

    wrk = shutil.which("wrk")
    if wrk is None:
        raise SystemExit("--profile server needs wrk (apt-get install wrk)")
    with tempfile.TemporaryDirectory(prefix="satchel-profile-") as tmp:
        store = await SqliteStore.open(Path(tmp) / "satchel.db")
        try:
            async with trio.open_nursery() as nursery:
                port, _ = await nursery.start(lambda task_status: serve_mounts(
                    standard_mounts(BackpackConfig(API_KEY)), "127.0.0.1", 0, store=store, udp_port=-1,
                    task_status=task_status))
                cookie, record_id = await trio.to_thread.run_sync(_client_setup, port)
                script = Path(tmp) / "call.lua"
                script.write_text(WRK_GET if call == "get" else WRK_CREATE)
                path = f"/{COLLECTION}/{record_id}" if call == "get" else f"/{COLLECTION}"
                env = {**os.environ, "BENCH_PATH": path, "BENCH_AUTH": f"key {API_KEY}", "BENCH_COOKIE": cookie,
                       "BENCH_BODY": msgspec.json.encode(RECORD).decode()}
                profile.enable()
                done = await trio.run_process(
                    [wrk, "-t", "1", "-c", str(connections), "-d", f"{seconds}s", "-s", str(script),
                     f"http://127.0.0.1:{port}"], env=env, capture_stdout=True)
                profile.disable()
                out = done.stdout.decode()
                nursery.cancel_scope.cancel()
        finally:
            await store.aclose()
    print(out.strip())
    if "Non-2xx" in out:
        raise SystemExit("wrk saw errors")
    return int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]


# -- the report ------------------------------------------------------------------------------


def report(profile: cProfile.Profile, requests: int, top: int) -> None:
    stats = pstats.Stats(profile)
    entries = stats.stats  # type: ignore[attr-defined]
    total = sum(own for (_, _, own, _, _) in entries.values())
    by_area: dict[str, float] = defaultdict(float)
    for key, (_, _, own, _, _) in entries.items():
        by_area[area_of(key)] += own
    print("\nBy area (own time; cProfile inflates call-heavy code, compare shares):")
    print(f"{'area':44} {'us/request':>10} {'share':>7}")
    for area, own in sorted(by_area.items(), key=lambda item: -item[1]):
        print(f"{area:44} {own / requests * 1e6:10.2f} {own / total:7.1%}")
    print(f"\nTop {top} functions by own time:")
    print(f"{'calls/req':>9} {'own us/req':>10} {'cum us/req':>10}  function")
    rows = sorted(entries.items(), key=lambda item: -item[1][2])[:top]
    for (filename, line, name), (_, calls, own, cumulative, _) in rows:
        where = filename.split("site-packages/")[-1].split("/work/main/")[-1]
        print(f"{calls / requests:9.2f} {own / requests * 1e6:10.2f} {cumulative / requests * 1e6:10.2f}  "
              f"{name} ({where}:{line})")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--call", choices=("get", "create", "list"), default="get")
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--profile", choices=("core", "app", "wire", "server", "none"), default="wire")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--seconds", type=int, default=5, help="wrk's duration for --profile server")
    parser.add_argument("--rules", action="store_true",
                        help="the user reads under the permissions bench's auditor rules (filter + 3 of 4 fields)")
    parser.add_argument("--connections", type=int, default=16, help="wrk's connections for --profile server")
    options = parser.parse_args(argv)
    global WITH_RULES
    WITH_RULES = options.rules
    if options.profile == "server":
        profile = cProfile.Profile()
        answered = trio.run(profile_server, options.call, options.seconds, options.connections, profile)
        print(f"\nProfile of the reference server under wrk ({options.call}, {options.connections} connections; "
              f"{answered:,} requests, slowed by the profiler):")
        report(profile, answered, options.top)
        return
    print(f"Backpack {options.call}{' under the auditor rules' if options.rules else ''}, "
          f"{options.requests:,} requests per layer, one at a time "
          f"(Python {sys.version.split()[0]})")
    timings = {
        "core (memory store, run_sync)": time_core(options.call, options.requests, None),
        "app (runner + SQLite, under trio)": trio.run(time_app, options.call, options.requests, None),
        "wire (HTTP connection + app)": trio.run(time_wire, options.call, options.requests, None),
    }
    for layer, micros in timings.items():
        print(f"  {layer:38} {micros:7.1f} us/request  ({1e6 / micros:,.0f}/s on one core)")
    if options.profile == "none":
        return
    profile = cProfile.Profile()
    if options.profile == "core":
        time_core(options.call, options.requests, profile)
    elif options.profile == "app":
        trio.run(time_app, options.call, options.requests, profile)
    else:
        trio.run(time_wire, options.call, options.requests, profile)
    print(f"\nProfile of '{options.profile}' ({options.call}):")
    report(profile, options.requests, options.top)


if __name__ == "__main__":
    main()
