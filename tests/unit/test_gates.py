from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from pydantic import ValidationError

from autonomic.model import ActionSpec, Autonomy, Diagnosis, Verdict
from autonomic.plan import gates as g
from autonomic.plan.breaker import BreakerState, breaker_record
from autonomic.plan.gates import GATES, Counts, GateContext, breakers_after_approval, decide
from autonomic.plan.policy import MaintenanceWindow, PolicyConfig, active_window

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
        "rate_limit",
        "maintenance_window",
        "circuit_breaker",
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


# --- each gate -------------------------------------------------------------------------------


def test_has_action() -> None:
    assert result(g.has_action, ctx())[0]
    assert result(g.has_action, ctx(diagnosis=diagnosis(action=False))) == (
        False,
        False,
        "no known remedy; a person must look",
    )


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
    assert result(g.confidence, ctx(diagnosis=diagnosis(0.59))) == (
        False,
        False,
        "confidence 0.59 below threshold 0.60",
    )
    pol = policy(autonomy="auto", patterns={"pool-exhaustion-raise": {"confidence_threshold": 0.9}})
    assert not result(g.confidence, ctx(pol))[0]


def test_rate_limit_reason_has_the_numbers() -> None:
    passed, _, why = result(g.rate_limit, ctx(counts=Counts(3, 3, 1, 2)))
    assert passed
    assert why == (
        "3 of 20 config actions today, 3 of 60 config actions this week, "
        "1 of 10 actions on api today, 2 of 30 actions on api this week"
    )


@pytest.mark.parametrize(
    ("counts", "reached"),
    [
        (Counts(day_type=20), "20 of 20 config actions today"),
        (Counts(week_type=60), "60 of 60 config actions this week"),
        (Counts(day_service=10), "10 of 10 actions on api today"),
        (Counts(week_service=31), "31 of 30 actions on api this week"),
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
    new_type, new_global = breakers_after_approval(c)
    assert (new_type.state, new_type.trial_in_flight) == ("half_open", True)
    assert new_global == BreakerState()
    passed, _, why = result(g.circuit_breaker, replace(c, breaker_type=new_type))
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
