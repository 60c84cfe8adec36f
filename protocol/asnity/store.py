"""How Asnity's actions read and write their records, and who may see what.

``Context`` is one request's (or one socket event's) view of the world: the
acting account, the clock, how its writes are marked (``origin``, the socket
``connection``) and the events they produced, in order. Every write goes
through ``insert`` or ``update`` here, so each produces exactly one
``Change`` (``protocol/changes.py``); ``update`` is a compare-and-swap loop,
so concurrent writers of one record never lose each other's changes, and
every write is done before the action answers (bug 15).

The access rules (asnity.md section 7, bugs 2, 6 and 16) live here too, so
the REST routes and the socket events apply the same ones:

- a community is seen only by its members, a deleted one by nobody;
- a channel is seen by the members of its (live) community when it is
  public, and only by its own users when it is private; one that may not be
  seen answers exactly as one that does not exist (its existence is not
  leaked);
- chats, reads and writes alike, are for the channel's users.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..changes import Change
from ..environment import Environment
from ..errors import RemoteProtocolError
from ..http import HttpRequest
from ..mounts import Event
from ..operations import (
    Action,
    GetRecord,
    GetUser,
    InsertRecord,
    ReplaceRecord,
    StoredRecord,
    User,
)
from ..records import format_timestamp
from .model import (
    CHANNELS,
    COMMUNITIES,
    PROFILES,
    default_nickname,
    is_live,
    new_profile,
)
from .nest import bad_request

__all__ = [
    "BAD_COMMUNITY",
    "NOT_IN_CHANNEL",
    "NO_CHANNEL",
    "Context",
    "channel_member",
    "ensure_profile",
    "get",
    "get_live",
    "insert",
    "member_community",
    "profile_of",
    "update",
    "visible_channel",
]

#: The answer for a channel that does not exist, is deleted or may not be seen.
NO_CHANNEL = "존재하지 않는 채널입니다."
#: The answer for a channel that may be seen but is not the user's.
NOT_IN_CHANNEL = "사용자가 존재하는 채널이 아닙니다."
#: The answer for a community that does not exist, is deleted or is not the user's.
BAD_COMMUNITY = "해당하는 커뮤니티의 _id가 올바르지 않습니다."

# A compare-and-swap that keeps losing means one record is hammered; give up
# with a 409 rather than spin for ever.
_MAX_ATTEMPTS = 64


class Context:
    """One action's acting account, clock, write marks and produced events.

    ``user`` is the account the request or socket authenticated as (``None``
    on the public routes); ``origin`` and ``connection`` mark its writes'
    ``Change``s; ``events`` collects those changes and the hub events
    (room subscriptions, deliveries), in order; ``headers`` are extra
    response headers (a cookie).
    """

    __slots__ = ("connection", "env", "events", "headers", "origin", "request", "user")

    def __init__(
        self,
        env: Environment,
        origin: str,
        user: User | None = None,
        *,
        connection: str | None = None,
        request: HttpRequest | None = None,
    ) -> None:
        self.env = env
        self.origin = origin
        self.user = user
        self.connection = connection
        self.request = request
        self.events: list[Event] = []
        self.headers: list[tuple[str, str]] = []

    @property
    def user_id(self) -> str:
        """The acting account's id (the guarded routes always have one)."""
        if self.user is None:
            raise RemoteProtocolError("this action needs an account", 401)
        return self.user.id

    def now(self) -> str:
        """The clock, as the ISO 8601 timestamps records carry."""
        return format_timestamp(self.env.now_ms())

    def emit(self, event: Event) -> None:
        """Add a hub event to what this action publishes."""
        self.events.append(event)

    def change(self, collection: str, kind: Any, record: dict[str, Any], *, revision: int,
               numbered: tuple[str, int] | None = None) -> None:
        """Record the ``Change`` of a write this action made (``revision``: the
        record's after it, ``Change.revision``; ``numbered``: its sequence and
        number, for a numbered create)."""
        user_id = self.user.id if self.user is not None else None
        self.events.append(Change(collection, kind, record, user_id, self.origin, self.connection, revision, numbered))


def get(collection: str, record_id: str) -> Action[dict[str, Any] | None]:
    """A record, or ``None``."""
    stored: StoredRecord | None = yield GetRecord(collection, record_id)
    return stored.record if stored is not None else None


def get_live(collection: str, record_id: str) -> Action[dict[str, Any] | None]:
    """A record that was not deleted, or ``None``."""
    record = yield from get(collection, record_id)
    return record if is_live(record) else None


def insert(ctx: Context, collection: str, record: dict[str, Any]) -> Action[dict[str, Any]]:
    """Store a new record; its ``Change`` is a ``create``."""
    yield InsertRecord(collection, record)
    ctx.change(collection, "create", record, revision=1)
    return record


def update(
    ctx: Context,
    collection: str,
    record_id: str,
    rewrite: Callable[[dict[str, Any], str], dict[str, Any] | None],
) -> Action[dict[str, Any] | None]:
    """Rewrite a record by compare-and-swap; its ``Change`` is a ``patch``.

    ``rewrite(record, now)`` gets a copy of the stored record and the clock
    reading of this attempt, and returns the new record (its ``updatedAt``
    is set to ``now``) or ``None`` for "nothing to change"; it may raise to
    refuse. Answers the record as it is afterwards, or ``None`` if absent.
    """
    for _ in range(_MAX_ATTEMPTS):
        stored: StoredRecord | None = yield GetRecord(collection, record_id)
        if stored is None:
            return None
        now = ctx.now()
        record = rewrite(stored.record, now)
        if record is None:
            return stored.record
        record["updatedAt"] = now
        if (yield ReplaceRecord(collection, record, stored.revision)):
            ctx.change(collection, "patch", record, revision=stored.revision + 1)
            return record
    raise RemoteProtocolError("the record is changing too fast; try again", 409)


def profile_of(user_id: str) -> Action[dict[str, Any] | None]:
    """A user's Asnity profile, if they have one yet."""
    return (yield from get(PROFILES, user_id))


def ensure_profile(ctx: Context, user_id: str, user: User | None = None) -> Action[dict[str, Any] | None]:
    """A user's profile, created with the default nickname for an account
    that has none yet (a Backpack user); ``None`` if there is no such account."""
    profile = yield from profile_of(user_id)
    if profile is not None:
        return profile
    if user is None or user.id != user_id:
        user = yield GetUser(user_id)
        if user is None:
            return None
    # Two first requests of one Backpack user at the same instant would both
    # insert; the store refuses the second (a LocalProtocolError, answered
    # 500 once), and every later request finds the profile.
    return (yield from insert(ctx, PROFILES, new_profile(user, default_nickname(user.email), ctx.now())))


def member_community(ctx: Context, community_id: str) -> Action[dict[str, Any]]:
    """A live community the acting user is a member of, else 400."""
    community = yield from get_live(COMMUNITIES, community_id)
    if community is None or ctx.user_id not in community["users"]:
        raise bad_request(BAD_COMMUNITY)
    return community


def visible_channel(ctx: Context, channel_id: str) -> Action[tuple[dict[str, Any], dict[str, Any]]]:
    """A channel the acting user may see, and its community; else 400
    ``존재하지 않는 채널입니다.``, as for a channel that does not exist."""
    channel = yield from get_live(CHANNELS, channel_id)
    if channel is None:
        raise bad_request(NO_CHANNEL)
    community = yield from get_live(COMMUNITIES, channel["communityId"])
    user_id = ctx.user_id
    if community is None or user_id not in community["users"]:
        raise bad_request(NO_CHANNEL)
    if channel["isPrivate"] is True and user_id not in channel["users"]:
        raise bad_request(NO_CHANNEL)
    return channel, community


def channel_member(ctx: Context, channel_id: str) -> Action[tuple[dict[str, Any], dict[str, Any]]]:
    """A channel the acting user is in, and its community; else 400."""
    channel, community = yield from visible_channel(ctx, channel_id)
    if ctx.user_id not in channel["users"]:
        raise bad_request(NOT_IN_CHANNEL)
    return channel, community
