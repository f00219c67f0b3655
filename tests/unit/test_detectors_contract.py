"""The contract every built-in streaming detector keeps (see analyze/detectors/base.py)."""

from __future__ import annotations

import json
import warnings
from typing import Any

import numpy as np
import pytest

from autonomic.analyze.detectors import AutoSeasonal, Ensemble, StreamingDetector, builtin_detectors, from_state

DETECTORS = builtin_detectors()
# keep the seasonal warm-ups short in tests
SMALL: dict[str, dict[str, object]] = {"seasonal": {"period": 8}, "autoseasonal": {"learn": 64, "max_period": 20}}


def make(name: str, **kw: object) -> StreamingDetector:
    return DETECTORS[name](**{**SMALL.get(name, {}), **kw})


def noisy(steps: int = 300, n: int = 4, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(steps)[:, None]
    return 10.0 + np.sin(2 * np.pi * t / 8) + rng.normal(0, 0.5, size=(steps, n)) * np.arange(1, n + 1)


def run(det: StreamingDetector, data: np.ndarray) -> np.ndarray:
    return np.array([det.update(row) for row in data])


def test_registry_lists_every_detector_kind() -> None:
    assert set(DETECTORS) == {"ewma", "mad", "seasonal", "cusum", "autoseasonal", "novelty", "ensemble"}
    assert all(cls.name == name for name, cls in DETECTORS.items())


@pytest.mark.parametrize("name", DETECTORS)
def test_state_round_trip_mid_stream_gives_identical_scores(name: str) -> None:
    data = noisy()
    data[150:160, 1] = np.nan
    data[200:, 2] += 8.0
    det = make(name)
    run(det, data[:170])
    blob = json.dumps(det.state_dict(), allow_nan=False)  # strict JSON
    twin = from_state(json.loads(blob))
    assert np.array_equal(run(det, data[170:]), run(twin, data[170:]))
    assert json.dumps(det.state_dict()) == json.dumps(twin.state_dict())


@pytest.mark.parametrize("name", DETECTORS)
def test_fresh_detector_state_round_trips(name: str) -> None:
    det = make(name)
    twin = type(det).from_state(json.loads(json.dumps(det.state_dict())))
    data = noisy(60)
    assert np.array_equal(run(det, data), run(twin, data))


@pytest.mark.parametrize("name", DETECTORS)
def test_same_input_gives_same_scores(name: str) -> None:
    data = noisy(seed=3)
    assert np.array_equal(run(make(name), data), run(make(name), data))


@pytest.mark.parametrize("name", DETECTORS)
def test_constant_input_scores_zero(name: str) -> None:
    data = np.tile(np.array([0.0, 5.0, -3.25, 1e12]), (200, 1))
    assert not run(make(name), data).any()


@pytest.mark.parametrize("name", DETECTORS)
def test_missing_samples_score_zero_and_leave_state_unchanged(name: str) -> None:
    data = noisy(200, n=2)
    gappy = data.copy()
    gappy[100:120, 0] = np.nan
    gappy[130, 0] = np.inf
    with_gaps = make(name)
    scores = run(with_gaps, gappy)
    assert (scores[100:120, 0] == 0).all() and scores[130, 0] == 0
    # series 1 never had a gap: identical to a run without any gap in series 0
    assert np.array_equal(scores[:, 1], run(make(name), data)[:, 1])


@pytest.mark.parametrize("name", DETECTORS)
def test_scores_stay_within_unit_interval_even_for_huge_values(name: str) -> None:
    data = noisy(250, n=3)
    data[120, 0] = 1e300
    data[121:, 1] *= -1e200
    data[200, 2] = -1.7e308
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow / invalid warnings escape
        scores = run(make(name), data)
    assert np.isfinite(scores).all() and (scores >= 0).all() and (scores <= 1).all()


@pytest.mark.parametrize("name", DETECTORS)
def test_n_series_at_once_equal_n_separate_runs(name: str) -> None:
    data = noisy(250, n=3, seed=5)
    data[180:, 0] += 5
    together = run(make(name), data)
    for j in range(3):
        alone = run(make(name), data[:, j : j + 1])[:, 0]
        assert np.array_equal(together[:, j], alone)


@pytest.mark.parametrize("name", DETECTORS)
def test_protect_keeps_a_level_shift_flagged_longer(name: str) -> None:
    rng = np.random.default_rng(7)
    data = 10.0 + rng.normal(0, 1.0, size=(600, 1))
    data[300:, 0] += 10.0  # a lasting shift
    flagged = {}
    for protect in (True, False):
        scores = run(make(name, protect=protect), data)[300:, 0]
        flagged[protect] = int((scores >= 0.5).sum())
    assert flagged[True] > flagged[False]


@pytest.mark.parametrize("name", DETECTORS)
def test_a_spike_scores_higher_than_normal_samples(name: str) -> None:
    data = noisy(300, n=1, seed=2)
    data[250, 0] += 25.0
    scores = run(make(name), data)[:, 0]
    assert scores[250] > np.quantile(scores[100:250], 0.9)


@pytest.mark.parametrize("name", DETECTORS)
def test_wrong_shape_is_rejected(name: str) -> None:
    det = make(name)
    det.update(np.zeros(3))
    with pytest.raises(ValueError, match="expected 3 series"):
        det.update(np.zeros(4))
    with pytest.raises(ValueError, match="shape"):
        det.update(np.zeros((2, 2)))


@pytest.mark.parametrize("name", sorted(DETECTORS))
def test_a_state_whose_arrays_do_not_fit_its_series_is_rejected(name: str) -> None:
    """Kernels index without bounds checks, so a damaged state must not load."""
    det = make(name)
    run(det, noisy(steps=5))
    state = json.loads(json.dumps(det.state_dict()))
    state["n_series"] = 6  # arrays hold 4 series
    with pytest.raises(ValueError, match="expected"):
        from_state(state)


def test_an_ensemble_state_whose_members_hold_other_series_is_rejected() -> None:
    det = make("ensemble")
    run(det, noisy(steps=5, n=4))
    other = make("ensemble")
    run(other, noisy(steps=5, n=6))
    state = json.loads(json.dumps(det.state_dict()))
    state["members_state"][1] = other.state_dict()["members_state"][1]
    with pytest.raises(ValueError, match="member cusum holds 6 series"):
        from_state(state)


def test_state_of_another_detector_type_is_rejected() -> None:
    state = make("ewma").state_dict()
    with pytest.raises(ValueError, match="ewma"):
        DETECTORS["cusum"].from_state(state)


def test_autoseasonal_infers_the_period_and_keeps_it_in_its_state() -> None:
    rng = np.random.default_rng(1)
    t = np.arange(400)[:, None]
    data = np.hstack([10 + 3 * np.sin(2 * np.pi * t / 12) + rng.normal(0, 0.3, (400, 1)),  # period 12
                      rng.normal(0, 1.0, (400, 1)),  # white noise: no season
                      np.cumsum(rng.normal(0, 1.0, (400, 1)), axis=0)])  # random walk: no season
    det = AutoSeasonal(learn=100, max_period=40)
    run(det, data)
    assert det.period.tolist() == [12, 1, 1]
    twin = AutoSeasonal.from_state(json.loads(json.dumps(det.state_dict())))
    assert isinstance(twin, AutoSeasonal) and twin.period.tolist() == [12, 1, 1]


def test_autoseasonal_flags_a_break_in_the_daily_pattern_that_a_plain_ewma_misses() -> None:
    rng = np.random.default_rng(2)
    t = np.arange(600)
    x = 10 + 5 * np.sin(2 * np.pi * t / 24) + rng.normal(0, 0.2, 600)
    x[500:506] = 10.0  # the cycle goes flat for a few steps: inside the usual range
    data = x[:, None]
    seasonal = run(make("autoseasonal", learn=200, max_period=50), data)[:, 0]
    plain = run(make("ewma", alpha=0.01), data)[:, 0]
    assert seasonal[500:506].max() > 0.999 > seasonal[300:500].max()
    assert plain[500:506].max() < plain[300:500].max()


def test_autoseasonal_rejects_a_warm_up_shorter_than_the_longest_period() -> None:
    with pytest.raises(ValueError, match="max_period"):
        AutoSeasonal(learn=50, max_period=60)


def test_ensemble_spatial_rule_flags_a_value_beyond_the_range_ever_seen() -> None:
    rng = np.random.default_rng(4)
    x = 10.0 + rng.normal(0, 1.0, 400)
    x[50] = 20.0  # widens the range early: later values inside it are not spatial anomalies
    x[300] = 14.0  # inside the seen range
    x[350] = 25.0  # beyond it by more than 5% of the range
    members = [{"type": "ewma", "alpha": 0.01}]
    with_rule = run(Ensemble(members=members, spatial_tolerance=0.05), x[:, None])[:, 0]
    without = run(Ensemble(members=members), x[:, None])[:, 0]
    assert with_rule[350] > 0.9 and with_rule[350] > without[350]
    assert with_rule[300] == without[300]


def test_ensemble_onset_peak_is_forgotten_when_a_member_becomes_seasonal() -> None:
    t = np.arange(300)
    x = 10 + 5 * np.sin(2 * np.pi * t / 24) + np.random.default_rng(5).normal(0, 0.2, 300)
    det = Ensemble(members=[{"type": "autoseasonal", "learn": 100, "max_period": 40}],
                                onset_decay=0.9999, calib_warmup=10)
    peaks = []
    for v in x[:101]:
        det.update(np.array([v]))
        peaks.append(float(det.peak[0]))
    assert max(peaks[:99]) > 0 and peaks[99] == 0.0  # the period was chosen at step 100 (index 99)


def test_novelty_flags_a_step_never_made_before_inside_the_usual_range() -> None:
    t = np.arange(600)
    x = np.where((t // 10) % 2 == 0, 0.0, 10.0) + 0.2 * np.sin(0.7 * t)  # a square wave
    x[500:503] = 5.0  # stops half way for three samples: inside the range, never seen there
    scores = run(make("novelty"), x[:, None])[:, 0]
    assert scores[500] > 0.99 and scores[500] > scores[300:500].max()
    plain = run(make("ewma", alpha=0.01), x[:, None])[:, 0]
    assert plain[500] < plain[300:500].max()  # a level z-score does not see it


def test_novelty_state_stays_small() -> None:
    det = make("novelty", bins=8)
    det.update(np.zeros(10))
    assert det.bytes_per_series() == 4 * 8 * 8 + 28


def test_ensemble_spatial_rule_on_an_ew_mean_flags_a_shift_no_single_sample_shows() -> None:
    rng = np.random.default_rng(8)
    x = rng.uniform(0.0, 10.0, 600)  # wide noise: single samples cover the whole range
    x[500:] = rng.uniform(7.0, 10.0, 100)  # the level moves up inside that range
    members = [{"type": "ewma", "alpha": 0.01}]
    raw_only = run(Ensemble(members=members, spatial_tolerance=0.05, onset_decay=0.99999), x[:, None])[:, 0]
    smoothed = run(Ensemble(members=members, spatial_tolerance=0.05, onset_decay=0.99999,
                            spatial_rates=[1.0, 0.1]), x[:, None])[:, 0]
    assert smoothed[500:].max() > 0.6 > raw_only[500:].max()


def test_ensemble_echo_damping_spares_only_stronger_alarms() -> None:
    rng = np.random.default_rng(9)
    x = 10.0 + rng.normal(0, 1.0, 800)
    x[400], x[420], x[440] = 30.0, 32.0, 200.0  # a new extreme, a slightly higher one, a much higher one
    kw: dict[str, Any] = {"members": [{"type": "ewma", "alpha": 0.01}], "spatial_tolerance": 0.05,
                          "onset_decay": 0.99999}
    plain = run(Ensemble(**kw), x[:, None])[:, 0]
    echo = run(Ensemble(**kw, echo_steps=300, echo_level=0.3), x[:, None])[:, 0]
    assert echo[400] == plain[400] > 0.9  # the first alarm is not damped
    assert plain[420] > 0.3 and echo[420] < 0.5 * plain[420]  # an echo 20 steps later
    assert echo[440] == plain[440] > echo[400]  # stronger than the previous alarm: not an echo


def test_autoseasonal_keeps_only_the_longest_period_of_profile() -> None:
    t = np.arange(300)[:, None]
    data = np.hstack([10 + np.sin(2 * np.pi * t / 12), np.random.default_rng(3).normal(0, 1, (300, 1))])
    det = AutoSeasonal(learn=100, max_period=40)
    det.update(data[0])
    assert det.prof.shape == (2, 1)  # only the level until the periods are known
    run(det, data[1:])
    assert det.period.tolist() == [12, 1] and det.prof.shape == (2, 12)


def test_detect_configuration_round_trips_mid_stream() -> None:
    from autonomic.analyze.detect_cli import make_detector

    rng = np.random.default_rng(10)
    t = np.arange(900)[:, None]
    data = 10 + 3 * np.sin(2 * np.pi * t / 24) + rng.normal(0, 0.5, (900, 3))
    data[700:, 1] += 6.0
    data[750, 2] = 40.0
    det = make_detector()
    run(det, data[:650])  # past the seasonal warm-up (600 steps)
    twin = from_state(json.loads(json.dumps(det.state_dict(), allow_nan=False)))
    assert np.array_equal(run(det, data[650:]), run(twin, data[650:]))
