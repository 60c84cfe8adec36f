"""What the scale-out benches share (issue 15 part 6): a PostgreSQL schema of
their own, a broker topic prefix of their own, the CPU of a supervisor's
workers, and what went through the broker.

The PostgreSQL, Redis and NATS servers on 127.0.0.1 are shared with tests
and other runs, so every bench gets a fresh schema (dropped afterwards) and a
fresh topic prefix: nothing it writes or publishes reaches anyone else, and
nothing of theirs reaches it.

What went through the broker is measured twice, independently:
- messages: each node's own count (``broker traffic {"received":{...},
  "sent":{...}}``, logged once a second while it changes;
  ``transports/brokers``);
- bytes: the kernel's per-socket counters (``ss -ti``: ``bytes_sent`` /
  ``bytes_received``) of every TCP connection the node's process holds to
  the broker's port - the whole wire, framing and subscriptions included,
  whatever the broker.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import subprocess
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import quote, urlsplit

POSTGRES = os.environ.get("SATCHEL_TEST_POSTGRES", "postgresql://127.0.0.1/test")
BROKERS = {
    "redis": os.environ.get("SATCHEL_TEST_REDIS", "redis://127.0.0.1:6379"),
    "nats": os.environ.get("SATCHEL_TEST_NATS", "nats://127.0.0.1:4222"),
}


@contextlib.contextmanager
def postgres_schema(url: str, label: str) -> Iterator[str]:
    """A fresh schema on ``url``; yields the store URL that puts a server in
    it (``search_path``), and drops it afterwards."""
    import psycopg
    from psycopg import sql

    schema = f"bench_{label}_{secrets.token_hex(4)}"
    with psycopg.connect(url, autocommit=True) as db:
        db.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    separator = "&" if "?" in url else "?"
    try:
        yield f"{url}{separator}options={quote(f'-c search_path={schema}')}"
    finally:
        with psycopg.connect(url, autocommit=True) as db:
            db.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))


def broker_url(url: str, label: str) -> str:
    """``url`` with a topic prefix no other run uses."""
    return f"{url}{'&' if '?' in url else '?'}prefix={label}{secrets.token_hex(4)}"


def broker_port(url: str) -> int:
    parts = urlsplit(url)
    return parts.port or {"redis": 6379, "nats": 4222}[parts.scheme]


def workers_cpu(pid: int) -> float:
    """User + system CPU seconds of the processes whose parent is ``pid``
    (the workers of ``satchel serve --workers N``)."""
    total = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def socket_bytes(pid: int, port: int) -> dict[str, int]:
    """Bytes sent and received so far by the established TCP connections of
    process ``pid`` to 127.0.0.1:``port`` (the kernel's counters; a
    connection closed meanwhile takes its counts with it)."""
    out = subprocess.run(["ss", "-tinpH", "state", "established", f"( dport = :{port} )"],
                         capture_output=True, text=True, timeout=10, check=True).stdout
    sent = received = connections = 0
    mine = False
    for line in out.splitlines():
        if "users:((" in line:  # a socket's line; its counters follow on the next
            mine = re.search(rf"pid={pid},", line) is not None
            connections += mine
            continue
        if mine:
            match = re.search(r"bytes_sent:(\d+)", line) or re.search(r"bytes_acked:(\d+)", line)
            sent += int(match.group(1)) if match else 0
            match = re.search(r"bytes_received:(\d+)", line)
            received += int(match.group(1)) if match else 0
            mine = False
    return {"sent": sent, "received": received, "connections": connections}


def bytes_between(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {"sent": after["sent"] - before["sent"], "received": after["received"] - before["received"],
            "connections": after["connections"]}


def broker_messages(server_output: list[str]) -> dict[str, Any]:
    """The last ``broker traffic`` line a node logged: broker messages it
    sent and received so far, by topic kind."""
    for line in reversed(server_output):
        if "broker traffic " in line:
            return json.loads(line.split("broker traffic ", 1)[1])
    return {}


def total(counts: dict[str, int] | None) -> int:
    return sum((counts or {}).values())
