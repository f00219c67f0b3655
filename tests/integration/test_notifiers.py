"""Notifiers against real servers on 127.0.0.1: an HTTP server for Slack and the signed
webhook, aiosmtpd for email; failing and hanging receivers never hold up the others."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import logging
import re
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from email import message_from_bytes
from email.policy import default as default_policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from pydantic import TypeAdapter

from autonomic.model import Level, Notification
from autonomic.oversight.notify import (
    Dispatcher,
    EmailNotifier,
    NotifierError,
    NotifierSpec,
    Route,
    SlackNotifier,
    WebhookNotifier,
    build_dispatcher,
)

SECRET = "test-hook-secret"


@dataclass
class Receiver:
    """What a test HTTP server got, and how it answers."""

    status: int = 200
    hold: threading.Event | None = None  # when set, each request waits for this event first
    requests: list[tuple[str, dict[str, str], bytes]] = field(default_factory=list)
    arrived: threading.Event = field(default_factory=threading.Event)
    body: bytes = b""  # the answer's body (a refusal's first line is its reason in the error)
    trickle_s: float = 0.0  # when set, the body is sent a byte at a time, this long apart
    headers: dict[str, str] = field(default_factory=dict)  # more headers of the answer


@contextlib.contextmanager
def http_server(receiver: Receiver) -> Iterator[str]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            receiver.requests.append((self.path, dict(self.headers.items()), body))
            receiver.arrived.set()
            if receiver.hold is not None:
                receiver.hold.wait(10)
            self.send_response(receiver.status)
            self.send_header("Content-Length", str(len(receiver.body)))
            for name, value in receiver.headers.items():
                self.send_header(name, value)
            self.end_headers()
            if not receiver.trickle_s:
                self.wfile.write(receiver.body)
                return
            with contextlib.suppress(OSError):  # the client may hang up before the end
                for i in range(len(receiver.body)):
                    self.wfile.write(receiver.body[i:i + 1])
                    self.wfile.flush()
                    time.sleep(receiver.trickle_s)

        def log_message(self, *_: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        if receiver.hold is not None:
            receiver.hold.set()
        server.shutdown()
        server.server_close()


class Mailbox:
    def __init__(self) -> None:
        self.envelopes: list[Any] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        self.envelopes.append(envelope)
        return "250 Message accepted for delivery"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def smtp() -> Iterator[tuple[Mailbox, int]]:
    box = Mailbox()
    port = free_port()
    controller = Controller(box, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield box, port
    finally:
        controller.stop()


def alert(title: str = "api is down", level: Level = Level.ALERT) -> Notification:
    return Notification(level=level, title=title, body="probe failed 3 times", ts=time.time(), service="api",
                        incident_id="abcdef0123456789")


def wait_for(predicate: Any, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return bool(predicate())


def test_slack_webhook_receives_text_and_blocks() -> None:
    rx = Receiver()
    with http_server(rx) as base:
        SlackNotifier(base + "/services/T0/B0/token").send(alert())
    path, headers, body = rx.requests[0]
    assert path == "/services/T0/B0/token"
    assert headers["Content-Type"] == "application/json"
    payload = json.loads(body)
    assert payload["text"] == "[ALERT] api is down: probe failed 3 times"
    assert payload["blocks"][0]["type"] == "section"


def test_webhook_is_signed_with_hmac_over_timestamp_and_body(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUTONOMIC_HOOK_SECRET", SECRET)
    rx = Receiver()
    with http_server(rx) as base:
        WebhookNotifier(base + "/hook", secret_env="AUTONOMIC_HOOK_SECRET").send(alert())
    _, headers, body = rx.requests[0]
    timestamp = headers["X-Autonomic-Timestamp"]
    assert abs(int(timestamp) - time.time()) < 60
    expected = hmac.new(SECRET.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(headers["X-Autonomic-Signature"], "sha256=" + expected)
    wrong = hmac.new(b"other", timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    assert headers["X-Autonomic-Signature"] != "sha256=" + wrong
    sent = json.loads(body)
    assert sent["title"] == "api is down" and sent["level"] == "alert" and sent["incident_id"] == "abcdef0123456789"


def test_unsigned_webhook_sends_timestamp_but_no_signature() -> None:
    rx = Receiver()
    with http_server(rx) as base:
        WebhookNotifier(base + "/hook").send(alert())
    _, headers, _ = rx.requests[0]
    assert "X-Autonomic-Timestamp" in headers
    assert "X-Autonomic-Signature" not in headers


def test_email_arrives_with_subject_recipients_and_body(smtp: tuple[Mailbox, int]) -> None:
    box, port = smtp
    EmailNotifier("127.0.0.1", port, sender="autonomic@example.com",
                  to=["ops@example.com", "oncall@example.com"]).send(alert(level=Level.APPROVAL_REQUESTED))
    assert len(box.envelopes) == 1
    envelope = box.envelopes[0]
    assert envelope.mail_from == "autonomic@example.com"
    assert envelope.rcpt_tos == ["ops@example.com", "oncall@example.com"]
    msg = message_from_bytes(envelope.content, policy=default_policy)
    assert msg["Subject"] == "[autonomic] APPROVAL_REQUESTED api is down"
    text = msg.get_body().get_content()  # type: ignore[union-attr]
    assert "probe failed 3 times" in text and "service: api" in text


def test_http_error_names_the_host_never_the_tokened_url() -> None:
    rx = Receiver(status=403)
    with http_server(rx) as base, pytest.raises(NotifierError) as err:
        SlackNotifier(base + "/services/T0/B0/SECRETTOKEN").send(alert())
    assert "HTTP 403" in str(err.value)
    assert "SECRETTOKEN" not in str(err.value)
    port = free_port()  # nothing listens here
    with pytest.raises(NotifierError) as err:
        SlackNotifier(f"http://127.0.0.1:{port}/services/SECRETTOKEN", timeout_s=2).send(alert())
    assert "SECRETTOKEN" not in str(err.value) and f"127.0.0.1:{port}" in str(err.value)


@pytest.mark.parametrize(("status", "retry_after", "asked"), [
    (429, "7", 7.0), (503, "http-date", 60.0), (429, "soon", None), (500, "7", None)])
def test_a_rate_limited_refusal_says_when_the_receiver_asks_to_be_tried_again(
        status: int, retry_after: str, asked: float | None) -> None:
    """Slack answers a burst with 429 and Retry-After (seconds; an HTTP date is allowed too):
    the error carries it (the dispatcher waits it out, see test_notify) and says it. An unreadable
    one, or one on a status that is not about load, is no request to wait."""
    import email.utils

    value = email.utils.formatdate(time.time() + 60, usegmt=True) if retry_after == "http-date" else retry_after
    rx = Receiver(status=status, body=b"rate_limited", headers={"Retry-After": value})
    with http_server(rx) as base, pytest.raises(NotifierError) as err:
        SlackNotifier(base + "/services/T0/B0/SECRETTOKEN").send(alert())
    if asked is None:
        assert err.value.retry_after_s is None and "tried again" not in str(err.value)
        return
    assert err.value.retry_after_s == pytest.approx(asked, abs=2)
    assert str(err.value).startswith(f"127.0.0.1:{base.rsplit(':', 1)[1]}: HTTP {status}: rate_limited (it asks to be "
                                     "tried again in ")


def test_a_refusal_says_the_receivers_reason_and_a_redirect_where_it_pointed_never_the_tokened_url() -> None:
    """Real HTTP servers refuse as Slack does (404 ``no_service``: the webhook was removed), or
    quote the request's path back, or redirect: the error (what the log and the person at 3 a.m.
    read) says the receiver's reason, or where a redirect pointed (not followed), and never the
    URL's token. Before: "HTTP 404", "HTTP 301", nothing to act on."""
    token = "T0/B0/SECRETTOKEN"
    cases = [
        (Receiver(status=404, body=b"no_service"), "HTTP 404: no_service"),
        (Receiver(status=502, body=b"<html><head><title>502 Bad Gateway</title></head><body><center><h1>502 Bad "
                                   b"Gateway</h1></center><hr><center>nginx</center></body></html>"),
         "HTTP 502: 502 Bad Gateway"),
        (Receiver(status=400, body=f"invalid_payload at /services/{token}?x\n<html>more".encode()),
         "HTTP 400: invalid_payload at /***?x"),
    ]
    for rx, said in cases:
        with http_server(rx) as base, pytest.raises(NotifierError) as err:
            SlackNotifier(f"{base}/services/{token}", timeout_s=2).send(alert())
        assert str(err.value) == f"{base.removeprefix('http://')}: {said}"
        assert "SECRETTOKEN" not in str(err.value)

    class Moved(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            self.send_response(301)
            self.send_header("Location", "https://hooks.example.net:8443/new/SECRETTOKEN")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *_: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Moved)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with pytest.raises(NotifierError) as err:
            WebhookNotifier(f"http://127.0.0.1:{server.server_address[1]}/hook", timeout_s=2).send(alert())
    finally:
        server.shutdown()
        server.server_close()
    assert str(err.value).endswith(": HTTP 301 (a redirect to hooks.example.net:8443, not followed)")


def test_failing_receiver_is_retried_then_counted_while_others_deliver(
    smtp: tuple[Mailbox, int], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    box, port = smtp
    monkeypatch.setenv("AUTONOMIC_HOOK_SECRET", SECRET)
    broken, slack = Receiver(status=500), Receiver()
    failed: list[str] = []
    caplog.set_level(logging.WARNING, logger="autonomic.notify")
    with http_server(broken) as bad_base, http_server(slack) as slack_base:
        specs = [TypeAdapter(NotifierSpec).validate_python(d) for d in (
            {"type": "webhook", "url": bad_base + "/hook/SECRETPATH", "secret_env": "AUTONOMIC_HOOK_SECRET"},
            {"type": "slack", "url": slack_base + "/slack"},
            {"type": "email", "host": "127.0.0.1", "port": port, "sender": "a@example.com", "to": ["o@example.com"]},
        )]
        d = build_dispatcher(specs, tmp_path, max_attempts=3, backoff_s=0.02, on_failure=failed.append)
        try:
            d.send(alert())
            assert d.flush(timeout=15)
        finally:
            d.close(timeout=5)
    assert len(broken.requests) == 3
    assert len(slack.requests) == 1
    assert len(box.envelopes) == 1
    assert d.failures == {"webhook": 1}
    assert failed == ["webhook"]
    assert d.stats()["sent"] == 2
    assert "HTTP 500" in caplog.text
    assert "SECRETPATH" not in caplog.text and SECRET not in caplog.text


def test_hanging_receiver_does_not_delay_send_or_the_other_notifiers() -> None:
    hung, slack = Receiver(hold=threading.Event()), Receiver()
    with http_server(hung) as hung_base, http_server(slack) as slack_base:
        d = Dispatcher([Route(WebhookNotifier(hung_base + "/hook", timeout_s=3), name="hung"),
                        Route(SlackNotifier(slack_base + "/slack"), name="slack")], max_attempts=1)
        try:
            d.send(alert(title="first"))
            assert hung.arrived.wait(10)  # the hanging server now holds the first request
            durations = []
            for i in range(5):
                start = time.perf_counter()
                d.send(alert(title=f"next {i}"))
                durations.append(time.perf_counter() - start)
            assert max(durations) < 0.05
            assert wait_for(lambda: len(slack.requests) == 6)
            assert len(hung.requests) == 1  # still stuck on the first
        finally:
            assert hung.hold is not None
            hung.hold.set()
            d.close(timeout=10)
    assert len(hung.requests) == 6


def test_a_receiver_trickling_its_answer_holds_a_delivery_no_longer_than_the_timeout() -> None:
    """A real HTTP server answers 200 at once, then sends its body a byte every 0.25 s (a proxy
    gone wrong, a slowloris): httpx's timeout bounds each read, not the body, so the Slack and
    webhook notifiers were held for as long as it went on (40 bytes: 10 s, and a queue behind
    it). The answer's status is what delivery needs: each returns within its 1 s timeout, delivered."""
    rx = Receiver(body=b"x" * 40, trickle_s=0.25)
    with http_server(rx) as base:
        for notifier in (SlackNotifier(base + "/slack", timeout_s=1), WebhookNotifier(base + "/hook", timeout_s=1)):
            start = time.perf_counter()
            notifier.send(alert())
            assert time.perf_counter() - start < 2.5, type(notifier).__name__
    assert len(rx.requests) == 2


def test_a_notification_in_flight_when_the_engine_is_killed_is_sent_by_the_next_engine(tmp_path: Path) -> None:
    """A real engine process (``autonomic run``) notifies a real webhook receiver that web is
    down; the receiver holds the request, and the engine is SIGKILLed while it waits. The
    notification was kept in the store's outbox before it was sent, so the engine started next
    sends it (audited ``notifications.resent``) and, once delivered, forgets it."""
    import os
    import signal
    import subprocess
    import sys

    from autonomic.knowledge import Store

    (tmp_path / "svc.py").write_text("import sys, time\ntime.sleep(0.3)\nsys.exit(3)\n")
    held = Receiver(hold=threading.Event())
    with http_server(held) as base:
        (tmp_path / "autonomic.yaml").write_text(
            "engine: {state_dir: state, interval_s: 0.5, host_metrics: false}\napi: {enabled: false}\n"
            f"notifiers:\n  - {{type: webhook, url: '{base}/hook', timeout_s: 30}}\n"
            f"services:\n  - name: web\n    actuators: {{process: {{command: [{sys.executable}, "
            f"{tmp_path / 'svc.py'}], stop_timeout_s: 2}}}}\n")
        env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
        argv = [sys.executable, "-m", "autonomic.cli", "run", "-c", str(tmp_path / "autonomic.yaml"),
                "--log-format", "text"]

        def run(log: str) -> subprocess.Popen[bytes]:
            with (tmp_path / log).open("wb") as out:
                return subprocess.Popen(argv, cwd=tmp_path, stdin=subprocess.DEVNULL, stdout=out,
                                        stderr=subprocess.STDOUT, env=env)

        first = run("first.log")
        try:
            assert held.arrived.wait(40), (tmp_path / "first.log").read_text()
            first.send_signal(signal.SIGKILL)
            first.wait(10)
        finally:
            if first.poll() is None:
                first.kill()
    sent = json.loads(held.requests[0][2])
    assert sent["title"] == "web is down: up == 0 for the last 2 samples"
    store = Store(f"sqlite:///{tmp_path / 'state' / 'autonomic.db'}")
    try:
        kept = store.states("outbox:")
        assert [v["notification"]["title"] for v in kept.values()] == [sent["title"]]
        second_receiver = Receiver()
        with http_server(second_receiver) as base2:
            config = (tmp_path / "autonomic.yaml").read_text().replace(base, base2)
            (tmp_path / "autonomic.yaml").write_text(config)
            second = run("second.log")
            try:
                assert wait_for(lambda: any(json.loads(body)["title"] == sent["title"]
                                            for _, _, body in second_receiver.requests), 40), \
                    (tmp_path / "second.log").read_text()
                assert wait_for(lambda: store.states("outbox:") == {}, 20)  # delivered: forgotten
                resent = [e for e in store.audit_events() if e.kind == "notifications.resent"]
                assert len(resent) == 1 and resent[0].data == {"count": 1, "dropped": 0, "given_up": 0}
                log = (tmp_path / "second.log").read_text()
                assert "1 notification queued by an engine that stopped before delivering it: sent now" in log
            finally:
                second.send_signal(signal.SIGTERM)
                try:
                    second.wait(20)
                except subprocess.TimeoutExpired:
                    second.kill()
    finally:
        store.close()


def _engine_over(tmp_path: Path, db: Path, notifier: Any, start: float = 1_700_000_000.0) -> Any:
    """An engine (no services) over the SQLite file ``db``, its clock at ``start``, delivering
    through ``notifier`` alone, synchronously, two quick attempts a delivery."""
    from autonomic.config import load_config_data
    from autonomic.engine import Engine
    from autonomic.knowledge import Store
    from autonomic.testing import FakeClock

    data = {"engine": {"state_dir": str(tmp_path / "state"), "host_metrics": False}, "api": {"enabled": False}}
    engine = Engine(load_config_data(data, source="t.yaml", base_dir=tmp_path), clock=FakeClock(start),
                    store=Store(f"sqlite:///{db}"), sources=[],
                    notifiers=Dispatcher([Route(notifier, name=notifier.name)], synchronous=True, max_attempts=2,
                                         backoff_s=0, dedup_s=0))
    engine.start()
    return engine


def test_a_webhook_receiver_gets_one_id_on_the_notifiers_retry_and_on_the_next_engines_resend(
        tmp_path: Path) -> None:
    """A real webhook receiver (a loopback HTTP server) answers 500 to a real engine's notification
    (both quick attempts), then 200 to the outbox's retry 30 s later; the engine dies before it
    settles that delivery, so the next engine over the same SQLite file sends it once more. All
    four requests carry one id, the outbox key's: the receiver can tell it is one page."""
    receiver = Receiver(status=500)
    db = tmp_path / "autonomic.db"
    with http_server(receiver) as base:
        first = _engine_over(tmp_path, db, WebhookNotifier(f"{base}/hook"))
        first.notify(alert())
        assert len(receiver.requests) == 2  # both quick attempts failed
        first.tick()  # settled: kept for the webhook, offered again in 30 s
        receiver.status = 200
        first.clock.advance(31)
        first.tick()  # the retry, delivered; this engine dies before the next tick settles it
        assert len(receiver.requests) == 3
        (key,) = first.store.states("outbox:")
        second = _engine_over(tmp_path, db, WebhookNotifier(f"{base}/hook"))
        try:
            assert len(receiver.requests) == 4  # the left-over sent again at the start
            second.tick()
            assert second.store.states("outbox:") == {}
        finally:
            second.shutdown()
            first.store.close()
    ids = [json.loads(body)["id"] for _, _, body in receiver.requests]
    assert ids == [key.removeprefix("outbox:")] * 4 and len(ids[0]) == 32
    assert [json.loads(body)["title"] for _, _, body in receiver.requests] == ["api is down"] * 4


def test_an_email_carries_a_message_id_made_of_the_notification_id_on_every_delivery(
        tmp_path: Path, smtp: tuple[Mailbox, int]) -> None:
    """Through a real SMTP server (aiosmtpd on loopback), a real engine's notification arrives with
    ``Message-ID: <id@autonomic>``, and the next engine's resend of it (the first died before
    settling the delivery) arrives with the same one: a mail client shows one mail."""
    box, port = smtp
    db = tmp_path / "autonomic.db"
    first = _engine_over(tmp_path, db, EmailNotifier("127.0.0.1", port, sender="ops@example", to=["oncall@example"]))
    first.notify(alert())
    (key,) = first.store.states("outbox:")
    second = _engine_over(tmp_path, db, EmailNotifier("127.0.0.1", port, sender="ops@example", to=["oncall@example"]))
    second.shutdown()
    first.store.close()
    ids = [message_from_bytes(e.content, policy=default_policy)["Message-ID"] for e in box.envelopes]
    assert ids == [f"<{key.removeprefix('outbox:')}@autonomic>"] * 2


@contextlib.contextmanager
def slack_down(tmp_path: Path) -> Iterator[tuple[Any, Receiver]]:
    """A real engine whose one notifier, Slack (a loopback server answering 503), gave up on two
    notifications: one made 90 s ago, one 10 s ago, each offered again in 30 s. The config file
    ``autonomic.yaml`` names the same state_dir, so the CLI reads the same store."""
    (tmp_path / "autonomic.yaml").write_text(f"engine: {{state_dir: {tmp_path / 'state'}, host_metrics: false}}\n")
    (tmp_path / "state").mkdir()
    slack = Receiver(status=503)
    with http_server(slack) as base:
        engine = _engine_over(tmp_path, tmp_path / "state" / "autonomic.db", SlackNotifier(f"{base}/T0/B0/secret"),
                              start=time.time() - 90)
        try:
            engine.notify(alert("api is down"))
            engine.clock.advance(80)
            engine.notify(alert("db is down"))
            engine.tick()  # both settled: kept for slack, offered again at now + 20 s
            yield engine, slack
        finally:
            engine.shutdown()


def test_status_says_how_many_notifications_wait_since_when_which_notifiers_fail_and_the_next_retry(
        tmp_path: Path) -> None:
    """Slack is down (a real loopback server answering 503 to a real engine): ``autonomic status``,
    reading the store as any host can, says two notifications wait, the oldest made 1.5 min ago,
    slack failing for both, and when they are tried again; ``--json`` has it as
    ``notifications_pending``. Once delivered, neither says anything."""
    from typer.testing import CliRunner

    from autonomic.cli import app

    with slack_down(tmp_path) as (engine, slack):
        shown = CliRunner().invoke(app, ["status", "-c", str(tmp_path / "autonomic.yaml")]).stdout
        assert re.search(r"UNSENT 2 notifications waiting to be delivered, the oldest made 1\.[5-9] min ago; "
                         r"failing: slack \(2\); next retry in (1?[0-9]|20) s", shown), shown
        as_json = CliRunner().invoke(app, ["status", "-c", str(tmp_path / "autonomic.yaml"), "--json"]).stdout
        pending = json.loads(as_json)["notifications_pending"]
        assert (pending["count"], pending["failing"]) == (2, {"slack": 2})
        assert pending["oldest_at"] == engine.clock.now() - 80 and pending["next_retry_at"] == engine.clock.now() + 30
        assert 89 <= pending["oldest_s"] < 120
        slack.status = 200
        engine.clock.advance(31)
        engine.tick()  # offered again: delivered
        engine.tick()  # settled: forgotten
        assert "UNSENT" not in CliRunner().invoke(app, ["status", "-c", str(tmp_path / "autonomic.yaml")]).stdout
        as_json = CliRunner().invoke(app, ["status", "-c", str(tmp_path / "autonomic.yaml"), "--json"]).stdout
        assert json.loads(as_json)["notifications_pending"] == {"count": 0, "oldest_at": None, "oldest_s": None,
                                                                "failing": {}, "next_retry_at": None}


def test_the_apis_overview_and_metrics_show_the_notifications_waiting(tmp_path: Path) -> None:
    """With Slack down (as above), ``GET /api/v1/overview`` has ``notifications_pending`` and
    ``GET /metrics`` the gauges ``autonomic_notifications_pending`` and
    ``autonomic_notifications_pending_oldest_seconds``, read from the store: an API with no
    engine of its own (a replica that does not lead) serves the same."""
    from fastapi.testclient import TestClient

    from autonomic.config import load_config
    from autonomic.knowledge import Store
    from autonomic.oversight.api import ApiContext, create_app
    from autonomic.oversight.auth import create_token
    from autonomic.testing import FakeClock

    with slack_down(tmp_path) as (engine, _):
        store = Store(f"sqlite:///{tmp_path / 'state' / 'autonomic.db'}")
        try:
            token = create_token(store, "viewer", "viewer")
            ctx = ApiContext(store=store, config=load_config(tmp_path / "autonomic.yaml"),
                             clock=FakeClock(engine.clock.now()), read_cache_s=0)
            with TestClient(create_app(ctx)) as client:
                overview = client.get("/api/v1/overview", headers={"Authorization": f"Bearer {token}"}).json()
                metrics = client.get("/metrics").text.splitlines()
        finally:
            store.close()
    assert overview["notifications_pending"] == {"count": 2, "oldest_at": engine.clock.now() - 80, "oldest_s": 80.0,
                                                 "failing": {"slack": 2}, "next_retry_at": engine.clock.now() + 30}
    assert "autonomic_notifications_pending 2.0" in metrics
    assert "autonomic_notifications_pending_oldest_seconds 80.0" in metrics


def test_an_outage_logs_one_warning_then_debug_a_reminder_every_half_hour_and_one_info_on_recovery(
        caplog: pytest.LogCaptureFixture) -> None:
    """Slack (a real loopback server, its URL holding a token) answers 503 through an outage of
    31 minutes: the first failed delivery is a WARNING naming the host, what failed and when it is
    tried again; the next ones are DEBUG; half an hour in, one WARNING says it still fails; the
    first delivery after is one INFO line with the failures and the span. No line holds the token.

    Before: every failed delivery logged a WARNING per quick attempt and an ERROR."""
    token = "T0SECRET/B0SECRET/xoxb-secret-token"
    slack = Receiver(status=503)
    clock = [1000.0]
    with http_server(slack) as base:
        dispatcher = Dispatcher([Route(SlackNotifier(f"{base}/services/{token}?key=also-a-secret"), name="slack")],
                                synchronous=True, max_attempts=2, backoff_s=0, dedup_s=0,
                                retry_note="offered to it again in 30 s", now=lambda: clock[0])
        caplog.set_level(logging.DEBUG, logger="autonomic.notify")

        def loud() -> list[str]:
            lines = [(r.levelname, r.getMessage()) for r in caplog.records if r.name == "autonomic.notify"]
            caplog.clear()
            assert not any(token in m or "SECRET" in m or "also-a-secret" in m for _, m in lines), lines
            return [f"{level} {message}" for level, message in lines if level != "DEBUG"]

        dispatcher.send(alert("first"))
        host = base.removeprefix("http://")
        assert loud() == [f"WARNING notifier slack: attempt 1 of 2 failed ({host}: HTTP 503); retrying in 0.0 s",
                          f"WARNING notifier slack failed after 2 attempts: {host}: HTTP 503; offered to it again in "
                          "30 s; later failures are logged at DEBUG until it delivers again"]
        for minute in range(1, 30):
            clock[0] += 60
            dispatcher.send(alert(f"minute {minute}"))
        assert loud() == []  # DEBUG only, 29 deliveries failed
        clock[0] += 60
        dispatcher.send(alert("half an hour in"))
        assert loud() == [f"WARNING notifier slack still failing: 31 failures over 30.0 min (the last after 2 "
                          f"attempts: {host}: HTTP 503)"]
        slack.status = 200
        clock[0] += 60
        dispatcher.send(alert("back"))
        assert loud() == ["INFO notifier slack: delivered again after 31 failures over 31.0 min"]
        dispatcher.send(alert("as usual"))
        assert loud() == []
        slack.status = 503
        dispatcher.send(alert("a new outage"))
        assert [line.split(":")[0] for line in loud()] == ["WARNING notifier slack", "WARNING notifier slack failed "
                                                           "after 2 attempts"]


def test_the_engines_first_warning_of_an_outage_says_when_the_outbox_tries_again(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """A real engine built from its config (a Slack notifier, its URL from the environment) tells,
    in the first WARNING of an outage, when what the notifier did not take is tried again, by its
    own ``engine.notify_retry_for_s``."""
    from autonomic.config import load_config_data
    from autonomic.engine import Engine
    from autonomic.knowledge import Store
    from autonomic.testing import FakeClock

    with http_server(Receiver(status=503)) as base:
        monkeypatch.setenv("SLACK_URL", f"{base}/services/T0/B0/secret-token-value")
        data = {"engine": {"state_dir": str(tmp_path / "state"), "host_metrics": False, "notify_retry_for_s": 7200},
                "api": {"enabled": False}, "notifiers": [{"type": "slack", "url_env": "SLACK_URL"}]}
        engine = Engine(load_config_data(data, source="t.yaml", base_dir=tmp_path), clock=FakeClock(1_700_000_000.0),
                        store=Store("sqlite://"), sources=[])
        caplog.set_level(logging.INFO, logger="autonomic.notify")
        try:
            engine.notifiers.max_attempts, engine.notifiers.backoff_s = 1, 0
            engine.start()
            engine.notify(alert())
            assert engine.notifiers.flush(10)
        finally:
            engine.shutdown()
    (first,) = [r.getMessage() for r in caplog.records if r.name == "autonomic.notify" and r.levelno >= logging.WARNING]
    assert first.endswith("HTTP 503; what it did not take is offered to it again in 30 s, then less often (at most "
                          "10.0 min apart) until 2.0 h after it was made; later failures are logged at DEBUG until "
                          "it delivers again"), first


def test_an_email_outage_logs_no_smtp_password(
        smtp: tuple[Mailbox, int], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """A real SMTP server (aiosmtpd on loopback) that offers no AUTH refuses the notifier's login
    every time: the outage's lines, at every level, name the server and the error, never the user
    or the password."""
    _, port = smtp
    monkeypatch.setenv("SMTP_USER", "mailer-user-name")
    monkeypatch.setenv("SMTP_PASSWORD", "smtp-password-value")
    email = EmailNotifier("127.0.0.1", port, sender="ops@example", to=["oncall@example"], username_env="SMTP_USER",
                          password_env="SMTP_PASSWORD")
    dispatcher = Dispatcher([Route(email, name="email")], synchronous=True, max_attempts=2, backoff_s=0, dedup_s=0)
    caplog.set_level(logging.DEBUG, logger="autonomic.notify")
    for i in range(3):
        dispatcher.send(alert(f"page {i}"))
    lines = [r.getMessage() for r in caplog.records if r.name == "autonomic.notify"]
    assert dispatcher.failures == {"email": 3} and len(lines) == 6
    assert lines[1] == (f"notifier email failed after 2 attempts: 127.0.0.1:{port}: SMTPNotSupportedError; later "
                        "failures are logged at DEBUG until it delivers again")
    assert not any("smtp-password-value" in line or "mailer-user-name" in line for line in lines), lines


def _self_signed(folder: Path, host: str = "127.0.0.1") -> tuple[Path, Path]:
    """A certificate for ``host`` signed by nobody a client trusts (the real openssl), and its key."""
    import shutil
    import subprocess

    assert shutil.which("openssl") is not None, "openssl is not installed: `make sysdeps` installs it"
    cert, key = folder / "smtp-cert.pem", folder / "smtp-key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out",
                    str(cert), "-days", "1", "-subj", f"/CN={host}", "-addext", f"subjectAltName=IP:{host}"],
                   check=True, capture_output=True)
    return cert, key


@dataclass
class TlsMailbox(Mailbox):
    """A mail server that offers STARTTLS and AUTH (only over TLS), keeping every password it is given."""

    passwords: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        Mailbox.__init__(self)

    def authenticate(self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> Any:
        from aiosmtpd.smtp import AuthResult

        self.passwords.append(auth_data.password.decode())
        return AuthResult(success=True)


@pytest.fixture
def tls_smtp(tmp_path: Path) -> Iterator[tuple[TlsMailbox, int, Path]]:
    """aiosmtpd on loopback with STARTTLS required, its certificate self-signed: (box, port, cert)."""
    import ssl

    cert, key = _self_signed(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    box = TlsMailbox()
    port = free_port()
    controller = Controller(box, hostname="127.0.0.1", port=port, tls_context=context, require_starttls=True,
                            auth_require_tls=True, authenticator=box.authenticate)
    controller.start()
    try:
        yield box, port, cert
    finally:
        controller.stop()


def test_email_over_starttls_refuses_a_server_whose_certificate_is_not_trusted(
        tls_smtp: tuple[TlsMailbox, int, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    """A real SMTP server (aiosmtpd on loopback) offering STARTTLS with a self-signed certificate
    stands for a man in the middle: the notifier stops at the TLS handshake, saying why, and the
    SMTP password never reaches it nor does the page (smtplib's own default verifies nothing)."""
    box, port, _ = tls_smtp
    monkeypatch.setenv("SMTP_USER", "mailer")
    monkeypatch.setenv("SMTP_PASSWORD", "smtp-password-value")
    email = EmailNotifier("127.0.0.1", port, sender="ops@example", to=["oncall@example"], starttls=True,
                          username_env="SMTP_USER", password_env="SMTP_PASSWORD")
    with pytest.raises(NotifierError) as err:
        email.send(alert())
    assert box.passwords == [] and box.envelopes == []
    assert str(err.value).startswith(f"127.0.0.1:{port}: SSLCertVerificationError")
    assert "certificate" in str(err.value) and "smtp-password-value" not in str(err.value)


def test_email_over_starttls_delivers_to_a_server_whose_certificate_is_trusted(
        tls_smtp: tuple[TlsMailbox, int, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    """The same real server, its certificate trusted through SSL_CERT_FILE (how a private CA is
    named to OpenSSL): the login goes over TLS and the mail arrives."""
    box, port, cert = tls_smtp
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    monkeypatch.setenv("SMTP_USER", "mailer")
    monkeypatch.setenv("SMTP_PASSWORD", "smtp-password-value")
    EmailNotifier("127.0.0.1", port, sender="ops@example", to=["oncall@example"], starttls=True,
                  username_env="SMTP_USER", password_env="SMTP_PASSWORD").send(alert())
    assert box.passwords == ["smtp-password-value"] and len(box.envelopes) == 1
