"""PromQuerySource against a real Prometheus scraping a real demo service every second."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
from servers import Server, prometheus_server, start_demo, start_prometheus, wait_for  # noqa: F401

from autonomic.demo import faults
from autonomic.errors import SourceError
from autonomic.model import Sample
from autonomic.monitor.promquery import PromQuerySource, PromQuerySpec


@dataclass
class Stack:
    demo: Server
    prometheus: Server

    def source(self, query: str, metric: str = "m", service: str = "x", **spec: object) -> PromQuerySource:
        return PromQuerySource(service, PromQuerySpec(url=self.prometheus.url, query=query, metric=metric, **spec))


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """Demo service ``x`` (pool 50) scraped as job ``x`` by Prometheus every second."""
    root = tmp_path_factory.mktemp("promstack")
    demo = start_demo(root / "demo", name="x", pool_size=50, fast_path=False)
    try:
        prometheus = start_prometheus(root / "prometheus", {"x": [demo.host_port]})
    except BaseException:
        demo.stop()
        raise
    yield Stack(demo, prometheus)
    prometheus.stop()
    demo.stop()


def _collect_until(source: PromQuerySource, ok: Callable[[list[Sample]], bool], timeout: float = 15.0,
                   what: str = "samples") -> list[Sample]:
    def attempt() -> list[Sample] | None:
        samples = list(source.collect(time.time()))
        return samples if ok(samples) else None

    return wait_for(attempt, timeout, what, interval=0.25)


def test_instant_query_returns_the_pool_size_from_the_demo_config(stack: Stack) -> None:
    source = stack.source("demo_pool_size", metric="pool_size")
    samples = _collect_until(source, bool, what="demo_pool_size to be scraped")
    assert len(samples) == 1
    sample = samples[0]
    assert (sample.service, sample.metric, sample.value) == ("x", "pool_size", 50.0)
    assert abs(sample.ts - time.time()) < 5
    assert source.name == "promql:x:pool_size"


def test_range_query_returns_several_points_then_only_newer_ones(stack: Stack) -> None:
    def attempt() -> tuple[PromQuerySource, list[Sample]] | None:
        # a fresh source per attempt: a used one returns only points newer than its last
        source = stack.source("demo_pool_size", metric="pool_size", mode="range", range_s=60, step_s=1)
        samples = list(source.collect(time.time()))
        return (source, samples) if len(samples) >= 3 else None

    source, first = wait_for(attempt, 15, "three scraped points", interval=0.25)
    stamps = [s.ts for s in first]
    assert stamps == sorted(stamps) and len(set(stamps)) == len(stamps)
    assert all(s.value == 50.0 for s in first)

    assert source.collect(stamps[-1] + 0.5) == []  # nothing newer than the last point yet
    later = _collect_until(source, bool, what="a newer point")
    assert later and all(s.ts > stamps[-1] for s in later)
    assert all(b.ts - a.ts == pytest.approx(1.0) for a, b in zip(later, later[1:], strict=False))


def test_several_series_are_summed_and_a_label_rule_selects_the_services_series(stack: Stack) -> None:
    twice = 'label_replace(demo_pool_size, "copy", "1", "", "") or demo_pool_size'
    summed = _collect_until(stack.source(twice), bool, what="two series")
    assert [s.value for s in summed] == [100.0]

    assert [s.value for s in stack.source("demo_pool_size", label="job").collect(time.time())] == [50.0]
    assert stack.source("demo_pool_size", service="other", label="job").collect(time.time()) == []


def test_scalar_result_becomes_one_sample(stack: Stack) -> None:
    samples = _collect_until(stack.source("scalar(demo_pool_size) * 2"), bool, what="a scalar")
    assert [s.value for s in samples] == [100.0]


def test_an_instant_query_of_a_range_vector_is_an_error_naming_the_query_not_its_past_points_again(
        stack: Stack) -> None:
    """``demo_pool_size[5s]`` answers a matrix of the last 5 s of scrapes (one a second): taken as
    samples, each poll stored those past points again, so one scrape counted up to five times
    towards ``sustain``. The range's own mode takes it."""
    wait_for(lambda: list(stack.source("demo_pool_size").collect(time.time())), 15.0, "a first scrape")
    with pytest.raises(SourceError) as err:
        stack.source("demo_pool_size[5s]").collect(time.time())
    message = str(err.value)
    assert message.startswith(f"{stack.prometheus.url}/api/v1/query: query 'demo_pool_size[5s]' gives a range vector")
    assert "mode: range" in message
    # the same query as a range (each point once) and under a function (one point) is fine
    assert _collect_until(stack.source("avg_over_time(demo_pool_size[5s])"), bool, what="an average")[0].value == 50


def test_two_huge_series_whose_sum_overflows_give_no_sample_and_their_own_values_are_kept(stack: Stack) -> None:
    """Two series of 1e308 (finite) sum past the float range: no sample, not +Inf."""
    two = ('label_replace(vector(1e308), "i", "a", "", "") or label_replace(vector(1e308), "i", "b", "", "")')
    assert stack.source(two).collect(time.time()) == []
    assert [s.value for s in stack.source(two, label="i", service="a").collect(time.time())] == [1e308]


def test_injected_error_spike_shows_as_a_rising_error_rate(stack: Stack) -> None:
    source = stack.source("demo_error_rate", metric="error_rate")
    before = _collect_until(source, bool, what="demo_error_rate")
    assert before[0].value < 0.1
    faults.inject(stack.demo.url, "error_spike", ratio=0.5)
    try:
        risen = _collect_until(source, lambda s: bool(s) and s[0].value > 0.3, what="error_rate > 0.3")
        assert risen[0].value <= 0.8
    finally:
        faults.clear(stack.demo.url)


def test_bad_promql_raises_source_error_naming_the_parse_error(stack: Stack) -> None:
    source = stack.source("demo_pool_size{")
    with pytest.raises(SourceError) as err:
        source.collect(time.time())
    message = str(err.value)
    assert f"{stack.prometheus.url}/api/v1/query" in message
    assert "HTTP 400" in message and "bad_data" in message and "parse error" in message


def test_a_string_query_is_an_error_naming_the_query_in_the_same_words_at_every_poll(stack: Stack) -> None:
    """Prometheus stamps a string result with its evaluation time; the error must not quote it, or
    each poll's words are new and the engine logs the problem again at every collection."""
    source = stack.source('"hello"')
    messages = []
    for _ in range(2):
        with pytest.raises(SourceError) as err:
            source.collect(time.time())
        messages.append(str(err.value))
        time.sleep(0.01)
    assert messages == [f"{stack.prometheus.url}/api/v1/query: query '\"hello\"' gives a string, not a number"] * 2


def test_stopped_prometheus_raises_source_error_naming_the_url(
    prometheus_server: Callable[..., Server],  # noqa: F811
) -> None:
    prometheus = prometheus_server([])
    source = PromQuerySource("x", PromQuerySpec(url=prometheus.url, query="vector(1)", metric="one"))
    assert [s.value for s in source.collect(time.time())] == [1.0]
    prometheus.stop()
    with pytest.raises(SourceError) as err:
        source.collect(time.time())
    assert f"{prometheus.url}/api/v1/query" in str(err.value)
    assert "request failed: ConnectError" in str(err.value)
