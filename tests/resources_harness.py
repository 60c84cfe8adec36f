"""Drives the resource protocol (seed 004) through the pure core.

``ResourcesCore`` is ``directus_rest_harness.DirectusCore`` (the standard
mount table behind a ``Switchboard`` on a ``MemoryStore``, a clock the test
moves, accounts and tokens) with the resource websocket's upgrade - its
headers base58-encoded in ``Sec-WebSocket-Protocol``, as a browser sends
them - and REST calls under ``/realtime``.
"""

from __future__ import annotations

import json
from typing import Any

from core_harness import Response
from directus_rest_harness import DirectusCore
from satchel.protocol.http import HttpRequest, HttpResponse
from satchel.protocol.resources import encode_headers

UPGRADE = [("host", "satchel.test"), ("upgrade", "websocket"), ("connection", "Upgrade"),
           ("sec-websocket-version", "13"), ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")]


class ResourcesCore(DirectusCore):
    def __init__(self) -> None:
        super().__init__()
        self.accepted: dict[str, Any] = {}

    def resources(self) -> Any:
        return self.board.mounts["resources"]

    def rest(self, method: str, path: str, body: Any = None, *, token: str | None = None,
             scope: tuple[str, str] | None = None, raw: bytes | None = None,
             headers: list[tuple[str, str]] | None = None) -> Response:
        sent = list(headers or [])
        if scope is not None:
            sent += [("x-m2-organization", scope[0]), ("x-m2-project", scope[1])]
        if raw is None and body is not None:
            raw = json.dumps(body).encode()
        return self.api(method, path, token=token, headers=sent, raw=raw)

    def open(self, headers: dict[str, str] | list[tuple[str, str]] | None = None, *, token: str | None = None,
             protocol: str | None = None, real: list[tuple[str, str]] | None = None,
             target: str = "/realtime") -> str | Response:
        """Open a resource websocket: ``headers`` base58-encoded in
        ``Sec-WebSocket-Protocol`` (``token`` among them as a Bearer),
        ``protocol`` sent as the subprotocol outright, ``real`` as headers."""
        sent = list(UPGRADE) + list(real or [])
        encoded = list(headers.items() if isinstance(headers, dict) else headers or [])
        if token is not None:
            encoded.append(("authorization", f"Bearer {token}"))
        if protocol is None and encoded:
            protocol = encode_headers(encoded)
        if protocol is not None:
            sent.append(("sec-websocket-protocol", protocol))
        connection = f"r{len(self.accepted) + 1}"
        accepted = self.run(self.board.accept(HttpRequest("GET", target, sent), connection))
        if isinstance(accepted, HttpResponse):
            return Response(accepted)
        self.accepted[connection] = accepted
        self.publish(accepted.events)
        return connection

    def subscribe(self, connection: str, type: str, id: str, action: str = "subscribe") -> list[Any]:
        """Send a subscribe (or ``action``); what the connection received for it."""
        return self.exchange(connection, {"action": action, "resource": {"type": type, "id": id}})

    def exchange(self, connection: str, message: Any) -> list[Any]:
        """Send ``message``; what the connection received since its last
        ``take``/``exchange`` (taken: a later ``take`` sees only what follows)."""
        self.send(connection, message)
        return self.take(connection)

    def take(self, connection: str) -> list[Any]:
        taken = list(self.received[connection])
        self.received[connection].clear()
        return taken
