"""Live websocket connections and fan-out.

The hub maps connection ids to open ``WebsocketConnection``s and delivers one
pre-encoded frame to many of them. Who receives a message is the core's
decision (``satchel.protocol.channels`` resolves an ``Audience`` to ids); the
hub only writes. ``deliver`` is synchronous on purpose: each recipient gets
an immediate non-blocking write, or a place in its bounded outbox, without a
trip through the scheduler per recipient (STACK.md: that trip, ~20 us, is
what held awaited fan-out to ~31k deliveries/s). A recipient that cannot
keep up is closed with 1008 by its own connection and never slows the rest.

The server registers each websocket in the hub before the application is
asked to accept it, and removes it before ``on_websocket_closed``.
"""

from __future__ import annotations

from typing import Iterable, Iterator

from satchel.transports.websocket import WebsocketConnection, encode_text_frame

__all__ = ["Hub"]


class Hub:
    """The live websocket connections of one server, by id."""

    __slots__ = ("_connections",)

    def __init__(self) -> None:
        self._connections: dict[str, WebsocketConnection] = {}

    def __len__(self) -> int:
        return len(self._connections)

    def __contains__(self, connection_id: object) -> bool:
        return connection_id in self._connections

    def __iter__(self) -> Iterator[str]:
        """The ids of the live connections (a snapshot)."""
        return iter(list(self._connections))

    def add(self, connection: WebsocketConnection) -> None:
        """Register ``connection`` under its id."""
        self._connections[connection.id] = connection

    def remove(self, connection_id: str) -> None:
        """Forget a connection (idempotent)."""
        self._connections.pop(connection_id, None)

    def get(self, connection_id: str) -> WebsocketConnection | None:
        """The live connection with this id, if any."""
        return self._connections.get(connection_id)

    def deliver(self, frame: bytes, connection_ids: Iterable[str]) -> None:
        """Send one encoded frame, the same bytes, to each named connection.

        Unknown ids and connections already closing are skipped. Nothing here
        awaits: a caller that delivers in a loop must itself yield now and
        then (any checkpoint) so that the writer tasks of busy connections
        get to run - otherwise their outboxes only grow until they are closed
        as slow consumers.
        """
        connections = self._connections
        for connection_id in connection_ids:
            connection = connections.get(connection_id)
            if connection is not None:
                connection.send_frame(frame)

    def deliver_text(self, payload: bytes, connection_ids: Iterable[str]) -> None:
        """Frame ``payload`` (encoded UTF-8 text) once, then ``deliver`` it."""
        self.deliver(encode_text_frame(payload), connection_ids)
