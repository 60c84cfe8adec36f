"""The Engine.IO test-suite server, built on Satchel's core and transport.

socket.io publishes a compliance suite for Engine.IO v4 servers
(``test-suite/`` of the public repository ``socketio/engine.io-protocol``).
It expects a server on localhost:3000 at ``/engine.io/`` with
``pingInterval: 300, pingTimeout: 200, maxPayload: 1e6``, CORS ``*``, and
every message echoed back to its sender. This is that server: one mount,
``EchoMount``, whose only logic is "send each message back"; Engine.IO
itself - polling, the upgrade, heartbeats, errors - is Satchel's
(``satchel.protocol.socketio`` driven by ``satchel.transports.engineio``).

    python examples/engineio_protocol_server.py            # port 3000
    python examples/engineio_protocol_server.py --port 0   # any free port

``tests/test_socketio_protocol_suites.py`` runs the official suite against it.
"""

from __future__ import annotations

import argparse
from functools import partial
from typing import Any

import trio

from satchel.protocol import Accepted, Audience, Binary, Deliver, Mount, MountTable
from satchel.protocol.socketio import EngineIoConfig
from satchel.storage_backends.memory import MemoryStore
from satchel.transports.app import serve_mounts

#: The reference configuration of the suite's README.
CONFIG = EngineIoConfig(ping_interval_ms=300, ping_timeout_ms=200, max_payload=1_000_000)


class EchoMount(Mount):
    """Engine.IO at ``/engine.io``: every message goes back to its sender."""

    name = "engineio-echo"

    def claims_engineio(self, request: Any) -> EngineIoConfig | None:
        return CONFIG if request.path == "/engine.io" else None

    def accept(self, request: Any, connection: str, env: Any) -> Any:
        return Accepted(connection, None)
        yield  # an action is a generator

    def handle_message(self, state: str, message: str | bytes, env: Any) -> Any:
        payload = message.encode("utf-8") if isinstance(message, str) else Binary(message)
        return [Deliver(self.name, payload, Audience(connection=state))]
        yield


async def main(host: str, port: int) -> None:
    async with trio.open_nursery() as nursery:
        bound, _ = await nursery.start(partial(serve_mounts, MountTable([EchoMount()]), host, port, store=MemoryStore()))
        print(f"Engine.IO test server ready at http://{host}:{bound}", flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="The engine.io-protocol test-suite server, on Satchel")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=3000)
    args = parser.parse_args()
    try:
        trio.run(main, args.host, args.port)
    except KeyboardInterrupt:
        pass
