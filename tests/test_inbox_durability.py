"""Every inbox message acknowledged over UDP survives kill -9 of the server,
when datagrams arrive in bursts that the endpoint reads and commits as
batches (issue 13 part 2): an answer is only sent once its batch's one
store write has committed."""

from __future__ import annotations

import os
import secrets
import socket
import threading
import time
from pathlib import Path

from satchel.protocol.inbox import decode_answer, encode_request
from server_process import Http, ServerProcess, wait_until

SENDERS = 4
BURST = 64  # datagrams sent back to back from one socket before reading the answers


def _new_inbox(client: Http) -> tuple[str, str]:
    read_token, write_token = secrets.token_hex(16), secrets.token_hex(16)
    status, _, _ = client.request("PUT", f"/backend/documents/{read_token}", {"#messages": {}},
                                  headers={"Write-Token": write_token, "Derived-From": "0", "Revision": "1"})
    assert status == 200
    return read_token, write_token


def test_every_acknowledged_datagram_of_a_burst_survives_kill_9(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path)
    setup = Http(server)
    inboxes = [_new_inbox(setup) for _ in range(2)]
    acknowledged: dict[tuple[int, str], int] = {}  # (inbox, message id) -> highest revision answered "M"
    answered = [0]  # answers "M"
    lock = threading.Lock()
    stop = threading.Event()

    def sender(worker: int) -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.settimeout(0.5)
            revision = 0
            while not stop.is_set():
                revision += 1
                sent = {}
                for n in range(BURST):
                    index = n % len(inboxes)
                    message_id = f"{worker:08x}{n:08x}"
                    request = encode_request(inboxes[index][1], message_id, {"#": revision, "w": worker},
                                             timestamp_ms=time.time_ns() // 1_000_000, nonce=os.urandom(8))
                    sent[request[30:38]] = (request, index, message_id)
                    try:
                        udp.sendto(request, ("127.0.0.1", server.port))
                    except OSError:
                        return
                for _ in range(BURST):
                    try:
                        answer = udp.recv(64)
                    except (socket.timeout, OSError):
                        break
                    request, index, message_id = sent.get(answer[6:14], (None, 0, ""))
                    if request is not None and decode_answer(answer, inboxes[index][1], request) == "M":
                        with lock:
                            key = (index, message_id)
                            acknowledged[key] = max(acknowledged.get(key, 0), revision)
                            answered[0] += 1

    threads = [threading.Thread(target=sender, args=(w,)) for w in range(SENDERS)]
    for thread in threads:
        thread.start()
    wait_until(lambda: answered[0] >= 20 * BURST, timeout=60)
    server.kill()  # SIGKILL, mid-load
    stop.set()
    for thread in threads:
        thread.join(10)
    with lock:
        acked = dict(acknowledged)

    restarted = ServerProcess(tmp_path)
    try:
        reader = Http(restarted)
        lost = 0
        for index, (read_token, _) in enumerate(inboxes):
            status, document, _ = reader.request("GET", f"/backend/documents/{read_token}")
            assert status == 200
            stored = document["#messages"]
            for (inbox, message_id), revision in acked.items():
                if inbox == index and stored.get(message_id, {}).get("#", 0) < revision:
                    lost += 1
        assert lost == 0, f"{lost} acknowledged messages lost of {len(acked)}"
        assert answered[0] >= 20 * BURST
    finally:
        restarted.stop()
