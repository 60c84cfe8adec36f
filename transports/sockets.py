"""Non-blocking stdlib sockets under trio: read what arrived, write it all,
let a connection go.

Shared by the HTTP and websocket connections, so that one place decides how
a read yields to the scheduler and how a connection is let go. Raw sockets
rather than trio's SocketStream make the hub's immediate, non-awaited
``send`` possible (``hub.py``).
"""

from __future__ import annotations

import socket

import trio

__all__ = ["RECEIVE_SIZE", "receive_some", "receive_awaited", "send_all", "close_gracefully"]

# What one read asks the kernel for. ``recv`` returns a bytes object of the
# size actually read, so no connection keeps a buffer of this size around.
RECEIVE_SIZE = 65536


async def receive_some(sock: socket.socket) -> bytes:
    """Read what has arrived, waiting if nothing has; b"" at end of stream,
    on a reset, or when another task closed the socket.

    When data was already there no wait happened, so this yields once to keep
    a busy peer from starving the others (and to notice cancellation).
    """
    try:
        data = sock.recv(RECEIVE_SIZE)
    except BlockingIOError:
        pass
    except OSError:
        return b""
    else:
        await trio.lowlevel.checkpoint()
        return data
    return await receive_awaited(sock)


async def receive_awaited(sock: socket.socket) -> bytes:
    """``receive_some`` for a read that is expected to find nothing yet: it
    waits for the socket to be readable before reading.

    After answering a request, a keep-alive client is still reading the
    answer: a read straight away fails with EAGAIN - a system call and an
    exception per request for nothing. When bytes did arrive meanwhile (a
    pipelining client), the wait returns at the next scheduler pass, which
    is the yield ``receive_some`` would have made anyway."""
    while True:
        try:
            await trio.lowlevel.wait_readable(sock)
        except trio.ClosedResourceError:
            return b""
        try:
            return sock.recv(RECEIVE_SIZE)
        except BlockingIOError:
            continue
        except OSError:
            return b""


async def send_all(sock: socket.socket, data: bytes, timeout: float) -> None:
    """Write all of ``data``. Raises OSError when the peer is gone and
    trio.TooSlowError when no progress was made for ``timeout`` seconds."""
    try:
        sent = sock.send(data)
    except BlockingIOError:
        sent = 0
    if sent == len(data):
        return
    view = memoryview(data)[sent:]
    while view:
        with trio.fail_after(timeout):
            await trio.lowlevel.wait_writable(sock)
        try:
            sent = sock.send(view)
        except BlockingIOError:
            continue
        view = view[sent:]


async def close_gracefully(sock: socket.socket, timeout: float) -> None:
    """End a connection the server chose to end, without losing its last answer.

    Closing a socket with unread input makes the kernel send a reset, which
    can destroy the answer still in flight (a 413 sent before the body was
    read). So: send FIN, then read and drop whatever the peer still sends
    until it closes too or ``timeout`` passes. The caller closes the socket.
    """
    try:
        sock.shutdown(socket.SHUT_WR)
    except OSError:
        return
    with trio.move_on_after(timeout):
        while await receive_some(sock):
            pass
