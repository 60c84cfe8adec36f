"""The conformance checks of entries (seed 004): the key-value store and
live configuration (``GetEntry``, ``PutEntry``, ``OverwriteEntry``,
``DeleteEntry``, ``ListEntries``), run by ``conformance.check_store`` with the rest.

They hold a backend to the operations' docstrings: spaces and scopes are
apart, writes are compare-and-swaps on the version, a delete leaves a
tombstone that keeps its version, an overwrite picks the next version
itself, listing is by prefix in code point order
without tombstones, and concurrent writers of one entry never store equal
or decreasing versions.
"""

from __future__ import annotations

from typing import Any, AsyncContextManager, Callable

import trio

from satchel.protocol.errors import LocalProtocolError
from satchel.protocol.operations import DeleteEntry, Entry, GetEntry, ListEntries, OverwriteEntry, PutEntry

from .base import Store

__all__ = [
    "ENTRY_CHECKS",
    "check_entries",
    "check_entry_scopes",
    "check_entry_compare_and_swap",
    "check_entry_tombstones",
    "check_entry_listing",
    "check_concurrent_entry_writers",
    "check_entry_overwrites",
    "check_concurrent_entry_overwriters",
]

MakeStore = Callable[[], AsyncContextManager[Store]]

KV = "kvStore"
LIVE = "liveConfig"


def _put(id: str, value: bytes, version: int, expected: int, *, space: str = KV, scope: tuple[str, str] = ("", ""),
         user_id: str | None = None) -> PutEntry:
    return PutEntry(space, scope[0], scope[1], id, value, version, expected, user_id)


def _get(id: str, *, space: str = KV, scope: tuple[str, str] = ("", "")) -> GetEntry:
    return GetEntry(space, scope[0], scope[1], id)


async def _raises(store: Store, operation: Any) -> None:
    try:
        await store.execute(operation)
    except LocalProtocolError:
        return
    raise AssertionError(f"expected LocalProtocolError from {operation!r}")


async def check_entries(make_store: MakeStore) -> None:
    """An entry is written, read back exactly (bytes, version, writer) and
    rewritten; ids may hold ``:``, ``/``, ``../`` and any Unicode."""
    async with make_store() as store:
        assert await store.execute(_get("World:kvstoreClient:testKey")) is None
        assert await store.execute(_put("World:kvstoreClient:testKey", b'{"a": 1}', 1000, 0, user_id="u1"))
        assert await store.execute(_get("World:kvstoreClient:testKey")) == Entry(
            "World:kvstoreClient:testKey", b'{"a": 1}', 1000, "u1")
        assert await store.execute(_put("World:kvstoreClient:testKey", b"null", 1001, 1000))
        assert await store.execute(_get("World:kvstoreClient:testKey")) == Entry(
            "World:kvstoreClient:testKey", b"null", 1001, None)
        for odd in ["../etc/passwd", "a/b", "snow\u2603man", "\U0001f600", " spaced ", "x" * 1000]:
            assert await store.execute(_put(odd, b"1", 5, 0))
            assert (await store.execute(_get(odd))) == Entry(odd, b"1", 5)
        # A value is bytes, versions only grow: anything else is a caller's bug.
        await _raises(store, _put("k", "text", 5, 0))  # type: ignore[arg-type]
        await _raises(store, _put("k", b"1", 5, 5))
        await _raises(store, _put("k", b"1", 0, 0))
        await _raises(store, DeleteEntry(KV, "", "", "World:kvstoreClient:testKey", 1001, 1001))
        assert await store.execute(_get("k")) is None


async def check_entry_scopes(make_store: MakeStore) -> None:
    """Spaces and (organization, project) scopes never see each other's
    entries, for reads, writes, deletes and lists."""
    async with make_store() as store:
        scopes = [("", ""), ("org", ""), ("", "org"), ("org", "proj"), ("org", "proj2"), ("org2", "proj")]
        for n, scope in enumerate(scopes):
            for space in (KV, LIVE):
                value = f'"{space}-{n}"'.encode()
                assert await store.execute(_put("key", value, 10 + n, 0, space=space, scope=scope))
        for n, scope in enumerate(scopes):
            for space in (KV, LIVE):
                entry = await store.execute(_get("key", space=space, scope=scope))
                assert entry == Entry("key", f'"{space}-{n}"'.encode(), 10 + n), (space, scope, entry)
                listed = await store.execute(ListEntries(space, scope[0], scope[1]))
                assert listed == [entry]
        assert await store.execute(DeleteEntry(KV, "org", "proj", "key", 100, 13))
        assert (await store.execute(_get("key", scope=("org", "proj")))).value is None  # type: ignore[union-attr]
        assert (await store.execute(_get("key", space=LIVE, scope=("org", "proj")))).value == b'"liveConfig-3"'  # type: ignore[union-attr]
        assert (await store.execute(_get("key", scope=("org", "proj2")))).value == b'"kvStore-4"'  # type: ignore[union-attr]


async def check_entry_compare_and_swap(make_store: MakeStore) -> None:
    """A write whose expected version is not the stored one changes nothing."""
    async with make_store() as store:
        assert await store.execute(_put("k", b"1", 10, 0))
        assert not await store.execute(_put("k", b"2", 11, 0))  # exists: no create
        assert not await store.execute(_put("k", b"2", 12, 9))  # stale
        assert await store.execute(_get("k")) == Entry("k", b"1", 10)
        assert await store.execute(_put("k", b"2", 11, 10))
        assert not await store.execute(_put("k", b"3", 12, 10))  # stale again
        assert not await store.execute(DeleteEntry(KV, "", "", "k", 12, 10))
        assert not await store.execute(DeleteEntry(KV, "", "", "absent", 12, 10))
        assert await store.execute(_get("k")) == Entry("k", b"2", 11)


async def check_entry_tombstones(make_store: MakeStore) -> None:
    """A delete leaves a tombstone with its version: it reads as ``value
    None``, is not listed, cannot be deleted again, and a new value must
    expect its version (so the next version is greater still)."""
    async with make_store() as store:
        assert await store.execute(_put("k", b"1", 10, 0))
        assert await store.execute(DeleteEntry(KV, "", "", "k", 11, 10, "u2"))
        assert await store.execute(_get("k")) == Entry("k", None, 11, "u2")
        assert await store.execute(ListEntries(KV, "", "")) == []
        assert not await store.execute(DeleteEntry(KV, "", "", "k", 12, 11))
        assert not await store.execute(_put("k", b"2", 12, 0))  # a tombstone is not "never written"
        assert await store.execute(_put("k", b"2", 12, 11))
        assert await store.execute(_get("k")) == Entry("k", b"2", 12)


async def check_entry_listing(make_store: MakeStore) -> None:
    """``ListEntries``: live entries whose ids start with the prefix, after
    ``after``, in code point order, at most ``limit``."""
    async with make_store() as store:
        ids = ["a", "a:", "a:1", "a:2", "a:10", "a;", "ab", "b", "a:\uffff", "a:\U0001f600", "a:\U0010ffff", "Z"]
        for n, key in enumerate(ids):
            assert await store.execute(_put(key, str(n).encode(), 100 + n, 0))
        assert await store.execute(DeleteEntry(KV, "", "", "a:2", 200, 103))

        async def listed(prefix: str = "", after: str = "", limit: int = 100) -> list[str]:
            return [entry.id for entry in await store.execute(ListEntries(KV, "", "", prefix, after, limit))]

        everything = sorted(key for key in ids if key != "a:2")
        assert await listed() == everything
        assert await listed("a:") == sorted(key for key in everything if key.startswith("a:"))
        assert await listed("a:", limit=2) == ["a:", "a:1"]
        assert await listed("a:", after="a:1", limit=2) == ["a:10", "a:\uffff"]
        assert await listed("a:\U0010ffff") == ["a:\U0010ffff"]
        assert await listed("c") == []
        assert await listed(limit=0) == []
        assert await listed("a", after="a;") == ["ab"]
        entries = await store.execute(ListEntries(KV, "", "", "ab"))
        assert entries == [Entry("ab", b"6", 106)]


async def check_concurrent_entry_writers(make_store: MakeStore) -> None:
    """Writers racing on one entry, each reading the version and writing the
    next by compare-and-swap until it wins: every write lands exactly once
    and the versions stored are strictly increasing."""
    async with make_store() as store:
        won: list[int] = []

        async def writer(n: int) -> None:
            for _ in range(200):
                stored = await store.execute(_get("hot"))
                expected = 0 if stored is None else stored.version
                version = max(1000 + n, expected + 1)
                if await store.execute(_put("hot", str(n).encode(), version, expected)):
                    won.append(version)
                    return
                await trio.sleep(0)
            raise AssertionError("a writer never won")

        async with trio.open_nursery() as nursery:
            for n in range(12):
                nursery.start_soon(writer, n)
        assert len(won) == 12
        assert len(set(won)) == 12
        final = await store.execute(_get("hot"))
        assert final.version == max(won)


def _overwrite(id: str, value: bytes, at_least: int, *, user_id: str | None = None) -> OverwriteEntry:
    return OverwriteEntry(KV, "", "", id, value, at_least, user_id)


async def check_entry_overwrites(make_store: MakeStore) -> None:
    """``OverwriteEntry`` stores its value whatever is there (nothing, a
    value, a tombstone) at ``at_least`` or one past the stored version,
    whichever is greater, and answers the version it wrote."""
    async with make_store() as store:
        assert await store.execute(_overwrite("k", b"1", 100, user_id="u1")) == 100
        assert await store.execute(_get("k")) == Entry("k", b"1", 100, "u1")
        assert await store.execute(_overwrite("k", b"2", 100)) == 101  # the clock did not move
        assert await store.execute(_overwrite("k", b"3", 50)) == 102  # the clock stepped back
        assert await store.execute(_overwrite("k", b"4", 500)) == 500
        assert await store.execute(_get("k")) == Entry("k", b"4", 500)
        assert await store.execute(DeleteEntry(KV, "", "", "k", 501, 500))
        assert await store.execute(_overwrite("k", b"5", 10)) == 502  # past the tombstone
        assert await store.execute(_get("k")) == Entry("k", b"5", 502)
        assert not await store.execute(_put("k", b"6", 600, 501))  # compare-and-swaps see it
        assert await store.execute(_put("k", b"6", 600, 502))
        assert await store.execute(ListEntries(KV, "", "")) == [Entry("k", b"6", 600)]
        other = OverwriteEntry(LIVE, "org", "proj", "k", b"7", 5)
        assert await store.execute(other) == 5  # another space and scope: its own versions
        await _raises(store, _overwrite("x", "text", 5))  # type: ignore[arg-type]
        await _raises(store, _overwrite("x", b"1", 0))
        assert await store.execute(_get("x")) is None


async def check_concurrent_entry_overwriters(make_store: MakeStore) -> None:
    """Overwriters racing on one entry, all with the same clock: each write
    lands once at a version of its own, and the entry ends at the greatest
    with the value written there."""
    async with make_store() as store:
        written: dict[int, bytes] = {}

        async def writer(n: int) -> None:
            for round in range(5):
                value = f"{n}.{round}".encode()
                version = await store.execute(_overwrite("hot", value, 1000))
                assert version not in written
                written[version] = value

        async with trio.open_nursery() as nursery:
            for n in range(12):
                nursery.start_soon(writer, n)
        assert sorted(written) == list(range(1000, 1060))
        final = await store.execute(_get("hot"))
        assert final == Entry("hot", written[1059], 1059)


#: The entry checks, in the order ``check_store`` runs them.
ENTRY_CHECKS = (
    check_entries,
    check_entry_scopes,
    check_entry_compare_and_swap,
    check_entry_tombstones,
    check_entry_listing,
    check_concurrent_entry_writers,
    check_entry_overwrites,
    check_concurrent_entry_overwriters,
)
