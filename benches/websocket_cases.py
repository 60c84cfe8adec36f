"""Websocket fan-out and idle websockets (``run.py --only fanout,idle``):
Satchel against the websockets and Node ws peers, the C ceiling server that
shows what the load generator absorbs, the verdicts against the targets,
and these cases' sections of the results table."""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from figures import TARGETS, fmt_rate, fmt_us, verdict_label
from harness import (CEILING_NAME, LOADGEN, hold_idle, log, run_loadgen, satchel_join_channel, satchel_login,
                     start_peer, start_satchel)

CHANNEL_TYPE = "c"
CHANNEL_ID = "1"


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
                    log_fanout_result(result)
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
        log_fanout_result(result)
    return results


def log_fanout_result(result: dict[str, Any]) -> None:
    if "error" not in result:
        log(f"  {result['deliveries_per_s']:,.0f} deliveries/s, p50 {result['latency_us']['p50']:.0f} us,"
            f" p99 {result['latency_us']['p99']:.0f} us, lost {result['lost']},"
            f" loadgen cpu {result['loadgen_cpu']:.0%}, server cpu {result['server_cpu']:.0%}")


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
            held = hold_idle(server, [str(LOADGEN), "idle", "--port", str(server.port), "--subs", str(connections),
                                      "--hold", "120", *extra], connections, options.idle_seconds)
        finally:
            server.kill()
        return {
            "server": server_name,
            "connections": connections,
            "rss_base_kb": base,
            "rss_open_kb": held["rss_open_kb"],
            "rss_open_after_idle_kb": held["rss_open_after_idle_kb"],
            "kb_per_connection": (max(held["rss_open_kb"], held["rss_open_after_idle_kb"]) - base) / connections,
            "idle_cpu_percent": held["idle_cpu_percent"],
            "idle_seconds": held["idle_seconds"],
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


# --- the table ------------------------------------------------------------------------


def fanout_table(report: dict[str, Any]) -> list[str]:
    lines: list[str] = []
    fanout = report["fanout"]
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
                f"| {case} | {result['server']} | {fmt_rate(result['deliveries_per_s'])} "
                f"| {fmt_us(latency['p50'])} | {fmt_us(latency['p99'])} | {fmt_us(latency['max'])} "
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
            shown = verdict_label(verdict["met"]) if inflight == judged else f"({verdict_label(verdict['met']).lower()})"
            lines.append(
                f"| {verdict['case']} | {verdict['ratio']:.2f}x ({verdict['peer']}) | {fmt_us(verdict['p99'])} vs "
                f"{fmt_us(verdict['peer_p99'])} | {verdict['lost']} | {verdict['target']} | {shown} |"
            )
        lines.append("")
    return lines


def ceiling_table(ceiling: list[dict[str, Any]]) -> list[str]:
    lines: list[str] = []
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
        lines.append(f"| {result['subscribers']} subs | {fmt_rate(result['deliveries_per_s'])} "
                     f"| {result['inflight']} | {result['loadgen_cpu']:.0%} | {result['lost']} |")
    lines.append("")
    return lines


def idle_table(idle: list[dict[str, Any]]) -> list[str]:
    lines: list[str] = []
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
            f"| {'<= 16 KB' if satchel else ''} | {verdict_label(ok) if satchel else ''} |"
        )
    lines.append("")
    return lines
