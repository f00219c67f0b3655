"""Safety invariants of the engine, property-based: random sequences of findings on several
services and causes, actuator successes and failures, pauses and resumes (global and per
service), maintenance windows switched on and off, time jumps and engine restarts (a new Engine
on the same store) drive the engine over fakes, and after every step (and at every actuator call)
the store and the actuator must show that:

* no rate budget was ever exceeded (per action type and per service, over any day and week);
* nothing acted while paused, inside a blocking window, or with its circuit breaker open,
  and nothing was undone while paused;
* never two actions were in flight on one target;
* every action has an APPROVED decision written before it (earlier ts and lower audit seq).

The concurrent variant runs the engine's loop in this thread while two workers (as the API's
request threads would) submit findings and set and lift pauses at the same time.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from autonomic.config import Config, load_config_data
from autonomic.engine import POLICY_OVERRIDE, Engine, breaker_key, pause_key
from autonomic.errors import TerminalActuatorError
from autonomic.knowledge import Store
from autonomic.model import (
    ActionState,
    Decision,
    Finding,
    FindingKind,
    Level,
    Sample,
    Severity,
    Verdict,
)
from autonomic.oversight.notify import Dispatcher
from autonomic.plan.policy import PolicyConfig, active_window
from autonomic.protocols import Target
from autonomic.registry import Registry
from autonomic.testing import FakeActuator, FakeClock, FakeNotifier, ReplaySource, fake_registry

T0 = 1_700_000_000.0
DAY, WEEK = 86_400.0, 7 * 86_400.0
SERVICES = ("svc-a", "svc-b", "svc-c")
PATTERN = """
id: fake-down-poke
match: {cause: down, kind: state}
action: {type: fake, params: {op: poke}}
prior_confidence: 0.9
rollback_safe: true
verify: {metric: up, min: 1, window_s: 4, delay_s: 1, min_samples: 2}
"""
LIMITS = {"per_day": 3, "per_week": 4, "per_service_day": 1, "per_service_week": 2}
POLICY: dict[str, Any] = {
    "autonomy": "auto", "confidence_threshold": 0.5, "rate_limits": LIMITS,
    "breaker": {"failures": 2, "open_s": 120},
    "backoff": {"base_s": 2, "cap_s": 8, "reset_after_s": 60},
}
WINDOW = {"name": "freeze", "cron": "* * * * *", "duration_s": 3600, "mode": "block"}


class Violation(AssertionError):
    pass


class CheckingActuator(FakeActuator):
    """A FakeActuator that fails on demand and checks the safety rules at the moment it is asked
    to act, reading the store the engine uses."""

    def __init__(self) -> None:
        super().__init__()
        self.fail_next = False
        self.world: World | None = None

    def apply(self, target: Target, params: BaseModel, key: str, snapshot: Mapping[str, Any]) -> dict[str, Any]:
        assert self.world is not None
        self.world.check_may_act(target.service, key)
        if self.fail_next:
            self.calls.append(("apply", target.service, key))
            raise TerminalActuatorError("injected failure")
        return super().apply(target, params, key, snapshot)

    def undo(self, target: Target, params: BaseModel, key: str, snapshot: Mapping[str, Any]) -> dict[str, Any]:
        assert self.world is not None
        self.world.check_not_paused(target.service, "undid")
        return super().undo(target, params, key, snapshot)


_CONFIG: dict[str, tuple[Config, Registry, CheckingActuator]] = {}
_TMP: list[Path] = []


@pytest.fixture(autouse=True, scope="module")
def _shared_config_cleanup() -> Any:
    """The shared config's directory lives for this module's tests and is removed after them."""
    yield
    _CONFIG.clear()
    while _TMP:
        shutil.rmtree(_TMP.pop(), ignore_errors=True)


def _config() -> tuple[Config, Registry, CheckingActuator]:
    """One config (and its registry and actuator) for every example: loading it is slow."""
    if "c" not in _CONFIG:
        tmp = Path(tempfile.mkdtemp(prefix="autonomic-invariants-"))
        _TMP.append(tmp)
        (tmp / "patterns").mkdir()
        (tmp / "patterns" / "fake.yaml").write_text(PATTERN)
        actuator = CheckingActuator()
        registry = fake_registry(actuator)
        data = {
            "engine": {"interval_s": 1, "state_dir": str(tmp / "state"), "host_metrics": False, "settle_s": 3,
                       "resolve_after_s": 8, "approval_ttl_s": 60, "stop_services_on_exit": False},
            "services": [{"name": s, "actuators": {"fake": {"name": "x"}}} for s in SERVICES],
            "patterns": [str(tmp / "patterns")],
            "builtin_patterns": False,
            "policy": POLICY,
        }
        config = load_config_data(data, source="invariants.yaml", base_dir=tmp, registry=registry)
        _CONFIG["c"] = (config, registry, actuator)
    return _CONFIG["c"]


class World:
    """One engine over fakes, restartable on the same store, with the checks."""

    def __init__(self, url: str = "sqlite://") -> None:
        self.config, self.registry, self.actuator = _config()
        self.actuator.calls.clear()
        self.actuator.applied_keys.clear()
        self.actuator.fail_next = False
        self.actuator.world = self
        self.clock = FakeClock(T0)
        self.store = Store(url)
        self.source = ReplaySource([])
        self.window = False
        self.concurrent = False
        self.engine = self._engine()

    def _engine(self) -> Engine:
        engine = Engine(self.config, registry=self.registry, clock=self.clock, store=self.store,
                        notifiers=Dispatcher([(FakeNotifier(), Level.INFO)], synchronous=True, dedup_s=0),
                        sources=[self.source])
        engine.start()
        return engine

    # --- steps -------------------------------------------------------------------------------

    def step(self, op: tuple[Any, ...]) -> None:
        kind = op[0]
        if kind == "finding":
            _, svc, cause = op
            self.engine.submit([Finding(service=svc, metric="up" if cause == "down" else "latency_p99",
                                        kind=FindingKind.STATE if cause == "down" else FindingKind.THRESHOLD,
                                        cause=cause, severity=Severity.CRITICAL, confidence=0.95,
                                        ts=self.clock.now(), summary=f"{svc} {cause}")])
        elif kind == "tick":
            for _ in range(op[1]):
                for svc in SERVICES:  # healthy samples, so verifications can pass
                    self.source._samples.append(Sample(svc, "up", self.clock.now(), 1.0))
                self.engine.tick()
                self.clock.advance(1.0)
        elif kind == "jump":
            self.clock.advance(op[1])
        elif kind == "fail":
            self.actuator.fail_next = op[1]
        elif kind == "pause":
            _, scope, on = op
            self.store.set_state(pause_key(scope), {"reason": "test", "actor": "person:t"} if on else None,
                                 actor="person:t", event="pause.set" if on else "pause.cleared")
        elif kind == "window":
            self.window = op[1]
            policy = {**POLICY, "maintenance_windows": [WINDOW] if op[1] else []}
            self.store.set_state(POLICY_OVERRIDE, policy, actor="person:t", event="policy.updated")
        elif kind == "restart":
            self.engine = self._engine()  # the old one is dropped mid-flight, as if killed
        else:  # pragma: no cover
            raise ValueError(op)
        self.check_store()

    # --- checks ------------------------------------------------------------------------------

    def check_may_act(self, service: str, key: str) -> None:
        """At the actuator call: not paused, no blocking window, no open breaker, no other
        action in flight on this target, and the action was approved beforehand."""
        now = self.clock.now()
        self.check_not_paused(service, "acted on")
        override = self.store.get_state(POLICY_OVERRIDE)
        policy = PolicyConfig.model_validate(override) if override else self.config.spec.policy
        window = active_window(policy.maintenance_windows, now)
        if window is not None and window.mode == "block":
            raise Violation(f"acted on {service} inside blocking window {window.name}")
        for scope in ("fake", "global"):
            breaker = self.store.get_state(breaker_key(scope)) or {}
            if breaker.get("state") == "open":
                raise Violation(f"acted on {service} with the {scope} breaker open")
        live = [a for a in self.store.actions(service=service) if not a.state.terminal]
        acting = [a for a in live if a.idempotency_key == key]
        if len(live) != 1 or len(acting) != 1:
            raise Violation(f"{len(live)} actions in flight on {service} when acting: {[a.id for a in live]}")

    def check_not_paused(self, service: str, what: str) -> None:
        """No actuator call, apply or undo, while automation is paused for ``service``."""
        for scope in (None, service):
            # with workers pausing concurrently, a pause committed after the executor's last
            # check (microseconds before this call) is a race no check can close: not counted
            if not self.concurrent and self.store.get_state(pause_key(scope)):
                raise Violation(f"{what} {service} while paused ({scope or 'global'})")

    def check_store(self) -> None:
        actions = self.store.actions()
        counted = [a for a in actions if a.state != ActionState.CANCELLED]
        for a in counted:  # every sliding window that ends at an action's creation
            same_type = [b for b in counted if b.type == a.type]
            same_svc = [b for b in counted if b.service == a.service]
            for group, span, limit in ((same_type, DAY, LIMITS["per_day"]), (same_type, WEEK, LIMITS["per_week"]),
                                       (same_svc, DAY, LIMITS["per_service_day"]),
                                       (same_svc, WEEK, LIMITS["per_service_week"])):
                n = sum(1 for b in group if a.created_at - span < b.created_at <= a.created_at)
                if n > limit:
                    raise Violation(f"{n} actions within {span:.0f} s up to {a.id} (limit {limit})")
        live = Counter(a.service for a in actions if not a.state.terminal)
        if live and max(live.values()) > 1:
            raise Violation(f"two actions in flight on one target: {live}")
        first_seq: dict[str, int] = {}
        for ev in self.store.audit_events():
            for noun in (ev.data or {}).get("nouns", []):
                first_seq.setdefault(noun["id"], ev.seq)
        for a in actions:
            decision = self.store.get(Decision, a.decision_id)
            if decision is None or decision.verdict != Verdict.APPROVED:
                raise Violation(f"action {a.id} has no approved decision")
            if not (decision.ts <= a.created_at and first_seq[decision.id] < first_seq[a.id]):
                raise Violation(f"action {a.id} was written before its decision {decision.id}")
        applies = Counter(key for call, _, key in self.actuator.calls if call == "apply")
        keys = {a.idempotency_key for a in actions}
        if set(applies) - keys:
            raise Violation(f"the actuator ran actions the store does not know: {set(applies) - keys}")


services = st.sampled_from(SERVICES)
finding = st.tuples(st.just("finding"), services, st.sampled_from(["down", "down", "down", "latency"]))
tick = st.tuples(st.just("tick"), st.integers(1, 8))
steps = st.one_of(  # findings and ticks weighted up so that most examples act several times
    finding, finding, finding, finding, tick, tick, tick, tick,
    st.tuples(st.just("jump"), st.sampled_from([30.0, 3600.0, 43_200.0, 90_000.0])),
    st.tuples(st.just("fail"), st.sampled_from([True, False, False])),
    st.tuples(st.just("pause"), st.sampled_from([None, *SERVICES]), st.sampled_from([True, False, False])),
    st.tuples(st.just("window"), st.sampled_from([True, False, False])),
    st.tuples(st.just("restart")),
)


def run_concurrently(ops: list[tuple[Any, ...]], *workers: list[tuple[Any, ...]], url: str = "sqlite://") -> World:
    """``ops`` (ticks, jumps, failures) in this thread while each worker submits its findings and
    pauses from its own thread; the store's rules are checked after every step and at the end."""
    world = World(url)
    world.concurrent = True
    errors: list[BaseException] = []

    def work(todo: list[tuple[Any, ...]]) -> None:
        try:
            for op in todo:
                if op[0] == "finding":
                    _, svc, cause = op
                    world.engine.submit([Finding(service=svc, metric="up", kind=FindingKind.STATE, cause=cause,
                                                 severity=Severity.CRITICAL, confidence=0.95,
                                                 ts=world.clock.now(), summary=f"{svc} {cause}")])
                else:
                    _, scope, on = op
                    world.store.set_state(pause_key(scope), {"reason": "w", "actor": "person:w"} if on else None,
                                          actor="person:w", event="pause.set" if on else "pause.cleared")
                time.sleep(0.0005)
        except BaseException as exc:  # noqa: BLE001 - reported in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(w,)) for w in workers]
    for t in threads:
        t.start()
    for op in ops:
        world.step(op)
    for t in threads:
        t.join(10)
    world.step(("tick", 10))
    if errors:
        raise errors[0]
    return world


def run(ops: list[tuple[Any, ...]], url: str = "sqlite://") -> World:
    world = World(url)
    for op in ops:
        world.step(op)
    return world


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(steps, min_size=15, max_size=60))
def test_no_sequence_of_findings_outcomes_pauses_windows_and_restarts_breaks_a_safety_rule(
        ops: list[tuple[Any, ...]]) -> None:
    run(ops)


worker_op = st.one_of(
    st.tuples(st.just("finding"), services, st.just("down")),
    st.tuples(st.just("finding"), services, st.just("down")),
    st.tuples(st.just("pause"), st.sampled_from([None, *SERVICES]), st.sampled_from([True, False])),
)
engine_op = st.one_of(tick, tick, tick, st.tuples(st.just("jump"), st.sampled_from([30.0, 3600.0])),
                      st.tuples(st.just("fail"), st.sampled_from([True, False, False])))


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(engine_op, min_size=5, max_size=20), st.lists(worker_op, min_size=5, max_size=40),
       st.lists(worker_op, min_size=5, max_size=40))
def test_workers_submitting_findings_and_pausing_concurrently_never_break_a_safety_rule(
        ops: list[tuple[Any, ...]], first: list[tuple[Any, ...]], second: list[tuple[Any, ...]]) -> None:
    run_concurrently(ops, first, second)


def test_a_burst_of_findings_on_every_service_never_exceeds_the_budgets() -> None:
    ops: list[tuple[Any, ...]] = []
    for _ in range(6):
        ops += [("finding", s, "down") for s in SERVICES] + [("tick", 6), ("jump", 30.0)]
    world = run(ops)
    created = [a for a in world.store.actions() if a.state != ActionState.CANCELLED]
    assert 0 < len(created) <= LIMITS["per_day"]
    assert [c for c, *_ in world.actuator.calls].count("apply") == len(created)


def test_a_restart_between_decisions_does_not_reset_the_budget(store_url: str) -> None:
    ops: list[tuple[Any, ...]] = []
    for _ in range(5):
        ops += [("finding", "svc-a", "down"), ("tick", 6), ("restart",), ("jump", 30.0)]
    world = run(ops, store_url)
    on_a = [a for a in world.store.actions(service="svc-a") if a.state != ActionState.CANCELLED]
    assert len(on_a) == LIMITS["per_service_day"]


def test_nothing_acts_while_paused_or_in_a_blocking_window_and_acting_resumes_after() -> None:
    world = run([("pause", None, True), ("finding", "svc-a", "down"), ("tick", 4),
                 ("pause", None, False), ("window", True), ("jump", 60.0), ("finding", "svc-b", "down"),
                 ("tick", 4)])
    assert world.actuator.calls == []
    world.step(("window", False))
    world.step(("jump", 60.0))
    world.step(("finding", "svc-c", "down"))
    world.step(("tick", 3))
    assert [(c, s) for c, s, _ in world.actuator.calls] == [("apply", "svc-c")]


def test_an_open_breaker_stops_acting_and_lets_a_trial_through_after_its_timeout() -> None:
    world = run([("fail", True), ("finding", "svc-a", "down"), ("tick", 2), ("jump", 30.0),
                 ("finding", "svc-b", "down"), ("tick", 2), ("fail", False), ("jump", 30.0),
                 ("finding", "svc-c", "down"), ("tick", 2)])
    assert [s for c, s, _ in world.actuator.calls] == ["svc-a", "svc-b"]
    assert (world.store.get_state(breaker_key("fake")) or {}).get("state") == "open"
    (denied,) = [d for d in world.store.decisions() if d.verdict == Verdict.DENIED]
    assert not next(g for g in denied.gates if g.gate == "circuit_breaker").passed
    for op in [("jump", 200.0), ("tick", 9), ("finding", "svc-c", "down"), ("tick", 2)]:
        world.step(op)
    # past open_s the breaker lets a trial through (the pattern's poor record now fails it on confidence)
    last = world.store.decisions()[-1]
    assert next(g for g in last.gates if g.gate == "circuit_breaker").passed


def test_a_second_incident_on_a_busy_target_waits_for_the_first_action() -> None:
    world = run([("finding", "svc-a", "down"), ("finding", "svc-a", "down"), ("tick", 1)])
    world.step(("finding", "svc-a", "latency"))
    world.step(("tick", 1))
    live = [a for a in world.store.actions(service="svc-a") if not a.state.terminal]
    assert len(live) == 1 and len(world.actuator.calls) == 1


def test_the_engines_aggregate_store_queries_agree_with_full_scans(store_url: str) -> None:
    world = run([("fail", True), ("finding", "svc-a", "down"), ("tick", 2), ("fail", False), ("jump", 30.0),
                 ("finding", "svc-b", "down"), ("tick", 8), ("finding", "svc-c", "down"), ("tick", 1)], store_url)
    store, now = world.store, world.clock.now()
    actions = store.actions()
    assert {a.state for a in actions} >= {ActionState.FAILED, ActionState.SUCCEEDED}
    assert store.action_counts(now - DAY, now - WEEK, type="fake", service="svc-b") == (
        store.count_actions(now - DAY, type="fake"), store.count_actions(now - WEEK, type="fake"),
        store.count_actions(now - DAY, service="svc-b"), store.count_actions(now - WEEK, service="svc-b"))
    assert store.busy_services() == {a.service for a in actions if not a.state.terminal} == {"svc-c"}
    for svc in SERVICES:
        mine = [a for a in actions if a.service == svc]
        ended = [a.updated_at for a in mine if a.state.terminal and a.state != ActionState.CANCELLED]
        assert store.service_activity(svc) == (any(not a.state.terminal for a in mine), max(ended, default=0.0))
    assert store.pattern_tallies() == {"fake-down-poke": (1, 1)}
    assert store.get_states([pause_key(None), breaker_key("fake")]) == {
        pause_key(None): None, breaker_key("fake"): store.get_state(breaker_key("fake"))}


def test_findings_from_two_threads_while_the_loop_runs_act_within_every_rule(store_url: str) -> None:
    """Two workers submit findings on every service while the engine ticks: it acts (so the
    concurrent property above is not vacuous) and no rule is broken, on both back ends."""
    burst = [("finding", s, "down") for s in SERVICES] * 10
    world = run_concurrently([("tick", 3), ("jump", 30.0), ("tick", 8)], burst, list(reversed(burst)), url=store_url)
    created = [a for a in world.store.actions() if a.state != ActionState.CANCELLED]
    assert 0 < len(created) <= LIMITS["per_day"]
    assert len({a.service for a in created}) == len(created)  # at most one per service: per_service_day is 1
