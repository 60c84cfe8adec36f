"""The record model shared by every protocol: ids, timestamps and the three
ways a record changes.

Records look like the Mongoose documents the original Backpack server stored
(seed 000): a 24-hex-digit ``_id``, the user's fields, ``createdAt`` and
``updatedAt`` as ISO 8601 UTC strings with milliseconds and ``Z``, and
``__v``. Everything here is a pure function of its arguments: the clock
reading and the fresh id are handed in.
"""

from __future__ import annotations

import datetime as _dt
import re
from typing import Any

__all__ = [
    "RESERVED_FIELDS",
    "format_timestamp",
    "object_id",
    "is_object_id",
    "new_record",
    "patch_record",
    "overwrite_record",
    "matches_query",
]

#: Fields the server owns; a client cannot set or remove them.
RESERVED_FIELDS = frozenset({"_id", "createdAt", "updatedAt", "__v"})

_OBJECT_ID = re.compile(r"[0-9a-f]{24}\Z")
_EPOCH = _dt.datetime(1970, 1, 1, tzinfo=_dt.timezone.utc)


def format_timestamp(now_ms: int) -> str:
    """Render milliseconds since the epoch as ``2020-04-21T17:39:12.829Z``."""
    global _last_second
    seconds, millis = divmod(now_ms, 1000)
    # Every write stamps one: the second's text is made once per second.
    cached = _last_second
    if cached[0] == seconds:
        prefix = cached[1]
    else:
        prefix = (_EPOCH + _dt.timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%S.")
        _last_second = (seconds, prefix)
    return f"{prefix}{millis:03d}Z"


#: (a second since the epoch, its ``format_timestamp`` text up to the
#: milliseconds): replaced whole, so any thread may read it.
_last_second: tuple[int, str] = (-1, "")


def object_id(seconds: int, entropy: bytes, counter: int) -> str:
    """Build a MongoDB-style ObjectId: 4 bytes of time, 5 of entropy, 3 of counter.

    Ids made this way sort by creation second, as the original's did, which is
    what makes "list a collection" come back in creation order.
    """
    if len(entropy) != 5:
        raise ValueError("entropy must be 5 bytes")
    raw = (seconds & 0xFFFFFFFF).to_bytes(4, "big") + entropy + (counter & 0xFFFFFF).to_bytes(3, "big")
    return raw.hex()


def is_object_id(value: object) -> bool:
    """True when ``value`` is a string of 24 lowercase hex digits."""
    return isinstance(value, str) and _OBJECT_ID.match(value) is not None


def _user_fields(data: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in data.items() if k not in RESERVED_FIELDS}


def _assemble(record_id: str, fields: dict[str, Any], created: str, updated: str, version: int) -> dict[str, Any]:
    # Key order follows the Mongoose documents in seed 000: id, fields, timestamps, __v.
    record: dict[str, Any] = {"_id": record_id}
    record.update(fields)
    record["createdAt"] = created
    record["updatedAt"] = updated
    record["__v"] = version
    return record


def new_record(data: dict[str, Any], record_id: str, now: str) -> dict[str, Any]:
    """A fresh record holding ``data``; server-owned fields in ``data`` are ignored.

    A ``null`` value at creation is kept, as Mongoose keeps it.
    """
    return _assemble(record_id, _user_fields(data), now, now, 0)


def patch_record(record: dict[str, Any], changes: dict[str, Any], now: str) -> dict[str, Any]:
    """Merge ``changes`` into ``record``: new keys are added, existing ones
    replaced, and a ``null`` value removes that field (BRIEF section 1)."""
    fields = _user_fields(record)
    for key, value in _user_fields(changes).items():
        if value is None:
            fields.pop(key, None)
        else:
            fields[key] = value
    return _assemble(record["_id"], fields, record["createdAt"], now, record.get("__v", 0))


def overwrite_record(record: dict[str, Any], data: dict[str, Any], now: str) -> dict[str, Any]:
    """Replace every user field of ``record`` with ``data`` (seed 000's PUT)."""
    return _assemble(record["_id"], _user_fields(data), record["createdAt"], now, record.get("__v", 0))


def matches_query(record: dict[str, Any], query: dict[str, Any]) -> bool:
    """The ``find`` filter: every key of ``query`` equals the record's value.

    Keys may be dotted paths into nested objects (``"author.name"``), as in a
    Mongo query; operators (``$gt`` and friends) are not supported.
    """
    for key, expected in query.items():
        value: Any = record
        for part in key.split("."):
            if isinstance(value, dict) and part in value:
                value = value[part]
            else:
                return False
        if value != expected or type(value) is not type(expected) and not (
            isinstance(value, (int, float)) and isinstance(expected, (int, float)) and not isinstance(value, bool) and not isinstance(expected, bool)
        ):
            return False
    return True
