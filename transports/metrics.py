"""What the reference server counts, and its Prometheus text exposition.

Counting happens on the hot paths (a delivery, a websocket frame, a
request, a store operation), so it is plain Python: an integer attribute
of one process-wide ``Metrics`` object incremented in place, and a
``Histogram`` that is a list of bucket counts indexed with ``bisect``. No
lock: the counts are changed from the trio thread only (the SQLite and
PostgreSQL writer threads observe their own batch-size histogram alone),
and a scrape that reads a count one increment early is still a valid
sample. Measured on this machine (``python -m timeit``, the same run):
``obj.n += 1`` ~0.14 us, ``prometheus_client`` ``Counter.inc()`` ~2.5 us
(it takes a lock per call), a labelled child ~2.8 us; this ``observe``
~0.3 us, ``prometheus_client``'s ``Histogram.observe`` ~1.6 us. So Satchel
writes the text format itself (``exposition``) and needs no package for it;
the tests parse what it writes with ``prometheus_client.parser``.

Gauges - open connections per protocol, bytes waiting in websocket
outboxes, open TCP connections - are not counted at all: ``exposition``
reads them from the server's objects (``Watched``) when it is scraped.

Labels are bounded: protocols and routes are mount names (never a path),
methods outside the standard ones are ``OTHER``, store operations are the
operation's class name, drop reasons a fixed set.
"""

from __future__ import annotations

import os
import resource
from bisect import bisect_left
from typing import Any, Iterable

__all__ = ["Histogram", "Metrics", "METRICS", "Watched", "exposition", "LATENCY_BUCKETS", "STORE_BUCKETS",
           "BATCH_BUCKETS", "CONTENT_TYPE"]

#: The exposition's media type (Prometheus text format 0.0.4).
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
#: Request latency buckets, seconds.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
#: Store operation latency buckets, seconds (a cached read is ~20 us, a commit ~1 ms).
STORE_BUCKETS = (0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)
#: Group-commit batch sizes (writes per transaction).
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
_METHODS = frozenset(("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"))


class Histogram:
    """Observations in buckets: ``counts[i]`` holds the values ``<= bounds[i]``
    (and above the bound before), ``counts[-1]`` those above every bound."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        """Count one observation."""
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value


class Metrics:
    """The process's counters (one instance, ``METRICS``)."""

    __slots__ = ("deliveries", "direct_frames", "slow_consumer_closes", "messages_in", "requests", "store",
                 "commit_batches", "datagrams_accepted", "datagrams_unanswered")

    def __init__(self) -> None:
        #: Messages handed to the hub for fan-out, one per recipient.
        self.deliveries = 0
        #: Frames sent to one websocket directly (replies, greetings: ``send_frame``),
        #: not through the hub. Messages out = ``deliveries`` + this: counting
        #: in the hub once per delivery, rather than in each connection's
        #: write, keeps the per-recipient fan-out path free of any counting.
        self.direct_frames = 0
        #: Websockets closed 1008 for an outbox past its bound.
        self.slow_consumer_closes = 0
        #: Websocket messages received, by protocol (mount name).
        self.messages_in: dict[str, int] = {}
        #: (route, method, status) -> latency histogram of the requests answered so.
        self.requests: dict[tuple[str, str, int], Histogram] = {}
        #: operation class -> latency histogram of the store's answers.
        self.store: dict[type, Histogram] = {}
        #: Writes per group commit (SQLite's and PostgreSQL's writer).
        self.commit_batches = Histogram(BATCH_BUCKETS)
        #: Datagrams that reached the core (past the per-source rate).
        self.datagrams_accepted = 0
        #: Datagrams the core answered nothing (not authentic, replayed, malformed, unknown document).
        self.datagrams_unanswered = 0

    def message_in(self, protocol: str) -> None:
        """One websocket message received by a connection of ``protocol``."""
        counts = self.messages_in
        counts[protocol] = counts.get(protocol, 0) + 1

    def request(self, route: str, method: str, status: int, seconds: float) -> None:
        """One HTTP request answered: its route (a mount name), method, status, latency."""
        key = (route, method if method in _METHODS else "OTHER", status)
        histogram = self.requests.get(key)
        if histogram is None:
            histogram = self.requests[key] = Histogram(LATENCY_BUCKETS)
        histogram.observe(seconds)

    def store_operation(self, kind: type, seconds: float) -> None:
        """One store operation of class ``kind`` answered after ``seconds``."""
        histogram = self.store.get(kind)
        if histogram is None:
            histogram = self.store[kind] = Histogram(STORE_BUCKETS)
        histogram.observe(seconds)


#: The process's counters; the hooks in hub, websocket, runner and stores count here.
METRICS = Metrics()


class Watched:
    """The objects whose state ``exposition`` reads as gauges; any may be
    ``None`` (an embedding without that part)."""

    __slots__ = ("board", "hub", "server", "gate", "broker")

    def __init__(self, *, board: Any = None, hub: Any = None, server: Any = None, gate: Any = None,
                 broker: Any = None) -> None:
        self.board = board  # Switchboard: connections per protocol
        self.hub = hub  # Hub: websockets and their outboxes
        self.server = server  # Server: open TCP connections, refusals
        self.gate = gate  # DatagramGate: datagrams dropped over the rate
        self.broker = broker  # Broker: messages published and dropped


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(pairs: Iterable[tuple[str, Any]]) -> str:
    inner = ",".join(f'{name}="{_escape(str(value))}"' for name, value in pairs)
    return "{" + inner + "}" if inner else ""


def _number(value: float) -> str:
    if isinstance(value, int):
        return str(value)
    if value == float("inf"):
        return "+Inf"
    return repr(float(value))


class _Writer:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def family(self, name: str, kind: str, text: str) -> None:
        self.lines.append(f"# HELP {name} {text}")
        self.lines.append(f"# TYPE {name} {kind}")

    def sample(self, name: str, value: float, labels: Iterable[tuple[str, Any]] = ()) -> None:
        self.lines.append(f"{name}{_labels(labels)} {_number(value)}")

    def histogram(self, name: str, histogram: Histogram, labels: tuple[tuple[str, Any], ...] = ()) -> None:
        running = 0
        for bound, count in zip(histogram.bounds, histogram.counts):
            running += count
            self.sample(f"{name}_bucket", running, (*labels, ("le", _number(float(bound)))))
        running += histogram.counts[-1]
        self.sample(f"{name}_bucket", running, (*labels, ("le", "+Inf")))
        self.sample(f"{name}_sum", histogram.sum, labels)
        self.sample(f"{name}_count", running, labels)


def _process(out: _Writer) -> None:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    out.family("process_cpu_seconds_total", "counter", "User and system CPU time spent, seconds.")
    out.sample("process_cpu_seconds_total", usage.ru_utime + usage.ru_stime)
    try:
        with open("/proc/self/statm") as statm:
            resident = int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        out.family("process_resident_memory_bytes", "gauge", "Resident memory size, bytes.")
        out.sample("process_resident_memory_bytes", resident)
        descriptors = len(os.listdir("/proc/self/fd"))
        out.family("process_open_fds", "gauge", "Open file descriptors.")
        out.sample("process_open_fds", descriptors)
    except (OSError, ValueError, IndexError):
        pass


def exposition(watched: Watched | None = None, metrics: Metrics = METRICS) -> bytes:
    """Every metric in the Prometheus text format (``CONTENT_TYPE``)."""
    watched = watched or Watched()
    out = _Writer()
    board = watched.board
    if board is not None:
        out.family("satchel_connections", "gauge", "Open connections (websockets, Socket.IO sessions) by protocol.")
        for protocol, count in sorted(board.connection_counts().items()):
            out.sample("satchel_connections", count, (("protocol", protocol),))
    hub = watched.hub
    if hub is not None:
        connections = [hub.get(connection_id) for connection_id in hub]
        out.family("satchel_websocket_outbox_bytes", "gauge",
                   "Bytes waiting in websocket outboxes, not yet taken by the kernel.")
        out.sample("satchel_websocket_outbox_bytes",
                   sum(getattr(connection, "buffered_bytes", 0) for connection in connections if connection is not None))
        out.family("satchel_hub_targets", "gauge", "Live fan-out targets (websockets) in the hub.")
        out.sample("satchel_hub_targets", len(connections))
    server = watched.server
    if server is not None:
        out.family("satchel_tcp_connections", "gauge", "Open TCP connections on the HTTP and websocket port.")
        out.sample("satchel_tcp_connections", server.connection_count)
        out.family("satchel_tcp_refused_total", "counter", "Connections refused or shed by the per-address limits.")
        out.sample("satchel_tcp_refused_total", server.refused, (("reason", "per_address"),))
        out.sample("satchel_tcp_refused_total", server.shed, (("reason", "descriptor_reserve"),))
    out.family("satchel_messages_in_total", "counter", "Websocket messages received, by protocol.")
    for protocol, count in sorted(metrics.messages_in.items()):
        out.sample("satchel_messages_in_total", count, (("protocol", protocol),))
    out.family("satchel_messages_out_total", "counter",
               "Messages sent or queued to connections: fan-out deliveries plus frames sent to one connection directly.")
    out.sample("satchel_messages_out_total", metrics.deliveries + metrics.direct_frames)
    out.family("satchel_deliveries_total", "counter", "Messages handed to the hub for fan-out, one per recipient.")
    out.sample("satchel_deliveries_total", metrics.deliveries)
    out.family("satchel_slow_consumer_closes_total", "counter",
               "Websockets closed with 1008 because their outbox passed its bound.")
    out.sample("satchel_slow_consumer_closes_total", metrics.slow_consumer_closes)
    out.family("satchel_http_request_duration_seconds", "histogram",
               "HTTP requests answered by the application, by route (mount), method and status: seconds from the "
               "whole request read to the response ready.")
    for (route, method, status), histogram in sorted(metrics.requests.items()):
        out.histogram("satchel_http_request_duration_seconds", histogram,
                      (("route", route), ("method", method), ("status", status)))
    out.family("satchel_store_operation_duration_seconds", "histogram", "Store operations, by operation: seconds.")
    for kind, histogram in sorted(metrics.store.items(), key=lambda item: item[0].__name__):
        out.histogram("satchel_store_operation_duration_seconds", histogram, (("operation", kind.__name__),))
    out.family("satchel_store_commit_batch_size", "histogram", "Writes committed together in one transaction.")
    out.histogram("satchel_store_commit_batch_size", metrics.commit_batches)
    out.family("satchel_udp_datagrams_accepted_total", "counter", "Datagrams that reached the core.")
    out.sample("satchel_udp_datagrams_accepted_total", metrics.datagrams_accepted)
    out.family("satchel_udp_datagrams_dropped_total", "counter", "Datagrams dropped unanswered, by reason.")
    gate = watched.gate
    out.sample("satchel_udp_datagrams_dropped_total", gate.dropped if gate is not None else 0, (("reason", "rate"),))
    out.sample("satchel_udp_datagrams_dropped_total", metrics.datagrams_unanswered, (("reason", "unanswered"),))
    broker = watched.broker
    if broker is not None:
        out.family("satchel_broker_messages_total", "counter", "Messages sent to the broker, and dropped unsent.")
        out.sample("satchel_broker_messages_total", getattr(broker, "published", 0), (("outcome", "published"),))
        out.sample("satchel_broker_messages_total", getattr(broker, "dropped", 0), (("outcome", "dropped"),))
    _process(out)
    out.lines.append("")
    return "\n".join(out.lines).encode("utf-8")
