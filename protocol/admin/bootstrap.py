"""What an operator does from the command line, before or beside a server:
make an administrator, and install a rule file.

``satchel admin create EMAIL`` runs ``create_admin`` and ``satchel serve
--rules FILE`` runs ``install_rules`` against the data dir's store; both are
actions (``operations``), so the same steps serve an embedding or a test.
"""

from __future__ import annotations

import re

import msgspec

from ..environment import Environment
from ..errors import RemoteProtocolError
from ..operations import Action, GetUserByEmail, HashPassword, InsertUser, SetUserRole, User
from ..permissions import ADMIN, RuleSet, load_rules, save_rules
from ..records import format_timestamp

__all__ = ["AdminAccount", "InstalledRules", "MIN_PASSWORD_LENGTH", "create_admin", "install_rules"]

#: The shortest password an administrator may be given (Backpack's minimum).
MIN_PASSWORD_LENGTH = 8
_MAX_PASSWORD_LENGTH = 1024
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+\Z")
_ATTEMPTS = 16


class AdminAccount(msgspec.Struct, frozen=True):
    """What ``create_admin`` did: the ``user`` (now an admin) and whether
    the account was ``created`` (else it existed, and its password is
    unchanged) or ``promoted`` from another role."""

    user: User
    created: bool
    promoted: bool


def create_admin(email: str, password: str, env: Environment) -> Action[AdminAccount]:
    """Make ``email`` an administrator: a new account with ``password``
    (hashed with argon2id by the runner) and the role ``admin``, or, when
    the email is registered already (through any protocol), that account
    given the role ``admin`` - its password is left as it is. Raises
    ``RemoteProtocolError`` for an invalid email or a password that is too
    short."""
    email = email.strip().lower()
    if len(email) > 254 or not _EMAIL.match(email):
        raise RemoteProtocolError(f"{email[:64]!r} is not an email address", 400)
    for _ in range(_ATTEMPTS):
        existing: User | None = yield GetUserByEmail(email)
        if existing is not None:
            if existing.role == ADMIN:
                return AdminAccount(existing, False, False)
            if (yield SetUserRole(existing.id, ADMIN)):
                return AdminAccount(msgspec.structs.replace(existing, role=ADMIN), False, True)
            continue  # deleted meanwhile: look again
        if not MIN_PASSWORD_LENGTH <= len(password) <= _MAX_PASSWORD_LENGTH:
            raise RemoteProtocolError(
                f"a password has {MIN_PASSWORD_LENGTH} to {_MAX_PASSWORD_LENGTH} characters", 400
            )
        password_hash: str = yield HashPassword(password)
        user = User(env.new_id(), email, password_hash, format_timestamp(env.now_ms()), ADMIN)
        if (yield InsertUser(user)):
            return AdminAccount(user, True, False)
        # Registered meanwhile through another protocol: promote that account.
    raise RemoteProtocolError("the account keeps changing; try again", 409)


class InstalledRules(msgspec.Struct, frozen=True):
    """What ``install_rules`` did: the stored ``revision`` now, and whether
    the stored rules ``changed`` (they were other rules)."""

    revision: int
    changed: bool


def install_rules(rules: RuleSet) -> Action[InstalledRules]:
    """Make ``rules`` the stored rule set (what ``satchel serve --rules FILE``
    does as it starts): replaced by compare-and-swap, left alone - no new
    revision - when the store holds them already."""
    for _ in range(_ATTEMPTS):
        stored, revision = yield from load_rules()
        if revision and stored == rules:
            return InstalledRules(revision, False)
        if (yield from save_rules(rules, revision)):
            return InstalledRules(revision + 1, True)
    raise RemoteProtocolError("the stored rules keep changing; try again", 409)
