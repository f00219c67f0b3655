"""Seasonal breach forecasts: a robust trend on top of a learned daily profile.

:func:`predict_breach_seasonal` answers, for one series, "when will it reach ``threshold``
(a maximum)?", returning the :class:`~autonomic.analyze.trend.Forecast` shape of trend.py.
:func:`stream_forecasts` runs the very same rules over many aligned series at once
(numpy ``(N, T)``), evaluating every ``eval_s`` as a streaming engine would.

One evaluation at time ``now`` sees only samples with ``ts <= now``:

1. **Minimum history**: the oldest sample must be at least ``min_history_s`` before ``now``,
   else None (default 1.5 periods: with a single period a trend and the cycle are confounded).
2. **Daily profile**: on the samples in ``[b - history_s, b)`` where ``b`` is ``now``
   rounded down to a multiple of ``refit_s`` (so the profile is refit once per ``refit_s``),
   a robust fit of the harmonics ``cos/sin(2 pi k t / period_s)``, ``k = 1..harmonics``, plus a
   rate, to lagged differences (see :func:`fit_profile`: a leak and level steps stay out of
   the profile); the harmonic part is the profile ``s(t)``. Fewer than
   ``4 * (2 + 2 * harmonics)`` points -> None.
3. **Robust trend** on the deseasonalised values ``z = value - s(t)`` of the last
   ``window_s``: medians per ``block_s`` block (outliers do not move them), at least half the
   blocks present, then OLS of the block medians on time. A level shift is allowed for: the
   best single step (a + b t + c [t >= t_k], each side >= 2 blocks) replaces
   the plain line when its F statistic is >= ``step_f_min``, so a step alone is not a slope.
4. The slope must be rising with ``t = slope / se >= t_min`` (``zscore`` in the evidence),
   and the EMA of the block medians (``ema_alpha``) must be above the mean of the first half
   of the window (``ema_start``), as in trend.py.
5. ``current`` (median of the last block, raw) must be below ``threshold``.
6. A breach is the first *sample* at or over the threshold. Samples are modelled as the
   projection ``level + slope * h + s(now + h)`` (``level`` = trend value at ``now``) plus
   gaussian noise ``sigma`` (1.4826 * MAD of the deseasonalised values around their block
   medians), at the window's median sampling interval; ``eta_s`` is the median time of the
   first exceedance (:func:`_median_first_exceedance`, on a ``block_s / 4`` grid), and must be
   ``<= horizon_s``, else None. The interval ``[eta_low_s, eta_high_s]`` repeats that with
   slope +- 1.96 se (``eta_high_s`` is ``inf`` when it does not come within twice the horizon).
7. **Confirmation**: steps 1-6 must also hold at ``now - i * eval_s`` for ``i < confirm``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator
from scipy.special import log_ndtr

from autonomic.analyze.causes import cause_of
from autonomic.analyze.thresholds import Thresholds
from autonomic.analyze.trend import Forecast, forecast_confidence, not_a_counter, spec_line
from autonomic.clock import duration
from autonomic.model import Finding, FindingKind, Severity
from autonomic.protocols import SeriesReader


class SeasonalTrendSpec(BaseModel):
    """Which metric to forecast with a daily profile, and how (see the module docstring)."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    metric: str = Field(min_length=1)
    direction: Literal["rising", "falling"] = "rising"  # falling: to a floor (see TrendSpec)
    threshold: float | None = None
    period_s: float = Field(default=86_400.0, gt=0)
    harmonics: int = Field(default=3, ge=1, le=12)
    history_s: float = Field(default=2 * 86_400.0, gt=0)
    min_history_s: float = Field(default=1.5 * 86_400.0, ge=0)
    refit_s: float = Field(default=3600.0, gt=0)
    window_s: float = Field(default=6 * 3600.0, gt=0)
    block_s: float = Field(default=600.0, gt=0)
    horizon_s: float = Field(default=6 * 3600.0, gt=0)
    t_min: float = Field(default=4.0, ge=0)
    step_f_min: float = Field(default=25.0, ge=0)
    ema_alpha: float = Field(default=0.3, gt=0, le=1)
    eval_s: float = Field(default=300.0, gt=0)
    confirm: int = Field(default=3, ge=1)
    sample_s: float = Field(default=60.0, gt=0)  # SeasonalTrendDetector keeps one sample per this long

    _metric_not_a_counter = field_validator("metric")(not_a_counter)


def _basis(t: np.ndarray, period_s: float, harmonics: int) -> np.ndarray:
    """``(len(t), 2 * harmonics)``: cos and sin of each harmonic of the period."""
    w = 2.0 * np.pi * (np.asarray(t, dtype=np.float64) % period_s) / period_s
    k = np.arange(1, harmonics + 1)
    ang = w[:, None] * k[None, :]
    return np.concatenate([np.cos(ang), np.sin(ang)], axis=1)


def fit_profile(t: np.ndarray, y: np.ndarray, period_s: float, harmonics: int,
                lag_s: float = 3600.0, rounds: int = 3) -> np.ndarray:
    """Harmonic coefficients ``(N, 2 * harmonics)`` of ``y`` (N, len(t)), robust to steps.

    The fit is on lagged differences ``y(t) - y(t')`` with ``t'`` the first sample at or after
    ``t - lag_s``: a linear trend becomes a constant rate (fitted too) and a level step only
    touches the differences that straddle it, which the rejection rounds take out (a difference
    more than 3 robust sigmas from the fit is replaced by the fit, then refit; likewise the
    stretch where a leak has only just started). With no pair at least ``lag_s / 2`` apart, the
    plain least squares on the values (line + harmonics) is used."""
    y2 = np.atleast_2d(y)
    j = np.searchsorted(t, t - lag_s)
    pair = (t - lag_s >= t[0]) & (t - t[j] >= lag_s / 2)
    if int(pair.sum()) < 4 * (1 + 2 * harmonics):
        mid = float(t.mean())
        design = np.concatenate([np.ones((t.size, 1)), ((t - mid) / period_s)[:, None],
                                 _basis(t, period_s, harmonics)], axis=1)
        return np.asarray((np.linalg.pinv(design) @ y2.T)[2:].T)
    a, b = np.flatnonzero(pair), j[pair]
    design = np.concatenate([((t[a] - t[b]) / period_s)[:, None],
                             _basis(t[a], period_s, harmonics) - _basis(t[b], period_s, harmonics)], axis=1)
    pinv = np.linalg.pinv(design)  # (p, P)
    d = (y2[:, a] - y2[:, b]).T  # (P, N)
    work = d
    for _ in range(rounds):
        coef = pinv @ work
        fitted = design @ coef
        resid = d - fitted
        sigma = 1.4826 * np.median(np.abs(resid), axis=0)
        work = np.where(np.abs(resid) > 3.0 * np.maximum(sigma, 1e-12), fitted, d)
    coef = pinv @ work
    return np.asarray(coef[1:].T)


def _ema_last(z: np.ndarray, alpha: float) -> np.ndarray:
    """EMA at the last column of ``z`` (N, m), seeded with the first column."""
    out = z[:, 0].copy()
    for j in range(1, z.shape[1]):
        out = alpha * z[:, j] + (1 - alpha) * out
    return out


def trend_fit(x: np.ndarray, z: np.ndarray, step_f_min: float) -> dict[str, np.ndarray]:
    """Line (or line + best step) through block medians ``z`` (N, m) at times ``x`` (m,) with
    ``x = 0`` meaning now. Returns slope, se, level (at x = 0), r2 and step (bool) per series."""
    n, m = z.shape
    xm = x - x.mean()
    sxx = float((xm * xm).sum())
    slope = z @ xm / sxx
    level = z.mean(axis=1) - slope * x.mean()
    resid = z - level[:, None] - slope[:, None] * x[None, :]
    sse1 = (resid * resid).sum(axis=1)
    se = np.sqrt(sse1 / max(m - 2, 1) / sxx)
    sst = ((z - z.mean(axis=1, keepdims=True)) ** 2).sum(axis=1)
    step = np.zeros(n, dtype=bool)
    seg = 2
    ks = np.arange(seg, m - seg + 1)
    if ks.size and m > 3:
        designs = np.stack([np.stack([np.ones(m), x, (np.arange(m) >= k).astype(float)], axis=1)
                            for k in ks])  # (K, m, 3)
        pinvs = np.linalg.pinv(designs)  # (K, 3, m)
        inv_diag = np.linalg.inv(np.einsum("kmp,kmq->kpq", designs, designs))[:, 1, 1]  # (K,)
        coefs = np.einsum("kpm,nm->nkp", pinvs, z)
        fitted = np.einsum("nkp,kmp->nkm", coefs, designs)
        sse2 = ((z[:, None, :] - fitted) ** 2).sum(axis=2)  # (N, K)
        best = sse2.argmin(axis=1)
        rows = np.arange(n)
        sse_b = sse2[rows, best]
        f_stat = (sse1 - sse_b) / np.maximum(sse_b / (m - 3), 1e-300)
        step = f_stat >= step_f_min
        cb = coefs[rows, best]
        slope = np.where(step, cb[:, 1], slope)
        level = np.where(step, cb[:, 0] + cb[:, 2], level)
        se = np.where(step, np.sqrt(sse_b / (m - 3) * inv_diag[best]), se)
        sse1 = np.where(step, sse_b, sse1)
    r2 = np.where(sst > 0, 1.0 - sse1 / np.where(sst > 0, sst, 1.0), 0.0)
    return {"slope": slope, "se": se, "level": level, "r2": r2, "step": step}


def _median_first_exceedance(level: np.ndarray, slope: np.ndarray, season: np.ndarray,
                             h: np.ndarray, threshold: np.ndarray, sigma: np.ndarray,
                             samples_per_step: float) -> np.ndarray:
    """Median time of the first sample at or over ``threshold`` when samples are
    ``level + slope*h + season`` plus gaussian noise ``sigma``: the first ``h`` where the
    cumulative hazard ``sum(-samples_per_step * log(1 - p))`` reaches ``ln 2``, ``p`` being each
    sample's chance to be over. ``inf`` when that does not happen on the grid ``h``."""
    mean = level[:, None] + slope[:, None] * h[None, :] + season  # (N, H)
    z = (mean - threshold[:, None]) / np.maximum(sigma, 1e-9)[:, None]
    hazard = -samples_per_step * log_ndtr(-z)  # -log(1 - p), p = ndtr(z)
    cum = np.cumsum(hazard, axis=1)
    over = cum >= math.log(2.0)
    return np.where(over.any(axis=1), h[over.argmax(axis=1)], np.inf)


def evaluate_blocks(x: np.ndarray, zb: np.ndarray, current: np.ndarray, coef: np.ndarray,
                    threshold: np.ndarray, now: float, spec: SeasonalTrendSpec,
                    sigma: np.ndarray, sample_s: float) -> dict[str, np.ndarray]:
    """Rules 3-6 for ``N`` series: block times ``x`` (m,, relative to now), deseasonalised block
    medians ``zb`` (N, m), raw ``current`` (N,), profile ``coef`` (N, 2K), sample noise ``sigma``
    (N,) and sampling interval ``sample_s``. ``ok`` marks a forecast."""
    fit = trend_fit(x, zb, spec.step_f_min)
    slope, se = fit["slope"], fit["se"]
    tstat = np.where(se > 0, slope / np.where(se > 0, se, 1.0), np.where(slope > 0, np.inf, 0.0))
    half = zb.shape[1] // 2
    ema_start = zb[:, :half].mean(axis=1)
    ema = _ema_last(zb, spec.ema_alpha)
    step = spec.block_s / 4
    h = np.arange(step, 2 * spec.horizon_s + step / 2, step)
    per = step / sample_s
    ok = (slope > 0) & (tstat >= spec.t_min) & (ema > ema_start) & (current < threshold)
    eta, low, high = (np.full(ok.shape, np.inf) for _ in range(3))
    rows = np.flatnonzero(ok)  # the projection only for the series still in the running
    if rows.size:
        season = coef[rows] @ _basis(now + h, spec.period_s, spec.harmonics).T  # (n, H)
        args = (season, h, threshold[rows], sigma[rows], per)
        level, band = fit["level"][rows], 1.96 * se[rows]
        eta[rows] = _median_first_exceedance(level, slope[rows], *args)
        low[rows] = _median_first_exceedance(level, slope[rows] + band, *args)
        high[rows] = _median_first_exceedance(level, slope[rows] - band, *args)
    ok &= eta <= spec.horizon_s
    season_now = coef @ _basis(np.array([now]), spec.period_s, spec.harmonics)[0]
    return {"ok": ok, "eta": eta, "eta_low": np.minimum(low, eta), "eta_high": np.maximum(high, eta),
            "slope": slope, "level": fit["level"], "season_now": season_now, "r2": fit["r2"],
            "tstat": tstat, "ema": ema, "ema_start": ema_start}


def _evaluate_one(t: np.ndarray, v: np.ndarray, threshold: float, now: float,
                  spec: SeasonalTrendSpec) -> Forecast | None:
    """Rules 1-6 for one series at ``now`` (``t``, ``v`` finite, sorted)."""
    seen = t <= now
    t, v = t[seen], v[seen]
    if t.size == 0 or now - float(t[0]) < spec.min_history_s:
        return None
    b = math.floor(now / spec.refit_s) * spec.refit_s
    hist = (t >= b - spec.history_s) & (t < b)
    if int(hist.sum()) < 4 * (2 + 2 * spec.harmonics):
        return None
    coef = fit_profile(t[hist], v[hist], spec.period_s, spec.harmonics)
    m = max(1, int(round(spec.window_s / spec.block_s)))
    win = t > now - m * spec.block_s
    tw, vw = t[win], v[win]
    zw = vw - (coef @ _basis(tw, spec.period_s, spec.harmonics).T)[0]
    block = np.minimum(((now - tw) // spec.block_s).astype(int), m - 1)
    xs, zs, dev, last = [], [], [], None
    for j in range(m - 1, -1, -1):
        sel = block == j
        if sel.any():
            xs.append(float((tw[sel] - now).mean()))
            zs.append(float(np.median(zw[sel])))
            dev.append(np.abs(zw[sel] - zs[-1]))
            if j == 0:
                last = float(np.median(vw[sel]))
    if last is None or len(xs) < max(4, (m + 1) // 2):
        return None
    sigma = 1.4826 * float(np.median(np.concatenate(dev)))
    sample_s = float(np.median(np.diff(tw))) if tw.size > 1 else spec.block_s
    res = evaluate_blocks(np.array(xs), np.array([zs]), np.array([last]), coef,
                          np.array([float(threshold)]), now, spec, np.array([sigma]), sample_s)
    if not bool(res["ok"][0]):
        return None
    eta = float(res["eta"][0])
    return Forecast(
        slope_per_s=float(res["slope"][0]),
        intercept=float(res["level"][0] + res["season_now"][0]),
        r2=float(res["r2"][0]),
        ema=float(res["ema"][0]),
        ema_start=float(res["ema_start"][0]),
        zscore=float(res["tstat"][0]),
        current=last,
        threshold=float(threshold),
        breach_at=now + eta,
        eta_s=eta,
        eta_low_s=float(res["eta_low"][0]),
        eta_high_s=float(res["eta_high"][0]),
        points=int(tw.size),
    )


def predict_breach_seasonal(ts: Any, values: Any, threshold: float, *, now: float,
                            spec: SeasonalTrendSpec | None = None) -> Forecast | None:
    """When will ``values`` reach ``threshold``, given a daily profile? None unless all the
    rules of the module docstring hold (including ``confirm`` consecutive evaluations).
    ``zscore`` in the result is the slope's t statistic; ``intercept`` the projection at now."""
    spec = spec or SeasonalTrendSpec(metric="value")
    t = np.asarray(ts, dtype=np.float64)
    v = np.asarray(values, dtype=np.float64)
    keep = np.isfinite(t) & np.isfinite(v)
    t, v = t[keep], v[keep]
    order = np.argsort(t, kind="stable")
    t, v = t[order], v[order]
    result = _evaluate_one(t, v, threshold, now, spec)
    if result is None:
        return None
    for i in range(1, spec.confirm):
        if _evaluate_one(t, v, threshold, now - i * spec.eval_s, spec) is None:
            return None
    return result


def stream_forecasts(ts: np.ndarray, values: np.ndarray, thresholds: np.ndarray,
                     spec: SeasonalTrendSpec) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Run the rules streaming over aligned, regular, gap-free series ``values`` (N, T) at
    times ``ts`` (T,), every ``spec.eval_s``. Returns evaluation times (E,), confirmed findings
    (N, E) and predicted breach times (N, E, NaN where no finding). ``block_s``, ``eval_s`` and
    ``refit_s`` must be multiples of the sampling interval."""
    dt = float(ts[1] - ts[0])
    per_block = int(round(spec.block_s / dt))
    m = max(1, int(round(spec.window_s / spec.block_s)))
    wlen = m * per_block
    hist_len = int(round(spec.history_s / dt))
    n = values.shape[0]
    first = int(math.ceil((ts[0] + spec.min_history_s - ts[0]) / dt))
    stride = int(round(spec.eval_s / dt))
    idx = np.arange(max(first, wlen - 1), ts.size, stride)
    eval_ts = ts[idx]
    raw = np.zeros((n, idx.size), dtype=bool)
    at = np.full((n, idx.size), np.nan)
    coef: np.ndarray | None = None
    boundary = None
    x = ts[idx[0] - wlen + 1: idx[0] + 1].reshape(m, per_block).mean(axis=1) - ts[idx[0]] if idx.size else None
    for j, i in enumerate(idx):
        now = float(ts[i])
        b = math.floor(now / spec.refit_s) * spec.refit_s
        if b != boundary:
            boundary = b
            sel = np.flatnonzero((ts >= b - spec.history_s) & (ts < b))[-hist_len:]
            coef = fit_profile(ts[sel], values[:, sel], spec.period_s, spec.harmonics)
        assert coef is not None and x is not None
        tw = ts[i - wlen + 1: i + 1]
        vw = values[:, i - wlen + 1: i + 1]
        zw = vw - coef @ _basis(tw, spec.period_s, spec.harmonics).T
        zr = zw.reshape(n, m, per_block)
        zb = np.median(zr, axis=2)
        sigma = 1.4826 * np.median(np.abs(zr - zb[:, :, None]).reshape(n, -1), axis=1)
        current = np.median(vw[:, -per_block:], axis=1)
        res = evaluate_blocks(x, zb, current, coef, thresholds, now, spec, sigma, dt)
        raw[:, j] = res["ok"]
        at[:, j] = now + res["eta"]
    found = raw.copy()
    for k in range(1, spec.confirm):
        found[:, k:] &= raw[:, :-k]
        found[:, :k] = False
    return eval_ts, found, np.where(found, at, np.nan)


MIN_LIVE_SAMPLES = 3  # as many as verification needs to draw a preventive fix's course


class SeasonalTrendDetector:
    """Detector ``seasonal_trend``: FORECAST findings from :func:`predict_breach_seasonal` for
    the ``services[].seasonal_trends`` specs.

    The series store's ring holds hours; a daily profile needs days. So, for each configured
    (service, metric) only, the detector keeps its own history: one sample per ``sample_s``
    (the latest value when that long has passed), ``history_s + window_s`` deep (two and a
    quarter days at one a minute: about 50 KB per series), and evaluates every ``eval_s``.
    The engine checkpoints that history to its state folder (:meth:`checkpoint`), so a restart
    keeps the days already seen; the gap while it was down is just missing samples. A spec
    without a threshold takes the service's maximum.

    A forecast holds until the next evaluation says otherwise: between evaluations each
    ``detect`` gives it again, its times counted from ``now`` (``eta_s`` the time left to the
    same ``breach_at``, at least 0). An incident is kept open by findings coming: one every
    ``eval_s`` (5 min) would let it go quiet and close in between, and the next evaluation
    open another, asking a person to approve the same fix anew every five minutes.

    A series that just fell is not forecast: when the latest sample is below the projection at
    now (``intercept``, the daily profile included) by more than 4 noise sigmas (robust, from
    the kept samples' differences) or a tenth of the way from it to the line, whichever is
    more. A fix or a restart took it back, while the blocks (medians, and a step needs two of
    them on each side) hold the level before the fall for up to 20 minutes; forecast on, from
    a level the series has left, the breach a verified fix answered would open a new incident
    and the fix be made again. Between evaluations a sample that far below the held forecast's
    path (its ``intercept`` plus the slope since) brings the next evaluation forward.

    A forecast needs :data:`MIN_LIVE_SAMPLES` samples of the series store's own (live) samples
    besides the kept history: after a restart the history alone forecasts at once, and the
    fix's verification, which draws the course the metric was on from the live samples before
    the action, could not judge it (a person paged for a fix that may well have worked).
    """

    name = "seasonal_trend"

    def __init__(self, specs: Mapping[str, Sequence[SeasonalTrendSpec]],
                 thresholds: Mapping[str, Thresholds]) -> None:
        self._plan: list[tuple[str, SeasonalTrendSpec, float]] = [
            (service, spec, spec_line("seasonal trend", service, spec.metric, spec.threshold, thresholds,
                                      falling=spec.direction == "falling"))
            for service, service_specs in specs.items() for spec in service_specs
        ]
        self._ts: dict[tuple[str, str], list[float]] = {}
        self._values: dict[tuple[str, str], list[float]] = {}
        self._next_eval: dict[tuple[str, str], float] = {}
        # the last forecast, when it was made, and how far below its path a sample may fall
        self._held: dict[tuple[str, str], tuple[Forecast, float, float]] = {}

    def _keep(self, key: tuple[str, str], spec: SeasonalTrendSpec, series: SeriesReader, now: float) -> None:
        latest = series.latest(*key)
        ts, values = self._ts.setdefault(key, []), self._values.setdefault(key, [])
        if latest is None or (ts and latest[0] - ts[-1] < spec.sample_s) or not math.isfinite(latest[1]):
            return
        ts.append(float(latest[0]))
        values.append(float(latest[1]))
        horizon = spec.history_s + spec.window_s + spec.confirm * spec.eval_s
        drop = 0
        while drop < len(ts) and ts[drop] < now - horizon:
            drop += 1
        if drop:
            del ts[:drop], values[:drop]

    def checkpoint(self) -> dict[str, Any]:
        """The kept history of every configured series (JSON-ready)."""
        return {"series": [{"service": k[0], "metric": k[1], "ts": self._ts[k], "values": self._values[k]}
                           for k in self._ts if self._ts[k]]}

    def restore(self, state: dict[str, Any]) -> list[str]:
        """Take back the history of the series still configured."""
        if not isinstance(state, dict) or not isinstance(state.get("series"), list):
            raise ValueError("seasonal_trend state: 'series' must be a list")
        wanted = {(service, spec.metric) for service, spec, _ in self._plan}
        notes = []
        for saved in state["series"]:
            try:
                key = (str(saved["service"]), str(saved["metric"]))
                ts = [float(t) for t in saved["ts"]]
                values = [float(v) for v in saved["values"]]
            except (KeyError, TypeError, ValueError) as exc:
                raise ValueError(f"seasonal_trend state: a series is malformed: {exc}") from exc
            if len(ts) != len(values) or any(b < a for a, b in zip(ts, ts[1:], strict=False)):
                raise ValueError(f"seasonal_trend state of {key[0]}/{key[1]}: ts and values must be "
                                 "equally long, ts in time order")
            if key not in wanted:
                notes.append(f"seasonal history of {key[0]}/{key[1]} is no longer configured")
                continue
            self._ts[key], self._values[key] = ts, values
        return notes

    def detect(self, series: SeriesReader, now: float) -> Sequence[Finding]:
        """A falling spec is forecast as the negated series' rise to the negated floor (the
        rules, the held forecast and "just fell" below are all of that rise, "fell" meaning
        "rose back" in the metric's own terms); its findings are in the metric's own terms."""
        findings: list[Finding] = []
        for service, spec, line in self._plan:
            key = (service, spec.metric)
            self._keep(key, spec, series, now)
            sign = -1.0 if spec.direction == "falling" else 1.0
            latest = series.latest(*key)
            if latest is not None:
                latest = (latest[0], sign * latest[1])
            if now < self._next_eval.get(key, -math.inf):
                held = self._held.get(key)
                if held is None:
                    continue
                last, made, slack = held
                if not _below(latest, last.intercept + last.slope_per_s * (now - made), slack):
                    findings.append(_finding(service, spec, line, _aged(last, now - made), now))
                    continue
                # well below the held forecast's path: the next evaluation comes now
            if series.window(*key, -math.inf)[0].size < MIN_LIVE_SAMPLES:
                continue  # the kept history alone (after a restart): evaluated at the next tick
            self._next_eval[key] = now + spec.eval_s
            values = np.asarray(self._values[key], dtype=np.float64) * sign
            forecast = predict_breach_seasonal(self._ts[key], values, sign * line, now=now, spec=spec)
            recent = values[-60:]
            noise = 1.4826 * float(np.median(np.abs(np.diff(recent)))) / math.sqrt(2.0) if recent.size > 2 else 0.0
            slack = 0.0 if forecast is None else max(4.0 * noise, (sign * line - forecast.intercept) / 10)
            if forecast is None or _below(latest, forecast.intercept, slack):
                self._held.pop(key, None)
                continue
            self._held[key] = (forecast, now, slack)
            findings.append(_finding(service, spec, line, forecast, now))
        return findings


def _below(latest: tuple[float, float] | None, level: float, slack: float) -> bool:
    """Whether the latest sample is more than ``slack`` below ``level``."""
    return latest is not None and latest[1] < level - slack


def _finding(service: str, spec: SeasonalTrendSpec, line: float, forecast: Forecast, now: float) -> Finding:
    """The FORECAST finding of ``forecast`` (of the negated series for a falling spec: told in
    the metric's own terms): critical when due within a quarter of the horizon."""
    falling = spec.direction == "falling"
    if falling:
        forecast = forecast.mirrored()
    critical = forecast.eta_s < spec.horizon_s / 4
    return Finding(
        service=service, metric=spec.metric, kind=FindingKind.FORECAST, cause=cause_of(spec.metric),
        severity=Severity.CRITICAL if critical else Severity.WARNING,
        confidence=forecast_confidence(forecast, spec.t_min), ts=now, value=forecast.current,
        threshold=line,
        summary=f"{spec.metric} will {'fall to' if falling else 'reach'} {line:g} in {duration(forecast.eta_s)} "
                f"beyond its daily cycle "
                f"(trend {forecast.slope_per_s * 3600:.3g}/h, t {forecast.zscore:.1f})",
        evidence={**forecast.evidence(), "seasonal": True},
    )


def _aged(forecast: Forecast, elapsed: float) -> Forecast:
    """``forecast`` as seen ``elapsed`` seconds after it was made: the same ``breach_at``, the
    times to it (and to its interval's ends) that much shorter, never below 0."""
    return dataclasses.replace(forecast, eta_s=max(0.0, forecast.eta_s - elapsed),
                               eta_low_s=max(0.0, forecast.eta_low_s - elapsed),
                               eta_high_s=max(0.0, forecast.eta_high_s - elapsed))
