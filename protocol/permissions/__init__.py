"""Roles and permission rules: one model that every protocol obeys.

After Directus's access control (docs.directus.io, "Access control";
BRIEF "Accounts, tokens, permissions"; issue 11 parts 1-2): a user has one
role, and per role x collection x action a rule allows or denies, limits
the items with a filter in the Directus filter syntax
(``satchel.protocol.query``), and names the fields that may be read or
written. ``rules`` defines the rule file and the ``RuleSet`` value built
from it (and the defaults, which keep Backpack's behaviour); ``decide`` holds
the pure decisions every protocol asks; ``store`` keeps the rules and roles
in any store.

Typical use in a protocol::

    rules, _ = yield from load_rules()            # once, and when replaced
    who = Accountability(user.id, user.role)      # or Accountability() if nobody signed in
    op = read_query(rules, who, "articles", parse_query(raw), now_ms=env.now_ms())
    result = yield op                             # filter, fields pushed into the store
    check_write(rules, who, "articles", before, after, now_ms=...)   # raises Forbidden
    for group in delivery_groups(rules, "articles", record, subscribers):
        payload = encode(group.record)            # once per group
"""

from .decide import (
    DeliveryGroup,
    FieldSet,
    Subscriber,
    can,
    changed_fields,
    check_write,
    delivery_groups,
    read_filter,
    read_query,
    readable_fields,
    redact,
    variables_for,
    writable_fields,
)
from .rules import (
    ACTIONS,
    ADMIN,
    AUTHENTICATED,
    DEFAULT_RULES,
    PUBLIC,
    Accountability,
    Forbidden,
    InvalidRules,
    PermissionAction,
    Role,
    RoleSpec,
    Rule,
    RuleSet,
    RuleSpec,
    RulesFile,
)
from .live import CurrentRules, RoleChanged, RulesChanged, UserRole
from .store import RULES_SETTING, load_rules, save_rules, set_role

__all__ = [
    # the rules in force (answered by the switchboard)
    "CurrentRules",
    "RulesChanged",
    "RoleChanged",
    "UserRole",
    # the model
    "RuleSet",
    "RulesFile",
    "RoleSpec",
    "RuleSpec",
    "Role",
    "Rule",
    "Accountability",
    "ACTIONS",
    "PermissionAction",
    "PUBLIC",
    "AUTHENTICATED",
    "ADMIN",
    "DEFAULT_RULES",
    # decisions
    "can",
    "readable_fields",
    "writable_fields",
    "redact",
    "read_filter",
    "read_query",
    "changed_fields",
    "check_write",
    "variables_for",
    "FieldSet",
    "Subscriber",
    "DeliveryGroup",
    "delivery_groups",
    # errors
    "Forbidden",
    "InvalidRules",
    # the store
    "RULES_SETTING",
    "load_rules",
    "save_rules",
    "set_role",
]
