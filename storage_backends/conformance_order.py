"""The conformance checks of commit stamps (``Store.execute_stamped``, the
contract in ``base``), run by ``conformance.check_store`` with the rest.

Delivery in commit order (``satchel.transports.ordering``) rests on them: a
write that changed something gets the next stamp of its store, 1, 2, 3, ...
with no gap, in commit order; reads, refused compare-and-swaps, failed
writes and writes made through plain ``execute`` get ``None`` and draw no
number. Concurrent writers of one record, one kv entry and one inbox each
hold the store to "stamp order is commit order": sorted by stamp, the
revisions / versions their writes stored strictly increase.
"""

from __future__ import annotations

import itertools
from typing import Any, AsyncContextManager, Callable

import trio

from satchel.protocol.errors import LocalProtocolError
from satchel.protocol.operations import (
    ApplyMessage,
    DeleteRecord,
    Document,
    GetEntry,
    GetRecord,
    InsertRecord,
    InsertSession,
    ListRecords,
    PutDocument,
    PutEntry,
    ReplaceRecord,
    Session,
)
from satchel.protocol.records import format_timestamp, new_record, object_id

from .base import Store

__all__ = ["ORDER_CHECKS", "check_commit_stamps", "check_concurrent_stamps"]

MakeStore = Callable[[], AsyncContextManager[Store]]

_ids = (object_id(1_700_000_000, b"\x0e\x4d\x00\x11\x00", counter) for counter in itertools.count())
_NOW = format_timestamp(1_700_000_000_000)


def _record(**fields: Any) -> dict[str, Any]:
    return new_record(fields, next(_ids), _NOW)


def _inbox() -> Document:
    return Document(read_token="a" * 32, write_key="b" * 32, write_hash="c" * 64, mac_key="d" * 64, revision=1,
                    content=b'{"#messages":{}}')


async def check_commit_stamps(make_store: MakeStore) -> None:
    """Stamps are consecutive from 1 in commit order; only changing writes made
    through ``execute_stamped`` draw one."""
    async with make_store() as store:
        first = _record(n=1)
        result, stamp = await store.execute_stamped(InsertRecord("stamped", first))
        assert (result, stamp) == (None, 1), f"the first changing write is stamped 1, not {stamp}"
        stored, stamp = await store.execute_stamped(GetRecord("stamped", first["_id"]))
        assert stored is not None and stamp is None, "a read draws no stamp"
        assert (await store.execute_stamped(ListRecords("stamped")))[1] is None
        # A refused compare-and-swap changed nothing: no stamp.
        refused, stamp = await store.execute_stamped(ReplaceRecord("stamped", dict(first, n=2), stored.revision + 5))
        assert refused is False and stamp is None, "a refused compare-and-swap draws no stamp"
        # A failed write raises and draws none.
        try:
            await store.execute_stamped(InsertRecord("stamped", first))
        except LocalProtocolError:
            pass
        else:
            raise AssertionError("a duplicate insert must raise")
        # Plain execute draws none.
        await store.execute(InsertRecord("stamped", _record(n=3)))
        # A delete of nothing changed nothing.
        assert (await store.execute_stamped(DeleteRecord("stamped", "f" * 24)))[1] is None
        done, stamp = await store.execute_stamped(ReplaceRecord("stamped", dict(first, n=2), stored.revision))
        assert done is True and stamp == 2, f"stamps have no gaps: expected 2, got {stamp}"
        _, stamp = await store.execute_stamped(InsertSession(Session("d" * 64, "user-1", 1)))
        assert stamp == 3, f"every changing write is stamped, sessions too: expected 3, got {stamp}"
        deleted, stamp = await store.execute_stamped(DeleteRecord("stamped", first["_id"]))
        assert deleted is not None and stamp == 4


async def check_concurrent_stamps(make_store: MakeStore) -> None:
    """Many tasks writing one record, one entry and one inbox at once: sorted
    by stamp, what they stored strictly grows; the stamps are 1..N."""
    async with make_store() as store:
        record = _record(count=0)
        await store.execute(InsertRecord("stamped", record))
        await store.execute(PutDocument(_inbox(), 0))
        record_writes: list[tuple[int, int]] = []  # (stamp, revision stored)
        entry_writes: list[tuple[int, int]] = []  # (stamp, version stored)
        message_writes: list[tuple[int, int]] = []  # (stamp, document revision stored)

        async def bump_record() -> None:
            while True:
                stored = await store.execute(GetRecord("stamped", record["_id"]))
                await trio.sleep(0)
                updated = dict(stored.record, count=stored.record["count"] + 1)
                done, stamp = await store.execute_stamped(ReplaceRecord("stamped", updated, stored.revision))
                if done:
                    assert stamp is not None
                    record_writes.append((stamp, stored.revision + 1))
                    return
                assert stamp is None

        async def bump_entry() -> None:
            while True:
                entry = await store.execute(GetEntry("kvStore", "", "", "stamped"))
                await trio.sleep(0)
                current = 0 if entry is None else entry.version
                done, stamp = await store.execute_stamped(PutEntry("kvStore", "", "", "stamped", b"1", current + 1, current))
                if done:
                    assert stamp is not None
                    entry_writes.append((stamp, current + 1))
                    return
                assert stamp is None

        async def merge(n: int) -> None:
            written, stamp = await store.execute_stamped(
                ApplyMessage("b" * 32, f"{n:016x}", b'{"#":1}', 1_700_000_000_000 + n, 1 << 20))
            assert written.document is not None and stamp is not None
            message_writes.append((stamp, written.document.revision))

        async with trio.open_nursery() as nursery:
            for n in range(30):
                nursery.start_soon(bump_record)
                nursery.start_soon(bump_entry)
                nursery.start_soon(merge, n)
        stamps = sorted(stamp for stamp, _ in record_writes + entry_writes + message_writes)
        assert stamps == list(range(1, 91)), "the stamps of 90 changing writes are 1..90, each once"
        for name, writes in (("record", record_writes), ("entry", entry_writes), ("inbox", message_writes)):
            stored = [value for _, value in sorted(writes)]
            assert all(a < b for a, b in zip(stored, stored[1:])), f"{name}: stamp order is not commit order: {stored}"


ORDER_CHECKS = (check_commit_stamps, check_concurrent_stamps)
