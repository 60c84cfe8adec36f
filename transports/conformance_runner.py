"""``satchel conformance``: run the conformance kit against a server.

The kit itself is pure (``satchel.protocol.conformance``); this module gives
it real I/O. ``UrlTarget`` speaks to any Backpack server at a URL - Satchel's
reference server, the ASGI app, the examples, or a third-party server - with
``http.client`` for REST and a small blocking websocket client on wsproto
(the websocket parser Satchel already depends on); for Socket.IO it opens
Engine.IO 4 connections over that websocket client
(``/socket.io/?EIO=4&transport=websocket``: it answers the server's pings and
carries Socket.IO packets as text); for the Directus websockets it opens
``/websocket`` with the kit's query and answers core heartbeat pings; for
resource subscriptions it opens ``/realtime`` offering the base58 headers
as the subprotocol.
``main`` is the command:

    satchel conformance --url ws://127.0.0.1:8000 --api-key K [--examples 50]
    satchel conformance --in-process
    satchel conformance --url http://127.0.0.1:8000 --api-key K --replay failure.json
    satchel conformance --url http://127.0.0.1:8000 --protocol socketio   # Asnity over REST and Socket.IO
    satchel conformance --url http://127.0.0.1:8000 --protocol directus --admin-email E --admin-password P
    satchel conformance --url http://127.0.0.1:8000 --protocol resources --admin-email E --admin-password P

The server must not be used by anyone else during a run (the kit counts
every message its connections receive). The run creates four accounts and
collections named ``k<token>x<n>_*``; nothing else is touched. A failure is
printed as a short JSON script; ``--save FILE`` writes it, ``--replay FILE``
runs it again.
"""

from __future__ import annotations

import argparse
import http.client
import json
import secrets
import select
import socket
import ssl
import sys
import time
from collections import deque
from typing import Any, Iterator, Sequence
from urllib.parse import urlsplit

from .extras import require

require("conformance", "hypothesis", "wsproto")

from wsproto import ConnectionType, WSConnection  # noqa: E402 - after the check for the extra
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Message,
    Ping,
    RejectConnection,
    RejectData,
    Request,
    TextMessage,
)
from wsproto.utilities import LocalProtocolError, RemoteProtocolError

from satchel.protocol.conformance import (
    CLOSED,
    NOTHING,
    ConformanceFailure,
    CookieJars,
    HttpReply,
    InProcessTarget,
    ScriptError,
    SetupError,
    check_target,
    format_script,
    load_script,
    replay,
)
from satchel.storage_backends.memory import MemoryStore

__all__ = ["UrlTarget", "main", "build_parser"]


class _Websocket:
    """One blocking websocket client connection (wsproto over a socket)."""

    def __init__(self, host: str, port: int, path: str, headers: list[tuple[str, str]],
                 tls: ssl.SSLContext | None, timeout: float, *, raw: bool = False,
                 subprotocols: list[str] | None = None) -> None:
        self.timeout = timeout
        self.raw = raw  # keep text messages as text (Engine.IO), not decoded JSON
        sock = socket.create_connection((host, port), timeout=timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock: socket.socket = tls.wrap_socket(sock, server_hostname=host) if tls else sock
        self.ws = WSConnection(ConnectionType.CLIENT)
        self.messages: deque[Any] = deque()
        self.closed = False
        self.status: int | None = None
        self.subprotocol: str | None = None  # the one the server accepted
        self._parts: list[Any] = []
        self._rejected_body = False
        self.sock.sendall(self.ws.send(Request(host=f"{host}:{port}", target=path, extra_headers=headers,
                                               subprotocols=list(subprotocols or []))))
        deadline = time.monotonic() + timeout
        while self.status is None or self._rejected_body:
            if not self._read(deadline - time.monotonic()):
                break
        if self.status is None:
            self.status = 0  # no answer to the upgrade

    def _read(self, timeout: float) -> bool:
        """Read once (at most ``timeout`` seconds); False on timeout or EOF."""
        if timeout <= 0:
            pending = isinstance(self.sock, ssl.SSLSocket) and self.sock.pending()
            if not pending and not select.select([self.sock], [], [], 0)[0]:
                return False
            timeout = 0.001
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(65536)
        except socket.timeout:
            return False
        except OSError:
            data = b""
        try:
            self.ws.receive_data(data or None)
            self._events()
        except RemoteProtocolError:
            self.closed = True
        if not data:
            self.closed = True
        return bool(data)

    def _events(self) -> None:
        for event in self.ws.events():
            if isinstance(event, AcceptConnection):
                self.status = 101
                self.subprotocol = event.subprotocol
            elif isinstance(event, RejectConnection):
                self.status = event.status_code
                self._rejected_body = event.has_body
            elif isinstance(event, RejectData):
                self._rejected_body = not event.body_finished
            elif isinstance(event, Message):
                self._parts.append(event.data)
                if event.message_finished:
                    if isinstance(event, TextMessage):
                        text = "".join(self._parts)
                        try:
                            self.messages.append(text if self.raw else json.loads(text))
                        except ValueError:
                            self.messages.append(text)
                    else:
                        self.messages.append(b"".join(self._parts))
                    self._parts = []
            elif isinstance(event, Ping):
                self._send(event.response())
            elif isinstance(event, CloseConnection):
                try:
                    self._send(event.response())
                except LocalProtocolError:
                    pass
                self.closed = True

    def _send(self, event: Any) -> None:
        try:
            self.sock.sendall(self.ws.send(event))
        except OSError:
            self.closed = True

    def send(self, frame: str | bytes) -> None:
        """Send a text (``str``) or binary (``bytes``) message."""
        self._send(TextMessage(data=frame) if isinstance(frame, str) else BytesMessage(data=frame))

    def receive(self, timeout: float) -> Any:
        """The next message, ``NOTHING`` after ``timeout`` seconds, or ``CLOSED``."""
        deadline = time.monotonic() + timeout
        while not self.messages:
            if self.closed:
                return CLOSED
            remaining = deadline - time.monotonic() if timeout > 0 else 0
            if timeout > 0 and remaining <= 0:
                return NOTHING
            if not self._read(remaining) and timeout <= 0 and not self.messages:
                return NOTHING if not self.closed else CLOSED
        return self.messages.popleft()

    def close(self) -> None:
        """A normal close; waits (briefly) for the server's close in return,
        so that the server has seen the connection end."""
        if not self.closed and self.status == 101:
            try:
                self._send(CloseConnection(code=1000))
            except LocalProtocolError:
                pass
            deadline = time.monotonic() + self.timeout
            while not self.closed and time.monotonic() < deadline:
                self._read(deadline - time.monotonic())
        try:
            self.sock.close()
        except OSError:
            pass


class UrlTarget:
    """A Backpack server at ``url`` (``http://``, ``https://``, ``ws://`` or
    ``wss://``; a path is a prefix for every route and the websocket)."""

    def __init__(self, url: str, api_key: str, *, timeout: float = 10.0) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https", "ws", "wss") or not parts.hostname:
            raise ValueError(f"not a server URL: {url!r} (use http://host:port or ws://host:port)")
        self.api_key = api_key
        self.secure = parts.scheme in ("https", "wss")
        self.host = parts.hostname
        self.port = parts.port or (443 if self.secure else 80)
        self.prefix = parts.path.rstrip("/")
        self.timeout = timeout
        self._tls = ssl.create_default_context() if self.secure else None
        self._jars = CookieJars()
        self._http: dict[str | None, http.client.HTTPConnection] = {}
        self._sockets: dict[str, _Websocket] = {}
        self._engineio: dict[str, _Websocket] = {}
        self._directus: dict[str, _Websocket] = {}

    def _connection(self, jar: str | None) -> http.client.HTTPConnection:
        connection = self._http.get(jar)
        if connection is None:
            if self.secure:
                connection = http.client.HTTPSConnection(self.host, self.port, timeout=self.timeout, context=self._tls)
            else:
                connection = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
            self._http[jar] = connection
        return connection

    def http(self, jar: str | None, method: str, path: str, body: bytes | None, *, key: str | None,
             headers: Sequence[tuple[str, str]] | None = None) -> HttpReply:
        """See ``Target.http``: one keep-alive connection per jar; ``headers``
        (optional name/value pairs) are sent as well."""
        sent: dict[str, str] = dict(headers or ())
        if key is not None:
            sent["Authorization"] = f"key {key}"
        cookie = self._jars.header(jar)
        if cookie is not None:
            sent["Cookie"] = cookie
        if body is not None:
            sent["Content-Type"] = "application/json"
        for attempt in (1, 2):
            connection = self._connection(jar)
            try:
                connection.request(method, self.prefix + path, body, sent)
                response = connection.getresponse()
                data = response.read()
                break
            except (http.client.RemoteDisconnected, ConnectionError, http.client.CannotSendRequest,
                    http.client.ResponseNotReady):
                # A kept-alive connection the server closed: one new try.
                connection.close()
                self._http.pop(jar, None)
                if attempt == 2:
                    raise
        if response.will_close:
            connection.close()
            self._http.pop(jar, None)
        for value in response.headers.get_all("set-cookie") or []:
            self._jars.store(jar, value)
        return HttpReply(response.status, [(k.lower(), v) for k, v in response.getheaders()], data)

    def connect(self, jar: str | None, connection: str) -> int:
        """See ``Target.connect``: the upgrade carries the jar's cookies."""
        headers = []
        cookie = self._jars.header(jar)
        if cookie is not None:
            headers.append(("Cookie", cookie))
        status, socket_ = self._upgrade("/", headers)
        if socket_ is not None:
            self._sockets[connection] = socket_
        return status

    def _upgrade(self, path: str, headers: list[tuple[str, str]], **options: Any) -> tuple[int, Any]:
        """A websocket to ``path``: 101 and the open websocket, or the
        refusal's status (0: no answer) and None."""
        socket_ = _Websocket(self.host, self.port, self.prefix + path, headers, self._tls, self.timeout, **options)
        if socket_.status != 101:
            socket_.close()
            return socket_.status or 0, None
        return 101, socket_

    def send(self, connection: str, frame: str | bytes) -> None:
        """See ``Target.send``."""
        self._sockets[connection].send(frame)

    def receive(self, connection: str, timeout: float) -> Any:
        """See ``Target.receive``."""
        socket_ = self._sockets.get(connection)
        return CLOSED if socket_ is None else socket_.receive(timeout)

    def disconnect(self, connection: str) -> None:
        """See ``Target.disconnect``: a close handshake, awaited."""
        _close(self._sockets, connection)

    # -- Socket.IO over Engine.IO 4 (websocket transport) ------------------------

    def socketio_open(self, connection: str, path: str = "/socket.io/?EIO=4&transport=websocket") -> int:
        """Open Engine.IO connection ``connection``: the websocket upgrade,
        then the server's open packet. 101 when open; else the upgrade's
        status (0: no answer, or no open packet)."""
        status, socket_ = self._upgrade(path, [], raw=True)
        if socket_ is None:
            return status
        opened = socket_.receive(self.timeout)
        if not (isinstance(opened, str) and opened.startswith("0{")):
            socket_.close()
            return 0
        self._engineio[connection] = socket_
        return 101

    def socketio_send(self, connection: str, packet: str) -> None:
        """Send one Socket.IO packet (an Engine.IO message: ``4`` + its text)."""
        self._engineio[connection].send("4" + packet)

    def socketio_receive(self, connection: str, timeout: float) -> Any:
        """The next Socket.IO packet of ``connection`` as text (bytes for an
        attachment), answering pings meanwhile; ``NOTHING`` after ``timeout``
        seconds, ``CLOSED`` once the server closed it."""
        socket_ = self._engineio.get(connection)
        if socket_ is None:
            return CLOSED
        for frame in _frames(socket_, timeout):
            if frame is NOTHING or frame is CLOSED or isinstance(frame, bytes):
                return frame
            if frame == "2":  # ping
                socket_.send("3")
            elif frame.startswith("4"):
                return frame[1:]
            elif frame.startswith("1"):  # the server closes the session
                socket_.closed = True
                return CLOSED

    def socketio_close(self, connection: str) -> None:
        """Close Engine.IO connection ``connection`` (a websocket close, awaited)."""
        _close(self._engineio, connection)

    # -- the Directus websockets (/websocket) ------------------------------------

    def directus_open(self, connection: str, path: str, headers: Sequence[tuple[str, str]] = ()) -> int:
        """Open websocket ``connection`` to ``path`` (``/websocket?...``) with
        ``headers``: 101 when accepted, else the refusal's status (0: no answer)."""
        status, socket_ = self._upgrade(path, list(headers))
        if socket_ is not None:
            self._directus[connection] = socket_
        return status

    def resources_open(self, connection: str, path: str, headers: Sequence[tuple[str, str]],
                       subprotocol: str | None) -> tuple[int, str | None]:
        """Open resource websocket ``connection`` (``/realtime``) with real
        ``headers`` and ``subprotocol`` offered (the base58 headers): 101 and
        the subprotocol echoed, else the refusal's status (0: no answer).
        It is read and written as the Directus websockets are."""
        status, socket_ = self._upgrade(path, list(headers), subprotocols=[subprotocol] if subprotocol else None)
        if socket_ is None:
            return status, None
        self._directus[connection] = socket_
        return 101, socket_.subprotocol

    def directus_send(self, connection: str, frame: str) -> None:
        """Send one text frame."""
        self._directus[connection].send(frame)

    def directus_receive(self, connection: str, timeout: float) -> Any:
        """The next frame of ``connection``, decoded from JSON; the core
        protocol's heartbeat pings are answered (``pong``) and not returned.
        ``NOTHING`` after ``timeout`` seconds, ``CLOSED`` once the server closed it."""
        socket_ = self._directus.get(connection)
        if socket_ is None:
            return CLOSED
        for frame in _frames(socket_, timeout):
            if frame != {"type": "ping"}:
                break
            socket_.send('{"type":"pong"}')
        return frame

    def directus_close(self, connection: str) -> None:
        """Close ``connection`` (a websocket close, awaited)."""
        _close(self._directus, connection)

    def close(self) -> None:
        """Close every websocket and HTTP connection."""
        for name in list(self._directus):
            self.directus_close(name)
        for name in list(self._engineio):
            self.socketio_close(name)
        for name in list(self._sockets):
            self.disconnect(name)
        for connection in self._http.values():
            connection.close()
        self._http.clear()


def _frames(socket_: Any, timeout: float) -> Iterator[Any]:
    """``socket_``'s frames until ``timeout`` seconds have passed (then
    ``NOTHING``, over and over): for a reader that skips some of them."""
    deadline = time.monotonic() + timeout
    while True:
        yield socket_.receive(max(0.0, deadline - time.monotonic()) if timeout > 0 else 0)


def _close(sockets: dict[str, Any], connection: str) -> None:
    socket_ = sockets.pop(connection, None)
    if socket_ is not None:
        socket_.close()


# -- the command ---------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """The ``satchel conformance`` command line."""
    parser = argparse.ArgumentParser(
        prog="satchel conformance",
        description="Check a Backpack server against Satchel's conformance kit: generated sessions of several "
                    "users, every answer and every websocket delivery compared with a model of the protocol.",
    )
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--url", help="the server, e.g. ws://127.0.0.1:8000 or http://host:port/prefix")
    where.add_argument("--in-process", action="store_true", help="check Satchel's core in this process (no server)")
    parser.add_argument("--api-key", help="the server's API key (required with --url)")
    parser.add_argument("--examples", type=int, default=50, help="generated sessions to run (default 50)")
    parser.add_argument("--steps", type=int, default=30, help="most steps per session (default 30)")
    parser.add_argument("--seed", type=int, help="repeat the sessions of an earlier run")
    parser.add_argument("--timeout", type=float, default=2.0,
                        help="seconds to wait for each expected websocket message (default 2)")
    parser.add_argument("--quiet", type=float, default=None,
                        help="seconds to listen for unexpected messages after each session (default 0.05 over a URL)")
    parser.add_argument("--replay", metavar="FILE", help="run a saved failing script instead of generating sessions")
    parser.add_argument("--save", metavar="FILE", help="write the failing script here")
    parser.add_argument("--no-minimize", action="store_true", help="report the failure as found, without cutting it down")
    parser.add_argument("--protocol", choices=["backpack", "inbox", "socketio", "directus", "resources", "all"],
                        default="backpack",
                        help="what to check: Backpack (default), inbox documents over HTTP (no API key needed), "
                             "Asnity's chats over REST and Socket.IO (no API key needed), the Directus items REST API "
                             "and websockets under random rules (an administrator needed over a URL), resource "
                             "subscriptions (/realtime: kv, live config, collections, documents; an administrator "
                             "needed over a URL), or all five")
    parser.add_argument("--admin-email", help="directus, resources: an administrator's email (satchel admin create EMAIL)")
    parser.add_argument("--admin-password", help="directus, resources: that administrator's password")
    parser.add_argument("--admin-token", help="directus, resources: a static token of an administrator (instead of the email)")
    parser.add_argument("--no-namespace-disconnects", dest="namespace_disconnects", action="store_false",
                        help="socketio: send no namespace DISCONNECTs (by default the kit sends some: "
                             "the socket must leave the namespace's rooms)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``satchel conformance``; returns the exit status
    (0 conformed, 1 a difference was found, 2 the run could not be done)."""
    args = build_parser().parse_args(argv)
    if args.protocol == "inbox":
        return _main_inbox(args)
    if args.protocol == "socketio":
        return _main_socketio(args)
    if args.protocol == "directus":
        return _main_directus(args)
    if args.protocol == "resources":
        return _main_resources(args)
    status = _main_backpack(args)
    if args.protocol == "all" and status == 0:
        status = _main_inbox(args)
    if args.protocol == "all" and status == 0:
        status = _main_socketio(args)
    if args.protocol == "all" and status == 0:
        if args.in_process or args.admin_token or (args.admin_email and args.admin_password):
            status = _main_directus(args)
        else:
            print("directus: not checked (over a URL it needs --admin-email and --admin-password, or --admin-token)")
    if args.protocol == "all" and status == 0:
        if args.in_process or args.admin_token or (args.admin_email and args.admin_password):
            status = _main_resources(args)
        else:
            print("resources: not checked (over a URL it needs --admin-email and --admin-password, or --admin-token)")
    return status


def _open(args: argparse.Namespace, in_process: Any = None) -> Any:
    """The target the arguments name (``in_process`` wraps the core for a
    kit that needs more of it); None, said on stderr, if the URL is no good."""
    try:
        if args.in_process:
            core = InProcessTarget(MemoryStore(), args.api_key or "conformance-key")
            return core if in_process is None else in_process(core)
        return UrlTarget(args.url, args.api_key or "", timeout=max(10.0, args.timeout))
    except ValueError as error:
        print(f"satchel conformance: {error}", file=sys.stderr)
        return None


def _where(args: argparse.Namespace) -> str:
    return "Satchel's core (in process)" if args.in_process else args.url


def _quiet(args: argparse.Namespace) -> float:
    return args.quiet if args.quiet is not None else (0.0 if args.in_process else 0.05)


def _token(args: argparse.Namespace) -> str:
    # A shared server keeps every run's accounts: name them apart.
    return "t0" if args.in_process else secrets.token_hex(4)


def _replay(args: argparse.Namespace, load: Any, run: Any, failed: type[Exception]) -> int:
    """``--replay FILE``: run the saved script once; 1 if it fails."""
    where = _where(args)
    with open(args.replay, encoding="utf-8") as handle:
        steps = load(handle.read())
    try:
        run(steps)
    except failed as failure:
        print(f"The script fails against {where}:\n{failure}")
        return 1
    print(f"The script ({len(steps)} steps) ran against {where} without a difference.")
    return 0


def _verdict(args: argparse.Namespace, report: Any, started: float, *, model: str, script: Any, what: str = "",
             kind: str = "sequences", detail: str = "", replay: str = "") -> int:
    """Print what a generated run found; the exit status. ``script`` is how
    the failure's steps are saved, ``replay`` what follows the file's name."""
    elapsed = time.monotonic() - started
    where = _where(args)
    if report.errors:
        for error in report.errors:
            print(f"satchel conformance: {type(error).__name__}: {error}", file=sys.stderr)
        return 2
    if report.failure is None:
        print(f"{where} conforms{what}: {report.examples} generated {kind} passed in {elapsed:.1f} s.")
        return 0
    print(f"{where} differs from {model}.\n\n{report.failure}{detail}")
    if args.save:
        with open(args.save, "w", encoding="utf-8") as handle:
            handle.write(script(report.failure) + "\n")
        print(f"\nSaved to {args.save}{replay}")
    return 1


def _main_steps(args: argparse.Namespace, kit: Any, *, protocol: str, what: str, model: str, mismatch: type[Exception],
                check: Any, in_process: Any = None, options: dict[str, Any] | None = None,
                check_options: dict[str, Any] | None = None, needs: str = "") -> int:
    """A kit of JSON step scripts (``kit``: its ``run_steps``, ``load_steps``
    and ``format_steps``): generate and check, or replay a saved script.
    ``options`` go to both, ``check_options`` to the generated run only;
    ``needs`` is what the replay hint adds to the command line."""
    target = _open(args, in_process)
    if target is None:
        return 2
    options = options or {}
    quiet, token = _quiet(args), _token(args)
    started = time.monotonic()
    try:
        if args.replay:
            return _replay(args, kit.load_steps, lambda steps: kit.run_steps(
                target, steps, token=token, timeout=args.timeout, quiet=quiet, **options), mismatch)
        report = check(target, examples=args.examples, steps=args.steps, seed=args.seed, token=token,
                       timeout=args.timeout, quiet=quiet, minimize_failure=not args.no_minimize, **options,
                       **(check_options or {}))
    except (SetupError, OSError, ValueError) as error:
        print(f"satchel conformance: could not run against {_where(args)}: {error}", file=sys.stderr)
        return 2
    finally:
        target.close()
    return _verdict(args, report, started, what=f" ({what})", model=model,
                    script=lambda failure: kit.format_steps(failure.steps),
                    replay=f"; replay with: satchel conformance --url URL --protocol {protocol}{needs} "
                           f"--replay {args.save}")


def _main_resources(args: argparse.Namespace) -> int:
    """``--protocol resources``: resource subscriptions - ``/realtime`` REST and
    websockets, under random rules (``satchel.protocol.conformance.resources``)."""
    from satchel.protocol.conformance import resources as kit

    return _main_with_admin(args, kit, "resources", "resource subscriptions", "the resource-subscription model",
                            kit.InProcessResources, kit.ResourcesMismatch, kit.check_resources_target)


def _main_directus(args: argparse.Namespace) -> int:
    """``--protocol directus``: the Directus items REST API, the admin API's
    rules and roles, and both Directus websockets (``satchel.protocol.conformance.directus``)."""
    from satchel.protocol.conformance import directus as kit

    return _main_with_admin(args, kit, "directus", "Directus REST, websockets and rules", "the Directus model",
                            kit.InProcessDirectus, kit.DirectusMismatch, kit.check_directus_target)


def _main_with_admin(args: argparse.Namespace, kit: Any, protocol: str, what: str, model: str, in_process: Any,
                     mismatch: type[Exception], check: Any) -> int:
    """A kit that installs rules and roles through the admin API (Directus,
    resources): so over a URL it needs an administrator of the server."""
    admin = (args.admin_email, args.admin_password) if args.admin_email and args.admin_password else None
    if not args.in_process and admin is None and not args.admin_token:
        print(f"satchel conformance: --protocol {protocol} needs an administrator of the server: "
              "--admin-email and --admin-password (satchel admin create EMAIL), or --admin-token", file=sys.stderr)
        return 2
    return _main_steps(args, kit, protocol=protocol, what=what, model=model, mismatch=mismatch, check=check,
                       in_process=in_process, options={"admin": admin, "admin_token": args.admin_token},
                       needs=" --admin-email E --admin-password P")


def _main_socketio(args: argparse.Namespace) -> int:
    """``--protocol socketio``: Asnity over REST and Socket.IO (``satchel.protocol.conformance.asnity``)."""
    from satchel.protocol.conformance import asnity as kit

    return _main_steps(args, kit, protocol="socketio", what="Asnity over REST and Socket.IO",
                       model="the Asnity model", mismatch=kit.AsnityMismatch, check=kit.check_asnity_target,
                       check_options={"disconnects": args.namespace_disconnects})


def _main_inbox(args: argparse.Namespace) -> int:
    """``--protocol inbox``: inbox documents over HTTP (``satchel.protocol.conformance.inbox``)."""
    from satchel.protocol.conformance.inbox import check_inbox_target, format_steps

    if args.replay:
        print("satchel conformance: --replay runs Backpack and socketio scripts only", file=sys.stderr)
        return 2
    target = _open(args)
    if target is None:
        return 2
    started = time.monotonic()
    try:
        report = check_inbox_target(target, examples=args.examples, steps=args.steps, seed=args.seed,
                                    token=_token(args))
    finally:
        target.close()
    steps = format_steps(report.failure.steps) if report.failure is not None else ""
    return _verdict(args, report, started, what=" (inbox documents)", model="the inbox-document model",
                    script=lambda failure: steps, detail=f"\n\nSteps:\n{steps}", replay=".")


def _main_backpack(args: argparse.Namespace) -> int:
    if not args.in_process and not args.api_key:
        raise SystemExit("satchel conformance: --api-key is required with --url")
    target = _open(args)
    if target is None:
        return 2
    quiet, token = _quiet(args), _token(args)
    started = time.monotonic()
    try:
        if args.replay:
            return _replay(args, load_script, lambda script: replay(target, script, token=token, timeout=args.timeout,
                                                                    quiet=quiet), ConformanceFailure)
        report = check_target(target, examples=args.examples, steps=args.steps, seed=args.seed, token=token,
                              timeout=args.timeout, quiet=quiet, minimize=not args.no_minimize)
    except (SetupError, ScriptError, OSError, ValueError) as error:
        print(f"satchel conformance: could not run against {_where(args)}: {error}", file=sys.stderr)
        return 2
    finally:
        target.close()
    flaky = "\n\n(The difference did not show every time these steps ran: it may depend on timing.)"
    return _verdict(args, report, started, kind="sessions", model="the Backpack model",
                    script=lambda failure: format_script(failure.script), detail=flaky if report.flaky else "",
                    replay=f"; replay with: satchel conformance --url URL --api-key KEY --replay {args.save}")


if __name__ == "__main__":
    sys.exit(main())
