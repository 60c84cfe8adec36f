"""Directus's errors: the codes, statuses and messages its clients see.

Directus answers every REST failure with one shape (docs.directus.io,
Reference > Error codes; ``../shared/protocols/directus.md`` section 3)::

    {"errors": [{"message": "You don't have permission to access this.",
                 "extensions": {"code": "FORBIDDEN"}}]}

and ``@directus/sdk`` treats any non-2xx answer, or any body with an
``errors`` key, as a failure. ``DirectusError`` carries a code with the
status and the message; the core's other peer errors already carry one
(``query.InvalidQuery`` is ``INVALID_QUERY``, ``permissions.Forbidden`` is
``FORBIDDEN``, ``permissions.InvalidRules`` is ``INVALID_PAYLOAD``), and
``error_for`` renders any of them. The websocket protocols render the same
codes in their own frames (``{"type", "status": "error", "error": {"code",
"message"}}``), so the codes live here, apart from either transport.
"""

from __future__ import annotations

from typing import Any

from ..errors import RemoteProtocolError
from ..http import HttpResponse, json_response

__all__ = [
    "DirectusError",
    "FORBIDDEN",
    "INVALID_CREDENTIALS",
    "INVALID_PAYLOAD",
    "INVALID_QUERY",
    "ROUTE_NOT_FOUND",
    "TOKEN_EXPIRED",
    "CONTENT_TOO_LARGE",
    "INTERNAL",
    "code_for_status",
    "error_body",
    "error_for",
    "error_response",
    "forbidden",
    "invalid_credentials",
    "invalid_payload",
    "route_not_found",
]

FORBIDDEN = "FORBIDDEN"
INVALID_CREDENTIALS = "INVALID_CREDENTIALS"
INVALID_PAYLOAD = "INVALID_PAYLOAD"
INVALID_QUERY = "INVALID_QUERY"
ROUTE_NOT_FOUND = "ROUTE_NOT_FOUND"
TOKEN_EXPIRED = "TOKEN_EXPIRED"
CONTENT_TOO_LARGE = "CONTENT_TOO_LARGE"
INTERNAL = "INTERNAL"

# What a bare status means when nothing more specific is known (a transport
# error such as a body too large, a conflict the core raised).
_BY_STATUS = {
    400: INVALID_PAYLOAD,
    401: INVALID_CREDENTIALS,
    403: FORBIDDEN,
    404: ROUTE_NOT_FOUND,
    405: ROUTE_NOT_FOUND,
    409: "CONFLICT",
    413: CONTENT_TOO_LARGE,
    415: "UNSUPPORTED_MEDIA_TYPE",
    429: "REQUESTS_EXCEEDED",
    503: "SERVICE_UNAVAILABLE",
}


class DirectusError(RemoteProtocolError):
    """A failure with Directus's ``code`` (``FORBIDDEN``, ``INVALID_PAYLOAD``...),
    its HTTP ``status`` and a ``message`` safe to show."""

    def __init__(self, code: str, message: str, status: int) -> None:
        super().__init__(message, status)
        self.code = code


def forbidden() -> DirectusError:
    """Directus's answer to what the rules deny - and to an item or a
    collection that does not exist, which it does not tell apart."""
    return DirectusError(FORBIDDEN, "You don't have permission to access this.", 403)


def invalid_credentials() -> DirectusError:
    """A wrong email or password, an unknown refresh token, a bad Bearer token."""
    return DirectusError(INVALID_CREDENTIALS, "Invalid user credentials.", 401)


def invalid_payload(reason: str) -> DirectusError:
    """A body Directus refuses: ``Invalid payload. <reason>.``"""
    reason = reason.rstrip(".")
    return DirectusError(INVALID_PAYLOAD, f"Invalid payload. {reason[:1].upper()}{reason[1:]}.", 400)


def route_not_found(path: str) -> DirectusError:
    """A path (or a method on it) that no route answers."""
    shown = path if len(path) <= 200 else path[:197] + "..."
    return DirectusError(ROUTE_NOT_FOUND, f"Route {shown} doesn't exist.", 404)


def code_for_status(status: int) -> str:
    """The code a bare status stands for."""
    return _BY_STATUS.get(status, INTERNAL if status >= 500 else INVALID_PAYLOAD)


def error_body(code: str, message: str) -> dict[str, Any]:
    """``{"errors": [{"message", "extensions": {"code"}}]}``."""
    return {"errors": [{"message": message, "extensions": {"code": code}}]}


def error_response(status: int, message: str, code: str | None = None) -> HttpResponse:
    """An error answer; ``code`` defaults to what ``status`` stands for."""
    return json_response(status, error_body(code or code_for_status(status), message))


def error_for(exc: RemoteProtocolError) -> HttpResponse:
    """The answer to a peer error raised by the core: its own code when it
    has one (``DirectusError``, ``InvalidQuery``, ``Forbidden``,
    ``InvalidRules``), else the code its status stands for."""
    code = getattr(exc, "code", None)
    return error_response(exc.status, exc.message, code if isinstance(code, str) else None)
