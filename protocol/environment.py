"""What the core is handed instead of reading clocks and randomness itself.

``Environment`` bundles the three impure inputs every action may need. The
transports build one from the system clock and ``secrets``; tests build one
from counters, which makes every reply reproducible.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Callable

from .records import object_id

__all__ = ["Environment", "fixed_environment"]


@dataclass(frozen=True, slots=True)
class Environment:
    """Clock and entropy for the core.

    ``now_ms`` returns milliseconds since the epoch; ``new_id`` returns a fresh
    24-hex-digit record id; ``new_token`` returns a fresh unguessable token
    (at least 256 bits, URL-safe) for sessions and document keys.
    """

    now_ms: Callable[[], int]
    new_id: Callable[[], str]
    new_token: Callable[[], str]


def fixed_environment(start_ms: int = 1_587_490_752_829, step_ms: int = 1) -> Environment:
    """A deterministic environment for tests and examples.

    The clock starts at ``start_ms`` and advances ``step_ms`` per reading; ids
    and tokens come from counters.
    """
    clock = itertools.count(start_ms, step_ms)
    ids = itertools.count(1)
    tokens = itertools.count(1)
    return Environment(
        now_ms=lambda: next(clock),
        new_id=lambda: object_id(start_ms // 1000, b"\x00" * 5, next(ids)),
        new_token=lambda: f"token-{next(tokens):040d}",
    )
