"""The conformance kit for Asnity's chat semantics over REST and Socket.IO.

A separate part of the kit (``satchel conformance --protocol socketio``):
it drives any server that speaks Asnity's REST API (``/api``) and its
socket server (Socket.IO v5 on Engine.IO 4 at ``/socket.io/``, one
namespace ``/socket/commu-<communityId>`` per community) through a target
with ``http`` and ``socketio_*`` methods (``InProcessTarget``,
``satchel.transports.conformance_runner.UrlTarget``).

- ``AsnityModel`` (``model``): a pure model of who is in which community
  and channel, which chat ids exist, who may read, write, edit and delete
  what, and which sockets receive which packet - written from the contract
  and Satchel's documented decisions, not from Satchel's code.
- ``run_steps`` / ``AsnityRun`` (``runner``): steps are JSON objects naming
  users, communities, channels and connections by index, so a failure
  prints as a short script that replays against any server; every answer
  and every packet of every connection is checked after each step.
- ``check_asnity_target`` (``generate``): Hypothesis draws sequences of
  several users and sockets; the first difference is cut down to a short
  script (``minimize``; ``AsnityReport.failure``).

The model and the runner are pure; ``generate`` needs Hypothesis and
imports it on first use.
"""

from __future__ import annotations

from .generate import AsnityReport, check_asnity_target, minimize, sequence_strategy, step_strategy
from .model import AsnityModel, Expected, Outcome
from .runner import (
    AsnityMismatch,
    AsnityRun,
    AsnityTarget,
    decode_packet,
    encode_packet,
    format_steps,
    load_steps,
    run_steps,
)

__all__ = [
    "AsnityModel",
    "AsnityMismatch",
    "AsnityReport",
    "AsnityRun",
    "AsnityTarget",
    "Expected",
    "Outcome",
    "check_asnity_target",
    "decode_packet",
    "encode_packet",
    "format_steps",
    "load_steps",
    "minimize",
    "run_steps",
    "sequence_strategy",
    "step_strategy",
]
