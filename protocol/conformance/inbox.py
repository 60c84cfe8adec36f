"""The conformance kit for inbox documents over HTTP (seed 001).

A separate, self-contained part of the kit (the Backpack part does not use
it). It drives any server that speaks the inbox-document HTTP API through a
target whose ``http`` method accepts extra ``headers`` (``InProcessTarget``,
``satchel.transports.conformance_runner.UrlTarget``).

- ``InboxModel``: a pure model of the documents (read token -> write token,
  revision, content) that predicts the answer to every step: PUT
  create/update (200, 400, 403, 409), GET (200 + ``Revision``, 304 with
  ``If-Newer-Than``, 404), POST of a message (200 merged by the merge rule,
  400, 403, 404, 413) and DELETE of a message (200, 403, 404).
- Steps are plain JSON objects naming documents, write tokens and message
  ids by index (``{"do": "post", "token": 0, "id": 1, "body": ...}``), so a
  failing sequence is printable and replays (``run_steps``) with fresh
  tokens.
- ``check_inbox_target``: generates sequences with Hypothesis (imported on
  first use; this module stays pure), runs each over fresh documents,
  checks every answer and, after each step, that a GET of the document it
  touched returns exactly the model's content and revision; a failure is
  cut down to a short sequence by deleting steps while it still fails
  (``minimize``; ``InboxReport.failure``).

Revisions a merge gives come from the server's clock (``max(revision + 1,
now)``): the model knows only that a merge that changed the inbox raises the
revision and one that changed nothing keeps it; it learns the new value from
the GET that follows.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Protocol, Sequence

__all__ = [
    "InboxTarget",
    "InboxModel",
    "InboxMismatch",
    "InboxReport",
    "Doc",
    "run_steps",
    "format_steps",
    "check_inbox_target",
    "step_strategy",
    "DOCUMENTS",
    "WRITE_TOKENS",
    "MESSAGE_IDS",
]

#: Document slots per example, write tokens (one more than documents, so one
#: may belong to none), and message ids.
DOCUMENTS = 3
WRITE_TOKENS = 4
MESSAGE_IDS = ("00000000000000a1", "00000000000000b2", "0123456789abcdef")
MAX_MESSAGE_BYTES = 4096
MAX_REVISION = 2**53 - 1
PATH = "/backend/documents"

#: Bodies a PUT may send, by name: (bytes, parsed JSON or None when invalid).
CONTENTS: dict[str, bytes] = {
    "inbox": b'{"#messages": {}, "title": "sensors"}',
    "inbox-with-message": b'{"#messages": {"00000000000000a1": {"#": 2, "v": "stored"}}, "n": [1, 2]}',
    "plain": b'{"v": 1}',
    "list": b"[1, 2, 3]",
    "messages-not-object": b'{"#messages": []}',
    "invalid": b'{"#messages": {',
}


class InboxTarget(Protocol):
    """What the inbox kit drives: one HTTP request with extra headers."""

    def http(self, jar: str | None, method: str, path: str, body: bytes | None, *, key: str | None,
             headers: Sequence[tuple[str, str]] | None = None) -> Any: ...


class InboxMismatch(AssertionError):
    """The server's answer differs from the model's prediction."""

    def __init__(self, step: int, what: str, steps: list[dict[str, Any]] | None = None) -> None:
        super().__init__(f"step {step}: {what}")
        self.step = step
        self.what = what
        self.steps = steps or []


@dataclass
class Doc:
    """One document as the model holds it."""

    write: int
    revision: int | None  # None: raised by a merge, not learned yet
    floor: int            # the revision is above this when ``revision`` is None
    content: Any          # parsed JSON


def _revision_of(message: Any) -> float | int | None:
    value = message.get("#", 0) if isinstance(message, dict) else 0
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return value


def _is_inbox(content: Any) -> bool:
    return isinstance(content, dict) and isinstance(content.get("#messages"), dict)


def _token(seed: str, kind: str, index: int) -> str:
    return hashlib.sha256(f"{seed}/{kind}/{index}".encode()).hexdigest()[:32]


@dataclass
class InboxModel:
    """The documents of one example, and the tokens it uses."""

    seed: str
    docs: dict[int, Doc] = field(default_factory=dict)

    def read_token(self, slot: int) -> str:
        return _token(self.seed, "read", slot)

    def write_token(self, index: int) -> str:
        return _token(self.seed, "write", index)

    def current(self, slot: int) -> int:
        doc = self.docs.get(slot)
        if doc is None:
            return 0
        assert doc.revision is not None, "revision not learned"
        return doc.revision

    def owner(self, write: int) -> int | None:
        for slot, doc in self.docs.items():
            if doc.write == write:
                return slot
        return None

    # -- predictions: (status, expected JSON body or None, touched slot) --------

    def put(self, slot: int, write: int | None, derived: int, revision: int, body: bytes
            ) -> tuple[int, Any, int | None, dict[str, str]]:
        if write is None or derived < 0 or revision < 0 or revision > MAX_REVISION or revision <= derived:
            return 400, None, slot, {}
        try:
            parsed = json.loads(body)
        except ValueError:
            return 400, None, slot, {}
        doc = self.docs.get(slot)
        if doc is None:
            if derived == 0 and self.owner(write) is None:
                self.docs[slot] = Doc(write, revision, revision, parsed)
                return 200, {"revision": revision}, slot, {"revision": str(revision)}
            return 409, None, slot, {}
        if doc.write != write:
            return 403, None, slot, {}
        if derived != doc.revision:
            return 409, None, slot, {"revision": str(doc.revision)}
        doc.revision, doc.floor, doc.content = revision, revision, parsed
        return 200, {"revision": revision}, slot, {"revision": str(revision)}

    def message(self, write: int, message_id: str, body: bytes | None) -> tuple[int, int | None]:
        """POST (``body``) or DELETE (``None``): status and the touched slot."""
        if len(message_id) != 16 or any(c not in "0123456789abcdefABCDEF" for c in message_id):
            return 400, None
        message_id = message_id.lower()
        message: Any = None
        if body is not None:
            if len(body) > MAX_MESSAGE_BYTES:
                return 413, None
            try:
                message = json.loads(body)
            except ValueError:
                return 400, None
            if _revision_of(message) is None:
                return 400, None
        slot = self.owner(write)
        if slot is None:
            return 404, None
        doc = self.docs[slot]
        if not _is_inbox(doc.content):
            return 403, slot
        messages: dict[str, Any] = doc.content["#messages"]
        if body is None:
            changed = message_id in messages
            messages.pop(message_id, None)
        else:
            incoming = _revision_of(message)
            assert incoming is not None
            stored_revision = _revision_of(messages[message_id]) if message_id in messages else None
            changed = message_id not in messages or stored_revision is None or incoming > stored_revision
            if changed:
                messages[message_id] = message
        if changed:
            doc.floor = self.current(slot)
            doc.revision = None
        return 200, slot

    def learn(self, slot: int, revision: int) -> str | None:
        """Check and take the revision a GET showed; a complaint or None."""
        doc = self.docs[slot]
        if doc.revision is None:
            if not revision > doc.floor:
                return f"a merge that changed the inbox must raise its revision above {doc.floor}, got {revision}"
            doc.revision = revision
            return None
        if revision != doc.revision:
            return f"expected Revision {doc.revision}, got {revision}"
        return None


# -- running steps -----------------------------------------------------------------


def _header(reply: Any, name: str) -> str | None:
    for key, value in reply.headers:
        if key.lower() == name:
            return value
    return None


def _json(reply: Any) -> Any:
    try:
        return json.loads(reply.body)
    except ValueError:
        return reply.body


def _message_body(spec: Any) -> bytes:
    if spec == "invalid":
        return b'{"v": '
    if spec == "too-large":
        return json.dumps({"v": "x" * MAX_MESSAGE_BYTES}).encode()
    return json.dumps(spec).encode()


def _relative(model: InboxModel, slot: int, spec: Any) -> int:
    if spec == "zero":
        return 0
    return model.current(slot) + int(spec)


def _check_get(target: InboxTarget, model: InboxModel, slot: int, index: int) -> None:
    reply = target.http(None, "GET", f"{PATH}/{model.read_token(slot)}", None, key=None)
    doc = model.docs.get(slot)
    if doc is None:
        if reply.status != 404:
            raise InboxMismatch(index, f"GET of absent document {slot}: expected 404, got {reply.status}")
        return
    if reply.status != 200:
        raise InboxMismatch(index, f"GET of document {slot}: expected 200, got {reply.status} {reply.body!r}")
    revision = _header(reply, "revision")
    if revision is None or not revision.isdigit():
        raise InboxMismatch(index, f"GET of document {slot}: no Revision header")
    complaint = model.learn(slot, int(revision))
    if complaint:
        raise InboxMismatch(index, f"GET of document {slot}: {complaint}")
    content = _json(reply)
    if content != doc.content:
        raise InboxMismatch(index, f"GET of document {slot}: expected {doc.content!r}, got {content!r}")


def run_step(target: InboxTarget, model: InboxModel, step: dict[str, Any], index: int) -> None:
    """Send one step, compare the answer with the model's, then GET what it touched."""
    kind = step["do"]
    expected_headers: dict[str, str] = {}
    expected_body: Any = None
    touched: int | None = None
    if kind == "put":
        slot = step["doc"]
        write = slot if step["write"] == "own" else step["write"]
        derived = _relative(model, slot, step["derived"])
        revision = MAX_REVISION + 1 if step["revision"] == "max+1" else derived + int(step["revision"])
        headers = [("Derived-From", str(derived)), ("Revision", str(revision))]
        if write is not None:
            token = model.write_token(write)
            headers.append(("Write-Token", token.upper() if step.get("upper") else token))
        body = CONTENTS[step["content"]]
        status, expected_body, touched, expected_headers = model.put(slot, write, derived, revision, body)
        reply = target.http(None, "PUT", f"{PATH}/{model.read_token(slot)}", body, key=None, headers=headers)
        what = f"PUT document {slot} (Derived-From {derived}, Revision {revision})"
    elif kind == "get":
        slot = step["doc"]
        doc = model.docs.get(slot)
        if doc is None or "newer" not in step:
            _check_get(target, model, slot, index)
            return
        threshold = max(0, _relative(model, slot, step["newer"]))
        reply = target.http(None, "GET", f"{PATH}/{model.read_token(slot)}", None, key=None,
                            headers=[("If-Newer-Than", str(threshold))])
        status = 200 if model.current(slot) > threshold else 304
        expected_headers = {"revision": str(model.current(slot))}
        expected_body = doc.content if status == 200 else None
        what = f"GET document {slot} with If-Newer-Than {threshold}"
        if reply.status == 304 and reply.body:
            raise InboxMismatch(index, f"{what}: a 304 has no body, got {reply.body!r}")
    elif kind in ("post", "delete"):
        token = model.write_token(step["token"])
        token = token.upper() if step.get("upper") else token
        message_id = step["id"] if isinstance(step["id"], str) else MESSAGE_IDS[step["id"]]
        body = _message_body(step["body"]) if kind == "post" else None
        status, touched = model.message(step["token"], message_id, body)
        method = "POST" if kind == "post" else "DELETE"
        reply = target.http(None, method, f"{PATH}/{token}/messages/{message_id}", body, key=None)
        what = f"{method} message {message_id} with write token {step['token']}"
    else:
        raise ValueError(f"unknown step {kind!r}")
    if reply.status != status:
        raise InboxMismatch(index, f"{what}: expected {status}, got {reply.status} {reply.body[:200]!r}")
    for name, value in expected_headers.items():
        if _header(reply, name) != value:
            raise InboxMismatch(index, f"{what}: expected header {name}: {value}, got {_header(reply, name)!r}")
    if expected_body is not None and _json(reply) != expected_body:
        raise InboxMismatch(index, f"{what}: expected body {expected_body!r}, got {reply.body[:200]!r}")
    if status >= 400 and not (isinstance(_json(reply), dict) and isinstance(_json(reply).get("message"), str)):
        raise InboxMismatch(index, f"{what}: an error answers {{\"message\": ...}}, got {reply.body[:200]!r}")
    if touched is not None:
        _check_get(target, model, touched, index)


def run_steps(target: InboxTarget, steps: list[dict[str, Any]], seed: str) -> InboxModel:
    """Run ``steps`` over fresh documents (tokens derived from ``seed``);
    raises ``InboxMismatch`` (carrying the steps) at the first difference."""
    model = InboxModel(seed)
    try:
        for index, step in enumerate(steps):
            run_step(target, model, step, index)
        for slot in range(DOCUMENTS):
            _check_get(target, model, slot, len(steps))
    except InboxMismatch as mismatch:
        mismatch.steps = list(steps)
        raise
    return model


def format_steps(steps: list[dict[str, Any]]) -> str:
    """A failing sequence, one JSON step per line."""
    return "[\n" + ",\n".join("  " + json.dumps(step, sort_keys=True) for step in steps) + "\n]"


# -- generation (Hypothesis, imported on first use) ------------------------------------


@dataclass
class InboxReport:
    """The outcome of ``check_inbox_target``."""

    examples: int
    failure: InboxMismatch | None = None
    errors: list[BaseException] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return self.failure is None and not self.errors


def step_strategy() -> Any:
    """A Hypothesis strategy for one step."""
    from hypothesis import strategies as st

    docs = st.integers(0, DOCUMENTS - 1)
    writes = st.integers(0, WRITE_TOKENS - 1)
    revisions = st.one_of(st.none(), st.sampled_from([0, 1, 2, 3, 1.5]))
    values = st.sampled_from(["a", "b", 1])

    def message(revision: Any, value: Any) -> dict[str, Any]:
        return {"v": value} if revision is None else {"#": revision, "v": value}

    valid_messages = st.builds(message, revisions, values)
    messages = st.one_of(
        valid_messages, valid_messages, valid_messages, valid_messages, valid_messages,
        st.sampled_from(["invalid", "too-large", {"#": "1"}, {"#": True}, [1, 2], "text"]),
    )
    valid_ids = st.integers(0, len(MESSAGE_IDS) - 1)
    ids = st.one_of(valid_ids, valid_ids, valid_ids, valid_ids, valid_ids, st.sampled_from(["00000000000000A1", "xyz", "0" * 17]))
    put = st.fixed_dictionaries({
        "do": st.just("put"), "doc": docs, "write": st.one_of(st.just("own"), st.just("own"), writes, st.none()),
        "derived": st.sampled_from([0, 0, 0, 0, "zero", -1, 1]),
        "revision": st.sampled_from([1, 1, 1, 7, 0, -1, "max+1"]),
        "content": st.sampled_from(["inbox", "inbox", "inbox-with-message", "inbox-with-message", *CONTENTS]),
        "upper": st.booleans(),
    })
    get = st.one_of(
        st.fixed_dictionaries({"do": st.just("get"), "doc": docs}),
        st.fixed_dictionaries({"do": st.just("get"), "doc": docs, "newer": st.sampled_from([-1, 0, 1, "zero"])}),
    )
    post = st.fixed_dictionaries({"do": st.just("post"), "token": st.one_of(docs, docs, writes), "id": ids, "body": messages,
                                  "upper": st.booleans()})
    delete = st.fixed_dictionaries({"do": st.just("delete"), "token": st.one_of(docs, writes), "id": ids})
    return st.one_of(put, put, get, post, post, post, post, delete)


def check_inbox_target(target: InboxTarget, *, examples: int = 50, steps: int = 30, seed: int | None = None,
                       token: str = "t0") -> InboxReport:
    """Generate ``examples`` sequences of up to ``steps`` steps and run each
    over fresh documents; a failure is cut down to a short sequence."""
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import seed as hypothesis_seed
    from hypothesis import strategies as st

    counter = [0]
    report = InboxReport(0)

    def next_seed() -> int:
        counter[0] += 1
        return counter[0]

    # Most sequences start by creating documents (inboxes mostly), so that
    # the generated steps after them meet documents; shrinking drops what
    # a failure does not need.
    creations = st.lists(
        st.fixed_dictionaries({
            "do": st.just("put"), "doc": st.integers(0, DOCUMENTS - 1), "write": st.just("own"),
            "derived": st.just("zero"), "revision": st.just(1),
            "content": st.sampled_from(["inbox", "inbox", "inbox-with-message", "plain"]),
        }),
        max_size=DOCUMENTS, unique_by=lambda step: step["doc"],
    )

    @settings(max_examples=examples, deadline=None, database=None,
              suppress_health_check=list(HealthCheck),
              phases=[Phase.explicit, Phase.generate], report_multiple_bugs=False)
    @given(st.builds(lambda head, tail: (head + tail)[:max(steps, 1)], creations,
                     st.integers(0, steps).flatmap(lambda n: st.lists(step_strategy(), min_size=n, max_size=n))))
    def sequence(sequence_steps: list[dict[str, Any]]) -> None:
        counter[0] += 1
        report.examples = max(report.examples, counter[0])
        run_steps(target, sequence_steps, f"{token}/{counter[0]}")

    test = sequence if seed is None else hypothesis_seed(seed)(sequence)
    try:
        try:
            test()
        finally:
            report.examples = min(counter[0], examples)
    except InboxMismatch as mismatch:
        report.failure = mismatch
    except BaseExceptionGroup as group:  # several distinct failures: report one
        found = [error for error in group.exceptions if isinstance(error, InboxMismatch)]
        if found:
            report.failure = min(found, key=lambda error: len(error.steps))
        else:
            report.errors.append(group)
    except Exception as error:  # noqa: BLE001 - reported, not raised
        report.errors.append(error)
    if report.failure is not None:
        report.failure = minimize(target, report.failure, lambda: f"{token}/m{next_seed()}")
    return report


def minimize(target: InboxTarget, failure: InboxMismatch, fresh: Any) -> InboxMismatch:
    """Cut ``failure``'s steps down: drop one step at a time while the rest
    still fails (each try over fresh documents, tokens from ``fresh()``)."""
    steps = list(failure.steps)
    shrunk = True
    while shrunk:
        shrunk = False
        for index in range(len(steps)):
            candidate = steps[:index] + steps[index + 1:]
            try:
                run_steps(target, candidate, fresh())
            except InboxMismatch as mismatch:
                steps, failure, shrunk = candidate, mismatch, True
                break
    return failure
