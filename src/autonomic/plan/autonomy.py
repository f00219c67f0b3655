"""Earned autonomy: a (pattern, service) pair climbs or falls the ladder observe -> suggest ->
approve -> auto on its measured record. Pure.

:func:`earned_level` replays the pair's outcomes, oldest first, from the configured starting
level (the policy's effective autonomy) under :class:`~autonomic.plan.policy.AutonomyLadder`:

* **promote** one level after ``promote_after`` verified successes in a row (default 5) when
  the success rate over the last ``window`` outcomes (default 20) is at least
  ``min_success_rate`` (0.9), and, when ``min_lower_bound`` > 0, the 95% Wilson lower bound
  of that rate is too. Never above ``max_level`` (default approve: ``auto`` must be set
  there explicitly); a start above ``max_level`` is kept but never promoted further.
* **demote** one level on a rollback, or on ``demote_failures`` failures (2) among the last
  ``demote_window`` outcomes (5). Never below observe.

After each move the streak and the demotion window start afresh, so one bad run demotes
once and the next promotion needs a new run of successes. A verified success is an outcome
with verdict ``pass`` that was not rolled back; a failure is a ``fail`` verdict or a rollback;
an ``inconclusive`` one breaks a streak but is no failure.

A person's answer to an approval request counts as evidence too (:func:`people_evidence`): an
approval counts as a success and a denial as a failure, at the time it was given; an approval
never acted on because the trouble cleared on its own first counts neither way. Why the person
was asked does not matter: a request made because the pair's level is ``approve``, because a
maintenance window asks, or because the remedy's confidence fell below the policy's threshold
(but not its floor, see the ``confidence`` gate) is answered with the same trust in the remedy
on that service, and counts the same. At ``approve``, where every fix is a person's approval and
then its outcome, one fix is two successes in a row: a promotion's reason says how many of its
successes were verified fixes and how many a person's approvals.

The engine stores the level per (pattern, service) and, when it changes, records an audited
event ``pattern.promoted`` or ``pattern.demoted`` (see :func:`ladder_event`) with the reason
and notifies; the weekly report lists every audit kind starting ``pattern.``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from autonomic.model import Autonomy, Decision
from autonomic.plan.policy import AutonomyLadder, EffectivePolicy, PolicyConfig
from autonomic.printable import counted

_LADDER = [Autonomy.OBSERVE, Autonomy.SUGGEST, Autonomy.APPROVE, Autonomy.AUTO]


class OutcomeLike(Protocol):
    """What :func:`earned_level` reads of an outcome (``model.Outcome`` fits)."""

    @property
    def verdict(self) -> str: ...

    @property
    def rolled_back(self) -> bool: ...


@dataclass(frozen=True)
class Evidence:
    """One item of a pair's record that is not an action's outcome: a person's answer."""

    ts: float
    verdict: str  # "pass" (a person approved) or "fail" (a person denied)
    rolled_back: bool = False
    by: str = ""


def people_evidence(decisions: Iterable[Decision], pattern_id: str, service: str) -> list[Evidence]:
    """Every answer a person gave to an approval request on this pattern and service, as
    evidence, oldest first. A person's denial is a decision with no gates (the person ruled);
    an approval runs the gates again, so whatever they then said, the person said yes. An
    approval never acted on because the trouble cleared first is not counted either way
    (:attr:`Decision.person_evidence`)."""
    found = []
    for d in decisions:
        verdict = d.person_evidence
        if verdict is None or d.pattern_id != pattern_id or d.action is None or d.action.target != service:
            continue
        found.append(Evidence(ts=d.ts, verdict=verdict, by=d.decided_by))
    return sorted(found, key=lambda e: e.ts)


def _success(o: OutcomeLike) -> bool:
    return str(o.verdict) == "pass" and not o.rolled_back


def _failure(o: OutcomeLike) -> bool:
    return str(o.verdict) == "fail" or o.rolled_back


def _approval(o: OutcomeLike) -> bool:
    """Whether ``o`` is a person's answer (:func:`people_evidence`), not an action's outcome."""
    return bool(getattr(o, "by", ""))


def _successes(n: int, approvals: int) -> str:
    """``5 verified successes``; with people's approvals among them, how many of each: an approval
    is no verified fix, and a reader of a promotion must not take it for one."""
    if not approvals:
        return counted(n, "verified success", "verified successes")
    return (f"{counted(n, 'success', 'successes')} ({n - approvals} verified, "
            f"{counted(approvals, 'approval')} by a person)")


def wilson_lower(successes: int, n: int, z: float = 1.96) -> float:
    """The lower bound of the Wilson score interval for a success rate (0 when n is 0)."""
    if n <= 0:
        return 0.0
    p = successes / n
    centre = p + z * z / (2 * n)
    margin = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, (centre - margin) / (1 + z * z / n))


def earned_level(
    record: Sequence[OutcomeLike], start: Autonomy, cfg: AutonomyLadder
) -> tuple[Autonomy, str]:
    """The level ``record`` (oldest first) earns from ``start``, and why (the last move, or
    where the pair stands)."""
    level = start
    streak = approvals = 0  # successes in a row, and how many of them are a person's approvals
    since_move: list[OutcomeLike] = []
    reason = ""
    for i, outcome in enumerate(record):
        since_move.append(outcome)
        streak = streak + 1 if _success(outcome) else 0
        approvals = approvals + _approval(outcome) if streak else 0
        recent = since_move[-cfg.demote_window :]
        failures = sum(1 for o in recent if _failure(o))
        if outcome.rolled_back or failures >= cfg.demote_failures:
            if level.rank > 0:
                level = _LADDER[level.rank - 1]
                why = ("a rollback" if outcome.rolled_back
                       else f"{counted(failures, 'failure')} in the last {len(recent)}")
                reason = f"demoted to {level.value} after {why}"
            streak, approvals, since_move = 0, 0, []
            continue
        if streak >= cfg.promote_after and level.rank < cfg.max_level.rank:
            window = record[max(0, i + 1 - cfg.window) : i + 1]
            wins = sum(1 for o in window if _success(o))
            rate = wins / len(window)
            lower = wilson_lower(wins, len(window))
            if rate >= cfg.min_success_rate and lower >= cfg.min_lower_bound:
                level = _LADDER[level.rank + 1]
                bound = f", lower bound {lower:.0%}" if cfg.min_lower_bound > 0 else ""
                reason = f"promoted to {level.value} after {_successes(streak, approvals)} ({rate:.0%} of " \
                         f"{len(window)}{bound})"
                streak, approvals, since_move = 0, 0, []
    if reason:
        return level, reason
    n = len(record)
    wins = sum(1 for o in record if _success(o))
    if n == 0:
        return level, f"at {level.value}: no outcomes yet"
    where = ("the most allowed" if level.rank >= cfg.max_level.rank
             else f"{_successes(streak, approvals)} in a row")
    return level, f"at {level.value}: {wins} of {counted(n, 'outcome')} verified, {where}"


def ladder_event(before: Autonomy, after: Autonomy) -> str | None:
    """The audit event kind for a change of earned level: ``pattern.promoted``,
    ``pattern.demoted``, or None when the level did not change."""
    if after.rank > before.rank:
        return "pattern.promoted"
    if after.rank < before.rank:
        return "pattern.demoted"
    return None


def earned_effective(
    effective: EffectivePolicy,
    policy: PolicyConfig,
    pattern_id: str | None,
    service: str,
    record: Sequence[OutcomeLike],
    *,
    note: str = "",
) -> tuple[EffectivePolicy, str | None]:
    """The effective policy with its autonomy replaced by the earned level, and the reason (with
    ``note`` after it: what of the record was left out); unchanged (reason None) when the ladder
    is off or there is no pattern. The configured autonomy is the start; a service's own autonomy
    still caps the result (a service setting only ever restricts)."""
    if not policy.autonomy_ladder.enabled or pattern_id is None:
        return effective, None
    level, reason = earned_level(record, effective.autonomy, policy.autonomy_ladder)
    reason += note
    svc = policy.services.get(service)
    if svc is not None and svc.autonomy is not None and svc.autonomy.rank < level.rank:
        level, reason = svc.autonomy, f"{reason}; capped at {svc.autonomy.value} by service {service}"
    origin = f"earned by pattern {pattern_id} on {service}: {reason}"
    return effective.model_copy(update={"autonomy": level, "autonomy_from": origin}), reason
