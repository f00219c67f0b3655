"""Diagnosis: which known patterns fit an incident, ranked, and what to do. Pure.

A pattern matches only when every field of its ``match`` holds. Each match is scored::

    quality    = 0.8 + 0.2 * min(given, 6) / 6  # given = match fields and symptoms the pattern sets
    record     = min(1, ((s + 1) / (s + f + 2)) / 0.5)
    confidence = prior_confidence * quality * record

``quality`` ranks a more specific pattern above a broader one with the same prior, while
a pattern setting only cause and kind keeps most of its prior (0.87). ``record`` is the
mean of a Beta(s+1, f+1) posterior over the pattern's measured successes ``s`` and
failures ``f``, divided by its no-record value 0.5: no record (or more successes than
failures) leaves the prior alone, failures lower it (one failure, no success: 0.67).
Every factor is in [0, 1], so the confidence is too.

``s`` and ``f`` are the pattern's record on the incident's own service plus a quarter of its
record on every other service (:func:`service_record`): one misconfigured service's failures
lower the pattern's confidence there in full, and elsewhere only a little.

Candidates are ranked by confidence, then by ``given`` (the more specific match first), then, when
the service's bindings are known (``DiagnoseContext.actuator_order``), a hand-over before a remedy
and a remedy through an actuator bound earlier under ``services[].actuators`` before one bound
later, then by id in alphabetical order: the same ranking at every run. Equal confidences are what
a service bound to two actuators meets (process and systemd, say: each one's down restart matches
with the same prior): the order its config binds them in says which it prefers, until their records
part them. The rationale names the candidates tied with the chosen one and what ranked it first.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from autonomic.model import (
    UNIT_METRICS,
    AfterActions,
    Candidate,
    ConfigChange,
    Diagnosis,
    Finding,
    Incident,
    Pattern,
    Symptom,
)
from autonomic.printable import counted

_MATCH_FIELDS = 6


@dataclass(frozen=True)
class DiagnoseContext:
    now: float
    service_type: str | None = None
    # when the service's config was last changed outside the engine (its own changes are judged
    # by their own verification), and, when known, which change (named in the match's reason)
    last_change_at: float | None = None
    last_change: ConfigChange | None = None
    record: Mapping[str, tuple[float, float]] = field(default_factory=dict)  # id -> (successes, failures)
    # pattern id -> when each of its actions on the service was created (none cancelled), for
    # ``match.after_actions``; the engine reads back as far as the longest ``within_s`` asks
    recent_actions: Mapping[str, Sequence[float]] = field(default_factory=dict)
    # the same for actions that answered a death of the service while something it depends on was
    # down (``Diagnosis.dependencies_down``): left out of ``recent_actions``, not counted toward
    # ``after_actions`` (a crash loop), only named in its reason
    uncounted_actions: Mapping[str, Sequence[float]] = field(default_factory=dict)
    # pattern id -> why the service cannot carry out that pattern's action (no binding for its
    # actuator type): it stays a candidate, but the best one the service can carry out is chosen
    cannot_run: Mapping[str, str] = field(default_factory=dict)
    # the service's actuator types in the order its config binds them (``services[].actuators``):
    # among candidates of equal confidence and specificity, a hand-over first (a person, when an
    # automatic remedy is no surer), then the one whose action's type is bound first. Empty: by id
    actuator_order: Sequence[str] = ()


_DEFAULT_ORDER = ("process",)  # autonomic's own actuator, the embedded default


def actuator_order(bound: Iterable[str] | None) -> tuple[str, ...]:
    """``DiagnoseContext.actuator_order`` of a service bound to the actuator types ``bound`` (in the
    order its config binds them), then autonomic's own ``process`` when it is not bound: among
    remedies equally ranked that the service cannot run, the rationale names the process one (a
    service binding only a shell is told the graceful restart it lacks, not a container's). None:
    its bindings are not known (a replay or a ``patterns test`` without a config, which take every
    remedy as one the service could run): the process one first."""
    mine = tuple(bound or ())
    return mine + tuple(t for t in _DEFAULT_ORDER if t not in mine)


OTHERS_WEIGHT = 0.25
"""How much a pattern's record on other services counts towards its record on this one."""


def service_record(totals: Mapping[str, tuple[int, int]], here: Mapping[str, tuple[int, int]],
                   others: float = OTHERS_WEIGHT) -> dict[str, tuple[float, float]]:
    """Per pattern, (successes, failures) for a diagnosis on one service: its record there
    (``here``), plus ``others`` times its record on every other service (``totals`` is its record
    everywhere). O(patterns), whatever the size of the fleet."""
    out: dict[str, tuple[float, float]] = {}
    for pattern, (s_all, f_all) in totals.items():
        s, f = here.get(pattern, (0, 0))
        out[pattern] = (s + others * (s_all - s), f + others * (f_all - f))
    return out


PROBE_METRICS = ("probe_ok", "probe_latency_ms")
"""What a service's probes sample (``services[].probes``), and nothing else unless a metrics source
of its own names them."""

SOURCED_METRICS = frozenset(PROBE_METRICS).union(*UNIT_METRICS.values())
"""What only a source a service's config sets up samples (its probes, the state of the unit its
binding names, its process's supervisor, its metrics sources): ``ServiceSpec.may_report`` tells
whether one does, so a remedy verified by one of these nothing samples is passed over."""


def cannot_run(patterns: Iterable[Pattern], bindings: Mapping[str, object], service: str,
               may_report: Callable[[str], bool] | None = None) -> dict[str, str]:
    """Per pattern whose action ``service`` cannot carry out, why (for ``DiagnoseContext.cannot_run``).
    ``bindings`` are the service's actuator bindings by type. A type of the action (or of a step)
    with no binding, or a binding whose ``lacks(params)`` names what it lacks (the shell binding: a
    runbook it does not have), rules the pattern out here.

    With ``may_report`` (whether anything the service's config entry sets up samples a metric: its
    ``ServiceSpec.may_report``), a pattern it could carry out whose verification watches a metric
    only a probe or a unit's state samples (:data:`SOURCED_METRICS`: ``probe_ok``, or the unit's
    ``up`` as its ``fallback_metric``, for the restarts of a unit that systemd, Docker or Kubernetes
    runs) that nothing samples for it (no ``probes:``, no unit binding, no metrics source naming
    it) is ruled out too: acted on, it could never be judged (too little data, every time). None:
    what samples the service is not known (a replay without a config, sources a test hands in),
    nothing is ruled out for it."""
    out: dict[str, str] = {}
    for p in patterns:
        if p.action is None:
            continue
        steps = [(st.type, st.params) for st in p.action.steps] or [(p.action.type, p.action.params)]
        unbound = sorted({t for t, _ in steps if t not in bindings})
        if unbound:
            out[p.id] = f"{service} has no {', '.join(unbound)} actuator binding"
            continue
        for t, params in steps:
            lacks = getattr(bindings[t], "lacks", None)
            why = lacks(params) if lacks is not None else None
            if why:
                out[p.id] = f"{service}: {why}"
                break
        else:
            why = _unjudgeable(p, service, may_report) if may_report is not None else None
            if why:
                out[p.id] = why
    return out


def _unjudgeable(p: Pattern, service: str, may_report: Callable[[str], bool]) -> str | None:
    """Why nothing could judge ``p``'s verification on ``service``: its metric and its
    ``fallback_metric`` (when it has one) are each one only a probe or a unit's state samples
    (:data:`SOURCED_METRICS`), and nothing ``service``'s config sets up samples either. None
    otherwise, and for metrics the config cannot tell of (a process's readings)."""
    if p.verify is None:
        return None
    metrics = [m for m in (p.verify.metric, p.verify.fallback_metric) if m is not None]
    if not all(m in SOURCED_METRICS for m in metrics) or any(may_report(m) for m in metrics):
        return None
    if metrics == ["probe_ok"] or metrics == ["probe_latency_ms"]:
        return f"{service} has no probe (probes:) to verify it by: nothing samples its {metrics[0]}"
    if p.verify.metric in PROBE_METRICS:
        return (f"{service} has no probe (probes:) nor a unit whose state autonomic reads to verify it by: "
                f"nothing samples its {' or '.join(metrics)}")
    return f"nothing {service}'s config sets up samples its {' or '.join(metrics)} to verify it by"


def record_factor(successes: float, failures: float) -> float:
    """Beta-posterior mean of success, relative to no record, capped at 1."""
    return min(1.0, ((successes + 1) / (successes + failures + 2)) / 0.5)


def _match(
    pattern: Pattern, incident: Incident, findings: Sequence[Finding], ctx: DiagnoseContext
) -> tuple[bool, int, list[str]]:
    """(matches, number of fields given, one reason per field checked)."""
    m = pattern.match
    checks: list[tuple[bool, str]] = []
    if m.cause is not None:
        ok = m.cause == incident.cause
        checks.append((ok, f"cause {m.cause} {'==' if ok else '!='} {incident.cause}"))
    if m.kind is not None:
        kinds = {incident.kind, *(f.kind for f in findings)}
        ok = m.kind in kinds
        seen = ", ".join(sorted(k.value for k in kinds))
        checks.append((ok, f"kind {m.kind.value} matched" if ok else f"kind {m.kind.value} not in {seen}"))
    if m.metric is not None:
        metrics = {f.metric for f in findings}
        ok = m.metric in metrics
        seen = ", ".join(sorted(metrics)) or "none"
        checks.append(
            (ok, f"metric {m.metric} in findings" if ok else f"metric {m.metric} not in findings ({seen})")
        )
    if m.min_severity is not None:
        ok = incident.severity.rank >= m.min_severity.rank
        rel = ">=" if ok else "<"
        checks.append((ok, f"severity {incident.severity.value} {rel} {m.min_severity.value}"))
    if m.service_type is not None:
        ok = m.service_type == ctx.service_type
        checks.append(
            (
                ok,
                f"service type {m.service_type} matched"
                if ok
                else f"service type needs {m.service_type}: is {ctx.service_type or 'unset'}",
            )
        )
    if m.after_change_s is not None:
        window = f"{m.after_change_s:g} s"
        if ctx.last_change_at is None:
            checks.append((False, f"needs a config change made outside autonomic within {window}: none"))
        else:
            ago = ctx.now - ctx.last_change_at
            ok = 0 <= ago <= m.after_change_s
            which = f" ({ctx.last_change.describe()})" if ctx.last_change is not None else ""
            checks.append(
                (
                    ok,
                    f"config changed {ago:.0f} s ago{which}, within {window}"
                    if ok
                    else f"needs a config change made outside autonomic within {window}: last was {ago:.0f} s "
                         f"ago{which}",
                )
            )
    if m.after_actions is not None:
        checks.append(_after_actions(m.after_actions, ctx))
    checks.extend(_symptom(sym, findings) for sym in m.symptoms)
    return all(ok for ok, _ in checks), len(checks), [reason for _, reason in checks]


def _after_actions(after: AfterActions, ctx: DiagnoseContext) -> tuple[bool, str]:
    """Whether the named patterns acted on the service at least ``count`` times within
    ``within_s`` before ``ctx.now``, and why (naming the actions not counted, see
    ``DiagnoseContext.uncounted_actions``)."""
    def within(actions: Mapping[str, Sequence[float]]) -> dict[str, int]:
        return {pid: n for pid in after.patterns
                if (n := sum(1 for ts in actions.get(pid, ()) if 0 <= ctx.now - ts <= after.within_s))}

    acted = within(ctx.recent_actions)
    n = sum(acted.values())
    ok = n >= after.count
    uncounted = sum(within(ctx.uncounted_actions).values())
    more = f"; {uncounted} more answered a crash while a dependency was down, not counted" if uncounted else ""
    # the patterns that acted (with their share when several did); all of them when none did
    if len(acted) > 1:
        which = ", ".join(f"{pid} ({k})" for pid, k in acted.items())
    else:
        which = ", ".join(acted or after.patterns)
    return ok, (f"{counted(n, 'action')} of {which} in the last {after.within_s:g} s "
                f"({'>=' if ok else '<'} {after.count}){more}")


def _symptom(sym: Symptom, findings: Sequence[Finding]) -> tuple[bool, str]:
    """Whether one of the incident's findings of ``sym.metric`` meets every bound, and why."""
    wanted = []
    if sym.min is not None:
        wanted.append(f">= {sym.min:g}")
    if sym.max is not None:
        wanted.append(f"<= {sym.max:g}")
    if sym.trend is not None:
        wanted.append(sym.trend)
    if sym.min_r2 is not None:
        wanted.append(f"r2 >= {sym.min_r2:g}")
    if sym.eta_within_s is not None:
        wanted.append(f"breach within {sym.eta_within_s:g} s")
    what = f"{sym.metric} {' '.join(wanted) or 'seen'}"
    for f in findings:
        if f.metric != sym.metric:
            continue
        if (sym.min is not None or sym.max is not None) and f.value is None:
            continue
        if sym.min is not None and not (f.value is not None and f.value >= sym.min):
            continue
        if sym.max is not None and not (f.value is not None and f.value <= sym.max):
            continue
        if sym.trend is not None or sym.min_r2 is not None or sym.eta_within_s is not None:
            slope, r2, eta = (f.evidence.get(k) for k in ("slope_per_s", "r2", "eta_s"))
            if not isinstance(slope, int | float):
                continue  # not a forecast: no trend to judge
            if sym.trend == "rising" and not slope > 0 or sym.trend == "falling" and not slope < 0:
                continue
            if sym.min_r2 is not None and not (isinstance(r2, int | float) and r2 >= sym.min_r2):
                continue
            if sym.eta_within_s is not None and not (isinstance(eta, int | float) and eta <= sym.eta_within_s):
                continue
        seen = f"{f.value:.4g}" if f.value is not None else f.kind.value
        return True, f"symptom {what}: {f.metric} {seen}"
    return False, f"symptom {what}: no such finding"


_Scored = tuple[float, int, int, str, Candidate]  # confidence, fields given, actuator order, id, candidate


def _actuator_rank(pattern: Pattern, order: Sequence[str]) -> int:
    """Where ``pattern`` goes among candidates of equal confidence and specificity
    (``DiagnoseContext.actuator_order``): a hand-over -1, else the place of its action's type (its
    first step's) among the service's bindings, a type it does not bind after them all."""
    if pattern.action is None:
        return -1
    return order.index(pattern.action.type) if pattern.action.type in order else len(order)


def _tie(best: Candidate, scored: Sequence[_Scored], patterns: Mapping[str, Pattern], ctx: DiagnoseContext) -> str:
    """What the rationale says when other candidates the service could carry out have the chosen
    one's confidence (a service bound to two actuators, say process and systemd, matched by each
    one's down restart): which, and what ranked the chosen one first: the more specific match, a
    hand-over before a remedy, the order of the service's actuators, else its id, first in
    alphabetical order. "" when there is no such tie."""
    _, given, rank, _, _ = next(t for t in scored if t[3] == best.pattern_id)
    tied = [t for t in scored
            if t[0] == best.confidence and t[3] != best.pattern_id and t[3] not in ctx.cannot_run]
    if not tied:
        return ""
    chosen = patterns[best.pattern_id]
    why: list[str] = []
    for _, g, r, _, _ in tied:
        if g < given:
            reason = "the more specific match"
        elif r > rank and chosen.action is None:
            reason = "a hand-over before an automatic remedy no surer"
        elif r > rank:
            assert chosen.action is not None
            reason = (f"the order of the service's actuators (its {chosen.action.type} binding comes first)"
                      if r < len(ctx.actuator_order)
                      else f"the {chosen.action.type} actuator first, the service's bindings not being known")
        else:
            reason = "pattern id (alphabetical order)"
        if reason not in why:
            why.append(reason)
    return f"; tied with {', '.join(t[3] for t in tied)}, ranked first by {' and '.join(why)}"


def diagnose(
    incident: Incident, findings: Sequence[Finding], patterns: Sequence[Pattern], ctx: DiagnoseContext
) -> Diagnosis:
    """Rank the patterns that match ``incident`` (best first) and recommend the best one's
    action, aimed at the incident's service."""
    scored: list[_Scored] = []
    for p in patterns:
        ok, given, reasons = _match(p, incident, findings, ctx)
        if not ok:
            continue
        quality = 0.8 + 0.2 * min(given, _MATCH_FIELDS) / _MATCH_FIELDS
        s, f = ctx.record.get(p.id, (0, 0))
        factor = record_factor(s, f)
        if s or f:
            reasons.append(f"record {s:g} succeeded, {f:g} failed: x{factor:.2f}")
        if p.action is None:
            reasons.append("no automatic remedy: escalate to a person")
        elif p.id in ctx.cannot_run:
            reasons.append(f"passed over here: {ctx.cannot_run[p.id]}")
        confidence = round(p.prior_confidence * quality * factor, 4)
        rank = _actuator_rank(p, ctx.actuator_order) if ctx.actuator_order else 0
        scored.append(
            (confidence, given, rank, p.id, Candidate(pattern_id=p.id, confidence=confidence, reasons=reasons))
        )
    scored.sort(key=lambda t: (-t[0], -t[1], t[2], t[3]))
    candidates = [c for *_, c in scored]

    if not candidates:
        return Diagnosis(
            incident_id=incident.id,
            ts=ctx.now,
            rationale=f"no known pattern matches cause {incident.cause} (kind {incident.kind.value})",
        )
    # the best candidate the service can carry out (a hand-over always can); only when none can,
    # the best one, whose action is then dropped
    best = next((c for c in candidates if c.pattern_id not in ctx.cannot_run), candidates[0])
    pattern = next(p for p in patterns if p.id == best.pattern_id)
    skip = ("no automatic remedy", "passed over here")
    why = "; ".join(r for r in best.reasons if not r.startswith(skip)) or "matches anything"
    passed_over = [c.pattern_id for c in candidates[: candidates.index(best)]]
    # why each was passed over: the service cannot carry it out, nothing could verify it there, or
    # it would change nothing now (DiagnoseContext.cannot_run says which)
    over = "".join(f"; preferred to {pid} (passed over here: {ctx.cannot_run[pid]})" for pid in passed_over)
    over += _tie(best, scored, {p.id: p for p in patterns}, ctx)
    if pattern.action is None:
        action = None
        rationale = (
            f"{pattern.id} matches ({why}) but has no automatic remedy, so a person must look "
            f"(confidence {best.confidence:.2f}{over})."
        )
    elif pattern.id in ctx.cannot_run:
        action = None
        rationale = (
            f"{pattern.id} matches ({why}) and recommends {pattern.action.describe()}, "
            f"but {ctx.cannot_run[pattern.id]}, so there is nothing autonomic may do "
            f"(confidence {best.confidence:.2f})."
        )
    else:
        action = pattern.action.model_copy(update={"target": incident.service})
        rationale = (
            f"{pattern.id} matches ({why}) and recommends {action.describe()} "
            f"on {incident.service} (confidence {best.confidence:.2f}{over})."
        )
    return Diagnosis(
        incident_id=incident.id,
        ts=ctx.now,
        candidates=candidates,
        pattern_id=pattern.id,
        action=action,
        confidence=best.confidence,
        rationale=rationale,
    )
