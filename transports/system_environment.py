"""The real clock and entropy, handed to the core as an ``Environment``."""

from __future__ import annotations

import itertools
import os
import secrets
import time

from satchel.protocol.environment import Environment
from satchel.protocol.records import object_id

__all__ = ["system_environment"]


def system_environment() -> Environment:
    """Wall-clock time, MongoDB-style ids and ``secrets`` tokens.

    Ids follow the ObjectId layout: seconds, five random bytes fixed for this
    process, and a counter that starts at a random value - unique across
    processes sharing a database, and sorted by creation time.
    """
    process_entropy = os.urandom(5)
    counter = itertools.count(int.from_bytes(os.urandom(3), "big"))
    return Environment(
        now_ms=lambda: time.time_ns() // 1_000_000,
        new_id=lambda: object_id(int(time.time()), process_entropy, next(counter)),
        new_token=lambda: secrets.token_urlsafe(32),
    )
