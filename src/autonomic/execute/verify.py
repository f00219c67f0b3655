"""Did the action help? Compare a metric before and after it against the pattern's bounds. Pure."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike
from pydantic import BaseModel, ConfigDict
from scipy.stats import mannwhitneyu
from scipy.stats import t as student_t

from autonomic.model import VerifySpec, VerifyVerdict

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
       the before-samples' straight line extrapolated to their times. Otherwise (still on its
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
            reason=f"too little data: {a.size} of {spec.min_samples} samples",
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
        reason = f"{spec.metric} within bounds{_bounds(spec)} over {a.size} samples"
        verdict = VerifyVerdict.PASS
        if against_course:
            off = course is not None and course.shift < -tol and course.t <= -course.t_crit
            if course is None:
                reason += f", but there is no course before the action to compare with ({b.size} samples)"
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
    t_crit: float  # one-sided 95% point of Student's t

    @property
    def text(self) -> str:
        return f"its course before the action ({self.slope * 60:+.3g}/min)"


def _course(before: tuple[ArrayLike, ArrayLike], after: tuple[ArrayLike, ArrayLike],
            spec: VerifySpec) -> _Course | None:
    """The course a metric was on before a preventive action, and the after-samples against it;
    None with fewer than 3 before-samples (or all at one instant). The course is the
    least-squares line through the before-samples of the later half of their span (all of them
    when fewer than 6): a baseline reaching back to where a leak began would bend the line
    below where the metric was heading at the action. ``shift`` is the after-samples' mean
    distance from it at their times, counted toward the bound (toward ``max`` when set, else
    toward ``min``), so a negative shift is away from the line; ``t`` divides it by the
    standard error of that difference (the before residuals' scale, both sample sizes and how
    far the line is extrapolated; floored at 1e-9 of the level, so a noiseless line's rounding
    is no departure)."""
    tb, vb = _finite(before)
    ta, va = _finite(after)
    if tb.size >= 6:  # the course where it was heading at the action, not where it began
        recent = tb >= tb.min() + float(np.ptp(tb)) / 2
        tb, vb = tb[recent], vb[recent]
    if vb.size < 3 or float(np.ptp(tb)) == 0.0 or va.size == 0:
        return None
    sign = 1.0 if spec.max is not None else -1.0
    xb = tb - tb.mean()
    sxx = float((xb * xb).sum())
    slope = float((xb * (vb - vb.mean())).sum() / sxx)
    resid_b = vb - vb.mean() - slope * xb
    s = math.sqrt(float((resid_b * resid_b).sum()) / (vb.size - 2))
    shift = sign * float((va - vb.mean() - slope * (ta - tb.mean())).mean())
    se = s * math.sqrt(1.0 / va.size + 1.0 / vb.size + float(ta.mean() - tb.mean()) ** 2 / sxx)
    se = max(se, 1e-9 * max(1.0, abs(float(vb.mean()))))
    return _Course(slope=slope, shift=shift, t=shift / se,
                   t_crit=float(student_t.ppf(1.0 - SIGNIFICANCE, vb.size - 2)))


def _bounds(spec: VerifySpec) -> str:
    parts = []
    if spec.min is not None:
        parts.append(f"min {spec.min:g}")
    if spec.max is not None:
        parts.append(f"max {spec.max:g}{', the service threshold' if spec.threshold else ''}")
    text = ", ".join(parts)
    return f" ({text})" if text else ""
