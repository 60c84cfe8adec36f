"""Carries the events actions return to this process's live connections.

``LocalBus.publish`` hands the events to the switchboard, which renders each
change for every mount that shows it and applies each hub instruction to
that mount's registry (``satchel.protocol.Switchboard.deliveries``), and
gives the hub each delivery as ONE encoded payload plus its recipients - the
hub frames it once per kind of target, never once per recipient.
``publish`` never awaits, so the events of one action are applied in order
and atomically with respect to other tasks.

Commit order: given the action's ``Ticket``, ``publish`` applies the events
when the reorder stage says (``satchel.transports.ordering``): after every
write committed before the action's own. Without a ticket (events of no
write: a subscribe, a closed connection) they go at once, or right after
the publishes waiting there.

A broker-backed bus (Redis, NATS) for several server processes will publish
the same events to the broker and apply what arrives from it here.
"""

from __future__ import annotations

from typing import Iterable

from satchel.protocol.mounts import Event
from satchel.protocol.switchboard import Switchboard

from .hub import Hub
from .ordering import Sequencer, Ticket

__all__ = ["LocalBus"]


class LocalBus:
    """Fan-out within one server process."""

    __slots__ = ("hub", "board", "sequencer")

    def __init__(self, hub: Hub, board: Switchboard, sequencer: Sequencer | None = None) -> None:
        self.hub = hub
        self.board = board
        #: The reorder stage of the store's commit stamps (``SatchelApp``
        #: sets its runner's); ``None``: every publish is applied at once.
        self.sequencer = sequencer

    def publish(self, events: Iterable[Event], ticket: Ticket | None = None, *, opening: bool = False) -> None:
        """Apply ``events`` in order and deliver what they say - in commit
        order, given the ticket of the action that returned them (``opening``:
        the events of a connection's registration, ``Ticket.publish_opening``)."""
        if ticket is not None and opening:
            ticket.publish_opening(lambda: self._apply(events))
        elif ticket is not None:
            ticket.publish(lambda: self._apply(events))
        elif self.sequencer is not None:
            self.sequencer.publish(lambda: self._apply(events))
        else:
            self._apply(events)

    def _apply(self, events: Iterable[Event]) -> None:
        deliver = self.hub.deliver
        for payload, recipients in self.board.deliveries(events):
            deliver(payload, recipients)
