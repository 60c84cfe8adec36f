"""Soak (issue 14 part 4): minutes of mixed load on one server, sampled each second.

    python benches/bench_soak.py                  # 10 minutes (the issue's figure)
    python benches/bench_soak.py --minutes 2      # a short run (indicative)
    python benches/run.py --only soak             # the same, from the main runner

One real ``satchel serve`` (SQLite in a temp dir, the limits at their
defaults) pinned to CPU 0; the load in one more Python process (trio,
trio-websocket) pinned to CPU 1; this process samples and probes. The load:

- well-behaved subscribers in every protocol: Backpack websockets (session
  cookie), Socket.IO clients (Engine.IO v4 websocket transport, spoken by
  hand: namespace CONNECT with the token, ``join``, pings answered), Directus
  core realtime on ``/websocket`` (auth, subscribe ``articles``) and resource
  websockets on ``/realtime`` (the kv entries, an inbox document, the
  ``articles`` collection). A subscriber the server closes is an error.
- writes, each acknowledged one remembered: Backpack REST creates
  (``POST /articles``), Backpack websocket ``create`` (acknowledged by the
  writer's own copy), kv writes (``PUT /realtime/kv/{id}``), inbox messages
  over HTTP and over UDP (signed datagrams, answer ``M``), Socket.IO chats
  with an ack.
- churn: connections of every protocol opened, greeted, held 0.2-3 s and
  closed, half with a close handshake and half by dropping the socket.
- hostile input: bad JSON, unknown actions, frames over 1 MiB, garbage
  Engine.IO packets, malformed REST bodies and datagrams. Their answers
  (error frames, closes, 400s) are expected, not errors.
- a flooder (1 KB Backpack ``broadcast`` frames as fast as the server takes
  them; reconnects when it is closed) and a reader that stops reading
  (replaced every 60 s; the server should close it as a slow consumer).

Each second: the server's RSS, CPU and open descriptors (``/proc/PID``), a
probe's latency (``GET /collections`` on a keep-alive connection, every
20 ms; p50/p99/max per second), the load's client-side errors and
``ERROR``/``CRITICAL``/``Traceback`` lines in the server's log. At the end
the server is killed with SIGKILL while the load runs, restarted on the same
data directory, and every acknowledged write is looked for.

Written to ``benches/results/soak.json`` (every sample) and
``benches/results/soak.png`` (matplotlib, Agg). The summary: RSS trend
after warm-up (a least-squares line over the post-warm-up samples, as %
growth over that span; target <= 5%), unhandled errors in the log (target
0), acknowledged writes lost (target 0), probe p99. The machine is shared:
the figures are indicative.
"""

from __future__ import annotations

# This file parses the flags and runs the soak (the server, the samples each
# second, the kill and the check). Its parts, one job each: soak_server.py
# (the server and its log), soak_load.py (the load process's clients),
# soak_sampling.py (the probe, the load process's status lines, the machine's
# CPU), soak_data.py (the setup and the check of acknowledged writes) and
# soak_report.py (the RSS trend, the plot, the summary).

import argparse
import datetime
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import harness  # noqa: E402  (benches/harness.py: HTTP clients, accounts, constants)
from soak_data import prepare, verify  # noqa: E402
from soak_load import load_main  # noqa: E402
from soak_report import mean, plot, quantile, rss_trend, summary  # noqa: E402
from soak_sampling import LoadProcess, Probe, machine_busy_and_stalls, process_cpu_seconds  # noqa: E402
from soak_server import LogScanner, SoakServer, server_and_load_cpus  # noqa: E402


def soak(options: argparse.Namespace) -> dict[str, Any]:
    harness.raise_fd_limit()
    server_cpu, load_cpu = server_and_load_cpus()
    duration = options.minutes * 60
    # RSS rose for about 2 minutes in the short runs (then flat: +0.05% over
    # their last minute), so a 10-minute run leaves its first 2 out.
    warmup = options.warmup if options.warmup is not None else min(120.0, duration / 4)
    tmp = Path(tempfile.mkdtemp(prefix="satchel-soak-"))
    data_dir, log_path = tmp / "data", tmp / "server.log"
    # Tokens outlive the run (the defaults would expire Directus's after 15 minutes).
    extra = ["--access-token-ttl-ms", str(int((duration + 900) * 1000)), *options.server_args]
    harness.log(f"soak: {options.minutes:g} min on satchel serve (CPU {server_cpu}), load on CPU {load_cpu}, "
              f"data in {tmp}")
    server = SoakServer(data_dir, log_path, server_cpu, extra)
    scanner = LogScanner(log_path)
    setup = prepare(server.port)
    setup_path, acked_path = tmp / "setup.json", tmp / "acked.json"
    setup_path.write_text(json.dumps(setup))
    load = LoadProcess(setup_path, acked_path, options, load_cpu)
    probe = Probe(server.port, options.probe_ms / 1000)
    probe.start()
    samples: list[dict[str, Any]] = []
    started = time.monotonic()
    wall_started = time.time()
    cpu_before, at_before = server.cpu_seconds(), started
    load_cpu_before = process_cpu_seconds(load.process.pid)
    machine_before = machine_busy_and_stalls()
    errors_seen = 0
    next_tick = started + 1
    try:
        while True:
            time.sleep(max(0.0, next_tick - time.monotonic()))
            next_tick += 1
            now = time.monotonic()
            if server.process.poll() is not None:
                raise RuntimeError("the server died: " + log_path.read_text(errors="replace")[-2000:])
            cpu = server.cpu_seconds()
            load_cpu_now = process_cpu_seconds(load.process.pid)
            machine_now = machine_busy_and_stalls()
            span = now - at_before
            latencies, failures = probe.take()
            counters, errors = load.snapshot()
            fresh = errors[errors_seen:]
            errors_seen = len(errors)
            sample = {
                "t": round(now - started, 2),
                "rss_kb": server.rss_kb(),
                "cpu_percent": round(100 * (cpu - cpu_before) / (now - at_before), 1),
                "load_cpu_percent": round(100 * (load_cpu_now - load_cpu_before) / (now - at_before), 1),
                # Everything else on the machine (this process included), and how much of
                # the second some task waited on I/O / for a CPU.
                "other_cpu_percent": round(100 * ((machine_now[0] - machine_before[0]) - (cpu - cpu_before)
                                                  - (load_cpu_now - load_cpu_before)) / span, 1),
                "io_stall_percent": round(100 * (machine_now[1] - machine_before[1]) / span, 1),
                "cpu_stall_percent": round(100 * (machine_now[2] - machine_before[2]) / span, 1),
                "descriptors": server.descriptors(),
                "probes": len(latencies),
                "probe_p50_ms": round((quantile(latencies, 0.5) or 0) * 1000, 2),
                "probe_p99_ms": round((quantile(latencies, 0.99) or 0) * 1000, 2),
                "probe_max_ms": round(max(latencies, default=0) * 1000, 2),
                "probe_failures": len(failures),
                "client_errors": len(fresh),
                "log_errors": scanner.new_errors(),
                "counters": counters,
            }
            if fresh:
                sample["client_error_examples"] = [f"{kind}: {detail}" for _, kind, detail in fresh[:3]]
            if failures:
                sample["probe_failure_examples"] = failures[:3]
            samples.append(sample)
            cpu_before, at_before, load_cpu_before, machine_before = cpu, now, load_cpu_now, machine_now
            if len(samples) % 30 == 0:
                harness.log(f"  {sample['t']:.0f} s: RSS {sample['rss_kb'] / 1024:.1f} MB, CPU {sample['cpu_percent']:.0f}%,"
                          f" {sample['descriptors']} fds, probe p99 {sample['probe_p99_ms']:.1f} ms, errors so far "
                          f"{errors_seen} client / {sum(s['log_errors'] for s in samples)} log")
            if now - started >= duration:
                break
        # The crash: SIGKILL with the load still writing.
        probe.stopped.set()
        killed_at = time.time()
        server.kill()
        load.stop()
        probe.join(5)
        log_errors_run = sum(s["log_errors"] for s in samples) + scanner.new_errors()
        counters, errors = load.snapshot()
        run_errors = [e for e in errors if e[0] < killed_at]
        acked_file = json.loads(acked_path.read_text()) if acked_path.exists() else None
        if acked_file is None:
            raise RuntimeError("the load process wrote no acknowledged writes")
        restarted = SoakServer(data_dir, log_path, server_cpu, extra)
        try:
            found = verify(restarted.port, setup, acked_file["acked"])
        finally:
            restarted.stop()
        log_errors_restart = scanner.new_errors()
    finally:
        probe.stopped.set()
        if load.process.poll() is None:
            load.stop()
        server.kill()
    kinds: dict[str, int] = {}
    for _, kind, _detail in run_errors:
        kinds[kind] = kinds.get(kind, 0) + 1
    all_latencies = [s["probe_p99_ms"] for s in samples if s["probes"]]
    post = [s for s in samples if s["t"] >= warmup and s["probes"]]
    result = {
        "date": datetime.datetime.fromtimestamp(wall_started, datetime.timezone.utc).isoformat(timespec="seconds"),
        "minutes": options.minutes, "warmup_s": warmup, "cpus": {"server": server_cpu, "load": load_cpu},
        "load_average_at_end": os.getloadavg(),
        "options": {k: v for k, v in vars(options).items() if k not in ("role", "setup", "acked")},
        "rss_trend": rss_trend(samples, warmup),
        "log_errors": {"during_run": log_errors_run, "after_restart": log_errors_restart,
                       "examples": scanner.examples},
        "client_errors": {"total": len(run_errors), "by_kind": kinds,
                          "examples": [f"{kind}: {detail}" for _, kind, detail in run_errors[:10]]},
        "probe": {"samples": sum(s["probes"] for s in samples),
                  "failures": sum(s["probe_failures"] for s in samples),
                  "p99_ms_worst_window": max(all_latencies, default=None),
                  "p99_ms_median_window_after_warmup": quantile([s["probe_p99_ms"] for s in post], 0.5),
                  "windows_over_100ms": sum(1 for s in samples if s["probe_p99_ms"] > 100),
                  "p50_ms_median_window_after_warmup": quantile([s["probe_p50_ms"] for s in post], 0.5)},
        "load_counters": acked_file["counters"],
        "acknowledged_writes": found,
        "cpu_percent_mean": {"server": mean([s["cpu_percent"] for s in post]),
                             "load": mean([s["load_cpu_percent"] for s in post]),
                             "other_processes": mean([s["other_cpu_percent"] for s in post]),
                             "io_stall": mean([s["io_stall_percent"] for s in post])},
        "descriptors": {"first": samples[0]["descriptors"] if samples else None,
                        "last": samples[-1]["descriptors"] if samples else None,
                        "max": max((s["descriptors"] for s in samples), default=None)},
        "samples": samples,
    }
    output = Path(options.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(result, indent=1) + "\n")
    trend = result["rss_trend"]
    title = (f"satchel soak, {options.minutes:g} min, {result['date']}: RSS {trend.get('growth_percent')}% after "
             f"warm-up, {log_errors_run} log errors, {found['lost_total']} acknowledged writes lost")
    plot(samples, warmup, trend, title, output.with_suffix(".png"))
    if not options.keep:
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    return result


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0, help="length of the mixed load")
    parser.add_argument("--warmup", type=float, default=None,
                        help="seconds left out of the RSS trend (default: a quarter of the run, at most 120)")
    parser.add_argument("--subs", type=int, default=10, help="well-behaved subscribers per protocol")
    parser.add_argument("--rest-writes", type=float, default=10.0, help="Backpack REST creates per second")
    parser.add_argument("--ws-writes", type=float, default=5.0, help="Backpack websocket creates per second")
    parser.add_argument("--kv-writes", type=float, default=10.0, help="kv writes per second")
    parser.add_argument("--inbox-posts", type=float, default=10.0, help="inbox messages over HTTP per second")
    parser.add_argument("--datagrams", type=float, default=20.0, help="inbox messages over UDP per second")
    parser.add_argument("--chats", type=float, default=5.0, help="Socket.IO chats per second")
    parser.add_argument("--churn", type=float, default=20.0, help="short-lived connections opened per second")
    parser.add_argument("--hostile", type=float, default=4.0,
                        help="hostile websocket frames (and as many bad HTTP requests and datagrams) per second")
    parser.add_argument("--no-flood", dest="flood", action="store_false", help="leave the flooder out")
    parser.add_argument("--probe-ms", type=float, default=20.0, help="the probe's period")
    parser.add_argument("--server-arg", action="append", dest="server_args", default=[],
                        help="an extra argument for satchel serve (repeatable)")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (data, server.log)")
    parser.add_argument("--output", default=str(harness.RESULTS / "soak.json"), help="the JSON; the PNG goes beside it")
    parser.add_argument("--role", default="soak", choices=("soak", "load"), help=argparse.SUPPRESS)
    parser.add_argument("--setup", help=argparse.SUPPRESS)
    parser.add_argument("--acked", help=argparse.SUPPRESS)
    return parser.parse_args(argv)




def run_soak(argv: list[str] | None = None) -> dict[str, Any]:
    """The soak with this file's defaults, for ``run.py --only soak``; the
    samples stay in soak.json, the summary is returned without them."""
    result = soak(parse_args(argv or []))
    print(summary(result), flush=True)
    return {k: v for k, v in result.items() if k != "samples"}


def main(argv: list[str] | None = None) -> int:
    options = parse_args(argv)
    if options.role == "load":
        return load_main(options)
    result = soak(options)
    print(summary(result))
    print(f"(every sample: {options.output}; the plot: {Path(options.output).with_suffix('.png')})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
