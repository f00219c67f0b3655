"""EWMA z-score: how many exponentially weighted standard deviations a sample is from the
exponentially weighted mean."""

from __future__ import annotations

import math

import numpy as np

from autonomic.analyze.detectors.base import StreamingDetector, kernel, ratio, z_level, z_to_score, zeros


@kernel
def _ewma_step(x: np.ndarray, ok: np.ndarray, count: np.ndarray, mean: np.ndarray, var: np.ndarray,
               alpha: float, warmup: int, protect: bool, zlevel: float, protect_factor: float,
               raw: np.ndarray, warm: np.ndarray) -> None:
    for i in range(x.shape[0]):
        m = mean[i]
        c = count[i]
        d = x[i] - m
        z = ratio(d, math.sqrt(var[i]), m)
        ready = c >= warmup
        live = ok[i] and ready
        warm[i] = live
        raw[i] = z if live else 0.0
        if not ok[i]:
            continue
        a = alpha
        if protect and ready and z >= zlevel:
            a = alpha * protect_factor
        if c == 0:
            a = 1.0
        mean[i] = m + a * d
        var[i] = (1.0 - a) * (var[i] + a * d * d)
        count[i] = c + 1


class EWMAZScore(StreamingDetector):
    """Score ``P(|Z| < z)`` with ``z = |x - mean| / std`` (EW mean and variance, rate ``alpha``).

    The first ``warmup`` samples of a series score 0. With ``protect``, a sample whose score is
    at or above ``protect_level`` moves the baseline at ``alpha * protect_factor`` only.
    """

    name = "ewma"
    _arrays = ("count", "mean", "var")

    def __init__(self, *, alpha: float = 0.05, warmup: int = 20, protect: bool = True,
                 protect_level: float = 0.99, protect_factor: float = 0.1) -> None:
        super().__init__()
        if not 0 < alpha <= 1:
            raise ValueError(f"alpha must be in (0, 1], got {alpha}")
        self._set_params(alpha=alpha, warmup=warmup, protect=protect, protect_level=protect_level,
                         protect_factor=protect_factor)
        self.alpha, self.warmup, self.protect = alpha, warmup, protect
        self.protect_level, self.protect_factor = protect_level, protect_factor

    def _allocate(self, n: int) -> None:
        self.count = zeros(n, np.int64)
        self.mean = zeros(n)
        self.var = zeros(n)

    def _step(self, x: np.ndarray, ok: np.ndarray) -> np.ndarray:
        _ewma_step(x, ok, self.count, self.mean, self.var, float(self.alpha), int(self.warmup),
                   bool(self.protect), z_level(self.protect_level), float(self.protect_factor),
                   self.last_raw, self.last_warm)
        return z_to_score(self.last_raw) if self.scores_wanted else self.last_raw
