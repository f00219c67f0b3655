"""Ensemble: members' raw statistics calibrated per series into comparable surprise, combined."""

from __future__ import annotations

from typing import Any

import numpy as np

from autonomic.analyze.detectors.autoseasonal import AutoSeasonal
from autonomic.analyze.detectors.base import StreamingDetector, decode_array, encode_array
from autonomic.analyze.detectors.changepoint import CUSUM
from autonomic.analyze.detectors.ewma import EWMAZScore
from autonomic.analyze.detectors.mad import RobustMAD
from autonomic.analyze.detectors.novelty import ContextNovelty
from autonomic.analyze.detectors.seasonal import SeasonalBaseline

MEMBER_TYPES: dict[str, type[StreamingDetector]] = {
    cls.name: cls for cls in (EWMAZScore, RobustMAD, SeasonalBaseline, CUSUM, AutoSeasonal, ContextNovelty)
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
    lasting anomaly alarms once instead of on every step (0 turns this off). With
    ``onset_member`` it must also be a new peak of at least one member's own surprise ``t`` (the
    combined surprise can peak from several members being mildly unusual at once; then no view
    of the series shows anything new).

    ``spatial_tolerance`` > 0 adds the "spatial anomaly" rule of NAB's HTM detector: a value that
    leaves the range of every earlier value of the series by more than ``spatial_tolerance`` times
    that range has surprise ``spatial_gain * excess / range`` (if larger), onset or not. The rule
    watches the value's EW means at ``spatial_rates`` (1.0 is the value itself; slower rates see a
    shift of a few samples that no single sample shows) and, with ``spatial_resid``, the first
    member's signed residual (``last_resid``, e.g. the distance from the seasonal profile), each
    against its own range. With ``spatial_confirm`` > 0 a new extreme of any of these but the first
    feature (the first rate, normally the value itself) counts only while some member's surprise
    ``t`` exceeds ``spatial_confirm``: a slow drift to a new level, that no member finds unusual,
    is not an anomaly.

    ``echo_steps`` > 0 damps echoes: an alarm (a score at or above ``echo_level``) that follows the
    series' previous alarm by ``g`` steps, and is no stronger than it, has its surprise scaled by
    ``1 - exp(-g / echo_steps)``, so one anomaly tends to alarm once, at its onset, and not again
    while it unfolds (unless it grows).

    Calibration starts after ``calib_warmup`` samples (scores 0 before). ``protect``: a sample
    whose score (before the onset filter, so a lasting anomaly stays protected after its onset)
    is at or above ``protect_level`` does not update the calibration (the members protect their
    own baselines).
    """

    name = "ensemble"
    _arrays = ("cal_count", "cal_mean", "cal_var", "peak", "member_peak", "seen", "low", "high", "smooth", "since",
               "echo_score")

    def __init__(self, *, members: list[dict[str, Any]] | None = None, beta: float = 0.005,
                 calib_warmup: int = 50, min_std: float = 0.25, combine: str = "max", scale: float = 3.0,
                 onset_decay: float = 0.0, onset_member: bool = False,
                 spatial_tolerance: float = 0.0, spatial_gain: float = 100.0,
                 spatial_rates: list[float] | tuple[float, ...] = (1.0,), spatial_resid: bool = False,
                 spatial_confirm: float = 0.0,
                 echo_steps: float = 0.0, echo_level: float = 0.3,
                 protect: bool = True, protect_level: float = 0.6) -> None:
        super().__init__()
        specs = [dict(m) for m in (members if members is not None else DEFAULT_MEMBERS)]
        if not specs:
            raise ValueError("an ensemble needs at least one member")
        if spatial_tolerance < 0 or spatial_gain <= 0:
            raise ValueError(f"spatial_tolerance must be >= 0 and spatial_gain > 0, got "
                             f"{spatial_tolerance}, {spatial_gain}")
        rates = [float(r) for r in spatial_rates]
        if not rates or not all(0 < r <= 1 for r in rates):
            raise ValueError(f"spatial_rates must be rates in (0, 1], got {spatial_rates}")
        if echo_steps < 0:
            raise ValueError(f"echo_steps must be >= 0, got {echo_steps}")
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
                         combine=combine, scale=scale, onset_decay=onset_decay, onset_member=onset_member,
                         spatial_tolerance=spatial_tolerance, spatial_gain=spatial_gain, spatial_rates=rates,
                         spatial_resid=spatial_resid, spatial_confirm=spatial_confirm, echo_steps=echo_steps,
                         echo_level=echo_level,
                         protect=protect, protect_level=protect_level)
        self.beta, self.calib_warmup, self.combine, self.scale = beta, calib_warmup, combine, scale
        self.min_std, self.onset_decay, self.onset_member = min_std, onset_decay, onset_member
        self.spatial_tolerance, self.spatial_gain = spatial_tolerance, spatial_gain
        self.spatial_rates = np.asarray(rates)[:, None]
        self.spatial_resid, self.echo_steps, self.echo_level = spatial_resid, echo_steps, echo_level
        self.spatial_confirm = spatial_confirm
        self.protect, self.protect_level = protect, protect_level

    def _allocate(self, n: int) -> None:
        m = len(self.members)
        # (members, n): one contiguous row per member, so combining members is elementwise
        self.cal_count = np.zeros((m, n), dtype=np.int64)
        self.cal_mean = np.zeros((m, n))
        self.cal_var = np.zeros((m, n))
        self.peak = np.zeros(n)  # decaying maximum of the surprise (onset_decay)
        self.member_peak = np.zeros((m if self.onset_member else 0, n))  # each member's (onset_member)
        self.seen = np.zeros(n, dtype=np.int64)  # samples seen
        nf = len(self.spatial_rates) + int(self.spatial_resid)
        self.low = np.full((nf, n), np.nan)  # smallest and largest of each watched feature seen
        self.high = np.full((nf, n), np.nan)
        self.smooth = np.full((len(self.spatial_rates), n), np.nan)  # EW means of x (spatial_rates)
        self.since = np.full(n, 1e9)  # steps since the last alarm (echo_steps); finite for JSON
        self.echo_score = np.zeros(n)  # the last alarm's score (echo_steps)
        for member in self.members:
            member.n_series = n
            member._allocate(n)

    def _step(self, x: np.ndarray, ok: np.ndarray) -> np.ndarray:
        raws, warms = [], []
        reset = np.zeros(x.shape, dtype=bool)
        for member in self.members:
            member._step(x, ok)
            member.steps += 1
            raws.append(member.last_raw)
            warms.append(member.last_warm)
            if member.last_reset.shape == reset.shape:
                reset |= member.last_reset
        y = np.log1p(np.stack(raws))
        live = np.stack(warms)
        t = (y - self.cal_mean) / np.maximum(np.sqrt(self.cal_var), self.min_std)
        t = np.where(y > self.cal_mean, t, 0.0)
        warm = self.cal_count >= self.calib_warmup
        t = np.where(warm, t, 0.0)
        total = t.max(axis=0) if self.combine == "max" else t.mean(axis=0)
        self.last_raw = total
        score = total / (total + self.scale)
        hot = score >= self.protect_level  # judged before the onset filter: a lasting anomaly stays hot
        if self.onset_decay > 0:  # report only new peaks: the onset of an anomaly, not its duration
            onset = total > self.peak
            self.peak = np.where(ok, np.maximum(self.peak * self.onset_decay, total), self.peak)
            self.peak = np.where(reset, 0.0, self.peak)  # a member changed its model: old peaks are moot
            if self.onset_member:  # ... and a new peak of at least one member's own surprise
                onset &= (t > self.member_peak).any(axis=0)
                self.member_peak = np.where(ok, np.maximum(self.member_peak * self.onset_decay, t), self.member_peak)
                self.member_peak = np.where(reset, 0.0, self.member_peak)
            score = np.where(onset, score, 0.0)
        fresh = np.isnan(self.smooth) | (self.spatial_rates == 1.0)  # rate 1: the value itself, exactly
        smooth = np.where(fresh, x, self.smooth + self.spatial_rates * (x - self.smooth))
        self.smooth = np.where(ok, smooth, self.smooth)
        feats = smooth
        if self.spatial_resid:
            resid = getattr(self.members[0], "last_resid", None)
            feats = np.vstack([feats, (np.zeros_like(x) if resid is None else resid)[None, :]])
        if self.spatial_tolerance > 0:  # a value beyond the range ever seen is anomalous by itself
            span = self.high - self.low
            beyond = np.maximum(feats - self.high, self.low - feats) / np.where(span > 0, span, np.inf)
            beyond = np.nan_to_num(beyond, nan=0.0)
            if self.spatial_confirm > 0:  # a slow feature's new extreme needs a member to see something too
                confirmed = t.max(axis=0) > self.spatial_confirm
                beyond[1:] = np.where(confirmed, beyond[1:], 0.0)
            beyond = beyond.max(axis=0)
            spatial = ok & (self.seen >= self.calib_warmup) & (beyond > self.spatial_tolerance)
            t_sp = np.where(spatial, self.spatial_gain * beyond, 0.0)
            score = np.maximum(score, t_sp / (t_sp + self.scale))
        self.low = np.where(ok, np.fmin(self.low, feats), self.low)
        self.high = np.where(ok, np.fmax(self.high, feats), self.high)
        if self.echo_steps > 0:  # an alarm soon after the previous one is mostly its echo
            alarm = ok & (score >= self.echo_level)
            damp = np.where(score > self.echo_score, 1.0, -np.expm1(-self.since / self.echo_steps))
            self.echo_score = np.where(alarm, score, self.echo_score)
            score = damp * score / (1.0 - score + damp * score)  # the surprise T scaled by damp
            self.since = np.where(ok, self.since + 1.0, self.since)
            self.since = np.where(alarm, 0.0, self.since)
        self.seen = self.seen + ok
        a = np.where(self.cal_count < self.calib_warmup, 1.0 / (self.cal_count + 1.0), self.beta)
        if self.protect:
            a = np.where(hot[None, :], 0.0, a)
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
        for member in self.members:
            member.scores_wanted = False

    def bytes_per_series(self) -> float:
        return super().bytes_per_series() + sum(m.bytes_per_series() for m in self.members)


__all__ = ["DEFAULT_MEMBERS", "Ensemble", "decode_array", "encode_array"]
