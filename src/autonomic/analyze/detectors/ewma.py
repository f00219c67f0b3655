"""EWMA z-score: how many exponentially weighted standard deviations a sample is from the
exponentially weighted mean."""

from __future__ import annotations

import numpy as np

from autonomic.analyze.detectors.base import StreamingDetector, safe_ratio


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
        self.count = np.zeros(n, dtype=np.int64)
        self.mean = np.zeros(n)
        self.var = np.zeros(n)

    def raw(self, x: np.ndarray, ok: np.ndarray) -> np.ndarray:
        """The z-statistic of ``x`` against the current baseline (before updating)."""
        return safe_ratio(x - self.mean, np.sqrt(self.var), self.mean)

    def _step(self, x: np.ndarray, ok: np.ndarray) -> np.ndarray:
        z = self.raw(x, ok)
        self.last_warm = ok & (self.count >= self.warmup)
        self.last_raw = np.where(self.last_warm, z, 0.0)
        score = self._score(z, self.count >= self.warmup, self.protect_level)
        self.learn(x, ok, score)
        return score

    def learn(self, x: np.ndarray, ok: np.ndarray, score: np.ndarray) -> None:
        """Move the baseline towards ``x`` (slowly where protected, not at all where missing)."""
        a = np.full(x.shape, self.alpha)
        if self.protect:
            a = np.where(score >= self.protect_level, self.alpha * self.protect_factor, a)
        a = np.where(self.count == 0, 1.0, a)
        a = np.where(ok, a, 0.0)
        d = x - self.mean
        self.mean = self.mean + a * d
        self.var = (1.0 - a) * (self.var + a * d * d)
        self.count = self.count + ok
