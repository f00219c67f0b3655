"""Context novelty: how rarely this quantised value has followed the previous one."""

from __future__ import annotations

import numpy as np

from autonomic.analyze.detectors.base import StreamingDetector


class ContextNovelty(StreamingDetector):
    """A first-order Markov model of the quantised series, counted per series.

    Each value falls in one of ``bins`` equal bins of the range seen so far (running minimum and
    maximum; a value outside it counts in the nearest bin). Per series a table counts how often
    each bin followed each previous bin (``order=1``; ``order=0`` counts bins alone). The raw
    statistic is the surprise of the new bin after the previous one, ``log((max + prior) /
    (count + prior))`` with ``count`` its count and ``max`` the count of the most common
    successor (``count = 0`` for a value outside the range: never seen): 0 for the usual next
    value (so a constant series scores 0), and large for a step the series has never made before,
    whether its value is new or only its order (a flat stretch where the cycle peaks, a jump back
    and forth inside the usual range).
    Scored as ``1 - exp(-surprise)``; 0 for the first ``warmup`` samples.

    ``protect``: a sample scoring at or above ``protect_level`` is counted with weight
    ``protect_factor`` only, so a lasting anomaly stays novel for longer.
    State is ``4 * bins ** (order + 1) + 28`` bytes per series.
    """

    name = "novelty"
    _arrays = ("count", "low", "high", "prev", "table")

    def __init__(self, *, bins: int = 8, order: int = 1, prior: float = 0.5, warmup: int = 50,
                 protect: bool = True, protect_level: float = 0.9, protect_factor: float = 0.1) -> None:
        super().__init__()
        if bins < 2 or order not in (0, 1) or prior <= 0:
            raise ValueError(f"need bins >= 2, order 0 or 1 and prior > 0, got {bins}, {order}, {prior}")
        self._set_params(bins=bins, order=order, prior=prior, warmup=warmup, protect=protect,
                         protect_level=protect_level, protect_factor=protect_factor)
        self.bins, self.order, self.prior, self.warmup = bins, order, prior, warmup
        self.protect, self.protect_level, self.protect_factor = protect, protect_level, protect_factor

    def _allocate(self, n: int) -> None:
        self.count = np.zeros(n, dtype=np.int64)
        self.low = np.full(n, np.nan)  # the range seen so far
        self.high = np.full(n, np.nan)
        self.prev = np.zeros(n, dtype=np.int32)  # the previous bin (order 1)
        self.table = np.zeros((n, self.bins if self.order else 1, self.bins), dtype=np.float32)

    def _step(self, x: np.ndarray, ok: np.ndarray) -> np.ndarray:
        span = self.high - self.low
        inside = np.floor((x - self.low) / np.where(span > 0, span, np.inf) * self.bins)
        b = np.clip(np.nan_to_num(inside, nan=0.0), 0, self.bins - 1).astype(np.int32)
        rows = np.arange(x.shape[0])
        ctx = self.prev if self.order else np.zeros_like(self.prev)
        seen = self.table[rows, ctx].astype(np.float64)  # (n, bins): counts of each successor
        top = seen.max(axis=1) + self.prior
        outside = (x < self.low) | (x > self.high)  # never seen: as novel as a step can be
        surprise = np.log(top / np.where(outside, self.prior, seen[rows, b] + self.prior))
        warm = self.count >= self.warmup
        self.last_warm = ok & warm
        self.last_raw = np.where(self.last_warm, surprise, 0.0)
        score = np.where(warm, -np.expm1(-surprise), 0.0)
        weight = np.where(ok, 1.0, 0.0)
        if self.protect:
            weight = np.where(score >= self.protect_level, weight * self.protect_factor, weight)
        self.table[rows, ctx, b] += weight.astype(np.float32)
        self.prev = np.where(ok, b, self.prev).astype(np.int32)
        self.low = np.where(ok, np.fmin(self.low, x), self.low)
        self.high = np.where(ok, np.fmax(self.high, x), self.high)
        self.count = self.count + ok
        return score
