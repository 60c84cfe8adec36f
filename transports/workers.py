"""``satchel serve --workers N``: N server processes on one port, and the
parent that supervises them (issue 15 part 4).

Each worker is an ordinary ``satchel serve`` (the same arguments, the port
fixed) that binds its own listener with ``SO_REUSEPORT``: the kernel keeps
one accept queue per worker and hashes each new connection to one of them,
so the load spreads evenly without the workers waking each other for every
connection (one inherited listener shared by N processes has a single
queue, and every idle worker's epoll wakes for each connection; whichever
was running takes it). The cost: connections still waiting in a worker's
queue when it is killed are reset - the client retries and lands on a live
worker, since a closed listener leaves the group at once. The datagram port
is bound the same way (each worker answers the sources the kernel hashes to
it; the inbox's replay memory is shared over the broker, as between nodes):
one worker alone would put every datagram on one core and lose UDP while it
restarts.

The workers share what separate nodes share - they need ``--store
postgresql://...`` and ``--broker redis://...|nats://...`` (``main``
refuses anything else): the embedded SQLite store batches its commits in
one process's writer thread and the in-process bus reaches that process's
connections only. They share the data dir too (the API key, uploads).

The parent opens no store and serves nothing. It holds the port (a bound
socket that never listens, so ``--port 0`` picks one number for all and a
restarted worker finds it free), starts worker 0 - which migrates the
schema, installs ``--rules``, sweeps unfinished uploads and prints the
setup token, alone - then the others, and logs ``Satchel is ready at ...``
once every worker is. SIGTERM and SIGINT are forwarded to the workers (they
run in a process group of their own, so a terminal's Ctrl-C reaches them
once, through the parent) and the parent exits when they all have. A
worker that exits otherwise is restarted, after 0.1 s doubling to 5 s for
a worker that keeps dying within 10 s of its start.
"""

from __future__ import annotations

import ctypes
import logging
import os
import select
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Sequence

__all__ = ["WorkerRole", "supervise", "worker_role", "RESTART_DELAYS"]

log = logging.getLogger("satchel")

#: The environment of a worker: its index, whether it does the start's
#: housekeeping, and the descriptor it reports readiness on.
_ROLE = "_SATCHEL_WORKER"
_READY_FD = "_SATCHEL_WORKER_READY_FD"
#: The first restart delay, the last, and how long a worker must live for
#: the next restart to start from the first again (seconds).
RESTART_DELAYS = (0.1, 5.0, 10.0)


@dataclass(frozen=True, slots=True)
class WorkerRole:
    """What the supervisor asked of this process."""

    index: int
    #: Worker 0's first start: migrate, sweep uploads, print the setup token.
    housekeeping: bool
    ready_fd: int | None

    def ready(self) -> None:
        """Tell the supervisor this worker serves (once)."""
        if self.ready_fd is not None:
            try:
                os.write(self.ready_fd, f"{os.getpid()}\n".encode())
                os.close(self.ready_fd)
            except OSError:
                pass


def worker_role() -> WorkerRole | None:
    """This process's role, when the supervisor started it."""
    role = os.environ.get(_ROLE)
    if not role:
        return None
    index, _, first = role.partition(":")
    fd = os.environ.get(_READY_FD)
    return WorkerRole(int(index), first == "first", int(fd) if fd else None)


def _hold_port(host: str | None, port: int) -> socket.socket:
    """A socket bound to ``host``:``port`` with ``SO_REUSEPORT`` that never
    listens: it picks the number for ``--port 0`` and keeps it the
    workers' while one restarts. (Only listening sockets take connections.)"""
    family, kind, proto, _, address = socket.getaddrinfo(
        host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(address)
    return sock


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM when the supervisor dies (Linux),
    so a kill -9 of the parent leaves no worker holding the port."""
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass


class _Worker:
    def __init__(self, index: int) -> None:
        self.index = index
        self.process: subprocess.Popen[bytes] | None = None
        self.ready_read: int | None = None
        self.started = 0.0
        self.delay = RESTART_DELAYS[0]
        self.restart_at: float | None = None


class _Supervisor:
    def __init__(self, commands: list[list[str]], env: dict[str, str]) -> None:
        self.workers = [_Worker(i) for i in range(len(commands))]
        self.commands = commands
        self.env = env
        self.stopping: int | None = None  # the signal being forwarded

    def start(self, worker: _Worker, *, first: bool) -> None:
        read, write = os.pipe()
        env = {**self.env, _ROLE: f"{worker.index}:{'first' if first and worker.index == 0 else 'again'}",
               _READY_FD: str(write)}
        worker.process = subprocess.Popen(self.commands[worker.index], env=env, pass_fds=(write,), process_group=0,
                                          preexec_fn=_die_with_parent)
        os.close(write)
        worker.ready_read = read
        worker.started = time.monotonic()
        worker.restart_at = None

    def wait_ready(self, workers: Sequence[_Worker]) -> bool:
        """Wait until each of ``workers`` reports ready; False if one exits
        first (or a stop is asked)."""
        waiting = {w.ready_read: w for w in workers if w.ready_read is not None}
        while waiting and self.stopping is None:
            try:
                readable, _, _ = select.select(list(waiting), [], [], 0.5)
            except InterruptedError:
                continue
            for fd in readable:
                worker = waiting.pop(fd)
                data = os.read(fd, 64)
                os.close(fd)
                worker.ready_read = None
                if not data:
                    if worker.process is not None:
                        worker.process.wait()
                    return False
        return self.stopping is None

    def forward(self, signum: int, _frame: object = None) -> None:
        self.stopping = signum
        for worker in self.workers:
            if worker.process is not None and worker.process.poll() is None:
                try:
                    worker.process.send_signal(signum)
                except ProcessLookupError:
                    pass

    def stop_all(self, signum: int = signal.SIGTERM) -> None:
        self.forward(signum)
        self.reap(10.0)

    def reap(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        for worker in self.workers:
            if worker.process is None:
                continue
            try:
                worker.process.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                worker.process.kill()
                worker.process.wait()

    def watch(self) -> None:
        """Restart workers that exit, until a stop is asked."""
        while self.stopping is None:
            now = time.monotonic()
            for worker in self.workers:
                process = worker.process
                if worker.restart_at is not None:
                    if now >= worker.restart_at:
                        self.start(worker, first=False)
                        log.info("Worker %d restarted (pid %d)", worker.index, worker.process.pid)  # type: ignore[union-attr]
                    continue
                if process is None or process.poll() is None:
                    if worker.ready_read is not None:
                        self._poll_ready(worker)
                    continue
                if worker.ready_read is not None:
                    os.close(worker.ready_read)
                    worker.ready_read = None
                lived = now - worker.started
                if lived >= RESTART_DELAYS[2]:
                    worker.delay = RESTART_DELAYS[0]
                status = process.returncode
                how = f"signal {-status}" if status < 0 else f"status {status}"
                log.warning("Worker %d (pid %d) exited with %s after %.1f s; restarting in %.1f s",
                            worker.index, process.pid, how, lived, worker.delay)
                worker.restart_at = now + worker.delay
                worker.delay = min(worker.delay * 2, RESTART_DELAYS[1])
            time.sleep(0.05)

    @staticmethod
    def _poll_ready(worker: _Worker) -> None:
        assert worker.ready_read is not None
        readable, _, _ = select.select([worker.ready_read], [], [], 0)
        if readable:
            os.read(worker.ready_read, 64)
            os.close(worker.ready_read)
            worker.ready_read = None


def supervise(count: int, serve_arguments: Sequence[str], host: str, port: int, *,
              metrics_listen: tuple[str, int] | None = None, api_key: str | None = None,
              data_dir: str | None = None) -> int:
    """Run ``count`` workers of ``satchel serve <serve_arguments>`` on
    ``host``:``port`` until SIGTERM or SIGINT; the exit status.
    ``metrics_listen`` (host, port): worker i serves its own metrics on
    port + i (one scrape target per worker; port 0: each picks one)."""
    try:
        held = _hold_port(host, port)
    except OSError as error:
        print(f"satchel serve: cannot bind {host}:{port}: {error.strerror or error}", file=sys.stderr)
        return 2
    port = held.getsockname()[1]
    base = [sys.executable, "-m", "satchel.transports", "serve", *serve_arguments,
            "--port", str(port), "--workers", "1"]
    env = {**os.environ}
    if api_key:
        env["SATCHEL_API_KEY"] = api_key  # an --api-key among the arguments wins, as always
    commands = [base] * count
    if metrics_listen is not None:
        commands = [[*base, "--metrics-listen", f"[{metrics_listen[0]}]:{metrics_listen[1] + i if metrics_listen[1] else 0}"]
                    for i in range(count)]
    supervisor = _Supervisor(commands, env)
    previous = {signum: signal.signal(signum, supervisor.forward) for signum in (signal.SIGTERM, signal.SIGINT)}
    try:
        # Worker 0 first: it migrates the schema and does the start's
        # housekeeping before anyone serves; then the others together.
        supervisor.start(supervisor.workers[0], first=True)
        ready = supervisor.wait_ready(supervisor.workers[:1])
        if ready:
            for worker in supervisor.workers[1:]:
                supervisor.start(worker, first=True)
            ready = supervisor.wait_ready(supervisor.workers[1:])
        if not ready:
            if supervisor.stopping is None:
                failed = [w.process.returncode for w in supervisor.workers
                          if w.process is not None and w.process.poll() is not None]
                log.error("A worker exited before it was ready (status %s); stopping", failed[0] if failed else "?")
                supervisor.stop_all()
                return 2 if failed and failed[0] == 2 else 1
            supervisor.reap(10.0)
            return 0
        pids = ", ".join(str(w.process.pid) for w in supervisor.workers if w.process is not None)
        log.info("Satchel is ready at http://%s:%d (%d workers, pids %s%s)", host, port, count, pids,
                 f"; data in {data_dir}" if data_dir else "")
        supervisor.watch()
        supervisor.reap(15.0)
        return 0
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        if supervisor.stopping is None:
            supervisor.stop_all()
        held.close()
