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
import datetime
import json
import os
import platform
import sys
from pathlib import Path
from typing import Any

import inbox_cases
import rest_cases
import socketio_cases
import websocket_cases
from figures import TARGETS
from harness import RESULTS, build_loadgen, ensure_node_peer, log, raise_fd_limit

# The benches' bodies are in their own modules: websocket_cases.py (fan-out,
# the ceiling, idle websockets), rest_cases.py, inbox_cases.py,
# socketio_cases.py, and bench_permissions.py, bench_resources.py,
# bench_abuse.py, bench_soak.py, bench_scaleout.py, bench_workers.py; what
# they all drive (servers, peers, clients, load generators) is in harness.py,
# the targets and number formats in figures.py. This file parses the flags,
# runs the benches asked for, writes the figures and prints the table.


# --- the table -------------------------------------------------------------------------


def table(report: dict[str, Any]) -> str:
    """Every bench's section of the results table, in a fixed order."""
    lines: list[str] = []
    if report.get("fanout"):
        lines.extend(websocket_cases.fanout_table(report))
    if report.get("ceiling"):
        lines.extend(websocket_cases.ceiling_table(report["ceiling"]))
    if report.get("inbox"):
        lines.extend(inbox_cases.inbox_table(report["inbox"]))
    if report.get("idle"):
        lines.extend(websocket_cases.idle_table(report["idle"]))
    if report.get("rest"):
        lines.extend(rest_cases.rest_table(report["rest"]))
    if report.get("socketio"):
        lines.extend(socketio_cases.socketio_table(report))
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
    raise_fd_limit()
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
        report["fanout"] = websocket_cases.bench_fanout(options, peers)
        report["verdicts"] = {"fanout": websocket_cases.fanout_verdicts(report["fanout"])}
        if options.ceiling:
            report["ceiling"] = websocket_cases.bench_ceiling(options)
    if "idle" in options.only:
        report["idle"] = websocket_cases.bench_idle(options, peers)
    if "rest" in options.only:
        report["rest"] = rest_cases.bench_rest(options)
    if "inbox" in options.only:
        try:
            report["inbox"] = inbox_cases.bench_inbox(options)
        except Exception as error:
            log(f"inbox bench failed: {error}")
            report["inbox"] = {"error": str(error)}
    if "socketio" in options.only:
        report["socketio"] = socketio_cases.bench_socketio(options)
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
