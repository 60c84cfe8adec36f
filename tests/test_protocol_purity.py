"""protocol/ is pure: read from its source, every file, every import.

The check parses each file under ``protocol/`` (AST), so it sees every
import - at module level, inside a function, behind ``TYPE_CHECKING`` - and
every call, whatever was loaded at interpreter start. It fails on imports of
I/O, clocks, randomness, threads, ``os``, the storage backends and the
transports, and on calls that read a clock or entropy or open a file. A
second test plants each kind of violation in a synthetic module and checks
that it is caught, so the check cannot pass by finding nothing.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import satchel.protocol

PROTOCOL_ROOT = Path(satchel.protocol.__file__).parent

#: Modules protocol/ may never import (a name or any of its submodules).
FORBIDDEN_MODULES = frozenset((
    "trio", "asyncio", "anyio", "socket", "ssl", "select", "selectors", "threading", "multiprocessing",
    "concurrent", "subprocess", "os", "io", "pathlib", "shutil", "tempfile", "time", "random", "secrets",
    "uuid", "sqlite3", "psycopg", "psycopg_pool", "coredis", "redis", "urllib.request", "http.client",
    "http.server", "socketserver", "logging", "signal",
    "satchel.storage_backends", "satchel.transports",
))

#: Calls that read a clock or entropy, or do I/O, whatever they were imported as.
FORBIDDEN_CALLS = frozenset((
    "time.time", "time.monotonic", "time.perf_counter", "time.time_ns", "time.sleep",
    "datetime.now", "datetime.utcnow", "datetime.today", "date.today",
    "datetime.datetime.now", "datetime.datetime.utcnow", "datetime.date.today",
    "os.urandom", "os.getenv", "os.environ.get", "uuid.uuid1", "uuid.uuid4",
))
FORBIDDEN_CALL_ROOTS = frozenset(("random", "secrets"))
FORBIDDEN_BUILTINS = frozenset(("open", "input", "print", "breakpoint", "__import__", "exec", "eval"))


def _forbidden_module(name: str) -> bool:
    return any(name == bad or name.startswith(bad + ".") for bad in FORBIDDEN_MODULES)


def _dotted(node: ast.AST) -> str | None:
    """``a.b.c`` for a chain of attributes on a name, else None."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return ".".join(reversed(parts))
    return None


def violations(source: str, module: str) -> list[str]:
    """What in ``source`` (the module named ``module``, dotted) breaks purity."""
    tree = ast.parse(source)
    package = module.rsplit(".", 1)[0] if not module.endswith("__init__") else module.removesuffix(".__init__")
    found = []
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            names = [target] + [f"{target}.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Call):
            called = _dotted(node.func)
            if called is None:
                continue
            if called in FORBIDDEN_BUILTINS:
                found.append(f"line {node.lineno}: calls {called}()")
            elif called in FORBIDDEN_CALLS or called.split(".")[0] in FORBIDDEN_CALL_ROOTS:
                found.append(f"line {node.lineno}: calls {called}()")
            elif called in ("importlib.import_module", "import_module") and node.args:
                argument = node.args[0]
                if isinstance(argument, ast.Constant) and isinstance(argument.value, str):
                    if _forbidden_module(argument.value):
                        found.append(f"line {node.lineno}: imports {argument.value} dynamically")
            continue
        for name in names:
            if _forbidden_module(name):
                found.append(f"line {node.lineno}: imports {name}")
                break
    return found


def _protocol_modules() -> list[tuple[Path, str]]:
    modules = []
    for path in sorted(PROTOCOL_ROOT.rglob("*.py")):
        dotted = ".".join(("satchel", "protocol", *path.relative_to(PROTOCOL_ROOT).with_suffix("").parts))
        modules.append((path, dotted))
    return modules


def test_no_protocol_file_imports_io_clocks_randomness_or_the_other_layers() -> None:
    modules = _protocol_modules()
    assert len(modules) >= 25
    problems = {
        str(path.relative_to(PROTOCOL_ROOT)): found
        for path, dotted in modules
        if (found := violations(path.read_text("utf-8"), dotted))
    }
    assert problems == {}


PLANTED = {
    "import trio": "import trio",
    "from-import of the clock": "from time import monotonic",
    "os": "import os.path",
    "entropy through os": "import hashlib\nx = os.urandom(16)",
    "a clock read through datetime": "import datetime\nstamp = datetime.datetime.now()",
    "datetime imported by name": "from datetime import datetime\nstamp = datetime.now()",
    "random": "value = random.random()",
    "secrets": "token = secrets.token_hex(16)",
    "a store, lazily": "def f():\n    from satchel.storage_backends.memory import MemoryStore\n    return MemoryStore()",
    "a store, relatively": "from ...storage_backends import sqlite",
    "the transports, relatively": "from ...transports.hub import Hub",
    "the transports, by name": "import satchel.transports.runner as runner",
    "a file": "data = open('/etc/passwd').read()",
    "a dynamic import": "import importlib\nm = importlib.import_module('socket')",
    "behind TYPE_CHECKING": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import asyncio",
}


@pytest.mark.parametrize("case", PLANTED)
def test_a_planted_violation_is_caught(case: str) -> None:
    # As if it were protocol/inbox/planted.py (relative imports resolve from there).
    found = violations(PLANTED[case], "satchel.protocol.inbox.planted")
    assert found, f"{case!r} was not caught"


def test_pure_code_is_not_flagged() -> None:
    source = (
        "from __future__ import annotations\nimport hashlib, hmac, re, struct\nimport msgspec\n"
        "from ..errors import RemoteProtocolError\nfrom . import merge\n"
        "def f(env):\n    return env.now_ms(), hashlib.sha256(b'x').digest()\n"
    )
    assert violations(source, "satchel.protocol.inbox.planted") == []
