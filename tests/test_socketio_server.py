"""Satchel's Socket.IO server over the wire: the stock client against the
generic layer, the heartbeat, and hostile input.

- ``node_clients/socketio_scenario.mjs`` drives the stock npm
  ``socket.io-client`` against ``examples/socketio_protocol_server.py``:
  binary payloads and acks both ways, two namespaces on one connection,
  polling then the upgrade.
- A silent client (it never answers a ping) is closed after pingInterval +
  pingTimeout; a talking one is kept.
- Hostile input against the real ``satchel serve``: oversized polling bodies
  and packets, unknown sids, garbage after the upgrade, a flood of
  namespaces - each answered in Engine.IO's or Socket.IO's own way, and the
  server and its other clients go on.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from http.client import HTTPConnection
from pathlib import Path
from typing import Any, Iterator

import pytest
import trio
from trio_websocket import ConnectionClosed, open_websocket_url

from server_process import Launched, ServerProcess

ROOT = Path(__file__).resolve().parent.parent
CLIENTS = Path(__file__).parent / "node_clients"
HEARTBEAT = ["--socketio-ping-interval-ms", "400", "--socketio-ping-timeout-ms", "300", "--socketio-max-payload", "20000",
             # A 700 ms heartbeat: a pong held back by the per-sender budget
             # (tests/test_abuse.py) behind a 2,000-frame flood would miss it.
             "--websocket-message-rate", "0"]

needs_node_client = pytest.mark.skipif(
    not os.environ.get("CI") and (shutil.which("node") is None or not (CLIENTS / "node_modules" / "socket.io-client").exists()),
    reason="needs node and `npm ci` in tests/node_clients (make test installs it)",
)


@pytest.fixture(scope="module")
def satchel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    process = ServerProcess(tmp_path_factory.mktemp("socketio-data"), extra=HEARTBEAT)
    try:
        yield process
    finally:
        process.stop()


def http(port: int, method: str, target: str, body: bytes | None = None) -> tuple[int, bytes]:
    connection = HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request(method, target, body=body)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def handshake(port: int) -> str:
    status, body = http(port, "GET", "/socket.io/?EIO=4&transport=polling")
    assert status == 200 and body.startswith(b"0{"), body
    return json.loads(body[1:])["sid"]


@needs_node_client
def test_the_stock_client_on_the_generic_layer_binary_and_acks_both_ways() -> None:
    server = Launched([sys.executable, str(ROOT / "examples" / "socketio_protocol_server.py"), "--port", "0"], cwd=ROOT)
    try:
        run = subprocess.run(["node", "socketio_scenario.mjs", server.url], cwd=CLIENTS, capture_output=True,
                             text=True, timeout=60)
    finally:
        server.stop()
    checks = [json.loads(line) for line in run.stdout.splitlines() if line.startswith("{")]
    assert run.returncode == 0 and checks and all(check["ok"] for check in checks), run.stdout + run.stderr
    assert len(checks) == 7


async def test_a_silent_client_is_closed_after_ping_interval_and_timeout(satchel: ServerProcess) -> None:
    url = f"ws://127.0.0.1:{satchel.port}/socket.io/?EIO=4&transport=websocket"
    pongs = 0

    async def talk(ws: Any) -> None:
        nonlocal pongs
        while True:
            assert await ws.get_message() == "2"
            await ws.send_message("3")
            pongs += 1

    async with open_websocket_url(url) as silent, open_websocket_url(url) as talking:
        assert (await silent.get_message()).startswith("0{")
        assert (await talking.get_message()).startswith("0{")
        async with trio.open_nursery() as nursery:
            nursery.start_soon(talk, talking)
            started = trio.current_time()
            with trio.fail_after(5):
                assert await silent.get_message() == "2"  # the ping, never answered
                with pytest.raises(ConnectionClosed):
                    while True:
                        await silent.get_message()
            # pingInterval 400 + pingTimeout 300, measured from the handshake.
            assert 0.6 <= trio.current_time() - started <= 2.5
            # The one that answers its pings is kept meanwhile, and after.
            with trio.fail_after(5):
                while pongs < 4:
                    await trio.sleep(0.05)
            assert not talking.closed
            nursery.cancel_scope.cancel()


def test_unknown_sids_and_bad_queries_get_engineio_errors(satchel: ServerProcess) -> None:
    status, body = http(satchel.port, "GET", "/socket.io/?EIO=4&transport=polling&sid=nope")
    assert (status, json.loads(body)) == (400, {"code": 1, "message": "Session ID unknown"})
    status, body = http(satchel.port, "GET", "/socket.io/?EIO=3&transport=polling")
    assert status == 400 and json.loads(body)["code"] == 5
    status, body = http(satchel.port, "GET", "/socket.io/?EIO=4&transport=carrier-pigeon")
    assert status == 400 and json.loads(body)["code"] == 0


def test_an_oversized_polling_body_is_refused_and_ends_its_session(satchel: ServerProcess) -> None:
    sid = handshake(satchel.port)
    status, _ = http(satchel.port, "POST", f"/socket.io/?EIO=4&transport=polling&sid={sid}", b"4" + b"x" * 30_000)
    assert status == 413
    status, body = http(satchel.port, "GET", f"/socket.io/?EIO=4&transport=polling&sid={sid}")
    assert status == 400
    # A body over the transport's own limit never reaches Engine.IO: refused unread.
    status, body = http(satchel.port, "POST", f"/socket.io/?EIO=4&transport=polling&sid={handshake(satchel.port)}",
                        b"4" + b"y" * (2 * 1024 * 1024))
    assert status == 413 and json.loads(body)["code"] == 3  # in Engine.IO's error format
    assert handshake(satchel.port)  # and the server goes on


async def _expect_closed(ws: Any) -> None:
    with trio.fail_after(5):
        with pytest.raises(ConnectionClosed):
            while True:
                message = await ws.get_message()
                assert message == "2" or message.startswith("0{"), message


@pytest.mark.parametrize("garbage", ["xyz", "4abc", "42{}", '42abc["x"]', "45-[]", b"\x00\x01\x02", "4" + "9" * 25_000])
async def test_garbage_after_the_handshake_closes_only_that_connection(satchel: ServerProcess, garbage: Any) -> None:
    url = f"ws://127.0.0.1:{satchel.port}/socket.io/?EIO=4&transport=websocket"
    async with open_websocket_url(url) as bystander:
        assert (await bystander.get_message()).startswith("0{")
        await bystander.send_message("40")
        assert (await bystander.get_message()).startswith("44")  # "/" is no namespace of Asnity's
        async with open_websocket_url(url) as hostile:
            assert (await hostile.get_message()).startswith("0{")
            await hostile.send_message(garbage)
            await _expect_closed(hostile)
        with trio.fail_after(5):
            await bystander.send_message("40/socket/commu-x")
            answer = await bystander.get_message()
            while answer == "2":
                await bystander.send_message("3")
                answer = await bystander.get_message()
            assert answer.startswith("44/socket/commu-x,")  # still answered


async def test_a_flood_of_namespaces_is_refused_one_by_one_and_costs_nothing(satchel: ServerProcess) -> None:
    url = f"ws://127.0.0.1:{satchel.port}/socket.io/?EIO=4&transport=websocket"
    async with open_websocket_url(url) as ws:
        assert (await ws.get_message()).startswith("0{")
        count = 2000
        for n in range(count):
            await ws.send_message(f"40/socket/commu-{n:024x}" if n % 2 else f"40/no-such-{n}")
        refused = 0
        with trio.fail_after(20):
            while refused < count:
                message = await ws.get_message()
                if message == "2":
                    await ws.send_message("3")
                    continue
                assert message.startswith("44/"), message
                refused += 1
        await ws.send_message("3")
    status, _ = http(satchel.port, "GET", "/api/users?search=x")
    assert status == 401  # REST still served (and still wants a token)
