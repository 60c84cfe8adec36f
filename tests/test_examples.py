"""The two non-trio example servers (asyncio; threads and sockets) and the
reference server pass the same end-to-end scenarios (``scenarios.py``)."""

from __future__ import annotations

from typing import Iterator

import pytest

from scenarios import SCENARIOS, Endpoint, Launched, example
from server_process import ServerProcess

API_KEY = "examples-api-key"


@pytest.fixture(scope="module", params=["reference", "asyncio_server", "threaded_server"])
def endpoint(request: pytest.FixtureRequest) -> Iterator[Endpoint]:
    if request.param == "reference":
        server: ServerProcess = request.getfixturevalue("server")
        yield Endpoint(server.port, server.api_key or "", alive=server.alive)
        return
    launched: Launched = example(request.param, API_KEY)
    try:
        yield launched.endpoint
    finally:
        launched.stop()


@pytest.mark.parametrize("scenario", SCENARIOS)
async def test_scenario(endpoint: Endpoint, scenario: str) -> None:
    await SCENARIOS[scenario](endpoint)
