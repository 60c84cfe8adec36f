"""``satchel serve --workers 2`` against ``--workers 1`` on one machine: REST
get-by-id with wrk (issue 15 part 4).

Both on the same PostgreSQL database (a schema of their own, dropped
afterwards) and Redis, so that the only difference is the number of
processes; beside them the default single process on SQLite (``--workers``
refuses SQLite: README, "One machine, N workers"). Rounds alternate
(sqlite, 1, 2, sqlite, 1, 2, ...) so a neighbour's load falls on all. The server's CPU is the supervisor's children's (read from /proc)
over each round. wrk runs one thread on the same machine: on 2 cores it
takes a share of what the second worker would use - the figure says what
this machine gives, not what 2 free cores would.

Printed: each round's row, then the medians (JSON).

Run: python benches/bench_workers.py [--rounds 3] [--seconds 5] [--connections 64]
     [--store postgresql://127.0.0.1/test] [--broker redis://127.0.0.1:6379]
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import statistics
import sys
import tempfile
from pathlib import Path
from urllib.parse import quote

sys.path.insert(0, str(Path(__file__).resolve().parent))

import run as bench  # noqa: E402  (the shared helpers of benches/run.py)


def _children_cpu(pid: int) -> float:
    total = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--store", default=os.environ.get("SATCHEL_TEST_POSTGRES", "postgresql://127.0.0.1/test"))
    parser.add_argument("--broker", default=os.environ.get("SATCHEL_TEST_REDIS", "redis://127.0.0.1:6379"))
    options = parser.parse_args()
    wrk_bin = bench.ensure_wrk()
    if wrk_bin is None:
        raise SystemExit("wrk is not installed")
    import psycopg
    from psycopg import sql

    schema = f"bench_workers_{secrets.token_hex(4)}"
    with psycopg.connect(options.store, autocommit=True) as db:
        db.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    separator = "&" if "?" in options.store else "?"
    store = f"{options.store}{separator}options={quote(f'-c search_path={schema}')}"
    broker = f"{options.broker}?prefix=bw{secrets.token_hex(4)}"
    wrk_options = argparse.Namespace(rest_connections=options.connections, rest_seconds=options.seconds)
    results: dict[str, list[dict[str, float]]] = {"sqlite": [], "1": [], "2": []}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for round_ in range(options.rounds):
                for case in results:
                    workers = 1 if case == "sqlite" else int(case)
                    extra = [] if case == "sqlite" else ["--store", store, "--broker", broker, "--workers", case]
                    server = bench.start_satchel(Path(tmp) / f"w{case}", extra)
                    try:
                        env = bench._satchel_rest_setup(server)
                        bench.wrk(wrk_bin, f"http://{bench.HOST}:{server.port}", bench.WRK_SCRIPTS / "get.lua",
                                  wrk_options, env, seconds=1)  # warm-up
                        cpu = _children_cpu(server.pid) if workers > 1 else server.cpu_seconds()
                        got = bench.wrk(wrk_bin, f"http://{bench.HOST}:{server.port}", bench.WRK_SCRIPTS / "get.lua",
                                        wrk_options, env)
                        cpu = (_children_cpu(server.pid) if workers > 1 else server.cpu_seconds()) - cpu
                    finally:
                        server.stop()
                    row = {"requests_per_s": got["requests_per_s"], "p99_us": got["latency_us"].get("p99", 0.0),
                           "non_2xx": got["non_2xx"], "server_cpu_s": round(cpu, 2),
                           "requests_per_cpu_s": round(got["requests"] / cpu) if cpu else 0}
                    bench.log(f"round {round_ + 1}, {case}: {json.dumps(row)}")
                    results[case].append(row)
    finally:
        with psycopg.connect(options.store, autocommit=True) as db:
            db.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))
    summary = {}
    for workers, rows in results.items():
        summary[workers] = {key: statistics.median(row[key] for row in rows) for key in rows[0]}
    print(json.dumps({"connections": options.connections, "seconds": options.seconds, "rounds": options.rounds,
                      "median": summary,
                      "speedup": round(summary["2"]["requests_per_s"] / summary["1"]["requests_per_s"], 2),
                      "vs_sqlite": round(summary["2"]["requests_per_s"] / summary["sqlite"]["requests_per_s"], 2)}, indent=1))


if __name__ == "__main__":
    main()
