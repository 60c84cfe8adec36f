"""What Asnity's REST API looks like on the wire, as NestJS sends it
(asnity.md section 1): the envelope, the error bodies, CORS, and how a
request's body, query and cookies are read.

- Success: ``{"statusCode":200,"result":{...}}``; the HTTP status is 201 for
  every POST (the original has no ``@HttpCode``) and 200 otherwise.
- Errors carry no ``result``: ``{"statusCode","message","error"}`` with the
  status text as ``error`` (``NestError``); a validation failure's
  ``message`` is an array; the guard's refusal is 401
  ``{"statusCode":401,"message":"Unauthorized"}`` and a crash 500
  ``{"statusCode":500,"message":"Internal server error"}``, both without
  ``error``; an unknown route is 404 ``Cannot GET /api/...``.
- CORS: ``origin: true`` (the request's Origin is echoed) with credentials,
  and Express's ``cors`` answer to a preflight (204).
- Bodies are parsed as Express's ``json()`` (strict: an object or an array)
  and ``urlencoded()`` parsers do; an array, like any other body that is not
  an object, carries no fields. Query values stay strings (no coercion).
"""

from __future__ import annotations

from http.cookies import CookieError, SimpleCookie
from typing import Any
from urllib.parse import parse_qsl

import msgspec

from ..http import HttpRequest, HttpResponse, json_response

__all__ = [
    "STATUS_TEXT",
    "NestError",
    "bad_request",
    "cookie",
    "cors_headers",
    "error_response",
    "forbidden",
    "guard_failure",
    "json_body",
    "not_found",
    "ok",
    "preflight",
    "query_params",
    "route_not_found",
    "unauthorized",
]

#: The ``error`` of Nest's built-in exceptions, by status.
STATUS_TEXT = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    413: "Payload Too Large",
    415: "Unsupported Media Type",
    422: "Unprocessable Entity",
    429: "Too Many Requests",
    500: "Internal Server Error",
}

_METHODS = "GET,HEAD,PUT,PATCH,POST,DELETE,OPTIONS"
_decode = msgspec.json.Decoder().decode

# ``error`` left out: the guard's refusal and a crash have none.
_NO_ERROR = ""


class NestError(Exception):
    """A refusal in Nest's format: ``status``, ``message`` (a string, or the
    list of a validation failure) and ``error`` (the status text; ``""``
    leaves the key out, as Nest's guard and crash bodies do)."""

    def __init__(self, status: int, message: str | list[str], error: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.error = STATUS_TEXT.get(status, "Error") if error is None else error

    def body(self) -> dict[str, Any]:
        """The JSON body Nest sends for this error."""
        body: dict[str, Any] = {"statusCode": self.status, "message": self.message}
        if self.error:
            body["error"] = self.error
        return body

    def response(self) -> HttpResponse:
        """The HTTP response Nest sends for this error."""
        return json_response(self.status, self.body())


def bad_request(message: str | list[str]) -> NestError:
    """``BadRequestException(message)``: 400."""
    return NestError(400, message)


def unauthorized(message: str) -> NestError:
    """``UnauthorizedException(message)``: 401 with ``"error":"Unauthorized"``."""
    return NestError(401, message)


def forbidden(message: str) -> NestError:
    """``ForbiddenException(message)``: 403."""
    return NestError(403, message)


def not_found(message: str) -> NestError:
    """``NotFoundException(message)``: 404."""
    return NestError(404, message)


def guard_failure() -> NestError:
    """The JWT guard's refusal: 401 ``{"statusCode":401,"message":"Unauthorized"}``
    (the body the original's client tests for ``statusCode === 401``)."""
    return NestError(401, "Unauthorized", _NO_ERROR)


def ok(method: str, result: dict[str, Any], headers: list[tuple[str, str]] | None = None) -> HttpResponse:
    """The interceptor's envelope around ``result``: 201 for a POST, else 200."""
    return json_response(201 if method == "POST" else 200, {"statusCode": 200, "result": result}, headers)


def error_response(status: int, message: str) -> HttpResponse:
    """A transport-level error (a body too large, a crash) in Nest's format."""
    return NestError(status, message, _NO_ERROR if status >= 500 else None).response()


def route_not_found(method: str, target: str) -> NestError:
    """Nest's answer to a route it does not have: 404 ``Cannot GET /api/x``."""
    return NestError(404, f"Cannot {method} {target}")


def cors_headers(request: HttpRequest) -> list[tuple[str, str]]:
    """``enableCors({origin: true, credentials: true})``: the request's Origin
    echoed, credentials allowed (nothing without an Origin)."""
    origin = request.header("origin")
    if origin is None:
        return []
    return [
        ("access-control-allow-origin", origin),
        ("vary", "Origin"),
        ("access-control-allow-credentials", "true"),
    ]


def preflight(request: HttpRequest) -> HttpResponse:
    """Express ``cors``'s answer to an OPTIONS request: 204 with the allowed
    methods and the requested headers reflected."""
    headers = cors_headers(request)
    headers.append(("access-control-allow-methods", _METHODS))
    asked = request.header("access-control-request-headers")
    if asked is not None:
        headers += [("access-control-allow-headers", asked), ("vary", "Access-Control-Request-Headers")]
    return HttpResponse(204, headers)


def json_body(request: HttpRequest) -> dict[str, Any]:
    """The request's fields: a JSON or urlencoded object, else none.

    A body that is not JSON answers 400 in Nest's format, as body-parser's
    error does; an array or a body of another content type carries no fields
    (the original spreads the body into its DTO, and a DTO keeps only
    declared fields).
    """
    if not request.body.strip():
        return {}
    content_type = (request.header("content-type") or "application/json").split(";")[0].strip().lower()
    if content_type == "application/x-www-form-urlencoded":
        try:
            return _fields(parse_qsl(request.body.decode("utf-8"), keep_blank_values=True))
        except UnicodeDecodeError:
            raise bad_request("The form body is not valid UTF-8") from None
    if content_type != "application/json" and not content_type.endswith("+json"):
        return {}
    stripped = request.body.lstrip()
    if stripped[:1] not in (b"{", b"["):
        # body-parser's strict mode accepts only objects and arrays.
        raise bad_request(f"Unexpected token {stripped[:1].decode('latin-1')!s} in JSON at position 0")
    try:
        body = _decode(request.body)
    except msgspec.DecodeError as exc:
        raise bad_request(f"Unexpected token in JSON: {exc}") from None
    return body if isinstance(body, dict) else {}


def _fields(pairs: list[tuple[str, str]]) -> dict[str, Any]:
    # A repeated key becomes a list, as the qs parser makes it.
    fields: dict[str, Any] = {}
    for key, value in pairs:
        if key in fields:
            previous = fields[key]
            fields[key] = [*previous, value] if isinstance(previous, list) else [previous, value]
        else:
            fields[key] = value
    return fields


def query_params(request: HttpRequest) -> dict[str, Any]:
    """The query string as Express reads it: values are strings, a repeated
    key a list of strings."""
    try:
        return _fields(parse_qsl(request.query, keep_blank_values=True))
    except UnicodeDecodeError:  # pragma: no cover - parse_qsl replaces bad bytes
        return {}


def cookie(request: HttpRequest, name: str) -> str | None:
    """The value of cookie ``name`` in the request, if it has one."""
    for key, value in request.headers:
        if key != "cookie":
            continue
        jar: SimpleCookie = SimpleCookie()
        try:
            jar.load(value)
        except CookieError:
            continue
        morsel = jar.get(name)
        if morsel is not None and morsel.value:
            return morsel.value
    return None
