"""The rules in force: what a server's actions and renderers read, and how
they change while it runs.

Every action that decides something by the rules asks for them with
``yield CurrentRules()``; the ``Switchboard`` answers it from the rule set it
holds (never the store: a request must not cost a read of the rules), and
renderers get the same rule set in their ``RenderContext``. The rules are
loaded from the store when the server starts (``Switchboard.load_rules``)
and replaced while it runs by an action that stores new rules and returns
``RulesChanged``: the switchboard applies it in order with the other events
of that action, so what follows the change is decided by the new rules. The
event carries the rules' JSON, so that a broker can take it to every node.
A user's new role travels the same way (``RoleChanged``).
"""

from __future__ import annotations

import msgspec

from ..operations import Operation

__all__ = ["CurrentRules", "UserRole", "RulesChanged", "RoleChanged", "ROLE_CACHE_MS", "ROLE_CACHE_SIZE"]

#: How long the switchboard trusts a role it read (ms): a role changed
#: through the admin API reaches it at once (``RoleChanged``); one changed
#: behind its back (``satchel admin create`` on the data dir of a running
#: server) within this long.
ROLE_CACHE_MS = 1000
#: The most users whose roles the switchboard keeps (the oldest go first).
ROLE_CACHE_SIZE = 10_000


class CurrentRules(Operation, frozen=True):
    """-> ``RuleSet``: the rules in force now. Answered by the switchboard."""


class UserRole(Operation, frozen=True):
    """-> ``str | None``: the role of user ``user_id`` (``None``: no such
    user). Answered by the switchboard from the roles it read lately - a
    request under rules that limit a role then costs no read of the user -
    and by a ``GetUser`` when it has none fresh."""

    user_id: str


class RulesChanged(msgspec.Struct, frozen=True, tag=True):
    """The stored rules were replaced: ``rules`` is their JSON
    (``RuleSet.to_json``), ``revision`` the stored setting's revision."""

    rules: bytes
    revision: int


class RoleChanged(msgspec.Struct, frozen=True, tag=True):
    """User ``user_id`` now has role ``role`` (an administrator gave it).
    The switchboard hands it to every mount with a connection of that user
    (``Mount.role_changed``), so what those connections are sent and may do
    from then on is decided by the new role - a demotion takes effect on
    open websockets at once, not at their next sign-in."""

    user_id: str
    role: str
