"""The local file store: durable atomic commits, safe paths, the start-up sweep."""

from __future__ import annotations

from pathlib import Path

import pytest

from satchel.protocol.files import CommitFile, RemoveFile
from satchel.storage_backends.files import LocalFileStore

OWNER, FILE_ID, OTHER = "a" * 24, "b" * 24, "c" * 24


async def test_commit_replace_and_remove(tmp_path: Path) -> None:
    store = LocalFileStore(tmp_path)
    for content in (b"first", b"second"):
        name, path = store.new_staged()
        path.write_bytes(content)
        await store.execute(CommitFile(name, OWNER, FILE_ID))
        assert store.path(OWNER, FILE_ID).read_bytes() == content and not path.exists()
    await store.execute(RemoveFile(OWNER, FILE_ID))
    await store.execute(RemoveFile(OWNER, FILE_ID))  # idempotent
    assert not store.path(OWNER, FILE_ID).exists()


@pytest.mark.parametrize("owner, file_id", [("../../etc", FILE_ID), (OWNER, "passwd"), (OWNER, "../" + "b" * 21)])
def test_no_path_escapes_the_root(tmp_path: Path, owner: str, file_id: str) -> None:
    with pytest.raises(ValueError):
        LocalFileStore(tmp_path).path(owner, file_id)
    with pytest.raises(ValueError):
        LocalFileStore(tmp_path).staged_path("../" + "x" * 30)


def test_sweep_removes_orphans_and_staging_leftovers(tmp_path: Path) -> None:
    store = LocalFileStore(tmp_path)
    for file_id in (FILE_ID, OTHER):
        store.path(OWNER, file_id).parent.mkdir(exist_ok=True)
        store.path(OWNER, file_id).write_bytes(b"x")
    store.new_staged()[1].write_bytes(b"half an upload")
    assert store.sweep({(OWNER, FILE_ID)}) == 2
    assert store.path(OWNER, FILE_ID).exists() and not store.path(OWNER, OTHER).exists()
    assert list(store.staging.iterdir()) == []
