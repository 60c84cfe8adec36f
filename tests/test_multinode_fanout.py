"""Two real ``satchel serve`` processes on one PostgreSQL database and one
broker - Redis, then NATS (issue 15 parts 2 and 3; README, "Running several
processes").

A client of node A sees what is written or broadcast through node B - over
Backpack (REST writes, websocket broadcasts), resource subscriptions (kv
entries) and Socket.IO (Asnity chats posted over REST, in the channel's
room) - in order, once (races of two nodes writing at once:
``test_multinode_order.py``); a node with no interested
connection is sent nothing of a topic (the traffic each node logs); a logout
on A refuses the cookie and the Bearer token on B at once; an inbox datagram
replayed to B after A admitted it is dropped; a Socket.IO long-polling
session of A is unknown to B (its own 400, "Session ID unknown"); and kill -9
of B leaves A serving.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import time
from typing import Any

from websockets.sync.client import connect

from satchel.protocol.inbox.datagrams import decode_answer, encode_request
from satchel.transports.brokers.topics import Topics

from multinode_clients import (PASSWORD, SCOPE, SocketIo, asnity_api, backpack, bearer, chat_channel, cluster,
                               directus_login, put_entry, resources, session, warm_up)
from multinode_harness import Cluster, wait_for
from server_process import Http

__all__ = ["cluster"]  # the module fixture, imported


# -- fan-out across nodes ---------------------------------------------------------------------


def test_backpack_rest_writes_through_b_reach_a_websocket_in_order_once(cluster: Cluster) -> None:
    a, b = cluster.nodes
    reader = session(a, "reader-bp@example.com")
    writer = session(b, "writer-bp@example.com")
    ws = backpack(a, reader)
    collection = f"multi{secrets.token_hex(3)}"
    try:
        warm_up(lambda n: writer.request("POST", f"/{collection}", {"warm": n}), ws,
                lambda f: f.get("collection") == collection, "backpack")
        ws.drain(0.2)  # later warm-up frames
        sent = []
        for n in range(12):
            status, record, _ = writer.request("POST", f"/{collection}", {"n": n})
            assert status == 200
            sent.append(record["_id"])
        got = []
        while len(got) < len(sent):
            frame = ws.next(lambda f: f.get("collection") == collection and "n" in f["response"])
            assert frame["action"] == "create" and frame["httpRequest"] is True
            got.append(frame["response"]["_id"])
        assert got == sent
        late = [f for f in ws.drain(0.3) if f.get("collection") == collection and "n" in f.get("response", {})]
        assert late == []  # once
    finally:
        ws.close()


def test_a_backpack_broadcast_on_b_reaches_a_and_a_channel_stays_in_its_channel(cluster: Cluster) -> None:
    a, b = cluster.nodes
    listener = backpack(a, session(a, "listen-bc@example.com"))
    sender = backpack(b, session(b, "send-bc@example.com"))
    try:
        warm_up(lambda n: sender.send({"action": "broadcast", "warm": n + 1}), listener,
                lambda f: f.get("action") == "broadcast" and f.get("warm"), "broadcast")
        for n in range(10):
            sender.send({"action": "broadcast", "message": f"hello {n}"})
        got = [listener.next(lambda f: f.get("action") == "broadcast" and "message" in f)["message"] for _ in range(10)]
        assert got == [f"hello {n}" for n in range(10)]
    finally:
        listener.close()
        sender.close()


def test_resource_subscriber_on_a_hears_kv_writes_made_through_b(cluster: Cluster) -> None:
    a, b = cluster.nodes
    session(a, "kv-multi@example.com").close()
    token = bearer(a, "kv-multi@example.com")
    entry = f"multi:{secrets.token_hex(3)}"
    ws = resources(a, token)
    try:
        ws.send({"action": "subscribe", "resource": {"type": "kvStore", "id": entry}})
        ws.next(lambda f: "warning" in f or "data" in f)

        warm_up(lambda n: put_entry(b, token, entry, {"warm": n}), ws,
                lambda f: "warm" in (f.get("data") or {}), "kv")
        versions = [put_entry(b, token, entry, {"n": n})["version"] for n in range(20)]
        got = [ws.next(lambda f: "n" in (f.get("data") or {})) for _ in range(20)]
        assert [f["data"]["n"] for f in got] == list(range(20))
        assert [f["version"] for f in got] == versions
    finally:
        ws.close()


# -- what each node is sent ---------------------------------------------------------------------


def test_a_node_with_no_interested_connection_is_sent_nothing_of_that_topic(cluster: Cluster) -> None:
    """B follows entry X only; A writes X and Y: B's broker traffic counts X's
    writes and none of Y's (and on Redis, nobody subscribes Y's channel)."""
    a, b = cluster.nodes
    session(a, "traffic@example.com").close()
    token = bearer(a, "traffic@example.com")
    followed, ignored = f"x:{secrets.token_hex(3)}", f"y:{secrets.token_hex(3)}"
    ws = resources(b, token)
    try:
        ws.send({"action": "subscribe", "resource": {"type": "kvStore", "id": followed}})
        ws.next(lambda f: "warning" in f or "data" in f)
        warm_up(lambda n: put_entry(a, token, followed, {"warm": n}), ws,
                lambda f: "warm" in (f.get("data") or {}), "traffic")
        time.sleep(1.2)  # the next traffic line
        # Events, not broker messages: a burst on one topic may be joined into one message.
        before = wait_for(b.traffic, what="a traffic line").get("received_events", {}).get("ent", 0)
        for n in range(10):
            put_entry(a, token, ignored, {"n": n})
        for n in range(5):
            put_entry(a, token, followed, {"n": n})
        for _ in range(5):
            ws.next(lambda f: "n" in (f.get("data") or {}))

        def settled() -> Any:
            traffic = b.traffic()
            return traffic if traffic.get("received_events", {}).get("ent", 0) >= before + 5 else None

        after = wait_for(settled, timeout=5, what="B's traffic line")
        # A published Y's writes before X's, on one connection: had any reached
        # B, they would be counted by now.
        assert after["received_events"]["ent"] == before + 5  # X's five writes, none of Y's ten
        if cluster.kind == "redis":
            import redis_numsub

            topics = Topics(cluster.prefix)
            counts = redis_numsub.numsub([topics.entry("kvStore", *SCOPE.values(), followed),
                                          topics.entry("kvStore", *SCOPE.values(), ignored)])
            assert counts == [1, 0]
        assert after["following"] >= 2
    finally:
        ws.close()


# -- shared state ------------------------------------------------------------------------------


def test_a_logout_on_a_refuses_the_cookie_and_the_bearer_token_on_b_at_once(cluster: Cluster) -> None:
    a, b = cluster.nodes
    email = f"logout{secrets.token_hex(3)}@example.com"
    on_a = session(a, email)
    on_b = Http(b)
    on_b.cookie = on_a.cookie
    assert on_b.request("GET", "/logoutprobe")[0] == 200  # B has read (and cached) the session
    tokens = directus_login(a, email)
    headers = {"Authorization": f"Bearer {tokens['access_token']}"}
    assert on_b.request("GET", "/users/me", key=None, headers=headers)[0] == 200
    assert on_a.request("POST", "/logout")[0] == 200
    answered = time.monotonic()
    # B drops the cached session when the broker brings the revocation: the
    # next request after that is refused (within the broker's propagation).
    wait_for(lambda: on_b.request("GET", "/logoutprobe")[0] == 403, timeout=0.5, what="the logout reaching B",
             every=0.001)
    print(f"logout reached B within {1000 * (time.monotonic() - answered):.1f} ms")
    status, body, _ = Http(a).request("POST", "/auth/logout", {"refresh_token": tokens["refresh_token"]}, key=None,
                                      headers=headers)
    assert status in (200, 204), body
    assert on_b.request("GET", "/users/me", key=None, headers=headers)[0] == 401
    status, _, _ = Http(b).request("POST", "/auth/refresh", {"refresh_token": tokens["refresh_token"]}, key=None)
    assert status == 401


def _datagram(write_token: str, message_id: str) -> bytes:
    return encode_request(write_token, message_id, {"#": 1, "t": 1}, timestamp_ms=time.time_ns() // 1_000_000,
                          nonce=os.urandom(8))


def _exchange(port: int, datagram: bytes, timeout: float = 1.0) -> bytes | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        sock.sendto(datagram, ("127.0.0.1", port))
        try:
            return sock.recv(64)
        except socket.timeout:
            return None


def test_an_inbox_datagram_replayed_to_the_other_node_is_refused(cluster: Cluster) -> None:
    a, b = cluster.nodes
    read_token, write_token = secrets.token_hex(16), secrets.token_hex(16)
    status, body, _ = Http(a).request("PUT", f"/backend/documents/{read_token}", {"#messages": {}}, key=None,
                                      headers={"Write-Token": write_token, "Derived-From": "0", "Revision": "1"})
    assert status == 200, body
    fresh = _datagram(write_token, "00000000000000a1")
    assert decode_answer(_exchange(b.port, fresh) or b"", write_token, fresh) == "M"  # B admits a fresh one
    datagram = _datagram(write_token, "00000000000000a2")
    answer = _exchange(a.port, datagram)
    assert answer is not None and decode_answer(answer, write_token, datagram) == "M"
    time.sleep(0.05)
    assert _exchange(b.port, datagram) is None  # the replay, to the other node: dropped
    assert _exchange(a.port, datagram) is None  # and to the same one


def test_a_socketio_polling_session_of_a_is_unknown_to_b(cluster: Cluster) -> None:
    """Engine.IO sessions live in their node: a long-polling client needs
    sticky sessions (or websocket only); B answers with Engine.IO's own error."""
    a, b = cluster.nodes
    status, body, _ = Http(a).request("GET", "/socket.io/?EIO=4&transport=polling", key=None)
    assert status == 200
    text = body.decode() if isinstance(body, bytes) else json.dumps(body)
    sid = json.loads(text[text.index("{"):])["sid"]
    status, body, _ = Http(b).request("GET", f"/socket.io/?EIO=4&transport=polling&sid={sid}", key=None)
    assert status == 400 and body == {"code": 1, "message": "Session ID unknown"}


# -- Socket.IO rooms across nodes -----------------------------------------------------------------


def test_chats_written_through_b_reach_a_socketio_room_in_order_once(cluster: Cluster) -> None:
    """A Socket.IO client (websocket transport) in a channel's room on A; chats
    posted through B's REST API reach it as ``new-chat``, in order, once."""
    a, b = cluster.nodes
    token, community, channel = chat_channel(a, "chat")
    namespace = f"/socket/commu-{community}"
    ws = connect(f"ws://127.0.0.1:{a.port}/socket.io/?EIO=4&transport=websocket", open_timeout=10)
    try:
        assert ws.recv(timeout=10).startswith("0")  # the Engine.IO open packet
        ws.send(f"40{namespace}," + json.dumps({"token": f"Bearer {token}"}))
        assert ws.recv(timeout=10).startswith(f"40{namespace},")
        ws.send(f"42{namespace}," + json.dumps(["join", {"channels": [channel]}]))
        prefix = f'42{namespace},["new-chat",'

        def chats(timeout: float) -> list[Any]:
            got, deadline = [], time.monotonic() + timeout
            while (left := deadline - time.monotonic()) > 0:
                try:
                    packet = ws.recv(timeout=left)
                except TimeoutError:
                    break
                if packet == "2":
                    ws.send("3")  # Engine.IO ping
                elif isinstance(packet, str) and packet.startswith(prefix):
                    got.append(json.loads(packet[len(f"42{namespace},"):])[1])
                    if timeout > 1:
                        return got
            return got

        deadline = time.monotonic() + 15
        while not chats(0.3):  # until A follows the room's chats on the broker
            assert time.monotonic() < deadline, "A never followed the room"
            asnity_api(b, "POST", f"/api/channels/{channel}/chat", {"type": "TEXT", "content": "warm"}, token)
        chats(0.3)
        for n in range(10):
            asnity_api(b, "POST", f"/api/channels/{channel}/chat", {"type": "TEXT", "content": f"chat {n}"}, token)
        got: list[Any] = []
        while len(got) < 10:
            more = chats(10)
            assert more, "a chat did not arrive"
            got += [chat for chat in more if chat["content"] != "warm"]
        assert [chat["content"] for chat in got] == [f"chat {n}" for n in range(10)]
        assert [chat for chat in chats(0.3) if chat["content"] != "warm"] == []  # once
    finally:
        ws.close()


def test_an_invitation_made_through_a_reaches_the_invitees_socket_on_b_which_then_hears_the_room(
        cluster: Cluster) -> None:
    """Presence across nodes: the invitee's socket is on B; the owner invites
    it through A's REST API; B's socket gets ``invited-to-channel``, is in the
    room from then on, and hears the next chat posted through A."""
    a, b = cluster.nodes
    owner_email, guest_email = (f"{who}{secrets.token_hex(3)}@example.com" for who in ("owner", "guest"))
    tokens = {}
    for email in (owner_email, guest_email):
        asnity_api(a, "POST", "/api/user/auth/signup", {"id": email, "password": PASSWORD, "nickname": email[:6]})
        tokens[email] = asnity_api(a, "POST", "/api/user/auth/signin", {"id": email, "password": PASSWORD})["accessToken"]
    guest_id = asnity_api(a, "GET", "/api/user/auth/me", token=tokens[guest_email])["_id"]
    owner = tokens[owner_email]
    community = asnity_api(a, "POST", "/api/community", {"name": "invites"}, owner)["_id"]
    asnity_api(a, "POST", f"/api/communities/{community}/users", {"users": [guest_id]}, owner)
    channel = asnity_api(a, "POST", "/api/channel", {"communityId": community, "name": "later", "isPrivate": False,
                                                  "type": "Channel"}, owner)["_id"]
    guest = SocketIo(b, f"/socket/commu-{community}", tokens[guest_email])
    try:
        time.sleep(0.5)  # B follows the namespace on the broker a few ms after the socket is in it
        asnity_api(a, "POST", f"/api/channels/{channel}/users", {"community_id": community, "users": [guest_id]}, owner)
        invited = [data for name, data in guest.events(10, first=True) if name == "invited-to-channel"]
        assert invited and invited[0]["_id"] == channel
        time.sleep(0.5)  # and the room's chats once the socket joined the room
        asnity_api(a, "POST", f"/api/channels/{channel}/chat", {"type": "TEXT", "content": "welcome"}, owner)
        heard = [data for name, data in guest.events(10, first=True) if name == "new-chat"]
        assert heard and heard[0]["content"] == "welcome"
    finally:
        guest.close()


def test_rules_changed_through_a_are_in_force_on_b_at_once(cluster: Cluster) -> None:
    """The admin API on A replaces the rules; B, which loaded them at its
    start, takes the new ones from the broker (``RulesChanged``)."""
    import subprocess
    import sys

    a, b = cluster.nodes
    admin = f"root{secrets.token_hex(3)}@example.com"
    created = subprocess.run([sys.executable, "-m", "satchel.transports", "admin", "create", admin, "--store",
                              cluster.store, "--password-file", "-", "--data-dir", str(cluster.tmp / "admin")],
                             input=PASSWORD + "\n", capture_output=True, text=True, timeout=60)
    assert created.returncode == 0, created.stderr
    http = Http(a)
    access = directus_login(a, admin)["access_token"]
    collection = f"ruled{secrets.token_hex(3)}"
    reader = session(b, "ruled@example.com")
    assert reader.request("POST", f"/{collection}", {"x": 1})[0] == 200
    assert reader.request("GET", f"/{collection}")[0] == 200
    headers = {"Authorization": f"Bearer {access}"}
    status, current, _ = http.request("GET", "/_/api/rules", key=None, headers=headers)
    assert status == 200, current
    rules = {"version": 1, "roles": {"authenticated": {"rules": [
        {"collection": "*", "action": "*"}, {"collection": collection, "action": "*", "allowed": False}]}}}
    status, body, _ = http.request("PUT", "/_/api/rules", {"revision": current["data"]["revision"], "rules": rules},
                                   key=None, headers=headers)
    assert status == 200, body
    answered = time.monotonic()
    wait_for(lambda: reader.request("GET", f"/{collection}")[0] == 403, timeout=0.5, every=0.001,
             what="the new rules on B")
    print(f"rules in force on B within {1000 * (time.monotonic() - answered):.1f} ms")


# -- faults --------------------------------------------------------------------------------------


def test_kill_9_of_b_leaves_a_serving(cluster: Cluster) -> None:
    a, b = cluster.nodes
    http = session(a, "survivor@example.com")
    ws = backpack(a, http)
    try:
        b.kill()
        collection = f"after{secrets.token_hex(3)}"
        status, record, _ = http.request("POST", f"/{collection}", {"still": "here"})
        assert status == 200
        frame = ws.next(lambda f: f.get("collection") == collection)
        assert frame["response"]["_id"] == record["_id"]
        assert http.request("GET", f"/{collection}/{record['_id']}")[0] == 200
        assert a.alive()
    finally:
        ws.close()
