"""The DTOs of Asnity's routes and the part of class-validator they use
(asnity.md section 1, "Inputs"; the decorators are the original's, read
from ``server/apps/api/src/*/dto``).

The original validates with ``ValidationPipe({whitelist: true})``: a key no
decorator names is silently dropped (never a 400), nothing is coerced (a
query value stays a string), and a failure is 400 with every message of
every field, as an array, worded as class-validator's defaults. Each
``Field`` lists its rules in the order Nest prints their messages, which is
the reverse of the decorators' order in the TypeScript source (decorators
apply bottom-up). ``IsOptional`` skips a field that is missing or ``null``.

Departures, each a fault of the original's DTO: ``users`` of a channel
invite must be an array of ids (the original only checked ``IsNotEmpty`` and
crashed on a string), a channel's new name is 2-20 characters as at
creation, and a password is at most 1024 characters (argon2 of a megabyte
is a cheap way to burn the server's CPU).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .nest import bad_request

__all__ = [
    "APPEND_USERS",
    "CHANNEL",
    "CHAT_TYPES",
    "COMMUNITY",
    "CREATE_CHANNEL",
    "CREATE_COMMUNITY",
    "DELETE_CHAT",
    "FOLLOW",
    "GET_CHATS",
    "INVITE_CHANNEL",
    "JOIN_CHANNEL",
    "MODIFY_CHANNEL",
    "MODIFY_CHAT",
    "MODIFY_COMMUNITY",
    "MODIFY_USER",
    "POST_CHAT",
    "SEARCH_USERS",
    "SIGN_IN",
    "SIGN_UP",
    "STATUSES",
    "UPDATE_LAST_READ",
    "Field",
    "Rule",
    "array_not_empty",
    "each_mongo_id",
    "is_array",
    "is_boolean",
    "is_email",
    "is_in",
    "is_mongo_id",
    "is_not_empty",
    "is_string",
    "length",
    "max_length",
    "min_length",
    "validate",
]

_MISSING: Any = object()

#: A user's statuses (``utils/def.ts`` ``STATUS``).
STATUSES = ("ONLINE", "OFFLINE", "AFK")
#: The chat types a client may send. The original also took ``SYSTEM``,
#: which let anyone write what looks like a notice of the bot (bug 6): only
#: the server writes SYSTEM chats here.
CHAT_TYPES = ("TEXT", "IMAGE")

# validator.js's isEmail, for the addresses people have: a dot-atom local
# part and a domain of labels ending in a top-level domain of letters.
_EMAIL = re.compile(
    r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}\Z"
)
_MONGO_ID = re.compile(r"[0-9a-fA-F]{24}\Z")


@dataclass(frozen=True, slots=True)
class Rule:
    """One class-validator constraint: whether a value passes, and the
    message when it does not (``$property`` is the field's name)."""

    passes: Callable[[Any], bool]
    message: Callable[[Any], str]


def _rule(passes: Callable[[Any], bool], message: str) -> Rule:
    return Rule(passes, lambda value: message)


is_not_empty = _rule(lambda v: v is not _MISSING and v is not None and v != "", "$property should not be empty")
is_string = _rule(lambda v: isinstance(v, str), "$property must be a string")
is_email = _rule(lambda v: isinstance(v, str) and len(v) <= 254 and _EMAIL.match(v) is not None, "$property must be an email")
is_mongo_id = _rule(lambda v: isinstance(v, str) and _MONGO_ID.match(v) is not None, "$property must be a mongodb id")
is_boolean = _rule(lambda v: v is True or v is False, "$property must be a boolean value")
is_array = _rule(lambda v: isinstance(v, list), "$property must be an array")
array_not_empty = _rule(lambda v: isinstance(v, list) and len(v) > 0, "$property should not be empty")
each_mongo_id = _rule(
    # Only judges arrays: ``is_array`` reports anything else.
    lambda v: not isinstance(v, list) or all(isinstance(x, str) and _MONGO_ID.match(x) for x in v),
    "each value in $property must be a mongodb id",
)


def is_in(values: tuple[str, ...]) -> Rule:
    """``IsIn(values)``."""
    return _rule(lambda v: isinstance(v, str) and v in values, f"$property must be one of the following values: {', '.join(values)}")


def min_length(n: int) -> Rule:
    """``MinLength(n)``."""
    return _rule(lambda v: isinstance(v, str) and len(v) >= n, f"$property must be longer than or equal to {n} characters")


def max_length(n: int) -> Rule:
    """``MaxLength(n)``."""
    return _rule(lambda v: isinstance(v, str) and len(v) <= n, f"$property must be shorter than or equal to {n} characters")


def length(low: int, high: int) -> Rule:
    """``Length(low, high)``, whose message names the bound that failed."""

    def message(value: Any) -> str:
        if not isinstance(value, str) or len(value) < low:
            return f"$property must be longer than or equal to {low} characters"
        return f"$property must be shorter than or equal to {high} characters"

    return Rule(lambda v: isinstance(v, str) and low <= len(v) <= high, message)


@dataclass(frozen=True, slots=True)
class Field:
    """A DTO property: its rules in Nest's message order; ``optional`` is
    ``IsOptional``."""

    name: str
    rules: tuple[Rule, ...]
    optional: bool = False


def validate(data: dict[str, Any], fields: tuple[Field, ...]) -> dict[str, Any]:
    """The declared fields of ``data`` that are present (the whitelist), or a
    400 ``NestError`` with every failed rule's message."""
    messages: list[str] = []
    kept: dict[str, Any] = {}
    for field in fields:
        value = data.get(field.name, _MISSING)
        if field.optional and (value is _MISSING or value is None):
            continue
        for rule in field.rules:
            if not rule.passes(value):
                messages.append(rule.message(value).replace("$property", field.name))
        if value is not _MISSING:
            kept[field.name] = value
    if messages:
        raise bad_request(messages)
    return kept


def _id(name: str, *, mongo_first: bool = False) -> Field:
    # ``@IsMongoId() @IsNotEmpty()`` prints "should not be empty" first;
    # ``@IsNotEmpty() @IsMongoId()`` the other way round.
    rules = (is_mongo_id, is_not_empty) if mongo_first else (is_not_empty, is_mongo_id)
    return Field(name, rules)


def _optional_string(name: str) -> Field:
    return Field(name, (is_string,), optional=True)


# -- the DTOs, in their source order of properties ---------------------------

SIGN_UP = (
    Field("id", (is_not_empty, is_email)),
    Field("password", (min_length(8), is_string, max_length(1024))),
    Field("nickname", (length(2, 8), is_string)),
)
SIGN_IN = (
    Field("id", (is_not_empty, is_email)),
    Field("password", (min_length(8), is_string, max_length(1024))),
)
CREATE_COMMUNITY = (
    Field("name", (length(2, 20), is_string, is_not_empty)),
    _optional_string("description"),
    _optional_string("profileUrl"),
)
#: Every route that names a community only by its path.
COMMUNITY = (_id("community_id", mongo_first=True),)
APPEND_USERS = (
    _id("community_id", mongo_first=True),
    Field("users", (array_not_empty, is_array, is_not_empty, each_mongo_id)),
)
MODIFY_COMMUNITY = (
    _id("community_id", mongo_first=True),
    _optional_string("name"),
    Field("managerId", (is_mongo_id,), optional=True),
    _optional_string("description"),
    _optional_string("profileUrl"),
)
CREATE_CHANNEL = (
    _id("communityId"),
    Field("name", (is_not_empty, length(2, 20), is_string)),
    Field("type", (is_not_empty, is_string)),
    Field("isPrivate", (is_not_empty, is_boolean)),
    _optional_string("description"),
)
#: Every route that names a channel only by its path.
CHANNEL = (_id("channel_id"),)
MODIFY_CHANNEL = (
    _id("channel_id"),
    Field("name", (is_string, length(2, 20)), optional=True),
    _optional_string("description"),
    Field("isPrivate", (is_boolean,), optional=True),
    Field("managerId", (is_mongo_id,), optional=True),
)
INVITE_CHANNEL = (
    _id("community_id"),
    _id("channel_id"),
    Field("users", (is_not_empty, is_array, each_mongo_id)),
)
JOIN_CHANNEL = (_id("channel_id"), _id("community_id"))
UPDATE_LAST_READ = (_id("community_id"), _id("channel_id"))
POST_CHAT = (
    _id("channel_id"),
    Field("type", (is_not_empty, is_in(CHAT_TYPES))),
    Field("content", (is_not_empty, is_string)),
)
GET_CHATS = (
    Field("prev", (), optional=True),
    Field("next", (), optional=True),
    _id("channel_id"),
)
MODIFY_CHAT = (
    _id("channel_id"),
    Field("chat_id", (is_not_empty,)),
    Field("content", (is_not_empty, is_string)),
)
DELETE_CHAT = (_id("channel_id"), Field("chat_id", (is_not_empty,)))
FOLLOW = (_id("followId", mongo_first=True),)
MODIFY_USER = (
    Field("nickname", (length(2, 8), is_string), optional=True),
    _optional_string("profileUrl"),
    _optional_string("description"),
    Field("status", (is_in(STATUSES), is_string), optional=True),
)
#: ``GET /api/users?search=``: the original read the query unvalidated.
SEARCH_USERS = (Field("search", (is_not_empty, is_string)),)
