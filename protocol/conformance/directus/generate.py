"""Generating Directus sequences with Hypothesis, checking a target, and
cutting a failure down to a short script.

``check_directus_target`` draws ``examples`` sequences: most begin with a
random-but-valid rule set (roles ``public``, ``authenticated``, ``r1``-``r3``
with filters in the Directus filter syntax and field lists), roles for the
users and websockets of all three formats subscribed to the collections -
the world every later step needs - then up to ``steps`` steps of every
kind, REST writes and reads most of all. Each runs on fresh collections
and connections (``DirectusRun``); the first difference is cut down
(``minimize``) by deleting runs of steps, then simplifying what is inside
steps, while the shorter script still fails at its last step.
"""

from __future__ import annotations

import functools
from typing import Any

from .. import sequences
from ..sequences import SequenceReport, check_sequences, weighted as _weighted, world_and_steps
from .runner import ADMIN, CONNS, USERS, DirectusMismatch, DirectusRun, DirectusTarget, tidy

__all__ = ["DirectusReport", "check_directus_target", "minimize", "sequence_strategy", "step_strategy",
           "filter_strategy", "rules_strategy", "query_strategy"]

FIELDS = ("owner", "n", "s", "f", "t", "grp")
_TEXTS = ["a", "ab", "B", "", "b", "é", "É", "Éa"]
_USERS = [f"@u{n}" for n in range(USERS + 1)]


class DirectusReport(SequenceReport[DirectusMismatch]):
    """The outcome of ``check_directus_target``: ``failure`` (None: the
    target conformed) is the shortest failing script found, ``found`` the
    failure as first seen."""


def _st() -> Any:
    from hypothesis import strategies as st

    return st


@functools.lru_cache(maxsize=None)
def filter_strategy() -> Any:
    """Directus filters on the kit's fields: every common operator, the
    shorthand, ``$CURRENT_USER``, ``_and`` / ``_or``."""
    st = _st()
    people = st.sampled_from(["$CURRENT_USER", "$CURRENT_USER", *_USERS])
    numbers = st.integers(-1, 3) | st.sampled_from([1.5, 0.5])
    texts = st.sampled_from(_TEXTS)
    flag = st.booleans()

    def on(name: str, ops: Any) -> Any:
        return ops.map(lambda op: {name: op})

    owner = on("owner", st.one_of(
        st.builds(lambda o, v: {o: v}, st.sampled_from(["_eq", "_neq"]), people),
        st.builds(lambda o, v: {o: v}, st.sampled_from(["_in", "_nin"]), st.lists(st.sampled_from(_USERS), max_size=2)),
        st.builds(lambda o, v: {o: v}, st.sampled_from(["_null", "_nnull"]), flag)))
    n = on("n", st.one_of(
        st.builds(lambda o, v: {o: v}, st.sampled_from(["_eq", "_neq", "_lt", "_lte", "_gt", "_gte"]), numbers),
        st.builds(lambda o, v: {o: v}, st.sampled_from(["_in", "_nin"]), st.lists(numbers, max_size=2)),
        st.builds(lambda o, a, b: {o: [min(a, b), max(a, b)]}, st.sampled_from(["_between", "_nbetween"]), numbers,
                  numbers),
        st.builds(lambda o, v: {o: v}, st.sampled_from(["_null", "_nnull"]), flag)))
    s = on("s", st.builds(lambda o, v: {o: v}, st.sampled_from(
        ["_eq", "_neq", "_contains", "_ncontains", "_icontains", "_nicontains", "_starts_with", "_nstarts_with",
         "_istarts_with", "_ends_with", "_nends_with", "_iends_with", "_lt", "_gte"]), texts)
        | st.builds(lambda o, v: {o: v}, st.sampled_from(["_empty", "_nempty"]), flag))
    f = on("f", st.builds(lambda o, v: {o: v}, st.sampled_from(["_eq", "_neq"]), flag))
    t = on("t", st.builds(lambda o, v: {o: v}, st.sampled_from(["_contains", "_ncontains"]), st.sampled_from(["a", 1]))
           | st.builds(lambda o, v: {o: v}, st.sampled_from(["_empty", "_nempty", "_null"]), flag))
    shorthand = st.one_of(people.map(lambda v: {"owner": v}), numbers.map(lambda v: {"n": v}),
                          flag.map(lambda v: {"f": v}))
    grp = on("grp", st.builds(lambda o, v: {o: v}, st.sampled_from(["_eq", "_neq"]),
                              st.sampled_from(["$CURRENT_ROLE", "$CURRENT_ROLE", "@r1", "authenticated"])))
    single = _weighted((2, owner), (2, n), (2, s), (1, f), (1, t), (1, grp), (1, shorthand))
    both = st.builds(lambda a, b: {**a, **b}, single, single)
    group = st.builds(lambda key, items: {key: items}, st.sampled_from(["_and", "_or"]),
                      st.lists(single, min_size=0, max_size=3))
    return _weighted((3, single), (1, both), (1, group))


@functools.lru_cache(maxsize=None)
def query_strategy(*, page: bool = True) -> Any:
    """A Directus query: filter, sort, limit, offset, fields (``page``: sort
    and page keys too)."""
    st = _st()
    fields = st.lists(st.sampled_from(["id", "n", "s", "owner", "f", "t", "createdAt", "*"]), min_size=1, max_size=3,
                      unique=True)
    meta = st.sampled_from([["total_count"], ["filter_count"], ["*"], ["filter_count", "total_count"]])
    optional: dict[str, Any] = {"filter": filter_strategy(), "fields": fields, "meta": meta}
    if page:
        optional.update({"sort": st.lists(st.sampled_from(["n", "-n", "s", "-s", "f", "-f", "t"]), min_size=1, max_size=2,
                                          unique=True),
                         "limit": st.sampled_from([1, 2, 3, -1]), "offset": st.integers(0, 2),
                         "page": st.integers(1, 3)})
    return st.fixed_dictionaries({}, optional=optional)


@functools.lru_cache(maxsize=None)
def _rule(collection: str, action: str) -> Any:
    st = _st()
    names = st.lists(st.sampled_from([*FIELDS, "createdAt"]), max_size=3, unique=True)
    # Filters and field lists in most rules: they are what tells items and fields
    # apart - on the owner most often, which is what tells users apart.
    mine = st.sampled_from([{"owner": {"_eq": "$CURRENT_USER"}}, {"owner": "$CURRENT_USER"},
                            {"owner": {"_neq": "$CURRENT_USER"}}, {"grp": {"_eq": "$CURRENT_ROLE"}}])
    mine_or = st.builds(lambda a, b: {"_or": [a, b]}, mine, filter_strategy())
    filters = _weighted((1, mine), (1, mine_or), (2, filter_strategy()), (1, st.none()))
    fields = _weighted((2, names), (1, st.just("*")), (1, st.none()))
    spec = st.fixed_dictionaries({"collection": st.just(collection), "action": st.just(action)},
                                 optional={"allowed": st.sampled_from([True, True, True, True, False])})
    return st.builds(lambda r, f, n: {**r, **({} if f is None else {"filter": f}), **({} if n is None else {"fields": n})},
                     spec, filters, fields)


def _one_rule_each(rules: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``rules`` without those that would be a role's second rule for a
    collection and action (a rule file may not have two); a rule's action
    is one, a list of them, or ``*``."""
    from .model import ACTIONS

    kept, taken = [], set()
    for rule in rules:
        action = rule["action"]
        actions = ACTIONS if action == "*" else tuple(action) if isinstance(action, list) else (action,)
        if any((rule["collection"], a) in taken for a in actions):
            continue
        taken.update((rule["collection"], a) for a in actions)
        kept.append(rule)
    return kept


@functools.lru_cache(maxsize=None)
def rules_strategy() -> Any:
    """A ``rules`` step: random-but-valid rules for the kit's roles."""
    st = _st()
    keys = st.tuples(st.sampled_from(["a", "a", "b", "*"]),
                     st.sampled_from(["read", "read", "create", "update", "update", "delete", "*", "*"]))
    rule = keys.flatmap(lambda key: _rule(*key))
    role = _weighted((9, st.lists(rule, min_size=1, max_size=6).map(_one_rule_each)), (1, st.just("admin")))
    # The kit's own roles mostly have rules: they are what tells users apart.
    roles = st.fixed_dictionaries({"r1": role, "r2": role},
                                  optional={name: role for name in ("public", "authenticated", "r3")})
    drops = st.sampled_from([[]] * 8 + [["r3"], ["r2", "r3"]])
    return st.builds(lambda r, d: tidy({"do": "rules", "roles": r, **({"drop": d} if d else {})}), roles, drops)


def _values() -> dict[str, Any]:
    """Values of the kit's fields - of mixed JSON types now and then (a
    string ``n``, a number ``f``), which no operator may confuse."""
    st = _st()
    return {"owner": st.sampled_from(_USERS),
            "n": st.integers(-1, 3) | st.sampled_from([1.5, 0.5, "1", True]),
            "s": st.sampled_from(_TEXTS),
            "f": st.booleans() | st.just(1),
            "t": st.sampled_from([[], ["a"], ["b", "a"], [1], ["A"]]),
            "grp": st.sampled_from(["@r1", "@r2", "authenticated", "public"])}


@functools.lru_cache(maxsize=None)
def _data() -> Any:
    st = _st()
    values = _values()
    return st.fixed_dictionaries({"owner": values["owner"]}, optional={k: v for k, v in values.items() if k != "owner"}) \
        | st.fixed_dictionaries({}, optional=values)


@functools.lru_cache(maxsize=None)
def _changes() -> Any:
    st = _st()
    values = {name: value | st.none() if name in ("n", "s", "t") else value for name, value in _values().items()}
    return st.fixed_dictionaries({}, optional=values)


@functools.lru_cache(maxsize=None)
def step_strategy() -> Any:
    """A Hypothesis strategy for one step."""
    st = _st()
    users = st.sampled_from([0, 0, 1, 1, 2, 2, None, ADMIN])
    colls = st.sampled_from(["a", "a", "a", "a", "a", "b", "b", "users", "_kit", "directus_users"])
    items = st.sampled_from([0, 0, 1, 1, 2, 3, 4, 5, 7, -1])
    item_colls = st.sampled_from([None] * 7 + ["a", "b"])
    conns = st.integers(0, CONNS - 1)
    uids = st.sampled_from(["1", "1", "2", None, 1])  # a number: core answers String(uid), the extension as sent

    def step(do: str, **fields: Any) -> Any:
        return st.fixed_dictionaries({"do": st.just(do), **fields}).map(tidy)

    def optional_step(do: str, required: dict[str, Any], optional: dict[str, Any]) -> Any:
        return st.fixed_dictionaries({"do": st.just(do), **required}, optional=optional).map(tidy)

    def item_step(do: str, **fields: Any) -> Any:
        # Mostly on the item's own collection (no "coll"), sometimes on another.
        return st.builds(lambda s, c: tidy({**s, "coll": c} if c else s), step(do, **fields), item_colls)

    weighted = [
        (6, step("create", user=users, coll=colls, data=_data())),
        (1, step("create", user=users, coll=colls, data=st.lists(_data(), min_size=2, max_size=2))),
        (2, step("bp-create", user=st.integers(0, USERS - 1), coll=st.sampled_from(["a", "a", "b"]), data=_data())),
        (5, item_step("update", user=users, item=items, data=_changes())),
        (1, item_step("update", user=users, items=st.lists(items, min_size=2, max_size=2), data=_changes())),
        (2, item_step("delete", user=users, item=items)),
        (1, item_step("delete", user=users, items=st.lists(items, min_size=2, max_size=2))),
        (1, optional_step("update-query", {"user": users, "coll": colls, "data": _changes()},
                          {"query": query_strategy()})),
        (1, optional_step("delete-query", {"user": users, "coll": colls}, {"query": query_strategy()})),
        (5, optional_step("get", {"user": users, "coll": colls}, {"query": query_strategy()})),
        (3, optional_step("get-one", {"user": users, "item": items}, {"query": query_strategy(page=False)})),
        (1, rules_strategy()),
        (2, step("role", user=st.integers(0, USERS - 1),
                 role=st.sampled_from(["r1", "r2", "r3", "authenticated", "r1", "r2", "admin", "public", "ghost"]))),
        (1, step("open", conn=conns, user=users.filter(lambda u: u is not None),
                 proto=st.sampled_from(["core", "core", "extension", "extension", "v1"]))),
        (3, optional_step("subscribe", {"conn": conns, "coll": colls},
                          {"query": query_strategy(page=False), "uid": uids,
                           "event": st.sampled_from(["create", "update", "delete"]), "item": items})),
        (1, optional_step("subscribe", {"conn": conns, "coll": colls, "item": items},
                          {"query": query_strategy(page=False), "uid": uids})),
        (1, optional_step("unsubscribe", {"conn": conns}, {"uid": uids})),
        (1, optional_step("ws-get", {"conn": conns, "coll": colls}, {"query": query_strategy()})),
        (2, step("ws-write", conn=conns, verb=st.just("POST"), coll=colls, data=_data())),
        (1, item_step("ws-write", conn=conns, verb=st.just("PATCH"), item=items, data=_changes())),
        (1, item_step("ws-write", conn=conns, verb=st.just("DELETE"), item=items)),
        (1, step("reauth", conn=conns, user=users.filter(lambda u: u is not None))),
        (1, step("close", conn=conns)),
    ]
    return _weighted(*weighted)


def sequence_strategy(steps: int = 25) -> Any:
    """Sequences of at most ``steps`` steps, most of them starting with
    rules, roles, and websockets subscribed to the collections."""
    st = _st()

    def world(rules: Any, roles: list[str], sockets: list[tuple[int, str, str | None]],
              made: list[dict[str, Any]]) -> list[Any]:
        head: list[dict[str, Any]] = [{"do": "create", "user": ADMIN, "coll": "a", "data": data} for data in made]
        head += [rules] if rules else []
        head += [{"do": "role", "user": user, "role": role} for user, role in enumerate(roles) if role != "authenticated"]
        for k, (user, proto, uid) in enumerate(sockets):
            head.append({"do": "open", "conn": k, "user": user, "proto": proto})
            subscribe: dict[str, Any] = {"do": "subscribe", "conn": k, "coll": "a"}
            if uid is not None:
                subscribe["uid"] = uid
            head.append(tidy(subscribe))
        return head

    # Users often share a role: a rule on $CURRENT_USER must still tell them apart.
    roles = st.lists(st.sampled_from(["r1", "r1", "r1", "r2", "r3", "authenticated"]), min_size=USERS,
                     max_size=USERS)
    # Mostly one websocket per user (socket k is user k's), so that users compare.
    sockets = st.lists(st.tuples(st.sampled_from([None] * 5 + [0, 1, 2, ADMIN]),
                                 st.sampled_from(["core", "core", "extension", "v1"]),
                                 st.sampled_from(["1", None])), min_size=2, max_size=CONNS).map(
        lambda drawn: [(k % USERS if user is None else user, proto, uid) for k, (user, proto, uid) in enumerate(drawn)])
    world_of = st.builds(world, _weighted((3, rules_strategy()), (1, st.none())), roles,
                         sockets, st.lists(_data(), min_size=1, max_size=3))
    return world_and_steps(world_of, step_strategy(), steps)


def check_directus_target(target: DirectusTarget, *, examples: int = 50, steps: int = 25, seed: int | None = None,
                          token: str = "t0", timeout: float = 2.0, quiet: float = 0.0, minimize_failure: bool = True,
                          admin: tuple[str, str] | None = None, admin_token: str | None = None,
                          minimize_budget: int = 400) -> DirectusReport:
    """Run ``examples`` generated sequences of at most ``steps`` steps against
    ``target`` and report the first difference, cut down to a short script.

    ``seed`` repeats an earlier run's sequences; ``token`` names the run's
    accounts, roles and collections (something random for a shared server);
    ``admin`` / ``admin_token`` an administrator of the server (see
    ``DirectusRun``); ``timeout`` is how long to wait for each expected
    frame and ``quiet`` how long to listen for unexpected ones after each
    sequence; ``minimize_budget`` how many sequences cutting a failure down
    may run. The stored rules and the users' roles are put back at the end.
    """
    run = DirectusRun(target, token=token, timeout=timeout, quiet=quiet, admin=admin, admin_token=admin_token)
    return check_sequences(run, sequence_strategy(steps), DirectusMismatch, DirectusReport(0), examples=examples,
                           seed=seed, minimize_failure=minimize_failure, simpler=_simpler, budget=minimize_budget)


def minimize(run: DirectusRun, failure: DirectusMismatch, *, budget: int = 400) -> DirectusMismatch:
    """The shortest script found that still fails at its last step: runs of
    steps deleted (halves, quarters ... single steps), then each step made
    simpler (keys of its query, data and rules dropped, lists shortened);
    each try is a fresh sequence, at most ``budget`` of them."""
    return sequences.minimize(run, failure, DirectusMismatch, _simpler, budget=budget)


_KEEP = frozenset(("collection", "action"))
_PAIRS = frozenset(("_between", "_nbetween"))
_NON_EMPTY = frozenset(("fields", "sort", "data"))


def _smaller(value: Any, key: str | None = None) -> list[Any]:
    """Valid values one edit simpler than ``value`` (under ``key``): a key
    or an item fewer, or one of its parts simpler."""
    options: list[Any] = []
    if isinstance(value, dict):
        for name in value:
            if name not in _KEEP:
                options.append({k: v for k, v in value.items() if k != name})
        for name, item in value.items():
            options.extend({**value, name: smaller} for smaller in _smaller(item, name))
    elif isinstance(value, list) and key not in _PAIRS:
        if len(value) > 1 or key not in _NON_EMPTY:
            for drop in range(len(value)):
                options.append(value[:drop] + value[drop + 1:])
        for index, item in enumerate(value):
            options.extend(value[:index] + [smaller] + value[index + 1:] for smaller in _smaller(item))
    return options


def _simpler(step: dict[str, Any]) -> list[dict[str, Any]]:
    """Simpler versions of a step: optional keys dropped, its query, data
    and rules made smaller."""
    options = []
    for key in ("query", "uid", "event", "drop"):
        if key in step:
            options.append({k: v for k, v in step.items() if k != key})
    for key in ("query", "data", "roles"):
        if isinstance(step.get(key), (dict, list)):
            options.extend({**step, key: smaller} for smaller in _smaller(step[key], key)[:80])
    return [tidy(option) for option in options]
