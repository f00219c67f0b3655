"""systemd's notify protocol (autonomic.sdnotify): what the environment asks for, and the watchdog
beats, over a real AF_UNIX datagram socket."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from autonomic.liveness import Watchdog
from autonomic.sdnotify import NotifyConfigError, SystemdNotify


@pytest.fixture
def listener(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    """systemd's end: a bound datagram socket and its path."""
    path = str(tmp_path / "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(10)
    yield sock, path
    sock.close()


def test_without_notify_socket_there_is_no_notifier_and_the_watchdog_variables_are_dropped() -> None:
    env = {"WATCHDOG_USEC": "1000000", "WATCHDOG_PID": "7", "PATH": "/bin"}
    assert SystemdNotify.from_environ(env, 7) is None
    assert env == {"PATH": "/bin"}
    assert SystemdNotify.from_environ({"NOTIFY_SOCKET": ""}, 7) is None


def test_the_variables_are_taken_out_of_the_environment_so_children_do_not_inherit_them() -> None:
    env = {"NOTIFY_SOCKET": "/run/systemd/notify", "WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "42", "HOME": "/"}
    sd = SystemdNotify.from_environ(env, 42)
    assert sd is not None and sd.address == "/run/systemd/notify" and sd.watchdog_s == 30.0
    assert env == {"HOME": "/"}
    sd.close()


def test_an_at_sign_names_an_abstract_socket() -> None:
    sd = SystemdNotify.from_environ({"NOTIFY_SOCKET": "@autonomic/notify"}, 1)
    assert sd is not None and sd.address == b"\0autonomic/notify" and sd.watchdog_s is None
    sd.close()


def test_watchdog_beats_are_expected_only_of_the_process_watchdog_pid_names() -> None:
    env = {"NOTIFY_SOCKET": "/run/n", "WATCHDOG_USEC": "2000000", "WATCHDOG_PID": "100"}
    sd = SystemdNotify.from_environ(env, 101)  # started by the process systemd watches
    assert sd is not None and sd.watchdog_s is None
    sd.close()


@pytest.mark.parametrize(("env", "named"), [
    ({"NOTIFY_SOCKET": "vsock:2:1234"}, "NOTIFY_SOCKET='vsock:2:1234'"),
    ({"NOTIFY_SOCKET": "relative/path"}, "NOTIFY_SOCKET='relative/path'"),
    ({"NOTIFY_SOCKET": "/run/n", "WATCHDOG_USEC": "soon"}, "WATCHDOG_USEC='soon'"),
    ({"NOTIFY_SOCKET": "/run/n", "WATCHDOG_USEC": "0"}, "WATCHDOG_USEC='0'"),
    ({"NOTIFY_SOCKET": "/run/n", "WATCHDOG_USEC": "1000", "WATCHDOG_PID": "me"}, "WATCHDOG_PID='me'"),
])
def test_a_variable_that_cannot_be_used_is_refused_naming_it(env: dict[str, str], named: str) -> None:
    with pytest.raises(NotifyConfigError, match=named.replace("'", ".")):
        SystemdNotify.from_environ(env, 1)


def test_ready_is_sent_once_and_a_status_only_when_it_changes(listener: tuple[socket.socket, str]) -> None:
    sock, path = listener
    sd = SystemdNotify(path)
    sd.status("starting")
    sd.status("running: 0 open incidents", ready=True)
    sd.status("running: 0 open incidents", ready=True)  # nothing new: nothing sent
    sd.status("running:\n1 open incident", ready=True)  # one line
    sd.stopping("stopping (SIGTERM)")
    got = [sock.recv(4096).decode() for _ in range(4)]
    assert got == ["STATUS=starting", "READY=1\nSTATUS=running: 0 open incidents",
                   "STATUS=running: 1 open incident", "STOPPING=1\nSTATUS=stopping (SIGTERM)"]
    sd.close()


def test_a_socket_nobody_listens_on_is_a_warning_not_an_error(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    sd = SystemdNotify(str(tmp_path / "gone"))
    assert sd.send("WATCHDOG=1") is False
    assert sd.send("WATCHDOG=1") is False
    warnings = [r.getMessage() for r in caplog.records if "cannot send WATCHDOG" in r.getMessage()]
    assert len(warnings) == 1, warnings  # once per reason, not once per beat
    sd.close()


def _next(sock: socket.socket) -> str:
    return sock.recv(4096).decode()


def test_watchdog_beats_stop_while_the_loop_is_stuck_and_come_back_when_it_moves(
        listener: tuple[socket.socket, str], caplog: pytest.LogCaptureFixture) -> None:
    """A beat thread that sent WATCHDOG=1 on a timer would keep a hung engine alive for ever;
    this one asks the loop's watchdog before each beat."""
    sock, path = listener
    now = [0.0]
    watchdog = Watchdog(5.0, lambda: now[0], what="a tick's start")
    sd = SystemdNotify(path, watchdog_s=0.1)
    done = threading.Event()
    thread = sd.keep_watchdog(watchdog.stuck, done)
    assert thread is not None
    try:
        assert [_next(sock) for _ in range(3)] == ["WATCHDOG=1"] * 3
        now[0] = 6.0  # the loop's last beat is 6 s old: past stuck_after_s
        text = _next(sock)
        if text == "WATCHDOG=1":  # the one in flight, at most
            text = _next(sock)
        assert text == "STATUS=STUCK: the engine loop has made no progress for 6 s (limit 5 s): stuck in a tick's start"
        sock.settimeout(0.5)  # five beat periods: none comes
        with pytest.raises(TimeoutError):
            sock.recv(4096)
        sock.settimeout(10)
        watchdog.beat("waiting for the next tick")
        assert _next(sock) == "WATCHDOG=1"
    finally:
        done.set()
        thread.join(timeout=10)
        sd.close()
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "stuck in a tick's start; WATCHDOG=1 is no longer sent" in logged
    assert "makes progress again (it was stuck in a tick's start); sending WATCHDOG=1 again" in logged


def test_no_watchdog_thread_when_systemd_expects_no_beats(listener: tuple[socket.socket, str]) -> None:
    sd = SystemdNotify(listener[1])
    assert sd.keep_watchdog(lambda: None, threading.Event()) is None
    sd.close()


def test_stopping_is_sent_once_and_the_first_reason_stands(listener: tuple[socket.socket, str]) -> None:
    """A SIGTERM says STOPPING=1, then the loop ending on it says so again with its own reason:
    systemd is told once, with the first reason (the signal); later messages still go."""
    sock, path = listener
    sd = SystemdNotify(path)
    sd.stopping("stopping (SIGTERM) after the current step")
    sd.stopping("stopping after the current step")
    sd.status("stopped")
    got = [sock.recv(4096).decode() for _ in range(2)]
    assert got == ["STOPPING=1\nSTATUS=stopping (SIGTERM) after the current step", "STATUS=stopped"]
    sd.close()


def test_a_sigterm_during_a_tick_is_not_followed_by_a_running_status_or_ready(
        listener: tuple[socket.socket, str], tmp_path: Path) -> None:
    """``autonomic run``'s wiring, on a real engine over a real socket: SIGTERM arrives during a
    tick (its handler tells systemd STOPPING=1 and sets the stop), and the tick then ends. Before,
    the after-tick hook went on to send ``READY=1`` and ``STATUS=running: ...``: for the rest of
    the stop (services stopping, up to minutes) ``systemctl status`` read as if the engine ran, and
    the loop's own STOPPING on its way out, sent once, did not put it back. Now, once stopping is
    told, nothing more of the running status is sent."""
    from autonomic.cli import _TellSystemd
    from autonomic.config import load_config_data
    from autonomic.engine import Engine

    sock, path = listener
    sd = SystemdNotify(path)
    cfg = load_config_data({"engine": {"interval_s": 1, "state_dir": str(tmp_path / "state"), "host_metrics": False}},
                           source="test.yaml", base_dir=tmp_path)
    engine = Engine(cfg)
    stop = threading.Event()
    tick = engine.tick

    def tick_then_sigterm() -> None:
        tick()
        sd.stopping("stopping (SIGTERM) after the current step")  # what run's signal handler does
        stop.set()

    engine.tick = tick_then_sigterm  # type: ignore[method-assign]
    told = _TellSystemd(sd)
    engine.run(stop, on_tick=told.ticked, on_standby=told.standing_by, on_stopping=sd.stopping)
    sock.settimeout(0.5)
    got = []
    with contextlib.suppress(TimeoutError):
        while True:
            got.append(sock.recv(4096).decode())
    assert got == ["STOPPING=1\nSTATUS=stopping (SIGTERM) after the current step"]
    sd.close()
