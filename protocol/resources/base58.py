"""Base58 with the Bitcoin alphabet: how browsers pass headers on a websocket.

Seed 004: a browser cannot set headers on a websocket, so the client puts
them in ``Sec-WebSocket-Protocol`` - the only header it controls - as the
base58 encoding of ``key:value`` lines. Base58 is a few lines of big-number
arithmetic, so it is written here rather than taken from a package: the
alphabet is Bitcoin's (no ``0``, ``O``, ``I``, ``l``), each leading ``1``
stands for one leading zero byte, and the rest is the number in base 58,
most significant digit first.

The decoder is bounded: ``decode`` refuses input longer than ``max_chars``
before doing any arithmetic, because converting n digits costs O(n^2).
"""

from __future__ import annotations

__all__ = ["ALPHABET", "InvalidBase58", "decode", "encode"]

#: The Bitcoin alphabet, in digit order.
ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_DIGITS = {char: value for value, char in enumerate(ALPHABET)}


class InvalidBase58(ValueError):
    """Text that is not base58 of the Bitcoin alphabet (or is too long)."""


def encode(data: bytes) -> str:
    """``data`` in base58 (the Bitcoin alphabet)."""
    zeros = len(data) - len(data.lstrip(b"\0"))
    number = int.from_bytes(data, "big")
    digits = []
    while number:
        number, digit = divmod(number, 58)
        digits.append(ALPHABET[digit])
    return "1" * zeros + "".join(reversed(digits))


def decode(text: str, max_chars: int = 8192) -> bytes:
    """The bytes ``text`` encodes; ``InvalidBase58`` when a character is
    not in the alphabet, or ``text`` is empty or longer than ``max_chars``."""
    if not text:
        raise InvalidBase58("empty")
    if len(text) > max_chars:
        raise InvalidBase58(f"longer than {max_chars} characters")
    number = 0
    for position, char in enumerate(text):
        digit = _DIGITS.get(char)
        if digit is None:
            shown = char if char.isprintable() and char.isascii() else f"U+{ord(char):04X}"
            raise InvalidBase58(f"{shown!r} at position {position} is not a base58 digit")
        number = number * 58 + digit
    zeros = len(text) - len(text.lstrip("1"))
    body = number.to_bytes((number.bit_length() + 7) // 8, "big") if number else b""
    return b"\0" * zeros + body
