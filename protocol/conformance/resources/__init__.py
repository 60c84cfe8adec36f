"""The conformance kit for resource subscriptions (seed 004) under the one rule set.

``satchel conformance --protocol resources``: it drives any server that
speaks the resource protocol (``/realtime``: the REST API of the key-value
store and live configuration, the websocket with its base58-encoded
headers), Satchel's admin API (roles and ``PUT /_/api/rules``, as the
Directus kit does), the Directus items REST API (records feeding
``collection`` resources) and inbox document PUTs (feeding ``document``
resources), through a target with ``http`` and ``resources_open`` /
``directus_*`` methods (``InProcessResources``,
``satchel.transports.conformance_runner.UrlTarget``).

- ``ResourcesModel`` (``model``): a pure model of entries per scope,
  records, documents, the rules (compiled and evaluated by the Directus
  kit's own filter implementation) and every connection's subscriptions:
  which frames each subscriber receives, with which data, in which order.
- ``run_steps`` / ``ResourcesRun`` (``runner``): JSON steps, every answer
  and frame checked after each; versions checked for format and strict
  increase per resource.
- ``check_resources_target`` (``generate``): Hypothesis sequences; the
  first difference cut down to a short script (``minimize``).
"""

from __future__ import annotations

from .generate import ResourcesReport, check_resources_target, minimize, sequence_strategy, step_strategy
from .model import ResourcesModel, Version
from .runner import (
    InProcessResources,
    ResourcesMismatch,
    ResourcesRun,
    ResourcesTarget,
    format_steps,
    load_steps,
    run_steps,
)

__all__ = [
    "InProcessResources",
    "ResourcesMismatch",
    "ResourcesModel",
    "ResourcesReport",
    "ResourcesRun",
    "ResourcesTarget",
    "Version",
    "check_resources_target",
    "format_steps",
    "load_steps",
    "minimize",
    "run_steps",
    "sequence_strategy",
    "step_strategy",
]
