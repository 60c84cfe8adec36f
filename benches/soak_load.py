"""The soak's load (bench_soak.py --role load, its own process, trio): the
subscribers of every websocket protocol, the writers that remember each
acknowledged write, connect churn, hostile input, a flooder and a reader that
stops. It prints its counters and errors each second as JSON lines and, when
stopped, writes the acknowledged writes to ``--acked``."""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import secrets
import sys
import time
from pathlib import Path
from typing import Any

import harness  # benches/harness.py: HTTP clients, accounts, constants
from soak_data import ARTICLES, HOST, INBOXES, KV_KEYS, MESSAGE_IDS, ORG, PROJECT, WS_COLLECTION


def load_main(options: argparse.Namespace) -> int:
    import trio

    setup = json.loads(Path(options.setup).read_text())
    return trio.run(_load, setup, options)


async def _load(setup: dict[str, Any], options: argparse.Namespace) -> int:  # noqa: C901 - one scenario
    import h11
    import trio
    from trio_websocket import ConnectionClosed, HandshakeError, open_websocket_url

    from satchel.protocol.inbox.datagrams import decode_answer, encode_request
    from satchel.protocol.resources import encode_headers

    port = setup["port"]
    ws_base = f"ws://{HOST}:{port}"
    cookie_header = [(b"Cookie", setup["cookie"].encode())]
    bearer = {"Authorization": f"Bearer {setup['token']}"}
    scope = {"x-m2-organization": ORG, "x-m2-project": PROJECT}
    nsp = f"/socket/commu-{setup['community']}"
    channel = setup["channel"]
    counters: dict[str, int] = {}
    errors: list[tuple[float, str, str]] = []
    acked: dict[str, Any] = {"rest": [], "ws": [], "kv": {}, "inbox": {}, "chats": []}
    rng = random.Random(14)

    @contextlib.asynccontextmanager
    async def flat() -> Any:
        """An inner nursery's group, as its first real exception (trio groups
        them; the handlers below name the exceptions themselves)."""
        try:
            yield
        except BaseExceptionGroup as group:
            leaves: list[BaseException] = []
            stack: list[BaseException] = [group]
            while stack:
                item = stack.pop()
                if isinstance(item, BaseExceptionGroup):
                    stack.extend(item.exceptions)
                elif not isinstance(item, trio.Cancelled):
                    leaves.append(item)
            if not leaves:
                raise
            raise leaves[0] from None

    # What the network (or a server that was just killed) can raise at a client.
    net = (OSError, ConnectionError, trio.BrokenResourceError, trio.ClosedResourceError, trio.TooSlowError,
           h11.ProtocolError, ConnectionClosed, HandshakeError)

    def count(name: str, n: int = 1) -> None:
        counters[name] = counters.get(name, 0) + n

    def error(kind: str, detail: Any) -> None:
        count("errors")
        errors.append((time.time(), kind, str(detail)[:200]))

    # -- a keep-alive HTTP/1.1 client on h11 ----------------------------------------------
    class Http:
        def __init__(self, headers: dict[str, str] | None = None) -> None:
            self.headers = headers or {}
            self.stream: Any = None
            self.conn: Any = None

        async def request(self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None,
                          raw: bytes | None = None) -> tuple[int, Any]:
            data = raw if raw is not None else (b"" if body is None else json.dumps(body).encode())
            sent = [("Host", f"{HOST}:{port}"), ("Content-Length", str(len(data)))]
            if data:
                sent.append(("Content-Type", "application/json"))
            sent += list({**self.headers, **(headers or {})}.items())
            try:
                with trio.fail_after(10):
                    if self.stream is None:
                        self.stream = await trio.open_tcp_stream(HOST, port)
                        self.conn = h11.Connection(h11.CLIENT)
                    conn = self.conn
                    out = conn.send(h11.Request(method=method, target=path, headers=sent))
                    out += conn.send(h11.Data(data=data)) if data else b""
                    out += conn.send(h11.EndOfMessage())
                    await self.stream.send_all(out)
                    status, chunks = 0, []
                    while True:
                        event = conn.next_event()
                        if event is h11.NEED_DATA:
                            conn.receive_data(await self.stream.receive_some(65536))
                        elif isinstance(event, h11.Response):
                            status = event.status_code
                        elif isinstance(event, h11.Data):
                            chunks.append(bytes(event.data))
                        elif isinstance(event, h11.EndOfMessage):
                            break
                        elif isinstance(event, h11.ConnectionClosed):
                            raise ConnectionError("closed mid-answer")
                    if conn.our_state is h11.DONE and conn.their_state is h11.DONE:
                        conn.start_next_cycle()
                    else:
                        await self.aclose()
            except BaseException:
                await self.aclose()
                raise
            payload = b"".join(chunks)
            try:
                return status, json.loads(payload) if payload else None
            except ValueError:
                return status, payload

        async def aclose(self) -> None:
            if self.stream is not None:
                stream, self.stream = self.stream, None
                with trio.CancelScope(shield=True):
                    await stream.aclose()

    # -- pacing ---------------------------------------------------------------------------
    async def every(rate: float, job: Any) -> None:
        """Run ``job`` ``rate`` times a second, one at a time."""
        period = 1.0 / rate
        due = trio.current_time()
        while True:
            due += period
            await job()
            await trio.sleep_until(max(due, trio.current_time()))

    async def guarded(task: Any, *args: Any) -> None:
        """Run ``task`` again after anything it did not expect (a bench bug or
        an answer of a shape it does not know), counted as a client error."""
        while True:
            try:
                await task(*args)
                return
            except Exception as failure:  # noqa: BLE001 - counted and shown, the load goes on
                error(f"unexpected in {getattr(task, '__name__', task)}", repr(failure))
                await trio.sleep(1)

    async def once(task: Any, *args: Any) -> None:
        try:
            await task(*args)
        except Exception as failure:  # noqa: BLE001 - as guarded(), without the retry
            error(f"unexpected in {getattr(task, '__name__', task)}", repr(failure))

    # -- websockets of every protocol -------------------------------------------------------
    def resource_protocol() -> str:
        return encode_headers({**scope, "authorization": f"Bearer {setup['token']}"})

    async def greet(kind: str, ws: Any) -> None:
        """Open the session of ``kind`` on a fresh websocket and wait for its first answer."""
        with trio.fail_after(10):
            if kind == "backpack":
                assert '"connection"' in await ws.get_message()
            elif kind == "socketio":
                assert (await ws.get_message()).startswith("0{")
                await ws.send_message(f"40{nsp},{json.dumps({'token': 'Bearer ' + setup['sio_token']})}")
                while True:
                    message = await ws.get_message()
                    if message == "2":
                        await ws.send_message("3")
                        continue
                    if not message.startswith(f"40{nsp},"):
                        raise RuntimeError(f"namespace refused: {message[:120]}")
                    break
                await ws.send_message(f'42{nsp},["join",{{"channels":["{channel}"]}}]')
            elif kind == "directus":
                await ws.send_message(json.dumps({"type": "auth", "access_token": setup["token"]}))
                answer = json.loads(await ws.get_message())
                if answer.get("status") != "ok":
                    raise RuntimeError(f"auth refused: {answer}")
                await ws.send_message(json.dumps({"type": "subscribe", "collection": ARTICLES, "uid": "soak"}))
            elif kind == "resources":
                for key in KV_KEYS:
                    await ws.send_message(json.dumps({"action": "subscribe",
                                                      "resource": {"type": "kvStore", "id": key}}))
                await ws.send_message(json.dumps({"action": "subscribe", "resource": {
                    "type": "document", "id": setup["inboxes"][0]["read"]}}))
                await ws.send_message(json.dumps({"action": "subscribe",
                                                  "resource": {"type": "collection", "id": ARTICLES}}))

    def url_and_options(kind: str) -> tuple[str, dict[str, Any]]:
        if kind == "backpack":
            return f"{ws_base}/", {"extra_headers": cookie_header}
        if kind == "socketio":
            return f"{ws_base}/socket.io/?EIO=4&transport=websocket", {}
        if kind == "directus":
            return f"{ws_base}/websocket", {}
        return f"{ws_base}/realtime", {"subprotocols": [resource_protocol()]}

    async def answer_heartbeat(kind: str, ws: Any, message: str) -> bool:
        if kind == "socketio" and message == "2":
            await ws.send_message("3")
            return True
        if kind == "directus" and message.startswith('{"type":"ping"'):
            await ws.send_message('{"type":"pong"}')
            return True
        return False

    async def subscriber(kind: str, n: int) -> None:
        """A well-behaved subscriber: reads everything, answers heartbeats, and
        reconnects when closed - which counts as an error."""
        url, extra = url_and_options(kind)
        while True:
            try:
                async with open_websocket_url(url, max_message_size=8 << 20, message_queue_size=64,
                                              connect_timeout=10, disconnect_timeout=5, **extra) as ws:
                    await greet(kind, ws)
                    count(f"connected.{kind}")
                    while True:
                        message = await ws.get_message()
                        if not await answer_heartbeat(kind, ws, message):
                            count(f"received.{kind}")
                            # An error in its protocol's format, to a client that sent nothing wrong.
                            if (kind == "directus" and '"status":"error"' in message
                                    or kind == "resources" and '"error"' in message[:20]
                                    or kind == "backpack" and message.startswith('{"action":"error"')
                                    or kind == "socketio" and (message.startswith("44")
                                                               or "failed-to-send-message" in message[:80])):
                                error(f"{kind} error frame", message)
            except (*net, RuntimeError, AssertionError, ValueError) as failure:
                reason = getattr(failure, "reason", None)
                error(f"{kind} subscriber closed", reason or repr(failure))
            await trio.sleep(0.5)

    # -- writers ---------------------------------------------------------------------------
    rest = Http({"Authorization": f"key {harness.API_KEY}", "Cookie": setup["cookie"]})
    rest_seq = 0

    async def rest_create() -> None:
        nonlocal rest_seq
        rest_seq += 1
        try:
            status, record = await rest.request("POST", f"/{ARTICLES}", {"title": f"soak {rest_seq}",
                                                                          "n": rest_seq})
            if status == 200 and isinstance(record, dict) and "_id" in record:
                acked["rest"].append(record["_id"])
                count("acked.rest")
            else:
                error("REST create refused", f"{status} {str(record)[:100]}")
        except net as failure:
            error("REST create failed", repr(failure))

    kv_http = Http({**bearer, **scope})
    kv_seq = 0

    async def kv_write() -> None:
        nonlocal kv_seq
        kv_seq += 1
        key = KV_KEYS[kv_seq % len(KV_KEYS)]
        try:
            status, answer = await kv_http.request("PUT", f"/realtime/kv/{key}", {"n": kv_seq})
            if status == 200:
                acked["kv"][key] = kv_seq
                count("acked.kv")
            else:
                error("kv write refused", f"{status} {str(answer)[:100]}")
        except net as failure:
            error("kv write failed", repr(failure))

    inbox_http = Http()
    inbox_seq = 0

    def remember_message(inbox: int, message_id: str, revision: int) -> None:
        slot = acked["inbox"].setdefault(f"{inbox}/{message_id}", 0)
        if revision > slot:
            acked["inbox"][f"{inbox}/{message_id}"] = revision

    async def inbox_post() -> None:
        nonlocal inbox_seq
        inbox_seq += 1
        inbox = inbox_seq % INBOXES
        message_id = f"{(inbox_seq // INBOXES) % MESSAGE_IDS:016x}"
        revision = time.time_ns() // 1000
        write = setup["inboxes"][inbox]["write"]
        try:
            status, answer = await inbox_http.request(
                "POST", f"/backend/documents/{write}/messages/{message_id}", {"#": revision, "via": "http"})
            if status == 200:
                remember_message(inbox, message_id, revision)
                count("acked.inbox_http")
            else:
                error("inbox post refused", f"{status} {str(answer)[:100]}")
        except net as failure:
            error("inbox post failed", repr(failure))

    udp = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM)
    await udp.connect((HOST, port))
    udp_pending: dict[bytes, tuple[float, int, str, int, bytes]] = {}
    udp_seq = 0

    async def udp_send() -> None:
        nonlocal udp_seq
        udp_seq += 1
        inbox = udp_seq % INBOXES
        message_id = f"{MESSAGE_IDS + (udp_seq // INBOXES) % MESSAGE_IDS:016x}"
        revision = time.time_ns() // 1000
        nonce = secrets.token_bytes(8)
        request = encode_request(setup["inboxes"][inbox]["write"], message_id, {"#": revision, "via": "udp"},
                                 timestamp_ms=time.time_ns() // 1_000_000, nonce=nonce)
        udp_pending[nonce] = (time.monotonic(), inbox, message_id, revision, request)
        try:
            await udp.send(request)
        except OSError as failure:
            error("UDP send failed", repr(failure))
        # Answers lost on a busy loopback are retried by a real device; here an
        # unanswered datagram is counted, not an error (UDP may drop it).
        for key, (sent, *_rest) in list(udp_pending.items()):
            if time.monotonic() - sent > 5:
                del udp_pending[key]
                count("udp.unanswered")

    async def udp_receive() -> None:
        while True:
            answer = await udp.recv(64)
            entry = udp_pending.pop(answer[6:14], None) if len(answer) == 30 else None
            if entry is None:
                continue
            _, inbox, message_id, revision, request = entry
            code = decode_answer(answer, setup["inboxes"][inbox]["write"], request)
            if code == "M":
                remember_message(inbox, message_id, revision)
                count("acked.inbox_udp")
            else:
                error("UDP message refused", code)

    async def ws_writer() -> None:
        """Backpack websocket creates, acknowledged by the writer's own copy."""
        seq = 0
        while True:
            pending: dict[str, float] = {}
            try:
                async with open_websocket_url(f"{ws_base}/", extra_headers=cookie_header, connect_timeout=10,
                                              disconnect_timeout=5, max_message_size=8 << 20) as ws:
                    await greet("backpack", ws)

                    async def reader() -> None:
                        while True:
                            message = await ws.get_message()
                            if f'"collection":"{WS_COLLECTION}"' not in message:
                                continue
                            frame = json.loads(message)
                            record = frame.get("response") or {}
                            if pending.pop(str(record.get("k")), None) is not None:
                                acked["ws"].append(record["_id"])
                                count("acked.ws")

                    async with flat(), trio.open_nursery() as inner:
                        inner.start_soon(reader)
                        while True:
                            seq += 1
                            pending[f"w{seq}"] = time.monotonic()
                            await ws.send_message(json.dumps({"action": "create", "collection": WS_COLLECTION,
                                                              "data": {"k": f"w{seq}"}}))
                            for key, sent in list(pending.items()):
                                if time.monotonic() - sent > 10:
                                    del pending[key]
                                    error("websocket create unanswered", key)
                            await trio.sleep(1 / options.ws_writes)
            except (*net, AssertionError, ValueError) as failure:
                error("websocket writer closed", getattr(failure, "reason", None) or repr(failure))
            await trio.sleep(0.5)

    async def chat_writer() -> None:
        """Socket.IO chats with an ack ({written: true}); the room's other clients hear them."""
        seq = 0
        url = f"{ws_base}/socket.io/?EIO=4&transport=websocket"
        while True:
            pending: dict[int, tuple[float, int]] = {}
            try:
                async with open_websocket_url(url, connect_timeout=10, disconnect_timeout=5) as ws:
                    await greet("socketio", ws)

                    async def reader() -> None:
                        prefix = f"43{nsp},"
                        while True:
                            message = await ws.get_message()
                            if message == "2":
                                await ws.send_message("3")
                            elif message.startswith(prefix):
                                body = message[len(prefix):]
                                cut = body.index("[")
                                ack_id = int(body[:cut])
                                answer = json.loads(body[cut:])[0]
                                entry = pending.pop(ack_id, None)
                                if entry is None:
                                    continue
                                if answer.get("written"):
                                    acked["chats"].append(entry[1])
                                    count("acked.chat")
                                else:
                                    error("chat refused", answer)

                    async with flat(), trio.open_nursery() as inner:
                        inner.start_soon(reader)
                        ack_id = 0
                        while True:
                            seq += 1
                            ack_id += 1
                            pending[ack_id] = (time.monotonic(), seq)
                            chat = {"chatType": "new", "channelId": channel, "content": f"#{seq:010d} soak"}
                            await ws.send_message(f"42{nsp},{ack_id}" + json.dumps(["chat", chat]))
                            for key, (sent, _) in list(pending.items()):
                                if time.monotonic() - sent > 10:
                                    del pending[key]
                                    error("chat unacknowledged", key)
                            await trio.sleep(1 / options.chats)
            except (*net, RuntimeError, AssertionError, ValueError) as failure:
                error("chat writer closed", getattr(failure, "reason", None) or repr(failure))
            await trio.sleep(0.5)

    # -- churn -------------------------------------------------------------------------------
    kinds = ("backpack", "socketio", "directus", "resources")
    churn_slots = trio.CapacityLimiter(64)

    async def raw_upgrade(path: str, headers: str = "") -> Any:
        stream = await trio.open_tcp_stream(HOST, port)
        key = secrets.token_bytes(16).hex()[:22] + "=="
        await stream.send_all((f"GET {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\nUpgrade: websocket\r\n"
                               f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
                               f"{headers}\r\n").encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = await stream.receive_some(65536)
            if not chunk:
                raise ConnectionError("closed during the handshake")
            head += chunk
        if not head.startswith(b"HTTP/1.1 101"):
            await stream.aclose()
            raise ConnectionError(head.split(b"\r\n", 1)[0].decode(errors="replace"))
        return stream

    async def churn_one(kind: str, polite: bool) -> None:
        async with churn_slots:
            try:
                with trio.fail_after(15):
                    if polite:
                        url, extra = url_and_options(kind)
                        async with open_websocket_url(url, connect_timeout=10, disconnect_timeout=5,
                                                      max_message_size=8 << 20, **extra) as ws:
                            await greet(kind, ws)
                            with trio.move_on_after(rng.uniform(0.2, 3.0)):
                                while True:
                                    message = await ws.get_message()
                                    await answer_heartbeat(kind, ws, message)
                    else:
                        path = {"backpack": "/", "socketio": "/socket.io/?EIO=4&transport=websocket",
                                "directus": "/websocket", "resources": "/realtime"}[kind]
                        headers = {"backpack": f"Cookie: {setup['cookie']}\r\n",
                                   "resources": f"Sec-WebSocket-Protocol: {resource_protocol()}\r\n"}.get(kind, "")
                        stream = await raw_upgrade(path, headers)
                        await trio.sleep(rng.uniform(0.2, 3.0))
                        await stream.aclose()  # no close frame: a crashed client
                count("churn.done")
            except (*net, RuntimeError, AssertionError, ValueError) as failure:
                error(f"churn {kind}", getattr(failure, "reason", None) or repr(failure))

    async def churn(nursery: Any) -> None:
        n = 0
        while True:
            n += 1
            nursery.start_soon(once, churn_one, kinds[n % 4], n % 8 < 4)
            await trio.sleep(1 / options.churn)

    # -- hostile input -------------------------------------------------------------------------
    hostile_frames = {
        "backpack": ["{not json", '{"action":"noSuchAction"}', '{"action":"create","collection":5}', "[]",
                     "x" * (3 << 19)],
        "directus": ["{not json", '{"type":"noSuchType"}', '{"type":"subscribe","query":{"filter":{"a":{"_zz":1}}}}',
                     "x" * (3 << 19)],
        "resources": ["{not json", '{"action":"noSuchAction"}', '{"action":"subscribe","resource":{"type":"x"}}',
                      "x" * (3 << 19)],
        "socketio": ["xyz", "4abc", '42abc["x"]', "4" + "9" * 25_000],
    }

    async def hostile_one(n: int) -> None:
        kind = kinds[n % 4]
        frames = hostile_frames[kind]
        frame = frames[(n // 4) % len(frames)]
        url, extra = url_and_options(kind)
        if kind == "directus":
            url += f"?access_token={setup['token']}"  # the extension's latest format
        try:
            with trio.fail_after(15):
                async with open_websocket_url(url, connect_timeout=10, disconnect_timeout=5,
                                              max_message_size=8 << 20, **extra) as ws:
                    if kind in ("backpack", "socketio"):
                        await ws.get_message()  # the greeting / Engine.IO open packet
                    await ws.send_message(frame)
                    count("hostile.sent")
                    with trio.move_on_after(3) as waited:
                        while True:
                            message = await ws.get_message()
                            if message not in ("2",) and not message.startswith('{"type":"ping"'):
                                break
                    count("hostile.unanswered" if waited.cancelled_caught else "hostile.answered")
        except ConnectionClosed:
            count("hostile.closed")  # the server's answer to some of them
        except net as failure:
            error(f"hostile {kind} connect", repr(failure))

    async def hostile_http(n: int) -> None:
        http = Http({"Authorization": f"key {harness.API_KEY}", "Cookie": setup["cookie"]})
        try:
            cases = [("POST", f"/{ARTICLES}", b"{not json"),
                     ("POST", f"/backend/documents/{setup['inboxes'][0]['write']}/messages/zz", b"{}"),
                     ("POST", f"/backend/documents/{setup['inboxes'][0]['write']}/messages/{0:016x}", b"{nope"),
                     ("PUT", f"/realtime/kv/{KV_KEYS[0]}", b"[1,"),
                     ("POST", "/items/articles", b"\xff\xfe")]
            method, path, body = cases[n % len(cases)]
            status, _ = await http.request(method, path, raw=body, headers=bearer if "items" in path or
                                           "realtime" in path else None)
            count("hostile.http_4xx" if 400 <= status < 500 else "hostile.http_other")
            if status >= 500:
                error("hostile HTTP answered 5xx", f"{method} {path} {status}")
        except net as failure:
            error("hostile HTTP failed", repr(failure))
        finally:
            await http.aclose()
        try:
            await udp.send(secrets.token_bytes(rng.randint(1, 200)))  # garbage datagram: dropped, unanswered
            count("hostile.datagrams")
        except OSError:
            pass

    async def hostile(nursery: Any) -> None:
        n = 0
        while True:
            n += 1
            nursery.start_soon(once, hostile_one, n)
            nursery.start_soon(once, hostile_http, n)
            await trio.sleep(1 / options.hostile)

    # -- a flooder and a reader that stops -------------------------------------------------------
    async def flooder() -> None:
        frame = json.dumps({"action": "broadcast", "flood": "x" * 1000})
        while True:
            try:
                async with open_websocket_url(f"{ws_base}/", extra_headers=cookie_header, connect_timeout=10,
                                              disconnect_timeout=5, max_message_size=8 << 20) as ws:
                    await greet("backpack", ws)
                    count("flood.connections")

                    async def drain() -> None:
                        while True:
                            await ws.get_message()

                    async with flat(), trio.open_nursery() as inner:
                        inner.start_soon(drain)
                        while True:
                            await ws.send_message(frame)
                            count("flood.sent")
            except ConnectionClosed as closed:
                count(f"flood.closed_{closed.reason.code if closed.reason else 'none'}")
            except (*net, AssertionError) as failure:
                error("flooder connect", repr(failure))
            await trio.sleep(1.0)

    async def stalled_reader() -> None:
        while True:
            try:
                stream = await raw_upgrade("/", f"Cookie: {setup['cookie']}\r\n")
                count("stalled.opened")
                await trio.sleep(60)  # never reads: the flood's broadcasts pile up at the server
                closed_by_server = False
                with trio.move_on_after(2):
                    while True:
                        if not await stream.receive_some(1 << 20):
                            closed_by_server = True
                            break
                count("stalled.closed_by_server" if closed_by_server else "stalled.still_open")
                await stream.aclose()
            except net as failure:
                error("stalled reader connect", repr(failure))
                await trio.sleep(1)

    # -- status lines, and the stop -------------------------------------------------------------
    async def report() -> None:
        sent = 0
        while True:
            await trio.sleep(1)
            fresh, sent = errors[sent:], len(errors)
            print(json.dumps({"t": time.time(), "counters": counters, "errors": fresh}), flush=True)

    async def wait_for_stop(cancel: trio.CancelScope) -> None:
        await trio.to_thread.run_sync(sys.stdin.readline, abandon_on_cancel=True)
        cancel.cancel()

    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(wait_for_stop, nursery.cancel_scope)
            nursery.start_soon(report)
            for kind in kinds:
                for n in range(options.subs):
                    nursery.start_soon(guarded, subscriber, kind, n)
            nursery.start_soon(guarded, every, options.rest_writes, rest_create)
            nursery.start_soon(guarded, every, options.kv_writes, kv_write)
            nursery.start_soon(guarded, every, options.inbox_posts, inbox_post)
            nursery.start_soon(guarded, every, options.datagrams, udp_send)
            nursery.start_soon(guarded, udp_receive)
            nursery.start_soon(guarded, ws_writer)
            nursery.start_soon(guarded, chat_writer)
            nursery.start_soon(guarded, churn, nursery)
            nursery.start_soon(guarded, hostile, nursery)
            if options.flood:
                nursery.start_soon(guarded, flooder)
            nursery.start_soon(guarded, stalled_reader)
    finally:
        Path(options.acked).write_text(json.dumps({"acked": acked, "counters": counters,
                                                   "errors_total": len(errors)}))
    print(json.dumps({"done": True}), flush=True)
    return 0
