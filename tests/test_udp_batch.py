"""The answers of a datagram batch (transports/udp_batch.py) on real loopback
sockets: one sendmmsg for the batch, each answer to its own source, partial
sends continued, a full buffer waited for, one destination's error not
costing the others their answers, and the one-sendto-each fallback."""

from __future__ import annotations

import ctypes
import errno
import socket
import time
from typing import Any, Callable

import pytest
import trio

from satchel.transports import udp_batch
from satchel.transports.udp import serve_udp_batches
from satchel.transports.udp_batch import MmsgSender, PerDatagramSender, answer_sender

needs_sendmmsg = pytest.mark.skipif(udp_batch._SENDMMSG is None, reason="no sendmmsg here (not Linux)")


class Clients:
    """``count`` bound, non-blocking client sockets of ``family``."""

    def __init__(self, family: int, count: int) -> None:
        host = "127.0.0.1" if family == socket.AF_INET else "::1"
        self.sockets = []
        for _ in range(count):
            client = socket.socket(family, socket.SOCK_DGRAM)
            client.bind((host, 0))
            client.setblocking(False)
            self.sockets.append(client)
        self.peers = [client.getsockname() for client in self.sockets]

    def received(self, wait: float = 0.2) -> list[list[bytes]]:
        """What each client got, in order (waiting up to ``wait`` s for stragglers)."""
        got: list[list[bytes]] = [[] for _ in self.sockets]
        deadline = time.monotonic() + wait
        while True:
            progress = False
            for index, client in enumerate(self.sockets):
                while True:
                    try:
                        got[index].append(client.recv(4096))
                        progress = True
                    except BlockingIOError:
                        break
            if not progress and time.monotonic() > deadline:
                return got
            if not progress:
                time.sleep(0.01)

    def close(self) -> None:
        for client in self.sockets:
            client.close()


def _server(family: int) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1" if family == socket.AF_INET else "::1", 0))
    sock.setblocking(False)
    return sock


def _families() -> list[int]:
    families = [socket.AF_INET]
    if socket.has_ipv6:
        try:
            _server(socket.AF_INET6).close()
            families.append(socket.AF_INET6)
        except OSError:
            pass
    return families


def _senders() -> list[Callable[[socket.socket], Any]]:
    senders: list[Callable[[socket.socket], Any]] = [PerDatagramSender]
    if udp_batch._SENDMMSG is not None:
        senders.append(lambda sock: MmsgSender(sock, 16))  # small: a batch of 100 takes several calls
    return senders


def _recording(limit: int | None = None, fail_first: list[int] | None = None) -> tuple[Callable[..., int], list[int]]:
    """The real sendmmsg, seen through a wrapper: asks to send at most
    ``limit`` messages per call (a forced partial send), and/or answers the
    first calls with -1 and the errno in ``fail_first`` without sending."""
    real = udp_batch._SENDMMSG
    assert real is not None
    calls: list[int] = []
    failures = list(fail_first or [])

    def sendmmsg(fd: int, messages: int, count: int, flags: int) -> int:
        calls.append(count)
        if failures:
            ctypes.set_errno(failures.pop(0))
            return -1
        return real(fd, messages, count if limit is None else min(count, limit), flags)

    return sendmmsg, calls


@pytest.mark.parametrize("family", _families())
@pytest.mark.parametrize("make_sender", _senders())
async def test_every_answer_goes_to_its_own_source(family: int, make_sender: Callable[[socket.socket], Any]) -> None:
    clients = Clients(family, 100)
    with _server(family) as sock:
        sender = make_sender(sock)
        # Two answers for some, none for some (None: not answered).
        answers: list[bytes | None] = []
        peers: list[Any] = []
        for index, peer in enumerate(clients.peers):
            if index % 10 == 3:
                answers.append(None)
            else:
                answers.append(b"answer %d" % index)
            peers.append(peer)
            if index % 7 == 0:
                answers.append(b"again %d" % index)
                peers.append(peer)
        assert await sender.send(answers, peers) == sum(1 for answer in answers if answer)
        got = clients.received()
    clients.close()
    for index, received in enumerate(got):
        expected = [] if index % 10 == 3 else [b"answer %d" % index]
        if index % 7 == 0:
            expected.append(b"again %d" % index)
        assert received == expected, index


@needs_sendmmsg
async def test_a_batch_goes_in_one_call_and_partial_sends_are_continued() -> None:
    clients = Clients(socket.AF_INET, 40)
    with _server(socket.AF_INET) as sock:
        whole, calls = _recording()
        sender = MmsgSender(sock, 512, sendmmsg=whole)
        answers = [b"a%d" % index for index in range(40)]
        assert await sender.send(answers, clients.peers) == 40
        assert calls == [40]  # one syscall for the batch
        assert clients.received() == [[answer] for answer in answers]

        partial, calls = _recording(limit=7)  # the kernel sends 7 of what is asked, each time
        sender = MmsgSender(sock, 512, sendmmsg=partial)
        assert await sender.send(answers, clients.peers) == 40
        assert calls == [40, 33, 26, 19, 12, 5]
        assert clients.received() == [[answer] for answer in answers]
    clients.close()


@needs_sendmmsg
async def test_a_full_send_buffer_is_waited_for_then_given_up(monkeypatch: pytest.MonkeyPatch) -> None:
    clients = Clients(socket.AF_INET, 10)
    answers = [b"a%d" % index for index in range(10)]
    with _server(socket.AF_INET) as sock:
        eagain, calls = _recording(fail_first=[errno.EAGAIN, errno.EINTR, errno.EAGAIN])
        assert await MmsgSender(sock, 512, sendmmsg=eagain).send(answers, clients.peers) == 10
        assert calls == [10, 10, 10, 10]
        assert clients.received() == [[answer] for answer in answers]

        # A buffer that stays full: the batch gives up after the wait, not never.
        monkeypatch.setattr(udp_batch, "WRITABLE_WAIT_SECONDS", 0.1)
        always, calls = _recording(fail_first=[errno.EAGAIN] * 1_000_000)
        started = trio.current_time()
        assert await MmsgSender(sock, 512, sendmmsg=always).send(answers, clients.peers) == 0
        assert 0.1 <= trio.current_time() - started < 2
        assert clients.received(wait=0.05) == [[] for _ in answers]
    clients.close()


@pytest.mark.parametrize("make_sender", _senders())
async def test_one_destinations_error_costs_the_others_nothing(make_sender: Callable[[socket.socket], Any]) -> None:
    # Port 0 cannot be sent to (EINVAL from the kernel): sendmmsg stops at
    # that message; the answers after it must still go.
    clients = Clients(socket.AF_INET, 30)
    peers = list(clients.peers)
    peers[5] = peers[17] = ("127.0.0.1", 0)
    answers = [b"a%d" % index for index in range(30)]
    with _server(socket.AF_INET) as sock:
        assert await make_sender(sock).send(answers, peers) == 28
        got = clients.received()
    clients.close()
    assert got == [[] if index in (5, 17) else [answers[index]] for index in range(30)]


@needs_sendmmsg
async def test_a_pending_error_reported_on_a_send_does_not_lose_that_answer() -> None:
    # An error the socket had pending is reported by whichever send comes
    # next (and consumed): that message is tried once more.
    clients = Clients(socket.AF_INET, 5)
    answers = [b"a%d" % index for index in range(5)]
    with _server(socket.AF_INET) as sock:
        refused, calls = _recording(fail_first=[errno.ECONNREFUSED])
        assert await MmsgSender(sock, 512, sendmmsg=refused).send(answers, clients.peers) == 5
        assert calls == [5, 5]
        assert clients.received() == [[answer] for answer in answers]
    clients.close()


@needs_sendmmsg
async def test_what_the_slots_do_not_hold_goes_by_sendto() -> None:
    clients = Clients(socket.AF_INET, 3)
    with _server(socket.AF_INET) as sock:
        recorded, calls = _recording()
        sender = MmsgSender(sock, 512, sendmmsg=recorded)
        big = b"x" * (udp_batch.ANSWER_SLOT_BYTES + 1)
        peers = [clients.peers[0], ("localhost", clients.peers[1][1]), clients.peers[2]]  # a name, not an address
        assert await sender.send([b"small", b"by name", big], peers) == 3
        assert calls == [1]
        assert clients.received() == [[b"small"], [b"by name"], [big]]
    clients.close()


def test_without_sendmmsg_the_fallback_is_one_sendto_each(monkeypatch: pytest.MonkeyPatch) -> None:
    with _server(socket.AF_INET) as sock:
        if udp_batch._SENDMMSG is not None:
            assert isinstance(answer_sender(sock), MmsgSender)
        monkeypatch.setattr(udp_batch, "_SENDMMSG", None)
        assert isinstance(answer_sender(sock), PerDatagramSender)
        with pytest.raises(OSError):
            MmsgSender(sock)


async def test_the_endpoint_answers_every_source_of_a_batch(nursery: trio.Nursery) -> None:
    batches: list[int] = []

    async def handle_batch(batch: list[tuple[bytes, Any]]) -> list[bytes | None]:
        batches.append(len(batch))
        return [None if datagram.startswith(b"quiet") else b"re: " + datagram for datagram, _ in batch]

    port = await nursery.start(serve_udp_batches, handle_batch, "127.0.0.1", 0)
    clients = Clients(socket.AF_INET, 64)
    for round_ in range(3):
        for index, client in enumerate(clients.sockets):
            client.sendto(b"%s %d %d" % (b"quiet" if index % 9 == 0 else b"loud", index, round_), ("127.0.0.1", port))
    got: list[list[bytes]] = [[] for _ in clients.sockets]
    with trio.move_on_after(5):
        while sum(map(len, got)) < 3 * (64 - 8):
            await trio.sleep(0.02)
            for index, received in enumerate(clients.received(wait=0)):
                got[index].extend(received)
    clients.close()
    for index, received in enumerate(got):
        expected = [] if index % 9 == 0 else [b"re: loud %d %d" % (index, round_) for round_ in range(3)]
        assert received == expected, index
    assert sum(batches) == 3 * 64
    nursery.cancel_scope.cancel()
