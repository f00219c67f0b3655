"""SeriesStore: one pair of arrays per metric family, each series a bounded ring read oldest first."""

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


def test_a_metric_family_holds_every_service_in_one_pair_of_arrays() -> None:
    store = SeriesStore(capacity=8)
    for k in range(50):
        store.append(Sample(f"svc{k}", "latency_ms", 1.0, float(k)))
    family = store._families["latency_ms"]
    assert family.ts.shape[1] == 8 and family.ts.shape[0] >= 50  # rows grow by doubling
    assert family.ts.nbytes + family.values.nbytes <= 2 * 50 * 8 * 16  # bounded: 16 B x capacity per series
    assert [store.latest(f"svc{k}", "latency_ms") for k in (0, 49)] == [(1.0, 0.0), (1.0, 49.0)]


def test_series_of_one_family_wrap_independently() -> None:
    store = SeriesStore(capacity=3)
    _fill(store, 7, service="a")
    _fill(store, 2, service="b")
    assert store.window("a", "cpu_percent", -math.inf)[0].tolist() == [4.0, 5.0, 6.0]
    assert store.window("b", "cpu_percent", -math.inf)[0].tolist() == [0.0, 1.0]


def test_aligned_gives_each_service_the_mean_of_its_samples_in_the_step() -> None:
    store = SeriesStore(capacity=100)
    for t, v in [(1.0, 10.0), (5.0, 20.0), (9.0, 30.0), (11.0, 99.0)]:  # irregular samples
        store.append(Sample("a", "m", t, v))
    store.append(Sample("b", "m", 2.0, 7.0))
    store.append(Sample("c", "m", 50.0, 1.0))  # only after the step
    got = store.aligned("m", ("a", "b", "c", "never"), since=4.0, until=10.0)
    assert got[0] == 25.0  # (20 + 30) / 2: not the sample at 1 (before) nor at 11 (after)
    assert np.isnan(got[1]) and np.isnan(got[2]) and np.isnan(got[3])
    assert np.isnan(store.aligned("unknown", ("a",), 0.0, 100.0)).all()
    assert store.aligned("m", (), 0.0, 1.0).shape == (0,)


def test_aligned_reaches_back_through_a_wrapped_ring_and_sees_new_services() -> None:
    store = SeriesStore(capacity=4)
    _fill(store, 10, service="a")  # keeps ts 6..9
    services = ("a", "late")
    assert store.aligned("cpu_percent", services, 7.0, 9.0).tolist()[0] == 85.0  # (80 + 90) / 2
    assert np.isnan(store.aligned("cpu_percent", services, 7.0, 9.0)[1])
    store.append(Sample("late", "cpu_percent", 8.0, 5.0))  # a row added after the lookup was cached
    assert store.aligned("cpu_percent", services, 7.0, 9.0).tolist() == [85.0, 5.0]
    assert store.aligned("cpu_percent", services, -1.0, 100.0)[0] == 75.0  # all four kept samples


def test_a_batch_of_new_series_is_made_room_for_at_once_and_every_sample_lands_in_its_own_row() -> None:
    """100,000 services' first samples grow a family's arrays once to their number (growing by
    doubling copied every row ~17 times), NaN samples make no row, and a series twice in the
    batch gets both samples in order."""
    store = SeriesStore(capacity=4)
    store.extend([Sample("old", "m", 0.0, 1.0)])
    batch = [Sample(f"s{i}", "m", 1.0, float(i)) for i in range(1000)]
    batch += [Sample("nan", "m", 1.0, math.nan), Sample("s7", "m", 2.0, 70.0), Sample("old", "m", 2.0, 2.0)]
    store.extend(iter(batch))
    assert store._families["m"].ts.shape[0] == 1001  # the one row before, and one per new series
    assert store.latest("s999", "m") == (1.0, 999.0)
    assert store.window("s7", "m", -math.inf)[1].tolist() == [7.0, 70.0]
    assert store.window("old", "m", -math.inf)[1].tolist() == [1.0, 2.0]
    assert store.latest("nan", "m") is None and "nan" not in store.services()
    store.extend([Sample("late", "m", 3.0, 5.0)])  # one more: doubling again
    assert store._families["m"].ts.shape[0] == 2002 and store.latest("late", "m") == (3.0, 5.0)


def test_tails_give_each_service_its_last_k_samples_newest_last_and_nan_where_it_has_fewer() -> None:
    """Rows follow the services asked for (one never seen is all NaN); rings that wrapped read in
    time order; a series with fewer than k samples is NaN on the left."""
    store = SeriesStore(capacity=4)
    _fill(store, 6, service="api")  # wrapped: holds 2..5
    _fill(store, 2, service="web")
    ts, values = store.tails("cpu_percent", ("web", "nobody", "api"), 3)
    assert ts.shape == values.shape == (3, 3)
    np.testing.assert_array_equal(ts[2], [3.0, 4.0, 5.0])
    np.testing.assert_array_equal(values[2], [30.0, 40.0, 50.0])
    np.testing.assert_array_equal(ts[0], [np.nan, 0.0, 1.0])
    assert np.isnan(values[1]).all()
    ts, values = store.tails("cpu_percent", ("api",), 6)  # more than the ring holds
    np.testing.assert_array_equal(values[0], [np.nan, np.nan, 20.0, 30.0, 40.0, 50.0])
    assert store.tails("no_such_metric", ("api",), 2)[1].shape == (1, 2)


def test_tails_agree_with_window_for_every_series_of_a_randomly_filled_family() -> None:
    rng = np.random.default_rng(7)
    store = SeriesStore(capacity=16)
    services = tuple(f"s{i}" for i in range(40))
    t = 0.0
    for _ in range(300):
        t += 1.0
        service = services[int(rng.integers(len(services)))]
        store.append(Sample(service, "m", t, float(rng.normal())))
    ts, values = store.tails("m", services, 10)
    for i, service in enumerate(services):
        wts, wvalues = store.window(service, "m", -math.inf)
        k = min(10, wts.size)
        np.testing.assert_array_equal(ts[i, 10 - k:], wts[wts.size - k:])
        np.testing.assert_array_equal(values[i, 10 - k:], wvalues[wvalues.size - k:])
        assert np.isnan(values[i, : 10 - k]).all()
