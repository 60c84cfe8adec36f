"""The one error the query language raises on a peer's input.

Directus answers a query it cannot run with the error code ``INVALID_QUERY``
(HTTP 400) and a message that starts ``Invalid query.`` (Directus docs,
"Error codes"; ``../shared/protocols/directus.md`` section 2, error shape).
``InvalidQuery`` carries both, so each protocol can render it in its own
format: the websocket's ``{"type", "status": "error", "error": {"code",
"message"}}``, the REST ``{"errors": [{"message", "extensions": {"code"}}]}``,
or Backpack's ``{"message"}``.
"""

from __future__ import annotations

from ..errors import RemoteProtocolError

__all__ = ["InvalidQuery"]


class InvalidQuery(RemoteProtocolError):
    """A query, filter, sort or field list that Satchel refuses to run.

    ``code`` is Directus's ``"INVALID_QUERY"``, ``status`` 400, ``message``
    safe to send back (it names what was wrong, never echoes large input).
    """

    code = "INVALID_QUERY"

    def __init__(self, reason: str) -> None:
        super().__init__(f"Invalid query. {reason[:1].upper()}{reason[1:]}", 400)
