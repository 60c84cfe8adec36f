"""From what actions return to what the hub does.

Actions return a mix of ``Change``s (writes) and hub instructions. Every
protocol with live connections renders each change in its own format; this
module holds the table of renderers and flattens a batch of events into hub
instructions, in order. It is the one place where a new protocol plugs its
change renderer in.
"""

from __future__ import annotations

from typing import Callable, Iterable, Iterator

from .backpack.render import PROTOCOL as BACKPACK, render_change as render_backpack
from .changes import Change, DocumentChange
from .channels import CloseChannel, Deliver, HubEvent, Subscribe, Unsubscribe

__all__ = ["RENDERERS", "hub_events"]

#: protocol name -> renders a change for that protocol's connections (or not).
RENDERERS: dict[str, Callable[[Change], Deliver | None]] = {BACKPACK: render_backpack}


def hub_events(events: Iterable[Change | DocumentChange | HubEvent]) -> Iterator[HubEvent]:
    """Hub instructions for ``events``: changes rendered by every protocol."""
    for event in events:
        if isinstance(event, DocumentChange):
            # No protocol renders document writes yet (issue #6); Backpack
            # never will, since documents are not records of a collection.
            continue
        if isinstance(event, Change):
            for render in RENDERERS.values():
                delivery = render(event)
                if delivery is not None:
                    yield delivery
        elif isinstance(event, (Deliver, Subscribe, Unsubscribe, CloseChannel)):
            yield event
        else:
            raise TypeError(f"not an event: {event!r}")
