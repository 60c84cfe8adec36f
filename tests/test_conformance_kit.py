"""The conformance kit (``satchel.protocol.conformance``) as a product.

It passes against the core in process, against the reference server at a
URL (through the command line), and against the ASGI app and both examples;
it finds bugs planted in a copy of the core and reports each as a short
script that replays; and its parts - the matcher, the strategies, the
script format - behave as documented.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import satchel.protocol.backpack.render as render
import satchel.protocol.backpack.websocket as websocket_actions
import satchel.protocol.collections as collections
from satchel.storage_backends.memory import MemoryStore
from satchel.protocol.channels import Subscribe
from satchel.protocol.conformance import (
    ConformanceFailure,
    InProcessTarget,
    Mismatch,
    check_target,
    format_script,
    load_script,
    replay,
    strategies,
)
from satchel.protocol.conformance.model import ANY_STRING, Bindings, OneOf, Sym, match
from satchel.transports.conformance_runner import UrlTarget, main
from scenarios import Launched, example
from server_process import ServerProcess

# -- planted bugs: each breaks one rule of seed 000 in the core -----------------


def _patch_keeps_nulls(monkeypatch: pytest.MonkeyPatch) -> None:
    """PATCH stores ``null`` instead of removing the field."""
    original = collections.patch_record

    def patch_record(record: dict[str, Any], changes: dict[str, Any], now: str) -> dict[str, Any]:
        merged = original(record, {k: v for k, v in changes.items() if v is not None}, now)
        merged.update({k: None for k, v in changes.items() if v is None and k not in ("_id", "__v")})
        return merged

    monkeypatch.setattr(collections, "patch_record", patch_record)


def _join_does_not_subscribe(monkeypatch: pytest.MonkeyPatch) -> None:
    """``joinChannel`` answers but never subscribes the connection."""
    schema, handler = websocket_actions.ACTIONS["joinChannel"]

    def join(socket: Any, message: Any, env: Any) -> Any:
        events = yield from handler(socket, message, env)
        return [event for event in events if not isinstance(event, Subscribe)]

    monkeypatch.setitem(websocket_actions.ACTIONS, "joinChannel", (schema, join))


def _private_records_broadcast(monkeypatch: pytest.MonkeyPatch) -> None:
    """A record with ``broadcast: false`` goes to everyone."""
    original = render.audience_for
    monkeypatch.setattr(
        render, "audience_for",
        lambda obj, writer, author=None: original({k: v for k, v in obj.items() if k != "broadcast"}, writer, author),
    )


PLANTED = {bug.__name__.strip("_"): bug for bug in (_patch_keeps_nulls, _join_does_not_subscribe,
                                                     _private_records_broadcast)}


def test_the_core_conforms_in_process() -> None:
    report = check_target(InProcessTarget(MemoryStore()), examples=120, steps=30, seed=1)
    assert report.passed, report.failure or report.errors
    assert report.examples >= 120


@pytest.mark.parametrize("bug", PLANTED)
def test_a_planted_bug_is_found_and_reported_as_a_short_replayable_script(
    bug: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    PLANTED[bug](monkeypatch)
    # The kit stops at its first failure: a large budget costs nothing when the
    # bug shows early, and keeps the test from hanging on one lucky seed.
    report = check_target(InProcessTarget(MemoryStore()), examples=1000, steps=30, seed=0)
    assert report.failure is not None, f"the kit missed {bug}"
    script = report.failure.script
    assert 1 <= len(script) <= 4, format_script(script)
    assert len(script) <= len(report.found.script)  # type: ignore[union-attr]

    # The script is plain JSON with placeholders: it round-trips and replays.
    text = format_script(script)
    assert load_script(text) == script
    assert "${" in text
    with pytest.raises(ConformanceFailure):
        replay(InProcessTarget(MemoryStore()), load_script(text))
    monkeypatch.undo()
    replay(InProcessTarget(MemoryStore()), load_script(text))  # the same steps pass against the real core


def test_the_command_line_saves_and_replays_a_failing_script(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    saved = tmp_path / "failure.json"
    _private_records_broadcast(monkeypatch)
    assert main(["--in-process", "--examples", "100", "--seed", "0", "--save", str(saved)]) == 1
    assert "differs" in capsys.readouterr().out
    assert main(["--in-process", "--replay", str(saved)]) == 1
    monkeypatch.undo()
    assert main(["--in-process", "--replay", str(saved)]) == 0
    assert "without a difference" in capsys.readouterr().out


def test_the_reference_server_conforms(server: ServerProcess) -> None:
    """The CI run: ``satchel conformance`` against the real server process."""
    completed = subprocess.run(
        [sys.executable, "-m", "satchel.transports", "conformance", "--url", f"ws://127.0.0.1:{server.port}",
         "--api-key", server.api_key or "", "--examples", "40", "--steps", "25", "--seed", "3"],
        capture_output=True, text=True, timeout=300,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert "conforms" in completed.stdout


@pytest.fixture(scope="module", params=["asgi_app", "asyncio_server", "threaded_server"])
def embedded(request: pytest.FixtureRequest) -> Iterator[Launched]:
    launched = example(request.param, "kit-api-key")
    try:
        yield launched
    finally:
        launched.stop()


def test_the_asgi_app_and_the_examples_conform(embedded: Launched) -> None:
    target = UrlTarget(f"http://127.0.0.1:{embedded.port}", "kit-api-key")
    try:
        report = check_target(target, examples=12, steps=25, seed=4, token="emb", quiet=0.05)
    finally:
        target.close()
    assert report.passed, report.failure or report.errors


# -- the parts ----------------------------------------------------------------------


def test_matching_binds_server_values_once() -> None:
    bindings = Bindings()
    record_id, created = Sym("id", 1), Sym("ts", 1)
    match({"_id": record_id, "createdAt": created}, {"_id": "a" * 24, "createdAt": "2020-04-21T17:39:12.829Z"},
          bindings)
    assert bindings.values == {record_id: "a" * 24, created: "2020-04-21T17:39:12.829Z"}
    match(record_id, "a" * 24, bindings)
    cases = [
        (record_id, "b" * 24),                       # bound: must be equal
        (Sym("id", 2), "a" * 24),                    # a new id must be new
        (Sym("id", 3), "not-an-id"),
        (Sym("ts", 2), "yesterday"),
        ({"n": 1}, {"n": True}),                     # JSON types are strict
        ({"a": 1}, {"a": 1, "b": 2}),
        ([1, 2], [1]),
        (ANY_STRING, 3),
    ]
    for expected, actual in cases:
        with pytest.raises(Mismatch):
            match(expected, actual, bindings)
    match({"n": 1}, {"n": 1.0}, bindings)
    match(OneOf(({"status": 404}, None)), None, bindings)


VOCABULARY = strategies.Vocabulary(
    collections=["notes", "rooms", "meta"],
    ids={"notes": ["a" * 24, "b" * 24]},
    records={"notes": [{"_id": "a" * 24, "text": "hi", "n": 3}]},
    channels=[("rooms", "c" * 24)],
    user_ids=["d" * 24],
    users_collections=["meta"],
    channel_types=["rooms"],
    message_collections=["chat"],
)


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_strategies_give_json_messages_the_core_answers(data: st.DataObject) -> None:
    message = data.draw(st.one_of(
        strategies.read_messages(VOCABULARY), strategies.write_messages(VOCABULARY),
        strategies.relay_messages(VOCABULARY), strategies.channel_messages(VOCABULARY),
        strategies.delete_channel_messages(VOCABULARY), strategies.corrupted_messages(VOCABULARY),
    ))
    assert json.loads(json.dumps(message)) == message
    target = InProcessTarget(MemoryStore())
    target.http(None, "POST", "/register", b'{"email":"s@example.com","password":"long enough"}', key=target.api_key)
    target.http("s", "POST", "/login", b'{"email":"s@example.com","password":"long enough"}', key=target.api_key)
    assert target.connect("s", "c") == 101
    target.receive("c", 0)
    target.send("c", json.dumps(message))
    answer = target.receive("c", 0)
    assert isinstance(answer, dict) and isinstance(answer.get("action"), str)
