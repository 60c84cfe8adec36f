"""What one peer may cost (issue 14), against the real ``satchel serve``.

A flooding sender is held back and its readers kept; a sender that keeps
flooding is closed with 1008; a mass disconnect leaves the server answering
at once; each per-address and per-user bound refuses the next connection in
the protocol's own error format; an idle flood from 127.0.0.2 (a second
loopback address standing for another client) leaves 127.0.0.1 served, also
when the flood reaches the descriptor limit. Every test is loopback only and
bounded in time.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import trio

from server_process import API_KEY, Http, Launched, ServerProcess
from test_slow_consumer import RawWebsocket, _login, _rss_kb

from satchel.protocol.limits import BucketsByKey, Throttle, TokenBucket, is_loopback
from satchel.transports.interfaces import ServerLimits
from satchel.transports.server import DatagramGate


# -- the rules, pure --------------------------------------------------------------


def test_a_token_bucket_allows_its_burst_then_its_rate() -> None:
    bucket = TokenBucket(rate=10, burst=3, now=0.0)
    assert [bucket.delay(0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.delay(0.0) == pytest.approx(0.1)
    assert bucket.delay(0.1) == 0.0  # one token came back in 0.1 s


def test_a_throttle_calls_abuse_only_a_sender_held_at_every_message() -> None:
    throttle = Throttle(rate=10, burst=2, abuse_after=1.0, now=0.0)
    now = 0.0
    verdicts = []
    while now < 2.0:
        wait, abusing = throttle.take(now)
        verdicts.append(abusing)
        now += wait + 0.001  # it sends again the moment it may
    assert verdicts[-1] and not verdicts[0]
    # One that slows down to the rate finds a token waiting: never abuse.
    polite = Throttle(rate=10, burst=2, abuse_after=1.0, now=0.0)
    assert not any(polite.take(t / 5)[1] for t in range(50))


def test_buckets_by_key_stay_bounded() -> None:
    buckets = BucketsByKey(rate=1, burst=1, size=4)
    for key in range(100):
        buckets.delay(key, 0.0)
    assert len(buckets) <= 4
    assert buckets.delay(99, 0.0) > 0 and buckets.refused == 1


def test_loopback_addresses() -> None:
    assert is_loopback("127.0.0.2") and is_loopback("::1") and not is_loopback("192.0.2.1")


def test_datagrams_past_a_sources_rate_are_dropped_and_counted() -> None:
    async def main() -> None:
        gate = DatagramGate(ServerLimits(datagram_rate=5, limit_loopback=True))
        admitted = [gate.admit(("127.0.0.2", 1000)) for _ in range(20)]
        assert admitted.count(True) == 10 and gate.dropped == 10  # a burst of twice the rate
        assert gate.admit(("127.0.0.3", 1000))  # another source has its own budget
        # Loopback is exempt unless asked: a proxy on the same host is everyone.
        assert all(DatagramGate(ServerLimits(datagram_rate=5)).admit(("127.0.0.1", 1)) for _ in range(50))

    trio.run(main)


# -- helpers ---------------------------------------------------------------------


def _serve(tmp_path: Path, *extra: str) -> ServerProcess:
    return ServerProcess(tmp_path / "data", extra=list(extra))


class Reader(threading.Thread):
    """A websocket read as fast as a Python client reads: counts messages,
    notes a close frame."""

    def __init__(self, websocket: RawWebsocket) -> None:
        super().__init__(daemon=True)
        self.websocket = websocket
        self.messages = 0
        self.flood = 0
        self.close: tuple[int, str] | None = None
        self.lost = False

    def run(self) -> None:
        websocket = self.websocket
        websocket.sock.settimeout(30)
        try:
            while True:
                opcode, payload = websocket.read_frame()
                if opcode == 0x8:
                    self.close = (int.from_bytes(payload[:2], "big"), payload[2:].decode())
                    return
                self.messages += 1
                if b'"flood"' in payload[:40]:
                    self.flood += 1
        except (OSError, EOFError):
            self.lost = True


def _broadcast(size: int = 1024) -> bytes:
    return json.dumps({"action": "broadcast", "flood": "x" * size}).encode()


def _get(port: int, path: str, *, source: str = "127.0.0.1", headers: dict[str, str] | None = None,
         timeout: float = 10) -> tuple[int, dict[str, str], bytes]:
    """One request on a fresh connection from ``source``."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout, source_address=(source, 0)) as sock:
        lines = [f"GET {path} HTTP/1.1", "Host: 127.0.0.1", "Connection: close",
                 *(f"{k}: {v}" for k, v in (headers or {}).items())]
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        data = b""
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode().split("\r\n")
    found = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in header_lines)}
    return int(status_line.split()[1]), found, body


# -- part 1: senders held back, never their readers -------------------------------


def test_a_flood_keeps_every_reader_and_is_held_to_its_rate(tmp_path: Path) -> None:
    # Small outboxes: before issue 14 a flood closed the readers within a second.
    server = _serve(tmp_path, "--websocket-outbox-messages", "400", "--websocket-outbox-bytes", "262144",
                    "--websocket-message-rate", "300", "--websocket-message-burst", "300")
    try:
        _, cookie = _login(server, "flooder")
        readers = []
        for index in range(8):
            _, reader_cookie = _login(server, f"reader{index}") if index < 2 else (None, cookie)
            websocket = RawWebsocket(server.port, reader_cookie)
            websocket.read_json()  # the greeting
            readers.append(Reader(websocket))
        for reader in readers:
            reader.start()
        flooder = RawWebsocket(server.port, cookie)
        flooder.read_json()
        flooder_reader = Reader(flooder)
        flooder_reader.start()
        frame = _broadcast()
        started = time.monotonic()
        flooder.sock.settimeout(0.5)
        sent = 0
        while time.monotonic() - started < 2.0:
            try:
                flooder.send_text(frame)
                sent += 1
            except socket.timeout:
                pass  # TCP backpressure: the server stopped reading us
        elapsed = time.monotonic() - started
        time.sleep(1.0)
        closed = [reader.close for reader in readers if reader.close or reader.lost]
        assert closed == [], closed
        assert all(reader.flood > 100 for reader in readers), [reader.flood for reader in readers]
        # Held to its rate (300/s after a burst of 300), however fast it sent.
        assert max(reader.flood for reader in readers) <= 300 + 300 * (elapsed + 1.5), (sent, elapsed)
        assert server.alive()
        for reader in readers:
            reader.websocket.close()
        flooder.close()
    finally:
        server.stop()


def test_a_sender_that_never_slows_down_is_closed_with_1008(tmp_path: Path) -> None:
    server = _serve(tmp_path, "--websocket-message-rate", "50", "--websocket-message-burst", "10",
                    "--websocket-abuse-seconds", "1")
    try:
        _, cookie = _login(server, "flooder")
        flooder = RawWebsocket(server.port, cookie)
        flooder.read_json()
        reader = Reader(flooder)
        reader.start()
        flooder.sock.settimeout(0.2)
        frame = _broadcast(64)
        deadline = time.monotonic() + 10
        while reader.is_alive() and time.monotonic() < deadline:
            try:
                flooder.send_text(frame)
            except socket.timeout:
                pass
            except OSError:
                break
        reader.join(5)
        assert reader.close is not None and reader.close[0] == 1008, reader.close
        assert "rate limit" in reader.close[1]
        flooder.close()
    finally:
        server.stop()


# -- part 2: a mass disconnect ------------------------------------------------------

_HOLDER = r"""
import selectors, socket, sys
port, cookie, n = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
request = ("GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
           f"Cookie: {cookie}\r\n\r\n").encode()
sel, held, pending, ok = selectors.DefaultSelector(), [], 0, 0
for _ in range(n):
    s = socket.socket(); s.setblocking(False)
    try: s.connect(("127.0.0.1", port))
    except BlockingIOError: pass
    sel.register(s, selectors.EVENT_WRITE); pending += 1
    while pending >= 128 or (pending and len(held) + pending == n):
        for key, events in sel.select(10):
            s = key.fileobj
            if events & selectors.EVENT_WRITE:
                s.send(request); sel.modify(s, selectors.EVENT_READ)
            else:
                data = s.recv(65536); sel.unregister(s); pending -= 1; held.append(s)
                ok += data.startswith(b"HTTP/1.1 101")
print(ok, flush=True)
sys.stdin.read()
"""

DROP = 1500  # what a shared 2-core CI machine opens in a few seconds


def _timed_get(port: int, headers: dict[str, str]) -> float:
    started = time.monotonic()
    assert _get(port, "/collections", headers=headers)[0] == 200
    return time.monotonic() - started


def test_a_mass_drop_leaves_the_server_answering_at_once(tmp_path: Path) -> None:
    server = _serve(tmp_path, "--max-connections-per-user", "0")
    try:
        http = Http(server)
        crowd = http.login("crowd@example.com")
        cookie = http.cookie
        assert cookie
        witness = RawWebsocket(server.port, _login(server, "witness")[1])
        witness.read_json()
        key = {"Authorization": f"key {server.api_key}"}
        calm = min(_timed_get(server.port, key) for _ in range(5))
        holder = subprocess.Popen([sys.executable, "-c", _HOLDER, str(server.port), cookie, str(DROP)],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        try:
            assert holder.stdout is not None
            assert int(holder.stdout.readline()) == DROP
            time.sleep(0.3)
            connected = _rss_kb(server.process.pid)
        finally:
            holder.send_signal(signal.SIGKILL)  # the kernel closes them all at once
            holder.wait()
        time.sleep(0.05)
        started = time.monotonic()
        status, _, _ = _get(server.port, "/collections", headers=key)
        answered = time.monotonic() - started
        # 200 ms (issue 14), or ten calm requests' time on a machine shared
        # with other work: before the fix this waited seconds.
        assert status == 200 and answered < max(0.2, 10 * calm), (answered, calm)
        # One user left: the witness hears it once, not once per socket.
        witness.sock.settimeout(3)
        assert witness.read_json() == {"action": "close", "userId": crowd}
        witness.sock.settimeout(0.5)
        with pytest.raises(socket.timeout):
            witness.read_frame()
        time.sleep(1.5)
        # The memory the connections held is not grown on (before: 2.5x).
        assert _rss_kb(server.process.pid) <= connected * 1.05
        witness.close()
        http.close()
    finally:
        server.stop()


# -- part 3: bounds per address and per user --------------------------------------------


def test_connections_past_an_addresss_bound_are_refused_in_the_protocols_format_and_others_served(
    tmp_path: Path,
) -> None:
    server = _serve(tmp_path, "--limit-loopback", "--max-connections-per-address", "4")
    try:
        idle = [socket.create_connection(("127.0.0.1", server.port), source_address=("127.0.0.2", 0))
                for _ in range(4)]
        time.sleep(0.2)
        key = {"Authorization": f"key {server.api_key}"}
        status, headers, body = _get(server.port, "/collections", source="127.0.0.2", headers=key)
        assert status == 429 and headers["retry-after"] == "1"
        assert json.loads(body) == {"message": "Too many connections from your address"}  # Backpack's format
        status, _, body = _get(server.port, "/backend/documents/" + "0" * 32, source="127.0.0.2")
        assert status == 429
        status, _, body = _get(server.port, "/items/notes", source="127.0.0.2")  # Directus REST
        assert status == 429 and json.loads(body)["errors"][0]["extensions"]["code"] == "REQUESTS_EXCEEDED"
        status, _, body = _get(server.port, "/api/communities", source="127.0.0.2")  # Asnity
        assert status == 429 and json.loads(body)["statusCode"] == 429
        # Another address is not counted with it.
        assert _get(server.port, "/collections", headers=key)[0] == 200
        # An idle flood from 127.0.0.2 leaves 127.0.0.1 served.
        flood = []
        for _ in range(600):
            sock = socket.socket()
            sock.bind(("127.0.0.2", 0))
            sock.connect(("127.0.0.1", server.port))
            flood.append(sock)
        latencies = sorted(_probe_while(server.port, 1.5))
        assert latencies[len(latencies) // 2] < 0.1, latencies
        for sock in idle + flood:
            sock.close()
    finally:
        server.stop()


def test_http_requests_past_an_addresss_rate_get_429_with_retry_after(tmp_path: Path) -> None:
    server = _serve(tmp_path, "--limit-loopback", "--http-request-rate", "5")
    try:
        http = Http(server)
        statuses = []
        for _ in range(30):
            status, body, headers = http.request("GET", "/collections")
            statuses.append(status)
            if status == 429:
                assert int(headers["retry-after"]) >= 1 and "message" in body
        assert statuses.count(200) >= 10 and statuses.count(429) >= 15, statuses
        http.close()
    finally:
        server.stop()


def test_websockets_past_a_users_bound_are_refused_429(tmp_path: Path) -> None:
    server = _serve(tmp_path, "--max-connections-per-user", "3")
    try:
        _, cookie = _login(server, "tabs")
        tabs = [RawWebsocket(server.port, cookie) for _ in range(3)]
        with pytest.raises(AssertionError, match="429"):
            RawWebsocket(server.port, cookie)
        _, other = _login(server, "someone-else")
        RawWebsocket(server.port, other).close()  # another user is not counted with them
        tabs[0].close()
        time.sleep(0.3)
        RawWebsocket(server.port, cookie).close()  # a tab closed: room for one more
        for tab in tabs[1:]:
            tab.close()
    finally:
        server.stop()


def _probe_while(port: int, seconds: float) -> list[float]:
    latencies = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        started = time.monotonic()
        assert _get(port, "/sdk.js")[0] == 200
        latencies.append(time.monotonic() - started)
        time.sleep(0.01)
    return latencies


def test_near_the_descriptor_limit_the_busiest_addresss_idle_connections_go_first(tmp_path: Path) -> None:
    # A process allowed 400 descriptors, no per-address bound: the reserve
    # alone must keep 127.0.0.1 served while 127.0.0.2 holds 600 idle ones.
    command = ["prlimit", "--nofile=400:400", sys.executable, "-m", "satchel.transports", "serve", "--host",
               "127.0.0.1", "--port", "0", "--data-dir", str(tmp_path / "data"), "--api-key", API_KEY,
               "--max-connections-per-address", "0", "--descriptor-reserve", "64"]
    limited = Launched(command)
    try:
        flood = []
        for _ in range(600):
            sock = socket.socket()
            sock.bind(("127.0.0.2", 0))
            sock.connect(("127.0.0.1", limited.port))
            flood.append(sock)
        time.sleep(0.3)
        latencies = sorted(_probe_while(limited.port, 1.0))
        assert latencies[len(latencies) // 2] < 0.1, latencies
        assert not any("Too many open files" in line for line in limited.output)
        for sock in flood:
            sock.close()
    finally:
        limited.stop()
