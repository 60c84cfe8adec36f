"""What the conformance kit drives: a ``Target``, and the in-process one.

A ``Target`` is a Backpack server seen from its clients. It holds cookie
jars by name (a jar is one browser: the session cookie a login sets goes
there, and requests and websocket upgrades made "as" that jar carry it) and
websocket connections by name. Every method is synchronous; a target that
does I/O (``satchel.transports.conformance_runner.UrlTarget``) waits itself.

``InProcessTarget`` is Satchel's own core - the standard mount table behind a
``Switchboard``, exactly as every server runs it - driven synchronously with
``run_sync``, against a store the caller hands in (``MemoryStore()`` from
``satchel.storage_backends.memory``, say). It needs no sockets, so the kit
runs against the core in milliseconds per example.

Socket.IO (the Asnity kit): ``socketio_open`` opens an Engine.IO connection
to ``/socket.io/`` (what ``board.accept`` does for an Engine.IO session),
``socketio_send`` hands it one Socket.IO packet as text (``0/nsp,{auth}``,
``2/nsp,1["chat",{...}]``), and ``socketio_receive`` returns the packets
delivered to it, as text, one at a time; ``socketio_close`` ends it. The
Engine.IO framing (open, ping/pong, the ``4`` of a message) is the
transport's, so there is none here; ``UrlTarget`` speaks it.

Why the store is handed in: the kit belongs with the protocols it models
(it is their executable description, and is pure), while stores belong to
``storage_backends``, which the core never imports. Anything with an
``execute_sync(operation)`` method will do.
"""

from __future__ import annotations

from collections import defaultdict, deque
from dataclasses import dataclass, field
from http.cookies import CookieError, SimpleCookie
from typing import Any, Protocol

import msgspec

__all__ = ["Target", "HttpReply", "NOTHING", "CLOSED", "CookieJars", "InProcessTarget"]


class _Marker:
    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


#: ``Target.receive``: nothing arrived in time.
NOTHING = _Marker("<nothing>")
#: ``Target.receive``: the server closed the connection.
CLOSED = _Marker("<closed>")


@dataclass
class HttpReply:
    """An HTTP response: status, lower-case headers, body bytes."""

    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""


class Target(Protocol):
    """A Backpack server under test, driven synchronously."""

    #: The API key clients of this server send (``Authorization: key <KEY>``).
    api_key: str

    def http(
        self, jar: str | None, method: str, path: str, body: bytes | None, *, key: str | None
    ) -> HttpReply:
        """Send one request as ``jar`` (``None``: no cookies), with
        ``Authorization: key <key>`` unless ``key`` is None, and a JSON
        content type when there is a body; store any cookie it sets in the jar."""
        ...

    def connect(self, jar: str | None, connection: str) -> int:
        """Open websocket ``connection`` with ``jar``'s cookies: 101 when
        accepted, else the status of the refusal."""
        ...

    def send(self, connection: str, frame: str | bytes) -> None:
        """Send one text (``str``) or binary (``bytes``) message."""
        ...

    def receive(self, connection: str, timeout: float) -> Any:
        """The next message ``connection`` received, decoded from JSON (the
        raw text if it is not JSON); ``NOTHING`` if none arrives within
        ``timeout`` seconds, ``CLOSED`` once the server closed it."""
        ...

    def disconnect(self, connection: str) -> None:
        """Close ``connection`` (a normal close) and wait until the server
        has seen it close, as far as the target can tell."""
        ...

    def close(self) -> None:
        """Release everything the target holds."""
        ...


class CookieJars:
    """Cookies by jar, as browsers keep them (names and values only)."""

    def __init__(self) -> None:
        self._jars: dict[str, dict[str, str]] = defaultdict(dict)

    def header(self, jar: str | None) -> str | None:
        """The ``Cookie`` header ``jar`` sends, if it holds any cookie."""
        if jar is None or not self._jars.get(jar):
            return None
        return "; ".join(f"{name}={value}" for name, value in self._jars[jar].items())

    def store(self, jar: str | None, set_cookie: str) -> None:
        """Keep (or, when it expires or is empty, drop) the cookie a
        ``Set-Cookie`` header value sets."""
        if jar is None:
            return
        parsed: SimpleCookie = SimpleCookie()
        try:
            parsed.load(set_cookie)
        except CookieError:
            return
        for name, morsel in parsed.items():
            if not morsel.value or morsel["max-age"] in ("0", 0):
                self._jars[jar].pop(name, None)
            else:
                self._jars[jar][name] = morsel.value


class InProcessTarget:
    """Satchel's core and a store, driven synchronously.

    ``store`` executes the core's storage operations (``execute_sync``).
    Passwords are "hashed" by a fast stand-in (argon2 would make each login
    take ~0.1 s); everything else is the real core: the mounts of
    ``standard_mounts`` (or ``mounts``) behind a ``Switchboard``.
    """

    def __init__(self, store: Any, api_key: str = "conformance-key", *, env: Any = None, mounts: Any = None) -> None:
        from satchel.protocol.backpack import BackpackConfig
        from satchel.protocol.environment import fixed_environment
        from satchel.protocol.mount_table import standard_mounts
        from satchel.protocol.switchboard import Switchboard

        self.api_key = api_key
        self._store = store
        self._env = env if env is not None else fixed_environment()
        table = mounts if mounts is not None else standard_mounts(BackpackConfig(api_key=api_key))
        self._board = Switchboard(table, self._env)
        self._jars = CookieJars()
        self._open: set[str] = set()
        self._engineio: set[str] = set()  # connections whose messages are Socket.IO packets, kept as text
        self._inboxes: dict[str, deque[Any]] = defaultdict(deque)

    def _execute(self, operation: Any) -> Any:
        from satchel.protocol.operations import HashPassword, VerifyPassword

        if isinstance(operation, HashPassword):
            return "plain$" + operation.password
        if isinstance(operation, VerifyPassword):
            return bool(operation.password_hash) and operation.password_hash == "plain$" + operation.password
        return self._store.execute_sync(operation)

    def _run(self, action: Any) -> Any:
        from satchel.protocol.operations import run_sync

        return run_sync(action, self._execute)

    def _publish(self, events: Any) -> None:
        from satchel.protocol.channels import Binary, CloseConnection

        closing = []
        for payload, recipients in self._board.deliveries(events):
            if isinstance(payload, CloseConnection):
                closing.extend(recipients)
                continue
            binary = isinstance(payload, Binary)
            message: Any = None
            for connection in recipients:
                if connection in self._engineio:
                    self._inboxes[connection].append(payload.data if binary else payload.decode())
                    continue
                if message is None:
                    message = payload.data if binary else msgspec.json.decode(payload)
                self._inboxes[connection].append(message)
        for connection in closing:
            # The server ended it: what it received before stays readable.
            self._open.discard(connection)
            self._publish(self._board.closed(connection))

    def _request(self, method: str, path: str, jar: str | None, key: str | None, body: bytes,
                 extra: Any = None) -> Any:
        from satchel.protocol.http import HttpRequest

        headers = [(name.lower(), value) for name, value in (extra or ())]
        if key is not None:
            headers.append(("authorization", f"key {key}"))
        cookie = self._jars.header(jar)
        if cookie is not None:
            headers.append(("cookie", cookie))
        if body:
            headers.append(("content-type", "application/json"))
        return HttpRequest(method, path, headers, body)

    def http(self, jar: str | None, method: str, path: str, body: bytes | None, *, key: str | None,
             headers: Any = None) -> HttpReply:
        """See ``Target.http``; ``headers`` (optional name/value pairs) are
        sent as well. Every path goes to the mount that claims it, as in the
        reference server."""
        request = self._request(method, path, jar, key, body or b"", headers)
        outcome = self._run(self._board.handle_request(request))
        self._publish(outcome.changes)
        response = outcome.response
        for name, value in response.headers:
            if name == "set-cookie":
                self._jars.store(jar, value)
        return HttpReply(response.status, list(response.headers), response.body)

    def connect(self, jar: str | None, connection: str) -> int:
        """See ``Target.connect``."""
        from satchel.protocol.http import HttpResponse

        request = self._request("GET", "/", jar, None, b"")
        accepted = self._run(self._board.accept(request, connection))
        if isinstance(accepted, HttpResponse):
            return accepted.status
        self._open.add(connection)
        self._publish(accepted.events)
        return 101

    def send(self, connection: str, frame: str | bytes) -> None:
        """See ``Target.send``."""
        self._publish(self._run(self._board.handle_message(connection, frame)))

    def receive(self, connection: str, timeout: float) -> Any:
        """See ``Target.receive`` (messages are there at once: ``timeout`` is unused)."""
        inbox = self._inboxes.get(connection)
        if inbox:
            return inbox.popleft()
        return NOTHING if connection in self._open else CLOSED

    def disconnect(self, connection: str) -> None:
        """See ``Target.disconnect``."""
        if connection not in self._open:
            return
        self._open.discard(connection)
        self._engineio.discard(connection)
        self._inboxes.pop(connection, None)
        self._publish(self._board.closed(connection))

    # -- Socket.IO over Engine.IO ---------------------------------------------------

    def socketio_open(self, connection: str, path: str = "/socket.io/?EIO=4&transport=websocket") -> int:
        """Open Engine.IO connection ``connection`` to the Socket.IO server at
        ``path``: 101 when a mount serves it, else the refusal's status."""
        from satchel.protocol.http import HttpRequest, HttpResponse

        request = HttpRequest("GET", path, [], b"")
        found = self._board.engineio(request)
        if found is None:
            return 404
        accepted = self._run(self._board.accept(request, connection, found[0]))
        if isinstance(accepted, HttpResponse):
            return accepted.status
        self._open.add(connection)
        self._engineio.add(connection)
        self._publish(accepted.events)
        return 101

    def socketio_send(self, connection: str, packet: str) -> None:
        """Send one Socket.IO packet (its text) on ``connection``."""
        self.send(connection, packet)

    def socketio_receive(self, connection: str, timeout: float) -> Any:
        """The next Socket.IO packet ``connection`` was sent, as text (bytes for
        an attachment); ``NOTHING`` or ``CLOSED`` as ``receive``."""
        return self.receive(connection, timeout)

    def socketio_close(self, connection: str) -> None:
        """End Engine.IO connection ``connection``."""
        self.disconnect(connection)

    def close(self) -> None:
        """Close every connection."""
        for connection in list(self._open):
            self.disconnect(connection)
