"""The shipped pattern library end to end: each pattern is loaded from the built-in library
(``src/autonomic/patterns``, as every config loads it), diagnosed and decided by a real Engine
with its real store, and carried out by the real actuator on a real process, file or script
here. The one stand-in is the clock (a FakeClock moved one second per tick), so watch windows
pass in ticks instead of minutes; the processes, files and runbooks are real."""

from __future__ import annotations

import logging
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
from servers import free_port, wait_for

from autonomic.config import load_config_data
from autonomic.engine import Engine
from autonomic.knowledge import Store
from autonomic.model import ActionState, Incident, IncidentState, Level, Resolution
from autonomic.oversight.notify import Dispatcher
from autonomic.testing import FakeClock, FakeNotifier

SLEEPER = "import time\nwhile True:\n    time.sleep(0.05)\n"


class Rig:
    """A real engine over the built-in patterns with one service, ticked by hand."""

    def __init__(self, tmp_path: Path, service: dict[str, Any], autonomy: str = "auto") -> None:
        self.clock = FakeClock(time.time())
        self.notifier = FakeNotifier()
        self.store = Store("sqlite://")
        data = {
            "engine": {"interval_s": 1, "state_dir": str(tmp_path / "state"), "host_metrics": False,
                       "settle_s": 0, "resolve_after_s": 30},
            "services": [service],
            "policy": {"autonomy": autonomy},
        }
        config = load_config_data(data, source="test.yaml", base_dir=tmp_path)
        self.engine = Engine(config, clock=self.clock, store=self.store,
                             notifiers=Dispatcher([(self.notifier, Level.INFO)], synchronous=True, dedup_s=0))
        self.engine.start()
        self.service = service["name"]

    def tick_until(self, done: Callable[[], bool], limit: int = 150) -> None:
        for _ in range(limit):
            if done():
                return
            self.engine.tick()
            self.clock.advance(1.0)
            time.sleep(0.01)  # a restarted child gets a moment of real time to be seen running
        raise AssertionError("condition not reached")

    def latest(self) -> Incident | None:
        incidents = self.store.incidents(service=self.service)  # newest first
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


# A real metrics endpoint: how full the spool folder is against a 200 kB quota, as Prometheus text.
SPOOL_METRICS = """\
import os, sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
SPOOL, QUOTA = sys.argv[2], 200_000
class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        used = sum(e.stat().st_size for e in os.scandir(SPOOL))
        body = f"spool_used_percent {100.0 * used / QUOTA}\\n".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
"""

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
        _fill_until(rig, spool, lambda: (i := rig.latest()) is not None and i.state.terminal)
        inc = rig.latest()
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
        _fill_until(rig, spool, lambda: (i := rig.latest()) is not None and bool(rig.store.diagnoses(i.id)))
        inc = rig.latest()
        assert inc is not None
        [diagnosis] = rig.store.diagnoses(inc.id)
        assert diagnosis.pattern_id == "disk-fill-cleanup" and diagnosis.action is None
        assert "spool: its shell binding has no runbook 'disk-cleanup' (it has: rotate-logs)" in diagnosis.rationale
        assert rig.store.actions(service="spool") == []
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


def _health_server(port: int) -> Any:
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    from threading import Thread

    class Health(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
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
        answer_approval(rig.store, inc.id, "approve", actor="person:ops", comment="go", now=rig.clock.now())
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
    it as cleared and acts on nothing; the approval is audited as consumed, verdict cleared."""
    from autonomic.engine import answer_approval

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
        answer_approval(rig.store, inc.id, "approve", actor="person:ops", comment="go", now=rig.clock.now())
        for _ in range(5):
            rig.engine.tick()
            rig.clock.advance(1.0)
        assert rig.store.actions(incident_id=inc.id) == []
        closed = rig.latest()
        assert closed is not None and closed.closed_at is not None and closed.resolution == Resolution.CLEARED
        assert rig.engine.supervisor.pid("web") == pid  # not restarted
        consumed = [e for e in rig.store.audit_events() if e.kind == "approval.consumed"]
        assert consumed and consumed[-1].data["verdict"] == "cleared"
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
