"""Keeping the rules and the users' roles in the store, so they survive restarts.

The rule set is one named setting (``RULES_SETTING``), its value the rule
file's JSON (``rules``), written by compare-and-swap on the setting's
revision: two admins replacing the rules at once cannot silently undo each
other. A user's role is a field of its account (``User.role``), set with
``SetUserRole``. These are actions (``operations``): generators a runner
drives against any store.
"""

from __future__ import annotations

from ..errors import LocalProtocolError
from ..operations import Action, GetSetting, HeldRoles, PutSetting, SetUserRole, StoredSetting
from .rules import DEFAULT_RULES, PUBLIC, InvalidRules, RuleSet

__all__ = ["RULES_SETTING", "load_rules", "save_rules", "set_role"]

#: The name of the setting that holds the rule set.
RULES_SETTING = "permissions"


def load_rules() -> Action[tuple[RuleSet, int]]:
    """-> ``(rules, revision)``: the stored rule set, or ``(DEFAULT_RULES, 0)``
    when none was ever stored. A stored value that no longer compiles is a
    ``LocalProtocolError`` (the store holds what ``save_rules`` validated)."""
    stored: StoredSetting | None = yield GetSetting(RULES_SETTING)
    if stored is None:
        return DEFAULT_RULES, 0
    try:
        return RuleSet.from_json(stored.value), stored.revision
    except InvalidRules as exc:
        raise LocalProtocolError(f"the stored rules do not compile: {exc.message}") from None


def save_rules(rules: RuleSet, expected_revision: int) -> Action[bool]:
    """-> ``bool``: replace the stored rule set if it is still at
    ``expected_revision`` (what ``load_rules`` answered; 0: none stored).

    Raises ``InvalidRules`` for rules without a role some user holds: every
    user's role is always one the rules in force define, which is what lets
    ``RuleSet.unrestricted`` answer without reading anyone's role (give
    those users another role first).
    """
    orphaned = sorted((yield HeldRoles()) - set(rules.roles))
    if orphaned:
        raise InvalidRules(
            f"the rules drop the role {orphaned[0][:64]!r}, which some users still hold; give them another role first"
        )
    return (yield PutSetting(RULES_SETTING, rules.to_json(), expected_revision))


def set_role(rules: RuleSet, user_id: str, role: str) -> Action[bool]:
    """-> ``bool`` (``False``: no such user): give a user a role of ``rules``.

    Raises ``InvalidRules`` for a role ``rules`` does not define, so no user
    is given a role by mistake, and for ``public`` (nobody signed in).
    """
    if rules.role(role) is None:
        raise InvalidRules(f"there is no role {role[:64]!r}")
    if role == PUBLIC:
        # "public" is the role of nobody signed in; a user is somebody.
        raise InvalidRules("a user cannot have the public role")
    return (yield SetUserRole(user_id, role))
