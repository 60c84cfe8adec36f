"""Properties of the permission model (issue 11 part 1): for random rule sets,
records, users and queries, no read returns what the rules deny, no
redaction leaks a field, no write the rules deny gets through, and no
sequence of actions (a stateful machine over a real store) lets a user
read or change what its rules deny."""

from __future__ import annotations

from typing import Any

import msgspec
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)
from permission_strategies import (
    NOW,
    NOW_MS,
    PROPERTY,
    _q,
    accountabilities,
    records,
    rule_sets,
    stored_records,
)
from satchel.protocol.operations import (
    DeleteRecord,
    GetRecord,
    InsertRecord,
    ListRecords,
    ReplaceRecord,
)
from satchel.protocol.permissions import (
    Accountability,
    Forbidden,
    RuleSet,
    Subscriber,
    can,
    changed_fields,
    check_write,
    delivery_groups,
    read_filter,
    read_query,
    readable_fields,
    variables_for,
    writable_fields,
)
from satchel.protocol.query import (
    apply,
    matches,
    parse_query,
    project,
    redact,
    searched,
)
from satchel.protocol.records import new_record, overwrite_record, patch_record
from satchel.storage_backends.memory import MemoryStore


@PROPERTY
@given(rule_sets(), accountabilities, stored_records)
def test_the_read_filter_admits_exactly_what_can_admits(rules: RuleSet, who: Accountability, items: list[dict[str, Any]]) -> None:
    scope = read_filter(rules, who, "notes")
    for item in items:
        assert matches(scope, item, variables_for(who, NOW_MS)) == can(rules, who, "notes", "read", item, now_ms=NOW_MS)


@PROPERTY
@given(rule_sets(), accountabilities, stored_records, _q.queries)
def test_a_read_never_returns_a_denied_record_or_field(
    rules: RuleSet, who: Accountability, items: list[dict[str, Any]], raws: list[dict[str, Any]]
) -> None:
    readable = readable_fields(rules, who, "notes")
    by_id = {item["_id"]: item for item in items}
    for raw in [{"meta": "*"}, *raws]:  # the first one names no field: it is never refused for one
        query = parse_query(raw)
        # Keep _id in every answer, so each record can be traced to its origin.
        query = msgspec.structs.replace(query, meta=("filter_count", "total_count"),
                                        fields=query.fields if ("*",) in query.fields else query.fields + (("_id",),))
        try:
            op = read_query(rules, who, "notes", query, now_ms=NOW_MS)
        except Forbidden:
            referenced = {path[0] for path in query.fields if path != ("*",)} | {key.path[0] for key in query.sort}
            assert not can(rules, who, "notes", "read") or (readable != "*" and not (referenced | _fields_of(query)) <= readable)
            continue
        result = apply(op.query, items, op.variables, op.permission, op.readable)  # what every store answers
        for record in result.records:
            origin = by_id[record["_id"]]
            assert can(rules, who, "notes", "read", origin, now_ms=NOW_MS)
            assert readable == "*" or set(record) <= readable
            assert record == project(redact(origin, readable), query.fields)
        admitted = [
            item for item in items
            if can(rules, who, "notes", "read", item, now_ms=NOW_MS)
            and matches(query.filter, item, variables_for(who, NOW_MS))
            and (query.search is None or searched(item, query.search, readable))
        ]
        assert result.filter_count == len(admitted)
        assert result.total_count == sum(can(rules, who, "notes", "read", item, now_ms=NOW_MS) for item in items)


def _fields_of(query: Any) -> set[str]:
    from satchel.protocol.query import filter_fields

    return set(filter_fields(query.filter))


@PROPERTY
@given(rule_sets(), accountabilities, records, st.sampled_from(["create", "patch", "overwrite", "delete"]), records)
def test_a_write_passes_exactly_when_its_rule_admits_it(
    rules: RuleSet, who: Accountability, fields: dict[str, Any], kind: str, data: dict[str, Any]
) -> None:
    existing = new_record(fields, "0" * 24, NOW)
    before, after = {
        "create": (None, new_record(data, "1" * 24, NOW)),
        "patch": (existing, patch_record(existing, data, NOW)),
        "overwrite": (existing, overwrite_record(existing, data, NOW)),
        "delete": (existing, None),
    }[kind]
    action = "create" if before is None else "delete" if after is None else "update"
    try:
        check_write(rules, who, "notes", before, after, now_ms=NOW_MS)
        allowed = True
    except Forbidden:
        allowed = False
    expected = (
        can(rules, who, "notes", action)
        and all(item is None or can(rules, who, "notes", action, item, now_ms=NOW_MS) for item in (before, after))
        and (after is None or _within(changed_fields(before, after), writable_fields(rules, who, "notes", action)))
    )
    assert allowed == expected
    if allowed and after is not None:
        assert _within(changed_fields(before, after), writable_fields(rules, who, "notes", action))  # type: ignore[arg-type]


def _within(fields: frozenset[str], allowed: Any) -> bool:
    return allowed == "*" or fields <= allowed


subscribers = st.lists(
    st.builds(lambda n, who, raw: Subscriber(n, who, None if raw is None else parse_query(raw)),
              st.integers(0, 10**6), accountabilities, st.none() | _q.queries.map(lambda raws: raws[0])),
    max_size=12, unique_by=lambda subscriber: subscriber.key,
)


@PROPERTY
@given(rule_sets(), records, subscribers)
def test_delivery_groups_give_each_subscriber_exactly_what_it_may_read(
    rules: RuleSet, fields: dict[str, Any], crowd: list[Subscriber]
) -> None:
    record = {"_id": "0001", **fields}
    groups = delivery_groups(rules, "notes", record, crowd, now_ms=NOW_MS)
    received = {key: group.record for group in groups for key in group.members}
    assert sum(len(group.members) for group in groups) == len(received)  # no one in two groups
    assert len({msgspec.json.encode(group.record) for group in groups}) == len(groups)  # one group per rendering
    for subscriber in crowd:
        who, query = subscriber.who, subscriber.query or parse_query({}, default_limit=None)
        readable = readable_fields(rules, who, "notes")
        admitted = (
            can(rules, who, "notes", "read", record, now_ms=NOW_MS)
            and matches(query.filter, record, variables_for(who, NOW_MS))
            and (query.search is None or searched(record, query.search, readable))
        )
        assert (subscriber.key in received) == admitted
        if admitted:
            assert received[subscriber.key] == project(redact(record, readable), query.fields)


class Attempts(RuleBasedStateMachine):
    """Users write and read through a real store, every step gated only by
    the pure decisions. Whatever the order, every stored record satisfies
    the rule its last writer used, every field was last set by someone
    allowed to write it, and reads never show what the rules deny."""

    @initialize(rules=rule_sets())
    def start(self, rules: RuleSet) -> None:
        self.rules = rules
        self.store = MemoryStore()
        self.writers: dict[str, tuple[Accountability, str]] = {}
        self.field_writers: dict[tuple[str, str], tuple[Accountability, str]] = {}
        self.count = 0

    def _ids(self) -> list[str]:
        return [record["_id"] for record in self.store.execute_sync(ListRecords("notes"))]

    def _written(self, who: Accountability, action: str, before: dict[str, Any] | None, after: dict[str, Any]) -> None:
        self.writers[after["_id"]] = (who, action)
        for name in changed_fields(before, after):
            self.field_writers[(after["_id"], name)] = (who, action)

    @rule(who=accountabilities, data=records)
    def create(self, who: Accountability, data: dict[str, Any]) -> None:
        record = new_record(data, f"{self.count:024x}", NOW)
        self.count += 1
        try:
            check_write(self.rules, who, "notes", None, record, now_ms=NOW_MS)
        except Forbidden:
            return
        assert can(self.rules, who, "notes", "create", record, now_ms=NOW_MS)
        assert _within(changed_fields(None, record), writable_fields(self.rules, who, "notes", "create"))
        self.store.execute_sync(InsertRecord("notes", record))
        self._written(who, "create", None, record)

    @precondition(lambda self: self.count > 0)
    @rule(who=accountabilities, data=records, pick=st.integers(0, 50), kind=st.sampled_from(["patch", "overwrite", "delete"]))
    def change(self, who: Accountability, data: dict[str, Any], pick: int, kind: str) -> None:
        ids = self._ids()
        assume(ids)
        stored = self.store.execute_sync(GetRecord("notes", ids[pick % len(ids)]))
        before = stored.record
        after = None if kind == "delete" else (patch_record if kind == "patch" else overwrite_record)(before, data, NOW)
        try:
            check_write(self.rules, who, "notes", before, after, now_ms=NOW_MS)
        except Forbidden:
            return
        # What got through is what the rules allow: the item as it was and as it will be, the fields changed.
        action = "delete" if after is None else "update"
        assert can(self.rules, who, "notes", action, before, now_ms=NOW_MS)
        if after is not None:
            assert can(self.rules, who, "notes", action, after, now_ms=NOW_MS)
            assert _within(changed_fields(before, after), writable_fields(self.rules, who, "notes", "update"))
        if after is None:
            self.store.execute_sync(DeleteRecord("notes", before["_id"]))
            self.writers.pop(before["_id"], None)
        else:
            assert self.store.execute_sync(ReplaceRecord("notes", after, stored.revision))
            self._written(who, "update", before, after)

    @rule(who=accountabilities, raw=_q.queries.map(lambda raws: raws[0]))
    def read(self, who: Accountability, raw: dict[str, Any]) -> None:
        try:
            op = read_query(self.rules, who, "notes", parse_query(raw, default_limit=None), now_ms=NOW_MS)
        except Forbidden:
            return
        readable = readable_fields(self.rules, who, "notes")
        full = {record["_id"]: record for record in self.store.execute_sync(ListRecords("notes"))}
        for record in self.store.execute_sync(msgspec.structs.replace(op, query=msgspec.structs.replace(op.query, fields=(("*",),)))).records:
            assert readable == "*" or set(record) <= readable
            assert can(self.rules, who, "notes", "read", full[record["_id"]], now_ms=NOW_MS)

    @invariant()
    def every_record_and_field_was_written_by_someone_allowed_to(self) -> None:
        if not hasattr(self, "store"):
            return
        for record in self.store.execute_sync(ListRecords("notes")):
            who, action = self.writers[record["_id"]]
            assert can(self.rules, who, "notes", action, record, now_ms=NOW_MS)
            for name in set(record) - {"_id", "createdAt", "updatedAt", "__v"}:
                writer, used = self.field_writers[(record["_id"], name)]
                assert _within(frozenset({name}), writable_fields(self.rules, writer, "notes", used))  # type: ignore[arg-type]


TestAttempts = Attempts.TestCase
TestAttempts.settings = settings(max_examples=60, stateful_step_count=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
