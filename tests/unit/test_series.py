"""SeriesStore: bounded ring buffers read oldest first."""

from __future__ import annotations

import math

import numpy as np
import pytest

from autonomic.model import Sample
from autonomic.monitor.series import SeriesStore


def _fill(store: SeriesStore, n: int, service: str = "api", metric: str = "cpu_percent") -> None:
    store.extend(Sample(service, metric, float(i), float(i * 10)) for i in range(n))


def test_window_returns_samples_oldest_first_before_the_buffer_fills() -> None:
    store = SeriesStore(capacity=5)
    _fill(store, 3)
    ts, values = store.window("api", "cpu_percent", -math.inf)
    assert ts.tolist() == [0.0, 1.0, 2.0]
    assert values.tolist() == [0.0, 10.0, 20.0]
    assert ts.dtype == np.float64 and values.dtype == np.float64


def test_wrap_around_keeps_the_newest_capacity_samples_in_time_order() -> None:
    store = SeriesStore(capacity=4)
    _fill(store, 11)
    ts, values = store.window("api", "cpu_percent", -math.inf)
    assert ts.tolist() == [7.0, 8.0, 9.0, 10.0]
    assert values.tolist() == [70.0, 80.0, 90.0, 100.0]
    assert store.latest("api", "cpu_percent") == (10.0, 100.0)


def test_wrap_around_at_exact_multiple_of_capacity_is_in_order() -> None:
    store = SeriesStore(capacity=4)
    _fill(store, 8)
    ts, _ = store.window("api", "cpu_percent", -math.inf)
    assert ts.tolist() == [4.0, 5.0, 6.0, 7.0]


def test_window_since_keeps_only_samples_at_or_after_since() -> None:
    store = SeriesStore(capacity=4)
    _fill(store, 10)
    ts, values = store.window("api", "cpu_percent", 8.0)
    assert ts.tolist() == [8.0, 9.0]
    assert values.tolist() == [80.0, 90.0]


def test_unknown_series_gives_empty_arrays_and_no_latest() -> None:
    store = SeriesStore()
    _fill(store, 2)
    for service, metric in (("nope", "cpu_percent"), ("api", "nope")):
        ts, values = store.window(service, metric, 0.0)
        assert ts.size == 0 and values.size == 0
        assert store.latest(service, metric) is None


def test_nan_values_are_dropped_on_append() -> None:
    store = SeriesStore()
    store.append(Sample("api", "x", 1.0, 1.0))
    store.append(Sample("api", "x", 2.0, float("nan")))
    ts, values = store.window("api", "x", 0.0)
    assert ts.tolist() == [1.0] and values.tolist() == [1.0]
    store.append(Sample("api", "only_nan", 3.0, float("nan")))
    assert "only_nan" not in store.metrics("api")


def test_returned_arrays_are_copies_not_views_of_the_buffer() -> None:
    store = SeriesStore(capacity=3)
    _fill(store, 3)
    _, values = store.window("api", "cpu_percent", -math.inf)
    store.append(Sample("api", "cpu_percent", 3.0, 999.0))
    values[0] = -1.0
    assert values.tolist() == [-1.0, 10.0, 20.0]
    assert store.window("api", "cpu_percent", -math.inf)[1].tolist() == [10.0, 20.0, 999.0]


def test_metrics_and_services_list_what_was_stored() -> None:
    store = SeriesStore()
    store.append(Sample("web", "up", 1.0, 1.0))
    store.append(Sample("api", "up", 1.0, 1.0))
    store.append(Sample("api", "rss_bytes", 1.0, 5.0))
    assert list(store.services()) == ["api", "web"]
    assert list(store.metrics("api")) == ["rss_bytes", "up"]
    assert list(store.metrics("unknown")) == []


def test_memory_is_bounded_by_capacity() -> None:
    store = SeriesStore(capacity=10)
    _fill(store, 1000)
    ts, _ = store.window("api", "cpu_percent", -math.inf)
    assert ts.size == 10


def test_capacity_below_one_is_rejected() -> None:
    with pytest.raises(ValueError, match="capacity"):
        SeriesStore(capacity=0)
