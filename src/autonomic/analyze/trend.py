"""Forecasts: will a rising metric reach its maximum soon (or, asked, a falling one its floor), and when.

:func:`predict_breach` is the pure core; :class:`TrendDetector` runs it per (service, spec)
and turns each forecast into a FORECAST finding.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from scipy import stats
from scipy.signal import lfilter

from autonomic.analyze.causes import cause_of
from autonomic.analyze.thresholds import Thresholds
from autonomic.clock import duration
from autonomic.errors import ConfigError
from autonomic.model import COUNTER_SUFFIXES, Finding, FindingKind, Severity
from autonomic.protocols import SeriesReader

MAX_FORECAST_CONFIDENCE = 0.95


def not_a_counter(metric: str) -> str:
    """``metric``, or ValueError when its name is a Prometheus counter's (``*_total``, and a
    summary's or histogram's ``_count``, ``_sum``, ``_bucket``): a counter only grows, so a line
    through it reaches any threshold and every forecast of it is a false breach."""
    if metric.endswith(COUNTER_SUFFIXES):
        raise ValueError(f"{metric!r} is named like a Prometheus counter: a counter only grows, so its trend "
                         "reaches any line; forecast its rate instead (a promql metric such as "
                         f"rate({metric}[5m]))")
    return metric


class TrendSpec(BaseModel):
    """Which metric to forecast and how. ``threshold`` None takes the service's maximum from
    :class:`Thresholds`. ``min_span_s`` None means half of ``window_s`` (see
    :func:`predict_breach`, rule 1). ``direction: falling`` forecasts the metric falling to
    ``threshold`` (None: the service's floor, ``thresholds.minimums``): free connections, free
    disk bytes, a quota's remainder running out."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    metric: str = Field(min_length=1)
    direction: Literal["rising", "falling"] = "rising"
    threshold: float | None = None
    window_s: float = Field(default=300.0, gt=0)
    min_points: int = Field(default=8, ge=3)
    min_span_s: float | None = Field(default=None, ge=0)
    horizon_s: float = Field(default=3600.0, gt=0)
    ema_alpha: float = Field(default=0.3, gt=0, le=1)
    z_min: float = Field(default=2.0, ge=0)
    min_r2: float = Field(default=0.5, ge=0, le=1)
    # the longer view a rise the window reads as one step is looked at over, for a leak that grows
    # in jumps (predict_breach rule 9); 0: never. Off by default: BENCHMARKS.md, staircase
    long_window_s: float = Field(default=0.0, ge=0)

    _metric_not_a_counter = field_validator("metric")(not_a_counter)

    @model_validator(mode="after")
    def _span_fits_the_window(self) -> TrendSpec:
        if self.min_span_s is not None and self.min_span_s > self.window_s:
            raise ValueError(f"min_span_s ({self.min_span_s:g}) must not exceed window_s ({self.window_s:g}): "
                             "no window could ever hold that much history")
        if 0 < self.long_window_s < 2 * self.window_s:
            raise ValueError(f"long_window_s ({self.long_window_s:g}) must be at least twice window_s "
                             f"({self.window_s:g}), the history a staircase needs, or 0 (off)")
        return self

    @property
    def span_s(self) -> float:
        """The history a forecast needs: ``min_span_s``, else half of ``window_s``."""
        return self.window_s / 2 if self.min_span_s is None else self.min_span_s


def default_trend_specs(held_s: float = math.inf, interval_s: float = 0.0) -> list[TrendSpec]:
    """Forecasts worth having for every service: memory, pool and disk filling up. Each needs
    half its window of history, or 90% of ``held_s`` (the history the series store keeps) when
    that is shorter: at a sub-second interval the store keeps less than half a window. Its
    window is ``min_points`` intervals long when that is longer than the default 300 s (480 s at
    a 60 s ``interval_s``): past a 43 s interval 300 s holds fewer than its 8 points, and the
    forecasts would never be made."""
    specs = []
    for metric in ("memory_percent", "pool_utilization", "disk_percent"):
        spec = TrendSpec(metric=metric)
        if spec.min_points * interval_s > spec.window_s:
            spec = TrendSpec(metric=metric, window_s=spec.min_points * interval_s)
        specs.append(spec)
    return [s if s.span_s <= 0.9 * held_s else s.model_copy(update={"min_span_s": 0.9 * held_s}) for s in specs]


@dataclass(frozen=True)
class Forecast:
    """A predicted breach. Times are seconds; the fit is on ``ts - now``, so ``intercept`` is
    the fitted value at ``now``. ``eta_low_s``/``eta_high_s`` bound ``eta_s`` at 95% (see
    :func:`predict_breach`); ``eta_high_s`` is ``inf`` when the slope is not significantly
    above 0. ``evidence()`` gives the fields JSON-ready."""

    slope_per_s: float
    intercept: float
    r2: float
    ema: float
    ema_start: float
    zscore: float
    current: float
    threshold: float
    breach_at: float
    eta_s: float
    eta_low_s: float
    eta_high_s: float
    points: int

    def mirrored(self) -> Forecast:
        """This forecast of the negated series (a fall to a line fitted as a rise to its negation)
        in the series' own terms: values, slope and line negated back; times, fit and z as they are."""
        return replace(self, slope_per_s=-self.slope_per_s, intercept=-self.intercept, ema=-self.ema,
                       ema_start=-self.ema_start, current=-self.current, threshold=-self.threshold)

    def evidence(self) -> dict[str, Any]:
        """The fields as JSON-friendly values (non-finite floats become None)."""
        out: dict[str, Any] = {}
        for key, value in asdict(self).items():
            if isinstance(value, float):
                out[key] = value if math.isfinite(value) else None
            else:
                out[key] = value
        return out


def _ema(values: np.ndarray, alpha: float) -> float:
    """Exponential moving average at the last value, seeded with the first."""
    y, _ = lfilter([alpha], [1.0, alpha - 1.0], values, zi=[(1.0 - alpha) * values[0]])
    return float(y[-1])


def _eta_interval(
    x: np.ndarray, slope: float, level: float, slope_se: float, threshold: float, eta: float
) -> tuple[float, float]:
    """The times (from now) where the 95% confidence band of ``level + slope * x`` meets
    ``threshold``: the roots of ``(level + slope*x - T)^2 = q * (1/n + (x - xbar)^2 / Sxx)``
    with ``q = t975^2 * s^2`` and ``s^2 = slope_se^2 * Sxx``. Clamped at 0; the upper end is
    ``inf`` when ``slope^2 <= t975^2 * slope_se^2`` (the band never closes)."""
    n = x.size
    xbar = float(x.mean())
    sxx = float(((x - xbar) ** 2).sum())
    tq = float(stats.t.ppf(0.975, n - 2))
    q = tq * tq * slope_se * slope_se * sxx
    c = level - threshold
    a = slope * slope - q / sxx
    b = 2.0 * slope * c + 2.0 * q * xbar / sxx
    cc = c * c - q / n - q * xbar * xbar / sxx
    disc = b * b - 4.0 * a * cc
    if a > 0 and -1e-9 * max(b * b, abs(4.0 * a * cc)) <= disc < 0:
        disc = 0.0  # an exact line (no residuals): a band of width 0, not a rounding error's "never"
    if a > 0 and disc >= 0:
        root = math.sqrt(disc)
        low, high = (-b - root) / (2.0 * a), (-b + root) / (2.0 * a)
        return max(0.0, min(low, eta)), max(0.0, high, eta)
    # the band never closes: the set reaching threshold is a ray from the root below eta, if any
    roots: list[float] = []
    if a != 0 and disc >= 0:
        roots = [(-b + sign * math.sqrt(disc)) / (2.0 * a) for sign in (-1.0, 1.0)]
    below = [r for r in roots if r <= eta]
    return max(0.0, max(below, default=0.0)), math.inf


def _levels_off_below(x: np.ndarray, v: np.ndarray, threshold: float) -> bool:
    """Whether the least-squares parabola through ``(x, v)`` (``x`` = time from now) is
    significantly concave (its curvature's t statistic <= -2) and its highest value at
    ``x >= 0`` (its vertex, or now when the vertex is past) is below ``threshold``."""
    if x.size < 4:
        return False
    scale = max(float(np.ptp(x)), 1e-9)
    u = x / scale
    design = np.stack([np.ones_like(u), u, u * u], axis=1)
    coef, *_ = np.linalg.lstsq(design, v, rcond=None)
    resid = v - design @ coef
    s2 = float(resid @ resid) / (x.size - 3)
    cov = s2 * np.linalg.pinv(design.T @ design)
    a, b, c = (float(k) for k in coef)
    se_c = math.sqrt(max(float(cov[2, 2]), 0.0))
    if not c < 0 or (se_c > 0 and c / se_c > -2.0):
        return False
    peak_at = max(-b / (2.0 * c), 0.0)
    return a + b * peak_at + c * peak_at * peak_at < threshold


_STEP_F_MIN = 25.0  # as the seasonal forecaster's step_f_min
_STEP_T_MIN = 2.0


def _a_step_not_a_slope(x: np.ndarray, v: np.ndarray) -> bool:
    """Whether the rise through ``(x, v)`` is a level shift rather than a slope: the best line
    with one step (``a + b*x + c*[x >= x_k]``, at least 2 points each side) fits significantly
    better than the line (F statistic >= 25, as the seasonal forecaster's ``step_f_min``) and
    its slope ``b`` is not significantly above 0 (``t < 2``). ``x`` is sorted. Every step's fit
    is solved from its normal equations, made of running sums: memory and time in the points'
    number, not its square (a full series store is 720 points or more, at each tick)."""
    return _best_step(x, v)[0]


def _best_step(x: np.ndarray, v: np.ndarray) -> tuple[bool, int]:
    """(:func:`_a_step_not_a_slope`, the index of the best step's first point); (False, 0) when no
    step fits (fewer than 5 points)."""
    n = x.size
    if n < 5:
        return False, 0
    scale = max(float(np.ptp(x)), 1e-9)
    u = (x - x.mean()) / scale
    w = v - v.mean()  # centred: the sums of squares below are of the residuals' size, not the values'
    ks = np.arange(2, n - 1)  # the step's first point: 2 .. n-2, so each side has 2 points or more
    m = (n - ks).astype(np.float64)  # points at or after the step
    tail_u = np.cumsum(u[::-1])[::-1][ks]  # sum of u over the points at or after the step
    tail_w = np.cumsum(w[::-1])[::-1][ks]
    su, suu, sw, suw = float(u.sum()), float(u @ u), float(w.sum()), float(u @ w)
    xtx = np.empty((ks.size, 3, 3))  # X'X of the design [1, u, step] for each step
    xtx[:, 0, 0], xtx[:, 0, 1], xtx[:, 0, 2] = n, su, m
    xtx[:, 1, 0], xtx[:, 1, 1], xtx[:, 1, 2] = su, suu, tail_u
    xtx[:, 2, 0], xtx[:, 2, 1], xtx[:, 2, 2] = m, tail_u, m
    xtw = np.stack([np.full(ks.size, sw), np.full(ks.size, suw), tail_w], axis=1)  # X'w
    inv = np.linalg.pinv(xtx)  # (K, 3, 3)
    coef = np.einsum("kij,kj->ki", inv, xtw)
    sse = np.maximum(float(w @ w) - np.einsum("ki,ki->k", coef, xtw), 0.0)
    line = np.polyfit(u, w, 1)
    sse_line = float(((w - np.polyval(line, u)) ** 2).sum())
    best = int(np.argmin(sse))
    at = int(ks[best])
    gain = sse_line - float(sse[best])
    if gain <= 1e-9 * max(float(w @ w), 1e-300):
        return False, at  # the step adds nothing (an exact line: no residuals either way)
    if gain / max(float(sse[best]) / (n - 3), 1e-300) < _STEP_F_MIN:
        return False, at
    slope = float(coef[best, 1])
    se = math.sqrt(max(float(sse[best]) / (n - 3) * float(inv[best, 1, 1]), 0.0))
    return not (slope > 0 and (se == 0 or slope / se >= _STEP_T_MIN)), at


def _a_staircase(x: np.ndarray, v: np.ndarray) -> bool:
    """Whether the rise through ``(x, v)``, sorted, is steps after steps (a leak that grows in
    jumps: a cache filled by a periodic job) rather than one or two level shifts (a deploy or two):
    it is not :func:`_a_step_not_a_slope`, and with its best step taken out it still is not (two
    deploys in view: one taken out leaves the other, a step)."""
    step_only, at = _best_step(x, v)
    if step_only or at == 0:
        return False
    # the step's own height, from the points beside it (the fit's shares it with the line's slope)
    side = max(2, min(at, x.size - at, 5))
    rest = v.copy()
    rest[at:] -= float(np.median(v[at:at + side]) - np.median(v[at - side:at]))
    return not _a_step_not_a_slope(x, rest)


def _in_window(ts: Any, values: Any, now: float, window_s: float) -> tuple[np.ndarray, np.ndarray]:
    """The points of ``(ts, values)`` with ``now - window_s <= ts <= now`` and a finite value, as
    float arrays, in the order given."""
    t_all = np.asarray(ts, dtype=np.float64)
    v_all = np.asarray(values, dtype=np.float64)
    keep = (t_all >= now - window_s) & (t_all <= now) & np.isfinite(v_all)
    return t_all[keep], v_all[keep]


def predict_breach(
    ts: Any,
    values: Any,
    threshold: float,
    *,
    now: float,
    window_s: float = 300.0,
    min_points: int = 8,
    horizon_s: float = 3600.0,
    ema_alpha: float = 0.3,
    z_min: float = 2.0,
    min_r2: float = 0.5,
    min_span_s: float = 0.0,
    longer: Callable[[], tuple[Any, Any]] | None = None,
    long_window_s: float = 0.0,
) -> Forecast | None:
    """When will a rising series reach ``threshold`` (a maximum)? None unless every rule holds:

    1. Only points with ``now - window_s <= ts <= now`` count, taken in time order whatever
       their order in ``ts`` (a replay, a source's own timestamps); fewer than ``min_points``,
       or spanning less than ``min_span_s`` (or all at one instant) -> None: a series only a
       few seconds old (the engine just started: its series store begins empty) is not
       extrapolated an hour ahead; the first upswing of a healthy sawtooth would look like a leak.
    2. Ordinary least squares of value on ``ts - now`` (``scipy.stats.linregress``): the slope
       must be > 0 (rising toward the maximum).
    3. Fit quality: ``r2 >= min_r2``, so noise around a flat line does not forecast.
    4. EMA confirmation: the EMA (``ema_alpha``, seeded with the first point) at the end of the
       window must be above the mean of the window's first half (``ema_start``): the rise is
       recent and real, not one early outlier tilting the fit.
    5. Z-score: ``(current - mean(first half)) / std(first half)`` with the std floored
       (``1e-6 * max(1, |mean|)``) to avoid dividing by zero must be ``>= z_min``: the latest
       value has left its earlier range.
    6. ``current`` (the latest value) must still be below ``threshold``; a metric already past
       it is the threshold detector's business.
    7. ``eta_s = (threshold - fitted value at now) / slope`` (clamped at 0) must be
       ``<= horizon_s``.
    8. Not levelling off (:func:`_levels_off_below`): a rise whose least-squares parabola is
       significantly concave (curvature t <= -2) and peaks below ``threshold`` from now on
       is not a breach. A leak is a straight line; a service warming up after a restart (its
       caches and heap filling to a plateau) is a decelerating curve, which the straight line
       would extrapolate to a breach, and then the next restart's warm-up, for ever. (A
       parabola peaks lower than an exponential approach to the same plateau: a rise levelling
       off only just above the line may go unforecast, and is the threshold detector's.)
    9. Not a step (:func:`_a_step_not_a_slope`): a level shift with flat sides (a deploy or a
       config change raising memory from 40 to 60 and holding it there) is fitted by the straight
       line as a steep rise, "reaching 85 in 200 s" for as long as the step is in the window. When
       a line with one step fits significantly better (F >= 25) and its slope is not significantly
       rising (t < 2), there is no forecast; a leak that a step interrupts is still forecast.
       Unless it is a staircase: given ``longer`` (the series over ``long_window_s``, asked only
       here), a rise that is steps after steps there (:func:`_a_staircase`: no single step, nor
       two, explains it) is forecast by these rules over the longer view, needing history over
       twice ``window_s``. A leak that grows in jumps (a cache a periodic job fills) shows one jump
       per window, each alike to a deploy, and was never forecast.

    The interval ``[eta_low_s, eta_high_s]`` is where the fitted line's 95% confidence band
    crosses ``threshold`` (Fieller's interval, see :func:`_eta_interval`). It comes from the
    slope's standard error (``linregress`` ``stderr``) and, through the same residual scale,
    the uncertainty of the fitted level at ``now``; ``eta_high_s`` is ``inf`` when the slope
    is not significantly above 0 at 95%.
    """
    t, v = _in_window(ts, values, now, window_s)
    n = int(t.size)
    span = float(np.ptp(t)) if n else 0.0
    if n < max(min_points, 3) or span == 0.0 or span < min_span_s:
        return None
    fit = stats.linregress(t - now, v)
    slope = float(fit.slope)
    if not slope > 0:
        return None
    r2 = float(fit.rvalue) ** 2
    if r2 < min_r2:
        return None
    order = np.argsort(t, kind="stable")  # the rules below read the points in time order
    t, v = t[order], v[order]
    first = v[: n // 2]
    ema_start = float(first.mean())
    ema = _ema(v, ema_alpha)
    if not ema > ema_start:
        return None
    current = float(v[-1])
    spread = max(float(first.std()), 1e-6 * max(1.0, abs(ema_start)))
    zscore = (current - ema_start) / spread
    if zscore < z_min:
        return None
    if current >= threshold:
        return None
    fitted_now = float(fit.intercept)
    gap = max(threshold - fitted_now, 0.0)
    eta = gap / slope
    if eta > horizon_s:
        return None
    if _levels_off_below(t - now, v, threshold):
        return None
    if _a_step_not_a_slope(t - now, v):
        if longer is None or long_window_s <= window_s:
            return None
        # a staircase: one step per window, each read as a deploy; over a longer view, steps
        # after steps are a slope (a lone step, or two, are still steps there)
        t_long, v_long = _in_window(*longer(), now, long_window_s)
        in_order = np.argsort(t_long, kind="stable")
        if not _a_staircase(t_long[in_order] - now, v_long[in_order]):
            return None
        return predict_breach(t_long, v_long, threshold, now=now, window_s=long_window_s, min_points=min_points,
                              horizon_s=horizon_s, ema_alpha=ema_alpha, z_min=z_min, min_r2=min_r2,
                              min_span_s=max(min_span_s, 2 * window_s))
    eta_low, eta_high = _eta_interval(t - now, slope, fitted_now, float(fit.stderr), threshold, eta)
    return Forecast(
        slope_per_s=slope,
        intercept=fitted_now,
        r2=r2,
        ema=ema,
        ema_start=ema_start,
        zscore=float(zscore),
        current=current,
        threshold=float(threshold),
        breach_at=now + eta,
        eta_s=eta,
        eta_low_s=eta_low,
        eta_high_s=eta_high,
        points=n,
    )


def forecast_confidence(forecast: Forecast, z_min: float) -> float:
    """``r2 * min(1, z / (2 * z_min))``, capped at 0.95: a clean fit (high r2) of a series that
    has clearly left its range (z at least twice the minimum) is as sure as a forecast gets;
    a just-passing z halves it. A forecast is never certain, hence the cap."""
    z_part = 1.0 if z_min <= 0 else min(1.0, forecast.zscore / (2.0 * z_min))
    return round(min(MAX_FORECAST_CONFIDENCE, max(0.0, forecast.r2 * z_part)), 3)


def spec_line(kind: str, service: str, metric: str, threshold: float | None,
              thresholds: Mapping[str, Thresholds], *, falling: bool = False) -> float:
    """The line a forecast spec predicts the breach of: its own ``threshold``, else the service's
    maximum for the metric (defaults when the service has none), or, ``falling``, its floor
    (``thresholds.minimums``). No line anywhere is a ConfigError naming the ``kind`` of spec, the
    service and the metric."""
    th = thresholds.get(service, Thresholds())
    line = threshold if threshold is not None else (th.floors() if falling else th.maximums()).get(metric)
    if line is None:
        raise ConfigError(f"{kind} spec for service {service!r} metric {metric!r}: no threshold (set threshold on "
                          f"the spec or thresholds.{'minimums' if falling else 'extra'} for the service)")
    return float(line)


def _longer_view(series: SeriesReader, service: str, spec: TrendSpec, now: float,
                 falling: bool) -> tuple[Any, Any]:
    """``service``'s ``spec.metric`` over ``spec.long_window_s`` up to ``now``, negated when
    ``falling`` (as the window is): ``predict_breach``'s ``longer``."""
    t_long, v_long = series.window(service, spec.metric, now - spec.long_window_s)
    return t_long, np.negative(np.asarray(v_long, dtype=np.float64)) if falling else v_long


class TrendDetector:
    """Detector ``trend``: FORECAST findings for the ``specs`` of each service.

    Severity is critical when the breach is due within a quarter of the spec's horizon, else
    warning; confidence is :func:`forecast_confidence`. A spec without its own threshold takes
    the service's maximum from ``thresholds`` (defaults when the service has none); a metric
    with no maximum anywhere is a ConfigError here, not a silent no-op later.
    """

    name = "trend"

    def __init__(
        self, specs: Mapping[str, Sequence[TrendSpec]], thresholds: Mapping[str, Thresholds]
    ) -> None:
        self._plan: list[tuple[str, TrendSpec, float]] = [
            (service, spec, spec_line("trend", service, spec.metric, spec.threshold, thresholds,
                                      falling=spec.direction == "falling"))
            for service, service_specs in specs.items() for spec in service_specs
        ]

    def detect(self, series: SeriesReader, now: float) -> Sequence[Finding]:
        findings: list[Finding] = []
        for service, spec, line in self._plan:
            latest = series.latest(service, spec.metric)
            if latest is None or latest[0] < now - spec.window_s:
                continue  # no point in the window: no forecast (rule 1), asked cheaply for a fleet
            ts, values = series.window(service, spec.metric, now - spec.window_s)
            falling = spec.direction == "falling"  # forecast as the negation's rise to the line's negation
            longer = (functools.partial(_longer_view, series, service, spec, now, falling)
                      if spec.long_window_s else None)
            forecast = predict_breach(
                ts,
                np.negative(np.asarray(values, dtype=np.float64)) if falling else values,
                -line if falling else line,
                now=now,
                window_s=spec.window_s,
                min_points=spec.min_points,
                horizon_s=spec.horizon_s,
                ema_alpha=spec.ema_alpha,
                z_min=spec.z_min,
                min_r2=spec.min_r2,
                min_span_s=spec.span_s,
                longer=longer,
                long_window_s=spec.long_window_s,
            )
            if forecast is None:
                continue
            if falling:
                forecast = forecast.mirrored()
            critical = forecast.eta_s < spec.horizon_s / 4
            findings.append(
                Finding(
                    service=service,
                    metric=spec.metric,
                    kind=FindingKind.FORECAST,
                    cause=cause_of(spec.metric),
                    severity=Severity.CRITICAL if critical else Severity.WARNING,
                    confidence=forecast_confidence(forecast, spec.z_min),
                    ts=now,
                    value=forecast.current,
                    threshold=line,
                    summary=f"{spec.metric} will {'fall to' if falling else 'reach'} {line:g} in "
                    f"{duration(forecast.eta_s)} "
                    f"(slope {forecast.slope_per_s:.3g}/s, r2 {forecast.r2:.2f})",
                    evidence=forecast.evidence(),
                )
            )
        return findings
