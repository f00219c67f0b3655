"""ServerClock: this host's wall clock set to another machine's (the database server's)."""

from __future__ import annotations

import time

import pytest

from autonomic.clock import ServerClock


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
