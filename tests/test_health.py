"""``/ready`` in process, with stores that fail (``transports/health.py``): a
store that raises and one that never answers are reported 503 in time and
by name, one check serves a burst of probes, and the exposition's histograms
and label escaping pass ``prometheus_client``'s parser."""

from __future__ import annotations

import json
from typing import Any

import pytest
import trio
from prometheus_client.parser import text_string_to_metric_families

from satchel.protocol.http import HttpRequest
from satchel.transports import health
from satchel.transports.health import Operations
from satchel.transports.metrics import Histogram, Metrics, Watched, exposition


class _Store:
    def __init__(self, behaviour: str) -> None:
        self.behaviour = behaviour
        self.calls = 0

    async def execute(self, operation: Any) -> Any:
        self.calls += 1
        if self.behaviour == "raise":
            raise ConnectionRefusedError("connection to 127.0.0.1:1 refused")
        if self.behaviour == "hang":
            await trio.sleep_forever()
        return None


class _Runner:
    def __init__(self, store: _Store) -> None:
        self.store = store


def _request(path: str) -> HttpRequest:
    return HttpRequest("GET", path, [], b"")


async def _operations(nursery: trio.Nursery, behaviour: str) -> tuple[Operations, _Store]:
    store = _Store(behaviour)

    def spawn(async_fn: Any) -> None:
        nursery.start_soon(async_fn)

    return Operations(_Runner(store), None, Watched(), spawn=spawn), store


@pytest.mark.parametrize("behaviour, status, check", [
    ("ok", 200, "ok"),
    ("raise", 503, "ConnectionRefusedError: connection to 127.0.0.1:1 refused"),
    ("hang", 503, "no answer within 0.2 s"),
])
async def test_ready_names_what_the_store_did(monkeypatch: pytest.MonkeyPatch, behaviour: str, status: int,
                                              check: str) -> None:
    monkeypatch.setattr(health, "PROBE_TIMEOUT", 0.2)
    async with trio.open_nursery() as nursery:
        operations, store = await _operations(nursery, behaviour)
        with trio.fail_after(2):
            response = await operations.handle(_request("/ready"))
        assert response.status == status
        assert json.loads(response.body)["checks"] == {"store": check}
        # A burst of probes within PROBE_CACHE costs one check.
        for _ in range(5):
            assert (await operations.handle(_request("/ready"))).status == status
        assert store.calls == 1
        nursery.cancel_scope.cancel()


def test_the_exposition_parses_with_histograms_and_escaped_labels() -> None:
    metrics = Metrics()
    metrics.request("backpack", "GET", 200, 0.0007)
    metrics.request("backpack", "GET", 200, 20.0)  # past every bound: only +Inf
    metrics.request("backpack", "BREW", 418, 0.01)  # an unknown method is OTHER
    metrics.message_in('we"ird\\na\nme')
    metrics.commit_batches.observe(3)

    class Board:
        def connection_counts(self) -> dict[str, int]:
            return {"backpack": 2}

    text = exposition(Watched(board=Board()), metrics).decode()
    families = {family.name: family for family in text_string_to_metric_families(text)}
    buckets = {s.labels["le"]: s.value for s in families["satchel_http_request_duration_seconds"].samples
               if s.name.endswith("_bucket") and s.labels["method"] == "GET"}
    assert buckets["0.0005"] == 0 and buckets["0.001"] == 1 and buckets["10.0"] == 1 and buckets["+Inf"] == 2
    assert {s.labels["method"] for s in families["satchel_http_request_duration_seconds"].samples} == {"GET", "OTHER"}
    assert [s.labels["protocol"] for s in families["satchel_messages_in"].samples] == ['we"ird\\na\nme']
    assert [s.value for s in families["satchel_connections"].samples] == [2]
    sizes = {s.labels.get("le"): s.value for s in families["satchel_store_commit_batch_size"].samples}
    assert sizes["2.0"] == 0 and sizes["4.0"] == 1


def test_a_histogram_counts_a_value_on_its_bound_in_that_bucket() -> None:
    histogram = Histogram((1.0, 2.0))
    for value in (1.0, 1.5, 2.0, 3.0):
        histogram.observe(value)
    assert histogram.counts == [1, 2, 1] and histogram.sum == 7.5
