"""ANOMALY findings in the loop: the streaming ensemble over a metric family of the series
store, one step per step_s, alarming once at the onset of a departure."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pydantic import ValidationError

from autonomic.analyze.anomaly import AnomalyDetector, AnomalySpec
from autonomic.config import load_config_data
from autonomic.engine import Engine
from autonomic.knowledge import Store
from autonomic.model import FindingKind, Sample, Severity
from autonomic.monitor.series import SeriesStore
from autonomic.testing import FakeClock, ReplaySource

T0 = 1_700_000_000.0


def _run(values: dict[str, np.ndarray], spec: AnomalySpec | None = None,
         skip: dict[str, set[int]] | None = None) -> list[Any]:
    """One sample a minute per service (``values[service][k]`` at minute k), the detector asked
    every minute; ``skip[service]`` lists minutes with no sample. Returns all findings."""
    spec = spec or AnomalySpec(metric="latency_ms")
    det = AnomalyDetector({service: [spec] for service in values})
    store = SeriesStore()
    found = []
    steps = len(next(iter(values.values())))
    for k in range(steps):
        now = T0 + 60.0 * k
        for service, v in values.items():
            if k not in (skip or {}).get(service, set()):
                store.append(Sample(service, spec.metric, now - 1.0, float(v[k])))
        found += det.detect(store, now)
    return found


def _noise(seed: int, steps: int = 400, level: float = 100.0) -> np.ndarray:
    return level + np.random.default_rng(seed).normal(0, 2.0, steps)


def test_a_level_shift_gives_one_anomaly_finding_for_that_service_only() -> None:
    shifted = _noise(1)
    shifted[300:] += 60.0  # 30 standard deviations
    found = _run({"api": shifted, "web": _noise(2), "db": _noise(3)})
    assert [f.service for f in found] == ["api"]
    (f,) = found
    assert f.kind == FindingKind.ANOMALY and f.severity == Severity.WARNING and f.cause == "latency"
    assert f.ts == T0 + 60.0 * 300  # at the onset, not later
    assert f.confidence >= 0.65 and f.value == pytest.approx(shifted[300])
    assert f.evidence["score"] >= 0.65 and f.evidence["surprise"] > 0
    assert set(f.evidence["members"]) == {"ewma", "cusum"} and f.evidence["members"]["ewma"] > 5


def test_noise_and_constant_series_give_no_findings() -> None:
    assert _run({"api": _noise(4, steps=1500), "web": np.full(1500, 7.0)}) == []


def test_a_service_without_new_samples_is_missing_for_that_step_and_cannot_alarm() -> None:
    shifted = _noise(5)
    shifted[300:] += 60.0
    silent = set(range(295, 400))  # api stops reporting before its shift
    found = _run({"api": shifted, "web": _noise(6)}, skip={"api": silent})
    assert found == []


def test_the_family_keeps_stepping_while_one_service_is_silent() -> None:
    shifted = _noise(7)
    shifted[300:] += 60.0
    found = _run({"api": _noise(8), "web": shifted}, skip={"api": set(range(100, 400))})
    assert [f.service for f in found] == ["web"]


def test_nothing_is_found_while_the_calibration_warms_up() -> None:
    shifted = _noise(9, steps=60)
    shifted[30:] += 30.0  # before 50 steps of calibration
    assert _run({"api": shifted}) == []


def test_specs_with_the_same_metric_and_detector_share_one_family() -> None:
    spec = AnomalySpec(metric="latency_ms")
    other = AnomalySpec(metric="latency_ms", step_s=30)
    det = AnomalyDetector({"api": [spec], "web": [spec], "db": [other]})
    assert sorted(len(f.services) for f in det.families) == [1, 2]


@pytest.mark.parametrize(("kwargs", "field"), [
    ({"score": 1.5}, "score"),
    ({"score": 0}, "score"),
    ({"step_s": 0}, "step_s"),
    ({"detector": {"members": [{"type": "nope"}]}}, "detector"),
    ({"detector": {"scale": 1, "bogus": 2}}, "detector"),
    ({"metric": ""}, "metric"),
    ({"threshold": 3}, "threshold"),
])
def test_a_bad_anomaly_spec_is_rejected_naming_the_field(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as err:
        AnomalySpec(**{"metric": "latency_ms", **kwargs})
    assert field in str(err.value)


def _config(tmp_path: Path, anomalies: list[dict[str, Any]]) -> Any:
    data = {"engine": {"interval_s": 60, "state_dir": str(tmp_path / "state"), "host_metrics": False},
            "services": [{"name": "api", "anomalies": anomalies}], "builtin_patterns": False}
    return load_config_data(data, source="autonomic.yaml", base_dir=tmp_path)


def test_watching_one_metric_twice_is_a_config_error_naming_it(tmp_path: Path) -> None:
    with pytest.raises(Exception, match=r"anomalies.*latency_ms watched twice"):
        _config(tmp_path, [{"metric": "latency_ms"}, {"metric": "latency_ms", "score": 0.95}])


def test_the_engine_opens_an_anomaly_incident_from_its_series(tmp_path: Path) -> None:
    """The whole path: samples from a source, the engine's tick, an incident of kind anomaly."""
    config = _config(tmp_path, [{"metric": "latency_ms"}])
    clock = FakeClock(T0)
    source = ReplaySource([])
    store = Store("sqlite://")
    engine = Engine(config, clock=clock, store=store, sources=[source])
    assert any(d.name == "anomaly" for d in engine.detectors)
    engine.start()
    values = _noise(10, steps=320)
    values[300:] += 60.0
    for v in values:
        source._samples.append(Sample("api", "latency_ms", clock.now(), float(v)))
        engine.tick()
        clock.advance(60.0)
    (incident,) = store.incidents(service="api")
    assert incident.kind == FindingKind.ANOMALY and incident.cause == "latency"
    assert incident.opened_at == T0 + 60.0 * 300


def _feed(det: AnomalyDetector, store: SeriesStore, values: dict[str, np.ndarray], start: int, stop: int) -> list[Any]:
    found = []
    for k in range(start, stop):
        now = T0 + 60.0 * k
        for service, v in values.items():
            store.append(Sample(service, "latency_ms", now - 1.0, float(v[k])))
        found += det.detect(store, now)
    return found


def test_a_restored_detector_continues_exactly_where_the_checkpoint_left_it() -> None:
    import json

    shifted = _noise(11)
    shifted[300:] += 60.0
    values = {"api": shifted, "web": _noise(12)}
    spec = AnomalySpec(metric="latency_ms")
    store = SeriesStore()
    first = AnomalyDetector({"api": [spec], "web": [spec]})
    _feed(first, store, values, 0, 200)
    saved = json.loads(json.dumps(first.checkpoint(), allow_nan=False))  # as the engine writes it
    second = AnomalyDetector({"api": [spec], "web": [spec]})
    assert second.restore(saved) == []
    a = _feed(first, store, values, 200, 400)
    b = _feed(second, store, values, 200, 400)
    assert [(f.service, f.ts, f.confidence) for f in a] == [(f.service, f.ts, f.confidence) for f in b]
    assert [f.service for f in b] == ["api"]


def test_a_checkpoint_of_other_services_or_settings_is_not_used() -> None:
    spec = AnomalySpec(metric="latency_ms")
    det = AnomalyDetector({"api": [spec]})
    store = SeriesStore()
    _feed(det, store, {"api": _noise(13)}, 0, 60)
    saved = det.checkpoint()
    grown = AnomalyDetector({"api": [spec], "web": [spec]})
    notes = grown.restore(saved)
    assert notes and "services changed" in notes[0]
    assert grown.families[0].detector.n_series is None  # fresh
    other = AnomalyDetector({"api": [AnomalySpec(metric="latency_ms", score=0.7, step_s=30)]})
    assert "no longer configured" in other.restore(saved)[0]


def _family(**changes: Any) -> dict[str, Any]:
    saved = AnomalyDetector({"api": [AnomalySpec(metric="latency_ms")]}).checkpoint()["families"][0]
    return {"families": [{**saved, **changes}]}


@pytest.mark.parametrize("state", [
    {}, {"families": "x"}, {"families": [1]},
    _family(detector={"type": "ewma", "params": {}, "n_series": 1, "steps": 0, "state": None}),
    _family(last_step="soon"),
    _family(detector={"type": "ensemble", "params": {}, "n_series": 3, "steps": 2, "state": None}),
])
def test_a_malformed_checkpoint_is_refused_with_a_reason(state: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="anomaly state"):
        AnomalyDetector({"api": [AnomalySpec(metric="latency_ms")]}).restore(state)


def _engine(tmp_path: Path) -> tuple[Engine, ReplaySource, FakeClock]:
    config = _config(tmp_path, [{"metric": "latency_ms"}])
    clock = FakeClock(T0)
    source = ReplaySource([])
    engine = Engine(config, clock=clock, store=Store("sqlite://"), sources=[source])
    engine.start()
    return engine, source, clock


def _anomaly(engine: Engine) -> AnomalyDetector:
    det = next(d for d in engine.detectors if isinstance(d, AnomalyDetector))
    return det


def test_the_engine_keeps_learned_baselines_across_a_restart(tmp_path: Path) -> None:
    engine, source, clock = _engine(tmp_path)
    for v in _noise(14, steps=80):
        source._samples.append(Sample("api", "latency_ms", clock.now(), float(v)))
        engine.tick()
        clock.advance(60.0)
    steps = _anomaly(engine).families[0].detector.steps
    assert steps >= 79
    engine.shutdown()
    assert (tmp_path / "state" / "detectors.json").exists()
    again, _, _ = _engine(tmp_path)
    assert _anomaly(again).families[0].detector.steps == steps


def test_an_unreadable_checkpoint_is_moved_aside_and_the_engine_starts_fresh(tmp_path: Path) -> None:
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "detectors.json").write_text("{not json")
    engine, source, clock = _engine(tmp_path)
    assert (tmp_path / "state" / "detectors.json.bad").read_text() == "{not json"
    assert _anomaly(engine).families[0].detector.n_series is None
    source._samples.append(Sample("api", "latency_ms", clock.now(), 1.0))
    engine.tick()  # and the loop runs
    assert _anomaly(engine).families[0].detector.steps == 1


SEASONAL = {"members": [{"type": "seasonal", "period": 60}], "onset_decay": 0.99}  # an hour of minutes


def _hourly(seed: int, minutes: int) -> np.ndarray:
    """A strong hourly cycle (amplitude 50) with noise of 1, one value per minute."""
    k = np.arange(minutes)
    return 100.0 + 50.0 * np.sin(2 * np.pi * k / 60.0) + np.random.default_rng(seed).normal(0, 1.0, minutes)


def _seasonal_z(det: AnomalyDetector) -> float:
    """The seasonal member's last z: the distance from its profile in its own deviations (heavy
    tailed on noise, as each phase's deviation is learned from few samples: compare medians)."""
    return float(det.families[0].detector.members[0].last_raw[0])


def test_steps_follow_the_clock_when_the_detector_is_asked_late_so_a_seasonal_phase_does_not_slide() -> None:
    """The engine asks every interval_s (5 s here, a little late each time, as a busy loop is):
    a family steps once per step_s boundary of the clock, not once per step_s after the last
    call, so 1,440 steps of 60 s stay a day and a seasonal member's phase stays on the clock
    (before, this family made 686 steps in 720 minutes)."""
    spec = AnomalySpec(metric="latency_ms", detector=SEASONAL)
    det = AnomalyDetector({"api": [spec]})
    store = SeriesStore()
    values = _hourly(20, 12 * 60)
    rng = np.random.default_rng(21)
    now, fed, zs = T0, 0, []
    while now < T0 + 60.0 * len(values) - 1:
        while fed < len(values) and T0 + 60.0 * fed <= now:
            store.append(Sample("api", "latency_ms", T0 + 60.0 * fed, float(values[fed])))
            fed += 1
        assert det.detect(store, now) == []
        if now > T0 + 60.0 * 180 and det.families[0].last_step == now:  # a step, after 3 cycles
            zs.append(_seasonal_z(det))
        now += 5.0 + float(rng.uniform(0.0, 0.5))
    family = det.families[0]
    assert family.detector.steps == int(family.last_step // 60.0) - int(T0 // 60.0) + 1
    assert np.median(zs) < 4.0  # 2.0 on the clock's grid; 8.1 when the phase slid


def test_downtime_is_missing_steps_so_a_restored_seasonal_family_stays_in_phase() -> None:
    """Three hours and seven minutes without the engine (a restart): the restored family counts
    those steps as missing samples, so after it the hourly profile still lines up (before, the
    phase was 7 minutes off)."""
    import json

    spec = AnomalySpec(metric="latency_ms", detector=SEASONAL)
    values = _hourly(22, 10 * 60)
    store = SeriesStore()
    first = AnomalyDetector({"api": [spec]})
    assert _feed(first, store, {"api": values}, 0, 300) == []
    saved = json.loads(json.dumps(first.checkpoint(), allow_nan=False))
    second = AnomalyDetector({"api": [spec]})
    assert second.restore(saved) == []
    zs = []
    for k in range(487, 600):
        store.append(Sample("api", "latency_ms", T0 + 60.0 * k - 1.0, float(values[k])))
        assert second.detect(store, T0 + 60.0 * k) == []
        zs.append(_seasonal_z(second))
    assert second.families[0].detector.steps == 600  # 300 seen, 187 missing, 113 seen
    assert np.median(zs) < 4.0  # 2.5 in phase; 28.9 when the 187 steps were not counted


def test_downtime_longer_than_the_fill_limit_starts_the_family_afresh() -> None:
    """Past MAX_FILL_STEPS missing steps the learned baseline is too old to trust and filling
    would take long: the family warms up again."""
    from autonomic.analyze import anomaly

    spec = AnomalySpec(metric="latency_ms")
    det = AnomalyDetector({"api": [spec]})
    store = SeriesStore()
    _feed(det, store, {"api": _noise(23)}, 0, 100)
    assert det.families[0].detector.steps == 100
    later = 100 + anomaly.MAX_FILL_STEPS + 1
    store.append(Sample("api", "latency_ms", T0 + 60.0 * later - 1.0, 100.0))
    det.detect(store, T0 + 60.0 * later)
    assert det.families[0].detector.steps == 1
