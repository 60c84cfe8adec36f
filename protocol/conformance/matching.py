"""Placeholders and matching: how the kit compares a prediction with an answer.

Values the server chooses - record ids, timestamps, user ids of new
accounts - are not predicted but named: a ``Sym`` stands for one of them. The
first time a predicted message containing a ``Sym`` is matched against what
the server sent, the ``Sym`` is bound to the real value (after checking its
shape: 24 hex digits, an ISO timestamp); from then on it must be equal to it.
``match`` does that unification; ``OneOf`` accepts any of several answers
where the protocol allows them, ``Partial`` a message with at least the given
fields, ``Check`` any value a predicate accepts. Every protocol's model uses
these; ``Mismatch`` says where a prediction and an answer differ.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Callable

__all__ = [
    "Sym", "ANY_STRING", "EMPTY_BODY", "OneOf", "Partial", "Check", "Bindings", "Mismatch", "match",
    "is_object_id", "is_number", "show",
]

_OBJECT_ID = re.compile(r"[0-9a-f]{24}\Z")
_TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z\Z")


def is_object_id(value: object) -> bool:
    """A record id as Backpack writes them: 24 lowercase hex digits."""
    return isinstance(value, str) and _OBJECT_ID.match(value) is not None


@dataclass(frozen=True)
class Sym:
    """A value the server chooses: ``kind`` is ``"id"`` (a record id) or
    ``"ts"`` (a timestamp); ``n`` numbers them in the order the model met them."""

    kind: str
    n: int

    def __repr__(self) -> str:
        return f"<{self.kind}:{self.n}>"


class _Singleton:
    """A marker that copies as itself (expectations are deep-copied)."""

    def __copy__(self) -> "_Singleton":
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> "_Singleton":
        return self


class _AnyString(_Singleton):
    def __repr__(self) -> str:
        return "<any string>"


#: Matches any JSON string (error messages are the server's to word).
ANY_STRING = _AnyString()


class _EmptyBody(_Singleton):
    def __repr__(self) -> str:
        return "<empty body>"


#: An HTTP body with no bytes at all.
EMPTY_BODY = _EmptyBody()


@dataclass(frozen=True)
class OneOf:
    """Any one of ``options`` (each matched with its own trial bindings)."""

    options: tuple[Any, ...]


@dataclass(frozen=True)
class Partial:
    """A JSON object that has at least these fields (extra fields allowed)."""

    fields: dict[str, Any]


@dataclass(frozen=True)
class Check:
    """A value for which ``predicate`` holds; ``description`` says which."""

    predicate: Callable[[Any], bool]
    description: str

    def __repr__(self) -> str:
        return f"<{self.description}>"


class Mismatch(Exception):
    """What the server sent differs from the model's prediction."""

    def __init__(self, path: str, expected: Any, actual: Any, why: str = "") -> None:
        self.path = path
        self.expected = expected
        self.actual = actual
        self.why = why
        super().__init__(self.describe())

    def describe(self) -> str:
        """One line: where, what was expected, what came."""
        where = self.path or "the value"
        reason = f" ({self.why})" if self.why else ""
        return f"at {where}: expected {show(self.expected)}, got {show(self.actual)}{reason}"


def show(value: Any) -> str:
    text = repr(value) if not isinstance(value, (dict, list, str)) else json.dumps(value, default=repr)
    return text if len(text) <= 400 else text[:400] + "..."


class Bindings:
    """What each ``Sym`` turned out to be on this server."""

    def __init__(self) -> None:
        self.values: dict[Sym, Any] = {}
        self._owners: dict[Any, Sym] = {}

    def copy(self) -> "Bindings":
        """A copy to try a match on (see ``adopt``)."""
        other = Bindings()
        other.values = dict(self.values)
        other._owners = dict(self._owners)
        return other

    def adopt(self, other: "Bindings") -> None:
        """Take the bindings of a copy whose match succeeded."""
        self.values = other.values
        self._owners = other._owners

    def bind(self, sym: Sym, value: Any) -> str | None:
        """Bind ``sym``; returns why not, if the value cannot be it."""
        if sym.kind == "id":
            if not is_object_id(value):
                return "a record id is 24 lowercase hex digits"
            owner = self._owners.get(value)
            if owner is not None and owner != sym:
                return f"this id already names {owner!r}; ids must be new"
            self._owners[value] = sym
        elif sym.kind == "ts":
            if not isinstance(value, str) or not _TIMESTAMP.match(value):
                return "timestamps are ISO 8601 UTC with milliseconds, like 2020-04-21T17:39:12.829Z"
        self.values[sym] = value
        return None

    def sym_of(self, value: Any) -> Sym | None:
        """The id ``Sym`` bound to ``value``, if any."""
        return self._owners.get(value)

    def resolve(self, value: Any) -> Any:
        """``value`` with every bound ``Sym`` replaced by what it is."""
        if isinstance(value, Sym):
            return self.values.get(value, value)
        if isinstance(value, dict):
            return {key: self.resolve(item) for key, item in value.items()}
        if isinstance(value, list):
            return [self.resolve(item) for item in value]
        if isinstance(value, tuple):
            return tuple(self.resolve(item) for item in value)
        return value


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def match(expected: Any, actual: Any, bindings: Bindings, path: str = "") -> None:
    """Check ``actual`` (decoded JSON) against ``expected``; bind new ``Sym``s.

    Raises ``Mismatch`` at the first difference. JSON types are compared
    strictly (``true`` is not ``1``); numbers compare by value.
    """
    if isinstance(expected, Sym):
        if expected in bindings.values:
            if bindings.values[expected] != actual:
                raise Mismatch(path, bindings.values[expected], actual, f"the value seen earlier for {expected!r}")
            return
        problem = bindings.bind(expected, actual)
        if problem:
            raise Mismatch(path, expected, actual, problem)
    elif expected is ANY_STRING:
        if not isinstance(actual, str):
            raise Mismatch(path, expected, actual)
    elif isinstance(expected, Check):
        if not expected.predicate(actual):
            raise Mismatch(path, expected, actual)
    elif isinstance(expected, OneOf):
        problems = []
        for option in expected.options:
            trial = bindings.copy()
            try:
                match(option, actual, trial, path)
            except Mismatch as mismatch:
                problems.append(mismatch)
                continue
            bindings.adopt(trial)
            return
        raise Mismatch(path, expected, actual, "; ".join(p.describe() for p in problems))
    elif isinstance(expected, Partial):
        if not isinstance(actual, dict):
            raise Mismatch(path, expected.fields, actual, "expected an object")
        for key, value in expected.fields.items():
            if key not in actual:
                raise Mismatch(f"{path}.{key}", value, None, "field missing")
            match(value, actual[key], bindings, f"{path}.{key}")
    elif isinstance(expected, dict):
        if not isinstance(actual, dict):
            raise Mismatch(path, bindings.resolve(expected), actual, "expected an object")
        missing = [key for key in expected if key not in actual]
        extra = [key for key in actual if key not in expected]
        if missing or extra:
            raise Mismatch(path, bindings.resolve(expected), actual, f"missing fields {missing}, unexpected fields {extra}")
        for key, value in expected.items():
            match(value, actual[key], bindings, f"{path}.{key}")
    elif isinstance(expected, list):
        if not isinstance(actual, list) or len(actual) != len(expected):
            raise Mismatch(path, bindings.resolve(expected), actual, "expected a list of this length")
        for index, (want, got) in enumerate(zip(expected, actual)):
            match(want, got, bindings, f"{path}[{index}]")
    elif is_number(expected):
        if not is_number(actual) or actual != expected:
            raise Mismatch(path, expected, actual)
    elif type(actual) is not type(expected) or actual != expected:
        raise Mismatch(path, expected, actual)
