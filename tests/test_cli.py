"""The ``satchel`` command's contract: flags, environment, the API key."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from server_process import Http, ServerProcess


def test_help_lists_serve_and_its_options() -> None:
    top = subprocess.run([sys.executable, "-m", "satchel.transports", "--help"], capture_output=True, text=True)
    assert top.returncode == 0 and "serve" in top.stdout
    serve = subprocess.run([sys.executable, "-m", "satchel.transports", "serve", "--help"], capture_output=True, text=True)
    for option, variable in [("--host", "SATCHEL_HOST"), ("--port", "SATCHEL_PORT"),
                             ("--data-dir", "SATCHEL_DATA_DIR"), ("--api-key", "SATCHEL_API_KEY")]:
        assert option in serve.stdout and variable in serve.stdout


def test_a_generated_api_key_is_printed_once_and_kept(tmp_path: Path) -> None:
    first = ServerProcess(tmp_path, api_key=None)
    try:
        key_file = tmp_path / "api_key"
        key = key_file.read_text().strip()
        assert oct(key_file.stat().st_mode & 0o777) == "0o600"
        assert any(key in line for line in first.output)
        first.api_key = key
        assert Http(first).request("GET", "/collections")[0] == 200
        assert Http(first).request("GET", "/collections", key="wrong")[0] == 401
    finally:
        first.stop()
    second = ServerProcess(tmp_path, api_key=None)
    try:
        assert not any(key in line for line in second.output)
        second.api_key = key
        assert Http(second).request("GET", "/collections")[0] == 200
    finally:
        second.stop()


def test_environment_variables_configure_the_server(tmp_path: Path) -> None:
    data_dir = tmp_path / "env-data"
    env = {"SATCHEL_API_KEY": "from-env", "SATCHEL_DATA_DIR": str(data_dir), "SATCHEL_HOST": "127.0.0.1"}
    server = ServerProcess(None, api_key=None, env=env)
    try:
        server.api_key = "from-env"
        assert Http(server).request("GET", "/collections")[0] == 200
        assert (data_dir / "satchel.sqlite3").exists()
    finally:
        server.stop()
