"""Backpack end to end against the reference server process.

The end-to-end scenarios (two users live, channels, close announcements,
refusal without a session, bad and oversized frames, hostile requests) live
in ``scenarios.py`` and run against the reference server, the ASGI app and
both examples from ``test_examples.py`` / ``test_asgi.py``. This file adds
what only the reference transport promises: every hostile request gets a
clear HTTP error (or a closed connection), one by one.
"""

from __future__ import annotations

import pytest
import trio

from scenarios import HOSTILE, raw_exchange
from server_process import Http, ServerProcess

REFERENCE_ONLY = [
    # Transfer codings other than chunked: 501, not a guess at the body.
    b"POST /login HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n",
]


@pytest.mark.parametrize("payload", HOSTILE + REFERENCE_ONLY, ids=range(len(HOSTILE) + len(REFERENCE_ONLY)))
async def test_hostile_http_gets_an_error_or_a_closed_connection(server: ServerProcess, payload: bytes) -> None:
    answer = await trio.to_thread.run_sync(raw_exchange, server.port, payload)
    assert answer == b"" or answer.startswith(b"HTTP/1.1 4") or answer.startswith(b"HTTP/1.1 501"), answer[:80]
    assert server.alive()
    status, _, _ = await trio.to_thread.run_sync(lambda: Http(server).request("GET", "/collections"))
    assert status == 200
