"""The rules in force: the switchboard answers ``CurrentRules``, applies
``RulesChanged`` in order with the events around it, loads the stored rules,
and hands the same rules to renderers."""

from __future__ import annotations

from typing import Any, Sequence

from satchel.protocol.changes import Change
from satchel.protocol.channels import Audience, Deliver
from satchel.protocol.environment import fixed_environment
from satchel.protocol.http import HttpRequest, json_response
from satchel.protocol.mounts import Accepted, HttpOutcome, Mount, MountTable, RenderContext
from satchel.protocol.operations import run_sync
from satchel.protocol.permissions import (
    DEFAULT_RULES,
    CurrentRules,
    RoleSpec,
    RulesChanged,
    RuleSpec,
    save_rules,
)
from satchel.protocol.switchboard import Switchboard
from satchel.storage_backends.memory import MemoryStore

STRICT = DEFAULT_RULES.with_role("reader", RoleSpec(rules=(RuleSpec(collection="notes", action="read"),)))


class RulesMount(Mount):
    """Answers with the roles of the rules in force; renders with them too."""

    name = "rules-probe"

    def claims_request(self, request: HttpRequest) -> bool:
        return True

    def handle_request(self, request: HttpRequest, env: Any, form: Any = None) -> Any:
        rules = yield CurrentRules()
        events: list[Any] = []
        if request.method == "PUT":
            events.append(RulesChanged(STRICT.to_json(), 7))
            events.append(Change("notes", "create", {"_id": "n1"}, None, "probe"))
        return HttpOutcome(json_response(200, sorted(rules.roles)), events)

    def claims_upgrade(self, request: HttpRequest) -> bool:
        return True

    def accept(self, request: HttpRequest, connection: str, env: Any) -> Any:
        return Accepted({"who": connection}, None)
        yield

    def render(self, change: Any, context: RenderContext) -> Sequence[Deliver]:
        roles = ",".join(sorted(context.rules.roles)).encode()
        states = [state["who"] for _, state in context.recipients(Audience())]
        return (Deliver(self.name, roles + b"|" + ",".join(states).encode(), Audience()),)


def test_actions_and_renderers_see_the_rules_in_force_and_their_changes_in_order() -> None:
    store = MemoryStore()
    board = Switchboard(MountTable([RulesMount()]), fixed_environment())
    run = lambda action: run_sync(action, store.execute_sync)  # noqa: E731
    assert isinstance(run(board.accept(HttpRequest("GET", "/", []), "c1")), Accepted)
    outcome = run(board.handle_request(HttpRequest("GET", "/", [])))
    assert outcome.response.body == b'["admin","authenticated","public"]'
    outcome = run(board.handle_request(HttpRequest("PUT", "/", [])))
    assert board.rules is DEFAULT_RULES  # not before its events are applied
    [(payload, recipients)] = list(board.deliveries(outcome.changes))
    # The change after RulesChanged is rendered with the new rules.
    assert payload == b"admin,authenticated,public,reader|c1" and recipients == ["c1"]
    assert board.rules == STRICT and board.rules_revision == 7
    outcome = run(board.handle_request(HttpRequest("GET", "/", [])))
    assert b'"reader"' in outcome.response.body


def test_the_stored_rules_are_loaded_at_start() -> None:
    store = MemoryStore()
    assert run_sync(save_rules(STRICT, 0), store.execute_sync) is True
    board = Switchboard(MountTable([RulesMount()]), fixed_environment())
    assert board.rules is DEFAULT_RULES
    assert run_sync(board.load_rules(), store.execute_sync) == STRICT
    assert board.rules == STRICT and board.rules_revision == 1
