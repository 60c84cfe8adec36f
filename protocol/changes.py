"""Change events: one per write, whatever protocol made it.

Every write to a collection produces exactly one ``Change``. The hub hands it
to each protocol's renderer (for Backpack, ``backpack.render_change``), which
decides who hears about it and in which format. This is what lets a record
created over Backpack's REST API reach a websocket subscriber of another
protocol: they share the event, not the wire format.

The four kinds use one vocabulary across Satchel: ``create``, ``patch``
(merge), ``overwrite`` (replace every field) and ``delete``. Backpack's wire
names for the last three are ``patch``, ``update`` and ``delete``.

Token-addressed documents (seed 001) are not records of a collection: each
write of one (a PUT, a message merged or removed, over HTTP or UDP) produces
one ``DocumentChange`` instead.

Entries of the key-value store and of the live configuration (seed 004)
are not records either: each write of one (a put or a delete) produces one
``EntryChange``.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

__all__ = ["Change", "ChangeKind", "DELETED", "DocumentChange", "EntryChange", "EntryChangeKind"]

ChangeKind = Literal["create", "patch", "overwrite", "delete"]
#: What a write did to an entry: stored a value, or deleted it.
EntryChangeKind = Literal["put", "delete"]
#: ``Change.revision`` of a delete: above every revision the record had.
DELETED = 2**62


class Change(msgspec.Struct, frozen=True, tag=True):
    """A committed write to ``collection``.

    ``record`` is the record after the write (for ``delete``, the record that
    was removed). ``user_id`` is who made the write and ``origin`` names the
    protocol and transport it came through (``"backpack-http"``,
    ``"backpack-ws"``, ...; ``<protocol>-http`` for every write made by an
    HTTP request, ``is_http``), because some protocols render writes
    differently (Backpack marks HTTP writes with ``httpRequest: true``, and
    does not repeat the bookkeeping writes of its channel actions, whose own
    messages already tell its clients). ``connection`` is the websocket
    connection that asked for the write, if any, so its author always hears
    about it.

    ``revision`` is the record's revision after the write (the store's
    counter, ``StoredRecord.revision``: 1 at creation, one more with every
    write), ``DELETED`` for a delete (nothing of that record comes after it)
    and 0 when unknown. Within one process changes are published in commit
    order anyway; across processes it is what lets a process drop a write of
    a record that reached it after a newer one (``brokers.topics.change_key``).

    ``numbered`` is (sequence, number) for the create of a record numbered
    by ``InsertNumbered`` (an Asnity chat: its channel's sequence and its
    id): the sequence's numbers are its records' commit order, so across
    processes the creates of one sequence can be delivered in that order
    (``brokers.sequences``).
    """

    collection: str
    kind: ChangeKind
    record: dict[str, Any]
    user_id: str | None
    origin: str
    connection: str | None = None
    revision: int = 0
    numbered: tuple[str, int] | None = None

    @property
    def is_http(self) -> bool:
        """Whether an HTTP request made the write (of any protocol)."""
        return self.origin.endswith("-http")


class DocumentChange(msgspec.Struct, frozen=True, tag=True):
    """A committed write to the token-addressed document ``read_token``.

    ``revision`` and ``content`` (the exact JSON bytes stored) are the
    document after the write. ``origin`` names the protocol and transport it
    came through (``"inbox-http"``, ``"inbox-udp"``). No protocol renders
    these yet; they exist so that the hub can deliver document updates later
    without changing what the actions return.
    """

    read_token: str
    revision: int
    content: bytes
    origin: str


class EntryChange(msgspec.Struct, frozen=True, tag=True):
    """A committed write to the entry ``id`` of ``space`` (``"kvStore"`` or
    ``"liveConfig"``) in the scope ``(organization, project)``.

    ``value`` is the exact JSON bytes stored (``None`` for a ``delete``;
    ``previous`` is then the value as it was, which read rules judge),
    ``version`` the entry's version after the write (ms since the epoch,
    greater with every write of the entry: ``operations.PutEntry``),
    ``user_id`` who wrote it and ``origin`` the protocol and transport
    (``"resources-http"``).
    """

    space: str
    organization: str
    project: str
    id: str
    kind: EntryChangeKind
    value: bytes | None
    version: int
    user_id: str | None
    origin: str
    previous: bytes | None = None
