"""Seasonal baseline: an EWMA profile per phase of a known period."""

from __future__ import annotations

import numpy as np

from autonomic.analyze.detectors.base import StreamingDetector, safe_ratio


class SeasonalBaseline(StreamingDetector):
    """Per series and phase (``step % period``; the step counts ``update`` calls, so the phase
    keeps time through missing samples) an EW mean and EW mean absolute deviation (rate
    ``alpha``). ``z = |x - mean[phase]| / (1.25 * dev[phase])``, scored as ``P(|Z| < z)``.

    A phase scores 0 until it has seen ``warmup_cycles`` samples. ``protect``: samples scoring
    at or above ``protect_level`` update the profile at ``alpha * protect_factor``.
    State is ``16 * period + 8`` bytes per series.
    """

    name = "seasonal"
    _arrays = ("mean", "dev", "seen")

    def __init__(self, *, period: int = 24, alpha: float = 0.2, warmup_cycles: int = 2,
                 protect: bool = True, protect_level: float = 0.99, protect_factor: float = 0.1) -> None:
        super().__init__()
        if period < 2:
            raise ValueError(f"period must be >= 2 steps, got {period}")
        self._set_params(period=period, alpha=alpha, warmup_cycles=warmup_cycles, protect=protect,
                         protect_level=protect_level, protect_factor=protect_factor)
        self.period, self.alpha, self.warmup_cycles = period, alpha, warmup_cycles
        self.protect, self.protect_level, self.protect_factor = protect, protect_level, protect_factor

    def _allocate(self, n: int) -> None:
        # (period, n): each phase's profile of every series is one contiguous row
        self.mean = np.zeros((self.period, n))
        self.dev = np.zeros((self.period, n))
        self.seen = np.zeros(n, dtype=np.int64)  # samples seen (all phases)

    def _step(self, x: np.ndarray, ok: np.ndarray) -> np.ndarray:
        p = self.steps % self.period
        m = self.mean[p]
        dv = self.dev[p]
        r = x - m
        z = safe_ratio(r, 1.25 * dv, m)
        self.last_warm = ok & (self.seen >= self.warmup_cycles * self.period)
        self.last_raw = np.where(self.last_warm, z, 0.0)
        score = self._score(z, self.seen >= self.warmup_cycles * self.period, self.protect_level)
        a = np.full(x.shape, self.alpha)
        if self.protect:
            a = np.where(score >= self.protect_level, self.alpha * self.protect_factor, a)
        first = self.seen < self.period  # first cycle: take the sample as the profile
        a = np.where(ok, np.where(first, 1.0, a), 0.0)
        self.mean[p] = m + a * r
        self.dev[p] = np.where(first & ok, 0.0, dv + a * (np.abs(r) - dv))
        self.seen = self.seen + ok
        return score
