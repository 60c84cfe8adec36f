"""A pure model of Asnity's chat semantics: who is in what, which chat ids
exist, who may do what, and who receives what.

Written from the contract (``asnity.md``) and Satchel's documented decisions
for what it leaves open or gets wrong (``protocol/asnity/*`` module
docstrings), never from Satchel's code. Slots name what a sequence creates -
community ``c``, channel ``h``, Engine.IO connection ``k`` - and users are
indexes into the run's accounts. The ids and timestamps the server chooses
are ``Sym`` placeholders bound on first sight (``matching``).

The rules, as the model applies them:

- **Membership.** A community's creator is its manager and first member;
  only the manager adds members (bug 6), who then join every public channel
  of it. A public channel starts with the community's members, a private one
  with its creator. ``POST /api/channels/:id`` joins a public channel; a
  private one is joined only by invitation, and only its users invite to it.
  A manager may not leave while others remain; alone, leaving deletes.
  Deleting a community deletes its channels.
- **Visibility.** A channel is seen by the members of its live community if
  public, by its own users if private; one not seen answers as one that does
  not exist (400). Chats - reads and writes - are for the channel's users;
  the community's manager may also delete chats of channels they see.
- **Chat ids.** Per channel 0, 1, 2 ... from the bot's chat 0, never a gap
  or a repeat; deleted chats keep their id, with ``deletedAt`` and a blank
  content. Only the sender edits a chat; the sender, the channel's manager
  (both in the channel) or the community's manager delete it.
- **Sockets.** One socket per (connection, namespace); only a live access
  token of a member is admitted. A socket is in a channel's room once it
  ``join``s it (a channel of its namespace that its user is in), or when its
  user is added to the channel (created, joined, invited, added to the
  community); it leaves when its user leaves or the channel is deleted.
- **Deliveries.** A chat written (new, modify, delete) reaches exactly the
  sockets in the channel's room, minus the writing socket for socket
  writes; ``invited-to-channel`` reaches the invitees' sockets in the
  namespace. Nothing else is pushed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..matching import ANY_STRING, Check, OneOf, Partial, Sym

__all__ = [
    "AsnityModel", "Community", "Channel", "Chat", "Conn", "Expected", "Outcome", "BOT_ID",
    "BARRIER", "MAX_SOCKET_CONTENT", "PAGE_SIZE", "MESSAGE",
]

#: The bot's sender id (chat 0 of every channel).
BOT_ID = "639045fc61d68253e03c50da"
#: The longest content a socket ``chat`` may carry.
MAX_SOCKET_CONTENT = 300
#: Chats per page of ``GET /:channel_id/chat``.
PAGE_SIZE = 100
#: A namespace nobody serves: a CONNECT to it is answered at once with
#: CONNECT_ERROR "Invalid namespace", so the kit uses it as a barrier after an
#: event that has no answer of its own (``join``).
BARRIER = "/satchel-kit-barrier"

#: An error's ``message``: a string, or class-validator's list of strings.
MESSAGE = Check(lambda v: isinstance(v, str) or (isinstance(v, list) and all(isinstance(x, str) for x in v)),
                "an error message (a string or a list of strings)")
_BOT_TEXT = Check(lambda v: isinstance(v, str) and "님이 이 채널을" in v, "the bot's announcement")


@dataclass
class Chat:
    id: int
    type: str
    content: Any  # the bot's is a Check: its wording is the server's
    sender: str
    created: Sym
    updated: Sym
    deleted: Sym | None = None


@dataclass
class Community:
    id: Sym
    name: str
    manager: int
    members: list[int]
    channels: list[int] = field(default_factory=list)  # live channel slots, in creation order
    deleted: bool = False


@dataclass
class Channel:
    id: Sym
    name: str
    community: int
    manager: int
    private: bool
    users: list[int]
    chats: list[Chat] = field(default_factory=list)
    deleted: bool = False


@dataclass
class Conn:
    """An Engine.IO connection: the user its first admitted namespace named,
    its sockets (community slot -> the channel slots whose rooms it is in)
    and its next ack id."""

    user: int | None = None
    sockets: dict[int, set[int]] = field(default_factory=dict)
    next_ack: int = 0


@dataclass(frozen=True)
class Expected:
    """A Socket.IO packet a connection must receive: ``type`` is ``event``,
    ``ack``, ``connect`` or ``connect_error``; ``community`` the slot whose
    namespace it is in (``None``: the barrier namespace); ``data`` its
    payload (an event's ``[name, argument]``, an ack's arguments)."""

    type: str
    community: int | None
    data: Any
    ack: int | None = None


@dataclass
class Outcome:
    """What a step should get: the HTTP status and body (REST steps), and the
    packets each connection receives, in order (acks may come anywhere)."""

    status: int | None = None
    body: Any = None
    packets: dict[int, list[Expected]] = field(default_factory=dict)

    def deliver(self, conn: int, packet: Expected) -> None:
        self.packets.setdefault(conn, []).append(packet)


def _ok(result: Any, status: int = 200) -> Outcome:
    return Outcome(status, {"statusCode": 200, "result": result})


def _refused(status: int = 400) -> Outcome:
    return Outcome(status, Partial({"statusCode": status, "message": MESSAGE}))


class _Refusal(Exception):
    def __init__(self, status: int) -> None:
        self.status = status


class AsnityModel:
    """The state of one sequence, and the prediction of every step.

    ``users`` are the run's accounts' ids. Each step method returns an
    ``Outcome`` and applies the step to the state (the model is the truth: a
    server that answers otherwise has already failed).
    """

    def __init__(self, users: list[str]) -> None:
        self.users = users
        self.communities: dict[int, Community] = {}
        self.channels: dict[int, Channel] = {}
        self.conns: dict[int, Conn] = {}
        self._syms = 0

    def sym(self, kind: str) -> Sym:
        self._syms += 1
        return Sym(kind, self._syms)

    # -- who may see what -------------------------------------------------------------

    def member(self, user: int, c: int) -> bool:
        community = self.communities.get(c)
        return community is not None and not community.deleted and user in community.members

    def visible(self, user: int, h: int) -> bool:
        channel = self.channels.get(h)
        if channel is None or channel.deleted or not self.member(user, channel.community):
            return False
        return not channel.private or user in channel.users

    def in_channel(self, user: int, h: int) -> bool:
        return self.visible(user, h) and user in self.channels[h].users

    def sockets_of(self, user: int, c: int) -> list[tuple[int, set[int]]]:
        """The (connection, rooms) of ``user``'s sockets in community ``c``'s namespace."""
        return [(k, conn.sockets[c]) for k, conn in sorted(self.conns.items())
                if conn.user == user and c in conn.sockets]

    # -- shapes -----------------------------------------------------------------------

    def chat_info(self, h: int, chat: Chat, *, page: bool = False) -> dict[str, Any]:
        channel = self.channels[h]
        content = "" if chat.deleted is not None else chat.content
        info: dict[str, Any] = {"id": chat.id, "type": chat.type, "content": content, "senderId": chat.sender,
                                "createdAt": chat.created, "updatedAt": chat.updated}
        if not page:
            info["channelId"] = channel.id
            info["communityId"] = self.communities[channel.community].id
        if chat.deleted is not None:
            info["deletedAt"] = chat.deleted
        return info

    def _user_ids(self, users: list[int]) -> Check:
        wanted = sorted(self.users[u] for u in users)
        return Check(lambda v: isinstance(v, list) and sorted(v) == wanted, f"the user ids {wanted} (any order)")

    def _users_info(self, users: list[int]) -> Check:
        wanted = sorted(self.users[u] for u in users)
        return Check(lambda v: isinstance(v, list) and all(isinstance(x, dict) for x in v)
                     and sorted(str(x.get("_id")) for x in v) == wanted, f"UserBasicInfo of {wanted} (any order)")

    def channel_basic(self, h: int, **extra: Any) -> Partial:
        channel = self.channels[h]
        return Partial({"_id": channel.id, "communityId": self.communities[channel.community].id,
                        "managerId": self.users[channel.manager], "isPrivate": channel.private,
                        "users": self._user_ids(channel.users), **extra})

    # -- membership moves -------------------------------------------------------------

    def _add_to_channel(self, h: int, users: list[int]) -> None:
        """Users join a channel; their sockets in its namespace join its room."""
        channel = self.channels[h]
        for user in users:
            if user not in channel.users:
                channel.users.append(user)
            for _, rooms in self.sockets_of(user, channel.community):
                rooms.add(h)

    def _remove_from_channel(self, h: int, user: int) -> None:
        channel = self.channels[h]
        if user in channel.users:
            channel.users.remove(user)
        for _, rooms in self.sockets_of(user, channel.community):
            rooms.discard(h)

    def _delete_channel(self, h: int) -> None:
        channel = self.channels[h]
        channel.deleted = True
        community = self.communities[channel.community]
        if h in community.channels:
            community.channels.remove(h)
        for conn in self.conns.values():
            for rooms in conn.sockets.values():
                rooms.discard(h)

    def _delete_community(self, c: int) -> None:
        community = self.communities[c]
        for h in list(community.channels):
            self._delete_channel(h)
        community.deleted = True

    def _to_room(self, outcome: Outcome, h: int, name: str, payload: Any, exclude: int | None) -> None:
        c = self.channels[h].community
        for k, conn in sorted(self.conns.items()):
            if k != exclude and h in conn.sockets.get(c, ()):
                outcome.deliver(k, Expected("event", c, [name, payload]))

    # -- communities --------------------------------------------------------------------

    def create_community(self, user: int, c: int, name: str) -> Outcome:
        community = Community(self.sym("id"), name, user, [user])
        self.communities[c] = community
        return _ok({"_id": community.id, "name": name, "managerId": self.users[user],
                    "profileUrl": "default community profile", "description": "default community description",
                    "channels": [], "createdAt": self.sym("ts"), "updatedAt": self.sym("ts")}, 201)

    def add_members(self, user: int, c: int, invitees: list[int]) -> Outcome:
        community = self.communities[c]
        if not self.member(user, c) or community.manager != user:
            return _refused()
        invitees = list(dict.fromkeys(invitees))
        if any(v in community.members for v in invitees):
            return _refused()
        community.members.extend(invitees)
        for h in community.channels:
            if not self.channels[h].private:
                self._add_to_channel(h, invitees)
        return _ok({"message": ANY_STRING}, 201)

    def leave_community(self, user: int, c: int) -> Outcome:
        community = self.communities[c]
        if not self.member(user, c):
            return _refused()
        if community.manager == user:
            if len(community.members) > 1:
                return _refused()
            self._delete_community(c)
            return _ok({"message": ANY_STRING})
        community.members.remove(user)
        for h in community.channels:
            if user in self.channels[h].users:
                self._remove_from_channel(h, user)
        return _ok({"message": ANY_STRING})

    def delete_community(self, user: int, c: int) -> Outcome:
        if not self.member(user, c) or self.communities[c].manager != user:
            return _refused()
        self._delete_community(c)
        return _ok({"message": ANY_STRING})

    def members_of(self, user: int, c: int) -> Outcome:
        if not self.member(user, c):
            return _refused()
        return _ok({"users": self._users_info(self.communities[c].members)})

    def listing(self, user: int) -> dict[int, list[int]]:
        """What ``GET /api/communities`` lists for ``user`` of this sequence's
        communities: community slot -> its channel slots that ``user`` is in."""
        return {c: sorted(h for h in community.channels if user in self.channels[h].users)
                for c, community in self.communities.items() if self.member(user, c)}

    # -- channels -----------------------------------------------------------------------

    def create_channel(self, user: int, c: int, h: int, private: bool, name: str) -> Outcome:
        community = self.communities[c]
        if not self.member(user, c):
            return _refused()
        users = [user] if private else list(community.members)
        channel = Channel(self.sym("id"), name, c, user, private, [])
        bot = self.sym("ts")
        channel.chats.append(Chat(0, "SYSTEM", _BOT_TEXT, BOT_ID, bot, bot))
        self.channels[h] = channel
        community.channels.append(h)
        self._add_to_channel(h, users)  # after the bot's chat: nobody hears it
        return _ok({"_id": channel.id, "name": name, "communityId": community.id, "managerId": self.users[user],
                    "description": "default channel description", "type": "Channel", "isPrivate": private,
                    "createdAt": self.sym("ts"), "updatedAt": self.sym("ts")}, 201)

    def join_channel(self, user: int, h: int) -> Outcome:
        if not self.visible(user, h):
            return _refused()
        self._add_to_channel(h, [user])
        return _ok(self.channel_basic(h, lastRead=False), 201)

    def leave_channel(self, user: int, h: int) -> Outcome:
        channel = self.channels[h]
        if not self.in_channel(user, h):
            return _refused()
        if channel.manager == user:
            if len(channel.users) > 1:
                return _refused()
            self._delete_channel(h)
        self._remove_from_channel(h, user)
        return _ok({"message": ANY_STRING})

    def delete_channel(self, user: int, h: int) -> Outcome:
        if not self.visible(user, h) or self.channels[h].manager != user:
            return _refused()
        self._delete_channel(h)
        return _ok({"message": ANY_STRING})

    def get_channel(self, user: int, h: int) -> Outcome:
        if not self.visible(user, h):
            return _refused()
        return _ok(self.channel_basic(h, users=self._users_info(self.channels[h].users)))

    def invite(self, user: int, h: int, invitees: list[int], conn: int | None = None, c: int | None = None,
               ack: int = 0) -> Outcome:
        """REST (``conn`` None) or the socket event from ``conn``'s socket in
        ``c``, acked with id ``ack``."""
        channel = self.channels[h]
        invitees = list(dict.fromkeys(invitees))
        community = self.communities[channel.community]
        if (not self.in_channel(user, h) or (conn is not None and c != channel.community)
                or any(v not in community.members for v in invitees)):
            if conn is None:
                return _refused()
            return self._socket_failure(conn, c, ack, {"isSuccess": False})
        self._add_to_channel(h, invitees)
        result = self.channel_basic(h, existUnreadChat=False)
        outcome = _ok(result, 201) if conn is None else self._acked(conn, c, ack, {"isSuccess": True})
        for v in invitees:
            for k, _ in self.sockets_of(v, channel.community):
                outcome.deliver(k, Expected("event", channel.community, ["invited-to-channel", result]))
        return outcome

    # -- chats --------------------------------------------------------------------------

    def _write(self, user: int, h: int, action: str, chat_id: Any, content: Any,
               kind: str = "TEXT") -> tuple[int, Chat]:
        """Apply a chat write; the chat, or ``_Refusal`` with the REST status."""
        channel = self.channels[h]
        if action == "new":
            if kind not in ("TEXT", "IMAGE") or not isinstance(content, str) or not content:
                raise _Refusal(400)
            if not self.in_channel(user, h):
                raise _Refusal(400)
            created = self.sym("ts")
            chat = Chat(len(channel.chats), kind, content, self.users[user], created, created)
            channel.chats.append(chat)
            return 201, chat
        manager = self.communities[channel.community].manager == user
        if action == "modify":
            if not isinstance(content, str) or not content or not self.in_channel(user, h):
                raise _Refusal(400)
        elif not (self.in_channel(user, h) or (manager and self.visible(user, h))):
            raise _Refusal(400)
        chat = channel.chats[chat_id] if isinstance(chat_id, int) and 0 <= chat_id < len(channel.chats) else None
        if chat is None or chat.deleted is not None:
            raise _Refusal(404)
        if action == "modify":
            if chat.sender != self.users[user]:
                raise _Refusal(400)
            chat.content, chat.updated = content, self.sym("ts")
        else:
            mine = self.users[user] in (chat.sender, self.users[channel.manager])
            allowed = manager or (user in channel.users and mine)
            if not allowed:
                raise _Refusal(400)
            chat.deleted = chat.updated = self.sym("ts")
        return 200, chat

    def rest_chat(self, user: int, h: int, action: str, chat_id: Any = None, content: Any = None,
                  kind: str = "TEXT") -> Outcome:
        """``POST /:channel_id/chat``, ``PATCH`` or ``DELETE /:channel_id/chats/:chat_id``."""
        try:
            status, chat = self._write(user, h, action, chat_id, content, kind)
        except _Refusal as refusal:
            return _refused(refusal.status)
        info = self.chat_info(h, chat)
        outcome = _ok(info, status)
        self._to_room(outcome, h, f"{action}-chat", info, None)
        return outcome

    def read_chats(self, user: int, h: int) -> Outcome:
        """``GET /:channel_id/chat?prev=-1``: the last page."""
        if not self.in_channel(user, h):
            return _refused()
        chats = self.channels[h].chats
        last = (len(chats) - 1) // PAGE_SIZE
        result: dict[str, Any] = {"chat": [self.chat_info(h, chat, page=True)
                                           for chat in chats[last * PAGE_SIZE:(last + 1) * PAGE_SIZE]]}
        if last > 0:
            result["prev"] = last - 1
        return _ok(result)

    # -- sockets ------------------------------------------------------------------------

    def _acked(self, conn: int, c: int | None, ack_id: int, ack: Any) -> Outcome:
        outcome = Outcome()
        outcome.deliver(conn, Expected("ack", c, [ack], ack_id))
        return outcome

    def _socket_failure(self, conn: int, c: int | None, ack_id: int, ack: Any) -> Outcome:
        outcome = self._acked(conn, c, ack_id, ack)
        outcome.deliver(conn, Expected("event", c, ["failed-to-send-message", Partial({"message": MESSAGE})]))
        return outcome

    def has_socket(self, conn: int, c: int) -> bool:
        return conn in self.conns and c in self.conns[conn].sockets

    def take_ack(self, conn: int) -> int:
        """The ack id for the next event ``conn`` sends with an ack (the
        client's choice: numbered per connection from 0)."""
        state = self.conns[conn]
        state.next_ack += 1
        return state.next_ack - 1

    def open(self, conn: int) -> None:
        self.conns[conn] = Conn()

    def close(self, conn: int) -> None:
        self.conns.pop(conn, None)

    def connect(self, conn: int, user: int, c: int, token_ok: bool) -> Outcome:
        state = self.conns[conn]
        outcome = Outcome()
        if c in state.sockets:
            return outcome  # a second CONNECT to a joined namespace is ignored
        if not token_ok:
            refusal: Any = {"message": "Unauthorized"}
        elif not self.member(user, c) or (state.user is not None and state.user != user):
            refusal = {"message": ANY_STRING}
        else:
            state.user = user if state.user is None else state.user
            state.sockets[c] = set()
            outcome.deliver(conn, Expected("connect", c, Partial({"sid": ANY_STRING})))
            return outcome
        outcome.deliver(conn, Expected("connect_error", c, refusal))
        return outcome

    def disconnect(self, conn: int, c: int) -> Outcome:
        """A DISCONNECT of one namespace: the socket and its rooms are gone."""
        self.conns[conn].sockets.pop(c, None)
        return self.barrier(conn)

    def barrier(self, conn: int) -> Outcome:
        outcome = Outcome()
        outcome.deliver(conn, Expected("connect_error", None, {"message": "Invalid namespace"}))
        return outcome

    def join(self, conn: int, c: int, channels: Any) -> Outcome:
        """``join {channels}`` (no ack), then the barrier."""
        state = self.conns[conn]
        outcome = self.barrier(conn)
        if c not in state.sockets:
            return outcome
        if not isinstance(channels, list):
            outcome.packets[conn].insert(0, Expected("event", c, ["failed-to-send-message",
                                                                  Partial({"message": MESSAGE})]))
            return outcome
        user = state.user
        assert user is not None
        if self.member(user, c):
            for h in channels:
                channel = self.channels.get(h)
                if channel is not None and not channel.deleted and channel.community == c and user in channel.users:
                    state.sockets[c].add(h)
        return outcome

    def socket_chat(self, conn: int, c: int, ack: int, action: str, h: int | None, chat_id: Any,
                    content: Any) -> Outcome:
        """``chat {chatType, channelId, chatId?, content?}`` with ack id ``ack``,
        from ``conn``'s socket in ``c`` (``h`` None: a channel id that names no channel)."""
        if isinstance(content, str) and len(content) > MAX_SOCKET_CONTENT:
            return self._acked(conn, c, ack, {"written": False})
        failed = OneOf(({"written": False}, {"written": False, "chatInfo": False}))
        channel = self.channels.get(h) if h is not None else None
        if action not in ("new", "modify", "delete") or channel is None or channel.deleted or channel.community != c:
            return self._socket_failure(conn, c, ack, failed)
        user = self.conns[conn].user
        assert user is not None and h is not None
        try:
            _, chat = self._write(user, h, action, chat_id, content)
        except _Refusal:
            return self._socket_failure(conn, c, ack, failed)
        info = self.chat_info(h, chat)
        outcome = self._acked(conn, c, ack, {"written": True, "chatInfo": info})
        self._to_room(outcome, h, f"{action}-chat", info, conn)
        return outcome
