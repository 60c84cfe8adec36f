"""The resource websocket at ``/realtime``: upgrade, subscriptions, deliveries.

Upgrade (seed 004). The headers a browser cannot set arrive base58-encoded
in ``Sec-WebSocket-Protocol`` (``headers``); the first offered subprotocol
carries them and is echoed. A token that is not base58 of ``key:value``
lines is refused with 400 and the reason. ``Authorization: Bearer`` is read
from those headers, else from the real ones (or ``?access_token=``): an
access token of ``/auth/login`` or Asnity's signin, or a static token
(``tokens.authenticate``); a token that is not valid is refused with 401; no
token is the public role. ``x-m2-organization`` / ``x-m2-project`` (from the
encoded headers, else the real ones) give the connection's scope.

Subscriptions. ``subscribe`` to a resource the connection may read makes
the subscription (idempotent) and answers with the resource's current value
as an update (entries and documents) or nothing (a collection that has
records); when the resource does not exist the subscription is still made
and the answer is ``{"warning":"resource_not_found"}``; it then hears the
resource's first write. A deleted resource keeps its subscribers.
``unsubscribe`` ends one (silently, also when there was none). At most
``max_subscriptions`` per connection: beyond, ``{"error":"Too many
subscriptions","code":"subscription_limit"}`` and nothing is subscribed.
Who may subscribe to what:

- ``kvStore`` / ``liveConfig``: an entry of the connection's scope; the read
  rule of the space decides (``entries``), at subscribe time and again for
  every update (a filtered rule may hide some entries from some users).
- ``collection``: a record collection by name - the one data model: records
  written over Backpack, Directus or any protocol reach it. The read rule
  of the collection decides per subscriber and per record, and a subscriber
  gets only the fields it may read (``permissions.delivery_groups``): one
  frame per distinct rendering. ``data`` is ``{"action": "create" |
  "update" | "delete", "record": {...}}`` (the record after the write; for
  a delete, as it was); a record of more than ``max_record_bytes`` is sent
  as ``{"action", "record": {"_id"}, "truncated": true}`` - fetch it over
  REST. Collections are not scoped: they are the server's collections.
- ``document``: an inbox document by its read token (seed 001; the token is
  the authorization, no account needed): ``data`` is ``{"revision",
  "content"}``, on every write - a PUT, and every message merged or removed
  over HTTP or UDP.

Invalid input of any kind (not JSON, wrong types, an unknown action or type,
an id that cannot name that type of resource) answers an error and changes
nothing; the connection stays open and its neighbours never notice.

Versions: an entry's is stored (``entries``); a collection's and a
document's come from the mount's ``VersionClock`` as updates are rendered.

Resume (issue 12 part 3, after Centrifugo's recovery). Every update
rendered is kept in the mount's ``History``, subscribed to or not. A
subscribe with ``"since": VERSION`` (the last version the client saw)
answers the updates after it, as they would have been delivered live (the
read rule decides again per update, with the rules in force now), or
nothing when nothing was missed - when the history knows that version, or
it is an entry's stored version (that tells in any server lifetime).
Otherwise ``{"warning": "history_lost"}`` and then what a plain subscribe
answers: an entry's or document's current value, or for a collection
nothing (reload it over REST). A ``since`` that is not a version is an
invalid message. The history is read in the same step as the subscription
is made, so every update is either in the answer or delivered live, never
both; a plain subscribe also sends the updates that landed between its
read and that step.

Tokens expire: when a connection's access token does (its timer, or its
next message after that moment), it receives ``{"error":"Token expired",
"code":"token_expired"}`` and is closed with 1008; static tokens never
expire. Known limit: a token revoked before it expires is not noticed by
an open connection (it is checked at the upgrade).
"""

from __future__ import annotations

import json
from typing import Any, Hashable, Sequence

import msgspec

from ..changes import Change, DocumentChange, EntryChange
from ..channels import Audience, Channel, CloseConnection, Deliver, Follow, Subscribe, Unsubscribe
from ..collections import is_hidden_collection, validate_collection_name
from ..environment import Environment
from ..errors import RemoteProtocolError
from ..http import HttpRequest, HttpResponse, json_response
from ..inbox.tokens import is_read_token
from ..mounts import NO_CONTEXT, Accepted, RenderContext
from ..operations import Action, Document, Entry, GetDocument, GetEntry
from ..permissions import Accountability, CurrentRules, Forbidden, RuleSet, Subscriber, delivery_groups, read_query
from ..query import Query
from ..tokens import authenticate, bearer_token, presented_token
from .config import COLLECTION, DOCUMENT, ENTRY_SPACES, RESOURCE_TYPES, ResourcesConfig
from .entries import ResourceError, Scope, entry_item, may, scope_of, validate_entry_id
from .frames import INVALID_MESSAGE, MessageError, ResourceRef, decode_message, error_body, error_frame, update_frame, warning_frame
from .headers import InvalidHeaders, offered_subprotocols, subprotocol_headers
from .history import History, Item
from .versions import VersionClock, format_version, parse_version

__all__ = ["PROTOCOL", "Connection", "Stats", "accept", "handle_message", "closed", "deadline_ms", "expired", "render",
           "entry_channel"]

#: The name the resource connections are registered under in the hub.
PROTOCOL = "resources"

#: Backpack's change kinds as the resource protocol names them.
_ACTION = {"create": "create", "patch": "update", "overwrite": "update", "delete": "delete"}

_encode = msgspec.json.Encoder().encode


class Stats:
    """What ``GET /realtime/status`` reports: open connections and
    subscriptions of this mount (this process)."""

    __slots__ = ("connections", "subscriptions")

    def __init__(self) -> None:
        self.connections = 0
        self.subscriptions = 0


class Connection:
    """One resource websocket: who it is, its scope, its subscriptions."""

    __slots__ = ("id", "who", "scope", "subscriptions", "open", "expires_ms")

    def __init__(self, connection: str, who: Accountability, scope: Scope, expires_ms: int | None = None) -> None:
        self.id = connection
        self.who = who
        self.scope = scope
        #: when the connection's access token expires (``None``: never, or no token)
        self.expires_ms = expires_ms
        #: (type, id) -> the channel it is subscribed to
        self.subscriptions: dict[tuple[str, str], Channel] = {}
        self.open = True


def entry_channel(space: str, scope: Scope, entry_id: str) -> Channel:
    """The channel of an entry's subscribers (the scope is part of its name)."""
    return Channel(space, json.dumps([scope.organization, scope.project, entry_id]))


def _refuse(status: int, title: str, code: str, message: str) -> HttpResponse:
    return json_response(status, error_body(title, code, message))


def accept(request: HttpRequest, connection: str, config: ResourcesConfig, stats: Stats,
           env: Environment) -> Action[Accepted | HttpResponse]:
    """Decide an upgrade of ``/realtime`` (the module docstring)."""
    offered = offered_subprotocols(request)
    encoded: dict[str, str] = {}
    subprotocol = None
    if offered:
        subprotocol = offered[0]
        try:
            encoded = subprotocol_headers(subprotocol)
        except InvalidHeaders as exc:
            return _refuse(400, "Invalid headers", "invalid_headers", str(exc))
    try:
        scope = scope_of(lambda name: encoded.get(name) or request.header(name), config)
    except ResourceError as exc:
        return _refuse(400, "Invalid headers", "invalid_headers", exc.message)
    who = Accountability()
    authorization = encoded.get("authorization")
    bearer = None
    if authorization is not None:
        token = bearer_token(authorization)
        bearer = (yield from authenticate(token, env)) if token else None
        if bearer is None:
            return _refuse(401, "Unauthorized", "unauthorized", "Invalid, expired or revoked token")
    elif presented_token(request) is not None:
        bearer = yield from authenticate(request, env)
        if bearer is None:
            return _refuse(401, "Unauthorized", "unauthorized", "Invalid, expired or revoked token")
    if bearer is not None:
        who = bearer.accountability
    stats.connections += 1
    state = Connection(connection, who, scope, bearer.expires_ms if bearer is not None else None)
    return Accepted(state, who.user, subprotocol=subprotocol)


def deadline_ms(state: Connection) -> int | None:
    """When the connection's token expires (its timer)."""
    return state.expires_ms if state.open else None


def expired(state: Connection, now_ms: int) -> list[Any]:
    """The events that end a connection whose token has expired (nothing if
    it has not): an error, then a close (1008)."""
    if not state.open or state.expires_ms is None or now_ms < state.expires_ms:
        return []
    state.expires_ms = None
    return [_to(state, error_frame("Token expired", "token_expired",
                                   "the access token expired: reconnect with a fresh one")),
            CloseConnection(PROTOCOL, state.id, 1008, "token expired")]


def closed(state: Connection, stats: Stats) -> list[Any]:
    """Forget a connection (the switchboard drops its subscriptions)."""
    if state.open:
        state.open = False
        stats.connections -= 1
        stats.subscriptions -= len(state.subscriptions)
        state.subscriptions.clear()
    return []


def _to(state: Connection, payload: bytes) -> Deliver:
    return Deliver(PROTOCOL, payload, Audience(connection=state.id))


def _too_many(state: Connection, ref: ResourceRef, config: ResourcesConfig) -> Deliver:
    return _to(state, error_frame("Too many subscriptions", "subscription_limit",
                                  f"a connection may hold at most {config.max_subscriptions} subscriptions", ref))


def _channel(ref: ResourceRef, state: Connection, config: ResourcesConfig) -> Channel:
    """The channel of ``ref``, or ``MessageError`` for an id that cannot
    name a resource of its type."""
    if ref.type in ENTRY_SPACES:
        try:
            return entry_channel(ref.type, state.scope, validate_entry_id(ref.id, config))
        except ResourceError as exc:
            raise MessageError(exc.message) from None
    if ref.type == COLLECTION:
        try:
            name = validate_collection_name(ref.id)
        except RemoteProtocolError as exc:
            raise MessageError(exc.message) from None
        if is_hidden_collection(name):
            raise MessageError(f"'{name[:64]}' is not a collection")
        return Channel(COLLECTION, name)
    if ref.type == DOCUMENT:
        if not is_read_token(ref.id):
            raise MessageError("a document is named by its read token: 32 lowercase hex digits")
        return Channel(DOCUMENT, ref.id)
    raise MessageError(f"resource type is one of {', '.join(RESOURCE_TYPES)}")


def handle_message(state: Connection, message: str | bytes, config: ResourcesConfig, stats: Stats,
                   clock: VersionClock, history: History, env: Environment) -> Action[list[Any]]:
    """Answer one message (the module docstring)."""
    if not state.open:
        return []
    ending = expired(state, env.now_ms())
    if ending:
        return ending
    try:
        decoded = decode_message(message, config.max_message_bytes)
        if decoded.action not in ("subscribe", "unsubscribe"):
            raise MessageError('action is "subscribe" or "unsubscribe"')
        ref = decoded.resource
        channel = _channel(ref, state, config)
        since = None
        if decoded.since is not None:
            if decoded.action != "subscribe":
                raise MessageError("since is a subscribe's")
            since = parse_version(decoded.since)
            if since is None:
                raise MessageError('since is a version as updates carry it: "2026-12-01T12:00:00.123Z"')
    except MessageError as exc:
        return [_to(state, error_frame(INVALID_MESSAGE, "invalid_message", exc.message))]
    key = (ref.type, ref.id)
    if decoded.action == "unsubscribe":
        if state.subscriptions.pop(key, None) is None:
            return []
        stats.subscriptions -= 1
        return [Unsubscribe(PROTOCOL, state.id, channel)]
    if key not in state.subscriptions and len(state.subscriptions) >= config.max_subscriptions:
        return [_too_many(state, ref, config)]
    if key not in state.subscriptions:
        # Before the state is read: every process's later writes reach it.
        yield Follow(PROTOCOL, state.id, (channel,))
    rules: RuleSet = yield CurrentRules()
    try:
        read = yield from _current(ref, state, rules, env)
    except RemoteProtocolError as exc:  # permissions.Forbidden among them
        return [_to(state, error_frame("Forbidden" if exc.status == 403 else "Invalid request",
                                       "forbidden" if exc.status == 403 else "invalid_request", exc.message, ref))]
    # From here to the return nothing yields: the history read below and the
    # Subscribe registered with it are one step, and the switchboard applies
    # the events in one ``deliveries`` - every update rendered before is in
    # the history, every one after reaches the new subscription live.
    if not state.open:
        return []
    events: list[Any] = []
    # Decided again after the reads: another message of this connection may
    # have subscribed meanwhile (actions of one connection may overlap).
    if key not in state.subscriptions:
        if len(state.subscriptions) >= config.max_subscriptions:
            return [_too_many(state, ref, config)]
        state.subscriptions[key] = channel
        stats.subscriptions += 1
        events.append(Subscribe(PROTOCOL, state.id, channel))
    now = env.now_ms()
    for payload in _answer(ref, channel, read, since, state, rules, config, clock, history, now):
        events.append(_to(state, payload))
    return events


def _current(ref: ResourceRef, state: Connection, rules: RuleSet, env: Environment) -> Action[Any]:
    """What a subscribe reads: the stored entry (``None``: none, not even a
    tombstone), the document (or ``None``), or whether the collection holds
    a record ``state`` may read. Raises ``Forbidden`` when ``state`` may
    not read the resource."""
    if ref.type in ENTRY_SPACES:
        if rules.rule(state.who, ref.type, "read") is None:
            raise Forbidden()
        entry: Entry | None = yield GetEntry(ref.type, state.scope.organization, state.scope.project, ref.id)
        return entry
    if ref.type == COLLECTION:
        # Does it hold a record this user may read? (One row, through the store's index.)
        op = read_query(rules, state.who, ref.id, Query(fields=(("_id",),), limit=1), now_ms=env.now_ms())
        found = yield op
        return bool(found.records)
    document: Document | None = yield GetDocument(ref.id)
    return document


def _answer(ref: ResourceRef, channel: Channel, read: Any, since: int | None, state: Connection, rules: RuleSet,
            config: ResourcesConfig, clock: VersionClock, history: History, now: int) -> list[bytes]:
    """What a subscribe answers, from what it read and the history (no I/O:
    the step that registers the subscription).

    With ``since`` the history knows: the updates after it, rendered for
    ``state`` (nothing when nothing was missed). An entry whose stored
    version is ``since`` missed nothing either, in any server lifetime.
    Otherwise - or without ``since`` - a ``history_lost`` warning (only
    with ``since``), then the current state: an entry's or document's value
    as an update, or the not-found warning, followed by any update the
    history holds that is newer than what was read."""
    if since is not None:
        missed = history.after(channel, since)
        if missed is None and ref.type in ENTRY_SPACES and read is not None and read.version == since:
            newest = history.newest(channel)
            if newest is None or newest.version <= since:
                missed = []
                history.mark(channel, since)
        if missed is not None:
            return _replay(ref, missed, state, rules, config, now)
        lost = warning_frame(ref, "updates since that version are no longer known here: reload the resource",
                             "history_lost")
        return [lost] + _state(ref, channel, read, state, rules, config, clock, history, now)
    return _state(ref, channel, read, state, rules, config, clock, history, now)


def _state(ref: ResourceRef, channel: Channel, read: Any, state: Connection, rules: RuleSet,
           config: ResourcesConfig, clock: VersionClock, history: History, now: int) -> list[bytes]:
    """A plain subscribe's answer (``_answer``)."""
    frames: list[bytes] = []
    base: int | None = None
    if ref.type in ENTRY_SPACES:
        entry: Entry | None = read
        if entry is not None:
            base = entry.version
        value = entry.value if entry is not None else None
        if value is not None and may(rules, state.who, ref.type, "read",
                                     lambda: entry_item(state.scope, ref.id, value), now):
            frames.append(update_frame(entry.user_id, ref, msgspec.Raw(value), format_version(base)))  # type: ignore[union-attr,arg-type]
        else:
            frames.append(warning_frame(ref, f"{ref.type} resource doesn't currently exist, "
                                             "subscription was still made successfully"))
            if entry is None:  # never written when read: whatever the history holds came after
                return frames + _replay(ref, history.since_first(channel), state, rules, config, now)
    elif ref.type == COLLECTION:
        if not read:
            frames.append(warning_frame(ref, "collection resource doesn't currently have records, "
                                             "subscription was still made successfully"))
        return frames  # a collection has no state to send: its records are read over REST
    else:
        document: Document | None = read
        if document is None:
            frames.append(warning_frame(ref, "document resource doesn't currently exist, "
                                             "subscription was still made successfully"))
            return frames + _replay(ref, history.since_first(channel), state, rules, config, now)
        # The newest revision known - read, or written since the read - at
        # a version of its own (as a resubscribe always had), which the
        # history then knows: every later update has a greater one.
        revision, content = document.revision, document.content
        newest = history.newest(channel)
        if newest is not None and newest.update[0] > revision:
            revision, content = newest.update[0], newest.update[2]
        version = clock.next(channel, now)
        history.mark(channel, version)
        return frames + [_document_frame(ref, revision, content, version)]
    if base is not None:
        tail = history.after(channel, base)
        if tail is None:
            newest = history.newest(channel)
            tail = [newest] if newest is not None and newest.version > base else []
        if not tail:
            history.mark(channel, base)
        frames += _replay(ref, tail, state, rules, config, now)
    return frames


def _replay(ref: ResourceRef, items: list[Item], state: Connection, rules: RuleSet, config: ResourcesConfig,
            now: int) -> list[bytes]:
    """``items`` as they reach ``state`` live: the read rule decides again
    for each (entries, collections), the rules in force now."""
    frames: list[bytes] = []
    who = state.who
    if ref.type in ENTRY_SPACES:
        for item in items:
            change: EntryChange = item.update
            value = change.value
            filtered = (lambda: entry_item(state.scope, change.id, value)) if value is not None else None
            if may(rules, who, ref.type, "read", filtered, now):
                frames.append(_entry_frame(change, ref))
    elif ref.type == COLLECTION:
        for item in items:
            user_id, action, record = item.update
            groups = delivery_groups(rules, ref.id, record, [Subscriber(0, who)], now_ms=now)
            if groups:
                frames.append(_record_frame(user_id, ref, action, groups[0].record, record["_id"],
                                            format_version(item.version), config))
    else:
        # A document update's frame is built when it was delivered, else now.
        frames = [item.update[1] if item.update[1] is not None
                  else _document_frame(ref, item.update[0], item.update[2], item.version) for item in items]
    return frames


# -- rendering -------------------------------------------------------------------------


def render(change: Change | DocumentChange | EntryChange, context: RenderContext, config: ResourcesConfig,
           clock: VersionClock, history: History) -> Sequence[Deliver]:
    """The deliveries a change makes to the resource subscribers. Every
    change of a resource is kept in ``history`` first, subscribed to or not:
    its subscribers may be away, to resume later."""
    if context is NO_CONTEXT:
        return ()  # a mount table used alone: no server, no clock, nobody to deliver to or resume
    kind = type(change)
    if kind is EntryChange:
        _record_entry(change, history)  # type: ignore[arg-type]
        return _render_entry(change, context)  # type: ignore[arg-type]
    if kind is Change:
        return _render_record(change, context, config, clock, history)  # type: ignore[arg-type]
    if kind is DocumentChange:
        return _render_document(change, context, clock, history)  # type: ignore[arg-type]
    return ()


def _entry_frame(change: EntryChange, ref: ResourceRef) -> bytes:
    deleted = change.kind == "delete"
    data = None if deleted else msgspec.Raw(change.value)  # type: ignore[arg-type]
    return update_frame(change.user_id, ref, data, format_version(change.version), deleted=deleted)


def _record_frame(user_id: str | None, ref: ResourceRef, action: str, shown_record: dict[str, Any], key: str,
                  version: str, config: ResourcesConfig) -> bytes:
    shown = _encode(shown_record)
    if len(shown) > config.max_record_bytes:
        data: Any = {"action": action, "record": {"_id": key}, "truncated": True}
    else:
        data = {"action": action, "record": msgspec.Raw(shown)}
    return update_frame(user_id, ref, data, version)


def _document_frame(ref: ResourceRef, revision: int, content: bytes, version: int) -> bytes:
    return update_frame(None, ref, {"revision": revision, "content": msgspec.Raw(content)}, format_version(version))


def _record_entry(change: EntryChange, history: History) -> None:
    channel = entry_channel(change.space, Scope(change.organization, change.project), change.id)
    history.record(channel, Item(change.version, change, len(change.value or b"") + len(change.id)))


def _render_entry(change: EntryChange, context: RenderContext) -> Sequence[Deliver]:
    scope = Scope(change.organization, change.project)
    channel = entry_channel(change.space, scope, change.id)
    recipients = context.recipients(Audience(channel=channel))
    if not recipients:
        return ()
    rules = context.rules
    now = context.now_ms()
    item_cache: list[dict[str, Any]] = []

    def item() -> dict[str, Any]:
        # What the read rule's filter sees: the entry as written (as it was, for a delete).
        if not item_cache:
            value = change.value if change.value is not None else change.previous
            item_cache.append(entry_item(scope, change.id, value))
        return item_cache[0]

    # One decision per role, or per (role, user) where the rule depends on the user.
    by_role: dict[str, bool | None] = {}
    by_user: dict[Hashable, bool] = {}
    allowed: list[str] = []
    # A delete is judged on the entry as it was: who could not read it hears nothing.
    filtered_item = item if change.value is not None or change.previous is not None else None
    for connection, state in recipients:
        who = state.who
        role = who.effective_role
        if role not in by_role:
            rule = rules.rule(who, change.space, "read")
            by_role[role] = None if rule is not None and rule.per_user else may(rules, who, change.space, "read",
                                                                                  filtered_item, now)
        verdict = by_role[role]
        if verdict is None:
            key = (role, who.user)
            verdict = by_user.get(key)
            if verdict is None:
                verdict = by_user[key] = may(rules, who, change.space, "read", filtered_item, now)
        if verdict:
            allowed.append(connection)
    if not allowed:
        return ()
    payload = _entry_frame(change, ResourceRef(change.space, change.id))
    audience = Audience(channel=channel) if len(allowed) == len(recipients) else Audience(connections=tuple(allowed))
    return (Deliver(PROTOCOL, payload, audience),)


def _render_record(change: Change, context: RenderContext, config: ResourcesConfig,
                   clock: VersionClock, history: History) -> Sequence[Deliver]:
    collection = change.collection
    record = change.record
    key = record.get("_id")
    if not isinstance(key, str) or is_hidden_collection(collection):
        return ()
    channel = Channel(COLLECTION, collection)
    now = context.now_ms()
    version_ms = clock.next(channel, now)
    action = _ACTION[change.kind]
    history.record(channel, Item(version_ms, (change.user_id, action, record), len(_encode(record))))
    recipients = context.recipients(Audience(channel=channel))
    if not recipients:
        return ()
    # Subscribers who are the same accountability decide alike: one Subscriber each.
    by_who: dict[Accountability, list[str]] = {}
    for connection, state in recipients:
        by_who.setdefault(state.who, []).append(connection)
    subscribers = [Subscriber(n, who) for n, who in enumerate(by_who)]
    connections_of = list(by_who.values())
    groups = delivery_groups(context.rules, collection, record, subscribers, now_ms=now)
    if not groups:
        return ()
    ref = ResourceRef(COLLECTION, collection)
    version = format_version(version_ms)
    deliveries = []
    for group in groups:
        payload = _record_frame(change.user_id, ref, action, group.record, key, version, config)
        members = tuple(connection for member in group.members for connection in connections_of[member])  # type: ignore[index]
        deliveries.append(Deliver(PROTOCOL, payload, Audience(connections=members)))
    return deliveries


def _render_document(change: DocumentChange, context: RenderContext, clock: VersionClock,
                     history: History) -> Sequence[Deliver]:
    channel = Channel(DOCUMENT, change.read_token)
    version = clock.next(channel, context.now_ms())
    if not context.recipients(Audience(channel=channel)):
        # Nobody to send it to now: keep what a resume needs, and build the
        # frame only if one asks (_replay). Inboxes take thousands of merges
        # a second that nobody subscribes to; encoding each one's frame cost
        # more than the merge (issue 13).
        history.record(channel, Item(version, (change.revision, None, change.content), 2 * len(change.content) + 160))
        return ()
    payload = _document_frame(ResourceRef(DOCUMENT, change.read_token), change.revision, change.content, version)
    history.record(channel, Item(version, (change.revision, payload, change.content), 2 * len(payload)))
    return (Deliver(PROTOCOL, payload, Audience(channel=channel)),)
