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


def _pg_bin() -> str:
    """The first directory with an executable ``initdb`` (``PrivatePostgres``)."""
    import glob
    import shutil

    candidates = [os.path.dirname(shutil.which("initdb") or ""), "/usr/local/bin",
                  *sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)]
    return next((d for d in candidates if d and os.access(os.path.join(d, "initdb"), os.X_OK)), "/usr/local/bin")


class PrivatePostgres:
    """A PostgreSQL server of the test's own, on a free port of 127.0.0.1 with
    its cluster in a temporary directory (removed by ``close``): what a fault test stops and starts again
    (``stop``: ``pg_ctl -m immediate``, a crash - no shutdown checkpoint,
    recovery from the WAL at the next start) without touching the machine's
    shared server. Trust authentication, fsync off (the machine itself never
    crashes in these tests: a write PostgreSQL acknowledged is in the OS
    cache when the server process dies, as with fsync on).

    ``skip_unless_available`` skips when the binaries are absent (also on CI,
    whose PostgreSQL may be a service without them: these tests are extra
    there, not required). They are looked for in ``SATCHEL_TEST_PG_BIN``,
    beside ``initdb`` on the PATH, in /usr/local/bin and in Debian's
    /usr/lib/postgresql/N/bin. Run as root, the server runs as the
    ``postgres`` user (PostgreSQL refuses to run as root)."""

    BIN = os.environ.get("SATCHEL_TEST_PG_BIN") or _pg_bin()

    def __init__(self) -> None:
        import pwd
        import shutil
        import socket
        import subprocess
        import tempfile

        self._subprocess = subprocess
        # Its own directory under the system's temp dir: pytest's are root's
        # alone (0700), where the postgres user could not reach its cluster.
        self.directory = tempfile.mkdtemp(prefix="satchel-pg-")
        self.data = os.path.join(self.directory, "data")
        self.log = os.path.join(self.directory, "postgres.log")
        self._as: list[str] = []
        if os.geteuid() == 0:
            runuser = shutil.which("runuser") or "/usr/sbin/runuser"
            owner = pwd.getpwnam("postgres")
            os.chown(self.directory, owner.pw_uid, owner.pw_gid)
            self._as = [runuser, "-u", "postgres", "--"]
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self._run(f"{self.BIN}/initdb", "-D", self.data, "-A", "trust", "-U", "satchel", "--no-sync", "-E", "UTF8",
                  "--no-instructions")
        self.start()
        self.url = f"postgresql://satchel@127.0.0.1:{self.port}/postgres"

    @classmethod
    def skip_unless_available(cls) -> None:
        import pwd

        missing = [name for name in ("initdb", "pg_ctl", "postgres") if not os.access(f"{cls.BIN}/{name}", os.X_OK)]
        if not missing and os.geteuid() == 0:
            try:
                pwd.getpwnam("postgres")
            except KeyError:
                missing = ["a postgres user to run the server as"]
        if missing:
            pytest.skip(f"no {', '.join(missing)} in {cls.BIN}: cannot run a private PostgreSQL")

    def _run(self, *command: str) -> None:
        done = self._subprocess.run([*self._as, *command], capture_output=True, text=True, timeout=60)
        if done.returncode != 0:
            raise RuntimeError(f"{command[0]} failed: {done.stdout}{done.stderr}")

    def start(self) -> None:
        """Start the server and wait until it accepts connections."""
        self._run(f"{self.BIN}/pg_ctl", "-D", self.data, "-l", self.log, "-w", "-t", "30", "-o",
                  f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1 -c fsync=off", "start")

    def stop(self, mode: str = "immediate") -> None:
        """Stop the server: ``immediate`` (default) is a crash, ``fast`` a clean shutdown."""
        self._run(f"{self.BIN}/pg_ctl", "-D", self.data, "-m", mode, "-w", "stop")

    def close(self) -> None:
        import shutil

        try:
            self.stop()
        except RuntimeError:
            pass  # already stopped
        shutil.rmtree(self.directory, ignore_errors=True)
