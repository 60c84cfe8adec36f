"""Carries hub events to this process's live connections.

Actions return ``Change``s and hub instructions; ``LocalBus.publish`` renders
the changes for every protocol (``protocol.dispatch``), applies each
instruction to that protocol's ``ChannelRegistry`` and hands each delivery
to the hub as ONE framed payload plus its recipients - never one encoding
per recipient. ``publish`` never awaits, so the events of one action are
applied in order and atomically with respect to other tasks.

A broker-backed bus (Redis, NATS) for several server processes will publish
the same events to the broker and apply what arrives from it here.
"""

from __future__ import annotations

from typing import Iterable

from satchel.protocol.changes import Change
from satchel.protocol.channels import ChannelRegistry, Deliver, HubEvent
from satchel.protocol.dispatch import RENDERERS, hub_events

from .hub import Hub
from .websocket.frames import encode_text_frame

__all__ = ["LocalBus"]


class LocalBus:
    """Fan-out within one server process."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        #: protocol name -> the registry of that protocol's live connections
        self.registries: dict[str, ChannelRegistry] = {name: ChannelRegistry() for name in RENDERERS}

    def publish(self, events: Iterable[Change | HubEvent]) -> None:
        """Apply ``events`` in order and deliver what they say."""
        for event in hub_events(events):
            recipients = self.registries[event.protocol].apply(event)
            if recipients and isinstance(event, Deliver):
                self.hub.deliver(encode_text_frame(event.payload), recipients)
