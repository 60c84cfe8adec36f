"""First run: the one-time setup that creates the first administrator
(issue 16 part 2), beside ``satchel admin create EMAIL``.

While no account holds the role ``admin``, a server that starts runs
``prepare_setup``: it makes a setup token (``env.new_token()``, 256 bits),
stores only its SHA-256 in the setting ``SETUP_SETTING`` and hands the
token back for the server to print to its log - as a console URL whose
fragment carries it (``/_/#setup=TOKEN``), so the token never travels in
a request line. ``POST /_/api/setup {token, email, password}`` then
creates the administrator (``bootstrap.create_admin``) once: the token is
spent by a compare-and-swap on the setting before the account is made, so
of two racing setups one wins, and once any admin exists the route answers
403 whatever token it is sent. ``GET /_/api/setup`` says whether setup is
open (``{"data": {"open": bool}}``), for the console to choose its page.

Every worker of one store shares the setting, so a token printed by any of
them works; a restart while no admin exists prints a fresh token (the old
one stops working).
"""

from __future__ import annotations

import hmac
from typing import Any

import msgspec

from ..environment import Environment
from ..errors import RemoteProtocolError
from ..operations import Action, GetSetting, HeldRoles, PutSetting, StoredSetting
from ..permissions import ADMIN
from ..tokens import hash_token
from .bootstrap import AdminAccount, create_admin

__all__ = ["SETUP_SETTING", "prepare_setup", "setup_open", "complete_setup"]

#: The setting that holds the setup token's hash (``{"token_hash": ...}``;
#: ``{}`` once spent).
SETUP_SETTING = "admin.setup"
_ATTEMPTS = 16


def _admin_exists() -> Action[bool]:
    held: frozenset[str] = yield HeldRoles()
    return ADMIN in held


def _stored_hash(setting: StoredSetting | None) -> str | None:
    if setting is None:
        return None
    value: Any = msgspec.json.decode(setting.value)
    token_hash = value.get("token_hash") if isinstance(value, dict) else None
    return token_hash if isinstance(token_hash, str) else None


def prepare_setup(env: Environment) -> Action[str | None]:
    """A fresh setup token when no administrator exists (its hash stored,
    replacing any earlier one), else ``None``."""
    if (yield from _admin_exists()):
        return None
    token = env.new_token()
    value = msgspec.json.encode({"token_hash": hash_token(token)})
    for _ in range(_ATTEMPTS):
        stored: StoredSetting | None = yield GetSetting(SETUP_SETTING)
        if (yield PutSetting(SETUP_SETTING, value, stored.revision if stored is not None else 0)):
            return token
    raise RemoteProtocolError("the setup token keeps changing; try again", 409)


def setup_open() -> Action[bool]:
    """Whether a setup token is waiting and no administrator exists."""
    if (yield from _admin_exists()):
        return False
    return _stored_hash((yield GetSetting(SETUP_SETTING))) is not None


def complete_setup(token: object, email: object, password: object, env: Environment) -> Action[AdminAccount]:
    """Spend the setup ``token`` and create the administrator ``email``.
    403 when setup is closed (an admin exists, no token is waiting) or the
    token is not the one printed; 400 for an invalid email or password."""
    if (yield from _admin_exists()):
        raise RemoteProtocolError("an administrator exists already: sign in", 403)
    if not isinstance(email, str) or not isinstance(password, str):
        raise RemoteProtocolError('"email" and "password" must be strings', 400)
    stored: StoredSetting | None = yield GetSetting(SETUP_SETTING)
    expected = _stored_hash(stored)
    if expected is None or not isinstance(token, str) or not hmac.compare_digest(expected, hash_token(token)):
        raise RemoteProtocolError("that is not the setup token this server printed", 403)
    assert stored is not None
    # Validate before spending the token, so a typo does not cost it.
    if len(password) < 8:
        raise RemoteProtocolError("a password has 8 to 1024 characters", 400)
    if not (yield PutSetting(SETUP_SETTING, b"{}", stored.revision)):
        raise RemoteProtocolError("the setup token was just used", 403)
    try:
        return (yield from create_admin(email, password, env))
    except RemoteProtocolError:
        # An invalid email: the token is given back, for another try.
        yield PutSetting(SETUP_SETTING, stored.value, stored.revision + 1)
        raise
