"""``SequenceOrder`` (``satchel.transports.brokers.sequences``): numbered
creates - a channel's chats - handed out in number order whatever order
they arrive in, a gap given up on after ``hold``, memory bounded."""

from __future__ import annotations

import pytest

from satchel.transports.brokers.sequences import SequenceOrder


def test_creates_that_arrive_early_wait_for_their_predecessor() -> None:
    order = SequenceOrder(hold=0.05)
    assert order.admit("c1", 4, "four", 0.0) == ["four"]  # the first seen starts the sequence
    assert order.admit("c1", 6, "six", 0.001) == []  # 5 is missing: six waits
    assert order.admit("c1", 7, "seven", 0.002) == []
    assert order.admit("c2", 0, "other", 0.002) == ["other"]  # another sequence is not held up
    assert order.holding == 2 and order.next_deadline() == pytest.approx(0.051)
    assert order.admit("c1", 5, "five", 0.003) == ["five", "six", "seven"]
    assert order.holding == 0 and order.next_deadline() is None
    assert order.admit("c1", 8, "eight", 0.004) == ["eight"]


def test_a_gap_that_stays_open_is_given_up_after_hold_and_its_create_is_late_not_lost() -> None:
    order = SequenceOrder(hold=0.05)
    order.admit("c", 1, "one", 0.0)
    assert order.admit("c", 3, "three", 0.01) == []
    assert order.admit("c", 5, "five", 0.02) == []
    assert order.due(0.05) == []  # not yet
    assert order.due(0.065) == ["three"]  # 2 given up on; 4 still has until 0.07
    assert order.due(0.075) == ["five"]
    assert order.gaps_given_up == 2
    assert order.admit("c", 2, "two", 0.08) == ["two"] and order.late == 1  # late, but delivered
    assert order.admit("c", 6, "six", 0.09) == ["six"]


def test_memory_is_bounded_in_sequences_and_in_what_one_holds() -> None:
    order = SequenceOrder(hold=10, max_sequences=2, max_held=3)
    order.admit("a", 0, "a0", 0)
    order.admit("b", 0, "b0", 0)
    assert order.admit("a", 5, "a5", 0) == []
    # A third sequence: the one seen longest ago (b) is forgotten; nothing of it was held.
    assert order.admit("c", 0, "c0", 0) == ["c0"]
    # b starts afresh; a, the oldest now, is forgotten and what it held goes out.
    assert order.admit("b", 9, "b9", 0) == ["b9", "a5"]
    assert order.holding == 0
    for n in (3, 5, 7):
        assert order.admit("b", 10 + n, f"b{10 + n}", 0) == []
    # The fourth held in one sequence: its first gap is given up on at once.
    assert order.admit("b", 19, "b19", 0) == ["b13"]
    assert order.holding == 3
