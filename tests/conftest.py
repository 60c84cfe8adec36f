"""Shared fixtures. ``server`` is one real server process for the session
(a sync fixture, as pytest-trio requires for session scope)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Iterator

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from server_process import ServerProcess  # noqa: E402

#: The slowest modules, slowest first (their summed --durations in a
#: pytest-xdist run). ``make test`` runs the suite on pytest-xdist workers
#: that each take a whole module at a time (``--dist loadfile``), in
#: collection order: these go out first, so that no long module is handed
#: out last while the other workers sit idle. A module not listed keeps its
#: place after them; a name that no longer exists is ignored.
SLOWEST_MODULES = [
    "test_conformance_kit.py", "test_conformance_asnity.py", "test_conformance_directus.py", "test_query_sql.py",
    "test_cli.py", "test_multinode_fanout.py", "test_conformance_resources.py", "test_abuse.py",
    "test_multinode_broker_restart.py", "test_examples.py", "test_asgi.py", "test_storage_postgres.py",
    "test_conformance_inbox.py", "test_faults_postgres.py", "test_directus_sdk.py", "test_permissions_properties.py",
    "test_faults_cluster.py", "test_workers.py", "test_storage_conformance.py", "test_faults_broker.py",
]


def pytest_configure(config: pytest.Config) -> None:
    # pytest-xdist would otherwise hand modules out by their number of tests,
    # which puts the few long conformance tests last.
    if hasattr(config.option, "loadscopereorder"):
        config.option.loadscopereorder = False


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not hasattr(config, "workerinput"):
        return  # a run without workers keeps pytest's order
    rank = {name: n for n, name in enumerate(SLOWEST_MODULES)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: each module's own order is kept


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    process = ServerProcess(tmp_path_factory.mktemp("satchel-data"))
    try:
        yield process
    finally:
        process.stop()
