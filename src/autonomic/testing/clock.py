"""A clock tests move by hand."""

from __future__ import annotations


class FakeClock:
    """Only moves when told: ``sleep`` and ``advance`` move it instantly."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.t = start

    def now(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.advance(seconds)

    def advance(self, seconds: float) -> None:
        self.t += max(0.0, seconds)
