"""What the conformance kit's test files share: the probe they run in a child
process, planting bugs in the core, and the probe's common modes.

Each ``tests/test_conformance_<kit>.py`` is also its own probe (``python
tests/test_conformance_<kit>.py MODE ARG...``): loading a kit's modules into
the pytest process would change, through Hypothesis's use of the constants
of loaded modules, the sequences other kits' seeded tests generate. The
probe prints its result as one ``RESULT <json>`` line (``serve``), which
``probe`` reads back.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable


def probe(script: Path, *args: str) -> tuple[dict[str, Any], str]:
    """Run ``script`` as a probe; its result and its output."""
    completed = subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True, timeout=120)
    output = completed.stdout + completed.stderr
    assert completed.returncode == 0, output
    result = [line for line in completed.stdout.splitlines() if line.startswith("RESULT ")]
    assert result, output
    return json.loads(result[-1].removeprefix("RESULT ")), completed.stdout


class Plants:
    """Bugs planted in the core by replacing its functions (or a table's
    entries); ``undo`` puts everything back, last first."""

    def __init__(self) -> None:
        self._undo: list[Callable[[], None]] = []

    def patch(self, owner: Any, name: str, value: Any) -> None:
        old = getattr(owner, name)
        self._undo.append(lambda: setattr(owner, name, old))
        setattr(owner, name, value)

    def patch_item(self, table: Any, key: Any, value: Any) -> None:
        old = table[key]
        self._undo.append(lambda: table.__setitem__(key, old))
        table[key] = value

    def undo(self) -> None:
        while self._undo:
            self._undo.pop()()


def core(check: Callable[..., Any], target: Any, **settings: Any) -> dict[str, Any]:
    """Mode ``core``: the kit's generated run against the real core."""
    report = check(target, **settings)
    return {"passed": report.passed, "examples": report.examples, "problem": str(report.failure or report.errors or "")}


def planted(undo: Callable[[], None], kit: Any, check: Callable[..., Any], mismatch: type[Exception],
            target: Callable[[], Any], **settings: Any) -> dict[str, Any]:
    """Mode ``planted``: with a bug planted (``undo`` takes it out), the kit
    finds a script; replayed it fails again, and it passes against the real
    core (else the probe fails). ``kit`` gives ``run_steps`` and ``format_steps``."""
    try:
        report = check(target(), **settings)
        if report.failure is None:
            return {"found": False, "errors": str(report.errors)}
        steps = report.failure.steps
        try:
            kit.run_steps(target(), steps)
            replay_fails = False
        except mismatch:
            replay_fails = True
    finally:
        undo()
    kit.run_steps(target(), steps)  # the same steps pass against the real core
    return {"found": True, "steps": steps, "script": kit.format_steps(steps), "failure": str(report.failure),
            "found_steps": len(report.found.steps) if report.found else None, "examples": report.examples,
            "replay_fails": replay_fails}


def cli(plant: Callable[[str], Any], argv: list[str]) -> dict[str, Any]:
    """Mode ``cli``: ``satchel conformance ARG...``, after ``--plant BUG`` if given."""
    from satchel.transports.conformance_runner import main

    if argv and argv[0] == "--plant":
        plant(argv[1])
        argv = argv[2:]
    return {"status": main(argv)}


def serve(modes: dict[str, Callable[..., dict[str, Any]]]) -> None:
    """The probe's entry point: the mode ``sys.argv[1]``, given the rest as arguments."""
    print("RESULT " + json.dumps(modes[sys.argv[1]](*sys.argv[2:]), ensure_ascii=False))


# -- the tests every kit has ------------------------------------------------------------------


def check_core(script: Path, examples: int) -> None:
    """The kit's generated run passes against the real core, all ``examples`` of it."""
    result, _ = probe(script, "core")
    assert result["passed"], result["problem"]
    assert result["examples"] == examples


def check_planted(script: Path, bug: str, most: int) -> dict[str, Any]:
    """The kit finds ``bug`` as a script of at most ``most`` steps that fails
    when replayed (and passes once the bug is undone, else the probe fails)."""
    result, _ = probe(script, "planted", bug)
    assert result["found"], f"the kit missed {bug}"
    assert 1 <= len(result["steps"]) <= most, result["script"]
    assert result["replay_fails"], result["script"]
    return result


def check_save_and_replay(script: Path, saved: str, bug: str, protocol: str, examples: int, model: str) -> str:
    """``satchel conformance --save`` writes the script of a planted bug's
    difference from ``model``; ``--replay`` fails with the bug and passes
    without it. What the generated run printed."""
    plant = ("cli", "--plant", bug, "--in-process", "--protocol", protocol)
    result, found = probe(script, *plant, "--examples", str(examples), "--seed", "0", "--save", saved)
    assert result["status"] == 1 and f"differs from {model}" in found, found
    result, out = probe(script, *plant, "--replay", saved)
    assert result["status"] == 1 and "fails against" in out, out
    result, out = probe(script, "cli", "--in-process", "--protocol", protocol, "--replay", saved)
    assert result["status"] == 0 and "without a difference" in out, out
    return found


def conformance_as_admin(tmp_path: Path, *args: str, api_key: bool = False) -> subprocess.CompletedProcess[str]:
    """``satchel conformance --url ... ARG...`` against the real server
    process, as an administrator made by ``satchel admin create`` (and
    with the server's API key, ``api_key``); it must pass."""
    from server_process import ServerProcess

    data = tmp_path / "data"
    (tmp_path / "password").write_text("kit-admin-password\n")
    subprocess.run([sys.executable, "-m", "satchel.transports", "admin", "create", "kit-admin@example.com",
                    "--data-dir", str(data), "--password-file", str(tmp_path / "password")],
                   check=True, capture_output=True, timeout=60)
    server = ServerProcess(data)
    try:
        return conformance_at(server.url, "--admin-email", "kit-admin@example.com", "--admin-password",
                              "kit-admin-password", *(["--api-key", str(server.api_key)] if api_key else []), *args)
    finally:
        server.stop()


def conformance_at(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    """``satchel conformance --url URL ARG...`` in a child process; it must pass."""
    completed = subprocess.run([sys.executable, "-m", "satchel.transports", "conformance", "--url", url, *args],
                               capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    return completed
