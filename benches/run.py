"""Satchel's benchmarks, with their peers, in one run (benches/README.md).

    python benches/run.py                      # everything
    python benches/run.py --only fanout --quick
    python benches/run.py --only rest,idle
    python benches/run.py --only inbox
    python benches/run.py --only socketio      # Socket.IO room fan-out and idle memory vs Node socket.io
    python benches/run.py --only permissions   # Directus fan-out under roles' rules; rule-check cost on get-by-id
    python benches/run.py --only resources     # resource fan-out, cross-protocol fan-out, UDP -> document latency
    python benches/run.py --only abuse         # a flooder, a mass disconnect, an idle flood (bench_abuse.py)
    python benches/run.py --only soak          # 10 minutes of mixed load, sampled, then kill -9 (bench_soak.py)
    python benches/run.py --only nodes         # fan-out over 2 nodes vs 1, broker traffic per delivery (bench_scaleout.py)
    python benches/run.py --only pgrest        # REST on the PostgreSQL store vs PocketBase (bench_scaleout.py)
    python benches/run.py --only workers       # --workers 2 vs 1 vs the SQLite default (bench_workers.py)

Every server runs in its own process; the load comes from other processes
(the C load generators in benches/loadgen/, wrk for REST and inbox posts),
over loopback only.
Each fan-out case gets a fresh server. The table goes to stdout and every
figure to benches/results/latest.json.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import http.client
import json
import os
import platform
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Iterator, Sequence

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

# The figures (issue #3), checked against each run.
TARGETS = {
    "fanout_1000": 1.5,  # x the faster peer's deliveries/s, 0 lost, p99 no worse
    "fanout_5000": 1.0,
    "idle_kb": 16.0,  # KB resident per open websocket, at most
    # issue #13: x PocketBase in the same run, its collection's rules needing a user token ...
    "rest_create": 1.5,
    "rest_get": 3.0,
    # ... and x PocketBase on a collection anyone may use (Satchel still checks a session)
    "rest_public_create": 1.0,
    "rest_public_get": 1.5,
    # issue #10: Socket.IO room fan-out vs Node socket.io 4, in the same run
    "socketio_1000": 3.0,  # x Node socket.io's deliveries/s, 0 lost, p99 no worse, every ack durable
    "socketio_5000": 2.0,
    "socketio_idle_kb": 8.0,  # KB resident per connected Socket.IO client (namespace + room), at most
    # issue #11: permissions (benches/bench_permissions.py)
    "permissions_fanout_1000": 3.0,  # x websockets broadcast()'s deliveries/s, Directus subscribers in 4 roles, 0 lost
    "permissions_rule_overhead": 0.15,  # rule checks add at most this to REST get-by-id latency
    # issue #12: resource subscriptions (benches/bench_resources.py)
    "resources_fanout_1000": 3.0,  # x websockets broadcast()'s deliveries/s, 1000 subscribers of one kv entry, 0 lost
    "resources_cross_protocol": 0.8,  # x the single-protocol figure, 1000 subscribers over three protocols, 0 lost
    "resources_udp_p99_ms": 10.0,  # UDP inbox message -> document subscriber, p99 at 1k messages/s
}


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --- processes ----------------------------------------------------------------


def _raise_fd_limit() -> None:
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
            cwd=cwd, env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}, preexec_fn=_raise_fd_limit,
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


# --- fan-out ---------------------------------------------------------------------

CHANNEL_TYPE = "c"
CHANNEL_ID = "1"


def run_loadgen(args: list[str], timeout: float) -> dict[str, Any]:
    result = subprocess.run([str(LOADGEN), *args], capture_output=True, text=True, timeout=timeout,
                            preexec_fn=_raise_fd_limit)
    if result.stderr.strip():
        log(result.stderr.strip())
    lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
    if not lines:
        raise RuntimeError(f"loadgen printed no result (exit {result.returncode}): {result.stderr}")
    return json.loads(lines[-1])


def fanout_load(subscribers: int, inflight: int, options: argparse.Namespace) -> list[str]:
    """The load generator's fan-out arguments but the servers' (one case's load, for every server)."""
    return ["fanout", "--subs", str(subscribers), "--size", str(options.size), "--inflight", str(inflight),
            "--warmup", str(options.warmup), "--duration", str(options.duration)]


def fanout_case(server_name: str, subscribers: int, channel: bool, inflight: int, options: argparse.Namespace
                ) -> dict[str, Any]:
    tmp = tempfile.TemporaryDirectory(prefix="satchel-bench-")
    try:
        extra: list[str] = []
        if server_name == "satchel":
            server = start_satchel(Path(tmp.name))
            client = satchel_login(server.port)
            cookie = client.cookie
            client.close()
            assert cookie
            extra = ["--cookie", cookie]
            if channel:
                satchel_join_channel(server.port, cookie, CHANNEL_TYPE, CHANNEL_ID)
                join = json.dumps({"action": "joinUsersChannels", "usersInformationCollection": "usersinfo"},
                                  separators=(",", ":"))
                extra += ["--join-frame", join, "--join-ack", "joinUsersChannels"]
        else:
            server = start_peer(server_name)
            if channel:
                join = json.dumps({"action": "join", "channelType": CHANNEL_TYPE, "channelId": CHANNEL_ID},
                                  separators=(",", ":"))
                extra += ["--join-frame", join, "--join-ack", "joined"]
        if channel:
            extra += ["--joiners", str(subscribers // 2), "--channel",
                      "--extra", f',"channelType":"{CHANNEL_TYPE}","channelId":"{CHANNEL_ID}"']
        try:
            result = run_loadgen(
                [*fanout_load(subscribers, inflight, options), "--port", str(server.port),
                 "--server-pid", str(server.pid), *extra],
                timeout=120 + options.duration,
            )
        finally:
            rss = server.rss_kb() if server.process.poll() is None else 0
            server.kill()  # no orderly goodbye to thousands of sockets: not what is measured
        if "error" in result:
            raise RuntimeError(f"{result['error']}: {result.get('ready')} of {result.get('wanted')} connections ready")
        result["server"] = server_name
        result["server_rss_kb"] = rss
        result["inflight"] = inflight
        return result
    finally:
        tmp.cleanup()


def bench_fanout(options: argparse.Namespace, peers: list[str]) -> list[dict[str, Any]]:
    results = []
    for inflight in options.inflight:
        for subscribers in options.subs:
            for channel in (False, True):
                for server_name in ["satchel", *peers]:
                    label = f"{server_name}: {subscribers} subscribers{', channel of half' if channel else ''}"
                    log(f"fan-out {label}, {inflight} in flight ...")
                    try:
                        result = fanout_case(server_name, subscribers, channel, inflight, options)
                    except Exception as error:  # one failing peer must not sink the run
                        log(f"  failed: {error}")
                        result = {"server": server_name, "subscribers": subscribers, "inflight": inflight,
                                  "error": str(error)}
                    result["channel"] = channel
                    results.append(result)
                    _log_result(result)
    return results


def bench_ceiling(options: argparse.Namespace) -> list[dict[str, Any]]:
    """What the load generator absorbs: the C ceiling server, many messages in flight."""
    results = []
    for subscribers in options.subs:
        log(f"load generator capacity: {CEILING_NAME}, {subscribers} subscribers, {options.ceiling_inflight} in flight ...")
        try:
            result = fanout_case(CEILING_NAME, subscribers, False, options.ceiling_inflight, options)
        except Exception as error:
            log(f"  failed: {error}")
            result = {"server": CEILING_NAME, "subscribers": subscribers, "inflight": options.ceiling_inflight,
                      "error": str(error)}
        result["channel"] = False
        results.append(result)
        _log_result(result)
    return results


def _log_result(result: dict[str, Any]) -> None:
    if "error" not in result:
        log(f"  {result['deliveries_per_s']:,.0f} deliveries/s, p50 {result['latency_us']['p50']:.0f} us,"
            f" p99 {result['latency_us']['p99']:.0f} us, lost {result['lost']},"
            f" loadgen cpu {result['loadgen_cpu']:.0%}, server cpu {result['server_cpu']:.0%}")


# --- idle connections ---------------------------------------------------------------


def idle_case(server_name: str, connections: int, options: argparse.Namespace) -> dict[str, Any]:
    tmp = tempfile.TemporaryDirectory(prefix="satchel-bench-")
    try:
        extra: list[str] = []
        if server_name == "satchel":
            server = start_satchel(Path(tmp.name))
            client = satchel_login(server.port)
            assert client.cookie
            extra = ["--cookie", client.cookie]
            client.close()
        else:
            server = start_peer(server_name)
        try:
            # Warm up: the first websockets load code and fill caches that
            # every later connection shares; they are not per connection.
            run_loadgen(["idle", "--port", str(server.port), "--subs", "50", "--hold", "0.5", *extra], timeout=60)
            time.sleep(1.0)
            base = server.rss_kb()
            hold = subprocess.Popen(
                [str(LOADGEN), "idle", "--port", str(server.port), "--subs", str(connections), "--hold", "120", *extra],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, preexec_fn=_raise_fd_limit,
            )
            try:
                assert hold.stdout is not None
                ready = json.loads(hold.stdout.readline() or "{}")
                if ready.get("ready") != connections:
                    raise RuntimeError(f"only {ready} connections opened")
                time.sleep(2.0)  # settle: handshakes done, greetings written
                rss = server.rss_kb()
                cpu0, t0 = server.cpu_seconds(), time.monotonic()
                time.sleep(options.idle_seconds)
                cpu1, t1 = server.cpu_seconds(), time.monotonic()
                rss_after = server.rss_kb()
            finally:
                assert hold.stdin is not None
                hold.stdin.close()
                try:
                    hold.wait(20)
                except subprocess.TimeoutExpired:
                    hold.kill()
        finally:
            server.kill()
        return {
            "server": server_name,
            "connections": connections,
            "rss_base_kb": base,
            "rss_open_kb": rss,
            "rss_open_after_idle_kb": rss_after,
            "kb_per_connection": (max(rss, rss_after) - base) / connections,
            "idle_cpu_percent": 100 * (cpu1 - cpu0) / (t1 - t0),
            "idle_seconds": round(t1 - t0, 2),
        }
    finally:
        tmp.cleanup()


def bench_idle(options: argparse.Namespace, peers: list[str]) -> list[dict[str, Any]]:
    results = []
    for server_name in ["satchel", *peers]:
        log(f"idle: {server_name}, {options.idle_connections} open websockets ...")
        try:
            result = idle_case(server_name, options.idle_connections, options)
            log(f"  {result['kb_per_connection']:.1f} KB per connection, {result['idle_cpu_percent']:.2f}% CPU idle")
        except Exception as error:
            log(f"  failed: {error}")
            result = {"server": server_name, "error": str(error)}
        results.append(result)
    return results


# --- REST ---------------------------------------------------------------------------

RECORD = {"title": "a record of typical size", "n": 42, "done": False}


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


def _satchel_rest_setup(server: Server) -> dict[str, str]:
    """A user with a session and one record; wrk's environment for them."""
    client = satchel_login(server.port)
    status, record = client.request("POST", "/benchitems", RECORD)
    assert status == 200, (status, record)
    client.close()
    return {"BENCH_AUTH": f"key {API_KEY}", "BENCH_COOKIE": client.cookie or "",
            "BENCH_BODY": json.dumps(RECORD), "BENCH_PATH": "/benchitems",
            "BENCH_GET_PATH": f"/benchitems/{record['_id']}"}


def _satchel_stored(data_dir: Path, satchel_args: Sequence[str] = ()) -> int:
    """Records in benchitems after a restart on ``data_dir``, less the setup's one."""
    server = start_satchel(data_dir, list(satchel_args))
    try:
        client = satchel_login(server.port)
        status, records = client.request("GET", "/benchitems")
        client.close()
        return (len(records) if isinstance(records, list) else 0) - 1
    finally:
        server.stop()


PB_ADMIN, PB_USER = "admin@example.com", "user@example.com"
PB_FIELDS = [{"name": "title", "type": "text"}, {"name": "n", "type": "number"}, {"name": "done", "type": "bool"}]


def _start_pocketbase(pocketbase: str, data_dir: Path) -> Server:
    port = _free_port()
    return Server("pocketbase", [pocketbase, "serve", "--dir", str(data_dir), "--http", f"{HOST}:{port}"],
                  r"Server started at http://[\d.]+:(\d+)", timeout=60)


def _pocketbase_admin(port: int) -> Http:
    api = Http(port)
    status, auth = api.request("POST", "/api/collections/_superusers/auth-with-password",
                               {"identity": PB_ADMIN, "password": PASSWORD})
    assert status == 200, (status, auth)
    api.headers["Authorization"] = auth["token"]
    return api


def _pocketbase_rest_setup(server: Server) -> tuple[dict[str, str], dict[str, str]]:
    """Two collections - one whose rules need a user token, one anyone may
    use - a user, a record in each; wrk's environments for the two."""
    api = _pocketbase_admin(server.port)
    rule = '@request.auth.id != ""'
    for name, rules in (("benchitems", rule), ("benchpublic", "")):
        status, body = api.request("POST", "/api/collections", {
            "name": name, "type": "base", "fields": PB_FIELDS,
            "listRule": rules, "viewRule": rules, "createRule": rules})
        assert status == 200, (status, body)
    status, body = api.request("POST", "/api/collections/users/records",
                               {"email": PB_USER, "password": PASSWORD, "passwordConfirm": PASSWORD})
    assert status == 200, (status, body)
    api.close()
    user_api = Http(server.port)
    status, auth = user_api.request("POST", "/api/collections/users/auth-with-password",
                                    {"identity": PB_USER, "password": PASSWORD})
    assert status == 200, (status, auth)
    token = auth["token"]
    user_api.headers["Authorization"] = token
    status, record = user_api.request("POST", "/api/collections/benchitems/records", RECORD)
    assert status == 200, (status, record)
    status, again = user_api.request("GET", f"/api/collections/benchitems/records/{record['id']}")
    assert status == 200, (status, again)
    user_api.close()
    public = Http(server.port)
    status, open_record = public.request("POST", "/api/collections/benchpublic/records", RECORD)
    assert status == 200, (status, open_record)
    public.close()
    env = {"BENCH_AUTH": token, "BENCH_COOKIE": "", "BENCH_BODY": json.dumps(RECORD),
           "BENCH_PATH": "/api/collections/benchitems/records",
           "BENCH_GET_PATH": f"/api/collections/benchitems/records/{record['id']}"}
    public_env = {**env, "BENCH_AUTH": "", "BENCH_PATH": "/api/collections/benchpublic/records",
                  "BENCH_GET_PATH": f"/api/collections/benchpublic/records/{open_record['id']}"}
    return env, public_env


def _pocketbase_stored(pocketbase: str, data_dir: Path) -> int:
    server = _start_pocketbase(pocketbase, data_dir)
    try:
        api = _pocketbase_admin(server.port)
        status, page = api.request("GET", "/api/collections/benchitems/records?perPage=1")
        api.close()
        return (page.get("totalItems", 0) if isinstance(page, dict) else 0) - 1
    finally:
        server.stop()


def _median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run with the median rate, with every run's rate and the total of requests."""
    ranked = sorted(runs, key=lambda run: run["requests_per_s"])
    median = dict(ranked[len(ranked) // 2])
    median["rounds"] = [run["requests_per_s"] for run in runs]
    median["requests_all_rounds"] = sum(run["requests"] for run in runs)
    median["non_2xx_all_rounds"] = sum(run["non_2xx"] for run in runs)
    costs = sorted(run.get("cpu_us_per_request", 0.0) for run in runs)
    median["cpu_us_per_request_median"] = costs[len(costs) // 2]
    return median


def bench_rest(options: argparse.Namespace, satchel_args: Sequence[str] = ()) -> dict[str, Any]:
    """Satchel and PocketBase side by side, both running throughout: each
    round runs every (server, call) once, in an order that flips from one
    round to the next, so a machine whose load drifts weighs on both alike;
    each figure is the median round. Then kill -9 of both, a restart, and a
    count of what each acknowledged create left stored. ``satchel_args``:
    more ``satchel serve`` flags (``--store postgresql://...``:
    bench_scaleout.py)."""
    wrk_bin = ensure_wrk()
    if wrk_bin is None:
        return {"skipped": "wrk is not installed"}
    results: dict[str, Any] = {"connections": options.rest_connections, "seconds": options.rest_seconds,
                               "rounds": options.rest_rounds}
    pocketbase = pocketbase_binary()
    with contextlib.ExitStack() as stack:
        satchel_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="satchel-bench-")))
        targets: list[tuple[str, Server, dict[str, str]]] = []
        satchel = start_satchel(satchel_dir, list(satchel_args))
        servers = [satchel]
        try:
            targets.append(("satchel", satchel, _satchel_rest_setup(satchel)))
            if pocketbase:
                pb_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="pocketbase-bench-"))) / "pb_data"
                subprocess.run([pocketbase, "superuser", "upsert", PB_ADMIN, PASSWORD, "--dir", str(pb_dir)],
                               check=True, capture_output=True, timeout=60)
                peer = _start_pocketbase(pocketbase, pb_dir)
                servers.append(peer)
                env, public_env = _pocketbase_rest_setup(peer)
                targets += [("pocketbase", peer, env), ("pocketbase_public", peer, public_env)]
            runs: dict[tuple[str, str], list[dict[str, Any]]] = {}
            for round_number in range(options.rest_rounds):
                order = targets if round_number % 2 == 0 else targets[::-1]
                for call in ("create", "get"):
                    for name, server, env in order:
                        log(f"REST round {round_number + 1}/{options.rest_rounds}: {name} {call} ...")
                        script = WRK_SCRIPTS / ("create.lua" if call == "create" else "get.lua")
                        cpu = server.cpu_seconds()
                        result = wrk(wrk_bin, f"http://{HOST}:{server.port}", script, options, env)
                        # The server's CPU time per request: a cost, where the rate
                        # also depends on the share of the machine it was given.
                        result["cpu_us_per_request"] = (server.cpu_seconds() - cpu) / max(result["requests"], 1) * 1e6
                        log(f"  {result['requests_per_s']:,.0f}/s, {result['cpu_us_per_request']:.0f} us of CPU a request")
                        runs.setdefault((name, call), []).append(result)
        except Exception as error:
            log(f"REST bench failed: {error}")
            results["error"] = str(error)
            for server in servers:
                server.kill()
            return results
        for server in servers:
            server.kill()  # kill -9: what was acknowledged must be there after a restart
        for name, _, _ in targets:
            summary = {call: _median_run(runs[(name, call)]) for call in ("create", "get")}
            if name == "pocketbase_public":
                results["pocketbase"]["public_collection"] = summary
                continue
            stored = _satchel_stored(satchel_dir, satchel_args) if name == "satchel" else _pocketbase_stored(pocketbase, pb_dir)
            acknowledged = summary["create"]["requests_all_rounds"] - summary["create"]["non_2xx_all_rounds"]
            results[name] = {**summary, "acknowledged_creates": acknowledged, "stored_after_kill_9": stored,
                             "durable": stored >= acknowledged}
    return results


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


# --- inbox messages -----------------------------------------------------------------------

INBOX_HTTP_IDS = 8  # message ids per inbox for the HTTP posts


def _udp_rcvbuf_errors() -> int | None:
    """The kernel's count of UDP datagrams dropped for a full receive buffer (all sockets)."""
    try:
        with open("/proc/net/snmp") as snmp:
            rows = [line.split() for line in snmp if line.startswith("Udp:")]
        return int(rows[1][rows[0].index("RcvbufErrors")])
    except (OSError, ValueError, IndexError):
        return None


def _create_inboxes(client: Http, count: int) -> list[tuple[str, str]]:
    """``count`` new inbox documents: (read token, write token) each."""
    import secrets

    inboxes = []
    for _ in range(count):
        read_token, write_token = secrets.token_hex(16), secrets.token_hex(16)
        status, body = client.request("PUT", f"/backend/documents/{read_token}",
                                      {"title": "a sensor inbox", "#messages": {}},
                                      {"Write-Token": write_token, "Derived-From": "0", "Revision": "1"})
        assert status == 200, (status, body)
        inboxes.append((read_token, write_token))
    return inboxes


def _stored_revisions(client: Http, read_token: str) -> dict[str, int]:
    """Message id -> its stored revision "#", in the inbox with ``read_token``."""
    status, document = client.request("GET", f"/backend/documents/{read_token}")
    assert status == 200, (status, document)
    return {message_id: int(message.get("#", 0)) for message_id, message in document["#messages"].items()}


def _udpgen_selftest() -> None:
    """The C generator must encode byte for byte as satchel.protocol.inbox.datagrams does."""
    from satchel.protocol.inbox.datagrams import encode_request

    token, message_id, timestamp, nonce = "00112233445566778899aabbccddeeff", "00000000000000a1", 1_700_000_000_123, "0102030405060708"
    body = '{"#":5,"type":"temperature","value":21.1,"sensor":0}'
    ours = subprocess.run([str(UDPGEN), "encode", token, message_id, str(timestamp), nonce, body],
                          capture_output=True, text=True, check=True, timeout=10).stdout.strip()
    expected = encode_request(token, message_id, body.encode(), timestamp_ms=timestamp, nonce=bytes.fromhex(nonce)).hex()
    if ours != expected:
        raise RuntimeError("benches/loadgen/udpgen.c encodes a request differently from encode_request")


def inbox_udp_case(server: Server, inboxes: list[tuple[str, str]], senders: int, id_base: int,
                   options: argparse.Namespace) -> dict[str, Any]:
    drops0 = _udp_rcvbuf_errors()
    completed = subprocess.run(
        [str(UDPGEN), "run", "--port", str(server.port), "--tokens", ",".join(w for _, w in inboxes),
         "--senders", str(senders), "--id-base", str(id_base), "--warmup", str(options.warmup),
         "--duration", str(options.inbox_seconds), "--timeout", str(options.inbox_timeout_ms),
         "--max-requests", str(options.inbox_max_requests), "--server-pid", str(server.pid)],
        capture_output=True, text=True, timeout=options.warmup + options.inbox_seconds + 60,
    )
    drops1 = _udp_rcvbuf_errors()
    if completed.stderr.strip():
        log(completed.stderr.strip())
    lines = [line for line in completed.stdout.splitlines() if line.startswith("{")]
    if not lines:
        raise RuntimeError(f"udpgen printed no result (exit {completed.returncode}): {completed.stderr}")
    result = json.loads(lines[-1])
    result["kernel_rcvbuf_drops"] = drops1 - drops0 if drops0 is not None and drops1 is not None else None
    return result


def _udp_durability(client: Http, inboxes: list[tuple[str, str]], result: dict[str, Any], id_base: int
                    ) -> dict[str, Any]:
    """Every sender's highest acknowledged revision (or a higher one) must be stored:
    by the merge rule, that covers every merge acknowledged to it before."""
    acked = result.pop("acked_revisions")
    stored = [_stored_revisions(client, read_token) for read_token, _ in inboxes]
    missing = 0
    for sender, revision in enumerate(acked):
        if revision and stored[sender % len(inboxes)].get(f"{id_base + sender:016x}", 0) < revision:
            missing += 1
    return {"acknowledged": result["codes"]["M"], "senders": len(acked),
            "senders_acknowledged": sum(1 for revision in acked if revision),
            "senders_missing_acknowledged": missing,
            "messages_stored": sum(len(messages) for messages in stored), "durable": missing == 0}


def _http_durability(client: Http, inboxes: list[tuple[str, str]], result: dict[str, Any], connections: int
                     ) -> dict[str, Any]:
    """wrk/inbox_post.lua sent request n (1..last) to slot n mod S with "#" = n. A stored
    revision r in a slot reflects every request of that slot up to r (the merge rule), so
    the stored documents cover ``covered`` requests: at least every acknowledged one, and
    all that were sent but for the few still unanswered when wrk stopped."""
    count = len(inboxes)
    slots = count * INBOX_HTTP_IDS
    covered = 0
    for inbox, (read_token, _) in enumerate(inboxes):
        stored = _stored_revisions(client, read_token)
        for index in range(INBOX_HTTP_IDS):
            slot = index * count + inbox
            revision = stored.get(f"{index:016x}", 0)
            if slot == 0:
                covered += revision // slots
            elif revision >= slot:
                covered += (revision - slot) // slots + 1
    acknowledged = sum(n for code, n in result.get("statuses", {}).items() if 200 <= int(code) < 300)
    sent = result.get("last_revision", 0)
    return {"acknowledged": acknowledged, "sent": sent, "covered": covered,
            "durable": covered >= acknowledged and sent - covered <= connections}


def bench_inbox(options: argparse.Namespace) -> dict[str, Any]:
    """Inbox messages merged per second on the real server, durable: UDP datagrams from
    udpgen, HTTP posts from wrk; then kill -9, restart, and check what was acknowledged."""
    _udpgen_selftest()
    results: dict[str, Any] = {"udp": [], "seconds": options.inbox_seconds,
                               "timeout_ms": options.inbox_timeout_ms}
    with contextlib.suppress(OSError, ValueError):
        results["rmem_default"] = int(Path("/proc/sys/net/core/rmem_default").read_text())
    tmp = tempfile.TemporaryDirectory(prefix="satchel-bench-")
    data_dir = Path(tmp.name)
    try:
        server = start_satchel(data_dir)
        cases: list[tuple[dict[str, Any], list[tuple[str, str]], int]] = []
        http_inboxes: list[tuple[str, str]] = []
        try:
            client = Http(server.port)
            for index, (count, senders) in enumerate(options.inbox_layouts):
                inboxes = _create_inboxes(client, count)
                id_base = (index + 1) << 32
                log(f"inbox UDP: {count} inbox{'es' if count > 1 else ''} x {senders} senders ...")
                try:
                    result = inbox_udp_case(server, inboxes, senders, id_base, options)
                    log(f"  {result['merged_per_s']:,.0f} merges/s, p50 {result['latency_us']['p50']:.0f} us, "
                        f"p99 {result['latency_us']['p99']:.0f} us, lost {result['lost']} of {result['sent']} "
                        f"(kernel receive-buffer drops {result['kernel_rcvbuf_drops']}), "
                        f"udpgen cpu {result['loadgen_cpu']:.0%}, server cpu {result['server_cpu']:.0%}")
                except Exception as error:
                    log(f"  failed: {error}")
                    result = {"error": str(error)}
                result.update(inboxes=count, senders_per_inbox=senders)
                results["udp"].append(result)
                cases.append((result, inboxes, id_base))
            wrk_bin = ensure_wrk()
            if wrk_bin is None:
                results["http"] = {"skipped": "wrk is not installed"}
            else:
                http_inboxes = _create_inboxes(client, options.inbox_http_inboxes)
                env = {"BENCH_TOKENS": ",".join(w for _, w in http_inboxes), "BENCH_IDS": str(INBOX_HTTP_IDS),
                       "BENCH_ID_BASE": "0"}
                log(f"inbox HTTP: POST messages, {options.inbox_http_inboxes} inboxes x {INBOX_HTTP_IDS} ids, "
                    f"{options.rest_connections} connections ...")
                try:
                    cpu0, children0 = server.cpu_seconds(), _children_cpu()
                    started = time.monotonic()
                    http = wrk(wrk_bin, f"http://{HOST}:{server.port}", WRK_SCRIPTS / "inbox_post.lua", options, env,
                               seconds=options.inbox_http_seconds)
                    elapsed = time.monotonic() - started
                    http["server_cpu"] = (server.cpu_seconds() - cpu0) / elapsed
                    http["loadgen_cpu"] = (_children_cpu() - children0) / elapsed
                    log(f"  {http['requests_per_s']:,.0f}/s, statuses {http.get('statuses')}")
                except Exception as error:
                    log(f"  failed: {error}")
                    http = {"error": str(error)}
                http.update(inboxes=options.inbox_http_inboxes, ids_per_inbox=INBOX_HTTP_IDS,
                            connections=options.rest_connections, seconds=options.inbox_http_seconds)
                results["http"] = http
            client.close()
        finally:
            server.kill()  # kill -9: every acknowledged merge must be there after a restart
        log("inbox: kill -9, restart on the same data, check what was acknowledged ...")
        try:
            server = start_satchel(data_dir)
            try:
                client = Http(server.port)
                for result, inboxes, id_base in cases:
                    if "acked_revisions" in result:
                        result["durability"] = _udp_durability(client, inboxes, result, id_base)
                http = results.get("http", {})
                if "statuses" in http:
                    http["durability"] = _http_durability(client, http_inboxes, http, options.rest_connections)
                client.close()
            finally:
                server.stop()
        except Exception as error:  # keep the figures measured
            log(f"  failed: {error}")
            results["durability_error"] = str(error)
        for result, _, _ in cases:
            result.pop("acked_revisions", None)
        return results
    finally:
        tmp.cleanup()


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


# --- Socket.IO: room fan-out and idle memory (issue #10) ----------------------------

#: Both servers ping every 10 minutes: a load generator connection need not
#: answer heartbeats during a case (siogen answers them anyway).
SIO_PING_MS = 600_000
SIO_CONTENT_BYTES = 100
#: The Node peer's namespace and room: any names do; these have Satchel's shapes.
SIO_PEER_COMMUNITY = "0" * 24
SIO_PEER_CHANNEL = "1" * 24


def ensure_node_socketio_peer() -> bool:
    if shutil.which("node") is None or shutil.which("npm") is None:
        log("node/npm not found: the Node socket.io peer is skipped")
        return False
    if not (NODE_SIO_PEER / "node_modules" / "socket.io").exists():
        log("npm ci (benches/peers/node_socketio, socket.io pinned by package-lock.json)")
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=NODE_SIO_PEER, check=True)
    return True


def start_satchel_socketio(data_dir: Path) -> Server:
    return start_satchel(data_dir, ["--socketio-ping-interval-ms", str(SIO_PING_MS),
                                    "--socketio-ping-timeout-ms", str(SIO_PING_MS)])


def start_node_socketio_peer() -> Server:
    return Server("node-socket.io", ["node", str(NODE_SIO_PEER / "server.js"), "0", str(SIO_PING_MS), str(SIO_PING_MS)],
                  r"listening on (\d+)")


class AsnityApi:
    """Asnity's REST API (``/api``, Nest's answers ``{statusCode, result}``)."""

    def __init__(self, port: int, token: str | None = None) -> None:
        self.http = Http(port)
        self.token = token

    def call(self, method: str, path: str, body: Any = None) -> Any:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else None
        status, answer = self.http.request(method, "/api" + path, body, headers)
        if status not in (200, 201) or not isinstance(answer, dict):
            raise RuntimeError(f"{method} /api{path}: {status} {str(answer)[:200]}")
        return answer.get("result")

    def sign_in(self, email: str, password: str) -> str:
        self.token = self.call("POST", "/user/auth/signin", {"id": email, "password": password})["accessToken"]
        return self.token

    def close(self) -> None:
        self.http.close()


SIO_EMAIL = "sio-bench@example.com"


def satchel_asnity_setup(port: int) -> tuple[str, str, str]:
    """One user (every client uses its token: one user, many tabs), a
    community and a public channel: (access token, community id, channel id)."""
    api = AsnityApi(port)
    try:
        api.call("POST", "/user/auth/signup", {"id": SIO_EMAIL, "password": PASSWORD, "nickname": "bench"})
        token = api.sign_in(SIO_EMAIL, PASSWORD)
        community = api.call("POST", "/community", {"name": "bench"})["_id"]
        channel = api.call("POST", "/channel", {"communityId": community, "name": "general", "isPrivate": False,
                                                 "type": "Channel"})["_id"]
        return token, community, channel
    finally:
        api.close()


def satchel_stored_chats(port: int, channel: str) -> set[int]:
    """The sequence numbers (``#<seq>`` at the head of the content) of the
    chats stored in ``channel``, read page by page over REST."""
    api = AsnityApi(port)
    try:
        api.sign_in(SIO_EMAIL, PASSWORD)
        stored: set[int] = set()
        page = api.call("GET", f"/channels/{channel}/chat?prev=-1")
        for _ in range(100_000):
            for chat in page.get("chat", []):
                content = chat.get("content", "")
                if content.startswith("#") and content[1:11].isdigit():
                    stored.add(int(content[1:11]))
            if "prev" not in page:
                break
            page = api.call("GET", f"/channels/{channel}/chat?prev={page['prev']}")
        return stored
    finally:
        api.close()


def run_siogen(args: list[str], timeout: float) -> dict[str, Any]:
    result = subprocess.run([str(SIOGEN), *args], capture_output=True, text=True, timeout=timeout,
                            preexec_fn=_raise_fd_limit)
    if result.stderr.strip():
        log(result.stderr.strip())
    lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
    if not lines:
        raise RuntimeError(f"siogen printed no result (exit {result.returncode}): {result.stderr}")
    return json.loads(lines[-1])


def _sio_target(server_name: str, data_dir: Path) -> tuple[Server, list[str], str | None]:
    """Start a server for a Socket.IO case: (server, siogen's namespace/room/auth
    arguments, the channel id when the chats are stored)."""
    if server_name == "satchel":
        server = start_satchel_socketio(data_dir)
        try:
            token, community, channel = satchel_asnity_setup(server.port)
        except BaseException:
            server.kill()
            raise
        auth = json.dumps({"token": f"Bearer {token}"}, separators=(",", ":"))
        return server, ["--nsp", f"/socket/commu-{community}", "--room", channel, "--auth", auth], channel
    server = start_node_socketio_peer()
    return server, ["--nsp", f"/socket/commu-{SIO_PEER_COMMUNITY}", "--room", SIO_PEER_CHANNEL], None


def socketio_fanout_case(server_name: str, subscribers: int, inflight: int, options: argparse.Namespace
                         ) -> dict[str, Any]:
    tmp = tempfile.TemporaryDirectory(prefix="satchel-bench-")
    try:
        data_dir = Path(tmp.name)
        server, target, channel = _sio_target(server_name, data_dir)
        acked_file = data_dir / "bench-acked-chats.txt"  # written by siogen, read here
        durability = channel is not None and options.sio_crash_ms > 0
        extra = ["--acked-file", str(acked_file), "--crash-after-ms", str(options.sio_crash_ms)] if durability else []
        try:
            result = run_siogen(
                ["fanout", "--port", str(server.port), *target, "--subs", str(subscribers),
                 "--size", str(SIO_CONTENT_BYTES), "--inflight", str(inflight),
                 "--publishers", str(options.sio_publishers), "--warmup", str(options.warmup),
                 "--duration", str(options.duration), "--server-pid", str(server.pid), *extra],
                timeout=240 + options.duration,
            )
        finally:
            server.kill()  # (the crash phase has killed Satchel already, with chats in flight)
        if "error" in result:
            raise RuntimeError(f"{result['error']}: {result.get('ready')} of {result.get('wanted')} connections ready")
        if durability:
            acked = {int(line) for line in acked_file.read_text().split()}
            acked_file.unlink()
            server = start_satchel_socketio(data_dir)
            try:
                stored = satchel_stored_chats(server.port, channel)  # type: ignore[arg-type]
            finally:
                server.stop()
            missing = acked - stored
            result["durability"] = {
                "killed_with_chats_in_flight": result["crash"]["killed"],
                "in_flight_at_kill": result["crash"]["sent"] - result["crash"]["acked"],
                "acknowledged": len(acked), "stored_after_kill_9": len(stored),
                "acknowledged_missing": len(missing), "durable": not missing and result["crash"]["killed"],
            }
        result["server"] = server_name
        result["publishers"] = options.sio_publishers
        return result
    finally:
        tmp.cleanup()


def socketio_idle_case(server_name: str, connections: int, options: argparse.Namespace) -> dict[str, Any]:
    tmp = tempfile.TemporaryDirectory(prefix="satchel-bench-")
    try:
        server, target, _ = _sio_target(server_name, Path(tmp.name))
        try:
            # Warm up: code and caches every connection shares are not per connection.
            run_siogen(["idle", "--port", str(server.port), *target, "--subs", "50", "--hold", "0.5"], timeout=120)
            time.sleep(1.0)
            base = server.rss_kb()
            hold = subprocess.Popen(
                [str(SIOGEN), "idle", "--port", str(server.port), *target, "--subs", str(connections), "--hold", "300"],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, preexec_fn=_raise_fd_limit,
            )
            try:
                assert hold.stdout is not None
                ready = json.loads(hold.stdout.readline() or "{}")
                if ready.get("ready") != connections:
                    raise RuntimeError(f"only {ready} connections opened")
                time.sleep(2.0)  # settle
                rss = server.rss_kb()
                cpu0, t0 = server.cpu_seconds(), time.monotonic()
                time.sleep(options.idle_seconds)
                cpu1, t1 = server.cpu_seconds(), time.monotonic()
                rss_after = server.rss_kb()
            finally:
                assert hold.stdin is not None
                hold.stdin.close()
                try:
                    hold.wait(20)
                except subprocess.TimeoutExpired:
                    hold.kill()
        finally:
            server.kill()
        return {
            "server": server_name, "connections": connections, "setup_s": ready.get("setup_s"),
            "rss_base_kb": base, "rss_open_kb": rss, "rss_open_after_idle_kb": rss_after,
            "kb_per_connection": (max(rss, rss_after) - base) / connections,
            "idle_cpu_percent": 100 * (cpu1 - cpu0) / (t1 - t0), "idle_seconds": round(t1 - t0, 2),
        }
    finally:
        tmp.cleanup()


def bench_socketio(options: argparse.Namespace) -> dict[str, Any]:
    servers = ["satchel"]
    if ensure_node_socketio_peer():
        servers.append("node-socket.io")
    fanout = []
    for inflight in options.inflight:
        for subscribers in options.subs:
            runs: dict[str, list[dict[str, Any]]] = {name: [] for name in servers}
            for round_ in range(options.sio_rounds):
                for server_name in servers:  # alternating, so that both see the same machine
                    log(f"Socket.IO room fan-out {server_name}: {subscribers} clients in one room, {inflight} chat"
                        f"{'s' if inflight > 1 else ''} in flight"
                        + (f" (round {round_ + 1} of {options.sio_rounds})" if options.sio_rounds > 1 else "") + " ...")
                    try:
                        result = socketio_fanout_case(server_name, subscribers, inflight, options)
                        durable = result.get("durability")
                        log(f"  {result['deliveries_per_s']:,.0f} deliveries/s ({result['messages_per_s']:,.0f} chats/s), "
                            f"p50 {result['latency_us']['p50']:.0f} us, p99 {result['latency_us']['p99']:.0f} us, "
                            f"ack p99 {result['ack_latency_us']['p99']:.0f} us, lost {result['lost']}, "
                            f"siogen cpu {result['loadgen_cpu']:.0%}, server cpu {result['server_cpu']:.0%}, "
                            f"other processes {result['other_cpu']:.0%}"
                            + (f"; after kill -9: {durable['acknowledged_missing']} of {durable['acknowledged']} acked "
                               f"chats missing" if durable else ""))
                    except Exception as error:
                        log(f"  failed: {error}")
                        result = {"server": server_name, "error": str(error)}
                    result.update(subscribers=subscribers, inflight=inflight)
                    runs[server_name].append(result)
            for server_name in servers:
                fanout.append(_median_round(runs[server_name]))
    idle = []
    if options.sio_idle_connections > 0:
        for server_name in servers:
            log(f"Socket.IO idle: {server_name}, {options.sio_idle_connections} clients in a namespace and a room ...")
            try:
                result = socketio_idle_case(server_name, options.sio_idle_connections, options)
                log(f"  {result['kb_per_connection']:.1f} KB per client, {result['idle_cpu_percent']:.2f}% CPU idle")
            except Exception as error:
                log(f"  failed: {error}")
                result = {"server": server_name, "error": str(error)}
            idle.append(result)
    return {"fanout": fanout, "idle": idle, "verdicts": socketio_verdicts(fanout, idle)}


def _median_round(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The round with the median deliveries/s, and a summary of every round:
    losses, refusals and durability count over all of them."""
    good = [r for r in runs if "error" not in r]
    if not good:
        return runs[0]
    good.sort(key=lambda r: r["deliveries_per_s"])
    chosen = dict(good[(len(good) - 1) // 2])
    if len(runs) > 1:
        chosen["rounds"] = [
            {key: r.get(key) for key in ("deliveries_per_s", "latency_us", "lost", "refused", "stalled", "server_cpu",
                                         "loadgen_cpu", "other_cpu", "durability", "error")} for r in runs]
        chosen["lost"] = max(r["lost"] for r in good)
        chosen["refused"] = max(r["refused"] for r in good)
        chosen["unparsed_deliveries"] = max(r["unparsed_deliveries"] for r in good)
        chosen["stalled"] = any(r["stalled"] for r in good) or len(good) < len(runs)
        durable = [r["durability"] for r in good if "durability" in r]
        if durable:
            chosen["durability"] = {
                "killed_with_chats_in_flight": all(d["killed_with_chats_in_flight"] for d in durable),
                "in_flight_at_kill": sum(d["in_flight_at_kill"] for d in durable),
                "acknowledged": sum(d["acknowledged"] for d in durable),
                "stored_after_kill_9": sum(d["stored_after_kill_9"] for d in durable),
                "acknowledged_missing": sum(d["acknowledged_missing"] for d in durable),
                "durable": all(d["durable"] for d in durable),
                "rounds": len(durable),
            }
    return chosen


def socketio_verdicts(fanout: list[dict[str, Any]], idle: list[dict[str, Any]]) -> list[dict[str, Any]]:
    verdicts = []
    for inflight, subscribers in sorted({(r["inflight"], r["subscribers"]) for r in fanout}):
        rows = {r["server"]: r for r in fanout if (r["inflight"], r["subscribers"]) == (inflight, subscribers)}
        ours, theirs = rows.get("satchel"), rows.get("node-socket.io")
        if not ours or not theirs or "error" in ours or "error" in theirs:
            continue
        target = TARGETS["socketio_1000"] if subscribers <= 1000 else TARGETS["socketio_5000"]
        ratio = ours["deliveries_per_s"] / theirs["deliveries_per_s"] if theirs["deliveries_per_s"] else 0.0
        durable = ours.get("durability", {}).get("durable")
        clean = ours["lost"] == 0 and not ours["refused"] and not ours["unparsed_deliveries"] and not ours["stalled"]
        checks = {"ratio": ratio >= target, "lost": clean, "p99": ours["latency_us"]["p99"] <= theirs["latency_us"]["p99"],
                  "durable": durable}
        verdicts.append({
            "case": f"{subscribers} clients", "subscribers": subscribers, "inflight": inflight, "ratio": ratio,
            "target": f">= {target:g}x, 0 lost, p99 <= Node, acks durable", "p99": ours["latency_us"]["p99"],
            "peer_p99": theirs["latency_us"]["p99"], "lost": ours["lost"], "durable": durable, "checks": checks,
            "met": all(value is True for value in checks.values()),
        })
    ours = next((r for r in idle if r["server"] == "satchel" and "error" not in r), None)
    theirs = next((r for r in idle if r["server"] == "node-socket.io" and "error" not in r), None)
    if ours:
        verdicts.append({
            "case": f"idle, {ours['connections']} clients", "kb_per_connection": ours["kb_per_connection"],
            "peer_kb_per_connection": theirs["kb_per_connection"] if theirs else None,
            "target": f"<= {TARGETS['socketio_idle_kb']:g} KB per client",
            "met": ours["kb_per_connection"] <= TARGETS["socketio_idle_kb"],
        })
    return verdicts


def socketio_table(report: dict[str, Any]) -> list[str]:
    sio = report["socketio"]
    options = report["options"]
    judged = options["inflight"][0]
    lines = ["## Socket.IO room fan-out: Satchel (Asnity, chats stored in SQLite before the ack) vs Node socket.io 4 "
             "(in memory)", ""]
    lines.append(f"All clients in one room of one namespace, over the websocket transport; one publisher "
                 f"({options['sio_publishers']} connection{'s' if options['sio_publishers'] > 1 else ''}) sends `chat` "
                 f"events with an ack, {SIO_CONTENT_BYTES}-byte content, closed loop; a chat is done when it is acked "
                 "and every client has its `new-chat`. Latency: publisher send -> client read of `new-chat`; ack: "
                 "publisher send -> ack read. Load generator: `loadgen/siogen.c`.")
    lines.append("")
    for inflight in options["inflight"]:
        rows = [r for r in sio["fanout"] if r.get("inflight") == inflight]
        if not rows:
            continue
        note = "the targets are judged here" if inflight == judged else "shown for reference, not judged"
        lines.append(f"### {inflight} chat{'s' if inflight > 1 else ''} in flight ({note})")
        lines.append("")
        lines.append("| clients | server | deliveries/s | chats/s | p50 | p99 | max | ack p50 | ack p99 | lost "
                     "| siogen CPU | server CPU | other processes |")
        lines.append("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
        for r in rows:
            if "error" in r:
                lines.append(f"| {r['subscribers']} | {r['server']} | failed: {r['error'][:60]} |  |  |  |  |  |  |  |  |  |  |")
                continue
            lat, ack = r["latency_us"], r["ack_latency_us"]
            lost = str(r["lost"])
            for key in ("refused", "unparsed_deliveries", "misrouted", "closed_by_server"):
                if r.get(key):
                    lost += f" ({key.replace('_', ' ')} {r[key]})"
            lines.append(
                f"| {r['subscribers']} | {r['server']} | {_fmt_rate(r['deliveries_per_s'])} | {r['messages_per_s']:,.0f} "
                f"| {_fmt_us(lat['p50'])} | {_fmt_us(lat['p99'])} | {_fmt_us(lat['max'])} | {_fmt_us(ack['p50'])} "
                f"| {_fmt_us(ack['p99'])} | {lost} | {r['loadgen_cpu']:.0%} | {r['server_cpu']:.0%} "
                f"| {max(0.0, r.get('other_cpu', 0)):.0%} |")
        lines.append("")
        lines.append("| clients | Satchel / Node (deliveries/s) | p99: Satchel vs Node | lost | acked chats after "
                     "kill -9 | target | verdict |")
        lines.append("|---|---|---|---|---|---|---|")
        for v in sio["verdicts"]:
            if v.get("inflight") != inflight:
                continue
            ours = next(r for r in rows if r["server"] == "satchel" and r["subscribers"] == v["subscribers"])
            durable = ours.get("durability")
            stored = ("-" if not durable else
                      f"{durable['acknowledged'] - durable['acknowledged_missing']:,} of {durable['acknowledged']:,} "
                      f"stored ({durable['in_flight_at_kill']} in flight at the kill)")
            shown = _verdict(v["met"]) if inflight == judged else f"({_verdict(v['met']).lower()})"
            missed = [name for name, ok in v["checks"].items() if ok is not True]
            if missed:
                shown += " - " + ", ".join(missed)
            lines.append(f"| {v['subscribers']} | {v['ratio']:.2f}x | {_fmt_us(v['p99'])} vs {_fmt_us(v['peer_p99'])} "
                         f"| {v['lost']} | {stored} | {v['target']} | {shown} |")
        lines.append("")
    if sio.get("idle"):
        lines.append("## Idle Socket.IO clients (connected to a namespace, in a room)")
        lines.append("")
        lines.append("| server | clients | RSS per client | CPU while idle | target | verdict |")
        lines.append("|---|---|---|---|---|---|")
        verdict = next((v for v in sio["verdicts"] if "kb_per_connection" in v), None)
        for r in sio["idle"]:
            if "error" in r:
                lines.append(f"| {r['server']} | failed: {r['error'][:60]} |  |  |  |  |")
                continue
            satchel = r["server"] == "satchel"
            lines.append(f"| {r['server']} | {r['connections']} | {r['kb_per_connection']:.1f} KB "
                         f"| {r['idle_cpu_percent']:.2f}% of a core "
                         f"| {verdict['target'] if satchel and verdict else ''} "
                         f"| {_verdict(verdict['met']) if satchel and verdict else ''} |")
        lines.append("")
    return lines


# --- the table -------------------------------------------------------------------------


def _fmt_rate(value: float) -> str:
    return f"{value / 1000:,.1f}k" if value >= 1000 else f"{value:,.0f}"


def _fmt_us(value: float) -> str:
    return f"{value / 1000:.1f} ms" if value >= 1000 else f"{value:.0f} us"


def _verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("MET" if ok else "MISSED")


def table(report: dict[str, Any]) -> str:
    lines: list[str] = []
    fanout = report.get("fanout")
    if fanout:
        judged = report["options"]["inflight"][0]
        for inflight in report["options"]["inflight"]:
            rows = [r for r in fanout if r.get("inflight") == inflight]
            note = "the targets are judged here" if inflight == judged else "shown for reference, not judged"
            lines.append(f"## Websocket fan-out: closed-loop publisher, {inflight} message{'s' if inflight > 1 else ''}"
                         f" in flight ({note})")
            lines.append("")
            lines.append("| case | server | deliveries/s | p50 | p99 | max | lost | msg bytes | loadgen CPU | server CPU |")
            lines.append("|---|---|---|---|---|---|---|---|---|---|")
            for result in rows:
                case = f"{result['subscribers']} subs{' (channel of half)' if result.get('channel') else ''}"
                if "error" in result:
                    lines.append(f"| {case} | {result['server']} | failed: {result['error'][:60]} |  |  |  |  |  |  |  |")
                    continue
                latency = result["latency_us"]
                lines.append(
                    f"| {case} | {result['server']} | {_fmt_rate(result['deliveries_per_s'])} "
                    f"| {_fmt_us(latency['p50'])} | {_fmt_us(latency['p99'])} | {_fmt_us(latency['max'])} "
                    f"| {result['lost']} | {result['message_bytes']} | {result['loadgen_cpu']:.0%} "
                    f"| {result['server_cpu']:.0%} |"
                )
            lines.append("")
            lines.append("| case | Satchel / faster peer (deliveries/s) | p99: Satchel vs that peer | lost | target "
                         "| verdict |")
            lines.append("|---|---|---|---|---|---|")
            for verdict in report.get("verdicts", {}).get("fanout", []):
                if verdict["inflight"] != inflight:
                    continue
                shown = _verdict(verdict["met"]) if inflight == judged else f"({_verdict(verdict['met']).lower()})"
                lines.append(
                    f"| {verdict['case']} | {verdict['ratio']:.2f}x ({verdict['peer']}) | {_fmt_us(verdict['p99'])} vs "
                    f"{_fmt_us(verdict['peer_p99'])} | {verdict['lost']} | {verdict['target']} | {shown} |"
                )
            lines.append("")
    ceiling = report.get("ceiling")
    if ceiling:
        lines.append("## Is the load generator the limit?")
        lines.append("")
        lines.append(f"{CEILING_NAME} (benches/peers/cfanout.c) is a C epoll server that encodes once and writes each "
                     "connection's frames once per loop iteration: not a peer, not in the ratios. Fed by the same load "
                     "generator with many messages in flight, it shows how many deliveries per second the load "
                     "generator absorbs, and at what CPU.")
        lines.append("")
        lines.append("| case | deliveries/s absorbed | in flight | loadgen CPU | lost |")
        lines.append("|---|---|---|---|---|")
        for result in ceiling:
            if "error" in result:
                lines.append(f"| {result['subscribers']} subs | failed: {result['error'][:60]} |  |  |  |")
                continue
            lines.append(f"| {result['subscribers']} subs | {_fmt_rate(result['deliveries_per_s'])} "
                         f"| {result['inflight']} | {result['loadgen_cpu']:.0%} | {result['lost']} |")
        lines.append("")
    inbox = report.get("inbox")
    if inbox:
        lines.extend(inbox_table(inbox))
    idle = report.get("idle")
    if idle:
        lines.append("## Idle websockets")
        lines.append("")
        lines.append("| server | open websockets | RSS per connection | CPU while idle | target | verdict |")
        lines.append("|---|---|---|---|---|---|")
        for result in idle:
            if "error" in result:
                lines.append(f"| {result['server']} | failed: {result['error'][:60]} |  |  |  |  |")
                continue
            satchel = result["server"] == "satchel"
            ok = result["kb_per_connection"] <= TARGETS["idle_kb"] if satchel else None
            lines.append(
                f"| {result['server']} | {result['connections']} | {result['kb_per_connection']:.1f} KB "
                f"| {result['idle_cpu_percent']:.2f}% of a core "
                f"| {'<= 16 KB' if satchel else ''} | {_verdict(ok) if satchel else ''} |"
            )
        lines.append("")
    rest = report.get("rest")
    if rest:
        lines.append(f"## REST (wrk, {rest.get('connections')} connections, {rest.get('seconds')} s each, "
                     f"median of {rest.get('rounds', 1)} alternating rounds)")
        lines.append("")
        if "skipped" in rest or "error" in rest:
            lines.append(f"skipped: {rest.get('skipped') or rest.get('error')}")
        else:
            lines.append("| call | Satchel req/s | PocketBase req/s | ratio | Satchel p99 | PocketBase p99 | target | verdict |")
            lines.append("|---|---|---|---|---|---|---|---|")
            satchel, pocketbase = rest.get("satchel", {}), rest.get("pocketbase", {})
            public = pocketbase.get("public_collection", {})
            rows = [
                ("record create (POST), PocketBase rule needs a user token", "create", pocketbase, "rest_create"),
                ("record get by id, same", "get", pocketbase, "rest_get"),
                ("record create (POST), PocketBase collection public", "create", public, "rest_public_create"),
                ("record get by id, same", "get", public, "rest_public_get"),
            ]
            for label, call, peer, target_name in rows:
                target = TARGETS[target_name]
                ours = satchel.get(call, {}).get("requests_per_s")
                theirs = peer.get(call, {}).get("requests_per_s")
                ratio = ours / theirs if ours and theirs else None
                ok = None if ratio is None else ratio >= target
                if call == "create" and ok is not None:
                    ok = ok and bool(satchel.get("durable"))
                lines.append(
                    f"| {label} "
                    f"| {_fmt_rate(ours) if ours else '-'} | {_fmt_rate(theirs) if theirs else '-'} "
                    f"| {f'{ratio:.2f}x' if ratio else '-'} "
                    f"| {_fmt_us(satchel.get(call, {}).get('latency_us', {}).get('p99', 0))} "
                    f"| {_fmt_us(peer.get(call, {}).get('latency_us', {}).get('p99', 0))} "
                    f"| >= {target}x | {_verdict(ok)} |"
                )
            lines.append("")
            lines.append("Satchel checks a session on every request, in every row. Rounds (req/s): "
                         + "; ".join(f"{name} {call} " + "/".join(f"{rate / 1000:.1f}k" for rate in result[call]["rounds"])
                                     for name, result in (("Satchel", satchel), ("PocketBase", pocketbase),
                                                          ("PocketBase public", public))
                                     for call in ("create", "get") if result.get(call, {}).get("rounds"))
                         + ".")
            lines.append("")
            lines.append("Server CPU time per request (all its threads, median round; what a request costs, "
                         "whatever share of a busy machine the server got): "
                         + "; ".join(f"{name} {call} {result[call]['cpu_us_per_request_median']:.0f} us"
                                     for name, result in (("Satchel", satchel), ("PocketBase", pocketbase),
                                                          ("PocketBase public", public))
                                     for call in ("create", "get")
                                     if result.get(call, {}).get("cpu_us_per_request_median") is not None)
                         + ".")
            for name, result in (("Satchel", satchel), ("PocketBase", pocketbase)):
                if "acknowledged_creates" in result:
                    lines.append("")
                    lines.append(
                        f"{name}: {result['acknowledged_creates']} creates acknowledged (every round), "
                        f"{result['stored_after_kill_9']} stored after kill -9 and restart "
                        f"({'all durable' if result['durable'] else 'SOME LOST'})."
                    )
        lines.append("")
    if report.get("socketio"):
        lines.extend(socketio_table(report))
    if report.get("permissions"):
        import bench_permissions  # benches/bench_permissions.py

        lines.extend(bench_permissions.table(report))
    if report.get("resources"):
        import bench_resources  # benches/bench_resources.py

        lines.extend(bench_resources.table(report))
    if report.get("nodes") or report.get("pgrest") or report.get("workers"):
        import bench_scaleout  # benches/bench_scaleout.py

        lines.extend(bench_scaleout.table(report))
    return "\n".join(lines)


def inbox_table(inbox: dict[str, Any]) -> list[str]:
    if "error" in inbox:
        return ["## Inbox messages merged per second", "", f"failed: {inbox['error']}", ""]
    lines = [f"## Inbox messages merged per second (durable SQLite store, {inbox['seconds']:g} s per UDP case)", ""]
    lines.append("No peer exists for this protocol (Satchel's own datagram layout, README \"Inbox datagrams\"), so "
                 "there is no ratio and no target: the figures stand alone. Every answer `M` (UDP) or 200 (HTTP) is "
                 "sent after the merge is committed (WAL, synchronous=NORMAL). UDP: `loadgen/udpgen.c`, closed loop, "
                 "one request outstanding per sender, each freshly encoded and signed; lost = unanswered within "
                 f"{inbox['timeout_ms']:g} ms. HTTP: `wrk/inbox_post.lua`, one wrk thread.")
    lines.append("")
    lines.append("| case | transport | merges/s | p50 | p99 | lost of sent / non-2xx | kernel drops | senders never "
                 "answered | generator CPU | server CPU |")
    lines.append("|---|---|---|---|---|---|---|---|---|---|")
    for result in inbox.get("udp", []):
        case = (f"{result['inboxes']} inboxes x {result['senders_per_inbox']} senders" if result["inboxes"] > 1
                else f"1 inbox x {result['senders_per_inbox']} senders (hot spot)")
        if "error" in result:
            lines.append(f"| {case} | UDP | failed: {result['error'][:60]} |  |  |  |  |  |  |  |")
            continue
        drops = result.get("kernel_rcvbuf_drops")
        lost = f"{result['lost']:,} of {result['sent']:,}"
        refused = sum(n for code, n in result["codes"].items() if code != "M")
        if refused or result.get("bad_answers"):
            lost += f"; {refused} not M, {result['bad_answers']} bad answers"
        lines.append(f"| {case} | UDP | {_fmt_rate(result['merged_per_s'])} | {_fmt_us(result['latency_us']['p50'])} "
                     f"| {_fmt_us(result['latency_us']['p99'])} | {lost} | {'-' if drops is None else f'{drops:,}'} "
                     f"| {result['senders_never_answered']} of {result['senders']} "
                     f"| {result['loadgen_cpu']:.0%} (udpgen) | {result['server_cpu']:.0%} |")
    http = inbox.get("http")
    if http:
        case = (f"{http.get('inboxes')} inboxes x {http.get('ids_per_inbox')} message ids, "
                f"{http.get('connections')} connections")
        if "skipped" in http or "error" in http:
            lines.append(f"| {case} | HTTP POST | {http.get('skipped') or 'failed: ' + http['error'][:60]} "
                         "|  |  |  |  |  |  |  |")
        else:
            statuses = ", ".join(f"{code}: {n:,}" for code, n in sorted(http.get("statuses", {}).items()))
            errors = f"; socket errors {http['socket_errors']}" if http.get("socket_errors") else ""
            lines.append(f"| {case} | HTTP POST | {_fmt_rate(http['requests_per_s'])} "
                         f"| {_fmt_us(http['latency_us'].get('p50', 0))} | {_fmt_us(http['latency_us'].get('p99', 0))} "
                         f"| {http['non_2xx']} non-2xx (statuses {statuses}){errors} | - | - "
                         f"| {http['loadgen_cpu']:.0%} (wrk) | {http['server_cpu']:.0%} |")
    lines.append("")
    if any(result.get("lost") for result in inbox.get("udp", [])):
        rmem = inbox.get("rmem_default")
        lines.append("Lost: requests sent in the measured window and never answered (within the timeout). Kernel "
                     "drops: datagrams the kernel dropped because the server's UDP receive buffer was full "
                     "(RcvbufErrors in /proc/net/snmp, machine-wide, over the whole case, warmup included). That "
                     "buffer is the queue: the server takes datagrams in about as fast as it merges them (it is "
                     "CPU-bound), and the buffer"
                     + (f" ({rmem // 1024} KB, net.core.rmem_default)" if rmem else "")
                     + " holds some 190-256 of these ~140-byte datagrams (each takes ~830 bytes of it); more "
                     "senders than that, each with a request in flight, overflow it, and the ones that do not fit "
                     "keep losing requests and waiting out timeouts. A sender whose request is lost waits the timeout, "
                     "then a random pause of up to a quarter of it, and sends a new one.")
        lines.append("")
    checks = []
    for result in inbox.get("udp", []):
        durability = result.get("durability")
        if durability:
            checks.append(
                f"UDP {result['inboxes']} x {result['senders_per_inbox']}: {durability['acknowledged']:,} merges "
                f"acknowledged to {durability['senders_acknowledged']} senders; after kill -9 and restart each "
                f"one's last acknowledged revision (or a newer one) is stored"
                f" ({'all durable' if durability['durable'] else str(durability['senders_missing_acknowledged']) + ' MISSING'})"
            )
    if http and http.get("durability"):
        durability = http["durability"]
        checks.append(
            f"HTTP: {durability['acknowledged']:,} posts acknowledged, {durability['sent']:,} sent; after kill -9 and "
            f"restart the stored revisions cover {durability['covered']:,} of them "
            f"({'all acknowledged ones durable' if durability['durable'] else 'SOME LOST'})"
        )
    if inbox.get("durability_error"):
        checks.append(f"NOT CHECKED: {inbox['durability_error'][:200]}")
    if checks:
        lines.append("Durability: " + "; ".join(checks) + ".")
        lines.append("")
    return lines


def fanout_verdicts(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    verdicts = []
    cases = sorted({(r["inflight"], r["subscribers"], r["channel"]) for r in results})
    for inflight, subscribers, channel in cases:
        rows = {r["server"]: r for r in results
                if (r["inflight"], r["subscribers"], r["channel"]) == (inflight, subscribers, channel)}
        satchel = rows.get("satchel")
        peers = [r for name, r in rows.items() if name not in ("satchel", CEILING_NAME) and "error" not in r]
        if not satchel or "error" in satchel or not peers:
            continue
        best = max(peers, key=lambda r: r["deliveries_per_s"])
        ratio = satchel["deliveries_per_s"] / best["deliveries_per_s"]
        target = TARGETS["fanout_1000"] if subscribers <= 1000 else TARGETS["fanout_5000"]
        met = ratio >= target and satchel["lost"] == 0
        if subscribers <= 1000:
            met = met and satchel["latency_us"]["p99"] <= best["latency_us"]["p99"]
        verdicts.append({
            "case": f"{subscribers} subs{' (channel of half)' if channel else ''}", "subscribers": subscribers,
            "inflight": inflight,
            "channel": channel, "peer": best["server"], "ratio": ratio, "p99": satchel["latency_us"]["p99"],
            "peer_p99": best["latency_us"]["p99"], "lost": satchel["lost"],
            "target": f">= {target}x, 0 lost" + (", p99 <= peer" if subscribers <= 1000 else ""), "met": met,
        })
    return verdicts


# --- main ------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default="fanout,idle,rest,inbox,socketio,permissions,resources",
                        help="comma-separated: fanout,idle,rest,inbox,socketio,permissions,resources,abuse,soak,"
                             "nodes,pgrest,workers")
    parser.add_argument("--soak-minutes", type=float, default=10.0, help="length of the soak (--only soak)")
    parser.add_argument("--quick", action="store_true", help="short runs, 1000 subscribers only")
    parser.add_argument("--peers", default="websockets,node", help="comma-separated peers for fan-out and idle")
    parser.add_argument("--subs", default="1000,5000", help="subscriber counts for fan-out")
    parser.add_argument("--inflight", default="8,1",
                        help="messages the publisher keeps in flight, comma-separated; the targets are judged at the"
                             " first")
    parser.add_argument("--size", type=int, default=100, help="bytes of each broadcast message")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds measured per fan-out case")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds of load before measuring")
    parser.add_argument("--no-ceiling", dest="ceiling", action="store_false",
                        help="skip the C ceiling server that shows what the load generator absorbs")
    parser.add_argument("--ceiling-inflight", type=int, default=32)
    parser.add_argument("--idle-connections", type=int, default=5000)
    parser.add_argument("--idle-seconds", type=float, default=10.0)
    parser.add_argument("--rest-connections", type=int, default=16)
    parser.add_argument("--rest-seconds", type=int, default=10)
    parser.add_argument("--rest-rounds", type=int, default=3,
                        help="rounds of every REST (server, call), alternating; each figure is the median round")
    parser.add_argument("--inbox-layouts", default="64x8,64x2,1x512",
                        help="UDP cases, comma-separated INBOXESxSENDERS (senders per inbox)")
    parser.add_argument("--inbox-seconds", type=float, default=5.0, help="seconds measured per UDP case")
    parser.add_argument("--inbox-timeout-ms", type=float, default=1000.0,
                        help="a datagram unanswered this long is counted lost (and the sender sends a new one)")
    parser.add_argument("--inbox-max-requests", type=int, default=2_000_000, help="at most this many datagrams per UDP case")
    parser.add_argument("--inbox-http-inboxes", type=int, default=64)
    parser.add_argument("--inbox-http-seconds", type=int, default=10)
    parser.add_argument("--sio-idle-connections", type=int, default=5000,
                        help="Socket.IO clients held open for the idle memory case (0 skips it)")
    parser.add_argument("--sio-rounds", type=int, default=1,
                        help="run each Socket.IO fan-out case this many times, Satchel and Node alternating; the "
                             "round with the median deliveries/s is shown (losses and durability count over all)")
    parser.add_argument("--sio-publishers", type=int, default=1,
                        help="publisher connections of the Socket.IO fan-out (the targets are for 1; more shows "
                             "what handling several chats at once would give)")
    parser.add_argument("--sio-crash-ms", type=int, default=300,
                        help="after each Satchel Socket.IO fan-out case, publish on this long and kill -9 the server "
                             "with chats in flight, then check every acked chat is stored (0 skips it)")
    parser.add_argument("--perm-subs", type=int, default=1000,
                        help="Directus subscribers of the permissions fan-out (split over 4 roles)")
    parser.add_argument("--perm-users-per-role", type=int, default=5,
                        help="accounts per role in the permissions fan-out (a role's connections share them)")
    parser.add_argument("--perm-inflight", default="8,32",
                        help="creates in flight in the permissions fan-out (and messages in flight for its peer), "
                             "comma-separated; the target is judged at the first")
    parser.add_argument("--perm-fanout-rounds", type=int, default=2,
                        help="rounds of each permissions fan-out setting, Satchel and the peer alternating (best shown)")
    parser.add_argument("--perm-rest-seconds", type=int, default=5,
                        help="seconds of each wrk run of the rule-check cost case")
    parser.add_argument("--perm-rounds", type=int, default=3,
                        help="wrk rounds per server in the rule-check cost case (default and rules alternating)")
    parser.add_argument("--res-subs", type=int, default=1000,
                        help="subscribers of the resource fan-out and of the cross-protocol fan-out")
    parser.add_argument("--res-inflight", default="8,32",
                        help="writes in flight in the resource fan-out (and messages for its peer), comma-separated; "
                             "the target is judged at the first, the cross-protocol case runs at the first")
    parser.add_argument("--res-rounds", type=int, default=2,
                        help="rounds of each resource fan-out and cross-protocol case, alternating (best shown)")
    parser.add_argument("--res-doc-subs", type=int, default=50,
                        help="resource websockets subscribed to the inbox document in the UDP latency case")
    parser.add_argument("--res-udp-rate", type=float, default=1000.0, help="UDP inbox messages per second")
    parser.add_argument("--res-udp-seconds", type=float, default=5.0, help="seconds of UDP messages")
    parser.add_argument("--nodes-subs", type=int, default=1000,
                        help="subscribers of the fan-out over nodes (split evenly over 2 nodes)")
    parser.add_argument("--nodes-brokers", default="redis,nats", help="brokers of the fan-out over nodes")
    parser.add_argument("--nodes-rounds", type=int, default=2,
                        help="rounds of every fan-out-over-nodes case, order flipping; the median round is shown")
    parser.add_argument("--pgrest-workers", type=int, default=1,
                        help="satchel serve --workers N for --only pgrest (N > 1 adds a Redis broker)")
    parser.add_argument("--workers-rounds", type=int, default=3)
    parser.add_argument("--workers-seconds", type=int, default=5)
    parser.add_argument("--workers-connections", type=int, default=64)
    parser.add_argument("--output", default=str(RESULTS / "latest.json"))
    options = parser.parse_args(argv)
    options.only = {part.strip() for part in options.only.split(",") if part.strip()}
    options.peers = [part.strip() for part in options.peers.split(",") if part.strip()]
    options.subs = [int(part) for part in options.subs.split(",")]
    options.inflight = [int(part) for part in options.inflight.split(",")]
    options.perm_inflight = [int(part) for part in options.perm_inflight.split(",")]
    options.res_inflight = [int(part) for part in options.res_inflight.split(",")]
    options.nodes_brokers = [part.strip() for part in options.nodes_brokers.split(",") if part.strip()]
    options.inbox_layouts = [tuple(int(n) for n in part.lower().split("x", 1))
                             for part in options.inbox_layouts.split(",") if part.strip()]
    if options.quick:
        options.subs = [1000]
        options.inflight = options.inflight[:1]
        options.duration = min(options.duration, 3.0)
        options.idle_connections = min(options.idle_connections, 1000)
        options.sio_idle_connections = min(options.sio_idle_connections, 1000)
        options.idle_seconds = min(options.idle_seconds, 3.0)
        options.rest_seconds = min(options.rest_seconds, 4)
        options.rest_rounds = 1
        options.inbox_seconds = min(options.inbox_seconds, 3.0)
        options.inbox_http_seconds = min(options.inbox_http_seconds, 4)
        options.perm_rest_seconds = min(options.perm_rest_seconds, 3)
        options.perm_inflight = options.perm_inflight[:1]
        options.perm_rounds = min(options.perm_rounds, 2)
        options.perm_fanout_rounds = 1
        options.res_inflight = options.res_inflight[:1]
        options.res_rounds = 1
        options.res_udp_seconds = min(options.res_udp_seconds, 3.0)
        options.nodes_rounds = 1
        options.workers_rounds = 1
        options.workers_seconds = min(options.workers_seconds, 3)
    return options


def main(argv: list[str] | None = None) -> int:
    options = parse_args(argv)
    _raise_fd_limit()
    RESULTS.mkdir(parents=True, exist_ok=True)
    peers = list(options.peers)
    if "node" in peers and options.only & {"fanout", "idle", "nodes"} and not ensure_node_peer():
        peers.remove("node")
    report: dict[str, Any] = {
        "command": " ".join(["python benches/run.py", *(argv if argv is not None else sys.argv[1:])]),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "options": {key: (sorted(value) if isinstance(value, set) else value) for key, value in vars(options).items()},
        "targets": TARGETS,
    }
    if options.only & {"fanout", "idle", "inbox", "socketio", "nodes"}:
        build_loadgen()
    if "fanout" in options.only:
        report["fanout"] = bench_fanout(options, peers)
        report["verdicts"] = {"fanout": fanout_verdicts(report["fanout"])}
        if options.ceiling:
            report["ceiling"] = bench_ceiling(options)
    if "idle" in options.only:
        report["idle"] = bench_idle(options, peers)
    if "rest" in options.only:
        report["rest"] = bench_rest(options)
    if "inbox" in options.only:
        try:
            report["inbox"] = bench_inbox(options)
        except Exception as error:
            log(f"inbox bench failed: {error}")
            report["inbox"] = {"error": str(error)}
    if "socketio" in options.only:
        report["socketio"] = bench_socketio(options)
    if "permissions" in options.only:
        import bench_permissions  # benches/bench_permissions.py

        report["permissions"] = bench_permissions.bench_permissions(options)
    if "resources" in options.only:
        import bench_resources  # benches/bench_resources.py

        report["resources"] = bench_resources.bench_resources(options)
    if "abuse" in options.only:
        import bench_abuse  # benches/bench_abuse.py: flood, mass drop, idle flood (issue 14)

        report["abuse"] = bench_abuse.run_cases(["flood", "drop", "idle"])
    if "soak" in options.only:
        import bench_soak  # benches/bench_soak.py: mixed load, samples and a plot, kill -9 (issue 14)

        report["soak"] = bench_soak.run_soak(["--minutes", str(options.soak_minutes)])
    if options.only & {"nodes", "pgrest"}:
        import bench_scaleout  # benches/bench_scaleout.py: fan-out over nodes, REST on PostgreSQL (issue 15)

        if "nodes" in options.only:
            report["nodes"] = bench_scaleout.bench_nodes(options, peers)
        if "pgrest" in options.only:
            report["pgrest"] = bench_scaleout.bench_pgrest(options)
    if "workers" in options.only:
        import bench_workers  # benches/bench_workers.py: --workers 2 vs 1 vs SQLite (issue 15)

        report["workers"] = bench_workers.run_workers(
            ["--rounds", str(options.workers_rounds), "--seconds", str(options.workers_seconds),
             "--connections", str(options.workers_connections)])
    output = Path(options.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=2) + "\n")
    print(f"# Satchel benchmarks\n\n`{report['command']}` - {report['date']}, {os.cpu_count()} CPUs, "
          f"Python {platform.python_version()}\n")
    print(table(report))
    print(f"(all figures: {output})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
