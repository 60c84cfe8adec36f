"""Live websocket connections and fan-out.

The hub maps connection ids to open ``WebsocketConnection``s and delivers
pre-encoded frames to many of them. Who receives a message is the core's
decision (``satchel.protocol.channels`` resolves an ``Audience`` to ids); the
hub only writes.

How a delivery travels (STACK.md, "Websocket fan-out"):

- ``deliver`` is synchronous and O(1): it appends ``(frame, recipients)`` to
  the hub's batch for this scheduler tick and, for the first delivery of a
  tick, wakes the flusher task. It never awaits, so the events of one action
  are queued in order and atomically with respect to other tasks.
- The flusher runs in the scheduler's next batch - right after the task that
  delivered yields, with no timer - and writes the whole batch at once: every
  connection gets everything the tick sent it in ONE ``send``. Consecutive
  deliveries to the same recipients (a stream of broadcasts) are joined once
  and the same bytes go to each of them; otherwise each connection's frames
  are joined in order. A connection with nothing queued is written to at
  once, non-blocking; what the kernel does not take waits in its bounded
  outbox, drained by a writer task that exists only while it is busy.

So a message costs one encoding, no scheduler trip per recipient, and - when
messages arrive faster than a tick - one system call per recipient per tick
rather than per message: coalescing is what separates ~100k deliveries/s
(one ``send`` per frame) from several times that. A recipient that cannot
keep up is closed with 1008 by its own connection (its outbox bounds, or
the write timeout) and never slows the rest.

Order: a connection receives frames in the order they were delivered or
sent to it. ``WebsocketConnection.send_frame`` (a direct send) first flushes
the hub's batch, so a reply never overtakes a broadcast queued before it.

Without a running flusher (a hub used outside ``Server``), ``deliver``
writes at once. ``flush`` writes the batch now, from any synchronous code.

The server registers each websocket in the hub before the application is
asked to accept it, and removes it before ``on_websocket_closed``.
"""

from __future__ import annotations

from typing import Iterable, Iterator

import trio

from satchel.transports.websocket.connection import WebsocketConnection
from satchel.transports.websocket.frames import encode_text_frame

__all__ = ["Hub"]


class Hub:
    """The live websocket connections of one server, by id."""

    __slots__ = ("_connections", "_batch", "_flusher", "_parked")

    def __init__(self) -> None:
        self._connections: dict[str, WebsocketConnection] = {}
        # (frame, recipient ids) delivered since the last flush, in order.
        self._batch: list[tuple[bytes, list[str]]] = []
        # The flusher task while ``run`` runs, and whether it waits for work.
        self._flusher: trio.lowlevel.Task | None = None
        self._parked = False

    def __len__(self) -> int:
        return len(self._connections)

    def __contains__(self, connection_id: object) -> bool:
        return connection_id in self._connections

    def __iter__(self) -> Iterator[str]:
        """The ids of the live connections (a snapshot)."""
        return iter(list(self._connections))

    def add(self, connection: WebsocketConnection) -> None:
        """Register ``connection`` under its id."""
        self._connections[connection.id] = connection
        connection._hub = self

    def remove(self, connection_id: str) -> None:
        """Forget a connection (idempotent)."""
        self._connections.pop(connection_id, None)

    def get(self, connection_id: str) -> WebsocketConnection | None:
        """The live connection with this id, if any."""
        return self._connections.get(connection_id)

    @property
    def pending(self) -> int:
        """Deliveries queued for the flusher, not yet written."""
        return len(self._batch)

    def deliver(self, frame: bytes, connection_ids: Iterable[str]) -> None:
        """Send one encoded frame, the same bytes, to each named connection.

        Unknown ids and connections already closing when the batch is written
        are skipped. The frame is written in this tick's batch (see the module
        docstring); nothing here awaits. ``connection_ids`` is read at once
        (a list is kept as it is: do not change it afterwards).
        """
        recipients = connection_ids if type(connection_ids) is list else list(connection_ids)
        batch = self._batch
        batch.append((frame, recipients))  # type: ignore[arg-type]
        if len(batch) == 1:
            if self._flusher is None:
                self.flush()
            elif self._parked:
                self._parked = False
                trio.lowlevel.reschedule(self._flusher)

    def deliver_text(self, payload: bytes, connection_ids: Iterable[str]) -> None:
        """Frame ``payload`` (encoded UTF-8 text) once, then ``deliver`` it."""
        self.deliver(encode_text_frame(payload), connection_ids)

    def flush(self) -> None:
        """Write every queued delivery now: one write per recipient."""
        batch = self._batch
        if not batch:
            return
        self._batch = []
        connections = self._connections
        if len(batch) == 1:
            frame, recipients = batch[0]
            for connection_id in recipients:
                connection = connections.get(connection_id)
                if connection is not None:
                    connection._send(frame, 1)
            return
        # Runs of consecutive deliveries to the same recipients (a stream of
        # broadcasts to one audience): their frames are joined once.
        runs: list[tuple[list[bytes], list[str]]] = []
        frames, recipients = [batch[0][0]], batch[0][1]
        for frame, ids in batch[1:]:
            if ids is recipients or ids == recipients:
                frames.append(frame)
            else:
                runs.append((frames, recipients))
                frames, recipients = [frame], ids
        runs.append((frames, recipients))
        if len(runs) == 1:
            data = b"".join(frames)
            count = len(frames)
            for connection_id in recipients:
                connection = connections.get(connection_id)
                if connection is not None:
                    connection._send(data, count)
            return
        # Different audiences: gather each connection's frames, in order, as
        # [frame count, chunk, chunk, ...].
        per_connection: dict[str, list] = {}
        get = per_connection.get
        for frames, recipients in runs:
            chunk = frames[0] if len(frames) == 1 else b"".join(frames)
            count = len(frames)
            for connection_id in recipients:
                entry = get(connection_id)
                if entry is None:
                    per_connection[connection_id] = [count, chunk]
                else:
                    entry[0] += count
                    entry.append(chunk)
        for connection_id, entry in per_connection.items():
            connection = connections.get(connection_id)
            if connection is not None:
                connection._send(entry[1] if len(entry) == 2 else b"".join(entry[1:]), entry[0])

    async def run(self) -> None:
        """The flusher: write each tick's batch. ``Server`` runs it beside the
        connections; without it, deliveries are written at once."""
        if self._flusher is not None:
            return  # another server already flushes this hub
        self._flusher = trio.lowlevel.current_task()
        try:
            while True:
                if not self._batch:
                    self._parked = True
                    await trio.lowlevel.wait_task_rescheduled(self._abort_wait)
                self.flush()
        finally:
            self._flusher = None
            self._parked = False
            self.flush()

    def _abort_wait(self, raise_cancel: object) -> trio.lowlevel.Abort:
        self._parked = False
        return trio.lowlevel.Abort.SUCCEEDED
