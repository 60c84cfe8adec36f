"""Satchel's conformance kit: check any Backpack server against the protocol.

The kit is a product, not Satchel's internal tests: it checks Satchel's core
in-process, the reference server at a URL, or any third-party server that
speaks Backpack (``satchel conformance --url ws://host:port --api-key K``).

- ``strategies``: Hypothesis strategies for every REST body and websocket
  action message, valid and invalid.
- ``BackpackModel``: a pure model of Backpack (accounts and sessions,
  records per collection, connections and channel subscriptions,
  users-information documents) that predicts every answer and delivery.
- ``BackpackMachine`` / ``check_target``: a Hypothesis stateful test that
  generates sessions of several users and connections and checks each step.
- ``Target``: what the kit drives; ``InProcessTarget`` is the core with the
  store you hand it (``satchel.transports.conformance_runner.UrlTarget`` speaks
  HTTP and websockets to a server at a URL).
- A failure is shrunk and reported as a short JSON script
  (``ConformanceFailure.script``, ``format_script``) that ``replay`` - or
  ``satchel conformance --replay FILE`` - runs again.

Example::

    from satchel.protocol.conformance import InProcessTarget, check_target
    from satchel.storage_backends.memory import MemoryStore
    report = check_target(InProcessTarget(MemoryStore()), examples=100)
    assert report.passed, report.failure

Inbox documents over HTTP have their own, separate part: ``inbox``
(``InboxModel``, ``check_inbox_target``; ``satchel conformance --protocol
inbox``); so do Asnity's chats over REST and Socket.IO: ``asnity``
(``AsnityModel``, ``check_asnity_target``; ``satchel conformance --protocol
socketio``).

The model, the checker, the targets and ``replay`` are pure and need nothing
but Satchel; ``strategies`` and the stateful test (``check_target``,
``BackpackMachine``) need Hypothesis (``pip install satchel[test]``) and are
imported on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

from .checker import (
    ACTORS,
    Checker,
    ConformanceFailure,
    Run,
    ScriptError,
    SetupError,
    format_script,
    load_script,
    replay,
)
from .model import BackpackModel, Expectation, Mismatch
from .targets import CLOSED, NOTHING, CookieJars, HttpReply, InProcessTarget, Target

__all__ = [
    "check_target",
    "Report",
    "replay",
    "format_script",
    "load_script",
    "ConformanceFailure",
    "SetupError",
    "ScriptError",
    "Target",
    "HttpReply",
    "NOTHING",
    "CLOSED",
    "CookieJars",
    "InProcessTarget",
    "BackpackModel",
    "Expectation",
    "Mismatch",
    "BackpackMachine",
    "machine_for",
    "Run",
    "Checker",
    "ACTORS",
    "strategies",
    "inbox",
    "check_inbox_target",
    "InboxModel",
    "asnity",
    "check_asnity_target",
    "AsnityModel",
]

_NEED_HYPOTHESIS = {"check_target": "machine", "Report": "machine", "BackpackMachine": "machine",
                    "machine_for": "machine", "strategies": None,
                    # Inbox documents over HTTP (``inbox``): loaded on first use too.
                    "inbox": None, "check_inbox_target": "inbox", "InboxModel": "inbox",
                    # Asnity over REST and Socket.IO (``asnity``): likewise.
                    "asnity": None, "check_asnity_target": "asnity", "AsnityModel": "asnity"}


def __getattr__(name: str) -> Any:
    # PEP 562: the Hypothesis-based parts load when first asked for, so that
    # the pure parts import without Hypothesis (and without its I/O modules).
    if name not in _NEED_HYPOTHESIS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    try:
        module = importlib.import_module(f".{_NEED_HYPOTHESIS[name] or name}", __name__)
    except ModuleNotFoundError as missing:
        if missing.name != "hypothesis":
            raise
        raise ImportError(
            f"{name} needs the 'conformance' extra (Hypothesis is not installed): pip install 'satchel[conformance]'"
        ) from None
    return module if _NEED_HYPOTHESIS[name] is None else getattr(module, name)
