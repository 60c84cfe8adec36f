"""The conformance kit's inbox-document part (``satchel.protocol.conformance.inbox``).

It passes against the core in process and against the reference server at a
URL (through the command line), and it finds bugs planted in the merge rule,
reporting each as a short sequence of steps that fails again when replayed.

The kit runs in child processes (``inbox_kit_probe.py``): loading its module
into this process would change, through Hypothesis's use of the constants of
loaded modules, the sequences the Backpack kit's seeded tests generate.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import conformance_probe as kit_probe
from server_process import ServerProcess

PROBE = Path(__file__).parent / "inbox_kit_probe.py"


def probe(*args: str) -> tuple[dict[str, Any], str]:
    return kit_probe.probe(PROBE, *args)


def test_the_core_conforms_in_process() -> None:
    result, _ = probe("core")
    assert result["passed"], result["problem"]
    assert result["examples"] == 300


@pytest.mark.parametrize("bug", ["tie-overwrites", "lower-wins"])
def test_a_planted_merge_bug_is_found_as_a_short_sequence(bug: str) -> None:
    result, _ = probe("planted", bug)
    assert result["found"], f"the kit missed {bug}"
    steps = result["steps"]
    assert 1 <= len(steps) <= 4, result["script"]
    assert any(step["do"] == "post" for step in steps), result["script"]
    assert result["replay_fails"], result["script"]  # and it passed against the real core (else the probe fails)


def test_the_model_applies_the_rules() -> None:
    assert probe("model")[0] == {"ok": True}


def test_the_command_line_checks_inbox_documents() -> None:
    result, out = probe("cli", "--in-process", "--protocol", "inbox", "--examples", "30", "--seed", "5")
    assert result["status"] == 0 and "conforms (inbox documents)" in out, out
    result, out = probe("cli", "--in-process", "--protocol", "all", "--examples", "10", "--seed", "5")
    assert result["status"] == 0 and "conforms:" in out and "conforms (inbox documents)" in out, out
    result, out = probe("cli", "--plant", "tie-overwrites", "--in-process", "--protocol", "inbox",
                        "--examples", "300", "--seed", "0")
    assert result["status"] == 1 and "differs from the inbox-document model" in out, out


def test_the_reference_server_conforms(server: ServerProcess) -> None:
    """``satchel conformance --protocol inbox`` against the real server process (no API key needed)."""
    completed = kit_probe.conformance_at(server.url, "--protocol", "inbox", "--examples", "40", "--steps", "25",
                                         "--seed", "3")
    assert "conforms (inbox documents)" in completed.stdout


def test_the_reference_server_conforms_through_a_url_target(server: ServerProcess) -> None:
    result, _ = probe("url", server.url)
    assert result["passed"], result["problem"]
