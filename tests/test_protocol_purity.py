"""protocol/ imports no I/O: no trio, asyncio, socket, clock or database API."""

import subprocess
import sys
from pathlib import Path

import satchel.protocol

FORBIDDEN = ["trio", "asyncio", "socket", "sqlite3", "psycopg", "select", "selectors", "threading", "random", "time"]

# The conformance kit's Hypothesis half is a test tool, not the core:
# Hypothesis itself loads random, threading and (when installed) trio. The
# kit's model, checker and targets stay under the rule.
NEEDS_HYPOTHESIS = {"satchel.protocol.conformance.machine", "satchel.protocol.conformance.strategies"}


def test_no_protocol_module_loads_io_modules() -> None:
    root = Path(satchel.protocol.__file__).parent
    modules = sorted(
        "satchel.protocol." + ".".join(path.relative_to(root).with_suffix("").parts).removesuffix(".__init__")
        for path in root.rglob("*.py")
    )
    modules = [m.rstrip(".") for m in modules if m.rstrip(".") not in NEEDS_HYPOTHESIS]
    script = (
        "import sys\n"
        f"before = set(sys.modules)\n"
        f"for name in {modules!r}:\n"
        "    __import__(name)\n"
        f"loaded = sorted(m for m in {FORBIDDEN!r} if m in sys.modules and m not in before)\n"
        "print(','.join(loaded))\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"protocol modules loaded: {out.stdout.strip()}"
    assert len(modules) >= 10
