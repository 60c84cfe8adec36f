"""Start the real ``satchel serve`` in a subprocess, as a user would.

Used by the end-to-end tests: they speak HTTP and websockets to it over
loopback with real clients, and may kill it with SIGKILL.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from http.client import HTTPConnection
from pathlib import Path
from typing import Any

READY = re.compile(r"ready at http://([\w.:\[\]-]+):(\d+)")
API_KEY = "e2e-api-key"


class Launched:
    """A server process started from ``command`` that prints "ready at
    http://HOST:PORT" when it listens; ``output`` accumulates what it printed."""

    def __init__(self, command: list[str], *, env: dict[str, str] | None = None, cwd: Path | None = None,
                 timeout: float = 30) -> None:
        self.process = subprocess.Popen(
            command, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
        )
        self.output: list[str] = []
        self._ready = threading.Event()
        self.port = 0
        threading.Thread(target=self._read, daemon=True).start()
        if not self._ready.wait(timeout):
            self.stop()
            raise RuntimeError(f"{command} did not become ready:\n" + "".join(self.output))

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.output.append(line)
            match = READY.search(line)
            if match and not self._ready.is_set():
                self.port = int(match.group(2))
                self._ready.set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/"

    def alive(self) -> bool:
        return self.process.poll() is None

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.alive():
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()


class ServerProcess(Launched):
    """The real ``satchel serve`` on a free port of 127.0.0.1."""

    def __init__(self, data_dir: Path | None, *, api_key: str | None = API_KEY, extra: list[str] | None = None,
                 env: dict[str, str] | None = None) -> None:
        command = [sys.executable, "-m", "satchel.transports", "serve", "--host", "127.0.0.1", "--port", "0",
                   *(extra or [])]
        if data_dir is not None:
            command += ["--data-dir", str(data_dir)]
        if api_key is not None:
            command += ["--api-key", api_key]
        self.api_key = api_key
        super().__init__(command, env=env)


class Http:
    """A tiny keep-alive JSON client with a cookie jar of one cookie."""

    def __init__(self, server: ServerProcess, *, timeout: float = 10) -> None:
        self.server = server
        self.connection = HTTPConnection("127.0.0.1", server.port, timeout=timeout)
        self.cookie: str | None = None

    def request(self, method: str, path: str, body: Any = None, *, key: str | None = "default",
                headers: dict[str, str] | None = None) -> tuple[int, Any, dict[str, str]]:
        sent = dict(headers or {})
        if key is not None:
            sent["Authorization"] = f"key {self.server.api_key if key == 'default' else key}"
        if self.cookie:
            sent["Cookie"] = self.cookie
        payload = None
        if body is not None:
            payload = body if isinstance(body, bytes) else json.dumps(body).encode()
            sent.setdefault("Content-Type", "application/json")
        self.connection.request(method, path, payload, sent)
        response = self.connection.getresponse()
        raw = response.read()
        received = {k.lower(): v for k, v in response.getheaders()}
        if "set-cookie" in received:
            cookie = received["set-cookie"].split(";")[0]
            self.cookie = None if cookie.endswith("=") else cookie
        try:
            value = json.loads(raw) if raw else None
        except ValueError:
            value = raw
        return response.status, value, received

    def login(self, email: str, password: str = "correct horse battery") -> str:
        status, body, _ = self.request("POST", "/register", {"email": email, "password": password})
        assert status in (200, 422), body
        status, body, _ = self.request("POST", "/login", {"email": email, "password": password})
        assert status == 200, body
        return body["id"]

    def close(self) -> None:
        self.connection.close()


def wait_until(predicate: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.01)
