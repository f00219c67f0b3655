from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from pydantic import ValidationError

from autonomic.model import ActionSpec, Autonomy, Diagnosis, Verdict
from autonomic.plan import gates as g
from autonomic.plan.backoff import BackoffState, backoff_record
from autonomic.plan.breaker import BreakerState, breaker_record
from autonomic.plan.gates import (
    GATES,
    Counts,
    GateContext,
    Plan,
    breakers_after_approval,
    decide,
    group_allowance,
    plan_direction,
    resolve_conflicts,
)
from autonomic.plan.policy import BackoffConfig, MaintenanceWindow, PolicyConfig, active_window

T2AM = 1704074400.0  # 2024-01-01 02:00:00 UTC, a Monday


def policy(**kw: Any) -> PolicyConfig:
    return PolicyConfig.model_validate(kw)


def diagnosis(confidence: float = 0.8, action: bool = True) -> Diagnosis:
    return Diagnosis(
        incident_id="inc",
        ts=T2AM,
        pattern_id="pool-exhaustion-raise",
        action=ActionSpec(type="config", target="api", params={"op": "scale"}) if action else None,
        confidence=confidence,
    )


def ctx(pol: PolicyConfig | None = None, **kw: Any) -> GateContext:
    pol = pol or policy(autonomy="auto")
    base = GateContext(
        now=T2AM - 3 * 3600,
        diagnosis=diagnosis(),
        effective=pol.effective("config", "pool-exhaustion-raise", "api"),
        policy=pol,
        service="api",
        action_type="config",
        pattern_rollback_safe=True,
        paused_global=None,
        paused_service=None,
        counts=Counts(),
        breaker_type=BreakerState(),
        breaker_global=BreakerState(),
    )
    return replace(base, **kw)


def result(gate: g.Gate, c: GateContext) -> tuple[bool, bool, str]:
    r = gate(c)
    assert r.gate == gate.__name__
    return r.passed, r.needs_approval, r.reason


# --- the pipeline ----------------------------------------------------------------------------


def test_gates_run_in_the_documented_order() -> None:
    assert [f.__name__ for f in GATES] == [
        "has_action",
        "policy_enabled",
        "paused",
        "autonomy",
        "confidence",
        "root_cause",
        "rate_limit",
        "maintenance_window",
        "circuit_breaker",
        "in_flight",
        "conflict",
        "blast_radius",
        "backoff",
    ]


def test_all_gates_passing_approves_and_every_result_is_kept() -> None:
    verdict, results = decide(ctx())
    assert verdict == Verdict.APPROVED
    assert [r.gate for r in results] == [f.__name__ for f in GATES]
    assert all(r.passed for r in results)


def test_any_plain_failure_denies_even_with_approval_requests() -> None:
    pol = policy(autonomy="approve")
    verdict, results = decide(ctx(pol, diagnosis=diagnosis(confidence=0.1)))
    assert verdict == Verdict.DENIED
    failed = {r.gate: r for r in results if not r.passed}
    assert set(failed) == {"autonomy", "confidence"}
    assert failed["autonomy"].needs_approval and not failed["confidence"].needs_approval


def test_approval_requests_alone_need_approval_and_a_human_approval_approves() -> None:
    pol = policy(
        autonomy="approve",
        maintenance_windows=[{"name": "n", "cron": "0 2 * * *", "duration_s": 3600, "mode": "approve"}],
    )
    c = ctx(pol, now=T2AM + 60)
    verdict, results = decide(c)
    assert verdict == Verdict.NEEDS_APPROVAL
    assert sorted(r.gate for r in results if r.needs_approval) == ["autonomy", "maintenance_window"]
    assert decide(replace(c, human_approved=True))[0] == Verdict.APPROVED


def test_denied_when_there_is_no_action_even_if_everything_else_passes() -> None:
    verdict, results = decide(ctx(diagnosis=diagnosis(action=False)))
    assert verdict == Verdict.DENIED
    assert [r.gate for r in results if not r.passed] == ["has_action"]


def test_a_hand_over_decisions_gates_do_not_name_an_action_type_none() -> None:
    """A pattern that hands over (crash-loop-hand-over) has no action; the engine gives its
    context the action type "none". Before, `autonomic explain` then read "none actions enabled
    for api", "0 of 20 none actions in the last 24 h" and "none breaker closed"."""
    _, results = decide(ctx(diagnosis=diagnosis(action=False), action_type="none"))
    reasons = {r.gate: r.reason for r in results}
    assert not [r for r in reasons.values() if "none " in r], reasons
    assert reasons["policy_enabled"] == "no action, nothing to enable"
    assert reasons["rate_limit"] == "no action, nothing to count"
    assert reasons["circuit_breaker"].startswith("global breaker closed")


# --- each gate -------------------------------------------------------------------------------


def test_has_action() -> None:
    assert result(g.has_action, ctx())[0]
    no_match = diagnosis(action=False).model_copy(update={"pattern_id": None})
    assert result(g.has_action, ctx(diagnosis=no_match)) == (False, False, "no known remedy; a person must look")


def test_has_action_names_the_pattern_that_matched_but_hands_over() -> None:
    assert result(g.has_action, ctx(diagnosis=diagnosis(action=False))) == (
        False,
        False,
        "pattern pool-exhaustion-raise matches with no action that may run here; a person must look",
    )


def test_has_action_of_a_hand_over_tells_the_person_paged_why_from_the_diagnosis() -> None:
    """A crash loop handed over read only "matches with no action that may run here": the restarts
    counted were in `explain` alone, not in what pages the person."""
    handed = diagnosis(action=False).model_copy(update={
        "pattern_id": "crash-loop-hand-over",
        "rationale": "crash-loop-hand-over matches (3 restarts by process-down-restart in 1800 s) but has no "
                     "automatic remedy, so a person must look (confidence 0.95)."})
    assert result(g.has_action, ctx(diagnosis=handed)) == (
        False,
        False,
        "crash-loop-hand-over matches (3 restarts by process-down-restart in 1800 s) but has no automatic "
        "remedy, so a person must look",
    )
    ruled_out = diagnosis(action=False).model_copy(update={
        "rationale": "pool-exhaustion-raise matches (pool use 95) and recommends config scale, but api: no config "
                     "binding, so there is nothing autonomic may do (confidence 0.80)."})
    assert result(g.has_action, ctx(diagnosis=ruled_out))[2] == (
        "pool-exhaustion-raise matches (pool use 95) and recommends config scale, but api: no config binding, so "
        "there is nothing autonomic may do; a person must look")


@pytest.mark.parametrize(
    ("kw", "reason"),
    [
        ({"enabled": False}, "policy disabled: no automatic actions at all"),
        ({"services": {"api": {"enabled": False}}}, "actions disabled for service api"),
        (
            {"patterns": {"pool-exhaustion-raise": {"enabled": False}}},
            "pattern pool-exhaustion-raise disabled",
        ),
        ({"actions": {"config": {"enabled": False}}}, "action type config disabled"),
    ],
)
def test_policy_enabled_fails_naming_the_level_that_disabled(kw: dict[str, Any], reason: str) -> None:
    pol = policy(autonomy="auto", **kw)
    assert result(g.policy_enabled, ctx(pol)) == (False, False, reason)


def test_policy_enabled_passes_by_default_and_pattern_can_enable_a_disabled_type() -> None:
    assert result(g.policy_enabled, ctx())[0]
    pol = policy(
        actions={"config": {"enabled": False}}, patterns={"pool-exhaustion-raise": {"enabled": True}}
    )
    assert result(g.policy_enabled, ctx(pol))[0]


def test_a_multi_step_action_takes_the_most_restrictive_policy_of_its_steps_types() -> None:
    pol = policy(
        autonomy="auto",
        confidence_threshold=0.5,
        actions={"process": {"autonomy": "approve", "confidence_threshold": 0.8}, "shell": {"enabled": False}},
    )
    eff = pol.effective_for(["http", "process"], "drain-then-restart", "api")
    assert (eff.enabled, eff.autonomy, eff.autonomy_from, eff.confidence_threshold) == (
        True, Autonomy.APPROVE, "action type process", 0.8)
    assert not pol.effective_for(["http", "shell"], "drain-then-restart", "api").enabled
    assert pol.effective_for(["http"], None, "api") == pol.effective("http", None, "api")
    # a pattern's own setting is more specific than an action type's, for every step alike
    pat = policy(autonomy="observe", actions={"process": {"autonomy": "approve"}}, patterns={"p": {"autonomy": "auto"}})
    assert pat.effective_for(["http", "process"], "p", "api").autonomy == Autonomy.AUTO


def test_policy_enabled_names_the_disabled_type_of_a_later_step() -> None:
    pol = policy(autonomy="auto", actions={"process": {"enabled": False}})
    c = ctx(pol, effective=pol.effective_for(["config", "process"], "pool-exhaustion-raise", "api"),
            step_types=("config", "process"))
    assert result(g.policy_enabled, c) == (False, False, "action type process disabled (a step of this workflow)")
    assert decide(c)[0] == Verdict.DENIED


def test_paused_global_and_service() -> None:
    assert result(g.paused, ctx()) == (True, False, "not paused")
    assert result(g.paused, ctx(paused_global="deploy freeze")) == (
        False,
        False,
        "engine paused: deploy freeze",
    )
    assert result(g.paused, ctx(paused_service="db migration")) == (
        False,
        False,
        "service api paused: db migration",
    )


def test_autonomy_levels() -> None:
    def at(level: str, approved: bool = False) -> tuple[bool, bool, str]:
        return result(g.autonomy, ctx(policy(autonomy=level), human_approved=approved))

    assert at("observe") == (False, False, "autonomy observe: record only (from default)")
    assert at("suggest") == (False, False, "autonomy suggest: suggested to a person (from default)")
    assert at("approve")[:2] == (False, True)
    assert at("approve", approved=True)[:2] == (True, False)
    assert at("auto") == (True, False, "autonomy auto: act, then tell (from default)")


def test_confidence_threshold() -> None:
    assert result(g.confidence, ctx(diagnosis=diagnosis(0.6))) == (
        True,
        False,
        "confidence 0.60 >= threshold 0.60",
    )
    pol = policy(autonomy="auto", patterns={"pool-exhaustion-raise": {"confidence_threshold": 0.9}})
    assert not result(g.confidence, ctx(pol))[0]


def test_a_confidence_below_the_threshold_but_above_the_floor_asks_a_person_naming_the_record() -> None:
    """Below the threshold the engine does not act on its own; above the policy's floor (0.30 by
    default) it asks a person instead of denying, saying what lowered the confidence. Before, it
    was a plain failure: the decision was denied, and a pattern rolled back once on a service
    stayed under the threshold there for ever."""
    once = ctx(diagnosis=diagnosis(0.46), record_here=(0, 1))
    assert result(g.confidence, once) == (
        False, True, "confidence 0.46 below threshold 0.60 after 1 failed or rolled-back action of "
                     "pool-exhaustion-raise on api: a person may approve")
    assert decide(once)[0] == Verdict.NEEDS_APPROVAL
    approved = replace(once, human_approved=True)
    assert result(g.confidence, approved) == (
        True, False, "confidence 0.46 below threshold 0.60 after 1 failed or rolled-back action of "
                     "pool-exhaustion-raise on api: approved by a person")
    assert decide(approved)[0] == Verdict.APPROVED
    # a low prior with no record, and a record elsewhere, are named as such
    assert result(g.confidence, ctx(diagnosis=diagnosis(0.45)))[2] == (
        "confidence 0.45 below threshold 0.60 with no record of pool-exhaustion-raise on api: a person may approve")
    mixed = ctx(diagnosis=diagnosis(0.5), record_here=(2, 3), record_elsewhere=(1, 4))
    assert result(g.confidence, mixed)[2] == (
        "confidence 0.50 below threshold 0.60 after 3 failed or rolled-back and 2 verified actions of "
        "pool-exhaustion-raise on api (1 verified and 4 failed elsewhere, counted at a quarter): a person may approve")


def test_a_confidence_below_the_floor_is_denied_without_asking_even_a_person_who_approved() -> None:
    """A pattern that has failed again and again (here 5 of 5 on api: a record factor of 0.29)
    falls under the floor: a plain denial, no approval request, and no person's approval lifts it."""
    worn = ctx(diagnosis=diagnosis(0.8 * 0.29), record_here=(0, 5))
    passed, asks, why = result(g.confidence, worn)
    assert (passed, asks) == (False, False)
    assert why == ("confidence 0.23 below threshold 0.60 after 5 failed or rolled-back actions of "
                   "pool-exhaustion-raise on api; under the floor 0.30 a person is not asked either")
    assert decide(worn)[0] == Verdict.DENIED
    assert decide(replace(worn, human_approved=True))[0] == Verdict.DENIED
    assert decide(ctx(diagnosis=diagnosis(0.3)))[0] == Verdict.NEEDS_APPROVAL  # the floor itself asks


def test_a_floor_at_the_threshold_denies_below_it_as_before() -> None:
    pol = policy(autonomy="auto", confidence_floor=0.6)
    c = ctx(pol, diagnosis=diagnosis(0.59))
    assert result(g.confidence, c) == (
        False, False, "confidence 0.59 below threshold 0.60 with no record of pool-exhaustion-raise on api")
    # a pattern's own threshold under the default floor: nothing between them to ask about
    low = policy(autonomy="auto", patterns={"pool-exhaustion-raise": {"confidence_threshold": 0.2}})
    assert result(g.confidence, ctx(low, diagnosis=diagnosis(0.1)))[:2] == (False, False)
    assert result(g.confidence, ctx(low, diagnosis=diagnosis(0.25)))[0]


def test_the_confidence_floor_is_set_per_pattern_over_action_type_over_default() -> None:
    pol = policy(autonomy="auto", confidence_floor=0.2, actions={"config": {"confidence_floor": 0.4}},
                 patterns={"p": {"confidence_floor": 0.5}})
    assert PolicyConfig().effective("config", None, "api").confidence_floor == 0.3
    assert pol.effective("process", "q", "api").confidence_floor == 0.2
    assert pol.effective("config", "q", "api").confidence_floor == 0.4
    assert pol.effective("config", "p", "api").confidence_floor == 0.5
    # a workflow answers to the highest floor of its steps' types, as to the highest threshold
    assert pol.effective_for(["process", "config"], "q", "api").confidence_floor == 0.4
    c = ctx(pol, diagnosis=diagnosis(0.35), effective=pol.effective("config", "q", "api"))
    assert result(g.confidence, c)[:2] == (False, False)


def test_a_floor_of_one_asks_about_nothing_below_any_threshold_as_before_the_floor() -> None:
    """The way back to "below the threshold is a denial" everywhere, whatever threshold a pattern
    or action type sets: a floor at or above the threshold leaves no band to ask about."""
    pol = policy(autonomy="auto", confidence_floor=1, patterns={"pool-exhaustion-raise": {"confidence_threshold": 0.9}})
    for have in (0.0, 0.3, 0.59, 0.89):
        assert result(g.confidence, ctx(pol, diagnosis=diagnosis(have)))[:2] == (False, False)
    assert result(g.confidence, ctx(pol, diagnosis=diagnosis(0.9)))[0]


def test_rate_limit_reason_has_the_numbers() -> None:
    passed, _, why = result(g.rate_limit, ctx(counts=Counts(3, 3, 1, 2)))
    assert passed
    assert why == (
        "3 of 20 config actions in the last 24 h, 3 of 60 config actions in the last 7 days, "
        "1 of 10 actions on api in the last 24 h, 2 of 30 actions on api in the last 7 days"
    )


@pytest.mark.parametrize(
    ("counts", "reached"),
    [
        (Counts(day_type=20), "20 of 20 config actions in the last 24 h"),
        (Counts(week_type=60), "60 of 60 config actions in the last 7 days"),
        (Counts(day_service=10), "10 of 10 actions on api in the last 24 h"),
        (Counts(week_service=31), "31 of 30 actions on api in the last 7 days"),
    ],
)
def test_rate_limit_fails_at_each_limit(counts: Counts, reached: str) -> None:
    assert result(g.rate_limit, ctx(counts=counts)) == (False, False, f"limit reached: {reached}")


def test_rate_limit_per_action_type_override_keeps_other_defaults() -> None:
    pol = policy(autonomy="auto", actions={"config": {"rate_limits": {"per_day": 2}}})
    eff = pol.effective("config", None, "api")
    assert (eff.rate_limits.per_day, eff.rate_limits.per_week) == (2, 60)
    assert not result(g.rate_limit, ctx(pol, counts=Counts(day_type=2)))[0]
    assert pol.effective("process", None, "api").rate_limits.per_day == 20


def test_rate_limit_holds_a_workflow_to_each_later_step_types_own_limits() -> None:
    """A workflow (config, then process) is a process action too: the process limits and the
    process actions already taken count, not only its first step's type."""
    pol = policy(autonomy="auto", actions={"process": {"rate_limits": {"per_day": 2, "per_service_day": 1}}})
    c = ctx(pol, step_types=("config", "process"), step_counts={"process": (2, 2)}, counts=Counts(0, 0, 0, 0))
    passed, _, why = result(g.rate_limit, c)
    assert not passed and why == "limit reached: 2 of 2 process actions in the last 24 h"
    passed, _, why = result(g.rate_limit, replace(c, step_counts={"process": (1, 1)}))
    assert passed and "1 of 2 process actions in the last 24 h" in why
    assert "0 of 1 action on api in the last 24 h" in why
    # the strictest per-service limit of the types it runs
    passed, _, why = result(g.rate_limit, replace(c, step_counts={"process": (1, 1)}, counts=Counts(0, 0, 1, 1)))
    assert not passed and why == "limit reached: 1 of 1 action on api in the last 24 h"


def test_circuit_breaker_holds_a_workflow_whose_later_step_types_breaker_is_open() -> None:
    now = T2AM
    c = ctx(now=now, step_types=("config", "process"), step_breakers={"process": _opened(now - 60)})
    passed, _, why = result(g.circuit_breaker, c)
    assert not passed and why.startswith("process breaker open since") and "config" not in why
    after = breakers_after_approval(replace(c, step_breakers={"process": _opened(now - 3600)}), "d-trial")
    assert set(after) == {"config", "process", "global"}
    assert (after["process"].state, after["process"].trial_decision) == ("half_open", "d-trial")


def _window_policy(mode: str) -> PolicyConfig:
    return policy(
        autonomy="auto",
        maintenance_windows=[{"name": "nightly", "cron": "0 2 * * *", "duration_s": 3600, "mode": mode}],
    )


def test_maintenance_window_inactive_passes() -> None:
    assert result(g.maintenance_window, ctx(_window_policy("block"), now=T2AM - 1)) == (
        True,
        False,
        "no maintenance window active",
    )


def test_maintenance_window_block_denies() -> None:
    passed, ask, why = result(g.maintenance_window, ctx(_window_policy("block"), now=T2AM + 600))
    assert (passed, ask) == (False, False)
    assert why == "maintenance window nightly (block) active until 2024-01-01 03:00 UTC: no actions"


def test_maintenance_window_approve_asks_unless_approved() -> None:
    c = ctx(_window_policy("approve"), now=T2AM)
    assert result(g.maintenance_window, c)[:2] == (False, True)
    assert result(g.maintenance_window, replace(c, human_approved=True))[:2] == (True, False)


def test_maintenance_window_safe_only_allows_only_rollback_safe() -> None:
    c = ctx(_window_policy("safe_only"), now=T2AM + 30)
    assert result(g.maintenance_window, c)[0]
    passed, ask, why = result(g.maintenance_window, replace(c, pattern_rollback_safe=False))
    assert (passed, ask) == (False, False)
    assert why.endswith("only rollback-safe actions; pattern pool-exhaustion-raise is not")


def test_a_window_whose_next_fire_comes_before_it_ends_is_said_to_end_when_the_last_one_does() -> None:
    """The weekday window ``0 0 * * 1-5`` of a day fires again each midnight as it ends: active on
    Monday, it ends on Saturday 00:00, not Tuesday's (the reason named Tuesday, then Wednesday...);
    one longer than its period never ends, and the reason says the time is only a lower bound."""
    pol = policy(autonomy="auto", maintenance_windows=[
        {"name": "weekdays", "cron": "0 0 * * 1-5", "duration_s": 86400, "mode": "block"}])
    for now in (T2AM, T2AM + 3 * 86400 + 3600):  # Monday 02:00, Thursday 03:00
        passed, _, why = result(g.maintenance_window, ctx(pol, now=now))
        assert not passed
        assert why == "maintenance window weekdays (block) active until 2024-01-06 00:00 UTC: no actions"
    assert active_window(pol.maintenance_windows, T2AM + 5 * 86400 - 2 * 3600 - 1) is not None  # Fri 23:59:59
    assert active_window(pol.maintenance_windows, T2AM + 5 * 86400 - 2 * 3600) is None  # Saturday 00:00
    hourly = policy(autonomy="auto", maintenance_windows=[
        {"name": "always", "cron": "0 * * * *", "duration_s": 5400, "mode": "block"}])
    _, _, why = result(g.maintenance_window, ctx(hourly, now=T2AM + 1800))
    assert why == ("maintenance window always (block) active until at least 2024-01-05 07:30 UTC "
                   "(each fire comes before the last one ends): no actions")
    nightly = _window_policy("block")  # one that ends before it fires again: its own end
    assert result(g.maintenance_window, ctx(nightly, now=T2AM + 600))[2].startswith(
        "maintenance window nightly (block) active until 2024-01-01 03:00 UTC")


@pytest.mark.parametrize("tz", ["UTC", "Europe/Berlin", "America/New_York", "Australia/Lord_Howe"])
def test_a_maintenance_window_cron_is_utc_whatever_the_hosts_time_zone_and_dst_day(
    tz: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As documented (README, MaintenanceWindow): on the days Berlin's clocks go forward and back
    (2024-03-31, 2024-10-27) the nightly 02:00 window is 02:00-03:00 UTC, once, an hour long."""
    import time

    monkeypatch.setenv("TZ", tz)
    time.tzset()
    try:
        w = MaintenanceWindow(name="nightly", cron="0 2 * * *", duration_s=3600)
        for day in (1711850400.0, 1729994400.0):  # 2024-03-31 and 2024-10-27 02:00 UTC
            minutes = [m for m in range(-120, 240) if active_window([w], day + 60.0 * m) is not None]
            assert minutes == list(range(60))
    finally:
        monkeypatch.undo()
        time.tzset()


def test_circuit_breaker_closed_passes() -> None:
    passed, _, why = result(g.circuit_breaker, ctx())
    assert passed
    assert (
        why
        == "config breaker closed (0 consecutive failures); global breaker closed (0 consecutive failures)"
    )


def _opened(at: float) -> BreakerState:
    s = BreakerState()
    for _ in range(3):
        s = breaker_record(s, False, at, failures=3)
    return s


def test_circuit_breaker_names_which_breaker_is_open() -> None:
    now = T2AM
    passed, _, why = result(g.circuit_breaker, ctx(now=now, breaker_type=_opened(now - 60)))
    assert not passed
    assert why.startswith("config breaker open since 2024-01-01T01:59:00Z") and "half-open in 3540 s" in why
    assert "global" not in why
    passed, _, why = result(g.circuit_breaker, ctx(now=now, breaker_global=_opened(now - 60)))
    assert not passed and why.startswith("global breaker open since")


def test_circuit_breaker_half_open_allows_one_trial_then_denies() -> None:
    c = ctx(now=T2AM, breaker_type=_opened(T2AM - 3600))
    assert decide(c)[0] == Verdict.APPROVED
    after = breakers_after_approval(c, "d-trial")
    new_type, new_global = after["config"], after["global"]
    assert (new_type.state, new_type.trial_in_flight, new_type.trial_decision) == ("half_open", True, "d-trial")
    assert new_global == BreakerState()
    # the trial's action is in flight (on another target): a second action waits for its verdict
    passed, _, why = result(g.circuit_breaker, replace(c, breaker_type=new_type, in_flight_targets=1,
                                                       live_decisions=frozenset({"d-trial"})))
    assert not passed and "already in flight" in why


def test_a_half_open_breaker_whose_trial_ended_without_a_verdict_allows_another_trial() -> None:
    # the trial was cancelled (a pause, a stale decision), escalated as inconclusive, or never
    # prepared: nothing is in flight, so nothing will ever record its verdict
    stuck = BreakerState(state="half_open", consecutive_failures=3, opened_at=T2AM - 3600, trial_in_flight=True)
    c = ctx(now=T2AM, breaker_type=stuck, breaker_global=stuck)
    passed, _, why = result(g.circuit_breaker, c)
    assert passed and "ended without a verdict" in why
    assert decide(c)[0] == Verdict.APPROVED
    after = breakers_after_approval(c, "d-next")
    new_type, new_global = after["config"], after["global"]
    assert new_type == new_global == stuck.model_copy(update={"trial_decision": "d-next"})  # the new trial
    passed, _, why = result(g.circuit_breaker, replace(c, target_in_flight=True))
    assert not passed and "already in flight" in why


def test_a_half_open_breakers_named_trial_is_judged_by_its_own_action_not_by_others_in_flight() -> None:
    """In a busy fleet other actions are nearly always in flight: a trial that ended without a
    verdict must not hold the breaker until a quiet moment, and one still running must hold it
    even when nothing else is."""
    named = BreakerState(state="half_open", consecutive_failures=3, opened_at=T2AM - 3600, trial_in_flight=True,
                         trial_decision="d-trial")
    busy_elsewhere = ctx(now=T2AM, breaker_type=named, in_flight_targets=7, live_decisions=frozenset({"d-a", "d-b"}))
    passed, _, why = result(g.circuit_breaker, busy_elsewhere)
    assert passed and "ended without a verdict" in why
    trial_running = replace(busy_elsewhere, in_flight_targets=0, live_decisions=frozenset({"d-trial"}))
    passed, _, why = result(g.circuit_breaker, trial_running)
    assert not passed and "already in flight" in why


# --- policy ----------------------------------------------------------------------------------


def test_policy_defaults() -> None:
    eff = PolicyConfig().effective("process", None, "api")
    assert (eff.enabled, eff.autonomy, eff.confidence_threshold) == (True, Autonomy.OBSERVE, 0.6)
    assert eff.rate_limits.per_service_week == 30


def test_policy_precedence_pattern_over_action_type_over_default() -> None:
    pol = policy(
        autonomy="suggest",
        confidence_threshold=0.5,
        actions={"config": {"autonomy": "approve", "confidence_threshold": 0.7}},
        patterns={"p": {"autonomy": "auto", "confidence_threshold": 0.9}},
    )
    assert pol.effective("process", "q", "api").autonomy == Autonomy.SUGGEST
    assert pol.effective("config", "q", "api").autonomy == Autonomy.APPROVE
    assert pol.effective("config", "q", "api").confidence_threshold == 0.7
    eff = pol.effective("config", "p", "api")
    assert (eff.autonomy, eff.confidence_threshold, eff.autonomy_from) == (Autonomy.AUTO, 0.9, "pattern p")


def test_service_restriction_cannot_be_lifted_by_a_pattern() -> None:
    pol = policy(
        autonomy="observe",
        patterns={"memory-leak-graceful-restart": {"autonomy": "auto"}},
        services={"payments": {"autonomy": "approve"}, "batch": {"autonomy": "auto"}},
    )
    eff = pol.effective("process", "memory-leak-graceful-restart", "payments")
    assert (eff.autonomy, eff.autonomy_from) == (Autonomy.APPROVE, "service payments")
    # a service may restrict but never loosen: "batch: auto" does not lift the default observe
    assert pol.effective("process", None, "batch").autonomy == Autonomy.OBSERVE
    assert pol.effective("process", "memory-leak-graceful-restart", "batch").autonomy == Autonomy.AUTO
    c = ctx(pol, effective=eff, service="payments")
    assert decide(c)[0] == Verdict.NEEDS_APPROVAL


def test_service_enabled_true_does_not_reenable_a_disabled_type() -> None:
    pol = policy(actions={"config": {"enabled": False}}, services={"api": {"enabled": True}})
    assert not pol.effective("config", None, "api").enabled


@pytest.mark.parametrize(
    ("bad", "field"),
    [
        ({"autonomy": "yolo"}, "autonomy"),
        ({"confidence_threshold": 1.5}, "confidence_threshold"),
        ({"confidence_floor": -0.1}, "confidence_floor"),
        ({"patterns": {"p": {"confidence_floor": 2}}}, "patterns.p.confidence_floor"),
        ({"rate_limits": {"per_day": -1}}, "rate_limits.per_day"),
        ({"actions": {"config": {"autonomy": "sometimes"}}}, "actions.config.autonomy"),
        ({"services": {"api": {"confidence_threshold": 0.5}}}, "services.api.confidence_threshold"),
        (
            {"maintenance_windows": [{"name": "n", "cron": "0 25 * * *", "duration_s": 60}]},
            "maintenance_windows.0.cron",
        ),
        (
            {"maintenance_windows": [{"name": "n", "cron": "0 2 * * *", "duration_s": 60, "mode": "x"}]},
            "maintenance_windows.0.mode",
        ),
        ({"breaker": {"failures": 0}}, "breaker.failures"),
        ({"colour": "blue"}, "colour"),
    ],
)
def test_policy_validation_names_the_field(bad: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as exc:
        policy(**bad)
    locs = [".".join(str(x) for x in e["loc"]) for e in exc.value.errors()]
    assert locs == [field]


def test_bad_cron_message_is_clear() -> None:
    with pytest.raises(ValidationError, match="not a valid cron expression: 'every night'"):
        MaintenanceWindow(name="n", cron="every night", duration_s=60)


@pytest.mark.parametrize(("cron", "why"), [
    ("0 0 2 * * *", "has 6 fields, not five"),  # Quartz's 02:00 daily: croniter reads seconds last
    ("0 2 * * * 30", "has 6 fields, not five"),
    ("0 2 * * * * *", "has 7 fields, not five"),
    ("0 2 30 2 *", "never fires (no such date)"),  # 30 February
    ("0 2 31 4,6 *", "never fires (no such date)"),
])
def test_a_window_cron_croniter_would_misread_or_that_never_fires_is_refused_naming_the_field(
    cron: str, why: str
) -> None:
    """A six-field cron was read with seconds last ("0 0 2 * * *": every second of 00:00 on the
    2nd, not 02:00 daily), and one for a date that never comes made every decision raise
    (croniter finds no previous fire): both are refused when the config is read."""
    with pytest.raises(ValidationError) as exc:
        policy(maintenance_windows=[{"name": "n", "cron": cron, "duration_s": 60}])
    [err] = exc.value.errors()
    assert ".".join(str(x) for x in err["loc"]) == "maintenance_windows.0.cron"
    assert why in err["msg"] and repr(cron) in err["msg"]


def test_a_window_cron_by_its_alias_or_on_29_february_is_accepted() -> None:
    daily = MaintenanceWindow(name="d", cron="@daily", duration_s=60)
    assert active_window([daily], T2AM - 2 * 3600 + 30) == daily  # 00:00:30
    leap = MaintenanceWindow(name="leap", cron="0 2 29 2 *", duration_s=3600)
    assert active_window([leap], 1709172000.0 + 60) == leap  # 2024-02-29 02:01 UTC
    assert active_window([leap], 1709172000.0 + 365 * 86400) is None


def test_active_window_with_fixed_times() -> None:
    nightly = MaintenanceWindow(name="nightly", cron="0 2 * * *", duration_s=3600, mode="block")
    assert active_window([nightly], T2AM - 1) is None  # 01:59:59
    assert active_window([nightly], T2AM) == nightly  # exactly at the fire time
    assert active_window([nightly], T2AM + 3599) == nightly
    assert active_window([nightly], T2AM + 3600) is None  # 03:00, window over
    assert active_window([nightly], T2AM + 86400 + 10) == nightly  # next night


def test_active_window_prefers_the_most_restrictive_overlapping_window() -> None:
    safe = MaintenanceWindow(name="weekday", cron="0 0 * * 1-5", duration_s=86400, mode="safe_only")
    block = MaintenanceWindow(name="nightly", cron="0 2 * * *", duration_s=3600, mode="block")
    assert active_window([safe, block], T2AM + 60) == block
    assert active_window([safe, block], T2AM + 7200) == safe
    assert active_window([safe, block], T2AM + 5 * 86400) == block  # Saturday 02:00: only nightly
    assert active_window([safe, block], T2AM + 5 * 86400 + 10 * 3600) is None  # Saturday noon


# --- concurrency gates -----------------------------------------------------------------------


def test_in_flight_allows_one_action_per_target() -> None:
    assert result(g.in_flight, ctx()) == (True, False, "no action in flight on api")
    assert result(g.in_flight, ctx(target_in_flight=True)) == (
        False,
        False,
        "an action on api is already in flight; one at a time per target",
    )
    # a person's approval does not lift it
    assert decide(ctx(target_in_flight=True, human_approved=True))[0] == Verdict.DENIED


def test_blast_radius_caps_targets_in_flight() -> None:
    assert result(g.blast_radius, ctx(in_flight_targets=2)) == (
        True,
        False,
        "2 of at most 3 targets in flight",
    )
    assert result(g.blast_radius, ctx(in_flight_targets=3)) == (
        False,
        False,
        "limit reached: 3 of at most 3 targets in flight",
    )
    pol = policy(autonomy="auto", blast_radius={"max_in_flight": 1})
    assert not result(g.blast_radius, ctx(pol, in_flight_targets=1))[0]


def test_blast_radius_caps_a_percentage_of_the_service_group() -> None:
    c = ctx(group="web", group_size=4)
    assert result(g.blast_radius, replace(c, group_in_flight=1)) == (
        True,
        False,
        "0 of at most 3 targets in flight; 1 of 4 in group web in flight (at most 2, 50%)",
    )
    passed, _, why = result(g.blast_radius, replace(c, group_in_flight=2))
    assert not passed and why == "limit reached: 2 of 4 in group web in flight (at most 2, 50%)"
    # no group: only the global cap counts
    assert result(g.blast_radius, ctx(group=None, group_size=4, group_in_flight=4))[0]


def test_group_allowance_rounds_down_but_allows_at_least_one() -> None:
    assert [group_allowance(n, 50) for n in (1, 2, 3, 4, 5, 10)] == [1, 1, 1, 2, 2, 5]
    assert group_allowance(3, 100) == 3
    assert group_allowance(10, 33) == 3


def test_blast_radius_config_is_validated() -> None:
    with pytest.raises(ValidationError) as exc:
        policy(blast_radius={"max_group_percent": 150})
    assert [e["loc"] for e in exc.value.errors()] == [("blast_radius", "max_group_percent")]


def test_backoff_gate_waits_after_failed_attempts_on_the_target() -> None:
    cfg = BackoffConfig()
    now = T2AM - 3 * 3600
    s = BackoffState()
    for _ in range(2):
        s = backoff_record(s, False, now - 5, cfg)
    passed, ask, why = result(g.backoff, ctx(backoff=s))
    assert (passed, ask) == (False, False)
    assert why == "api: 2 failed attempts in a row: backing off 20 s, next attempt in 15 s"
    assert result(g.backoff, ctx(backoff=s, now=now + 15))[0]
    assert result(g.backoff, ctx())[2] == "api: no recent failed attempts"


def test_backoff_is_waived_by_a_persons_approval() -> None:
    s = backoff_record(BackoffState(), False, T2AM - 3 * 3600, BackoffConfig())
    passed, _, why = result(g.backoff, ctx(backoff=s, human_approved=True))
    assert passed and why.endswith("waived: approved by a person")


def _plan(pid: str, direction: int, ts: float, priority: int = 0, target: str = "api") -> Plan:
    return Plan(id=pid, target=target, action_type="config", direction=direction, ts=ts, priority=priority)


@pytest.mark.parametrize(
    ("params", "direction"),
    [
        ({"op": "scale", "factor": 1.2}, 1),
        ({"op": "scale", "factor": 0.5}, -1),
        ({"op": "scale", "delta": 2}, 1),
        ({"op": "scale", "delta": -1}, -1),
        ({"op": "scale_up"}, 1),
        ({"op": "scale_down"}, -1),
        ({"op": "stop"}, -1),
        ({"op": "restart"}, 0),
        ({"op": "scale", "factor": 1}, 0),
        ({}, 0),
    ],
)
def test_plan_direction_from_params(params: dict[str, Any], direction: int) -> None:
    assert plan_direction(params) == direction


def test_resolve_conflicts_higher_priority_wins() -> None:
    up = _plan("up000000", 1, ts=10, priority=5)
    down = _plan("down0000", -1, ts=20)
    winner, losers = resolve_conflicts([down, up])
    assert winner is up
    assert len(losers) == 1 and losers[0][0] is down
    assert losers[0][1] == "conflicts with config up on api from up000000: priority 0 below 5"


def test_resolve_conflicts_same_priority_the_more_recent_wins() -> None:
    up = _plan("up000000", 1, ts=T2AM)
    down = _plan("down0000", -1, ts=T2AM + 30)
    winner, losers = resolve_conflicts([up, down])
    assert winner is down
    assert losers == [
        (
            up,
            "conflicts with config down on api from down0000: same priority 0, older "
            "(2024-01-01 02:00:00 UTC before 2024-01-01 02:00:30 UTC)",
        )
    ]


def test_resolve_conflicts_keeps_plans_that_do_not_conflict_with_the_winner() -> None:
    restart = _plan("restart0", 0, ts=1, priority=9)
    up = _plan("up000000", 1, ts=2, priority=1)
    down = _plan("down0000", -1, ts=3)
    up2 = _plan("up2_0000", 1, ts=4)
    winner, losers = resolve_conflicts([down, up, restart, up2])
    assert winner is restart
    # up (priority 1) outranks down; up2 goes the same way as up, so it is kept too
    assert [p for p, _ in losers] == [down]


def test_resolve_conflicts_rejects_mixed_targets_and_nothing() -> None:
    with pytest.raises(ValueError, match="more than one target: api, db"):
        resolve_conflicts([_plan("a", 1, 0), _plan("b", -1, 0, target="db")])
    with pytest.raises(ValueError, match="at least one plan"):
        resolve_conflicts([])


def _scaling(factor: float, ts: float) -> Diagnosis:
    return Diagnosis(
        incident_id="inc-mine",
        ts=ts,
        pattern_id="pool-exhaustion-raise",
        action=ActionSpec(type="config", target="api", params={"op": "scale", "factor": factor}),
        confidence=0.8,
    )


def test_conflict_gate_loser_is_denied_naming_the_winner() -> None:
    rival = _plan("rival000", -1, ts=T2AM, priority=1)
    c = ctx(diagnosis=_scaling(1.2, T2AM + 60), competing_plans=(rival,))
    passed, ask, why = result(g.conflict, c)
    assert (passed, ask) == (False, False)
    assert why == "lost: conflicts with config down on api from rival000: priority 0 below 1"
    assert decide(c)[0] == Verdict.DENIED


def test_conflict_gate_winner_passes_and_names_what_it_beat() -> None:
    rival = _plan("rival000", -1, ts=T2AM)
    c = ctx(diagnosis=_scaling(1.2, T2AM + 60), competing_plans=(rival,))
    passed, _, why = result(g.conflict, c)
    assert passed and why == "kept over conflicting plans for api: config down on api from rival000"
    # same-direction and other-target plans are no conflict
    same = (_plan("same0000", 1, ts=T2AM + 99, priority=7), _plan("other000", -1, T2AM + 99, 9, "db"))
    assert result(g.conflict, ctx(diagnosis=_scaling(1.2, T2AM), competing_plans=same)) == (
        True,
        False,
        "no conflicting plan for api",
    )


def test_conflict_gate_uses_the_patterns_priority() -> None:
    rival = _plan("rival000", -1, ts=T2AM + 120, priority=1)
    c = ctx(diagnosis=_scaling(1.2, T2AM), competing_plans=(rival,), priority=2)
    assert result(g.conflict, c)[0]
    assert not result(g.conflict, replace(c, priority=1))[0]  # same priority: the rival is newer


def test_new_gates_default_to_nothing_in_flight_so_old_contexts_approve() -> None:
    c = ctx()
    assert (c.target_in_flight, c.in_flight_targets, c.group, c.backoff, c.competing_plans) == (
        False,
        0,
        None,
        BackoffState(),
        (),
    )
    assert decide(c)[0] == Verdict.APPROVED


def test_maintenance_window_modes_cover_change_freezes() -> None:
    # a change freeze is a window in block mode; all three modes decide as documented
    verdicts = {}
    for mode in ("block", "approve", "safe_only"):
        verdicts[mode] = decide(ctx(_window_policy(mode), now=T2AM + 60, pattern_rollback_safe=False))[0]
    assert verdicts == {
        "block": Verdict.DENIED,
        "approve": Verdict.NEEDS_APPROVAL,
        "safe_only": Verdict.DENIED,
    }


def test_shadow_mode_denies_with_a_last_gate_saying_what_it_would_have_done() -> None:
    c = ctx(policy(autonomy="auto", shadow=True))
    verdict, results = decide(c)
    assert verdict == Verdict.DENIED
    assert results[-1].gate == "shadow" and not results[-1].passed
    assert "would have run config on api" in results[-1].reason
    assert g.shadow_verdict(c, verdict, results) == Verdict.APPROVED
    # every ordinary gate was still run and kept
    assert {r.gate for r in results} >= {"autonomy", "confidence", "rate_limit", "circuit_breaker"}


def test_shadow_mode_records_a_denial_the_other_gates_would_have_given() -> None:
    c = ctx(policy(autonomy="auto", shadow=True), paused_global="incident review")
    verdict, results = decide(c)
    assert verdict == Verdict.DENIED
    assert "would not have acted either" in results[-1].reason
    assert g.shadow_verdict(c, verdict, results) == Verdict.DENIED


def test_a_service_can_leave_shadow_mode_while_the_rest_stays_in_it() -> None:
    pol = policy(autonomy="auto", shadow=True, services={"api": {"shadow": False}})
    verdict, results = decide(ctx(pol, effective=pol.effective("config", "pool-exhaustion-raise", "api")))
    assert verdict == Verdict.APPROVED and "shadow" not in {r.gate for r in results}
    assert pol.effective("config", "pool-exhaustion-raise", "web").shadow


def test_observe_records_that_every_other_gate_would_have_let_it_act() -> None:
    c = ctx(policy(autonomy="observe"))
    verdict, results = decide(c)
    assert verdict == Verdict.DENIED
    assert g.shadow_verdict(c, verdict, results) == Verdict.APPROVED


def test_no_shadow_verdict_when_the_decision_acts_or_a_plain_gate_denies_at_auto() -> None:
    c = ctx()
    verdict, results = decide(c)
    assert verdict == Verdict.APPROVED and g.shadow_verdict(c, verdict, results) is None
    c = ctx(paused_global="stop")
    verdict, results = decide(c)
    assert verdict == Verdict.DENIED and g.shadow_verdict(c, verdict, results) is None


def test_root_cause_gate_holds_back_an_action_on_an_impacted_service() -> None:
    impacted = diagnosis().model_copy(update={"impacted_by": ["db"], "root_causes": ["db"]})
    verdict, results = decide(ctx(diagnosis=impacted))
    gate = {r.gate: r for r in results}["root_cause"]
    assert verdict == Verdict.DENIED and not gate.passed and "impacted by db" in gate.reason
    own = diagnosis().model_copy(update={"root_causes": ["api"]})
    assert {r.gate: r for r in decide(ctx(diagnosis=own))[1]}["root_cause"].passed
    assert {r.gate: r for r in decide(ctx())[1]}["root_cause"].reason == "no dependency explains it"


def test_a_gates_reason_is_said_once_with_its_gate_named_only_where_the_reason_does_not() -> None:
    """The engine's "not acting (...)" line read "autonomy: autonomy observe: record only" and
    "confidence: confidence 0.00 below threshold 0.60"."""
    from autonomic.model import GateResult

    assert GateResult(gate="confidence", passed=False, reason="confidence 0.00 below threshold 0.60").said() == (
        "confidence 0.00 below threshold 0.60")
    assert GateResult(gate="autonomy", passed=False, reason="autonomy observe: record only").said() == (
        "autonomy observe: record only")
    assert GateResult(gate="rate_limit", passed=False, reason="limit reached: 3/day").said() == (
        "rate_limit: limit reached: 3/day")
    assert GateResult(gate="root_cause", passed=False, reason="root cause analysis names db").said() == (
        "root cause analysis names db")


@pytest.mark.parametrize(("limit", "said"), [(1, "0 of 1 action on api in the last 24 h"),
                                             (2, "0 of 2 actions on api in the last 24 h")])
def test_rate_limit_names_the_limit_with_its_noun_in_the_singular_at_one(limit: int, said: str) -> None:
    pol = policy(autonomy="auto", actions={"config": {"rate_limits": {"per_service_day": limit}}})
    passed, _, why = result(g.rate_limit, ctx(pol, counts=Counts(0, 0, 0, 0)))
    assert passed and said in why.split(", ")


@pytest.mark.parametrize(("most", "said"), [(1, "0 of at most 1 target in flight"),
                                            (2, "0 of at most 2 targets in flight")])
def test_blast_radius_names_its_cap_in_the_singular_at_one(most: int, said: str) -> None:
    pol = policy(autonomy="auto", blast_radius={"max_in_flight": most})
    assert result(g.blast_radius, ctx(pol, in_flight_targets=0)) == (True, False, said)


def test_without_room_says_what_the_other_gates_say_only_when_the_blast_radius_alone_says_no() -> None:
    """The blast radius's "no room now" is not a judgement of the remedy: alone, the remedy waits
    its turn (the others approve) or is asked of a person now, the blast radius's result then
    read as passed saying it waits its turn once approved; beside any other plain "no" (another
    gate, shadow mode's), the denial stands."""
    from autonomic.model import GateResult

    ok, full = GateResult(gate="in_flight", passed=True, reason="free"), GateResult(
        gate="blast_radius", passed=False, reason="limit reached: 3 of at most 3 targets in flight")
    ask = GateResult(gate="autonomy", passed=False, reason="approve", needs_approval=True)
    assert g.without_room(Verdict.DENIED, [ok, full]) == (Verdict.APPROVED, [ok, full])
    verdict, asked = g.without_room(Verdict.DENIED, [ask, full]) or (None, [])
    assert verdict == Verdict.NEEDS_APPROVAL and asked[0] == ask and asked[1].passed
    assert asked[1].reason == ("no room now (limit reached: 3 of at most 3 targets in flight): once approved, "
                               "it waits its turn")
    for other in (GateResult(gate="rate_limit", passed=False, reason="limit reached"),
                  GateResult(gate="shadow", passed=False, reason="shadow mode: would have run")):
        assert g.without_room(Verdict.DENIED, [ok, full, other]) is None
    assert g.without_room(Verdict.APPROVED, [ok]) is None
