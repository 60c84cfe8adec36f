"""PostgreSQL for the tests: the server at ``SATCHEL_TEST_POSTGRES`` (default
``postgresql://127.0.0.1/test``, as on the developers' machines and CI), and
PostgreSQL schemas that isolate each store a test makes.

Every schema a module creates starts with that module's prefix and is
dropped when the module is done (``drop_schemas``). Without a reachable
server the tests skip, except on CI (``CI`` set), where they fail.
"""

from __future__ import annotations

import os
import secrets

import pytest

POSTGRES_URL = os.environ.get("SATCHEL_TEST_POSTGRES", "postgresql://127.0.0.1/test")
#: The same, with commits that do not wait for the WAL flush: what the
#: conformance checks use, where PostgreSQL itself is never killed (an
#: fsync per commit is what made them slow, on a disk several test runs share).
FAST_URL = POSTGRES_URL + ("&" if "?" in POSTGRES_URL else "?") + "options=-c%20synchronous_commit%3Doff"


def require_postgres() -> None:
    """Skip (fail on CI) unless the test server answers."""
    import psycopg

    try:
        with psycopg.connect(POSTGRES_URL, connect_timeout=5):
            pass
    except psycopg.OperationalError as exc:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"no PostgreSQL at {POSTGRES_URL}: {exc}")


def schema_prefix() -> str:
    """A fresh prefix for one module's schemas."""
    return f"satchel_test_{secrets.token_hex(4)}_"


def drop_schemas(prefix: str) -> None:
    """Drop every schema whose name starts with ``prefix``."""
    import psycopg
    from psycopg import sql

    with psycopg.connect(POSTGRES_URL, autocommit=True) as db:
        names = [name for (name,) in db.execute(
            "SELECT nspname FROM pg_namespace WHERE starts_with(nspname, %s)", (prefix,))]
        for name in names:
            db.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(name)))
