"""Backend.js, the inbox documents' browser client (seed 001), served at
/backend/Backend.js without a key. In headless Chromium (playwright-core, as
test_browser_sdk.py), from pages on another port than the API so CORS is
enforced: one page creates an inbox and polls it, a second sends and removes
messages, the Python UDP client sends one more, and the error paths answer
onError(status, request)."""

from __future__ import annotations

import secrets
import subprocess
import sys
import threading
from functools import partial
from http.server import ThreadingHTTPServer
from pathlib import Path

from server_process import Http, ServerProcess
from test_browser_sdk import BROWSER_DIR, _QuietHandler, needs_browser


@needs_browser
def test_two_pages_share_an_inbox_through_backend_js(server: ServerProcess, tmp_path: Path) -> None:
    (tmp_path / "index.html").write_text("<!doctype html><title>an inbox app on another port</title><p>app</p>")
    page_server = ThreadingHTTPServer(("127.0.0.1", 0), partial(_QuietHandler, directory=str(tmp_path)))
    threading.Thread(target=page_server.serve_forever, daemon=True).start()
    try:
        page_url = f"http://127.0.0.1:{page_server.server_address[1]}/index.html"
        result = subprocess.run(
            ["node", "backend_scenario.mjs", server.url, page_url, sys.executable],
            cwd=BROWSER_DIR, capture_output=True, text=True, timeout=60,
        )
    finally:
        page_server.shutdown()
    assert result.returncode == 0, result.stdout + result.stderr
    assert '"ok":true' in result.stdout
    assert "watchDocument sees every write live" in result.stdout, result.stdout


def test_backend_js_is_served_without_a_key_before_the_inbox_mount(server: ServerProcess) -> None:
    client = Http(server)
    try:
        for method in ("GET", "HEAD"):
            status, body, headers = client.request(method, "/backend/Backend.js", key=None)
            assert status == 200, body
            assert headers["content-type"].startswith("text/javascript")
            assert headers["access-control-allow-origin"] == "*"
        status, body, _ = client.request("GET", "/backend/Backend.js", key=None)
        assert body.startswith(b"// Backend.js") and b"var Backend = " in body
        status, body, headers = client.request("GET", "/backend/Backend.mjs", key=None)
        assert status == 200 and headers["content-type"].startswith("text/javascript")
        assert b"export { Backend };" in body and b"import.meta.url" in body
        # The inbox mount still answers its own paths (the static mount claims only the two files).
        origin = "http://app.example"
        status, body, headers = client.request("GET", f"/backend/documents/{secrets.token_hex(16)}", key=None,
                                               headers={"Origin": origin})
        assert status == 404 and body == {"message": "No such document"}
        assert headers["access-control-allow-origin"] == origin
        status, _, headers = client.request("OPTIONS", f"/backend/documents/{secrets.token_hex(16)}", key=None, headers={
            "Origin": origin, "Access-Control-Request-Method": "PUT",
            "Access-Control-Request-Headers": "content-type,write-token,derived-from,revision"})
        assert status == 204 and headers["access-control-allow-origin"] == origin
        assert "PUT" in headers["access-control-allow-methods"]
        status, _, _ = client.request("POST", "/backend/Backend.js", b"{}", key=None)
        assert status != 200  # only GET and HEAD are the file
    finally:
        client.close()
