"""Hypothesis strategies for every Backpack wire message, valid and invalid.

Each message - a REST body, a websocket action message - is generated as a
*template*: the JSON a client sends, except that values which depend on the
server's state (an existing record's id, a field it has, a channel someone
created, a user's id, one of the collections in play) are ``Ref``s. A
``Vocabulary`` lists what the state holds, and ``resolve`` turns a template
into a message against it. The functions below (``write_messages(vocab)``
and friends) do both; the stateful test draws templates and resolves them
itself.

Why templates: a small vocabulary makes messages collide (the same record
patched twice, a broadcast to the channel someone just joined), which is
where servers go wrong; and because a ``Ref`` is an index with fixed bounds,
a test case still lines up when the shrinker deletes an earlier step and the
lists change length (a ``sampled_from(ids)`` would not). The strategies are
built once, which keeps generation fast.

Invalid variants - reserved or malformed collection names, ids that cannot
exist, missing or mistyped fields, frames that are not JSON objects, unknown
actions - come from the same strategies, so the error paths are exercised
as often as the rest. Strings never contain ``$`` (the script placeholders'
sigil) or lone surrogates; numbers stay exact in JSON.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

from hypothesis import strategies as st

from .model import WEBSOCKET_ACTIONS

__all__ = [
    "Ref",
    "Vocabulary",
    "resolve",
    "realize",
    "PATH_COLLECTIONS",
    "RECORD_IDS",
    "texts",
    "json_values",
    "field_names",
    "INVALID_COLLECTIONS",
    "INVALID_PATH_COLLECTIONS",
    "RECORD_DATA",
    "PATCH_DATA",
    "READ_MESSAGES",
    "WRITE_MESSAGES",
    "RELAY_MESSAGES",
    "CHANNEL_MESSAGES",
    "DELETE_CHANNEL_MESSAGES",
    "VALID_MESSAGES",
    "CORRUPTED_MESSAGES",
    "INVALID_FRAMES",
    "read_messages",
    "write_messages",
    "relay_messages",
    "channel_messages",
    "delete_channel_messages",
    "corrupted_messages",
    "register_bodies",
    "login_bodies",
    "WEBSOCKET_ACTIONS",
]

S = st.SearchStrategy


# -- references and vocabularies -------------------------------------------------


@dataclass(frozen=True)
class Ref:
    """A value taken from the state when the template is resolved.

    ``kind``: ``collection`` (one of the collections in play; 0 is the
    busiest), ``users`` / ``types`` / ``messages`` (the collection roles of
    the channel actions), ``record`` (an id shown by the server, of the
    message's collection first), ``field`` (a field the message's
    collection's records have), ``pair`` (a field and value of one of its
    records), ``channel`` (a channel's ``channelType``/``channelId``; ``part``
    says which) or ``user`` (a user id).
    """

    kind: str
    index: int
    part: str = ""


@dataclass
class Vocabulary:
    """What the server's state holds, as far as the client knows."""

    #: Collections in play; the first is the busiest.
    collections: Sequence[str]
    #: Record ids the server has shown, by collection.
    ids: dict[str, Sequence[str]] = field(default_factory=dict)
    #: Records as known, by collection (for fields and query values).
    records: dict[str, Sequence[dict[str, Any]]] = field(default_factory=dict)
    #: ``(channelType, channelId)`` of the channels created so far.
    channels: Sequence[tuple[str, str]] = ()
    user_ids: Sequence[str] = ()
    #: The users-information, channel-type and channel-messages collections.
    users_collections: Sequence[str] = ()
    channel_types: Sequence[str] = ()
    message_collections: Sequence[str] = ()


def _nth(items: Sequence[Any], index: int, fallback: Any) -> Any:
    return items[index % len(items)] if items else fallback


def resolve(template: Any, vocab: Vocabulary, collection: str | None = None) -> Any:
    """The message ``template`` stands for, against ``vocab``.

    Record, field and pair references refer to ``collection`` - by default
    the template's own ``collection`` (or ``channelType``) field.
    """
    if isinstance(template, dict):
        if collection is None:
            for key in ("collection", "channelType"):
                if key in template:
                    named = resolve(template[key], vocab)
                    collection = named if isinstance(named, str) else None
                    break
        return {resolve(key, vocab, collection): resolve(value, vocab, collection) for key, value in template.items()}
    if isinstance(template, list):
        return [resolve(item, vocab, collection) for item in template]
    if isinstance(template, tuple):
        return tuple(resolve(item, vocab, collection) for item in template)
    if not isinstance(template, Ref):
        return template
    kind, index = template.kind, template.index
    if kind == "collection":
        return _nth(vocab.collections, index, "notes")
    if kind in ("users", "types", "messages"):
        role = {"users": vocab.users_collections, "types": vocab.channel_types,
                "messages": vocab.message_collections}[kind]
        return _nth(role or vocab.collections, index, "notes")
    if kind == "record":
        own = list(vocab.ids.get(collection or "", ()))
        # A valid id of another collection now and then: it must not be found.
        others = [i for name, ids in vocab.ids.items() if name != collection for i in ids][:2]
        return _nth(own + others, index, "0" * 24)
    if kind == "field":
        names = sorted({key for record in vocab.records.get(collection or "", ()) for key in record})
        return _nth(names, index, "text")
    if kind == "pair":
        pairs = [(key, value) for record in vocab.records.get(collection or "", ())
                 for key, value in record.items() if key not in ("createdAt", "updatedAt")]
        return _nth(pairs, index, ("text", ""))
    if kind == "channel":
        channel = _nth(vocab.channels, index, (_nth(vocab.channel_types or vocab.collections, 0, "rooms"), "lobby"))
        return channel[0] if template.part == "type" else channel[1]
    if kind == "user":
        return _nth(vocab.user_ids, index, "nobody")
    raise ValueError(f"unknown reference {template!r}")


_INDEX = st.integers(0, 15)


def _ref(kind: str, part: str = "") -> S[Ref]:
    return _INDEX.map(lambda i: Ref(kind, i, part))


# -- JSON ---------------------------------------------------------------------------

#: Short text without ``$`` or surrogates.
texts: S[str] = st.text(st.characters(codec="utf-8", exclude_characters="$"), max_size=8)

_SCALARS: S[Any] = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**53), 2**53),
    st.floats(allow_nan=False, allow_infinity=False, width=64),
    texts,
)

#: Field names: the ones routing and the server care about, and others.
field_names: S[str] = st.one_of(
    st.sampled_from(
        ["text", "n", "tags", "done", "nested", "channelType", "channelId", "broadcast", "userId", "_id",
         "createdAt", "__v"]
    ),
    st.text("abxyz.", min_size=1, max_size=4),
)


def json_values(max_leaves: int = 6) -> S[Any]:
    """Any JSON value, small."""
    return st.recursive(
        _SCALARS,
        lambda children: st.one_of(
            st.lists(children, max_size=3),
            st.dictionaries(st.one_of(st.text("abcn.", min_size=1, max_size=3), field_names), children, max_size=3),
        ),
        max_leaves=max_leaves,
    )


_VALUES = json_values()

# -- records ------------------------------------------------------------------------

_CHANNEL_FIELDS: S[dict[str, Any]] = st.one_of(
    _INDEX.map(lambda i: {"channelType": Ref("channel", i, "type"), "channelId": Ref("channel", i, "id")}),
    st.fixed_dictionaries({"channelType": texts, "channelId": st.one_of(texts, st.integers(0, 3))}),
)

#: The fields that decide who hears about a record or message (seed 000).
_ROUTING: S[dict[str, Any]] = st.one_of(
    st.just({}),
    st.fixed_dictionaries({"broadcast": st.sampled_from([False, "false", True, "true", 0, None])}),
    _CHANNEL_FIELDS,
    _ref("user").map(lambda user: {"userId": user}),
)

#: A record's fields as a client writes them (reserved fields now and then:
#: the server must ignore them), routing fields included.
RECORD_DATA: S[dict[str, Any]] = st.tuples(st.dictionaries(field_names, _VALUES, max_size=4), _ROUTING).map(
    lambda parts: {**parts[0], **parts[1]}
)

#: Fields to merge: often ``null`` (removes the field) or a field records have.
PATCH_DATA: S[dict[str, Any]] = st.tuples(
    st.dictionaries(st.one_of(_ref("field"), field_names), st.one_of(st.none(), _VALUES), max_size=3), _ROUTING
).map(lambda parts: {**parts[0], **parts[1]})

# -- collections and ids ------------------------------------------------------------

#: Collection names a server must refuse: reserved (any case) or malformed.
INVALID_COLLECTIONS = ("users", "Users", "uploads", "sessions", "bad name", "-dash", "a" * 65, "x/y", "ünï")
#: The same for REST paths, where ``/uploads`` is the file API rather than a collection.
INVALID_PATH_COLLECTIONS = tuple(name for name in INVALID_COLLECTIONS if name != "uploads")


def _collections(kind: str = "collection") -> S[Any]:
    """Mostly one in play (the busiest most often); sometimes one a server must refuse."""
    good = st.one_of(st.just(Ref(kind, 0)), _ref(kind))
    return st.one_of(good, good, good, st.sampled_from(INVALID_COLLECTIONS))


#: A collection in play, for REST paths (mostly valid).
PATH_COLLECTIONS: S[Any] = st.one_of(st.just(Ref("collection", 0)), _ref("collection"), _ref("collection"),
                                      st.sampled_from(INVALID_PATH_COLLECTIONS))

#: A record id: mostly one the server showed, sometimes one that names
#: nothing or cannot be an id at all.
RECORD_IDS: S[Any] = st.one_of(_ref("record"), _ref("record"), st.sampled_from(["0" * 24, "nope", "0" * 23, "A" * 24]))

#: A ``find`` query: empty, a field and value of an existing record (so it
#: matches something), or any field and value.
QUERIES: S[Any] = st.one_of(
    st.just({}),
    st.dictionaries(field_names, _SCALARS, min_size=1, max_size=2),
    st.lists(_ref("pair"), min_size=1, max_size=2).map(lambda pairs: {"$pairs": pairs}),
)

# -- websocket messages -----------------------------------------------------------------


def _pairs_to_query(message: dict[str, Any]) -> dict[str, Any]:
    query = message.get("query")
    if isinstance(query, dict) and "$pairs" in query:
        message = {**message, "query": {key: value for key, value in query["$pairs"]}}
    return message


#: ``find``, ``getAll`` or ``getOne``.
READ_MESSAGES: S[dict[str, Any]] = st.one_of(
    st.fixed_dictionaries({"action": st.just("find"), "collection": _collections()},
                          optional={"query": st.one_of(st.none(), QUERIES)}),
    st.fixed_dictionaries({"action": st.just("getAll"), "collection": _collections()}),
    st.fixed_dictionaries({"action": st.just("getOne"), "collection": _collections(), "id": RECORD_IDS}),
)

#: ``create``, ``update``, ``patch`` or ``delete`` (creates and patches most).
WRITE_MESSAGES: S[dict[str, Any]] = st.one_of(
    st.fixed_dictionaries({"action": st.just("create"), "collection": _collections(), "data": RECORD_DATA}),
    st.fixed_dictionaries({"action": st.just("create"), "collection": _collections(), "data": RECORD_DATA}),
    st.fixed_dictionaries({"action": st.just("update"), "collection": _collections(), "id": RECORD_IDS,
                           "data": RECORD_DATA}),
    st.fixed_dictionaries({"action": st.just("patch"), "collection": _collections(), "id": RECORD_IDS,
                           "data": PATCH_DATA}),
    st.fixed_dictionaries({"action": st.just("patch"), "collection": _collections(), "id": RECORD_IDS,
                           "data": PATCH_DATA}),
    st.fixed_dictionaries({"action": st.just("delete"), "collection": _collections(), "id": RECORD_IDS}),
)

#: ``broadcast``, ``open`` or ``close``: any object, relayed by the routing rule.
RELAY_MESSAGES: S[dict[str, Any]] = st.tuples(
    st.sampled_from(["broadcast", "open", "close"]),
    st.dictionaries(st.text("abmsg", min_size=1, max_size=4), json_values(3), max_size=2),
    _ROUTING,
).map(lambda parts: {**parts[1], **parts[2], "action": parts[0]})

_CHANNEL = st.one_of(
    _INDEX.map(lambda i: (Ref("channel", i, "type"), Ref("channel", i, "id"))),
    _INDEX.map(lambda i: (Ref("channel", i, "type"), Ref("channel", i, "id"))),
    st.tuples(_collections("types"), st.sampled_from(["lobby", "0" * 24])),
)

#: ``joinUsersChannels``, ``createChannel``, ``joinChannel``, ``leaveChannel``
#: or ``changeChannel`` (seed 000, "Websocket Channels").
CHANNEL_MESSAGES: S[dict[str, Any]] = st.one_of(
    st.fixed_dictionaries({"action": st.just("joinUsersChannels"), "usersInformationCollection": _collections("users")}),
    *[
        st.fixed_dictionaries({"action": st.just("createChannel"), "usersInformationCollection": _collections("users"),
                               "channelType": _collections("types")},
                              optional={"name": st.one_of(texts, json_values(2))})
    ] * 2,
    *[
        st.tuples(st.just(action), _collections("users"), _CHANNEL).map(
            lambda p: {"action": p[0], "usersInformationCollection": p[1], "channelType": p[2][0],
                       "channelId": p[2][1]})
        for action in ("joinChannel", "joinChannel", "leaveChannel", "changeChannel")
    ],
)

#: ``deleteChannel``.
DELETE_CHANNEL_MESSAGES: S[dict[str, Any]] = st.tuples(_collections("users"), _collections("messages"), _CHANNEL).map(
    lambda p: {"action": "deleteChannel", "usersInformationCollection": p[0], "channelMessagesCollection": p[1],
               "channelType": p[2][0], "channelId": p[2][1]}
)

#: Any well-formed action message.
VALID_MESSAGES: S[dict[str, Any]] = st.one_of(READ_MESSAGES, WRITE_MESSAGES, RELAY_MESSAGES, CHANNEL_MESSAGES,
                                              DELETE_CHANNEL_MESSAGES)

_WRONG_TYPES: S[Any] = st.one_of(st.none(), st.integers(0, 9), st.booleans(), st.lists(st.integers(0, 2), max_size=2),
                                 st.just({"$gt": ""}))


@st.composite
def _corrupt(draw: Any, messages: S[dict[str, Any]]) -> dict[str, Any]:
    message = dict(draw(messages))
    fields = sorted(key for key in message if key != "action")
    if not fields:
        return {**message, "action": draw(st.sampled_from(["explode", "", "Find", "GETALL"]))}
    victim = fields[draw(_INDEX) % len(fields)]
    if draw(st.booleans()):
        del message[victim]
    else:
        message[victim] = draw(_WRONG_TYPES)
    return message


#: A well-formed message with one field dropped or given a wrong type.
CORRUPTED_MESSAGES: S[dict[str, Any]] = _corrupt(VALID_MESSAGES)

_BAD_TEXT = ["{nope", "", "[]", "null", "42", '"find"', "[1, 2", '{"action": 1}', '{"action": "explode"}',
             '{"noaction": true}', '{"action": null}', '{"action": "find"', "NaN"]

#: Websocket frames a server must answer with an error, as step fields:
#: ``{"text": ...}``, ``{"binary": hex}`` or ``{"message": ...}``.
INVALID_FRAMES: S[dict[str, Any]] = st.one_of(
    st.sampled_from(_BAD_TEXT).map(lambda text: {"text": text}),
    st.binary(min_size=1, max_size=8).map(lambda data: {"binary": data.hex()}),
    st.one_of(texts, st.integers(0, 3)).filter(lambda action: action not in WEBSOCKET_ACTIONS).map(
        lambda action: {"message": {"action": action}}),
    CORRUPTED_MESSAGES.map(lambda message: {"message": message}),
)


def realize(template: Any, vocab: Vocabulary, collection: str | None = None) -> Any:
    """``resolve`` a drawn template into the message (or body) it stands for."""
    value = resolve(template, vocab, collection)
    return _pairs_to_query(value) if isinstance(value, dict) else value


def _resolved(templates: S[Any], vocab: Vocabulary) -> S[Any]:
    return templates.map(lambda template: realize(template, vocab))


def read_messages(vocab: Vocabulary) -> S[dict[str, Any]]:
    """``find`` / ``getAll`` / ``getOne`` messages against ``vocab``."""
    return _resolved(READ_MESSAGES, vocab)


def write_messages(vocab: Vocabulary) -> S[dict[str, Any]]:
    """``create`` / ``update`` / ``patch`` / ``delete`` messages against ``vocab``."""
    return _resolved(WRITE_MESSAGES, vocab)


def relay_messages(vocab: Vocabulary) -> S[dict[str, Any]]:
    """``broadcast`` / ``open`` / ``close`` messages against ``vocab``."""
    return _resolved(RELAY_MESSAGES, vocab)


def channel_messages(vocab: Vocabulary) -> S[dict[str, Any]]:
    """The channel actions other than ``deleteChannel``, against ``vocab``."""
    return _resolved(CHANNEL_MESSAGES, vocab)


def delete_channel_messages(vocab: Vocabulary) -> S[dict[str, Any]]:
    """``deleteChannel`` messages against ``vocab``."""
    return _resolved(DELETE_CHANNEL_MESSAGES, vocab)


def corrupted_messages(vocab: Vocabulary) -> S[dict[str, Any]]:
    """Malformed action messages against ``vocab``."""
    return _resolved(CORRUPTED_MESSAGES, vocab)


# -- account bodies -----------------------------------------------------------------------

_PASSWORD = "a-long-enough-password"


def register_bodies(namespace: str, emails: Sequence[str], *, fresh: bool) -> S[dict[str, Any]]:
    """``POST /register`` bodies as step fields (``json`` or ``raw``).

    ``fresh`` adds a valid registration of a new email (costly on a real
    server: one password hash); the rest are refused before any hashing -
    a taken email (in another case), an invalid email, a weak password, a
    body that is not an object or not JSON.
    """
    options: list[S[dict[str, Any]]] = [
        st.sampled_from(list(emails)).map(lambda e: {"json": {"email": e.upper(), "password": _PASSWORD}}),
        st.sampled_from(["not-an-email", "a@b", "@example.com", "two@@example.com"]).map(
            lambda e: {"json": {"email": e, "password": _PASSWORD}}),
        st.text("abc1", max_size=3).map(lambda p: {"json": {"email": f"{namespace}weak@example.com", "password": p}}),
        st.sampled_from([{"json": [1]}, {"json": {"email": 5, "password": _PASSWORD}}, {"json": {}},
                         {"raw": "{nope"}, {"json": {"email": f"{namespace}x@example.com"}}]),
    ]
    if fresh:
        options.append(st.integers(1, 3).map(
            lambda n: {"json": {"email": f"{namespace}new{n}@example.com", "password": _PASSWORD}}))
    return st.one_of(*options)


def login_bodies(accounts: Sequence[tuple[str, str]], namespace: str, *, checking: bool) -> S[dict[str, Any]]:
    """``POST /login`` bodies: with ``checking``, ones that make the server
    verify a password (right, wrong, unknown email - costly on a real
    server); otherwise malformed ones only."""
    malformed = st.sampled_from([{"json": [1]}, {"json": {"email": "x"}}, {"raw": "{nope"},
                                 {"json": {"email": None, "password": None}}])
    if not checking:
        return malformed
    return st.one_of(
        st.sampled_from(list(accounts)).map(lambda a: {"json": {"email": a[0], "password": a[1]}}),
        st.sampled_from(list(accounts)).map(lambda a: {"json": {"email": a[0].upper(), "password": a[1] + "x"}}),
        st.just({"json": {"email": f"{namespace}nobody@example.com", "password": _PASSWORD}}),
    )
