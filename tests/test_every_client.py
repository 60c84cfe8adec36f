"""Every client at once against ONE real ``satchel serve`` (issue 12 part 6).

One server (subprocess, SQLite, a rule file), and at the same time:
Backpack websockets (Node ``ws``, cookie sessions), the stock
``socket.io-client`` in an Asnity channel, ``@directus/sdk`` realtime
subscribed to a collection, resource websockets (base58 headers) subscribed
to that collection, a kvStore entry, a liveConfig entry and an inbox
document, and a UDP inbox sender (this process). A writer then writes
through every protocol - Backpack REST and websocket, Directus REST (the
SDK's ``rest()``) and websocket (the SDK's ``items``), resource kv and
live-config REST, inbox HTTP and UDP, Asnity REST and socket - and a user
of the role ``reader`` (published records only, two fields) subscribes
through Backpack, Directus and resources.

From the writes, in the order they committed, this file computes what
every subscriber must receive according to the README table ("One data
model: which write reaches whom") and compares whole sequences (ids and
actions), so a missing, extra, duplicated or reordered delivery fails. The
last writes are sentinels each subscriber must see; deliveries to one
connection keep commit order, so once a subscriber has its sentinel nothing
earlier can still be on its way. The subscribers run in
``node_clients/every_client_scenario.mjs``.
"""

from __future__ import annotations

import json
import os
import queue
import secrets
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from satchel.protocol.resources import encode_headers
from satchel.transports.udp import send_message_udp
from server_process import Http, ServerProcess

CLIENTS = Path(__file__).parent / "node_clients"
PASSWORD = "correct horse battery"
COLLECTION = "e2eArticles"
KV_ID = "World:kvstoreClient:testKey"
SCOPE = {"x-m2-organization": "testOrg", "x-m2-project": "testProj"}
READER_FIELDS = ["title", "status"]
RULES = {
    "version": 1,
    "roles": {
        "reader": {"rules": [{"collection": COLLECTION, "action": "read",
                              "filter": {"status": {"_eq": "published"}}, "fields": READER_FIELDS}]},
    },
}

needs_node_clients = pytest.mark.skipif(
    not os.environ.get("CI") and (shutil.which("node") is None or not (CLIENTS / "node_modules" / "@directus" / "sdk").exists()
                                  or not (CLIENTS / "node_modules" / "socket.io-client").exists()),
    reason="needs node and `npm ci` in tests/node_clients (make test installs it)",
)


# -- setup: the operator's, the admin's and the users' -----------------------------------


def _json(http: Http, method: str, path: str, body: Any = None, *, bearer: str | None = None,
          headers: dict[str, str] | None = None) -> tuple[int, Any]:
    sent = dict(headers or {})
    if bearer is not None:
        sent["Authorization"] = f"Bearer {bearer}"
    status, value, _ = http.request(method, path, body, key=None if bearer is not None or headers is not None else "default", headers=sent)
    return status, value


def _directus_login(http: Http, email: str) -> str:
    status, body = _json(http, "POST", "/auth/login", {"email": email, "password": PASSWORD}, headers={})
    assert status == 200, body
    return body["data"]["access_token"]


def _asnity_signin(http: Http, email: str) -> tuple[str, str]:
    status, body = _json(http, "POST", "/api/user/auth/signin", {"id": email, "password": PASSWORD}, headers={})
    assert status == 201, body
    token = body["result"]["accessToken"]
    status, me = _json(http, "GET", "/api/user/auth/me", bearer=token)
    assert status == 200, me
    return token, me["result"]["_id"]


def _start(tmp_path: Path) -> ServerProcess:
    data = tmp_path / "data"
    rules = tmp_path / "rules.json"
    rules.write_text(json.dumps(RULES))
    password_file = tmp_path / "admin-password"
    password_file.write_text(PASSWORD + "\n")
    subprocess.run([sys.executable, "-m", "satchel.transports", "admin", "create", "admin@example.com",
                    "--password-file", str(password_file), "--data-dir", str(data)],
                   check=True, capture_output=True, text=True, timeout=60)
    return ServerProcess(data, extra=["--rules", str(rules)])


class Driver:
    """The Node process: one JSON line each way."""

    def __init__(self, server: ServerProcess, setup: dict[str, Any]) -> None:
        self.process = subprocess.Popen(
            ["node", "every_client_scenario.mjs", server.url], cwd=CLIENTS, stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env={**os.environ, "SETUP": json.dumps(setup)})
        self.lines: queue.Queue[str] = queue.Queue()
        self.transcript: list[str] = []
        self.n = 0
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.transcript.append(line.rstrip())
            self.lines.put(line)
        self.lines.put("")

    def receive(self, timeout: float = 20) -> dict[str, Any]:
        while True:
            try:
                line = self.lines.get(timeout=timeout)
            except queue.Empty:
                raise AssertionError("the Node clients said nothing in time:\n" + self.output()) from None
            if not line:
                raise AssertionError("the Node clients exited:\n" + self.output())
            if line.startswith("{"):
                message = json.loads(line)
                assert "fatal" not in message, self.output()
                return message

    def send(self, message: dict[str, Any]) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(message) + "\n")
        self.process.stdin.flush()

    def call(self, op: str, **fields: Any) -> Any:
        self.n += 1
        self.send({"n": self.n, "op": op, **fields})
        answer = self.receive()
        assert answer.get("n") == self.n and "error" not in answer, answer
        return answer["result"]

    def output(self) -> str:
        return "\n".join(line[:2000] for line in self.transcript)

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(10)


# -- the expected deliveries -------------------------------------------------------------

BACKPACK_ACTION = {"create": "create", "patch": "patch", "overwrite": "update", "delete": "delete"}
OTHER_ACTION = {"create": "create", "patch": "update", "overwrite": "update", "delete": "delete"}


class Model:
    """The writes in commit order, and who must hear each (the README table)."""

    def __init__(self) -> None:
        self.expected: dict[str, list[tuple[Any, ...]]] = {
            name: [] for name in ("backpack:writer", "backpack:reader", "directus:writer", "directus:reader",
                                  "resources:writer", "resources:reader", "resources:anonymous",
                                  "socketio:writer", "socketio:reader")}
        self.records: dict[str, dict[str, Any]] = {}
        self.document: dict[str, Any] = {}

    @staticmethod
    def _readable(record: dict[str, Any]) -> bool:
        return record.get("status") == "published"

    def record(self, kind: str, result: dict[str, Any] | None, *, http: bool, via_backpack_ws: bool = False,
               key: str | None = None) -> str:
        """A committed record write; ``result`` is the record (or item) the
        writer was answered (``None`` for a delete answered 204)."""
        if kind == "delete":
            assert key is not None
            record = self.records.pop(key)  # as it was
        else:
            assert result is not None
            record = dict(result)
            record.setdefault("_id", record.pop("id", None))
            self.records[record["_id"]] = record
        key = record["_id"]
        broadcast_false = record.get("broadcast") in (False, "false")
        in_channel = isinstance(record.get("channelType"), str) and isinstance(record.get("channelId"), str)
        readable = self._readable(record)
        bp = (BACKPACK_ACTION[kind], key, http)
        # Backpack's routing: broadcast:false -> the writer's connections; a channel -> its
        # subscribers (none here) plus the sending socket; else everyone. Then the rules.
        if broadcast_false or not in_channel or via_backpack_ws:
            self.expected["backpack:writer"].append(bp)
        if not broadcast_false and not in_channel and readable:
            self.expected["backpack:reader"].append(bp)
        # Directus and resources ignore Backpack's routing: only the rules decide.
        other = (OTHER_ACTION[kind], key)
        self.expected["directus:writer"].append(other)
        self.expected["resources:writer"].append(("collection", *other))
        if readable:
            self.expected["directus:reader"].append(other)
            self.expected["resources:reader"].append(("collection", *other))
        return key

    def channel_created(self, channel_id: str, info_id: str) -> None:
        """A Backpack ``createChannel`` whose users-information collection is the
        subscribed one (its channel type another): the channel document (in the
        other collection), then the writer's users-information document created
        and patched - bookkeeping Backpack tells as the action's reply alone, and
        Directus and resources as the records they are (unpublished: not the reader's)."""
        self.expected["backpack:writer"].append(("createChannel", channel_id, False))
        for kind in ("create", "patch"):
            self.expected["directus:writer"].append((OTHER_ACTION[kind], info_id))
            self.expected["resources:writer"].append(("collection", OTHER_ACTION[kind], info_id))

    def entry(self, space: str, value: Any) -> None:
        """A write of the subscribed entry (``value`` None: deleted) in the subscribed scope."""
        self.expected["resources:writer"].append((space, value))

    def document_write(self, content: dict[str, Any]) -> None:
        """A write that changed the document: ``content`` is the document after it."""
        self.document = content
        self.expected["resources:anonymous"].append(("document", json.dumps(content, sort_keys=True)))

    def chat(self, event: str, chat_id: int, *, over_socket: bool) -> None:
        self.expected["socketio:reader"].append((event, chat_id))
        if not over_socket:  # the room minus the socket that wrote it
            self.expected["socketio:writer"].append((event, chat_id))


def _observed(name: str, frames: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """A subscriber's frames in the model's terms."""
    seen: list[tuple[Any, ...]] = []
    for frame in frames:
        if name.startswith("backpack:"):
            seen.append((frame["action"], frame["response"]["_id"], frame.get("httpRequest", False)))
        elif name.startswith("directus:"):
            if frame.get("type") == "ping":  # the heartbeat, should a run be slow
                continue
            assert frame.get("type") == "subscription" and frame["uid"] == "1" and len(frame["data"]) == 1, frame
            item = frame["data"][0]
            seen.append((frame["event"], item if isinstance(item, str) else item["id"]))
        elif name.startswith("socketio:"):
            seen.append((frame["event"], frame["payload"]["id"]))
        else:
            resource, data = frame["resource"], frame["data"]
            if resource["type"] == "collection":
                seen.append(("collection", data["action"], data["record"]["_id"]))
            elif resource["type"] == "document":
                seen.append(("document", json.dumps(data["content"], sort_keys=True)))
            else:
                seen.append((resource["type"], None if frame.get("deleted") else data))
    return seen


# -- the test ----------------------------------------------------------------------------


@needs_node_clients
def test_every_client_at_once_receives_exactly_what_the_table_says(tmp_path: Path) -> None:
    started = time.monotonic()
    server = _start(tmp_path)
    driver: Driver | None = None
    try:
        # Accounts (registered through Backpack: one account across protocols), the
        # reader's role set by the admin, the writer's static token.
        # ``writer`` and ``reader`` keep their Backpack session cookies; ``other`` (whose
        # one-cookie jar Asnity's refresh cookie may take) makes every other call.
        writer, reader, other = Http(server), Http(server), Http(server)
        writer_id = writer.login("writer@example.com", PASSWORD)
        reader.login("reader@example.com", PASSWORD)
        admin = _directus_login(other, "admin@example.com")
        status, found = _json(other, "GET", "/_/api/users?email=reader@example.com", bearer=admin)
        assert status == 200 and len(found["data"]) == 1, found
        status, body = _json(other, "PUT", f"/_/api/users/{found['data'][0]['id']}/role", {"role": "reader"},
                             bearer=admin)
        assert status == 200 and body["data"]["role"] == "reader", body
        status, body = _json(other, "POST", "/_/api/me/tokens", bearer=_directus_login(other, "writer@example.com"))
        assert status == 201, body
        static_token = body["data"]["token"]
        reader_access = _directus_login(other, "reader@example.com")

        # Asnity: the same accounts sign in; the writer's community and channel, the reader invited.
        alice_token, _ = _asnity_signin(other, "writer@example.com")
        bob_token, bob_id = _asnity_signin(other, "reader@example.com")
        status, body = _json(other, "POST", "/api/community", {"name": "Everyone"}, bearer=alice_token)
        assert status == 201, body
        community = body["result"]["_id"]
        status, body = _json(other, "POST", f"/api/communities/{community}/users", {"users": [bob_id]},
                             bearer=alice_token)
        assert status == 201, body
        status, body = _json(other, "POST", "/api/channel",
                             {"communityId": community, "name": "general", "isPrivate": False, "type": "Channel"},
                             bearer=alice_token)
        assert status == 201, body
        channel = body["result"]["_id"]
        status, body = _json(other, "POST", f"/api/channels/{channel}", {}, bearer=bob_token)
        assert status in (201, 400, 403), body  # joined, or already a member of a public channel

        # An inbox document (no account: its tokens are the authorization).
        read_token, write_token = secrets.token_hex(16), secrets.token_hex(16)
        status, body = _json(other, "PUT", f"/backend/documents/{read_token}", {"#messages": {}},
                             headers={"Write-Token": write_token, "Derived-From": "0", "Revision": "1"})
        assert status == 200, body

        setup = {
            "password": PASSWORD, "collection": COLLECTION, "kvId": KV_ID, "readToken": read_token,
            "community": community, "channel": channel,
            "writer": {"cookie": writer.cookie, "staticToken": static_token, "asnityToken": alice_token,
                       "subprotocol": encode_headers({**SCOPE, "authorization": f"Bearer {static_token}"})},
            "reader": {"email": "reader@example.com", "cookie": reader.cookie, "asnityToken": bob_token,
                       "subprotocol": encode_headers({**SCOPE, "authorization": f"Bearer {reader_access}"})},
        }
        driver = Driver(server, setup)
        ready = driver.receive(timeout=30)
        probes = ready["ready"]

        # What subscribing answered: the 'no' cells that are refusals.
        assert probes["writerCollection"]["warning"] == "resource_not_found", probes
        assert probes["writerKv"]["warning"] == "resource_not_found", probes
        assert probes["writerLiveConfig"]["warning"] == "resource_not_found", probes
        assert probes["readerCollection"]["warning"] == "resource_not_found", probes
        assert probes["writerChats"]["code"] == "invalid_message", probes  # _asnity.* is no collection
        assert probes["readerKv"]["code"] == "forbidden", probes  # no kvStore rule for the reader
        assert probes["anonymousCollection"]["code"] == "forbidden", probes  # the public role reads nothing
        assert probes["anonymousDocument"]["data"] == {"revision": 1, "content": {"#messages": {}}}, probes
        assert probes["directusKvStore"]["type"] == "ERROR", probes  # kvStore is not a Directus collection
        assert probes["directusChats"]["type"] == "ERROR", probes  # nor is _asnity.chats

        model = Model()
        model.document_write({"#messages": {}})  # what subscribing answered
        kv = {"Authorization": f"Bearer {static_token}", **SCOPE}

        def bp(method: str, path: str, body: Any = None) -> Any:
            status, value, _ = writer.request(method, path, body)
            assert status == 200, (method, path, value)
            return value

        def put_kv(path: str, value: Any, headers: dict[str, str] = kv) -> None:
            status, body, _ = other.request("PUT", path, value, key=None, headers=headers)
            assert status == 200, body

        def inbox_http(method: str, message_id: str, body: Any = None) -> None:
            status, value, _ = other.request(method, f"/backend/documents/{write_token}/messages/{message_id}", body,
                                              key=None, headers={})
            assert status == 200, value

        def asnity_rest(method: str, path: str, body: Any = None) -> dict[str, Any]:
            status, value = _json(other, method, f"/api/channels/{channel}{path}", body, bearer=alice_token)
            assert status in (200, 201), value
            return value["result"]

        # -- the writes, in commit order (each acknowledged before the next) -------------
        a = model.record("create", bp("POST", f"/{COLLECTION}", {"title": "a", "status": "published", "body": "secret a"}),
                         http=True)
        b = model.record("create", bp("POST", f"/{COLLECTION}", {"title": "b", "status": "draft", "body": "secret b"}),
                         http=True)
        put_kv(f"/realtime/kv/{KV_ID}", {"hp": 10})
        model.entry("kvStore", {"hp": 10})
        put_kv(f"/realtime/kv/{KV_ID}", {"hp": 99}, {**kv, "x-m2-organization": "otherOrg"})  # another scope: no one
        put_kv("/realtime/kv/World:other", {"hp": 1})  # another entry: no one
        model.record("patch", bp("PATCH", f"/{COLLECTION}/{a}", {"title": "a2"}), http=True)
        chat_rest = asnity_rest("POST", "/chat", {"type": "TEXT", "content": "over REST"})
        model.chat("new-chat", chat_rest["id"], over_socket=False)
        model.record("overwrite", bp("PUT", f"/{COLLECTION}/{b}", {"title": "b2", "status": "published"}), http=True)
        inbox_http("POST", "00000000000000a1", {"#": 1, "t": 20.5})
        model.document_write({"#messages": {"00000000000000a1": {"#": 1, "t": 20.5}}})
        # Before any websocket create: the users-information document is the writer's
        # first record of the collection with its userId, and none exists yet.
        created = driver.call("bp_ws", message={"action": "createChannel", "usersInformationCollection": COLLECTION,
                                                "channelType": "e2eRooms", "name": "Mountain Bikers"})
        (info,) = [r for r in bp("GET", f"/{COLLECTION}") if r.get("userId") == writer_id and "channels" in r]
        model.channel_created(created["_id"], info["_id"])
        c = model.record("create", driver.call("bp_ws", message={"action": "create", "collection": COLLECTION,
                                                                 "data": {"title": "c", "status": "draft"}}),
                         http=False, via_backpack_ws=True)
        chat_socket = driver.call("sio_chat", chat={"chatType": "new", "content": "over the socket"})
        model.chat("new-chat", chat_socket["id"], over_socket=True)
        model.record("patch", driver.call("bp_ws", message={"action": "patch", "collection": COLLECTION, "id": c,
                                                            "data": {"status": "published"}}),
                     http=False, via_backpack_ws=True)
        assert send_message_udp("127.0.0.1", server.port, write_token, "00000000000000b2", {"#": 1, "v": 7}) == "M"
        model.document_write({"#messages": {**model.document["#messages"], "00000000000000b2": {"#": 1, "v": 7}}})
        # The same message again: the merge leaves the document as it was, so no update.
        assert send_message_udp("127.0.0.1", server.port, write_token, "00000000000000b2", {"#": 1, "v": 7}) == "M"
        # A PUT of the whole document (the owner's write, compare-and-swap on its revision).
        status, _, got = other.request("GET", f"/backend/documents/{read_token}", key=None, headers={})
        assert status == 200
        content = {**model.document, "title": "thermostat"}
        status, body, _ = other.request("PUT", f"/backend/documents/{read_token}", content, key=None, headers={
            "Write-Token": write_token, "Derived-From": got["revision"], "Revision": str(int(got["revision"]) + 1)})
        assert status == 200, body
        model.document_write(content)
        model.record("overwrite", driver.call("bp_ws", message={"action": "update", "collection": COLLECTION, "id": a,
                                                                "data": {"title": "a3", "status": "draft"}}),
                     http=False, via_backpack_ws=True)
        put_kv(f"/realtime/live-config/{KV_ID}", {"mode": "ffa"})  # same id, the other space
        model.entry("liveConfig", {"mode": "ffa"})
        d = model.record("create", driver.call("dx_rest", action="create", data={"title": "d", "status": "published"}),
                         http=True)
        asnity_rest("PATCH", f"/chats/{chat_rest['id']}", {"content": "edited over REST"})
        model.chat("modify-chat", chat_rest["id"], over_socket=False)
        model.record("patch", driver.call("dx_rest", action="update", id=d, data={"status": "draft"}), http=True)
        e = model.record("create", driver.call("dx_ws", action="create", data={"title": "e", "status": "published"}),
                         http=False)
        driver.call("sio_chat", chat={"chatType": "modify", "chatId": chat_socket["id"], "content": "edited"})
        model.chat("modify-chat", chat_socket["id"], over_socket=True)
        model.record("patch", driver.call("dx_ws", action="update", id=e, data={"title": "e2"}), http=False)
        status, _, _ = other.request("DELETE", f"/realtime/kv/{KV_ID}", key=None, headers=kv)
        assert status == 200
        model.entry("kvStore", None)
        model.record("create", bp("POST", f"/{COLLECTION}", {"title": "f", "status": "published", "broadcast": False}),
                     http=True)
        model.record("create", bp("POST", f"/{COLLECTION}", {"title": "g", "status": "published",
                                                             "channelType": "rooms", "channelId": "nobody-here"}),
                     http=True)
        inbox_http("DELETE", "00000000000000a1")
        model.document_write({"#messages": {"00000000000000b2": {"#": 1, "v": 7}}, "title": "thermostat"})
        model.record("delete", bp("DELETE", f"/{COLLECTION}/{b}"), http=True, key=b)
        driver.call("sio_chat", chat={"chatType": "delete", "chatId": chat_socket["id"]})
        model.chat("delete-chat", chat_socket["id"], over_socket=True)
        model.record("delete", driver.call("bp_ws", message={"action": "delete", "collection": COLLECTION, "id": c}),
                     http=False, via_backpack_ws=True, key=c)
        driver.call("dx_rest", action="delete", id=d)
        model.record("delete", None, http=True, key=d)
        model.record("delete", bp("DELETE", f"/{COLLECTION}/{a}"), http=True, key=a)
        asnity_rest("DELETE", f"/chats/{chat_rest['id']}")
        model.chat("delete-chat", chat_rest["id"], over_socket=False)

        # -- sentinels: the last write each subscriber must receive ----------------------
        model.record("create", bp("POST", f"/{COLLECTION}", {"title": "sentinel-record", "status": "published"}),
                     http=True)
        put_kv(f"/realtime/live-config/{KV_ID}", {"marker": "sentinel-live"})
        model.entry("liveConfig", {"marker": "sentinel-live"})
        chat_sentinel = asnity_rest("POST", "/chat", {"type": "TEXT", "content": "sentinel-chat"})
        model.chat("new-chat", chat_sentinel["id"], over_socket=False)
        assert send_message_udp("127.0.0.1", server.port, write_token, "00000000000000c3", {"#": 1, "m": "sentinel-doc"}) == "M"
        model.document_write({**model.document,
                              "#messages": {**model.document["#messages"], "00000000000000c3": {"#": 1, "m": "sentinel-doc"}}})
        markers = {name: "sentinel-record" for name in model.expected}
        markers.update({"resources:writer": "sentinel-live", "resources:anonymous": "sentinel-doc",
                        "socketio:writer": "sentinel-chat", "socketio:reader": "sentinel-chat"})
        driver.send({"op": "finish", "sentinels": markers})
        finished = driver.receive(timeout=30)
        logs, yielded = finished["logs"], finished["sdk"]
        for http in (writer, reader, other):
            http.close()
    finally:
        if driver is not None:
            driver.close()
        server.stop()

    # -- what every subscriber received: the whole sequence, once, in commit order -------
    assert set(logs) == set(model.expected), sorted(logs)
    for name, expected in model.expected.items():  # shown with -s, and on failure
        sdk = f" (the SDK yielded {len(yielded[name])})" if name in yielded else ""
        print(f"{name}: {len(expected)} expected, {len(logs[name])} received{sdk}: {expected}")
    for name, expected in model.expected.items():
        assert _observed(name, logs[name]) == expected, (name, driver.output() if driver else "")

    # The SDK's subscriptions yielded these frames, in order, each once (and may have
    # missed one that arrived in the same read as another: see the Node script).
    for name, frames in yielded.items():
        events = [frame for frame in logs[name] if frame.get("type") == "subscription"]
        rest = iter(events)
        assert frames and all(any(frame == event for event in rest) for frame in frames), (name, frames)

    # The reader never received a field or a record its role hides.
    for name in ("backpack:reader", "directus:reader", "resources:reader"):
        assert "secret" not in json.dumps(logs[name]) and '"draft"' not in json.dumps(logs[name]), name
    for frame in logs["backpack:reader"]:
        assert set(frame["response"]) <= {"_id", *READER_FIELDS}, frame
    for frame in logs["directus:reader"]:
        assert frame["event"] == "delete" or set(frame["data"][0]) <= {"id", *READER_FIELDS}, frame
    for frame in logs["resources:reader"]:
        assert set(frame["data"]["record"]) <= {"_id", *READER_FIELDS}, frame
    # The writer sees whole records, with who wrote them; versions increase per resource.
    assert any("body" in frame["response"] for frame in logs["backpack:writer"])
    last: dict[tuple[str, str], str] = {}
    for name in ("resources:writer", "resources:reader", "resources:anonymous"):
        for frame in logs[name]:
            ref = (name, frame["resource"]["type"] + ":" + frame["resource"]["id"])
            assert frame["version"] > last.get(ref, ""), (ref, frame)
            last[ref] = frame["version"]
            if frame["resource"]["type"] != "document":
                assert frame["userId"] == writer_id, frame
            else:
                assert frame["userId"] is None, frame
    revisions = [frame["data"]["revision"] for frame in logs["resources:anonymous"]]
    assert revisions == sorted(set(revisions)), revisions
    assert time.monotonic() - started < 60
