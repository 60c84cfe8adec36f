"""Satchel's protocol core: pure, sans-IO, driven by whoever owns the sockets.

In the h11 manner, the core never touches the network, the disk, the clock or
a random source. You feed it what arrived (an ``HttpRequest``, a websocket
frame) and it hands back an *action*: a generator that yields ``Operation``s
(what to store or read, which password to hash) and, once you have sent each
result back in, returns what to answer and what to deliver to whom::

    outcome = run_sync(backpack.handle_request(request, config, env), execute)
    send(outcome.response)
    for event in hub_events(outcome.changes):      # Deliver / Subscribe / ...
        for connection in registry.apply(event):   # who receives it
            connections[connection].send(event.payload)

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

from . import backpack, inbox
from .changes import Change, ChangeKind, DocumentChange
from .channels import (
    EVERYONE,
    Audience,
    Channel,
    ChannelRegistry,
    CloseChannel,
    Deliver,
    HubEvent,
    Subscribe,
    Unsubscribe,
)
from .dispatch import hub_events
from .environment import Environment, fixed_environment
from .errors import LocalProtocolError, RemoteProtocolError
from .http import HttpRequest, HttpResponse
from .operations import (
    Action,
    DeleteRecord,
    DeleteRecords,
    DeleteSession,
    GetRecord,
    GetSession,
    GetUser,
    GetUserByEmail,
    HashPassword,
    InsertRecord,
    InsertSession,
    InsertUser,
    ListCollections,
    ListRecords,
    Operation,
    ReplaceRecord,
    Session,
    StoredRecord,
    User,
    VerifyPassword,
    run_sync,
)
from .records import format_timestamp, is_object_id, object_id

__all__ = [
    # driving actions
    "Action",
    "Operation",
    "run_sync",
    "Environment",
    "fixed_environment",
    # what arrives and what leaves
    "HttpRequest",
    "HttpResponse",
    "Change",
    "ChangeKind",
    "DocumentChange",
    "hub_events",
    "HubEvent",
    "Deliver",
    "Subscribe",
    "Unsubscribe",
    "CloseChannel",
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
    "GetUser",
    "GetUserByEmail",
    "InsertUser",
    "InsertSession",
    "GetSession",
    "DeleteSession",
    "StoredRecord",
    "User",
    "Session",
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
]
