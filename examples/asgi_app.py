"""Satchel's Backpack protocols as an ASGI app, served by hypercorn (trio).

Run it::

    python examples/asgi_app.py --port 8000 --api-key K

It prints ``ready at http://HOST:PORT`` once it accepts connections. Data is
kept in memory, uploaded files in a temporary directory. To mount Satchel inside an ASGI stack of your own instead,
take ``create_asgi_app(store, config)`` - a quart-trio app - and route a
prefix to it; serve the whole stack with ``serve_asgi`` (hypercorn's trio
worker with every connection guarded, STACK.md's hazard #225) or another
ASGI server that runs trio.
"""

from __future__ import annotations

import argparse
import logging
import signal
import tempfile
from functools import partial

import trio

from satchel.protocol.backpack import BackpackConfig
from satchel.storage_backends.files import LocalFileStore
from satchel.storage_backends.memory import MemoryStore
from satchel.transports.asgi import create_asgi_app, hypercorn_config, serve_asgi


async def _stop_signal() -> None:
    """Returns at SIGINT or SIGTERM: hypercorn then shuts down gracefully."""
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for _ in signals:
            return


async def main(host: str, port: int, api_key: str) -> None:
    store = MemoryStore()
    # Uploaded files need a disk; this demo keeps them in a temporary directory.
    with tempfile.TemporaryDirectory(prefix="satchel-asgi-") as uploads:
        app = create_asgi_app(store, BackpackConfig(api_key=api_key), files=LocalFileStore(uploads))
        async with trio.open_nursery() as nursery:
            config = hypercorn_config(host, port)
            config.graceful_timeout = 1.0
            binds = await nursery.start(partial(serve_asgi, app, config, shutdown_trigger=_stop_signal))
            print(f"Satchel (ASGI) is ready at {binds[0]}", flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Satchel's Backpack API as a quart-trio app on hypercorn")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--api-key", required=True)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    trio.run(main, args.host, args.port, args.api_key)
