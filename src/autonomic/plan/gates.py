"""Policy gates: may the engine act on a diagnosis now? Pure.

Like Alertmanager's notification pipeline, a decision runs a fixed list of same-shaped
stages, :data:`GATES`, each ``(GateContext) -> GateResult``. Every gate is evaluated and
kept (the decision shows all of them); then :func:`decide` folds them: any plain failure
denies, else any gate asking a person makes it ``needs_approval``, else it is approved.

The ``paused`` gate is the decision-time check only; the executor checks the kill switch
and pauses again as its very last step before acting.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from autonomic.model import Autonomy, Diagnosis, GateResult, Verdict
from autonomic.plan.breaker import BreakerState, breaker_allows
from autonomic.plan.policy import EffectivePolicy, PolicyConfig, active_window, window_started


@dataclass(frozen=True)
class Counts:
    """Actions already taken (not counting this one): of this action type today and this week,
    and on this service today and this week."""

    day_type: int = 0
    week_type: int = 0
    day_service: int = 0
    week_service: int = 0


@dataclass(frozen=True)
class GateContext:
    now: float
    diagnosis: Diagnosis
    effective: EffectivePolicy
    policy: PolicyConfig
    service: str
    action_type: str
    pattern_rollback_safe: bool
    paused_global: str | None  # reason, when the whole engine is paused
    paused_service: str | None  # reason, when this service is paused
    counts: Counts
    breaker_type: BreakerState
    breaker_global: BreakerState
    human_approved: bool = False


Gate = Callable[[GateContext], GateResult]


def _pass(gate: str, reason: str) -> GateResult:
    return GateResult(gate=gate, passed=True, reason=reason)


def _fail(gate: str, reason: str) -> GateResult:
    return GateResult(gate=gate, passed=False, reason=reason)


def _ask(gate: str, reason: str) -> GateResult:
    return GateResult(gate=gate, passed=False, reason=reason, needs_approval=True)


def has_action(ctx: GateContext) -> GateResult:
    action = ctx.diagnosis.action
    if action is None:
        return _fail("has_action", "no known remedy; a person must look")
    return _pass(
        "has_action", f"remedy {action.type} on {action.target} from pattern {ctx.diagnosis.pattern_id}"
    )


def policy_enabled(ctx: GateContext) -> GateResult:
    gate = "policy_enabled"
    if ctx.effective.enabled:
        return _pass(gate, f"{ctx.action_type} actions enabled for {ctx.service}")
    pol = ctx.policy
    pattern_id = ctx.diagnosis.pattern_id
    svc = pol.services.get(ctx.service)
    pat = pol.patterns.get(pattern_id) if pattern_id else None
    act = pol.actions.get(ctx.action_type)
    if not pol.enabled:
        why = "policy disabled: no automatic actions at all"
    elif svc is not None and svc.enabled is False:
        why = f"actions disabled for service {ctx.service}"
    elif pat is not None and pat.enabled is False:
        why = f"pattern {pattern_id} disabled"
    elif act is not None and act.enabled is False:
        why = f"action type {ctx.action_type} disabled"
    else:
        why = "disabled by policy"
    return _fail(gate, why)


def paused(ctx: GateContext) -> GateResult:
    if ctx.paused_global is not None:
        return _fail("paused", f"engine paused: {ctx.paused_global}")
    if ctx.paused_service is not None:
        return _fail("paused", f"service {ctx.service} paused: {ctx.paused_service}")
    return _pass("paused", "not paused")


def autonomy(ctx: GateContext) -> GateResult:
    level = ctx.effective.autonomy
    origin = f"(from {ctx.effective.autonomy_from})"
    if level == Autonomy.OBSERVE:
        return _fail("autonomy", f"autonomy observe: record only {origin}")
    if level == Autonomy.SUGGEST:
        return _fail("autonomy", f"autonomy suggest: suggested to a person {origin}")
    if level == Autonomy.APPROVE:
        if ctx.human_approved:
            return _pass("autonomy", f"autonomy approve: approved by a person {origin}")
        return _ask("autonomy", f"autonomy approve: waiting for a person to approve {origin}")
    return _pass("autonomy", f"autonomy auto: act, then tell {origin}")


def confidence(ctx: GateContext) -> GateResult:
    have, need = ctx.diagnosis.confidence, ctx.effective.confidence_threshold
    if have >= need:
        return _pass("confidence", f"confidence {have:.2f} >= threshold {need:.2f}")
    return _fail("confidence", f"confidence {have:.2f} below threshold {need:.2f}")


def rate_limit(ctx: GateContext) -> GateResult:
    lim, c, t, s = ctx.effective.rate_limits, ctx.counts, ctx.action_type, ctx.service
    checks = [
        (c.day_type, lim.per_day, f"{t} actions today"),
        (c.week_type, lim.per_week, f"{t} actions this week"),
        (c.day_service, lim.per_service_day, f"actions on {s} today"),
        (c.week_service, lim.per_service_week, f"actions on {s} this week"),
    ]
    summary = ", ".join(f"{n} of {limit} {what}" for n, limit, what in checks)
    reached = [f"{n} of {limit} {what}" for n, limit, what in checks if n >= limit]
    if reached:
        return _fail("rate_limit", f"limit reached: {', '.join(reached)}")
    return _pass("rate_limit", summary)


def _hhmm(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M UTC")


def maintenance_window(ctx: GateContext) -> GateResult:
    gate = "maintenance_window"
    w = active_window(ctx.policy.maintenance_windows, ctx.now)
    if w is None:
        return _pass(gate, "no maintenance window active")
    until = _hhmm(window_started(w, ctx.now) + w.duration_s)
    what = f"maintenance window {w.name} ({w.mode}) active until {until}"
    if w.mode == "block":
        return _fail(gate, f"{what}: no actions")
    if w.mode == "approve":
        if ctx.human_approved:
            return _pass(gate, f"{what}: approved by a person")
        return _ask(gate, f"{what}: a person must approve")
    if ctx.pattern_rollback_safe:
        return _pass(gate, f"{what}: pattern {ctx.diagnosis.pattern_id} is rollback-safe")
    return _fail(gate, f"{what}: only rollback-safe actions; pattern {ctx.diagnosis.pattern_id} is not")


def circuit_breaker(ctx: GateContext) -> GateResult:
    open_s = ctx.policy.breaker.open_s
    type_ok, type_why, _ = breaker_allows(ctx.breaker_type, ctx.now, open_s)
    global_ok, global_why, _ = breaker_allows(ctx.breaker_global, ctx.now, open_s)
    type_part = f"{ctx.action_type} breaker {type_why}"
    global_part = f"global breaker {global_why}"
    if type_ok and global_ok:
        return _pass("circuit_breaker", f"{type_part}; {global_part}")
    denied = [part for ok, part in ((type_ok, type_part), (global_ok, global_part)) if not ok]
    return _fail("circuit_breaker", "; ".join(denied))


GATES: tuple[Gate, ...] = (
    has_action,
    policy_enabled,
    paused,
    autonomy,
    confidence,
    rate_limit,
    maintenance_window,
    circuit_breaker,
)


def decide(ctx: GateContext) -> tuple[Verdict, list[GateResult]]:
    """Run every gate. Any plain failure: DENIED; else any asking a person: NEEDS_APPROVAL;
    else APPROVED."""
    results = [gate(ctx) for gate in GATES]
    if any(not r.passed and not r.needs_approval for r in results):
        return Verdict.DENIED, results
    if any(r.needs_approval for r in results):
        return Verdict.NEEDS_APPROVAL, results
    return Verdict.APPROVED, results


def breakers_after_approval(ctx: GateContext) -> tuple[BreakerState, BreakerState]:
    """The (type, global) breaker states to store once an APPROVED action is started: an open
    breaker past its open time turns half-open with its one trial now in flight."""
    open_s = ctx.policy.breaker.open_s
    return (
        breaker_allows(ctx.breaker_type, ctx.now, open_s)[2],
        breaker_allows(ctx.breaker_global, ctx.now, open_s)[2],
    )
