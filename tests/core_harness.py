"""Drives the pure core synchronously, the way a server would, with no I/O.

``Core`` plays runner and hub at once: the standard mount table behind a
``Switchboard`` (as every server runs it), operations to a ``MemoryStore``
(passwords to a fast stand-in for argon2), and the deliveries of the events
an action returns recorded per connection, so that a test can read what
every connection received.
"""

from __future__ import annotations

import itertools
import json
from collections import defaultdict
from typing import Any

import msgspec

from satchel.protocol import backpack
from satchel.protocol.channels import Binary, CloseConnection
from satchel.protocol.environment import fixed_environment
from satchel.protocol.files import CommitFile, RemoveFile, StagedFile
from satchel.protocol.http import HttpRequest, HttpResponse
from satchel.protocol.mount_table import standard_mounts
from satchel.protocol.operations import HashPassword, Operation, VerifyPassword, run_sync
from satchel.protocol.switchboard import Switchboard
from satchel.storage_backends.memory import MemoryStore

API_KEY = "test-api-key"


class Response:
    def __init__(self, response: HttpResponse) -> None:
        self.status = response.status
        self.headers = response.headers
        self.body = response.body
        self.json: Any = json.loads(response.body) if response.body else None
        self.file: Any = None

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k == name), None)

    @property
    def cookie(self) -> str | None:
        value = self.header("set-cookie")
        return value.split(";")[0] if value else None


class Core:
    def __init__(self) -> None:
        self.store = MemoryStore()
        self.env = fixed_environment()
        self.config = backpack.BackpackConfig(api_key=API_KEY)
        self.board = Switchboard(standard_mounts(self.config), self.env)
        self.received: dict[str, list[Any]] = defaultdict(list)
        self._connection_ids = itertools.count(1)
        #: staged uploads by name, and committed files by (owner, file id)
        self.staged: dict[str, bytes] = {}
        self.files: dict[tuple[str, str], bytes] = {}

    def stage(self, content: bytes) -> StagedFile:
        name = f"staged-{len(self.staged)}"
        self.staged[name] = content
        return StagedFile(name, len(content))

    def execute(self, operation: Operation) -> Any:
        if isinstance(operation, HashPassword):
            return "fake$" + operation.password
        if isinstance(operation, VerifyPassword):
            return bool(operation.password_hash) and operation.password_hash == "fake$" + operation.password
        if isinstance(operation, CommitFile):
            self.files[(operation.owner, operation.file_id)] = self.staged.pop(operation.staged)
            return None
        if isinstance(operation, RemoveFile):
            self.files.pop((operation.owner, operation.file_id), None)
            return None
        return self.store.execute_sync(operation)

    def run(self, action: Any) -> Any:
        return run_sync(action, self.execute)

    def publish(self, events: Any) -> None:
        for payload, recipients in self.board.deliveries(events):
            if isinstance(payload, CloseConnection):
                for connection in recipients:
                    self.received[connection].append(payload)
                    self.publish(self.board.closed(connection))
                continue
            message = payload if isinstance(payload, Binary) else msgspec.json.decode(payload)
            for connection in recipients:
                self.received[connection].append(message)

    # -- HTTP -------------------------------------------------------------

    def http(
        self,
        method: str,
        target: str,
        body: Any = None,
        *,
        cookie: str | None = None,
        key: str | None = API_KEY,
        headers: list[tuple[str, str]] | None = None,
        raw: bytes | None = None,
        form: Any = None,
    ) -> Response:
        request_headers = list(headers or [])
        if key is not None:
            request_headers.append(("authorization", f"key {key}"))
        if cookie is not None:
            request_headers.append(("cookie", cookie))
        payload = raw if raw is not None else (b"" if body is None else json.dumps(body).encode())
        if payload:
            request_headers.append(("content-type", "application/json"))
        request = HttpRequest(method, target, request_headers, payload)
        outcome = self.run(self.board.handle_request(request, form))
        self.publish(outcome.changes)
        response = Response(outcome.response)
        response.file = outcome.file
        return response

    def user(self, email: str, password: str = "correct horse") -> tuple[str, str]:
        """Register and log in; returns (user id, cookie header value)."""
        registered = self.http("POST", "/register", {"email": email, "password": password})
        assert registered.status == 200, registered.json
        logged_in = self.http("POST", "/login", {"email": email, "password": password})
        assert logged_in.status == 200, logged_in.json
        assert logged_in.cookie is not None
        return logged_in.json["id"], logged_in.cookie

    # -- websockets -------------------------------------------------------

    def connect(self, cookie: str | None) -> str | Response:
        connection = f"c{next(self._connection_ids)}"
        headers = [("cookie", cookie)] if cookie else []
        accepted = self.run(self.board.accept(HttpRequest("GET", "/", headers), connection))
        if isinstance(accepted, HttpResponse):
            return Response(accepted)
        self.publish(accepted.events)
        return connection

    def send(self, connection: str, message: Any) -> None:
        frame = message if isinstance(message, (str, bytes)) else json.dumps(message)
        assert self.board.opened(connection) is not None, f"{connection} is not open"
        self.publish(self.run(self.board.handle_message(connection, frame)))

    def close(self, connection: str) -> None:
        assert self.board.opened(connection) is not None, f"{connection} is not open"
        self.publish(self.board.closed(connection))

    def take(self, connection: str) -> list[Any]:
        """What ``connection`` received since the last take."""
        messages = self.received.pop(connection, [])
        return messages
