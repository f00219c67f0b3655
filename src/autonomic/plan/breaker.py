"""A circuit breaker over action outcomes. Pure: state in, state out; the caller stores it.

::

    closed ──(failures in a row >= limit)──▶ open ──(open_s passed)──▶ half_open
      ▲                                        ▲                          │ one trial
      └──────────────(success)─────────────────┴──────(failure)───────────┘

While closed every action is allowed. While open none is, until ``open_s`` has passed;
then the breaker goes half-open and allows exactly one trial action. The trial's success
closes it; its failure opens it again for another ``open_s``. A trial that ends with neither
(cancelled by a pause or as stale, escalated as inconclusive, or never started because its
preparation failed) leaves no action in flight; the caller says so (``trial_alive=False``) and
the breaker allows another trial rather than waiting forever for a verdict that never comes.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from autonomic.printable import counted


class BreakerState(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    state: Literal["closed", "open", "half_open"] = "closed"
    consecutive_failures: int = Field(default=0, ge=0)
    opened_at: float | None = None
    trial_in_flight: bool = False
    trial_decision: str | None = None  # the decision whose action is the half-open breaker's trial


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def breaker_allows(
    s: BreakerState, now: float, open_s: float, *, trial_alive: bool = True, trial: str | None = None
) -> tuple[bool, str, BreakerState]:
    """Whether an action may run now, why, and the state to keep if it does run.

    An open breaker whose ``open_s`` has passed becomes half-open and allows one trial
    (the returned state has ``trial_in_flight`` set, and ``trial_decision`` = ``trial``, the
    decision it is allowed for, so a second call denies). ``trial_alive=False`` says the trial's
    action is no longer in flight: it ended without a verdict, and another trial is allowed."""
    if s.state == "closed":
        return True, f"closed ({counted(s.consecutive_failures, 'consecutive failure')})", s
    if s.state == "half_open":
        if s.trial_in_flight and trial_alive:
            return False, "half-open: a trial action is already in flight", s
        why = "half-open: one trial action allowed"
        if s.trial_in_flight:
            why = "half-open: the last trial ended without a verdict; one trial action allowed"
        return True, why, s.model_copy(update={"trial_in_flight": True, "trial_decision": trial})
    opened_at = s.opened_at if s.opened_at is not None else now
    remaining = opened_at + open_s - now
    if remaining <= 0:
        half = s.model_copy(update={"state": "half_open", "trial_in_flight": True, "trial_decision": trial})
        return True, f"half-open after {open_s:.0f} s open: one trial action allowed", half
    reason = (
        f"open since {_iso(opened_at)} after {counted(s.consecutive_failures, 'consecutive failure')}, "
        f"half-open in {remaining:.0f} s"
    )
    return False, reason, s


def breaker_record(s: BreakerState, success: bool, now: float, failures: int) -> BreakerState:
    """The state after an action finished: a success closes the breaker and clears the count;
    a failure counts, opening the breaker at ``failures`` in a row, or at once (with a new
    ``opened_at``) when the breaker was already half-open or open."""
    if success:
        return BreakerState()
    count = s.consecutive_failures + 1
    if s.state != "closed" or count >= failures:
        # a failure while open (a trial whose half-open state was never stored, or an action
        # that started before the breaker opened) restarts the open period: the safe side
        return BreakerState(state="open", consecutive_failures=count, opened_at=now)
    return s.model_copy(update={"consecutive_failures": count})
