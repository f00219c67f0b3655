"""Clocks: the real one, the database server's (:class:`ServerClock`), and one moved by hand
(replays; :class:`autonomic.testing.FakeClock`)."""

from __future__ import annotations

import time
from collections.abc import Callable


class SystemClock:
    """Wall-clock seconds, and a real sleep."""

    def now(self) -> float:
        return time.time()

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)


class ServerClock:
    """Wall-clock seconds by another machine's clock (the database server's, which every replica
    shares), kept as this host's clock plus an offset that :meth:`measure` takes now and then.

    Replicas on several machines store times (when an approval was asked for, when an action was
    decided or applied, when a breaker opened) that another replica compares with its own ``now``
    after a takeover. By their own clocks, a new leader whose machine's clock is minutes ahead
    would take a fresh approval request for expired, a fresh decision for stale and an open
    breaker for spent; one minutes behind would act on a decision past ``decision_ttl_s``. By the
    server's clock every replica means the same time. Between measurements it runs at this host's
    rate (a step of this host's clock, NTP's, shows until the next measurement corrects it)."""

    # an offset change smaller than this is measurement noise (the round trip), not skew: it is
    # not applied, so times do not jitter back and forth by milliseconds at every measurement
    NOISE_S = 0.1
    # a measurement whose round trip took longer than this says little about the offset: dropped
    SLOW_S = 1.0

    def __init__(self) -> None:
        self.offset = 0.0  # server clock minus this host's, as last measured
        self.measured = False

    def now(self) -> float:
        return time.time() + self.offset

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)

    def from_host(self, host_time: float) -> float:
        """``host_time``, a time this host's clock stamped (a git commit, a file's mtime), as the
        server's clock tells it: the last measured offset added."""
        return host_time + self.offset

    def measure(self, server_time: Callable[[], float]) -> float | None:
        """Ask ``server_time`` once and take the offset from the midpoint of the round trip.
        Returns the change applied (None: none, the round trip too slow or the change noise).
        What ``server_time`` raises goes through; the offset stays as it was."""
        before = time.time()
        server = server_time()
        after = time.time()
        if after - before > self.SLOW_S:
            return None
        offset = server - (before + after) / 2
        change = offset - self.offset
        if self.measured and abs(change) < self.NOISE_S:
            return None
        self.offset, self.measured = offset, True
        return change


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


def utc_stamp(ts: float) -> str:
    """A time in UTC to the second (``2026-12-01 04:30:12 UTC``): for what the engine writes to
    people (notifications, refusals), which they read wherever they are."""
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ts))


def local_stamp(ts: float | None) -> str:
    """A time a person reads in a terminal: the local date and time with its UTC offset
    (``2026-12-01 05:30:12 +0100``), so a pasted explanation or audit listing is unambiguous;
    ``-`` for no time."""
    return time.strftime("%Y-%m-%d %H:%M:%S %z", time.localtime(ts)) if ts else "-"


def utc_offset(ts: float) -> str:
    """This machine's UTC offset at ``ts`` (``+0100``; ``+0200`` in summer time), as
    :func:`local_stamp` writes it: what a table's time column is headed by."""
    return time.strftime("%z", time.localtime(ts))


def column_stamp(ts: float, now: float) -> str:
    """A time in a table column headed by the zone (``opened (+0100)``, :func:`utc_offset` of
    ``now``), kept narrow: the local time of day (``14:03:12``) for a time of today's date, else
    the date too (``2026-11-30 14:03:12``), so one from yesterday does not read as one from today;
    its own UTC offset after it (``2026-07-30 14:03:12 +0200``) when that is not the heading's
    (a change to or from summer time between)."""
    local = time.localtime(ts)
    shown = time.strftime("%H:%M:%S" if local[:3] == time.localtime(now)[:3] else "%Y-%m-%d %H:%M:%S", local)
    offset = time.strftime("%z", local)
    return shown if offset == utc_offset(now) else f"{shown} {offset}"


def duration(seconds: float) -> str:
    """A span of time as a person reads it: ``45 s``, ``12.5 min``, ``3.2 h``, ``1.5 d``."""
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds / 60:.1f} min"
    if seconds < 86_400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86_400:.1f} d"
