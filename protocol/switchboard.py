"""What every runner of the core keeps between its sockets and the mounts.

A ``Switchboard`` is built from a ``MountTable`` and an ``Environment``. It
routes each HTTP request, upgrade and datagram to the mount that claims it,
remembers which mount owns each open connection and that mount's state for
it, keeps one ``ChannelRegistry`` per mount (derived from the table, never
listed apart), and turns the events actions return into deliveries: one
payload plus the connection ids that receive it. It does no I/O, so the
trio reference server, the ASGI app, the asyncio and threaded examples, the
conformance kit's in-process target and the tests all run the core through
this one object and differ only in how they move bytes::

    board = Switchboard(mount_table, env)
    outcome = run(board.handle_request(request))          # any protocol's HTTP
    publish(outcome.changes); send(outcome.response)
    accepted = run(board.accept(request, "c1"))           # an upgrade
    publish(accepted.events)                              # (or a refusal: an HttpResponse)
    publish(run(board.handle_message("c1", frame)))       # each message
    publish(board.closed("c1"))                           # the end

    def publish(events):
        for payload, connection_ids in board.deliveries(events):
            for connection in connection_ids:              # encode once, send to many
                sockets[connection].send_text(payload)

Actions are generators (``run`` drives one: ``operations.run_sync``, or an
async loop that awaits each operation). The switchboard's bookkeeping
changes only when an action completes and in ``deliveries`` and
``closed``, never in between, so an event loop may run many actions at once.
"""

from __future__ import annotations

from typing import Any, Iterable, Iterator, Sequence

import msgspec

from .channels import (Audience, Binary, ChannelLimit, ChannelRegistry, ChannelRoom, CloseConnection, Deliver,
                       Follow, IdentifyConnection, UserRoom)
from .environment import Environment
from .errors import LocalProtocolError
from .http import HttpRequest, HttpResponse, json_response
from .mounts import Accepted, DatagramOutcome, Event, HttpOutcome, Mount, MountTable, UploadForm
from .operations import SESSION, Action, DeleteSession, DeleteSessions, GetSession, GetUser, Operation, Session, User
from .permissions.live import ROLE_CACHE_MS, ROLE_CACHE_SIZE, CurrentRules, RoleChanged, RulesChanged, UserRole
from .permissions.rules import DEFAULT_RULES, RuleSet
from .permissions.store import load_rules
from .admin.live import ConnectionCounts, UserConnections
from .sessions import Revoked, SessionCache
from .socketio.engineio_requests import BAD_REQUEST as ENGINEIO_BAD_REQUEST

__all__ = ["Switchboard", "Opened"]



def _no_engineio() -> HttpResponse:
    return json_response(
        501, {"code": ENGINEIO_BAD_REQUEST, "message": "This server runs no Engine.IO transport (satchel serve does)"}
    )


class Opened(msgspec.Struct):
    """An open connection: the mount that owns it and that mount's state."""

    mount: Mount
    state: Any


class _Context:
    """A renderer's view (``mounts.RenderContext``): the rules in force and
    its own mount's connections, with their states."""

    __slots__ = ("_board", "_registry", "memo")

    def __init__(self, board: Switchboard, registry: ChannelRegistry) -> None:
        self._board = board
        self._registry = registry
        #: the renderer's own memo (see ``mounts.RenderContext``)
        self.memo: dict[Any, Any] = {}

    @property
    def version(self) -> int:
        return self._registry.version

    @property
    def rules(self) -> RuleSet:
        return self._board.rules

    def recipients(self, audience: Audience) -> list[tuple[str, Any]]:
        opened = self._board._connections
        return [(c, opened[c].state) for c in self._registry.resolve(audience) if c in opened]

    def now_ms(self) -> int:
        return self._board.env.now_ms()


class Switchboard:
    """Routes requests and connections to mounts, and events to connections.

    ``rules`` is the rule set in force (``satchel.protocol.permissions``):
    the default until ``load_rules`` has run, then what the store holds, then
    each ``RulesChanged`` an action returns. Actions that ``yield
    CurrentRules()`` get it from here; renderers get it in their context.

    ``max_connections_per_user`` bounds a user's open connections over every
    mount (``None``: no bound; ``user_has_room`` is the rule, for a
    transport's upgrade and an action's ``UserRoom`` alike); each registry's
    ``max_channels`` the channels of one connection (``ChannelLimit``).
    """

    __slots__ = ("mounts", "env", "registries", "rules", "rules_revision", "sessions", "max_connections_per_user",
                 "across_processes", "_connections", "_room_held",
                 "_datagram_state", "_contexts", "_roles", "_role_changes")

    def __init__(self, mounts: MountTable, env: Environment, rules: RuleSet = DEFAULT_RULES) -> None:
        self.mounts = mounts
        self.env = env
        self.rules = rules
        self.rules_revision = 0
        self.max_connections_per_user: int | None = None
        #: Set by a broker-backed bus: ``Follow`` goes to the runner, which
        #: waits for the broker; otherwise it is answered here, at once.
        self.across_processes = False
        #: mount name -> the registry of that mount's open connections
        self.registries: dict[str, ChannelRegistry] = {mount.name: ChannelRegistry() for mount in mounts}
        self._connections: dict[str, Opened] = {}
        #: user id -> the connections a ``UserRoom`` admitted whose sign-in
        #: (``IdentifyConnection``) is not applied yet: they count against
        #: the bound already, or two concurrent sign-ins of one user could
        #: each pass while the other's publish waits (ordering.py)
        self._room_held: dict[str, set[str]] = {}
        #: user id -> (its role, None: no such user; when it was read): ``UserRole``
        self._roles: dict[str, tuple[str | None, int]] = {}
        #: how many ``RoleChanged`` were applied (a read begun before one is not kept)
        self._role_changes = 0
        #: the sessions read lately (``GetSession`` answered here; ``sessions.py``)
        self.sessions = SessionCache()
        self._contexts = {mount.name: _Context(self, self.registries[mount.name]) for mount in mounts}
        datagrams = mounts.datagram_mount
        # A server's datagram memory starts with it (the inbox refuses
        # datagrams older than the server's start).
        self._datagram_state = datagrams.datagram_state(env.now_ms()) if datagrams is not None else None

    def __len__(self) -> int:
        return len(self._connections)

    def connection_counts(self) -> dict[str, int]:
        """The open connections of each mount that takes connections, by its
        name (what an action's ``admin.live.ConnectionCounts`` is answered)."""
        return {mount.name: len(self.registries[mount.name]) for mount in self.mounts
                if type(mount).accept is not Mount.accept}

    def user_connections(self, user_id: str) -> list[tuple[str, str]]:
        """(mount name, connection id) of every open connection of ``user_id``
        (what ``admin.live.UserConnections`` is answered)."""
        audience = Audience(user_id=user_id)
        return [(name, connection) for name, registry in self.registries.items()
                for connection in registry.resolve(audience)]

    def user_has_room(self, protocol: str, connection: str, user_id: str | None) -> bool:
        """Whether ``connection`` (of mount ``protocol``) may be ``user_id``'s:
        the user's other open connections, over every mount, are fewer than
        ``max_connections_per_user``. A connection registered as the user's
        already (a websocket upgrade, counted as it is accepted) is not
        counted against itself."""
        bound = self.max_connections_per_user
        if bound is None or user_id is None:
            return True
        count = sum(registry.connection_count(user_id) for registry in self.registries.values())
        registry = self.registries.get(protocol)
        if registry is not None and registry.user_of(connection) == user_id:
            count -= 1
        held = self._room_held.get(user_id)
        if held:
            count += len(held) - (connection in held)
        return count < bound

    def _hold_room(self, connection: str, user_id: str) -> None:
        self._room_held.setdefault(user_id, set()).add(connection)

    def _release_room(self, connection: str, user_id: str | None = None) -> None:
        """Forget ``connection``'s admitted sign-in (applied, or the connection
        ended); without ``user_id``, whichever user it was held for."""
        users = [user_id] if user_id is not None else [u for u, held in self._room_held.items() if connection in held]
        for user in users:
            held = self._room_held.get(user)
            if held is not None:
                held.discard(connection)
                if not held:
                    del self._room_held[user]

    def answer_limit(self, operation: ChannelLimit | UserRoom) -> ChannelRoom | bool:
        """What ``operation`` is answered (a harness that drives actions
        outside the switchboard asks here too)."""
        registry = self.registries.get(operation.protocol)
        if type(operation) is UserRoom:
            admitted = self.user_has_room(operation.protocol, operation.connection, operation.user_id)
            if admitted and self.max_connections_per_user is not None and operation.user_id is not None:
                self._hold_room(operation.connection, operation.user_id)
            return admitted
        if registry is None or operation.connection not in registry:
            return ChannelRoom()
        return registry.room(operation.connection, operation.channels)  # type: ignore[union-attr]

    # -- the rules in force ----------------------------------------------------

    def load_rules(self) -> Action[RuleSet]:
        """The action that makes the stored rules the ones in force (a server
        runs it once as it starts)."""
        rules, revision = yield from load_rules()
        self.rules, self.rules_revision = rules, revision
        return rules

    def _answered(self, action: Action[Any]) -> Action[Any]:
        """``action``, with its ``CurrentRules``, ``UserRole`` and
        ``GetSession`` answered here, and its revocations of sessions
        (``DeleteSession``, ``DeleteSessions``) told to the session cache."""
        try:
            operation: Operation = next(action)
            while True:
                kind = type(operation)
                if kind is CurrentRules:
                    operation = action.send(self.rules)
                elif kind is UserRole:
                    operation = action.send((yield from self._role_of(operation.user_id)))  # type: ignore[attr-defined]
                elif kind is GetSession:
                    operation = action.send((yield from self._session_of(operation)))  # type: ignore[arg-type]
                elif kind is DeleteSession or kind is DeleteSessions:
                    operation = action.send((yield from self._revoke(operation)))
                elif kind is ChannelLimit or kind is UserRoom:  # a subscribe's or a sign-in's: rare
                    operation = action.send(self.answer_limit(operation))  # type: ignore[arg-type]
                elif kind is Follow and not self.across_processes:
                    operation = action.send(None)
                elif kind is ConnectionCounts or kind is UserConnections:  # the admin API's, rare: last
                    operation = action.send(self.connection_counts() if kind is ConnectionCounts
                                            else self.user_connections(operation.user_id))  # type: ignore[attr-defined]
                else:
                    operation = action.send((yield operation))
        except StopIteration as done:
            return done.value

    def _session_of(self, operation: GetSession) -> Action[Session | None]:
        sessions = self.sessions
        now = self.env.now_ms()
        cached = sessions.get(operation.token_hash, now)
        if cached is not None:
            return cached
        generation = sessions.generation
        session: Session | None = yield operation
        if session is not None and session.kind == SESSION and session.token_hash == operation.token_hash:
            sessions.remember(session, now, generation)
        return session

    def _revoke(self, operation: Operation) -> Action[Any]:
        if type(operation) is DeleteSession:
            revoked = Revoked(token_hash=operation.token_hash)  # type: ignore[attr-defined]
        else:
            revoked = Revoked(user_id=operation.user_id, kind=operation.kind)  # type: ignore[attr-defined]
        # Forgotten before the rows go (no request is served from the cache
        # meanwhile) and after (a read that raced the delete is dropped),
        # then told to the listeners (a broker, for the other nodes).
        self.sessions.forget(revoked)
        result = yield operation
        self.sessions.revoked(revoked)
        return result

    def _role_of(self, user_id: str) -> Action[str | None]:
        now = self.env.now_ms()
        known = self._roles.get(user_id)
        if known is not None and now - known[1] < ROLE_CACHE_MS:
            return known[0]
        changes = self._role_changes
        user: User | None = yield GetUser(user_id)
        role = None if user is None else user.role
        if changes == self._role_changes:  # else a newer role may have arrived meanwhile: not kept
            self._remember_role(user_id, role, now)
        return role

    def _remember_role(self, user_id: str, role: str | None, now: int) -> None:
        roles = self._roles
        roles.pop(user_id, None)
        if len(roles) >= ROLE_CACHE_SIZE:
            del roles[next(iter(roles))]  # the one read longest ago
        roles[user_id] = (role, now)

    def _context(self, mount: Mount) -> _Context:
        return self._contexts[mount.name]

    # -- HTTP ----------------------------------------------------------------

    def mount_for(self, request: HttpRequest) -> Mount | None:
        """The mount that answers ``request`` (``None``: nobody claims it)."""
        return self.mounts.for_request(request)

    def streams_body(self, request: HttpRequest) -> bool:
        """Whether ``request``'s body is an upload to stream to disk."""
        mount = self.mounts.for_request(request)
        return mount is not None and mount.streams_body(request)

    def handle_request(self, request: HttpRequest, form: UploadForm | None = None) -> Action[HttpOutcome]:
        """The action answering ``request``, whichever mount claims it; a
        request nobody claims answers 404 in the neutral format."""
        if self.mounts.for_engineio(request) is not None:
            # A runner that calls this for an Engine.IO path has no Engine.IO
            # transport (the ASGI app, the examples): say so, in engine.io's format.
            return HttpOutcome(_no_engineio())
        mount = self.mounts.for_request(request)
        if mount is None:
            return HttpOutcome(json_response(404, {"message": "Not found"}))
        return (yield from self._answered(mount.handle_request(request, self.env, form)))

    def error_response(self, request: HttpRequest | None, status: int, message: str) -> HttpResponse:
        """A transport-level error for ``request`` (``None``: its head could
        not even be read) in the format of the mount that claims it (of
        Engine.IO, on an Engine.IO path), else in the neutral ``{"message": ...}``;
        with the CORS headers that mount's own answers would carry
        (``Mount.cors_headers``), so that a browser reads the error instead
        of a network failure."""
        if request is None:
            return json_response(status, {"message": message})
        engineio = self.mounts.for_engineio(request)
        if engineio is not None:
            # An Engine.IO path: engine.io's own error body (a request too large for it, say).
            mount: Mount | None = engineio[0]
            response = json_response(status, {"code": ENGINEIO_BAD_REQUEST, "message": message})
        else:
            mount = self.mounts.for_request(request) or self.mounts.for_upgrade(request)
            if mount is None:
                return json_response(status, {"message": message})
            response = mount.error_response(status, message)
        if request.header("origin") is not None:
            cors = mount.cors_headers(request)
            if cors and not any(name.lower() == "access-control-allow-origin" for name, _ in response.headers):
                response = HttpResponse(response.status, [*response.headers, *cors], response.body)
        return response

    # -- connections -------------------------------------------------------------

    def wants_upgrade(self, request: HttpRequest) -> bool:
        """Whether some mount takes a websocket upgrade of ``request``."""
        return self.mounts.for_upgrade(request) is not None

    def engineio(self, request: HttpRequest) -> tuple[Mount, Any] | None:
        """The mount serving ``request`` as Engine.IO and its
        ``EngineIoConfig`` (``None``: not an Engine.IO request). A transport
        that speaks Engine.IO asks this before routing a request or upgrade."""
        return self.mounts.for_engineio(request)

    def accept(
        self, request: HttpRequest, connection: str, mount: Mount | None = None
    ) -> Action[Accepted | HttpResponse]:
        """The action deciding an upgrade of ``request`` as ``connection``
        (or, with ``mount``, an Engine.IO handshake that mount serves).

        When the mount accepts, the connection is registered (under the
        mount, for its user) as the action completes; publish
        ``Accepted.events`` then. A refusal is the ``HttpResponse`` to send.
        """
        if connection in self._connections:
            raise LocalProtocolError(f"connection {connection!r} is already open")
        if mount is None:
            if self.mounts.for_engineio(request) is not None:
                return _no_engineio()
            mount = self.mounts.for_upgrade(request)
        if mount is None:
            return json_response(404, {"message": "No websocket here"})
        accepted = yield from self._answered(mount.accept(request, connection, self.env))
        if isinstance(accepted, Accepted):
            self._connections[connection] = Opened(mount, accepted.state)
            self.registries[mount.name].add_connection(connection, accepted.user_id)
        return accepted

    def opened(self, connection: str) -> Opened | None:
        """The open connection ``connection``: its mount and state."""
        return self._connections.get(connection)

    def handle_message(self, connection: str, message: str | bytes) -> Action[list[Event]]:
        """The action answering one message of ``connection`` (none, once it
        has closed)."""
        opened = self._connections.get(connection)
        if opened is None:
            return []
        return (yield from self._answered(opened.mount.handle_message(opened.state, message, self.env)))

    def deadline_ms(self, connection: str) -> int | None:
        """When ``connection``'s timer is due (``env.now_ms()`` time), if it has one."""
        opened = self._connections.get(connection)
        return opened.mount.deadline_ms(opened.state) if opened is not None else None

    def on_timer(self, connection: str) -> Action[list[Event]]:
        """The action run when ``connection``'s deadline has passed."""
        opened = self._connections.get(connection)
        if opened is None:
            return []
        return (yield from self._answered(opened.mount.on_timer(opened.state, self.env)))

    def internal_error(self, connection: str) -> bytes | None:
        """What to tell ``connection`` when its message crashed an action."""
        opened = self._connections.get(connection)
        return opened.mount.internal_error(opened.state) if opened is not None else None

    def unavailable(self, connection: str, message: str | bytes) -> bytes | None:
        """What to tell ``connection`` when the store could not answer ``message``."""
        opened = self._connections.get(connection)
        return opened.mount.unavailable(opened.state, message) if opened is not None else None

    def unavailable_events(self, connection: str, message: str | bytes) -> list[Event]:
        """The events answering an Engine.IO ``message`` the store could not answer."""
        opened = self._connections.get(connection)
        return opened.mount.unavailable_events(opened.state, message) if opened is not None else []

    def closed(self, connection: str) -> list[Event]:
        """Forget ``connection`` (it ended, whatever ended it); the events to
        publish. Idempotent: a second call returns nothing."""
        opened = self._connections.pop(connection, None)
        if self._room_held:
            self._release_room(connection)
        if opened is None:
            return []
        self.registries[opened.mount.name].remove_connection(connection)
        return opened.mount.closed(opened.state)

    # -- datagrams ---------------------------------------------------------------

    @property
    def datagram_state(self) -> Any:
        """What the datagram mount keeps from the server's start (the inbox's
        replay guard); a broker-backed bus replaces it with one that shares
        its admissions with the other processes."""
        return self._datagram_state

    @datagram_state.setter
    def datagram_state(self, state: Any) -> None:
        self._datagram_state = state

    @property
    def takes_datagrams(self) -> bool:
        """Whether a mount answers UDP datagrams."""
        return self.mounts.datagram_mount is not None

    def handle_datagram(self, datagram: bytes) -> Action[DatagramOutcome]:
        """The action answering one datagram (dropped when no mount takes them)."""
        mount = self.mounts.datagram_mount
        if mount is None:
            return DatagramOutcome()
        return (yield from self._answered(mount.handle_datagram(self._datagram_state, datagram, self.env)))

    def handle_datagrams(self, datagrams: Sequence[bytes]) -> Action[list[DatagramOutcome]]:
        """The action answering datagrams read together: one outcome each, in order."""
        mount = self.mounts.datagram_mount
        if mount is None:
            return [DatagramOutcome() for _ in datagrams]
        return (yield from self._answered(mount.handle_datagrams(self._datagram_state, datagrams, self.env)))

    # -- fan-out -------------------------------------------------------------------

    def _role_changed(self, event: RoleChanged) -> None:
        """Every open connection of the user takes its new role."""
        self._role_changes += 1
        self._remember_role(event.user_id, event.role, self.env.now_ms())
        opened = self._connections
        for mount in self.mounts:
            for connection in self.registries[mount.name].resolve(Audience(user_id=event.user_id)):
                current = opened.get(connection)
                if current is not None:
                    current.state = current.mount.role_changed(current.state, event.role)

    def deliveries(
        self, events: Iterable[Event]
    ) -> Iterator[tuple[bytes | Binary | CloseConnection, list[str]]]:
        """Apply ``events`` in order; yield each delivery as (payload, the ids
        of the connections that receive it). A payload is encoded once, by
        the mount; the caller frames it once per kind of connection. A
        payload may also be ``Binary`` (send it as a binary message) or a
        ``CloseConnection`` (end that connection, after what came before)."""
        registries = self.registries
        for event in self.mounts.hub_events(events, self._context):
            if type(event) is RulesChanged:
                # Everything after it in these events is decided by the new rules.
                self.rules, self.rules_revision = RuleSet.from_json(event.rules), event.revision
                continue
            if type(event) is RoleChanged:
                self._role_changed(event)  # type: ignore[arg-type]
                continue
            registry = registries.get(event.protocol)  # type: ignore[union-attr]
            if registry is None:
                continue  # a protocol this server does not mount
            if type(event) is IdentifyConnection and self._room_held:
                self._release_room(event.connection, event.user_id)  # type: ignore[union-attr]
            recipients = registry.apply(event)
            if recipients:
                kind = type(event)
                if kind is Deliver:
                    yield event.payload, recipients  # type: ignore[union-attr]
                elif kind is CloseConnection:
                    yield event, recipients  # type: ignore[misc]
