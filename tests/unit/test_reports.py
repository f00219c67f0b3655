"""Daily and weekly reports over a store holding two weeks of history, their renderings,
the CLI and report schedules."""

from __future__ import annotations

import time
import types
from collections.abc import Callable, Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

import autonomic.knowledge.store as store_module
from autonomic.knowledge import Store
from autonomic.model import (
    Action,
    ActionState,
    FindingKind,
    Incident,
    IncidentState,
    Level,
    Resolution,
    Severity,
)
from autonomic.oversight.report_cli import report_app
from autonomic.oversight.reports import (
    NOTHING,
    ReportSchedule,
    _action_items,
    audit_window,
    build_report,
    due_reports,
    render_html,
    render_markdown,
    report_notification,
)

NOW = 1_700_006_400.0  # 2023-11-15 00:00 UTC
H, DAY = 3600.0, 86_400.0


class Clock:
    """Stands in for the store's clock (this host's on SQLite, the server's as read with the write
    lock on PostgreSQL), so audit entries carry the history's times."""

    def __init__(self) -> None:
        self.t = NOW - 30 * DAY

    def time(self) -> float:
        return self.t


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    c = Clock()
    monkeypatch.setattr(store_module, "time", types.SimpleNamespace(time=c.time))
    monkeypatch.setattr(Store, "_now_in", lambda self, conn: c.time())
    return c


def incident(ident: str, service: str, opened: float, state: IncidentState = IncidentState.OPEN,
             resolution: Resolution | None = None, closed: float | None = None,
             updated: float | None = None, kind: FindingKind = FindingKind.THRESHOLD) -> Incident:
    return Incident(id=ident, service=service, cause="memory", state=state, severity=Severity.WARNING, kind=kind,
                    opened_at=opened, updated_at=updated or closed or opened, last_finding_at=opened,
                    summary=f"{service} trouble {ident}", resolution=resolution, closed_at=closed)


def action(ident: str, incident_id: str, service: str, type_: str, created: float, state: ActionState) -> Action:
    return Action(id=ident, decision_id=f"d-{ident}", incident_id=incident_id, service=service, type=type_,
                  idempotency_key=f"k-{ident}", state=state, created_at=created, updated_at=created + 120)


def populate(store: Store, clock: Clock) -> None:
    """Two weeks of history, written in time order (as the engine would)."""
    writes: list[tuple[float, Callable[[], Any]]] = []

    def inc(final: Incident) -> None:
        opened = final.model_copy(update={"state": IncidentState.OPEN, "resolution": None, "closed_at": None,
                                          "updated_at": final.opened_at})
        writes.append((final.opened_at, lambda: store.record(opened, actor="engine", event="incident.opened",
                                                             subject=final.id)))
        if final.updated_at > final.opened_at:
            writes.append((final.updated_at, lambda: store.record(final, actor="engine", event="incident.updated",
                                                                  subject=final.id)))

    def act(a: Action) -> None:
        writes.append((a.created_at, lambda: store.record(a, actor="engine", event="action.intent", subject=a.id)))

    def audit(ts: float, kind: str, subject: str, data: dict[str, Any], actor: str = "engine") -> None:
        writes.append((ts, lambda: store.audit(actor, kind, subject, data)))

    def state(ts: float, key: str, value: dict[str, Any] | None, event: str, data: dict[str, Any],
              actor: str = "engine") -> None:
        writes.append((ts, lambda: store.set_state(key, value, actor=actor, event=event, data=data)))

    R, S = IncidentState.RESOLVED, ActionState.SUCCEEDED
    inc(incident("i1", "api", NOW - 2 * H, R, Resolution.RESOLVED, closed=NOW - 1.5 * H))
    inc(incident("i2", "api", NOW - 5 * H, R, Resolution.PREVENTED, closed=NOW - 4 * H, kind=FindingKind.FORECAST))
    inc(incident("i3", "db", NOW - 3 * DAY, R, Resolution.RESOLVED, closed=NOW - 3 * DAY + 600))
    inc(incident("i4", "db", NOW - 2 * DAY, IncidentState.ROLLED_BACK, Resolution.ROLLED_BACK,
                 closed=NOW - 2 * DAY + 900))
    inc(incident("i5", "worker", NOW - 3 * H, IncidentState.ESCALATED, Resolution.FAILED, updated=NOW - 2 * H))
    inc(incident("i6", "api", NOW - 0.5 * H, IncidentState.AWAITING_APPROVAL, updated=NOW - 0.4 * H))
    inc(incident("i7", "api", NOW - 10 * DAY, R, Resolution.RESOLVED, closed=NOW - 10 * DAY + 300))
    inc(incident("i8", "cache", NOW - DAY - H, R, Resolution.RESOLVED, closed=NOW - 20 * H))
    inc(incident("i9", "worker", NOW - 6 * DAY, IncidentState.ESCALATED, Resolution.ESCALATED,
                 closed=NOW - 6 * DAY + 200))
    inc(incident("i10", "api", NOW))  # opened at the window's end: outside it
    inc(incident("i11", "cache", NOW - DAY, IncidentState.EXPIRED, Resolution.CLEARED, closed=NOW - DAY + 300))

    act(action("a1", "i1", "api", "restart", NOW - 2 * H + 60, S))
    act(action("a2", "i2", "api", "scale", NOW - 5 * H + 60, S))
    act(action("a3", "i5", "worker", "restart", NOW - 3 * H + 60, ActionState.FAILED))
    act(action("a4", "i3", "db", "restart", NOW - 3 * DAY + 60, S))
    act(action("a5", "i4", "db", "config_revert", NOW - 2 * DAY + 60, ActionState.ROLLED_BACK))
    act(action("a6", "i8", "cache", "restart", NOW - DAY - 0.5 * H, S))
    act(action("a7", "i6", "api", "restart", NOW - 0.3 * H, ActionState.CANCELLED))
    act(action("a8", "i6", "worker", "scale", NOW - 600, ActionState.VERIFYING))
    act(action("a9", "i7", "api", "restart", NOW - 10 * DAY + 60, S))

    state(NOW - 3 * H, "breaker:global", {"state": "closed", "consecutive_failures": 1}, "breaker.updated",
          {"scope": "global", "state": "closed"})
    state(NOW - 2.5 * H, "breaker:restart", {"state": "open", "consecutive_failures": 3, "opened_at": NOW - 2.5 * H,
                                             "trial_in_flight": False},
          "breaker.updated", {"scope": "restart", "state": "open"})
    audit(NOW - 4 * DAY, "policy.changed", "policy:override", {"policy": {}}, actor="person:alice")
    state(NOW - H, "pause:service:api", {"reason": "deploy freeze", "actor": "person:bob", "ts": NOW - H},
          "pause.set", {"service": "api", "reason": "deploy freeze"}, actor="person:bob")
    state(NOW - 5 * DAY, "pause:global", {"reason": "db migration", "actor": "person:carol", "ts": NOW - 5 * DAY},
          "pause.set", {"service": None, "reason": "db migration"}, actor="person:carol")
    state(NOW - 5 * DAY + H, "pause:global", None, "pause.lifted", {"service": None, "reason": ""},
          actor="person:carol")
    audit(NOW - 6 * H, "pattern.promoted", "memory-leak-restart",
          {"pattern": "memory-leak-restart", "reason": "9 of 10 succeeded"})
    audit(NOW - 12 * DAY, "pattern.demoted", "disk-cleanup", {"pattern": "disk-cleanup"})
    audit(NOW, "policy.changed", "policy:override", {"policy": {}}, actor="person:alice")  # at the end: outside

    for ts, write in sorted(writes, key=lambda w: w[0]):
        clock.t = ts
        write()


@pytest.fixture
def store(store_url: str, clock: Clock) -> Iterator[Store]:
    s = Store(store_url)
    populate(s, clock)
    yield s
    s.close()


ACTION_ITEMS = [
    "escalated, needs a person: worker trouble i5 (incident i5)",
    "approve or deny: api trouble i6 (incident i6)",
    "circuit breaker open for restart actions after 3 failures in a row",
    "api paused by person:bob: deploy freeze",
]


def test_daily_report_counts_exactly_the_last_24_hours(store: Store) -> None:
    r = build_report(store, "daily", NOW)
    assert (r.start, r.end) == (NOW - DAY, NOW)
    assert [(s.type, s.total, s.succeeded, s.finished, s.rolled_back, s.success_rate) for s in r.interventions] == [
        ("restart", 2, 1, 2, 0, 0.5),
        ("scale", 2, 1, 1, 0, 1.0),
    ]
    assert (r.interventions_total, r.succeeded, r.finished) == (4, 2, 3)
    assert r.success_rate == pytest.approx(2 / 3)
    assert r.rollbacks == 0
    assert r.incidents_opened == 5  # i1 i2 i5 i6 i11 (opened exactly at the start); not i8, not i10
    assert r.incidents_resolved == 2  # i1, i8 (opened before the window, closed inside)
    assert r.incidents_prevented == 1  # i2
    assert r.mttr_s == pytest.approx((1800 + 3600 + 5 * H) / 3)
    assert r.escalations == 1  # i5
    assert [(s.service, s.incidents) for s in r.top_services] == [("api", 3), ("cache", 1), ("worker", 1)]
    assert [e.text for e in r.notable] == [
        "pattern memory-leak-restart promoted: 9 of 10 succeeded",
        "circuit breaker opened for restart actions",
        "api paused by person:bob: deploy freeze",
    ]
    assert [i.text for i in r.action_items] == ACTION_ITEMS
    assert [i.kind for i in r.action_items] == ["escalated", "approval", "breaker", "pause"]
    assert not r.quiet


def test_weekly_report_counts_exactly_the_last_7_days(store: Store) -> None:
    r = build_report(store, "weekly", NOW)
    assert [(s.type, s.total, s.succeeded, s.finished, s.rolled_back, s.success_rate) for s in r.interventions] == [
        ("restart", 4, 3, 4, 0, 0.75),
        ("scale", 2, 1, 1, 0, 1.0),
        ("config_revert", 1, 0, 1, 1, 0.0),
    ]
    assert (r.interventions_total, r.succeeded, r.finished) == (7, 4, 6)
    assert r.rollbacks == 1
    assert r.incidents_opened == 9
    assert r.incidents_resolved == 3  # i1 i3 i8
    assert r.incidents_prevented == 1
    assert r.mttr_s == pytest.approx((1800 + 3600 + 5 * H + 600) / 4)
    assert r.escalations == 2  # i5 i9
    assert [(s.service, s.incidents) for s in r.top_services] == [("api", 3), ("cache", 2), ("db", 2),
                                                                 ("worker", 2)]
    assert [e.kind for e in r.notable] == ["pause.set", "pause.lifted", "policy.changed", "pattern.promoted",
                                           "breaker.updated", "pause.set"]
    assert r.notable[0].text == "all automation paused by person:carol: db migration"
    assert r.notable[1].text == "all automation resumed by person:carol"
    assert r.notable[2].text == "policy changed by person:alice"
    assert [i.text for i in r.action_items] == ACTION_ITEMS


def test_markdown_has_every_section_and_the_numbers(store: Store) -> None:
    md = render_markdown(build_report(store, "weekly", NOW))
    assert md.startswith("# autonomic weekly report, 2023-11-08 00:00 UTC to 2023-11-15 00:00 UTC\n")
    for heading in ("## Summary", "## Interventions by action type", "## Top services by incidents",
                    "## Notable events", "## Action items"):
        assert heading in md
    assert "- Interventions: 7 (4 of 6 finished succeeded, 67%)" in md
    assert "- Mean time to resolve: 1.7 h" in md
    assert "| config_revert | 1 | 0 | 1 | 1 | 0% |" in md
    assert "| api | 3 |" in md
    assert "- 2023-11-14 21:30 UTC: circuit breaker opened for restart actions" in md
    assert "- approve or deny: api trouble i6 (incident i6)" in md
    assert NOTHING not in md


class _Collect(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.text: list[str] = []
        self.attrs: list[tuple[str, str | None]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.attrs.extend(attrs)

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def test_html_is_self_contained_with_svg_bar_charts(store: Store) -> None:
    page = render_html(build_report(store, "daily", NOW))
    parser = _Collect()
    parser.feed(page)
    parser.close()
    assert parser.tags.count("svg") == 2  # interventions by type, incidents per service
    assert parser.tags.count("rect") >= 2 + 2 + 3  # legend, bars with succeeded overlays, service bars
    assert "script" not in parser.tags and "link" not in parser.tags and "img" not in parser.tags
    assert not any(name in ("src", "href") for name, _ in parser.attrs)
    text = "".join(parser.text)
    assert "Interventions by action type" in text and "Action items" in text
    assert "api paused by person:bob: deploy freeze" in text


def test_html_escapes_what_people_wrote(tmp_path: Path, clock: Clock) -> None:
    s = Store(f"sqlite:///{tmp_path / 'a.db'}")
    clock.t = NOW - H
    s.set_state("pause:global", {"reason": "<script>alert(1)</script>", "actor": "person:x"}, actor="person:x",
                event="pause.set", data={"service": None, "reason": "<script>alert(1)</script>"})
    page = render_html(build_report(s, "daily", NOW))
    assert "<script>" not in page and "&lt;script&gt;" in page


def test_empty_store_gives_a_nothing_happened_report(tmp_path: Path) -> None:
    s = Store(f"sqlite:///{tmp_path / 'empty.db'}")
    r = build_report(s, "daily", NOW)
    assert r.quiet
    assert (r.interventions_total, r.incidents_opened, r.rollbacks, r.escalations) == (0, 0, 0, 0)
    assert r.success_rate is None and r.mttr_s is None
    assert r.notable == [] and r.action_items == []
    md = render_markdown(r)
    assert NOTHING in md and "No interventions." in md and "None: nothing waits for a person." in md
    page = render_html(r)
    assert NOTHING in page and "<svg" not in page
    _Collect().feed(page)


def test_audit_window_finds_exactly_the_events_in_range_across_pages(clock: Clock) -> None:
    s = Store("sqlite://")
    for i in range(1, 1301):
        clock.t = float(i)
        s.audit("engine", "tick", "engine", {})
    found = audit_window(s, 100.0, 1250.0)
    assert [e.ts for e in found] == [float(i) for i in range(100, 1250)]
    assert audit_window(s, 5000.0, 6000.0) == []
    assert len(audit_window(s, 0.0, 10_000.0)) == 1300


def test_cli_prints_markdown_and_writes_html(store: Store, store_url: str, tmp_path: Path) -> None:
    config = tmp_path / "autonomic.yaml"
    config.write_text(f"engine:\n  database: '{store_url}'\n  host_metrics: false\nbuiltin_patterns: false\n")
    runner = CliRunner()
    result = runner.invoke(report_app, ["daily", "-c", str(config), "--now", str(NOW)])
    assert result.exit_code == 0, result.output
    assert "# autonomic daily report" in result.output and "- Interventions: 4" in result.output
    out = tmp_path / "r" / "weekly.html"
    result = runner.invoke(report_app, ["weekly", "--format", "html", "-c", str(config), "--now", str(NOW),
                                        "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "<svg" in out.read_text()
    bad = runner.invoke(report_app, ["daily", "--format", "pdf", "-c", str(config)])
    assert bad.exit_code == 2 and "pdf" in bad.output


# --- schedules ---------------------------------------------------------------------------------


@pytest.mark.parametrize("now", ["nan", "inf", "-inf", "1e300", "-5"])
def test_cli_refuses_a_now_no_date_can_show_naming_the_option(store_url: str, tmp_path: Path, now: str) -> None:
    config = tmp_path / "autonomic.yaml"
    config.write_text(f"engine: {{database: '{store_url}'}}\n")
    result = CliRunner().invoke(report_app, ["daily", "-c", str(config), f"--now={now}"])
    assert result.exit_code == 2, result.output  # not a traceback from datetime
    assert "--now: must be Unix seconds" in result.stderr


def test_schedule_rejects_a_bad_cron_naming_the_field() -> None:
    with pytest.raises(ValidationError, match="cron"):
        ReportSchedule(period="daily", cron="every morning")
    with pytest.raises(ValidationError, match="cron"):
        ReportSchedule(period="daily", cron="61 8 * * *")
    with pytest.raises(ValidationError, match="period"):
        ReportSchedule.model_validate({"period": "monthly", "cron": "0 8 * * *"})


def test_schedule_is_due_once_its_cron_fires_after_the_last_run() -> None:
    daily = ReportSchedule(period="daily", cron="0 8 * * *")  # 08:00 UTC
    weekly = ReportSchedule(period="weekly", cron="0 9 * * 1", format="html")  # Monday 09:00 UTC
    at_8 = NOW + 8 * H  # Wednesday 2023-11-15 08:00
    assert due_reports([daily], {daily.key: at_8 - DAY}, at_8 - 1) == []
    assert due_reports([daily], {daily.key: at_8 - DAY}, at_8) == [daily]
    assert due_reports([daily], {daily.key: at_8}, at_8 + 60) == []  # ran at the fire: not again
    assert due_reports([daily], {daily.key: at_8}, at_8 + DAY - 1) == []
    assert due_reports([daily], {daily.key: at_8}, at_8 + DAY) == [daily]
    assert due_reports([daily], {daily.key: at_8 - 3 * DAY}, at_8 + 5) == [daily]  # missed fires: one report
    monday_9 = NOW - 2 * DAY + 9 * H
    assert due_reports([daily, weekly], {daily.key: at_8, weekly.key: monday_9}, at_8 + 3 * H) == []
    assert due_reports([daily, weekly], {daily.key: at_8, weekly.key: monday_9}, monday_9 + 7 * DAY) == [
        daily, weekly]
    assert due_reports([weekly], {}, at_8) == [weekly]  # never ran: due at its latest fire


def test_report_notification_carries_the_rendered_report(store: Store) -> None:
    schedule = ReportSchedule(period="daily", cron="0 8 * * *", level=Level.INFO)
    n = report_notification(store, schedule, NOW)
    assert n.level == Level.INFO and n.ts == NOW
    assert n.title == "autonomic daily report, 2023-11-14 00:00 UTC to 2023-11-15 00:00 UTC"
    assert n.body.startswith("# autonomic daily report") and "## Action items" in n.body


@pytest.mark.parametrize(("service", "summary", "text"), [
    ("web", "web: error_rate 0.18 >= 0.05 (last 2 samples)", "web: error_rate 0.18 >= 0.05 (last 2 samples)"),
    ("web", "web is down: up == 0", "web is down: up == 0"),
    ("web", "latency_ms = 1527 left its usual range", "web: latency_ms = 1527 left its usual range"),
    ("api", "api-gw: error_rate 0.2 >= 0.05", "api: api-gw: error_rate 0.2 >= 0.05"),
])
def test_an_action_item_names_the_service_once(service: str, summary: str, text: str) -> None:
    """Threshold summaries already start with the service; the item read "web: web: ..." before
    (as did the engine's "not acting" notification titles, which use the same Incident.headline)."""
    inc = incident("i9", service, NOW - H, IncidentState.AWAITING_APPROVAL, None).model_copy(
        update={"summary": summary})
    (item,) = _action_items([inc], {})
    assert item.text == f"approve or deny: {text} (incident i9)"


def test_a_report_reads_only_the_incidents_and_actions_of_its_window_not_the_whole_history(
        store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """The daily report reads the 7 incidents open at some time in its day or since (unclosed,
    or closed in it) and the 5 actions created in it; it used to read every incident and action
    ever stored (11 and 9 here; on a store with 10,000 incidents and 5,000 actions, all of them,
    about 0.4 s of the engine's loop per scheduled report and growing with history)."""
    read: dict[str, int] = {}
    for name in ("incidents", "actions"):
        real = getattr(store, name)

        def spy(*args: Any, _real: Callable[..., list[Any]] = real, _name: str = name, **kwargs: Any) -> list[Any]:
            out = _real(*args, **kwargs)
            read[_name] = read.get(_name, 0) + len(out)
            return out

        monkeypatch.setattr(store, name, spy)
    r = build_report(store, "daily", NOW)
    assert read == {"incidents": 7, "actions": 5}
    assert (r.incidents_opened, r.interventions_total, r.escalations) == (5, 4, 1)


def test_an_open_breakers_action_item_counts_its_failures_in_words(store_url: str, clock: Clock) -> None:
    """Over the real store: a breaker opened after one failure says "1 failure", after two "2 failures"."""
    s = Store(store_url)
    try:
        clock.t = NOW - H
        for scope, n in (("restart", 1), ("scale", 2)):
            s.set_state(f"breaker:{scope}", {"state": "open", "consecutive_failures": n, "opened_at": NOW - H,
                                             "trial_in_flight": False},
                        actor="engine", event="breaker.updated", data={"scope": scope, "state": "open"})
        r = build_report(s, "daily", NOW)
    finally:
        s.close()
    assert [i.text for i in r.action_items if i.kind == "breaker"] == [
        "circuit breaker open for restart actions after 1 failure in a row",
        "circuit breaker open for scale actions after 2 failures in a row",
    ]


def test_an_earned_autonomy_change_names_the_service_and_the_levels(tmp_path: Path) -> None:
    """The engine's loop (the fake actuator and clock of test_engine's Harness) earns
    ``fake-down-poke`` the level auto on svc once an approved fix verifies (the approval and the
    verified outcome: two successes, as the reason says). The ladder is per
    pattern and service, so the report's line says on which service, from which level to which,
    as the engine's notification does; it read "pattern fake-down-poke promoted: promoted to auto
    after ...", as if the pattern had been promoted everywhere."""
    from test_engine import Harness

    from autonomic.engine import answer_approval

    h = Harness(tmp_path, policy={"autonomy": "approve", "autonomy_ladder": {
        "enabled": True, "promote_after": 2, "min_lower_bound": 0.0, "max_level": "auto"}})
    for _ in range(3):
        h.feed("up", 1, 40)
        h.feed("up", 0, 3)
        inc = h.incident()
        if inc.state == IncidentState.AWAITING_APPROVAL:
            answer_approval(h.store, inc.id, "approve", actor="person:ana", comment="go", now=h.clock.now(),
                            approval_ttl_s=3600)
        h.feed("up", 1, 40)
    (promoted,) = [e for e in h.store.audit_events() if e.kind.startswith("pattern.")]
    r = build_report(h.store, "daily", promoted.ts + 1)
    assert [n.text for n in r.notable if n.kind == "pattern.promoted"] == [
        "pattern fake-down-poke on svc: autonomy approve -> auto (promoted to auto after 2 successes (1 verified, "
        "1 approval by a person) (100% of 2))"]


def test_a_pause_file_is_an_action_item_of_the_report_as_autonomic_status_shows_it(
        store_url: str, tmp_path: Path) -> None:
    """A pause made by hand (``echo why > STATE_DIR/paused``, README "A pause that does not need the
    database") or by ``autonomic pause`` while the store refused holds the engine, and
    ``autonomic status`` shows it like any pause. The report read only the store's pauses, so its
    action items said "nothing waits for a person" while automation was paused."""
    state = tmp_path / "state"
    state.mkdir()
    (state / "paused").write_text("disk swap on db-2\n")
    (state / "paused.web").write_text('{"reason": "deploy", "actor": "person:ann", "ts": 1700000000}')
    Store(store_url).close()
    config = tmp_path / "autonomic.yaml"
    config.write_text(f"engine:\n  database: '{store_url}'\n  state_dir: '{state}'\n  host_metrics: false\n")
    result = CliRunner().invoke(report_app, ["daily", "-c", str(config)])
    assert result.exit_code == 0, result.output
    assert f"- all automation paused by the pause file {state / 'paused'}: disk swap on db-2\n" in result.output
    assert f"- web paused by the pause file {state / 'paused.web'} (set by person:ann): deploy\n" in result.output
    assert "nothing waits for a person" not in result.output


def test_a_service_a_person_stopped_on_purpose_is_an_action_item_until_a_person_starts_it(
        store_url: str, tmp_path: Path) -> None:
    """`autonomic stop web` keeps web down, its remedies passed over, until a person starts it:
    a maintenance stop forgotten is an outage nobody is told of. The report listed pauses but not
    stops, and said "nothing waits for a person" while web stayed down."""
    store = Store(store_url)
    # the record the engine writes when it carries out `autonomic stop web -m "disk swap"`
    store.set_state("stopped:web", {"actor": "person:ann", "comment": "disk swap", "ts": 1_700_000_000.0,
                                    "request": "request:1"}, actor="person:ann", event="service.stopped_on_purpose")
    store.close()
    config = tmp_path / "autonomic.yaml"
    config.write_text(f"engine:\n  database: '{store_url}'\n  state_dir: '{tmp_path / 'state'}'\n"
                      "  host_metrics: false\n")
    result = CliRunner().invoke(report_app, ["daily", "-c", str(config)])
    assert result.exit_code == 0, result.output
    assert ("- web stopped on purpose by person:ann (disk swap): down until a person starts it "
            f"(autonomic -c {config} start web)\n") in result.output
    assert "nothing waits for a person" not in result.output


def test_the_engines_scheduled_report_lists_a_pause_file_among_its_action_items(tmp_path: Path) -> None:
    """The same through the engine's loop (test_engine's Harness): the scheduled daily report,
    delivered through the notifiers, names the pause file in its state_dir."""
    from test_engine import Harness

    h = Harness(tmp_path, extra={"reports": [{"period": "daily", "cron": "0 8 * * *"}]})
    h.feed("up", 1, 2)  # 2023-11-14 22:13 UTC: the schedule is first seen
    pause = tmp_path / "state" / "paused"
    pause.write_text("hands off\n")
    h.clock.t = 1_700_035_200.0 + 60  # 2023-11-15 08:01 UTC
    h.feed("up", 1, 2)
    (report,) = [n for n in h.notifier.sent if "report" in n.title]
    assert f"- all automation paused by the pause file {pause}: hands off\n" in (report.body or "")


def test_a_persons_stop_and_start_of_a_service_and_pause_files_are_notable_events(tmp_path: Path) -> None:
    """`autonomic stop web` and `autonomic start web` (audited service.stopped_on_purpose and
    service.stop_lifted by the engine that carried them out) are among the period's notable
    events, as pauses are: a service down on purpose for part of the day explains its numbers.
    They were left out; so were pause files seen and gone (pause.file, pause.file_gone)."""
    store = Store(f"sqlite:///{tmp_path / 'a.db'}")
    store.audit("person:ann", "service.stopped_on_purpose", "stopped:web", {"service": "web", "comment": "disk swap"})
    store.audit("person:bob", "service.stop_lifted", "stopped:web", {"service": "web", "comment": ""})
    store.audit("engine", "pause.file", "pause:global", {"service": None, "reason": "hands off"})
    store.audit("engine", "pause.file_gone", "pause:global", {"service": None, "reason": "hands off"})
    r = build_report(store, "daily", time.time() + 1)
    store.close()
    assert [e.text for e in r.notable] == ["web stopped on purpose by person:ann: disk swap",
                                           "web started again by person:bob",
                                           "all automation paused by a pause file: hands off",
                                           "all automation resumed: its pause file is gone"]


def test_the_command_a_report_gives_to_start_a_stopped_service_reaches_the_engines_store(tmp_path: Path) -> None:
    """The scheduled report (test_engine's Harness, its config test.yaml) says how to start a
    service a person stopped on purpose. It said ``autonomic start svc``: typed as written, that
    opens the built-in defaults' store of the folder it is typed in, not the engine's, and is
    refused there ("no service named 'svc'"). It now gives the command ``autonomic status`` and
    the engine's own messages give: ``autonomic -c <the engine's config> start svc``."""
    from test_engine import Harness

    h = Harness(tmp_path, extra={"reports": [{"period": "daily", "cron": "0 8 * * *"}]})
    h.feed("up", 1, 2)  # 2023-11-14 22:13 UTC: the schedule is first seen
    h.store.set_state("stopped:svc", {"actor": "person:ann", "comment": "disk swap", "ts": h.clock.now()},
                      actor="person:ann", event="service.stopped_on_purpose")
    h.clock.t = 1_700_035_200.0 + 60  # 2023-11-15 08:01 UTC
    h.feed("up", 1, 2)
    (report,) = [n for n in h.notifier.sent if "report" in n.title]
    assert h.config.command.startswith("autonomic -c ")
    assert (f"- svc stopped on purpose by person:ann (disk swap): down until a person starts it "
            f"({h.config.command} start svc)\n") in (report.body or "")
