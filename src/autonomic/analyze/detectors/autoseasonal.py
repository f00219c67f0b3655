"""Seasonal EWMA whose period is inferred from the data (autocorrelation on a warm-up window)."""

from __future__ import annotations

import numpy as np

from autonomic.analyze.detectors.base import StreamingDetector, safe_ratio


def infer_periods(buf: np.ndarray, min_period: int, max_period: int, min_acf: float) -> np.ndarray:
    """Per row of ``buf`` (samples in time order, NaN = missing) the lag in
    ``[min_period, max_period]`` with the highest autocorrelation after the autocorrelation first
    drops to <= 0, if that peak is at least ``min_acf``; else 1 (no season)."""
    n, length = buf.shape
    x = buf - np.nanmean(np.where(np.isfinite(buf), buf, np.nan), axis=1, keepdims=True) if length else buf
    x = np.nan_to_num(x)
    spec = np.fft.rfft(x, 2 * length, axis=1)
    acov = np.fft.irfft(spec * np.conj(spec), 2 * length, axis=1)[:, : max_period + 1]
    with np.errstate(all="ignore"):
        acf = np.nan_to_num(acov / acov[:, :1])
    lags = np.arange(acf.shape[1])
    crossed = np.maximum.accumulate(acf <= 0.0, axis=1)  # lags at or after the first non-positive acf
    cand = np.where(crossed & (lags >= min_period), acf, -np.inf)
    best = cand.argmax(axis=1)
    peak = cand[np.arange(n), best]
    return np.where(peak >= min_acf, best, 1).astype(np.int64)


class AutoSeasonal(StreamingDetector):
    """EWMA z-score against a per-phase profile, with the period found from the data.

    For the first ``learn`` steps the baseline is one EW level (rate ``alpha``), exactly as
    :class:`~autonomic.analyze.detectors.ewma.EWMAZScore`, while the samples are kept. At step
    ``learn`` each series gets its period: the autocorrelation peak in ``[min_period,
    max_period]`` (after the autocorrelation first reaches 0), if it is at least ``min_acf``;
    otherwise it stays non-seasonal. A seasonal series then predicts ``profile[step % period]``
    (each phase starts as the mean of its warm-up samples and moves at ``season_alpha``), and
    ``z = |x - prediction| / std`` with the EW std (rate ``alpha``) of the residuals: one noise
    level per series, not per phase, so a few samples per phase do not make noisy z-scores.

    Scored as ``P(|Z| < z)``; 0 for the first ``warmup`` samples. ``protect``: samples scoring at or
    above ``protect_level`` move the baseline at ``protect_factor`` times the rate. The period is
    kept in the state, so a restored detector continues exactly. ``last_reset`` marks the series
    that became seasonal this step (their raw statistic changes meaning from then on);
    ``last_resid`` is the last step's signed residual ``x - prediction``.
    """

    name = "autoseasonal"
    _arrays = ("count", "ref", "buf", "period", "prof", "var")
    # the warm-up samples are dropped, and the profile widened to the longest period, at step `learn`
    _free_dims = frozenset({("buf", 1), ("prof", 1)})

    def __init__(self, *, alpha: float = 0.01, season_alpha: float = 0.1, learn: int = 600,
                 min_period: int = 4, max_period: int = 300, min_acf: float = 0.5, warmup: int = 20,
                 protect: bool = True, protect_level: float = 0.99, protect_factor: float = 0.1) -> None:
        super().__init__()
        if not 0 < alpha <= 1 or not 0 < season_alpha <= 1:
            raise ValueError(f"alpha and season_alpha must be in (0, 1], got {alpha}, {season_alpha}")
        if not 2 <= min_period <= max_period < learn:
            raise ValueError(f"need 2 <= min_period <= max_period < learn, got {min_period}, {max_period}, {learn}")
        self._set_params(alpha=alpha, season_alpha=season_alpha, learn=learn, min_period=min_period,
                         max_period=max_period, min_acf=min_acf, warmup=warmup, protect=protect,
                         protect_level=protect_level, protect_factor=protect_factor)
        self.alpha, self.season_alpha, self.learn = alpha, season_alpha, learn
        self.min_period, self.max_period, self.min_acf = min_period, max_period, min_acf
        self.warmup, self.protect = warmup, protect
        self.protect_level, self.protect_factor = protect_level, protect_factor

    def _allocate(self, n: int) -> None:
        self.count = np.zeros(n, dtype=np.int64)
        self.ref = np.zeros(n)  # the first sample: the warm-up samples are kept relative to it
        self.buf = np.full((n, self.learn), np.nan, dtype=np.float32)  # warm-up samples - ref, by step
        self.period = np.ones(n, dtype=np.int64)  # 1 = no season (one level)
        self.prof = np.zeros((n, 1))  # the level; widened to the longest period found at step `learn`
        self.var = np.zeros(n)

    def _choose_periods(self) -> None:
        self.period = infer_periods(self.buf.astype(np.float64), self.min_period, self.max_period, self.min_acf)
        longest = int(self.period.max(initial=1))
        self.prof = np.hstack([self.prof, np.zeros((self.prof.shape[0], longest - 1))])
        steps = np.arange(self.learn)
        for p in np.unique(self.period[self.period > 1]):  # one vectorised pass per distinct period
            rows = np.flatnonzero(self.period == p)
            b = self.buf[rows].astype(np.float64) + self.ref[rows, None]
            phase = steps % p
            onehot = phase[None, :] == np.arange(p)[:, None]  # (p, learn)
            seen = np.isfinite(b)
            sums = np.where(seen, b, 0.0) @ onehot.T
            cnt = seen.astype(np.float64) @ onehot.T
            level = self.prof[rows, 0]
            prof = np.where(cnt > 0, sums / np.maximum(cnt, 1.0), level[:, None])
            resid = b - prof[:, phase]
            with np.errstate(all="ignore"):
                var = np.nan_to_num(np.nanmean(np.where(seen, resid * resid, np.nan), axis=1))
            self.prof[rows, :p] = prof
            self.var[rows] = var

    def _step(self, x: np.ndarray, ok: np.ndarray) -> np.ndarray:
        rows = np.arange(x.shape[0])
        phase = np.where(self.period > 1, self.steps % self.period, 0)
        m = self.prof[rows, phase]
        d = x - m
        self.last_resid = np.where(ok, d, 0.0)  # signed residual, not state (an ensemble's spatial rule reads it)
        z = safe_ratio(d, np.sqrt(self.var), m)
        self.last_warm = ok & (self.count >= self.warmup)
        self.last_raw = np.where(self.last_warm, z, 0.0)
        score = self._score(z, self.count >= self.warmup, self.protect_level)
        a = np.full(x.shape, self.alpha)
        if self.protect:
            a = np.where(score >= self.protect_level, self.alpha * self.protect_factor, a)
        a = np.where(self.count == 0, 1.0, a)
        a = np.where(ok, a, 0.0)
        ap = np.where(self.period > 1, a * (self.season_alpha / self.alpha), a)
        ap = np.where(self.count == 0, 1.0, np.minimum(ap, 1.0))
        self.prof[rows, phase] = m + np.where(ok, ap, 0.0) * d
        self.var = (1.0 - a) * (self.var + a * d * d)
        self.count = self.count + ok
        self.last_reset = np.zeros(x.shape, dtype=bool)
        if self.steps < self.learn:
            self.ref = np.where(ok & (self.count == 1), x, self.ref)  # count was 0 before this sample
            dev = np.clip(x - self.ref, -1e38, 1e38)  # within float32
            self.buf[:, self.steps] = np.where(ok, dev, np.nan)
            if self.steps == self.learn - 1:
                self._choose_periods()
                self.buf = np.zeros((x.shape[0], 0), dtype=np.float32)  # not needed any more
                self.last_reset = self.period > 1
        return score
