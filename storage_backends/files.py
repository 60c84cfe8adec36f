"""Uploaded files on the local disk.

Layout under the root: ``staging/<random>`` for uploads being received, and
``files/<owner>/<file id>`` for committed files, where both parts are
24-hex-digit ids (checked here, so nothing else can become a path).

``commit`` makes a staged file durable and atomic: the staged file is
fsynced, renamed over its final name (``os.replace``, atomic on POSIX) and
the directory fsynced, so after it returns the new content survives kill -9
and a crash never leaves a half-written file under a final name. ``sweep``
runs at start-up: it removes staging leftovers and committed files that no
metadata record names (the core commits a file before its record, and
deletes the record before the file, so a crash leaves only such orphans).
"""

from __future__ import annotations

import os
import re
import secrets
from pathlib import Path
from typing import Any, Iterable

import trio

from satchel.protocol.files import CommitFile, RemoveFile
from satchel.protocol.operations import Operation

__all__ = ["LocalFileStore"]

_ID = re.compile(r"[0-9a-f]{24}\Z")
_STAGED = re.compile(r"[A-Za-z0-9_-]{20,64}\Z")


def _checked(value: str) -> str:
    if not _ID.match(value):
        raise ValueError(f"not a 24-hex-digit id: {value!r}")
    return value


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class LocalFileStore:
    """Executes ``CommitFile`` and ``RemoveFile``; hands out staging paths."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self.staging = self.root / "staging"
        self.files = self.root / "files"
        self.staging.mkdir(parents=True, exist_ok=True)
        self.files.mkdir(parents=True, exist_ok=True)

    def new_staged(self) -> tuple[str, Path]:
        """A fresh staging name and the path to write it at."""
        name = secrets.token_urlsafe(24)
        return name, self.staging / name

    def staged_path(self, name: str) -> Path:
        """Where staged file ``name`` lives (``name`` comes from ``new_staged``)."""
        if not _STAGED.match(name):
            raise ValueError(f"not a staging name: {name!r}")
        return self.staging / name

    def path(self, owner: str, file_id: str) -> Path:
        """The committed file ``(owner, file_id)``."""
        return self.files / _checked(owner) / _checked(file_id)

    async def execute(self, operation: Operation) -> Any:
        """Carry out a file operation in a worker thread."""
        if isinstance(operation, CommitFile):
            return await trio.to_thread.run_sync(self._commit, operation)
        if isinstance(operation, RemoveFile):
            return await trio.to_thread.run_sync(self._remove, operation)
        raise TypeError(f"not a file operation: {operation!r}")

    def _commit(self, operation: CommitFile) -> None:
        staged = self.staged_path(operation.staged)
        final = self.path(operation.owner, operation.file_id)
        final.parent.mkdir(exist_ok=True)
        with open(staged, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(staged, final)
        _fsync_dir(final.parent)

    def _remove(self, operation: RemoveFile) -> None:
        try:
            self.path(operation.owner, operation.file_id).unlink()
        except FileNotFoundError:
            pass

    def discard(self, name: str) -> None:
        """Remove a staged file that was not committed (idempotent)."""
        try:
            self.staged_path(name).unlink()
        except FileNotFoundError:
            pass

    def sweep(self, known: Iterable[tuple[str, str]]) -> int:
        """Remove staging leftovers and files no record names; returns how many."""
        keep = set(known)
        removed = 0
        for leftover in self.staging.iterdir():
            leftover.unlink()
            removed += 1
        for owner_dir in self.files.iterdir():
            for file in owner_dir.iterdir():
                if (owner_dir.name, file.name) not in keep:
                    file.unlink()
                    removed += 1
        return removed
