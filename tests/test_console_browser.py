"""The admin console in headless Chromium (issue 16 part 2 and part 5's
console steps), against a fresh ``satchel serve``: first-run setup with the
printed token, sign-in, the live view, a record created in the console
reaching a Backpack websocket in another browser, a permission rule
edited in the console that stops that subscriber being sent a hidden
record, and a file uploaded through Backpack deleted in the console.
Screenshots land in tests/artifacts/ for the README."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from server_process import Http, ServerProcess
from test_browser_sdk import ARTIFACTS, BROWSER_DIR, needs_browser
from test_console_server import PASSWORD, bearer, setup_token


@needs_browser
def test_the_console_from_first_run_to_a_rule_change(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "data")
    ARTIFACTS.mkdir(exist_ok=True)
    try:
        result = subprocess.run(
            ["node", "console_scenario.mjs", server.url, setup_token(server), server.api_key, str(ARTIFACTS)],
            cwd=BROWSER_DIR, capture_output=True, text=True, timeout=90,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        assert '"ok":true' in result.stdout
        # What the console did is what the server holds.
        client = Http(server)
        _, body, _ = client.request("POST", "/auth/login", {"email": "root@example.com", "password": "console password"},
                                    key=None)
        access = body["data"]["access_token"]
        rules = client.request("GET", "/_/api/rules", key=None, headers=bearer(access))[1]["data"]
        assert rules["revision"] == 1 and rules["rules"]["roles"]["authenticated"]["rules"][0]["collection"] == "notes"
        titles = [r["title"] for r in client.request("GET", "/_/api/collections/notes/records", key=None,
                                                     headers=bearer(access))[1]["data"]]
        assert titles == ["still public", "hidden by the rule", "made in the console", "written through Backpack"]
        files = client.request("GET", "/_/api/files", key=None, headers=bearer(access))[1]["data"]
        assert not any(file["filename"] == "console-delete-me.txt" for file in files), files
        client.close()
    finally:
        server.stop()
    for name in ("console-overview.png", "console-records.png", "console-rules.png", "console-files.png"):
        assert (ARTIFACTS / name).stat().st_size > 10_000, name
    assert json and PASSWORD
