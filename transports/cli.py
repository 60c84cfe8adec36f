"""``satchel serve``: the reference server on embedded SQLite; ``satchel
admin create``: an administrator in a data dir.

Every option can also come from the environment (``SATCHEL_HOST``,
``SATCHEL_PORT``, ``SATCHEL_DATA_DIR``, ``SATCHEL_API_KEY``,
``SATCHEL_RULES_FILE``, ``SATCHEL_STORE``, ``SATCHEL_BROKER``, ``SATCHEL_WORKERS``); a command-line flag wins.
``--workers N`` runs N server processes on the port, supervised by this one
(``workers.py``); they need ``--store postgresql://...`` and ``--broker``.
``--broker redis://...|nats://...`` shares fan-out, session revocations and
the inbox's replay memory with the other processes on that broker
(``satchel.transports.brokers``; README, "Running several processes").
``--store postgresql://HOST/DB`` keeps the data in PostgreSQL instead of
the data dir's SQLite file (the ``postgres`` extra); the server creates and
migrates its schema, and refuses a schema newer than it knows. Without an API key the
server generates one on first start, keeps it in ``<data-dir>/api_key``
(readable only by its owner) and prints it once. When the server is ready it
logs one line with its URL.

``--rules FILE`` (a rule file, ``satchel.protocol.permissions``) is checked
before anything starts (an invalid file exits with status 2) and replaces
the stored rules as the server starts; the admin API (``/_/api/rules``) may
change them while it runs, and those changes last until the next start with
``--rules``. ``satchel admin create EMAIL [--password-file F]`` creates the
account with the role ``admin`` - or gives an existing account that role,
leaving its password - and prints a generated password once when no file
gives one (``-`` reads it from standard input).

``/health``, ``/ready`` and ``/metrics`` (``health.py``): ``--metrics-access
admin|public`` says who reads ``/metrics`` on the main port (default: an
administrator's Bearer token); ``--metrics-listen HOST:PORT`` serves the
three on a listener of their own, ``/metrics`` there without credentials.
``--log-format text|json`` and ``--access-log/--no-access-log``: the log
lines, and whether each request and connection gets one (``access_log.py``).
"""

from __future__ import annotations

import argparse
import logging
import os
import secrets
import sys
from functools import partial
from pathlib import Path
from typing import Sequence

import trio

from satchel.protocol.admin import create_admin, install_rules
from satchel.protocol.admin.setup import prepare_setup
from satchel.protocol.backpack import BackpackConfig
from satchel.protocol.backpack.uploads import UPLOADS
from satchel.protocol.directus.config import DirectusConfig
from satchel.protocol.mount_table import standard_mounts
from satchel.protocol.mounts import Mount
from satchel.protocol.errors import RemoteProtocolError
from satchel.protocol.operations import ListRecords
from satchel.protocol.permissions import InvalidRules, RuleSet
from satchel.protocol.socketio.engineio_session import EngineIoConfig
from satchel.storage_backends.files import LocalFileStore
from satchel.storage_backends.base import Store
from satchel.storage_backends.sqlite import SqliteStore

from .access_log import configure_logging
from .app import serve_mounts
from .extras import MissingExtra
from .interfaces import ServerLimits
from .runner import Runner
from .static import STATIC_FILES
from .system_environment import system_environment
from .workers import worker_role

__all__ = ["main", "build_parser", "run_server", "admin_create", "load_rules_file", "CommandError"]

log = logging.getLogger("satchel")

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
DEFAULT_DATA_DIR = "satchel-data"


def build_parser() -> argparse.ArgumentParser:
    """The ``satchel`` command line."""
    parser = argparse.ArgumentParser(prog="satchel", description="Satchel: a self-hosted realtime backend.")
    commands = parser.add_subparsers(dest="command", required=True)
    serve_cmd = commands.add_parser("serve", help="run the reference server (HTTP and websockets on one port)")
    env = os.environ
    serve_cmd.add_argument("--host", default=env.get("SATCHEL_HOST", DEFAULT_HOST),
                           help=f"address to listen on (SATCHEL_HOST; default {DEFAULT_HOST})")
    serve_cmd.add_argument("--port", type=int, default=int(env.get("SATCHEL_PORT", DEFAULT_PORT)),
                           help=f"port for HTTP and websockets (SATCHEL_PORT; default {DEFAULT_PORT}; 0 picks one)")
    serve_cmd.add_argument("--data-dir", default=env.get("SATCHEL_DATA_DIR", DEFAULT_DATA_DIR),
                           help=f"where the database and API key live (SATCHEL_DATA_DIR; default ./{DEFAULT_DATA_DIR})")
    serve_cmd.add_argument("--store", default=env.get("SATCHEL_STORE"), metavar="URL",
                           help="where the data lives: postgresql://HOST[:PORT]/DB (SATCHEL_STORE; "
                                "default: satchel.sqlite3 in the data dir)")
    serve_cmd.add_argument("--broker", default=env.get("SATCHEL_BROKER"), metavar="URL",
                           help="share fan-out with the other processes on this broker: redis://HOST[:PORT][/DB] or "
                                "nats://HOST[:PORT], ?prefix=NAME to keep clusters apart (SATCHEL_BROKER; default: "
                                "none, this process alone)")
    serve_cmd.add_argument("--workers", type=int, default=int(env.get("SATCHEL_WORKERS", 1)), metavar="N",
                           help="server processes on the port (SO_REUSEPORT), supervised by this one; more than 1 "
                                "needs --store postgresql://... and --broker (SATCHEL_WORKERS; default 1)")
    serve_cmd.add_argument("--api-key", default=env.get("SATCHEL_API_KEY"),
                           help="the key clients send as 'Authorization: key <KEY>' (SATCHEL_API_KEY; "
                                "default: generated once and kept in the data dir)")
    serve_cmd.add_argument("--allowed-origin", action="append", dest="allowed_origins", metavar="ORIGIN",
                           help="a browser origin allowed to call the API with cookies (repeatable; default: any)")
    serve_cmd.add_argument("--udp-port", type=int, default=int(env["SATCHEL_UDP_PORT"]) if "SATCHEL_UDP_PORT" in env else None,
                           help="port for inbox datagrams (SATCHEL_UDP_PORT; default: the HTTP port's number; -1 disables UDP)")
    serve_cmd.add_argument("--max-body-bytes", type=int, default=ServerLimits().max_body_bytes,
                           help="largest accepted request body")
    serve_cmd.add_argument("--max-upload-bytes", type=int,
                           default=int(env.get("SATCHEL_MAX_UPLOAD_BYTES", 50 * 1024 * 1024)),
                           help="largest accepted file upload (SATCHEL_MAX_UPLOAD_BYTES; default 50 MiB)")
    defaults = ServerLimits()
    serve_cmd.add_argument("--websocket-outbox-bytes", type=int, default=defaults.websocket_outbox_bytes,
                           help="unsent bytes a websocket may queue before it is closed as a slow consumer (1008)")
    serve_cmd.add_argument("--websocket-outbox-messages", type=int, default=defaults.websocket_outbox_messages,
                           help="unsent messages a websocket may queue before it is closed as a slow consumer")
    _limit_flags(serve_cmd, defaults)
    engineio = EngineIoConfig()
    serve_cmd.add_argument("--socketio-ping-interval-ms", type=int,
                           default=int(env.get("SATCHEL_SOCKETIO_PING_INTERVAL_MS", engineio.ping_interval_ms)),
                           help="Socket.IO (Engine.IO) heartbeat: a ping every this many ms "
                                f"(SATCHEL_SOCKETIO_PING_INTERVAL_MS; default {engineio.ping_interval_ms})")
    serve_cmd.add_argument("--socketio-ping-timeout-ms", type=int,
                           default=int(env.get("SATCHEL_SOCKETIO_PING_TIMEOUT_MS", engineio.ping_timeout_ms)),
                           help="close a Socket.IO client that has not answered a ping within this many ms "
                                f"(SATCHEL_SOCKETIO_PING_TIMEOUT_MS; default {engineio.ping_timeout_ms})")
    serve_cmd.add_argument("--socketio-max-payload", type=int, default=engineio.max_payload,
                           help=f"largest Socket.IO packet and long-polling body, bytes (default {engineio.max_payload})")
    directus = DirectusConfig()
    serve_cmd.add_argument("--websocket-path", default=env.get("SATCHEL_WEBSOCKET_PATH", directus.websocket_path),
                           help="where the Directus websockets (extension and core realtime) listen "
                                f"(SATCHEL_WEBSOCKET_PATH; default {directus.websocket_path})")
    serve_cmd.add_argument("--websocket-public", action="store_true",
                           default=env.get("SATCHEL_WEBSOCKET_PUBLIC", "") in ("1", "true"),
                           help="Directus websockets without a token get the public role instead of a 401 "
                                "(the extension's WEBSOCKET_PUBLIC; SATCHEL_WEBSOCKET_PUBLIC=1)")
    serve_cmd.add_argument("--websocket-heartbeat-ms", type=int, default=directus.heartbeat_ms,
                           help="Directus core realtime: a ping every this many ms; 0: none "
                                f"(default {directus.heartbeat_ms})")
    serve_cmd.add_argument("--access-token-ttl-ms", type=int, default=directus.access_token_ttl_ms,
                           help="lifetime of the access tokens /auth/login and /auth/refresh hand out "
                                f"(more than 30000; default {directus.access_token_ttl_ms})")
    serve_cmd.add_argument("--refresh-token-ttl-ms", type=int, default=directus.refresh_token_ttl_ms,
                           help=f"lifetime of their refresh tokens (default {directus.refresh_token_ttl_ms})")
    serve_cmd.add_argument("--rules", metavar="FILE", default=env.get("SATCHEL_RULES_FILE"),
                           help="a rule file (JSON: roles and their rules) that replaces the stored rules at start "
                                "(SATCHEL_RULES_FILE; default: keep the stored rules, or the defaults)")
    serve_cmd.add_argument("--metrics-access", choices=("admin", "public"),
                           default=env.get("SATCHEL_METRICS_ACCESS", "admin"),
                           help="who may read /metrics on the main port: an administrator's Bearer token, or anyone "
                                "(SATCHEL_METRICS_ACCESS; default admin)")
    serve_cmd.add_argument("--metrics-listen", metavar="HOST:PORT", type=_listen_address,
                           default=env.get("SATCHEL_METRICS_LISTEN"),
                           help="also serve /health, /ready and /metrics on this address, /metrics without credentials; "
                                "the main port's /metrics then answers 404 (SATCHEL_METRICS_LISTEN; default: none)")
    serve_cmd.add_argument("--log-level", default=env.get("SATCHEL_LOG_LEVEL", "INFO"))
    serve_cmd.add_argument("--log-format", choices=("text", "json"), default=env.get("SATCHEL_LOG_FORMAT", "text"),
                           help="log lines as text, or one JSON object per line (SATCHEL_LOG_FORMAT; default text)")
    serve_cmd.add_argument("--access-log", action=argparse.BooleanOptionalAction,
                           default=env.get("SATCHEL_ACCESS_LOG", "0") in ("1", "true"),
                           help="a line per request and per websocket or Engine.IO session opened and closed, and an "
                                "X-Request-Id on every answer (SATCHEL_ACCESS_LOG=1; default off: a line costs "
                                "~15-35%% of a keep-alive request's time here; make serve turns it on)")
    admin_cmd = commands.add_parser("admin", help="administer a data dir (satchel admin create EMAIL)")
    admin_commands = admin_cmd.add_subparsers(dest="admin_command", required=True)
    create_cmd = admin_commands.add_parser(
        "create", help="create an administrator (or give an existing account the admin role)")
    create_cmd.add_argument("email", metavar="EMAIL")
    create_cmd.add_argument("--password-file", metavar="FILE",
                            help="a file whose first line is the password ('-': standard input); "
                                 "default: generate one and print it once")
    create_cmd.add_argument("--store", default=env.get("SATCHEL_STORE"), metavar="URL",
                            help="the server's store, as satchel serve --store (SATCHEL_STORE)")
    create_cmd.add_argument("--data-dir", default=env.get("SATCHEL_DATA_DIR", DEFAULT_DATA_DIR),
                            help=f"the data dir of the server (SATCHEL_DATA_DIR; default ./{DEFAULT_DATA_DIR})")
    # Its own parser lives in conformance_runner; listed here for --help.
    commands.add_parser(
        "conformance",
        add_help=False,
        help="check a Backpack server at a URL, or the core in-process, with the conformance kit "
             "(satchel conformance --url ws://HOST:PORT --api-key KEY; --help for more)",
    )
    return parser


def _api_key(data_dir: Path, given: str | None) -> str:
    if given:
        return given
    key_file = data_dir / "api_key"
    if key_file.exists():
        return key_file.read_text().strip()
    key = secrets.token_urlsafe(32)
    fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(key + "\n")
    print(f"Generated an API key (kept in {key_file}): {key}", flush=True)
    return key


class CommandError(Exception):
    """A command cannot run as asked; the message says why (exit status 2)."""


def load_rules_file(path: str) -> RuleSet:
    """The rule set in the file at ``path``; ``CommandError`` if it cannot be
    read or is not a valid rule file."""
    try:
        content = Path(path).read_bytes()
    except OSError as error:
        raise CommandError(f"cannot read the rules file {path}: {error.strerror or error}") from None
    try:
        return RuleSet.from_json(content)
    except InvalidRules as error:
        raise CommandError(f"{path}: {error.message}") from None


def _read_password(path: str) -> str:
    try:
        content = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise CommandError(f"cannot read the password file {path}: {error}") from None
    lines = content.splitlines()
    return lines[0] if lines else ""


async def open_store(store: str | None, data_dir: Path) -> Store:
    """The store ``--store`` names: PostgreSQL for a ``postgresql://`` (or
    ``postgres://``) URL, else the SQLite file in ``data_dir``."""
    if not store:
        return await SqliteStore.open(data_dir / "satchel.sqlite3")
    if not store.startswith(("postgresql://", "postgres://")):
        raise CommandError(f"--store must be a postgresql:// URL, not {store[:100]!r}")
    from .extras import require

    try:
        require("postgres", "psycopg", "psycopg_pool")
    except MissingExtra as missing:
        raise CommandError(str(missing)) from None
    import psycopg

    from satchel.storage_backends.postgres import PostgresStore, SchemaTooNew

    try:
        return await PostgresStore.open(store)
    except SchemaTooNew as error:
        raise CommandError(str(error)) from None
    except psycopg.Error as error:
        raise CommandError(f"cannot open the PostgreSQL store: {str(error).strip()}") from None


async def admin_create(args: argparse.Namespace) -> None:
    """``satchel admin create``: make ``args.email`` an administrator in the
    data dir's store; prints what it did (and a generated password, once)."""
    generated = args.password_file is None
    password = secrets.token_urlsafe(18) if generated else _read_password(args.password_file)
    data_dir = Path(args.data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    store = await open_store(getattr(args, "store", None), data_dir)
    async with store:
        try:
            account = await Runner(store).run(create_admin(args.email, password, system_environment()))
        except RemoteProtocolError as error:
            raise CommandError(error.message) from None
    email = account.user.email
    if account.created:
        print(f"Created the administrator {email} (user id {account.user.id}).", flush=True)
        if generated:
            print(f"Password (shown once, keep it safe): {password}", flush=True)
    elif account.promoted:
        print(f"{email} (user id {account.user.id}) is now an administrator; its password is unchanged.", flush=True)
    else:
        print(f"{email} (user id {account.user.id}) is already an administrator; nothing changed.", flush=True)


def _url_host(host: str) -> str:
    """``host`` as the printed URLs name it: a browser can open neither
    ``http://0.0.0.0:8000`` everywhere nor an IPv6 literal without brackets,
    so a wildcard address is printed as this machine's loopback."""
    if host in ("", "0.0.0.0"):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host


def _listen_address(text: str | tuple[str, int]) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:PORT`` for IPv6) as (host, port)."""
    if isinstance(text, tuple):
        return text
    host, colon, port = text.rpartition(":")
    host = host.strip("[]")
    if not colon or not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, not {text[:100]!r}")
    return host, int(port)


def _bound(text: str) -> int | None:
    value = int(text)
    return None if value <= 0 else value


def _rate(text: str) -> float | None:
    value = float(text)
    return None if value <= 0 else value


# What one peer may cost (issue 14): flag, ServerLimits field, parser, help.
_LIMIT_FLAGS = (
    ("--max-connections-per-address", "max_connections_per_address", _bound,
     "open connections from one address; the next is answered 429 (0: no bound)"),
    ("--max-connections-per-user", "max_connections_per_user", _bound,
     "open websockets of one user over every protocol; the next upgrade is answered 429 (0: no bound)"),
    ("--max-channels-per-connection", "max_channels_per_connection", _bound,
     "channels, rooms or subscriptions one connection may hold; past it a subscription is ignored (0: no bound)"),
    ("--websocket-message-rate", "websocket_message_rate", _rate,
     "messages per second one websocket may send; past it its reader waits (TCP backpressure) (0: no bound)"),
    ("--websocket-message-burst", "websocket_message_burst", int, "messages a websocket may send at once, saved up"),
    ("--websocket-abuse-seconds", "websocket_abuse_seconds", float,
     "a websocket held back at every message this long is closed with 1008"),
    ("--http-request-rate", "http_request_rate", _rate,
     "HTTP requests per second from one address, burst twice that; past it 429 with Retry-After (0: no bound)"),
    ("--datagram-rate", "datagram_rate", _rate,
     "UDP datagrams per second from one source, burst twice that; past it dropped and counted (0: no bound)"),
    ("--descriptor-reserve", "descriptor_reserve", int,
     "descriptors kept free; near the limit the busiest address's oldest idle connections are closed"),
)


def _limit_flags(command: argparse.ArgumentParser, defaults: ServerLimits) -> None:
    for flag, field, parse, text in _LIMIT_FLAGS:
        default = getattr(defaults, field)
        command.add_argument(flag, type=parse, default=default, dest=field,
                             help=f"{text} (default {default if default is not None else 'none'})")
    command.add_argument("--limit-loopback", action="store_true",
                         help="apply the per-address bounds to loopback clients too (default: not; behind a proxy on "
                              "the same host every client is 127.0.0.1)")


def _limits_from(args: argparse.Namespace) -> dict[str, object]:
    found: dict[str, object] = {field: getattr(args, field) for _, field, _, _ in _LIMIT_FLAGS if hasattr(args, field)}
    found["limit_loopback"] = getattr(args, "limit_loopback", False)
    return found


def _broker(url: str | None) -> object | None:
    """The broker ``--broker`` names (``brokers.open_broker``), not yet connected."""
    if not url:
        return None
    from .brokers import BrokerUrlError, open_broker

    try:
        return open_broker(url, name=f"satchel-{os.getpid()}")
    except BrokerUrlError as error:
        raise CommandError(str(error)) from None
    except ImportError as error:  # coredis missing
        raise CommandError(f"--broker {url.split(':', 1)[0]}:// needs the 'broker' extra "
                           f"(pip install 'satchel[broker]'): {error}") from None


def _check_workers(args: argparse.Namespace) -> None:
    """``--workers N``: at least 1; more needs a store and a broker every process shares."""
    if args.workers < 1:
        raise CommandError(f"--workers must be at least 1, not {args.workers}")
    if args.workers > 1 and not (args.store and args.broker):
        raise CommandError(
            f"--workers {args.workers} needs a store and a broker the processes share: --store postgresql://HOST/DB "
            "and --broker redis://HOST[:PORT] or nats://HOST[:PORT] (SATCHEL_STORE, SATCHEL_BROKER). The embedded "
            "SQLite store and the in-process bus serve one process; run without --workers to use them")


def directus_config(args: argparse.Namespace) -> DirectusConfig:
    """The Directus protocols' settings from ``satchel serve``'s flags."""
    path = args.websocket_path
    if not path.startswith("/") or "?" in path or "#" in path:
        raise CommandError(f"--websocket-path must be a path starting with '/', not {path[:100]!r}")
    try:
        return DirectusConfig(
            websocket_path=path,
            websocket_public=args.websocket_public,
            heartbeat_ms=args.websocket_heartbeat_ms,
            access_token_ttl_ms=args.access_token_ttl_ms,
            refresh_token_ttl_ms=args.refresh_token_ttl_ms,
        )
    except ValueError as exc:
        raise CommandError(str(exc)) from None


async def run_server(
    args: argparse.Namespace,
    *,
    extra_mounts: Sequence[Mount] = (),
    task_status: trio.TaskStatus = trio.TASK_STATUS_IGNORED,
) -> None:
    """Open the store and serve until cancelled. ``extra_mounts`` are
    consulted before Satchel's own protocols (an embedding's own protocol)."""
    data_dir = Path(args.data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    config = BackpackConfig(
        api_key=_api_key(data_dir, args.api_key),
        allowed_origins=frozenset(args.allowed_origins) if args.allowed_origins else None,
    )
    limits = ServerLimits(
        max_body_bytes=args.max_body_bytes,
        websocket_outbox_bytes=args.websocket_outbox_bytes,
        websocket_outbox_messages=args.websocket_outbox_messages,
        **_limits_from(args),
    )
    rules = load_rules_file(args.rules) if getattr(args, "rules", None) else None
    role = worker_role()
    store = await open_store(getattr(args, "store", None), data_dir)
    async with store:
        if rules is not None:
            # The file's rules replace the stored ones; serve_mounts then loads them.
            try:
                installed = await Runner(store).run(install_rules(rules))
            except InvalidRules as exc:  # they drop a role some users hold
                raise CommandError(f"{args.rules}: {exc.message}") from None
            log.info("Rules from %s %s (revision %d)", args.rules,
                     "installed" if installed.changed else "already in force", installed.revision)
        files = LocalFileStore(data_dir / "uploads")
        # A crash can leave staged uploads and files whose record never got
        # written (or was already deleted): remove them before serving.
        known = {(r["userId"], r["_id"]) for r in await store.execute(ListRecords(UPLOADS))}
        # Of --workers N, worker 0's first start alone (the others may be serving uploads).
        swept = await trio.to_thread.run_sync(files.sweep, known) if role is None or role.housekeeping else 0
        if swept:
            log.info("Removed %d unfinished or orphaned upload file(s)", swept)
        engineio = EngineIoConfig(
            ping_interval_ms=args.socketio_ping_interval_ms,
            ping_timeout_ms=args.socketio_ping_timeout_ms,
            max_payload=args.socketio_max_payload,
        )
        mounts = standard_mounts(config, engineio=engineio, directus=directus_config(args),
                                 first=[STATIC_FILES, *extra_mounts])
        udp = None if args.udp_port is None else args.udp_port
        broker = _broker(getattr(args, "broker", None))
        if broker is not None:
            try:
                await broker.check()  # type: ignore[attr-defined]
            except Exception as error:
                raise CommandError(f"cannot reach the broker {args.broker}: {error or type(error).__name__}") from None
        async with trio.open_nursery() as nursery:
            port, udp_port = await nursery.start(partial(
                serve_mounts, mounts, args.host, args.port, store=store, files=files, env=system_environment(),
                limits=limits, udp_port=udp, max_upload_bytes=args.max_upload_bytes, broker=broker,
                metrics_access=getattr(args, "metrics_access", "admin"),
                metrics_listen=_listen_address(args.metrics_listen) if getattr(args, "metrics_listen", None) else None,
                reuse_port=role is not None,
            ))
            host = _url_host(args.host)
            if udp_port >= 0:
                log.info("Inbox datagrams on udp://%s:%d", host, udp_port)
            if role is not None:
                log.info("Worker %d (pid %d) serves http://%s:%d", role.index, os.getpid(), host, port)
            else:
                log.info("Satchel is ready at http://%s:%d (data in %s)", host, port, data_dir)
            # First run: no administrator yet. The one-time setup token is
            # printed once, in the console URL's fragment (never sent in a
            # request line); `satchel admin create EMAIL` works as well.
            setup_token = None
            if role is None or role.housekeeping:
                setup_token = await Runner(store).run(prepare_setup(system_environment()))
            if setup_token is not None:
                log.warning("No administrator yet. Create one at http://%s:%d/_/#setup=%s "
                            "(or run: satchel admin create EMAIL)", host, port, setup_token)
            if role is not None:
                role.ready()
            task_status.started(port)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``satchel`` command."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments[:1] == ["conformance"]:
        try:
            from .conformance_runner import main as conformance
        except MissingExtra as missing:
            print(f"satchel conformance: {missing}", file=sys.stderr)
            return 2
        return conformance(arguments[1:])
    args = build_parser().parse_args(arguments)
    try:
        if args.command == "admin":
            trio.run(admin_create, args)
            return 0
        if args.store and not args.store.startswith(("postgresql://", "postgres://")):
            raise CommandError(f"--store must be a postgresql:// URL, not {args.store[:100]!r}")
        directus_config(args)  # bad flags and an invalid rule file stop here, before anything starts
        _broker(args.broker)
        _check_workers(args)
        if args.rules:
            load_rules_file(args.rules)
    except CommandError as error:
        print(f"satchel {args.command}: {error}", file=sys.stderr)
        return 2
    configure_logging(args.log_level, args.log_format, args.access_log, stream=sys.stderr)
    if args.workers > 1:
        from .workers import supervise

        data_dir = Path(args.data_dir)
        data_dir.mkdir(parents=True, exist_ok=True)
        return supervise(args.workers, arguments[1:], args.host, args.port, api_key=_api_key(data_dir, args.api_key),
                         metrics_listen=_listen_address(args.metrics_listen) if args.metrics_listen else None,
                         data_dir=str(data_dir))
    try:
        trio.run(run_server, args)
    except KeyboardInterrupt:
        pass
    except BaseExceptionGroup as group:
        # Ctrl-C (SIGINT) lands in a task of run_server's nursery, which
        # wraps it: a stop, not a traceback in the log (a JSON log's lines
        # must each be JSON).
        if group.split(KeyboardInterrupt)[1] is not None:
            raise
    except CommandError as error:  # found as it started (rules that drop a held role)
        print(f"satchel {args.command}: {error}", file=sys.stderr)
        return 2
    return 0
