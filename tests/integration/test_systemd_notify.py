"""``autonomic run`` under systemd: a real engine process told where systemd's notify socket is
(``NOTIFY_SOCKET``, ``WATCHDOG_USEC``), with the test holding that socket, a real AF_UNIX datagram
socket, as systemd would; and the example unit file, as systemd reads it."""

from __future__ import annotations

import configparser
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from servers import NotifySocket, free_port, wait_for

from autonomic.knowledge import Store
from autonomic.oversight.auth import create_token

REPO = Path(__file__).resolve().parents[2]
UNIT = REPO / "examples" / "systemd" / "autonomic.service"
ALERT = {"version": "4", "status": "firing", "receiver": "autonomic", "groupKey": "{}:{}", "groupLabels": {},
         "commonLabels": {}, "commonAnnotations": {}, "externalURL": "http://am", "truncatedAlerts": 0,
         "alerts": [{"status": "firing", "labels": {"alertname": "Down", "service": "web"}, "annotations": {},
                     "startsAt": "2026-11-30T00:00:00Z", "endsAt": "0001-01-01T00:00:00Z",
                     "generatorURL": "", "fingerprint": "abc"}]}


def start_engine(tmp_path: Path, config: str, systemd: NotifySocket, *, watchdog_usec: int | None = 1_000_000,
                 hang: tuple[Path, Path] | None = None) -> tuple[subprocess.Popen[bytes], Path, Path]:
    """``autonomic run`` as systemd starts it (``hang``: through hang.py, its HTTP actuator's call
    hanging while the block file exists); returns the process, its log and its config."""
    path = tmp_path / "autonomic.yaml"
    path.write_text(config)
    log = tmp_path / "engine.log"
    env = {**os.environ, "NOTIFY_SOCKET": systemd.variable, "COLUMNS": "500"}
    if watchdog_usec is not None:
        env["WATCHDOG_USEC"] = str(watchdog_usec)
    command = ([sys.executable, str(Path(__file__).with_name("hang.py")), *map(str, hang)] if hang
               else [sys.executable, "-m", "autonomic.cli"])
    with log.open("wb") as out:
        proc = subprocess.Popen([*command, "run", "-c", str(path)], cwd=tmp_path, stdin=subprocess.DEVNULL,
                                stdout=out, stderr=subprocess.STDOUT, env=env)
    return proc, log, path


@pytest.fixture
def systemd(tmp_path: Path) -> Iterator[NotifySocket]:
    s = NotifySocket(tmp_path / "notify")
    yield s
    s.close()


@pytest.fixture
def procs() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for p in started:
        if p.poll() is None:
            p.kill()
            p.wait()


def test_the_engine_says_ready_after_its_first_tick_beats_the_watchdog_says_its_pauses_and_says_stopping(
        tmp_path: Path, systemd: NotifySocket, procs: list[subprocess.Popen[bytes]]) -> None:
    """Before, systemd could not tell started from ready, nor a stuck engine from a working one:
    nothing was sent. Now READY=1 comes once the store is open, the services are started and the
    first tick is done; WATCHDOG=1 every half WATCHDOG_USEC; a STATUS line that follows the kill
    switch; STOPPING=1 at SIGTERM. The supervised service does not inherit NOTIFY_SOCKET. The start
    logs how long a clean stop may take (TimeoutStopSec= should be longer)."""
    env_file = tmp_path / "service-env.txt"
    service = (f"import os, time; open({str(env_file)!r}, 'w').write(os.environ.get('NOTIFY_SOCKET', 'unset') + ' ' "
               "+ os.environ.get('WATCHDOG_USEC', 'unset')); time.sleep(600)")
    config = (f"engine: {{state_dir: {tmp_path / 'state'}, host_metrics: false, interval_s: 0.2}}\n"
              "api: {enabled: false}\nbuiltin_patterns: false\n"
              f"services:\n  - name: app\n    actuators: {{process: {{command: [{sys.executable}, -c, {service!r}]}}}}"
              "\n")
    proc, log, path = start_engine(tmp_path, config, systemd)
    procs.append(proc)
    ready = systemd.wait("READY=1")
    assert ready == "READY=1\nSTATUS=running: 0 open incidents", ready
    # by then the service was started; what it inherited:
    assert wait_for(lambda: env_file.exists() and env_file.read_text(), timeout=30, what="the service's env") \
        == "unset unset"
    assert systemd.messages[0] == "STATUS=starting: adopting or starting the services, then a first look"
    for _ in range(3):
        systemd.wait("WATCHDOG=1", timeout=30)

    paused = subprocess.run([sys.executable, "-m", "autonomic.cli", "pause", "-c", str(path), "-r", "deploy freeze",
                             "--actor", "alice"], capture_output=True, text=True, timeout=60)
    assert paused.returncode == 0, paused.stderr
    status = systemd.wait("PAUSED")
    assert status == "STATUS=running: 0 open incidents; PAUSED everywhere (kill switch) by alice: deploy freeze"

    proc.send_signal(signal.SIGTERM)
    assert systemd.wait("STOPPING=1") == "STOPPING=1\nSTATUS=stopping (SIGTERM) after the current step"
    assert proc.wait(timeout=60) == 0, log.read_text()
    text = log.read_text()
    assert "systemd watchdog: WATCHDOG=1 every 0.5 s while the loop makes progress" in text
    # what a clean stop may need, for the unit's TimeoutStopSec= (systemd does not tell the engine its value)
    assert "systemd: a clean stop may take up to " in text, text
    assert "the services' longest stop_timeout_s 10 s + 5 s after a SIGKILL + 1 last store write of at most " in text
    assert " s + the notifiers 5 s); keep the unit's TimeoutStopSec= above that" in text, text


def test_a_reload_says_reloading_then_ready_and_never_stopping(
        tmp_path: Path, systemd: NotifySocket, procs: list[subprocess.Popen[bytes]]) -> None:
    """``systemctl reload`` (the unit's ExecReload sends SIGHUP): RELOADING=1 with the monotonic
    time (as Type=notify-reload wants), then READY=1 once the new config's engine is made; never
    STOPPING=1, which would have systemd take the reload for a stop."""
    config = (f"engine: {{state_dir: {tmp_path / 'state'}, host_metrics: false, interval_s: 0.2}}\n"
              "api: {enabled: false}\nbuiltin_patterns: false\nservices:\n  - name: web\n")
    proc, log, path = start_engine(tmp_path, config, systemd, watchdog_usec=None)
    procs.append(proc)
    systemd.wait("READY=1")
    path.write_text(config.replace("interval_s: 0.2", "interval_s: 0.3"))
    proc.send_signal(signal.SIGHUP)
    reloading = systemd.wait("RELOADING=1")
    assert reloading.startswith("RELOADING=1\nMONOTONIC_USEC=") and int(reloading.rsplit("=", 1)[1]) > 0
    systemd.wait("READY=1")
    assert not any("STOPPING=1" in m for m in systemd.messages), systemd.messages
    assert "config reloaded from" in log.read_text()
    proc.send_signal(signal.SIGTERM)
    systemd.wait("STOPPING=1")
    assert proc.wait(timeout=60) == 0, log.read_text()


def test_an_abstract_notify_socket_is_told_too(tmp_path: Path, procs: list[subprocess.Popen[bytes]]) -> None:
    """NOTIFY_SOCKET=@name: systemd's socket in the abstract namespace (no file)."""
    systemd = NotifySocket()
    try:
        config = (f"engine: {{state_dir: {tmp_path / 'state'}, host_metrics: false, interval_s: 0.2}}\n"
                  "api: {enabled: false}\nbuiltin_patterns: false\nservices:\n  - name: web\n")
        proc, log, _ = start_engine(tmp_path, config, systemd, watchdog_usec=None)
        procs.append(proc)
        assert systemd.wait("READY=1") == "READY=1\nSTATUS=running: 0 open incidents"
        proc.send_signal(signal.SIGTERM)
        systemd.wait("STOPPING=1")
        assert proc.wait(timeout=60) == 0, log.read_text()
        assert not any("WATCHDOG=1" in m for m in systemd.messages)  # no WATCHDOG_USEC: no beats
    finally:
        systemd.close()


def test_an_engine_whose_loop_hangs_in_an_actuator_call_stops_beating_the_watchdog_until_the_call_returns(
        tmp_path: Path, systemd: NotifySocket, procs: list[subprocess.Popen[bytes]]) -> None:
    """The HTTP actuator's call never returns (a driver without a timeout). Once the step has
    lasted past stuck_after_s (3 s) no WATCHDOG=1 is sent, so systemd ends the process WatchdogSec
    later; STATUS says what it is stuck in. When the call returns, the beats come back."""
    block, calls = tmp_path / "block", tmp_path / "calls"
    block.touch()
    port = free_port()
    config = (f"engine: {{state_dir: {tmp_path / 'state'}, host_metrics: false, interval_s: 0.2, stuck_after_s: 3}}\n"
              f"api: {{port: {port}}}\nbuiltin_patterns: false\n"
              "services:\n  - name: web\n    actuators: {http: {base_url: 'http://127.0.0.1:9'}}\n"
              "    fallback: {type: http, params: {method: POST, path: /restart}}\n"
              "policy: {autonomy: approve}\n")
    proc, log, _ = start_engine(tmp_path, config, systemd, hang=(block, calls))
    procs.append(proc)
    systemd.wait("READY=1")
    store = Store(f"sqlite:///{tmp_path / 'state' / 'autonomic.db'}")
    try:
        headers = {"Authorization": f"Bearer {create_token(store, 'alice', 'operator')}"}
        base = f"http://127.0.0.1:{port}"
        assert httpx.post(f"{base}/api/v1/alerts", json=ALERT, timeout=5, headers=headers).status_code == 202
        (waiting,) = wait_for(lambda: [i for i in store.incidents(service="web") if i.state == "awaiting_approval"]
                              or None, timeout=30, what="the engine asking a person to approve")
        r = httpx.post(f"{base}/api/v1/approvals/{waiting.id}/approve", timeout=5, headers=headers,
                       json={"comment": "go"})
        assert r.status_code == 200, r.text
        wait_for(lambda: calls.exists() or None, timeout=30, what="the actuator call starting (and hanging)")
        stuck = systemd.wait("STATUS=STUCK", timeout=30)
        assert "stuck in http apply of action" in stuck, stuck
        # from then on no beat at all, for six beat periods (a hung loop is not kept alive)
        deadline = time.monotonic() + 3.0
        while (left := deadline - time.monotonic()) > 0:
            text = systemd.read(left)
            assert text is None or "WATCHDOG=1" not in text, systemd.messages
        assert "WATCHDOG=1 is no longer sent, so systemd ends and restarts the engine" in log.read_text()
        assert httpx.get(f"{base}/healthz", timeout=5).status_code == 503  # the same verdict as /healthz

        block.unlink()  # the call returns at last: the loop moves, the beats come back
        systemd.wait("WATCHDOG=1", timeout=30)
        assert "sending WATCHDOG=1 again" in log.read_text()
    finally:
        store.close()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 0, log.read_text()


def test_a_notify_socket_that_is_not_af_unix_stops_the_start_naming_it(tmp_path: Path) -> None:
    """An address that is not AF_UNIX (systemd's vsock: form) is named at start, exit 2: under
    Type=notify a READY=1 that cannot be sent would only show as a start timeout minutes later."""
    config = tmp_path / "autonomic.yaml"
    config.write_text(f"engine: {{state_dir: {tmp_path / 'state'}, host_metrics: false}}\napi: {{enabled: false}}\n")
    run = subprocess.run([sys.executable, "-m", "autonomic.cli", "run", "-c", str(config)], capture_output=True,
                         text=True, timeout=60, env={**os.environ, "NOTIFY_SOCKET": "vsock:2:999"})
    assert run.returncode == 2
    assert "NOTIFY_SOCKET='vsock:2:999': only an AF_UNIX socket" in run.stderr


# --- the example unit ----------------------------------------------------------------------


def _unit() -> configparser.RawConfigParser:
    parser = configparser.RawConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # systemd's keys are case-sensitive
    parser.read(UNIT)
    return parser


def test_the_example_unit_is_type_notify_with_a_watchdog_a_restart_and_its_own_user() -> None:
    """The keys the README promises: systemd waits for READY=1, restarts the engine when its
    beats stop or it fails, runs it as a user of its own with a state directory, and leaves the
    services it supervises to it (KillMode=process: the engine stops them, or adopts them after
    its restart)."""
    service = _unit()["Service"]
    assert service["Type"] == "notify"
    assert service["NotifyAccess"] == "main"
    assert service["WatchdogSec"] == "30s"
    assert service["Restart"] == "on-failure"
    assert service["KillMode"] == "process"
    assert service["User"] == "autonomic" and service["Group"] == "autonomic"
    assert service["StateDirectory"] == "autonomic"
    assert service["ExecStart"].split()[1:] == ["run", "-c", "/etc/autonomic/autonomic.yaml"]
    assert service["RestartPreventExitStatus"] == "2"
    assert service["ExecReload"] == "/bin/kill -HUP $MAINPID"  # systemctl reload: the config read again
    assert service["ProtectSystem"] == "full"
    assert "TimeoutStartSec" in service and "TimeoutStopSec" in service
    assert _unit()["Install"]["WantedBy"] == "multi-user.target"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed (make sysdeps)")
def test_systemd_reads_the_example_unit_without_a_complaint(tmp_path: Path) -> None:
    """``systemd-analyze verify``: every key known and well-formed (its ExecStart pointed at an
    executable that exists here)."""
    unit = tmp_path / "autonomic.service"
    text = UNIT.read_text()
    exec_start = next(line for line in text.splitlines() if line.startswith("ExecStart="))
    unit.write_text(text.replace(exec_start, exec_start.replace(exec_start.split("=", 1)[1].split()[0],
                                                                 shutil.which("true") or "/bin/true")))
    checked = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60)
    assert checked.returncode == 0 and checked.stderr.strip() == "", checked.stderr
