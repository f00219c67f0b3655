"""What ``autonomic demo`` prints, at 100 columns: its timeline (the audit events a real engine
records, over the fakes of tests/unit/test_engine.py: a replayed series, a fake actuator, a fake
clock, an in-memory store, printed by :class:`~autonomic.demo.scenario.Timeline`), its own lines
and autonomic's log records among them, and the summary at the end."""

from __future__ import annotations

import io
import logging
import re
import time
from pathlib import Path

from rich.console import Console
from test_engine import (
    GraphHarness,
    Harness,
    _undone_fix_that_left_it_down,
    api_fixed_then_web_down,
    api_then_web_down,
)

from autonomic.demo.scenario import SERVICES, Result, Timeline, _LogsOnTimeline, _print_summary, fit, services_line
from autonomic.model import Incident, IncidentState

WIDTH = 100


def _printed(h: Harness) -> list[dict[str, str]]:
    """Every line the timeline prints for what ``h``'s engine recorded, split in its columns
    (elapsed time, kind, service, detail: 8, 24 and 7 characters, then the rest)."""
    out = io.StringIO()
    t0 = h.store.audit_events()[0].ts
    Timeline(Console(file=out, width=WIDTH, highlight=False), t0=t0).pump(h.engine)
    lines = out.getvalue().splitlines()
    assert all(len(line) <= WIDTH for line in lines), [line for line in lines if len(line) > WIDTH]
    assert all(re.fullmatch(r" *\d+\.\ds", line[:7]) for line in lines), lines
    return [{"kind": line[8:31].strip(), "service": line[32:38].strip(), "detail": line[39:]} for line in lines]


def test_a_long_detail_is_cut_at_a_word_boundary_with_an_ellipsis_its_asides_left_out_first() -> None:
    text = ("process-down-restart matches (cause down == down; kind state matched) and recommends process "
            "restart on web (confidence 0.78)")
    cut = fit(text, 60)
    assert len(cut) <= 60 and cut.endswith("…")
    assert "(" not in cut  # the asides go first
    kept = cut.removesuffix("…")
    without_asides = "process-down-restart matches and recommends process restart on web"
    assert without_asides.startswith(kept) and without_asides[len(kept)] == " "  # whole words only
    assert fit("autonomy approve: waiting for a person to approve (from default)", 55) == (
        "autonomy approve: waiting for a person to approve")
    assert fit("short   enough\nto fit", 60) == "short enough to fit"


def test_every_line_of_a_fix_names_its_service_and_says_what_happened_in_one_line(tmp_path: Path) -> None:
    """Down, restarted, verified: before, decision.approved and action.verified had no service
    (their data names none), decision.approved and action.applied had no detail, and details were
    cut at a fixed 110 characters mid-word."""
    h = Harness(tmp_path)
    h.feed("up", 1, 3)
    h.feed("up", 0, 3)
    inc = h.incident()
    h.run_until(lambda: h.store.get(Incident, inc.id).state == IncidentState.RESOLVED, "up", 1)  # type: ignore[union-attr]
    lines = _printed(h)
    kinds = [line["kind"] for line in lines]
    assert kinds == ["incident.opened", "incident.diagnosed", "decision.approved", "action.intent",
                     "action.applied", "action.verified"]
    assert all(line["service"] == "svc" and line["detail"] for line in lines), lines
    by_kind = {line["kind"]: line["detail"] for line in lines}
    confidence = h.store.diagnoses(inc.id)[-1].confidence
    assert by_kind["decision.approved"] == f"autonomy auto, confidence {confidence:.2f} >= threshold 0.50"
    assert by_kind["incident.diagnosed"] == f"fake-down-poke: fake poke ({confidence:.2f})"
    assert by_kind["action.applied"]  # what the fake actuator said it did


def test_a_rollback_says_what_was_undone_and_a_breaker_is_shown_only_when_its_state_changes(
        tmp_path: Path) -> None:
    """A fix that made things worse, undone (a failed undo would open the breakers; this one
    only counts a failure, which is no line), then the incident closed when quiet: the close
    says its outcome. Before, breaker.updated printed twice with nothing, and incident.closed
    had neither service nor detail."""
    h = Harness(tmp_path, extra={"engine": {"interval_s": 1, "state_dir": str(tmp_path / "state"),
                                            "host_metrics": False, "settle_s": 0, "resolve_after_s": 5}})
    _undone_fix_that_left_it_down(h)
    h.feed("up", 1, 10)  # up again, quiet: the incident is closed
    assert any(e.kind == "breaker.updated" for e in h.store.audit_events())
    lines = _printed(h)
    kinds = [line["kind"] for line in lines]
    assert "breaker.updated" not in kinds
    assert kinds[-4:] == ["action.verify_failed", "action.undone", "action.rolled_back", "incident.closed"]
    assert all(line["service"] == "svc" and line["detail"] for line in lines), lines
    by_kind = {line["kind"]: line["detail"] for line in lines}
    assert by_kind["action.undone"].startswith("undone: ")
    # up stayed 0 after the undo: as the alert to a person says, without the p-value
    assert by_kind["action.rolled_back"] == "the undo did not restore health: up mean 0.00 vs 1.00"
    closed = lines[-1]["detail"]
    assert closed.startswith("down incident closed: rolled back") and "quiet for" in closed


def test_an_incident_that_closes_while_the_next_scenario_plays_says_whose_it_was(tmp_path: Path) -> None:
    """A rolled-back fix's incident closes once quiet, which may be after the next scenario has
    begun: its line names the scenario it belongs to (before, "web latency incident closed" sat
    among the novel scenario's lines as if it were one of them). Its own scenario's lines do not."""
    h = Harness(tmp_path, extra={"engine": {"interval_s": 1, "state_dir": str(tmp_path / "state"),
                                            "host_metrics": False, "settle_s": 0, "resolve_after_s": 5}})
    out = io.StringIO()
    timeline = Timeline(Console(file=out, width=WIDTH, highlight=False), t0=h.store.audit_events()[0].ts
                        if h.store.audit_events() else time.time())
    timeline.playing("bad_remedy")
    _undone_fix_that_left_it_down(h)
    timeline.owns(h.incident().id)
    timeline.pump(h.engine)
    timeline.playing("novel")
    h.feed("up", 1, 10)  # up again, quiet: the incident is closed
    timeline.pump(h.engine)
    lines = out.getvalue().splitlines()
    marked = [line for line in lines if "[scenario bad_remedy]" in line]
    assert len(marked) == 1 and "incident.closed" in marked[0], lines
    assert "[scenario bad_remedy] down incident closed: rolled back" in marked[0]  # first: never cut
    assert all(len(line) <= WIDTH for line in lines)


def test_a_breaker_that_opens_is_shown_with_its_new_state(tmp_path: Path) -> None:
    h = Harness(tmp_path, op="fail_undo")
    _undone_fix_that_left_it_down(h)
    breakers = [line["detail"] for line in _printed(h) if line["kind"] == "breaker.updated"]
    assert len(breakers) == 2
    assert breakers[0].startswith("fake actions: breaker open") and breakers[1].startswith(
        "every action: breaker open")


def test_an_incident_diagnosed_twice_says_first_what_its_decision_waits_for_then_again(tmp_path: Path) -> None:
    """The demo's bad_remedy: web's incident was diagnosed, then 6 s later diagnosed again, with
    nothing between. Its decision waited for what web depends on to settle after its action.
    The first line says so, the second says it is the same incident diagnosed again."""
    h = GraphHarness(tmp_path, settle_s=10)
    api_fixed_then_web_down(h)
    web = [line for line in _printed(h) if line["service"] == "web"]
    diagnosed = [line["detail"] for line in web if line["kind"] == "incident.diagnosed"]
    assert len(diagnosed) == 2, web
    assert re.fullmatch(r"fake-down-poke; waits \d+ s for api to settle", diagnosed[0])
    assert diagnosed[1].startswith("again: fake-down-poke: fake poke")
    assert [line["kind"] for line in web].index("decision.approved") > [line["kind"] for line in web].index(
        "incident.diagnosed")


def test_a_denied_decision_names_the_gate_that_denied_it_before_those_that_would_ask_a_person(
        tmp_path: Path) -> None:
    h = GraphHarness(tmp_path)
    api_then_web_down(h)
    [denied] = [line for line in _printed(h) if line["kind"] == "decision.denied"]
    assert denied["service"] == "web"
    assert denied["detail"].startswith("root_cause: web is impacted by api")


def test_the_demos_own_long_lines_wrap_under_their_text_and_a_url_is_never_split() -> None:
    """Before, a scenario's story ran on at column 0 on the next line (rich's wrap), and the first
    line (folder and three URLs) was one line of 130 characters."""
    out = io.StringIO()
    timeline = Timeline(Console(file=out, width=WIDTH, highlight=False), t0=time.time())
    url = "http://127.0.0.1:8470/?token=aut_" + "x" * 43
    story = ("worker holds leaked connections, up to 38: pool use grows toward 90% of its size of 50 -> pool "
             "raised 50 -> 60 by a git commit -> the leak stops under 90% of 60 -> verified -> prevented")
    timeline.say(f"scenario pool_exhaustion: {story}")
    timeline.say(f"dashboard: {url}")
    lines = out.getvalue().splitlines()
    assert all(len(line) <= WIDTH for line in lines), lines
    assert len(lines) == 4 and all(line.startswith(" " * 8) and line[8] != " " for line in lines[1:3])
    assert " ".join(line[8:].strip() for line in lines[:3]).endswith(story)
    assert lines[3].endswith(f"dashboard: {url}")


def test_autonomics_warnings_during_the_demo_are_timeline_lines_and_the_logger_is_left_as_it_was() -> None:
    """Before, they came as ``WARNING autonomic.engine: ...`` between the timeline's lines, in a
    format of their own (and on stderr), the lines of a service's log tail at column 0."""
    out = io.StringIO()
    timeline = Timeline(Console(file=out, width=WIDTH, highlight=False), t0=time.time())
    logger = logging.getLogger("autonomic")
    before = (logger.level, logger.propagate, list(logger.handlers))
    handler = _LogsOnTimeline(timeline)
    handler.start()
    try:
        logging.getLogger("autonomic.engine").warning("service web exited with code 3; the last lines of %s:\n%s",
                                                      "web.log", "demo[web] crashing (exit 3)")
        logging.getLogger("autonomic.engine").info("not shown: only warnings and errors are")
    finally:
        handler.stop()
    assert (logger.level, logger.propagate, list(logger.handlers)) == before
    lines = out.getvalue().splitlines()
    assert re.fullmatch(r" *\d+\.\ds WARNING service web exited with code 3; the last lines of web.log:", lines[0])
    assert lines[1:] == [" " * 8 + "demo[web] crashing (exit 3)"]


def test_the_summary_gives_seconds_in_one_format_and_says_what_its_totals_count() -> None:
    """Before: ``detect s``/``heal s`` columns (a rolled-back or escalated scenario "healed" in
    21.83 s), 0.79 beside 12.32, a table wider than 100 columns (its action column wrapped), and
    ``actions: 4, false interventions: 0, 132.1 s``."""
    out = io.StringIO()
    results = [Result("crash", "web", "resolved", outcome="resolved", action="process:restart", detect_s=0.79,
                      heal_s=4.6),
               Result("novel", "api", "escalated", outcome="escalated", action="process:restart (proposed)",
                      detect_s=1.96, heal_s=12.32)]
    _print_summary(Console(file=out, width=WIDTH, highlight=False), results,
                   {"actions_total": 1, "false_interventions": 0, "duration_s": 132.14})
    text = out.getvalue()
    assert all(len(line) <= WIDTH for line in text.splitlines())
    assert "detected" in text and "ended" in text and "heal" not in text
    assert "process:restart (proposed)" in text  # one row a line: 100 columns hold every column whole
    assert re.search(r"0\.8 s\s.*4\.6 s", text) and re.search(r"2\.0 s\s.*12\.3 s", text)
    assert "1 action taken; 0 false interventions (an action on a service with no fault); 132 s in all" in text


def test_the_services_and_their_urls_are_one_line_that_says_who_calls_whom() -> None:
    """Before: ``demo folder ...; services web http://..., api http://..., worker http://...``, 130
    characters, the last URL on a line of its own."""
    out = io.StringIO()
    timeline = Timeline(Console(file=out, width=WIDTH, highlight=False), t0=time.time())
    timeline.say(services_line({name: f"http://127.0.0.1:{65535 - i}" for i, name in enumerate(SERVICES)}))
    [line] = out.getvalue().splitlines()
    assert line.endswith("web http://127.0.0.1:65535 -> api http://127.0.0.1:65534 -> worker http://127.0.0.1:65533")
