"""The conformance kit for the Directus protocols under the one rule set.

A separate part of the kit (``satchel conformance --protocol directus``):
it drives any server that speaks the Directus items REST API
(``/items/{collection}``, ``/auth/login``), Satchel's admin API (``/_/api``:
roles and ``PUT /_/api/rules``) and both Directus websockets on
``/websocket`` (core realtime, and the extension in its latest and v1
formats), through a target with ``http`` and ``directus_*`` methods
(``InProcessDirectus``, ``satchel.transports.conformance_runner.UrlTarget``).

- ``DirectusModel`` (``model``): a pure model of the rules (roles, rules per
  collection and action, item filters, field lists), the items, and every
  connection's subscriptions; it evaluates filters and fields with its own
  small implementation, so a bug in the server's rule evaluation shows.
- ``run_steps`` / ``DirectusRun`` (``runner``, ``steps``): steps are JSON objects
  naming users, connections and items by index, so a failure prints as a
  short script that replays against any server; every answer and every
  frame of every connection is checked after each step.
- ``check_directus_target`` (``generate``): Hypothesis draws random-but-valid
  rule sets and sequences of several users of different roles; the first
  difference is cut down to a short script (``minimize``).

The model and the runner are pure; ``generate`` needs Hypothesis and
imports it on first use.
"""

from __future__ import annotations

from .generate import DirectusReport, check_directus_target, minimize, sequence_strategy, step_strategy
from .model import DirectusModel, Expected, Outcome, evaluate
from .runner import (
    DirectusMismatch,
    DirectusRun,
    DirectusTarget,
    InProcessDirectus,
    format_steps,
    load_steps,
    run_steps,
)

__all__ = [
    "DirectusModel",
    "DirectusMismatch",
    "DirectusReport",
    "DirectusRun",
    "DirectusTarget",
    "Expected",
    "InProcessDirectus",
    "Outcome",
    "check_directus_target",
    "evaluate",
    "format_steps",
    "load_steps",
    "minimize",
    "run_steps",
    "sequence_strategy",
    "step_strategy",
]
