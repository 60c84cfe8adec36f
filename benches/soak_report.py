"""The soak's results (bench_soak.py): the statistics over its samples (means,
quantiles, the RSS trend after warm-up), the PNG (matplotlib, Agg) and the
summary table printed at the end."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def mean(values: list[float]) -> float | None:
    return round(sum(values) / len(values), 1) if values else None


def quantile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def rss_trend(samples: list[dict[str, Any]], warmup: float) -> dict[str, Any]:
    """A least-squares line through RSS over the post-warm-up samples: its rise
    over that span, in % of its value at the span's start."""
    points = [(s["t"], s["rss_kb"]) for s in samples if s["t"] >= warmup and s["rss_kb"]]
    if len(points) < 3:
        return {"samples": len(points)}
    n = len(points)
    mean_t = sum(t for t, _ in points) / n
    mean_r = sum(r for _, r in points) / n
    slope = sum((t - mean_t) * (r - mean_r) for t, r in points) / sum((t - mean_t) ** 2 for t, _ in points)
    start, end = points[0][0], points[-1][0]
    at_start = mean_r + slope * (start - mean_t)
    return {"samples": n, "from_s": start, "to_s": end, "slope_kb_per_min": round(slope * 60, 1),
            "fit_start_mb": round(at_start / 1024, 1), "fit_end_mb": round((at_start + slope * (end - start)) / 1024, 1),
            "growth_percent": round(100 * slope * (end - start) / at_start, 2),
            "min_mb": round(min(r for _, r in points) / 1024, 1), "max_mb": round(max(r for _, r in points) / 1024, 1)}


def plot(samples: list[dict[str, Any]], warmup: float, trend: dict[str, Any], title: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = [s["t"] / 60 for s in samples]
    figure, axes = plt.subplots(5, 1, figsize=(9, 10), sharex=True)
    series = [
        ("RSS (MB)", [s["rss_kb"] / 1024 for s in samples], None),
        ("CPU (% of a core)", [s["cpu_percent"] for s in samples], [s["load_cpu_percent"] for s in samples]),
        ("open descriptors", [s["descriptors"] for s in samples], None),
        ("probe latency (ms)", [s["probe_p99_ms"] for s in samples], [s["probe_p50_ms"] for s in samples]),
    ]
    for axis, (label, values, second) in zip(axes, series):
        names = ("server", "load process") if label.startswith("CPU") else ("p99", "p50")
        axis.plot(t, values, linewidth=0.9, label=names[0] if second else None)
        if second:
            axis.plot(t, second, linewidth=0.7, label=names[1])
            if label.startswith("CPU"):
                axis.plot(t, [s.get("other_cpu_percent", 0) for s in samples], linewidth=0.7, color="grey",
                          label="other processes")
                axis.plot(t, [s.get("io_stall_percent", 0) for s in samples], linewidth=0.7, color="tab:red",
                          linestyle=":", label="I/O stall (PSI some)")
            if label.startswith("probe"):
                axis.set_yscale("log")
            axis.legend(loc="upper right", fontsize=7)
        axis.set_ylabel(label, fontsize=8)
        axis.axvline(warmup / 60, color="grey", linestyle=":", linewidth=0.8)
        axis.grid(alpha=0.3)
    if "fit_start_mb" in trend:
        axes[0].plot([trend["from_s"] / 60, trend["to_s"] / 60], [trend["fit_start_mb"], trend["fit_end_mb"]],
                     color="black", linewidth=1, linestyle="--", label=f"fit: {trend['growth_percent']:+.1f}%")
        axes[0].legend(loc="lower right", fontsize=7)
    errors_axis = axes[4]
    errors_axis.bar(t, [s["client_errors"] for s in samples], width=1 / 60, label="client errors", color="tab:orange")
    errors_axis.bar(t, [s["log_errors"] for s in samples], width=1 / 60, label="ERROR/Traceback in the log",
                    color="tab:red")
    errors_axis.bar(t, [s["probe_failures"] for s in samples], width=1 / 60, label="probe failures",
                    color="tab:purple")
    errors_axis.set_ylabel("errors per second", fontsize=8)
    errors_axis.legend(loc="upper right", fontsize=7)
    errors_axis.set_xlabel("minutes (dotted: end of warm-up)", fontsize=8)
    errors_axis.grid(alpha=0.3)
    figure.suptitle(title, fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=72)
    plt.close(figure)


def summary(result: dict[str, Any]) -> str:
    trend, found, probe = result["rss_trend"], result["acknowledged_writes"], result["probe"]
    c = result["load_counters"]
    writes = ", ".join(f"{name} {c.get('acked.' + name, 0):,}" for name in
                       ("rest", "ws", "kv", "inbox_http", "inbox_udp", "chat"))
    verdict = (lambda ok: "met" if ok else "NOT met")
    growth = trend.get("growth_percent")
    lines = [
        f"# Soak: {result['minutes']:g} min, {result['date']} (warm-up {result['warmup_s']:.0f} s; load average at "
        f"the end {result['load_average_at_end'][0]:.1f})",
        "",
        "| figure | measured | target | verdict |",
        "|---|---|---|---|",
        f"| RSS trend after warm-up | {growth}% ({trend.get('fit_start_mb')} -> {trend.get('fit_end_mb')} MB fitted, "
        f"{trend.get('slope_kb_per_min')} KB/min; range {trend.get('min_mb')}-{trend.get('max_mb')} MB) | <= 5% | "
        f"{verdict(growth is not None and growth <= 5)} |",
        f"| unhandled errors in the server log | {result['log_errors']['during_run']} during the run, "
        f"{result['log_errors']['after_restart']} after the restart | 0 | "
        f"{verdict(result['log_errors']['during_run'] + result['log_errors']['after_restart'] == 0)} |",
        f"| acknowledged writes lost after kill -9 | {found['lost_total']} (acknowledged: {writes}; kv checked as "
        f"the last per key, inbox as the highest revision per message) | 0 | {verdict(found['lost_total'] == 0)} |",
        f"| probe p99 (GET /collections every {result['options']['probe_ms']:g} ms) | median window "
        f"{probe['p99_ms_median_window_after_warmup']} ms, worst window {probe['p99_ms_worst_window']} ms, "
        f"{probe['windows_over_100ms']} of {len(result['samples'])} windows over 100 ms; "
        f"{probe['failures']} failures of {probe['samples']:,} | - | - |",
        f"| client-side errors | {result['client_errors']['total']} {result['client_errors']['by_kind'] or ''} "
        f"| - | - |",
        "",
        f"Load: churn {c.get('churn.done', 0):,} connections, hostile {c.get('hostile.sent', 0):,} frames "
        f"({c.get('hostile.answered', 0):,} answered, {c.get('hostile.closed', 0):,} closed, "
        f"{c.get('hostile.unanswered', 0):,} unanswered) + {c.get('hostile.http_4xx', 0):,} bad requests (4xx) "
        f"+ {c.get('hostile.datagrams', 0):,} garbage datagrams; flooder {c.get('flood.sent', 0):,} frames over "
        f"{c.get('flood.connections', 0)} connections ("
        + ", ".join(f"closed {k.split('_', 1)[1]} x{v}" for k, v in c.items() if k.startswith("flood.closed_"))
        + f"); stopped reader {c.get('stalled.opened', 0)} opened, {c.get('stalled.closed_by_server', 0)} closed by "
        f"the server; UDP unanswered {c.get('udp.unanswered', 0)}; received "
        + ", ".join(f"{k.split('.', 1)[1]} {v:,}" for k, v in c.items() if k.startswith("received.")),
        f"CPU after warm-up (mean, % of a core): server {result['cpu_percent_mean']['server']}, load process "
        f"{result['cpu_percent_mean']['load']}, other processes {result['cpu_percent_mean']['other_processes']}; "
        f"I/O stall (PSI some) {result['cpu_percent_mean']['io_stall']}% of the time. "
        f"Descriptors: {result['descriptors']['first']} -> {result['descriptors']['last']} (max "
        f"{result['descriptors']['max']}).",
    ]
    if result["log_errors"]["examples"]:
        lines += ["", "Log error lines (first):", *(f"    {line}" for line in result["log_errors"]["examples"][:5])]
    if result["client_errors"]["examples"]:
        lines += ["", "Client errors (first):", *(f"    {line}" for line in result["client_errors"]["examples"][:5])]
    return "\n".join(lines)
