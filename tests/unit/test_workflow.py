"""The multi-step workflow generator, driven directly over a scripted world (no I/O), and the
pattern schema for multi-step actions."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal

import pytest
from pydantic import BaseModel, ConfigDict

from autonomic.errors import PatternError
from autonomic.execute.workflow import (
    Check,
    Command,
    Compensate,
    Do,
    Reply,
    Status,
    StepState,
    WorkflowResult,
    journal_from_records,
    record_detail,
    record_name,
    run,
    snapshot_of,
)
from autonomic.model import StepRecord, StepSpec
from autonomic.plan.patterns import load_patterns
from autonomic.registry import Registry

STEPS = [StepSpec(name=f"s{i}", type="fake", params={}) for i in range(3)]


class Crash(Exception):
    """The engine died here."""


class World:
    """What the actuators touch. Applies and undos are idempotent per step, as keys make them."""

    def __init__(self, fail_do: frozenset[int] = frozenset(), fail_undo: frozenset[int] = frozenset()) -> None:
        self.fail_do, self.fail_undo = fail_do, fail_undo
        self.applied: set[int] = set()
        self.effects: list[tuple[str, int]] = []  # every change that really happened

    def do(self, i: int) -> Reply:
        if i in self.fail_do:
            return Reply(False, f"boom {i}")
        if i not in self.applied:
            self.applied.add(i)
            self.effects.append(("do", i))
        return Reply(True)

    def undo(self, i: int) -> Reply:
        if i in self.fail_undo:
            return Reply(False, f"undo boom {i}")
        if i in self.applied:
            self.applied.discard(i)
            self.effects.append(("undo", i))
        return Reply(True)


class Driver:
    """Carries commands out as the executor does: journal the intent, act, journal the result,
    with a possible crash at every point in between."""

    def __init__(self, world: World, steps: list[StepSpec] = STEPS, crash_at: int | None = None) -> None:
        self.world, self.steps, self.crash_at = world, steps, crash_at
        self.records: list[StepRecord] = []
        self.commands: list[Command] = []
        self.ticks = 0

    def _tick(self) -> None:
        self.ticks += 1
        if self.ticks == self.crash_at:
            raise Crash

    def _write(self, kind: Literal["do", "compensate", "check"], i: int, phase: Literal["intent", "result"],
               ok: bool, error: str = "") -> None:
        detail = record_detail(kind, i, phase, **({"error": error} if error else {}))
        self.records.append(StepRecord(name=record_name(kind, i, self.steps), ok=ok, started_at=0,
                                       finished_at=0, detail=detail))
        self._tick()

    def carry_out(self, command: Command) -> Reply:
        self.commands.append(command)
        i = command.index
        if isinstance(command, Check):
            return Reply(i in self.world.applied)
        kind: Literal["do", "compensate"] = "do" if isinstance(command, Do) else "compensate"
        self._write(kind, i, "intent", True)
        reply = self.world.do(i) if kind == "do" else self.world.undo(i)
        self._tick()  # the effect happened, its result is not yet journaled
        self._write(kind, i, "result", bool(reply.ok), reply.error)
        return reply

    def go(self, undo: bool = False) -> WorkflowResult:
        gen = run(self.steps, journal_from_records(self.records, len(self.steps)), undo=undo)
        try:
            command = next(gen)
            while True:
                command = gen.send(self.carry_out(command))
        except StopIteration as stop:
            return stop.value


def test_all_steps_succeed_in_order_and_nothing_is_compensated() -> None:
    d = Driver(World())
    result = d.go()
    assert result.status == "done" and result.compensated == []
    assert d.commands == [Do(0), Do(1), Do(2)]


@pytest.mark.parametrize("k", [0, 1, 2])
def test_a_failed_step_compensates_the_completed_steps_in_reverse_order(k: int) -> None:
    world = World(fail_do=frozenset({k}))
    d = Driver(world)
    result = d.go()
    assert result.status == "compensated" and result.failed_index == k
    assert d.commands == [Do(i) for i in range(k + 1)] + [Compensate(j) for j in reversed(range(k))]
    assert result.compensated == list(reversed(range(k)))
    assert f"step {k + 1}/3 fake:s{k} failed: boom {k}" in result.reason
    assert world.applied == set()


def test_a_step_with_no_undo_is_not_said_compensated_also_when_resumed_from_the_journal() -> None:
    """Step 3 failed; step 2's actuator had no undo for it (``{"undo": "not applicable"}``, a
    runbook without ``undo_argv``), journaled before the engine stopped; step 1 is undone after the
    restart. The result says step 2 was left as it ran, not "compensated steps: 2, 1"."""
    def rec(kind: Literal["do", "compensate"], i: int, phase: Literal["intent", "result"], ok: bool = True,
            **extra: object) -> StepRecord:
        return StepRecord(name=record_name(kind, i, STEPS), ok=ok, started_at=0, finished_at=0,
                          detail=record_detail(kind, i, phase, **extra))

    records = [rec("do", 0, "intent"), rec("do", 0, "result"), rec("do", 1, "intent"), rec("do", 1, "result"),
               rec("do", 2, "intent"), rec("do", 2, "result", ok=False, error="boom 2"),
               rec("compensate", 1, "intent"), rec("compensate", 1, "result", result={"undo": "not applicable"})]
    journal = journal_from_records(records, 3)
    assert journal[1].no_undo and not journal[0].no_undo
    gen = run(STEPS, journal)
    assert next(gen) == Compensate(0)
    with pytest.raises(StopIteration) as stop:
        gen.send(Reply(True))
    result: WorkflowResult = stop.value.value
    assert result.status == "compensated" and result.compensated == [1, 0] and result.no_undo == [1]
    assert result.reason == ("step 3/3 fake:s2 failed: boom 2; compensated steps: 1; "
                             "not undone, having no undo: step 2/3 fake:s1")


@pytest.mark.parametrize("bad", [0, 1])
def test_a_failed_compensation_stops_and_needs_a_person(bad: int) -> None:
    world = World(fail_do=frozenset({2}), fail_undo=frozenset({bad}))
    d = Driver(world)
    result = d.go()
    assert result.status == "needs_person" and result.failed_index == bad
    # compensation stops at the one that failed: nothing earlier is touched
    assert d.commands[-1] == Compensate(bad)
    assert d.commands == [Do(0), Do(1), Do(2), *[Compensate(j) for j in range(1, bad - 1, -1)]]
    assert f"compensating step {bad + 1}/3 fake:s{bad} failed: undo boom {bad}" in result.reason


def test_undo_compensates_every_completed_step_in_reverse_order() -> None:
    d = Driver(World())
    assert d.go().status == "done"
    d.commands.clear()
    result = d.go(undo=True)
    assert result.status == "compensated" and result.compensated == [2, 1, 0]
    assert d.commands == [Compensate(2), Compensate(1), Compensate(0)]
    assert d.world.applied == set()


def test_a_workflow_journaled_as_done_does_nothing_more() -> None:
    d = Driver(World())
    d.go()
    d.commands.clear()
    assert d.go().status == "done" and d.commands == []


def _clean_ticks(world: World, undo: bool) -> int:
    d = Driver(world)
    d.go()
    if undo:
        d.go(undo=True)
    return d.ticks


@pytest.mark.parametrize(("fail_do", "undo"), [(frozenset(), False), (frozenset({2}), False),
                                              (frozenset({1}), False), (frozenset(), True)])
def test_resume_after_a_crash_at_every_point_never_repeats_a_journaled_step(
    fail_do: frozenset[int], undo: bool
) -> None:
    points = _clean_ticks(World(fail_do=fail_do), undo)
    assert points >= 9  # intent, effect and result of every command
    for crash_at in range(1, points + 1):
        world = World(fail_do=fail_do)
        d = Driver(world, crash_at=crash_at)
        with pytest.raises(Crash):
            d.go()
            if undo:
                d.go(undo=True)
        before = journal_from_records(d.records, 3)
        d.crash_at, d.commands = None, []
        forward_done = all(s.do == Status.OK for s in before)
        result = d.go(undo=undo and forward_done)
        if undo and not forward_done:
            assert result.status == "done"
            result = d.go(undo=True)
        # never redone: no Do for a step journaled as done, no Compensate for one journaled as undone
        for i, s in enumerate(before):
            if s.do in (Status.OK, Status.FAILED):
                assert Do(i) not in d.commands, crash_at
            if s.do == Status.STARTED:  # result unknown: asked about before it is applied again
                assert d.commands.index(Check(i)) < d.commands.index(Do(i))
            if s.compensate == Status.OK:
                assert Compensate(i) not in d.commands, crash_at
        # each change happened once in the world, and the end is the same as without the crash
        effects = world.effects
        assert len(effects) == len(set(effects)), (crash_at, effects)
        if fail_do:
            assert result.status == "compensated" and world.applied == set()
            k = min(fail_do)
            assert [e for e in effects if e[0] == "undo"] == [("undo", j) for j in reversed(range(k))]
        elif undo:
            assert result.status == "compensated" and world.applied == set()
            assert [e for e in effects if e[0] == "undo"] == [("undo", 2), ("undo", 1), ("undo", 0)]
        else:
            assert result.status == "done" and world.applied == {0, 1, 2}


def test_a_step_whose_effect_cannot_be_told_goes_to_a_person_and_nothing_more_runs() -> None:
    journal = [StepState(do=Status.OK), StepState(do=Status.STARTED)]
    gen = run(STEPS, journal)
    assert next(gen) == Check(1)
    with pytest.raises(StopIteration) as stop:
        gen.send(Reply(None, "unreachable"))
    result = stop.value.value
    assert result.status == "needs_person" and result.failed_index == 1
    assert "cannot tell whether it ran" in result.reason and "unreachable" in result.reason


@pytest.mark.parametrize("took", [True, False])
def test_a_step_whose_effect_is_known_is_applied_again_idempotently(took: bool) -> None:
    gen = run(STEPS, [StepState(do=Status.OK), StepState(do=Status.STARTED)])
    assert next(gen) == Check(1)
    assert gen.send(Reply(took)) == Do(1)
    assert gen.send(Reply(True)) == Do(2)


def test_a_compensation_cut_short_is_redone_and_a_journaled_failed_one_needs_a_person() -> None:
    cut = [StepState(do=Status.OK), StepState(do=Status.OK, compensate=Status.STARTED),
           StepState(do=Status.FAILED, error="boom")]
    gen = run(STEPS, cut)
    assert next(gen) == Compensate(1)
    assert gen.send(Reply(True)) == Compensate(0)
    with pytest.raises(StopIteration) as stop:
        gen.send(Reply(True))
    assert stop.value.value.status == "compensated" and "step 3/3 fake:s2 failed: boom" in stop.value.value.reason
    failed = [StepState(do=Status.OK), StepState(do=Status.OK, compensate=Status.FAILED, error="no"),
              StepState(do=Status.FAILED, error="boom")]
    with pytest.raises(StopIteration) as stop:
        next(run(STEPS, failed))
    assert stop.value.value.status == "needs_person" and stop.value.value.failed_index == 1


def test_journal_from_records_ignores_other_records_and_keeps_the_first_snapshot() -> None:
    def rec(name: str, ok: bool, **detail: object) -> StepRecord:
        return StepRecord(name=name, ok=ok, started_at=0, finished_at=0, detail=detail)

    records = [
        rec("baseline", True, metric="up"),
        rec("step 1/3 fake:s0", True, **record_detail("do", 0, "intent", snapshot={"v": 1})),
        rec("step 1/3 fake:s0", True, **record_detail("do", 0, "result")),
        rec("step 2/3 fake:s1", True, **record_detail("do", 1, "intent", snapshot={"v": 2})),
        rec("check 2/3 fake:s1", True, **record_detail("check", 1, "result", applied=True)),
        rec("step 2/3 fake:s1", True, **record_detail("do", 1, "intent")),
        rec("step 2/3 fake:s1", False, **record_detail("do", 1, "result", error="nope")),
    ]
    state = journal_from_records(records, 3)
    assert state == [StepState(do=Status.OK), StepState(do=Status.FAILED, error="nope"), StepState()]
    assert snapshot_of(records, 1) == {"v": 2} and snapshot_of(records, 2) is None


def test_a_withdrawn_intent_reads_as_not_started_and_its_snapshot_is_taken_again() -> None:
    """An intent withdrawn because the kill switch could not be read: the step never ran, so it
    is neither "started" (which would ask the actuator) nor holds the old snapshot."""
    def rec(name: str, ok: bool, **detail: object) -> StepRecord:
        return StepRecord(name=name, ok=ok, started_at=0, finished_at=0, detail=detail)

    records = [
        rec("step 1/2 fake:s0", True, **record_detail("do", 0, "intent", snapshot={"v": 1})),
        rec("step 1/2 fake:s0", True, **record_detail("do", 0, "result")),
        rec("step 2/2 fake:s1", True, **record_detail("do", 1, "intent", snapshot={"v": 2})),
        rec("step 2/2 fake:s1", True, **record_detail("do", 1, "withdrawn", reason="store down")),
    ]
    assert journal_from_records(records, 2) == [StepState(do=Status.OK), StepState()]
    assert snapshot_of(records, 0) == {"v": 1} and snapshot_of(records, 1) is None
    again = [*records, rec("step 2/2 fake:s1", True, **record_detail("do", 1, "intent", snapshot={"v": 3}))]
    assert journal_from_records(again, 2)[1] == StepState(do=Status.STARTED)
    assert snapshot_of(again, 1) == {"v": 3}
    # a compensation withdrawn after its step completed: the step reads as completed, not undone
    comp = [*records[:2], rec("compensate 1/2 fake:s0", True, **record_detail("compensate", 0, "intent")),
            rec("compensate 1/2 fake:s0", True, **record_detail("compensate", 0, "withdrawn"))]
    assert journal_from_records(comp, 2)[0] == StepState(do=Status.OK)
    # an intent to finish a step that may have run before a crash reuses its snapshot; that
    # intent's withdrawal keeps it (a new one would see what the step had already changed)
    crashed = [records[2], rec("step 2/2 fake:s1", True, **record_detail("do", 1, "intent")),
               rec("step 2/2 fake:s1", True, **record_detail("do", 1, "withdrawn", reason="store down"))]
    assert journal_from_records(crashed, 2)[1] == StepState(do=Status.STARTED)
    assert snapshot_of(crashed, 1) == {"v": 2}


# --- pattern schema ------------------------------------------------------------------------


class _Params(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    op: Literal["restart", "scale"] = "restart"


class _Proc:
    type: ClassVar[str] = "process"
    Params = _Params


class _Conf:
    type: ClassVar[str] = "config"
    Params = _Params


@pytest.fixture
def registry() -> Registry:
    reg = Registry()
    reg.register("actuator", "process", _Proc)
    reg.register("actuator", "config", _Conf)
    return reg


HEAD = "id: wf\nmatch: {cause: memory}\nprior_confidence: 0.5\nverify: {metric: up, min: 1}\n"


def _write(tmp_path: Path, action: str) -> Path:
    f = tmp_path / "wf.yaml"
    f.write_text(HEAD + action)
    return f


def test_a_pattern_with_steps_loads_as_a_workflow_whose_type_is_the_first_step(
    tmp_path: Path, registry: Registry
) -> None:
    f = _write(tmp_path, "action:\n  steps:\n    - {type: config, params: {op: scale}}\n"
                         "    - {name: bounce, type: process}\n")
    (p,) = load_patterns([f], registry)
    assert p.action is not None
    assert [(s.name, s.type, s.params) for s in p.action.steps] == [
        ("scale", "config", {"op": "scale"}), ("bounce", "process", {"op": "restart"})]
    assert p.action.type == "config" and p.action.params == {"op": "scale"}


def test_a_step_param_outside_its_actuators_schema_is_refused_with_file_line_and_field(
    tmp_path: Path, registry: Registry
) -> None:
    f = _write(tmp_path, "action:\n  steps:\n    - {type: config, params: {op: scale}}\n"
                         "    - type: process\n      params: {op: explode}\n")
    with pytest.raises(PatternError) as err:
        load_patterns([f], registry)
    text = str(err.value)
    assert "action.steps[1].params.op" in text and f"{f}:9" in text


@pytest.mark.parametrize(
    ("action", "field"),
    [
        ("action:\n  steps:\n    - {type: config}\n", "action.steps"),  # one step is not a workflow
        ("action:\n  steps:\n" + "    - {type: config}\n" * 11, "action.steps"),
        ("action:\n  type: config\n  steps:\n    - {type: config}\n    - {type: config}\n", "action"),
        ("action:\n  steps:\n    - {type: config}\n    - {type: nope}\n", "action.steps[1].type"),
        ("action:\n  steps:\n    - {type: config, extra: 1}\n    - {type: config}\n", "action.steps[0].extra"),
    ],
)
def test_bad_workflow_actions_are_refused_naming_the_field(
    tmp_path: Path, registry: Registry, action: str, field: str
) -> None:
    with pytest.raises(PatternError) as err:
        load_patterns([_write(tmp_path, action)], registry)
    assert field in str(err.value)


@pytest.mark.parametrize(("n", "said"), [(1, "its one step applied"), (2, "all 2 steps applied")])
def test_a_done_workflow_says_how_many_steps_it_applied_in_words(n: int, said: str) -> None:
    result = Driver(World(), steps=STEPS[:n]).go()
    assert (result.status, result.reason) == ("done", said)
