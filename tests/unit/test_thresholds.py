"""Thresholds, HealthDetector and assess: lines, sustain, down_after, degraded, staleness."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest
from pydantic import ValidationError

from autonomic.analyze.causes import cause_of
from autonomic.analyze.thresholds import HealthDetector, Thresholds, assess, stale_after
from autonomic.model import Finding, FindingKind, HealthState, Sample, Severity
from autonomic.monitor.series import SeriesStore
from autonomic.testing import RecordingReader

NOW = 1_000.0


def _feed(store: SeriesStore, metric: str, values: list[float], service: str = "api", step: float = 5.0):
    """Samples ending at NOW, one every ``step`` seconds."""
    start = NOW - step * (len(values) - 1)
    store.extend(Sample(service, metric, start + i * step, v) for i, v in enumerate(values))
    return store


def _detect(store: SeriesStore, th: Thresholds | None = None, now: float = NOW):
    return HealthDetector({"api": th or Thresholds()}).detect(store, now)


DEFAULT_MAXIMUMS = {
    "cpu_percent": 80.0,
    "memory_percent": 85.0,
    "disk_percent": 90.0,
    "error_rate": 0.05,
    "latency_ms": 1000.0,
    "probe_latency_ms": 1000.0,
    "pool_utilization": 90.0,
}


def test_defaults_are_the_documented_lines() -> None:
    th = Thresholds()
    assert th.maximums() == DEFAULT_MAXIMUMS
    assert (th.availability, th.availability_window_s) == (99.0, 300.0)
    assert (th.degraded_fraction, th.sustain, th.down_after) == (0.9, 2, 2)


@pytest.mark.parametrize(("metric", "line"), sorted(DEFAULT_MAXIMUMS.items()))
def test_each_default_maximum_fires_at_the_line_and_not_below(metric: str, line: float) -> None:
    at_line = _detect(_feed(SeriesStore(), metric, [line, line]))
    assert len(at_line) == 1
    f = at_line[0]
    assert (f.metric, f.kind, f.cause) == (metric, FindingKind.THRESHOLD, cause_of(metric))
    assert f.severity is Severity.CRITICAL
    assert f.value == line and f.threshold == line and f.confidence == 0.9
    assert f.evidence["sustain"] == 2 and f.evidence["samples"] == [line, line]
    below = _detect(_feed(SeriesStore(), metric, [line * 0.99, line * 0.99]))
    assert below == []


def test_extra_maximum_fires_under_its_metric_cause() -> None:
    store = _feed(SeriesStore(), "queue_depth", [500.0, 600.0])
    findings = _detect(store, Thresholds(extra={"queue_depth": 400.0}))
    assert [(f.metric, f.cause, f.value) for f in findings] == [("queue_depth", "metric:queue_depth", 600.0)]


def test_sustain_requires_the_last_n_samples_all_past_the_line() -> None:
    assert _detect(_feed(SeriesStore(), "memory_percent", [50.0, 95.0])) == []
    assert _detect(_feed(SeriesStore(), "memory_percent", [95.0, 50.0])) == []
    assert len(_detect(_feed(SeriesStore(), "memory_percent", [50.0, 95.0, 96.0]))) == 1
    three = Thresholds(sustain=3)
    assert _detect(_feed(SeriesStore(), "memory_percent", [50.0, 95.0, 96.0]), three) == []
    assert len(_detect(_feed(SeriesStore(), "memory_percent", [95.0, 95.0, 96.0]), three)) == 1


def test_fewer_samples_than_sustain_gives_no_finding() -> None:
    assert _detect(_feed(SeriesStore(), "memory_percent", [99.0])) == []


def test_down_needs_down_after_consecutive_zero_up_samples() -> None:
    once = _feed(SeriesStore(), "up", [1.0, 1.0, 0.0])
    assert _detect(once) == []
    state, reasons = assess(once, "api", Thresholds(), NOW)
    assert state is HealthState.DEGRADED and "up failed" in reasons[0]

    twice = _feed(SeriesStore(), "up", [1.0, 0.0, 0.0])
    [f] = _detect(twice)
    assert (f.kind, f.cause, f.metric, f.severity, f.confidence) == (
        FindingKind.STATE, "down", "up", Severity.CRITICAL, 0.95,
    )
    assert assess(twice, "api", Thresholds(), NOW)[0] is HealthState.FAILING
    assert _detect(twice, Thresholds(down_after=3)) == []


def test_failing_probe_is_down_with_metric_probe_ok() -> None:
    store = _feed(SeriesStore(), "probe_ok", [1.0, 0.0, 0.0])
    _feed(store, "up", [1.0, 1.0, 1.0])
    _feed(store, "probe_latency_ms", [5.0, 2000.0, 2000.0])
    findings = _detect(store)
    # the failed attempts' latency and the availability drop are the same outage: not reported
    assert [(f.metric, f.cause) for f in findings] == [("probe_ok", "down")]


def test_up_and_probe_both_down_give_one_down_finding_on_up() -> None:
    store = _feed(SeriesStore(), "probe_ok", [0.0, 0.0])
    _feed(store, "up", [0.0, 0.0])
    assert [f.metric for f in _detect(store)] == ["up"]


def test_degraded_line_gives_degraded_state_but_no_finding() -> None:
    store = _feed(SeriesStore(), "memory_percent", [77.0, 80.0])  # >= 0.9 * 85 = 76.5
    assert _detect(store) == []
    state, reasons = assess(store, "api", Thresholds(), NOW)
    assert state is HealthState.DEGRADED
    assert "memory_percent" in reasons[0] and "degraded" in reasons[0]
    below = _feed(SeriesStore(), "memory_percent", [70.0, 76.0])
    assert assess(below, "api", Thresholds(), NOW) == (HealthState.HEALTHY, [])


def test_crossed_threshold_gives_critical_state_with_reason() -> None:
    store = _feed(SeriesStore(), "cpu_percent", [90.0, 95.0])
    _feed(store, "memory_percent", [80.0, 80.0])
    state, reasons = assess(store, "api", Thresholds(), NOW)
    assert state is HealthState.CRITICAL
    assert reasons[0].startswith("cpu_percent 95 >= 80")
    assert any("memory_percent" in r for r in reasons[1:])


def test_stale_samples_are_ignored() -> None:
    store = _feed(SeriesStore(), "memory_percent", [95.0, 95.0])
    _feed(store, "up", [0.0, 0.0])
    assert len(_detect(store, now=NOW + 30.0)) == 2
    assert _detect(store, now=NOW + 31.0) == []
    assert assess(store, "api", Thresholds(), NOW + 31.0) == (HealthState.HEALTHY, [])
    assert HealthDetector({"api": Thresholds()}, stale_s=60.0).detect(store, NOW + 59.0) != []


def test_unconfigured_services_are_not_checked() -> None:
    store = _feed(SeriesStore(), "memory_percent", [99.0, 99.0], service="other")
    assert _detect(store) == []


def test_availability_below_minimum_is_a_threshold_finding() -> None:
    # 100 probes 1 s apart, 3 failed, none consecutive: 97% < 99% but never down
    values = [1.0] * 100
    for i in (20, 50, 80):
        values[i] = 0.0
    store = _feed(SeriesStore(), "probe_ok", values, step=1.0)
    [f] = _detect(store)
    assert (f.metric, f.cause, f.kind, f.threshold) == ("availability", "availability", "threshold", 99.0)
    assert f.value == pytest.approx(97.0)
    assert f.evidence["probes"] == 100
    assert _detect(store, Thresholds(availability=95.0)) == []


def test_an_outage_reported_as_down_does_not_also_cost_availability_after_it_is_healed() -> None:
    """A crash: 8 probes failed in a row (down after 2), then the restart healed it. The outage
    is the down incident's; before, the same failed probes kept availability under 99% for the
    next five minutes and opened a second incident that escalated to a person (a page for a
    crash already healed)."""
    values = [1.0] * 60 + [0.0] * 8 + [1.0] * 60
    store = _feed(SeriesStore(), "probe_ok", values, step=1.0)
    assert _detect(store) == []
    assert assess(store, "api", Thresholds(), NOW) == (HealthState.HEALTHY, [])
    during = _feed(SeriesStore(), "probe_ok", [1.0] * 60 + [0.0] * 8, step=1.0)
    assert [(f.metric, f.cause) for f in _detect(during)] == [("probe_ok", "down")]


def test_failures_too_short_to_be_down_still_cost_availability() -> None:
    """Runs of failed probes shorter than down_after are what availability is for: here
    single failures and one pair, with down_after 3 (the pair is not an outage either)."""
    values = [1.0] * 100
    for i in (10, 30, 31, 70):
        values[i] = 0.0
    store = _feed(SeriesStore(), "probe_ok", values, step=1.0)
    [f] = _detect(store, Thresholds(down_after=3))
    assert f.metric == "availability" and f.value == pytest.approx(96.0)
    [g] = _detect(store)  # down_after 2: the pair is an outage; 2 failures in the other 98 probes
    assert g.metric == "availability" and g.value == pytest.approx(100.0 * 96 / 98)
    assert (g.evidence["probes"], g.evidence["outage_probes"]) == (98, 2)


def test_availability_counts_only_the_trailing_window() -> None:
    values = [0.0, 1.0, 0.0] + [1.0] * 97  # 98% over 300 s, 100% over the last 90 s
    store = _feed(SeriesStore(), "probe_ok", values, step=1.0)
    assert len(_detect(store)) == 1
    assert _detect(store, Thresholds(availability_window_s=90.0)) == []


def test_availability_after_the_clock_was_set_back_counts_only_its_window_ending_now() -> None:
    """Probes failed now and then long ago (700 s of history: the last 500 s all good), then the
    wall clock was set back an hour and every probe since succeeded. The window search ran over
    samples out of time order and counted all 702 probes, failures of long ago included:
    'availability 98.7% below the 99% minimum' at once, an incident for nothing."""
    store = SeriesStore()
    t0 = 1_000_000.0
    store.extend(Sample("api", "probe_ok", t0 + i, 0.0 if i % 20 == 0 and 0 < i < 200 else 1.0) for i in range(700))
    det = HealthDetector({"api": Thresholds()})
    assert det.detect(store, t0 + 699) == []
    back = t0 + 700 - 3600
    for i in range(400):
        store.append(Sample("api", "probe_ok", back + i, 1.0))
        assert det.detect(store, back + i) == [], i
    store.extend(Sample("api", "probe_ok", back + 400 + i, float(i % 5 != 1)) for i in range(30))  # 6 failed
    [low] = det.detect(store, back + 429)
    assert low.metric == "availability" and low.evidence["probes"] == 300


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"memory_percent": 150}, "memory_percent"),
        ({"cpu_percent": 0}, "cpu_percent"),
        ({"error_rate": 2}, "error_rate"),
        ({"availability": -1}, "availability"),
        ({"availability_window_s": 0}, "availability_window_s"),
        ({"degraded_fraction": 1.5}, "degraded_fraction"),
        ({"sustain": 0}, "sustain"),
        ({"down_after": 0}, "down_after"),
        ({"latency_ms": float("nan")}, "latency_ms"),
        ({"extra": {"queue": "lots"}}, "extra"),
        ({"extra": {"cpu_percent": 50}}, "extra"),
        ({"cpu": 50}, "cpu"),
    ],
)
def test_bad_threshold_values_are_rejected_naming_the_field(kwargs: dict, field: str) -> None:
    with pytest.raises(ValidationError) as info:
        Thresholds(**kwargs)
    assert info.value.errors()[0]["loc"][0] == field
    assert field in str(info.value)


@pytest.mark.parametrize(
    ("metric", "cause"),
    [
        ("up", "down"),
        ("probe_ok", "down"),
        ("rss_bytes", "memory"),
        ("memory_percent", "memory"),
        ("cpu_percent", "cpu"),
        ("disk_percent", "disk"),
        ("pool_utilization", "pool"),
        ("pool_in_use", "pool"),
        ("error_rate", "errors"),
        ("latency_ms", "latency"),
        ("probe_latency_ms", "latency"),
        ("availability", "availability"),
        ("open_fds", "fds"),
        ("queue_depth", "metric:queue_depth"),
    ],
)
def test_cause_of_follows_the_model_vocabulary(metric: str, cause: str) -> None:
    assert cause_of(metric) == cause


def test_a_crossed_maximum_is_held_until_it_falls_below_the_clear_line() -> None:
    """Hysteresis: memory crosses 85, then hovers at 80-84 (below the line, above 0.9 * 85 =
    76.5): still reported, so the incident does not flap; at 70 it clears, and crossing again
    needs ``sustain`` samples past the line once more."""
    det = HealthDetector({"api": Thresholds()})
    store = SeriesStore()
    t = 0.0

    def step(value: float) -> list[str]:
        nonlocal t
        t += 5.0
        store.append(Sample("api", "memory_percent", t, value))
        return [f.summary for f in det.detect(store, t)]

    assert step(90.0) == []  # one sample: not yet sustained
    assert len(step(91.0)) == 1
    held = step(82.0)
    assert len(held) == 1 and "still >= 76.5" in held[0] and "hysteresis" in held[0]
    assert len(step(78.0)) == 1
    assert step(70.0) == []  # below the clear line: cleared
    assert step(80.0) == []  # the hysteresis band does not re-open it
    assert step(86.0) == []  # one sample past the line again: not yet sustained
    assert len(step(86.0)) == 1


def test_a_detector_without_hysteresis_history_fires_only_on_sustained_crossings() -> None:
    store = _feed(SeriesStore(), "memory_percent", [95.0, 82.0])
    assert _detect(store) == []  # a fresh detector has seen no crossing: 82 alone is not one


def test_a_sample_counts_for_30_s_three_intervals_or_a_range_querys_step_and_two_intervals() -> None:
    """At a 5 s interval 30 s is six ticks; at 60 s one missed scrape must not make the metric
    stale, nor a PromQL range query's 60 s step, whose newest point is up to a step old."""
    assert stale_after(5.0) == 30.0
    assert stale_after(60.0) == 180.0
    assert stale_after(5.0, [15.0]) == 30.0 and stale_after(5.0, [15.0, 60.0]) == 70.0
    store = _feed(SeriesStore(), "memory_percent", [90.0, 91.0], step=60.0)
    assert _detect(store, now=NOW + 60) == []  # one scrape missed: stale at 30 s
    assert len(HealthDetector({"api": Thresholds()}, stale_s=stale_after(60.0)).detect(store, NOW + 60)) == 1


def test_the_crossed_lines_outlive_a_restart_through_the_checkpoint_and_only_configured_ones() -> None:
    """A new detector restored from the old one's checkpoint holds memory at 82 (under 85, over
    the clear line 76.5) as the old one did; a service or a line no longer configured is left out
    with a note; a malformed state is refused (the engine then starts the detector fresh)."""
    store = _feed(SeriesStore(), "memory_percent", [90.0, 91.0, 82.0])
    old = HealthDetector({"api": Thresholds(), "web": Thresholds(extra={"queue_depth": 10})})
    old._crossed = {"api": {"memory_percent"}, "web": {"queue_depth", "cpu_percent"}}
    new = HealthDetector({"api": Thresholds(), "web": Thresholds()})
    assert _detect(store) == []  # fresh: 82 alone is no crossing
    assert new.restore(json.loads(json.dumps(old.checkpoint()))) == [
        "crossed lines of web no longer configured: queue_depth"]
    assert new.crossed("web") == {"cpu_percent"}
    assert [f.metric for f in new.detect(store, NOW)] == ["memory_percent"]
    assert new.crossed("web") == {"cpu_percent"}  # no cpu sample yet: kept for its first to judge
    store.append(Sample("web", "cpu_percent", NOW, 50.0))
    assert new.detect(store, NOW) != [] and new.crossed("web") == set()  # under its clear line: let go
    late = HealthDetector({"api": Thresholds()})  # its source has not answered yet at the first tick
    late.restore({"crossed": {"api": ["memory_percent"]}})
    assert late.detect(SeriesStore(), NOW) == [] and late.crossed("api") == {"memory_percent"}
    assert [f.metric for f in late.detect(store, NOW)] == ["memory_percent"]
    gone = HealthDetector({"web": Thresholds()})
    assert gone.restore({"crossed": {"api": ["memory_percent"]}}) == [
        "crossed lines of api no longer configured: memory_percent"]
    assert gone.crossed("api") == set()
    for bad in ({}, {"crossed": []}, {"crossed": {"api": "memory_percent"}}, {"crossed": {"api": [1]}}):
        with pytest.raises(ValueError, match="health state"):
            gone.restore(bad)


def test_a_crossed_line_raised_since_the_checkpoint_is_not_held_after_the_restart_or_reload() -> None:
    """memory_percent crossed its line 85; the line is raised to 95 (a reload, a restart with the
    new config) so that 88 is no trouble: 88 never crossed 95, so it is not held as crossed (it
    was: over 95's clear line 85.5, its incident kept open until memory fell under 85.5). A line
    lowered since is held still (what crossed 85 crossed 80 too), as is one unchanged."""
    store = _feed(SeriesStore(), "memory_percent", [90.0, 91.0, 88.0])
    old = HealthDetector({"api": Thresholds(), "web": Thresholds(), "db": Thresholds()})
    old._crossed = {"api": {"memory_percent"}, "web": {"memory_percent"}, "db": {"memory_percent"}}
    saved = json.loads(json.dumps(old.checkpoint()))
    new = HealthDetector({"api": Thresholds(memory_percent=95.0), "web": Thresholds(memory_percent=80.0),
                          "db": Thresholds()})
    assert new.restore(saved) == ["crossed lines of api raised since: memory_percent (85 -> 95)"]
    assert new.crossed("api") == set()
    assert new.crossed("web") == {"memory_percent"} and new.crossed("db") == {"memory_percent"}
    assert [f.summary for f in new.detect(store, NOW) if f.severity == Severity.CRITICAL] == []  # 88 < 95
    again = HealthDetector({"api": Thresholds()})
    again.restore(saved)  # the line unchanged: 88 is held, over its clear line 76.5
    assert again.crossed("api") == {"memory_percent"}
    assert [f.metric for f in again.detect(store, NOW)] == ["memory_percent"]


def test_the_health_state_holds_critical_through_the_hysteresis_band() -> None:
    """With the detector's crossed set, a memory back at 80 (under 85, over the clear line 76.5)
    stays CRITICAL instead of flapping to DEGRADED; without it, it is DEGRADED; at 70 it is
    HEALTHY either way, and the detector has let go."""
    det = HealthDetector({"api": Thresholds()})
    store = _feed(SeriesStore(), "memory_percent", [90.0, 91.0], step=5.0)
    assert len(det.detect(store, NOW)) == 1 and det.crossed("api") == {"memory_percent"}
    store.extend([Sample("api", "memory_percent", NOW + 5, 80.0), Sample("api", "memory_percent", NOW + 10, 80.0)])
    det.detect(store, NOW + 10)
    held, reasons = assess(store, "api", Thresholds(), NOW + 10, crossed=det.crossed("api"))
    assert held == HealthState.CRITICAL and "hysteresis" in reasons[0]
    assert assess(store, "api", Thresholds(), NOW + 10)[0] == HealthState.DEGRADED
    store.extend([Sample("api", "memory_percent", NOW + 15, 70.0), Sample("api", "memory_percent", NOW + 20, 70.0)])
    det.detect(store, NOW + 20)
    assert det.crossed("api") == set()
    assert assess(store, "api", Thresholds(), NOW + 20, crossed=det.crossed("api"))[0] == HealthState.HEALTHY


def test_health_reads_one_by_one_only_services_near_a_line_and_only_the_metrics_they_have() -> None:
    """A fleet's service reports a few of the dozen metrics with a line: the others cost no read;
    a service whose samples are all clear of their lines (web) is passed over by the array screen
    and costs no read of its own at all."""
    store = _feed(SeriesStore(), "error_rate", [0.01, 0.2, 0.3])
    _feed(store, "up", [1, 1, 1], service="web")
    reader = RecordingReader(store)
    [finding] = HealthDetector({"api": Thresholds(), "web": Thresholds()}).detect(reader, NOW)
    assert (finding.service, finding.metric, finding.kind) == ("api", "error_rate", FindingKind.THRESHOLD)
    assert {(service, metric) for _, service, metric in reader.reads} == {("api", "error_rate")}
    store.append(Sample("web", "up", NOW + 5, 0.0))  # failed once: suspect, read one by one
    reader.reads.clear()
    HealthDetector({"api": Thresholds(), "web": Thresholds()}).detect(reader, NOW + 5)
    assert ("web", "up") in {(service, metric) for _, service, metric in reader.reads}


def test_a_line_below_zero_is_crossed_by_values_at_or_above_it_and_degraded_only_past_its_fraction() -> None:
    """``extra`` lines may be negative: then the degraded line (0.9 x -10 = -9) lies above the line,
    and a value between them is a crossing, not merely degraded."""
    th = Thresholds(extra={"skew": -10.0})
    [f] = _detect(_feed(SeriesStore(), "skew", [-9.5, -9.5]), th)
    assert (f.metric, f.value, f.threshold, f.severity) == ("skew", -9.5, -10.0, Severity.CRITICAL)
    assert _detect(_feed(SeriesStore(), "skew", [-9.5, -10.5]), th) == []
    state, reasons = assess(_feed(SeriesStore(), "skew", [-12.0, -8.0]), "api", th, NOW)
    assert (state, reasons) == (HealthState.HEALTHY, [])


def _without_id(finding: Finding) -> dict:
    return {k: v for k, v in vars(finding).items() if k != "id"}


def _random_fleet(rng: np.random.Generator, n: int) -> dict[str, Thresholds]:
    fleet = {}
    for i in range(n):
        fleet[f"svc{i:03d}"] = Thresholds(
            sustain=int(rng.integers(1, 5)), down_after=int(rng.integers(1, 4)),
            degraded_fraction=float(rng.choice([0.5, 0.8, 0.9, 1.0])),
            clear_fraction=float(rng.choice([0.7, 0.9, 1.0])),
            availability=float(rng.choice([90.0, 99.0, 99.9])),
            availability_window_s=float(rng.choice([20.0, 60.0, 300.0])),
            availability_min_probes=int(rng.integers(1, 12)),
            extra={"skew": -10.0} if i % 7 == 0 else {"queue": 50.0} if i % 5 == 0 else {},
            minimums={"free": 20.0} if i % 3 == 0 else {"chill": -5.0} if i % 4 == 1 else {},
        )
    return fleet


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_the_array_screen_never_passes_over_a_service_the_one_by_one_evaluation_reports_on(seed: int) -> None:
    """Two detectors over the same random fleet and samples for 150 ticks: one screens services
    with array operations first, the other evaluates every service one by one. Their findings and
    the maximums they hold crossed (hysteresis) are the same at every tick. The samples wander
    around each line, probes fail now and then and in runs (outages), series go stale and come
    back, services report different metrics, some at several samples per tick."""
    rng = np.random.default_rng(seed)
    fleet = _random_fleet(rng, 60)
    screened, every = HealthDetector(fleet), HealthDetector(fleet)
    store = SeriesStore(capacity=64)
    metrics = {s: list(rng.choice(["cpu_percent", "error_rate", "probe_latency_ms", "skew", "queue", "free", "chill"],
                                  size=int(rng.integers(1, 4)), replace=False)) for s in fleet}
    lines = {"cpu_percent": 80.0, "error_rate": 0.05, "probe_latency_ms": 1000.0, "skew": -10.0, "queue": 50.0,
             "free": 20.0, "chill": -5.0}
    level = {(s, m): float(rng.uniform(0.3, 1.2)) for s in fleet for m in lines}
    reported = 0
    now = NOW
    for tick in range(150):
        now += 5.0
        for s in fleet:
            if rng.random() < 0.05:
                continue  # this service says nothing this tick (goes stale for a while if repeated)
            for k in range(int(rng.integers(1, 3))):
                ts = now - 2.0 + k
                for m in metrics[s]:
                    level[s, m] = float(np.clip(level[s, m] + rng.normal(0, 0.08), 0.2, 1.4))
                    store.append(Sample(s, m, ts, lines[m] * level[s, m]))
                outage = (tick // 10) % 4 == 3 and int(s[3:]) % 3 == 0
                store.append(Sample(s, "probe_ok", ts, 0.0 if outage or rng.random() < 0.08 else 1.0))
                if int(s[3:]) % 4 == 0:
                    store.append(Sample(s, "up", ts, 0.0 if rng.random() < 0.1 else 1.0))
        got = [_without_id(f) for f in screened.detect(store, now)]
        want = [_without_id(f) for f in every._detect(store, now, fleet)]
        assert got == want, f"tick {tick}"
        assert screened._crossed == every._crossed, f"tick {tick}"
        reported += len(want)
    assert reported > 100  # the fleet was in trouble often enough for the comparison to mean something


@pytest.mark.parametrize("seed", [5, 6])
def test_health_states_through_the_screen_are_assess_of_every_service(seed: int) -> None:
    """``HealthDetector.states`` (what the API and ``autonomic status`` show) passes over the
    services the screen finds clear of every degraded line: they are HEALTHY, and every other
    state and reason is :func:`assess`'s own, at every tick of a random fleet's life."""
    rng = np.random.default_rng(seed)
    fleet = _random_fleet(rng, 40)
    det = HealthDetector(fleet)
    store = SeriesStore(capacity=64)
    seen: set[HealthState] = set()
    now = NOW
    for tick in range(80):
        now += 5.0
        for i, s in enumerate(fleet):
            level = 0.75 + 0.3 * math.sin(tick / 6 + i)
            store.append(Sample(s, "cpu_percent", now, 80.0 * level + float(rng.normal(0, 2))))
            store.append(Sample(s, "skew", now, -10.0 * (1.6 - level)))
            store.append(Sample(s, "free", now, 20.0 * (0.4 + level)))
            store.append(Sample(s, "probe_ok", now, 0.0 if rng.random() < 0.05 + 0.2 * (i % 9 == 0) else 1.0))
        det.detect(store, now)
        states = det.states(store, now)
        want = {s: assess(store, s, th, now, crossed=det.crossed(s)) for s, th in fleet.items()}
        assert states == want, f"tick {tick}"
        seen |= {state for state, _ in states.values()}
    assert seen >= {HealthState.HEALTHY, HealthState.DEGRADED, HealthState.CRITICAL, HealthState.FAILING}


def test_health_states_see_a_crossed_line_below_zero_whose_degraded_line_lies_above_it() -> None:
    th = Thresholds(extra={"skew": -10.0})
    store = _feed(SeriesStore(), "skew", [-9.5, -9.5])
    state, reasons = HealthDetector({"api": th}).states(store, NOW)["api"]
    assert state == HealthState.CRITICAL and reasons == ["skew -9.5 >= -10"]


@pytest.mark.parametrize(("n", "said"), [(1, "1 sample"), (2, "2 samples")])
def test_finding_summaries_and_health_reasons_count_samples_in_words(n: int, said: str) -> None:
    th = Thresholds(sustain=n, down_after=n)
    [over] = _detect(_feed(SeriesStore(), "memory_percent", [95.0] * n), th)
    assert over.summary.endswith(f"(last {said})")
    down = _feed(SeriesStore(), "up", [1.0, *[0.0] * n])
    [f] = _detect(down, th)
    assert f.summary == f"api is down: up == 0 for the last {said}"
    assert assess(down, "api", th, NOW)[1][0] == f"down: up == 0 for the last {said}"


def test_a_floor_is_crossed_at_or_below_its_line_held_until_it_clears_and_degraded_near_it() -> None:
    """``minimums`` are floors (free connections, free bytes): the mirror image of a maximum. The
    last ``sustain`` samples at or below 10 cross it (a THRESHOLD finding, cause pool); it stays
    crossed while the latest is at or below the clear line 10 / 0.9 = 11.1 (hysteresis), is let go
    above it; above the line but within 10 / 0.9 of it the service is DEGRADED."""
    th = Thresholds(minimums={"pool_free": 10.0})
    det = HealthDetector({"api": th})
    store = _feed(SeriesStore(), "pool_free", [40.0, 9.0, 8.0])
    [f] = det.detect(store, NOW)
    assert (f.metric, f.kind, f.cause, f.value, f.threshold) == ("pool_free", FindingKind.THRESHOLD, "pool", 8.0, 10.0)
    assert f.summary == "api: pool_free 8 <= 10 (a minimum) (last 2 samples)"
    assert det.crossed("api") == {"pool_free"}
    store.append(Sample("api", "pool_free", NOW + 5, 10.5))  # above the line, under the clear line
    [held] = det.detect(store, NOW + 5)
    assert held.summary == "api: pool_free 10.5 still <= 11.11, the clear line of 10 (hysteresis) (last 2 samples)"
    assert det.states(store, NOW + 5)["api"][0] == HealthState.CRITICAL
    store.append(Sample("api", "pool_free", NOW + 10, 12.0))  # cleared
    assert det.detect(store, NOW + 10) == [] and det.crossed("api") == set()
    state, reasons = det.states(store, NOW + 10)["api"]  # within 10 / 0.9 = 11.1 of it? 12 is not
    assert state == HealthState.HEALTHY and reasons == []
    store.extend([Sample("api", "pool_free", NOW + 15, 11.0), Sample("api", "pool_free", NOW + 20, 10.8)])
    assert det.states(store, NOW + 20)["api"] == (
        HealthState.DEGRADED, ["pool_free 10.8 past the degraded line 11.11 of its minimum"])


def test_a_floor_lowered_since_the_checkpoint_is_not_held_after_the_restart() -> None:
    """What sat at 12 had crossed a floor of 15 (held, under its clear line 16.7); the floor is
    lowered to 5: 12 never crossed it, so it is not held. Unchanged, it is held still."""
    store = _feed(SeriesStore(), "pool_free", [14.0, 13.0, 12.0])
    old = HealthDetector({"api": Thresholds(minimums={"pool_free": 15.0})})
    old._crossed = {"api": {"pool_free"}}
    saved = json.loads(json.dumps(old.checkpoint()))
    assert saved["lines"] == {"api": {"pool_free": 15.0}}
    lowered = HealthDetector({"api": Thresholds(minimums={"pool_free": 5.0})})
    assert lowered.restore(saved) == ["crossed lines of api lowered since: pool_free (15 -> 5)"]
    assert lowered.crossed("api") == set() and lowered.detect(store, NOW) == []
    same = HealthDetector({"api": Thresholds(minimums={"pool_free": 15.0})})
    assert same.restore(saved) == [] and same.crossed("api") == {"pool_free"}


@pytest.mark.parametrize(("given", "said"), [
    ({"minimums": {"cpu_percent": 5.0}}, "'cpu_percent' has its own field; set it there, not in minimums"),
    ({"minimums": {"q": 1.0}, "extra": {"q": 9.0}}, "minimums: q has a maximum in extra too"),
    ({"minimums": {" ": 1.0}}, "metric names must not be empty"),
])
def test_a_floor_on_a_builtin_line_or_on_a_metric_with_a_maximum_is_refused_naming_the_field(
        given: dict, said: str) -> None:
    with pytest.raises(ValueError, match=re.escape(said)):
        Thresholds(**given)
