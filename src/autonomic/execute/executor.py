"""The action journal: runs an approved decision as journaled steps, crash-safe.

Every transition is written to the store (with its audit entry) *before* the next step
starts, so the engine can be killed anywhere and :meth:`Executor.reconcile` picks up from
the stored state:

::

    PENDING ──(kill switch checked last)──▶ RUNNING ──apply ok──▶ VERIFYING ──pass──▶ SUCCEEDED
       │                                      │  │                    │
       └─paused──▶ CANCELLED      apply failed┘  └─restart: applied?  ├─fail, undo safe──▶ ROLLING_BACK ─▶ ROLLED_BACK
                                   ▼              yes: VERIFYING      ├─fail, no undo────▶ FAILED
                                 FAILED           no: apply (first    └─inconclusive─────▶ ESCALATED
                                                  time it happens)
                                                  unknown: ESCALATED

An action is never applied twice: after a crash in RUNNING the actuator is asked whether
the apply with this idempotency key took effect, and when it cannot tell, a person is. The
kill switch is asked again before that apply (paused: one that never took effect is
CANCELLED, one that had is handed to a person), and before every retry of a failed attempt.
With leader election the same check raises NotLeaderError when this replica is not surely the
leader; refused before its first attempt, an action goes back to PENDING (nothing ran), as it
does when that check cannot read the store.
An undo snapshot that cannot be taken when the action is prepared (a retryable error retried as
an apply's is) makes it FAILED at once, nothing run, as a failed apply.

A multi-step action (``Action.workflow``) stays RUNNING while :func:`workflow.run` decides
each step; for every step the journal gets "step i/n type:name" intent (with the snapshot
taken right before it and the key ``f"{idempotency_key}:{i-1}"``) and result records, and
"compensate i/n ..." ones when undone. The kill switch is checked before each step and each
compensation: paused before the first step means CANCELLED, later means what ran is left in
place (not compensated) and a person is told; a check that cannot read the store journals the
step's intent as "withdrawn" (nothing ran) and the step is tried again at a later tick (before
the first step, the action is back to PENDING: a decision older than ``decision_ttl_s`` by then
is cancelled as stale, as a single-step action's is).

A pause stops every actuator call, undo and compensation included: a fix that fails
verification while automation is paused is not undone; the action is ESCALATED (no breaker
opens: nothing failed to undo), a person is told what was left in place, and lifting the pause
does not run the undo later.
A person's stop of the service (``stopped``: ``autonomic stop``, read from the store right before
the kill switch) wins over an action in flight through the actuator that would start it again:
CANCELLED before its apply (also when recovered after a crash, and before a workflow step), or,
applied already, before its verification judges it, with no outcome on its pattern's record.
It holds back an undo and a workflow's compensation through such an actuator too (it would start
what the person stopped): a rollback is not run (ESCALATED as under a pause, the stop its reason,
told at info), and a compensation held back stops the compensating there, what ran left in place
and listed, no breaker opened (nothing failed to undo).
A failed step with its predecessors compensated is FAILED; a failed compensation escalates
and opens the breaker, like a failed undo. Verification works as for one step; its rollback
compensates every step in reverse. After a crash the workflow resumes from the journal.

VERIFYING watches ``verify.metric`` from ``delay_s`` after the apply for ``window_s``. With
``verify.wait_for`` (a rollout restart's ``rollout_complete``) the watch starts instead at that
metric's first sample of 1 after the apply (journaled as the step "took-effect", event
``action.took_effect``), looked for every ``WAIT_FOR_POLL_S``; ``delay_s`` is then the longest
wait, after which the watch starts as without it.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import math
from collections.abc import Callable, Mapping
from typing import Any

from pydantic import BaseModel

from autonomic.errors import ActuatorError, NotLeaderError, RetryableActuatorError, StoreError
from autonomic.execute import workflow
from autonomic.execute.verify import judge
from autonomic.knowledge import Store
from autonomic.model import (
    Action,
    ActionState,
    Decision,
    FindingKind,
    Incident,
    IncidentState,
    Level,
    Notification,
    Outcome,
    Pattern,
    Resolution,
    StepRecord,
    VerifySpec,
    VerifyVerdict,
)
from autonomic.protocols import Actuator, Clock, SeriesReader, Target

log = logging.getLogger("autonomic.execute")

_BASELINE_POINTS = 240
WAIT_FOR_POLL_S = 2.0  # how often a verification waiting for its ``wait_for`` metric looks at it
_RETRIES = 2
RETRY_PAUSE_MAX_S = 5.0  # the longest pause before retrying a failed actuator call


def idempotency_key(decision_id: str) -> str:
    """One key per approved decision: a decision becomes at most one action."""
    return "act-" + hashlib.sha256(decision_id.encode()).hexdigest()[:24]


class Executor:
    """Drives actions through their lifecycle. Owns journaling, the kill-switch check,
    retries and verification; actuators own only the I/O."""

    def __init__(
        self,
        *,
        store: Store,
        actuators: Mapping[str, Actuator],
        bindings: Mapping[str, Mapping[str, BaseModel]],
        series: SeriesReader,
        clock: Clock,
        notify: Callable[[Notification], None],
        paused: Callable[[str], str | None],
        on_result: Callable[[Action, bool], None],
        on_undo_failed: Callable[[Action], None] = lambda action: None,
        on_stale: Callable[[Action], None] = lambda action: None,
        on_paused: Callable[[Action], None] = lambda action: None,
        on_ended: Callable[[Action], None] = lambda action: None,
        decision_ttl_s: float | None = None,
        time_scale: float = 1.0,
        progress: Callable[[str], None] = lambda what: None,
        stopped: Callable[[str, str], str | None] = lambda service, action_type: None,
        stopped_service: Callable[[str], str | None] = lambda service: None,
    ) -> None:
        self.store = store
        self.actuators = actuators
        self.bindings = bindings
        self.series = series
        self.clock = clock
        self.notify = notify
        self.paused = paused
        self.on_result = on_result
        self.on_undo_failed = on_undo_failed
        self.on_stale = on_stale
        self.on_paused = on_paused  # cancelled by a pause before it ran: decided again once it is lifted
        self.on_ended = on_ended  # failed cleanly, or rolled back with health restored: try what's next
        self.decision_ttl_s = decision_ttl_s
        self.time_scale = time_scale
        # told before every actuator call, what it is (the engine's watchdog: see autonomic.liveness)
        self.progress = progress
        # why a person's stop of the service (``autonomic stop``, durable) holds back an action of
        # this actuator type on it, read from the store right before the kill switch (see _cancel_stopped)
        self.stopped = stopped
        # why (who, when) a person has ``service`` stopped on purpose, whatever the actuator type:
        # asked before a verdict on a fix or on its undo, which a service stopped on purpose cannot give
        self.stopped_service = stopped_service

    # --- helpers ---------------------------------------------------------------------------

    def _actuator(self, action_type: str) -> Actuator:
        return self.actuators[action_type]

    def _target(self, service: str, action_type: str) -> Target:
        return Target(service=service, binding=self.bindings.get(service, {}).get(action_type))

    def _stop_holding(self, action: Action) -> str | None:
        """Why a person's stop of the service holds back ``action`` (any of its actuator types, a
        workflow's steps too), or None: asked before an undo and before a verification's verdict."""
        for action_type in dict.fromkeys([action.type, *(s.type for s in action.workflow)]):
            held = self.stopped(action.service, action_type)
            if held is not None:
                return held
        return None

    def _not_judged(self, action: Action) -> str | None:
        """Why no verdict is drawn on ``action``'s service now, or None: a person stopped it on
        purpose (``autonomic stop``; who, when). Its metrics then say nothing of the fix, nor of
        its undo, whatever actuator ran them (a config change as much as a restart)."""
        return self._stop_holding(action) or self.stopped_service(action.service)

    def _params(self, action: Action) -> BaseModel:
        return self._actuator(action.type).Params.model_validate(action.params)

    def _window(self, spec: VerifySpec) -> tuple[float, float]:
        return spec.delay_s * self.time_scale, spec.window_s * self.time_scale

    def _save(self, action: Action, incident: Incident | None, event: str, *also: Outcome, **data: Any) -> Action:
        """Write ``action``, its ``incident`` and ``also`` (an outcome) with one audit event."""
        nouns: list[Any] = [action, *([incident] if incident is not None else []), *also]
        self.store.record(*nouns, actor="engine", event=event, subject=action.id,
                          data={"service": action.service, "type": action.type, "state": action.state, **data})
        return action

    def _incident(self, action: Action) -> Incident | None:
        return self.store.get(Incident, action.incident_id)

    def _set_incident(self, incident: Incident | None, now: float, state: IncidentState,
                      resolution: Resolution | None = None, close: bool = False) -> Incident | None:
        if incident is None:
            return None
        update: dict[str, Any] = {"state": state, "updated_at": now}
        if state == IncidentState.ESCALATED:
            update["escalated_at"] = incident.escalated_since(now)
        if resolution is not None:
            update["resolution"] = resolution
        if close:
            update["closed_at"] = now
        return incident.model_copy(update=update)

    # --- intent ----------------------------------------------------------------------------

    def prepare(self, incident: Incident, decision: Decision, pattern: Pattern | None, now: float) -> Action:
        """Write the intent: parameters, undo snapshot and the verification baseline.
        Nothing in the world changes here."""
        assert decision.action is not None
        spec = decision.action
        if spec.steps:
            return self._prepare_workflow(incident, decision, pattern, now)
        actuator = self._actuator(spec.type)
        params = actuator.Params.model_validate(spec.params)
        target = self._target(spec.target, spec.type)
        started = self.clock.now()
        snapshot, snap_error = self._call(f"{spec.type} snapshot before acting on incident {incident.id[:8]}",
                                          spec.target, lambda: actuator.snapshot(target, params))
        verify, baseline = self._baseline(spec.target, pattern, now)
        action = Action(
            decision_id=decision.id, incident_id=incident.id, service=spec.target, type=spec.type,
            params=params.model_dump(mode="json"), idempotency_key=idempotency_key(decision.id),
            undo=dict(snapshot), steps=[baseline], pattern_id=pattern.id if pattern else None,
            verify=verify, rollback_safe=pattern.rollback_safe if pattern else False,
            created_at=now, updated_at=now,
        )
        if snap_error is not None:
            # Nothing ran, and nothing can without the undo snapshot: FAILED at once, the incident to
            # a person and the next remedy tried, as a failed apply. Raised instead, the incident was
            # decided again at every tick, each time approved, each time failing here, nobody told.
            error = f"snapshot failed, nothing was done: {snap_error}"
            step = StepRecord(name="snapshot", ok=False, started_at=started, finished_at=self.clock.now(),
                              detail={"error": str(snap_error)[:2000]})
            self._failed(action, step, error, f"actuator failed: {error}", self.clock.now())
            return action
        inc = self._set_incident(incident, now, IncidentState.ACTING)
        self._save(action, inc, "action.intent", describe=actuator.describe(target, params),
                   key=action.idempotency_key, decision=decision.id)
        return action

    def _baseline(self, service: str, pattern: Pattern | None, now: float) -> tuple[VerifySpec, StepRecord]:
        verify = (pattern.verify if pattern is not None and pattern.verify is not None
                  else VerifySpec(metric="up", min=1.0, window_s=30))
        _, window = self._window(verify)
        ts, values = self.series.window(service, verify.metric, now - max(window, 10.0))
        baseline = StepRecord(
            name="baseline", ok=True, started_at=now, finished_at=now,
            detail={"metric": verify.metric, "ts": [float(t) for t in ts[-_BASELINE_POINTS:]],
                    "values": [float(v) for v in values[-_BASELINE_POINTS:]]},
        )
        return verify, baseline

    def _prepare_workflow(self, incident: Incident, decision: Decision, pattern: Pattern | None,
                          now: float) -> Action:
        """The intent of a multi-step action. Each step's undo snapshot is taken (and
        journaled) right before that step runs, since earlier steps change what it sees."""
        assert decision.action is not None
        spec = decision.action
        steps = [step.model_copy(update={"params": self._actuator(step.type).Params.model_validate(
            step.params).model_dump(mode="json")}) for step in spec.steps]
        verify, baseline = self._baseline(spec.target, pattern, now)
        action = Action(
            decision_id=decision.id, incident_id=incident.id, service=spec.target, type=steps[0].type,
            params=steps[0].params, workflow=steps, idempotency_key=idempotency_key(decision.id),
            steps=[baseline], pattern_id=pattern.id if pattern else None,
            verify=verify, rollback_safe=pattern.rollback_safe if pattern else False,
            created_at=now, updated_at=now,
        )
        describe = "; then ".join(
            self._actuator(s.type).describe(self._target(spec.target, s.type),
                                            self._actuator(s.type).Params.model_validate(s.params))
            for s in steps)
        inc = self._set_incident(incident, now, IncidentState.ACTING)
        self._save(action, inc, "action.intent", describe=describe, key=action.idempotency_key,
                   decision=decision.id, steps=[s.model_dump(mode="json") for s in steps])
        return action

    # --- reconcile -------------------------------------------------------------------------

    def reconcile(self, action_id: str) -> float | None:
        """Advance one action by one step; return when to look again (None: done)."""
        action = self.store.get(Action, action_id)
        if action is None or action.state.terminal:
            return None
        now = self.clock.now()
        match action.state:
            case ActionState.PENDING:
                return self._run(action, now)
            case ActionState.RUNNING:
                return self._recover_running(action, now)
            case ActionState.VERIFYING:
                return self._verify(action, now)
            case ActionState.ROLLING_BACK:
                return self._rollback(action, now, reason=action.error or "verification failed")
            case ActionState.VERIFYING_UNDO:
                return self._verify_undo(action, now)
        return None

    def _run(self, action: Action, now: float) -> float | None:
        if self.decision_ttl_s is not None and now - action.created_at > self.decision_ttl_s:
            self._stale(action, now)
            return None
        action = self._save(action.model_copy(update={"state": ActionState.RUNNING, "updated_at": now}),
                            None, "action.running", key=action.idempotency_key)
        if action.workflow:
            return self._run_workflow(action, undo=False)  # the kill switch is checked before each step
        # A person's stop, then the kill switch: the very last things checked before the actuator runs.
        try:
            held = self.stopped(action.service, action.type)
            reason = self.paused(action.service)
        except NotLeaderError as exc:
            # Refused before the actuator was called: nothing ran, so back to PENDING (recovery
            # from RUNNING would have to ask the actuator, and one that cannot tell would hand a
            # fix that never ran to a person). A fenced write: when another replica leads now it
            # is refused as well, and that replica recovers the action as after a crash.
            self._save(action.model_copy(update={"state": ActionState.PENDING, "updated_at": now}), None,
                       "action.deferred", reason=str(exc)[:500])
            raise
        except StoreError as exc:
            # The kill switch could not be read (the store stopped answering for a moment):
            # nothing ran, so back to PENDING when the store takes that write, else left RUNNING
            # for recovery. Raised on: the loop retries the action at a later tick.
            with contextlib.suppress(StoreError):
                self._save(action.model_copy(update={"state": ActionState.PENDING, "updated_at": now}), None,
                           "action.deferred", reason=str(exc)[:500])
            raise
        if reason is not None:
            self._cancel_paused(action, reason, now)
            return None
        if held is not None:
            self._cancel_stopped(action, held, now)
            return None
        return self._apply(action)

    def _cancel_paused(self, action: Action, reason: str, now: float) -> None:
        """Nothing ran and automation is paused: CANCELLED, the incident goes to a person."""
        cancelled = action.model_copy(update={"state": ActionState.CANCELLED, "updated_at": now,
                                              "error": f"paused: {reason}"})
        inc = self._set_incident(self._incident(action), now, IncidentState.ESCALATED, Resolution.ESCALATED)
        self._save(cancelled, inc, "action.cancelled", reason=reason)
        self.notify(Notification(level=Level.ALERT, ts=now, service=action.service,
                                 incident_id=action.incident_id,
                                 title=f"{action.type} action on {action.service} cancelled",
                                 body=f"automation is paused: {reason}"))
        self.on_paused(cancelled)

    def _cancel_stopped(self, action: Action, reason: str, now: float, step: StepRecord | None = None) -> None:
        """A person stopped the service on purpose (``autonomic stop``) while this action on it was
        in flight: their stop wins. CANCELLED before its actuator call would start the process again
        (or, applied already, before its verification judged a service the person stopped), with
        no outcome: it counts neither for nor against its pattern, and no escalation step follows.
        The incident goes to a person (the one who stopped the service has it), told at info, as
        its being down is: what they asked for. Crash-safe: the stop is read from the store, where it
        is recorded before the process is stopped, so an engine that restarts cancels it too."""
        applied = action.applied_at is not None
        cancelled = action.model_copy(update={"state": ActionState.CANCELLED, "updated_at": now,
                                              "steps": [*action.steps, *([step] if step else [])],
                                              "error": f"stopped: {reason}"})
        inc = self._set_incident(self._incident(action), now, IncidentState.ESCALATED, Resolution.ESCALATED)
        self._save(cancelled, inc, "action.cancelled", reason=reason, stopped_on_purpose=True, applied=applied)
        what = ("it had been applied and is not verified" if applied
                else "nothing of it ran, and the service is not started")
        log.info("%s action %s on %s cancelled: %s (%s)", _kind(action), action.id[:8], action.service, reason, what)
        self.notify(Notification(level=Level.INFO, ts=now, service=action.service, incident_id=action.incident_id,
                                 title=f"{_kind(action)} action on {action.service} cancelled: stopped on purpose",
                                 body=f"{reason}; {what}"))

    def _stale(self, action: Action, now: float) -> None:
        """A decision too old to act on (the engine was down between deciding and acting): the
        world may have changed, and pauses, windows and breakers may say otherwise now. Cancel
        before anything runs and send the incident back to be decided again through every gate."""
        age = now - action.created_at
        reason = f"decision is {age:.0f}s old (decision_ttl_s {self.decision_ttl_s:.0f}); deciding again"
        cancelled = action.model_copy(update={"state": ActionState.CANCELLED, "updated_at": now,
                                              "error": f"stale: {reason}"})
        inc = self._incident(action)
        open_inc = inc if inc is not None and inc.closed_at is None else None
        self._save(cancelled, self._set_incident(open_inc, now, IncidentState.DIAGNOSED), "action.cancelled",
                   reason=reason)
        log.warning("%s action %s on %s not run: %s", action.type, action.id[:8], action.service, reason)
        self.on_stale(cancelled)

    def _call(self, what: str, service: str, call: Callable[[], dict[str, Any]]) -> tuple[dict[str, Any],
                                                                                         ActuatorError | None]:
        """Call an actuator, retrying retryable errors with backoff; actuator errors come back
        in the result, never raised. The pause check before a retry reads the store and may raise
        StoreError after an attempt ran: the loop retries the step later, and recovery asks the
        actuator whether that attempt took effect (``applied``), so nothing is applied twice."""
        error: ActuatorError | None = None
        detail: dict[str, Any] = {}
        for attempt in range(_RETRIES + 1):
            reason = self.paused(service) if attempt else None  # the first attempt's check is the caller's
            if reason is not None:
                error = ActuatorError(f"{error}; not retried, automation is paused: {reason}")
                break
            self.progress(f"{what} on {service}, attempt {attempt + 1} (an actuator call)")
            try:
                detail = call()
                error = None
                break
            except RetryableActuatorError as exc:
                error = exc
                log.warning("%s on %s: attempt %d failed: %s", what, service, attempt + 1, exc)
                if attempt < _RETRIES:
                    self.clock.sleep(min(2.0 ** attempt, RETRY_PAUSE_MAX_S))
            except ActuatorError as exc:
                error = exc
                break
            except Exception as exc:  # an actuator bug must not take the engine down
                error = ActuatorError(_said(exc))
                break
        return detail, error

    def _apply(self, action: Action) -> float | None:
        actuator = self._actuator(action.type)
        target = self._target(action.service, action.type)
        params = self._params(action)
        started = self.clock.now()
        detail, error = self._call(f"{action.type} apply of action {action.id[:8]}", action.service,
                                   lambda: actuator.apply(target, params, action.idempotency_key, action.undo))
        now = self.clock.now()
        if error is not None:
            step = StepRecord(name="apply", ok=False, started_at=started, finished_at=now,
                              detail={"error": str(error)[:2000]})
            return self._failed(action, step, str(error), f"actuator failed: {error}", now)
        step = StepRecord(name="apply", ok=True, started_at=started, finished_at=now, detail=_jsonable(detail))
        return self._start_verifying(action, step, now)

    def _failed(self, action: Action, step: StepRecord, error: str, reason: str, now: float) -> float | None:
        """The remedy could not be applied: FAILED, the incident goes to a person."""
        failed = action.model_copy(update={"state": ActionState.FAILED, "updated_at": now,
                                           "steps": [*action.steps, step], "error": error[:2000]})
        inc = self._set_incident(self._incident(action), now, IncidentState.ESCALATED, Resolution.FAILED)
        outcome = Outcome(action_id=action.id, incident_id=action.incident_id, ts=now,
                          verdict=VerifyVerdict.FAIL, reason=reason[:2000])
        self.store.record(failed, *( [inc] if inc else []), outcome, actor="engine", event="action.failed",
                          subject=action.id, data={"service": action.service, "error": error[:500]})
        self.on_result(failed, False)
        self.on_ended(failed)
        self.notify(Notification(level=Level.ALERT, ts=now, service=action.service,
                                 incident_id=action.incident_id,
                                 title=f"{_kind(action)} action on {action.service} failed",
                                 body=error[:500]))
        return None

    def _start_verifying(self, action: Action, step: StepRecord, now: float) -> float:
        assert action.verify is not None
        delay, window = self._window(action.verify)
        until = now + delay + window
        verifying = action.model_copy(update={"state": ActionState.VERIFYING, "updated_at": now,
                                              "applied_at": now, "verify_until": until,
                                              "steps": [*action.steps, step]})
        inc = self._set_incident(self._incident(action), now, IncidentState.VERIFYING)
        self._save(verifying, inc, "action.applied", verify_until=until, detail=step.detail)
        return min(until, now + WAIT_FOR_POLL_S) if action.verify.wait_for else until

    def _took_effect_at(self, action: Action, now: float) -> tuple[Action, float | None]:
        """For a verification with ``wait_for``: when the action took effect (the first sample of that
        metric at 1 after it was applied, recorded as the step ``took-effect`` and the watch window
        moved to start there), None while it has not (the window stays ``delay_s`` after the action,
        which is then the longest wait)."""
        assert action.verify is not None and action.applied_at is not None
        done = next((s for s in action.steps if s.name == "took-effect"), None)
        if done is not None:
            return action, float(done.detail["ts"])
        wait_for = action.verify.wait_for
        assert wait_for is not None
        delay, window = self._window(action.verify)
        ts, values = self.series.window(action.service, wait_for, action.applied_at)
        ready = ts[(ts > action.applied_at) & (ts <= action.applied_at + delay) & (values >= 1.0)]
        if not ready.size:
            return action, None
        at = float(ready.min())
        until = min(action.verify_until or math.inf, at + window)
        step = StepRecord(name="took-effect", ok=True, started_at=action.applied_at, finished_at=at,
                          detail={"metric": wait_for, "ts": at, "after_s": at - action.applied_at})
        action = action.model_copy(update={"verify_until": until, "updated_at": now, "steps": [*action.steps, step]})
        self._save(action, None, "action.took_effect", metric=wait_for, after_s=step.detail["after_s"],
                   verify_until=until)
        return action, at

    def _recover_running(self, action: Action, now: float) -> float | None:
        """The engine stopped between 'running' and the result: ask whether it took effect."""
        if action.workflow:
            return self._run_workflow(action, undo=False)  # resumes from the journal
        actuator = self._actuator(action.type)
        self.progress(f"{action.type} on {action.service}: asking whether action {action.id[:8]} took effect "
                      "(an actuator call)")
        try:
            took = actuator.applied(self._target(action.service, action.type), self._params(action),
                                    action.idempotency_key, action.undo)
        except Exception as exc:  # an actuator's bug too: asked again at every tick, it would never end
            took = None
            log.warning("cannot tell whether %s took effect: %s", action.id, _said(exc))
        stop = self.stopped(action.service, action.type) if took is False else None
        if stop is not None:
            self._cancel_stopped(action, stop, now)  # nothing ran, and a person wants it stopped
            return None
        reason = self.paused(action.service) if took is not None else None
        if reason is not None and took is False:
            self._cancel_paused(action, reason, now)  # nothing ran, and nothing will while paused
            return None
        if reason is not None:
            # it took effect but may be unfinished; finishing it would be an actuator call
            held = action.model_copy(update={"state": ActionState.ESCALATED, "updated_at": now,
                                             "error": f"took effect before the engine stopped; not finished "
                                                      f"(no verification, no undo) because automation is "
                                                      f"paused: {reason}"})
            inc = self._set_incident(self._incident(action), now, IncidentState.ESCALATED, Resolution.ESCALATED)
            self._save(held, inc, "action.escalated", reason=f"paused: {reason}")
            self.notify(Notification(level=Level.ALERT, ts=now, service=action.service,
                                     incident_id=action.incident_id,
                                     title=f"{action.type} action on {action.service} needs a person",
                                     body=f"it took effect before the engine stopped and was not finished "
                                          f"or verified: automation is paused: {reason}"))
            return None
        if took is True:
            # Its main effect happened. apply() is idempotent per key: calling it again repeats
            # nothing that was done and finishes what may not have been (a config reload).
            log.info("action %s had taken effect; finishing it idempotently", action.id[:8])
            recovered = action.model_copy(update={"steps": [*action.steps, StepRecord(
                name="recovered", ok=True, started_at=action.updated_at, finished_at=now,
                detail={"recovered": "the apply had taken effect before the engine stopped"})]})
            return self._apply(recovered)
        if took is False:
            log.info("action %s had not taken effect; applying it now (first time)", action.id[:8])
            return self._apply(action)
        escalated = action.model_copy(update={"state": ActionState.ESCALATED, "updated_at": now,
                                              "error": "engine stopped mid-action; cannot tell if it ran"})
        inc = self._set_incident(self._incident(action), now, IncidentState.ESCALATED, Resolution.ESCALATED)
        self._save(escalated, inc, "action.escalated", reason="unknown whether it ran")
        self.notify(Notification(level=Level.ALERT, ts=now, service=action.service,
                                 incident_id=action.incident_id,
                                 title=f"{action.type} action on {action.service} needs a person",
                                 body="the engine stopped mid-action and cannot tell whether it ran; "
                                      "it will not run it again"))
        return None

    # --- multi-step actions ------------------------------------------------------------------

    def _run_workflow(self, action: Action, *, undo: bool) -> float | None:
        """Drive a workflow (forward, or ``undo`` every completed step) from its journal,
        then settle the action's state from the result."""
        action, result = self._drive(action, undo=undo)
        now = self.clock.now()
        n = len(action.workflow)
        journal = workflow.journal_from_records(action.steps, n)
        first = next((s for s in action.steps if s.detail.get("workflow")), None)
        started = first.started_at if first is not None else now
        if undo:
            step = StepRecord(name="undo", ok=result.status == "compensated", started_at=started, finished_at=now,
                              detail={"workflow": "summary", "result": result.status, "reason": result.reason,
                                      "compensated": [i + 1 for i in result.compensated],
                                      "no_undo": [i + 1 for i in result.no_undo]})
            if result.status == "compensated":
                return self._undone(action, step, action.error or "verification failed", now)
            pause = _compensation_held(journal, result)
            if pause is not None:
                return self._undo_held(action, action.error or "verification failed", pause, now, step)
            stop = _compensation_held(journal, result, "stopped: ")
            if stop is not None:
                return self._undo_held(action, action.error or "verification failed", stop, now, step, stopped=True)
            return self._undo_failed(action, step, result.reason, now)
        if result.status == "done":
            step = StepRecord(name="apply", ok=True, started_at=started, finished_at=now,
                              detail={"workflow": "summary", "steps": n})
            return self._start_verifying(action, step, now)
        step = StepRecord(name="apply", ok=False, started_at=started, finished_at=now,
                          detail={"workflow": "summary", "result": result.status, "reason": result.reason,
                                  "compensated": [i + 1 for i in result.compensated],
                                  "no_undo": [i + 1 for i in result.no_undo]})
        failed_at = result.failed_index
        paused = failed_at is not None and journal[failed_at].error.startswith("paused:")
        if result.status == "compensated" and failed_at is not None and journal[failed_at].error.startswith(
                "stopped:"):
            # a person's stop held a step back: what ran before it is compensated, the action cancelled
            self._cancel_stopped(action, journal[failed_at].error.removeprefix("stopped: "), now, step)
            return None
        if result.status == "compensated" and paused and failed_at == 0:
            # nothing ran: cancelled, exactly as a single-step action stopped by the kill switch
            cancelled = action.model_copy(update={"state": ActionState.CANCELLED, "updated_at": now,
                                                  "steps": [*action.steps, step], "error": journal[0].error})
            inc = self._set_incident(self._incident(action), now, IncidentState.ESCALATED, Resolution.ESCALATED)
            self._save(cancelled, inc, "action.cancelled", reason=journal[0].error)
            self.notify(Notification(level=Level.ALERT, ts=now, service=action.service,
                                     incident_id=action.incident_id,
                                     title=f"{_kind(action)} action on {action.service} cancelled",
                                     body=f"automation is {journal[0].error}"))
            return None
        if result.status == "compensated" and not paused:
            return self._failed(action, step, result.reason, result.reason, now)
        # paused mid-way (what ran is left in place), a failed compensation, or a step nobody
        # can tell ran: a person decides
        held = _compensation_held(journal, result)  # a compensation a pause stopped did not fail
        stop = _compensation_held(journal, result, "stopped: ")  # nor one a person's stop held back
        compensation_failed = (held is None and stop is None and failed_at is not None
                               and journal[failed_at].compensate == workflow.Status.FAILED)
        reason = result.reason
        if held is not None:
            reason = (f"{reason.rpartition('; compensating ')[0] or reason}; left in place, not compensated "
                      f"while automation is paused: {_left_in_place(action, journal)}")
        elif stop is not None:
            reason = (f"{reason.rpartition('; compensating ')[0] or reason}; left in place, not compensated "
                      f"(it would start what a person stopped: {stop}): {_left_in_place(action, journal)}")
        escalated = action.model_copy(update={"state": ActionState.ESCALATED, "updated_at": now,
                                              "steps": [*action.steps, step], "error": reason[:2000]})
        inc = self._set_incident(self._incident(action), now, IncidentState.ESCALATED,
                                 Resolution.FAILED if compensation_failed else Resolution.ESCALATED)
        # a step failed and what ran could not be undone: a failure, on the record
        failure = [_failed_outcome(action, now, reason[:2000])] if compensation_failed else []
        self._save(escalated, inc, "action.escalated", *failure, reason=reason[:500])
        if compensation_failed:
            self.on_result(escalated, False)
            self.on_undo_failed(escalated)  # as a failed undo: the breaker opens
        self.notify(Notification(level=Level.INFO if stop is not None else Level.ALERT, ts=now,
                                 service=action.service, incident_id=action.incident_id,
                                 title=(f"COMPENSATION FAILED for {_kind(action)} on {action.service}"
                                        if compensation_failed
                                        else f"{_kind(action)} action on {action.service} needs a person"),
                                 body=f"{reason[:500]}; a person must look"))
        return None

    def _drive(self, action: Action, *, undo: bool) -> tuple[Action, workflow.WorkflowResult]:
        gen = workflow.run(action.workflow, workflow.journal_from_records(action.steps, len(action.workflow)),
                           undo=undo)
        try:
            command = next(gen)
            while True:
                action, reply = self._carry_out(action, command)
                command = gen.send(reply)
        except StopIteration as stop:
            return action, stop.value

    def _journal(self, action: Action, record: StepRecord, event: str) -> Action:
        """Append one record to the journal and store it before anything else happens."""
        action = action.model_copy(update={"steps": [*action.steps, record], "updated_at": record.finished_at})
        return self._save(action, None, event, step=record.name, ok=record.ok,
                          phase=record.detail.get("phase"), error=record.detail.get("error"))

    def _carry_out(self, action: Action, command: workflow.Command) -> tuple[Action, workflow.Reply]:
        """One workflow command: journal its intent, call the actuator, journal the result."""
        steps, i = action.workflow, command.index
        spec = steps[i]
        actuator = self._actuator(spec.type)
        target = self._target(action.service, spec.type)
        params = actuator.Params.model_validate(spec.params)
        key = f"{action.idempotency_key}:{i}"
        snapshot = workflow.snapshot_of(action.steps, i)
        started = self.clock.now()
        if isinstance(command, workflow.Check):
            self.progress(f"{spec.type} on {action.service}: asking whether step {i + 1} of action {action.id[:8]} "
                          "took effect (an actuator call)")
            try:
                took, err = actuator.applied(target, params, key, snapshot or {}), ""
            except Exception as exc:  # an actuator's bug too: nobody can tell
                took, err = None, _said(exc)[:2000]
            record = StepRecord(name=workflow.record_name("check", i, steps), ok=took is not None,
                                started_at=started, finished_at=self.clock.now(),
                                detail=workflow.record_detail("check", i, "result", key=key, applied=took,
                                                              error=err))
            return self._journal(action, record, "action.step_checked"), workflow.Reply(took, err)
        kind: workflow.Kind = "do" if isinstance(command, workflow.Do) else "compensate"
        name = workflow.record_name(kind, i, steps)
        extra: dict[str, Any] = {"key": key}
        snap_error: ActuatorError | None = None
        if kind == "do" and snapshot is None:
            self.progress(f"{spec.type} on {action.service}: the snapshot before step {i + 1} of action "
                          f"{action.id[:8]} (an actuator call)")
            try:
                snapshot = _jsonable(actuator.snapshot(target, params))  # right before the step
            except ActuatorError as exc:
                snap_error = exc
            except Exception as exc:  # an actuator's bug: the step fails, as in _call
                snap_error = ActuatorError(_said(exc))
            extra["snapshot"] = snapshot or {}
        snap: dict[str, Any] = snapshot or {}
        action = self._journal(action, StepRecord(name=name, ok=True, started_at=started, finished_at=started,
                                                  detail=workflow.record_detail(kind, i, "intent", **extra)),
                               f"action.{kind}_started")
        try:
            held = self.stopped(action.service, spec.type)  # a compensation may start it again too
            reason = self.paused(action.service)  # the very last check before a step or a compensation
        except StoreError as exc:
            # The kill switch could not be read: nothing ran. The intent is withdrawn, so the retry
            # at a later tick checks the kill switch again rather than asking the actuator whether
            # a step that never ran took effect (one that cannot tell would hand it to a person).
            # When nothing of the action has run, it is back to PENDING, as a single-step action
            # is: a retry after decision_ttl_s cancels it as stale instead of running an old
            # decision. When the store refuses this write too, the intent stands and recovery asks.
            withdrawn = StepRecord(name=name, ok=True, started_at=started, finished_at=self.clock.now(),
                                   detail=workflow.record_detail(kind, i, "withdrawn", key=key, reason=str(exc)[:500]))
            journal = workflow.journal_from_records([*action.steps, withdrawn], len(action.workflow))
            if all(s.do == s.compensate == workflow.Status.NOT_STARTED for s in journal):
                action = action.model_copy(update={"state": ActionState.PENDING})
            with contextlib.suppress(StoreError):
                self._journal(action, withdrawn, f"action.{kind}_withdrawn")
            raise
        error: str | None = None
        detail: dict[str, Any] = {}
        if snap_error is not None:
            error = f"snapshot failed: {snap_error}"
        elif reason is not None:
            error = f"paused: {reason}"
        elif held is not None:
            error = f"stopped: {held}"
        else:
            call = ((lambda: actuator.apply(target, params, key, snap)) if kind == "do"
                    else (lambda: actuator.undo(target, params, key, snap)))
            detail, failure = self._call(f"{name} of action {action.id[:8]}", action.service, call)
            error = None if failure is None else str(failure)
        result = StepRecord(name=name, ok=error is None, started_at=started, finished_at=self.clock.now(),
                            detail=workflow.record_detail(kind, i, "result", key=key, **(
                                {"error": error[:2000]} if error is not None else {"result": _jsonable(detail)})))
        action = self._journal(action, result, f"action.{kind}_{'ok' if error is None else 'failed'}")
        return action, workflow.Reply(error is None, (error or "")[:2000],
                                      no_undo=kind == "compensate" and workflow.undid_nothing(detail))

    # --- verification ----------------------------------------------------------------------

    def _verify(self, action: Action, now: float) -> float | None:
        assert action.verify is not None and action.applied_at is not None and action.verify_until is not None
        spec = action.verify
        delay, window = self._window(spec)
        watch_from = action.applied_at + delay
        if spec.wait_for:
            action, took_effect = self._took_effect_at(action, now)
            assert action.verify_until is not None
            if took_effect is not None:
                watch_from = took_effect
            elif now < action.verify_until - window:
                return min(action.verify_until - window, now + WAIT_FOR_POLL_S)
        assert action.verify_until is not None
        if now < action.verify_until:
            return action.verify_until
        held = self._not_judged(action)
        if held is not None:  # not judged: a service a person stopped says nothing of the fix
            self._cancel_stopped(action, held, now)
            return None
        baseline = next((s for s in action.steps if s.name == "baseline"), None)
        import numpy as np

        before = (np.asarray(baseline.detail["ts"] if baseline else [], dtype=float),
                  np.asarray(baseline.detail["values"] if baseline else [], dtype=float))
        ts, values = self.series.window(action.service, spec.metric, watch_from)
        mask = ts <= action.verify_until + 1e-9
        after = (ts[mask], values[mask])
        # the metric must still report in the second half of the window: one that went silent
        # part-way (the service died) is no evidence the fix held
        recent_since = action.verify_until - window / 2
        incident = self._incident(action)
        findings = self.store.findings(incident.id) if incident is not None else []
        # a fix made on a forecast of the metric it verifies must also have moved that metric off
        # its course to the line (a pattern verifying another metric is judged on its bounds)
        preventive = incident is not None and incident.kind == FindingKind.FORECAST and any(
            f.kind == FindingKind.FORECAST and f.metric == spec.metric for f in findings)
        judgement = judge(before, after, spec, recent_since=recent_since, preventive=preventive)
        extended = any(s.name == "verify-extended" for s in action.steps)
        silent = not bool((after[0][np.isfinite(after[1])] >= recent_since).any())
        if (judgement.verdict == VerifyVerdict.INCONCLUSIVE and (len(after[0]) < spec.min_samples or silent)
                and not extended):
            # Too little data, or none lately (say, the engine was down for part of the window):
            # watch once more.
            step = StepRecord(name="verify-extended", ok=True, started_at=now, finished_at=now,
                              detail={"reason": judgement.reason})
            longer = action.model_copy(update={"verify_until": now + window, "updated_at": now,
                                               "steps": [*action.steps, step]})
            self._save(longer, None, "action.verify_extended", reason=judgement.reason)
            return now + window
        step = StepRecord(name="verify", ok=judgement.verdict == VerifyVerdict.PASS, started_at=action.applied_at,
                          finished_at=now, detail={"verdict": judgement.verdict, "reason": judgement.reason,
                                                   "before": judgement.before, "after": judgement.after})
        action = action.model_copy(update={"steps": [*action.steps, step], "updated_at": now})
        outcome = Outcome(action_id=action.id, incident_id=action.incident_id, ts=now,
                          verdict=judgement.verdict, reason=judgement.reason,
                          before=judgement.before, after=judgement.after,
                          duration_s=now - action.created_at)
        if judgement.verdict == VerifyVerdict.PASS:
            done = action.model_copy(update={"state": ActionState.SUCCEEDED})
            # "prevented" only when it was forecast and the trouble never came: no threshold
            # crossed, no firing alert, the service never found down
            prevented = incident is not None and incident.kind == FindingKind.FORECAST and not any(
                f.kind in _CAME for f in findings)
            resolution = Resolution.PREVENTED if prevented else Resolution.RESOLVED
            inc = self._set_incident(incident, now, IncidentState.RESOLVED, resolution, close=True)
            self.store.record(done, *([inc] if inc else []), outcome, actor="engine", event="action.verified",
                              subject=action.id, data={"verdict": "pass", "reason": judgement.reason,
                                                       "resolution": resolution})
            self.on_result(done, True)
            self.notify(Notification(level=Level.INFO, ts=now, service=action.service,
                                     incident_id=action.incident_id,
                                     title=f"{resolution.value}: {action.type} on {action.service} verified",
                                     body=judgement.reason))
            return None
        if judgement.verdict == VerifyVerdict.FAIL and action.rollback_safe:
            rolling = action.model_copy(update={"state": ActionState.ROLLING_BACK, "error": judgement.reason})
            self.store.record(rolling, actor="engine", event="action.verify_failed", subject=action.id,
                              data={"verdict": "fail", "reason": judgement.reason})
            return self._rollback(rolling, now, reason=judgement.reason)
        # fail with no safe undo, or inconclusive: a person decides
        state = ActionState.FAILED if judgement.verdict == VerifyVerdict.FAIL else ActionState.ESCALATED
        resolution = Resolution.FAILED if judgement.verdict == VerifyVerdict.FAIL else Resolution.ESCALATED
        ended = action.model_copy(update={"state": state, "error": judgement.reason})
        inc = self._set_incident(incident, now, IncidentState.ESCALATED, resolution)
        self.store.record(ended, *([inc] if inc else []), outcome, actor="engine",
                          event=f"action.verify_{judgement.verdict.value}", subject=action.id,
                          data={"verdict": judgement.verdict, "reason": judgement.reason})
        if judgement.verdict == VerifyVerdict.FAIL:
            self.on_result(ended, False)
            self.on_ended(ended)
        self.notify(Notification(level=Level.ALERT, ts=now, service=action.service, incident_id=action.incident_id,
                                 title=f"{action.type} on {action.service}: verification {judgement.verdict.value}",
                                 body=f"{judgement.reason}; a person must look"))
        return None

    def _verify_undo(self, action: Action, now: float) -> float | None:
        assert action.verify is not None and action.verify_until is not None
        if now < action.verify_until:
            return action.verify_until
        held = self._not_judged(action)
        if held is not None:
            self._undo_not_judged(action, held, now)
            return None
        import numpy as np

        spec = action.verify
        undo_step = next((s for s in reversed(action.steps) if s.name == "undo"), None)
        undone_at = undo_step.finished_at if undo_step else action.updated_at
        delay, _ = self._window(spec)
        ts, values = self.series.window(action.service, spec.metric, undone_at + delay)
        after = _undo_window(ts, values, undone_at + delay, action.verify_until)
        baseline = next((s for s in action.steps if s.name == "baseline"), None)
        before = (np.asarray(baseline.detail["ts"] if baseline else [], dtype=float),
                  np.asarray(baseline.detail["values"] if baseline else [], dtype=float))
        judgement = judge(before, after, spec.model_copy(update={"min_samples": max(1, spec.min_samples // 2)}))
        restored = judgement.verdict == VerifyVerdict.PASS
        step = StepRecord(name="verify-undo", ok=restored, started_at=undone_at, finished_at=now,
                          detail={"verdict": judgement.verdict, "reason": judgement.reason, "after": judgement.after})
        done = action.model_copy(update={"state": ActionState.ROLLED_BACK, "updated_at": now,
                                         "steps": [*action.steps, step]})
        reason = action.error or "verification failed"
        inc = self._set_incident(self._incident(action), now, IncidentState.ROLLED_BACK, Resolution.ROLLED_BACK)
        outcome = _failed_outcome(action, now, reason, rolled_back=True, undo_verdict=judgement.verdict)
        self.store.record(done, *([inc] if inc else []), outcome, actor="engine", event="action.rolled_back",
                          subject=action.id, data={"reason": reason, "undo_restored_health": restored,
                                                   "undo_check": judgement.reason})
        if restored:
            self.on_ended(done)
        health = ("the undo restored health" if restored
                  else f"the undo did NOT restore health ({judgement.reason})")
        self.notify(Notification(level=Level.ALERT, ts=now, service=action.service, incident_id=action.incident_id,
                                 title=f"rolled back {action.type} on {action.service}",
                                 body=f"the fix made things worse ({reason}); it was undone and {health}. "
                                      "A person must look."))
        return None

    def _undo_not_judged(self, action: Action, stopped: str, now: float) -> None:
        """The undo ran, but a person stopped the service on purpose before the watch after it
        ended: whether the undo restored health is not judged (the service is down because they
        asked, not because of the undo), so nothing alerts "the undo did NOT restore health". Rolled
        back as any undone fix (the failed verdict that led to the undo stays on the pattern's
        record), its check recorded as not judged, audited ``action.rolled_back`` with
        ``stopped_on_purpose`` and ``stopped`` (who, when), told at info; the next remedy is not
        tried (a person has the service)."""
        undo_step = next((s for s in reversed(action.steps) if s.name == "undo"), None)
        why = f"not judged: {stopped}"
        step = StepRecord(name="verify-undo", ok=False, started_at=undo_step.finished_at if undo_step else now,
                          finished_at=now, detail={"verdict": None, "reason": why[:2000], "stopped_on_purpose": True})
        done = action.model_copy(update={"state": ActionState.ROLLED_BACK, "updated_at": now,
                                         "steps": [*action.steps, step]})
        reason = action.error or "verification failed"
        inc = self._set_incident(self._incident(action), now, IncidentState.ROLLED_BACK, Resolution.ROLLED_BACK)
        outcome = _failed_outcome(action, now, reason, rolled_back=True)
        self.store.record(done, *([inc] if inc else []), outcome, actor="engine", event="action.rolled_back",
                          subject=action.id, data={"reason": reason, "undo_restored_health": None,
                                                   "undo_check": why[:500], "stopped": stopped[:500],
                                                   "stopped_on_purpose": True})
        log.info("%s action %s on %s rolled back; the undo is not judged: %s", _kind(action), action.id[:8],
                 action.service, stopped)
        self.notify(Notification(level=Level.INFO, ts=now, service=action.service, incident_id=action.incident_id,
                                 title=f"rolled back {action.type} on {action.service}; "
                                       "the undo not judged (stopped on purpose)",
                                 body=f"the fix made things worse ({reason}); it was undone, and whether the undo "
                                      f"restored health is not judged: {stopped}"))

    def _rollback(self, action: Action, now: float, reason: str) -> float | None:
        stop = self._stop_holding(action)  # an undo that would start what a person stopped: not run
        pause = self.paused(action.service)  # an undo is an actuator call: a pause holds it too (read last)
        if pause is not None:
            return self._undo_held(action, reason, pause, now)
        if stop is not None:
            return self._undo_held(action, reason, stop, now, stopped=True)
        if action.workflow:
            return self._run_workflow(action, undo=True)
        actuator = self._actuator(action.type)
        target, params = self._target(action.service, action.type), self._params(action)
        started = self.clock.now()
        # retried as an apply is (a compensation too); an actuator's bug is a failed undo, escalated,
        # not an error the loop would meet again at every tick with the action left rolling back
        detail, err = self._call(f"{action.type} undo of action {action.id[:8]}", action.service,
                                 lambda: actuator.undo(target, params, action.idempotency_key, action.undo))
        now = self.clock.now()
        if err is None:
            step = StepRecord(name="undo", ok=True, started_at=started, finished_at=now, detail=_jsonable(detail))
            return self._undone(action, step, reason, now)
        step = StepRecord(name="undo", ok=False, started_at=started, finished_at=now,
                          detail={"error": str(err)[:2000]})
        return self._undo_failed(action, step, str(err), now)

    def _undone(self, action: Action, step: StepRecord, reason: str, now: float) -> float:
        """Undone: now watch once more, to know whether the undo restored health."""
        assert action.verify is not None
        delay, window = self._window(action.verify)
        until = now + delay + window
        watching = action.model_copy(update={"state": ActionState.VERIFYING_UNDO, "updated_at": now,
                                             "steps": [*action.steps, step], "verify_until": until})
        self.store.record(watching, actor="engine", event="action.undone", subject=action.id,
                          data={"reason": reason, "undo": step.detail, "verify_until": until})
        self.on_result(watching, False)
        return until

    def _undo_held(self, action: Action, reason: str, pause: str, now: float,
                   step: StepRecord | None = None, *, stopped: bool = False) -> float | None:
        """Verification failed but automation is paused: nothing is undone (a pause stops every
        actuator call). The change stays in place and a person decides; no breaker opens, since
        no undo failed, and lifting the pause does not run the undo later.

        ``stopped``: not a pause but a person's stop of the service (``pause`` is then its reason,
        who and when): an undo through an actuator that acts on its running state would start
        what they stopped (:meth:`_stop_holding`, or a workflow's compensation held back). Ended
        the same way, told at info (the service is down as the person asked), and a start by a
        person does not run the undo later either."""
        left = "the change is left in place"
        if action.workflow:
            journal = workflow.journal_from_records(action.steps, len(action.workflow))
            left = f"left in place: {_left_in_place(action, journal)}"
        error = (f"{reason}; not undone, it would start what a person stopped ({pause}): {left}" if stopped
                 else f"{reason}; not undone, automation is paused ({pause}): {left}")
        held = action.model_copy(update={"state": ActionState.ESCALATED, "updated_at": now, "error": error[:2000],
                                         "steps": [*action.steps, *([step] if step is not None else [])]})
        outcome = _failed_outcome(action, now, reason[:2000])
        inc = self._set_incident(self._incident(action), now, IncidentState.ESCALATED, Resolution.FAILED)
        self.store.record(held, *([inc] if inc else []), outcome, actor="engine", event="action.undo_held",
                          subject=action.id, data={"reason": reason[:500],
                                                   **({"stopped": pause, "stopped_on_purpose": True} if stopped
                                                      else {"paused": pause})})
        self.on_result(held, False)
        self.notify(Notification(level=Level.INFO if stopped else Level.ALERT, ts=now, service=action.service,
                                 incident_id=action.incident_id,
                                 title=f"{_kind(action)} on {action.service} made things worse; not undone "
                                       f"({'stopped on purpose' if stopped else 'paused'})",
                                 body=f"{error[:500]}. A person must decide whether to undo it."))
        return None

    def _undo_failed(self, action: Action, step: StepRecord, err: str, now: float) -> float | None:
        """A failed undo pages a person and opens the breaker: no more automation of this kind.
        The fix made things worse and stays in place: its outcome is a failure (not rolled back),
        so the pattern's record and earned autonomy count it."""
        failed = action.model_copy(update={"state": ActionState.ESCALATED, "updated_at": now,
                                           "steps": [*action.steps, step], "error": f"undo failed: {err}"})
        inc = self._set_incident(self._incident(action), now, IncidentState.ESCALATED, Resolution.FAILED)
        outcome = _failed_outcome(action, now, f"{action.error or 'verification failed'}; undo failed: {err}"[:2000])
        self.store.record(failed, *([inc] if inc else []), outcome, actor="engine", event="action.undo_failed",
                          subject=action.id, data={"error": err[:500]})
        self.on_result(failed, False)
        self.on_undo_failed(failed)
        self.notify(Notification(level=Level.ALERT, ts=now, service=action.service, incident_id=action.incident_id,
                                 title=f"UNDO FAILED for {_kind(action)} on {action.service}",
                                 body=f"{err}; a person must act now"))
        return None


def _failed_outcome(action: Action, now: float, reason: str, **extra: Any) -> Outcome:
    """The outcome of a fix whose verification failed, with the before and after its last verify
    step measured (``extra``: whether and how it was rolled back)."""
    verified = next((s for s in reversed(action.steps) if s.name == "verify"), None)
    return Outcome(action_id=action.id, incident_id=action.incident_id, ts=now, verdict=VerifyVerdict.FAIL,
                   reason=reason, before=verified.detail.get("before", {}) if verified else {},
                   after=verified.detail.get("after", {}) if verified else {},
                   duration_s=now - action.created_at, **extra)


def _compensation_held(journal: list[workflow.StepState], result: workflow.WorkflowResult,
                   prefix: str = "paused: ") -> str | None:
    """What held a workflow's compensation back: with ``prefix`` "paused: " (the default) the
    pause that stopped it, with "stopped: " the person's stop of the service (see
    :meth:`Executor._carry_out`); the reason after the prefix, or None when nothing held one."""
    i = result.failed_index
    if result.status != "needs_person" or i is None:
        return None
    st = journal[i]
    if st.compensate != workflow.Status.FAILED or not st.error.startswith(prefix):
        return None
    return st.error.removeprefix(prefix)


def _left_in_place(action: Action, journal: list[workflow.StepState]) -> str:
    """The workflow steps that ran and were not compensated: "step 1/3 config:scale, ..."."""
    kept = [workflow.record_name("do", i, action.workflow) for i, st in enumerate(journal)
            if st.do == workflow.Status.OK and st.compensate != workflow.Status.OK]
    return ", ".join(kept) or "none"


def _undo_window(ts: Any, values: Any, start: float, until: float) -> tuple[Any, Any]:
    """The second half of the watch window after an undo: health must be back by then
    (windowed metrics such as an error rate lag the undo by up to their own window)."""
    mid = start + (until - start) / 2
    mask = (ts >= mid) & (ts <= until + 1e-9)
    return ts[mask], values[mask]


_CAME = frozenset({FindingKind.THRESHOLD, FindingKind.ALERT, FindingKind.STATE})
"""Finding kinds that say the trouble is here, not coming: a forecast incident with one of
them was not prevented, only resolved."""


def _kind(action: Action) -> str:
    """The action's type, or for a workflow its steps' types: "2-step workflow (config+process)"."""
    if not action.workflow:
        return action.type
    return f"{len(action.workflow)}-step workflow ({'+'.join(s.type for s in action.workflow)})"


def _said(exc: Exception) -> str:
    """An actuator's error as said in the journal: its message, or for any other exception (an
    actuator's bug) its type too (:meth:`Executor._call`, the recovery checks, a step's snapshot)."""
    return str(exc) if isinstance(exc, ActuatorError) else f"{type(exc).__name__}: {exc}"


def _jsonable(detail: Mapping[str, Any]) -> dict[str, Any]:
    import json

    return json.loads(json.dumps(dict(detail), default=str))
