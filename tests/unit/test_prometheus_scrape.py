"""The Prometheus text scrape on payloads that repeat a series: one sample per metric a scrape."""

from __future__ import annotations

import httpx
import pytest
from pydantic import ValidationError

from autonomic.analyze.thresholds import HealthDetector, Thresholds
from autonomic.errors import SourceError
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


class _Endless(httpx.SyncByteStream):
    """A body that never ends, a MiB at a time; counts what was taken of it."""

    def __init__(self, line: bytes) -> None:
        self.line, self.sent = line, 0

    def __iter__(self):  # type: ignore[no-untyped-def]
        chunk = self.line * (1024 * 1024 // len(self.line))
        while True:
            self.sent += len(chunk)
            yield chunk


def test_a_scrape_longer_than_max_body_bytes_is_given_up_once_that_much_was_read() -> None:
    """A /metrics page whose labels exploded is not held whole: past ``max_body_bytes`` the
    scrape stops reading, and the error names the limit."""
    body = _Endless(b'app_requests_total{path="/x"} 1\n')
    client = httpx.Client(transport=httpx.MockTransport(lambda request: httpx.Response(200, stream=body)))
    spec = PrometheusSpec(url="http://web.test/metrics", max_body_bytes=4 * 1024 * 1024)
    with pytest.raises(SourceError, match=r"http://web.test/metrics: .*longer than 4,194,304 bytes \(max_body_bytes\)"):
        PrometheusScrape("web", spec, client=client).collect(NOW)
    assert body.sent <= 6 * 1024 * 1024  # stopped a chunk past the limit, not at the end (there is none)


def test_max_body_bytes_defaults_to_64_mib_and_must_be_positive() -> None:
    assert PrometheusSpec(url="http://web.test/metrics").max_body_bytes == 64 * 1024 * 1024
    with pytest.raises(ValidationError, match="max_body_bytes"):
        PrometheusSpec(url="http://web.test/metrics", max_body_bytes=0)
