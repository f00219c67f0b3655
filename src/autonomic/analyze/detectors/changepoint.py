"""Change-point: two-sided CUSUM on standardised values."""

from __future__ import annotations

import numpy as np

from autonomic.analyze.detectors.base import StreamingDetector, safe_ratio


class CUSUM(StreamingDetector):
    """Two-sided CUSUM of ``z = (x - mean) / std`` against a slow EW baseline (rate ``alpha``):
    ``g+ = max(0, g+ + z - drift)``, ``g- = max(0, g- - z - drift)``, each capped at
    ``4 * threshold``. Score ``1 - exp(-max(g+, g-) / threshold)``: 0.63 at the threshold.

    ``z`` is clipped to ``+-z_clip`` so one spike is not a change. Scores are 0 during the first
    ``warmup`` samples. ``protect``: while the score is at or above ``protect_level``, the
    baseline moves at ``alpha * protect_factor``, so a level shift stays flagged while it lasts
    and is learned slowly.
    """

    name = "cusum"
    _arrays = ("count", "mean", "var", "gpos", "gneg")

    def __init__(self, *, alpha: float = 0.02, drift: float = 0.5, threshold: float = 5.0,
                 z_clip: float = 4.0, warmup: int = 30, protect: bool = True, protect_level: float = 0.6,
                 protect_factor: float = 0.05) -> None:
        super().__init__()
        self._set_params(alpha=alpha, drift=drift, threshold=threshold, z_clip=z_clip, warmup=warmup,
                         protect=protect, protect_level=protect_level, protect_factor=protect_factor)
        self.alpha, self.drift, self.threshold, self.z_clip = alpha, drift, threshold, z_clip
        self.warmup, self.protect = warmup, protect
        self.protect_level, self.protect_factor = protect_level, protect_factor

    def _allocate(self, n: int) -> None:
        self.count = np.zeros(n, dtype=np.int64)
        self.mean = np.zeros(n)
        self.var = np.zeros(n)
        self.gpos = np.zeros(n)
        self.gneg = np.zeros(n)

    def _step(self, x: np.ndarray, ok: np.ndarray) -> np.ndarray:
        d = x - self.mean
        z = np.sign(d) * np.minimum(safe_ratio(d, np.sqrt(self.var), self.mean), self.z_clip)
        warm = ok & (self.count >= self.warmup)
        cap = 4.0 * self.threshold
        self.gpos = np.where(warm, np.clip(self.gpos + z - self.drift, 0.0, cap), self.gpos)
        self.gneg = np.where(warm, np.clip(self.gneg - z - self.drift, 0.0, cap), self.gneg)
        self.last_warm = warm
        self.last_raw = np.where(warm, np.maximum(self.gpos, self.gneg) / self.threshold, 0.0)
        score = 1.0 - np.exp(-self.last_raw)
        a = np.full(x.shape, self.alpha)
        if self.protect:
            a = np.where(score >= self.protect_level, self.alpha * self.protect_factor, a)
        a = np.where(self.count < self.warmup, 1.0 / (self.count + 1.0), a)  # plain mean while warming up
        a = np.where(ok, a, 0.0)
        self.mean = self.mean + a * d
        self.var = (1.0 - a) * (self.var + a * d * d)
        self.count = self.count + ok
        return score
