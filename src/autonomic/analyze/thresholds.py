"""Static thresholds and health states.

Per service, :class:`Thresholds` (from ``autonomic.yaml`` ``services[].thresholds``) gives a
line for each metric. :class:`HealthDetector` turns the series into findings:

* **down** (STATE, cause ``down``, confidence 0.95): the last ``down_after`` samples of
  ``up`` (checked first) or ``probe_ok`` are all 0.
* **threshold** (THRESHOLD, cause :func:`cause_of`, confidence 0.9): the last ``sustain``
  samples of a metric are all at or above its maximum (minimum duration); once crossed it
  stays crossed while the latest value is at or above ``clear_fraction * maximum``
  (hysteresis), so a metric hovering at its line keeps one incident rather than flapping;
  what is held crossed is checkpointed with the detectors' state, so a restart keeps it.
  ``thresholds.minimums`` are floors, the mirror image: the last ``sustain`` samples all at or
  below the line cross it, and it stays crossed while the latest value is at or below
  ``line / clear_fraction``; its degraded line is ``line / degraded_fraction``.
  ``availability`` is the built-in minimum: the percentage of ``probe_ok == 1`` over the trailing
  ``availability_window_s``, computed at each of the last ``sustain`` probe samples, must stay
  at or above the line. Outages are left out of it: a run of at least ``down_after`` failed
  probes in a row is the down finding's (and is healed as one), so it is not counted at all;
  availability measures the failures that down never sees (a failed probe here and there).
  Otherwise every healed crash longer than the error budget (3 s in 5 minutes at 99%) would
  keep availability under its line for the window after it and escalate a second incident.

A metric counts only when its latest sample is no older than ``stale_s`` (the engine's:
:func:`stale_after`). While a service
is down, the probe-derived findings (``probe_latency_ms``, ``availability``) are left out:
they are symptoms of the same outage, and a failed attempt's latency is not a latency.
``probe_latency_ms`` is also ignored while the latest probe failed.

:func:`assess` gives the service's :class:`HealthState`: FAILING when down, CRITICAL when a
threshold is crossed, DEGRADED when a metric is past its degraded line
(``degraded_fraction * maximum``, ``floor / degraded_fraction``; for availability, when that
fraction of the error budget ``100 - availability`` is used) or the latest up/probe sample
failed but not yet ``down_after`` times, else HEALTHY.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationInfo, field_validator, model_validator

from autonomic.analyze.causes import cause_of
from autonomic.model import Finding, FindingKind, HealthState, Severity
from autonomic.printable import counted
from autonomic.protocols import SeriesReader

STALE_S = 30.0  # the least age at which a metric's latest sample no longer counts
DOWN_CONFIDENCE = 0.95
THRESHOLD_CONFIDENCE = 0.9
_EVIDENCE_SAMPLES = 5  # how many recent values a finding quotes
_DOWN_METRICS = ("up", "probe_ok")
_MAXIMUMS = (
    "cpu_percent",
    "memory_percent",
    "disk_percent",
    "error_rate",
    "latency_ms",
    "probe_latency_ms",
    "pool_utilization",
)


def stale_after(interval_s: float, range_steps: Iterable[float] = ()) -> float:
    """How old a metric's latest sample may be and still count (:class:`HealthDetector`'s
    ``stale_s``): 30 s, three collection intervals when longer, and a PromQL range source's
    ``step_s`` plus two intervals (its newest point is up to a step old when it comes). At a 60 s
    interval one missed scrape (a timeout) left the latest sample 60 s old: every finding of the
    service stopped for that tick, and a line held crossed (hysteresis) was let go, its incident
    closing as cleared while the metric stayed in the band; a range query's 60 s step did that
    every other tick."""
    return max(STALE_S, 3.0 * interval_s, *(step + 2.0 * interval_s for step in range_steps))


def maximum_kind(metric: str) -> Literal["builtin", "extra"] | None:
    """Where a service's maximum for ``metric`` comes from: a field every service has (``builtin``:
    ``error_rate``, ``memory_percent``, ...), ``thresholds.extra`` (``extra``: any other name, which
    a service may or may not give), or nowhere (None: ``availability`` is a minimum, ``up`` and
    ``probe_ok`` have no line)."""
    if metric in _MAXIMUMS:
        return "builtin"
    if metric == "availability" or metric in _DOWN_METRICS:
        return None
    return "extra"


class Thresholds(BaseModel):
    """One service's lines. Every metric field is a maximum except ``availability``; ``extra``
    adds maximums and ``minimums`` floors, by metric name (a metric has one or the other)."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    cpu_percent: float = Field(default=80.0, gt=0)  # percent of one core; may exceed 100
    memory_percent: float = Field(default=85.0, gt=0, le=100)
    disk_percent: float = Field(default=90.0, gt=0, le=100)
    error_rate: float = Field(default=0.05, gt=0, le=1)
    latency_ms: float = Field(default=1000.0, gt=0)
    probe_latency_ms: float = Field(default=1000.0, gt=0)
    availability: float = Field(default=99.0, ge=0, le=100)  # a minimum, percent
    availability_window_s: float = Field(default=300.0, gt=0)
    availability_min_probes: int = Field(default=10, ge=1)  # fewer probes since start: no verdict
    pool_utilization: float = Field(default=90.0, gt=0, le=100)
    extra: dict[str, float] = Field(default_factory=dict)  # more maximums, by metric name
    minimums: dict[str, float] = Field(default_factory=dict)  # floors, by metric name (free connections, free bytes)
    degraded_fraction: float = Field(default=0.9, gt=0, le=1)
    # hysteresis: once a maximum is crossed it stays crossed until the value falls below
    # clear_fraction * the line, so a metric hovering at the line does not flap
    clear_fraction: float = Field(default=0.9, gt=0, le=1)
    sustain: int = Field(default=2, ge=1)
    down_after: int = Field(default=2, ge=1)

    @field_validator("extra", "minimums")
    @classmethod
    def _extra_names_new_metrics(cls, v: dict[str, float], info: ValidationInfo) -> dict[str, float]:
        reserved = set(_MAXIMUMS) | {"availability", *_DOWN_METRICS}
        for name in v:
            if not name.strip():
                raise ValueError("metric names must not be empty")
            if name in reserved:
                raise ValueError(f"{name!r} has its own field; set it there, not in {info.field_name}")
        return v

    @model_validator(mode="after")
    def _a_metric_has_a_maximum_or_a_floor(self) -> Thresholds:
        both = sorted(set(self.extra) & set(self.minimums))
        if both:
            raise ValueError(f"minimums: {', '.join(both)} has a maximum in extra too; give a metric one line")
        return self

    # made once from the fields at validation (the model is frozen); a model_copy(update=...)
    # would keep the old ones: make a new Thresholds instead
    _maximums: Mapping[str, float] = PrivateAttr()
    _floors: Mapping[str, float] = PrivateAttr()

    def model_post_init(self, context: Any, /) -> None:
        lines = {name: float(getattr(self, name)) for name in _MAXIMUMS}
        lines.update(self.extra)
        self._maximums = MappingProxyType(lines)
        self._floors = MappingProxyType({name: float(line) for name, line in self.minimums.items()})

    def maximums(self) -> Mapping[str, float]:
        """Every maximum by metric name: the built-in ones and ``extra`` (made once: the health
        detector asks for every service at every tick)."""
        return self._maximums

    def floors(self) -> Mapping[str, float]:
        """``minimums``, by metric name (made once, as :meth:`maximums`)."""
        return self._floors

    def limit(self, metric: str) -> float | None:
        """The line for ``metric`` (a maximum, or the availability minimum), None if it has none."""
        if metric == "availability":
            return self.availability
        return self.maximums().get(metric)


# --- evaluation shared by assess() and HealthDetector ---------------------------------------


@dataclass(frozen=True)
class _Crossing:
    metric: str
    value: float  # the latest value
    threshold: float
    samples: list[float]
    critical: bool  # False: only past the degraded line
    is_minimum: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class _Down:
    metric: str
    samples: list[float]


@dataclass
class _Evaluation:
    down: _Down | None = None
    suspect: list[str] = field(default_factory=list)  # failed once, not yet down
    crossings: list[_Crossing] = field(default_factory=list)


def _fresh_values(series: SeriesReader, service: str, metric: str, now: float, stale_s: float) -> Any:
    """All stored values of the metric (oldest first), or None when its latest is stale."""
    latest = series.latest(service, metric)
    if latest is None or latest[0] < now - stale_s:
        return None
    _, values = series.window(service, metric, -math.inf)
    return np.asarray(values, dtype=np.float64)


def _evaluate(
    series: SeriesReader, service: str, th: Thresholds, now: float, stale_s: float,
    stale_for: Mapping[str, float] | None = None,
) -> _Evaluation:
    """Only the metrics the service has samples of are read (a fleet's service has a few of the
    dozen lines). ``stale_for``: the service's metrics whose samples count longer than ``stale_s``
    (by metric: those a PromQL range query records, see :func:`stale_after`)."""
    stale_for = stale_for or {}
    ev = _Evaluation()
    probe_failing = False
    present = set(series.metrics(service))
    for metric in _DOWN_METRICS:
        if metric not in present:
            continue
        values = _fresh_values(series, service, metric, now, stale_for.get(metric, stale_s))
        if values is None or values.size == 0:
            continue
        failed = bool(values[-1] < 0.5)
        if metric == "probe_ok":
            probe_failing = failed
        tail = values[-th.down_after :]
        if ev.down is None and tail.size >= th.down_after and bool((tail < 0.5).all()):
            ev.down = _Down(metric, [float(x) for x in values[-max(th.down_after, _EVIDENCE_SAMPLES) :]])
        elif failed:
            ev.suspect.append(f"{metric} failed on the latest sample")

    for metric, line in th.maximums().items():
        if metric not in present or (metric == "probe_latency_ms" and (probe_failing or ev.down is not None)):
            continue
        values = _fresh_values(series, service, metric, now, stale_for.get(metric, stale_s))
        if values is None or values.size < th.sustain:
            continue
        low = float(values[-th.sustain :].min())  # the tail is at or above a line when its least is
        critical = low >= line
        if critical or low >= th.degraded_fraction * line:
            quoted = [float(x) for x in values[-max(th.sustain, _EVIDENCE_SAMPLES) :]]
            ev.crossings.append(_Crossing(metric, float(values[-1]), line, quoted, critical=critical))

    for metric, line in th.floors().items():
        if metric not in present:
            continue
        values = _fresh_values(series, service, metric, now, stale_for.get(metric, stale_s))
        if values is None or values.size < th.sustain:
            continue
        high = float(values[-th.sustain :].max())  # the tail is at or below a floor when its greatest is
        critical = high <= line
        if critical or high <= line / th.degraded_fraction:
            quoted = [float(x) for x in values[-max(th.sustain, _EVIDENCE_SAMPLES) :]]
            ev.crossings.append(_Crossing(metric, float(values[-1]), line, quoted, critical=critical,
                                          is_minimum=True))

    if ev.down is None and "probe_ok" in present:
        crossing = _availability(series, service, th, now, stale_s)
        if crossing is not None:
            ev.crossings.append(crossing)
    return ev


def _outages(ok: np.ndarray, down_after: int) -> np.ndarray:
    """1.0 for each failed probe in a run of at least ``down_after`` failures in a row (an outage:
    the down finding's), else 0.0."""
    failed = np.concatenate(([False], ok < 0.5, [False]))
    edges = np.flatnonzero(np.diff(failed.astype(np.int8)))
    out = np.zeros(ok.size)
    for start, stop in zip(edges[::2], edges[1::2], strict=True):
        if stop - start >= down_after:
            out[start:stop] = 1.0
    return out


def _availability(
    series: SeriesReader, service: str, th: Thresholds, now: float, stale_s: float
) -> _Crossing | None:
    """Availability at each of the last ``sustain`` probe samples, over its trailing window."""
    latest = series.latest(service, "probe_ok")
    if latest is None or latest[0] < now - stale_s:
        return None
    ts, values = series.window(service, "probe_ok", -math.inf)
    ts = np.asarray(ts, dtype=np.float64)
    values = np.asarray(values, dtype=np.float64)
    if ts.size > 1 and bool((np.diff(ts) < 0).any()):
        # the wall clock was set back: the window search below needs time order, and a sample
        # stamped after now (before the step) is not within any window ending now
        keep = ts <= now
        order = np.argsort(ts[keep], kind="stable")
        ts, values = ts[keep][order], values[keep][order]
    ok = (values >= 0.5).astype(np.float64)
    # Count from the first successful probe: failures before a service ever came up are its
    # start-up, not lost availability (a service that never comes up is "down", not this).
    if not ok.any():
        return None
    first_ok = int(np.argmax(ok > 0))
    ts, ok = ts[first_ok:], ok[first_ok:]
    if ts.size < max(th.sustain, th.availability_min_probes):
        return None
    counted = 1.0 - _outages(ok, th.down_after)
    ends = np.arange(ts.size - th.sustain, ts.size)
    starts = np.searchsorted(ts, ts[ends] - th.availability_window_s, side="right")
    cum_ok = np.concatenate(([0.0], np.cumsum(ok)))
    cum_n = np.concatenate(([0.0], np.cumsum(counted)))
    n = cum_n[ends + 1] - cum_n[starts]
    if not (n > 0).all():
        return None
    avail = (cum_ok[ends + 1] - cum_ok[starts]) / n * 100.0
    line = th.availability
    degraded_line = 100.0 - th.degraded_fraction * (100.0 - line)
    extra = {"window_s": th.availability_window_s, "probes": int(n[-1]),
             "outage_probes": int(ends[-1] + 1 - starts[-1] - n[-1])}
    quoted = [round(float(a), 3) for a in avail]
    if bool((avail < line).all()):
        return _Crossing("availability", float(avail[-1]), line, quoted, True, True, extra)
    if bool((avail <= degraded_line).all()) and degraded_line < 100.0:
        return _Crossing("availability", float(avail[-1]), line, quoted, False, True, extra)
    return None


def _reason(c: _Crossing, th: Thresholds) -> str:
    if c.extra.get("held"):
        side, clear = (("<=", c.threshold / th.clear_fraction) if c.is_minimum
                       else (">=", th.clear_fraction * c.threshold))
        return f"{c.metric} {c.value:.4g} still {side} {clear:.4g}, the clear line of {c.threshold:g} (hysteresis)"
    if c.metric == "availability":
        where = "below" if c.critical else "near"
        return f"availability {c.value:.3g}% {where} the {c.threshold:g}% minimum"
    if c.is_minimum:
        if c.critical:
            return f"{c.metric} {c.value:.4g} <= {c.threshold:g} (a minimum)"
        near = c.threshold / th.degraded_fraction
        return f"{c.metric} {c.value:.4g} past the degraded line {near:.4g} of its minimum"
    if c.critical:
        return f"{c.metric} {c.value:.4g} >= {c.threshold:g}"
    return f"{c.metric} {c.value:.4g} past the degraded line {th.degraded_fraction * c.threshold:.4g}"


def _held(series: SeriesReader, service: str, th: Thresholds, now: float, stale_s: float,
          crossed: Collection[str], ev: _Evaluation, stale_for: Mapping[str, float] | None = None) -> list[_Crossing]:
    """Hysteresis: of the lines in ``crossed`` (crossed earlier, not cleared yet), those not
    crossed now for ``sustain`` samples whose latest value is still on the crossed side of the
    clear line (at or above a maximum's, at or below a floor's), as critical crossings marked
    ``held``."""
    if not crossed:
        return []
    crossed_now = _held_lines(ev)
    held: list[_Crossing] = []
    lines, floors = th.maximums(), th.floors()
    for metric in crossed:
        if metric in crossed_now or (metric not in lines and metric not in floors):
            continue
        latest = series.latest(service, metric)
        if latest is None or latest[0] < now - (stale_for or {}).get(metric, stale_s):
            continue
        floor = metric in floors
        line = floors[metric] if floor else lines[metric]
        if (latest[1] > line / th.clear_fraction) if floor else (latest[1] < th.clear_fraction * line):
            continue
        held.append(_Crossing(metric, float(latest[1]), line, [float(latest[1])], critical=True,
                              is_minimum=floor, extra={"held": True}))
    return held


def _line_of(th: Thresholds, metric: str) -> float | None:
    """``metric``'s maximum or floor, None when it has neither."""
    line = th.maximums().get(metric)
    return line if line is not None else th.floors().get(metric)


def _held_lines(ev: _Evaluation) -> set[str]:
    """The lines crossed now that hysteresis holds once crossed: maximums and floors, not
    availability (a rate over its own window, smooth already)."""
    return {c.metric for c in ev.crossings if c.critical and c.metric != "availability"}


def assess(
    series: SeriesReader, service: str, thresholds: Thresholds, now: float, *, stale_s: float = 30.0,
    crossed: Collection[str] = (), stale_for: Mapping[str, float] | None = None,
) -> tuple[HealthState, list[str]]:
    """The service's health state now and the reasons for it (empty when HEALTHY). ``crossed``:
    the maximums a :class:`HealthDetector` holds as crossed (hysteresis), so the state does not
    flap between CRITICAL and DEGRADED while a metric hovers at its line."""
    ev = _evaluate(series, service, thresholds, now, stale_s, stale_for)
    if ev.down is None:
        ev.crossings.extend(_held(series, service, thresholds, now, stale_s, crossed, ev, stale_for))
    reasons: list[str] = []
    if ev.down is not None:
        reasons.append(f"down: {ev.down.metric} == 0 for the last {counted(thresholds.down_after, 'sample')}")
    reasons.extend(_reason(c, thresholds) for c in ev.crossings if c.critical)
    reasons.extend(_reason(c, thresholds) for c in ev.crossings if not c.critical)
    reasons.extend(ev.suspect)
    if ev.down is not None:
        state = HealthState.FAILING
    elif any(c.critical for c in ev.crossings):
        state = HealthState.CRITICAL
    elif ev.crossings or ev.suspect:
        state = HealthState.DEGRADED
    else:
        state = HealthState.HEALTHY
    return state, reasons


class _Screen:
    """Which services are worth evaluating one by one at a tick, found with array operations
    over each metric family (:meth:`SeriesReader.tails`), not a read per service.

    A service is passed over when none of its metrics' last ``sustain`` samples all reach its
    line, its latest ``up`` / ``probe_ok`` sample did not fail, no probe failed within the
    windows its availability is computed over, and nothing of it is held crossed (hysteresis).
    For such a service the evaluation finds nothing: no finding, no crossing to remember (a
    metric only past its degraded line makes neither). Asked for ``degraded`` too (health
    states), a metric's last samples all past its degraded line pick the service as well; a
    service passed over then is HEALTHY. Every test here is the evaluation's own
    comparison or looser (staleness, the metrics a service has, an outage's probes left out of
    availability: all left to the evaluation), so a service it would report on is never passed
    over; the tests compare the two on random fleets. One assumption, the same as
    availability's own window search: each series' timestamps increase."""

    _PROBE_DEPTH = 32  # samples of probe_ok read first; more for the rows whose window reaches further

    def __init__(self, thresholds: Mapping[str, Thresholds]) -> None:
        ths = list(thresholds.values())
        self.services = tuple(thresholds)
        self._at = {service: i for i, service in enumerate(self.services)}
        sustain = np.array([th.sustain for th in ths], dtype=np.int64)
        self.k = int(sustain.max()) if ths else 1
        self._sustain = sustain
        # of a tail of k samples (newest last), the columns within each service's sustain
        self._within = np.arange(self.k)[None, :] >= (self.k - sustain)[:, None]
        fractions = np.array([th.degraded_fraction for th in ths], dtype=np.float64)
        maximums = [th.maximums() for th in ths]  # (a private attribute: read once per service)
        self._lines: dict[str, tuple[np.ndarray, np.ndarray]] = {}  # metric -> (lines, degraded lines)
        for metric in sorted({m for lines_of in maximums for m in lines_of}):
            lines = np.array([lines_of.get(metric, math.nan) for lines_of in maximums], dtype=np.float64)
            # a line below zero has its degraded line above it: the lower of the two is the test
            self._lines[metric] = (lines, np.fmin(lines, fractions * lines))
        floors = [th.floors() for th in ths]
        self._floors: dict[str, tuple[np.ndarray, np.ndarray]] = {}  # metric -> (floors, degraded lines)
        for metric in sorted({m for floors_of in floors for m in floors_of}):
            lines = np.array([floors_of.get(metric, math.nan) for floors_of in floors], dtype=np.float64)
            self._floors[metric] = (lines, np.fmax(lines, lines / fractions))  # the higher of the two
        self._window_s = np.array([th.availability_window_s for th in ths], dtype=np.float64)

    def candidates(self, series: SeriesReader, held: Collection[str], *, degraded: bool = False) -> list[str]:
        """The services to evaluate (in configuration order): every one the evaluation could
        report on (``degraded``: or find DEGRADED), and the services in ``held`` (maximums still
        crossed)."""
        n = len(self.services)
        if n == 0:
            return []
        pick = np.zeros(n, dtype=bool)
        with np.errstate(invalid="ignore"):  # NaN (no sample, no line) compares False: not picked
            for metric, (lines, near) in self._lines.items():
                _, values = series.tails(metric, self.services, self.k)
                low = np.where(self._within, values, np.inf).min(axis=1)  # NaN: fewer than sustain
                pick |= low >= (near if degraded else lines)
            for metric, (lines, near) in self._floors.items():
                _, values = series.tails(metric, self.services, self.k)
                high = np.where(self._within, values, -np.inf).max(axis=1)
                pick |= high <= (near if degraded else lines)
            for metric in _DOWN_METRICS:
                _, latest = series.tails(metric, self.services, 1)
                pick |= latest[:, 0] < 0.5
            pick |= self._probe_failed_within_window(series)
        for service in held:
            i = self._at.get(service)
            if i is not None:
                pick[i] = True
        return [self.services[i] for i in np.flatnonzero(pick)]

    def _probe_failed_within_window(self, series: SeriesReader) -> np.ndarray:
        """Per service: a failed probe_ok sample newer than its availability window before the
        earliest of its last ``sustain`` samples (the windows availability is computed over)."""
        n = len(self.services)
        failed = np.zeros(n, dtype=bool)
        rows = np.arange(n)
        depth = max(self._PROBE_DEPTH, self.k)
        while rows.size:
            names = tuple(self.services[i] for i in rows) if rows.size < n else self.services
            ts, values = series.tails("probe_ok", names, depth)
            sustain = self._sustain[rows]
            first_end = ts[np.arange(rows.size), depth - sustain]  # NaN: fewer than sustain samples
            cutoff = first_end - self._window_s[rows]
            with np.errstate(invalid="ignore"):
                inside = ts > cutoff[:, None]
                failed[rows] |= (inside & (values < 0.5)).any(axis=1)
                # read further where the oldest sample read is still inside the window
                further = inside[:, 0] & ~failed[rows]
            rows = rows[further]
            depth *= 2
        return failed


class HealthDetector:
    """Detector ``health``: down and threshold findings for each configured service.

    ``stale_s``: a metric whose latest sample is older than this is ignored; ``stale_for``, by
    service and metric, a longer age for the metrics a PromQL range query records (its step
    plus two intervals, :func:`stale_after`): that query's step loosens no other metric's.

    Each tick, the services that can have a finding are found first with array operations over
    each metric family (:class:`_Screen`); only those are evaluated one by one. A fleet's
    healthy services cost a share of one array operation, not a read each.
    """

    name = "health"

    def __init__(self, thresholds: Mapping[str, Thresholds], stale_s: float = STALE_S, *,
                 stale_for: Mapping[str, Mapping[str, float]] | None = None) -> None:
        if stale_s <= 0:
            raise ValueError(f"stale_s must be positive, got {stale_s}")
        self.thresholds = dict(thresholds)
        self.stale_s = stale_s
        self.stale_for = {service: dict(by_metric) for service, by_metric in (stale_for or {}).items()}
        self._crossed: dict[str, set[str]] = {}  # service -> maximums crossed and not yet cleared
        self._screen = _Screen(self.thresholds)

    def detect(self, series: SeriesReader, now: float) -> Sequence[Finding]:
        return self._detect(series, now, self._screen.candidates(series, self._crossed))

    def _detect(self, series: SeriesReader, now: float, services: Iterable[str]) -> list[Finding]:
        """The findings of ``services``, each evaluated on its own (the screen's passed-over
        services would add none)."""
        findings: list[Finding] = []
        for service in services:
            th = self.thresholds[service]
            ev = _evaluate(series, service, th, now, self.stale_s, self.stale_for.get(service))
            if ev.down is not None:
                findings.append(
                    Finding(
                        service=service,
                        metric=ev.down.metric,
                        kind=FindingKind.STATE,
                        cause="down",
                        severity=Severity.CRITICAL,
                        confidence=DOWN_CONFIDENCE,
                        ts=now,
                        value=0.0,
                        summary=f"{service} is down: {ev.down.metric} == 0 for the last "
                        f"{counted(th.down_after, 'sample')}",
                        evidence={"samples": ev.down.samples, "down_after": th.down_after},
                    )
                )
            held = self._hysteresis(series, service, th, now, ev)
            for c in [*ev.crossings, *held]:
                if not c.critical:
                    continue
                findings.append(
                    Finding(
                        service=service,
                        metric=c.metric,
                        kind=FindingKind.THRESHOLD,
                        cause=cause_of(c.metric),
                        severity=Severity.CRITICAL,
                        confidence=THRESHOLD_CONFIDENCE,
                        ts=now,
                        value=c.value,
                        threshold=c.threshold,
                        summary=f"{service}: {_reason(c, th)} (last {counted(th.sustain, 'sample')})",
                        evidence={"samples": c.samples, "sustain": th.sustain, **c.extra},
                    )
                )
        return findings

    def states(self, series: SeriesReader, now: float) -> dict[str, tuple[HealthState, list[str]]]:
        """Every service's :func:`assess` (with the crossings this detector holds), in
        configuration order: the services the screen passes over are HEALTHY without a read."""
        near = set(self._screen.candidates(series, self._crossed, degraded=True))
        return {
            service: assess(series, service, th, now, stale_s=self.stale_s, crossed=self.crossed(service),
                            stale_for=self.stale_for.get(service))
            if service in near else (HealthState.HEALTHY, [])
            for service, th in self.thresholds.items()
        }

    def crossed(self, service: str) -> set[str]:
        """The lines (maximums, floors) of ``service`` crossed and not yet cleared (see the hysteresis rule)."""
        return set(self._crossed.get(service, ()))

    def checkpoint(self) -> dict[str, Any]:
        """The lines (maximums, floors) held crossed, by service, and the line each crossed
        (JSON-ready). Restored at start, a metric that crossed its line before a restart (or a
        reload) is still held while it stays on the crossed side of its clear line: forgotten, it
        was no finding at all there, so its incident closed as cleared on its own and the next
        crossing opened another."""
        lines = {service: {m: _line_of(self.thresholds[service], m) for m in sorted(metrics)
                           if service in self.thresholds and _line_of(self.thresholds[service], m) is not None}
                 for service, metrics in self._crossed.items()}
        return {"crossed": {service: sorted(metrics) for service, metrics in self._crossed.items()},
                "lines": {service: found for service, found in lines.items() if found}}

    def restore(self, state: dict[str, Any]) -> list[str]:
        """Take back the crossed lines of the services and lines still configured, and not moved
        past them since (``lines``, when the state has them: a maximum raised, a floor lowered; a
        value under the new maximum, or over the new floor, never crossed it, so it is not held;
        a line moved the other way was crossed too); one note per service and
        reason some were left out. Whether each is still held is the next tick's to say (its
        latest value against its clear line)."""
        if not isinstance(state, dict) or not isinstance(state.get("crossed"), dict):
            raise ValueError("health state: 'crossed' must be an object")
        saved_lines = state.get("lines", {})
        if not isinstance(saved_lines, dict) or not all(isinstance(v, dict) for v in saved_lines.values()):
            raise ValueError("health state: 'lines' must map a service to its lines by metric")
        notes = []
        for service, metrics in state["crossed"].items():
            if not isinstance(metrics, list) or not all(isinstance(m, str) for m in metrics):
                raise ValueError(f"health state of {service}: 'crossed' must map a service to metric names")
            th = self.thresholds.get(service)
            configured = {m for m in metrics if th is not None and _line_of(th, m) is not None}
            was = saved_lines.get(service, {})
            moved: dict[str, tuple[float, float]] = {}  # maximums raised since, floors lowered
            for m in sorted(configured):
                line = _line_of(th, m) if th is not None else None
                before = was.get(m)
                if th is not None and line is not None and isinstance(before, int | float) and (
                        line < before if m in th.floors() else line > before):
                    moved[m] = (float(before), line)
            kept = configured - set(moved)
            if kept:
                self._crossed[service] = kept
            if len(configured) < len(metrics):
                left = sorted(set(metrics) - configured)
                notes.append(f"crossed lines of {service} no longer configured: {', '.join(left)}")
            for kind, which in (("raised", False), ("lowered", True)):
                these = {m: ab for m, ab in moved.items() if th is not None and (m in th.floors()) == which}
                if these:
                    notes.append(f"crossed lines of {service} {kind} since: "
                                 + ", ".join(f"{m} ({a:g} -> {b:g})" for m, (a, b) in these.items()))
        return notes

    def _hysteresis(self, series: SeriesReader, service: str, th: Thresholds, now: float,
                    ev: _Evaluation) -> list[_Crossing]:
        """Remember what crossed; a crossed maximum no longer crossed for ``sustain`` samples is
        held (reported as still crossed) while its latest value is at or above the clear line. One
        with no sample at all yet (restored at start, before its source first answered) is kept
        for its first sample to judge."""
        crossed_now = _held_lines(ev)
        before = self._crossed.get(service, set()) - crossed_now
        held = _held(series, service, th, now, self.stale_s, before, ev, self.stale_for.get(service))
        unseen = {m for m in before if series.latest(service, m) is None}
        crossed = crossed_now | {c.metric for c in held} | unseen
        if crossed:
            self._crossed[service] = crossed
        else:
            self._crossed.pop(service, None)
        return held
