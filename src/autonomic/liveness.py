"""Whether the loop still makes progress: a watchdog the loop feeds and others ask.

The loop (and the executor inside it) says what it is about to do before every step whose time is
bounded (:meth:`Watchdog.beat`: one source's collection, one finding stored, one incident or
action advanced, one actuator call, the wait for the next tick). ``stuck_after_s``, worked out
from the config by the engine, is longer than any one such step can take. When the last beat is
older than that, the loop is stuck (a call that never returns: an actuator or driver without a
timeout, a store call the server never answers, a deadlock), and :meth:`Watchdog.stuck` says so,
naming the step. The lease thread then stops renewing (a standby takes over), ``/healthz`` fails
(the kubelet restarts the process) and, under systemd, the ``WATCHDOG=1`` beats stop (systemd
restarts it: :mod:`autonomic.sdnotify`). Pure: no I/O; its clock is handed in.
"""

from __future__ import annotations

from collections.abc import Callable


class Watchdog:
    """The loop's last sign of life. ``beat`` is called from the loop's thread (and from the
    collection lanes' worker threads while the loop waits for them), ``stuck`` from any other (one
    tuple is swapped: no lock needed); ``monotonic`` is the clock durations are measured on (the
    lease's, which also runs while the machine is suspended)."""

    def __init__(self, stuck_after_s: float, monotonic: Callable[[], float], *, what: str = "starting") -> None:
        if not stuck_after_s > 0:
            raise ValueError(f"stuck_after_s must be above 0, not {stuck_after_s!r}")
        self.stuck_after_s = stuck_after_s
        self._monotonic = monotonic
        self._last: tuple[float, str] = (monotonic(), what)

    def beat(self, what: str) -> None:
        """The loop is about to do ``what`` (a step bounded by ``stuck_after_s``)."""
        self._last = (self._monotonic(), what)

    @property
    def doing(self) -> str:
        """What the loop said it was doing at its last beat."""
        return self._last[1]

    def silent_s(self) -> float:
        """Seconds since the last beat."""
        return self._monotonic() - self._last[0]

    def stuck(self) -> str | None:
        """None while the loop beats within ``stuck_after_s``; else what it has been stuck in, and
        for how long, in one line for a log, ``/healthz`` and a person at 3 a.m."""
        at, what = self._last
        silent = self._monotonic() - at
        if silent <= self.stuck_after_s:
            return None
        return (f"the engine loop has made no progress for {silent:.0f} s (limit {self.stuck_after_s:g} s): "
                f"stuck in {what}")
