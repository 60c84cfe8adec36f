"""How a change reaches Directus subscribers: re-read per subscriber, encoded per group.

Directus re-reads every event with each subscriber's permissions and its
subscription's query (directus.md 1b and 2; issue 11 part 2), and so does
Satchel - without reading anything: the ``Change`` carries the record, and
``permissions.delivery_groups`` decides, from the rules in force, what each
subscriber may see of it. A subscriber whose read rule or query filter does
not admit the record receives nothing; the others receive only the fields
they may read (and that their query selects).

Encoded once per distinct frame. Subscribers are first grouped by what
decides their rendering - role, query, and the user only where the rule or
the query depends on it (``$CURRENT_USER``) - and ``delivery_groups``
renders each group once. A frame also carries its subscription's ``uid``
and format, so the connections of a rendering are then split by (format,
uid, item-mode), and every distinct frame is encoded once and delivered to
all of its connections in one ``Deliver`` (``Audience(connections=...)``).
``@directus/sdk``'s first subscription on every connection is uid ``"1"``:
a thousand SDK subscribers in four roles are about four frames.

The grouping is kept between changes. It depends on the subscribers alone
(who they are, what they subscribed to), never on the item, so it is made
once per collection and event (``_Plan``) and kept in the context's memo
while the registry's version (who listens to the collection), the states'
``generation()`` (phase, user, role, subscriptions of any connection) and
the rules are the ones it was made from. A change then costs per decision
group - a rule check and a rendering per (role, query) - not per subscriber.
Subscriptions to one ``item`` are in the plan of that item only: a change
of an item someone subscribed to alone is grouped afresh, with them.

What each format receives (``frames``):

- core: ``{"type":"subscription","event":"create"|"update","data":[item]}``,
  ``"delete"`` with ``data: [key]``; with ``item`` the object or the key.
- extension, latest: ``SUBSCRIPTION`` frames, ``payload`` the item (create),
  ``[item]`` (update) or ``[key]`` (delete).
- extension v1: ``{"action","payload","key"|"keys","collection"}``. v1 sent
  every event unfiltered to every subscriber; Satchel applies the read
  rule (and redaction) to v1 subscribers as well. Its update ``payload``
  was the fields the write changed; Satchel sends the item as the
  subscriber may read it (a ``Change`` carries the record after the write).

Deletes carry only the key. Directus sends them to every subscriber of the
collection; Satchel sends a delete to a subscriber whose read rule admitted
the item as it was (the key of an item one may not read is not shown), and
ignores the query's filter there (an item that left a subscriber's filter
before it was deleted is still deleted). A connection with two
subscriptions whose frames would be identical receives the frame once.
"""

from __future__ import annotations

from typing import Any, Hashable, Sequence

from ...changes import Change
from ...channels import Audience, Deliver
from ...mounts import RenderContext
from ...permissions import Accountability, Subscriber, delivery_groups
from ...query import Query, uses_variable
from ..items import to_item
from .frames import CORE, core_event, extension_event
from .state import CLOSED, generation
from .subscriptions import Subscription, collection_channel

__all__ = ["ACTION_OF_KIND", "render"]

#: Both protocols' event names for the shared change kinds.
ACTION_OF_KIND = {"create": "create", "patch": "update", "overwrite": "update", "delete": "delete"}


def _frame(sub: Subscription, action: str, collection: str, key: str, item: dict[str, Any] | None) -> bytes:
    if sub.format == CORE:
        if action == "delete":
            data: Any = key if sub.item is not None else [key]
        else:
            data = item if sub.item is not None else [item]
        return core_event(action, data, sub.uid)
    if action == "delete":
        payload: Any = [key]
    elif action == "update" and sub.format != "extension-v1":
        payload = [item]
    else:
        payload = item
    return extension_event(sub.format, action, collection, key, payload, sub.uid)


class _Decision:
    """Subscriptions that decide alike (one role, one query; one user where
    the rule or the query depends on it) and, by frame key, a subscription
    of each wording and the connections that receive it."""

    __slots__ = ("who", "query", "frames", "users")

    def __init__(self, who: Accountability, query: Query | None, dependent: bool) -> None:
        self.who = who
        self.query = query
        self.frames: dict[bytes, list[Any]] = {}
        #: per user, where the decision depends on who the user is
        self.users: dict[str | None, _Decision] | None = {} if dependent else None


def _dependent(rules: Any, who: Accountability, collection: str, query: Query | None) -> bool:
    rule = rules.rule(who, collection, "read")
    if rule is not None and rule.per_user:
        return True
    return query is not None and (uses_variable(query.filter, "CURRENT_USER")
                                  or uses_variable(query.filter, "CURRENT_USER."))


class _Plan:
    """How one collection's subscribers are grouped for one action (create,
    update or delete): the decisions to make, as ``Subscriber``s for
    ``delivery_groups``, each with its frames' connections. It depends only
    on the subscribers - who they are and what they asked - never on the
    item, so it is kept while nothing it was made from changes (``stamp``)
    and a change then costs per decision, not per subscriber."""

    __slots__ = ("stamp", "decisions", "subscribers", "item_keys")

    def __init__(self, stamp: Any, decisions: list[_Decision], item_keys: frozenset[str]) -> None:
        self.stamp = stamp
        self.decisions = decisions
        self.subscribers = [Subscriber(n, decision.who, decision.query) for n, decision in enumerate(decisions)]
        #: items that some subscription asks for alone (``item``): a change
        #: of one of them is grouped afresh, with those subscriptions
        self.item_keys = item_keys


#: Plans kept per context (collections x actions); the oldest goes first.
PLANS_KEPT = 256


def _plan(recipients: list[tuple[str, Any]], rules: Any, collection: str, action: str,
          key: str | None, stamp: Any) -> _Plan:
    """Group the subscriptions of ``collection`` that an ``action`` event
    concerns; those that ask for one item only if it is ``key``."""
    deleted = action == "delete"
    # role -> query key -> _Decision: a thousand subscribers cost a few
    # dictionary lookups each (their keys are bytes, whose hashes are cached).
    table: dict[str, dict[bytes, _Decision]] = {}
    decisions: list[_Decision] = []
    item_keys: set[str] = set()
    for connection, state in recipients:
        subs = state.by_collection.get(collection)
        if subs is None or state.phase == CLOSED:
            continue
        who: Accountability = state.who
        role = who.effective_role
        by_query = table.get(role)
        if by_query is None:
            by_query = table[role] = {}
        for sub in subs:
            if sub.selective:
                if sub.event is not None and sub.event != action:
                    continue
                if sub.item is not None:
                    item_keys.add(sub.item)
                    if sub.item != key:
                        continue
            # A delete shows only the key: the read rule decides, the query does not.
            query_key = b"" if deleted else sub.query_key
            decision = by_query.get(query_key)
            if decision is None:
                query = None if deleted else sub.query
                decision = by_query[query_key] = _Decision(who, query, _dependent(rules, who, collection, query))
                if decision.users is None:
                    decisions.append(decision)
            if decision.users is not None:
                own = decision.users.get(who.user)
                if own is None:
                    own = decision.users[who.user] = _Decision(who, decision.query, False)
                    decisions.append(own)
                decision = own
            bucket = decision.frames.get(sub.frame_key)
            if bucket is None:
                decision.frames[sub.frame_key] = [sub, [connection]]
            else:
                bucket[1].append(connection)
    for decision in decisions:
        for bucket in decision.frames.values():
            bucket[1] = tuple(bucket[1])
    return _Plan(stamp, decisions, frozenset(item_keys))


def render(change: Change, context: RenderContext, protocol: str) -> Sequence[Deliver]:
    """The deliveries ``change`` makes to the mount's Directus subscribers
    (see the module docstring); ``protocol`` is the mount's name."""
    collection = change.collection
    record = change.record
    key = record.get("_id")
    if not isinstance(key, str):
        return ()
    kind = change.kind
    action = ACTION_OF_KIND[kind]
    deleted = action == "delete"
    rules = context.rules

    # The grouping is kept in the context's memo while the registry (who
    # listens to the collection), every connection's state (generation())
    # and the rules are the ones it was made from.
    memo = getattr(context, "memo", None)
    plan: _Plan | None = None
    if memo is not None:
        stamp = (context.version, generation(), rules)
        plan = memo.get((collection, action))
        if plan is not None and plan.stamp != stamp:
            plan = None
    if plan is None or key in plan.item_keys:
        recipients = context.recipients(Audience(channel=collection_channel(collection)))
        if not recipients:
            return ()
        fresh = _plan(recipients, rules, collection, action, key, None)
        if memo is not None and plan is None:
            kept = fresh if not fresh.item_keys or key not in fresh.item_keys else _plan(
                recipients, rules, collection, action, None, None)
            kept.stamp = stamp
            if len(memo) >= PLANS_KEPT:
                del memo[next(iter(memo))]
            memo[(collection, action)] = kept
        plan = fresh
    decisions = plan.decisions
    if not decisions:
        return ()

    groups = delivery_groups(rules, collection, record, plan.subscribers, now_ms=context.now_ms())
    audiences: dict[bytes, list[tuple[str, ...]]] = {}
    encoded: dict[Hashable, bytes] = {}
    for n, group in enumerate(groups):
        item = None if deleted else to_item(group.record)
        for member in group.members:
            for frame_key, (sub, connections) in decisions[member].frames.items():  # type: ignore[index]
                # A delete's frame does not depend on the rendering: shared by every group.
                cache_key = frame_key if deleted else (n, frame_key)
                frame = encoded.get(cache_key)
                if frame is None:
                    frame = encoded[cache_key] = _frame(sub, action, collection, key, item)
                audiences.setdefault(frame, []).append(connections)
    return [Deliver(protocol, frame, Audience(connections=parts[0] if len(parts) == 1 else sum(parts, ())))
            for frame, parts in audiences.items()]
