"""The process actuator restarting, starting and stopping real children."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from autonomic.errors import RetryableActuatorError
from autonomic.execute import builtin_actuators
from autonomic.execute.process import ProcessActuator, ProcessParams
from autonomic.execute.supervisor import ProcessBinding, Supervisor
from autonomic.protocols import Actuator, ActuatorContext, Target

SLEEPER = "import time\nwhile True:\n    time.sleep(0.05)\n"


class WallClock:
    def now(self) -> float:
        return time.time()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


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


@pytest.fixture
def act(sup: Supervisor, tmp_path: Path) -> ProcessActuator:
    return ProcessActuator(ActuatorContext(clock=WallClock(), state_dir=tmp_path, supervisor=sup))


def target(code: str = SLEEPER) -> Target:
    return Target(service="api", binding=ProcessBinding(command=[sys.executable, "-c", code]))


def test_builtin_actuators_satisfy_the_protocol(act: ProcessActuator) -> None:
    assert [cls.type for cls in builtin_actuators()][:4] == ["process", "config", "shell", "http"]
    assert {"docker", "systemd"} <= {cls.type for cls in builtin_actuators()}
    assert isinstance(act, Actuator)


def test_restart_changes_identity_and_applied_is_true_afterwards(
    act: ProcessActuator, sup: Supervisor
) -> None:
    t, p = target(), ProcessParams(op="restart")
    act.snapshot(t, p)  # registers the binding with the supervisor
    sup.start("api")
    snap = act.snapshot(t, p)
    assert snap["pid"] == sup.pid("api")
    assert act.applied(t, p, "k1", snap) is False
    detail = act.apply(t, p, "k1", snap)
    assert detail["pid"] != snap["pid"]
    assert act.applied(t, p, "k1", snap) is True
    identity = sup.identity("api")
    again = act.apply(t, p, "k1", snap)  # same key: no second restart
    assert again["noop"] is True
    assert sup.identity("api") == identity
    assert act.undo(t, p, "k1", snap) == {"undo": "not applicable"}


def test_graceful_restart_waits_for_grace_then_sigkills(
    act: ProcessActuator, sup: Supervisor, tmp_path: Path
) -> None:
    ready = tmp_path / "ready"
    code = (
        "import signal, time, pathlib\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        f"pathlib.Path({str(ready)!r}).write_text('')\nwhile True:\n    time.sleep(0.05)\n"
    )
    t, p = target(code), ProcessParams(op="graceful_restart", grace_s=0.3)
    act.snapshot(t, p)
    sup.start("api")
    wait_for(ready.exists)
    snap = act.snapshot(t, p)
    started = time.monotonic()
    detail = act.apply(t, p, "k2", snap)
    assert time.monotonic() - started >= 0.3
    assert detail["exit_code"] == -9
    assert act.applied(t, p, "k2", snap) is True


def test_stop_then_undo_starts_it_again(act: ProcessActuator, sup: Supervisor) -> None:
    t, p = target(), ProcessParams(op="stop")
    act.snapshot(t, p)
    sup.start("api")
    snap = act.snapshot(t, p)
    assert act.applied(t, p, "k3", snap) is False
    act.apply(t, p, "k3", snap)
    assert sup.pid("api") is None
    assert act.applied(t, p, "k3", snap) is True
    assert act.apply(t, p, "k3", snap)["noop"] is True
    undone = act.undo(t, p, "k3", snap)
    assert undone["undo"] == "start" and undone["pid"] == sup.pid("api")


def test_start_from_stopped_and_undo_stops(act: ProcessActuator, sup: Supervisor) -> None:
    t, p = target(), ProcessParams(op="start")
    snap = act.snapshot(t, p)
    assert snap == {"pid": None, "create_time": None}
    detail = act.apply(t, p, "k4", snap)
    assert sup.pid("api") == detail["pid"]
    assert act.applied(t, p, "k4", snap) is True
    act.undo(t, p, "k4", snap)
    assert sup.pid("api") is None


def test_undo_leaves_a_service_in_the_state_the_snapshot_saw(act: ProcessActuator, sup: Supervisor) -> None:
    """A start of a service already running changes nothing, so its undo does not stop it (an
    outage made by the rollback); nor does the undo of a stop start a service already stopped."""
    t = target()
    act.snapshot(t, ProcessParams(op="start"))
    pid = sup.start("api")
    start = ProcessParams(op="start")
    snap = act.snapshot(t, start)
    assert act.apply(t, start, "k5", snap)["noop"] is True
    assert act.undo(t, start, "k5", snap)["noop"] is True
    assert sup.pid("api") == pid
    sup.stop("api")
    stop = ProcessParams(op="stop")
    snap = act.snapshot(t, stop)
    assert act.apply(t, stop, "k6", snap)["noop"] is True
    assert act.undo(t, stop, "k6", snap)["noop"] is True
    assert sup.pid("api") is None


def test_start_of_a_process_that_dies_at_once_is_retryable_with_exit_code_and_log(
    act: ProcessActuator,
) -> None:
    t = target("import sys\nprint('boom: bad config', file=sys.stderr)\nsys.exit(4)\n")
    p = ProcessParams(op="start")
    with pytest.raises(RetryableActuatorError, match=r"(?s)exit code 4.*boom: bad config"):
        act.apply(t, p, "k5", act.snapshot(t, p))


def test_describe_is_one_line_without_io(tmp_path: Path) -> None:
    act = ProcessActuator(ActuatorContext(clock=WallClock(), state_dir=tmp_path, supervisor=None))
    text = act.describe(target(), ProcessParams(op="graceful_restart", grace_s=5))
    assert text == "gracefully restart api (SIGTERM, up to 5 s, then SIGKILL)"


def test_params_reject_unknown_op_and_out_of_range_grace() -> None:
    with pytest.raises(ValueError, match="op"):
        ProcessParams.model_validate({"op": "reboot"})
    with pytest.raises(ValueError, match="grace_s"):
        ProcessParams.model_validate({"grace_s": 0})
    with pytest.raises(ValueError, match="extra"):
        ProcessParams.model_validate({"signal": 9})
