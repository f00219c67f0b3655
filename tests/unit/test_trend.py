"""predict_breach and TrendDetector: forecasts for rising series (and, asked, falling ones), nothing for the rest."""

from __future__ import annotations

import json
import re
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from autonomic.analyze.thresholds import Thresholds
from autonomic.analyze.trend import TrendDetector, TrendSpec, default_trend_specs, predict_breach
from autonomic.errors import ConfigError
from autonomic.model import FindingKind, Sample, Severity
from autonomic.monitor.series import SeriesStore
from autonomic.testing import RecordingReader

NOW = 1_700_000_000.0
STEP = 5.0


def _times(n: int = 60) -> np.ndarray:
    return NOW - STEP * np.arange(n - 1, -1, -1, dtype=np.float64)


def _leak(slope: float = 0.1, start: float = 40.0, noise: float = 0.2, n: int = 60, seed: int = 1):
    """A linear leak ``start + slope * t`` (t from the first sample) with gaussian noise."""
    ts = _times(n)
    rng = np.random.default_rng(seed)
    values = start + slope * (ts - ts[0]) + rng.normal(0.0, noise, n)
    truth_eta = (85.0 - (start + slope * (NOW - ts[0]))) / slope
    return ts, values, truth_eta


def test_linear_leak_predicts_eta_within_ten_percent_of_truth() -> None:
    ts, values, truth = _leak()
    forecast = predict_breach(ts, values, 85.0, now=NOW)
    assert forecast is not None
    assert forecast.eta_s == pytest.approx(truth, rel=0.10)
    assert forecast.breach_at == pytest.approx(NOW + forecast.eta_s)
    assert forecast.slope_per_s == pytest.approx(0.1, rel=0.05)
    assert forecast.r2 > 0.95 and forecast.zscore >= 2.0 and forecast.ema > forecast.ema_start
    assert forecast.points == 60 and forecast.current == values[-1] and forecast.threshold == 85.0


def test_points_out_of_time_order_give_the_forecast_of_the_same_points_in_order() -> None:
    """The latest value, the window's first half and the EMA were read by position: a leak whose
    points came out of order had no forecast, or one from the wrong 'latest' value."""
    ts, values, _ = _leak()
    in_order = predict_breach(ts, values, 85.0, now=NOW)
    shuffled = np.random.default_rng(4).permutation(ts.size)
    out_of_order = predict_breach(ts[shuffled], values[shuffled], 85.0, now=NOW)
    assert in_order is not None and out_of_order is not None
    assert asdict(out_of_order) == pytest.approx(asdict(in_order), rel=1e-9)


def test_prediction_interval_contains_eta_and_truth() -> None:
    for seed in range(5):
        ts, values, truth = _leak(noise=1.0, seed=seed)
        forecast = predict_breach(ts, values, 85.0, now=NOW)
        assert forecast is not None
        assert forecast.eta_low_s <= forecast.eta_s <= forecast.eta_high_s
        assert forecast.eta_high_s - forecast.eta_low_s < forecast.eta_s
        assert forecast.eta_low_s <= truth <= forecast.eta_high_s


def test_slope_not_significantly_rising_leaves_the_interval_open_ended() -> None:
    ts, values, _ = _leak(slope=0.005, noise=2.0, seed=3, n=20)
    forecast = predict_breach(ts, values, 85.0, now=NOW, min_r2=0.0, z_min=0.0, horizon_s=1e9)
    assert forecast is not None
    assert 0.0 < forecast.eta_low_s < forecast.eta_s and forecast.eta_high_s == float("inf")
    evidence = forecast.evidence()
    assert evidence["eta_high_s"] is None and evidence["eta_s"] == forecast.eta_s
    json.dumps(evidence, allow_nan=False)


def test_flat_series_gives_no_forecast() -> None:
    ts = _times()
    assert predict_breach(ts, np.full(ts.size, 60.0), 85.0, now=NOW) is None


def test_noisy_flat_series_gives_no_forecast() -> None:
    ts = _times()
    for seed in range(20):
        values = 60.0 + np.random.default_rng(seed).normal(0.0, 3.0, ts.size)
        assert predict_breach(ts, values, 85.0, now=NOW) is None


def test_decreasing_series_gives_no_forecast() -> None:
    ts = _times()
    values = 80.0 - 0.1 * (ts - ts[0])
    assert predict_breach(ts, values, 85.0, now=NOW) is None


def test_too_few_points_in_the_window_gives_no_forecast() -> None:
    ts, values, _ = _leak(n=7)
    assert predict_breach(ts, values, 85.0, now=NOW) is None
    assert predict_breach(ts, values, 85.0, now=NOW, min_points=5) is not None
    # plenty of points, but all older than the window
    ts, values, _ = _leak()
    assert predict_breach(ts - 400.0, values, 85.0, now=NOW, window_s=300.0) is None


def test_already_breached_series_gives_no_forecast() -> None:
    ts, values, _ = _leak(start=60.0, noise=0.0)  # ends at 89.5
    assert values[-1] > 85.0
    assert predict_breach(ts, values, 85.0, now=NOW) is None


def test_breach_beyond_the_horizon_gives_no_forecast() -> None:
    ts, values, truth = _leak(slope=0.01, noise=0.01)  # about 5 h away
    assert truth > 3600
    assert predict_breach(ts, values, 85.0, now=NOW) is None
    assert predict_breach(ts, values, 85.0, now=NOW, horizon_s=truth * 2) is not None


def test_rise_that_has_fallen_back_is_rejected_by_the_ema_rule() -> None:
    ts = _times()
    values = np.concatenate([np.full(30, 50.0), np.full(22, 70.0), np.linspace(45.0, 20.0, 8)])
    assert stats.linregress(ts - NOW, values).slope > 0  # the fit alone still says "rising"
    assert predict_breach(ts, values, 85.0, now=NOW, min_r2=0.0, z_min=-100.0) is None
    rising = values.copy()
    rising[-8:] = np.linspace(72.0, 80.0, 8)
    assert predict_breach(ts, rising, 85.0, now=NOW, min_r2=0.0, z_min=-100.0) is not None


def test_small_rise_within_the_noise_is_rejected_by_the_zscore_rule() -> None:
    ts, values, _ = _leak(slope=0.02, noise=2.0, seed=0)
    loose = predict_breach(ts, values, 85.0, now=NOW, z_min=0.0, horizon_s=1e6)
    assert loose is not None and loose.r2 >= 0.5 and loose.zscore < 2.0
    assert predict_breach(ts, values, 85.0, now=NOW, horizon_s=1e6) is None


def _store_with_leak(service: str = "api", metric: str = "memory_percent") -> SeriesStore:
    ts, values, _ = _leak()
    store = SeriesStore()
    store.extend(Sample(service, metric, float(t), float(v)) for t, v in zip(ts, values, strict=True))
    return store


def test_trend_detector_emits_forecast_finding_with_threshold_from_thresholds() -> None:
    detector = TrendDetector({"api": default_trend_specs()}, {"api": Thresholds(memory_percent=85.0)})
    [f] = detector.detect(_store_with_leak(), NOW)
    assert (f.service, f.metric, f.kind, f.cause) == ("api", "memory_percent", FindingKind.FORECAST, "memory")
    assert f.severity is Severity.CRITICAL  # about 155 s away, under 3600 / 4
    assert f.threshold == 85.0 and f.value == f.evidence["current"]
    assert 0.5 < f.confidence <= 0.95
    assert f.summary.startswith("memory_percent will reach 85 in ")
    # a time as a person reads it (2.5 min), not a count of seconds
    assert re.search(r"in 2\.[4-7] min \(slope 0\.\d+/s, r2 (0\.9\d|1\.00)\)$", f.summary), f.summary
    assert set(f.evidence) >= {"slope_per_s", "r2", "ema", "zscore", "eta_s", "eta_low_s", "eta_high_s"}
    json.dumps(f.model_dump(mode="json"), allow_nan=False)


def test_trend_detector_warns_when_the_breach_is_far_within_the_horizon() -> None:
    spec = TrendSpec(metric="memory_percent", threshold=99.0)  # about 300 s away
    [f] = TrendDetector({"api": [spec]}, {}).detect(_store_with_leak(), NOW)
    assert f.threshold == 99.0 and f.severity is Severity.CRITICAL
    spec = TrendSpec(metric="memory_percent", threshold=99.0, horizon_s=1000.0)
    [f] = TrendDetector({"api": [spec]}, {}).detect(_store_with_leak(), NOW)
    assert f.severity is Severity.WARNING


def test_trend_detector_is_silent_for_missing_or_healthy_series() -> None:
    detector = TrendDetector({"api": default_trend_specs(), "web": default_trend_specs()}, {})
    store = SeriesStore()
    store.extend(Sample("api", "memory_percent", NOW - i, 40.0) for i in range(30, 0, -1))
    assert detector.detect(store, NOW) == []


def test_trend_detector_reads_no_window_of_a_series_with_no_sample_in_it() -> None:
    """A fleet's services mostly lack most default forecasts' metrics: each is one cheap ``latest``
    read, not a window read and a fit."""
    detector = TrendDetector({"api": default_trend_specs(), "web": default_trend_specs()}, {})
    store = _store_with_leak()  # api's memory_percent, ending at NOW
    store.extend([Sample("web", "pool_utilization", NOW - 400, 50.0)])  # older than the 300 s window
    reader = RecordingReader(store)
    [finding] = detector.detect(reader, NOW)
    assert (finding.service, finding.metric) == ("api", "memory_percent")
    assert [r for r in reader.reads if r[0] == "window"] == [("window", "api", "memory_percent")]
    assert len(reader.reads) == 7  # one latest per (service, spec), and the one window


def test_trend_spec_for_a_metric_without_any_threshold_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="queue_depth"):
        TrendDetector({"api": [TrendSpec(metric="queue_depth")]}, {})
    with_extra = {"api": Thresholds(extra={"queue_depth": 9})}
    detector = TrendDetector({"api": [TrendSpec(metric="queue_depth")]}, with_extra)
    assert detector.detect(SeriesStore(), NOW) == []


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [({"min_points": 2}, "min_points"), ({"ema_alpha": 0}, "ema_alpha"), ({"window_s": -1}, "window_s")],
)
def test_bad_trend_spec_is_rejected_naming_the_field(kwargs: dict, field: str) -> None:
    with pytest.raises(ValueError, match=field):
        TrendSpec(metric="memory_percent", **kwargs)


def _sawtooth_store(seconds: int) -> SeriesStore:
    """A healthy garbage-collected heap: 55 -> 65 % over two minutes, then back, one sample a
    second since the series store began (the engine just started)."""
    rng = np.random.default_rng(3)
    store = SeriesStore()
    store.extend(Sample("api", "memory_percent", NOW - seconds + i, 55 + 10 * (i % 120) / 120 + rng.normal(0, 0.3))
                 for i in range(1, seconds + 1))
    return store


def test_a_series_younger_than_half_the_window_is_not_extrapolated_to_a_breach() -> None:
    """The first upswing of a healthy sawtooth, 30 s after the series began, is a clean rise
    (r2 ~0.99) 'reaching 85 in four minutes'; with half the 300 s window of history it is not."""
    store = _sawtooth_store(30)
    ts, values = store.window("api", "memory_percent", NOW - 300)
    assert predict_breach(ts, values, 85.0, now=NOW) is not None  # no span rule: a forecast
    assert predict_breach(ts, values, 85.0, now=NOW, min_span_s=150) is None
    detector = TrendDetector({"api": [TrendSpec(metric="memory_percent")]}, {})
    assert all(detector.detect(_sawtooth_store(s), NOW) == [] for s in range(10, 600, 7))


def test_min_span_defaults_to_half_the_window_and_may_not_exceed_it() -> None:
    assert TrendSpec(metric="memory_percent", window_s=300).span_s == 150
    assert TrendSpec(metric="memory_percent", window_s=300, min_span_s=0).span_s == 0
    with pytest.raises(ValueError, match="min_span_s"):
        TrendSpec(metric="memory_percent", window_s=300, min_span_s=301)
    ts, values, _ = _leak()  # 295 s of a leak: forecast with the default span
    assert predict_breach(ts, values, 85.0, now=NOW, min_span_s=150) is not None


def test_a_rise_levelling_off_below_the_line_is_not_a_breach() -> None:
    """Five minutes after a restart, memory warms up to a plateau of 50 % (time constant two
    minutes): a clean rise (r2 0.9, 'reaching 85 in five minutes' as a straight line) that
    levels off far below the line. A straight leak of the same noise is still forecast."""
    rng = np.random.default_rng(1)
    ts = np.arange(-299.0, 1.0)
    warm_up = 10 + 40 * (1 - np.exp(-(ts + 300) / 120)) + rng.normal(0, 0.5, ts.size)
    assert predict_breach(ts, warm_up, 85.0, now=0.0, min_span_s=150) is None
    leak = 10 + 0.12 * (ts + 300) + rng.normal(0, 0.5, ts.size)
    assert predict_breach(ts, leak, 85.0, now=0.0, min_span_s=150) is not None
    accelerating = 10 + 0.0005 * (ts + 300) ** 2 + rng.normal(0, 0.5, ts.size)
    assert predict_breach(ts, accelerating, 85.0, now=0.0, min_span_s=150) is not None
    x = ts + 300
    levelling_above = 10 + 0.25 * x - 0.0002 * x * x + rng.normal(0, 0.5, ts.size)  # peaks at 88 in 325 s
    assert predict_breach(ts, levelling_above, 85.0, now=0.0, min_span_s=150) is not None


def test_the_default_checks_need_no_more_history_than_the_series_store_keeps() -> None:
    assert {s.span_s for s in default_trend_specs()} == {150.0}
    assert [s.span_s for s in default_trend_specs(held_s=143.8)] == [pytest.approx(0.9 * 143.8)] * 3


@pytest.mark.parametrize("interval_s", [5.0, 30.0, 45.0, 60.0, 120.0])
def test_the_default_checks_forecast_a_leak_at_any_collection_interval(interval_s: float) -> None:
    """At an interval past 43 s the default 300 s window held fewer than the 8 points a forecast
    needs: memory, pool and disk forecasts were silently never made. Their window now holds
    min_points samples at the engine's interval."""
    held_s = 719 * interval_s  # what the series store keeps (720 samples)
    ts = np.arange(0.0, 40 * interval_s, interval_s)
    store = SeriesStore()
    store.extend(Sample("api", "memory_percent", t, 40 + 40 * t / ts[-1]) for t in ts)
    detector = TrendDetector({"api": default_trend_specs(held_s, interval_s)}, {})
    assert [f.metric for f in detector.detect(store, ts[-1])] == ["memory_percent"]


def test_an_exact_line_has_an_interval_of_width_zero_never_zero_to_infinity() -> None:
    """A leak with no noise at all (a count rising one per sample): rounding made the band's
    discriminant a hair below zero for some windows, read as 'the band never closes', so a
    certain forecast showed '95%: 0 s to inf'."""
    for start in range(200):
        ts = np.arange(start, start + 300.0)
        forecast = predict_breach(ts, 50 + 0.03 * ts, 85.0, now=ts[-1])
        assert forecast is not None
        assert (forecast.eta_low_s, forecast.eta_high_s) == pytest.approx((forecast.eta_s, forecast.eta_s))


@pytest.mark.parametrize("metric", ["http_requests_total", "gc_pause_seconds_count", "latency_seconds_sum",
                                    "latency_seconds_bucket"])
def test_a_trend_or_seasonal_forecast_of_a_counter_is_refused_naming_the_metric_and_the_fix(tmp_path: Path,
                                                                                               metric: str) -> None:
    """A counter only grows: a line through it reaches any threshold, so every forecast of it
    would be a false breach, acted on. The config says so, with the rate to forecast instead."""
    from autonomic.config import load_config_data
    from autonomic.errors import ConfigError

    for key in ("trends", "seasonal_trends"):
        data = {"engine": {"state_dir": str(tmp_path / "s"), "host_metrics": False}, "builtin_patterns": False,
                "services": [{"name": "web", key: [{"metric": metric, "threshold": 100}]}]}
        with pytest.raises(ConfigError) as err:
            load_config_data(data, source="a.yaml", base_dir=tmp_path)
        assert key in str(err.value) and metric in str(err.value) and f"rate({metric}[5m])" in str(err.value)
    assert TrendSpec(metric="queue_depth").metric == "queue_depth"  # a gauge is fine


def test_a_step_then_flat_is_not_a_breach_but_a_leak_a_step_interrupts_still_is() -> None:
    """A deploy raises memory from 40 % to 60 % and it stays there: the straight line through the
    window rose 20 points in a few minutes (r2 ~0.75) and said '85 reached in 200 s', critical, for
    as long as the step was in the window, wherever in the window's second half it sits. A line
    with one step fits far better and is flat. A leak (0.05 %/s) that a step interrupts is still
    forecast."""
    ts = np.arange(-300.0, 0.1, 5.0)
    rng = np.random.default_rng(1)
    for at in (-150.0, -120.0, -90.0, -60.0):
        step = np.where(ts < at, 40.0, 60.0) + rng.normal(0.0, 0.3, ts.size)
        assert predict_breach(ts, step, 85.0, now=0.0, min_span_s=150) is None, at
    leak = 40 + 0.05 * (ts + 300) + np.where(ts > -100, 10.0, 0.0) + rng.normal(0.0, 0.3, ts.size)
    forecast = predict_breach(ts, leak, 85.0, now=0.0, min_span_s=150)
    assert forecast is not None and forecast.slope_per_s > 0.05


def _stairs(every: float, size: float = 4.0, seed: int = 1, deploys: tuple[float, ...] = ()) -> SeriesStore:
    """api's memory_percent every 10 s for 40 minutes up to NOW: 40 % stepping up ``size`` every
    ``every`` seconds (``every`` 0: no staircase), plus a 10 % level shift at each of ``deploys``
    (seconds before NOW)."""
    rng = np.random.default_rng(seed)
    ts = np.arange(NOW - 2400.0, NOW + 0.1, 10.0)
    values = 40.0 + rng.normal(0.0, 0.3, ts.size)
    if every:
        values += size * np.floor((ts - ts[0]) / every)
    for at in deploys:
        values += np.where(ts >= NOW - at, 10.0, 0.0)
    store = SeriesStore()
    store.extend(Sample("api", "memory_percent", float(t), float(v)) for t, v in zip(ts, values, strict=True))
    return store


def test_a_leak_that_grows_one_jump_per_window_is_forecast_with_the_longer_view_and_deploys_are_not() -> None:
    """A leak growing 4 % every 300 s in jumps shows one jump per 300 s window: each alike to a
    deploy, so rule 9 never forecast it. With ``long_window_s`` (1200 s: four jumps in view) the
    jumps are a slope and the breach of 85 is forecast at the staircase's mean rate, while the
    window holds the latest jump in its second half (the rules before 9 judge the rest of the
    cycle, as for any rise): a forecast every 5 minutes, for 2 of them. A lone deploy, or two,
    in the longer view are still steps: no forecast."""
    plain, longer = TrendSpec(metric="memory_percent"), TrendSpec(metric="memory_percent", long_window_s=1200)
    th = {"api": Thresholds()}
    store = _stairs(300.0)  # jumps at NOW - 300 k
    forecast_at = []
    for lag in range(0, 300, 10):  # the latest jump (300 - lag) s before
        at = NOW - lag
        assert TrendDetector({"api": [plain]}, th).detect(store, at) == []
        for f in TrendDetector({"api": [longer]}, th).detect(store, at):
            assert f.kind == FindingKind.FORECAST and f.metric == "memory_percent"
            assert f.evidence["slope_per_s"] == pytest.approx(4.0 / 300, rel=0.25)
            forecast_at.append(lag)
    assert set(range(150, 230, 10)) <= set(forecast_at) and len(forecast_at) <= 15, forecast_at
    for deploys in ((100.0,), (700.0, 100.0), (1100.0, 150.0)):
        store = _stairs(0.0, deploys=deploys)
        for lag in range(0, 300, 30):
            assert TrendDetector({"api": [longer]}, th).detect(store, NOW - lag) == [], (deploys, lag)


def test_the_longer_view_is_read_only_for_a_rise_the_window_reads_as_one_step() -> None:
    """A plain leak is forecast from the window alone: one window read per spec, the longer view
    never asked (a fleet pays for it only where a step is seen)."""
    longer = TrendSpec(metric="memory_percent", long_window_s=1200)
    reader = RecordingReader(_store_with_leak())
    assert TrendDetector({"api": [longer]}, {}).detect(reader, NOW)
    assert [r for r in reader.reads if r[0] == "window"] == [("window", "api", "memory_percent")]
    reader = RecordingReader(_stairs(300.0))
    TrendDetector({"api": [longer]}, {}).detect(reader, NOW - 240)
    assert [r for r in reader.reads if r[0] == "window"] == [("window", "api", "memory_percent")] * 2


def test_a_longer_view_shorter_than_two_windows_is_refused_naming_the_field() -> None:
    with pytest.raises(ValueError, match="long_window_s .* at least twice window_s"):
        TrendSpec(metric="memory_percent", window_s=300, long_window_s=500)
    assert TrendSpec(metric="memory_percent").long_window_s == 0  # off unless asked for


def test_the_step_rule_over_a_full_series_judges_in_memory_of_its_points_not_their_square() -> None:
    """Rule 9 fits a line with a step at every point of the window. Over a full series store (720
    samples: a 1 h window at 5 s) it held a design matrix per candidate step, 720 x 720 x 3 floats
    and their pseudo-inverses (tens of MB, ~0.15 s on the loop's thread for each rising metric at
    each tick; 2,000 points: 0.5 GB, over a second). Now a few arrays of the points' length: the
    same verdicts (a step then flat: none; a leak a step interrupts: forecast), in well under 2 MB."""
    import tracemalloc

    ts = np.arange(-3595.0, 0.1, 5.0)
    assert ts.size == 720
    rng = np.random.default_rng(2)
    step = np.where(ts < -1200, 40.0, 60.0) + rng.normal(0.0, 0.3, ts.size)
    leak = 40 + 0.01 * (ts + 3600) + np.where(ts > -1000, 5.0, 0.0) + rng.normal(0.0, 0.3, ts.size)
    tracemalloc.start()
    try:
        flat = predict_breach(ts, step, 85.0, now=0.0, window_s=3600, min_span_s=1800)
        leaking = predict_breach(ts, leak, 85.0, now=0.0, window_s=3600, min_span_s=1800)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert flat is None
    assert leaking is not None and leaking.slope_per_s > 0.005
    assert peak < 2_000_000, peak


def test_a_falling_spec_forecasts_a_metric_falling_to_its_line_in_the_metrics_own_terms() -> None:
    """Free connections fall 0.1 a second from 60 toward a floor of 10: the forecast of the
    negated series, reported in the metric's own terms (a falling slope, the real current value
    and line), as a rising one's is: the chart, explain and a pattern's ``trend: falling`` read it."""
    ts = _times()
    rng = np.random.default_rng(4)
    values = 60.0 - 0.1 * (ts - ts[0]) + rng.normal(0.0, 0.2, ts.size)
    truth = (60.0 - 0.1 * (NOW - ts[0]) - 10.0) / 0.1
    store = SeriesStore()
    store.extend(Sample("db", "pool_free", float(t), float(v)) for t, v in zip(ts, values, strict=True))
    spec = TrendSpec(metric="pool_free", direction="falling", threshold=10.0)
    [f] = TrendDetector({"db": [spec]}, {}).detect(store, NOW)
    assert (f.kind, f.cause, f.threshold, f.value) == (FindingKind.FORECAST, "pool", 10.0, values[-1])
    assert f.summary.startswith("pool_free will fall to 10 in ") and "slope -0.1" in f.summary, f.summary
    e = f.evidence
    assert e["slope_per_s"] == pytest.approx(-0.1, rel=0.05) and e["eta_s"] == pytest.approx(truth, rel=0.10)
    assert e["threshold"] == 10.0 and e["current"] == values[-1] and e["intercept"] == pytest.approx(values[-1], abs=1)
    assert e["ema"] < e["ema_start"] and e["zscore"] >= 2.0 and e["eta_low_s"] <= e["eta_s"] <= e["eta_high_s"]
    # the other ways round: a rise toward a floor, and the default (rising) spec of this fall
    rising = SeriesStore()
    rising.extend(Sample("db", "pool_free", float(t), float(120 - v)) for t, v in zip(ts, values, strict=True))
    assert TrendDetector({"db": [spec]}, {}).detect(rising, NOW) == []
    assert TrendDetector({"db": [TrendSpec(metric="pool_free", threshold=10.0)]}, {}).detect(store, NOW) == []


def test_a_falling_spec_takes_the_services_floor_and_without_one_is_refused_naming_where_to_set_it() -> None:
    spec = TrendSpec(metric="pool_free", direction="falling")
    with pytest.raises(ConfigError, match=r"metric 'pool_free': no threshold \(set threshold on the spec or "
                                          r"thresholds.minimums for the service\)"):
        TrendDetector({"db": [spec]}, {"db": Thresholds(extra={"pool_free": 90.0})})  # a maximum is no floor
    detector = TrendDetector({"db": [spec]}, {"db": Thresholds(minimums={"pool_free": 10.0})})
    ts = _times()
    store = SeriesStore()
    store.extend(Sample("db", "pool_free", float(t), 60.0 - 0.1 * (t - ts[0])) for t in ts)
    [f] = detector.detect(store, NOW)
    assert f.threshold == 10.0 and f.summary.startswith("pool_free will fall to 10 in ")
    with pytest.raises(ValueError, match="direction"):
        TrendSpec(metric="pool_free", direction="down", threshold=1.0)  # type: ignore[arg-type]
