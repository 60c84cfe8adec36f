"""Changes reach every subscriber in commit order (README, "Delivery order").

One in-process server (the real ``run_server``, SQLite, loopback), many
concurrent writers of ONE kv entry, ONE record and ONE inbox document,
through several protocols at once, and subscribers of each through several
protocols:

- the kv entry: REST ``PUT /realtime/kv/{id}`` from many tasks; resource
  websockets subscribed to it must see strictly increasing versions, each
  acknowledged version once;
- the record: Backpack REST ``PATCH`` (cookie) and Directus REST ``PATCH``
  (Bearer) from many tasks; a Backpack websocket, a Directus core
  subscription and a resource ``collection`` subscriber must each see the
  record's writes exactly in the order SQLite committed them (read from the
  writer thread's batches, the only place that order is visible);
- the document: inbox messages over HTTP and over UDP from many tasks;
  resource ``document`` subscribers must see strictly increasing revisions,
  one update per acknowledged message.

Bounded: a few hundred writes, a few seconds. Before the ordering fix this
failed on every run (updates of one group commit were published in the order
trio happened to wake their tasks).
"""

from __future__ import annotations

import json
import secrets
from pathlib import Path
from typing import Any

import h11
import outcome
import pytest
import trio
from trio_websocket import WebSocketConnection, open_websocket_url

from satchel.protocol.operations import HashPassword, InsertRecord, ReplaceRecord
from satchel.protocol.records import new_record, object_id
from satchel.protocol.resources import encode_headers
from satchel.storage_backends import sqlite as sqlite_backend
from satchel.storage_backends.sqlite import SqliteStore
from satchel.transports.cli import build_parser, run_server
from satchel.transports.ordering import Sequencer
from satchel.transports.runner import Runner
from satchel.transports.udp import send_message_udp

API_KEY = "order-api-key"
PASSWORD = "correct horse battery"
SCOPE = {"x-m2-organization": "orderOrg", "x-m2-project": "orderProj"}
KV_ID = "World:order:key"
COLLECTION = "orderedThings"

WRITERS = 6  # per kind of writer
WRITES = 12  # per writer


class Http:
    """A keep-alive HTTP/1.1 client on one trio connection (h11)."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.h11 = h11.Connection(h11.CLIENT)
        self.cookie: str | None = None

    @classmethod
    async def open(cls, port: int) -> "Http":
        return cls(await trio.open_tcp_stream("127.0.0.1", port))

    async def request(self, method: str, path: str, body: Any = None, *, headers: dict[str, str] | None = None,
                      key: bool = True) -> tuple[int, Any]:
        sent = {"host": "127.0.0.1", **(headers or {})}
        if key:
            sent["authorization"] = f"key {API_KEY}"
        if self.cookie:
            sent["cookie"] = self.cookie
        payload = b"" if body is None else json.dumps(body).encode()
        sent["content-length"] = str(len(payload))
        if payload:
            sent["content-type"] = "application/json"
        data = self.h11.send(h11.Request(method=method, target=path, headers=list(sent.items())))
        data += self.h11.send(h11.Data(data=payload)) if payload else b""
        data += self.h11.send(h11.EndOfMessage())
        await self.stream.send_all(data)
        status, chunks = 0, []
        while True:
            event = self.h11.next_event()
            if event is h11.NEED_DATA:
                self.h11.receive_data(await self.stream.receive_some(65536))
            elif isinstance(event, h11.Response):
                status = event.status_code
                for name, value in event.headers:
                    if name == b"set-cookie":
                        self.cookie = value.decode().split(";")[0]
            elif isinstance(event, h11.Data):
                chunks.append(event.data)
            elif isinstance(event, h11.EndOfMessage):
                break
        self.h11.start_next_cycle()
        raw = b"".join(chunks)
        return status, json.loads(raw) if raw else None


async def receive(ws: WebSocketConnection, timeout: float = 10) -> Any:
    with trio.fail_after(timeout):
        return json.loads(await ws.get_message())


@pytest.fixture
def commits(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Every ReplaceRecord the SQLite writer committed, in commit order."""
    committed: list[Any] = []
    original = sqlite_backend._apply_batch

    def apply_batch(db: Any, batch: list[Any]) -> Any:
        result = original(db, batch)
        for write in batch:
            if type(write.operation) is ReplaceRecord and isinstance(write.result, outcome.Value) and _written(write.result.value):
                committed.append(write.operation.record)
        return result

    monkeypatch.setattr(sqlite_backend, "_apply_batch", apply_batch)
    return committed


def _written(value: Any) -> bool:
    # A stamped write's result is (result, stamp); an unstamped one the result.
    return bool(value[0] if type(value) is tuple else value)


async def test_concurrent_writers_reach_every_subscriber_in_commit_order(tmp_path: Path, commits: list[Any]) -> None:
    args = build_parser().parse_args(["serve", "--host", "127.0.0.1", "--port", "0", "--data-dir", str(tmp_path),
                                      "--api-key", API_KEY, "--log-level", "warning"])
    async with trio.open_nursery() as nursery:
        port = await nursery.start(run_server, args)
        await _exercise(port, commits)
        nursery.cancel_scope.cancel()


async def _exercise(port: int, commits: list[Any]) -> None:
    # One account: a Backpack session and a Directus / resources Bearer token.
    http = await Http.open(port)
    assert (await http.request("POST", "/register", {"email": "order@example.com", "password": PASSWORD}))[0] == 200
    assert (await http.request("POST", "/login", {"email": "order@example.com", "password": PASSWORD}))[0] == 200
    status, login = await http.request("POST", "/auth/login", {"email": "order@example.com", "password": PASSWORD},
                                       key=False)
    assert status == 200, login
    token = login["data"]["access_token"]
    bearer = {"authorization": f"Bearer {token}"}
    cookie = http.cookie
    assert cookie

    status, record = await http.request("POST", f"/{COLLECTION}", {"n": "start"})
    assert status == 200, record
    record_id = record["_id"]
    read_token, write_token = secrets.token_hex(16), secrets.token_hex(16)
    status, _ = await http.request("PUT", f"/backend/documents/{read_token}", {"#messages": {}}, key=False,
                                   headers={"write-token": write_token, "derived-from": "0", "revision": "1"})
    assert status == 200

    url = f"ws://127.0.0.1:{port}"
    offered = encode_headers({**SCOPE, "authorization": f"Bearer {token}"})
    received: dict[str, list[Any]] = {}

    async with (
        open_websocket_url(f"{url}/realtime", subprotocols=[offered]) as kv_a,
        open_websocket_url(f"{url}/realtime", subprotocols=[offered]) as kv_b,
        open_websocket_url(f"{url}/realtime", subprotocols=[offered]) as resource_records,
        open_websocket_url(f"{url}/realtime") as doc_a,
        open_websocket_url(f"{url}/realtime") as doc_b,
        open_websocket_url(f"{url}/", extra_headers=[(b"cookie", cookie.encode())]) as backpack,
        open_websocket_url(f"{url}/websocket") as directus,
    ):
        # Subscribe everyone, and read each subscription's first answer.
        for ws in (kv_a, kv_b):
            await ws.send_message(json.dumps({"action": "subscribe", "resource": {"type": "kvStore", "id": KV_ID}}))
            assert (await receive(ws))["warning"] == "resource_not_found"
        await resource_records.send_message(
            json.dumps({"action": "subscribe", "resource": {"type": "collection", "id": COLLECTION}}))
        # (a collection that holds records answers nothing: it has no state to send)
        for ws in (doc_a, doc_b):
            await ws.send_message(json.dumps({"action": "subscribe", "resource": {"type": "document", "id": read_token}}))
            assert (await receive(ws))["data"]["revision"] == 1
        assert (await receive(backpack))["action"] == "connection"
        await directus.send_message(json.dumps({"type": "auth", "access_token": token}))
        assert (await receive(directus))["status"] == "ok"
        await directus.send_message(json.dumps({"type": "subscribe", "collection": COLLECTION, "uid": "1"}))
        assert (await receive(directus))["event"] == "init"

        kv_versions: list[int] = []
        revisions_acknowledged = 0

        async def kv_writer(w: int) -> None:
            client = await Http.open(port)
            for k in range(WRITES):
                status, answer = await client.request("PUT", f"/realtime/kv/{KV_ID}", {"w": w, "k": k}, key=False,
                                                      headers={**SCOPE, **bearer})
                assert status == 200, answer
                kv_versions.append(answer["version"])

        async def record_writer(w: int, directus_rest: bool) -> None:
            client = await Http.open(port)
            client.cookie = cookie
            for k in range(WRITES):
                mark = f"{'d' if directus_rest else 'b'}{w}.{k}"
                if directus_rest:
                    status, answer = await client.request("PATCH", f"/items/{COLLECTION}/{record_id}", {"n": mark},
                                                          key=False, headers=bearer)
                else:
                    status, answer = await client.request("PATCH", f"/{COLLECTION}/{record_id}", {"n": mark})
                assert status == 200, answer

        async def inbox_http_writer(w: int) -> None:
            nonlocal revisions_acknowledged
            client = await Http.open(port)
            for k in range(WRITES):
                message_id = f"{w:08x}{k:08x}"
                status, answer = await client.request("POST", f"/backend/documents/{write_token}/messages/{message_id}",
                                                      {"#": 1, "w": w, "k": k}, key=False)
                assert status == 200, answer
                revisions_acknowledged += 1

        async def inbox_udp_writer(w: int) -> None:
            nonlocal revisions_acknowledged
            for k in range(WRITES):
                message_id = f"{w + 100:08x}{k:08x}"
                answer = await trio.to_thread.run_sync(
                    lambda: send_message_udp("127.0.0.1", port, write_token, message_id, {"#": 1, "w": w, "k": k}))
                assert answer == "M"
                revisions_acknowledged += 1

        async def listen(name: str, ws: WebSocketConnection) -> None:
            frames = received.setdefault(name, [])
            while True:
                frames.append(json.loads(await ws.get_message()))

        async with trio.open_nursery() as listeners:
            for name, ws in (("kv_a", kv_a), ("kv_b", kv_b), ("resource_records", resource_records),
                             ("doc_a", doc_a), ("doc_b", doc_b), ("backpack", backpack), ("directus", directus)):
                listeners.start_soon(listen, name, ws)
            with trio.fail_after(60):
                async with trio.open_nursery() as writers:
                    for w in range(WRITERS):
                        writers.start_soon(kv_writer, w)
                        writers.start_soon(record_writer, w, False)
                        writers.start_soon(record_writer, w, True)
                        writers.start_soon(inbox_http_writer, w)
                        writers.start_soon(inbox_udp_writer, w)
            # Let the last deliveries arrive.
            total_records = 2 * WRITERS * WRITES
            with trio.fail_after(10):
                while (len(_record_marks(received.get("backpack", []), "backpack")) < total_records
                       or len(_kv(received.get("kv_b", []))) < WRITERS * WRITES
                       or len(_revisions(received.get("doc_b", []))) < revisions_acknowledged):
                    await trio.sleep(0.05)
            await trio.sleep(0.2)
            listeners.cancel_scope.cancel()

    # Every kind is judged before failing, so that a failure names them all.
    problems: list[str] = []
    # kv: strictly increasing versions, every acknowledged one exactly once.
    for name in ("kv_a", "kv_b"):
        versions = _kv(received[name])
        if _out_of_order(versions):
            problems.append(f"{name}: {_out_of_order(versions)} of {len(versions)} kv versions after a higher one")
        if sorted(versions) != sorted(kv_versions):
            problems.append(f"{name}: not every acknowledged kv version exactly once")

    # documents: strictly increasing revisions, one update per acknowledged message.
    for name in ("doc_a", "doc_b"):
        revisions = _revisions(received[name])
        if _out_of_order(revisions):
            problems.append(f"{name}: {_out_of_order(revisions)} of {len(revisions)} document revisions after a higher one")
        if len(revisions) != revisions_acknowledged:
            problems.append(f"{name}: {len(revisions)} document updates for {revisions_acknowledged} messages")

    # the record: exactly the commit order, in every protocol.
    committed = [r["n"] for r in commits if r.get("_id") == record_id]
    assert len(committed) == 2 * WRITERS * WRITES
    for name in ("backpack", "directus", "resource_records"):
        marks = _record_marks(received[name], name)
        if marks != committed:
            problems.append(f"{name}: {len(marks)} record updates, {_out_of_order_pairs(marks, committed)} "
                            f"after a later commit (of {len(committed)} committed)")
    assert not problems, "\n".join(problems)


def _kv(frames: list[Any]) -> list[Any]:
    return [frame["version"] for frame in frames if frame.get("resource", {}).get("type") == "kvStore" and "version" in frame]


def _revisions(frames: list[Any]) -> list[int]:
    return [frame["data"]["revision"] for frame in frames
            if frame.get("resource", {}).get("type") == "document" and isinstance(frame.get("data"), dict)]


def _record_marks(frames: list[Any], protocol: str) -> list[str]:
    marks = []
    for frame in frames:
        if protocol == "backpack":
            if frame.get("action") == "patch" and frame.get("collection") == COLLECTION:
                marks.append(frame["response"]["n"])
        elif protocol == "directus":
            if frame.get("type") == "subscription" and frame.get("event") == "update":
                marks.extend(item["n"] for item in frame["data"])
        else:
            data = frame.get("data")
            if isinstance(data, dict) and data.get("action") in ("patch", "update", "overwrite"):
                marks.append(data["record"]["n"])
    return marks


def _out_of_order(values: list[Any]) -> int:
    return sum(1 for a, b in zip(values, values[1:]) if not a < b)


def _out_of_order_pairs(marks: list[str], committed: list[str]) -> int:
    position = {mark: i for i, mark in enumerate(committed)}
    return _out_of_order([position.get(mark, -1) for mark in marks])


# -- the reorder stage on its own (satchel.transports.ordering) ----------------------


def test_publishes_run_in_stamp_order_whatever_order_they_are_released_in() -> None:
    sequencer = Sequencer()
    published: list[int] = []
    for stamp in (3, 5, 2, 4):
        sequencer.release(stamp, lambda stamp=stamp: published.append(stamp))
    assert published == [] and sequencer.waiting == 4
    sequencer.release(1)  # a write that published nothing
    assert published == [2, 3, 4, 5] and sequencer.waiting == 0


def test_a_ticket_publishes_at_its_last_stamp_and_releases_everything_on_failure() -> None:
    sequencer = Sequencer()
    published: list[str] = []
    failed = sequencer.ticket()
    with pytest.raises(RuntimeError):
        with failed:
            failed.hold(1)
            raise RuntimeError("the action failed after its write")
    both = sequencer.ticket()
    with both:
        both.hold(2)
        both.hold(4)
    later = sequencer.ticket()
    with later:
        later.hold(3)
        later.publish(lambda: published.append("3"))
    # 4 was released with 2 (that ticket ended without publishing): nothing waits.
    assert published == ["3"] and sequencer.waiting == 0
    # What holds no stamp goes behind what waits, never before it.
    sequencer.release(6, lambda: published.append("6"))
    sequencer.publish(lambda: published.append("no stamp"))
    assert published == ["3"]
    sequencer.release(5)
    assert published == ["3", "6", "no stamp"]


async def test_a_stamp_never_released_holds_publishes_back_for_the_stall_limit_only() -> None:
    sequencer = Sequencer(stall_limit=0.05)
    published: list[int] = []
    sequencer.release(2, lambda: published.append(2))
    await trio.sleep(0.02)
    assert published == []
    with trio.fail_after(1):
        while not published:
            await trio.sleep(0.01)
    assert published == [2] and sequencer.skipped == 1
    sequencer.release(1, lambda: published.append(1))  # late: at once, counted
    assert published == [2, 1] and sequencer.late == 1


async def test_an_action_cancelled_after_its_write_releases_its_stamp(tmp_path: Path) -> None:
    store = await SqliteStore.open(tmp_path / "s.db")
    async with store:
        class SlowRunner(Runner):
            async def _execute(self, operation: Any, ticket: Any = None) -> Any:
                if isinstance(operation, HashPassword):
                    await trio.sleep_forever()  # an operation that never ends, after the write
                return await super()._execute(operation, ticket)

        runner = SlowRunner(store)
        published: list[str] = []

        def action(name: str, hang: bool) -> Any:
            yield InsertRecord("c", new_record({"name": name}, object_id(1, secrets.token_bytes(5), 1), "x"))
            if hang:
                yield HashPassword("x" * 8)  # never ends: cancelled here
            return [name]

        async def run(name: str, hang: bool) -> None:
            with runner.ticket() as ticket:
                events = await runner.run(action(name, hang), ticket)
                ticket.publish(lambda: published.extend(events))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(run, "hung", True)
            await trio.sleep(0.05)
            nursery.start_soon(run, "next", False)
            await trio.sleep(0.05)
            assert published == []  # held behind the hung action's write
            nursery.cancel_scope.cancel()
        assert runner.sequencer.waiting == 0
        assert published == ["next"]


async def test_a_new_connection_is_greeted_before_changes_that_wait_in_the_reorder_stage(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A Backpack socket that opens while a committed write's change waits
    for an earlier stamp gets its greeting first (CI once saw a ``create``
    before ``connection`` under a three-node load): the waiting change goes
    to whoever is registered when it is published, the new socket included,
    so the greeting must not queue behind it."""
    held = trio.Event()
    release_held = trio.Event()
    original = Runner._execute

    async def execute(self: Runner, operation: Any, ticket: Any = None) -> Any:
        result = await original(self, operation, ticket)
        if isinstance(operation, InsertRecord) and operation.collection == "held":
            held.set()
            await release_held.wait()  # committed, stamp held: later changes wait behind it
        return result

    monkeypatch.setattr(Runner, "_execute", execute)
    args = build_parser().parse_args(["serve", "--host", "127.0.0.1", "--port", "0", "--data-dir", str(tmp_path),
                                      "--api-key", API_KEY, "--log-level", "warning"])
    async with trio.open_nursery() as nursery:
        port = await nursery.start(run_server, args)
        http = await Http.open(port)
        assert (await http.request("POST", "/register", {"email": "greet@example.com", "password": PASSWORD}))[0] == 200
        assert (await http.request("POST", "/login", {"email": "greet@example.com", "password": PASSWORD}))[0] == 200
        cookie = [(b"cookie", http.cookie.encode())]  # type: ignore[union-attr]
        url = f"ws://127.0.0.1:{port}/"
        async with open_websocket_url(url, extra_headers=cookie) as first:
            assert (await receive(first))["action"] == "connection"
            holder = await Http.open(port)
            holder.cookie = http.cookie
            nursery.start_soon(holder.request, "POST", "/held", {"n": "held"})
            with trio.fail_after(5):
                await held.wait()
            status, _ = await http.request("POST", f"/{COLLECTION}", {"n": "waits"})
            assert status == 200
            # Its change waits behind the held stamp (the stall limit is 1 s).
            async with open_websocket_url(url, extra_headers=cookie) as second:
                assert (await receive(second))["action"] == "connection"
                release_held.set()
                creates = [await receive(second) for _ in range(2)]
                assert [frame["action"] for frame in creates] == ["create", "create"]
                assert [frame["response"]["n"] for frame in creates] == ["held", "waits"]
            assert [(await receive(first))["response"]["n"] for _ in range(2)] == ["held", "waits"]
        nursery.cancel_scope.cancel()
