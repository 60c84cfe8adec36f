"""A client that stops reading, against the real ``satchel serve`` process.

Three Backpack websockets of three users: a publisher broadcasting many
messages, a subscriber that reads everything, and a sleeper that opened its
websocket with a tiny receive buffer and never reads again. The server must
close the sleeper as a slow consumer (1008, its outbox limits) while the
reader still gets every message, in order, at the publisher's pace - and the
server's memory must stay bounded although far more than the outbox limit
was addressed to the sleeper. Default limits: 4 MiB / 10k messages.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from pathlib import Path

import pytest

from server_process import Http, ServerProcess

MESSAGES = 10000
PAYLOAD_BYTES = 4096  # 10000 x 4 KiB = ~40 MiB addressed to the sleeper
BURST = 100
OUTBOX_BYTES = 4 * 1024 * 1024  # ServerLimits.websocket_outbox_bytes, the default


def _rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


class RawWebsocket:
    """A blocking websocket client on a plain socket: frames in, frames out."""

    def __init__(self, port: int, cookie: str, *, receive_buffer: int | None = None) -> None:
        self.sock = socket.socket()
        if receive_buffer is not None:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        self.sock.settimeout(10)
        self.sock.connect(("127.0.0.1", port))
        self.sock.sendall(
            (
                "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
                f"Cookie: {cookie}\r\n\r\n"
            ).encode()
        )
        self.buffer = b""
        while b"\r\n\r\n" not in self.buffer:
            self._more()
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        assert head.startswith(b"HTTP/1.1 101"), head

    def _more(self) -> None:
        data = self.sock.recv(262144)
        if not data:
            raise EOFError
        self.buffer += data

    def _need(self, count: int) -> None:
        while len(self.buffer) < count:
            self._more()

    def read_frame(self) -> tuple[int, bytes]:
        self._need(2)
        opcode, length = self.buffer[0] & 0x0F, self.buffer[1] & 0x7F
        start = 2
        if length == 126:
            self._need(4)
            length, start = int.from_bytes(self.buffer[2:4], "big"), 4
        elif length == 127:
            self._need(10)
            length, start = int.from_bytes(self.buffer[2:10], "big"), 10
        self._need(start + length)
        payload = self.buffer[start : start + length]
        self.buffer = self.buffer[start + length :]
        return opcode, payload

    def read_json(self) -> dict:
        opcode, payload = self.read_frame()
        assert opcode == 0x1, (opcode, payload[:100])
        return json.loads(payload)

    def send_text(self, text: bytes) -> None:
        mask = os.urandom(4)
        header = bytes((0x81,))
        length = len(text)
        if length < 126:
            header += bytes((0x80 | length,))
        elif length < 65536:
            header += bytes((0x80 | 126,)) + length.to_bytes(2, "big")
        else:
            header += bytes((0x80 | 127,)) + length.to_bytes(8, "big")
        key = (mask * (length // 4 + 1))[:length]
        masked = (int.from_bytes(text, "big") ^ int.from_bytes(key, "big")).to_bytes(length, "big")
        self.sock.sendall(header + mask + masked)

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def server(tmp_path: Path):
    # The publisher sends 10,000 messages as fast as the reader takes them:
    # no per-sender budget here (tests/test_abuse.py tests that), only the
    # slow-consumer rule.
    process = ServerProcess(tmp_path / "data", extra=["--websocket-message-rate", "0"])
    try:
        yield process
    finally:
        process.stop()


def _login(server: ServerProcess, name: str) -> tuple[str, str]:
    http = Http(server)
    user_id = http.login(f"{name}@example.com")
    cookie = http.cookie
    http.close()
    assert cookie
    return user_id, cookie


def test_a_client_that_never_reads_is_dropped_and_the_others_get_everything(server: ServerProcess) -> None:
    started = time.monotonic()
    _, publisher_cookie = _login(server, "publisher")
    _, reader_cookie = _login(server, "reader")
    sleeper_id, sleeper_cookie = _login(server, "sleeper")

    sleeper = RawWebsocket(server.port, sleeper_cookie, receive_buffer=4096)
    reader = RawWebsocket(server.port, reader_cookie)
    publisher = RawWebsocket(server.port, publisher_cookie)
    for client in (reader, publisher):
        assert client.read_json()["action"] == "connection"
    # The sleeper reads nothing from here on.

    pid = server.process.pid
    rss_before = _rss_kb(pid)
    rss_peak = [rss_before]
    received: list[int] = []
    echoes: list[int] = []
    sleeper_dropped = threading.Event()
    failures: list[BaseException] = []
    done = threading.Event()

    def read_messages(client: RawWebsocket, into: list[int], watch_for_close: bool) -> None:
        try:
            while len(into) < MESSAGES:
                message = client.read_json()
                if message["action"] == "broadcast":
                    into.append(message["n"])
                elif watch_for_close and message == {"action": "close", "userId": sleeper_id}:
                    # Every other connection hears that the sleeper's went away.
                    sleeper_dropped.set()
        except BaseException as error:  # surfaced by the main thread
            failures.append(error)

    def sample_memory() -> None:
        while not done.is_set():
            rss_peak[0] = max(rss_peak[0], _rss_kb(pid))
            time.sleep(0.02)

    threads = [
        threading.Thread(target=read_messages, args=(reader, received, True), daemon=True),
        threading.Thread(target=read_messages, args=(publisher, echoes, False), daemon=True),
        threading.Thread(target=sample_memory, daemon=True),
    ]
    for thread in threads:
        thread.start()

    padding = "x" * PAYLOAD_BYTES
    for burst in range(0, MESSAGES, BURST):
        for n in range(burst, burst + BURST):
            publisher.send_text(json.dumps({"action": "broadcast", "n": n, "padding": padding}).encode())
        # A live client's pace: the next burst once the reader has this one.
        deadline = time.monotonic() + 10
        while len(received) < burst + BURST and not failures:
            assert time.monotonic() < deadline, f"the reader got {len(received)} of {burst + BURST} messages"
            time.sleep(0.002)
        assert not failures, failures

    for thread in threads[:2]:
        thread.join(10)
    done.set()
    assert not failures, failures
    # Every message, in order, to the reader (and to the publisher itself).
    assert received == list(range(MESSAGES))
    assert echoes == list(range(MESSAGES))

    # The sleeper was dropped by the server, as a slow consumer.
    reader.sock.settimeout(10)
    if not sleeper_dropped.is_set():
        # The close notice may follow the last broadcast.
        while True:
            message = reader.read_json()
            if message == {"action": "close", "userId": sleeper_id}:
                break
    assert any("slow consumer: outbox limit exceeded" in line for line in server.output), "".join(server.output)

    # Memory stayed bounded: far less than what was addressed to the sleeper.
    addressed = MESSAGES * PAYLOAD_BYTES
    allowed = OUTBOX_BYTES + 8 * 1024 * 1024  # the outbox plus the interpreter's churn
    assert addressed > 2 * allowed
    growth = (rss_peak[0] - rss_before) * 1024
    print(f"RSS grew {growth / 2**20:.1f} MiB")
    assert growth < allowed, f"RSS grew {growth / 2**20:.1f} MiB for {addressed / 2**20:.0f} MiB addressed"

    # What the sleeper finds when it finally reads: whole frames in order,
    # then the close frame (1008) if the kernel took it, then the end.
    sleeper.sock.settimeout(5)
    seen: list[int] = []
    close_code = None
    try:
        while True:
            opcode, payload = sleeper.read_frame()
            if opcode == 0x8:
                close_code = int.from_bytes(payload[:2], "big")
                break
            message = json.loads(payload)
            if message["action"] == "broadcast":
                seen.append(message["n"])
    except (EOFError, ConnectionResetError):
        pass
    assert seen == list(range(len(seen))) and len(seen) < MESSAGES
    assert close_code in (None, 1008)
    for client in (sleeper, reader, publisher):
        client.close()
    assert server.alive()
    assert time.monotonic() - started < 30
