"""socket.io's official compliance suites against the two example servers.

The suites are ``test-suite/`` of the public repositories
``socketio/engine.io-protocol`` and ``socketio/socket.io-protocol``. They are
not Satchel's and are not in this repository: check them out yourself, run
``npm ci`` in each ``test-suite/`` directory, and point
``SATCHEL_PROTOCOL_SUITES`` at the directory that holds the two checkouts
(``engine.io-protocol/test-suite`` and ``socket.io-protocol/test-suite``).
Without it these tests skip. Each suite expects its server on
localhost:3000 (fixed in the suites), so the example server is started there.

Measured on 2026-12-01: Engine.IO 24 of 24, Socket.IO 32 of 32, on every one
of 8 runs each (``npx mocha test-suite.js``).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from server_process import Launched

ROOT = Path(__file__).resolve().parent.parent
SUITES = os.environ.get("SATCHEL_PROTOCOL_SUITES")

pytestmark = pytest.mark.skipif(not SUITES, reason="set SATCHEL_PROTOCOL_SUITES to checkouts of the official suites")


@pytest.mark.parametrize(
    ("suite", "server"),
    [("engine.io-protocol", "engineio_protocol_server.py"), ("socket.io-protocol", "socketio_protocol_server.py")],
)
def test_the_official_suite_passes_every_test(suite: str, server: str) -> None:
    directory = Path(SUITES or "") / suite / "test-suite"
    assert (directory / "node_modules").exists(), f"run `npm ci` in {directory}"
    process = Launched([sys.executable, str(ROOT / "examples" / server), "--port", "3000"], cwd=ROOT)
    try:
        run = subprocess.run(["npx", "mocha", "test-suite.js"], cwd=directory, capture_output=True, text=True,
                             timeout=180)
    finally:
        process.stop()
    assert run.returncode == 0 and " failing" not in run.stdout, run.stdout[-4000:] + run.stderr[-2000:]
