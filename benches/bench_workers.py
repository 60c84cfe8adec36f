"""``satchel serve --workers 2`` against ``--workers 1`` on one machine: REST
get-by-id with wrk (issue 15 parts 4 and 6).

``--workers`` refuses the embedded SQLite store (README, "One machine, N
workers": its commits are batched in one process's writer thread, and the
in-process bus reaches that process's connections only), and the bench
checks that it still does - ``--workers 2`` on SQLite must exit with status
2 and say which store and broker it needs. So the two worker counts run on
the same PostgreSQL database (a schema of their own, dropped afterwards) and
Redis, and the only difference is the number of processes; beside them the
default single process on SQLite, the figure the workers must beat. Rounds
alternate (sqlite, 1, 2, sqlite, 1, 2, ...) so a neighbour's load falls on
all. The server's CPU is the supervisor's children's (read from /proc) over
each round. wrk runs one thread on the same machine: on 2 cores it takes a
share of what the second worker would use - the figure says what this
machine gives, not what 2 free cores would.

Printed: each round's row, then the medians and the ratios (JSON).

Run: python benches/bench_workers.py [--rounds 3] [--seconds 5] [--connections 64] [--quick]
     [--store postgresql://127.0.0.1/test] [--broker redis://127.0.0.1:6379]
  or python benches/run.py --only workers [--quick]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import cluster  # noqa: E402  (benches/cluster.py: a schema and a topic prefix of our own)
import harness  # noqa: E402  (benches/harness.py: servers, wrk)
import rest_cases  # noqa: E402  (benches/rest_cases.py: the REST case's user, session and record)


def sqlite_refusal(data_dir: Path) -> dict[str, Any]:
    """``satchel serve --workers 2`` on the default store: refused, with status 2 and a message."""
    command = [sys.executable, "-m", "satchel.transports", "serve", "--host", harness.HOST, "--port", "0",
               "--data-dir", str(data_dir), "--api-key", harness.API_KEY, "--workers", "2"]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return {"refused": False, "status": None, "message": "it served (no refusal within 30 s)"}
    message = (done.stderr.strip() or done.stdout.strip()).splitlines()
    return {"refused": done.returncode == 2, "status": done.returncode, "message": message[-1] if message else ""}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--quick", action="store_true", help="1 round of 3 s")
    parser.add_argument("--store", default=cluster.POSTGRES)
    parser.add_argument("--broker", default=cluster.BROKERS["redis"])
    options = parser.parse_args(argv)
    if options.quick:
        options.rounds, options.seconds = 1, min(options.seconds, 3)
    return options


def run_workers(argv: list[str] | None = None) -> dict[str, Any]:
    options = parse_args(argv)
    wrk_bin = harness.ensure_wrk()
    if wrk_bin is None:
        return {"skipped": "wrk is not installed"}
    broker = cluster.broker_url(options.broker, "bw")
    wrk_options = argparse.Namespace(rest_connections=options.connections, rest_seconds=options.seconds)
    results: dict[str, list[dict[str, float]]] = {"sqlite": [], "1": [], "2": []}
    with cluster.postgres_schema(options.store, "workers") as store, tempfile.TemporaryDirectory() as tmp:
        refusal = sqlite_refusal(Path(tmp) / "refused")
        harness.log(f"--workers 2 on SQLite: {json.dumps(refusal)}")
        for round_ in range(options.rounds):
            for case in results:
                workers = 1 if case == "sqlite" else int(case)
                extra = [] if case == "sqlite" else ["--store", store, "--broker", broker, "--workers", case]
                server = harness.start_satchel(Path(tmp) / f"w{case}", extra)
                try:
                    env = rest_cases.satchel_rest_setup(server)
                    harness.wrk(wrk_bin, f"http://{harness.HOST}:{server.port}", harness.WRK_SCRIPTS / "get.lua",
                              wrk_options, env, seconds=1)  # warm-up
                    cpu = cluster.workers_cpu(server.pid) if workers > 1 else server.cpu_seconds()
                    got = harness.wrk(wrk_bin, f"http://{harness.HOST}:{server.port}", harness.WRK_SCRIPTS / "get.lua",
                                    wrk_options, env)
                    cpu = (cluster.workers_cpu(server.pid) if workers > 1 else server.cpu_seconds()) - cpu
                finally:
                    server.stop()
                row = {"requests_per_s": got["requests_per_s"], "p99_us": got["latency_us"].get("p99", 0.0),
                       "non_2xx": got["non_2xx"], "server_cpu_s": round(cpu, 2),
                       "requests_per_cpu_s": round(got["requests"] / cpu) if cpu else 0}
                harness.log(f"round {round_ + 1}, {case}: {json.dumps(row)}")
                results[case].append(row)
    summary = {}
    for workers, rows in results.items():
        summary[workers] = {key: statistics.median(row[key] for row in rows) for key in rows[0]}
        summary[workers]["rounds"] = [row["requests_per_s"] for row in rows]
    return {"connections": options.connections, "seconds": options.seconds, "rounds": options.rounds,
            "sqlite_workers_2": refusal, "median": summary,
            "speedup": round(summary["2"]["requests_per_s"] / summary["1"]["requests_per_s"], 2),
            "vs_sqlite": round(summary["2"]["requests_per_s"] / summary["sqlite"]["requests_per_s"], 2),
            "one_worker_vs_sqlite": round(summary["1"]["requests_per_s"] / summary["sqlite"]["requests_per_s"], 2)}


def main() -> None:
    print(json.dumps(run_workers(), indent=1))


if __name__ == "__main__":
    main()
