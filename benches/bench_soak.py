"""Soak (issue 14 part 4): minutes of mixed load on one server, sampled each second.

    python benches/bench_soak.py                  # 10 minutes (the issue's figure)
    python benches/bench_soak.py --minutes 2      # a short run (indicative)
    python benches/run.py --only soak             # the same, from the main runner

One real ``satchel serve`` (SQLite in a temp dir, the limits at their
defaults) pinned to CPU 0; the load in one more Python process (trio,
trio-websocket) pinned to CPU 1; this process samples and probes. The load:

- well-behaved subscribers in every protocol: Backpack websockets (session
  cookie), Socket.IO clients (Engine.IO v4 websocket transport, spoken by
  hand: namespace CONNECT with the token, ``join``, pings answered), Directus
  core realtime on ``/websocket`` (auth, subscribe ``articles``) and resource
  websockets on ``/realtime`` (the kv entries, an inbox document, the
  ``articles`` collection). A subscriber the server closes is an error.
- writes, each acknowledged one remembered: Backpack REST creates
  (``POST /articles``), Backpack websocket ``create`` (acknowledged by the
  writer's own copy), kv writes (``PUT /realtime/kv/{id}``), inbox messages
  over HTTP and over UDP (signed datagrams, answer ``M``), Socket.IO chats
  with an ack.
- churn: connections of every protocol opened, greeted, held 0.2-3 s and
  closed, half with a close handshake and half by dropping the socket.
- hostile input: bad JSON, unknown actions, frames over 1 MiB, garbage
  Engine.IO packets, malformed REST bodies and datagrams. Their answers
  (error frames, closes, 400s) are expected, not errors.
- a flooder (1 KB Backpack ``broadcast`` frames as fast as the server takes
  them; reconnects when it is closed) and a reader that stops reading
  (replaced every 60 s; the server should close it as a slow consumer).

Each second: the server's RSS, CPU and open descriptors (``/proc/PID``), a
probe's latency (``GET /collections`` on a keep-alive connection, every
20 ms; p50/p99/max per second), the load's client-side errors and
``ERROR``/``CRITICAL``/``Traceback`` lines in the server's log. At the end
the server is killed with SIGKILL while the load runs, restarted on the same
data directory, and every acknowledged write is looked for.

Written to ``benches/results/soak.json`` (every sample) and
``benches/results/soak.png`` (matplotlib, Agg). The summary: RSS trend
after warm-up (a least-squares line over the post-warm-up samples, as %
growth over that span; target <= 5%), unhandled errors in the log (target
0), acknowledged writes lost (target 0), probe p99. The machine is shared:
the figures are indicative.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import http.client
import json
import os
import random
import re
import secrets
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import harness  # noqa: E402  (benches/harness.py: HTTP clients, accounts, constants)
import socketio_cases  # noqa: E402  (benches/socketio_cases.py: the Asnity REST client)

HOST = harness.HOST
EMAIL = "soak@bench.example.com"
SIO_EMAIL = "soak-sio@bench.example.com"
ORG, PROJECT = "soakOrg", "soakProj"
KV_KEYS = [f"World:soak:key{n}" for n in range(8)]
INBOXES = 4
MESSAGE_IDS = 64  # per inbox, in turn: the documents stay small
ARTICLES = "articles"  # Backpack REST creates: Backpack, Directus and resource subscribers all see them
WS_COLLECTION = "soakws"  # Backpack websocket creates
LOG_ERROR = re.compile(r"\b(ERROR|CRITICAL)\b|Traceback")


# --- the server -------------------------------------------------------------------------


def _pin(cpu: int | None) -> Any:
    def prepare() -> None:
        harness.raise_fd_limit()
        if cpu is not None:
            os.sched_setaffinity(0, {cpu})
    return prepare


def _cpus() -> tuple[int | None, int | None]:
    """(the server's CPU, the load's): the first two this process may use."""
    allowed = sorted(os.sched_getaffinity(0))
    return (allowed[0], allowed[1]) if len(allowed) >= 2 else (None, None)


class SoakServer:
    """``satchel serve`` with its output appended to a log file (all of it is
    scanned for errors; harness.Server keeps only the first lines)."""

    def __init__(self, data_dir: Path, log_path: Path, cpu: int | None, extra: list[str]) -> None:
        self.log_path = log_path
        self.log = open(log_path, "ab")
        start = log_path.stat().st_size
        self.process = subprocess.Popen(
            [sys.executable, "-m", "satchel.transports", "serve", "--host", HOST, "--port", "0",
             "--data-dir", str(data_dir), "--api-key", harness.API_KEY, *extra],
            stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env={**os.environ, "PYTHONUNBUFFERED": "1"}, preexec_fn=_pin(cpu))
        self.pid = self.process.pid
        self.port = 0
        deadline = time.monotonic() + 60
        pattern = re.compile(rb"ready at http://[\d.]+:(\d+)")
        while time.monotonic() < deadline and not self.port:
            with open(log_path, "rb") as log:
                log.seek(start)
                match = pattern.search(log.read())
            if match:
                self.port = int(match.group(1))
            elif self.process.poll() is not None:
                break
            else:
                time.sleep(0.05)
        if not self.port:
            self.kill()
            raise RuntimeError("satchel serve did not start: " + log_path.read_text(errors="replace")[-2000:])

    def rss_kb(self) -> int:
        with open(f"/proc/{self.pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0

    def cpu_seconds(self) -> float:
        with open(f"/proc/{self.pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def descriptors(self) -> int:
        return len(os.listdir(f"/proc/{self.pid}/fd"))

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)
        self.log.close()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                pass
        self.kill()


class LogScanner:
    """Reads what the server's log gained since the last call, line by line."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self.partial = b""
        self.examples: list[str] = []

    def new_errors(self) -> int:
        with open(self.path, "rb") as log:
            log.seek(self.offset)
            data = log.read()
        self.offset += len(data)
        lines = (self.partial + data).split(b"\n")
        self.partial = lines.pop()
        found = 0
        for raw in lines:
            line = raw.decode(errors="replace")
            if LOG_ERROR.search(line):
                found += 1
                if len(self.examples) < 20:
                    self.examples.append(line[:300])
        return found


# --- setup (blocking, before the load starts) -----------------------------------------------


def prepare(port: int) -> dict[str, Any]:
    """Accounts, tokens, inboxes and an Asnity community with a channel."""
    client = harness.satchel_login(port, EMAIL)
    cookie = client.cookie
    status, record = client.request("POST", f"/{ARTICLES}", {"title": "the probe's neighbour"})
    assert status == 200, (status, record)
    client.close()
    directus = harness.Http(port)
    status, answer = directus.request("POST", "/auth/login", {"email": EMAIL, "password": harness.PASSWORD,
                                                              "mode": "json"})
    directus.close()
    assert status == 200, (status, answer)
    token = answer["data"]["access_token"]
    inboxes = []
    for _ in range(INBOXES):
        read, write = secrets.token_hex(16), secrets.token_hex(16)
        http = harness.Http(port)
        status, body = http.request("PUT", f"/backend/documents/{read}", {"title": "soak", "#messages": {}},
                                    {"Write-Token": write, "Derived-From": "0", "Revision": "1"})
        http.close()
        assert status == 200, (status, body)
        inboxes.append({"read": read, "write": write})
    api = socketio_cases.AsnityApi(port)
    try:
        api.call("POST", "/user/auth/signup", {"id": SIO_EMAIL, "password": harness.PASSWORD, "nickname": "soak"})
        sio_token = api.sign_in(SIO_EMAIL, harness.PASSWORD)
        community = api.call("POST", "/community", {"name": "soak"})["_id"]
        channel = api.call("POST", "/channel", {"communityId": community, "name": "general", "isPrivate": False,
                                                 "type": "Channel"})["_id"]
    finally:
        api.close()
    return {"port": port, "cookie": cookie, "token": token, "inboxes": inboxes, "sio_token": sio_token,
            "community": community, "channel": channel}


# --- the load (its own process, trio) ---------------------------------------------------------


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


# --- the probe and the samples ---------------------------------------------------------------


class Probe(threading.Thread):
    """``GET /collections`` on one keep-alive connection every ``period`` s;
    latencies and failures, stamped, for the sampler to take per second."""

    def __init__(self, port: int, period: float) -> None:
        super().__init__(daemon=True)
        self.port = port
        self.period = period
        self.lock = threading.Lock()
        self.latencies: list[float] = []
        self.failures: list[str] = []
        self.stopped = threading.Event()

    def take(self) -> tuple[list[float], list[str]]:
        with self.lock:
            taken = self.latencies, self.failures
            self.latencies, self.failures = [], []
        return taken

    def run(self) -> None:
        connection: http.client.HTTPConnection | None = None
        headers = {"Authorization": f"key {harness.API_KEY}"}
        while not self.stopped.is_set():
            started = time.perf_counter()
            try:
                if connection is None:
                    connection = http.client.HTTPConnection(HOST, self.port, timeout=10)
                connection.request("GET", "/collections", headers=headers)
                response = connection.getresponse()
                response.read()
                elapsed = time.perf_counter() - started
                with self.lock:
                    if response.status == 200:
                        self.latencies.append(elapsed)
                    else:
                        self.failures.append(f"status {response.status}")
            except (OSError, http.client.HTTPException) as failure:
                if connection is not None:
                    connection.close()
                connection = None
                with self.lock:
                    self.failures.append(repr(failure))
            self.stopped.wait(max(0.0, self.period - (time.perf_counter() - started)))


def _cpu_seconds(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _machine() -> tuple[float, float, float]:
    """(busy CPU seconds of every process on the machine, wall-clock seconds of
    I/O stall of some task - /proc/pressure/io - and of CPU stall), for the
    disturbance others cause on a shared machine."""
    with open("/proc/stat") as stat:
        fields = [int(x) for x in stat.readline().split()[1:]]
    busy = (sum(fields[:8]) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")  # minus idle and iowait
    stalls = []
    for name in ("io", "cpu"):
        try:
            with open(f"/proc/pressure/{name}") as pressure:
                stalls.append(int(pressure.readline().rsplit("total=", 1)[1]) / 1e6)
        except (OSError, IndexError, ValueError):
            stalls.append(0.0)
    return busy, stalls[0], stalls[1]


def _mean(values: list[float]) -> float | None:
    return round(sum(values) / len(values), 1) if values else None


def _quantile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class LoadProcess:
    """The load in its own process; its status lines read in a thread."""

    def __init__(self, setup_path: Path, acked_path: Path, options: argparse.Namespace, cpu: int | None) -> None:
        args = [sys.executable, str(Path(__file__).resolve()), "--role", "load", "--setup", str(setup_path),
                "--acked", str(acked_path)]
        for name in ("subs", "rest_writes", "ws_writes", "kv_writes", "inbox_posts", "datagrams", "chats", "churn",
                     "hostile"):
            args += [f"--{name.replace('_', '-')}", str(getattr(options, name))]
        if not options.flood:
            args.append("--no-flood")
        self.process = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                        preexec_fn=_pin(cpu), env={**os.environ, "PYTHONUNBUFFERED": "1"})
        self.lock = threading.Lock()
        self.counters: dict[str, int] = {}
        self.errors: list[tuple[float, str, str]] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            try:
                status = json.loads(line)
            except ValueError:
                continue
            with self.lock:
                if "counters" in status:
                    self.counters = status["counters"]
                self.errors.extend(tuple(e) for e in status.get("errors", []))

    def snapshot(self) -> tuple[dict[str, int], list[tuple[float, str, str]]]:
        with self.lock:
            return dict(self.counters), list(self.errors)

    def stop(self) -> None:
        assert self.process.stdin is not None
        try:
            self.process.stdin.write("stop\n")
            self.process.stdin.flush()
        except OSError:
            pass
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


# --- after the kill: every acknowledged write -------------------------------------------------


def verify(port: int, setup: dict[str, Any], acked: dict[str, Any]) -> dict[str, Any]:
    client = harness.satchel_login(port, EMAIL)
    try:
        found: dict[str, Any] = {}
        for name, collection in (("rest", ARTICLES), ("ws", WS_COLLECTION)):
            status, records = client.request("GET", f"/{collection}")
            stored = {r["_id"] for r in records} if status == 200 and isinstance(records, list) else set()
            missing = [i for i in acked[name] if i not in stored]
            found[name] = {"acknowledged": len(acked[name]), "stored": len(stored), "lost": len(missing),
                           "lost_examples": missing[:5]}
    finally:
        client.close()
    directus = harness.Http(port)
    status, answer = directus.request("POST", "/auth/login", {"email": EMAIL, "password": harness.PASSWORD,
                                                              "mode": "json"})
    token = answer["data"]["access_token"]
    lost, wrong = 0, []
    for key, n in acked["kv"].items():
        status, entry = directus.request("GET", f"/realtime/kv/{key}", None,
                                         {"Authorization": f"Bearer {token}", "x-m2-organization": ORG,
                                          "x-m2-project": PROJECT})
        stored_n = (entry or {}).get("data", {}).get("n") if status == 200 and isinstance(entry, dict) else None
        if stored_n is None or stored_n < n:  # a later write, in flight at the kill, may have landed too
            lost += 1
            wrong.append(f"{key}: acknowledged n={n}, stored {stored_n}")
    found["kv"] = {"keys": len(acked["kv"]), "acknowledged_writes": "last per key", "lost": lost,
                   "lost_examples": wrong[:5]}
    lost, wrong = 0, []
    documents = {}
    for n, inbox in enumerate(setup["inboxes"]):
        status, document = directus.request("GET", f"/backend/documents/{inbox['read']}")
        documents[n] = (document or {}).get("#messages", {}) if status == 200 and isinstance(document, dict) else {}
    for slot, revision in acked["inbox"].items():
        inbox, message_id = slot.split("/")
        stored = documents[int(inbox)].get(message_id, {}).get("#")
        if stored is None or stored < revision:
            lost += 1
            wrong.append(f"inbox {inbox} message {message_id}: acknowledged # {revision}, stored {stored}")
    found["inbox"] = {"message_slots": len(acked["inbox"]), "lost": lost, "lost_examples": wrong[:5]}
    directus.close()
    api = socketio_cases.AsnityApi(port)
    try:
        api.sign_in(SIO_EMAIL, harness.PASSWORD)
        stored_chats: set[int] = set()
        page = api.call("GET", f"/channels/{setup['channel']}/chat?prev=-1")
        for _ in range(100_000):
            for chat in page.get("chat", []):
                content = chat.get("content") or ""
                if content.startswith("#") and content[1:11].isdigit():
                    stored_chats.add(int(content[1:11]))
            if "prev" not in page:
                break
            page = api.call("GET", f"/channels/{setup['channel']}/chat?prev={page['prev']}")
    finally:
        api.close()
    missing_chats = sorted(set(acked["chats"]) - stored_chats)
    found["chats"] = {"acknowledged": len(acked["chats"]), "stored": len(stored_chats), "lost": len(missing_chats),
                      "lost_examples": missing_chats[:5]}
    found["lost_total"] = sum(part["lost"] for part in found.values() if isinstance(part, dict))
    return found


# --- the run -------------------------------------------------------------------------------------


def rss_trend(samples: list[dict[str, Any]], warmup: float) -> dict[str, Any]:
    """A least-squares line through RSS over the post-warm-up samples: its rise
    over that span, in % of its value at the span's start."""
    points = [(s["t"], s["rss_kb"]) for s in samples if s["t"] >= warmup and s["rss_kb"]]
    if len(points) < 3:
        return {"samples": len(points)}
    n = len(points)
    mean_t = sum(t for t, _ in points) / n
    mean_r = sum(r for _, r in points) / n
    slope = sum((t - mean_t) * (r - mean_r) for t, r in points) / sum((t - mean_t) ** 2 for t, _ in points)
    start, end = points[0][0], points[-1][0]
    at_start = mean_r + slope * (start - mean_t)
    return {"samples": n, "from_s": start, "to_s": end, "slope_kb_per_min": round(slope * 60, 1),
            "fit_start_mb": round(at_start / 1024, 1), "fit_end_mb": round((at_start + slope * (end - start)) / 1024, 1),
            "growth_percent": round(100 * slope * (end - start) / at_start, 2),
            "min_mb": round(min(r for _, r in points) / 1024, 1), "max_mb": round(max(r for _, r in points) / 1024, 1)}


def plot(samples: list[dict[str, Any]], warmup: float, trend: dict[str, Any], title: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = [s["t"] / 60 for s in samples]
    figure, axes = plt.subplots(5, 1, figsize=(9, 10), sharex=True)
    series = [
        ("RSS (MB)", [s["rss_kb"] / 1024 for s in samples], None),
        ("CPU (% of a core)", [s["cpu_percent"] for s in samples], [s["load_cpu_percent"] for s in samples]),
        ("open descriptors", [s["descriptors"] for s in samples], None),
        ("probe latency (ms)", [s["probe_p99_ms"] for s in samples], [s["probe_p50_ms"] for s in samples]),
    ]
    for axis, (label, values, second) in zip(axes, series):
        names = ("server", "load process") if label.startswith("CPU") else ("p99", "p50")
        axis.plot(t, values, linewidth=0.9, label=names[0] if second else None)
        if second:
            axis.plot(t, second, linewidth=0.7, label=names[1])
            if label.startswith("CPU"):
                axis.plot(t, [s.get("other_cpu_percent", 0) for s in samples], linewidth=0.7, color="grey",
                          label="other processes")
                axis.plot(t, [s.get("io_stall_percent", 0) for s in samples], linewidth=0.7, color="tab:red",
                          linestyle=":", label="I/O stall (PSI some)")
            if label.startswith("probe"):
                axis.set_yscale("log")
            axis.legend(loc="upper right", fontsize=7)
        axis.set_ylabel(label, fontsize=8)
        axis.axvline(warmup / 60, color="grey", linestyle=":", linewidth=0.8)
        axis.grid(alpha=0.3)
    if "fit_start_mb" in trend:
        axes[0].plot([trend["from_s"] / 60, trend["to_s"] / 60], [trend["fit_start_mb"], trend["fit_end_mb"]],
                     color="black", linewidth=1, linestyle="--", label=f"fit: {trend['growth_percent']:+.1f}%")
        axes[0].legend(loc="lower right", fontsize=7)
    errors_axis = axes[4]
    errors_axis.bar(t, [s["client_errors"] for s in samples], width=1 / 60, label="client errors", color="tab:orange")
    errors_axis.bar(t, [s["log_errors"] for s in samples], width=1 / 60, label="ERROR/Traceback in the log",
                    color="tab:red")
    errors_axis.bar(t, [s["probe_failures"] for s in samples], width=1 / 60, label="probe failures",
                    color="tab:purple")
    errors_axis.set_ylabel("errors per second", fontsize=8)
    errors_axis.legend(loc="upper right", fontsize=7)
    errors_axis.set_xlabel("minutes (dotted: end of warm-up)", fontsize=8)
    errors_axis.grid(alpha=0.3)
    figure.suptitle(title, fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=72)
    plt.close(figure)


def soak(options: argparse.Namespace) -> dict[str, Any]:
    harness.raise_fd_limit()
    server_cpu, load_cpu = _cpus()
    duration = options.minutes * 60
    # RSS rose for about 2 minutes in the short runs (then flat: +0.05% over
    # their last minute), so a 10-minute run leaves its first 2 out.
    warmup = options.warmup if options.warmup is not None else min(120.0, duration / 4)
    tmp = Path(tempfile.mkdtemp(prefix="satchel-soak-"))
    data_dir, log_path = tmp / "data", tmp / "server.log"
    # Tokens outlive the run (the defaults would expire Directus's after 15 minutes).
    extra = ["--access-token-ttl-ms", str(int((duration + 900) * 1000)), *options.server_args]
    harness.log(f"soak: {options.minutes:g} min on satchel serve (CPU {server_cpu}), load on CPU {load_cpu}, "
              f"data in {tmp}")
    server = SoakServer(data_dir, log_path, server_cpu, extra)
    scanner = LogScanner(log_path)
    setup = prepare(server.port)
    setup_path, acked_path = tmp / "setup.json", tmp / "acked.json"
    setup_path.write_text(json.dumps(setup))
    load = LoadProcess(setup_path, acked_path, options, load_cpu)
    probe = Probe(server.port, options.probe_ms / 1000)
    probe.start()
    samples: list[dict[str, Any]] = []
    started = time.monotonic()
    wall_started = time.time()
    cpu_before, at_before = server.cpu_seconds(), started
    load_cpu_before = _cpu_seconds(load.process.pid)
    machine_before = _machine()
    errors_seen = 0
    next_tick = started + 1
    try:
        while True:
            time.sleep(max(0.0, next_tick - time.monotonic()))
            next_tick += 1
            now = time.monotonic()
            if server.process.poll() is not None:
                raise RuntimeError("the server died: " + log_path.read_text(errors="replace")[-2000:])
            cpu = server.cpu_seconds()
            load_cpu_now = _cpu_seconds(load.process.pid)
            machine_now = _machine()
            span = now - at_before
            latencies, failures = probe.take()
            counters, errors = load.snapshot()
            fresh = errors[errors_seen:]
            errors_seen = len(errors)
            sample = {
                "t": round(now - started, 2),
                "rss_kb": server.rss_kb(),
                "cpu_percent": round(100 * (cpu - cpu_before) / (now - at_before), 1),
                "load_cpu_percent": round(100 * (load_cpu_now - load_cpu_before) / (now - at_before), 1),
                # Everything else on the machine (this process included), and how much of
                # the second some task waited on I/O / for a CPU.
                "other_cpu_percent": round(100 * ((machine_now[0] - machine_before[0]) - (cpu - cpu_before)
                                                  - (load_cpu_now - load_cpu_before)) / span, 1),
                "io_stall_percent": round(100 * (machine_now[1] - machine_before[1]) / span, 1),
                "cpu_stall_percent": round(100 * (machine_now[2] - machine_before[2]) / span, 1),
                "descriptors": server.descriptors(),
                "probes": len(latencies),
                "probe_p50_ms": round((_quantile(latencies, 0.5) or 0) * 1000, 2),
                "probe_p99_ms": round((_quantile(latencies, 0.99) or 0) * 1000, 2),
                "probe_max_ms": round(max(latencies, default=0) * 1000, 2),
                "probe_failures": len(failures),
                "client_errors": len(fresh),
                "log_errors": scanner.new_errors(),
                "counters": counters,
            }
            if fresh:
                sample["client_error_examples"] = [f"{kind}: {detail}" for _, kind, detail in fresh[:3]]
            if failures:
                sample["probe_failure_examples"] = failures[:3]
            samples.append(sample)
            cpu_before, at_before, load_cpu_before, machine_before = cpu, now, load_cpu_now, machine_now
            if len(samples) % 30 == 0:
                harness.log(f"  {sample['t']:.0f} s: RSS {sample['rss_kb'] / 1024:.1f} MB, CPU {sample['cpu_percent']:.0f}%,"
                          f" {sample['descriptors']} fds, probe p99 {sample['probe_p99_ms']:.1f} ms, errors so far "
                          f"{errors_seen} client / {sum(s['log_errors'] for s in samples)} log")
            if now - started >= duration:
                break
        # The crash: SIGKILL with the load still writing.
        probe.stopped.set()
        killed_at = time.time()
        server.kill()
        load.stop()
        probe.join(5)
        log_errors_run = sum(s["log_errors"] for s in samples) + scanner.new_errors()
        counters, errors = load.snapshot()
        run_errors = [e for e in errors if e[0] < killed_at]
        acked_file = json.loads(acked_path.read_text()) if acked_path.exists() else None
        if acked_file is None:
            raise RuntimeError("the load process wrote no acknowledged writes")
        restarted = SoakServer(data_dir, log_path, server_cpu, extra)
        try:
            found = verify(restarted.port, setup, acked_file["acked"])
        finally:
            restarted.stop()
        log_errors_restart = scanner.new_errors()
    finally:
        probe.stopped.set()
        if load.process.poll() is None:
            load.stop()
        server.kill()
    kinds: dict[str, int] = {}
    for _, kind, _detail in run_errors:
        kinds[kind] = kinds.get(kind, 0) + 1
    all_latencies = [s["probe_p99_ms"] for s in samples if s["probes"]]
    post = [s for s in samples if s["t"] >= warmup and s["probes"]]
    result = {
        "date": datetime.datetime.fromtimestamp(wall_started, datetime.timezone.utc).isoformat(timespec="seconds"),
        "minutes": options.minutes, "warmup_s": warmup, "cpus": {"server": server_cpu, "load": load_cpu},
        "load_average_at_end": os.getloadavg(),
        "options": {k: v for k, v in vars(options).items() if k not in ("role", "setup", "acked")},
        "rss_trend": rss_trend(samples, warmup),
        "log_errors": {"during_run": log_errors_run, "after_restart": log_errors_restart,
                       "examples": scanner.examples},
        "client_errors": {"total": len(run_errors), "by_kind": kinds,
                          "examples": [f"{kind}: {detail}" for _, kind, detail in run_errors[:10]]},
        "probe": {"samples": sum(s["probes"] for s in samples),
                  "failures": sum(s["probe_failures"] for s in samples),
                  "p99_ms_worst_window": max(all_latencies, default=None),
                  "p99_ms_median_window_after_warmup": _quantile([s["probe_p99_ms"] for s in post], 0.5),
                  "windows_over_100ms": sum(1 for s in samples if s["probe_p99_ms"] > 100),
                  "p50_ms_median_window_after_warmup": _quantile([s["probe_p50_ms"] for s in post], 0.5)},
        "load_counters": acked_file["counters"],
        "acknowledged_writes": found,
        "cpu_percent_mean": {"server": _mean([s["cpu_percent"] for s in post]),
                             "load": _mean([s["load_cpu_percent"] for s in post]),
                             "other_processes": _mean([s["other_cpu_percent"] for s in post]),
                             "io_stall": _mean([s["io_stall_percent"] for s in post])},
        "descriptors": {"first": samples[0]["descriptors"] if samples else None,
                        "last": samples[-1]["descriptors"] if samples else None,
                        "max": max((s["descriptors"] for s in samples), default=None)},
        "samples": samples,
    }
    output = Path(options.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(result, indent=1) + "\n")
    trend = result["rss_trend"]
    title = (f"satchel soak, {options.minutes:g} min, {result['date']}: RSS {trend.get('growth_percent')}% after "
             f"warm-up, {log_errors_run} log errors, {found['lost_total']} acknowledged writes lost")
    plot(samples, warmup, trend, title, output.with_suffix(".png"))
    if not options.keep:
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    return result


def summary(result: dict[str, Any]) -> str:
    trend, found, probe = result["rss_trend"], result["acknowledged_writes"], result["probe"]
    c = result["load_counters"]
    writes = ", ".join(f"{name} {c.get('acked.' + name, 0):,}" for name in
                       ("rest", "ws", "kv", "inbox_http", "inbox_udp", "chat"))
    verdict = (lambda ok: "met" if ok else "NOT met")
    growth = trend.get("growth_percent")
    lines = [
        f"# Soak: {result['minutes']:g} min, {result['date']} (warm-up {result['warmup_s']:.0f} s; load average at "
        f"the end {result['load_average_at_end'][0]:.1f})",
        "",
        "| figure | measured | target | verdict |",
        "|---|---|---|---|",
        f"| RSS trend after warm-up | {growth}% ({trend.get('fit_start_mb')} -> {trend.get('fit_end_mb')} MB fitted, "
        f"{trend.get('slope_kb_per_min')} KB/min; range {trend.get('min_mb')}-{trend.get('max_mb')} MB) | <= 5% | "
        f"{verdict(growth is not None and growth <= 5)} |",
        f"| unhandled errors in the server log | {result['log_errors']['during_run']} during the run, "
        f"{result['log_errors']['after_restart']} after the restart | 0 | "
        f"{verdict(result['log_errors']['during_run'] + result['log_errors']['after_restart'] == 0)} |",
        f"| acknowledged writes lost after kill -9 | {found['lost_total']} (acknowledged: {writes}; kv checked as "
        f"the last per key, inbox as the highest revision per message) | 0 | {verdict(found['lost_total'] == 0)} |",
        f"| probe p99 (GET /collections every {result['options']['probe_ms']:g} ms) | median window "
        f"{probe['p99_ms_median_window_after_warmup']} ms, worst window {probe['p99_ms_worst_window']} ms, "
        f"{probe['windows_over_100ms']} of {len(result['samples'])} windows over 100 ms; "
        f"{probe['failures']} failures of {probe['samples']:,} | - | - |",
        f"| client-side errors | {result['client_errors']['total']} {result['client_errors']['by_kind'] or ''} "
        f"| - | - |",
        "",
        f"Load: churn {c.get('churn.done', 0):,} connections, hostile {c.get('hostile.sent', 0):,} frames "
        f"({c.get('hostile.answered', 0):,} answered, {c.get('hostile.closed', 0):,} closed, "
        f"{c.get('hostile.unanswered', 0):,} unanswered) + {c.get('hostile.http_4xx', 0):,} bad requests (4xx) "
        f"+ {c.get('hostile.datagrams', 0):,} garbage datagrams; flooder {c.get('flood.sent', 0):,} frames over "
        f"{c.get('flood.connections', 0)} connections ("
        + ", ".join(f"closed {k.split('_', 1)[1]} x{v}" for k, v in c.items() if k.startswith("flood.closed_"))
        + f"); stopped reader {c.get('stalled.opened', 0)} opened, {c.get('stalled.closed_by_server', 0)} closed by "
        f"the server; UDP unanswered {c.get('udp.unanswered', 0)}; received "
        + ", ".join(f"{k.split('.', 1)[1]} {v:,}" for k, v in c.items() if k.startswith("received.")),
        f"CPU after warm-up (mean, % of a core): server {result['cpu_percent_mean']['server']}, load process "
        f"{result['cpu_percent_mean']['load']}, other processes {result['cpu_percent_mean']['other_processes']}; "
        f"I/O stall (PSI some) {result['cpu_percent_mean']['io_stall']}% of the time. "
        f"Descriptors: {result['descriptors']['first']} -> {result['descriptors']['last']} (max "
        f"{result['descriptors']['max']}).",
    ]
    if result["log_errors"]["examples"]:
        lines += ["", "Log error lines (first):", *(f"    {line}" for line in result["log_errors"]["examples"][:5])]
    if result["client_errors"]["examples"]:
        lines += ["", "Client errors (first):", *(f"    {line}" for line in result["client_errors"]["examples"][:5])]
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0, help="length of the mixed load")
    parser.add_argument("--warmup", type=float, default=None,
                        help="seconds left out of the RSS trend (default: a quarter of the run, at most 120)")
    parser.add_argument("--subs", type=int, default=10, help="well-behaved subscribers per protocol")
    parser.add_argument("--rest-writes", type=float, default=10.0, help="Backpack REST creates per second")
    parser.add_argument("--ws-writes", type=float, default=5.0, help="Backpack websocket creates per second")
    parser.add_argument("--kv-writes", type=float, default=10.0, help="kv writes per second")
    parser.add_argument("--inbox-posts", type=float, default=10.0, help="inbox messages over HTTP per second")
    parser.add_argument("--datagrams", type=float, default=20.0, help="inbox messages over UDP per second")
    parser.add_argument("--chats", type=float, default=5.0, help="Socket.IO chats per second")
    parser.add_argument("--churn", type=float, default=20.0, help="short-lived connections opened per second")
    parser.add_argument("--hostile", type=float, default=4.0,
                        help="hostile websocket frames (and as many bad HTTP requests and datagrams) per second")
    parser.add_argument("--no-flood", dest="flood", action="store_false", help="leave the flooder out")
    parser.add_argument("--probe-ms", type=float, default=20.0, help="the probe's period")
    parser.add_argument("--server-arg", action="append", dest="server_args", default=[],
                        help="an extra argument for satchel serve (repeatable)")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (data, server.log)")
    parser.add_argument("--output", default=str(harness.RESULTS / "soak.json"), help="the JSON; the PNG goes beside it")
    parser.add_argument("--role", default="soak", choices=("soak", "load"), help=argparse.SUPPRESS)
    parser.add_argument("--setup", help=argparse.SUPPRESS)
    parser.add_argument("--acked", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def run_soak(argv: list[str] | None = None) -> dict[str, Any]:
    """The soak with this file's defaults, for ``run.py --only soak``; the
    samples stay in soak.json, the summary is returned without them."""
    result = soak(parse_args(argv or []))
    print(summary(result), flush=True)
    return {k: v for k, v in result.items() if k != "samples"}


def main(argv: list[str] | None = None) -> int:
    options = parse_args(argv)
    if options.role == "load":
        return load_main(options)
    result = soak(options)
    print(summary(result))
    print(f"(every sample: {options.output}; the plot: {Path(options.output).with_suffix('.png')})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
