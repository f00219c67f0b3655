"""Ensemble: members' raw statistics calibrated per series into comparable surprise, combined."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from autonomic.analyze.detectors.autoseasonal import AutoSeasonal
from autonomic.analyze.detectors.base import StreamingDetector, decode_array, encode_array, full, kernel, zeros
from autonomic.analyze.detectors.changepoint import CUSUM
from autonomic.analyze.detectors.ewma import EWMAZScore
from autonomic.analyze.detectors.mad import RobustMAD
from autonomic.analyze.detectors.seasonal import SeasonalBaseline

MEMBER_TYPES: dict[str, type[StreamingDetector]] = {
    cls.name: cls for cls in (EWMAZScore, RobustMAD, SeasonalBaseline, CUSUM, AutoSeasonal)
}

DEFAULT_MEMBERS: tuple[dict[str, Any], ...] = (
    {"type": "ewma", "alpha": 0.05},
    {"type": "cusum"},
    {"type": "seasonal", "period": 24},
)


@kernel
def _calibrate(x: np.ndarray, ok: np.ndarray, y: np.ndarray, live: np.ndarray, reset: np.ndarray,
               cal_count: np.ndarray, cal_mean: np.ndarray, cal_var: np.ndarray, peak: np.ndarray,
               seen: np.ndarray, low: np.ndarray, high: np.ndarray, beta: float, calib_warmup: int,
               min_std: float, use_max: bool, scale: float, onset_decay: float, spatial_tolerance: float,
               spatial_gain: float, protect: bool, protect_level: float, score: np.ndarray,
               total: np.ndarray) -> None:
    """One ensemble step over every series: members' surprises (one pass per member, so the
    rows stream), their combination, the onset and spatial rules, then the calibration."""
    m, n = y.shape
    total[:] = 0.0
    for j in range(m):
        yj, mean_j, var_j, count_j = y[j], cal_mean[j], cal_var[j], cal_count[j]
        for i in range(n):
            sd = math.sqrt(var_j[i])
            t = (yj[i] - mean_j[i]) / (sd if sd > min_std else min_std)
            t = t if (yj[i] > mean_j[i] and count_j[i] >= calib_warmup) else 0.0
            if use_max:
                total[i] = t if t > total[i] else total[i]
            else:
                total[i] += t
    for i in range(n):
        tot = total[i] if use_max else total[i] / m
        total[i] = tot
        s = tot / (tot + scale)
        xi = x[i]
        if onset_decay > 0.0:  # report only new peaks: the onset of an anomaly, not its duration
            onset = tot > peak[i]
            if ok[i]:
                peak[i] = max(peak[i] * onset_decay, tot)
            if reset[i]:  # a member changed its model: old peaks are moot
                peak[i] = 0.0
            if not onset:
                s = 0.0
        if spatial_tolerance > 0.0:  # a value beyond the range ever seen is anomalous by itself
            span = high[i] - low[i]
            beyond = max(xi - high[i], low[i] - xi) / (span if span > 0.0 else math.inf)
            if ok[i] and seen[i] >= calib_warmup and beyond > spatial_tolerance:
                t_sp = spatial_gain * beyond
                s = max(s, t_sp / (t_sp + scale))
        if ok[i]:
            if not low[i] <= xi:
                low[i] = xi
            if not high[i] >= xi:
                high[i] = xi
            seen[i] += 1
        score[i] = s
    for j in range(m):
        yj, mean_j, var_j, count_j, live_j = y[j], cal_mean[j], cal_var[j], cal_count[j], live[j]
        for i in range(n):
            if not live_j[i]:
                continue
            c = count_j[i]
            a = 1.0 / (c + 1.0) if c < calib_warmup else beta
            # hot is judged before the onset filter: a lasting anomaly stays protected
            if protect and total[i] / (total[i] + scale) >= protect_level:
                a = 0.0
            d = yj[i] - mean_j[i]
            mean_j[i] = mean_j[i] + a * d
            var_j[i] = (1.0 - a) * (var_j[i] + a * d * d)
            count_j[i] = c + 1


class Ensemble(StreamingDetector):
    """Calibrated ensemble.

    Each member's raw statistic ``r`` (a z-like value >= 0) becomes ``y = log(1 + r)``; per
    series and member an EW mean and variance of ``y`` (rate ``beta``) give the member's
    surprise ``t = max(0, (y - mean) / max(std, min_std))``: how unusual this raw value is *for this series*,
    in standard deviations, so members and series become comparable. The members' surprises
    are combined (``combine``: ``"max"`` or ``"mean"``) into ``T`` and the score is
    ``T / (T + scale)``, in [0, 1) and never saturating, so strong anomalies still rank.

    ``onset_decay`` > 0 reports only the onset of an anomaly: a step scores only when its
    surprise exceeds the series' decaying peak (``peak = max(peak * onset_decay, T)``), so a
    lasting anomaly alarms once instead of on every step (0 turns this off).

    ``spatial_tolerance`` > 0 adds the "spatial anomaly" rule of NAB's HTM detector: a value that
    leaves the range of every earlier value of the series by more than ``spatial_tolerance`` times
    that range has surprise ``spatial_gain * excess / range`` (if larger), onset or not.

    Calibration starts after ``calib_warmup`` samples (scores 0 before). ``protect``: a sample
    whose score (before the onset filter, so a lasting anomaly stays protected after its onset)
    is at or above ``protect_level`` does not update the calibration (the members protect their
    own baselines).
    """

    name = "ensemble"
    _arrays = ("cal_count", "cal_mean", "cal_var", "peak", "seen", "low", "high")

    def __init__(self, *, members: list[dict[str, Any]] | None = None, beta: float = 0.005,
                 calib_warmup: int = 50, min_std: float = 0.25, combine: str = "max", scale: float = 3.0,
                 onset_decay: float = 0.0, spatial_tolerance: float = 0.0, spatial_gain: float = 100.0,
                 protect: bool = True, protect_level: float = 0.6) -> None:
        super().__init__()
        specs = [dict(m) for m in (members if members is not None else DEFAULT_MEMBERS)]
        if not specs:
            raise ValueError("an ensemble needs at least one member")
        if spatial_tolerance < 0 or spatial_gain <= 0:
            raise ValueError(f"spatial_tolerance must be >= 0 and spatial_gain > 0, got "
                             f"{spatial_tolerance}, {spatial_gain}")
        if combine not in ("max", "mean"):
            raise ValueError(f"combine must be 'max' or 'mean', got {combine!r}")
        self.members: list[StreamingDetector] = []
        for spec in specs:
            kind = spec.get("type")
            if kind not in MEMBER_TYPES:
                raise ValueError(f"unknown ensemble member type {kind!r}; known: {sorted(MEMBER_TYPES)}")
            params = {k: v for k, v in spec.items() if k != "type"}
            params.setdefault("protect", protect)
            self.members.append(MEMBER_TYPES[kind](**params))
        for member in self.members:
            member.scores_wanted = False  # only their raw statistics are read
        self._set_params(members=specs, beta=beta, calib_warmup=calib_warmup, min_std=min_std,
                         combine=combine, scale=scale, onset_decay=onset_decay,
                         spatial_tolerance=spatial_tolerance, spatial_gain=spatial_gain, protect=protect,
                         protect_level=protect_level)
        self.beta, self.calib_warmup, self.combine, self.scale = beta, calib_warmup, combine, scale
        self.min_std, self.onset_decay = min_std, onset_decay
        self.spatial_tolerance, self.spatial_gain = spatial_tolerance, spatial_gain
        self.protect, self.protect_level = protect, protect_level

    def _allocate(self, n: int) -> None:
        m = len(self.members)
        # (members, n): one contiguous row per member, so combining members is elementwise
        self.cal_count = zeros((m, n), np.int64)
        self.cal_mean = zeros((m, n))
        self.cal_var = zeros((m, n))
        self.peak = zeros(n)  # decaying maximum of the surprise (onset_decay)
        self.seen = zeros(n, np.int64)  # samples seen
        self.low = full(n, np.nan)  # smallest and largest value seen (spatial_tolerance)
        self.high = full(n, np.nan)
        for member in self.members:
            member.n_series = n
            member._allocate(n)

    def _buffers(self, n: int) -> None:
        m = len(self.members)
        super()._buffers(n)
        self._raws, self._warms = zeros((m, n)), full((m, n), False, bool)
        self._y, self._scores, self._reset = zeros((m, n)), zeros(n), full(n, False, bool)
        self._rows = [(self._raws[j], self._warms[j]) for j in range(m)]
        for member, (raw, warm) in zip(self.members, self._rows, strict=True):
            member.last_raw, member.last_warm = raw, warm  # kernels write straight into the rows

    def _step(self, x: np.ndarray, ok: np.ndarray) -> np.ndarray:
        reset = self._reset
        reset.fill(False)
        for member, (raw, warm) in zip(self.members, self._rows, strict=True):
            member._step(x, ok)
            member.steps += 1
            if member.last_raw is not raw:  # a member that steps in numpy returns new arrays
                raw[:], warm[:] = member.last_raw, member.last_warm
            if member.last_reset.shape == reset.shape:
                reset |= member.last_reset
        np.log1p(self._raws, out=self._y)
        _calibrate(x, ok, self._y, self._warms, reset, self.cal_count, self.cal_mean, self.cal_var,
                   self.peak, self.seen, self.low, self.high, float(self.beta), int(self.calib_warmup),
                   float(self.min_std), self.combine == "max", float(self.scale), float(self.onset_decay),
                   float(self.spatial_tolerance), float(self.spatial_gain), bool(self.protect),
                   float(self.protect_level), self._scores, self.last_raw)
        return self._scores

    def state_dict(self) -> dict[str, Any]:
        d = super().state_dict()
        d["members_state"] = [m.state_dict() for m in self.members]
        return d

    def _load(self, d: dict[str, Any]) -> None:
        super()._load(d)
        self.members = [type(m).from_state(s) for m, s in zip(self.members, d["members_state"], strict=True)]
        for member in self.members:
            member.scores_wanted = False

    def bytes_per_series(self) -> float:
        return super().bytes_per_series() + sum(m.bytes_per_series() for m in self.members)


__all__ = ["DEFAULT_MEMBERS", "Ensemble", "decode_array", "encode_array"]
