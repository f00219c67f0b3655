"""Goals through the real engine: a real demo service (``python -m autonomic.demo.service``) probed
over HTTP on its ``/work`` endpoint, a real SQLite store in a file, the real notifier path. The one
stand-in is the clock (a FakeClock moved one second per tick), so a goal whose windows are seconds
long is judged in ticks; the requests, their failures (the demo's ``error_spike`` fault) and the
store are real."""

from __future__ import annotations

import json
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from servers import Server, demo_service  # noqa: F401  (the fixture)
from typer.testing import CliRunner

from autonomic.analyze.goals import CAUSE, goal_key, goal_status
from autonomic.cli import app
from autonomic.config import load_config
from autonomic.demo import faults
from autonomic.engine import Engine
from autonomic.knowledge import Store
from autonomic.model import FindingKind, Incident, IncidentState, Level, Severity
from autonomic.oversight.api import ApiContext, create_app
from autonomic.oversight.auth import create_token
from autonomic.oversight.explain import explain_incident, render_text
from autonomic.oversight.notify import Dispatcher
from autonomic.testing import FakeClock, FakeNotifier

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

GOAL = {"name": "work-ok", "metric": "probe_ok", "min": 1, "target": 0.9, "window_days": 0.01, "step_s": 1,
        "rules": [{"long_s": 20, "short_s": 5, "factor": 5, "severity": "page"}]}


def config_for(tmp_path: Path, base: str) -> Path:
    """autonomic.yaml in ``tmp_path``: the demo probed on /work with one goal, a SQLite file store."""
    data: dict[str, Any] = {
        "engine": {"interval_s": 1, "state_dir": "state", "database": "sqlite:///autonomic.db", "host_metrics": False,
                   "resolve_after_s": 30, "checkpoint_s": 3600},
        "services": [{"name": "web", "probes": [{"url": f"{base}/work", "timeout_s": 3}], "goals": [GOAL]}],
        "policy": {"autonomy": "auto"},
    }
    path = tmp_path / "autonomic.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


class Rig:
    """A real engine over one probed demo service, ticked by hand, its store a SQLite file."""

    def __init__(self, tmp_path: Path, base: str, clock: FakeClock) -> None:
        self.clock = clock
        self.notifier = FakeNotifier()
        self.path = config_for(tmp_path, base)
        self.config = load_config(self.path)
        self.store = Store(self.config.database_url)
        self.engine = Engine(self.config, clock=clock, store=self.store,
                             notifiers=Dispatcher([(self.notifier, Level.INFO)], synchronous=True, dedup_s=0))
        self.engine.start()

    def tick_until(self, done: Callable[[], bool], limit: int) -> int:
        for n in range(limit):
            if done():
                return n
            self.engine.tick()
            self.clock.advance(1.0)
        raise AssertionError("condition not reached")

    def burns(self) -> list[Incident]:
        return [i for i in self.store.incidents(service="web") if i.cause == CAUSE]


@pytest.fixture
def web(demo_service: Callable[..., Server]) -> Iterator[Server]:  # noqa: F811
    server = demo_service("web", traffic=0)
    yield server
    faults.clear(server.url)


def test_a_fast_burn_of_a_real_service_opens_one_incident_escalated_to_a_person(web: Server, tmp_path: Path) -> None:
    rig = Rig(tmp_path, web.url, FakeClock(time.time()))
    try:
        rig.tick_until(lambda: rig.engine.ticks >= 25, limit=30)  # 25 s of good requests
        assert rig.burns() == []
        faults.inject(web.url, "error_spike", ratio=1.0)  # every /work request fails with 500
        waited = rig.tick_until(lambda: any(i.state == IncidentState.ESCALATED for i in rig.burns()), limit=30)
        assert waited >= 5, "no finding before the short window holds a burn"
        [inc] = rig.burns()
        assert (inc.kind, inc.severity) == (FindingKind.FORECAST, Severity.CRITICAL)
        assert rig.store.actions(incident_id=inc.id) == []  # nothing is done because of a goal
        [told] = [n for n in rig.notifier.sent if n.incident_id == inc.id]
        assert told.level == Level.ALERT
        assert "goal work-ok" in told.title and "error budget" in told.title
        assert "a person must look" in told.body
        finding = rig.store.findings(inc.id)[0]
        assert finding.metric == "goal:work-ok" and finding.evidence["burn"]["20"] >= 5
        for _ in range(10):  # the burn goes on: the same incident, no second one, no second alert
            rig.engine.tick()
            rig.clock.advance(1.0)
        assert [i.id for i in rig.burns()] == [inc.id]
        assert [n for n in rig.notifier.sent if n.incident_id == inc.id] == [told]
    finally:
        rig.engine.shutdown()


def test_the_budget_survives_an_engine_restart_on_a_sqlite_store(web: Server, tmp_path: Path) -> None:
    clock = FakeClock(time.time())
    rig = Rig(tmp_path, web.url, clock)
    rig.tick_until(lambda: rig.engine.ticks >= 20, limit=25)
    faults.inject(web.url, "error_spike", ratio=1.0)
    rig.tick_until(lambda: rig.engine.ticks >= 26, limit=10)
    goal = rig.engine.config.services[0].goals[0]
    before = goal_status("web", goal, rig.engine.goals.budgets[("web", "work-ok")], clock.now())
    assert before["samples"] >= 25 and before["budget_remaining"] < 1
    rig.engine.shutdown()

    again = Rig(tmp_path, web.url, clock)  # the same SQLite file, a new engine
    try:
        assert again.store.get_state(goal_key("web", "work-ok")) is not None
        after = goal_status("web", goal, again.engine.goals.budgets[("web", "work-ok")], clock.now())
        assert after == before
    finally:
        again.engine.shutdown()


def test_status_the_api_and_explain_show_the_budget_and_the_burn(web: Server, tmp_path: Path) -> None:
    clock = FakeClock(time.time())
    rig = Rig(tmp_path, web.url, clock)
    try:
        rig.tick_until(lambda: rig.engine.ticks >= 25, limit=30)
        faults.inject(web.url, "error_spike", ratio=1.0)
        rig.tick_until(lambda: any(i.state == IncidentState.ESCALATED for i in rig.burns()), limit=30)
    finally:
        rig.engine.shutdown()  # saves the budgets: status and the API read the store alone
    [inc] = rig.burns()
    store = Store(rig.config.database_url)
    try:
        page = render_text(explain_incident(store, inc.id))
        assert "burn rate (1x spends the budget in exactly the goal's window):" in page
        assert "rule: pages when the burn is at least 5x over both the last 20 s and the last 5 s" in page

        tokens = {role: create_token(store, role, role) for role in ("viewer",)}
        ctx = ApiContext(store=store, config=rig.config, clock=clock, read_cache_s=0)
        with TestClient(create_app(ctx)) as client:
            assert client.get("/api/v1/goals").status_code == 401
            answer = client.get("/api/v1/goals", headers={"Authorization": f"Bearer {tokens['viewer']}"})
            assert answer.status_code == 200
            [goal] = answer.json()
            assert (goal["service"], goal["goal"], goal["saved"]) == ("web", "work-ok", True)
            assert goal["current_burn"] >= 5 and goal["budget_remaining"] < 1 and goal["samples"] >= 25
            assert client.get("/api/v1/goals?service=nope",
                              headers={"Authorization": f"Bearer {tokens['viewer']}"}).status_code == 404
    finally:
        store.close()

    shown = CliRunner().invoke(app, ["status", "-c", str(rig.path)])
    assert shown.exit_code == 0, shown.output
    assert "work-ok" in shown.output and "over 20 s" in shown.output
    as_json = CliRunner().invoke(app, ["status", "-c", str(rig.path), "--json"])
    [goal_json] = json.loads(as_json.output)["goals"]
    assert goal_json["goal"] == "work-ok" and goal_json["current_burn"] == goal["current_burn"]
