"""The public surface of ``satchel.protocol``: explicit, documented, typed."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

import satchel.protocol as core
from satchel.protocol import LocalProtocolError, backpack, run_sync


def test_every_public_name_exists_and_has_a_docstring() -> None:
    assert len(core.__all__) == len(set(core.__all__))
    for name in core.__all__:
        value = getattr(core, name)
        if inspect.isclass(value) or inspect.isfunction(value) or inspect.ismodule(value):
            assert inspect.getdoc(value), f"satchel.protocol.{name} has no docstring"
    for name in backpack.__all__:
        value = getattr(backpack, name)
        if inspect.isclass(value) or inspect.isfunction(value):
            assert inspect.getdoc(value), f"satchel.protocol.backpack.{name} has no docstring"


def test_the_package_is_typed() -> None:
    assert (Path(core.__file__).parent / "py.typed").exists()


def test_misusing_the_api_is_a_local_error() -> None:
    def not_an_action():
        yield "not an operation"

    with pytest.raises(LocalProtocolError):
        run_sync(not_an_action(), lambda op: None)
