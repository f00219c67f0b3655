"""The engine's loop over fakes: a replayed series, a fake actuator, a fake clock, an in-memory
store. Each test drives ticks by hand and reads the outcome from the store."""

from __future__ import annotations

import contextlib
import json
import re
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, NamedTuple

import pytest
from pydantic import BaseModel

from autonomic.clock import local_stamp, utc_stamp
from autonomic.config import Config, load_config_data
from autonomic.engine import (
    INBOX,
    Engine,
    LateApproval,
    answer_approval,
    approval_expires_at,
    approval_key,
    pause_file,
    pause_key,
    paused_reason,
    queue_findings,
    stopped_key,
)
from autonomic.errors import NotLeaderError
from autonomic.knowledge import Store
from autonomic.knowledge.lease import LeaderElector
from autonomic.liveness import Watchdog
from autonomic.model import (
    Action,
    ActionState,
    AuditEvent,
    Autonomy,
    Decision,
    Finding,
    FindingKind,
    Incident,
    IncidentState,
    Level,
    Notification,
    Resolution,
    Sample,
    Severity,
    Verdict,
)
from autonomic.oversight.explain import explain_incident, render_text
from autonomic.oversight.notify import Dispatcher, Route
from autonomic.oversight.reports import build_report
from autonomic.plan.autonomy import people_evidence
from autonomic.protocols import Target
from autonomic.registry import Registry
from autonomic.testing import FakeActuator, FakeClock, FakeNotifier, ReplaySource

T0 = 1_700_000_000.0

PATTERN = """
id: fake-down-poke
match: {cause: down, kind: state}
action: {type: fake, params: {op: %(op)s}}
prior_confidence: 0.9
rollback_safe: %(rollback)s
verify: {metric: up, min: 1, window_s: 10, delay_s: 3, min_samples: 3}
"""


class Harness:
    def __init__(self, tmp_path: Path, policy: dict[str, Any] | None = None, op: str = "poke",
                 rollback: bool = True, store: Store | None = None, actuator: FakeActuator | None = None,
                 extra: dict[str, Any] | None = None, elector: LeaderElector | None = None,
                 start_at: float = T0, also: str | None = None, patterns: str = "",
                 unbound: str | None = None) -> None:
        """``also``: one more actuator type name, served by the same fake actuator and bound on svc.
        ``patterns``: more pattern YAML, beside the fake-down-poke pattern."""
        self.clock = FakeClock(start_at)
        pdir = tmp_path / "patterns"
        pdir.mkdir(exist_ok=True)
        (pdir / "fake.yaml").write_text(PATTERN % {"op": op, "rollback": str(rollback).lower()})
        if patterns:
            (pdir / "more.yaml").write_text(patterns)
        self.actuator = actuator or FakeActuator()
        registry = Registry()
        registry.register("actuator", "fake", lambda ctx: self.actuator)
        registry.register("actuator", "fake", registry.get("actuator", "fake"))
        # the registry maps the type to a factory; the Params/Binding live on the class
        factory = registry.get("actuator", "fake")
        factory.Params = FakeActuator.Params  # type: ignore[attr-defined]
        factory.Binding = FakeActuator.Binding  # type: ignore[attr-defined]
        factory.type = "fake"  # type: ignore[attr-defined]
        bindings: dict[str, Any] = {"fake": {"name": "x"}}
        if also is not None:
            registry.register("actuator", also, factory)
            bindings[also] = {"name": "x"}
        if unbound is not None:  # a type patterns may use that svc has no binding for
            registry.register("actuator", unbound, factory)
        self._registry = registry
        data = {
            "engine": {"interval_s": 1, "state_dir": str(tmp_path / "state"), "host_metrics": False,
                       "settle_s": 0, "resolve_after_s": 30},
            "services": [{"name": "svc", "actuators": bindings,
                          "thresholds": {"down_after": 2, "sustain": 2}}],
            "patterns": [str(pdir)],
            "builtin_patterns": False,
            "policy": {"autonomy": "auto", "confidence_threshold": 0.5, **(policy or {})},
            **(extra or {}),
        }
        self.config: Config = load_config_data(data, source="test.yaml", base_dir=tmp_path, registry=registry)
        self.samples: list[Sample] = []
        self.source = ReplaySource([])
        self.notifier = FakeNotifier()
        self.store = store or Store("sqlite://")
        self.engine = Engine(self.config, registry=registry, clock=self.clock, store=self.store,
                             notifiers=Dispatcher([(self.notifier, Level.INFO)], synchronous=True, dedup_s=0),
                             sources=[self.source])
        self.engine.elector = elector  # leader election: this engine starts as the leader it names
        self.engine.start()

    def feed(self, metric: str, value: float, seconds: int) -> None:
        """Samples of ``metric`` once a second for ``seconds``, ticking the engine each second."""
        for _ in range(seconds):
            self.source._samples.append(Sample("svc", metric, self.clock.now(), value))
            self.engine.tick()
            self.clock.advance(1.0)

    def run_until(self, predicate: Callable[[], bool], metric: str, value: float, limit: int = 60) -> None:
        for _ in range(limit):
            if predicate():
                return
            self.feed(metric, value, 1)
        raise AssertionError("condition not reached")

    def incident(self) -> Incident:
        incidents = self.store.incidents(service="svc")  # newest first
        assert incidents, "no incident"
        return incidents[0]


def test_a_down_service_is_acted_on_verified_and_resolved(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    h.feed("up", 1, 3)
    assert h.store.incidents() == []
    h.feed("up", 0, 3)
    inc = h.incident()
    assert inc.cause == "down" and inc.kind == FindingKind.STATE
    assert [c for c, *_ in h.actuator.calls] == ["apply"]
    h.run_until(lambda: h.store.get(Incident, inc.id).state == IncidentState.RESOLVED, "up", 1)  # type: ignore[union-attr]
    done = h.store.get(Incident, inc.id)
    assert done is not None and done.resolution == Resolution.RESOLVED and done.closed_at is not None
    (action,) = h.store.actions(incident_id=inc.id)
    assert action.state == ActionState.SUCCEEDED
    assert [s.name for s in action.steps][:2] == ["baseline", "apply"]
    (outcome,) = h.store.outcomes(incident_id=inc.id)
    assert outcome.verdict == "pass"
    assert h.store.verify_audit().ok


def test_the_loop_over_a_postgresql_store_opens_an_incident_decides_acts_and_resolves(
        tmp_path: Path, postgres_url: str) -> None:
    store = Store(postgres_url)
    try:
        h = Harness(tmp_path, store=store)
        h.feed("up", 1, 3)
        assert h.store.incidents() == []
        h.feed("up", 0, 3)
        inc = h.incident()
        (decision,) = h.store.decisions(incident_id=inc.id)
        assert decision.verdict == Verdict.APPROVED and all(g.passed for g in decision.gates)
        assert [c for c, *_ in h.actuator.calls] == ["apply"]
        h.run_until(lambda: h.store.get(Incident, inc.id).state == IncidentState.RESOLVED, "up", 1)  # type: ignore[union-attr]
        (action,) = h.store.actions(incident_id=inc.id)
        assert action.state == ActionState.SUCCEEDED and action.decision_id == decision.id
        (outcome,) = h.store.outcomes(incident_id=inc.id)
        assert outcome.verdict == "pass"
        assert h.store.pattern_tallies() == {"fake-down-poke": (1, 0)}
    finally:
        store.close()
    again = Store(postgres_url)  # what another process (the CLI, the API) reads
    try:
        assert again.get(Incident, inc.id).resolution == Resolution.RESOLVED  # type: ignore[union-attr]
        report = again.verify_audit()
        assert report.ok and report.checked > 5
    finally:
        again.close()


def test_the_loop_rides_out_its_postgresql_database_refusing_connections_and_catches_up(
        tmp_path: Path, postgres_server: Any, postgres_url: str) -> None:
    """A real PostgreSQL: the engine's connections are terminated and the database refuses new
    ones for five ticks (what a server restart or a failover does to a client), while the
    service goes down. The loop goes on; once the database takes connections again the down
    incident is opened, acted on and resolved, and the audit chain is whole."""
    name = postgres_url.rsplit("/", 1)[1]
    store = Store(postgres_url)
    try:
        h = Harness(tmp_path, store=store)
        h.feed("up", 1, 3)
        with postgres_server.connect() as admin:
            admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
            admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,))
            h.feed("up", 0, 5)
            assert h.actuator.calls == []
            admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
        h.run_until(lambda: any(i.state == IncidentState.RESOLVED for i in h.store.incidents(service="svc")),
                    "up", 1)
        (inc,) = h.store.incidents(service="svc")
        assert inc.cause == "down" and [c for c, *_ in h.actuator.calls] == ["apply"]
        assert h.store.verify_audit().ok
    finally:
        store.close()


def test_repeated_findings_update_one_incident_never_open_a_second(tmp_path: Path) -> None:
    h = Harness(tmp_path, policy={"autonomy": "observe"})
    h.feed("up", 0, 25)
    incidents = h.store.incidents(service="svc")
    assert len(incidents) == 1
    assert incidents[0].state == IncidentState.ESCALATED  # observe: recorded and told, never acted on
    assert h.actuator.calls == []


def test_a_memory_leak_is_forecast_at_a_one_minute_collection_interval(tmp_path: Path) -> None:
    """The default forecasts' 300 s window held 6 samples at a 60 s interval, fewer than the 8 a
    forecast needs: a leak sampled once a minute reached its line with no forecast before it."""
    engine = {"interval_s": 60, "state_dir": str(tmp_path / "state"), "host_metrics": False, "settle_s": 0}
    h = Harness(tmp_path, policy={"autonomy": "observe"}, extra={"engine": engine})
    for i in range(30):
        h.source._samples.append(Sample("svc", "memory_percent", h.clock.now(), 40.0 + 1.0 * i))
        h.engine.tick()
        h.clock.advance(60.0)
    incidents = h.store.incidents(service="svc")
    assert [(i.cause, i.kind) for i in incidents] == [("memory", FindingKind.FORECAST)]


def test_a_threshold_held_by_hysteresis_stays_held_across_a_restart(tmp_path: Path) -> None:
    """Memory crossed its line (85) and fell back to 80, above the clear line (76.5): its incident
    is held open. Restarted, the engine had forgotten the crossing: 80 was no finding, the incident
    closed as cleared on its own, and the next crossing opened another. The crossing is
    checkpointed with the detectors' state now."""
    store = Store("sqlite://")
    first = Harness(tmp_path, policy={"autonomy": "observe"}, store=store)
    first.feed("memory_percent", 90.0, 3)
    first.feed("memory_percent", 80.0, 5)
    [inc] = store.incidents(service="svc")
    assert inc.cause == "memory" and inc.closed_at is None
    first.engine.checkpoint_detectors(first.clock.now())  # as every checkpoint_s, and at shutdown
    h = Harness(tmp_path, policy={"autonomy": "observe"}, store=store, start_at=first.clock.now())
    h.feed("memory_percent", 80.0, 40)  # past resolve_after_s (30)
    [still] = store.incidents(service="svc")
    assert still.id == inc.id and still.closed_at is None
    h.feed("memory_percent", 70.0, 40)  # below the clear line: cleared, and closed once quiet
    [closed] = store.incidents(service="svc")
    assert closed.id == inc.id and closed.closed_at is not None


def test_one_missed_scrape_at_a_one_minute_interval_does_not_let_a_held_line_go(tmp_path: Path) -> None:
    """At a 60 s interval a scrape that timed out left the latest sample 60 s old, past the 30 s
    a sample counted for: memory held crossed in its hysteresis band (80: under 85, over the clear
    line 76.5) was let go at that tick, no finding came at the next ones, and its incident closed
    as cleared while memory stayed at 80. A sample counts for three intervals now."""
    engine = {"interval_s": 60, "state_dir": str(tmp_path / "state"), "host_metrics": False, "settle_s": 0,
              "resolve_after_s": 120}
    h = Harness(tmp_path, policy={"autonomy": "observe"}, extra={"engine": engine})
    values = [90.0, 91.0, 80.0, None, 80.0, 80.0, 80.0, 80.0]  # None: that scrape timed out
    for value in values:
        if value is not None:
            h.source._samples.append(Sample("svc", "memory_percent", h.clock.now(), value))
        h.engine.tick()
        h.clock.advance(60.0)
    [inc] = h.store.incidents(service="svc")
    assert inc.cause == "memory" and inc.closed_at is None


def test_the_engine_warns_at_start_of_a_line_and_a_goal_no_configured_source_samples_each_once_under_its_own_name(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """What ``autonomic check`` warns of, ``autonomic run`` logs at start (its sources are the
    config's): a line on a metric nothing samples under ``config:``, a goal's under ``goals:``,
    each once; an engine fed from elsewhere (a replay) says neither."""
    data = {"engine": {"state_dir": str(tmp_path / "state"), "host_metrics": False},
            "services": [{"name": "web", "probes": [{"url": "http://127.0.0.1:9/health"}],
                          "thresholds": {"extra": {"queue_dept": 10}},
                          "goals": [{"name": "avail", "metric": "probe_okk", "min": 1, "target": 0.999}]}]}
    cfg = load_config_data(data, source="t.yaml", base_dir=tmp_path)
    goal, line = cfg.warnings
    for sources in (None, [ReplaySource([])]):
        caplog.clear()
        engine = Engine(cfg, clock=FakeClock(T0), store=Store("sqlite://"), sources=sources,
                        notifiers=Dispatcher([(FakeNotifier(), Level.INFO)], synchronous=True, dedup_s=0))
        with caplog.at_level("WARNING", logger="autonomic"):
            engine.start()
        engine.shutdown()
        said = [r.getMessage() for r in caplog.records if "never" in r.getMessage()]
        assert said == ([f"config: {line.field}: {line.message}", f"goals: {goal.field}: {goal.message}"]
                        if sources is None else [])


def test_an_escalation_is_counted_in_the_daily_report_of_the_day_it_happened_and_not_again_while_its_symptom_lasts(
        tmp_path: Path) -> None:
    """An escalated incident keeps collecting its lasting symptom's findings (each moves its
    ``updated_at``): the report counts the escalation by when it happened, so the next day's
    report does not count it a second time."""
    day = 86_400.0
    engine = {"interval_s": 1, "state_dir": str(tmp_path / "state"), "host_metrics": False, "settle_s": 0,
              "resolve_after_s": 2 * day}  # the symptom is not quiet across the day
    h = Harness(tmp_path, policy={"autonomy": "observe"}, extra={"engine": engine})
    h.feed("up", 0, 10)
    assert h.incident().state == IncidentState.ESCALATED
    first = h.clock.now()
    assert build_report(h.store, "daily", first).escalations == 1
    h.clock.advance(day - 20)
    h.feed("up", 0, 15)  # the same symptom, still there a day later: the same escalated incident
    (inc,) = h.store.incidents(service="svc")
    assert inc.state == IncidentState.ESCALATED and inc.updated_at > first
    assert build_report(h.store, "daily", first + day).escalations == 0


def test_observe_mode_records_the_decision_with_every_gate_and_never_acts(tmp_path: Path) -> None:
    h = Harness(tmp_path, policy={"autonomy": "observe"})
    h.feed("up", 0, 4)
    inc = h.incident()
    (decision,) = h.store.decisions(inc.id)
    assert decision.verdict == Verdict.DENIED
    gates = {g.gate: g for g in decision.gates}
    assert not gates["autonomy"].passed and "observe" in gates["autonomy"].reason
    assert gates["has_action"].passed and gates["confidence"].passed
    assert {"has_action", "policy_enabled", "paused", "autonomy", "confidence", "rate_limit", "maintenance_window",
            "circuit_breaker"} <= set(gates)
    assert h.actuator.calls == []


def _pause_after_prepare(h: Harness) -> Callable[..., Any]:
    """Make the engine pause itself right after it journals an action's intent (before the apply);
    returns the real prepare, to put back."""
    real_prepare = h.engine.executor.prepare

    def prepare_then_pause(*args: Any, **kwargs: Any) -> Any:
        action = real_prepare(*args, **kwargs)
        h.store.set_state(pause_key(None), {"reason": "stop", "actor": "person:test"}, actor="person:test",
                          event="pause.set")
        return action

    h.engine.executor.prepare = prepare_then_pause  # type: ignore[method-assign]
    return real_prepare


def test_kill_switch_set_after_the_decision_cancels_the_action_before_the_actuator_runs(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    h.feed("up", 1, 2)
    # decide, but do not run yet: pause the engine between the intent and the apply
    _pause_after_prepare(h)
    h.feed("up", 0, 5)
    (action,) = h.store.actions()
    assert action.state == ActionState.CANCELLED and "pause" in (action.error or "")
    assert h.actuator.calls == []
    assert h.incident().state == IncidentState.ESCALATED


def test_an_action_a_pause_cancelled_before_it_ran_is_decided_again_once_the_pause_is_lifted(
        tmp_path: Path) -> None:
    """The pause came between the decision and the apply: the action is cancelled (nothing ran),
    and the incident is held back by the pause alone, as one the paused gate denied. Once the
    pause is lifted, with the service still down, it is decided again and fixed; it stayed
    escalated for ever while an incident decided a moment later was taken up again."""
    h = Harness(tmp_path)
    h.feed("up", 1, 2)
    real_prepare = _pause_after_prepare(h)
    h.feed("up", 0, 5)
    (cancelled,) = h.store.actions()
    assert cancelled.state == ActionState.CANCELLED and h.actuator.calls == []
    h.engine.executor.prepare = real_prepare  # type: ignore[method-assign]
    inc = h.incident()
    h.store.set_state(pause_key(None), None, actor="person:test", event="pause.cleared")
    h.run_until(lambda: any(a.state.terminal and a.id != cancelled.id for a in h.store.actions(incident_id=inc.id)),
                "up", 0)
    assert [c for c, *_ in h.actuator.calls][:1] == ["apply"]
    assert [e.kind for e in h.store.audit_events(subject=inc.id)].count("incident.resumed") == 1


def test_a_paused_service_is_denied_at_the_paused_gate(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    h.store.set_state(pause_key("svc"), {"reason": "deploy", "actor": "person:a"}, actor="person:a", event="pause.set")
    h.feed("up", 0, 4)
    (decision,) = h.store.decisions(h.incident().id)
    assert decision.verdict == Verdict.DENIED
    assert not next(g for g in decision.gates if g.gate == "paused").passed
    assert h.actuator.calls == []


def test_an_incident_only_a_pause_held_back_is_decided_again_once_the_pause_is_lifted(tmp_path: Path) -> None:
    """Paused for a deploy, a service goes down: nothing acts, and the people are told it is
    decided again when the pause is lifted. After `resume`, with the service still down, the
    engine takes it up again through every gate (audited incident.resumed) and fixes it; it did
    not, and the service stayed down until a person acted. Also across a restart of the engine."""
    store = Store(f"sqlite:///{tmp_path / 'db.sqlite'}")
    first = Harness(tmp_path, store=store)
    store.set_state(pause_key(None), {"reason": "deploy", "actor": "person:a"}, actor="person:a", event="pause.set")
    first.feed("up", 0, 6)
    inc = first.incident()
    assert store.get(Incident, inc.id).state == IncidentState.ESCALATED  # type: ignore[union-attr]
    assert first.actuator.calls == [] and "decided again when the pause is lifted" in first.notifier.sent[-1].body
    h = Harness(tmp_path, store=store, start_at=first.clock.now())  # the engine restarted while paused
    h.feed("up", 0, 3)
    assert h.actuator.calls == [] and len(h.store.decisions(inc.id)) == 1
    h.store.set_state(pause_key(None), None, actor="person:a", event="pause.cleared")
    h.run_until(lambda: any(a.state.terminal for a in store.actions(incident_id=inc.id)), "up", 0)
    assert [c for c, *_ in h.actuator.calls][:1] == ["apply"]
    assert [e.kind for e in h.store.audit_events(subject=inc.id)].count("incident.resumed") == 1
    assert [d.verdict for d in h.store.decisions(inc.id)] == [Verdict.DENIED, Verdict.APPROVED]


def test_an_incident_a_person_denied_is_not_taken_up_again_when_a_pause_is_lifted(tmp_path: Path) -> None:
    h = Harness(tmp_path, policy={"autonomy": "approve"})
    h.feed("up", 0, 4)
    inc = h.incident()
    h.store.set_state(approval_key(inc.id), {"verdict": "deny", "actor": "person:bo", "comment": "mine",
                                             "decision": h.store.decisions(inc.id)[-1].id},
                      actor="person:bo", event="approval.deny")
    h.feed("up", 0, 2)
    assert h.store.get(Incident, inc.id).state == IncidentState.ESCALATED  # type: ignore[union-attr]
    h.store.set_state(pause_key(None), {"reason": "x", "actor": "person:a"}, actor="person:a", event="pause.set")
    h.store.set_state(pause_key(None), None, actor="person:a", event="pause.cleared")
    h.feed("up", 0, 5)
    assert h.actuator.calls == [] and h.store.get(Incident, inc.id).state == IncidentState.ESCALATED  # type: ignore[union-attr]


def test_a_remedy_that_leaves_the_service_down_is_never_called_a_success(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    h.feed("up", 1, 12)  # a healthy baseline before the fault
    h.feed("up", 0, 3)
    inc = h.incident()
    h.run_until(lambda: h.store.get(Incident, inc.id).state.terminal, "up", 0)  # type: ignore[union-attr]
    # still down after the fix: undone (worse than the mostly-up baseline) or handed to a person
    done = h.store.get(Incident, inc.id)
    assert done is not None and done.state in (IncidentState.ESCALATED, IncidentState.ROLLED_BACK)
    assert done.resolution not in (Resolution.RESOLVED, Resolution.PREVENTED)
    assert any(n.level == Level.ALERT for n in h.notifier.sent)


def test_verification_failure_rolls_back_when_rollback_is_safe(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    h.feed("up", 1, 2)
    h.feed("up", 0, 3)
    inc = h.incident()
    (action,) = h.store.actions()
    # make the baseline healthy so "still 0" afterwards counts as worse than before
    baseline = action.steps[0].model_copy(update={"detail": {"metric": "up", "ts": [T0 + i for i in range(8)],
                                                             "values": [1.0] * 8}})
    h.store.record(action.model_copy(update={"steps": [baseline, *action.steps[1:]]}), actor="test",
                   event="test.edit", subject=action.id)
    h.run_until(lambda: h.store.get(Incident, inc.id).state.terminal, "up", 0)  # type: ignore[union-attr]
    done = h.store.get(Incident, inc.id)
    assert done is not None and done.state == IncidentState.ROLLED_BACK
    assert [c for c, *_ in h.actuator.calls] == ["apply", "undo"]
    (outcome,) = h.store.outcomes(incident_id=inc.id)
    assert outcome.rolled_back and outcome.verdict == "fail"
    # the undo itself was watched: still down afterwards, so it did not restore health
    assert outcome.undo_verdict is not None and outcome.undo_verdict != "pass"
    assert any(s.name == "verify-undo" for s in h.store.actions()[0].steps)
    assert any("did NOT restore" in n.body for n in h.notifier.sent)


def test_explain_says_whether_the_undo_of_a_rolled_back_fix_restored_health(tmp_path: Path) -> None:
    """The fix made svc worse and was undone, and svc stayed down after the undo: the engine's
    alert says "the undo did NOT restore health", and so does explain's outcome now. It read "FAIL
    (rolled back): ...", which a person reads as things put back as they were."""
    h = Harness(tmp_path)
    inc = _undone_fix_that_left_it_down(h)
    (outcome,) = h.store.outcomes(incident_id=inc.id)
    assert outcome.undo_verdict is not None and outcome.undo_verdict != "pass"
    text = render_text(explain_incident(h.store, inc.id))
    said = f"FAIL (rolled back, but the undo did NOT restore health: its check was {outcome.undo_verdict.value}): "
    assert said + outcome.reason in text, text.split("Outcome:")[1]


def test_a_fix_whose_metric_goes_silent_part_way_through_the_watch_is_never_called_a_success(
        tmp_path: Path) -> None:
    h = Harness(tmp_path)
    h.feed("up", 1, 12)
    h.feed("up", 0, 3)
    inc = h.incident()
    h.feed("up", 1, 5)  # up for a few samples after the fix (enough for min_samples) ...
    h.feed("cpu_percent", 1, 40)  # ... then nothing reports it: the service died, nobody scrapes it
    (action,) = h.store.actions()
    assert action.state == ActionState.ESCALATED
    assert [s.name for s in action.steps][-2:] == ["verify-extended", "verify"]  # watched once more first
    assert action.steps[-1].detail["reason"].startswith("went silent")
    done = h.store.get(Incident, inc.id)
    assert done is not None and done.resolution not in (Resolution.RESOLVED, Resolution.PREVENTED)


def _healthy_baseline(h: Harness) -> None:
    (action,) = h.store.actions()
    baseline = action.steps[0].model_copy(update={"detail": {"metric": "up", "ts": [T0 + i for i in range(8)],
                                                             "values": [1.0] * 8}})
    h.store.record(action.model_copy(update={"steps": [baseline, *action.steps[1:]]}), actor="test",
                   event="test.edit", subject=action.id)


def _undone_fix_that_left_it_down(h: Harness) -> Incident:
    """svc goes down, its fix runs against a healthy baseline and svc stays down: the fix is judged
    worse than before and undone (or, with ``op="fail_undo"``, its undo fails); run until the
    incident ends. Its incident."""
    h.feed("up", 1, 2)
    h.feed("up", 0, 3)
    inc = h.incident()
    _healthy_baseline(h)
    h.run_until(lambda: h.store.get(Incident, inc.id).state.terminal, "up", 0)  # type: ignore[union-attr]
    return inc


def test_a_failed_undo_pages_a_person_and_opens_the_breakers(tmp_path: Path) -> None:
    h = Harness(tmp_path, op="fail_undo")
    _undone_fix_that_left_it_down(h)
    (action,) = h.store.actions()
    assert action.state == ActionState.ESCALATED and "undo failed" in (action.error or "")
    assert h.store.get_state("breaker:global")["state"] == "open"  # type: ignore[index]
    assert h.store.get_state("breaker:fake")["state"] == "open"  # type: ignore[index]
    assert any("UNDO FAILED" in n.title for n in h.notifier.sent)


@pytest.mark.parametrize("failure", ["bug", "transient"])
def test_an_undo_is_retried_as_an_apply_is_and_an_actuators_bug_in_it_is_a_failed_undo(
        tmp_path: Path, failure: str) -> None:
    """The undo of a fix that made things worse, through ``Executor._call`` as the apply and a
    workflow's compensations are. Before, it was called bare: a transient failure (a connection
    refused) was not retried but paged UNDO FAILED and opened the breakers at once; and an
    exception that is not an ActuatorError (an actuator's bug) escaped to the loop, which left the
    action ROLLING_BACK and called the undo again every few seconds, for ever, nobody told."""
    from autonomic.errors import RetryableActuatorError

    class FlakyUndo(FakeActuator):
        def undo(self, target: Any, params: Any, key: str, snapshot: Any) -> dict[str, Any]:
            self.calls.append(("undo", target.service, key))
            if failure == "bug":
                raise KeyError("pid")
            if sum(c == "undo" for c, *_ in self.calls) == 1:
                raise RetryableActuatorError("connection refused")
            self.applied_keys.discard(key)
            return {"undone": True}

    h = Harness(tmp_path, actuator=FlakyUndo())
    _undone_fix_that_left_it_down(h)
    (action,) = h.store.actions()
    undos = [c for c, *_ in h.actuator.calls if c == "undo"]
    if failure == "bug":
        assert undos == ["undo"] and action.state == ActionState.ESCALATED
        assert action.error == "undo failed: KeyError: 'pid'"
        assert any("UNDO FAILED" in n.title for n in h.notifier.sent)
    else:
        assert undos == ["undo", "undo"] and action.state == ActionState.ROLLED_BACK
        assert not any("UNDO FAILED" in n.title for n in h.notifier.sent)


def test_an_actuator_that_fails_with_a_bug_when_asked_whether_an_interrupted_apply_took_effect_hands_it_to_a_person(
        tmp_path: Path) -> None:
    """The engine died mid-apply; the next one asks the actuator whether it took effect, and the
    actuator raises an exception that is not an ActuatorError (its bug): nobody can tell, so a person
    is, once. Before, the exception escaped to the loop, which left the action RUNNING and asked
    again every few seconds, for ever, nobody told."""

    class Crash(BaseException):
        pass

    class DiesMidApply(FakeActuator):
        def apply(self, target: Any, params: Any, key: str, snapshot: Any) -> dict[str, Any]:
            raise Crash  # the engine is killed while the apply runs

    class CannotSay(FakeActuator):
        def applied(self, target: Any, params: Any, key: str, snapshot: Any) -> bool | None:
            self.calls.append(("applied", target.service, key))
            raise KeyError("pid")

    store = Store(f"sqlite:///{tmp_path / 'db.sqlite'}")
    h = Harness(tmp_path, store=store, actuator=DiesMidApply())
    with pytest.raises(Crash):
        h.feed("up", 0, 4)
    (action,) = store.actions()
    assert action.state == ActionState.RUNNING
    h2 = Harness(tmp_path, store=store, actuator=CannotSay(), start_at=h.clock.now())
    h2.feed("up", 0, 20)
    action = store.get(Action, action.id)  # type: ignore[assignment]
    assert action is not None and action.state == ActionState.ESCALATED
    assert [c for c, *_ in h2.actuator.calls] == ["applied"]
    assert any("cannot tell whether it ran" in n.body for n in h2.notifier.sent if n.level == Level.ALERT)


def test_the_alert_of_breakers_a_failed_undo_opened_says_when_they_let_a_trial_through(tmp_path: Path) -> None:
    """It said automation was stopped "until a person looks", yet the breakers half-open after
    policy.breaker.open_s like any other and the next action runs as their trial with nobody
    having looked: the alert names that time."""
    h = Harness(tmp_path, op="fail_undo", policy={"breaker": {"open_s": 1800}})
    _undone_fix_that_left_it_down(h)
    (opened,) = [n for n in h.notifier.sent if n.title == "circuit breakers opened: an undo failed"]
    at = h.store.get_state("breaker:global")["opened_at"]  # type: ignore[index]
    assert "until a person looks" not in opened.body
    assert f"half-open for one trial action at {utc_stamp(at + 1800)} (policy.breaker.open_s 1800 s)" in opened.body
    h.feed("up", 1, 40)  # a person fixed it: the incident closes
    h.clock.advance(1800)
    h.feed("up", 0, 5)  # down again half an hour on: the breakers' trial runs, nobody having looked
    decision = h.store.decisions(h.incident().id)[-1]
    assert decision.verdict == Verdict.APPROVED
    assert "half-open" in next(g.reason for g in decision.gates if g.gate == "circuit_breaker")
    assert [c for c, *_ in h.actuator.calls].count("apply") == 2


def test_a_fix_that_made_things_worse_and_could_not_be_undone_counts_against_its_pattern(tmp_path: Path) -> None:
    h = Harness(tmp_path, op="fail_undo")
    inc = _undone_fix_that_left_it_down(h)
    (action,) = h.store.actions()
    assert action.state == ActionState.ESCALATED and "undo failed" in (action.error or "")
    (outcome,) = h.store.outcomes(incident_id=inc.id)
    assert outcome.verdict == "fail" and not outcome.rolled_back
    assert "undo failed" in outcome.reason
    # the earned-autonomy ladder reads it as the failure it was
    outcomes, _ = h.store.pattern_record("fake-down-poke", "svc")
    assert [(verdict, rolled) for _, verdict, rolled, _ in outcomes] == [("fail", False)]
    assert h.engine._pattern_record("svc") == {"fake-down-poke": (0, 1)}  # and the diagnosis's record factor


def test_an_approval_request_names_the_command_to_answer_it_with_the_engines_config(tmp_path: Path) -> None:
    """The person paged runs the command the request gives, from whatever folder they are in: it
    names this engine's config by its absolute path. Before, "Run: autonomic approve ID" typed
    elsewhere opened the built-in defaults' store there and answered "no incident has an id
    starting with ID"."""
    h = Harness(tmp_path, policy={"autonomy": "approve"})
    h.feed("up", 0, 4)
    inc = h.incident()
    (request,) = [n for n in h.notifier.sent if n.level == Level.APPROVAL_REQUESTED]
    assert f"Run: autonomic -c {tmp_path / 'test.yaml'} approve {inc.id[:8]} (or deny {inc.id[:8]})" in request.body


def test_approve_autonomy_waits_for_a_person_then_acts_on_approval(tmp_path: Path) -> None:
    h = Harness(tmp_path, policy={"autonomy": "approve"})
    h.feed("up", 0, 4)
    inc = h.incident()
    assert inc.state == IncidentState.AWAITING_APPROVAL
    (request,) = [n for n in h.notifier.sent if n.level == Level.APPROVAL_REQUESTED]
    # the person paged is told by when to answer: the expiry recorded with the request
    (asked,) = h.store.decisions(inc.id)
    assert asked.expires_at is not None
    assert f"before {utc_stamp(asked.expires_at)} (engine.approval_ttl_s " in request.body, request.body
    assert "unanswered by then, nothing is done" in request.body
    assert h.actuator.calls == []
    h.store.set_state(approval_key(inc.id), {"verdict": "approve", "actor": "person:ann", "comment": "go"},
                      actor="person:ann", event="approval.approve")
    h.feed("up", 0, 2)
    decisions = h.store.decisions(inc.id)
    assert [d.verdict for d in decisions] == [Verdict.NEEDS_APPROVAL, Verdict.APPROVED]
    assert decisions[-1].decided_by == "person:ann" and decisions[-1].comment == "go"
    assert [c for c, *_ in h.actuator.calls] == ["apply"]
    assert h.store.get_state(approval_key(inc.id)) is None


def test_a_denial_given_in_the_instant_the_engine_takes_an_approval_stops_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A denial may replace an approval the engine has not acted on yet (it stops it), and the
    person is told "nothing is done". Before, the engine took the approval it had read by deleting
    whatever answer was stored: a denial written between its read and that delete (another
    replica's API, in the same instant) was deleted unseen and the restart ran. Now the engine takes
    the approval only while it is still the answer stored; otherwise it reads the answer again."""
    h = Harness(tmp_path, policy={"autonomy": "approve"})
    h.feed("up", 0, 4)
    inc = h.incident()
    answer_approval(h.store, inc.id, "approve", actor="person:ann", comment="go", now=h.clock.now(),
                    approval_ttl_s=3600.0)
    read = h.store.get_state

    def read_then_a_denial_lands(key: str) -> dict[str, Any] | None:
        value = read(key)
        if key == approval_key(inc.id) and value is not None and value["verdict"] == "approve":
            answer_approval(h.store, inc.id, "deny", actor="person:bob", comment="I am on it", now=h.clock.now(),
                            approval_ttl_s=3600.0)
        return value

    monkeypatch.setattr(h.store, "get_state", read_then_a_denial_lands)
    h.feed("up", 0, 2)
    assert h.actuator.calls == []
    decisions = h.store.decisions(inc.id)
    assert [(d.verdict, d.decided_by) for d in decisions] == [(Verdict.NEEDS_APPROVAL, "engine"),
                                                               (Verdict.DENIED, "person:bob")]
    consumed = [e for e in h.store.audit_events() if e.kind == "approval.consumed"]
    assert [(e.actor, e.data["verdict"]) for e in consumed] == [("person:bob", "deny")]


def test_a_denial_given_after_the_engine_took_an_approval_is_refused_not_told_it_stopped_anything(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Once the engine has taken an approval (its next step is the decision and the action's
    snapshot), a denial can no longer stop it. Before, the incident still read "awaiting approval"
    between the take and the decision: a denial given then was accepted, the person told the engine
    would act on it, and the restart ran anyway. Now the take moves the incident on in the same
    write; the denial is refused, saying the approval was taken and how to stop the action."""
    h = Harness(tmp_path, policy={"autonomy": "approve"})
    h.feed("up", 0, 4)
    inc = h.incident()
    answer_approval(h.store, inc.id, "approve", actor="person:ann", comment="go", now=h.clock.now(),
                    approval_ttl_s=3600.0)
    decide = h.engine._decide
    refused: list[str] = []

    def a_denial_lands_first(*args: Any, **kwargs: Any) -> float | None:
        try:
            answer_approval(h.store, inc.id, "deny", actor="person:bob", comment="stop", now=h.clock.now(),
                            approval_ttl_s=3600.0)
        except ValueError as e:
            refused.append(str(e))
        return decide(*args, **kwargs)

    monkeypatch.setattr(h.engine, "_decide", a_denial_lands_first)
    h.feed("up", 0, 2)
    assert len(h.actuator.calls) == 1  # the approval was taken: the restart ran
    assert len(refused) == 1 and "already taken" in refused[0] and "approved by person:ann" in refused[0]
    assert "autonomic pause" in refused[0]
    assert not [e for e in h.store.audit_events() if e.kind == "approval.deny"]
    assert h.store.get_state(approval_key(inc.id)) is None


def test_an_engine_killed_between_taking_an_approval_and_deciding_asks_again_on_restart_and_acts_on_nothing_meanwhile(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The take of an approval moves the incident to diagnosed in the same write; the decision and
    the action's snapshot come after. Killed between the two, the restarted engine finds a
    diagnosed incident whose approval is gone: it decides it again through every gate, so the
    person is asked again (a new request, which a new answer must name); nothing runs on the
    approval taken before the kill; the answer to the new request is acted on."""
    store = Store("sqlite://")
    first = Harness(tmp_path, policy={"autonomy": "approve"}, store=store)
    first.feed("up", 0, 4)
    inc = first.incident()
    [asked] = store.decisions(inc.id)
    answer_approval(store, inc.id, "approve", actor="person:ann", comment="go", now=first.clock.now(),
                    approval_ttl_s=3600.0)

    def killed(*args: Any, **kwargs: Any) -> float | None:
        raise RuntimeError("killed after the take")

    monkeypatch.setattr(first.engine, "_decide", killed)
    with contextlib.suppress(RuntimeError):
        first.feed("up", 0, 1)
    taken = store.get(Incident, inc.id)
    assert taken is not None and taken.state == IncidentState.DIAGNOSED
    assert store.get_state(approval_key(inc.id)) is None
    h = Harness(tmp_path, policy={"autonomy": "approve"}, store=store, start_at=first.clock.now())
    h.feed("up", 0, 2)
    again = store.get(Incident, inc.id)
    assert again is not None and again.state == IncidentState.AWAITING_APPROVAL
    decisions = store.decisions(inc.id)
    assert [(d.verdict, d.decided_by) for d in decisions] == [(Verdict.NEEDS_APPROVAL, "engine")] * 2
    assert decisions[0].id == asked.id
    assert first.actuator.calls == [] and h.actuator.calls == [] and store.actions() == []
    with pytest.raises(ValueError, match="asked again"):
        answer_approval(store, inc.id, "approve", actor="person:ann", comment="go", now=h.clock.now(),
                        approval_ttl_s=3600.0, answers=asked.id)
    answer_approval(store, inc.id, "approve", actor="person:ann", comment="go again", now=h.clock.now(),
                    approval_ttl_s=3600.0, answers=decisions[-1].id)
    h.feed("up", 0, 2)
    assert [c for c, *_ in h.actuator.calls] == ["apply"]


def _short_ttl_harness(tmp_path: Path) -> Harness:
    """Approve autonomy, and an approval request that expires 20 s after it was made."""
    engine = {"interval_s": 1, "state_dir": str(tmp_path / "state"), "host_metrics": False, "settle_s": 0,
              "resolve_after_s": 30, "approval_ttl_s": 20}
    return Harness(tmp_path, policy={"autonomy": "approve"}, extra={"engine": engine})


def test_an_approval_request_expires_its_ttl_after_it_was_made_while_the_symptom_goes_on(tmp_path: Path) -> None:
    h = _short_ttl_harness(tmp_path)
    h.feed("up", 0, 4)
    inc = h.incident()
    assert inc.state == IncidentState.AWAITING_APPROVAL
    asked = h.store.decisions(inc.id)[-1].ts
    h.feed("up", 0, 25)  # still down: its findings keep coming (and keep updating the incident)
    assert h.clock.now() - asked > 20
    assert h.store.get(Incident, inc.id).state == IncidentState.EXPIRED  # type: ignore[union-attr]


def _ttl_harness(tmp_path: Path, ttl_s: float, store: Store | None = None, start_at: float = T0) -> Harness:
    """Approve autonomy, with an approval request that expires ``ttl_s`` after it was made (its
    own folder under ``tmp_path``, so that a second one can stand for the same engine restarted)."""
    folder = tmp_path / f"ttl-{ttl_s:g}-{start_at:.0f}"
    folder.mkdir()
    engine = {"interval_s": 1, "state_dir": str(folder / "state"), "host_metrics": False, "settle_s": 0,
              "resolve_after_s": 30, "approval_ttl_s": ttl_s}
    return Harness(folder, policy={"autonomy": "approve"}, extra={"engine": engine}, store=store, start_at=start_at)


def test_an_approval_request_records_when_it_expires_by_the_ttl_of_the_engine_that_asked(tmp_path: Path) -> None:
    h = _ttl_harness(tmp_path, 20)
    h.feed("up", 0, 4)
    inc = h.incident()
    asked = h.store.decisions(inc.id)[-1]
    assert asked.verdict == Verdict.NEEDS_APPROVAL and asked.expires_at == asked.ts + 20
    assert approval_expires_at(inc, h.store.decisions(inc.id), ttl_s=3600.0) == asked.ts + 20
    # autonomic explain says when, as recorded
    text = render_text(explain_incident(h.store, inc.id))
    assert f"request expiry: {local_stamp(asked.ts + 20)} (engine.approval_ttl_s 20 s after it was asked)" in text
    # the engine's other decisions have no expiry
    h.feed("up", 0, 25)
    assert all(d.expires_at is None for d in h.store.decisions(inc.id) if d.verdict != Verdict.NEEDS_APPROVAL)


def test_a_restarted_engine_with_a_longer_ttl_expires_a_request_when_it_was_recorded_to(tmp_path: Path) -> None:
    """engine.approval_ttl_s raised from 20 s to an hour and the engine restarted while a request
    waits: the request was made under 20 s and every reader (the CLI, the API, another replica)
    refuses an approval after that, so this engine must not act on one either. Before, it took the
    hour from its own config and acted on an approval the CLI had refused as late."""
    db = f"sqlite:///{tmp_path / 'autonomic.db'}"
    first = _ttl_harness(tmp_path, 20, store=Store(db))
    first.feed("up", 0, 4)
    inc = first.incident()
    asked = first.store.decisions(inc.id)[-1]
    first.engine.checkpoint_detectors(first.clock.now())  # as every checkpoint_s, and at shutdown
    again = _ttl_harness(tmp_path, 3600, store=Store(db), start_at=first.clock.now())
    again.feed("up", 0, int(asked.ts + 18 - again.clock.now()))  # still down
    again.clock.advance(4)  # past the request's 20 s, before the engine looks again
    # an approval given then, stored (by an older CLI: this one refuses it as late), found by the engine
    again.store.set_state(approval_key(inc.id), {"verdict": "approve", "actor": "person:ann", "comment": "",
                                                 "ts": again.clock.now(), "decision": asked.id},
                          actor="person:ann", event="approval.approve")
    again.feed("up", 0, 2)
    assert again.actuator.calls == []
    assert again.store.get(Incident, inc.id).state == IncidentState.EXPIRED  # type: ignore[union-attr]
    expired = again.store.audit_events(subject=inc.id)[-1]
    assert (expired.kind, expired.data["approved_late_by"]) == ("approval.expired", "person:ann")


def test_a_restarted_engine_with_a_shorter_ttl_acts_on_an_approval_given_before_the_recorded_expiry(
        tmp_path: Path) -> None:
    """The other way round: asked under an hour, the engine restarted with 20 s; the request still
    waits after 20 s, and an approval then (in time by the request, as the CLI and the API judge
    it) is acted on. Before, the engine closed the incident as expired at 20 s."""
    db = f"sqlite:///{tmp_path / 'autonomic.db'}"
    first = _ttl_harness(tmp_path, 3600, store=Store(db))
    first.feed("up", 0, 4)
    inc = first.incident()
    asked = first.store.decisions(inc.id)[-1]
    first.engine.checkpoint_detectors(first.clock.now())  # as every checkpoint_s, and at shutdown
    again = _ttl_harness(tmp_path, 20, store=Store(db), start_at=first.clock.now())
    again.feed("up", 0, 22)  # still down, past this engine's 20 s
    assert again.clock.now() - asked.ts > 20
    assert again.store.get(Incident, inc.id).state == IncidentState.AWAITING_APPROVAL  # type: ignore[union-attr]
    answer_approval(again.store, inc.id, "approve", actor="person:ann", comment="go", now=again.clock.now(),
                    approval_ttl_s=20.0, answers=asked.id)
    again.feed("up", 0, 2)
    assert [c for c, *_ in again.actuator.calls] == ["apply"]
    assert again.store.decisions(inc.id)[-1].decided_by == "person:ann"


def test_a_request_recorded_without_its_expiry_expires_by_the_ttl_of_the_engine_reading_it(tmp_path: Path) -> None:
    """A request an older autonomic recorded (before migration 0010, or a replica of that version
    still running mid-rollout) has no expires_at: it expires approval_ttl_s after it was asked, by
    the TTL of whoever reads it, as before."""
    h = _ttl_harness(tmp_path, 20)
    h.feed("up", 0, 4)
    inc = h.incident()
    asked = h.store.decisions(inc.id)[-1]
    old = asked.model_copy(update={"expires_at": None})
    h.store.record(old, actor="test", event="test.edit", subject=inc.id)
    assert h.store.decisions(inc.id)[-1].expires_at is None
    assert approval_expires_at(inc, [old], ttl_s=50.0) == asked.ts + 50
    with pytest.raises(LateApproval, match=r"\(engine.approval_ttl_s 10 s after it was asked\)"):
        answer_approval(h.store, inc.id, "approve", actor="person:ann", comment="go", now=asked.ts + 15,
                        approval_ttl_s=10.0, answers=asked.id)
    h.feed("up", 0, 12)
    assert h.store.get(Incident, inc.id).state == IncidentState.AWAITING_APPROVAL  # type: ignore[union-attr]
    h.feed("up", 0, 10)  # 20 s, the engine's TTL, after it was asked
    assert h.store.get(Incident, inc.id).state == IncidentState.EXPIRED  # type: ignore[union-attr]


def test_an_approval_given_after_its_request_expired_is_not_acted_on(tmp_path: Path) -> None:
    h = _short_ttl_harness(tmp_path)
    h.feed("up", 0, 4)
    inc = h.incident()
    asked = h.store.decisions(inc.id)[-1].ts
    # the engine was down past the request's expiry; a person approved in the meantime
    h.clock.advance(30)
    h.store.set_state(approval_key(inc.id), {"verdict": "approve", "actor": "person:ann", "comment": "",
                                             "ts": asked + 25}, actor="person:ann", event="approval.approve")
    h.feed("up", 0, 2)
    assert h.store.get(Incident, inc.id).state == IncidentState.EXPIRED  # type: ignore[union-attr]
    assert h.actuator.calls == []


def test_every_late_approval_of_an_expired_request_is_refused_as_late_and_audited_however_many_came_before(
        tmp_path: Path) -> None:
    """Once the engine has closed the request as expired, each approval still given is refused as
    late (LateApproval, "the engine has closed the incident as expired") and audited approval.late.
    Before, the check read only the incident's 5 newest audit entries for approval.expired: those
    late attempts are entries on the incident too, so from the 6th on (a person retrying, a
    script) the attempt got a bare "not awaiting approval (it is expired)" and went unaudited."""
    h = _short_ttl_harness(tmp_path)
    h.feed("up", 0, 4)
    inc = h.incident()
    h.feed("up", 0, 25)
    assert h.store.get(Incident, inc.id).state == IncidentState.EXPIRED  # type: ignore[union-attr]
    for _ in range(8):
        with pytest.raises(LateApproval, match="the engine has closed the incident as expired"):
            answer_approval(h.store, inc.id, "approve", actor="person:ann", comment="go", now=h.clock.now(),
                            approval_ttl_s=20.0)
    late = [e for e in h.store.audit_events(subject=inc.id) if e.kind == "approval.late"]
    assert [e.actor for e in late] == ["person:ann"] * 8
    assert h.store.get_state(approval_key(inc.id)) is None and h.actuator.calls == []


def test_an_approval_after_expiry_of_a_request_already_approved_in_time_is_told_the_engine_acts_on_that(
        tmp_path: Path) -> None:
    """ann approves in time; bob approves the same request after it expired, before the engine has
    looked. The engine acts on ann's approval (given in time), so bob must be told that, as any
    second answer is ("already answered: approve by person:ann; the engine acts on that"). Before,
    bob got LateApproval: "too late, nothing will be done ... the engine closes the incident as
    expired", while the engine went on to run the remedy: a person told nothing will happen may
    well do it by hand."""
    h = _short_ttl_harness(tmp_path)
    h.feed("up", 0, 4)
    inc = h.incident()
    asked = h.store.decisions(inc.id)[-1]
    answer_approval(h.store, inc.id, "approve", actor="person:ann", comment="go", now=asked.ts + 15,
                    approval_ttl_s=20.0, answers=asked.id)
    with pytest.raises(ValueError) as refused:
        answer_approval(h.store, inc.id, "approve", actor="person:bob", comment="go", now=asked.ts + 25,
                        approval_ttl_s=20.0, answers=asked.id)
    assert not isinstance(refused.value, LateApproval)
    assert str(refused.value) == (f"incident {inc.id[:8]} was already answered: approve by person:ann; the engine "
                                  "acts on that at its next tick")
    assert not [e for e in h.store.audit_events(subject=inc.id) if e.kind == "approval.late"]
    h.clock.advance(25)  # the engine looks after the request expired
    h.feed("up", 0, 2)
    assert [c for c, *_ in h.actuator.calls] == ["apply"]  # ann's approval, given in time, is acted on
    assert h.store.decisions(inc.id)[-1].decided_by == "person:ann"


def _outage(h: Harness) -> Incident:
    """The service goes down after a quiet spell long enough to close the last incident (and for
    the target's backoff to run out): the new incident, once decided."""
    h.feed("up", 1, 40)
    h.feed("up", 0, 4)
    return h.incident()


def _roll_back(h: Harness, inc: Incident) -> None:
    """The action on ``inc`` runs and makes things worse (its baseline was healthy, the service
    stays down): verification fails and it is rolled back."""
    action = next(a for a in h.store.actions(incident_id=inc.id))
    baseline = action.steps[0].model_copy(update={"detail": {"metric": "up", "ts": [T0 + i for i in range(8)],
                                                             "values": [1.0] * 8}})
    h.store.record(action.model_copy(update={"steps": [baseline, *action.steps[1:]]}), actor="test",
                   event="test.edit", subject=action.id)
    h.run_until(lambda: h.store.get(Incident, inc.id).state.terminal, "up", 0)  # type: ignore[union-attr]
    assert h.store.get(Incident, inc.id).state == IncidentState.ROLLED_BACK  # type: ignore[union-attr]


def test_a_pattern_rolled_back_once_asks_a_person_and_an_approved_success_restores_its_record(
        tmp_path: Path) -> None:
    """The fake pattern (prior 0.9, confidence 0.78) is rolled back once on svc: its record there
    (0 verified, 1 failed: x0.67) puts it at 0.52, under the threshold of 0.6. Before, every later
    outage of svc was denied on confidence and escalated for ever: nothing a person did let the
    record recover. Now the engine asks a person to approve instead (an approval request, not an
    escalation page); the approved action runs through every gate, verifies, and enters the
    record; the outage after that is acted on at once, on the record alone."""
    h = Harness(tmp_path, policy={"confidence_threshold": 0.6})
    first = _outage(h)
    assert h.store.decisions(first.id)[0].verdict == Verdict.APPROVED
    _roll_back(h, first)

    second = _outage(h)
    assert second.state == IncidentState.AWAITING_APPROVAL
    (asked,) = h.store.decisions(second.id)
    gate = next(g for g in asked.gates if g.gate == "confidence")
    assert asked.verdict == Verdict.NEEDS_APPROVAL and gate.needs_approval
    assert gate.reason == ("confidence 0.52 below threshold 0.60 after 1 failed or rolled-back action of "
                           "fake-down-poke on svc: a person may approve")
    [request] = [n for n in h.notifier.sent if n.incident_id == second.id]  # asked, not paged
    assert request.level == Level.APPROVAL_REQUESTED and gate.reason in request.body
    assert len(h.actuator.calls) == 2  # the first outage's apply and undo: nothing ran on its own

    answer_approval(h.store, second.id, "approve", actor="person:ann", comment="it was the deploy",
                    now=h.clock.now(), approval_ttl_s=3600.0, answers=asked.id)
    h.feed("up", 0, 2)
    approved = h.store.decisions(second.id)[-1]
    assert (approved.verdict, approved.decided_by) == (Verdict.APPROVED, "person:ann")
    assert next(g for g in approved.gates if g.gate == "confidence").reason.endswith("approved by a person")
    h.run_until(lambda: h.store.get(Incident, second.id).state == IncidentState.RESOLVED, "up", 1)  # type: ignore[union-attr]
    assert h.engine._pattern_record("svc") == {"fake-down-poke": (1, 1)}
    # the person's approval is on the autonomy ladder's record as any approval is: asked on
    # confidence or on the autonomy level, a person's yes is the same trust in the remedy there
    _, answers = h.store.pattern_record("fake-down-poke", "svc")
    assert [(e.verdict, e.by) for e in people_evidence(answers, "fake-down-poke", "svc")] == [("pass", "person:ann")]

    third = _outage(h)
    (decision,) = h.store.decisions(third.id)
    assert (decision.verdict, decision.decided_by) == (Verdict.APPROVED, "engine")
    assert next(g for g in decision.gates if g.gate == "confidence").reason == "confidence 0.78 >= threshold 0.60"
    assert [c for c, *_ in h.actuator.calls] == ["apply", "undo", "apply", "apply"]


def test_a_pattern_that_keeps_failing_after_people_approved_it_falls_under_the_floor_and_stops_asking(
        tmp_path: Path) -> None:
    """Each outage's action fails; each request is approved. The record sinks (0.78 x 0.67, x0.5,
    x0.4: 0.52, 0.39, 0.31, each asked) until, after four failures, the confidence (0.26) is under
    the policy's floor of 0.3: the fifth outage is denied and escalated, no person is asked."""
    h = Harness(tmp_path, op="fail", policy={"confidence_threshold": 0.6, "breaker": {"failures": 10}})
    asked = []
    for _ in range(4):
        inc = _outage(h)
        if inc.state == IncidentState.AWAITING_APPROVAL:
            asked.append(h.store.decisions(inc.id)[-1])
            answer_approval(h.store, inc.id, "approve", actor="person:ann", comment="try", now=h.clock.now(),
                            approval_ttl_s=3600.0)
            h.feed("up", 0, 2)
        assert h.store.actions(incident_id=inc.id)[0].state == ActionState.FAILED
    assert [next(g.reason for g in d.gates if g.gate == "confidence")[:16] for d in asked] == [
        "confidence 0.52 ", "confidence 0.39 ", "confidence 0.31 "]
    requests = sum(n.level == Level.APPROVAL_REQUESTED for n in h.notifier.sent)
    assert requests == 3

    fifth = _outage(h)
    assert fifth.state == IncidentState.ESCALATED
    (denied,) = h.store.decisions(fifth.id)
    gate = next(g for g in denied.gates if g.gate == "confidence")
    assert denied.verdict == Verdict.DENIED and not gate.needs_approval
    assert gate.reason == ("confidence 0.26 below threshold 0.60 after 4 failed or rolled-back actions of "
                           "fake-down-poke on svc; under the floor 0.30 a person is not asked either")
    assert sum(n.level == Level.APPROVAL_REQUESTED for n in h.notifier.sent) == requests
    assert any(n.level == Level.ALERT and n.incident_id == fifth.id for n in h.notifier.sent)


def test_a_denial_leaves_the_incident_with_a_person_and_nothing_runs(tmp_path: Path) -> None:
    h = Harness(tmp_path, policy={"autonomy": "approve"})
    h.feed("up", 0, 4)
    inc = h.incident()
    h.store.set_state(approval_key(inc.id), {"verdict": "deny", "actor": "person:bo", "comment": "no"},
                      actor="person:bo", event="approval.deny")
    h.feed("up", 0, 2)
    assert h.store.get(Incident, inc.id).state == IncidentState.ESCALATED  # type: ignore[union-attr]
    assert h.store.decisions(inc.id)[-1].decided_by == "person:bo"
    assert h.actuator.calls == []


def test_rate_limit_per_service_day_denies_the_second_intervention(tmp_path: Path) -> None:
    h = Harness(tmp_path, policy={"rate_limits": {"per_day": 50, "per_week": 50, "per_service_day": 1,
                                                  "per_service_week": 10}})
    h.feed("up", 0, 3)
    first = h.incident()
    h.run_until(lambda: h.store.get(Incident, first.id).closed_at is not None, "up", 1)  # type: ignore[union-attr]
    h.feed("up", 0, 4)
    second = h.incident()
    assert second.id != first.id
    decision = h.store.decisions(second.id)[-1]
    assert decision.verdict == Verdict.DENIED
    gate = next(g for g in decision.gates if g.gate == "rate_limit")
    assert not gate.passed and "1" in gate.reason


def test_the_breaker_opens_after_three_failed_interventions(tmp_path: Path) -> None:
    # a low confidence bar, so that the pattern's falling record does not stop it before the breaker does
    h = Harness(tmp_path, op="fail", policy={"breaker": {"failures": 3, "open_s": 3600}, "confidence_threshold": 0.1})
    for _ in range(4):
        h.feed("up", 0, 3)
        h.run_until(lambda: h.store.incidents()[0].state.terminal, "up", 0)
        h.feed("up", 1, 40)  # quiet: the incident closes; the next fault opens a new one
    decisions = [d for i in h.store.incidents() for d in h.store.decisions(i.id)]
    failed_actions = [a for a in h.store.actions() if a.state == ActionState.FAILED]
    assert len(failed_actions) == 3
    last = max(decisions, key=lambda d: d.ts)
    assert last.verdict == Verdict.DENIED
    assert not next(g for g in last.gates if g.gate == "circuit_breaker").passed
    assert h.store.get_state("breaker:global")["state"] == "open"  # type: ignore[index]
    # the alert names what failed last, so a breaker that opens again within the notifiers'
    # duplicate window (a short open_s, a failed trial) is not taken for a copy of the first alert
    (opened,) = [n for n in h.notifier.sent if n.title == "circuit breaker opened for global actions"]
    assert f"the last: fake on svc (action {failed_actions[-1].id[:8]})" in opened.body


def test_a_half_open_breakers_trial_cancelled_by_a_pause_does_not_hold_the_breaker_shut_forever(
        tmp_path: Path) -> None:
    h = Harness(tmp_path)
    for scope in ("fake", "global"):  # opened two hours ago: past open_s, the next action is the trial
        h.store.set_state(f"breaker:{scope}", {"state": "open", "consecutive_failures": 3, "opened_at": T0 - 7200},
                          actor="test", event="test.edit")
    real_prepare = _pause_after_prepare(h)
    h.feed("up", 0, 5)
    (trial,) = h.store.actions()
    assert trial.state == ActionState.CANCELLED and h.actuator.calls == []  # the trial never ran
    h.engine.executor.prepare = real_prepare  # type: ignore[method-assign]
    h.store.set_state(pause_key(None), None, actor="person:test", event="pause.cleared")
    h.feed("up", 0, 3)  # still down: the incident the pause held back is decided again, the next trial
    decision = h.store.decisions(h.incident().id)[-1]
    assert decision.verdict == Verdict.APPROVED, [g.reason for g in decision.gates if not g.passed]
    assert [c for c, *_ in h.actuator.calls] == ["apply"]


def test_a_long_incident_writes_its_repeating_finding_less_often_and_counts_every_one(tmp_path: Path) -> None:
    """A service down for 30 minutes (observe: nothing acts) at 1 s ticks: a repeating finding was
    written every 10 s for as long as it lasted (8,640 findings and audit events a day for one down
    service). Now every 10 s at first, then a tenth of the incident's age, at most once a minute;
    the incident still counts every finding, the repeats since the last write included when it closes."""
    h = Harness(tmp_path, policy={"autonomy": "observe"})
    real_ingest = h.engine.ingest
    ingested = []

    def counting(finding: Finding, now: float) -> Incident | None:
        out = real_ingest(finding, now)
        if out is not None:
            ingested.append(finding)
        return out

    h.engine.ingest = counting  # type: ignore[method-assign]
    h.feed("up", 0, 1800)
    inc = h.incident()
    stored = h.store.findings(incident_id=inc.id)
    assert 30 <= len(stored) <= 60, len(stored)  # every 10 s throughout: 180
    gaps = [b.ts - a.ts for a, b in zip(stored, stored[1:], strict=False)]
    assert max(gaps) <= 61 and min(gaps[-5:]) >= 59  # once a minute by the end
    h.feed("up", 1, 40)  # quiet past resolve_after_s: closed
    closed = h.store.get(Incident, inc.id)
    assert closed is not None and closed.closed_at is not None
    assert closed.finding_count == len([f for f in ingested if f.cause == "down"])


def test_a_broken_source_is_logged_and_the_loop_carries_on(tmp_path: Path) -> None:
    h = Harness(tmp_path)

    class Broken:
        name = "broken"

        def collect(self, now: float) -> list[Sample]:
            raise RuntimeError("garbage payload")

    h.engine.sources.insert(0, Broken())
    h.feed("up", 0, 4)
    assert h.incident().cause == "down"


def _crashed_while_running(tmp_path: Path) -> tuple[Store, Harness, Any]:
    """A down service acted on, then the engine "dies" right after journaling RUNNING: the
    file store, the first harness and the action as the next engine will find it."""
    store = Store(f"sqlite:///{tmp_path / 'db.sqlite'}")
    h = Harness(tmp_path, store=store)
    h.feed("up", 0, 3)
    (action,) = store.actions()
    store.record(action.model_copy(update={"state": ActionState.RUNNING, "steps": action.steps[:1]}),
                 actor="test", event="test.crash", subject=action.id)
    return store, h, action


def test_after_a_restart_an_action_that_had_taken_effect_is_finished_idempotently_not_run_again(tmp_path: Path) -> None:
    store, h, action = _crashed_while_running(tmp_path)  # (the apply had happened)
    key = action.idempotency_key
    actuator = FakeActuator()
    actuator.applied_keys.add(key)
    h2 = Harness(tmp_path, store=store, actuator=actuator)
    h2.clock.t = h.clock.now()
    h2.feed("up", 1, 15)
    done = store.get(type(action), action.id)
    assert done is not None and done.state == ActionState.SUCCEEDED
    # apply was asked once more, idempotently, and did nothing again (the fake counts effects by key)
    assert [c for c, *_ in actuator.calls] == ["apply"]
    apply_step = next(s for s in done.steps if s.name == "apply")
    assert apply_step.detail == {"noop": True}
    assert any(s.detail.get("recovered") for s in done.steps)


def test_after_a_restart_an_action_that_never_took_effect_is_applied_once(tmp_path: Path) -> None:
    store, h, action = _crashed_while_running(tmp_path)
    actuator = FakeActuator()  # knows nothing of the key: it did not take effect
    h2 = Harness(tmp_path, store=store, actuator=actuator)
    h2.clock.t = h.clock.now()
    h2.feed("up", 1, 15)
    assert [c for c, *_ in actuator.calls] == ["apply"]
    assert store.get(type(action), action.id).state == ActionState.SUCCEEDED  # type: ignore[union-attr]


def test_a_decision_exists_for_every_action(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    h.feed("up", 0, 3)
    h.run_until(lambda: h.incident().state.terminal, "up", 1)
    for action in h.store.actions():
        decisions = [d for d in h.store.decisions(action.incident_id) if d.id == action.decision_id]
        assert decisions and decisions[0].verdict == Verdict.APPROVED
        assert isinstance(decisions[0], Decision)


@pytest.mark.parametrize("bad", [{"services": [{"name": "svc", "actuators": {"nope": {}}}]},
                                 {"services": [{"name": "Bad Name"}]},
                                 {"policy": {"autonomy": "yolo"}}])
def test_bad_config_names_the_field(tmp_path: Path, bad: dict[str, Any]) -> None:
    from autonomic.errors import ConfigError

    with pytest.raises(ConfigError) as err:
        load_config_data(bad, source="x.yaml", base_dir=tmp_path)
    text = str(err.value)
    assert "x.yaml" in text and ("services" in text or "policy" in text)


def test_findings_submitted_from_another_thread_open_an_incident_on_the_next_tick(tmp_path: Path) -> None:
    import threading

    from autonomic.model import Finding, Severity

    h = Harness(tmp_path, policy={"autonomy": "observe"})
    alert = Finding(service="svc", metric="HighErrorRate", kind=FindingKind.ALERT, cause="errors",
                    severity=Severity.CRITICAL, confidence=0.9, ts=h.clock.now(), summary="from Alertmanager")
    t = threading.Thread(target=h.engine.submit, args=([alert],))
    t.start()
    t.join()
    h.feed("up", 1, 1)
    inc = h.incident()
    assert inc.cause == "errors" and inc.kind == FindingKind.ALERT


def test_a_stored_policy_override_is_in_force_at_the_next_decision(tmp_path: Path) -> None:
    from autonomic.engine import POLICY_OVERRIDE

    h = Harness(tmp_path)  # the file says auto
    h.store.set_state(POLICY_OVERRIDE, {"autonomy": "observe"}, actor="token:admin", event="policy.changed")
    h.feed("up", 0, 4)
    decision = h.store.decisions(h.incident().id)[-1]
    assert decision.verdict == Verdict.DENIED
    assert h.actuator.calls == []


def test_a_stored_policy_override_an_older_version_wrote_keeps_what_still_validates_and_says_so_once(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """An override stored before this version refused a backoff cap at or above its reset (and a
    six-field cron) also turns the autonomy down to observe: the fields that no longer validate
    take the file's values, the autonomy stays observe (it was dropped with them: the policy
    loosened to the file's auto), and the error is logged once, not at every policy read."""
    from autonomic.engine import POLICY_OVERRIDE

    h = Harness(tmp_path)  # the file says auto
    old = {"autonomy": "observe", "backoff": {"base_s": 10, "cap_s": 600, "reset_after_s": 600},
           "maintenance_windows": [{"name": "n", "cron": "0 0 2 * * *", "duration_s": 60}]}
    with h.store.unit():  # as an older version wrote it: no validation on the way in
        h.store.set_state(POLICY_OVERRIDE, old, actor="token:admin", event="policy.changed")
    with caplog.at_level("ERROR", logger="autonomic.engine"):
        h.feed("up", 0, 4)
        policy = h.engine.policy()
    assert policy.autonomy == Autonomy.OBSERVE and policy.backoff == h.config.spec.policy.backoff
    assert policy.maintenance_windows == h.config.spec.policy.maintenance_windows
    decision = h.store.decisions(h.incident().id)[-1]
    assert decision.verdict == Verdict.DENIED and h.actuator.calls == []
    said = [r.getMessage() for r in caplog.records if "policy override" in r.getMessage()]
    assert said == ["the stored policy override (PUT /api/v1/policy) no longer validates in fields backoff, "
                    "maintenance_windows: the file's values are used there, the rest of the override is kept; "
                    "put the policy again"]


def test_a_stored_policy_override_reading_further_back_than_retention_is_warned_of_at_start_naming_the_field(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Stored before an upgrade turned retention on (or before the file's retention was
    shortened), it is still in force; the start says which retention field it outlasts."""
    from autonomic.engine import POLICY_OVERRIDE

    store = Store("sqlite://")
    store.set_state(POLICY_OVERRIDE, {"autonomy": "auto", "breaker": {"open_s": 100 * 86400.0}},
                    actor="token:admin", event="policy.changed")
    with caplog.at_level("WARNING", logger="autonomic.engine"):
        Harness(tmp_path, store=store)
    said = [r.getMessage() for r in caplog.records if r.getMessage().startswith("retention.")]
    assert len(said) == 1 and said[0].startswith("retention.incidents_days: 90 days is shorter than the 100 days")
    assert "policy.breaker.open_s" in said[0] and "PUT /api/v1/policy" in said[0]


# --- multi-step actions (workflows) --------------------------------------------------------

WORKFLOW = """
id: fake-down-workflow
match: {cause: down, kind: state}
action:
  steps:
    - {name: first, type: fake, params: {op: poke}}
    - {name: second, type: fake, params: {op: poke, value: 2}}
    - {name: third, type: fake, params: {op: %(third)s}}
prior_confidence: 1.0
rollback_safe: true
verify: {metric: up, min: 1, window_s: 10, delay_s: 3, min_samples: 3}
"""


def _kill_switch_unreadable_at(h: Harness, nth: int) -> None:
    """The executor's ``nth`` kill-switch check raises StoreError (the store did not answer)."""
    from autonomic.errors import StoreError

    real_paused, checks = h.engine.executor.paused, []

    def flaky(service: str) -> str | None:
        checks.append(service)
        if len(checks) == nth:
            raise StoreError("store read failed: database is locked")
        return real_paused(service)

    h.engine.executor.paused = flaky  # type: ignore[method-assign]


def _workflow_harness(tmp_path: Path, third: str = "poke", **kwargs: Any) -> Harness:
    """A Harness whose library also holds a 3-step workflow for the same fault, ranked first."""
    pdir = tmp_path / "patterns"
    pdir.mkdir(exist_ok=True)
    (pdir / "workflow.yaml").write_text(WORKFLOW % {"third": third})
    return Harness(tmp_path, **kwargs)


def test_a_workflow_whose_third_step_fails_compensates_steps_two_then_one_and_escalates(tmp_path: Path) -> None:
    h = _workflow_harness(tmp_path, third="fail")
    h.feed("up", 0, 4)
    (action,) = h.store.actions()
    key = action.idempotency_key
    assert action.pattern_id == "fake-down-workflow" and len(action.workflow) == 3
    assert h.actuator.calls == [("apply", "svc", f"{key}:0"), ("apply", "svc", f"{key}:1"),
                                ("apply", "svc", f"{key}:2"), ("undo", "svc", f"{key}:1"),
                                ("undo", "svc", f"{key}:0")]
    assert action.state == ActionState.FAILED
    assert "step 3/3 fake:third failed: fake failure" in (action.error or "")
    names = [s.name for s in action.steps]
    assert names.index("compensate 2/3 fake:second") < names.index("compensate 1/3 fake:first")
    # every step's snapshot was journaled with its intent, before it ran
    intents = [s for s in action.steps if s.detail.get("phase") == "intent" and s.detail.get("workflow") == "do"]
    assert [s.detail["key"] for s in intents] == [f"{key}:0", f"{key}:1", f"{key}:2"]
    assert all("snapshot" in s.detail for s in intents)
    inc = h.incident()
    assert inc.state == IncidentState.ESCALATED and inc.resolution == Resolution.FAILED
    assert any("step 3/3 fake:third failed" in n.body for n in h.notifier.sent if n.level == Level.ALERT)
    (outcome,) = h.store.outcomes(incident_id=inc.id)
    assert outcome.verdict == "fail" and "compensated steps: 2, 1" in outcome.reason
    assert h.store.verify_audit().ok


MIXED_WORKFLOW = """
id: fake-down-mixed
match: {cause: down, kind: state}
action:
  steps:
    - {name: drain, type: fake, params: {op: poke}}
    - {name: restart, type: other, params: {op: poke}}
prior_confidence: 1.0
rollback_safe: true
verify: {metric: up, min: 1, window_s: 10, delay_s: 3, min_samples: 3}
"""


def _mixed_harness(tmp_path: Path, policy: dict[str, Any]) -> Harness:
    """A Harness whose library also holds a 2-step workflow (fake, then other), ranked first."""
    pdir = tmp_path / "patterns"
    pdir.mkdir(exist_ok=True)
    (pdir / "mixed.yaml").write_text(MIXED_WORKFLOW)
    return Harness(tmp_path, policy=policy, also="other")


def test_a_workflow_with_a_step_of_a_disabled_action_type_is_denied_and_nothing_runs(tmp_path: Path) -> None:
    h = _mixed_harness(tmp_path, {"actions": {"other": {"enabled": False}}})
    h.feed("up", 0, 4)
    decision = h.store.decisions(h.incident().id)[-1]
    assert decision.pattern_id == "fake-down-mixed"
    assert decision.verdict == Verdict.DENIED
    gate = next(g for g in decision.gates if g.gate == "policy_enabled")
    assert not gate.passed and gate.reason == "action type other disabled (a step of this workflow)"
    assert h.actuator.calls == []


def test_a_workflow_is_held_by_the_rate_limit_and_breaker_of_a_later_steps_type(tmp_path: Path) -> None:
    """Before: a workflow (fake, then other) answered only to the fake limits and breaker, so it
    ran with every other action spent for the day or the other breaker open."""
    h = _mixed_harness(tmp_path, {"actions": {"other": {"rate_limits": {"per_day": 0}}}})
    h.feed("up", 0, 4)
    decision = h.store.decisions(h.incident().id)[-1]
    assert decision.pattern_id == "fake-down-mixed" and decision.verdict == Verdict.DENIED
    gate = next(g for g in decision.gates if g.gate == "rate_limit")
    assert not gate.passed and gate.reason == "limit reached: 0 of 0 other actions in the last 24 h"
    assert h.actuator.calls == []

    (tmp_path / "b").mkdir()
    h2 = _mixed_harness(tmp_path / "b", {})
    h2.store.set_state("breaker:other", {"state": "open", "consecutive_failures": 3, "opened_at": T0},
                       actor="test", event="test.edit")
    h2.feed("up", 0, 4)
    decision = h2.store.decisions(h2.incident().id)[-1]
    gate = next(g for g in decision.gates if g.gate == "circuit_breaker")
    assert decision.verdict == Verdict.DENIED and not gate.passed and gate.reason.startswith("other breaker open")
    assert h2.actuator.calls == []


def test_a_failed_workflow_counts_towards_the_breaker_of_every_type_it_runs(tmp_path: Path) -> None:
    pdir = tmp_path / "patterns"
    pdir.mkdir(exist_ok=True)
    (pdir / "mixed.yaml").write_text(MIXED_WORKFLOW.replace("{name: restart, type: other, params: {op: poke}}",
                                                            "{name: restart, type: other, params: {op: fail}}"))
    h = Harness(tmp_path, policy={"breaker": {"failures": 1}}, also="other")
    h.feed("up", 0, 4)
    (action,) = h.store.actions()
    assert action.pattern_id == "fake-down-mixed" and action.state == ActionState.FAILED
    for scope in ("fake", "other", "global"):
        assert (h.store.get_state(f"breaker:{scope}") or {}).get("state") == "open", scope


def test_a_workflow_with_a_step_held_at_approve_waits_for_a_person(tmp_path: Path) -> None:
    h = _mixed_harness(tmp_path, {"actions": {"other": {"autonomy": "approve"}}})  # the default is auto
    h.feed("up", 0, 4)
    inc = h.incident()
    assert inc.state == IncidentState.AWAITING_APPROVAL
    assert h.store.decisions(inc.id)[-1].verdict == Verdict.NEEDS_APPROVAL
    assert h.actuator.calls == []


UNDOABLE_WORKFLOW = """
id: fake-down-stuck
match: {cause: down, kind: state}
action:
  steps:
    - {name: first, type: fake, params: {op: fail_undo}}
    - {name: second, type: fake, params: {op: fail}}
prior_confidence: 1.0
rollback_safe: true
verify: {metric: up, min: 1, window_s: 10, delay_s: 3, min_samples: 3}
"""


def test_a_workflow_whose_compensation_fails_pages_a_person_and_counts_as_a_failure(tmp_path: Path) -> None:
    pdir = tmp_path / "patterns"
    pdir.mkdir(exist_ok=True)
    (pdir / "stuck.yaml").write_text(UNDOABLE_WORKFLOW)
    h = Harness(tmp_path)
    h.feed("up", 0, 4)
    (action,) = h.store.actions()
    assert action.pattern_id == "fake-down-stuck" and action.state == ActionState.ESCALATED
    assert any("COMPENSATION FAILED" in n.title for n in h.notifier.sent)
    (outcome,) = h.store.outcomes(incident_id=action.incident_id)
    assert outcome.verdict == "fail" and "compensating step 1/2 fake:first failed" in outcome.reason
    outcomes, _ = h.store.pattern_record("fake-down-stuck", "svc")
    assert [verdict for _, verdict, _, _ in outcomes] == ["fail"]


def _crash_after(action: Any, records: int) -> Any:
    """The action as journaled when the engine died: RUNNING, with only the first records."""
    return action.model_copy(update={"state": ActionState.RUNNING, "steps": action.steps[:records]})


@pytest.mark.parametrize("cut", ["after step 2", "inside step 3"])
def test_a_workflow_interrupted_after_step_two_resumes_at_step_three_and_never_reruns_one_and_two(
    tmp_path: Path, cut: str
) -> None:
    store = Store(f"sqlite:///{tmp_path / 'db.sqlite'}")
    h = _workflow_harness(tmp_path, store=store)
    h.feed("up", 0, 3)
    (action,) = store.actions()
    key = action.idempotency_key
    # baseline, then intent + result of steps 1 and 2 (and step 3's intent when cut inside it)
    kept = 5 if cut == "after step 2" else 6
    assert action.steps[kept - 1].name.startswith("step 2/3" if kept == 5 else "step 3/3")
    store.record(_crash_after(action, kept), actor="test", event="test.crash", subject=action.id)
    actuator = FakeActuator()
    actuator.applied_keys.update({f"{key}:0", f"{key}:1"})  # the world after steps 1 and 2
    h2 = _workflow_harness(tmp_path, store=store, actuator=actuator)
    h2.clock.t = h.clock.now()
    h2.feed("up", 1, 15)
    done = store.get(type(action), action.id)
    assert done is not None and done.state == ActionState.SUCCEEDED
    assert actuator.calls == [("apply", "svc", f"{key}:2")]
    checks = [s for s in done.steps if s.name.startswith("check ")]
    assert [c.name for c in checks] == ([] if cut == "after step 2" else ["check 3/3 fake:third"])


def test_a_pause_mid_workflow_stops_there_leaves_what_ran_in_place_and_escalates(tmp_path: Path) -> None:
    """A pause set while a workflow runs stops it before its next step, and its compensations too:
    what ran stays in place and a person is told which steps those are (no breaker opens).

    Before: the compensation of step 1 ran during the pause (the kill switch was asked before
    "do" steps only). After: a pause stops every actuator call, undo and compensation included."""
    h = _workflow_harness(tmp_path)
    real_apply = h.actuator.apply

    def apply_then_pause(*args: Any, **kwargs: Any) -> Any:
        out = real_apply(*args, **kwargs)
        h.store.set_state(pause_key(None), {"reason": "stop", "actor": "person:test"}, actor="person:test",
                          event="pause.set")
        return out

    h.actuator.apply = apply_then_pause  # type: ignore[method-assign]
    h.feed("up", 0, 4)
    (action,) = h.store.actions()
    key = action.idempotency_key
    assert h.actuator.calls == [("apply", "svc", f"{key}:0")]
    assert action.state == ActionState.ESCALATED and "step 2/3 fake:second failed: paused" in (action.error or "")
    assert "left in place" in (action.error or "") and "step 1/3" in (action.error or "")
    assert h.incident().state == IncidentState.ESCALATED
    assert (h.store.get_state("breaker:global") or {}).get("state") != "open"
    assert any(n.level == Level.ALERT and "left in place" in n.body for n in h.notifier.sent)


def test_a_workflow_step_whose_kill_switch_read_fails_runs_at_the_retry_not_handed_to_a_person(
        tmp_path: Path) -> None:
    """The store does not answer the kill-switch check before step 2 (its intent is journaled).
    Before: the step stayed "started", and the retry asked the actuator whether it had run; an
    actuator that cannot tell (a runbook) handed a step that never ran to a person. Now the
    intent is withdrawn, the retry checks the kill switch again and runs the step."""

    h = _workflow_harness(tmp_path)
    _kill_switch_unreadable_at(h, 2)
    h.actuator.applied = lambda *args, **kwargs: None  # type: ignore[method-assign]
    h.feed("up", 0, 4)
    (action,) = h.store.actions()
    key = action.idempotency_key
    assert [c for c in h.actuator.calls if c[0] == "apply"] == [("apply", "svc", f"{key}:0"),
                                                               ("apply", "svc", f"{key}:1"),
                                                               ("apply", "svc", f"{key}:2")]
    assert action.state in (ActionState.VERIFYING, ActionState.SUCCEEDED), action.error
    withdrawn = [s for s in action.steps if s.detail.get("phase") == "withdrawn"]
    assert [s.name for s in withdrawn] == ["step 2/3 fake:second"]
    assert h.store.verify_audit().ok


def test_a_step_that_took_effect_before_a_crash_keeps_its_snapshot_when_a_retry_is_withdrawn(
        tmp_path: Path) -> None:
    """Step 2 took effect and the engine died before its result. The next engine asks the
    actuator (it took effect), journals the intent to finish it, and the kill-switch read fails:
    that intent is withdrawn. Before: the withdrawal dropped the step's undo snapshot, so the
    next try took a new one, of the state the step had already changed, and an undo would have
    "restored" the change. Now the snapshot journaled before the step first ran is kept."""
    from autonomic.execute.workflow import snapshot_of

    class Crash(BaseException):
        pass

    store = Store(f"sqlite:///{tmp_path / 'db.sqlite'}")
    h = _workflow_harness(tmp_path, store=store)
    real_apply = h.actuator.apply

    def dies_after_step_two(target: Any, params: Any, key: str, snapshot: Any) -> dict[str, Any]:
        result = real_apply(target, params, key, snapshot)
        if key.endswith(":1"):
            raise Crash  # the engine is killed right after the step took effect
        return result

    h.actuator.apply = dies_after_step_two  # type: ignore[method-assign]
    with pytest.raises(Crash):
        h.feed("up", 0, 4)
    (action,) = store.actions()
    assert action.state == ActionState.RUNNING and snapshot_of(action.steps, 1) == {"before": 1}

    actuator = FakeActuator()
    actuator.applied_keys |= {f"{action.idempotency_key}:0", f"{action.idempotency_key}:1"}  # what ran
    h2 = _workflow_harness(tmp_path, store=store, actuator=actuator)
    h2.clock.t = h.clock.now()
    _kill_switch_unreadable_at(h2, 1)
    h2.feed("up", 1, 4)
    action = store.get(type(action), action.id)  # type: ignore[assignment]
    assert action is not None and [s.detail.get("phase") for s in action.steps
                                   if s.detail.get("workflow") == "do" and s.detail.get("index") == 1] == [
        "intent", "intent", "withdrawn", "intent", "result"]
    assert snapshot_of(action.steps, 1) == {"before": 1}
    assert [s.detail["snapshot"] for s in action.steps if s.detail.get("index") == 1 and "snapshot" in s.detail] == [
        {"before": 1}]  # taken once, before step 2 first ran


def test_a_workflow_whose_first_step_was_withdrawn_is_not_run_on_a_decision_older_than_its_ttl(
        tmp_path: Path) -> None:
    """The kill switch cannot be read before the first step (nothing has run) and the store
    stays unreadable for longer than decision_ttl_s. As for a single-step action, the action is
    back to PENDING, so when the store answers again it is cancelled as stale and the incident
    decided again; before, its steps ran on the old decision."""
    from autonomic.errors import StoreError

    h = _workflow_harness(tmp_path)
    real_paused, outage = h.engine.executor.paused, [True]

    def down(service: str) -> str | None:
        if outage:
            raise StoreError("store read failed: database is locked")
        return real_paused(service)

    h.engine.executor.paused = down  # type: ignore[method-assign]
    h.feed("up", 0, 4)
    (first,) = h.store.actions()
    assert first.state == ActionState.PENDING and h.actuator.calls == []
    phases = [s.detail.get("phase") for s in first.steps if s.detail.get("workflow")]
    assert phases[:2] == ["intent", "withdrawn"] and set(phases) == {"intent", "withdrawn"}  # at every retry
    outage.clear()
    h.clock.t += h.config.engine.decision_ttl_s + 60
    h.feed("up", 0, 4)
    first = h.store.get(type(first), first.id)  # type: ignore[assignment]
    assert first is not None and first.state == ActionState.CANCELLED and (first.error or "").startswith("stale")
    assert not any(key.startswith(first.idempotency_key) for _, _, key in h.actuator.calls)


def test_a_workflow_that_fails_verification_is_undone_step_by_step_in_reverse(tmp_path: Path) -> None:
    h = _workflow_harness(tmp_path)
    inc = _undone_fix_that_left_it_down(h)
    (action,) = h.store.actions()
    key = action.idempotency_key
    assert [c for c in h.actuator.calls if c[0] == "undo"] == [("undo", "svc", f"{key}:{i}") for i in (2, 1, 0)]
    assert action.state == ActionState.ROLLED_BACK
    assert h.store.get(Incident, inc.id).state == IncidentState.ROLLED_BACK  # type: ignore[union-attr]


def _left_pending(tmp_path: Path) -> tuple[Store, Any, float]:
    """An engine that decided and wrote the intent, then died before the action started."""
    store = Store(f"sqlite:///{tmp_path / 'db.sqlite'}")
    h = Harness(tmp_path, store=store)
    h.feed("up", 0, 3)
    (action,) = store.actions()
    store.record(action.model_copy(update={"state": ActionState.PENDING, "steps": action.steps[:1]}),
                 actor="test", event="test.crash", subject=action.id)
    inc = store.get(Incident, action.incident_id)
    assert inc is not None
    store.record(inc.model_copy(update={"state": IncidentState.ACTING, "closed_at": None, "resolution": None}),
                 actor="test", event="test.crash", subject=inc.id)
    return store, action, h.clock.now()


def test_after_a_short_restart_a_pending_action_runs_once_on_its_decision(tmp_path: Path) -> None:
    store, action, died_at = _left_pending(tmp_path)
    actuator = FakeActuator()
    h2 = Harness(tmp_path, store=store, actuator=actuator)
    h2.clock.t = died_at + 5
    h2.feed("up", 0, 1)
    assert store.get(type(action), action.id).state != ActionState.CANCELLED  # type: ignore[union-attr]
    assert [c for c, *_ in actuator.calls] == ["apply"]
    assert len(store.actions()) == 1


def test_a_pending_action_older_than_decision_ttl_is_not_run_and_the_incident_is_decided_again(
        tmp_path: Path) -> None:
    store, action, died_at = _left_pending(tmp_path)
    actuator = FakeActuator()
    h2 = Harness(tmp_path, store=store, actuator=actuator)
    h2.clock.t = died_at + h2.config.engine.decision_ttl_s + 60  # down for longer than the decision lives
    h2.feed("up", 0, 2)
    old = store.get(type(action), action.id)
    assert old is not None and old.state == ActionState.CANCELLED and "stale" in (old.error or "")
    actions = store.actions()
    assert len(actions) == 2  # a new decision, through every gate, and a new action from it
    new = next(a for a in actions if a.id != action.id)
    assert new.decision_id != action.decision_id
    assert len(store.decisions()) == 2  # (the old incident went quiet while down; a new one carries on)
    assert [c for c, *_ in actuator.calls] == ["apply"]  # exactly once, for the new decision


def test_a_pause_set_while_the_engine_was_down_holds_a_stale_pending_action(tmp_path: Path) -> None:
    store, action, died_at = _left_pending(tmp_path)
    store.set_state(pause_key("svc"), {"reason": "maintenance", "actor": "person:ops"}, actor="person:ops",
                    event="pause.set")
    actuator = FakeActuator()
    h2 = Harness(tmp_path, store=store, actuator=actuator)
    h2.clock.t = died_at + h2.config.engine.decision_ttl_s + 60
    h2.feed("up", 0, 5)
    assert actuator.calls == []
    assert store.get(type(action), action.id).state == ActionState.CANCELLED  # type: ignore[union-attr]
    latest = store.decisions()[-1]
    assert latest.id != action.decision_id and latest.verdict == Verdict.DENIED
    assert not {g.gate: g for g in latest.gates}["paused"].passed


def test_shadow_mode_runs_the_whole_decision_records_what_it_would_have_done_and_never_acts(
        tmp_path: Path) -> None:
    h = Harness(tmp_path, policy={"autonomy": "auto", "shadow": True})
    h.feed("up", 0, 4)
    inc = h.incident()
    (decision,) = h.store.decisions(inc.id)
    assert decision.verdict == Verdict.DENIED and decision.shadow_verdict == Verdict.APPROVED
    gates = {r.gate: r for r in decision.gates}
    assert gates["autonomy"].passed and not gates["shadow"].passed
    assert "would have run fake on svc" in gates["shadow"].reason
    assert h.actuator.calls == [] and h.store.actions() == []
    event = next(e for e in h.store.audit_events() if e.kind == "decision.denied")
    assert event.data["would_have"] == "approved" and event.data["action"]["type"] == "fake"
    assert any("would have run fake on svc" in n.body for n in h.notifier.sent)


def test_a_persons_denials_count_as_evidence_and_demote_the_pattern(tmp_path: Path) -> None:
    h = Harness(tmp_path, policy={"autonomy": "approve",
                                  "autonomy_ladder": {"enabled": True, "demote_failures": 2, "demote_window": 5}})
    for person in ("person:bo", "person:cy"):
        h.feed("up", 1, 40)  # quiet long enough for the last incident to close
        h.feed("up", 0, 4)
        inc = h.incident()
        assert inc.state == IncidentState.AWAITING_APPROVAL
        h.store.set_state(approval_key(inc.id), {"verdict": "deny", "actor": person, "comment": "not now"},
                          actor=person, event="approval.deny")
        h.feed("up", 0, 2)
    h.feed("up", 1, 40)
    h.feed("up", 0, 4)
    third = h.store.decisions(h.incident().id)[-1]
    assert third.verdict == Verdict.DENIED  # suggest: told, not asked
    autonomy = {r.gate: r for r in third.gates}["autonomy"]
    assert "suggest" in autonomy.reason and "demoted" in autonomy.reason
    demoted = [e for e in h.store.audit_events() if e.kind == "pattern.demoted"]
    assert len(demoted) == 1 and demoted[0].data["to"] == "suggest"
    assert h.actuator.calls == []


CHAIN = """
patterns:
  - id: fake-down-first
    match: {cause: down, kind: state}
    action: {type: fake, params: {op: fail}}
    prior_confidence: 0.95
    rollback_safe: true
    verify: {metric: up, min: 1, window_s: 10, delay_s: 3, min_samples: 3}
    then: [%(then)s]
  - id: fake-down-also-fails
    match: {cause: nothing-matches-this}
    action: {type: fake, params: {op: fail}}
    prior_confidence: 0.5
    verify: {metric: up, min: 1, window_s: 10, delay_s: 3, min_samples: 3}
"""


def _chain_harness(tmp_path: Path, then: str) -> Harness:
    pdir = tmp_path / "patterns"
    pdir.mkdir(exist_ok=True)
    (pdir / "chain.yaml").write_text(CHAIN % {"then": then})
    return Harness(tmp_path)


def test_an_escalation_chain_tries_the_next_pattern_on_the_same_incident_when_the_first_fails(
        tmp_path: Path) -> None:
    h = _chain_harness(tmp_path, then="fake-down-poke")
    h.feed("up", 0, 4)
    inc = h.incident()
    h.run_until(lambda: len(h.actuator.calls) == 2, "up", 0)  # still down: waits out the backoff, tries next
    h.run_until(lambda: h.store.get(Incident, inc.id).state == IncidentState.RESOLVED, "up", 1)  # type: ignore[union-attr]
    first, second = h.store.actions(incident_id=inc.id)
    assert (first.pattern_id, first.state) == ("fake-down-first", ActionState.FAILED)
    assert (second.pattern_id, second.state) == ("fake-down-poke", ActionState.SUCCEEDED)
    assert [c for c, *_ in h.actuator.calls] == ["apply", "apply"]
    # the second try was decided through every gate, on a diagnosis that says why
    decisions = h.store.decisions(inc.id)
    assert [d.verdict for d in decisions] == [Verdict.APPROVED, Verdict.APPROVED]
    assert "escalation chain" in h.store.diagnoses(inc.id)[-1].rationale
    assert [e.data["next"] for e in h.store.audit_events() if e.kind == "incident.escalation_step"] == [
        "fake-down-poke"]
    assert len(h.store.incidents(service="svc")) == 1


SLOW_CHAIN = """
patterns:
  - id: fake-down-first
    match: {cause: down, kind: state}
    action: {type: fake, params: {op: fail}}
    prior_confidence: 0.95
    verify: {metric: up, min: 1, window_s: 10, delay_s: 3, min_samples: 3}
    then: [fake-down-slow]
  - id: fake-down-slow
    match: {cause: nothing-matches-this}
    action: {type: fake, params: {op: poke}}
    prior_confidence: 0.9
    rollback_safe: true
    verify: {metric: load, max: 1, window_s: 10, delay_s: 20, min_samples: 3}
"""


def test_a_failure_whose_verification_outlasted_the_backoff_reset_time_still_counts_in_a_row(
        tmp_path: Path) -> None:
    """The chain's second remedy is decided a few seconds after the first failed, but its
    verification (20 s wait, 10 s window; the load it watches only grows) fails after
    backoff.reset_after_s (15 s): that is the target's second failure in a row, as the backoff's
    state in the store says (it read as a first failure, counted from when it was recorded, and
    the next attempt would have waited base_s only)."""
    pdir = tmp_path / "patterns"
    pdir.mkdir()
    (pdir / "chain.yaml").write_text(SLOW_CHAIN)
    h = Harness(tmp_path, policy={"backoff": {"base_s": 2, "cap_s": 8, "reset_after_s": 15}})

    def actions() -> list[Action]:
        return sorted(h.store.actions(), key=lambda a: a.created_at)

    for i in range(60):
        if len(actions()) == 2 and actions()[1].state in (ActionState.VERIFYING_UNDO, ActionState.ROLLED_BACK):
            break  # failed verification, undone: its failure is on the record
        h.source._samples.append(Sample("svc", "load", h.clock.now(), 2.0 + i))  # worse and worse
        h.feed("up", 0, 1)
    first, second = actions()
    assert (first.pattern_id, first.state) == ("fake-down-first", ActionState.FAILED)
    assert second.pattern_id == "fake-down-slow" and second.state == ActionState.VERIFYING_UNDO
    assert second.created_at - first.updated_at < 15 < second.updated_at - first.updated_at
    state = h.store.get_state("backoff:svc")
    assert state is not None and state["failures"] == 2


def test_when_the_escalation_chain_is_spent_a_person_is_paged(tmp_path: Path) -> None:
    h = _chain_harness(tmp_path, then="fake-down-also-fails")
    h.feed("up", 0, 16)
    inc = h.incident()
    assert [a.pattern_id for a in h.store.actions(incident_id=inc.id)] == ["fake-down-first", "fake-down-also-fails"]
    assert h.store.get(Incident, inc.id).state == IncidentState.ESCALATED  # type: ignore[union-attr]
    spent = [n for n in h.notifier.sent if "escalation chain spent" in n.title]
    assert len(spent) == 1 and spent[0].level == Level.ALERT
    assert "fake-down-first, fake-down-also-fails" in spent[0].body
    h.feed("up", 0, 5)
    assert len(h.store.actions()) == 2  # nothing more is tried on its own


CHAIN_TWICE = """
patterns:
  - id: first-origin
    match: {cause: down, kind: state}
    action: {type: fake, params: {op: fail}}
    prior_confidence: 1.0
    verify: {metric: up, min: 1, window_s: 10, delay_s: 3, min_samples: 3}
    then: [chained-fails]
  - id: second-origin
    match: {cause: down, kind: state}
    action: {type: fake, params: {op: fail}}
    prior_confidence: 0.95
    verify: {metric: up, min: 1, window_s: 10, delay_s: 3, min_samples: 3}
    then: [chained-fails]
  - id: chained-fails
    match: {cause: nothing-matches-this}
    action: {type: fake, params: {op: fail}}
    prior_confidence: 0.5
    verify: {metric: up, min: 1, window_s: 10, delay_s: 3, min_samples: 3}
"""


def test_an_escalation_chains_next_remedy_is_as_confident_as_its_record_on_the_service_allows(
        tmp_path: Path) -> None:
    """The chain's next remedy (chained-fails, prior 0.5; threshold 0.5, floor 0.3) failed on svc in
    the first outage (after first-origin, 0.87, failed). In the second, second-origin (0.82, no
    record) fails and the chain reaches chained-fails again: its confidence is its prior times its
    record factor there (0.5 x 0.67 = 0.33), below the threshold and above the floor, so a person
    is asked. Before, a chain step was decided at its bare prior whatever its record (0.50: run
    again on its own, outage after outage): a remedy that kept failing never fell under the
    threshold or the floor, and the confidence gate's reason named failures its figure ignored."""
    h = Harness(tmp_path, policy={"breaker": {"failures": 10}}, patterns=CHAIN_TWICE)
    h.feed("up", 0, 16)
    first = h.incident()
    assert [a.pattern_id for a in h.store.actions(incident_id=first.id)] == ["first-origin", "chained-fails"]
    second = _outage(h)
    assert second.id != first.id
    h.run_until(lambda: len(h.store.decisions(second.id)) == 2, "up", 0)
    step = h.store.decisions(second.id)[-1]
    assert (step.pattern_id, step.verdict) == ("chained-fails", Verdict.NEEDS_APPROVAL)
    assert next(g for g in step.gates if g.gate == "confidence").reason == (
        "confidence 0.33 below threshold 0.50 after 1 failed or rolled-back action of chained-fails on svc: "
        "a person may approve")
    assert h.store.diagnoses(second.id)[-1].confidence == 0.3333
    assert [a.pattern_id for a in h.store.actions(incident_id=second.id)] == ["second-origin"]


def test_an_answer_given_to_one_approval_request_does_not_approve_a_later_one(tmp_path: Path) -> None:
    """Two people approve at once: the engine acts on the first answer, and the second, written just
    after (its check that the incident awaited approval passed before the first was acted on), is
    left behind. The escalation chain's next remedy then asks for approval on the same incident:
    the stale answer, given to the first request, must not approve it."""
    pdir = tmp_path / "patterns"
    pdir.mkdir(exist_ok=True)
    (pdir / "chain.yaml").write_text(CHAIN % {"then": "fake-down-poke"})
    h = Harness(tmp_path, policy={"autonomy": "approve"})
    h.feed("up", 0, 4)
    inc = h.incident()
    first = h.store.decisions(inc.id)[-1]
    assert first.verdict == Verdict.NEEDS_APPROVAL
    for person in ("person:ann", "person:bo"):  # bo's answer lands after ann's was acted on
        h.store.set_state(approval_key(inc.id), {"verdict": "approve", "actor": person, "comment": "",
                                                 "decision": first.id}, actor=person, event="approval.approve")
        h.feed("up", 0, 1)
    h.run_until(lambda: h.store.decisions(inc.id)[-1].id != first.id
                and h.store.decisions(inc.id)[-1].verdict == Verdict.NEEDS_APPROVAL, "up", 0)
    h.feed("up", 0, 3)
    decisions = h.store.decisions(inc.id)
    assert [d.verdict for d in decisions] == [Verdict.NEEDS_APPROVAL, Verdict.APPROVED, Verdict.NEEDS_APPROVAL]
    assert h.store.get(Incident, inc.id).state == IncidentState.AWAITING_APPROVAL  # type: ignore[union-attr]
    assert [c for c, *_ in h.actuator.calls] == ["apply"]  # the second remedy waits for its own answer
    assert [e.data["decision"] for e in h.store.audit_events() if e.kind == "approval.stale"] == [first.id]


def test_a_secret_an_actuator_error_quotes_reaches_neither_the_store_the_audit_log_nor_a_notification(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An actuator whose own redaction missed a credential (a server quoting it back in an error):
    the action, its audit events and the notification about it show *** instead."""
    import json

    from autonomic.errors import TerminalActuatorError

    LEAKED = "s3cr3t-Pa55w0rd"

    class Leaky(FakeActuator):
        def apply(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
            raise TerminalActuatorError(f"admin API answered 401: token {LEAKED} is not valid")

    monkeypatch.setenv("AUTONOMIC_TEST_HMAC", LEAKED)
    h = Harness(tmp_path, actuator=Leaky(), extra={"api": {"webhook_hmac_env": "AUTONOMIC_TEST_HMAC"}})
    h.run_until(lambda: any(a.state.terminal for a in h.store.actions()), "up", 0)
    stored = json.dumps([a.model_dump(mode="json") for a in h.store.actions()])
    audited = json.dumps([e.data for e in h.store.audit_events()])
    sent = json.dumps([n.model_dump(mode="json") for n in h.notifier.sent])
    assert "is not valid" in stored and "is not valid" in audited and "is not valid" in sent
    assert LEAKED not in stored + audited + sent and "token ***" in stored + audited + sent
    assert h.store.verify_audit().ok



def test_an_answer_to_an_incident_that_closed_meanwhile_is_removed_not_polled_for_ever(tmp_path: Path) -> None:
    """A person answers while the incident expires or clears: the answer can never be acted on.
    It is removed (audited approval.stale) and nothing is applied."""
    h = Harness(tmp_path, policy={"autonomy": "approve"})
    h.feed("up", 0, 4)
    inc = h.incident()
    assert inc.state == IncidentState.AWAITING_APPROVAL
    closed = inc.model_copy(update={"state": IncidentState.EXPIRED, "closed_at": h.clock.now()})
    h.store.record(closed, actor="engine", event="incident.closed", subject=inc.id)
    h.store.set_state(approval_key(inc.id), {"verdict": "approve", "actor": "person:ann", "comment": "",
                                             "decision": h.store.decisions(inc.id)[-1].id},
                      actor="person:ann", event="approval.approve")
    h.feed("up", 1, 2)
    assert h.store.get_state(approval_key(inc.id)) is None
    stale = [e for e in h.store.audit_events() if e.kind == "approval.stale"]
    assert [(e.actor, e.data["incident"], e.data["reason"]) for e in stale] == [
        ("person:ann", inc.id, "the incident is closed")]
    assert h.actuator.calls == []

class GraphHarness(Harness):
    """web depends on api; both bound to the fake actuator. ``feed`` takes a value per service."""

    def __init__(self, tmp_path: Path, settle_s: float = 0, actuator: FakeActuator | None = None,
                 patterns: str = "") -> None:
        super().__init__(tmp_path, rollback=True, actuator=actuator, patterns=patterns)
        data = {
            "engine": {"interval_s": 1, "state_dir": str(tmp_path / "state2"), "host_metrics": False,
                       "settle_s": settle_s, "resolve_after_s": 30},
            "services": [{"name": "web", "depends_on": ["api"], "actuators": {"fake": {"name": "w"}},
                          "thresholds": {"down_after": 2, "sustain": 2}},
                         {"name": "api", "actuators": {"fake": {"name": "a"}},
                          "thresholds": {"down_after": 2, "sustain": 2}}],
            "patterns": [str(tmp_path / "patterns")],
            "builtin_patterns": False,
            "policy": {"autonomy": "auto", "confidence_threshold": 0.5},
        }
        self.engine.shutdown()
        self.config = load_config_data(data, source="test.yaml", base_dir=tmp_path, registry=self._registry)
        self.store = Store("sqlite://")
        self.engine = Engine(self.config, registry=self._registry, clock=self.clock, store=self.store,
                             notifiers=Dispatcher([(self.notifier, Level.INFO)], synchronous=True, dedup_s=0),
                             sources=[self.source])
        self.engine.start()

    def tick(self, **up: float) -> None:
        for service, value in up.items():
            self.source._samples.append(Sample(service, "up", self.clock.now(), value))
            self.source._samples.append(Sample(service, "latency_ms", self.clock.now(),
                                               20.0 + (self.clock.now() % 3) if value else 900.0))
        self.engine.tick()
        self.clock.advance(1.0)


def test_an_impacted_service_is_not_acted_on_when_its_dependency_explains_it(tmp_path: Path) -> None:
    """api goes down first, then web (which calls api): only api is restarted; web's decision
    is denied at the root_cause gate and names api."""
    h = GraphHarness(tmp_path)
    api_then_web_down(h)
    web = h.store.incidents(service="web")[0]
    api = h.store.incidents(service="api")[0]
    assert [a.service for a in h.store.actions()] == ["api"]
    diagnosis = h.store.diagnoses(web.id)[-1]
    assert diagnosis.impacted_by == ["api"] and diagnosis.rca and diagnosis.rca[0]["service"] == "api"
    (decision,) = h.store.decisions(web.id)
    gate = {g.gate: g for g in decision.gates}["root_cause"]
    assert decision.verdict == Verdict.DENIED and not gate.passed and "impacted by api" in gate.reason
    assert h.store.decisions(api.id)[0].verdict == Verdict.APPROVED
    text = render_text(explain_incident(h.store, web.id))
    assert "root cause ranking" in text and "api: root_cause" in text and "[FAIL] root_cause" in text


def test_a_callers_echo_of_a_dependency_just_fixed_waits_out_the_fix_and_is_not_acted_on(tmp_path: Path) -> None:
    """api goes down and is restarted at once; web (which calls api) fails for a few seconds
    after api is back, its errors lagging api's recovery, and then recovers. Only api is acted
    on: an incident on a service waits while an action on anything it depends on runs, verifies
    and settles, and web's clears on its own meanwhile. Before, web's incident was decided at
    once; root-cause ranking looks only at what is departing now, api was up again, so web was
    its own root cause and was acted on too (the soak found it: web's config reverted 2 s after
    api's restart, then rolled back)."""
    h = GraphHarness(tmp_path, settle_s=10)
    api_goes_down(h)
    for _ in range(3):  # api restarted; web's calls still failing
        h.tick(web=0, api=1)
    for _ in range(40):
        h.tick(web=1, api=1)
    assert [a.service for a in h.store.actions()] == ["api"]
    (web,) = h.store.incidents(service="web")
    assert web.closed_at is not None and web.resolution == Resolution.CLEARED
    assert h.store.decisions(web.id) == []


class Fleet(NamedTuple):
    """Services ``names`` bound to the fake actuator and a ``tick`` that feeds each its ``up``
    (a function of its name), ticks the engine and moves the clock on a second."""

    h: Harness
    tick: Callable[[Callable[[str], float]], None]


def _fleet(tmp_path: Path, names: Sequence[str], policy: dict[str, Any], group: str | None = None,
           engine: dict[str, Any] | None = None) -> Fleet:
    svcs = [{"name": n, "actuators": {"fake": {"name": "x"}}, "thresholds": {"down_after": 2, "sustain": 2},
             **({"group": group} if group else {})} for n in names]
    h = Harness(tmp_path, policy=policy, extra={"services": svcs, **({"engine": engine} if engine else {})})

    def tick(up: Callable[[str], float]) -> None:
        h.source._samples.extend(Sample(n, "up", h.clock.now(), up(n)) for n in names)
        h.engine.tick()
        h.clock.advance(1.0)

    return Fleet(h, tick)


def test_a_remedy_the_blast_radius_has_no_room_for_waits_its_turn_and_runs_once_a_slot_frees(
        tmp_path: Path) -> None:
    """Four services of one group (at most 50% in flight) go down in the same second: two are
    acted on, the other two wait (their diagnosis says why: ``waits`` for its ``turn``) and are
    acted on once the first two's actions have ended, the first batch verified (said once in the
    audit, ``incident.waiting``: they were diagnosed beside the first two). Before, the
    blast_radius gate denied them to a person, and a service that stayed down was never tried
    again."""
    names = ("a", "b", "c", "d")
    h, tick = _fleet(tmp_path, names, {"blast_radius": {"max_in_flight": 3, "max_group_percent": 50}}, group="web")
    for _ in range(3):
        tick(lambda n: 0.0)
    first = sorted(a.service for a in h.store.actions())
    assert len(first) == 2
    for _ in range(40):  # the first two are fixed; the others stay down until their turn
        tick(lambda n: 1.0 if n in first or any(a.service == n for a in h.store.actions()) else 0.0)
    later = [n for n in names if n not in first]
    for service in later:
        (inc,) = h.store.incidents(service=service)
        waits = [e.data["waits"] for e in h.store.audit_events()
                 if e.kind in ("incident.diagnosed", "incident.waiting") and e.subject == inc.id and "waits" in e.data]
        assert len(waits) == 1 and waits[0]["for"] == "turn" and waits[0]["on"] in first, waits  # told once
        assert waits[0]["why"] == "blast radius 2 of 4 in group web in flight (at most 2, 50%): waits its turn"
        assert [d.verdict for d in h.store.decisions(inc.id)] == [Verdict.APPROVED]  # never denied
    acted = {a.service: a for a in h.store.actions()}
    assert sorted(acted) == list(names) and all(acted[n].state == ActionState.SUCCEEDED for n in names)
    assert min(acted[n].created_at for n in later) >= max(acted[n].updated_at for n in first)


@pytest.mark.parametrize("denied_meanwhile", [False, True])
def test_a_remedy_a_person_approved_while_the_blast_radius_is_full_waits_its_turn_and_runs(
        tmp_path: Path, denied_meanwhile: bool) -> None:
    """Two services down, each remedy asked of a person (autonomy approve), at most one target in
    flight. The person approves a's, which runs; then b's while a's is still being verified: b's
    waits its turn, the approval kept past the request's expiry (given in time: approval_ttl_s is
    shorter than the wait), and runs once a's action has ended, through every gate. A denial given
    while it waits replaces the approval, as it does one the engine has not acted on: nothing runs
    on b. Before, the blast_radius gate denied the remedy the person had just approved and the
    incident went back to that person, escalated, b left down."""
    engine = {"interval_s": 1, "state_dir": str(tmp_path / "state"), "host_metrics": False, "settle_s": 0,
              "resolve_after_s": 30, "approval_ttl_s": 6}
    h, tick = _fleet(tmp_path, ("a", "b"), {"autonomy": "approve", "blast_radius": {"max_in_flight": 1}},
                     engine=engine)
    def answer(service: str, verdict: Literal["approve", "deny"]) -> Incident:
        (inc,) = h.store.incidents(service=service)
        return answer_approval(h.store, inc.id, verdict, actor="person:ann", comment="", now=h.clock.now(),
                               approval_ttl_s=6)

    for _ in range(3):
        tick(lambda n: 0.0)
    answer("a", "approve")
    tick(lambda n: 0.0)
    (action,) = h.store.actions()
    assert action.service == "a" and not action.state.terminal
    b = answer("b", "approve")
    for _ in range(8):  # a's action is still verifying: b waits its turn, its approval kept past the request's TTL
        tick(lambda n: 1.0 if n == "a" else 0.0)
        assert {x.service: x.state.terminal for x in h.store.actions()} == {"a": False}
    (asked,) = h.store.decisions(b.id)
    assert asked.verdict == Verdict.NEEDS_APPROVAL and asked.expires_at is not None
    assert asked.expires_at < h.clock.now() and h.store.get_state(approval_key(b.id)) is not None
    waits = [e.data["waits"] for e in h.store.audit_events() if e.kind == "incident.waiting" and e.subject == b.id]
    assert [(w["for"], w["on"]) for w in waits] == [("turn", "a")]  # said once
    if denied_meanwhile:
        answer("b", "deny")
    for _ in range(40):
        tick(lambda n: 1.0 if n == "a" or any(x.service == n for x in h.store.actions()) else 0.0)
    decisions = h.store.decisions(b.id)
    acted = {x.service: x for x in h.store.actions()}
    if denied_meanwhile:
        assert [d.verdict for d in decisions] == [Verdict.NEEDS_APPROVAL, Verdict.DENIED]
        assert sorted(acted) == ["a"]
        return
    assert [d.verdict for d in decisions] == [Verdict.NEEDS_APPROVAL, Verdict.APPROVED]
    assert decisions[-1].decided_by == "person:ann"
    assert sorted(acted) == ["a", "b"] and all(x.state == ActionState.SUCCEEDED for x in acted.values())
    assert acted["b"].created_at >= acted["a"].updated_at


def test_a_remedy_a_person_must_approve_is_asked_at_once_while_the_blast_radius_is_full(tmp_path: Path) -> None:
    """At most one target in flight, autonomy approve: a's remedy approved and running when b goes
    down. b's request is made at once (its blast_radius result passed, saying it waits its turn
    once approved), so a person can approve it ahead; approved, it runs once a's action ends.
    Before, b's incident waited for room without asking anyone, and only then asked."""
    engine = {"interval_s": 1, "state_dir": str(tmp_path / "state"), "host_metrics": False, "settle_s": 0,
              "resolve_after_s": 30, "approval_ttl_s": 600}
    h, tick = _fleet(tmp_path, ("a", "b"), {"autonomy": "approve", "blast_radius": {"max_in_flight": 1}},
                     engine=engine)
    for _ in range(3):
        tick(lambda n: 0.0 if n == "a" else 1.0)
    (a,) = h.store.incidents(service="a")
    answer_approval(h.store, a.id, "approve", actor="person:ann", comment="", now=h.clock.now(), approval_ttl_s=600)
    tick(lambda n: 0.0 if n == "a" else 1.0)
    for _ in range(3):
        tick(lambda n: 1.0 if n == "a" else 0.0)
    assert {x.service: x.state.terminal for x in h.store.actions()} == {"a": False}
    (b,) = h.store.incidents(service="b")
    (asked,) = h.store.decisions(b.id)
    assert asked.verdict == Verdict.NEEDS_APPROVAL
    room = {g.gate: g for g in asked.gates}["blast_radius"]
    assert room.passed and room.reason == ("no room now (limit reached: 1 of at most 1 target in flight): once "
                                           "approved, it waits its turn")
    answer_approval(h.store, b.id, "approve", actor="person:ann", comment="", now=h.clock.now(), approval_ttl_s=600)
    for _ in range(40):
        tick(lambda n: 1.0 if n == "a" or any(x.service == n for x in h.store.actions()) else 0.0)
    acted = {x.service: x for x in h.store.actions()}
    assert sorted(acted) == ["a", "b"] and acted["b"].created_at >= acted["a"].updated_at
    assert all(x.state == ActionState.SUCCEEDED for x in acted.values())


def test_a_remedy_waiting_its_turn_is_told_to_people_once(tmp_path: Path) -> None:
    """Three services down at once, at most one target in flight: one is acted on, the other two
    wait their turn, for as long as the actions before them take (in a mass outage, batch after
    batch). Each waiting one is told to people once, as information, when it starts waiting (the
    blast radius named); never again while it waits. Before, the wait was only in the audit log:
    where the blast_radius gate used to tell a person at once ("not acting"), nobody heard of a
    service left down until its turn came."""
    names = ("a", "b", "c")
    h, tick = _fleet(tmp_path, names, {"blast_radius": {"max_in_flight": 1}})
    for _ in range(3):
        tick(lambda n: 0.0)
    (first,) = [a.service for a in h.store.actions()]
    for _ in range(60):
        tick(lambda n: 1.0 if any(a.service == n for a in h.store.actions()) else 0.0)
    acted = {a.service: a for a in h.store.actions()}
    assert sorted(acted) == list(names) and all(a.state == ActionState.SUCCEEDED for a in acted.values())
    told = [n for n in h.notifier.sent if "waits its turn" in n.body]
    assert sorted(n.service for n in told) == sorted(set(names) - {first})  # once each
    assert all(n.level == Level.INFO and "blast radius 1 of at most 1 target in flight" in n.body for n in told)
    assert all(f"(on {first}, ...)" in n.body for n in told)  # the action waited on, to look at when it lasts


def test_a_wait_for_its_turn_told_before_a_restart_is_not_told_or_audited_again_by_the_next_engine(
        tmp_path: Path) -> None:
    """Three services down at once, at most one target in flight: two wait their turn, told once
    each (a notification, an ``incident.waiting`` or diagnosed-with-waits audit). The engine is
    killed and another started over the same store while they still wait: it tells nobody again
    and audits no new wait (before, what was told lived in the engine's memory: every restart told
    people again of every incident still waiting, and audited the wait again)."""
    names = ("a", "b", "c")
    h, tick = _fleet(tmp_path, names, {"blast_radius": {"max_in_flight": 1}})
    for _ in range(3):
        tick(lambda n: 0.0)
    (first,) = [a.service for a in h.store.actions()]

    def told() -> list[str]:
        return sorted(n.service for n in h.notifier.sent if "waits its turn" in n.body)

    def waits_audited() -> int:
        return sum(1 for e in h.store.audit_events()
                   if e.kind in ("incident.diagnosed", "incident.waiting") and "waits" in e.data)

    assert told() == sorted(set(names) - {first})
    audited = waits_audited()
    assert audited == 2
    # the first engine killed (its store is this in-memory one: kept), another started
    h.engine = Engine(h.config, registry=h._registry, clock=h.clock, store=h.store,
                      notifiers=Dispatcher([(h.notifier, Level.INFO)], synchronous=True, dedup_s=0),
                      sources=[h.source])
    h.engine.start()
    tick(lambda n: 1.0 if n == first else 0.0)  # the first's action still verifying: the others wait on
    tick(lambda n: 1.0 if n == first else 0.0)
    assert [a.service for a in h.store.actions()] == [first]  # still waiting, not acted on
    assert told() == sorted(set(names) - {first})  # not told again
    assert waits_audited() == audited


def api_goes_down(h: GraphHarness) -> None:
    """Two minutes of both healthy (the baseline root-cause ranking compares with), then api
    down for two ticks: its incident opens."""
    for _ in range(120):
        h.tick(web=1, api=1)
    h.tick(web=1, api=0)
    h.tick(web=1, api=0)


def api_then_web_down(h: GraphHarness) -> None:
    """api goes down first, then web (which calls api) too, for six ticks."""
    api_goes_down(h)
    for _ in range(6):
        h.tick(web=0, api=0)


def api_fixed_then_web_down(h: GraphHarness) -> None:
    """api goes down and is restarted; just after its action ends, web (which calls api) goes
    down for good: web's incident waits for api to settle, then is diagnosed again."""
    api_goes_down(h)
    for _ in range(40):
        h.tick(web=1, api=1)
        if any(a.state.terminal for a in h.store.actions(service="api")):
            break
    for _ in range(30):
        h.tick(web=0, api=1)


def test_a_diagnosis_whose_decision_waits_says_in_its_audit_entry_what_it_waits_for(tmp_path: Path) -> None:
    """api goes down and is restarted; just after its action ends, web (which calls api) goes down
    for good. web's incident is diagnosed at once but decided only after api's settle time (it may
    be an echo), then diagnosed again from what is true then, and acted on. The first
    ``incident.diagnosed`` entry says what it waits for (``waits``: api, settling, until when and
    why), the second has no wait. Before, the two entries were alike and nothing in the audit
    log said why the incident was diagnosed twice with nothing between (the demo's timeline
    showed exactly that)."""
    h = GraphHarness(tmp_path, settle_s=10)
    api_fixed_then_web_down(h)
    (fix,) = h.store.actions(service="api")
    assert fix.state == ActionState.SUCCEEDED
    (web,) = h.store.incidents(service="web")
    first, *later = [e for e in h.store.audit_events() if e.kind == "incident.diagnosed" and e.subject == web.id]
    waits = first.data["waits"]
    assert (waits["on"], waits["for"]) == ("api", "settling")
    assert waits["until"] == pytest.approx(fix.updated_at + 10, abs=0.01)
    assert waits["why"].startswith("api is settling after its action") and "engine.settle_s 10" in waits["why"]
    assert later and "waits" not in later[-1].data
    made = [d.ts for d in h.store.diagnoses(web.id)]
    assert made[0] < waits["until"] <= made[-1]
    assert [a.service for a in h.store.actions()] == ["api", "web"]


class UnitFake(FakeActuator):
    """The fake actuator, reading a unit's state as systemd's, Docker's and Kubernetes' do: the
    services in ``dead`` are seen dead (``unit_exit``)."""

    def __init__(self) -> None:
        super().__init__()
        self.dead: set[str] = set()

    def unit_exit(self, target: Target) -> str | None:
        return "unit w exited with code 3" if target.service in self.dead else None


CRASH_LOOP = """
id: fake-crash-loop
match:
  cause: down
  kind: state
  after_actions: {patterns: [fake-down-poke], count: 3, within_s: 1800}
prior_confidence: 0.9
"""


def test_a_caller_restarted_again_and_again_into_one_outage_of_its_dependency_is_handed_over_as_a_crash_loop(
        tmp_path: Path) -> None:
    """api goes down for good: its restart fails verification and it goes to a person (no fix is
    coming). web, which calls it, dies; it is restarted anyway (it is not held for ever), stays up
    a while, and dies again, over and over, while api is still down. Only its first death in
    api's outage is excused from crash-loop counting (the one the dependency's fix was awaited
    for); its restarts into the same outage count, and after three of them web is handed to a
    person. Before, every death while api was down was left out of the count, so web was
    restarted for ever, never handed over."""
    unit = UnitFake()
    h = GraphHarness(tmp_path, actuator=unit, patterns=CRASH_LOOP)
    for _ in range(120):
        h.tick(web=1, api=1)
    api: Incident | None = None
    for _ in range(60):  # api down for good: its restart is tried, fails verification, goes to a person
        h.tick(web=1, api=0)
        api = h.store.incidents(service="api")[0] if h.store.incidents(service="api") else None
        if api is not None and api.state.terminal:
            break
    assert api is not None and api.state == IncidentState.ROLLED_BACK and api.closed_at is None
    handed_over = None
    for _ in range(8):  # web dies; restarted, it stays up long enough to verify, then dies again
        unit.dead.add("web")
        before = len(h.store.actions(service="web"))
        for _ in range(30):
            h.tick(web=0, api=0)
            web = h.store.incidents(service="web")[0] if h.store.incidents(service="web") else None
            if len(h.store.actions(service="web")) > before or (web and web.state == IncidentState.ESCALATED):
                break
        if web is not None and web.state == IncidentState.ESCALATED:
            handed_over = web
            break
        unit.dead.discard("web")
        for _ in range(40):
            h.tick(web=1, api=0)
            if h.store.incidents(service="web")[0].state.terminal:
                break
        assert h.store.incidents(service="web")[0].state == IncidentState.RESOLVED
    assert handed_over is not None, "web was restarted again and again, never handed over"
    assert h.store.diagnoses(handed_over.id)[-1].pattern_id == "fake-crash-loop"
    assert len(h.store.actions(service="web")) == 4  # one excused, then three counted


def test_a_unit_state_read_while_diagnosing_is_a_step_the_liveness_watchdog_names(tmp_path: Path) -> None:
    """Reading whether a down service's unit is dead (``unit_exit``: systemd, Docker and
    Kubernetes reads of up to 5 s a request) is an actuator call made while diagnosing. The loop
    beats its watchdog before it, as the executor does before each actuator call, so a read that
    hangs is reported as what the loop is stuck in. Before, the watchdog still named the
    incident's step around it ("incident ...: its next step")."""

    class Watched(UnitFake):
        def __init__(self) -> None:
            super().__init__()
            self.doing: list[str] = []

        def unit_exit(self, target: Target) -> str | None:
            self.doing.append(h.engine.watchdog.doing)
            return super().unit_exit(target)

    unit = Watched()
    h = GraphHarness(tmp_path, actuator=unit)
    for _ in range(60):
        h.tick(web=1, api=1)
    unit.dead.add("web")
    for _ in range(6):
        h.tick(web=0, api=1)
    assert unit.doing, "web's unit was never read"
    assert set(unit.doing) == {"fake on web: reading whether its unit is dead (an actuator call)"}


def test_a_service_whose_dependencies_are_healthy_is_its_own_root_cause(tmp_path: Path) -> None:
    h = GraphHarness(tmp_path)
    for _ in range(120):
        h.tick(web=1, api=1)
    for _ in range(6):
        h.tick(web=0, api=1)
    web = h.store.incidents(service="web")[0]
    assert h.store.diagnoses(web.id)[-1].root_causes == ["web"]
    assert [a.service for a in h.store.actions()] == ["web"]
    gate = {g.gate: g for g in h.store.decisions(web.id)[0].gates}["root_cause"]
    assert gate.passed and "web" in gate.reason


def test_a_diagnosis_reads_as_one_sentence_with_its_root_cause_ranking(tmp_path: Path) -> None:
    """The ranking's note follows the pattern's rationale in one sentence, as the log line
    "incident ... diagnosed: ..." and `autonomic explain` show it. Before, it came after the
    rationale's full stop: "... (confidence 0.90).; root cause analysis names web"."""
    h = GraphHarness(tmp_path)
    for _ in range(120):
        h.tick(web=1, api=1)
    for _ in range(6):
        h.tick(web=0, api=1)
    web = h.store.incidents(service="web")[0]
    rationale = h.store.diagnoses(web.id)[-1].rationale
    assert rationale.endswith("; root cause analysis names web") and ".;" not in rationale, rationale


def test_a_new_incidents_diagnosis_and_denial_commit_together_or_not_at_all(tmp_path: Path) -> None:
    """Diagnose and decide run in one store unit: a failure while deciding leaves the incident
    OPEN with no diagnosis, no decision and nobody told; the next step does it all again."""
    h = Harness(tmp_path, policy={"autonomy": "observe"})
    real = h.engine._decide

    def decide_then_fail(*args: Any, **kwargs: Any) -> Any:
        real(*args, **kwargs)  # the denial is written (inside the unit) ...
        raise RuntimeError("... and then the step fails")

    h.engine._decide = decide_then_fail  # type: ignore[method-assign]
    h.feed("up", 0, 3)
    inc = h.incident()
    assert inc.state == IncidentState.OPEN
    assert h.store.diagnoses(inc.id) == [] and h.store.decisions(inc.id) == []
    assert not any(n.incident_id == inc.id for n in h.notifier.sent)
    h.engine._decide = real  # type: ignore[method-assign]
    h.feed("up", 0, 6)
    (decision,) = h.store.decisions(inc.id)
    assert decision.verdict == Verdict.DENIED and len(h.store.diagnoses(inc.id)) == 1
    kinds = [e.kind for e in h.store.audit_events(subject=inc.id)]
    assert kinds.index("incident.diagnosed") + 1 == kinds.index("decision.denied")
    assert any(n.incident_id == inc.id for n in h.notifier.sent)
    assert h.store.verify_audit().ok


def test_the_loop_keeps_collecting_and_acting_after_the_wall_clock_steps_back(tmp_path: Path) -> None:
    """NTP steps the host clock back an hour: the loop goes on collecting and detecting at its
    interval, so a service that goes down right after is acted on within seconds. Before, every
    schedule (the next collection, the next checkpoint, the work queue) stayed an hour ahead of
    the clock: for that hour nothing was collected, detected or done (0 incidents after 10 s
    down here), while /readyz still said ready (the last tick looked 'in the future')."""
    h = Harness(tmp_path)
    h.feed("up", 1, 3)
    ticks = h.engine.ticks
    h.clock.t -= 3600.0
    h.feed("up", 0, 10)
    assert h.engine.ticks == ticks + 10
    inc = h.incident()
    assert inc.cause == "down" and inc.opened_at < T0
    assert [c for c, *_ in h.actuator.calls] == ["apply"]


def test_work_queued_before_the_wall_clock_stepped_back_is_looked_at_again_at_once(tmp_path: Path) -> None:
    """An item the queue was to look at in 2 s is not put off by an hour when the clock steps back
    an hour: after the step every queued item is reconciled once (each re-reads the store and says
    when it is next due, as after a restart). Before, it waited 3,602 s."""
    h = Harness(tmp_path)
    h.feed("up", 1, 2)
    key = ("incident", "some-id")
    h.engine.queue.add(key, h.clock.now() + 2.0)
    seen: list[float] = []
    h.engine.reconcile_incident = lambda item_id: seen.append(h.clock.now())  # type: ignore[method-assign]
    h.clock.t -= 3600.0
    h.feed("up", 1, 1)
    assert seen == [T0 + 2.0 - 3600.0]


def test_a_wall_clock_set_back_does_not_stretch_a_services_start_grace(tmp_path: Path) -> None:
    """The start grace (a failing probe of a live process just (re)started is the service still
    starting, not 'down') is 10 s after the process started. The clock stepping back an hour just
    after a start (a machine that booted with its clock an hour ahead, then NTP) must not make
    it an hour: before, every failing probe of that service was dropped for 3,610 s."""
    from autonomic.execute.supervisor import ProcessBinding

    h = Harness(tmp_path)
    h.config.bindings["svc"]["process"] = ProcessBinding(command=["svc"], start_grace_s=10)  # type: ignore[index]
    started = h.clock.now()
    h.engine.supervisor.identity = lambda service: (4242, started)  # type: ignore[method-assign]
    assert h.engine.starting("svc", started + 5)
    assert not h.engine.starting("svc", started + 10)
    h.clock.t = started + 20 - 3600.0
    assert not h.engine.starting("svc", h.clock.now())
    probe = Finding(service="svc", metric="probe_ok", kind=FindingKind.STATE, cause="down",
                    severity=Severity.CRITICAL, confidence=0.95, ts=h.clock.now(), summary="svc probe fails")
    assert h.engine.ingest(probe, h.clock.now()) is not None


def test_a_scheduled_report_sent_late_covers_the_period_that_ended_at_its_fire_time(tmp_path: Path) -> None:
    """The engine was down when the daily 08:00 report fell due and sends it at 11:00: the report
    is the day up to 08:00, so consecutive reports tile the days. Before, it was the 24 h up to
    11:00: 08:00-11:00 of the day before was in no report, and 08:00-11:00 today in two."""
    h = Harness(tmp_path, extra={"reports": [{"period": "daily", "cron": "0 8 * * *"}]})
    h.feed("up", 1, 2)  # T0 is 2023-11-14 22:13 UTC; the schedule is first seen now
    assert not [n for n in h.notifier.sent if "report" in n.title]
    h.clock.t = 1_700_035_200.0 + 3 * 3600  # 2023-11-15 08:00 UTC, and three hours
    h.feed("up", 1, 2)
    (report,) = [n for n in h.notifier.sent if "report" in n.title]
    assert report.title == "autonomic daily report, 2023-11-14 08:00 UTC to 2023-11-15 08:00 UTC"
    h.feed("up", 1, 2)
    assert len([n for n in h.notifier.sent if "report" in n.title]) == 1


def test_the_loop_outlives_a_store_that_refuses_writes_and_keeps_the_findings_for_after(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The store refuses every write for five ticks (a stand-in for SQLite's "database is locked"
    past busy_timeout, or a PostgreSQL server restarting: Store.record raises StoreError). Before,
    the StoreError left tick() and run() shut the engine down. Now each tick logs it and goes on,
    the findings not stored (here a webhook's alert, which no detector would find again) are kept
    and ingested when the store answers, and the engine does not count as having ticked meanwhile."""
    from autonomic.errors import StoreError

    h = Harness(tmp_path)
    h.feed("up", 1, 3)
    ticked = h.engine.last_tick_at
    real = h.store.record

    def locked(*args: Any, **kwargs: Any) -> Any:
        raise StoreError("store write failed: database is locked")

    monkeypatch.setattr(h.store, "record", locked)
    alert = Finding(service="svc", metric="alert:DiskFull", kind=FindingKind.ALERT, cause="disk",
                    severity=Severity.CRITICAL, confidence=0.9, ts=h.clock.now(), summary="DiskFull firing")
    h.engine.submit([alert])
    h.feed("up", 0, 5)  # down, and nothing can be stored
    assert h.engine.last_tick_at == ticked
    monkeypatch.setattr(h.store, "record", real)
    h.feed("up", 0, 2)
    assert h.engine.last_tick_at == h.clock.now() - 1.0
    causes = {i.cause for i in h.store.incidents(service="svc")}
    assert causes == {"down", "disk"}
    assert [c for c, *_ in h.actuator.calls] == ["apply"]
    assert h.store.verify_audit().ok


def _alert(h: Harness, name: str, service: str = "svc") -> Finding:
    return Finding(service=service, metric=f"alert:{name}", kind=FindingKind.ALERT, cause="disk",
                   severity=Severity.CRITICAL, confidence=0.9, ts=h.clock.now(), summary=f"{name} firing")


def test_a_finding_the_store_can_never_hold_is_dropped_and_the_loop_goes_on(tmp_path: Path) -> None:
    """A webhook alert whose service label holds a NUL character: the store refuses it for good
    (StoreValueError). Before, it was kept as if the store were down and retried first every
    tick, so nothing after it was ever ingested and the engine never ticked again."""
    h = Harness(tmp_path)
    h.feed("up", 1, 2)
    h.engine.submit([_alert(h, "Evil", service="svc\x00"), _alert(h, "DiskFull")])
    h.feed("up", 0, 4)
    assert {i.cause for i in h.store.incidents(service="svc")} == {"down", "disk"}
    assert h.engine.last_tick_at == h.clock.now() - 1.0
    assert [c for c, *_ in h.actuator.calls] == ["apply"]


def test_a_finding_with_half_an_emoji_is_dropped_and_the_loop_goes_on(tmp_path: Path) -> None:
    """An alert whose summary ends in an unpaired surrogate (a relay cut an emoji in half): the
    store can never hold it. Before, it was kept as if the store were down and retried first
    every tick, so no other finding was ingested and the engine never ticked again."""
    h = Harness(tmp_path)
    h.feed("up", 1, 2)
    cut = _alert(h, "Evil").model_copy(update={"summary": "disk full \ud83d"})
    h.engine.submit([cut, _alert(h, "DiskFull")])
    h.feed("up", 0, 4)
    assert {i.cause for i in h.store.incidents(service="svc")} == {"down", "disk"}
    assert h.engine.last_tick_at == h.clock.now() - 1.0
    assert h.store.verify_audit().ok


def test_a_finding_joining_an_incident_is_stored_after_a_refused_write(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A second alert joins the open disk incident while the store refuses writes. Before, the
    engine marked it seen before the write, so its retry counted as a repeat and it was never
    stored (diagnosis never saw it)."""
    from autonomic.errors import StoreError

    h = Harness(tmp_path, policy={"autonomy": "observe"})
    h.engine.submit([_alert(h, "A")])
    h.feed("up", 1, 2)
    (inc,) = h.store.incidents(service="svc")
    real = h.store.record

    def locked(*args: Any, **kwargs: Any) -> Any:
        raise StoreError("store write failed: database is locked")

    monkeypatch.setattr(h.store, "record", locked)
    h.engine.submit([_alert(h, "B")])
    h.feed("up", 1, 2)
    monkeypatch.setattr(h.store, "record", real)
    h.feed("up", 1, 2)
    assert {f.metric for f in h.store.findings(incident_id=inc.id)} == {"alert:A", "alert:B"}


def test_a_due_report_is_sent_once_when_the_store_refused_to_record_it_for_a_while(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The daily report falls due while the store refuses writes. Before, the report was sent,
    its last run could not be stored, and it was sent again every tick (5 ticks, 5 reports)."""
    from autonomic.errors import StoreError

    h = Harness(tmp_path, extra={"reports": [{"period": "daily", "cron": "0 8 * * *"}]})
    h.feed("up", 1, 2)
    real = h.store.set_state

    def locked(*args: Any, **kwargs: Any) -> Any:
        raise StoreError("store write failed: database is locked")

    monkeypatch.setattr(h.store, "set_state", locked)
    h.clock.t = 1_700_035_200.0 + 60  # 2023-11-15 08:01 UTC
    h.feed("up", 1, 5)
    assert [n for n in h.notifier.sent if "report" in n.title] == []
    monkeypatch.setattr(h.store, "set_state", real)
    h.feed("up", 1, 5)
    assert len([n for n in h.notifier.sent if "report" in n.title]) == 1



def test_a_due_report_the_store_could_not_be_read_for_is_sent_once_it_can(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The daily report falls due while the store refuses reads (a PostgreSQL server restarting).
    Before, its last run was stored first and then the report could not be built: logged, and
    that day's report was never sent. Now nothing is stored until it is built, and it is sent
    once the store answers, once."""
    from autonomic.errors import StoreError

    h = Harness(tmp_path, extra={"reports": [{"period": "daily", "cron": "0 8 * * *"}]})
    h.feed("up", 1, 2)
    real = h.store.incidents

    def down(*args: Any, **kwargs: Any) -> Any:  # the report's read (of the incidents open in its window)
        if "open_since" in kwargs:
            raise StoreError("store read failed: connection refused")
        return real(*args, **kwargs)

    monkeypatch.setattr(h.store, "incidents", down)
    h.clock.t = 1_700_035_200.0 + 60  # 2023-11-15 08:01 UTC
    h.feed("up", 1, 3)
    assert [n for n in h.notifier.sent if "report" in n.title] == []
    monkeypatch.setattr(h.store, "incidents", real)
    h.feed("up", 1, 3)
    reports = [n.title for n in h.notifier.sent if "report" in n.title]
    assert reports == ["autonomic daily report, 2023-11-14 08:00 UTC to 2023-11-15 08:00 UTC"]


def test_a_due_reports_last_run_is_stored_with_its_outbox_entry_or_not_at_all(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The daily report falls due and its outbox write is refused (the store fails between the
    last run's write and the report's). Before, the last run was stored in a write of its own and
    the report, not kept, was sent from memory only: an engine that died then lost that day's
    report for good (the next one saw it sent). Now both are one unit: nothing is stored, nothing
    sent, and the report goes out at the next tick, kept in the outbox, once."""
    from autonomic.errors import StoreError

    h = Harness(tmp_path, extra={"reports": [{"period": "daily", "cron": "0 8 * * *"}]})
    h.feed("up", 1, 2)
    real = h.store.keep_states

    def refused(states: Any, *args: Any, **kwargs: Any) -> Any:
        if any(k.startswith("outbox:") for k in states):
            raise StoreError("store write failed: database is locked")
        return real(states, *args, **kwargs)

    monkeypatch.setattr(h.store, "keep_states", refused)
    h.clock.t = 1_700_035_200.0 + 60  # 2023-11-15 08:01 UTC
    before = h.store.get_state("report:last_run")
    h.feed("up", 1, 1)
    assert [n for n in h.notifier.sent if "report" in n.title] == []
    assert h.store.get_state("report:last_run") == before  # rolled back with the outbox write
    monkeypatch.setattr(h.store, "keep_states", real)
    h.feed("up", 1, 3)
    reports = [n.title for n in h.notifier.sent if "report" in n.title]
    assert reports == ["autonomic daily report, 2023-11-14 08:00 UTC to 2023-11-15 08:00 UTC"]


def test_shutdown_finishes_when_the_store_refuses_its_last_audit_entry(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Stopping with the store gone (before: the StoreError of engine.stopped ended shutdown
    there, and the services were not stopped nor the notifiers flushed)."""
    from autonomic.errors import StoreError

    h = Harness(tmp_path)
    h.feed("up", 1, 2)
    closed: list[bool] = []
    monkeypatch.setattr(h.engine.notifiers, "close", lambda timeout=None: closed.append(True))

    def gone(*args: Any, **kwargs: Any) -> Any:
        raise StoreError("store write failed: server closed the connection unexpectedly")

    monkeypatch.setattr(h.store, "audit", gone)
    h.engine.shutdown()
    assert closed == [True]


# --- the kill switch at every actuator call ------------------------------------------------


def _pause(store: Store, service: str | None = None) -> None:
    store.set_state(pause_key(service), {"reason": "hands off", "actor": "person:ops"}, actor="person:ops",
                    event="pause.set")


@pytest.mark.parametrize("took_effect", [False, True])
def test_after_a_restart_a_pause_set_while_down_stops_a_running_action_before_the_actuator(
        tmp_path: Path, took_effect: bool) -> None:
    """An action left RUNNING by a crash, with a pause set while the engine was down, is not
    applied on restart (neither for the first time nor "finished idempotently").

    Before: ``_recover_running`` called the actuator's apply without asking the kill switch, so a
    restart ran (or re-ran) the action during a pause. After: the pause is checked right before;
    an action that never took effect is cancelled, one that had is handed to a person."""
    store, h, action = _crashed_while_running(tmp_path)
    _pause(store, "svc")
    actuator = FakeActuator()
    if took_effect:
        actuator.applied_keys.add(action.idempotency_key)
    h2 = Harness(tmp_path, store=store, actuator=actuator)
    h2.clock.t = h.clock.now()
    h2.feed("up", 0, 5)
    assert [c for c, *_ in actuator.calls if c != "applied"] == []
    done = store.get(type(action), action.id)
    assert done is not None
    assert done.state == (ActionState.ESCALATED if took_effect else ActionState.CANCELLED)
    assert "paused" in (done.error or "")
    assert any(n.level == Level.ALERT and "paused" in n.body for n in h2.notifier.sent)


def test_a_pause_set_during_a_failed_attempt_stops_the_retries(tmp_path: Path) -> None:
    """A retryable failure is retried only while automation is not paused.

    Before: ``Executor._call`` retried up to twice (sleeping between attempts) without asking the
    kill switch again, so a pause set during the first attempt did not stop the second and third.
    After: the pause is checked before each retry; the action fails with the pause as its reason."""
    from autonomic.errors import RetryableActuatorError

    class Flaky(FakeActuator):
        def apply(self, target: Any, params: Any, key: str, snapshot: Any) -> dict[str, Any]:
            self.calls.append(("apply", target.service, key))
            _pause(h.store)  # a person pauses while this attempt is under way
            raise RetryableActuatorError("timed out")

    h = Harness(tmp_path, actuator=Flaky())
    h.feed("up", 0, 4)
    assert [c for c, *_ in h.actuator.calls] == ["apply"]
    (action,) = h.store.actions()
    assert action.state == ActionState.FAILED and "paused" in (action.error or "")


@pytest.mark.parametrize("retryable", [False, True])
def test_an_undo_snapshot_that_cannot_be_taken_fails_the_action_once_and_tells_a_person(
        tmp_path: Path, retryable: bool) -> None:
    """The snapshot taken before acting (a config actuator's ``git rev-parse HEAD`` in a repository
    with no commits, a key the file lacks) fails: nothing ran, and the action is FAILED with the
    snapshot's error, the incident escalated and a person alerted, once; a retryable error is
    retried as an apply's is, first. Before: the error escaped ``prepare``, the incident stayed
    diagnosed and was decided again at every tick, a new approved decision and a failed snapshot
    each time, forever, with nothing but a log line."""
    from autonomic.errors import RetryableActuatorError, TerminalActuatorError

    class NoSnapshot(FakeActuator):
        def snapshot(self, target: Any, params: Any) -> dict[str, Any]:
            self.calls.append(("snapshot", target.service, ""))
            error = RetryableActuatorError if retryable else TerminalActuatorError
            raise error("git rev-parse HEAD in /srv/cfg failed (128): fatal: ambiguous argument 'HEAD'")

    h = Harness(tmp_path, actuator=NoSnapshot())
    h.feed("up", 0, 20)
    inc = h.incident()
    assert [c for c, *_ in h.actuator.calls] == ["snapshot"] * (3 if retryable else 1)  # never applied
    assert len(h.store.decisions(inc.id)) == 1
    (action,) = h.store.actions()
    assert action.state == ActionState.FAILED
    assert action.error is not None and action.error.startswith("snapshot failed, nothing was done: git rev-parse")
    assert inc.state == IncidentState.ESCALATED and inc.resolution == Resolution.FAILED
    (alert,) = [n for n in h.notifier.sent if n.level == Level.ALERT]
    assert "snapshot failed" in alert.body and "ambiguous argument 'HEAD'" in alert.body


def test_a_pause_holds_the_rollback_of_a_fix_that_failed_verification_and_a_person_is_told(
        tmp_path: Path) -> None:
    """A fix that made things worse is not undone while automation is paused: the undo is an
    actuator call like any other. The action is escalated naming the pause, the change stays in
    place, a person is alerted, and no breaker opens (nothing failed to undo).

    Before: ``Executor._rollback`` called the actuator's undo without asking the kill switch.
    After: the pause is checked right before the undo (see "pauses and undo" in README)."""
    h = Harness(tmp_path)
    h.feed("up", 1, 2)
    h.feed("up", 0, 3)
    inc = h.incident()
    _healthy_baseline(h)
    _pause(h.store)  # after the fix ran, before its verification ends
    h.run_until(lambda: h.store.get(Incident, inc.id).state.terminal, "up", 0)  # type: ignore[union-attr]
    assert [c for c, *_ in h.actuator.calls] == ["apply"]
    (action,) = h.store.actions()
    assert action.state == ActionState.ESCALATED
    assert "not undone" in (action.error or "") and "paused" in (action.error or "")
    done = h.store.get(Incident, inc.id)
    assert done is not None and done.state == IncidentState.ESCALATED and done.resolution == Resolution.FAILED
    (outcome,) = h.store.outcomes(incident_id=inc.id)
    assert outcome.verdict == "fail" and not outcome.rolled_back
    assert (h.store.get_state("breaker:global") or {}).get("state") != "open"
    assert any(n.level == Level.ALERT and "not undone" in n.body for n in h.notifier.sent)



def test_explain_shows_the_undo_snapshot_of_a_fix_a_pause_left_in_place(tmp_path: Path) -> None:
    """The README: whoever paused has taken over, and the undo of a fix the pause held is theirs
    to run ("autonomic explain shows the undo snapshot"). The text showed the action's params and
    steps but not its snapshot (only --json had it); now the action says the undo did not run and
    gives the snapshot to undo it by."""
    h = Harness(tmp_path)
    h.feed("up", 1, 2)
    h.feed("up", 0, 3)
    inc = h.incident()
    _healthy_baseline(h)
    _pause(h.store)
    h.run_until(lambda: h.store.get(Incident, inc.id).state.terminal, "up", 0)  # type: ignore[union-attr]
    (action,) = h.store.actions()
    assert action.state == ActionState.ESCALATED and action.undo
    text = render_text(explain_incident(h.store, inc.id))
    assert f"    not undone; its undo snapshot: {json.dumps(action.undo)}" in text, text.split("Actions:")[1]


def test_explain_shows_an_actuators_warning_whole_on_a_line_of_its_own(tmp_path: Path) -> None:
    """A step's detail is cut at 160 characters; a warning for a person in it (the config actuator's
    "committed on a detached HEAD ...") is shown whole, after the step, not cut off behind it."""

    class Warns(FakeActuator):
        def apply(self, target: Target, params: BaseModel, key: str, snapshot: Mapping[str, Any]) -> dict[str, Any]:
            return {**super().apply(target, params, key, snapshot), "file": "x" * 200,
                    "warning": "committed on a detached HEAD (no branch): checking out a branch there drops it"}

    h = Harness(tmp_path, actuator=Warns())
    h.feed("up", 1, 2)
    h.feed("up", 0, 3)
    inc = h.incident()
    h.run_until(lambda: bool(h.store.actions()), "up", 1)
    text = render_text(explain_incident(h.store, inc.id))
    assert "      warning: committed on a detached HEAD (no branch): checking out a branch there drops it" in text, text


def test_a_pause_holds_the_compensation_of_a_workflow_that_failed_verification(tmp_path: Path) -> None:
    """The same for a workflow: no step is compensated during a pause; a person is told.

    Before: every step was compensated during the pause. After: none is."""
    h = _workflow_harness(tmp_path)
    h.feed("up", 1, 2)
    h.feed("up", 0, 3)
    inc = h.incident()
    _healthy_baseline(h)
    _pause(h.store, "svc")
    h.run_until(lambda: h.store.get(Incident, inc.id).state.terminal, "up", 0)  # type: ignore[union-attr]
    assert [c for c, *_ in h.actuator.calls if c == "undo"] == []
    (action,) = h.store.actions()
    assert action.state == ActionState.ESCALATED and "not undone" in (action.error or "")
    assert (h.store.get_state("breaker:global") or {}).get("state") != "open"
    assert not any("FAILED" in n.title for n in h.notifier.sent)


def test_after_a_pause_is_lifted_nothing_held_back_is_undone_behind_a_persons_back(tmp_path: Path) -> None:
    """An undo held by a pause is not run later when the pause is lifted: the action was handed
    to a person, who decides (the world may have changed meanwhile)."""
    h = Harness(tmp_path)
    h.feed("up", 1, 2)
    h.feed("up", 0, 3)
    inc = h.incident()
    _healthy_baseline(h)
    _pause(h.store)
    h.run_until(lambda: h.store.get(Incident, inc.id).state.terminal, "up", 0)  # type: ignore[union-attr]
    h.store.set_state(pause_key(None), None, actor="person:ops", event="pause.lifted")
    h.feed("up", 1, 20)
    assert [c for c, *_ in h.actuator.calls] == ["apply"]


def _per_incident_memory(engine: Engine) -> dict[str, int]:
    return {"open": len(engine._open), "unclosed": len(engine._incidents), "last_seen": len(engine._last_seen),
            "last_persist": len(engine._last_persist), "pending_repeats": len(engine._pending_repeats),
            "seen_signatures": len(engine._seen_signatures), "queue": len(engine.queue)}


def test_the_engine_forgets_every_incident_it_closed_so_memory_stays_flat_over_many_incidents(
        tmp_path: Path) -> None:
    """Twelve outages, each acted on, verified and resolved (the executor closes the incident),
    then quiet: the engine's per-incident memory is empty again. Before this was fixed, an
    incident the executor resolved was forgotten only if the sweep found it quiet (and closed it
    a second time) before the same trouble came back; with outages recurring within
    resolve_after_s it stayed in _last_seen, _last_persist, _seen_signatures (11 entries each
    here after 12 incidents) and _pending_repeats (9) for the life of the process."""
    h = Harness(tmp_path, policy={"rate_limits": {"per_day": 100, "per_week": 100, "per_service_day": 100,
                                                   "per_service_week": 100}})
    for _ in range(12):
        h.feed("up", 1, 5)
        h.feed("up", 0, 4)
        h.feed("up", 1, 20)
    h.feed("up", 1, 40)
    incidents = h.store.incidents(limit=100)
    assert len(incidents) == 12
    assert all(i.closed_at is not None and i.state == IncidentState.RESOLVED for i in incidents)
    assert _per_incident_memory(h.engine) == {k: 0 for k in _per_incident_memory(h.engine)}


def test_the_engine_forgets_a_service_with_no_unclosed_incident_so_churning_alert_services_stay_flat(
        tmp_path: Path) -> None:
    """Alertmanager alerts name services the config does not know (an ``instance`` host, a pod
    name that changes with every deploy); each gets an incident that later goes quiet and is
    closed. The engine's index of unclosed incidents per service then holds nothing for them.
    Before, it kept an empty set per service name ever seen, for the life of the process
    (40 here)."""
    h = Harness(tmp_path, policy={"autonomy": "observe"})
    for i in range(40):
        h.engine.submit([_alert(h, "DiskFull", service=f"pod-{i}")])
        h.feed("up", 1, 1)
    h.feed("up", 1, 40)  # quiet past resolve_after_s: every alert incident is closed
    assert all(i.closed_at is not None for i in h.store.incidents(limit=100))
    assert len(h.store.incidents(limit=100)) == 40
    assert not any(name.startswith("pod-") for name in h.engine._unclosed_on)


def test_an_incident_closed_while_it_awaits_approval_leaves_nothing_queued(tmp_path: Path) -> None:
    """Twelve outages, each waiting for a person who never answers, each closed once it has been
    quiet for resolve_after_s: the work queue is empty again. Before, each closed incident stayed
    queued until its approval would have expired (approval_ttl_s, an hour), so the queue grew
    with every unanswered request made in the last hour (12 here)."""
    h = Harness(tmp_path, policy={"autonomy": "approve"})
    for _ in range(12):
        h.feed("up", 1, 5)
        h.feed("up", 0, 4)
        h.feed("up", 1, 35)
    incidents = h.store.incidents(limit=100)
    assert len(incidents) == 12 and all(i.closed_at is not None for i in incidents)
    assert all(h.store.decisions(i.id)[-1].verdict == Verdict.NEEDS_APPROVAL for i in incidents)
    assert len(h.engine.queue) == 0


def test_a_resolved_incident_keeps_the_time_it_was_resolved_and_is_closed_once(tmp_path: Path) -> None:
    """The executor closes an incident when its action is verified; the quiet-time sweep must not
    close it a second time (which moved closed_at, and with it the report's time to resolve,
    later by the quiet time and wrote a second incident.closed event)."""
    h = Harness(tmp_path)
    h.feed("up", 1, 3)
    h.feed("up", 0, 3)
    inc = h.incident()
    h.run_until(lambda: h.store.get(Incident, inc.id).closed_at is not None, "up", 1)  # type: ignore[union-attr]
    resolved = h.store.get(Incident, inc.id)
    assert resolved is not None
    h.feed("up", 1, 60)
    assert h.store.get(Incident, inc.id) == resolved
    assert [e.kind for e in h.store.audit_events(subject=inc.id) if e.kind == "incident.closed"] == []


def test_each_collection_rotates_a_supervised_services_log_that_is_over_its_limit(tmp_path: Path) -> None:
    from autonomic.execute.supervisor import ProcessBinding

    h = Harness(tmp_path)
    h.engine.supervisor.add("svc", ProcessBinding(command=["true"], log_max_bytes=1024, log_backups=1))
    log = h.engine.supervisor.log_path("svc")
    log.write_bytes(b"x" * 4096)
    h.feed("up", 1, 1)
    assert log.stat().st_size == 0 and log.with_name("svc.log.1").stat().st_size == 4096


def _verified_fixes(store: Store, n: int) -> None:
    """``n`` actions of fake-down-poke on svc, each verified (a pass), a second apart, ending before T0."""
    from autonomic.model import Action, Outcome, VerifyVerdict

    for i in range(n):
        inc = Incident(service="svc", cause="down", severity=Severity.CRITICAL, kind=FindingKind.STATE,
                       opened_at=T0 - 1000 + i, updated_at=T0 - 1000 + i, last_finding_at=T0 - 1000 + i,
                       summary="down", state=IncidentState.RESOLVED, closed_at=T0 - 999 + i)
        act = Action(decision_id=f"d{i}", incident_id=inc.id, service="svc", type="fake", params={},
                     idempotency_key=f"k{i}", state=ActionState.SUCCEEDED, pattern_id="fake-down-poke",
                     created_at=T0 - 1000 + i, updated_at=T0 - 999 + i)
        out = Outcome(action_id=act.id, incident_id=inc.id, ts=T0 - 999 + i, verdict=VerifyVerdict.PASS,
                      reason="up again")
        store.record(inc, act, out, actor="engine", event="action.verified", subject=act.id)


def test_the_autonomy_ladder_reads_a_patterns_record_in_two_statements_whatever_its_length(
        tmp_path: Path) -> None:
    """With the ladder on, every decision weighs the pattern's record on the service. Before, that
    was one query for the service's actions plus one per action for its outcomes plus every
    approved or denied decision of every service (42 statements here; 443 and 1.9 s a decision
    after a few thousand actions); now it is two, however long the record."""
    from sqlalchemy import event

    h = Harness(tmp_path, policy={"autonomy": "suggest", "autonomy_ladder": {"enabled": True}})
    _verified_fixes(h.store, 40)
    statements: list[str] = []
    event.listen(h.store._engine, "before_cursor_execute", lambda *a: statements.append(a[2]))
    policy = h.config.spec.policy
    earned = h.engine._earned(policy.effective("fake", "fake-down-poke", "svc"), policy, "fake-down-poke", "svc", T0)
    assert earned.autonomy == Autonomy.APPROVE and "promoted" in earned.autonomy_from
    record = [s for s in statements if any(f"FROM {t}" in s for t in ("actions", "outcomes", "decisions"))]
    assert len(record) == 2  # (and one more read: the level stored for the pair)


def test_a_pattern_whose_remedy_changed_earns_its_autonomy_again_from_its_record_since_the_change(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """fake-down-poke earned auto on svc (five verified fixes) and acts on its own. Then its action
    is edited. The edited remedy has no record: it used to keep auto and run unasked at once,
    vouched for by what another remedy did. Now the engine notices the change when it starts
    (audited pattern.changed, logged, told: it had earned auto on svc), the ladder and the
    diagnosis's record factor count only the record made since, and the next outage asks a
    person (demoted auto -> approve, saying why).
    Restarting with the same pattern changes nothing; nor does a new description or prior
    confidence, while a new version does."""
    store = Store(f"sqlite:///{tmp_path / 'one.db'}")
    policy = {"autonomy": "approve", "autonomy_ladder": {"enabled": True, "promote_after": 5, "max_level": "auto"}}
    (tmp_path / "before").mkdir()
    before = Harness(tmp_path / "before", policy=policy, store=store)
    _verified_fixes(store, 5)
    before.feed("up", 1, 3)
    before.feed("up", 0, 3)
    assert [c for c, *_ in before.actuator.calls] == ["apply"], "auto: it acts unasked"
    assert [e.data["to"] for e in store.audit_events() if e.kind == "pattern.promoted"] == ["auto"]
    before.feed("up", 1, 40)

    def changes() -> list[AuditEvent]:
        return [e for e in store.audit_events() if e.kind == "pattern.changed"]

    (tmp_path / "again").mkdir()
    Harness(tmp_path / "again", policy=policy, store=store, start_at=before.clock.now())
    assert changes() == [], "a restart with the same pattern counted as a change"
    (tmp_path / "edited").mkdir()
    with caplog.at_level("WARNING", logger="autonomic"):
        edited = Harness(tmp_path / "edited", policy=policy, store=store, op="fail_undo",
                         start_at=before.clock.now() + 1)
    (changed,) = changes()
    assert changed.data["reason"].startswith("its remedy changed (fingerprint ")
    assert changed.data["reason"].endswith("the autonomy it earns counts only its record from now on; "
                                           "it had earned auto on svc")
    assert any(r.getMessage().startswith("pattern fake-down-poke (") and "its remedy changed" in r.getMessage()
               for r in caplog.records)
    # its confidence is vouched for by no record of the remedy before either (six fixes before)
    assert before.engine._pattern_record("svc")["fake-down-poke"] == (6, 0)
    assert edited.engine._pattern_record("svc")["fake-down-poke"] == (0, 0)
    assert [n.title for n in edited.notifier.sent] == [
        "pattern fake-down-poke changed: the autonomy it earned starts again"]
    edited.feed("up", 1, 3)
    edited.feed("up", 0, 4)
    inc = edited.incident()
    assert inc.state == IncidentState.AWAITING_APPROVAL and edited.actuator.calls == []
    autonomy = {g.gate: g for g in store.decisions(inc.id)[-1].gates}["autonomy"]
    assert "counting its record since the pattern changed" in autonomy.reason, autonomy.reason
    assert "6 earlier outcomes left out" in autonomy.reason, autonomy.reason  # five fixes and the one it ran
    demoted = [e for e in store.audit_events() if e.kind == "pattern.demoted"]
    assert [(e.data["from"], e.data["to"]) for e in demoted] == [("auto", "approve")]

    (tmp_path / "edited-again").mkdir()
    Harness(tmp_path / "edited-again", policy=policy, store=store, op="fail_undo", start_at=edited.clock.now())
    assert len(changes()) == 1, "a restart with the edited pattern counted as another change"
    pattern = edited.engine.patterns["fake-down-poke"]
    assert pattern.model_copy(update={"description": "reworded", "prior_confidence": 0.5,
                                      "source": "elsewhere.yaml:3"}).remedy_fingerprint == pattern.remedy_fingerprint
    assert pattern.model_copy(update={"version": 2}).remedy_fingerprint != pattern.remedy_fingerprint


def test_an_action_of_the_old_remedy_judged_after_the_pattern_changed_is_not_the_new_remedys_record(
        tmp_path: Path) -> None:
    """An action of fake-down-poke started before its remedy was edited and the engine restarted,
    and was judged (a pass) after: it ran the old remedy, so the ladder leaves it out of what the
    edited remedy earns, as the diagnosis's record factor does. It used to count, read by when its
    outcome came (after the change), and was one verified fix of a remedy that had never run."""
    from autonomic.model import Action, Outcome, VerifyVerdict

    store = Store(f"sqlite:///{tmp_path / 'one.db'}")
    policy = {"autonomy": "approve", "autonomy_ladder": {"enabled": True, "promote_after": 1, "max_level": "auto"}}
    (tmp_path / "before").mkdir()
    Harness(tmp_path / "before", policy=policy, store=store)
    (tmp_path / "edited").mkdir()
    changed_at = T0 + 100
    edited = Harness(tmp_path / "edited", policy=policy, store=store, op="fail_undo", start_at=changed_at)
    assert edited.engine._record_since["fake-down-poke"] == changed_at
    inc = Incident(service="svc", cause="down", severity=Severity.CRITICAL, kind=FindingKind.STATE,
                   opened_at=changed_at - 20, updated_at=changed_at + 30, last_finding_at=changed_at - 20,
                   summary="down", state=IncidentState.RESOLVED, closed_at=changed_at + 30)
    act = Action(decision_id="d", incident_id=inc.id, service="svc", type="fake", params={}, idempotency_key="k",
                 state=ActionState.VERIFYING, pattern_id="fake-down-poke", created_at=changed_at - 10,
                 updated_at=changed_at)
    store.record(inc, act, actor="engine", event="action.started", subject=act.id)
    assert edited.engine._pattern_record("svc").get("fake-down-poke", (0, 0)) == (0, 0)  # in flight
    out = Outcome(action_id=act.id, incident_id=inc.id, ts=changed_at + 30, verdict=VerifyVerdict.PASS,
                  reason="up again")
    ended = act.model_copy(update={"state": ActionState.SUCCEEDED, "updated_at": changed_at + 30})
    store.record(ended, out, actor="engine", event="action.verified", subject=act.id)
    assert edited.engine._tallies.read()[0]["fake-down-poke"] == (1, 0), "the tallies moved by it"

    policy_spec = edited.config.spec.policy
    effective = policy_spec.effective("fake", "fake-down-poke", "svc")
    earned = edited.engine._earned(effective, policy_spec, "fake-down-poke", "svc", changed_at + 60)
    assert earned.autonomy == Autonomy.APPROVE, "promoted on the old remedy's fix"
    assert "1 earlier outcome left out" in earned.autonomy_from, earned.autonomy_from
    assert edited.engine._pattern_record("svc").get("fake-down-poke", (0, 0)) == (0, 0)


def test_a_broken_audit_chain_stops_the_loop_rather_than_being_ridden_out_as_an_outage(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """AuditChainError is a StoreError, but tampering is no outage: tick() raises it (run() then
    shuts down) instead of logging "the store refused a write" every tick."""
    from autonomic.errors import AuditChainError

    h = Harness(tmp_path)
    h.feed("up", 1, 2)

    def tampered(*args: Any, **kwargs: Any) -> Any:
        raise AuditChainError("audit head row is missing")

    monkeypatch.setattr(h.store, "record", tampered)
    with pytest.raises(AuditChainError):
        h.feed("up", 0, 3)


def test_the_pattern_tallies_are_read_once_then_moved_by_each_action_that_ends(tmp_path: Path) -> None:
    """The diagnosis's record factor is read from the store once (one grouped query over every
    action ever ended); then each action that ends moves it. It used to be read again whole
    after each action that ended: with a year of actions (100,000), 0.34 s on the next decision."""
    h = Harness(tmp_path, policy={"rate_limits": {"per_day": 50, "per_week": 50, "per_service_day": 50,
                                                  "per_service_week": 50}})
    reads: list[int] = []
    tallies = h.store.pattern_tallies_by_service
    h.store.pattern_tallies_by_service = lambda: reads.append(1) or tallies()  # type: ignore[method-assign]
    h.engine._pattern_record("svc")
    assert len(reads) == 1
    for n in (1, 2, 3):
        h.feed("up", 1, 3)
        h.feed("up", 0, 3)
        action = h.store.actions()[-1]
        assert action.state in (ActionState.RUNNING, ActionState.VERIFYING)
        h.run_until(lambda: h.store.actions()[-1].state == ActionState.SUCCEEDED, "up", 1)
        assert h.engine._pattern_record("svc") == {"fake-down-poke": (n, 0)}
        h.feed("up", 1, 40)  # quiet: the incident closes; the next fault opens a new one
    assert len(reads) == 1
    assert tallies() == {("fake-down-poke", "svc"): (3, 0)}

class _Mono:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def _replicas(tmp_path: Path) -> tuple[tuple[Store, LeaderElector, _Mono], tuple[Store, LeaderElector, _Mono]]:
    """Replicas a and b over one SQLite file: each its own Store, elector (lease_s 15, renew_s 10)
    and hand-moved clock. Nobody holds the lease yet."""
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    made = []
    for name in ("a", "b"):
        store, mono = Store(url), _Mono()
        made.append((store, LeaderElector(store, identity=name, lease_s=15, renew_s=10, monotonic=mono), mono))
    return made[0], made[1]


def test_a_standby_takes_over_a_frozen_leaders_action_and_the_leader_acts_and_writes_no_more_when_it_wakes(
        tmp_path: Path) -> None:
    """Two replicas over one SQLite file. A leads and acts, then freezes (no renewals); B takes
    the lease over, recovers A's action from the store and verifies it without applying it again.
    A wakes still believing it leads (its clock says it renewed lately): every write it tries is
    refused by the fence, its actuator is never called again, and its next renewal finds the
    lease lost. One action, applied once, and an intact audit chain."""
    (sa, ea, ma), (sb, eb, mb) = _replicas(tmp_path)
    assert ea.attempt()
    (tmp_path / "a").mkdir()
    a = Harness(tmp_path / "a", store=sa, elector=ea)
    assert not eb.attempt()
    a.feed("up", 1, 3)
    a.feed("up", 0, 3)
    assert [c for c, *_ in a.actuator.calls] == ["apply"]
    (action,) = sa.actions()
    assert action.state == ActionState.VERIFYING
    mb.t += 16  # A froze right after acting: B has watched the lease go unrenewed for lease_s
    assert eb.attempt()
    (tmp_path / "b").mkdir()
    b = Harness(tmp_path / "b", store=sb)  # starts as the new leader: reconciles from the store
    b.engine.elector = eb
    b.clock.t = a.clock.now()
    b.run_until(lambda: sb.actions()[0].state == ActionState.SUCCEEDED, "up", 1)
    assert b.actuator.calls == [], "the new leader applied an action the old one had applied"
    ma.t += 5  # A wakes; on its own clock it renewed 5 s ago, so it still believes it leads
    assert ea.leading
    before = sb.audit_events()
    a.feed("up", 0, 5)  # a new outage as A sees it: it would open an incident and act
    assert [c for c, *_ in a.actuator.calls] == ["apply"], "a replica that lost the lease acted"
    assert sb.audit_events() == before, "a replica that lost the lease wrote to the store"
    with pytest.raises(NotLeaderError):
        sa.audit("engine", "x", "y")
    assert not ea.attempt() and ea.lost
    assert a.engine.standby is not None and "lost the lease to b" in a.engine.standby
    (done,) = sb.actions()
    assert done.id == action.id and done.state == ActionState.SUCCEEDED
    assert sb.verify_audit().ok


def test_a_deposed_leader_whose_lease_thread_is_stuck_stops_at_the_first_write_the_fence_refuses(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The leader's lease thread hangs in a call to the store that never returns (in the wild: a
    connection whose far end still answers TCP while nothing behind it does). The lease lapses and
    the standby takes it over. The deposed leader's loop goes on, and its writes are refused by
    the fence: its first refused write now ends the loop with the lease lost (``autonomic run``
    exits 3, to be restarted as a standby). Before, only a renewal could tell it, and it ran on
    for good, able neither to act nor to write."""
    (sa, ea, ma), (sb, eb, mb) = _replicas(tmp_path)
    assert ea.attempt() and not eb.attempt()
    (tmp_path / "a").mkdir()
    a = Harness(tmp_path / "a", store=sa, elector=ea)
    stuck, release = threading.Event(), threading.Event()
    real_attempt = ea.attempt

    def hanging() -> bool:
        if threading.current_thread().name == "autonomic-lease":
            stuck.set()
            release.wait(60)
        return real_attempt()

    monkeypatch.setattr(ea, "attempt", hanging)
    stop = threading.Event()
    ticks: list[float] = []
    said: list[str] = []

    def on_tick(_: object) -> None:
        ticks.append(a.clock.now())
        if len(ticks) == 3:
            assert stuck.wait(10), "the lease thread made no round"
            assert not eb.attempt()  # b sees the lease as the leader's last renewal left it
            ma.t += 16  # no renewal for lease_s: b takes the lease over
            mb.t += 16
            assert eb.attempt()
        # the service goes down as a sees it: findings, an incident to write
        a.source._samples.append(Sample("svc", "up", a.clock.now(), 0.0 if len(ticks) >= 3 else 1.0))
        a.clock.advance(1.0)
        if len(ticks) >= 40:
            stop.set()

    try:
        a.engine.run(stop, on_tick=on_tick, on_stopping=said.append)
        assert not stop.is_set(), f"the deposed leader ran on for {len(ticks)} ticks"
        assert ea.lost and sa.fenced_out is not None and sa.fenced_out.holder == "b"
        assert said == ["stopping: this replica (a) lost the lease to b (epoch 2); it exits (code 3) to be "
                        "restarted as a standby"]
        assert sb.incidents() == [] and a.actuator.calls == []
        assert any(t.name == "autonomic-lease" for t in threading.enumerate()), "the lease thread was not stuck"
    finally:
        release.set()
    assert sb.verify_audit().ok


def test_a_leader_that_cannot_renew_its_lease_advances_no_incident_or_action(tmp_path: Path) -> None:
    """Past renew_s without a renewal the leader is not sure it still leads: findings are still
    stored (the lease still names it), but nothing is decided or run until it renews."""
    url = f"sqlite:///{tmp_path / 'one.db'}"
    mono = _Mono()
    store = Store(url)
    elector = LeaderElector(store, identity="a", lease_s=15, renew_s=10, monotonic=mono)
    assert elector.attempt()
    h = Harness(tmp_path, store=store)
    h.engine.elector = elector
    h.feed("up", 1, 3)
    mono.t += 11
    h.feed("up", 0, 4)
    inc = h.incident()
    assert h.actuator.calls == [] and store.decisions(incident_id=inc.id) == []
    assert elector.attempt()  # renewed: the queued incident goes on
    h.feed("up", 0, 1)
    assert [c for c, *_ in h.actuator.calls] == ["apply"]


def test_a_leader_whose_loop_is_stuck_past_stuck_after_s_renews_no_more_and_again_once_it_moves(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The lease thread's round skips the renewal while the loop has made no progress for longer
    than stuck_after_s (so a standby may take over), saying once what the loop is stuck in; the
    first round after the loop beats again renews (no standby took the lease meanwhile)."""
    mono = _Mono()
    store = Store(f"sqlite:///{tmp_path / 'one.db'}")
    elector = LeaderElector(store, identity="a", lease_s=15, renew_s=10, monotonic=mono)
    assert elector.attempt()
    h = Harness(tmp_path, store=store)
    h.engine.elector = elector
    t = [0.0]
    h.engine.watchdog = Watchdog(30.0, lambda: t[0])
    h.engine.watchdog.beat("fake apply of action 12345678 on svc, attempt 1 (an actuator call)")

    def renewals() -> int:
        lease = store.lease("engine")
        assert lease is not None
        return lease.renewals

    assert h.engine._lease_round() is False and renewals() == 1
    t[0] = 31.0
    assert h.engine._lease_round() is False and h.engine._lease_round() is False
    assert renewals() == 1, "a leader whose loop is stuck renewed its lease"
    (line,) = [r.getMessage() for r in caplog.records if "stops renewing its lease" in r.getMessage()]
    assert "no progress for 31 s (limit 30 s): stuck in fake apply of action 12345678 on svc" in line
    mono.t += 11
    assert not elector.leading and h.engine.standby is not None
    h.engine.watchdog.beat("waiting for the next tick")
    assert h.engine._lease_round() is False and renewals() == 2 and elector.leading
    assert any("makes progress again" in r.getMessage() for r in caplog.records)


def test_a_leader_whose_pause_read_stalls_past_its_lease_does_not_call_the_actuator(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The kill switch is read from the store right before an actuator call. When that read
    stalls (a slow database, a starved process) long enough for a standby to take the lease over,
    the replica must not go on to call the actuator on the strength of a leadership check made
    before the stall."""
    import sys

    import autonomic.engine as engine_module

    (sa, ea, ma), (sb, eb, mb) = _replicas(tmp_path)
    assert ea.attempt() and not eb.attempt()
    (tmp_path / "a").mkdir()
    a = Harness(tmp_path / "a", store=sa, elector=ea)
    real = engine_module.paused_reason

    def stalling(store: Store, service: str | None, state_dir: Path | None = None) -> str | None:
        if sys._getframe(1).f_code.co_name == "_may_act" and not eb.leading:
            ma.t += 16  # the read stalls; meanwhile b watches the lease go unrenewed and takes it
            mb.t += 16
            assert eb.attempt()
        return real(store, service, state_dir)

    monkeypatch.setattr(engine_module, "paused_reason", stalling)
    a.feed("up", 1, 3)
    a.feed("up", 0, 4)
    assert eb.leading, "the stall was not reached"
    assert a.actuator.calls == [], "the actuator was called after another replica took the lease over"


def test_an_apply_in_flight_on_a_leader_cut_off_from_the_store_is_not_applied_again_by_the_new_leader(
        tmp_path: Path) -> None:
    """A leader's apply is still running (a long rollout) when it loses the database and a
    standby takes the lease over. The new leader leaves the action the old one left RUNNING alone
    for takeover_grace_s (by default the fake's longest call, 60 s, less lease_s - renew_s, 5 s):
    asked at once, the actuator would say "not yet"
    and the action would be applied a second time while the first call runs. After the grace it
    recovers it: the apply took effect, so it is verified, not applied again."""
    import threading

    class Slow(FakeActuator):
        def __init__(self) -> None:
            super().__init__()
            self.entered, self.go = threading.Event(), threading.Event()
            self.inflight = self.most = 0

        def apply(self, target: Any, params: Any, key: str, snapshot: Any) -> dict[str, Any]:
            self.inflight += 1
            self.most = max(self.most, self.inflight)
            try:
                if not self.entered.is_set():
                    self.entered.set()
                    self.go.wait(10)  # a long apply (a rollout); meanwhile A cannot reach the store
                return super().apply(target, params, key, snapshot)
            finally:
                self.inflight -= 1

    world = Slow()
    (sa, ea, ma), (sb, eb, mb) = _replicas(tmp_path)
    assert ea.attempt() and not eb.attempt()
    (tmp_path / "a").mkdir()
    a = Harness(tmp_path / "a", store=sa, actuator=world, elector=ea)
    a.feed("up", 1, 3)
    leader = threading.Thread(target=a.feed, args=("up", 0, 4))
    leader.start()
    assert world.entered.wait(10)
    ma.t += 16
    mb.t += 16  # A's renewals fail while its apply runs; B watches the lease go unrenewed
    assert eb.attempt() and eb.took_over_from == "a"
    (tmp_path / "b").mkdir()
    b = Harness(tmp_path / "b", store=sb, actuator=world, elector=eb)
    b.clock.t = a.clock.now()
    try:
        b.feed("up", 0, 2)
    finally:
        world.go.set()
        leader.join(10)
    assert world.most == 1, "the new leader applied the action while the old leader's apply was in flight"
    (action,) = sb.actions()
    assert action.state == ActionState.RUNNING  # as A left it: its result write was refused
    b.run_until(lambda: sb.actions()[0].state == ActionState.SUCCEEDED, "up", 1, limit=120)
    (done,) = sb.actions()
    # recovery found the effect there (the finishing apply is a no-op by key), never two at once
    assert "recovered" in [st.name for st in done.steps] and world.most == 1
    assert {key for _, _, key in world.calls} == {done.idempotency_key} and len(world.applied_keys) == 1


@pytest.mark.parametrize(("election", "grace"), [({}, 60.0 - 5.0), ({"takeover_grace_s": 7}, 7.0)])
def test_an_action_a_deposed_leader_left_running_waits_out_its_longest_call_less_lease_s_minus_renew_s(
        tmp_path: Path, caplog: pytest.LogCaptureFixture, election: dict[str, Any], grace: float) -> None:
    """takeover_grace_s was one guess (60 s) for every action: too short for a 5-minute runbook, too
    long for an HTTP call. The old leader starts no call once it has gone renew_s without renewing,
    and the lease is taken no sooner than lease_s after that renewal, so its last call ends at most
    (the action's longest call) - (lease_s - renew_s) after the takeover: by default the action is
    looked at then (the fake actuator's calls last at most 60 s; lease_s 15, renew_s 10). A
    takeover_grace_s in the config is used for every action."""
    (sa, ea, _), (sb, eb, mb) = _replicas(tmp_path)
    assert ea.attempt() and not eb.attempt()
    running = Action(decision_id="d1", incident_id="i1", service="svc", type="fake", params={"op": "poke"},
                     idempotency_key="act-1", state=ActionState.RUNNING, created_at=T0, updated_at=T0)
    sa.record(running, actor="engine", event="action.running", subject=running.id)
    mb.t += 16
    assert eb.attempt() and eb.took_over_from == "a"
    b = Harness(tmp_path, store=sb, elector=eb, extra={"engine": {
        "interval_s": 1, "state_dir": str(tmp_path / "state"), "host_metrics": False, "settle_s": 0,
        "resolve_after_s": 30, "leader_election": {"enabled": True, "lease_s": 15, "renew_s": 10, **election}}})
    assert b.engine.queue.next_due() == pytest.approx(T0 + grace)
    assert f"looked at in {grace:g} s" in caplog.text


def test_a_lease_given_up_cleanly_needs_no_grace_for_the_actions_left(tmp_path: Path) -> None:
    """A leader that stopped cleanly released its lease, and it stops between steps: nothing of
    its is in flight, so the next leader takes every action up at once."""
    (_, ea, _), (_, eb, _) = _replicas(tmp_path)
    assert ea.attempt()
    ea.release()
    assert eb.attempt() and eb.took_over_from is None


def test_an_action_refused_for_want_of_a_renewal_before_its_apply_is_run_once_renewed_not_escalated(
        tmp_path: Path) -> None:
    """The lease lapses between the RUNNING record and the actuator call (the write was slow):
    the call is refused, so nothing ran. The action goes back to PENDING and runs once the lease
    is renewed; left RUNNING, recovery would ask the actuator, and one that cannot tell (a
    systemd reload) would hand a fix that never ran to a person."""

    class Blind(FakeActuator):
        def applied(self, target: Any, params: Any, key: str, snapshot: Any) -> bool | None:
            return None

    url = f"sqlite:///{tmp_path / 'one.db'}"
    mono = _Mono()
    store = Store(url)
    elector = LeaderElector(store, identity="a", lease_s=15, renew_s=10, monotonic=mono)
    assert elector.attempt()
    h = Harness(tmp_path, store=store, actuator=Blind())
    h.engine.elector = elector
    record = store.record

    def slow(*nouns: Any, **kw: Any) -> Any:
        out = record(*nouns, **kw)
        if kw.get("event") == "action.running" and not any(e.kind == "action.deferred"
                                                           for e in store.audit_events()):
            mono.t += 11  # this write took long enough for the renewal to be overdue
        return out

    store.record = slow  # type: ignore[method-assign]
    h.feed("up", 1, 3)
    h.feed("up", 0, 4)
    (action,) = store.actions()
    assert action.state == ActionState.PENDING and h.actuator.calls == []
    assert elector.attempt()
    h.run_until(lambda: store.actions()[0].state == ActionState.SUCCEEDED, "up", 1)
    assert [c for c, *_ in h.actuator.calls] == ["apply"]


def test_alerts_queued_in_the_store_by_another_process_are_ingested_once_and_their_key_removed(
        tmp_path: Path) -> None:
    """The webhook path: any replica's API stores the alerts (queue_findings), the engine that
    runs the loop ingests them at its next collection and removes the key; audited both ways."""
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    h = Harness(tmp_path, store=Store(url))
    other = Store(url)  # the API of another replica
    key = queue_findings(other, [_alert(h, "DiskFull")], h.clock.now(), actor="webhook")
    assert other.states(INBOX).keys() == {key}
    h.feed("up", 1, 2)
    (inc,) = [i for i in h.store.incidents(service="svc") if i.cause == "disk"]
    assert [f.metric for f in h.store.findings(inc.id)] == ["alert:DiskFull"]
    assert other.states(INBOX) == {}
    kinds = [e.kind for e in other.audit_events() if e.subject == key]
    assert kinds == ["alerts.received", "alerts.ingested"]
    h.feed("up", 1, 3)
    assert len(h.store.findings(inc.id)) == 1, "an alert was ingested twice"
    other.close()


def test_queued_alerts_wait_in_the_store_while_it_refuses_writes_and_are_ingested_once_after(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from autonomic.errors import StoreError

    h = Harness(tmp_path, policy={"autonomy": "observe"})
    h.feed("up", 1, 1)
    key = queue_findings(h.store, [_alert(h, "A"), _alert(h, "B")], h.clock.now(), actor="webhook")
    real = h.store.record

    def locked(*args: Any, **kwargs: Any) -> Any:
        raise StoreError("store write failed: database is locked")

    monkeypatch.setattr(h.store, "record", locked)
    h.feed("up", 1, 3)
    assert key in h.store.states(INBOX), "the alerts left the store before they were ingested"
    assert len(h.engine._unstored) == 2, "the same stored alerts were taken in again every tick"
    monkeypatch.setattr(h.store, "record", real)
    h.feed("up", 1, 3)
    (inc,) = h.store.incidents(service="svc")
    assert sorted(f.metric for f in h.store.findings(inc.id)) == ["alert:A", "alert:B"]
    assert h.store.states(INBOX) == {}


def _fired(h: Harness, name: str, fingerprint: str) -> Finding:
    alert = _alert(h, name)
    return alert.model_copy(update={"evidence": {"fingerprint": fingerprint}})


def test_an_alert_incident_stays_open_while_its_alert_fires_and_closes_after_it_is_resolved(
        tmp_path: Path) -> None:
    """Alertmanager sends a firing alert once, then again only every repeat_interval (4 h): its
    incident is not "quiet" after resolve_after_s (it was closed after 2 minutes, an approval
    request with it). It stays open until every alert of it is resolved, then goes quiet as
    usual; with the resolved notification missed (a restart), after alert_resolve_after_s."""
    url = f"sqlite:///{tmp_path / 'one.db'}"
    h = Harness(tmp_path, store=Store(url), policy={"autonomy": "observe"})
    queue_findings(h.store, [_fired(h, "DiskFull", "fp-1"), _fired(h, "DiskSlow", "fp-2")], h.clock.now(),
                   actor="webhook")
    h.feed("up", 1, 200)  # well past resolve_after_s (30 s here), no resend
    (inc,) = [i for i in h.store.incidents(service="svc") if i.cause == "disk"]
    assert h.store.get(Incident, inc.id).closed_at is None  # type: ignore[union-attr]
    queue_findings(h.store, [], h.clock.now(), actor="webhook", resolved=["fp-1"])
    h.feed("up", 1, 5)
    assert h.store.get(Incident, inc.id).closed_at is None, "closed with one alert still firing"  # type: ignore[union-attr]
    h2 = Harness(tmp_path, store=Store(url), start_at=h.clock.now(), policy={"autonomy": "observe"})  # a restart
    h2.feed("up", 1, 60)
    assert h2.store.get(Incident, inc.id).closed_at is None  # type: ignore[union-attr]
    queue_findings(h2.store, [], h2.clock.now(), actor="webhook", resolved=["fp-1", "fp-2"])
    h2.feed("up", 1, 3)
    closed = h2.store.get(Incident, inc.id)
    assert closed is not None and closed.closed_at is not None and h2.store.states(INBOX) == {}


def test_an_alert_incident_a_pause_held_back_is_acted_on_after_the_pause_while_its_alert_still_fires(
        tmp_path: Path) -> None:
    """An Alertmanager alert fired during a pause (sent once; Alertmanager resends it only every
    repeat_interval). Once the pause is lifted its incident is decided again and acted on, as
    the alert still fires; it was closed at once as 'cleared on its own' (no finding for four
    ticks), nothing done."""
    (tmp_path / "patterns").mkdir()
    (tmp_path / "patterns" / "disk.yaml").write_text(
        "id: fake-disk-poke\nmatch: {cause: disk, kind: alert}\naction: {type: fake, params: {op: poke}}\n"
        "prior_confidence: 0.9\nrollback_safe: true\n"
        "verify: {metric: up, min: 1, window_s: 10, delay_s: 3, min_samples: 3}\n")
    h = Harness(tmp_path)
    h.store.set_state(pause_key(None), {"reason": "deploy", "actor": "person:a"}, actor="person:a", event="pause.set")
    queue_findings(h.store, [_fired(h, "DiskFull", "fp-1")], h.clock.now(), actor="webhook")
    h.feed("up", 1, 20)  # the pause lasts well beyond four ticks; the alert is not sent again
    (inc,) = [i for i in h.store.incidents(service="svc") if i.cause == "disk"]
    assert h.actuator.calls == []
    h.store.set_state(pause_key(None), None, actor="person:a", event="pause.cleared")
    h.feed("up", 1, 5)
    kinds = [e.kind for e in h.store.audit_events(subject=inc.id)]
    assert "incident.resumed" in kinds and "incident.cleared" not in kinds
    assert [c for c, *_ in h.actuator.calls][:1] == ["apply"]


def test_an_alert_incident_whose_resolved_notification_never_comes_closes_after_alert_resolve_after_s(
        tmp_path: Path) -> None:
    h = Harness(tmp_path, policy={"autonomy": "observe"}, extra={})
    queue_findings(h.store, [_fired(h, "DiskFull", "fp-1")], h.clock.now(), actor="webhook")
    h.feed("up", 1, 2)
    (inc,) = [i for i in h.store.incidents(service="svc") if i.cause == "disk"]
    h.clock.advance(h.config.engine.alert_quiet_s - 60)
    h.feed("up", 1, 2)
    assert h.store.get(Incident, inc.id).closed_at is None  # type: ignore[union-attr]
    h.clock.advance(120)
    h.feed("up", 1, 2)
    assert h.store.get(Incident, inc.id).closed_at is not None  # type: ignore[union-attr]


def test_alerts_queued_before_a_restart_are_ingested_by_the_next_engine(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'one.db'}"
    store = Store(url)
    queue_findings(store, [Finding(service="svc", metric="alert:X", kind=FindingKind.ALERT, cause="disk",
                                   severity=Severity.CRITICAL, confidence=0.9, ts=T0, summary="X firing")],
                   T0, actor="webhook")
    store.close()
    h = Harness(tmp_path, store=Store(url))  # the engine was down when the webhook came
    h.feed("up", 1, 1)
    assert {i.cause for i in h.store.incidents(service="svc")} == {"disk"}
    assert h.store.states(INBOX) == {}


def test_queued_alerts_past_the_unstored_cap_stay_in_the_store_and_are_ingested_once_after(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A long write outage: findings kept in memory are capped (the oldest dropped). Alerts taken
    from the inbox that the cap drops must not be lost with them when their key is cleared."""
    import autonomic.engine as engine_module
    from autonomic.errors import StoreError

    monkeypatch.setattr(engine_module, "_MAX_UNSTORED", 3)
    h = Harness(tmp_path, policy={"autonomy": "observe"})
    h.feed("up", 1, 1)
    queue_findings(h.store, [_alert(h, "A1"), _alert(h, "A2")], h.clock.now(), actor="webhook")
    real = h.store.record

    def locked(*args: Any, **kwargs: Any) -> Any:
        raise StoreError("store write failed: database is locked")

    monkeypatch.setattr(h.store, "record", locked)
    h.feed("up", 1, 1)  # both alerts taken in, refused
    more = [Finding(service="svc", metric=f"m{i}", kind=FindingKind.THRESHOLD, cause="memory",
                    severity=Severity.WARNING, confidence=0.9, ts=h.clock.now(), summary=f"m{i}")
            for i in range(2)]
    h.engine.submit(more)  # newer findings push A1 past the cap
    h.feed("up", 1, 1)
    monkeypatch.setattr(h.store, "record", real)
    h.feed("up", 1, 3)
    (disk,) = [i for i in h.store.incidents(service="svc") if i.cause == "disk"]
    metrics = sorted(f.metric for f in h.store.findings(disk.id))
    assert metrics == ["alert:A1", "alert:A2"], "an accepted alert was lost"
    h.feed("up", 1, 11)  # a later repeat stores the count kept in memory
    queue_findings(h.store, [_alert(h, "A1")], h.clock.now(), actor="webhook")
    h.feed("up", 1, 2)
    assert h.store.get(Incident, disk.id).finding_count == 3, "an alert was ingested twice"  # type: ignore[union-attr]
    assert h.store.states(INBOX) == {}


@pytest.mark.parametrize("value", [{"received_at": "yesterday", "findings": []}, {"findings": None},
                                   {"findings": {"a": 1}}, {"findings": [1, "x", None]}])
def test_a_malformed_inbox_entry_is_dropped_and_the_alerts_beside_it_are_ingested(
        tmp_path: Path, value: dict[str, Any]) -> None:
    h = Harness(tmp_path, policy={"autonomy": "observe"})
    h.store.set_state(f"{INBOX}damaged", value, actor="person:x", event="test")
    queue_findings(h.store, [_alert(h, "A")], h.clock.now(), actor="webhook")
    h.feed("up", 1, 2)
    assert {i.cause for i in h.store.incidents(service="svc")} == {"disk"}
    assert h.store.states(INBOX) == {}, "a damaged entry stays forever"


def test_queued_alerts_with_a_nul_character_are_stored_and_cleared_on_both_back_ends(
        tmp_path: Path, store_url: str) -> None:
    """The webhook path (queue_findings, then the engine): a NUL in a label is kept in the JSON,
    as U+FFFD as every NUL in a JSON value (no 503 for ever, Alertmanager would resend it for
    ever); one in the service name, which no text column can hold, drops that finding alone, and
    the key is cleared."""
    h = Harness(tmp_path, policy={"autonomy": "observe"}, store=Store(store_url))
    labelled = _alert(h, "A").model_copy(update={"evidence": {"labels": {"team": "a\x00b"}}})
    queue_findings(h.store, [_alert(h, "Evil", service="svc\x00"), labelled], h.clock.now(), actor="webhook")
    h.feed("up", 1, 2)
    (inc,) = h.store.incidents(service="svc")
    assert [f.evidence["labels"]["team"] for f in h.store.findings(inc.id)] == ["a\ufffdb"]
    assert h.store.states(INBOX) == {}
    assert h.store.verify_audit().ok
    h.store.close()


def test_an_incident_open_at_a_long_restart_is_not_closed_as_quiet_before_the_engine_has_watched(
        tmp_path: Path) -> None:
    """The engine stops (or a leader dies) with an incident decided and no action yet, and comes
    back after longer than resolve_after_s (30 s here) with the service still down. Before, the
    first tick closed the incident as quiet (EXPIRED: nobody had looked meanwhile) and opened a
    second one for the same outage; an incident awaiting a person's approval vanished the same
    way. Now the quiet time counts from the restart: the same incident goes on and is acted on."""
    url = f"sqlite:///{tmp_path / 'one.db'}"
    (tmp_path / "a").mkdir()
    a = Harness(tmp_path / "a", store=Store(url))

    class Stop(BaseException):
        pass

    def killed(*_a: Any, **_k: Any) -> Any:
        raise Stop  # the engine dies between the approved decision and the action's intent

    a.engine.executor.prepare = killed  # type: ignore[method-assign]
    a.feed("up", 1, 2)
    with pytest.raises(Stop):
        a.feed("up", 0, 3)
    (first,) = a.store.incidents(service="svc")
    assert [d.verdict for d in a.store.decisions(incident_id=first.id)] == [Verdict.APPROVED]
    (tmp_path / "b").mkdir()
    b = Harness(tmp_path / "b", store=Store(url), start_at=a.clock.now() + 40)  # back after > resolve_after_s
    b.run_until(lambda: bool(b.store.actions()), "up", 0, limit=10)
    assert [i.id for i in b.store.incidents(service="svc")] == [first.id], "the outage was split in two"
    (action,) = b.store.actions()
    assert action.incident_id == first.id


def test_a_store_error_reading_the_kill_switch_before_the_first_attempt_leaves_the_action_to_run_later(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The action is journaled RUNNING, then the kill switch's read fails (the store stops
    answering for a moment). Nothing ran, so the action goes back to PENDING and runs at a later
    tick; left RUNNING, recovery asked an actuator that cannot tell (a runbook, an HTTP call)
    whether it took effect and handed a fix that never ran to a person."""
    import sys

    import autonomic.engine as engine_module
    from autonomic.errors import StoreError

    class Untellable(FakeActuator):
        def applied(self, target: Target, params: BaseModel, key: str, snapshot: Mapping[str, Any]) -> bool | None:
            return None

    h = Harness(tmp_path, actuator=Untellable())
    real = engine_module.paused_reason
    failed: list[str] = []

    def flaky(store: Store, service: str | None, state_dir: Path | None = None) -> str | None:
        if sys._getframe(1).f_code.co_name == "_may_act" and not failed:
            failed.append("once")
            raise StoreError("store read failed: database is locked")
        return real(store, service, state_dir)

    monkeypatch.setattr(engine_module, "paused_reason", flaky)
    h.feed("up", 1, 3)
    h.feed("up", 0, 6)
    assert failed, "the kill switch's read was not reached"
    (action,) = h.store.actions()
    assert action.state != ActionState.ESCALATED, action.error
    assert [c for c, *_ in h.actuator.calls] == ["apply"]


def test_an_engine_running_as_pid_1_warns_that_orphans_are_not_reaped(
        tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    """In a container without an init, autonomic is PID 1: every process a runbook leaves behind is
    reparented to it and stays a zombie. It says so at start, with the fix (an init)."""
    import os

    data = {"engine": {"state_dir": str(tmp_path / "state"), "host_metrics": False},
            "builtin_patterns": False, "api": {"enabled": False}, "services": [{"name": "web"}]}

    def started_as(pid: int) -> list[str]:
        monkeypatch.setattr(os, "getpid", lambda: pid)
        engine = Engine(load_config_data(data, source="t.yaml", base_dir=tmp_path), sources=[], detectors=[],
                        notifiers=Dispatcher())
        caplog.clear()
        with caplog.at_level("WARNING", logger="autonomic.engine"):
            engine.start()
        monkeypatch.undo()
        engine.shutdown()
        return [r.getMessage() for r in caplog.records if "PID 1" in r.getMessage()]

    (warning,) = started_as(1)
    assert "never reaped" in warning and "docker run --init" in warning
    assert started_as(4242) == []


def test_an_actuator_binding_naming_a_path_this_host_lacks_is_warned_at_start(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """`check` may run on another machine, so a config repository or a runbook folder that is not
    there is no config error; but the engine that will act says so when it starts, naming the
    service and the field, rather than first at 3 a.m. when the action fails. A folder inside a
    work tree (one repository for many services' configs) is a repository to git, and no warning."""
    import subprocess

    repo = tmp_path / "repo"
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    (repo / "app.yaml").write_text("pool: {size: 10}\n")
    (repo / "svc").mkdir()
    (repo / "svc" / "app.yaml").write_text("pool: {size: 10}\n")
    (tmp_path / "plain").mkdir()
    data = {"engine": {"state_dir": str(tmp_path / "state"), "host_metrics": False},
            "builtin_patterns": False, "api": {"enabled": False},
            "services": [{"name": "good", "actuators": {"config": {"repo": str(repo), "file": "app.yaml"},
                                                        "shell": {"cwd": str(tmp_path)}}},
                         {"name": "bad", "actuators": {"config": {"repo": str(tmp_path / "nope"), "file": "a.yaml"},
                                                       "shell": {"cwd": str(tmp_path / "gone")}}},
                         {"name": "nofile", "actuators": {"config": {"repo": str(repo), "file": "b.yaml"}}},
                         {"name": "inside", "actuators": {"config": {"repo": str(repo / "svc"), "file": "app.yaml"}}},
                         {"name": "nogit", "actuators": {"config": {"repo": str(tmp_path / "plain"),
                                                                    "file": "a.yaml"}}}]}
    engine = Engine(load_config_data(data, source="t.yaml", base_dir=tmp_path), sources=[], detectors=[],
                    notifiers=Dispatcher())
    with caplog.at_level("WARNING", logger="autonomic.engine"):
        engine.start()
    engine.shutdown()
    warned = sorted(r.getMessage().split(";")[0] for r in caplog.records if "actuators." in r.getMessage())
    assert warned == [f"service bad: actuators.config.repo: {tmp_path / 'nope'} does not exist here",
                      f"service bad: actuators.shell.cwd: {tmp_path / 'gone'} is not a folder here",
                      f"service nofile: actuators.config.file: b.yaml does not exist in {repo}",
                      f"service nogit: actuators.config.repo: {tmp_path / 'plain'} is not in a git work tree here"]


def test_a_pattern_the_service_has_no_binding_for_does_not_shadow_a_lower_ranked_one_it_can_run(
    tmp_path: Path,
) -> None:
    """A broader pattern of an actuator type svc is not bound to (``elsewhere``, registered but
    not bound) outranks fake-down-poke; svc acts with fake-down-poke instead of handing over."""
    better = ("id: better-elsewhere\nmatch: {cause: down, kind: state, min_severity: info}\n"
              "action: {type: elsewhere, params: {op: poke}}\nprior_confidence: 1.0\n"
              "verify: {metric: up, min: 1}\n")
    h = Harness(tmp_path, patterns=better, unbound="elsewhere")
    h.feed("up", 1, 3)
    h.feed("up", 0, 3)
    [diagnosis] = h.store.diagnoses(h.incident().id)
    assert [c.pattern_id for c in diagnosis.candidates] == ["better-elsewhere", "fake-down-poke"]
    assert diagnosis.pattern_id == "fake-down-poke"
    assert [c for c, *_ in h.actuator.calls] == ["apply"]


def test_services_sharing_an_instant_query_get_one_source_and_every_source_one_http_client(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A family query (``sum by (job) (...)`` read by each service with ``label: job``) is asked once
    per collection for all of them, not once per service; a range query, or another query, keeps its
    own source. All sources share one HTTP client: one is ~40 ms and ~0.8 MB to make."""
    import httpx

    made: list[object] = []
    real_init = httpx.Client.__init__

    def counted(self: httpx.Client, *args: Any, **kwargs: Any) -> None:
        made.append(self)
        real_init(self, *args, **kwargs)

    monkeypatch.setattr(httpx.Client, "__init__", counted)
    prom = "http://prom.test:9090"
    family = {"type": "promql", "url": prom, "query": "sum by (job) (x)", "metric": "error_rate", "label": "job"}
    services = [{"name": f"s{i}", "metrics": [family], "probes": [{"type": "http", "url": f"http://h{i}.test/"}]}
                for i in range(4)]
    services.append({"name": "own", "metrics": [{**family, "query": "y"},
                                                {**family, "mode": "range", "metric": "latency_ms"},
                                                {"type": "prometheus", "url": "http://own.test/metrics"}]})
    data = {"engine": {"state_dir": str(tmp_path / "state"), "host_metrics": False},
            "builtin_patterns": False, "api": {"enabled": False}, "services": services}
    engine = Engine(load_config_data(data, source="t.yaml", base_dir=tmp_path), detectors=[], notifiers=Dispatcher())
    names = [s.name for s in engine.sources]
    assert names == ["probe:s0", "promql:error_rate:4 services:sum by (job) (x)", "probe:s1", "probe:s2",
                     "probe:s3", "promql:own:error_rate", "promql:own:latency_ms", "prometheus:own"]
    assert len(made) == 1
    engine.shutdown()
    assert made[0].is_closed  # type: ignore[attr-defined]


def test_collecting_and_detecting_run_with_the_cyclic_garbage_collector_paused_and_it_is_restored(
        tmp_path: Path) -> None:
    """At 100,000 series the per-series objects of a collection (a parsed answer, its samples) set
    off full collections that walk the whole process, a second or more a tick, and find nothing.
    So sources and detectors run with the collector paused; it is on again after, and a process
    that had it off keeps it off."""
    import gc

    seen: list[tuple[str, bool]] = []

    class Source:
        name = "recording"

        def collect(self, now: float) -> list[Sample]:
            seen.append(("collect", gc.isenabled()))
            return []

    class Detector:
        name = "recording"

        def detect(self, series: Any, now: float) -> list[Finding]:
            seen.append(("detect", gc.isenabled()))
            return []

    data = {"engine": {"state_dir": str(tmp_path / "state"), "host_metrics": False, "interval_s": 1},
            "builtin_patterns": False, "api": {"enabled": False}, "services": [{"name": "web"}]}
    clock = FakeClock(T0)
    engine = Engine(load_config_data(data, source="t.yaml", base_dir=tmp_path), clock=clock, sources=[Source()],
                    detectors=[Detector()], notifiers=Dispatcher(), store=Store("sqlite://"))
    engine.start()
    assert gc.isenabled()
    engine.tick()
    assert seen == [("collect", False), ("detect", False)] and gc.isenabled()
    gc.disable()
    try:
        clock.advance(1)
        engine.tick()
        assert seen[2:] == [("collect", False), ("detect", False)] and not gc.isenabled()
    finally:
        gc.enable()
    engine.shutdown()



UNBOUND_DISK_FIX = {"id": "disk-fix-unbound", "match": {"cause": "disk", "kind": "forecast"},
                    "action": {"type": "nobind", "params": {"op": "poke"}}, "prior_confidence": 0.9,
                    "verify": {"metric": "disk_percent", "max": 90, "window_s": 10, "min_samples": 3}}
HAND_OVER_DISK = {"id": "disk-hand-over", "match": {"cause": "disk", "kind": "forecast"}, "prior_confidence": 0.5}


def _disk_forecast_harness(tmp_path: Path, *more: dict[str, Any]) -> Harness:
    """svc binds only the fake actuator and has it as its fallback; disk-fix-unbound matches a disk
    forecast with an actuator type svc does not bind (as the built-in disk-fill-cleanup does for a
    service without a shell runbook)."""
    services = [{"name": "svc", "actuators": {"fake": {"name": "x"}}, "thresholds": {"down_after": 2, "sustain": 2},
                 "fallback": {"type": "fake", "params": {"op": "poke"}}}]
    h = Harness(tmp_path, policy={"autonomy": "auto"}, patterns=json.dumps({"patterns": [UNBOUND_DISK_FIX, *more]}),
                unbound="nobind", extra={"services": services})
    h.engine.submit([Finding(service="svc", metric="disk_percent", kind=FindingKind.FORECAST, cause="disk",
                             severity=Severity.WARNING, confidence=0.9, ts=h.clock.now(), value=80.0, threshold=90.0,
                             summary="disk_percent will reach 90 in 600 s")])
    h.feed("up", 1, 2)
    return h


def test_a_matching_pattern_the_service_cannot_carry_out_leaves_its_fallback_for_a_person_to_approve(
        tmp_path: Path) -> None:
    """A pattern matches but svc cannot carry it out: as when no pattern matches, svc's fallback
    is proposed, and (as no pattern's remedy) waits for a person even at autonomy auto; nothing runs."""
    h = _disk_forecast_harness(tmp_path)
    inc = h.incident()
    diagnosis = h.store.diagnoses(inc.id)[-1]
    assert diagnosis.action is not None and diagnosis.action.type == "fake"
    assert diagnosis.pattern_id is None
    assert diagnosis.candidates[0].pattern_id == "disk-fix-unbound"
    assert [d.verdict for d in h.store.decisions(inc.id)] == [Verdict.NEEDS_APPROVAL]
    assert inc.state == IncidentState.AWAITING_APPROVAL
    assert h.actuator.calls == []


def test_a_hand_over_pattern_keeps_the_incident_for_a_person_and_no_fallback_is_proposed(tmp_path: Path) -> None:
    """A hand-over pattern (no action) that matches says a person decides: the fallback is not
    proposed, even where a better-ranked pattern cannot run here."""
    h = _disk_forecast_harness(tmp_path, HAND_OVER_DISK)
    inc = h.incident()
    diagnosis = h.store.diagnoses(inc.id)[-1]
    assert diagnosis.pattern_id == "disk-hand-over" and diagnosis.action is None
    assert inc.state == IncidentState.ESCALATED
    assert h.actuator.calls == []


def test_a_goals_burn_is_handed_to_a_person_and_the_services_fallback_is_not_proposed(tmp_path: Path) -> None:
    """A burn says trouble is coming, not what it is: svc's fallback remedy (which it has for
    failures no pattern knows) is not put to a person for it; the person is told, nothing runs."""
    goal = {"name": "queue", "metric": "queue_ok", "min": 1, "target": 0.99, "window_days": 0.01, "step_s": 1,
            "rules": [{"long_s": 60, "short_s": 10, "factor": 10, "severity": "page"}]}
    services = [{"name": "svc", "actuators": {"fake": {"name": "x"}}, "goals": [goal],
                 "fallback": {"type": "fake", "params": {"op": "poke"}}}]
    h = Harness(tmp_path, policy={"autonomy": "auto"}, extra={"services": services})
    h.feed("queue_ok", 1, 60)
    h.feed("queue_ok", 0, 15)
    inc = h.incident()
    assert inc.cause == "error_budget_burn" and inc.state == IncidentState.ESCALATED
    [diagnosis] = h.store.diagnoses(inc.id)
    assert diagnosis.action is None and "fallback" not in diagnosis.rationale
    assert h.store.actions(incident_id=inc.id) == [] and h.actuator.calls == []
    assert any(n.incident_id == inc.id and n.level == Level.ALERT for n in h.notifier.sent)


def test_an_escalation_chain_passes_over_a_pattern_the_service_cannot_carry_out(tmp_path: Path) -> None:
    """The chain's next pattern acts through an actuator type svc is not bound to: it is passed
    over (named in the step's audit) and the one after it is tried; before, it was put forward,
    failed when run, and its failure counted towards that type's breaker."""
    elsewhere = ("patterns:\n  - id: next-elsewhere\n    match: {cause: nothing-matches-this}\n"
                 "    action: {type: elsewhere, params: {op: poke}}\n    prior_confidence: 0.9\n"
                 "    verify: {metric: up, min: 1}\n")
    pdir = tmp_path / "patterns"
    pdir.mkdir(exist_ok=True)
    (pdir / "chain.yaml").write_text(CHAIN % {"then": "next-elsewhere, fake-down-poke"})
    h = Harness(tmp_path, patterns=elsewhere, unbound="elsewhere")
    h.feed("up", 0, 4)
    inc = h.incident()
    h.run_until(lambda: len(h.actuator.calls) == 2, "up", 0)
    h.run_until(lambda: h.store.get(Incident, inc.id).state == IncidentState.RESOLVED, "up", 1)  # type: ignore[union-attr]
    assert [(a.pattern_id, a.type) for a in h.store.actions(incident_id=inc.id)] == [
        ("fake-down-first", "fake"), ("fake-down-poke", "fake")]
    [step] = [e for e in h.store.audit_events() if e.kind == "incident.escalation_step"]
    assert step.data["next"] == "fake-down-poke"
    assert "next-elsewhere" in step.data["passed_over"] and "no elsewhere actuator binding" in (
        step.data["passed_over"]["next-elsewhere"])


ERRORS_POKE = """
id: errors-poke
match: {cause: errors, kind: threshold}
action: {type: fake, params: {op: poke}}
prior_confidence: 0.9
rollback_safe: true
verify: {metric: error_rate, max: threshold, window_s: 10, delay_s: 3, min_samples: 3}
"""


def test_a_verification_bound_given_as_threshold_is_the_services_own_line(tmp_path: Path) -> None:
    """svc's error_rate line is 0.2 (the default is 0.05): a pattern verified with ``max:
    threshold`` judges the fix against 0.2, so errors settling at 0.1 pass, and the action keeps
    the number it was judged by."""
    services = [{"name": "svc", "actuators": {"fake": {"name": "x"}},
                 "thresholds": {"down_after": 2, "sustain": 2, "error_rate": 0.2}}]
    h = Harness(tmp_path, patterns=ERRORS_POKE, extra={"services": services})
    h.feed("error_rate", 0.01, 3)
    h.feed("error_rate", 0.5, 3)
    inc = h.incident()
    assert inc.cause == "errors"
    h.run_until(lambda: h.store.get(Incident, inc.id).state.terminal, "error_rate", 0.1)  # type: ignore[union-attr]
    (action,) = h.store.actions(incident_id=inc.id)
    assert action.verify is not None and (action.verify.max, action.verify.threshold) == (0.2, "max")
    assert action.state == ActionState.SUCCEEDED
    (outcome,) = h.store.outcomes(incident_id=inc.id)
    assert outcome.verdict == "pass"
    assert "max 0.2, the service threshold" in render_text(explain_incident(h.store, inc.id))


def _closed_long_ago(store: Store, days: float) -> Incident:
    """An incident closed ``days`` before T0, with one finding, stored as the engine stores them."""
    at = T0 - days * 86_400
    inc = Incident(service="svc", cause="down", severity=Severity.CRITICAL, kind=FindingKind.STATE, opened_at=at,
                   updated_at=at, last_finding_at=at, summary="down", state=IncidentState.RESOLVED, closed_at=at)
    finding = Finding(service="svc", metric="up", kind=FindingKind.STATE, cause="down", severity=Severity.CRITICAL,
                      confidence=1.0, ts=at, value=0.0, summary="down", incident_id=inc.id)
    store.record(finding, inc, actor="engine", event="incident.opened", subject=inc.id)
    return inc


def test_the_engine_prunes_what_retention_no_longer_keeps_at_start_and_every_interval(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'a.db'}")
    gone = _closed_long_ago(store, 91)  # retention keeps closed incidents 90 days by default
    kept = _closed_long_ago(store, 89)
    h = Harness(tmp_path, store=store, extra={"retention": {"interval_s": 3600}})
    h.feed("up", 1, 1)
    assert store.get(Incident, gone.id) is None and store.get(Incident, kept.id) is not None
    (pruned,) = [e for e in store.audit_events() if e.kind == "retention.pruned" and e.data["what"] == "incidents"]
    assert pruned.actor == "engine" and pruned.data["counts"]["incidents"] == 1
    later = _closed_long_ago(store, 100)
    h.feed("up", 1, 60)
    assert store.get(Incident, later.id) is not None  # not before retention.interval_s
    h.clock.advance(3600)
    h.feed("up", 1, 1)
    assert store.get(Incident, later.id) is None and store.verify_audit().ok


def test_a_replica_that_is_not_sure_it_leads_prunes_nothing(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'one.db'}")
    mono = _Mono()
    elector = LeaderElector(store, identity="a", lease_s=15, renew_s=10, monotonic=mono)
    assert elector.attempt()
    old = _closed_long_ago(store, 200)
    h = Harness(tmp_path, store=store)
    h.engine.elector = elector
    mono.t += 11  # past renew_s without a renewal: standing by
    h.feed("up", 1, 3)
    assert store.get(Incident, old.id) is not None
    assert elector.attempt()  # renewed: it leads again
    h.feed("up", 1, 1)
    assert store.get(Incident, old.id) is None


def test_a_replay_in_shadow_prunes_nothing_of_what_it_reports(tmp_path: Path) -> None:
    """``autonomic replay`` reads every incident from its private store at the end: a recording
    longer than the retention must not lose its first incidents to the engine's pruning."""
    store = Store("sqlite://")
    old = _closed_long_ago(store, 200)
    h = Harness(tmp_path, store=Store("sqlite://"))
    shadow = Engine(h.config, registry=h._registry, clock=h.clock, store=store, sources=[ReplaySource([])],
                    notifiers=Dispatcher([(FakeNotifier(), Level.INFO)], synchronous=True, dedup_s=0),
                    shadow_only=True)
    shadow.start()
    shadow.tick()
    assert store.get(Incident, old.id) is not None
    assert not (h.config.state_dir / "audit-archive").exists()


def test_with_leader_election_the_audit_log_is_archived_only_to_a_folder_named_for_every_replica(
        tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each replica's state_dir is its own (a pod's emptyDir): an archive there would be lost with
    the pod while the entries are gone from the shared database. So without retention.archive_dir
    the audit log is kept, and the start says why; closed incidents are pruned still."""
    import time

    import autonomic.knowledge.store as store_module
    from autonomic.knowledge.archive import CHUNK

    store = Store(f"sqlite:///{tmp_path / 'a.db'}")
    month_ago = time.time() - 30 * 86_400
    with monkeypatch.context() as m:  # audit entries written a month ago (stamped by the wall clock)
        m.setattr(store_module.time, "time", lambda: month_ago)
        with store.unit():
            for i in range(CHUNK + 1):
                store.audit("alice", "pause.set", "svc", {"i": i})
    old = _closed_long_ago(store, 200)
    engine = {"interval_s": 1, "state_dir": str(tmp_path / "state"), "host_metrics": False,
              "leader_election": {"enabled": True}}
    shared = tmp_path / "shared-archive"
    for archive, pruned in (({}, 0), ({"archive_dir": str(shared)}, CHUNK)):
        caplog.clear()
        h = Harness(tmp_path, store=store, extra={"engine": engine, "retention": {"audit_days": 7, **archive}})
        h.feed("up", 1, 1)
        assert store.audit_anchor()[0] == pruned
        assert ("audit entries are kept in the store" in caplog.text) == (not archive)
        assert store.get(Incident, old.id) is None
    assert [p.name for p in shared.iterdir()] == ["audit-000000000001-000000001000.jsonl.gz"]
    assert not (tmp_path / "state" / "audit-archive").exists() and store.verify_audit().ok


def test_a_leader_stops_its_supervised_services_while_it_still_renews_its_lease(tmp_path: Path) -> None:
    """Stopping, a leader stops its supervised services (each may take its stop_timeout_s) before
    its lease thread ends and the lease is released. Before, the lease thread ended first: services
    slow to stop outlasted lease_s, the lease lapsed, and the standby took over as from a crash
    (waiting out its takeover grace) instead of at its next round."""
    store = Store(f"sqlite:///{tmp_path / 'one.db'}")
    elector = LeaderElector(store, identity="a", lease_s=15, renew_s=10)
    assert elector.attempt()
    h = Harness(tmp_path, store=store, elector=elector)
    renewing_while_stopping: list[bool] = []

    def stop_all(timeout_s: float | None = None) -> None:
        renewing_while_stopping.append(
            any(t.name == "autonomic-lease" and t.is_alive() for t in threading.enumerate()))

    h.engine.supervisor.stop_all = stop_all  # type: ignore[method-assign]
    stop = threading.Event()
    h.engine.run(stop, on_tick=lambda _: stop.set())
    assert renewing_while_stopping == [True]
    assert store.lease("engine") is None or store.lease("engine").holder is None  # released after


def test_the_loop_says_why_it_stops_once_however_it_stops_before_the_services_stop(tmp_path: Path) -> None:
    """``on_stopping`` (what ``autonomic run`` tells systemd as STOPPING=1 and a STATUS): called
    once, before the supervised services are stopped, when the loop is asked to stop and when it
    raises (the exception still goes up). Before, only a signal was told, by the CLI itself."""
    said: list[str] = []
    order: list[str] = []
    h = Harness(tmp_path)
    h.engine.supervisor.stop_all = lambda timeout_s=None: order.append("services stopped")  # type: ignore[method-assign]
    stop = threading.Event()
    h.engine.run(stop, on_tick=lambda _: stop.set(), on_stopping=lambda why: (said.append(why), order.append(why)))
    assert said == ["stopping after the current step"]
    assert order == ["stopping after the current step", "services stopped"]

    said.clear()
    (tmp_path / "again").mkdir()
    failing = Harness(tmp_path / "again")

    def tick() -> None:
        raise RuntimeError("the store went away")

    failing.engine.tick = tick  # type: ignore[method-assign]
    with pytest.raises(RuntimeError, match="the store went away"):
        failing.engine.run(threading.Event(), on_stopping=said.append)
    assert said == ["stopping: the engine loop failed (RuntimeError: the store went away)"]


SETTLE_WORKFLOW = """
id: fake-down-settle
match: {cause: down, kind: state}
action:
  steps:
    - {name: set, type: fake, params: {op: poke, value: 0}}
    - {name: then, type: fake, params: {op: poke, value: %(then)d}}
prior_confidence: 1.0
rollback_safe: true
verify: {metric: up, min: 1, window_s: 10, delay_s: 3, min_samples: 3}
"""


class SettledActuator(FakeActuator):
    """A fake actuator that can tell an action would change nothing (as the config actuator can
    for a value already set): ``value: 0`` is what the service has already. Records what the
    engine's watchdog was told the loop was doing during each read."""

    def __init__(self) -> None:
        super().__init__()
        self.engine: Engine | None = None
        self.reads: list[str] = []

    def no_effect(self, target: Target, params: BaseModel) -> str | None:
        assert self.engine is not None
        self.reads.append(self.engine.watchdog.doing)
        return "value 0 is set already" if getattr(params, "value", None) == 0 else None


def _settle_harness(tmp_path: Path, then: int) -> tuple[Harness, SettledActuator]:
    pdir = tmp_path / "patterns"
    pdir.mkdir(exist_ok=True)
    (pdir / "settle.yaml").write_text(SETTLE_WORKFLOW % {"then": then})
    actuator = SettledActuator()
    h = Harness(tmp_path, actuator=actuator)
    actuator.engine = h.engine
    return h, actuator


def test_a_workflow_every_step_of_which_would_change_nothing_is_passed_over_for_the_next_remedy(
        tmp_path: Path) -> None:
    """Before, only single-step actions were asked whether they would change anything: a workflow
    of no-ops ran, then waited its verification window for nothing. Now it is passed over as one
    that cannot run here, naming each step's reason, and the next remedy is carried out. Each
    read is named to the loop's watchdog first (an actuator call made while diagnosing)."""
    h, actuator = _settle_harness(tmp_path, then=0)
    h.feed("up", 0, 4)
    (action,) = h.store.actions()
    assert action.pattern_id == "fake-down-poke"
    (diagnosis,) = h.store.diagnoses(h.incident().id)
    settle = next(c for c in diagnosis.candidates if c.pattern_id == "fake-down-settle")
    assert ("passed over here: svc: every step would change nothing: step 1/2 fake:set: value 0 is set already; "
            "step 2/2 fake:then: value 0 is set already") in settle.reasons
    read = "fake on svc: reading whether {} would change anything (an actuator call)"
    assert sorted(actuator.reads) == [read.format("fake-down-poke"), *[read.format("fake-down-settle")] * 2]


def test_a_workflow_with_one_step_that_changes_something_is_carried_out_whole(tmp_path: Path) -> None:
    """A no-op step followed by one that changes something (a value set already, then a restart)
    is no no-op: the workflow is chosen and runs both steps."""
    h, _ = _settle_harness(tmp_path, then=1)
    h.feed("up", 0, 4)
    (action,) = h.store.actions()
    assert action.pattern_id == "fake-down-settle" and len(action.workflow) == 2
    key = action.idempotency_key
    assert [c for c in h.actuator.calls if c[0] == "apply"] == [("apply", "svc", f"{key}:0"),
                                                                  ("apply", "svc", f"{key}:1")]


def test_a_pause_file_written_by_hand_denies_at_the_paused_gate_and_is_audited_once(tmp_path: Path) -> None:
    """``<state_dir>/paused``, created by a person without the store (``echo why > paused``):
    nothing acts, the decision's paused gate names the file, and the engine audits it appearing
    once; once it is removed the incident is taken up again and fixed."""
    h = Harness(tmp_path)
    path = pause_file(h.config.state_dir, None)
    path.write_text("database maintenance\nsecond line ignored\n")
    h.feed("up", 0, 4)
    (decision,) = h.store.decisions(h.incident().id)
    gate = next(g for g in decision.gates if g.gate == "paused")
    assert not gate.passed and "database maintenance" in gate.reason and str(path) in gate.reason
    assert h.actuator.calls == []
    assert [e.kind for e in h.store.audit_events()].count("pause.file") == 1
    path.unlink()
    h.run_until(lambda: any(a.state.terminal for a in h.store.actions()), "up", 0)
    assert [c for c, *_ in h.actuator.calls][:1] == ["apply"]
    assert [e.kind for e in h.store.audit_events()].count("pause.file_gone") == 1


def test_a_service_pause_file_set_after_the_decision_cancels_the_action_before_the_actuator_runs(
        tmp_path: Path) -> None:
    h = Harness(tmp_path)
    h.feed("up", 1, 2)
    real_prepare = h.engine.executor.prepare

    def prepare_then_pause(*args: Any, **kwargs: Any) -> Any:
        action = real_prepare(*args, **kwargs)
        pause_file(h.config.state_dir, "svc").write_text(json.dumps({"reason": "hands off", "actor": "person:b"}))
        return action

    h.engine.executor.prepare = prepare_then_pause  # type: ignore[method-assign]
    h.feed("up", 0, 5)
    (action,) = h.store.actions()
    assert action.state == ActionState.CANCELLED and "hands off" in (action.error or "")
    assert h.actuator.calls == []


def test_a_pause_file_stands_without_reading_the_store_and_an_unreadable_one_pauses_too(tmp_path: Path) -> None:
    """The kill switch must not depend on the database: with a global pause file the store is
    not read at all (here it would raise); a pause file that cannot be read (a folder) pauses."""
    state_dir = tmp_path / "state"
    state_dir.mkdir()

    class Unreadable:
        def get_state(self, key: str) -> Any:
            raise AssertionError("the store was read")

    pause_file(state_dir, None).write_text("")
    why = paused_reason(Unreadable(), "svc", state_dir)  # type: ignore[arg-type]
    assert why == f"global pause by the pause file {state_dir / 'paused'}"
    pause_file(state_dir, None).unlink()
    pause_file(state_dir, "svc").mkdir()
    why = paused_reason(Store("sqlite://"), "svc", state_dir)
    assert why is not None and "unreadable" in why
    assert paused_reason(Store("sqlite://"), "other", state_dir) is None


def test_pause_files_written_at_once_by_several_threads_each_succeed(tmp_path: Path) -> None:
    """Two people press the dashboard's kill switch at the same moment while the store cannot be
    written: the API (one process, a thread per request) writes the pause file from both threads
    (real threads, a real folder). Each write succeeds and the file is one whole pause.

    Before: both threads used the same temporary file (named by the process id only), so one's
    rename found it gone (FileNotFoundError): the API answered 503 "nothing is paused" while
    automation was paused."""
    from autonomic.engine import read_pause_file, write_pause_file

    failed: list[OSError] = []
    start = threading.Barrier(4)

    def press(who: str) -> None:
        start.wait()
        for _ in range(100):
            try:
                write_pause_file(tmp_path, None, f"pressed by {who}", who, T0)
            except OSError as exc:
                failed.append(exc)

    threads = [threading.Thread(target=press, args=(f"person:{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failed == []
    entry = read_pause_file(pause_file(tmp_path, None))
    assert entry is not None and entry["reason"].startswith("pressed by person:")
    assert [p.name for p in tmp_path.iterdir()] == ["paused"]  # no temporary file left behind


def test_each_notification_is_kept_in_the_outbox_until_delivered_and_one_rolled_back_is_neither_kept_nor_sent(
        tmp_path: Path) -> None:
    """A notification goes to the store's outbox before the notifiers and leaves it at the tick
    after they are through with it; one made inside a store unit that rolls back (a decision not
    recorded) leaves no outbox entry and reaches nobody."""
    h = Harness(tmp_path)

    def outbox() -> list[str]:
        return sorted(v["notification"]["title"] for v in h.store.states("outbox:").values())

    kept: list[dict[str, Any]] = []
    real_forget = h.store.forget_states
    h.store.forget_states = lambda keys: (kept.extend(h.store.get_states(keys).values()),  # type: ignore[method-assign]
                                          real_forget(keys))[1]
    before = len(h.notifier.sent)
    h.engine.notify(Notification(level=Level.ALERT, title="kept, then forgotten", ts=h.clock.now()))
    assert len(h.notifier.sent) == before + 1
    assert outbox() == ["kept, then forgotten"]
    h.engine.tick()  # the synchronous notifier delivered it at once: the next tick forgets it
    assert outbox() == [] and [k["notification"]["title"] for k in kept] == ["kept, then forgotten"]

    with pytest.raises(RuntimeError), h.engine._holding_notifications(), h.store.unit():
        h.engine.notify(Notification(level=Level.ALERT, title="never", ts=h.clock.now()))
        assert outbox() == ["never"]  # inside the unit, beside its other writes
        raise RuntimeError("the unit fails")
    assert outbox() == [] and "never" not in [n.title for n in h.notifier.sent]


def test_every_notification_gets_an_id_the_kept_one_its_outbox_keys_and_one_not_kept_its_own(
        tmp_path: Path) -> None:
    """A kept notification's id is its outbox key's (so a later engine's resend carries it); one
    not kept (shadow mode: ``autonomic replay``) gets one all the same; one that has an id keeps it."""
    h = Harness(tmp_path)
    h.engine.notify(Notification(level=Level.ALERT, title="kept", ts=h.clock.now()))
    (key,) = h.store.states("outbox:")
    assert h.notifier.sent[-1].id == key.removeprefix("outbox:") and len(key.removeprefix("outbox:")) == 32
    h.engine.notify(Notification(level=Level.ALERT, title="named", ts=h.clock.now(), id="given"))
    assert h.notifier.sent[-1].id == "given" and "outbox:given" in h.store.states("outbox:")

    seen = FakeNotifier()
    shadow = Engine(h.config, clock=h.clock, store=Store("sqlite://"), sources=[], shadow_only=True,
                    notifiers=Dispatcher([(seen, Level.INFO)], synchronous=True, dedup_s=0))
    shadow.notify(Notification(level=Level.ALERT, title="not kept", ts=h.clock.now()))
    assert shadow.store.states("outbox:") == {}
    assert [n.title for n in seen.sent] == ["not kept"] and len(seen.sent[0].id or "") == 32


def test_pending_notifications_name_the_count_the_oldest_the_failing_notifiers_and_an_overdue_retry() -> None:
    """The outbox as people read it: a notification on its way for the first time counts but
    fails nobody; one a notifier gave up on names it; a retry whose time has passed (no engine
    leads to make it) is said to be overdue, not to come."""
    from autonomic.engine import pending_notifications, pending_notifications_text

    outbox = {"outbox:a": {"queued_at": T0 - 600, "routes": ["slack"], "retries": 3, "due": T0 - 120},
              "outbox:b": {"queued_at": T0 - 30, "routes": ["slack", "email"], "retries": 1, "due": T0 + 30},
              "outbox:c": {"queued_at": T0 - 1, "routes": None, "retries": 0, "due": None}}
    pending = pending_notifications(outbox, T0)
    assert pending == {"count": 3, "oldest_at": T0 - 600, "oldest_s": 600.0, "failing": {"email": 1, "slack": 2},
                       "next_retry_at": T0 - 120}
    assert pending_notifications_text(pending, T0) == (
        "3 notifications waiting to be delivered, the oldest made 10.0 min ago; failing: email (1), slack (2); "
        "next retry due 2.0 min ago")
    assert pending_notifications_text(pending_notifications({"outbox:c": outbox["outbox:c"]}, T0), T0) == (
        "1 notification waiting to be delivered, the oldest made 1 s ago")
    assert pending_notifications_text(pending_notifications({}, T0), T0) is None


def test_a_delivered_notification_the_store_would_not_forget_is_forgotten_at_a_later_tick(tmp_path: Path) -> None:
    """The store refuses the write that forgets a delivered notification once (SQLite locked by
    another writer for a moment); the next tick forgets it, so the next engine to start does not
    page anyone with it again (days later, maybe).

    Before: the keys were taken from memory before the write and not put back when it failed:
    the entry stayed in the outbox until the engine stopped, and the next one sent it again."""
    from autonomic.errors import StoreError

    h = Harness(tmp_path)
    real_forget, refused = h.store.forget_states, []

    def forget_once_refused(keys: Any) -> None:
        if not refused:
            refused.append(list(keys))
            raise StoreError("store write failed: database is locked")
        real_forget(keys)

    h.store.forget_states = forget_once_refused  # type: ignore[method-assign]
    h.engine.notify(Notification(level=Level.ALERT, title="delivered", ts=h.clock.now()))
    h.engine.tick()  # the forget is refused
    assert refused and [v["notification"]["title"] for v in h.store.states("outbox:").values()] == ["delivered"]
    h.engine.tick()
    assert h.store.states("outbox:") == {}
    later = Harness(tmp_path, store=h.store)  # the next engine's start sends nothing of it again
    assert "delivered" not in [n.title for n in later.notifier.sent]


def test_an_engine_sends_what_the_outbox_holds_at_its_start_and_drops_an_entry_that_is_not_a_notification(
        tmp_path: Path) -> None:
    """What an engine before it kept and did not deliver is sent at the start (once, though the
    start itself notifies too); an entry that does not parse as a notification is dropped and
    counted, and does not stop the start."""
    store = Store("sqlite://")
    good = Notification(level=Level.ALERT, title="svc is down", ts=T0 - 5).model_dump(mode="json")
    store.keep_states({"outbox:bad": {"notification": {"title": 3}, "queued_at": T0 - 9},
                       "outbox:good": {"notification": good, "queued_at": "not a time"}})
    h = Harness(tmp_path, store=store)
    assert [n.title for n in h.notifier.sent] == ["svc is down"]
    h.engine.tick()
    assert store.states("outbox:") == {}
    resent = [e for e in store.audit_events() if e.kind == "notifications.resent"]
    assert [e.data for e in resent] == [{"count": 1, "dropped": 1, "given_up": 0}]


def test_a_left_over_notification_older_than_the_retry_horizon_is_given_up_at_the_start_not_sent(
        tmp_path: Path) -> None:
    """An engine down for hours (or a notifier down that long) leaves a page made long ago. Before,
    the next engine sent it at its start, whatever its age: "web is down", hours after web came
    back. Now, made longer than ``engine.notify_retry_for_s`` (an hour) ago, it is given up as a
    running engine gives one up: not sent, forgotten, audited ``notification.undelivered``."""
    store = Store("sqlite://")
    old = Notification(level=Level.ALERT, title="web is down", ts=T0 - 7200).model_dump(mode="json")
    fresh = Notification(level=Level.ALERT, title="api is down", ts=T0 - 60).model_dump(mode="json")
    store.keep_states({"outbox:old": {"notification": old, "queued_at": T0 - 7200, "routes": ["fake"]},
                       "outbox:fresh": {"notification": fresh, "queued_at": T0 - 60}})
    h = Harness(tmp_path, store=store)
    assert [n.title for n in h.notifier.sent] == ["api is down"]
    h.engine.tick()
    assert store.states("outbox:") == {}
    [undelivered] = [e for e in store.audit_events() if e.kind == "notification.undelivered"]
    assert undelivered.data["title"] == "web is down" and undelivered.data["made_at"] == T0 - 7200
    [resent] = [e for e in store.audit_events() if e.kind == "notifications.resent"]
    assert resent.data == {"count": 1, "dropped": 0, "given_up": 1}


def test_a_left_over_notification_kept_for_a_notifier_no_longer_configured_goes_to_every_notifier_that_takes_it(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The outbox keeps a failed notification for the notifiers that failed, by name. Renamed in
    the config meanwhile ("slack" now "slack-oncall"), no route had that name: the dispatcher
    found nothing to send it to, called it done, and the engine forgot it as delivered. Now it
    goes to every notifier that takes its level, with a warning naming the notifier gone."""
    store = Store("sqlite://")
    page = Notification(level=Level.ALERT, title="db is down", ts=T0 - 60).model_dump(mode="json")
    store.keep_states({"outbox:x": {"notification": page, "queued_at": T0 - 60, "routes": ["slack"]}})
    with caplog.at_level("WARNING", logger="autonomic.engine"):
        h = Harness(tmp_path, store=store)
    assert [n.title for n in h.notifier.sent] == ["db is down"]
    assert "'db is down' was kept for slack, not in this config" in caplog.text


def test_the_retry_horizon_is_engine_notify_retry_for_s(tmp_path: Path) -> None:
    """With ``engine.notify_retry_for_s: 300``, a notification the pager never takes is given up 5
    min after it was made (audited ``notification.undelivered``), not after the default hour; the
    log line says how long it was tried."""
    h = Harness(tmp_path, extra={"engine": {"interval_s": 1, "state_dir": str(tmp_path / "state"),
                                            "host_metrics": False, "settle_s": 0, "resolve_after_s": 30,
                                            "notify_retry_for_s": 300}})
    pager = _Pager()
    h.engine.notifiers = Dispatcher([Route(pager, name="pager")], synchronous=True, max_attempts=1, dedup_s=0)
    h.engine.notify(Notification(level=Level.ALERT, title="lost", ts=h.clock.now()))
    for _ in range(4):  # 30 s, 1 min, 2 min after it failed: 3.5 min, still kept
        h.clock.advance(70)
        h.engine.tick()
    assert [v["notification"]["title"] for v in h.store.states("outbox:").values()] == ["lost"]
    for _ in range(3):
        h.clock.advance(70)
        h.engine.tick()
    assert h.store.states("outbox:") == {}
    (gone,) = [e for e in h.store.audit_events() if e.kind == "notification.undelivered"]
    assert gone.data["title"] == "lost" and gone.data["notifiers"] == ["pager"]


def test_a_retry_for_a_notifier_renamed_since_goes_to_the_notifiers_there_are_now(tmp_path: Path) -> None:
    """A page the pager refused waits in the outbox for "pager" alone; the config is reloaded with
    that notifier renamed. Before, the retry named a route that no longer existed, the dispatcher
    found nothing to send it to and called it done, and the engine forgot it as delivered: lost.
    Now it goes to every notifier that takes its level."""
    h = Harness(tmp_path)
    pager = _Pager()
    h.engine.notifiers = Dispatcher([Route(pager, name="pager")], synchronous=True, max_attempts=1, dedup_s=0)
    h.engine.notify(Notification(level=Level.ALERT, title="db is down", ts=h.clock.now()))
    h.engine.tick()
    assert [v["routes"] for v in h.store.states("outbox:").values()] == [["pager"]]
    renamed = _Pager()
    renamed.down = False
    h.engine.notifiers = Dispatcher([Route(renamed, name="pager-oncall")], synchronous=True, max_attempts=1,
                                    dedup_s=0)
    h.clock.advance(31)
    h.engine.tick()  # the retry, due 30 s after the failure
    h.engine.tick()  # settled
    assert [n.title for n in renamed.sent] == ["db is down"]
    assert h.store.states("outbox:") == {}


# a remedy through the docker actuator (served here by the fake one, bound on svc as docker), ranked
# above fake-down-poke: it acts on the service's running state, as a person's stop does
DOCKER_POKE = """
id: docker-down-poke
match: {cause: down, kind: state}
action: {type: docker, params: {op: poke}}
prior_confidence: 1.0
rollback_safe: true
verify: {metric: up, min: 1, window_s: 10, delay_s: 3, min_samples: 3}
"""

# a workflow whose second step goes through docker and whose third fails
DOCKER_WORKFLOW = """
id: docker-down-workflow
match: {cause: down, kind: state}
action:
  steps:
    - {name: first, type: fake, params: {op: poke}}
    - {name: second, type: docker, params: {op: poke}}
    - {name: third, type: fake, params: {op: fail}}
prior_confidence: 1.0
rollback_safe: true
verify: {metric: up, min: 1, window_s: 10, delay_s: 3, min_samples: 3}
"""


def _person_stops(store: Store, now: float) -> None:
    """Record a person's stop of svc on purpose, as the engine does first when it carries out
    ``autonomic stop svc`` (before it stops anything)."""
    store.set_state(stopped_key("svc"), {"actor": "person:ana", "comment": "disk swap", "ts": now},
                    actor="person:ana", event="service.stopped_on_purpose", data={"service": "svc"})


def test_a_persons_stop_holds_the_undo_of_a_fix_that_failed_verification_and_records_why(tmp_path: Path) -> None:
    """A docker remedy fails its verification; in the instant between the verdict and the undo a
    person stops svc. The undo (which would start what they stopped) does not run: the action is
    escalated naming the person's stop (who, when, the comment), audited ``action.undo_held``
    with ``stopped_on_purpose``, told at info; the failed verdict is on the pattern's record and
    no breaker opens (no undo failed).

    Before: ``Executor._rollback`` asked only the kill switch, so the undo ran."""
    h = Harness(tmp_path, also="docker", patterns=DOCKER_POKE)
    real_rollback = h.engine.executor._rollback

    def stop_then_rollback(action: Action, now: float, reason: str) -> float | None:
        _person_stops(h.store, now)
        return real_rollback(action, now, reason)

    h.engine.executor._rollback = stop_then_rollback  # type: ignore[method-assign]
    inc = _undone_fix_that_left_it_down(h)

    assert [c for c, *_ in h.actuator.calls] == ["apply"]
    (action,) = h.store.actions()
    assert action.pattern_id == "docker-down-poke" and action.state == ActionState.ESCALATED
    assert "not undone, it would start what a person stopped (svc was stopped on purpose by person:ana at " in (
        action.error or ""), action.error
    assert "(disk swap)" in (action.error or "")
    [held] = [e for e in h.store.audit_events(subject=action.id) if e.kind == "action.undo_held"]
    assert held.data["stopped_on_purpose"] is True and "person:ana" in held.data["stopped"]
    (outcome,) = h.store.outcomes(incident_id=inc.id)
    assert outcome.verdict == "fail" and not outcome.rolled_back
    assert (h.store.get_state("breaker:global") or {}).get("state") != "open"
    told = [n for n in h.notifier.sent if "not undone" in n.title]
    assert [(n.level, n.title) for n in told] == [(Level.INFO, "docker on svc made things worse; not undone "
                                                               "(stopped on purpose)")]


def test_a_pause_set_while_an_undo_reads_the_persons_stop_still_holds_the_undo(tmp_path: Path) -> None:
    """The kill switch is the last thing read before an undo's actuator call: a docker remedy fails
    its verification, and while the rollback reads whether a person stopped svc (nobody did) a
    person pauses all automation. The undo is not run: escalated as held by the pause.

    Before: ``Executor._rollback`` read the kill switch first and the person's stop after it, so a
    pause set during that read (a slow store) was not seen and the undo ran."""
    h = Harness(tmp_path, also="docker", patterns=DOCKER_POKE)
    real_rollback, real_stopped = h.engine.executor._rollback, h.engine.executor.stopped
    rolling_back: list[bool] = []

    def rollback(action: Action, now: float, reason: str) -> float | None:
        rolling_back.append(True)
        return real_rollback(action, now, reason)

    def stopped_while_a_person_pauses(service: str, action_type: str) -> str | None:
        if rolling_back:
            h.store.set_state(pause_key(None), {"reason": "hands off", "actor": "person:ops"}, actor="person:ops",
                              event="pause.set")
        return real_stopped(service, action_type)

    h.engine.executor._rollback = rollback  # type: ignore[method-assign]
    h.engine.executor.stopped = stopped_while_a_person_pauses
    _undone_fix_that_left_it_down(h)

    assert rolling_back
    assert [c for c, *_ in h.actuator.calls] == ["apply"]
    (action,) = h.store.actions()
    assert action.state == ActionState.ESCALATED
    assert "not undone, automation is paused (global pause by person:ops: hands off)" in (action.error or ""), \
        action.error


def test_a_persons_stop_during_a_docker_remedys_verification_cancels_it_rather_than_judging_it(
        tmp_path: Path) -> None:
    """The verdict of a remedy through docker (an actuator on the service's running state, as
    process is) is not judged once a person has stopped the service: cancelled at the window's
    end naming the stop, no outcome on the pattern's record, nothing undone.

    Before: only ``process`` actions were held by a person's stop; a docker one was judged
    (failed, and its undo would have started the container again)."""
    h = Harness(tmp_path, also="docker", patterns=DOCKER_POKE)
    h.feed("up", 1, 2)
    h.feed("up", 0, 3)
    inc = h.incident()
    (action,) = h.store.actions()
    assert action.type == "docker" and action.state == ActionState.VERIFYING
    _person_stops(h.store, h.clock.now())
    h.run_until(lambda: h.store.get(Incident, inc.id).state.terminal, "up", 0)  # type: ignore[union-attr]

    done = h.store.get(Action, action.id)
    assert done is not None and done.state == ActionState.CANCELLED, (done.state if done else None)
    assert (done.error or "").startswith("stopped: svc was stopped on purpose by person:ana")
    assert h.store.outcomes(incident_id=inc.id) == []
    assert [c for c, *_ in h.actuator.calls] == ["apply"]


def test_a_persons_stop_holds_the_compensation_that_would_start_the_service_again(tmp_path: Path) -> None:
    """A workflow's third step fails while a person stops svc; compensating its second step (docker)
    would start what they stopped, so it is not run, nor the compensations after it: the action is
    escalated listing what is left in place and naming the stop, told at info, and no breaker
    opens (no compensation failed).

    Before: only a workflow's forward steps were checked against a person's stop; both steps were
    compensated."""

    class StoppedDuring(FakeActuator):
        def apply(self, target: Any, params: Any, key: str, snapshot: Any) -> dict[str, Any]:
            if getattr(params, "op", None) == "fail":
                _person_stops(h.store, h.clock.now())  # a person stops svc while this step runs
            return super().apply(target, params, key, snapshot)

    h = Harness(tmp_path, also="docker", patterns=DOCKER_WORKFLOW, actuator=StoppedDuring())
    h.feed("up", 0, 4)

    (action,) = h.store.actions()
    key = action.idempotency_key
    assert action.pattern_id == "docker-down-workflow"
    assert h.actuator.calls == [("apply", "svc", f"{key}:0"), ("apply", "svc", f"{key}:1"),
                                ("apply", "svc", f"{key}:2")]
    assert action.state == ActionState.ESCALATED
    assert "left in place, not compensated (it would start what a person stopped: svc was stopped on purpose by " \
           "person:ana" in (action.error or ""), action.error
    assert (action.error or "").endswith("step 1/3 fake:first, step 2/3 docker:second")
    assert (h.store.get_state("breaker:global") or {}).get("state") != "open"
    assert h.store.outcomes(incident_id=action.incident_id) == []
    told = [n for n in h.notifier.sent if "needs a person" in n.title]
    assert [n.level for n in told] == [Level.INFO]
    assert not any("FAILED" in n.title for n in h.notifier.sent)


def test_a_persons_stop_after_an_undo_ran_is_not_judged_as_the_undo_failing_to_restore_health(
        tmp_path: Path) -> None:
    """A fake remedy fails its verification and is undone; while the watch after the undo runs a
    person stops svc. Whether the undo restored health is not judged (svc is down because they
    asked): rolled back, its verify-undo step and the audited ``action.rolled_back`` say not
    judged, naming who stopped it and when (``stopped_on_purpose``), the outcome has no undo
    verdict, and nothing alerts "the undo did NOT restore health": told at info.

    Before: ``Executor._verify_undo`` judged the stopped service and alerted that the undo did
    not restore health."""
    h = Harness(tmp_path)
    h.feed("up", 1, 2)
    h.feed("up", 0, 3)
    inc = h.incident()
    _healthy_baseline(h)
    h.run_until(lambda: h.store.actions()[0].state == ActionState.VERIFYING_UNDO, "up", 0)
    _person_stops(h.store, h.clock.now())
    h.run_until(lambda: h.store.get(Incident, inc.id).state.terminal, "up", 0)  # type: ignore[union-attr]

    assert [c for c, *_ in h.actuator.calls] == ["apply", "undo"]
    (action,) = h.store.actions()
    assert action.state == ActionState.ROLLED_BACK
    check = action.steps[-1]
    assert check.name == "verify-undo" and check.detail["verdict"] is None
    assert check.detail["reason"].startswith("not judged: svc was stopped on purpose by person:ana at ")
    [rolled] = [e for e in h.store.audit_events(subject=action.id) if e.kind == "action.rolled_back"]
    assert rolled.data["stopped_on_purpose"] is True and rolled.data["undo_restored_health"] is None
    assert f"by person:ana at {utc_stamp(T0)[:10]}" in rolled.data["stopped"], rolled.data["stopped"]
    (outcome,) = h.store.outcomes(incident_id=inc.id)
    assert outcome.rolled_back and outcome.verdict == "fail" and outcome.undo_verdict is None
    assert not any("did NOT restore" in n.body for n in h.notifier.sent)
    told = [n for n in h.notifier.sent if n.title.startswith("rolled back")]
    assert [(n.level, n.title) for n in told] == [(Level.INFO, "rolled back fake on svc; the undo not judged "
                                                               "(stopped on purpose)")]


def test_a_persons_stop_during_the_verification_of_a_remedy_that_cannot_start_it_cancels_it_too(
        tmp_path: Path) -> None:
    """A remedy through an actuator that does not act on the service's running state (the fake
    one here, as a config change) is not judged either once a person has stopped the service:
    its metrics say nothing of the fix. Cancelled at the window's end naming the stop, no outcome
    on the pattern's record, nothing undone, no alert.

    Before: only process, systemd, docker and kubernetes remedies were held; this one was judged
    on the stopped service, failed, was undone, and the undo check alerted."""
    h = Harness(tmp_path)
    h.feed("up", 1, 2)
    h.feed("up", 0, 3)
    inc = h.incident()
    _healthy_baseline(h)
    (action,) = h.store.actions()
    assert action.type == "fake" and action.state == ActionState.VERIFYING
    _person_stops(h.store, h.clock.now())
    h.run_until(lambda: h.store.get(Incident, inc.id).state.terminal, "up", 0)  # type: ignore[union-attr]

    done = h.store.get(Action, action.id)
    assert done is not None and done.state == ActionState.CANCELLED, (done.state if done else None)
    assert (done.error or "").startswith("stopped: svc was stopped on purpose by person:ana")
    assert h.store.outcomes(incident_id=inc.id) == []
    assert [c for c, *_ in h.actuator.calls] == ["apply"]
    assert not any(n.level == Level.ALERT and n.service == "svc" and "fake" in n.title for n in h.notifier.sent)


@pytest.mark.parametrize(("n", "said"), [(1, "1 finding kept"), (2, "2 findings kept")])
def test_a_store_that_refuses_writes_is_logged_with_the_findings_kept_in_words(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, n: int, said: str) -> None:
    from autonomic.errors import StoreError

    h = Harness(tmp_path, policy={"autonomy": "observe"})
    h.feed("up", 1, 1)
    queue_findings(h.store, [_alert(h, f"A{i}") for i in range(n)], h.clock.now(), actor="webhook")

    def locked(*args: Any, **kwargs: Any) -> Any:
        raise StoreError("store write failed: database is locked")

    monkeypatch.setattr(h.store, "record", locked)
    with caplog.at_level("ERROR", logger="autonomic.engine"):
        h.feed("up", 1, 1)
    [refused] = [r.getMessage() for r in caplog.records if "the store refused a write" in r.getMessage()]
    assert refused.startswith(f"the store refused a write; {said} for the next tick: ")


@pytest.mark.parametrize(("failures", "said"), [(1, "1 consecutive failed intervention; "),
                                                (2, "2 consecutive failed interventions; ")])
def test_the_breaker_alert_counts_the_failed_interventions_in_words(tmp_path: Path, failures: int,
                                                                    said: str) -> None:
    h = Harness(tmp_path, op="fail", policy={"breaker": {"failures": failures, "open_s": 3600},
                                             "confidence_threshold": 0.1})
    for _ in range(failures):
        h.feed("up", 0, 3)
        h.run_until(lambda: h.store.incidents()[0].state.terminal, "up", 0)
        h.feed("up", 1, 40)
    (opened,) = [n for n in h.notifier.sent if n.title == "circuit breaker opened for global actions"]
    assert opened.body.startswith(said)


class _Pager:
    """A notifier that refuses every notification while ``down``."""

    name = "pager"

    def __init__(self) -> None:
        self.down = True
        self.calls = 0
        self.sent: list[Notification] = []

    def send(self, notification: Notification) -> None:
        self.calls += 1
        if self.down:
            raise ConnectionError("pager unreachable")
        self.sent.append(notification)


def test_a_notification_a_notifier_gave_up_on_is_offered_to_it_again_with_backoff_then_given_up_after_an_hour(
        tmp_path: Path) -> None:
    """A pager down for a minute does not lose a page: the notification stays in the outbox for
    the pager alone (the console, which took it, does not get it twice), is offered again after
    30 s, then 1 min, and is forgotten once delivered. One the pager never takes is given up an
    hour after it was made: logged, audited ``notification.undelivered``, gone from the outbox."""
    h = Harness(tmp_path)
    pager, console = _Pager(), FakeNotifier()
    h.engine.notifiers = Dispatcher([Route(console, name="console"), Route(pager, name="pager")], synchronous=True,
                                    max_attempts=1, dedup_s=0)

    def kept() -> list[dict[str, Any]]:
        return [v for v in h.store.states("outbox:").values() if v["notification"]["title"] in ("page", "lost")]

    def tick(seconds: float) -> None:
        h.clock.advance(seconds)
        h.engine.tick()

    h.engine.notify(Notification(level=Level.ALERT, title="page", ts=h.clock.now()))
    assert (pager.calls, [n.title for n in console.sent].count("page")) == (1, 1)
    tick(0)
    assert [(v["routes"], v["retries"]) for v in kept()] == [(["pager"], 1)]
    tick(20)
    assert pager.calls == 1  # not due yet
    tick(15)
    assert pager.calls == 2  # 30 s after it failed, to the pager only
    tick(0)
    assert [(v["routes"], v["retries"]) for v in kept()] == [(["pager"], 2)]
    pager.down = False
    tick(40)
    assert pager.calls == 2  # the second wait is a minute
    tick(25)
    assert [n.title for n in pager.sent] == ["page"]
    tick(0)
    assert kept() == [] and [n.title for n in console.sent].count("page") == 1

    pager.down = True
    h.engine.notify(Notification(level=Level.ALERT, title="lost", ts=h.clock.now()))
    for _ in range(int(h.config.engine.notify_retry_for_s // 300) + 2):
        tick(300)
    assert kept() == []
    (gone,) = [e for e in h.store.audit_events() if e.kind == "notification.undelivered"]
    assert gone.data["title"] == "lost" and gone.data["notifiers"] == ["pager"] and gone.data["retries"] >= 5


def test_an_approval_of_a_remedy_whose_pattern_left_the_library_diagnoses_again_and_asks_again(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A person approves a remedy; before the engine acts on it, a reload (or a restart) brings a
    library where its pattern is renamed (here ``fake-down-poke`` to ``fake-down-poke-v2``, its
    verification changed). The engine used to run the approved action as no pattern's: verified by
    a default ``up`` >= 1 for 30 s instead of the pattern's own, its outcome on no pattern's record
    (nor counted by a crash loop's ``after_actions``). Now the stale diagnosis is made again from
    the library in force, and its remedy decided through every gate: at ``approve``, the person is
    asked again about the pattern that now holds, and nothing runs meanwhile."""
    store = Store("sqlite://")
    first = Harness(tmp_path, policy={"autonomy": "approve"}, store=store)
    first.feed("up", 0, 4)
    inc = first.incident()
    assert inc.state == IncidentState.AWAITING_APPROVAL
    answer_approval(store, inc.id, "approve", actor="person:ann", comment="go", now=first.clock.now(),
                    approval_ttl_s=3600.0)
    renamed = PATTERN.replace("fake-down-poke", "fake-down-poke-v2").replace("window_s: 10", "window_s: 12")
    monkeypatch.setattr(f"{__name__}.PATTERN", renamed)
    h = Harness(tmp_path, policy={"autonomy": "approve"}, store=store, start_at=first.clock.now())
    h.feed("up", 0, 2)
    assert store.actions() == [] and h.actuator.calls == []
    again = store.get(Incident, inc.id)
    assert again is not None and again.state == IncidentState.AWAITING_APPROVAL
    latest = store.diagnoses(inc.id)[-1]
    assert latest.pattern_id == "fake-down-poke-v2"
    assert "fake-down-poke, which diagnosed it, is no longer in the pattern library" in latest.rationale
    decisions = store.decisions(inc.id)
    assert [(d.verdict, d.pattern_id) for d in decisions] == [
        (Verdict.NEEDS_APPROVAL, "fake-down-poke"), (Verdict.NEEDS_APPROVAL, "fake-down-poke-v2")]
    answer_approval(store, inc.id, "approve", actor="person:ann", comment="go", now=h.clock.now(),
                    approval_ttl_s=3600.0, answers=decisions[-1].id)
    h.feed("up", 0, 2)
    [action] = store.actions()
    assert action.pattern_id == "fake-down-poke-v2" and action.verify is not None and action.verify.window_s == 12


def test_a_diagnosis_whose_pattern_left_the_library_before_its_decision_is_made_again(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An approved remedy is decided in a step of its own after its diagnosis is written; an engine
    restarted in between with the pattern renamed (``fake-down-poke`` to ``fake-down-poke-v2``)
    used to act on the old diagnosis as no pattern's (a default verification, no record). Now it
    diagnoses again from the library in force and acts as the pattern that now holds."""
    store = Store("sqlite://")
    first = Harness(tmp_path, store=store)

    def killed(*args: Any, **kwargs: Any) -> float | None:
        raise RuntimeError("killed before the decision")

    monkeypatch.setattr(first.engine, "_decide", killed)
    with contextlib.suppress(RuntimeError):
        first.feed("up", 0, 4)
    inc = first.incident()
    assert inc.state == IncidentState.DIAGNOSED and store.actions() == []
    renamed = PATTERN.replace("fake-down-poke", "fake-down-poke-v2").replace("window_s: 10", "window_s: 12")
    monkeypatch.setattr(f"{__name__}.PATTERN", renamed)
    h = Harness(tmp_path, store=store, start_at=first.clock.now())
    h.feed("up", 0, 2)
    [action] = store.actions()
    assert action.pattern_id == "fake-down-poke-v2" and action.verify is not None and action.verify.window_s == 12
    latest = store.diagnoses(inc.id)[-1]
    assert latest.pattern_id == "fake-down-poke-v2" and "is no longer in the pattern library" in latest.rationale


def test_a_range_querys_step_lets_its_own_metric_count_longer_and_no_other(tmp_path: Path) -> None:
    """A PromQL range query's newest point is up to its step old when it comes, so its metric
    counts for its step_s plus two intervals (70 s at a 60 s step, a 5 s interval). That age was
    every metric's, every service's: one exporter gone quiet a minute ago still had its last
    memory_percent 91 judged crossed (an incident held open on a stale value). Now a metric no
    range query records counts for 30 s, as at a 5 s interval without one."""
    query = {"type": "promql", "url": "http://127.0.0.1:9", "query": "q"}
    data = {"engine": {"state_dir": str(tmp_path), "interval_s": 5, "host_metrics": False},
            "builtin_patterns": False,
            "services": [
                {"name": "queue", "thresholds": {"extra": {"queue_depth": 100}},
                 "metrics": [{**query, "metric": "queue_depth", "mode": "range", "step_s": 60}]},
                {"name": "web", "metrics": [{**query, "metric": "memory_percent"}]}]}
    clock = FakeClock(10_000.0)
    engine = Engine(load_config_data(data, source="a.yaml", base_dir=tmp_path), store=Store("sqlite://"),
                    clock=clock)
    try:
        now = clock.now()
        engine.series.extend([Sample("queue", "queue_depth", now - 120, 150.0),
                              Sample("queue", "queue_depth", now - 60, 160.0),
                              Sample("web", "memory_percent", now - 65, 90.0),
                              Sample("web", "memory_percent", now - 60, 91.0)])
        health = next(d for d in engine.detectors if d.name == "health")
        found = {(f.service, f.metric) for f in health.detect(engine.series, now)}
        assert found == {("queue", "queue_depth")}
    finally:
        engine.shutdown()


MEMORY_POKE = """
id: memory-poke
match: {cause: memory}
action: {type: fake, params: {op: poke}}
prior_confidence: 0.9
verify: {metric: memory_percent, max: 85, window_s: 10}
"""


def _memory_incident_then(tmp_path: Path, after: float | None,
                          patterns: str = "") -> tuple[Harness, Incident, AuditEvent]:
    """Memory over its line (85) long enough for an incident (no pattern for it: escalated to a
    person, nothing done), then for three minutes either samples at ``after`` or, with None, no
    sample at all (its exporter died); the incident, closed by then, and its closing audit entry."""
    h = Harness(tmp_path, policy={"autonomy": "observe"}, patterns=patterns)
    h.feed("memory_percent", 95.0, 5)
    for _ in range(180):
        if after is not None:
            h.source._samples.append(Sample("svc", "memory_percent", h.clock.now(), after))
        h.engine.tick()
        h.clock.advance(1.0)
    [inc] = h.store.incidents(service="svc")
    assert inc.cause == "memory" and inc.closed_at is not None
    [closing] = [e for e in h.store.audit_events(subject=inc.id) if e.kind in ("incident.cleared", "incident.closed")]
    return h, inc, closing


@pytest.mark.parametrize(("patterns", "kind"), [("", "incident.closed"), (MEMORY_POKE, "incident.closed")])
def test_an_incident_whose_metric_stopped_coming_closes_saying_it_was_not_seen_to_clear(
        tmp_path: Path, caplog: pytest.LogCaptureFixture, patterns: str, kind: str) -> None:
    """The findings stopped because the exporter did, not because memory came back under its line:
    the incident still closes (nothing says the trouble lasts), but its audit entry, a warning and
    explain say no sample came since its last finding; "cleared on its own" alone read as a
    recovery. Escalated (no pattern for it: a person holds it) or merely observed (a pattern, at
    autonomy observe). (Closing as cleared from DIAGNOSED, Engine._close_if_cleared, asks the same
    Engine._unobserved.)"""
    with caplog.at_level("WARNING", logger="autonomic"):
        h, inc, closing = _memory_incident_then(tmp_path, None, patterns)
    assert closing.kind == kind
    said = closing.data["unobserved"]
    assert said.startswith("no sample of metric memory_percent (last sample ") and "not seen to clear" in said
    assert any(r.getMessage().endswith(f", but {said}") and inc.id[:8] in r.getMessage() for r in caplog.records)
    assert f"  closed, but {said}\n" in render_text(explain_incident(h.store, inc.id))


@pytest.mark.parametrize("after", [None, 50.0], ids=["exporter_died", "back_under_its_line"])
def test_an_approval_whose_incident_went_quiet_acts_on_nothing_and_says_cleared_only_when_it_was_seen_to_clear(
        tmp_path: Path, after: float | None) -> None:
    """A person approves a memory remedy after the incident's findings stopped. Either way nothing
    is done (the engine would act blind, or on a healthy service). When memory came back under its
    line, the trouble cleared on its own: the person is informed. When its exporter died, nothing
    says the trouble is over: the decision, the audit entry and the person are told that its
    findings stopped and why it was not seen to clear, and the person is alerted. Before, all
    three said "the trouble cleared on its own"."""
    h = Harness(tmp_path, policy={"autonomy": "approve"}, patterns=MEMORY_POKE)
    h.feed("memory_percent", 95.0, 5)
    inc = h.incident()
    assert inc.state == IncidentState.AWAITING_APPROVAL
    # quiet for a few ticks, short of resolve_after_s without a finding (a silent metric's last
    # sample counts for 30 s: its findings go on that long)
    for _ in range(40 if after is None else 10):
        if after is not None:
            h.source._samples.append(Sample("svc", "memory_percent", h.clock.now(), after))
        h.engine.tick()
        h.clock.advance(1.0)
    assert h.store.get(Incident, inc.id).closed_at is None  # type: ignore[union-attr]
    answer_approval(h.store, inc.id, "approve", actor="person:ops", comment="go", now=h.clock.now(),
                    approval_ttl_s=3600.0)
    for _ in range(3):
        h.engine.tick()
        h.clock.advance(1.0)
    closed = h.store.get(Incident, inc.id)
    assert closed is not None and closed.closed_at is not None and h.actuator.calls == []
    (told,) = [n for n in h.notifier.sent if n.title.startswith("approval not acted on")]
    decision = h.store.decisions(inc.id)[-1]
    (consumed,) = [e for e in h.store.audit_events() if e.kind == "approval.consumed"]
    (cleared,) = [e for e in h.store.audit_events(subject=inc.id) if e.kind == "incident.cleared"]
    texts = [told.body, decision.gates[0].reason, consumed.data["reason"]]
    if after is not None:
        assert told.level == Level.INFO and "unobserved" not in cleared.data
        assert all("the trouble cleared on its own before" in t and "not seen to clear" not in t for t in texts)
        return
    said = cleared.data["unobserved"]
    assert said.startswith("no sample of metric memory_percent (last sample ") and "not seen to clear" in said
    assert told.level == Level.ALERT
    assert told.body == f"approved by person:ops, but its findings stopped before that; nothing done: {said}"
    assert decision.never_acted_on and decision.gates[0].reason.startswith(
        "its findings stopped before the approval was acted on (no finding for ")
    assert consumed.data["reason"] == (f"approved by person:ops, but its findings stopped before it was acted on; "
                                       f"nothing done: {said}")
    assert all(t.endswith(said) and "cleared on its own" not in t for t in texts)


def test_an_incident_whose_metric_came_back_under_its_line_closes_without_a_word_of_doubt(tmp_path: Path) -> None:
    h, inc, closing = _memory_incident_then(tmp_path, 50.0)
    assert "unobserved" not in closing.data
    assert "closed, but" not in render_text(explain_incident(h.store, inc.id))


def test_an_incident_of_two_metrics_one_seen_under_its_line_before_its_source_stopped_closes_without_doubt(
        tmp_path: Path) -> None:
    """A memory incident of rss_bytes and memory_percent: rss_bytes came back under its line (seen,
    several samples) and only then did its exporter stop, while memory_percent stayed over its
    own for a while longer, then came back under it too. Both were seen to clear: each metric is
    judged from its own last finding, not the incident's last (which came of the other metric)."""
    h = Harness(tmp_path, policy={"autonomy": "observe"}, extra={"services": [
        {"name": "svc", "actuators": {"fake": {"name": "x"}},
         "thresholds": {"down_after": 2, "sustain": 2, "extra": {"rss_bytes": 1000.0}}}]})

    def tick(**values: float) -> None:
        for metric, value in values.items():
            h.source._samples.append(Sample("svc", metric, h.clock.now(), value))
        h.engine.tick()
        h.clock.advance(1.0)

    for _ in range(5):
        tick(rss_bytes=5000.0, memory_percent=95.0)
    for _ in range(10):  # rss_bytes back under its line, seen so; memory still over
        tick(rss_bytes=100.0, memory_percent=95.0)
    for _ in range(20):  # rss_bytes' exporter gone; memory still over
        tick(memory_percent=95.0)
    for _ in range(180):
        tick(memory_percent=50.0)
    [inc] = h.store.incidents(service="svc")
    assert inc.closed_at is not None
    [closing] = [e for e in h.store.audit_events(subject=inc.id) if e.kind in ("incident.cleared", "incident.closed")]
    assert "unobserved" not in closing.data, closing.data["unobserved"]


def test_the_not_seen_to_clear_note_dates_the_last_sample_from_the_close_not_from_whenever_it_is_read(
        tmp_path: Path) -> None:
    """The note is stored (audit entry) and shown by explain hours later: "last sample 3m ago"
    read the next morning says the exporter answered three minutes ago, that it is back. It says
    how long before the close the last sample came."""
    h, inc, closing = _memory_incident_then(tmp_path, None)
    said = closing.data["unobserved"]
    assert " ago" not in said
    assert re.search(r"\(last sample [^()]+ before it closed\)", said), said
    h.clock.advance(8 * 3600.0)
    assert f"  closed, but {said}\n" in render_text(explain_incident(h.store, inc.id))


def test_a_slowly_sampled_metric_whose_forecast_stopped_between_two_samples_is_not_said_silent(tmp_path: Path) -> None:
    """memory_percent comes from a PromQL range query with a 60 s step: a sample a minute. Its
    forecast finding stops 30 s after a sample, and the incident closes 10 s later
    (resolve_after_s), before the next sample is due: that sample still counts (step plus two
    intervals), so the closing does not say "not seen to clear" of a source that is answering."""
    engine = {"interval_s": 1, "state_dir": str(tmp_path / "state"), "host_metrics": False, "settle_s": 0,
              "resolve_after_s": 10}
    svc = {"name": "svc", "actuators": {"fake": {"name": "x"}},
           "metrics": [{"type": "promql", "url": "http://127.0.0.1:9", "query": "q", "metric": "memory_percent",
                        "mode": "range", "step_s": 60}]}
    h = Harness(tmp_path, policy={"autonomy": "observe"}, extra={"engine": engine, "services": [svc]})
    h.feed("memory_percent", 70.0, 1)  # the minute's sample
    for _ in range(30):
        h.engine.tick()
        h.clock.advance(1.0)
    forecast = Finding(service="svc", metric="memory_percent", kind=FindingKind.FORECAST, cause="memory",
                       severity=Severity.WARNING, confidence=0.8, ts=h.clock.now(), value=70.0, threshold=85.0,
                       summary="memory_percent will reach 85 in 40.0 min")
    assert h.engine.ingest(forecast, h.clock.now()) is not None
    for _ in range(15):  # the next sample is due at 60 s: not yet
        h.engine.tick()
        h.clock.advance(1.0)
    [inc] = h.store.incidents(service="svc")
    assert inc.closed_at is not None
    [closing] = [e for e in h.store.audit_events(subject=inc.id) if e.kind in ("incident.cleared", "incident.closed")]
    assert "unobserved" not in closing.data
