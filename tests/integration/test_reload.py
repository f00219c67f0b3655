"""SIGHUP reloads the config in place (``autonomic run``): a real engine process, real supervised
processes, real signals. A valid new config is taken after the current step and the supervised
services keep running (the same pids); a config with problems is refused, each named, and the
engine goes on; a service gone from the config is stopped; a change only a restart can make is
refused."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest
from servers import NotifySocket

SERVICE = "import time\nwhile True:\n    time.sleep(0.2)\n"


def _config(tmp_path: Path, services: list[str], *, interval: float = 0.5, extra: str = "",
            state_dir: str = "state") -> str:
    lines = [f"engine: {{state_dir: {state_dir}, interval_s: {interval}, host_metrics: false}}",
             "api: {enabled: false}", "services:"]
    for name in services:
        lines += [f"  - name: {name}",
                  f"    actuators: {{process: {{command: [{sys.executable}, {tmp_path / 'svc.py'}], "
                  "stop_timeout_s: 2}}"]
    return "\n".join(lines) + "\n" + extra


class Engine:
    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.config = tmp_path / "autonomic.yaml"
        self.log = tmp_path / "engine.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "autonomic.cli", "run", "-c", str(self.config),
                                          "--log-format", "text"], cwd=self.tmp_path, stdin=subprocess.DEVNULL,
                                         stdout=out, stderr=subprocess.STDOUT, env=env)
        self.wait_for(lambda: "engine started" in self.text(), "the engine's start")

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_for(self, pred: Callable[[], bool], what: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while not pred():
            assert self.proc is not None and self.proc.poll() is None, f"the engine exited:\n{self.text()}"
            assert time.monotonic() < deadline, f"timed out waiting for {what}:\n{self.text()}"
            time.sleep(0.1)

    def pid(self, service: str) -> int | None:
        path = self.tmp_path / "state" / "run" / "pids" / f"{service}.json"
        return int(json.loads(path.read_text())["pid"]) if path.exists() else None

    def hup(self, after: str) -> None:
        """SIGHUP, then wait for ``after`` to appear in the log once more than before."""
        before = self.text().count(after)
        assert self.proc is not None
        self.proc.send_signal(signal.SIGHUP)
        self.wait_for(lambda: self.text().count(after) > before, repr(after))

    def status_ts(self) -> float:
        """When the engine last wrote its health (0: not yet)."""
        path = self.tmp_path / "state" / "status.json"
        return float(json.loads(path.read_text())["ts"]) if path.exists() else 0.0


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    (tmp_path / "svc.py").write_text(SERVICE)
    e = Engine(tmp_path)
    yield e
    if e.proc is not None and e.proc.poll() is None:
        e.proc.send_signal(signal.SIGTERM)
        try:
            e.proc.wait(20)
        except subprocess.TimeoutExpired:
            e.proc.kill()
    for child in psutil.process_iter(["cmdline"]):  # whatever a failed test left running
        if str(tmp_path / "svc.py") in (child.info["cmdline"] or []):
            child.kill()


def _alive(pid: int | None) -> bool:
    try:
        return pid is not None and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_a_valid_new_config_is_taken_and_the_supervised_services_keep_running(engine: Engine) -> None:
    engine.config.write_text(_config(engine.tmp_path, ["web", "api"]))
    engine.start()
    engine.wait_for(lambda: _alive(engine.pid("web")) and _alive(engine.pid("api")), "both services")
    web, api = engine.pid("web"), engine.pid("api")

    engine.config.write_text(_config(engine.tmp_path, ["web", "api"], interval=0.3))
    engine.hup("config reloaded from")
    assert "interval 0.3s" in engine.text().split("config reloaded from")[-1].splitlines()[0]
    reloaded_at = time.time()
    engine.wait_for(lambda: engine.status_ts() > reloaded_at, "a tick of the new engine")
    assert (engine.pid("web"), engine.pid("api")) == (web, api) and _alive(web) and _alive(api)
    assert "stopping the supervised services" not in engine.text()

    # still the new engine's children: one that dies is seen by it, with how it ended, and reaped
    os.kill(web, signal.SIGKILL)  # type: ignore[arg-type]
    engine.wait_for(lambda: "service web was killed by SIGKILL" in engine.text(), "web's death seen")
    engine.wait_for(lambda: not psutil.pid_exists(web), "web reaped, not left a zombie")  # type: ignore[arg-type]

    assert engine.proc is not None
    engine.proc.send_signal(signal.SIGTERM)
    assert engine.proc.wait(30) == 0
    assert not _alive(api) and "stopped cleanly" in engine.text()


def test_a_config_with_problems_is_refused_naming_each_and_the_engine_goes_on(engine: Engine) -> None:
    engine.config.write_text(_config(engine.tmp_path, ["web"]))
    engine.start()
    engine.wait_for(lambda: _alive(engine.pid("web")), "web")
    web = engine.pid("web")
    engine.config.write_text(_config(engine.tmp_path, ["web"]).replace("interval_s: 0.5", "interval_s: -1"))
    engine.hup("the engine goes on with the config it runs")
    assert "engine.interval_s" in engine.text()
    refused_at = time.time()
    engine.wait_for(lambda: engine.status_ts() > refused_at, "a tick after the refusal")
    assert engine.pid("web") == web and _alive(web) and "config reloaded" not in engine.text()


def test_a_service_gone_from_the_config_is_stopped_and_one_added_is_started(engine: Engine) -> None:
    engine.config.write_text(_config(engine.tmp_path, ["web", "api"]))
    engine.start()
    engine.wait_for(lambda: _alive(engine.pid("web")) and _alive(engine.pid("api")), "both services")
    web, api = engine.pid("web"), engine.pid("api")
    engine.config.write_text(_config(engine.tmp_path, ["web", "worker"]))
    engine.hup("config reloaded from")
    engine.wait_for(lambda: not _alive(api), "api stopped")
    engine.wait_for(lambda: _alive(engine.pid("worker")), "worker started")
    assert engine.pid("web") == web and _alive(web)
    assert "service api is gone from the config: stopped" in engine.text()


def test_a_change_only_a_restart_can_make_is_refused_and_nothing_is_reloaded(engine: Engine) -> None:
    engine.config.write_text(_config(engine.tmp_path, ["web"]))
    engine.start()
    engine.config.write_text(_config(engine.tmp_path, ["web"], state_dir="elsewhere"))
    engine.hup("only a restart of the engine takes")
    assert "engine.state_dir" in engine.text() and "config reloaded" not in engine.text()
    engine.config.write_text(_config(engine.tmp_path, ["web"]))
    engine.hup("is unchanged; nothing reloaded")


def test_a_reload_is_taken_when_the_services_are_left_running_on_exit(engine: Engine) -> None:
    """With ``stop_services_on_exit: false`` a SIGHUP reloads too: it does not end the engine."""
    keep = _config(engine.tmp_path, ["web"]).replace("host_metrics: false", "host_metrics: false, "
                                                     "stop_services_on_exit: false")
    engine.config.write_text(keep)
    engine.start()
    engine.wait_for(lambda: _alive(engine.pid("web")), "web")
    web = engine.pid("web")
    engine.config.write_text(keep.replace("interval_s: 0.5", "interval_s: 0.3"))
    engine.hup("config reloaded from")
    reloaded_at = time.time()
    engine.wait_for(lambda: engine.status_ts() > reloaded_at, "a tick of the new engine")
    assert engine.proc is not None and engine.proc.poll() is None
    assert engine.pid("web") == web and _alive(web) and "stopped cleanly" not in engine.text()


# run as `python -m autonomic.cli`, with the moment between the end of the replaced engine's run
# and the start of the next one widened: clearing a stop event that is set (the reload's) takes 2 s
_WIDENED = """
import runpy, sys, threading, time

_clear = threading.Event.clear

def _slow_clear(self):
    if self.is_set() and threading.current_thread() is threading.main_thread():
        sys.stderr.write("WINDOW OPEN\\n"); sys.stderr.flush()
        time.sleep(2)
    _clear(self)

threading.Event.clear = _slow_clear
sys.argv = ["autonomic", *sys.argv[1:]]
runpy.run_module("autonomic.cli", run_name="__main__")
"""


def test_a_sigterm_as_the_replaced_engine_hands_over_is_not_lost(engine: Engine) -> None:
    """A SIGTERM that lands after the old engine's run ended for a reload, before the next engine
    runs, stops the engine and is told to systemd (STOPPING=1; the test holds the notify socket).
    Before, it was lost: the stop event was cleared after the SIGTERM set it, the new engine ran on,
    its services with it, and systemd was told nothing (the stop event was set already)."""
    engine.config.write_text(_config(engine.tmp_path, ["web"]))
    systemd = NotifySocket(engine.tmp_path / "notify")
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"} | {"NOTIFY_SOCKET": systemd.variable}
    with engine.log.open("wb") as out:
        engine.proc = subprocess.Popen([sys.executable, "-c", _WIDENED, "run", "-c", str(engine.config),
                                        "--log-format", "text"], cwd=engine.tmp_path, stdin=subprocess.DEVNULL,
                                       stdout=out, stderr=subprocess.STDOUT, env=env)
    engine.wait_for(lambda: "engine started" in engine.text(), "the engine's start")
    engine.wait_for(lambda: _alive(engine.pid("web")), "web")
    web = engine.pid("web")
    engine.config.write_text(_config(engine.tmp_path, ["web"], interval=0.3))
    engine.hup("WINDOW OPEN")
    engine.proc.send_signal(signal.SIGTERM)
    try:
        code = engine.proc.wait(20)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the SIGTERM was lost: the engine runs on\n{engine.text()}")
    assert code == 0 and not _alive(web), engine.text()
    while systemd.read(0.1) is not None:
        pass
    systemd.close()
    assert any("STOPPING=1" in m for m in systemd.messages), systemd.messages


def test_a_reload_whose_engine_cannot_be_made_leaves_nothing_of_it_open(engine: Engine) -> None:
    """A new config whose engine cannot be made (a notifier's secret not set in the environment)
    is refused, and what was opened for it (the store's connections) is closed: SIGHUP after
    SIGHUP, the engine holds no more handles on the database than before."""
    engine.config.write_text(_config(engine.tmp_path, ["web"]))
    engine.start()
    engine.wait_for(lambda: _alive(engine.pid("web")), "web")
    assert engine.proc is not None
    db = str(engine.tmp_path / "state" / "autonomic.db")

    def handles() -> int:
        return sum(f.path.startswith(db) for f in psutil.Process(engine.proc.pid).open_files())  # type: ignore[union-attr]

    engine.wait_for(lambda: engine.status_ts() > 0, "a first tick")
    before = handles()
    bad = _config(engine.tmp_path, ["web"], interval=0.3) + (
        "notifiers:\n  - {type: webhook, url: 'http://127.0.0.1:9/', secret_env: AUTONOMIC_TEST_UNSET_SECRET}\n")
    engine.config.write_text(bad)
    for _ in range(3):
        engine.hup("reload failed")
    refused_at = time.time()
    engine.wait_for(lambda: engine.status_ts() > refused_at, "a tick after the refusals")
    assert "AUTONOMIC_TEST_UNSET_SECRET" in engine.text()
    assert handles() <= before, [f.path for f in psutil.Process(engine.proc.pid).open_files()]


# run as `python -m autonomic.cli`, its engine taking 2 s longer to make (a store slow to open)
_SLOW_START = """
import runpy, sys, time
from autonomic.engine import Engine

_init = Engine.__init__

def _slow_init(self, *args, **kwargs):
    sys.stderr.write("MAKING THE ENGINE\\n"); sys.stderr.flush()
    time.sleep(2)
    _init(self, *args, **kwargs)

Engine.__init__ = _slow_init
sys.argv = ["autonomic", *sys.argv[1:]]
runpy.run_module("autonomic.cli", run_name="__main__")
"""


def test_a_sighup_during_the_start_is_taken_once_the_engine_runs(engine: Engine) -> None:
    """A SIGHUP that lands while the engine is being made (before, SIGHUP's default action ended
    the process there) reloads the config once it runs."""
    engine.config.write_text(_config(engine.tmp_path, ["web"]))
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    with engine.log.open("wb") as out:
        engine.proc = subprocess.Popen([sys.executable, "-c", _SLOW_START, "run", "-c", str(engine.config),
                                        "--log-format", "text"], cwd=engine.tmp_path, stdin=subprocess.DEVNULL,
                                       stdout=out, stderr=subprocess.STDOUT, env=env)
    engine.wait_for(lambda: "MAKING THE ENGINE" in engine.text(), "the engine being made")
    engine.config.write_text(_config(engine.tmp_path, ["web"], interval=0.3))
    engine.proc.send_signal(signal.SIGHUP)
    engine.wait_for(lambda: "config reloaded from" in engine.text(), "the reload")
    assert "interval 0.3s" in engine.text().split("config reloaded from")[-1].splitlines()[0]
    engine.wait_for(lambda: _alive(engine.pid("web")), "web")


def _metrics(port: int) -> str | None:
    """GET /metrics of the engine's API, or None while it does not answer (between two engines)."""
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as answer:
            return str(answer.read().decode())
    except (urllib.error.URLError, OSError):
        return None


def test_a_service_gone_from_the_config_leaves_the_metrics_served_after_the_reload(engine: Engine) -> None:
    """The real engine's API (GET /metrics, no token needed) before and after a SIGHUP that takes
    ``api`` out of the config. Before, ``autonomic_paused{scope="api"}`` was served with its last
    value for as long as the process ran; now the removed service's series are gone, those of the
    services still configured (and of one added) are served."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    api_on = f"api: {{port: {port}}}"
    engine.config.write_text(_config(engine.tmp_path, ["web", "api"]).replace("api: {enabled: false}", api_on))
    engine.start()
    engine.wait_for(lambda: 'autonomic_paused{scope="api"} 0.0' in (_metrics(port) or ""), "api's series served")
    engine.config.write_text(_config(engine.tmp_path, ["web", "worker"]).replace("api: {enabled: false}", api_on))
    engine.hup("config reloaded from")
    engine.wait_for(lambda: 'autonomic_paused{scope="worker"}' in (_metrics(port) or ""), "the new engine's API")
    served = _metrics(port) or ""
    assert 'autonomic_paused{scope="web"} 0.0' in served and 'autonomic_paused{scope="global"} 0.0' in served
    assert 'scope="api"' not in served, served


def test_a_reload_that_changes_only_the_notifiers_is_taken(engine: Engine) -> None:
    """The person on call points the notifications somewhere else (here a jsonl file's path; a
    Slack URL, an email address alike) and reloads: the new notifiers are taken and the next
    notification goes there. Before: the reload compared the replicas' fingerprint, which leaves
    the notifiers (and api, reports, retention) out, so it logged "is unchanged; nothing reloaded"
    and the engine kept paging the old place until a restart."""
    notifiers = "notifiers:\n  - {{type: jsonl, path: {}}}\n"
    engine.config.write_text(_config(engine.tmp_path, ["web"], extra=notifiers.format("old.jsonl")))
    engine.start()
    engine.wait_for(lambda: _alive(engine.pid("web")), "web")
    engine.config.write_text(_config(engine.tmp_path, ["web"], extra=notifiers.format("new.jsonl")))
    engine.hup("config reloaded from")
    assert "is unchanged; nothing reloaded" not in engine.text()
    reloaded_at = time.time()
    engine.wait_for(lambda: engine.status_ts() > reloaded_at and _alive(engine.pid("web")), "a tick of the new engine")
    os.kill(engine.pid("web"), signal.SIGKILL)  # type: ignore[arg-type]
    new = engine.tmp_path / "new.jsonl"
    engine.wait_for(lambda: new.exists() and "web" in new.read_text(), "a notification about web in new.jsonl")
    old = engine.tmp_path / "old.jsonl"
    assert not old.exists() or '"web"' not in old.read_text()
