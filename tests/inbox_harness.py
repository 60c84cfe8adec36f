"""Drives the inbox core synchronously against a MemoryStore, with a clock
the test sets, and records every change event the actions return."""

from __future__ import annotations

import itertools
import json
from typing import Any

from satchel.protocol import inbox
from satchel.protocol.changes import DocumentChange
from satchel.protocol.environment import Environment
from satchel.protocol.http import HttpRequest
from satchel.protocol.mounts import DatagramOutcome, HttpOutcome
from satchel.protocol.operations import run_sync
from satchel.storage_backends.memory import MemoryStore

START_MS = 1_700_000_000_000
READ = "0123456789abcdef0123456789abcdef"
WRITE = "fedcba9876543210fedcba9876543210"
OTHER_READ = "11111111111111111111111111111111"
OTHER_WRITE = "22222222222222222222222222222222"
MESSAGE_ID = "00112233aabbccdd"


class Clock:
    """A clock that stands still until the test moves it."""

    def __init__(self, now_ms: int = START_MS) -> None:
        self.now_ms = now_ms

    def __call__(self) -> int:
        return self.now_ms


class Response:
    def __init__(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    @property
    def json(self) -> Any:
        return json.loads(self.body) if self.body else None

    def header(self, name: str) -> str | None:
        return next((value for key, value in self.headers if key == name), None)

    def __repr__(self) -> str:
        return f"<Response {self.status} {self.body[:200]!r}>"


class InboxCore:
    def __init__(self, config: inbox.InboxConfig | None = None, store: MemoryStore | None = None) -> None:
        self.store = store or MemoryStore()
        self.clock = Clock()
        tokens = itertools.count(1)
        self.env = Environment(now_ms=self.clock, new_id=lambda: f"{next(tokens):024x}", new_token=lambda: f"t{next(tokens)}")
        self.config = config or inbox.InboxConfig()
        self.guard = inbox.new_replay_guard(self.config, self.clock())
        self.changes: list[DocumentChange] = []

    def run(self, action: Any) -> Any:
        return run_sync(action, self.store.execute_sync)

    # -- HTTP -------------------------------------------------------------

    def http(
        self, method: str, target: str, body: bytes | Any = b"", *, headers: list[tuple[str, str]] | None = None
    ) -> Response:
        payload = body if isinstance(body, bytes) else json.dumps(body).encode()
        request = HttpRequest(method, target, list(headers or []), payload)
        outcome = self.run(inbox.handle_request(request, self.config, self.env))
        assert isinstance(outcome, HttpOutcome)
        self.changes.extend(outcome.changes)
        return Response(outcome.response.status, outcome.response.headers, outcome.response.body)

    def put(
        self,
        content: bytes | Any,
        *,
        read: str = READ,
        write: str | None = WRITE,
        derived_from: int | str | None = 0,
        revision: int | str | None = 1000,
        headers: list[tuple[str, str]] | None = None,
    ) -> Response:
        all_headers = list(headers or [])
        for name, value in (("write-token", write), ("derived-from", derived_from), ("revision", revision)):
            if value is not None:
                all_headers.append((name, str(value)))
        return self.http("PUT", f"/backend/documents/{read}", content, headers=all_headers)

    def get(self, read: str = READ, *, if_newer_than: int | str | None = None) -> Response:
        headers = [] if if_newer_than is None else [("if-newer-than", str(if_newer_than))]
        return self.http("GET", f"/backend/documents/{read}", headers=headers)

    def post_message(self, message: bytes | Any, *, write: str = WRITE, message_id: str = MESSAGE_ID) -> Response:
        return self.http("POST", f"/backend/documents/{write}/messages/{message_id}", message)

    def delete_message(self, *, write: str = WRITE, message_id: str = MESSAGE_ID) -> Response:
        return self.http("DELETE", f"/backend/documents/{write}/messages/{message_id}")

    def content(self, read: str = READ) -> Any:
        response = self.get(read)
        assert response.status == 200, response
        return response.json

    def inbox(self, content: Any = None, **put: Any) -> int:
        """Create an inbox document; returns its revision."""
        response = self.put({"#messages": {}} if content is None else content, **put)
        assert response.status == 200, response
        return response.json["revision"]

    # -- UDP --------------------------------------------------------------

    def datagram(self, datagram: bytes) -> bytes | None:
        outcome = self.run(inbox.handle_datagram(datagram, self.guard, self.config, self.env))
        assert isinstance(outcome, DatagramOutcome)
        self.changes.extend(outcome.changes)
        assert outcome.answer is None or len(outcome.answer) < len(datagram)
        return outcome.answer

    def take_changes(self) -> list[DocumentChange]:
        changes, self.changes = self.changes, []
        return changes
