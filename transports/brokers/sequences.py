"""Numbered creates in number order across processes (guarantee 4 of
``satchel.transports.brokers``).

An Asnity chat's id is its number in its channel's sequence
(``InsertNumbered``: the number and the record in one transaction), so a
channel's numbers are its chats' commit order, with no gaps. Within one
process chats are published in commit order anyway. Across processes each
process's chats reach the others in that process's commit order, but two
chats of one channel committed through two processes a moment apart may
arrive in either order - so two subscribers of the room could see them in
opposite orders. ``SequenceOrder`` puts them back: it delivers the creates
of one sequence in number order, holding one that comes before its
predecessor until the predecessor arrives or ``hold`` seconds pass (then
it gives up on the gap and delivers what it holds, in number order; a
number given up on is delivered when it comes, late).

The first create seen of a sequence starts it (a process that did not
follow a channel has no predecessor to wait for). Bounded: at most
``max_sequences`` sequences are remembered (the one seen longest ago goes
first) and ``max_held`` creates are held per sequence (past it, what is
held goes out). Pure bookkeeping: the caller passes the clock and delivers
what it is handed.
"""

from __future__ import annotations

import collections
from typing import Any

__all__ = ["SequenceOrder"]


class SequenceOrder:
    """Number order for numbered creates (module docstring)."""

    __slots__ = ("hold", "max_sequences", "max_held", "_next", "_held", "held_back", "gaps_given_up", "late")

    def __init__(self, *, hold: float = 0.05, max_sequences: int = 100_000, max_held: int = 1000) -> None:
        self.hold = hold
        self.max_sequences = max_sequences
        self.max_held = max_held
        #: sequence -> the number delivered next
        self._next: collections.OrderedDict[str, int] = collections.OrderedDict()
        #: sequence -> {number: (the event, when it was held)}
        self._held: dict[str, dict[int, tuple[Any, float]]] = {}
        #: counters: creates that waited; gaps given up on; creates that came after their gap was given up on
        self.held_back = 0
        self.gaps_given_up = 0
        self.late = 0

    @property
    def holding(self) -> int:
        """How many creates wait for a predecessor."""
        return sum(len(held) for held in self._held.values())

    def admit(self, sequence: str, number: int, event: Any, now: float) -> list[Any]:
        """What to deliver now that ``event`` (number ``number`` of
        ``sequence``) arrived: itself and what waited for it, or nothing
        (it waits for a predecessor)."""
        expected = self._next.get(sequence)
        if expected is None or number == expected:
            out = [event]
            self._advance(sequence, number + 1, out)
            return out
        if number < expected:
            self.late += 1  # its gap was given up on: late rather than never
            self._next.move_to_end(sequence)
            return [event]
        self._next.move_to_end(sequence)
        held = self._held.setdefault(sequence, {})
        held[number] = (event, now)
        self.held_back += 1
        if len(held) > self.max_held:
            return self._give_up(sequence)
        return []

    def due(self, now: float) -> list[Any]:
        """The creates held for longer than ``hold``, with what follows them:
        their gaps are given up on."""
        out: list[Any] = []
        limit = now - self.hold
        for sequence in list(self._held):
            # Several gaps of one sequence may be due: give up on each in turn.
            while sequence in self._held and min(since for _, since in self._held[sequence].values()) <= limit:
                out.extend(self._give_up(sequence))
        return out

    def next_deadline(self) -> float | None:
        """When ``due`` has something to hand out next (``None``: nothing held)."""
        if not self._held:
            return None
        return min(since for held in self._held.values() for _, since in held.values()) + self.hold

    def _give_up(self, sequence: str) -> list[Any]:
        """Stop waiting for the numbers below the first one held."""
        self.gaps_given_up += 1
        out: list[Any] = []
        self._advance(sequence, min(self._held[sequence]), out)
        return out

    def _advance(self, sequence: str, following: int, out: list[Any]) -> None:
        """Deliver what waits from ``following`` on; remember what comes next."""
        held = self._held.get(sequence)
        if held:
            while following in held:
                out.append(held.pop(following)[0])
                following += 1
            if not held:
                del self._held[sequence]
        self._next[sequence] = following
        self._next.move_to_end(sequence)
        while len(self._next) > self.max_sequences:
            gone, _ = self._next.popitem(last=False)
            stranded = self._held.pop(gone, None)
            if stranded:
                out.extend(event for _, (event, _) in sorted(stranded.items()))
