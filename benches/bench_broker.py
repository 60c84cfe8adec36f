"""Broker throughput for the bus, one process, loopback (issue 15 part 2).

One publisher connection sends ``--messages`` messages of ``--size`` bytes on
one topic; a second connection, subscribed, receives them; the figure is
messages/s from the first publish to the last receipt, under trio:

- ``redis``: ``RedisBroker`` (coredis, native to trio);
- ``nats``: ``NatsBroker`` (Satchel's own sans-IO NATS client, native to trio);
- ``nats-py bridged``: the official nats-py (asyncio) in a thread of its own,
  each publish handed over with ``call_soon_threadsafe`` and each receipt
  handed back with ``TrioToken.run_sync_soon`` - what running it under trio
  would take. Needs ``pip install nats-py``.

    python benches/bench_broker.py [--messages 50000] [--size 200]
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import threading
import time

import trio

from satchel.transports.brokers.nats import NatsBroker
from satchel.transports.brokers.redis import RedisBroker

REDIS = "redis://127.0.0.1:6379"
NATS = "nats://127.0.0.1:4222"


async def native(make, count: int, size: int) -> float:
    prefix = f"bench{secrets.token_hex(4)}"
    topic = f"{prefix}.rec.x"
    publisher, subscriber = make(prefix), make(prefix)
    done = trio.Event()
    got = 0

    def deliver(_topic: str, _data: bytes) -> None:
        nonlocal got
        got += 1
        if got == count:
            done.set()

    async with trio.open_nursery() as nursery:
        await nursery.start(publisher.run, lambda t, d: None)
        await nursery.start(subscriber.run, deliver)
        await subscriber.set_interest(frozenset({topic}))
        await trio.sleep(0.2)
        payload = b"x" * size
        start = time.perf_counter()
        for n in range(count):
            publisher.publish(topic, payload)
            if n % 1000 == 999:
                await trio.sleep(0)  # as a server does: publishes come from many tasks
        with trio.fail_after(60):
            await done.wait()
        elapsed = time.perf_counter() - start
        nursery.cancel_scope.cancel()
    return count / elapsed


async def bridged(count: int, size: int) -> float:
    import nats  # nats-py

    topic = f"bench{secrets.token_hex(4)}.rec.x"
    token = trio.lowlevel.current_trio_token()
    done = trio.Event()
    got = 0
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    state: dict = {}

    def on_trio(_data: bytes) -> None:
        nonlocal got
        got += 1
        if got == count:
            done.set()

    async def setup() -> None:
        state["pub"] = await nats.connect(NATS)
        state["sub"] = await nats.connect(NATS)

        async def handler(msg) -> None:
            token.run_sync_soon(on_trio, msg.data)

        await state["sub"].subscribe(topic, cb=handler)
        await state["sub"].flush()
        ready.set()

    thread = threading.Thread(target=lambda: (loop.run_until_complete(setup()), loop.run_forever()), daemon=True)
    thread.start()
    await trio.to_thread.run_sync(ready.wait)
    payload = b"x" * size
    pub = state["pub"]
    start = time.perf_counter()
    for n in range(count):
        loop.call_soon_threadsafe(lambda: loop.create_task(pub.publish(topic, payload)))
        if n % 1000 == 999:
            await trio.sleep(0)
    with trio.fail_after(120):
        await done.wait()
    elapsed = time.perf_counter() - start

    async def close() -> None:
        await state["pub"].close()
        await state["sub"].close()

    asyncio.run_coroutine_threadsafe(close(), loop).result(10)
    loop.call_soon_threadsafe(loop.stop)
    return count / elapsed


async def main(args: argparse.Namespace) -> None:
    rows = [
        ("redis (coredis, native)", lambda: native(lambda p: RedisBroker(f"{REDIS}?prefix={p}"), args.messages, args.size)),
        ("nats (Satchel's client, native)", lambda: native(lambda p: NatsBroker(f"{NATS}?prefix={p}"), args.messages, args.size)),
        ("nats-py, bridged from a thread", lambda: bridged(args.messages, args.size)),
    ]
    for name, run in rows:
        try:
            rate = await run()
        except Exception as error:  # a broker or nats-py missing
            print(f"{name:36s} skipped: {error!r}")
            continue
        print(f"{name:36s} {rate:10,.0f} messages/s")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=50_000)
    parser.add_argument("--size", type=int, default=200)
    trio.run(main, parser.parse_args())
