"""Resource-subscription benches (issue 12, "Figures to reach").

    python benches/run.py --only resources           # all three (~2-3 minutes)
    python benches/run.py --only resources --quick   # shorter runs
    python benches/bench_resources.py [run.py flags] # the same

1. **Resource fan-out**: the real ``satchel serve``; ``--res-subs`` (1000)
   resource websockets on ``/realtime`` (base58 ``Sec-WebSocket-Protocol``
   headers with a scope and the Bearer token of a user logged in with
   ``POST /auth/login``: the default rules let the public role read nothing)
   subscribed to one kvStore entry; one REST writer ``PUT
   /realtime/kv/{id}`` (Bearer, the same scope in real headers),
   ``--res-inflight`` (8, 32) writes outstanding, closed loop
   (``loadgen/resgen.c``). Every subscriber must receive every acknowledged
   write exactly once with strictly increasing versions, and exactly the
   versions the REST answers gave (a hash of (seq, version) pairs per
   connection against the writer's). Peer: ``websockets`` ``broadcast()``
   (``websocket_cases.fanout_case``) with as many subscribers and messages in flight.
   Target: >= 3x, 0 lost.
2. **Cross-protocol**: one REST writer creating records with Directus
   ``POST /items/articles`` (Bearer), reaching 1000 subscribers spread evenly
   over Backpack websockets (session cookie on the upgrade), Directus core
   realtime (auth handshake, subscribe) and resource websockets subscribed
   to the ``collection`` resource ``articles``; then the same 1000 all in one
   protocol, each protocol in turn, in the same run. Judged against the
   figure a mix would reach if mixing cost nothing: the harmonic mean of the
   three single-protocol figures (a delivery costs what it costs in its own
   protocol); each single-protocol figure is shown too. Target >= 0.8x, 0 lost.
3. **UDP inbox message -> document subscriber latency**: an inbox document,
   ``--res-doc-subs`` (50) resource websockets subscribed to it as a
   ``document`` (no account: the read token), ``--res-udp-rate`` (1000)
   signed datagrams a second for ``--res-udp-seconds`` (5) from this
   process (``encode_request``, a fresh timestamp and nonce each; the
   message carries its send time, CLOCK_REALTIME ns), 16 message ids in
   turn so the document stays small. Latency = subscriber read - send time
   (same clock), p50/p99/max; every message acknowledged ``M`` must reach
   every subscriber. Target: p99 <= 10 ms, 0 lost.

Every figure also goes to ``benches/results/latest.json`` (``resources``).
"""

from __future__ import annotations

import argparse
import json
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import figures  # benches/figures.py: the targets, the table's number formats
import harness  # benches/harness.py: servers, HTTP clients, the load generator
import websocket_cases  # benches/websocket_cases.py: the fan-out peer case

HERE = Path(__file__).resolve().parent
RESGEN_SOURCE = HERE / "loadgen" / "resgen.c"
RESGEN_HEADERS = (HERE / "loadgen" / "wsclient.h", HERE / "loadgen" / "benchcommon.h")
RESGEN = harness.RESULTS / "bin" / "resgen"
PEER = "websockets"
EMAIL = "resources@bench.example.com"
ORG, PROJECT = "benchOrg", "benchProj"
KV_ID = "World:kvstoreClient:benchKey"
COLLECTION = "articles"
DOC_IDS = 16  # message ids used in turn by the UDP case

GROUPS = {0: "resource (kvStore)", 1: "backpack", 2: "directus core", 3: "resource (collection)"}


def build_resgen() -> Path:
    RESGEN.parent.mkdir(parents=True, exist_ok=True)
    newest = max(RESGEN_SOURCE.stat().st_mtime, *(h.stat().st_mtime for h in RESGEN_HEADERS))
    if not RESGEN.exists() or RESGEN.stat().st_mtime < newest:
        compiler = shutil.which("gcc") or shutil.which("cc")
        if compiler is None:
            raise SystemExit("benches need a C compiler (gcc) for the load generator")
        subprocess.run([compiler, "-O2", "-o", str(RESGEN), str(RESGEN_SOURCE)], check=True)
    return RESGEN


def _headers_token(bearer: str | None) -> str:
    from satchel.protocol.resources import encode_headers

    headers = {"x-m2-organization": ORG, "x-m2-project": PROJECT}
    if bearer:
        headers["authorization"] = f"Bearer {bearer}"
    return encode_headers(headers)


def _frame(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"))


def _account(port: int) -> tuple[str, str]:
    """A registered user: (Backpack session cookie, Directus access token)."""
    client = harness.satchel_login(port, EMAIL)
    cookie = client.cookie
    client.close()
    http = harness.Http(port)
    status, answer = http.request("POST", "/auth/login", {"email": EMAIL, "password": harness.PASSWORD, "mode": "json"})
    http.close()
    assert status == 200 and cookie, (status, answer)
    return cookie, answer["data"]["access_token"]


def run_resgen(args: list[str], timeout: float) -> dict[str, Any]:
    result = subprocess.run([str(RESGEN), *args], capture_output=True, text=True, timeout=timeout, check=False,
                            preexec_fn=harness.raise_fd_limit)
    if result.stderr.strip():
        harness.log(result.stderr.strip())
    lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
    if not lines:
        raise RuntimeError(f"resgen printed no result (exit {result.returncode}): {result.stderr[-500:]}")
    return json.loads(lines[-1])


def _conn_line(group: str, path: str, header: str, *steps: str) -> str:
    for field in (header, *steps):
        assert "\t" not in field and "\n" not in field
    return "\t".join((group, path, header, *steps)) + "\n"


def check_fanout(result: dict[str, Any], *, hash_checked: bool) -> dict[str, Any]:
    """Every subscriber received every acknowledged write exactly once (a bitmap of
    seqs per connection), versions strictly increasing where they are checked,
    and (kv) exactly the versions the writer was answered."""
    sent = result["sent"]
    want = bytearray(sent // 8 + 1)
    for seq in range(1, sent + 1):
        want[seq >> 3] |= 1 << (seq & 7)
    want_hex = bytes(want).hex()
    wrong = missing_total = duplicates_total = reordered_total = hash_mismatches = unparsed_total = closed = 0
    examples: list[str] = []
    by_group: dict[str, dict[str, int]] = {}
    for n, conn in enumerate(result["connections"]):
        name = GROUPS.get(conn["group"], str(conn["group"]))
        group = by_group.setdefault(name, {"connections": 0, "received": 0})
        group["connections"] += 1
        group["received"] += conn["received"]
        problems = []
        if conn["seen"] != want_hex:
            seen = bytes.fromhex(conn["seen"])
            missing = sum((w & ~s & 0xFF).bit_count() for w, s in zip(want, seen))
            missing_total += missing
            problems.append(f"{missing} missing")
        duplicates_total += conn["duplicates"]
        reordered_total += conn["reordered"]
        if conn["duplicates"]:
            problems.append(f"{conn['duplicates']} duplicates")
        if conn["reordered"]:
            problems.append(f"{conn['reordered']} versions not increasing")
        if conn["unparsed"]:
            problems.append(f"{conn['unparsed']} unparsed")
        if not conn["open"]:
            problems.append("closed")
        unparsed_total += conn["unparsed"]
        closed += not conn["open"]
        if hash_checked and conn["hash"] != result["writer_hash"]:
            hash_mismatches += 1
            problems.append("versions differ from the REST answers'")
        if problems:
            wrong += 1
            if len(examples) < 3:
                examples.append(f"connection {n} ({name}): {', '.join(problems)}")
    ok = (not wrong and result["non_2xx"] == 0 and result["answered_2xx"] == sent and result["lost"] == 0
          and not result["stalled"] and not result["closed_by_server"] and not result["oversize"]
          and (not hash_checked or result["answers_without_version"] == 0))
    return {"ok": ok, "writes_checked": sent, "connections_wrong": wrong, "examples": examples, "by_group": by_group,
            "versions_hashed": hash_checked, "missing": missing_total, "duplicates": duplicates_total,
            "versions_not_increasing": reordered_total,
            "hash_mismatches": hash_mismatches,
            "every_version_once": not (missing_total or duplicates_total or hash_mismatches or unparsed_total or closed
                                       or result["lost"] or result["non_2xx"])}


def _fresh_server(extra: list[str] | None = None) -> tuple[harness.Server, tempfile.TemporaryDirectory]:
    tmp = tempfile.TemporaryDirectory(prefix="satchel-bench-")
    try:
        return harness.start_satchel(Path(tmp.name), ["--websocket-heartbeat-ms", "0", *(extra or [])]), tmp
    except BaseException:
        tmp.cleanup()
        raise


def _finish(result: dict[str, Any], server: harness.Server) -> dict[str, Any]:
    if "error" in result:
        raise RuntimeError(f"{result['error']}: {result.get('ready')} of {result.get('wanted')} connections ready")
    return result


# -- 1. kv fan-out ---------------------------------------------------------------------


def kv_fanout_case(options: argparse.Namespace, inflight: int) -> dict[str, Any]:
    server, tmp = _fresh_server()
    try:
        port = server.port
        _, token = _account(port)
        scope = {"x-m2-organization": ORG, "x-m2-project": PROJECT, "Authorization": f"Bearer {token}"}
        pad = "x" * max(0, options.size - 60)
        http = harness.Http(port)
        status, answer = http.request("PUT", f"/realtime/kv/{KV_ID}", {"seq": "0000000000", "p": pad}, scope)
        http.close()
        assert status == 200, (status, answer)
        protocol = _headers_token(token)
        subscribe = _frame({"action": "subscribe", "resource": {"type": "kvStore", "id": KV_ID}})
        conns = Path(tmp.name) / "conns.txt"
        conns.write_text(_conn_line("0v", "/realtime", f"Sec-WebSocket-Protocol: {protocol}", subscribe, '"version"')
                         * options.res_subs)
        body = _frame({"seq": "0000000000", "p": pad})
        headers = "\r\n".join(f"{k}: {v}" for k, v in scope.items())
        result = _finish(run_resgen(
            ["fanout", "--port", str(port), "--conns", str(conns), "--method", "PUT",
             "--post-path", f"/realtime/kv/{KV_ID}", "--post-headers", headers, "--body", body, "--answer-version",
             "--inflight", str(inflight), "--warmup", str(options.warmup), "--duration", str(options.duration),
             "--server-pid", str(server.pid)], timeout=180 + options.duration), server)
        result["check"] = check_fanout(result, hash_checked=True)
        result.pop("connections")
        result.update(server="satchel", inflight=inflight, server_rss_kb=server.rss_kb(),
                      frame_example=f'{{"userId":"...","resource":{{"type":"kvStore","id":"{KV_ID}"}},'
                                    f'"data":{body},"version":"..."}}')
        return result
    finally:
        server.kill()
        tmp.cleanup()


def bench_kv(options: argparse.Namespace) -> dict[str, Any]:
    results: dict[str, Any] = {"subscribers": options.res_subs, "rounds": options.res_rounds, "cases": []}
    for inflight in options.res_inflight:
        rounds: list[tuple[dict[str, Any], dict[str, Any]]] = []
        for round_ in range(options.res_rounds):
            label = f", round {round_ + 1} of {options.res_rounds}" if options.res_rounds > 1 else ""
            harness.log(f"resources: kv fan-out, satchel, {options.res_subs} subscribers, {inflight} in flight{label} ...")
            try:
                ours = kv_fanout_case(options, inflight)
                harness.log(f"  {ours['deliveries_per_s']:,.0f} deliveries/s, {ours['writes_per_s']:,.0f} writes/s, "
                      f"p99 {ours['latency_us']['p99'] / 1000:.1f} ms, lost {ours['lost']}, check "
                      f"{'ok' if ours['check']['ok'] else ours['check']['examples']}")
            except Exception as error:
                harness.log(f"  failed: {error}")
                ours = {"error": str(error)}
            harness.log(f"resources: kv fan-out, {PEER} peer, {inflight} in flight{label} ...")
            try:
                theirs = websocket_cases.fanout_case(PEER, options.res_subs, False, inflight, options)
                harness.log(f"  {theirs['deliveries_per_s']:,.0f} deliveries/s, lost {theirs['lost']}")
            except Exception as error:
                harness.log(f"  failed: {error}")
                theirs = {"error": str(error)}
            rounds.append((ours, theirs))
        good_ours = [o for o, _ in rounds if "error" not in o]
        good_theirs = [t for _, t in rounds if "error" not in t]
        ours = max(good_ours, key=lambda r: r["deliveries_per_s"]) if good_ours else rounds[0][0]
        theirs = max(good_theirs, key=lambda r: r["deliveries_per_s"]) if good_theirs else rounds[0][1]
        case: dict[str, Any] = {"inflight": inflight, "satchel": ours, "peer": theirs,
                                "rounds": [{"satchel": o.get("deliveries_per_s"), "peer": t.get("deliveries_per_s"),
                                            "check_ok": o.get("check", {}).get("ok")} for o, t in rounds]}
        if good_ours and good_theirs and theirs["deliveries_per_s"]:
            every_ok = len(good_ours) == len(rounds) and all(o["check"]["ok"] for o in good_ours)
            ratio = ours["deliveries_per_s"] / theirs["deliveries_per_s"]
            target = figures.TARGETS["resources_fanout_1000"]
            case["verdict"] = {"ratio": ratio, "every_round_checked_ok": every_ok,
                               "target": f">= {target:g}x {PEER}, 0 lost", "met": ratio >= target and every_ok}
        results["cases"].append(case)
    return results


# -- 2. cross-protocol -------------------------------------------------------------------


MIXES = {
    "mixed": (1, 2, 3),
    "backpack": (1,),
    "directus core": (2,),
    "resource (collection)": (3,),
}


def cross_case(options: argparse.Namespace, mix: str, inflight: int) -> dict[str, Any]:
    server, tmp = _fresh_server()
    try:
        port = server.port
        cookie, token = _account(port)
        protocol = _headers_token(token)
        kinds = {
            1: _conn_line("1", "/", f"Cookie: {cookie}", "", '"action":"connection"'),
            2: _conn_line("2", "/websocket", "", _frame({"type": "auth", "access_token": token}), '"status":"ok"',
                          _frame({"type": "subscribe", "collection": COLLECTION, "uid": "1"}), '"event":"init"'),
            3: _conn_line("3v", "/realtime", f"Sec-WebSocket-Protocol: {protocol}",
                          _frame({"action": "subscribe", "resource": {"type": "collection", "id": COLLECTION}}),
                          '"resource_not_found"'),
        }
        groups = MIXES[mix]
        conns = Path(tmp.name) / "conns.txt"
        conns.write_text("".join(kinds[groups[i % len(groups)]] for i in range(options.res_subs)))
        body = _frame({"seq": "0000000000", "title": "a record seen by three protocols",
                       "body": "x" * max(0, options.size - 60)})
        result = _finish(run_resgen(
            ["fanout", "--port", str(port), "--conns", str(conns), "--method", "POST",
             "--post-path", f"/items/{COLLECTION}", "--post-headers", f"Authorization: Bearer {token}",
             "--body", body, "--inflight", str(inflight), "--warmup", str(options.warmup),
             "--duration", str(options.duration), "--server-pid", str(server.pid)],
            timeout=180 + options.duration), server)
        result["check"] = check_fanout(result, hash_checked=False)
        result.pop("connections")
        result.update(server="satchel", mix=mix, inflight=inflight, server_rss_kb=server.rss_kb())
        return result
    finally:
        server.kill()
        tmp.cleanup()


def bench_cross(options: argparse.Namespace) -> dict[str, Any]:
    inflight = options.res_inflight[0]
    results: dict[str, Any] = {"subscribers": options.res_subs, "inflight": inflight, "rounds": options.res_rounds,
                               "cases": {}}
    runs: dict[str, list[dict[str, Any]]] = {mix: [] for mix in MIXES}
    for round_ in range(options.res_rounds):
        for mix in MIXES:  # alternating: every mix sees the same machine
            harness.log(f"resources: cross-protocol, {mix}, {options.res_subs} subscribers, {inflight} in flight, "
                  f"round {round_ + 1} of {options.res_rounds} ...")
            try:
                got = cross_case(options, mix, inflight)
                harness.log(f"  {got['deliveries_per_s']:,.0f} deliveries/s, {got['writes_per_s']:,.0f} creates/s, "
                      f"p99 {got['latency_us']['p99'] / 1000:.1f} ms, lost {got['lost']}, check "
                      f"{'ok' if got['check']['ok'] else got['check']['examples']}")
            except Exception as error:
                harness.log(f"  failed: {error}")
                got = {"error": str(error)}
            runs[mix].append(got)
    for mix, rs in runs.items():
        good = [r for r in rs if "error" not in r]
        best = dict(max(good, key=lambda r: r["deliveries_per_s"])) if good else rs[0]
        best["every_round_checked_ok"] = len(good) == len(rs) and all(r["check"]["ok"] for r in good)
        best["round_figures"] = [r.get("deliveries_per_s") for r in rs]
        results["cases"][mix] = best
    singles = [results["cases"][m] for m in MIXES if m != "mixed"]
    mixed = results["cases"]["mixed"]
    if "error" not in mixed and all("error" not in s and s["deliveries_per_s"] for s in singles):
        reference = len(singles) / sum(1 / s["deliveries_per_s"] for s in singles)
        ratio = mixed["deliveries_per_s"] / reference
        ok = mixed["every_round_checked_ok"] and all(s["every_round_checked_ok"] for s in singles)
        target = figures.TARGETS["resources_cross_protocol"]
        results["verdict"] = {
            "reference": "harmonic mean of the three single-protocol figures",
            "reference_deliveries_per_s": reference, "ratio": ratio,
            "ratio_vs_each": {m: mixed["deliveries_per_s"] / results["cases"][m]["deliveries_per_s"]
                              for m in MIXES if m != "mixed"},
            "every_round_checked_ok": ok, "target": f">= {target:g}x the single-protocol figure, 0 lost",
            "met": ratio >= target and ok}
    return results


# -- 3. UDP inbox message -> document subscriber latency -----------------------------------


def _udp_sender(port: int, write_token: str, rate: float, seconds: float, out: dict[str, Any]) -> None:
    """Paced datagrams (open loop), each {"#": seq, "k": seq, "t": wall ns}; answers counted by nonce."""
    from satchel.protocol.inbox.datagrams import encode_request

    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    sock.connect((harness.HOST, port))
    nonces: dict[bytes, int] = {}
    acked: dict[int, str] = {}
    sent_at: dict[int, float] = {}
    answer_ms: list[float] = []
    done = threading.Event()

    def receive() -> None:
        sock.settimeout(0.2)
        while not (done.is_set() and len(acked) >= len(nonces)):
            try:
                answer = sock.recv(64)
            except socket.timeout:
                if done.is_set():
                    break
                continue
            if len(answer) == 30 and answer[:4] == b"SINB":
                seq = nonces.get(answer[6:14])
                if seq is not None and seq not in acked:
                    acked[seq] = chr(answer[5])
                    answer_ms.append((time.monotonic() - sent_at[seq]) * 1000)

    receiver = threading.Thread(target=receive, daemon=True)
    receiver.start()
    count = int(rate * seconds)
    start = time.monotonic() + 0.05
    late = 0
    for seq in range(1, count + 1):
        due = start + (seq - 1) / rate
        delay = due - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        elif delay < -0.002:
            late += 1
        nonce = secrets.token_bytes(8)
        nonces[nonce] = seq
        sent_at[seq] = time.monotonic()
        now_ns = time.time_ns()
        body = b'{"#":%d,"k":%d,"t":%d}' % (seq, seq, now_ns)
        sock.send(encode_request(write_token, f"{seq % DOC_IDS:016x}", body, timestamp_ms=now_ns // 1_000_000,
                                 nonce=nonce))
    elapsed = time.monotonic() - start
    deadline = time.monotonic() + 1.0
    while len(acked) < count and time.monotonic() < deadline:
        time.sleep(0.01)
    done.set()
    receiver.join(1.0)
    sock.close()
    answer_ms.sort()
    pick = (lambda q: answer_ms[min(len(answer_ms) - 1, int(q * len(answer_ms)))] if answer_ms else 0.0)
    out["answer_latency_ms"] = {"p50": pick(0.5), "p99": pick(0.99), "max": answer_ms[-1] if answer_ms else 0.0}
    out.update(sent=count, seconds=elapsed, rate=count / elapsed if elapsed else 0, sent_late_over_2ms=late,
               acked={seq: code for seq, code in acked.items()})


def bench_udp_document(options: argparse.Namespace) -> dict[str, Any]:
    server, tmp = _fresh_server()
    try:
        port = server.port
        read_token, write_token = secrets.token_hex(16), secrets.token_hex(16)
        http = harness.Http(port)
        status, body = http.request("PUT", f"/backend/documents/{read_token}",
                                    {"title": "a sensor inbox", "#messages": {}},
                                    {"Write-Token": write_token, "Derived-From": "0", "Revision": "1"})
        http.close()
        assert status == 200, (status, body)
        subscribe = _frame({"action": "subscribe", "resource": {"type": "document", "id": read_token}})
        conns = Path(tmp.name) / "conns.txt"
        conns.write_text(_conn_line("4", "/realtime", "", subscribe, '"revision"') * options.res_doc_subs)
        count = int(options.res_udp_rate * options.res_udp_seconds)
        process = subprocess.Popen(
            [str(RESGEN), "watch", "--port", str(port), "--conns", str(conns), "--warmup", "0",
             "--duration", str(options.res_udp_seconds + 1.5), "--max-seq", str(count + 2),
             "--server-pid", str(server.pid)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=harness.raise_fd_limit)
        assert process.stdout is not None
        first = process.stdout.readline()
        if first.strip() != "READY":
            rest, err = process.communicate(timeout=30)
            raise RuntimeError(f"resgen watch: {first} {rest[-300:]} {err[-300:]}")
        sender: dict[str, Any] = {}
        cpu0 = server.cpu_seconds()
        _udp_sender(port, write_token, options.res_udp_rate, options.res_udp_seconds, sender)
        server_cpu = (server.cpu_seconds() - cpu0) / max(sender["seconds"], 1e-9)
        rest, err = process.communicate(timeout=60)
        if err.strip():
            harness.log(err.strip())
        lines = [line for line in rest.splitlines() if line.startswith("{")]
        if not lines:
            raise RuntimeError(f"resgen watch printed no result: {err[-300:]}")
        result = json.loads(lines[-1])
        if "error" in result:
            raise RuntimeError(result["error"])
        acked = sender.pop("acked")
        merged = sorted(seq for seq, code in acked.items() if code == "M")
        codes: dict[str, int] = {}
        for code in acked.values():
            codes[code] = codes.get(code, 0) + 1
        want = bytearray(count // 8 + 2)
        for seq in merged:
            want[seq >> 3] |= 1 << (seq & 7)
        missing_total = 0
        wrong = 0
        result["delivered_frames"] = sum(conn["received"] for conn in result["connections"])
        for conn in result["connections"]:
            seen = bytes.fromhex(conn["seen"]).ljust(len(want), b"\0")
            missing = sum((w & ~s & 0xFF).bit_count() for w, s in zip(want, seen))
            missing_total += missing
            wrong += bool(missing or conn["reordered"] or conn["unparsed"] or not conn["open"])
        result.pop("connections")
        result.update(server="satchel", subscribers=options.res_doc_subs, sender=sender, answers=codes,
                      acknowledged=len(merged), unanswered=count - len(acked), lost=missing_total,
                      connections_wrong=wrong, server_cpu=server_cpu, message_ids=DOC_IDS)
        target_ms = figures.TARGETS["resources_udp_p99_ms"]
        result["verdict"] = {
            "target": f"p99 <= {target_ms:g} ms at {options.res_udp_rate:g} messages/s, 0 lost",
            "met": (result["latency_us"]["p99"] <= target_ms * 1000 and missing_total == 0 and wrong == 0
                    and len(merged) == count and sender["rate"] >= 0.95 * options.res_udp_rate)}
        return result
    finally:
        server.kill()
        tmp.cleanup()


# -- all three, and the table ----------------------------------------------------------------


def bench_resources(options: argparse.Namespace) -> dict[str, Any]:
    harness.build_loadgen()
    build_resgen()
    results: dict[str, Any] = {}
    for name, function in (("kv_fanout", bench_kv), ("cross_protocol", bench_cross),
                           ("udp_document", bench_udp_document)):
        try:
            if name == "udp_document":
                harness.log(f"resources: UDP inbox -> {options.res_doc_subs} document subscribers, "
                      f"{options.res_udp_rate:g}/s for {options.res_udp_seconds:g} s ...")
            results[name] = function(options)
            if name == "udp_document":
                got = results[name]
                harness.log(f"  p50 {got['latency_us']['p50'] / 1000:.2f} ms, p99 {got['latency_us']['p99'] / 1000:.2f} ms,"
                      f" lost {got['lost']}, acknowledged {got['acknowledged']} of {got['sender']['sent']}")
        except Exception as error:
            harness.log(f"resources {name} failed: {error}")
            results[name] = {"error": str(error)}
    return results


def table(report: dict[str, Any]) -> list[str]:
    res = report["resources"]
    lines: list[str] = []
    kv = res.get("kv_fanout", {})
    lines += ["## Resource fan-out: 1000 subscribers of one kvStore entry vs websockets `broadcast()`", ""]
    if "error" in kv:
        lines += [f"failed: {kv['error']}", ""]
    else:
        lines.append(f"{kv['subscribers']} resource websockets on `/realtime` (base58 headers: scope + Bearer), "
                     f"subscribed to `{KV_ID}`; one REST writer `PUT /realtime/kv/{{id}}` (Bearer), closed loop "
                     "(`loadgen/resgen.c`). Peer: `websockets` `broadcast()` of 100-byte messages "
                     "(`loadgen/loadgen.c`). Latency: write sent -> update read. "
                     f"{kv['rounds']} round(s) per setting, alternating, the best shown; judged at "
                     f"{kv['cases'][0]['inflight'] if kv['cases'] else '-'} in flight.")
        lines.append("")
        lines.append("| in flight | server | deliveries/s | writes (messages)/s | p50 | p99 | write answer p50 / p99 "
                     "| lost | generator CPU | server CPU | other processes |")
        lines.append("|---|---|---|---|---|---|---|---|---|---|---|")
        for case in kv["cases"]:
            o, t = case["satchel"], case["peer"]
            if "error" in o:
                lines.append(f"| {case['inflight']} | satchel | failed: {o['error'][:80]} | | | | | | | | |")
            else:
                lines.append(
                    f"| {case['inflight']} | satchel | {figures.fmt_rate(o['deliveries_per_s'])} | {o['writes_per_s']:,.0f} "
                    f"| {figures.fmt_us(o['latency_us']['p50'])} | {figures.fmt_us(o['latency_us']['p99'])} "
                    f"| {figures.fmt_us(o['write_latency_us']['p50'])} / {figures.fmt_us(o['write_latency_us']['p99'])} "
                    f"| {o['lost']} | {o['loadgen_cpu']:.0%} (resgen) | {o['server_cpu']:.0%} | {o['other_cpu']:.0%} |")
            if "error" in t:
                lines.append(f"| {case['inflight']} | {PEER} | failed: {t['error'][:80]} | | | | | | | | |")
            else:
                lines.append(
                    f"| {case['inflight']} | {PEER} `broadcast()` | {figures.fmt_rate(t['deliveries_per_s'])} "
                    f"| {t['messages_per_s']:,.0f} | {figures.fmt_us(t['latency_us']['p50'])} "
                    f"| {figures.fmt_us(t['latency_us']['p99'])} | - | {t['lost']} | {t['loadgen_cpu']:.0%} (loadgen) "
                    f"| {t['server_cpu']:.0%} | - |")
        lines.append("")
        lines.append("| in flight | Satchel / peer | lost | every subscriber got every version exactly once "
                     "| ... in increasing version order | target | verdict |")
        lines.append("|---|---|---|---|---|---|---|")
        for n, case in enumerate(kv["cases"]):
            v = case.get("verdict")
            if not v:
                continue
            check = case["satchel"]["check"]
            once = (f"yes ({check['writes_checked']:,} writes x {case['satchel']['subscribers']}; the versions the "
                    "REST answers gave)" if check["every_version_once"] else f"NO: {'; '.join(check['examples'])}")
            order = ("yes" if not check["versions_not_increasing"] else
                     f"NO: {check['versions_not_increasing']:,} of {check['writes_checked'] * case['satchel']['subscribers']:,} "
                     "updates arrived after a higher version")
            if len(case["rounds"]) > 1:
                order += "; every round ok" if v["every_round_checked_ok"] else "; NOT every round ok"
            verdict = figures.verdict_label(v["met"]) if n == 0 else f"({figures.verdict_label(v['met']).lower()})"
            lines.append(f"| {case['inflight']} | {v['ratio']:.2f}x | {case['satchel']['lost']} | {once} | {order} "
                         f"| {v['target']} | {verdict} |")
        lines.append("")
    cross = res.get("cross_protocol", {})
    lines += ["## Cross-protocol: one REST create reaching Backpack, Directus and resource subscribers", ""]
    if "error" in cross:
        lines += [f"failed: {cross['error']}", ""]
    else:
        lines.append(f"{cross['subscribers']} subscribers, one writer `POST /items/{COLLECTION}` (Directus REST, "
                     f"Bearer), {cross['inflight']} in flight, closed loop. Mixed: a third each of Backpack "
                     "websockets (session cookie), Directus core realtime (auth, subscribe) and resource websockets "
                     f"(`collection` `{COLLECTION}`); then all {cross['subscribers']} in each one protocol. "
                     f"{cross['rounds']} round(s), alternating, the best of each shown.")
        lines.append("")
        lines.append("| subscribers | deliveries/s | creates/s | p50 | p99 | create answer p50 / p99 | lost "
                     "| every subscriber got every create once | resgen CPU | server CPU | other processes |")
        lines.append("|---|---|---|---|---|---|---|---|---|---|---|")
        for mix, c in cross["cases"].items():
            if "error" in c:
                lines.append(f"| {mix} | failed: {c['error'][:80]} | | | | | | | | | |")
                continue
            label = "mixed (1/3 each)" if mix == "mixed" else f"all {mix}"
            lines.append(
                f"| {label} | {figures.fmt_rate(c['deliveries_per_s'])} | {c['writes_per_s']:,.0f} "
                f"| {figures.fmt_us(c['latency_us']['p50'])} | {figures.fmt_us(c['latency_us']['p99'])} "
                f"| {figures.fmt_us(c['write_latency_us']['p50'])} / {figures.fmt_us(c['write_latency_us']['p99'])} "
                f"| {c['lost']} | {'yes' if c['every_round_checked_ok'] else 'NO: ' + '; '.join(c['check']['examples'])} "
                f"| {c['loadgen_cpu']:.0%} | {c['server_cpu']:.0%} | {c['other_cpu']:.0%} |")
        lines.append("")
        v = cross.get("verdict")
        if v:
            each = ", ".join(f"{r:.2f}x all-{m}" for m, r in v["ratio_vs_each"].items())
            lines.append("| mixed / reference | reference | vs each single protocol | target | verdict |")
            lines.append("|---|---|---|---|---|")
            lines.append(f"| **{v['ratio']:.2f}x** | {figures.fmt_rate(v['reference_deliveries_per_s'])} ({v['reference']}) "
                         f"| {each} | {v['target']} | {figures.verdict_label(v['met'])} |")
            lines.append("")
    udp = res.get("udp_document", {})
    lines += ["## UDP inbox message -> document subscriber latency", ""]
    if "error" in udp:
        lines += [f"failed: {udp['error']}", ""]
    else:
        s = udp["sender"]
        lat = udp["latency_us"]
        lines.append(f"{udp['subscribers']} resource websockets subscribed to one inbox document (`document`, read "
                     f"token, no account); {s['sent']:,} signed datagrams at {s['rate']:,.0f}/s (open loop, "
                     f"{udp['message_ids']} message ids in turn), each carrying its send time; latency = "
                     "subscriber read - send (one clock). No peer speaks this protocol.")
        lines.append("")
        ans = s["answer_latency_ms"]
        lines.append("| messages/s | subscribers | p50 | p99 | max | `M` answer p50 / p99 (sender) | acknowledged `M` "
                     "| lost (at any subscriber) | revisions in order | server CPU | resgen CPU | other processes "
                     "| target | verdict |")
        lines.append("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
        lines.append(f"| {s['rate']:,.0f} | {udp['subscribers']} | {figures.fmt_us(lat['p50'])} | {figures.fmt_us(lat['p99'])} "
                     f"| {figures.fmt_us(lat['max'])} | {figures.fmt_us(ans['p50'] * 1000)} / {figures.fmt_us(ans['p99'] * 1000)} | {udp['acknowledged']:,} of {s['sent']:,} | {udp['lost']} "
                     f"| {'yes' if udp['reordered'] == 0 else 'NO: %d of %d frames after a higher revision' % (udp['reordered'], udp['delivered_frames'])} | {udp['server_cpu']:.0%} "
                     f"| {udp['loadgen_cpu']:.0%} | {udp['other_cpu']:.0%} | {udp['verdict']['target']} | {figures.verdict_label(udp['verdict']['met'])} |")
        lines.append("")
    return lines


if __name__ == "__main__":
    import run  # benches/run.py: the flags, the run, the results file and table

    sys.exit(run.main(["--only", "resources", *sys.argv[1:]]))
