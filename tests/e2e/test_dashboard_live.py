"""The dashboard in real headless Chromium against an API without an engine: what it shows
after a change made outside the API (the CLI, the engine) reaches it as a server-sent event."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, expect

from autonomic.config import load_config_data
from autonomic.engine import PAUSE_GLOBAL
from autonomic.knowledge import Store
from autonomic.model import (
    TROUBLE_CLEARED,
    ActionSpec,
    Decision,
    Diagnosis,
    FindingKind,
    GateResult,
    Incident,
    IncidentState,
    Severity,
    Verdict,
)
from autonomic.oversight.api import ApiContext, create_app
from autonomic.oversight.auth import create_token
from autonomic.oversight.server import ApiServer

pytestmark = pytest.mark.slow


@contextlib.contextmanager
def _api(tmp_path: Path, read_cache_s: float = 0.5) -> Iterator[tuple[Store, ApiServer]]:
    """A store in ``tmp_path`` and the API (no engine) serving it on a free port, for the block."""
    store = Store(f"sqlite:///{tmp_path / 'live.db'}")
    config = load_config_data({"engine": {"state_dir": str(tmp_path / "state"), "host_metrics": False},
                               "services": [{"name": "web", "type": "http"}]}, source="t.yaml", base_dir=tmp_path)
    server = ApiServer(create_app(ApiContext(store=store, config=config, read_cache_s=read_cache_s)), port=0)
    server.start()
    try:
        yield store, server
    finally:
        server.stop()
        store.close()


def test_a_change_made_outside_the_api_is_shown_even_while_the_read_cache_holds_the_old_page(
    tmp_path: Path, browser: Browser
) -> None:
    """The API replays a read for a moment (here 30 s, to make the moment plain); a page redrawn
    for an audit event asks for what follows that event, never for the replay of a read made
    before it (which left the page showing the old state until some later event)."""
    with _api(tmp_path, read_cache_s=30.0) as (store, server):
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


def test_the_audit_page_verifies_the_chain_when_opened_not_at_every_redraw_for_a_new_event(
    tmp_path: Path, browser: Browser
) -> None:
    """Verifying reads the whole log (seconds at a million events), so a busy engine's events
    must not make the page re-read it at every redraw: the new event is listed at once and
    marked as not yet verified, and "Verify again" checks the chain with it."""
    with _api(tmp_path) as (store, server):
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


def test_the_incident_page_writes_one_of_a_thing_singular_and_more_plural(tmp_path: Path, browser: Browser) -> None:
    """Counts on the incident page go through the page's ``counted`` (the rule of
    ``autonomic.printable.counted``): an action step's 1-sample list reads "1 value" beside "3
    values", and the notes on what a long incident's page leaves out "1 finding" and "2 events".
    The page and its script come from the real API (no engine); this one incident's JSON is canned.

    Before: "1 values" and "1 findings between the first and the latest"."""
    now = time.time()
    iid = "e" * 32
    chain = {
        "incident": {"id": iid, "service": "web", "cause": "down", "state": "escalated", "severity": "critical",
                     "kind": "state", "opened_at": now - 60, "updated_at": now, "last_finding_at": now - 5,
                     "finding_count": 5, "summary": "web is down"},
        "findings": [], "diagnoses": [], "decisions": [], "outcomes": [], "audit": [], "series": {},
        "omitted": {"findings": 1, "audit": 2},
        "actions": [{"id": "2" * 32, "decision_id": "3" * 32, "incident_id": iid, "service": "web",
                     "type": "process", "params": {"op": "restart"}, "idempotency_key": "k", "state": "escalated",
                     "created_at": now - 50, "updated_at": now - 5, "applied_at": now - 49,
                     "steps": [{"name": "baseline", "ok": True, "started_at": now - 50, "finished_at": now - 50,
                                "detail": {"ts": [now - 51], "values": [1.0, 1.0, 0.0]}}]}],
    }
    with _api(tmp_path) as (store, server):
        token = create_token(store, "e2e-viewer", "viewer")
        page = browser.new_page()
        page.route(f"**/api/v1/incidents/{iid}", lambda route: route.fulfill(
            status=200, content_type="application/json", body=json.dumps(chain)))
        page.goto(f"{server.url}/?token={token}#/incidents/{iid}")
        expect(page.get_by_test_id(f"action-{'2' * 32}")).to_contain_text("ts: 1 value · values: 3 values")
        expect(page.get_by_test_id("omitted-findings")).to_contain_text("1 finding between the first and the latest")
        expect(page.get_by_test_id("omitted-events")).to_contain_text("2 events between the first and the latest")
        page.close()


def test_the_front_page_of_a_mass_outage_counts_every_open_incident_and_draws_alert_text_as_text(
    tmp_path: Path, browser: Browser
) -> None:
    """A real store with a request for approval on db, then 1,000 newer open incidents (one of
    them from an alert whose service and summary are HTML with a script). The page lists the
    newest 1,000, its heading says there are 1,001, the request still shows as awaiting approval
    (the badge and the link said nothing: they counted among the newest 1,000 only), and the
    alert's markup is shown as written, never run.

    Before: no "1 awaiting approval", and "Open incidents" as if that were all of them."""
    hostile = '<img src=x onerror="window.__pwned = 1">'
    with _api(tmp_path) as (store, server):
        token = create_token(store, "e2e-viewer", "viewer")
        now = time.time()
        waiting = Incident(service="db", cause="down", state=IncidentState.AWAITING_APPROVAL,
                           severity=Severity.CRITICAL, kind=FindingKind.STATE, opened_at=now - 600,
                           updated_at=now - 600, last_finding_at=now - 600, summary="db is down")
        with store.unit():
            store.record(waiting, actor="engine", event="decision.needs_approval", subject=waiting.id)
            for k in range(1000):
                t = now - 500 + k * 0.1
                inc = Incident(service=hostile if k == 999 else "web", cause=f"c{k}", severity=Severity.WARNING,
                               kind=FindingKind.ALERT, opened_at=t, updated_at=t, last_finding_at=t,
                               summary=hostile if k == 999 else "errors")
                store.record(inc, actor="engine", event="incident.opened", subject=inc.id)
        page = browser.new_page()
        page.goto(f"{server.url}/?token={token}")
        expect(page.get_by_test_id("awaiting-link")).to_have_text("1 awaiting approval →", timeout=15_000)
        expect(page.get_by_test_id("approval-count")).to_have_text("1")
        expect(page.get_by_role("heading", name="Open incidents (the newest 1000 of 1001)")).to_be_visible()
        expect(page.locator("[data-testid^=incident-row-]")).to_have_count(1000)
        expect(page.get_by_test_id("open-incidents")).to_contain_text(hostile)
        assert page.evaluate("window.__pwned") is None
        page.close()


def test_the_incident_page_says_the_day_of_a_time_not_today_and_the_header_names_the_time_zone(
    tmp_path: Path, browser: Browser
) -> None:
    """A browser in Asia/Tokyo (UTC+09:00) opens an incident escalated two days ago, as the
    person paged by a Slack message whose times are UTC would. Its finding, decision and action
    times read with their date, and the header says which zone the page's times are in.

    Before: "by engine at 09:12:03", a time of day with no day and no zone (the page shows the
    browser's zone; the page that paged them said UTC)."""
    now = time.time()
    then = now - 2 * 86400
    day = time.strftime("%Y-%m-%d", time.gmtime(then + 9 * 3600))
    iid = "d" * 32
    action = {"type": "process", "params": {"op": "restart"}, "target": "web"}
    chain = {
        "incident": {"id": iid, "service": "web", "cause": "down", "state": "escalated", "severity": "critical",
                     "kind": "state", "opened_at": then, "updated_at": then, "last_finding_at": then,
                     "finding_count": 1, "summary": "web is down"},
        "findings": [{"id": "f" * 32, "service": "web", "metric": "up", "kind": "state", "cause": "down",
                      "severity": "critical", "confidence": 1.0, "ts": then, "summary": "web is down",
                      "evidence": {}, "incident_id": iid}],
        "diagnoses": [], "outcomes": [], "audit": [], "series": {}, "omitted": {"findings": 0, "audit": 0},
        "decisions": [{"id": "3" * 32, "incident_id": iid, "diagnosis_id": "4" * 32, "ts": then,
                       "verdict": "needs_approval", "action": action, "gates": [], "decided_by": "engine"}],
        "actions": [],
    }
    with _api(tmp_path) as (store, server):
        token = create_token(store, "e2e-viewer", "viewer")
        context = browser.new_context(timezone_id="Asia/Tokyo")
        page = context.new_page()
        page.route(f"**/api/v1/incidents/{iid}", lambda route: route.fulfill(
            status=200, content_type="application/json", body=json.dumps(chain)))
        page.goto(f"{server.url}/?token={token}#/incidents/{iid}")
        expect(page.get_by_test_id("zone")).to_have_text("times in UTC+09:00 (Asia/Tokyo)")
        expect(page.get_by_test_id("ruled-by")).to_contain_text(f"at {day} ")
        expect(page.get_by_test_id("view")).to_contain_text(f"opened {day} ")
        context.close()


def test_live_updates_come_back_after_the_event_stream_was_refused_while_the_api_restarted(
    tmp_path: Path, browser: Browser
) -> None:
    """Behind an ingress, a restarting engine's API is answered by the proxy: 502 or 503. An
    EventSource refused so gives up for good, so the page stayed "reconnecting" and never redrew
    again, the API long back. The page tries again: once the stream answers it is live, and a
    pause made meanwhile shows. The first two event-stream requests are answered 503 here (as
    the proxy would), the rest reach the real API."""
    with _api(tmp_path) as (store, server):
        token = create_token(store, "e2e-viewer", "viewer")
        page = browser.new_page()
        refused: list[str] = []

        def stream(route: Any) -> None:
            if len(refused) < 2:
                refused.append(route.request.url)
                route.fulfill(status=503, content_type="text/html", body="<h1>503 Service Unavailable</h1>")
            else:
                route.continue_()

        page.route("**/api/v1/events*", stream)
        page.goto(f"{server.url}/?token={token}")
        expect(page.get_by_test_id("pause-state")).to_have_text("Automation ACTIVE")
        expect(page.get_by_test_id("live")).not_to_have_text("live", timeout=5_000)
        store.set_state(PAUSE_GLOBAL, {"reason": "deploy freeze", "actor": "person:cli", "ts": 1.0},
                        actor="person:cli", event="pause.set", data={"service": None, "reason": "deploy freeze"})
        expect(page.get_by_test_id("live")).to_have_text("live", timeout=20_000)
        expect(page.get_by_test_id("pause-state")).to_contain_text("PAUSED by person:cli", timeout=10_000)
        assert len(refused) == 2
        page.close()


def _asked_then(store: Store, ts: float, *, then: Decision | None = None, closed: str | None = None,
                late_by: str | None = None) -> tuple[Incident, Decision]:
    """An incident whose restart was put to a person, then ``then`` (a decision) or, with
    ``closed``, closed unanswered: ``expired`` (the request's time ran out; ``late_by`` approved
    after it) or ``quiet`` (swept closed: the trouble cleared before an answer)."""
    inc = Incident(service="web", cause="down", severity=Severity.CRITICAL, kind=FindingKind.STATE, opened_at=ts,
                   updated_at=ts, last_finding_at=ts, summary="web is down", state=IncidentState.AWAITING_APPROVAL)
    action = ActionSpec(type="process", target="web", params={"op": "restart"})
    diagnosis = Diagnosis(incident_id=inc.id, ts=ts, pattern_id="process-down-restart", action=action,
                          confidence=0.8, rationale="down")
    asked = Decision(incident_id=inc.id, diagnosis_id=diagnosis.id, ts=ts, verdict=Verdict.NEEDS_APPROVAL,
                     action=action, pattern_id="process-down-restart",
                     gates=[GateResult(gate="autonomy", passed=False, needs_approval=True, reason="approve")])
    store.record(inc, diagnosis, asked, actor="engine", event="decision.needs_approval", subject=inc.id)
    done = inc.model_copy(update={"state": IncidentState.EXPIRED, "closed_at": ts + 60, "updated_at": ts + 60})
    if then is not None:
        then = then.model_copy(update={"incident_id": inc.id, "diagnosis_id": diagnosis.id, "action": action,
                                       "pattern_id": "process-down-restart"})
        store.record(then, done, actor="engine", event="decision.denied", subject=inc.id)
        return inc, then
    event = "approval.expired" if closed == "expired" else "incident.closed"
    store.record(done, actor="engine", event=event, subject=inc.id,
                 data={"approved_late_by": late_by} if late_by else {"quiet_s": 60})
    return inc, asked


def test_a_persons_approval_that_a_gate_refused_or_the_engine_closed_is_not_shown_as_their_denial(
    tmp_path: Path, browser: Browser
) -> None:
    """An incident page listed each decision as "<verdict> by <decided_by>": a person's approval
    that the rate limit then refused read "denied by person:ana", as if ana had said no; one not
    acted on because the trouble cleared read the same. Each now says what really happened, and
    a request the incident closed on says why it was never acted on."""
    with _api(tmp_path) as (store, server):
        t = 1_700_000_000.0
        gated = Decision(incident_id="-", diagnosis_id="-", ts=t + 30, verdict=Verdict.DENIED, decided_by="person:ana",
                         gates=[GateResult(gate="autonomy", passed=True, reason="approved by a person"),
                                GateResult(gate="rate_limit", passed=False, reason="3 of 3 today")])
        cleared = Decision(incident_id="-", diagnosis_id="-", ts=t + 30, verdict=Verdict.DENIED,
                           decided_by="person:bob", gates=[GateResult(gate=TROUBLE_CLEARED, passed=False,
                                                                      reason="cleared before it was acted on")])
        said_no = Decision(incident_id="-", diagnosis_id="-", ts=t + 30, verdict=Verdict.DENIED,
                           decided_by="person:cy")
        shown = {
            "gated": (_asked_then(store, t, then=gated)[1], "denied", "by rate_limit, though person:ana approved"),
            "cleared": (_asked_then(store, t, then=cleared)[1], "not acted on",
                        "as the trouble cleared on its own first, though person:bob approved"),
            "said no": (_asked_then(store, t, then=said_no)[1], "denied", "by person:cy"),
            "expired": (_asked_then(store, t, closed="expired")[1], "needs approval",
                        "by engine; expired unanswered"),
            "late": (_asked_then(store, t, closed="expired", late_by="person:dee")[1], "needs approval",
                     "by engine; expired: approved by person:dee after the request expired"),
            "quiet": (_asked_then(store, t, closed="quiet")[1], "needs approval",
                      "by engine; the trouble cleared on its own before an answer"),
        }
        token = create_token(store, "e2e-viewer", "viewer")
        page = browser.new_page()
        page.goto(f"{server.url}/?token={token}")
        for what, (decision, verdict, by) in shown.items():
            page.goto(f"{server.url}/#/incidents/{decision.incident_id}")
            panel = page.get_by_test_id(f"decision-{decision.id}")
            expect(panel.locator(".tag").first).to_have_text(verdict)
            expect(panel.get_by_test_id("ruled-by")).to_contain_text(by)
            # only a person's own denial is theirs
            assert panel.get_by_test_id("ruled-by").inner_text().startswith("by person:") == (what == "said no")
        page.close()


def test_the_approvals_queue_and_the_incident_page_show_when_a_request_expires_as_recorded(
    tmp_path: Path, browser: Browser
) -> None:
    """The engine that asked recorded its request to expire two hours after it (its
    approval_ttl_s); this API's config says an hour. The approvals card says when the request
    expires by the recorded time (in about 2 h, not in 59 min), and so does the incident page."""
    with _api(tmp_path) as (store, server):
        ts = time.time() - 60
        inc = Incident(service="web", cause="down", severity=Severity.CRITICAL, kind=FindingKind.STATE,
                       opened_at=ts, updated_at=ts, last_finding_at=ts, summary="web is down",
                       state=IncidentState.AWAITING_APPROVAL)
        action = ActionSpec(type="process", target="web", params={"op": "restart"})
        diagnosis = Diagnosis(incident_id=inc.id, ts=ts, pattern_id="process-down-restart", action=action,
                              confidence=0.8, rationale="down")
        asked = Decision(incident_id=inc.id, diagnosis_id=diagnosis.id, ts=ts, verdict=Verdict.NEEDS_APPROVAL,
                         action=action, pattern_id="process-down-restart", expires_at=ts + 7200,
                         gates=[GateResult(gate="autonomy", passed=False, needs_approval=True, reason="approve")])
        store.record(inc, diagnosis, asked, actor="engine", event="decision.needs_approval", subject=inc.id)
        token = create_token(store, "e2e-viewer", "viewer")
        page = browser.new_page()
        page.goto(f"{server.url}/?token={token}")
        page.goto(f"{server.url}/#/approvals")
        expect(page.get_by_test_id(f"expires-{inc.id}")).to_contain_text("(in 2.0 h)")
        page.goto(f"{server.url}/#/incidents/{inc.id}")
        expect(page.get_by_test_id(f"decision-{asked.id}").get_by_test_id("request-expiry")).to_contain_text(
            "request expiry ")
        page.close()


def test_with_the_database_down_the_front_page_still_draws_the_kill_switch_and_it_pauses_by_the_file(
    tmp_path: Path, browser: Browser, postgres_server: Any
) -> None:
    """The API serves inside an engine (its pause file is read before every actuator call) over a
    real PostgreSQL database, which is then made to refuse every connection (ALLOW_CONNECTIONS
    false, its sessions ended). The operator opens the dashboard anew: the overview cannot be read
    (503), so the page says the store does not answer and draws the kill switch, its state
    unknown; pressed, it pauses by the engine's pause file (the operator's token was verified in
    the store before the outage) and says so. Before, the page showed only "Could not load this
    page": no kill switch to press."""
    from autonomic.engine import Engine, pause_file
    from autonomic.oversight.notify import Dispatcher

    url = postgres_server.create_database("autonomic_e2e_down")
    store = Store(url)
    config = load_config_data({"engine": {"state_dir": str(tmp_path / "state"), "host_metrics": False},
                               "services": [{"name": "web", "type": "http"}]}, source="t.yaml", base_dir=tmp_path)
    engine = Engine(config, store=store, sources=[], detectors=[], notifiers=Dispatcher())
    server = ApiServer(create_app(ApiContext(store=store, config=config, engine=engine, read_cache_s=0)), port=0)
    server.start()
    admin = postgres_server.connect()
    try:
        token = create_token(store, "e2e-operator", "operator")
        page = browser.new_page()
        page.goto(f"{server.url}/?token={token}")
        expect(page.get_by_test_id("pause-state")).to_have_text("Automation ACTIVE")  # verified, store up
        with admin.cursor() as cur:
            cur.execute("ALTER DATABASE autonomic_e2e_down ALLOW_CONNECTIONS false")
            cur.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = 'autonomic_e2e_down'")
        page.reload()
        expect(page.get_by_test_id("store-down")).to_contain_text("The store does not answer", timeout=10_000)
        expect(page.get_by_test_id("pause-state")).to_have_text("Automation state unknown: the store does not answer")
        page.get_by_test_id("kill-reason").fill("database down, hands off")
        page.get_by_test_id("kill-switch").click()
        path = pause_file(config.state_dir, None)
        expect(page.get_by_test_id("error")).to_contain_text(f"Paused by the pause file {path}", timeout=10_000)
        assert json.loads(path.read_text())["reason"] == "database down, hands off"
        assert json.loads(path.read_text())["actor"] == "token:e2e-operator"
        page.close()
    finally:
        with admin.cursor() as cur:
            cur.execute("ALTER DATABASE autonomic_e2e_down ALLOW_CONNECTIONS true")
        admin.close()
        server.stop()
        store.close()
        postgres_server.drop_database("autonomic_e2e_down")
