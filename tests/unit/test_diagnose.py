from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, ConfigDict

from autonomic.errors import PatternError
from autonomic.model import (
    ActionSpec,
    Finding,
    FindingKind,
    Incident,
    Pattern,
    PatternMatch,
    Severity,
    VerifySpec,
)
from autonomic.plan.diagnose import (
    DiagnoseContext,
    actuator_order,
    cannot_run,
    diagnose,
    record_factor,
    service_record,
)
from autonomic.plan.patterns import load_patterns
from autonomic.registry import Registry

BUILTIN = Path(__file__).resolve().parents[2] / "src" / "autonomic" / "patterns"
NOW = 1_700_000_000.0


class AnyParams(BaseModel):
    model_config = ConfigDict(extra="allow")


def _actuator(name: str) -> type:
    return type(name, (), {"type": name, "Params": AnyParams})


@pytest.fixture(scope="module")
def builtin() -> list[Pattern]:
    reg = Registry()
    for name in ("process", "config", "shell", "systemd", "docker", "kubernetes"):
        reg.register("actuator", name, _actuator(name))
    return load_patterns([BUILTIN], reg)


# a service autonomic runs itself, as the demo's: its process supervised, its config file and runbooks bound
PROCESS_WORLD = {"process": object(), "config": object(), "shell": object()}


def bound(patterns: list[Pattern], bindings: dict[str, object] = PROCESS_WORLD, **kw: Any) -> DiagnoseContext:
    """The context of a diagnosis of api bound to ``bindings`` (in that order), as the engine makes it:
    the patterns it cannot carry out passed over, equals ranked by the order of its bindings."""
    return DiagnoseContext(now=NOW, cannot_run=cannot_run(patterns, bindings, "api"),
                           actuator_order=actuator_order(bindings), **kw)


def incident(cause: str, kind: FindingKind, severity: Severity = Severity.WARNING) -> Incident:
    return Incident(
        service="api",
        cause=cause,
        severity=severity,
        kind=kind,
        opened_at=NOW - 10,
        updated_at=NOW,
        last_finding_at=NOW,
        summary=f"{cause} trouble",
    )


def finding(metric: str, kind: FindingKind, cause: str) -> Finding:
    return Finding(
        service="api",
        metric=metric,
        kind=kind,
        cause=cause,
        severity=Severity.WARNING,
        confidence=0.9,
        ts=NOW,
        summary="x",
    )


def pattern(pid: str, prior: float = 0.8, action: bool = True, **match: object) -> Pattern:
    return Pattern(
        id=pid,
        match=PatternMatch.model_validate(match),
        action=ActionSpec(type="process", target="{service}", params={"op": "restart"}) if action else None,
        prior_confidence=prior,
        verify=VerifySpec(metric="up", min=1),
    )


CASES = {
    "process-down-restart": ("down", FindingKind.STATE, "up"),
    "memory-leak-graceful-restart": ("memory", FindingKind.FORECAST, "memory_percent"),
    "pool-exhaustion-raise": ("pool", FindingKind.FORECAST, "pool_utilization"),
    "error-spike-after-config-revert": ("errors", FindingKind.THRESHOLD, "error_rate"),
    "disk-fill-cleanup": ("disk", FindingKind.FORECAST, "disk_percent"),
}
# the remedies a built-in pattern's incident also matches, ranked under it
SECOND = {"pool-exhaustion-raise": ["pool-exhaustion-restart"]}


@pytest.mark.parametrize("expected", sorted(CASES))
def test_each_builtin_pattern_matches_its_incident_and_no_other(
    builtin: list[Pattern], expected: str
) -> None:
    cause, kind, metric = CASES[expected]
    ctx = bound(builtin, last_change_at=NOW - 120)
    d = diagnose(incident(cause, kind), [finding(metric, kind, cause)], builtin, ctx)
    assert [c.pattern_id for c in d.candidates if c.pattern_id not in ctx.cannot_run] == [
        expected, *SECOND.get(expected, [])]
    assert d.pattern_id == expected
    chosen = next(p for p in builtin if p.id == expected)
    assert chosen.action is not None
    assert d.action == chosen.action.model_copy(update={"target": "api"})
    assert d.confidence >= 0.6  # the default policy threshold: a built-in match is actionable
    assert d.confidence <= chosen.prior_confidence
    assert d.rationale.startswith(expected) and "on api" in d.rationale


def test_a_pool_forecast_is_met_by_a_graceful_restart_when_the_raise_cannot_change_anything(
    builtin: list[Pattern],
) -> None:
    """The raise passed over (the engine found the pool at the raise's max): the restart that
    releases leaked connections is chosen, still over the default threshold, and the rationale
    says which remedy was passed over."""
    at_max = "api: pool.size is 200 in config.yaml already: scaling it by 1.2 (clamped to max 200) leaves it 200"
    ctx = bound(builtin)
    ctx = DiagnoseContext(now=NOW, cannot_run={**ctx.cannot_run, "pool-exhaustion-raise": at_max},
                          actuator_order=ctx.actuator_order)
    d = diagnose(incident("pool", FindingKind.FORECAST), [finding("pool_utilization", FindingKind.FORECAST, "pool")],
                 builtin, ctx)
    assert d.pattern_id == "pool-exhaustion-restart"
    assert d.action == ActionSpec(type="process", target="api", params={"op": "graceful_restart", "grace_s": 10})
    assert 0.6 <= d.confidence < next(c.confidence for c in d.candidates if c.pattern_id == "pool-exhaustion-raise")
    assert f"preferred to pool-exhaustion-raise (passed over here: {at_max})" in d.rationale


def test_the_rationale_names_the_runbook_a_shell_remedy_runs(builtin: list[Pattern]) -> None:
    d = diagnose(incident("disk", FindingKind.FORECAST), [finding("disk_percent", FindingKind.FORECAST, "disk")],
                 builtin, DiagnoseContext(now=NOW))
    assert "recommends shell runbook disk-cleanup on api" in d.rationale, d.rationale


def test_memory_forecast_reasons_and_action_target(builtin: list[Pattern]) -> None:
    inc = incident("memory", FindingKind.FORECAST)
    d = diagnose(inc, [], builtin, bound(builtin))
    c = d.candidates[0]
    assert c.pattern_id == d.pattern_id == "memory-leak-graceful-restart"
    assert c.reasons == ["cause memory == memory", "kind forecast matched"]
    assert d.action == ActionSpec(
        type="process", target="api", params={"op": "graceful_restart", "grace_s": 10}
    )
    assert d.incident_id == inc.id and d.ts == NOW


def test_kind_may_come_from_any_finding_not_only_the_incident(builtin: list[Pattern]) -> None:
    inc = incident("memory", FindingKind.THRESHOLD)
    assert diagnose(inc, [], builtin, DiagnoseContext(now=NOW)).pattern_id is None
    f = finding("memory_percent", FindingKind.FORECAST, "memory")
    assert diagnose(inc, [f], builtin, bound(builtin)).pattern_id == "memory-leak-graceful-restart"


def test_error_spike_needs_a_recent_config_change(builtin: list[Pattern]) -> None:
    inc = incident("errors", FindingKind.THRESHOLD)
    none = diagnose(inc, [], builtin, DiagnoseContext(now=NOW))
    assert none.pattern_id is None and none.action is None and none.confidence == 0
    assert none.rationale == "no known pattern matches cause errors (kind threshold)"

    stale = diagnose(inc, [], builtin, DiagnoseContext(now=NOW, last_change_at=NOW - 901))
    assert stale.pattern_id is None

    recent = diagnose(inc, [], builtin, DiagnoseContext(now=NOW, last_change_at=NOW - 300))
    assert recent.pattern_id == "error-spike-after-config-revert"
    assert "config changed 300 s ago, within 900 s" in recent.candidates[0].reasons


def test_more_specific_pattern_ranks_first_at_equal_prior() -> None:
    broad = pattern("broad", cause="memory")
    narrow = pattern("narrow", cause="memory", kind="forecast", metric="memory_percent")
    f = finding("memory_percent", FindingKind.FORECAST, "memory")
    d = diagnose(incident("memory", FindingKind.FORECAST), [f], [broad, narrow], DiagnoseContext(now=NOW))
    assert [c.pattern_id for c in d.candidates] == ["narrow", "broad"]
    assert d.candidates[0].confidence > d.candidates[1].confidence
    assert d.candidates[0].confidence == pytest.approx(0.8 * (0.8 + 0.2 * 3 / 6), abs=1e-4)
    assert d.candidates[1].confidence == pytest.approx(0.8 * (0.8 + 0.2 * 1 / 6), abs=1e-4)


def test_each_match_field_can_exclude_a_pattern() -> None:
    f = finding("rss_bytes", FindingKind.FORECAST, "memory")
    inc = incident("memory", FindingKind.FORECAST, Severity.WARNING)
    ctx = DiagnoseContext(now=NOW, service_type="worker")
    excluded = [
        pattern("cause", cause="cpu"),
        pattern("kind", kind="anomaly"),
        pattern("metric", metric="memory_percent"),
        pattern("severity", min_severity="critical"),
        pattern("stype", service_type="http-service"),
        pattern("change", after_change_s=60),
    ]
    included = [
        pattern("cause-ok", cause="memory"),
        pattern("metric-ok", metric="rss_bytes"),
        pattern("severity-ok", min_severity="warning"),
        pattern("stype-ok", service_type="worker"),
    ]
    d = diagnose(inc, [f], excluded + included, ctx)
    assert sorted(c.pattern_id for c in d.candidates) == sorted(p.id for p in included)
    reasons = {c.pattern_id: c.reasons for c in d.candidates}
    assert reasons["severity-ok"] == ["severity warning >= warning"]
    assert reasons["stype-ok"] == ["service type worker matched"]
    assert reasons["metric-ok"] == ["metric rss_bytes in findings"]


def test_failures_on_record_lower_confidence_and_can_change_the_choice() -> None:
    a = pattern("a", prior=0.8, cause="down")
    b = pattern("b", prior=0.7, cause="down")
    inc = incident("down", FindingKind.STATE)
    fresh = diagnose(inc, [], [a, b], DiagnoseContext(now=NOW))
    assert fresh.pattern_id == "a"
    burnt = diagnose(inc, [], [a, b], DiagnoseContext(now=NOW, record={"a": (0, 2), "b": (3, 0)}))
    assert burnt.pattern_id == "b"
    conf = {c.pattern_id: c.confidence for c in burnt.candidates}
    assert conf["a"] < fresh.candidates[0].confidence / 2
    assert conf["b"] == pytest.approx(fresh.candidates[1].confidence)  # successes never exceed the prior
    assert "record 0 succeeded, 2 failed: x0.50" in burnt.candidates[1].reasons


def test_record_factor_is_one_without_record_and_stays_in_unit_interval() -> None:
    assert record_factor(0, 0) == 1.0
    assert record_factor(10, 0) == 1.0
    assert record_factor(0, 1) == pytest.approx(2 / 3)
    assert record_factor(5, 5) == pytest.approx(1.0)
    assert 0 < record_factor(0, 1000) < 0.01


def test_matching_pattern_without_action_is_a_candidate_with_no_action() -> None:
    esc = pattern("disk-escalate", prior=0.9, action=False, cause="disk")
    d = diagnose(incident("disk", FindingKind.THRESHOLD), [], [esc], DiagnoseContext(now=NOW))
    assert d.pattern_id == "disk-escalate"
    assert d.action is None
    assert d.confidence > 0
    assert "no automatic remedy" in d.rationale
    assert d.candidates[0].reasons[-1] == "no automatic remedy: escalate to a person"


def test_no_match_gives_rationale_naming_cause_and_kind(builtin: list[Pattern]) -> None:
    d = diagnose(incident("disk", FindingKind.ANOMALY), [], builtin, DiagnoseContext(now=NOW))
    assert (d.pattern_id, d.action, d.confidence, d.candidates) == (None, None, 0.0, [])
    assert d.rationale == "no known pattern matches cause disk (kind anomaly)"


def _forecast(metric: str, value: float, slope: float, r2: float, eta: float) -> Finding:
    return finding(metric, FindingKind.FORECAST, "memory").model_copy(update={
        "value": value, "evidence": {"slope_per_s": slope, "r2": r2, "eta_s": eta}})


def test_symptoms_bound_finding_values_and_trend_signatures() -> None:
    leak = _forecast("memory_percent", 70.0, 0.05, 0.93, 300.0)
    errors = finding("error_rate", FindingKind.THRESHOLD, "errors").model_copy(update={"value": 0.3})
    inc = incident("memory", FindingKind.FORECAST)
    patterns = [
        pattern("fast-leak", symptoms=[{"metric": "memory_percent", "trend": "rising", "min_r2": 0.9,
                                        "eta_within_s": 600}]),
        pattern("slow-leak", symptoms=[{"metric": "memory_percent", "trend": "rising", "eta_within_s": 60}]),
        pattern("shrinking", symptoms=[{"metric": "memory_percent", "trend": "falling"}]),
        pattern("loose-fit", symptoms=[{"metric": "memory_percent", "min_r2": 0.95}]),
        pattern("many-errors", symptoms=[{"metric": "error_rate", "min": 0.2}, {"metric": "memory_percent",
                                                                              "max": 80}]),
        pattern("few-errors", symptoms=[{"metric": "error_rate", "max": 0.1}]),
        pattern("no-such-metric", symptoms=[{"metric": "latency_ms"}]),
    ]
    d = diagnose(inc, [leak, errors], patterns, DiagnoseContext(now=NOW))
    assert sorted(c.pattern_id for c in d.candidates) == ["fast-leak", "many-errors"]
    reasons = {c.pattern_id: c.reasons for c in d.candidates}
    assert reasons["fast-leak"] == ["symptom memory_percent rising r2 >= 0.9 breach within 600 s: memory_percent 70"]
    assert reasons["many-errors"] == ["symptom error_rate >= 0.2: error_rate 0.3",
                                      "symptom memory_percent <= 80: memory_percent 70"]
    # two symptoms count as two match fields: the more specific pattern ranks first
    assert [c.pattern_id for c in d.candidates] == ["many-errors", "fast-leak"]


def test_a_symptom_in_pattern_yaml_is_validated_and_names_the_field(tmp_path: Path) -> None:
    (tmp_path / "p.yaml").write_text(
        "id: bad\nmatch:\n  symptoms:\n    - {metric: memory_percent, trend: upward}\n"
        "prior_confidence: 0.5\nverify: {metric: up, min: 1}\n")
    with pytest.raises(PatternError) as err:
        load_patterns([tmp_path], Registry())
    (problem,) = err.value.problems
    assert problem.field == "match.symptoms[0].trend" and problem.line == 4


def test_a_patterns_record_elsewhere_counts_a_quarter_so_one_bad_service_does_not_sink_it_everywhere() -> None:
    """Three failures on a misconfigured service: there the record is three failures; on another
    service it is a quarter of that, so the pattern keeps most of its confidence where it works."""
    totals = {"restart": (1, 3), "other": (2, 2)}
    per_service = {"broken": {"restart": (0, 3)}, "web": {"restart": (1, 0), "other": (2, 2)}}
    assert service_record(totals, per_service["broken"]) == {"restart": (0.25, 3.0), "other": (0.5, 0.5)}
    assert service_record(totals, per_service["web"]) == {"restart": (1.0, 0.75), "other": (2.0, 2.0)}
    assert service_record(totals, {}) == {"restart": (0.25, 0.75), "other": (0.5, 0.5)}
    here, there = (record_factor(*service_record(totals, seen)["restart"]) for seen in (per_service["broken"], {}))
    assert here < 0.5 < 0.8 < there


def test_after_actions_matches_only_once_the_named_patterns_acted_often_enough_within_the_window() -> None:
    """A crash loop: down again after three restarts in half an hour; older restarts, other
    patterns' actions and too few restarts do not count."""
    loop = pattern("loop", prior=0.9, action=False, cause="down",
                   after_actions={"patterns": ["restart"], "count": 3, "within_s": 1800})
    inc = incident("down", FindingKind.STATE)

    def matches(recent: dict[str, list[float]]) -> bool:
        return bool(diagnose(inc, [], [loop], DiagnoseContext(now=NOW, recent_actions=recent)).candidates)

    assert matches({"restart": [NOW - 1700, NOW - 900, NOW - 10]})
    assert not matches({"restart": [NOW - 1900, NOW - 900, NOW - 10]})  # the first is outside the window
    assert not matches({"restart": [NOW - 900, NOW - 10], "other": [NOW - 5]})
    assert not matches({})
    [cand] = diagnose(inc, [], [loop], DiagnoseContext(now=NOW, recent_actions={"restart": [NOW - 3] * 4})).candidates
    assert "4 actions of restart in the last 1800 s (>= 3)" in cand.reasons


def test_actions_that_answered_a_death_while_a_dependency_was_down_are_named_but_not_counted() -> None:
    """Restarts after deaths while a dependency was down do not make a crash loop: one counted and
    three such do not match; three counted do, and the reason names the ones left out."""
    loop = pattern("loop", prior=0.9, action=False, cause="down",
                   after_actions={"patterns": ["restart"], "count": 3, "within_s": 1800})
    inc = incident("down", FindingKind.STATE)
    excused = {"restart": [NOW - 900, NOW - 600, NOW - 300, NOW - 1900]}
    one = DiagnoseContext(now=NOW, recent_actions={"restart": [NOW - 10]}, uncounted_actions=excused)
    assert diagnose(inc, [], [loop], one).candidates == []
    three = DiagnoseContext(now=NOW, recent_actions={"restart": [NOW - 30, NOW - 20, NOW - 10]},
                            uncounted_actions=excused)
    [cand] = diagnose(inc, [], [loop], three).candidates
    assert ("3 actions of restart in the last 1800 s (>= 3); 3 more answered a crash while a dependency was "
            "down, not counted") in cand.reasons


def test_the_shipped_crash_loop_pattern_outranks_the_restart_only_after_three_restarts(
    builtin: list[Pattern],
) -> None:
    inc, up = incident("down", FindingKind.STATE), finding("up", FindingKind.STATE, "down")
    two = bound(builtin, record={"process-down-restart": (50, 0)},
                recent_actions={"process-down-restart": [NOW - 600, NOW - 60]})
    assert diagnose(inc, [up], builtin, two).pattern_id == "process-down-restart"
    three = bound(builtin, record={"process-down-restart": (50, 0)},
                  recent_actions={"process-down-restart": [NOW - 1200, NOW - 600, NOW - 60]})
    d = diagnose(inc, [up], builtin, three)
    assert d.pattern_id == "crash-loop-hand-over" and d.action is None
    assert [c.pattern_id for c in d.candidates if c.pattern_id not in three.cannot_run] == [
        "crash-loop-hand-over", "process-down-restart"]


def test_the_best_candidate_the_service_can_carry_out_is_chosen_over_a_better_one_it_cannot() -> None:
    inc = incident("memory", FindingKind.FORECAST)
    broad = pattern("shipped", prior=0.9, cause="memory")
    mine = pattern("mine", prior=0.7, cause="memory")
    ctx = DiagnoseContext(now=NOW, cannot_run={"shipped": "api has no process actuator binding"})
    d = diagnose(inc, [], [broad, mine], ctx)
    assert [c.pattern_id for c in d.candidates] == ["shipped", "mine"]  # still ranked, and shown
    assert d.pattern_id == "mine" and d.action is not None and d.action.target == "api"
    assert "preferred to shipped (passed over here: api has no process actuator binding)" in d.rationale
    assert "passed over here: api has no process actuator binding" in d.candidates[0].reasons

    none_can = DiagnoseContext(now=NOW, cannot_run={"shipped": "no binding a", "mine": "no binding b"})
    d = diagnose(inc, [], [broad, mine], none_can)
    assert d.pattern_id == "shipped" and d.action is None
    assert "but no binding a, so there is nothing autonomic may do" in d.rationale


UNIT_REMEDIES = {  # (actuator bound, incident) -> the built-in pattern that remedies it
    ("systemd", "down"): "systemd-down-restart",
    ("docker", "down"): "docker-down-restart",
    ("kubernetes", "down"): "kubernetes-down-rollout-restart",
    ("systemd", "memory"): "systemd-memory-leak-restart",
    ("docker", "memory"): "docker-memory-leak-restart",
    ("kubernetes", "memory"): "kubernetes-memory-leak-rollout-restart",
    ("systemd", "pool"): "systemd-pool-exhaustion-restart",
    ("docker", "pool"): "docker-pool-exhaustion-restart",
    ("kubernetes", "pool"): "kubernetes-pool-exhaustion-rollout-restart",
}
UNIT_INCIDENTS = {"down": (FindingKind.STATE, "probe_ok"), "memory": (FindingKind.FORECAST, "memory_percent"),
                  "pool": (FindingKind.FORECAST, "pool_utilization")}


@pytest.mark.parametrize(("kind", "cause"), sorted(UNIT_REMEDIES))
def test_a_service_bound_only_to_systemd_docker_or_kubernetes_is_given_that_actuators_restart(
    builtin: list[Pattern], kind: str, cause: str,
) -> None:
    """A service run by systemd, Docker or Kubernetes (its only binding) that goes down, leaks
    memory or exhausts its pool is given the built-in restart through that actuator, over the
    default confidence threshold; the process and config remedies ranked above it are passed over,
    as the rationale says (before, there was none: the incident went to a person)."""
    finding_kind, metric = UNIT_INCIDENTS[cause]
    ctx = bound(builtin, {kind: object()})
    d = diagnose(incident(cause, finding_kind), [finding(metric, finding_kind, cause)], builtin, ctx)
    expected = UNIT_REMEDIES[(kind, cause)]
    assert d.pattern_id == expected, d.rationale
    chosen = next(p for p in builtin if p.id == expected)
    assert chosen.action is not None and chosen.action.type == kind
    assert d.action == chosen.action.model_copy(update={"target": "api"})
    assert d.confidence >= 0.6  # the default threshold: actionable at the autonomy the policy gives it
    assert chosen.rollback_safe is False and chosen.verify is not None
    passed = [c.pattern_id for c in d.candidates[: [c.pattern_id for c in d.candidates].index(expected)]]
    if passed:
        for pid in passed:
            assert f"preferred to {pid} (passed over here: {ctx.cannot_run[pid]})" in d.rationale
    assert "tied" not in d.rationale  # nothing else it binds matched


def test_a_kubernetes_workload_that_is_down_gets_a_rollout_restart_ranked_under_a_units_restart(
    builtin: list[Pattern],
) -> None:
    """The kubelet has already restarted a dead workload's containers in place: new pods fix less,
    so the rollout restart ranks under the unit and process restarts (a service bound to both
    is restarted through the other) yet stays over the default threshold on its own."""
    inc, f = incident("down", FindingKind.STATE), finding("probe_ok", FindingKind.STATE, "down")
    d = diagnose(inc, [f], builtin, bound(builtin, {"kubernetes": object(), "systemd": object()}))
    assert d.pattern_id == "systemd-down-restart" and "tied" not in d.rationale
    rollout = next(c for c in d.candidates if c.pattern_id == "kubernetes-down-rollout-restart")
    assert 0.6 <= rollout.confidence < d.confidence


@pytest.mark.parametrize("first", ["systemd", "process"])
def test_a_service_bound_to_process_and_systemd_is_restarted_through_the_binding_its_config_lists_first(
    builtin: list[Pattern], first: str,
) -> None:
    """process-down-restart and systemd-down-restart tie (same prior, same match): the order of the
    service's actuators decides, whatever the ids, and the rationale says so. Once the first one
    has failed there, its record parts them and the other is chosen, no tie left to explain."""
    other = "process" if first == "systemd" else "systemd"
    bindings = {first: object(), other: object()}
    inc, f = incident("down", FindingKind.STATE), finding("probe_ok", FindingKind.STATE, "down")
    d = diagnose(inc, [f], builtin, bound(builtin, bindings))
    assert d.pattern_id == f"{first}-down-restart"
    assert d.action is not None and d.action.type == first
    assert (f"(confidence 0.78; tied with {other}-down-restart, ranked first by the order of the service's "
            f"actuators (its {first} binding comes first))") in d.rationale, d.rationale

    failed = diagnose(inc, [f], builtin, bound(builtin, bindings, record={f"{first}-down-restart": (0, 1)}))
    assert failed.pattern_id == f"{other}-down-restart" and "tied" not in failed.rationale


def test_without_known_bindings_equal_remedies_are_ranked_by_id_and_the_rationale_says_so() -> None:
    inc = incident("down", FindingKind.STATE)
    d = diagnose(inc, [], [pattern("b-restart", cause="down"), pattern("a-restart", cause="down")],
                 DiagnoseContext(now=NOW))
    assert d.pattern_id == "a-restart"
    assert "tied with b-restart, ranked first by pattern id (alphabetical order)" in d.rationale


def test_a_hand_over_as_sure_as_a_remedy_goes_first_when_the_bindings_are_known() -> None:
    """At equal confidence and specificity a person looks rather than an automatic remedy being
    run (safety first); without known bindings the ids decide, as before."""
    inc = incident("down", FindingKind.STATE)
    person, fix = pattern("z-person", action=False, cause="down"), pattern("a-fix", cause="down")
    d = diagnose(inc, [], [fix, person], DiagnoseContext(now=NOW, actuator_order=("process",)))
    assert d.pattern_id == "z-person" and d.action is None
    assert "ranked first by a hand-over before an automatic remedy no surer" in d.rationale
    assert diagnose(inc, [], [fix, person], DiagnoseContext(now=NOW)).pattern_id == "a-fix"


@pytest.mark.parametrize("kind", ["systemd", "docker", "kubernetes"])
def test_the_crash_loop_hand_over_counts_the_restarts_of_a_unit_as_those_of_a_process(
    builtin: list[Pattern], kind: str,
) -> None:
    """A unit, container or workload down again after three restarts in half an hour is handed to a
    person, as a process is (before, only process-down-restart's restarts counted: a systemd unit in
    a crash loop was restarted for ever)."""
    restart = UNIT_REMEDIES[(kind, "down")]
    inc, f = incident("down", FindingKind.STATE), finding("probe_ok", FindingKind.STATE, "down")
    two = diagnose(inc, [f], builtin, bound(builtin, {kind: object()},
                                            recent_actions={restart: [NOW - 600, NOW - 60]}))
    assert two.pattern_id == restart
    three = diagnose(inc, [f], builtin, bound(builtin, {kind: object()},
                                              recent_actions={restart: [NOW - 1200, NOW - 600, NOW - 60]}))
    assert three.pattern_id == "crash-loop-hand-over" and three.action is None
    assert f"3 actions of {restart} in the last 1800 s (>= 3)" in three.candidates[0].reasons


def test_the_crash_loop_counts_restarts_through_several_bindings_together_naming_each_ones_share(
    builtin: list[Pattern],
) -> None:
    inc, f = incident("down", FindingKind.STATE), finding("probe_ok", FindingKind.STATE, "down")
    ctx = bound(builtin, {"process": object(), "systemd": object()},
                recent_actions={"systemd-down-restart": [NOW - 900, NOW - 60], "process-down-restart": [NOW - 300]})
    d = diagnose(inc, [f], builtin, ctx)
    assert d.pattern_id == "crash-loop-hand-over"
    assert ("3 actions of process-down-restart (1), systemd-down-restart (2) in the last 1800 s (>= 3)"
            in d.candidates[0].reasons), d.candidates[0].reasons


def test_when_no_restart_can_run_the_diagnosis_names_the_process_one_not_a_containers(
    builtin: list[Pattern],
) -> None:
    """api binds only a shell: no memory restart can run there. The diagnosis names the one through
    autonomic's own process actuator (with why it cannot run), not whichever of the tied restarts
    through Docker, Kubernetes or systemd sorts first by id."""
    d = diagnose(incident("memory", FindingKind.FORECAST), [], builtin, bound(builtin, {"shell": object()}))
    assert d.pattern_id == "memory-leak-graceful-restart" and d.action is None
    assert "but api has no process actuator binding" in d.rationale


def test_a_units_restarts_after_deaths_while_a_dependency_was_down_are_not_counted_toward_its_crash_loop(
    builtin: list[Pattern],
) -> None:
    """The engine's excuse (restarts answering a death while a dependency was down are kept apart,
    ``uncounted_actions``) holds for a unit's restarts as for a process's: one counted and three such
    is no crash loop, and the reason names those left out."""
    inc, f = incident("down", FindingKind.STATE), finding("probe_ok", FindingKind.STATE, "down")
    ctx = bound(builtin, {"systemd": object()}, recent_actions={"systemd-down-restart": [NOW - 60]},
                uncounted_actions={"systemd-down-restart": [NOW - 900, NOW - 600, NOW - 300]})
    d = diagnose(inc, [f], builtin, ctx)
    assert d.pattern_id == "systemd-down-restart"
    three = bound(builtin, {"systemd": object()},
                  recent_actions={"systemd-down-restart": [NOW - 1200, NOW - 600, NOW - 60]},
                  uncounted_actions={"systemd-down-restart": [NOW - 900]})
    loop = diagnose(inc, [f], builtin, three)
    assert loop.pattern_id == "crash-loop-hand-over"
    assert ("3 actions of systemd-down-restart in the last 1800 s (>= 3); 1 more answered a crash while a "
            "dependency was down, not counted") in loop.candidates[0].reasons


@pytest.mark.parametrize(("times", "said"), [(1, "1 action of restart in the last 1800 s (>= 1)"),
                                             (2, "2 actions of restart in the last 1800 s (>= 1)")])
def test_after_actions_counts_the_actions_in_words(times: int, said: str) -> None:
    loop = pattern("loop", prior=0.9, action=False, cause="down",
                   after_actions={"patterns": ["restart"], "count": 1, "within_s": 1800})
    recent = DiagnoseContext(now=NOW, recent_actions={"restart": [NOW - 10] * times})
    [cand] = diagnose(incident("down", FindingKind.STATE), [], [loop], recent).candidates
    assert said in cand.reasons
