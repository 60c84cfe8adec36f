"""Socket.IO room fan-out and idle memory (``run.py --only socketio``,
issue #10): Satchel's Asnity chats, stored before the ack, against Node
socket.io 4 in memory, driven by loadgen/siogen.c; kill -9 with chats in
flight and a check that every acked chat is stored; the verdicts and this
case's section of the results table."""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from figures import TARGETS, fmt_rate, fmt_us, verdict_label
from harness import NODE_SIO_PEER, PASSWORD, SIOGEN, Http, Server, hold_idle, log, raise_fd_limit, start_satchel

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
                            preexec_fn=raise_fd_limit)
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
            held = hold_idle(server, [str(SIOGEN), "idle", "--port", str(server.port), *target, "--subs",
                                      str(connections), "--hold", "300"], connections, options.idle_seconds)
        finally:
            server.kill()
        return {
            "server": server_name, "connections": connections, "setup_s": held["setup_s"],
            "rss_base_kb": base, "rss_open_kb": held["rss_open_kb"], "rss_open_after_idle_kb": held["rss_open_after_idle_kb"],
            "kb_per_connection": (max(held["rss_open_kb"], held["rss_open_after_idle_kb"]) - base) / connections,
            "idle_cpu_percent": held["idle_cpu_percent"], "idle_seconds": held["idle_seconds"],
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
                f"| {r['subscribers']} | {r['server']} | {fmt_rate(r['deliveries_per_s'])} | {r['messages_per_s']:,.0f} "
                f"| {fmt_us(lat['p50'])} | {fmt_us(lat['p99'])} | {fmt_us(lat['max'])} | {fmt_us(ack['p50'])} "
                f"| {fmt_us(ack['p99'])} | {lost} | {r['loadgen_cpu']:.0%} | {r['server_cpu']:.0%} "
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
            shown = verdict_label(v["met"]) if inflight == judged else f"({verdict_label(v['met']).lower()})"
            missed = [name for name, ok in v["checks"].items() if ok is not True]
            if missed:
                shown += " - " + ", ".join(missed)
            lines.append(f"| {v['subscribers']} | {v['ratio']:.2f}x | {fmt_us(v['p99'])} vs {fmt_us(v['peer_p99'])} "
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
                         f"| {verdict_label(verdict['met']) if satchel and verdict else ''} |")
        lines.append("")
    return lines
