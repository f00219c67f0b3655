"""The nouns of the loop: plain, typed, frozen values with no I/O.

A stage hands the next one these and nothing else (see shared/DESIGN.md, "The nouns").
Every noun that the store keeps is a frozen pydantic model so it validates on the way in,
serialises with ``model_dump(mode="json")`` and round-trips unchanged. Change a noun with
``noun.model_copy(update={...})``; never mutate one in place.

Metric and cause vocabulary shared by every stage
-------------------------------------------------
Per-service metric names (``Sample.metric``):

``up``                1 when the supervised process is alive (process source), else 0
``cpu_percent``       process CPU, percent of one core
``rss_bytes``         process resident memory
``memory_percent``    rss as percent of the service's memory limit (host total when unset)
``open_fds``, ``threads``
``probe_ok``          1 when the HTTP health probe answered with the expected status, else 0
``probe_latency_ms``  the probe's round trip
``error_rate``        ratio in [0, 1] of failed requests (from the service's own metrics)
``latency_ms``        request latency the service reports (from the service's own metrics)
``pool_in_use``, ``pool_size``, ``pool_utilization`` (percent)
anything else a Prometheus endpoint exposes, under the name its ``rename`` map gives.

The pseudo-service ``host`` carries ``cpu_percent``, ``memory_percent``, ``disk_percent``,
``load1``.

A finding's ``cause`` is the grouping key of incidents (one open incident per service and
cause): ``down`` (up/probe_ok), ``memory``, ``cpu``, ``disk``, ``pool``, ``errors``,
``latency``, ``availability``, ``fds``, ``error_budget_burn`` (a goal spending its error budget
too fast: see :class:`Goal`), or ``metric:<name>`` for anything else.
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from autonomic.printable import counted

# what the state of a unit a systemd, docker or kubernetes binding names is sampled as, per actuator
# type (monitor/unitstate.py samples them; ServiceSpec.may_report and diagnosis count them)
UNIT_METRICS: MappingProxyType[str, tuple[str, ...]] = MappingProxyType({
    "systemd": ("up", "unit_stopped"),
    "docker": ("up", "unit_stopped"),
    "kubernetes": ("up", "unit_stopped", "available_ratio", "rollout_complete"),
})
# what autonomic's supervisor samples of a service a ``process`` binding runs (monitor/host.py's
# ProcessSource; ``open_fds`` where the system counts them)
PROCESS_METRICS = ("up", "unit_stopped", "cpu_percent", "rss_bytes", "memory_percent", "open_fds", "threads")
# how a Prometheus counter's name ends (``*_total``; a summary's or histogram's ``_count``, ``_sum``,
# ``_bucket``): its value only grows, so neither a trend of it nor a goal on it means anything
COUNTER_SUFFIXES = ("_total", "_count", "_sum", "_bucket")


def new_id() -> str:
    """A fresh random identifier (32 hex digits); unique across replicas."""
    return uuid.uuid4().hex


class Frozen(BaseModel):
    """Base of every noun: immutable, strict about unknown fields."""

    model_config = ConfigDict(frozen=True, extra="forbid")


# --- enumerations -------------------------------------------------------------------------


class HealthState(StrEnum):
    HEALTHY = "HEALTHY"
    DEGRADED = "DEGRADED"
    CRITICAL = "CRITICAL"
    FAILING = "FAILING"

    @property
    def rank(self) -> int:
        """0 for HEALTHY up to 3 for FAILING; compare states by rank."""
        return _HEALTH_RANK[self]


_HEALTH_RANK = {
    HealthState.HEALTHY: 0,
    HealthState.DEGRADED: 1,
    HealthState.CRITICAL: 2,
    HealthState.FAILING: 3,
}


class Severity(StrEnum):
    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        return {"info": 0, "warning": 1, "critical": 2}[self.value]


class FindingKind(StrEnum):
    THRESHOLD = "threshold"  # a metric is past its threshold now
    FORECAST = "forecast"  # a metric will pass its threshold at a predicted time
    ANOMALY = "anomaly"  # a metric moved away from its baseline
    STATE = "state"  # a service is down / failing its probe
    ALERT = "alert"  # an external alert (Alertmanager)


class IncidentState(StrEnum):
    OPEN = "open"
    DIAGNOSED = "diagnosed"
    AWAITING_APPROVAL = "awaiting_approval"
    ACTING = "acting"
    VERIFYING = "verifying"
    RESOLVED = "resolved"
    ROLLED_BACK = "rolled_back"
    ESCALATED = "escalated"
    EXPIRED = "expired"

    @property
    def terminal(self) -> bool:
        return self in _TERMINAL_INCIDENT


_TERMINAL_INCIDENT = {
    IncidentState.RESOLVED,
    IncidentState.ROLLED_BACK,
    IncidentState.ESCALATED,
    IncidentState.EXPIRED,
}


class Resolution(StrEnum):
    """How an incident ended, in the words an operator uses."""

    RESOLVED = "resolved"  # it broke, we fixed it, verification passed
    PREVENTED = "prevented"  # a forecast breach was averted before it happened
    ROLLED_BACK = "rolled_back"  # our fix hurt and was undone
    ESCALATED = "escalated"  # handed to a person
    FAILED = "failed"  # we tried and could not fix it
    CLEARED = "cleared"  # the symptom went away on its own, nothing was done


class Autonomy(StrEnum):
    OBSERVE = "observe"  # record only
    SUGGEST = "suggest"  # tell a person what we would do
    APPROVE = "approve"  # act once a person approves
    AUTO = "auto"  # act, then tell

    @property
    def rank(self) -> int:
        return ["observe", "suggest", "approve", "auto"].index(self.value)


class Verdict(StrEnum):
    APPROVED = "approved"
    DENIED = "denied"
    NEEDS_APPROVAL = "needs_approval"


class ActionState(StrEnum):
    PENDING = "pending"  # intent and undo snapshot written; nothing done yet
    RUNNING = "running"  # the actuator was called; the result is not yet recorded
    VERIFYING = "verifying"  # applied; watching the target over the window
    SUCCEEDED = "succeeded"
    FAILED = "failed"  # the actuator failed, or verification found no improvement
    ROLLING_BACK = "rolling_back"
    VERIFYING_UNDO = "verifying_undo"  # undone; watching whether the undo restored health
    ROLLED_BACK = "rolled_back"
    ESCALATED = "escalated"  # we cannot tell what happened; a person must look
    CANCELLED = "cancelled"  # never started (kill switch, pause, denial)

    @property
    def terminal(self) -> bool:
        return self in _TERMINAL_ACTION


_TERMINAL_ACTION = {
    ActionState.SUCCEEDED,
    ActionState.FAILED,
    ActionState.ROLLED_BACK,
    ActionState.ESCALATED,
    ActionState.CANCELLED,
}


class VerifyVerdict(StrEnum):
    PASS = "pass"
    FAIL = "fail"
    INCONCLUSIVE = "inconclusive"


class Level(StrEnum):
    INFO = "info"
    ALERT = "alert"
    APPROVAL_REQUESTED = "approval_requested"

    @property
    def rank(self) -> int:
        return {"info": 0, "alert": 1, "approval_requested": 2}[self.value]


# --- monitor -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Sample:
    """One observation. Hot path, so a slotted dataclass rather than a pydantic model."""

    service: str
    metric: str
    ts: float
    value: float


# --- analyze -------------------------------------------------------------------------------


class Finding(Frozen):
    id: str = Field(default_factory=new_id)
    service: str
    metric: str
    kind: FindingKind
    cause: str
    severity: Severity
    confidence: float = Field(ge=0.0, le=1.0)
    ts: float
    value: float | None = None
    threshold: float | None = None
    summary: str
    evidence: dict[str, Any] = Field(default_factory=dict)
    incident_id: str | None = None  # set by correlation before the finding is stored


class Incident(Frozen):
    id: str = Field(default_factory=new_id)
    service: str
    cause: str
    state: IncidentState = IncidentState.OPEN
    severity: Severity
    kind: FindingKind  # kind of the finding that opened it (forecast -> "prevented" when fixed)
    opened_at: float
    updated_at: float
    last_finding_at: float
    finding_count: int = 1
    summary: str
    resolution: Resolution | None = None
    closed_at: float | None = None
    # when it last became ESCALATED (None: never, or written before this was kept); updated_at
    # cannot say, it moves with every finding a lasting symptom brings
    escalated_at: float | None = None

    def escalated_since(self, now: float) -> float:
        """When this incident, escalated at ``now``, became ESCALATED: ``now``, unless it already
        was (a decision made again, say while a pause holds it, is not a second escalation)."""
        if self.state == IncidentState.ESCALATED and self.escalated_at is not None:
            return self.escalated_at
        return now

    @property
    def headline(self) -> str:
        """``service: summary`` for titles and lists, naming the service once when the summary
        already starts with it (a threshold summary reads "web: error_rate 0.18 >= 0.05 ...")."""
        s, name = self.summary, self.service
        return s if s.startswith(name) and s[len(name):][:1] in (":", " ") else f"{name}: {s}"


# --- plan ----------------------------------------------------------------------------------


class StepSpec(Frozen):
    """One step of a multi-step action: an actuator type and its validated parameters.
    Its compensation is that actuator's ``undo``. Every step acts on the action's target."""

    name: str  # "scale", "restart", ...: shown in the journal as "step 2/3 config:scale"
    type: str
    params: dict[str, Any] = Field(default_factory=dict)


class ActionSpec(Frozen):
    """What to do: an actuator type, its validated parameters, and the service it acts on.

    A multi-step action (a workflow, see ``execute/workflow.py``) lists its steps in
    ``steps`` (2..10); ``type`` and ``params`` then repeat the *first* step, so code that
    reads only ``type`` (bindings, policy per action type, breakers) sees a real actuator type.
    """

    type: str
    target: str
    params: dict[str, Any] = Field(default_factory=dict)
    steps: list[StepSpec] = Field(default_factory=list)  # empty: a single-step action

    def describe(self) -> str:
        """``process restart``, ``shell runbook disk-cleanup``, or the type alone."""
        op = self.params.get("op")
        if op:
            return f"{self.type} {op}"
        runbook = self.params.get("runbook")
        return f"{self.type} runbook {runbook}" if runbook else self.type


class VerifySpec(Frozen):
    """How to judge an action: a metric that must be within bounds over a watch window.

    ``max: threshold`` (in a pattern) is the service's own threshold for ``metric`` (its
    ``thresholds``): kept as ``threshold="max"`` with ``max`` unset, and set to the service's number
    by :meth:`with_line` when an action is prepared (the action's spec keeps ``threshold="max"``, to
    say where its number came from). ``min: threshold`` likewise, the service's floor
    (``thresholds.minimums``)."""

    metric: str
    # watched instead of ``metric`` on a service that samples no ``metric`` but this (a unit's
    # ``up`` where no probe samples ``probe_ok``); chosen when an action is prepared, whose spec
    # then names the metric watched and no fallback (see ``Engine._verify_for``)
    fallback_metric: str | None = None
    # a metric that reads 1 once the action has taken effect (a workload's ``rollout_complete``): the
    # watch window starts at its first such sample after the action, ``delay_s`` after it at the
    # latest (then the wait is a maximum, not a guess)
    wait_for: str | None = None
    max: float | None = None
    min: float | None = None
    window_s: float = Field(default=60.0, gt=0)
    delay_s: float = Field(default=0.0, ge=0)  # grace after the action before watching
    min_samples: int = Field(default=3, ge=1)
    tolerance: float = Field(default=0.0, ge=0)  # how much worse than before still counts as not worse
    threshold: Literal["max", "min"] | None = None  # that bound is the service's line for metric

    @model_validator(mode="before")
    @classmethod
    def _threshold_bound(cls, data: Any) -> Any:
        """``max: threshold`` -> ``threshold: max`` (the number is the service's, known later);
        ``min: threshold`` -> ``threshold: min``; not both."""
        if not isinstance(data, dict):
            return data
        named = [k for k in ("max", "min") if isinstance(data.get(k), str) and data[k].strip() == "threshold"]
        if len(named) == 2:
            raise ValueError("max and min: a metric has one line, a maximum or a floor: give a number for the other")
        if named:
            data = {**data, named[0]: None, "threshold": named[0]}
        return data

    def with_line(self, line: float) -> VerifySpec:
        """This spec with the bound ``threshold`` names set to ``line``, the service's line for
        ``metric``; itself when its bounds are numbers already."""
        if self.threshold is None or getattr(self, self.threshold) is not None:
            return self
        return self.model_copy(update={self.threshold: float(line)})


class Symptom(Frozen):
    """A condition on the incident's findings of one metric: it holds when at least one of them
    meets every bound given. ``min``/``max`` bound the finding's value; ``trend`` asks for a
    forecast finding whose fitted slope rises or falls, with ``min_r2`` and ``eta_within_s``
    (the predicted breach at most this far ahead) when given."""

    metric: str = Field(min_length=1)
    min: float | None = None
    max: float | None = None
    trend: Literal["rising", "falling"] | None = None
    min_r2: float | None = Field(default=None, ge=0, le=1)
    eta_within_s: float | None = Field(default=None, gt=0)


class AfterActions(Frozen):
    """A condition on what was already done to the service: at least ``count`` actions of the
    patterns named in ``patterns`` on it within the last ``within_s`` seconds (a cancelled one is
    not counted). ``{patterns: [process-down-restart], count: 3, within_s: 1800}`` is a crash
    loop: the service is down again although it was restarted three times in half an hour."""

    patterns: list[str] = Field(min_length=1, max_length=10)
    count: int = Field(ge=1)
    within_s: float = Field(gt=0)


class ConfigChange(Frozen):
    """A commit to a service's bound config file that is still in effect and was made outside the
    engine (a person, a deploy): what ``match.after_change_s`` measures from and what
    ``config revert_last`` reverts. The engine's own changes (commits carrying its
    ``Autonomic-Action`` trailer) are judged by their own verification, never taken for one."""

    commit: str
    at: float  # epoch seconds (the commit's time, by the engine's clock)
    author: str = ""  # "Name <email>"
    subject: str = ""

    def describe(self) -> str:
        """``1a2b3c4d5e6f "raise the timeout" by Ann <ann@example>``"""
        return f"{self.commit[:12]} {self.subject!r} by {self.author or 'unknown author'}"


class PatternMatch(Frozen):
    """What a pattern matches. Every field given must hold; absent fields match anything."""

    cause: str | None = None
    kind: FindingKind | None = None
    metric: str | None = None
    service_type: str | None = None
    min_severity: Severity | None = None
    # only when the service's config was changed this recently outside the engine (ConfigChange)
    after_change_s: float | None = None
    after_actions: AfterActions | None = None  # only when these patterns already acted this often
    symptoms: list[Symptom] = Field(default_factory=list, max_length=10)  # every one must hold


class Pattern(Frozen):
    id: str
    version: int = 1
    description: str = ""
    match: PatternMatch
    action: ActionSpec | None  # target is "{service}" in YAML; None = escalate only
    prior_confidence: float = Field(ge=0.0, le=1.0)
    rollback_safe: bool = True
    verify: VerifySpec | None = None  # None only for a pattern without an action (a hand-over)
    source: str = ""  # file:line where it was defined
    # The escalation chain: when this pattern's action fails (or is rolled back and the undo
    # restored health), try these patterns' actions in order on the same incident, each
    # through every gate again; when they are spent, page a person.
    then: list[str] = Field(default_factory=list)

    @property
    def remedy_fingerprint(self) -> str:
        """A short hash of what the pattern does and when: its version, match, action, verification,
        rollback safety and chain; not its description, prior confidence or file. The autonomy it
        earns counts only the record made since this last changed (see Engine.start). Fields at
        their defaults are left out, so a later autonomic adding a field (its default doing what
        was done before) changes no pattern's fingerprint."""
        doc = self.model_dump(mode="json", include={"version", "match", "action", "verify", "rollback_safe", "then"},
                              exclude_defaults=True)
        return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:12]


class Candidate(Frozen):
    pattern_id: str
    confidence: float
    reasons: list[str] = Field(default_factory=list)


class Diagnosis(Frozen):
    id: str = Field(default_factory=new_id)
    incident_id: str
    ts: float
    candidates: list[Candidate] = Field(default_factory=list)
    pattern_id: str | None = None
    action: ActionSpec | None = None
    confidence: float = 0.0
    rationale: str = ""
    # root-cause ranking over the dependency graph (services with depends_on only):
    root_causes: list[str] = Field(default_factory=list)  # the services it names as root causes
    impacted_by: list[str] = Field(default_factory=list)  # this service's trouble is explained by these
    rca: list[dict[str, Any]] = Field(default_factory=list)  # the ranking, best first, with evidence
    # a down service whose own process (or unit) is seen dead: how it ended ("web's own process
    # exited with code 3"); its own fault, never held back as a dependency's echo
    own_failure: str | None = None
    # with ``own_failure``: what it depends on that was down at the time. Its restart waits for
    # their fix (bounded by that fix's verification and settle time), and its action does not
    # count toward a crash loop (``match.after_actions``)
    dependencies_down: list[str] = Field(default_factory=list)


class GateResult(Frozen):
    gate: str
    passed: bool
    reason: str
    # a gate that does not deny outright but asks a person (autonomy "approve", a window
    # that requires approval, a confidence below the threshold but not below the policy's
    # floor) sets needs_approval; passed is then False
    needs_approval: bool = False

    def said(self) -> str:
        """The reason as one clause of a sentence: named by its gate (``rate_limit: limit
        reached: ...``) unless it already begins with the gate's name (``confidence 0.42 below
        threshold 0.60``, not ``confidence: confidence 0.42 ...``)."""
        name = self.gate.replace("_", " ")
        return self.reason if self.reason.startswith(name) else f"{self.gate}: {self.reason}"


# the gate of a decision recording a person's approval that was never acted on because the
# trouble cleared on its own first (see Decision.person_evidence)
TROUBLE_CLEARED = "trouble_cleared"


class Decision(Frozen):
    id: str = Field(default_factory=new_id)
    incident_id: str
    diagnosis_id: str
    ts: float
    verdict: Verdict
    gates: list[GateResult] = Field(default_factory=list)
    action: ActionSpec | None = None
    decided_by: str = "engine"
    comment: str = ""
    pattern_id: str | None = None
    # When nothing was done only because of shadow mode or an observe/suggest autonomy level:
    # the verdict every other gate gave ("would have acted" is APPROVED).
    shadow_verdict: Verdict | None = None
    # A needs_approval decision's request expires then (wall clock): ``engine.approval_ttl_s`` of
    # the engine that asked, after ``ts``, recorded with the request so that the CLI, the API and
    # every replica judge an answer by it, whatever TTL their own config says now. None for other
    # verdicts, and for requests recorded before migration 0010 (they expire by the reader's TTL).
    expires_at: float | None = None

    @property
    def person_said_no(self) -> bool:
        """A person's answer that was no: a denial with no gates (the person ruled). A person's
        approval runs the gates again, so whatever they then said, the person said yes."""
        return self.verdict == Verdict.DENIED and not self.gates

    @property
    def never_acted_on(self) -> bool:
        """A person's approval the engine did not act on because the trouble had cleared on its
        own first (a blip): recorded as it is, a denied decision whose one gate is
        :data:`TROUBLE_CLEARED`."""
        return self.verdict == Verdict.DENIED and any(g.gate == TROUBLE_CLEARED for g in self.gates)

    @property
    def person_evidence(self) -> str | None:
        """What this decision says to the autonomy ladder about a person's trust in the remedy:
        ``"fail"`` for a person's denial, ``"pass"`` for a person's approval (whatever the gates
        then said), None for the engine's own decisions and for an approval never acted on
        because the trouble cleared first (it says nothing of the remedy: it ran nowhere, and
        counting it would let a pattern whose troubles heal themselves climb the ladder on
        blips; nor did the person say no)."""
        if self.decided_by == "engine" or self.never_acted_on:
            return None
        return "fail" if self.person_said_no else "pass"


# --- execute -------------------------------------------------------------------------------


class StepRecord(Frozen):
    name: str  # "apply", "undo", "verify", ...
    ok: bool
    started_at: float
    finished_at: float
    detail: dict[str, Any] = Field(default_factory=dict)


class Action(Frozen):
    id: str = Field(default_factory=new_id)
    decision_id: str
    incident_id: str
    service: str
    type: str
    params: dict[str, Any] = Field(default_factory=dict)
    idempotency_key: str
    state: ActionState = ActionState.PENDING
    undo: dict[str, Any] = Field(default_factory=dict)  # snapshot needed to undo it
    steps: list[StepRecord] = Field(default_factory=list)
    # a multi-step action's steps (ActionSpec.steps; ``steps`` above is the journal); ``type``
    # and ``params`` then repeat the first step. Empty: a single-step action.
    workflow: list[StepSpec] = Field(default_factory=list)
    pattern_id: str | None = None
    verify: VerifySpec | None = None
    rollback_safe: bool = True
    created_at: float
    updated_at: float
    applied_at: float | None = None
    verify_until: float | None = None
    error: str | None = None


class Outcome(Frozen):
    id: str = Field(default_factory=new_id)
    action_id: str
    incident_id: str
    ts: float
    verdict: VerifyVerdict
    reason: str
    before: dict[str, Any] = Field(default_factory=dict)
    after: dict[str, Any] = Field(default_factory=dict)
    rolled_back: bool = False
    undo_verdict: VerifyVerdict | None = None  # after a rollback: did the undo restore health?
    duration_s: float = 0.0


# --- goals ---------------------------------------------------------------------------------

# what a service or a goal may be called: lowercase, digits, _ and -, first a letter or digit, 1-63 long
NAME = r"^[a-z0-9][a-z0-9_-]{0,62}$"


def check_name(v: str, what: str) -> str:
    """``v`` when it is a valid ``what`` name (:data:`NAME`), else ValueError saying the rule."""
    if not re.fullmatch(NAME, v):
        raise ValueError(f"{v!r} is not a {what} name: lowercase letters, digits, '-' and '_', "
                         "starting with a letter or digit, at most 63 characters")
    return v


class BurnRule(Frozen):
    """One multiwindow burn-rate rule of a goal (Google SRE workbook, "Alerting on SLOs"): it
    fires when the error budget burns at ``factor`` times the sustainable rate or more over
    both the last ``long_s`` and the last ``short_s`` seconds (the short window says the burn
    is still going on, so a burn that stopped stops firing soon); ``severity`` page or ticket."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)
    long_s: float = Field(gt=0)
    short_s: float = Field(gt=0)
    factor: float = Field(gt=0)
    severity: Literal["page", "ticket"]

    @model_validator(mode="after")
    def _short_inside_long(self) -> BurnRule:
        if self.short_s >= self.long_s:
            raise ValueError(f"short_s ({self.short_s:g}) must be shorter than long_s ({self.long_s:g})")
        return self


# The workbook's rules for a 30-day objective: 2% of the budget in an hour and 5% in six
# hours page, 10% in three days opens a ticket.
DEFAULT_BURN_RULES: tuple[BurnRule, ...] = (
    BurnRule(long_s=3600.0, short_s=300.0, factor=14.4, severity="page"),
    BurnRule(long_s=6 * 3600.0, short_s=1800.0, factor=6.0, severity="page"),
    BurnRule(long_s=3 * 86_400.0, short_s=6 * 3600.0, factor=1.0, severity="ticket"),
)


class Goal(Frozen):
    """A service-level objective (``services[].goals[]``): over the last ``window_days``, at
    least ``target`` of the samples of ``metric`` must be good. A sample is good when its value
    is at least ``min`` and at most ``max`` (whichever are given): ``probe_ok`` with ``min: 1``
    is availability, ``latency_ms`` with ``max: 300`` a latency objective. The error budget is
    the ``1 - target`` of samples that may be bad; ``rules`` say how fast a burn of it is
    trouble coming (default: :data:`DEFAULT_BURN_RULES` that fit in the window). ``priority``
    ``ticket`` keeps every burn of this goal at severity warning; ``page`` (the default) lets a
    page rule raise it to critical. ``step_s`` is the width of the finest time bucket the
    budget is counted in (the short windows are measured to within it)."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)
    name: str
    metric: str = Field(min_length=1)
    min: float | None = None
    max: float | None = None
    target: float = Field(gt=0, lt=1)
    window_days: float = Field(default=30.0, gt=0, le=366)
    priority: Literal["page", "ticket"] = "page"
    rules: list[BurnRule] = Field(default_factory=list, max_length=10)
    step_s: float = Field(default=60.0, gt=0, le=3600)

    @property
    def window_s(self) -> float:
        return self.window_days * 86_400.0

    def good(self, value: float) -> bool:
        """Whether one sample of ``metric`` with ``value`` is good (NaN never is)."""
        return (value == value and (self.min is None or value >= self.min)
                and (self.max is None or value <= self.max))

    def describe(self) -> str:
        """``99.9% of probe_ok >= 1 over 30 days``"""
        bounds = " and ".join(b for b in (None if self.min is None else f">= {self.min:g}",
                                          None if self.max is None else f"<= {self.max:g}") if b)
        return f"{self.target * 100:g}% of {self.metric} {bounds} over {counted(self.window_days, 'day')}"

    @model_validator(mode="before")
    @classmethod
    def _default_rules(cls, data: Any) -> Any:
        """No ``rules``: the default rules whose long window fits in the goal's window."""
        if isinstance(data, dict) and data.get("rules") is None:
            days = data.get("window_days", 30.0)
            window = float(days) * 86_400.0 if isinstance(days, int | float) else None
            data = {**data, "rules": [r.model_dump() for r in DEFAULT_BURN_RULES
                                      if window is None or r.long_s <= window]}
        return data

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return check_name(v, "goal")

    @field_validator("metric")
    @classmethod
    def _not_a_counter(cls, v: str) -> str:
        if v.endswith(COUNTER_SUFFIXES):
            raise ValueError(f"{v!r} is named like a Prometheus counter: a counter only grows, so one sample of it "
                             "is neither good nor bad; give the goal a ratio or a rate instead (a promql metric "
                             f"such as rate({v}[5m]), or errors over requests)")
        return v

    @model_validator(mode="after")
    def _sound(self) -> Goal:
        if self.min is None and self.max is None:
            raise ValueError("give min or max (or both): what makes a sample of the metric good")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min:g}) is above max ({self.max:g}): no sample could be good")
        if not self.rules:
            raise ValueError(f"rules: no burn rule for a window of {counted(self.window_days, 'day')} (the default "
                             "rules that fit in the window are taken when rules is not given; the shortest looks back "
                             "an hour): give rules")
        for i, rule in enumerate(self.rules):
            if rule.long_s > self.window_s:
                raise ValueError(f"rules[{i}].long_s: {rule.long_s:g} s is longer than the goal's window "
                                 f"({self.window_s:g} s)")
            if rule.short_s < self.step_s:
                raise ValueError(f"rules[{i}].short_s: {rule.short_s:g} s is shorter than step_s "
                                 f"({self.step_s:g} s), the finest bucket the budget is counted in")
        return self


# --- knowledge / people --------------------------------------------------------------------


class AuditEvent(Frozen):
    seq: int
    ts: float
    actor: str
    kind: str  # e.g. "incident.opened", "decision.made", "action.running", "pause.set"
    subject: str  # id of what it is about, or a service name
    data: dict[str, Any] = Field(default_factory=dict)
    prev_hash: str
    hash: str


class Notification(Frozen):
    """Something people are told. ``id`` is the same on every delivery of one notification (a
    notifier's retry, a later engine sending what an earlier one kept and may have delivered), so
    a receiver can drop a duplicate; the engine gives one to every notification it sends."""

    level: Level
    title: str
    body: str = ""
    ts: float
    service: str | None = None
    incident_id: str | None = None
    id: str | None = None
