"""Carries the events actions return to this process's live connections.

``LocalBus.publish`` hands the events to the switchboard, which renders each
change for every mount that shows it and applies each hub instruction to
that mount's registry (``satchel.protocol.Switchboard.deliveries``), and
gives the hub each delivery as ONE encoded payload plus its recipients - the
hub frames it once per kind of target, never once per recipient.
``publish`` never awaits, so the events of one action are applied in order
and atomically with respect to other tasks.

A broker-backed bus (Redis, NATS) for several server processes will publish
the same events to the broker and apply what arrives from it here.
"""

from __future__ import annotations

from typing import Iterable

from satchel.protocol.mounts import Event
from satchel.protocol.switchboard import Switchboard

from .hub import Hub

__all__ = ["LocalBus"]


class LocalBus:
    """Fan-out within one server process."""

    __slots__ = ("hub", "board")

    def __init__(self, hub: Hub, board: Switchboard) -> None:
        self.hub = hub
        self.board = board

    def publish(self, events: Iterable[Event]) -> None:
        """Apply ``events`` in order and deliver what they say."""
        deliver = self.hub.deliver
        for payload, recipients in self.board.deliveries(events):
            deliver(payload, recipients)
