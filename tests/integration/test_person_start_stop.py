"""A person starts and stops a service autonomic supervises: ``autonomic start|stop`` run as a
real CLI subprocess (or typer's CliRunner for the refusals), ``POST /api/v1/services/{name}/start|stop``
through FastAPI's TestClient, over a real engine with its real SQLite store and real child
processes (a Python sleeper, a Python HTTP server probed over real HTTP). The one stand-in is the
engine's clock (a FakeClock moved one second per tick), so the crash-loop window passes in ticks."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
import yaml
from servers import free_port
from typer.testing import CliRunner

from autonomic.cli import app
from autonomic.config import load_config, load_config_data
from autonomic.engine import Engine, pause_key, request_service, service_request_outcome
from autonomic.knowledge import Store
from autonomic.model import Action, ActionState, Incident, IncidentState, Level, Sample
from autonomic.monitor.host import ProcessSource
from autonomic.oversight.api import ApiContext, create_app
from autonomic.oversight.auth import create_token
from autonomic.oversight.notify import Dispatcher
from autonomic.testing import FakeClock, FakeNotifier

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

SRC = Path(__file__).resolve().parents[2] / "src"
SLEEPER = "import time\nwhile True:\n    time.sleep(0.05)\n"


class _Engines:
    """``python ARGV`` engine processes over one test's folder (``autonomic run``, or a script
    that runs it), each logging to ``engine-N.log`` there, with ``src`` on their path."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.procs: list[subprocess.Popen[bytes]] = []
        self.env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}

    def run(self, *argv: str) -> subprocess.Popen[bytes]:
        with open(self.tmp_path / f"engine-{len(self.procs) + 1}.log", "wb") as out:
            self.procs.append(subprocess.Popen([sys.executable, *argv], stdin=subprocess.DEVNULL, stdout=out,
                                               stderr=subprocess.STDOUT, env=self.env, cwd=self.tmp_path))
        return self.procs[-1]

    def logs(self) -> str:
        """The last 3,000 characters of each engine's log."""
        return "\n".join(p.read_text(errors="replace")[-3000:] for p in sorted(self.tmp_path.glob("engine-*.log")))

    def wait(self, done: Callable[[], bool], what: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while not done():
            assert time.monotonic() < deadline, f"timed out waiting for {what}\n{self.logs()}"
            time.sleep(0.1)

    def kill(self) -> None:
        """SIGKILL every engine still running, and reap them all."""
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=10)


class Rig:
    """A real engine over a config file on disk (so that the CLI reaches the same store), ticked by hand."""

    def __init__(self, tmp_path: Path, service: dict[str, Any], others: tuple[dict[str, Any], ...] = ()) -> None:
        self.path = tmp_path / "autonomic.yaml"
        self.path.write_text(yaml.safe_dump({
            "engine": {"interval_s": 1, "state_dir": str(tmp_path / "state"), "host_metrics": False,
                       "settle_s": 0, "resolve_after_s": 30},
            "services": [service, *others],
            "policy": {"autonomy": "auto"},
        }))
        self.clock = FakeClock(time.time())
        self.service = service["name"]
        self.engine = self._engine()

    def _engine(self) -> Engine:
        self.notifier = FakeNotifier()
        engine = Engine(load_config(self.path), clock=self.clock,
                        notifiers=Dispatcher([(self.notifier, Level.INFO)], synchronous=True, dedup_s=0))
        engine.start()
        return engine

    def restart_engine(self) -> None:
        """Stop this engine (with its services, as a clean stop does by default) and start another."""
        self.engine.shutdown()
        self.engine = self._engine()

    @property
    def store(self) -> Store:
        return self.engine.store

    def tick(self) -> None:
        self.engine.tick()
        self.clock.advance(1.0)
        time.sleep(0.01)

    def tick_until(self, done: Callable[[], bool], limit: int = 150) -> None:
        for _ in range(limit):
            if done():
                return
            self.tick()
        raise AssertionError("condition not reached")

    def person(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Run ``autonomic ARGS -c CONFIG`` as a person would (a subprocess of its own), ticking the
        engine meanwhile, as its loop would; the command's exit code and output."""
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}
        proc = subprocess.Popen([sys.executable, "-m", "autonomic.cli", *args, "-c", str(self.path)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        deadline = time.monotonic() + 60
        while proc.poll() is None:
            assert time.monotonic() < deadline, "the command did not end"
            self.tick()
            time.sleep(0.05)
        out, err = proc.communicate()
        return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)

    def kinds(self, prefix: str) -> list[str]:
        return [e.kind for e in self.store.audit_events() if e.kind.startswith(prefix)]


def _crash(pid: int) -> None:
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
        assert time.monotonic() < deadline, "the killed process did not die"
        time.sleep(0.02)


@pytest.fixture
def flappy(tmp_path: Path) -> Iterator[Rig]:
    rig = Rig(tmp_path, {"name": "flappy", "actuators": {"process": {
        "command": [sys.executable, "-c", SLEEPER], "start_grace_s": 0}}})
    yield rig
    rig.engine.shutdown()


@pytest.fixture
def web(tmp_path: Path) -> Iterator[Rig]:
    """A real HTTP server supervised by the engine, probed over HTTP."""
    port = free_port()
    rig = Rig(tmp_path, {"name": "web", "probes": [{"type": "http", "url": f"http://127.0.0.1:{port}/"}],
                         "actuators": {"process": {"command": [sys.executable, "-m", "http.server", str(port),
                                                               "--bind", "127.0.0.1"],
                                                   "cwd": str(tmp_path), "start_grace_s": 10}}})
    yield rig
    rig.engine.shutdown()


def test_after_a_crash_loop_is_handed_over_the_person_starts_the_service_with_autonomic_start(flappy: Rig) -> None:
    """The hand-over leaves flappy down; `autonomic start` (a real CLI process, during a global
    pause: a person's own act is not automation) has the engine start it, audited as the
    person's request and its outcome, told to people, and printed by the command."""
    sup = flappy.engine.supervisor
    for _ in range(4):  # three restarts, then the fourth death is a crash loop
        pid = sup.pid("flappy")
        assert pid is not None
        seen = {i.id for i in flappy.store.incidents(service="flappy")}
        _crash(pid)
        flappy.tick_until(lambda s=seen: any(i.id not in s and i.state.terminal  # type: ignore[misc]
                                             for i in flappy.store.incidents(service="flappy")))
    [loop, *_] = flappy.store.incidents(service="flappy")
    assert loop.state == IncidentState.ESCALATED
    assert flappy.store.diagnoses(loop.id)[0].pattern_id == "crash-loop-hand-over"
    for _ in range(5):
        flappy.tick()
    assert sup.pid("flappy") is None  # left down for the person

    flappy.store.set_state(pause_key(None), {"reason": "looking", "actor": "person:bo", "ts": time.time()},
                           actor="person:bo", event="pause.set")
    done = flappy.person("start", "flappy", "--comment", "fixed the config", "--actor", "person:ana")

    assert done.returncode == 0, done.stderr
    pid = sup.pid("flappy")
    assert pid is not None and psutil.Process(pid).is_running()
    assert done.stdout.strip() == f"flappy started: pid {pid}"
    [asked] = [e for e in flappy.store.audit_events() if e.kind == "service.start_requested"]
    assert (asked.actor, asked.data["service"], asked.data["comment"]) == ("person:ana", "flappy", "fixed the config")
    [started] = [e for e in flappy.store.audit_events() if e.kind == "service.started"]
    assert started.subject == asked.subject and started.data["pid"] == pid and started.data["for"] == "person:ana"
    assert [n.title for n in flappy.notifier.sent if n.level == Level.INFO and "started by" in n.title] == [
        f"flappy started by person:ana: pid {pid}"]


def test_a_service_stopped_by_a_person_is_not_restarted_while_its_probe_fails_nor_started_by_a_new_engine(
    web: Rig,
) -> None:
    """`autonomic stop`: the engine stops the server and records it as stopped on purpose; its probe
    fails, the incident opens, and process-down-restart is passed over naming who stopped it, so
    nothing starts it; an engine started afterwards holds it too. `autonomic start` brings it back."""
    web.tick_until(lambda: web.engine.series.latest("web", "probe_ok") == (web.clock.now() - 1.0, 1.0)
                   or (web.engine.series.latest("web", "probe_ok") or (0, 0))[1] == 1.0)
    pid = web.engine.supervisor.pid("web")
    assert pid is not None
    before = {a.id for a in web.store.actions(service="web")}

    done = web.person("stop", "web", "-m", "disk swap", "--actor", "person:ana")

    assert done.returncode == 0, done.stderr
    assert "web stopped (pid" in done.stdout and "start web" in done.stdout
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    web.tick_until(lambda: any(i.state == IncidentState.ESCALATED for i in web.store.incidents(service="web")))
    for _ in range(15):  # the probe keeps failing; nothing starts it
        web.tick()
    assert web.engine.supervisor.pid("web") is None
    assert [a.pattern_id for a in web.store.actions(service="web") if a.id not in before] == []
    [inc, *_] = [i for i in web.store.incidents(service="web") if i.state == IncidentState.ESCALATED]
    passed = {c.pattern_id: c.reasons for c in web.store.diagnoses(inc.id)[0].candidates}
    assert any("web was stopped on purpose by person:ana" in r and "(disk swap)" in r
               for r in passed.get("process-down-restart", [])), passed
    assert web.kinds("service.") == ["service.stop_requested", "service.request_taken",
                                     "service.stopped_on_purpose", "service.stopped"]
    # its being down is what the person asked for: told at info, nobody paged
    told = [n for n in web.notifier.sent if n.incident_id == inc.id and n.body.startswith("not acting")]
    assert [n.level for n in told] == [Level.INFO], [(n.level, n.body) for n in told]
    assert "web was stopped on purpose by person:ana" in told[0].body

    web.restart_engine()
    for _ in range(3):
        web.tick()
    assert web.engine.supervisor.pid("web") is None  # not started at the engine's start

    status = CliRunner().invoke(app, ["status", "-c", str(web.path)])
    assert "STOPPED web: stopped on purpose by person:ana (disk swap)" in status.stdout
    token = create_token(web.store, "viewer", "viewer")
    with TestClient(create_app(ApiContext(store=web.store, config=web.engine.config, read_cache_s=0))) as client:
        [shown] = client.get("/api/v1/services", headers={"Authorization": f"Bearer {token}"}).json()
    assert (shown["stopped_on_purpose"]["actor"], shown["stopped_on_purpose"]["comment"]) == ("person:ana",
                                                                                              "disk swap")

    again = web.person("start", "web", "--actor", "person:ana")
    assert again.returncode == 0, again.stderr
    assert web.engine.supervisor.pid("web") is not None
    assert web.store.get_state("stopped:web") is None


def test_starting_a_running_service_does_nothing_and_says_so(flappy: Rig) -> None:
    pid = flappy.engine.supervisor.pid("flappy")
    assert pid is not None

    done = flappy.person("start", "flappy")

    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"flappy was already running (pid {pid}): nothing done"
    assert flappy.engine.supervisor.pid("flappy") == pid
    assert "service.already_running" in flappy.kinds("service.")


def test_start_of_a_service_autonomic_does_not_run_names_what_to_use_and_exits_2_writing_nothing(
    tmp_path: Path,
) -> None:
    path = tmp_path / "autonomic.yaml"
    path.write_text(yaml.safe_dump({
        "engine": {"state_dir": str(tmp_path / "state"), "host_metrics": False},
        "services": [{"name": "web", "actuators": {"systemd": {"unit": "web.service"}}},
                     {"name": "box", "actuators": {"docker": {"container": "box1"}}},
                     {"name": "bare"}]}))

    web = CliRunner().invoke(app, ["start", "web", "-c", str(path)])
    box = CliRunner().invoke(app, ["stop", "box", "-c", str(path)])
    bare = CliRunner().invoke(app, ["start", "bare", "-c", str(path)])
    nope = CliRunner().invoke(app, ["start", "nope", "-c", str(path)])

    assert web.exit_code == 2 and "web is run by systemd" in web.output and "systemctl start web.service" in web.output
    assert box.exit_code == 2 and "docker pause box1" in box.output
    assert bare.exit_code == 2 and "not run by autonomic" in bare.output
    assert nope.exit_code == 2 and "no service named 'nope'" in nope.output
    store = Store(f"sqlite:///{tmp_path / 'state' / 'autonomic.db'}")
    assert [e for e in store.audit_events() if e.kind.startswith("service.")] == []
    store.close()


def test_the_api_lets_an_operator_not_a_viewer_start_or_stop_and_names_unknown_and_unsupervised_services(
    tmp_path: Path,
) -> None:
    config = load_config_data({
        "engine": {"state_dir": str(tmp_path / "state"), "interval_s": 1, "host_metrics": False},
        "services": [{"name": "api", "actuators": {"process": {"command": [sys.executable, "-c", SLEEPER]}}},
                     {"name": "web", "actuators": {"systemd": {"unit": "web.service"}}}]},
        source="test.yaml", base_dir=tmp_path)
    store = Store(f"sqlite:///{tmp_path / 'api.db'}")
    tokens = {role: create_token(store, role, role) for role in ("viewer", "operator")}
    ctx = ApiContext(store=store, config=config, clock=FakeClock(1_700_000_000.0), read_cache_s=0)
    with TestClient(create_app(ctx)) as client:
        def post(role: str, path: str, body: dict[str, Any] | None = None) -> Any:
            return client.post(f"/api/v1/services/{path}", json=body or {},
                               headers={"Authorization": f"Bearer {tokens[role]}"})

        viewer = post("viewer", "api/stop")
        assert viewer.status_code == 403
        assert store.states("service-request:") == {}
        stop = post("operator", "api/stop", {"comment": "maintenance"})
        assert stop.status_code == 202, stop.text
        assert stop.json()["actor"] == "token:operator" or stop.json()["actor"].endswith("operator")
        [(key, queued)] = store.states("service-request:").items()
        assert key == stop.json()["request"]
        assert (queued["service"], queued["verb"], queued["comment"]) == ("api", "stop", "maintenance")
        assert post("operator", "api/start").status_code == 202
        unknown = post("operator", "nope/start")
        assert unknown.status_code == 404 and "no service named 'nope'" in unknown.json()["detail"]
        other = post("operator", "web/stop")
        assert other.status_code == 409 and "systemctl stop web.service" in other.json()["detail"]
        services = {s["name"]: s for s in client.get("/api/v1/services",
                                                     headers={"Authorization": f"Bearer {tokens['viewer']}"}).json()}
        assert services["api"]["stopped_on_purpose"] is None
    store.close()


def test_a_request_is_carried_out_once_though_two_engines_read_it(flappy: Rig, tmp_path: Path) -> None:
    """The take is a compare-and-set in the store: of two engines over one store that both saw the
    request, only the one whose delete succeeds acts on it."""
    key = request_service(flappy.store, flappy.engine.config, "flappy", "start", actor="person:ana", comment="",
                          now=time.time())
    flappy.tick()
    flappy.tick()  # a second look finds nothing left to take
    assert flappy.store.get_state(key) is None
    assert [e.kind for e in flappy.store.audit_events(subject=key)].count("service.already_running") == 1


def test_the_process_source_samples_a_service_stopped_on_purpose_as_unit_stopped_without_up() -> None:
    sleeper = subprocess.Popen([sys.executable, "-c", SLEEPER])
    try:
        source = ProcessSource(lambda: {"held": None, "dead": None, "live": sleeper.pid},
                               stopped=lambda: {"held", "live"})
        got = {(s.service, s.metric): s.value for s in source.collect(1.0) if s.metric in ("up", "unit_stopped")}
    finally:
        sleeper.kill()
        sleeper.wait()
    assert got == {("held", "unit_stopped"): 1.0, ("dead", "unit_stopped"): 0.0, ("dead", "up"): 0.0,
                   ("live", "unit_stopped"): 0.0, ("live", "up"): 1.0}
    assert all(isinstance(s, Sample) for s in source.collect(2.0))


def test_the_soaks_person_on_call_starts_a_service_left_down_through_autonomic_starts_request(
    tmp_path: Path,
) -> None:
    """benchmarks/soak.py's person on call, over a real engine running its own loop (a thread, as in
    the soak) with a real HTTP server it supervises: with the server down and left down (autonomy
    observe: nothing restarts it), the person's start is queued, carried out by the loop and audited
    as the person's."""
    import importlib.util
    import threading

    spec = importlib.util.spec_from_file_location("soak_benchmark_start",
                                                  SRC.parent / "benchmarks" / "soak.py")
    assert spec is not None and spec.loader is not None
    soak = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("soak_benchmark_start", soak)
    spec.loader.exec_module(soak)
    port = free_port()
    config = load_config_data({
        "engine": {"interval_s": 0.2, "state_dir": str(tmp_path / "state"), "host_metrics": False},
        "services": [{"name": "web", "probes": [{"type": "http", "url": f"http://127.0.0.1:{port}/health"}],
                      "actuators": {"process": {"command": [sys.executable, "-m", "http.server", str(port),
                                                            "--bind", "127.0.0.1"], "cwd": str(tmp_path)}}}],
        "policy": {"autonomy": "observe"}}, source="test.yaml", base_dir=tmp_path)
    engine = Engine(config, notifiers=Dispatcher([(FakeNotifier(), Level.INFO)], synchronous=True, dedup_s=0))
    stop = threading.Event()
    thread = threading.Thread(target=engine.run, args=(stop,), daemon=True)
    (tmp_path / "health").write_text("ok")
    thread.start()
    try:
        url = f"http://127.0.0.1:{port}"
        assert soak.scenario._wait(lambda: soak.scenario._healthy(url), 30)
        engine.supervisor.stop("web")  # it died and was handed over: down, nothing restarts it
        assert not soak.scenario._healthy(url)

        started = soak.person_on_call(engine, {"web": url}, time.time())

        assert started == 1 and soak.scenario._healthy(url)
        assert [e.actor for e in engine.store.audit_events() if e.kind == "service.start_requested"] == [
            "person:on-call"]
    finally:
        stop.set()
        thread.join(timeout=30)


def test_a_stop_queued_but_not_done_in_the_wait_exits_3_and_says_how_to_see_it_land(flappy: Rig) -> None:
    """With nobody ticking the engine (`--wait 0`: only queue it), `autonomic stop` cannot say it is
    done: it exits 3, not 0, and names the command that shows it land; the engine's next look then
    carries it out."""
    pid = flappy.engine.supervisor.pid("flappy")
    assert pid is not None

    queued = CliRunner().invoke(app, ["stop", "flappy", "--wait", "0", "--actor", "person:ana", "-c", str(flappy.path)])

    assert queued.exit_code == 3, queued.output
    assert "flappy: stop queued (request" in queued.output and "not yet done within 0 s" in queued.output
    assert f"autonomic -c {flappy.path} status` shows STOPPED flappy once it is stopped" in queued.output
    assert flappy.engine.supervisor.pid("flappy") == pid  # not done: nothing stopped it yet

    flappy.tick()
    assert flappy.engine.supervisor.pid("flappy") is None
    assert "service.stopped" in flappy.kinds("service.")


def test_a_queued_stop_is_shown_by_status_and_the_api_as_waiting_for_the_engine_until_it_is_done(
    flappy: Rig,
) -> None:
    """`autonomic stop --wait 0` (nobody ticks the engine) leaves the stop queued: `autonomic status`
    (text and --json), GET /api/v1/services and /overview say what was asked (stop), by whom, when
    and the comment, waiting for the engine. Once the engine has carried it out it is no longer
    shown as queued: status shows STOPPED instead. A real engine and a real sleeper process."""
    queued = CliRunner().invoke(app, ["stop", "flappy", "--wait", "0", "-m", "disk swap", "--actor", "person:ana",
                                      "-c", str(flappy.path)])
    assert queued.exit_code == 3, queued.output
    [key] = flappy.store.states("service-request:")

    text = CliRunner().invoke(app, ["status", "-c", str(flappy.path)])
    as_json = CliRunner().invoke(app, ["status", "--json", "-c", str(flappy.path)])
    token = create_token(flappy.store, "viewer", "viewer")
    headers = {"Authorization": f"Bearer {token}"}
    with TestClient(create_app(ApiContext(store=flappy.store, config=flappy.engine.config, read_cache_s=0))) as client:
        [card] = client.get("/api/v1/services", headers=headers).json()
        [front] = client.get("/api/v1/overview", headers=headers).json()["services"]

    assert text.exit_code == 0, text.output
    line = next((ln for ln in text.stdout.splitlines() if ln.startswith("QUEUED flappy:")), text.stdout)
    assert line.startswith("QUEUED flappy: stop requested by person:ana ") and " s ago (disk swap), " in line, line
    assert line.endswith("waiting for the engine"), line
    [request] = json.loads(as_json.stdout)["service_requests"]
    assert (request["request"], request["service"], request["verb"], request["actor"], request["comment"]) == (
        key, "flappy", "stop", "person:ana", "disk swap")
    assert abs(request["ts"] - time.time()) < 60
    for shown in (card, front):
        [req] = shown["requests"]
        assert (req["request"], req["verb"], req["actor"], req["comment"]) == (key, "stop", "person:ana", "disk swap")
        assert req["ts"] == request["ts"] and shown["stopped_on_purpose"] is None

    flappy.tick()

    done = CliRunner().invoke(app, ["status", "--json", "-c", str(flappy.path)])
    assert json.loads(done.stdout)["service_requests"] == []
    after = CliRunner().invoke(app, ["status", "-c", str(flappy.path)])
    assert "QUEUED" not in after.stdout and "STOPPED flappy: stopped on purpose by person:ana" in after.stdout
    with TestClient(create_app(ApiContext(store=flappy.store, config=flappy.engine.config, read_cache_s=0))) as client:
        [card] = client.get("/api/v1/services", headers=headers).json()
    assert card["requests"] == [] and card["stopped_on_purpose"]["actor"] == "person:ana"


# `autonomic run` whose supervisor dies (SIGKILL, its own) the moment it would stop a service: the
# engine killed between taking a person's stop from the store and carrying it out
_DIES_AT_STOP = """
import os, signal, sys
from autonomic.execute.supervisor import Supervisor
def _die(self, service, timeout_s=None):
    os.kill(os.getpid(), signal.SIGKILL)
Supervisor.stop = _die
from autonomic.cli import main
sys.argv = ["autonomic", "run", "-c", sys.argv[1]]
main()
"""


def test_a_stop_taken_by_an_engine_killed_before_doing_it_is_done_by_the_next_engine(tmp_path: Path) -> None:
    """Real `autonomic run` processes over one SQLite store, supervising a real sleeper: the first
    engine takes the person's stop and is SIGKILLed right as it would stop the process (its
    supervisor's stop kills it). The request is still in the store, the sleeper still runs; the next
    engine (started as a person or systemd would) adopts the sleeper, takes the request again and
    stops it, recording the outcome in the write that removes the request."""
    path = tmp_path / "autonomic.yaml"
    state = tmp_path / "state"
    path.write_text(yaml.safe_dump({
        "api": {"port": 0},
        "engine": {"interval_s": 0.2, "state_dir": str(state), "host_metrics": False},
        "services": [{"name": "sleepy", "actuators": {"process": {"command": [sys.executable, "-c", SLEEPER],
                                                                  "start_grace_s": 0}}}],
        "policy": {"autonomy": "observe"}}))
    pidfile = state / "run" / "pids" / "sleepy.json"
    engines = _Engines(tmp_path)
    run, logs, wait = engines.run, engines.logs, engines.wait

    sleeper: int | None = None
    store: Store | None = None
    try:
        first = run("-c", _DIES_AT_STOP, str(path))
        wait(lambda: pidfile.exists(), "the first engine to start the sleeper")
        sleeper = int(json.loads(pidfile.read_text())["pid"])
        store = Store(f"sqlite:///{state / 'autonomic.db'}")
        key = request_service(store, load_config(path), "sleepy", "stop", actor="person:ana", comment="disk swap",
                              now=time.time())

        wait(lambda: first.poll() is not None, "the first engine to die at the stop")
        assert first.returncode == -signal.SIGKILL, logs()
        assert [e.kind for e in store.audit_events(subject=key)] == ["service.stop_requested",
                                                                     "service.request_taken"]
        assert store.get_state(key) is not None  # not lost with the engine that took it
        assert psutil.pid_exists(sleeper) and psutil.Process(sleeper).status() != psutil.STATUS_ZOMBIE

        second = run("-m", "autonomic.cli", "run", "-c", str(path))
        wait(lambda: service_request_outcome(store, key) is not None, "the next engine to carry out the stop")

        outcome = service_request_outcome(store, key)
        assert outcome is not None and outcome.kind == "service.stopped" and outcome.data["pid"] == sleeper
        assert store.get_state(key) is None
        wait(lambda: not psutil.pid_exists(sleeper) or psutil.Process(sleeper).status() == psutil.STATUS_ZOMBIE,
             "the sleeper to be gone")
        taken = [e.data.get("again") for e in store.audit_events(subject=key) if e.kind == "service.request_taken"]
        assert taken == [None, True]
        assert [e.kind for e in store.audit_events(subject="stopped:sleepy")] == ["service.stopped_on_purpose"]
        second.send_signal(signal.SIGTERM)
        assert second.wait(timeout=30) == 0, logs()
    finally:
        engines.kill()
        if sleeper is not None:
            with contextlib.suppress(psutil.Error, ProcessLookupError):
                os.killpg(sleeper, signal.SIGKILL)
        if store is not None:
            store.close()


# `autonomic run` SIGKILLed (by itself) as its process actuator would start a service again: a
# restart remedy left in flight (RUNNING: the old process gone, the new one not started)
_DIES_AT_RESTART = """
import os, signal, sys
from autonomic.execute.process import ProcessActuator
def _die(sup, service):
    os.kill(os.getpid(), signal.SIGKILL)
ProcessActuator._start = staticmethod(_die)
from autonomic.cli import main
sys.argv = ["autonomic", "run", "-c", sys.argv[1]]
main()
"""


def test_a_persons_stop_cancels_a_restart_left_in_flight_by_an_engine_killed_mid_restart(tmp_path: Path) -> None:
    """Real `autonomic run` processes over one SQLite store, supervising a real sleeper, autonomy
    auto: the sleeper is killed, the first engine decides process-down-restart and is SIGKILLed as
    it would start the sleeper again (the action left RUNNING). A person stops the service
    meanwhile. The next engine carries out the stop, then finds the restart in flight: the
    person's stop wins. The restart is cancelled (audited, no outcome on the pattern's record, the
    incident with a person, told at info) and nothing starts the sleeper."""
    tag = str(tmp_path / "sleepy-marker")  # in the sleeper's argv: finds every sleeper of this test
    path = tmp_path / "autonomic.yaml"
    state = tmp_path / "state"
    path.write_text(yaml.safe_dump({
        "api": {"port": 0},
        "engine": {"interval_s": 0.2, "state_dir": str(state), "host_metrics": False, "settle_s": 0},
        "services": [{"name": "sleepy", "actuators": {"process": {
            "command": [sys.executable, "-c", SLEEPER, tag], "start_grace_s": 0}}}],
        "policy": {"autonomy": "auto"},
        "notifiers": [{"type": "jsonl", "path": str(tmp_path / "told.jsonl")}]}))
    engines = _Engines(tmp_path)
    run, logs, wait = engines.run, engines.logs, engines.wait

    def sleepers() -> list[psutil.Process]:
        found = []
        for proc in psutil.process_iter(["cmdline", "status"]):
            if (proc.info["cmdline"] or [])[-1:] == [tag] and proc.info["status"] != psutil.STATUS_ZOMBIE:
                found.append(proc)
        return found

    store: Store | None = None
    try:
        first = run("-c", _DIES_AT_RESTART, str(path))
        wait(lambda: len(sleepers()) == 1, "the first engine to start the sleeper")
        os.killpg(sleepers()[0].pid, signal.SIGKILL)
        wait(lambda: first.poll() is not None, "the first engine to die restarting the sleeper")
        assert first.returncode == -signal.SIGKILL, logs()
        store = Store(f"sqlite:///{state / 'autonomic.db'}")
        [restart] = store.actions(service="sleepy")
        assert (restart.pattern_id, restart.state) == ("process-down-restart", ActionState.RUNNING)
        key = request_service(store, load_config(path), "sleepy", "stop", actor="person:ana", comment="disk swap",
                              now=time.time())

        second = run("-m", "autonomic.cli", "run", "-c", str(path))
        wait(lambda: service_request_outcome(store, key) is not None, "the next engine to carry out the stop")
        wait(lambda: store.get(Action, restart.id).state != ActionState.RUNNING,  # type: ignore[union-attr]
             "the next engine to take up the restart left in flight")
        time.sleep(2)  # ten intervals more: nothing starts the sleeper

        assert sleepers() == [], f"the restart started the sleeper a person stopped\n{logs()}"
        ended = store.get(Action, restart.id)
        assert ended is not None and ended.state == ActionState.CANCELLED, logs()
        assert ended.error is not None and ended.error.startswith("stopped: sleepy was stopped on purpose by "
                                                                  "person:ana"), ended.error
        assert "(disk swap)" in ended.error
        assert store.outcomes(ended.incident_id) == []  # neither a success nor a failure of the pattern
        incident = store.get(Incident, ended.incident_id)
        assert incident is not None and incident.state == IncidentState.ESCALATED
        [cancel] = [e for e in store.audit_events(subject=restart.id) if e.kind == "action.cancelled"]
        assert cancel.data["stopped_on_purpose"] is True and "person:ana" in cancel.data["reason"]
        told = [json.loads(line) for line in (tmp_path / "told.jsonl").read_text().splitlines()]
        assert [(n["level"], n["title"]) for n in told if "cancelled" in n["title"]] == [
            ("info", "process action on sleepy cancelled: stopped on purpose")]
        second.send_signal(signal.SIGTERM)
        assert second.wait(timeout=30) == 0, logs()
    finally:
        engines.kill()
        for left in sleepers():
            with contextlib.suppress(psutil.Error, ProcessLookupError):
                os.killpg(left.pid, signal.SIGKILL)
        if store is not None:
            store.close()


def test_a_persons_stop_during_a_restarts_verification_cancels_it_rather_than_judging_it(flappy: Rig) -> None:
    """flappy (a real sleeper) dies and is restarted by process-down-restart; while the restart is
    being verified, a person stops flappy. The stopped service says nothing about the fix: at
    the window's end the restart is cancelled, naming the person's stop, with no verdict on the
    pattern's record (neither pass nor fail), and nothing starts flappy again."""
    pid = flappy.engine.supervisor.pid("flappy")
    assert pid is not None
    _crash(pid)
    flappy.tick_until(lambda: any(a.state == ActionState.VERIFYING for a in flappy.store.actions(service="flappy")))
    [restart] = flappy.store.actions(service="flappy")
    assert restart.pattern_id == "process-down-restart" and flappy.engine.supervisor.pid("flappy") is not None

    request_service(flappy.store, flappy.engine.config, "flappy", "stop", actor="person:ana", comment="disk swap",
                    now=flappy.clock.now())
    flappy.tick_until(lambda: flappy.store.get(Action, restart.id).state.terminal)  # type: ignore[union-attr]
    for _ in range(5):
        flappy.tick()

    ended = flappy.store.get(Action, restart.id)
    assert ended is not None and ended.state == ActionState.CANCELLED, (ended.state if ended else None,
                                                                       ended.error if ended else None)
    assert ended.error is not None and ended.error.startswith("stopped: flappy was stopped on purpose by person:ana")
    assert flappy.store.outcomes(action_id=restart.id) == []
    assert flappy.engine.supervisor.pid("flappy") is None
    assert [n.level for n in flappy.notifier.sent if "cancelled" in n.title] == [Level.INFO]


def test_a_restart_decided_in_the_tick_a_persons_stop_is_carried_out_in_is_cancelled_before_it_runs(
    flappy: Rig,
) -> None:
    """flappy (a real sleeper) dies, and a person's stop of it lands in the store as the engine
    stores the death's finding (the request queued from within that ingest, as another process
    would): in that tick the engine carries out the stop (nothing left to stop), then decides the
    down incident on samples taken before the stop (restart), and the restart, checked against
    the stop in the store right before its actuator call, is cancelled: flappy stays down."""
    pid = flappy.engine.supervisor.pid("flappy")
    assert pid is not None
    keys: list[str] = []
    ingest = flappy.engine.ingest

    def ingest_and_stop(finding: Any, now: float) -> Any:
        if finding.service == "flappy" and not keys:
            keys.append(request_service(flappy.store, flappy.engine.config, "flappy", "stop", actor="person:ana",
                                        comment="", now=now))
        return ingest(finding, now)

    flappy.engine.ingest = ingest_and_stop  # type: ignore[method-assign]
    _crash(pid)

    flappy.tick_until(lambda: bool(keys) and flappy.store.get_state(keys[0]) is None)
    for _ in range(5):
        flappy.tick()

    assert flappy.engine.supervisor.pid("flappy") is None
    [restart] = flappy.store.actions(service="flappy")
    assert restart.state == ActionState.CANCELLED and restart.steps[-1].name == "baseline"  # nothing applied
    assert restart.error is not None and restart.error.startswith("stopped: flappy was stopped on purpose")


def test_a_request_two_engines_died_doing_is_refused_by_the_third_not_done_again(flappy: Rig) -> None:
    """A request stays in the store until it is done, so one that kills the engine doing it would
    kill every leader in turn: taken twice already (the audit log says so, as two engines that
    died left it), the next engine refuses it, says so (audited outcome, an alert) and removes it;
    flappy is left as it is."""
    pid = flappy.engine.supervisor.pid("flappy")
    key = request_service(flappy.store, flappy.engine.config, "flappy", "stop", actor="person:ana", comment="",
                          now=flappy.clock.now())
    for _ in range(2):
        flappy.store.audit("engine", "service.request_taken", key, {"service": "flappy", "verb": "stop"})

    flappy.tick()

    assert flappy.store.get_state(key) is None
    assert flappy.engine.supervisor.pid("flappy") == pid and flappy.store.get_state("stopped:flappy") is None
    outcome = service_request_outcome(flappy.store, key)
    assert outcome is not None and outcome.kind == "service.request_refused"
    assert outcome.data["error"].startswith("taken 2 times by engines that stopped before doing it")
    assert [n.level for n in flappy.notifier.sent if n.title == "stop of flappy asked by person:ana not done"] == [
        Level.ALERT]
