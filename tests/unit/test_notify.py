"""Dispatcher routing, deduplication, retries, counters and the notifier config specs."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import threading
import time
from pathlib import Path

import pytest
from pydantic import TypeAdapter, ValidationError

from autonomic.errors import ConfigError, NotifierError
from autonomic.model import Level, Notification
from autonomic.oversight.notify import (
    RETRY_AFTER_MAX_S,
    ConsoleNotifier,
    Dispatcher,
    EmailNotifier,
    JsonlNotifier,
    NotifierSpec,
    Route,
    SlackNotifier,
    WebhookNotifier,
    build_dispatcher,
    sign,
)
from autonomic.testing import FakeNotifier

SPEC: TypeAdapter[NotifierSpec] = TypeAdapter(NotifierSpec)


def note(title: str = "disk filling", level: Level = Level.ALERT, ts: float = 1000.0,
         incident_id: str | None = "inc1") -> Notification:
    return Notification(level=level, title=title, body="92% used", ts=ts, service="api", incident_id=incident_id)


class Flaky:
    """Fails ``failures`` times, then delivers."""

    def __init__(self, name: str, failures: int) -> None:
        self.name = name
        self.failures = failures
        self.calls = 0
        self.sent: list[Notification] = []

    def send(self, notification: Notification) -> None:
        self.calls += 1
        if self.calls <= self.failures:
            raise RuntimeError("boom")
        self.sent.append(notification)


class Blocking:
    """Holds every send until ``release`` is set."""

    name = "blocking"

    def __init__(self) -> None:
        self.release = threading.Event()
        self.entered = threading.Event()
        self.sent: list[Notification] = []

    def send(self, notification: Notification) -> None:
        self.entered.set()
        self.release.wait(10)
        self.sent.append(notification)


def test_min_level_and_exact_levels_route_only_matching_notifications() -> None:
    everything, alerts_up, approvals_only = FakeNotifier(), FakeNotifier(), FakeNotifier()
    d = Dispatcher([Route(everything), Route(alerts_up, min_level=Level.ALERT),
                    Route(approvals_only, levels=frozenset({Level.APPROVAL_REQUESTED}))], synchronous=True)
    for i, level in enumerate(Level):
        d.send(note(title=f"t{i}", level=level))
    assert [n.level for n in everything.sent] == [Level.INFO, Level.ALERT, Level.APPROVAL_REQUESTED]
    assert [n.level for n in alerts_up.sent] == [Level.ALERT, Level.APPROVAL_REQUESTED]
    assert [n.level for n in approvals_only.sent] == [Level.APPROVAL_REQUESTED]
    assert d.sent == 6


def test_legacy_tuple_routes_still_mean_minimum_level() -> None:
    fake = FakeNotifier()
    d = Dispatcher([(fake, Level.ALERT)], synchronous=True)
    d.send(note(level=Level.INFO))
    d.send(note(level=Level.ALERT))
    assert [n.level for n in fake.sent] == [Level.ALERT]


def test_same_level_title_and_incident_within_dedup_window_is_sent_once() -> None:
    fake = FakeNotifier()
    d = Dispatcher([Route(fake)], synchronous=True, dedup_s=300)
    d.send(note(ts=1000))
    d.send(note(ts=1299))  # duplicate
    d.send(note(ts=1100, incident_id="inc2"))  # another incident
    d.send(note(ts=1100, level=Level.INFO))  # another level
    d.send(note(ts=1100, title="other"))  # another title
    d.send(note(ts=1300))  # the window has passed since the first send
    assert len(fake.sent) == 5
    assert d.deduplicated == 1
    assert d.stats()["deduplicated"] == 1


def test_a_second_approval_request_on_one_incident_with_the_same_title_is_sent_not_deduplicated() -> None:
    """The escalation chain's next remedy may need approval on the same incident with an action of
    the same type (title "approval needed: process on web") minutes after the first: its body (the
    new pattern's rationale) differs, so it reaches a person instead of being dropped as a repeat,
    to expire unanswered. A repeat of the very same notification is still sent once."""
    fake = FakeNotifier()
    d = Dispatcher([Route(fake)], synchronous=True, dedup_s=300)
    first = note(ts=1000, level=Level.APPROVAL_REQUESTED, title="approval needed: process on web").model_copy(
        update={"body": "pattern web-restart: restart it"})
    d.send(first)
    d.send(first.model_copy(update={"ts": 1120, "body": "pattern web-graceful: stop it gracefully"}))
    d.send(first.model_copy(update={"ts": 1130}))  # the first one again: a repeat
    assert [n.body for n in fake.sent] == ["pattern web-restart: restart it",
                                           "pattern web-graceful: stop it gracefully"]
    assert d.deduplicated == 1


def test_failing_notifier_is_retried_then_counted_and_reported_once() -> None:
    bad, good = Flaky("bad", failures=99), FakeNotifier()
    failed: list[str] = []
    d = Dispatcher([Route(bad), Route(good)], synchronous=True, max_attempts=3, backoff_s=0,
                   on_failure=failed.append)
    d.send(note())
    assert bad.calls == 3
    assert len(good.sent) == 1
    assert d.failures == {"bad": 1}
    assert failed == ["bad"]
    assert d.stats()["sent"] == 1


def test_transient_failure_recovers_within_attempts() -> None:
    flaky = Flaky("flaky", failures=2)
    d = Dispatcher([Route(flaky)], synchronous=True, max_attempts=3, backoff_s=0)
    d.send(note())
    assert len(flaky.sent) == 1
    assert d.failures == {}
    assert d.sent == 1


def test_backoff_doubles_between_attempts() -> None:
    flaky = Flaky("flaky", failures=2)
    d = Dispatcher([Route(flaky)], synchronous=True, max_attempts=3, backoff_s=0.05)
    start = time.monotonic()
    d.send(note())
    elapsed = time.monotonic() - start
    assert elapsed >= 0.05 + 0.1  # 1x then 2x the backoff
    assert len(flaky.sent) == 1


class RateLimited:
    """Refused with a Retry-After of ``asked_s`` (Slack's 429) ``refusals`` times, then delivers;
    notes when each attempt came."""

    name = "slack"

    def __init__(self, asked_s: float, refusals: int = 1) -> None:
        self.asked_s, self.refusals = asked_s, refusals
        self.attempts: list[float] = []

    def send(self, notification: Notification) -> None:
        self.attempts.append(time.monotonic())
        if len(self.attempts) <= self.refusals:
            raise NotifierError("hooks.slack.com: HTTP 429: rate_limited", retry_after_s=self.asked_s)


def test_a_receivers_retry_after_is_waited_out_before_the_next_attempt_and_a_long_one_left_for_later(
        caplog: pytest.LogCaptureFixture) -> None:
    """Slack answers a burst with 429 and Retry-After. The next attempt came after the backoff
    (0.01 s) regardless, was refused again, and so was the last: a notification lost to the
    outbox's slower retry. Now it waits as long as it was asked (0.3 s); asked for longer than
    RETRY_AFTER_MAX_S (30 s), it tries no more now (the outbox tries later) and says after how
    many attempts it gave up."""
    limited = RateLimited(0.3)
    d = Dispatcher([Route(limited)], synchronous=True, max_attempts=3, backoff_s=0.01)
    d.send(note())
    assert d.sent == 1 and len(limited.attempts) == 2
    assert limited.attempts[1] - limited.attempts[0] >= 0.3
    patient = RateLimited(RETRY_AFTER_MAX_S + 1, refusals=5)
    d = Dispatcher([Route(patient)], synchronous=True, max_attempts=3, backoff_s=0.01)
    with caplog.at_level(logging.WARNING):
        d.send(note(title="another"))
    assert len(patient.attempts) == 1 and d.failures == {"slack": 1}
    assert any("failed after 1 attempt: hooks.slack.com: HTTP 429" in r.getMessage() for r in caplog.records)


def test_send_returns_at_once_while_a_worker_is_blocked() -> None:
    blocking, fast = Blocking(), FakeNotifier()
    d = Dispatcher([Route(blocking), Route(fast)])
    try:
        start = time.monotonic()
        d.send(note(title="one"))
        assert blocking.entered.wait(5)
        d.send(note(title="two"))
        assert time.monotonic() - start < 0.5
        assert d.flush(timeout=0.2) is False  # the blocking worker still holds "one"
        deadline = time.monotonic() + 5
        while len(fast.sent) < 2 and time.monotonic() < deadline:
            time.sleep(0.005)
        assert [n.title for n in fast.sent] == ["one", "two"]
        blocking.release.set()
        assert d.flush(timeout=5)
        assert [n.title for n in blocking.sent] == ["one", "two"]
        assert d.sent == 4
    finally:
        blocking.release.set()
        d.close(timeout=5)


def test_full_queue_drops_and_counts() -> None:
    blocking = Blocking()
    d = Dispatcher([Route(blocking)], queue_size=2)
    try:
        d.send(note(title="held"))
        assert blocking.entered.wait(5)
        for i in range(5):
            d.send(note(title=f"n{i}"))
        assert d.dropped == 3
        assert d.stats()["dropped"] == 3
        assert d.stats()["pending"] == {"blocking": 2}
    finally:
        blocking.release.set()
        d.close(timeout=5)
    assert len(blocking.sent) == 3


def test_done_is_called_once_every_route_is_through_naming_those_that_gave_up_and_never_for_a_dropped_one() -> None:
    """The engine's outbox settles a notification on ``done``: it must come only after the last
    route delivered it or gave up on it (once), naming the routes that gave up; at once for a
    duplicate or when no route takes it; never when a route dropped it untried (closing): that one
    stays kept for the next engine. ``only`` and ``dedup=False`` are how a retry reaches just the
    routes that gave up, though it looks like the notification sent a moment ago."""
    blocking, flaky = Blocking(), Flaky("flaky", failures=2)
    d = Dispatcher([Route(blocking), Route(flaky, min_level=Level.ALERT)], max_attempts=2, backoff_s=0.0)
    calls: list[tuple[str, list[str]]] = []
    try:
        d.send(note(title="one"), done=lambda failed: calls.append(("one", failed)))
        assert blocking.entered.wait(5)
        deadline = time.monotonic() + 5
        while flaky.calls < 2 and time.monotonic() < deadline:
            time.sleep(0.005)
        assert flaky.calls == 2 and d.failures == {"flaky": 1}  # one route gave up; the other still holds it
        time.sleep(0.05)
        assert calls == []
        blocking.release.set()
        assert d.flush(timeout=5)
        assert calls == [("one", ["flaky"])]
        d.send(note(title="one"), done=lambda failed: calls.append(("duplicate", failed)))
        d.send(note(title="one"), done=lambda failed: calls.append(("retry", failed)), only=["flaky"], dedup=False)
        d.send(note(title="info only", level=Level.INFO), done=lambda failed: calls.append(("blocking only", failed)))
        assert d.flush(timeout=5)
        quiet = Dispatcher([Route(FakeNotifier(), min_level=Level.APPROVAL_REQUESTED)])
        assert not quiet.accepts(Level.ALERT) and quiet.accepts(Level.APPROVAL_REQUESTED)
        quiet.send(note(title="nobody takes it"), done=lambda failed: calls.append(("untaken", failed)))
        quiet.close(timeout=5)
        # the retry (flaky's worker) and "info only" (blocking's) finish in either order
        assert calls[:2] == [("one", ["flaky"]), ("duplicate", [])] and calls[4:] == [("untaken", [])]
        assert sorted(calls[2:4]) == [("blocking only", []), ("retry", [])]
        assert [n.title for n in flaky.sent] == ["one"] and [n.title for n in blocking.sent] == ["one", "info only"]
    finally:
        blocking.release.set()
        d.close(timeout=5)
    d.send(note(title="after close"), done=lambda failed: calls.append(("dropped", failed)))
    assert d.dropped == 2 and "dropped" not in [c[0] for c in calls]


def test_close_drains_queued_notifications_then_stops_workers() -> None:
    fake = FakeNotifier()
    d = Dispatcher([Route(fake)])
    for i in range(20):
        d.send(note(title=f"n{i}"))
    d.close(timeout=5)
    assert len(fake.sent) == 20
    assert not any(w.is_alive() for w in d._workers)
    d.send(note(title="late"))
    assert d.dropped == 1


def test_sign_is_hmac_sha256_over_timestamp_dot_body() -> None:
    expected = hmac.new(b"s3cret", b"1700000000.{\"a\":1}", hashlib.sha256).hexdigest()
    assert sign("s3cret", "1700000000", b'{"a":1}') == "sha256=" + expected


def test_slack_payload_has_text_and_blocks_with_context() -> None:
    payload = SlackNotifier.payload(note())
    assert payload["text"] == "[ALERT] disk filling: 92% used"
    assert payload["blocks"][0]["text"]["text"] == "*[ALERT] disk filling*"
    assert payload["blocks"][1]["text"]["text"] == "92% used"
    assert "service: api" in payload["blocks"][2]["elements"][0]["text"]


def test_slack_payload_escapes_control_sequences_from_alert_text() -> None:
    """Titles and bodies carry text from outside (an Alertmanager annotation becomes the incident
    summary): Slack's ``<!channel>`` mentions and ``<url|label>`` links in it are shown as text,
    never acted on (Slack's rule: escape &, < and >)."""
    hostile = "db down <!channel> see <https://evil.example/approve|the runbook> & retry"
    n = Notification(level=Level.APPROVAL_REQUESTED, title=f"approval needed: {hostile}", body=hostile,
                     ts=1000.0, service="api<!here>", incident_id="inc1")
    payload = SlackNotifier.payload(n)
    texts = [payload["text"], payload["blocks"][0]["text"]["text"], payload["blocks"][1]["text"]["text"],
             payload["blocks"][2]["elements"][0]["text"]]
    for text in texts:
        assert "<" not in text and ">" not in text
    assert "&lt;!channel&gt;" in payload["blocks"][1]["text"]["text"]
    assert "&amp; retry" in payload["text"]
    assert SlackNotifier.payload(note())["blocks"][0]["text"]["text"] == "*[ALERT] disk filling*"


def test_slack_payload_keeps_within_slacks_limits_however_long_the_title_service_and_body() -> None:
    """An incident's title is its alert's summary (or description: paragraphs of it), the service
    an alert's label: Slack refuses the whole message (HTTP 400, ``invalid_blocks``) when one
    section's or context's text passes 3,000 characters, so such a page was never delivered.
    Each is cut with an ellipsis (never inside an escaped ``&amp;``), and the plain ``text``
    within Slack's 40,000."""
    title = "web: " + "connection pool & queue saturated; " * 400  # ~14,000 characters, escaped longer
    n = Notification(level=Level.ALERT, title=title, body="x" * 60_000, ts=1000.0, service="s" * 5000,
                     incident_id="inc1")
    payload = SlackNotifier.payload(n)
    texts = [b["text"]["text"] for b in payload["blocks"] if "text" in b]
    texts += [e["text"] for b in payload["blocks"] for e in b.get("elements", [])]
    assert len(texts) == 3 and all(0 < len(t) <= 3000 for t in texts), [len(t) for t in texts]
    head = payload["blocks"][0]["text"]["text"]
    assert head.startswith("*[ALERT] web: connection pool &amp; queue") and head.endswith("…*")
    assert not re.search(r"&[a-z]*…\*$", head)  # no entity cut in two
    assert payload["blocks"][2]["elements"][0]["text"].endswith(" · incident: inc1 · 1970-01-01 00:16:40 UTC")
    assert 0 < len(payload["text"]) <= 40_000 and payload["text"].startswith("[ALERT] web: connection pool")


def test_slack_and_webhook_repr_hide_the_url() -> None:
    url = "https://hooks.example.com/services/T000/B000/SECRETTOKEN"
    assert "SECRETTOKEN" not in repr(SlackNotifier(url))
    assert "SECRETTOKEN" not in repr(WebhookNotifier(url))


def test_email_subject_from_a_multi_line_title_is_one_line_and_adds_no_header() -> None:
    """An alert's summary written as a YAML block (``summary: |``) ends in a newline, and the
    incident headline carries it into the title: the mail is still built (a header may not hold
    a line break), on one subject line, with no header smuggled in."""
    mail = EmailNotifier("localhost", 2525, sender="autonomic@example.com", to=["a@example.com"])
    msg = mail.message(note(title="web: disk filling\nBcc: someone@example.com\n"))
    assert msg["Subject"] == "[autonomic] ALERT web: disk filling Bcc: someone@example.com"
    assert msg["Bcc"] is None and msg.get_all("Subject") == [msg["Subject"]]


def test_email_message_subject_recipients_and_body() -> None:
    mail = EmailNotifier("localhost", 2525, sender="autonomic@example.com", to=["a@example.com", "b@example.com"])
    msg = mail.message(note())
    assert msg["Subject"] == "[autonomic] ALERT disk filling"
    assert msg["To"] == "a@example.com, b@example.com"
    assert "92% used" in msg.get_content()
    assert "incident: inc1" in msg.get_content()


def test_an_html_report_by_email_is_an_html_part_with_a_plain_text_one_not_markup_shown_as_text() -> None:
    """A report schedule with ``format: html`` delivers a whole HTML page as the body: the mail
    carries it as text/html (what a mail client draws), with a plain-text part beside it."""
    from autonomic.oversight.reports import Report, render_html

    report = Report(period="daily", start=0.0, end=86_400.0, interventions=[], interventions_total=0, succeeded=0,
                    finished=0, success_rate=None, rollbacks=0, incidents_opened=3, incidents_resolved=2,
                    incidents_prevented=0, mttr_s=90.0, escalations=0, top_services=[], notable=[], action_items=[])
    mail = EmailNotifier("localhost", 2525, sender="autonomic@example.com", to=["a@example.com"])
    msg = mail.message(Notification(level=Level.INFO, ts=86_400.0, title="autonomic daily report",
                                    body=render_html(report)))
    html_part = msg.get_body(preferencelist=("html",))
    assert html_part is not None and "<h2>Summary</h2>" in html_part.get_content()
    text_part = msg.get_body(preferencelist=("plain",))
    assert text_part is not None
    assert "<" not in text_part.get_content() and "Incidents opened" in text_part.get_content()


def test_an_html_report_to_slack_or_the_console_is_its_text_not_its_markup(caplog: pytest.LogCaptureFixture) -> None:
    """Slack and a log line draw no HTML: a report scheduled with ``format: html`` and routed
    there is sent as the page's text (it used to post the page's markup, styles and all)."""
    from autonomic.oversight.reports import Report, render_html

    report = Report(period="daily", start=0.0, end=86_400.0, interventions=[], interventions_total=0, succeeded=0,
                    finished=0, success_rate=None, rollbacks=0, incidents_opened=3, incidents_resolved=2,
                    incidents_prevented=0, mttr_s=90.0, escalations=0, top_services=[], notable=[], action_items=[])
    n = Notification(level=Level.INFO, ts=86_400.0, title="autonomic daily report", body=render_html(report))
    blocks = SlackNotifier.payload(n)["blocks"]
    body = blocks[1]["text"]["text"]
    assert "Incidents opened" in body and "&lt;" not in body and "<style" not in body
    with caplog.at_level(logging.INFO, logger="autonomic.notify"):
        ConsoleNotifier().send(n)
    assert "Incidents opened" in caplog.text and "<h2>" not in caplog.text and "DOCTYPE" not in caplog.text


def test_specs_parse_each_type_as_a_discriminated_union() -> None:
    assert SPEC.validate_python({"type": "console"}).type == "console"
    assert SPEC.validate_python({"type": "jsonl", "path": "n.jsonl", "min_level": "alert"}).min_level == Level.ALERT
    slack = SPEC.validate_python({"type": "slack", "url_env": "SLACK_URL", "levels": ["approval_requested"]})
    assert slack.accepts() == frozenset({Level.APPROVAL_REQUESTED})
    hook = SPEC.validate_python({"type": "webhook", "url": "http://127.0.0.1:9/x", "secret_env": "HOOK_SECRET"})
    assert hook.accepts() == frozenset(Level)
    mail = SPEC.validate_python({"type": "email", "host": "smtp", "sender": "a@b.c", "to": ["x@y.z"],
                                 "min_level": "alert"})
    assert mail.accepts() == frozenset({Level.ALERT, Level.APPROVAL_REQUESTED})


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"type": "pager"}, "type"),
        ({"type": "jsonl"}, "path"),
        ({"type": "console", "path": "x"}, "path"),
        ({"type": "webhook", "url": "ftp://example.com"}, "url"),
        ({"type": "webhook", "url": "http://h", "secret": "inline"}, "secret"),
        ({"type": "slack"}, "url"),
        ({"type": "slack", "url": "https://h/x", "url_env": "X"}, "url"),
        ({"type": "email", "host": "h", "sender": "a@b.c", "to": []}, "to"),
        ({"type": "email", "host": "h", "sender": "a@b.c", "to": ["x@y.z"], "username_env": "U"}, "password_env"),
        # a login without TLS to another host: the password would cross the network in clear
        ({"type": "email", "host": "smtp.example", "sender": "a@b.c", "to": ["x@y.z"], "username_env": "U",
          "password_env": "P"}, "starttls"),
        ({"type": "console", "levels": ["alert"], "min_level": "alert"}, "levels"),
        ({"type": "console", "levels": ["loud"]}, "levels"),
    ],
)
def test_bad_specs_are_rejected_naming_the_field(data: dict[str, object], field: str) -> None:
    with pytest.raises(ValidationError) as err:
        SPEC.validate_python(data)
    assert field in str(err.value)


def test_an_smtp_login_is_taken_without_starttls_only_on_loopback() -> None:
    """The SMTP password goes over TLS (``starttls: true``), or only to this machine's own relay;
    an email notifier without credentials needs no TLS (a relay that takes mail from the network)."""
    login = {"type": "email", "sender": "a@b.c", "to": ["x@y.z"], "username_env": "U", "password_env": "P"}
    for host in ("127.0.0.1", "localhost", "::1"):
        assert SPEC.validate_python({**login, "host": host}).host == host
    assert SPEC.validate_python({**login, "host": "smtp.example", "starttls": True}).starttls
    assert SPEC.validate_python({"type": "email", "host": "smtp.example", "sender": "a@b.c", "to": ["x@y.z"]})
    with pytest.raises(ValidationError, match="starttls: .*password .* in clear"):
        SPEC.validate_python({**login, "host": "smtp.example"})


def test_build_dispatcher_resolves_paths_names_duplicates_and_routes(tmp_path: Path) -> None:
    specs = [SPEC.validate_python(d) for d in (
        {"type": "console"},
        {"type": "jsonl", "path": "out/a.jsonl", "levels": ["alert"]},
        {"type": "jsonl", "path": str(tmp_path / "b.jsonl")},
    )]
    d = build_dispatcher(specs, tmp_path, synchronous=True)
    assert [r.label for r in d.routes] == ["console", "jsonl", "jsonl-2"]
    assert isinstance(d.routes[0].notifier, ConsoleNotifier)
    first = d.routes[1].notifier
    assert isinstance(first, JsonlNotifier) and first.path == tmp_path / "out/a.jsonl"
    d.send(note(level=Level.INFO))
    d.send(note(level=Level.ALERT))
    assert len((tmp_path / "out/a.jsonl").read_text().splitlines()) == 1
    assert len((tmp_path / "b.jsonl").read_text().splitlines()) == 2


def test_build_dispatcher_needs_the_named_secret_in_the_environment(monkeypatch: pytest.MonkeyPatch,
                                                                   tmp_path: Path) -> None:
    monkeypatch.delenv("AUTONOMIC_TEST_SECRET", raising=False)
    spec = SPEC.validate_python({"type": "webhook", "url": "http://127.0.0.1:9/",
                                 "secret_env": "AUTONOMIC_TEST_SECRET"})
    with pytest.raises(ConfigError, match="secret_env: environment variable AUTONOMIC_TEST_SECRET is not set"):
        build_dispatcher([spec], tmp_path, synchronous=True)
    monkeypatch.setenv("AUTONOMIC_TEST_SECRET", "x")
    assert build_dispatcher([spec], tmp_path, synchronous=True).routes[0].label == "webhook"


def _lines(path: Path) -> list[str]:
    return [json.loads(line)["title"] for line in path.read_text().splitlines()]


def test_the_jsonl_file_moved_by_logrotate_between_writes_is_left_alone_and_a_new_one_started(
        tmp_path: Path) -> None:
    """logrotate's default (rename, then the writer starts a new file at the path): the lines
    after the move go to a new file at the configured path, none into the moved one."""
    path = tmp_path / "notifications.jsonl"
    notifier = JsonlNotifier(path)
    notifier.send(note("one"))
    notifier.send(note("two"))
    path.rename(tmp_path / "notifications.jsonl.1")
    notifier.send(note("three"))
    assert _lines(tmp_path / "notifications.jsonl.1") == ["one", "two"]
    assert _lines(path) == ["three"]
    path.unlink()  # removed outright
    notifier.send(note("four"))
    assert _lines(path) == ["four"]


def test_the_jsonl_file_rotates_by_size_keeping_the_backups_asked_for(tmp_path: Path) -> None:
    """With max_bytes, a line that would take the file past it first moves the file to
    ``.1`` (``.1`` to ``.2``, ...), keeping ``backups`` old files; no line is ever split, and
    every line written is in exactly one file until the oldest backup is dropped."""
    path = tmp_path / "n.jsonl"
    one_line = len(json.dumps(note("x00").model_dump(mode="json"), sort_keys=True)) + 1  # the same for x01...
    notifier = JsonlNotifier(path, max_bytes=3 * one_line, backups=2)
    for i in range(10):
        notifier.send(note(f"x{i:02d}"))
    assert _lines(path) == ["x09"]
    assert _lines(tmp_path / "n.jsonl.1") == ["x06", "x07", "x08"]
    assert _lines(tmp_path / "n.jsonl.2") == ["x03", "x04", "x05"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["n.jsonl", "n.jsonl.1", "n.jsonl.2"]
    for p in tmp_path.iterdir():
        assert p.stat().st_size <= 3 * one_line


def test_a_line_longer_than_max_bytes_is_written_whole_in_a_file_of_its_own(tmp_path: Path) -> None:
    path = tmp_path / "n.jsonl"
    notifier = JsonlNotifier(path, max_bytes=50, backups=1)
    notifier.send(note("first"))
    notifier.send(note("second"))
    assert _lines(tmp_path / "n.jsonl.1") == ["first"] and _lines(path) == ["second"]


def test_jsonl_rotation_is_read_from_the_config_and_bad_values_name_the_field(tmp_path: Path) -> None:
    spec = SPEC.validate_python({"type": "jsonl", "path": "n.jsonl", "max_bytes": 10_000_000, "backups": 3})
    d = build_dispatcher([spec], tmp_path, synchronous=True)
    notifier = d.routes[0].notifier
    assert isinstance(notifier, JsonlNotifier) and (notifier.max_bytes, notifier.backups) == (10_000_000, 3)
    assert SPEC.validate_python({"type": "jsonl", "path": "n.jsonl", "max_bytes": 1000}).backups == 5
    for data, field in [({"max_bytes": 0}, "max_bytes"), ({"max_bytes": "10MB"}, "max_bytes"),
                        ({"max_bytes": 1000, "backups": 0}, "backups"), ({"backups": 3}, "backups")]:
        with pytest.raises(ValidationError) as err:
            SPEC.validate_python({"type": "jsonl", "path": "n.jsonl", **data})
        assert field in str(err.value), (data, str(err.value))


@pytest.mark.parametrize(("attempts", "said"), [(1, "after 1 attempt:"), (2, "after 2 attempts:")])
def test_a_notifier_given_up_on_is_logged_with_its_attempts_in_words(caplog: pytest.LogCaptureFixture,
                                                                      attempts: int, said: str) -> None:
    d = Dispatcher([Route(Flaky("bad", failures=99))], synchronous=True, max_attempts=attempts, backoff_s=0)
    with caplog.at_level(logging.WARNING, logger="autonomic.notify"):
        d.send(note())
    [given_up] = [r.getMessage() for r in caplog.records if r.getMessage().startswith("notifier bad failed")]
    assert given_up.startswith(f"notifier bad failed {said}")  # a WARNING: the first failure of an outage
