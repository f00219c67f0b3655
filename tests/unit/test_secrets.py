"""Secrets never reach logs, the audit log, API answers, notifications or CLI output.

Each test puts a known secret string into one entry point (a URL in the config, a command's
environment, ...) and asserts that it appears nowhere it is shown."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import httpx
import pytest

from autonomic.config import load_config_data
from autonomic.errors import ConfigError, SourceError
from autonomic.monitor.prometheus import PrometheusScrape, PrometheusSpec
from autonomic.monitor.promquery import PromQuerySource, PromQuerySpec
from autonomic.redact import scrub, shown_url

SECRET = "s3cr3t-Pa55w0rd"
TOKEN = "t0k3n-QQQQ-7777"


def test_shown_url_hides_the_password_a_bare_user_token_and_query_values() -> None:
    assert shown_url(f"https://scraper:{SECRET}@prom.example:9090/metrics?token={TOKEN}&x=1") == \
        "https://scraper:***@prom.example:9090/metrics?token=***&x=***"
    assert shown_url(f"https://{TOKEN}@prom.example/") == "https://***@prom.example/"
    assert shown_url("http://127.0.0.1:8080/metrics") == "http://127.0.0.1:8080/metrics"
    url = f"http://u:{SECRET}@h/?k={TOKEN}"
    assert SECRET not in scrub(f"GET {url} failed; again {SECRET} and {TOKEN}", url)
    assert TOKEN not in scrub(f"GET {url} failed; again {SECRET} and {TOKEN}", url)


def _service_with(**fields: Any) -> dict[str, Any]:
    return {"services": [{"name": "web", **fields}], "builtin_patterns": False}


@pytest.mark.parametrize("service", [
    _service_with(probes=[{"url": f"ftp://probe:{SECRET}@web.example/health"}]),
    _service_with(metrics=[{"type": "prometheus", "url": f"htps://scraper:{SECRET}@web.example/metrics"}]),
    _service_with(metrics=[{"type": "promql", "url": f"ftp://prom.example/?token={SECRET}", "query": "up",
                            "metric": "up"}]),
    _service_with(actuators={"http": {"base_url": f"ftp://admin:{SECRET}@web.example"}}),
    _service_with(actuators={"docker": {"container": "web", "base_url": f"ftp://d:{SECRET}@docker.example"}}),
    _service_with(actuators={"kubernetes": {"name": "web", "api_url": f"ftp://k:{SECRET}@k8s.example"}}),
], ids=["probe", "prometheus", "promql", "http", "docker", "kubernetes"])
def test_a_config_error_about_a_url_names_the_field_but_never_echoes_a_credential(
        tmp_path: Path, service: dict[str, Any]) -> None:
    """Before: the URL validators quoted the whole URL (``got 'ftp://u:<password>@...'``) in the
    ConfigError that ``autonomic check`` and ``autonomic run`` print. After: shown as ``***``."""
    with pytest.raises(ConfigError) as err:
        load_config_data(service, source="autonomic.yaml", base_dir=tmp_path)
    text = str(err.value)
    assert "services[0]" in text and "***" in text
    assert SECRET not in text


def _failing(status: int, body: str) -> httpx.Client:
    return httpx.Client(transport=httpx.MockTransport(lambda request: httpx.Response(status, text=body)))


def _refusing() -> httpx.Client:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError(f"cannot connect to {request.url}", request=request)
    return httpx.Client(transport=httpx.MockTransport(handler))


@pytest.mark.parametrize("client", [lambda: _failing(503, "down"), lambda: _failing(200, "garbage {"), _refusing],
                         ids=["http-503", "not-prometheus-text", "refused"])
def test_a_failing_scrape_names_its_url_without_the_credentials_in_it(client: Any,
                                                                       caplog: pytest.LogCaptureFixture) -> None:
    """Before: SourceError quoted the URL whole (the engine logs it each tick: ``source
    prometheus:web: https://scraper:<password>@.../metrics?token=<token>: HTTP 503``).
    After: the password and query values are ``***``."""
    url = f"https://scraper:{SECRET}@web.example:9100/metrics?token={TOKEN}"
    scrape = PrometheusScrape("web", PrometheusSpec(url=url), client=client())
    with pytest.raises(SourceError) as err:
        scrape.collect(0.0)
    text = str(err.value)
    assert "web.example:9100/metrics" in text
    assert SECRET not in text and TOKEN not in text


@pytest.mark.parametrize("client", [lambda: _failing(503, "down"), lambda: _failing(200, "{}"), _refusing],
                         ids=["http-503", "not-a-query-answer", "refused"])
def test_a_failing_promql_query_names_its_url_without_the_credentials_in_it(client: Any) -> None:
    url = f"https://reader:{SECRET}@prom.example"
    source = PromQuerySource("web", PromQuerySpec(url=url, query="up", metric="up"), client=client())
    with pytest.raises(SourceError) as err:
        source.collect(1_700_000_000.0)
    text = str(err.value)
    assert "prom.example/api/v1/query" in text
    assert SECRET not in text


def test_the_engine_logs_a_failing_source_without_the_credentials_in_its_url(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The whole path from the config to the log line, at DEBUG."""
    from autonomic.engine import Engine
    from autonomic.knowledge import Store
    from autonomic.oversight.notify import Dispatcher

    url = f"http://scraper:{SECRET}@127.0.0.1:9/metrics?token={TOKEN}"  # port 9: nothing listens
    cfg = load_config_data({"engine": {"state_dir": str(tmp_path / "state"), "host_metrics": False},
                            "services": [{"name": "web", "metrics": [{"url": url, "timeout_s": 0.5}]}],
                            "builtin_patterns": False}, source="autonomic.yaml", base_dir=tmp_path)
    caplog.set_level(logging.DEBUG)
    engine = Engine(cfg, store=Store("sqlite://"), notifiers=Dispatcher([], synchronous=True))
    engine.start()
    engine.tick()
    engine.shutdown()
    assert "source prometheus:web" in caplog.text
    assert SECRET not in caplog.text and TOKEN not in caplog.text


_PRINT_TOKEN = ("import os, sys; t = os.environ['DEPLOY_TOKEN']; print('token is', t); "
                "sys.stderr.write('auth with ' + t + '\\n'); sys.exit(int(sys.argv[1]))")


def test_a_shell_command_that_prints_an_env_allow_secret_has_it_masked_in_the_journal(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Before: the stdout and stderr a command printed went into the action's journal (the audit
    log's ``action.applied`` event, ``explain``, the API) as they were, so a command echoing the
    token it was given through ``env_allow`` put it there. After: its value is ``***``."""
    import sys

    from autonomic.execute.shell import run_argv

    monkeypatch.setenv("DEPLOY_TOKEN", TOKEN)
    detail = run_argv([sys.executable, "-c", _PRINT_TOKEN, "0"], None, ["DEPLOY_TOKEN"], 10)
    assert detail["stdout"].strip() == "token is ***" and "***" in detail["stderr"]
    assert TOKEN not in str(detail)


def test_a_failing_shell_command_that_prints_an_env_allow_secret_has_it_masked_in_the_error(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The error (journaled, logged, sent in the ALERT notification) quotes stderr: masked too."""
    import sys

    from autonomic.errors import TerminalActuatorError
    from autonomic.execute.shell import run_argv

    monkeypatch.setenv("DEPLOY_TOKEN", TOKEN)
    with pytest.raises(TerminalActuatorError) as err:
        run_argv([sys.executable, "-c", _PRINT_TOKEN, "3"], None, ["DEPLOY_TOKEN"], 10)
    assert "exited with code 3" in str(err.value) and "auth with ***" in str(err.value)
    assert TOKEN not in str(err.value)


def test_short_env_allow_values_are_not_masked(monkeypatch: pytest.MonkeyPatch) -> None:
    """A value under 8 characters (a flag, a count) is not a credential: output keeps it."""
    import sys

    from autonomic.execute.shell import run_argv

    monkeypatch.setenv("VERBOSE", "1")
    detail = run_argv([sys.executable, "-c", "import os; print('v' + os.environ['VERBOSE'] + '1')"], None,
                      ["VERBOSE"], 10)
    assert detail["stdout"].strip() == "v11"


# --- where the API listens ------------------------------------------------------------------


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "", "10.1.2.3", "ops.example"])
def test_the_api_refuses_an_open_webhook_on_a_non_loopback_address(tmp_path: Path, host: str) -> None:
    """``webhook_open`` (alerts taken without any credential) off loopback would let anyone on the
    network send alerts the engine acts on: refused, naming the field and what to set. Without it
    the receiver wants an API token, so a non-loopback address is fine."""
    with pytest.raises(ConfigError) as err:
        load_config_data({"api": {"host": host, "webhook_open": True}, "builtin_patterns": False},
                         source="a.yaml", base_dir=tmp_path)
    assert "webhook_open" in str(err.value) and "webhook_token_env" in str(err.value)
    load_config_data({"api": {"host": host}, "builtin_patterns": False}, source="a.yaml", base_dir=tmp_path)


@pytest.mark.parametrize("api", [
    {},  # the default: 127.0.0.1
    {"host": "localhost"}, {"host": "::1"}, {"host": "127.0.0.2"},
    {"host": "0.0.0.0", "webhook_token_env": "AM_TOKEN"},
    {"host": "0.0.0.0", "webhook_hmac_env": "AM_HMAC"},
    {"host": "0.0.0.0", "enabled": False},
])
def test_the_api_listens_on_loopback_by_default_and_elsewhere_when_asked(
        tmp_path: Path, api: dict[str, Any]) -> None:
    cfg = load_config_data({"api": api, "builtin_patterns": False}, source="a.yaml", base_dir=tmp_path)
    assert cfg.spec.api.host == api.get("host", "127.0.0.1")


# --- entry points that were already safe (kept safe) ----------------------------------------


def test_failing_notifiers_never_log_the_slack_url_the_webhook_secret_or_smtp_credentials(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    from autonomic.model import Level, Notification
    from autonomic.oversight.notify import EmailSpec, SlackSpec, WebhookSpec, build_dispatcher

    monkeypatch.setenv("SLACK_URL", f"http://127.0.0.1:9/services/T0/B0/{TOKEN}")
    monkeypatch.setenv("HOOK_SECRET", SECRET)
    monkeypatch.setenv("SMTP_USER", "ops")
    monkeypatch.setenv("SMTP_PASSWORD", SECRET + "-smtp")
    specs = [SlackSpec(type="slack", url_env="SLACK_URL", timeout_s=0.5),
             WebhookSpec(type="webhook", url=f"http://127.0.0.1:9/hook?key={TOKEN}", secret_env="HOOK_SECRET",
                         timeout_s=0.5),
             EmailSpec(type="email", host="127.0.0.1", port=9, sender="a@b.c", to=["d@e.f"],
                       username_env="SMTP_USER", password_env="SMTP_PASSWORD", timeout_s=0.5)]
    caplog.set_level(logging.DEBUG)
    dispatcher = build_dispatcher(specs, tmp_path, synchronous=True, max_attempts=2, backoff_s=0)
    dispatcher.send(Notification(level=Level.ALERT, ts=0.0, title="t", body="b"))
    assert dispatcher.stats()["failures"] == {"slack": 1, "webhook": 1, "email": 1}
    assert "127.0.0.1" in caplog.text
    assert TOKEN not in caplog.text and SECRET not in caplog.text
    assert all(TOKEN not in repr(r.notifier) and SECRET not in repr(r.notifier) for r in dispatcher.routes[:2])


def test_an_api_token_is_stored_and_audited_only_as_its_hash(tmp_path: Path) -> None:
    from autonomic.knowledge import Store
    from autonomic.oversight.auth import authenticate, create_token

    store = Store("sqlite://")
    raw = create_token(store, "alice", "operator")
    assert authenticate(store, raw) is not None
    dumped = [e.model_dump_json() for e in store.audit_events()]
    assert dumped and all(raw not in d and raw[4:] not in d for d in dumped)
    assert all(raw not in key for key in store.states("token:"))


def test_the_webhook_receiver_never_echoes_or_logs_its_token_or_hmac_secret(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    import json

    from fastapi.testclient import TestClient

    from autonomic.knowledge import Store
    from autonomic.oversight.api import ApiContext, create_app
    from autonomic.oversight.notify import sign

    cfg = load_config_data({"builtin_patterns": False}, source="a.yaml", base_dir=tmp_path)
    ctx = ApiContext(store=Store("sqlite://"), config=cfg, webhook_token=TOKEN, webhook_hmac_secret=SECRET)
    caplog.set_level(logging.DEBUG)
    client = TestClient(create_app(ctx))
    body = json.dumps({"version": "4", "status": "firing", "alerts": []}).encode()
    answers = [client.post("/api/v1/alerts", content=body),
               client.post("/api/v1/alerts", content=body, headers={"Authorization": f"Bearer {TOKEN}x"}),
               client.post("/api/v1/alerts", content=body, headers={
                   "Authorization": f"Bearer {TOKEN}", "X-Autonomic-Timestamp": "1",
                   "X-Autonomic-Signature": sign(SECRET, "1", body)})]
    assert [a.status_code for a in answers] == [401, 401, 401]
    shown = caplog.text + "".join(a.text + str(a.headers) for a in answers)
    assert TOKEN not in shown and SECRET not in shown


def test_no_command_in_src_goes_through_a_shell() -> None:
    """Commands are argv lists: no ``shell=True``, ``os.system``, ``os.popen`` or ``/bin/sh -c``
    anywhere in the package (shlex is used only to display an argv)."""
    import re

    import autonomic

    root = Path(autonomic.__file__).parent
    bad = re.compile(r"shell\s*=\s*True|os\.system\(|os\.popen\(|\b(ba)?sh\"?,\s*\"-c\"|shlex\.split\(")
    hits = [f"{p.relative_to(root)}:{i}" for p in root.rglob("*.py")
            for i, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1) if bad.search(line)]
    assert hits == []


@pytest.mark.parametrize(("url", "shown"), [
    ("postgresql+psycopg://bob:s3cr3t@db:5432/auto", "postgresql+psycopg://bob:***@db:5432/auto"),
    ("postgresql://bob:p@ss@db/x", "postgresql://bob:***@db/x"),  # an unescaped @ in the password
    ("postgresql://db/x?password=s3cr3t&sslmode=require", "postgresql://db/x?password=***&sslmode=***"),
    ("postgresql://bob@db/x", "postgresql://bob@db/x"),  # the role an auth error is about stays
    ("sqlite:////var/lib/autonomic/autonomic.db", "sqlite:////var/lib/autonomic/autonomic.db"),
])
def test_a_database_url_is_shown_without_its_password_in_any_place_it_can_be(url: str, shown: str) -> None:
    """Before, the store's own helper (SQLAlchemy's hide_password) showed "ss" of a password
    holding an unescaped @, and a ?password= query value whole."""
    from autonomic.knowledge.store import shown_database_url

    assert shown_database_url(url) == shown


@pytest.mark.parametrize("url", [
    "postgresql://bob:pa/ss@db/prod", "postgresql://bob:pa?ss@db/prod", "postgresql://bob:pa#ss@db/prod",
    "https://scraper:pa/ss@prom.example/metrics",
])
def test_a_password_holding_a_slash_question_mark_or_hash_is_still_hidden(url: str) -> None:
    """URL parsers split an unescaped /, ? or # in a password, and the part after it was shown
    as the host or path (the store's start-up log printed "postgresql://bob:pa/ss@db/prod")."""
    from autonomic.knowledge.store import shown_database_url

    assert "ss@" not in shown_url(url) and "ss@" not in shown_database_url(url)
    assert shown_url(url).endswith(url.rpartition("@")[2].partition("?")[0].partition("#")[0])


def test_scrub_leaves_short_query_values_in_the_rest_of_a_message() -> None:
    """?limit=1 made scrub replace every "1" of the message ("HTTP 40*** after *** s")."""
    url = "http://h/m?limit=1"
    shown = scrub(f"GET {url} answered HTTP 401 after 1 s", url)
    assert shown == "GET http://h/m?limit=*** answered HTTP 401 after 1 s"


# --- the last net: the config's secret values, hidden wherever the engine writes ---------------


def test_secrets_hide_every_value_in_text_nested_data_and_keys_but_not_short_values() -> None:
    from autonomic.redact import Secrets

    secrets = Secrets([SECRET, TOKEN, "short"])
    assert secrets.text(f"401: Bearer {TOKEN} refused for {SECRET}!") == "401: Bearer *** refused for ***!"
    data = {"error": f"got {SECRET}", "steps": [{"detail": {TOKEN: [f"x{TOKEN}y", 3, None]}}], "n": 1.5,
            "short": "short"}
    assert secrets.data(data) == {"error": "got ***", "steps": [{"detail": {"***": ["x***y", 3, None]}}],
                                  "n": 1.5, "short": "short"}
    assert not Secrets(["short", ""]) and Secrets().data(data) is data


def test_the_log_filter_hides_secrets_in_messages_their_arguments_and_tracebacks(
        caplog: pytest.LogCaptureFixture) -> None:
    from autonomic.redact import Secrets

    log = logging.getLogger("autonomic.test.secrets")
    caplog.handler.addFilter(Secrets([SECRET]).log_filter())
    with caplog.at_level(logging.INFO, logger="autonomic.test.secrets"):
        log.info("connecting with %s", SECRET)
        try:
            raise RuntimeError(f"server said {SECRET}")
        except RuntimeError:
            log.exception("call failed")
    assert SECRET not in caplog.text and caplog.text.count("***") == 2
    assert "connecting with ***" in caplog.text and "RuntimeError: server said ***" in caplog.text


def test_the_config_names_its_secret_values_from_env_the_database_password_and_http_headers(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUTONOMIC_TEST_HMAC", SECRET)
    monkeypatch.setenv("AUTONOMIC_TEST_KEY", "api-key-0000-1111")
    monkeypatch.delenv("AUTONOMIC_TEST_UNSET", raising=False)
    cfg = load_config_data({
        "engine": {"database": "postgresql+psycopg://autonomic:db-pa%40ssword@db.example/autonomic?sslmode=verify-full"},
        "api": {"webhook_hmac_env": "AUTONOMIC_TEST_HMAC", "webhook_token_env": "AUTONOMIC_TEST_UNSET"},
        "services": [{"name": "web", "actuators": {"http": {"base_url": "http://127.0.0.1:1",
                                                             "headers": {"Authorization": f"Bearer {TOKEN}",
                                                                         "Content-Type": "application/json"}}}},
                     {"name": "api", "actuators": {"http": {"base_url": "http://127.0.0.1:2",
                                                             "headers_env": {"X-Api-Key": "AUTONOMIC_TEST_KEY"}}}}],
    }, source="t.yaml", base_dir=tmp_path)
    assert cfg.secret_env_names == {"AUTONOMIC_TEST_HMAC", "AUTONOMIC_TEST_UNSET", "AUTONOMIC_TEST_KEY"}
    assert sorted(cfg.secret_values()) == sorted([SECRET, "api-key-0000-1111", "db-pa%40ssword", "db-pa@ssword",
                                                  f"Bearer {TOKEN}"])



def test_the_store_hides_secrets_in_what_it_shows_but_keeps_what_an_undo_or_a_recovery_puts_back(
        tmp_path: Path) -> None:
    """An action whose undo snapshot or params hold a value that is also a secret (a config key
    holding the database password) is undone with the real value, not ``***``; its error text and
    the audit log show ``***``."""
    from autonomic.knowledge import Store
    from autonomic.model import Action
    from autonomic.redact import Secrets

    store = Store(f"sqlite:///{tmp_path / 's.db'}")
    store.hide(Secrets([SECRET]))
    action = Action(decision_id="d", incident_id="i", service="api", type="config", params={"value": SECRET},
                    idempotency_key="k", undo={"old": SECRET}, error=f"reload failed: {SECRET} refused",
                    created_at=1.0, updated_at=1.0)
    store.record(action, actor="engine", event="action.failed", subject=action.id, data={"why": SECRET})
    stored = store.get(Action, action.id)
    assert stored is not None and stored.undo == {"old": SECRET} and stored.params == {"value": SECRET}
    assert stored.error == "reload failed: *** refused"
    assert store.audit_events()[-1].data["why"] == "***" and store.verify_audit().ok
    store.close()


def test_a_state_dir_the_engine_creates_is_its_owners_alone_and_one_already_there_keeps_its_mode(
        tmp_path: Path) -> None:
    """The store (token hashes, the audit log), service logs and pidfiles live there."""
    import stat

    from autonomic.engine import Engine
    from autonomic.oversight.notify import Dispatcher

    def mode(path: Path) -> int:
        return stat.S_IMODE(path.stat().st_mode)

    made = tmp_path / "new" / "state"
    existing = tmp_path / "existing"
    existing.mkdir(mode=0o755)
    existing.chmod(0o755)
    for folder in (made, existing):
        cfg = load_config_data({"engine": {"state_dir": str(folder), "host_metrics": False}}, source="t.yaml",
                               base_dir=tmp_path)
        Engine(cfg, sources=[], detectors=[], notifiers=Dispatcher()).store.close()
    assert mode(made) & 0o077 == 0 and mode(existing) == 0o755
