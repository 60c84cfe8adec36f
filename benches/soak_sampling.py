"""What the soak (bench_soak.py) samples each second besides the server's
own ``/proc`` figures: the probe's latencies, the load process's counters and
errors (and the load process itself, started and stopped from here), and the
CPU that the load and the rest of the machine used."""

from __future__ import annotations

import argparse
import http.client
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import harness  # benches/harness.py: HTTP clients, accounts, constants
from soak_data import HOST
from soak_server import pinned_to_cpu

# The load runs as ``bench_soak.py --role load``: the entry parses its flags.
BENCH_SOAK = Path(__file__).resolve().parent / "bench_soak.py"


class Probe(threading.Thread):
    """``GET /collections`` on one keep-alive connection every ``period`` s;
    latencies and failures, stamped, for the sampler to take per second."""

    def __init__(self, port: int, period: float) -> None:
        super().__init__(daemon=True)
        self.port = port
        self.period = period
        self.lock = threading.Lock()
        self.latencies: list[float] = []
        self.failures: list[str] = []
        self.stopped = threading.Event()

    def take(self) -> tuple[list[float], list[str]]:
        with self.lock:
            taken = self.latencies, self.failures
            self.latencies, self.failures = [], []
        return taken

    def run(self) -> None:
        connection: http.client.HTTPConnection | None = None
        headers = {"Authorization": f"key {harness.API_KEY}"}
        while not self.stopped.is_set():
            started = time.perf_counter()
            try:
                if connection is None:
                    connection = http.client.HTTPConnection(HOST, self.port, timeout=10)
                connection.request("GET", "/collections", headers=headers)
                response = connection.getresponse()
                response.read()
                elapsed = time.perf_counter() - started
                with self.lock:
                    if response.status == 200:
                        self.latencies.append(elapsed)
                    else:
                        self.failures.append(f"status {response.status}")
            except (OSError, http.client.HTTPException) as failure:
                if connection is not None:
                    connection.close()
                connection = None
                with self.lock:
                    self.failures.append(repr(failure))
            self.stopped.wait(max(0.0, self.period - (time.perf_counter() - started)))


def process_cpu_seconds(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_busy_and_stalls() -> tuple[float, float, float]:
    """(busy CPU seconds of every process on the machine, wall-clock seconds of
    I/O stall of some task - /proc/pressure/io - and of CPU stall), for the
    disturbance others cause on a shared machine."""
    with open("/proc/stat") as stat:
        fields = [int(x) for x in stat.readline().split()[1:]]
    busy = (sum(fields[:8]) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")  # minus idle and iowait
    stalls = []
    for name in ("io", "cpu"):
        try:
            with open(f"/proc/pressure/{name}") as pressure:
                stalls.append(int(pressure.readline().rsplit("total=", 1)[1]) / 1e6)
        except (OSError, IndexError, ValueError):
            stalls.append(0.0)
    return busy, stalls[0], stalls[1]


class LoadProcess:
    """The load in its own process; its status lines read in a thread."""

    def __init__(self, setup_path: Path, acked_path: Path, options: argparse.Namespace, cpu: int | None) -> None:
        args = [sys.executable, str(BENCH_SOAK), "--role", "load", "--setup", str(setup_path),
                "--acked", str(acked_path)]
        for name in ("subs", "rest_writes", "ws_writes", "kv_writes", "inbox_posts", "datagrams", "chats", "churn",
                     "hostile"):
            args += [f"--{name.replace('_', '-')}", str(getattr(options, name))]
        if not options.flood:
            args.append("--no-flood")
        self.process = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                        preexec_fn=pinned_to_cpu(cpu), env={**os.environ, "PYTHONUNBUFFERED": "1"})
        self.lock = threading.Lock()
        self.counters: dict[str, int] = {}
        self.errors: list[tuple[float, str, str]] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            try:
                status = json.loads(line)
            except ValueError:
                continue
            with self.lock:
                if "counters" in status:
                    self.counters = status["counters"]
                self.errors.extend(tuple(e) for e in status.get("errors", []))

    def snapshot(self) -> tuple[dict[str, int], list[tuple[float, str, str]]]:
        with self.lock:
            return dict(self.counters), list(self.errors)

    def stop(self) -> None:
        assert self.process.stdin is not None
        try:
            self.process.stdin.write("stop\n")
            self.process.stdin.flush()
        except OSError:
            pass
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
