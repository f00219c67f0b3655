"""Canary judgement: is the canary worse than its baseline? (Kayenta-style, fail closed.)

Each metric is compared canary against baseline with a one-sided Mann-Whitney U test in
the metric's direction of harm, plus an effect size (the relative change of the median)
that must exceed the metric's tolerance to count. A metric with fewer than
``min_samples`` on either side is NODATA, and NODATA counts as a failure: missing data
never passes. Metric verdicts are weighted by group into a score from 0 to 100:

* score >= ``pass_score`` -> PASS
* score >= ``marginal_score`` -> MARGINAL (a person, or the rollout plan, decides)
* else, or any metric marked ``critical`` failing -> FAIL

Every measured value is in the result, so a person can check the arithmetic.

The same judgement drives progressive rollouts (:func:`rollout`): at each step (say 1, 5,
25, 50, 100 percent) the traffic weight is set through a callable (an ``http`` or
``kubernetes`` actuator in practice), the plan waits, collects both sides, and judges;
a FAIL or a tripped rollback trigger rolls back to 0 and stops.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator
from scipy.stats import mannwhitneyu

from autonomic.errors import ConfigError, Problem, TerminalActuatorError

Direction = Literal["increase", "decrease", "either"]
MetricVerdict = Literal["pass", "fail", "nodata"]
Overall = Literal["pass", "marginal", "fail"]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class MetricRule(_Frozen):
    """One metric to judge. ``harm`` is the direction in which a change hurts."""

    metric: str = Field(min_length=1)
    harm: Direction = "increase"
    group: str = "default"
    tolerance: float = Field(default=0.0, ge=0)  # relative median change still acceptable (0.2 = 20%)
    min_samples: int = Field(default=10, ge=3)
    critical: bool = False


class JudgeConfig(_Frozen):
    """The judgement's rules (``--config J.yaml``)."""

    metrics: list[MetricRule] = Field(min_length=1)
    # group -> weight; absent groups weigh 1; finite (an infinite one made the score inf/inf = nan)
    groups: dict[str, Annotated[float, Field(ge=0, allow_inf_nan=False)]] = Field(default_factory=dict)
    alpha: float = Field(default=0.05, gt=0, lt=1)
    pass_score: float = Field(default=95.0, ge=0, le=100)
    marginal_score: float = Field(default=75.0, ge=0, le=100)

    @model_validator(mode="after")
    def _order(self) -> JudgeConfig:
        if self.marginal_score > self.pass_score:
            raise ValueError("marginal_score must not exceed pass_score")
        used = sorted({m.group for m in self.metrics})
        if all(self.groups.get(g, 1.0) == 0 for g in used):
            raise ValueError(f"groups: every group the metrics are in weighs 0 ({', '.join(used)}): the score "
                             "would always be 0 and every judgement fail")
        return self


class MetricResult(_Frozen):
    metric: str
    group: str
    verdict: MetricVerdict
    reason: str
    n_baseline: int
    n_canary: int
    baseline_median: float | None
    canary_median: float | None
    baseline_mean: float | None
    canary_mean: float | None
    effect: float | None  # relative change of the median, canary vs baseline
    p_value: float | None
    critical: bool


class CanaryResult(_Frozen):
    verdict: Overall
    score: float
    reason: str
    groups: dict[str, float]  # group -> score 0..100
    metrics: list[MetricResult]


def _relative(canary: float, baseline: float) -> float:
    scale = max(abs(baseline), 1e-9)
    return (canary - baseline) / scale


def judge_metric(rule: MetricRule, baseline: np.ndarray, canary: np.ndarray, alpha: float) -> MetricResult:
    b = baseline[np.isfinite(baseline)]
    c = canary[np.isfinite(canary)]
    common = {"metric": rule.metric, "group": rule.group, "n_baseline": int(b.size), "n_canary": int(c.size),
              "critical": rule.critical}
    if b.size < rule.min_samples or c.size < rule.min_samples:
        return MetricResult(verdict="nodata", reason=f"too few samples: baseline {b.size}, canary {c.size}, "
                            f"need {rule.min_samples} each (fails closed)", baseline_median=None,
                            canary_median=None, baseline_mean=None, canary_mean=None, effect=None, p_value=None,
                            **common)
    bm, cm = float(np.median(b)), float(np.median(c))
    effect = _relative(cm, bm)
    directions: list[Literal["greater", "less"]] = (
        ["greater"] if rule.harm == "increase" else ["less"] if rule.harm == "decrease" else ["greater", "less"])
    p_values = []
    for alt in directions:
        if np.ptp(np.concatenate([b, c])) == 0:
            p_values.append(1.0)  # identical constants: no difference at all
        else:
            p_values.append(float(mannwhitneyu(c, b, alternative=alt).pvalue))
    p = min(p_values) * len(p_values)  # Bonferroni for the two-sided case
    p = min(p, 1.0)
    harmful_effect = (effect > rule.tolerance if rule.harm == "increase"
                      else -effect > rule.tolerance if rule.harm == "decrease"
                      else abs(effect) > rule.tolerance)
    if p < alpha and harmful_effect:
        verdict: MetricVerdict = "fail"
        reason = (f"{rule.metric} median {bm:.4g} -> {cm:.4g} ({effect:+.1%}), beyond tolerance "
                  f"{rule.tolerance:.0%} in the harmful direction, p={p:.3g}")
    else:
        verdict = "pass"
        why = "no significant change" if p >= alpha else f"change {effect:+.1%} within tolerance or not harmful"
        reason = f"{rule.metric} median {bm:.4g} -> {cm:.4g}: {why} (p={p:.3g})"
    return MetricResult(verdict=verdict, reason=reason, baseline_median=bm, canary_median=cm,
                        baseline_mean=float(b.mean()), canary_mean=float(c.mean()), effect=effect, p_value=p,
                        **common)


def judge(baseline: Mapping[str, Sequence[float] | np.ndarray], canary: Mapping[str, Sequence[float] | np.ndarray],
          config: JudgeConfig) -> CanaryResult:
    """Judge every configured metric and weigh the groups into one verdict."""
    results = [
        judge_metric(rule, np.asarray(baseline.get(rule.metric, []), dtype=float),
                     np.asarray(canary.get(rule.metric, []), dtype=float), config.alpha)
        for rule in config.metrics
    ]
    groups: dict[str, list[MetricResult]] = {}
    for r in results:
        groups.setdefault(r.group, []).append(r)
    group_scores = {g: 100.0 * sum(r.verdict == "pass" for r in rs) / len(rs) for g, rs in groups.items()}
    weights = {g: config.groups.get(g, 1.0) for g in group_scores}
    total_weight = sum(weights.values())
    score = (sum(group_scores[g] * weights[g] for g in group_scores) / total_weight) if total_weight else 0.0
    critical_failed = [r for r in results if r.critical and r.verdict != "pass"]
    failed = [r.metric for r in results if r.verdict != "pass"]
    if critical_failed:
        verdict: Overall = "fail"
        reason = f"critical metric failed: {', '.join(r.metric for r in critical_failed)}"
    elif score >= config.pass_score:
        verdict, reason = "pass", f"score {score:.1f} >= {config.pass_score:g}"
    elif score >= config.marginal_score:
        verdict, reason = "marginal", f"score {score:.1f} between {config.marginal_score:g} and {config.pass_score:g}"
    else:
        verdict, reason = "fail", f"score {score:.1f} < {config.marginal_score:g}"
    if failed and verdict != "fail":
        reason += f" (not passing: {', '.join(failed)})"
    elif failed:
        reason += f"; not passing: {', '.join(failed)}"
    return CanaryResult(verdict=verdict, score=round(score, 3), reason=reason,
                        groups={g: round(s, 3) for g, s in group_scores.items()}, metrics=results)


def read_samples(path: Path) -> dict[str, list[float]]:
    """A CSV with columns ``metric,value`` (any others, such as timestamp, are ignored).
    Values that do not parse, NaN and inf are dropped (they are not data). A missing column
    or an unreadable file (not UTF-8 text included) is a ConfigError naming the file and column;
    a row the csv module cannot read (a cell beyond its 131,072 characters) names its line. A
    byte-order mark before the header is not part of its first column."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            fields = reader.fieldnames or []
            missing = [c for c in ("metric", "value") if c not in fields]
            if missing:
                raise ConfigError([Problem(str(path), 1, missing[0], f"missing column {missing[0]!r} "
                                           f"(columns: {', '.join(fields) or 'none'})")])
            out: dict[str, list[float]] = {}
            for row in reader:
                try:
                    value = float(row["value"])
                except (TypeError, ValueError):
                    continue
                if math.isfinite(value) and row["metric"]:
                    out.setdefault(row["metric"], []).append(value)
            return out
    except OSError as exc:
        raise ConfigError([Problem(str(path), None, "", f"cannot read: {exc.strerror or exc}")]) from None
    except UnicodeDecodeError as exc:
        raise ConfigError([Problem(str(path), None, "", f"cannot read: {exc}")]) from None
    except csv.Error as exc:
        raise ConfigError([Problem(str(path), reader.reader.line_num, "", f"cannot read this row: {exc}")]) from None


# --- progressive rollouts -------------------------------------------------------------------


class Trigger(_Frozen):
    """Roll back at once when the canary's metric crosses a line: an absolute ``max``
    (error rate over 1%) or a relative ``max_increase`` over the baseline (p95 latency +20%)."""

    metric: str
    max: float | None = None
    max_increase: float | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _one(self) -> Trigger:
        if (self.max is None) == (self.max_increase is None):
            raise ValueError("give exactly one of max or max_increase")
        return self


class RolloutPlan(_Frozen):
    steps: list[int] = Field(default_factory=lambda: [1, 5, 25, 50, 100])
    wait_s: float = Field(default=300.0, ge=0)
    triggers: list[Trigger] = Field(default_factory=list)
    judge: JudgeConfig

    @model_validator(mode="after")
    def _steps(self) -> RolloutPlan:
        if not self.steps or any(not 0 < s <= 100 for s in self.steps) or self.steps != sorted(set(self.steps)):
            raise ValueError("steps must be increasing percentages in (0, 100]")
        return self


class StepReport(_Frozen):
    weight: int
    verdict: Overall
    reason: str
    result: CanaryResult | None = None


def _tripped(plan: RolloutPlan, baseline: Mapping[str, Sequence[float]], canary: Mapping[str, Sequence[float]]
             ) -> str | None:
    for t in plan.triggers:
        c = np.asarray(canary.get(t.metric, []), dtype=float)
        c = c[np.isfinite(c)]
        if c.size == 0:
            continue
        if t.max is not None and float(np.median(c)) > t.max:
            return f"{t.metric} median {float(np.median(c)):.4g} over {t.max:g}"
        if t.max_increase is not None:
            b = np.asarray(baseline.get(t.metric, []), dtype=float)
            b = b[np.isfinite(b)]
            if b.size and _relative(float(np.percentile(c, 95)), float(np.percentile(b, 95))) > t.max_increase:
                return f"{t.metric} p95 up more than {t.max_increase:.0%} over the baseline"
    return None


def rollout(plan: RolloutPlan, set_weight: Callable[[int], None],
            collect: Callable[[], tuple[Mapping[str, Sequence[float]], Mapping[str, Sequence[float]]]],
            wait: Callable[[float], None]) -> Iterator[StepReport]:
    """Drive the plan step by step, yielding a report per step. A FAIL or a tripped trigger
    sets the weight back to 0 and stops; MARGINAL stops where it is for a person to decide.

    A step that cannot be judged (``set_weight`` or ``collect`` raises: the traffic API refused,
    the metrics are not there) fails closed, as a FAIL does: the weight is set back to 0 and the
    report says why. When that is refused too (the kill switch: ``set_weight`` raises while a
    pause holds, see :func:`actuator_weight_setter`), the step's own error is raised, noting the
    refusal, and the weight is left where it is, for a person."""
    for weight in plan.steps:
        try:
            set_weight(weight)
            wait(plan.wait_s)
            baseline, canary = collect()
        except Exception as exc:
            try:
                set_weight(0)
            except Exception as back:
                exc.add_note(f"not rolled back to 0 either: {back}")
                raise exc from back
            yield StepReport(weight=weight, verdict="fail",
                             reason=f"could not judge at {weight}%: {exc}; rolled back to 0")
            return
        tripped = _tripped(plan, baseline, canary)
        if tripped:
            set_weight(0)
            yield StepReport(weight=weight, verdict="fail", reason=f"rollback trigger: {tripped}; rolled back to 0")
            return
        result = judge(baseline, canary, plan.judge)
        if result.verdict == "fail":
            set_weight(0)
            yield StepReport(weight=weight, verdict="fail", reason=f"{result.reason}; rolled back to 0", result=result)
            return
        yield StepReport(weight=weight, verdict=result.verdict, reason=result.reason, result=result)
        if result.verdict == "marginal":
            return


def actuator_weight_setter(actuator: Any, target: Any, params_for: Callable[[int], Mapping[str, Any]],
                           key_prefix: str, *, paused: Callable[[], str | None]) -> Callable[[int], None]:
    """A ``set_weight`` for :func:`rollout` that moves traffic through a real actuator: for
    weight ``w`` it applies ``actuator.Params(**params_for(w))`` to ``target`` with the
    idempotency key ``<key_prefix>:<w>`` (an ``http`` admin endpoint that sets the canary's
    share, or ``kubernetes`` ``scale`` of the canary Deployment).

    This runs outside the engine's decisions (the caller's rollout is the decision), but not
    outside its kill switch: ``paused()`` is asked right before every apply (for example
    ``lambda: autonomic.engine.paused_reason(store, "shop")``), and while it gives a reason the
    weight is not moved, not even back to 0: :class:`~autonomic.errors.TerminalActuatorError`
    naming the pause stops the rollout where it is, for the person who paused."""

    def set_weight(weight: int) -> None:
        params = actuator.Params.model_validate(dict(params_for(weight)))
        snapshot = actuator.snapshot(target, params)
        reason = paused()  # the very last thing before the actuator
        if reason is not None:
            raise TerminalActuatorError(f"canary weight not set to {weight}: automation is paused: {reason}")
        actuator.apply(target, params, f"{key_prefix}:{weight}", snapshot)

    return set_weight
