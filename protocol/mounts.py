"""The protocol seam: one ``Mount`` per protocol, and an ordered table of them.

Theory of operation. A server speaks several protocols on one port (and one
UDP port). Each protocol package exposes a ``Mount``: an object that says
which HTTP requests and which websocket upgrades it claims (by path,
subprotocol or header), handles them as actions, handles the messages and
the close of the connections it accepted, renders every ``Change`` for its
own subscribers (or declines), formats its own errors, and says whether a
request's body streams to disk (uploads). A ``MountTable`` holds the mounts
in order - specific paths first, Backpack's catch-all last - and is the only
thing a runner of the core reads: the reference server, the ASGI app, the
conformance kit's in-process target, the examples and the tests all hand a
table to a ``Switchboard`` (``switchboard.py``) and never name a protocol.
Adding a protocol is one package and one line in ``mount_table.py``.

Every HTTP action of every mount returns the same ``HttpOutcome``: the
response, the events its writes and deliveries produced (in order), and a
file to stream as the body, if any. A websocket upgrade a mount accepts
returns ``Accepted``: the mount's own state for that connection, the user it
belongs to (for audiences by user), the events to publish once it is
registered (a greeting), and the subprotocol and headers of the 101.

Mounts are configuration plus pure behaviour: they hold no per-connection
state (the switchboard keeps each connection's ``Accepted.state``) and do no
I/O. The methods of the base class claim nothing and refuse what they are
asked, so a mount overrides only what its protocol does.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Iterator, Protocol, Sequence, Union

import msgspec

from .changes import Change, DocumentChange, EntryChange
from .channels import (
    Audience,
    CloseChannel,
    CloseConnection,
    Deliver,
    HubEvent,
    IdentifyConnection,
    Subscribe,
    SubscribeAudience,
    Unsubscribe,
    UnsubscribeAudience,
    UnsubscribeMatching,
)
from .environment import Environment
from .errors import LocalProtocolError
from .files import FileBody
from .http import HttpRequest, HttpResponse, json_response
from .permissions.live import RoleChanged, RulesChanged
from .permissions.rules import DEFAULT_RULES, RuleSet

__all__ = [
    "Event", "HttpOutcome", "Accepted", "DatagramOutcome", "Mount", "MountTable", "UploadForm", "RenderContext",
    "NO_CONTEXT",
]

#: What actions hand to the hub: writes (each mount renders them) and hub
#: instructions (deliveries and subscription changes), in order.
Event = Union[
    Change, DocumentChange, EntryChange, Deliver, Subscribe, Unsubscribe, SubscribeAudience, UnsubscribeAudience,
    UnsubscribeMatching, CloseChannel, IdentifyConnection, CloseConnection, RulesChanged, RoleChanged,
]
#: The hub instructions among them (everything but writes).
_HUB_EVENTS = (Deliver, Subscribe, Unsubscribe, SubscribeAudience, UnsubscribeAudience, UnsubscribeMatching,
               CloseChannel, IdentifyConnection, CloseConnection)

#: A multipart body the transport parsed and streamed to disk
#: (``satchel.protocol.backpack.uploads.UploadForm``); opaque to the seam.
UploadForm = Any


class HttpOutcome(msgspec.Struct):
    """What every mount's HTTP action returns.

    ``response`` is sent as it is (or, with ``file``, as the head of the
    file's bytes, which the transport streams from its file store);
    ``changes`` are the events to publish, in order, once the action is done.
    """

    response: HttpResponse
    changes: list[Event] = []
    file: FileBody | None = None


class Accepted(msgspec.Struct):
    """A websocket upgrade a mount accepted.

    ``state`` is the mount's own value for this connection, handed back to
    its ``handle_message`` and ``closed``; ``user_id`` the user it belongs
    to (``None``: nobody in particular), for audiences by user; ``events``
    are published once the connection is registered (a greeting).
    ``subprotocol`` is echoed in ``Sec-WebSocket-Protocol`` (it must be one
    the client offered); ``headers`` are added to the 101 response.
    """

    state: Any
    user_id: str | None
    events: list[Event] = []
    subprotocol: str | None = None
    headers: list[tuple[str, str]] = []


class DatagramOutcome(msgspec.Struct):
    """What a datagram action returns: the answer to send back (``None``:
    nothing) and the events its writes produced."""

    answer: bytes | None = None
    changes: list[Event] = []


class RenderContext(Protocol):
    """What a renderer may know beyond the change: the rules in force and
    who, among its own mount's connections, is in an audience - with each
    one's state, for renderers that re-check a change per subscriber (its
    user, role, subscriptions).

    A renderer that derives something costly from its recipients (a fan-out
    grouping thousands of subscribers) may keep it in ``memo``, its own
    dictionary, for as long as ``version`` and what it read of their states
    are unchanged: ``version`` changes whenever a connection of the mount
    opens, closes, changes user, or joins or leaves a channel. A context
    without these attributes keeps nothing between renders.
    """

    rules: RuleSet
    memo: dict[Any, Any]
    version: int

    def recipients(self, audience: Audience) -> list[tuple[str, Any]]:
        """(connection id, the mount's state for it) of each of this mount's
        connections in ``audience``."""
        ...

    def now_ms(self) -> int:
        """The clock, for rules that use ``$NOW``."""
        ...


class _NoConnections:
    """The context of a renderer with nobody connected (a table used alone)."""

    rules = DEFAULT_RULES

    def recipients(self, audience: Audience) -> list[tuple[str, Any]]:
        return []

    def now_ms(self) -> int:
        raise LocalProtocolError("a renderer without a server has no clock")


NO_CONTEXT: RenderContext = _NoConnections()


class Mount:
    """One protocol's claim on a server. Subclass and override what the
    protocol does; the defaults claim nothing.

    ``name`` names the protocol: the connections a mount accepts are
    registered under it, and a ``Deliver`` whose ``protocol`` is this name
    reaches them. Every method is pure: what a mount needs from the outside
    arrives as arguments (``env`` for the clock and entropy), and what it
    needs stored or hashed it yields (actions: ``satchel.protocol.operations``).
    """

    name: str = ""

    #: What this mount serves, for people - ``(path, what is there)`` pairs
    #: that the landing page lists (``admin.landing``). Never consulted for
    #: routing: ``claims_request`` and ``claims_upgrade`` decide.
    paths: tuple[tuple[str, str], ...] = ()

    # -- HTTP ----------------------------------------------------------------

    def claims_request(self, request: HttpRequest) -> bool:
        """Whether this mount answers ``request`` (consulted in table order)."""
        return False

    def streams_body(self, request: HttpRequest) -> bool:
        """Whether ``request``'s body (only its head has arrived) is a multipart
        upload for the transport to stream to disk and hand to
        ``handle_request`` as ``form``, instead of buffering it."""
        return False

    def handle_request(
        self, request: HttpRequest, env: Environment, form: UploadForm | None = None
    ) -> Iterator[Any]:
        """The action answering a claimed request: ``Action[HttpOutcome]``."""
        raise LocalProtocolError(f"mount {self.name!r} claims no HTTP requests")

    def error_response(self, status: int, message: str) -> HttpResponse:
        """A transport-level error (a body too large, a bad websocket
        handshake) on a path this mount claims, in the protocol's format."""
        return json_response(status, {"message": message})

    def cors_headers(self, request: HttpRequest) -> list[tuple[str, str]]:
        """The CORS headers this mount's own answers to ``request`` carry (its
        ``Origin`` allowed), which the switchboard adds to the transport's
        errors on its paths - a 413 a browser can read (none by default)."""
        return []

    # -- websockets ----------------------------------------------------------

    def claims_upgrade(self, request: HttpRequest) -> bool:
        """Whether this mount takes a websocket upgrade of ``request``."""
        return False

    def accept(self, request: HttpRequest, connection: str, env: Environment) -> Iterator[Any]:
        """The action deciding an upgrade: ``Action[Accepted | HttpResponse]``
        (an ``HttpResponse`` refuses it). ``connection`` is the id the
        connection will have in the hub."""
        raise LocalProtocolError(f"mount {self.name!r} claims no websocket upgrades")

    def handle_message(self, state: Any, message: str | bytes, env: Environment) -> Iterator[Any]:
        """The action answering one message of an accepted connection:
        ``Action[list[Event]]``."""
        raise LocalProtocolError(f"mount {self.name!r} has no websocket connections")

    def closed(self, state: Any) -> list[Event]:
        """The events of a connection that ended, whatever ended it."""
        return []

    def role_changed(self, state: Any, role: str) -> Any:
        """The state of a connection whose user now has ``role``
        (``RoleChanged``): a protocol whose connections are served by the
        rules returns one that carries the new role (the same object, or a
        new one to replace it). By default the state is kept."""
        return state

    def deadline_ms(self, state: Any) -> int | None:
        """When this connection's timer is next due, in ``env.now_ms()`` time
        (``None``: no timer). Asked after the connection opens and after each
        of its messages and timers."""
        return None

    def on_timer(self, state: Any, env: Environment) -> Iterator[Any]:
        """The action run when the connection's deadline has passed:
        ``Action[list[Event]]``."""
        return []
        yield  # an action is a generator

    def internal_error(self, state: Any) -> bytes | None:
        """The payload to send a connection whose message crashed its action
        (a bug, or a store that failed), in the protocol's format; ``None``
        sends nothing."""
        return None

    def unavailable(self, state: Any, message: str | bytes) -> bytes | None:
        """The payload to send a connection whose ``message`` could not be
        answered because the store cannot be reached now
        (``StoreUnavailable``): the protocol's 503-style error, which says
        a retry may succeed. By default, ``internal_error``'s."""
        return self.internal_error(state)

    def unavailable_events(self, state: Any, message: str | bytes) -> list[Event]:
        """``unavailable`` for an Engine.IO session's message: the events
        answering it (deliveries to the connection). None by default."""
        return []

    # -- Engine.IO ---------------------------------------------------------------

    def claims_engineio(self, request: HttpRequest) -> Any | None:
        """The ``satchel.protocol.socketio.EngineIoConfig`` of the Engine.IO
        endpoint ``request`` belongs to (a polling request or an upgrade under
        its path), or ``None``. The transport then runs Engine.IO - sessions,
        long-polling, the upgrade, heartbeats - and hands this mount each
        session as a connection (``accept`` at the handshake, whose request
        carries its headers and query) and each Engine.IO message as a
        message."""
        return None

    # -- fan-out ---------------------------------------------------------------

    def render(self, change: Change | DocumentChange | EntryChange, context: RenderContext) -> Sequence[Deliver]:
        """The deliveries to this mount's connections that ``change`` makes
        (none: the protocol does not show it). Each is encoded once - once
        per group of recipients that see it alike, where the rules make
        them differ (``context`` says who is there and the rules)."""
        return ()

    # -- datagrams -------------------------------------------------------------

    #: Whether this mount answers the server's UDP datagrams (at most one may).
    handles_datagrams = False

    def datagram_state(self, start_ms: int) -> Any:
        """What a server keeps for its datagrams from its start (a replay guard)."""
        return None

    def handle_datagram(self, state: Any, datagram: bytes, env: Environment) -> Iterator[Any]:
        """The action answering one datagram: ``Action[DatagramOutcome]``."""
        raise LocalProtocolError(f"mount {self.name!r} takes no datagrams")

    def handle_datagrams(self, state: Any, datagrams: Sequence[bytes], env: Environment) -> Iterator[Any]:
        """The action answering datagrams read together, one outcome each in
        order: ``Action[list[DatagramOutcome]]``. By default one after
        another; a mount whose store writes can share one (the inbox) does
        the batch at once."""
        outcomes = []
        for datagram in datagrams:
            outcomes.append((yield from self.handle_datagram(state, datagram, env)))
        return outcomes


class MountTable:
    """The mounts of one server, in the order they are consulted.

    A request goes to the first mount that claims it, an upgrade likewise;
    ``fallback`` answers a request nobody claims (404, in a neutral format).
    Names are unique: they key the per-protocol registries.
    """

    __slots__ = ("mounts", "_renderers", "_engineio", "_datagrams")

    def __init__(self, mounts: Iterable[Mount]) -> None:
        self.mounts: tuple[Mount, ...] = tuple(mounts)
        names = [mount.name for mount in self.mounts]
        if any(not name for name in names) or len(set(names)) != len(names):
            raise LocalProtocolError(f"mount names must be unique and non-empty: {names}")
        # Only mounts that override render take part in rendering changes.
        self._renderers = tuple(m for m in self.mounts if type(m).render is not Mount.render)
        # Likewise only mounts that override claims_engineio are asked about
        # Engine.IO - every request is (twice, by the reference server).
        self._engineio = tuple(m for m in self.mounts if type(m).claims_engineio is not Mount.claims_engineio)
        datagrams = [m for m in self.mounts if m.handles_datagrams]
        if len(datagrams) > 1:
            raise LocalProtocolError("at most one mount may take the server's datagrams")
        self._datagrams = datagrams[0] if datagrams else None

    def __iter__(self) -> Iterator[Mount]:
        return iter(self.mounts)

    def __len__(self) -> int:
        return len(self.mounts)

    def __getitem__(self, name: str) -> Mount:
        for mount in self.mounts:
            if mount.name == name:
                return mount
        raise KeyError(name)

    @property
    def names(self) -> list[str]:
        """The mounts' names, in order."""
        return [mount.name for mount in self.mounts]

    def for_request(self, request: HttpRequest) -> Mount | None:
        """The mount that answers ``request``, if any claims it.

        Asked several times per request (whether its body streams, which
        mount answers, the route label of the metrics) and ~6 us for a
        path only the catch-all claims: the answer is kept on the request
        (as ``HttpRequest.path`` keeps its path), for this table."""
        memo = request.__dict__
        known = memo.get("mount")
        if known is not None and known[0] is self:
            return known[1]
        found = None
        for mount in self.mounts:
            if mount.claims_request(request):
                found = mount
                break
        memo["mount"] = (self, found)
        return found

    def for_engineio(self, request: HttpRequest) -> tuple[Mount, Any] | None:
        """The mount that serves ``request`` as Engine.IO, and its settings."""
        for mount in self._engineio:
            config = mount.claims_engineio(request)
            if config is not None:
                return mount, config
        return None

    def for_upgrade(self, request: HttpRequest) -> Mount | None:
        """The mount that takes a websocket upgrade of ``request``, if any."""
        for mount in self.mounts:
            if mount.claims_upgrade(request):
                return mount
        return None

    @property
    def datagram_mount(self) -> Mount | None:
        """The mount that answers UDP datagrams, if one does."""
        return self._datagrams

    def hub_events(
        self, events: Iterable[Event], context: Callable[[Mount], RenderContext] | None = None
    ) -> Iterator[HubEvent | RulesChanged | RoleChanged]:
        """Hub instructions for ``events``, in order: every change rendered by
        every mount that shows it (``context(mount)`` is what each renderer
        may know; none by default), hub instructions and rule changes as
        they are."""
        renderers = self._renderers
        for event in events:
            if isinstance(event, (Change, DocumentChange, EntryChange)):
                for mount in renderers:
                    yield from mount.render(event, context(mount) if context is not None else NO_CONTEXT)
            elif isinstance(event, _HUB_EVENTS) or type(event) in (RulesChanged, RoleChanged):
                yield event
            else:
                raise LocalProtocolError(f"not an event: {event!r}")
