from __future__ import annotations

import pytest
from pydantic import ValidationError

from autonomic.plan.backoff import (
    BackoffState,
    backoff_allows,
    backoff_delay,
    backoff_record,
    backoff_reset,
)
from autonomic.plan.policy import BackoffConfig, PolicyConfig

CFG = BackoffConfig()  # 10 s doubling to 300 s, reset after 600 s


def failed(n: int, at: float) -> BackoffState:
    s = BackoffState()
    for _ in range(n):
        s = backoff_record(s, False, at, CFG)
    return s


def test_delay_doubles_from_ten_seconds_to_a_five_minute_cap() -> None:
    assert [backoff_delay(n, CFG) for n in range(0, 8)] == [0, 10, 20, 40, 80, 160, 300, 300]
    assert backoff_delay(10_000, CFG) == 300  # no overflow for absurd counts


def test_no_failures_allows() -> None:
    ok, why, s = backoff_allows(BackoffState(), 1000.0, CFG)
    assert (ok, why, s) == (True, "no recent failed attempts", BackoffState())


def test_after_failures_waits_the_delay_then_allows() -> None:
    s = failed(3, at=1000.0)
    assert s.failures == 3 and s.last_failure_at == 1000.0
    ok, why, _ = backoff_allows(s, 1039.0, CFG)
    assert not ok
    assert why == "3 failed attempts in a row: backing off 40 s, next attempt in 1 s"
    ok, why, kept = backoff_allows(s, 1040.0, CFG)
    assert ok and kept == s and "backoff of 40 s has passed" in why


def test_reset_after_ten_minutes_without_a_failure() -> None:
    s = failed(6, at=0.0)
    assert not backoff_allows(s, 299.0, CFG)[0]
    ok, why, new = backoff_allows(s, 600.0, CFG)
    assert ok and new == BackoffState() and why.startswith("reset: stable 600 s")
    # a failure long after the last one starts counting from one again
    assert backoff_record(s, False, 700.0, CFG) == BackoffState(failures=1, last_failure_at=700.0)


def test_success_and_a_persons_action_clear_the_count() -> None:
    s = failed(4, at=0.0)
    assert backoff_record(s, True, 5.0, CFG) == BackoffState()
    assert backoff_reset(s) == BackoffState()
    assert backoff_allows(backoff_reset(s), 1.0, CFG)[0]


def test_each_failure_pushes_the_next_attempt_further() -> None:
    s = BackoffState()
    now = 0.0
    waits = []
    for _ in range(7):
        s = backoff_record(s, False, now, CFG)
        wait = 0.0
        while not backoff_allows(s, now + wait, CFG)[0]:
            wait += 1.0
        waits.append(wait)
        now += wait
    assert waits == [10, 20, 40, 80, 160, 300, 300]


def test_config_lives_in_the_policy_and_names_bad_fields() -> None:
    pol = PolicyConfig.model_validate({"backoff": {"base_s": 5, "cap_s": 60}})
    assert (pol.backoff.base_s, pol.backoff.cap_s, pol.backoff.reset_after_s) == (5, 60, 600)
    with pytest.raises(ValidationError) as exc:
        PolicyConfig.model_validate({"backoff": {"base_s": 0}})
    assert [e["loc"] for e in exc.value.errors()] == [("backoff", "base_s")]
    with pytest.raises(ValidationError, match=r"cap_s \(5\) must be at least base_s \(10\)"):
        BackoffConfig(cap_s=5)


def test_a_failure_whose_attempt_started_within_the_reset_time_follows_the_last_in_a_row() -> None:
    """An attempt decided 20 s after the last failure whose verification (a rollout watched for
    ten minutes) fails 620 s after it is the second failure in a row: counted from when the last
    failure was recorded, it read as a first failure, and the backoff never grew past base_s."""
    s = failed(1, at=0.0)
    assert backoff_record(s, False, 620.0, CFG, started=20.0) == BackoffState(failures=2, last_failure_at=620.0)
    assert not backoff_allows(backoff_record(s, False, 620.0, CFG, started=20.0), 630.0, CFG)[0]  # 20 s now
    # one decided after the reset time has passed starts afresh, however long it took
    assert backoff_record(s, False, 1300.0, CFG, started=600.0) == BackoffState(failures=1, last_failure_at=1300.0)
    # without ``started`` the attempt is taken to have started when it ended, as before
    assert backoff_record(s, False, 620.0, CFG) == BackoffState(failures=1, last_failure_at=620.0)


@pytest.mark.parametrize("cap_s", [600.0, 900.0])
def test_a_cap_the_reset_time_would_cut_short_is_refused(cap_s: float) -> None:
    """A backoff capped at or above reset_after_s never reached its cap: the wait that long
    cleared the count, the next failure was a first again and the backoff went back to base_s
    (10, 20, ... 320 s, then 10 s again)."""
    with pytest.raises(ValidationError, match=rf"reset_after_s \(600\) must be more than cap_s \({cap_s:g}\)"):
        PolicyConfig.model_validate({"backoff": {"cap_s": cap_s}})
    BackoffConfig(cap_s=cap_s, reset_after_s=cap_s + 1)  # a reset time past the cap is fine
