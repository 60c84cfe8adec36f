"""Inbox datagrams over UDP: the server's endpoint and a blocking client.

``serve_udp_batches`` moves datagrams and nothing else. When the socket is
readable it reads every datagram waiting (non-blocking ``recvfrom`` until
``EAGAIN``, at most ``max_batch``; one larger than ``max_datagram_bytes``
is dropped unread), hands them to the application's ``handle_batch`` as
one list and sends back each answer, if any, once that call returns - for
the inbox, once the batch's one store write has committed - all of a
batch's answers in one ``sendmmsg`` call where there is one
(``udp_batch.py``). Then it reads
again: while a batch waits for its commit the next one is read and
checked, at most ``max_batches_in_flight`` at once; at the bound the loop
stops reading and the kernel's socket buffer absorbs, then drops, the
excess - UDP's own backpressure. A batch whose handling fails is logged
and dropped; nothing a peer sends stops the loop. What a datagram means -
its layout, authentication, replay guard and answer - is decided by
``satchel.protocol.inbox.datagrams``.

Why batches: handled one task per datagram, every datagram paid a task, a
store write of its own and several scheduler trips, ~5.5k merges/s. Python
has no ``recvmmsg``; a non-blocking ``recvfrom`` costs ~1-2 us here, well
below what one datagram costs to check and merge. ``recvmmsg`` through
ctypes was tried (issue 13): the call itself is ~1 us cheaper per datagram,
but copying each datagram and its address out of the shared buffers gives
most of it back - 1.7-2.0 against 1.9-2.5 us per datagram for 512 waiting,
once slower (loaded 2-core machine) - so reads stay one ``recvfrom`` each.
Answers are different: a ``sendto`` delivers on loopback inside the call
and cost ~27% of a merge, and ``sendmmsg`` saves ~1.3 us of it per answer.

``serve_udp`` is the same endpoint for a handler of one datagram at a time.

``send_message_udp`` and ``remove_message_udp`` are the client: they build
a request with a fresh timestamp and nonce, send it, and wait for the
authentic answer, resending a NEW request (never the same bytes, which the
server would refuse as a replay) when none comes.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from typing import Any, Awaitable, Callable

import trio

from satchel.protocol.inbox.datagrams import decode_answer, encode_request

from .udp_batch import AnswerSender, answer_sender

__all__ = ["DatagramHandler", "BatchHandler", "serve_udp", "serve_udp_batches", "send_message_udp", "remove_message_udp"]

logger = logging.getLogger(__name__)

#: ``handle(datagram, address) -> answer | None``
DatagramHandler = Callable[[bytes, Any], Awaitable["bytes | None"]]
#: ``handle_batch([(datagram, address), ...]) -> [answer | None, ...]``, one answer per datagram
BatchHandler = Callable[[list[tuple[bytes, Any]]], Awaitable["list[bytes | None]"]]


#: What the endpoint asks the kernel to buffer for it.
RECEIVE_BUFFER_BYTES = 4 * 1024 * 1024


async def serve_udp_batches(
    handle_batch: BatchHandler,
    host: str | None,
    port: int,
    *,
    max_datagram_bytes: int = 8192,
    max_batch: int = 512,
    max_batches_in_flight: int = 8,
    admit: Callable[[Any], bool] | None = None,
    reuse_port: bool = False,
    task_status: Any = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve datagrams on ``host``:``port`` (port 0 picks a free one) in
    batches until cancelled. ``admit(peer)``, when given, is asked about each
    datagram: False drops it unanswered (a source over its rate, issue 14).
    ``reuse_port``: bind with ``SO_REUSEPORT`` beside the other workers of
    ``satchel serve --workers N``; the kernel spreads sources over them.

    Use as ``port = await nursery.start(serve_udp_batches, handle_batch, host, 0)``:
    the bound port is reported once the socket receives.
    """
    family, kind, proto, _, address = (
        await trio.socket.getaddrinfo(host or None, port, type=socket.SOCK_DGRAM, flags=socket.AI_PASSIVE)
    )[0]
    # A plain socket, non-blocking, read and written directly: trio's socket
    # wrapper would take a trip through the scheduler for every datagram.
    with socket.socket(family, kind, proto) as sock:
        sock.setblocking(False)
        # The kernel's receive buffer is the queue in front of this loop; the
        # default (~208 KB, ~250 datagrams of ~830 bytes of accounting each)
        # overflowed with 512 senders in benches/run.py. Ask for more; the
        # kernel caps it at net.core.rmem_max.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER_BYTES)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address)
        slots = trio.Semaphore(max_batches_in_flight)
        limit = max_datagram_bytes + 1  # one byte more tells an oversize datagram from one of exactly the limit
        recvfrom = sock.recvfrom
        sender = answer_sender(sock, max_batch)  # one sendmmsg per batch's answers where there is one
        async with trio.open_nursery() as nursery:
            task_status.started(sock.getsockname()[1])
            while True:
                await slots.acquire()
                try:
                    await trio.lowlevel.wait_readable(sock)
                except BaseException:
                    slots.release()
                    raise
                batch: list[tuple[bytes, Any]] = []
                while len(batch) < max_batch:
                    try:
                        datagram, peer = recvfrom(limit)
                    except BlockingIOError:
                        break
                    except OSError as error:
                        # ICMP errors of earlier sends surface here on some
                        # systems; they concern one peer, never the endpoint.
                        logger.debug("udp receive failed: %r", error)
                        continue
                    if len(datagram) <= max_datagram_bytes and (admit is None or admit(peer)):
                        batch.append((datagram, peer))
                if batch:
                    nursery.start_soon(_answer_batch, handle_batch, sender, batch, slots)
                else:
                    slots.release()


async def _answer_batch(handle_batch: BatchHandler, sender: AnswerSender, batch: list[tuple[bytes, Any]],
                        slots: trio.Semaphore) -> None:
    try:
        answers = await handle_batch(batch)
        await sender.send(answers, [peer for _, peer in batch])
    except Exception as error:
        logger.error("udp batch of %d datagrams failed: %r", len(batch), error, exc_info=error)
    finally:
        slots.release()


async def serve_udp(
    handle: DatagramHandler,
    host: str | None,
    port: int,
    *,
    max_datagram_bytes: int = 8192,
    max_in_flight: int = 256,
    task_status: Any = trio.TASK_STATUS_IGNORED,
) -> None:
    """``serve_udp_batches`` for a handler of one datagram: the datagrams of
    a batch are handled concurrently, one task each, and a datagram whose
    handling fails is logged and goes unanswered alone.

    Use as ``port = await nursery.start(serve_udp, handle, host, 0)``.
    """

    async def handle_batch(batch: list[tuple[bytes, Any]]) -> list[bytes | None]:
        answers: list[bytes | None] = [None] * len(batch)

        async def one(index: int, datagram: bytes, peer: Any) -> None:
            try:
                answers[index] = await handle(datagram, peer)
            except Exception as error:
                logger.error("udp datagram from %s failed: %r", peer, error, exc_info=error)

        async with trio.open_nursery() as nursery:
            for index, (datagram, peer) in enumerate(batch):
                nursery.start_soon(one, index, datagram, peer)
        return answers

    await serve_udp_batches(handle_batch, host, port, max_datagram_bytes=max_datagram_bytes,
                            max_batch=max_in_flight, max_batches_in_flight=1, task_status=task_status)


def _exchange(host: str, port: int, write_token: str, message_id: str, message: Any, remove: bool, timeout: float, attempts: int) -> str:
    if attempts < 1 or timeout <= 0:
        raise ValueError("attempts and timeout must be positive")
    # Checked before any I/O: a malformed token, id or message raises here.
    encode_request(write_token, message_id, message, remove=remove, timestamp_ms=0, nonce=bytes(8))
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)[0]
    deadline = time.monotonic() + timeout
    with socket.socket(family, kind, proto) as sock:
        sock.connect(address)  # only the server's datagrams reach this socket
        for attempt in range(attempts):
            request = encode_request(
                write_token, message_id, message, remove=remove, timestamp_ms=time.time_ns() // 1_000_000, nonce=os.urandom(8)
            )
            try:
                sock.send(request)
            except ConnectionRefusedError:
                pass  # a pending ICMP error was reported instead of sending; the next attempt resends
            # Each attempt waits its share of what is left of the timeout.
            attempt_deadline = time.monotonic() + (deadline - time.monotonic()) / (attempts - attempt)
            while (left := attempt_deadline - time.monotonic()) > 0:
                sock.settimeout(left)
                try:
                    answer = sock.recv(64)
                except socket.timeout:
                    break
                except ConnectionRefusedError:
                    # ICMP port unreachable: nothing listens (yet); wait out the attempt.
                    time.sleep(max(0.0, attempt_deadline - time.monotonic()))
                    break
                code = decode_answer(answer, write_token, request)
                if code is not None:
                    return code
    raise TimeoutError(f"no answer from {host}:{port} within {timeout} s")


def send_message_udp(
    host: str, port: int, write_token: str, message_id: str, message: Any, *, timeout: float = 3.0, attempts: int = 3
) -> str:
    """Add or merge ``message`` (JSON-encoded unless ``bytes``) into the inbox
    of ``write_token`` under ``message_id`` over UDP. Blocks.

    Returns the server's answer code: ``"M"`` merged, ``"N"`` not an inbox,
    ``"B"`` bad message, ``"T"`` the inbox is full. Raises ``TimeoutError``
    when no authentic answer came within ``timeout`` seconds (the server
    answers nothing for an unknown document or a wrong token, either), and
    ``ValueError`` for a malformed token or id, or a message over 4096 bytes.
    """
    return _exchange(host, port, write_token, message_id, message, False, timeout, attempts)


def remove_message_udp(host: str, port: int, write_token: str, message_id: str, *, timeout: float = 3.0, attempts: int = 3) -> str:
    """Remove message ``message_id`` from the inbox of ``write_token`` over
    UDP. Blocks. Returns ``"M"`` (removed, or there was none) or ``"N"``;
    raises as ``send_message_udp``."""
    return _exchange(host, port, write_token, message_id, None, True, timeout, attempts)
