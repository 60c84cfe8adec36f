"""HTTP requests and responses as the core sees them.

The transport parses bytes into an ``HttpRequest`` (with the body already
read, up to a limit) and writes the ``HttpResponse`` the core returns. Header
names are lower-case. Nothing here knows about sockets or a particular parser.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote

import msgspec

__all__ = ["HttpRequest", "HttpResponse", "json_response", "normalize_path", "split_path", "loggable_target"]

_json_encode = msgspec.json.Encoder().encode


class HttpRequest(msgspec.Struct, frozen=True, dict=True):
    """One request: ``target`` is the raw request-target (path and query).

    (``dict=True`` gives each request a ``__dict__`` beside its fields, where
    ``path`` keeps what it worked out; fields, equality, hashing and
    encoding are unchanged.)"""

    method: str
    target: str
    headers: list[tuple[str, str]]
    body: bytes = b""

    def header(self, name: str, default: str | None = None) -> str | None:
        """The first value of header ``name`` (lower-case), or ``default``."""
        for key, value in self.headers:
            if key == name:
                return value
        return default

    @property
    def path(self) -> str:
        """The path without the query string, doubled slashes collapsed.

        Every mount's ``claims_request`` and the chosen mount's router ask
        for it, several times per request: it is worked out once, kept on
        the request and gone with it."""
        memo = self.__dict__
        path = memo.get("path")
        if path is None:
            path = memo["path"] = normalize_path(self.target.split("?", 1)[0])
        return path

    @property
    def segments(self) -> list[str]:
        """``split_path(path)``: the percent-decoded segments of the path.

        Asked by a mount's ``claims_request`` (Directus) and again by the
        router of the mount that answers: worked out once and kept on the
        request like ``path``. One list shared by every caller: read it,
        never change it."""
        memo = self.__dict__
        segments = memo.get("segments")
        if segments is None:
            segments = memo["segments"] = split_path(self.path)
        return segments

    @property
    def loggable(self) -> str:
        """``target`` fit for a log line (``loggable_target``)."""
        return loggable_target(self.target)

    @property
    def query(self) -> str:
        """The raw query string ('' when absent)."""
        parts = self.target.split("?", 1)
        return parts[1] if len(parts) == 2 else ""


class HttpResponse(msgspec.Struct):
    """A complete response. ``headers`` excludes Content-Length (the transport adds it)."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes = b""


def json_response(status: int, value: Any, headers: list[tuple[str, str]] | None = None) -> HttpResponse:
    """A response whose body is ``value`` encoded as JSON."""
    return HttpResponse(
        status,
        [("content-type", "application/json; charset=utf-8"), *(headers or ())],
        _json_encode(value),
    )


def normalize_path(path: str) -> str:
    """Collapse runs of slashes (BRIEF: ``//register`` is ``/register``) and
    drop a trailing slash."""
    while "//" in path:
        path = path.replace("//", "/")
    if len(path) > 1 and path.endswith("/"):
        path = path[:-1]
    return path or "/"


def split_path(path: str) -> list[str]:
    """The percent-decoded segments of a normalized path."""
    segments = [segment for segment in path.split("/") if segment]
    if "%" in path:  # else no segment has anything to decode: no unquote call per segment
        return [unquote(segment) for segment in segments]
    return segments


#: Path segments at least this long are redacted from log lines: the inbox
#: documents' read and write tokens (32 hex digits) travel in the path, while
#: record ids (24) and names stay readable.
_SECRET_SEGMENT = 32


def loggable_target(target: str) -> str:
    """A request-target with nothing secret in it, for log lines: the query
    string is dropped (``?access_token=``, ``?api_token=``) and any path
    segment of 32 characters or more - a capability token - replaced by
    ``<redacted>``; at most 200 characters."""
    path, has_query, _ = target.partition("?")
    segments = ["<redacted>" if len(segment) >= _SECRET_SEGMENT else segment for segment in path.split("/")]
    shown = "/".join(segments)[:200]
    return shown + "?<query>" if has_query else shown
