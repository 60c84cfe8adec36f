"""The landing page (issue 16 part 1): a browser opening ``/`` without an
API key reads what this server is and what each mount serves; every other
request of ``/`` gets Backpack's answer, byte for byte."""

from __future__ import annotations

import pytest

from core_harness import API_KEY
from satchel.protocol.backpack import BackpackConfig
from satchel.protocol.environment import fixed_environment
from satchel.protocol.http import HttpRequest
from satchel.protocol.mount_table import standard_mounts
from satchel.protocol.mounts import Mount, MountTable
from satchel.protocol.operations import run_sync
from satchel.protocol.switchboard import Switchboard
from satchel.storage_backends.memory import MemoryStore

BROWSER = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"


class _Pages(Mount):
    name = "static"
    pages = True
    paths = (("/_/", "the admin console"), ("/sdk.js", "the SDK"))
    sections = (("/_/readme#two-commands", "Two commands"),)


def _answer(board: Switchboard, request: HttpRequest) -> tuple[int, list[tuple[str, str]], bytes]:
    store = MemoryStore()
    outcome = run_sync(board.handle_request(request), store.execute_sync)
    return outcome.response.status, outcome.response.headers, outcome.response.body


@pytest.fixture
def table() -> MountTable:
    return standard_mounts(BackpackConfig(api_key=API_KEY), first=[_Pages()])


def test_a_browser_without_a_key_reads_the_landing_page(table: MountTable) -> None:
    board = Switchboard(table, fixed_environment())
    status, headers, body = _answer(board, HttpRequest("GET", "/", [("accept", BROWSER)]))
    assert status == 200 and ("content-type", "text/html; charset=utf-8") in headers
    page = body.decode()
    assert "<h1>Satchel</h1>" in page
    # Every mount with paths is listed, by the paths it gives - none hand-kept here.
    for mount in table:
        if mount.paths and not getattr(mount, "pages", False):
            assert f">{mount.name}</th>" in page, mount.name
        for path, _ in mount.paths:
            assert f"<code>{path.replace('&', '&amp;')}</code>" in page, path
    assert '<a href="/_/"><code>/_/</code></a>' in page and '<a href="/sdk.js">' in page
    assert '<a href="/_/readme#two-commands">Two commands</a>' in page
    # The configured Directus websocket path is the one shown.
    assert "/websocket (websocket)" in page
    head = _answer(board, HttpRequest("HEAD", "/", [("accept", "text/html")]))
    assert head[0] == 200 and head[2] == b""


@pytest.mark.parametrize("method,headers", [
    ("GET", []),
    ("GET", [("accept", "application/json")]),
    ("GET", [("accept", "*/*")]),
    ("GET", [("accept", BROWSER), ("authorization", f"key {API_KEY}")]),
    ("GET", [("accept", BROWSER), ("authorization", "key wrong")]),
    ("POST", [("accept", BROWSER)]),
    ("OPTIONS", [("accept", BROWSER), ("origin", "http://app.example"), ("access-control-request-method", "GET")]),
    ("HEAD", []),
])
def test_api_clients_get_backpacks_answer_byte_for_byte(table: MountTable, method: str,
                                                         headers: list[tuple[str, str]]) -> None:
    without = MountTable([mount for mount in table if mount.name != "landing"])
    request = HttpRequest(method, "/", headers)
    assert table.for_request(request).name == "backpack"
    assert _answer(Switchboard(table, fixed_environment()), request) == \
        _answer(Switchboard(without, fixed_environment()), request)


def test_only_the_root_is_the_landing_page(table: MountTable) -> None:
    for target in ["/notes", "/index.html", "/?x=1"]:
        claimed = table.for_request(HttpRequest("GET", target, [("accept", BROWSER)]))
        assert claimed is not None and claimed.name == ("landing" if target == "/?x=1" else "backpack"), target


def test_the_printed_urls_can_be_opened_in_a_browser() -> None:
    """``satchel serve --host 0.0.0.0`` printed ``http://0.0.0.0:8000/_/#setup=...``,
    which not every browser opens, and an IPv6 host without brackets; the
    ready line and the setup link name a host a browser on this machine opens."""
    from satchel.transports.cli import _url_host

    assert [_url_host(host) for host in ("127.0.0.1", "0.0.0.0", "", "::", "::1", "example.test")] == [
        "127.0.0.1", "127.0.0.1", "127.0.0.1", "[::1]", "[::1]", "example.test"]
