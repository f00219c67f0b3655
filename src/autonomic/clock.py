"""The real clock. A fake one for tests is :class:`autonomic.testing.FakeClock`."""

from __future__ import annotations

import time


class SystemClock:
    """Wall-clock seconds, and a real sleep."""

    def now(self) -> float:
        return time.time()

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)
