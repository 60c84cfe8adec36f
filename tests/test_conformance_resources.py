"""The conformance kit's resource-subscription part
(``satchel.protocol.conformance.resources``): kv and live-config REST under
scopes and random rules, resource websockets subscribed to entries,
collections and inbox documents, every answer and every frame checked.

It passes against the core in process and against the real ``satchel
serve`` at a URL (through the command line); it finds bugs planted in a
monkeypatched copy of the core - each reported as a short script that fails
when replayed and passes once the bug is undone.

As for the other kits, the kit runs in child processes (this file, run as a
script, is the probe: ``python tests/test_conformance_resources.py
core|planted BUG|cli ARG...``), so that loading its modules does not change
the sequences other kits' seeded tests generate.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import pytest

import conformance_probe as kit_probe

PROBE = Path(__file__)
BUGS = ["scope-ignored-on-delivery", "collection-read-rule-ignored", "equal-versions", "delete-drops-listeners"]


def probe(*args: str) -> tuple[dict[str, Any], str]:
    return kit_probe.probe(PROBE, *args)


def test_the_core_conforms_in_process() -> None:
    kit_probe.check_core(PROBE, examples=200)


@pytest.mark.parametrize("bug", BUGS)
def test_a_planted_bug_is_found_as_a_short_replayable_script(bug: str) -> None:
    kit_probe.check_planted(PROBE, bug, most=8)


# Two server bugs the kit found, fixed since; their scripts must keep passing.
KNOWN = {
    # PUT /_/api/users/{id}/role reached Backpack and Directus websockets at once
    # (Mount.role_changed), not resource websockets: a user demoted to a role without
    # rules still subscribed (resource_not_found instead of Forbidden).
    "role-change-not-seen-by-resource-websockets": [
        {"do": "open", "conn": 0, "user": 1, "scope": 1},
        {"do": "role", "user": 1, "role": "r2"},
        {"do": "sub", "conn": 0, "type": "kvStore", "id": "p0"}],
    # An entry's deletion reached a subscriber whose read rule's filter hid the
    # entry (GET answered it 404, subscribe resource_not_found).
    "deletion-ignores-the-read-filter": [
        {"do": "rules", "roles": {"r1": [{"collection": "kvStore", "action": "read", "filter": {"data": {"_eq": 1}}}]}},
        {"do": "role", "user": 1, "role": "r1"},
        {"do": "put", "space": "kv", "user": 0, "scope": 1, "key": "p0", "value": 2},
        {"do": "open", "conn": 0, "user": 1, "scope": 1},
        {"do": "sub", "conn": 0, "type": "kvStore", "id": "p0"},
        {"do": "del", "user": 0, "scope": 1, "key": "p0"}],
}


@pytest.mark.parametrize("name", sorted(KNOWN))
def test_the_bugs_the_kit_found_stay_fixed(name: str) -> None:
    result, _ = probe("known", name)
    assert result["passes"], result["failure"]


def test_the_command_line_saves_and_replays_a_failing_script(tmp_path: Path) -> None:
    saved = str(tmp_path / "failure.json")
    kit_probe.check_save_and_replay(PROBE, saved, "scope-ignored-on-delivery", "resources", 300,
                                    "the resource-subscription model")


def test_the_reference_server_conforms(tmp_path: Path) -> None:
    """``satchel conformance --protocol resources`` against the real server
    process: REST over HTTP, resource websockets over real websockets with
    base58 subprotocol headers; the stored rules are put back afterwards."""
    completed = kit_probe.conformance_as_admin(tmp_path, "--protocol", "resources",
                                               "--examples", "25", "--steps", "25", "--seed", "3")
    assert "conforms (resource subscriptions): 25 generated sequences" in completed.stdout


# -- the probe (run in a child process) ----------------------------------------------------------


def plant(bug: str) -> Callable[[], None]:
    """Plant ``bug`` in the core; returns what undoes it."""
    from satchel.protocol.changes import EntryChange
    from satchel.protocol.channels import Channel
    from satchel.protocol.permissions import DeliveryGroup
    from satchel.protocol.resources import versions, websocket

    plants = kit_probe.Plants()
    patch = plants.patch

    if bug == "scope-ignored-on-delivery":
        # An entry's channel forgets the scope: subscribers of the same id in
        # every organization and project hear each other's writes.
        patch(websocket, "entry_channel", lambda space, scope, entry_id: Channel(space, entry_id))
    elif bug == "collection-read-rule-ignored":
        def delivery_groups(rules: Any, collection: str, record: Any, subscribers: Any, *, now_ms: Any = None) -> Any:
            keys = tuple(subscriber.key for subscriber in subscribers)
            return [DeliveryGroup(record, keys)] if keys else []

        patch(websocket, "delivery_groups", delivery_groups)
    elif bug == "equal-versions":
        # Collections' and documents' versions from the clock alone, to the
        # second: two quick writes share a version.
        patch(versions.VersionClock, "next", lambda self, resource, now_ms: now_ms - now_ms % 1000)
    elif bug == "delete-drops-listeners":
        render_entry = websocket._render_entry
        dropped: set[tuple[str, str, str, str]] = set()

        def forgetful(change: Any, context: Any) -> Any:
            key = (change.space, change.organization, change.project, change.id)
            if key in dropped:
                return ()
            if isinstance(change, EntryChange) and change.kind == "delete":
                dropped.add(key)
            return render_entry(change, context)

        patch(websocket, "_render_entry", forgetful)
    else:
        raise ValueError(f"no such bug: {bug}")

    return plants.undo


def _target() -> Any:
    from satchel.protocol.conformance import InProcessTarget
    from satchel.protocol.conformance.resources import InProcessResources
    from satchel.storage_backends.memory import MemoryStore

    return InProcessResources(InProcessTarget(MemoryStore()))


def core() -> dict[str, Any]:
    from satchel.protocol.conformance.resources import check_resources_target

    return kit_probe.core(check_resources_target, _target(), examples=200, steps=25, seed=1)


def planted(bug: str) -> dict[str, Any]:
    from satchel.protocol.conformance import resources as kit

    return kit_probe.planted(plant(bug), kit, kit.check_resources_target, kit.ResourcesMismatch, _target,
                             examples=500, steps=25, seed=0)


def known(name: str) -> dict[str, Any]:
    from satchel.protocol.conformance.resources import ResourcesMismatch, run_steps

    try:
        run_steps(_target(), KNOWN[name])
    except ResourcesMismatch as failure:
        return {"passes": False, "failure": str(failure)}
    return {"passes": True, "failure": ""}


def cli(*argv: str) -> dict[str, Any]:
    return kit_probe.cli(plant, list(argv))


if __name__ == "__main__":
    kit_probe.serve({"core": core, "planted": planted, "cli": cli, "known": known})
