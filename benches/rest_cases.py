"""REST record create and get-by-id (``run.py --only rest``): Satchel and
PocketBase side by side under wrk, then kill -9 and a count of what each
acknowledged create left stored; and this case's section of the results
table."""

from __future__ import annotations

import argparse
import contextlib
import json
import subprocess
import tempfile
from pathlib import Path
from typing import Any, Sequence

from figures import TARGETS, fmt_rate, fmt_us, verdict_label
from harness import (API_KEY, HOST, PASSWORD, WRK_SCRIPTS, Http, Server, ensure_wrk, free_port, log,
                     pocketbase_binary, satchel_login, start_satchel, wrk)

RECORD = {"title": "a record of typical size", "n": 42, "done": False}


def satchel_rest_setup(server: Server) -> dict[str, str]:
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
    port = free_port()
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
            targets.append(("satchel", satchel, satchel_rest_setup(satchel)))
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


# --- the table ------------------------------------------------------------------------


def rest_table(rest: dict[str, Any]) -> list[str]:
    lines: list[str] = []
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
                f"| {fmt_rate(ours) if ours else '-'} | {fmt_rate(theirs) if theirs else '-'} "
                f"| {f'{ratio:.2f}x' if ratio else '-'} "
                f"| {fmt_us(satchel.get(call, {}).get('latency_us', {}).get('p99', 0))} "
                f"| {fmt_us(peer.get(call, {}).get('latency_us', {}).get('p99', 0))} "
                f"| >= {target}x | {verdict_label(ok)} |"
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
    return lines
