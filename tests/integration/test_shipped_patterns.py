"""The shipped pattern library end to end: each pattern is loaded from the built-in library
(``src/autonomic/patterns``, as every config loads it), diagnosed and decided by a real Engine
with its real store, and carried out by the real actuator on a real process, file or script
here. The one stand-in is the clock (a FakeClock moved one second per tick), so watch windows
pass in ticks instead of minutes; the processes, files and runbooks are real."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
import yaml
from servers import free_port, wait_for

from autonomic.config import load_config_data
from autonomic.engine import Engine
from autonomic.execute.config_file import ConfigParams
from autonomic.knowledge import Store
from autonomic.model import ActionState, Incident, IncidentState, Level, Resolution
from autonomic.oversight.notify import Dispatcher
from autonomic.protocols import Target
from autonomic.testing import FakeClock, FakeNotifier

SLEEPER = "import time\nwhile True:\n    time.sleep(0.05)\n"


class Rig:
    """A real engine over the built-in patterns with one service, ticked by hand."""

    def __init__(self, tmp_path: Path, service: dict[str, Any], autonomy: str = "auto", *,
                 others: tuple[dict[str, Any], ...] = (), policy: dict[str, Any] | None = None) -> None:
        self.clock = FakeClock(time.time())
        self.notifier = FakeNotifier()
        self.store = Store("sqlite://")
        data = {
            "engine": {"interval_s": 1, "state_dir": str(tmp_path / "state"), "host_metrics": False,
                       "settle_s": 0, "resolve_after_s": 30},
            "services": [service, *others],
            "policy": {"autonomy": autonomy, **(policy or {})},
        }
        config = load_config_data(data, source="test.yaml", base_dir=tmp_path)
        self.engine = Engine(config, clock=self.clock, store=self.store,
                             notifiers=Dispatcher([(self.notifier, Level.INFO)], synchronous=True, dedup_s=0))
        self.engine.start()
        self.service = service["name"]

    def ticks(self, n: int) -> None:
        for _ in range(n):
            self.engine.tick()
            self.clock.advance(1.0)
            time.sleep(0.01)

    def tick_until(self, done: Callable[[], bool], limit: int = 150) -> None:
        for _ in range(limit):
            if done():
                return
            self.engine.tick()
            self.clock.advance(1.0)
            time.sleep(0.01)  # a restarted child gets a moment of real time to be seen running
        raise AssertionError("condition not reached")

    def latest(self, cause: str | None = None) -> Incident | None:
        """The service's newest incident (of ``cause``, when given: another trouble the real
        service shows on a loaded machine, its CPU say, is not the test's subject)."""
        incidents = [i for i in self.store.incidents(service=self.service)  # newest first
                     if cause is None or i.cause == cause]
        return incidents[0] if incidents else None


@pytest.fixture
def flappy(tmp_path: Path) -> Iterator[Rig]:
    rig = Rig(tmp_path, {"name": "flappy", "actuators": {"process": {
        "command": [sys.executable, "-c", SLEEPER], "start_grace_s": 0}}})
    yield rig
    rig.engine.shutdown()


def _crash(pid: int) -> None:
    """SIGKILL the service's process: a real crash, as a segfault or the OOM killer would leave it."""
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
        assert time.monotonic() < deadline, "the killed process did not die"
        time.sleep(0.02)


def test_a_crash_loop_is_restarted_three_times_then_handed_to_a_person_and_left_down(flappy: Rig) -> None:
    sup = flappy.engine.supervisor
    for n in range(1, 4):
        pid = sup.pid("flappy")
        assert pid is not None
        before = flappy.latest()
        _crash(pid)
        flappy.tick_until(lambda b=before: (i := flappy.latest()) is not None and i != b and i.state.terminal)  # type: ignore[misc]
        inc = flappy.latest()
        assert inc is not None and inc.state == IncidentState.RESOLVED, f"crash {n}"
        [action] = flappy.store.actions(incident_id=inc.id)
        assert (action.pattern_id, action.state) == ("process-down-restart", ActionState.SUCCEEDED)
        assert sup.pid("flappy") not in (None, pid)  # really restarted: a new process

    pid = sup.pid("flappy")
    assert pid is not None
    third = flappy.latest()
    _crash(pid)
    flappy.tick_until(lambda: (i := flappy.latest()) is not None and i != third and i.state.terminal)
    loop = flappy.latest()
    assert loop is not None and loop.state == IncidentState.ESCALATED
    [diagnosis] = flappy.store.diagnoses(loop.id)
    assert diagnosis.pattern_id == "crash-loop-hand-over" and diagnosis.action is None
    assert "3 actions of process-down-restart in the last 1800 s (>= 3)" in diagnosis.candidates[0].reasons
    assert flappy.store.actions(incident_id=loop.id) == []
    for _ in range(10):  # it stays down: no restart while the person looks
        flappy.engine.tick()
        flappy.clock.advance(1.0)
    assert sup.pid("flappy") is None
    assert len(flappy.store.actions(service="flappy")) == 3
    alerts = [n for n in flappy.notifier.sent if n.incident_id == loop.id and n.level != Level.INFO]
    assert alerts, "nobody was told"


def test_a_caller_whose_own_process_died_is_restarted_while_the_dependency_it_calls_is_still_down(
    tmp_path: Path,
) -> None:
    """web calls api; both are supervised. api crashes and stays down (its restart is only
    observed here); then web's own process crashes too. Root-cause ranking sees api depart first
    and would hold web back as its echo, but the supervisor says web's process exited: that is
    web's own fault, so web is restarted at once, api still down (before, web was denied at the
    root_cause gate, "impacted by api", and left down until api recovered: the soak found it)."""
    sleeper = {"command": [sys.executable, "-c", SLEEPER], "start_grace_s": 0}
    rig = Rig(tmp_path, {"name": "web", "depends_on": ["api"], "actuators": {"process": sleeper}},
              others=({"name": "api", "actuators": {"process": sleeper}},),
              policy={"services": {"api": {"autonomy": "observe"}}})
    sup = rig.engine.supervisor
    try:
        rig.ticks(90)  # the baseline root-cause ranking compares with
        api_pid, web_pid = sup.pid("api"), sup.pid("web")
        assert api_pid is not None and web_pid is not None
        _crash(api_pid)
        rig.ticks(4)
        _crash(web_pid)
        rig.tick_until(lambda: (i := rig.latest()) is not None and i.state.terminal)
        web = rig.latest()
        assert web is not None and web.cause == "down" and web.state == IncidentState.RESOLVED
        [diagnosis] = rig.store.diagnoses(web.id)
        assert diagnosis.impacted_by == []
        assert ("root cause analysis ranks web as impacted by api, but web's own process was killed by SIGKILL"
                in diagnosis.rationale)
        [action] = rig.store.actions(service="web")
        assert (action.pattern_id, action.state) == ("process-down-restart", ActionState.SUCCEEDED)
        assert sup.pid("web") not in (None, web_pid) and sup.pid("api") is None  # api still down
        assert rig.store.actions(service="api") == []
    finally:
        rig.engine.shutdown()


def test_a_caller_whose_own_process_died_does_not_wait_for_the_fix_of_its_dependency_to_verify(
    tmp_path: Path,
) -> None:
    """api crashes and is restarted; while that restart is still being verified (30 s), web's own
    process crashes. web is restarted at once, not after api's watch window and settle time: a
    dead process is no echo of api's trouble (before, web's incident waited for api's action to
    end, down all the while)."""
    sleeper = {"command": [sys.executable, "-c", SLEEPER], "start_grace_s": 0}
    rig = Rig(tmp_path, {"name": "web", "depends_on": ["api"], "actuators": {"process": sleeper}},
              others=({"name": "api", "actuators": {"process": sleeper}},))
    sup = rig.engine.supervisor
    try:
        rig.ticks(5)
        api_pid, web_pid = sup.pid("api"), sup.pid("web")
        assert api_pid is not None and web_pid is not None
        _crash(api_pid)
        rig.tick_until(lambda: any(a.state == ActionState.VERIFYING for a in rig.store.actions(service="api")))
        _crash(web_pid)
        rig.tick_until(lambda: bool(rig.store.actions(service="web")), limit=8)
        [api_fix] = rig.store.actions(service="api")
        assert api_fix.state == ActionState.VERIFYING  # web did not wait for it
        rig.tick_until(lambda: sup.pid("web") not in (None, web_pid), limit=5)
    finally:
        rig.engine.shutdown()


def _metrics_server(setup: str) -> str:
    """The program of a real metrics endpoint (port in argv[1]): ``setup`` defines ``reading()``,
    the Prometheus text it answers with at each request (its own arguments from argv[2])."""
    return f"""\
import os, signal, sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
{setup}
class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        body = reading().encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
"""


# A real dependency and its real caller: api answers HTTP on the port in argv[1]; web calls it every
# 50 ms and exits with code 3 the moment api refuses the connection (as a service that cannot run
# without its database does).
API = """\
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
class H(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.end_headers()
    def log_message(self, *args):
        pass
ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
"""
WEB = """\
import sys, time, urllib.request
while True:
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/", timeout=1).close()
    except OSError:
        sys.exit(3)
    time.sleep(0.05)
"""


def _api_and_web(tmp_path: Path, *, api_autonomy: str = "auto") -> Rig:
    """web depends on api; both are real processes the engine supervises; api has an HTTP probe.
    api will not start while the file ``tmp_path/api-broken`` exists (exit code 1). web's first
    start waits (up to 10 s) for api to answer; every later start exits at once when api refuses."""
    port = free_port()
    broken = tmp_path / "api-broken"
    api_cmd = f"import os, sys\nif os.path.exists({str(broken)!r}):\n    sys.exit(1)\n{API}"
    api = {"name": "api", "probes": [{"type": "http", "url": f"http://127.0.0.1:{port}/", "timeout_s": 0.5}],
           "actuators": {"process": {"command": [sys.executable, "-c", api_cmd, str(port)], "start_grace_s": 0}}}
    # web's very first start (with the engine's, beside api's) waits for api to listen: started
    # before api answers, it would exit at once and the test would begin from a dead web
    first = tmp_path / "web-started"
    web_cmd = (f"import os, sys, time, urllib.request\nif not os.path.exists({str(first)!r}):\n"
               f"    deadline = time.monotonic() + 10\n"
               f"    while time.monotonic() < deadline:\n        try:\n"
               f"            urllib.request.urlopen(f'http://127.0.0.1:{{sys.argv[1]}}/', timeout=1).close()\n"
               f"            break\n        except OSError:\n            time.sleep(0.05)\n"
               f"    open({str(first)!r}, 'w').close()\n{WEB}")
    web = {"name": "web", "depends_on": ["api"],
           "actuators": {"process": {"command": [sys.executable, "-c", web_cmd, str(port)], "start_grace_s": 0}}}
    rig = Rig(tmp_path, web, others=(api,), policy={"services": {"api": {"autonomy": api_autonomy}}})
    wait_for(lambda: _answers(f"http://127.0.0.1:{port}/"), what="api answering")
    wait_for(first.exists, what="web connected to api once")
    return rig


def _ended(pid: int) -> None:
    """Wait (real time) until ``pid`` has ended by itself."""
    deadline = time.monotonic() + 5
    while psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
        assert time.monotonic() < deadline, f"process {pid} did not end"
        time.sleep(0.02)


def _kill_api(rig: Rig) -> int:
    """Crash api; web, calling it, exits with code 3 on its own. Returns web's old pid."""
    sup = rig.engine.supervisor
    api_pid, web_pid = sup.pid("api"), sup.pid("web")
    assert api_pid is not None and web_pid is not None
    _crash(api_pid)
    _ended(web_pid)
    return web_pid


def _incident_of(rig: Rig, service: str, after: Incident | None = None) -> Incident | None:
    incidents = rig.store.incidents(service=service)  # newest first
    return incidents[0] if incidents and incidents[0] != after else None


def test_a_caller_that_exits_because_its_dependency_is_down_is_restarted_after_the_dependencys_fix(
    tmp_path: Path,
) -> None:
    """web exits (code 3) when api, which it calls, refuses. api's restart waits for a person's
    approval. web is dead and must be restarted, but not while api is down: restarted then, it
    exits again at once and its restart fails (before, web was restarted at once, died again and
    its incident was handed to a person: the fix was api's). web's incident waits, its diagnosis
    saying why; once the person approves api's restart and api answers again, web is restarted
    and stays up."""
    from autonomic.engine import answer_approval

    rig = _api_and_web(tmp_path, api_autonomy="approve")
    sup = rig.engine.supervisor
    try:
        web_pid = _kill_api(rig)
        rig.tick_until(lambda: (i := _incident_of(rig, "api")) is not None
                       and i.state == IncidentState.AWAITING_APPROVAL)
        rig.ticks(10)
        assert rig.store.actions(service="web") == []  # web waits: api's fix has not run
        web = _incident_of(rig, "web")
        assert web is not None and not web.state.terminal
        diagnosis = rig.store.diagnoses(web.id)[-1]
        assert diagnosis.dependencies_down == ["api"]
        assert ("web's own process exited with code 3 while api, which it depends on, is down: web is restarted "
                "once api's fix has run and api is up again" in diagnosis.rationale)
        api = _incident_of(rig, "api")
        assert api is not None
        answer_approval(rig.store, api.id, "approve", actor="person:ops", comment="go", now=rig.clock.now(),
                        approval_ttl_s=3600.0)
        rig.tick_until(lambda: (i := _incident_of(rig, "web")) is not None and i.state.terminal)
        web = _incident_of(rig, "web")
        assert web is not None and web.state == IncidentState.RESOLVED
        [action] = rig.store.actions(service="web")
        assert (action.pattern_id, action.state) == ("process-down-restart", ActionState.SUCCEEDED)
        [api_fix] = rig.store.actions(service="api")
        assert action.created_at > api_fix.created_at
        assert sup.pid("web") not in (None, web_pid)
    finally:
        rig.engine.shutdown()


def test_a_caller_whose_dependency_cannot_be_fixed_is_restarted_anyway_once_that_fix_has_ended(
    tmp_path: Path,
) -> None:
    """api crashes and will not start again (its restart dies at once, the action fails and api's
    incident goes to a person). web, dead since api went down, is not held for ever: it waits
    while api's restart is tried, then goes ahead once that action has ended (settle_s is 0
    here), and its own incident reaches a person with its own failed restart."""
    rig = _api_and_web(tmp_path)
    try:
        (tmp_path / "api-broken").write_text("")
        _kill_api(rig)
        rig.tick_until(lambda: bool(rig.store.actions(service="web")))
        [api_fix] = rig.store.actions(service="api")
        [web_fix] = rig.store.actions(service="web")
        assert api_fix.state == ActionState.FAILED
        events = rig.store.audit_events()  # in order; the clock stands still within a tick
        api_failed = next(e.seq for e in events if e.kind == "action.failed" and e.subject == api_fix.id)
        assert all(e.seq > api_failed for e in events if e.subject == web_fix.id)
        api = _incident_of(rig, "api")
        assert api is not None and api.state == IncidentState.ESCALATED
        rig.tick_until(lambda: (i := _incident_of(rig, "web")) is not None and i.state.terminal)
    finally:
        rig.engine.shutdown()


def test_a_callers_crashes_while_its_dependency_is_down_do_not_count_toward_a_crash_loop(
    tmp_path: Path,
) -> None:
    """api crashes twice; each time web, calling it, exits too, and is restarted after api's
    restart. Then web crashes on its own with api healthy. Its restarts after api's crashes do not
    count toward crash-loop-hand-over: its fourth death is restarted, not handed to a person
    (before, it was: '3 actions of process-down-restart in the last 1800 s'). Crashing on its own
    with api healthy, it is still handed over after three counted restarts (its sixth death)."""
    rig = _api_and_web(tmp_path)
    sup = rig.engine.supervisor
    try:
        for _ in range(2):
            before = _incident_of(rig, "web")
            _kill_api(rig)
            rig.tick_until(lambda b=before: (i := _incident_of(rig, "web", b)) is not None  # type: ignore[misc]
                           and i.state.terminal)
            inc = _incident_of(rig, "web")
            assert inc is not None and inc.state == IncidentState.RESOLVED
            rig.tick_until(lambda: all(i.state.terminal for i in rig.store.incidents()))
        for n in range(3, 7):
            before = _incident_of(rig, "web")
            pid = sup.pid("web")
            assert pid is not None
            _crash(pid)
            rig.tick_until(lambda b=before: (i := _incident_of(rig, "web", b)) is not None  # type: ignore[misc]
                           and i.state.terminal)
            inc = _incident_of(rig, "web")
            assert inc is not None
            [diagnosis] = rig.store.diagnoses(inc.id)
            if n < 6:
                assert inc.state == IncidentState.RESOLVED, f"death {n}: {diagnosis.rationale}"
                assert diagnosis.pattern_id == "process-down-restart"
            else:
                assert inc.state == IncidentState.ESCALATED
                assert diagnosis.pattern_id == "crash-loop-hand-over"
        reasons = diagnosis.candidates[0].reasons
        assert ("3 actions of process-down-restart in the last 1800 s (>= 3); 2 more answered a crash while a "
                "dependency was down, not counted" in reasons), reasons
    finally:
        rig.engine.shutdown()


class UnitHost:
    """What a test of a service run by systemd, Docker or Kubernetes holds (see :func:`_unit_host`)."""

    def __init__(self, binding: dict[str, Any], die: Callable[[], str], alive: Callable[[], bool],
                 restarts: Callable[[], int]) -> None:
        self.binding = binding
        self.die = die  # makes web's unit die; returns how the engine should say it ended
        self.alive = alive  # whether web's unit runs, as its manager says (its probe answers by it)
        self.restarts = restarts  # how many restarts the manager was asked for
        self.kube: Any = None  # the Kubernetes stand-in, for kind kubernetes
        self.systemd: Any = None  # the systemd stand-in, for kind systemd
        self.docker: Any = None  # the Docker engine stand-in, for kind docker


@contextlib.contextmanager
def _unit_host(kind: str, tmp_path: Path, slow_rollouts: bool = False) -> Iterator[UnitHost]:
    """A stand-in of the service manager ``kind`` speaking its real wire protocol, holding one
    running unit for web. systemd: a private dbus-daemon and the stand-in systemd on it
    (systemd_standin.py), restarts counted as RestartUnit calls; docker: the stand-in Docker Engine
    on a UNIX socket (docker_standin.py), restarts as POST .../restart; kubernetes: the stand-in
    API server (kube_standin.py) playing the Deployment controller (a rollout replaces the pods
    with running ones), restarts as PATCHes of the Deployment's template setting restartedAt (with
    ``slow_rollouts``, a rollout's new pods are being created until the test calls
    ``finish_rollouts`` on the stand-in, held in ``UnitHost.kube``)."""
    if kind == "systemd":
        from systemd_standin import DbusDaemon, FakeUnit, SystemdStandin

        bus = DbusDaemon()
        systemd = SystemdStandin(bus.address, [FakeUnit("web.service")]).start()

        def die() -> str:
            unit = systemd.unit("web.service")
            unit.active_state, unit.sub_state, unit.main_pid = "failed", "failed", 0
            unit.result, unit.exec_main_code, unit.exec_main_status = "exit-code", 1, 3
            return "web's unit web.service failed: its main process exited with code 3 (Result exit-code)"

        try:
            host = UnitHost({"unit": "web.service", "bus_address": bus.address, "timeout_s": 2}, die,
                            lambda: systemd.unit("web.service").active_state == "active",
                            lambda: systemd.calls["RestartUnit"])
            host.systemd = systemd
            yield host
        finally:
            systemd.stop()
            bus.stop()
    elif kind == "docker":
        import tempfile

        from docker_standin import DockerStandin

        folder = Path(tempfile.mkdtemp(prefix="dk", dir="/tmp"))
        dockerd = DockerStandin(folder / "docker.sock")
        dockerd.start()
        container = dockerd.add("web-1")

        def die() -> str:
            container.oom_killed = True
            dockerd.crash(container, exit_code=137)
            return "web's container web-1 exited with code 137 (OOMKilled)"

        try:
            host = UnitHost({"container": "web-1", "base_url": dockerd.base_url, "timeout_s": 5}, die,
                            lambda: container.running,
                            lambda: sum(r.path.endswith("/restart") for r in dockerd.calls("POST")))
            host.docker = dockerd
            yield host
        finally:
            dockerd.stop()
            shutil.rmtree(folder, ignore_errors=True)
    else:
        from kube_standin import running

        with running(rollouts=True, slow_rollouts=slow_rollouts) as kube:
            kube.add_workload("shop", "web", replicas=1)
            kube.add_pod("shop", "web-7f9c", {"app": "web"}, "2024-01-01T00:00:00Z")

            def die() -> str:  # web's pods (the first, or the ones a rollout made since) crash-loop
                with kube._lock:
                    for key in [k for k in kube.objects if k[:2] == ("pods", "shop")]:
                        del kube.objects[key]
                    kube.add_pod("shop", "web-7f9c", {"app": "web"}, "2024-01-01T00:00:00Z", [
                        {"name": "web", "ready": False, "restartCount": 4,
                         "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                         "lastState": {"terminated": {"exitCode": 137, "reason": "OOMKilled"}}}])
                return ("web's pod web-7f9c's container web is in CrashLoopBackOff, last terminated with exit code "
                        "137 (OOMKilled), 4 restarts")

            def alive() -> bool:
                with kube._lock:
                    pods = [o for (k, ns, _), o in kube.objects.items() if k == "pods" and ns == "shop"]
                return any(all("running" in (c.get("state") or {}) for c in p["status"]["containerStatuses"])
                           for p in pods)

            def restarts() -> int:
                return sum(r.method == "PATCH" and r.path.endswith("/deployments/web")
                           and "kubectl.kubernetes.io/restartedAt" in json.dumps(r.body) for r in kube.requests)

            host = UnitHost({"namespace": "shop", "name": "web", "api_url": kube.url}, die, alive, restarts)
            host.kube = kube
            yield host


@pytest.mark.parametrize("kind", ["systemd", "docker", "kubernetes"])
def test_a_caller_whose_unit_is_seen_dead_is_its_own_fault_and_not_held_back_as_its_dependencys_echo(
    tmp_path: Path, kind: str,
) -> None:
    """web, run by systemd, Docker or Kubernetes (stand-ins speaking each one's wire protocol),
    calls api (a real supervised process). api crashes and is restarted; while that restart is
    verified (30 s), web's probe fails and its unit is dead: a failed systemd unit, an exited
    container, a pod in CrashLoopBackOff. The actuator reads that state, so web's diagnosis
    says how it ended and web is decided at once (its restart through that actuator), not held
    back as api's echo until api's restart is verified (before, only a ``process`` binding's death
    was seen; these waited)."""
    port = free_port()
    with _unit_host(kind, tmp_path) as host:
        server = _health_server(port)
        web = {"name": "web", "depends_on": ["api"], "actuators": {kind: host.binding},
               "probes": [{"type": "http", "url": f"http://127.0.0.1:{port}/health", "timeout_s": 0.5}]}
        api = {"name": "api", "actuators": {"process": {"command": [sys.executable, "-c", SLEEPER],
                                                         "start_grace_s": 0}}}
        rig = Rig(tmp_path, web, others=(api,))
        try:
            rig.ticks(5)
            api_pid = rig.engine.supervisor.pid("api")
            assert api_pid is not None and _incident_of(rig, "web") is None
            _crash(api_pid)
            rig.tick_until(lambda: any(a.state == ActionState.VERIFYING for a in rig.store.actions(service="api")))
            said = host.die()
            server.shutdown()
            server.server_close()
            rig.tick_until(lambda: (i := _incident_of(rig, "web")) is not None and bool(rig.store.decisions(i.id)),
                           limit=8)
            [api_fix] = rig.store.actions(service="api")
            assert api_fix.state == ActionState.VERIFYING  # web did not wait for it
            inc = _incident_of(rig, "web")
            assert inc is not None
            diagnosis = rig.store.diagnoses(inc.id)[-1]
            assert diagnosis.own_failure == said
            assert f"{said}: its own fault, not an echo of its dependencies" in diagnosis.rationale
            assert diagnosis.pattern_id == UNIT_RESTARTS[kind]
        finally:
            rig.engine.shutdown()


UNIT_RESTARTS = {"systemd": "systemd-down-restart", "docker": "docker-down-restart",
                 "kubernetes": "kubernetes-down-rollout-restart"}


def _unit_rig(tmp_path: Path, kind: str, host: UnitHost, **service: Any) -> tuple[Rig, Any]:
    """A real engine over the built-in library watching web, run by ``kind`` (the stand-in in
    ``host``) and bound to that actuator only, with a real HTTP probe that answers 200 while the
    stand-in says web's unit runs (as the service in a real unit would) and 503 once it died."""
    port = free_port()
    server = _health_server(port, host.alive)
    web = {"name": "web", "actuators": {kind: host.binding},
           "probes": [{"type": "http", "url": f"http://127.0.0.1:{port}/health", "timeout_s": 0.5}], **service}
    return Rig(tmp_path, web), server


@pytest.mark.parametrize("kind", ["systemd", "docker", "kubernetes"])
def test_a_service_run_by_systemd_docker_or_kubernetes_that_dies_is_restarted_through_it_and_verified(
    tmp_path: Path, kind: str,
) -> None:
    """web is run by systemd, Docker or Kubernetes (stand-ins speaking each one's wire protocol;
    the engine, its store, the built-in library, the actuator and the HTTP probe are real), bound
    to that actuator only. Its unit dies: the probe fails, the down incident is diagnosed as that
    actuator's restart (the process restart ranked above it passed over: web binds no process),
    decided at autonomy auto, carried out (RestartUnit, POST .../restart, a rollout restart's
    PATCH), and verified by the probe answering again. Before, no built-in pattern could run on web:
    it stayed down and a person was paged."""
    with _unit_host(kind, tmp_path) as host:
        rig, server = _unit_rig(tmp_path, kind, host)
        try:
            rig.ticks(3)
            assert rig.latest() is None
            host.die()
            rig.tick_until(lambda: (i := rig.latest("down")) is not None and i.state.terminal, limit=250)
            inc = rig.latest("down")
            assert inc is not None and inc.state == IncidentState.RESOLVED, inc
            [diagnosis] = rig.store.diagnoses(inc.id)
            assert diagnosis.pattern_id == UNIT_RESTARTS[kind]
            process = next(c for c in diagnosis.candidates if c.pattern_id == "process-down-restart")
            assert "passed over here: web has no process actuator binding" in process.reasons
            [action] = rig.store.actions(incident_id=inc.id)
            assert (action.type, action.pattern_id, action.state) == (kind, UNIT_RESTARTS[kind], ActionState.SUCCEEDED)
            assert action.verify is not None and action.verify.metric == "probe_ok"
            assert host.restarts() == 1 and host.alive()
            [outcome] = rig.store.outcomes(action_id=action.id)
            assert outcome.verdict.value == "pass"
        finally:
            rig.engine.shutdown()
            server.shutdown()
            server.server_close()


@pytest.mark.parametrize("kind", ["systemd", "docker", "kubernetes"])
def test_a_unit_in_a_crash_loop_is_restarted_three_times_then_handed_to_a_person_and_left_down(
    tmp_path: Path, kind: str,
) -> None:
    """web's unit (systemd, Docker or Kubernetes stand-in) dies four times. It is restarted through
    its actuator three times, each verified; the fourth death is a crash loop: crash-loop-hand-over
    counts that actuator's restarts as it counts a process's, escalates to a person and leaves the
    unit down (before, only process-down-restart's restarts counted: a unit would be restarted for
    ever)."""
    with _unit_host(kind, tmp_path) as host:
        rig, server = _unit_rig(tmp_path, kind, host)
        try:
            rig.ticks(3)
            for n in range(1, 4):
                before = rig.latest("down")
                host.die()
                rig.tick_until(lambda b=before: (i := rig.latest("down")) is not None  # type: ignore[misc]
                               and i != b and i.state.terminal, limit=250)
                inc = rig.latest("down")
                assert inc is not None and inc.state == IncidentState.RESOLVED, f"death {n}"
                assert host.restarts() == n and host.alive()
            third = rig.latest("down")
            host.die()
            rig.tick_until(lambda: (i := rig.latest("down")) is not None and i != third and i.state.terminal)
            loop = rig.latest("down")
            assert loop is not None and loop.state == IncidentState.ESCALATED
            [diagnosis] = rig.store.diagnoses(loop.id)
            assert diagnosis.pattern_id == "crash-loop-hand-over" and diagnosis.action is None
            assert f"3 actions of {UNIT_RESTARTS[kind]} in the last 1800 s (>= 3)" in diagnosis.candidates[0].reasons
            assert rig.store.actions(incident_id=loop.id) == []
            rig.ticks(10)  # it stays down: no restart while the person looks
            assert host.restarts() == 3 and not host.alive()
            alerts = [n for n in rig.notifier.sent if n.incident_id == loop.id and n.level != Level.INFO]
            assert alerts, "nobody was told"
        finally:
            rig.engine.shutdown()
            server.shutdown()
            server.server_close()


def test_a_service_bound_to_systemd_and_process_is_restarted_through_the_binding_its_config_lists_first(
    tmp_path: Path,
) -> None:
    """web binds systemd (the stand-in) before process (a real supervised process). Both restarts
    match its failing probe with the same confidence: the order of its actuators decides, the
    diagnosis says so, and the unit is restarted while the process is left alone."""
    with _unit_host("systemd", tmp_path) as host:
        sleeper = {"command": [sys.executable, "-c", SLEEPER], "start_grace_s": 0}
        port = free_port()
        server = _health_server(port, host.alive)
        rig = Rig(tmp_path, {"name": "web", "actuators": {"systemd": host.binding, "process": sleeper},
                             "probes": [{"type": "http", "url": f"http://127.0.0.1:{port}/health", "timeout_s": 0.5}]})
        try:
            rig.ticks(3)
            pid = rig.engine.supervisor.pid("web")
            assert pid is not None
            host.die()
            rig.tick_until(lambda: (i := rig.latest("down")) is not None and i.state.terminal)
            inc = rig.latest("down")
            assert inc is not None and inc.state == IncidentState.RESOLVED
            [diagnosis] = rig.store.diagnoses(inc.id)
            assert diagnosis.pattern_id == "systemd-down-restart"
            assert ("tied with process-down-restart, ranked first by the order of the service's actuators (its "
                    "systemd binding comes first)") in diagnosis.rationale, diagnosis.rationale
            assert host.restarts() == 1 and rig.engine.supervisor.pid("web") == pid
        finally:
            rig.engine.shutdown()
            server.shutdown()
            server.server_close()


def test_a_unit_whose_up_its_config_scrapes_is_restarted_and_verified_by_that_one_up_series(
    tmp_path: Path,
) -> None:
    """web, run by systemd (the stand-in), has no probe; its metrics endpoint (a real HTTP server)
    says ``web_up``, renamed to ``up`` by its config. The unit's state is read too, but its ``up`` is
    left out: the config's own series is the one (two series of one metric, interleaved, could
    disagree and keep down_after from ever counting). The unit dies: the scraped ``up`` falls, the
    unit is restarted over D-Bus and verified by ``up`` (before, with no probe, the restart was
    passed over: nothing sampled its probe_ok, the one metric it was verified by)."""
    with _unit_host("systemd", tmp_path) as host:
        port = free_port()
        server = _text_server(port, lambda: f"web_up {1 if host.alive() else 0}\n")
        rig = Rig(tmp_path, {"name": "web", "actuators": {"systemd": host.binding},
                             "metrics": [{"type": "prometheus", "url": f"http://127.0.0.1:{port}/metrics",
                                          "rename": {"web_up": "up"}}]})
        try:
            rig.ticks(3)
            ts, _ = rig.engine.series.window("web", "up", 0.0)
            assert len(ts) == len(set(ts.tolist())) == 3  # one up a tick: the scrape's
            host.die()
            rig.tick_until(lambda: (i := rig.latest("down")) is not None and i.state.terminal)
            inc = rig.latest("down")
            assert inc is not None and inc.state == IncidentState.RESOLVED, inc
            [action] = rig.store.actions(incident_id=inc.id)
            assert (action.pattern_id, action.state) == ("systemd-down-restart", ActionState.SUCCEEDED)
            assert action.verify is not None and action.verify.metric == "up"
            assert host.restarts() == 1 and host.alive()
        finally:
            rig.engine.shutdown()
            server.shutdown()
            server.server_close()


# A real metrics endpoint: how full the spool folder is against a 200 kB quota, as Prometheus text.
SPOOL_METRICS = _metrics_server("""\
SPOOL, QUOTA = sys.argv[2], 200_000
def reading():
    used = sum(e.stat().st_size for e in os.scandir(SPOOL))
    return f"spool_used_percent {100.0 * used / QUOTA}\\n"
""")

# The service's cleanup runbook: keep the two newest chunks in its working folder, note the run.
CLEANUP = """\
import os, sys
chunks = sorted(os.listdir("."), key=os.path.getmtime)
for name in chunks[:-2]:
    os.remove(name)
with open(sys.argv[1], "a") as runs:
    runs.write(os.environ["AUTONOMIC_ACTION_KEY"] + "\\n")
"""


def _spool_rig(tmp_path: Path, runbooks: dict[str, list[str]]) -> tuple[Rig, Path]:
    spool = tmp_path / "spool"
    spool.mkdir()
    (tmp_path / "metrics.py").write_text(SPOOL_METRICS)
    port = free_port()
    rig = Rig(tmp_path, {
        "name": "spool",
        "metrics": [{"type": "prometheus", "url": f"http://127.0.0.1:{port}/metrics",
                     "rename": {"spool_used_percent": "disk_percent"}}],
        "trends": [{"metric": "disk_percent", "window_s": 30, "horizon_s": 600}],
        "actuators": {
            "process": {"command": [sys.executable, str(tmp_path / "metrics.py"), str(port), str(spool)]},
            "shell": {"cwd": str(spool), "runbooks": runbooks},
        },
    })
    wait_for(lambda: _answers(f"http://127.0.0.1:{port}/metrics"), what="spool metrics")
    return rig, spool


def _answers(url: str) -> bool:
    try:
        return httpx.get(url).status_code == 200
    except httpx.TransportError:
        return False


def _fill_until(rig: Rig, spool: Path, done: Callable[[], bool], limit: int = 200) -> None:
    """Write a 1 kB chunk (0.5% of the quota) into the spool at every tick until ``done``."""
    for i in range(limit):
        if done():
            return
        (spool / f"chunk-{i:04d}").write_bytes(b"x" * 1000)
        rig.engine.tick()
        rig.clock.advance(1.0)
    raise AssertionError("condition not reached")


def test_a_filling_disk_is_cleaned_by_the_services_own_runbook_before_the_breach_and_verified(
    tmp_path: Path,
) -> None:
    runs = tmp_path / "runs.log"
    (tmp_path / "cleanup.py").write_text(CLEANUP)
    rig, spool = _spool_rig(tmp_path, {"disk-cleanup": [sys.executable, str(tmp_path / "cleanup.py"), str(runs)]})
    try:
        _fill_until(rig, spool, lambda: (i := rig.latest("disk")) is not None and i.state.terminal)
        inc = rig.latest("disk")
        assert inc is not None and (inc.cause, inc.kind.value) == ("disk", "forecast")
        assert (inc.state, inc.resolution) == (IncidentState.RESOLVED, Resolution.PREVENTED)
        [diagnosis] = rig.store.diagnoses(inc.id)
        assert diagnosis.pattern_id == "disk-fill-cleanup"
        [action] = rig.store.actions(incident_id=inc.id)
        assert (action.type, action.state) == ("shell", ActionState.SUCCEEDED)
        assert runs.read_text().split() == [action.idempotency_key]  # the runbook ran, once
        ts, used = rig.engine.series.window("spool", "disk_percent", 0.0)
        assert max(used) < 90  # the line was never crossed
        assert action.applied_at is not None and used[ts > action.applied_at][0] < used[ts <= action.applied_at][-1]
    finally:
        rig.engine.shutdown()


def test_a_service_whose_shell_binding_has_no_cleanup_runbook_is_not_given_one_it_cannot_run(
    tmp_path: Path,
) -> None:
    """The shell binding names other runbooks only: the disk forecast is diagnosed, nothing is run
    (no failed action to open a breaker), and the reason names the runbook it lacks."""
    rig, spool = _spool_rig(tmp_path, {"rotate-logs": ["true"]})
    try:
        _fill_until(rig, spool, lambda: (i := rig.latest("disk")) is not None and bool(rig.store.diagnoses(i.id)))
        inc = rig.latest("disk")
        assert inc is not None
        [diagnosis] = rig.store.diagnoses(inc.id)
        assert diagnosis.pattern_id == "disk-fill-cleanup" and diagnosis.action is None
        assert "spool: its shell binding has no runbook 'disk-cleanup' (it has: rotate-logs)" in diagnosis.rationale
        assert rig.store.actions(service="spool") == []
    finally:
        rig.engine.shutdown()


# A real service for error-spike-after-config-revert: it answers its metrics with an error ratio
# of 0.3 while its config's timeout is under 2 s (read at every request) or a fault file exists,
# else its usual ratio (argv[4]); SIGHUP (the config actuator's reload) is taken as a reload.
SHOP = _metrics_server("""\
import yaml
CONFIG, FAULT, USUAL = sys.argv[2], sys.argv[3], float(sys.argv[4])
signal.signal(signal.SIGHUP, lambda *_: None)
def reading():
    with open(CONFIG) as f:
        timeout = yaml.safe_load(f)["server"]["timeout"]
    bad = timeout < 2 or os.path.exists(FAULT)
    return f"shop_error_ratio {0.3 if bad else USUAL}\\n"
""")

SHOP_CONFIG = "server:\n  timeout: 5\n  log: info\n  port: 8080\n  host: 0.0.0.0\npool:\n  size: 50\n"


def _git(repo: Path, *args: str, author: str = "Ann Operator <ann@example.com>") -> str:
    name, _, email = author.partition(" <")
    cmd = ["git", "-c", f"user.name={name}", "-c", f"user.email={email.rstrip('>')}", "-C", str(repo), *args]
    return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout


def _shop_rig(tmp_path: Path, usual_errors: float = 0.01, **thresholds: float) -> tuple[Rig, Path, Path]:
    """The shop service with its config in a real git repository, after autonomic's own earlier
    change to it (the pool raised 50 -> 60, committed by the config actuator as an action does)."""
    repo = tmp_path / "shop-config"
    repo.mkdir()
    (repo / "app.yaml").write_text(SHOP_CONFIG)
    _git(repo, "init", "-q")
    _git(repo, "add", "app.yaml")
    _git(repo, "commit", "-q", "-m", "shop: initial config")
    (tmp_path / "shop.py").write_text(SHOP)
    fault = tmp_path / "fault"
    port = free_port()
    rig = Rig(tmp_path, {
        "name": "shop",
        "metrics": [{"type": "prometheus", "url": f"http://127.0.0.1:{port}/metrics",
                     "rename": {"shop_error_ratio": "error_rate"}}],
        "actuators": {
            "process": {"command": [sys.executable, str(tmp_path / "shop.py"), str(port), str(repo / "app.yaml"),
                                    str(fault), str(usual_errors)]},
            "config": {"repo": str(repo), "file": "app.yaml"},
        },
        "thresholds": thresholds,
    })
    wait_for(lambda: _answers(f"http://127.0.0.1:{port}/metrics"), what="shop metrics")
    binding = rig.engine.config.bindings["shop"]["config"]
    raise_pool = ConfigParams(op="scale", key="pool.size", factor=1.2, reload="none")
    target = Target(service="shop", binding=binding)
    actuator = rig.engine.actuators["config"]
    actuator.apply(target, raise_pool, "earlier-pool-raise", actuator.snapshot(target, raise_pool))
    return rig, repo, fault


def _errors_incident(rig: Rig) -> Incident | None:
    return next((i for i in rig.store.incidents(service="shop") if i.cause == "errors"), None)


def test_an_error_spike_after_the_engines_own_config_change_does_not_revert_that_change(tmp_path: Path) -> None:
    """The last commit to shop's config is autonomic's own (a pool raise its verification passed);
    errors then spike for a reason of their own. error-spike-after-config-revert does not take the
    engine's change for "the last config change": the pool stays raised, nothing is reverted, and
    the incident goes to a person (before, the pattern reverted the engine's own verified fix)."""
    rig, repo, fault = _shop_rig(tmp_path)
    try:
        fault.touch()
        rig.tick_until(lambda: (i := _errors_incident(rig)) is not None and i.state.terminal)
        inc = _errors_incident(rig)
        assert inc is not None and inc.state == IncidentState.ESCALATED
        [diagnosis] = rig.store.diagnoses(inc.id)
        assert diagnosis.pattern_id is None and diagnosis.action is None
        assert rig.store.actions(service="shop") == []
        assert yaml.safe_load((repo / "app.yaml").read_text())["pool"]["size"] == 60
        assert "Autonomic-Action: earlier-pool-raise" in _git(repo, "log", "-1", "--format=%B")
    finally:
        rig.engine.shutdown()


def test_a_revert_is_verified_against_the_services_own_error_line(tmp_path: Path) -> None:
    """shop's error_rate line is 0.2 and its errors usually run at 0.1: the revert of Ann's change
    brings them back to 0.1, under shop's line, and the built-in pattern verifies it against that
    line (before, against its fixed 0.05: the fix that worked was judged a failure)."""
    rig, repo, _ = _shop_rig(tmp_path, usual_errors=0.1, error_rate=0.2)
    try:
        text = (repo / "app.yaml").read_text()
        (repo / "app.yaml").write_text(text.replace("timeout: 5", "timeout: 1"))
        _git(repo, "commit", "-q", "-am", "shorter timeout")
        rig.tick_until(lambda: (i := _errors_incident(rig)) is not None and i.state.terminal)
        inc = _errors_incident(rig)
        assert inc is not None and inc.state == IncidentState.RESOLVED
        [action] = rig.store.actions(incident_id=inc.id)
        assert action.verify is not None and (action.verify.max, action.verify.threshold) == (0.2, "max")
        assert yaml.safe_load((repo / "app.yaml").read_text())["server"]["timeout"] == 5
    finally:
        rig.engine.shutdown()


def test_an_error_spike_after_a_persons_change_reverts_that_change_names_it_and_keeps_the_engines_own(
    tmp_path: Path,
) -> None:
    """Ann shortens the timeout after autonomic raised the pool: errors spike, and the pattern
    reverts Ann's commit (named with its author in the diagnosis and the action), not autonomic's
    change after it: the engine's pool raise stays; errors fall; resolved."""
    rig, repo, _ = _shop_rig(tmp_path)
    try:
        text = (repo / "app.yaml").read_text()
        (repo / "app.yaml").write_text(text.replace("timeout: 5", "timeout: 1"))
        _git(repo, "commit", "-q", "-am", "shorter timeout")
        anns = _git(repo, "rev-parse", "HEAD").strip()
        rig.tick_until(lambda: (i := _errors_incident(rig)) is not None and i.state.terminal)
        inc = _errors_incident(rig)
        assert inc is not None and inc.state == IncidentState.RESOLVED
        [diagnosis] = rig.store.diagnoses(inc.id)
        assert diagnosis.pattern_id == "error-spike-after-config-revert"
        assert f"{anns[:12]} 'shorter timeout' by Ann Operator <ann@example.com>" in diagnosis.rationale
        [action] = rig.store.actions(incident_id=inc.id)
        assert action.state == ActionState.SUCCEEDED and action.undo["target_commit"] == anns
        config = yaml.safe_load((repo / "app.yaml").read_text())
        assert (config["server"]["timeout"], config["pool"]["size"]) == (5, 60)
    finally:
        rig.engine.shutdown()


def test_a_service_that_dies_right_after_start_is_reported_with_its_exit_code_and_log_tail(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A service whose command cannot work (a file it needs is missing) dies at once. Before,
    the engine logged "started" and then only "myapp is down: up == 0": nothing said that it
    had exited, with which code, or what it printed, so the person asked to approve a restart
    could not tell that a restart would meet the same end. Now a warning says how it ended and
    quotes the last lines of its log, and its down finding carries both (``autonomic explain``)."""
    import logging

    code = "import sys\nprint('fatal: /etc/myapp.conf: no such file', file=sys.stderr)\nsys.exit(3)\n"
    with caplog.at_level(logging.WARNING, logger="autonomic.engine"):
        rig = Rig(tmp_path, {"name": "myapp", "actuators": {"process": {"command": [sys.executable, "-c", code]}}})
        try:
            rig.tick_until(lambda: rig.latest() is not None)
            inc = rig.latest()
            assert inc is not None
            (down,) = [f for f in rig.store.findings(inc.id) if f.metric == "up"][:1]
        finally:
            rig.engine.shutdown()
    assert down.evidence["exit"] == "exited with code 3"
    assert "fatal: /etc/myapp.conf: no such file" in down.evidence["log_tail"]
    (warning,) = [r.getMessage() for r in caplog.records if r.getMessage().startswith("service myapp exited")]
    assert "exited with code 3" in warning and "fatal: /etc/myapp.conf: no such file" in warning


def _text_server(port: int, text: Callable[[], str]) -> Any:
    """A real HTTP endpoint on ``port`` answering every GET with ``text()`` (Prometheus text)."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    from threading import Thread

    class Metrics(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = text().encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Metrics)
    Thread(target=server.serve_forever, daemon=True).start()
    return server


def _health_server(port: int, healthy: Callable[[], bool] = lambda: True) -> Any:
    """A real HTTP health endpoint on ``port``: 200 while ``healthy()``, else 503."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    from threading import Thread

    class Health(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200 if healthy() else 503)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Health)
    Thread(target=server.serve_forever, daemon=True).start()
    return server


def test_an_approval_is_not_taken_as_cleared_between_the_steps_of_a_services_anomaly_detectors(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A service whose anomaly detectors score once a minute (``step_s: 60``) says nothing about
    its anomalies in between: ten quiet seconds are not its trouble gone, and an approval given
    then is honoured (the restart runs)."""
    from autonomic.engine import answer_approval

    port = free_port()
    rig = Rig(tmp_path, {"name": "web", "probes": [{"type": "http", "url": f"http://127.0.0.1:{port}/health",
                                                    "timeout_s": 0.5}],
                         "anomalies": [{"metric": "latency_ms", "step_s": 60}],
                         "actuators": {"process": {"command": [sys.executable, "-c", SLEEPER], "start_grace_s": 0}}},
              autonomy="approve")
    server = None
    try:
        rig.tick_until(lambda: (i := rig.latest()) is not None and i.state == IncidentState.AWAITING_APPROVAL)
        inc = rig.latest()
        assert inc is not None
        server = _health_server(port)
        for _ in range(10):
            rig.engine.tick()
            rig.clock.advance(1.0)
        answer_approval(rig.store, inc.id, "approve", actor="person:ops", comment="go", now=rig.clock.now(),
                        approval_ttl_s=3600.0)
        with caplog.at_level(logging.INFO, logger="autonomic.engine"):
            for _ in range(3):
                rig.engine.tick()
                rig.clock.advance(1.0)
        assert [a.pattern_id for a in rig.store.actions(incident_id=inc.id)] == ["process-down-restart"]
        # the log names the operation, as the request did (it said "approved process on web")
        assert f"incident {inc.id[:8]}: approved process restart on web" in caplog.messages
    finally:
        if server is not None:
            server.shutdown()
        rig.engine.shutdown()


def test_an_approval_that_comes_after_the_trouble_cleared_on_its_own_acts_on_nothing(tmp_path: Path) -> None:
    """3 a.m.: web's probe fails, a restart is proposed for approval; a minute later the probe
    passes again on its own (a blip); then the person, just awake, approves. Before, the approval
    was honoured (every gate passed) and a healthy service was restarted. Now an approval of an
    incident that has had no finding for a few ticks (as a diagnosed incident is cleared) closes
    it as cleared and acts on nothing; the approval is audited as consumed, verdict cleared, and
    recorded as a decision of the person's never acted on, which the ladder does not count."""
    from autonomic.engine import answer_approval
    from autonomic.plan.autonomy import people_evidence

    port = free_port()
    rig = Rig(tmp_path, {"name": "web", "probes": [{"type": "http", "url": f"http://127.0.0.1:{port}/health",
                                                    "timeout_s": 0.5}],
                         "actuators": {"process": {"command": [sys.executable, "-c", SLEEPER], "start_grace_s": 0}}},
              autonomy="approve")
    server = None
    try:
        pid = rig.engine.supervisor.pid("web")
        rig.tick_until(lambda: (i := rig.latest()) is not None and i.state == IncidentState.AWAITING_APPROVAL)
        inc = rig.latest()
        assert inc is not None
        (asked,) = [n for n in rig.notifier.sent if n.level == Level.APPROVAL_REQUESTED]
        # the request names the operation (was "process on web") and reads as sentences (was "(confidence 0.78).. Run")
        assert asked.title == "approval needed: process restart on web" and ".." not in asked.body
        server = _health_server(port)
        for _ in range(10):  # the probe passes: no finding for 10 s
            rig.engine.tick()
            rig.clock.advance(1.0)
        answer_approval(rig.store, inc.id, "approve", actor="person:ops", comment="go", now=rig.clock.now(),
                        approval_ttl_s=3600.0)
        for _ in range(5):
            rig.engine.tick()
            rig.clock.advance(1.0)
        assert rig.store.actions(incident_id=inc.id) == []
        closed = rig.latest()
        assert closed is not None and closed.closed_at is not None and closed.resolution == Resolution.CLEARED
        assert rig.engine.supervisor.pid("web") == pid  # not restarted
        consumed = [e for e in rig.store.audit_events() if e.kind == "approval.consumed"]
        assert consumed and consumed[-1].data["verdict"] == "cleared"
        # the person's yes is recorded as what it is, a decision of theirs never acted on (there was
        # none: "no action without a recorded decision", and the record of people's answers had a
        # hole), closed with the incident; the engine, not the person, consumed it
        assert (consumed[-1].actor, consumed[-1].data["approved_by"]) == ("engine", "person:ops")
        last = rig.store.decisions(inc.id)[-1]
        assert last.never_acted_on and (last.decided_by, last.comment, last.pattern_id) == (
            "person:ops", "go", "process-down-restart")
        assert [g.gate for g in last.gates] == ["trouble_cleared"] and "cleared on its own" in last.gates[0].reason
        # ... and counted neither as a success nor as a failure: of the remedy's record (no
        # action ran) and of the ladder's (no evidence from it)
        assert rig.store.pattern_tallies() == {}
        outcomes, answers = rig.store.pattern_record("process-down-restart", "web")
        assert outcomes == [] and [a.id for a in answers] == [last.id]
        assert people_evidence(answers, "process-down-restart", "web") == []
    finally:
        if server is not None:
            server.shutdown()
        rig.engine.shutdown()


def test_an_incident_with_no_remedy_tells_a_person_so_without_asking_them_to_approve_anything(
        tmp_path: Path) -> None:
    """A service autonomic only watches (a probe, no actuator) goes down at autonomy approve.
    Before, the alert read "not acting: has_action: ...; autonomy approve: waiting for a person
    to approve (from default); confidence 0.00 below threshold 0.60", as if an approval were
    awaited; there is nothing to approve. Now it gives the one reason that matters."""
    rig = Rig(tmp_path, {"name": "edge", "probes": [{"type": "http", "url": f"http://127.0.0.1:{free_port()}/",
                                                     "timeout_s": 0.5}]}, autonomy="approve")
    try:
        rig.tick_until(lambda: (i := rig.latest()) is not None and i.state == IncidentState.ESCALATED)
    finally:
        rig.engine.shutdown()
    (alert,) = [n for n in rig.notifier.sent if n.level == Level.ALERT]
    assert alert.body.startswith("not acting: has_action: ")
    assert "waiting for a person to approve" not in alert.body and "confidence" not in alert.body


DEMO_RENAME = {"demo_pool_in_use": "pool_in_use", "demo_pool_size": "pool_size",
               "demo_pool_utilization": "pool_utilization", "demo_error_rate": "error_rate"}


def _demo_pool_rig(tmp_path: Path, pool_size: int) -> tuple[Rig, Path, str]:
    """The real demo service (``autonomic.demo.service``) supervised by the engine, its pool size in
    a config file in a real git repository, its pool use forecast; returns the rig, the repo and
    the service's base URL."""
    repo = tmp_path / "web-config"
    repo.mkdir()
    (repo / "config.yaml").write_text(yaml.safe_dump({"pool": {"size": pool_size}, "features": {"fast_path": False}}))
    _git(repo, "init", "-q")
    _git(repo, "add", "config.yaml")
    _git(repo, "commit", "-q", "-m", "web: initial config")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    rig = Rig(tmp_path, {
        "name": "web", "type": "demo",
        "probes": [{"type": "http", "url": f"{url}/health", "timeout_s": 1}],
        "metrics": [{"type": "prometheus", "url": f"{url}/metrics", "rename": DEMO_RENAME}],
        "trends": [{"metric": "pool_utilization", "window_s": 10, "min_points": 8, "horizon_s": 600, "min_r2": 0.8,
                    "z_min": 3}],
        "actuators": {
            "process": {"command": [sys.executable, "-m", "autonomic.demo.service", "--name", "web", "--port",
                                    str(port), "--config", str(repo / "config.yaml")]},
            "config": {"repo": str(repo), "file": "config.yaml"},
        },
    })
    wait_for(lambda: _answers(f"{url}/health"), what="the demo service")
    return rig, repo, url


def _story(rig: Rig, inc: Incident) -> str:
    """What the engine decided and how its actions were judged, for a failing assertion."""
    decided = [f"{d.verdict}: {[g.reason for g in d.gates if not g.passed]}" for d in rig.store.decisions(inc.id)]
    judged = [f"{o.verdict}: {o.reason}" for o in rig.store.outcomes(incident_id=inc.id)]
    steps = [(s.name, s.detail) for a in rig.store.actions(incident_id=inc.id) for s in a.steps]
    return f"{inc.state.value}; decisions {decided}; outcomes {judged}; steps {steps}"


def _pool_incident(rig: Rig) -> Incident | None:
    return next((i for i in rig.store.incidents(service="web") if i.cause == "pool"), None)


def test_a_pool_leak_at_the_raises_max_is_met_by_a_graceful_restart_not_a_raise_that_changes_nothing(
    tmp_path: Path,
) -> None:
    """web's pool is 200 already, the most pool-exhaustion-raise allows, and a leak fills it. Before,
    the raise was "carried out" as a no-op ('value unchanged'), a verification window passed while
    the pool kept filling, and the incident went to a person as inconclusive. Now diagnosis passes
    the raise over (the config actuator's no_effect names why) and pool-exhaustion-restart
    restarts web gracefully, releasing the leaked connections: verified, prevented; no commit."""
    from autonomic.demo import faults

    rig, repo, url = _demo_pool_rig(tmp_path, pool_size=200)
    try:
        rig.ticks(15)  # a baseline of pool use
        pid = rig.engine.supervisor.pid("web")
        faults.inject(url, "conn_leak", rate=20, limit=182)  # the soak's leak for a pool of 200: 96% in use
        for _ in range(300):
            if (i := _pool_incident(rig)) is not None and i.state.terminal:
                break
            rig.engine.tick()
            rig.clock.advance(1.0)
            time.sleep(0.1)  # the leak grows in real time
        inc = _pool_incident(rig)
        assert inc is not None
        assert (inc.state, inc.resolution) == (IncidentState.RESOLVED, Resolution.PREVENTED), _story(rig, inc)
        [diagnosis] = rig.store.diagnoses(inc.id)
        assert diagnosis.pattern_id == "pool-exhaustion-restart"
        raise_ = next(c for c in diagnosis.candidates if c.pattern_id == "pool-exhaustion-raise")
        assert ("passed over here: web: pool.size is 200 in config.yaml already: scaling it by 1.2 (clamped to max "
                "200) leaves it 200, so the action would change nothing") in raise_.reasons
        [action] = rig.store.actions(incident_id=inc.id)
        assert (action.pattern_id, action.state) == ("pool-exhaustion-restart", ActionState.SUCCEEDED)
        assert rig.engine.supervisor.pid("web") not in (None, pid)  # really restarted: a new process
        assert faults.status(url)["leaked_connections"] == 0
        assert _git(repo, "rev-list", "--count", "HEAD").strip() == "1"  # no commit, not even an empty one
    finally:
        rig.engine.shutdown()


def test_a_pool_leak_under_the_raises_max_is_still_met_by_a_raise(tmp_path: Path) -> None:
    """The restart is the second remedy: with room to raise (50 -> 60) the raise is chosen and
    committed, and web keeps running (the same process, reloaded). How its verification ends
    depends on how far the leak still has to go (not this test's subject)."""
    from autonomic.demo import faults

    rig, repo, url = _demo_pool_rig(tmp_path, pool_size=50)
    try:
        rig.ticks(15)
        pid = rig.engine.supervisor.pid("web")
        # 48 of 50 in use, 10 a second: a steep, clean climb the forecast confirms within its
        # window. At 5 a second a threshold incident came first once in CI, and at 2 in 2 of 9 runs
        # (the slow climb a staircase against the traffic's noise: no confirmed trend before the
        # use crossed its threshold); no pool pattern matches a threshold incident. 10 of 10 runs,
        # 4 of them beside a busy loop on the same core.
        faults.inject(url, "conn_leak", rate=10, limit=38)
        for _ in range(300):
            if (i := _pool_incident(rig)) is not None and rig.store.actions(incident_id=i.id):
                break
            rig.engine.tick()
            rig.clock.advance(1.0)
            time.sleep(0.1)
        inc = _pool_incident(rig)
        assert inc is not None
        [diagnosis] = rig.store.diagnoses(inc.id)
        assert diagnosis.pattern_id == "pool-exhaustion-raise", diagnosis.rationale
        [action] = rig.store.actions(incident_id=inc.id)
        rig.tick_until(lambda: rig.store.get(type(action), action.id).state != ActionState.RUNNING)  # type: ignore[union-attr]
        assert yaml.safe_load((repo / "config.yaml").read_text())["pool"]["size"] == 60
        assert f"Autonomic-Action: {action.idempotency_key}" in _git(repo, "log", "-1", "--format=%B")
        assert rig.engine.supervisor.pid("web") == pid
    finally:
        rig.engine.shutdown()
