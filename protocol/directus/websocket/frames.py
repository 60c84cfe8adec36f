"""Every frame the Directus websockets send, encoded in one place.

Two protocols share ``/websocket`` (``../shared/protocols/directus.md``):

- **core** (section 2), Directus's realtime websocket that ``@directus/sdk``
  speaks: lower-case types, ``{"type", "status": "error", "error": {"code",
  "message"}, "uid"}`` errors, ``{"type": "subscription", "event", "data",
  "uid"}`` events. Keys come in Directus's order (``fmtMessage(type, data,
  uid)``: the type, the data's keys, then the uid), and a missing uid is
  left out, as ``JSON.stringify`` leaves out ``undefined``.
- **the extension** ``directus-websocket-subscribe``, its latest format
  (section 1b: ``RESPONSE`` / ``ERROR`` / ``SUBSCRIPTION``) and its early
  one (section 1a, "v1": events without ``type``, error ``data`` an object).

Frames are bytes, encoded once; a delivery to many connections shares them.
"""

from __future__ import annotations

from typing import Any

import msgspec

__all__ = [
    "CORE",
    "EXTENSION",
    "EXTENSION_V1",
    "FORMATS",
    "encode",
    "core_frame",
    "core_error",
    "core_auth_ok",
    "core_event",
    "extension_response",
    "extension_error",
    "extension_event",
    "internal_error",
    "unavailable",
]

#: The three formats a connection may speak (``Subscription.format``).
CORE = "core"
EXTENSION = "extension"
EXTENSION_V1 = "extension-v1"
FORMATS = (CORE, EXTENSION, EXTENSION_V1)

encode = msgspec.json.Encoder().encode

def _with_uid(message: dict[str, Any], uid: Any) -> dict[str, Any]:
    if uid is not None:
        message["uid"] = uid
    return message


# -- core (directus.md section 2) ------------------------------------------------


def core_frame(type_: str, data: dict[str, Any], uid: Any = None) -> bytes:
    """``{"type": type_, **data, "uid"?}`` - Directus's ``fmtMessage``."""
    return encode(_with_uid({"type": type_, **data}, uid))


def core_error(type_: str, code: str, message: str, uid: Any = None) -> bytes:
    """``{"type", "status": "error", "error": {"code", "message"}, "uid"?}``."""
    return encode(_with_uid({"type": type_, "status": "error", "error": {"code": code, "message": message}}, uid))


def core_auth_ok(uid: Any = None, refresh_token: str | None = None) -> bytes:
    """``{"type": "auth", "status": "ok", "refresh_token"?, "uid"?}``: what
    the SDK waits for, as the first frame, within 1 s."""
    message: dict[str, Any] = {"type": "auth", "status": "ok"}
    if refresh_token is not None:
        message["refresh_token"] = refresh_token
    return encode(_with_uid(message, uid))


def core_event(event: str, data: Any, uid: str | None) -> bytes:
    """``{"type": "subscription", "event", "data", "uid"?}`` (``init``,
    ``create``, ``update``, ``delete``, ``unsubscribe``; ``data`` absent
    when ``...`` is passed)."""
    message: dict[str, Any] = {"type": "subscription", "event": event}
    if data is not ...:
        message["data"] = data
    return encode(_with_uid(message, uid))


# -- the extension (directus.md section 1) -----------------------------------------


def extension_response(data: Any, uid: Any = None) -> bytes:
    """``{"type": "RESPONSE", "data", "uid"?}`` (both formats)."""
    return encode(_with_uid({"type": "RESPONSE", "data": data}, uid))


def extension_error(message: str, uid: Any = None, *, v1: bool = False, code: str = "INVALID_PAYLOAD",
                    status: int = 400) -> bytes:
    """``{"type": "ERROR", "data", "uid"?}``: ``data`` is the message (latest
    format), or for v1 clients the error as an object, as v1 serialized its
    ``Error``s - ``{"status", "code", "message", "extensions": {}}`` (v1's
    own objects lacked ``message``; ours keep it)."""
    data: Any = {"status": status, "code": code, "message": message, "extensions": {}} if v1 else message
    return encode(_with_uid({"type": "ERROR", "data": data}, uid))


def extension_event(fmt: str, action: str, collection: str, key: str, payload: Any, uid: Any = None) -> bytes:
    """One subscription event in the extension's ``fmt``.

    Latest format (1b), keys in its order: create ``{"type":"SUBSCRIPTION",
    "key","action","collection","payload":{..},"uid"?}``, update ``{...,
    "keys":[..],...,"payload":[{..}]}``, delete ``{"type","action",
    "collection","payload":[keys],"uid"?}``. v1 (1a): ``{"action","payload",
    "key"|"keys","collection"}``, no type and no uid; its update payload is
    an object. ``payload`` is what the subscriber may see (a record, or for
    delete the keys)."""
    if fmt == EXTENSION_V1:
        message: dict[str, Any] = {"action": action, "payload": payload}
        if action == "create":
            message["key"] = key
        elif action == "update":
            message["keys"] = [key]
        message["collection"] = collection
        return encode(message)
    message = {"type": "SUBSCRIPTION"}
    if action == "create":
        message["key"] = key
    elif action == "update":
        message["keys"] = [key]
    message["action"] = action
    message["collection"] = collection
    message["payload"] = payload
    return encode(_with_uid(message, uid))


_INTERNAL = {
    CORE: core_error("server", "INTERNAL", "An unexpected error occurred."),
    EXTENSION: extension_error("Internal server error"),
    EXTENSION_V1: extension_error("Internal server error", v1=True, code="INTERNAL", status=500),
}


def internal_error(fmt: str) -> bytes:
    """What a connection speaking ``fmt`` is told when its message crashed
    an action (a bug, or a store that failed)."""
    return _INTERNAL[fmt]


_UNAVAILABLE_MESSAGE = "Service unavailable: the database cannot be reached. Try again."


def unavailable(fmt: str, message: str | bytes) -> bytes:
    """Directus's SERVICE_UNAVAILABLE (503) in ``fmt``, for ``message`` that
    the store could not answer: with its ``type`` and ``uid`` when it is a
    JSON object that has them."""
    try:
        request = msgspec.json.decode(message)
    except (msgspec.DecodeError, TypeError):
        request = None
    uid = request.get("uid") if isinstance(request, dict) else None
    if fmt == CORE:
        kind = request.get("type") if isinstance(request, dict) else None
        return core_error(kind if isinstance(kind, str) else "server", "SERVICE_UNAVAILABLE", _UNAVAILABLE_MESSAGE,
                          uid)
    return extension_error(_UNAVAILABLE_MESSAGE, uid, v1=fmt == EXTENSION_V1, code="SERVICE_UNAVAILABLE",
                           status=503)
