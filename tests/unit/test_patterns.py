from __future__ import annotations

import math
from pathlib import Path
from typing import Any, ClassVar, Literal

import pytest
from pydantic import BaseModel, ConfigDict, Field

from autonomic.analyze.thresholds import Thresholds
from autonomic.errors import PatternError, Problem
from autonomic.execute.docker_actuator import DockerActuator
from autonomic.execute.kubernetes_actuator import KubernetesActuator
from autonomic.execute.systemd_actuator import SystemdActuator
from autonomic.model import ActionSpec, FindingKind, VerifySpec
from autonomic.plan.patterns import check_patterns, load_patterns
from autonomic.registry import Registry

BUILTIN = Path(__file__).resolve().parents[2] / "src" / "autonomic" / "patterns"


class _Forbid(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ProcessParams(_Forbid):
    op: Literal["restart", "graceful_restart", "start", "stop"] = "restart"
    grace_s: float = Field(default=10, gt=0, le=600)


class ConfigParams(_Forbid):
    op: Literal["set", "scale", "revert_last"]
    key: str = ""
    value: Any = None
    factor: float | None = None
    min: float | None = None
    max: float | None = None
    integer: bool = True
    reload: Literal["signal", "restart", "none"] = "signal"


class FakeProcess:
    type: ClassVar[str] = "process"
    Params = ProcessParams


class FakeConfig:
    type: ClassVar[str] = "config"
    Params = ConfigParams


class ShellParams(_Forbid):
    runbook: str
    timeout_s: float = 30


class FakeShell:
    type: ClassVar[str] = "shell"
    Params = ShellParams


class FakeParams(_Forbid):
    level: int = 1


class Fake:
    type: ClassVar[str] = "fake"
    Params = FakeParams


@pytest.fixture
def registry() -> Registry:
    reg = Registry()
    for cls in (FakeProcess, FakeConfig, FakeShell, Fake):
        reg.register("actuator", cls.type, cls)
    return reg


@pytest.fixture
def builtin_registry(registry: Registry) -> Registry:
    """The fakes, and the real systemd, Docker and Kubernetes actuators, whose Params the built-in
    library's restarts through them are checked against (loading does no I/O)."""
    for real in (SystemdActuator, DockerActuator, KubernetesActuator):
        registry.register("actuator", real.type, real)
    return registry


GOOD = """\
id: good-one
description: a fine pattern
match: {cause: memory, kind: forecast}
action:
  type: fake
  params: {level: 2}
prior_confidence: 0.5
verify: {metric: memory_percent, max: 80}
"""


def write(tmp_path: Path, name: str, text: str) -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def problems_of(paths: list[Path], registry: Registry) -> list[Problem]:
    with pytest.raises(PatternError) as exc:
        load_patterns(paths, registry)
    assert exc.value.problems == check_patterns(paths, registry)
    return exc.value.problems


def _default_line(verify: VerifySpec | None) -> float | None:
    """The max a verification has for a service with the default thresholds."""
    assert verify is not None
    return verify.with_line(Thresholds().limit(verify.metric) or math.nan).max


def test_builtin_library_loads_against_actuator_schemas(builtin_registry: Registry) -> None:
    patterns = {p.id: p for p in load_patterns([BUILTIN], builtin_registry)}
    assert set(patterns) == {
        "process-down-restart",
        "memory-leak-graceful-restart",
        "pool-exhaustion-raise",
        "pool-exhaustion-restart",
        "error-spike-after-config-revert",
        "crash-loop-hand-over",
        "disk-fill-cleanup",
        "systemd-down-restart",
        "docker-down-restart",
        "kubernetes-down-rollout-restart",
        "systemd-memory-leak-restart",
        "docker-memory-leak-restart",
        "kubernetes-memory-leak-rollout-restart",
        "systemd-pool-exhaustion-restart",
        "docker-pool-exhaustion-restart",
        "kubernetes-pool-exhaustion-rollout-restart",
    }
    down = patterns["process-down-restart"]
    assert down.match.cause == "down" and down.match.kind == FindingKind.STATE
    assert down.action == ActionSpec(
        type="process", target="{service}", params={"op": "restart", "grace_s": 10}
    )
    assert (down.prior_confidence, down.rollback_safe) == (0.9, False)
    assert (down.verify.metric, down.verify.min, down.verify.window_s, down.verify.delay_s) == (
        "up",
        1,
        30,
        2,
    )

    mem = patterns["memory-leak-graceful-restart"]
    assert mem.action is not None and mem.action.params["op"] == "graceful_restart"
    assert (mem.verify.metric, mem.verify.threshold, _default_line(mem.verify)) == ("memory_percent", "max", 85)

    pool = patterns["pool-exhaustion-raise"]
    assert pool.action is not None and pool.action.type == "config"
    assert pool.action.params["factor"] == 1.2 and pool.action.params["max"] == 200
    assert pool.rollback_safe is True
    assert (pool.verify.metric, pool.verify.threshold, _default_line(pool.verify)) == ("pool_utilization", "max", 90)

    err = patterns["error-spike-after-config-revert"]
    assert err.match.after_change_s == 900 and err.match.kind == FindingKind.THRESHOLD
    assert err.action is not None and err.action.params["op"] == "revert_last"
    assert (err.prior_confidence, err.verify.threshold, _default_line(err.verify)) == (0.85, "max", 0.05)
    disk = patterns["disk-fill-cleanup"]
    assert (disk.match.cause, disk.match.kind) == ("disk", FindingKind.FORECAST)
    assert disk.action == ActionSpec(type="shell", target="{service}",
                                     params={"runbook": "disk-cleanup", "timeout_s": 300})
    assert disk.verify is not None and (disk.verify.metric, _default_line(disk.verify)) == ("disk_percent", 90)
    assert (disk.prior_confidence, disk.rollback_safe) == (0.7, False)
    loop = patterns["crash-loop-hand-over"]
    assert loop.action is None and loop.verify is None and loop.match.after_actions is not None
    assert loop.match.after_actions.patterns == ["process-down-restart", "systemd-down-restart", "docker-down-restart",
                                                 "kubernetes-down-rollout-restart"]
    _check_unit_restarts(patterns)
    for p in patterns.values():
        assert p.source.startswith(str(BUILTIN)) and p.source.endswith(".yaml:" + p.source.rsplit(":", 1)[1])


def _check_unit_restarts(patterns: dict[str, Any]) -> None:
    """The restarts through systemd, Docker and Kubernetes: one pattern per failure and actuator
    (each earns its own record and autonomy), as sure as the process one of the same failure but
    for a dead workload's rollout (the kubelet has restarted its containers already), never undone,
    a dead unit verified by its probe where the service has one, else by the unit's state the engine
    samples (``up``; a workload's ``rollout_complete``), a rollout restart watched once it is done."""
    restart = {"systemd": {"op": "restart", "mode": "replace", "wait_s": 30},
               "docker": {"op": "restart", "timeout_s": 10},
               "kubernetes": {"op": "rollout_restart"}}
    like = {"down": patterns["process-down-restart"], "memory-leak": patterns["memory-leak-graceful-restart"],
            "pool-exhaustion": patterns["pool-exhaustion-restart"]}
    for kind, params in restart.items():
        for failure, process in like.items():
            pid = f"{kind}-{failure}-{'rollout-' if kind == 'kubernetes' else ''}restart"
            p = patterns[pid]
            assert p.match == process.match
            assert p.action == ActionSpec(type=kind, target="{service}", params=params)
            assert p.rollback_safe is False
            k8s_down = (kind, failure) == ("kubernetes", "down")
            assert p.prior_confidence == (0.7 if k8s_down else process.prior_confidence)
            assert p.verify is not None and process.verify is not None
            if failure == "down":
                assert (p.verify.metric, p.verify.min, p.verify.max) == ("probe_ok", 1, None)
                fallback = "rollout_complete" if kind == "kubernetes" else "up"
                assert p.verify.fallback_metric == fallback
            else:
                assert (p.verify.metric, p.verify.threshold) == (process.verify.metric, "max")
            if kind == "kubernetes":  # the watch starts once the rollout is done, progressDeadlineSeconds at most
                assert (p.verify.wait_for, p.verify.delay_s) == ("rollout_complete", 600)
            else:  # the actuator waits for the unit or container: the watch starts once it can listen again
                assert (p.verify.wait_for, p.verify.delay_s) == (None, 10)


def test_single_and_list_files_load_with_source_lines(tmp_path: Path, registry: Registry) -> None:
    write(tmp_path, "a.yaml", GOOD)
    listing = "patterns:\n  - " + GOOD.replace("good-one", "second").replace("\n", "\n    ").rstrip() + "\n"
    listing += "  - id: escalate-only\n    match: {cause: disk}\n    prior_confidence: 0.3\n"
    listing += "    verify: {metric: disk_percent, max: 90}\n"
    write(tmp_path, "b.yml", listing)
    write(tmp_path, "notes.txt", "not a pattern")
    patterns = load_patterns([tmp_path], registry)
    assert [p.id for p in patterns] == ["good-one", "second", "escalate-only"]
    assert patterns[0].source == f"{tmp_path / 'a.yaml'}:1"
    assert patterns[1].source == f"{tmp_path / 'b.yml'}:2"
    assert patterns[2].source == f"{tmp_path / 'b.yml'}:10"
    assert patterns[0].action == ActionSpec(type="fake", target="{service}", params={"level": 2})
    assert patterns[2].action is None
    assert patterns[2].rollback_safe is False  # not assumed safe unless declared


def test_action_params_default_to_the_actuators_defaults(tmp_path: Path, registry: Registry) -> None:
    f = write(tmp_path, "a.yaml", GOOD.replace("  params: {level: 2}\n", "  params: null\n"))
    [p] = load_patterns([f], registry)
    assert p.action is not None and p.action.params == {"level": 1}


def test_yaml_syntax_error_has_file_and_line(tmp_path: Path, registry: Registry) -> None:
    f = write(tmp_path, "bad.yaml", "id: x\nmatch: {cause: memory\nprior_confidence: 1\n")
    [p] = problems_of([f], registry)
    assert p.file == str(f) and p.line is not None
    assert p.message.startswith("YAML syntax")


def test_schema_errors_name_field_and_line(tmp_path: Path, registry: Registry) -> None:
    text = GOOD.replace("id: good-one", "id: Bad_Id").replace(
        "prior_confidence: 0.5", "prior_confidence: 1.5"
    )
    text = text.replace("match: {cause: memory, kind: forecast}", "match: {cause: memory, kind: sometimes}")
    f = write(tmp_path, "a.yaml", text + "colour: blue\n")
    problems = {p.field: p for p in problems_of([f], registry)}
    assert set(problems) == {"id", "match.kind", "prior_confidence", "colour"}
    assert problems["id"].line == 1
    assert problems["match.kind"].line == 3
    assert problems["prior_confidence"].line == 7
    assert problems["colour"].line == 9
    # named as a field the pattern does not have, with the ones it has (none is near "colour")
    assert problems["colour"].message.startswith("unknown field 'colour' (known here: action, ")


def test_a_misspelt_pattern_field_is_named_with_the_field_meant(tmp_path: Path, registry: Registry) -> None:
    """Before, pydantic's "Extra inputs are not permitted", leaving the reader to find the typo."""
    f = write(tmp_path, "a.yaml", GOOD.replace("prior_confidence: 0.5", "prior_confidnce: 0.5"))
    problems = {p.field: p.message for p in problems_of([f], registry)}
    assert problems["prior_confidnce"] == "unknown field 'prior_confidnce'; did you mean 'prior_confidence'?"


def test_a_misspelt_action_param_is_named_with_the_param_meant(tmp_path: Path, registry: Registry) -> None:
    """A typo in an action's params (checked against its actuator's Params), in a single action
    and in a workflow's step alike, and in an op's name: before, "unknown field 'factr'" and
    nothing more, and for the op the allowed ones alone."""
    text = GOOD.replace("type: fake\n  params: {level: 2}", "type: config\n  params: {op: scale, factr: 1.2}")
    steps = GOOD.replace("id: good-one", "id: two-steps").replace(
        "type: fake\n  params: {level: 2}",
        "steps:\n    - {type: process, params: {op: restart, grace_sec: 5}}\n    - {type: fake, params: {levl: 3}}")
    a, b = write(tmp_path, "a.yaml", text), write(tmp_path, "b.yaml", steps)
    c = write(tmp_path, "c.yaml", GOOD.replace("id: good-one", "id: restart").replace(
        "type: fake\n  params: {level: 2}", "type: process\n  params: {op: graceful_restrat}"))
    problems = {(p.file, p.field): p.message for p in problems_of([a, b, c], registry)}
    assert problems == {
        (str(c), "action.params.op"): ("Input should be 'restart', 'graceful_restart', 'start' or 'stop'; "
                                       "did you mean 'graceful_restart'?"),
        (str(a), "action.params.factr"): "unknown field 'factr'; did you mean 'factor'?",
        (str(b), "action.steps[0].params.grace_sec"): "unknown field 'grace_sec'; did you mean 'grace_s'?",
        (str(b), "action.steps[1].params.levl"): "unknown field 'levl'; did you mean 'level'?",
    }


def test_a_misspelt_action_type_or_pattern_id_is_named_with_the_one_meant(tmp_path: Path, registry: Registry) -> None:
    """The known types are listed only when none is near (see the next test)."""
    write(tmp_path, "a.yaml", GOOD.replace("type: fake", "type: proces") + "then: [secnd]\n")
    write(tmp_path, "b.yaml", GOOD.replace("good-one", "second").replace(
        "match: {cause: memory, kind: forecast}",
        "match: {cause: memory, after_actions: {patterns: [god-one], count: 1, within_s: 60}}"))
    problems = {p.field: p.message for p in problems_of([tmp_path], registry)}
    assert problems == {
        "action.type": "unknown action type 'proces'; did you mean 'process'?",
        "then[0]": "no pattern has the id 'secnd'; did you mean 'second'?",
        "match.after_actions.patterns[0]": ("no pattern has the id 'god-one': its actions could never be counted; "
                                            "did you mean 'good-one'?"),
    }


def test_unknown_action_type_lists_known_types(tmp_path: Path, registry: Registry) -> None:
    f = write(tmp_path, "a.yaml", GOOD.replace("type: fake", "type: teleport"))
    [p] = problems_of([f], registry)
    assert (p.file, p.line, p.field) == (str(f), 5, "action.type")
    assert p.message == "unknown action type 'teleport' (known: config, fake, process, shell)"


def test_params_outside_schema_name_the_param(tmp_path: Path, registry: Registry) -> None:
    text = GOOD.replace("params: {level: 2}", "params:\n    level: high\n    colour: red")
    f = write(tmp_path, "a.yaml", text)
    problems = {p.field: p for p in problems_of([f], registry)}
    assert set(problems) == {"action.params.level", "action.params.colour"}
    assert problems["action.params.level"].line == 7
    assert problems["action.params.colour"].line == 8


def test_params_errors_in_list_files_carry_the_index(tmp_path: Path, registry: Registry) -> None:
    def item(pid: str, params: str) -> str:
        return (
            f"  - id: {pid}\n    match: {{cause: down}}\n    action: {{type: process, params: {params}}}\n"
            "    prior_confidence: 0.5\n    verify: {metric: up, min: 1}\n"
        )

    text = "patterns:\n" + item("a", "{}") + item("b", "{op: restart}") + item("c", "{grace_s: 9000}")
    f = write(tmp_path, "list.yaml", text)
    [p] = problems_of([f], registry)
    assert (p.field, p.line) == ("patterns[2].action.params.grace_s", 14)
    assert "less than or equal to 600" in p.message


def test_duplicate_ids_name_both_places(tmp_path: Path, registry: Registry) -> None:
    a = write(tmp_path, "a.yaml", GOOD)
    b = write(tmp_path, "b.yaml", "# again\n" + GOOD)
    [p] = problems_of([tmp_path], registry)
    assert (p.file, p.line, p.field) == (str(b), 2, "id")
    assert p.message == f"duplicate pattern id 'good-one' (also defined at {a}:1)"


def test_problems_from_all_files_are_collected_together(tmp_path: Path, registry: Registry) -> None:
    write(tmp_path, "1.yaml", "id: [unclosed\n")
    write(tmp_path, "2.yaml", GOOD.replace("type: fake", "type: nope"))
    write(tmp_path, "3.yaml", GOOD.replace("good-one", "three").replace("level: 2", "level: x"))
    write(tmp_path, "4.yaml", "")
    problems = problems_of([tmp_path, tmp_path / "missing.yaml"], registry)
    where = [(Path(p.file).name, p.field) for p in problems]
    assert where == [
        ("missing.yaml", ""),  # paths are checked before any file is read
        ("1.yaml", ""),
        ("2.yaml", "action.type"),
        ("3.yaml", "action.params.level"),
        ("4.yaml", ""),
    ]
    assert "no such pattern file" in problems[0].message
    assert problems[1].message.startswith("YAML syntax")
    assert "no pattern in file" in problems[4].message


def test_patterns_key_must_hold_a_list(tmp_path: Path, registry: Registry) -> None:
    f = write(tmp_path, "a.yaml", "patterns: {id: x}\nother: 1\n")
    problems = problems_of([f], registry)
    assert [(p.line, p.field) for p in problems] == [(2, "other"), (1, "patterns")]


def test_check_patterns_returns_nothing_for_a_good_library(builtin_registry: Registry) -> None:
    assert check_patterns([BUILTIN], builtin_registry) == []


def test_an_escalation_chain_loads_in_order(tmp_path: Path, registry: Registry) -> None:
    write(tmp_path, "a.yaml", GOOD + "then: [second]\n")
    write(tmp_path, "b.yaml", GOOD.replace("good-one", "second"))
    patterns = {p.id: p for p in load_patterns([tmp_path], registry)}
    assert patterns["good-one"].then == ["second"] and patterns["second"].then == []


def test_escalation_chain_problems_name_the_entry_and_line(tmp_path: Path, registry: Registry) -> None:
    chain = "then:\n  - nowhere\n  - good-one\n  - second\n  - second\n  - escalate-only\n"
    a = write(tmp_path, "a.yaml", GOOD + chain)
    write(tmp_path, "b.yaml", GOOD.replace("good-one", "second"))
    write(tmp_path, "c.yaml", "id: escalate-only\nmatch: {cause: disk}\nprior_confidence: 0.3\n"
                              "verify: {metric: disk_percent, max: 90}\n")
    problems = problems_of([tmp_path], registry)
    lines = GOOD.count("\n") + 2
    assert [(p.file, p.line, p.field) for p in problems] == [
        (str(a), lines, "then[0]"), (str(a), lines + 1, "then[1]"), (str(a), lines + 3, "then[3]"),
        (str(a), lines + 4, "then[4]")]
    assert [p.message for p in problems] == [
        "no pattern has the id 'nowhere'", "'good-one' is already in this escalation chain",
        "'second' is already in this escalation chain", "pattern 'escalate-only' has no action to try"]


@pytest.mark.parametrize(
    ("verify", "message"),
    [
        ("{metric: up}", "give min or max (or both): without a bound every fix would pass verification"),
        ("{metric: up, min: .nan}", "min must be a finite number"),
        ("{metric: error_rate, min: 0.5, max: 0.1}", "min (0.5) is above max (0.1): no sample could pass"),
        ("{metric: error_rate, min: threshold}", "min: threshold: a service's floors are its thresholds.minimums, "
                                                  "and 'error_rate' has a built-in maximum"),
        ("{metric: up, min: threshold}", "'up' has no such line"),
        ("{metric: pool_free, min: threshold, max: threshold}", "a metric has one line, a maximum or a floor"),
        ("{metric: up, max: threshold}", "a service has no maximum for 'up' to verify against"),
        ("{metric: availability, max: threshold}", "a service has no maximum for 'availability'"),
        ("{metric: up, min: 1, window_s: .inf}", "window_s must be a finite number of seconds"),
        ("{metric: up, min: 1, delay_s: .inf}", "delay_s must be a finite number of seconds"),
    ],
)
def test_a_verification_every_fix_would_pass_or_none_could_is_refused_naming_the_line(
    tmp_path: Path, registry: Registry, verify: str, message: str
) -> None:
    text = "id: unbounded\nmatch: {cause: down}\nprior_confidence: 0.5\nverify: " + verify + "\n"
    f = write(tmp_path, "a.yaml", text)
    [p] = problems_of([f], registry)
    assert (p.field, p.line) == ("verify", 4)
    assert message in p.message


def test_a_hand_over_pattern_needs_no_verify_but_a_pattern_with_an_action_does(
    tmp_path: Path, registry: Registry
) -> None:
    hand_over = write(tmp_path, "a.yaml", "id: page-me\nmatch: {cause: down}\nprior_confidence: 0.9\n")
    [p] = load_patterns([hand_over], registry)
    assert p.action is None and p.verify is None

    acting = write(tmp_path, "b.yaml", "id: acts\nmatch: {cause: down}\naction: {type: fake}\nprior_confidence: 0.5\n")
    [problem] = problems_of([acting], registry)
    assert (problem.field, problem.line) == ("verify", 1)
    assert "required with an action" in problem.message


def test_after_actions_naming_an_unknown_pattern_is_refused_with_its_line(tmp_path: Path, registry: Registry) -> None:
    text = ("id: loop\nmatch:\n  cause: down\n  after_actions:\n    patterns: [good-one, restrat]\n"
            "    count: 3\n    within_s: 600\nprior_confidence: 0.9\n")
    f = write(tmp_path, "loop.yaml", text)
    g = write(tmp_path, "good.yaml", GOOD)
    [p] = problems_of([f, g], registry)
    assert (p.field, p.line) == ("match.after_actions.patterns[1]", 5)
    assert "no pattern has the id 'restrat'" in p.message


def test_a_verification_bound_may_be_the_services_own_threshold(tmp_path: Path, registry: Registry) -> None:
    """``max: threshold``: the number is the service's own line for the metric, filled in when an
    action is prepared; the loaded pattern keeps the reference, not a number."""
    text = ("id: errors\nmatch: {cause: errors}\nprior_confidence: 0.5\n"
            "verify: {metric: error_rate, max: threshold, min: 0}\n")
    [p] = load_patterns([write(tmp_path, "a.yaml", text)], registry)
    assert p.verify is not None and (p.verify.max, p.verify.min, p.verify.threshold) == (None, 0.0, "max")
    assert p.verify.with_line(0.2).max == 0.2
    floor = ("id: pool\nmatch: {cause: pool}\nprior_confidence: 0.5\n"
             "verify: {metric: pool_free, min: threshold, max: 100}\n")
    [q] = load_patterns([write(tmp_path, "b.yaml", floor)], registry)
    assert q.verify is not None and (q.verify.max, q.verify.min, q.verify.threshold) == (100.0, None, "min")
    assert (q.verify.with_line(5.0).min, q.verify.with_line(5.0).max) == (5.0, 100.0)


@pytest.mark.parametrize(
    ("match", "field", "message"),
    [
        ("{cause: errors, after_change_s: -60}", "match.after_change_s", "-60 matches no incident"),
        ("{cause: errors, after_change_s: .nan}", "match.after_change_s", "nan matches no incident"),
        ("{cause: errors, after_change_s: 0}", "match.after_change_s", "0 matches no incident"),
        ("{cause: errors, symptoms: [{metric: error_rate, min: 0.5, max: 0.1}]}", "match.symptoms[0]",
         "min (0.5) is above max (0.1): no finding's value could meet both"),
        ("{cause: errors, symptoms: [{metric: error_rate, max: .nan}]}", "match.symptoms[0].max",
         "must be a number, not NaN"),
        ("{cause: ''}", "match.cause", "is empty: no incident has an empty cause"),
        ("{cause: errors, metric: ''}", "match.metric", "is empty"),
        ("{cause: errors, service_type: ''}", "match.service_type", "is empty"),
    ],
)
def test_a_match_no_incident_could_meet_is_refused_naming_the_field(
    tmp_path: Path, registry: Registry, match: str, field: str, message: str
) -> None:
    """A condition that can never hold (a change made a negative time ago, a value above 0.5 and
    below 0.1) used to load without a word: the pattern silently matched nothing, its author
    believing it in force. The other patterns of the library are still checked beside it."""
    f = write(tmp_path, "a.yaml", f"id: never\nmatch: {match}\nprior_confidence: 0.5\n")
    write(tmp_path, "good.yaml", GOOD)
    [p] = problems_of([tmp_path], registry)
    assert (p.file, p.line, p.field) == (str(f), 2, field)
    assert message in p.message


def test_after_actions_naming_a_hand_over_pattern_is_refused_it_never_acts(tmp_path: Path, registry: Registry) -> None:
    """A hand-over pattern (no action) never acts, so a crash loop counting its actions could never
    be met: refused, naming the entry, as an unknown id is."""
    text = ("id: loop\nmatch:\n  cause: down\n  after_actions:\n    patterns: [good-one, page-me]\n"
            "    count: 3\n    within_s: 600\nprior_confidence: 0.9\n")
    f = write(tmp_path, "loop.yaml", text)
    write(tmp_path, "good.yaml", GOOD)
    write(tmp_path, "page.yaml", "id: page-me\nmatch: {cause: down}\nprior_confidence: 0.9\n")
    [p] = problems_of([tmp_path], registry)
    assert (p.file, p.line, p.field) == (str(f), 5, "match.after_actions.patterns[1]")
    assert "pattern 'page-me' has no action" in p.message


def test_a_pattern_file_over_the_size_limit_is_refused_unread_and_the_others_still_checked(
    tmp_path: Path, registry: Registry
) -> None:
    """A huge file in a pattern folder (a manifest dump, say) used to be parsed whole: 7 MB took
    30 s, holding the engine's loop on a reload. It is refused before it is read, naming the file
    and its size; the other files are checked as ever."""
    big = tmp_path / "dump.yaml"
    big.write_text("patterns:\n" + "  - {id: filler, description: '" + "x" * (1 << 20) + "'}\n")
    write(tmp_path, "good.yaml", GOOD)
    write(tmp_path, "bad.yaml", GOOD.replace("good-one", "bad-one").replace("0.5", "2"))
    problems = problems_of([tmp_path], registry)
    assert [(p.file, p.field) for p in problems] == [(str(tmp_path / "bad.yaml"), "prior_confidence"),
                                                    (str(big), "")]
    assert "1.0 MiB, more than the 1 MiB a pattern file may hold: not read" in problems[1].message


@pytest.mark.parametrize(
    ("params", "field", "name"),
    [
        ("{op: delete_pod, pod: ..}", "action.params.pod", "'..'"),
        ("{op: delete_pod, pod: .}", "action.params.pod", "'.'"),
        ("{op: patch_configmap, configmap: ../app, key: k, value: v}", "action.params.configmap", "'../app'"),
        ("{op: patch_configmap, configmap: App_Config, key: k, value: v}", "action.params.configmap",
         "'App_Config'"),
    ],
)
def test_a_kubernetes_remedy_naming_an_object_kubernetes_could_not_name_is_refused_at_load(
    tmp_path: Path, builtin_registry: Registry, params: str, field: str, name: str
) -> None:
    """The pod or ConfigMap a remedy names is a segment of the API's URL path, and a dot segment
    there is resolved by the HTTP client before it is sent: ``pods/..`` reads (and the delete then
    aims at) the namespace itself, ``pods/.`` the list of every pod. Such a name loaded without a
    word and was found out, if at all, by the API at 3 a.m.; it is refused when patterns load,
    naming the field, as any name Kubernetes would refuse."""
    text = ("id: k8s-remedy\nmatch: {cause: down}\naction:\n  type: kubernetes\n  params: " + params + "\n"
            "prior_confidence: 0.5\nverify: {metric: up, min: 1}\n")
    [p] = problems_of([write(tmp_path, "a.yaml", text)], builtin_registry)
    assert (p.field, p.line) == (field, 5)
    assert p.message.startswith(f"{name} is not a Kubernetes object name")
