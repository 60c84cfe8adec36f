"""Shared fixtures. ``server`` is one real server process for the session
(a sync fixture, as pytest-trio requires for session scope)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Iterator

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from server_process import ServerProcess  # noqa: E402


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    process = ServerProcess(tmp_path_factory.mktemp("satchel-data"))
    try:
        yield process
    finally:
        process.stop()
