"""How a kind of hub target turns one encoded payload into bytes on its wire.

The hub (``hub.py``) frames each payload once per ``Framing`` among its
recipients and writes the same bytes to every recipient of that kind. A
websocket frames each payload as a text frame
(``websocket.connection.WEBSOCKET_TEXT``); an Engine.IO long-polling
session will queue packets and join them with ``\\x1e``.
"""

from __future__ import annotations

from typing import Callable

__all__ = ["Framing"]


class Framing:
    """How one kind of target puts payloads on its wire.

    ``encode`` turns one payload into the bytes of one message (a websocket
    text frame, say); ``separator`` joins several of them into one chunk (a
    websocket needs none; Engine.IO long-polling joins packets with
    ``\\x1e``). The hub frames a payload once per ``Framing`` among its
    recipients, so identical framings must be the same object.
    """

    __slots__ = ("name", "encode", "separator")

    def __init__(self, name: str, encode: Callable[[bytes], bytes], separator: bytes = b"") -> None:
        self.name = name
        self.encode = encode
        self.separator = separator

    def __repr__(self) -> str:
        return f"<Framing {self.name}>"

    def encode_all(self, payloads: list[bytes]) -> bytes:
        """``payloads``, each encoded, joined into one chunk."""
        encode = self.encode
        if len(payloads) == 1:
            return encode(payloads[0])
        return self.separator.join([encode(payload) for payload in payloads])

    def join(self, chunks: list[bytes]) -> bytes:
        """Chunks made by ``encode_all``, joined into one."""
        return chunks[0] if len(chunks) == 1 else self.separator.join(chunks)
