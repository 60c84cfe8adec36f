"""The resource websocket's messages, both ways (seed 004).

Client to server (anything else is ``{"error":"Invalid message format"}``)::

    {"action": "subscribe" | "unsubscribe",
     "resource": {"type": "kvStore" | "collection" | "liveConfig" | "document", "id": "..."},
     "since": "2026-12-01T12:00:00.123Z"}     # optional, subscribe only: resume


Server to client:

- an update: ``{"userId", "resource": {"type", "id"}, "data", "version"}``
  (``userId``: who made the write, ``null`` when nobody signed in did;
  ``version``: ISO 8601 UTC with milliseconds, increasing per resource). An
  entry's update that deletes it has ``"data": null`` and ``"deleted": true``.
- a warning: ``{"warning": "resource_not_found", "message", "resource"}``;
  ``{"warning": "history_lost", "message", "resource"}`` when a ``since``
  cannot be resumed from (the client must reload; what a plain subscribe
  answers follows).
- an error: ``{"error", "code", "message"}`` and ``"resource"`` when the
  message named one. ``error`` is a short title - exactly ``"Invalid
  message format"`` for input that is not a message of this protocol, as
  the seed has it - ``code`` a stable snake_case name, ``message`` the detail.
  The REST API's errors have the same shape.

Every frame is encoded here, once per distinct audience.
"""

from __future__ import annotations

from typing import Any

import msgspec

__all__ = [
    "ResourceRef",
    "ClientMessage",
    "INVALID_MESSAGE",
    "decode_message",
    "MessageError",
    "update_frame",
    "warning_frame",
    "error_frame",
    "error_body",
]

#: The seed's error for malformed input, kept exactly.
INVALID_MESSAGE = "Invalid message format"

_encode = msgspec.json.Encoder().encode


class ResourceRef(msgspec.Struct, frozen=True):
    """A resource as the wire names it."""

    type: str
    id: str


class ClientMessage(msgspec.Struct, frozen=True):
    """A subscribe or unsubscribe (other fields are ignored). ``since``: the
    last version the client saw of the resource, to resume from
    (``history``); a subscribe's only."""

    action: str
    resource: ResourceRef
    since: str | None = None


_decoder = msgspec.json.Decoder(ClientMessage)


class MessageError(Exception):
    """A message that is not valid: ``message`` says why."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def decode_message(message: str | bytes, max_bytes: int) -> ClientMessage:
    """The message ``message`` is, or ``MessageError``."""
    size = len(message) if isinstance(message, bytes) else len(message.encode("utf-8", "surrogatepass"))
    if size > max_bytes:
        raise MessageError(f"a message is at most {max_bytes} bytes")
    try:
        return _decoder.decode(message)
    except msgspec.ValidationError as exc:
        raise MessageError(f"not a subscribe or unsubscribe: {str(exc)[:200]}") from None
    except (msgspec.DecodeError, UnicodeError, RecursionError):
        raise MessageError("not JSON") from None


def _resource(ref: ResourceRef) -> dict[str, str]:
    return {"type": ref.type, "id": ref.id}


def update_frame(user_id: str | None, ref: ResourceRef, data: Any, version: str, *, deleted: bool = False) -> bytes:
    """An update (``data`` may be ``msgspec.Raw``: stored JSON, not re-encoded)."""
    frame: dict[str, Any] = {"userId": user_id, "resource": _resource(ref), "data": data, "version": version}
    if deleted:
        frame["deleted"] = True
    return _encode(frame)


def warning_frame(ref: ResourceRef, message: str, warning: str = "resource_not_found") -> bytes:
    """A warning about ``ref`` (the seed's ``resource_not_found``)."""
    return _encode({"warning": warning, "message": message, "resource": _resource(ref)})


def error_body(title: str, code: str, message: str, ref: ResourceRef | None = None) -> dict[str, Any]:
    """The protocol's error object (websocket and REST)."""
    body: dict[str, Any] = {"error": title, "code": code, "message": message}
    if ref is not None:
        body["resource"] = {"type": ref.type[:64], "id": ref.id[:256]}
    return body


def error_frame(title: str, code: str, message: str, ref: ResourceRef | None = None) -> bytes:
    """An error, encoded."""
    return _encode(error_body(title, code, message, ref))
