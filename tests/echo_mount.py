"""A small protocol that is not Satchel's, to show that a mount plugs in.

``EchoMount`` claims ``/echo`` for HTTP and websockets and nothing else:
- ``POST /echo`` answers ``{"echo": <body text>}`` and tells every echo
  websocket ``{"heard": <body text>}``;
- a websocket on ``/echo`` (offering the ``echo`` subprotocol, which is
  echoed) is greeted ``{"hello": <connection>}``; each text message comes
  back to its sender as ``{"echo": text}`` and goes to every other echo
  connection as ``{"from": <connection>, "said": text}``;
- every record change of any protocol reaches the echo websockets as
  ``{"changed": collection, "kind": kind}``: changes are rendered by every
  mount of the table, not only the protocol that made them;
- its errors are plain text, so a test can tell them from the neutral format.
"""

from __future__ import annotations

from typing import Any, Sequence

import msgspec

from satchel.protocol.changes import Change, DocumentChange
from satchel.protocol.channels import Audience, Deliver
from satchel.protocol.environment import Environment
from satchel.protocol.http import HttpRequest, HttpResponse, json_response
from satchel.protocol.mounts import Accepted, HttpOutcome, Mount, RenderContext
from satchel.protocol.operations import Action

encode = msgspec.json.encode
NAME = "echo"


class EchoMount(Mount):
    name = NAME

    def claims_request(self, request: HttpRequest) -> bool:
        return request.path == "/echo"

    def handle_request(self, request: HttpRequest, env: Environment, form: Any = None) -> Action[HttpOutcome]:
        if request.method != "POST":
            return HttpOutcome(self.error_response(405, "POST only"))
        text = request.body.decode("utf-8", "replace")
        return HttpOutcome(json_response(200, {"echo": text}), [Deliver(NAME, encode({"heard": text}), Audience())])
        yield  # an action is a generator

    def error_response(self, status: int, message: str) -> HttpResponse:
        return HttpResponse(status, [("content-type", "text/plain; charset=utf-8")], f"echo says: {message}".encode())

    def claims_upgrade(self, request: HttpRequest) -> bool:
        return request.path == "/echo"

    def accept(self, request: HttpRequest, connection: str, env: Environment) -> Action[Accepted]:
        greeting = Deliver(NAME, encode({"hello": connection}), Audience(connection=connection))
        offered = [p.strip() for p in (request.header("sec-websocket-protocol") or "").split(",")]
        return Accepted(connection, None, [greeting], subprotocol="echo" if "echo" in offered else None)
        yield

    def handle_message(self, state: str, message: str | bytes, env: Environment) -> Action[list[Any]]:
        text = message if isinstance(message, str) else message.decode("utf-8", "replace")
        return [
            Deliver(NAME, encode({"echo": text}), Audience(connection=state)),
            Deliver(NAME, encode({"from": state, "said": text}), Audience(exclude=state)),
        ]
        yield

    def closed(self, state: str) -> list[Any]:
        return [Deliver(NAME, encode({"left": state}), Audience(exclude=state))]

    def render(self, change: Change | DocumentChange, context: RenderContext) -> Sequence[Deliver]:
        if type(change) is not Change:
            return ()
        return (Deliver(NAME, encode({"changed": change.collection, "kind": change.kind}), Audience()),)
