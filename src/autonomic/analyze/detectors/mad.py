"""Robust z-score: distance from the median of a sliding window in units of its MAD."""

from __future__ import annotations

import numpy as np

from autonomic.analyze.detectors.base import StreamingDetector, safe_ratio

MAD_TO_SIGMA = 1.4826


class RobustMAD(StreamingDetector):
    """Score ``P(|Z| < z)`` with ``z = |x - median| / (1.4826 * MAD)`` over the last ``window``
    samples of the series (a ring buffer, shape ``(N, window)``).

    Scores are 0 until ``warmup`` samples are in the window. With ``protect``, a sample scoring
    at or above ``protect_level`` enters the window only every ``protect_every``-th time in a
    row, so a lasting shift is learned, slowly.
    """

    name = "mad"
    _arrays = ("buf", "pos", "count", "streak")

    def __init__(self, *, window: int = 32, warmup: int = 10, protect: bool = True,
                 protect_level: float = 0.99, protect_every: int = 4) -> None:
        super().__init__()
        if window < 3:
            raise ValueError(f"window must be >= 3, got {window}")
        self._set_params(window=window, warmup=warmup, protect=protect, protect_level=protect_level,
                         protect_every=protect_every)
        self.window, self.warmup, self.protect = window, warmup, protect
        self.protect_level, self.protect_every = protect_level, protect_every

    def _allocate(self, n: int) -> None:
        self.buf = np.full((n, self.window), np.nan)
        self.pos = np.zeros(n, dtype=np.int64)
        self.count = np.zeros(n, dtype=np.int64)
        self.streak = np.zeros(n, dtype=np.int64)  # protected samples in a row

    def raw(self, x: np.ndarray, ok: np.ndarray) -> np.ndarray:
        full = bool((self.count >= self.window).all())
        median = np.median if full else np.nanmedian
        with np.errstate(all="ignore"):
            import warnings

            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows of new series
                med = median(self.buf, axis=1)
                mad = median(np.abs(self.buf - med[:, None]), axis=1)
        med = np.nan_to_num(med)
        return safe_ratio(x - med, MAD_TO_SIGMA * np.nan_to_num(mad), med)

    def _step(self, x: np.ndarray, ok: np.ndarray) -> np.ndarray:
        z = self.raw(x, ok)
        self.last_warm = ok & (self.count >= self.warmup)
        self.last_raw = np.where(self.last_warm, z, 0.0)
        score = self._score(z, self.count >= self.warmup, self.protect_level)
        self.learn(x, ok, score)
        return score

    def learn(self, x: np.ndarray, ok: np.ndarray, score: np.ndarray) -> None:
        write = ok
        if self.protect:
            hot = ok & (score >= self.protect_level)
            self.streak = np.where(hot, self.streak + 1, np.where(ok, 0, self.streak))
            write = ok & (~hot | (self.streak % self.protect_every == 0))
        rows = np.flatnonzero(write)
        self.buf[rows, self.pos[rows]] = x[rows]
        self.pos = np.where(write, (self.pos + 1) % self.window, self.pos)
        self.count = self.count + write
