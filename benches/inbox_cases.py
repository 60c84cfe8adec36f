"""Inbox messages merged per second on the real server (``run.py --only
inbox``): UDP datagrams from loadgen/udpgen.c and HTTP posts from wrk, then
kill -9, a restart, and a check that every acknowledged merge is stored;
and this case's section of the results table. (bench_inbox.py measures the
same merges in process, without sockets.)"""

from __future__ import annotations

import argparse
import contextlib
import json
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from figures import fmt_rate, fmt_us
from harness import HOST, UDPGEN, WRK_SCRIPTS, Http, Server, children_cpu, ensure_wrk, log, start_satchel, wrk

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
                    cpu0, children0 = server.cpu_seconds(), children_cpu()
                    started = time.monotonic()
                    http = wrk(wrk_bin, f"http://{HOST}:{server.port}", WRK_SCRIPTS / "inbox_post.lua", options, env,
                               seconds=options.inbox_http_seconds)
                    elapsed = time.monotonic() - started
                    http["server_cpu"] = (server.cpu_seconds() - cpu0) / elapsed
                    http["loadgen_cpu"] = (children_cpu() - children0) / elapsed
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


# --- the table ------------------------------------------------------------------------


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
        lines.append(f"| {case} | UDP | {fmt_rate(result['merged_per_s'])} | {fmt_us(result['latency_us']['p50'])} "
                     f"| {fmt_us(result['latency_us']['p99'])} | {lost} | {'-' if drops is None else f'{drops:,}'} "
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
            lines.append(f"| {case} | HTTP POST | {fmt_rate(http['requests_per_s'])} "
                         f"| {fmt_us(http['latency_us'].get('p50', 0))} | {fmt_us(http['latency_us'].get('p99', 0))} "
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
