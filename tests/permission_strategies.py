"""Hypothesis strategies for permission rules and the records they judge,
shared by the model's properties and the protocols' (issue 11 part 1)."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from satchel.protocol.permissions import (
    ACTIONS,
    Accountability,
    RoleSpec,
    RuleSet,
    RulesFile,
    RuleSpec,
)
from satchel.storage_backends.conformance_queries import query_strategies

NOW_MS = 1_700_000_000_000
NOW = "2023-11-14T22:13:20.000Z"
FIELDS = ["owner", "a", "b", "n", "s", "obj", "tags"]
USERS = [None, "u1", "u2", "u3"]
ROLES = ["r1", "r2", "authenticated", "public", "admin", "ghost"]
PROPERTY = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

_q = query_strategies()
owner_filters = st.sampled_from([
    {"owner": {"_eq": "$CURRENT_USER"}},
    {"owner": {"_neq": "$CURRENT_USER"}},
    {"_or": [{"owner": "$CURRENT_USER"}, {"s": {"_icontains": "a"}}]},
    {"owner": {"_in": ["u1", "u2"]}},
    {"n": {"_gte": 0}},
])
# Filters on the owner most often: they are what tells users apart.
rule_filters = owner_filters | st.none() | owner_filters | _q.filters
field_sets = st.just("*") | st.lists(st.sampled_from(FIELDS), unique=True).map(tuple)


@st.composite
def rule_sets(draw: Any) -> RuleSet:
    roles = {}
    for name in draw(st.lists(st.sampled_from(["r1", "r2", "authenticated", "public"]), unique=True)):
        if draw(st.integers(0, 9)) == 0:
            roles[name] = RoleSpec(admin=True)
            continue
        keys = draw(st.lists(st.tuples(st.sampled_from(["notes", "*"]), st.sampled_from(ACTIONS)), unique=True, max_size=6))
        specs = tuple(
            RuleSpec(collection, action, allowed=draw(st.booleans() | st.just(True)), filter=draw(rule_filters), fields=draw(field_sets))
            for collection, action in keys
        )
        roles[name] = RoleSpec(rules=specs)
    return RuleSet(RulesFile(roles=roles))


values = st.none() | st.booleans() | st.integers(-2, 2) | st.sampled_from(["a", "A", "ba", "", "u1", "u2"]) | _q.values
owners = st.sampled_from(USERS[1:])
records = st.fixed_dictionaries({"owner": owners}, optional={name: values for name in FIELDS if name != "owner"})
records |= st.fixed_dictionaries({}, optional={name: owners if name == "owner" else values for name in FIELDS})
stored_records = st.lists(records, max_size=10).map(lambda items: [{"_id": f"{n:04d}", **fields} for n, fields in enumerate(items)])
accountabilities = st.builds(Accountability, st.sampled_from(USERS), st.sampled_from(ROLES))
