"""Backpack's file storage (seed 000 "storage", BRIEF section 1), as actions.

Routes and answers follow the original server:
- ``POST /uploads`` (multipart ``bucket``, ``filename``, ``file``) -> the
  metadata record ``{_id,userId,filename,bucket,createdAt,updatedAt,__v}``;
  400 ``{"message":"no file uploaded"}`` without a file, 400 ``{"message":
  "file already exists"}`` when the user already has that filename.
- ``GET /uploads/{userId}`` -> ``{"records":[...]}``.
- ``GET /uploads/{userId}/{filename}`` -> the bytes, with a content type.
- ``PATCH /uploads/{filename}`` (fields ``filename``, ``bucket``) -> ``{"record"}``.
- ``PUT /uploads/{filename}`` (fields ``filename``, ``file``) ->
  ``{"message":"file overwritten"}``; the metadata is not changed.
- ``DELETE /uploads/{filename}`` -> ``{"deletedRecord"}``.
A missing file answers 404 ``{"message":"file does not exist"}``. The
``{filename}`` in PATCH/PUT/DELETE is one of the caller's own files; reading
(list and download) is open to any logged-in user, as in the original, so
apps can share files such as profile pictures.

Metadata lives in the hidden ``uploads`` collection; the bytes are kept by
the file store under ``(userId, record _id)`` (see ``protocol.files``), so
renaming is a metadata change and no filename ever reaches a path. Served
files carry ``X-Content-Type-Options: nosniff`` and a sandboxing CSP, and
types a browser would run (HTML, SVG, JavaScript) are served as downloads:
an upload must never execute as the API's own origin.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import msgspec

from .. import collections as data
from ..changes import Change
from ..environment import Environment
from ..files import CommitFile, FileBody, RemoveFile, StagedFile
from ..http import HttpResponse, json_response
from ..operations import Action, GetRecord, InsertRecord, ListRecords, ReplaceRecord, StoredRecord
from ..records import format_timestamp, is_object_id, new_record, patch_record
from .render import ORIGIN_UPLOADS

__all__ = ["UPLOADS", "UploadForm", "UploadOutcome", "handle_uploads", "content_type_for", "download", "delete"]

#: The hidden collection holding file metadata.
UPLOADS = "uploads"

# A small fixed table rather than the mimetypes module, whose first use reads
# the system's mime.types files (I/O the core must not do).
_CONTENT_TYPES = {
    "jpg": "image/jpeg", "jpeg": "image/jpeg", "png": "image/png", "gif": "image/gif", "webp": "image/webp",
    "avif": "image/avif", "bmp": "image/bmp", "ico": "image/x-icon", "txt": "text/plain; charset=utf-8",
    "csv": "text/csv; charset=utf-8", "md": "text/markdown; charset=utf-8", "json": "application/json",
    "pdf": "application/pdf", "mp3": "audio/mpeg", "wav": "audio/wav", "ogg": "audio/ogg", "mp4": "video/mp4",
    "webm": "video/webm", "zip": "application/zip", "gz": "application/gzip",
}
# Types a browser would execute in the API's origin: always a download.
_ACTIVE = {"html", "htm", "xhtml", "svg", "js", "mjs", "xml", "css"}
_MAX_NAME = 255


class UploadForm(msgspec.Struct, frozen=True):
    """A multipart body as the transport parsed it: small text fields, and
    the ``file`` part already streamed to a staged file (or ``None``)."""

    fields: dict[str, str]
    file: StagedFile | None = None


class UploadOutcome(msgspec.Struct):
    """A response, the writes it made, and a file to stream as its body."""

    response: HttpResponse
    changes: list[Any] = []
    file: FileBody | None = None


def content_type_for(filename: str) -> tuple[str, bool]:
    """The content type to serve ``filename`` with, and whether it may be
    shown inline (otherwise it is served as a download)."""
    extension = filename.rsplit(".", 1)[-1].lower() if "." in filename else ""
    if extension in _ACTIVE:
        return "application/octet-stream", False
    return _CONTENT_TYPES.get(extension, "application/octet-stream"), extension in _CONTENT_TYPES


def _message(status: int, message: str) -> UploadOutcome:
    return UploadOutcome(json_response(status, {"message": message}))


def _name(value: object, what: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise _Refused(400, f"{what} must be a non-empty string")
    if len(value) > _MAX_NAME or "/" in value or any(ord(c) < 32 for c in value):
        raise _Refused(400, f"{what} must be at most {_MAX_NAME} characters, without '/' or control characters")
    return value


class _Refused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _find(owner: str, filename: str) -> Action[dict[str, Any] | None]:
    found = yield ListRecords(UPLOADS, {"userId": owner, "filename": filename})
    return found[0] if found else None


def handle_uploads(
    method: str, segments: list[str], form: UploadForm | None, user_id: str, env: Environment
) -> Action[UploadOutcome]:
    """Answer a request under ``/uploads`` (``segments`` excludes ``uploads``)."""
    try:
        if method == "POST" and not segments:
            return (yield from _upload(form, user_id, env))
        if method == "GET" and len(segments) == 1:
            records = yield ListRecords(UPLOADS, {"userId": segments[0]})
            return UploadOutcome(json_response(200, {"records": records}))
        if method == "GET" and len(segments) == 2:
            return (yield from _download(segments[0], segments[1]))
        if len(segments) == 1 and method in ("PATCH", "PUT", "DELETE"):
            record = yield from _find(user_id, segments[0])
            if record is None:
                return _message(404, "file does not exist")
            if method == "PATCH":
                return (yield from _rename(record, form, user_id, env))
            if method == "PUT":
                return (yield from _overwrite(record, form))
            return (yield from _delete(record, user_id))
    except _Refused as refused:
        return _message(refused.status, refused.message)
    return _message(404, "Not found")


def _upload(form: UploadForm | None, user_id: str, env: Environment) -> Action[UploadOutcome]:
    if form is None or form.file is None:
        return _message(400, "no file uploaded")
    filename = _name(form.fields.get("filename"), "filename")
    bucket = _name(form.fields.get("bucket"), "bucket")
    if (yield from _find(user_id, filename)) is not None:
        return _message(400, "file already exists")
    record = new_record(
        {"userId": user_id, "filename": filename, "bucket": bucket}, env.new_id(), format_timestamp(env.now_ms())
    )
    # The bytes are durable before the record that points at them exists.
    yield CommitFile(form.file.name, user_id, record["_id"])
    yield InsertRecord(UPLOADS, record)
    return UploadOutcome(json_response(200, record), [Change(UPLOADS, "create", record, user_id, ORIGIN_UPLOADS, revision=1)])


def _download(owner: str, filename: str) -> Action[UploadOutcome]:
    record = (yield from _find(owner, filename)) if is_object_id(owner) else None
    if record is None:
        return _message(404, "file does not exist")
    content_type, inline = content_type_for(filename)
    disposition = "inline" if inline else "attachment"
    headers = [
        ("content-type", content_type),
        ("content-disposition", f"{disposition}; filename*=UTF-8''{quote(filename, safe='')}"),
        ("x-content-type-options", "nosniff"),
        ("content-security-policy", "sandbox; default-src 'none'"),
    ]
    return UploadOutcome(HttpResponse(200, headers), file=FileBody(owner, record["_id"]))


def _rename(record: dict[str, Any], form: UploadForm | None, user_id: str, env: Environment) -> Action[UploadOutcome]:
    fields = form.fields if form is not None else {}
    changes: dict[str, Any] = {}
    if "filename" in fields:
        changes["filename"] = _name(fields["filename"], "filename")
    if "bucket" in fields:
        changes["bucket"] = _name(fields["bucket"], "bucket")
    new_name = changes.get("filename", record["filename"])
    if new_name != record["filename"] and (yield from _find(user_id, new_name)) is not None:
        return _message(400, "file already exists")
    while True:
        stored: StoredRecord | None = yield GetRecord(UPLOADS, record["_id"])
        if stored is None:
            return _message(404, "file does not exist")
        updated = patch_record(stored.record, changes, format_timestamp(env.now_ms()))
        if (yield ReplaceRecord(UPLOADS, updated, stored.revision)):
            break
    change = Change(UPLOADS, "patch", updated, user_id, ORIGIN_UPLOADS, revision=stored.revision + 1)
    return UploadOutcome(json_response(200, {"record": updated}), [change])


def _overwrite(record: dict[str, Any], form: UploadForm | None) -> Action[UploadOutcome]:
    if form is None or form.file is None:
        return _message(400, "no file uploaded")
    yield CommitFile(form.file.name, record["userId"], record["_id"])
    return UploadOutcome(json_response(200, {"message": "file overwritten"}))


def _delete(record: dict[str, Any], user_id: str) -> Action[UploadOutcome]:
    # The record goes first: a crash in between leaves an orphan file (swept
    # at start-up), never a record pointing at nothing.
    deleted, change = yield from data.delete(UPLOADS, record["_id"], user_id, ORIGIN_UPLOADS)
    if deleted is None:
        return _message(404, "file does not exist")
    yield RemoveFile(record["userId"], record["_id"])
    return UploadOutcome(json_response(200, {"deletedRecord": deleted}), [change])


#: The download and the deletion of one file, as Backpack's routes make
#: them, for the admin API (``satchel.protocol.admin.data``): a file the
#: console deletes goes the way its owner's delete goes.
download = _download
delete = _delete
