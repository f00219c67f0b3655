"""The dashboard in real headless Chromium while the demo runs.

The issue's words: open the dashboard while the demo runs, approve an escalated action, press
the kill switch, and see the state change. The demo's three services run under the real
engine; the API serves the dashboard; Playwright drives Debian's chromium. Screenshots of
every step go to ``artifacts/dashboard/``.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, Route, expect

from autonomic.config import load_config
from autonomic.demo import faults
from autonomic.demo.scenario import FAST, _free_port, prepare
from autonomic.engine import PAUSE_GLOBAL, Engine
from autonomic.model import Decision, Incident, IncidentState, Level, Notification, Verdict
from autonomic.oversight.api import ApiContext, create_app
from autonomic.oversight.auth import create_token
from autonomic.oversight.server import ApiServer
from autonomic.testing import FakeClock

pytestmark = pytest.mark.slow

ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts" / "dashboard"

@dataclass
class Stack:
    engine: Engine
    base: str
    token: str
    urls: dict[str, str]


def _wait(predicate: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def _healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/health", timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    work = tmp_path_factory.mktemp("dashboard")
    config_path, urls = prepare(work, FAST)
    config = load_config(config_path)
    engine = Engine(config)
    stop = threading.Event()
    thread = threading.Thread(target=engine.run, args=(stop,), name="engine", daemon=True)
    thread.start()
    port = _free_port()
    server = ApiServer(create_app(ApiContext(store=engine.store, config=config, engine=engine)), "127.0.0.1", port)
    try:
        _wait(lambda: all(_healthy(u) for u in urls.values()), 30, "the demo services to answer /health")
        token = create_token(engine.store, "e2e-operator", "operator")
        server.start()
        yield Stack(engine, f"http://127.0.0.1:{port}", token, urls)
    finally:
        server.stop()
        stop.set()
        thread.join(timeout=30)


def _shot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def _awaiting(engine: Engine, service: str) -> Incident | None:
    for inc in engine.store.incidents(service=service, limit=50):
        if inc.state == IncidentState.AWAITING_APPROVAL:
            return inc
    return None


def test_operator_approves_an_escalated_restart_and_pulls_the_kill_switch_live(
    stack: Stack, browser: Browser
) -> None:
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    script_errors: list[str] = []
    context.on("page", lambda p: p.on("pageerror", lambda exc: script_errors.append(str(exc))))
    watcher = context.new_page()  # stays on one page and must change by itself (SSE)
    watcher.goto(f"{stack.base}/?token={stack.token}")
    # the token is taken from the URL, kept, and stripped
    expect(watcher.get_by_test_id("kill-switch")).to_be_visible()
    assert "token=" not in watcher.url
    assert watcher.evaluate("localStorage.getItem('autonomic.token')") == stack.token
    for name in ("web", "api", "worker"):
        expect(watcher.get_by_test_id(f"service-{name}")).to_be_visible()
    expect(watcher.get_by_test_id("live")).to_have_text("live")
    expect(watcher.get_by_test_id("service-state-web")).to_have_text("HEALTHY", timeout=15_000)
    _shot(watcher, "01-overview-healthy")

    # a failure no pattern knows: the engine proposes the fallback restart and asks a person
    faults.inject(stack.urls["web"], "error_spike", ratio=0.3)
    approvals = context.new_page()  # opened without ?token=: the kept token is used
    approvals.goto(f"{stack.base}/#/approvals")
    approve = approvals.locator("[data-testid^='approve-']").first
    expect(approve).to_be_visible(timeout=40_000)
    incident = _wait(lambda: _awaiting(stack.engine, "web"), 5, "an incident awaiting approval in the store")
    expect(approvals.get_by_test_id(f"approval-{incident.id}")).to_contain_text("process")
    expect(watcher.get_by_test_id(f"incident-state-{incident.id}")).to_have_text("awaiting approval")
    expect(watcher.get_by_test_id("approval-count")).to_have_text("1")
    _shot(watcher, "02-overview-incident")
    _shot(approvals, "03-approvals-queue")

    # the watcher looks at the incident page; the approval happens in the other tab
    watcher.goto(f"{stack.base}/#/incidents/{incident.id}")
    expect(watcher.get_by_test_id("incident-state")).to_have_text("awaiting approval")
    expect(watcher.get_by_test_id("svg-error_rate").get_by_test_id("threshold-line")).to_have_count(1)
    expect(watcher.get_by_test_id("gate-autonomy")).to_be_visible()
    approvals.get_by_test_id(f"comment-{incident.id}").fill("e2e: restart it")
    approvals.get_by_test_id(f"approve-{incident.id}").click()
    expect(approvals.get_by_test_id("approvals-empty")).to_be_visible(timeout=10_000)
    expect(watcher.get_by_test_id("incident-state")).not_to_have_text("awaiting approval", timeout=15_000)
    expect(watcher.get_by_test_id("action-marker").first).to_be_attached(timeout=15_000)
    decisions = stack.engine.store.decisions(incident.id)
    approved = [d for d in decisions if isinstance(d, Decision) and d.verdict == Verdict.APPROVED]
    assert approved and approved[-1].decided_by == "token:e2e-operator", decisions
    assert approved[-1].comment == "e2e: restart it"
    _shot(watcher, "04-incident-after-approval")

    # the kill switch, pressed in one tab, seen in the store and live in the other
    watcher.goto(f"{stack.base}/#/")
    watcher.get_by_test_id("kill-reason").fill("e2e: stop everything")
    watcher.get_by_test_id("kill-switch").click()
    expect(watcher.get_by_test_id("pause-state")).to_contain_text("PAUSED by token:e2e-operator: e2e: stop everything")
    paused = stack.engine.store.get_state(PAUSE_GLOBAL)
    assert paused is not None and paused["reason"] == "e2e: stop everything"
    expect(approvals.get_by_test_id("paused-banner")).to_contain_text("ALL AUTOMATION PAUSED", timeout=10_000)
    _shot(watcher, "05-overview-paused")

    watcher.get_by_test_id("resume").click()
    expect(watcher.get_by_test_id("pause-state")).to_have_text("Automation ACTIVE")
    assert stack.engine.store.get_state(PAUSE_GLOBAL) is None
    expect(approvals.get_by_test_id("paused-banner")).to_be_hidden(timeout=10_000)
    _shot(watcher, "06-overview-resumed")

    watcher.goto(f"{stack.base}/#/audit")
    expect(watcher.get_by_test_id("audit-verify")).to_contain_text("chain verified")
    expect(watcher.get_by_test_id("audit-table")).to_contain_text("pause.lifted")
    _shot(watcher, "07-audit")
    context.close()
    assert script_errors == []


def test_a_reason_typed_for_the_kill_switch_survives_a_live_redraw_and_is_the_one_recorded(
    stack: Stack, browser: Browser
) -> None:
    """The operator types a reason, looks away; an event redraws the page; the words are kept.

    CI once saw the recorded reason be the default one: a redraw that started before the words
    were typed replaced the field after them. Here a service is paused through the API while the
    words sit in the field, so the live update rebuilds the whole overview under them.
    """
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.goto(f"{stack.base}/?token={stack.token}")
    headers = {"Authorization": f"Bearer {stack.token}"}
    expect(page.get_by_test_id("pause-api")).to_be_visible()
    try:
        page.get_by_test_id("kill-reason").fill("e2e: typed before the redraw")
        page.get_by_test_id("services").click()  # focus leaves the field: redraws may happen
        answer = httpx.post(f"{stack.base}/api/v1/pause", json={"service": "api", "reason": "e2e redraw"},
                            headers=headers, timeout=10)
        assert answer.status_code == 200, answer.text
        expect(page.get_by_test_id("resume-api")).to_be_visible(timeout=10_000)  # the page was redrawn
        expect(page.get_by_test_id("kill-reason")).to_have_value("e2e: typed before the redraw")
        page.get_by_test_id("kill-switch").click()
        expect(page.get_by_test_id("pause-state")).to_contain_text("e2e: typed before the redraw")
        paused = stack.engine.store.get_state(PAUSE_GLOBAL)
        assert paused is not None and paused["reason"] == "e2e: typed before the redraw"
        page.get_by_test_id("resume").click()
        expect(page.get_by_test_id("pause-state")).to_have_text("Automation ACTIVE")
        # the words were recorded, so the field starts empty again
        expect(page.get_by_test_id("kill-reason")).to_have_value("")
    finally:
        for service in (None, "api"):
            httpx.post(f"{stack.base}/api/v1/resume", json={"service": service}, headers=headers, timeout=10)
        context.close()


def test_incident_chart_draws_the_forecast_with_its_interval_the_threshold_and_action_markers(
    stack: Stack, browser: Browser
) -> None:
    now = time.time()
    ts = [now - 60 + i for i in range(0, 60, 2)]
    chain = {
        "incident": {"id": "f" * 32, "service": "api", "cause": "memory", "state": "resolved", "severity": "warning",
                     "kind": "forecast", "opened_at": now - 20, "updated_at": now, "last_finding_at": now - 20,
                     "finding_count": 1, "summary": "memory_percent will reach 85 in 90 s",
                     "resolution": "prevented", "closed_at": now},
        "findings": [{"id": "1" * 32, "service": "api", "metric": "memory_percent", "kind": "forecast",
                      "cause": "memory", "severity": "warning", "confidence": 0.9, "ts": now - 20, "value": 60.0,
                      "threshold": 85.0, "summary": "breach forecast", "incident_id": "f" * 32,
                      "evidence": {"slope_per_s": 0.28, "intercept": 60.0, "breach_at": now + 70, "eta_s": 90.0,
                                   "eta_low_s": 70.0, "eta_high_s": 120.0, "threshold": 85.0, "r2": 0.97}}],
        "diagnoses": [], "decisions": [], "outcomes": [], "audit": [],
        "actions": [{"id": "2" * 32, "decision_id": "3" * 32, "incident_id": "f" * 32, "service": "api",
                     "type": "process", "params": {"op": "restart"}, "idempotency_key": "k", "state": "succeeded",
                     "steps": [], "created_at": now - 15, "updated_at": now - 5, "applied_at": now - 14}],
        "series": {"memory_percent": {"ts": ts, "values": [40 + 0.28 * (t - ts[0]) for t in ts]}},
        "thresholds": {"memory_percent": {"value": 85.0, "direction": "max"}},
    }
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    # the page and its script come from the real server; this one incident's JSON is canned
    page.route(f"**/api/v1/incidents/{'f' * 32}", lambda route: route.fulfill(
        status=200, content_type="application/json", body=json.dumps(chain)))
    page.goto(f"{stack.base}/?token={stack.token}#/incidents/{'f' * 32}")
    svg = page.get_by_test_id("svg-memory_percent")
    expect(svg.get_by_test_id("forecast-line")).to_have_count(1)
    expect(svg.get_by_test_id("forecast-band")).to_have_count(1)
    expect(svg.get_by_test_id("threshold-line")).to_have_count(1)
    expect(svg.get_by_test_id("action-marker")).to_have_count(1)
    # the threshold line sits where the forecast line ends (both at 85), on finite coordinates
    y_threshold = float(svg.get_by_test_id("threshold-line").get_attribute("y1") or "nan")
    assert y_threshold == pytest.approx(float(svg.get_by_test_id("forecast-line").get_attribute("y2") or "nan"))
    expect(page.get_by_test_id("forecast-text")).to_contain_text("in 90 s (95%: 70 s to 2 min)")
    _shot(page, "08-incident-forecast-chart")
    context.close()


def test_incident_page_says_no_outcome_of_a_closed_incident_and_whether_a_rollback_restored_health(
    stack: Stack, browser: Browser
) -> None:
    """As `autonomic explain` does: a closed incident with no outcome says "No outcome." (it
    said "No outcome yet.", as if one were still to come), and a rolled-back fix says whether its
    undo restored health (it said "rolled back" alone, as if things were put back as they were)."""
    now = time.time()

    def chain(iid: str, outcomes: list[dict[str, object]]) -> dict[str, object]:
        return {"incident": {"id": iid, "service": "web", "cause": "errors", "state": "escalated",
                             "severity": "critical", "kind": "threshold", "opened_at": now - 60, "updated_at": now,
                             "last_finding_at": now - 60, "finding_count": 1, "summary": "error_rate 0.2 >= 0.05",
                             "resolution": "escalated", "closed_at": now},
                "findings": [], "diagnoses": [], "decisions": [], "actions": [], "audit": [], "outcomes": outcomes,
                "series": {}, "thresholds": {}}

    rolled = {"action_id": "2" * 32, "incident_id": "e" * 32, "ts": now - 5, "verdict": "fail",
              "reason": "worse than before", "before": {}, "after": {}, "duration_s": 30.0, "rolled_back": True,
              "undo_verdict": "fail"}
    canned = {"d" * 32: chain("d" * 32, []), "e" * 32: chain("e" * 32, [rolled])}
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    def answer(body: dict[str, object]) -> Callable[[Route], None]:
        return lambda route: route.fulfill(status=200, content_type="application/json", body=json.dumps(body))

    for iid, body in canned.items():  # the page and its script are the real server's; these incidents canned
        page.route(f"**/api/v1/incidents/{iid}", answer(body))
    page.goto(f"{stack.base}/?token={stack.token}#/incidents/{'d' * 32}")
    expect(page.get_by_test_id("outcome")).to_have_text("No outcome.")
    page.goto(f"{stack.base}/?token={stack.token}#/incidents/{'e' * 32}")
    expect(page.get_by_test_id("outcome")).to_contain_text("rolled back, but the undo did NOT restore health")
    context.close()


def test_dashboard_asks_for_a_token_rejects_a_wrong_one_and_shows_a_viewer_the_403(
    stack: Stack, browser: Browser
) -> None:
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    page.goto(f"{stack.base}/")
    expect(page.get_by_test_id("token-box")).to_be_visible()
    page.get_by_test_id("token-input").fill("aut_not-a-real-token")
    page.get_by_test_id("token-save").click()
    expect(page.get_by_test_id("error")).to_contain_text("refused (401)")
    expect(page.get_by_test_id("token-box")).to_be_visible()
    _shot(page, "09-token-refused")

    viewer = create_token(stack.engine.store, "e2e-viewer", "viewer")
    page.get_by_test_id("token-input").fill(viewer)
    page.get_by_test_id("token-save").click()
    expect(page.get_by_test_id("token-box")).to_be_hidden()
    page.get_by_test_id("kill-switch").click()
    expect(page.get_by_test_id("error")).to_contain_text("Not allowed (403)")
    expect(page.get_by_test_id("pause-state")).to_have_text("Automation ACTIVE")
    assert stack.engine.store.get_state(PAUSE_GLOBAL) is None
    _shot(page, "10-viewer-forbidden")
    context.close()


def test_a_service_card_shows_a_persons_queued_stop_as_waiting_for_the_engine_until_it_is_done(
    tmp_path: Path, browser: Browser
) -> None:
    """A person's stop queued through the API is on the service's card (real Chromium): what, who,
    when, the comment, and that it waits for the engine. A real engine supervising a real sleeper
    process, not ticked until then, carries it out; the reloaded card then shows the service
    stopped on purpose and no request waiting."""
    path = tmp_path / "autonomic.yaml"
    path.write_text(json.dumps({
        "engine": {"interval_s": 1, "state_dir": str(tmp_path / "state"), "host_metrics": False, "settle_s": 0},
        "services": [{"name": "sleepy", "actuators": {"process": {
            "command": [sys.executable, "-c", "import time\nwhile True:\n    time.sleep(0.05)\n"],
            "start_grace_s": 0}}}]}))
    engine = Engine(load_config(path))
    engine.start()
    port = _free_port()
    server = ApiServer(create_app(ApiContext(store=engine.store, config=engine.config, engine=engine,
                                             read_cache_s=0)), "127.0.0.1", port)
    server.start()
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    try:
        assert engine.supervisor.pid("sleepy") is not None
        token = create_token(engine.store, "e2e-ana", "operator")
        base = f"http://127.0.0.1:{port}"
        answer = httpx.post(f"{base}/api/v1/services/sleepy/stop", json={"comment": "disk swap"},
                            headers={"Authorization": f"Bearer {token}"}, timeout=10)
        assert answer.status_code == 202, answer.text
        page = context.new_page()
        page.goto(f"{base}/?token={token}")

        shown = page.get_by_test_id("service-request-sleepy-0")
        expect(shown).to_contain_text("stop requested by ")
        expect(shown).to_contain_text("e2e-ana")
        expect(shown).to_contain_text("(disk swap), waiting for the engine")
        expect(page.get_by_test_id("service-sleepy")).to_contain_text("stop queued")
        _shot(page, "11-stop-queued")

        engine.tick()  # the engine that leads carries it out
        assert engine.supervisor.pid("sleepy") is None
        page.reload()
        expect(page.get_by_test_id("service-stopped-sleepy")).to_contain_text("stopped on purpose by ")
        expect(page.get_by_test_id("service-request-sleepy-0")).to_have_count(0)
        expect(page.get_by_test_id("service-sleepy")).not_to_contain_text("queued")
    finally:
        context.close()
        server.stop()
        engine.shutdown()


def test_a_reason_the_api_refuses_is_shown_in_words_not_as_the_json_of_its_422(stack: Stack, browser: Browser) -> None:
    """A kill-switch reason past 2000 characters is refused (422) by the real API; the banner says
    which field and what is wrong ("reason: String should have at most 2000 characters"), not the
    JSON of FastAPI's detail list it showed before; nothing is paused and the words stay typed."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.goto(f"{stack.base}/?token={stack.token}")
    try:
        page.get_by_test_id("kill-reason").fill("x" * 2001)
        page.get_by_test_id("kill-switch").click()
        expect(page.get_by_test_id("error")).to_have_text(
            "Failed: reason: String should have at most 2000 characters", timeout=10_000)
        assert stack.engine.store.get_state(PAUSE_GLOBAL) is None
        expect(page.get_by_test_id("kill-reason")).to_have_value("x" * 2001)
    finally:
        context.close()


def test_the_front_page_says_when_notifications_wait_for_a_notifier_that_is_down(
    tmp_path: Path, browser: Browser
) -> None:
    """A real engine whose Slack (a loopback server answering 503) gave up on a notification: the
    front page (real Chromium) says it is not yet delivered, which notifier fails and when it is
    tried again; once Slack takes it, the line is gone."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    status = [503]

    class Slack(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            self.rfile.read(int(self.headers.get("Content-Length", "0")))
            self.send_response(status[0])
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *_: Any) -> None:
            pass

    slack = ThreadingHTTPServer(("127.0.0.1", 0), Slack)
    threading.Thread(target=slack.serve_forever, daemon=True).start()
    path = tmp_path / "autonomic.yaml"
    path.write_text(json.dumps({
        "engine": {"interval_s": 1, "state_dir": str(tmp_path / "state"), "host_metrics": False},
        "notifiers": [{"type": "slack", "url": f"http://127.0.0.1:{slack.server_address[1]}/hook"}]}))
    clock = FakeClock(time.time())
    engine = Engine(load_config(path), clock=clock)
    engine.notifiers.max_attempts, engine.notifiers.backoff_s = 1, 0
    engine.start()
    port = _free_port()
    server = ApiServer(create_app(ApiContext(store=engine.store, config=engine.config, engine=engine,
                                             read_cache_s=0, clock=clock)), "127.0.0.1", port)
    server.start()
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    try:
        engine.notify(Notification(level=Level.ALERT, title="db is down", ts=clock.now()))
        assert engine.notifiers.flush(10)
        engine.tick()  # settled: kept for slack, offered again in 30 s
        token = create_token(engine.store, "e2e-ana", "viewer")
        page = context.new_page()
        page.goto(f"http://127.0.0.1:{port}/?token={token}")
        shown = page.get_by_test_id("notifications-pending")
        expect(shown).to_contain_text("1 notification not yet delivered, the oldest made ")
        expect(shown).to_contain_text("failing: slack (1); next retry in ")
        _shot(page, "12-notifications-pending")

        status[0] = 200
        clock.advance(31)
        engine.tick()  # offered again: delivered
        assert engine.notifiers.flush(10)
        engine.tick()  # settled: forgotten
        page.reload()
        expect(page.get_by_test_id("control")).to_be_visible()  # the page is drawn
        expect(page.get_by_test_id("notifications-pending")).to_have_count(0)
    finally:
        context.close()
        server.stop()
        engine.shutdown()
        slack.shutdown()
        slack.server_close()
