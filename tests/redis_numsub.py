"""``PUBSUB NUMSUB`` over a raw socket: how many connections follow each
Redis channel (the broker's own view of who is sent what)."""

from __future__ import annotations

import os
import socket
from urllib.parse import urlsplit


def numsub(channels: list[str]) -> list[int]:
    split = urlsplit(os.environ.get("SATCHEL_TEST_REDIS", "redis://127.0.0.1:6379"))
    parts = [b"PUBSUB", b"NUMSUB", *(c.encode() for c in channels)]
    command = b"*%d\r\n" % len(parts) + b"".join(b"$%d\r\n%s\r\n" % (len(p), p) for p in parts)
    with socket.create_connection((split.hostname or "127.0.0.1", split.port or 6379), timeout=5) as sock:
        sock.sendall(command)
        data = b""
        while data.count(b"\r\n") < 1 + 3 * len(channels):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    lines = data.split(b"\r\n")
    # *2N, then per channel: $len, name, :count
    return [int(lines[i][1:]) for i in range(3, 1 + 3 * len(channels), 3)]
