"""Runs Asnity steps against a target and checks every answer and packet.

A step is a small JSON object naming users by index (the run's accounts),
communities, channels and Engine.IO connections by slot, and chats by their
id, so that a failing sequence prints short and replays against any server::

    {"do": "create-community", "user": 0, "community": 0}
    {"do": "add-members", "user": 0, "community": 0, "users": [1]}
    {"do": "create-channel", "user": 1, "community": 0, "channel": 0, "private": true}
    {"do": "join-channel" | "leave-channel" | "delete-channel" | "get-channel" | "read-chats", "user": 1, "channel": 0}
    {"do": "leave-community" | "delete-community" | "get-members", "user": 1, "community": 0}
    {"do": "list-communities", "user": 2}
    {"do": "invite", "user": 0, "channel": 0, "users": [2]}
    {"do": "post-chat", "user": 0, "channel": 0, "content": "hi", "type": "TEXT"}
    {"do": "edit-chat", "user": 0, "channel": 0, "chat": 1, "content": "edited"}
    {"do": "delete-chat", "user": 0, "channel": 0, "chat": 1}
    {"do": "sio-connect", "conn": 0, "user": 0, "community": 0, "token": "good" | "bad" | "none"}
    {"do": "sio-join", "conn": 0, "community": 0, "channels": [0, 1]}
    {"do": "sio-chat", "conn": 0, "community": 0, "chatType": "new", "channel": 0, "content": "hi"}
    {"do": "sio-invite", "conn": 0, "community": 0, "channel": 0, "users": [2]}
    {"do": "sio-disconnect", "conn": 0, "community": 0}
    {"do": "sio-close", "conn": 0}

A step naming an empty slot (or a closed connection, for a socket step) is
skipped; a creation names the slot it fills. Content ``"LONG"`` stands for
301 characters. ``sio-connect`` opens its connection first if needed.

After each step the answer is compared with the model's, and every open
connection must have received exactly the packets the model predicts, in
order (an ack may come anywhere among them), and nothing else.
"""

from __future__ import annotations

import json
from typing import Any, Protocol, Sequence

from ..checker import SetupError
from ..matching import Bindings, Mismatch, match, show
from ..sequences import PASSWORD, SequenceBase, StepMismatch, StepScript, run_sequence, sign_up
from .model import BARRIER, MAX_SOCKET_CONTENT, AsnityModel, Expected, Outcome

__all__ = [
    "AsnityTarget", "AsnityMismatch", "AsnityRun", "run_steps", "format_steps", "load_steps", "tidy",
    "encode_packet", "decode_packet", "USERS", "COMMUNITIES", "CHANNELS", "CONNS", "NAMESPACE",
]

#: The run's accounts, community and channel slots, and connections.
USERS, COMMUNITIES, CHANNELS, CONNS = 3, 2, 3, 4
#: Every community's namespace is this and its id.
NAMESPACE = "/socket/commu-"
_TYPES = {0: "connect", 1: "disconnect", 2: "event", 3: "ack", 4: "connect_error", 5: "binary_event", 6: "binary_ack"}


class AsnityTarget(Protocol):
    """What the Asnity kit drives: HTTP with extra headers, and Engine.IO
    connections that carry Socket.IO packets as text (``InProcessTarget``,
    ``satchel.transports.conformance_runner.UrlTarget``)."""

    def http(self, jar: str | None, method: str, path: str, body: bytes | None, *, key: str | None,
             headers: Sequence[tuple[str, str]] | None = None) -> Any: ...

    def socketio_open(self, connection: str) -> int: ...

    def socketio_send(self, connection: str, packet: str) -> None: ...

    def socketio_receive(self, connection: str, timeout: float) -> Any: ...

    def socketio_close(self, connection: str) -> None: ...


class AsnityMismatch(StepMismatch):
    """The server differs from the Asnity model at step ``step``; ``steps`` is
    the sequence up to and including that step."""

    script = StepScript("an Asnity", ("do", "conn", "user", "community", "channel", "chatType", "chat", "private",
                                      "users", "channels", "type", "content", "token"))


tidy = AsnityMismatch.script.tidy
format_steps = AsnityMismatch.script.format
load_steps = AsnityMismatch.script.load


def encode_packet(kind: int, nsp: str, data: Any = None, ack: int | None = None) -> str:
    """A Socket.IO v5 packet as text: ``<type>[<nsp>,][<ack id>][<JSON>]``."""
    text = str(kind) + (nsp + "," if nsp != "/" else "") + ("" if ack is None else str(ack))
    return text + ("" if data is None else json.dumps(data, ensure_ascii=False, separators=(",", ":")))


def decode_packet(text: Any) -> dict[str, Any]:
    """A Socket.IO v5 text packet as ``{type, nsp, id, data}`` (``type``
    ``invalid`` with ``raw`` for anything else)."""
    if not isinstance(text, str) or not text[:1].isdigit() or int(text[0]) not in _TYPES:
        return {"type": "invalid", "raw": text}
    kind, rest, nsp = _TYPES[int(text[0])], text[1:], "/"
    if rest.startswith("/"):
        cut = rest.find(",")
        nsp, rest = (rest, "") if cut < 0 else (rest[:cut], rest[cut + 1:])
    digits = len(rest) - len(rest.lstrip("0123456789"))
    ack = int(rest[:digits]) if digits else None
    try:
        data = json.loads(rest[digits:]) if rest[digits:] else None
    except ValueError:
        return {"type": "invalid", "raw": text}
    return {"type": kind, "nsp": nsp, "id": ack, "data": data}


class AsnityRun:
    """One run of the kit against one target: its accounts, made once
    (``setup``), and the sequences run on them (``run``), each over fresh
    communities and connections. ``token`` makes the accounts' emails unique
    on a shared server; ``timeout`` is how long to wait for each expected
    packet, ``quiet`` how long to listen for unexpected ones after a sequence."""

    def __init__(self, target: AsnityTarget, *, token: str = "t0", timeout: float = 2.0, quiet: float = 0.0) -> None:
        self.target, self.token, self.timeout, self.quiet = target, token, timeout, quiet
        self.user_ids: list[str] = []
        self.tokens: list[str] = []
        self.sequences = 0

    def _http(self, method: str, path: str, body: Any = None, token: str | None = None) -> tuple[int, Any]:
        headers = [("Authorization", f"Bearer {token}")] if token is not None else []
        data = None if body is None else json.dumps(body, ensure_ascii=False).encode()
        reply = self.target.http(None, method, path, data, key=None, headers=headers)
        try:
            return reply.status, json.loads(reply.body) if reply.body else None
        except ValueError:
            return reply.status, reply.body

    def setup(self) -> None:
        """Sign up (or reuse) and sign in the run's accounts."""
        for index in range(USERS):
            email = sign_up(self._http, self.token, index)
            status, body = self._http("POST", "/api/user/auth/signin", {"id": email, "password": PASSWORD})
            token = body.get("result", {}).get("accessToken") if isinstance(body, dict) else None
            if status != 201 or not isinstance(token, str):
                raise SetupError(f"signin of {email} answered {status} {show(body)}")
            status, body = self._http("GET", "/api/user/auth/me", token=token)
            user_id = body.get("result", {}).get("_id") if isinstance(body, dict) else None
            if status != 200 or not isinstance(user_id, str):
                raise SetupError(f"GET /api/user/auth/me answered {status} {show(body)}")
            self.tokens.append(token)
            self.user_ids.append(user_id)

    def run(self, steps: list[dict[str, Any]]) -> AsnityModel:
        """Run ``steps`` as a new sequence; raises ``AsnityMismatch`` at the
        first difference."""
        if not self.user_ids:
            self.setup()
        self.sequences += 1
        return run_sequence(_Sequence(self, f"{self.token}s{self.sequences}"), steps)


def run_steps(target: AsnityTarget, steps: list[dict[str, Any]], *, token: str = "r0", timeout: float = 2.0,
              quiet: float = 0.0) -> AsnityModel:
    """Replay ``steps`` on fresh accounts (named after ``token``)."""
    return AsnityRun(target, token=token, timeout=timeout, quiet=quiet).run(steps)


class _Sequence(SequenceBase):
    mismatch = AsnityMismatch
    noun = "connection"

    def __init__(self, run: AsnityRun, label: str) -> None:
        self.run, self.target, self.label = run, run.target, label
        self.model = AsnityModel(list(run.user_ids))
        self.bindings = Bindings()
        self.index = 0

    # -- names --------------------------------------------------------------------------

    def community_id(self, c: int) -> str:
        return self.bindings.values[self.model.communities[c].id]

    def channel_id(self, h: int) -> str:
        return self.bindings.values[self.model.channels[h].id]

    def nsp(self, c: int | None) -> str:
        return BARRIER if c is None else NAMESPACE + self.community_id(c)

    # -- steps --------------------------------------------------------------------------

    def _rest(self, step: dict[str, Any], outcome: Outcome, method: str, path: str, body: Any = None) -> Any:
        user = step["user"]
        what = f"{method} {path} as user {user}"
        status, answer = self.run._http(method, path, body, self.run.tokens[user])
        if status != outcome.status:
            self.fail(f"{what}: expected {outcome.status}, got {status} {show(answer)}")
        try:
            match(outcome.body, answer, self.bindings)
        except Mismatch as mismatch:
            self.fail(f"{what}: {mismatch.describe()}")
        self.deliveries(outcome, what)
        return answer

    def _create_community(self, step: dict[str, Any]) -> None:
        c = step["community"]
        if c not in self.model.communities:
            name = f"commu{c}"
            self._rest(step, self.model.create_community(step["user"], c, name), "POST", "/api/community",
                       {"name": name})

    def _community_step(self, step: dict[str, Any], method: str, suffix: str, predict: Any, body: Any = None) -> None:
        c = step["community"]
        if c in self.model.communities:
            path = f"/api/communities/{self.community_id(c)}{suffix}"
            self._rest(step, predict(), method, path, body() if body else None)

    def _add_members(self, step: dict[str, Any]) -> None:
        users = step["users"]
        self._community_step(step, "POST", "/users",
                             lambda: self.model.add_members(step["user"], step["community"], users),
                             lambda: {"users": [self.run.user_ids[u] for u in users]})

    def _leave_community(self, step: dict[str, Any]) -> None:
        self._community_step(step, "DELETE", "/me", lambda: self.model.leave_community(step["user"], step["community"]))

    def _delete_community(self, step: dict[str, Any]) -> None:
        self._community_step(step, "DELETE", "", lambda: self.model.delete_community(step["user"], step["community"]))

    def _get_members(self, step: dict[str, Any]) -> None:
        self._community_step(step, "GET", "/users", lambda: self.model.members_of(step["user"], step["community"]))

    def _list_communities(self, step: dict[str, Any]) -> None:
        user = step["user"]
        what = f"GET /api/communities as user {user}"
        mine = {self.community_id(c): sorted(self.channel_id(h) for h in channels)
                for c, channels in self.model.listing(user).items()}
        ours = {self.community_id(c) for c in self.model.communities}
        status, answer = self.run._http("GET", "/api/communities", None, self.run.tokens[user])
        listed = answer.get("result", {}).get("communities") if isinstance(answer, dict) else None
        if status != 200 or not isinstance(listed, list) or not all(isinstance(entry, dict) for entry in listed):
            self.fail(f"{what}: expected 200 {{statusCode: 200, result: {{communities: [...]}}}}, "
                      f"got {status} {show(answer)}")
        got = {entry.get("_id"): sorted(str(channel.get("_id")) for channel in entry.get("channels") or []
                                        if isinstance(channel, dict))
               for entry in listed if entry.get("_id") in ours}
        if got != mine:
            self.fail(f"{what}: expected this sequence's communities and their channels {show(mine)}, got {show(got)}")
        self.deliveries(Outcome(), what)

    def _create_channel(self, step: dict[str, Any]) -> None:
        c, h = step["community"], step["channel"]
        if c in self.model.communities and h not in self.model.channels:
            private = bool(step.get("private"))
            community_id = self.community_id(c)
            outcome = self.model.create_channel(step["user"], c, h, private, f"chan{h}")
            self._rest(step, outcome, "POST", "/api/channel",
                       {"communityId": community_id, "name": f"chan{h}", "isPrivate": private, "type": "Channel"})

    def _channel_step(self, step: dict[str, Any], method: str, suffix: str, predict: Any, body: Any = None) -> None:
        h = step["channel"]
        if h in self.model.channels:
            path = f"/api/channels/{self.channel_id(h)}{suffix}"
            payload = body() if body else None
            self._rest(step, predict(), method, path, payload)

    def _channel_community(self, h: int) -> dict[str, Any]:
        return {"community_id": self.community_id(self.model.channels[h].community)}

    def _join_channel(self, step: dict[str, Any]) -> None:
        self._channel_step(step, "POST", "", lambda: self.model.join_channel(step["user"], step["channel"]),
                           lambda: self._channel_community(step["channel"]))

    def _leave_channel(self, step: dict[str, Any]) -> None:
        self._channel_step(step, "DELETE", "/me", lambda: self.model.leave_channel(step["user"], step["channel"]))

    def _delete_channel(self, step: dict[str, Any]) -> None:
        self._channel_step(step, "DELETE", "", lambda: self.model.delete_channel(step["user"], step["channel"]))

    def _get_channel(self, step: dict[str, Any]) -> None:
        self._channel_step(step, "GET", "", lambda: self.model.get_channel(step["user"], step["channel"]))

    def _read_chats(self, step: dict[str, Any]) -> None:
        self._channel_step(step, "GET", "/chat?prev=-1", lambda: self.model.read_chats(step["user"], step["channel"]))

    def _invite(self, step: dict[str, Any]) -> None:
        users = step["users"]
        self._channel_step(step, "POST", "/users", lambda: self.model.invite(step["user"], step["channel"], users),
                           lambda: {**self._channel_community(step["channel"]),
                                    "users": [self.run.user_ids[u] for u in users]})

    def _post_chat(self, step: dict[str, Any]) -> None:
        content, kind = _content(step.get("content")), step.get("type", "TEXT")
        self._channel_step(step, "POST", "/chat",
                           lambda: self.model.rest_chat(step["user"], step["channel"], "new", None, content, kind),
                           lambda: {"type": kind, "content": content})

    def _edit_chat(self, step: dict[str, Any]) -> None:
        content = _content(step.get("content"))
        self._channel_step(step, "PATCH", f"/chats/{step['chat']}",
                           lambda: self.model.rest_chat(step["user"], step["channel"], "modify", step["chat"], content),
                           lambda: {"content": content})

    def _delete_chat(self, step: dict[str, Any]) -> None:
        self._channel_step(step, "DELETE", f"/chats/{step['chat']}",
                           lambda: self.model.rest_chat(step["user"], step["channel"], "delete", step["chat"]))

    # -- sockets ------------------------------------------------------------------------

    def send(self, k: int, packet: str) -> None:
        self.target.socketio_send(self.conn_name(k), packet)

    def _sio_connect(self, step: dict[str, Any]) -> None:
        k, user, c = step["conn"], step["user"], step["community"]
        if c not in self.model.communities:
            return
        if k not in self.model.conns:
            status = self.target.socketio_open(self.conn_name(k))
            if status != 101:
                self.fail(f"opening Engine.IO connection {k}: expected 101, got {status}")
            self.model.open(k)
        token = step.get("token", "good")
        secret = self.run.tokens[user] if token == "good" else "nope"
        auth = None if token == "none" else {"token": f"Bearer {secret}"}
        outcome = self.model.connect(k, user, c, token == "good")
        self.send(k, encode_packet(0, self.nsp(c), auth))
        self.deliveries(outcome, f"CONNECT of connection {k} to community {c} as user {user} (token {token})")

    def _socket(self, step: dict[str, Any]) -> tuple[int, int] | None:
        k, c = step["conn"], step["community"]
        return (k, c) if k in self.model.conns and c in self.model.communities else None

    def _sio_join(self, step: dict[str, Any]) -> None:
        found = self._socket(step)
        if found is None:
            return
        k, c = found
        channels = step["channels"]
        listed = [h for h in channels if h in self.model.channels] if isinstance(channels, list) else channels
        ids = [self.channel_id(h) for h in listed] if isinstance(listed, list) else listed
        outcome = self.model.join(k, c, listed)
        self.send(k, encode_packet(2, self.nsp(c), ["join", {"channels": ids}]))
        self.send(k, encode_packet(0, BARRIER))
        self.deliveries(outcome, f"join {show(channels)} on connection {k} in community {c}")

    def _sio_chat(self, step: dict[str, Any]) -> None:
        found = self._socket(step)
        h = step.get("channel")
        if found is None or h not in self.model.channels:
            return
        k, c = found
        action, content = step.get("chatType", "new"), _content(step.get("content"))
        data: dict[str, Any] = {"chatType": action, "channelId": self.channel_id(h)}
        if "chat" in step:
            data["chatId"] = step["chat"]
        if content is not None:
            data["content"] = content
        ack = self.model.take_ack(k)
        outcome = (self.model.socket_chat(k, c, ack, action, h, step.get("chat"), content)
                   if self.model.has_socket(k, c) else Outcome())
        self.send(k, encode_packet(2, self.nsp(c), ["chat", data], ack))
        self.deliveries(outcome, f"chat {action} on connection {k} in community {c}")

    def _sio_invite(self, step: dict[str, Any]) -> None:
        found = self._socket(step)
        h, users = step["channel"], step["users"]
        if found is None or h not in self.model.channels:
            return
        k, c = found
        ack = self.model.take_ack(k)
        user = self.model.conns[k].user
        outcome = (self.model.invite(user, h, users, k, c, ack) if self.model.has_socket(k, c) and user is not None
                   else Outcome())
        data = {**self._channel_community(h), "channel_id": self.channel_id(h),
                "users": [self.run.user_ids[u] for u in users]}
        self.send(k, encode_packet(2, self.nsp(c), ["invite-users-to-channel", data], ack))
        self.deliveries(outcome, f"invite-users-to-channel on connection {k} in community {c}")

    def _sio_disconnect(self, step: dict[str, Any]) -> None:
        found = self._socket(step)
        if found is not None:
            k, c = found
            outcome = self.model.disconnect(k, c)
            self.send(k, encode_packet(1, self.nsp(c)))
            self.send(k, encode_packet(0, BARRIER))
            self.deliveries(outcome, f"DISCONNECT of connection {k} from community {c}")

    def _sio_close(self, step: dict[str, Any]) -> None:
        self.close_connection(step["conn"])

    # -- what the connections received ---------------------------------------------------

    def receive(self, k: int, timeout: float) -> Any:
        return self.target.socketio_receive(self.conn_name(k), timeout)

    def expected(self, outcome: Outcome) -> dict[int, list[Expected]]:
        return outcome.packets

    def expecting(self, pending: list[Expected]) -> str:
        return self.describe(pending[0])

    def unexpected(self, k: int, raw: Any) -> str:
        return f"connection {k} received an unexpected packet {show(decode_packet(raw))}"

    def describe(self, expected: Expected) -> str:
        data = self.bindings.resolve(expected.data)
        ack = f" {expected.ack}" if expected.ack is not None else ""
        return f"{expected.type}{ack} in {self.nsp(expected.community)} {show(data)}"

    def take(self, k: int, pending: list[Expected], raw: Any, what: str) -> None:
        """Packets arrive in order, an ack anywhere among them."""
        packet = decode_packet(raw)
        if packet["type"] == "invalid":
            self.fail(f"{what}: connection {k} received {show(packet['raw'])}, not a Socket.IO text packet")
        if packet["type"] == "ack":
            candidates = [e for e in pending if e.type == "ack" and e.ack == packet["id"]]
        else:
            candidates = [e for e in pending if e.type != "ack"][:1]
        if not candidates:
            self.fail(f"{what}: connection {k} received {show(packet)}, expected {self.describe(pending[0])}")
        expected = candidates[0]
        if packet["type"] != expected.type or packet["nsp"] != self.nsp(expected.community):
            self.fail(f"{what}: connection {k} expected {self.describe(expected)}, received {show(packet)}")
        try:
            match(expected.data, packet["data"], self.bindings)
        except Mismatch as mismatch:
            self.fail(f"{what}: connection {k} received {expected.type} {show(packet['data'])}: {mismatch.describe()}")
        pending.remove(expected)

    def close_conn(self, name: str) -> None:
        self.target.socketio_close(name)


def _content(value: Any) -> Any:
    return "x" * (MAX_SOCKET_CONTENT + 1) if value == "LONG" else value
