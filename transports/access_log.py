"""One log line per request and per connection event, and the JSON log format.

The core is pure (no randomness it was not handed), so request ids are the
transport's: ``request_id`` takes a sane incoming ``X-Request-Id`` (a proxy's
or a client's, at most 64 characters of ``[A-Za-z0-9._:-]``) or makes one - a
random per-process prefix and a counter, unique across the processes of
``--workers`` and ~0.2 us to make (``os.urandom`` per request is a system
call). The id is kept on the request (``request.__dict__``, as
``HttpRequest.path`` keeps its path) with the peer's address, so the
application can name it in the lines it writes about that request (an
Engine.IO session's open and close).

Lines go to the ``satchel.access`` logger at INFO: ``--no-access-log`` (or
any logging configuration of an embedding) sets that logger to WARNING, and
the transport then asks for no id and writes nothing (``enabled``). Every
line carries its fields as record attributes (``FIELDS``), which
``JsonFormatter`` writes as one JSON object per line; the text format has
them in the message.

Nothing secret reaches a line: the target is ``HttpRequest.loggable`` (no
query string, no capability-length path segment), and no header but
``X-Request-Id`` is ever read for a log line (never Authorization, Cookie
or a token).
"""

from __future__ import annotations

import itertools
import logging
import os
import re
import time
from typing import Any

import msgspec

from satchel.protocol.http import HttpRequest

__all__ = ["ACCESS", "FIELDS", "JsonFormatter", "TEXT_FORMAT", "configure_logging", "enabled", "request_id",
           "log_request", "log_event", "peer_of"]

#: The logger of the request and connection lines.
ACCESS = logging.getLogger("satchel.access")
#: The record attributes a line may carry, in the order JSON lines list them.
FIELDS = ("request_id", "method", "route", "target", "status", "duration_ms", "peer", "event", "code", "reason")
#: The text format of ``satchel serve --log-format text``.
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

_INFO = logging.INFO
_SANE_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")
_PREFIX = os.urandom(4).hex()
_counter = itertools.count(1)


def enabled() -> bool:
    """Whether request and connection lines are written (the access logger
    takes INFO). ``Logger.isEnabledFor`` caches its answer: ~0.1 us."""
    return ACCESS.isEnabledFor(_INFO)


def request_id(request: HttpRequest, peer: str = "") -> str:
    """``request``'s id - its sane ``X-Request-Id``, else a new one - kept on
    it with ``peer`` (``peer_of``)."""
    memo = request.__dict__
    known = memo.get("request_id")
    if known is not None:
        return known
    given = None
    for name, value in request.headers:
        if name == "x-request-id":
            given = value
            break
    if given is None or _SANE_ID.fullmatch(given) is None:
        given = f"{_PREFIX}-{next(_counter):x}"
    memo["request_id"] = given
    memo["peer"] = peer
    return given


def peer_of(request: HttpRequest) -> str:
    """The peer address the transport kept on ``request`` ('' if none)."""
    return request.__dict__.get("peer", "")


def log_request(request: HttpRequest, route: str, status: int, seconds: float, peer: str) -> None:
    """The line of one answered request."""
    rid = request_id(request, peer)
    method = request.method
    target = request.loggable
    duration = round(seconds * 1000, 2)
    ACCESS.info("%s %s %d %.2fms route=%s peer=%s id=%s", method, target, status, duration, route, peer, rid,
                extra={"request_id": rid, "method": method, "route": route, "target": target, "status": status,
                       "duration_ms": duration, "peer": peer})


def log_event(event: str, rid: str, route: str, peer: str, seconds: float | None = None,
              code: int | None = None, reason: str | None = None) -> None:
    """The line of one connection event (``websocket open``, ``engineio
    close``...): ``seconds`` is how long the connection lived, ``code`` its
    close code, ``reason`` why it ended (a fixed word of the transport's,
    never the peer's text)."""
    extra: dict[str, Any] = {"request_id": rid, "route": route, "peer": peer, "event": event}
    tail = ""
    if code is not None:
        extra["code"] = code
        tail += f" code={code}"
    if reason is not None:
        extra["reason"] = reason
        tail += f" reason={reason}"
    if seconds is not None:
        extra["duration_ms"] = duration = round(seconds * 1000, 2)
        tail += f" {duration:.2f}ms"
    ACCESS.info("%s%s route=%s peer=%s id=%s", event, tail, route, peer, rid, extra=extra)


_encode = msgspec.json.Encoder().encode


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``ts`` (UTC, ISO 8601, milliseconds),
    ``level``, ``logger``, ``msg``, then whichever of ``FIELDS`` the record
    carries, and ``exc`` (the traceback) when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        seconds = record.created
        ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{int(seconds % 1 * 1000):03d}Z"
        line: dict[str, Any] = {"ts": ts, "level": record.levelname, "logger": record.name,
                                "msg": record.getMessage()}
        attributes = record.__dict__
        for name in FIELDS:
            value = attributes.get(name)
            if value is not None:
                line[name] = value
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["exc"] = record.exc_text
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return _encode(line).decode("utf-8")


def configure_logging(level: str = "INFO", log_format: str = "text", access_log: bool = True,
                      stream: Any = None) -> None:
    """The process's logging as ``satchel serve`` sets it: ``log_format``
    "text" or "json" on ``stream`` (standard error), and the access logger
    off unless ``access_log``."""
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    ACCESS.setLevel(logging.NOTSET if access_log else logging.WARNING)
