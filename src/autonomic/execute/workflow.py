"""Multi-step actions as a pure generator: what to do next, given what the journal says.

An action may be a small workflow of steps, each compensated by its actuator's ``undo``.
:func:`run` holds only the logic: it yields commands and receives their results; the
executor owns the I/O (locking, journaling, the kill switch, retries) and carries them out::

    gen = run(steps, journal)
    command = next(gen)
    while True:
        command = gen.send(carry_out(command))   # StopIteration.value is the WorkflowResult

- ``Do(i)``: apply step ``i``; the reply is ``Reply(ok=True)`` or ``Reply(ok=False, error=...)``.
- ``Compensate(i)``: undo step ``i`` (idempotent, so a compensation cut short is simply redone).
- ``Check(i)``: step ``i`` was started but its result never journaled (the engine stopped);
  the reply says whether it took effect: ``Reply(ok=True/False/None)``. True or False: the
  step is applied (idempotently per key, which finishes it or runs it the first time);
  None: nobody can tell, so nothing more is done and a person is asked.

Steps run in order. When one fails, every completed step before it is compensated in
reverse order; a failed compensation stops there and asks a person (``needs_person``). A step
whose actuator has no undo for it (a runbook without ``undo_argv``) is named as left as it ran,
not counted among the steps compensated.
With ``undo=True`` (verification found the finished workflow made things worse) every
completed step is compensated in reverse order. The journal (one :class:`StepState` per
step, as derived by :func:`journal_from_records`) lets :func:`run` resume after a crash at
any point: completed steps are never redone, completed compensations never repeated.
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any, Literal

from autonomic.model import StepRecord, StepSpec
from autonomic.printable import counted


class Status(StrEnum):
    NOT_STARTED = "not_started"
    STARTED = "started"  # intent journaled, result not: the engine stopped in between
    OK = "ok"
    FAILED = "failed"


@dataclass(frozen=True)
class StepState:
    """What the journal says about one step: its apply and its compensation."""

    do: Status = Status.NOT_STARTED
    compensate: Status = Status.NOT_STARTED
    error: str = ""  # the last failure's message
    no_undo: bool = False  # compensated by an undo its actuator has none of: nothing was undone


@dataclass(frozen=True)
class Do:
    index: int


@dataclass(frozen=True)
class Compensate:
    index: int


@dataclass(frozen=True)
class Check:
    index: int


Command = Do | Compensate | Check


@dataclass(frozen=True)
class Reply:
    """The result of a command: ok True/False, or None (Check only) when it cannot be told."""

    ok: bool | None
    error: str = ""
    no_undo: bool = False  # Compensate: the step's actuator has no undo for it (see :func:`undid_nothing`)


@dataclass(frozen=True)
class WorkflowResult:
    """``done``: every step applied. ``compensated``: a step failed (or ``undo`` was asked)
    and every completed step was compensated. ``needs_person``: a compensation failed, or
    a step's effect is unknown; nothing more will be done automatically."""

    status: Literal["done", "compensated", "needs_person"]
    reason: str = ""
    failed_index: int | None = None  # the step that failed (or whose compensation failed)
    compensated: list[int] = field(default_factory=list)  # in the order they were compensated
    no_undo: list[int] = field(default_factory=list)  # of those, the ones with no undo: left as they ran


def run(
    steps: Sequence[StepSpec], journal: Sequence[StepState] = (), *, undo: bool = False
) -> Generator[Command, Reply, WorkflowResult]:
    """Drive ``steps`` from where ``journal`` left them (see the module docstring)."""
    n = len(steps)
    state = [journal[i] if i < len(journal) else StepState() for i in range(n)]
    compensated = [i for i in reversed(range(n)) if state[i].compensate == Status.OK]

    def label(i: int) -> str:
        return f"step {i + 1}/{n} {steps[i].type}:{steps[i].name}"

    failed: int | None = None  # the step that failed
    limit = n  # compensate the completed steps below this index, last first
    if undo or any(s.compensate != Status.NOT_STARTED for s in state):
        # compensation phase (asked for, or resumed): every completed step
        failed = None if undo else next((i for i in range(n) if state[i].do == Status.FAILED), None)
        reason = "undo requested" if failed is None else f"{label(failed)} failed: {state[failed].error}"
    else:
        for i in range(n):
            s = state[i]
            if s.do == Status.OK:
                continue
            if s.do == Status.FAILED:
                failed = limit = i
                reason = f"{label(i)} failed: {s.error}"
                break
            if s.do == Status.STARTED:
                took = yield Check(i)
                if took.ok is None:
                    return WorkflowResult(
                        "needs_person",
                        f"{label(i)}: the engine stopped mid-step and cannot tell whether it ran"
                        + (f" ({took.error})" if took.error else ""),
                        failed_index=i,
                        compensated=compensated,
                    )
            reply = yield Do(i)
            if reply.ok:
                state[i] = replace(s, do=Status.OK)
                continue
            state[i] = replace(s, do=Status.FAILED, error=reply.error)
            failed = limit = i
            reason = f"{label(i)} failed: {reply.error}"
            break
        else:
            done = "its one step applied" if n == 1 else f"all {counted(n, 'step')} applied"
            return WorkflowResult("done", done, compensated=compensated)

    for j in reversed(range(limit)):
        s = state[j]
        if s.do != Status.OK or s.compensate == Status.OK:
            continue  # never completed (nothing to undo), or already undone
        if s.compensate == Status.FAILED:
            return _compensation_failed(reason, label(j), s.error, j, compensated)
        reply = yield Compensate(j)
        if not reply.ok:
            return _compensation_failed(reason, label(j), reply.error, j, compensated)
        state[j] = replace(s, compensate=Status.OK, no_undo=reply.no_undo)
        compensated.append(j)
    kept = [j for j in compensated if state[j].no_undo]
    done = ", ".join(str(j + 1) for j in compensated if j not in kept) or "none"
    # a step whose actuator has no undo (a runbook without undo_argv, a restart) is not said undone
    left = f"; not undone, having no undo: {', '.join(label(j) for j in kept)}" if kept else ""
    return WorkflowResult("compensated", f"{reason}; compensated steps: {done}{left}",
                          failed_index=failed, compensated=compensated, no_undo=kept)


def _compensation_failed(reason: str, label: str, error: str, index: int, done: list[int]) -> WorkflowResult:
    return WorkflowResult("needs_person", f"{reason}; compensating {label} failed: {error}",
                          failed_index=index, compensated=done)


def undid_nothing(result: Any) -> bool:
    """Whether an actuator's ``undo`` result says it has no undo for the step (``{"undo": "not
    applicable"}``: a runbook without ``undo_argv``, an HTTP call without ``undo``, a restart)."""
    return isinstance(result, dict) and result.get("undo") == "not applicable"


# --- the journal as StepRecords ------------------------------------------------------------

Kind = Literal["do", "compensate", "check"]
# "withdrawn": the intent was journaled but the step was not carried out (the kill switch could
# not be read): the step reads as before that intent, so a retry checks the kill switch again
Phase = Literal["intent", "result", "withdrawn"]


def record_name(kind: Kind, index: int, steps: Sequence[StepSpec]) -> str:
    """``"step 2/3 config:scale"``, ``"compensate 1/3 process:restart"``, ``"check 3/3 fake:poke"``."""
    word = {"do": "step", "compensate": "compensate", "check": "check"}[kind]
    return f"{word} {index + 1}/{len(steps)} {steps[index].type}:{steps[index].name}"


def record_detail(kind: Kind, index: int, phase: Phase, **extra: Any) -> dict[str, Any]:
    """The detail of a workflow journal record; :func:`journal_from_records` reads it back."""
    return {"workflow": kind, "index": index, "phase": phase, **extra}


def journal_from_records(records: Sequence[StepRecord], n: int) -> list[StepState]:
    """Fold an action's journal into one :class:`StepState` per step (records of other
    kinds, such as "baseline" or "verify", are ignored). An intent without a result reads
    as STARTED; a withdrawn intent as what came before it; a later record of the same step
    and kind supersedes an earlier one."""
    state = [StepState() for _ in range(n)]
    before: dict[tuple[str, int], Status] = {}  # each step and kind's status before its last intent
    for r in records:
        kind, index, phase = r.detail.get("workflow"), r.detail.get("index"), r.detail.get("phase")
        if kind not in ("do", "compensate") or not isinstance(index, int) or not 0 <= index < n:
            continue
        current = state[index].do if kind == "do" else state[index].compensate
        if phase == "intent":
            before[(kind, index)] = current
            status = Status.STARTED
        elif phase == "withdrawn":
            status = before.get((kind, index), Status.NOT_STARTED) if current == Status.STARTED else current
        else:
            status = Status.OK if r.ok else Status.FAILED
        error = str(r.detail.get("error", "")) if status == Status.FAILED else state[index].error
        if kind == "do":
            state[index] = replace(state[index], do=status, error=error)
        else:
            no_undo = phase == "result" and status == Status.OK and undid_nothing(r.detail.get("result"))
            state[index] = replace(state[index], compensate=status, error=error, no_undo=no_undo)
    return state


def snapshot_of(records: Sequence[StepRecord], index: int) -> dict[str, Any] | None:
    """The undo snapshot journaled with step ``index``'s first intent that was not withdrawn
    (None: not yet taken; a withdrawn step's snapshot is taken again when it runs). Only the
    withdrawal of the intent that took the snapshot drops it: a later intent (finishing a step
    that may have run before the engine stopped) reuses it, and its withdrawal says nothing of
    that earlier attempt, which may have changed what a new snapshot would see."""
    snap: dict[str, Any] | None = None
    own = False  # whether the latest intent is the one that took ``snap``
    for r in records:
        d = r.detail
        if d.get("workflow") != "do" or d.get("index") != index:
            continue
        if d.get("phase") == "intent":
            own = snap is None
            if own:
                taken = d.get("snapshot")
                snap = dict(taken) if isinstance(taken, dict) else {}
        elif d.get("phase") == "withdrawn" and own:
            snap, own = None, False
        elif d.get("phase") == "result":
            break  # the step ran with that snapshot: later intents are retries of it
    return snap
