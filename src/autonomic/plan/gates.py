"""Policy gates: may the engine act on a diagnosis now? Pure.

Like Alertmanager's notification pipeline, a decision runs a fixed list of same-shaped
stages, :data:`GATES`, each ``(GateContext) -> GateResult``. Every gate is evaluated and
kept (the decision shows all of them); then :func:`decide` folds them: any plain failure
denies, else any gate asking a person makes it ``needs_approval``, else it is approved.

Three gates ask a person rather than deny in some cases: ``autonomy`` at ``approve``,
``maintenance_window`` in an ``approve`` window, and ``confidence`` below the policy's
threshold but at or above its floor (the person's approval lets a pattern whose record fell,
say after one unlucky rollback, run again and earn its record back; below the floor, a pattern
that keeps failing, it is a plain denial). A person's approval passes each asking gate, and
every other gate is evaluated again as for any decision.

The ``paused`` gate is the decision-time check only (global and per service); the executor
checks the kill switch and pauses again as its very last step before acting.

The concurrency gates read counts the engine takes from the store: ``in_flight`` (one action
in flight per target), ``conflict`` (opposing plans for one target, see
:func:`resolve_conflicts`), ``blast_radius`` (at most N targets in flight, at most P% of a
service group) and ``backoff`` (per-target exponential backoff, ``plan/backoff.py``). The new
context fields all default to "nothing in flight, no competing plan, no failures".
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from autonomic.model import Autonomy, Diagnosis, GateResult, Verdict
from autonomic.plan.backoff import BackoffState, backoff_allows
from autonomic.plan.breaker import BreakerState, breaker_allows
from autonomic.plan.policy import BlastRadiusConfig, EffectivePolicy, PolicyConfig, active_window, window_ends
from autonomic.printable import counted


@dataclass(frozen=True)
class Counts:
    """Actions already taken (not counting this one): of this action type in the last 24 hours and
    7 days, and on this service likewise (rolling windows, not calendar days)."""

    day_type: int = 0
    week_type: int = 0
    day_service: int = 0
    week_service: int = 0


_UP_OPS = frozenset({"scale_up", "up", "increase", "raise", "grow", "start", "expand"})
_DOWN_OPS = frozenset({"scale_down", "down", "decrease", "lower", "shrink", "stop", "reduce"})


def plan_direction(params: Mapping[str, Any]) -> int:
    """+1 when an action's parameters grow its target (a positive ``delta``, a ``factor`` above
    1, an op such as ``scale_up`` or ``start``), -1 when they shrink it, 0 when neither."""
    delta, factor = params.get("delta"), params.get("factor")
    if isinstance(delta, int | float) and not isinstance(delta, bool) and delta != 0:
        return 1 if delta > 0 else -1
    if isinstance(factor, int | float) and not isinstance(factor, bool) and factor != 1:
        return 1 if factor > 1 else -1
    op = str(params.get("op", "")).lower()
    if op in _UP_OPS:
        return 1
    if op in _DOWN_OPS:
        return -1
    return 0


@dataclass(frozen=True)
class Plan:
    """An intended action on a target, as the conflict gate compares them. ``id`` names it for
    people (usually its incident id); ``priority`` comes from its pattern (default 0)."""

    id: str
    target: str
    action_type: str
    direction: int  # +1 grows the target, -1 shrinks it, 0 neither (see plan_direction)
    ts: float
    priority: int = 0
    pattern_id: str | None = None

    def describe(self) -> str:
        arrow = {1: "up", -1: "down"}.get(self.direction, "neutral")
        pattern = f" (pattern {self.pattern_id})" if self.pattern_id else ""
        return f"{self.action_type} {arrow} on {self.target} from {self.id[:8]}{pattern}"


def conflicts(a: Plan, b: Plan) -> bool:
    """Two plans conflict when they act on the same target in opposite directions."""
    return a.target == b.target and a.direction * b.direction < 0


def resolve_conflicts(plans: Sequence[Plan]) -> tuple[Plan, list[tuple[Plan, str]]]:
    """Settle opposing plans for one target: the winning plan, and every plan that loses, with
    the reason naming the plan it lost to.

    Plans are ranked by priority (higher first), then recency (later ``ts`` first), then their
    order in ``plans``. Going down the ranking, a plan that conflicts with (acts in the opposite
    direction of) a plan already kept loses to the first such plan; otherwise it is kept. The
    winner is the top-ranked plan; kept plans other than it do not conflict with it and may go
    ahead one at a time (see the in_flight gate). Raises ValueError for no plans or plans for
    more than one target."""
    if not plans:
        raise ValueError("resolve_conflicts needs at least one plan")
    targets = sorted({p.target for p in plans})
    if len(targets) > 1:
        raise ValueError(f"plans for more than one target: {', '.join(targets)}")
    ranked = sorted(enumerate(plans), key=lambda ip: (-ip[1].priority, -ip[1].ts, ip[0]))
    kept: list[Plan] = []
    losers: list[tuple[Plan, str]] = []
    for _, p in ranked:
        beater = next((k for k in kept if conflicts(k, p)), None)
        if beater is None:
            kept.append(p)
            continue
        if p.priority != beater.priority:
            why = f"priority {p.priority} below {beater.priority}"
        elif p.ts != beater.ts:
            why = f"same priority {p.priority}, older ({_hhmmss(p.ts)} before {_hhmmss(beater.ts)})"
        else:
            why = f"same priority {p.priority} and time, planned after it"
        losers.append((p, f"conflicts with {beater.describe()}: {why}"))
    return kept[0], losers


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
    # concurrency: counts of *other* actions, not counting this one
    target_in_flight: bool = False  # an action on this target has not finished
    in_flight_targets: int = 0  # distinct targets with an action in flight
    group: str | None = None  # the service's group label
    group_size: int = 0  # services in that group (this one included)
    group_in_flight: int = 0  # of those, how many have an action in flight
    backoff: BackoffState = field(default_factory=BackoffState)  # this target's failed attempts
    priority: int = 0  # this plan's priority (from its pattern)
    competing_plans: tuple[Plan, ...] = ()  # other undecided or running plans for this target
    step_types: tuple[str, ...] = ()  # a multi-step action's steps' types (the first is action_type)
    # for each step type other than action_type: its actions in the last 24 h and 7 days (every action
    # that runs a step of that type), and its breaker
    step_counts: Mapping[str, tuple[int, int]] = field(default_factory=dict)
    step_breakers: Mapping[str, BreakerState] = field(default_factory=dict)
    # decisions whose action has not finished: a half-open breaker's trial is alive while its
    # decision is among them (None: not read; then any action in flight counts as the trial)
    live_decisions: frozenset[str] | None = None
    # the diagnosed pattern's measured record, (successes, failures): on this service, and on
    # every other (which the diagnosis counts at a quarter), for the confidence gate's reason
    record_here: tuple[int, int] = (0, 0)
    record_elsewhere: tuple[int, int] = (0, 0)


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
        if ctx.diagnosis.pattern_id is not None:  # a hand-over pattern, or an action this service has no binding for
            # the diagnosis says why (a crash loop's restarts counted, what ruled the remedy out here):
            # the person paged reads it in the notification, not only in `explain`
            # (less its match confidence: no confidence is judged where nothing may run)
            why = ctx.diagnosis.rationale.strip().rstrip(".").split(" (confidence ")[0]
            if not why:
                return _fail("has_action", f"pattern {ctx.diagnosis.pattern_id} matches with no action that may "
                                           "run here; a person must look")
            return _fail("has_action", why if "a person must look" in why else f"{why}; a person must look")
        return _fail("has_action", "no known remedy; a person must look")
    return _pass(
        "has_action", f"remedy {action.type} on {action.target} from pattern {ctx.diagnosis.pattern_id}"
    )


def policy_enabled(ctx: GateContext) -> GateResult:
    gate = "policy_enabled"
    if ctx.effective.enabled:
        if ctx.diagnosis.action is None:  # a hand-over: its action type reads "none"
            return _pass(gate, "no action, nothing to enable")
        return _pass(gate, f"{ctx.action_type} actions enabled for {ctx.service}")
    pol = ctx.policy
    pattern_id = ctx.diagnosis.pattern_id
    svc = pol.services.get(ctx.service)
    pat = pol.patterns.get(pattern_id) if pattern_id else None
    types = list(dict.fromkeys((ctx.action_type, *ctx.step_types)))
    off = [t for t in types if (act := pol.actions.get(t)) is not None and act.enabled is False]
    if not pol.enabled:
        why = "policy disabled: no automatic actions at all"
    elif svc is not None and svc.enabled is False:
        why = f"actions disabled for service {ctx.service}"
    elif pat is not None and pat.enabled is False:
        why = f"pattern {pattern_id} disabled"
    elif off and off[0] == ctx.action_type:
        why = f"action type {ctx.action_type} disabled"
    elif off:
        why = f"action type {', '.join(off)} disabled (a step of this workflow)"
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
    """At or above the threshold: pass. Below it but at or above the policy's floor: ask a
    person (pass once one approved), so a pattern whose record one unlucky failure lowered is not
    denied for ever: an approved action's verified outcome enters its record. Below the floor
    (or when the floor is at or above the threshold): a plain failure. The reason says what
    lowered the confidence: the pattern's record on this service (and elsewhere)."""
    have, need, floor = ctx.diagnosis.confidence, ctx.effective.confidence_threshold, ctx.effective.confidence_floor
    if have >= need:
        return _pass("confidence", f"confidence {have:.2f} >= threshold {need:.2f}")
    below = f"confidence {have:.2f} below threshold {need:.2f}{_record_said(ctx)}"
    if have < floor or floor >= need:
        if floor >= need:
            return _fail("confidence", below)
        return _fail("confidence", f"{below}; under the floor {floor:.2f} a person is not asked either")
    if ctx.human_approved:
        return _pass("confidence", f"{below}: approved by a person")
    return _ask("confidence", f"{below}: a person may approve")


def _record_said(ctx: GateContext) -> str:
    """`` after 1 failed or rolled-back action of p on api`` and the like: the diagnosed
    pattern's measured record, as the confidence gate names it (empty with no pattern)."""
    pattern = ctx.diagnosis.pattern_id
    if pattern is None:
        return ""
    (s, f), (s_else, f_else) = ctx.record_here, ctx.record_elsewhere
    of = f"of {pattern} on {ctx.service}"
    if not (s or f):
        said = f" with no record {of}"
    elif not f:
        said = f" with {counted(s, 'verified action')} and no failure {of}"
    elif not s:
        said = f" after {counted(f, 'failed or rolled-back action')} {of}"
    else:
        said = f" after {f} failed or rolled-back and {counted(s, 'verified action')} {of}"
    if s_else or f_else:
        said += f" ({s_else} verified and {f_else} failed elsewhere, counted at a quarter)"
    return said


def root_cause(ctx: GateContext) -> GateResult:
    d = ctx.diagnosis
    if d.impacted_by:
        return _fail("root_cause", f"{ctx.service} is impacted by {', '.join(d.impacted_by)} (a dependency whose "
                                   "anomaly began no later): the fix belongs there, not here")
    if d.root_causes:
        return _pass("root_cause", f"root cause analysis names {', '.join(d.root_causes)}")
    return _pass("root_cause", "no dependency explains it")


def rate_limit(ctx: GateContext) -> GateResult:
    """Every type the action runs within its own limits (a workflow's later steps' types under
    theirs: a workflow that restarts a process is a process action), and the service within the
    strictest of those types' per-service limits."""
    if ctx.diagnosis.action is None:
        return _pass("rate_limit", "no action, nothing to count")
    lim, c, t, s = ctx.effective.rate_limits, ctx.counts, ctx.action_type, ctx.service
    per_type = [(t, lim, c.day_type, c.week_type)]
    for step, (day, week) in ctx.step_counts.items():
        step_lim = ctx.policy.effective(step, ctx.diagnosis.pattern_id, s).rate_limits
        per_type.append((step, step_lim, day, week))
    # rolling windows, not calendar days (README "Time and clocks"): "today" would have a person
    # wait for midnight, or expect a reset then that does not come
    day_said, week_said = "in the last 24 h", "in the last 7 days"
    checks = [check for name, limits, day, week in per_type for check in (
        (day, limits.per_day, f"{name} action", day_said),
        (week, limits.per_week, f"{name} action", week_said))]
    checks += [
        (c.day_service, min(limits.per_service_day for _, limits, _, _ in per_type), "action", f"on {s} {day_said}"),
        (c.week_service, min(limits.per_service_week for _, limits, _, _ in per_type), "action",
         f"on {s} {week_said}"),
    ]
    # "0 of 1 restart action in the last 24 h": the noun goes with the limit it is counted against
    said = [(n >= limit, f"{n} of {counted(limit, what)} {when}") for n, limit, what, when in checks]
    summary = ", ".join(text for _, text in said)
    reached = [text for full, text in said if full]
    if reached:
        return _fail("rate_limit", f"limit reached: {', '.join(reached)}")
    return _pass("rate_limit", summary)


def _hhmm(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M UTC")


def _hhmmss(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def maintenance_window(ctx: GateContext) -> GateResult:
    gate = "maintenance_window"
    w = active_window(ctx.policy.maintenance_windows, ctx.now)
    if w is None:
        return _pass(gate, "no maintenance window active")
    end, exact = window_ends(w, ctx.now)
    until = _hhmm(end) if exact else f"at least {_hhmm(end)} (each fire comes before the last one ends)"
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


def _trial_alive(ctx: GateContext, breaker: BreakerState) -> bool:
    """Whether a half-open breaker's trial action is still in flight: its decision's action has
    not finished. A breaker stored before trials were named (no ``trial_decision``), or a context
    without ``live_decisions``: while any action (on this target or another) is in flight."""
    if breaker.trial_decision is not None and ctx.live_decisions is not None:
        return breaker.trial_decision in ctx.live_decisions
    return ctx.target_in_flight or ctx.in_flight_targets > 0


def _breakers(ctx: GateContext) -> dict[str, BreakerState]:
    """Every breaker this action answers to, by scope: its type's, each later step type's, global
    (only global without an action: a hand-over has no type of its own)."""
    if ctx.diagnosis.action is None:
        return {"global": ctx.breaker_global}
    return {ctx.action_type: ctx.breaker_type, **ctx.step_breakers, "global": ctx.breaker_global}


def circuit_breaker(ctx: GateContext) -> GateResult:
    """The breaker of every type the action runs (a workflow's steps too) and the global one."""
    open_s = ctx.policy.breaker.open_s
    parts = []
    for scope, state in _breakers(ctx).items():
        ok, why, _ = breaker_allows(state, ctx.now, open_s, trial_alive=_trial_alive(ctx, state))
        parts.append((ok, f"{scope} breaker {why}"))
    if all(ok for ok, _ in parts):
        return _pass("circuit_breaker", "; ".join(part for _, part in parts))
    return _fail("circuit_breaker", "; ".join(part for ok, part in parts if not ok))


def in_flight(ctx: GateContext) -> GateResult:
    target = _target(ctx)
    if ctx.target_in_flight:
        return _fail("in_flight", f"an action on {target} is already in flight; one at a time per target")
    return _pass("in_flight", f"no action in flight on {target}")


def this_plan(ctx: GateContext) -> Plan | None:
    """The plan the decision is about, for conflict resolution (None without an action)."""
    action = ctx.diagnosis.action
    if action is None:
        return None
    return Plan(
        id=ctx.diagnosis.incident_id,
        target=action.target,
        action_type=action.type,
        direction=plan_direction(action.params),
        ts=ctx.diagnosis.ts,
        priority=ctx.priority,
        pattern_id=ctx.diagnosis.pattern_id,
    )


def conflict(ctx: GateContext) -> GateResult:
    mine = this_plan(ctx)
    if mine is None:
        return _pass("conflict", "no action, nothing to conflict with")
    rivals = [p for p in ctx.competing_plans if p.target == mine.target]
    if not any(conflicts(mine, p) for p in rivals):
        return _pass("conflict", f"no conflicting plan for {mine.target}")
    _, losers = resolve_conflicts([mine, *rivals])
    for plan, why in losers:
        if plan is mine:
            return _fail("conflict", f"lost: {why}")
    beaten = "; ".join(p.describe() for p in rivals if conflicts(mine, p))
    return _pass("conflict", f"kept over conflicting plans for {mine.target}: {beaten}")


def group_allowance(group_size: int, max_percent: float) -> int:
    """How many members of a group may have an action in flight: ``max_percent`` of it,
    rounded down, but never fewer than one."""
    return max(1, math.floor(group_size * max_percent / 100.0 + 1e-9))


def blast_limit(cfg: BlastRadiusConfig, in_flight: int, group: str | None = None, group_size: int = 0,
                group_in_flight: int = 0) -> tuple[bool, str]:
    """Whether one more target may have an action in flight beside ``in_flight`` others (of
    which ``group_in_flight`` in its ``group`` of ``group_size``), and the reason: the
    ``blast_radius`` gate's, and what an incident waiting its turn says (the engine's wait)."""
    parts = [f"{in_flight} of at most {counted(cfg.max_in_flight, 'target')} in flight"]
    if in_flight >= cfg.max_in_flight:
        return False, f"limit reached: {parts[0]}"
    if group is not None and group_size > 0:
        allowed = group_allowance(group_size, cfg.max_group_percent)
        part = (f"{group_in_flight} of {group_size} in group {group} in flight "
                f"(at most {allowed}, {cfg.max_group_percent:g}%)")
        if group_in_flight >= allowed:
            return False, f"limit reached: {part}"
        parts.append(part)
    return True, "; ".join(parts)


def blast_radius(ctx: GateContext) -> GateResult:
    ok, reason = blast_limit(ctx.policy.blast_radius, ctx.in_flight_targets, ctx.group, ctx.group_size,
                             ctx.group_in_flight)
    return _pass("blast_radius", reason) if ok else _fail("blast_radius", reason)


def backoff(ctx: GateContext) -> GateResult:
    ok, why, _ = backoff_allows(ctx.backoff, ctx.now, ctx.policy.backoff)
    target = _target(ctx)
    if ok:
        return _pass("backoff", f"{target}: {why}")
    if ctx.human_approved:
        return _pass("backoff", f"{target}: {why}; waived: approved by a person")
    return _fail("backoff", f"{target}: {why}")


def _target(ctx: GateContext) -> str:
    return ctx.diagnosis.action.target if ctx.diagnosis.action else ctx.service


GATES: tuple[Gate, ...] = (
    has_action,
    policy_enabled,
    paused,
    autonomy,
    confidence,
    root_cause,
    rate_limit,
    maintenance_window,
    circuit_breaker,
    in_flight,
    conflict,
    blast_radius,
    backoff,
)


def decide(ctx: GateContext) -> tuple[Verdict, list[GateResult]]:
    """Run every gate. Any plain failure: DENIED; else any asking a person: NEEDS_APPROVAL;
    else APPROVED. In shadow mode a last gate, ``shadow``, records the verdict the others gave
    and fails, so the decision is DENIED and nothing acts."""
    results = [gate(ctx) for gate in GATES]
    verdict = _fold(results)
    if ctx.effective.shadow:
        doing = ctx.diagnosis.action.type if ctx.diagnosis.action else "nothing"
        would = {Verdict.APPROVED: f"would have run {doing} on {_target(ctx)}",
                 Verdict.NEEDS_APPROVAL: f"would have asked a person to approve {doing} on {_target(ctx)}",
                 Verdict.DENIED: "would not have acted either"}[verdict]
        results.append(_fail("shadow", f"shadow mode: {would}"))
        return Verdict.DENIED, results
    return verdict, results


def without_room(verdict: Verdict, results: Sequence[GateResult]) -> tuple[Verdict, list[GateResult]] | None:
    """When the blast radius is the only gate that says no outright (no room now: a limit of
    targets in flight, not a judgement of the remedy), what the other gates say: APPROVED, the
    remedy waits its turn (the engine looks again, nothing recorded); NEEDS_APPROVAL, the person
    is asked now and the blast radius's result reads as passed, saying the remedy waits its turn
    once approved. None when another gate denies, or the blast radius does not (shadow mode's
    gate denies too: a shadow decision is recorded as it is)."""
    plain = [r for r in results if not r.passed and not r.needs_approval]
    if verdict != Verdict.DENIED or [r.gate for r in plain] != ["blast_radius"]:
        return None
    others = _fold([r for r in results if r.gate != "blast_radius"])
    if others == Verdict.NEEDS_APPROVAL:
        return others, [r.model_copy(update={"passed": True, "reason": f"no room now ({r.reason}): once approved, "
                                                                        "it waits its turn"})
                        if r.gate == "blast_radius" else r for r in results]
    return (others, list(results)) if others == Verdict.APPROVED else None


def _fold(results: Sequence[GateResult]) -> Verdict:
    if any(not r.passed and not r.needs_approval for r in results):
        return Verdict.DENIED
    if any(r.needs_approval for r in results):
        return Verdict.NEEDS_APPROVAL
    return Verdict.APPROVED


def shadow_verdict(ctx: GateContext, verdict: Verdict, results: Sequence[GateResult]) -> Verdict | None:
    """For a decision that did not act because of shadow mode or an observe/suggest autonomy:
    in shadow, the verdict every other gate gave, autonomy included (the policy as it stands);
    at observe/suggest, the verdict of every gate but autonomy (APPROVED: it would have acted
    with more autonomy). None when the decision acts or waits for a person, or neither applies."""
    if verdict != Verdict.DENIED:
        return None
    if ctx.effective.shadow:  # what the policy, autonomy included, would have done
        return _fold([r for r in results if r.gate != "shadow"])
    if ctx.effective.autonomy in (Autonomy.OBSERVE, Autonomy.SUGGEST):  # what the other gates allow
        return _fold([r for r in results if r.gate != "autonomy"])
    return None


def breakers_after_approval(ctx: GateContext, decision_id: str) -> dict[str, BreakerState]:
    """The breaker states to store, by scope (the action's type, each later step's type,
    ``global``), once the APPROVED decision ``decision_id`` is started: an open breaker past its
    open time turns half-open with that decision's action as its one trial in flight (as does a
    half-open one whose last trial ended without a verdict)."""
    return {scope: breaker_allows(b, ctx.now, ctx.policy.breaker.open_s, trial_alive=_trial_alive(ctx, b),
                                  trial=decision_id)[2]
            for scope, b in _breakers(ctx).items()}
