"""The bounded history of each resource's updates, for resume after
reconnect (issue 12 part 3; Centrifugo's recovery is the anchor).

A subscribe may carry ``since``: the last version its client saw of the
resource. The history answers what came after it - the updates, in order,
for the subscriber to be rendered again - or that it cannot vouch for that
version (``None``): then the client is told to reload, never left with a
silent gap.

What the history *knows* of a resource: the versions of the updates it
holds, and one more version, its ``floor``, after which it holds every
update - the version of the last update it evicted, or the version a
subscribe answered the resource's current state with when the history held
nothing newer (``mark``). A ``since`` the history does not know - older than
what it kept, from another server lifetime, newer than anything it gave,
or never given at all - is answered ``None``. Knowing means equal, not
"within the range": a version of another process can fall between two of
ours and say nothing about what came between.

Limits (``ResourcesConfig``): at most ``per_resource`` updates per resource
(a ring: the oldest goes first, and becomes the floor), at most
``max_bytes`` of updates across resources and at most ``max_resources``
resources. Past either global limit the resource written least recently
loses its oldest update, then the next, and a resource left with none is
forgotten (its floor with it). In memory and per process, like the version
clock and the hub.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from typing import Any, Hashable

__all__ = ["History", "Item"]

#: What an item costs beyond its payload (the deque slot, the item, its fields).
ITEM_OVERHEAD = 200


class Item:
    """One update of a resource as the history keeps it: its ``version``
    (ms), what the renderer needs to render it again (``update``) and its
    size in bytes (``size``)."""

    __slots__ = ("version", "update", "size")

    def __init__(self, version: int, update: Any, size: int) -> None:
        self.version = version
        self.update = update
        self.size = size + ITEM_OVERHEAD


class _Ring:
    __slots__ = ("items", "floor")

    def __init__(self) -> None:
        self.items: deque[Item] = deque()
        #: every update after this version is in ``items`` (``None``: none known)
        self.floor: int | None = None


class History:
    """The last updates of each resource (the module docstring)."""

    __slots__ = ("per_resource", "max_bytes", "max_resources", "bytes", "_rings")

    def __init__(self, per_resource: int = 100, max_bytes: int = 16 * 1024 * 1024,
                 max_resources: int = 10_000) -> None:
        self.per_resource = per_resource
        self.max_bytes = max_bytes
        self.max_resources = max_resources
        #: bytes held across resources (payloads and ``ITEM_OVERHEAD``)
        self.bytes = 0
        #: resource -> its ring, least recently written first
        self._rings: OrderedDict[Hashable, _Ring] = OrderedDict()

    def __len__(self) -> int:
        """The number of resources the history knows."""
        return len(self._rings)

    def items(self, resource: Hashable) -> list[Item]:
        """The updates held for ``resource``, oldest first."""
        ring = self._rings.get(resource)
        return list(ring.items) if ring is not None else []

    def record(self, resource: Hashable, item: Item) -> None:
        """Keep ``item``, the newest update of ``resource``."""
        if self.per_resource <= 0:
            return
        rings = self._rings
        ring = rings.get(resource)
        if ring is None:
            ring = rings[resource] = _Ring()
        else:
            rings.move_to_end(resource)
        ring.items.append(item)
        self.bytes += item.size
        if len(ring.items) > self.per_resource:
            self._evict_oldest(ring)
        self._shrink()

    def mark(self, resource: Hashable, version: int) -> None:
        """``version`` is the resource's current state as a subscribe just
        answered it: every later update will be recorded, so it is known -
        unless the history already holds a newer update (a write landed
        between the read and now)."""
        if self.per_resource <= 0:
            return
        ring = self._rings.get(resource)
        if ring is None:
            ring = self._rings[resource] = _Ring()
            self._rings.move_to_end(resource, last=False)  # holds nothing: the first to go
            self._shrink()
        if ring.items and ring.items[-1].version >= version:
            return
        if ring.floor is None or ring.floor < version:
            ring.floor = version

    def knows(self, resource: Hashable, version: int) -> bool:
        """Whether every update of ``resource`` after ``version`` is held."""
        ring = self._rings.get(resource)
        if ring is None:
            return False
        return ring.floor == version or any(item.version == version for item in ring.items)

    def after(self, resource: Hashable, version: int) -> list[Item] | None:
        """The updates of ``resource`` after ``version``, oldest first, or
        ``None`` when the history does not know ``version``."""
        if not self.knows(resource, version):
            return None
        return [item for item in self._rings[resource].items if item.version > version]

    def since_first(self, resource: Hashable) -> list[Item]:
        """For a resource that had no version when it was read: every
        update held, when the history still holds the first it recorded;
        else the newest alone (the state, if not the sequence)."""
        ring = self._rings.get(resource)
        if ring is None or not ring.items:
            return []
        return list(ring.items) if ring.floor is None else [ring.items[-1]]

    def newest(self, resource: Hashable) -> Item | None:
        """The newest update held for ``resource``."""
        ring = self._rings.get(resource)
        return ring.items[-1] if ring is not None and ring.items else None

    def _evict_oldest(self, ring: _Ring) -> None:
        gone = ring.items.popleft()
        self.bytes -= gone.size
        if ring.floor is None or ring.floor < gone.version:
            ring.floor = gone.version

    def _shrink(self) -> None:
        rings = self._rings
        while rings and (self.bytes > self.max_bytes or len(rings) > self.max_resources):
            resource, ring = next(iter(rings.items()))
            if ring.items and len(rings) <= self.max_resources:
                self._evict_oldest(ring)
                if ring.items:
                    continue
            # Nothing left of it, or one resource too many: forgotten.
            for item in ring.items:
                self.bytes -= item.size
            del rings[resource]
