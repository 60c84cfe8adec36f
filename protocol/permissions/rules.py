"""Roles and rules: the rule file's schema, and the ``RuleSet`` built from it.

One rule set governs every protocol's reads, writes and deliveries (BRIEF,
"Accounts, tokens, permissions"; issue 11 part 1). It follows Directus's
permission model (docs.directus.io, "Access control"): a user has one role;
per role, collection and action (``create``, ``read``, ``update``,
``delete``) a rule says whether the action is allowed, on which items (an
item filter in the Directus filter syntax, ``satchel.protocol.query``) and
on which fields.

The rule file (JSON; every key but ``collection`` and ``action`` optional)::

    {
      "version": 1,
      "roles": {
        "authenticated": {"rules": [{"collection": "*", "action": "*"}]},
        "reader": {"rules": [
          {"collection": "articles", "action": "read",
           "filter": {"status": {"_eq": "published"}}, "fields": ["title", "body"]},
          {"collection": "articles", "action": ["create", "update", "delete"],
           "filter": {"userId": {"_eq": "$CURRENT_USER"}}},
          {"collection": "secrets", "action": "*", "allowed": false}
        ]},
        "operator": {"admin": true}
      }
    }

- ``collection``: a name, or ``"*"`` for every collection no other rule of
  the role names for that action. A rule for a collection by name always
  wins over ``"*"``, so ``"allowed": false`` carves an exception out of it.
- ``action``: one action, a list of them, or ``"*"`` for all four. A role
  may have one rule per collection and action.
- ``filter``: the items the rule covers (absent: all). Rules may use
  ``$CURRENT_USER``, ``$CURRENT_ROLE`` and ``$NOW``.
- ``fields``: ``"*"`` or a list of top-level field names that may be read
  (``read``) or written (``create``, ``update``).
- ``admin: true``: the role may do everything on every ordinary collection.

No rule: denied. Built in, and in force unless the file redefines them:
``public`` (nobody signed in: no rules), ``authenticated`` (every signed-in
user's role unless given another: everything on every ordinary collection,
which is Backpack's original behaviour), ``admin`` (admin, and not
redefinable). The collections ``users``, ``uploads``, ``sessions`` and every
``_``-prefixed one are no collections to anyone, admins included: no rule may
name them, and none reaches them.

A ``RuleSet`` is a value: changing the rules at runtime means building a new
one (``with_role``, ``without_role``, ``RuleSet.from_json``) and replacing the
old, and ``store`` keeps it through the storage interface.
"""

from __future__ import annotations

import re
from typing import Any, Literal, Union

import msgspec

from ..collections import is_hidden_collection
from ..errors import RemoteProtocolError
from ..query import MATCH_ALL, Filter, InvalidQuery, parse_filter, uses_variable
from ..query.evaluate import ALL_FIELDS

__all__ = [
    "ACTIONS",
    "PermissionAction",
    "PUBLIC",
    "AUTHENTICATED",
    "ADMIN",
    "RuleSpec",
    "RoleSpec",
    "RulesFile",
    "Rule",
    "Role",
    "RuleSet",
    "DEFAULT_RULES",
    "Accountability",
    "InvalidRules",
    "Forbidden",
]

#: The four actions a rule may allow.
ACTIONS = ("create", "read", "update", "delete")
PermissionAction = Literal["create", "read", "update", "delete"]
#: The role of a connection or request nobody signed in to.
PUBLIC = "public"
#: The role of a signed-in user nobody gave another role.
AUTHENTICATED = "authenticated"
#: The built-in administrator role.
ADMIN = "admin"

_ROLE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}\Z")
_FIELD_NAME = re.compile(r'[^\x00-\x1f\x7f"\\.()*,\[\]]{1,128}\Z')  # as query.parse_path


class InvalidRules(RemoteProtocolError):
    """A rule file (or a rule set sent to the admin API) that is not valid;
    ``code`` is Directus's ``INVALID_PAYLOAD``, status 400."""

    code = "INVALID_PAYLOAD"

    def __init__(self, reason: str) -> None:
        super().__init__(f"Invalid rules: {reason}", 400)


class Forbidden(RemoteProtocolError):
    """What the rules deny; ``code`` is Directus's ``FORBIDDEN``, status 403.

    Each protocol answers it in its own format (Backpack: 403
    ``{"message":"Unauthorized"}``); the message is safe to show.
    """

    code = "FORBIDDEN"

    def __init__(self, message: str = "You don't have permission to access this.") -> None:
        super().__init__(message, 403)


# -- the file -------------------------------------------------------------------


class RuleSpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One rule as written in the file (see the module docstring)."""

    collection: str
    action: Union[str, tuple[str, ...]]
    allowed: bool = True
    filter: Union[dict[str, Any], None] = None
    fields: Union[str, tuple[str, ...]] = ALL_FIELDS


class RoleSpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One role as written in the file: admin, or a tuple of rules."""

    admin: bool = False
    rules: tuple[RuleSpec, ...] = ()


class RulesFile(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The rule file: its format ``version`` (1) and its roles by name."""

    version: int = 1
    roles: dict[str, RoleSpec] = msgspec.field(default_factory=dict)


# -- compiled ---------------------------------------------------------------------


class Rule(msgspec.Struct, frozen=True):
    """A compiled rule: ``allowed``, the parsed item ``filter``, the
    ``fields`` (``"*"`` or a frozenset of names), and whether the filter
    depends on who the user is (``per_user``: it uses ``$CURRENT_USER``)
    or on no variable at all (``constant``)."""

    allowed: bool
    filter: Filter = MATCH_ALL
    fields: Union[Literal["*"], frozenset[str]] = ALL_FIELDS
    per_user: bool = False
    #: the filter holds no variable: it is tested as it is, with nothing to bind
    constant: bool = True


#: What an admin role's every rule is.
ADMIN_RULE = Rule(True)


class Role(msgspec.Struct, frozen=True):
    """A compiled role: ``admin``, or its rules by ``(collection, action)``
    (``collection`` may be ``"*"``)."""

    name: str
    admin: bool
    rules: dict[tuple[str, str], Rule]


class Accountability(msgspec.Struct, frozen=True):
    """Who is asking: the user's id (``None``: nobody signed in, whose role
    is always ``public``, whatever ``role`` says) and the user's role.
    Build it from ``User.id`` and ``User.role``."""

    user: Union[str, None] = None
    role: str = PUBLIC

    @property
    def effective_role(self) -> str:
        """The role the rules are looked up for."""
        return PUBLIC if self.user is None else self.role


def _actions(spec: RuleSpec, where: str) -> tuple[str, ...]:
    named = (spec.action,) if isinstance(spec.action, str) else spec.action
    if "*" in named:
        return ACTIONS
    for action in named:
        if action not in ACTIONS:
            raise InvalidRules(f"{where}: unknown action {action[:32]!r} (create, read, update, delete or *)")
    if not named:
        raise InvalidRules(f"{where}: no action")
    return tuple(dict.fromkeys(named))


def _fields(spec: RuleSpec, where: str) -> Union[Literal["*"], frozenset[str]]:
    if spec.fields == ALL_FIELDS:
        return ALL_FIELDS
    if isinstance(spec.fields, str):
        raise InvalidRules(f'{where}: "fields" is "*" or a list of field names')
    for name in spec.fields:
        if not _FIELD_NAME.match(name):
            raise InvalidRules(f"{where}: {name[:64]!r} is not a top-level field name")
    return ALL_FIELDS if "*" in spec.fields else frozenset(spec.fields)


def _compile_rule(spec: RuleSpec, where: str) -> Rule:
    try:
        filter = parse_filter(spec.filter)
    except InvalidQuery as exc:
        raise InvalidRules(f"{where}: {exc.message}") from None
    if uses_variable(filter, "CURRENT_USER."):
        # Rules see an Accountability, which carries no user fields.
        raise InvalidRules(f"{where}: rules may use $CURRENT_USER, $CURRENT_ROLE and $NOW, not $CURRENT_USER.<field>")
    return Rule(spec.allowed, filter, _fields(spec, where), uses_variable(filter, "CURRENT_USER"),
                not uses_variable(filter))


def _compile_role(name: str, spec: RoleSpec) -> Role:
    if not _ROLE_NAME.match(name):
        raise InvalidRules(f"{name[:64]!r} is not a role name (1-64 letters, digits, '_', '.', '-')")
    rules: dict[tuple[str, str], Rule] = {}
    for n, rule_spec in enumerate(spec.rules):
        where = f"role {name!r}, rule {n + 1}"
        collection = rule_spec.collection
        if collection != "*" and (not collection or is_hidden_collection(collection)):
            raise InvalidRules(f"{where}: {collection[:64]!r} is not a collection any rule may open")
        rule = _compile_rule(rule_spec, where)
        for action in _actions(rule_spec, where):
            if (collection, action) in rules:
                raise InvalidRules(f"{where}: a second rule for {collection!r} / {action}")
            rules[(collection, action)] = rule
    return Role(name, spec.admin, rules)


_BUILT_IN: dict[str, RoleSpec] = {
    PUBLIC: RoleSpec(),
    AUTHENTICATED: RoleSpec(rules=(RuleSpec("*", "*"),)),
    ADMIN: RoleSpec(admin=True),
}


class RuleSet:
    """Every role, compiled from a ``RulesFile``, with the built-in roles
    filled in. A value: never changed in place; build a new one instead.

    Raises ``InvalidRules`` for a file that is not valid.
    """

    __slots__ = ("spec", "_roles", "_unrestricted")

    def __init__(self, spec: RulesFile | None = None) -> None:
        spec = RulesFile() if spec is None else spec
        if spec.version != 1:
            raise InvalidRules(f"unknown version {spec.version} (this Satchel reads version 1)")
        if ADMIN in spec.roles:
            raise InvalidRules("the admin role is built in and cannot be redefined")
        self.spec = spec
        merged = dict(_BUILT_IN)
        merged.update(spec.roles)
        self._roles = {name: _compile_role(name, role) for name, role in merged.items()}
        # (collection, action) -> whether every signed-in user may do it to
        # every item with every field (``unrestricted``), as it is asked.
        self._unrestricted: dict[tuple[str, str], bool] = {}

    @classmethod
    def from_json(cls, data: bytes | str) -> "RuleSet":
        """Decode and compile a rule file; ``InvalidRules`` if it is not one."""
        try:
            spec = msgspec.json.decode(data, type=RulesFile)
        except (msgspec.DecodeError, RecursionError) as exc:
            raise InvalidRules(str(exc)[:200]) from None
        return cls(spec)

    def to_json(self) -> bytes:
        """The rule file this set was built from (built-in roles not repeated)."""
        return msgspec.json.encode(self.spec)

    @property
    def roles(self) -> tuple[str, ...]:
        """Every role's name, the built-in ones included, sorted."""
        return tuple(sorted(self._roles))

    def role(self, name: str) -> Role | None:
        """The compiled role called ``name``, if there is one."""
        return self._roles.get(name)

    def with_role(self, name: str, role: RoleSpec) -> "RuleSet":
        """A new rule set in which ``name`` is ``role`` (added or replaced)."""
        roles = dict(self.spec.roles)
        roles[name] = role
        return RuleSet(msgspec.structs.replace(self.spec, roles=roles))

    def without_role(self, name: str) -> "RuleSet":
        """A new rule set without the role ``name`` (a built-in one reverts
        to its default). Its users may then do nothing."""
        roles = {key: value for key, value in self.spec.roles.items() if key != name}
        return RuleSet(msgspec.structs.replace(self.spec, roles=roles))

    def rule(self, who: Accountability, collection: str, action: str) -> Rule | None:
        """The rule that decides ``action`` on ``collection`` for ``who``, if
        it allows it; ``None``: denied."""
        if is_hidden_collection(collection):
            return None
        role = self._roles.get(who.effective_role)
        if role is None:
            return None
        if role.admin:
            return ADMIN_RULE
        rule = role.rules.get((collection, action))
        if rule is None:
            rule = role.rules.get(("*", action))
        return rule if rule is not None and rule.allowed else None

    def unrestricted(self, collection: str, action: str) -> bool:
        """Whether every signed-in user, whatever its role, may do ``action``
        on every item of ``collection`` with every field: then a protocol
        has nothing to check per item (the default rules' case, Backpack's
        original behaviour). A signed-in user never has the ``public`` role
        (``set_role`` refuses it), so that role does not count, and always
        has a role these rules define (``set_role`` refuses others, and
        ``save_rules`` refuses rules that drop a role someone holds), so a
        role they do not define does not count either."""
        key = (collection, action)
        known = self._unrestricted.get(key)
        if known is None:
            known = not is_hidden_collection(collection)
            for name, role in self._roles.items():
                if not known:
                    break
                if name == PUBLIC or role.admin:
                    continue
                rule = role.rules.get(key) or role.rules.get(("*", action))
                known = (rule is not None and rule.allowed and rule.filter == MATCH_ALL
                         and rule.fields == ALL_FIELDS)
            self._unrestricted[key] = known
        return known

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RuleSet) and other.spec == self.spec

    def __hash__(self) -> int:
        return hash(self.to_json())

    def __repr__(self) -> str:
        return f"RuleSet(roles={list(self.roles)!r})"


#: The rules when nothing was configured: Backpack's behaviour.
DEFAULT_RULES = RuleSet()
