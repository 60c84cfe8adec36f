"""Drives Asnity through the pure core, the way a server would, with no I/O.

``Asnity`` is runner, hub and client at once: the standard mount table
behind a ``Switchboard`` on a ``MemoryStore`` (passwords to a fast stand-in
for argon2), a clock the test moves, HTTP requests with Bearer tokens and
the refresh cookie, and sockets registered as the Socket.IO layer will
register them (``admit``, then ``handle_event``), each recording the
Socket.IO packets it is delivered, decoded.
"""

from __future__ import annotations

import itertools
import json
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from satchel.protocol.asnity import socket_events
from satchel.protocol.asnity.rooms import PROTOCOL, namespace_of
from satchel.protocol.backpack import BackpackConfig
from satchel.protocol.channels import ChannelLimit, Follow, UserRoom
from satchel.protocol.environment import Environment
from satchel.protocol.http import HttpRequest, HttpResponse
from satchel.protocol.mount_table import standard_mounts
from satchel.protocol.operations import (
    HashPassword,
    Operation,
    VerifyPassword,
    run_sync,
)
from satchel.protocol.records import object_id
from satchel.protocol.socketio.packets import Event, PacketDecoder
from satchel.protocol.switchboard import Switchboard
from satchel.storage_backends.memory import MemoryStore

API_KEY = "test-api-key"
START_MS = 1_670_396_645_000  # 2022-12-07T07:04:05Z, 16:04 in Korea


class Clock:
    """A clock that stands still until the test moves it."""

    def __init__(self, start_ms: int = START_MS) -> None:
        self.now = start_ms

    def advance(self, ms: int) -> None:
        self.now += ms


def environment(clock: Clock) -> Environment:
    ids = itertools.count(1)
    tokens = itertools.count(1)
    return Environment(
        now_ms=lambda: clock.now,
        new_id=lambda: object_id(clock.now // 1000, b"\x00\x00\x00\x00\x01", next(ids)),
        new_token=lambda: f"tok{next(tokens):040d}",
    )


class Response:
    """An HTTP response, its body decoded."""

    def __init__(self, response: HttpResponse) -> None:
        self.status = response.status
        self.headers = response.headers
        self.json: Any = json.loads(response.body) if response.body else None

    def header(self, name: str) -> str | None:
        return next((value for key, value in self.headers if key == name), None)

    @property
    def result(self) -> Any:
        assert self.json["statusCode"] == 200, self.json
        return self.json["result"]

    def __repr__(self) -> str:
        return f"<{self.status} {self.json}>"


@dataclass
class Account:
    """A signed-in user: id, email, access token and refresh token."""

    id: str
    email: str
    token: str
    refresh: str


@dataclass
class Socket:
    """A socket admitted to a community's namespace."""

    connection: str
    token: str
    community_id: str


class Asnity:
    def __init__(self) -> None:
        self.store = MemoryStore()
        self.clock = Clock()
        self.env = environment(self.clock)
        self.board = Switchboard(standard_mounts(BackpackConfig(api_key=API_KEY)), self.env)
        self.received: dict[str, list[Any]] = defaultdict(list)
        self._connections = itertools.count(1)

    # -- running the core ---------------------------------------------------

    def execute(self, operation: Operation) -> Any:
        if isinstance(operation, HashPassword):
            return "fake$" + operation.password
        if isinstance(operation, VerifyPassword):
            return bool(operation.password_hash) and operation.password_hash == "fake$" + operation.password
        if isinstance(operation, (ChannelLimit, UserRoom)):
            return self.board.answer_limit(operation)  # as the switchboard answers it
        if isinstance(operation, Follow):
            return None  # one process: as the switchboard answers it
        return self.store.execute_sync(operation)

    def run(self, action: Any) -> Any:
        return run_sync(action, self.execute)

    def publish(self, events: Any) -> None:
        for payload, recipients in self.board.deliveries(events):
            for connection in recipients:
                self.received[connection].append(payload)

    # -- HTTP ---------------------------------------------------------------

    def http(
        self,
        method: str,
        target: str,
        body: Any = None,
        *,
        token: str | None = None,
        headers: list[tuple[str, str]] | None = None,
        raw: bytes | None = None,
    ) -> Response:
        request_headers = list(headers or [])
        if token is not None:
            request_headers.append(("authorization", f"Bearer {token}"))
        payload = raw if raw is not None else (b"" if body is None else json.dumps(body).encode())
        if payload and not any(key == "content-type" for key, _ in request_headers):
            request_headers.append(("content-type", "application/json"))
        outcome = self.run(self.board.handle_request(HttpRequest(method, target, request_headers, payload)))
        self.publish(outcome.changes)
        self.last_changes = outcome.changes
        return Response(outcome.response)

    def signup(self, email: str, nickname: str = "nick", password: str = "password1") -> Response:
        return self.http("POST", "/api/user/auth/signup", {"id": email, "password": password, "nickname": nickname})

    def signin(self, email: str, password: str = "password1") -> Response:
        return self.http("POST", "/api/user/auth/signin", {"id": email, "password": password})

    def account(self, email: str, nickname: str | None = None, password: str = "password1") -> Account:
        """Sign up (unless registered already) and sign in."""
        signed_up = self.signup(email, nickname or email.split("@")[0][:8].ljust(2, "_"), password)
        assert signed_up.status in (201, 403), signed_up
        signed_in = self.signin(email, password)
        assert signed_in.status == 201, signed_in
        refresh = signed_in.header("set-cookie").split(";")[0].split("=", 1)[1]
        me = self.http("GET", "/api/user/auth/me", token=signed_in.result["accessToken"]).result
        return Account(me["_id"], email, signed_in.result["accessToken"], refresh)

    def community(self, owner: Account, name: str = "community", members: tuple[Account, ...] = ()) -> str:
        created = self.http("POST", "/api/community", {"name": name}, token=owner.token)
        assert created.status == 201, created
        community_id = created.result["_id"]
        if members:
            added = self.http(
                "POST", f"/api/communities/{community_id}/users", {"users": [m.id for m in members]}, token=owner.token
            )
            assert added.status == 201, added
        return community_id

    def channel(self, owner: Account, community_id: str, name: str = "channel", private: bool = False) -> str:
        created = self.http(
            "POST",
            "/api/channel",
            {"communityId": community_id, "name": name, "isPrivate": private, "type": "Channel"},
            token=owner.token,
        )
        assert created.status == 201, created
        return created.result["_id"]

    def post_chat(self, account: Account, channel_id: str, content: str = "hello") -> Response:
        return self.http("POST", f"/api/channels/{channel_id}/chat", {"type": "TEXT", "content": content}, token=account.token)

    # -- sockets ------------------------------------------------------------

    def connect(self, account: Account | str, community_id: str) -> Socket | socket_events.Admission:
        """A socket of ``account`` (or a raw token) to the community's namespace."""
        token = account if isinstance(account, str) else f"Bearer {account.token}"
        connection = f"s{next(self._connections)}"
        admission = self.run(socket_events.admit(token, namespace_of(community_id), connection, self.env))
        if admission.error is not None:
            return admission
        self.board.registries[PROTOCOL].add_connection(connection, admission.user.id)
        self.publish(admission.events)
        return Socket(connection, token, community_id)

    def emit(self, socket: Socket, name: str, data: Any) -> socket_events.SocketOutcome:
        outcome = self.run(
            socket_events.handle_event(socket.token, socket.community_id, socket.connection, name, data, self.env)
        )
        self.publish(outcome.events)
        return outcome

    def disconnect(self, socket: Socket) -> None:
        self.board.registries[PROTOCOL].remove_connection(socket.connection)

    def take(self, socket: Socket) -> list[Event]:
        """The Socket.IO packets ``socket`` was delivered since the last take."""
        packets = []
        for payload in self.received.pop(socket.connection, []):
            packet = PacketDecoder().receive(payload.decode())
            assert isinstance(packet, Event), packet
            packets.append(packet)
        return packets


@dataclass
class World:
    """Alice manages a community with Bob in it, a public and a private
    channel; Carol has an account and nothing else."""

    asnity: Asnity
    alice: Account
    bob: Account
    carol: Account
    community: str
    public: str
    private: str


def world() -> World:
    asnity = Asnity()
    alice = asnity.account("alice@example.com", "alice")
    bob = asnity.account("bob@example.com", "bob")
    carol = asnity.account("carol@example.com", "carol")
    community = asnity.community(alice, "commu", (bob,))
    public = asnity.channel(alice, community, "general")
    private = asnity.channel(alice, community, "secret", private=True)
    return World(asnity, alice, bob, carol, community, public, private)
