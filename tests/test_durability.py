"""An acknowledged write survives kill -9 of the server."""

from __future__ import annotations

import threading
from pathlib import Path

from server_process import Http, ServerProcess, wait_until


def test_every_acknowledged_record_survives_kill_9(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path)
    setup = Http(server)
    setup.login("durable@example.com")
    acknowledged: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()

    def writer(worker: int) -> None:
        client = Http(server, timeout=5)
        client.cookie = setup.cookie
        for n in range(5000):  # bounded; the kill ends it long before
            if stop.is_set():
                return
            try:
                status, record, _ = client.request("POST", "/durable", {"worker": worker, "n": n})
            except OSError:
                return
            if status == 200:
                with lock:
                    acknowledged.append(record["_id"])

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(8)]
    for thread in threads:
        thread.start()
    wait_until(lambda: len(acknowledged) >= 400, timeout=60)
    server.kill()  # SIGKILL, mid-load
    stop.set()
    for thread in threads:
        thread.join(10)
    with lock:
        acked = set(acknowledged)

    restarted = ServerProcess(tmp_path)
    try:
        reader = Http(restarted)
        reader.cookie = setup.cookie  # sessions are durable too
        status, records, _ = reader.request("GET", "/durable")
        assert status == 200
        stored = {record["_id"] for record in records}
        assert acked <= stored, f"{len(acked - stored)} acknowledged records lost"
        assert len(acked) >= 400
    finally:
        restarted.stop()
