"""A clock tests move by hand: the package's :class:`~autonomic.clock.ManualClock`."""

from __future__ import annotations

from autonomic.clock import ManualClock

FakeClock = ManualClock
