"""What the access log's line costs a request (issue 16 part 4).

The 'wire' layer of ``profile_rest.py`` (the reference HTTP connection and
the application over a socketpair, SQLite, one request at a time), run in
alternating rounds in one process: the access log off, then on in the text
format, then on in JSON - each line written to a file through a
``StreamHandler`` (one ``write`` per line, as to standard error), so the
figure includes the system call. Rounds alternate because this machine is
shared: compare within a pair, not across runs.

Run:
    python benches/bench_access_log.py                   # get by id, 5 rounds of 5,000 requests
    python benches/bench_access_log.py --call create --rounds 7 --requests 3000
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import tempfile
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).parent))

from profile_rest import time_wire  # noqa: E402

from satchel.transports.access_log import configure_logging  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--call", choices=("get", "create", "list"), default="get")
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=5)
    options = parser.parse_args(argv)
    results: dict[str, list[float]] = {"off": [], "text": [], "json": []}
    with tempfile.TemporaryDirectory(prefix="satchel-access-") as tmp:
        with open(Path(tmp) / "log", "w") as sink:
            for _ in range(options.rounds):
                for mode in results:
                    configure_logging("INFO", "json" if mode == "json" else "text", access_log=mode != "off",
                                      stream=sink)
                    results[mode].append(trio.run(time_wire, options.call, options.requests, None))
            lines = sum(1 for _ in open(Path(tmp) / "log"))
    logging.getLogger().handlers.clear()
    print(f"Backpack {options.call}, wire layer, {options.rounds} rounds of {options.requests:,} requests "
          f"({lines:,} lines written)")
    base = statistics.median(results["off"])
    for mode, values in results.items():
        median = statistics.median(values)
        print(f"  access log {mode:5} median {median:6.1f} us/request (best {min(values):6.1f}), "
              f"{(median / base - 1) * 100:+5.1f}% | rounds: {', '.join(f'{v:.1f}' for v in values)}")


if __name__ == "__main__":
    main()
