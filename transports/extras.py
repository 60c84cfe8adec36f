"""Optional extras: a clear sentence instead of a traceback when one is missing.

``satchel[conformance]`` brings Hypothesis and wsproto (``satchel
conformance``), ``satchel[asgi]`` brings quart-trio and hypercorn
(``satchel.transports.asgi``). A module that needs an extra calls
``require`` before importing it; the command line turns ``MissingExtra``
into one line on stderr and exit status 2.
"""

from __future__ import annotations

import importlib

__all__ = ["MissingExtra", "require"]


class MissingExtra(ImportError):
    """A feature needs an optional extra that is not installed."""

    def __init__(self, extra: str, module: str) -> None:
        super().__init__(f"this needs the {extra!r} extra ({module} is not installed): pip install 'satchel[{extra}]'")
        self.extra = extra
        self.module = module


def require(extra: str, *modules: str) -> None:
    """Raise ``MissingExtra`` unless every one of ``modules`` imports."""
    for module in modules:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError:
            raise MissingExtra(extra, module) from None
