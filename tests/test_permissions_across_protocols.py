"""No sequence of actions in any protocol lets a user read or change what its
rules deny (issue 11 part 1).

A stateful machine draws a random rule set and three users with random
roles, then lets them act through every protocol that serves records -
Backpack's REST API and websocket actions, Directus's items API and its
websocket - in any order, on one collection. After every step it checks,
from the store's contents before and after and from everything every
connection received:

- every record that changed was changed by a write the rules allow its
  author (``check_write`` on the record as it was and as it is);
- every record any user saw - in an answer, or delivered to one of its
  connections - is a version of a stored record that user's read rule
  admits, showing only fields it may read, with the stored values.
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from directus_rest_harness import DirectusCore, q
from satchel.protocol.directus import DirectusConfig
from satchel.protocol.http import HttpRequest, HttpResponse
from permission_strategies import rule_sets
from satchel.protocol.operations import ListRecords, SetUserRole
from satchel.protocol.permissions import Accountability, Forbidden, RuleSet, can, check_write, readable_fields

COLLECTION = "notes"

values = st.none() | st.booleans() | st.integers(-2, 2) | st.sampled_from(["a", "A", "ba", ""])
# A record's fields; "owner" is the index of a user, made its id when sent.
datas = st.fixed_dictionaries({}, optional={"owner": st.integers(0, 2), "a": values, "n": st.integers(-2, 2), "s": values})
users = st.integers(0, 2)
picks = st.integers(0, 1000)


class User:
    def __init__(self, account: Any, role: str, socket: str) -> None:
        self.account = account
        self.who = Accountability(account.id, role)
        self.socket = socket
        #: the user's Directus websockets: the extension's and core realtime's
        self.extension = ""
        self.core = ""


class AcrossProtocols(RuleBasedStateMachine):
    @initialize(rules=rule_sets(), picked=st.lists(st.integers(0, 10), min_size=3, max_size=3))
    def start(self, rules: RuleSet, picked: list[int]) -> None:
        # No held-back replies (reply_gap_ms=0): every frame a step causes
        # arrives in that step, so it is checked against that step's versions.
        self.core = DirectusCore(DirectusConfig(reply_gap_ms=0))
        self.rules = rules
        self.users: list[User] = []
        # A user holds a role the rules define, and never "public" (both
        # enforced by set_role and save_rules).
        defined = [role for role in rules.roles if role != "public"]
        for n, role in enumerate(defined[i % len(defined)] for i in picked):
            account = self.core.account(f"user{n}@example.com")
            self.core.execute(SetUserRole(account.id, role))
            socket = self.core.connect(account.cookie)
            assert isinstance(socket, str)
            self.users.append(User(account, role, socket))
        self.core.board.rules = rules  # after the accounts: registering needs no rule
        for user in self.users:
            token = user.account.access
            user.extension = self._open_directus(f"/websocket?access_token={token}")
            user.core = self._open_directus(f"/websocket?protocol=directus-core&access_token={token}")
            # Everyone subscribes from the start, so that every write is a
            # delivery to check; the subscribe step adds filtered ones.
            self.core.send(user.core, {"type": "subscribe", "collection": COLLECTION, "uid": "all"})
            self.core.send(user.extension, {"type": "subscribe", "collection": COLLECTION, "uid": "all"})
        for user in self.users:
            for connection in (user.socket, user.extension, user.core):
                self.core.take(connection)
        self.before = self._stored()
        self.actor: User | None = None
        self.seen: list[tuple[User, Any, str]] = []  # (who saw it, what, in which protocol's shape)

    # -- helpers ---------------------------------------------------------------

    def _stored(self) -> dict[str, dict[str, Any]]:
        return {record["_id"]: record for record in self.core.execute(ListRecords(COLLECTION))}

    def _data(self, data: dict[str, Any]) -> dict[str, Any]:
        fields = dict(data)
        if "owner" in fields:
            fields["owner"] = self.users[fields["owner"]].account.id
        return fields

    def _pick(self, pick: int) -> str:
        ids = sorted(self.before) or ["0" * 24]
        return ids[pick % len(ids)]

    def _act(self, user: User) -> None:
        self.actor = user

    def _saw(self, user: User, body: Any, shape: str) -> None:
        self.seen.append((user, body, shape))

    def _backpack(self, user: User, method: str, path: str, body: Any = None) -> None:
        self._act(user)
        answer = self.core.http(method, path, body, cookie=user.account.cookie)
        self._saw(user, answer.json, "backpack")

    def _directus(self, user: User, method: str, path: str, body: Any = None) -> None:
        self._act(user)
        answer = self.core.api(method, path, body, token=user.account.access)
        if answer.json is not None and "data" in answer.json:
            self._saw(user, answer.json["data"], "directus")

    def _socket(self, user: User, message: dict[str, Any]) -> None:
        self._act(user)
        self.core.send(user.socket, message)

    def _open_directus(self, target: str) -> str:
        self.directus_sockets = getattr(self, "directus_sockets", 0) + 1
        connection = f"directus{self.directus_sockets}"
        accepted = self.core.run(self.core.board.accept(HttpRequest("GET", target, []), connection))
        assert not isinstance(accepted, HttpResponse), accepted
        self.core.publish(accepted.events)
        return connection

    def _directus_socket(self, user: User, connection: str, message: dict[str, Any]) -> None:
        self._act(user)
        if self.core.board.opened(connection) is not None:
            self.core.send(connection, message)

    # -- Backpack REST -----------------------------------------------------------

    @rule(user=users, data=datas)
    def backpack_create(self, user: int, data: dict[str, Any]) -> None:
        self._backpack(self.users[user], "POST", f"/{COLLECTION}", self._data(data))

    @rule(user=users)
    def backpack_list(self, user: int) -> None:
        self._backpack(self.users[user], "GET", f"/{COLLECTION}")

    @rule(user=users, pick=picks)
    def backpack_get(self, user: int, pick: int) -> None:
        self._backpack(self.users[user], "GET", f"/{COLLECTION}/{self._pick(pick)}")

    @rule(user=users, pick=picks, data=datas, method=st.sampled_from(["PATCH", "PUT", "DELETE"]))
    def backpack_write(self, user: int, pick: int, data: dict[str, Any], method: str) -> None:
        body = None if method == "DELETE" else self._data(data)
        self._backpack(self.users[user], method, f"/{COLLECTION}/{self._pick(pick)}", body)

    # -- Backpack websocket --------------------------------------------------------

    @rule(user=users, data=datas)
    def socket_create(self, user: int, data: dict[str, Any]) -> None:
        self._socket(self.users[user], {"action": "create", "collection": COLLECTION, "data": self._data(data)})

    @rule(user=users, pick=picks, data=datas, action=st.sampled_from(["patch", "update", "delete"]))
    def socket_write(self, user: int, pick: int, data: dict[str, Any], action: str) -> None:
        message: dict[str, Any] = {"action": action, "collection": COLLECTION, "id": self._pick(pick)}
        if action != "delete":
            message["data"] = self._data(data)
        self._socket(self.users[user], message)

    @rule(user=users, pick=picks, query=st.sampled_from([None, "owner", "a", "s"]), action=st.sampled_from(["getAll", "find", "getOne"]))
    def socket_read(self, user: int, pick: int, query: str | None, action: str) -> None:
        message: dict[str, Any] = {"action": action, "collection": COLLECTION}
        if action == "getOne":
            message["id"] = self._pick(pick)
        if action == "find" and query is not None:
            record = self.before.get(self._pick(pick), {})
            message["query"] = {query: record.get(query)}
        self._socket(self.users[user], message)

    # -- Directus items API ----------------------------------------------------------

    @rule(user=users, data=datas)
    def directus_create(self, user: int, data: dict[str, Any]) -> None:
        self._directus(self.users[user], "POST", f"/items/{COLLECTION}", self._data(data))

    @rule(user=users, field=st.sampled_from(["owner", "a", "n", "s"]), value=values)
    def directus_list(self, user: int, field: str, value: Any) -> None:
        query = f"?filter={q({field: {'_neq': value}})}&sort=-{field}&fields=*"
        self._directus(self.users[user], "GET", f"/items/{COLLECTION}{query}")

    @rule(user=users, pick=picks)
    def directus_get(self, user: int, pick: int) -> None:
        self._directus(self.users[user], "GET", f"/items/{COLLECTION}/{self._pick(pick)}")

    @rule(user=users, pick=picks, data=datas, method=st.sampled_from(["PATCH", "DELETE"]))
    def directus_write(self, user: int, pick: int, data: dict[str, Any], method: str) -> None:
        body = None if method == "DELETE" else self._data(data)
        self._directus(self.users[user], method, f"/items/{COLLECTION}/{self._pick(pick)}", body)

    # -- Directus websockets: the extension and core realtime -----------------------

    @rule(user=users, field=st.sampled_from([None, "owner", "a", "n", "s"]), value=values,
          fields=st.sampled_from([["*"], ["id", "a"], ["s", "n"]]), core=st.booleans())
    def directus_subscribe(self, user: int, field: str | None, value: Any, fields: list[str], core: bool) -> None:
        query: dict[str, Any] = {"fields": fields}
        if field is not None:
            query["filter"] = {field: {"_eq": value}}
        who = self.users[user]
        if core:
            self._directus_socket(who, who.core, {"type": "subscribe", "collection": COLLECTION, "query": query,
                                                  "uid": f"s{field}"})
        else:
            self._directus_socket(who, who.extension, {"type": "SUBSCRIBE", "collection": COLLECTION,
                                                       "query": query, "uid": f"s{field}"})

    @rule(user=users, pick=picks, data=datas, action=st.sampled_from(["create", "read", "update", "delete"]))
    def directus_core_items(self, user: int, pick: int, data: dict[str, Any], action: str) -> None:
        message: dict[str, Any] = {"type": "items", "collection": COLLECTION, "action": action, "uid": "i"}
        if action in ("create", "update"):
            message["data"] = self._data(data)
        if action in ("update", "delete"):
            message["id"] = self._pick(pick)
        if action == "read":
            message["query"] = {"fields": ["*"], "sort": ["-n"]}
        who = self.users[user]
        self._directus_socket(who, who.core, message)

    @rule(user=users, pick=picks, data=datas, kind=st.sampled_from(["GET", "get", "POST", "PATCH", "DELETE"]))
    def directus_extension_items(self, user: int, pick: int, data: dict[str, Any], kind: str) -> None:
        message: dict[str, Any] = {"type": kind, "collection": COLLECTION, "uid": "e"}
        if kind in ("POST", "PATCH"):
            message["data"] = self._data(data)
        if kind in ("get", "PATCH", "DELETE"):
            message["id"] = self._pick(pick)
        who = self.users[user]
        self._directus_socket(who, who.extension, message)

    # -- the checks -----------------------------------------------------------------

    @invariant()
    def no_one_reads_or_changes_what_its_rules_deny(self) -> None:
        if not hasattr(self, "core"):
            return
        after = self._stored()
        now_ms = self.core.clock.now
        for record_id in self.before.keys() | after.keys():
            was, now = self.before.get(record_id), after.get(record_id)
            if was == now:
                continue
            assert self.actor is not None, f"{record_id} changed with nobody acting"
            try:
                check_write(self.rules, self.actor.who, COLLECTION, was, now, now_ms=now_ms)
            except Forbidden:
                raise AssertionError(f"{self.actor.who} made a write its rules deny: {was} -> {now}") from None
        for user in self.users:
            for message in self.core.take(user.socket):
                if isinstance(message, dict) and "response" in message:
                    self._saw(user, message["response"], "backpack")
            for connection in (user.extension, user.core):
                for message in self.core.take(connection):
                    # RESPONSE data, SUBSCRIPTION payload (extension); items
                    # answers and subscription events' data (core).
                    if isinstance(message, dict):
                        for key in ("data", "payload"):
                            self._saw(user, message.get(key), "directus")
        for user, body, shape in self.seen:
            for record in _records(body):
                self._check_seen(user, record, shape, (self.before, after), now_ms)
        self.seen.clear()
        self.before = after
        self.actor = None

    def _check_seen(self, user: User, record: dict[str, Any], shape: str, versions: tuple[dict, dict], now_ms: int) -> None:
        record = dict(record)
        if shape == "directus":
            if "id" not in record:
                return  # a list item cut to fields without the key: checked by its fields below? nothing to trace
            record["_id"] = record.pop("id")
        record_id = record.get("_id")
        if not isinstance(record_id, str):
            return  # not a record (a users-information reply, an id answer)
        if set(record) == {"_id"}:
            return  # only which record it is: no content
        readable = readable_fields(self.rules, user.who, COLLECTION)
        assert readable == "*" or set(record) <= readable, f"{user.who} saw unreadable fields: {record}"
        for stored in (versions[0].get(record_id), versions[1].get(record_id)):
            if stored is not None and all(stored.get(k, _ABSENT) == v for k, v in record.items()):
                assert can(self.rules, user.who, COLLECTION, "read", stored, now_ms=now_ms), (
                    f"{user.who} saw a record its read rule denies: {stored}"
                )
                return
        raise AssertionError(f"{user.who} saw {record}, which is no stored version")


_ABSENT = object()


def _records(body: Any) -> list[dict[str, Any]]:
    if isinstance(body, dict):
        return [body]
    if isinstance(body, list):
        return [item for item in body if isinstance(item, dict)]
    return []


TestAcrossProtocols = AcrossProtocols.TestCase
TestAcrossProtocols.settings = settings(
    max_examples=60, stateful_step_count=20, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
