"""What counting costs the fan-out path, in process (issue 16 part 3).

The fan-out bench (``run.py --only fanout``) swings by a third between runs
on a shared machine, far more than the 3% budget the metrics may cost, so
this measures the code path the counters sit on, CPU-bound and without a
client: a ``Hub`` with 1,000 real ``WebsocketConnection`` objects on
socketpairs, 8 broadcasts of a 100-byte message per batch (as the fan-out
bench keeps 8 in flight), one flush - one ``send`` per recipient per batch,
as in the server - then the peers drained. Run it against two trees to
compare (the best of ``--repeat`` rounds, ns per delivery)::

    PYTHONPATH=/path/to/tree-without-metrics python benches/bench_metrics.py
    python benches/bench_metrics.py            # this tree
"""

from __future__ import annotations

import argparse
import socket
import time

from satchel.transports.hub import Hub
from satchel.transports.interfaces import ServerLimits
from satchel.transports.websocket import connection as websocket


def fanout_ns_per_delivery(subscribers: int, per_batch: int, batches: int) -> float:
    hub = Hub()
    # As under Server, where the flusher task runs: deliveries queue, and
    # flush() writes them - one send per recipient for the batch.
    hub._flusher = object()  # type: ignore[assignment]
    pairs = []
    for _ in range(subscribers):
        ours, theirs = socket.socketpair()
        ours.setblocking(False)
        theirs.setblocking(False)
        conn = websocket.WebsocketConnection(ours, ServerLimits(), lambda fn: None)
        conn._state = websocket.OPEN
        hub.add(conn)
        pairs.append((ours, theirs))
    ids = list(hub)
    payload = b'{"action":"broadcast","response":"' + b"x" * 64 + b'"}'
    elapsed = 0.0
    try:
        for _ in range(batches):
            start = time.perf_counter()
            for _ in range(per_batch):
                hub.deliver(payload, ids)
            hub.flush()
            elapsed += time.perf_counter() - start
            for _, theirs in pairs:
                try:
                    while theirs.recv(1 << 16):
                        pass
                except BlockingIOError:
                    pass
    finally:
        for ours, theirs in pairs:
            ours.close()
            theirs.close()
    return elapsed / (batches * per_batch * subscribers) * 1e9


def _uncounted() -> dict[tuple[type, str], object]:
    """``Hub.deliver`` and ``WebsocketConnection.send_frame`` as they were before
    the counting lines: compiled from their own source with the lines that
    name ``METRICS`` left out, in their own modules' namespaces."""
    import inspect
    import textwrap

    from satchel.transports import hub as hub_module

    variants = {}
    for cls, name, module in ((Hub, "deliver", hub_module), (websocket.WebsocketConnection, "send_frame", websocket)):
        source = textwrap.dedent(inspect.getsource(getattr(cls, name)))
        kept = "\n".join(line for line in source.splitlines() if "METRICS" not in line)
        namespace: dict = {}
        exec(compile(kept, module.__file__, "exec"), vars(module), namespace)
        variants[(cls, name)] = namespace[name]
    return variants


def compare(options: argparse.Namespace) -> None:
    """Counted and uncounted rounds interleaved in one process: the same
    machine state for both, round by round."""
    uncounted = _uncounted()
    counted = {key: getattr(*key) for key in uncounted}
    results: dict[str, list[float]] = {"counted": [], "uncounted": []}
    for n in range(options.repeat):
        # Each first on alternate rounds: whichever runs second inherits the other's aftermath.
        order = (("uncounted", uncounted), ("counted", counted))
        for label, variant in order if n % 2 else order[::-1]:
            for (cls, name), function in variant.items():
                setattr(cls, name, function)
            results[label].append(fanout_ns_per_delivery(options.subscribers, options.per_batch, options.batches))
    for (cls, name), function in counted.items():
        setattr(cls, name, function)
    for label, rounds in results.items():
        ordered = sorted(rounds)
        print(f"{label:9s}: best {ordered[0]:.1f}, median {ordered[len(ordered) // 2]:.1f} ns per delivery "
              f"({len(rounds)} rounds)")
    best = min(results["counted"]) / min(results["uncounted"]) - 1
    median = sorted(results["counted"])[options.repeat // 2] / sorted(results["uncounted"])[options.repeat // 2] - 1
    print(f"counting costs {best:+.1%} (best), {median:+.1%} (median)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument("--per-batch", type=int, default=8)
    parser.add_argument("--batches", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--compare", action="store_true",
                        help="interleave rounds with and without the counting lines (this tree only)")
    options = parser.parse_args()
    if options.compare:
        compare(options)
        return
    rounds = [fanout_ns_per_delivery(options.subscribers, options.per_batch, options.batches)
              for _ in range(options.repeat)]
    print(f"fan-out: {min(rounds):.1f} ns per delivery (best of {options.repeat}; "
          f"all: {', '.join(f'{r:.0f}' for r in rounds)})")


if __name__ == "__main__":
    main()
