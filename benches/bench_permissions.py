"""Permissions benches (issue 11, "Figures to reach"): what the one rule set costs.

    python benches/run.py --only permissions           # both cases (~3 minutes)
    python benches/run.py --only permissions --quick   # shorter runs
    python benches/bench_permissions.py [run.py flags]  # the same

1. **Directus subscription fan-out**: the real ``satchel serve --rules FILE``;
   ``--perm-subs`` (1000) Directus core realtime subscribers on
   ``/websocket`` (the ``@directus/sdk`` handshake: ``{"type":"auth",
   "access_token"}`` first, then ``{"type":"subscribe","collection":
   "articles","uid":"1"}``), split evenly over four roles whose read rules
   differ (everything; a filter on ``status``; an ``_and`` of ``_in`` and
   ``_gte`` on two other fields; every item but only four fields). One REST
   client (the admin's Bearer) creates items with ``POST /items/articles``,
   closed loop, ``--perm-inflight`` (8) creates outstanding. The load
   generator is C (``loadgen/dirgen.c``); it reports, per connection, the
   items it received and the field names of each, and this script checks
   that every subscriber received exactly the items its role admits, each
   once, with exactly the fields its role may read. The peer is the
   ``websockets`` library's ``broadcast()`` (issue #3's peer,
   ``peers/websockets_server.py``) measured by ``websocket_cases.fanout_case`` with as
   many subscribers, in the same run. Target: Satchel's deliveries/s >= 3x
   the peer's, 0 lost.
2. **Rule-check cost on REST get-by-id**: two ``satchel serve`` at once, one
   with the default rules, one whose role for the user (``auditor``) reads
   ``benchitems`` through a filter and a field list, so every read is
   checked against the item and redacted; ``wrk`` alternates between them
   (``--perm-rounds`` rounds each, the best round of each shown) on Backpack
   ``GET /benchitems/{id}`` (API key + session) and on Directus ``GET
   /items/benchitems/{id}`` (Bearer). Target: rules add <= 15% to the
   get-by-id latency (mean latency, which at a fixed number of connections
   is connections / throughput).

Every figure also goes to ``benches/results/latest.json`` (``permissions``).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from collections.abc import Callable
from typing import Any

import figures  # benches/figures.py: the targets, the table's number formats
import harness  # benches/harness.py: servers, HTTP clients, wrk, the load generator
import websocket_cases  # benches/websocket_cases.py: the fan-out peer case

HERE = Path(__file__).resolve().parent
DIRGEN_SOURCE = HERE / "loadgen" / "dirgen.c"
DIRGEN = harness.RESULTS / "bin" / "dirgen"

ADMIN_EMAIL = "admin@bench.example.com"
COLLECTION = "articles"
SUBSCRIBE = json.dumps({"type": "subscribe", "collection": COLLECTION, "uid": "1"}, separators=(",", ":"))
PEER = "websockets"

# -- the four roles of the fan-out and what each may read ----------------------------

CATEGORIES = ("news", "sport", "tech")
PHASES = 12  # create number seq has the fields of phase seq % 12


def phase_body(phase: int) -> dict[str, Any]:
    """The fields of a create of ``phase`` (``seq`` is written in by dirgen)."""
    return {
        "seq": "0000000000",
        "title": f"Article of phase {phase:02d}",
        "status": "published" if phase % 2 == 0 else "draft",
        "category": CATEGORIES[phase % 3],
        "priority": phase % 4,
        "body": "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor.",
        "secret": f"s3cr3t-{phase:02d}",
    }


#: name -> (its read rule in the rule file, which items it admits, the fields it may read: None = all)
ROLES: dict[str, tuple[dict[str, Any], Callable[[dict[str, Any]], bool], tuple[str, ...] | None]] = {
    "everything": ({}, lambda item: True, None),
    "published": ({"filter": {"status": {"_eq": "published"}}}, lambda item: item["status"] == "published", None),
    "picked": ({"filter": {"_and": [{"category": {"_in": ["sport", "tech"]}}, {"priority": {"_gte": 2}}]}},
               lambda item: item["category"] in ("sport", "tech") and item["priority"] >= 2, None),
    "summary": ({"fields": ["seq", "title", "status"]}, lambda item: True, ("seq", "title", "status")),
}


def fanout_rules() -> dict[str, Any]:
    return {"version": 1, "roles": {
        name: {"rules": [{"collection": COLLECTION, "action": "read", **rule}]} for name, (rule, _, _) in ROLES.items()
    }}


#: the get-by-id case: the user's role reads benchitems through a filter and a field list
AUDITOR_RULES = {"version": 1, "roles": {"auditor": {"rules": [
    {"collection": "benchitems", "action": "read",
     "filter": {"_and": [{"n": {"_gte": 0}}, {"done": {"_eq": False}}]}, "fields": ["title", "n", "done"]},
    {"collection": "benchitems", "action": "create"},
]}}}
GET_RECORD = {"title": "a record of typical size", "n": 42, "done": False, "secret": "not for auditors"}
HIDDEN_RECORD = {"title": "an item the filter denies", "n": 1, "done": True}


# -- helpers --------------------------------------------------------------------------------


def build_dirgen() -> Path:
    DIRGEN.parent.mkdir(parents=True, exist_ok=True)
    newest = max(DIRGEN_SOURCE.stat().st_mtime, *(h.stat().st_mtime for h in DIRGEN_SOURCE.parent.glob("*.h")))
    if not DIRGEN.exists() or DIRGEN.stat().st_mtime < newest:
        compiler = shutil.which("gcc") or shutil.which("cc")
        if compiler is None:
            raise SystemExit("benches need a C compiler (gcc) for the load generator")
        subprocess.run([compiler, "-O2", "-o", str(DIRGEN), str(DIRGEN_SOURCE)], check=True)
    return DIRGEN


def make_admin(data_dir: Path) -> None:
    """``satchel admin create`` before the server starts, as an operator does."""
    password_file = data_dir / "admin-password"
    password_file.write_text(harness.PASSWORD + "\n")
    subprocess.run([sys.executable, "-m", "satchel.transports", "admin", "create", ADMIN_EMAIL,
                    "--password-file", str(password_file), "--data-dir", str(data_dir)],
                   check=True, capture_output=True, text=True, timeout=60)


def start(data_dir: Path, rules: dict[str, Any] | None) -> harness.Server:
    extra: list[str] = []
    if rules is not None:
        path = data_dir / "rules.json"
        path.write_text(json.dumps(rules))
        extra = ["--rules", str(path)]
    return harness.start_satchel(data_dir, extra)


def call(http: harness.Http, method: str, path: str, body: Any = None, *, bearer: str | None = None,
         expect: tuple[int, ...] = (200,)) -> Any:
    headers = {"Authorization": f"Bearer {bearer}"} if bearer else None
    status, answer = http.request(method, path, body, headers)
    if status not in expect:
        raise RuntimeError(f"{method} {path}: {status} {str(answer)[:200]}")
    return answer


def directus_login(port: int, email: str) -> str:
    http = harness.Http(port)
    try:
        answer = call(http, "POST", "/auth/login", {"email": email, "password": harness.PASSWORD, "mode": "json"})
        return answer["data"]["access_token"]
    finally:
        http.close()


def register(port: int, email: str) -> str:
    """A Backpack account (``POST /register``): its id."""
    http = harness.Http(port, {"Authorization": f"key {harness.API_KEY}"})
    try:
        return call(http, "POST", "/register", {"email": email, "password": harness.PASSWORD})["id"]
    finally:
        http.close()


def set_role(port: int, admin: str, user_id: str, role: str) -> None:
    http = harness.Http(port)
    try:
        answer = call(http, "PUT", f"/_/api/users/{user_id}/role", {"role": role}, bearer=admin)
        assert answer["data"]["role"] == role, answer
    finally:
        http.close()


def parallel(function: Callable[..., Any], calls: list[tuple[Any, ...]], workers: int = 4) -> list[Any]:
    # Passwords are hashed with argon2id (~150 ms each, off the server's event
    # loop): a few at once keep both cores busy.
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        return list(pool.map(lambda args: function(*args), calls))


# -- 1. Directus subscription fan-out ------------------------------------------------------


def run_dirgen(args: list[str], timeout: float) -> dict[str, Any]:
    result = subprocess.run([str(DIRGEN), *args], capture_output=True, text=True, timeout=timeout, check=False,
                            preexec_fn=harness.raise_fd_limit)
    if result.stderr.strip():
        harness.log(result.stderr.strip())
    lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
    if not lines:
        raise RuntimeError(f"dirgen printed no result (exit {result.returncode}): {result.stderr[-500:]}")
    return json.loads(lines[-1])


def check_deliveries(result: dict[str, Any], role_names: list[str], full_fields: frozenset[str]) -> dict[str, Any]:
    """Did every subscriber receive exactly the items (and only the fields) its role admits?

    From what dirgen saw: per connection, the bitmap of the creates whose
    event it received and the field names of those events."""
    sent = result["sent"]
    bodies = [phase_body(phase) for phase in range(PHASES)]
    expected_bits: dict[int, bytes] = {}
    expected_fields: dict[int, frozenset[str]] = {}
    for index, name in enumerate(role_names):
        _, admits, fields = ROLES[name]
        bits = bytearray(sent // 8 + 1)
        for seq in range(1, sent + 1):
            if admits(bodies[seq % PHASES]):
                bits[seq >> 3] |= 1 << (seq & 7)
        expected_bits[index] = bytes(bits)
        expected_fields[index] = full_fields if fields is None else frozenset(("id", *fields))
    signatures = [frozenset(sig.split(",")) if sig else frozenset() for sig in result["signatures"]]
    missing = extra = wrong_fields = duplicates = closed = 0
    bad_connections = 0
    examples: list[str] = []
    by_role: dict[str, dict[str, int]] = {name: {"connections": 0, "received": 0} for name in role_names}
    for n, conn in enumerate(result["connections"]):
        role = conn["role"]
        seen = bytes.fromhex(conn["seen"])
        want = expected_bits[role]
        miss = sum((w & ~s & 0xFF).bit_count() for w, s in zip(want, seen)) if seen != want else 0
        more = sum((s & ~w & 0xFF).bit_count() for w, s in zip(want, seen)) if seen != want else 0
        shapes = [signatures[i] for i in range(len(signatures)) if conn["signatures"] >> i & 1]
        wrong = [shape for shape in shapes if shape != expected_fields[role]]
        missing += miss
        extra += more
        wrong_fields += len(wrong)
        duplicates += conn["duplicates"]
        closed += not conn["open"]
        if miss or more or wrong or conn["duplicates"] or conn["unparsed"] or not conn["open"]:
            bad_connections += 1
            if len(examples) < 3:
                examples.append(f"connection {n} ({role_names[role]}): {miss} missing, {more} not admitted, "
                                f"fields {sorted(wrong[0]) if wrong else 'ok'}, {conn['duplicates']} duplicates")
        by_role[role_names[role]]["connections"] += 1
        by_role[role_names[role]]["received"] += conn["received"]
    for name in role_names:
        index = role_names.index(name)
        by_role[name]["admitted_creates"] = sum(b.bit_count() for b in expected_bits[index])
        by_role[name]["fields"] = sorted(expected_fields[index])
    ok = (not bad_connections and result["non_2xx"] == 0 and result["answered_2xx"] == sent and not result["unparsed"]
          and not result["oversize"] and not result["closed_by_server"] and not result["stalled"] and result["lost"] == 0)
    return {"ok": ok, "creates_checked": sent, "connections_wrong": bad_connections, "missing": missing,
            "not_admitted": extra, "wrong_field_sets": wrong_fields, "duplicates": duplicates,
            "closed": closed, "examples": examples, "by_role": by_role}


def satchel_directus_fanout(options: argparse.Namespace, inflight: int) -> dict[str, Any]:
    tmp = tempfile.TemporaryDirectory(prefix="satchel-bench-")
    data_dir = Path(tmp.name)
    try:
        make_admin(data_dir)
        server = start(data_dir, fanout_rules())
        try:
            t0 = time.monotonic()
            port = server.port
            role_names = list(ROLES)
            per_role = options.perm_users_per_role
            emails = [(name, f"{name}-{k}@bench.example.com") for name in role_names for k in range(per_role)]
            ids = parallel(register, [(port, email) for _, email in emails])
            admin = directus_login(port, ADMIN_EMAIL)
            parallel(set_role, [(port, admin, user_id, name) for (name, _), user_id in zip(emails, ids)])
            tokens = parallel(directus_login, [(port, email) for _, email in emails])
            token_of = {name: [] for name in role_names}  # type: dict[str, list[str]]
            for (name, _), token in zip(emails, tokens):
                token_of[name].append(token)
            # What "every field" is: an item created in another collection, as the admin reads it back.
            http = harness.Http(port)
            probe = call(http, "POST", "/items/articles_probe", phase_body(0), bearer=admin)["data"]
            http.close()
            full_fields = frozenset(probe)
            setup_s = time.monotonic() - t0
            # Connection i is in role i % 4, signed in as one of that role's users (a user's tabs).
            conns = data_dir / "bench-conns.txt"
            conns.write_text("".join(
                f"{i % len(role_names)} {token_of[role_names[i % len(role_names)]][(i // len(role_names)) % per_role]}\n"
                for i in range(options.perm_subs)))
            bodies = data_dir / "bench-bodies.txt"
            bodies.write_text("".join(json.dumps(phase_body(phase), separators=(",", ":")) + "\n"
                                      for phase in range(PHASES)))
            masks = []
            for index, name in enumerate(role_names):
                admits = ROLES[name][1]
                masks += ["--mask", f"{index}:" + "".join("1" if admits(phase_body(p)) else "0" for p in range(PHASES))]
            harness.log(f"  setup: {len(emails)} users in {len(role_names)} roles, {setup_s:.1f} s")
            result = run_dirgen(
                ["fanout", "--port", str(port), "--conns", str(conns), "--bodies", str(bodies), *masks,
                 "--subscribe", SUBSCRIBE, "--post-path", f"/items/{COLLECTION}", "--post-auth", f"Bearer {admin}",
                 "--inflight", str(inflight), "--warmup", str(options.warmup),
                 "--duration", str(options.duration), "--server-pid", str(server.pid)],
                timeout=180 + options.duration,
            )
            rss = server.rss_kb() if server.process.poll() is None else 0
        finally:
            server.kill()
        if "error" in result:
            raise RuntimeError(f"{result['error']}: {result.get('ready')} of {result.get('wanted')} connections ready")
        result["check"] = check_deliveries(result, role_names, full_fields)
        result.pop("connections")
        result.update(server="satchel", inflight=inflight, protocol="directus core realtime (handshake auth, then subscribe)",
                      users=len(emails), users_per_role=per_role, roles=role_names, server_rss_kb=rss,
                      setup_users_s=round(setup_s, 2),
                      receivers_per_create=sum(
                          (options.perm_subs // len(role_names)) * sum(ROLES[name][1](phase_body(p)) for p in range(PHASES))
                          for name in role_names) / PHASES)
        return result
    finally:
        tmp.cleanup()


def _machine_busy_seconds() -> float:
    """Busy CPU time of the whole machine (every process), from /proc/stat."""
    with open("/proc/stat") as stat:
        fields = [int(value) for value in stat.readline().split()[1:9]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def _own_cpu_seconds() -> float:
    """CPU time of this process and of its children that have ended (servers, generators)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _with_other_cpu(case: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Run a case; add the CPU every other process on the machine used meanwhile
    (share of one core, over the whole case: setup included)."""
    busy0, own0, t0 = _machine_busy_seconds(), _own_cpu_seconds(), time.monotonic()
    result = case()
    busy1, own1, t1 = _machine_busy_seconds(), _own_cpu_seconds(), time.monotonic()
    result["other_cpu_whole_case"] = max(0.0, ((busy1 - busy0) - (own1 - own0)) / (t1 - t0))
    return result


def _fanout_round(options: argparse.Namespace, inflight: int, label: str) -> tuple[dict[str, Any], dict[str, Any]]:
    harness.log(f"permissions: Directus fan-out, satchel, {options.perm_subs} subscribers in 4 roles, "
          f"{inflight} creates in flight{label} ...")
    try:
        ours = _with_other_cpu(lambda: satchel_directus_fanout(options, inflight))
        check = ours["check"]
        harness.log(f"  {ours['deliveries_per_s']:,.0f} deliveries/s ({ours['creates_per_s']:,.0f} creates/s), "
              f"p50 {ours['latency_us']['p50']:.0f} us, p99 {ours['latency_us']['p99']:.0f} us, lost {ours['lost']}, "
              f"dirgen cpu {ours['loadgen_cpu']:.0%}, server cpu {ours['server_cpu']:.0%}, other processes "
              f"{ours['other_cpu_whole_case']:.0%}, check {'ok' if check['ok'] else 'FAILED: ' + '; '.join(check['examples'])}")
    except Exception as error:
        harness.log(f"  failed: {error}")
        ours = {"server": "satchel", "error": str(error)}
    harness.log(f"permissions: fan-out peer {PEER} broadcast(), {options.perm_subs} subscribers, {inflight} in flight{label} ...")
    try:
        theirs = _with_other_cpu(lambda: websocket_cases.fanout_case(PEER, options.perm_subs, False, inflight, options))
        websocket_cases.log_fanout_result(theirs)
        harness.log(f"  other processes {theirs['other_cpu_whole_case']:.0%}")
    except Exception as error:
        harness.log(f"  failed: {error}")
        theirs = {"server": PEER, "error": str(error)}
    return ours, theirs


_ROUND_KEYS = ("deliveries_per_s", "creates_per_s", "messages_per_s", "latency_us", "lost", "server_cpu", "loadgen_cpu",
               "other_cpu_whole_case", "error")


def bench_fanout(options: argparse.Namespace) -> dict[str, Any]:
    """Each in-flight setting ``--perm-fanout-rounds`` times, Satchel and the
    peer alternating; the best round of each is shown (the machine is shared:
    other work only ever slows a round down), every round's check counts."""
    results: dict[str, Any] = {"subscribers": options.perm_subs, "rounds": options.perm_fanout_rounds, "cases": []}
    for inflight in options.perm_inflight:
        rounds: list[tuple[dict[str, Any], dict[str, Any]]] = []
        for n in range(options.perm_fanout_rounds):
            label = f" (round {n + 1} of {options.perm_fanout_rounds})" if options.perm_fanout_rounds > 1 else ""
            rounds.append(_fanout_round(options, inflight, label))
        good_ours = [ours for ours, _ in rounds if "error" not in ours]
        good_theirs = [theirs for _, theirs in rounds if "error" not in theirs]
        ours = dict(max(good_ours, key=lambda r: r["deliveries_per_s"])) if good_ours else rounds[0][0]
        theirs = dict(max(good_theirs, key=lambda r: r["deliveries_per_s"])) if good_theirs else rounds[0][1]
        case: dict[str, Any] = {"inflight": inflight, "satchel": ours, "peer": theirs}
        if len(rounds) > 1:
            case["rounds"] = [{"satchel": {key: o.get(key) for key in _ROUND_KEYS if key in o} | (
                {"check_ok": o["check"]["ok"]} if "check" in o else {}),
                               "peer": {key: t.get(key) for key in _ROUND_KEYS if key in t}} for o, t in rounds]
        if good_ours and good_theirs and theirs["deliveries_per_s"]:
            every_round_ok = len(good_ours) == len(rounds) and all(
                r["check"]["ok"] and r["lost"] == 0 for r in good_ours)
            ratio = ours["deliveries_per_s"] / theirs["deliveries_per_s"]
            target = figures.TARGETS["permissions_fanout_1000"]
            case["verdict"] = {"ratio": ratio, "every_round_checked_ok": every_round_ok,
                               "target": f">= {target:g}x {PEER}, 0 lost, every delivery as the rules say",
                               "met": ratio >= target and every_round_ok}
        results["cases"].append(case)
    return results


# -- 2. rule-check cost on REST get-by-id ---------------------------------------------------


def rules_case_setup(variant: str, data_dir: Path) -> tuple[harness.Server, dict[str, dict[str, str]], dict[str, Any]]:
    """Start a server for the get-by-id case: (server, wrk env per call, what was checked)."""
    make_admin(data_dir)
    server = start(data_dir, AUDITOR_RULES if variant == "rules" else None)
    try:
        port = server.port
        email = f"{variant}-reader@bench.example.com"
        user_id = register(port, email)
        if variant == "rules":
            set_role(port, directus_login(port, ADMIN_EMAIL), user_id, "auditor")
        client = harness.satchel_login(port, email)
        status, record = client.request("POST", "/benchitems", GET_RECORD)
        assert status == 200, (status, record)
        status, hidden = client.request("POST", "/benchitems", HIDDEN_RECORD)
        assert status == 200, (status, hidden)
        checked: dict[str, Any] = {}
        status, got = client.request("GET", f"/benchitems/{record['_id']}")
        assert status == 200, (status, got)
        checked["backpack_fields"] = sorted(got)
        status, _ = client.request("GET", f"/benchitems/{hidden['_id']}")
        checked["backpack_filtered_item_status"] = status
        token = directus_login(port, email)
        http = harness.Http(port)
        got = call(http, "GET", f"/items/benchitems/{record['_id']}", bearer=token)["data"]
        checked["directus_fields"] = sorted(got)
        status, _ = http.request("GET", f"/items/benchitems/{hidden['_id']}", headers={"Authorization": f"Bearer {token}"})
        checked["directus_filtered_item_status"] = status
        http.close()
        if variant == "rules":
            # the rules are in force: no hidden field, and the filter denies the other item
            assert "secret" not in checked["backpack_fields"] and "secret" not in checked["directus_fields"], checked
            assert checked["backpack_filtered_item_status"] != 200 and checked["directus_filtered_item_status"] != 200, checked
        else:
            assert "secret" in checked["backpack_fields"] and checked["backpack_filtered_item_status"] == 200, checked
        envs = {
            "backpack": {"BENCH_AUTH": f"key {harness.API_KEY}", "BENCH_COOKIE": client.cookie or "",
                         "BENCH_GET_PATH": f"/benchitems/{record['_id']}"},
            "directus": {"BENCH_AUTH": f"Bearer {token}", "BENCH_COOKIE": "",
                         "BENCH_GET_PATH": f"/items/benchitems/{record['_id']}"},
        }
        client.close()
        return server, envs, checked
    except BaseException:
        server.kill()
        raise


CALLS = {"backpack": "Backpack GET /benchitems/{id}", "directus": "Directus GET /items/benchitems/{id}"}


def bench_rules_cost(options: argparse.Namespace) -> dict[str, Any]:
    wrk_bin = harness.ensure_wrk()
    if wrk_bin is None:
        return {"skipped": "wrk is not installed"}
    results: dict[str, Any] = {"connections": options.rest_connections, "seconds": options.perm_rest_seconds,
                               "rounds": options.perm_rounds, "calls": {}}
    tmps = {variant: tempfile.TemporaryDirectory(prefix="satchel-bench-") for variant in ("default", "rules")}
    servers: dict[str, harness.Server] = {}
    try:
        envs: dict[str, dict[str, dict[str, str]]] = {}
        for variant in ("default", "rules"):
            servers[variant], envs[variant], results[f"checked_{variant}"] = rules_case_setup(
                variant, Path(tmps[variant].name))
        for call_name in CALLS:
            runs: dict[str, list[dict[str, Any]]] = {"default": [], "rules": []}
            for round_ in range(options.perm_rounds):
                for variant in ("default", "rules"):  # alternating: both see the same machine
                    harness.log(f"permissions: {CALLS[call_name]}, {variant}, round {round_ + 1} of {options.perm_rounds} ...")
                    server = servers[variant]
                    cpu0, t0 = server.cpu_seconds(), time.monotonic()
                    got = harness.wrk(wrk_bin, f"http://{harness.HOST}:{server.port}", harness.WRK_SCRIPTS / "get.lua", options,
                                envs[variant][call_name], seconds=options.perm_rest_seconds)
                    got["server_cpu"] = (server.cpu_seconds() - cpu0) / (time.monotonic() - t0)
                    got["mean_latency_us"] = options.rest_connections / got["requests_per_s"] * 1e6
                    harness.log(f"  {got['requests_per_s']:,.0f}/s, p50 {got['latency_us'].get('p50', 0):.0f} us, "
                          f"p99 {got['latency_us'].get('p99', 0):.0f} us, non-2xx {got['non_2xx']}")
                    runs[variant].append(got)
            best = {variant: max(rs, key=lambda r: r["requests_per_s"]) for variant, rs in runs.items()}
            overhead = best["rules"]["mean_latency_us"] / best["default"]["mean_latency_us"] - 1
            p50 = {v: best[v]["latency_us"].get("p50", 0) for v in best}
            target = figures.TARGETS["permissions_rule_overhead"]
            results["calls"][call_name] = {
                "default": best["default"], "rules": best["rules"], "rounds": runs,
                "overhead": overhead, "p50_overhead": p50["rules"] / p50["default"] - 1 if p50["default"] else None,
                "target": f"<= {target:.0%} added latency",
                "met": overhead <= target and not best["rules"]["non_2xx"] and not best["default"]["non_2xx"],
            }
        return results
    finally:
        for server in servers.values():
            server.kill()
        for tmp in tmps.values():
            tmp.cleanup()


# -- both, and the table -------------------------------------------------------------------


def bench_permissions(options: argparse.Namespace) -> dict[str, Any]:
    harness.build_loadgen()
    build_dirgen()
    results: dict[str, Any] = {}
    try:
        results["fanout"] = bench_fanout(options)
    except Exception as error:
        harness.log(f"permissions fan-out failed: {error}")
        results["fanout"] = {"error": str(error)}
    try:
        results["rules_cost"] = bench_rules_cost(options)
    except Exception as error:
        harness.log(f"permissions get-by-id failed: {error}")
        results["rules_cost"] = {"error": str(error)}
    return results


def _verdict_text(met: bool, judged: bool) -> str:
    return figures.verdict_label(met) if judged else f"({figures.verdict_label(met).lower()})"


def _per_cpu(result: dict[str, Any]) -> str:
    cpu = result.get("server_cpu") or 0
    return figures.fmt_rate(result["deliveries_per_s"] / cpu) if cpu else "-"


def table(report: dict[str, Any]) -> list[str]:
    perm = report["permissions"]
    lines: list[str] = []
    fanout = perm.get("fanout", {})
    lines.append("## Directus subscription fan-out under four roles' read rules vs websockets `broadcast()`")
    lines.append("")
    if "error" in fanout:
        lines += [f"failed: {fanout['error']}", ""]
    else:
        cases = fanout.get("cases", [])
        lines.append(f"{fanout['subscribers']} subscribers. Satchel: Directus core realtime on `/websocket` (auth "
                     "handshake, then subscribe with uid \"1\" as `@directus/sdk` does), a quarter in each of four "
                     "roles (all items; `status` = published; category in sport/tech and priority >= 2; all items "
                     "but only `seq`, `title`, `status` and `id`), one REST client creating items (`POST "
                     f"/items/{COLLECTION}`, the admin's Bearer), closed loop (`loadgen/dirgen.c`). Peer: "
                     "`websockets` `broadcast()` of 100-byte messages to every subscriber (`loadgen/loadgen.c`). "
                     "Latency: create sent -> event read (peer: message sent -> read). "
                     f"{fanout.get('rounds', 1)} round(s) per setting, Satchel and the peer alternating, the best "
                     "round of each shown. The targets are judged at "
                     f"{cases[0]['inflight'] if cases else '-'} in flight (issue #3's setting); other rows for "
                     "reference.")
        lines.append("")
        lines.append("| in flight | server | deliveries/s | creates (messages)/s | receivers each | p50 | p99 "
                     "| create answer p50 / p99 | lost | generator CPU | server CPU | deliveries per server CPU-second "
                     "| other processes |")
        lines.append("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
        for case in cases:
            ours, theirs = case.get("satchel", {}), case.get("peer", {})
            if "error" in ours:
                lines.append(f"| {case['inflight']} | satchel | failed: {ours['error'][:80]} |  |  |  |  |  |  |  |  |  |  |")
            else:
                lat, ack = ours["latency_us"], ours["create_latency_us"]
                lines.append(
                    f"| {case['inflight']} | satchel (rules) | {figures.fmt_rate(ours['deliveries_per_s'])} "
                    f"| {ours['creates_per_s']:,.0f} | {ours['receivers_per_create']:.0f} of {ours['subscribers']} "
                    f"| {figures.fmt_us(lat['p50'])} | {figures.fmt_us(lat['p99'])} "
                    f"| {figures.fmt_us(ack['p50'])} / {figures.fmt_us(ack['p99'])} | {ours['lost']} "
                    f"| {ours['loadgen_cpu']:.0%} (dirgen) | {ours['server_cpu']:.0%} | {_per_cpu(ours)} "
                    f"| {ours.get('other_cpu_whole_case', 0):.0%} |")
            if "error" in theirs:
                lines.append(f"| {case['inflight']} | {PEER} | failed: {theirs['error'][:80]} |  |  |  |  |  |  |  |  |  |  |")
            else:
                lat = theirs["latency_us"]
                lines.append(
                    f"| {case['inflight']} | {PEER} `broadcast()` | {figures.fmt_rate(theirs['deliveries_per_s'])} "
                    f"| {theirs['messages_per_s']:,.0f} | {theirs['receivers_per_message']} of {theirs['subscribers']} "
                    f"| {figures.fmt_us(lat['p50'])} | {figures.fmt_us(lat['p99'])} | - | {theirs['lost']} "
                    f"| {theirs['loadgen_cpu']:.0%} (loadgen) | {theirs['server_cpu']:.0%} | {_per_cpu(theirs)} "
                    f"| {theirs.get('other_cpu_whole_case', 0):.0%} |")
        lines.append("")
        lines.append("Other processes: CPU used by everything else on the machine during the whole case (setup "
                     "included), share of one core. Deliveries per server CPU-second: deliveries/s over the server "
                     "process's CPU share in the measured window - what each delivery costs the server, which other "
                     "work on a shared machine disturbs less than the rate.")
        lines.append("")
        lines.append("| in flight | Satchel / peer (deliveries/s) | lost | deliveries as the rules say | target | verdict |")
        lines.append("|---|---|---|---|---|---|")
        for n, case in enumerate(cases):
            verdict, ours = case.get("verdict"), case.get("satchel", {})
            if not verdict:
                continue
            check = ours["check"]
            shown = ("every subscriber got exactly its admitted items, each once, with exactly its fields" if check["ok"]
                     else f"NO: {check['connections_wrong']} connections wrong ({'; '.join(check['examples'])})")
            if len(case.get("rounds", ())) > 1:
                shown += (f"; every one of {len(case['rounds'])} rounds checked ok" if verdict["every_round_checked_ok"]
                          else "; NOT every round checked ok")
            judged = _verdict_text(verdict["met"], n == 0)
            lines.append(f"| {case['inflight']} | {verdict['ratio']:.2f}x | {ours['lost']} | {shown} "
                         f"({check['creates_checked']:,} creates checked) | {verdict['target']} | {judged} |")
        lines.append("")
    cost = perm.get("rules_cost", {})
    lines.append("## Rule checks on REST get-by-id: default rules vs a role with a read filter and a field list")
    lines.append("")
    if "error" in cost or "skipped" in cost:
        lines += [f"{'failed' if 'error' in cost else 'skipped'}: {cost.get('error') or cost.get('skipped')}", ""]
        return lines
    lines.append(f"Two servers at once, wrk -t1 -c{cost['connections']} -d{cost['seconds']}s alternating between them, "
                 f"{cost['rounds']} round(s) each, the best round of each shown. Mean latency = connections / "
                 "throughput.")
    lines.append("")
    lines.append("| call | default req/s | rules req/s | mean latency default / rules | p50 default / rules "
                 "| p99 default / rules | added latency | target | verdict |")
    lines.append("|---|---|---|---|---|---|---|---|---|")
    for name, result in cost["calls"].items():
        d, r = result["default"], result["rules"]
        lines.append(
            f"| {CALLS[name]} | {figures.fmt_rate(d['requests_per_s'])} | {figures.fmt_rate(r['requests_per_s'])} "
            f"| {figures.fmt_us(d['mean_latency_us'])} / {figures.fmt_us(r['mean_latency_us'])} "
            f"| {figures.fmt_us(d['latency_us'].get('p50', 0))} / {figures.fmt_us(r['latency_us'].get('p50', 0))} "
            f"| {figures.fmt_us(d['latency_us'].get('p99', 0))} / {figures.fmt_us(r['latency_us'].get('p99', 0))} "
            f"| {result['overhead']:+.1%} | {result['target']} | {figures.verdict_label(result['met'])} |")
    lines.append("")
    checked = cost.get("checked_rules", {})
    if checked:
        lines.append(f"With the rules the reader sees fields {', '.join(checked['backpack_fields'])} (Backpack) and "
                     f"{', '.join(checked['directus_fields'])} (Directus) of the item, and the item the filter denies "
                     f"answers {checked['backpack_filtered_item_status']} / {checked['directus_filtered_item_status']}.")
        lines.append("")
    return lines


if __name__ == "__main__":
    import run  # benches/run.py: the flags, the run, the results file and table

    sys.exit(run.main(["--only", "permissions", *sys.argv[1:]]))
