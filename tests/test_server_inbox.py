"""Inbox documents end to end: the real server, HTTP and real UDP datagrams
on the same port number (seed 001, BRIEF section 2)."""

from __future__ import annotations

import json
import os
import secrets
import socket
import time
from http.client import HTTPConnection

import pytest

from satchel.protocol.inbox import encode_request
from satchel.transports.udp import remove_message_udp, send_message_udp
from server_process import ServerProcess


def call(server: ServerProcess, method: str, path: str, body: object = None, headers: dict | None = None):
    connection = HTTPConnection("127.0.0.1", server.port, timeout=5)
    payload = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    connection.request(method, path, payload, headers or {})
    response = connection.getresponse()
    raw = response.read()
    connection.close()
    return response.status, raw, {k.lower(): v for k, v in response.getheaders()}


def new_inbox(server: ServerProcess) -> tuple[str, str]:
    read_token, write_token = secrets.token_hex(16), secrets.token_hex(16)
    status, _, _ = call(server, "PUT", f"/backend/documents/{read_token}", {"#messages": {}, "title": "sensors"},
                        {"Write-Token": write_token, "Derived-From": "0", "Revision": "1"})
    assert status == 200
    return read_token, write_token


def messages(server: ServerProcess, read_token: str) -> dict:
    status, raw, _ = call(server, "GET", f"/backend/documents/{read_token}")
    assert status == 200
    return json.loads(raw)["#messages"]


def test_documents_and_messages_over_http(server: ServerProcess) -> None:
    read_token, write_token = new_inbox(server)
    status, raw, headers = call(server, "GET", f"/backend/documents/{read_token}")
    assert status == 200 and json.loads(raw)["title"] == "sensors" and headers["revision"] == "1"
    assert call(server, "GET", f"/backend/documents/{read_token}", headers={"If-Newer-Than": "1"})[0] == 304
    assert call(server, "POST", f"/backend/documents/{write_token}/messages/00000000000000a1",
                {"#": 5, "temperature": 21.1})[0] == 200
    assert call(server, "POST", f"/backend/documents/{write_token}/messages/00000000000000a1",
                {"#": 4, "temperature": 99})[0] == 200  # older: merged away
    assert messages(server, read_token) == {"00000000000000a1": {"#": 5, "temperature": 21.1}}
    assert call(server, "POST", f"/backend/documents/{write_token}/messages/00000000000000a1", b"{nope")[0] == 400
    assert call(server, "POST", f"/backend/documents/{write_token}/messages/00000000000000a1",
                b'{"x":"' + b"a" * 5000 + b'"}')[0] == 413
    assert call(server, "DELETE", f"/backend/documents/{write_token}/messages/00000000000000a1")[0] == 200
    assert messages(server, read_token) == {}
    assert call(server, "PUT", f"/backend/documents/{read_token}", {"#messages": {}},
                {"Write-Token": secrets.token_hex(16), "Derived-From": "1", "Revision": "2"})[0] == 403


def test_messages_over_udp_on_the_http_port_number(server: ServerProcess) -> None:
    read_token, write_token = new_inbox(server)
    assert send_message_udp("127.0.0.1", server.port, write_token, "00000000000000b2", {"#": 1, "v": 1}) == "M"
    assert send_message_udp("127.0.0.1", server.port, write_token, "00000000000000b3", {"v": 2}) == "M"
    assert messages(server, read_token) == {"00000000000000b2": {"#": 1, "v": 1}, "00000000000000b3": {"v": 2}}
    assert remove_message_udp("127.0.0.1", server.port, write_token, "00000000000000b3") == "M"
    assert list(messages(server, read_token)) == ["00000000000000b2"]

    plain_read, plain_write = secrets.token_hex(16), secrets.token_hex(16)
    call(server, "PUT", f"/backend/documents/{plain_read}", {"not": "an inbox"},
         {"Write-Token": plain_write, "Derived-From": "0", "Revision": "1"})
    assert send_message_udp("127.0.0.1", server.port, plain_write, "00000000000000b4", {"v": 3}) == "N"
    with pytest.raises(TimeoutError):  # an unknown token is never answered
        send_message_udp("127.0.0.1", server.port, secrets.token_hex(16), "00000000000000b5", {}, timeout=0.3, attempts=1)


def test_replayed_and_garbage_datagrams_are_dropped_and_the_server_goes_on(server: ServerProcess) -> None:
    read_token, write_token = new_inbox(server)
    request = encode_request(write_token, "00000000000000c1", {"v": 1}, timestamp_ms=int(time.time() * 1000),
                             nonce=os.urandom(8))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.settimeout(1)
        udp.sendto(request, ("127.0.0.1", server.port))
        answer, _ = udp.recvfrom(64)
        assert len(answer) <= len(request) and answer[5:6] == b"M"
        udp.sendto(request, ("127.0.0.1", server.port))  # the same bytes again
        for garbage in (b"", b"SINB", os.urandom(100), b"SINB\x01A" + os.urandom(200), os.urandom(9000)):
            udp.sendto(garbage, ("127.0.0.1", server.port))
        udp.settimeout(0.5)
        with pytest.raises(socket.timeout):
            udp.recvfrom(64)
    assert server.alive()
    assert send_message_udp("127.0.0.1", server.port, write_token, "00000000000000c2", {"v": 2}) == "M"
    assert sorted(messages(server, read_token)) == ["00000000000000c1", "00000000000000c2"]
