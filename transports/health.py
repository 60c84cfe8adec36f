"""``/health``, ``/ready`` and ``/metrics``: what operators and load
balancers ask the reference server (issue 16 part 3).

- ``GET /health`` - liveness: 200 ``{"status": "ok", "pid": PID}`` while the
  process serves. Asks nothing of the store; the pid says which process of
  ``satchel serve --workers N`` answered.
- ``GET /ready`` - readiness: 200 when the store answers a read and the
  broker (with ``--broker``) accepts a connection, else 503; the body names
  each check's result. Each check runs in a task of its own and is given
  ``PROBE_TIMEOUT`` seconds (a store whose driver blocks in a thread still
  gets its answer in time); a result is reused for ``PROBE_CACHE`` seconds so
  that a storm of probes costs one check.
- ``GET /metrics`` - the Prometheus text exposition (``metrics.py``). Who
  may read it: ``access="admin"`` (the default) wants the Bearer token of an
  administrator, as ``/_/api`` does (401 without a valid one, 403 for any
  other user); ``"public"`` anyone; ``"off"`` nobody (404: the metrics are
  served on a listener of their own, ``--metrics-listen``).

These paths are answered before any protocol sees the request, so they need
no API key; a Backpack collection named ``health``, ``ready`` or ``metrics``
is not reachable at ``/{c}`` on the main port.
"""

from __future__ import annotations

import os
from typing import Any, Awaitable, Callable

import trio

from satchel.protocol.admin.api import error_response as admin_error
from satchel.protocol.http import HttpRequest, HttpResponse, json_response
from satchel.protocol.operations import GetUser
from satchel.protocol.permissions import ADMIN
from satchel.protocol.tokens import authenticate

from .metrics import CONTENT_TYPE, Watched, exposition

__all__ = ["OPERATIONS_PATHS", "Operations", "OperationsApp", "PROBE_TIMEOUT", "PROBE_CACHE"]

#: The paths this module answers.
OPERATIONS_PATHS = frozenset(("/health", "/ready", "/metrics"))
#: Seconds a readiness check may take before it counts as failed.
PROBE_TIMEOUT = 2.0
#: Seconds a readiness result is reused.
PROBE_CACHE = 1.0
_ACCESS = ("admin", "public", "off")
_PROBE_ID = "satchel-readiness-probe"


def _describe(error: BaseException) -> str:
    while isinstance(error, BaseExceptionGroup):
        error = error.exceptions[0]
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0][:200]}" if text else type(error).__name__


class Operations:
    """Answers the three paths for one server: ``runner`` (its store),
    ``board`` (its environment and connections), the ``Watched`` objects the
    metrics read, the ``broker`` (or ``None``), and ``spawn`` - how to start
    a background task (``SatchelApp._spawn``)."""

    def __init__(self, runner: Any, board: Any, watched: Watched, *, broker: Any = None,
                 spawn: Callable[[Callable[[], Awaitable[None]]], None], access: str = "admin") -> None:
        if access not in _ACCESS:
            raise ValueError(f"metrics access must be one of {', '.join(_ACCESS)}, not {access!r}")
        self.runner = runner
        self.board = board
        self.watched = watched
        self.broker = broker
        self.access = access
        self._spawn = spawn
        # check name -> (when it ran, its failure or None), and the runs under way.
        self._results: dict[str, tuple[float, str | None]] = {}
        self._running: dict[str, trio.Event] = {}

    async def handle(self, request: HttpRequest, *, access: str | None = None) -> HttpResponse:
        """Answer ``request`` for one of ``OPERATIONS_PATHS`` (``access``
        overrides who may read ``/metrics``)."""
        path = request.path
        if request.method not in ("GET", "HEAD"):
            response = json_response(405, {"message": "Method not allowed"})
            response.headers.append(("allow", "GET, HEAD"))
            return response
        if path == "/health":
            response = json_response(200, {"status": "ok", "pid": os.getpid()})
        elif path == "/ready":
            response = await self.ready()
        else:
            response = await self.metrics(request, access or self.access)
        response.headers.append(("cache-control", "no-store"))
        if request.method == "HEAD":
            response = HttpResponse(response.status, response.headers, b"")
        return response

    async def ready(self) -> HttpResponse:
        """200 when every dependency answers, else 503; each check's result."""
        checks: dict[str, Callable[[], Awaitable[Any]]] = {"store": self._store_answers}
        if self.broker is not None:
            checks["broker"] = self.broker.check
        failures = {name: await self._check(name, check) for name, check in checks.items()}
        ready = not any(failures.values())
        return json_response(200 if ready else 503, {
            "status": "ready" if ready else "unavailable",
            "checks": {name: failure or "ok" for name, failure in failures.items()},
        })

    async def _store_answers(self) -> None:
        await self.runner.store.execute(GetUser(_PROBE_ID))

    async def _check(self, name: str, check: Callable[[], Awaitable[Any]]) -> str | None:
        """The failure of ``check`` (``None``: it passed), run at most once per ``PROBE_CACHE``."""
        now = trio.current_time()
        known = self._results.get(name)
        if known is not None and now - known[0] < PROBE_CACHE:
            return known[1]
        running = self._running.get(name)
        if running is None:
            running = self._running[name] = trio.Event()

            async def probe() -> None:
                failure: str | None = None
                try:
                    await check()
                except Exception as error:
                    failure = _describe(error)
                finally:
                    self._results[name] = (trio.current_time(), failure)
                    del self._running[name]
                    running.set()

            self._spawn(probe)
        with trio.move_on_after(PROBE_TIMEOUT):
            await running.wait()
            return self._results[name][1]
        return f"no answer within {PROBE_TIMEOUT:g} s"

    async def metrics(self, request: HttpRequest, access: str) -> HttpResponse:
        """The exposition, if ``access`` lets this request read it."""
        if access == "off":
            return json_response(404, {"message": "Not found"})
        if access == "admin":
            bearer = await self.runner.run(authenticate(request, self.board.env))
            if bearer is None:
                return admin_error(401, "Invalid user credentials.")
            if bearer.user.role != ADMIN:
                return admin_error(403, "You don't have permission to access this.")
        return HttpResponse(200, [("content-type", CONTENT_TYPE)], exposition(self.watched))


class OperationsApp:
    """The application of the ``--metrics-listen`` listener: the three paths,
    ``/metrics`` without credentials (the address is the restriction), 404
    for anything else, no websockets."""

    def __init__(self, operations: Operations) -> None:
        self.operations = operations

    async def handle_http(self, request: HttpRequest) -> HttpResponse:
        if request.path in OPERATIONS_PATHS:
            return await self.operations.handle(request, access="public")
        return json_response(404, {"message": "Not found"})

    def error_response(self, request: HttpRequest | None, status: int, message: str) -> HttpResponse:
        return json_response(status, {"message": message})

    def is_websocket_path(self, request: HttpRequest) -> bool:
        return False

    async def accept_websocket(self, request: HttpRequest, connection: Any) -> HttpResponse:
        return json_response(404, {"message": "No websocket here"})

    async def on_websocket_message(self, connection: Any, message: str | bytes) -> None:
        return None

    async def on_websocket_closed(self, connection: Any) -> None:
        return None

