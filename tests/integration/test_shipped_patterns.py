"""The shipped pattern library end to end: each pattern is loaded from the built-in library
(``src/autonomic/patterns``, as every config loads it), diagnosed and decided by a real Engine
with its real store, and carried out by the real actuator on a real process, file or script
here. The one stand-in is the clock (a FakeClock moved one second per tick), so watch windows
pass in ticks instead of minutes; the processes, files and runbooks are real."""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from autonomic.config import load_config_data
from autonomic.engine import Engine
from autonomic.knowledge import Store
from autonomic.model import ActionState, Incident, IncidentState, Level
from autonomic.oversight.notify import Dispatcher
from autonomic.testing import FakeClock, FakeNotifier

SLEEPER = "import time\nwhile True:\n    time.sleep(0.05)\n"


class Rig:
    """A real engine over the built-in patterns with one service, ticked by hand."""

    def __init__(self, tmp_path: Path, service: dict[str, Any]) -> None:
        self.clock = FakeClock(time.time())
        self.notifier = FakeNotifier()
        self.store = Store("sqlite://")
        data = {
            "engine": {"interval_s": 1, "state_dir": str(tmp_path / "state"), "host_metrics": False,
                       "settle_s": 0, "resolve_after_s": 30},
            "services": [service],
            "policy": {"autonomy": "auto"},
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
