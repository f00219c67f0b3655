"""The dashboard in real headless Chromium against an API without an engine: what it shows
after a change made outside the API (the CLI, the engine) reaches it as a server-sent event."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import Browser, expect

from autonomic.config import load_config_data
from autonomic.engine import PAUSE_GLOBAL
from autonomic.knowledge import Store
from autonomic.oversight.api import ApiContext, create_app
from autonomic.oversight.auth import create_token
from autonomic.oversight.server import ApiServer

pytestmark = pytest.mark.slow


def test_a_change_made_outside_the_api_is_shown_even_while_the_read_cache_holds_the_old_page(
    tmp_path: Path, browser: Browser
) -> None:
    """The API replays a read for a moment (here 30 s, to make the moment plain); a page redrawn
    for an audit event asks for what follows that event, never for the replay of a read made
    before it (which left the page showing the old state until some later event)."""
    store = Store(f"sqlite:///{tmp_path / 'live.db'}")
    config = load_config_data({"engine": {"state_dir": str(tmp_path / "state"), "host_metrics": False},
                               "services": [{"name": "web", "type": "http"}]}, source="t.yaml", base_dir=tmp_path)
    server = ApiServer(create_app(ApiContext(store=store, config=config, read_cache_s=30.0)), port=0)
    server.start()
    try:
        token = create_token(store, "e2e-viewer", "viewer")
        page = browser.new_page()
        page.goto(f"{server.url}/?token={token}")
        expect(page.get_by_test_id("pause-state")).to_have_text("Automation ACTIVE")
        expect(page.get_by_test_id("live")).to_have_text("live")
        # the CLI's autonomic pause: written to the store, not through the API
        store.set_state(PAUSE_GLOBAL, {"reason": "deploy freeze", "actor": "person:cli", "ts": 1.0},
                        actor="person:cli", event="pause.set", data={"service": None, "reason": "deploy freeze"})
        expect(page.get_by_test_id("pause-state")).to_contain_text("PAUSED by person:cli", timeout=10_000)
        expect(page.get_by_test_id("paused-banner")).to_contain_text("ALL AUTOMATION PAUSED")
        page.close()
    finally:
        server.stop()
        store.close()


def test_the_audit_page_verifies_the_chain_when_opened_not_at_every_redraw_for_a_new_event(
    tmp_path: Path, browser: Browser
) -> None:
    """Verifying reads the whole log (seconds at a million events), so a busy engine's events
    must not make the page re-read it at every redraw: the new event is listed at once and
    marked as not yet verified, and "Verify again" checks the chain with it."""
    store = Store(f"sqlite:///{tmp_path / 'live.db'}")
    config = load_config_data({"engine": {"state_dir": str(tmp_path / "state"), "host_metrics": False},
                               "services": [{"name": "web", "type": "http"}]}, source="t.yaml", base_dir=tmp_path)
    server = ApiServer(create_app(ApiContext(store=store, config=config)), port=0)
    server.start()
    try:
        token = create_token(store, "e2e-viewer", "viewer")
        page = browser.new_page()
        verifies: list[str] = []
        page.on("request", lambda r: verifies.append(r.url) if "/audit/verify" in r.url else None)
        page.goto(f"{server.url}/?token={token}#/audit")
        expect(page.get_by_test_id("live")).to_have_text("live")
        expect(page.get_by_test_id("audit-verify")).to_contain_text("chain verified")
        assert len(verifies) == 1
        store.set_state(PAUSE_GLOBAL, {"reason": "freeze", "actor": "person:cli", "ts": 1.0},
                        actor="person:cli", event="pause.set", data={"service": None, "reason": "freeze"})
        newest = store.audit_events(newest=True, limit=1)[0].seq
        expect(page.get_by_test_id(f"audit-{newest}")).to_contain_text("pause.set", timeout=10_000)
        expect(page.get_by_test_id("audit-unverified")).to_contain_text("1 newer not yet verified")
        assert len(verifies) == 1
        page.get_by_test_id("audit-verify-again").click()
        expect(page.get_by_test_id("audit-verify")).to_contain_text(f"{newest} events")
        expect(page.get_by_test_id("audit-unverified")).to_have_count(0)
        assert len(verifies) == 2
        page.close()
    finally:
        server.stop()
        store.close()
