"""What the soak (bench_soak.py) writes to: the names it uses (accounts,
kv keys, inboxes, collections), the accounts, inboxes and Asnity channel it
sets up before the load, and the check after kill -9 that every write the
server acknowledged is stored."""

from __future__ import annotations

import secrets
from typing import Any

import harness  # benches/harness.py: HTTP clients, accounts, constants
import socketio_cases  # benches/socketio_cases.py: the Asnity REST client

HOST = harness.HOST
EMAIL = "soak@bench.example.com"
SIO_EMAIL = "soak-sio@bench.example.com"
ORG, PROJECT = "soakOrg", "soakProj"
KV_KEYS = [f"World:soak:key{n}" for n in range(8)]
INBOXES = 4
MESSAGE_IDS = 64  # per inbox, in turn: the documents stay small
ARTICLES = "articles"  # Backpack REST creates: Backpack, Directus and resource subscribers all see them
WS_COLLECTION = "soakws"  # Backpack websocket creates


def prepare(port: int) -> dict[str, Any]:
    """Accounts, tokens, inboxes and an Asnity community with a channel."""
    client = harness.satchel_login(port, EMAIL)
    cookie = client.cookie
    status, record = client.request("POST", f"/{ARTICLES}", {"title": "the probe's neighbour"})
    assert status == 200, (status, record)
    client.close()
    directus = harness.Http(port)
    status, answer = directus.request("POST", "/auth/login", {"email": EMAIL, "password": harness.PASSWORD,
                                                              "mode": "json"})
    directus.close()
    assert status == 200, (status, answer)
    token = answer["data"]["access_token"]
    inboxes = []
    for _ in range(INBOXES):
        read, write = secrets.token_hex(16), secrets.token_hex(16)
        http = harness.Http(port)
        status, body = http.request("PUT", f"/backend/documents/{read}", {"title": "soak", "#messages": {}},
                                    {"Write-Token": write, "Derived-From": "0", "Revision": "1"})
        http.close()
        assert status == 200, (status, body)
        inboxes.append({"read": read, "write": write})
    api = socketio_cases.AsnityApi(port)
    try:
        api.call("POST", "/user/auth/signup", {"id": SIO_EMAIL, "password": harness.PASSWORD, "nickname": "soak"})
        sio_token = api.sign_in(SIO_EMAIL, harness.PASSWORD)
        community = api.call("POST", "/community", {"name": "soak"})["_id"]
        channel = api.call("POST", "/channel", {"communityId": community, "name": "general", "isPrivate": False,
                                                 "type": "Channel"})["_id"]
    finally:
        api.close()
    return {"port": port, "cookie": cookie, "token": token, "inboxes": inboxes, "sio_token": sio_token,
            "community": community, "channel": channel}


def verify(port: int, setup: dict[str, Any], acked: dict[str, Any]) -> dict[str, Any]:
    client = harness.satchel_login(port, EMAIL)
    try:
        found: dict[str, Any] = {}
        for name, collection in (("rest", ARTICLES), ("ws", WS_COLLECTION)):
            status, records = client.request("GET", f"/{collection}")
            stored = {r["_id"] for r in records} if status == 200 and isinstance(records, list) else set()
            missing = [i for i in acked[name] if i not in stored]
            found[name] = {"acknowledged": len(acked[name]), "stored": len(stored), "lost": len(missing),
                           "lost_examples": missing[:5]}
    finally:
        client.close()
    directus = harness.Http(port)
    status, answer = directus.request("POST", "/auth/login", {"email": EMAIL, "password": harness.PASSWORD,
                                                              "mode": "json"})
    token = answer["data"]["access_token"]
    lost, wrong = 0, []
    for key, n in acked["kv"].items():
        status, entry = directus.request("GET", f"/realtime/kv/{key}", None,
                                         {"Authorization": f"Bearer {token}", "x-m2-organization": ORG,
                                          "x-m2-project": PROJECT})
        stored_n = (entry or {}).get("data", {}).get("n") if status == 200 and isinstance(entry, dict) else None
        if stored_n is None or stored_n < n:  # a later write, in flight at the kill, may have landed too
            lost += 1
            wrong.append(f"{key}: acknowledged n={n}, stored {stored_n}")
    found["kv"] = {"keys": len(acked["kv"]), "acknowledged_writes": "last per key", "lost": lost,
                   "lost_examples": wrong[:5]}
    lost, wrong = 0, []
    documents = {}
    for n, inbox in enumerate(setup["inboxes"]):
        status, document = directus.request("GET", f"/backend/documents/{inbox['read']}")
        documents[n] = (document or {}).get("#messages", {}) if status == 200 and isinstance(document, dict) else {}
    for slot, revision in acked["inbox"].items():
        inbox, message_id = slot.split("/")
        stored = documents[int(inbox)].get(message_id, {}).get("#")
        if stored is None or stored < revision:
            lost += 1
            wrong.append(f"inbox {inbox} message {message_id}: acknowledged # {revision}, stored {stored}")
    found["inbox"] = {"message_slots": len(acked["inbox"]), "lost": lost, "lost_examples": wrong[:5]}
    directus.close()
    api = socketio_cases.AsnityApi(port)
    try:
        api.sign_in(SIO_EMAIL, harness.PASSWORD)
        stored_chats: set[int] = set()
        page = api.call("GET", f"/channels/{setup['channel']}/chat?prev=-1")
        for _ in range(100_000):
            for chat in page.get("chat", []):
                content = chat.get("content") or ""
                if content.startswith("#") and content[1:11].isdigit():
                    stored_chats.add(int(content[1:11]))
            if "prev" not in page:
                break
            page = api.call("GET", f"/channels/{setup['channel']}/chat?prev={page['prev']}")
    finally:
        api.close()
    missing_chats = sorted(set(acked["chats"]) - stored_chats)
    found["chats"] = {"acknowledged": len(acked["chats"]), "stored": len(stored_chats), "lost": len(missing_chats),
                      "lost_examples": missing_chats[:5]}
    found["lost_total"] = sum(part["lost"] for part in found.values() if isinstance(part, dict))
    return found
