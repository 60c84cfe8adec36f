"""Generating resource-subscription sequences with Hypothesis, checking a
target, and cutting a failure down to a short script.

``check_resources_target`` draws ``examples`` sequences: most begin with a
random-but-valid rule set (``kvStore`` / ``liveConfig`` rules filtering on
an entry's id, organization, project or value, write rules with and without
``data`` among their fields; read rules on the collections with Directus
filters and field lists), roles for the users, and resource websockets of
several users in several scopes subscribed to entries, a collection and a
document - then up to ``steps`` steps of every kind. The first difference
is cut down (``minimize``) by deleting runs of steps, then simplifying
what is inside steps, while the shorter script still fails at its last step.
"""

from __future__ import annotations

import functools
from typing import Any

from .. import sequences
from ..directus.generate import _data, _changes, _one_rule_each, _smaller, filter_strategy, FIELDS
from ..sequences import SequenceReport, check_sequences, weighted as _weighted, world_and_steps
from .runner import ADMIN, CONNS, DOCS, KEYS, USERS, ResourcesMismatch, ResourcesRun, ResourcesTarget, tidy

__all__ = ["ResourcesReport", "check_resources_target", "minimize", "sequence_strategy", "step_strategy"]

VALUES = [0, 1, 2, 3, "x", None, {"hp": 1}, [1, 2], True, 1.5]


class ResourcesReport(SequenceReport[ResourcesMismatch]):
    """The outcome of ``check_resources_target`` (as ``DirectusReport``)."""


def _st() -> Any:
    from hypothesis import strategies as st

    return st


@functools.lru_cache(maxsize=None)
def entry_filter() -> Any:
    """Filters on what a rule sees of an entry: ``{_id, id, organization, project, data}``."""
    st = _st()
    single = st.sampled_from([
        {"id": {"_starts_with": "@p"}}, {"id": {"_nstarts_with": "@p"}}, {"id": {"_eq": "@p0"}},
        {"organization": {"_eq": "o1"}}, {"organization": {"_neq": "o1"}}, {"project": {"_eq": "p2"}},
        {"project": {"_in": ["p1", ""]}}, {"data": {"_eq": 1}}, {"data": {"_gt": 1}}, {"data": {"_lte": 1}},
        {"data": {"_null": True}}, {"data": {"_nnull": True}}, {"data": {"_eq": "x"}}])
    group = st.builds(lambda key, items: {key: items}, st.sampled_from(["_and", "_or"]),
                      st.lists(single, min_size=1, max_size=2))
    return _weighted((4, single), (1, group))


@functools.lru_cache(maxsize=None)
def _entry_rules(space: str) -> Any:
    """A role's rules on an entry space: mostly a read rule and a write
    rule, each with a filter now and then."""
    st = _st()
    allowed = st.sampled_from([True] * 8 + [False])
    filters = _weighted((3, st.none()), (2, entry_filter()))
    fields = st.sampled_from([None, None, None, ["data"], ["other"]])

    def rule(action: Any, f: Any, n: Any, a: bool) -> dict[str, Any]:
        return {"collection": space, "action": action, **({} if f is None else {"filter": f}),
                **({} if n is None else {"fields": n}), **({} if a else {"allowed": False})}

    read = st.builds(rule, st.just("read"), filters, st.none(), allowed)
    write = st.builds(rule, st.sampled_from([["create", "update", "delete"], ["create", "update"], "delete"]),
                      filters, fields, allowed)
    everything = st.builds(rule, st.just("*"), filters, fields, allowed)
    return _weighted((6, st.tuples(read, write).map(list)), (2, everything.map(lambda r: [r])),
                     (1, read.map(lambda r: [r])), (1, st.just([])))


@functools.lru_cache(maxsize=None)
def _collection_rules(collection: str) -> Any:
    st = _st()
    names = st.lists(st.sampled_from([*FIELDS, "seq", "createdAt"]), max_size=3, unique=True)
    mine = st.sampled_from([{"owner": {"_eq": "$CURRENT_USER"}}, {"owner": {"_neq": "$CURRENT_USER"}}])
    filters = _weighted((2, mine), (2, filter_strategy()), (1, st.none()))
    fields = _weighted((2, names), (1, st.just("*")), (1, st.none()))
    read = st.builds(lambda f, n, a: {"collection": collection, "action": "read", **({} if f is None else {"filter": f}),
                                      **({} if n is None else {"fields": n}), **({} if a else {"allowed": False})},
                     filters, fields, st.sampled_from([True] * 6 + [False]))
    # Writes are allowed outright (or not at all): the kit is about what reaches whom.
    write = {"collection": collection, "action": ["create", "update", "delete"]}
    return st.builds(lambda r, w: ([r] if r else []) + ([dict(write)] if w else []), read | st.none(),
                     st.sampled_from([True] * 5 + [False]))


@functools.lru_cache(maxsize=None)
def rules_strategy() -> Any:
    st = _st()
    role_rules = st.builds(lambda kv, lc, a, b: _one_rule_each(kv + lc + a + b), _entry_rules("kvStore"),
                           _entry_rules("liveConfig"), _collection_rules("a"), _collection_rules("b"))
    role = _weighted((9, role_rules), (1, st.just("admin")))
    roles = st.fixed_dictionaries({"r1": role, "r2": role},
                                  optional={name: role for name in ("public", "authenticated", "r3")})
    drops = st.sampled_from([[]] * 8 + [["r3"]])
    return st.builds(lambda r, d: tidy({"do": "rules", "roles": r, **({"drop": d} if d else {})}), roles, drops)


def _resource() -> Any:
    st = _st()
    return st.one_of(
        st.fixed_dictionaries({"type": st.sampled_from(["kvStore", "kvStore", "liveConfig"]),
                               "id": st.sampled_from([KEYS[0], KEYS[0], *KEYS])}),
        st.fixed_dictionaries({"type": st.just("collection"), "id": st.sampled_from(["a", "a", "b", "users"])}),
        st.fixed_dictionaries({"type": st.just("document"), "id": st.integers(0, DOCS - 1)}))


@functools.lru_cache(maxsize=None)
def step_strategy() -> Any:
    st = _st()
    users = st.sampled_from([0, 0, 1, 1, 2, None, ADMIN])
    scopes = st.sampled_from([0, 1, 1, 1, 2, 2, 3])
    keys = st.sampled_from([KEYS[0], KEYS[0], KEYS[0], *KEYS])
    conns = st.integers(0, CONNS - 1)
    values = st.sampled_from(VALUES)

    def step(do: str, **fields: Any) -> Any:
        return st.fixed_dictionaries({"do": st.just(do), **fields}).map(tidy)

    def sub(do: str) -> Any:
        return st.builds(lambda c, r: tidy({"do": do, "conn": c, **r}), conns, _resource())

    weighted = [
        (6, step("put", space=st.sampled_from(["kv", "kv", "lc"]), user=users, scope=scopes, key=keys, value=values)),
        (2, step("get", space=st.sampled_from(["kv", "lc"]), user=users, scope=scopes, key=keys)),
        (3, step("del", user=users, scope=scopes, key=keys)),
        (1, step("list", user=users, scope=scopes, prefix=st.sampled_from(["", "p", "q"]),
                 limit=st.sampled_from([1, 2, 100]))),
        (1, step("open", conn=conns, user=users, scope=scopes, via=st.sampled_from(["encoded", "encoded", "real"]))),
        (4, sub("sub")),
        (1, sub("unsub")),
        (4, step("create", user=users, coll=st.sampled_from(["a", "a", "b"]), data=_data())),
        (2, step("update", user=users, item=st.integers(0, 5), data=_changes())),
        (1, step("delete", user=users, item=st.integers(0, 5))),
        (2, step("doc", doc=st.integers(0, DOCS - 1), content=st.sampled_from([{"v": 1}, {"v": 2}, [1], {}]))),
        (1, rules_strategy()),
        (1, step("role", user=st.integers(0, USERS - 1),
                 role=st.sampled_from(["r1", "r2", "r3", "authenticated", "admin"]))),
        (1, step("close", conn=conns)),
    ]
    return _weighted(*weighted)


def sequence_strategy(steps: int = 25) -> Any:
    """Sequences of at most ``steps`` steps, most of them starting with
    rules, roles, and websockets of several users and scopes subscribed."""
    st = _st()

    def world(rules: Any, roles: list[str], sockets: list[tuple[Any, int, str]], subs: list[dict[str, Any]],
              puts: list[tuple[int, Any]]) -> list[Any]:
        head: list[dict[str, Any]] = [tidy({"do": "put", "space": "kv", "user": ADMIN, "scope": scope, "key": "p0",
                                            "value": value}) for scope, value in puts]
        head += [rules] if rules else []
        head += [{"do": "role", "user": user, "role": role} for user, role in enumerate(roles) if role != "authenticated"]
        for k, (user, scope, key) in enumerate(sockets):
            head.append(tidy({"do": "open", "conn": k, "user": user, "scope": scope}))
            head.append(tidy({"do": "sub", "conn": k, "type": "kvStore", "id": key}))
        for k, resource in enumerate(subs[:len(sockets)]):
            head.append(tidy({"do": "sub", "conn": k, **resource}))
        return head

    roles = st.lists(st.sampled_from(["r1", "r1", "r2", "r3", "authenticated"]), min_size=USERS, max_size=USERS)
    sockets = st.lists(st.tuples(st.sampled_from([0, 1, 2, None, ADMIN]), st.sampled_from([1, 1, 2, 0, 3]),
                                 st.sampled_from(["p0", "p0", "p0", "q0"])), min_size=2, max_size=CONNS)
    world_of = st.builds(world, _weighted((3, rules_strategy()), (1, st.none())), roles, sockets,
                         st.lists(_weighted((2, st.just({"type": "collection", "id": "a"})), (3, _resource())),
                                  min_size=CONNS, max_size=CONNS),
                         st.lists(st.tuples(st.sampled_from([1, 1, 2]), st.sampled_from(VALUES)), max_size=2))
    # Now and then a delete and a write of the same entry, one after the
    # other: the deleted entry's subscribers must hear the write.
    again = st.builds(lambda user, scope, key, value: [
        tidy({"do": "del", "user": user, "scope": scope, "key": key}),
        tidy({"do": "put", "space": "kv", "user": user, "scope": scope, "key": key, "value": value})],
        st.sampled_from([0, 1, ADMIN]), st.sampled_from([1, 1, 2]), st.just(KEYS[0]), st.sampled_from(VALUES))
    one = _weighted((12, step_strategy().map(lambda s: [s])), (1, again))
    return world_and_steps(world_of, one, steps, parts=True)


def check_resources_target(target: ResourcesTarget, *, examples: int = 50, steps: int = 25, seed: int | None = None,
                           token: str = "t0", timeout: float = 2.0, quiet: float = 0.0, minimize_failure: bool = True,
                           admin: tuple[str, str] | None = None, admin_token: str | None = None,
                           minimize_budget: int = 300) -> ResourcesReport:
    """Run ``examples`` generated sequences against ``target`` and report
    the first difference, cut down to a short script (arguments as
    ``check_directus_target``'s). The
    stored rules and roles are put back."""
    run = ResourcesRun(target, token=token, timeout=timeout, quiet=quiet, admin=admin, admin_token=admin_token)
    return check_sequences(run, sequence_strategy(steps), ResourcesMismatch, ResourcesReport(0), examples=examples,
                           seed=seed, minimize_failure=minimize_failure, simpler=_simpler, budget=minimize_budget)


def minimize(run: ResourcesRun, failure: ResourcesMismatch, *, budget: int = 300) -> ResourcesMismatch:
    """The shortest script found that still fails at its last step (as the
    Directus kit's ``minimize``)."""
    return sequences.minimize(run, failure, ResourcesMismatch, _simpler, budget=budget)


def _simpler(step: dict[str, Any]) -> list[dict[str, Any]]:
    options = []
    for key in ("drop", "via"):
        if key in step:
            options.append({k: v for k, v in step.items() if k != key})
    for key in ("data", "roles"):
        if isinstance(step.get(key), (dict, list)):
            options.extend({**step, key: smaller} for smaller in _smaller(step[key], key)[:60])
    return [tidy(option) for option in options]
