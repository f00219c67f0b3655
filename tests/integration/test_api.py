"""The REST API against a real store (SQLite in tmp_path): every route's happy path, auth (401/403
on every mutation, with nothing stored changed), bad input (404, 409, 422, 413), the
Alertmanager webhook's bearer and HMAC checks, and server-sent events through a real server."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import time
import warnings
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from autonomic.config import load_config_data
from autonomic.engine import Engine, approval_key, pause_file, pause_key, paused_reason
from autonomic.knowledge import Store
from autonomic.liveness import Watchdog
from autonomic.model import (
    Action,
    ActionSpec,
    ActionState,
    Decision,
    Diagnosis,
    Finding,
    FindingKind,
    Incident,
    IncidentState,
    Resolution,
    Sample,
    Severity,
    Verdict,
    new_id,
)
from autonomic.monitor.replay import ReplaySource
from autonomic.oversight.api import ApiContext, create_app
from autonomic.oversight.auth import create_token, revoke
from autonomic.oversight.dashboard import STATIC
from autonomic.oversight.metrics import EngineMetrics
from autonomic.oversight.notify import Dispatcher
from autonomic.oversight.server import ApiServer
from autonomic.testing import FakeClock

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

T0 = 1_700_000_000.0
SECRET = "s3cret-hmac"


@dataclass
class Env:
    store: Store
    ctx: ApiContext
    client: TestClient
    tokens: dict[str, str]
    open_id: str
    waiting_id: str
    closed_id: str

    def auth(self, role: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[role]}"}

    def seq(self) -> int:
        events = self.store.audit_events()
        return events[-1].seq if events else 0


def _config(tmp_path: Path) -> Any:
    data = {
        "engine": {"state_dir": str(tmp_path / "state"), "interval_s": 1, "host_metrics": False},
        "services": [{"name": "web", "type": "http", "thresholds": {"memory_percent": 80}},
                     {"name": "db", "depends_on": []}],
    }
    return load_config_data(data, source="test.yaml", base_dir=tmp_path)


def _seed(store: Store) -> tuple[str, str, str]:
    """An open memory incident on web, a db incident awaiting approval and a closed one."""
    t = T0
    opened = Incident(service="web", cause="memory", severity=Severity.WARNING, kind=FindingKind.THRESHOLD,
                      opened_at=t, updated_at=t, last_finding_at=t, summary="memory_percent 91 >= 80")
    finding = Finding(service="web", metric="memory_percent", kind=FindingKind.THRESHOLD, cause="memory",
                      severity=Severity.WARNING, confidence=0.9, ts=t, value=91.0, threshold=80.0,
                      summary="memory_percent 91 >= 80", incident_id=opened.id)
    store.record(finding, opened, actor="engine", event="incident.opened", subject=opened.id)
    waiting = Incident(service="db", cause="down", state=IncidentState.AWAITING_APPROVAL, severity=Severity.CRITICAL,
                       kind=FindingKind.STATE, opened_at=t + 1, updated_at=t + 1, last_finding_at=t + 1,
                       summary="db is down", resolution=Resolution.ESCALATED)
    action = ActionSpec(type="process", target="db", params={"op": "restart"})
    diagnosis = Diagnosis(incident_id=waiting.id, ts=t + 1, pattern_id="process-down-restart", action=action,
                          confidence=0.8, rationale="down")
    decision = Decision(incident_id=waiting.id, diagnosis_id=diagnosis.id, ts=t + 1, verdict=Verdict.NEEDS_APPROVAL,
                        action=action)
    store.record(waiting, diagnosis, decision, actor="engine", event="decision.needs_approval", subject=waiting.id)
    closed = Incident(service="web", cause="cpu", state=IncidentState.RESOLVED, severity=Severity.WARNING,
                      kind=FindingKind.THRESHOLD, opened_at=t - 100, updated_at=t - 50, last_finding_at=t - 60,
                      summary="cpu high", resolution=Resolution.RESOLVED, closed_at=t - 50)
    store.record(closed, actor="engine", event="incident.closed", subject=closed.id)
    return opened.id, waiting.id, closed.id


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    store = Store(f"sqlite:///{tmp_path / 'api.db'}")
    tokens = {role: create_token(store, role, role) for role in ("viewer", "operator", "admin")}
    ids = _seed(store)
    # no read cache here: these tests change the store behind the API's back and read at once
    ctx = ApiContext(store=store, config=_config(tmp_path), clock=FakeClock(T0 + 10), read_cache_s=0)
    with TestClient(create_app(ctx)) as client:
        yield Env(store, ctx, client, tokens, *ids)
    store.close()


def _engine(env: Env) -> Engine:
    clock = env.ctx.clock
    engine = Engine(env.ctx.config, clock=clock, store=env.store, sources=[], detectors=[],
                    notifiers=Dispatcher(), metrics=env.ctx.metrics)
    env.ctx.engine = engine
    return engine


# --- open routes -------------------------------------------------------------------------------


def test_healthz_and_metrics_need_no_token(env: Env) -> None:
    assert env.client.get("/healthz").json() == {"status": "ok"}
    r = env.client.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    assert "autonomic_findings_total" in r.text and "autonomic_loop_seconds" in r.text


def test_every_route_the_readme_does_not_name_as_open_answers_401_without_a_token(env: Env) -> None:
    """README: "Every route but `/healthz`, ... needs a token"; the rest are checked one by one."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    listed = re.search(r"Every route but (.+?) needs a token", readme, re.S)
    assert listed is not None
    named = set(re.findall(r"`([^`]+)`", listed.group(1)))
    routes = env.client.get("/openapi.json").json()["paths"]
    open_ones = []
    for path, methods in routes.items():
        for method in methods:
            r = env.client.request(method.upper(), path.format(incident_id=env.waiting_id, name="web"), json={})
            if r.status_code != 401:
                open_ones.append(f"{method.upper()} {path}")
    assert open_ones and all(route in named or route.split(" ", 1)[1] in named for route in open_ones), \
        (open_ones, named)


def test_metrics_show_pauses_set_elsewhere_and_request_latency(env: Env) -> None:
    env.store.set_state(pause_key("web"), {"reason": "cli"}, actor="person:x", event="pause.set")
    env.client.get("/api/v1/overview", headers=env.auth("viewer"))
    text = env.client.get("/metrics").text
    assert 'autonomic_paused{scope="web"} 1.0' in text
    assert 'autonomic_paused{scope="global"} 0.0' in text
    assert 'autonomic_api_request_seconds_count{method="GET",route="/api/v1/overview"} 1.0' in text


def test_metrics_label_a_request_with_an_unknown_method_other_so_anyone_cannot_add_series(env: Env) -> None:
    """The method is a label: made-up methods (sent by anyone, no token needed) share one
    ``other`` series instead of adding a histogram each to every scrape for ever."""
    for i in range(20):
        assert env.client.request(f"X{i}", "/api/v1/incidents").status_code == 405
    text = env.client.get("/metrics").text
    counts = [line for line in text.splitlines() if line.startswith("autonomic_api_request_seconds_count")]
    assert 'autonomic_api_request_seconds_count{method="other",route="/api/v1/incidents"} 20.0' in counts
    assert not any('method="X' in line for line in counts)


def test_readyz_answers_200_when_the_store_answers_without_an_engine(env: Env) -> None:
    assert env.client.get("/readyz").json() == {"status": "ok"}


def test_readyz_stays_ready_through_a_long_step_and_healthz_fails_once_the_loop_is_stuck(env: Env) -> None:
    """Readiness gates API traffic, which the store serves: a leader whose loop is in a long step
    stays ready (it went not-ready after 3 intervals, so a rolling update deleted it first: a
    second handover). Liveness is the loop's progress: /healthz fails, naming the step, once one
    step has lasted longer than stuck_after_s."""
    engine = _engine(env)
    assert env.client.get("/readyz").json() == {"status": "ok", "last_tick_s_ago": None}
    engine.tick()
    env.ctx.clock.advance(600)  # type: ignore[attr-defined]
    r = env.client.get("/readyz")
    assert r.status_code == 200 and r.json() == {"status": "ok", "last_tick_s_ago": 600.0}
    t = [0.0]
    engine.watchdog = Watchdog(30.0, lambda: t[0])
    engine.watchdog.beat("http apply of action 1234abcd on web, attempt 1 (an actuator call)")
    t[0] = 30.0
    assert env.client.get("/healthz").json() == {"status": "ok"}
    t[0] = 31.0
    r = env.client.get("/healthz")
    assert r.status_code == 503 and r.json() == {
        "status": "stuck", "reason": "the engine loop has made no progress for 31 s (limit 30 s): stuck in http "
                                     "apply of action 1234abcd on web, attempt 1 (an actuator call)"}
    engine.stuck_after_s = 30.0
    metrics = env.client.get("/metrics").text.splitlines()
    assert "autonomic_loop_silent_seconds 31.0" in metrics and "autonomic_loop_stuck_after_seconds 30.0" in metrics
    assert env.client.get("/readyz").status_code == 200
    engine.watchdog.beat("waiting for the next tick")
    assert env.client.get("/healthz").json() == {"status": "ok"}


def test_root_serves_the_dashboard_page_or_redirects_to_the_docs(env: Env) -> None:
    r = env.client.get("/", follow_redirects=False)
    if (STATIC / "index.html").is_file():
        assert r.status_code == 200 and "<html" in r.text.lower()
    else:
        assert r.status_code in (302, 307) and r.headers["location"] == "/docs"
    assert env.client.get("/openapi.json").json()["info"]["title"] == "autonomic"


def test_every_response_forbids_framing_sniffing_and_referers_errors_included(env: Env) -> None:
    """The dashboard's one-click Approve may not sit under another site's frame, and its URL,
    which holds ?token= until the page drops it, is never sent on as a Referer."""
    for r in (env.client.get("/"), env.client.get("/static/app.js"), env.client.get("/api/v1/overview"),
              env.client.get("/api/v1/overview", headers=env.auth("viewer")), env.client.get("/nope"),
              env.client.post("/api/v1/alerts", content=b"{nope", headers={"Content-Type": "application/json"})):
        assert r.headers["x-frame-options"] == "DENY", r.url
        assert r.headers["content-security-policy"] == "frame-ancestors 'none'"
        assert r.headers["x-content-type-options"] == "nosniff" and r.headers["referrer-policy"] == "no-referrer"
        assert r.headers.get_list("x-frame-options") == ["DENY"]


# --- reads -------------------------------------------------------------------------------------


def test_overview_lists_services_open_incidents_budgets_and_approvals(env: Env) -> None:
    env.store.set_state("breaker:restart", {"state": "open", "consecutive_failures": 3}, actor="engine",
                        event="breaker.updated")
    env.client.post("/api/v1/pause", headers=env.auth("operator"), json={"reason": "deploy", "service": "db"})
    body = env.client.get("/api/v1/overview", headers=env.auth("viewer")).json()
    services = {s["name"]: s for s in body["services"]}
    assert set(services) == {"web", "db"}
    assert services["web"]["type"] == "http" and services["web"]["open_incidents"] == 1
    assert services["web"]["autonomy"] == "observe" and services["web"]["state"] == "UNKNOWN"
    assert services["db"]["paused"] is True and "deploy" in services["db"]["paused_reason"]
    assert body["paused_global"] is None
    assert body["breakers"] == {"restart": {"state": "open", "consecutive_failures": 3}}
    assert body["budgets"] == {"per_day": {"limit": 20, "used": 0, "type": None},  # no service binds an actuator
                               "per_week": {"limit": 60, "used": 0, "type": None}}
    assert {i["id"] for i in body["open_incidents"]} == {env.open_id, env.waiting_id}
    assert body["awaiting_approval"] == 1


def test_the_overviews_budgets_are_the_room_left_to_the_action_type_with_the_least(tmp_path: Path) -> None:
    """A rate limit counts the actions of one type: 15 process restarts and 10 config changes
    today leave process 5 of its 20 and config 2 of its own 12 (``policy.actions``), and the
    budget shown is config's. It counted every action against one type's limit: 25 of 20,
    none left, while neither type was at its limit."""
    data = {"engine": {"state_dir": str(tmp_path / "state"), "interval_s": 1, "host_metrics": False},
            "services": [{"name": "web", "actuators": {"process": {"command": ["sleep", "1"]}}},
                         {"name": "db", "actuators": {"config": {"repo": str(tmp_path), "file": "db.yaml"}}}],
            "policy": {"actions": {"config": {"rate_limits": {"per_day": 12}}}}}
    store = Store(f"sqlite:///{tmp_path / 'api.db'}")
    token = create_token(store, "viewer", "viewer")
    incident_id, _, _ = _seed(store)
    for i, (service, kind) in enumerate([("web", "process")] * 15 + [("db", "config")] * 10):
        store.record(Action(decision_id=new_id(), incident_id=incident_id, service=service, type=kind,
                            idempotency_key=f"k{i}", state=ActionState.SUCCEEDED, created_at=T0 - 3600 + i,
                            updated_at=T0 - 3600 + i), actor="engine", event="action.succeeded", subject=incident_id)
    ctx = ApiContext(store=store, config=load_config_data(data, source="t.yaml", base_dir=tmp_path),
                     clock=FakeClock(T0 + 10), read_cache_s=0)
    with TestClient(create_app(ctx)) as client:
        budgets = client.get("/api/v1/overview", headers={"Authorization": f"Bearer {token}"}).json()["budgets"]
    store.close()
    assert budgets == {"per_day": {"limit": 12, "used": 10, "type": "config"},
                       "per_week": {"limit": 60, "used": 15, "type": "process"}}


def test_open_incidents_older_than_a_thousand_closed_ones_are_still_listed_and_restored(env: Env) -> None:
    """The overview, the incident list and an engine's start find the unclosed incidents by the
    store's closed_at index; they used to look among the newest 1,000 (overview, ``autonomic
    status``) or 10,000 (the list, the engine's start) incidents only, so behind 1,200 newer
    closed ones the two unclosed seed incidents vanished from the overview, and the list read
    all 1,203 incidents to return two."""
    with env.store.unit():
        for k in range(1200):
            t = T0 + 100 + k
            done = Incident(service="web", cause="cpu", state=IncidentState.RESOLVED, severity=Severity.WARNING,
                            kind=FindingKind.THRESHOLD, opened_at=t, updated_at=t + 1, last_finding_at=t,
                            summary="cpu high", resolution=Resolution.RESOLVED, closed_at=t + 1)
            env.store.record(done, actor="engine", event="incident.closed", subject=done.id)
    body = env.client.get("/api/v1/overview", headers=env.auth("viewer")).json()
    assert {i["id"] for i in body["open_incidents"]} == {env.open_id, env.waiting_id}
    listed = env.client.get("/api/v1/incidents", headers=env.auth("viewer")).json()
    assert {i["id"] for i in listed} == {env.open_id, env.waiting_id}
    engine = _engine(env)
    engine.start()
    assert set(engine._incidents) == {env.open_id, env.waiting_id}



def test_the_overview_counts_every_open_incident_and_request_past_the_thousand_it_lists(env: Env) -> None:
    """A mass outage: 1,000 incidents opened on web after db's request for approval. The overview
    lists the newest 1,000 (its answer stays bounded), but its counts are the store's: the db
    request still counts as awaiting approval (the badge and the front page said 0 while the
    approvals page listed it), each service its own open incidents (db: 1, not 0), and the total
    says how many the list leaves out."""
    with env.store.unit():
        for k in range(1000):
            t = T0 + 2 + k
            inc = Incident(service="web", cause=f"c{k}", severity=Severity.WARNING, kind=FindingKind.THRESHOLD,
                           opened_at=t, updated_at=t, last_finding_at=t, summary="errors")
            env.store.record(inc, actor="engine", event="incident.opened", subject=inc.id)
    body = env.client.get("/api/v1/overview", headers=env.auth("viewer")).json()
    assert len(body["open_incidents"]) == 1000 and env.waiting_id not in {i["id"] for i in body["open_incidents"]}
    assert body["open_incidents_total"] == 1002
    assert body["awaiting_approval"] == 1
    assert {s["name"]: s["open_incidents"] for s in body["services"]} == {"web": 1001, "db": 1}
    waiting = env.client.get("/api/v1/approvals", headers=env.auth("viewer")).json()
    assert [a["incident"]["id"] for a in waiting] == [env.waiting_id]


def test_the_overview_of_hundreds_of_services_reads_their_pauses_and_stops_at_once_not_per_service(
        env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    """A fleet of 300 services: the overview (which the dashboard reads at every redraw) asked the
    store three times per service (two pauses and a stop) and read two pause files each, about a
    thousand reads: 4 s for 2,000 services on SQLite, longer over PostgreSQL's round trips. Its
    pauses and stops are now read once for them all, the answer the same: one service paused in
    the store, one by its pause file on this host, one stopped on purpose."""
    from autonomic.engine import stopped_key, write_pause_file

    config = load_config_data({"engine": {"state_dir": str(env.ctx.config.state_dir), "host_metrics": False},
                               "services": [{"name": f"svc{i}"} for i in range(300)]},
                              source="fleet.yaml", base_dir=env.ctx.config.base_dir)
    env.store.set_state(pause_key("svc7"), {"reason": "disk swap", "actor": "person:ana", "ts": T0},
                        actor="person:ana", event="pause.set")
    write_pause_file(config.state_dir, "svc8", "by hand", "file", T0)
    env.store.set_state(stopped_key("svc9"), {"actor": "person:bo", "comment": "rebuild", "ts": T0},
                        actor="person:bo", event="service.stopped")
    reads: list[str] = []
    get_state = env.store.get_state
    monkeypatch.setattr(env.store, "get_state", lambda key: reads.append(key) or get_state(key))
    ctx = ApiContext(store=env.store, config=config, clock=FakeClock(T0 + 10), read_cache_s=0)
    with TestClient(create_app(ctx)) as client:
        body = client.get("/api/v1/overview", headers=env.auth("viewer")).json()
    assert len(body["services"]) == 300 and len(reads) < 10, len(reads)
    by_name = {s["name"]: s for s in body["services"]}
    assert by_name["svc7"]["paused_reason"] == "svc7 pause by person:ana: disk swap"
    assert by_name["svc8"]["paused"] and "pause file" in by_name["svc8"]["paused_reason"]
    assert by_name["svc9"]["stopped_on_purpose"] == {"actor": "person:bo", "comment": "rebuild", "ts": T0}
    assert sum(s["paused"] for s in body["services"]) == 2
    assert sum(s["stopped_on_purpose"] is not None for s in body["services"]) == 1


def test_the_incident_list_pages_through_the_whole_history_with_before(env: Env) -> None:
    """``limit`` and ``before`` (the last id of the previous page) walk every incident ever
    stored, newest first, each once, ties in opened_at included; it used to give the newest
    ``limit`` (at most 1,000) and no way to the older ones."""
    with env.store.unit():
        for k in range(25):
            t = T0 + 100 + k // 2  # two incidents opened in each second
            done = Incident(service="web", cause="cpu", state=IncidentState.RESOLVED, severity=Severity.WARNING,
                            kind=FindingKind.THRESHOLD, opened_at=t, updated_at=t + 1, last_finding_at=t,
                            summary="cpu high", resolution=Resolution.RESOLVED, closed_at=t + 1)
            env.store.record(done, actor="engine", event="incident.closed", subject=done.id)
    every = [i.id for i in env.store.incidents(limit=None)]
    seen: list[str] = []
    params: dict[str, Any] = {"all": "true", "limit": 10}
    for _ in range(5):  # three pages of 10, 10 and 8, then an empty one
        page = env.client.get("/api/v1/incidents", params=params, headers=env.auth("viewer"))
        assert page.status_code == 200, page.text
        ids = [i["id"] for i in page.json()]
        if not ids:
            break
        seen += ids
        params["before"] = ids[-1]
    assert seen == every and len(seen) == len(set(seen)) == 28
    missing = env.client.get("/api/v1/incidents", params={"before": "nope"}, headers=env.auth("viewer"))
    assert missing.status_code == 404 and "before" in missing.json()["detail"]

def test_health_comes_from_status_json_without_an_engine_and_from_the_engine_with_one(env: Env) -> None:
    state_dir = env.ctx.config.state_dir
    state_dir.mkdir(parents=True, exist_ok=True)
    (state_dir / "status.json").write_text(json.dumps(
        {"health": {"web": {"state": "CRITICAL", "reasons": ["memory_percent 91 >= 80"]}}}))
    web = env.client.get("/api/v1/services/web", headers=env.auth("viewer")).json()
    assert (web["state"], web["reasons"]) == ("CRITICAL", ["memory_percent 91 >= 80"])
    engine = _engine(env)
    engine.series.extend([Sample("web", "up", T0 + i, 1.0) for i in range(5)])
    web = env.client.get("/api/v1/services/web", headers=env.auth("viewer")).json()
    assert web["state"] == "HEALTHY"


def test_service_detail_has_thresholds_actuators_and_its_incidents(env: Env) -> None:
    web = env.client.get("/api/v1/services/web", headers=env.auth("viewer")).json()
    assert web["thresholds"]["memory_percent"] == 80
    assert web["actuators"] == []
    assert {i["id"] for i in web["incidents"]} == {env.open_id, env.closed_id}
    assert [s["name"] for s in env.client.get("/api/v1/services", headers=env.auth("viewer")).json()] == ["web", "db"]


def test_unknown_service_and_incident_are_404(env: Env) -> None:
    h = env.auth("viewer")
    assert env.client.get("/api/v1/services/nope", headers=h).status_code == 404
    r = env.client.get("/api/v1/incidents/ffffffffffff", headers=h)
    assert r.status_code == 404 and "no incident" in r.json()["detail"]
    assert env.client.get("/api/v1/incidents/ab", headers=h).status_code == 404  # prefix too short


def test_an_unknown_incident_prefix_is_quoted_whole_in_the_404(env: Env) -> None:
    r = env.client.get("/api/v1/incidents/ffffffffffff", headers=env.auth("viewer"))
    assert r.json()["detail"] == "no incident has an id starting with 'ffffffffffff'"


def test_incident_list_shows_open_ones_by_default_all_on_request_and_filters_by_state(env: Env) -> None:
    h = env.auth("viewer")
    ids = lambda r: {i["id"] for i in r.json()}  # noqa: E731
    assert ids(env.client.get("/api/v1/incidents", headers=h)) == {env.open_id, env.waiting_id}
    assert ids(env.client.get("/api/v1/incidents?all=true", headers=h)) == {env.open_id, env.waiting_id,
                                                                             env.closed_id}
    assert ids(env.client.get("/api/v1/incidents?state=resolved", headers=h)) == {env.closed_id}
    assert ids(env.client.get("/api/v1/incidents?service=db", headers=h)) == {env.waiting_id}
    assert len(env.client.get("/api/v1/incidents?all=true&limit=1", headers=h).json()) == 1
    assert env.client.get("/api/v1/incidents?state=bogus", headers=h).status_code == 422
    assert env.client.get("/api/v1/incidents?limit=0", headers=h).status_code == 422


def test_incident_detail_by_prefix_has_the_chain_series_and_thresholds(env: Env) -> None:
    engine = _engine(env)
    engine.series.extend([Sample("web", "memory_percent", T0 - 5 + i, 70.0 + 5 * i) for i in range(5)])
    body = env.client.get(f"/api/v1/incidents/{env.open_id[:8]}", headers=env.auth("viewer")).json()
    assert body["incident"]["id"] == env.open_id
    assert [f["metric"] for f in body["findings"]] == ["memory_percent"]
    assert [e["kind"] for e in body["audit"]] == ["incident.opened"]
    assert body["series"]["memory_percent"]["values"] == [70.0, 75.0, 80.0, 85.0, 90.0]
    assert body["series"]["memory_percent"]["ts"][0] == T0 - 5
    assert body["thresholds"] == {"memory_percent": {"value": 80.0, "direction": "max"}}


def test_the_lines_shown_with_an_incidents_series_are_its_metrics_maximums_and_floors_only() -> None:
    """A floor (thresholds.minimums) is drawn as a minimum, as availability is; a metric named
    like one of the thresholds' settings (sustain, clear_fraction) was drawn with that setting's
    value as its line; it has none."""
    from types import SimpleNamespace

    from autonomic.analyze.thresholds import Thresholds
    from autonomic.oversight.api import _thresholds

    th = Thresholds(memory_percent=80, extra={"queue_depth": 500}, minimums={"pool_free": 5})
    ctx = SimpleNamespace(config=SimpleNamespace(service=lambda name: None),
                          engine=SimpleNamespace(thresholds={"web": th}))
    assert _thresholds(ctx, "web", ["memory_percent", "queue_depth", "pool_free", "availability", "sustain",
                                    "clear_fraction", "nothing"]) == {  # type: ignore[arg-type]
        "memory_percent": {"value": 80.0, "direction": "max"}, "queue_depth": {"value": 500.0, "direction": "max"},
        "pool_free": {"value": 5.0, "direction": "min"}, "availability": {"value": 99.0, "direction": "min"}}


def test_incident_detail_of_a_long_lasting_symptom_keeps_the_first_and_latest_findings_and_counts_the_rest(
        env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    """A symptom that lasts keeps adding findings (one stored every 10 s: 8640 a day) and
    ``incident.updated`` events to its incident: the page the dashboard fetches again on every
    event keeps the opening evidence and the latest, and says how many it leaves out, instead of
    growing by megabytes a day. Nor does it read them all to leave most out (a month-long
    incident's page parsed every one of its tens of thousands of findings)."""
    inc = env.store.get(Incident, env.open_id)
    assert inc is not None
    for i in range(1, 600):
        f = Finding(service="web", metric="memory_percent", kind=FindingKind.THRESHOLD, cause="memory",
                    severity=Severity.WARNING, confidence=0.9, ts=T0 + 10 * i, value=91.0 + i / 1000,
                    threshold=80.0, summary=f"memory_percent high #{i}", incident_id=inc.id)
        inc = inc.model_copy(update={"updated_at": T0 + 10 * i, "finding_count": i + 1})
        env.store.record(f, inc, actor="engine", event="incident.updated", subject=inc.id)
    parsed: list[int] = []
    parse = Finding.model_validate
    monkeypatch.setattr(Finding, "model_validate", classmethod(lambda cls, obj, **kw: parsed.append(1) or parse(obj)))
    body = env.client.get(f"/api/v1/incidents/{env.open_id}", headers=env.auth("viewer")).json()
    monkeypatch.undo()
    findings, audit = body["findings"], body["audit"]
    assert len(findings) <= 250 and len(audit) <= 250
    assert len(parsed) == len(findings)  # the findings between the ends are neither read nor parsed
    assert findings[0]["summary"] == "memory_percent 91 >= 80"  # what opened it
    assert findings[-1]["summary"] == "memory_percent high #599"  # the latest
    assert body["omitted"] == {"findings": 600 - len(findings), "audit": 600 - len(audit)}
    assert [e["kind"] for e in audit[:1]] == ["incident.opened"] and audit[-1]["seq"] == env.seq()


def test_incident_detail_without_an_engine_has_no_series(env: Env) -> None:
    body = env.client.get(f"/api/v1/incidents/{env.waiting_id}", headers=env.auth("viewer")).json()
    assert body["series"] == {} and body["decisions"][0]["verdict"] == "needs_approval"


def test_approvals_lists_waiting_incidents_with_their_decision(env: Env) -> None:
    body = env.client.get("/api/v1/approvals", headers=env.auth("viewer")).json()
    assert len(body) == 1
    assert body[0]["incident"]["id"] == env.waiting_id
    assert body[0]["decision"]["action"]["type"] == "process" and body[0]["answer"] is None


def test_an_answer_to_an_earlier_request_is_not_shown_as_the_answer_to_the_new_one(env: Env) -> None:
    """The incident was asked again (the escalation chain's next remedy) after a person answered
    the first request, and the engine has not ticked since: the new request shows unanswered."""
    h = env.auth("operator")
    first = env.store.decisions(env.waiting_id)[-1]
    assert env.client.post(f"/api/v1/approvals/{env.waiting_id}/approve", headers=h,
                           json={"decision": first.id}).status_code == 200
    assert env.client.get("/api/v1/approvals", headers=h).json()[0]["answer"]["decision"] == first.id
    again = first.model_copy(update={"id": new_id(), "ts": first.ts + 60})
    env.store.record(again, actor="engine", event="decision.needs_approval", subject=env.waiting_id)
    (row,) = env.client.get("/api/v1/approvals", headers=h).json()
    assert row["decision"]["id"] == again.id and row["answer"] is None


def test_patterns_policy_and_audit_reads(env: Env) -> None:
    h = env.auth("viewer")
    patterns = env.client.get("/api/v1/patterns", headers=h).json()
    assert patterns and {"id", "match", "action"} <= set(patterns[0])
    policy = env.client.get("/api/v1/policy", headers=h).json()
    assert policy["source"] == "config" and policy["policy"]["autonomy"] == "observe"
    page = env.client.get("/api/v1/audit?limit=2", headers=h).json()
    assert [e["seq"] for e in page["events"]] == [1, 2] and page["last_seq"] == 2
    rest = env.client.get(f"/api/v1/audit?since_seq={page['last_seq']}", headers=h).json()
    assert rest["events"][0]["seq"] == 3 and rest["last_seq"] == env.seq()
    assert env.client.get("/api/v1/audit/verify", headers=h).json() == {
        "ok": True, "checked": env.seq(), "problems": [], "from_seq": 1,
        "summary": f"{env.seq()} entries (seq 1..{env.seq()}, from the first entry)"}
    newest = env.client.get("/api/v1/audit?newest=true&limit=2", headers=h).json()
    assert [e["seq"] for e in newest["events"]] == [env.seq() - 1, env.seq()] and newest["last_seq"] == env.seq()


# --- mutations ---------------------------------------------------------------------------------


def test_approve_writes_what_the_cli_writes_audited_with_the_token(env: Env) -> None:
    r = env.client.post(f"/api/v1/approvals/{env.waiting_id[:6]}/approve", headers=env.auth("operator"),
                        json={"comment": "go ahead"})
    assert r.status_code == 200 and r.json()["incident_id"] == env.waiting_id
    answer = env.store.get_state(approval_key(env.waiting_id))
    assert answer is not None
    assert (answer["verdict"], answer["actor"], answer["comment"]) == ("approve", "token:operator", "go ahead")
    assert answer["decision"] == env.store.decisions(env.waiting_id)[-1].id  # the request it answers
    last = env.store.audit_events()[-1]
    assert (last.kind, last.actor, last.data["incident"]) == ("approval.approve", "token:operator", env.waiting_id)
    listed = env.client.get("/api/v1/approvals", headers=env.auth("viewer")).json()
    assert listed[0]["answer"]["verdict"] == "approve"


def test_deny_with_a_comment_and_without_a_body(env: Env) -> None:
    r = env.client.post(f"/api/v1/approvals/{env.waiting_id}/deny", headers=env.auth("admin"))
    assert r.status_code == 200
    answer = env.store.get_state(approval_key(env.waiting_id))
    assert answer is not None and (answer["verdict"], answer["actor"]) == ("deny", "token:admin")
    assert env.store.audit_events()[-1].kind == "approval.deny"


def test_an_answer_naming_a_request_since_replaced_is_409_and_approves_nothing(env: Env) -> None:
    """The dashboard sends the decision its card showed: when the incident has been asked again
    since (the escalation chain's next remedy), the click approves nothing the person did not see."""
    seen = env.store.decisions(env.waiting_id)[-1]
    action = ActionSpec(type="process", target="db", params={"op": "stop"})
    newer = Decision(incident_id=env.waiting_id, diagnosis_id=seen.diagnosis_id, ts=T0 + 5,
                     verdict=Verdict.NEEDS_APPROVAL, action=action)
    env.store.record(newer, actor="engine", event="decision.needs_approval", subject=env.waiting_id)
    before = env.seq()
    r = env.client.post(f"/api/v1/approvals/{env.waiting_id}/approve", headers=env.auth("operator"),
                        json={"comment": "restart it", "decision": seen.id})
    assert r.status_code == 409 and "asked again" in r.json()["detail"]
    assert env.store.get_state(approval_key(env.waiting_id)) is None and env.seq() == before
    r = env.client.post(f"/api/v1/approvals/{env.waiting_id}/approve", headers=env.auth("operator"),
                        json={"decision": newer.id})
    assert r.status_code == 200
    assert env.store.get_state(approval_key(env.waiting_id))["decision"] == newer.id  # type: ignore[index]


def test_a_second_answer_does_not_replace_a_denial_but_a_denial_stops_an_approval_not_yet_acted_on(
        env: Env) -> None:
    """Two people on call answer one request seconds apart, before the engine's next tick. Before,
    the last answer won silently: an approval replaced a colleague's denial (and a repeated
    approval was audited twice). Now an answer to a request already answered is 409 naming the
    first answer, except a denial over an approval, which stops it (the safe way round)."""
    op, admin = env.auth("operator"), env.auth("admin")
    url = f"/api/v1/approvals/{env.waiting_id}"
    assert env.client.post(f"{url}/deny", headers=op, json={"comment": "I am fixing it by hand"}).status_code == 200
    before = env.seq()
    r = env.client.post(f"{url}/approve", headers=admin, json={"comment": "restart it"})
    assert r.status_code == 409 and "already answered: deny by token:operator" in r.json()["detail"]
    assert env.store.get_state(approval_key(env.waiting_id))["verdict"] == "deny"  # type: ignore[index]
    assert env.seq() == before
    env.store.set_state(approval_key(env.waiting_id), None, actor="test", event="approval.cleared")
    assert env.client.post(f"{url}/approve", headers=op, json={}).status_code == 200
    assert env.client.post(f"{url}/approve", headers=op, json={}).status_code == 409  # not audited twice
    assert env.client.post(f"{url}/deny", headers=admin, json={"comment": "wait"}).status_code == 200
    assert env.store.get_state(approval_key(env.waiting_id))["verdict"] == "deny"  # type: ignore[index]


def test_answering_an_incident_not_awaiting_approval_is_409_and_changes_nothing(env: Env) -> None:
    before = env.seq()
    r = env.client.post(f"/api/v1/approvals/{env.open_id}/approve", headers=env.auth("operator"), json={})
    assert r.status_code == 409 and "not awaiting approval (it is open)" in r.json()["detail"]
    assert env.client.post("/api/v1/approvals/ffffffff/approve", headers=env.auth("operator"),
                           json={}).status_code == 404
    assert env.seq() == before


def test_pause_and_resume_globally_and_per_service(env: Env) -> None:
    op = env.auth("operator")
    r = env.client.post("/api/v1/pause", headers=op, json={"reason": "incident review"})
    assert r.status_code == 200
    state = env.store.get_state(pause_key(None))
    assert state is not None and (state["reason"], state["actor"]) == ("incident review", "token:operator")
    assert env.store.audit_events()[-1].kind == "pause.set"
    assert env.client.post("/api/v1/pause", headers=op, json={"reason": "db work", "service": "db"}).status_code == 200
    assert env.store.get_state(pause_key("db")) is not None
    assert env.client.post("/api/v1/resume", headers=op, json={"service": "db"}).status_code == 200
    assert env.store.get_state(pause_key("db")) is None
    assert env.client.post("/api/v1/resume", headers=op, json={"reason": "done"}).status_code == 200
    last = env.store.audit_events()[-1]
    assert (last.kind, last.actor, last.data["reason"]) == ("pause.lifted", "token:operator", "done")
    assert env.store.get_state(pause_key(None)) is None


def test_a_pause_file_on_this_host_shows_in_services_overview_and_metrics_and_resume_removes_it(env: Env) -> None:
    """A pause set by file (``autonomic pause`` with the store unwritable, or by hand) is a pause:
    the API shows it as one, and its resume lifts it (audited, naming the file)."""
    path = pause_file(env.ctx.config.state_dir, "db")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("disk swap\n")
    viewer = env.auth("viewer")
    services = {s["name"]: s for s in env.client.get("/api/v1/services", headers=viewer).json()}
    assert services["db"]["paused"] is True and services["db"]["paused_reason"] == (
        f"db pause by the pause file {path}: disk swap")
    assert services["web"]["paused"] is False
    assert 'autonomic_paused{scope="db"} 1.0' in env.client.get("/metrics").text
    global_file = pause_file(env.ctx.config.state_dir, None)
    global_file.write_text("")
    assert env.client.get("/api/v1/overview", headers=viewer).json()["paused_global"]["file"] == str(global_file)
    op = env.auth("operator")
    assert env.client.post("/api/v1/resume", headers=op, json={"service": "db"}).status_code == 200
    assert not path.exists() and global_file.exists()
    last = env.store.audit_events()[-1]
    assert (last.kind, last.subject, last.data["file"]) == ("pause.lifted", "pause:service:db", str(path))
    assert env.client.post("/api/v1/resume", headers=op, json={"service": "db"}).status_code == 409


def test_the_kill_switch_with_the_store_locked_pauses_the_engine_by_its_pause_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The dashboard's kill switch must not depend on the database. A writer frozen mid-transaction
    holds SQLite's write lock (a real second connection in BEGIN IMMEDIATE): the API that serves
    inside the engine writes the engine's pause file instead and says so; the engine's gate reads
    it before any action and audits it once the store answers. An API with no engine behind it, or
    one of several replicas, has no file an engine reads: 503, nothing paused."""
    import sqlite3

    from autonomic.knowledge.lease import LeaderElector

    monkeypatch.setattr("autonomic.knowledge.store._LOCK_WAIT_S", 0.5)  # the lock wait, 10 s by default
    store = Store(f"sqlite:///{tmp_path / 'api.db'}")
    token = {"Authorization": f"Bearer {create_token(store, 'op', 'operator')}"}
    ctx = ApiContext(store=store, config=_config(tmp_path), clock=FakeClock(T0), read_cache_s=0)
    engine = Engine(ctx.config, clock=ctx.clock, store=store, sources=[], detectors=[], notifiers=Dispatcher(),
                    metrics=ctx.metrics)
    path = pause_file(ctx.config.state_dir, "db")
    locker = sqlite3.connect(tmp_path / "api.db", isolation_level=None)
    try:
        with TestClient(create_app(ctx)) as client:
            locker.execute("BEGIN IMMEDIATE")
            alone = client.post("/api/v1/pause", headers=token, json={"reason": "db frozen", "service": "db"})
            assert alone.status_code == 503 and not path.exists()  # no engine in this process
            ctx.engine, engine.elector = engine, LeaderElector(store, identity="a")
            replica = client.post("/api/v1/pause", headers=token, json={"reason": "db frozen", "service": "db"})
            assert replica.status_code == 503 and not path.exists()  # a replica's file pauses no leader
            engine.elector = None
            paused = client.post("/api/v1/pause", headers=token, json={"reason": "db frozen", "service": "db"})
            assert paused.status_code == 200, paused.text
            assert paused.json() == {"paused": "db", "reason": "db frozen", "actor": "token:op", "file": str(path)}
            assert json.loads(path.read_text()) == {"reason": "db frozen", "actor": "token:op", "ts": T0}
            assert paused_reason(store, "db", ctx.config.state_dir) == (
                f"db pause by the pause file {path} (set by token:op): db frozen")
            assert 'autonomic_paused{scope="db"} 1.0' in client.get("/metrics").text
            locker.execute("ROLLBACK")
            assert store.get_state(pause_key("db")) is None  # nothing half-written in the store
            engine._watch_pause_files()  # the engine's tick, once the store answers: audited
            last = store.audit_events()[-1]
            assert (last.kind, last.subject, last.data["service"]) == ("pause.file", "pause:service:db", "db")
            assert client.post("/api/v1/resume", headers=token, json={"service": "db"}).status_code == 200
            assert not path.exists()
    finally:
        locker.close()
        store.close()


def test_a_resume_while_the_store_is_locked_says_what_it_lifted_and_what_still_holds(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A writer frozen mid-transaction holds SQLite's write lock (a real second connection in BEGIN
    IMMEDIATE). Resume removes this host's pause file first. db is paused in the store and by a
    file: the file goes, the store's pause cannot be lifted, and the 503 says both (before, it said
    "nothing was changed" with the file already gone). Automation paused by a file alone is resumed,
    the answer saying it was not audited (the engine audits the file gone once the store answers)."""
    import sqlite3

    from autonomic.engine import write_pause_file

    monkeypatch.setattr("autonomic.knowledge.store._LOCK_WAIT_S", 0.5)
    store = Store(f"sqlite:///{tmp_path / 'api.db'}")
    token = {"Authorization": f"Bearer {create_token(store, 'op', 'operator')}"}
    ctx = ApiContext(store=store, config=_config(tmp_path), clock=FakeClock(T0), read_cache_s=0)
    db_file, global_file = pause_file(ctx.config.state_dir, "db"), pause_file(ctx.config.state_dir, None)
    locker = sqlite3.connect(tmp_path / "api.db", isolation_level=None)
    try:
        with TestClient(create_app(ctx)) as client:
            assert client.post("/api/v1/pause", headers=token, json={"reason": "r", "service": "db"}).status_code == 200
            write_pause_file(ctx.config.state_dir, "db", "by file too", "person:ann", T0)
            write_pause_file(ctx.config.state_dir, None, "by file alone", "person:ann", T0)
            locker.execute("BEGIN IMMEDIATE")
            held = client.post("/api/v1/resume", headers=token, json={"service": "db"})
            assert held.status_code == 503 and not db_file.exists(), held.text
            assert f"the pause file {db_file} was removed" in held.text and "still holds" in held.text
            lifted = client.post("/api/v1/resume", headers=token, json={})
            assert lifted.status_code == 200, lifted.text
            assert lifted.json() == {"resumed": "global", "actor": "token:op", "audited": False,
                                     "file": str(global_file)}
            assert not global_file.exists()
            locker.execute("ROLLBACK")
            assert store.get_state(pause_key("db")) is not None  # the store's pause held, as said
    finally:
        locker.close()
        store.close()


def test_the_kill_switch_with_the_database_down_takes_an_operator_token_verified_lately_and_nothing_else(
        tmp_path: Path, postgres_server: Any) -> None:
    """The kill switch must work with the database down, though checking a token reads it. A real
    PostgreSQL database is made to refuse every connection (ALLOW_CONNECTIONS false, its sessions
    ended): a pause with an operator token the API verified while the database answered is written
    to the engine's pause file (the engine reads it before every actuator call); a token never
    verified, one verified over an hour ago, a viewer's, and every other route get 503 or 403 and
    nothing is paused. Before, every request failed 503 at the token check: nothing could pause."""
    url = postgres_server.create_database("autonomic_api_down")
    store = Store(url)
    clock = FakeClock(T0)
    ctx = ApiContext(store=store, config=_config(tmp_path), clock=clock, read_cache_s=0)
    ctx.engine = Engine(ctx.config, clock=clock, store=store, sources=[], detectors=[], notifiers=Dispatcher(),
                        metrics=ctx.metrics)
    op, stale, fresh = (create_token(store, name, "operator") for name in ("op", "stale", "fresh"))
    viewer = create_token(store, "ro", "viewer")
    bearer = {name: {"Authorization": f"Bearer {raw}"} for name, raw in
              (("op", op), ("stale", stale), ("fresh", fresh), ("ro", viewer))}
    path = pause_file(ctx.config.state_dir, None)
    admin = postgres_server.connect()
    try:
        with TestClient(create_app(ctx)) as client:
            assert client.get("/api/v1/overview", headers=bearer["stale"]).status_code == 200
            clock.advance(3000)
            for name in ("op", "ro"):
                assert client.get("/api/v1/overview", headers=bearer[name]).status_code == 200
            clock.advance(700)  # stale was verified 3,700 s ago, op and ro 700 s ago; fresh never
            with admin.cursor() as cur:
                cur.execute("ALTER DATABASE autonomic_api_down ALLOW_CONNECTIONS false")
                cur.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                            "WHERE datname = 'autonomic_api_down'")
            assert client.get("/api/v1/overview", headers=bearer["op"]).status_code == 503
            for name in ("fresh", "stale"):
                refused = client.post("/api/v1/pause", headers=bearer[name], json={"reason": "db down"})
                assert refused.status_code == 503 and not path.exists(), (name, refused.text)
            low = client.post("/api/v1/pause", headers=bearer["ro"], json={"reason": "db down"})
            assert low.status_code == 403 and not path.exists()
            paused = client.post("/api/v1/pause", headers=bearer["op"], json={"reason": "db down"})
            assert paused.status_code == 200, paused.text
            assert paused.json() == {"paused": "global", "reason": "db down", "actor": "token:op", "file": str(path)}
            assert json.loads(path.read_text())["actor"] == "token:op"
    finally:
        with admin.cursor() as cur:
            cur.execute("ALTER DATABASE autonomic_api_down ALLOW_CONNECTIONS true")
        admin.close()
        store.close()
        postgres_server.drop_database("autonomic_api_down")


def test_a_write_through_a_replica_that_lost_the_lease_is_refused_503_naming_the_leader(env: Env) -> None:
    """Leader election: this API's store is fenced to replica a at epoch 1, and replica b has
    taken the lease over since: the pause is refused with the reason, nothing is written."""
    env.store.claim_lease("engine", "a")
    env.store.fence("engine", "a", 1)
    other = Store(str(env.store._engine.url))
    try:
        other.claim_lease("engine", "b", take=("a", 1, 0))
    finally:
        other.close()
    before = env.seq()
    r = env.client.post("/api/v1/pause", headers=env.auth("operator"), json={"reason": "stop"})
    assert r.status_code == 503 and "held by b, epoch 2" in r.json()["detail"]
    assert env.store.get_state(pause_key(None)) is None and env.seq() == before


def test_a_standby_replica_does_not_report_services_healthy_it_never_measured(env: Env) -> None:
    """Leader election: a standby never runs the loop, so it has no metrics of its own. Its
    API must not show every service HEALTHY while the leader has an incident open on web."""
    from autonomic.knowledge.lease import LeaderElector

    other = Store(str(env.store._engine.url))
    try:
        other.claim_lease("engine", "a")
    finally:
        other.close()
    engine = _engine(env)
    engine.elector = LeaderElector(env.store, identity="b")
    assert not engine.elector.attempt() and engine.standby is not None
    services = {s["name"]: s for s in env.client.get("/api/v1/services", headers=env.auth("viewer")).json()}
    assert services["web"]["state"] == "UNKNOWN" and services["web"]["open_incidents"] == 1
    assert any("standby" in r for r in services["web"]["reasons"])


def test_pause_and_resume_bad_requests_change_nothing(env: Env) -> None:
    op = env.auth("operator")
    before = env.seq()
    assert env.client.post("/api/v1/pause", headers=op, json={"reason": "x", "service": "nope"}).status_code == 404
    assert env.client.post("/api/v1/pause", headers=op, json={"reason": "   "}).status_code == 422
    assert env.client.post("/api/v1/pause", headers=op, json={}).status_code == 422
    assert env.client.post("/api/v1/pause", headers=op, json={"reason": "x", "extra": 1}).status_code == 422
    r = env.client.post("/api/v1/resume", headers=op, json={})
    assert r.status_code == 409 and r.json()["detail"] == "automation is not paused"
    assert env.client.post("/api/v1/resume", headers=op, json={"service": "nope"}).status_code == 404
    assert env.seq() == before


def test_put_policy_validates_stores_the_override_and_audits_it(env: Env) -> None:
    admin = env.auth("admin")
    new = {"autonomy": "approve", "confidence_threshold": 0.7, "services": {"db": {"autonomy": "observe"}}}
    r = env.client.put("/api/v1/policy", headers=admin, json=new)
    assert r.status_code == 200 and r.json()["policy"]["autonomy"] == "approve"
    stored = env.store.get_state("policy:override")
    assert stored is not None and stored["confidence_threshold"] == 0.7
    last = env.store.audit_events()[-1]
    assert (last.kind, last.actor, last.data["policy"]["autonomy"]) == ("policy.changed", "token:admin", "approve")
    got = env.client.get("/api/v1/policy", headers=env.auth("viewer")).json()
    assert got["source"] == "override" and got["policy"]["services"]["db"]["autonomy"] == "observe"
    services = {s["name"]: s for s in env.client.get("/api/v1/services", headers=env.auth("viewer")).json()}
    assert services["web"]["autonomy"] == "approve" and services["db"]["autonomy"] == "observe"


def test_a_stored_override_an_older_version_wrote_is_shown_with_what_still_validates(env: Env) -> None:
    """As the engine reads it: the backoff this version refuses takes the file's, the stored
    autonomy stays (it showed the file's policy whole, autonomy included, as if no override)."""
    env.store.set_state("policy:override", {"autonomy": "approve", "backoff": {"cap_s": 900, "reset_after_s": 600}},
                        actor="token:admin", event="policy.changed")
    got = env.client.get("/api/v1/policy", headers=env.auth("viewer")).json()
    assert got["source"] == "override" and got["policy"]["autonomy"] == "approve"
    assert got["policy"]["backoff"] == env.ctx.config.spec.policy.backoff.model_dump(mode="json")


def test_a_policy_override_for_a_service_or_pattern_that_does_not_exist_is_422_and_not_stored(env: Env) -> None:
    before = env.store.get_state("policy:override")
    body = {"autonomy": "auto", "services": {"wbe": {"autonomy": "observe"}, "db": {"autonomy": "observe"}},
            "patterns": {"no-such-pattern": {"autonomy": "approve"}}}
    r = env.client.put("/api/v1/policy", headers=env.auth("admin"), json=body)
    assert r.status_code == 422
    assert [(d["loc"], d["msg"].split(" (known")[0]) for d in r.json()["detail"]] == [
        (["body", "services", "wbe"], "no service named 'wbe'; did you mean 'web'?"),
        (["body", "patterns", "no-such-pattern"], "no pattern named 'no-such-pattern'"),
    ]
    assert env.store.get_state("policy:override") == before


def test_a_policy_whose_windows_outlast_retention_is_422_naming_the_field_as_config_load_does(env: Env,
                                                                                              tmp_path: Path) -> None:
    from autonomic.config import ConfigError
    from autonomic.knowledge.retention import DAY_S

    before = env.seq()
    # the default retention keeps incidents and actions 90 days; a breaker held open 100 days reads further back
    body = {"breaker": {"open_s": 100 * DAY_S}}
    with pytest.raises(ConfigError) as at_load:
        load_config_data({"policy": body}, source="test.yaml", base_dir=tmp_path)
    [problem] = at_load.value.problems
    r = env.client.put("/api/v1/policy", headers=env.auth("admin"), json=body)
    assert r.status_code == 422
    assert [(d["loc"], d["msg"]) for d in r.json()["detail"]] == [(["retention", "incidents_days"], problem.message)]
    assert problem.field == "retention.incidents_days" and "policy.breaker.open_s" in problem.message
    assert env.store.get_state("policy:override") is None and env.seq() == before
    ok = env.client.put("/api/v1/policy", headers=env.auth("admin"), json={"breaker": {"open_s": 80 * DAY_S}})
    assert ok.status_code == 200 and ok.json()["policy"]["breaker"]["open_s"] == 80 * DAY_S


def test_a_policy_refused_for_its_names_or_its_retention_says_every_problem_in_message_too(env: Env) -> None:
    """PUT /api/v1/policy's own refusals (a service that does not exist, a window longer than
    retention keeps) are 422 bodies like any other that does not validate: the ``detail`` list
    and ``message``, every problem as 'field: what is wrong' (what the README promises and the
    dashboard's banner shows).

    Before: those two refusals were HTTPExceptions with the detail list only, no ``message``."""
    from autonomic.knowledge.retention import DAY_S

    r = env.client.put("/api/v1/policy", headers=env.auth("admin"),
                       json={"services": {"wbe": {"autonomy": "observe"}}})
    assert r.status_code == 422
    assert [d["loc"] for d in r.json()["detail"]] == [["body", "services", "wbe"]]
    assert r.json()["message"].startswith("services.wbe: no service named 'wbe'; did you mean 'web'?")
    r = env.client.put("/api/v1/policy", headers=env.auth("admin"), json={"breaker": {"open_s": 100 * DAY_S}})
    assert r.status_code == 422
    [detail] = r.json()["detail"]
    assert detail["loc"] == ["retention", "incidents_days"]
    assert r.json()["message"] == f"retention.incidents_days: {detail['msg']}"


@pytest.mark.parametrize(("body", "field"), [
    ({"confidence_threshold": 1.5}, "confidence_threshold"),
    ({"confidence_floor": 1.5}, "confidence_floor"),
    ({"autonomy": "yolo"}, "autonomy"),
    ({"maintenance_windows": [{"name": "n", "cron": "not cron", "duration_s": 60}]}, "cron"),
    ({"unknown_key": True}, "unknown_key"),
])
def test_invalid_policy_is_422_naming_the_field_and_nothing_is_stored(env: Env, body: dict[str, Any],
                                                                       field: str) -> None:
    before = env.seq()
    r = env.client.put("/api/v1/policy", headers=env.auth("admin"), json=body)
    assert r.status_code == 422
    assert any(field in [str(p) for p in e["loc"]] for e in r.json()["detail"])
    assert env.store.get_state("policy:override") is None and env.seq() == before


# --- auth on every mutation --------------------------------------------------------------------

MUTATIONS = [
    ("post", "/api/v1/approvals/{waiting}/approve", {"comment": "x"}, "operator"),
    ("post", "/api/v1/approvals/{waiting}/deny", {"comment": "x"}, "operator"),
    ("post", "/api/v1/pause", {"reason": "x"}, "operator"),
    ("post", "/api/v1/resume", {}, "operator"),
    ("put", "/api/v1/policy", {"autonomy": "auto"}, "admin"),
]
_LOWER = {"operator": "viewer", "admin": "operator"}


@pytest.mark.parametrize(("method", "path", "body", "role"), MUTATIONS)
def test_mutations_are_401_without_a_valid_token_and_403_below_their_role_and_change_nothing(
    env: Env, method: str, path: str, body: dict[str, Any], role: str
) -> None:
    env.store.set_state(pause_key(None), {"reason": "so resume has something to lift"}, actor="t", event="pause.set")
    url = path.format(waiting=env.waiting_id)
    before = (env.seq(), env.store.states(""))
    send = getattr(env.client, method)
    for headers in ({}, {"Authorization": "Bearer aut_wrong"}, {"Authorization": "Basic dXNlcjpwYXNz"}):
        r = send(url, headers=headers, json=body)
        assert r.status_code == 401, headers
        assert r.headers["www-authenticate"].startswith("Bearer")
        assert set(r.json()) == {"detail"}
    r = send(url, headers=env.auth(_LOWER[role]), json=body)
    assert r.status_code == 403 and role in r.json()["detail"]
    assert (env.seq(), env.store.states("")) == before
    assert send(url, headers=env.auth(role), json=body).status_code == 200


def test_reads_need_a_viewer_token_and_a_revoked_token_is_refused(env: Env) -> None:
    assert env.client.get("/api/v1/overview").status_code == 401
    assert env.client.get("/api/v1/overview", headers=env.auth("viewer")).status_code == 200
    revoke(env.store, "viewer")
    assert env.client.get("/api/v1/overview", headers=env.auth("viewer")).status_code == 401


def test_query_tokens_are_accepted_only_on_the_event_stream(env: Env) -> None:
    r = env.client.get(f"/api/v1/overview?token={env.tokens['admin']}")
    assert r.status_code == 401


# --- bad input ---------------------------------------------------------------------------------


def test_malformed_json_and_wrong_types_are_4xx_and_change_nothing(env: Env) -> None:
    op = {**env.auth("operator"), "Content-Type": "application/json"}
    before = env.seq()
    for content in (b"{not json", b"[1, 2]", b'{"reason": 5}', b'"x"', b"\xff\xfe"):
        r = env.client.post("/api/v1/pause", headers=op, content=content)
        assert 400 <= r.status_code < 500, content
    r = env.client.put("/api/v1/policy", headers={**env.auth("admin"), "Content-Type": "application/json"},
                       content=b'{"rate_limits": {"per_day": "many"}}')
    assert r.status_code == 422
    assert env.seq() == before


def test_oversized_bodies_are_413_by_content_length_and_by_streamed_size(env: Env) -> None:
    env.ctx.max_body_bytes = 1024  # the middleware was built with the context's limit: rebuild
    with TestClient(create_app(env.ctx)) as client:
        before = env.seq()
        big = json.dumps({"reason": "x" * 5000}).encode()
        r = client.post("/api/v1/pause", headers={**env.auth("operator"), "Content-Type": "application/json"},
                        content=big)
        assert r.status_code == 413 and r.json() == {"detail": "request body too large"}

        def chunks() -> Iterator[bytes]:
            yield b'{"reason": "'
            for _ in range(10):
                yield b"y" * 500
            yield b'"}'

        r = client.post("/api/v1/pause", headers={**env.auth("operator"), "Content-Type": "application/json"},
                        content=chunks())
        assert r.status_code == 413
        assert client.post("/api/v1/alerts", content=big).status_code == 413
        assert env.seq() == before


def test_unexpected_errors_are_500_internal_error_without_details(env: Env, monkeypatch: pytest.MonkeyPatch,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    def boom() -> None:
        raise RuntimeError("/secret/path/to/db exploded")

    monkeypatch.setattr(env.store, "verify_audit", boom)
    r = env.client.get("/api/v1/audit/verify", headers=env.auth("viewer"))
    assert r.status_code == 500 and r.json() == {"detail": "internal error"}
    assert "secret" not in r.text
    assert "exploded" in caplog.text


# --- the Alertmanager webhook -----------------------------------------------------------------

ALERT = {
    "version": "4", "groupKey": "{}:{alertname=\"HighMemory\"}", "status": "firing", "receiver": "autonomic",
    "alerts": [{"status": "firing", "labels": {"alertname": "HighMemory", "service": "web",
                                               "metric": "memory_percent", "severity": "critical"},
                "annotations": {"summary": "web memory high"}, "startsAt": "2024-01-01T00:00:00Z",
                "fingerprint": "abc123"}],
}


def test_a_webhook_is_stored_before_it_is_accepted_even_with_no_engine_in_this_process(env: Env) -> None:
    """Any replica, or an API serving without the loop, takes alerts in: they wait in the store
    (audited alerts.received) for the engine that runs the loop."""
    assert env.ctx.engine is None
    r = env.client.post("/api/v1/alerts", json=ALERT, headers=env.auth("operator"))
    assert r.status_code == 202 and r.json() == {"accepted": 1}
    ((key, value),) = env.store.states("inbox:").items()
    assert [(f["metric"], f["summary"]) for f in value["findings"]] == [("memory_percent", "web memory high")]
    last = env.store.audit_events()[-1]
    assert (last.kind, last.actor, last.subject, last.data["count"]) == ("alerts.received", "token:operator", key, 1)


def test_a_webhook_the_store_cannot_take_is_answered_503_so_the_sender_retries(
        env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    from autonomic.errors import StoreError

    def down(*_a: Any, **_k: Any) -> None:
        raise StoreError("store write failed: connection refused")

    monkeypatch.setattr(env.store, "set_state", down)
    r = env.client.post("/api/v1/alerts", json=ALERT, headers=env.auth("operator"))
    assert r.status_code == 503 and "try again" in r.json()["detail"]
    assert "connection refused" not in r.text


def test_a_webhook_the_store_can_never_hold_is_answered_422_not_503(env: Env) -> None:
    """An annotation with half an emoji (``\\ud83d``, valid JSON, not text): the store refuses it
    for good, so the sender is told so (422) instead of "try again" (503), which it would for ever."""
    body = json.dumps(ALERT).replace("web memory high", "web memory high \\ud83d").encode()
    r = env.client.post("/api/v1/alerts", content=body,
                        headers={"Content-Type": "application/json", **env.auth("operator")})
    assert r.status_code == 422 and "surrogate" in r.json()["detail"]
    assert env.store.states("inbox:") == {}


def _signed(body: bytes, ts: float, secret: str = SECRET) -> dict[str, str]:
    """Headers a sender computes: HMAC-SHA256 over "<timestamp>.<body>" (written out here, not
    taken from autonomic, so the test pins the scheme senders must follow)."""
    stamp = str(int(ts))
    sig = hmac.new(secret.encode(), stamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return {"X-Autonomic-Signature": f"sha256={sig}", "X-Autonomic-Timestamp": stamp,
            "Content-Type": "application/json"}


def test_webhook_without_its_own_secret_wants_an_operator_api_token_and_the_engine_ingests_the_finding(
        env: Env) -> None:
    """Before: with neither webhook secret set, the receiver took alerts from any process that
    reached it (on loopback: any local user could make the engine restart services). Now an API
    token of the operator role is the credential (Alertmanager's http_config.authorization)."""
    engine = _engine(env)
    anonymous = env.client.post("/api/v1/alerts", json=ALERT)
    assert anonymous.status_code == 401 and "autonomic token create --role alerts" in anonymous.json()["detail"]
    wrong = {"Authorization": "Bearer aut_wrong"}
    assert env.client.post("/api/v1/alerts", json=ALERT, headers=wrong).status_code == 401
    viewer = env.client.post("/api/v1/alerts", json=ALERT, headers=env.auth("viewer"))
    assert viewer.status_code == 403 and "alerts or operator role" in viewer.json()["detail"]
    assert env.store.states("inbox:") == {}
    r = env.client.post("/api/v1/alerts", json=ALERT, headers=env.auth("operator"))
    assert r.status_code == 202 and r.json() == {"accepted": 1}
    engine.tick()
    opened = [i for i in env.store.incidents(service="web") if i.kind == FindingKind.ALERT]
    assert len(opened) == 1 and opened[0].summary == "web memory high"


def test_webhook_counts_findings_without_an_engine_and_resolved_alerts_make_none(env: Env) -> None:
    resolved = {**ALERT, "status": "resolved", "alerts": [{**ALERT["alerts"][0], "status": "resolved"}]}  # type: ignore[dict-item]
    assert env.client.post("/api/v1/alerts", json=resolved, headers=env.auth("operator")).json() == {"accepted": 0}
    # kept for the engine all the same: the incident of a resolved alert may go quiet (Engine._sweep)
    assert [(v["findings"], v["resolved"]) for v in env.store.states("inbox:").values()] == [([], ["abc123"])]
    assert env.client.post("/api/v1/alerts", json=ALERT, headers=env.auth("operator")).json() == {"accepted": 1}


def test_webhook_payload_errors_are_422_naming_the_field(env: Env) -> None:
    r = env.client.post("/api/v1/alerts", json={**ALERT, "alerts": [{"status": "firing"}]},
                        headers=env.auth("operator"))
    assert r.status_code == 422 and "alerts[0]" in r.json()["detail"]
    r = env.client.post("/api/v1/alerts", content=b"{nope",
                        headers={"Content-Type": "application/json", **env.auth("operator")})
    assert r.status_code == 422 and "body" in r.json()["detail"]


def test_a_token_of_the_alerts_role_sends_alerts_and_nothing_else_and_is_named_in_the_audit(env: Env) -> None:
    """Alertmanager needs to send alerts, not to approve, pause or read: the ``alerts`` role."""
    token = create_token(env.store, "alertmanager", "alerts")
    h = {"Authorization": f"Bearer {token}"}
    assert env.client.post("/api/v1/alerts", json=ALERT, headers=h).json() == {"accepted": 1}
    received = [e for e in env.store.audit_events() if e.kind == "alerts.received"]
    assert [e.actor for e in received] == ["token:alertmanager"]
    assert env.client.get("/api/v1/overview", headers=h).status_code == 403
    assert env.client.post(f"/api/v1/approvals/{env.waiting_id}/approve", headers=h, json={}).status_code == 403
    assert env.client.post("/api/v1/pause", headers=h, json={"reason": "x"}).status_code == 403


def test_webhook_open_takes_alerts_without_a_credential(env: Env) -> None:
    """``api.webhook_open: true`` (a single-user host's loopback): any process that reaches the
    receiver may send alerts, as before this option existed."""
    env.ctx.webhook_open = True
    r = env.client.post("/api/v1/alerts", json=ALERT)
    assert r.status_code == 202 and r.json() == {"accepted": 1}


def test_webhook_bearer_token_is_required_when_configured(env: Env) -> None:
    env.ctx.webhook_token = "hook-token"
    assert env.client.post("/api/v1/alerts", json=ALERT).status_code == 401
    assert env.client.post("/api/v1/alerts", json=ALERT,
                           headers={"Authorization": "Bearer wrong"}).status_code == 401
    r = env.client.post("/api/v1/alerts", json=ALERT, headers={"Authorization": "Bearer hook-token"})
    assert r.status_code == 202


def test_webhook_hmac_valid_wrong_old_and_replayed(env: Env) -> None:
    env.ctx.webhook_hmac_secret = SECRET
    now = env.ctx.clock.now()
    body = json.dumps(ALERT).encode()
    assert env.client.post("/api/v1/alerts", content=body, headers=_signed(body, now)).status_code == 202
    r = env.client.post("/api/v1/alerts", content=body, headers=_signed(body, now))
    assert r.status_code == 401 and "replayed" in r.json()["detail"]
    other = json.dumps({**ALERT, "groupKey": "g2"}).encode()
    assert env.client.post("/api/v1/alerts", content=other, headers=_signed(other, now, "wrong")).status_code == 401
    assert env.client.post("/api/v1/alerts", content=other, headers=_signed(body, now)).status_code == 401
    r = env.client.post("/api/v1/alerts", content=other, headers=_signed(other, now - 301))
    assert r.status_code == 401 and "Timestamp" in r.json()["detail"]
    unsigned = env.client.post("/api/v1/alerts", content=other, headers={"Content-Type": "application/json"})
    assert unsigned.status_code == 401
    assert env.client.post("/api/v1/alerts", content=other, headers=_signed(other, now - 200)).status_code == 202


def test_a_signed_webhook_accepted_by_one_replica_is_refused_as_a_replay_by_another(
        env: Env, tmp_path: Path) -> None:
    """Replicas share the store, and the accepted signatures with it: a request captured on its
    way to one replica and sent to another within the window is refused there, and nothing of it
    is stored twice."""
    env.ctx.webhook_hmac_secret = SECRET
    second = Store(f"sqlite:///{tmp_path / 'api.db'}")
    ctx2 = ApiContext(store=second, config=env.ctx.config, clock=env.ctx.clock, read_cache_s=0,
                      webhook_hmac_secret=SECRET)
    body = json.dumps(ALERT).encode()
    headers = _signed(body, env.ctx.clock.now())
    try:
        with TestClient(create_app(ctx2)) as replica:
            assert env.client.post("/api/v1/alerts", content=body, headers=headers).status_code == 202
            r = replica.post("/api/v1/alerts", content=body, headers=headers)
            assert r.status_code == 401 and "replayed" in r.json()["detail"]
    finally:
        second.close()
    assert len(env.store.states("inbox:")) == 1
    assert [e.kind for e in env.store.audit_events()].count("alerts.received") == 1


def test_a_signed_webhook_the_store_refused_is_not_remembered_so_its_retry_is_accepted(
        env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    from autonomic.errors import StoreError

    env.ctx.webhook_hmac_secret = SECRET
    body = json.dumps(ALERT).encode()
    headers = _signed(body, env.ctx.clock.now())
    real = env.store.set_state

    def down(*_a: Any, **_k: Any) -> None:
        raise StoreError("store write failed: connection refused")

    monkeypatch.setattr(env.store, "set_state", down)
    assert env.client.post("/api/v1/alerts", content=body, headers=headers).status_code == 503
    monkeypatch.setattr(env.store, "set_state", real)
    assert env.client.post("/api/v1/alerts", content=body, headers=headers).status_code == 202
    assert env.client.post("/api/v1/alerts", content=body, headers=headers).status_code == 401
    assert len(env.store.states("inbox:")) == 1


def test_webhook_hmac_covers_the_timestamp_so_a_captured_request_cannot_be_resent_later(env: Env) -> None:
    """A request captured at t0 and sent again after the replay window with a fresh timestamp
    header (its signature unchanged) is refused: the signature is over "<timestamp>.<body>"."""
    env.ctx.webhook_hmac_secret = SECRET
    t0 = env.ctx.clock.now()
    body = json.dumps(ALERT).encode()
    captured = _signed(body, t0)
    assert env.client.post("/api/v1/alerts", content=body, headers=captured).status_code == 202
    env.ctx.clock = FakeClock(t0 + 3600)
    refreshed = {**captured, "X-Autonomic-Timestamp": str(int(t0 + 3600))}
    r = env.client.post("/api/v1/alerts", content=body, headers=refreshed)
    assert r.status_code == 401 and "Signature" in r.json()["detail"]
    # body-only signatures (the scheme before 2026-11-30) are refused too
    body_only = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    old_scheme = {**refreshed, "X-Autonomic-Signature": f"sha256={body_only}"}
    r = env.client.post("/api/v1/alerts", content=body, headers=old_scheme)
    assert r.status_code == 401
    assert env.client.post("/api/v1/alerts", content=body, headers=_signed(body, t0 + 3600)).status_code == 202


def test_a_signed_webhook_sent_twice_at_once_is_accepted_once(env: Env) -> None:
    """Two copies of one signed request racing each other: the second is a replay even while the
    first is still being stored (the signature is claimed before the body is processed)."""
    import asyncio

    env.ctx.webhook_hmac_secret = SECRET
    body = json.dumps(ALERT).encode()
    headers = _signed(body, env.ctx.clock.now())

    async def twice() -> list[int]:
        transport = httpx.ASGITransport(app=env.client.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            replies = await asyncio.gather(*(client.post("/api/v1/alerts", content=body, headers=headers)
                                             for _ in range(2)))
        return sorted(r.status_code for r in replies)

    assert asyncio.run(twice()) == [202, 401]
    assert len(env.store.states("inbox:")) == 1


def test_a_signed_webhook_refused_for_its_payload_is_not_remembered_as_accepted(env: Env) -> None:
    env.ctx.webhook_hmac_secret = SECRET
    body = b'{"version": "4"}'
    now = env.ctx.clock.now()
    assert env.client.post("/api/v1/alerts", content=body, headers=_signed(body, now)).status_code == 422
    r = env.client.post("/api/v1/alerts", content=body, headers=_signed(body, now))
    assert r.status_code == 422


# --- a real server: HTTP on loopback and server-sent events ------------------------------------


def test_real_server_serves_the_api_and_streams_new_audit_events(env: Env) -> None:
    env.ctx.clock = FakeClock(time.time())
    server = ApiServer(create_app(env.ctx), port=0)
    server.start()
    try:
        assert server.host == "127.0.0.1" and server.port > 0
        with httpx.Client(base_url=server.url, timeout=5.0) as http:
            assert http.get("/healthz").json() == {"status": "ok"}
            assert http.get("/api/v1/overview", headers=env.auth("viewer")).json()["awaiting_approval"] == 1
            assert http.get("/api/v1/events").status_code == 401
            url = f"/api/v1/events?token={env.tokens['viewer']}"
            with http.stream("GET", url, timeout=httpx.Timeout(5.0)) as stream:
                assert stream.headers["content-type"].startswith("text/event-stream")
                lines = stream.iter_lines()
                assert next(lines) == ": connected"
                env.store.audit("person:test", "note.added", "web", {"text": "hello"})
                event = _next_event(lines, deadline=time.monotonic() + 5.0)
        assert event["event"] == "audit"
        data = json.loads(event["data"])
        assert (data["kind"], data["actor"], data["data"]) == ("note.added", "person:test", {"text": "hello"})
        assert int(event["id"]) == data["seq"] == env.seq()
    finally:
        server.stop()
    assert server._thread is not None and not server._thread.is_alive()


def test_event_stream_replays_from_since_seq(env: Env) -> None:
    server = ApiServer(create_app(env.ctx), port=0)
    server.start()
    try:
        with httpx.Client(base_url=server.url, timeout=5.0) as http, http.stream(
            "GET", "/api/v1/events?since_seq=1", headers=env.auth("viewer")
        ) as stream:
            lines = stream.iter_lines()
            assert next(lines) == ": connected"
            first = _next_event(lines, deadline=time.monotonic() + 5.0)
        assert json.loads(first["data"])["seq"] == 2
    finally:
        server.stop()


def test_an_event_stream_reconnecting_before_any_event_gets_what_happened_while_it_was_away(env: Env) -> None:
    """EventSource sends the last id it saw as Last-Event-ID when it reconnects: the stream
    names where it starts, so a dashboard whose connection dropped on a quiet system still
    hears of the incident opened during the gap (it used to start again from the new now)."""
    server = ApiServer(create_app(env.ctx), port=0)
    server.start()
    try:
        with httpx.Client(base_url=server.url, timeout=5.0) as http:
            with http.stream("GET", "/api/v1/events", headers=env.auth("viewer")) as stream:
                lines = stream.iter_lines()
                last_id = ""
                for line in lines:  # the first block, as a browser reads it
                    if not line:
                        break
                    if line.startswith("id: "):
                        last_id = line.removeprefix("id: ")
            assert last_id == str(env.seq())
            env.store.audit("engine", "incident.opened", "web", {"summary": "while the dashboard was away"})
            with http.stream("GET", "/api/v1/events",
                             headers={**env.auth("viewer"), "Last-Event-ID": last_id}) as stream:
                event = _next_event(stream.iter_lines(), deadline=time.monotonic() + 5.0)
        assert json.loads(event["data"])["data"] == {"summary": "while the dashboard was away"}
    finally:
        server.stop()


def _next_event(lines: Iterator[str], deadline: float) -> dict[str, str]:
    """The next SSE event a browser dispatches (comments skipped, a block without data is not
    an event) as its fields."""
    fields: dict[str, str] = {}
    for line in lines:
        if time.monotonic() > deadline:
            break
        if line.startswith(":"):
            continue
        if not line:
            if "data" in fields:
                return fields
            fields = {}
            continue
        key, _, value = line.partition(": ")
        fields[key] = value
    raise AssertionError(f"no event before the deadline (got {fields})")


def test_server_start_fails_clearly_when_the_port_is_taken(env: Env) -> None:
    first = ApiServer(create_app(env.ctx), port=0)
    first.start()
    try:
        second = ApiServer(create_app(env.ctx), port=first.port)
        with pytest.raises(RuntimeError, match=f"^cannot listen on 127.0.0.1:{first.port}: address already in use "):
            second.start(timeout_s=5.0)
        second.stop()
    finally:
        first.stop()


def test_a_server_listening_beyond_loopback_warns_once_that_tokens_cross_the_network_in_plain_http(
        env: Env, caplog: pytest.LogCaptureFixture) -> None:
    """The API speaks plain HTTP: on every interface (a pod's 0.0.0.0) its bearer tokens, and the
    dashboard's ``?token=`` on its event stream, cross the network as written unless a TLS proxy
    fronts it. A real server on 0.0.0.0 says so in one WARNING as it starts; on loopback, nothing.
    Before: silence, whatever the host."""
    caplog.set_level(logging.INFO, logger="autonomic.api")
    for host in ("127.0.0.1", "0.0.0.0"):
        server = ApiServer(create_app(env.ctx), host=host, port=0)
        server.start()
        server.stop()
    warned = [r.getMessage() for r in caplog.records if r.name == "autonomic.api" and r.levelno == logging.WARNING]
    assert len(warned) == 1, warned
    assert warned[0].startswith("api: listening on 0.0.0.0:") and "plain HTTP" in warned[0]
    assert "TLS" in warned[0] and "api.host" in warned[0]


def test_api_spec_reads_webhook_secrets_from_the_environment_variables_it_names(env: Env) -> None:
    from autonomic.errors import ConfigError
    from autonomic.oversight.api import ApiSpec, context_from_spec

    spec = ApiSpec(webhook_token_env="HOOK_TOKEN", webhook_hmac_env="HOOK_HMAC", max_body_bytes=4096)
    kw: dict[str, Any] = {"store": env.store, "config": env.ctx.config, "engine": None, "metrics": EngineMetrics()}
    ctx = context_from_spec(spec, environ={"HOOK_TOKEN": "t", "HOOK_HMAC": "h"}, **kw)
    assert (ctx.webhook_token, ctx.webhook_hmac_secret, ctx.max_body_bytes) == ("t", "h", 4096)
    shown = repr(context_from_spec(spec, environ={"HOOK_TOKEN": "token-value-1", "HOOK_HMAC": "hmac-value-1"}, **kw))
    assert "token-value-1" not in shown and "hmac-value-1" not in shown  # a repr may end up in a log
    with pytest.raises(ConfigError, match=r"api\.webhook_hmac_env: environment variable HOOK_HMAC is not set"):
        context_from_spec(spec, environ={"HOOK_TOKEN": "t"}, **kw)
    assert ApiSpec().host == "127.0.0.1" and ApiSpec().port == 8470
    with pytest.raises(ValueError, match="port"):
        ApiSpec(port=70000)


def test_reads_are_replayed_briefly_only_to_a_still_valid_token_and_any_write_refreshes_them(env: Env) -> None:
    """The read cache: a second read within its TTL is the same response even if the store
    changed behind the API's back; a write through the API empties it; a revoked token is
    refused even while its response is cached; another token never gets it."""
    from autonomic.oversight.api import create_app

    env.ctx.read_cache_s = 30.0
    client = TestClient(create_app(env.ctx))
    viewer = env.auth("viewer")
    first = client.get("/api/v1/incidents?all=true", headers=viewer).json()
    env.store.record(Incident(service="db", cause="cpu", severity=Severity.WARNING, kind=FindingKind.THRESHOLD,
                              opened_at=T0 + 5, updated_at=T0 + 5, last_finding_at=T0 + 5, summary="new"),
                     actor="t", event="t", subject="x")
    assert client.get("/api/v1/incidents?all=true", headers=viewer).json() == first  # replayed
    assert len(client.get("/api/v1/incidents?all=true", headers=env.auth("admin")).json()) == len(first) + 1
    assert client.post("/api/v1/pause", headers=env.auth("operator"), json={"reason": "x"}).status_code == 200
    assert len(client.get("/api/v1/incidents?all=true", headers=viewer).json()) == len(first) + 1
    revoke(env.store, "viewer")
    assert client.get("/api/v1/incidents?all=true", headers=viewer).status_code == 401


def test_the_canary_endpoint_judges_like_the_cli_and_needs_a_token(env: Env) -> None:
    rules = {"metrics": [{"metric": "error_rate", "harm": "increase", "tolerance": 0.1, "min_samples": 5}]}
    base = {"error_rate": [0.01, 0.011, 0.009, 0.01, 0.012, 0.01, 0.011, 0.009]}
    worse = {"error_rate": [0.05, 0.06, 0.055, 0.052, 0.058, 0.05, 0.061, 0.057]}
    body = {"baseline": base, "canary": worse, "config": rules}
    assert env.client.post("/api/v1/canary/judge", json=body).status_code == 401
    r = env.client.post("/api/v1/canary/judge", json=body, headers=env.auth("viewer"))
    assert r.status_code == 200 and r.json()["verdict"] == "fail"
    assert r.json()["metrics"][0]["p_value"] < 0.01
    same = env.client.post("/api/v1/canary/judge", headers=env.auth("viewer"),
                           json={"baseline": base, "canary": base, "config": rules}).json()
    assert same["verdict"] == "pass"
    few = env.client.post("/api/v1/canary/judge", headers=env.auth("viewer"),
                          json={"baseline": {"error_rate": [0.01]}, "canary": {"error_rate": [0.01]},
                                "config": rules}).json()
    assert few["verdict"] == "fail" and few["metrics"][0]["verdict"] == "nodata"
    bad = env.client.post("/api/v1/canary/judge", headers=env.auth("viewer"),
                          json={"baseline": base, "canary": worse, "config": {"metrics": [{"metric": "x",
                                                                                             "harm": "up"}]}})
    assert bad.status_code == 422 and "harm" in bad.text
    # JSON as Python reads it takes Infinity and NaN: a weight of Infinity is refused, naming it
    as_json = {**env.auth("viewer"), "Content-Type": "application/json"}
    endless = env.client.post("/api/v1/canary/judge", headers=as_json, content=json.dumps(
        {"baseline": base, "canary": base, "config": {**rules, "groups": {"default": float("inf")}}}))
    assert endless.status_code == 422, endless.text
    assert endless.json()["message"].startswith("config.groups.default:")


def test_a_webhook_is_audited_by_its_count_not_copied_whole_into_the_audit_log(env: Env) -> None:
    """The audit log is kept for ever: each webhook (Alertmanager resends a group's alerts every
    group_interval and repeat_interval) must not add a copy of its whole payload to it."""
    many = {**ALERT, "alerts": [{**ALERT["alerts"][0], "fingerprint": f"f{i}",  # type: ignore[dict-item]
                                 "annotations": {"summary": "x" * 500}} for i in range(50)]}
    assert env.client.post("/api/v1/alerts", json=many, headers=env.auth("operator")).json() == {"accepted": 50}
    (key,) = env.store.states("inbox:")
    (received,) = [e for e in env.store.audit_events(subject=key)]
    assert received.kind == "alerts.received" and received.data["count"] == 50
    assert len(json.dumps(received.data)) < 1000, "the payload was copied into the audit log"


def test_a_pruned_incident_is_a_404_saying_retention_pruned_it_and_what_remains_is_served(env: Env) -> None:
    from autonomic.knowledge.retention import DAY_S, RetentionSpec, prune

    closed_id = env.store.incidents(states=[IncidentState.RESOLVED])[0].id
    spec = RetentionSpec(incidents_days=7, findings_days=None, audit_days=None)
    assert prune(env.store, spec, T0 + 8 * DAY_S, env.ctx.config.archive_dir).counts["incidents"] == 1
    h = env.auth("viewer")
    r = env.client.get(f"/api/v1/incidents/{closed_id[:8]}", headers=h)
    assert r.status_code == 404 and "retention pruned closed incidents before" in r.json()["detail"]
    assert env.client.get(f"/api/v1/incidents/{env.open_id}", headers=h).status_code == 200  # an open one stays
    listed = env.client.get("/api/v1/incidents?all=true", headers=h).json()
    assert closed_id not in json.dumps(listed) and env.open_id in json.dumps(listed)
    report = env.client.get("/api/v1/audit/verify", headers=h).json()
    assert report["ok"] and report["from_seq"] == 1


def _decisions_counted(env: Env) -> dict[str, int]:
    """``autonomic_decisions_total`` per verdict, as GET /metrics serves it."""
    text = env.client.get("/metrics").text
    return {s.labels["verdict"]: int(s.value) for family in text_string_to_metric_families(text)
            for s in family.samples if s.name == "autonomic_decisions_total"}


def _engines_own_on_web(env: Env) -> Counter[str]:
    """The decisions the engine made on web's open incident meanwhile (it decides it at the same tick)."""
    return Counter(d.verdict.value for d in env.store.decisions(env.open_id))


def test_an_approval_never_acted_on_because_the_trouble_cleared_is_counted_in_metrics_as_trouble_cleared(
        env: Env) -> None:
    """db waits for approval; no finding has come for 9 s (its trouble cleared on its own); a
    person approves through the API. The engine records a decision of the person's, never acted
    on (gate trouble_cleared). Before, /metrics did not count it at all; now it is counted under
    its own verdict label, apart from denials."""
    engine = _engine(env)
    engine.start()
    r = env.client.post(f"/api/v1/approvals/{env.waiting_id}/approve", headers=env.auth("operator"),
                        json={"comment": "go"})
    assert r.status_code == 200, r.text
    env.ctx.clock.advance(30)  # type: ignore[attr-defined]
    engine.tick()
    assert env.store.decisions(env.waiting_id)[-1].never_acted_on
    assert _decisions_counted(env) == _engines_own_on_web(env) + Counter({"trouble_cleared": 1})


def test_a_persons_denial_is_counted_in_metrics_as_denied(env: Env) -> None:
    """Before, a person's denial was recorded as a denied decision but /metrics did not count it."""
    engine = _engine(env)
    engine.start()
    r = env.client.post(f"/api/v1/approvals/{env.waiting_id}/deny", headers=env.auth("operator"),
                        json={"comment": "not now"})
    assert r.status_code == 200, r.text
    env.ctx.clock.advance(30)  # type: ignore[attr-defined]
    engine.tick()
    assert env.store.decisions(env.waiting_id)[-1].person_said_no
    assert _decisions_counted(env) == _engines_own_on_web(env) + Counter({"denied": 1})


def test_an_approval_given_after_its_request_expired_is_refused_with_409_and_audited_as_late(env: Env) -> None:
    """db's request was made at T0+1 (approval_ttl_s: an hour); a person approves a minute after it
    expired, before the engine has looked. Before, the API answered 200 ("the engine acts on its
    next tick") and the engine then closed the incident as expired, acting on nothing. Now 409
    says so and nothing is stored but the attempt, audited approval.late on the incident (the
    request is stored as an older autonomic stored it, without expires_at: it expires by the
    TTL of the API's config, and of the engine's); after
    the engine has closed the incident, a second late approval is told that too, nothing runs
    either way, and the incident's explanation says it was approved after the request expired."""
    env.ctx.clock.advance(3600 + 1 + 60 - 10)  # type: ignore[attr-defined]  # the clock is at T0+10
    headers = env.auth("operator")
    r = env.client.post(f"/api/v1/approvals/{env.waiting_id}/approve", headers=headers, json={"comment": "go"})
    assert r.status_code == 409, r.text
    detail = r.json()["detail"]
    assert detail.startswith(f"incident {env.waiting_id[:8]}: too late, nothing will be done on this approval: its "
                             "approval request expired at "), detail
    assert "60 s before it, and the engine closes the incident as expired at its next look" in detail
    assert env.store.get_state(approval_key(env.waiting_id)) is None
    late = env.store.audit_events()[-1]
    assert (late.kind, late.actor, late.data["late_by_s"]) == ("approval.late", "token:operator", 60.0)

    engine = _engine(env)
    engine.start()
    engine.tick()
    inc = env.store.get(Incident, env.waiting_id)
    assert inc is not None and inc.state == IncidentState.EXPIRED
    assert env.store.actions(incident_id=env.waiting_id) == []
    again = env.client.post(f"/api/v1/approvals/{env.waiting_id}/approve", headers=headers, json={})
    assert again.status_code == 409 and "the engine has closed the incident as expired" in again.json()["detail"]
    assert [e.kind for e in env.store.audit_events(subject=env.waiting_id)
            if e.kind.startswith("approval.")] == ["approval.late", "approval.expired", "approval.late"]
    # the incident's explanation says the request was approved, late (it said "expired unanswered")
    chain = env.client.get(f"/api/v1/incidents/{env.waiting_id}", headers=env.auth("viewer")).json()
    assert chain["decisions"][-1]["ruled_by"] == "by engine; expired: approved by token:operator after the request " \
                                                "expired"


def _leader(env: Env, tmp_path: Path, ttl_s: float) -> tuple[Engine, ReplaySource, str]:
    """A real engine over the API's store and clock whose config says ``approval_ttl_s: ttl_s``
    (the API's, as its file reads now, says 3600: another replica's, mid-rollout, or the file
    edited since the engine started); web goes down (``up`` 0, replayed) and the engine asks a
    person to approve its fallback. Returns the engine, its source and the incident's id."""
    data = {"engine": {"state_dir": str(tmp_path / "leader"), "interval_s": 1, "host_metrics": False,
                       "approval_ttl_s": ttl_s},
            "services": [{"name": "web", "actuators": {"http": {"base_url": "http://127.0.0.1:9"}},
                          "fallback": {"type": "http", "params": {"method": "POST", "path": "/restart"}}}],
            "policy": {"autonomy": "approve"}}
    clock = env.ctx.clock
    source = ReplaySource([Sample("web", "up", clock.now() + i, 0.0) for i in range(5)])
    engine = Engine(load_config_data(data, source="leader.yaml", base_dir=tmp_path), clock=clock, store=env.store,
                    sources=[source], notifiers=Dispatcher())
    engine.start()
    for _ in range(5):
        engine.tick()
        clock.advance(1.0)  # type: ignore[attr-defined]
    (inc,) = [i for i in env.store.incidents(states=[IncidentState.AWAITING_APPROVAL], service="web")
              if i.cause == "down"]
    return engine, source, inc.id


def _look(engine: Engine, source: ReplaySource, clock: Any) -> None:
    """The engine's next ticks (web still down)."""
    source._samples.extend(Sample("web", "up", clock.now() + i, 0.0) for i in range(-2, 3))
    for _ in range(3):
        engine.tick()
        clock.advance(1.0)


def test_an_approval_in_time_by_the_asking_engines_ttl_is_taken_whatever_the_apis_config_says(
        env: Env, tmp_path: Path) -> None:
    """The engine asked under approval_ttl_s 7200; the API's config says 3600. A person approves
    4000 s after the request: before, the API answered 409 "too late, nothing will be done" by its
    own 3600, though the engine would have acted on it. Now the request carries its expiry and
    the API judges by it: 200, and the engine acts on the approval."""
    engine, source, inc_id = _leader(env, tmp_path, 7200)
    assert env.ctx.config.engine.approval_ttl_s == 3600
    asked = env.store.decisions(inc_id)[-1]
    env.ctx.clock.advance(asked.ts + 4000 - env.ctx.clock.now())  # type: ignore[attr-defined]
    r = env.client.post(f"/api/v1/approvals/{inc_id}/approve", headers=env.auth("operator"), json={"comment": "go"})
    assert r.status_code == 200, r.text
    # the approvals queue shows when the request expires, as recorded
    (queued,) = [q for q in env.client.get("/api/v1/approvals", headers=env.auth("viewer")).json()
                 if q["incident"]["id"] == inc_id]
    assert queued["expires_at"] == queued["decision"]["expires_at"] == asked.ts + 7200
    _look(engine, source, env.ctx.clock)
    assert [(d.verdict, d.decided_by) for d in env.store.decisions(inc_id)] == [
        (Verdict.NEEDS_APPROVAL, "engine"), (Verdict.APPROVED, "token:operator")]
    assert [a.type for a in env.store.actions(incident_id=inc_id)] == ["http"]
    engine.shutdown()


def test_an_approval_late_by_the_asking_engines_ttl_is_refused_whatever_the_apis_config_says(
        env: Env, tmp_path: Path) -> None:
    """The other way round: the engine asked under 1800 s, the API's config says 3600; an approval
    2000 s after the request. Before, the API took it (200: "the engine acts on its next tick") and
    the engine then closed the incident as expired, doing nothing. Now 409, naming the request's
    own expiry, and the engine agrees."""
    engine, source, inc_id = _leader(env, tmp_path, 1800)
    asked = env.store.decisions(inc_id)[-1]
    env.ctx.clock.advance(asked.ts + 2000 - env.ctx.clock.now())  # type: ignore[attr-defined]
    r = env.client.post(f"/api/v1/approvals/{inc_id}/approve", headers=env.auth("operator"), json={"comment": "go"})
    assert r.status_code == 409, r.text
    detail = r.json()["detail"]
    assert "too late, nothing will be done on this approval" in detail
    assert "(engine.approval_ttl_s 1800 s after it was asked), 200 s before it" in detail
    assert env.store.get_state(approval_key(inc_id)) is None
    _look(engine, source, env.ctx.clock)
    closed = env.store.get(Incident, inc_id)
    assert closed is not None and closed.state == IncidentState.EXPIRED
    assert env.store.actions(incident_id=inc_id) == []
    engine.shutdown()


# --- 422 bodies in words ---------------------------------------------------------------------


def test_a_body_that_does_not_validate_is_422_in_words_naming_each_field_by_its_path(env: Env) -> None:
    """Over the real app and store: FastAPI's ``detail`` list keeps its shape (type, loc, msg per
    problem) with each msg in words as config errors are, and ``message`` says them all in one
    line; nothing stored changes. Before: "Value error, must not be empty", "Input should be a
    valid dictionary or instance of PauseBody", "Extra inputs are not permitted"."""
    op = {**env.auth("operator"), "Content-Type": "application/json"}
    before = env.seq()
    cases = [
        (b'{"reason": "   "}', [(["body", "reason"], "must not be empty")], "reason: must not be empty"),
        (b"[1, 2]", [(["body"], "should be a mapping (an object of named values), not a list")],
         "body: should be a mapping (an object of named values), not a list"),
        (b'{"reason": "x", "sevrice": "web"}',
         [(["body", "sevrice"], "unknown field 'sevrice'; did you mean 'service'?")],
         "sevrice: unknown field 'sevrice'; did you mean 'service'?"),
        (b"{not json",
         [(["body"], "not valid JSON at character 1: Expecting property name enclosed in double quotes")],
         "body: not valid JSON at character 1: Expecting property name enclosed in double quotes"),
    ]
    for content, detail, message in cases:
        r = env.client.post("/api/v1/pause", headers=op, content=content)
        assert r.status_code == 422, content
        body = r.json()
        assert [(d["loc"], d["msg"]) for d in body["detail"]] == detail, content
        assert all(set(d) == {"type", "loc", "msg"} for d in body["detail"])
        assert body["message"] == message
        for raw in ("Value error, ", "valid dictionary", "instance of", "errors.pydantic.dev", "Extra inputs"):
            assert raw not in r.text, (content, raw)
    r = env.client.put("/api/v1/policy", headers={**env.auth("admin"), "Content-Type": "application/json"},
                       content=b'{"rate_limits": {"per_day": "many"}, "autonomy": "aprove"}')
    assert r.status_code == 422
    assert r.json()["message"] == ("autonomy: Input should be 'observe', 'suggest', 'approve' or 'auto'; did you "
                                   "mean 'approve'?; rate_limits.per_day: Input should be a valid integer, unable to "
                                   "parse string as an integer")
    r = env.client.get("/api/v1/incidents?limit=0", headers=env.auth("viewer"))
    assert r.status_code == 422 and r.json()["message"].startswith("query.limit: ")
    assert env.seq() == before
