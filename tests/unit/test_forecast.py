"""predict_breach_seasonal / stream_forecasts: leaks forecast on time, cycles and steps do not."""

from __future__ import annotations

import json

import numpy as np
import pytest

from autonomic.analyze.forecast import (
    SeasonalTrendDetector,
    SeasonalTrendSpec,
    predict_breach_seasonal,
    stream_forecasts,
)
from autonomic.analyze.thresholds import Thresholds
from autonomic.clock import duration
from autonomic.model import Sample
from autonomic.monitor.series import SeriesStore

DAY = 86_400.0
DT = 60.0
T0 = 1_700_000_000.0 - (1_700_000_000.0 % DAY)  # midnight, so the phase is easy to read
THRESHOLD = 90.0


def _series(days: float = 2.0, *, amp: float = 0.0, noise: float = 0.3, seed: int = 0,
            leak_from: float | None = None, slope_per_h: float = 0.0, base: float = 60.0,
            step_at: float | None = None, step: float = 0.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(ts, noisy values, clean values): base + daily sine + optional leak and step."""
    ts = T0 + np.arange(int(days * DAY / DT)) * DT
    clean = base + amp * np.sin(2 * np.pi * (ts - T0) / DAY)
    if leak_from is not None:
        clean = clean + slope_per_h / 3600.0 * np.clip(ts - (T0 + leak_from), 0.0, None)
    if step_at is not None:
        clean = clean + step * (ts >= T0 + step_at)
    values = clean + np.random.default_rng(seed).normal(0.0, noise, ts.size)
    return ts, values, clean


def _clean_crossing(ts: np.ndarray, clean_fn, now: float) -> float:
    """First time after ``now`` the clean signal (extended by ``clean_fn``) reaches the threshold."""
    future = now + np.arange(1, 48 * 60) * DT
    over = clean_fn(future) >= THRESHOLD
    assert over.any()
    return float(future[over.argmax()])


def test_pure_leak_predicts_the_breach_within_a_quarter_of_the_lead() -> None:
    # 60 -> leak of 0.55/h from the start; at day 2 the mean is 86.4, reaching 90 6.5 h later;
    # the truth is the first noisy sample at or over 90, a little earlier
    ts_all, values_all, _ = _series(days=2.5, leak_from=0.0, slope_per_h=0.55)
    now = T0 + 2 * DAY
    past = ts_all <= now
    ts, values = ts_all[past], values_all[past]
    truth = float(ts_all[~past][values_all[~past] >= THRESHOLD][0])
    spec = SeasonalTrendSpec(metric="memory_percent", horizon_s=10 * 3600.0)
    forecast = predict_breach_seasonal(ts, values, THRESHOLD, now=now, spec=spec)
    assert forecast is not None
    assert forecast.breach_at == pytest.approx(truth, abs=0.25 * (truth - now))
    assert forecast.slope_per_s * 3600 == pytest.approx(0.55, rel=0.1)
    assert forecast.eta_low_s <= forecast.eta_s <= forecast.eta_high_s
    assert forecast.zscore >= spec.t_min and forecast.current < THRESHOLD
    json.dumps(forecast.evidence(), allow_nan=False)


def test_leak_on_a_daily_cycle_adds_the_profile_back_when_projecting() -> None:
    ts, values, _ = _series(amp=8.0, leak_from=1.0 * DAY, slope_per_h=0.8, noise=0.5, seed=3)
    now = float(ts[-1])

    def clean(t: np.ndarray) -> np.ndarray:
        return 60.0 + 8.0 * np.sin(2 * np.pi * (t - T0) / DAY) + 0.8 / 3600.0 * (t - T0 - DAY)

    truth = _clean_crossing(ts, clean, now)
    forecast = predict_breach_seasonal(ts, values, THRESHOLD, now=now)
    assert forecast is not None
    # the line alone (level + slope * h) would not reach 90 within the 6 h horizon; the cycle does
    assert forecast.intercept + forecast.slope_per_s * SeasonalTrendSpec(metric="x").horizon_s < 85.0
    assert abs(forecast.breach_at - truth) <= 0.2 * (truth - now)


def test_daily_cycle_close_to_the_threshold_gives_no_forecast() -> None:
    ts, values, _ = _series(days=3.0, amp=10.0, base=76.0, noise=1.0, seed=5)  # peaks at 86
    for now in ts[int(1.6 * DAY / DT)::120]:
        assert predict_breach_seasonal(ts, values, THRESHOLD, now=float(now)) is None


def test_step_without_trend_gives_no_forecast() -> None:
    ts, values, _ = _series(days=2.5, amp=4.0, base=75.0, step_at=2.0 * DAY, step=6.0, seed=7)
    for now in ts[int(2.0 * DAY / DT)::30]:
        assert predict_breach_seasonal(ts, values, THRESHOLD, now=float(now)) is None


def test_too_little_history_gives_none() -> None:
    ts, values, _ = _series(days=2.0, leak_from=1.6 * DAY, slope_per_h=2.5)
    now = float(ts[-1])
    assert predict_breach_seasonal(ts, values, THRESHOLD, now=now) is not None
    young = ts >= now - 1.2 * DAY  # less than min_history_s (1.5 days) of samples
    assert predict_breach_seasonal(ts[young], values[young], THRESHOLD, now=now) is None
    assert predict_breach_seasonal([], [], THRESHOLD, now=now) is None


def test_non_finite_and_unsorted_samples_are_ignored() -> None:
    ts, values, _ = _series(leak_from=1.6 * DAY, slope_per_h=2.5)
    now = float(ts[-1])
    clean = predict_breach_seasonal(ts, values, THRESHOLD, now=now)
    dirty = values.copy()
    dirty[::97] = np.nan
    order = np.random.default_rng(1).permutation(ts.size)
    messy = predict_breach_seasonal(ts[order], dirty[order], THRESHOLD, now=now)
    assert clean is not None and messy is not None
    assert messy.eta_s == pytest.approx(clean.eta_s, rel=0.05)


def test_streaming_run_matches_the_single_series_function() -> None:
    a = _series(leak_from=1.6 * DAY, slope_per_h=2.5, seed=1)
    b = _series(amp=8.0, base=70.0, seed=2)
    ts = a[0]
    values = np.stack([a[1], b[1]])
    spec = SeasonalTrendSpec(metric="x")
    eval_ts, found, breach_at = stream_forecasts(ts, values, np.full(2, THRESHOLD), spec)
    assert found[0].any() and not found[1].any()
    for j in range(0, eval_ts.size, 13):
        single = predict_breach_seasonal(ts, values[0], THRESHOLD, now=float(eval_ts[j]), spec=spec)
        assert (single is not None) == bool(found[0, j])
        if single is not None:
            assert single.breach_at == pytest.approx(breach_at[0, j])


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [({"harmonics": 0}, "harmonics"), ({"block_s": 0}, "block_s"), ({"confirm": 0}, "confirm"),
     ({"unknown": 1}, "unknown")],
)
def test_bad_seasonal_spec_is_rejected_naming_the_field(kwargs: dict, field: str) -> None:
    with pytest.raises(ValueError, match=field):
        SeasonalTrendSpec(metric="memory_percent", **kwargs)


def _run_detector(leak: bool, free: bool = False) -> tuple[list[float], float]:
    """Three days of one sample a minute through a SeasonalTrendDetector (evaluating hourly):
    a daily cycle of +-8 around 50, and with ``leak`` a rise of 36 a day from day 1.5, which
    crosses 90 in the last day. Returns the times of its findings and the true breach time.
    ``free``: the same disk measured as free space (100 - use), forecast falling to its floor 10."""
    day = 86_400.0
    if free:
        spec = SeasonalTrendSpec(metric="disk_free_percent", direction="falling", eval_s=3600.0, confirm=1)
        det = SeasonalTrendDetector({"db": [spec]}, {"db": Thresholds(minimums={"disk_free_percent": 10})})
    else:
        spec = SeasonalTrendSpec(metric="disk_percent", eval_s=3600.0, confirm=1)
        det = SeasonalTrendDetector({"db": [spec]}, {"db": Thresholds(disk_percent=90)})
    store = SeriesStore()
    rng = np.random.default_rng(5)
    found, breach = [], np.inf
    for i in range(int(3 * day / 60)):
        t = 1_700_000_000.0 + 60.0 * i
        x = i * 60.0
        v = 50 + 8 * np.sin(2 * np.pi * x / day) + rng.normal(0, 0.5)
        if leak and x > 1.5 * day:
            v += (x - 1.5 * day) * (45.0 / (1.25 * day))
        if v >= 90 and breach == np.inf:
            breach = t
        store.append(Sample("db", spec.metric, t, float(100 - v if free else v)))
        found += [f.ts for f in det.detect(store, t)]
        if t >= breach:
            break
    return found, breach


def test_the_seasonal_detector_forecasts_a_leak_on_a_daily_cycle_ahead_of_the_breach() -> None:
    found, breach = _run_detector(leak=True)
    assert breach < 1_700_000_000.0 + 3 * 86_400  # the series does cross the line
    assert found, "no forecast before the breach"
    assert breach - found[0] >= 600  # at least ten minutes ahead
    assert found[0] > 1_700_000_000.0 + 1.5 * 86_400  # not before the leak began


def test_the_seasonal_detector_is_quiet_on_a_cycle_that_stays_under_the_line() -> None:
    found, _ = _run_detector(leak=False)
    assert found == []


def test_free_space_falling_to_its_floor_is_forecast_exactly_as_the_use_rising_to_its_maximum() -> None:
    """``direction: falling``: the disk of the leak above, measured as free space and watched
    for a floor of 10, is forecast at the very same times (the rules run on the mirror image),
    and quiet on the cycle alone."""
    assert _run_detector(leak=True, free=True) == _run_detector(leak=True)
    assert _run_detector(leak=False, free=True) == ([], np.inf)


def test_the_seasonal_detector_keeps_its_history_across_a_checkpoint() -> None:
    import json

    spec = SeasonalTrendSpec(metric="disk_percent", eval_s=3600.0, confirm=1)
    det = SeasonalTrendDetector({"db": [spec]}, {"db": Thresholds(disk_percent=90)})
    store = SeriesStore()
    for i in range(300):
        t = 1_700_000_000.0 + 60.0 * i
        store.append(Sample("db", "disk_percent", t, 50.0 + i * 0.01))
        det.detect(store, t)
    saved = json.loads(json.dumps(det.checkpoint(), allow_nan=False))
    again = SeasonalTrendDetector({"db": [spec]}, {"db": Thresholds(disk_percent=90)})
    assert again.restore(saved) == []
    assert again._ts == det._ts and again._values == det._values and len(again._ts[("db", "disk_percent")]) == 300
    other = SeasonalTrendDetector({"web": [spec]}, {"web": Thresholds(disk_percent=90)})
    assert "no longer configured" in other.restore(saved)[0] and other._ts == {}


@pytest.mark.parametrize("state", [
    {}, {"series": 3}, {"series": [{"service": "db"}]},
    {"series": [{"service": "db", "metric": "disk_percent", "ts": [2.0, 1.0], "values": [1.0, 2.0]}]},
    {"series": [{"service": "db", "metric": "disk_percent", "ts": [1.0], "values": []}]},
    {"series": [{"service": "db", "metric": "disk_percent", "ts": ["x"], "values": [1.0]}]},
])
def test_a_malformed_seasonal_checkpoint_is_refused(state: dict) -> None:
    det = SeasonalTrendDetector({"db": [SeasonalTrendSpec(metric="disk_percent")]}, {"db": Thresholds()})
    with pytest.raises(ValueError, match="seasonal_trend state"):
        det.restore(state)


def _filling_disk(cleanup: float, minutes_after: int, free: bool = False) -> tuple[list, list]:
    """A disk at 44 % on a daily cycle of +-5, filling 5 %/h for the last six hours of two days,
    90 about five hours away, one sample a minute through a SeasonalTrendDetector (evaluating
    every 5 min). ``cleanup`` points are taken off a minute after its first forecast. Returns
    (the first forecast's findings, then each detect's findings for ``minutes_after``).
    ``free``: measured as free space (100 - use), forecast falling to a floor of 10."""
    spec = SeasonalTrendSpec(metric="disk_percent", direction="falling", threshold=10) if free else \
        SeasonalTrendSpec(metric="disk_percent")
    det = SeasonalTrendDetector({"db": [spec]}, {"db": Thresholds(disk_percent=90)})
    store = SeriesStore()
    rng = np.random.default_rng(1)
    first: list = []
    after: list = []
    for i in range(int(2.5 * DAY / 60)):
        t, x = T0 + 60.0 * i, i * 60.0
        v = 44 + 5 * np.sin(2 * np.pi * x / DAY) + max(0.0, x - (2 * DAY - 6 * 3600)) / 3600 * 5.0 + rng.normal(0, 0.3)
        if first and len(after) >= 1:
            v -= cleanup
        store.append(Sample("db", "disk_percent", t, float(100 - v if free else v)))
        found = list(det.detect(store, t))
        if not first:
            first = found
        elif len(after) < minutes_after:
            after.append(found)
        else:
            break
    return first, after


def test_a_seasonal_forecast_holds_between_evaluations_counting_down_to_the_same_breach() -> None:
    """Evaluated every five minutes, a forecast is given again at every detect until the next
    evaluation: an incident is kept open by findings coming, and one every five minutes would
    let it close between them."""
    (first,), after = _filling_disk(cleanup=0.0, minutes_after=4)
    for minute, found in enumerate(after, start=1):
        (again,) = found
        assert again.id != first.id and again.ts == first.ts + 60.0 * minute
        assert again.evidence["breach_at"] == first.evidence["breach_at"]
        assert again.evidence["eta_s"] == pytest.approx(first.evidence["eta_s"] - 60.0 * minute)
        assert f"in {duration(again.evidence['eta_s'])} " in again.summary  # counting down, as a person reads it


@pytest.mark.parametrize("free", [False, True], ids=["use", "free_space"])
@pytest.mark.parametrize("cleanup", [8.0, 16.0])
def test_a_series_that_just_fell_is_not_forecast_from_blocks_that_still_hold_its_old_level(
        cleanup: float, free: bool) -> None:
    """A minute after the first forecast the disk is cleaned (it goes on filling, 90 now beyond
    the horizon). For up to two blocks the medians still hold the old level and a step needs two
    blocks on each side, so the fit projected the breach from a level the series had left,
    and the held forecast was given again until the next evaluation: nothing for 30 minutes.
    Measured as free space falling to a floor, the cleanup is a rise back: the same."""
    first, after = _filling_disk(cleanup=cleanup, minutes_after=30, free=free)
    assert first and after[0] and not any(after[1:])  # held until the cleanup, nothing after it
    if free:
        (f,) = first
        assert f.summary.startswith("disk_percent will fall to 10 in ") and f.evidence["slope_per_s"] < 0
        assert f.threshold == 10 and f.value == pytest.approx(f.evidence["current"]) and f.value > 10


def test_a_restored_seasonal_detector_waits_for_three_live_samples_before_forecasting() -> None:
    """After a restart the kept history alone would forecast at once, from one live sample: the
    fix's verification then has no course before the action to judge it by (it needs 3), and a
    person is paged for a fix that may have worked. So the first forecast waits for 3."""
    day = 86_400.0
    spec = SeasonalTrendSpec(metric="disk_percent", eval_s=600.0, confirm=1)
    det = SeasonalTrendDetector({"db": [spec]}, {"db": Thresholds(disk_percent=90)})
    store = SeriesStore()
    t0 = 1_700_000_000.0

    def value(i: int) -> float:  # a daily cycle with a leak from day 1.5 that crosses 90 in the third day
        x = 60.0 * i
        return 50 + 8 * np.sin(2 * np.pi * x / day) + max(0.0, x - 1.5 * day) * 45.0 / (1.25 * day)

    i, found = 0, []
    while not found:
        i += 1
        store.append(Sample("db", "disk_percent", t0 + 60.0 * i, value(i)))
        found = list(det.detect(store, t0 + 60.0 * i))
    assert value(i) < 90  # forecast ahead of the breach
    again = SeasonalTrendDetector({"db": [spec]}, {"db": Thresholds(disk_percent=90)})
    assert again.restore(json.loads(json.dumps(det.checkpoint()))) == []
    live = SeriesStore()
    for k in range(1, 4):
        t = t0 + 60.0 * (i + 10 + k)  # ten minutes down, then the engine runs again
        live.append(Sample("db", "disk_percent", t, value(i + 10 + k)))
        got = list(again.detect(live, t))
        assert (got != []) == (k == 3), f"live sample {k}: {got}"
