"""The two kinds of failure the core reports, after h11.

`LocalProtocolError` means the embedding code misused the API (for example it
resumed an action with a result of the wrong shape): a bug on our side of the
wire. `RemoteProtocolError` means the peer sent something invalid; it carries
the status a protocol should answer with and a message that is safe to show
the peer. Any other exception escaping the core is a bug in the core.
"""

from __future__ import annotations

__all__ = ["LocalProtocolError", "RemoteProtocolError"]


class LocalProtocolError(Exception):
    """The caller used the core wrongly; never caused by what a peer sent."""


class RemoteProtocolError(Exception):
    """The peer sent something invalid.

    ``status`` is the HTTP status (or its nearest equivalent) to answer with,
    ``message`` a human-readable explanation that is safe to send back.
    """

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
