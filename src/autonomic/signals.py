"""Signals acted on without a lock in the signal handler.

A Python signal handler runs in the main thread between two of its bytecodes, which may be while
that thread holds a lock it was about to let go of: the one inside ``threading.Event.wait`` (the
engine's loop waits on its stop event between steps), a logging handler's, a buffered stream's.
A handler that takes the same lock (``Event.set``, a log line, a print) then waits for itself for
ever: asked to stop, the process hangs until something SIGKILLs it. The Python documentation warns
against locks in signal handlers; python/cpython#126434 is one report of exactly this.

So :func:`on_signals` installs handlers that only write the signal's number to a pipe (no Python
lock is involved), and a daemon thread reads the pipe and does the work (a log line, telling
systemd, setting a stop event) with nothing of the main thread's held.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
from collections.abc import Callable, Iterable
from types import FrameType
from typing import Any

_END = 0  # no signal has number 0: the byte that ends the reading thread


def on_signals(signals: Iterable[signal.Signals], act: Callable[[signal.Signals], None]) -> Callable[[], None]:
    """From now on, run ``act(sig)`` on a daemon thread for each of ``signals`` received, in the
    order received. Call from the main thread (as :func:`signal.signal` requires). Returns a
    function that puts the previous handlers back and ends the thread (once the signals received
    before it was called have been acted on)."""
    wanted = list(dict.fromkeys(signals))
    read_fd, write_fd = os.pipe()
    os.set_blocking(write_fd, False)  # a full pipe (a signal storm) drops bytes, never blocks the handler

    def handler(signum: int, _frame: FrameType | None) -> None:
        with contextlib.suppress(BlockingIOError):
            os.write(write_fd, bytes([signum]))

    def read() -> None:
        try:
            while True:
                data = os.read(read_fd, 64)
                for signum in data:
                    if signum == _END:
                        return
                    try:
                        act(signal.Signals(signum))
                    except Exception:  # the next signal is still acted on
                        logging.getLogger("autonomic").exception("acting on %s failed", signal.Signals(signum).name)
                if not data:
                    return
        finally:
            os.close(read_fd)

    previous: dict[signal.Signals, Any] = {sig: signal.signal(sig, handler) for sig in wanted}
    reader = threading.Thread(target=read, name="signals", daemon=True)
    reader.start()

    def restore() -> None:
        for sig, old in previous.items():
            signal.signal(sig, old)
        with contextlib.suppress(OSError):
            os.set_blocking(write_fd, True)
            os.write(write_fd, bytes([_END]))
        if reader is not threading.current_thread():
            reader.join(5.0)
        os.close(write_fd)

    return restore
