"""Per-target exponential backoff after failed attempts. Pure: state in, state out; the
caller stores it (one state per target, like the breakers).

After the n-th failed attempt in a row on a target, the next attempt waits
``min(cap_s, base_s * 2 ** (n - 1))`` seconds after that failure (defaults: 10 s, 20 s,
40 s, ... up to 5 minutes), like Kubernetes' crash-loop backoff. The count is cleared by a
successful attempt, by ``reset_after_s`` (default 10 minutes) without a failure, or by a
person's action (:func:`backoff_reset`, e.g. an approval or a resume).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from autonomic.plan.policy import BackoffConfig


class BackoffState(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    failures: int = Field(default=0, ge=0)  # failed attempts in a row
    last_failure_at: float | None = None


def backoff_delay(failures: int, cfg: BackoffConfig) -> float:
    """Seconds to wait after the ``failures``-th failure in a row (0 when there is none)."""
    if failures <= 0:
        return 0.0
    return float(min(cfg.cap_s, cfg.base_s * 2.0 ** min(failures - 1, 64)))


def backoff_allows(s: BackoffState, now: float, cfg: BackoffConfig) -> tuple[bool, str, BackoffState]:
    """Whether an attempt on the target may start now, why, and the state to keep (reset
    once ``reset_after_s`` has passed since the last failure)."""
    if s.failures == 0 or s.last_failure_at is None:
        return True, "no recent failed attempts", BackoffState()
    since = now - s.last_failure_at
    if since >= cfg.reset_after_s:
        return True, f"reset: stable {since:.0f} s since the last failed attempt", BackoffState()
    delay = backoff_delay(s.failures, cfg)
    attempts = f"{s.failures} failed attempt{'s' if s.failures != 1 else ''} in a row"
    if since >= delay:
        return True, f"{attempts}; backoff of {delay:.0f} s has passed", s
    return False, f"{attempts}: backing off {delay:.0f} s, next attempt in {delay - since:.0f} s", s


def backoff_record(s: BackoffState, success: bool, now: float, cfg: BackoffConfig, *,
                   started: float | None = None) -> BackoffState:
    """The state after an attempt finished: a success clears the count; a failure adds one
    (starting from zero again when the attempt *started* ``reset_after_s`` or more after the last
    failure: ``started``, when the attempt was decided, defaults to ``now``). An attempt decided
    within ``reset_after_s`` of the last failure follows it in a row however long its verification
    took: a rollout restart watched for ten minutes that fails again is the second failure, not a
    first one that would let the next attempt go after ``base_s``."""
    if success:
        return BackoffState()
    began = now if started is None else min(started, now)
    stale = s.last_failure_at is None or began - s.last_failure_at >= cfg.reset_after_s
    return BackoffState(failures=1 if stale else s.failures + 1, last_failure_at=now)


def backoff_reset(s: BackoffState) -> BackoffState:
    """A person acted on the target (approved, resumed, cleared it): start afresh."""
    return BackoffState()
