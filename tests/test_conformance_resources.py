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

import json
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

import pytest

PROBE = Path(__file__)
BUGS = ["scope-ignored-on-delivery", "collection-read-rule-ignored", "equal-versions", "delete-drops-listeners"]


def probe(*args: str) -> tuple[dict[str, Any], str]:
    completed = subprocess.run([sys.executable, str(PROBE), *args], capture_output=True, text=True, timeout=120)
    output = completed.stdout + completed.stderr
    assert completed.returncode == 0, output
    result = [line for line in completed.stdout.splitlines() if line.startswith("RESULT ")]
    assert result, output
    return json.loads(result[-1].removeprefix("RESULT ")), completed.stdout


def test_the_core_conforms_in_process() -> None:
    result, _ = probe("core")
    assert result["passed"], result["problem"]
    assert result["examples"] == 200


@pytest.mark.parametrize("bug", BUGS)
def test_a_planted_bug_is_found_as_a_short_replayable_script(bug: str) -> None:
    result, _ = probe("planted", bug)
    assert result["found"], f"the kit missed {bug}"
    assert 1 <= len(result["steps"]) <= 8, result["script"]
    assert result["replay_fails"], result["script"]  # and it passed once undone (else the probe fails)


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
    result, out = probe("cli", "--plant", "scope-ignored-on-delivery", "--in-process", "--protocol", "resources",
                        "--examples", "300", "--seed", "0", "--save", saved)
    assert result["status"] == 1 and "differs from the resource-subscription model" in out, out
    result, out = probe("cli", "--plant", "scope-ignored-on-delivery", "--in-process", "--protocol", "resources",
                        "--replay", saved)
    assert result["status"] == 1 and "fails against" in out, out
    result, out = probe("cli", "--in-process", "--protocol", "resources", "--replay", saved)
    assert result["status"] == 0 and "without a difference" in out, out


def test_the_reference_server_conforms(tmp_path: Path) -> None:
    """``satchel conformance --protocol resources`` against the real server
    process: REST over HTTP, resource websockets over real websockets with
    base58 subprotocol headers; the stored rules are put back afterwards."""
    from server_process import ServerProcess

    data = tmp_path / "data"
    (tmp_path / "password").write_text("kit-admin-password\n")
    subprocess.run([sys.executable, "-m", "satchel.transports", "admin", "create", "kit-admin@example.com",
                    "--data-dir", str(data), "--password-file", str(tmp_path / "password")],
                   check=True, capture_output=True, timeout=60)
    server = ServerProcess(data)
    try:
        completed = subprocess.run(
            [sys.executable, "-m", "satchel.transports", "conformance", "--url", server.url, "--protocol", "resources",
             "--admin-email", "kit-admin@example.com", "--admin-password", "kit-admin-password",
             "--examples", "25", "--steps", "25", "--seed", "3"],
            capture_output=True, text=True, timeout=120,
        )
    finally:
        server.stop()
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert "conforms (resource subscriptions): 25 generated sequences" in completed.stdout


# -- the probe (run in a child process) ----------------------------------------------------------


def plant(bug: str) -> Callable[[], None]:
    """Plant ``bug`` in the core; returns what undoes it."""
    from satchel.protocol.changes import EntryChange
    from satchel.protocol.channels import Channel
    from satchel.protocol.permissions import DeliveryGroup
    from satchel.protocol.resources import versions, websocket

    saved: list[tuple[Any, str, Any]] = []

    def patch(module: Any, name: str, value: Any) -> None:
        saved.append((module, name, getattr(module, name)))
        setattr(module, name, value)

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

    def undo() -> None:
        for module, name, value in reversed(saved):
            setattr(module, name, value)

    return undo


def _target() -> Any:
    from satchel.protocol.conformance import InProcessTarget
    from satchel.protocol.conformance.resources import InProcessResources
    from satchel.storage_backends.memory import MemoryStore

    return InProcessResources(InProcessTarget(MemoryStore()))


def core() -> dict[str, Any]:
    from satchel.protocol.conformance.resources import check_resources_target

    report = check_resources_target(_target(), examples=200, steps=25, seed=1)
    return {"passed": report.passed, "examples": report.examples, "problem": str(report.failure or report.errors or "")}


def planted(bug: str) -> dict[str, Any]:
    from satchel.protocol.conformance.resources import (
        ResourcesMismatch,
        check_resources_target,
        format_steps,
        run_steps,
    )

    undo = plant(bug)
    try:
        report = check_resources_target(_target(), examples=500, steps=25, seed=0)
        if report.failure is None:
            return {"found": False, "errors": str(report.errors)}
        steps = report.failure.steps
        try:
            run_steps(_target(), steps)
            replay_fails = False
        except ResourcesMismatch:
            replay_fails = True
    finally:
        undo()
    run_steps(_target(), steps)  # the same steps pass against the real core
    return {"found": True, "steps": steps, "script": format_steps(steps), "failure": str(report.failure),
            "examples": report.examples, "replay_fails": replay_fails}


def known(name: str) -> dict[str, Any]:
    from satchel.protocol.conformance.resources import ResourcesMismatch, run_steps

    try:
        run_steps(_target(), KNOWN[name])
    except ResourcesMismatch as failure:
        return {"passes": False, "failure": str(failure)}
    return {"passes": True, "failure": ""}


def cli(argv: list[str]) -> dict[str, Any]:
    from satchel.transports.conformance_runner import main

    if argv and argv[0] == "--plant":
        plant(argv[1])
        argv = argv[2:]
    return {"status": main(argv)}


if __name__ == "__main__":
    mode, rest = sys.argv[1], sys.argv[2:]
    result = {"core": lambda: core(), "planted": lambda: planted(rest[0]), "cli": lambda: cli(rest),
              "known": lambda: known(rest[0])}[mode]()
    print("RESULT " + json.dumps(result, ensure_ascii=False))
