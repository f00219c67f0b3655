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
