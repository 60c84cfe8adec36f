"""Scale-out benches (issue 15 part 6), each with its peer in the same run:

- ``nodes``: Backpack fan-out with the subscribers split evenly over 2
  ``satchel serve`` nodes (every other one on the second; the publisher on
  the first) sharing a PostgreSQL store and a broker (Redis, NATS), against
  one node on the same store and broker, one default node (SQLite, the
  in-process bus: the single-node figure of issue #3) and the fan-out peers
  of run.py's fan-out bench (``websockets``, Node ``ws``), all through
  ``websocket_cases.fanout_case``'s load. Deliveries/s, p99, lost; and what crossed the
  broker per delivery: messages (each node's own count) and bytes (the
  kernel's counters of its broker connections; ``cluster.py``).
- ``pgrest``: run.py's REST bench (``rest_cases.bench_rest``: wrk, PocketBase with a
  rule that needs a user token, rounds alternating, kill -9 and a count of
  what was stored) with Satchel on ``--store postgresql://...``.

    python benches/run.py --only nodes [--quick] [--nodes-brokers redis,nats] [--nodes-rounds 2]
    python benches/run.py --only pgrest [--quick] [--rest-rounds 3] [--rest-seconds 10]

The servers share PostgreSQL/Redis/NATS with whatever else runs on this
machine: each case gets a schema and a topic prefix of its own.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import cluster  # benches/cluster.py: schema, broker prefix, broker traffic
import figures  # benches/figures.py: the table's number formats
import harness  # benches/harness.py: servers, HTTP clients, the load generator
import rest_cases  # benches/rest_cases.py: the REST case (Satchel vs PocketBase)
import websocket_cases  # benches/websocket_cases.py: the fan-out case

#: issue 15's figures to reach
NODES_VS_ONE = 0.8
NODES_VS_PEER = 3.0
PG_CREATE_VS_PB = 1.0
PG_GET_VS_PB = 1.5


# --- fan-out over nodes --------------------------------------------------------------


def node_fanout_case(nodes: int, broker: str, subscribers: int, inflight: int, options: argparse.Namespace
                     ) -> dict[str, Any]:
    """``nodes`` Satchel processes on one fresh schema and topic prefix; the
    subscribers alternate between them, the publisher is on the first."""
    url = cluster.broker_url(cluster.BROKERS[broker], "bn")
    port = cluster.broker_port(url)
    with cluster.postgres_schema(cluster.POSTGRES, "nodes") as store, \
            tempfile.TemporaryDirectory(prefix="satchel-bench-") as tmp:
        servers: list[harness.Server] = []
        try:
            for index in range(nodes):  # one after the other: the first migrates the schema
                servers.append(harness.start_satchel(Path(tmp) / f"node{index}", ["--store", store, "--broker", url]))
            client = harness.satchel_login(servers[0].port)  # the session is in PostgreSQL: good on every node
            cookie = client.cookie
            client.close()
            assert cookie
            time.sleep(1.2)  # the nodes log their broker traffic once a second: the setup's is counted before
            messages_before = [cluster.broker_messages(server.output) for server in servers]
            bytes_before = [cluster.socket_bytes(server.pid, port) for server in servers]
            args = [*websocket_cases.fanout_load(subscribers, inflight, options), "--cookie", cookie,
                    "--port", str(servers[0].port), "--server-pid", str(servers[0].pid)]
            if nodes > 1:
                args += ["--port2", str(servers[1].port), "--server-pid2", str(servers[1].pid)]
            result = harness.run_loadgen(args, timeout=120 + options.duration)
            time.sleep(1.2)
            traffic = []
            for server, messages, before in zip(servers, messages_before, bytes_before):
                after = cluster.broker_messages(server.output)
                if not after:  # harness.Server keeps a log's first 2000 lines: say so rather than count 0
                    raise RuntimeError("no 'broker traffic' line in a node's log")
                traffic.append({
                    "sent": cluster.total(after.get("sent")) - cluster.total(messages.get("sent")),
                    "received": cluster.total(after.get("received")) - cluster.total(messages.get("received")),
                    "dropped": after.get("dropped", 0),
                    "bytes": cluster.bytes_between(before, cluster.socket_bytes(server.pid, port)),
                })
            result["server_rss_kb"] = [server.rss_kb() for server in servers if server.process.poll() is None]
        finally:
            for server in servers:
                server.kill()
    if "error" in result:
        raise RuntimeError(f"{result['error']}: {result.get('ready')} of {result.get('wanted')} connections ready")
    result.update(server=f"satchel, {nodes} node{'s' if nodes > 1 else ''}, {broker}", nodes=nodes, broker=broker,
                  inflight=inflight, broker_traffic=traffic, per_delivery=_broker_per_delivery(result, traffic))
    return result


def _broker_per_delivery(result: dict[str, Any], traffic: list[dict[str, Any]]) -> dict[str, float]:
    """Broker messages and bytes over the whole load generator run (connect,
    warm-up, window, drain), per websocket delivery and per broadcast sent.
    Bytes are both directions of every node's broker connections."""
    deliveries = max(result["delivered"], 1)
    remote = max(result.get("delivered_port2", 0), 1)
    broadcasts = max(result["sent"], 1)
    published = sum(node["sent"] for node in traffic)
    received = sum(node["received"] for node in traffic)
    wire = sum(node["bytes"]["sent"] + node["bytes"]["received"] for node in traffic)
    return {"published": published, "received": received, "bytes": wire,
            "messages_per_delivery": (published + received) / deliveries,
            "bytes_per_delivery": wire / deliveries,
            "bytes_per_remote_delivery": wire / remote if result.get("delivered_port2") else 0.0,
            "published_per_broadcast": published / broadcasts,
            "bytes_per_broadcast": wire / broadcasts}


def _median(runs: list[dict[str, Any]]) -> dict[str, Any]:
    ok = [run for run in runs if "error" not in run]
    if not ok:
        return runs[-1]
    chosen = dict(sorted(ok, key=lambda run: run["deliveries_per_s"])[len(ok) // 2])
    chosen["rounds"] = [run.get("deliveries_per_s") for run in runs]
    chosen["lost_all_rounds"] = sum(run.get("lost", 0) for run in ok)
    return chosen


def bench_nodes(options: argparse.Namespace, peers: list[str]) -> dict[str, Any]:
    subscribers, inflight = options.nodes_subs, options.inflight[0]
    cases: list[tuple[str, Any]] = [("default", lambda: websocket_cases.fanout_case("satchel", subscribers, False, inflight, options))]
    for broker in options.nodes_brokers:
        for nodes in (1, 2):
            cases.append((f"{broker} x{nodes}", lambda n=nodes, b=broker: node_fanout_case(n, b, subscribers,
                                                                                         inflight, options)))
    for peer in peers:
        cases.append((peer, lambda p=peer: websocket_cases.fanout_case(p, subscribers, False, inflight, options)))
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name, _ in cases}
    for round_number in range(options.nodes_rounds):
        # The order flips each round, so a neighbour's drifting load falls on all alike.
        for name, case in (cases if round_number % 2 == 0 else cases[::-1]):
            harness.log(f"nodes fan-out round {round_number + 1}/{options.nodes_rounds}: {name}, {subscribers} subscribers,"
                  f" {inflight} in flight ...")
            try:
                result = case()
            except Exception as error:  # one failing case must not sink the run
                harness.log(f"  failed: {error}")
                result = {"server": name, "error": str(error)}
            websocket_cases.log_fanout_result(result)
            if "per_delivery" in result:
                per = result["per_delivery"]
                harness.log(f"  broker: {per['messages_per_delivery']:.4f} messages and {per['bytes_per_delivery']:.1f} bytes"
                      f" per delivery, {per['published_per_broadcast']:.3f} published per broadcast")
            runs[name].append(result)
    summary = {name: _median(results) for name, results in runs.items()}
    return {"subscribers": subscribers, "inflight": inflight, "rounds": options.nodes_rounds, "cases": summary,
            "peers": peers, "brokers": options.nodes_brokers, "verdicts": _node_verdicts(summary, options, peers)}


def _rate(result: dict[str, Any] | None) -> float:
    return (result or {}).get("deliveries_per_s", 0.0) if "error" not in (result or {}) else 0.0


def _node_verdicts(summary: dict[str, Any], options: argparse.Namespace, peers: list[str]) -> list[dict[str, Any]]:
    default = _rate(summary.get("default"))
    fastest_peer = max(peers, key=lambda peer: _rate(summary.get(peer)), default=None)
    peer_rate = _rate(summary.get(fastest_peer)) if fastest_peer else 0.0
    verdicts = []
    for broker in options.nodes_brokers:
        two, one = summary.get(f"{broker} x2", {}), summary.get(f"{broker} x1", {})
        rate = _rate(two)
        lost = two.get("lost_all_rounds", two.get("lost")) if "error" not in two else None
        vs_default = rate / default if default else None
        vs_peer = rate / peer_rate if peer_rate else None
        verdicts.append({
            "broker": broker, "two_nodes": rate, "one_node_same_broker": _rate(one), "one_node_default": default,
            "fastest_peer": fastest_peer, "fastest_peer_rate": peer_rate,
            "vs_one_node_default": vs_default, "vs_one_node_same_broker": rate / _rate(one) if _rate(one) else None,
            "vs_fastest_peer": vs_peer, "lost": lost,
            "met": None if vs_default is None or vs_peer is None or lost is None
            else vs_default >= NODES_VS_ONE and vs_peer >= NODES_VS_PEER and lost == 0,
        })
    return verdicts


# --- REST on PostgreSQL ------------------------------------------------------------------


def bench_pgrest(options: argparse.Namespace) -> dict[str, Any]:
    workers = getattr(options, "pgrest_workers", 1)
    with cluster.postgres_schema(cluster.POSTGRES, "pgrest") as store:
        args = ["--store", store]
        if workers > 1:
            # N processes on the one port share the store and a broker (README "One machine, N workers").
            args += ["--workers", str(workers), "--broker", cluster.broker_url(cluster.BROKERS["redis"], "pgrest")]
        result = rest_cases.bench_rest(options, args)
    result["workers"] = workers
    satchel, pocketbase = result.get("satchel", {}), result.get("pocketbase", {})
    ratios = {}
    for call, target in (("create", PG_CREATE_VS_PB), ("get", PG_GET_VS_PB)):
        mine = satchel.get(call, {}).get("requests_per_s")
        theirs = pocketbase.get(call, {}).get("requests_per_s")
        ratio = mine / theirs if mine and theirs else None
        ratios[call] = {"satchel": mine, "pocketbase": theirs, "ratio": ratio, "target": target,
                        "met": None if ratio is None else ratio >= target and satchel.get("durable", False)}
    result["verdicts"] = ratios
    return result


# --- the report --------------------------------------------------------------------------------


def _cell(result: dict[str, Any]) -> str:
    if "error" in result:
        return f"failed: {result['error'][:80]}"
    return (f"{figures.fmt_rate(result['deliveries_per_s'])}/s, p99 {figures.fmt_us(result['latency_us']['p99'])}, "
            f"lost {result.get('lost_all_rounds', result.get('lost'))}")


def table(report: dict[str, Any]) -> list[str]:
    lines: list[str] = []
    nodes = report.get("nodes")
    if nodes:
        lines += [f"## Fan-out over nodes ({nodes['subscribers']} subscribers, {nodes['inflight']} in flight, "
                  f"median of {nodes['rounds']} round(s))", "",
                  "| case | deliveries/s, p99, lost | server CPU (node 1 / node 2) | broker messages / delivery |"
                  " broker bytes / delivery | bytes / remote delivery | published / broadcast |",
                  "|---|---|---|---|---|---|---|"]
        for name, result in nodes["cases"].items():
            per = result.get("per_delivery")
            cpu = "" if "error" in result else f"{result.get('server_cpu', 0):.0%}" + (
                f" / {result['server2_cpu']:.0%}" if result.get("server2_cpu", -1) >= 0 else "")
            broker = (f"{per['messages_per_delivery']:.4f} | {per['bytes_per_delivery']:.1f} | "
                      f"{per['bytes_per_remote_delivery']:.1f} | {per['published_per_broadcast']:.3f}"
                      if per else "- | - | - | -")
            lines.append(f"| {result.get('server', name)} | {_cell(result)} | {cpu} | {broker} |")
        lines += ["", "| broker | 2 nodes | vs 1 default node (>= 0.8x) | vs 1 node, same broker | vs fastest peer"
                  " (>= 3x) | lost | verdict |", "|---|---|---|---|---|---|---|"]
        for verdict in nodes["verdicts"]:
            def ratio(value: float | None) -> str:
                return f"{value:.2f}x" if value is not None else "-"
            lines.append(f"| {verdict['broker']} | {figures.fmt_rate(verdict['two_nodes'])}/s | "
                         f"{ratio(verdict['vs_one_node_default'])} | {ratio(verdict['vs_one_node_same_broker'])} | "
                         f"{ratio(verdict['vs_fastest_peer'])} ({verdict['fastest_peer']}) | {verdict['lost']} | "
                         f"{figures.verdict_label(verdict['met'])} |")
        lines.append("")
    rest = report.get("pgrest")
    if rest:
        workers = rest.get("workers", 1)
        lines += [f"## REST on the PostgreSQL store{f' (--workers {workers}, Redis broker)' if workers > 1 else ''}"
                  f" vs PocketBase (token rule), wrk -c{rest.get('connections')}, "
                  f"median of {rest.get('rounds')} round(s)", ""]
        if "error" in rest or "verdicts" not in rest:
            lines.append(f"failed or skipped: {rest.get('error') or rest.get('skipped')}")
        else:
            lines += ["| call | Satchel (PostgreSQL) | PocketBase | ratio | target | verdict |", "|---|---|---|---|---|---|"]
            for call, verdict in rest["verdicts"].items():
                ratio = f"{verdict['ratio']:.2f}x" if verdict["ratio"] else "-"
                cells = []
                for name in ("satchel", "pocketbase"):
                    run = rest.get(name, {}).get(call, {})
                    cells.append(f"{figures.fmt_rate(run.get('requests_per_s', 0))}/s, p99 "
                                 f"{figures.fmt_us(run.get('latency_us', {}).get('p99', 0))}, "
                                 f"{run.get('cpu_us_per_request_median', 0):.0f} us CPU/request")
                lines.append(f"| {call} | {cells[0]} | {cells[1]} | {ratio} | >= {verdict['target']}x | "
                             f"{figures.verdict_label(verdict['met'])} |")
            public = rest.get("pocketbase", {}).get("public_collection", {})
            for call in ("create", "get") if public else ():
                mine = rest.get("satchel", {}).get(call, {}).get("requests_per_s")
                theirs = public.get(call, {}).get("requests_per_s")
                if mine and theirs:
                    lines.append(f"| {call}, PocketBase collection public | {figures.fmt_rate(mine)}/s | "
                                 f"{figures.fmt_rate(theirs)}/s | {mine / theirs:.2f}x | (reference) | |")
            satchel = rest.get("satchel", {})
            lines.append("")
            lines.append(f"Satchel: {satchel.get('acknowledged_creates')} creates acknowledged, "
                         f"{satchel.get('stored_after_kill_9')} stored after kill -9 and restart "
                         f"({'all durable' if satchel.get('durable') else 'SOME LOST'}).")
        lines.append("")
    workers = report.get("workers")
    if workers and "median" in workers:
        refusal = workers["sqlite_workers_2"]
        lines += [f"## REST get-by-id, --workers 2 vs 1 (bench_workers.py: wrk -c{workers['connections']}, "
                  f"median of {workers['rounds']} round(s))", "",
                  "| server | requests/s (rounds) | p99 | requests per server CPU-second |", "|---|---|---|---|"]
        for case, label in (("sqlite", "1 process, SQLite (the default)"), ("1", "--workers 1, PostgreSQL + Redis"),
                            ("2", "--workers 2, PostgreSQL + Redis")):
            row = workers["median"][case]
            lines.append(f"| {label} | {figures.fmt_rate(row['requests_per_s'])} "
                         f"({', '.join(figures.fmt_rate(rate) for rate in row['rounds'])}) | {figures.fmt_us(row['p99_us'])} | "
                         f"{row['requests_per_cpu_s']:,.0f} |")
        lines += ["", f"2 workers / 1: {workers['speedup']:.2f}x; 2 workers / the SQLite default: "
                      f"{workers['vs_sqlite']:.2f}x. `--workers 2` on SQLite: "
                      f"{'refused (status 2)' if refusal['refused'] else 'NOT REFUSED'}: {refusal['message'][:160]}", ""]
    elif workers:
        lines += [f"--workers bench skipped: {workers.get('skipped')}", ""]
    return lines

