"""Roles and rules (issue 11 part 1): the rule file, the defaults that keep
Backpack's behaviour, and every decision function, case by case."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from satchel.protocol.errors import LocalProtocolError
from satchel.protocol.operations import InsertRecord, InsertUser, GetUser, PutSetting, User, run_sync
from satchel.protocol.permissions import (
    ADMIN,
    AUTHENTICATED,
    DEFAULT_RULES,
    PUBLIC,
    RULES_SETTING,
    Accountability,
    Forbidden,
    InvalidRules,
    RoleSpec,
    RuleSet,
    RuleSpec,
    Subscriber,
    can,
    changed_fields,
    check_write,
    delivery_groups,
    load_rules,
    read_filter,
    read_query,
    readable_fields,
    redact,
    save_rules,
    set_role,
    writable_fields,
)
from satchel.protocol.permissions import decide
from satchel.protocol.query import MATCH_NONE, parse_query
from satchel.storage_backends.memory import MemoryStore

RULE_FILE = b"""{
  "version": 1,
  "roles": {
    "reader": {"rules": [
      {"collection": "articles", "action": "read",
       "filter": {"status": {"_eq": "published"}}, "fields": ["title", "body", "status"]},
      {"collection": "articles", "action": ["create", "update", "delete"],
       "filter": {"userId": {"_eq": "$CURRENT_USER"}}, "fields": ["title", "body", "userId", "status"]},
      {"collection": "*", "action": "read"},
      {"collection": "secrets", "action": "*", "allowed": false}
    ]},
    "operator": {"admin": true},
    "authenticated": {"rules": [{"collection": "*", "action": ["read", "create"]}]}
  }
}"""
RULES = RuleSet.from_json(RULE_FILE)
ALICE = Accountability("alice", "reader")
BOB = Accountability("bob", "reader")
NOBODY = Accountability()
SIGNED_IN = Accountability("carol", AUTHENTICATED)
ADMIN_USER = Accountability("root", ADMIN)
HIDDEN = ["users", "Users", "uploads", "sessions", "SESSIONS", "_asnity.chats", "_anything"]


# -- the defaults: Backpack's behaviour ----------------------------------------------


@pytest.mark.parametrize("action", ["create", "read", "update", "delete"])
def test_by_default_every_signed_in_user_may_do_everything_on_ordinary_collections(action: Any) -> None:
    for who in (SIGNED_IN, ADMIN_USER):
        assert can(DEFAULT_RULES, who, "notes", action)
        assert can(DEFAULT_RULES, who, "notes", action, {"_id": "1", "anything": True})
        assert readable_fields(DEFAULT_RULES, who, "notes") == "*"
    assert not can(DEFAULT_RULES, NOBODY, "notes", action)  # Backpack needs a login
    assert not can(DEFAULT_RULES, Accountability(None, ADMIN), "notes", action)  # no user: public, whatever the role
    assert not can(DEFAULT_RULES, Accountability("x", "no-such-role"), "notes", action)


@pytest.mark.parametrize("collection", HIDDEN)
def test_hidden_collections_are_no_collections_to_anyone(collection: str) -> None:
    for rules in (DEFAULT_RULES, RULES):
        for who in (NOBODY, SIGNED_IN, ALICE, ADMIN_USER, Accountability("op", "operator")):
            for action in ("create", "read", "update", "delete"):
                assert not can(rules, who, collection, action)
            assert readable_fields(rules, who, collection) == frozenset()
            assert read_filter(rules, who, collection) == MATCH_NONE
            with pytest.raises(Forbidden):
                read_query(rules, who, collection, parse_query({}))
            with pytest.raises(Forbidden):
                check_write(rules, who, collection, None, {"_id": "1"})


def test_the_builtin_roles() -> None:
    assert DEFAULT_RULES.roles == (ADMIN, AUTHENTICATED, PUBLIC)
    assert RULES.roles == (ADMIN, AUTHENTICATED, "operator", PUBLIC, "reader")
    assert RuleSet() == DEFAULT_RULES and RuleSet.from_json(b"{}") == DEFAULT_RULES
    # The file redefined authenticated: it may read and create, no more.
    assert can(RULES, SIGNED_IN, "notes", "create") and not can(RULES, SIGNED_IN, "notes", "delete")
    assert can(RULES, Accountability("op", "operator"), "secrets", "delete")  # admin: everything ordinary


def test_unrestricted_is_the_fast_path_only_when_no_signed_in_role_is_limited() -> None:
    for action in ("create", "read", "update", "delete"):
        assert DEFAULT_RULES.unrestricted("notes", action)
        for collection in HIDDEN:
            assert not DEFAULT_RULES.unrestricted(collection, action)
    # reader is limited by a filter on articles, by fields, and refused secrets.
    assert not RULES.unrestricted("articles", "read")
    assert not RULES.unrestricted("secrets", "read")
    # authenticated may only read and create; an admin role does not count.
    assert not RULES.unrestricted("notes", "delete")
    only_admins_limited = RuleSet.from_json(b'{"roles": {"op": {"admin": true}}}')
    assert only_admins_limited.unrestricted("notes", "delete")
    public_only = RuleSet.from_json(
        b'{"roles": {"public": {"rules": [{"collection": "notes", "action": "read",'
        b' "filter": {"a": {"_eq": 1}}}]}}}'
    )
    assert public_only.unrestricted("notes", "read")  # a signed-in user never has the public role
    everything = RuleSet.from_json(
        b'{"roles": {"reader": {"rules": [{"collection": "*", "action": "*"}]}}}'
    )
    assert everything.unrestricted("notes", "update")
    fields_limited = RuleSet.from_json(
        b'{"roles": {"reader": {"rules": [{"collection": "*", "action": "*", "fields": ["a"]}]}}}'
    )
    assert not fields_limited.unrestricted("notes", "update")


# -- the rule file ------------------------------------------------------------------


def test_a_rule_for_a_collection_beats_the_wildcard() -> None:
    assert can(RULES, ALICE, "anything", "read") and not can(RULES, ALICE, "anything", "create")
    assert not can(RULES, ALICE, "secrets", "read")  # allowed: false carves it out of "*"
    published, draft = {"status": "published", "secret": 1}, {"status": "draft"}
    assert can(RULES, ALICE, "articles", "read", published) and not can(RULES, ALICE, "articles", "read", draft)
    assert can(RULES, ALICE, "articles", "read")  # some item may be readable


def test_the_file_round_trips_and_changes_by_new_values() -> None:
    assert RuleSet.from_json(RULES.to_json()) == RULES
    assert RuleSet.from_json(RULE_FILE.decode()) == RULES
    changed = RULES.with_role("reader", RoleSpec(rules=(RuleSpec("articles", "*"),)))
    assert can(changed, ALICE, "articles", "delete", {"userId": "bob"})
    assert not can(RULES, ALICE, "articles", "delete", {"userId": "bob"})  # the old value is unchanged
    removed = RULES.without_role("reader")
    assert "reader" not in removed.roles and not can(removed, ALICE, "anything", "read")
    assert RULES.without_role(AUTHENTICATED).role(AUTHENTICATED) == DEFAULT_RULES.role(AUTHENTICATED)
    assert hash(RuleSet.from_json(RULES.to_json())) == hash(RULES)


@pytest.mark.parametrize(
    "text, message",
    [
        (b'{"roles": {"admin": {}}}', "built in"),
        (b'{"version": 2}', "unknown version 2"),
        (b'{"rolez": {}}', "unknown field `rolez`"),
        (b'{"roles": {"x": {"rules": [{"collection": "users", "action": "read"}]}}}', "'users' is not a collection"),
        (b'{"roles": {"x": {"rules": [{"collection": "_asnity.chats", "action": "read"}]}}}', "is not a collection"),
        (b'{"roles": {"x": {"rules": [{"collection": "", "action": "read"}]}}}', "is not a collection"),
        (b'{"roles": {"x": {"rules": [{"collection": "a", "action": "fly"}]}}}', "unknown action 'fly'"),
        (b'{"roles": {"x": {"rules": [{"collection": "a", "action": []}]}}}', "no action"),
        (b'{"roles": {"x": {"rules": [{"collection": "a", "action": "read"}, {"collection": "a", "action": "*"}]}}}', "a second rule"),
        (b'{"roles": {"x": {"rules": [{"collection": "a", "action": "read", "filter": {"a": {"_zz": 1}}}]}}}', "_zz"),
        (b'{"roles": {"x": {"rules": [{"collection": "a", "action": "read", "filter": {"t": "$CURRENT_USER.team"}}]}}}', "not $CURRENT_USER.<field>"),
        (b'{"roles": {"x": {"rules": [{"collection": "a", "action": "read", "fields": ["a.b"]}]}}}', "not a top-level field"),
        (b'{"roles": {"x": {"rules": [{"collection": "a", "action": "read", "fields": "title"}]}}}', '"fields" is "*" or a list'),
        (b'{"roles": {"x": {"rules": [{"collection": "a", "action": "read", "extra": 1}]}}}', "unknown field `extra`"),
        (b'{"roles": {"bad role!": {}}}', "not a role name"),
        (b'{"roles": {"x": {"admin": "yes"}}}', "Expected `bool`"),
        (b"[", "Expected `object`"),
        (b"{oops", "malformed"),
    ],
)
def test_invalid_rule_files_are_refused_clearly(text: bytes, message: str) -> None:
    with pytest.raises(InvalidRules) as caught:
        RuleSet.from_json(text)
    assert caught.value.code == "INVALID_PAYLOAD" and caught.value.status == 400
    assert message in caught.value.message


# -- fields -------------------------------------------------------------------------


def test_readable_and_writable_fields() -> None:
    assert readable_fields(RULES, ALICE, "articles") == {"_id", "title", "body", "status"}  # _id always
    assert writable_fields(RULES, ALICE, "articles", "update") == {"title", "body", "userId", "status"}
    assert readable_fields(RULES, ALICE, "secrets") == frozenset()
    assert writable_fields(RULES, ALICE, "notes", "create") == frozenset()
    record = {"_id": "1", "title": "t", "secret": "s", "status": "published"}
    assert redact(record, readable_fields(RULES, ALICE, "articles")) == {"_id": "1", "title": "t", "status": "published"}


def test_changed_fields() -> None:
    before = {"_id": "1", "a": 1, "b": [1], "c": "x", "updatedAt": "t1", "__v": 0}
    assert changed_fields(None, {"_id": "1", "a": 1, "createdAt": "t"}) == {"a"}
    assert changed_fields(before, dict(before, updatedAt="t2")) == frozenset()  # server-owned fields never count
    assert changed_fields(before, dict(before, a=1.0)) == {"a"}  # 1 and 1.0 are different JSON
    assert changed_fields(before, dict(before, a=True)) == {"a"}
    assert changed_fields(before, {"_id": "1", "a": 1, "b": [1]}) == {"c"}  # a removed field changed
    assert changed_fields(before, dict(before, d=None)) == {"d"}


# -- writes -------------------------------------------------------------------------


def _allowed(who: Accountability, before: dict[str, Any] | None, after: dict[str, Any] | None, collection: str = "articles") -> bool:
    try:
        check_write(RULES, who, collection, before, after)
    except Forbidden as exc:
        assert exc.code == "FORBIDDEN" and exc.status == 403
        return False
    return True


def test_writes_are_decided_by_the_item_before_and_after() -> None:
    mine = {"_id": "1", "userId": "alice", "title": "t", "createdAt": "c", "updatedAt": "u", "__v": 0}
    # create: the new item must satisfy the filter, with writable fields only
    assert _allowed(ALICE, None, mine)
    assert not _allowed(ALICE, None, dict(mine, userId="bob"))  # no creating for someone else
    assert not _allowed(ALICE, None, dict(mine, views=0))  # views is not writable
    # update: before and after
    assert _allowed(ALICE, mine, dict(mine, title="new", updatedAt="later"))
    assert not _allowed(BOB, mine, dict(mine, title="mine now"))  # not bob's item
    assert not _allowed(ALICE, mine, dict(mine, userId="bob"))  # no giving it away
    assert not _allowed(ALICE, dict(mine, views=3), dict(mine, views=4))  # a field it may not write...
    assert _allowed(ALICE, dict(mine, views=3), dict(mine, views=3, title="x"))  # ...unchanged is fine
    assert not _allowed(ALICE, dict(mine, views=3), mine)  # a PUT that drops it changes it
    # delete: the item before
    assert _allowed(ALICE, mine, None)
    assert not _allowed(BOB, mine, None)
    # no rule, or a denying one
    assert not _allowed(ALICE, None, {"_id": "2"}, "secrets")
    assert not _allowed(NOBODY, None, {"_id": "2"}, "notes")
    assert not _allowed(SIGNED_IN, {"_id": "2"}, {"_id": "2", "x": 1}, "notes")  # authenticated may not update here
    with pytest.raises(ValueError):
        check_write(RULES, ALICE, "articles", None, None)


# -- reads pushed down --------------------------------------------------------------


def test_every_collection_write_asks_its_guard_on_the_stored_item() -> None:
    """``collections.create/patch/overwrite/delete`` hand the guard the item
    as stored and as it would be; a refusal writes nothing."""
    from satchel.protocol import collections
    from satchel.protocol.environment import fixed_environment
    from satchel.protocol.operations import GetRecord

    store, env = MemoryStore(), fixed_environment()
    execute = store.execute_sync

    def guard_for(who: Accountability):
        return lambda before, after: check_write(RULES, who, "articles", before, after)

    record, _ = run_sync(collections.create("articles", {"userId": "alice", "title": "t"}, "alice", "t", env,
                                            guard_for(ALICE)), execute)
    with pytest.raises(Forbidden):
        run_sync(collections.create("articles", {"userId": "bob"}, "alice", "t", env, guard_for(ALICE)), execute)
    for write in (
        lambda: collections.patch("articles", record["_id"], {"title": "x"}, "bob", "t", env, guard_for(BOB)),
        lambda: collections.overwrite("articles", record["_id"], {"userId": "bob"}, "bob", "t", env, guard_for(BOB)),
        lambda: collections.delete("articles", record["_id"], "bob", "t", guard_for(BOB)),
    ):
        with pytest.raises(Forbidden):
            run_sync(write(), execute)
    assert execute(GetRecord("articles", record["_id"])).record == record  # nothing written
    patched, _ = run_sync(collections.patch("articles", record["_id"], {"title": "x"}, "alice", "t", env,
                                            guard_for(ALICE)), execute)
    assert patched["title"] == "x"
    assert run_sync(collections.delete("articles", "absent", "alice", "t", guard_for(ALICE)), execute) == (None, None)
    deleted, _ = run_sync(collections.delete("articles", record["_id"], "alice", "t", guard_for(ALICE)), execute)
    assert deleted["_id"] == record["_id"] and execute(GetRecord("articles", record["_id"])) is None


def test_read_query_pushes_the_rule_into_the_store() -> None:
    store = MemoryStore()
    articles = [
        {"_id": "1", "status": "published", "title": "a", "secret": "x", "userId": "alice"},
        {"_id": "2", "status": "draft", "title": "b", "secret": "y", "userId": "alice"},
        {"_id": "3", "status": "published", "title": "c", "secret": "z", "userId": "bob"},
    ]
    for record in articles:
        store.execute_sync(InsertRecord("articles", record))
    op = read_query(RULES, ALICE, "articles", parse_query({"sort": "-title", "meta": "*"}))
    result = store.execute_sync(op)
    assert result.records == [{"_id": "3", "status": "published", "title": "c"}, {"_id": "1", "status": "published", "title": "a"}]
    assert (result.total_count, result.filter_count) == (2, 2)  # counts see only what the rule admits
    # Filtering, sorting or selecting a field one may not read would reveal it.
    for raw in ({"filter": {"secret": {"_eq": "y"}}}, {"sort": "secret"}, {"fields": "title,secret"}, {"filter": {"userId": "bob"}}):
        with pytest.raises(Forbidden, match="field"):
            read_query(RULES, ALICE, "articles", parse_query(raw))
    # Search looks only at readable fields.
    assert store.execute_sync(read_query(RULES, ALICE, "articles", parse_query({"search": "z"}))).records == []
    everything = store.execute_sync(read_query(DEFAULT_RULES, SIGNED_IN, "articles", parse_query({"search": "z"})))
    assert [record["_id"] for record in everything.records] == ["3"]
    with pytest.raises(Forbidden):
        read_query(RULES, NOBODY, "articles", parse_query({}))


# -- delivery -----------------------------------------------------------------------


def test_delivery_groups_encode_once_per_distinct_rendering(monkeypatch: pytest.MonkeyPatch) -> None:
    rendered = []
    render = decide._render
    monkeypatch.setattr(decide, "_render", lambda *args: rendered.append(args[3]) or render(*args))
    record = {"_id": "9", "status": "published", "title": "t", "secret": "s", "userId": "bob"}
    subscribers = [Subscriber(("reader", n), ALICE if n % 2 else BOB) for n in range(500)]
    subscribers += [Subscriber(("signed", n), Accountability(f"user{n}", AUTHENTICATED)) for n in range(500)]
    subscribers += [Subscriber(("anon", n), NOBODY) for n in range(100)]
    subscribers += [Subscriber("titles", SIGNED_IN, parse_query({"fields": "title"})), Subscriber("drafts", SIGNED_IN, parse_query({"filter": {"status": "draft"}}))]
    groups = delivery_groups(RULES, "articles", record, subscribers)
    assert [group.record for group in groups] == [
        {"_id": "9", "status": "published", "title": "t"},  # readers: their fields only
        record,  # authenticated may read everything here
        {"title": "t"},  # a subscription's own fields
    ]
    assert len(groups[0].members) == 500 and groups[0].members[:2] == (("reader", 0), ("reader", 1))
    assert len(groups[1].members) == 500 and groups[2].members == ("titles",)
    # One decision per (role, query): the rules here do not depend on the user.
    assert len(rendered) == 5
    # A rule that does depend on the user decides once per user, and still groups by rendering.
    owners = RULES.with_role("reader", RoleSpec(rules=(RuleSpec("articles", "read", filter={"userId": "$CURRENT_USER"}),)))
    rendered.clear()
    groups = delivery_groups(owners, "articles", record, [Subscriber(n, ALICE if n % 2 else BOB) for n in range(10)])
    assert [group.members for group in groups] == [(0, 2, 4, 6, 8)] and len(rendered) == 2
    assert delivery_groups(RULES, "secrets", record, subscribers[:500]) == []  # readers may not read secrets


# -- the store ----------------------------------------------------------------------


def test_rules_and_roles_live_in_the_store() -> None:
    store = MemoryStore()
    execute = store.execute_sync
    assert run_sync(load_rules(), execute) == (DEFAULT_RULES, 0)
    assert run_sync(save_rules(RULES, 0), execute) is True
    assert run_sync(load_rules(), execute) == (RULES, 1)
    assert run_sync(save_rules(DEFAULT_RULES, 0), execute) is False  # someone saved first
    assert run_sync(load_rules(), execute) == (RULES, 1)
    assert run_sync(save_rules(DEFAULT_RULES, 1), execute) is True
    assert run_sync(load_rules(), execute) == (DEFAULT_RULES, 2)

    user = User("u1", "u1@example.com", "$argon2id$x", "2020-01-01T00:00:00.000Z")
    execute(InsertUser(user))
    assert run_sync(set_role(RULES, "u1", "reader"), execute) is True
    assert execute(GetUser("u1")) == msgspec.structs.replace(user, role="reader")
    assert run_sync(set_role(RULES, "nobody", "reader"), execute) is False
    with pytest.raises(InvalidRules, match="no role 'editor'"):
        run_sync(set_role(RULES, "u1", "editor"), execute)
    with pytest.raises(InvalidRules, match="public role"):
        run_sync(set_role(RULES, "u1", PUBLIC), execute)  # public is nobody signed in
    # Rules without a role someone holds are refused: every user's role is defined.
    with pytest.raises(InvalidRules, match="drop the role 'reader'"):
        run_sync(save_rules(DEFAULT_RULES, 2), execute)
    assert run_sync(load_rules(), execute) == (DEFAULT_RULES, 2)
    assert run_sync(set_role(RULES, "u1", AUTHENTICATED), execute) is True

    execute(PutSetting(RULES_SETTING, b'{"roles": {"admin": {}}}', 2))
    with pytest.raises(LocalProtocolError, match="do not compile"):
        run_sync(load_rules(), execute)


def test_the_public_names_of_query_and_permissions_exist_and_are_documented() -> None:
    import inspect

    from satchel.protocol import permissions, query

    for package in (query, permissions):
        assert inspect.getdoc(package)
        assert len(package.__all__) == len(set(package.__all__))
        for name in package.__all__:
            value = getattr(package, name)
            if inspect.isclass(value) or inspect.isfunction(value):
                assert inspect.getdoc(value), f"{package.__name__}.{name} has no docstring"
