"""The Socket.IO test-suite server, built on Satchel's core and transport.

socket.io publishes a compliance suite for Socket.IO v5 servers
(``test-suite/`` of the public repository ``socketio/socket.io-protocol``).
Its README gives the reference server: localhost:3000, ``pingInterval:
300, pingTimeout: 200, maxPayload: 1000000, connectTimeout: 1000``, CORS
``*``; on connection it emits ``auth`` with the handshake's auth, answers
``message`` with ``message-back`` and the same arguments, acks
``message-with-ack`` with its arguments, and a ``/custom`` namespace emits
``auth``. This is that server: two ``NamespaceHandler``s of a few lines on
Satchel's Socket.IO layer (``satchel.protocol.socketio.server``) and its
Engine.IO transport. One event beyond the suite's, ``ask``, shows an emit
that asks the client for an ack: the server emits ``question`` with the
arguments and an ack; the client's ack comes back as ``answered``
(``tests/node_clients/socketio_scenario.mjs`` uses it with the stock client).

    python examples/socketio_protocol_server.py            # port 3000
    python examples/socketio_protocol_server.py --port 0   # any free port

``tests/test_socketio_protocol_suites.py`` runs the official suite against it.
"""

from __future__ import annotations

import argparse
from functools import partial
from typing import Any

import trio

from satchel.protocol import MountTable
from satchel.protocol.socketio import EngineIoConfig
from satchel.protocol.socketio.mount import SocketIoMount
from satchel.protocol.socketio.server import Admitted, NamespaceHandler, NamespaceSocket, Reply, SocketIoConfig
from satchel.storage_backends.memory import MemoryStore
from satchel.transports.app import serve_mounts

ENGINEIO = EngineIoConfig(ping_interval_ms=300, ping_timeout_ms=200, max_payload=1_000_000)
SOCKETIO = SocketIoConfig(connect_timeout_ms=1000)


class Main(NamespaceHandler):
    """``/``: emits ``auth``, echoes ``message`` as ``message-back``, acks ``message-with-ack``."""

    def matches(self, nsp: str) -> bool:
        return nsp == "/"

    def connect(self, handshake: Any, nsp: str, auth: Any, socket_id: str, connection: str, env: Any) -> Any:
        return Admitted(emits=[("auth", [auth if auth is not None else {}])])
        yield  # an action is a generator

    def event(self, socket: NamespaceSocket, name: str, args: list[Any], wants_ack: bool, env: Any) -> Any:
        if name == "message":
            return Reply(emits=[("message-back", args)])
        if name == "message-with-ack":
            return Reply(ack=args)
        if name == "ask":
            return Reply(emits=[("question", args, "ask")])
        return Reply()
        yield

    def acked(self, socket: NamespaceSocket, key: Any, args: list[Any], env: Any) -> Any:
        return Reply(emits=[("answered", args)])
        yield


class Custom(Main):
    """``/custom``: emits ``auth`` and nothing more."""

    def matches(self, nsp: str) -> bool:
        return nsp == "/custom"

    def event(self, socket: NamespaceSocket, name: str, args: list[Any], wants_ack: bool, env: Any) -> Any:
        return Reply()
        yield


def mounts() -> MountTable:
    """The suite's server as a mount table."""
    return MountTable([SocketIoMount("socketio-suite", [Main(), Custom()], engineio=ENGINEIO, socketio=SOCKETIO)])


async def main(host: str, port: int) -> None:
    async with trio.open_nursery() as nursery:
        bound, _ = await nursery.start(partial(serve_mounts, mounts(), host, port, store=MemoryStore()))
        print(f"Socket.IO test server ready at http://{host}:{bound}", flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="The socket.io-protocol test-suite server, on Satchel")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=3000)
    args = parser.parse_args()
    try:
        trio.run(main, args.host, args.port)
    except KeyboardInterrupt:
        pass
