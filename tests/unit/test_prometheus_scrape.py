"""The Prometheus text scrape on payloads that repeat a series: one sample per metric a scrape."""

from __future__ import annotations

import httpx
import pytest
from pydantic import ValidationError

from autonomic.analyze.thresholds import HealthDetector, Thresholds
from autonomic.monitor.prometheus import PrometheusScrape, PrometheusSpec
from autonomic.monitor.series import SeriesStore

NOW = 1_000.0


def _scrape(body: str, rename: dict[str, str] | None = None) -> PrometheusScrape:
    client = httpx.Client(transport=httpx.MockTransport(lambda request: httpx.Response(200, text=body)))
    return PrometheusScrape("web", PrometheusSpec(url="http://web.test/metrics", rename=rename or {}), client=client)


def test_a_series_exposed_twice_in_one_payload_is_one_sample_the_first() -> None:
    samples = _scrape("error_rate 0.5\nerror_rate 0.6\n").collect(NOW)
    assert [(s.metric, s.value) for s in samples] == [("error_rate", 0.5)]


def test_one_scrape_of_a_repeated_series_does_not_meet_sustain_alone() -> None:
    """``sustain`` counts scrapes: a payload repeating its error_rate line must not make one
    scrape over the line a sustained crossing."""
    store = SeriesStore()
    store.extend(_scrape("error_rate 0.01\n").collect(NOW - 5))
    store.extend(_scrape("error_rate 0.5\nerror_rate 0.5\n").collect(NOW))
    assert HealthDetector({"web": Thresholds(sustain=2)}).detect(store, NOW) == []


def test_rename_naming_one_metric_for_two_keys_is_refused() -> None:
    with pytest.raises(ValidationError, match="error_rate"):
        PrometheusSpec(url="http://web.test/metrics",
                       rename={'errors{code="500"}': "error_rate", 'errors{code="503"}': "error_rate"})
