"""Satchel's protocol core: pure, sans-IO, driven by whoever owns the sockets.

In the h11 manner, the core never touches the network, the disk, the clock or
a random source. You feed it what arrived (an ``HttpRequest``, a websocket
message, a datagram) and it hands back an *action*: a generator that yields
``Operation``s (what to store or read, which password to hash) and, once you
have sent each result back in, returns what to answer and what to deliver to
whom.

Each protocol is a ``Mount`` (``mounts.py``); ``standard_mounts`` is the
ordered table of Satchel's own, and a ``Switchboard`` built from a table
routes everything to the right mount and keeps who is connected::

    board = Switchboard(standard_mounts(BackpackConfig(api_key="K")), env)
    outcome = run_sync(board.handle_request(request), execute)
    send(outcome.response)
    for payload, connection_ids in board.deliveries(outcome.changes):
        for connection in connection_ids:          # encoded once, for all of them
            connections[connection].send_text(payload)

``execute`` is yours: pass storage operations to a ``satchel.storage_backends``
store and the two password operations to argon2 (in a thread, if you have an
event loop). An async server awaits each operation instead of calling
``run_sync``; ``satchel.transports.runner.Runner`` is the trio version.

Errors: ``RemoteProtocolError`` means the peer sent something invalid (the
protocols turn it into their own error format before it reaches you);
``LocalProtocolError`` means the embedding code misused the API. Anything
else escaping the core is a bug in the core.

The names below are the public API; modules and names not listed here may
change without notice.
"""

from . import admin, asnity, backpack, directus, inbox, resources
from .changes import Change, ChangeKind, DocumentChange, EntryChange
from .channels import (
    EVERYONE,
    Audience,
    Binary,
    Channel,
    ChannelRegistry,
    CloseChannel,
    CloseConnection,
    IdentifyConnection,
    Deliver,
    HubEvent,
    Subscribe,
    SubscribeAudience,
    Unsubscribe,
    UnsubscribeAudience,
    UnsubscribeMatching,
)
from .environment import Environment, fixed_environment
from .errors import LocalProtocolError, RemoteProtocolError
from .http import HttpRequest, HttpResponse
from .mount_table import standard_mounts
from .mounts import Accepted, DatagramOutcome, Event, HttpOutcome, Mount, MountTable
from .operations import (
    Action,
    DeleteRecord,
    DeleteRecords,
    DeleteSession,
    DeleteSessions,
    GetRecord,
    GetSession,
    GetUser,
    GetUserByEmail,
    HashPassword,
    InsertRecord,
    InsertSession,
    InsertUser,
    ListCollections,
    ListRecordRange,
    ListRecords,
    ListSessions,
    Operation,
    ReplaceRecord,
    SearchRecords,
    Session,
    StoredJson,
    StoredRecord,
    TakeNumber,
    User,
    VerifyPassword,
    run_sync,
)
from .records import format_timestamp, is_object_id, object_id
from .switchboard import Opened, Switchboard
from .tokens import Bearer, authenticate

__all__ = [
    # driving actions
    "Action",
    "Operation",
    "run_sync",
    "Environment",
    "fixed_environment",
    # protocols plug in here
    "Mount",
    "MountTable",
    "standard_mounts",
    "Switchboard",
    "Opened",
    # what arrives and what leaves
    "HttpRequest",
    "HttpResponse",
    "HttpOutcome",
    "Accepted",
    "DatagramOutcome",
    "Event",
    "Change",
    "ChangeKind",
    "DocumentChange",
    "EntryChange",
    "HubEvent",
    "Deliver",
    "Subscribe",
    "Unsubscribe",
    "SubscribeAudience",
    "UnsubscribeAudience",
    "UnsubscribeMatching",
    "CloseChannel",
    "IdentifyConnection",
    "CloseConnection",
    "Binary",
    # who receives what
    "Channel",
    "Audience",
    "EVERYONE",
    "ChannelRegistry",
    # storage operations and the values they carry
    "GetRecord",
    "ListRecords",
    "InsertRecord",
    "ReplaceRecord",
    "DeleteRecord",
    "DeleteRecords",
    "ListCollections",
    "ListRecordRange",
    "SearchRecords",
    "TakeNumber",
    "GetUser",
    "GetUserByEmail",
    "InsertUser",
    "InsertSession",
    "GetSession",
    "DeleteSession",
    "DeleteSessions",
    "ListSessions",
    "StoredRecord",
    "StoredJson",
    "User",
    "Session",
    # who a Bearer token is, for every protocol that takes one
    "authenticate",
    "Bearer",
    # slow work for a worker thread
    "HashPassword",
    "VerifyPassword",
    # record ids and timestamps
    "object_id",
    "is_object_id",
    "format_timestamp",
    # errors
    "LocalProtocolError",
    "RemoteProtocolError",
    # protocols
    "backpack",
    "inbox",
    "asnity",
    "directus",
    "resources",
    "admin",
]
