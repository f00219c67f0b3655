"""Anomaly findings in the loop: the streaming detectors over the series store.

``services[].anomalies`` lists the metrics to watch for departures from their own baseline
(no threshold needed). Every spec with the same metric and detector settings joins one
*metric family*: one :class:`~autonomic.analyze.detectors.Ensemble` whose series are the
services watching that metric, updated with one vectorised step per ``step_s``.

Alignment: a family's steps are the boundaries of a fixed grid on the clock (multiples of
``step_s`` since the epoch), not ``step_s`` after the previous call, which the loop makes a
little late every time. A step at ``now`` takes, per series, the mean of the samples that
arrived since the previous step (``(now - step_s, now]`` for the first); a series with no new
sample is a missing sample for that step (its state is unchanged and it cannot alarm). Grid
boundaries passed with no call at all (the engine was down, or a tick took longer than
``step_s``) are missing samples for every series, up to :data:`MAX_FILL_STEPS`; past that the
learned baseline is too old to trust and the family warms up again. So the detectors' clock, the
step count, stays on the wall clock, and a seasonal member's ``period`` in steps is a period in
time (1,440 steps of 60 s is a day, after a restart too). When the clock is set back, a family
takes no step until the clock passes its last step again: the grid's steps are not counted
twice, so the phase stays right, at the cost of seeing nothing new for the length of the step.

The score is ``T / (T + 3)`` for a calibrated surprise of ``T`` standard deviations (see
:class:`~autonomic.analyze.detectors.Ensemble`): the default 0.65 is ``T`` ~ 5.6. Measured with
the default detector (200 series x 3,000 steps): Gaussian noise gave no score >= 0.6;
heavy-tailed noise (Student t, 3 degrees of freedom) gave one step >= 0.65 per ~2,400 series
steps and one >= 0.7 per ~15,000. A 30-sigma level shift scores ~0.7 at its onset.

A step whose score reaches ``score`` gives an ANOMALY finding (severity warning, confidence
= the score) with the evidence: the score, the calibrated surprise, each member's raw
statistic and the value. The default detector alarms only at the *onset* of a departure
(``onset_decay``), so a lasting change gives one finding, not one per step; thresholds and
forecasts cover states that persist. Scores are 0 while the calibration warms up (50 steps
by default: 50 minutes at one step a minute). The engine checkpoints each family's detector
state to its state folder (:meth:`AnomalyDetector.checkpoint`), so a restart does not start the
warm-up again; a family whose services or detector settings changed starts fresh.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from autonomic.analyze.causes import cause_of
from autonomic.analyze.detectors import Ensemble
from autonomic.model import Finding, FindingKind, Severity
from autonomic.protocols import SeriesReader

log = logging.getLogger(__name__)

# Grid steps with no call that a family fills with missing samples (a week at one step a minute);
# a longer gap starts the family afresh.
MAX_FILL_STEPS = 10_080

DEFAULT_DETECTOR: dict[str, Any] = {
    "members": [{"type": "ewma", "alpha": 0.05}, {"type": "cusum"}],
    "onset_decay": 0.99,
}


class AnomalySpec(BaseModel):
    """One metric of one service watched for anomalies (``services[].anomalies[]``)."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    metric: str = Field(min_length=1)
    score: float = Field(default=0.65, gt=0, lt=1)  # a step scoring at or above this is a finding
    step_s: float = Field(default=60.0, gt=0)  # one detector step per this long
    detector: dict[str, Any] = Field(default_factory=lambda: dict(DEFAULT_DETECTOR))  # Ensemble arguments

    @field_validator("detector")
    @classmethod
    def _builds(cls, v: dict[str, Any]) -> dict[str, Any]:
        try:
            Ensemble(**v)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"not a valid ensemble: {exc}") from exc
        return v


def _family_key(spec: AnomalySpec) -> str:
    """What makes specs share a family (and a checkpoint fit it): metric, step and detector."""
    return json.dumps([spec.metric, spec.step_s, spec.detector], sort_keys=True)


class _Family:
    """One metric family: its specs' services as the series of one ensemble."""

    def __init__(self, members: list[tuple[str, AnomalySpec]]) -> None:
        self.key = _family_key(members[0][1])
        self.metric = members[0][1].metric
        self.services = tuple(service for service, _ in members)
        self.specs = [spec for _, spec in members]
        self.step_s = self.specs[0].step_s
        self.levels = np.array([spec.score for spec in self.specs])
        self.detector = Ensemble(**self.specs[0].detector)
        self.next_step = -math.inf
        self.last_step = -math.inf

    def due(self, now: float) -> bool:
        """Whether ``now`` has reached the next grid boundary."""
        return now >= self.next_step

    def step(self, series: SeriesReader, now: float) -> list[Finding]:
        """The step of the grid boundary at or before ``now``, after the boundaries passed
        without a call as missing samples (or a fresh detector past :data:`MAX_FILL_STEPS`)."""
        cell = math.floor(now / self.step_s)
        self.next_step = (cell + 1) * self.step_s
        if math.isfinite(self.last_step):
            missed = cell - math.floor(self.last_step / self.step_s) - 1
            if missed > MAX_FILL_STEPS:
                log.warning("anomaly family of %s: no step for %d steps of %g s; its baseline is too old, "
                            "it warms up again", self.metric, missed, self.step_s)
                self.detector = Ensemble(**self.specs[0].detector)
            elif missed > 0 and self.detector.n_series is not None:
                gap = np.full(len(self.services), np.nan)
                for _ in range(missed):
                    self.detector.update(gap)
        since = self.last_step if math.isfinite(self.last_step) else now - self.step_s
        x = series.aligned(self.metric, self.services, since, now)
        self.last_step = now
        scores = self.detector.update(x)
        findings = []
        for i in np.flatnonzero(scores >= self.levels).tolist():
            score = float(scores[i])
            surprise = float(self.detector.last_raw[i])
            raw = {m.name: round(float(m.last_raw[i]), 4) for m in self.detector.members}
            findings.append(Finding(
                service=self.services[i], metric=self.metric, kind=FindingKind.ANOMALY,
                cause=cause_of(self.metric), severity=Severity.WARNING, confidence=min(score, 1.0), ts=now,
                value=float(x[i]),
                summary=f"{self.metric} = {x[i]:.4g} left its usual range (anomaly score {score:.2f}, "
                        f"{surprise:.1f} standard deviations beyond this series' usual surprise)",
                evidence={"score": round(score, 4), "surprise": round(surprise, 4), "members": raw,
                          "step_s": self.step_s, "detector": "ensemble"},
            ))
        return findings


class AnomalyDetector:
    """Detector ``anomaly``: ANOMALY findings from the streaming detectors for the
    ``services[].anomalies`` specs, one ensemble per metric family (see the module docstring)."""

    name = "anomaly"

    def __init__(self, specs: Mapping[str, Sequence[AnomalySpec]]) -> None:
        groups: dict[str, list[tuple[str, AnomalySpec]]] = {}
        for service, service_specs in specs.items():
            for spec in service_specs:
                groups.setdefault(_family_key(spec), []).append((service, spec))
        self.families = [_Family(members) for members in groups.values()]

    def checkpoint(self) -> dict[str, Any]:
        """Per family: its services, clock and the ensemble's state (JSON-ready)."""
        def finite(t: float) -> float | None:
            return t if math.isfinite(t) else None

        return {"families": [{"key": f.key, "services": list(f.services), "last_step": finite(f.last_step),
                              "next_step": finite(f.next_step), "detector": f.detector.state_dict()}
                             for f in self.families]}

    def restore(self, state: dict[str, Any]) -> list[str]:
        """Take back the families whose metric, settings and services are unchanged."""
        if not isinstance(state, dict) or not isinstance(state.get("families"), list):
            raise ValueError("anomaly state: 'families' must be a list")
        mine = {f.key: f for f in self.families}
        notes = []
        for saved in state["families"]:
            if not isinstance(saved, dict):
                raise ValueError("anomaly state: each family must be an object")
            family = mine.get(saved.get("key", ""))
            if family is None:
                notes.append(f"anomaly family {saved.get('key')!r} is no longer configured")
                continue
            if saved.get("services") != list(family.services):
                notes.append(f"anomaly family of {family.metric}: its services changed; it warms up again")
                continue
            try:
                detector = Ensemble.from_state(saved["detector"])
                if not isinstance(detector, Ensemble):
                    raise ValueError("not an ensemble")
                if detector.n_series not in (None, len(family.services)):
                    raise ValueError(f"{detector.n_series} series for {len(family.services)} services")
                last_step, next_step = (-math.inf if saved[k] is None else float(saved[k])
                                        for k in ("last_step", "next_step"))
            except (KeyError, TypeError, ValueError) as exc:
                raise ValueError(f"anomaly state of {family.metric}: {exc}") from exc
            family.detector, family.last_step, family.next_step = detector, last_step, next_step
        return notes

    def detect(self, series: SeriesReader, now: float) -> Sequence[Finding]:
        findings: list[Finding] = []
        for family in self.families:
            if family.due(now):
                findings += family.step(series, now)
        return findings
