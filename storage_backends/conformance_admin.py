"""The conformance checks of what only an administrator asks a store
(issue 16): ``ListUsers`` (a page of accounts, searched by email),
``SetUserPassword`` and ``ListDocuments`` (token-addressed documents in
creation order), run by ``conformance.check_store`` with the rest.
"""

from __future__ import annotations

from typing import AsyncContextManager, Callable

from satchel.protocol.operations import (
    Document,
    GetUser,
    GetUserByEmail,
    InsertUser,
    ListDocuments,
    ListUsers,
    PutDocument,
    SetUserPassword,
    User,
)
from satchel.protocol.records import format_timestamp, object_id

from .base import Store

__all__ = ["ADMIN_CHECKS", "check_listed_users", "check_user_passwords", "check_listed_documents"]

MakeStore = Callable[[], AsyncContextManager[Store]]
_NOW = format_timestamp(1_700_000_000_000)


def _user(n: int, email: str) -> User:
    # Ids in the order of n, whatever order the users are inserted in.
    return User(object_id(1_700_000_000 + n, b"\x0a\x0d\x00\x00\x00", n), email, f"$argon2id${n}", _NOW)


async def check_listed_users(make_store: MakeStore) -> None:
    """Users page in id order, searched by a substring of the email without case."""
    async with make_store() as store:
        assert await store.execute(ListUsers()) == []
        users = [_user(n, email) for n, email in enumerate(
            ["Ann@Example.com", "bob@example.org", "Zoë@Exämple.com", "carl%_@example.com", "dora@EXAMPLE.com"])]
        for user in reversed(users):
            assert await store.execute(InsertUser(user))
        assert await store.execute(ListUsers()) == users
        assert await store.execute(ListUsers(offset=1, limit=2)) == users[1:3]
        assert await store.execute(ListUsers(offset=5)) == []
        assert await store.execute(ListUsers(limit=0)) == []
        assert await store.execute(ListUsers(search="EXAMPLE.COM")) == [users[0], users[3], users[4]]
        assert await store.execute(ListUsers(search="exämple")) == [users[2]]
        assert await store.execute(ListUsers(search="ZOË")) == [users[2]]
        # The search is literal: no pattern syntax.
        assert await store.execute(ListUsers(search="%_")) == [users[3]]
        assert await store.execute(ListUsers(search="_")) == [users[3]]
        assert await store.execute(ListUsers(search="%")) == [users[3]]
        assert await store.execute(ListUsers(search="nobody")) == []
        assert await store.execute(ListUsers(search="example", offset=1, limit=1)) == [users[1]]


async def check_user_passwords(make_store: MakeStore) -> None:
    """A password hash is replaced, and only the user's."""
    async with make_store() as store:
        ann, bob = _user(1, "ann@example.com"), _user(2, "bob@example.com")
        for user in (ann, bob):
            assert await store.execute(InsertUser(user))
        assert await store.execute(SetUserPassword(ann.id, "!$argon2id$new")) is True
        stored = await store.execute(GetUser(ann.id))
        assert stored.password_hash == "!$argon2id$new" and stored.email == ann.email and stored.role == ann.role
        assert (await store.execute(GetUserByEmail("ANN@example.com"))).password_hash == "!$argon2id$new"
        assert await store.execute(GetUser(bob.id)) == bob
        assert await store.execute(SetUserPassword(_user(3, "x@example.com").id, "h")) is False


def _document(n: int, revision: int = 1) -> Document:
    return Document(f"{n:032x}", f"{n:031x}e", f"{n:063x}c", f"{n:063x}d", revision, b'{"#messages":{}}')


async def check_listed_documents(make_store: MakeStore) -> None:
    """Documents page in creation order, a later write keeping a document's place."""
    async with make_store() as store:
        assert await store.execute(ListDocuments()) == []
        documents = [_document(n) for n in (9, 3, 7, 1)]  # tokens out of order: creation order is not token order
        for document in documents:
            assert await store.execute(PutDocument(document, 0))
        written = Document(*[getattr(documents[0], f) for f in documents[0].__struct_fields__[:4]], 2, b'{"a":1}')
        assert await store.execute(PutDocument(written, 1))
        assert await store.execute(ListDocuments()) == [written, *documents[1:]]
        assert await store.execute(ListDocuments(offset=1, limit=2)) == documents[1:3]
        assert await store.execute(ListDocuments(offset=4)) == []


#: The administrator's checks, in the order ``check_store`` runs them.
ADMIN_CHECKS = (check_listed_users, check_user_passwords, check_listed_documents)
