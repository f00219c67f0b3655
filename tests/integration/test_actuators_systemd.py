"""The systemd actuator over the real D-Bus wire protocol, against a systemd stand-in.

systemd cannot run as PID 1 in this environment, so each test starts a private
``dbus-daemon`` (a real message bus on a unix socket) and joins it with
:class:`systemd_standin.SystemdStandin`, which owns ``org.freedesktop.systemd1`` and answers
the Manager and Properties calls the actuator makes the way systemd does (jobs that take
0.1 s, ActiveEnterTimestamp and MainPID bumped by a restart, NoSuchUnit for unknown units).
The actuator connects to that bus through its ``bus_address`` binding.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import ValidationError

from autonomic.errors import PatternError, RetryableActuatorError, TerminalActuatorError
from autonomic.execute.systemd_actuator import SystemdActuator, SystemdBinding, SystemdParams
from autonomic.plan.patterns import load_patterns
from autonomic.protocols import Actuator, ActuatorContext, Target
from autonomic.registry import Registry

sys.path.insert(0, str(Path(__file__).parent))
from systemd_standin import DbusDaemon, FakeUnit, SystemdStandin  # noqa: E402


class WallClock:
    def now(self) -> float:
        return time.time()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


@pytest.fixture
def bus() -> Iterator[DbusDaemon]:
    daemon = DbusDaemon()
    yield daemon
    daemon.stop()


@pytest.fixture
def standin(bus: DbusDaemon) -> Iterator[SystemdStandin]:
    units = [
        FakeUnit("app.service", active_enter_ts=1_000_000, main_pid=1000),
        FakeUnit("idle.service", "inactive", "dead", 0, 0),
        FakeUnit("broken.service", "inactive", "dead", 0, 0, fails=True),
        FakeUnit("locked.service", denied=True),
        FakeUnit("slow.service", job_s=10.0),
        FakeUnit("tick.timer", "active", "waiting"),
        FakeUnit("crashed.service", "failed", "failed", 5_000_000, 0),
        FakeUnit("jvm.service", stop_fails=True),
    ]
    s = SystemdStandin(bus.address, units, job_s=0.1).start()
    yield s
    s.stop()


@pytest.fixture
def act(tmp_path: Path) -> SystemdActuator:
    return SystemdActuator(ActuatorContext(clock=WallClock(), state_dir=tmp_path))


def target(bus: DbusDaemon, unit: str = "app.service") -> Target:
    return Target(service="app", binding=SystemdBinding(unit=unit, bus_address=bus.address, timeout_s=2))


def test_restart_bumps_the_timestamp_and_applied_is_true_after(
    act: SystemdActuator, bus: DbusDaemon, standin: SystemdStandin
) -> None:
    assert isinstance(act, Actuator)
    t, p = target(bus), SystemdParams(op="restart", wait_s=5)
    snap = act.snapshot(t, p)
    assert snap == {
        "unit": "app.service",
        "active_state": "active",
        "sub_state": "running",
        "active_enter_ts": 1_000_000,
        "main_pid": 1000,
    }
    assert act.applied(t, p, "k1", snap) is False
    detail = act.apply(t, p, "k1", snap)
    assert standin.calls["RestartUnit"] == 1
    unit = standin.unit("app.service")
    assert unit.active_enter_ts > 1_000_000
    assert detail["active_state"] == "active"
    assert detail["active_enter_ts"] == unit.active_enter_ts
    assert detail["main_pid"] == unit.main_pid != 1000
    assert detail["job"].startswith("/org/freedesktop/systemd1/job/")
    assert act.applied(t, p, "k1", snap) is True
    assert act.applied(t, p, "k1", {}) is None  # nothing to compare with
    assert act.undo(t, p, "k1", snap) == {"undo": "not applicable"}


def test_repeated_apply_with_the_same_key_sends_no_second_restart(
    act: SystemdActuator, bus: DbusDaemon, standin: SystemdStandin
) -> None:
    t, p = target(bus), SystemdParams(op="restart", wait_s=5)
    snap = act.snapshot(t, p)
    act.apply(t, p, "k1", snap)
    ts = standin.unit("app.service").active_enter_ts
    again = act.apply(t, p, "k1", snap)
    assert again["noop"] is True
    assert standin.calls["RestartUnit"] == 1
    assert standin.unit("app.service").active_enter_ts == ts


def test_stop_then_undo_starts_the_unit_again(act: SystemdActuator, bus: DbusDaemon, standin: SystemdStandin) -> None:
    t, p = target(bus), SystemdParams(op="stop", wait_s=5)
    snap = act.snapshot(t, p)
    assert act.applied(t, p, "k", snap) is False
    detail = act.apply(t, p, "k", snap)
    assert detail["active_state"] == "inactive"
    assert detail["main_pid"] is None
    assert act.applied(t, p, "k", snap) is True
    assert act.apply(t, p, "k", snap)["noop"] is True
    assert standin.calls["StopUnit"] == 1
    undone = act.undo(t, p, "k", snap)
    assert undone["undo"] == "start"
    assert undone["active_state"] == "active"
    assert standin.unit("app.service").active_state == "active"
    assert act.undo(t, p, "k", snap)["noop"] is True  # idempotent
    assert standin.calls["StartUnit"] == 1


def test_start_then_undo_stops_an_inactive_unit(act: SystemdActuator, bus: DbusDaemon, standin: SystemdStandin) -> None:
    t, p = target(bus, "idle.service"), SystemdParams(op="start", wait_s=5)
    snap = act.snapshot(t, p)
    assert snap["active_state"] == "inactive"
    assert snap["main_pid"] is None
    detail = act.apply(t, p, "k", snap)
    assert detail["active_state"] == "active"
    assert detail["main_pid"] is not None
    assert act.applied(t, p, "k", snap) is True
    assert act.undo(t, p, "k", snap)["active_state"] == "inactive"
    assert standin.unit("idle.service").active_state == "inactive"


def test_undo_of_a_stop_leaves_a_unit_that_was_already_inactive_alone(
    act: SystemdActuator, bus: DbusDaemon, standin: SystemdStandin
) -> None:
    t, p = target(bus, "idle.service"), SystemdParams(op="stop", wait_s=5)
    snap = act.snapshot(t, p)
    assert act.apply(t, p, "k", snap)["noop"] is True
    assert act.undo(t, p, "k", snap)["noop"] is True
    assert standin.calls["StopUnit"] == standin.calls["StartUnit"] == 0


def test_reload_waits_for_the_job_and_applied_cannot_be_told(
    act: SystemdActuator, bus: DbusDaemon, standin: SystemdStandin
) -> None:
    t, p = target(bus), SystemdParams(op="reload", wait_s=5)
    snap = act.snapshot(t, p)
    assert act.applied(t, p, "k", snap) is None
    detail = act.apply(t, p, "k", snap)
    assert detail["active_state"] == "active"
    assert standin.calls["ReloadUnit"] == 1
    assert detail["main_pid"] == 1000  # a reload keeps the main process


def test_timer_units_have_no_main_pid(act: SystemdActuator, bus: DbusDaemon, standin: SystemdStandin) -> None:
    snap = act.snapshot(target(bus, "tick.timer"), SystemdParams())
    assert snap["active_state"] == "active"
    assert snap["main_pid"] is None
    assert standin.calls["Get"] == 4  # LoadState, ActiveState, SubState, ActiveEnterTimestamp


def test_unknown_unit_is_terminal_and_names_the_unit(
    act: SystemdActuator, bus: DbusDaemon, standin: SystemdStandin
) -> None:
    t, p = target(bus, "ghost.service"), SystemdParams(op="restart", wait_s=5)
    with pytest.raises(TerminalActuatorError, match=r"ghost\.service.*no such unit"):
        act.snapshot(t, p)
    with pytest.raises(TerminalActuatorError, match=r"ghost\.service"):
        act.apply(t, p, "k", {})
    assert standin.calls["RestartUnit"] == 0


def test_access_denied_is_terminal(act: SystemdActuator, bus: DbusDaemon, standin: SystemdStandin) -> None:
    t, p = target(bus, "locked.service"), SystemdParams(op="restart", wait_s=5)
    snap = act.snapshot(t, p)
    with pytest.raises(TerminalActuatorError, match=r"locked\.service: access denied"):
        act.apply(t, p, "k", snap)


def test_a_unit_that_ends_failed_is_terminal(act: SystemdActuator, bus: DbusDaemon, standin: SystemdStandin) -> None:
    t, p = target(bus, "broken.service"), SystemdParams(op="start", wait_s=5)
    with pytest.raises(TerminalActuatorError, match=r"broken\.service: start failed"):
        act.apply(t, p, "k", act.snapshot(t, p))
    assert standin.unit("broken.service").active_state == "failed"


def test_restart_brings_a_failed_unit_back(act: SystemdActuator, bus: DbusDaemon, standin: SystemdStandin) -> None:
    t, p = target(bus, "crashed.service"), SystemdParams(op="restart", wait_s=5)
    snap = act.snapshot(t, p)
    assert (snap["active_state"], snap["main_pid"]) == ("failed", None)
    detail = act.apply(t, p, "k", snap)
    assert detail["active_state"] == "active"
    assert detail["active_enter_ts"] > 5_000_000
    assert act.applied(t, p, "k", snap) is True


def test_a_job_still_running_after_wait_s_is_retryable(
    act: SystemdActuator, bus: DbusDaemon, standin: SystemdStandin
) -> None:
    t, p = target(bus, "slow.service"), SystemdParams(op="restart", wait_s=0.3)
    started = time.monotonic()
    with pytest.raises(RetryableActuatorError, match=r"slow\.service: restart not finished after 0.3 s"):
        act.apply(t, p, "k", act.snapshot(t, p))
    assert time.monotonic() - started < 2


def test_a_retry_after_wait_s_waits_for_the_pending_restart_instead_of_restarting_again(
    act: SystemdActuator, bus: DbusDaemon, standin: SystemdStandin
) -> None:
    """A unit slower to restart than wait_s: the executor retries the apply, and the retry waits
    for the restart job still pending; a second RestartUnit restarted the unit in mid-start (and
    a third, at the next retry), so a slow unit never came up."""
    standin.unit("slow.service").job_s = 1.0
    t, p = target(bus, "slow.service"), SystemdParams(op="restart", wait_s=0.3)
    snap = act.snapshot(t, p)
    for _ in range(2):  # the first attempt and the executor's first retry, both before the job ends
        with pytest.raises(RetryableActuatorError, match="not finished"):
            act.apply(t, p, "k", snap)
    assert standin.calls["RestartUnit"] == 1
    time.sleep(0.6)
    assert act.apply(t, p, "k", snap)["noop"] is True
    assert act.applied(t, p, "k", snap) is True and standin.calls["RestartUnit"] == 1


def _person_runs(bus: DbusDaemon, method: str, unit: str) -> None:
    """``systemctl <method> <unit>`` from another client on the bus (mode "replace")."""
    from jeepney import DBusAddress, new_method_call
    from jeepney.io.blocking import open_dbus_connection

    manager = DBusAddress("/org/freedesktop/systemd1", bus_name="org.freedesktop.systemd1",
                          interface="org.freedesktop.systemd1.Manager")
    with open_dbus_connection(bus.address) as conn:
        conn.send_and_get_reply(new_method_call(manager, method, "ss", (unit, "replace")), timeout=2)


@pytest.mark.parametrize(("op", "person"), [("restart", "StopUnit"), ("stop", "StartUnit")])
def test_our_job_replaced_by_a_persons_opposite_job_is_terminal_not_retried(
    act: SystemdActuator, bus: DbusDaemon, standin: SystemdStandin, op: str, person: str
) -> None:
    """A person runs ``systemctl stop`` while our restart is pending (or ``start`` while our stop
    is): systemd cancels our job and does theirs. Before: the attempt timed out as retryable and
    the retry restarted the unit the person had just stopped (stopped the one they started)."""
    standin.unit("slow.service").job_s = 0.5
    t, p = target(bus, "slow.service"), SystemdParams(op=op, wait_s=3)  # type: ignore[arg-type]
    snap = act.snapshot(t, p)
    import threading

    timer = threading.Timer(0.1, _person_runs, (bus, person, "slow.service"))
    timer.start()
    with pytest.raises(TerminalActuatorError, match=r"replaced or cancelled it.*not retried"):
        act.apply(t, p, "k", snap)
    timer.join()


def test_bus_gone_is_retryable(act: SystemdActuator, bus: DbusDaemon, standin: SystemdStandin) -> None:
    t, p = target(bus), SystemdParams(op="restart", wait_s=5)
    snap = act.snapshot(t, p)
    bus.stop()
    with pytest.raises(RetryableActuatorError, match="cannot reach the D-Bus"):
        act.apply(t, p, "k", snap)
    with pytest.raises(RetryableActuatorError):
        act.snapshot(t, p)


def test_systemd_missing_from_a_live_bus_is_retryable(
    act: SystemdActuator, bus: DbusDaemon, standin: SystemdStandin
) -> None:
    standin.stop()
    with pytest.raises(RetryableActuatorError, match="ServiceUnknown"):
        act.snapshot(target(bus), SystemdParams())


def test_describe_makes_no_call(act: SystemdActuator, bus: DbusDaemon, standin: SystemdStandin) -> None:
    line = act.describe(target(bus), SystemdParams(op="stop", mode="fail"))
    assert line.startswith("stop systemd unit app.service of app (mode fail")
    offline = Target("app", SystemdBinding(unit="app.service", bus_address="unix:path=/nonexistent/bus"))
    assert "restart systemd unit app.service" in act.describe(offline, SystemdParams())
    assert sum(standin.calls.values()) == 0


def test_binding_rejects_names_that_are_not_units() -> None:
    for bad in ("app", "app.servic", "a b.service", "../x.service"):
        with pytest.raises(ValidationError, match="unit"):
            SystemdBinding(unit=bad)
    assert SystemdBinding(unit="getty@tty1.service").unit == "getty@tty1.service"
    with pytest.raises(ValidationError, match="bus_address"):
        SystemdBinding(unit="app.service", bus_address="tcp:host=x,port=1")
    with pytest.raises(ValidationError, match="wait_s"):
        SystemdParams(wait_s=0)


def test_load_patterns_accepts_a_systemd_pattern_when_registered(tmp_path: Path) -> None:
    reg = Registry()
    reg.register("actuator", SystemdActuator.type, SystemdActuator)
    good = tmp_path / "good.yaml"
    good.write_text(
        "id: unit-down-restart\nmatch: {cause: down}\n"
        "action: {type: systemd, params: {op: restart, wait_s: 10}}\n"
        "prior_confidence: 0.7\nverify: {metric: up, min: 1}\n"
    )
    (pattern,) = load_patterns([good], reg)
    assert pattern.action is not None
    assert pattern.action.params == {"op": "restart", "mode": "replace", "wait_s": 10.0}
    bad = tmp_path / "bad.yaml"
    bad.write_text(good.read_text().replace("op: restart", "op: reboot"))
    with pytest.raises(PatternError, match=r"bad\.yaml:3: action\.params\.op"):
        load_patterns([bad], reg)


def test_a_stop_that_leaves_the_unit_failed_has_stopped_it(
    act: SystemdActuator, bus: DbusDaemon, standin: SystemdStandin
) -> None:
    """A service whose main process exits 143 on SIGTERM ends "failed" after a stop: it is
    stopped all the same. The stop succeeds, ``applied`` says so after a crash (no second
    StopUnit), and undo starts it again."""
    t, p = target(bus, "jvm.service"), SystemdParams(op="stop", wait_s=5)
    snap = act.snapshot(t, p)
    detail = act.apply(t, p, "k", snap)
    assert detail["active_state"] == "failed" and detail["main_pid"] is None
    assert act.applied(t, p, "k", snap) is True
    assert act.apply(t, p, "k", snap)["noop"] is True and standin.calls["StopUnit"] == 1
    assert act.undo(t, p, "k", snap)["active_state"] == "active"


def test_stopping_a_unit_that_had_already_failed_is_a_noop(
    act: SystemdActuator, bus: DbusDaemon, standin: SystemdStandin
) -> None:
    t, p = target(bus, "crashed.service"), SystemdParams(op="stop", wait_s=5)
    snap = act.snapshot(t, p)
    assert act.applied(t, p, "k", snap) is True
    assert act.apply(t, p, "k", snap)["noop"] is True and standin.calls["StopUnit"] == 0


def test_unit_exit_says_how_a_failed_service_unit_ended_and_nothing_for_one_that_is_not_failed(
    act: SystemdActuator, bus: DbusDaemon, standin: SystemdStandin
) -> None:
    """``unit_exit`` reads ActiveState, then the Service's Result, ExecMainCode and ExecMainStatus
    over the real D-Bus from the stand-in systemd: an exit code, a signal (the OOM killer's
    SIGKILL), a core dump, and a unit that never ran its main process; None for a running,
    stopped or restarting unit."""
    crashed = standin.unit("crashed.service")
    crashed.result, crashed.exec_main_code, crashed.exec_main_status = "exit-code", 1, 3
    assert act.unit_exit(target(bus, "crashed.service")) == (
        "unit crashed.service failed: its main process exited with code 3 (Result exit-code)")
    crashed.result, crashed.exec_main_code, crashed.exec_main_status = "oom-kill", 2, 9
    assert act.unit_exit(target(bus, "crashed.service")) == (
        "unit crashed.service failed: its main process was killed by SIGKILL (Result oom-kill)")
    crashed.result, crashed.exec_main_code, crashed.exec_main_status = "core-dump", 3, 11
    assert act.unit_exit(target(bus, "crashed.service")) == (
        "unit crashed.service failed: its main process was killed by SIGSEGV and dumped core (Result core-dump)")
    crashed.result, crashed.exec_main_code, crashed.exec_main_status = "timeout", 0, 0
    assert act.unit_exit(target(bus, "crashed.service")) == "unit crashed.service failed (Result timeout)"
    assert act.unit_exit(target(bus, "app.service")) is None
    assert act.unit_exit(target(bus, "idle.service")) is None  # stopped: not a failure
    with pytest.raises(TerminalActuatorError, match="no such unit"):
        act.unit_exit(target(bus, "ghost.service"))
