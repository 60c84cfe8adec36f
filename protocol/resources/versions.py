"""Versions: an ISO 8601 UTC timestamp with milliseconds that strictly
increases per resource (seed 004: ``"version": "2024-01-30T15:50:35.742Z"``).

A version is a number of milliseconds since the epoch, shown with
``records.format_timestamp``. The next version of a resource is the clock,
or one millisecond past the last version when the clock has not moved past
it (``next_version``), so two writes in one millisecond, or a clock that
stepped back, still give increasing versions.

Entries keep their version in the store, and the core writes the next one
by compare-and-swap (``entries``). Collections and documents have no
stored version of their own, so the renderer keeps a ``VersionClock``: the
last version it gave each resource, for as long as that version is not in
the past (an older one can never be the larger of the two, so it is
forgotten: the memory holds only the resources written within the last
millisecond or pushed ahead of the clock). Per server process, like the
hub: a broker shared by several processes will carry the versions with
the events.
"""

from __future__ import annotations

import datetime as _dt
from typing import Hashable

from ..records import format_timestamp

__all__ = ["VersionClock", "format_version", "next_version", "parse_version"]


def format_version(version_ms: int) -> str:
    """``version_ms`` as the wire shows it: ``2024-01-30T15:50:35.742Z``."""
    return format_timestamp(version_ms)


def next_version(now_ms: int, last_ms: int) -> int:
    """The version after ``last_ms`` (0: none yet) at clock ``now_ms``."""
    return now_ms if now_ms > last_ms else last_ms + 1


class VersionClock:
    """The last version given to each resource that has no stored one."""

    __slots__ = ("_last", "_prune_at")

    def __init__(self) -> None:
        self._last: dict[Hashable, int] = {}
        self._prune_at = 1024

    def __len__(self) -> int:
        return len(self._last)

    def next(self, resource: Hashable, now_ms: int) -> int:
        """The next version of ``resource`` at clock ``now_ms``."""
        last = self._last
        version = next_version(now_ms, last.get(resource, 0))
        last[resource] = version
        if len(last) >= self._prune_at:
            # Versions before the clock can be forgotten: next_version
            # answers the clock for them anyway.
            for key in [key for key, value in last.items() if value < now_ms]:
                del last[key]
            self._prune_at = max(1024, 2 * len(last))
        return version


def parse_version(text: object) -> int | None:
    """The version ``text`` shows (``2024-01-30T15:50:35.742Z``), or ``None``
    when it is not one: exactly the shape ``format_version`` writes."""
    if type(text) is not str or len(text) != 24 or not text.endswith("Z") or text[19] != ".":
        return None
    try:
        moment = _dt.datetime.strptime(text[:19], "%Y-%m-%dT%H:%M:%S").replace(tzinfo=_dt.timezone.utc)
        millis = int(text[20:23]) if text[20:23].isdigit() else -1
    except ValueError:
        return None
    if millis < 0:
        return None
    version = int(moment.timestamp()) * 1000 + millis
    return version if version > 0 and format_version(version) == text else None
