"""The soak's server (bench_soak.py): one ``satchel serve`` pinned to a CPU,
its whole output in a log file, its RSS, CPU and descriptors read from
``/proc``, and the scanner that counts ERROR/CRITICAL/Traceback lines in that
log."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import harness  # benches/harness.py: HTTP clients, accounts, constants
from soak_data import HOST

LOG_ERROR = re.compile(r"\b(ERROR|CRITICAL)\b|Traceback")


def pinned_to_cpu(cpu: int | None) -> Any:
    def prepare() -> None:
        harness.raise_fd_limit()
        if cpu is not None:
            os.sched_setaffinity(0, {cpu})
    return prepare


def server_and_load_cpus() -> tuple[int | None, int | None]:
    """(the server's CPU, the load's): the first two this process may use."""
    allowed = sorted(os.sched_getaffinity(0))
    return (allowed[0], allowed[1]) if len(allowed) >= 2 else (None, None)


class SoakServer:
    """``satchel serve`` with its output appended to a log file (all of it is
    scanned for errors; harness.Server keeps only the first lines)."""

    def __init__(self, data_dir: Path, log_path: Path, cpu: int | None, extra: list[str]) -> None:
        self.log_path = log_path
        self.log = open(log_path, "ab")
        start = log_path.stat().st_size
        self.process = subprocess.Popen(
            [sys.executable, "-m", "satchel.transports", "serve", "--host", HOST, "--port", "0",
             "--data-dir", str(data_dir), "--api-key", harness.API_KEY, *extra],
            stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env={**os.environ, "PYTHONUNBUFFERED": "1"}, preexec_fn=pinned_to_cpu(cpu))
        self.pid = self.process.pid
        self.port = 0
        deadline = time.monotonic() + 60
        pattern = re.compile(rb"ready at http://[\d.]+:(\d+)")
        while time.monotonic() < deadline and not self.port:
            with open(log_path, "rb") as log:
                log.seek(start)
                match = pattern.search(log.read())
            if match:
                self.port = int(match.group(1))
            elif self.process.poll() is not None:
                break
            else:
                time.sleep(0.05)
        if not self.port:
            self.kill()
            raise RuntimeError("satchel serve did not start: " + log_path.read_text(errors="replace")[-2000:])

    def rss_kb(self) -> int:
        with open(f"/proc/{self.pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0

    def cpu_seconds(self) -> float:
        with open(f"/proc/{self.pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def descriptors(self) -> int:
        return len(os.listdir(f"/proc/{self.pid}/fd"))

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)
        self.log.close()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                pass
        self.kill()


class LogScanner:
    """Reads what the server's log gained since the last call, line by line."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self.partial = b""
        self.examples: list[str] = []

    def new_errors(self) -> int:
        with open(self.path, "rb") as log:
            log.seek(self.offset)
            data = log.read()
        self.offset += len(data)
        lines = (self.partial + data).split(b"\n")
        self.partial = lines.pop()
        found = 0
        for raw in lines:
            line = raw.decode(errors="replace")
            if LOG_ERROR.search(line):
                found += 1
                if len(self.examples) < 20:
                    self.examples.append(line[:300])
        return found
