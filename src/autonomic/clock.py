"""Clocks: the real one, and one moved by hand (replays; :class:`autonomic.testing.FakeClock`)."""

from __future__ import annotations

import time


class SystemClock:
    """Wall-clock seconds, and a real sleep."""

    def now(self) -> float:
        return time.time()

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)


class ManualClock:
    """Only moves when told: ``sleep`` and ``advance`` move it instantly (replays, tests)."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.t = start

    def now(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.advance(seconds)

    def advance(self, seconds: float) -> None:
        self.t += max(0.0, seconds)


def local_stamp(ts: float | None) -> str:
    """A time a person reads in a terminal: the local date and time with its UTC offset
    (``2026-12-01 05:30:12 +0100``), so a pasted explanation or audit listing is unambiguous;
    ``-`` for no time."""
    return time.strftime("%Y-%m-%d %H:%M:%S %z", time.localtime(ts)) if ts else "-"
