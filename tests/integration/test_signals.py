"""Signals are acted on off the signal handler (autonomic.signals), so a signal that lands while the
main thread holds a lock the action needs does not hang the process. Real processes, real signals."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from autonomic.signals import on_signals

SRC = str(Path(__file__).resolve().parents[2] / "src")

# The main thread holds the stop event's lock (as it does for a few bytecodes inside Event.wait,
# where the engine's loop waits between steps) when SIGTERM arrives; the handler runs right there.
HELD_WHEN_SIGNALLED = """
import os, signal, sys, threading
from autonomic.signals import on_signals
stop = threading.Event()
{install}
with stop._cond:
    os.kill(os.getpid(), signal.SIGTERM)
    for _ in range(100000):
        pass
sys.exit(0 if stop.wait(5) else 1)
"""


def _run(install: str) -> subprocess.CompletedProcess[bytes]:
    script = textwrap.dedent(HELD_WHEN_SIGNALLED).format(install=install)
    return subprocess.run([sys.executable, "-c", script], env={**os.environ, "PYTHONPATH": SRC},
                          capture_output=True, timeout=20)


def test_a_signal_landing_while_the_main_thread_holds_the_events_lock_still_sets_it():
    done = _run("on_signals([signal.SIGTERM], lambda sig: stop.set())")
    assert done.returncode == 0, done.stderr.decode()


def test_setting_the_event_in_the_handler_itself_hangs_there_which_is_what_on_signals_avoids():
    """The hazard is real (so the test above can fail): Event.set in a Python signal handler waits
    for a lock its own thread holds."""
    with pytest.raises(subprocess.TimeoutExpired):
        subprocess.run([sys.executable, "-c", textwrap.dedent(HELD_WHEN_SIGNALLED).format(
            install="signal.signal(signal.SIGTERM, lambda *_: stop.set())")],
            env={**os.environ, "PYTHONPATH": SRC}, capture_output=True, timeout=3)


def _wait(pred, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_each_signal_is_acted_on_in_order_and_restore_puts_the_previous_handlers_back():
    before = signal.getsignal(signal.SIGUSR1), signal.getsignal(signal.SIGUSR2)
    got: list[signal.Signals] = []
    restore = on_signals([signal.SIGUSR1, signal.SIGUSR2], got.append)
    try:
        os.kill(os.getpid(), signal.SIGUSR1)
        _wait(lambda: len(got) == 1)
        os.kill(os.getpid(), signal.SIGUSR2)
        _wait(lambda: len(got) == 2)
        assert got == [signal.SIGUSR1, signal.SIGUSR2]
        assert all(t.name != "signals" or t.daemon for t in threading.enumerate())
    finally:
        restore()
    assert (signal.getsignal(signal.SIGUSR1), signal.getsignal(signal.SIGUSR2)) == before
    assert not any(t.name == "signals" for t in threading.enumerate())


def test_an_action_that_raises_is_logged_and_the_next_signal_is_still_acted_on(caplog):
    got: list[signal.Signals] = []

    def act(sig: signal.Signals) -> None:
        got.append(sig)
        if len(got) == 1:
            raise RuntimeError("boom")

    restore = on_signals([signal.SIGUSR1], act)
    try:
        os.kill(os.getpid(), signal.SIGUSR1)
        _wait(lambda: len(got) == 1)
        os.kill(os.getpid(), signal.SIGUSR1)
        _wait(lambda: len(got) == 2)
    finally:
        restore()
    assert "acting on SIGUSR1 failed" in caplog.text
