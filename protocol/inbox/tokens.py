"""Document tokens and what the server keeps of a write token.

Seed 001: a document has a read token (in the URL, kept secret by its owner)
and a write token (shared with the senders of an inbox's messages), each 32
hex digits chosen at random by the creator. Read tokens must be lowercase;
they are the document's name. A write token stands for its 16 bytes, so its
hex digits may come in either case.

The server never stores a write token. It stores three values derived from
its 16 bytes ``T`` (``||`` is concatenation, the labels are ASCII):

- ``write_hash = SHA-256(T)``: an HTTP request's write token is hashed and
  compared with it in constant time;
- ``write_key = SHA-256("satchel-inbox-id" || T)[0:16]``: the lookup key,
  indexed in the store; a datagram carries it in the clear to name its
  document;
- ``mac_key = SHA-256("satchel-inbox-key" || T)``: the key of the datagrams'
  HMAC-SHA256, which the server must hold to verify them.

SHA-256 is one-way, and the three are domain-separated: from the lookup key
nobody learns the MAC key, and from the MAC key (or anything the store holds)
nobody learns ``T`` - so a leaked store lets an attacker forge datagrams,
which a sender may do anyway, but never use HTTP, where the write token
itself must be shown (and a PUT needs the read token as well).
"""

from __future__ import annotations

import hashlib
import hmac
import re

import msgspec

__all__ = [
    "READ_TOKEN",
    "WRITE_TOKEN",
    "MESSAGE_ID",
    "WriteSecrets",
    "is_read_token",
    "parse_write_token",
    "parse_message_id",
    "write_secrets",
    "document_id",
    "mac_key",
    "write_token_matches",
]

#: A read token: 32 lowercase hex digits.
READ_TOKEN = re.compile(r"[0-9a-f]{32}\Z")
#: A write token: 32 hex digits, either case.
WRITE_TOKEN = re.compile(r"[0-9a-fA-F]{32}\Z")
#: A message id (seed 001): 16 hex digits, either case; stored lowercase.
MESSAGE_ID = re.compile(r"[0-9a-fA-F]{16}\Z")

_ID_LABEL = b"satchel-inbox-id"
_KEY_LABEL = b"satchel-inbox-key"


class WriteSecrets(msgspec.Struct, frozen=True):
    """What the store keeps of a write token, as lowercase hex (see the module docstring)."""

    write_key: str
    write_hash: str
    mac_key: str


def is_read_token(value: str) -> bool:
    """Whether ``value`` is a read token: 32 lowercase hex digits."""
    return READ_TOKEN.match(value) is not None


def parse_write_token(value: str) -> bytes | None:
    """The 16 bytes of a write token, or ``None`` if ``value`` is not 32 hex digits."""
    if WRITE_TOKEN.match(value) is None:
        return None
    return bytes.fromhex(value)


def parse_message_id(value: str) -> str | None:
    """A message id in its stored form (lowercase), or ``None`` if ``value``
    is not 16 hex digits."""
    if MESSAGE_ID.match(value) is None:
        return None
    return value.lower()


def document_id(token: bytes) -> bytes:
    """The 16-byte lookup key of write token ``token``; ``write_key`` is its hex."""
    return hashlib.sha256(_ID_LABEL + token).digest()[:16]


def mac_key(token: bytes) -> bytes:
    """The 32-byte HMAC key of write token ``token``; ``mac_key`` is its hex."""
    return hashlib.sha256(_KEY_LABEL + token).digest()


def write_secrets(token: bytes) -> WriteSecrets:
    """Everything the store keeps of write token ``token`` (its 16 bytes)."""
    return WriteSecrets(
        write_key=document_id(token).hex(),
        write_hash=hashlib.sha256(token).hexdigest(),
        mac_key=mac_key(token).hex(),
    )


def write_token_matches(token: bytes, write_hash: str) -> bool:
    """Whether ``token`` hashes to ``write_hash``, compared in constant time."""
    return hmac.compare_digest(hashlib.sha256(token).hexdigest(), write_hash)
