"""Verification verdicts: pass, fail, inconclusive, each rule."""

from __future__ import annotations

import numpy as np
import pytest

from autonomic.execute.verify import Judgement, judge
from autonomic.model import VerifySpec, VerifyVerdict


def series(*values: float) -> tuple[np.ndarray, np.ndarray]:
    return np.arange(len(values), dtype=float), np.array(values, dtype=float)


def test_too_few_after_samples_is_inconclusive_never_pass() -> None:
    j = judge(series(0.5, 0.6), series(0.0), VerifySpec(metric="error_rate", max=0.05, min_samples=3))
    assert j.verdict == VerifyVerdict.INCONCLUSIVE
    assert j.reason == "too little data: 1 of 3 samples"
    assert j.after["n"] == 1


def test_non_finite_samples_do_not_count() -> None:
    j = judge(series(), series(0.0, np.nan, np.inf), VerifySpec(metric="error_rate", max=0.05, min_samples=2))
    assert j.verdict == VerifyVerdict.INCONCLUSIVE and "1 of 2" in j.reason


def test_all_after_samples_within_bounds_passes() -> None:
    j = judge(series(0.4, 0.5, 0.6), series(0.01, 0.02, 0.0), VerifySpec(metric="error_rate", max=0.05))
    assert j.verdict == VerifyVerdict.PASS
    assert j.after == {"n": 3, "mean": 0.01, "median": 0.01, "max": 0.02, "min": 0.0, "p_value": None}
    assert j.before["mean"] == pytest.approx(0.5)


def test_tolerance_widens_the_bounds() -> None:
    spec = VerifySpec(metric="latency_ms", max=100, min=10, tolerance=5)
    assert judge(series(), series(104, 6, 50), spec).verdict == VerifyVerdict.PASS
    assert judge(series(), series(106, 50, 50), spec).verdict == VerifyVerdict.INCONCLUSIVE


def test_out_of_bounds_and_significantly_worse_fails() -> None:
    before = series(0.0, 0.0, 0.0, 0.0, 0.0)
    after = series(0.3, 0.31, 0.32, 0.3, 0.32)
    j = judge(before, after, VerifySpec(metric="error_rate", max=0.05))
    assert j.verdict == VerifyVerdict.FAIL
    assert j.reason.startswith("worse than before: error_rate mean 0.31 vs 0.00, p=")
    assert j.after["p_value"] is not None and j.after["p_value"] < 0.05


def test_worse_with_few_samples_fails_on_the_mean_alone() -> None:
    j = judge(series(0.1, 0.1), series(0.5, 0.6, 0.7), VerifySpec(metric="error_rate", max=0.2))
    assert j.verdict == VerifyVerdict.FAIL
    assert j.reason == "worse than before: error_rate mean 0.60 vs 0.10"
    assert j.after["p_value"] is None


def test_higher_mean_without_significance_is_not_worse() -> None:
    before = series(0.2, 0.9, 0.1, 0.8, 0.3, 0.7)
    after = series(0.9, 0.2, 0.8, 0.3, 0.85, 0.25)
    j = judge(before, after, VerifySpec(metric="error_rate", max=0.5))
    assert j.after["mean"] > j.before["mean"]
    assert j.verdict == VerifyVerdict.INCONCLUSIVE
    assert j.after["p_value"] >= 0.05


def test_mean_worse_by_no_more_than_tolerance_is_not_worse() -> None:
    spec = VerifySpec(metric="error_rate", max=0.05, tolerance=0.05)
    j = judge(series(0.3, 0.3, 0.3), series(0.32, 0.32, 0.32), spec)
    assert j.verdict == VerifyVerdict.INCONCLUSIVE


def test_still_out_of_bounds_but_better_is_inconclusive() -> None:
    j = judge(series(0.9, 0.9, 0.9), series(0.5, 0.5, 0.5), VerifySpec(metric="error_rate", max=0.05))
    assert j.verdict == VerifyVerdict.INCONCLUSIVE
    assert j.reason == "still out of bounds (max 0.05), not worse than before"


def test_below_min_and_lower_than_before_fails() -> None:
    before = series(1, 1, 1, 1, 1)
    after = series(0, 0, 0, 0, 0)
    j = judge(before, after, VerifySpec(metric="probe_ok", min=1))
    assert j.verdict == VerifyVerdict.FAIL
    assert "probe_ok mean 0.00 vs 1.00" in j.reason


def test_above_max_is_not_worse_when_the_metric_went_down() -> None:
    # harmful direction is up for a max bound: a lower mean is never "worse"
    j = judge(series(5, 5, 5, 5, 5), series(3, 3, 3, 3, 3), VerifySpec(metric="load1", max=2))
    assert j.verdict == VerifyVerdict.INCONCLUSIVE


def test_no_before_samples_cannot_be_worse() -> None:
    j = judge(series(), series(0.9, 0.9, 0.9), VerifySpec(metric="error_rate", max=0.05))
    assert j.verdict == VerifyVerdict.INCONCLUSIVE
    assert j.before == {"n": 0, "mean": None, "median": None, "max": None, "min": None, "p_value": None}


def test_judgement_is_frozen() -> None:
    j = judge(series(), series(1, 1, 1), VerifySpec(metric="up", min=1))
    assert isinstance(j, Judgement) and j.verdict == VerifyVerdict.PASS
    with pytest.raises(ValueError):
        j.reason = "changed"  # type: ignore[misc]


def test_a_metric_that_went_silent_part_way_through_the_window_is_inconclusive_never_pass() -> None:
    # three good samples right after the fix, then nothing: the service died and nobody scrapes it
    after = (np.array([3.0, 4.0, 5.0]), np.array([0.01, 0.01, 0.01]))
    spec = VerifySpec(metric="error_rate", max=0.05, window_s=10)
    j = judge(series(0.5, 0.5), after, spec, recent_since=8.0)
    assert j.verdict == VerifyVerdict.INCONCLUSIVE
    assert j.reason == ("went silent: no error_rate sample in the last part of the watch window "
                        "(the newest is 3 s before it)")
    assert judge(series(0.5, 0.5), after, spec).verdict == VerifyVerdict.PASS  # without the check: as before
    assert judge(series(0.5, 0.5), after, spec, recent_since=5.0).verdict == VerifyVerdict.PASS


def test_a_non_finite_sample_late_in_the_window_does_not_count_as_the_metric_reporting() -> None:
    after = (np.array([3.0, 4.0, 5.0, 9.0]), np.array([1.0, 1.0, 1.0, np.nan]))
    j = judge(series(), after, VerifySpec(metric="up", min=1), recent_since=8.0)
    assert j.verdict == VerifyVerdict.INCONCLUSIVE and j.reason.startswith("went silent")


def _course(values_at: float, slope: float, ts: np.ndarray, noise: float, seed: int) -> np.ndarray:
    return values_at + slope * ts + np.random.default_rng(seed).normal(0.0, noise, ts.size)


PREVENT = VerifySpec(metric="memory_percent", max=85, window_s=60, delay_s=5, min_samples=3)


def test_a_preventive_fix_that_leaves_the_metric_on_its_course_to_the_line_is_inconclusive_not_pass() -> None:
    """Memory rises 1.8 %/min toward 85 and the fix changes nothing: every after-sample is still
    under 85 (the breach was forecast, never crossed), which alone would pass."""
    tb, ta = np.arange(-60.0, 0.0), np.arange(5.0, 66.0)
    before, after = (tb, _course(60, 0.03, tb, 0.5, 1)), (ta, _course(60, 0.03, ta, 0.5, 2))
    assert judge(before, after, PREVENT).verdict == VerifyVerdict.PASS  # not preventive: bounds only
    j = judge(before, after, PREVENT, preventive=True)
    assert j.verdict == VerifyVerdict.INCONCLUSIVE
    assert "but still on its course before the action" in j.reason and "not shown averted" in j.reason


def test_a_preventive_fix_that_moves_the_metric_off_its_course_passes() -> None:
    """A restart drops memory 40 points and the leak resumes at the same pace: off its course."""
    tb, ta = np.arange(-60.0, 0.0), np.arange(5.0, 66.0)
    j = judge((tb, _course(60, 0.03, tb, 0.5, 1)), (ta, _course(20, 0.03, ta, 0.5, 2)), PREVENT, preventive=True)
    assert j.verdict == VerifyVerdict.PASS and "off its course before the action" in j.reason


def test_a_preventive_fix_toward_a_minimum_is_judged_on_the_way_down() -> None:
    spec = VerifySpec(metric="free_mb", min=100, window_s=60, min_samples=3)
    tb, ta = np.arange(-60.0, 0.0), np.arange(5.0, 66.0)
    before = (tb, _course(500, -2.0, tb, 1.0, 1))
    assert judge(before, (ta, _course(500, -2.0, ta, 1.0, 2)), spec, preventive=True).verdict == "inconclusive"
    assert judge(before, (ta, _course(900, -2.0, ta, 1.0, 2)), spec, preventive=True).verdict == "pass"


def test_a_preventive_fix_with_no_course_before_it_is_inconclusive() -> None:
    j = judge(series(70, 71), series(10, 10, 10), PREVENT, preventive=True)
    assert j.verdict == VerifyVerdict.INCONCLUSIVE and "no course before the action" in j.reason


def test_a_noiseless_course_is_not_left_by_rounding_error() -> None:
    """A leak as exact as a test's line: after-samples on it differ from the extrapolation only
    by floating-point rounding, which is no departure from the course."""
    tb, ta = np.arange(-60.0, 0.0), np.arange(5.0, 66.0)
    before, after = (tb, 52.13 + 0.03 * tb), (ta, 52.13 + 0.03 * ta)
    assert judge(before, after, PREVENT, preventive=True).verdict == VerifyVerdict.INCONCLUSIVE
    assert judge(before, (ta, 52.13 - 1e-6 + 0.03 * ta), PREVENT, preventive=True).verdict == VerifyVerdict.PASS


def test_a_preventive_fix_the_breach_came_through_on_its_course_is_inconclusive_not_worse() -> None:
    """Rising 0.6 a second, the line is crossed within the watch window as forecast. Against the
    before mean that is 'worse' (FAIL, so a pool raise would be undone while the pool runs
    dry); against the course it was on, it is unchanged: a person decides."""
    tb, ta = np.arange(-60.0, 0.0), np.arange(5.0, 66.0)
    before, after = (tb, _course(50, 0.6, tb, 0.5, 1)), (ta, _course(50, 0.6, ta, 0.5, 2))
    assert judge(before, after, PREVENT).verdict == VerifyVerdict.FAIL  # not preventive: worse than before
    j = judge(before, after, PREVENT, preventive=True)
    assert j.verdict == VerifyVerdict.INCONCLUSIVE
    assert j.reason.startswith("still out of bounds (max 85), on its course before the action (+35.5/min)")
    assert j.reason.endswith("the breach came as forecast, the fix did not change it")


def test_a_preventive_fix_that_sped_the_metric_up_past_the_line_fails() -> None:
    tb, ta = np.arange(-60.0, 0.0), np.arange(5.0, 66.0)
    before, after = (tb, _course(50, 0.3, tb, 0.5, 1)), (ta, _course(50, 0.9, ta, 0.5, 2))
    j = judge(before, after, PREVENT, preventive=True)
    assert j.verdict == VerifyVerdict.FAIL and j.reason.startswith("worse than its course before the action")


POOL = VerifySpec(metric="pool_utilization", max=90, window_s=60, delay_s=5, min_samples=3)


def _young_leak(seed: int, fix: bool) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """15 before-samples, flat at 20 % until a leak begins 5 samples before the action and adds
    5 % a sample (as the demo's pool leak at the normal pace, when the forecast comes early).
    With ``fix``, the pool is raised by 20 % at the action: the same use is 5/6 of the percent it
    was, and the leak stops at 80 %; without, the metric goes on exactly as before."""
    rng = np.random.default_rng(seed)
    tb, ta = np.arange(-14.0, 1.0), np.arange(2.0, 17.0)

    def leak(t: np.ndarray) -> np.ndarray:
        return 20 + 5 * np.clip(t + 5, 0, None)

    after = np.minimum(leak(ta) * 5 / 6, 80) if fix else leak(ta)
    return (tb, leak(tb) + rng.normal(0, 1.5, tb.size)), (ta, after + rng.normal(0, 1.5, ta.size))


def test_a_leak_that_began_late_in_the_baseline_is_judged_against_the_leaks_own_course() -> None:
    """The flat samples before the leak bent the straight line through the later half of the
    baseline to +216/min, below the leak's +300: the raise, which took the metric well off the
    leak's course, was judged still on that shallow line and escalated. The course now bends
    where the leak began."""
    from autonomic.execute.verify import _course

    before, after = _young_leak(0, fix=True)
    course = _course(before, after, POOL)
    assert course is not None and course.slope * 60 == pytest.approx(300, rel=0.1)
    j = judge(before, after, POOL, preventive=True)
    assert j.verdict == VerifyVerdict.PASS, j.reason
    assert "off its course before the action (+282/min)" in j.reason


def test_a_fix_that_changed_nothing_on_a_young_leak_leaves_it_on_its_course() -> None:
    before, after = _young_leak(0, fix=False)
    j = judge(before, after, POOL.model_copy(update={"max": 1000.0}), preventive=True)
    assert j.verdict == VerifyVerdict.INCONCLUSIVE and "but still on its course" in j.reason


@pytest.mark.parametrize("age", [5, 8, 12])
def test_choosing_where_the_course_bends_does_not_pass_unchanged_courses_more_than_the_significance_allows(
    age: int,
) -> None:
    """The bend is the best fit of many tried; tested at the plain 5 %, that choice passed an
    unchanged leak as 'off its course' in about 10 % of noisy runs. Of 400 here, at most 8 %."""
    spec = POOL.model_copy(update={"max": 1e9})
    tb, ta = np.arange(-14.0, 1.0), np.arange(2.0, 17.0)
    passed = 0
    for seed in range(400):
        rng = np.random.default_rng(seed)
        before = (tb, 20 + 5 * np.clip(tb + age, 0, None) + rng.normal(0, 2.0, tb.size))
        after = (ta, 20 + 5 * np.clip(ta + age, 0, None) + rng.normal(0, 2.0, ta.size))
        passed += judge(before, after, spec, preventive=True).verdict == VerifyVerdict.PASS
    assert passed <= 0.08 * 400


@pytest.mark.parametrize(("need", "after", "said"), [
    (1, (), "too little data: 0 of 1 sample"),
    (2, (0.0,), "too little data: 1 of 2 samples"),
])
def test_too_little_data_counts_the_samples_it_needs_in_words(need: int, after: tuple[float, ...], said: str) -> None:
    j = judge(series(0.5), series(*after), VerifySpec(metric="error_rate", max=0.05, min_samples=need))
    assert j.verdict == VerifyVerdict.INCONCLUSIVE and j.reason == said


@pytest.mark.parametrize(("after", "said"), [((0.01,), "1 sample"), ((0.01, 0.02), "2 samples")])
def test_a_pass_says_how_many_samples_it_read_in_words(after: tuple[float, ...], said: str) -> None:
    j = judge(series(0.4), series(*after), VerifySpec(metric="error_rate", max=0.05, min_samples=1))
    assert j.verdict == VerifyVerdict.PASS
    assert j.reason == f"error_rate within bounds (max 0.05) over {said}"
