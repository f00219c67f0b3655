"""The compiled detector kernels against an independent oracle: the same formulas written as
whole-array numpy operations (the implementation the kernels replaced), on data with missing
samples, huge values, a constant series and level shifts. Scores, raw statistics and every
state array must agree."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from autonomic.analyze.detect_cli import DETECT_CONFIG
from autonomic.analyze.detectors import CUSUM, Ensemble, EWMAZScore, SeasonalBaseline
from autonomic.analyze.detectors.base import safe_ratio


class NumpyEWMA(EWMAZScore):
    def _step(self, x: np.ndarray, ok: np.ndarray) -> np.ndarray:
        z = safe_ratio(x - self.mean, np.sqrt(self.var), self.mean)
        self.last_warm = ok & (self.count >= self.warmup)
        self.last_raw = np.where(self.last_warm, z, 0.0)
        score = self._score(z, self.count >= self.warmup, self.protect_level)
        a = np.full(x.shape, self.alpha)
        if self.protect:
            a = np.where(score >= self.protect_level, self.alpha * self.protect_factor, a)
        a = np.where(ok, np.where(self.count == 0, 1.0, a), 0.0)
        d = x - self.mean
        self.mean = self.mean + a * d
        self.var = (1.0 - a) * (self.var + a * d * d)
        self.count = self.count + ok
        return score


class NumpyCUSUM(CUSUM):
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
        a = np.where(self.count < self.warmup, 1.0 / (self.count + 1.0), a)
        a = np.where(ok, a, 0.0)
        self.mean = self.mean + a * d
        self.var = (1.0 - a) * (self.var + a * d * d)
        self.count = self.count + ok
        return score


class NumpySeasonal(SeasonalBaseline):
    def _step(self, x: np.ndarray, ok: np.ndarray) -> np.ndarray:
        p = self.steps % self.period
        m, dv = self.mean[p].copy(), self.dev[p].copy()
        r = x - m
        z = safe_ratio(r, 1.25 * dv, m)
        ready = self.seen >= self.warmup_cycles * self.period
        self.last_warm = ok & ready
        self.last_raw = np.where(self.last_warm, z, 0.0)
        score = self._score(z, ready, self.protect_level)
        a = np.full(x.shape, self.alpha)
        if self.protect:
            a = np.where(score >= self.protect_level, self.alpha * self.protect_factor, a)
        first = self.seen < self.period
        a = np.where(ok, np.where(first, 1.0, a), 0.0)
        self.mean[p] = m + a * r
        self.dev[p] = np.where(first & ok, 0.0, dv + a * (np.abs(r) - dv))
        self.seen = self.seen + ok
        return score


NUMPY_MEMBERS: dict[str, type] = {"ewma": NumpyEWMA, "cusum": NumpyCUSUM, "seasonal": NumpySeasonal}


class NumpyEnsemble(Ensemble):
    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.members = [NUMPY_MEMBERS.get(m.name, type(m))(**m.params) for m in self.members]
        for member in self.members:
            member.scores_wanted = False

    def _buffers(self, n: int) -> None:
        self.last_raw = np.zeros(n)

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
        t = np.where((y > self.cal_mean) & (self.cal_count >= self.calib_warmup), t, 0.0)
        total = t.max(axis=0) if self.combine == "max" else t.mean(axis=0)
        self.last_raw = total
        score = total / (total + self.scale)
        hot = score >= self.protect_level
        if self.onset_decay > 0:
            onset = total > self.peak
            self.peak = np.where(ok, np.maximum(self.peak * self.onset_decay, total), self.peak)
            self.peak = np.where(reset, 0.0, self.peak)
            if self.onset_member:
                onset &= (t > self.member_peak).any(axis=0)
                self.member_peak = np.where(ok, np.maximum(self.member_peak * self.onset_decay, t), self.member_peak)
                self.member_peak = np.where(reset, 0.0, self.member_peak)
            score = np.where(onset, score, 0.0)
        if self.spatial_tolerance > 0:
            fresh = np.isnan(self.smooth) | (self.spatial_rates == 1.0)
            smooth = np.where(fresh, x, self.smooth + self.spatial_rates * (x - self.smooth))
            self.smooth = np.where(ok, smooth, self.smooth)
            feats = smooth
            if self.spatial_resid:
                resid = getattr(self.members[0], "last_resid", None)
                feats = np.vstack([feats, (np.zeros_like(x) if resid is None else resid)[None, :]])
            span = self.high - self.low
            beyond = np.maximum(feats - self.high, self.low - feats) / np.where(span > 0, span, np.inf)
            beyond = np.nan_to_num(beyond, nan=0.0)
            if self.spatial_confirm > 0:
                confirmed = t.max(axis=0) > self.spatial_confirm
                beyond[1:] = np.where(confirmed, beyond[1:], 0.0)
            beyond = beyond.max(axis=0)
            spatial = ok & (self.seen >= self.calib_warmup) & (beyond > self.spatial_tolerance)
            t_sp = np.where(spatial, self.spatial_gain * beyond, 0.0)
            score = np.maximum(score, t_sp / (t_sp + self.scale))
            self.low = np.where(ok, np.fmin(self.low, feats), self.low)
            self.high = np.where(ok, np.fmax(self.high, feats), self.high)
        if self.echo_steps > 0:
            alarm = ok & (score >= self.echo_level)
            damp = np.where(score > self.echo_score, 1.0, -np.expm1(-self.since / self.echo_steps))
            self.echo_score = np.where(alarm, score, self.echo_score)
            score = damp * score / (1.0 - score + damp * score)
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


# every rule of the ensemble on at once, over kernel and numpy members
EVERY_RULE: dict[str, Any] = {
    "members": [{"type": "autoseasonal", "learn": 64, "max_period": 30}, {"type": "ewma"}, {"type": "cusum"},
                {"type": "novelty"}],
    "combine": "mean", "onset_decay": 0.999, "onset_member": True, "spatial_tolerance": 0.05,
    "spatial_rates": [1.0, 0.3, 0.05], "spatial_resid": True, "spatial_confirm": 0.5, "echo_steps": 50,
    "echo_level": 0.3, "protect_level": 0.4,
}


def _data(n: int = 40, steps: int = 400) -> np.ndarray:
    rng = np.random.default_rng(11)
    t = np.arange(steps)[:, None]
    level = rng.uniform(-50, 1000, size=n)
    data = level * (1 + 0.1 * np.sin(2 * np.pi * t / 24)) + rng.normal(0, 1, (steps, n)) * np.abs(level) * 0.03
    data[steps // 2:, ::5] *= 1.5  # level shifts
    data[250:256, ::4] += 40 * np.abs(level[::4])  # spikes
    data[rng.random((steps, n)) < 0.02] = np.nan  # missing samples
    data[100:103, 7] = 1e300  # huge magnitudes
    data[:, 3] = 5.0  # a constant series
    return data


CASES: list[tuple[str, Any, Any]] = [
    ("ewma", lambda: EWMAZScore(), lambda: NumpyEWMA()),
    ("ewma-unprotected", lambda: EWMAZScore(protect=False, alpha=0.2), lambda: NumpyEWMA(protect=False, alpha=0.2)),
    ("cusum", lambda: CUSUM(), lambda: NumpyCUSUM()),
    ("seasonal", lambda: SeasonalBaseline(period=12), lambda: NumpySeasonal(period=12)),
    ("ensemble", lambda: Ensemble(), lambda: NumpyEnsemble()),
    ("ensemble-mean-onset-spatial",
     lambda: Ensemble(combine="mean", onset_decay=0.99, spatial_tolerance=0.05),
     lambda: NumpyEnsemble(combine="mean", onset_decay=0.99, spatial_tolerance=0.05)),
    ("ensemble-unprotected", lambda: Ensemble(protect=False), lambda: NumpyEnsemble(protect=False)),
    ("ensemble-every-rule",
     lambda: Ensemble(**EVERY_RULE), lambda: NumpyEnsemble(**EVERY_RULE)),
    ("detect-configuration", lambda: Ensemble(**DETECT_CONFIG), lambda: NumpyEnsemble(**DETECT_CONFIG)),
]


@pytest.mark.parametrize(("name", "make", "make_oracle"), CASES, ids=[c[0] for c in CASES])
def test_kernel_matches_the_numpy_formulas(name: str, make: Any, make_oracle: Any) -> None:
    det, oracle = make(), make_oracle()
    scores = np.stack([det.update(row) for row in _data()])
    expected = np.stack([oracle.update(row) for row in _data()])
    assert (expected > 0.5).any(), "the data must make the detector fire, or the comparison proves little"
    np.testing.assert_allclose(scores, expected, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(det.last_raw, oracle.last_raw, rtol=1e-12, atol=1e-12)
    for key in det._arrays:
        np.testing.assert_allclose(getattr(det, key), getattr(oracle, key), rtol=1e-12, atol=1e-12,
                                   err_msg=f"state array {key!r}")

