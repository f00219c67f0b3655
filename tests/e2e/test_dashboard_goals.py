"""The dashboard's goals table in real headless Chromium: the API (a real server over a real SQLite
store) serves a goal whose budget the engine saved (here: a real Engine fed probe_ok samples by a
ReplaySource, its budget saved at shutdown) and the overview shows its budget and burn. Screenshot
to ``artifacts/dashboard/``."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, expect

from autonomic.config import Config, load_config_data
from autonomic.demo.scenario import _free_port
from autonomic.engine import Engine
from autonomic.knowledge import Store
from autonomic.model import Sample
from autonomic.oversight.api import ApiContext, create_app
from autonomic.oversight.auth import create_token
from autonomic.oversight.notify import Dispatcher
from autonomic.oversight.server import ApiServer
from autonomic.testing import FakeClock, ReplaySource

pytestmark = pytest.mark.slow

ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts" / "dashboard"
GOAL = {"name": "work-ok", "metric": "probe_ok", "min": 1, "target": 0.9, "window_days": 0.01, "step_s": 1,
        "rules": [{"long_s": 20, "short_s": 5, "factor": 5, "severity": "page"}]}


@pytest.fixture
def saved(tmp_path: Path) -> Iterator[tuple[Config, Store]]:
    """A config with one goal, and a store holding its budget as an engine saved it: 60 s of
    good samples, then 20 s of failures (the last 80 s before now)."""
    data = {"engine": {"interval_s": 1, "state_dir": str(tmp_path / "state"), "host_metrics": False},
            "services": [{"name": "web", "goals": [GOAL]}]}
    config = load_config_data(data, source="t.yaml", base_dir=tmp_path)
    start = time.time() - 80
    samples = [Sample("web", "probe_ok", start + i, 1.0 if i < 60 else 0.0) for i in range(80)]
    clock = FakeClock(start)
    engine = Engine(config, clock=clock, store=Store(f"sqlite:///{tmp_path / 'a.db'}"), sources=[ReplaySource(samples)],
                    notifiers=Dispatcher())
    engine.start()
    for _ in range(80):
        engine.tick()
        clock.advance(1.0)
    engine.shutdown()
    store = Store(f"sqlite:///{tmp_path / 'a.db'}")
    yield config, store
    store.close()


def test_the_overview_lists_each_goal_with_its_budget_left_and_its_burn(saved: tuple[Config, Store],
                                                                      browser: Browser) -> None:
    config, store = saved
    token = create_token(store, "e2e-viewer", "viewer")
    port = _free_port()
    server = ApiServer(create_app(ApiContext(store=store, config=config)), "127.0.0.1", port)
    server.start()
    try:
        context = browser.new_context(viewport={"width": 1400, "height": 900})
        errors: list[str] = []
        page = context.new_page()
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(f"http://127.0.0.1:{port}/?token={token}")
        row = page.get_by_test_id("goal-web-work-ok")
        expect(row).to_be_visible()
        expect(row).to_contain_text("90% of probe_ok >= 1 over 0.01 days")
        expect(page.get_by_test_id("goal-left-web-work-ok")).to_have_text("spent")  # 20 bad of 80: 2.5x the budget
        # the 20 s window counts its edge bucket in full: 21 one-second buckets, the last 20 bad
        expect(page.get_by_test_id("goal-burn-web-work-ok")).to_have_text(f"{(20 / 21) / 0.1:.2f}x")
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "11-goals.png"), full_page=True)
        assert errors == []
        context.close()
    finally:
        server.stop()
