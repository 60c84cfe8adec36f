"""The conformance kit's Directus part (``satchel.protocol.conformance.directus``):
the items REST API, the admin API's rules and roles, and both Directus
websockets, under random-but-valid rule sets.

It passes against the core in process and against the real ``satchel
serve`` at a URL (through the command line); it finds bugs planted in a
monkeypatched copy of the core - each reported as a short script that fails
when replayed and passes once the bug is undone; and its model evaluates
the filter language as documented.

The kit runs in child processes, as the Asnity kit's tests do - this file,
run as a script, is the probe (``python tests/test_conformance_directus.py
core|planted BUG|cli ARG...|model``): loading the kit's modules into the
pytest process would change, through Hypothesis's use of the constants of
loaded modules, the sequences other kits' seeded tests generate.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import pytest

import conformance_probe as kit_probe

PROBE = Path(__file__)
BUGS = ["delivery-ignores-read-rule", "delivery-decided-per-role", "rest-reads-every-field", "update-ignores-filter",
        "neq-as-eq"]


def probe(*args: str) -> tuple[dict[str, Any], str]:
    return kit_probe.probe(PROBE, *args)


def test_the_core_conforms_in_process() -> None:
    kit_probe.check_core(PROBE, examples=300)


@pytest.mark.parametrize("bug", BUGS)
def test_a_planted_bug_is_found_as_a_short_replayable_script(bug: str) -> None:
    kit_probe.check_planted(PROBE, bug, most=10)


def test_the_model_reads_filters_and_rules_as_documented() -> None:
    assert probe("model")[0] == {"ok": True}


def test_the_command_line_saves_and_replays_a_failing_script(tmp_path: Path) -> None:
    saved = str(tmp_path / "failure.json")
    out = kit_probe.check_save_and_replay(PROBE, saved, "delivery-ignores-read-rule", "directus", 1000,
                                          "the Directus model")
    assert "websocket" in out and "received" in out, out  # a delivery the rules (or the query) do not admit


def test_the_reference_server_conforms(tmp_path: Path) -> None:
    """``satchel conformance --protocol directus`` against the real server process,
    with an administrator made by ``satchel admin create``: REST over HTTP (Directus
    and, with the API key, Backpack writes), both websockets over real websockets;
    the stored rules are put back afterwards."""
    completed = kit_probe.conformance_as_admin(tmp_path, "--protocol", "directus",
                                               "--examples", "40", "--steps", "25", "--seed", "3", api_key=True)
    assert "conforms (Directus REST, websockets and rules): 40 generated sequences" in completed.stdout


# -- the probe (run in a child process) ----------------------------------------------------------


def plant(bug: str) -> Callable[[], None]:
    """Plant ``bug`` in the core; returns what undoes it."""
    import msgspec

    from satchel.protocol.directus import items
    from satchel.protocol.directus.websocket import delivery
    from satchel.protocol.permissions import DeliveryGroup, Forbidden, changed_fields
    from satchel.protocol.query import filters

    plants = kit_probe.Plants()
    patch = plants.patch

    if bug == "delivery-ignores-read-rule":
        def delivery_groups(rules: Any, collection: str, record: Any, subscribers: Any, *, now_ms: Any = None) -> Any:
            # Every subscriber gets the whole record: no read rule, no query.
            keys = tuple(subscriber.key for subscriber in subscribers)
            return [DeliveryGroup(record, keys)] if keys else []

        patch(delivery, "delivery_groups", delivery_groups)
    elif bug == "delivery-decided-per-role":
        # Fan-out's grouping decides once per role, even where the rule depends on
        # the user ($CURRENT_USER): users of one role all get the first one's answer.
        patch(delivery, "_dependent", lambda *args: False)
    elif bug == "rest-reads-every-field":
        read_query = items.read_query

        def every_field(*args: Any, **kwargs: Any) -> Any:
            # The rule's filter still applies; its field list does not.
            return msgspec.structs.replace(read_query(*args, **kwargs), readable="*")

        patch(items, "read_query", every_field)
    elif bug == "update-ignores-filter":
        check_write = items.check_write

        def lax(rules: Any, who: Any, collection: str, before: Any, after: Any, *, now_ms: Any = None) -> None:
            if before is None or after is None:
                return check_write(rules, who, collection, before, after, now_ms=now_ms)
            # An update: the rule must exist and cover the fields, but its item filter is not applied.
            rule = rules.rule(who, collection, "update")
            if rule is None or (rule.fields != "*" and changed_fields(before, after) - rule.fields):
                raise Forbidden()
            return None

        patch(items, "check_write", lax)
    elif bug == "neq-as-eq":
        plants.patch_item(filters.OPERATORS, "_neq", ("eq", False))
    else:
        raise ValueError(f"no such bug: {bug}")
    return plants.undo


def _target() -> Any:
    from satchel.protocol.conformance import InProcessTarget
    from satchel.protocol.conformance.directus import InProcessDirectus
    from satchel.storage_backends.memory import MemoryStore

    return InProcessDirectus(InProcessTarget(MemoryStore()))


def core() -> dict[str, Any]:
    from satchel.protocol.conformance.directus import check_directus_target

    return kit_probe.core(check_directus_target, _target(), examples=300, steps=25, seed=1)


def planted(bug: str) -> dict[str, Any]:
    from satchel.protocol.conformance import directus as kit

    return kit_probe.planted(plant(bug), kit, kit.check_directus_target, kit.DirectusMismatch, _target,
                             examples=1000, steps=25, seed=0)


def model() -> dict[str, Any]:
    from satchel.protocol.conformance.directus import DirectusModel, evaluate
    from satchel.protocol.conformance.matching import EMPTY_BODY

    record = {"_id": "x", "owner": "u1", "n": 1, "s": "Ab", "f": True}
    assert evaluate({"n": {"_neq": 2}}, record, None) and not evaluate({"n": {"_neq": 1}}, record, None)
    assert evaluate({"missing": {"_neq": 1}}, record, None)          # _neq keeps missing fields
    assert not evaluate({"n": {"_eq": True}}, record, None)          # a boolean is no number
    assert not evaluate({"f": 1}, record, None) and evaluate({"f": True}, record, None)
    assert not evaluate({"s": {"_gt": 0}}, record, None)             # strings and numbers never compare
    assert evaluate({"s": {"_icontains": "aB"}}, record, None) and not evaluate({"s": {"_contains": "a"}}, record, None)
    assert evaluate({"owner": "$CURRENT_USER"}, record, "u1") and not evaluate({"owner": "$CURRENT_USER"}, record, None)
    assert evaluate({"owner": {"_neq": "$CURRENT_USER"}}, record, None)  # nobody equals nothing
    assert evaluate({"n": {"_between": [1, 1]}}, record, None) and evaluate({"n": {"_nin": []}}, record, None)
    assert evaluate({"_and": []}, record, None) and not evaluate({"_or": []}, record, None)
    assert evaluate({"x": {"_null": True}}, record, None) and evaluate({"n": {"_null": False}}, record, None)
    assert evaluate({"x": {"_empty": True}}, record, None) and not evaluate({"s": {"_empty": True}}, record, None)

    users = ["a" * 24, "b" * 24, "c" * 24]
    roles = {"public": {"rules": []},
             "authenticated": {"rules": [{"collection": "*", "action": "*"}]},
             "mine": {"rules": [{"collection": "c", "action": "*", "filter": {"owner": {"_eq": "$CURRENT_USER"}},
                                 "fields": ["n", "owner"]},
                                {"collection": "c", "action": "delete", "allowed": False}]}}
    m = DirectusModel(users, roles, 0, admin=2)
    assert m.set_role(0, "mine").status == 200 and m.set_role(0, "public").status == 400
    assert m.create(0, "c", [{"owner": users[1]}], True).status == 403      # not the writer's own
    assert m.create(0, "c", [{"owner": users[0], "s": "x"}], True).status == 403   # s may not be written
    made = m.create(0, "c", [{"owner": users[0], "n": 1}], True)
    assert made.status == 200 and set(made.body["data"]) == {"id", "owner", "n"}
    assert m.create(1, "c", [{"owner": users[1], "n": 2, "s": "z"}], True).status == 200
    assert [item["n"] for item in m.read(0, "c", {}).body["data"]] == [1]     # only its own, only its fields
    assert m.read(0, "c", {"filter": {"s": {"_eq": "z"}}}).status == 403     # a filter on a hidden field
    assert m.read(None, "c", {}).status == 403                                 # public: no rules
    assert m.update(0, "c", [1], {"n": 3}, True).status == 403                 # another's item
    assert m.delete(0, "c", [0]).status == 403                                 # delete carved out
    m.open(0, 0, "core"), m.open(1, 1, "extension")
    assert m.subscribe(0, "c", None, "1", None).frames[0][0].data["data"][0]["n"] == 1
    m.subscribe(1, "c", {"fields": ["s"]}, None, None)
    written = m.update(1, "c", [1], {"n": None}, True)
    assert 0 not in written.frames and written.frames[1][0].data["payload"] == [{"s": "z"}]
    assert m.set_rules({}, {"public": {"rules": []}}).status == 400           # drops the role user 0 holds
    gone = m.delete(2, "c", [0])
    assert gone.status == 204 and gone.body is EMPTY_BODY and gone.frames[0][0].data["event"] == "delete"
    return {"ok": True}


def cli(*argv: str) -> dict[str, Any]:
    return kit_probe.cli(plant, list(argv))


if __name__ == "__main__":
    kit_probe.serve({"core": core, "planted": planted, "model": model, "cli": cli})
