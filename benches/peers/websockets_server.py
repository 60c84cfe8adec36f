"""Peer: a broadcast server on the `websockets` library (asyncio), written
the way its documentation recommends (``websockets.broadcast``).

It speaks the same small subset of Backpack that the fan-out bench uses, so
the load generator sends it the very same bytes as Satchel:
- every connection first gets a greeting frame;
- ``{"action":"join","channelType":T,"channelId":I}`` joins a room and is
  answered ``{"action":"joined"}``;
- ``{"action":"broadcast",...}`` is relayed unchanged to the members of the
  room it names (``channelType`` + ``channelId``), else to every connection.

Usage: python websockets_server.py PORT   (0 picks one; prints "listening on N")
"""

import asyncio
import json
import sys

from websockets.asyncio.server import broadcast, serve

GREETING = '{"action":"connection","response":"Websocket connection established"}'
CLIENTS = set()
ROOMS: dict = {}


async def handler(websocket):
    CLIENTS.add(websocket)
    joined = []
    try:
        await websocket.send(GREETING)
        async for message in websocket:
            msg = json.loads(message)
            action = msg.get("action")
            if action == "broadcast":
                channel_type, channel_id = msg.get("channelType"), msg.get("channelId")
                if channel_type is not None and channel_id is not None:
                    broadcast(ROOMS.get((channel_type, channel_id), ()), message)
                else:
                    broadcast(CLIENTS, message)
            elif action == "join":
                key = (msg["channelType"], msg["channelId"])
                ROOMS.setdefault(key, set()).add(websocket)
                joined.append(key)
                await websocket.send('{"action":"joined"}')
    finally:
        CLIENTS.discard(websocket)
        for key in joined:
            ROOMS.get(key, set()).discard(websocket)


async def main(port: int) -> None:
    async with serve(handler, "127.0.0.1", port, ping_interval=None, compression=None, backlog=4096) as server:
        bound = next(iter(server.sockets)).getsockname()[1]
        print(f"listening on {bound}", flush=True)
        await asyncio.get_running_loop().create_future()


if __name__ == "__main__":
    try:
        asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 0))
    except KeyboardInterrupt:
        pass
