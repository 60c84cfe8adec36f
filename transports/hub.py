"""Live connections and fan-out.

The hub maps connection ids to open *targets* - a websocket connection
today, a long-polling session next - and delivers one encoded payload to
many of them. Who receives a message is the core's decision
(``satchel.protocol.Switchboard.deliveries`` resolves audiences to ids); the
hub only frames and writes.

Targets frame themselves: each has a ``framing`` (``Framing``: how a payload
becomes bytes on its wire, and how several are joined) and takes bytes
through ``_send(data, count)``. A payload is framed once per kind of target
among its recipients, per delivery - never once per recipient - and the same
bytes go to every target of that kind.

How a delivery travels (STACK.md, "Websocket fan-out"):

- ``deliver`` is synchronous and O(1): it appends ``(payload, recipients)``
  to the hub's batch and, for the first delivery of a batch, wakes the
  flusher task. It never awaits, so the events of one action are queued in
  order and atomically with respect to other tasks.
- The flusher writes the batch once the server has nothing else to do right
  now: no task runnable and no socket ready (``trio.testing.
  wait_all_tasks_blocked``, trio's own test of "the run queue is empty").
  So changes that arrive close together - the requests of one burst, whose
  writes commit in two transactions a few hundred microseconds apart - go
  out together, and a lone change on a quiet server waits for nothing: the
  flusher runs as soon as the task that delivered it is done. A busy loop
  never starves it: it flushes at once when the batch holds
  ``settle_limit`` deliveries, and after at most ``settle_max_s`` of
  uninterrupted work (only a loop that never idles for that long ever
  waits for that bound).
- Every target gets everything the batch sent it in ONE ``send``. A system
  call costs 8-10 us of CPU here whatever its size (100 B or 8 KB), so
  that is what fan-out costs: one call per recipient per batch, not per
  message. Consecutive deliveries to the same recipients (a stream of
  broadcasts) are framed and joined once and the same bytes go to each of
  them. Deliveries to different audiences (a renderer's groups: each role
  sees its own rendering of a change) are sorted by which of the batch's
  distinct audiences each target is in - targets in the same ones receive
  the same bytes, joined once - so the work per target is a few dictionary
  operations whatever the number of deliveries. A websocket with nothing
  queued is written to at once, non-blocking; what the kernel does not
  take waits in its bounded outbox, drained by a writer task that exists
  only while it is busy.

So a message costs one encoding, no scheduler trip per recipient, and - when
messages arrive faster than they can be written - one system call per
recipient per batch rather than per message: coalescing is what separates
~100k deliveries/s (one ``send`` per frame) from several times that. A
recipient that cannot keep up is closed with 1008 by its own connection (its
outbox bounds, or the write timeout) and never slows the rest.

Order: a target receives payloads in the order they were delivered or sent
to it. ``WebsocketConnection.send_frame`` (a direct send) first flushes the
hub's batch, so a reply never overtakes a broadcast queued before it.

Without a running flusher (a hub used outside ``Server``), ``deliver``
writes at once. ``flush`` writes the batch now, from any synchronous code.

The server registers each websocket in the hub before the application is
asked to accept it, and removes it before ``on_websocket_closed``.
"""

from __future__ import annotations

from typing import Iterable, Iterator, Protocol

import trio
import trio.testing

from satchel.protocol.channels import Binary, CloseConnection
from satchel.transports.framing import Framing
from satchel.transports.metrics import METRICS

__all__ = ["Hub", "Target", "SETTLE_LIMIT", "SETTLE_MAX_S"]

#: Deliveries after which the flusher writes without waiting for the loop to idle.
SETTLE_LIMIT = 512
#: The longest a batch waits for the loop to idle (seconds): a bound for a
#: loop that never idles, not a delay - an idle loop flushes at once.
SETTLE_MAX_S = 0.005
#: Distinct audiences of one batch sorted target by target (more: each
#: target's chunks are gathered one delivery at a time).
_MAX_AUDIENCES = 60


class Target(Protocol):
    """What the hub delivers to: anything with an id, a framing, and a
    non-blocking write of ``count`` messages' worth of framed bytes."""

    id: str
    framing: Framing

    def _send(self, data: bytes, count: int) -> None: ...

    def _end(self, close: CloseConnection) -> None:
        """End the connection (the core asked): after what was sent before."""
        ...


class Hub:
    """The live targets of one server (websockets, polling sessions), by id."""

    __slots__ = ("_connections", "_batch", "_flusher", "_parked", "_settling", "settle_limit", "settle_max_s")

    def __init__(self, *, settle_limit: int = SETTLE_LIMIT, settle_max_s: float = SETTLE_MAX_S) -> None:
        self._connections: dict[str, Target] = {}
        # (payload, recipient ids) delivered since the last flush, in order.
        self._batch: list[tuple[bytes, list[str]]] = []
        # The flusher task while ``run`` runs, and whether it waits for work.
        self._flusher: trio.lowlevel.Task | None = None
        self._parked = False
        # While the flusher waits for the loop to idle: what ends the wait.
        self._settling: trio.CancelScope | None = None
        self.settle_limit = settle_limit
        self.settle_max_s = settle_max_s

    def __len__(self) -> int:
        return len(self._connections)

    def __contains__(self, connection_id: object) -> bool:
        return connection_id in self._connections

    def __iter__(self) -> Iterator[str]:
        """The ids of the live connections (a snapshot)."""
        return iter(list(self._connections))

    def add(self, connection: Target) -> None:
        """Register ``connection`` under its id."""
        self._connections[connection.id] = connection
        connection._hub = self  # type: ignore[attr-defined]

    def remove(self, connection_id: str) -> None:
        """Forget a connection (idempotent)."""
        self._connections.pop(connection_id, None)

    def get(self, connection_id: str) -> Target | None:
        """The live connection with this id, if any."""
        return self._connections.get(connection_id)

    @property
    def pending(self) -> int:
        """Deliveries queued for the flusher, not yet written."""
        return len(self._batch)

    def deliver(self, payload: bytes | Binary | CloseConnection, connection_ids: Iterable[str]) -> None:
        """Send one encoded message, ``payload`` (text, or ``Binary``), to each
        named connection; each frames it as its kind of target does (see the
        module docstring). A ``CloseConnection`` ends each of them instead,
        after what was delivered to it before.

        Unknown ids and connections already closing when the batch is written
        are skipped. The payload is written with this batch (see the module
        docstring); nothing here awaits. ``connection_ids`` is read at once (a list is kept as it
        is: do not change it afterwards).
        """
        recipients = connection_ids if type(connection_ids) is list else list(connection_ids)
        METRICS.deliveries += len(recipients)
        batch = self._batch
        batch.append((payload, recipients))  # type: ignore[arg-type]
        if len(batch) == 1:
            if self._flusher is None:
                self.flush()
            elif self._parked:
                self._parked = False
                trio.lowlevel.reschedule(self._flusher)
        elif len(batch) >= self.settle_limit and self._settling is not None:
            self._settling.cancel()

    def flush(self) -> None:
        """Write every queued delivery now: one write per recipient."""
        batch = self._batch
        if not batch:
            return
        self._batch = []
        # A close ends its connection after what was delivered before it and
        # before what follows: the batch is written in stretches around it.
        start = 0
        for index, (payload, recipients) in enumerate(batch):
            if type(payload) is CloseConnection:
                if index > start:
                    self._write(batch[start:index])
                for connection_id in recipients:
                    connection = self._connections.get(connection_id)
                    if connection is not None:
                        connection._end(payload)
                start = index + 1
        if start < len(batch):
            self._write(batch[start:] if start else batch)

    def _write(self, batch: list[tuple[bytes, list[str]]]) -> None:
        """Write one stretch of deliveries: one write per recipient."""
        # Runs of consecutive deliveries to the same recipients (a stream of
        # broadcasts to one audience): their payloads are framed and joined once.
        runs: list[tuple[list[bytes], list[str]]] = []
        payloads, recipients = [batch[0][0]], batch[0][1]
        for payload, ids in batch[1:]:
            if ids is recipients or ids == recipients:
                payloads.append(payload)
            else:
                runs.append((payloads, recipients))
                payloads, recipients = [payload], ids
        runs.append((payloads, recipients))
        connections = self._connections
        if len(runs) == 1:
            count = len(payloads)
            # Framed once per kind of target; nearly always there is one kind.
            framing: Framing | None = None
            data = b""
            others: dict[Framing, bytes] | None = None
            for connection_id in recipients:
                connection = connections.get(connection_id)
                if connection is None:
                    continue
                kind = connection.framing
                if kind is not framing:
                    if framing is None:
                        framing, data = kind, kind.encode_all(payloads)
                    else:
                        others = others or {}
                        if kind not in others:
                            others[kind] = kind.encode_all(payloads)
                        connection._send(others[kind], count)
                        continue
                connection._send(data, count)
            return
        if not self._write_by_audience(runs):
            self._write_per_connection(runs)

    def _write_per_connection(self, runs: list[tuple[list[bytes], list[str]]]) -> None:
        """Write runs to very many audiences: each target's chunks are
        gathered one run at a time, as [message count, framing, chunk, ...]."""
        connections = self._connections
        per_connection: dict[str, list] = {}
        get = per_connection.get
        for payloads, recipients in runs:
            count = len(payloads)
            encoded: dict[Framing, bytes] = {}
            for connection_id in recipients:
                entry = get(connection_id)
                if entry is None:
                    connection = connections.get(connection_id)
                    if connection is None:
                        continue
                    kind = connection.framing
                    chunk = encoded.get(kind)
                    if chunk is None:
                        chunk = encoded[kind] = kind.encode_all(payloads)
                    per_connection[connection_id] = [count, kind, chunk]
                else:
                    kind = entry[1]
                    chunk = encoded.get(kind)
                    if chunk is None:
                        chunk = encoded[kind] = kind.encode_all(payloads)
                    entry[0] += count
                    entry.append(chunk)
        for connection_id, entry in per_connection.items():
            connection = connections.get(connection_id)
            if connection is not None:
                connection._send(entry[2] if len(entry) == 3 else entry[1].join(entry[2:]), entry[0])

    def _write_by_audience(self, runs: list[tuple[list[bytes], list[str]]]) -> bool:
        """Write runs to different audiences: each target's bytes are the
        runs of the audiences it is in, in order; targets in the same
        audiences get the same bytes, joined once. ``False`` (nothing
        written) when the batch has more than ``_MAX_AUDIENCES`` of them."""
        # The batch's distinct audiences: a renderer's groups repeat from one
        # change to the next (equal lists compare in C, element by element).
        audiences: list[list[str]] = []
        audience_of_run: list[int] = []
        for _, recipients in runs:
            for index, known in enumerate(audiences):
                if known is recipients or known == recipients:
                    break
            else:
                if len(audiences) == _MAX_AUDIENCES:
                    return False
                index = len(audiences)
                audiences.append(recipients)
            audience_of_run.append(index)
        # Each target's audiences, as bits.
        member_of: dict[str, int] = {}
        get = member_of.get
        for index, recipients in enumerate(audiences):
            bit = 1 << index
            for connection_id in recipients:
                member_of[connection_id] = get(connection_id, 0) | bit
        # Targets by the audiences they are in.
        by_membership: dict[int, list[str]] = {}
        for connection_id, bits in member_of.items():
            members = by_membership.get(bits)
            if members is None:
                by_membership[bits] = [connection_id]
            else:
                members.append(connection_id)
        connections = self._connections
        framed: dict[tuple[int, Framing], bytes] = {}  # (run, kind) -> its chunk
        for bits, members in by_membership.items():
            chosen = [n for n, index in enumerate(audience_of_run) if bits >> index & 1]
            count = sum(len(runs[n][0]) for n in chosen)
            framing: Framing | None = None
            data = b""
            for connection_id in members:
                connection = connections.get(connection_id)
                if connection is None:
                    continue
                kind = connection.framing
                if kind is not framing:
                    chunks = []
                    for n in chosen:
                        chunk = framed.get((n, kind))
                        if chunk is None:
                            chunk = framed[(n, kind)] = kind.encode_all(runs[n][0])
                        chunks.append(chunk)
                    framing, data = kind, kind.join(chunks)
                connection._send(data, count)
        return True

    async def run(self) -> None:
        """The flusher: write each batch once the loop idles (module
        docstring). ``Server`` runs it beside the connections; without it,
        deliveries are written at once."""
        if self._flusher is not None:
            return  # another server already flushes this hub
        self._flusher = trio.lowlevel.current_task()
        try:
            while True:
                if not self._batch:
                    self._parked = True
                    await trio.lowlevel.wait_task_rescheduled(self._abort_wait)
                if len(self._batch) < self.settle_limit:
                    with trio.move_on_after(self.settle_max_s) as self._settling:
                        await trio.testing.wait_all_tasks_blocked()
                    self._settling = None
                self.flush()
        finally:
            self._flusher = None
            self._parked = False
            self.flush()

    def _abort_wait(self, raise_cancel: object) -> trio.lowlevel.Abort:
        self._parked = False
        return trio.lowlevel.Abort.SUCCEEDED
