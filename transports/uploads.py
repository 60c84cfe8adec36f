"""Multipart upload bodies, streamed to disk as they arrive.

``MultipartSink`` is the ``BodySink`` the app gives the transport for an
upload: python-multipart (the streaming parser Starlette and FastAPI use)
splits the body into parts as bytes come in; the ``file`` part is written to
a staged file of the ``LocalFileStore`` and the small text fields are kept in
memory (bounded). The core later decides whether the staged file is
committed; ``close`` discards it if it was not, so a refused, failed or
abandoned upload leaves nothing behind.
"""

from __future__ import annotations

from typing import BinaryIO

from python_multipart import MultipartParser
from python_multipart.multipart import parse_options_header

from satchel.protocol.backpack.uploads import UploadForm
from satchel.protocol.files import StagedFile
from satchel.storage_backends.files import LocalFileStore

__all__ = ["MultipartSink", "multipart_boundary"]

#: The text fields of one upload together (filename, bucket...).
MAX_FIELD_BYTES = 16 * 1024


def multipart_boundary(content_type: str | None) -> bytes | None:
    """The boundary of a ``multipart/form-data`` content type, else ``None``."""
    if not content_type:
        return None
    kind, options = parse_options_header(content_type)
    if kind != b"multipart/form-data":
        return None
    boundary = options.get(b"boundary")
    return boundary if boundary and len(boundary) <= 200 else None


class MultipartSink:
    """Parses one multipart body; the ``file`` part goes to a staged file."""

    __slots__ = (
        "limit", "_files", "_parser", "_headers", "_header_name", "_header_value",
        "_part_name", "_field", "_file", "_staged", "_size", "_field_bytes", "fields", "_done",
    )

    def __init__(self, boundary: bytes, files: LocalFileStore, limit: int) -> None:
        self.limit = limit
        self.fields: dict[str, str] = {}
        self._files = files
        self._headers: dict[bytes, bytes] = {}
        self._header_name = b""
        self._header_value = b""
        self._part_name: str | None = None
        self._field: list[bytes] | None = None
        self._file: BinaryIO | None = None
        self._staged: str | None = None
        self._size = 0
        self._field_bytes = 0
        self._done = False
        self._parser = MultipartParser(
            boundary,
            {
                "on_part_begin": self._part_begin,
                "on_header_field": self._header_field,
                "on_header_value": self._header_value_data,
                "on_header_end": self._header_end,
                "on_headers_finished": self._headers_finished,
                "on_part_data": self._part_data,
                "on_part_end": self._part_end,
                "on_end": self._end,
            },
        )

    # -- BodySink ---------------------------------------------------------

    def write(self, chunk: bytes) -> None:
        """Parse the next piece of the body (ValueError if it is malformed)."""
        self._parser.write(chunk)

    def close(self) -> None:
        """Release the staged file unless the core committed it (idempotent)."""
        if self._file is not None:
            self._file.close()
            self._file = None
        if self._staged is not None:
            self._files.discard(self._staged)

    # -- after the body ---------------------------------------------------

    def form(self) -> UploadForm:
        """The parsed form; raises ValueError if the body ended mid-part."""
        self._parser.finalize()
        if not self._done:
            raise ValueError("the multipart body ended before its closing boundary")
        staged = StagedFile(self._staged, self._size) if self._staged is not None else None
        return UploadForm(dict(self.fields), staged)

    # -- parser callbacks -------------------------------------------------

    def _part_begin(self) -> None:
        self._headers = {}
        self._part_name = None

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]

    def _header_value_data(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def _header_end(self) -> None:
        self._headers[self._header_name.strip().lower()] = self._header_value.strip()
        self._header_name = self._header_value = b""

    def _headers_finished(self) -> None:
        _, options = parse_options_header(self._headers.get(b"content-disposition", b""))
        name = options.get(b"name", b"").decode("utf-8", "replace")
        self._part_name = name
        if name == "file" and b"filename" in options:
            if self._staged is not None:
                raise ValueError("only one file part is allowed")
            self._staged, path = self._files.new_staged()
            self._file = open(path, "wb")
        else:
            self._field = []

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if self._file is not None:
            self._file.write(data[start:end])
            self._size += end - start
        elif self._field is not None:
            self._field_bytes += end - start
            if self._field_bytes > MAX_FIELD_BYTES:
                raise ValueError(f"the form's text fields exceed {MAX_FIELD_BYTES} bytes")
            self._field.append(data[start:end])

    def _part_end(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        elif self._field is not None and self._part_name:
            try:
                self.fields[self._part_name] = b"".join(self._field).decode("utf-8")
            except UnicodeDecodeError:
                raise ValueError(f"field {self._part_name!r} is not UTF-8") from None
        self._field = None

    def _end(self) -> None:
        self._done = True  # the closing boundary arrived
