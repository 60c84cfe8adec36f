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


# What "not installed" looks like to the import system: None in sys.modules.
_WITHOUT = "import sys\nfor name in {names!r}:\n    sys.modules[name] = None\n"


def _run_without(names: list[str], code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", _WITHOUT.format(names=names) + code],
                          capture_output=True, text=True, timeout=60)


def test_conformance_without_its_extra_says_how_to_install_it() -> None:
    for missing in (["hypothesis"], ["wsproto"], ["hypothesis", "wsproto"]):
        run = _run_without(missing, "from satchel.transports.cli import main\n"
                                    "sys.exit(main(['conformance', '--in-process']))\n")
        assert run.returncode == 2, run.stdout + run.stderr
        assert "Traceback" not in run.stderr
        lines = run.stderr.strip().splitlines()
        assert len(lines) == 1 and "pip install 'satchel[conformance]'" in lines[0], run.stderr


def test_the_other_extras_say_how_to_install_them_too() -> None:
    run = _run_without(["quart_trio"], "import satchel.transports.asgi\n")
    assert run.returncode != 0 and "pip install 'satchel[asgi]'" in run.stderr
    run = _run_without(["hypothesis"], "from satchel.protocol.conformance import check_target\n")
    assert run.returncode != 0 and "pip install 'satchel[conformance]'" in run.stderr
    # The kit's pure half needs no extra.
    run = _run_without(["hypothesis", "wsproto"], "from satchel.protocol.conformance import BackpackModel, replay\n")
    assert run.returncode == 0, run.stderr
