"""ServerClock: this host's wall clock set to another machine's (the database server's); and the
times a table shows a person (column_stamp)."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import pytest

from autonomic.clock import ServerClock, column_stamp, utc_offset


def test_a_server_clock_reads_the_servers_time_when_this_hosts_clock_is_off() -> None:
    clock = ServerClock()
    assert clock.measure(lambda: time.time() - 600.0) == pytest.approx(-600.0, abs=0.05)
    assert clock.now() == pytest.approx(time.time() - 600.0, abs=0.05)


def test_a_change_within_the_measurement_noise_is_not_applied() -> None:
    clock = ServerClock()
    clock.measure(lambda: time.time() + 30.0)
    kept = clock.offset
    assert clock.measure(lambda: time.time() + 30.0 + ServerClock.NOISE_S / 2) is None
    assert clock.offset == kept
    assert clock.measure(lambda: time.time() + 35.0) == pytest.approx(5.0, abs=0.05)  # the host's clock stepped


def test_a_measurement_whose_round_trip_was_slow_is_dropped() -> None:
    clock = ServerClock()

    def slow() -> float:
        time.sleep(ServerClock.SLOW_S + 0.1)
        return time.time() + 100.0

    assert clock.measure(slow) is None
    assert clock.offset == 0.0


def test_a_server_that_does_not_answer_leaves_the_offset_as_it_was() -> None:
    clock = ServerClock()
    clock.measure(lambda: time.time() + 10.0)

    def down() -> float:
        raise OSError("no route to host")

    with pytest.raises(OSError):
        clock.measure(down)
    assert clock.offset == pytest.approx(10.0, abs=0.05)


@pytest.fixture
def paris() -> Iterator[None]:
    """This process's local zone set to Europe/Paris (+0100 in winter, +0200 in summer), then put back."""
    before = os.environ.get("TZ")
    os.environ["TZ"] = "Europe/Paris"
    time.tzset()
    try:
        yield
    finally:
        if before is None:
            del os.environ["TZ"]
        else:
            os.environ["TZ"] = before
        time.tzset()


# 2026-12-01 10:00:00 UTC, 11:00:00 in Paris
NOW = 1_796_119_200.0


def test_a_column_shows_a_time_of_today_as_the_time_of_day_and_one_of_another_day_with_its_date(
        paris: None) -> None:
    """An incident opened yesterday read "23:30:00", like one of today: the date is shown when it
    is not today's (by the local date, not the UTC one)."""
    assert utc_offset(NOW) == "+0100"
    assert column_stamp(NOW - 3600, NOW) == "10:00:00"
    assert column_stamp(NOW - 11 * 3600 - 1, NOW) == "2026-11-30 23:59:59"  # 23:59:59 in Paris, yesterday
    assert column_stamp(NOW - 11 * 3600, NOW) == "00:00:00"
    assert column_stamp(NOW - 365 * 86400, NOW) == "2025-12-01 11:00:00"


def test_a_column_names_the_offset_of_a_time_whose_offset_is_not_the_headings(paris: None) -> None:
    """Heading "opened (+0100)" in winter: a time from the summer (+0200) carries its own offset."""
    summer = NOW - 120 * 86400  # 2026-08-03
    assert column_stamp(summer, NOW) == time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(summer)) + " +0200"
    assert utc_offset(summer) == "+0200"
