"""/sdk.js in a real browser: headless Chromium (Debian's), driven by
playwright-core, two users in two contexts on a page served from another
port of the same host than the API - so CORS and cookies are enforced as in
production. The demo app's screenshot lands in tests/artifacts/."""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from server_process import ServerProcess

BROWSER_DIR = Path(__file__).parent / "browser"
ARTIFACTS = Path(__file__).parent / "artifacts"

# Outside CI a machine without Chromium skips the browser tests; in CI (.ci/run
# exports CI=1) they run and fail loudly.
needs_browser = pytest.mark.skipif(
    not os.environ.get("CI")
    and (shutil.which("chromium") is None or not (BROWSER_DIR / "node_modules" / "playwright-core").exists()),
    reason="needs Debian's chromium and `npm ci` in tests/browser (make test installs both)",
)


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


@needs_browser
def test_two_users_use_the_sdk_from_another_origin(server: ServerProcess, tmp_path: Path) -> None:
    (tmp_path / "index.html").write_text("<!doctype html><title>an app on another port</title><p>app</p>")
    page_server = ThreadingHTTPServer(("127.0.0.1", 0), partial(_QuietHandler, directory=str(tmp_path)))
    threading.Thread(target=page_server.serve_forever, daemon=True).start()
    ARTIFACTS.mkdir(exist_ok=True)
    try:
        page_url = f"http://127.0.0.1:{page_server.server_address[1]}/index.html"
        result = subprocess.run(
            ["node", "sdk_scenario.mjs", server.url, page_url, server.api_key, str(ARTIFACTS)],
            cwd=BROWSER_DIR, capture_output=True, text=True, timeout=120,
        )
    finally:
        page_server.shutdown()
    assert result.returncode == 0, result.stdout + result.stderr
    assert '"ok":true' in result.stdout
    assert (ARTIFACTS / "demo-chat.png").stat().st_size > 10_000


def test_the_sdk_is_served_without_a_key_as_script_and_module(server: ServerProcess) -> None:
    from server_process import Http

    client = Http(server)
    status, body, headers = client.request("GET", "/sdk.js", key=None)
    assert status == 200 and headers["content-type"].startswith("text/javascript")
    assert b"window.createSdk = createSdk" in body
    status, body, _ = client.request("GET", "/sdk.mjs", key=None)
    assert status == 200 and b"export { createSdk }" in body


@needs_browser
def test_the_directus_websocket_tester_page_works_in_a_browser(server: ServerProcess) -> None:
    """The page served at /demo/websocket-tester (the extension's own test
    page, ours) drives both Directus websocket protocols."""
    from server_process import Http

    client = Http(server)
    status, body, _ = client.request("POST", "/register", {"email": "tester@example.com",
                                                           "password": "correct horse battery"})
    assert status == 200, body
    status, body, _ = client.request("POST", "/auth/login", {"email": "tester@example.com",
                                                             "password": "correct horse battery"}, key=None)
    assert status == 200, body
    client.close()
    ARTIFACTS.mkdir(exist_ok=True)
    result = subprocess.run(["node", "tester_scenario.mjs", server.url, body["data"]["access_token"], str(ARTIFACTS)],
                            cwd=BROWSER_DIR, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert '"ok":true' in result.stdout
