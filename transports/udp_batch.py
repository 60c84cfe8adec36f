"""The answers of a datagram batch sent with one ``sendmmsg(2)`` call.

``serve_udp_batches`` (``udp.py``) answers a batch of up to 512 datagrams
once its commit is done. One ``sendto`` per answer was ~27% of what a merge
cost in py-spy of the server (issue 13): a syscall, its argument parsing
and the GIL released and taken again, per 30-byte answer. The standard
library has no ``sendmmsg`` (nor ``recvmmsg``) - the measured reason this
module calls libc through ctypes: ``MmsgSender`` puts a batch's answers in
one call. Its ``mmsghdr``/``iovec`` arrays and the buffers for the answers
and their addresses are allocated once, of the batch size, and rewritten
in place, so the Python side costs a few buffer writes per answer, not the
syscall saved.

Each answer goes to its own datagram's source address. ``sendmmsg`` may
send fewer than asked: the rest is sent by the next call. It stops at the
first message that fails and reports the error only when none went out;
so an error is one destination's (``EINVAL`` for port 0, ``EACCES``,
``EHOSTUNREACH``...): that message is tried once more (a pending error of
the socket is reported on whichever send comes next, and consumed) and
then skipped - the other answers still go. ``EAGAIN`` (the send buffer is
full) waits for writability, at most ``WRITABLE_WAIT_SECONDS`` in all, as
the per-answer path does, then gives up on the rest: UDP, the senders send
again.

``PerDatagramSender`` is the same with one ``sendto`` per answer: where
``sendmmsg`` is not available (not Linux, no libc through ctypes) and for
an answer that does not fit the preallocated slots. ``answer_sender(sock)``
picks one.
"""

from __future__ import annotations

import ctypes
import errno
import logging
import socket
import sys
from typing import Any, Callable, Sequence

import trio

__all__ = ["AnswerSender", "MmsgSender", "PerDatagramSender", "answer_sender", "WRITABLE_WAIT_SECONDS"]

logger = logging.getLogger(__name__)

#: How long one batch waits, in all, for room in a full send buffer.
WRITABLE_WAIT_SECONDS = 1.0
#: Bytes of each preallocated answer slot (an inbox answer is 30); a longer answer goes by ``sendto``.
ANSWER_SLOT_BYTES = 64
#: Bytes of each preallocated address slot: a ``sockaddr_in6`` is 28.
_NAME_SLOT_BYTES = 32
#: Source addresses whose packed ``sockaddr`` is remembered; the map is emptied when full.
ADDRESS_CACHE_ENTRIES = 8192


class _IOVec(ctypes.Structure):
    _fields_ = [("iov_base", ctypes.c_void_p), ("iov_len", ctypes.c_size_t)]


class _MsgHdr(ctypes.Structure):
    # The kernel's struct user_msghdr: lengths are int / __kernel_size_t.
    _fields_ = [
        ("msg_name", ctypes.c_void_p),
        ("msg_namelen", ctypes.c_uint32),
        ("msg_iov", ctypes.c_void_p),
        ("msg_iovlen", ctypes.c_size_t),
        ("msg_control", ctypes.c_void_p),
        ("msg_controllen", ctypes.c_size_t),
        ("msg_flags", ctypes.c_int),
    ]


class _MMsgHdr(ctypes.Structure):
    _fields_ = [("msg_hdr", _MsgHdr), ("msg_len", ctypes.c_uint)]


_MMSGHDR_BYTES = ctypes.sizeof(_MMsgHdr)

#: ``sendmmsg(fd, msgvec, vlen, flags) -> sent | -1`` (errno in ``ctypes.get_errno()``).
Sendmmsg = Callable[[int, Any, int, int], int]


def _libc_sendmmsg() -> Sendmmsg | None:
    """libc's ``sendmmsg`` through ctypes, or None where there is none."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        function = libc.sendmmsg
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_uint, ctypes.c_int]
    function.restype = ctypes.c_int
    return function


_SENDMMSG = _libc_sendmmsg()
_EAGAIN = {errno.EAGAIN, errno.EWOULDBLOCK}


def _sockaddr(family: int, peer: Any) -> bytes | None:
    """``peer`` (as ``recvfrom`` gives it) as the kernel's ``sockaddr``, or
    None for what this module does not pack (the caller uses ``sendto``)."""
    try:
        if family == socket.AF_INET:
            host, port = peer
            return (socket.AF_INET.to_bytes(2, sys.byteorder) + port.to_bytes(2, "big")
                    + socket.inet_pton(socket.AF_INET, host) + bytes(8))
        if family == socket.AF_INET6:
            host, port, flowinfo, scope_id = peer
            return (socket.AF_INET6.to_bytes(2, sys.byteorder) + port.to_bytes(2, "big") + flowinfo.to_bytes(4, "big")
                    + socket.inet_pton(socket.AF_INET6, host) + scope_id.to_bytes(4, sys.byteorder))
    except (TypeError, ValueError, OverflowError, OSError):
        return None
    return None


async def _take(lock: trio.Lock) -> None:
    """Acquire ``lock``, with no scheduler checkpoint when it is free (a
    batch's answers are the hot path; ``async with`` always yields)."""
    try:
        lock.acquire_nowait()
    except trio.WouldBlock:
        await lock.acquire()


class PerDatagramSender:
    """Answers sent one ``sendto`` each. One batch sends at a time (a
    ``trio.Lock``): trio lets one task only wait for a socket's writability."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._lock = trio.Lock()

    async def send(self, answers: Sequence[bytes | None], peers: Sequence[Any]) -> int:
        """Send each answer that is not None to its peer; returns how many went out."""
        await _take(self._lock)
        try:
            deadline = trio.current_time() + WRITABLE_WAIT_SECONDS
            sent = 0
            for answer, peer in zip(answers, peers):
                if answer and await _sendto(self._sock, answer, peer, deadline):
                    sent += 1
            return sent
        finally:
            self._lock.release()


async def _sendto(sock: socket.socket, answer: bytes, peer: Any, deadline: float) -> bool:
    try:
        try:
            sock.sendto(answer, peer)
        except BlockingIOError:
            # The send buffer is full: wait for room (within the batch's
            # deadline), then try once more or give up on this answer.
            with trio.move_on_at(deadline):
                await trio.lowlevel.wait_writable(sock)
            sock.sendto(answer, peer)
        return True
    except OSError as error:
        # The answer could not go out (the peer's network, a full buffer):
        # that peer's problem, and UDP's; the sender resends.
        logger.debug("udp answer to %s failed: %r", peer, error)
        return False


class MmsgSender:
    """Answers sent ``capacity`` at a time with one ``sendmmsg`` call, from
    arrays allocated once; one batch sends at a time (they share them)."""

    def __init__(self, sock: socket.socket, capacity: int = 512, *, sendmmsg: Sendmmsg | None = None) -> None:
        function = sendmmsg or _SENDMMSG
        if function is None:
            raise OSError("sendmmsg is not available here")
        if capacity < 1:
            raise ValueError("capacity must be positive")
        self._sock = sock
        self._fd = sock.fileno()
        self._family = sock.family
        self._sendmmsg = function
        self._capacity = capacity
        self._lock = trio.Lock()
        self._fallback = PerDatagramSender(sock)
        self._addresses: dict[Any, bytes] = {}  # b"": not packed here
        self._messages = (_MMsgHdr * capacity)()
        self._iovecs = (_IOVec * capacity)()
        self._answer_bytes = (ctypes.c_char * (capacity * ANSWER_SLOT_BYTES))()
        self._name_bytes = (ctypes.c_char * (capacity * _NAME_SLOT_BYTES))()
        answers0, names0 = ctypes.addressof(self._answer_bytes), ctypes.addressof(self._name_bytes)
        iovecs0 = ctypes.addressof(self._iovecs)
        self._messages0 = ctypes.addressof(self._messages)
        for slot in range(capacity):  # the pointers never change; only lengths and bytes do
            self._iovecs[slot].iov_base = answers0 + slot * ANSWER_SLOT_BYTES
            header = self._messages[slot].msg_hdr
            header.msg_name = names0 + slot * _NAME_SLOT_BYTES
            header.msg_iov = iovecs0 + slot * ctypes.sizeof(_IOVec)
            header.msg_iovlen = 1
        # Views to write the varying fields with plain index assignments
        # (a ctypes attribute access builds an object per field).
        self._answers = memoryview(self._answer_bytes).cast("B")
        self._names = memoryview(self._name_bytes).cast("B")
        size_t = {4: "I", 8: "Q"}[ctypes.sizeof(ctypes.c_size_t)]
        self._iov_lengths = memoryview(self._iovecs).cast("B").cast(size_t)  # [2 * slot + 1]
        self._iov_length_step = ctypes.sizeof(_IOVec) // ctypes.sizeof(ctypes.c_size_t)
        self._name_lengths = memoryview(self._messages).cast("B").cast("I")  # [slot * step + offset]
        self._name_length_step = ctypes.sizeof(_MMsgHdr) // 4
        self._name_length_offset = _MsgHdr.msg_namelen.offset // 4

    async def send(self, answers: Sequence[bytes | None], peers: Sequence[Any]) -> int:
        """Send each answer that is not None to its peer; returns how many went out."""
        await _take(self._lock)
        try:
            deadline = trio.current_time() + WRITABLE_WAIT_SECONDS
            sent = 0
            leftovers: list[tuple[bytes, Any]] = []
            slot = 0
            for answer, peer in zip(answers, peers):
                if not answer:
                    continue
                if not self._place(slot, answer, peer):
                    leftovers.append((answer, peer))
                    continue
                slot += 1
                if slot == self._capacity:
                    done, gave_up = await self._flush(slot, deadline)
                    sent += done
                    slot = 0
                    if gave_up:
                        return sent
            if slot:
                sent += (await self._flush(slot, deadline))[0]
            for answer, peer in leftovers:
                if await _sendto(self._sock, answer, peer, deadline):
                    sent += 1
            return sent
        finally:
            self._lock.release()

    def _place(self, slot: int, answer: bytes, peer: Any) -> bool:
        """Write ``answer`` for ``peer`` into ``slot``; False when it does not fit."""
        try:
            name = self._addresses.get(peer)
        except TypeError:  # an unhashable peer: not from recvfrom
            return False
        if name is None:
            if len(self._addresses) >= ADDRESS_CACHE_ENTRIES:
                self._addresses.clear()
            name = self._addresses[peer] = _sockaddr(self._family, peer) or b""
        if not name:  # not packed here: sendto knows more address forms
            return False
        size = len(answer)
        if size > ANSWER_SLOT_BYTES:
            return False
        start = slot * ANSWER_SLOT_BYTES
        self._answers[start : start + size] = answer
        self._iov_lengths[slot * self._iov_length_step + 1] = size
        start = slot * _NAME_SLOT_BYTES
        self._names[start : start + len(name)] = name
        self._name_lengths[slot * self._name_length_step + self._name_length_offset] = len(name)
        return True

    async def _flush(self, count: int, deadline: float) -> tuple[int, bool]:
        """Send slots 0..count-1: (how many went out, whether it gave up on a full buffer)."""
        start = sent = 0
        retried = -1
        while start < count:
            done = self._sendmmsg(self._fd, self._messages0 + start * _MMSGHDR_BYTES, count - start, 0)
            if done > 0:
                start += done
                sent += done
                continue
            code = ctypes.get_errno()
            if code == errno.EINTR:
                continue
            if code in _EAGAIN:
                with trio.move_on_at(deadline):
                    await trio.lowlevel.wait_writable(self._sock)
                    continue
                logger.debug("udp send buffer full for %.1f s: %d answers dropped", WRITABLE_WAIT_SECONDS, count - start)
                return sent, True
            if retried != start:
                retried = start  # perhaps a pending error of the socket, consumed by this report: once more
                continue
            logger.debug("udp answer in slot %d failed: %s", start, errno.errorcode.get(code, code))
            start += 1  # this destination's error: the others still go
        return sent, False


AnswerSender = MmsgSender | PerDatagramSender


def answer_sender(sock: socket.socket, capacity: int = 512) -> AnswerSender:
    """A ``MmsgSender`` where ``sendmmsg`` is available, else a ``PerDatagramSender``."""
    if _SENDMMSG is not None:
        try:
            return MmsgSender(sock, capacity)
        except (OSError, ValueError, TypeError) as error:  # a ctypes layout this platform refuses
            logger.debug("sendmmsg unavailable, answering one sendto each: %r", error)
    return PerDatagramSender(sock)
