"""Abuse and churn (issue 14): a flooding sender, a mass disconnect, an idle flood.

    python benches/bench_abuse.py                    # all three cases
    python benches/bench_abuse.py --only flood --subs 1000
    python benches/bench_abuse.py --only drop --drop 19000
    python benches/bench_abuse.py --only idle --idle 20000
    python benches/run.py --only abuse               # the same, from the main runner

- flood: the C load generator's fan-out to N Backpack subscribers, first
  alone, then while one more connection sends 1 KB ``broadcast`` frames as
  fast as it can (it reads what it is sent, in a thread, so it is no slow
  consumer itself). Reported: deliveries/s the subscribers saw in each run,
  subscribers the server closed, and what became of the flooder.
- drop: one user opens N websockets (a child process) and the child is
  killed with SIGKILL: the kernel closes them all at once. Reported: how
  long the next REST request took, and the server's RSS before the
  connections, with them, and each second for 5 s after the drop.
- idle: a child process opens N TCP connections from 127.0.0.2 that send
  nothing, while a probe on 127.0.0.1 sends a REST request every 10 ms.
  Reported: the probe's p50/p99/max latency and its failures.

Every server runs in its own process (``satchel serve``), loopback only.
Figures are indicative: the machine is shared.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness  # noqa: E402  (benches/harness.py: servers, HTTP clients, the load generator)

from satchel.transports.interfaces import ServerLimits  # noqa: E402

HOST = harness.HOST


# --- a minimal websocket client: handshake and masked frames ----------------------


def handshake(port: int, cookie: str, path: str = "/") -> bytes:
    key = base64.b64encode(os.urandom(16)).decode()
    return (f"GET {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nCookie: {cookie}\r\n\r\n").encode()


def masked_text_frame(payload: bytes) -> bytes:
    mask = os.urandom(4)
    length = len(payload)
    if length < 126:
        head = struct.pack("!BB", 0x81, 0x80 | length)
    elif length < 65536:
        head = struct.pack("!BBH", 0x81, 0x80 | 126, length)
    else:
        head = struct.pack("!BBQ", 0x81, 0x80 | 127, length)
    body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return head + mask + body


def open_websocket(port: int, cookie: str) -> socket.socket:
    sock = socket.create_connection((HOST, port), timeout=10)
    sock.sendall(handshake(port, cookie))
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            raise RuntimeError("closed during the handshake")
        data += chunk
    if not data.startswith(b"HTTP/1.1 101"):
        raise RuntimeError(data.split(b"\r\n", 1)[0].decode())
    return sock


def close_code_in(data: bytes) -> int | None:
    """The code of a server close frame found in ``data`` (a rough scan: good
    enough for a bench that only wants to know whether one came)."""
    index = data.rfind(b"\x88")
    if index < 0 or index + 4 > len(data):
        return None
    return int.from_bytes(data[index + 2:index + 4], "big")


# --- flood ---------------------------------------------------------------------------


class Flooder:
    """One connection sending 1 KB broadcast frames as fast as the server takes them."""

    def __init__(self, port: int, cookie: str, size: int = 1024) -> None:
        self.sock = open_websocket(port, cookie)
        self.sock.settimeout(None)
        body = json.dumps({"action": "broadcast", "flood": "x" * max(0, size - 40)}).encode()
        self.chunk = masked_text_frame(body) * 64
        self.frames_per_chunk = 64
        self.sent = 0
        self.received_bytes = 0
        self.closed: int | None = None
        self.stopped = threading.Event()
        self._tail = b""

    def start(self) -> None:
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=self._write, daemon=True).start()

    def _write(self) -> None:
        try:
            while not self.stopped.is_set():
                self.sock.sendall(self.chunk)
                self.sent += self.frames_per_chunk
        except OSError:
            pass

    def _read(self) -> None:
        try:
            while True:
                data = self.sock.recv(1 << 20)
                if not data:
                    break
                self.received_bytes += len(data)
                self._tail = (self._tail + data)[-256:]
        except OSError:
            pass
        code = close_code_in(self._tail)
        self.closed = code if code is not None else 1006

    def stop(self) -> None:
        self.stopped.set()
        try:
            self.sock.close()
        except OSError:
            pass


def fanout(server: harness.Server, cookie: str, subs: int, duration: float) -> dict[str, Any]:
    return harness.run_loadgen(
        ["fanout", "--port", str(server.port), "--subs", str(subs), "--size", "100", "--inflight", "8",
         "--warmup", "1", "--duration", str(duration), "--server-pid", str(server.pid), "--cookie", cookie],
        timeout=120 + duration,
    )


def flood_case(options: argparse.Namespace) -> dict[str, Any]:
    harness.build_loadgen()
    # The server's own default budget per sender, as a deployment runs it.
    rate = ServerLimits().websocket_message_rate
    with tempfile.TemporaryDirectory(prefix="satchel-abuse-") as tmp:
        server = harness.start_satchel(Path(tmp), ["--websocket-message-rate", str(rate or 0), *options.server_args])
        try:
            client = harness.satchel_login(server.port)
            cookie = client.cookie
            client.close()
            assert cookie
            calm = fanout(server, cookie, options.subs, options.duration)
            flooder = Flooder(server.port, cookie)
            flooder.start()
            time.sleep(0.5)
            try:
                flooded = fanout(server, cookie, options.subs, options.duration)
            finally:
                sent = flooder.sent
                flooder.stop()
            alive = server.process.poll() is None
        finally:
            server.kill()
    keys = ("deliveries_per_s", "closed_by_server", "open_subscribers", "lost")

    def summary(run: dict[str, Any]) -> dict[str, Any]:
        # The load generator gives latency in microseconds (latency_us).
        p99 = run.get("latency_us", {}).get("p99")
        return {**{k: run.get(k) for k in keys}, "p99_ms": None if p99 is None else round(p99 / 1000, 1)}

    result = {
        "case": "flood",
        "subscribers": options.subs,
        "calm": summary(calm),
        "flooded": summary(flooded),
        "flood_frames_sent": sent,
        "flooder_closed_with": flooder.closed,
        "server_alive": alive,
    }
    if calm.get("deliveries_per_s"):
        result["ratio"] = round(flooded.get("deliveries_per_s", 0) / calm["deliveries_per_s"], 3)
    return result


# --- mass drop -----------------------------------------------------------------------

_HOLDER = r"""
import selectors, socket, sys, base64, os
port, cookie, n = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
source = sys.argv[4] if len(sys.argv) > 4 else None
upgrade = sys.argv[5] == "ws" if len(sys.argv) > 5 else True
sel = selectors.DefaultSelector()
ready = failed = started = 0
pending = {}
held = []  # a socket nobody refers to is closed
next_port = 10000
def start():
    global started
    s = socket.socket()
    s.setblocking(False)
    if source:
        # Ports picked here: the kernel's own choice runs dry near 14,000
        # connections from one address (connect() prefers even ports).
        global next_port
        while True:
            next_port += 1
            try:
                s.bind((source, next_port))
                break
            except OSError:
                if next_port > 65000:
                    raise
    try:
        s.connect(("127.0.0.1", port))
    except BlockingIOError:
        pass
    pending[s] = b""
    sel.register(s, selectors.EVENT_WRITE)
    started += 1
while (ready + failed) < n:
    while started < n and len(pending) < 256:
        start()
    for key, events in sel.select(5):
        s = key.fileobj
        if events & selectors.EVENT_WRITE:
            if s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
                sel.unregister(s); s.close(); pending.pop(s); failed += 1; continue
            if not upgrade:
                sel.unregister(s); pending.pop(s); held.append(s); ready += 1; continue
            key_ = base64.b64encode(os.urandom(16)).decode()
            s.send((f"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                    f"Sec-WebSocket-Key: {key_}\r\nSec-WebSocket-Version: 13\r\nCookie: {cookie}\r\n\r\n").encode())
            sel.modify(s, selectors.EVENT_READ)
        else:
            try:
                data = s.recv(65536)
            except OSError:
                data = b""
            if not data:
                sel.unregister(s); s.close(); pending.pop(s); failed += 1; continue
            pending[s] += data
            if b"\r\n\r\n" in pending[s]:
                sel.unregister(s)
                ok = pending.pop(s).startswith(b"HTTP/1.1 101")
                held.append(s)
                ready += ok; failed += not ok
print(f"{ready} {failed}", flush=True)
sys.stdin.read()
"""


def hold(port: int, cookie: str, n: int, source: str | None = None, upgrade: bool = True) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(port), cookie, str(n), source or "", "ws" if upgrade else "tcp"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, preexec_fn=harness.raise_fd_limit,
    )


def probe(port: int) -> float:
    """One fresh-connection REST request (GET /collections); seconds it took."""
    started = time.perf_counter()
    client = harness.Http(port, {"Authorization": f"key {harness.API_KEY}"})
    try:
        client.connection.timeout = 30
        status, _ = client.request("GET", "/collections")
    finally:
        client.close()
    if status != 200:
        raise RuntimeError(f"probe answered {status}")
    return time.perf_counter() - started


def drop_case(options: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="satchel-abuse-") as tmp:
        server = harness.start_satchel(Path(tmp), options.server_args)
        try:
            client = harness.satchel_login(server.port)
            cookie = client.cookie
            assert cookie
            probe(server.port)
            # Someone who stays, to hear the close announcements.
            witness = open_websocket(server.port, cookie)
            time.sleep(0.5)
            before = server.rss_kb()
            started = time.perf_counter()
            holder = hold(server.port, cookie, options.drop)
            assert holder.stdout is not None
            ready, failed = (int(x) for x in holder.stdout.readline().split())
            setup_s = time.perf_counter() - started
            time.sleep(0.5)
            connected = server.rss_kb()
            holder.send_signal(signal.SIGKILL)
            holder.wait()
            dropped_at = time.perf_counter()
            # The kernel closes the child's sockets as it reaps it; the server
            # reads the ends within milliseconds. Probe through the first 2 s.
            time.sleep(0.05)
            first_probe = probe(server.port)
            probes = [first_probe]
            while time.perf_counter() < dropped_at + 2:
                probes.append(probe(server.port))
                time.sleep(0.01)
            after = []
            for second in range(1, 6):
                time.sleep(max(0.0, dropped_at + second - time.perf_counter()))
                after.append(server.rss_kb())
            last_probe = probe(server.port)
            witness.settimeout(1)
            heard = 0
            try:
                while True:
                    data = witness.recv(1 << 20)
                    if not data:
                        break
                    heard += data.count(b'"action":"close"')
            except OSError:
                pass
            witness.close()
            client.close()
        finally:
            server.kill()
    return {
        "case": "drop",
        "websockets": ready,
        "failed": failed,
        "setup_s": round(setup_s, 2),
        "rss_kb_before": before,
        "rss_kb_connected": connected,
        "rss_kb_after_each_s": after,
        "rss_after_5s_vs_before": round(after[-1] / before, 3),
        "first_rest_ms": round(first_probe * 1000, 1),
        "max_rest_ms_first_2s": round(max(probes) * 1000, 1),
        "rest_ms_after_5s": round(last_probe * 1000, 1),
        "close_frames_heard_by_witness": heard,
    }


# --- idle flood ----------------------------------------------------------------------


def idle_case(options: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="satchel-abuse-") as tmp:
        # 127.0.0.2 is a loopback address: the per-address bounds must be on for it.
        server = harness.start_satchel(Path(tmp), ["--limit-loopback", *options.server_args])
        try:
            probe(server.port)
            latencies: list[float] = []
            stamps: list[float] = []
            failures: list[str] = []
            stop = threading.Event()

            def probing() -> None:
                while not stop.is_set():
                    try:
                        latencies.append(probe(server.port))
                        stamps.append(time.perf_counter())
                    except Exception as error:  # noqa: BLE001 - counted, reported
                        failures.append(repr(error))
                    time.sleep(0.01)

            # The same probe without the flood first: the machine's own noise.
            calm_until = time.perf_counter() + options.idle_seconds / 2
            calm: list[float] = []
            while time.perf_counter() < calm_until:
                calm.append(probe(server.port))
                time.sleep(0.01)
            thread = threading.Thread(target=probing, daemon=True)
            thread.start()
            holder = hold(server.port, "", options.idle, source="127.0.0.2", upgrade=False)
            assert holder.stdout is not None
            opened, failed = (int(x) for x in holder.stdout.readline().split())
            held_at = time.perf_counter()
            time.sleep(options.idle_seconds)
            stop.set()
            thread.join()
            holder.send_signal(signal.SIGKILL)
            holder.wait()
            log_lines = [line for line in server.output if "Too many open files" in line]
            server_fds = len(os.listdir(f"/proc/{server.pid}/fd"))
        finally:
            server.kill()
    ordered = sorted(latencies)
    held = sorted(latency for latency, stamp in zip(latencies, stamps) if stamp - latency >= held_at)
    connecting = sorted(latency for latency, stamp in zip(latencies, stamps) if stamp - latency < held_at)
    calm.sort()

    def at(q: float, ordered: list[float] = ordered) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 1) if ordered else -1

    return {
        "case": "idle",
        "idle_connections_opened": opened,
        "idle_connections_failed": failed,
        "probes": len(latencies),
        "probe_failures": len(failures),
        "probe_failure_sample": failures[:3],
        "calm_p50_ms": at(0.5, calm),
        "calm_p99_ms": at(0.99, calm),
        "while_connecting_p99_ms": at(0.99, connecting),
        "while_held_p50_ms": at(0.5, held),
        "while_held_p99_ms": at(0.99, held),
        "p50_ms": at(0.5),
        "p99_ms": at(0.99),
        "max_ms": round(ordered[-1] * 1000, 1) if ordered else -1,
        "emfile_log_lines": len(log_lines),
        "server_descriptors_at_end": server_fds,
    }


CASES = {"flood": flood_case, "drop": drop_case, "idle": idle_case}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default="flood,drop,idle")
    parser.add_argument("--subs", type=int, default=1000, help="subscribers of the flood case")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds measured per fan-out run")
    parser.add_argument("--drop", type=int, default=19000, help="websockets of the mass drop (the hard descriptor"
                        " limit here is 20,000 per process, for the server as for the client)")
    parser.add_argument("--idle", type=int, default=19900, help="idle TCP connections from 127.0.0.2 (the client's"
                        " own descriptor limit is 20,000 here)")
    parser.add_argument("--idle-seconds", type=float, default=5.0, help="seconds probed with the idle flood held")
    parser.add_argument("--server-arg", action="append", dest="server_args", default=[],
                        help="an extra argument for satchel serve (repeatable)")
    parser.add_argument("--output", default=str(harness.RESULTS / "abuse.json"))
    options = parser.parse_args(argv)
    options.only = [part for part in options.only.split(",") if part]
    return options


def run_cases(names: list[str], argv: list[str] | None = None) -> list[dict[str, Any]]:
    """Run the named cases with this file's defaults (``run.py --only abuse``)."""
    options = parse_args(argv or [])
    harness.raise_fd_limit()
    results = []
    for name in names:
        harness.log(f"abuse: {name}")
        result = CASES[name](options)
        print(json.dumps(result), flush=True)
        results.append(result)
    return results


def main(argv: list[str] | None = None) -> int:
    options = parse_args(argv)
    results = run_cases(options.only, sys.argv[1:] if argv is None else argv)
    Path(options.output).parent.mkdir(parents=True, exist_ok=True)
    Path(options.output).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
