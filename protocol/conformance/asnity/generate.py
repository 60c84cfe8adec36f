"""Generating Asnity sequences with Hypothesis, checking a target, and
cutting a failure down to a short script.

``check_asnity_target`` draws ``examples`` sequences: most begin by making a
community with members, channels (public and private) and sockets in its
rooms - the world every later step needs - then up to ``steps`` steps of
every kind, chat writes over REST and the socket most of all. Each runs on
fresh communities and connections (``AsnityRun``); the first difference is
cut down (``minimize``) by deleting runs of steps, then simplifying the
lists inside steps, while the shorter script still fails at its last step.
"""

from __future__ import annotations

from typing import Any

from .. import sequences
from ..sequences import SequenceReport, check_sequences, weighted as _weighted, world_and_steps
from .runner import CHANNELS, CONNS, USERS, AsnityMismatch, AsnityRun, AsnityTarget, tidy

__all__ = ["AsnityReport", "check_asnity_target", "minimize", "sequence_strategy", "step_strategy"]


class AsnityReport(SequenceReport[AsnityMismatch]):
    """The outcome of ``check_asnity_target``: ``failure`` (None: the target
    conformed) is the shortest failing script found, ``found`` the failure as
    first seen."""


def step_strategy(*, disconnects: bool = True) -> Any:
    """A Hypothesis strategy for one step (``disconnects``: also namespace
    DISCONNECTs, which leave the connection open)."""
    from hypothesis import strategies as st

    users = st.integers(0, USERS - 1)
    # Low slots are the ones a sequence's first steps fill: mostly name them.
    communities = st.sampled_from([0, 0, 0, 0, 0, 1])
    channels = st.sampled_from([0, 0, 0, 1, 1, *range(CHANNELS)])
    conns = st.sampled_from([0, 0, 1, 1, 2, *range(CONNS)])
    chats = st.sampled_from([1, 1, 1, 2, 2, 0, 3])
    contents = st.sampled_from(["hi", "hi", "hi", "안녕", "edited", "", "LONG"])
    invitees = st.lists(users, min_size=1, max_size=2, unique=True)

    def step(do: str, **fields: Any) -> Any:
        return st.fixed_dictionaries({"do": st.just(do), **fields}).map(tidy)

    def connect(k: int) -> Any:
        natural = k % USERS
        return step("sio-connect", conn=st.just(k), user=st.sampled_from([natural, natural, natural, *range(USERS)]),
                    community=communities, token=st.sampled_from(["good"] * 6 + ["bad", "none"]))

    def socket_chat(action: str) -> Any:
        fields: dict[str, Any] = {"conn": conns, "community": communities, "chatType": st.just(action),
                                  "channel": channels}
        if action in ("modify", "delete"):
            fields["chat"] = chats
        if action != "delete":
            fields["content"] = contents
        return step("sio-chat", **fields)

    by_user = {"user": users}
    weighted = [
        (1, step("create-community", community=communities, **by_user)),
        (2, step("add-members", community=communities, users=invitees, **by_user)),
        (1, step("leave-community", community=communities, **by_user)),
        (1, step("delete-community", community=communities, **by_user)),
        (1, step("get-members", community=communities, **by_user)),
        (1, step("list-communities", **by_user)),
        (2, step("create-channel", community=communities, channel=channels, private=st.booleans(), **by_user)),
        (2, step("join-channel", channel=channels, **by_user)),
        (1, step("leave-channel", channel=channels, **by_user)),
        (1, step("delete-channel", channel=channels, **by_user)),
        (1, step("get-channel", channel=channels, **by_user)),
        (3, step("read-chats", channel=channels, **by_user)),
        (2, step("invite", channel=channels, users=invitees, **by_user)),
        (1, step("post-chat", channel=channels, content=contents,
                 type=st.sampled_from(["TEXT"] * 5 + ["IMAGE", "SYSTEM"]), **by_user)),
        (4, step("post-chat", channel=channels, content=st.just("hi"), type=st.just("TEXT"), **by_user)),
        (2, step("edit-chat", channel=channels, chat=chats, content=contents, **by_user)),
        (2, step("delete-chat", channel=channels, chat=chats, **by_user)),
        (3, conns.flatmap(connect)),
        (3, step("sio-join", conn=conns, community=communities,
                 channels=st.one_of(st.lists(channels, max_size=3), st.lists(channels, max_size=3), st.just("all")))),
        (8, socket_chat("new")), (3, socket_chat("modify")), (3, socket_chat("delete")), (1, socket_chat("sideways")),
        (2, step("sio-invite", conn=conns, community=communities, channel=channels, users=invitees)),
        (1, step("sio-close", conn=conns)),
    ]
    if disconnects:
        weighted.append((2, step("sio-disconnect", conn=conns, community=communities)))
    return _weighted(*weighted)


def sequence_strategy(steps: int = 30, *, disconnects: bool = True) -> Any:
    """Sequences of at most ``steps`` steps, most of them starting with a
    community of members, channels and sockets in its rooms."""
    from hypothesis import strategies as st

    def world(members: list[list[int]], channels: list[tuple[int, bool]], sockets: list[bool]) -> list[Any]:
        head: list[dict[str, Any]] = [{"do": "create-community", "user": 0, "community": 0}]
        head += [{"do": "add-members", "user": 0, "community": 0, "users": users} for users in members]
        head += [{"do": "create-channel", "user": user, "community": 0, "channel": h, "private": private}
                 for h, (user, private) in enumerate(channels)]
        for k, joins in enumerate(sockets):
            head.append({"do": "sio-connect", "conn": k, "user": k % USERS, "community": 0})
            if joins:
                head.append({"do": "sio-join", "conn": k, "community": 0, "channels": list(range(len(channels)))})
        return head

    world_of = st.builds(world, st.sampled_from([[], [[1]], [[1, 2]], [[1, 2]], [[1], [2]], [[1, 2]]]),
                         st.lists(st.tuples(st.sampled_from([0, 0, 1]), st.booleans()), min_size=1, max_size=2),
                         st.lists(st.sampled_from([True, True, False]), min_size=1, max_size=CONNS))
    return world_and_steps(world_of, step_strategy(disconnects=disconnects), steps)


def check_asnity_target(target: AsnityTarget, *, examples: int = 50, steps: int = 30, seed: int | None = None,
                        token: str = "t0", timeout: float = 2.0, quiet: float = 0.0, minimize_failure: bool = True,
                        disconnects: bool = True) -> AsnityReport:
    """Run ``examples`` generated sequences of at most ``steps`` steps against
    ``target`` and report the first difference, cut down to a short script.

    ``seed`` repeats an earlier run's sequences; ``token`` names the run's
    accounts (something random for a shared server); ``timeout`` is how
    long to wait for each expected packet and ``quiet`` how long to listen
    for unexpected ones after each sequence; ``disconnects`` adds namespace
    DISCONNECT steps.
    """
    run = AsnityRun(target, token=token, timeout=timeout, quiet=quiet)
    return check_sequences(run, sequence_strategy(steps, disconnects=disconnects), AsnityMismatch, AsnityReport(0),
                           examples=examples, seed=seed, minimize_failure=minimize_failure, simpler=_simpler,
                           budget=400)


def minimize(run: AsnityRun, failure: AsnityMismatch, *, budget: int = 400) -> AsnityMismatch:
    """The shortest script found that still fails at its last step: runs of
    steps deleted (halves, quarters ... single steps), then the lists in
    steps shortened; each try is a fresh sequence, at most ``budget`` of them."""
    return sequences.minimize(run, failure, AsnityMismatch, _simpler, budget=budget)


def _simpler(step: dict[str, Any]) -> list[dict[str, Any]]:
    """Simpler versions of a step: each of its lists with one item fewer."""
    options = []
    for key, value in step.items():
        if isinstance(value, list) and value:
            for drop in range(len(value)):
                options.append({**step, key: value[:drop] + value[drop + 1:]})
    return [option for option in options if option.get("users", [0])]
