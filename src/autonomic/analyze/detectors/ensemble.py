"""Ensemble: members' raw statistics calibrated per series into comparable surprise, combined."""

from __future__ import annotations

from typing import Any

import numpy as np

from autonomic.analyze.detectors.base import StreamingDetector, decode_array, encode_array
from autonomic.analyze.detectors.changepoint import CUSUM
from autonomic.analyze.detectors.ewma import EWMAZScore
from autonomic.analyze.detectors.mad import RobustMAD
from autonomic.analyze.detectors.seasonal import SeasonalBaseline

MEMBER_TYPES: dict[str, type[StreamingDetector]] = {
    cls.name: cls for cls in (EWMAZScore, RobustMAD, SeasonalBaseline, CUSUM)
}

DEFAULT_MEMBERS: tuple[dict[str, Any], ...] = (
    {"type": "ewma", "alpha": 0.05},
    {"type": "cusum"},
    {"type": "seasonal", "period": 24},
)


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

    Calibration starts after ``calib_warmup`` samples (scores 0 before). ``protect``: a sample
    whose score is at or above ``protect_level`` does not update the calibration (the members
    protect their own baselines).
    """

    name = "ensemble"
    _arrays = ("cal_count", "cal_mean", "cal_var", "peak")

    def __init__(self, *, members: list[dict[str, Any]] | None = None, beta: float = 0.005,
                 calib_warmup: int = 50, min_std: float = 0.25, combine: str = "max", scale: float = 3.0,
                 onset_decay: float = 0.0, protect: bool = True, protect_level: float = 0.6) -> None:
        super().__init__()
        specs = [dict(m) for m in (members if members is not None else DEFAULT_MEMBERS)]
        if not specs:
            raise ValueError("an ensemble needs at least one member")
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
        self._set_params(members=specs, beta=beta, calib_warmup=calib_warmup, min_std=min_std,
                         combine=combine, scale=scale, onset_decay=onset_decay, protect=protect,
                         protect_level=protect_level)
        self.beta, self.calib_warmup, self.combine, self.scale = beta, calib_warmup, combine, scale
        self.min_std, self.onset_decay = min_std, onset_decay
        self.protect, self.protect_level = protect, protect_level

    def _allocate(self, n: int) -> None:
        m = len(self.members)
        self.cal_count = np.zeros((n, m), dtype=np.int64)
        self.cal_mean = np.zeros((n, m))
        self.cal_var = np.zeros((n, m))
        self.peak = np.zeros(n)  # decaying maximum of the surprise (onset_decay)
        for member in self.members:
            member.n_series = n
            member._allocate(n)

    def _step(self, x: np.ndarray, ok: np.ndarray) -> np.ndarray:
        raws, warms = [], []
        for member in self.members:
            member._step(x, ok)
            member.steps += 1
            raws.append(member.last_raw)
            warms.append(member.last_warm)
        y = np.log1p(np.stack(raws, axis=1))
        live = np.stack(warms, axis=1)
        t = (y - self.cal_mean) / np.maximum(np.sqrt(self.cal_var), self.min_std)
        t = np.where(y > self.cal_mean, t, 0.0)
        warm = self.cal_count >= self.calib_warmup
        t = np.where(warm, t, 0.0)
        total = t.max(axis=1) if self.combine == "max" else t.mean(axis=1)
        self.last_raw = total
        score = total / (total + self.scale)
        if self.onset_decay > 0:  # report only new peaks: the onset of an anomaly, not its duration
            onset = total > self.peak
            self.peak = np.where(ok, np.maximum(self.peak * self.onset_decay, total), self.peak)
            score = np.where(onset, score, 0.0)
        a = np.where(self.cal_count < self.calib_warmup, 1.0 / (self.cal_count + 1.0), self.beta)
        if self.protect:
            a = np.where((score >= self.protect_level)[:, None], 0.0, a)
        a = np.where(live, a, 0.0)
        d = y - self.cal_mean
        self.cal_mean = self.cal_mean + a * d
        self.cal_var = (1.0 - a) * (self.cal_var + a * d * d)
        self.cal_count = self.cal_count + live
        return score

    def state_dict(self) -> dict[str, Any]:
        d = super().state_dict()
        d["members_state"] = [m.state_dict() for m in self.members]
        return d

    def _load(self, d: dict[str, Any]) -> None:
        super()._load(d)
        self.members = [type(m).from_state(s) for m, s in zip(self.members, d["members_state"], strict=True)]

    def bytes_per_series(self) -> float:
        return super().bytes_per_series() + sum(m.bytes_per_series() for m in self.members)


__all__ = ["DEFAULT_MEMBERS", "Ensemble", "decode_array", "encode_array"]
