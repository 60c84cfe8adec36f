"""The figures each run is judged against (the issues' targets) and how the
results tables write figures: rates, latencies, verdicts."""

from __future__ import annotations

# The figures (issue #3), checked against each run.
TARGETS = {
    "fanout_1000": 1.5,  # x the faster peer's deliveries/s, 0 lost, p99 no worse
    "fanout_5000": 1.0,
    "idle_kb": 16.0,  # KB resident per open websocket, at most
    # issue #13: x PocketBase in the same run, its collection's rules needing a user token ...
    "rest_create": 1.5,
    "rest_get": 3.0,
    # ... and x PocketBase on a collection anyone may use (Satchel still checks a session)
    "rest_public_create": 1.0,
    "rest_public_get": 1.5,
    # issue #10: Socket.IO room fan-out vs Node socket.io 4, in the same run
    "socketio_1000": 3.0,  # x Node socket.io's deliveries/s, 0 lost, p99 no worse, every ack durable
    "socketio_5000": 2.0,
    "socketio_idle_kb": 8.0,  # KB resident per connected Socket.IO client (namespace + room), at most
    # issue #11: permissions (benches/bench_permissions.py)
    "permissions_fanout_1000": 3.0,  # x websockets broadcast()'s deliveries/s, Directus subscribers in 4 roles, 0 lost
    "permissions_rule_overhead": 0.15,  # rule checks add at most this to REST get-by-id latency
    # issue #12: resource subscriptions (benches/bench_resources.py)
    "resources_fanout_1000": 3.0,  # x websockets broadcast()'s deliveries/s, 1000 subscribers of one kv entry, 0 lost
    "resources_cross_protocol": 0.8,  # x the single-protocol figure, 1000 subscribers over three protocols, 0 lost
    "resources_udp_p99_ms": 10.0,  # UDP inbox message -> document subscriber, p99 at 1k messages/s
}


def fmt_rate(value: float) -> str:
    return f"{value / 1000:,.1f}k" if value >= 1000 else f"{value:,.0f}"


def fmt_us(value: float) -> str:
    return f"{value / 1000:.1f} ms" if value >= 1000 else f"{value:.0f} us"


def verdict_label(ok: bool | None) -> str:
    return "n/a" if ok is None else ("MET" if ok else "MISSED")
