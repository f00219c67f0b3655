from __future__ import annotations

import pytest
from pydantic import ValidationError

from autonomic.plan.breaker import BreakerState, breaker_allows, breaker_record

T0 = 1_700_000_000.0  # 2023-11-14T22:13:20Z
OPEN_S = 3600.0


def fail_n(s: BreakerState, n: int, now: float = T0) -> BreakerState:
    for _ in range(n):
        s = breaker_record(s, False, now, failures=3)
    return s


def test_closed_breaker_allows_and_counts_failures_below_the_limit() -> None:
    s = fail_n(BreakerState(), 2)
    assert (s.state, s.consecutive_failures, s.opened_at) == ("closed", 2, None)
    ok, why, after = breaker_allows(s, T0, OPEN_S)
    assert ok and after == s
    assert why == "closed (2 consecutive failures)"


def test_three_failures_open_the_breaker() -> None:
    s = fail_n(BreakerState(), 3)
    assert (s.state, s.consecutive_failures, s.opened_at) == ("open", 3, T0)


def test_open_breaker_denies_and_says_when_it_half_opens() -> None:
    s = fail_n(BreakerState(), 3)
    ok, why, after = breaker_allows(s, T0 + 600, OPEN_S)
    assert not ok and after == s
    assert why == "open since 2023-11-14T22:13:20Z after 3 consecutive failures, half-open in 3000 s"


def test_half_open_after_open_s_allows_exactly_one_trial() -> None:
    s = fail_n(BreakerState(), 3)
    ok, why, trial = breaker_allows(s, T0 + OPEN_S, OPEN_S)
    assert ok and "one trial" in why
    assert (trial.state, trial.trial_in_flight) == ("half_open", True)
    ok2, why2, same = breaker_allows(trial, T0 + OPEN_S + 1, OPEN_S)
    assert not ok2 and same == trial
    assert "already in flight" in why2


def test_half_open_with_a_trial_that_is_no_longer_alive_allows_another() -> None:
    s = BreakerState(state="half_open", consecutive_failures=3, opened_at=T0, trial_in_flight=True)
    assert not breaker_allows(s, T0, OPEN_S)[0]
    ok, why, after = breaker_allows(s, T0, OPEN_S, trial_alive=False)
    assert ok and "without a verdict" in why and after.trial_in_flight


def test_half_open_without_trial_in_flight_allows_one() -> None:
    s = BreakerState(state="half_open", consecutive_failures=3, opened_at=T0)
    ok, _, after = breaker_allows(s, T0, OPEN_S)
    assert ok and after.trial_in_flight


def test_trial_success_closes_and_clears_the_count() -> None:
    trial = breaker_allows(fail_n(BreakerState(), 3), T0 + OPEN_S, OPEN_S)[2]
    s = breaker_record(trial, True, T0 + OPEN_S + 30, failures=3)
    assert s == BreakerState()
    assert breaker_allows(s, T0 + OPEN_S + 31, OPEN_S)[0]


def test_trial_failure_reopens_with_a_new_open_time() -> None:
    trial = breaker_allows(fail_n(BreakerState(), 3), T0 + OPEN_S, OPEN_S)[2]
    s = breaker_record(trial, False, T0 + OPEN_S + 30, failures=3)
    assert (s.state, s.consecutive_failures, s.opened_at, s.trial_in_flight) == (
        "open",
        4,
        T0 + OPEN_S + 30,
        False,
    )
    assert not breaker_allows(s, T0 + OPEN_S + 60, OPEN_S)[0]
    assert breaker_allows(s, T0 + 2 * OPEN_S + 30, OPEN_S)[0]


def test_success_resets_consecutive_failures_while_closed() -> None:
    s = breaker_record(fail_n(BreakerState(), 2), True, T0, failures=3)
    assert s.consecutive_failures == 0
    assert fail_n(s, 2).state == "closed"


def test_failure_while_open_restarts_the_open_period() -> None:
    s = fail_n(BreakerState(), 3)
    later = breaker_record(s, False, T0 + 4000, failures=3)
    assert (later.state, later.opened_at, later.consecutive_failures) == ("open", T0 + 4000, 4)
    assert not breaker_allows(later, T0 + 4000 + OPEN_S - 1, OPEN_S)[0]


def test_state_is_validated_and_frozen() -> None:
    with pytest.raises(ValidationError):
        BreakerState.model_validate({"state": "ajar"})
    with pytest.raises(ValidationError):
        BreakerState().state = "open"  # type: ignore[misc]


@pytest.mark.parametrize(("n", "said"), [(1, "1 consecutive failure"), (2, "2 consecutive failures")])
def test_the_breaker_counts_its_failures_in_words_closed_and_open(n: int, said: str) -> None:
    ok, why, _ = breaker_allows(fail_n(BreakerState(), n), T0, OPEN_S)
    assert ok and why == f"closed ({said})"
    opened = BreakerState()
    for _ in range(n):
        opened = breaker_record(opened, False, T0, failures=n)
    ok, why, _ = breaker_allows(opened, T0 + 600, OPEN_S)
    assert not ok and why == f"open since 2023-11-14T22:13:20Z after {said}, half-open in 3000 s"
