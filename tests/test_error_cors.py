"""Errors the transport answers on its own (a body too large, answered by the
HTTP parser before any mount sees the request) carry the CORS headers the
mount owning the path would have sent: without them a browser's fetch sees
a network failure (status 0), not the 413."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from satchel.protocol.http import HttpRequest
from satchel.protocol.mount_table import standard_mounts
from satchel.protocol.backpack.config import BackpackConfig
from satchel.protocol.switchboard import Switchboard
from satchel.transports.cli import build_parser, run_server
from satchel.transports.system_environment import system_environment

ORIGIN = "https://app.example.com"
API_KEY = "cors-api-key"


def _headers(response: bytes) -> dict[str, str]:
    head = response.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
    return {name.lower(): value.strip() for name, _, value in (line.partition(":") for line in head[1:])}


async def _send(port: int, request: bytes) -> bytes:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(request)
        received = b""
        with trio.fail_after(5):
            while b"\r\n\r\n" not in received:
                chunk = await stream.receive_some(65536)
                if not chunk:
                    break
                received += chunk
    return received


@pytest.mark.parametrize("path, expected", [
    # Backpack: the origin echoed with credentials (the SDK sends credentials: 'include').
    ("/things", {"access-control-allow-origin": ORIGIN, "access-control-allow-credentials": "true"}),
    # Inbox documents: echoed, exposing Revision, no credentials.
    ("/backend/documents/" + "a" * 32, {"access-control-allow-origin": ORIGIN, "access-control-expose-headers": "Revision"}),
    # Directus REST.
    ("/items/things", {"access-control-allow-origin": ORIGIN}),
    # Asnity REST (Nest's enableCors with credentials).
    ("/api/users", {"access-control-allow-origin": ORIGIN, "access-control-allow-credentials": "true"}),
])
async def test_a_413_from_the_parser_carries_the_mounts_cors_headers(tmp_path: Path, path: str,
                                                                     expected: dict[str, str]) -> None:
    args = build_parser().parse_args(["serve", "--host", "127.0.0.1", "--port", "0", "--data-dir", str(tmp_path),
                                      "--api-key", API_KEY, "--log-level", "warning", "--max-body-bytes", "1000"])
    async with trio.open_nursery() as nursery:
        port = await nursery.start(run_server, args)
        body = b"x" * 5000
        request = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nOrigin: {ORIGIN}\r\n"
                   f"Authorization: key {API_KEY}\r\nContent-Type: application/json\r\n"
                   f"Content-Length: {len(body)}\r\n\r\n").encode() + body
        response = await _send(port, request)
        assert response.startswith(b"HTTP/1.1 413"), response[:200]
        headers = _headers(response)
        for name, value in expected.items():
            assert headers.get(name) == value, (name, headers)
        # Without an Origin: no CORS headers, as the mounts' own answers.
        plain = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: key {API_KEY}\r\n"
                 f"Content-Length: {len(body)}\r\n\r\n").encode() + body
        response = await _send(port, plain)
        assert response.startswith(b"HTTP/1.1 413")
        assert "access-control-allow-origin" not in _headers(response)
        nursery.cancel_scope.cancel()


def test_an_origin_a_mount_does_not_allow_gets_no_cors_headers_on_its_errors() -> None:
    board = Switchboard(standard_mounts(BackpackConfig(api_key="k", allowed_origins=frozenset({ORIGIN}))),
                        system_environment())
    allowed = board.error_response(HttpRequest("POST", "/things", [("origin", ORIGIN)]), 413, "Request body too large")
    assert ("access-control-allow-origin", ORIGIN) in allowed.headers
    other = board.error_response(HttpRequest("POST", "/things", [("origin", "https://evil.example")]), 413, "too large")
    assert not any(name == "access-control-allow-origin" for name, _ in other.headers)
    # No request head at all (unparseable): the neutral error, no CORS.
    assert board.error_response(None, 400, "bad").status == 400
