"""Runs the inbox conformance kit in a child process for tests/test_conformance_inbox.py.

Why a child process: Hypothesis draws on the literal constants of every
local module loaded in the process (``hypothesis.internal.constants_ast``),
so importing ``satchel.protocol.conformance.inbox`` into the pytest process
would change the sequences the Backpack kit's seeded tests generate
(tests/test_conformance_kit.py). Files under ``tests/`` are not scanned.

    python tests/inbox_kit_probe.py core
    python tests/inbox_kit_probe.py planted tie-overwrites|lower-wins
    python tests/inbox_kit_probe.py model
    python tests/inbox_kit_probe.py url http://127.0.0.1:PORT
    python tests/inbox_kit_probe.py cli ARG...

Prints one JSON object; exits non-zero when an assertion fails.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import satchel.protocol.inbox.merge as merge
from satchel.storage_backends.memory import MemoryStore
from satchel.protocol.conformance import InProcessTarget
from satchel.protocol.conformance.inbox import (
    InboxMismatch,
    InboxModel,
    check_inbox_target,
    format_steps,
    run_steps,
)


def _tie_overwrites(incoming: Any, stored: Any) -> bool:
    return stored is None or incoming >= stored


def _lower_wins(incoming: Any, stored: Any) -> bool:
    return stored is None or incoming != stored


PLANTED = {"tie-overwrites": _tie_overwrites, "lower-wins": _lower_wins}


def core() -> dict[str, Any]:
    report = check_inbox_target(InProcessTarget(MemoryStore()), examples=300, steps=30, seed=1)
    return {"passed": report.passed, "examples": report.examples,
            "problem": str(report.failure or report.errors or "")}


def planted(bug: str) -> dict[str, Any]:
    original = merge.supersedes
    merge.supersedes = PLANTED[bug]
    try:
        report = check_inbox_target(InProcessTarget(MemoryStore()), examples=300, steps=30, seed=0)
        if report.failure is None:
            return {"found": False}
        steps = report.failure.steps
        try:
            run_steps(InProcessTarget(MemoryStore()), steps, "replay")
            replay_fails = False
        except InboxMismatch:
            replay_fails = True
    finally:
        merge.supersedes = original
    run_steps(InProcessTarget(MemoryStore()), steps, "replay")  # the same steps pass against the real core
    return {"found": True, "steps": steps, "script": format_steps(steps), "failure": str(report.failure),
            "replay_fails": replay_fails}


def model() -> dict[str, Any]:
    m = InboxModel("m")
    assert m.put(0, 0, 0, 5, b'{"#messages": {}}')[0] == 200
    assert m.put(0, 1, 5, 6, b"{}")[0] == 403                      # not the write token
    assert m.put(0, 0, 4, 6, b"{}")[:1] == (409,)                  # not the current revision
    assert m.put(1, 0, 0, 1, b"{}")[0] == 409                      # the write token belongs to document 0
    assert m.put(1, 1, 0, 0, b"{}")[0] == 400                      # Revision not above Derived-From
    assert m.message(0, "00000000000000A1", b'{"v": 1}') == (200, 0)  # "#" defaults to 0; id lowercased
    assert m.learn(0, 6) is None
    assert m.message(0, "00000000000000a1", b'{"#": 0, "v": 2}') == (200, 0)  # a tie keeps what is stored
    assert m.docs[0].revision == 6
    assert m.message(0, "00000000000000a1", b'{"#": 1, "v": 3}') == (200, 0)  # strictly higher wins
    assert m.docs[0].content["#messages"] == {"00000000000000a1": {"#": 1, "v": 3}}
    assert m.docs[0].revision is None  # raised by the server's clock: learned from the next GET
    assert m.learn(0, 6) is not None   # ... and it must have risen
    assert m.message(0, "00000000000000a1", b'{"#": true}') == (400, None)
    assert m.message(0, "00000000000000a1", b"x" * 4097) == (413, None)
    assert m.message(3, "00000000000000a1", b"{}") == (404, None)
    assert m.message(0, "xyz", None) == (400, None)
    assert m.put(2, 2, 0, 1, b'{"v": 1}')[0] == 200
    assert m.message(2, "00000000000000a1", b"{}") == (403, 2)     # not an inbox
    assert m.message(2, "00000000000000a1", None) == (403, 2)
    return {"ok": True}


def url(address: str) -> dict[str, Any]:
    from satchel.transports.conformance_runner import UrlTarget

    target = UrlTarget(address, "")
    try:
        report = check_inbox_target(target, examples=30, steps=25, seed=7, token="url")
    finally:
        target.close()
    return {"passed": report.passed, "examples": report.examples,
            "problem": str(report.failure or report.errors or "")}


def cli(argv: list[str]) -> dict[str, Any]:
    from satchel.transports.conformance_runner import main

    if argv and argv[0] == "--plant":
        merge.supersedes = PLANTED[argv[1]]
        argv = argv[2:]
    return {"status": main(argv)}


if __name__ == "__main__":
    mode, rest = sys.argv[1], sys.argv[2:]
    result = {"core": lambda: core(), "planted": lambda: planted(rest[0]), "model": lambda: model(),
              "url": lambda: url(rest[0]), "cli": lambda: cli(rest)}[mode]()
    print("RESULT " + json.dumps(result))
