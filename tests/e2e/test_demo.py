"""The demo, end to end: three real demo services under the real engine, five real faults.

This is the issue's acceptance run (`autonomic demo --fast --json`), played once for the
module; each scenario's outcome is then checked on its own, and the store it leaves behind
is checked for the chain people rely on (every action has an approved decision; the audit
chain verifies; the bad remedy's commit was really reverted in git).
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from autonomic.config import load_config
from autonomic.demo.scenario import SCENARIOS, run_demo
from autonomic.knowledge import Store
from autonomic.model import ActionState, Verdict, VerifyVerdict

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Path]:
    work = tmp_path_factory.mktemp("demo")
    summary = run_demo(fast=True, workdir=work)
    return summary, work


@pytest.mark.parametrize("scenario", [s.name for s in SCENARIOS])
def test_each_scenario_ends_with_its_expected_outcome(demo: tuple[dict[str, Any], Path], scenario: str) -> None:
    summary, _ = demo
    result = next(s for s in summary["scenarios"] if s["name"] == scenario)
    assert result["outcome"] == result["expected"], result
    assert result["detect_s"] is not None and result["detect_s"] < 30


def test_no_action_touched_a_service_without_a_fault(demo: tuple[dict[str, Any], Path]) -> None:
    summary, _ = demo
    assert summary["false_interventions"] == 0
    assert summary["actions_total"] >= 4
    assert summary["duration_s"] < 180


def test_when_api_fails_web_which_calls_it_is_left_alone_as_impacted_by_api(
    demo: tuple[dict[str, Any], Path],
) -> None:
    """The novel scenario's error spike on api reaches web through web's real calls to api;
    root-cause ranking names api and web's incident is held back at the root_cause gate."""
    summary, _ = demo
    assert {"service": "web", "cause": "errors", "impacted_by": ["api"]} in summary["left_alone"]


def test_every_action_has_an_approved_decision_and_the_audit_chain_verifies(
    demo: tuple[dict[str, Any], Path],
) -> None:
    _, work = demo
    config = load_config(work / "autonomic.yaml")
    store = Store(config.database_url)
    try:
        actions = store.actions()
        assert actions
        for action in actions:
            decision = next(d for d in store.decisions(action.incident_id) if d.id == action.decision_id)
            assert decision.verdict == Verdict.APPROVED
            assert action.state.terminal
        assert store.verify_audit().ok
        rolled = [a for a in actions if a.state == ActionState.ROLLED_BACK]
        assert len(rolled) == 1 and rolled[0].service == "web"
    finally:
        store.close()


def test_the_bad_remedy_was_reverted_in_git_and_the_pool_raise_kept(demo: tuple[dict[str, Any], Path]) -> None:
    _, work = demo
    web = yaml.safe_load((work / "web" / "config.yaml").read_text())
    assert web["features"]["fast_path"] is False
    log = subprocess.run(["git", "log", "--format=%B"], cwd=work / "web", capture_output=True, text=True).stdout
    assert "Autonomic-Action:" in log and "Autonomic-Undo:" in log
    worker = yaml.safe_load((work / "worker" / "config.yaml").read_text())
    assert worker["pool"]["size"] == 60


def test_the_bad_remedys_undo_is_judged_to_have_restored_health(demo: tuple[dict[str, Any], Path]) -> None:
    """The revert of the fast_path flag ends the errors it caused, and the check after the undo
    says so. Before, the demo services measured their error rate over 10 s while --fast's watch
    is 6 s, so the check (the watch's second half) still counted requests from before the undo
    and every run told a person "the undo did NOT restore health"."""
    _, work = demo
    config = load_config(work / "autonomic.yaml")
    store = Store(config.database_url)
    try:
        [rolled] = [o for o in store.outcomes() if o.rolled_back]
        assert rolled.undo_verdict == VerifyVerdict.PASS, rolled
    finally:
        store.close()


def test_at_the_pace_make_demo_runs_the_pool_leak_is_forecast_the_pool_raised_before_the_line_and_verified(
    tmp_path: Path,
) -> None:
    """`make demo` runs `autonomic demo` at its normal pace (1 s collections, not --fast's 0.5 s).
    Before, the worker's pool leaked a fixed 5 connections a second at both paces: at 1 s a sample
    there were too few samples for a forecast before pool use crossed 90%, so the threshold opened
    the incident first and the scenario ended escalated (3 runs of 3), not prevented as the README
    says. Then, about one run in six, the raise's verification ended escalated: when the forecast
    came a few samples into the leak, the course the leak was on was drawn through the flat samples
    before it too, so shallow that the raise was judged still on it. The real demo services under
    the real engine, this one scenario only."""
    import io
    import threading
    import time

    from rich.console import Console

    from autonomic.demo.scenario import NORMAL, Timeline, _healthy, _pump_for, _wait, play, prepare
    from autonomic.engine import Engine

    config_path, urls = prepare(tmp_path, NORMAL)
    engine = Engine(load_config(config_path))
    stop = threading.Event()
    thread = threading.Thread(target=engine.run, args=(stop,), name="engine", daemon=True)
    thread.start()
    printed = io.StringIO()
    timeline = Timeline(Console(file=printed, width=200), time.time())
    try:
        assert _wait(lambda: all(_healthy(u) for u in urls.values()), 30)
        _pump_for(engine, timeline, max(NORMAL.trend_window, 5 * NORMAL.interval))  # the demo's baseline
        (result,) = play(engine, urls, NORMAL, timeline,
                         scenarios=[s for s in SCENARIOS if s.name == "pool_exhaustion"])
    finally:
        stop.set()
        thread.join(timeout=30)
    # what this pace needed: a forecast (not the threshold) opened the incident, the pool was raised
    # on it, and the raise was verified (the leak stops under the new line): prevented
    from autonomic.model import FindingKind, Incident

    incident = engine.store.get(Incident, result.incident or "")
    assert incident is not None, (result, printed.getvalue())
    assert (incident.kind, result.action) == (FindingKind.FORECAST, "config:scale"), (result, printed.getvalue())
    assert result.outcome == "prevented", (result, printed.getvalue())
