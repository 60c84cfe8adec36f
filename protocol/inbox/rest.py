"""The inbox-document HTTP API (seed 001, BRIEF section 2) as one pure action.

Routes, all under ``/backend/documents`` (no API key: the tokens are the
authorization; browsers use this API too, so every answer carries CORS
headers for an allowed ``Origin`` and preflights are answered):

``GET /backend/documents/READTOKEN``
    200 with the content (exactly the bytes PUT, or as merges left them) and
    ``Revision: N``; with ``If-Newer-Than: REV``, 304 (no body) when the
    revision is ``<= REV``; 404 absent; 400 malformed token or header.
``PUT /backend/documents/READTOKEN`` with ``Write-Token``, ``Derived-From``, ``Revision``
    Creates when ``Derived-From`` is 0 and no document exists, else updates.
    200 ``{"revision": N}``; 400 a header missing or malformed, ``Revision``
    not greater than ``Derived-From`` (or above 2**53 - 1), the body not
    JSON; 403 the write token is not the document's; 409 ``Derived-From`` is
    not the current revision (an absent document's is 0, so this includes
    creating an existing document; the answer carries the current
    ``Revision`` to holders of the write token), or the write token already
    belongs to another document; 413 the body exceeds ``max_document_bytes``.
``GET /backend/documents?t=READTOKEN/REV,READTOKEN/REV,...``
    200 with an object keyed by read token: ``{"revision", "content"}`` for
    each document newer than its ``REV`` (``READTOKEN`` alone: any
    revision), ``null`` for an absent one, nothing for one not newer. A token
    named twice is answered once, against the lower ``REV``. 400 beyond
    ``max_batch_tokens`` tokens or for a malformed entry.
``POST /backend/documents/WRITETOKEN/messages/ID`` (body: a JSON message)
    200 merged (also when the merge changed nothing); 400 malformed token or
    id, not JSON, ``"#"`` not a number; 403 not an inbox; 404 no document has
    that write token; 413 over 4096 bytes (checked before parsing), or the
    inbox would grow beyond ``max_document_bytes``.
``DELETE /backend/documents/WRITETOKEN/messages/ID``
    200 removed, or there was no such message; 400, 403, 404 as for POST.

Write tokens are hex in either case (they stand for their 16 bytes); read
tokens and message ids are lowercase hex on the way out (a message id sent in
upper case is stored lowercase, as the datagrams carry it). Errors answer
``{"message": ...}``. Each write returns one ``DocumentChange``.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qsl

import msgspec

from ..changes import DocumentChange
from ..environment import Environment
from ..errors import RemoteProtocolError
from ..http import HttpRequest, HttpResponse, json_response, split_path
from ..mounts import HttpOutcome
from ..operations import Action, Document, DocumentKeys, GetDocument, GetDocumentKeys, MessageResult, PutDocument
from . import merge
from .config import MAX_MESSAGE_BYTES, MAX_REVISION, InboxConfig
from .documents import InvalidJson, decode_json, write_message
from .tokens import document_id, is_read_token, parse_message_id, parse_write_token, write_secrets, write_token_matches

__all__ = ["PATH", "ORIGIN_HTTP", "is_inbox_path", "handle_request", "cors_headers"]

#: Every route of the protocol is this path or below it.
PATH = "/backend/documents"
#: ``DocumentChange.origin`` of writes made over HTTP.
ORIGIN_HTTP = "inbox-http"

_METHODS = "GET, HEAD, PUT, POST, DELETE, OPTIONS"
_REQUEST_HEADERS = "Write-Token, Derived-From, Revision, If-Newer-Than, Content-Type"
_NUMBER = re.compile(r"[0-9]{1,16}\Z")


def is_inbox_path(path: str) -> bool:
    """Whether a normalized request path belongs to this protocol."""
    return path == PATH or path.startswith(PATH + "/")


def cors_headers(request: HttpRequest, config: InboxConfig) -> list[tuple[str, str]]:
    """CORS headers for an allowed ``Origin``: echoed, without credentials
    (the tokens travel in the URL and headers), exposing ``Revision``."""
    origin = request.header("origin")
    if origin is None or (config.allowed_origins is not None and origin not in config.allowed_origins):
        return []
    return [("access-control-allow-origin", origin), ("access-control-expose-headers", "Revision"), ("vary", "Origin")]


def _preflight(request: HttpRequest, config: InboxConfig) -> HttpResponse:
    headers = cors_headers(request, config)
    if headers:
        headers += [
            ("access-control-allow-methods", _METHODS),
            ("access-control-allow-headers", request.header("access-control-request-headers") or _REQUEST_HEADERS),
            ("access-control-max-age", "600"),
        ]
    return HttpResponse(204, headers)


def _message(status: int, message: str, headers: list[tuple[str, str]] | None = None) -> HttpResponse:
    return json_response(status, {"message": message}, headers)


def _method_not_allowed(allowed: str) -> HttpOutcome:
    return HttpOutcome(_message(405, "Method not allowed", [("allow", allowed)]))


def handle_request(request: HttpRequest, config: InboxConfig, env: Environment) -> Action[HttpOutcome]:
    """Answer one request whose path ``is_inbox_path``."""
    if request.method == "OPTIONS":
        return HttpOutcome(_preflight(request, config))
    try:
        outcome = yield from _route(request, config, env)
    except RemoteProtocolError as exc:
        outcome = HttpOutcome(_message(exc.status, exc.message))
    outcome.response.headers.extend(cors_headers(request, config))
    return outcome


def _segments(path: str) -> list[str]:
    # Tokens and ids are hex: only a path with an escape needs decoding.
    return split_path(path) if "%" in path else [segment for segment in path.split("/") if segment]


def _route(request: HttpRequest, config: InboxConfig, env: Environment) -> Action[HttpOutcome]:
    segments = _segments(request.path)
    if segments[:2] != ["backend", "documents"]:
        return HttpOutcome(_message(404, "Not found"))
    rest = segments[2:]
    method = "GET" if request.method == "HEAD" else request.method
    if not rest:
        if method != "GET":
            return _method_not_allowed("GET, HEAD, OPTIONS")
        return (yield from _batch(request, config))
    if len(rest) == 1:
        read_token = rest[0]
        if method == "GET":
            return (yield from _get(request, read_token))
        if method == "PUT":
            return (yield from _put(request, read_token, config))
        return _method_not_allowed("GET, HEAD, PUT, OPTIONS")
    if len(rest) == 3 and rest[1] == "messages":
        if method not in ("POST", "DELETE"):
            return _method_not_allowed("POST, DELETE, OPTIONS")
        return (yield from _message_route(request, method, rest[0], rest[2], config, env))
    return HttpOutcome(_message(404, "Not found"))


# -- headers ------------------------------------------------------------------


def _number(value: str, name: str) -> int:
    value = value.strip()
    if _NUMBER.match(value) is None:
        raise RemoteProtocolError(f"{name} must be a whole number of at most 16 digits", 400)
    return int(value)


def _number_header(request: HttpRequest, name: str) -> int | None:
    value = request.header(name.lower())
    return None if value is None else _number(value, name)


def _required_number_header(request: HttpRequest, name: str) -> int:
    value = _number_header(request, name)
    if value is None:
        raise RemoteProtocolError(f"The {name} header is missing", 400)
    return value


def _read_token(value: str) -> str:
    if not is_read_token(value):
        raise RemoteProtocolError("A read token is 32 lowercase hex digits", 400)
    return value


def _write_token(value: str | None) -> bytes:
    if value is None:
        raise RemoteProtocolError("The Write-Token header is missing", 400)
    token = parse_write_token(value.strip())
    if token is None:
        raise RemoteProtocolError("A write token is 32 hex digits", 400)
    return token


# -- reading ------------------------------------------------------------------


def _get(request: HttpRequest, read_token: str) -> Action[HttpOutcome]:
    _read_token(read_token)
    if_newer_than = _number_header(request, "If-Newer-Than")
    document: Document | None = yield GetDocument(read_token)
    if document is None:
        return HttpOutcome(_message(404, "No such document"))
    revision = [("revision", str(document.revision))]
    if if_newer_than is not None and document.revision <= if_newer_than:
        return HttpOutcome(HttpResponse(304, revision))
    headers = [("content-type", "application/json"), ("cache-control", "no-store"), *revision]
    return HttpOutcome(HttpResponse(200, headers, document.content))


def _batch(request: HttpRequest, config: InboxConfig) -> Action[HttpOutcome]:
    values = [value for key, value in parse_qsl(request.query, keep_blank_values=True) if key == "t"]
    if not values:
        raise RemoteProtocolError("Name the documents as ?t=READTOKEN/REVISION,READTOKEN/REVISION,...", 400)
    entries = [entry for value in values for entry in value.split(",") if entry]
    if len(entries) > config.max_batch_tokens:
        raise RemoteProtocolError(f"A batch read names at most {config.max_batch_tokens} documents", 400)
    thresholds: dict[str, int] = {}
    for entry in entries:
        read_token, slash, revision = entry.partition("/")
        threshold = _number(revision, "A batch entry's revision") if slash else -1
        _read_token(read_token)
        thresholds[read_token] = min(threshold, thresholds.get(read_token, threshold))
    answer: dict[str, Any] = {}
    for read_token, threshold in thresholds.items():
        document: Document | None = yield GetDocument(read_token)
        if document is None:
            answer[read_token] = None
        elif document.revision > threshold:
            answer[read_token] = {"revision": document.revision, "content": msgspec.Raw(document.content)}
    return HttpOutcome(json_response(200, answer, [("cache-control", "no-store")]))


# -- writing ------------------------------------------------------------------


def _put(request: HttpRequest, read_token: str, config: InboxConfig) -> Action[HttpOutcome]:
    _read_token(read_token)
    token = _write_token(request.header("write-token"))
    derived_from = _required_number_header(request, "Derived-From")
    revision = _required_number_header(request, "Revision")
    if revision > MAX_REVISION:
        raise RemoteProtocolError(f"Revision must be at most {MAX_REVISION}", 400)
    if revision <= derived_from:
        raise RemoteProtocolError("Revision must be greater than Derived-From", 400)
    if len(request.body) > config.max_document_bytes:
        raise RemoteProtocolError(f"A document is at most {config.max_document_bytes} bytes", 413)
    try:
        decode_json(request.body)
    except InvalidJson as exc:
        raise RemoteProtocolError(f"The document is not valid JSON: {exc}", 400) from None

    stored: Document | None = yield GetDocument(read_token)
    if stored is None:
        secrets = write_secrets(token)
        document = Document(read_token, secrets.write_key, secrets.write_hash, secrets.mac_key, revision, request.body)
        if derived_from == 0 and (yield PutDocument(document, 0)):
            return _written(document)
        # Not created: it was not asked for, another creation won the race,
        # or the write token is taken. Answer against what is there now.
        stored = yield GetDocument(read_token)
        if stored is None:
            if derived_from != 0:
                return HttpOutcome(_message(409, "No such document: create it with Derived-From: 0"))
            return HttpOutcome(_message(409, "This write token belongs to another document"))
    if not write_token_matches(token, stored.write_hash):
        return HttpOutcome(_message(403, "Wrong write token"))
    current = [("revision", str(stored.revision))]
    if derived_from != stored.revision:
        return HttpOutcome(_message(409, "Derived-From is not the current revision", current))
    document = msgspec.structs.replace(stored, revision=revision, content=request.body)
    if not (yield PutDocument(document, derived_from)):
        return HttpOutcome(_message(409, "The document changed meanwhile"))
    return _written(document)


def _written(document: Document) -> HttpOutcome:
    response = json_response(200, {"revision": document.revision}, [("revision", str(document.revision))])
    return HttpOutcome(response, [DocumentChange(document.read_token, document.revision, document.content, ORIGIN_HTTP)])


# The answers to every merge and removal, encoded once.
_MERGED = msgspec.json.encode({"message": "Merged"})
_REMOVED = msgspec.json.encode({"message": "Removed"})

_ANSWERS: dict[MessageResult, tuple[int, str]] = {
    "not-inbox": (403, "The document is not an inbox"),
    "unknown": (404, "No document has this write token"),
}


def _message_route(
    request: HttpRequest, method: str, write_token: str, message_id: str, config: InboxConfig, env: Environment
) -> Action[HttpOutcome]:
    token = parse_write_token(write_token)
    if token is None:
        raise RemoteProtocolError("A write token is 32 hex digits", 400)
    stored_id = parse_message_id(message_id)
    if stored_id is None:
        raise RemoteProtocolError("A message id is 16 hex digits", 400)
    message: bytes | None = None
    if method == "POST":
        # Seed 001: 413 "if the message is too large" - known before parsing.
        if len(request.body) > MAX_MESSAGE_BYTES:
            raise RemoteProtocolError(f"A message is at most {MAX_MESSAGE_BYTES} bytes", 413)
        try:
            decoded = decode_json(request.body)
        except InvalidJson as exc:
            raise RemoteProtocolError(f"The message is not valid JSON: {exc}", 400) from None
        if merge.revision_of(decoded) is None:
            raise RemoteProtocolError('The message\'s "#" must be a number', 400)
        message = request.body

    # The keys alone: the content is not needed to authenticate the writer.
    found: list[DocumentKeys | None] = yield GetDocumentKeys((document_id(token).hex(),))
    document = found[0]
    if document is None or not write_token_matches(token, document.write_hash):
        return HttpOutcome(_message(404, "No document has this write token"))
    result, change = yield from write_message(document.write_key, stored_id, message, ORIGIN_HTTP, config, env)
    if result == "done":
        body = _MERGED if method == "POST" else _REMOVED
        return HttpOutcome(HttpResponse(200, [("content-type", "application/json; charset=utf-8")], body),
                           [change] if change else [])
    if result == "too-large":
        return HttpOutcome(_message(413, f"The inbox would exceed {config.max_document_bytes} bytes"))
    status, text = _ANSWERS[result]
    return HttpOutcome(_message(status, text))
