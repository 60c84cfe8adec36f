"""What the step-sequence kits (Asnity, Directus, resources) share.

Each of those kits runs sequences of small JSON steps against a target, one
fresh sequence at a time, and checks every answer and every message after
each step; Hypothesis draws the sequences, and the first difference is cut
down to a short script. What differs between them is the protocol: the
steps, the model, how a connection is read. What is the same lives here:

- ``StepScript``: how a kit's steps print (keys in its order, one step a
  line) and load back; ``StepMismatch`` the difference at one step, printed
  with its script.
- ``SequenceBase`` / ``run_sequence``: a sequence's step dispatch, its
  failure, the check of what each connection received, its settling after
  the last step and its closing.
- ``SequenceReport``, ``check_sequences`` and ``minimize``: the Hypothesis
  run (``seed``, first failure kept if it does not show again) and the
  cutting down (runs of steps deleted, then each step made simpler).
- ``weighted``: one of several strategies by weight; ``world_and_steps``
  a sequence made of a drawn world and drawn steps.
- ``sign_up``: a run's account, made the one way every kit makes them.

Pure like the rest of the kit; Hypothesis is imported on first use.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Generic, TypeVar

from .checker import SetupError
from .matching import show
from .targets import CLOSED, NOTHING

__all__ = ["StepScript", "StepMismatch", "SequenceBase", "run_sequence", "SequenceReport", "check_sequences",
           "minimize", "weighted", "world_and_steps", "PASSWORD", "sign_up"]

Steps = list[dict[str, Any]]
M = TypeVar("M", bound="StepMismatch")

#: The password of every account the kits make.
PASSWORD = "kit-password-1"


def sign_up(http: Callable[..., tuple[int, Any]], token: str, index: int) -> str:
    """Sign up the run's account ``index`` (named after ``token``) through
    Asnity's REST API, where the kits' accounts come from (403: it is there
    from an earlier run); its email. ``http(method, path, body)`` answers
    the status and the decoded body."""
    email = f"kit{token}u{index}@example.com"
    status, body = http("POST", "/api/user/auth/signup", {"id": email, "password": PASSWORD, "nickname": f"kit{index}"})
    if status not in (201, 403):
        raise SetupError(f"signup of {email} answered {status} {show(body)}")
    return email


class StepScript:
    """How one kit's steps print and load: ``order`` is the order of the
    keys in a printed step (others after, by name); ``kind`` names the kit's
    scripts in the error ``load`` raises (``"a Directus"``)."""

    def __init__(self, kind: str, order: tuple[str, ...]) -> None:
        self.kind, self.order = kind, order

    def tidy(self, step: dict[str, Any]) -> dict[str, Any]:
        """``step`` with its keys in the order scripts print them."""
        order = self.order
        return {key: step[key] for key in sorted(step, key=lambda k: (order.index(k) if k in order else 99, k))}

    def format(self, steps: Steps) -> str:
        """A sequence as JSON, one step per line (``load`` reads it back)."""
        return "[\n" + ",\n".join("  " + json.dumps(self.tidy(step), ensure_ascii=False) for step in steps) + "\n]"

    def load(self, text: str) -> Steps:
        """The steps of a sequence printed by ``format``."""
        steps = json.loads(text)
        if not isinstance(steps, list) or not all(isinstance(step, dict) and "do" in step for step in steps):
            raise ValueError(f"{self.kind} script is a JSON list of steps, each an object with a 'do'")
        return steps


class StepMismatch(AssertionError):
    """The server differs from the model at step ``step``; ``steps`` is the
    sequence up to and including that step (each kit has its own subclass,
    naming its ``script``)."""

    script: ClassVar[StepScript]

    def __init__(self, step: int, what: str, steps: Steps | None = None) -> None:
        super().__init__(f"step {step}: {what}")
        self.step, self.what, self.steps = step, what, steps or []

    def __str__(self) -> str:
        return f"step {self.step}: {self.what}\n\nFailing steps ({len(self.steps)}):\n{self.script.format(self.steps)}"


class SequenceBase:
    """One sequence of a kit's run: ``step`` hands a step to the method
    ``_<do>`` (dashes as underscores); ``fail`` raises the kit's mismatch at
    the current step; ``deliveries`` checks what every connection received.
    A kit sets ``mismatch``, ``noun`` (what its messages call a connection),
    ``label``, ``model`` (whose ``conns`` are the open connections) and
    defines how a connection is read and closed (``receive``,
    ``close_conn``) and how its messages compare (``expected``, ``take``,
    ``expecting``, ``unexpected``)."""

    mismatch: ClassVar[type[StepMismatch]]
    noun: ClassVar[str] = "websocket"
    label: str
    model: Any
    run: Any
    index = 0

    def fail(self, what: str) -> None:
        raise self.mismatch(self.index, what)

    def conn_name(self, k: int) -> str:
        return f"{self.label}c{k}"

    def step(self, step: dict[str, Any], index: int) -> None:
        self.index = index
        kind = step["do"]
        handler = getattr(self, "_" + kind.replace("-", "_"), None)
        if handler is None or kind.startswith("_"):
            raise ValueError(f"unknown step {kind!r}")
        handler(step)

    # -- what the kit says about its connections and messages ---------------------------

    def receive(self, k: int, timeout: float) -> Any:
        """Connection ``k``'s next message, ``NOTHING`` or ``CLOSED``."""
        raise NotImplementedError

    def close_conn(self, name: str) -> None:
        raise NotImplementedError

    def expected(self, outcome: Any) -> dict[int, list[Any]]:
        """What ``outcome`` says each connection receives."""
        return outcome.frames

    def take(self, k: int, pending: list[Any], message: Any, what: str) -> None:
        """Check ``message`` against ``pending`` and remove what it was (or fail)."""
        raise NotImplementedError

    def expecting(self, pending: list[Any]) -> str:
        """``pending`` (never empty) as a failure tells it."""
        raise NotImplementedError

    def unexpected(self, k: int, message: Any) -> str:
        return f"{self.noun} {k} received an unexpected frame {show(message)}"

    # -- checking what the connections received --------------------------------------------

    def deliveries(self, outcome: Any, what: str) -> None:
        """Every open connection received exactly what ``outcome`` says
        (``take`` says in which order; None: nothing) and nothing else."""
        expected = {} if outcome is None else self.expected(outcome)
        for k in sorted(set(self.model.conns) | set(expected)):
            pending = list(expected.get(k, []))
            while pending:
                message = self.receive(k, self.run.timeout)
                if message is NOTHING or message is CLOSED:
                    why = "the server closed it" if message is CLOSED else f"nothing arrived in {self.run.timeout} s"
                    self.fail(f"{what}: {self.noun} {k} expected {self.expecting(pending)}, but {why}")
                self.take(k, pending, message, what)
            if k in self.model.conns:
                self.nothing_more(k, 0.0, what)

    def nothing_more(self, k: int, timeout: float, what: str) -> None:
        message = self.receive(k, timeout)
        if message is CLOSED:
            self.fail(f"{what}: the server closed {self.noun} {k}")
        if message is not NOTHING:
            self.fail(f"{what}: {self.unexpected(k, message)}")

    def close_connection(self, k: Any) -> None:
        """A step closing connection ``k`` (if open): the others receive nothing."""
        if k in self.model.conns:
            self.model.close(k)
            self.close_conn(self.conn_name(k))
            self.deliveries(None, f"closing {self.noun} {k}")

    def settle(self, last: int) -> None:
        """After the last step: nothing more arrives within ``quiet`` seconds."""
        self.index = max(last, 0)
        for k in sorted(self.model.conns):
            self.nothing_more(k, self.run.quiet, "after the last step")

    def close(self) -> None:
        for k in list(self.model.conns):
            self.close_conn(self.conn_name(k))
        self.model.conns.clear()


def run_sequence(sequence: SequenceBase, steps: Steps) -> Any:
    """Run ``steps`` on ``sequence`` and settle; its model. A mismatch gets
    the steps up to its own; the connections are closed whatever happens."""
    try:
        for index, step in enumerate(steps):
            sequence.step(step, index)
        sequence.settle(len(steps) - 1)
    except sequence.mismatch as mismatch:
        mismatch.steps = list(steps[:mismatch.step + 1])
        raise
    finally:
        sequence.close()
    return sequence.model


@dataclass
class SequenceReport(Generic[M]):
    """The outcome of checking a target: ``failure`` (None: the target
    conformed) is the shortest failing script found, ``found`` the failure
    as first seen."""

    examples: int
    failure: M | None = None
    found: M | None = None
    errors: list[BaseException] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return self.failure is None and not self.errors


def weighted(*choices: tuple[int, Any]) -> Any:
    """One of the strategies, by weight (``one_of`` drops repeated branches)."""
    from hypothesis import strategies as st

    return st.sampled_from([strategy for weight, strategy in choices for _ in range(weight)]).flatmap(lambda s: s)


def world_and_steps(world: Any, one: Any, steps: int, *, parts: bool = False) -> Any:
    """Sequences of at most ``steps`` steps: nine in ten begin with a drawn
    ``world`` (the steps every later one needs), then up to ``steps`` drawn
    from ``one`` (``parts``: each draw is a list of steps)."""
    from hypothesis import strategies as st

    worlds = st.sampled_from([True] * 9 + [False]).flatmap(lambda made: world if made else st.just([]))
    tails = st.integers(0, steps).flatmap(lambda n: st.lists(one, min_size=n, max_size=n))
    if parts:
        tails = tails.map(lambda drawn: [step for part in drawn for step in part])
    return st.builds(lambda head, tail: (head + tail)[:max(steps, 1)], worlds, tails)


def check_sequences(run: Any, sequences: Any, mismatch: type[M], report: SequenceReport[M], *, examples: int,
                    seed: int | None, minimize_failure: bool, simpler: Callable[[dict[str, Any]], Steps],
                    budget: int) -> SequenceReport[M]:
    """Run ``examples`` sequences drawn from ``sequences`` on ``run`` (set up
    first; torn down at the end if it can be) into ``report``: the first
    mismatch, cut down by ``minimize`` unless ``minimize_failure`` is false."""
    from hypothesis import HealthCheck, Phase, Verbosity, given, settings
    from hypothesis import seed as hypothesis_seed

    run.setup()
    first: list[M] = []

    @settings(max_examples=examples, deadline=None, database=None, suppress_health_check=list(HealthCheck),
              phases=[Phase.explicit, Phase.generate], report_multiple_bugs=False, verbosity=Verbosity.quiet)
    @given(sequences)
    def sequence(drawn: Steps) -> None:
        report.examples += 1
        try:
            run.run(drawn)
        except mismatch as found:
            first.append(found)
            raise

    test = sequence if seed is None else hypothesis_seed(seed)(sequence)
    try:
        try:
            test()
        except mismatch as found:
            report.found = first[0] if first else found
        except Exception as error:  # noqa: BLE001 - reported, not raised
            if first:  # Hypothesis could not see it fail again (Flaky): keep the first failure
                report.found = first[0]
            else:
                report.errors.append(error)
        report.examples = min(report.examples, examples)
        if report.found is not None:
            report.failure = (minimize(run, report.found, mismatch, simpler, budget=budget) if minimize_failure
                              else report.found)
    finally:
        teardown = getattr(run, "teardown", None)
        if teardown is not None:
            teardown()
    return report


def minimize(run: Any, failure: M, mismatch: type[M], simpler: Callable[[dict[str, Any]], Steps], *,
             budget: int) -> M:
    """The shortest script found that still fails at its last step: runs of
    steps deleted (halves, quarters ... single steps), then each step
    replaced by one of ``simpler(step)`` while that still fails; each try is
    a fresh sequence, at most ``budget`` of them."""
    tries = 0

    def attempt(candidate: Steps) -> M | None:
        nonlocal tries
        if tries >= budget or not candidate:
            return None
        tries += 1
        try:
            run.run(candidate)
        except mismatch as found:
            return found if found.step == len(candidate) - 1 else None
        except Exception:  # noqa: BLE001 - a candidate the model cannot run is no simpler failure
            return None
        return None

    best = attempt(list(failure.steps))
    if best is None:
        return failure  # it did not fail again: keep it as found
    steps = list(best.steps)
    size = max(1, (len(steps) - 1) // 2)
    while size >= 1 and tries < budget:
        start, changed = 0, False
        while start < len(steps) - 1 and tries < budget:
            found = attempt(steps[:start] + steps[min(start + size, len(steps) - 1):])
            if found is not None:
                best, steps, changed = found, list(found.steps), True
            else:
                start += size
        if not changed:
            size //= 2
    improved = True
    while improved and tries < budget:
        improved = False
        for index in range(len(steps)):
            for option in simpler(steps[index]):
                found = attempt(steps[:index] + [option] + steps[index + 1:])
                if found is not None:
                    best, steps, improved = found, list(found.steps), True
                    break
    return best
