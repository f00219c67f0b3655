"""The safety policy: the ``policy:`` block of autonomic.yaml, and what it says for one action.

Settings are given at four levels, most specific first: service > pattern > action type >
default. The most specific level that gives a setting wins, except that a service's
``autonomy`` and ``enabled`` only ever restrict: a service set to ``approve`` cannot be
lifted to ``auto`` by a pattern, and a service with ``enabled: true`` does not re-enable a
pattern or action type that is disabled. ``policy.enabled: false`` turns every action off.

``confidence_threshold`` and ``confidence_floor`` split a diagnosis's confidence in three: at
or above the threshold the engine may act on its own; below it but at or above the floor a
person is asked to approve the remedy (it then runs through every other gate, and its verified
outcome enters the pattern's record, so a pattern demoted by one unlucky failure can recover);
below the floor it is denied (a pattern that keeps failing stops asking). Both per action type
and per pattern too. A floor at or above the threshold leaves nothing to ask about: below the
threshold is then a plain denial, as before the floor existed (``confidence_floor: 1`` everywhere).

Maintenance windows (and change freezes: a window in ``block`` mode) are cron expressions
evaluated in UTC; a window is active for ``duration_s`` seconds after each time its cron fires.

``blast_radius``, ``backoff`` and ``autonomy_ladder`` hold the settings of the gates of the
same names (``plan/gates.py``, ``plan/backoff.py``) and of earned autonomy (``plan/autonomy.py``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal, TypeVar

from croniter import CroniterBadDateError, croniter
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from autonomic.model import Autonomy

T = TypeVar("T")


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class RateLimits(_Frozen):
    """Most actions allowed: of one action type per day / week, on one service per day / week."""

    per_day: int = Field(default=20, ge=0)
    per_week: int = Field(default=60, ge=0)
    per_service_day: int = Field(default=10, ge=0)
    per_service_week: int = Field(default=30, ge=0)


class RateLimitsOverride(_Frozen):
    """Per action type rate limits; fields left out keep the default level's value."""

    per_day: int | None = Field(default=None, ge=0)
    per_week: int | None = Field(default=None, ge=0)
    per_service_day: int | None = Field(default=None, ge=0)
    per_service_week: int | None = Field(default=None, ge=0)


class ActionPolicy(_Frozen):
    enabled: bool | None = None
    autonomy: Autonomy | None = None
    confidence_threshold: float | None = Field(default=None, ge=0.0, le=1.0)
    confidence_floor: float | None = Field(default=None, ge=0.0, le=1.0)
    rate_limits: RateLimitsOverride | None = None


class PatternPolicy(_Frozen):
    enabled: bool | None = None
    autonomy: Autonomy | None = None
    confidence_threshold: float | None = Field(default=None, ge=0.0, le=1.0)
    confidence_floor: float | None = Field(default=None, ge=0.0, le=1.0)
    shadow: bool | None = None


class ServicePolicy(_Frozen):
    enabled: bool | None = None
    autonomy: Autonomy | None = None
    shadow: bool | None = None


class MaintenanceWindow(_Frozen):
    """While active: ``block`` denies every action, ``approve`` asks a person first,
    ``safe_only`` allows only actions whose pattern is rollback-safe.

    ``cron`` is read in UTC whatever the host's time zone (there is no time-zone setting, so
    daylight saving never moves, skips or repeats a window); the window is active for
    ``duration_s`` after each time it fires."""

    name: str = Field(min_length=1)
    cron: str
    duration_s: float = Field(gt=0)
    mode: Literal["block", "approve", "safe_only"] = "block"

    @field_validator("cron")
    @classmethod
    def _valid_cron(cls, v: str) -> str:
        # five fields, as report schedules: croniter also takes a sixth (seconds, *last*) and a
        # seventh (year), so a Quartz-style "0 0 2 * * *" would be read as every second of
        # 00:00 on the 2nd of the month rather than refused
        if not croniter.is_valid(v):
            raise ValueError(f"not a valid cron expression: {v!r} (e.g. '0 2 * * *')")
        if len(v.split()) != 5 and not v.strip().startswith("@"):  # @daily and the like are five fields' names
            raise ValueError(f"not a valid cron expression: {v!r} has {len(v.split())} fields, not five "
                             "(minute hour day-of-month month day-of-week; no seconds, no year)")
        try:  # a date that never comes (30 February) is valid cron that never fires
            croniter(v, 0.0).get_next(float)
        except CroniterBadDateError:
            raise ValueError(f"cron expression {v!r} never fires (no such date)") from None
        return v


class BreakerConfig(_Frozen):
    """Open the breaker after ``failures`` consecutive failed actions; stay open ``open_s``."""

    failures: int = Field(default=3, ge=1)
    open_s: float = Field(default=3600.0, gt=0)


class BlastRadiusConfig(_Frozen):
    """At most ``max_in_flight`` targets with an action in flight at once, and at most
    ``max_group_percent`` of the services sharing a ``group`` (never fewer than one)."""

    max_in_flight: int = Field(default=3, ge=1)
    max_group_percent: float = Field(default=50.0, gt=0, le=100)


class BackoffConfig(_Frozen):
    """Per-target backoff after failed attempts: ``base_s`` doubling up to ``cap_s``; cleared
    after ``reset_after_s`` without a failure."""

    base_s: float = Field(default=10.0, gt=0)
    cap_s: float = Field(default=300.0, gt=0)
    reset_after_s: float = Field(default=600.0, gt=0)

    @model_validator(mode="after")
    def _cap_at_least_base(self) -> BackoffConfig:
        if self.cap_s < self.base_s:
            raise ValueError(f"cap_s ({self.cap_s:g}) must be at least base_s ({self.base_s:g})")
        if self.reset_after_s <= self.cap_s:
            # a wait of reset_after_s clears the count: the next failure would be a first again,
            # and the backoff would start over at base_s instead of holding at its cap
            raise ValueError(f"reset_after_s ({self.reset_after_s:g}) must be more than cap_s ({self.cap_s:g}): "
                             "a wait that long clears the count, so the backoff would start over at base_s "
                             "rather than hold at its cap")
        return self


class AutonomyLadder(_Frozen):
    """Earned autonomy per (pattern, service), see ``plan/autonomy.py``. Off by default: the
    configured autonomy is then used as is.

    One level up after ``promote_after`` verified successes in a row with a success rate of
    at least ``min_success_rate`` over the last ``window`` outcomes (and, when
    ``min_lower_bound`` > 0, a 95% Wilson lower bound on that rate at least that high), never
    above ``max_level``: ``auto`` must be configured here explicitly. One level down on a
    rollback or ``demote_failures`` failures in the last ``demote_window``, never below observe.
    """

    enabled: bool = False
    promote_after: int = Field(default=5, ge=1)
    min_success_rate: float = Field(default=0.9, ge=0.0, le=1.0)
    window: int = Field(default=20, ge=1)
    min_lower_bound: float = Field(default=0.0, ge=0.0, le=1.0)
    demote_failures: int = Field(default=2, ge=1)
    demote_window: int = Field(default=5, ge=1)
    max_level: Autonomy = Autonomy.APPROVE

    @model_validator(mode="after")
    def _windows_hold_their_counts(self) -> AutonomyLadder:
        if self.demote_failures > self.demote_window:
            raise ValueError(
                f"demote_failures ({self.demote_failures}) cannot exceed demote_window ({self.demote_window})"
            )
        return self


class EffectivePolicy(_Frozen):
    """What the policy says for one (action type, pattern, service)."""

    enabled: bool
    autonomy: Autonomy
    confidence_threshold: float
    rate_limits: RateLimits
    # below confidence_threshold but at least this, a person is asked to approve (see PolicyConfig)
    confidence_floor: float = 0.3
    autonomy_from: str = "default"  # which level set the autonomy, for gate reasons
    shadow: bool = False  # decide fully, record what would have been done, never act


class PolicyConfig(_Frozen):
    enabled: bool = True
    autonomy: Autonomy = Autonomy.OBSERVE
    # Shadow mode: the whole loop runs and every decision is recorded with what it would have
    # done, but nothing acts. Per pattern and per service too (service > pattern > this).
    shadow: bool = False
    confidence_threshold: float = Field(default=0.6, ge=0.0, le=1.0)
    # A remedy whose confidence is below confidence_threshold but at least confidence_floor is
    # not run on its own: a person is asked to approve it (the confidence gate asks), so a
    # pattern demoted by an unlucky failure can earn its record back. Below the floor it is
    # denied. A floor at or above the threshold asks nothing: below the threshold is then a plain
    # denial, as it always was before the floor. Per action type and pattern too (pattern >
    # action type > this).
    confidence_floor: float = Field(default=0.3, ge=0.0, le=1.0)
    rate_limits: RateLimits = RateLimits()
    actions: dict[str, ActionPolicy] = Field(default_factory=dict)
    patterns: dict[str, PatternPolicy] = Field(default_factory=dict)
    services: dict[str, ServicePolicy] = Field(default_factory=dict)
    maintenance_windows: list[MaintenanceWindow] = Field(default_factory=list)
    breaker: BreakerConfig = BreakerConfig()
    blast_radius: BlastRadiusConfig = BlastRadiusConfig()
    backoff: BackoffConfig = BackoffConfig()
    autonomy_ladder: AutonomyLadder = AutonomyLadder()

    def effective(self, action_type: str, pattern_id: str | None, service: str) -> EffectivePolicy:
        """Resolve the levels (service > pattern > action type > default) for one action."""
        act = self.actions.get(action_type, ActionPolicy())
        pat = self.patterns.get(pattern_id, PatternPolicy()) if pattern_id else PatternPolicy()
        svc = self.services.get(service, ServicePolicy())

        enabled = self.enabled and _first(pat.enabled, act.enabled, True) and svc.enabled is not False

        autonomy, source = self.autonomy, "default"
        if act.autonomy is not None:
            autonomy, source = act.autonomy, f"action type {action_type}"
        if pat.autonomy is not None:
            autonomy, source = pat.autonomy, f"pattern {pattern_id}"
        if svc.autonomy is not None and svc.autonomy.rank <= autonomy.rank:
            autonomy, source = svc.autonomy, f"service {service}"

        threshold = _first(pat.confidence_threshold, act.confidence_threshold, self.confidence_threshold)
        floor = _first(pat.confidence_floor, act.confidence_floor, self.confidence_floor)
        shadow = _first(svc.shadow, pat.shadow, self.shadow)

        limits = self.rate_limits
        if act.rate_limits is not None:
            limits = limits.model_copy(update=act.rate_limits.model_dump(exclude_none=True))

        return EffectivePolicy(
            enabled=enabled,
            autonomy=autonomy,
            confidence_threshold=threshold,
            confidence_floor=floor,
            rate_limits=limits,
            autonomy_from=source,
            shadow=shadow,
        )


    def effective_for(self, action_types: Sequence[str], pattern_id: str | None, service: str) -> EffectivePolicy:
        """What the policy says for an action made of steps of ``action_types`` (one type for a
        single-step action; the first step's type first): the most restrictive of
        :meth:`effective` over every step's type. Enabled only if every type is, the lowest
        autonomy, the highest confidence threshold and floor; rate limits are the first type's here (the
        rate-limit gate checks each later step's type against its own limits too, and counts the
        action under every type it runs). A workflow whose second step restarts a process is as
        much a process action as a plain restart: disabling ``process`` actions, or holding
        them at ``approve``, holds it too."""
        if not action_types:
            raise ValueError("effective_for needs at least one action type")
        each = [self.effective(t, pattern_id, service) for t in dict.fromkeys(action_types)]
        strictest = min(each, key=lambda e: e.autonomy.rank)  # the first such type on a tie
        return each[0].model_copy(update={
            "enabled": all(e.enabled for e in each),
            "autonomy": strictest.autonomy,
            "autonomy_from": strictest.autonomy_from,
            "confidence_threshold": max(e.confidence_threshold for e in each),
            "confidence_floor": max(e.confidence_floor for e in each),
        })


def read_override(raw: Mapping[str, Any], fallback: PolicyConfig) -> tuple[PolicyConfig, list[str]]:
    """The policy a stored override (``PUT /api/v1/policy``, validated when written) gives now,
    and the top-level fields of it that no longer validate. An override written by an older
    version may break a rule this one adds (a six-field cron, a backoff cap not below its reset):
    each such field takes ``fallback``'s (the file's) value and the rest is kept, so a person's
    tightening in the same override (a lower autonomy, a pattern turned off) is not dropped with
    it. ``["*"]`` with ``fallback`` itself when the override cannot be read even so."""
    try:
        return PolicyConfig.model_validate(raw), []
    except ValidationError as exc:
        bad = sorted({str(e["loc"][0]) for e in exc.errors() if e["loc"]})
        whole = any(not e["loc"] for e in exc.errors())
    base = fallback.model_dump(mode="json")
    patched = {k: v for k, v in raw.items() if k not in bad}
    patched.update({k: base[k] for k in bad if k in base})
    if whole or not bad:
        return fallback, ["*"]
    try:
        return PolicyConfig.model_validate(patched), bad
    except ValidationError:
        return fallback, ["*"]


def _first(*values: T | None) -> T:
    for v in values:
        if v is not None:
            return v
    raise ValueError("no value given")  # pragma: no cover - the last value is never None


def window_started(window: MaintenanceWindow, now: float) -> float:
    """The most recent time at or before ``now`` that the window's cron fired."""
    prev = float(croniter(window.cron, now).get_prev(float))
    nxt = float(croniter(window.cron, prev).get_next(float))
    return nxt if nxt <= now else prev


_CHAINED_FIRES = 100  # how many back-to-back fires window_ends follows before it stops looking


def window_ends(window: MaintenanceWindow, now: float) -> tuple[float, bool]:
    """When the window active at ``now`` ends, and whether that is its end (False: it is still
    going after ``_CHAINED_FIRES`` fires, each before the last one ended: the time is a lower
    bound). A fire at or before the end of the last one carries it on: a weekday window
    ``0 0 * * 1-5`` of 86400 s that is active on Monday ends on Saturday at 00:00, not on Tuesday."""
    started = window_started(window, now)
    end, fires = started + window.duration_s, croniter(window.cron, started)
    for _ in range(_CHAINED_FIRES):
        nxt = float(fires.get_next(float))
        if nxt > end:
            return end, True
        end = nxt + window.duration_s
    return end, False


_MODE_RANK = {"block": 2, "approve": 1, "safe_only": 0}


def active_window(windows: Sequence[MaintenanceWindow], now: float) -> MaintenanceWindow | None:
    """The window active at ``now`` (within duration_s after its last cron fire), or None.
    When several are active the most restrictive mode wins (block > approve > safe_only)."""
    active = [w for w in windows if now - window_started(w, now) < w.duration_s]
    return max(active, key=lambda w: _MODE_RANK[w.mode], default=None)
