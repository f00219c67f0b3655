"""The people's commands through the real CLI (typer's CliRunner on ``autonomic.cli.app``),
each pointed at a tmp config whose ``engine.state_dir`` holds a tmp store."""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from servers import free_port
from typer.testing import CliRunner, Result

from autonomic.cli import app
from autonomic.engine import paused_reason
from autonomic.knowledge import Store
from autonomic.knowledge.lease import lease_key
from autonomic.model import (
    Action,
    ActionSpec,
    ActionState,
    Candidate,
    Decision,
    Diagnosis,
    Finding,
    FindingKind,
    GateResult,
    Incident,
    IncidentState,
    Outcome,
    Resolution,
    Sample,
    Severity,
    StepRecord,
    Verdict,
    VerifySpec,
    VerifyVerdict,
    new_id,
)

REPO = Path(__file__).resolve().parents[2]


def cli(*args: str | Path) -> Result:
    return CliRunner().invoke(app, [str(a) for a in args])


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.fixture
def cfg(tmp_path: Path) -> Path:
    return _write(tmp_path / "autonomic.yaml",
                  f"engine: {{state_dir: {tmp_path / 'state'}, host_metrics: false}}\n"
                  "services:\n"
                  "  - name: web\n"
                  "    probes: [{type: http, url: 'http://127.0.0.1:9/health'}]\n")


@pytest.fixture
def store(cfg: Path, tmp_path: Path) -> Iterator[Store]:
    s = Store(f"sqlite:///{tmp_path / 'state' / 'autonomic.db'}")
    yield s
    s.close()


# --- check ---------------------------------------------------------------------------------


def test_check_reports_schema_problems_with_file_line_and_field(tmp_path: Path) -> None:
    bad = _write(tmp_path / "bad.yaml",
                 "engine:\n"                                          # 1
                 f"  state_dir: {tmp_path / 'state'}\n"               # 2
                 "services:\n"                                        # 3
                 "  - name: web\n"                                    # 4
                 "    probes:\n"                                      # 5
                 "      - {type: http, url: 'ftp://example.com/'}\n"  # 6
                 "policy:\n"                                          # 7
                 "  autonomy: yolo\n")                                # 8
    result = cli("check", "-c", bad)
    assert result.exit_code == 2
    lines = result.stderr.splitlines()
    assert any(line.startswith(f"{bad}:6: services[0].probes[0].url: ") and "http" in line for line in lines)
    assert any(line.startswith(f"{bad}:8: policy.autonomy: ") and "observe" in line for line in lines)
    assert result.stdout == ""


def test_check_reports_an_unknown_actuator_type_under_a_service(tmp_path: Path) -> None:
    bad = _write(tmp_path / "bad.yaml",
                 "engine:\n"
                 f"  state_dir: {tmp_path / 'state'}\n"
                 "services:\n"
                 "  - name: web\n"
                 "    actuators:\n"
                 "      teleport: {where: mars}\n")  # line 6
    result = cli("check", "-c", bad)
    assert result.exit_code == 2
    assert f"{bad}:6: services[0].actuators.teleport: unknown actuator type 'teleport'" in result.stderr


def test_check_reports_pattern_files_with_unknown_action_or_params_outside_the_schema(
    cfg: Path, tmp_path: Path
) -> None:
    unknown = _write(tmp_path / "unknown-action.yaml",
                     "id: teleport-away\n"
                     "match: {cause: memory}\n"
                     "action:\n"
                     "  type: teleport\n"  # line 4
                     "prior_confidence: 0.5\n"
                     "verify: {metric: up, min: 1}\n")
    params = _write(tmp_path / "bad-params.yaml",
                    "id: restart-negative-grace\n"
                    "match: {cause: memory}\n"
                    "action:\n"
                    "  type: process\n"
                    "  params: {op: graceful_restart, grace_s: -1}\n"  # line 5
                    "prior_confidence: 0.5\n"
                    "verify: {metric: up, min: 1}\n")
    result = cli("check", "-c", cfg, unknown, params)
    assert result.exit_code == 2
    assert f"{unknown}:4: action.type: unknown action type 'teleport'" in result.stderr
    assert f"{params}:5: action.params.grace_s: " in result.stderr
    assert len(result.stderr.splitlines()) == 2


def test_check_judges_a_pattern_file_beside_the_library_the_config_loads(cfg: Path, tmp_path: Path) -> None:
    """README: "Check a pattern file with ``autonomic check -c autonomic.yaml my-pattern.yaml``".
    The file is judged as the engine would read it once added to the config's patterns: a
    ``then:`` naming a built-in pattern is fine (before, "no pattern has the id" for it), and an
    id the built-in library already has is a duplicate (before, passed, and the engine then
    refused to start)."""
    chained = _write(tmp_path / "chained.yaml",
                     "id: web-errors-restart\n"
                     "match: {cause: errors}\n"
                     "action: {type: process, params: {op: restart}}\n"
                     "prior_confidence: 0.5\n"
                     "verify: {metric: error_rate, max: 0.05}\n"
                     "then: [process-down-restart]\n")
    result = cli("check", "-c", cfg, chained)
    assert result.exit_code == 0, result.stderr
    assert f"{chained}: ok (with the config's patterns)" in result.stdout
    clash = _write(tmp_path / "clash.yaml",
                   "id: process-down-restart\n"  # line 1
                   "match: {cause: down}\n"
                   "prior_confidence: 0.5\n")
    result = cli("check", "-c", cfg, clash)
    assert result.exit_code == 2
    assert result.stderr.startswith(f"{clash}:1: id: duplicate pattern id 'process-down-restart' (also defined at ")


def test_check_warns_of_a_secrets_variable_not_set_here_that_run_would_refuse_to_start_without(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A webhook notifier's ``secret_env: HOOK_SECRET`` with HOOK_SECRET unset: before, check said
    ok and ``autonomic run`` then refused to start. The file is still valid (check may run where
    the secrets are not), so it exits 0, with a warning naming the variable."""
    monkeypatch.delenv("AUTONOMIC_TEST_HOOK_SECRET", raising=False)
    config = _write(tmp_path / "autonomic.yaml",
                    f"engine: {{state_dir: {tmp_path / 'state'}}}\n"
                    "notifiers: [{type: webhook, url: 'http://127.0.0.1:9/hook',\n"
                    "             secret_env: AUTONOMIC_TEST_HOOK_SECRET}]\n")
    result = cli("check", "-c", config)
    assert result.exit_code == 0
    assert "environment variable AUTONOMIC_TEST_HOOK_SECRET is not set here" in result.stderr
    monkeypatch.setenv("AUTONOMIC_TEST_HOOK_SECRET", "s3cret-value")
    assert cli("check", "-c", config).stderr == ""


def test_check_warns_of_a_goal_whose_metric_no_source_of_its_service_samples(tmp_path: Path) -> None:
    """Before, check said ok and the goal never measured anything (its budget stayed empty, no
    burn was ever seen). Still valid, so exit 0, with a warning at the goal's metric naming what
    the service's sources do sample: its probes', its supervised process's, a promql query's."""
    config = _write(tmp_path / "autonomic.yaml",
                    f"engine: {{state_dir: {tmp_path / 'state'}, host_metrics: false}}\n"
                    "services:\n"
                    "  - name: web\n"
                    "    probes: [{url: 'http://127.0.0.1:9/health'}]\n"
                    "    actuators: {process: {command: [sleep, '60']}}\n"
                    "    metrics: [{type: promql, url: 'http://127.0.0.1:9', query: 'x', metric: error_rate}]\n"
                    "    goals:\n"
                    "      - {name: avail, metric: probe_ok, min: 1, target: 0.999}\n"
                    "      - {name: typo, metric: probe_okk, min: 1, target: 0.999}\n"  # line 9
                    "      - {name: lean, metric: rss_bytes, max: 1e9, target: 0.99}\n"
                    "      - {name: errors, metric: error_rate, max: 0.01, target: 0.99}\n")
    result = cli("check", "-c", config)
    assert result.exit_code == 0, result.stderr
    assert result.stderr.splitlines() == [
        f"{config}:9: warning: services[0].goals[1].metric: no source of service web samples 'probe_okk', so "
        "goal typo would never measure anything; its sources sample probe_ok, probe_latency_ms, up, unit_stopped, "
        "cpu_percent, rss_bytes, memory_percent, open_fds, threads, error_rate"]


@pytest.mark.parametrize(("entry", "warned"), [
    ("    metrics: [{url: 'http://127.0.0.1:9/metrics', rename: {app_errors: error_rate}}]\n",
     "its sources sample error_rate"),
    ("    actuators: {kubernetes: {name: web}}\n",
     "its sources sample up, unit_stopped, available_ratio, rollout_complete"),
    ("", "it has no source (probes, metrics, or a process, systemd, docker or kubernetes binding)"),
    ("    metrics: [{url: 'http://127.0.0.1:9/metrics'}]\n", None),  # a scrape keeping every sample: anything
])
def test_check_names_what_a_services_sources_sample_when_a_goals_metric_is_not_among_them(
        tmp_path: Path, entry: str, warned: str | None) -> None:
    config = _write(tmp_path / "autonomic.yaml",
                    f"engine: {{state_dir: {tmp_path / 'state'}, host_metrics: false}}\n"
                    "services:\n"
                    "  - name: web\n" + entry +
                    "    goals: [{name: fast, metric: latency_ms, max: 300, target: 0.99}]\n")
    result = cli("check", "-c", config)
    assert result.exit_code == 0, result.stderr
    if warned is None:
        assert result.stderr == ""
    else:
        assert "warning: services[0].goals[0].metric: no source of service web samples 'latency_ms'" in result.stderr
        assert result.stderr.rstrip().endswith(warned)


def test_check_refuses_a_goal_on_a_counter_naming_the_field(tmp_path: Path) -> None:
    """As a trend of a counter is refused: a counter only grows, so a sample of it is not good or bad."""
    config = _write(tmp_path / "autonomic.yaml",
                    f"engine: {{state_dir: {tmp_path / 'state'}, host_metrics: false}}\n"
                    "services:\n"
                    "  - name: web\n"
                    "    metrics: [{url: 'http://127.0.0.1:9/metrics'}]\n"
                    "    goals:\n"
                    "      - {name: errors, metric: http_errors_total, max: 0, target: 0.99}\n")  # line 6
    result = cli("check", "-c", config)
    assert result.exit_code == 2
    assert result.stderr.startswith(f"{config}:6: services[0].goals[0].metric: ")
    assert "named like a Prometheus counter" in result.stderr and "rate(http_errors_total[5m])" in result.stderr


def test_check_reports_schema_and_actuator_problems_of_one_file_together(tmp_path: Path) -> None:
    bad = _write(tmp_path / "bad.yaml",
                 "engine:\n"
                 f"  state_dir: {tmp_path / 'state'}\n"
                 "services:\n"
                 "  - name: web\n"
                 "    actuators:\n"
                 "      teleport: {where: mars}\n"  # line 6
                 "policy:\n"
                 "  autonomy: yolo\n")  # line 8
    result = cli("check", "-c", bad)
    assert result.exit_code == 2
    assert f"{bad}:8: policy.autonomy: " in result.stderr
    assert f"{bad}:6: services[0].actuators.teleport: " in result.stderr


def test_check_accepts_the_minimal_example() -> None:
    result = cli("check", "-c", REPO / "examples" / "minimal.yaml")
    assert result.exit_code == 0, result.stderr
    assert re.search(r"ok \(1 service, \d+ patterns\)$", result.stdout.strip()), result.stdout


def test_check_counts_one_service_and_one_pattern_in_the_singular(tmp_path: Path) -> None:
    """Before: "ok (1 services, 1 patterns)"."""
    (tmp_path / "p.yaml").write_text("id: web-down-hand-over\nmatch: {cause: down}\nprior_confidence: 0.5\n")
    config = _write(tmp_path / "autonomic.yaml", "engine: {host_metrics: false}\nservices: [{name: web}]\n"
                                                 "builtin_patterns: false\npatterns: [p.yaml]\n")
    result = cli("check", "-c", config)
    assert result.exit_code == 0, result.stderr
    assert result.stdout.strip() == f"{config}: ok (1 service, 1 pattern)"


@pytest.mark.parametrize(("services", "message"), [
    ("  - name: web\n    depends_on:\n      - api\n      - nope\n  - name: api\n",
     "7: services[0].depends_on[1]: no service named 'nope'"),
    ("  - name: web\n    depends_on: [aip]\n  - name: api\n",
     "5: services[0].depends_on[0]: no service named 'aip'; did you mean 'api'?"),
    ("  - name: web\n  - name: web\n", "3: services: service names must be unique: web"),
])
def test_check_names_the_line_of_an_unknown_dependency_and_the_services_of_a_repeated_name(
        tmp_path: Path, services: str, message: str) -> None:
    """A depends_on entry naming no service is pointed at itself (before: at ``services:``,
    three lines up, whichever of a service's dependencies it was)."""
    config = _write(tmp_path / "autonomic.yaml", "engine: {host_metrics: false}\n\nservices:\n" + services)
    result = cli("check", "-c", config)
    assert result.exit_code == 2
    assert result.stderr.strip() == f"{config}:{message}"


def test_run_names_a_notifiers_unset_secret_variable_without_a_traceback(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AUTONOMIC_TEST_HOOK_SECRET", raising=False)
    config = _write(tmp_path / "autonomic.yaml",
                    f"engine: {{state_dir: {tmp_path / 'state'}, host_metrics: false}}\n"
                    "api: {enabled: false}\n"
                    "notifiers:\n  - {type: console}\n"
                    "  - {type: webhook, url: 'http://127.0.0.1:9/', secret_env: AUTONOMIC_TEST_HOOK_SECRET}\n")
    result = cli("run", "-c", config)
    assert result.exit_code == 2, result.output
    assert result.stderr.strip() == (f"{config}: notifiers[1].secret_env: "
                                     "environment variable AUTONOMIC_TEST_HOOK_SECRET is not set")


def test_check_names_a_policy_override_for_a_service_pattern_or_action_type_that_does_not_exist(
        tmp_path: Path) -> None:
    """A misspelt name under policy.services (or patterns, actions) would leave its override,
    say autonomy observe for one service, silently unapplied: it is a problem with its line."""
    config = _write(tmp_path / "autonomic.yaml",
                    "engine: {host_metrics: false}\n"
                    "services: [{name: web}]\n"
                    "policy:\n"
                    "  autonomy: auto\n"
                    "  services: {web-frontend: {autonomy: observe}, web: {autonomy: approve}, host: {shadow: true}}\n"
                    "  patterns: {proces-down-restart: {autonomy: approve}}\n"
                    "  actions: {procss: {enabled: false}, process: {enabled: true}}\n")
    result = cli("check", "-c", config)
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        f"{config}:5: policy.services.web-frontend: no service named 'web-frontend' (known: host, web)",
        f"{config}:6: policy.patterns.proces-down-restart: no pattern named 'proces-down-restart'; "
        "did you mean 'process-down-restart'?",
        f"{config}:7: policy.actions.procss: no action type named 'procss'; did you mean 'process'?",
    ]


def test_run_rejects_an_unknown_log_level() -> None:
    result = cli("run", "--log-level", "nonsense")
    assert result.exit_code == 2
    assert "--log-level" in result.stderr and "nonsense" in result.stderr


@pytest.mark.parametrize("command", [["run"], ["status"], ["token", "list"]])
def test_a_database_that_cannot_be_reached_is_named_without_its_password_or_a_traceback(
        command: list[str], tmp_path: Path) -> None:
    url = f"postgresql+psycopg://autonomic:hunter2@127.0.0.1:{free_port()}/autonomic"
    config = _write(tmp_path / "autonomic.yaml", f"engine: {{database: '{url}', host_metrics: false}}\n")

    result = cli(*command, "-c", config)

    assert result.exit_code == 1, result.output
    shown = url.replace(":hunter2@", ":***@")
    assert result.stderr.startswith(f"autonomic: cannot open the store at {shown}: "), result.stderr
    assert "Connection refused" in result.stderr
    assert "hunter2" not in result.output and "Traceback" not in result.output


@pytest.mark.parametrize("command", [["run"], ["token", "create", "--role", "viewer", "--name", "a"],
                                     ["pause", "-r", "freeze"]])
def test_a_state_dir_that_cannot_be_created_is_named_without_a_traceback(command: list[str], tmp_path: Path) -> None:
    """The commands that make the store of a config given (the engine, and the writes that may come
    before its first start); the others say there is no store (see the test after this one)."""
    in_the_way = _write(tmp_path / "a-file", "")
    config = _write(tmp_path / "autonomic.yaml",
                    f"engine: {{state_dir: {in_the_way / 'state'}, host_metrics: false}}\n")

    result = cli(*command, "-c", config)

    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert f"cannot create {in_the_way / 'state'}" in result.stderr or \
        f"cannot create its folder {in_the_way / 'state'}" in result.stderr, result.stderr
    assert "Not a directory" in result.stderr


READS = [["status"], ["incidents"], ["explain", "abcd1234"], ["audit", "verify"], ["audit", "show"],
         ["report", "daily"], ["token", "list"], ["prune", "--dry-run"], ["approve", "abcd1234"],
         ["deny", "abcd1234"], ["resume"], ["token", "revoke", "alice"]]
WRITES = [["pause", "-r", "freeze"], ["token", "create", "--role", "viewer", "--name", "alice"]]


@pytest.mark.parametrize("words", READS + WRITES)
def test_a_command_typed_where_no_engine_ran_with_no_config_says_there_is_no_store_and_makes_none(
        words: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`autonomic status` typed in a folder with no config made `.autonomic/autonomic.db` there
    and showed its empty tables, as if all were quiet; `autonomic token create` made a token in
    that store, which no engine reads (the dashboard then refused it). Now each names the file it
    did not find and says to give -c the engine's config, exit 2, and makes nothing."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("AUTONOMIC_CONFIG", raising=False)
    result = cli(*words)
    assert result.exit_code == 2, result.output
    assert result.stderr == (f"autonomic: no store at {tmp_path / '.autonomic' / 'autonomic.db'}: no engine has run in "
                             "this folder with the built-in defaults (no -c FILE or AUTONOMIC_CONFIG given), and this "
                             "command does not create one: give the config the engine runs with, -c FILE\n")
    assert not (tmp_path / ".autonomic").exists()


@pytest.mark.parametrize("words", READS)
def test_a_command_that_reads_or_answers_does_not_make_the_store_its_config_names(
        words: list[str], cfg: Path, tmp_path: Path) -> None:
    """The config given, its store not made yet (the engine never ran with it, or -c names the
    wrong file): said so, exit 2, nothing made."""
    result = cli(*words, "-c", cfg)
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith(f"autonomic: no store at {tmp_path / 'state' / 'autonomic.db'}, the store {cfg} "
                                    f"names: no engine has run with it yet (`autonomic -c {cfg} run` creates it)")
    assert not (tmp_path / "state" / "autonomic.db").exists()


def test_a_pause_or_a_token_before_the_engines_first_start_makes_its_configs_store_which_the_engine_opens(
        cfg: Path, tmp_path: Path) -> None:
    """With -c the store is the engine's (it opens what its config names): a kill switch or a token
    set before it first runs is kept there and read back."""
    assert cli("pause", "-r", "not yet", "-c", cfg).exit_code == 0
    assert cli("token", "create", "--role", "viewer", "--name", "alice", "-c", cfg).exit_code == 0
    store = Store(f"sqlite:///{tmp_path / 'state' / 'autonomic.db'}")
    try:
        assert store.get_state("pause:global") is not None
        assert "PAUSED global: not yet" in cli("status", "-c", cfg).stdout
        assert "alice" in cli("token", "list", "-c", cfg).stdout
    finally:
        store.close()


def test_the_kill_switch_refused_by_a_stuck_writers_lock_says_so_in_one_line_and_reads_still_work(
        tmp_path: Path, postgres_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Another session holds the store's write lock (a writer stuck in its transaction):
    ``autonomic pause`` waits for it, then says in one line that the store refused the write and
    exits 1; it printed a page of traceback. ``status`` still shows what is stored."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.pool import NullPool

    from autonomic.knowledge import store as store_module

    Store(postgres_url).close()
    config = _write(tmp_path / "autonomic.yaml",
                    f"engine: {{database: '{postgres_url}', state_dir: {tmp_path / 'state'}, host_metrics: false}}\n")
    monkeypatch.setattr(store_module, "_LOCK_WAIT_S", 0.5)
    stuck = create_engine(postgres_url, poolclass=NullPool).connect()
    try:
        stuck.execute(text(f"SELECT pg_advisory_lock({store_module._PG_WRITE_LOCK})"))
        result = cli("pause", "-c", config, "--reason", "bad night")
        assert result.exit_code == 1, result.output
        assert result.stderr.startswith("autonomic: store write failed: ") and "lock timeout" in result.stderr
        # no engine runs here: the pause file it falls back on would pause nothing elsewhere, and it says so
        assert "no engine runs here with this state_dir" in result.stderr and "is NOT" in result.stderr
        assert len(result.stderr.strip().splitlines()) == 2 and "Traceback" not in result.output, result.output
        assert cli("status", "-c", config).exit_code == 0
    finally:
        stuck.close()
    assert cli("pause", "-c", config, "--reason", "bad night").exit_code == 0


def _run_until_started(config: Path, cwd: Path, *args: str) -> str:
    """Run ``autonomic run -c config *args`` with its output to a file (no terminal, no COLUMNS),
    stop it with SIGTERM once it logged its start, and return what it wrote; it must exit 0."""
    log = cwd / "engine.log"
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "autonomic.cli", "run", "-c", str(config), *args], cwd=cwd,
                                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + 30
        while "engine started" not in log.read_text() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0, log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return log.read_text()


def test_a_second_engine_over_the_same_state_dir_is_refused_and_leaves_the_first_ones_service_alone(
        tmp_path: Path) -> None:
    """``autonomic run`` started twice on one config (a systemd unit, and a person trying it in
    the foreground). Before, the second adopted the first one's service, acted beside it, and on
    its own stop (Ctrl-C) stopped the service the first still watched. Now it exits 1 at once,
    naming the first engine's pid, and the service runs on."""
    config = _write(tmp_path / "autonomic.yaml",
                    f"engine: {{state_dir: {tmp_path / 'state'}, host_metrics: false, interval_s: 0.5}}\n"
                    "api: {enabled: false}\nbuiltin_patterns: false\n"
                    f"services:\n  - name: app\n    actuators: {{process: {{command: [{sys.executable}, -c, "
                    "'import time; time.sleep(600)']}}\n")
    log = tmp_path / "first.log"
    with log.open("wb") as out:
        first = subprocess.Popen([sys.executable, "-m", "autonomic.cli", "run", "-c", str(config)], cwd=tmp_path,
                                 stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while "engine started" not in log.read_text() and first.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        pidfile = tmp_path / "state" / "run" / "pids" / "app.json"
        while not pidfile.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        service = json.loads(pidfile.read_text())["pid"]
        second = subprocess.run([sys.executable, "-m", "autonomic.cli", "run", "-c", str(config)], cwd=tmp_path,
                                stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
        assert second.returncode == 1, second.stderr
        assert f"another autonomic engine (pid {first.pid}) runs with state_dir" in second.stderr
        assert first.poll() is None
        assert psutil.Process(service).status() != psutil.STATUS_ZOMBIE
        first.send_signal(signal.SIGTERM)
        assert first.wait(timeout=30) == 0, log.read_text()
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()


def test_an_api_port_in_use_stops_the_start_in_one_line_saying_so_and_what_to_do(tmp_path: Path) -> None:
    """The real engine, a real process, the API's port held by another socket. Before, uvicorn's
    own "ERROR: [Errno 98] error while attempting to bind ..." came first, then "autonomic: api:
    cannot listen on ...: the API server could not start on ...: it exited (is the port in use?)
    (SystemExit(3))". Now one line, exit 2."""
    import socket

    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        config = _write(tmp_path / "autonomic.yaml",
                        f"engine: {{state_dir: {tmp_path / 'state'}, host_metrics: false}}\napi: {{port: {port}}}\n")
        run = subprocess.run([sys.executable, "-m", "autonomic", "run", "-c", str(config)], cwd=tmp_path,
                             stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
    assert run.returncode == 2, run.stderr
    errors = [line for line in run.stderr.splitlines() if "autonomic:" in line or "ERROR" in line]
    assert errors == [f"autonomic: api: cannot listen on 127.0.0.1:{port}: address already in use (another process "
                      "listens there: stop it, or set api.port, or api.enabled: false)"], run.stderr


def test_status_after_a_clean_stop_says_the_engine_stopped_rather_than_showing_its_last_health_as_live(
        tmp_path: Path) -> None:
    """Before, `autonomic status` right after the engine stopped (and stopped its services with it)
    showed "health (engine pid N, 3 s ago)" with the service HEALTHY, as if still watched, until
    the staleness grace ran out. Now it says STOPPED, and that the services went down with it."""
    config = _write(tmp_path / "autonomic.yaml",
                    f"engine: {{state_dir: {tmp_path / 'state'}, host_metrics: false, interval_s: 0.2}}\n"
                    "api: {enabled: false}\nbuiltin_patterns: false\n"
                    f"services:\n  - name: app\n    actuators: {{process: {{command: [{sys.executable}, -c, "
                    "'import time; time.sleep(600)']}}\n")
    status = tmp_path / "state" / "status.json"
    engine = subprocess.Popen([sys.executable, "-m", "autonomic.cli", "run", "-c", str(config)], cwd=tmp_path,
                              stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while not status.exists() and engine.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        live = cli("status", "-c", config).stdout
        assert "health (engine pid" in live and "STOPPED" not in live
        engine.send_signal(signal.SIGTERM)
        assert engine.wait(timeout=30) == 0
    finally:
        if engine.poll() is None:
            engine.kill()
            engine.wait()
    text = cli("status", "-c", config).stdout
    assert f"STOPPED the engine (pid {engine.pid}) stopped " in text
    assert "the services it supervised were stopped with it" in text and "STALE" not in text


def test_the_engine_runs_on_postgresql_and_its_log_shows_the_url_without_the_password(
        tmp_path: Path, postgres_url: str) -> None:
    """``autonomic run`` over a PostgreSQL store: it starts, logs where its store is with the
    password hidden, audits its start there, and stops cleanly on SIGTERM."""
    url = postgres_url.replace("postgresql+psycopg://postgres@", "postgresql+psycopg://postgres:hunter2@")
    config = _write(tmp_path / "autonomic.yaml",
                    f"engine: {{database: '{url}', state_dir: {tmp_path / 'state'}, host_metrics: false,"
                    " interval_s: 0.2}\napi: {enabled: false}\n")
    text = _run_until_started(config, tmp_path)
    assert "engine started" in text and "stopped cleanly" in text, text
    assert f"store {url.replace(':hunter2@', ':***@')})" in text, text
    assert "hunter2" not in text
    store = Store(postgres_url)
    try:
        assert store.audit_events() and store.verify_audit().ok
    finally:
        store.close()


def test_the_engines_start_line_names_the_token_command_with_its_own_config(tmp_path: Path) -> None:
    """The real engine, its state_dir away from the folder it runs in. The start line says how to
    make a token for the dashboard; before, it said "autonomic token create ..." with no -c, which
    makes the token in the built-in defaults' store of the folder it is typed in, not the engine's:
    the dashboard then answered "invalid or revoked API token"."""
    config = _write(tmp_path / "autonomic.yaml",
                    f"engine: {{state_dir: {tmp_path / 'elsewhere'}, host_metrics: false, interval_s: 0.2}}\n"
                    f"api: {{port: {free_port()}}}\n")
    text = _run_until_started(config, tmp_path)
    assert f"(tokens: autonomic -c {config} token create --role operator --name NAME)" in text, text


@pytest.mark.parametrize("fmt", ["auto", "json"])
def test_the_engine_logs_one_dated_line_per_record_when_its_output_is_not_a_terminal(
        tmp_path: Path, fmt: str) -> None:
    """``autonomic run`` writing to a file (as under kubectl logs or journald), with no COLUMNS:
    rich wrapped each message at 80 columns and printed the time of day only; now every line is
    one record with its UTC date and time (text), or one JSON object (json)."""
    config = _write(tmp_path / "autonomic.yaml",
                    f"engine: {{state_dir: {tmp_path / 'state'}, host_metrics: false, interval_s: 0.2}}\n"
                    "api: {enabled: false}\n")
    lines = _run_until_started(config, tmp_path, "--log-format", fmt).splitlines()
    stamp = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"
    if fmt == "json":
        docs = [json.loads(line) for line in lines]
        assert all(re.fullmatch(stamp, d["ts"]) and d["level"] and d["logger"] for d in docs), lines
        messages = [d["message"] for d in docs]
    else:
        assert all(re.match(stamp + r" (INFO|WARNING|ERROR|DEBUG) autonomic", line) for line in lines), lines
        messages = lines
    started = next(m for m in messages if "engine started" in m)
    assert f"store sqlite:///{tmp_path / 'state' / 'autonomic.db'})" in started  # the whole message, unwrapped
    assert any("stopped cleanly" in m for m in messages)


# --- pause / resume / audit ----------------------------------------------------------------


def _pauses(cfg: Path) -> dict[str, Any]:
    result = cli("status", "-c", cfg, "--json")
    assert result.exit_code == 0, result.stderr
    pauses: dict[str, Any] = json.loads(result.stdout)["pauses"]
    return pauses


def test_status_names_the_replica_that_leads_since_when_and_a_released_lease(cfg: Path, store: Store) -> None:
    result = cli("status", "-c", cfg, "--json")
    assert result.exit_code == 0 and json.loads(result.stdout)["lease"] is None  # no leader election here
    store.claim_lease("engine", "pod-a:17:abc123")
    lease = json.loads(cli("status", "-c", cfg, "--json").stdout)["lease"]
    assert (lease["holder"], lease["epoch"]) == ("pod-a:17:abc123", 1)
    since = time.strftime("%Y-%m-%d %H:%M:%S %z", time.localtime(lease["acquired_at"]))
    shown = cli("status", "-c", cfg).stdout
    # "0 s ago", give or take the seconds a loaded machine takes between the claim and the command
    assert re.search(rf"leader: pod-a:17:abc123 \(epoch 1\), leading since {re.escape(since)}, renewed [0-5] s ago",
                     shown), shown
    store.release_lease("engine", "pod-a:17:abc123", 1)
    assert re.search(r"leader: none \(released [0-5] s ago; epoch 1\)", cli("status", "-c", cfg).stdout)


def test_status_says_when_the_leader_has_stopped_renewing_and_when_it_runs_another_config(
        cfg: Path, store: Store) -> None:
    """A leader killed with no standby to take over left its lease as it was: without the age of
    its last renewal, status named it as leading for ever."""
    store.claim_lease("engine", "pod-a:17:abc123", config="0123456789ab")
    value = store.get_state(lease_key("engine"))
    assert value is not None
    store.set_state(lease_key("engine"), {**value, "renewed_at": value["renewed_at"] - 60}, actor="test",
                    event="test.lease_aged")
    shown = cli("status", "-c", cfg).stdout
    assert "renewed 60 s ago" not in shown
    # 60 s, and the second or two a loaded machine takes to run the command
    assert re.search(r"NOT RENEWED for 6[0-9] s \(lease_s 15\): the leader is down, frozen or cut off from the "
                     r"store", shown), shown
    assert "the leader runs another config (fingerprint 0123456789ab) than" in shown
    assert json.loads(cli("status", "-c", cfg, "--json").stdout)["lease"]["config"] == "0123456789ab"


def _status_json(tmp_path: Path, text: str) -> None:
    (tmp_path / "state").mkdir(exist_ok=True)
    (tmp_path / "state" / "status.json").write_text(text)


def test_status_says_when_the_engines_health_is_stale(cfg: Path, store: Store, tmp_path: Path) -> None:
    health = {"web": {"state": "HEALTHY", "reasons": []}}
    _status_json(tmp_path, json.dumps({"ts": time.time(), "pid": 4242, "health": health}))
    assert "STALE" not in cli("status", "-c", cfg).stdout
    _status_json(tmp_path, json.dumps({"ts": time.time() - 600, "pid": 4242, "health": health}))
    shown = cli("status", "-c", cfg).stdout
    assert "STALE health: the engine (pid 4242) last wrote it 600 s ago" in shown, shown


def test_status_shows_the_engines_pid_and_age_on_one_line_above_a_narrow_table(
        cfg: Path, store: Store, tmp_path: Path) -> None:
    """Services with short names and no reasons make a table narrower than its title. Before, the
    title was wrapped to the table's width: "health (engine pid 4242, 2" on one line, "s ago)" on
    the next."""
    _status_json(tmp_path, json.dumps({"ts": time.time(), "pid": 4242, "health": {"web": {"state": "HEALTHY",
                                                                                          "reasons": []}}}))
    shown = cli("status", "-c", cfg).stdout
    assert re.search(r"health \(engine pid 4242, \d+ s ago\)", shown), shown


@pytest.mark.parametrize("text", ["", "garbage", "[1, 2]"])
def test_status_shows_the_store_when_the_engines_health_file_is_unreadable(
        cfg: Path, store: Store, tmp_path: Path, text: str) -> None:
    _status_json(tmp_path, text)
    for args in (["status"], ["status", "--json"]):
        result = cli(*args, "-c", cfg)
        assert result.exit_code == 0, result.output
        assert result.exception is None or isinstance(result.exception, SystemExit)


def test_status_and_incidents_show_what_people_and_alerts_wrote_as_written(cfg: Path, store: Store) -> None:
    """A pause reason or an incident summary with rich markup in it ("[/x]", "[bold]") is text,
    not markup: it neither stops the command with a MarkupError nor restyles the output."""
    inc = _incident(store, "8888dddd", IncidentState.OPEN)
    store.record(inc.model_copy(update={"summary": "errors [/x] up, :smile: [bold]now[/bold]"}),
                 actor="engine", event="incident.updated", subject=inc.id)
    assert cli("pause", "-r", "deploy [/oops] freeze", "--actor", "person:[red]ops[/red]", "-c", cfg).exit_code == 0
    for args in (["status"], ["incidents"]):
        result = cli(*args, "-c", cfg)
        assert result.exit_code == 0, result.output
        assert "errors [/x] up, :smile: [bold]now[/bold]" in result.stdout
    assert "PAUSED global: deploy [/oops] freeze (by person:[red]ops[/red])" in cli("status", "-c", cfg).stdout


def test_status_and_incidents_say_when_they_list_only_the_newest_of_more_incidents(
        cfg: Path, store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """status lists the newest 1,000 open incidents and incidents the newest --limit (500): with
    more stored, the lists used to look complete. The title says how many there are in all, and
    status --json gives the total; a list that holds them all says nothing of the kind."""
    import autonomic.cli as cli_module

    for n in range(3):
        _incident(store, f"{n}aaaaaaa", IncidentState.OPEN)
    _incident(store, "3aaaaaaa", IncidentState.RESOLVED, closed=True)
    monkeypatch.setattr(cli_module, "STATUS_INCIDENTS", 2)
    assert "open incidents: the newest 2 of 3" in cli("status", "-c", cfg).stdout
    said = json.loads(cli("status", "--json", "-c", cfg).stdout)
    assert (len(said["open_incidents"]), said["open_incidents_total"]) == (2, 3)
    assert "open incidents: the newest 2 of 3" in cli("incidents", "--limit", "2", "-c", cfg).stdout
    assert "incidents: the newest 3 of 4" in cli("incidents", "--all", "--limit", "3", "-c", cfg).stdout
    whole = cli("incidents", "--all", "-c", cfg).stdout
    assert "newest" not in whole and whole.count("aaaaaaa") == 4
    refused = cli("incidents", "--limit", "0", "-c", cfg)
    assert refused.exit_code == 2 and "--limit" in refused.output


def test_control_characters_people_and_alerts_wrote_reach_the_terminal_as_escapes(cfg: Path, store: Store) -> None:
    """An escape sequence in a pause reason or an incident summary (an alert annotation) is shown
    as ``\\x1b``, never written raw where it could clear the screen or retitle the window."""
    inc = _incident(store, "9999eeee", IncidentState.AWAITING_APPROVAL)
    store.record(inc.model_copy(update={"summary": "errors\x1b[2J\x1b]0;owned\x07 up"}),
                 actor="engine", event="incident.updated", subject=inc.id)
    outputs = [cli("pause", "-r", "freeze\x1b[31m now", "-c", cfg).stdout]
    outputs += [cli(*args, "-c", cfg).stdout for args in (["status"], ["incidents"], ["explain", "9999eeee"],
                                                         ["report", "daily"], ["approve", "9999eeee"])]
    for out in outputs:
        assert "\x1b" not in out and "\x07" not in out, out
    assert "freeze\\x1b[31m now" in outputs[0] and "errors\\x1b[2J\\x1b]0;owned\\x07 up" in outputs[2]


def test_a_relative_sqlite_database_is_the_same_store_from_any_directory(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """engine.database: sqlite:///rel.db is relative to the config file, as state_dir is: a pause
    set from one directory is the one the engine (started from another) reads."""
    config = _write(tmp_path / "autonomic.yaml",
                    "engine: {database: 'sqlite:///state/rel.db', state_dir: state, host_metrics: false}\n")
    for where in ("ops", "srv"):
        (tmp_path / where).mkdir()
    monkeypatch.chdir(tmp_path / "ops")
    assert cli("pause", "-r", "deploy freeze", "-c", config).exit_code == 0
    monkeypatch.chdir(tmp_path / "srv")
    assert "PAUSED global: deploy freeze" in cli("status", "-c", config).stdout
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.db")) == ["state/rel.db"]


def test_pause_shows_in_status_resume_lifts_it_and_both_are_audited(cfg: Path) -> None:
    assert cli("pause", "-r", "maintenance", "--actor", "person:ops", "-c", cfg).exit_code == 0
    assert cli("pause", "-r", "db migration", "--service", "web", "-c", cfg).exit_code == 0
    pauses = _pauses(cfg)
    assert pauses["pause:global"]["reason"] == "maintenance"
    assert pauses["pause:global"]["actor"] == "person:ops"
    assert pauses["pause:service:web"]["reason"] == "db migration"

    assert cli("resume", "-c", cfg).exit_code == 0
    assert set(_pauses(cfg)) == {"pause:service:web"}
    assert cli("resume", "--service", "web", "-c", cfg).exit_code == 0
    assert _pauses(cfg) == {}

    shown = cli("audit", "show", "--json", "-c", cfg)
    assert shown.exit_code == 0
    events = [(e["kind"], e["subject"], e["data"].get("reason")) for e in json.loads(shown.stdout)]
    assert events == [
        ("pause.set", "pause:global", "maintenance"),
        ("pause.set", "pause:service:web", "db migration"),
        ("pause.lifted", "pause:global", ""),
        ("pause.lifted", "pause:service:web", ""),
    ]


def test_audit_show_lists_the_newest_entries_with_date_time_and_utc_offset(cfg: Path) -> None:
    """An audit listing pasted into a ticket is read by people in other zones, on other days."""
    for reason in ("one", "two", "three"):
        assert cli("pause", "-r", reason, "-c", cfg).exit_code == 0
        assert cli("resume", "-c", cfg).exit_code == 0
    shown = cli("audit", "show", "--limit", "2", "-c", cfg)
    assert shown.exit_code == 0
    lines = shown.stdout.strip().splitlines()
    assert len(lines) == 2 and "pause.set" in lines[0] and "three" in lines[0] and "pause.lifted" in lines[1]
    assert all(re.search(r" \d{4}-\d\d-\d\d \d\d:\d\d:\d\d [+-]\d{4} ", line) for line in lines)


def test_pause_and_resume_refuse_bad_requests_and_change_nothing(cfg: Path, store: Store) -> None:
    empty = cli("pause", "-r", "  ", "-c", cfg)
    assert empty.exit_code == 2 and "--reason" in empty.stderr
    unknown = cli("pause", "-r", "x", "--service", "nope", "-c", cfg)
    assert unknown.exit_code == 2 and "--service" in unknown.stderr and "nope" in unknown.stderr
    not_paused = cli("resume", "-c", cfg)
    assert not_paused.exit_code == 2 and "not paused" in not_paused.stderr
    assert store.states("pause:") == {}
    assert [e.kind for e in store.audit_events()] == []


@pytest.mark.parametrize("args", [
    ["pause", "-r", "deploy caf\udce9"],  # "café" typed in a Latin-1 terminal: byte 0xe9
    ["pause", "-r", "x", "--actor", "\udce9ric"],
    ["approve", "0123", "-m", "ok \udcff"],
    ["token", "create", "--role", "viewer", "--name", "al\udce9"],
])
def test_free_text_that_is_not_utf8_is_refused_naming_the_option_and_the_byte(
    args: list[str], cfg: Path, store: Store
) -> None:
    """Before, the store refused it with a message about half an emoji, exit 1."""
    result = cli(*args, "-c", cfg)
    assert result.exit_code == 2, result.output
    assert "not UTF-8 text (byte 0x" in result.stderr
    assert re.search(r"'--(reason|actor|comment|name)'", result.stderr)
    assert store.states("pause:") == {} and store.audit_events() == []

def test_revoking_a_token_that_does_not_exist_exits_2_as_every_name_not_found(cfg: Path, store: Store) -> None:
    """It exited 1, the code of a store that cannot be opened, while an unknown incident, service or
    pause exits 2."""
    assert cli("token", "create", "--role", "viewer", "--name", "alice", "-c", cfg).exit_code == 0
    unknown = cli("token", "revoke", "bob", "-c", cfg)
    assert unknown.exit_code == 2, unknown.output
    assert unknown.stderr.startswith("autonomic: no token named 'bob'"), unknown.stderr
    assert cli("resume", "-c", cfg).exit_code == cli("explain", "9999ffff", "-c", cfg).exit_code == 2
    revoked = cli("token", "revoke", "alice", "-c", cfg)
    assert (revoked.exit_code, revoked.stdout) == (0, "revoked token 'alice'\n")


def test_audit_verify_passes_then_names_the_seq_of_an_edited_entry(
    cfg: Path, store: Store, tmp_path: Path
) -> None:
    cli("pause", "-r", "maintenance", "-c", cfg)
    cli("resume", "-c", cfg)
    cli("pause", "-r", "again", "-c", cfg)
    ok = cli("audit", "verify", "-c", cfg)
    assert ok.exit_code == 0, ok.stderr
    assert "audit chain ok: 3 entries" in ok.stdout

    target = store.audit_events()[1]
    with sqlite3.connect(tmp_path / "state" / "autonomic.db") as db:
        db.execute("UPDATE audit SET data = ? WHERE seq = ?",
                   (json.dumps({**target.data, "reason": "nothing to see"}), target.seq))
    broken = cli("audit", "verify", "-c", cfg)
    assert broken.exit_code == 1
    assert f"seq {target.seq}: hash mismatch" in broken.stderr


# --- approve / deny ------------------------------------------------------------------------


def _incident(store: Store, prefix: str, state: IncidentState, *, closed: bool = False,
              service: str = "web", cause: str = "memory") -> Incident:
    now = time.time()
    inc = Incident(id=prefix + new_id()[len(prefix):], service=service, cause=cause, state=state,
                   severity=Severity.WARNING, kind=FindingKind.FORECAST, opened_at=now - 60, updated_at=now,
                   last_finding_at=now - 5, summary=f"{service} {cause} trouble",
                   closed_at=now if closed else None,
                   resolution=Resolution.RESOLVED if closed else None)
    store.record(inc, actor="engine", event="incident.opened", subject=inc.id)
    return inc


def test_approve_writes_the_approval_state_with_verdict_and_actor(cfg: Path, store: Store) -> None:
    inc = _incident(store, "1111aaaa", IncidentState.AWAITING_APPROVAL)
    result = cli("approve", inc.id[:8], "-m", "ok", "--actor", "person:alice", "-c", cfg)
    assert result.exit_code == 0, result.stderr
    assert inc.id[:8] in result.stdout
    answer = store.get_state(f"approval:{inc.id}")
    assert answer is not None
    assert (answer["verdict"], answer["actor"], answer["comment"]) == ("approve", "person:alice", "ok")
    last = store.audit_events()[-1]
    assert (last.kind, last.actor, last.subject) == ("approval.approve", "person:alice", f"approval:{inc.id}")


def test_approve_stamps_the_answer_by_the_database_servers_clock_not_the_operators_machines(
        tmp_path: Path, postgres_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The engine judges an approval late by when it was given: by a laptop two hours behind, an
    approval given after the request expired would count as given in time."""
    config = _write(tmp_path / "pg.yaml", f"engine: {{state_dir: {tmp_path / 'state'}, host_metrics: false, "
                                          f"database: '{postgres_url}'}}\nservices:\n  - name: web\n")
    store = Store(postgres_url)
    try:
        inc = _incident(store, "3333cccc", IncidentState.AWAITING_APPROVAL)
        real = time.time
        monkeypatch.setattr(time, "time", lambda: real() - 7200)
        result = cli("approve", inc.id[:8], "-m", "ok", "-c", config)
        monkeypatch.undo()
        assert result.exit_code == 0, result.stderr
        answer = store.get_state(f"approval:{inc.id}")
        assert answer is not None and abs(answer["ts"] - store.server_time()) < 60, answer
    finally:
        store.close()


def test_report_pause_and_token_times_are_the_database_servers_clock_not_the_operators_machines(
        tmp_path: Path, postgres_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """On a laptop two hours behind, ``autonomic report daily`` ended its window two hours before
    now by the clock every replica stamps the store with (the database server's), leaving those
    hours out; ``autonomic pause`` and ``autonomic token create`` stamped their times by it too."""
    from autonomic.oversight.reports import _when

    config = _write(tmp_path / "pg.yaml", f"engine: {{state_dir: {tmp_path / 'state'}, host_metrics: false, "
                                          f"database: '{postgres_url}'}}\nservices:\n  - name: web\n")
    store = Store(postgres_url)
    try:
        before = store.server_time()
        real = time.time
        monkeypatch.setattr(time, "time", lambda: real() - 7200)
        report = cli("report", "daily", "-c", config)
        paused = cli("pause", "-r", "maintenance", "-c", config)
        token = cli("token", "create", "--name", "alice", "--role", "viewer", "-c", config)
        monkeypatch.undo()
        after = store.server_time()
        assert (report.exit_code, paused.exit_code, token.exit_code) == (0, 0, 0), report.stderr + paused.stderr
        assert any(f"to {_when(t)}" in report.stdout for t in (before, after)), report.stdout[:300]
        pause = store.get_state("pause:global")
        assert pause is not None and before - 1 <= pause["ts"] <= after + 1, pause
        (created,) = [v["created_at"] for k, v in store.states("token:").items()]
        assert before - 1 <= created <= after + 1
    finally:
        store.close()


def test_an_approval_given_after_its_request_expired_is_refused_saying_so_and_audited_as_late(
        cfg: Path, store: Store) -> None:
    """The request was made two hours ago (approval_ttl_s: an hour); the engine, stopped meanwhile,
    has not yet closed the incident as expired. Before, ``autonomic approve`` said "the engine acts
    on its next tick" (exit 0) and the engine then expired it without acting: the person believed a
    fix was coming. Now it is refused (exit 2) saying the request expired, when, and that nothing
    will be done; no answer is stored, and the audit log says who approved, and how late."""
    inc = _incident(store, "8888aaaa", IncidentState.AWAITING_APPROVAL)
    action = ActionSpec(type="process", target="web", params={"op": "restart"})
    diagnosis = Diagnosis(incident_id=inc.id, ts=inc.opened_at, pattern_id="process-down-restart", action=action,
                          confidence=0.8, rationale="down")
    asked = Decision(incident_id=inc.id, diagnosis_id=diagnosis.id, ts=time.time() - 7200,
                     verdict=Verdict.NEEDS_APPROVAL, action=action)
    store.record(diagnosis, asked, actor="engine", event="decision.needs_approval", subject=inc.id)
    result = cli("approve", inc.id[:8], "-m", "go", "--actor", "person:alice", "-c", cfg)
    assert result.exit_code == 2, result.stdout
    assert "the engine acts" not in result.stdout + result.stderr
    assert result.stderr.startswith("autonomic: incident 8888aaaa: too late, nothing will be done on this approval: "
                                    "its approval request expired at "), result.stderr
    assert "(engine.approval_ttl_s 3600 s after it was asked)" in result.stderr
    assert "the engine closes the incident as expired at its next look" in result.stderr
    assert store.get_state(f"approval:{inc.id}") is None
    late = store.audit_events()[-1]
    assert (late.kind, late.actor, late.subject) == ("approval.late", "person:alice", inc.id)
    assert (late.data["incident"], late.data["decision"], late.data["comment"]) == (inc.id, asked.id, "go")
    assert late.data["expired_at"] == asked.ts + 3600 and 3590 < late.data["late_by_s"] < 3700


class Asking:
    """A real engine over a real store, built from the config file ``path`` as it read it at its
    start (``engine.approval_ttl_s: ttl_s``), that asked a person ``ago`` seconds ago (its clock,
    a FakeClock, is moved by hand; the CLI stamps its answers by the store's, the real one): web
    is down (``up`` 0, replayed) and its fallback, an HTTP call, waits for approval."""

    def __init__(self, tmp_path: Path, ttl_s: float, ago: float) -> None:
        from autonomic.config import load_config
        from autonomic.engine import Engine
        from autonomic.monitor.replay import ReplaySource
        from autonomic.oversight.notify import Dispatcher
        from autonomic.testing import FakeClock

        self.path = tmp_path / "autonomic.yaml"
        self.state = tmp_path / "state"
        self.write(ttl_s)
        start = time.time() - ago
        self.clock = FakeClock(start)
        self.source = ReplaySource([Sample("web", "up", start + i, 0.0) for i in range(5)])
        self.store = Store(f"sqlite:///{self.state / 'autonomic.db'}")
        self.engine = Engine(load_config(self.path), clock=self.clock, store=self.store, sources=[self.source],
                             notifiers=Dispatcher())
        self.engine.start()
        for _ in range(5):
            self.engine.tick()
            self.clock.advance(1.0)
        (self.incident,) = self.store.incidents(states=[IncidentState.AWAITING_APPROVAL])
        self.asked = self.store.decisions(self.incident.id)[-1]

    def write(self, ttl_s: float) -> None:
        """The config file, as the engine read it at its start, or as edited since."""
        _write(self.path, f"engine: {{state_dir: {self.state}, host_metrics: false, interval_s: 1, "
                          f"approval_ttl_s: {ttl_s:g}}}\n"
                          "services:\n  - name: web\n    actuators: {http: {base_url: 'http://127.0.0.1:9'}}\n"
                          "    fallback: {type: http, params: {method: POST, path: /restart}}\n"
                          "policy: {autonomy: approve}\n")

    def look(self) -> None:
        """The engine's next ticks, now (web still down)."""
        now = time.time()
        self.source._samples.extend(Sample("web", "up", now + i, 0.0) for i in range(-2, 3))
        self.clock.advance(now - self.clock.now())
        for _ in range(3):
            self.engine.tick()
            self.clock.advance(1.0)


@pytest.fixture
def asking(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Asking]:
    ttl_s, ago = request.param
    engine = Asking(tmp_path, ttl_s, ago)
    yield engine
    engine.engine.shutdown()


@pytest.mark.parametrize("asking", [(7200, 4000)], indirect=True)
def test_an_approval_in_time_by_the_engines_ttl_is_taken_though_the_config_file_was_edited_shorter_since(
        asking: Asking) -> None:
    """The reviewer's reproduction: the engine started with approval_ttl_s 7200 and asked 4000 s
    ago; the file was then edited to 3600, the engine not restarted. Before, ``autonomic approve``
    read 3600 from the file and refused the approval as late (exit 2, "nothing will be done")
    while the engine would have acted on it. Now the request carries its expiry, as the engine
    set it, and the CLI judges by that: the approval is taken, and the engine acts on it."""
    asking.write(3600)
    inc = asking.incident
    result = cli("approve", inc.id[:8], "-m", "go", "--actor", "person:alice", "-c", asking.path)
    assert result.exit_code == 0, result.stderr
    assert "the engine acts on its next tick" in result.stdout
    assert not [e for e in asking.store.audit_events(subject=inc.id) if e.kind == "approval.late"]
    asking.look()
    assert [(d.verdict, d.decided_by) for d in asking.store.decisions(inc.id)] == [
        (Verdict.NEEDS_APPROVAL, "engine"), (Verdict.APPROVED, "person:alice")]
    assert [a.type for a in asking.store.actions(incident_id=inc.id)] == ["http"]


@pytest.mark.parametrize("asking", [(3600, 4000)], indirect=True)
def test_an_approval_late_by_the_engines_ttl_is_refused_though_the_config_file_was_edited_longer_since(
        asking: Asking) -> None:
    """The other way round: the engine started with 3600 and asked 4000 s ago; the file now says
    7200. Before, ``autonomic approve`` took the approval and told the person the engine acts on
    it; the engine then closed the incident as expired and did nothing. Now it is refused as late,
    naming the request's own expiry (3600 s after it was asked), and the engine agrees."""
    asking.write(7200)
    inc = asking.incident
    result = cli("approve", inc.id[:8], "-m", "go", "--actor", "person:alice", "-c", asking.path)
    assert result.exit_code == 2, result.stdout
    assert "the engine acts" not in result.stdout + result.stderr
    assert "too late, nothing will be done on this approval" in result.stderr
    assert "(engine.approval_ttl_s 3600 s after it was asked)" in result.stderr
    late = asking.store.audit_events(subject=inc.id)[-1]
    assert late.kind == "approval.late" and late.data["expired_at"] == asking.asked.ts + 3600
    asking.look()
    closed = asking.store.get(Incident, inc.id)
    assert closed is not None and closed.state == IncidentState.EXPIRED
    assert asking.store.actions(incident_id=inc.id) == []


def test_deny_defaults_the_actor_to_this_user(cfg: Path, store: Store) -> None:
    inc = _incident(store, "2222bbbb", IncidentState.AWAITING_APPROVAL)
    assert cli("deny", inc.id[:8], "-m", "not now", "-c", cfg).exit_code == 0
    answer = store.get_state(f"approval:{inc.id}")
    assert answer is not None and answer["verdict"] == "deny" and answer["actor"].startswith("person:")


def test_approve_and_deny_say_what_they_did_in_plain_words(cfg: Path, store: Store) -> None:
    yes = _incident(store, "5555aaaa", IncidentState.AWAITING_APPROVAL, cause="cpu")
    no = _incident(store, "6666bbbb", IncidentState.AWAITING_APPROVAL, cause="disk")
    approved = cli("approve", yes.id[:8], "-c", cfg).stdout
    assert approved.startswith("approved incident 5555aaaa ") and "the engine acts on its next tick" in approved
    denied = cli("deny", no.id[:8], "-c", cfg).stdout
    # before, a denial also said "the engine acts on its next tick", which reads as the opposite
    assert denied.startswith("denied incident 6666bbbb ") and denied.rstrip().endswith(
        "nothing is done; it stays with a person")


def test_an_unknown_or_finished_incident_is_named_whole_and_quoted(cfg: Path, store: Store) -> None:
    done = _incident(store, "7777cccc", IncidentState.RESOLVED, closed=True)
    assert "incident 7777cccc is not awaiting approval" in cli("approve", "7777", "-c", cfg).stderr
    unknown = cli("explain", "9999ffff", "-c", cfg)
    assert unknown.exit_code == 2
    assert unknown.stderr.strip() == "autonomic: no incident has an id starting with '9999ffff'"
    assert done.id


def test_approve_refuses_an_incident_not_awaiting_approval_and_an_unknown_id(cfg: Path, store: Store) -> None:
    done = _incident(store, "3333cccc", IncidentState.RESOLVED, closed=True)
    result = cli("approve", done.id[:8], "-c", cfg)
    assert result.exit_code == 2
    assert "not awaiting approval" in result.stderr and "resolved" in result.stderr
    unknown = cli("approve", "9999ffff", "-c", cfg)
    assert unknown.exit_code == 2 and "9999ffff" in unknown.stderr
    assert store.states("approval:") == {}


# --- explain / incidents -------------------------------------------------------------------


def _full_chain(store: Store) -> dict[str, Any]:
    """finding -> incident -> diagnosis -> decision (2 gates) -> action (steps) -> outcome."""
    now = time.time()
    inc = Incident(id="4444dddd" + new_id()[8:], service="web", cause="memory", state=IncidentState.OPEN,
                   severity=Severity.WARNING, kind=FindingKind.FORECAST, opened_at=now - 30,
                   updated_at=now - 30, last_finding_at=now - 30,
                   summary="memory_percent will reach 85 in 40 s")
    finding = Finding(service="web", metric="memory_percent", kind=FindingKind.FORECAST, cause="memory",
                      severity=Severity.WARNING, confidence=0.9, ts=now - 30, value=70.0, threshold=85.0,
                      summary="memory_percent will reach 85 in 40 s", incident_id=inc.id,
                      evidence={"slope_per_s": 0.4, "r2": 0.97})
    store.record(finding, inc, actor="engine", event="incident.opened", subject=inc.id)
    spec = ActionSpec(type="process", target="web", params={"op": "graceful_restart", "grace_s": 10})
    diagnosis = Diagnosis(incident_id=inc.id, ts=now - 29, pattern_id="memory-leak-graceful-restart",
                          action=spec, confidence=0.8, rationale="memory forecast matches the leak pattern",
                          candidates=[Candidate(pattern_id="memory-leak-graceful-restart", confidence=0.8,
                                                reasons=["cause memory", "kind forecast"]),
                                      Candidate(pattern_id="memory-generic-escalate", confidence=0.3,
                                                reasons=["cause memory"])])
    store.record(diagnosis, inc.model_copy(update={"state": IncidentState.DIAGNOSED}), actor="engine",
                 event="incident.diagnosed", subject=inc.id)
    gates = [GateResult(gate="autonomy", passed=True, reason="auto by default"),
             GateResult(gate="rate_limit", passed=True, reason="1 of 20 today")]
    decision = Decision(incident_id=inc.id, diagnosis_id=diagnosis.id, ts=now - 28, verdict=Verdict.APPROVED,
                        action=spec, gates=gates)
    store.record(decision, actor="engine", event="decision.approved", subject=inc.id)
    action = Action(decision_id=decision.id, incident_id=inc.id, service="web", type="process",
                    params=spec.params, idempotency_key="act-test", state=ActionState.SUCCEEDED,
                    verify=VerifySpec(metric="memory_percent", max=85), created_at=now - 28,
                    updated_at=now - 10, applied_at=now - 27,
                    steps=[StepRecord(name="apply", ok=True, started_at=now - 28, finished_at=now - 27,
                                      detail={"old_pid": 10, "pid": 11}),
                           StepRecord(name="verify", ok=True, started_at=now - 27, finished_at=now - 10,
                                      detail={"verdict": "pass"})])
    outcome = Outcome(action_id=action.id, incident_id=inc.id, ts=now - 10, verdict=VerifyVerdict.PASS,
                      reason="memory_percent stayed under 85 (max 31.2)")
    resolved = inc.model_copy(update={"state": IncidentState.RESOLVED, "resolution": Resolution.PREVENTED,
                                      "closed_at": now - 10, "updated_at": now - 10})
    store.record(action, resolved, outcome, actor="engine", event="action.verified", subject=action.id)
    return {"incident": resolved, "finding": finding, "diagnosis": diagnosis, "decision": decision,
            "action": action, "outcome": outcome}


def test_explain_prints_findings_candidates_every_gate_the_action_and_the_outcome(
    cfg: Path, store: Store
) -> None:
    chain = _full_chain(store)
    result = cli("explain", chain["incident"].id[:8], "-c", cfg)
    assert result.exit_code == 0, result.stderr
    text = result.stdout
    assert chain["finding"].summary in text and "slope_per_s" in text
    assert "memory-leak-graceful-restart" in text and "memory-generic-escalate" in text
    for gate in chain["decision"].gates:
        assert f"{gate.gate}: {gate.reason}" in text
    assert "Actions:" in text and "process on web" in text and "succeeded" in text
    assert " apply " in text and " verify " in text
    assert "Outcome:" in text and chain["outcome"].reason in text


def test_explain_does_not_show_a_persons_approval_that_a_gate_refused_as_their_denial(
        cfg: Path, store: Store) -> None:
    """A person approved ("-m ok") while automation was paused: the decision made on that approval
    is DENIED by the pause gate. Before, explain printed "DENIED by person:ann (ok)", which reads as
    ann's denial; now it names the gate that refused and says ann approved."""
    chain = _full_chain(store)
    inc = chain["incident"]
    gates = [GateResult(gate="paused", passed=False, reason="engine paused: deploy freeze"),
             GateResult(gate="autonomy", passed=True, reason="autonomy approve: approved by a person")]
    store.record(Decision(incident_id=inc.id, diagnosis_id=chain["diagnosis"].id, ts=time.time(),
                          verdict=Verdict.DENIED, gates=gates, decided_by="person:ann", comment="ok"),
                 actor="person:ann", event="decision.denied", subject=inc.id)
    text = cli("explain", inc.id[:8], "-c", cfg).stdout
    assert "DENIED by paused, though person:ann approved (ok)" in text
    assert "DENIED by person:ann" not in text



def test_explain_of_an_incident_closed_with_nothing_decided_says_none_not_none_yet(cfg: Path, store: Store) -> None:
    """An incident that cleared on its own before anything was decided (closed, expired): its
    Decisions section said nothing at all and its Outcome "none yet", as if one were to come; now
    both say "none". One still open says "none yet"."""
    closed = _incident(store, "7777aaaa", IncidentState.EXPIRED, closed=True)
    still = _incident(store, "7777bbbb", IncidentState.OPEN)
    text = cli("explain", closed.id[:8], "-c", cfg).stdout
    assert "Decisions (every gate and its reason):\n  none\n" in text
    assert text.endswith("Outcome:\n  none\n") and "none yet" not in text
    text = cli("explain", still.id[:8], "-c", cfg).stdout
    assert "Decisions (every gate and its reason):\n  none yet\n" in text and text.endswith("Outcome:\n  none yet\n")


def test_explain_json_returns_every_section_of_the_chain(cfg: Path, store: Store) -> None:
    chain = _full_chain(store)
    result = cli("explain", chain["incident"].id[:8], "--json", "-c", cfg)
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert {"incident", "findings", "diagnoses", "decisions", "actions", "outcomes", "audit"} <= set(data)
    assert data["incident"]["id"] == chain["incident"].id
    assert [f["id"] for f in data["findings"]] == [chain["finding"].id]
    assert [len(d["candidates"]) for d in data["diagnoses"]] == [2]
    assert [g["gate"] for g in data["decisions"][0]["gates"]] == ["autonomy", "rate_limit"]
    assert [s["name"] for s in data["actions"][0]["steps"]] == ["apply", "verify"]
    assert data["outcomes"][0]["verdict"] == "pass"



def test_explain_takes_an_actions_or_a_decisions_id_and_explains_its_incident(cfg: Path, store: Store) -> None:
    """The engine's log and `autonomic audit show` name actions by their own ids ("reconciling
    process action 3f2a9c1d on web"): explain given one said "no incident has an id starting
    with ..."; now it explains the incident the action (or decision) belongs to."""
    chain = _full_chain(store)
    whole = cli("explain", chain["incident"].id[:8], "-c", cfg).stdout
    for noun in ("action", "decision"):
        result = cli("explain", chain[noun].id[:8], "-c", cfg)
        assert result.exit_code == 0, result.stderr
        assert result.stdout == whole

def test_explain_of_a_prefix_that_starts_an_incidents_id_and_another_incidents_action_id_is_ambiguous(
        cfg: Path, store: Store) -> None:
    """explain takes an incident's id or an action's or a decision's. A prefix that starts an
    incident's id and also the id of an action (or decision) of another incident named that
    incident alone, silently: the person who copied the action's id from the log read another
    incident's story. Now it is ambiguous (exit 2, both named), as two incidents' ids are; a
    prefix whose incident and action are one incident's still explains it."""
    chain = _full_chain(store)
    for noun in ("action", "decision"):
        prefix = chain[noun].id[:6]
        other = _incident(store, prefix, IncidentState.OPEN, closed=False)
        result = cli("explain", prefix, "-c", cfg)
        assert result.exit_code == 2, result.stdout
        assert "ambiguous" in result.stderr and other.id in result.stderr and chain[noun].id in result.stderr, \
            result.stderr
        assert cli("explain", chain[noun].id[:12], "-c", cfg).stdout == cli(
            "explain", chain["incident"].id, "-c", cfg).stdout
        assert cli("explain", other.id[:12], "-c", cfg).exit_code == 0
    mine = _incident(store, "5555eeee", IncidentState.OPEN)
    store.record(chain["action"].model_copy(update={"id": "5555eeee" + new_id()[8:], "incident_id": mine.id}),
                 actor="engine", event="action.created", subject=mine.id)
    result = cli("explain", "5555eeee", "-c", cfg)  # the incident's and its own action's: one incident
    assert result.exit_code == 0, result.stderr
    assert result.stdout == cli("explain", mine.id, "-c", cfg).stdout



def test_explain_unknown_incident_exits_2(cfg: Path, store: Store) -> None:
    result = cli("explain", "9999ffff", "-c", cfg)
    assert result.exit_code == 2 and "9999ffff" in result.stderr


def test_incidents_lists_open_ones_and_all_includes_closed(cfg: Path, store: Store) -> None:
    waiting = _incident(store, "5555eeee", IncidentState.AWAITING_APPROVAL)
    closed = _incident(store, "6666ffff", IncidentState.RESOLVED, closed=True, cause="down")
    open_only = cli("incidents", "--json", "-c", cfg)
    assert open_only.exit_code == 0, open_only.stderr
    assert [i["id"] for i in json.loads(open_only.stdout)] == [waiting.id]
    everything = cli("incidents", "--all", "--json", "-c", cfg)
    assert everything.exit_code == 0
    assert {i["id"] for i in json.loads(everything.stdout)} == {waiting.id, closed.id}


def test_incidents_and_status_show_when_an_incident_opened_with_its_date_unless_today_and_the_zone(
    cfg: Path, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The opened column read "14:03:12" for an incident of two days ago as for one of today, and
    named no zone. Now the heading names the UTC offset and a row not of today shows its date."""
    monkeypatch.delenv("COLUMNS", raising=False)
    now = time.time()
    for prefix, opened in (("1234aaaa", now), ("5678bbbb", now - 2 * 86400)):
        inc = _incident(store, prefix, IncidentState.OPEN, cause=f"c{prefix[:4]}")
        store.record(inc.model_copy(update={"opened_at": opened}), actor="engine", event="incident.updated",
                     subject=inc.id)
    for args in (["incidents"], ["status"]):
        shown = cli(*args, "-c", cfg).stdout
        assert f"opened ({time.strftime('%z', time.localtime(now))})" in shown, shown
        (today,) = [line for line in shown.splitlines() if "1234aaaa" in line]
        (older,) = [line for line in shown.splitlines() if "5678bbbb" in line]
        assert f" {time.strftime('%H:%M:%S', time.localtime(now))} " in today, today
        assert not re.search(r"\d{4}-\d\d-\d\d", today), today
        assert f" {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(now - 2 * 86400))} " in older, older


def test_incidents_written_to_a_pipe_keep_one_line_per_incident_for_grep(
    cfg: Path, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not a terminal and no COLUMNS: rich would wrap the table at 80 columns and split each
    summary over several lines (``| grep web`` then missed half of each row)."""
    monkeypatch.delenv("COLUMNS", raising=False)
    chain = _full_chain(store)
    result = cli("incidents", "--all", "-c", cfg)
    assert result.exit_code == 0, result.stderr
    (row,) = [line for line in result.stdout.splitlines() if chain["incident"].id[:8] in line]
    assert "web" in row and "prevented" in row and chain["incident"].summary in row


def test_status_and_incidents_print_text_from_outside_as_written_not_as_rich_markup(
    cfg: Path, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An alert's summary like ``disk [/var] full`` made ``autonomic status`` and ``incidents``
    fail (rich read ``[/var]`` as a closing tag and raised); ``[bold]`` in a pause's reason was
    taken as a style. Both are printed as written."""
    monkeypatch.delenv("COLUMNS", raising=False)
    inc = _incident(store, "7777aaaa", IncidentState.OPEN)
    inc = inc.model_copy(update={"summary": "disk [/var] full [bold]now[/]"})
    store.record(inc, actor="engine", event="incident.updated", subject=inc.id)
    store.set_state("pause:global", {"reason": "deploy [/x] [red]", "actor": "person:ann"},
                    actor="person:ann", event="pause.set")
    for args in (("incidents",), ("status",)):
        result = cli(*args, "-c", cfg)
        assert result.exit_code == 0, (args, result.output)
        assert "disk [/var] full [bold]now[/]" in result.stdout
    assert "PAUSED global: deploy [/x] [red] (by person:ann)" in result.stdout


def test_the_cli_starts_without_loading_scipy_stats_or_the_detector_kernels() -> None:
    """``autonomic pause`` at 3 a.m. should not wait for scipy.stats and numba (about a second):
    they load only when a command uses them."""
    import subprocess
    import sys

    probe = "import sys, autonomic.cli; print(sorted(m for m in ('numba', 'scipy.stats') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("fmt", ["rich", "text", "json"])
def test_the_engines_log_shows_control_characters_in_what_it_quotes_as_escapes(
        monkeypatch: pytest.MonkeyPatch, fmt: str) -> None:
    """`autonomic run` logs incidents' summaries (an alert annotation's text): its log handler,
    in every format, shows an escape sequence in them as \\x1b, never raw on the terminal or in
    the journal."""
    import logging

    from autonomic import cli as cli_module
    from autonomic.logformat import LogFormat

    handlers: list[logging.Handler] = []
    monkeypatch.setattr(logging, "basicConfig", lambda **kw: handlers.extend(kw["handlers"]))
    cli_module._setup_logging("info", LogFormat(fmt))
    (handler,) = handlers
    record = logging.LogRecord("autonomic.engine", logging.INFO, __file__, 1, "incident %s opened: %s",
                               ("0b6756e0", "boom \x1b]0;owned\x07 now"), None)
    assert handler.filter(record)
    assert record.getMessage() == "incident 0b6756e0 opened: boom \\x1b]0;owned\\x07 now"
    # a logged exception's traceback quoting such text too, and with the secrets net after it
    from autonomic.redact import Secrets

    handler.addFilter(Secrets(["hunter2-secret"]).log_filter())
    try:
        raise ValueError("bad label \x1b[2J with hunter2-secret")
    except ValueError:
        import sys

        failed = logging.LogRecord("autonomic.engine", logging.ERROR, __file__, 1, "tick failed", None,
                                   sys.exc_info())
    assert handler.filter(failed)
    shown = handler.format(failed)
    assert "\x1b" not in shown and "hunter2" not in shown
    if fmt == "json":
        shown = json.loads(shown)["exc"]
    assert "ValueError: bad label \\x1b[2J with ***" in shown


# --- prune ---------------------------------------------------------------------------------



def test_prune_with_leader_election_and_no_shared_archive_dir_keeps_the_audit_log(
        tmp_path: Path, store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """With replicas (engine.leader_election) and no retention.archive_dir, the engine keeps the
    audit log in the database (README, Retention): the default archive, this host's state_dir, is
    not where the other replicas or the next pod look. `autonomic prune` did archive there (a
    `kubectl exec` into a pod: its emptyDir) and delete the entries from the database; now it
    keeps them as the engine does, and says why and what to set. The rest is pruned."""

    config = _write(tmp_path / "replicas.yaml",
                    f"engine: {{state_dir: {tmp_path / 'state'}, host_metrics: false,\n"
                    "         leader_election: {enabled: true}}\n"
                    "retention: {audit_days: 7}\n")
    inc = _resolved_long_ago_with_audit_a_month_ago(store, monkeypatch)

    for args in (("--dry-run",), ()):
        done = cli("prune", *args, "-c", config)
        assert done.exit_code == 0, done.stderr
        assert re.search(r"\b0 audit events\b", done.stdout) and "archived to" not in done.stdout
        assert "audit entries kept for ever" in done.stdout
        assert "retention.archive_dir" in done.stdout
    assert store.audit_anchor()[0] == 0 and not (tmp_path / "state" / "audit-archive").exists()
    assert store.get(Incident, inc.id) is None  # the incident retention no longer keeps went



def _audit_a_month_ago(store: Store, monkeypatch: pytest.MonkeyPatch, n: int,
                       incident: Incident | None = None) -> None:
    """``n`` audit entries stamped a month ago (the audit log is stamped by the wall clock), after
    ``incident``'s opening when given."""
    import autonomic.knowledge.store as store_module

    month_ago = time.time() - 30 * 86_400
    with monkeypatch.context() as m:
        m.setattr(store_module.time, "time", lambda: month_ago)
        if incident is not None:
            store.record(incident, actor="engine", event="incident.opened", subject=incident.id)
        with store.unit():
            for i in range(n):
                store.audit("alice", "pause.set", "web", {"i": i})


def _resolved_long_ago_with_audit_a_month_ago(store: Store, monkeypatch: pytest.MonkeyPatch) -> Incident:
    """An incident closed 229 days ago, recorded with 1,000 audit entries a month ago: past the
    retention of the prune tests' configs."""
    month_ago = time.time() - 30 * 86_400
    inc = Incident(service="web", cause="down", severity=Severity.CRITICAL, kind=FindingKind.STATE,
                   opened_at=month_ago - 200 * 86_400, updated_at=month_ago, last_finding_at=month_ago,
                   summary="down", state=IncidentState.RESOLVED, closed_at=month_ago - 199 * 86_400)
    _audit_a_month_ago(store, monkeypatch, 1000, incident=inc)
    return inc


def test_prune_into_an_archive_dir_it_cannot_write_says_so_and_prunes_no_audit_entry(
        tmp_path: Path, store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """retention.archive_dir under a regular file (a mount that is not there, a typo): the prune
    stops before deleting a single audit entry, as the archive comes first. It did, but through
    a Python traceback; now a one-line error naming the field and the folder, exit 1."""

    (tmp_path / "afile").write_text("")
    config = _write(tmp_path / "bad-archive.yaml",
                    f"engine: {{state_dir: {tmp_path / 'state'}, host_metrics: false}}\n"
                    f"retention: {{audit_days: 7, archive_dir: {tmp_path / 'afile' / 'archive'}}}\n")
    _audit_a_month_ago(store, monkeypatch, 1001)

    result = cli("prune", "-c", config)
    assert result.exit_code == 1, result.stdout
    assert "Traceback" not in result.stderr
    assert f"retention.archive_dir: cannot write the audit archive in {tmp_path / 'afile' / 'archive'}" in \
        result.stderr, result.stderr
    assert store.audit_anchor()[0] == 0 and len(store.audit_events()) == 1001


def test_prune_whose_archive_fails_after_some_chunks_says_how_many_audit_entries_it_pruned(
        tmp_path: Path, store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """The archive fails at the second chunk (here, a real one: a folder where its file goes; a
    disk that fills up does the same): the first chunk was archived and pruned. The error said
    "no audit entry was pruned" all the same; now it says how many were, up to which seq, and
    that the rest are kept."""
    from autonomic.knowledge.archive import archive_path

    archive = tmp_path / "archive"
    config = _write(tmp_path / "archive.yaml",
                    f"engine: {{state_dir: {tmp_path / 'state'}, host_metrics: false}}\n"
                    f"retention: {{audit_days: 7, archive_dir: {archive}}}\n")
    _audit_a_month_ago(store, monkeypatch, 2001)
    in_the_way = archive_path(archive, 1001, 2000)
    in_the_way.mkdir(parents=True)
    (in_the_way / "x").write_text("")

    result = cli("prune", "-c", config)
    assert result.exit_code == 1, result.stdout
    assert store.audit_anchor()[0] == 1000  # the first chunk went, archived
    assert "no audit entry was pruned" not in result.stderr, result.stderr
    assert "1000 audit entries (seq 1 to 1000) were archived and pruned" in result.stderr, result.stderr
    assert "the rest are kept" in result.stderr


def test_prune_dry_run_counts_prune_archives_and_verify_and_explain_say_what_went(
        cfg: Path, store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:

    cfg.write_text(cfg.read_text() + "retention: {audit_days: 7}\n")
    inc = _resolved_long_ago_with_audit_a_month_ago(store, monkeypatch)
    seq = store.audit_events(newest=True, limit=1)[0].seq

    dry = cli("prune", "--dry-run", "-c", cfg)
    assert dry.exit_code == 0, dry.stderr
    assert "would prune" in dry.stdout and re.search(r"\b1 incident\n", dry.stdout)  # before: "1 incidents"
    assert re.search(r"\b1000 audit events\b", dry.stdout)
    assert store.get(Incident, inc.id) is not None and store.audit_events(newest=True, limit=1)[0].seq == seq

    done = cli("prune", "-c", cfg, "--actor", "ops")
    assert done.exit_code == 0, done.stderr
    assert "pruned (" in done.stdout and re.search(r"\b1000 audit events\b", done.stdout)
    archive = tmp_path / "state" / "audit-archive" / "audit-000000000001-000000001000.jsonl.gz"
    assert f"archived to {archive}" in done.stdout and archive.exists()
    assert store.get(Incident, inc.id) is None
    assert {e.actor for e in store.audit_events() if e.kind.startswith("retention.")} == {"ops"}

    verified = cli("audit", "verify", "--archive", "-c", cfg)
    assert verified.exit_code == 0, verified.stderr
    assert "verified from the retention anchor: seq 1..1000 were pruned" in verified.stdout
    assert "audit archive ok: 1000 entries" in verified.stdout

    gone = cli("explain", inc.id[:8], "-c", cfg)
    assert gone.exit_code == 2 and "retention pruned closed incidents before" in gone.stderr

    archive.unlink()
    broken = cli("audit", "verify", "--archive", "-c", cfg)
    assert broken.exit_code == 1 and "the archive does not join it" in broken.stderr
    assert cli("audit", "verify", "-c", cfg).exit_code == 0  # the store's own chain is still whole


def test_audit_verify_archive_after_restoring_a_backup_older_than_the_archive_says_whether_they_agree(
        cfg: Path, store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A store restored from a backup taken before a prune starts its chain before the archive's
    end: the two overlap. When they hold the same entries there (the engine stopped, nothing
    written since the backup), nothing is wrong, yet `audit verify --archive` exited 1 saying the
    archive did not join, "files missing?". Now it says they overlap and agree; and when the
    restored store went on with other entries under those seqs, it says so, naming the seq (a real
    SQLite backup and restore, the CLI in process)."""
    cfg.write_text(cfg.read_text() + "retention: {audit_days: 7}\n")
    db = tmp_path / "state" / "autonomic.db"
    _audit_a_month_ago(store, monkeypatch, 600)
    backups = {}
    for name in ("at600", "at1010"):
        if name == "at1010":
            _audit_a_month_ago(store, monkeypatch, 410)
        backups[name] = tmp_path / f"{name}.db"
        live, copy = sqlite3.connect(db), sqlite3.connect(backups[name])
        live.backup(copy)
        live.close()
        copy.close()
    assert cli("prune", "-c", cfg).exit_code == 0
    store.close()

    def restore(backup: Path) -> None:  # as sqlite3's ".restore", the engine stopped
        saved, live = sqlite3.connect(backup), sqlite3.connect(db)
        saved.backup(live)
        saved.close()
        live.close()

    restore(backups["at1010"])
    same = cli("audit", "verify", "--archive", "-c", cfg)
    assert same.exit_code == 0, same.stderr
    assert "audit archive ok: 1000 entries" in same.stdout
    assert "seq 1..1000 are both in the archive and in the store, the same entries" in same.stdout

    restore(backups["at600"])
    other = Store(f"sqlite:///{db}")
    with other.unit():
        for i in range(500):
            other.audit("bob", "pause.lifted", "web", {"i": i})
    other.close()
    diverged = cli("audit", "verify", "--archive", "-c", cfg)
    assert diverged.exit_code == 1
    assert "the store holds other entries than the archive at seq 1000" in diverged.stderr, diverged.stderr
    assert "files missing" not in diverged.stderr


def test_prune_says_nothing_was_old_enough_when_nothing_was_dry_run_or_not(cfg: Path, store: Store) -> None:
    """Before, only the real run said it; --dry-run printed the zeros alone."""
    store.audit("alice", "pause.set", "web", {})  # just written: the default retention keeps it
    for args in (["--dry-run"], []):
        result = cli("prune", *args, "-c", cfg)
        assert result.exit_code == 0, result.stderr
        assert result.stdout.rstrip().endswith("\n  nothing was old enough"), result.stdout
    assert [e.kind for e in store.audit_events()] == ["pause.set"]  # kept, and nothing pruned to record


# --- -c where the operator puts it --------------------------------------------------------------


@pytest.mark.parametrize("words", [
    ["audit", "verify"], ["audit", "show"], ["report", "daily", "--now", "1700000000"], ["token", "list"],
    ["patterns", "list"], ["patterns", "show", "mine"]])
def test_every_command_group_takes_c_after_its_name_as_after_the_subcommand(
        words: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``autonomic audit -c FILE verify`` was "No such option: -c" (exit 2): -c had to follow the
    last word. Now the group takes it too, and both placements read the same config and store."""
    _write(tmp_path / "mine.yaml", "id: mine\nmatch: {cause: memory}\nprior_confidence: 0.5\n")
    config = _write(tmp_path / "grouped.yaml", f"engine: {{state_dir: {tmp_path / 'state'}, host_metrics: false}}\n"
                                               "builtin_patterns: false\npatterns: [mine.yaml]\n")
    monkeypatch.chdir(tmp_path)  # were the config ignored, the defaults' store would be here
    assert cli("token", "-c", config, "create", "--role", "viewer", "--name", "alice").exit_code == 0
    group, sub, *rest = words
    before = cli(group, "-c", config, sub, *rest)
    after = cli(group, sub, *rest, "-c", config)
    first = cli("-c", config, group, sub, *rest)  # and before the group: autonomic -c FILE audit verify
    assert before.exit_code == 0, before.output
    assert (before.exit_code, before.stdout) == (after.exit_code, after.stdout) == (first.exit_code, first.stdout)
    marker = {"audit": "token.created" if sub == "show" else "audit chain ok: 1 entry", "report": "daily report",
              "token": "alice", "patterns": "mine"}[group]
    assert marker in before.stdout


def test_c_at_both_places_naming_two_files_is_refused_naming_both_and_the_same_file_twice_is_fine(
        cfg: Path, store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    other = _write(tmp_path / "other.yaml", f"engine: {{state_dir: {tmp_path / 'other'}, host_metrics: false}}\n")
    both = cli("audit", "-c", cfg, "verify", "-c", other)
    assert both.exit_code == 2 and not both.stdout
    assert f"-c/--config: given twice, naming two files: `audit -c {cfg}` and `verify -c {other}`" in both.stderr
    assert cli("token", "-c", cfg, "list", "-c", cfg).exit_code == 0
    # AUTONOMIC_CONFIG is the fallback: a -c typed before the subcommand wins over it, no conflict
    monkeypatch.setenv("AUTONOMIC_CONFIG", str(other))
    assert cli("token", "-c", cfg, "create", "--role", "viewer", "--name", "bob").exit_code == 0
    listed = cli("token", "list", "-c", cfg)
    assert "bob" in listed.stdout
    elsewhere = cli("token", "list")  # AUTONOMIC_CONFIG's store: bob is not there, nor was it made
    assert elsewhere.exit_code == 2 and f"no store at {tmp_path / 'other' / 'autonomic.db'}" in elsewhere.stderr


@pytest.mark.parametrize("words", [["status"], ["incidents", "--all"], ["pause", "-r", "freeze"],
                                   ["prune", "--dry-run"], ["check"], ["approve", "2222bbbb"]])
def test_every_command_takes_c_before_its_name_as_after_it(
        words: list[str], cfg: Path, store: Store, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """``autonomic -c FILE status`` was "No such option: -c": the config went after the command only."""
    monkeypatch.chdir(tmp_path)
    _incident(store, "2222bbbb", IncidentState.AWAITING_APPROVAL)
    first = cli("-c", cfg, *words)
    assert first.exit_code == 0, first.output
    if words[0] == "check":
        assert f"{cfg}: ok" in first.stdout
    elif words[0] == "approve":
        assert store.get_state("approval:" + store.resolve_id(Incident, "2222bbbb")) is not None
    elif words[0] == "pause":
        assert store.get_state("pause:global") is not None
    else:
        # prune names its cut-offs by the clock, to the second: the two runs may straddle one
        def timeless(out: str) -> str:
            return re.sub(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d [+-]\d{4}", "<time>", out)

        assert timeless(first.stdout) == timeless(cli(*words, "-c", cfg).stdout)


def test_c_before_a_command_that_reads_no_config_is_refused_not_ignored(cfg: Path) -> None:
    for words in (["demo"], ["canary", "judge"], ["rca"], ["detect"]):
        result = cli("-c", cfg, *words)
        assert result.exit_code == 2 and f"`autonomic {words[0]}` reads no autonomic.yaml" in result.stderr
    assert cli("check").exit_code == 2 and "--config: which autonomic.yaml" in cli("check").stderr


def test_python_dash_m_autonomic_runs_the_cli_as_the_autonomic_command_does() -> None:
    """``python -m autonomic`` (a venv not activated, a container with only the interpreter), a
    real process. Before, it failed: "No module named autonomic.__main__"."""
    proc = subprocess.run([sys.executable, "-m", "autonomic", "check", "-c", str(REPO / "examples" / "minimal.yaml")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "minimal.yaml: ok (1 service, " in proc.stdout


def test_an_id_not_found_with_no_config_given_says_which_store_was_looked_in_and_to_give_the_engines(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`autonomic approve ID` typed in another folder than the engine's, with no -c: the built-in
    defaults' store there has no such incident. Before, the message was only "no incident has an
    id starting with ID", as if the id were wrong; now it names the store looked in and -c FILE."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("AUTONOMIC_CONFIG", raising=False)
    Store(f"sqlite:///{tmp_path / '.autonomic' / 'autonomic.db'}").close()  # an engine ran here with the defaults
    for words in (["approve", "abcd1234", "-m", "ok"], ["deny", "abcd1234"], ["explain", "abcd1234"]):
        r = cli(*words)
        assert r.exit_code == 2, r.output
        assert "no incident has an id starting with 'abcd1234'" in r.output
        assert f"in {tmp_path / '.autonomic'}, the store of the built-in defaults" in r.output
        assert "-c FILE" in r.output


def test_status_with_no_config_given_where_no_engine_ran_says_which_store_it_read_and_to_give_the_engines(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`autonomic status` typed in another folder than the engine's, with no -c, read the built-in
    defaults' empty store there and said only "the engine has not run here" above an empty table of
    incidents, which reads as all quiet."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("AUTONOMIC_CONFIG", raising=False)
    Store(f"sqlite:///{tmp_path / '.autonomic' / 'autonomic.db'}").close()  # its store there, but no status.json
    shown = cli("status").stdout
    assert f"no live health in {tmp_path / '.autonomic'}: no engine has run there with the built-in defaults" in shown
    assert "-c FILE" in shown


def test_pause_with_the_store_locked_by_a_frozen_writer_pauses_by_file_and_resume_removes_it(
        cfg: Path, store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The kill switch must not depend on the database: a writer that froze mid-transaction holds
    SQLite's write lock (a real second connection in BEGIN IMMEDIATE), so the store cannot be
    written. `autonomic pause` then writes the pause file the engine reads before every action,
    says so (and why), status shows it, and resume removes it; the store is not changed."""
    monkeypatch.setattr("autonomic.knowledge.store._LOCK_WAIT_S", 0.5)  # the lock wait, 10 s by default
    assert store.states("pause:") == {}  # the store is there
    locker = sqlite3.connect(tmp_path / "state" / "autonomic.db", isolation_level=None)
    locker.execute("BEGIN IMMEDIATE")
    try:
        nobody = cli("pause", "-r", "db frozen", "-c", cfg)  # no engine runs here: the file pauses none elsewhere
        assert nobody.exit_code == 1 and "no engine runs here with this state_dir" in nobody.stderr
        # an engine runs here (its health written a moment ago, as `autonomic run` writes it)
        (tmp_path / "state" / "status.json").write_text(json.dumps({"ts": time.time(), "pid": 4242, "health": {}}))
        paused = cli("pause", "-r", "db frozen", "--actor", "person:ops", "-c", cfg)
        assert paused.exit_code == 0, paused.output
        path = tmp_path / "state" / "paused"
        assert json.loads(path.read_text()) | {"ts": 0} == {"reason": "db frozen", "actor": "person:ops", "ts": 0}
        assert "database is locked" in paused.stderr and f"by the pause file {path} instead" in paused.stdout
        assert "the engine running here (pid 4242)" in paused.stdout
        status = cli("status", "-c", cfg)
        assert status.exit_code == 0 and "PAUSED global: db frozen (by person:ops, pause file" in status.stdout
        assert paused_reason(store, "web", tmp_path / "state") == (
            f"global pause by the pause file {path} (set by person:ops): db frozen")
        resumed = cli("resume", "-c", cfg)
        assert resumed.exit_code == 0, resumed.output
        assert not path.exists() and "not audited" in resumed.stderr
    finally:
        locker.rollback()
        locker.close()
    assert store.states("pause:") == {} and [e.kind for e in store.audit_events()] == []


def test_a_pause_file_removed_by_resume_is_audited_with_who_lifted_it(cfg: Path, store: Store, tmp_path: Path) -> None:
    (tmp_path / "state").mkdir(exist_ok=True)
    assert store.states("pause:") == {}
    (tmp_path / "state" / "paused.web").write_text("hand-written\n")
    assert "PAUSED service:web: hand-written (by file, pause file" in cli("status", "-c", cfg).stdout
    resumed = cli("resume", "--service", "web", "--actor", "person:ops", "-c", cfg)
    assert resumed.exit_code == 0 and "removed the pause file" in resumed.stdout
    (event,) = store.audit_events()
    assert (event.kind, event.actor, event.subject) == ("pause.lifted", "person:ops", "pause:service:web")
    assert cli("resume", "--service", "web", "-c", cfg).exit_code == 2  # nothing left to lift


def test_check_of_a_bad_pattern_folder_and_a_file_in_it_names_each_problem_once(tmp_path: Path) -> None:
    """A config whose pattern folder mixes good and bad files, checked with one of its bad files
    given again (``autonomic check -c autonomic.yaml patterns/bad.yaml``): each problem is listed
    once, naming the file and field, exit 2. Before, the bad file's problems were listed twice,
    once by the config's path to it and once by the path given."""
    pdir = tmp_path / "patterns"
    pdir.mkdir()
    _write(pdir / "good.yaml", "id: good-one\nmatch: {cause: down}\nprior_confidence: 0.5\n")
    bad = _write(pdir / "bad.yaml", "id: bad-one\nmatch: {cause: down}\nprior_confidence: 2\n")
    config = _write(tmp_path / "autonomic.yaml", f"engine: {{state_dir: {tmp_path / 'state'}, host_metrics: false}}\n"
                                                 "services: []\npatterns: [patterns]\n")
    result = cli("check", "-c", config, bad)
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [f"{bad}:3: prior_confidence: Input should be less than or equal to 1"]
