"""Change-point: two-sided CUSUM on standardised values."""

from __future__ import annotations

import math

import numpy as np

from autonomic.analyze.detectors.base import StreamingDetector, kernel, ratio, zeros


@kernel
def _cusum_step(x: np.ndarray, ok: np.ndarray, count: np.ndarray, mean: np.ndarray, var: np.ndarray,
                gpos: np.ndarray, gneg: np.ndarray, alpha: float, drift: float, threshold: float,
                z_clip: float, warmup: int, protect: bool, raw_level: float, protect_factor: float,
                raw: np.ndarray, warm: np.ndarray) -> None:
    cap = 4.0 * threshold
    for i in range(x.shape[0]):
        m = mean[i]
        c = count[i]
        d = x[i] - m
        z = min(ratio(d, math.sqrt(var[i]), m), z_clip)
        if d < 0.0:
            z = -z
        live = ok[i] and c >= warmup
        warm[i] = live
        r = 0.0
        if live:
            gp = min(max(gpos[i] + z - drift, 0.0), cap)
            gn = min(max(gneg[i] - z - drift, 0.0), cap)
            gpos[i] = gp
            gneg[i] = gn
            r = max(gp, gn) / threshold
        raw[i] = r
        if not ok[i]:
            continue
        a = alpha
        if protect and r >= raw_level:
            a = alpha * protect_factor
        if c < warmup:
            a = 1.0 / (c + 1.0)  # plain mean while warming up
        mean[i] = m + a * d
        var[i] = (1.0 - a) * (var[i] + a * d * d)
        count[i] = c + 1


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
        self.count = zeros(n, np.int64)
        self.mean = zeros(n)
        self.var = zeros(n)
        self.gpos = zeros(n)
        self.gneg = zeros(n)

    def _step(self, x: np.ndarray, ok: np.ndarray) -> np.ndarray:
        # score >= protect_level  <=>  raw >= -log(1 - protect_level)
        level = -math.log1p(-self.protect_level) if self.protect_level < 1.0 else math.inf
        _cusum_step(x, ok, self.count, self.mean, self.var, self.gpos, self.gneg, float(self.alpha),
                    float(self.drift), float(self.threshold), float(self.z_clip), int(self.warmup),
                    bool(self.protect), float(level), float(self.protect_factor), self.last_raw, self.last_warm)
        return 1.0 - np.exp(-self.last_raw) if self.scores_wanted else self.last_raw
