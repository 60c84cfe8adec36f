"""Order across nodes (issue 15 part 2; README, "Running several
processes", the guarantees): two nodes writing at once - one kv entry, one
record, one channel's chats - and a subscribe answered while the other
node writes. Each case failed on the code before its fix (the commit that
added it says how often).
"""

from __future__ import annotations

import secrets
import threading
import time
from typing import Any

from multinode_clients import (SCOPE, SocketIo, asnity_api, backpack, bearer, chat_channel, cluster,
                               put_entry, resources, session, version_ms, warm_up)
from multinode_harness import Cluster, Node
from server_process import Http

__all__ = ["cluster"]  # the module fixture, imported
#: writes per node in the races
WRITES = 10


def test_two_nodes_writing_at_once_keep_versions_and_each_nodes_commit_order(cluster: Cluster) -> None:
    """One kv entry written through both nodes at once: every subscriber, on
    either node, sees versions only grow (guarantee 3) and the last write.
    Records written through both nodes at once: each subscriber sees each
    node's records in the order that node committed them (guarantee 2)."""
    a, b = cluster.nodes
    session(a, "race@example.com").close()
    token = bearer(a, "race@example.com")
    entry = f"race:{secrets.token_hex(3)}"
    collection = f"race{secrets.token_hex(3)}"
    subscribers = [resources(a, token), resources(b, token)]
    readers = [backpack(a, session(a, "race-a@example.com")), backpack(b, session(b, "race-b@example.com"))]
    try:
        for ws in subscribers:
            ws.send({"action": "subscribe", "resource": {"type": "kvStore", "id": entry}})
            ws.next(lambda f: "warning" in f or "data" in f)
        for ws, other in zip(subscribers, (b, a)):
            warm_up(lambda n, other=other: put_entry(other, token, entry, {"warm": n}), ws,
                    lambda f: "warm" in (f.get("data") or {}), "race kv")
        writers = {node: session(node, f"race-w{i}@example.com") for i, node in enumerate((a, b))}
        for reader, other in zip(readers, (b, a)):
            warm_up(lambda n, other=other: writers[other].request("POST", f"/{collection}", {"warm": n}), reader,
                    lambda f: f.get("collection") == collection, "race bp")
        committed: dict[str, list[str]] = {"a": [], "b": []}
        last: dict[str, int] = {}

        def write(name: str, node: Node) -> None:
            for n in range(WRITES):
                version = put_entry(node, token, entry, {"by": name, "n": n})["version"]
                last[name] = version
                status, record, _ = writers[node].request("POST", f"/{collection}", {"by": name, "n": n})
                assert status == 200
                committed[name].append(record["_id"])

        threads = [threading.Thread(target=write, args=(name, node)) for name, node in (("a", a), ("b", b))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        newest = max(last.values())  # ISO 8601 of one width: text order is time order
        for ws in subscribers:
            frames: list[Any] = []
            while not frames or frames[-1]["version"] != newest:
                frames.append(ws.next(lambda f: "by" in (f.get("data") or {})))
            versions = [version_ms(f["version"]) for f in frames]
            assert versions == sorted(set(versions)), "a subscriber saw an older version after a newer one"
        for reader in readers:
            seen: dict[str, list[str]] = {"a": [], "b": []}
            while len(seen["a"]) < WRITES or len(seen["b"]) < WRITES:
                frame = reader.next(lambda f: f.get("collection") == collection and "by" in f["response"])
                seen[frame["response"]["by"]].append(frame["response"]["_id"])
            assert seen == committed
    finally:
        for ws in subscribers + readers:
            ws.close()


def test_one_record_written_through_both_nodes_at_once_never_goes_back_for_any_subscriber(cluster: Cluster) -> None:
    """Guarantee 3 for records: one record patched through both nodes at
    once (every patch a compare-and-swap on the shared store's revision).
    The subscribers on both nodes may each miss a write that lost the race
    on the broker, but never see two writes in opposite orders, and each
    ends on the record as stored."""
    a, b = cluster.nodes
    collection = f"one{secrets.token_hex(3)}"
    writers = {"a": session(a, "one-a@example.com"), "b": session(b, "one-b@example.com")}
    status, record, _ = writers["a"].request("POST", f"/{collection}", {"by": "start", "n": -1})
    assert status == 200, record
    path = f"/{collection}/{record['_id']}"
    readers = {"a": backpack(a, session(a, "one-ra@example.com")), "b": backpack(b, session(b, "one-rb@example.com"))}
    try:
        for name, other in (("a", "b"), ("b", "a")):  # each reader's node follows the other's writes
            warm_up(lambda n, other=other: writers[other].request("PATCH", path, {"by": "warm", "n": n}),
                    readers[name], lambda f: f.get("collection") == collection and f["response"].get("by") == "warm",
                    "one record")

        def write(name: str) -> None:
            for n in range(WRITES * 3):
                status, body, _ = writers[name].request("PATCH", path, {"by": name, "n": n})
                assert status == 200, body

        threads = [threading.Thread(target=write, args=(name,)) for name in ("a", "b")]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        status, stored, _ = writers["a"].request("GET", path)
        assert status == 200
        final = (stored["by"], stored["n"])
        seen: dict[str, list[tuple[str, int]]] = {}
        for name, reader in readers.items():
            writes: list[tuple[str, int]] = []
            frame_of_ours = lambda f: f.get("collection") == collection and f["response"].get("by") in ("a", "b")
            try:
                while final not in writes:
                    frame = reader.next(frame_of_ours)
                    writes.append((frame["response"]["by"], frame["response"]["n"]))
            except AssertionError:
                raise AssertionError(f"reader {name} never saw the stored record: {writes[-5:]} vs {final}") from None
            writes.extend((f["response"]["by"], f["response"]["n"]) for f in reader.drain(0.5) if frame_of_ours(f))
            assert writes[-1] == final, f"reader {name} does not end on the stored record"
            seen[name] = writes
        # One order for both: every pair both saw, they saw in the same order.
        place = {write: i for i, write in enumerate(seen["a"])}
        common = [place[write] for write in seen["b"] if write in place]
        assert common == sorted(common), "the two nodes' subscribers saw writes of one record in opposite orders"
        for name in ("a", "b"):  # each writer's own writes are in its order at every subscriber
            for reader in seen.values():
                mine = [n for by, n in reader if by == name]
                assert mine == sorted(mine)
    finally:
        for reader in readers.values():
            reader.close()


def test_a_write_made_elsewhere_right_after_a_subscribe_is_answered_reaches_it(cluster: Cluster) -> None:
    """``Follow``: a subscribe is answered only once this node's broker
    follows what it subscribed to, so a write made through the other node
    the moment the answer arrives is not missed. Before, the node followed
    the topic a few milliseconds after the subscription was in its registry,
    and such a write was lost silently. Fresh entries each time: nothing
    else on A follows them."""
    a, b = cluster.nodes
    session(a, "follow@example.com").close()
    token = bearer(a, "follow@example.com")
    subscriber = resources(a, token)
    writer = Http(b)
    missed = []
    try:
        for n in range(12):
            entry = f"follow:{secrets.token_hex(4)}"
            subscriber.send({"action": "subscribe", "resource": {"type": "kvStore", "id": entry}})
            assert subscriber.next(lambda f: f.get("warning") == "resource_not_found")
            status, body, _ = writer.request("PUT", f"/realtime/kv/{entry}", {"n": n}, key=None,
                                             headers={**SCOPE, "Authorization": f"Bearer {token}"})
            assert status == 200, body
            try:
                subscriber.next(lambda f: (f.get("data") or {}).get("n") == n, timeout=3)
            except AssertionError:
                missed.append(n)
        assert not missed, f"writes made through B right after A answered the subscribe were missed: {missed}"
    finally:
        writer.close()
        subscriber.close()


def test_chats_of_one_channel_posted_through_both_nodes_at_once_reach_both_rooms_in_id_order(cluster: Cluster) -> None:
    """Guarantee 4: a channel's chat ids are its commit order; two nodes
    posting to one channel at once, the room's sockets on both nodes get
    every chat once, in id order (a chat that arrives before its
    predecessor waits for it)."""
    a, b = cluster.nodes
    token, community, channel = chat_channel(a, "order")
    sockets = {name: SocketIo(node, f"/socket/commu-{community}", token) for name, node in (("a", a), ("b", b))}
    try:
        for name, socket_ in sockets.items():
            socket_.emit("join", {"channels": [channel]})
        for name, other in (("a", b), ("b", a)):  # each room hears the other node's chats
            deadline = time.monotonic() + 15
            while not [e for e in sockets[name].events(0.3) if e[0] == "new-chat"]:
                assert time.monotonic() < deadline, f"{name} never heard the other node's chats"
                asnity_api(other, "POST", f"/api/channels/{channel}/chat", {"type": "TEXT", "content": "warm"}, token)
        for socket_ in sockets.values():
            socket_.events(0.3)  # the warm-up's last chats
        posted: dict[str, list[int]] = {"a": [], "b": []}

        def post(name: str, node: Node) -> None:
            for n in range(20):
                chat = asnity_api(node, "POST", f"/api/channels/{channel}/chat",
                               {"type": "TEXT", "content": f"{name} {n}"}, token)
                posted[name].append(chat["id"])

        threads = [threading.Thread(target=post, args=(name, node)) for name, node in (("a", a), ("b", b))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        every = sorted(posted["a"] + posted["b"])
        assert len(every) == 40
        for name, socket_ in sockets.items():
            ids: list[int] = []
            deadline = time.monotonic() + 10
            while len(ids) < 40 and time.monotonic() < deadline:
                ids += [chat["id"] for event, chat in socket_.events(0.5)
                        if event == "new-chat" and chat["content"] != "warm"]
            assert sorted(ids) == every, f"the room on {name} did not get every chat once"
            assert ids == every, f"the room on {name} got a channel's chats out of id order: {ids}"
    finally:
        for socket_ in sockets.values():
            socket_.close()
