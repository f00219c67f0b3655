"""Supervisor against real child processes."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from autonomic.errors import TerminalActuatorError
from autonomic.execute.supervisor import ProcessBinding, Supervisor, _runs

SLEEPER = "import time\nwhile True:\n    time.sleep(0.05)\n"


def ignores_sigterm(ready: Path) -> str:
    return (
        "import signal, time, pathlib\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        f"pathlib.Path({str(ready)!r}).write_text('ready')\n"
        "while True:\n    time.sleep(0.05)\n"
    )


def py(code: str, **kw: object) -> ProcessBinding:
    return ProcessBinding(command=[sys.executable, "-c", code], **kw)


def wait_for(cond: Callable[[], object], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.02)


@pytest.fixture
def sup(tmp_path: Path) -> Iterator[Supervisor]:
    s = Supervisor(tmp_path / "state")
    yield s
    s.stop_all(timeout_s=1.0)


def test_start_records_pidfile_with_pid_create_time_and_argv(sup: Supervisor) -> None:
    sup.add("api", py(SLEEPER))
    pid = sup.start("api")
    record = json.loads((sup.state_dir / "pids" / "api.json").read_text())
    assert record["pid"] == pid
    assert record["create_time"] == pytest.approx(psutil.Process(pid).create_time())
    assert record["argv"] == [sys.executable, "-c", SLEEPER]
    assert sup.identity("api") == (pid, record["create_time"])
    assert sup.pids() == {"api": pid}
    assert sup.services() == ["api"]


def test_start_when_already_alive_returns_the_same_pid(sup: Supervisor) -> None:
    sup.add("api", py(SLEEPER))
    assert sup.start("api") == sup.start("api")


def test_child_runs_in_its_own_session_with_env_and_cwd(sup: Supervisor, tmp_path: Path) -> None:
    code = "import os, time\nprint(os.environ['EXTRA'], os.getcwd(), flush=True)\ntime.sleep(30)\n"
    sup.add("api", py(code, env={"EXTRA": "hello"}, cwd=str(tmp_path)))
    pid = sup.start("api")
    assert os.getsid(pid) == pid
    wait_for(lambda: "hello" in sup.log_path("api").read_text())
    assert f"hello {tmp_path}" in sup.log_path("api").read_text()


def test_output_is_appended_to_the_service_log_across_starts(sup: Supervisor) -> None:
    sup.add("job", py("import sys\nprint('out line')\nprint('err line', file=sys.stderr)\n"))
    for _ in range(2):
        sup.start("job")
        wait_for(lambda: sup.identity("job") is None)
    log = sup.log_path("job").read_text()
    assert log.count("out line") == 2 and log.count("err line") == 2


def test_stop_sends_sigterm_and_returns_the_exit_code(sup: Supervisor) -> None:
    sup.add("api", py(SLEEPER))
    sup.start("api")
    assert sup.stop("api", timeout_s=2) == -signal.SIGTERM
    assert sup.identity("api") is None
    assert not (sup.state_dir / "pids" / "api.json").exists()
    assert sup.stop("api") is None  # no-op when not running


def test_stop_sigkills_a_child_that_ignores_sigterm_after_the_timeout(
    sup: Supervisor, tmp_path: Path
) -> None:
    ready = tmp_path / "ready"
    sup.add("stubborn", py(ignores_sigterm(ready)))
    sup.start("stubborn")
    wait_for(ready.exists)
    started = time.monotonic()
    code = sup.stop("stubborn", timeout_s=0.3)
    elapsed = time.monotonic() - started
    assert code == -signal.SIGKILL
    assert 0.3 <= elapsed < 3
    assert sup.exit_info("stubborn") == -signal.SIGKILL


def test_stop_ends_a_worker_the_main_process_leaves_behind_in_its_group(
    sup: Supervisor, tmp_path: Path
) -> None:
    """The main process exits on SIGTERM at once; its worker (same process group) ignores it.
    Stopping the service ends the worker too, within the stop timeout: it was left running, so a
    restart started the new instance beside the old one's worker."""
    pidfile = tmp_path / "worker.pid"
    worker = ("import os, signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
              f"open({str(pidfile)!r}, 'w').write(str(os.getpid()))\ntime.sleep(60)\n")
    sup.add("api", py(f"import subprocess, sys, time\nsubprocess.Popen([sys.executable, '-c', {worker!r}])\n"
                      "time.sleep(60)\n"))
    sup.start("api")
    wait_for(lambda: pidfile.exists() and pidfile.read_text())
    worker_pid = int(pidfile.read_text())
    started = time.monotonic()
    assert sup.stop("api", timeout_s=0.5) == -signal.SIGTERM
    assert time.monotonic() - started < 3

    def gone() -> bool:
        try:
            return psutil.Process(worker_pid).status() == psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return True

    try:
        wait_for(gone, timeout=2.0)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(worker_pid, signal.SIGKILL)


def test_exit_info_reports_the_exit_code_of_a_child_that_exited(sup: Supervisor) -> None:
    sup.add("crash", py("import sys\nsys.exit(3)"))
    sup.start("crash")
    wait_for(lambda: sup.identity("crash") is None)
    assert sup.exit_info("crash") == 3
    assert sup.pid("crash") is None


def test_signal_reaches_the_main_process_and_is_false_when_not_running(
    sup: Supervisor, tmp_path: Path
) -> None:
    got = tmp_path / "got"
    code = (
        "import signal, time, pathlib\n"
        f"p = pathlib.Path({str(got)!r})\n"
        "signal.signal(signal.SIGUSR1, lambda *a: p.write_text('usr1'))\n"
        f"pathlib.Path({str(tmp_path / 'ready')!r}).write_text('')\n"
        "while True:\n    time.sleep(0.05)\n"
    )
    sup.add("api", py(code))
    assert sup.signal("api", signal.SIGUSR1) is False
    sup.start("api")
    wait_for((tmp_path / "ready").exists)
    assert sup.signal("api", signal.SIGUSR1) is True
    wait_for(got.exists)


def test_second_supervisor_adopts_the_running_child_instead_of_starting_another(
    sup: Supervisor, tmp_path: Path
) -> None:
    sup.add("api", py(SLEEPER))
    pid = sup.start("api")
    later = Supervisor(sup.state_dir)  # as if the engine restarted after a crash
    later.add("api", py(SLEEPER))
    assert later.adopt_or_start_all() == {"api": "adopted"}
    assert later.pid("api") == pid
    assert later.start("api") == pid
    assert later.stop("api", timeout_s=2) is None  # not our child: exit code unknown
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    assert later.identity("api") is None


FORKER = ("import subprocess, sys, time\n"
          "subprocess.Popen([sys.executable, '-c', 'import time\\nwhile True: time.sleep(0.05)'])\n"
          "while True:\n    time.sleep(0.05)\n")


def test_a_service_started_by_an_engine_that_died_before_its_pidfile_is_adopted_not_started_twice(
    sup: Supervisor, tmp_path: Path
) -> None:
    """The engine is killed between starting the process and writing its pidfile: the next
    engine finds the service by the marker in its environment (its session leader, not the
    child it forked, which inherits the marker) and adopts it. Before: a second copy started
    beside the first (two servers on one port, two consumers of one queue)."""
    sup.add("api", py(FORKER))
    pid = sup.start("api")
    wait_for(lambda: len(psutil.Process(pid).children()) == 1)
    (sup.state_dir / "pids" / "api.json").unlink()  # as if the engine died before writing it
    other = Supervisor(tmp_path / "elsewhere")  # another engine's service of the same name is not ours
    other.add("api", py(SLEEPER))
    assert other._find_by_marker("api") is None

    later = Supervisor(sup.state_dir)
    later.add("api", py(FORKER))
    assert later.adopt_or_start_all() == {"api": "adopted (found running without its pidfile)"}
    assert later.pid("api") == pid and later.start("api") == pid
    assert json.loads((sup.state_dir / "pids" / "api.json").read_text())["pid"] == pid
    later.stop("api", timeout_s=2)
    assert later.identity("api") is None


JOB_RUNNER = ("import subprocess, sys, time\n"
              "subprocess.Popen([sys.executable, '-c', 'import time\\nwhile True: time.sleep(0.05)'],"
              " start_new_session=True)\n"
              "while True:\n    time.sleep(0.05)\n")


def test_a_job_left_by_a_service_that_died_while_the_engine_was_down_is_not_adopted_as_the_service(
    sup: Supervisor,
) -> None:
    """The service ran a job in a session of its own (it inherits the marker and leads its
    session) and died while the engine was down. Before: the next engine adopted the job as the
    service, so the service was never started (and a restart would have killed the job). Now
    the job runs another command than the service's: the service is started."""
    sup.add("api", py(JOB_RUNNER))
    pid = sup.start("api")
    wait_for(lambda: len(psutil.Process(pid).children()) == 1)
    job = psutil.Process(pid).children()[0]
    try:
        assert os.getsid(job.pid) == job.pid
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda: sup.identity("api") is None)
        later = Supervisor(sup.state_dir)
        later.add("api", py(JOB_RUNNER))
        assert later.adopt_or_start_all() == {"api": "started"}
        assert later.pid("api") not in (None, job.pid)
        later.stop("api", timeout_s=2)
        assert job.is_running()
    finally:
        job.kill()


def test_runs_matches_a_command_line_as_exec_shows_it() -> None:
    assert _runs(["python3", "-c", "x"], ["python3", "-c", "x"])
    # a #! script found on PATH: its interpreter, then its path, then its arguments
    assert _runs(["/usr/bin/python3", "/opt/bin/svc.py", "a"], ["svc.py", "a"])
    assert _runs(["/bin/sh", "-e", "./run.sh"], ["./run.sh"])
    assert not _runs(["python3", "-c", "job"], ["python3", "-c", "x"])
    assert not _runs(["python3"], ["python3", "-c", "x"])
    assert not _runs(["nginx: master process"], ["nginx", "-g", "daemon off;"])


def _step_the_wall_clock(monkeypatch: pytest.MonkeyPatch, seconds: float) -> None:
    """What NTP stepping the clock does to psutil on Linux: a process's create_time is its start
    since boot plus the boot time read from /proc/stat now, and that boot time moves with the
    wall clock (psutil documents create_time as affected by NTP)."""
    platform = psutil._psplatform  # type: ignore[attr-defined]
    real = platform.boot_time
    monkeypatch.setattr(platform, "boot_time", lambda: real() + seconds)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="boot time from /proc/stat")
@pytest.mark.parametrize("step", [3600.0, -3600.0, 1.0])
def test_a_running_child_is_adopted_after_the_wall_clock_was_stepped(
    sup: Supervisor, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest, step: float
) -> None:
    """The engine restarts after NTP stepped the clock (an hour either way, or one second): the
    child it started is still the same process and is adopted, not started a second time. Before,
    its create_time had moved by the step, so the pidfile no longer matched: the restarted engine
    started a second copy next to the first (which it could no longer see or stop), and an
    engine that had adopted it saw it gone (a false 'down') at the step."""
    sup.add("api", py(SLEEPER))
    pid = sup.start("api")
    _step_the_wall_clock(monkeypatch, step)
    later = Supervisor(sup.state_dir)
    later.add("api", py(SLEEPER))
    request.addfinalizer(lambda: later.stop_all(timeout_s=1.0))  # a second copy, when it fails
    assert later.adopt_or_start_all() == {"api": "adopted"}
    assert later.pid("api") == pid
    later.stop("api", timeout_s=2)
    assert later.identity("api") is None and sup.identity("api") is None


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="boot time from /proc/stat")
def test_an_adopted_child_stays_adopted_when_the_wall_clock_is_stepped(
    sup: Supervisor, monkeypatch: pytest.MonkeyPatch
) -> None:
    sup.add("api", py(SLEEPER))
    pid = sup.start("api")
    later = Supervisor(sup.state_dir)
    later.add("api", py(SLEEPER))
    assert later.adopt_or_start_all() == {"api": "adopted"}
    _step_the_wall_clock(monkeypatch, -3600.0)
    assert later.pid("api") == pid


def test_pidfile_with_another_create_time_is_not_adopted(sup: Supervisor) -> None:
    sup.add("api", py(SLEEPER))
    sup.start("api")
    pidfile = sup.state_dir / "pids" / "api.json"
    record = json.loads(pidfile.read_text())
    sup.stop("api", timeout_s=2)
    # the service is gone and its pid now names some other process (not started by autonomic)
    stranger = subprocess.Popen([sys.executable, "-c", SLEEPER], start_new_session=True)
    try:
        record["pid"] = stranger.pid
        record["create_time"] -= 1000  # recorded when the service started, long before the stranger
        if "since_boot" in record:
            record["since_boot"] -= 1000
        pidfile.write_text(json.dumps(record))
        later = Supervisor(sup.state_dir)
        later.add("api", py(SLEEPER))
        assert later.identity("api") is None
        assert later.adopt_or_start_all() == {"api": "started"}
        new_pid = later.pid("api")
        assert new_pid is not None and new_pid != stranger.pid
        assert stranger.poll() is None  # never signalled
        later.stop("api", timeout_s=2)
    finally:
        stranger.kill()
        stranger.wait()


def test_a_pidfile_from_another_boot_is_adopted_only_if_its_create_time_matches(sup: Supervisor) -> None:
    sup.add("api", py(SLEEPER))
    pid = sup.start("api")
    pidfile = sup.state_dir / "pids" / "api.json"
    record = json.loads(pidfile.read_text())
    record.update(boot_id="another-boot", since_boot=-1.0)
    pidfile.write_text(json.dumps(record))
    later = Supervisor(sup.state_dir)
    later.add("api", py(SLEEPER))
    assert later.pid("api") == pid  # the create_time still names it
    record["create_time"] -= 1000
    pidfile.write_text(json.dumps(record))
    assert later.identity("api") is None


def test_missing_command_is_a_terminal_error_naming_service_and_command(sup: Supervisor) -> None:
    sup.add("ghost", ProcessBinding(command=["/nonexistent/autonomic-no-such-binary", "--flag"]))
    with pytest.raises(TerminalActuatorError, match="ghost.*autonomic-no-such-binary"):
        sup.start("ghost")
    sup.add("ghost2", ProcessBinding(command=["autonomic-no-such-binary-on-path"]))
    result = sup.adopt_or_start_all()
    assert result["ghost"].startswith("error: ") and result["ghost2"].startswith("error: ")


def test_start_of_an_unknown_service_is_terminal(sup: Supervisor) -> None:
    with pytest.raises(TerminalActuatorError, match="nope"):
        sup.start("nope")


def test_stop_all_stops_every_service(sup: Supervisor) -> None:
    sup.add("a", py(SLEEPER))
    sup.add("b", py(SLEEPER))
    sup.start("a")
    sup.start("b")
    sup.stop_all(timeout_s=2)
    assert sup.pids() == {"a": None, "b": None}
    assert sup.exit_info("a") == -signal.SIGTERM


def test_binding_rejects_an_empty_command() -> None:
    with pytest.raises(ValueError, match="command"):
        ProcessBinding(command=[])


CHATTY = ("import sys, time\ni = 0\nwhile True:\n"
          "    sys.stdout.write(f'line {i:08d} ' + 'x' * 100 + '\\n')\n    sys.stdout.flush()\n"
          "    i += 1\n    if i % 200 == 0:\n        time.sleep(0.001)\n")


def test_a_chatty_services_log_is_rotated_and_its_disk_use_stays_bounded(sup: Supervisor) -> None:
    """A service writing about 10 MB of output while it runs (one start, never restarted):
    with log_max_bytes 64 KiB and 2 backups, checked every 20 ms as the engine would at each
    collection, the log and its backups together stay under 4 x 64 KiB plus one interval's
    output, and the child's output keeps landing at the start of the truncated log (no hole of
    NUL bytes; the log is opened for appending). Before rotation existed the one log held all
    10 MB."""
    limit = 64 * 1024
    sup.add("chatty", py(CHATTY, log_max_bytes=limit, log_backups=2))
    sup.start("chatty")
    log = sup.log_path("chatty")
    written = 0
    rotations = 0
    largest = 0
    deadline = time.monotonic() + 30
    while written < 10_000_000 and time.monotonic() < deadline:
        time.sleep(0.02)
        size_before = log.stat().st_size
        rotated = sup.rotate_logs()
        rotations += len(rotated)
        written += size_before if rotated else 0
        files = sorted(log.parent.glob("chatty.log*"))
        largest = max(largest, sum(f.stat().st_size for f in files))
    assert written >= 10_000_000, "the child did not write enough in time"
    assert sorted(f.name for f in log.parent.iterdir()) == ["chatty.log", "chatty.log.1", "chatty.log.2"]
    assert rotations >= 10
    assert largest < 4 * limit + 2_000_000  # the bound, plus generous room for one interval's output
    wait_for(lambda: log.stat().st_size > 0)
    for f in log.parent.glob("chatty.log*"):
        data = f.read_bytes()
        assert b"\0" not in data and data.startswith(b"line "), f.name
    assert sup.identity("chatty") is not None


def test_a_log_under_its_limit_is_left_alone_and_none_disables_rotation(sup: Supervisor) -> None:
    sup.add("small", py("print('hello')\n", log_max_bytes=1024))
    sup.add("unbounded", py("print('y' * 4096)\n", log_max_bytes=None))
    for name in ("small", "unbounded"):
        sup.start(name)
        wait_for(lambda name=name: sup.identity(name) is None)  # type: ignore[misc]
    assert sup.rotate_logs() == []
    assert sup.log_path("small").read_text() == "hello\n"
    assert sup.log_path("unbounded").stat().st_size > 4096
    assert sorted(p.name for p in sup.log_path("small").parent.iterdir()) == ["small.log", "unbounded.log"]


def test_rotation_keeps_log_backups_files_newest_first_and_drops_older_ones(sup: Supervisor) -> None:
    """Lowering log_backups drops the numbered files beyond it at the next rotation; with 0 the
    log is only truncated."""
    log = sup.log_path("svc")
    for backups, expected in ((3, ["svc.log", "svc.log.1", "svc.log.2", "svc.log.3"]),
                              (1, ["svc.log", "svc.log.1"]), (0, ["svc.log"])):
        sup.add("svc", py(SLEEPER, log_max_bytes=1024, log_backups=backups))
        for generation in range(5):
            log.write_bytes(f"generation {generation}\n".encode() * 200)
            assert sup.rotate_logs() == ["svc"]
            assert log.stat().st_size == 0
        assert sorted(p.name for p in log.parent.iterdir()) == expected
        for i in range(1, backups + 1):  # .1 is the newest
            assert log.with_name(f"svc.log.{i}").read_text().startswith(f"generation {5 - i}\n")


def test_a_service_held_at_start_is_not_started_and_a_running_one_is_still_adopted(tmp_path: Path) -> None:
    """adopt_or_start_all(hold=...): a service the hold names a reason for (a pause) is left
    down; one already running is adopted whatever the hold says (adopting changes nothing)."""
    first = Supervisor(tmp_path / "state")
    first.add("api", py(SLEEPER))
    pid = first.start("api")
    later = Supervisor(tmp_path / "state")
    later.add("api", py(SLEEPER))
    later.add("web", py(SLEEPER))
    try:
        result = later.adopt_or_start_all(hold=lambda service: "paused by person:ops (migration)")
        assert result == {"api": "adopted", "web": "held: paused by person:ops (migration)"}
        assert later.pids() == {"api": pid, "web": None}
    finally:
        later.stop_all(timeout_s=1.0)
        first.stop_all(timeout_s=1.0)


def test_an_engine_started_during_a_pause_leaves_its_stopped_services_down(tmp_path: Path) -> None:
    """A person paused automation and stopped a service by hand; the engine restarts (a deploy).
    Before, start-up started every supervised service that was not running, pause or not; now
    a paused service is left down (and the down finding meets the pause gate), and start-up
    starts it once the pause is lifted and the engine starts again."""
    from autonomic.config import load_config_data
    from autonomic.engine import Engine, pause_key

    data = {"engine": {"interval_s": 1, "state_dir": str(tmp_path / "state"), "host_metrics": False},
            "services": [{"name": "api", "actuators": {"process": {"command": [sys.executable, "-c", SLEEPER]}}}],
            "builtin_patterns": False}
    config = load_config_data(data, source="t.yaml", base_dir=tmp_path)
    engine = Engine(config)
    engine.store.set_state(pause_key(None), {"reason": "hands off", "actor": "person:ops"}, actor="person:ops",
                           event="pause.set")
    engine.start()
    try:
        assert engine.supervisor.pids() == {"api": None}
    finally:
        engine.shutdown()
    again = Engine(config)
    again.store.set_state(pause_key(None), None, actor="person:ops", event="pause.lifted")
    again.start()
    try:
        assert again.supervisor.pids()["api"] is not None
    finally:
        again.shutdown()


def test_a_supervised_service_does_not_inherit_the_secrets_autonomic_itself_reads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The environment variables autonomic.yaml names as holding secrets (``*_env``: the API's
    webhook token and HMAC secret, notifiers' credentials, ...) are autonomic's own: a supervised
    service does not get them (with them it could sign webhooks the engine acts on), unless its
    binding's ``env`` sets one itself. The rest of the environment is passed on as before."""
    from autonomic.config import load_config_data
    from autonomic.engine import Engine
    from autonomic.oversight.notify import Dispatcher

    monkeypatch.setenv("HOOK_HMAC", "hmac-secret-value")
    monkeypatch.setenv("SLACK_URL", "https://hooks.example/T/B/slack-secret")
    monkeypatch.setenv("PLAIN_SETTING", "shared")
    code = ("import os, time\nprint([os.environ.get(k) for k in ('HOOK_HMAC', 'SLACK_URL', 'PLAIN_SETTING')],"
            " flush=True)\ntime.sleep(30)\n")
    data = {
        "engine": {"state_dir": str(tmp_path / "state"), "host_metrics": False},
        "api": {"webhook_hmac_env": "HOOK_HMAC"},
        "notifiers": [{"type": "slack", "url_env": "SLACK_URL"}],
        "services": [{"name": "app", "actuators": {"process": {"command": [sys.executable, "-c", code]}}},
                     {"name": "own", "actuators": {"process": {"command": [sys.executable, "-c", code],
                                                               "env": {"HOOK_HMAC": "its-own"}}}}],
    }
    config = load_config_data(data, source="test.yaml", base_dir=tmp_path)
    engine = Engine(config, sources=[], detectors=[], notifiers=Dispatcher())
    try:
        for name in ("app", "own"):
            engine.supervisor.start(name)
            wait_for(lambda name=name: "]" in engine.supervisor.log_path(name).read_text())  # type: ignore[misc]
        assert engine.supervisor.log_path("app").read_text().strip() == "[None, None, 'shared']"
        assert engine.supervisor.log_path("own").read_text().strip() == "['its-own', None, 'shared']"
    finally:
        engine.supervisor.stop_all(timeout_s=1.0)
        engine.store.close()


def test_a_service_that_cannot_be_started_at_engine_start_is_a_warning_naming_it(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A command not found at start is what a person must fix; it is logged as a warning, not
    among the INFO lines of services started and adopted."""
    import logging

    from autonomic.config import load_config_data
    from autonomic.engine import Engine

    data = {"engine": {"interval_s": 1, "state_dir": str(tmp_path / "state"), "host_metrics": False},
            "services": [{"name": "api", "actuators": {"process": {"command": [str(tmp_path / "no-such-app")]}}}],
            "builtin_patterns": False, "api": {"enabled": False}}
    engine = Engine(load_config_data(data, source="t.yaml", base_dir=tmp_path))
    with caplog.at_level(logging.INFO, logger="autonomic.engine"):
        engine.start()
    try:
        (record,) = [r for r in caplog.records if r.getMessage().startswith("service api: error:")]
        assert record.levelno == logging.WARNING and "no-such-app" in record.getMessage()
    finally:
        engine.shutdown()


def test_a_clean_engine_stop_gives_each_service_its_own_stop_timeout_before_sigkill(tmp_path: Path) -> None:
    """``engine.stop_services_on_exit`` (the default): a service that needs longer than 5 s to
    shut down after SIGTERM (a store flushing to disk) and says so with ``stop_timeout_s`` gets
    that long when the engine stops, as it does at a restart. Before, the engine's stop SIGKILLed
    every service 5 s after SIGTERM, whatever its binding said."""
    from autonomic.config import load_config_data
    from autonomic.engine import Engine

    done, ready = tmp_path / "flushed", tmp_path / "ready"
    code = ("import pathlib, signal, sys, time\n"
            "def term(*_):\n"
            "    time.sleep(6)\n"
            f"    pathlib.Path({str(done)!r}).write_text('flushed')\n"
            "    sys.exit(0)\n"
            "signal.signal(signal.SIGTERM, term)\n"
            f"pathlib.Path({str(ready)!r}).write_text('ready')\n"
            "while True:\n    time.sleep(0.05)\n")
    data = {"engine": {"interval_s": 1, "state_dir": str(tmp_path / "state"), "host_metrics": False},
            "services": [{"name": "db", "actuators": {"process": {"command": [sys.executable, "-c", code],
                                                                  "stop_timeout_s": 20}}}],
            "builtin_patterns": False, "api": {"enabled": False}}
    engine = Engine(load_config_data(data, source="t.yaml", base_dir=tmp_path))
    engine.start()
    try:
        wait_for(ready.exists)
    finally:
        engine.shutdown()
    assert done.read_text() == "flushed"
    assert engine.supervisor.pids() == {"db": None}


def test_a_relative_command_runs_in_the_config_files_folder_wherever_autonomic_is_started(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``command: [python3, svc.py]`` next to autonomic.yaml, started as ``autonomic run -c
    /etc/x/autonomic.yaml`` from another folder: the service runs in the config file's folder,
    as every other relative path in the file is read there. Before, it ran in the engine's own
    working directory, where svc.py was not, and died at once ("can't open file")."""
    from autonomic.config import load_config
    from autonomic.engine import Engine

    home, elsewhere = tmp_path / "etc", tmp_path / "elsewhere"
    home.mkdir()
    elsewhere.mkdir()
    ran = tmp_path / "ran"
    (home / "svc.py").write_text(f"import os, pathlib, time\npathlib.Path({str(ran)!r}).write_text(os.getcwd())\n"
                                 "while True:\n    time.sleep(0.05)\n")
    (home / "autonomic.yaml").write_text(
        "engine: {interval_s: 1, host_metrics: false}\napi: {enabled: false}\nbuiltin_patterns: false\n"
        f"services:\n  - name: app\n    actuators: {{process: {{command: [{sys.executable}, svc.py]}}}}\n")
    monkeypatch.chdir(elsewhere)
    config = load_config(home / "autonomic.yaml")
    engine = Engine(config)
    engine.start()
    try:
        wait_for(lambda: ran.exists() and ran.read_text())  # written, not only created
        assert Path(ran.read_text()) == home.resolve()
        assert (home / ".autonomic").is_dir() and not (elsewhere / ".autonomic").exists()
    finally:
        engine.shutdown()


def test_a_commands_cwd_given_in_the_file_is_kept_relative_to_the_file(tmp_path: Path) -> None:
    """A ``cwd`` given is read relative to the file; none given is the file's folder."""
    from autonomic.config import load_config_data

    data = {"services": [{"name": "app", "actuators": {"process": {"command": ["app"], "cwd": "srv"}}},
                         {"name": "other", "actuators": {"process": {"command": ["/bin/app"]}}}]}
    config = load_config_data(data, source="t.yaml", base_dir=tmp_path)
    assert config.bindings["app"]["process"].cwd == str(tmp_path / "srv")  # type: ignore[attr-defined]
    assert config.bindings["other"]["process"].cwd == str(tmp_path)  # type: ignore[attr-defined]


def _late_metrics(port: int, delay_s: float) -> str:
    """A service that serves Prometheus text on ``port`` only ``delay_s`` after its start (as a
    real one does: a process exists before it listens)."""
    return ("import http.server, time\n"
            f"time.sleep({delay_s})\n"
            "class H(http.server.BaseHTTPRequestHandler):\n"
            "    def do_GET(self):\n"
            "        body = b'app_ready 1\\n'\n"
            "        self.send_response(200)\n"
            "        self.send_header('Content-Type', 'text/plain; version=0.0.4')\n"
            "        self.send_header('Content-Length', str(len(body)))\n"
            "        self.end_headers()\n"
            "        self.wfile.write(body)\n"
            "    def log_message(self, *a):\n"
            "        pass\n"
            f"http.server.HTTPServer(('127.0.0.1', {port}), H).serve_forever()\n")


def _scraped_engine(tmp_path: Path, code: str, port: int, start_grace_s: float) -> object:
    from autonomic.config import load_config_data
    from autonomic.engine import Engine

    data = {"engine": {"interval_s": 1, "state_dir": str(tmp_path / "state"), "host_metrics": False},
            "services": [{"name": "app",
                          "metrics": [{"type": "prometheus", "url": f"http://127.0.0.1:{port}/metrics",
                                       "timeout_s": 1}],
                          "actuators": {"process": {"command": [sys.executable, "-c", code],
                                                    "start_grace_s": start_grace_s}}}],
            "builtin_patterns": False, "api": {"enabled": False}}
    return Engine(load_config_data(data, source="t.yaml", base_dir=tmp_path))


def _source_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    import logging

    return [r.getMessage() for r in caplog.records
            if r.levelno >= logging.WARNING and r.getMessage().startswith("source prometheus:app")]


def test_a_service_the_engine_just_started_is_not_warned_of_until_it_listens_but_its_crash_is(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A real process started by the engine (the process actuator's supervisor) that listens only
    1.5 s after its start: the scrapes before that are the service starting, within its
    start_grace_s (10 s), logged at DEBUG; there is no WARNING. Once it answered, its death (a
    SIGKILL, a crash) makes the next scrape fail: that is a WARNING, once. Before, every start
    (every engine start, every restart) logged "connection refused" as a WARNING."""
    import logging

    from servers import free_port

    port = free_port()
    engine: Any = _scraped_engine(tmp_path, _late_metrics(port, 1.5), port, start_grace_s=10)
    caplog.set_level(logging.DEBUG, logger="autonomic.engine")
    engine.start()
    try:
        engine.collect(engine.clock.now())  # at once: nothing listens yet
        assert _source_warnings(caplog) == []
        assert any(r.levelno == logging.DEBUG and "app was started" in r.getMessage()
                   and "has not answered yet" in r.getMessage() for r in caplog.records)
        deadline = time.monotonic() + 10
        while engine.series.latest("app", "app_ready") is None:
            assert time.monotonic() < deadline, "the service never answered"
            time.sleep(0.1)
            engine.collect(engine.clock.now())
        assert _source_warnings(caplog) == []

        os.kill(engine.supervisor.pid("app"), signal.SIGKILL)  # a crash of a service that answered
        wait_for(lambda: engine.supervisor.identity("app") is None)
        engine.collect(engine.clock.now())
        engine.collect(engine.clock.now())
        [warning] = _source_warnings(caplog)
        assert "Connection refused" in warning or "request failed" in warning
    finally:
        engine.shutdown()


def test_a_service_that_never_answers_is_warned_of_once_its_start_grace_is_over(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A real process that runs but never listens, with a start_grace_s of 2 s: quiet (DEBUG)
    inside the grace, one WARNING at the first scrape after it, not repeated by the next. (The
    start is the process's create_time, which psutil may put up to 1 s early: a grace of 1 s
    could be over at once.)"""
    import logging

    from servers import free_port

    port = free_port()
    engine: Any = _scraped_engine(tmp_path, SLEEPER, port, start_grace_s=2)
    caplog.set_level(logging.DEBUG, logger="autonomic.engine")
    engine.start()
    try:
        engine.collect(engine.clock.now())
        assert _source_warnings(caplog) == []
        time.sleep(2.2)
        assert engine.supervisor.pid("app") is not None  # alive, only not answering
        engine.collect(engine.clock.now())
        engine.collect(engine.clock.now())
        [warning] = _source_warnings(caplog)
        assert f"127.0.0.1:{port}/metrics" in warning
    finally:
        engine.shutdown()
