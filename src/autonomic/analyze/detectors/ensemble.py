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


@kernel
def _calibrate(x: np.ndarray, ok: np.ndarray, y: np.ndarray, live: np.ndarray, reset: np.ndarray, t: np.ndarray,
               cal_count: np.ndarray, cal_mean: np.ndarray, cal_var: np.ndarray, peak: np.ndarray,
               member_peak: np.ndarray, seen: np.ndarray, low: np.ndarray, high: np.ndarray, smooth: np.ndarray,
               rates: np.ndarray, resid: np.ndarray, since: np.ndarray, echo_score: np.ndarray, beta: float,
               calib_warmup: int, min_std: float, use_max: bool, scale: float, onset_decay: float,
               onset_member: bool, spatial_tolerance: float, spatial_gain: float,
               spatial_confirm: float, echo_steps: float, echo_level: float, protect: bool,
               protect_level: float, score: np.ndarray, total: np.ndarray) -> None:
    """One ensemble step over every series: members' surprises ``t`` (one pass per member, so
    the rows stream), their combination, the onset, spatial and echo rules, then the
    calibration. See :class:`Ensemble` for what each rule does."""
    m, n = y.shape
    keep_t = onset_member or (spatial_tolerance > 0.0 and spatial_confirm > 0.0)
    total[:] = 0.0
    for j in range(m):
        yj, mean_j, var_j, count_j, t_j = y[j], cal_mean[j], cal_var[j], cal_count[j], t[j]
        for i in range(n):
            sd = math.sqrt(var_j[i])
            tj = (yj[i] - mean_j[i]) / (sd if sd > min_std else min_std)
            tj = tj if (yj[i] > mean_j[i] and count_j[i] >= calib_warmup) else 0.0
            if keep_t:
                t_j[i] = tj
            if use_max:
                total[i] = tj if tj > total[i] else total[i]
            else:
                total[i] += tj
    for i in range(n):  # the combined surprise and its score (a plain loop: it vectorises)
        tot = total[i] if use_max else total[i] / m
        total[i] = tot
        score[i] = tot / (tot + scale)
    # each rule below is its own pass over the series, run only when the rule is on, in this order
    if onset_decay > 0.0:  # report only new peaks: the onset of an anomaly, not its duration
        for i in range(n):
            onset = total[i] > peak[i]
            if ok[i]:
                peak[i] = max(peak[i] * onset_decay, total[i])
            if reset[i]:  # a member changed its model: old peaks are moot
                peak[i] = 0.0
            if onset_member:  # ... and a new peak of at least one member's own surprise
                new = False
                for j in range(m):
                    new = new or t[j, i] > member_peak[j, i]
                    if ok[i]:
                        member_peak[j, i] = max(member_peak[j, i] * onset_decay, t[j, i])
                    if reset[i]:
                        member_peak[j, i] = 0.0
                onset = onset and new
            if not onset:
                score[i] = 0.0
    if spatial_tolerance > 0.0:  # a watched feature beyond the range ever seen is anomalous by itself
        nr, nf = smooth.shape[0], low.shape[0]
        feat = np.empty(nf)
        for i in range(n):
            xi, oki = x[i], ok[i]
            for r in range(nr):  # EW means of x (rate 1: x itself, exactly)
                sm = smooth[r, i]
                v = xi if (sm != sm or rates[r] == 1.0) else sm + rates[r] * (xi - sm)
                feat[r] = v
                if oki:
                    smooth[r, i] = v
            if nf > nr:
                feat[nr] = resid[i]
            confirmed = True
            if spatial_confirm > 0.0:  # a slow feature's new extreme needs a member to see something too
                top = 0.0
                for j in range(m):
                    top = max(top, t[j, i])
                confirmed = top > spatial_confirm
            beyond = 0.0
            for f in range(nf):
                if f > 0 and not confirmed:
                    break
                up, down = feat[f] - high[f, i], low[f, i] - feat[f]
                if up != up or down != down:  # nothing seen yet
                    continue
                span = high[f, i] - low[f, i]
                beyond = max(beyond, max(up, down) / (span if span > 0.0 else math.inf))
            if oki and seen[i] >= calib_warmup and beyond > spatial_tolerance:
                t_sp = spatial_gain * beyond
                score[i] = max(score[i], t_sp / (t_sp + scale))
            if oki:
                for f in range(nf):
                    if not low[f, i] <= feat[f]:
                        low[f, i] = feat[f]
                    if not high[f, i] >= feat[f]:
                        high[f, i] = feat[f]
    if echo_steps > 0.0:  # an alarm soon after the previous one is mostly its echo
        for i in range(n):
            s = score[i]
            alarm = ok[i] and s >= echo_level
            damp = 1.0 if s > echo_score[i] else -math.expm1(-since[i] / echo_steps)
            if alarm:
                echo_score[i] = s
            score[i] = damp * s / (1.0 - s + damp * s)  # the surprise T scaled by damp
            if ok[i]:
                since[i] += 1.0
            if alarm:
                since[i] = 0.0
    for i in range(n):
        seen[i] += ok[i]
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
        self._rates = np.asarray(rates)
        self.spatial_resid, self.echo_steps, self.echo_level = spatial_resid, echo_steps, echo_level
        self.spatial_confirm = spatial_confirm
        self.protect, self.protect_level = protect, protect_level

    def _allocate(self, n: int) -> None:
        m = len(self.members)
        # (members, n): one contiguous row per member, so combining members is elementwise
        self.cal_count = zeros((m, n), np.int64)
        self.cal_mean = zeros((m, n))
        self.cal_var = zeros((m, n))
        self.peak = zeros(n)  # decaying maximum of the surprise (onset_decay)
        self.member_peak = zeros((m if self.onset_member else 0, n))  # each member's (onset_member)
        self.seen = zeros(n, np.int64)  # samples seen
        # the spatial rule's features and the echo rule keep state only when those rules are on
        nr = len(self.spatial_rates) if self.spatial_tolerance > 0 else 0
        nf = nr + int(self.spatial_resid and nr > 0)
        self.low = full((nf, n), np.nan)  # smallest and largest of each watched feature seen
        self.high = full((nf, n), np.nan)
        self.smooth = full((nr, n), np.nan)  # EW means of x (spatial_rates)
        ne = n if self.echo_steps > 0 else 0
        self.since = full(ne, 1e9)  # steps since the last alarm (echo_steps); finite for JSON
        self.echo_score = zeros(ne)  # the last alarm's score (echo_steps)
        for member in self.members:
            member.n_series = n
            member._allocate(n)

    def _buffers(self, n: int) -> None:
        m = len(self.members)
        super()._buffers(n)
        self._raws, self._warms = zeros((m, n)), full((m, n), False, bool)
        self._y, self._t, self._scores = zeros((m, n)), zeros((m, n)), zeros(n)
        self._reset, self._zeros = full(n, False, bool), zeros(n)
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
        resid = getattr(self.members[0], "last_resid", None) if self.spatial_resid else None
        _calibrate(x, ok, self._y, self._warms, reset, self._t, self.cal_count, self.cal_mean, self.cal_var,
                   self.peak, self.member_peak, self.seen, self.low, self.high, self.smooth, self._rates,
                   self._zeros if resid is None else resid, self.since, self.echo_score,
                   float(self.beta), int(self.calib_warmup), float(self.min_std), self.combine == "max",
                   float(self.scale), float(self.onset_decay), bool(self.onset_member),
                   float(self.spatial_tolerance), float(self.spatial_gain),
                   float(self.spatial_confirm), float(self.echo_steps), float(self.echo_level),
                   bool(self.protect), float(self.protect_level), self._scores, self.last_raw)
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
            if member.n_series != self.n_series:  # their kernels run over the ensemble's input
                raise ValueError(f"ensemble state: member {member.name} holds {member.n_series} series, "
                                 f"the ensemble {self.n_series}")

    def bytes_per_series(self) -> float:
        return super().bytes_per_series() + sum(m.bytes_per_series() for m in self.members)


__all__ = ["DEFAULT_MEMBERS", "Ensemble", "decode_array", "encode_array"]
