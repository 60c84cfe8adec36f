"""The headers a resource websocket carries: real ones, and those of seed 004's
``Sec-WebSocket-Protocol``.

Seed 004: "parse all of your headers in through Sec-WebSocket-Protocol ...
a list of headers split by \\n and key value split by : and then encoded
into base58". ``subprotocol_headers`` undoes that: the first subprotocol
the client offered is base58-decoded (``base58``), read as UTF-8, and split
into lines at ``\\n`` (a ``\\r`` before it is dropped, and empty lines are
skipped); each line splits at its first ``:`` into a name (trimmed,
lower-cased, an HTTP token) and a value (trimmed). That token is the one
the server echoes (RFC 6455 4.2.2: the server picks one the client offered).

Anything else is refused with ``InvalidHeaders``, whose message says what
was wrong, and which the mount answers with 400 at the upgrade: a token
that is not base58, bytes that are not UTF-8, a line without ``:``, a bad
name, control characters in a value, and more than ``MAX_LINES`` lines or
``MAX_ENCODED_CHARS`` characters (the decoding is bounded before it
starts; the transport's limit on the request head bounds it first).
A name given twice keeps its first value.
"""

from __future__ import annotations

import re

from ..http import HttpRequest
from . import base58

__all__ = ["InvalidHeaders", "MAX_ENCODED_CHARS", "MAX_LINES", "MAX_VALUE_CHARS", "encode_headers",
           "offered_subprotocols", "subprotocol_headers"]

#: The longest base58 token decoded (about 5.8 KB of header text).
MAX_ENCODED_CHARS = 8192
#: The most header lines one token may carry.
MAX_LINES = 64
#: The longest header value.
MAX_VALUE_CHARS = 4096

_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]{1,128}\Z")
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


class InvalidHeaders(ValueError):
    """A ``Sec-WebSocket-Protocol`` that is not base58 of ``key:value`` lines."""


def offered_subprotocols(request: HttpRequest) -> list[str]:
    """The subprotocols the client offered, in its order (comma-separated,
    over any number of ``Sec-WebSocket-Protocol`` headers)."""
    offered: list[str] = []
    for name, value in request.headers:
        if name == "sec-websocket-protocol":
            offered.extend(token.strip() for token in value.split(",") if token.strip())
    return offered


def subprotocol_headers(token: str) -> dict[str, str]:
    """The headers the base58 ``token`` carries (names lower-cased); raises
    ``InvalidHeaders`` (see the module docstring)."""
    try:
        raw = base58.decode(token, MAX_ENCODED_CHARS)
    except base58.InvalidBase58 as exc:
        raise InvalidHeaders(f"Sec-WebSocket-Protocol is not base58: {exc}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidHeaders("Sec-WebSocket-Protocol does not decode to UTF-8 text") from None
    lines = text.split("\n")
    if len(lines) > MAX_LINES:
        raise InvalidHeaders(f"Sec-WebSocket-Protocol carries more than {MAX_LINES} header lines")
    headers: dict[str, str] = {}
    for number, line in enumerate(lines, 1):
        if line.endswith("\r"):
            line = line[:-1]
        if not line.strip():
            continue
        name, colon, value = line.partition(":")
        if not colon:
            raise InvalidHeaders(f"header line {number} of Sec-WebSocket-Protocol has no ':' (key:value)")
        name, value = name.strip(), value.strip()
        if not _NAME.match(name):
            raise InvalidHeaders(f"header line {number} of Sec-WebSocket-Protocol has no valid header name")
        if len(value) > MAX_VALUE_CHARS or _CONTROL.search(value):
            raise InvalidHeaders(f"header line {number} of Sec-WebSocket-Protocol has an invalid value")
        headers.setdefault(name.lower(), value)
    return headers


def encode_headers(headers: dict[str, str] | list[tuple[str, str]]) -> str:
    """The ``Sec-WebSocket-Protocol`` token a client sends for ``headers``
    (what the seed asks browsers to build)."""
    pairs = headers.items() if isinstance(headers, dict) else headers
    return base58.encode("\n".join(f"{name}:{value}" for name, value in pairs).encode("utf-8"))
