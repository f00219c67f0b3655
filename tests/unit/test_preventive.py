"""Acting on a forecast, then verifying: the engine over a replayed series, a fake actuator, a
fake clock and an in-memory store. The fake actuator changes nothing in the world; each test
says what the metric does after it was called."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from autonomic.config import load_config_data
from autonomic.engine import Engine
from autonomic.knowledge import Store
from autonomic.model import Finding, FindingKind, Incident, Level, Resolution, Sample, Severity
from autonomic.oversight.notify import Dispatcher
from autonomic.testing import FakeActuator, FakeClock, FakeNotifier, ReplaySource
from autonomic.testing.fakes import fake_registry

T0 = 1_700_000_000.0

LEAK_PATTERN = """
id: fake-leak-fix
match: {cause: memory, kind: forecast}
action: {type: fake, params: {op: poke}}
prior_confidence: 0.9
rollback_safe: false
verify: {metric: memory_percent, max: 85, window_s: 60, delay_s: 5, min_samples: 3}
"""


class Loop:
    """The engine with the trend detector's defaults on ``svc`` (memory_percent toward 85) and
    one pattern, ``fake-leak-fix``, acting through the fake actuator."""

    def __init__(self, tmp_path: Path, extra: dict[str, Any] | None = None, pattern: str = LEAK_PATTERN) -> None:
        (tmp_path / "patterns").mkdir()
        (tmp_path / "patterns" / "leak.yaml").write_text(pattern)
        self.actuator = FakeActuator()
        registry = fake_registry(self.actuator)
        data = {
            "engine": {"interval_s": 1, "state_dir": str(tmp_path / "state"), "host_metrics": False,
                       "settle_s": 0, "resolve_after_s": 30},
            "services": [{"name": "svc", "actuators": {"fake": {"name": "x"}}}],
            "patterns": [str(tmp_path / "patterns")],
            "builtin_patterns": False,
            "policy": {"autonomy": "auto", "confidence_threshold": 0.5},
            **(extra or {}),
        }
        config = load_config_data(data, source="test.yaml", base_dir=tmp_path, registry=registry)
        self.clock = FakeClock(T0)
        self.source = ReplaySource([])
        self.store = Store("sqlite://")
        self.engine = Engine(config, registry=registry, clock=self.clock, store=self.store,
                             notifiers=Dispatcher([(FakeNotifier(), Level.INFO)], synchronous=True, dedup_s=0),
                             sources=[self.source])
        self.engine.start()

    @property
    def applies(self) -> int:
        return sum(1 for call in self.actuator.calls if call[0] == "apply")

    def run(self, seconds: int, value: Callable[[float], float], metric: str = "memory_percent") -> None:
        """One ``metric`` sample a second, ``value(seconds since T0)``, ticking each second."""
        for _ in range(seconds):
            now = self.clock.now()
            self.source._samples.append(Sample("svc", metric, now, value(now - T0)))
            self.engine.tick()
            self.clock.advance(1.0)

    def incidents(self) -> list[Incident]:
        return list(reversed(self.store.incidents(service="svc")))  # oldest first


def test_a_forecast_fix_that_leaves_the_leak_on_its_course_is_not_prevented_and_earns_no_record(
        tmp_path: Path) -> None:
    """Memory rises 1.8 %/min from 50 toward 85; the fix does nothing. Every sample of the watch
    window is under 85 (the line is minutes away), so bounds alone would call it prevented, close
    the incident, credit the pattern, and act again on the next forecast, for ever."""
    loop = Loop(tmp_path)
    loop.run(400, lambda t: 50 + 0.03 * t)
    first = loop.incidents()[0]
    assert first.kind == FindingKind.FORECAST and loop.applies == 1
    assert first.resolution == Resolution.ESCALATED and first.closed_at is None
    (outcome,) = loop.store.outcomes(incident_id=first.id)
    assert outcome.verdict == "inconclusive" and "still on its course" in outcome.reason
    assert loop.store.pattern_tallies().get("fake-leak-fix", (0, 0))[0] == 0
    assert len(loop.incidents()) == 1  # the lasting forecast stays on the escalated incident


def test_a_forecast_fix_that_brings_memory_down_is_prevented(tmp_path: Path) -> None:
    loop = Loop(tmp_path)
    fixed_at: list[float] = []

    def memory(t: float) -> float:
        if loop.applies and not fixed_at:
            fixed_at.append(t)
        return 30 + 0.03 * (t - fixed_at[0]) if fixed_at else 50 + 0.03 * t

    loop.run(300, memory)
    first = loop.incidents()[0]
    assert loop.applies == 1 and first.resolution == Resolution.PREVENTED and first.closed_at is not None
    (outcome,) = loop.store.outcomes(incident_id=first.id)
    assert outcome.verdict == "pass" and "off its course" in outcome.reason
    assert loop.store.pattern_tallies()["fake-leak-fix"] == (1, 0)


def test_a_forecast_incident_an_alert_of_the_same_trouble_joined_is_resolved_not_prevented(tmp_path: Path) -> None:
    """The fix worked, but before it did, Alertmanager's memory alert fired on the service: the
    trouble came, so the incident is resolved, not "prevented" (reports count what was avoided)."""
    loop = Loop(tmp_path)
    fixed_at: list[float] = []

    def memory(t: float) -> float:
        if loop.applies and not fixed_at:
            fixed_at.append(t)
            loop.engine.submit([Finding(service="svc", metric="alert:MemoryHigh", kind=FindingKind.ALERT,
                                        cause="memory", severity=Severity.CRITICAL, confidence=0.9,
                                        ts=loop.clock.now(), summary="MemoryHigh firing")])
        return 30 + 0.03 * (t - fixed_at[0]) if fixed_at else 50 + 0.03 * t

    loop.run(300, memory)
    first = loop.incidents()[0]
    assert loop.applies == 1 and first.kind == FindingKind.FORECAST
    assert {f.kind for f in loop.store.findings(incident_id=first.id)} >= {FindingKind.FORECAST, FindingKind.ALERT}
    assert first.resolution == Resolution.RESOLVED and first.closed_at is not None


def test_the_warm_up_after_a_preventive_restart_is_not_forecast_as_a_new_leak(tmp_path: Path) -> None:
    """The fix ends the leak; the restarted service warms up to a stable 50 % over a few minutes
    (time constant two minutes). A straight line through that warm-up 'reaches 85 in six
    minutes', so the engine restarted the healthy service every five minutes, each time
    'prevented'."""
    loop = Loop(tmp_path)
    noise = np.random.default_rng(1)
    fixed_at: list[float] = []

    def memory(t: float) -> float:
        if loop.applies and not fixed_at:
            fixed_at.append(t)
        if not fixed_at:
            return 50 + 0.03 * t + noise.normal(0, 0.3)
        return 10 + 40 * (1 - math.exp(-(t - fixed_at[0]) / 120)) + noise.normal(0, 0.3)

    loop.run(1500, memory)
    assert loop.applies == 1
    (first,) = loop.incidents()
    assert first.resolution == Resolution.PREVENTED


def test_a_forecast_fix_verified_on_another_metric_is_judged_on_that_metrics_bounds(tmp_path: Path) -> None:
    """The pattern verifies that the service is up after acting on a memory forecast: there is
    no course of ``up`` to leave, so its bounds decide, as for any fix."""
    loop = Loop(tmp_path, pattern=LEAK_PATTERN.replace("metric: memory_percent, max: 85", "metric: up, min: 1"))
    fixed_at: list[float] = []

    def memory(t: float) -> float:
        loop.source._samples.append(Sample("svc", "up", T0 + t, 1.0))
        if loop.applies and not fixed_at:
            fixed_at.append(t)
        return 30.0 if fixed_at else 50 + 0.03 * t

    loop.run(300, memory)
    first = loop.incidents()[0]
    (outcome,) = loop.store.outcomes(incident_id=first.id)
    assert outcome.verdict == "pass" and outcome.reason == "up within bounds (min 1) over 61 samples"
    assert first.resolution == Resolution.PREVENTED


DISK_PATTERN = """
id: fake-disk-cleanup
match: {cause: disk, kind: forecast}
action: {type: fake, params: {op: poke}}
prior_confidence: 0.9
rollback_safe: false
verify: {metric: disk_percent, max: 90, window_s: 60, delay_s: 5, min_samples: 3}
"""


def _disk_loop(tmp_path: Path, autonomy: str, base: float = 60.0, rate: float = 3.0,
               cleanup: float = 30.0) -> tuple[Loop, Callable[[float], float]]:
    """The engine with a seasonal forecast of disk_percent toward 90 on ``svc`` and two days of
    its history (one sample a minute, given to the detector as a checkpoint would) and five
    minutes in the series store: a disk at ``base`` on a daily cycle, filling ``rate`` %/h for
    the last six hours (by default 90 is about five hours away); after the fake actuator is
    called, ``cleanup`` points lower, still filling."""
    from autonomic.analyze.forecast import SeasonalTrendDetector

    day = 86_400.0
    loop = Loop(tmp_path, pattern=DISK_PATTERN, extra={
        "services": [{"name": "svc", "actuators": {"fake": {"name": "x"}}, "trends": [],
                      "seasonal_trends": [{"metric": "disk_percent", "threshold": 90}]}],
        "policy": {"autonomy": autonomy, "confidence_threshold": 0.5}})
    noise = np.random.default_rng(1)

    def disk(t: float) -> float:  # t from T0; the fill began 6 h before T0
        cleaned = cleanup if loop.applies else 0.0
        return (base - cleaned + 5 * math.sin(2 * math.pi * t / day) + max(0.0, t + 6 * 3600) / 3600 * rate
                + noise.normal(0, 0.3))

    history = np.arange(-2 * day, 0.0, 60.0)
    detector = next(d for d in loop.engine.detectors if isinstance(d, SeasonalTrendDetector))
    detector.restore({"series": [{"service": "svc", "metric": "disk_percent", "ts": (T0 + history).tolist(),
                                  "values": [disk(t) for t in history]}]})
    loop.engine.series.extend(Sample("svc", "disk_percent", T0 + t, disk(t)) for t in np.arange(-300.0, 0.0))
    return loop, disk


def test_a_lasting_seasonal_forecast_is_one_incident_and_one_approval_request(tmp_path: Path) -> None:
    """Forecast every five minutes (eval_s) under approve autonomy. With a finding only at each
    evaluation the incident went quiet, expired after resolve_after_s (2 min) and the next
    evaluation opened another: a new approval request every five minutes, none of them
    answerable after two."""
    loop, disk = _disk_loop(tmp_path, "approve")
    loop.run(700, disk, metric="disk_percent")
    (incident,) = loop.incidents()
    assert incident.state == "awaiting_approval" and incident.closed_at is None
    assert [d.verdict for d in loop.store.decisions(incident.id)] == ["needs_approval"]


@pytest.mark.parametrize(("base", "rate", "cleanup"), [(60.0, 3.0, 30.0), (44.0, 5.0, 16.0)])
def test_a_seasonal_forecast_a_fix_answered_does_not_open_a_second_incident(
        tmp_path: Path, base: float, rate: float, cleanup: float) -> None:
    """The cleanup takes the disk back (30 points from 78, or 16 from 72 with 18 left to the
    line) and is verified: the forecast it answered is not given again (so no new incident, no
    second cleanup) while it waits for its next evaluation."""
    loop, disk = _disk_loop(tmp_path, "auto", base=base, rate=rate, cleanup=cleanup)
    loop.run(700, disk, metric="disk_percent")
    (incident,) = loop.incidents()
    assert incident.resolution == Resolution.PREVENTED and loop.applies == 1


def test_explain_shows_the_breach_that_came_after_many_forecasts(tmp_path: Path) -> None:
    """The fix did nothing and the line was crossed 17 minutes later: a hundred forecasts were
    stored first, and the page listed only the first ten of them, hiding the breach. It lists
    the first and latest five and the first of each kind, and a forecast's eta before its fit."""
    from autonomic.oversight.explain import explain_incident, render_text

    loop = Loop(tmp_path)
    loop.run(1300, lambda t: 50 + 0.03 * t)
    (incident,) = loop.incidents()
    text = render_text(explain_incident(loop.store, incident.id))
    findings = text.split("Findings (evidence):\n")[1].split("\n\n")[0].splitlines()
    crossed = [line for line in findings if " threshold memory_percent: " in line]
    assert crossed and "85.04 >= 85" in crossed[0]  # the first breach is on the page
    stored = [f for f in loop.store.findings(incident_id=incident.id) if f.kind == FindingKind.THRESHOLD]
    assert len(stored) >= 3 and findings[-1] == crossed[-1]
    assert len(crossed) == min(6, len(stored))  # its first and the latest five
    # the first five (forecasts), and the latest five: the breaches stored, then forecasts
    assert sum(" forecast memory_percent: " in line for line in findings) == 5 + 5 - min(5, len(stored))
    assert findings[0].split("  {")[1].startswith('"eta_s": ')
    assert any(line.startswith("  ... ") and line.endswith(" more") for line in findings)


def test_a_rollback_safe_forecast_fix_is_not_undone_because_the_rise_went_on(tmp_path: Path) -> None:
    """Memory rises 0.6 %/s, the fix (rollback safe, like a pool raise) changes nothing and the
    line is crossed in the watch window as forecast. Compared with the mean before the action
    that was 'worse', so the fix was undone; it did not make things worse than the course they
    were on, so a person decides and nothing is undone."""
    loop = Loop(tmp_path, pattern=LEAK_PATTERN.replace("rollback_safe: false", "rollback_safe: true"))
    loop.run(400, lambda t: min(99.0, max(0.0, 0.6 * t - 40)))
    (incident,) = loop.incidents()
    assert [call[0] for call in loop.actuator.calls] == ["apply"]
    assert incident.resolution == Resolution.ESCALATED
    (outcome,) = loop.store.outcomes(incident_id=incident.id)
    assert outcome.verdict == "inconclusive" and not outcome.rolled_back
    assert "the breach came as forecast" in outcome.reason


POOL_PATTERN = """
id: fake-pool-grow
match: {cause: pool, kind: forecast, symptoms: [{metric: pool_free, trend: falling}]}
action: {type: fake, params: {op: poke}}
prior_confidence: 0.9
rollback_safe: false
verify: {metric: pool_free, min: 5, window_s: 60, delay_s: 5, min_samples: 3}
"""


@pytest.mark.parametrize("floor", ["given", "the_services"])
def test_a_pool_forecast_to_run_dry_is_grown_before_it_does_and_the_fix_is_verified_as_prevented(
        tmp_path: Path, floor: str) -> None:
    """Free connections fall 0.15 a second from 80 toward 5 (``direction: falling``): forecast,
    matched by a pattern asking for ``trend: falling``, acted on before the pool runs dry; the
    pool, grown, has 100 free and falls no more: verified off its course (above it, the safe side
    of a minimum) and resolved as prevented. The floor given on the spec and the pattern, or the
    service's own (``thresholds.minimums``; ``min: threshold`` in the pattern's verify)."""
    trend: dict[str, Any] = {"metric": "pool_free", "direction": "falling", "window_s": 120}
    service: dict[str, Any] = {"name": "svc", "actuators": {"fake": {"name": "x"}}, "trends": [trend]}
    pattern = POOL_PATTERN
    if floor == "given":
        trend["threshold"] = 5
    else:
        service["thresholds"] = {"minimums": {"pool_free": 5}}
        pattern = POOL_PATTERN.replace("min: 5,", "min: threshold,")
    loop = Loop(tmp_path, extra={"services": [service]}, pattern=pattern)
    grown_at: list[float] = []

    def pool_free(t: float) -> float:
        if loop.applies and not grown_at:
            grown_at.append(t)
        return 100.0 if grown_at else 80 - 0.15 * t

    loop.run(300, pool_free, metric="pool_free")
    first = loop.incidents()[0]
    assert first.kind == FindingKind.FORECAST and first.cause == "pool"
    assert grown_at and 80 - 0.15 * grown_at[0] > 5, "not acted on before the pool ran dry"
    assert loop.applies == 1 and first.resolution == Resolution.PREVENTED and first.closed_at is not None
    (outcome,) = loop.store.outcomes(incident_id=first.id)
    assert outcome.verdict == "pass" and "off its course" in outcome.reason
    forecast = next(f for f in loop.store.findings(first.id) if f.kind == FindingKind.FORECAST)
    assert forecast.summary.startswith("pool_free will fall to 5 in ") and forecast.evidence["slope_per_s"] < 0
    (action,) = loop.store.actions(incident_id=first.id)
    assert action.verify is not None and action.verify.min == 5.0
