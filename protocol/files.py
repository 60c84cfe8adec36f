"""File operations: what an action yields to keep uploaded bytes.

Bytes never pass through the core. The transport streams an upload into a
*staged* file and hands the core its name; the core decides where the bytes
belong and yields ``CommitFile`` (move the staged file into place, durably)
or ``RemoveFile``. A file is addressed by its owner's id and the id of its
metadata record - never by a name a client chose - so no client input ever
becomes part of a path.

Crash consistency comes from the order the core uses: a file is committed
before its metadata record is written, and its record is deleted before the
file is removed. A crash between the two leaves at most an orphan file with
no record, which the file store sweeps away at start-up; a record never
points at a missing file.
"""

from __future__ import annotations

import msgspec

from .operations import Operation

__all__ = ["StagedFile", "CommitFile", "RemoveFile", "FileBody"]


class StagedFile(msgspec.Struct, frozen=True):
    """An upload the transport has streamed to a temporary file."""

    name: str
    size: int


class CommitFile(Operation, frozen=True):
    """-> ``None``: make staged file ``staged`` the content of file
    ``(owner, file_id)``, replacing any previous content atomically, and make
    it durable before returning."""

    staged: str
    owner: str
    file_id: str


class RemoveFile(Operation, frozen=True):
    """-> ``None``: remove file ``(owner, file_id)`` if it exists."""

    owner: str
    file_id: str


class FileBody(msgspec.Struct, frozen=True):
    """A response body the transport streams from file ``(owner, file_id)``."""

    owner: str
    file_id: str
