"""Goals: the error-budget accounting and the burn-rate rules (analyze/goals.py), fed samples
directly; and a goal's config, with errors naming the field."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from autonomic.analyze.goals import CAUSE, Budget, GoalTracker, goal_key, goal_status
from autonomic.config import load_config_data
from autonomic.engine import Engine
from autonomic.errors import ConfigError
from autonomic.knowledge import Store
from autonomic.model import DEFAULT_BURN_RULES, FindingKind, Goal, Level, Sample, Severity
from autonomic.oversight.notify import Dispatcher
from autonomic.testing import FakeClock, FakeNotifier, ReplaySource

T0 = 1_200_000.0  # a multiple of every bucket width used here
PAGE = {"long_s": 60, "short_s": 10, "factor": 10, "severity": "page"}
TICKET = {"long_s": 600, "short_s": 60, "factor": 2, "severity": "ticket"}


def goal(**over: Any) -> Goal:
    """99% of probe_ok >= 1 over 0.01 days (864 s), 1 s buckets; page at 10x (60 s / 10 s),
    ticket at 2x (600 s / 60 s)."""
    spec: dict[str, Any] = {"name": "avail", "metric": "probe_ok", "min": 1, "target": 0.99,
                            "window_days": 0.01, "step_s": 1, "rules": [PAGE, TICKET]}
    return Goal.model_validate({**spec, **over})


def feed(tracker: GoalTracker, start: float, bad: Any, n: int, service: str = "web") -> float:
    """One probe_ok sample a second at start+1 .. start+n, bad where ``bad(i)`` (i from 0); the last ts."""
    tracker.observe(Sample(service, "probe_ok", start + i + 1, 0.0 if bad(i) else 1.0) for i in range(n))
    return start + n


def never(i: int) -> bool:
    return False


def always(i: int) -> bool:
    return True


def test_a_fast_burn_pages_with_a_critical_forecast_finding_naming_the_goal() -> None:
    tracker = GoalTracker({"web": [goal()]})
    now = feed(tracker, T0, never, 600)
    assert tracker.detect(now) == []
    now = feed(tracker, now, always, 30)
    [f] = tracker.detect(now)
    assert (f.service, f.metric, f.kind, f.cause, f.severity) == (
        "web", "goal:avail", FindingKind.FORECAST, CAUSE, Severity.CRITICAL)
    assert f.evidence["rule"]["severity"] == "page"
    # the 60 s window holds buckets T0+570 .. T0+630: 61 samples, the last 30 bad
    assert f.evidence["burn"]["60"] == pytest.approx((30 / 61) / 0.01)
    assert f.evidence["burn"]["10"] == pytest.approx(100.0)
    assert f.value == pytest.approx((30 / 61) / 0.01, rel=1e-4) and f.threshold == 10
    assert "avail" in f.summary and "fast burn" in f.summary


def test_a_slow_burn_opens_a_ticket_not_a_page() -> None:
    tracker = GoalTracker({"web": [goal()]})
    now = feed(tracker, T0, lambda i: i % 25 == 0, 700)  # 4% bad: burn 4, above 2, below 10
    [f] = tracker.detect(now)
    assert f.severity == Severity.WARNING
    assert f.evidence["rule"] == {**TICKET, "long_s": 600.0, "short_s": 60.0, "factor": 2.0}
    assert "slow burn" in f.summary


def test_a_ticket_priority_goal_never_pages() -> None:
    tracker = GoalTracker({"web": [goal(priority="ticket")]})
    now = feed(tracker, feed(tracker, T0, never, 600), always, 30)
    [f] = tracker.detect(now)
    assert f.evidence["rule"]["severity"] == "page" and f.severity == Severity.WARNING


def test_a_ticket_priority_goals_fast_burn_does_not_say_it_pages() -> None:
    """Its page rule fired, but the goal's priority keeps it a warning: the summary a person
    reads, and the explanation, say a ticket, not that it pages."""
    from autonomic.oversight.explain import burn_evidence

    tracker = GoalTracker({"web": [goal(priority="ticket")]})
    now = feed(tracker, feed(tracker, T0, never, 600), always, 30)
    [f] = tracker.detect(now)
    assert "pages" not in f.summary and "fast burn: a ticket at 10x" in f.summary, f.summary
    [rule_line] = [line for line in burn_evidence(f.evidence) if line.startswith("rule:")]
    assert "pages" not in rule_line and rule_line.startswith("rule: a ticket"), rule_line


def test_a_blip_below_the_long_windows_factor_gives_no_finding() -> None:
    tracker = GoalTracker({"web": [goal()]})
    now = feed(tracker, T0, never, 600)
    now = feed(tracker, now, always, 5)  # 5 of the last 61 bad: burn 8.2 over 60 s, below 10
    assert tracker.budgets[("web", "avail")].burn(10, now) == pytest.approx((5 / 11) / 0.01)
    assert tracker.detect(now) == []


def test_a_burn_that_stopped_stops_firing_once_the_short_window_is_clean() -> None:
    tracker = GoalTracker({"web": [goal()]})
    now = feed(tracker, feed(tracker, T0, never, 600), always, 30)
    assert [f.severity for f in tracker.detect(now)] == [Severity.CRITICAL]
    now = feed(tracker, now, never, 12)  # the 60 s window still burns 30x; the 10 s one is clean
    assert tracker.budgets[("web", "avail")].burn(60, now) >= 10
    assert [f.evidence["rule"]["severity"] for f in tracker.detect(now)] == ["ticket"]  # its short window: 60 s
    now = feed(tracker, now, never, 50)
    assert tracker.detect(now) == []


def test_a_firing_rule_keeps_firing_while_its_short_window_burns_though_the_long_one_dips() -> None:
    tracker = GoalTracker({"web": [goal(rules=[PAGE])]})
    now = feed(tracker, feed(tracker, T0, never, 600), always, 7)  # 7 of 61 bad: 11.5x
    assert tracker.detect(now)
    now = feed(tracker, now, lambda i: i >= 60, 62)  # the 7 left the 60 s window; 2 of the last 11 bad
    budget = tracker.budgets[("web", "avail")]
    assert budget.burn(60, now) < 10 <= budget.burn(10, now)
    assert tracker.detect(now), "one burn is one episode: it does not stop while the short window burns"
    fresh = GoalTracker({"web": [goal()]})  # the same history, never fired: the long window says no
    fresh.budgets[("web", "avail")] = budget
    assert fresh.detect(now) == []


def test_no_finding_before_a_short_window_of_history() -> None:
    tracker = GoalTracker({"web": [goal()]})
    now = feed(tracker, T0, always, 9)  # 9 s of nothing but failures: less than the 10 s short window
    assert tracker.detect(now) == []
    now = feed(tracker, now, always, 2)
    assert [f.severity for f in tracker.detect(now)] == [Severity.CRITICAL]


def test_predicted_exhaustion_is_when_the_budget_runs_out_at_the_current_burn() -> None:
    """A day's goal at 90% with 1,000 s of good history, then every other sample bad: the
    budget (10% of the samples so far) is spent when the bad ones catch up with it."""
    g = goal(target=0.9, window_days=1, rules=[{"long_s": 100, "short_s": 10, "factor": 3, "severity": "page"}])
    tracker = GoalTracker({"web": [g]})
    now = feed(tracker, feed(tracker, T0, never, 1000), lambda i: i % 2 == 0, 200)
    [f] = tracker.detect(now)
    predicted = f.evidence["exhausted_in_s"]
    budget = tracker.budgets[("web", "avail")]
    step = 0
    while (budget.remaining(now) or 0) > 0:  # the same burn goes on
        now = feed(tracker, now, lambda i, s=step: (s + i) % 2 == 0, 1)
        step += 1
    assert predicted == pytest.approx(step, abs=3)
    assert f.evidence["exhausted_at"] == pytest.approx(T0 + 1200 + predicted)


def test_a_full_window_predicts_the_workbooks_remaining_times_window_over_burn() -> None:
    g = goal(target=0.99, window_days=0.01, rules=[PAGE])
    budget = Budget(g)
    for i in range(900):  # a window full of history, the last 5 samples bad
        budget.add(T0 - 36 + i + 1, 0.0 if i >= 895 else 1.0)
    now = T0 + 864
    remaining, burn = budget.remaining(now), budget.burn(60, now)
    assert remaining is not None and 0 < remaining < 1 and burn is not None
    assert budget.exhausted_in(60, now) == pytest.approx(remaining * g.window_s / burn, rel=0.03)


def test_the_budget_survives_a_round_trip_through_json() -> None:
    tracker = GoalTracker({"web": [goal()]})
    now = feed(tracker, feed(tracker, T0, never, 600), always, 30)
    saved = json.loads(json.dumps(tracker.checkpoint()))
    assert list(saved) == [goal_key("web", "avail")]
    again = GoalTracker({"web": [goal()]})
    assert again.restore(saved) == []
    assert goal_status("web", goal(), again.budgets[("web", "avail")], now) == \
        goal_status("web", goal(), tracker.budgets[("web", "avail")], now)
    assert [f.severity for f in again.detect(now)] == [Severity.CRITICAL]


def test_a_nan_sample_is_no_measurement_and_spends_no_budget() -> None:
    """A source that could not measure says NaN: the engine's series drop it, and so does the
    budget (counted bad, a metric without traffic, latency of no request, would page)."""
    tracker = GoalTracker({"web": [goal(metric="latency_ms", min=None, max=300)]})
    tracker.observe(Sample("web", "latency_ms", T0 + i + 1, 100.0) for i in range(600))
    now = T0 + 600
    tracker.observe(Sample("web", "latency_ms", now + i + 1, float("nan")) for i in range(30))
    now += 30
    assert tracker.detect(now) == []
    budget = tracker.budgets[("web", "avail")]
    assert budget.counts(60, now) == (31, 31) and budget.remaining(now) == 1.0  # buckets T0+570 .. T0+600


def test_samples_handed_back_after_a_restart_are_not_counted_twice() -> None:
    """A source that gives its recent past again after a restart (a PromQL range query asks for
    the last range_s) hands the restored budget samples it already counted: only newer ones count."""
    tracker = GoalTracker({"web": [goal()]})
    now = feed(tracker, T0, never, 600)
    saved = json.loads(json.dumps(tracker.checkpoint()))
    again = GoalTracker({"web": [goal()]})
    assert again.restore(saved) == []
    feed(again, now - 300, always, 300 + 5)  # the last 300 s again, all bad (as it would be re-read), then 5 new
    assert again.budgets[("web", "avail")].counts(864, now + 5) == (600, 605)


def test_after_a_restart_that_left_a_gap_no_finding_before_a_short_window_of_new_history() -> None:
    """Stopped for longer than the long window, the engine's first samples after the restart are
    the whole long window: one failure is no trend, as at a first start."""
    tracker = GoalTracker({"web": [goal()]})
    now = feed(tracker, T0, never, 600)
    saved = json.loads(json.dumps(tracker.checkpoint()))
    again = GoalTracker({"web": [goal()]})
    again.restore(saved)
    now = feed(again, now + 200, always, 2)  # 200 s later: 2 s of failures
    assert again.detect(now) == []
    now = feed(again, now, always, 9)
    assert [f.severity for f in again.detect(now)] == [Severity.CRITICAL]
    restarted = GoalTracker({"web": [goal()]})  # a restart with no gap goes on judging at once
    restarted.restore(json.loads(json.dumps(again.checkpoint())))
    assert [f.severity for f in restarted.detect(feed(restarted, now, always, 1))] == [Severity.CRITICAL]


def test_a_budget_counted_for_another_sli_or_malformed_starts_afresh_with_a_note() -> None:
    tracker = GoalTracker({"web": [goal()]})
    feed(tracker, T0, never, 60)
    saved = tracker.checkpoint()
    other = GoalTracker({"web": [goal(min=None, max=0.5)]})
    [note] = other.restore(saved)
    assert "another SLI" in note and other.budgets[("web", "avail")].first_ts is None
    broken = {k: {**v, "fine": [[1, 5, 2]]} for k, v in saved.items()}
    [note] = GoalTracker({"web": [goal()]}).restore(broken)
    assert "malformed" in note


def test_old_buckets_are_forgotten_so_memory_is_bounded_by_the_window() -> None:
    tracker = GoalTracker({"web": [goal()]})
    now = feed(tracker, T0, never, 3000)
    tracker.detect(now)
    budget = tracker.budgets[("web", "avail")]
    assert len(budget.fine) <= 600 + 2 and len(budget.coarse) <= 864 / 60 + 3
    assert budget.counts(864, now)[1] >= 864


def test_samples_of_other_services_and_metrics_are_not_counted() -> None:
    tracker = GoalTracker({"web": [goal()]})
    tracker.observe([Sample("db", "probe_ok", T0, 0.0), Sample("web", "up", T0, 0.0)])
    assert tracker.budgets[("web", "avail")].counts(864, T0)[1] == 0


def test_a_latency_goal_counts_samples_at_or_under_its_max_as_good() -> None:
    g = goal(metric="latency_ms", min=None, max=300)
    assert g.good(300) and not g.good(301) and not g.good(float("nan"))
    assert g.describe() == "99% of latency_ms <= 300 over 0.01 days"


def test_default_rules_are_the_workbooks_that_fit_in_the_window() -> None:
    assert Goal(name="a", metric="probe_ok", min=1, target=0.999).rules == list(DEFAULT_BURN_RULES)
    assert Goal(name="a", metric="probe_ok", min=1, target=0.999, window_days=1).rules == list(DEFAULT_BURN_RULES[:2])


@pytest.mark.parametrize(("entry", "field", "words"), [
    ({"metric": "probe_ok", "target": 0.999}, "services[0].goals[0]", "give min or max"),
    ({"metric": "probe_ok", "min": 1, "target": 1.0}, "services[0].goals[0].target", "less than 1"),
    ({"metric": "probe_ok", "min": 1, "target": 0.99, "priority": "urgent"}, "services[0].goals[0].priority",
     "'page' or 'ticket'"),
    ({"metric": "probe_ok", "min": 1, "target": 0.99, "window_days": 0.01}, "services[0].goals[0]", "rules"),
    ({"metric": "probe_ok", "min": 1, "target": 0.99, "rules": [{**PAGE, "short_s": 90}]},
     "services[0].goals[0].rules[0]", "short_s (90) must be shorter than long_s (60)"),
    ({"metric": "probe_ok", "min": 2, "max": 1, "target": 0.99}, "services[0].goals[0]", "min (2) is above max (1)"),
    ({"metric": "requests_total", "max": 0, "target": 0.99}, "services[0].goals[0].metric",
     "named like a Prometheus counter"),
])
def test_a_bad_goal_is_refused_naming_the_field(entry: dict[str, Any], field: str, words: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_config_data({"services": [{"name": "web", "goals": [{"name": "avail", **entry}]}]},
                         source="autonomic.yaml", base_dir=Path("."))
    [problem] = err.value.problems
    assert problem.field == field and words in problem.message


def test_two_goals_of_one_service_with_one_name_are_refused() -> None:
    entry = {"name": "avail", "metric": "probe_ok", "min": 1, "target": 0.99}
    with pytest.raises(ConfigError) as err:
        load_config_data({"services": [{"name": "web", "goals": [entry, entry]}]}, source="autonomic.yaml",
                         base_dir=Path("."))
    assert err.value.problems[0].field == "services[0].goals" and "avail" in err.value.problems[0].message


def _engine(tmp_path: Path, samples: list[Sample], clock: FakeClock) -> tuple[Engine, FakeNotifier]:
    """An engine over one service whose probe_ok samples are ``samples`` (a ReplaySource), the
    built-in patterns and goal() with both its rules."""
    data = {"engine": {"interval_s": 1, "state_dir": str(tmp_path / "state"), "host_metrics": False,
                       "resolve_after_s": 120},
            "services": [{"name": "web", "goals": [goal().model_dump()]}], "policy": {"autonomy": "auto"}}
    notifier = FakeNotifier()
    engine = Engine(load_config_data(data, source="t.yaml", base_dir=tmp_path), clock=clock, store=Store("sqlite://"),
                    sources=[ReplaySource(samples)],
                    notifiers=Dispatcher([(notifier, Level.INFO)], synchronous=True, dedup_s=0))
    engine.start()
    return engine, notifier


def test_a_slow_burn_told_as_a_warning_that_turns_into_a_fast_one_is_told_again_as_critical(tmp_path: Path) -> None:
    """One incident for the whole burn; the person told of the ticket-level burn is told again
    when a page rule fires, and nothing is run (the built-in library has no remedy for a burn)."""
    clock = FakeClock(T0)
    slow = [Sample("web", "probe_ok", T0 + i, 0.0 if i % 25 == 0 else 1.0) for i in range(1, 800)]
    fast = [Sample("web", "probe_ok", T0 + i, 0.0) for i in range(800, 840)]
    engine, notifier = _engine(tmp_path, slow + fast, clock)
    try:
        for _ in range(800):
            engine.tick()
            clock.advance(1.0)
        [inc] = [i for i in engine.store.incidents(service="web") if i.cause == CAUSE]
        assert (inc.state.value, inc.severity) == ("escalated", Severity.WARNING)
        assert len([n for n in notifier.sent if n.incident_id == inc.id]) == 1
        for _ in range(40):
            engine.tick()
            clock.advance(1.0)
        [again] = [i for i in engine.store.incidents(service="web") if i.cause == CAUSE]
        assert again.id == inc.id and again.severity == Severity.CRITICAL
        told = [n for n in notifier.sent if n.incident_id == inc.id]
        assert len(told) == 2 and told[1].level == Level.ALERT
        assert "now critical, it was warning" in told[1].body
        assert engine.store.actions(incident_id=inc.id) == []
    finally:
        engine.shutdown()


def test_a_standby_that_takes_over_starts_from_the_saved_budget_and_a_deposed_leader_cannot_overwrite_it(
        tmp_path: Path) -> None:
    """Two replicas over one SQLite file (leader election, real store and fence). A leads, counts
    and saves its budget at its checkpoint, then freezes; B takes the lease over and starts from
    what A saved. A wakes still believing it leads: its save is refused by the fence, so the
    budget B goes on from is not replaced by A's stale copy."""
    from test_engine import _replicas

    (sa, ea, ma), (sb, eb, mb) = _replicas(tmp_path)
    assert ea.attempt()
    samples = [Sample("web", "probe_ok", T0 + i, 0.0 if i % 10 == 0 else 1.0) for i in range(1, 400)]

    def replica(name: str, store: Store, elector: Any, clock: FakeClock) -> Engine:
        data = {"engine": {"interval_s": 1, "state_dir": str(tmp_path / name), "host_metrics": False,
                           "checkpoint_s": 50},
                "services": [{"name": "web", "goals": [goal().model_dump()]}], "policy": {"autonomy": "auto"}}
        engine = Engine(load_config_data(data, source="t.yaml", base_dir=tmp_path), clock=clock, store=store,
                        sources=[ReplaySource(samples)],
                        notifiers=Dispatcher([(FakeNotifier(), Level.INFO)], synchronous=True, dedup_s=0))
        engine.elector = elector
        engine.start()
        return engine

    clock = FakeClock(T0)
    a = replica("a", sa, ea, clock)
    assert not eb.attempt()
    for _ in range(120):
        a.tick()
        clock.advance(1.0)
    saved = sa.get_state(goal_key("web", "avail"))
    assert saved is not None and T0 + 100 <= saved["last_ts"] < T0 + 120
    saves = len(sb.audit_events(subject=goal_key("web", "avail")))
    mb.t += 16  # A froze: B has watched the lease go unrenewed for lease_s
    assert eb.attempt()
    b = replica("b", sb, eb, FakeClock(clock.now()))
    assert b.goals.budgets[("web", "avail")].state() == Budget.from_state(goal(), saved).state()
    ma.t += 5  # A wakes; on its own clock it renewed 5 s ago, so it still believes it leads
    assert ea.leading
    for _ in range(60):  # past its next checkpoint
        a.tick()
        clock.advance(1.0)
    assert sb.get_state(goal_key("web", "avail")) == saved
    assert len(sb.audit_events(subject=goal_key("web", "avail"))) == saves
    a.shutdown()  # nor at its shutdown
    assert sb.get_state(goal_key("web", "avail")) == saved
    b.shutdown()  # the leader's shutdown saves what it counted since
    assert sb.get_state(goal_key("web", "avail")) == b.goals.state("web", "avail")


def _restartable(tmp_path: Path, samples: list[Sample], clock: FakeClock, notifier: FakeNotifier,
                 goals: list[dict[str, Any]], **engine: Any) -> Engine:
    """A started engine over one service ``web`` with ``goals``, whose probe_ok samples are
    ``samples`` (a ReplaySource), on a SQLite file in tmp_path: a second one started after the
    first's shutdown is a restart of it over the same store."""
    data = {"engine": {"interval_s": 1, "state_dir": str(tmp_path / "state"), "host_metrics": False,
                       "database": f"sqlite:///{tmp_path / 'autonomic.db'}", **engine},
            "services": [{"name": "web", "goals": goals}], "policy": {"autonomy": "auto"}}
    cfg = load_config_data(data, source="t.yaml", base_dir=tmp_path)
    built = Engine(cfg, clock=clock, store=Store(cfg.engine.database or ""), sources=[ReplaySource(samples)],
                   notifiers=Dispatcher([(notifier, Level.INFO)], synchronous=True, dedup_s=0))
    built.start()
    return built


def _run(engine: Engine, clock: FakeClock, seconds: int) -> None:
    for _ in range(seconds):
        engine.tick()
        clock.advance(1.0)


# a page rule whose short window (120 s) is longer than resolve_after_s (30 s), as the workbook's
# first rule's 300 s is longer than the default 120 s
SLOW_GATE = {"long_s": 600, "short_s": 120, "factor": 10, "severity": "page"}


def test_a_restart_mid_burn_goes_on_with_the_same_episode_and_does_not_page_again(tmp_path: Path) -> None:
    """A fast burn pages; the engine is stopped for 200 s (longer than the rule's short window: a
    gap nobody counted) and started again while the burn goes on. Before, the rules firing were
    not saved: after the gap no rule could fire before 120 s of new history, the incident closed
    after 30 s quiet and the same burn opened a second incident and paged again. Now the rule
    saved as firing goes on firing: one incident, one page. (Real engine and SQLite file.)"""
    bad = [Sample("web", "probe_ok", T0 + i, 0.0 if i > 600 else 1.0) for i in range(1, 701)]
    after = [Sample("web", "probe_ok", T0 + i, 0.0) for i in range(900, 1100)]  # nothing counted 701..899
    g = goal(rules=[SLOW_GATE]).model_dump()
    clock, notifier = FakeClock(T0), FakeNotifier()
    first = _restartable(tmp_path, bad, clock, notifier, [g], resolve_after_s=30)
    _run(first, clock, 700)
    [inc] = [i for i in first.store.incidents(service="web") if i.cause == CAUSE]
    first.shutdown()
    assert inc.severity == Severity.CRITICAL and [n.incident_id for n in notifier.sent if "goal" in n.title] == [inc.id]
    clock.advance(T0 + 900 - clock.now())
    second = _restartable(tmp_path, after, clock, notifier, [g], resolve_after_s=30)
    try:
        saved = second.store.get_state(goal_key("web", "avail"))
        assert saved is not None and saved["firing"] == [{**SLOW_GATE, "long_s": 600.0, "short_s": 120.0,
                                                          "factor": 10.0}]
        _run(second, clock, 200)
        burns = [i for i in second.store.incidents(service="web") if i.cause == CAUSE]
        assert [i.id for i in burns] == [inc.id] and burns[0].closed_at is None
        assert [n.incident_id for n in notifier.sent if n.incident_id in {i.id for i in burns} or "goal" in n.title] \
            == [inc.id]
    finally:
        second.shutdown()


def test_a_rule_saved_as_firing_keeps_firing_after_a_restore_while_its_short_window_burns() -> None:
    """The tracker alone: the rules firing travel with the counts through JSON; restored, a
    firing rule goes on where a fresh one would wait out the gap, and stops as before once its
    short window is clean; a saved rule no longer configured is not taken as firing."""
    tracker = GoalTracker({"web": [goal(rules=[PAGE])]})
    now = feed(tracker, feed(tracker, T0, never, 600), always, 30)
    assert [f.evidence["rule"]["severity"] for f in tracker.detect(now)] == ["page"]
    saved = json.loads(json.dumps(tracker.checkpoint()))
    assert saved[goal_key("web", "avail")]["firing"] == [{**PAGE, "long_s": 60.0, "short_s": 10.0, "factor": 10.0}]
    fresh = GoalTracker({"web": [goal(rules=[PAGE])]})
    restored = GoalTracker({"web": [goal(rules=[PAGE])]})
    assert restored.restore(saved) == [] and fresh.restore({
        k: {**v, "firing": []} for k, v in saved.items()}) == []
    later = feed(restored, now + 30, always, 2)  # 30 s later (a gap): 2 s of failures
    feed(fresh, now + 30, always, 2)
    assert fresh.detect(later) == []
    assert [f.severity for f in restored.detect(later)] == [Severity.CRITICAL]
    assert restored.detect(feed(restored, later, never, 12)) == []  # the short window clean: it stops
    other = GoalTracker({"web": [goal(rules=[{**PAGE, "factor": 12}])]})
    assert other.restore(saved) == [] and other.detect(feed(other, now + 30, always, 2)) == []


def test_a_rule_saved_as_firing_is_not_carried_over_a_gap_longer_than_its_long_window() -> None:
    """The tracker alone: restored 3 h after the newest sample saved (the engine was down), a rule
    saved as firing does not go on on the first bad samples. Before, it fired again at once on
    two fresh samples. Now it stops, the transition naming the gap, and fires again only once
    fresh samples earn it as they would a rule never firing (a short window of new history)."""
    tracker = GoalTracker({"web": [goal(rules=[PAGE])]})
    now = feed(tracker, feed(tracker, T0, never, 600), always, 30)
    assert tracker.detect(now) != []
    tracker.saved("web", "avail")
    saved = json.loads(json.dumps(tracker.checkpoint()))
    restored = GoalTracker({"web": [goal(rules=[PAGE])]})
    assert restored.restore(saved) == []
    later = feed(restored, now + 3 * 3600, always, 2)  # 3 h later: 2 s of failures
    assert restored.detect(later) == []
    [change] = restored.transitions()
    assert change["stopped"] == saved[goal_key("web", "avail")]["firing"] and change["firing"] == []
    assert change["started"] == []
    assert "no sample was counted for 3.0 h" in change["reason"] and "1.0 min" in change["reason"]
    restored.saved("web", "avail")
    assert restored.detect(feed(restored, later, always, 7)) == []  # 9 s of new history: not yet
    [finding] = restored.detect(feed(restored, later + 7, always, 2))  # 11 s: the short window holds
    assert finding.severity == Severity.CRITICAL
    [again] = restored.transitions()
    assert again["started"] == change["stopped"] and "reason" not in again


def test_a_gap_the_engine_sees_before_any_new_sample_ends_the_carried_firing_once_it_passes_the_long_window(
        ) -> None:
    """No sample since the restore (a source still down): the gap grows with the clock; the rule
    saved as firing stops, said why, once it is longer than the rule's long window."""
    tracker = GoalTracker({"web": [goal(rules=[PAGE])]})
    now = feed(tracker, feed(tracker, T0, never, 600), always, 30)
    tracker.detect(now)
    tracker.saved("web", "avail")
    restored = GoalTracker({"web": [goal(rules=[PAGE])]})
    restored.restore(json.loads(json.dumps(tracker.checkpoint())))
    assert restored.transitions() == []
    restored.detect(now + 5)  # the short window holds the saved burn still
    assert restored.transitions() == [] and restored.state("web", "avail")["firing"] != []
    restored.detect(now + 61)
    [change] = restored.transitions()
    assert change["firing"] == [] and "no sample was counted for 1.0 min" in change["reason"]


def test_rules_starting_and_stopping_are_audited_and_saved_when_they_happen_and_checkpoints_are_not(
        tmp_path: Path) -> None:
    """A checkpoint's counts are bookkeeping: saved without an audit entry (before, each one wrote
    ``goal.counted``, ~288 a day per goal at the default checkpoint_s). A rule starting or
    stopping firing is the transition worth one, and is saved at once with the rules firing."""
    samples = [Sample("web", "probe_ok", T0 + i, 0.0 if 600 < i <= 630 else 1.0) for i in range(1, 800)]
    clock, notifier = FakeClock(T0), FakeNotifier()
    engine = _restartable(tmp_path, samples, clock, notifier, [goal(rules=[PAGE]).model_dump()], checkpoint_s=50)
    key = goal_key("web", "avail")
    store = engine.store
    try:
        _run(engine, clock, 600)
        assert (store.get_state(key) or {}).get("last_ts", 0) >= T0 + 550  # the checkpoints saved it
        assert [e.kind for e in store.audit_events(subject=key)] == []
        _run(engine, clock, 30)  # the burn: the page rule starts firing
        [started] = store.audit_events(subject=key)
        assert started.kind == "goal.burn_started" and started.data["started"] == started.data["firing"] != []
        assert (store.get_state(key) or {})["firing"] == started.data["firing"]  # saved with it, at once
        _run(engine, clock, 100)  # the burn is over: it stops within the short window
        assert [e.kind for e in store.audit_events(subject=key)] == ["goal.burn_started", "goal.burn_stopped"]
        assert (store.get_state(key) or {})["firing"] == []
        engine.save_goals(clock.now())  # as at shutdown
        assert [e.kind for e in store.audit_events(subject=key)] == ["goal.burn_started", "goal.burn_stopped"]
    finally:
        engine.shutdown()


def test_a_restart_three_hours_after_a_burn_audits_the_rule_stopped_naming_the_gap_and_fires_again_on_fresh_samples(
        tmp_path: Path) -> None:
    """A real engine on a SQLite file pages on a fast burn and is stopped; it starts again 3 h
    later, longer than the rule's long window (60 s), and the failures go on. Before, the rule
    saved as firing went on from the first fresh sample, the 3 h old episode carried over. Now
    the first tick records ``goal.burn_stopped`` with a reason naming the gap, and the rule
    fires again (``goal.burn_started``) once fresh samples earn it."""
    down_s = 3 * 3600
    bad = [Sample("web", "probe_ok", T0 + i, 0.0 if i > 600 else 1.0) for i in range(1, 701)]
    after = [Sample("web", "probe_ok", T0 + down_s + i, 0.0) for i in range(701, 800)]
    g = goal(rules=[PAGE]).model_dump()
    key = goal_key("web", "avail")
    clock, notifier = FakeClock(T0), FakeNotifier()
    first = _restartable(tmp_path, bad, clock, notifier, [g], resolve_after_s=30)
    _run(first, clock, 701)
    first.shutdown()
    assert [e.kind for e in first.store.audit_events(subject=key)] == ["goal.burn_started"]
    clock.advance(T0 + down_s + 701 - clock.now())
    second = _restartable(tmp_path, after, clock, notifier, [g], resolve_after_s=30)
    try:
        _run(second, clock, 2)
        events = second.store.audit_events(subject=key)
        assert [e.kind for e in events] == ["goal.burn_started", "goal.burn_stopped"]
        assert "no sample was counted for 3.0 h" in events[1].data["reason"]
        assert events[1].data["firing"] == [] and (second.store.get_state(key) or {})["firing"] == []
        _run(second, clock, 20)
        assert [e.kind for e in second.store.audit_events(subject=key)] == \
            ["goal.burn_started", "goal.burn_stopped", "goal.burn_started"]
    finally:
        second.shutdown()


def test_the_saved_budget_of_a_goal_removed_from_the_config_is_dropped_at_start_audited_once(
        tmp_path: Path) -> None:
    """Before, the state of a goal no longer configured stayed in the store for ever. Now the
    start deletes it, with one audit entry; a goal still configured keeps its budget."""
    samples = [Sample("web", "probe_ok", T0 + i, 1.0) for i in range(1, 100)]
    clock, notifier = FakeClock(T0), FakeNotifier()
    both = [goal().model_dump(), goal(name="latency").model_dump()]
    engine = _restartable(tmp_path, samples, clock, notifier, both)
    _run(engine, clock, 50)
    engine.shutdown()
    for _ in range(2):  # the second start finds nothing more to drop
        again = _restartable(tmp_path, samples, clock, notifier, [goal().model_dump()])
        try:
            assert set(again.store.states("goal:")) == {goal_key("web", "avail")}
            assert (again.store.get_state(goal_key("web", "avail")) or {}).get("last_ts") == T0 + 49
            [dropped] = again.store.audit_events(subject=goal_key("web", "latency"))
            assert dropped.kind == "goal.dropped" and dropped.actor == "engine"
        finally:
            again.shutdown()


def test_with_leader_election_a_replica_on_an_older_config_keeps_the_budget_of_a_goal_only_the_newer_one_has(
        tmp_path: Path) -> None:
    """A rolling upgrade over one SQLite file (leader election on, real electors and lease, each
    replica its own config): A runs the newer config, with a goal ``latency`` the older one lacks,
    and hands the lease over at a clean stop; B, on the older config, takes it. Before, B's start
    deleted latency's budget (``goal.dropped``), lost when the upgrade reached B. Now B leaves it
    as A saved it, and the next replica on the newer config goes on from it. Once its counts have
    aged out of the goal's window, nothing in it is left to use: a leader's start deletes it."""
    samples = [Sample("web", "probe_ok", T0 + i, 0.0 if i % 10 == 0 else 1.0) for i in range(1, 3000)]
    newer = [goal().model_dump(), goal(name="latency").model_dump()]
    older = [goal().model_dump()]
    clock, notifier = FakeClock(T0), FakeNotifier()
    latency = goal_key("web", "latency")

    def leading(goals: list[dict[str, Any]]) -> Engine:
        data = {"engine": {"interval_s": 1, "state_dir": str(tmp_path / "state"), "host_metrics": False,
                           "database": f"sqlite:///{tmp_path / 'autonomic.db'}", "leader_election": {"enabled": True}},
                "services": [{"name": "web", "goals": goals}], "policy": {"autonomy": "auto"}}
        cfg = load_config_data(data, source="t.yaml", base_dir=tmp_path)
        replica = Engine(cfg, clock=clock, store=Store(cfg.engine.database or ""), sources=[ReplaySource(samples)],
                         notifiers=Dispatcher([(notifier, Level.INFO)], synchronous=True, dedup_s=0))
        assert replica.elector is not None and replica.elector.attempt()  # the lease was released: taken at once
        replica.start()
        return replica

    a = leading(newer)
    _run(a, clock, 50)
    a.shutdown()  # saves both budgets, gives the lease up
    saved = a.store.get_state(latency)
    assert saved is not None and saved["last_ts"] == T0 + 49
    b = leading(older)
    try:
        assert b.elector is not None and b.elector.took_over_from is None
        assert b.store.get_state(latency) == saved
        _run(b, clock, 30)
    finally:
        b.shutdown()
    assert b.store.get_state(latency) == saved and b.store.audit_events(subject=latency) == []
    again = leading(newer)
    try:
        assert again.goals.budgets[("web", "latency")].state() == Budget.from_state(goal(name="latency"),
                                                                                     saved).state()
        _run(again, clock, 10)
    finally:
        again.shutdown()
    clock.advance(goal().window_s + 60)  # nothing counted for longer than the goal's window
    last = leading(older)
    try:
        assert last.store.get_state(latency) is None
        [dropped] = [e for e in last.store.audit_events(subject=latency) if e.kind == "goal.dropped"]
        assert dropped.actor == "engine" and "aged out" in dropped.data["reason"]
    finally:
        last.shutdown()


@pytest.mark.parametrize(("days", "said"), [(1, "1 day"), (2, "2 days"), (0.5, "0.5 days")])
def test_a_goal_and_its_budget_in_explain_name_the_window_in_words(days: float, said: str) -> None:
    from autonomic.oversight.explain import burn_evidence

    g = Goal(name="a", metric="probe_ok", min=1, target=0.99, window_days=days)
    assert g.describe() == f"99% of probe_ok >= 1 over {said}"
    left = {"burn": {"3600": 2.0}, "window_days": days, "budget_remaining": 0.5, "exhausted_in_s": None}
    assert burn_evidence(left)[-1] == f"budget: 50% left of the last {said}; not running out at this rate"
    spent = {**left, "budget_remaining": -0.5}
    assert burn_evidence(spent)[-1] == f"budget: spent (1.5x the budget used in the last {said})"
