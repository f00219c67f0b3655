"""Did the action help? Compare a metric before and after it against the pattern's bounds. Pure."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike
from pydantic import BaseModel, ConfigDict
from scipy.stats import f as f_dist
from scipy.stats import mannwhitneyu
from scipy.stats import t as student_t

from autonomic.model import VerifySpec, VerifyVerdict
from autonomic.printable import counted

SIGNIFICANCE = 0.05
MIN_SAMPLES_FOR_TEST = 5  # per side, before the Mann-Whitney U test is required


class Judgement(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    verdict: VerifyVerdict
    reason: str
    before: dict[str, Any]  # n, mean, median, max, min, p_value
    after: dict[str, Any]


def _stats(values: np.ndarray, p_value: float | None = None) -> dict[str, Any]:
    if values.size == 0:
        return {"n": 0, "mean": None, "median": None, "max": None, "min": None, "p_value": p_value}
    return {
        "n": int(values.size),
        "mean": float(values.mean()),
        "median": float(np.median(values)),
        "max": float(values.max()),
        "min": float(values.min()),
        "p_value": p_value,
    }


def _values(series: tuple[ArrayLike, ArrayLike]) -> np.ndarray:
    values = np.asarray(series[1], dtype=float).ravel()
    return values[np.isfinite(values)]


def _last_ts(series: tuple[ArrayLike, ArrayLike]) -> float | None:
    """The time of the newest finite sample, or None when there is none."""
    ts = np.asarray(series[0], dtype=float).ravel()
    values = np.asarray(series[1], dtype=float).ravel()
    finite = ts[np.isfinite(values)]
    return float(finite.max()) if finite.size else None


def judge(
    before: tuple[ArrayLike, ArrayLike],
    after: tuple[ArrayLike, ArrayLike],
    spec: VerifySpec,
    *,
    recent_since: float | None = None,
    preventive: bool = False,
) -> Judgement:
    """Judge an action from (timestamps, values) of ``spec.metric`` before and after it.

    Rules, in order (non-finite values are ignored):

    1. Fewer than ``spec.min_samples`` after-samples -> INCONCLUSIVE ("too little data: 1 of 3
       samples"). Never PASS on too little data. With ``recent_since`` (the start of the last
       part of the watch window), no after-sample at or after it -> INCONCLUSIVE ("went
       silent"): a metric that stopped reporting part-way (the service died, so nothing
       scrapes it) says nothing about how the fix ended, however good its first samples were.
    2. Every after-sample within ``[min - tolerance, max + tolerance]`` (each bound only when
       set) -> PASS. With ``preventive`` (the action answered a forecast: the line was never
       crossed, so staying within bounds alone proves nothing) the metric must also have left
       the course it was on before the action (:func:`_course`): the after-samples' mean
       lies significantly (one-sided, 95%) and by more than ``tolerance`` on the safe side of
       the before-samples' course extrapolated to their times (a straight line, or its last leg
       when it bent where a leak began). Otherwise (still on its
       way to the line, or fewer than 3 before-samples to draw the course from) -> INCONCLUSIVE.
    3. Out of bounds and worse than before -> FAIL. The harmful direction is up when a sample
       is above ``max``, down when one is below ``min``. Worse means the after mean moved in the
       harmful direction by more than ``tolerance``; with at least 5 samples on each side, a
       one-sided Mann-Whitney U test must also give p < 0.05. Without before-samples nothing
       can be worse. With ``preventive`` and a course, worse means worse than the course: the
       after-samples significantly and by more than ``tolerance`` on its harmful side (the fix
       sped the metric up). A metric that only went on rising as forecast is not worse for it
       (undoing a pool raise because the leak went on would take the headroom away).
    4. Otherwise (out of bounds, not worse) -> INCONCLUSIVE, "still out of bounds, not worse
       than before" (or, preventive, "on its course before the action: the breach came as
       forecast").

    The engine undoes an action on FAIL and escalates INCONCLUSIVE to a person.
    """
    b, a = _values(before), _values(after)
    if a.size < spec.min_samples:
        return Judgement(
            verdict=VerifyVerdict.INCONCLUSIVE,
            reason=f"too little data: {a.size} of {counted(spec.min_samples, 'sample')}",
            before=_stats(b),
            after=_stats(a),
        )
    last = _last_ts(after)
    if recent_since is not None and (last is None or last < recent_since):
        return Judgement(
            verdict=VerifyVerdict.INCONCLUSIVE,
            reason=f"went silent: no {spec.metric} sample in the last part of the watch window"
            + (f" (the newest is {recent_since - last:.0f} s before it)" if last is not None else ""),
            before=_stats(b),
            after=_stats(a),
        )
    tol = spec.tolerance
    above = spec.max is not None and bool((a > spec.max + tol).any())
    below = spec.min is not None and bool((a < spec.min - tol).any())
    against_course = preventive and (spec.max is not None or spec.min is not None)
    course = _course(before, after, spec) if against_course else None
    if not above and not below:
        reason = f"{spec.metric} within bounds{_bounds(spec)} over {counted(int(a.size), 'sample')}"
        verdict = VerifyVerdict.PASS
        if against_course:
            off = course is not None and course.shift < -tol and course.t <= -course.t_crit
            if course is None:
                reason += (", but there is no course before the action to compare with "
                           f"({counted(int(b.size), 'sample')})")
            elif off:
                reason += f", off {course.text} by {course.shift:+.3g} on average"
            else:
                reason += (f", but still on {course.text} ({course.shift:+.3g} from it on average): the forecast "
                           "breach is not shown averted")
            verdict = VerifyVerdict.PASS if off else VerifyVerdict.INCONCLUSIVE
        return Judgement(verdict=verdict, reason=reason, before=_stats(b), after=_stats(a))
    if course is not None:
        if course.shift > tol and course.t >= course.t_crit:
            return Judgement(verdict=VerifyVerdict.FAIL, before=_stats(b), after=_stats(a),
                             reason=f"worse than {course.text}: {spec.metric} {course.shift:+.3g} from it on "
                                    "average")
        return Judgement(verdict=VerifyVerdict.INCONCLUSIVE, before=_stats(b), after=_stats(a),
                         reason=f"still out of bounds{_bounds(spec)}, on {course.text} ({course.shift:+.3g} "
                                "from it on average): the breach came as forecast, the fix did not change it")
    worse = False
    p_value: float | None = None
    if b.size:
        directions = (["greater"] if above else []) + (["less"] if below else [])
        for direction in directions:
            delta = a.mean() - b.mean() if direction == "greater" else b.mean() - a.mean()
            if delta <= tol:
                continue
            if a.size >= MIN_SAMPLES_FOR_TEST and b.size >= MIN_SAMPLES_FOR_TEST:
                p = float(mannwhitneyu(a, b, alternative=direction).pvalue)
                p_value = p if p_value is None else min(p_value, p)
                if math.isnan(p) or p >= SIGNIFICANCE:
                    continue
            worse = True
    before_s, after_s = _stats(b), _stats(a, p_value)
    if worse:
        p_text = f", p={p_value:.3g}" if p_value is not None else ""
        return Judgement(
            verdict=VerifyVerdict.FAIL,
            reason=(
                f"worse than before: {spec.metric} mean {after_s['mean']:.2f} vs "
                f"{before_s['mean']:.2f}{p_text}"
            ),
            before=before_s,
            after=after_s,
        )
    return Judgement(
        verdict=VerifyVerdict.INCONCLUSIVE,
        reason=f"still out of bounds{_bounds(spec)}, not worse than before",
        before=before_s,
        after=after_s,
    )


def _finite(series: tuple[ArrayLike, ArrayLike]) -> tuple[np.ndarray, np.ndarray]:
    ts = np.asarray(series[0], dtype=float).ravel()
    values = np.asarray(series[1], dtype=float).ravel()
    keep = np.isfinite(ts) & np.isfinite(values)
    return ts[keep], values[keep]


@dataclass(frozen=True)
class _Course:
    """Where the after-samples lie against the course the metric was on before the action."""

    slope: float  # of the course, per second
    shift: float  # the after-samples' mean distance from it, positive toward the bound
    t: float  # shift / its standard error
    t_crit: float  # one-sided 95% point of Student's t (97.5% on a bent course: its bend was chosen)

    @property
    def text(self) -> str:
        return f"its course before the action ({self.slope * 60:+.3g}/min)"


def _course(before: tuple[ArrayLike, ArrayLike], after: tuple[ArrayLike, ArrayLike],
            spec: VerifySpec) -> _Course | None:
    """The course a metric was on before a preventive action, and the after-samples against it;
    None with fewer than 3 before-samples (or all at one instant). ``shift`` is the
    after-samples' mean distance from the course at their times, counted toward the bound
    (toward ``max`` when set, else toward ``min``), so a negative shift is away from the line;
    ``t`` divides it by the standard error of that difference (the before residuals' scale,
    both sample sizes and how far the course is extrapolated; floored at 1e-9 of the level, so
    a noiseless line's rounding is no departure).

    The course is where the metric was heading at the action, not where it began: a baseline
    reaching back to before a leak began would bend a straight line below it. When the
    before-samples bend (:func:`_bend`: flat, then a leak, say) the course is the last leg of a
    line with one bend fitted through all of them; otherwise it is the least-squares line
    through the later half of their span (all of them when fewer than 6)."""
    tb, vb = _finite(before)
    ta, va = _finite(after)
    if vb.size < 3 or float(np.ptp(tb)) == 0.0 or va.size == 0:
        return None
    order = np.argsort(tb, kind="stable")
    tb, vb = tb[order], vb[order]
    sign = 1.0 if spec.max is not None else -1.0
    t_end = float(tb.max())
    bend = _bend(tb, vb, t_end)
    if bend is None:
        if tb.size >= 6:
            recent = tb >= tb.min() + float(np.ptp(tb)) / 2
            tb, vb = tb[recent], vb[recent]
            if float(np.ptp(tb)) == 0.0:
                return None
        xb, xa = _legs(tb, None, t_end), _legs(ta, None, t_end)
    else:
        xb, xa = _legs(tb, bend, t_end), _legs(ta, bend, t_end)
    coef, *_ = np.linalg.lstsq(xb, vb, rcond=None)
    resid_b = vb - xb @ coef
    df = vb.size - xb.shape[1] - (bend is not None)  # the bend was chosen too: one more parameter
    s = math.sqrt(float((resid_b * resid_b).sum()) / df)
    shift = sign * float((va - xa @ coef).mean())
    at = xa.mean(axis=0)  # the after-samples' mean time, in the fit's terms
    se = s * math.sqrt(1.0 / va.size + float(at @ np.linalg.pinv(xb.T @ xb) @ at))
    se = max(se, 1e-9 * max(1.0, abs(float(vb.mean()))))
    # a bend is chosen as the best of many: halve the significance, so that choice does not
    # make a course that did not change look left more often than a straight one
    alpha = SIGNIFICANCE if bend is None else SIGNIFICANCE / 2
    return _Course(slope=float(coef[1]), shift=shift, t=shift / se,
                   t_crit=float(student_t.ppf(1.0 - alpha, df)))


MIN_LAST_LEG = 5  # before-samples on a bent course's last leg, at least (and 3 before the bend)


def _legs(t: np.ndarray, bend: float | None, t_end: float) -> np.ndarray:
    """The design matrix of a course: level at ``t_end``, slope, and with a ``bend`` a change of
    slope before it (zero from the bend on, so the course after the action is the last leg)."""
    columns = [np.ones_like(t), t - t_end]
    if bend is not None:
        columns.append(np.minimum(0.0, t - bend))
    return np.column_stack(columns)


def _bend(tb: np.ndarray, vb: np.ndarray, t_end: float) -> float | None:
    """Where the before-samples' course bends, or None when one straight line fits them as well.

    Each sample time that leaves at least 3 samples before it and :data:`MIN_LAST_LEG` from it
    on is tried as the bend of a continuous two-leg line; the best fit is kept when it is
    significantly (F test, 95%) better than one straight line through all the samples. A leak
    that began a few samples before a forecast is such a bend: a single line (or its later
    half, when the leak is younger than that) would draw its course too shallow, and a fix
    that did move the metric off the leak's real course would be judged still on it."""
    n = tb.size
    if n < 3 + MIN_LAST_LEG:
        return None
    one = _legs(tb, None, t_end)
    coef, *_ = np.linalg.lstsq(one, vb, rcond=None)
    sse_line = float(((vb - one @ coef) ** 2).sum())
    if sse_line <= 1e-18 * max(1.0, float((vb * vb).sum())):  # a straight line already, to rounding
        return None
    best: tuple[float, float] | None = None
    for bend in tb[3:n - MIN_LAST_LEG + 1]:
        x = _legs(tb, float(bend), t_end)
        coef, *_ = np.linalg.lstsq(x, vb, rcond=None)
        sse = float(((vb - x @ coef) ** 2).sum())
        if best is None or sse < best[0]:
            best = (sse, float(bend))
    if best is None:
        return None
    sse, bend = best
    df = n - 3
    if sse_line - sse <= float(f_dist.ppf(1.0 - SIGNIFICANCE, 1, df)) * sse / df:
        return None
    return bend


def _bounds(spec: VerifySpec) -> str:
    parts = []
    if spec.min is not None:
        parts.append(f"min {spec.min:g}")
    if spec.max is not None:
        parts.append(f"max {spec.max:g}{', the service threshold' if spec.threshold else ''}")
    text = ", ".join(parts)
    return f" ({text})" if text else ""
