"""Inbox messages over UDP (seed 001, BRIEF section 2): the datagram codec and its handling.

Seed 001 offers the two message requests over UDP as well - add or merge,
answered ``M`` on success and ``N`` when the document is not an inbox, and
remove. The original's byte layout is not public; this one authenticates the
sender (it proves knowledge of the write token without sending it), refuses
replays, and fits one datagram.

Keys. ``T`` is the write token's 16 bytes (its 32 hex digits decoded).
``ID = SHA-256("satchel-inbox-id" || T)[0:16]`` names the document, and
``K = SHA-256("satchel-inbox-key" || T)`` keys the HMAC (``||``:
concatenation; the labels are ASCII, without a terminator). The server
stores ``ID`` and ``K`` (and ``SHA-256(T)`` for HTTP), never ``T``: it can
verify a datagram, but whoever learns ``K`` still cannot use the HTTP API,
which takes ``T`` itself (``tokens.py``).

Request (all integers unsigned, big-endian)::

    offset  size  field
    0       4     magic: ASCII "SINB" (53 49 4E 42)
    4       1     version: 0x01
    5       1     operation: 0x41 "A" add or merge a message,
                             0x52 "R" remove a message
    6       16    ID, the document id (above)
    22      8     timestamp: milliseconds since the Unix epoch, by the sender's clock
    30      8     nonce: 8 random bytes, fresh for every request
    38      8     message id: the message's 16 hex digits, decoded (stored as lowercase hex)
    46      L     message: for "A", the JSON message in UTF-8, 1 <= L <= 4096
                  (the HTTP API's limit); for "R", nothing (L = 0). A
                  request whose L breaks this within the 4096 bound is
                  answered "B"; beyond it, it is dropped
    46+L    32    tag: HMAC-SHA256(K, bytes 0 .. 46+L-1), i.e. of everything before it

A request is therefore 78 + L bytes, at most 4174. A sender retrying after
a lost answer sends a NEW request (new timestamp and nonce): merging is
idempotent, and the server refuses the same bytes twice.

Answer::

    offset  size  field
    0       4     magic: ASCII "SINB"
    4       1     version: 0x01
    5       1     code: 0x4D "M" done - merged (also when the merge changed
                        nothing), removed, or there was no such message;
                        0x4E "N" the document is not an inbox (HTTP 403);
                        0x42 "B" bad message: not JSON, "#" not a number, or
                        a body on a remove (HTTP 400);
                        0x54 "T" the inbox would grow beyond the server's
                        document size limit (HTTP 413)
    6       8     nonce: the request's nonce
    14      16    tag: HMAC-SHA256(K, answer bytes 0..13 || the request's 32-byte tag)[0:16]

An answer is 30 bytes, less than the smallest request (78), so the endpoint
amplifies nothing; its tag binds it to the one request it answers.

Dropped without an answer (an attacker learns nothing, a spoofed source
gets nothing): a wrong size, magic, version or operation; a message over
4096 bytes; an unknown document id; a tag that does not verify; a timestamp
outside the server's replay window (``replay.py``: +-30 s by default, and
never before the server started) or a datagram already seen.

The order of checks: layout, freshness, the document (one point read), the
tag, the replay memory (only authentic datagrams reach it, so a forger
cannot fill it), then the message.

Batches. ``handle_datagrams`` answers the datagrams a server read in one go
as ``handle_datagram`` answers each, in order, with one read of the keys
and one ``ApplyMessages`` for all of them: a burst costs one store write
(one group commit), not one per datagram. The replay memory is consulted
datagram by datagram in that order, so a datagram repeated within its own
batch is refused like any other replay, and each answer is made only once
the batch's write is done (durable) - never before. Client and server halves are both here,
pure; ``satchel.transports.udp`` sends and serves.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from typing import Any, Literal, Sequence

import msgspec

from ..environment import Environment
from ..mounts import DatagramOutcome
from ..operations import Action, DocumentKeys, GetDocumentKeys, MessageEdit
from . import merge
from .config import MAX_MESSAGE_BYTES, InboxConfig
from .documents import InvalidJson, decode_json, write_messages
from .replay import ReplayGuard
from .tokens import document_id, mac_key, parse_message_id, parse_write_token

__all__ = [
    "MAGIC",
    "VERSION",
    "REQUEST_HEADER_BYTES",
    "TAG_BYTES",
    "MIN_REQUEST_BYTES",
    "MAX_REQUEST_BYTES",
    "ANSWER_BYTES",
    "ANSWER_CODES",
    "ORIGIN_UDP",
    "DatagramRequest",
    "new_replay_guard",
    "encode_request",
    "decode_request",
    "verify_request",
    "encode_answer",
    "decode_answer",
    "handle_datagram",
    "handle_datagrams",
]

MAGIC = b"SINB"
VERSION = 1
_ADD, _REMOVE = ord("A"), ord("R")
_HEADER = struct.Struct(">4sBB16sQ8s8s")
_ANSWER_HEAD = struct.Struct(">4sBB8s")
#: Bytes before the message.
REQUEST_HEADER_BYTES = _HEADER.size  # 46
#: Bytes of a request's tag.
TAG_BYTES = 32
_ANSWER_TAG_BYTES = 16
MIN_REQUEST_BYTES = REQUEST_HEADER_BYTES + TAG_BYTES  # 78
MAX_REQUEST_BYTES = MIN_REQUEST_BYTES + MAX_MESSAGE_BYTES  # 4174
ANSWER_BYTES = _ANSWER_HEAD.size + _ANSWER_TAG_BYTES  # 30

#: Answer code -> what it means, as the HTTP status it stands for.
ANSWER_CODES: dict[str, int] = {"M": 200, "N": 403, "B": 400, "T": 413}

#: ``DocumentChange.origin`` of writes made over UDP.
ORIGIN_UDP = "inbox-udp"

_encode_json = msgspec.json.Encoder().encode


class DatagramRequest(msgspec.Struct, frozen=True):
    """A request whose layout is valid (its tag is not yet verified).

    ``message_id`` is 16 lowercase hex digits; ``signed`` the bytes the tag covers.
    """

    operation: Literal["add", "remove"]
    document_id: bytes
    timestamp_ms: int
    nonce: bytes
    message_id: str
    message: bytes
    signed: bytes
    tag: bytes


def _mac(key: bytes, data: bytes) -> bytes:
    return hmac.new(key, data, hashlib.sha256).digest()


_IPAD = bytes(0x36 for _ in range(64))
_OPAD = bytes(0x5C for _ in range(64))
#: key -> SHA-256 states after the key's inner and outer pads (RFC 2104).
_KEY_STATES: dict[bytes, tuple[Any, Any]] = {}
_MAX_KEY_STATES = 65_536


def _keyed_mac(key: bytes, data: bytes) -> bytes:
    """HMAC-SHA256(key, data), exactly ``_mac``, from the key's padded
    states computed once: a one-shot ``hmac`` call costs ~4.4 us here
    (OpenSSL sets the key up each time), this ~1.8 us - and every datagram
    takes two, the request's tag and the answer's."""
    states = _KEY_STATES.get(key)
    if states is None:
        if len(_KEY_STATES) >= _MAX_KEY_STATES:
            _KEY_STATES.clear()
        padded = (hashlib.sha256(key).digest() if len(key) > 64 else key).ljust(64, b"\0")
        states = _KEY_STATES[key] = (
            hashlib.sha256(bytes(a ^ b for a, b in zip(padded, _IPAD))),
            hashlib.sha256(bytes(a ^ b for a, b in zip(padded, _OPAD))),
        )
    inner = states[0].copy()
    inner.update(data)
    outer = states[1].copy()
    outer.update(inner.digest())
    return outer.digest()


# -- the client's half -----------------------------------------------------------


def encode_request(
    write_token: str,
    message_id: str,
    message: Any = None,
    *,
    remove: bool = False,
    timestamp_ms: int,
    nonce: bytes,
) -> bytes:
    """A request datagram that adds or merges ``message`` (or, with
    ``remove=True``, removes message ``message_id``).

    ``message`` is sent as is when it is ``bytes`` (it should be JSON) and
    JSON-encoded otherwise. ``timestamp_ms`` is the sender's clock and
    ``nonce`` 8 fresh random bytes: the caller hands both in. Raises
    ``ValueError`` for a malformed token, id or nonce, or a message over 4096
    bytes.
    """
    token = parse_write_token(write_token)
    if token is None:
        raise ValueError("a write token is 32 hex digits")
    stored_id = parse_message_id(message_id)
    if stored_id is None:
        raise ValueError("a message id is 16 hex digits")
    if len(nonce) != 8:
        raise ValueError("the nonce is 8 bytes")
    if not 0 <= timestamp_ms < 2**64:
        raise ValueError("the timestamp is an unsigned 64-bit number of milliseconds")
    if remove:
        if message is not None:
            raise ValueError("a remove request carries no message")
        body = b""
    else:
        body = message if isinstance(message, bytes) else _encode_json(message)
        if not 1 <= len(body) <= MAX_MESSAGE_BYTES:
            raise ValueError(f"a message is 1 to {MAX_MESSAGE_BYTES} bytes")
    operation = _REMOVE if remove else _ADD
    signed = _HEADER.pack(MAGIC, VERSION, operation, document_id(token), timestamp_ms, nonce, bytes.fromhex(stored_id)) + body
    return signed + _mac(mac_key(token), signed)


def decode_answer(answer: bytes, write_token: str, request: bytes) -> str | None:
    """The code (``"M"``, ``"N"``, ``"B"`` or ``"T"``) of ``answer`` if it is
    the server's authentic answer to ``request``, else ``None``."""
    token = parse_write_token(write_token)
    if token is None or len(answer) != ANSWER_BYTES or len(request) < MIN_REQUEST_BYTES:
        return None
    head = answer[: _ANSWER_HEAD.size]
    magic, version, code, nonce = _ANSWER_HEAD.unpack(head)
    if magic != MAGIC or version != VERSION or chr(code) not in ANSWER_CODES or nonce != request[30:38]:
        return None
    expected = _mac(mac_key(token), head + request[-TAG_BYTES:])[:_ANSWER_TAG_BYTES]
    if not hmac.compare_digest(expected, answer[_ANSWER_HEAD.size :]):
        return None
    return chr(code)


# -- the server's half -----------------------------------------------------------


def decode_request(datagram: bytes) -> DatagramRequest | None:
    """The request in ``datagram``, or ``None`` if its layout is invalid
    (size, magic, version or operation)."""
    if not MIN_REQUEST_BYTES <= len(datagram) <= MAX_REQUEST_BYTES:
        return None
    magic, version, operation, doc_id, timestamp_ms, nonce, message_id = _HEADER.unpack_from(datagram)
    if magic != MAGIC or version != VERSION or operation not in (_ADD, _REMOVE):
        return None
    signed = datagram[:-TAG_BYTES]
    return DatagramRequest(
        operation="add" if operation == _ADD else "remove",
        document_id=doc_id,
        timestamp_ms=timestamp_ms,
        nonce=nonce,
        message_id=message_id.hex(),
        message=signed[REQUEST_HEADER_BYTES:],
        signed=signed,
        tag=datagram[-TAG_BYTES:],
    )


def verify_request(request: DatagramRequest, key: bytes) -> bool:
    """Whether ``request``'s tag is the HMAC of its bytes under ``key``, in constant time."""
    return hmac.compare_digest(_keyed_mac(key, request.signed), request.tag)


def encode_answer(code: str, request: DatagramRequest, key: bytes) -> bytes:
    """The authenticated answer ``code`` to ``request``."""
    if code not in ANSWER_CODES:
        raise ValueError(f"not an answer code: {code!r}")
    head = _ANSWER_HEAD.pack(MAGIC, VERSION, ord(code), request.nonce)
    return head + _keyed_mac(key, head + request.tag)[:_ANSWER_TAG_BYTES]


def new_replay_guard(config: InboxConfig, start_ms: int) -> ReplayGuard:
    """The replay guard of a server that started at ``start_ms``, bounded as ``config`` says."""
    return ReplayGuard(start_ms, window_ms=config.datagram_window_ms, capacity=config.replay_capacity)


_CODES = {"done": "M", "not-inbox": "N", "too-large": "T"}


def handle_datagram(datagram: bytes, guard: ReplayGuard, config: InboxConfig, env: Environment) -> Action[DatagramOutcome]:
    """Handle one datagram: the answer to send back, if any, and the write made.

    ``guard`` is the server's one ``ReplayGuard``, built once at start:
    ``new_replay_guard(config, env.now_ms())``. The action updates it
    without yielding in between, so concurrent datagrams may share it.
    """
    outcomes = yield from handle_datagrams((datagram,), guard, config, env)
    return outcomes[0]


def _valid_message(request: DatagramRequest) -> bool:
    if request.operation == "remove":
        return not request.message
    try:
        return merge.revision_of(decode_json(request.message)) is not None
    except InvalidJson:
        return False


def handle_datagrams(
    datagrams: Sequence[bytes], guard: ReplayGuard, config: InboxConfig, env: Environment
) -> Action[list[DatagramOutcome]]:
    """Handle datagrams read together: one outcome per datagram, in order,
    each what ``handle_datagram`` would give it (module docstring: batches)."""
    now = env.now_ms()
    requests: list[DatagramRequest | None] = []
    for datagram in datagrams:
        request = decode_request(datagram)
        requests.append(request if request is not None and guard.is_fresh(request.timestamp_ms, now) else None)
    wanted = tuple({request.document_id.hex(): None for request in requests if request is not None})
    found: list[DocumentKeys | None] = (yield GetDocumentKeys(wanted)) if wanted else []
    keys = dict(zip(wanted, found))

    outcomes = [DatagramOutcome() for _ in datagrams]
    edits: list[MessageEdit] = []
    pending: list[tuple[int, DatagramRequest, bytes]] = []
    mac_keys: dict[str, bytes] = {}
    for index, request in enumerate(requests):
        if request is None:
            continue
        document = keys[request.document_id.hex()]
        if document is None:
            continue
        key = mac_keys.get(document.mac_key)
        if key is None:
            key = mac_keys[document.mac_key] = bytes.fromhex(document.mac_key)
        # The tag first (constant time), then the replay memory: only
        # authentic datagrams are remembered, in the order they came.
        if not verify_request(request, key) or not guard.admit(request.tag, request.timestamp_ms, now):
            continue
        if not _valid_message(request):
            outcomes[index] = DatagramOutcome(encode_answer("B", request, key))
            continue
        message = request.message if request.operation == "add" else None
        edits.append(MessageEdit(document.write_key, request.message_id, message))
        pending.append((index, request, key))

    written = yield from write_messages(edits, ORIGIN_UDP, config, env)
    for (index, request, key), (result, change) in zip(pending, written):
        code = _CODES.get(result)
        if code is not None:
            outcomes[index] = DatagramOutcome(encode_answer(code, request, key), [change] if change else [])
    return outcomes
