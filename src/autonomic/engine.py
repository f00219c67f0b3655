"""The engine: the only module that knows every stage and wires them together.

One tick: sources -> series store -> detectors -> findings -> incidents (correlation), then
the work queue advances every incident and action whose time has come by one step each.
Every transition goes to the store (with its audit entry) before the next step starts;
the in-memory state here (series, the incident cache, the queue) is rebuilt from the
store on start.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import gc
import json
import logging
import math
import os
import queue
import threading
import time
import zlib
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from http.cookiejar import CookieJar, DefaultCookiePolicy
from pathlib import Path
from typing import Any, Literal, NamedTuple

import httpx
from pydantic import ValidationError

from autonomic.analyze.anomaly import AnomalyDetector
from autonomic.analyze.correlate import correlate
from autonomic.analyze.forecast import SeasonalTrendDetector
from autonomic.analyze.goals import CAUSE as BURN_CAUSE
from autonomic.analyze.goals import GOAL_STATE_PREFIX, GoalTracker, aged_out_at, goal_key
from autonomic.analyze.rca import RcaParams, dependency_closure
from autonomic.analyze.rca import rank as rank_causes
from autonomic.analyze.thresholds import HealthDetector, Thresholds, assess, stale_after
from autonomic.analyze.trend import TrendDetector, default_trend_specs
from autonomic.clock import ServerClock, SystemClock, duration, utc_stamp
from autonomic.config import Config, policy_retention_too_short
from autonomic.deadline import Client as DeadlineClient
from autonomic.errors import (
    ActuatorError,
    AuditChainError,
    AutonomicError,
    SourceError,
    StoreError,
    StoreValueError,
)
from autonomic.execute.executor import RETRY_PAUSE_MAX_S, Executor
from autonomic.execute.supervisor import Supervisor, describe_exit
from autonomic.knowledge import Store
from autonomic.knowledge.lease import LeaderElector, elapsed_clock
from autonomic.knowledge.retention import prune
from autonomic.knowledge.tallies import PatternTallies
from autonomic.liveness import Watchdog
from autonomic.longcsv import from_series as rca_series
from autonomic.model import (
    TROUBLE_CLEARED,
    UNIT_METRICS,
    Action,
    ActionState,
    AuditEvent,
    Autonomy,
    ConfigChange,
    Decision,
    Diagnosis,
    Finding,
    FindingKind,
    GateResult,
    HealthState,
    Incident,
    IncidentState,
    Level,
    Notification,
    Pattern,
    Resolution,
    Sample,
    Severity,
    Verdict,
    new_id,
)
from autonomic.monitor.host import HostSource, ProcessSource
from autonomic.monitor.probe import HttpProbe, ProbeGroup
from autonomic.monitor.prometheus import PrometheusScrape
from autonomic.monitor.promquery import PromQuerySource, PromQuerySpec, SharedPromQuery, shared_key
from autonomic.monitor.series import SeriesStore
from autonomic.monitor.unanswered import Unanswered
from autonomic.monitor.unitstate import UnitStateSource, unit_kind
from autonomic.oversight.notify import Dispatcher, build_dispatcher
from autonomic.oversight.reports import due_reports, report_notification
from autonomic.plan.autonomy import Evidence, earned_effective, ladder_event, people_evidence
from autonomic.plan.backoff import BackoffState, backoff_allows, backoff_delay, backoff_record
from autonomic.plan.breaker import BreakerState, breaker_record
from autonomic.plan.diagnose import (
    DiagnoseContext,
    actuator_order,
    cannot_run,
    diagnose,
    record_factor,
    service_record,
)
from autonomic.plan.gates import (
    Counts,
    GateContext,
    Plan,
    blast_limit,
    breakers_after_approval,
    decide,
    plan_direction,
    shadow_verdict,
    without_room,
)
from autonomic.plan.policy import PolicyConfig, read_override
from autonomic.printable import counted, listed
from autonomic.protocols import ActuatorContext, Checkpointed, Clock, Detector, Source, Target
from autonomic.reconcile import Key, WorkQueue
from autonomic.redact import Secrets
from autonomic.registry import Registry, default_registry

log = logging.getLogger("autonomic.engine")
CLOCK_SYNC_S = 60.0  # how often one engine over PostgreSQL measures its clock against the server's

PAUSE_GLOBAL = "pause:global"
OUTBOX = "outbox:"  # notifications kept until delivered: see Engine._keep_outgoing
NOTIFY_RETRY_BASE_S = 30.0  # a notification a notifier gave up on is offered again after this, doubling
PATTERN_STATE = "pattern:"  # per pattern with an action: its remedy's fingerprint, and since when its record counts
AUTONOMY_STATE = "autonomy:"  # per (pattern, service): the level the ladder last gave it (see Engine._earned)
NOTIFY_RETRY_CAP_S = 600.0  # ... at most this far apart, until engine.notify_retry_for_s after it was made
PAUSE_FILE = "paused"  # <state_dir>/paused, <state_dir>/paused.<service>: see pause_file
_PAUSE_FILE_MAX = 4096  # characters of a pause file read
POLICY_OVERRIDE = "policy:override"
_STEPS_PER_TICK = 8
# retention: at most this many prune transactions a tick; more left is pruned at the next ticks
_PRUNES_PER_TICK = 10
# findings kept while the store refuses writes (the newest; an outage of hours drops the oldest)
_MAX_UNSTORED = 10_000
_EXIT_TAIL_CHARS = 800  # of a dead service's log kept in its down finding's evidence
# What root-cause ranking compares with normal: how a service is doing, not how it is set up.
# the states of a dependency's down incident whose fix is still to come or under way: a dead
# service calling it waits for that fix (Engine._dependency_fix_until)
_FIX_COMING = frozenset({IncidentState.OPEN, IncidentState.DIAGNOSED, IncidentState.AWAITING_APPROVAL,
                         IncidentState.ACTING, IncidentState.VERIFYING})
_SYMPTOMS = frozenset({"up", "probe_ok", "probe_latency_ms", "error_rate", "latency_ms", "availability",
                       "cpu_percent", "memory_percent", "pool_utilization"})
# the direction in which each symptom is trouble: an idle service's CPU falling from 2% to 0%
# explains nobody's latency
_SYMPTOM_DIRECTIONS: dict[str, Literal[1, -1]] = {
    **{m: 1 for m in _SYMPTOMS}, "up": -1, "probe_ok": -1, "availability": -1}
# ... and the jitter of each, in its unit, that a departure must clear 4 times over to count: a
# 1 ms probe taking 3 ms on a busy machine explains no caller's 1.5 s
_SYMPTOM_FLOORS = {"latency_ms": 5.0, "probe_latency_ms": 5.0, "cpu_percent": 2.5, "memory_percent": 1.0,
                   "pool_utilization": 0.02, "error_rate": 0.002}
# the findings were already confirmed by their detectors, so two samples in a row make a
# departure sustained here (the offline default is three); and only what is still departing
# from normal now can explain the symptom
_LIVE_RCA = RcaParams(consecutive=2, ongoing=True, directions=_SYMPTOM_DIRECTIONS, floors=_SYMPTOM_FLOORS)
# action states in which a deposed leader may still have an actuator call running (see start)
_MAY_BE_IN_FLIGHT = frozenset({ActionState.RUNNING, ActionState.ROLLING_BACK})
_REPEAT_PERSIST_S = 10.0  # a repeating finding is written at most this often per incident...
_REPEAT_PERSIST_MAX_S = 60.0  # ...and, as the incident ages (a tenth of its age), down to once a minute
_DAY, _WEEK = 86_400.0, 7 * 86_400.0
# Availability is a lagging measure over a long window: by the time it is below its objective
# the outage that spent it is usually over, so a fallback remedy is never proposed for it.
# So is a goal's error-budget burn (it says trouble is coming, not what it is): only a pattern of
# the user's that matches its cause acts on one; otherwise a person is told.
_NO_FALLBACK_CAUSES = frozenset({"availability", BURN_CAUSE})
# how long one call of an actuator that does not say (no call_limit_s: a plug-in) is taken to last
DEFAULT_CALL_LIMIT_S = 300.0
# store calls counted into the loop's longest step beside its one slow call (the journal write
# before it, the pause check before an actuator call, the result written after it)
_STORE_CALLS_PER_STEP = 3
# what stopping gives the notifiers to send what is queued, and a service still alive after its
# stop_timeout_s once SIGKILLed (Supervisor.stop_all)
NOTIFIERS_CLOSE_S = 5.0
_KILLED_WAIT_S = 5.0


class _Wait(NamedTuple):
    """Why an incident is not decided yet (see Engine._wait_until), kept on its diagnosis's audit
    entry (``waits``): ``on`` the service whose ``action`` is under way, which is ``settling``
    after its action (until ``until``), or which is down with its ``fix`` still to come, or
    whose action fills the blast radius (``turn``: ``on`` one of those in flight)."""

    until: float  # when to look again (for settling: when the settle time ends)
    on: str
    reason: Literal["action", "settling", "fix", "turn"]
    why: str

    def stored(self) -> dict[str, Any]:
        return {"on": self.on, "for": self.reason, "until": round(self.until, 3) if self.reason == "settling" else None,
                "why": self.why}


# the audit entries of an incident that say whether it waits (see Engine._recall_told)
_TOLD_KINDS = ("incident.diagnosed", "incident.waiting", "decision.approved", "decision.needs_approval",
               "decision.denied", "decision.denied_by_person")


@dataclass
class _Outgoing:
    """A notification kept in the outbox and sent (see Engine._settle_outbox): when it was made,
    the notifiers still to take it (None: every one that takes its level), how many times it was
    offered again, and when it is due again (inf: in flight; stored as null, and read back by
    :func:`pending_notifications` only: a later engine sends what it finds at once)."""

    notification: Notification
    queued_at: float
    routes: list[str] | None = None
    retries: int = 0
    due: float = math.inf

    def stored(self) -> dict[str, Any]:
        """The outbox entry. The notification's id is the key's, not written in it: an older
        replica (a rolling upgrade) reads the entry as it always did."""
        return {"notification": self.notification.model_dump(mode="json", exclude={"id"}),
                "queued_at": self.queued_at, "routes": self.routes, "retries": self.retries,
                "due": self.due if math.isfinite(self.due) else None}

    @classmethod
    def from_stored(cls, key: str, value: Mapping[str, Any], now: float) -> _Outgoing:
        """What :meth:`stored` wrote under ``key`` (``now`` for a time that cannot be read), the
        notification's id the key's; ValueError when it holds no notification."""
        at, routes, retries = value.get("queued_at"), value.get("routes"), value.get("retries")
        notification = Notification.model_validate(value.get("notification"))
        if notification.id is None:
            notification = notification.model_copy(update={"id": key.removeprefix(OUTBOX)})
        return cls(notification, float(at) if isinstance(at, int | float) and at else now,
                   [str(r) for r in routes] if isinstance(routes, list) else None,
                   retries if isinstance(retries, int) else 0)


def pause_key(service: str | None) -> str:
    return PAUSE_GLOBAL if service is None else f"pause:service:{service}"


def approval_key(incident_id: str) -> str:
    return f"approval:{incident_id}"


# an approval refused as late, waiting to be told to people by the engine that leads
# (Engine._tell_late_approvals): "late:<incident id>:<an id of its own>"
LATE_PREFIX = "late:"


def late_key(incident_id: str, attempt: str) -> str:
    return f"{LATE_PREFIX}{incident_id}:{attempt}"


class LateApproval(ValueError):
    """An approval given after the request it answers expired: refused (nothing acts on it), and
    audited ``approval.late``; the message says when the request expired and what happens."""


def approval_expires_at(inc: Incident, decisions: Sequence[Decision], ttl_s: float) -> float:
    """When the approval request ``inc`` waits on expires: as recorded on its latest
    needs_approval decision among ``decisions`` (``expires_at``, set by the engine that asked,
    from its own ``engine.approval_ttl_s``), so that every reader agrees whatever its config says
    now. A request recorded before that (before migration 0010, or by an older replica still
    running) expires ``ttl_s``, the reader's ``engine.approval_ttl_s``, after it was asked: the
    decision's time, or the incident's ``updated_at`` when none is stored (it moves with every
    finding, so it is only the last fallback)."""
    return _approval_window(inc, decisions, ttl_s)[1]


def _approval_window(inc: Incident, decisions: Sequence[Decision], ttl_s: float) -> tuple[float, float]:
    """When the request ``inc`` waits on was asked and when it expires (see :func:`approval_expires_at`)."""
    asked = next((d for d in reversed(decisions) if d.verdict == Verdict.NEEDS_APPROVAL), None)
    if asked is None:
        return inc.updated_at, inc.updated_at + ttl_s
    return asked.ts, asked.expires_at if asked.expires_at is not None else asked.ts + ttl_s


def answer_approval(store: Store, incident_id: str, verdict: Literal["approve", "deny"], *, actor: str,
                    comment: str, now: float, approval_ttl_s: float, answers: str | None = None) -> Incident:
    """Store a person's answer to the approval request ``incident_id`` waits on (audited
    ``approval.<verdict>``), for the engine to act on at its next tick (:meth:`Engine._await_approval`).
    The answer names the request it answers, the incident's latest decision; ``answers``, when
    given, is the request the person saw, and the answer is refused when the incident was asked
    again since. Raises ValueError (nothing written) when the incident is not awaiting approval,
    was asked again, or its request was already answered and the engine has not yet acted on
    that answer (a denial may still replace an approval: it stops it); returns the incident. For
    the API and the CLI alike.

    An approval given at ``now`` (the store's clock) when the request has expired (when recorded
    with it by the engine that asked; for a request recorded without it, ``approval_ttl_s``, the
    caller's ``engine.approval_ttl_s``, after it was asked), whether or not the engine has closed
    the incident as expired yet, raises :class:`LateApproval`: the engine would not act on it, so
    the person is not told it will. Only the attempt is written, audited ``approval.late`` (who, when, by how late),
    never an answer. Not when another person's answer, given in time, is stored and not yet taken:
    the engine acts on that whenever it looks, and this one is refused as any second answer is,
    saying so. A late denial is stored as any denial (it stops nothing that would run)."""
    # the incident's state is read under the store's write lock (the unit), with the write: the
    # engine takes an approval and moves the incident on in one write of its own, so an answer
    # either lands before that (a denial then stops the approval) or sees it taken
    late: str | None = None
    with store.unit():
        inc = store.get(Incident, incident_id)
        decisions = store.decisions(incident_id) if inc is not None else []
        if verdict == "approve" and inc is not None:
            late = _late(store, inc, decisions, actor=actor, comment=comment, now=now, ttl_s=approval_ttl_s)
        if late is None:
            if inc is None or inc.state != IncidentState.AWAITING_APPROVAL:
                raise ValueError(_not_awaiting(store, incident_id, inc))
            request = decisions[-1].id if decisions else None
            if answers is not None and answers != request:
                raise ValueError(f"incident {incident_id[:8]} was asked again since the request you answered; "
                                 "look at the new one and answer that")
            # one compare-and-set in the store: of two answers in the same instant (two people, two
            # replicas) only one is written. Any answer to this request stands, except that a denial
            # replaces an approval the engine has not acted on yet (it stops it: the safe way round); a
            # second person's approval must not replace the first one's denial, nor be audited as if it
            # did something. An answer to an earlier request (stale) is replaced.
            kept_if: dict[str, str | None] = {"decision": request}
            if verdict == "deny":
                kept_if["verdict"] = "deny"
            written, given = store.set_state_unless(
                approval_key(incident_id), {"verdict": verdict, "actor": actor, "comment": comment, "ts": now,
                                            "decision": request},
                kept_if=kept_if, actor=actor, event=f"approval.{verdict}",
                data={"incident": incident_id, "comment": comment, "decision": request})
    if late is not None:  # raised after the unit: its audit entry stays written
        raise LateApproval(late)
    if not written:
        raise ValueError(f"incident {incident_id[:8]} was already answered: {given.get('verdict')} by "
                         f"{given.get('actor', '?')}; the engine acts on that at its next tick")
    assert inc is not None
    return inc


def _late(store: Store, inc: Incident, decisions: Sequence[Decision], *, actor: str, comment: str, now: float,
          ttl_s: float) -> str | None:
    """Why an approval of ``inc`` (whose decisions are ``decisions``) at ``now`` comes too late,
    having audited it ``approval.late`` (in the caller's unit); None when it does not: the
    incident awaits approval and its request has not expired, or it is closed for another reason
    than its request expiring."""
    if inc.state == IncidentState.AWAITING_APPROVAL:
        closed = False
        if _answered_in_time(store, inc, decisions, ttl_s):
            return None  # the engine acts on that answer: this one is told so, as any second answer is
    elif inc.state == IncidentState.EXPIRED and _closed_as_expired(store, inc.id):
        closed = True
    else:
        return None
    asked, expires = _approval_window(inc, decisions, ttl_s)
    if now < expires:
        return None
    when = utc_stamp(expires)
    # told to people as well, not only to the person refused here, by the engine that leads
    # (Engine._tell_late_approvals): written in the caller's unit, with the attempt; once per person
    # and request (one who clicks approve again and again is refused each time, told of once)
    tried = store.audit_events(subject=inc.id, kinds=("approval.late",))
    if not any(e.actor == actor for e in tried):
        store.set_state(late_key(inc.id, new_id()),
                        {"incident": inc.id, "actor": actor, "ts": now, "expired_at": expires},
                        actor=actor, event="approval.late_queued", data={"incident": inc.id})
    store.audit(actor, "approval.late", inc.id,  # the incident's: its explanation tells of it
                {"incident": inc.id, "comment": comment, "decision": decisions[-1].id if decisions else None,
                 "expired_at": expires, "late_by_s": round(now - expires, 3)})
    then = ("the engine has closed the incident as expired" if closed else
            "the engine closes the incident as expired at its next look")
    window_s = expires - asked  # as recorded with the request (by the engine that asked), else ttl_s
    again = store.open_incident(inc.service, inc.cause)
    next_ = (f"The trouble went on and the engine has asked again: incident {again.id[:8]} awaits approval "
             f"(autonomic approve {again.id[:8]})." if again is not None and again.id != inc.id
             and again.state == IncidentState.AWAITING_APPROVAL
             else "If the trouble goes on, the engine opens a new incident and asks again.")
    return (f"incident {inc.id[:8]}: too late, nothing will be done on this approval: its approval request expired "
            f"at {when} (engine.approval_ttl_s {window_s:g} s after it was asked), {now - expires:.0f} s before it, "
            f"and {then}. The attempt is in the audit log (approval.late). {next_}")


def _answered_in_time(store: Store, inc: Incident, decisions: Sequence[Decision], ttl_s: float) -> bool:
    """Whether the request ``inc`` awaits approval on holds an answer given before it expired, not
    yet taken by the engine: the engine acts on that one (:meth:`Engine._await_approval` judges an
    answer late by when it was given), whenever it looks."""
    answer = store.get_state(approval_key(inc.id))
    if not answer:
        return False
    request = decisions[-1].id if decisions else None
    given = _given_at(answer)  # the engine's reading: one naming no request answers the current one
    return (answer.get("decision") in (None, request) and given is not None
            and given < approval_expires_at(inc, decisions, ttl_s))


def _given_at(answer: dict[str, Any]) -> float | None:
    """When a stored answer was given (its ``ts``, by the answering side's clock), None when it
    carries no number."""
    given = answer.get("ts")
    return float(given) if isinstance(given, int | float) and not isinstance(given, bool) else None


def _closed_as_expired(store: Store, incident_id: str) -> bool:
    """Whether the engine closed ``incident_id`` because its approval request expired (see
    :func:`_expiry_event`)."""
    return _expiry_event(store, incident_id) is not None


def _expiry_event(store: Store, incident_id: str) -> AuditEvent | None:
    """The ``approval.expired`` entry with which the engine closed ``incident_id`` when its approval
    request expired, None when it did not: looked for among its 5 newest audit entries, the late
    approvals refused since (``approval.late``, as many as people tried) left out, so that retrying
    does not change the answer."""
    return next((e for e in store.audit_events(subject=incident_id, limit=5, newest=True, kinds_not=("approval.late",))
                 if e.kind == "approval.expired"), None)


def _not_awaiting(store: Store, incident_id: str, inc: Incident | None) -> str:
    """Why an answer to ``incident_id`` is refused: it is not awaiting approval. When the engine
    has just taken an approval of it (the last approval event is its take and the incident is
    not yet closed), says so, by whom, and how to stop the action now."""
    said = f"incident {incident_id[:8]} is not awaiting approval (it is {inc.state.value if inc else 'unknown'})"
    if inc is None or inc.state.terminal:
        return said
    taken = next((e for e in reversed(store.audit_events(subject=approval_key(incident_id), limit=5, newest=True))
                  if e.kind.startswith("approval.")), None)
    if taken is None or taken.kind != "approval.consumed" or taken.data.get("verdict") != "approve":
        return said
    return (f"{said}: approved by {taken.actor}, an approval already taken by the engine, which acts on it; to "
            f"stop what it does, pause it: autonomic pause --service {inc.service} --reason ...")


# a person's start or stop of a supervised service (``autonomic start|stop``, POST
# /api/v1/services/{name}/start|stop), waiting for the engine that leads to carry it out
# (Engine._take_service_requests): "service-request:<an id of its own>"
SERVICE_REQUEST_PREFIX = "service-request:"
# how many engines may take one request and die before doing it: the next refuses it rather than
# be killed by it too (a request that crashes the engine would otherwise crash every leader in turn)
_REQUEST_TAKES = 2
# a supervised service a person stopped on purpose: not started again (by a remedy, nor at the
# engine's start) until a person starts it: "stopped:<service>" -> {actor, comment, ts}
STOPPED_PREFIX = "stopped:"
# the outcomes of a request, audited with the request's key as subject (see service_request_outcome)
SERVICE_OUTCOMES = ("service.started", "service.already_running", "service.start_failed", "service.stopped",
                    "service.already_stopped", "service.request_refused")
_UNIT_FIELD = {"systemd": "unit", "docker": "container", "kubernetes": "name"}  # what names the unit


def stopped_key(service: str) -> str:
    return f"{STOPPED_PREFIX}{service}"


class UnknownService(LookupError):
    """A start or stop of a service the config does not name."""


class NotSupervised(ValueError):
    """A start or stop of a service autonomic does not run (no ``process`` binding): its message
    says what to use instead."""


def check_service_request(config: Config, service: str, verb: Literal["start", "stop"]) -> None:
    """Raise :class:`UnknownService` for a service ``config`` does not name and
    :class:`NotSupervised` for one without a ``process`` binding (the message names the command
    to use instead): what :func:`request_service` refuses, judged on the config alone (a command
    says so before it looks for a store)."""
    if config.service(service) is None:
        raise UnknownService(f"no service named {service!r} in {config.source}")
    bindings = config.bindings.get(service, {})
    if "process" not in bindings:
        raise NotSupervised(_not_supervised(service, verb, bindings))


def request_service(store: Store, config: Config, service: str, verb: Literal["start", "stop"], *, actor: str,
                    comment: str, now: float) -> str:
    """Queue a person's start or stop of ``service`` for the engine that leads, which carries it
    out through its supervisor at its next collection (:meth:`Engine._take_service_requests`);
    audited ``service.<verb>_requested`` as the person's act (the comment too; no secret is in
    it unless the person typed one). Returns the request's key, the subject of the outcome's
    audit entry (:func:`service_request_outcome`). For the API and the CLI alike.

    Raises :class:`UnknownService` for a service ``config`` does not name and
    :class:`NotSupervised` for one without a ``process`` binding (systemd, Docker or Kubernetes
    run it: the message names the command to use); nothing is written then."""
    check_service_request(config, service, verb)
    key = f"{SERVICE_REQUEST_PREFIX}{new_id()}"
    store.set_state(key, {"service": service, "verb": verb, "actor": actor, "comment": comment, "ts": now},
                    actor=actor, event=f"service.{verb}_requested", data={"service": service, "comment": comment})
    return key


def _not_supervised(service: str, verb: str, bindings: Mapping[str, Any]) -> str:
    """What to use to start or stop ``service``, which autonomic does not run."""
    for kind, field in _UNIT_FIELD.items():
        binding = bindings.get(kind)
        if binding is None:
            continue
        name = str(getattr(binding, field, service))
        how = {"systemd": f"systemctl {verb} {name}",
               "docker": f"docker {'unpause' if verb == 'start' else 'pause'} {name} (a paused container is "
                         f"stopped on purpose; one stopped with docker stop reads down)",
               "kubernetes": f"kubectl scale --replicas={'N' if verb == 'start' else '0'} "
                             f"{str(getattr(binding, 'kind', 'Deployment')).lower()}/{name} "
                             f"-n {getattr(binding, 'namespace', 'default')}"}[kind]
        return (f"{service} is run by {kind}, not by autonomic (no process binding): {verb} it with {how}; "
                f"autonomic reads its state{' and does not start it while it is stopped' if verb == 'stop' else ''}")
    return (f"{service} is not run by autonomic (no process binding), nor through systemd, Docker or Kubernetes: "
            f"{verb} it where it runs")


def service_request_outcome(store: Store, key: str) -> AuditEvent | None:
    """The audit entry in which the engine recorded what came of the request ``key`` (one of
    :data:`SERVICE_OUTCOMES`), None while it has not carried it out."""
    return next((e for e in store.audit_events(subject=key, limit=10, newest=True) if e.kind in SERVICE_OUTCOMES),
                None)


def queued_service_requests(store: Store) -> list[dict[str, Any]]:
    """The people's starts and stops queued and not yet carried out (:func:`request_service`),
    oldest first, as the engine takes them: ``{request, service, verb, actor, comment, ts}`` each
    (``request`` the key its outcome will be audited under). A request leaves the store in the
    write that records its outcome, so what is here still waits for the engine that leads."""
    queued = [{"request": key, "service": str(value.get("service")), "verb": str(value.get("verb")),
               "actor": str(value.get("actor", "?")), "comment": str(value.get("comment") or ""),
               "ts": float(value["ts"]) if isinstance(value.get("ts"), int | float) else None}
              for key, value in store.states(SERVICE_REQUEST_PREFIX).items()]
    return sorted(queued, key=lambda r: (r["ts"] or 0.0, r["request"]))


def pending_notifications(outbox: Mapping[str, Mapping[str, Any]], now: float) -> dict[str, Any]:
    """What waits in the store's outbox (``store.states(OUTBOX)``: read from the store, so every
    replica and the CLI say the same): ``count``; ``oldest_at`` and ``oldest_s``, when the oldest
    was made and how long before ``now`` (None when none waits); ``failing``, each notifier that
    gave up on a notification and is offered it again, with how many wait for it; and
    ``next_retry_at``, when the next of those is offered again (None: none is scheduled)."""
    made: list[float] = []
    due: list[float] = []
    failing: dict[str, int] = {}
    for value in outbox.values():
        at, routes, retries, next_at = (value.get("queued_at"), value.get("routes"), value.get("retries"),
                                        value.get("due"))
        if isinstance(at, int | float):
            made.append(float(at))
        if isinstance(retries, int) and retries > 0 and isinstance(routes, list):
            for route in map(str, routes):
                failing[route] = failing.get(route, 0) + 1
            if isinstance(next_at, int | float):
                due.append(float(next_at))
    oldest = min(made, default=None)
    return {"count": len(outbox), "oldest_at": oldest, "oldest_s": None if oldest is None else max(0.0, now - oldest),
            "failing": dict(sorted(failing.items())), "next_retry_at": min(due, default=None)}


def pending_notifications_text(pending: Mapping[str, Any], now: float) -> str | None:
    """:func:`pending_notifications` for a person, None when none waits: "3 notifications waiting
    to be delivered, the oldest made 12.0 min ago; failing: slack (3); next retry in 2.0 min"."""
    if not pending.get("count"):
        return None
    text = f"{counted(pending['count'], 'notification')} waiting to be delivered"
    if pending.get("oldest_s") is not None:
        text += f", the oldest made {duration(pending['oldest_s'])} ago"
    if pending.get("failing"):
        text += "; failing: " + ", ".join(f"{name} ({n})" for name, n in pending["failing"].items())
        at = pending.get("next_retry_at")
        if at is not None:
            text += f"; next retry in {duration(at - now)}" if at > now else \
                f"; next retry due {duration(now - at)} ago"
    return text


def queued_request_text(request: Mapping[str, Any], now: float) -> str:
    """One queued request (an item of :func:`queued_service_requests`) for a person: "stop requested
    by alice 40 s ago (disk swap), waiting for the engine"."""
    ts = request.get("ts")
    when = f" {duration(max(0.0, now - float(ts)))} ago" if isinstance(ts, int | float) else ""
    comment = str(request.get("comment") or "").strip()
    return (f"{request.get('verb')} requested by {request.get('actor', '?')}{when}"
            + (f" ({comment})" if comment else "") + ", waiting for the engine")


def _stopped_text(service: str, stopped: dict[str, Any] | None, command: str = "autonomic") -> str | None:
    """Why ``service`` is not started, when a person stopped it on purpose (``stopped``, its
    :func:`stopped_key` value): by whom, when, their comment, and how to start it."""
    if not stopped:
        return None
    comment = str(stopped.get("comment") or "").strip()
    when = stopped.get("ts")
    return (f"{service} was stopped on purpose by {stopped.get('actor', '?')}"
            + (f" at {utc_stamp(float(when))}" if isinstance(when, int | float) else "")
            + (f" ({comment})" if comment else "")
            + f": autonomic does not start what a person stopped, until a person starts it ({command} start {service})")


def stopped_on_purpose(store: Store, service: str) -> dict[str, Any] | None:
    """Who stopped ``service`` on purpose, when and why (``{actor, comment, ts}``), or None."""
    return store.get_state(stopped_key(service))


def backoff_key(service: str) -> str:
    return f"backoff:{service}"


def _scopes(action: Action) -> tuple[str, ...]:
    """The breakers an action's result counts towards: every type it runs (a workflow's steps
    too), then ``global``."""
    return (*dict.fromkeys([action.type, *(s.type for s in action.workflow)]), "global")


def breaker_key(scope: str) -> str:
    return f"breaker:{scope}"


INBOX = "inbox:"  # named-state prefix of received alerts not yet ingested (see queue_findings)


def queue_findings(store: Store, findings: list[Finding], now: float, *, actor: str,
                   resolved: Sequence[str] = ()) -> str:
    """Store ``findings`` (an Alertmanager webhook's) for the engine to ingest at its next
    collection, audited ``alerts.received`` with their count (not the findings: Alertmanager
    resends a group's alerts at every group and repeat interval, and the audit log is kept for
    ever; each finding is stored when ingested); returns the inbox key. Through the store, not the
    engine's memory: a webhook accepted (202) is not lost when the process dies before its next
    tick, and any replica may accept it, the one that leads ingests it. The engine removes the key
    (``alerts.ingested``) once every finding in it is ingested; a crash between the two ingests it
    again (at least once: a repeat of a finding is counted on its incident). ``resolved``: the
    fingerprints of alerts the webhook says are resolved (their incidents may then go quiet)."""
    key = f"{INBOX}{new_id()}"
    store.set_state(key, {"received_at": now, "findings": [f.model_dump(mode="json") for f in findings],
                          "resolved": list(resolved)},
                    actor=actor, event="alerts.received", data={"count": len(findings), "resolved": len(resolved)},
                    audit_value=False)
    return key


def pause_file(state_dir: Path, service: str | None) -> Path:
    """The file that pauses automation on this host without the store: ``<state_dir>/paused``
    for all of it, ``<state_dir>/paused.<service>`` for one service. ``autonomic pause`` writes it
    when the store cannot be written (a database that is down, or locked by a writer that froze
    mid-transaction), so the kill switch never depends on the database; a person may also create it
    by hand (``echo "why" > .../paused``). Read, like the store's pause, before every actuator call."""
    return state_dir / (PAUSE_FILE if service is None else f"{PAUSE_FILE}.{service}")


def write_pause_file(state_dir: Path, service: str | None, reason: str, actor: str, ts: float) -> Path:
    """Write the pause file for ``service`` (all automation when None), whole or not at all (a
    temporary file renamed over it, one per thread: the API writes it from a thread per request);
    its path. Raises OSError when it cannot be written."""
    path = pause_file(state_dir, service)
    state_dir.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}")
    temp.write_text(json.dumps({"reason": reason, "actor": actor, "ts": ts}) + "\n", encoding="utf-8")
    os.replace(temp, path)
    return path


def read_pause_file(path: Path) -> dict[str, Any] | None:
    """A pause file's entry, shaped as the store's pause entries ({reason, actor, ts}) plus
    ``file``, or None when there is no such file. Written by ``autonomic pause`` as JSON; any other
    content (a hand-written reason, nothing at all) is the reason as written. A file that is there
    but cannot be read pauses all the same: a kill switch fails closed."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")[:_PAUSE_FILE_MAX]
    except FileNotFoundError:
        return None
    except OSError as exc:
        return {"reason": f"(unreadable: {exc.strerror or exc})", "actor": "file", "file": str(path)}
    try:
        entry = json.loads(text)
    except ValueError:
        entry = None
    if not isinstance(entry, dict) or not isinstance(entry.get("reason"), str):
        entry = {"reason": text.strip().splitlines()[0] if text.strip() else "", "actor": "file"}
    ts = entry.get("ts")
    if not isinstance(ts, int | float):  # written by hand: since the file was
        with contextlib.suppress(OSError):
            ts = path.stat().st_mtime
    return {"reason": entry["reason"], "actor": str(entry.get("actor") or "file"), "ts": ts, "file": str(path)}


def file_pauses(state_dir: Path) -> dict[str, dict[str, Any]]:
    """This host's pause files, keyed as the store's pauses are (``pause:global``,
    ``pause:service:<name>``)."""
    out: dict[str, dict[str, Any]] = {}
    for path in sorted([*state_dir.glob(PAUSE_FILE), *state_dir.glob(f"{PAUSE_FILE}.*")]):
        entry = read_pause_file(path)
        if entry is not None:
            out[PAUSE_GLOBAL if path.name == PAUSE_FILE else pause_key(path.name.split(".", 1)[1])] = entry
    return out


def pauses_in_force(store: Store, state_dir: Path) -> dict[str, dict[str, Any]]:
    """Every pause in force: the store's (``autonomic pause``, the API) and this host's pause
    files (:func:`pause_file`), keyed alike; a file's entry stands where both pause one scope."""
    return {**store.states("pause:"), **file_pauses(state_dir)}


def _pause_text(key: str, state: dict[str, Any] | None) -> str | None:
    if not state:
        return None
    scope = "global" if key == PAUSE_GLOBAL else key.rsplit(":", 1)[1]
    actor, reason = state.get("actor", "?"), state.get("reason", "")
    if state.get("file") is None:
        return f"{scope} pause by {actor}: {reason}".strip()
    by = "" if actor == "file" else f" (set by {actor})"
    return f"{scope} pause by the pause file {state['file']}{by}" + (f": {reason}" if reason else "")


def paused_reason(store: Store, service: str | None, state_dir: Path | None = None, *,
                  pauses: Mapping[str, dict[str, Any]] | None = None) -> str | None:
    """Why automation is paused for ``service`` (the global pause first), or None. With
    ``state_dir``, this host's pause files are read too, each before the store's pause of the same
    scope: a pause file stands even when the store does not answer. ``pauses``: every pause in
    force read once (:func:`pauses_in_force`), for many services, instead of reads for each."""
    def one(key: str, scope: str | None) -> str | None:
        if pauses is not None:
            return _pause_text(key, pauses.get(key))
        if state_dir is not None:
            found = _pause_text(key, read_pause_file(pause_file(state_dir, scope)))
            if found is not None:
                return found
        return _pause_text(key, store.get_state(key))

    return one(PAUSE_GLOBAL, None) or (None if service is None else one(pause_key(service), service))


class Engine:
    """Runs the loop over one configuration."""

    def __init__(
        self,
        config: Config,
        *,
        registry: Registry | None = None,
        clock: Clock | None = None,
        store: Store | None = None,
        notifiers: Dispatcher | None = None,
        sources: list[Source] | None = None,
        detectors: list[Detector] | None = None,
        metrics: Any = None,
        shadow_only: bool = False,
        assume_bound: bool = False,
    ) -> None:
        """Everything is built from ``config``; tests may hand in their own clock, store,
        notifiers, sources (say, a ReplaySource) and detectors. A ``state_dir`` that cannot be
        created, or a store that cannot be opened, raises StoreError naming it.

        ``shadow_only`` (``autonomic replay``): every decision is taken in shadow mode whatever
        the policy says and no supervised service is started: nothing can act, so the record says
        what would have been done. A pattern the service cannot carry out (an actuator it does not
        bind, a runbook its binding lacks) is passed over as the live engine passes it over, unless
        ``assume_bound`` (a replay without a config, whose services bind nothing: every remedy is
        taken as one the service could run; among remedies equally ranked, one through autonomic's own
        ``process`` actuator, the embedded default, is taken as the service's first binding)."""
        self.config = config
        self.shadow_only = shadow_only
        self.assume_bound = assume_bound
        self.registry = registry or default_registry()
        self.clock: Clock = clock or SystemClock()
        self.engine_spec = config.engine
        self.metrics: Any = metrics if metrics is not None else NullMetrics()
        try:
            # only its owner may read it (the store, service logs, pidfiles); a folder that is
            # already there keeps its mode
            config.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:  # raised as the store's: by default the store lives there
            raise StoreError(f"engine.state_dir: cannot create {config.state_dir}: {exc.strerror or exc}") from exc
        self.store = store or Store(config.database_url)
        if clock is None and self.store.shared_clock and not shadow_only:
            # replicas on several machines: every time stored and compared is the database server's
            # (see ServerClock), measured now and at every lease round (see _sync_clock), or every
            # CLOCK_SYNC_S by the loop of an engine without leader election
            self.clock = ServerClock()
            self._sync_clock()
        self._next_clock_sync = -math.inf  # when the loop measures the offset again (no leader election)
        # the config's secrets, hidden wherever the engine writes (the audit log, notifications)
        self.secrets = Secrets(config.secret_values())
        self.store.hide(self.secrets)
        self.series = SeriesStore()
        self.supervisor = Supervisor(config.state_dir / "run", withhold=config.secret_env_names)
        for svc in config.services:
            binding = config.bindings.get(svc.name, {}).get("process")
            if binding is not None:
                self.supervisor.add(svc.name, binding)  # type: ignore[arg-type]
        ctx = ActuatorContext(clock=self.clock, state_dir=config.state_dir, supervisor=self.supervisor)
        self.actuators = {t: self.registry.actuator(t)(ctx) for t in self.registry.types("actuator")}
        self._http: httpx.Client | None = None  # the sources' HTTP client, when built here
        self._collector: ThreadPoolExecutor | None = None  # the lanes of HTTP sources: see _collect_lanes
        try:  # what the host lacks (a notifier's secret unset): the store opened here is closed again,
            # as a config reload that is refused would otherwise leave it open, once per SIGHUP
            self.notifiers = notifiers or self._build_notifiers()
            # what a service's entry configures is all that samples it (see _cannot_run): the live
            # engine's own sources, and a replay of its recording with its config; not sources a test
            # hands in, nor a replay without a config
            self._config_sources = sources is None or (shadow_only and not assume_bound)
            self.sources: list[Source] = sources if sources is not None else self._build_sources()
        except BaseException:
            if notifiers is None and "notifiers" in vars(self):
                self.notifiers.close(timeout=0)
            if self._http is not None:
                self._http.close()
            if store is None:
                self.store.close()
            raise
        self.thresholds: dict[str, Thresholds] = {s.name: s.thresholds for s in config.services}
        if config.engine.host_metrics:
            self.thresholds["host"] = Thresholds()
        held_s = (self.series.capacity - 1) * config.engine.interval_s  # the history a series keeps
        # frozen: one list for every service without its own
        defaults = default_trend_specs(held_s, config.engine.interval_s)
        trend_specs = {s.name: (s.trends if s.trends is not None else defaults) for s in config.services}
        if config.engine.host_metrics:
            trend_specs["host"] = defaults
        seasonal = {s.name: s.seasonal_trends for s in config.services if s.seasonal_trends}
        anomalies = {s.name: s.anomalies for s in config.services if s.anomalies}
        # how long a sample counts: a range query's step loosens its own metric's staleness only
        self._sample_stale_s = stale_after(config.engine.interval_s)
        self._sample_stale_for = {
            s.name: {m.metric: stale_after(config.engine.interval_s, [m.step_s]) for m in s.metrics
                     if isinstance(m, PromQuerySpec) and m.mode == "range"} for s in config.services}
        self.detectors: list[Detector] = detectors if detectors is not None else [
            HealthDetector(self.thresholds, stale_s=self._sample_stale_s, stale_for=self._sample_stale_for),
            TrendDetector(trend_specs, self.thresholds),
            *([SeasonalTrendDetector(seasonal, self.thresholds)] if seasonal else []),
            *([AnomalyDetector(anomalies)] if anomalies else []),
        ]
        # the services' goals: their error budgets, fed with every sample collected (see collect)
        self.goals = GoalTracker({s.name: s.goals for s in config.services if s.goals})
        self.patterns = {p.id: p for p in config.patterns}
        # how far back match.after_actions looks, at the longest (None: no pattern counts actions)
        self._after_actions_s: float | None = max(
            (p.match.after_actions.within_s for p in config.patterns if p.match.after_actions is not None),
            default=None)
        edges = [(s.name, d) for s in config.services for d in s.depends_on]
        # service -> what it depends on, transitively (see _busy_until)
        self._dependencies: dict[str, tuple[str, ...]] = {
            s.name: tuple(d for d in dependency_closure(edges, s.name) if d != s.name)
            for s in config.services if s.depends_on}
        election = config.engine.leader_election
        # replicas over one database: only the lease's holder runs the loop (see run())
        self.elector: LeaderElector | None = None if not election.enabled or shadow_only else LeaderElector(
            self.store, identity=election.identity, lease_s=election.lease_s, renew_s=election.renew_s,
            config=config.fingerprint)
        self.queue = WorkQueue()
        self.stuck_after_s, self.stuck_basis = self._stuck_after()
        self.watchdog = Watchdog(self.stuck_after_s, elapsed_clock)
        self._stuck_said: str | None = None  # the stall the lease thread last logged (see _lease_round)
        self.executor = Executor(
            store=self.store, actuators=self.actuators, bindings=config.bindings, series=self.series,
            clock=self.clock, notify=self.notify, paused=self._may_act,
            on_result=self._record_result, on_undo_failed=self._open_breakers,
            on_stale=lambda action: self.queue.add(("incident", action.incident_id), self.clock.now()),
            on_paused=self._held_back,
            on_ended=self._escalation_step,
            decision_ttl_s=config.engine.decision_ttl_s, time_scale=config.engine.time_scale,
            progress=self.watchdog.beat, stopped=self._stopped_by_person, stopped_service=self._stopped_service,
        )
        self._open: dict[tuple[str, str], str] = {}  # (service, cause) -> unclosed incident id
        # every unclosed incident as last written, following the store's writes (see _follow)
        self._incidents: dict[str, Incident] = {}
        self._unclosed_on: dict[str, set[str]] = {}  # service -> ids of its unclosed incidents (in _incidents)
        self.store.on_record(self._follow)
        self._last_seen: dict[str, float] = {}  # incident id -> last finding time (in memory)
        self._last_persist: dict[str, float] = {}
        self._pending_repeats: Counter[str] = Counter()
        self._ladder_changes: list[Callable[[], None]] = []  # see _earned
        self._record_since: dict[str, float] = {}  # per pattern: see _note_pattern_changes
        # per changed pattern, per service: see _tallies_now; and the tallies it was read beside
        self._record_before: dict[str, dict[str, tuple[int, int]]] = {}
        self._record_before_beside: object = None
        self._held: list[tuple[str | None, Notification]] | None = None  # see _holding_notifications
        # outbox keys the notifiers are through with, and which of them gave up (see _settle_outbox)
        self._sent: collections.deque[tuple[str, list[str]]] = collections.deque()
        self._outgoing: dict[str, _Outgoing] = {}  # kept in the outbox and sent, not yet settled
        # each pattern's measured record, read once and moved by each action that ends (see _follow)
        self._tallies = PatternTallies(self.store)
        self._seen_signatures: dict[str, set[tuple[str, str]]] = {}  # (kind, metric) already stored
        self._metric_seen: dict[str, dict[str, float]] = {}  # incident -> metric -> its last finding's time
        self._problems: dict[str, str] = {}  # each ongoing problem, by topic, logged once (see _problem)
        self._answered: dict[str, float] = {}  # source topic -> when it last answered (see _still_starting)
        self._next_collect = 0.0
        self._inbox: queue.SimpleQueue[Finding] = queue.SimpleQueue()
        self._inbox_taken: set[str] = set()  # inbox keys whose findings are in memory (see _read_inbox)
        # the supervised services people stopped on purpose, as the store said at the last collection
        self._stopped: dict[str, dict[str, Any]] = {}
        self._inbox_of: dict[str, str] = {}  # finding id -> the inbox key it was read from
        # incident id -> fingerprints of its Alertmanager alerts still firing (no resolved
        # notification yet): such an incident is quiet only after alert_resolve_after_s (see _sweep)
        self._alerts_firing: dict[str, set[str]] = {}
        self._alerts_resolved: list[str] = []  # read from the inbox, applied after this collection's ingest
        self._paused_out: set[str] = set()  # escalated incidents only a pause denied (see _held_by_pause)
        self._override_told = ""  # the stored policy override last said not to validate (see _policy_from)
        self._waits_told: dict[str, tuple[str, str]] = {}  # incident -> (on, reason) of the wait last audited
        self._turns_told: set[str] = set()  # incidents people were told wait their turn (see _tell_turn)
        self._told_read: set[str] = set()  # incidents whose told waits were read from the store (_recall_told)
        self.started = False
        self._next_checkpoint = math.inf  # set by start()
        self._next_prune = math.inf  # set by start(): see _prune
        self._services_stopped = False  # see _stop_services
        # asked when the services would be stopped: True leaves them running for the engine that
        # replaces this one in the same process (a config reload), which takes them over
        self.keep_services: Callable[[], bool] | None = None
        self.services_kept = False
        # off after the audit log failed to verify for pruning (see _prune); and with replicas
        # unless the archive is a folder they all share (the default, state_dir, is each one's own)
        self._audit_pruning = config.audit_kept is None
        self.before_close: list[Callable[[], None]] = []  # e.g. stop the API before the store closes
        self.ticks = 0
        self.last_tick_at: float | None = None
        self._last_now: float | None = None  # the clock at the previous tick (see _clock_went_back)
        self._file_paused: dict[str, str] = {}  # this host's pause files at the last tick (see _watch_pause_files)
        self._unstored: list[Finding] = []  # findings the store refused last tick, ingested first next tick

    # --- construction ----------------------------------------------------------------------

    def _build_notifiers(self) -> Dispatcher:
        retry = (f"what it did not take is offered to it again in {duration(NOTIFY_RETRY_BASE_S)}, then less often (at "
                 f"most {duration(NOTIFY_RETRY_CAP_S)} apart) until {duration(self.config.engine.notify_retry_for_s)} "
                 "after it was made")
        return build_dispatcher(self.config.spec.notifiers, self.config.base_dir, source=self.config.source,
                                on_failure=lambda name: self.metrics.notifier_failure(name), retry_note=retry)

    def _build_sources(self) -> list[Source]:
        sources: list[Source] = []
        if self.config.engine.host_metrics:
            sources.append(HostSource(self.clock))
        limits = {}
        for svc in self.config.services:
            binding = self.config.bindings.get(svc.name, {}).get("process")
            limits[svc.name] = getattr(binding, "memory_limit_bytes", None)
        if self.supervisor.services():
            sources.append(ProcessSource(self.supervisor.pids, limits, stopped=lambda: self._stopped))
        # one HTTP client for every source: a client is ~40 ms and ~0.8 MB to make (its TLS
        # context), too much per service for a fleet; it keeps no cookies, so none set by one
        # service is sent to another on the same host
        # (a deadline.Client: a server trickling its headers cannot hold a collection past its timeout)
        client = self._http = DeadlineClient(cookies=CookieJar(DefaultCookiePolicy(allowed_domains=[])))
        shared: dict[tuple[str, str, float], list[PromQuerySource]] = {}  # see SharedPromQuery
        at: dict[tuple[str, str, float], int] = {}  # where each shared query's first source is
        unanswered = Unanswered()  # a Prometheus that hangs: not asked the rest of a collection
        for svc in self.config.services:
            if len(svc.probes) == 1:
                sources.append(HttpProbe(svc.name, svc.probes[0], client))
            elif svc.probes:  # one reading per collection, so down_after counts collections
                sources.append(ProbeGroup(svc.name, [HttpProbe(svc.name, p, client) for p in svc.probes]))
            for m in svc.metrics:
                if not isinstance(m, PromQuerySpec):
                    sources.append(PrometheusScrape(svc.name, m, client))
                    continue
                src = PromQuerySource(svc.name, m, client, unanswered)
                key = shared_key(m)
                if key is None:
                    sources.append(src)
                elif key in shared:
                    shared[key].append(src)
                else:
                    shared[key], at[key] = [src], len(sources)
                    sources.append(src)
        for key, group in shared.items():
            if len(group) > 1:
                sources[at[key]] = SharedPromQuery(group)
        sources.extend(self._unit_sources())
        return sources

    def _unit_sources(self) -> list[UnitStateSource]:
        """One source per service whose unit a bound actuator reads (see ``monitor.unitstate.unit_kind``):
        its ``unit_state``, called with the service's binding, sampled as ``up`` and the like, less
        what a metrics source of the service records by name (its scrape renamed to ``up``: the
        config's own say; two ``up`` series of one service could disagree). Each is in the lane of
        the manager it asks (the actuator's ``unit_lane``, else one lane per actuator type), and a
        manager that does not answer is not asked again in that collection (see
        :mod:`autonomic.monitor.unitstate`)."""
        sources = []
        # a manager that does not answer: not asked the rest of a collection
        unanswered = Unanswered("reads", "each unreachable, not answering in time, or busy")
        for svc in self.config.services:
            bindings = self.config.bindings.get(svc.name, {})
            kind = unit_kind(bindings)
            actuator = self.actuators.get(kind) if kind is not None else None
            read = getattr(actuator, "unit_state", None)
            if kind is None or read is None:
                continue
            target = Target(service=svc.name, binding=bindings[kind])
            limit = getattr(actuator, "unit_state_limit_s", None)
            limit_s = DEFAULT_CALL_LIMIT_S if limit is None else float(limit(target))
            named = [m for m in UNIT_METRICS[kind] if svc.names(m)]
            lane = getattr(actuator, "unit_lane", None)
            sources.append(UnitStateSource(svc.name, kind, functools.partial(read, target), limit_s, named,
                                           lane=None if lane is None else str(lane(target)), unanswered=unanswered))
        return sources

    # --- liveness --------------------------------------------------------------------------

    def stop_needs_s(self) -> tuple[float, str]:
        """How long a clean stop may take once asked for (SIGTERM), and how that was worked out, for
        the start's log line under systemd (whose ``TimeoutStopSec=`` should be longer; systemd
        does not tell the process its value): the current step, at most :attr:`stuck_after_s`;
        then, with ``stop_services_on_exit``, the supervised services' longest ``stop_timeout_s``
        and the wait after a SIGKILL; then its last store writes (each at most the store's
        ``call_limit_s``, when the database does not answer); then the notifiers' last sends."""
        parts = [(self.stuck_after_s, f"the current step, at most stuck_after_s {self.stuck_after_s:g} s")]
        if self.config.engine.stop_services_on_exit and not self.shadow_only:
            timeouts = [float(getattr(b.get("process"), "stop_timeout_s", 0.0))
                        for b in self.config.bindings.values() if b.get("process") is not None]
            if timeouts:
                parts.append((max(timeouts) + _KILLED_WAIT_S, f"the services' longest stop_timeout_s {max(timeouts):g} "
                              f"s + {_KILLED_WAIT_S:g} s after a SIGKILL"))
        # engine.stopped, and with leader election a renewal in flight and the lease's release
        writes = 1 if self.elector is None else 3
        store_s = float(getattr(self.store, "call_limit_s", 20.0))
        parts.append((writes * store_s, f"{writes} last store write{'s' if writes > 1 else ''} of at most "
                                        f"{store_s:g} s"))
        parts.append((NOTIFIERS_CLOSE_S, f"the notifiers {NOTIFIERS_CLOSE_S:g} s"))
        return sum(s for s, _ in parts), " + ".join(text for _, text in parts)

    def _stuck_after(self) -> tuple[float, str]:
        """How long the loop may go without progress before it counts as stuck, and how that was
        worked out, for the start's log line. ``engine.stuck_after_s`` when given; else the longest
        step the loop can take between two beats of its watchdog (see :mod:`autonomic.liveness`):
        the wait for the next tick (``interval_s``, or ``retry_s`` on a standby), plus its one slow
        call (the longest actuator call any service's bindings allow, by each actuator's
        ``call_limit_s`` and the params of every pattern and fallback; or one source's collection,
        by its timeouts), plus the store calls around it (each at most what the store waits for
        before giving up: :attr:`Store.call_limit_s`). Retries are not counted: every attempt
        beats. Verification windows and backoffs are not steps: they are queued work. Without a
        timed call (no actuator bound, no probe or metrics source: host metrics are read locally,
        untimed) the basis leaves the call out rather than name "0 s (no source)"."""
        engine = self.config.engine
        store_s = float(getattr(self.store, "call_limit_s", 20.0))
        wait_s = max(engine.interval_s, engine.leader_election.retry_s if self.elector is not None else 0.0)
        call_s, call = self._longest_actuator_call()
        if call_s > 0:  # a failed call may be followed by the pause before its retry (which beats again)
            call_s, call = call_s + RETRY_PAUSE_MAX_S, f"{call}, and the pause before a retry"
        slow_s, slow = max((call_s, call), self._longest_collection())
        worked_out = wait_s + slow_s + _STORE_CALLS_PER_STEP * store_s
        timed = [f"the longest call {slow_s:g} s ({slow})"] if slow_s > 0 else []  # none: no call is timed
        basis = " + ".join([f"the wait for the next tick {wait_s:g} s", *timed,
                            f"{_STORE_CALLS_PER_STEP} store calls of at most {store_s:g} s"])
        if engine.stuck_after_s is not None:
            return engine.stuck_after_s, f"engine.stuck_after_s; worked out from the config: {worked_out:g} s ({basis})"
        return worked_out, basis

    def _longest_actuator_call(self) -> tuple[float, str]:
        """The longest one actuator call the config allows, and which: over every service and every
        action it may be given (each pattern's action and workflow steps, its fallback) whose
        actuator it binds."""
        longest, which = 0.0, "no actuator bound"
        for svc in self.config.services:
            if not self.config.bindings.get(svc.name):
                continue  # binds no actuator: no call is ever made on it (a fleet's watched-only services)
            cannot = self._cannot_run(svc.name)  # a runbook its binding lacks: never run here
            specs = [(svc.fallback.type, svc.fallback.params)] if svc.fallback is not None else []
            for pattern in self.config.patterns:
                if pattern.action is not None and pattern.id not in cannot:
                    specs.append((pattern.action.type, pattern.action.params))
                    specs.extend((step.type, step.params) for step in pattern.action.steps)
            for kind, params in specs:
                seconds = self._call_limit_s(svc.name, kind, params)
                if seconds is not None and seconds > longest:
                    longest = seconds
                    unknown = f", which gives no call_limit_s: {DEFAULT_CALL_LIMIT_S:g} s assumed"
                    which = f"{kind} on {svc.name}" + (unknown if self._no_call_limit(kind) else "")
            reads, kinds = self._unit_reads_s(svc.name)
            if reads > longest:
                longest, which = reads, f"reading whether {svc.name}'s unit is dead ({', '.join(kinds)})"
        return longest, which

    def _unit_reads_s(self, service: str) -> tuple[float, list[str]]:
        """The longest the reads of :meth:`_own_failure` can take for ``service`` (made while
        diagnosing, one after another, in one step of the loop), and through which actuators: each
        bound actuator's ``unit_exit_limit_s`` (DEFAULT_CALL_LIMIT_S for a ``unit_exit`` without
        one). None are made for a service without dependencies, or with a ``process`` binding
        (its supervisor says)."""
        bindings = self.config.bindings.get(service, {})
        if service not in self._dependencies or bindings.get("process") is not None:
            return 0.0, []
        total, kinds = 0.0, []
        for kind, binding in bindings.items():
            actuator = self.actuators.get(kind)
            if getattr(actuator, "unit_exit", None) is None:
                continue
            limit = getattr(actuator, "unit_exit_limit_s", None)
            total += DEFAULT_CALL_LIMIT_S if limit is None else float(limit(Target(service=service, binding=binding)))
            kinds.append(kind)
        return total, kinds

    def _no_call_limit(self, kind: str) -> bool:
        """Whether actuator ``kind`` gives no ``call_limit_s`` (a plug-in): DEFAULT_CALL_LIMIT_S is assumed."""
        return getattr(self.actuators.get(kind), "call_limit_s", None) is None

    def _call_limit_s(self, service: str, kind: str, params: dict[str, Any]) -> float | None:
        """The longest one call of actuator ``kind`` with ``params`` on ``service`` can take, by
        the actuator's ``call_limit_s`` (DEFAULT_CALL_LIMIT_S for one that gives none); None when
        the service does not bind it or it refuses the params (never run so)."""
        binding = self.config.bindings.get(service, {}).get(kind)
        actuator = self.actuators.get(kind)
        if binding is None or actuator is None:
            return None
        limit = getattr(actuator, "call_limit_s", None)
        try:
            return (DEFAULT_CALL_LIMIT_S if limit is None else
                    float(limit(Target(service=service, binding=binding), actuator.Params.model_validate(params))))
        except (ValidationError, AutonomicError, ValueError, TypeError):
            return None

    def _takeover_grace_s(self, action: Action) -> tuple[float, str]:
        """How long after taking over a lease its holder did not give up an action it left running
        or rolling back is left alone, and why: ``takeover_grace_s`` when the config gives it;
        else the longest one call of the action can take (its workflow's longest step), less
        ``lease_s - renew_s``. The old leader starts no call, nor a retry, once it has gone
        ``renew_s`` without renewing, and this replica took the lease no sooner than ``lease_s``
        after that renewal (each on its own monotonic clock), so its last call ends by then."""
        election = self.config.engine.leader_election
        if election.takeover_grace_s is not None:
            return election.takeover_grace_s, "takeover_grace_s"
        calls = [(action.type, action.params), *((step.type, step.params) for step in action.workflow)]
        limits = [s for kind, params in calls if (s := self._call_limit_s(action.service, kind, params)) is not None]
        longest = max(limits, default=DEFAULT_CALL_LIMIT_S)
        margin = election.lease_s - election.renew_s
        return max(0.0, longest - margin), f"its longest call, {longest:g} s, less lease_s - renew_s, {margin:g} s"

    def _longest_collection(self) -> tuple[float, str]:
        """The longest one source's collection can take, by the timeouts of the services' probes
        (a service's probes run one after another, each bounded by its timeout and as long again
        to connect), metrics (httpx bounds each phase of a request by the timeout on its own) and
        unit states (each unit-state source's read, by its actuator's ``unit_state_limit_s``)."""
        longest, which = 0.0, "no source"
        for src in self.sources:
            if isinstance(src, UnitStateSource) and src.limit_s > longest:
                longest, which = src.limit_s, f"reading the state of {src.service}'s {src.kind} unit"
        for svc in self.config.services:
            probes_s = sum(2 * p.timeout_s for p in svc.probes)
            metrics_s = max((4 * float(getattr(m, "timeout_s", 5.0)) for m in svc.metrics), default=0.0)
            for seconds, what in ((probes_s, f"the probes of {svc.name}"), (metrics_s, f"the metrics of {svc.name}")):
                if seconds > longest:
                    longest, which = seconds, what
        return longest, which

    @property
    def stuck(self) -> str | None:
        """Why the loop counts as stuck (no progress for ``stuck_after_s``, naming the step it is
        in), or None. Asked by the lease thread (a stuck leader stops renewing) and ``/healthz``."""
        return self.watchdog.stuck()

    # --- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        """Adopt or start supervised services and re-enqueue every unfinished item."""
        now = self.clock.now()
        lease = {} if self.elector is None else {"replica": self.elector.identity, "lease": self.elector.describe(),
                                                 "config_fingerprint": self.config.fingerprint}
        self.store.audit("engine", "engine.started", "engine",
                         {"config": self.config.source, "services": [s.name for s in self.config.services],
                          **lease})
        # read before this engine notifies anyone: what is in the outbox now, an engine before it left
        left_over = {} if self.shadow_only else self.store.states(OUTBOX)
        filled = self.store.fill_derived()  # before anything reads the history through them
        self._record_since = self._note_pattern_changes(now)
        if any(filled.values()):
            log.warning("the store held %s written by an older autonomic after it was migrated (a rolling "
                        "upgrade's old replica, or an engine left running while a newer autonomic opened the "
                        "store): their indexed columns are now filled from the rows themselves",
                        " and ".join(f"{n} {table}" for table, n in filled.items() if n))
        for service, bindings in self.config.bindings.items():  # a path that is not here fails at 3 a.m.
            for kind, binding in bindings.items():
                for problem in getattr(binding, "missing", lambda: [])():
                    log.warning("service %s: actuators.%s.%s; its actions will fail until it is", service, kind,
                                problem)
        if os.getpid() == 1 and not self.shadow_only:
            log.warning("running as PID 1 (a container's only process): processes that runbooks and supervised "
                        "services leave behind become autonomic's children and are never reaped (zombies, until "
                        "the PID table is full); run it under an init: docker run --init, or tini as the entrypoint")
        if not self.shadow_only:
            # a paused service is not started: a person may have stopped it on purpose; one a
            # person stopped with autonomic stop is not started until a person starts it
            self._stopped = self._read_stopped()
            held = self.supervisor.adopt_or_start_all(hold=lambda svc: _stopped_text(
                svc, self._stopped.get(svc), self.config.command)
                or paused_reason(self.store, svc, self.config.state_dir))
            for service, how in held.items():
                # held or failed to start (a command not found): worth a person's eye, not INFO
                (log.warning if how.startswith(("held", "error")) else log.info)("service %s: %s", service, how)
        for inc in self.store.incidents(unclosed=True, limit=None):
            self.watchdog.beat(f"starting: reading incident {inc.id[:8]} back from the store")
            self._incidents.setdefault(inc.id, inc)
            self._unclosed_on.setdefault(inc.service, set()).add(inc.id)
            self._open[(inc.service, inc.cause)] = inc.id
            # quiet counts from when this engine watches again: while it was stopped (or another
            # replica led and then died) nobody looked, and an incident not seen then is not quiet
            self._last_seen[inc.id] = max(inc.last_finding_at, now)
            self._last_persist[inc.id] = inc.updated_at - _persist_phase(inc.id)
            if inc.kind == FindingKind.ALERT:  # resolved notifications missed while down: still firing
                fired = {str(f.evidence.get("fingerprint")) for f in self.store.findings(inc.id)
                         if f.kind == FindingKind.ALERT and f.evidence.get("fingerprint")}
                if fired:
                    self._alerts_firing[inc.id] = fired
            if inc.state == IncidentState.ESCALATED:
                decisions = self.store.decisions(inc.id)
                if self._only_paused_held(decisions):
                    self._paused_out.add(inc.id)
            self.queue.add(("incident", inc.id), now)
        previous = None if self.elector is None else self.elector.took_over_from
        for action in self.store.actions(states=[s for s in ActionState if not s.terminal]):
            if previous is not None and action.state in _MAY_BE_IN_FLIGHT:
                grace, why = self._takeover_grace_s(action)
                log.warning("%s action %s on %s was left %s by %s, whose lease this replica took: a call of "
                            "its may still be in flight, so it is looked at in %g s (%s)", action.type,
                            action.id[:8], action.service, action.state.value, previous, grace, why)
                self.queue.add(("action", action.id), now + grace)
                continue
            log.info("reconciling %s action %s on %s left %s", action.type, action.id[:8],
                     action.service, action.state.value)
            self.queue.add(("action", action.id), now)
        self._restore_detectors()
        if self._config_sources:  # a line, forecast or anomaly watch of a metric nothing samples
            for warning in self.config.warnings:
                if ".goals[" not in warning.field:
                    log.warning("config: %s: %s", warning.field, warning.message)
        self._restore_goals()
        self._check_override_retention()
        if not self._audit_pruning and self.config.spec.retention.audit_s is not None and not self.shadow_only:
            log.warning("retention: audit entries are kept in the store, not archived and pruned: %s (or "
                        "retention.audit_days: null to say so)", self.config.audit_kept)
        self._next_checkpoint = now + self.config.engine.checkpoint_s
        # at the first tick that leads, then every retention.interval_s; never in a replay, which
        # reports every incident of its private store at the end, however long the recording
        self._next_prune = math.inf if self.shadow_only else now
        self._send_left_over(left_over)
        self.started = True

    def _note_pattern_changes(self, now: float) -> dict[str, float]:
        """Per pattern with an action, since when its record counts toward the autonomy it earns
        (:meth:`_earned`): 0 (all of it), or when its remedy last changed (its
        :attr:`~autonomic.model.Pattern.remedy_fingerprint`: another action, verification, match,
        chain or version). A remedy edited after it earned ``auto`` would otherwise run on its own
        at once, vouched for by the record of another remedy. A pattern first seen (new, or a store
        kept by an autonomic before this) is stored as it is, its whole record counting; a changed
        one is stored with ``since`` now, audited (``pattern.changed``), logged, and told when it had
        earned a level anywhere. Nothing is written in a replay (shadow only)."""
        stored = self.store.states(PATTERN_STATE)
        since: dict[str, float] = {}
        for p in self.config.patterns:
            if p.action is None:
                continue
            key, fingerprint = PATTERN_STATE + p.id, p.remedy_fingerprint
            was = stored.get(key)
            if was is not None and was.get("fingerprint") == fingerprint:
                since[p.id] = float(was.get("since") or 0.0)
                continue
            since[p.id] = 0.0 if was is None else now
            if self.shadow_only:
                continue
            value = {"fingerprint": fingerprint, "version": p.version, "since": since[p.id]}
            if was is None:
                self.store.keep_states({key: value})
                continue
            prefix = f"{AUTONOMY_STATE}{p.id}:"
            earned = {k.removeprefix(prefix): v.get("level") for k, v in self.store.states(prefix).items()}
            versions = f"version {was.get('version')} -> {p.version}, " if was.get("version") != p.version else ""
            why = (f"its remedy changed ({versions}fingerprint {was.get('fingerprint')} -> {fingerprint}): the "
                   "autonomy it earns counts only its record from now on"
                   + (f"; it had earned {', '.join(f'{level} on {svc}' for svc, level in sorted(earned.items()))}"
                      if earned else ""))
            self.store.set_state(key, value, actor="engine", event="pattern.changed", data={"pattern": p.id,
                                                                                            "reason": why})
            log.warning("pattern %s (%s): %s", p.id, p.source, why)
            if earned:
                self.notify(Notification(level=Level.INFO, ts=now, title=f"pattern {p.id} changed: the autonomy "
                                         "it earned starts again", body=why))
        return since

    def _check_override_retention(self) -> None:
        """Warn, naming the field as loading the file would, when the policy an admin stored at
        run time (PUT /api/v1/policy, refused now when it does this) reads further back than the
        file's retention keeps: stored before an upgrade that turned retention on, or before the
        file's retention was shortened. Kept in force, as stored; the fix is a person's."""
        raw = self.store.get_state(POLICY_OVERRIDE)
        if not raw:
            return
        for key, message in policy_retention_too_short(self.config, self._policy_from(raw)):
            log.warning("retention.%s: %s (with the policy stored by PUT /api/v1/policy; lengthen retention.%s "
                        "in the file, or PUT a policy within it)", key, message, key)

    @property
    def _checkpoint_path(self) -> Path:
        return self.config.state_dir / "detectors.json"

    def _restore_detectors(self) -> None:
        """Give each checkpointed detector its state from the last run (see checkpoint_detectors).
        A file that cannot be read is moved aside (``detectors.json.bad``) with a warning, and
        the detectors start fresh; so does one detector whose state is malformed. A shadow-only
        engine (``autonomic replay``) neither reads nor writes it: a replay learns from its
        recording alone and leaves the live engine's state as it was."""
        path = self._checkpoint_path
        if self.shadow_only or not path.exists():
            return
        try:
            saved = json.loads(path.read_text())
            states = saved["detectors"]
            if not isinstance(states, dict):
                raise ValueError("'detectors' must be an object")
        except (OSError, ValueError, KeyError, TypeError) as exc:
            bad = path.with_name(path.name + ".bad")
            log.warning("detector checkpoint %s is unreadable (%s); moved to %s, detectors start fresh",
                        path, exc, bad)
            with contextlib.suppress(OSError):
                path.replace(bad)
            return
        for det in self.detectors:
            if not isinstance(det, Checkpointed) or det.name not in states:
                continue
            try:
                for note in det.restore(states[det.name]):
                    log.info("detector %s: %s", det.name, note)
                log.info("detector %s: state restored from %s", det.name, path)
            except Exception as exc:  # a damaged state costs a warm-up, never the engine
                log.warning("detector %s: checkpoint not used (%s); it starts fresh", det.name, exc)

    def checkpoint_detectors(self, now: float) -> None:
        """Write every checkpointed detector's state to ``state_dir/detectors.json`` (atomically:
        a crash mid-write leaves the previous file). Not in a shadow-only engine."""
        if self.shadow_only:
            return
        states = {}
        for det in self.detectors:
            if isinstance(det, Checkpointed):
                try:
                    states[det.name] = det.checkpoint()
                except Exception:
                    log.exception("detector %s: checkpoint failed", det.name)
        self._next_checkpoint = now + self.config.engine.checkpoint_s
        if not states:
            return
        path = self._checkpoint_path
        tmp = path.with_name(path.name + ".tmp")
        try:
            tmp.write_text(json.dumps({"saved_at": now, "detectors": states}, allow_nan=False))
            os.replace(tmp, path)
        except (OSError, ValueError) as exc:
            log.warning("detector checkpoint %s not written: %s", path, exc)

    def _restore_goals(self) -> None:
        """Give each goal its budget's counts and the rules firing as last saved in the store (see
        save_goals); a goal with none, or whose saved counts are of another SLI or malformed, starts
        afresh (logged). What is saved of a goal not in the config is deleted, each audited
        ``goal.dropped`` (once: it is gone after), else it would stay in the store for ever: at once
        without leader election (this engine is the only one on its store), and with it only once
        nothing in it is left to use (:func:`aged_out_at`): another replica may run another config,
        a newer one in a rolling upgrade, whose goal it is and which goes on from it when it leads."""
        configured = {goal_key(s, n) for s, n in self.goals.goals}
        now = self.clock.now()
        for key, state in sorted(self.store.states(GOAL_STATE_PREFIX).items()):
            if key in configured:
                continue
            if self.elector is not None:
                until = aged_out_at(state)
                if until is not None and until > now:
                    log.info("goals: %s is not in this config; its saved budget is left as it is (leader election: "
                             "a replica whose config has the goal, a newer one in a rolling upgrade, goes on from "
                             "it); a leader's start deletes it once its counts have aged out, after %s", key,
                             utc_stamp(until))
                    continue
                reason = "the goal is not in this config and its counts have aged out of its window"
            else:
                reason = "the goal is no longer in the config"
            self.store.set_state(key, None, actor="engine", event="goal.dropped", data={"reason": reason},
                                 audit_value=False)
            log.info("goals: %s: %s: its saved budget was deleted", key, reason)
        if not self.goals.goals:
            return
        if self._config_sources:  # else the samples come from elsewhere (a replay), not the config's sources
            for warning in self.config.warnings:
                if ".goals[" in warning.field:  # the others are said at start (see start)
                    log.warning("goals: %s: %s", warning.field, warning.message)
        saved = self.store.get_states(goal_key(s, n) for s, n in self.goals.goals)
        for note in self.goals.restore(saved):
            log.warning("goals: %s", note)
        restored = sum(v is not None for v in saved.values())
        if restored:
            log.info("goals: %s read back from the store", counted(restored, "error budget"))

    def save_goals(self, now: float) -> None:
        """Write every goal's budget counts and the rules firing to the store
        (``goal:<service>:<goal>``), where ``autonomic status`` and the API read them and a restart
        takes them back. Called with the detectors' checkpoint (every ``engine.checkpoint_s``) and
        at shutdown: a crash loses at most that long of counts. Bookkeeping, in one unaudited write
        (``Store.keep_states``): what is worth an audit entry, a rule starting or stopping firing,
        is saved and audited when it happens (:meth:`_save_goal_transitions`)."""
        if self.goals.goals:
            self._save_goal_transitions(now)  # what was refused at its tick: audited, not only kept
            self.store.keep_states(self.goals.checkpoint())

    def _save_goal_transitions(self, now: float) -> None:
        """Save at once, audited, each goal whose burn rules started or stopped firing since it was
        last saved (``goal.burn_started`` when one started, else ``goal.burn_stopped``; the rules,
        those firing now and the budget left): a restart then goes on with the episode already told
        (no second page for it), a crash between two checkpoints included. A goal whose write is
        refused is saved at the next tick (with what changed meanwhile)."""
        for change in self.goals.transitions():
            service, name = change["service"], change["goal"]
            left = self.goals.budgets[(service, name)].remaining(now)
            self.store.set_state(goal_key(service, name), self.goals.state(service, name), actor="engine",
                                 event="goal.burn_started" if change["started"] else "goal.burn_stopped",
                                 data={**change, "budget_remaining": None if left is None else round(left, 6)},
                                 audit_value=False)
            self.goals.saved(service, name)

    def _follow(self, nouns: tuple[Any, ...]) -> None:
        """Keep the cache of unclosed incidents in step with every incident written to the store;
        an incident written closed (by the sweep, or by the executor on a verified fix) is
        forgotten at once, so per-incident memory is bounded by the unclosed incidents (and
        per-service memory by the services with one)."""
        self._tallies.follow(nouns)
        for noun in nouns:
            if isinstance(noun, Incident):
                if noun.closed_at is None:
                    self._incidents[noun.id] = noun
                    self._unclosed_on.setdefault(noun.service, set()).add(noun.id)
                else:
                    self._incidents.pop(noun.id, None)
                    ids = self._unclosed_on.get(noun.service)
                    if ids is not None:
                        ids.discard(noun.id)
                        if not ids:  # a service named only by alerts may never come back
                            del self._unclosed_on[noun.service]
                    key = (noun.service, noun.cause)
                    if self._open.get(key) == noun.id:
                        del self._open[key]
                    self._forget(noun.id)

    def _incident(self, incident_id: str) -> Incident | None:
        """The incident as stored: from the cache when unclosed, else read."""
        return self._incidents.get(incident_id) or self.store.get(Incident, incident_id)

    def shutdown(self) -> None:
        """Stop between steps: every action is at a journaled state, so nothing is half-done.
        A leader gives its lease up last, so a standby takes over at its next round; a standby
        that never led only closes what it opened."""
        for hook in self.before_close:
            try:
                hook()
            except Exception:
                log.exception("shutdown hook failed")
        if self.elector is None or self.started:
            self.checkpoint_detectors(self.clock.now())
            if not (self.elector is not None and self.elector.lost):
                try:
                    self.save_goals(self.clock.now())
                except StoreError as exc:  # stopping goes on; the counts since the last save are lost
                    log.error("goals: budgets not saved: %s", exc)
            if self.elector is not None and self.elector.lost:
                log.warning("engine.stopped not recorded: %s", self.elector.describe())
            else:
                try:
                    self.store.audit("engine", "engine.stopped", "engine", {})
                except StoreError as exc:  # stopping goes on: the services and notifiers still need it
                    log.error("could not record engine.stopped: %s", exc)
            self._stop_services()
            self.notifiers.close(timeout=NOTIFIERS_CLOSE_S)
            if not (self.elector is not None and self.elector.lost):
                # what was delivered: the next engine need not send it again; what failed, only to those
                self._settle_outbox(self.clock.now(), retry=False)
            if self.elector is not None:
                self.elector.release()
        else:
            self.notifiers.close(timeout=NOTIFIERS_CLOSE_S)
        if self._collector is not None:
            self._collector.shutdown(wait=False, cancel_futures=True)
        if self._http is not None:
            self._http.close()
        self.store.close()

    def _stop_services(self) -> None:
        """Stop the supervised services (``stop_services_on_exit``), each given its binding's
        stop_timeout_s, as a restart gives it; once: :meth:`run` stops them before it stops
        renewing the lease, :meth:`shutdown` when nothing did."""
        if self._services_stopped:
            return
        if self.keep_services is not None and self.keep_services():  # asked first: a reload also when
            self._services_stopped = self.services_kept = True  # the services are left running on exit
            return
        if not self.config.engine.stop_services_on_exit or self.shadow_only:
            return
        self._services_stopped = True
        self.watchdog.beat("stopping the supervised services")
        self.supervisor.stop_all()

    @property
    def open_incidents(self) -> int:
        """How many incidents are not closed (as this engine follows them; 0 on a standby)."""
        return len(self._incidents)

    @property
    def standby(self) -> str | None:
        """Why this replica is not running the loop (leader election: another replica leads, or
        this one lost or cannot renew the lease), or None when it runs it."""
        if self.elector is None or self.elector.leading:
            return None
        return self.elector.describe()

    def _may_act(self, service: str) -> str | None:
        """Asked before every actuator call: raises NotLeaderError when this replica is not
        surely the leader (nothing is run or written; the step is retried, or recovered by the
        replica that leads), else the pause reason for ``service`` (the kill switch, the last
        thing read from the store). Leadership is asked again after that read, with no I/O left
        before the call: a read that stalled past ``renew_s`` may have let a standby take over."""
        if self.elector is not None:
            self.elector.check()  # no store read for a replica that does not lead
        reason = paused_reason(self.store, service, self.config.state_dir)
        if reason is None and self.elector is not None:
            self.elector.check()
        return reason

    def _stopped_by_person(self, service: str, action_type: str) -> str | None:
        """Asked by the executor right before the kill switch: why an action through ``action_type``
        must not run on ``service`` (cancelled: :meth:`Executor._cancel_stopped`; an undo or a
        compensation not run), when a person stopped it on purpose (``autonomic stop``) and the
        action would act on its running state: its process (a ``process`` restart would start it
        again), or the unit, container or workload a ``systemd``, ``docker`` or ``kubernetes``
        binding beside it names. Read from the store, not this engine's cache: the stop is
        recorded there before the process is stopped, so it holds across a crash."""
        if action_type != "process" and action_type not in _UNIT_FIELD:
            return None
        return self._stopped_service(service)

    def _stopped_service(self, service: str) -> str | None:
        """Why ``service`` is down on purpose (who stopped it, when, their comment), whatever an
        action on it runs through, or None: asked by the executor before it judges a fix's
        verification or the check after its undo, which a service a person stopped cannot pass.
        Read from the store, as :meth:`_stopped_by_person` is."""
        return _stopped_text(service, self.store.get_state(stopped_key(service)), self.config.command)

    def _sync_clock(self) -> None:
        """Measure again how far this host's clock is off the database server's (a ServerClock
        only); a change of a second or more is logged. A store that does not answer leaves the
        offset as it was (the lease round says so)."""
        if not isinstance(self.clock, ServerClock):
            return
        try:
            change = self.clock.measure(self.store.server_time)
        except StoreError:
            return
        if change is not None and abs(change) >= 1.0:
            log.warning("this host's clock is %+.1f s off the database server's; the engine keeps the server's "
                        "time (fix the host's time sync: its logs are stamped by its own clock)", -self.clock.offset)

    def _lead(self, stop: threading.Event, on_standby: Callable[[Engine], None] | None = None) -> bool:
        """Leader election: stand by until this replica holds the lease (True) or ``stop`` is set
        (False), trying every ``retry_s``; each change of leader is logged once. ``on_standby`` is
        called after each round that left another replica leading."""
        assert self.elector is not None
        said = None
        while not stop.is_set():
            self.watchdog.beat("standing by: a round of the lease")
            self._sync_clock()
            if self.elector.attempt():
                return True
            text = self.elector.describe()
            if text != said:
                log.info("lease: %s", text)
                said = text
            if on_standby is not None:
                on_standby(self)
            stop.wait(self.config.engine.leader_election.retry_s)
        return False

    def _keep_lease(self, stop: threading.Event, done: threading.Event) -> None:
        """The leader's renewals, in their own thread (until ``done``) so a long step (an actuator
        call, a slow store) does not let the lease lapse. Losing the lease to another replica sets
        ``stop``: this process must not lead again with caches that may be stale.

        A step longer than any the config allows is no long step: the loop is stuck (a call that
        never returns, a deadlock; see :attr:`stuck`). Its lease is then not renewed, so it stops
        acting after ``renew_s`` and a standby takes over after ``lease_s`` (leaving what this
        replica left running alone for ``takeover_grace_s``: the lease is not released, since a
        call of its may be in flight); ``/healthz`` fails meanwhile, so its supervisor restarts it.
        Should the loop come back before that, renewals go on, or, the lease taken, the next one
        finds it lost (every write of the woken loop is refused by the fence, and the first such
        refusal ends the loop too: see :meth:`LeaderElector.notice_fence`)."""
        assert self.elector is not None
        while not done.wait(self.config.engine.leader_election.retry_s):
            if self._lease_round():
                stop.set()
                return

    def _lease_round(self) -> bool:
        """One round of :meth:`_keep_lease`: renew the lease, unless the loop is stuck (said once
        per stall); True once the lease is lost."""
        assert self.elector is not None
        stuck = self.stuck
        if stuck is not None:
            if self._stuck_said is None:
                log.error("%s; this replica stops renewing its lease (%s), so a standby takes over after "
                          "lease_s (%g s), and /healthz fails so that its supervisor restarts it",
                          stuck, self.elector.describe(), self.elector.lease_s)
            self._stuck_said = stuck
            return False
        if self._stuck_said is not None:
            log.warning("the engine loop makes progress again (it was %s); %s", self._stuck_said.partition(": ")[2],
                        "renewing the lease again" if self.elector.leading else "trying to renew the lease")
            self._stuck_said = None
        try:
            self.elector.attempt()
            self._sync_clock()  # after the renewal: a slow answer must not hold it up
        except Exception:  # a bug must not end the renewals silently: the lease would lapse
            log.exception("lease: renewal failed unexpectedly; trying again in %g s",
                          self.config.engine.leader_election.retry_s)
        return self.elector.lost

    def run(self, stop: threading.Event, on_tick: Callable[[Engine], None] | None = None,
            on_standby: Callable[[Engine], None] | None = None,
            on_stopping: Callable[[str], None] | None = None) -> None:
        """The main loop, until ``stop`` is set. With leader election, first stand by until this
        replica holds the lease, and stop when it loses it (:attr:`elector` ``.lost`` says so).
        ``on_tick`` is called after every tick (the first one: the engine has opened the store,
        adopted or started its services and looked once), ``on_standby`` after every lease round
        spent standing by, and ``on_stopping`` once, however the loop ends (``stop`` set, the lease
        lost, an exception), before the services are stopped and the store closed, with why in
        one line (see :meth:`_stopping_why`)."""
        keeper: threading.Thread | None = None
        done = threading.Event()
        log.info("liveness: the loop counts as stuck after %g s without progress (%s)", self.stuck_after_s,
                 self.stuck_basis)
        failed: BaseException | None = None
        try:
            if self.elector is not None:
                if not self._lead(stop, on_standby):
                    return
                keeper = threading.Thread(target=self._keep_lease, args=(stop, done), name="autonomic-lease",
                                          daemon=True)
                keeper.start()
            if not self.started:
                self.start()
            while not stop.is_set():
                self.tick()
                if on_tick is not None:
                    on_tick(self)
                if self.elector is not None and self.elector.notice_fence():
                    break  # a write of this tick's was refused: another replica leads (see notice_fence)
                now = self.clock.now()
                wake = self._next_collect
                due = self.queue.next_due()
                if due is not None:
                    wake = min(wake, due)
                # at most one interval: a clock set back after the tick is noticed by the next one
                self.watchdog.beat("waiting for the next tick")
                stop.wait(min(max(0.01, wake - now), self.config.engine.interval_s))
        except BaseException as exc:
            failed = exc
            raise
        finally:
            if on_stopping is not None:
                try:
                    on_stopping(self._stopping_why(failed))
                except Exception:  # the stop goes on: the services and the lease still need it
                    log.exception("on_stopping failed")
            if keeper is not None:
                # the supervised services stop while the lease is still renewed: each may take its
                # stop_timeout_s, and a lease lapsed meanwhile would have the standby take over as
                # from a crash (waiting out its takeover grace) instead of at its next round
                self._stop_services()
                done.set()
                # a renewal in flight ends before the lease is released; a lost lease is not released,
                # and the lease thread may be the one stuck (see LeaderElector.notice_fence)
                keeper.join(timeout=1 if self.elector is not None and self.elector.lost else 30)
            self.shutdown()

    def _stopping_why(self, failed: BaseException | None) -> str:
        """Why the loop ended, in one line (for systemd's STATUS): it raised ``failed``; this
        replica lost the lease (it exits 3 and is restarted as a standby); or it was asked to stop.
        The config's secrets are hidden (it leaves the process, as the log does)."""
        if failed is not None and not isinstance(failed, KeyboardInterrupt):
            return self.secrets.text(f"stopping: the engine loop failed ({type(failed).__name__}: {failed})")
        if self.elector is not None and self.elector.lost:
            return f"stopping: {self.elector.describe()}; it exits (code 3) to be restarted as a standby"
        return "stopping after the current step"

    # --- one tick --------------------------------------------------------------------------

    def submit(self, findings: list[Finding]) -> None:
        """Hand in findings from another thread of this process; the loop ingests them at its next
        collection. (Webhooks go through the store instead: :func:`queue_findings`.)"""
        for f in findings:
            self._inbox.put(f)

    def tick(self) -> None:
        started = time.perf_counter()
        now = self.clock.now()
        if self._last_now is not None and now < self._last_now:
            self._clock_went_back(self._last_now - now, now)
        self._last_now = now
        if self.elector is None and isinstance(self.clock, ServerClock) and now >= self._next_clock_sync:
            # one engine over PostgreSQL: no lease rounds to measure the offset at (see _sync_clock)
            self._sync_clock()
            self._next_clock_sync = self.clock.now() + CLOCK_SYNC_S  # by the clock as measured
        self.watchdog.beat("a tick's start")
        self._watch_pause_files()
        self._settle_outbox(now)
        if now >= self._next_collect:
            self._next_collect = now + self.config.engine.interval_s
            with _collector_paused():
                self.collect(now)
                fresh = [self._with_probe_failure(self._with_exit(f)) for f in self.detect(now)]
            self._watch_exits()
            while True:
                try:
                    fresh.append(self._inbox.get_nowait())
                except queue.Empty:
                    break
            fresh.extend(self._read_inbox())
            for f in fresh:
                self.metrics.finding(f.kind.value)
            findings, self._unstored = self._unstored + fresh, []
            self._rotate_service_logs()  # files, not the store: also while the store refuses
            done = 0
            try:
                for f in findings:
                    self.watchdog.beat(f"storing a finding of {f.service!r}")
                    try:
                        self.ingest(f, now)
                    except StoreValueError as exc:  # this finding can never be stored: drop it, go on
                        log.warning("finding %s/%s dropped: %s", f.service.encode("unicode_escape").decode(),
                                    f.metric.encode("unicode_escape").decode(), exc)
                    done += 1
                for fingerprint in self._alerts_resolved:
                    for firing in self._alerts_firing.values():
                        firing.discard(fingerprint)
                self._alerts_resolved.clear()
                for inbox_key in sorted(self._inbox_taken):  # every finding in them is ingested now
                    self.store.set_state(inbox_key, None, actor="engine", event="alerts.ingested", audit_value=False)
                    self._inbox_taken.discard(inbox_key)
                self._inbox_of.clear()
                self.watchdog.beat("saving goals whose burn rules started or stopped firing")
                self._save_goal_transitions(now)
                self.watchdog.beat("reading people's answers to approval requests")
                self._poll_approvals(now)
                self.watchdog.beat("telling of approvals refused as late")
                self._tell_late_approvals()
                if self.standby is None and not self.shadow_only:
                    self._take_service_requests()
                self.watchdog.beat("closing quiet incidents (the sweep)")
                self._sweep(now)
                self.watchdog.beat("sending scheduled reports")
                self._send_reports(now)
            except AuditChainError:
                raise  # tampering, not an outage: the loop stops, loudly
            except StoreError as exc:
                # the store refuses (locked past busy_timeout, a database restarting): keep what
                # was not stored for the next tick, and go on; not counted as a tick (/readyz's last_tick_s_ago)
                self._unstored = self._keep_unstored(findings[done:])
                if self._problem("store", str(exc)):
                    log.error("the store refused a write; %s kept for the next tick: %s",
                              counted(len(self._unstored), "finding"), exc)
            else:
                if self._problem("store", None):
                    log.info("the store answers again")
                if now >= self._next_checkpoint:
                    self.watchdog.beat("writing the detectors' checkpoint")
                    self.checkpoint_detectors(now)
                    self.watchdog.beat("saving the goals' error budgets")
                    try:
                        self.save_goals(now)
                    except StoreError as exc:  # kept in memory; saved at the next checkpoint
                        log.error("goals: budgets not saved: %s", exc)
                self.ticks += 1
                self.last_tick_at = now
        standby = self.standby
        if self.elector is not None and self._problem("lease", standby):
            if standby is not None:
                log.warning("lease: %s; no incident or action is advanced until it is renewed", standby)
            else:
                log.info("lease: renewed; incidents and actions go on")
        if standby is not None:  # each step would only be refused: the queue keeps its items
            self.metrics.loop(time.perf_counter() - started)
            return
        # An item that is ready for its next step at once (diagnosed -> decide -> act) goes on
        # in the same tick; the bound keeps one busy item from starving collection.
        for _ in range(_STEPS_PER_TICK):
            due = self.queue.pop_due(self.clock.now())
            if not due:
                break
            for key in due:
                self._reconcile(key)
        if now >= self._next_prune:
            self._prune(now)
        self.metrics.loop(time.perf_counter() - started)

    def _prune(self, now: float) -> None:
        """Retention (:mod:`autonomic.knowledge.retention`): prune what the config no longer keeps,
        at most ``_PRUNES_PER_TICK`` short transactions this tick (the rest at the next ticks),
        then again after ``retention.interval_s``. Runs only on the replica that leads (its
        writes are fenced). A store that refuses is tried again at the next interval; an audit log
        that does not verify is not archived or pruned again until a restart (logged: a person
        must look, ``autonomic audit verify``), the rest still is."""
        spec = self.config.spec.retention
        if not self._audit_pruning:
            spec = spec.model_copy(update={"audit_days": None})
        try:
            result = prune(self.store, spec, now, self.config.archive_dir, max_transactions=_PRUNES_PER_TICK,
                           before_transaction=lambda: self.watchdog.beat("retention: one prune transaction"))
        except AuditChainError as exc:
            log.error("retention: the audit log is not archived or pruned until restart: %s", exc)
            self._audit_pruning = False
            return
        except (StoreError, OSError) as exc:
            log.error("retention: pruning stopped (tried again in %g s): %s", spec.interval_s, exc)
            self._next_prune = now + spec.interval_s
            return
        self._next_prune = now if not result.finished else now + spec.interval_s
        if result.total:
            log.info("retention: pruned %s", ", ".join(f"{n} {k}" for k, n in result.counts.items() if n))

    def _keep_unstored(self, left: list[Finding]) -> list[Finding]:
        """What is kept in memory of the findings a refused write left: the newest
        ``_MAX_UNSTORED``. An inbox key one of whose findings is dropped so is given back (read
        again from the store at a later collection, its findings then ingested from there, not
        from memory): its key is still stored, and clearing it once the rest is ingested would
        lose an accepted alert. (Its findings ingested before the refusal come again: a repeat.)"""
        if len(left) <= _MAX_UNSTORED:
            return left
        dropped, kept = left[:-_MAX_UNSTORED], left[-_MAX_UNSTORED:]
        released = {self._inbox_of[f.id] for f in dropped if f.id in self._inbox_of}
        if released:
            self._inbox_taken -= released
            kept = [f for f in kept if self._inbox_of.get(f.id) not in released]
            self._inbox_of = {fid: key for fid, key in self._inbox_of.items() if key not in released}
        return kept

    def _read_inbox(self) -> list[Finding]:
        """The findings of received alerts (:func:`queue_findings`) not yet taken into this
        process, oldest first; their keys are removed once all is ingested (see tick). A store
        that does not answer gives none now: the keys are read again at the next collection."""
        try:
            entries = self.store.states(INBOX)
        except StoreError as exc:
            log.debug("inbox not read: %s", exc)
            return []
        def received_at(entry: tuple[str, dict[str, Any]]) -> tuple[float, str]:
            at = entry[1].get("received_at")
            return (float(at) if isinstance(at, (int, float)) else 0.0), entry[0]

        found: list[Finding] = []
        for key, value in sorted(entries.items(), key=received_at):
            if key in self._inbox_taken:
                continue
            self._inbox_taken.add(key)  # cleared with the rest, even when nothing in it is a finding
            resolved = value.get("resolved")
            if isinstance(resolved, list):
                self._alerts_resolved.extend(str(fp) for fp in resolved)
            raws = value.get("findings")
            if not isinstance(raws, list):
                log.warning("%s: a stored alert entry without a list of findings, dropped", key)
                continue
            for raw in raws:
                try:
                    finding = Finding.model_validate(raw)
                except ValidationError as exc:  # stored by an API that validated it: a damaged row
                    log.warning("%s: a stored alert is not a finding, dropped: %s", key, exc)
                else:
                    found.append(finding)
                    self._inbox_of[finding.id] = key
        return found

    def _watch_pause_files(self) -> None:
        """Log, and audit when the store answers, a pause file appearing or going (a pause set
        without the store, see :func:`pause_file`): its effect needs neither, since the file is read
        before every actuator call. An audit write that fails is tried again next tick."""
        if self.shadow_only:
            return
        now_paused = {key: _pause_text(key, entry) or key
                      for key, entry in file_pauses(self.config.state_dir).items()}
        for key in sorted(now_paused.keys() | self._file_paused.keys()):
            before, after = self._file_paused.get(key), now_paused.get(key)
            if before == after:
                continue
            scope = None if key == PAUSE_GLOBAL else key.rsplit(":", 1)[1]
            try:
                self.store.audit("engine", "pause.file" if after is not None else "pause.file_gone",
                                 key, {"service": scope, "reason": after or before})
            except StoreError as exc:
                log.warning("pause file %s: %s (not audited yet: %s)", "seen" if after else "gone", after or before,
                            exc)
                continue
            if after is None:
                log.info("a pause file is gone, that pause is lifted: %s", before)
                self._file_paused.pop(key, None)
            else:
                log.warning("automation paused by a pause file: %s", after)
                self._file_paused[key] = after

    def _clock_went_back(self, by: float, now: float) -> None:
        """The wall clock was set back (NTP stepping it, a person): every schedule in memory was
        taken from the later clock and would put the loop off by the step. So collection is due
        now, the checkpoint within ``checkpoint_s``, the next prune within ``retention.interval_s``,
        and every queued item now: a step re-reads
        the store and says when it is next due, as after a restart. Deadlines kept in the store
        (a verification's end, an approval's expiry, breaker and backoff times, the settle time)
        are not moved: they come later by the step, never sooner."""
        (log.warning if by >= 1.0 else log.debug)("the wall clock went back %.3f s; the loop is rescheduled "
                                                  "from now", by)
        self._next_collect = now
        self._next_checkpoint = min(self._next_checkpoint, now + self.config.engine.checkpoint_s)
        if not self.shadow_only:
            self._next_prune = min(self._next_prune, now + self.config.spec.retention.interval_s)
        self.queue.due_by(now)

    def _reconcile(self, key: Key) -> None:
        kind, item_id = key
        self.watchdog.beat(f"{kind} {item_id[:8]}: its next step")
        try:
            again = self.reconcile_incident(item_id) if kind == "incident" else self.executor.reconcile(item_id)
        except AutonomicError as exc:
            log.error("%s %s: %s", kind, item_id[:8], exc)
            again = self.clock.now() + self.config.engine.interval_s
        except Exception:
            log.exception("%s %s: unexpected error; will look again", kind, item_id[:8])
            again = self.clock.now() + max(5.0, self.config.engine.interval_s)
        if again is not None:
            self.queue.add(key, again)

    def _problem(self, topic: str, text: str | None) -> bool:
        """Record the ongoing problem of ``topic`` (a source, the store, log rotation), None when
        there is none any more. True when that changes what was recorded: a new problem to log,
        or (with None) the end of one, so each is logged once and not every tick."""
        before = self._problems.pop(topic, None)
        if text is not None:
            self._problems[topic] = text
        return before != text

    def _read_stopped(self) -> dict[str, dict[str, Any]]:
        """The supervised services people stopped on purpose (``autonomic stop``), from the store."""
        return {key[len(STOPPED_PREFIX):]: value for key, value in self.store.states(STOPPED_PREFIX).items()}

    def collect(self, now: float) -> None:
        if self.supervisor.services():
            try:  # what the process source samples as unit_stopped; on a refusal, as last read
                self._stopped = self._read_stopped()
            except StoreError as exc:
                if self._problem("store", str(exc)):
                    log.error("the store refused a read of the services stopped on purpose: %s", exc)
        collected = self._collect_lanes(now)
        for i, src in enumerate(self.sources):
            topic = f"source:{src.name}"
            try:
                samples = collected(i, src)
                self._answered[topic] = now
                self.series.extend(samples)
                self.goals.observe(samples)
                if self._problem(topic, None):
                    log.info("source %s recovered", src.name)
            except SourceError as exc:
                if exc.samples:  # what it did collect (a scrape that lacks one renamed key gives the others)
                    self._answered[topic] = now
                    self.series.extend(exc.samples)
                    self.goals.observe(exc.samples)
                starting = self._still_starting(src, topic, now)
                if starting is not None:
                    log.debug("source %s: %s (%s)", src.name, exc, starting)
                elif self._problem(topic, str(exc)):
                    log.warning("source %s: %s", src.name, exc)
            except Exception as exc:  # a broken source must not stop the loop
                if self._problem(topic, repr(exc)):
                    log.exception("source %s failed", src.name)

    def _collect_lanes(self, now: float) -> Callable[[int, Source], Sequence[Sample]]:
        """Start collecting the sources that ask a server over HTTP (each has a ``lane``: the
        server), a lane's sources one after another, up to ``engine.collect_workers`` lanes at
        once on worker threads; and say how to get source ``i``'s samples, in the sources' order
        on the loop's thread: a lane source's from its lane (waiting for it; what it raised, raised
        again), any other's by collecting it there and then (host and process metrics are read
        locally). Unit states are in lanes too, one per manager they ask (a Docker engine, a D-Bus,
        an API server). A server that hangs holds its lane only: the loop waits for the slowest
        lane, not for the sum of every source's timeouts."""
        lanes: dict[str, list[int]] = {}
        for i, src in enumerate(self.sources):
            lane = getattr(src, "lane", None)
            if isinstance(lane, str):
                lanes.setdefault(lane, []).append(i)
        workers = self.config.engine.collect_workers
        if workers <= 1 or len(lanes) <= 1:
            lanes = {}  # one lane or none: nothing to do at once

        def run(indices: list[int]) -> dict[int, Sequence[Sample] | Exception]:
            out: dict[int, Sequence[Sample] | Exception] = {}
            for i in indices:
                src = self.sources[i]
                self.watchdog.beat(f"collecting from source {src.name}")
                try:
                    out[i] = src.collect(now)
                except Exception as exc:  # said on the loop's thread, in the sources' order
                    out[i] = exc
            return out

        futures: dict[int, Future[dict[int, Sequence[Sample] | Exception]]] = {}
        if lanes:
            if self._collector is None:
                self._collector = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="autonomic-collect")
            for indices in lanes.values():
                future = self._collector.submit(run, indices)
                futures.update(dict.fromkeys(indices, future))

        def collected(i: int, src: Source) -> Sequence[Sample]:
            future = futures.get(i)
            if future is None:
                self.watchdog.beat(f"collecting from source {src.name}")
                return src.collect(now)
            self.watchdog.beat(f"waiting for source {src.name} (collected in its lane, {getattr(src, 'lane', '?')})")
            outcome = future.result()[i]
            if isinstance(outcome, Exception):
                raise outcome
            return outcome

        return collected

    def _still_starting(self, src: Source, topic: str, now: float) -> str | None:
        """Why a failure of ``src`` is not a problem to warn of, or None when it is: its service is
        one this engine started (or restarted) moments ago, still inside its process binding's
        ``start_grace_s``, and the source has not answered since that start (a service does not
        listen the moment its process exists). Once the grace is over, or when the source had
        answered since the start (the service stopped answering: a crash, a hang), it is a problem."""
        service = getattr(src, "service", None)
        if not isinstance(service, str) or not self.starting(service, now):
            return None
        identity = self.supervisor.identity(service)
        if identity is None or self._answered.get(topic, -math.inf) >= identity[1]:
            return None
        return f"{service} was started {now - identity[1]:.1f} s ago and has not answered yet"

    def _watch_exits(self) -> None:
        """Say once, as a warning, that a supervised service ended, how (its exit code or signal)
        and the last lines of its log: a service that dies right after its start (a typo in its
        command, a file it cannot find) is otherwise only "down", and restarting it, which is what a
        person is asked to approve, meets the same end. Said again after its next start and end."""
        if self.shadow_only:
            return
        for service in self.supervisor.services():
            code = self.supervisor.exit_info(service)
            how = None if code is None else describe_exit(code)
            if self._problem(f"exit:{service}", how) and how is not None:
                log.warning("service %s %s; the last lines of %s:\n%s", service, how,
                            self.supervisor.log_path(service), self.supervisor.log_tail(service, 5) or "(empty)")

    def _with_exit(self, finding: Finding) -> Finding:
        """A supervised service's ``up`` finding with how its process ended (``exit``) and the last
        lines of its log (``log_tail``) in its evidence, for ``autonomic explain`` and the
        dashboard; any other finding as it is."""
        if finding.metric != "up" or finding.cause != "down" or self.shadow_only:
            return finding
        if finding.service not in self.supervisor.services():
            return finding
        code = self.supervisor.exit_info(finding.service)
        if code is None:
            return finding
        tail = self.supervisor.log_tail(finding.service, 5)[-_EXIT_TAIL_CHARS:]
        return finding.model_copy(update={"evidence": {**finding.evidence, "exit": describe_exit(code),
                                                       "log_tail": tail}})

    def _with_probe_failure(self, finding: Finding) -> Finding:
        """A ``down`` finding with why its service's HTTP probe failed at the last collection
        (``probe``: "GET http://host/health: answered 503, expected 200", a timeout, connection
        refused) in its evidence, for ``autonomic explain``, the dashboard and the person asked to
        approve a restart; any other finding, or one whose probe passed, as it is."""
        if finding.cause != "down":
            return finding
        failure = next((getattr(src, "failure", None) for src in self.sources
                        if isinstance(src, HttpProbe | ProbeGroup) and src.service == finding.service), None)
        if not failure:
            return finding
        return finding.model_copy(update={"evidence": {**finding.evidence, "probe": failure}})

    def _rotate_service_logs(self) -> None:
        """Keep the supervised services' logs under their size bound (Supervisor.rotate_logs)."""
        if self.shadow_only:
            return
        try:
            for service in self.supervisor.rotate_logs():
                log.info("service %s: log rotated", service)
            self._problem("logs", None)
        except OSError as exc:  # a full or read-only disk must not stop the loop
            if self._problem("logs", str(exc)):
                log.warning("service logs not rotated: %s", exc)

    def detect(self, now: float) -> list[Finding]:
        out: list[Finding] = []
        for det in self.detectors:
            self.watchdog.beat(f"detector {det.name}")
            try:
                out.extend(det.detect(self.series, now))
            except Exception:
                log.exception("detector %s failed", det.name)
        self.watchdog.beat("goals: error budget burn")
        try:
            out.extend(self.goals.detect(now))
        except Exception:
            log.exception("goals: burn rules failed")
        return out

    def starting(self, service: str, now: float) -> bool:
        """Whether a supervised service is still inside its start grace after a (re)start. A start
        "in the future" (the clock was set back since) is not: the grace is never stretched."""
        binding = self.config.bindings.get(service, {}).get("process")
        identity = self.supervisor.identity(service) if binding is not None else None
        return identity is not None and 0.0 <= now - identity[1] < getattr(binding, "start_grace_s", 0.0)

    def ingest(self, finding: Finding, now: float) -> Incident | None:
        """Correlate one finding into its incident (one unclosed incident per service and cause).
        A failing probe of a process that is alive but still in its start grace is dropped."""
        if finding.cause == "down" and finding.metric != "up" and self.starting(finding.service, now):
            return None
        key = (finding.service, finding.cause)
        current: Incident | None = None
        inc_id = self._open.get(key)
        if inc_id is not None:
            current = self._incident(inc_id)
            if current is not None and current.closed_at is not None:
                current = None
        incident, finding, opened = correlate(finding, current, now)
        fingerprint = finding.evidence.get("fingerprint") if finding.kind == FindingKind.ALERT else None
        if opened:  # stored first: when the store refuses, nothing in memory names the incident
            self.store.record(finding, incident, actor="engine", event="incident.opened", subject=incident.id,
                              data={"service": incident.service, "cause": incident.cause,
                                    "kind": incident.kind, "summary": incident.summary})
            self._last_seen[incident.id] = now
            self._open[key] = incident.id
            self._metric_seen[incident.id] = {finding.metric: now}
            if fingerprint:
                self._alerts_firing.setdefault(incident.id, set()).add(str(fingerprint))
            self._seen_signatures[incident.id] = {(finding.kind.value, finding.metric)}
            self._last_persist[incident.id] = now - _persist_phase(incident.id)
            self.metrics.incident_opened()
            log.info("incident %s opened: %s %s: %s", incident.id[:8], incident.service, incident.cause,
                     incident.summary)
            self.queue.add(("incident", incident.id), now)
            return incident
        self._last_seen[incident.id] = now
        self._metric_seen.setdefault(incident.id, {})[finding.metric] = now
        if fingerprint:
            self._alerts_firing.setdefault(incident.id, set()).add(str(fingerprint))
        signature = (finding.kind.value, finding.metric)
        seen = self._seen_signatures.setdefault(incident.id, set())
        # a goal's burn that turned from a ticket into a page: stored at once, and told (below)
        worse = (finding.cause == BURN_CAUSE and current is not None
                 and Severity(incident.severity).rank > Severity(current.severity).rank)
        if (signature in seen and not worse
                and now - self._last_persist.get(incident.id, 0.0) < _repeat_every(incident, now)):
            self._pending_repeats[incident.id] += 1  # a repeat: counted, stored with a later one
        else:
            count = (current.finding_count if current else 0) + self._pending_repeats.get(incident.id, 0) + 1
            incident = incident.model_copy(update={"finding_count": count})
            self.store.record(finding, incident, actor="engine", event="incident.updated", subject=incident.id,
                              data={"findings": count, "summary": finding.summary})
            # only once it is stored: a refused write leaves the finding new for its retry
            seen.add(signature)
            self._pending_repeats.pop(incident.id, None)
            self._last_persist[incident.id] = now
            if worse and incident.state == IncidentState.ESCALATED:
                # the person was told of a slower burn; this one pages
                self.notify(Notification(level=Level.ALERT, ts=now, service=incident.service,
                                         incident_id=incident.id, title=incident.headline,
                                         body=f"the burn got worse: now {incident.severity.value}, it was "
                                              f"{current.severity.value if current else '?'} when you were told; "
                                              "still no known remedy: a person must look"))
        return incident

    # --- people's acts ---------------------------------------------------------------------

    def _send_reports(self, now: float) -> None:
        """Scheduled daily/weekly reports, delivered through the notifiers. The first fire
        time counts from when the schedule was first seen, so a restart does not resend. A report
        covers the period that ended at its cron's (latest) fire, however late it is sent (a slow
        tick, the engine down at the time), so consecutive reports neither overlap nor leave a gap.
        One the store cannot be read for, or whose last run and outbox entry (one unit) it
        refuses, is due again at the next tick (nothing stored meanwhile)."""
        schedules = self.config.spec.reports
        if not schedules:
            return
        last = dict(self.store.get_state("report:last_run") or {})
        seeded = False
        for s in schedules:
            if s.key not in last:
                last[s.key], seeded = now, True
        due = due_reports(schedules, last, now)
        built: list[Notification] = []
        for s in due:  # built before the last run is stored: a store that cannot be read now loses no report
            try:
                built.append(report_notification(self.store, s, s.last_fire(now), self.config.state_dir,
                                                 self.config.command))
            except StoreError as exc:
                log.warning("report %s not built, the store refuses (%s): tried again at the next tick", s.key, exc)
                return
            except Exception:
                log.exception("report %s could not be built", s.key)
        for s in due:
            last[s.key] = now
        if not (due or seeded):
            return
        # the last run and the reports' outbox entries in one unit: a store that refuses any of it
        # stores and sends nothing (due again at the next tick), and an engine that dies after the
        # commit has the reports in its outbox for the next engine; sent once the unit commits
        with self._holding_notifications(), self.store.unit():
            self.store.set_state("report:last_run", last, actor="engine", event="report.sent" if due else
                                 "report.scheduled", data={"reports": [s.key for s in due]})
            for notification in built:
                self.notify(notification)

    def _poll_approvals(self, now: float) -> None:
        """Each person's answer wakes its incident. An answer to an incident that is closed (it
        expired or cleared while the person answered) can never be acted on: it is removed,
        audited ``approval.stale``, instead of waking a closed incident at every tick for ever."""
        for key, value in self.store.states("approval:").items():
            incident_id = key.split(":", 1)[1]
            inc = self._incident(incident_id)
            if inc is None or inc.closed_at is not None:
                self.store.set_state(key, None, actor=str(value.get("actor", "?")), event="approval.stale",
                                     data={"incident": incident_id, "decision": value.get("decision"),
                                           "reason": "the incident is closed"})
                continue
            self.queue.add(("incident", incident_id), now)

    def _tell_late_approvals(self) -> None:
        """Each approval refused as late (by the API or the CLI, see :func:`answer_approval`) told
        to people, once: taken from the store (audited ``approval.late_told``; a deposed leader's
        write is refused, so it tells nothing), then sent, for information. It says who approved
        which request, how late, that nothing was done, and what waits now: the request asked
        again for the same trouble, when there is one."""
        for key, value in self.store.states(LATE_PREFIX).items():
            incident_id = str(value.get("incident"))
            if not self.store.delete_state_if(key, {"incident": incident_id}, actor="engine",
                                              event="approval.late_told", data={"incident": incident_id}):
                continue  # taken since it was read
            inc = self._incident(incident_id)
            if inc is None:  # pruned meanwhile: nothing left to name
                continue
            request = next((d for d in reversed(self.store.decisions(inc.id))
                            if d.verdict == Verdict.NEEDS_APPROVAL), None)
            action = request.action if request is not None else None
            what = f"{action.describe()} on {action.target}" if action is not None else "its remedy"
            given, expired = float(value.get("ts", 0.0)), float(value.get("expired_at", 0.0))
            body = (f"{value.get('actor', '?')} approved incident {inc.id[:8]}'s request to run {what} at "
                    f"{utc_stamp(given)}, {given - expired:.0f} s after it expired at {utc_stamp(expired)}: refused, "
                    "nothing was done on it.")
            now_id = self._open.get((inc.service, inc.cause))
            current = self._incident(now_id) if now_id is not None and now_id != inc.id else None
            if current is not None and current.state == IncidentState.AWAITING_APPROVAL:
                body += (f" The trouble went on and the engine has asked again: incident {current.id[:8]} awaits "
                         f"approval ({self.config.command} approve {current.id[:8]}).")
            elif current is not None:
                body += f" The trouble went on: incident {current.id[:8]} is {current.state.value} now."
            elif inc.closed_at is None:
                body += " The engine closes the incident as expired at its next look."
            else:
                body += " If the trouble goes on, the engine opens a new incident and asks again."
            self.notify(Notification(level=Level.INFO, ts=self.clock.now(), service=inc.service,
                                     incident_id=inc.id, title=f"approval refused as late: {what}", body=body))

    # --- incidents -------------------------------------------------------------------------

    def _take_service_requests(self) -> None:
        """Carry out each person's start or stop of a supervised service (:func:`request_service`),
        oldest first, through the supervisor. The request stays in the store until it is done: its
        outcome is audited with the request's key as subject (:data:`SERVICE_OUTCOMES`, what the CLI
        waits for) in the same write that removes it (``delete_state_if``), so an engine that dies
        between taking it (audited ``service.request_taken``, ``again`` when an engine took it
        before) and doing it leaves it for the engine that leads next, which does it. Doing it again
        is harmless: a start finds the service running, a stop finds it stopped on purpose and
        not running. One taken :data:`_REQUEST_TAKES` times already is refused instead (each of
        those engines died doing it), told as an alert. The outcome is told to people for information.

        A stop is recorded first (``stopped:<service>``, durable): the process source then samples
        ``unit_stopped`` 1, so the down remedy is passed over (:meth:`_stopped_on_purpose`), and no
        later engine starts it at its start. A start lifts that record, then starts the process; a
        service already running is left as it is and said so. Both are a person's own act, not
        automation: a pause (the kill switch) does not hold them back."""
        for key, value in sorted(self.store.states(SERVICE_REQUEST_PREFIX).items(),
                                 key=lambda kv: (float(kv[1].get("ts") or 0.0), kv[0])):
            service, verb = str(value.get("service")), str(value.get("verb"))
            who, comment = str(value.get("actor", "?")), str(value.get("comment") or "")
            taken = sum(e.kind == "service.request_taken"
                        for e in self.store.audit_events(subject=key, limit=2 * _REQUEST_TAKES, newest=True))
            if taken >= _REQUEST_TAKES:  # each engine that took it died doing it: not a third crash
                error = (f"taken {taken} times by engines that stopped before doing it: not tried again; "
                         f"see the engine's log, then ask again ({self.config.command} {verb} {service})")
                self._request_done(key, service, verb, "service.request_refused",
                                   {"service": service, "verb": verb, "for": who, "error": error})
                log.error("%s of %s asked by %s: %s", verb, service, who, error)
                self.notify(Notification(level=Level.ALERT, ts=self.clock.now(), service=service, incident_id=None,
                                         title=f"{verb} of {service} asked by {who} not done", body=error))
                continue
            self.store.audit("engine", "service.request_taken", key,
                             {"service": service, "verb": verb, **({"again": True} if taken else {})})
            if taken:
                log.warning("%s of %s asked by %s: taken before by an engine that stopped before doing it; "
                            "doing it now", verb, service, who)
            if service not in self.supervisor.services() or verb not in ("start", "stop"):
                self._request_done(key, service, verb, "service.request_refused",
                                   {"service": service, "verb": verb, "for": who,
                                    "error": f"{service} has no process binding in {self.config.source}"})
                continue
            self.watchdog.beat(f"{verb} of {service!r}, asked by {who}")
            if verb == "start":
                self._person_starts(key, service, who, comment)
            else:
                self._person_stops(key, service, who, comment)

    def _request_done(self, key: str, service: str, verb: str, outcome: str, data: dict[str, Any]) -> None:
        """Record ``outcome`` of the request ``key`` and remove the request, in one write. When it is
        gone already (another engine did it meanwhile, as a deposed leader may), what this engine
        did is audited all the same."""
        if not self.store.delete_state_if(key, {"service": service, "verb": verb}, actor="engine", event=outcome,
                                          data=data):
            self.store.audit("engine", outcome, key, data)

    def _person_starts(self, key: str, service: str, who: str, comment: str) -> None:
        was = self._stopped.pop(service, None)
        if was is not None:
            self.store.set_state(stopped_key(service), None, actor=who, event="service.stop_lifted",
                                 data={"service": service, "comment": comment})
        pid = self.supervisor.pid(service)
        data: dict[str, Any] = {"service": service, "for": who, "comment": comment}
        if pid is not None:
            self._request_done(key, service, "start", "service.already_running", {**data, "pid": pid})
            title = f"{service} was already running (pid {pid}): start by {who} did nothing"
            level = Level.INFO
        else:
            try:
                pid = self.supervisor.start(service)
            except ActuatorError as exc:
                self._request_done(key, service, "start", "service.start_failed", {**data, "error": str(exc)})
                title, level = f"{service} could not be started for {who}: {exc}", Level.ALERT
            else:
                self._request_done(key, service, "start", "service.started", {**data, "pid": pid})
                title, level = f"{service} started by {who}: pid {pid}", Level.INFO
        body = (f"Comment: {comment}" if comment else "") + (" It had been stopped on purpose by "
                                                             f"{was.get('actor', '?')}." if was else "")
        log.info("%s", title)
        self.notify(Notification(level=level, ts=self.clock.now(), service=service, incident_id=None,
                                 title=title, body=body.strip()))

    def _person_stops(self, key: str, service: str, who: str, comment: str) -> None:
        record = {"actor": who, "comment": comment, "ts": self.clock.now(), "request": key}
        held = self.store.get_state(stopped_key(service))
        if held is not None and held.get("request") == key:
            record = held  # recorded by an engine that stopped before doing the rest: not again
        else:
            # recorded before the stop: an engine that dies in between does not start it again
            self.store.set_state(stopped_key(service), record, actor=who, event="service.stopped_on_purpose",
                                 data={"service": service, "comment": comment})
        self._stopped[service] = record
        data: dict[str, Any] = {"service": service, "for": who, "comment": comment}
        pid = self.supervisor.pid(service)
        if pid is None:
            self._request_done(key, service, "stop", "service.already_stopped", data)
            title = f"{service} was not running: stopped on purpose by {who}, autonomic does not start it"
        else:
            code = self.supervisor.stop(service)
            self._request_done(key, service, "stop", "service.stopped", {**data, "pid": pid, "exit_code": code})
            title = f"{service} stopped by {who}: pid {pid}" + (f" {describe_exit(code)}" if code is not None else "")
        log.info("%s", title)
        body = (f"Comment: {comment}. " if comment else "") + f"Start it with: {self.config.command} start {service}"
        self.notify(Notification(level=Level.INFO, ts=self.clock.now(), service=service, incident_id=None,
                                 title=title, body=body))

    def _stale_after(self, service: str | None = None) -> float:
        """How long without a finding counts as quiet: a few ticks; for ``service``'s incidents, on
        a service whose anomaly detectors score once per ``step_s`` (silent in between), a step and
        two ticks at least, so an anomaly still there is not taken for one gone."""
        quiet = max(4 * self.config.engine.interval_s, 5.0)
        spec = self.config.service(service) if service is not None else None
        if spec is not None and spec.anomalies:
            quiet = max(quiet, max(a.step_s for a in spec.anomalies) + 2 * self.config.engine.interval_s)
        return quiet

    def _sweep(self, now: float) -> None:
        """Close incidents whose symptom has been quiet long enough: ``resolve_after_s`` without a
        finding, or ``alert_resolve_after_s`` while one of its Alertmanager alerts still fires
        (Alertmanager resends a firing alert only every repeat_interval; its resolved notification
        ends that, and so does a restart of the engine for the alerts resolved while it was down
        only after the longer wait)."""
        for key, inc_id in list(self._open.items()):
            last = self._last_seen.get(inc_id, now)
            firing = bool(self._alerts_firing.get(inc_id))
            quiet = self.config.engine.alert_quiet_s if firing else self.config.engine.resolve_after_s
            if now - last < quiet:
                continue
            inc = self.store.get(Incident, inc_id)
            if inc is None or inc.closed_at is not None:  # closed already: not closed again
                self._open.pop(key, None)
                self._forget(inc_id)
                continue
            if inc.state in (IncidentState.ACTING, IncidentState.VERIFYING):
                continue
            update: dict[str, Any] = {"closed_at": now, "updated_at": now}
            if self._pending_repeats.get(inc_id):  # the repeats since the last write count too
                update["finding_count"] = inc.finding_count + self._pending_repeats[inc_id]
            if not inc.state.terminal and inc.state != IncidentState.AWAITING_APPROVAL:
                update.update(state=IncidentState.EXPIRED, resolution=inc.resolution or Resolution.CLEARED)
            elif inc.state == IncidentState.AWAITING_APPROVAL:
                update.update(state=IncidentState.EXPIRED)
            closed = inc.model_copy(update=update)
            unseen = self._unobserved(inc, last, now)
            self.store.record(closed, actor="engine", event="incident.closed", subject=inc.id,
                              data={"quiet_s": round(now - last, 1), "state": closed.state,
                                    **({"unobserved": unseen} if unseen else {})})
            if unseen:
                log.warning("incident %s on %s closed after %s without a finding, but %s", inc.id[:8], inc.service,
                            duration(now - last), unseen)
            self._open.pop(key, None)  # (_follow has done this already)
            self._forget(inc_id)

    def _forget(self, inc_id: str) -> None:
        self.queue.discard(("incident", inc_id))  # closed: no step is left (an approval's expiry)
        self._last_seen.pop(inc_id, None)
        self._last_persist.pop(inc_id, None)
        self._pending_repeats.pop(inc_id, None)
        self._seen_signatures.pop(inc_id, None)
        self._metric_seen.pop(inc_id, None)
        self._alerts_firing.pop(inc_id, None)
        self._paused_out.discard(inc_id)
        self._waits_told.pop(inc_id, None)
        self._turns_told.discard(inc_id)
        self._told_read.discard(inc_id)

    def _quiet(self, inc: Incident, now: float) -> bool:
        """Whether ``inc``'s trouble has cleared on its own: no finding for a few ticks, and none of
        its Alertmanager alerts still firing (see :meth:`_close_if_cleared`)."""
        last = self._last_seen.get(inc.id, inc.last_finding_at)
        return now - last > self._stale_after(inc.service) and not self._alerts_firing.get(inc.id)

    def _close_if_cleared(self, inc: Incident, now: float, approved: dict[str, Any] | None = None) -> bool:
        """Close ``inc`` as cleared on its own (nothing done) when no finding came for a few
        ticks; never while one of its Alertmanager alerts still fires (it is resent only every
        repeat_interval: its silence says nothing, see :meth:`_sweep`). With ``approved`` (a
        person's approval it was waiting on), that answer is recorded in the same write as what
        it is: a decision of the person's, never acted on (:attr:`Decision.never_acted_on`)."""
        if not self._quiet(inc, now):
            return False
        last = self._last_seen.get(inc.id, inc.last_finding_at)
        closed = inc.model_copy(update={"state": IncidentState.EXPIRED, "resolution": Resolution.CLEARED,
                                        "closed_at": now, "updated_at": now})
        reason = f"no finding for {now - last:.0f} s; nothing done"
        went, unseen = self._how_it_went(inc, now)
        nouns: list[Incident | Decision] = [closed]
        if approved is not None:
            diagnosis = self.store.diagnoses(inc.id)[-1]
            nouns.append(Decision(
                incident_id=inc.id, diagnosis_id=diagnosis.id, ts=now, verdict=Verdict.DENIED,
                gates=[GateResult(gate=TROUBLE_CLEARED, passed=False,
                                  reason=f"{went} before the approval was acted on ({reason})"
                                         + (f": {unseen}" if unseen else ""))],
                action=diagnosis.action, decided_by=str(approved.get("actor", "?")),
                comment=str(approved.get("comment", "")), pattern_id=diagnosis.pattern_id))
        self.store.record(*nouns, actor="engine", event="incident.cleared", subject=inc.id,
                          data={"reason": reason,
                                **({"approved_by": str(approved.get("actor", "?"))} if approved else {}),
                                **({"unobserved": unseen} if unseen else {})})
        for noun in nouns:
            if isinstance(noun, Decision):
                self._count(noun)
        self._open.pop((inc.service, inc.cause), None)
        self._forget(inc.id)
        if unseen:
            log.warning("incident %s on %s closed as cleared, but %s", inc.id[:8], inc.service, unseen)
        else:
            log.info("incident %s cleared on its own", inc.id[:8])
        return True

    def _how_it_went(self, inc: Incident, now: float) -> tuple[str, str | None]:
        """How the trouble of ``inc``, quiet now (:meth:`_quiet`), is said to have gone, and the
        doubt about it (:meth:`_unobserved`) or None: "the trouble cleared on its own", or, when a
        metric of its went silent rather than back under its line, only that "its findings stopped"
        (an approval closed so must not tell the person who gave it that the trouble is over)."""
        unseen = self._unobserved(inc, self._last_seen.get(inc.id, inc.last_finding_at), now)
        return ("its findings stopped" if unseen else "the trouble cleared on its own"), unseen

    def _unobserved(self, inc: Incident, last: float, now: float) -> str | None:
        """Why ``inc``, closing for want of findings since ``last``, was not seen to clear, or
        None: a metric its findings were of has had no sample since its own last finding (one seen
        under its line before its source stopped, while another metric kept the incident open, was
        seen to clear), so the findings stopped because their source did (an exporter that died, a
        scrape that fails), not because the values came back under their lines. Said with the
        closing (its audit entry, a warning, ``explain``); the incident still closes, as it did. A
        metric this engine holds no sample of (an alert's, or any after a restart) says nothing
        either way; nor does one whose latest sample still counts (by the health detector's limit:
        a slowly sampled metric, a range query's 60 s step, whose forecast stopped between two
        samples, is not silent yet)."""
        silent = []
        for metric, found_at in sorted(self._metric_seen.get(inc.id, {}).items()):
            latest = self.series.latest(inc.service, metric)
            stale_s = self._sample_stale_for.get(inc.service, {}).get(metric, self._sample_stale_s)
            if latest is not None and latest[0] <= min(found_at, last) and now - latest[0] > stale_s:
                silent.append(f"{metric} (last sample {duration(now - latest[0])} before it closed)")
        if not silent:
            return None
        return (f"no sample of {listed(silent, 'metric')} came since its last finding: not seen to clear "
                "(has its source stopped answering?)")

    def _busy_until(self, service: str, now: float, *, echo: bool = True) -> _Wait | None:
        """One action in flight per service, and a settle time after each one ends. With ``echo``
        (the diagnosis does not already name a dependency behind the trouble, which the
        root_cause gate then denies at once), the same for an action on anything ``service``
        depends on (``depends_on``, transitively): a caller's symptoms while its dependency is
        being fixed, or in the seconds after (its errors lag the dependency's recovery), may be
        echoes that root-cause ranking, looking at what is departing now, no longer traces to the
        dependency. The incident waits; an echo clears on its own meanwhile, and a trouble of the
        caller's own is diagnosed again and decided afterwards."""
        return self._activity_until((service, *(self._dependencies.get(service, ()) if echo else ())), now)

    def _activity_until(self, services: Iterable[str], now: float) -> _Wait | None:
        """``interval_s`` from now while an action on one of ``services`` is in flight; else the end
        of the latest settle time (``settle_s`` after an action on one of them ended) still to come;
        None when neither. With the service that holds it, and why."""
        settle = self.config.engine.settle_s
        until: _Wait | None = None
        for name in services:
            live, latest_end = self.store.service_activity(name)
            if live:
                return _Wait(now + self.config.engine.interval_s, name, "action",
                             f"an action on {name} is under way")
            if latest_end and now < latest_end + settle and (until is None or latest_end + settle > until.until):
                until = _Wait(latest_end + settle, name, "settling",
                              f"{name} is settling after its action, which ended {now - latest_end:.0f} s ago "
                              f"(engine.settle_s {settle:g})")
        return until

    def _may_echo(self, diagnosis: Diagnosis) -> bool:
        """Whether the incident of ``diagnosis`` may be an echo of trouble on what its service
        depends on (see :meth:`_busy_until`): not when the diagnosis already names a dependency
        behind it (the root_cause gate denies it), nor when its service's own process was seen
        dead (:meth:`_own_failure`, kept on the diagnosis)."""
        return not diagnosis.impacted_by and diagnosis.own_failure is None

    def _wait_until(self, inc: Incident, diagnosis: Diagnosis, now: float) -> _Wait | None:
        """When ``inc`` may be decided, None for now: after the service's own action and, when its
        trouble may be an echo, its dependencies' actions have ended and settled
        (:meth:`_busy_until`); a service seen dead while a dependency was down also waits for that
        dependency's fix (:meth:`_dependency_fix_until`)."""
        busy = self._busy_until(inc.service, now, echo=self._may_echo(diagnosis))
        if busy is None and diagnosis.dependencies_down:
            busy = self._dependency_fix_until(inc.service, diagnosis.dependencies_down, now)
        return busy

    def _room(self, inc: Incident, diagnosis: Diagnosis, ruling: tuple[Verdict, list[GateResult]],
              now: float) -> tuple[float | None, tuple[Verdict, list[GateResult]]]:
        """``ruling`` when the blast radius has no room for ``inc``'s remedy but it is the only
        gate to say no (:func:`~autonomic.plan.gates.without_room`): a remedy every other gate
        approves waits its turn (:meth:`_turn_until`; when to look again, told once by
        :meth:`_tell_wait`), one a person must approve is asked now (once approved, it waits its
        turn: :meth:`_await_approval`). Otherwise (None, ``ruling``) as it was."""
        room = without_room(*ruling)
        if room is None or diagnosis.action is None:
            return None, ruling
        if room[0] == Verdict.APPROVED:
            turn = self._turn_until(inc.service, diagnosis.action.target, now)
            if turn is None:  # room made since the gates read the store: decided at once, again
                return now, ruling
            self._tell_wait(inc, turn)
            return turn.until, ruling
        return None, room

    def _turn_until(self, service: str, target: str, now: float) -> _Wait | None:
        """A remedy the blast radius has no room for now (``policy.blast_radius``: as many
        targets with an action in flight as it allows, in all or in the service's group) waits
        its turn, as a rollout's ``maxUnavailable`` does, and is decided, through every gate, once
        one of those actions ends: in a mass outage the services are fixed a few at a time, each
        batch verified first, rather than the rest denied to a person while they stay down. (A
        failing batch opens the breakers, which do deny.) None when there is room. The gate
        stays, for incidents decided in the same tick."""
        busy = self.store.busy_services() - {target}
        if not busy:
            return None
        svc = self.config.service(service)
        group = svc.group if svc else None
        members = self.config.group_members(group) if group else frozenset()
        ok, reason = blast_limit(self.policy().blast_radius, len(busy), group, len(members),
                                 len((busy & members) - {target}))
        if ok:
            return None
        on = min((busy & members) or busy)
        return _Wait(now + self.config.engine.interval_s, on, "turn",
                     f"blast radius {reason.removeprefix('limit reached: ')}: waits its turn")

    def _dependency_down(self, dep: str) -> bool:
        """Whether ``dep`` is down now: it has an unclosed down incident, and its latest ``up`` and
        ``probe_ok`` samples (those it has) do not all say it is up again."""
        if (dep, "down") not in self._open:
            return False
        latest = [self.series.latest(dep, m) for m in ("up", "probe_ok")]
        values = [v for _, v in (x for x in latest if x is not None)]
        return not values or min(values) < 1

    def _dependency_fix_until(self, service: str, deps: Sequence[str], now: float) -> _Wait | None:
        """For a service seen dead while ``deps`` (what it depends on) were down: when its own
        remedy may go, None for now. Restarted while a dependency is still down, a service that
        cannot run without it dies again at once. So it waits while a dependency is still down and
        its fix is on its way (its down incident not yet decided, awaiting a person's approval,
        acting or verifying) or settling (``settle_s`` after it ended); no longer once every
        dependency is up again, nor once the fix has ended and settled with the dependency still
        down (nor when no fix is coming: escalated to a person): then it goes ahead all the same,
        never held for ever. A dependency that itself depends on ``service`` (a cycle) is not
        waited for while undecided (each would wait for the other)."""
        down = [dep for dep in deps if self._dependency_down(dep)]
        for dep in down:
            inc = self._incident(self._open[(dep, "down")])
            if (inc is not None and inc.state in _FIX_COMING
                    and service not in self._dependencies.get(dep, ())):
                return _Wait(now + self.config.engine.interval_s, dep, "fix",
                             f"{dep}, which {service} depends on, is down and its fix is still to come")
        return self._activity_until(down, now)

    def _own_failure(self, service: str, cause: str) -> str | None:
        """For a down incident of a service with dependencies: how its own process or unit ended,
        when it is seen dead ("web's own process exited with code 3", "web's container web-1
        exited with code 137 (OOMKilled)"). Dead, it is its own fault and needs its own remedy: its
        incident is not held back as a dependency's echo. Seen by the supervisor for a ``process``
        binding, else by each bound actuator that reads its unit's state (``unit_exit``: systemd's
        failed unit, Docker's exited container, a Kubernetes workload none of whose pods runs). None
        when it runs, or nothing can tell (a failing probe or an ``up`` of 0 from elsewhere, such
        as a Prometheus target, may be a dependency's echo), or the read fails (logged). None in
        a shadow-only engine (replay), which runs nothing."""
        if cause != "down" or self.shadow_only or service not in self._dependencies:
            return None
        bindings = self.config.bindings.get(service, {})
        if bindings.get("process") is not None:
            if self.supervisor.identity(service):
                return None
            code = self.supervisor.exit_info(service)
            if code is None:
                return f"{service}'s own process is not running"
            return f"{service}'s own process {describe_exit(code)}"
        for kind, binding in bindings.items():
            read = getattr(self.actuators.get(kind), "unit_exit", None)
            if read is None:
                continue
            # an actuator call like the executor's, which beat before each: a read that hangs is
            # named as what the loop is stuck in, not as the incident's step around it
            self.watchdog.beat(f"{kind} on {service}: reading whether its unit is dead (an actuator call)")
            try:
                how = read(Target(service=service, binding=binding))
            except AutonomicError as exc:
                log.info("service %s: cannot read its %s unit's state (taken as not seen dead): %s",
                         service, kind, exc)
                continue
            if how:
                return f"{service}'s {how}"
        return None

    def _retry_after(self, inc: Incident, diagnosis: Diagnosis, now: float) -> float | None:
        """A further attempt on an incident that already had one (its escalation chain) waits
        out the target's backoff rather than being denied by it; None when it may go now."""
        if diagnosis.action is None:
            return None
        state = BackoffState.model_validate(self.store.get_state(backoff_key(diagnosis.action.target)) or {})
        if state.last_failure_at is None:
            return None
        policy = self.policy()
        ok, _, _ = backoff_allows(state, now, policy.backoff)
        if ok or not self.store.actions(incident_id=inc.id):
            return None
        return state.last_failure_at + backoff_delay(state.failures, policy.backoff)

    def reconcile_incident(self, incident_id: str) -> float | None:
        inc = self._incident(incident_id)
        if inc is None or inc.closed_at is not None:
            return None
        now = self.clock.now()
        if inc.state == IncidentState.OPEN:
            return self._diagnose_and_decide(inc, now)
        if inc.state == IncidentState.DIAGNOSED:
            if self._close_if_cleared(inc, now):
                return None
            with self.store.reading():  # one snapshot for the busy check and every gate's read
                diagnosis = self.store.diagnoses(inc.id)[-1]
                busy = self._wait_until(inc, diagnosis, now)
                retry = stale = None
                if busy is None:
                    retry = self._retry_after(inc, diagnosis, now)
                if busy is None and retry is None:
                    # a first diagnosis that waited for the service to be free is made again from what
                    # is true now (an escalation chain's next step keeps its own)
                    stale = now - diagnosis.ts > self._stale_after() and not self.store.actions(incident_id=inc.id)
                    stale = stale or self._pattern_gone(diagnosis) is not None
                    ctx = self._gate_context(inc, diagnosis, now, human=False)  # stale: for its turn alone
            if busy is not None:
                self._tell_wait(inc, busy)
                return busy.until
            if retry is not None:
                return retry
            # a remedy waiting its turn is diagnosed again once it has room, not while it waits
            turn, ruling = self._room(inc, diagnosis, decide(ctx), now)
            if turn is not None or stale:
                self._ladder_changes.clear()  # found again when it is decided
            if turn is not None:
                return turn
            if stale:
                gone = self._pattern_gone(diagnosis)
                log.info("incident %s: %s", inc.id[:8], gone or f"diagnosis is {now - diagnosis.ts:.0f} s old; "
                                                                   "diagnosing again")
                return self._diagnose(inc, now, gone)
            self._waits_told.pop(inc.id, None)  # decided: a later wait (its escalation chain's) is told again
            return self._decide(inc, diagnosis, now, human=None, ctx=ctx, ruling=ruling)
        if inc.state == IncidentState.AWAITING_APPROVAL:
            return self._await_approval(inc, now)
        if inc.state == IncidentState.ESCALATED:
            return self._held_by_pause(inc, now)
        return None

    def _recall_told(self, inc_id: str) -> None:
        """What the engines before this one told of ``inc_id``'s waits, read from its audit once per
        incident, before this engine first tells one: whether people heard it waits its turn (an
        entry whose ``waits`` is for ``turn``), and the wait its latest diagnosis, wait or decision
        entry says it is in. A restart does not tell people again of a wait they heard of, nor
        audit it again."""
        if inc_id in self._told_read:
            return
        entries = self.store.audit_events(subject=inc_id, kinds=_TOLD_KINDS)
        self._told_read.add(inc_id)  # once read (a read that failed is tried again at the next tell)
        stored = [e.data.get("waits") if isinstance(e.data, dict) else None for e in entries]
        if any(isinstance(w, dict) and w.get("for") == "turn" for w in stored):
            self._turns_told.add(inc_id)
        latest = stored[-1] if stored else None
        if isinstance(latest, dict) and inc_id not in self._waits_told:
            self._waits_told[inc_id] = (str(latest.get("on")), str(latest.get("for")))

    def _tell_wait(self, inc: Incident, waits: _Wait) -> None:
        """Audit ``incident.waiting`` when the decision of ``inc``, diagnosed already, waits on
        something its diagnosis's entry does not say (``waits``): the blast radius filled by
        incidents decided in the same tick, an action on a dependency started since. Once per
        thing waited on and reason, not at every look, an engine before this one's told included
        (:meth:`_recall_told`); an ``explain`` reader is otherwise left to guess why a diagnosed
        incident was not acted on."""
        self._recall_told(inc.id)
        told = (waits.on, waits.reason)
        if self._waits_told.get(inc.id) == told:
            return
        self.store.audit("engine", "incident.waiting", inc.id, {"waits": waits.stored()})
        self._waits_told[inc.id] = told
        log.info("incident %s waits: %s", inc.id[:8], waits.why)
        self._tell_turn(inc, waits)

    def _tell_turn(self, inc: Incident, waits: _Wait) -> None:
        """Tell people, once per incident and as information, that its remedy waits its turn
        (``waits`` for the blast radius): in a mass outage a service may be left down for several
        batches' verification, and the blast_radius gate, before it waited, told a person at once.
        (The other waits are short, or on a fix people hear of.)"""
        self._recall_told(inc.id)
        if waits.reason != "turn" or inc.id in self._turns_told:
            return
        self._turns_told.add(inc.id)
        self.notify(Notification(level=Level.INFO, ts=self.clock.now(), service=inc.service, incident_id=inc.id,
                                 title=inc.headline,
                                 body=f"not acted on yet: {waits.why}; decided, through every gate, once one of "
                                      f"the actions in flight (on {waits.on}, ...) ends (policy.blast_radius)"))

    def _held_by_pause(self, inc: Incident, now: float) -> float | None:
        """An incident whose last decision only a pause denied is the engine's again once the
        pause is lifted: decided again, through every gate (its diagnosis made again when stale),
        audited ``incident.resumed``. Looked at every ``interval_s`` while the pause lasts. Any
        other escalation (a person's denial, a failed fix, another gate) stays with a person."""
        if inc.id not in self._paused_out:  # the store's record, as read at start and followed since
            return None
        decisions = self.store.decisions(inc.id)
        if not self._only_paused_held(decisions):
            self._paused_out.discard(inc.id)
            return None
        if paused_reason(self.store, inc.service, self.config.state_dir) is not None:
            return now + self.config.engine.interval_s
        resumed = inc.model_copy(update={"state": IncidentState.DIAGNOSED, "resolution": None, "updated_at": now})
        self.store.record(resumed, actor="engine", event="incident.resumed", subject=inc.id,
                          data={"decision": decisions[-1].id, "why": "the pause that held it was lifted"})
        log.info("incident %s: the pause that held it was lifted; deciding again", inc.id[:8])
        self._paused_out.discard(inc.id)
        return now

    def _held_back(self, action: Action) -> None:
        """``action`` was cancelled by a pause before it ran: its incident is looked at again
        (:meth:`_held_by_pause`) until the pause is lifted."""
        self._paused_out.add(action.incident_id)
        self.queue.add(("incident", action.incident_id), self.clock.now())

    def _only_paused_held(self, decisions: Sequence[Decision]) -> bool:
        """Whether a pause is all that held back the incident of ``decisions`` (its own, in
        order): the last one denied by the paused gate alone, or approved with its action
        cancelled by the kill switch before anything ran."""
        if not decisions:
            return False
        last = decisions[-1]
        if _only_paused(last):
            return True
        if last.verdict != Verdict.APPROVED:
            return False
        actions = [a for a in self.store.actions(incident_id=last.incident_id) if a.decision_id == last.id]
        return bool(actions) and all(a.state == ActionState.CANCELLED and (a.error or "").startswith("paused:")
                                     for a in actions)

    def _diagnose_and_decide(self, inc: Incident, now: float) -> float | None:
        """A new incident: the diagnosis and, when the service is free and the verdict is not an
        approval, the decision, in one transaction (one commit; the audit keeps both events).
        An approved action is prepared in a step of its own after this commit, because preparing
        asks the actuator for its undo snapshot (I/O that must not hold the store's write lock)."""
        diagnosis = self._diagnosis_for(inc, now)
        with self._holding_notifications(), self.store.unit():
            with self.store.reading():
                busy = self._wait_until(inc, diagnosis, now)
            inc = self._record_diagnosis(inc, diagnosis, now, busy)
            if busy is not None:
                return busy.until
            with self.store.reading():
                ctx = self._gate_context(inc, diagnosis, now, human=False)
            ruling = decide(ctx)
            turn, ruling = self._room(inc, diagnosis, ruling, now)
            if turn is not None or ruling[0] == Verdict.APPROVED:
                self._ladder_changes.clear()  # found again when the next step decides
                return now if turn is None else turn
            return self._decide(inc, diagnosis, now, human=None, ctx=ctx, ruling=ruling)

    @contextlib.contextmanager
    def _holding_notifications(self) -> Iterator[None]:
        """Notifications made inside the block are sent when it ends well, and never when it
        fails (a person is not told of a decision the store rolled back)."""
        if self._held is not None:
            yield
            return
        self._held = []
        try:
            yield
            held = self._held
        finally:
            self._held = None
        for key, notification in held:
            self._send(key, notification)

    def _diagnose(self, inc: Incident, now: float, why: str | None = None) -> float:
        """Diagnose ``inc`` (again), ``why`` (when given) added to the rationale."""
        diagnosis = self._diagnosis_for(inc, now)
        if why is not None:
            diagnosis = diagnosis.model_copy(update={"rationale": f"{diagnosis.rationale.rstrip('.')}; {why}"})
        self._record_diagnosis(inc, diagnosis, now)
        return now

    def _pattern_gone(self, diagnosis: Diagnosis) -> str | None:
        """Why ``diagnosis`` cannot be acted on as it stands: the pattern that made it is no longer in
        the library (a reload or a restart with another config renamed or removed it). Its action would
        run as no pattern's: verified by a default instead of the pattern's own verification, its
        outcome on no pattern's record. None when its pattern is still there, or it has none."""
        pid = diagnosis.pattern_id
        if pid is None or pid in self.patterns:
            return None
        return f"diagnosed again: {pid}, which diagnosed it, is no longer in the pattern library"

    def _diagnosis_for(self, inc: Incident, now: float) -> Diagnosis:
        """The diagnosis of ``inc`` now: reads (and the config history), no writes."""
        with self.store.reading():
            findings = self.store.findings(inc.id)
            record = self._pattern_record(inc.service)
            recent, uncounted = self._recent_actions(inc.service, now)
        svc = self.config.service(inc.service)
        cannot = self._cannot_run(inc.service)
        cannot.update(self._no_effect(inc, cannot))
        change = self._last_change(inc.service)
        ctx = DiagnoseContext(now=now, service_type=svc.type if svc else None,
                              last_change_at=change.at if change else None, last_change=change, record=record,
                              recent_actions=recent, uncounted_actions=uncounted, cannot_run=cannot,
                              actuator_order=self._actuator_order(inc.service))
        own = self._own_failure(inc.service, inc.cause)
        diagnosis = diagnose(inc, findings, list(self.patterns.values()), ctx)
        diagnosis = self._with_root_causes(diagnosis, inc, now, own)
        diagnosis = self._with_dependencies_down(diagnosis, inc, own)
        if diagnosis.action is None and inc.cause not in _NO_FALLBACK_CAUSES:
            fallback = self.config.fallback_action(inc.service)
            # a pattern that matched but that this service cannot carry out (a built-in one for an
            # actuator it does not bind) knows no remedy here either; a hand-over pattern (no
            # action) said a person decides, and keeps the incident
            unknown = diagnosis.pattern_id is None or diagnosis.pattern_id in cannot
            if fallback is not None and unknown:
                # proposed as no pattern's: its decision then always waits for a person (see _decide)
                diagnosis = diagnosis.model_copy(update={
                    "action": fallback, "pattern_id": None,
                    "rationale": diagnosis.rationale + "; proposing the service's fallback remedy "
                                 f"({fallback.type} {fallback.params}) for a person to approve"})
        return diagnosis

    def _record_diagnosis(self, inc: Incident, diagnosis: Diagnosis, now: float,
                          waits: _Wait | None = None) -> Incident:
        """Record ``diagnosis``; with ``waits``, why its decision is not taken now, kept in the audit
        entry's ``waits``: the incident is decided after the wait (from a diagnosis made again when
        this one is stale by then), and a reader of the audit log is otherwise left to guess what
        happened in between."""
        updated = inc.model_copy(update={"state": IncidentState.DIAGNOSED, "updated_at": now})
        data: dict[str, Any] = {"pattern": diagnosis.pattern_id, "confidence": round(diagnosis.confidence, 3),
                                "rationale": diagnosis.rationale}
        if waits is not None:
            data["waits"] = waits.stored()
            self._recall_told(inc.id)  # before this entry is written: it is not what was told before
        self.store.record(diagnosis, updated, actor="engine", event="incident.diagnosed", subject=inc.id, data=data)
        if waits is not None:
            self._waits_told[inc.id] = (waits.on, waits.reason)
            self._tell_turn(updated, waits)
        else:
            self._waits_told.pop(inc.id, None)
        log.info("incident %s diagnosed: %s%s", inc.id[:8], diagnosis.rationale,
                 f"; waits: {waits.why}" if waits is not None else "")
        return updated

    def _with_dependencies_down(self, diagnosis: Diagnosis, inc: Incident, own: str | None) -> Diagnosis:
        """Keep on the diagnosis how the service's own process ended (``own``) and, when it did
        while something it depends on is down, which: its remedy then waits for their fix
        (:meth:`_dependency_fix_until`) and does not count toward a crash loop, as the rationale says."""
        if own is None:
            return diagnosis
        down = [d for d in sorted(self._dependencies.get(inc.service, ())) if self._dependency_down(d)]
        if not down:
            said = "" if own in diagnosis.rationale else f"; {own}: its own fault, not an echo of its dependencies"
            return diagnosis.model_copy(update={"own_failure": own, "rationale": diagnosis.rationale + said})
        names = ", ".join(down)
        verb = "is" if len(down) == 1 else "are"
        note = (f"; {own} while {names}, which it depends on, {verb} down: {inc.service} is restarted once "
                f"{names}'s fix has run and {names} {verb} up again (at the latest once that fix has been verified "
                f"and has settled, or at once when none is coming), and this death does not count toward a "
                f"crash loop")
        return diagnosis.model_copy(update={"own_failure": own, "dependencies_down": down,
                                            "rationale": diagnosis.rationale + note})

    def _with_root_causes(self, diagnosis: Diagnosis, inc: Incident, now: float, own: str | None) -> Diagnosis:
        """For a service with dependencies: rank root causes over the dependency graph from the
        series store (window: from a little before the incident opened; baseline: before that)
        and keep the ranking on the diagnosis; the ``root_cause`` gate then holds back an action
        on a service whose trouble a dependency explains."""
        svc = self.config.service(inc.service)
        if svc is None or not svc.depends_on:
            return diagnosis
        edges = [(s.name, d) for s in self.config.services for d in s.depends_on]
        split = inc.opened_at - max(60.0, 10 * self.config.engine.interval_s)
        window: dict[tuple[str, str], tuple[Any, Any]] = {}
        baseline: dict[tuple[str, str], tuple[Any, Any]] = {}
        for name in sorted(dependency_closure(edges, inc.service)):
            for metric in self.series.metrics(name):
                if metric not in _SYMPTOMS:  # a raised pool size or a new thread count is no symptom
                    continue
                ts, values = self.series.window(name, metric, 0.0)
                before = ts < split
                if before.any() and (~before).any():
                    baseline[(name, metric)] = (ts[before], values[before])
                    window[(name, metric)] = (ts[~before], values[~before])
        if not window:
            return diagnosis
        try:
            report = rank_causes(edges, rca_series(window), rca_series(baseline), target=inc.service,
                                 params=_LIVE_RCA)
        except AutonomicError as exc:
            log.warning("incident %s: root cause ranking failed: %s", inc.id[:8], exc)
            return diagnosis
        me = next((r for r in report.ranking if r.service == inc.service), None)
        impacted_by = me.caused_by if me is not None and me.role == "impacted" else []
        note = ""
        if own is not None and impacted_by:
            note = (f"; root cause analysis ranks {inc.service} as impacted by {', '.join(impacted_by)}, but {own}: "
                    f"its own fault, remedied whatever {', '.join(impacted_by)} does")
            impacted_by = []
        elif impacted_by:
            note = f"; root cause analysis: {inc.service} is impacted by {', '.join(impacted_by)}"
        elif report.root_causes:
            note = f"; root cause analysis names {', '.join(report.root_causes)}"
        top = [{"service": r.service, "score": r.score, "role": r.role, "evidence": r.evidence[:3],
                "evidence_against": r.evidence_against[:3]} for r in report.ranking[:5]]
        return diagnosis.model_copy(update={"root_causes": report.root_causes, "impacted_by": impacted_by,
                                            "rca": top,
                                            "rationale": diagnosis.rationale.rstrip(".") + note if note
                                            else diagnosis.rationale})

    def _cannot_run(self, service: str) -> dict[str, str]:
        """Per pattern whose action ``service`` cannot carry out, why (``plan.diagnose.cannot_run``:
        an actuator type it does not bind, a runbook its binding lacks, or a remedy verified by a
        probe's metric (nor its fallback, a unit's ``up``) nothing samples for it: its fallback or a
        person gets the incident instead of a remedy that could never be judged; that last only when
        the config's service entries say what samples the service: the live engine, a replay with its
        config). Nothing when the engine was told to assume every binding (a replay without a config)."""
        if self.assume_bound:
            return {}
        svc = self.config.service(service)
        may_report = svc.may_report if svc is not None and self._config_sources else None
        out = cannot_run(self.patterns.values(), self.config.bindings.get(service, {}), service, may_report)
        stopped = self._stopped_on_purpose(service)
        if stopped is not None:
            kind, why = stopped
            for p in self.patterns.values():
                if p.action is None or p.id in out:
                    continue
                if kind in ({st.type for st in p.action.steps} or {p.action.type}):
                    out[p.id] = why
        return out

    def _stopped_on_purpose(self, service: str) -> tuple[str, str] | None:
        """(the unit's actuator type, why) while the unit ``service``'s binding names was stopped on
        purpose, as its latest ``unit_stopped`` sample (of the last few ticks) says: a systemd unit
        ``inactive``, a container paused or stopped through Docker, a workload scaled to zero, a
        supervised process a person stopped (``autonomic stop``: the process source samples it). A
        remedy through that actuator (a restart that would start it again) is then passed over: a
        failing probe does not undo a person's stop. None otherwise, and when the unit's state is not read."""
        bindings = self.config.bindings.get(service, {})
        kind = "process" if "process" in bindings else unit_kind(bindings)
        latest = self.series.latest(service, "unit_stopped") if kind is not None else None
        if kind is None or latest is None or latest[1] < 1:
            return None
        if self.clock.now() - latest[0] > 3 * self.config.engine.interval_s:
            return None  # not read lately (the unit cannot be read now): not known to be stopped
        if kind == "process":
            why = _stopped_text(service, self._stopped.get(service), self.config.command)
            return kind, why or f"{service} was stopped on purpose"
        how = {"systemd": "its systemd unit is inactive",
               "docker": "its container is paused, or was stopped through Docker",
               "kubernetes": "its workload is scaled to 0 replicas"}.get(kind, f"its {kind} unit is stopped")
        return kind, f"{service} was stopped on purpose ({how}): autonomic does not start what a person stopped"

    def _expected_down(self, inc: Incident) -> str | None:
        """Who stopped ``inc``'s service, when ``inc`` is its being down while a person has it
        stopped through ``autonomic stop`` (a supervised process: :meth:`_stopped_on_purpose`):
        what they asked for, told at info rather than paged. None otherwise. A systemd unit
        ``inactive``, a paused or stopped container or a workload at 0 replicas still pages: autonomic cannot
        tell a person's stop from a unit whose process exited on its own with status 0, so it does
        not restart one, but a person looks."""
        stopped = self._stopped_on_purpose(inc.service) if inc.cause == "down" else None
        return stopped[1] if stopped is not None and stopped[0] == "process" else None

    def _actuator_order(self, service: str) -> tuple[str, ...]:
        """The service's actuator types in the order its config binds them, which ranks remedies
        of equal confidence (``DiagnoseContext.actuator_order``): a service bound to process and
        systemd is restarted through the one it lists first (``plan.diagnose.actuator_order``). A
        replay without a config, whose services bind nothing, takes autonomic's own ``process``
        actuator as bound first."""
        return actuator_order(None if self.assume_bound else self.config.bindings.get(service, {}))

    def _no_effect(self, inc: Incident, cannot: dict[str, str]) -> dict[str, str]:
        """Per pattern that may match ``inc`` whose action would change nothing on its service now
        (the actuator's optional read-only ``no_effect``: a pool already at the size a raise is
        clamped to), why. Diagnosis passes these over as it passes over what the service cannot
        run, so the next remedy (or a person) gets the incident, instead of an action that changes
        nothing and then waits a verification window for the trouble to go away by itself. A
        workflow changes nothing only when every one of its steps would change nothing: a step
        whose actuator cannot tell (no ``no_effect``: a restart) counts as a change, so a no-op
        followed by a restart is no no-op. Each read is one actuator call of the loop, named to
        its watchdog first, as :meth:`_own_failure`'s reads are."""
        if self.assume_bound:
            return {}
        out: dict[str, str] = {}
        for p in self.patterns.values():
            if p.action is None or p.id in cannot:
                continue
            if p.match.cause is not None and p.match.cause != inc.cause:
                continue
            steps = [(s.name, s.type, s.params) for s in p.action.steps] or [("", p.action.type, p.action.params)]
            whys: list[str] = []
            for name, kind, params in steps:
                why = self._step_no_effect(inc, p.id, kind, params)
                if why is None:
                    break  # this step changes something (or cannot tell): the action does
                whys.append(f"step {len(whys) + 1}/{len(steps)} {kind}:{name}: {why}" if name else why)
            else:
                out[p.id] = f"{inc.service}: " + ("; ".join(whys) if len(whys) == 1 else
                                                  "every step would change nothing: " + "; ".join(whys))
        return out

    def _step_no_effect(self, inc: Incident, pattern_id: str, kind: str, params: dict[str, Any]) -> str | None:
        """Why one step (actuator ``kind`` with ``params``) of pattern ``pattern_id`` would change
        nothing on ``inc``'s service now, by the actuator's ``no_effect``; None when it would
        change something, or its actuator cannot tell (none, or the read failed: logged)."""
        actuator = self.actuators.get(kind)
        check = getattr(actuator, "no_effect", None)
        if actuator is None or check is None:
            return None
        # an actuator call like the executor's, which beat before each: a read that hangs is
        # named as what the loop is stuck in, not as the incident's step around it
        self.watchdog.beat(f"{kind} on {inc.service}: reading whether {pattern_id} would change anything "
                           "(an actuator call)")
        try:
            why = check(Target(service=inc.service, binding=self.config.bindings.get(inc.service, {}).get(kind)),
                        actuator.Params.model_validate(params))
        except (ValidationError, AutonomicError, OSError, ValueError) as exc:
            log.warning("incident %s: could not tell whether %s would change anything: %s", inc.id[:8], pattern_id,
                        exc)
            return None
        return str(why) if why else None

    def _recent_actions(self, service: str, now: float) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
        """Per pattern, when its actions on ``service`` were created (cancelled ones left out), as
        far back as the longest ``match.after_actions.within_s`` of any pattern; nothing is read
        when no pattern counts actions. Two maps: the actions that count, and those that answered
        a death of the service while something it depends on was down (a diagnosis of their
        incident says ``dependencies_down``), which do not count toward a crash loop: only the
        first incident of the service in each outage of its dependencies (:meth:`_outage_of`).
        A service restarted again and again into one outage (its dependency down for good, no fix
        coming: it goes ahead all the same) dies again for a reason of its own as far as its
        remedy goes, and those restarts count: it is handed over as a crash loop, not restarted
        for ever."""
        counted: dict[str, list[float]] = {}
        uncounted: dict[str, list[float]] = {}
        if self._after_actions_s is None:
            return counted, uncounted
        excused: dict[str, bool] = {}
        outages: set[tuple[str, ...]] = set()  # the dependencies' outages an incident was excused in
        actions = self.store.actions(service=service, created_since=now - self._after_actions_s)
        for action in sorted(actions, key=lambda a: a.created_at):
            if action.pattern_id is None or action.state == ActionState.CANCELLED:
                continue
            if action.incident_id not in excused:
                excused[action.incident_id] = False
                if service in self._dependencies:
                    down = next((d for d in self.store.diagnoses(action.incident_id) if d.dependencies_down), None)
                    outage = self._outage_of(down) if down is not None else None
                    if outage is not None and outage not in outages:
                        outages.add(outage)
                        excused[action.incident_id] = True
            into = uncounted if excused[action.incident_id] else counted
            into.setdefault(action.pattern_id, []).append(action.created_at)
        return counted, uncounted

    def _outage_of(self, diagnosis: Diagnosis) -> tuple[str, ...]:
        """Which outage of its dependencies a diagnosis saying ``dependencies_down`` was made in:
        the ids of those dependencies' down incidents open at its time (its own incident's id when
        none is found any more)."""
        found = sorted(i.id for dep in diagnosis.dependencies_down
                       for i in self.store.incidents(service=dep, open_since=diagnosis.ts, limit=None)
                       if i.cause == "down" and i.opened_at <= diagnosis.ts)
        return tuple(found) or (diagnosis.incident_id,)

    def _last_change(self, service: str) -> ConfigChange | None:
        """The last change to the service's bound config file made outside the engine (for
        ``match.after_change_s``; the engine's own changes are judged by their own verification),
        timed by the engine's clock: git stamps a commit by this host's clock, which over
        PostgreSQL is not the engine's (a ServerClock); with this host 20 minutes ahead, a change
        made a moment ago would otherwise be 20 minutes in the future and match no pattern."""
        binding = self.config.bindings.get(service, {}).get("config")
        if binding is None:
            return None
        from autonomic.execute.config_file import last_change

        try:
            changed = last_change(binding)
        except AutonomicError as exc:
            log.warning("cannot read config history of %s: %s", service, exc)
            return None
        if changed is not None and isinstance(self.clock, ServerClock):
            return changed.model_copy(update={"at": self.clock.from_host(changed.at)})
        return changed

    def _pattern_record(self, service: str) -> dict[str, tuple[float, float]]:
        """Per pattern, (successes, failures) for a diagnosis on ``service``: its record there and a
        quarter of it elsewhere (:func:`~autonomic.plan.diagnose.service_record`). The tallies are
        read from the store once, then moved by each action that ends (:class:`PatternTallies`),
        not read again whole: with a year of actions that read cost a decision 0.34 s."""
        totals, here = self._tallies_now(service)
        return service_record(totals, here)

    def _tallies_now(self, service: str) -> tuple[Mapping[str, tuple[int, int]], Mapping[str, tuple[int, int]]]:
        """Per pattern, its record everywhere and on ``service``, less what a pattern's remedy made
        of it before the pattern last changed (:meth:`_note_pattern_changes`: an edited remedy is
        vouched for by no record of another one, in its confidence as in its earned autonomy).
        That part is read again whenever the tallies have moved: an action of the remedy before,
        still in flight when the engine noticed the change, is part of it once it ends."""
        totals, per_service = self._tallies.read()
        here = per_service.get(service, {})
        changed = {pattern: since for pattern, since in self._record_since.items() if since > 0}
        if not changed:
            return totals, here
        if self._record_before_beside is not totals:  # the tallies make new mappings when they move
            self._record_before = {pattern: self.store.pattern_tallies_before(pattern, since)
                                   for pattern, since in changed.items()}
            self._record_before_beside = totals
        totals, here = dict(totals), dict(here)
        for pattern, before in self._record_before.items():
            s, f = totals.get(pattern, (0, 0))
            s_before, f_before = (sum(t[i] for t in before.values()) for i in (0, 1))
            totals[pattern] = (max(0, s - s_before), max(0, f - f_before))
            s, f = here.get(pattern, (0, 0))
            s_here, f_here = before.get(service, (0, 0))
            here[pattern] = (max(0, s - s_here), max(0, f - f_here))
        return totals, here

    def policy(self) -> PolicyConfig:
        """The policy in force: an admin's override from the store (PUT /api/v1/policy), else the file's."""
        return self._policy_from(self.store.get_state(POLICY_OVERRIDE))

    def _policy_from(self, override: dict[str, Any] | None) -> PolicyConfig:
        """The policy an admin's stored override gives (:func:`read_override`: a field this version
        refuses takes the file's value, the rest is kept), else the file's. What was replaced is
        logged once per stored override, not at every read."""
        if not override:
            return self.config.spec.policy
        policy, replaced = read_override(override, self.config.spec.policy)
        if replaced:
            said = json.dumps(override, sort_keys=True, default=str)
            if said != self._override_told:
                self._override_told = said
                if replaced == ["*"]:
                    log.error("the stored policy override (PUT /api/v1/policy) no longer validates: the file's "
                              "policy is used instead; put the policy again")
                else:
                    log.error("the stored policy override (PUT /api/v1/policy) no longer validates in %s: the "
                              "file's values are used there, the rest of the override is kept; put the policy "
                              "again", listed(replaced, "field"))
        return policy

    def _gate_context(self, inc: Incident, diagnosis: Diagnosis, now: float, human: bool) -> GateContext:
        action_type = diagnosis.action.type if diagnosis.action else "none"
        target = diagnosis.action.target if diagnosis.action else inc.service
        step_types = tuple(s.type for s in diagnosis.action.steps) if diagnosis.action else ()
        later = [t for t in dict.fromkeys(step_types) if t != action_type]  # a workflow's other step types
        scopes = (action_type, *later, "global")
        keys = (POLICY_OVERRIDE, PAUSE_GLOBAL, pause_key(inc.service), backoff_key(target),
                *(breaker_key(scope) for scope in scopes))
        with self.store.reading():  # one snapshot for every read the gates need
            state = self.store.get_states(keys)
            busy = self.store.busy_services()
            breakers = {scope: _breaker_state(state[breaker_key(scope)]) for scope in scopes}
            live = (self.store.live_decisions()
                    if any(b.state == "half_open" and b.trial_in_flight for b in breakers.values()) else None)
            counts = Counts(*self.store.action_counts(now - _DAY, now - _WEEK, type=action_type,
                                                      service=inc.service))
            step_counts = {t: self.store.action_counts(now - _DAY, now - _WEEK, type=t, service=inc.service)[:2]
                           for t in later}
        policy = self._policy_from(state[POLICY_OVERRIDE])
        effective = policy.effective_for([action_type, *step_types], diagnosis.pattern_id, inc.service)
        if diagnosis.pattern_id is None and diagnosis.action is not None:
            # A fallback for a failure no pattern knows: only ever with a person's approval,
            # and the person, not a confidence score, judges it.
            level = Autonomy.APPROVE if effective.autonomy.rank >= Autonomy.APPROVE.rank else effective.autonomy
            effective = _replace(effective, autonomy=level, confidence_threshold=0.0)
        pattern = self.patterns.get(diagnosis.pattern_id or "")
        here, elsewhere = self._record_split(diagnosis.pattern_id, inc.service)
        if policy.autonomy_ladder.enabled and diagnosis.pattern_id is not None:
            effective = self._earned(effective, policy, diagnosis.pattern_id, inc.service, now)
        if self.shadow_only:
            effective = _replace(effective, shadow=True)
        svc = self.config.service(inc.service)
        group = svc.group if svc else None
        members = self.config.group_members(group) if group else frozenset()
        competing = []
        unclosed = sorted((self._incidents[i] for i in self._unclosed_on.get(target, ()) if i in self._incidents),
                          key=lambda i: -i.opened_at)
        for other in unclosed[:50]:
            if other.id == inc.id or other.closed_at is not None or other.state.terminal:
                continue
            diagnoses = self.store.diagnoses(other.id)
            d = diagnoses[-1] if diagnoses else None
            if d is not None and d.action is not None and d.action.target == target:
                competing.append(Plan(id=other.id, target=target, action_type=d.action.type,
                                      direction=plan_direction(d.action.params), ts=d.ts, pattern_id=d.pattern_id))
        return GateContext(
            now=now, diagnosis=diagnosis, effective=effective, policy=policy, service=inc.service,
            action_type=action_type, pattern_rollback_safe=pattern.rollback_safe if pattern else False,
            paused_global=_pause_text(PAUSE_GLOBAL, read_pause_file(pause_file(self.config.state_dir, None))
                                      or state[PAUSE_GLOBAL]),
            paused_service=_pause_text(pause_key(inc.service),
                                       read_pause_file(pause_file(self.config.state_dir, inc.service))
                                       or state[pause_key(inc.service)]),
            counts=counts, breaker_type=breakers[action_type], breaker_global=breakers["global"],
            human_approved=human,
            target_in_flight=target in busy, in_flight_targets=len(busy - {target}),
            group=group, group_size=len(members), group_in_flight=len((busy & members) - {target}),
            backoff=BackoffState.model_validate(state[backoff_key(target)] or {}),
            priority=0, competing_plans=tuple(competing), step_types=step_types, live_decisions=live,
            step_counts=step_counts, step_breakers={t: breakers[t] for t in later},
            record_here=here, record_elsewhere=elsewhere,
        )

    def _record_split(self, pattern_id: str | None, service: str) -> tuple[tuple[int, int], tuple[int, int]]:
        """``pattern_id``'s measured record, (successes, failures), on ``service`` and on every
        other service (the confidence gate's reason names them), from the tallies the diagnosis
        reads; zeros with no pattern."""
        if pattern_id is None:
            return (0, 0), (0, 0)
        totals, here = self._tallies_now(service)
        s_all, f_all = totals.get(pattern_id, (0, 0))
        s, f = here.get(pattern_id, (0, 0))
        return (s, f), (s_all - s, f_all - f)

    def _earned(self, effective: Any, policy: PolicyConfig, pattern_id: str, service: str, now: float) -> Any:
        """The autonomy this pattern has earned on this service from its measured record;
        a promotion or demotion is stored, audited and told."""
        outcomes, answers = self.store.pattern_record(pattern_id, service)
        # what the pattern did before its last change does not count: an action by when it was
        # created (one in flight across the change ran the remedy before it), an answer by its time
        since = self._record_since.get(pattern_id, 0.0)
        kept: list[Any] = [Evidence(ts=ts, verdict=verdict, rolled_back=rolled)
                           for ts, verdict, rolled, acted in outcomes if acted >= since]
        people = people_evidence(answers, pattern_id, service)  # a person's answers count too
        kept += [e for e in people if e.ts >= since]
        kept.sort(key=lambda o: o.ts)
        left_out = len(outcomes) + len(people) - len(kept)
        note = (f"; counting its record since the pattern changed ({utc_stamp(since)}): "
                f"{counted(left_out, 'earlier outcome')} left out" if left_out else "")
        earned, why = earned_effective(effective, policy, pattern_id, service, kept, note=note)
        key = f"{AUTONOMY_STATE}{pattern_id}:{service}"
        before = (self.store.get_state(key) or {}).get("level", effective.autonomy.value)
        after = earned.autonomy.value
        kind = ladder_event(Autonomy(before), Autonomy(after))
        if kind is not None:  # written by _decide, after the read snapshot this runs in is closed
            def store_change() -> None:
                self.store.set_state(key, {"level": after, "reason": why}, actor="engine", event=kind,
                                     data={"pattern": pattern_id, "service": service, "from": before, "to": after,
                                           "reason": why})
                self.notify(Notification(level=Level.INFO, ts=now, service=service,
                                         title=f"pattern {pattern_id} on {service}: autonomy {before} -> {after}",
                                         body=why or ""))
            self._ladder_changes.append(store_change)
        return earned

    def _decide(self, inc: Incident, diagnosis: Diagnosis, now: float, human: dict[str, Any] | None,
                ctx: GateContext | None = None,
                ruling: tuple[Verdict, list[GateResult]] | None = None) -> float | None:
        if ctx is None:
            ctx = self._gate_context(inc, diagnosis, now, human is not None)
        while self._ladder_changes:  # a promotion or demotion found while reading the gates' context
            self._ladder_changes.pop(0)()
        verdict, gates = ruling if ruling is not None else decide(ctx)
        # a request's expiry is recorded with it, by this engine's TTL: the CLI, the API and the
        # other replicas judge an answer by it whatever their own config says now
        expires = now + self.config.engine.approval_ttl_s
        decision = Decision(
            incident_id=inc.id, diagnosis_id=diagnosis.id, ts=now, verdict=verdict, gates=gates,
            action=diagnosis.action, decided_by=(human or {}).get("actor", "engine"),
            comment=(human or {}).get("comment", ""), pattern_id=diagnosis.pattern_id,
            shadow_verdict=shadow_verdict(ctx, verdict, gates),
            expires_at=expires if verdict == Verdict.NEEDS_APPROVAL else None,
        )
        self._count(decision)
        failed = [g for g in gates if not g.passed]
        # with no remedy there is nothing to approve or to be confident in: the other gates' word
        # on doing it would only read as if something waited on a person
        failed = [g for g in failed if g.gate == "has_action"] or failed
        why = "; ".join(g.said() for g in failed) or "every gate passed"
        if verdict == Verdict.APPROVED:
            if self.shadow_only:  # the shadow gate denies every decision; this is a bug, not a case
                raise RuntimeError("an approved decision in a shadow-only engine")
            self.store.record(decision, actor=decision.decided_by, event="decision.approved", subject=inc.id,
                              data={"decision": decision.id, "action": diagnosis.action.model_dump()
                                    if diagnosis.action else None})
            log.info("incident %s: approved %s on %s", inc.id[:8],
                     diagnosis.action.describe() if diagnosis.action else "-", inc.service)
            # an open breaker past its timeout turns half-open with this action as its one trial
            before = {ctx.action_type: ctx.breaker_type, **ctx.step_breakers, "global": ctx.breaker_global}
            for scope, state in breakers_after_approval(ctx, decision.id).items():
                if state != before[scope]:  # as read for this decision, a moment ago
                    self.store.set_state(breaker_key(scope), state.model_dump(mode="json"), actor="engine",
                                         event="breaker.updated", data={"scope": scope, "state": state.state})
            pattern = self._with_service_line(self._watching(self.patterns.get(diagnosis.pattern_id or ""),
                                                             inc.service), inc.service)
            action = self.executor.prepare(inc, decision, pattern, now)
            self.queue.add(("action", action.id), now)
            return None
        if verdict == Verdict.NEEDS_APPROVAL:
            updated = inc.model_copy(update={"state": IncidentState.AWAITING_APPROVAL, "updated_at": now,
                                             "resolution": Resolution.ESCALATED})
            earlier = self._asked_before(inc)  # requests for this trouble that expired, nothing done
            self.store.record(decision, updated, actor="engine", event="decision.needs_approval",
                              subject=inc.id, data={"decision": decision.id, "why": why,
                                                    "request": earlier[0] + 1 if earlier else 1})
            again = ""
            if earlier is not None:
                n, since, prev = earlier
                again = (f". This is request {n + 1} for this trouble since {utc_stamp(since)}: the last one (incident "
                         f"{prev.id[:8]}) expired at {utc_stamp(prev.closed_at or since)} with nothing done, the "
                         "trouble still on. Deny it to stop being asked: the incident then stays with a person "
                         "until the trouble clears")
            self.notify(Notification(
                level=Level.APPROVAL_REQUESTED, ts=now, service=inc.service, incident_id=inc.id,
                title=f"approval needed{f' (request {earlier[0] + 1})' if earlier else ''}: "
                      f"{diagnosis.action.describe() if diagnosis.action else '?'} on {inc.service}",
                body=f"{inc.summary}. {diagnosis.rationale.rstrip('.')}. Asked because {why}. "
                     f"Run: {self.config.command} approve {inc.id[:8]} (or deny {inc.id[:8]}) "
                     f"before {utc_stamp(expires)} "
                     f"(engine.approval_ttl_s {self.config.engine.approval_ttl_s:g} s): unanswered by then, "
                     f"nothing is done{again}"))
            return expires
        updated = inc.model_copy(update={"state": IncidentState.ESCALATED, "updated_at": now,
                                         "resolution": Resolution.ESCALATED,
                                         "escalated_at": inc.escalated_since(now)})
        would = decision.shadow_verdict.value if decision.shadow_verdict else None
        self.store.record(decision, updated, actor=decision.decided_by, event="decision.denied", subject=inc.id,
                          data={"decision": decision.id, "why": why, "would_have": would,
                                "action": diagnosis.action.model_dump() if diagnosis.action else None})
        if decision.shadow_verdict == Verdict.APPROVED and diagnosis.action is not None:
            why = (f"would have run {diagnosis.action.type} on {diagnosis.action.target} "
                   f"(every other gate passed); {why}")
        log.info("incident %s: not acting (%s)", inc.id[:8], why)
        level = Level.INFO if ctx.effective.autonomy == Autonomy.OBSERVE and not human else Level.ALERT
        held = _only_paused(decision)
        if held:
            self._paused_out.add(inc.id)
        then = "; decided again when the pause is lifted" if held else ""
        expected = self._expected_down(inc)
        if expected is not None:  # a person stopped it through autonomic: its being down pages nobody
            level, why, then = Level.INFO, expected, ""
        self.notify(Notification(level=level, ts=now, service=inc.service, incident_id=inc.id,
                                 title=inc.headline, body=f"not acting: {why}{then}"))
        return now + self.config.engine.interval_s if held else None

    def _watching(self, pattern: Pattern | None, service: str) -> Pattern | None:
        """``pattern`` with its verification watching the metric ``service`` samples: its
        ``fallback_metric`` (the unit's ``up``) in place of its ``metric`` (``probe_ok``) when the
        service's config sets up nothing that samples the metric but something that samples the
        fallback (``ServiceSpec.may_report``); else its ``metric``, also when what samples the
        service is not known (sources a test hands in). Either way the action's spec names the one
        metric watched, and no fallback."""
        verify = pattern.verify if pattern is not None else None
        fallback = verify.fallback_metric if verify is not None else None
        if pattern is None or verify is None or fallback is None:
            return pattern
        metric, svc = verify.metric, self.config.service(service)
        if (svc is not None and self._config_sources and not self.assume_bound
                and not svc.may_report(metric) and svc.may_report(fallback)):
            metric = fallback
        return pattern.model_copy(update={"verify": verify.model_copy(update={"metric": metric,
                                                                              "fallback_metric": None})})

    def _with_service_line(self, pattern: Pattern | None, service: str) -> Pattern | None:
        """``pattern`` with a verification bound given as the service's threshold (``max:
        threshold``) set to ``service``'s number for that metric (validated at load: every service
        that can carry out the pattern has one)."""
        if pattern is None or pattern.verify is None or pattern.verify.threshold is None:
            return pattern
        th = self.thresholds.get(service, Thresholds())
        line = (th.floors().get(pattern.verify.metric) if pattern.verify.threshold == "min"
                else th.limit(pattern.verify.metric))
        if line is None:  # the config's validation rules it out; this is a bug, not a case
            raise RuntimeError(f"pattern {pattern.id}: {service} has no threshold for {pattern.verify.metric}")
        return pattern.model_copy(update={"verify": pattern.verify.with_line(line)})

    def _await_approval(self, inc: Incident, now: float) -> float | None:
        """An incident waiting for a person. An answer names the decision it answers
        (``decision``, written by the API and the CLI): one given to an earlier request on the
        incident (a second person's, written just after the first answer was acted on) is removed,
        audited ``approval.stale``, and the incident keeps waiting. The request expires when
        recorded with it (``expires_at``: by the TTL of the engine that asked, whatever this one's
        is now); one recorded without it, ``approval_ttl_s`` after it was made (its decision's
        time; the incident's ``updated_at`` moves with every finding the lasting symptom brings, so
        it cannot measure that): an approval given after that (by its own time and the engine's),
        or none, closes the incident as expired and nothing acts. An approval given in time is
        honoured, through every gate again, unless the incident has had no finding for a few ticks
        meanwhile (its trouble cleared on its own): then it is closed as cleared and nothing acts.
        A denial always is honoured."""
        answer = self.store.get_state(approval_key(inc.id))
        decisions = self.store.decisions(inc.id)
        if answer is not None and answer.get("decision") is not None:
            awaiting = decisions[-1].id if decisions else None
            if answer["decision"] != awaiting:
                self.store.set_state(approval_key(inc.id), None, actor=str(answer.get("actor", "?")),
                                     event="approval.stale", data={"incident": inc.id, "decision": answer["decision"],
                                                                   "awaiting": awaiting})
                answer = None
        expires = approval_expires_at(inc, decisions, self.config.engine.approval_ttl_s)
        given = _given_at(answer or {})  # when the person answered (by their clock; now when unknown)
        given = now if given is None else given
        late = answer is not None and answer.get("verdict") == "approve" and min(given, now) >= expires
        if answer is None or late:
            if now < expires:
                return expires
            expired = inc.model_copy(update={"state": IncidentState.EXPIRED, "updated_at": now,
                                             "closed_at": now})
            # approved too late: found stored (given late), or refused as late when given (nothing
            # stored, the attempt audited approval.late): not "nobody answered"
            late_by = str((answer or {}).get("actor", "?")) if late else self._refused_late_by(inc.id)
            data: dict[str, Any] = {"approved_late_by": late_by} if late_by is not None else {}
            asked = _approval_window(inc, decisions, self.config.engine.approval_ttl_s)[0]
            on, how = self._trouble_now(inc, now)  # before the write: closing it forgets what was seen
            before = self._asked_before(inc)
            # the request's place among those made for the same trouble, read by the next request
            data.update(trouble_on=on, request=before[0] + 1 if before else 1,
                        since=before[1] if before else asked)
            if late:
                self.store.set_state(approval_key(inc.id), None, actor="engine", event="approval.consumed",
                                     data={"incident": inc.id, "verdict": "expired"})
            self.store.record(expired, actor="engine", event="approval.expired", subject=inc.id, data=data)
            self._open.pop((inc.service, inc.cause), None)
            # told after the write that closes it, as every transition is: once, whichever replica
            # leads (a deposed leader's write is refused), and not again after a restart (closed)
            self.notify(self._expiry_notice(inc, decisions, (asked, expires), on, how, data))
            return None
        who = str(answer.get("actor", "?"))
        # an approval is taken only while it is still the answer stored: a denial may replace an
        # approval the engine has not acted on (it stops it), up to the instant the engine takes it
        approval = {"verdict": "approve", "actor": answer.get("actor"), "decision": answer.get("decision")}
        if answer.get("verdict") == "approve" and self._quiet(inc, now):
            # the trouble went away on its own while the person was asked (a blip): acting now
            # would act on a healthy service, so nothing is done, as for a diagnosed incident; the
            # answer is taken by the engine (it did not act on it) and recorded as a decision of the
            # person's never acted on, with the close, all in one write. When its findings stopped
            # with their source (not seen to clear), nothing is done either (the engine cannot see
            # the service: it could not verify a fix), but the person is alerted, not informed.
            went, unseen = self._how_it_went(inc, now)
            doubt = f": {unseen}" if unseen else ""
            with self.store.unit():
                taken = self.store.delete_state_if(
                    approval_key(inc.id), approval, actor="engine", event="approval.consumed",
                    data={"incident": inc.id, "verdict": "cleared", "approved_by": who,
                          "reason": f"approved by {who}, but {went} before it was acted on; nothing done{doubt}"})
                if taken:
                    self._close_if_cleared(inc, now, approved=answer)
            if not taken:  # replaced by a denial since it was read: that is the answer now
                return now
            self.notify(Notification(level=Level.ALERT if unseen else Level.INFO, ts=now, service=inc.service,
                                     incident_id=inc.id, title=f"approval not acted on: {inc.headline}",
                                     body=f"approved by {who}, but {went} before that; nothing done{doubt}"))
            return None
        consumed = {"incident": inc.id, "verdict": answer.get("verdict")}
        if answer.get("verdict") == "approve":
            # an approved remedy the blast radius has no room for now waits its turn, as one the
            # engine approves does, the approval kept (a denial may still replace it; given in time,
            # it does not expire meanwhile): the gate would deny what the person just approved
            remedy = self.store.diagnoses(inc.id)[-1].action
            turn = self._turn_until(inc.service, remedy.target, now) if remedy is not None else None
            if turn is not None:
                self._tell_wait(inc, turn)
                return turn.until
            self._waits_told.pop(inc.id, None)
            # taken, and the incident moved on from awaiting approval, in one write: an answer
            # given after it sees the approval taken (refused, saying how to stop the action) rather
            # than being told it will be acted on while the engine goes ahead (its snapshot, an
            # actuator call, comes before the decision's write). Killed between the two, the
            # incident is decided again on restart, through every gate: a person is asked again.
            taking = inc.model_copy(update={"state": IncidentState.DIAGNOSED, "resolution": None, "updated_at": now})
            with self.store.unit():
                taken = self.store.delete_state_if(approval_key(inc.id), approval, actor=who,
                                                   event="approval.consumed", data=consumed)
                if taken:
                    self.store.record(taking, actor="engine", event="incident.deciding", subject=inc.id,
                                      data={"approved_by": who})
            if not taken:
                return now  # replaced by a denial since it was read: that is the answer now
            inc = taking
        diagnosis = self.store.diagnoses(inc.id)[-1]
        gone = self._pattern_gone(diagnosis) if answer.get("verdict") == "approve" else None
        if gone is not None:  # approved, but not as it stands: decided again, through every gate
            log.info("incident %s: approved by %s, but %s", inc.id[:8], who, gone)
            return self._diagnose(inc, now, gone)
        if answer.get("verdict") == "approve":
            if self.store.get_state(backoff_key(inc.service)):  # a person's act resets the backoff
                self.store.set_state(backoff_key(inc.service), None, actor=str(answer.get("actor", "?")),
                                     event="backoff.reset", data={"service": inc.service})
            return self._decide(inc, diagnosis, now, human=answer)
        decision = Decision(incident_id=inc.id, diagnosis_id=diagnosis.id, ts=now, verdict=Verdict.DENIED,
                            action=diagnosis.action, decided_by=str(answer.get("actor", "?")),
                            comment=str(answer.get("comment", "")), pattern_id=diagnosis.pattern_id)
        updated = inc.model_copy(update={"state": IncidentState.ESCALATED, "updated_at": now,
                                         "resolution": Resolution.ESCALATED,
                                         "escalated_at": inc.escalated_since(now)})
        with self.store.unit():  # the denial taken and the incident closed on it: one write
            self.store.set_state(approval_key(inc.id), None, actor=who, event="approval.consumed", data=consumed)
            self.store.record(decision, updated, actor=decision.decided_by, event="decision.denied_by_person",
                              subject=inc.id, data={"comment": decision.comment})
        self._count(decision)
        return None

    def _refused_late_by(self, incident_id: str) -> str | None:
        """Who last approved ``incident_id``'s request after it expired and was refused as late
        (audited ``approval.late`` by :func:`answer_approval`), among its newest audit entries;
        None when nobody did."""
        return next((e.actor for e in reversed(self.store.audit_events(subject=incident_id, limit=5, newest=True))
                     if e.kind == "approval.late"), None)

    def _trouble_now(self, inc: Incident, now: float) -> tuple[bool, str]:
        """Whether ``inc``'s trouble is still on at ``now`` (its findings still come, or one of its
        alerts still fires: not :meth:`_quiet`), and what says so, in words: its metric's latest
        value in the engine's series beside its threshold, whether its alert still fires, and when
        its last finding came."""
        on = not self._quiet(inc, now)
        said = []
        found, _ = self.store.findings_ends(inc.id, 0, 1)
        latest = self.series.latest(inc.service, found[-1].metric) if found else None
        if found and latest is not None:
            ts, value = latest
            when = "now" if now - ts <= self._stale_after(inc.service) else f"{now - ts:.0f} s ago"
            line = f" (its threshold {found[-1].threshold:g})" if found[-1].threshold is not None else ""
            said.append(f"{found[-1].metric} {value:g} {when}{line}")
        if self._alerts_firing.get(inc.id):
            said.append("its alert still fires")
        last = self._last_seen.get(inc.id, inc.last_finding_at)
        said.append(f"its last finding {max(0.0, now - last):.0f} s ago")
        return on, ", ".join(said)

    def _asked_before(self, inc: Incident) -> tuple[int, float, Incident] | None:
        """The approval requests made for ``inc``'s trouble before ``inc`` that expired with the
        trouble still on: (how many, when the first was asked, the incident of the last); None when
        there were none. The one before is for the same trouble when its incident (same service and
        cause, the one opened last before ``inc``) was closed by its request's expiry
        (``approval.expired``) with the trouble still on, and ``inc`` opened within the quiet time
        after that (``engine.resolve_after_s``; for an alert's incident ``alert_resolve_after_s``):
        a finding that soon would have joined that incident, had its expiry not closed it. Its
        count and first time are read from that expiry's audit entry (``request``, ``since``)."""
        prev = next((i for i in self.store.incidents(service=inc.service, before=inc.id, limit=20)
                     if i.cause == inc.cause), None)
        if prev is None or prev.state != IncidentState.EXPIRED or prev.closed_at is None:
            return None
        engine = self.config.engine
        quiet = engine.alert_quiet_s if inc.kind == FindingKind.ALERT else engine.resolve_after_s
        if inc.opened_at - prev.closed_at > quiet:
            return None
        expiry = _expiry_event(self.store, prev.id)
        if expiry is None or expiry.data.get("trouble_on") is not True:
            return None
        return int(expiry.data.get("request", 1)), float(expiry.data.get("since", prev.opened_at)), prev

    def _expiry_notice(self, inc: Incident, decisions: Sequence[Decision], window: tuple[float, float], on: bool,
                       how: str, data: dict[str, Any]) -> Notification:
        """What people are told when the approval request ``inc`` waited on expired (``window``: when
        it was asked and when it expired) and the incident closed with nothing done: which incident,
        what was asked, when, whether the trouble is still on (``on``, ``how``: see
        :meth:`_trouble_now`) and what happens next. An alert while the trouble is still on (it
        needs a person: the alert routes page, where the request may have gone to a channel
        nobody read), else for information."""
        asked, expires = window
        request = next((d for d in reversed(decisions) if d.verdict == Verdict.NEEDS_APPROVAL), None)
        action = request.action if request is not None else None
        what = f"{action.describe()} on {action.target}" if action is not None else "its remedy"
        late = data.get("approved_late_by")
        answered = (f"{late} approved it only after that" if late else "nobody answered it")
        body = (f"incident {inc.id[:8]} ({inc.headline}): the request to run {what}, asked at {utc_stamp(asked)}, "
                f"expired at {utc_stamp(expires)}; {answered}, so nothing was done.")
        n = int(data["request"])
        if n > 1:
            body += f" It was request {n} for this trouble since {utc_stamp(float(data['since']))}."
        if on:
            body += (f" The trouble is still on: {how}. At its next finding the engine opens a new incident and "
                     "decides it again through every gate; should that ask a person again, it is request "
                     f"{n + 1} for this trouble. To stop being asked, deny that request: the incident then stays "
                     "with a person until the trouble clears.")
        else:
            body += (f" The trouble has cleared: {how}. Should it come back, a new incident opens and is "
                     "decided afresh.")
        return Notification(level=Level.ALERT if on else Level.INFO, ts=self.clock.now(), service=inc.service,
                            incident_id=inc.id, title=f"approval request expired, nothing done: {what}", body=body)

    def _count(self, decision: Decision) -> None:
        """One more decision in ``autonomic_decisions_total``, by verdict; a person's approval
        never acted on because the trouble cleared first (a denied decision of the
        :data:`TROUBLE_CLEARED` gate) as ``trouble_cleared``: it is no denial of the remedy."""
        self.metrics.decision(TROUBLE_CLEARED if decision.never_acted_on else decision.verdict.value)

    # --- breaker ---------------------------------------------------------------------------

    def _breaker(self, scope: str) -> BreakerState:
        return _breaker_state(self.store.get_state(breaker_key(scope)))

    def _record_result(self, action: Action, success: bool) -> None:
        now = self.clock.now()
        self.metrics.action(action.type, action.state.value)
        key = backoff_key(action.service)
        old = BackoffState.model_validate(self.store.get_state(key) or {})
        new = backoff_record(old, success, now, self.policy().backoff, started=action.created_at)
        if new != old:
            self.store.set_state(key, new.model_dump(mode="json"), actor="engine", event="backoff.updated",
                                 data={"service": action.service, "failures": new.failures})
        failures = self.policy().breaker.failures
        for scope in _scopes(action):
            before = self._breaker(scope)
            after = breaker_record(before, success, now, failures)
            self.metrics.breaker(scope, after.state == "open")
            if after != before:
                self.store.set_state(breaker_key(scope), after.model_dump(mode="json"), actor="engine",
                                     event="breaker.updated", data={"scope": scope, "state": after.state})
                if after.state == "open" and before.state != "open":
                    failed = counted(after.consecutive_failures, "consecutive failed intervention")
                    self.notify(Notification(level=Level.ALERT, ts=now, service=action.service,
                                             title=f"circuit breaker opened for {scope} actions",
                                             body=f"{failed};"
                                                  f" the last: {action.type} on {action.service}"
                                                  f" (action {action.id[:8]})"))

    def _escalation_step(self, action: Action) -> None:
        """The escalation chain (the ``then`` of the first pattern tried on the incident): after
        an action failed (or was rolled back and the undo restored health), the next pattern in
        the chain not yet tried on this incident becomes the incident's diagnosis, at its prior
        confidence lowered by its record on the service (as :func:`~autonomic.plan.diagnose.diagnose`
        lowers it), and is decided through every gate again; when the chain is spent, a person is
        paged. A pattern of the
        chain the service cannot carry out (an actuator it does not bind, a runbook its binding
        lacks) is passed over, as diagnosis passes it over, and named in the step's audit."""
        tried = [a.pattern_id for a in self.store.actions(incident_id=action.incident_id) if a.pattern_id]
        origin = self.patterns.get(tried[0]) if tried else None  # the chain is the first pattern's
        pattern = self.patterns.get(action.pattern_id or "")
        if origin is None or pattern is None or not origin.then:
            return
        inc = self.store.get(Incident, action.incident_id)
        if inc is None or inc.closed_at is not None:
            return
        now = self.clock.now()
        cannot = self._cannot_run(inc.service)
        left = [p for p in origin.then if p not in tried and p in self.patterns]
        passed_over = {p: cannot[p] for p in left if p in cannot}  # as diagnosis passes them over
        nxt = next((self.patterns[p] for p in left if p not in cannot), None)
        if nxt is None or nxt.action is None:
            skipped = "".join(f"; {p} passed over: {why}" for p, why in passed_over.items())
            self.notify(Notification(
                level=Level.ALERT, ts=now, service=inc.service, incident_id=inc.id,
                title=f"{inc.service}: escalation chain spent",
                body=f"tried {', '.join(dict.fromkeys(tried))}; none fixed {inc.summary}{skipped}. "
                     "A person must act."))
            return
        target = inc.service if nxt.action.target == "{service}" else nxt.action.target
        # its prior, lowered by its record on the service as a diagnosis lowers it (a chained remedy
        # that keeps failing there falls under the threshold, then the floor, as any other does)
        factor = record_factor(*self._pattern_record(inc.service).get(nxt.id, (0.0, 0.0)))
        confidence = round(nxt.prior_confidence * factor, 4)
        record = f" x {factor:.2f} for its record on {inc.service}" if factor < 1 else ""
        diagnosis = Diagnosis(
            incident_id=inc.id, ts=now, pattern_id=nxt.id, confidence=confidence,
            action=nxt.action.model_copy(update={"target": target}),
            rationale=f"escalation chain: {pattern.id} did not fix it; next is {nxt.id} (confidence {confidence:.2f}: "
                      f"its prior {nxt.prior_confidence:g}{record})",
        )
        again = inc.model_copy(update={"state": IncidentState.DIAGNOSED, "resolution": None, "updated_at": now})
        self.store.record(diagnosis, again, actor="engine", event="incident.escalation_step", subject=inc.id,
                          data={"failed": pattern.id, "next": nxt.id, "action": action.id,
                                "passed_over": passed_over})
        log.info("incident %s: %s did not fix it; trying %s next", inc.id[:8], pattern.id, nxt.id)
        self.notify(Notification(level=Level.ALERT, ts=now, service=inc.service, incident_id=inc.id,
                                 title=f"{inc.service}: {pattern.id} did not fix it; trying {nxt.id}",
                                 body=diagnosis.rationale))
        self.queue.add(("incident", inc.id), now)

    def _open_breakers(self, action: Action) -> None:
        """A failed undo leaves the world in a state nobody chose: stop automating at once."""
        now = self.clock.now()
        for scope in _scopes(action):
            state = self._breaker(scope).model_copy(update={"state": "open", "opened_at": now,
                                                             "trial_in_flight": False})
            self.store.set_state(breaker_key(scope), state.model_dump(mode="json"), actor="engine",
                                 event="breaker.updated", data={"scope": scope, "state": "open",
                                                                "why": f"undo of action {action.id} failed"})
            self.metrics.breaker(scope, True)
        self.notify(Notification(level=Level.ALERT, ts=now, service=action.service,
                                 title="circuit breakers opened: an undo failed",
                                 body=f"{', '.join(_scopes(action)[:-1])} and global automation stopped"
                                      f" (the undo of action {action.id[:8]} on {action.service}); a person must"
                                      f" look: the breakers half-open for one trial action at"
                                      f" {utc_stamp(now + self.policy().breaker.open_s)} (policy.breaker.open_s"
                                      f" {self.policy().breaker.open_s:g} s) unless automation is paused"))

    # --- people ----------------------------------------------------------------------------

    def notify(self, notification: Notification) -> None:
        """Send ``notification`` to the people, kept in the store's outbox until every notifier
        is through with it (see :meth:`_keep_outgoing`). It gets its id here, when it has none:
        the outbox key's, so every retry and every later engine's resend carries the same one."""
        if notification.id is None:
            notification = notification.model_copy(update={"id": new_id()})
        if self.secrets:
            notification = Notification.model_validate(self.secrets.data(notification.model_dump(mode="json")))
        key = self._keep_outgoing(notification)
        if self._held is not None:  # inside a store unit: sent once it has committed
            self._held.append((key, notification))
            return
        self._send(key, notification)

    def _send(self, key: str | None, notification: Notification, *, only: list[str] | None = None,
              dedup: bool = True) -> None:
        """Hand ``notification`` (kept under ``key``, None when not kept) to the notifiers, ``only``
        those named when given; named ones no longer configured (renamed or removed since it was
        kept) make it go to every notifier that takes its level: sent twice rather than lost."""
        if key is None:
            self.notifiers.send(notification)
            return
        gone = sorted(set(only or ()) - {route.label for route in self.notifiers.routes})
        if gone:  # renamed or removed since it was kept (a reload, the next engine's config)
            log.warning("notification %r was kept for %s, not in this config: sent to every notifier that "
                        "takes it", notification.title, ", ".join(gone))
            only = None
        self._outgoing.setdefault(key, _Outgoing(notification, self.clock.now()))
        self.notifiers.send(notification, done=lambda failed: self._sent.append((key, failed)), only=only,
                            dedup=dedup)

    def _keep_outgoing(self, notification: Notification) -> str | None:
        """Keep ``notification`` in the store's outbox (``outbox:<id>``, unaudited bookkeeping)
        before it is sent, and return its key; the key is forgotten once every notifier that takes
        it has delivered it, or a retry long after (:meth:`_settle_outbox`). A page queued in memory is
        lost when the engine dies or stops before it is delivered (a Slack that is slow, a retry's
        backoff); kept here, the next engine to lead sends it (:meth:`_send_left_over`): at least
        once. Inside a store unit the outbox write is part of it, so a decision rolled back takes
        its notification with it. None (sent all the same, not kept) in shadow mode, when no
        notifier takes its level, inside a read-only block, or when the store refuses the write."""
        if self.shadow_only or not self.notifiers.accepts(notification.level) or not self.store.writable_here():
            return None
        key = f"{OUTBOX}{notification.id or new_id()}"
        try:
            self.store.keep_states({key: _Outgoing(notification, self.clock.now()).stored()})
        except StoreError as exc:
            if self.store.in_unit():  # a failed write fails the unit, and the notification is not sent
                raise
            log.warning("notification %r not kept in the outbox (%s): sent all the same, lost if the engine "
                        "stops before it is delivered", notification.title, exc)
            return None
        return key

    def _settle_outbox(self, now: float, *, retry: bool = True) -> None:
        """Settle what the notifiers are through with, in one write from the engine's thread (not
        the notifiers'): a notification delivered everywhere leaves the outbox; one that a notifier
        gave up on (after its own quick retries) stays, for those notifiers only, and is offered to
        them again after 30 s, 1 min, 2 min, ... (at most 10 min apart) until it is delivered or
        ``engine.notify_retry_for_s`` (an hour) has passed since it was made; then it is given up,
        logged and audited ``notification.undelivered``. A write the store refuses is tried again
        at the next tick; what is still kept when the engine stops is sent by the next engine to
        start: a duplicate, never a loss. ``retry``: also offer the notifications that are due again."""
        through: list[tuple[str, list[str]]] = []
        while self._sent:
            through.append(self._sent.popleft())
        forget: list[str] = []
        retry_for_s = self.config.engine.notify_retry_for_s
        again: dict[str, _Outgoing] = {}
        undelivered: list[tuple[_Outgoing, list[str]]] = []
        for key, failed in through:
            out = self._outgoing.get(key)
            if not failed or out is None:
                forget.append(key)
            elif now - out.queued_at >= retry_for_s:
                forget.append(key)
                undelivered.append((out, failed))
            else:
                retries = out.retries + 1
                again[key] = replace(out, routes=failed, retries=retries, due=now + min(
                    NOTIFY_RETRY_BASE_S * 2 ** (retries - 1), NOTIFY_RETRY_CAP_S))
        if through:
            try:
                with self.store.unit():
                    self.store.forget_states(forget)
                    self.store.keep_states({key: out.stored() for key, out in again.items()})
                    for out, failed in undelivered:
                        self.store.audit("engine", "notification.undelivered", out.notification.incident_id or "engine",
                                         {"title": out.notification.title, "service": out.notification.service,
                                          "notifiers": failed, "retries": out.retries})
            except StoreError as exc:
                self._sent.extend(through)  # settled at a later tick, not sent again by the next engine
                if self._problem("outbox", str(exc)):  # once, not every tick while the store refuses
                    log.warning("%s through the notifiers, not settled in the outbox (%s): settled at a later "
                                "tick, or sent again by the next engine to start if this one stops first",
                                counted(len(through), "notification"), exc)
                return
            self._problem("outbox", None)
            for key in forget:
                self._outgoing.pop(key, None)
            self._outgoing.update(again)
            for out, failed in undelivered:
                log.error("notification %r given up: %s did not take it in %s of retries", out.notification.title,
                          ", ".join(failed), duration(retry_for_s))
        if retry:
            for key, out in list(self._outgoing.items()):
                if out.due <= now:
                    out.due = math.inf  # in flight again
                    self._send(key, out.notification, only=out.routes, dedup=False)

    def _send_left_over(self, outbox: Mapping[str, dict[str, Any]]) -> None:
        """Send what an engine before this one kept in the ``outbox`` and did not deliver (it died,
        or stopped while a notifier was slow), oldest first; audited ``notifications.resent``.
        One made longer than ``engine.notify_retry_for_s`` ago is given up instead, as a running
        engine gives it up (logged, audited ``notification.undelivered``): a page hours late
        tells of trouble long past. One kept for notifiers this config no longer has goes to every
        notifier that takes its level (see :meth:`_send`; its id lets a receiver drop a second)."""
        def queued_at(item: tuple[str, dict[str, Any]]) -> float:
            at = item[1].get("queued_at")
            return float(at) if isinstance(at, int | float) else 0.0

        left = sorted(outbox.items(), key=queued_at)
        if not left:
            return
        now, retry_for_s = self.clock.now(), self.config.engine.notify_retry_for_s
        sent, bad, stale = 0, [], []  # stale: (key, entry) made longer than the retries last
        for key, value in left:
            try:
                out = _Outgoing.from_stored(key, value, now)
            except ValueError as exc:
                log.error("outbox entry %s is not a notification, dropped: %s", key, exc)
                bad.append(key)
                continue
            if now - out.queued_at >= retry_for_s:
                stale.append((key, out))
                continue
            self._outgoing[key] = out
            self._send(key, out.notification, only=out.routes, dedup=False)
            sent += 1
        with self.store.unit():
            self.store.forget_states([*bad, *(key for key, _ in stale)])
            for _, out in stale:
                self.store.audit("engine", "notification.undelivered", out.notification.incident_id or "engine",
                                 {"title": out.notification.title, "service": out.notification.service,
                                  "notifiers": out.routes, "retries": out.retries, "made_at": out.queued_at})
            self.store.audit("engine", "notifications.resent", "engine",
                             {"count": sent, "dropped": len(bad), "given_up": len(stale)})
        for _, out in stale:
            log.error("notification %r given up: made %s ago by an engine that stopped before delivering it, "
                      "longer than engine.notify_retry_for_s (%s)", out.notification.title,
                      duration(now - out.queued_at), duration(retry_for_s))
        if sent:
            log.warning("%s queued by an engine that stopped before delivering %s: sent now",
                        counted(sent, "notification"), "it" if sent == 1 else "them")

    def health(self) -> dict[str, tuple[HealthState, list[str]]]:
        now = self.clock.now()
        health = next((d for d in self.detectors if isinstance(d, HealthDetector)), None)
        if health is not None:
            return health.states(self.series, now)
        return {name: assess(self.series, name, th, now) for name, th in self.thresholds.items()}


class NullMetrics:
    """Stands in for :class:`autonomic.oversight.metrics.EngineMetrics` when none is given."""

    def __getattr__(self, name: str) -> Callable[..., None]:
        return lambda *args, **kwargs: None


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """Python's cyclic garbage collector paused (when it was on) for the block. Collecting and
    detecting make a few objects per series (a parsed answer, its samples): at 100,000 series
    they set off collections that walk every object the process holds, a second or more a tick,
    and find nothing, since that data holds no cycles. What the block leaves is collected after."""
    was_on = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_on:
            gc.enable()


def _repeat_every(incident: Incident, now: float) -> float:
    """How often a repeating finding of ``incident`` is written: every 10 s at first, then a tenth
    of the incident's age, at most once a minute. A service down for a day wrote 8,640 findings
    (and as many audit events, about 10 MB); now about 1,500. The count is kept exactly."""
    return min(_REPEAT_PERSIST_MAX_S, max(_REPEAT_PERSIST_S, (now - incident.opened_at) / 10))


def _persist_phase(incident_id: str) -> float:
    """A fixed offset in [0, _REPEAT_PERSIST_S) from the incident's id, so the repeat writes of
    incidents opened together (an alert storm) are spread out rather than all due in one tick."""
    return _REPEAT_PERSIST_S * (zlib.crc32(incident_id.encode()) / 2**32)


def _only_paused(decision: Decision) -> bool:
    """Whether a pause is all that denied ``decision`` (a gate asking for a person's approval
    aside): with the pause lifted, it would be decided differently."""
    hard = {g.gate for g in decision.gates if not g.passed and not g.needs_approval}
    return decision.verdict == Verdict.DENIED and hard == {"paused"}


def _breaker_state(raw: dict[str, Any] | None) -> BreakerState:
    return BreakerState.model_validate(raw) if raw else BreakerState()


def _replace(obj: Any, **changes: Any) -> Any:
    if hasattr(obj, "model_copy"):
        return obj.model_copy(update=changes)
    return replace(obj, **changes)
