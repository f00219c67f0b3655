"""Seasonal baseline: an EWMA profile per phase of a known period."""

from __future__ import annotations

import numpy as np

from autonomic.analyze.detectors.base import StreamingDetector, kernel, ratio, z_level, z_to_score, zeros


@kernel
def _seasonal_step(x: np.ndarray, ok: np.ndarray, mean: np.ndarray, dev: np.ndarray, seen: np.ndarray,
                   period: int, alpha: float, warmup: int, protect: bool, zlevel: float,
                   protect_factor: float, raw: np.ndarray, warm: np.ndarray) -> None:
    for i in range(x.shape[0]):
        m = mean[i]
        dv = dev[i]
        s = seen[i]
        r = x[i] - m
        z = ratio(r, 1.25 * dv, m)
        ready = s >= warmup
        live = ok[i] and ready
        warm[i] = live
        raw[i] = z if live else 0.0
        if not ok[i]:
            continue
        if s < period:  # first cycle: take the sample as the profile
            mean[i] = m + r
            dev[i] = 0.0
        else:
            a = alpha
            if protect and ready and z >= zlevel:
                a = alpha * protect_factor
            mean[i] = m + a * r
            dev[i] = dv + a * (abs(r) - dv)
        seen[i] = s + 1


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
        self.mean = zeros((self.period, n))
        self.dev = zeros((self.period, n))
        self.seen = zeros(n, np.int64)  # samples seen (all phases)

    def _step(self, x: np.ndarray, ok: np.ndarray) -> np.ndarray:
        p = self.steps % self.period
        _seasonal_step(x, ok, self.mean[p], self.dev[p], self.seen, int(self.period), float(self.alpha),
                       int(self.warmup_cycles * self.period), bool(self.protect), z_level(self.protect_level),
                       float(self.protect_factor), self.last_raw, self.last_warm)
        return z_to_score(self.last_raw) if self.scores_wanted else self.last_raw
