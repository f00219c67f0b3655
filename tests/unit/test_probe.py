"""The HTTP probe's verdict: the expected status within the timeout, measured end to end."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx

from autonomic.analyze.thresholds import HealthDetector, Thresholds
from autonomic.config import load_config_data
from autonomic.engine import Engine
from autonomic.knowledge import Store
from autonomic.model import Sample
from autonomic.monitor.probe import HttpProbe, HttpProbeSpec, ProbeGroup
from autonomic.monitor.series import SeriesStore

NOW = 1_000.0


class _Trickle(httpx.SyncByteStream):
    """A body that arrives one byte every ``gap_s``: each read is quick, the whole is slow."""

    def __init__(self, size: int, gap_s: float) -> None:
        self.size, self.gap_s = size, gap_s

    def __iter__(self) -> Iterator[bytes]:
        for _ in range(self.size):
            time.sleep(self.gap_s)
            yield b"x"


def _probe(handler: httpx.MockTransport, timeout_s: float) -> tuple[dict[str, float], float]:
    probe = HttpProbe("web", HttpProbeSpec(url="http://web.test/health", timeout_s=timeout_s),
                      client=httpx.Client(transport=handler))
    started = time.monotonic()
    samples = probe.collect(NOW)
    return {s.metric: s.value for s in samples}, time.monotonic() - started


def test_a_probe_whose_answer_takes_longer_than_the_timeout_in_total_is_not_ok() -> None:
    slow = httpx.MockTransport(lambda request: httpx.Response(200, stream=_Trickle(20, 0.05)))
    values, elapsed = _probe(slow, timeout_s=0.2)
    assert values["probe_ok"] == 0.0
    assert elapsed < 0.6  # it stops waiting at the timeout, not when the body is done (1 s)
    assert values["probe_latency_ms"] >= 200


def test_a_quick_answer_with_the_expected_status_is_ok() -> None:
    quick = httpx.MockTransport(lambda request: httpx.Response(200, text="ok"))
    values, _ = _probe(quick, timeout_s=1.0)
    assert values["probe_ok"] == 1.0 and 0 <= values["probe_latency_ms"] < 1000


def _answering(status: int) -> httpx.Client:
    return httpx.Client(transport=httpx.MockTransport(lambda request: httpx.Response(status, text="x")))


def test_a_service_with_several_probes_gives_one_reading_per_collection_failing_when_any_fails() -> None:
    health = HttpProbe("web", HttpProbeSpec(url="http://web.test/health"), client=_answering(200))
    ready = HttpProbe("web", HttpProbeSpec(url="http://web.test/ready"), client=_answering(503))
    group = ProbeGroup("web", [health, ready])
    samples = group.collect(NOW)
    assert group.name == "probe:web"
    assert sorted(s.metric for s in samples) == ["probe_latency_ms", "probe_ok"]  # one each, not one per probe
    assert {s.metric: s.value for s in samples}["probe_ok"] == 0.0
    assert {(s.service, s.ts) for s in samples} == {("web", NOW)}


def test_two_probes_failing_in_one_collection_are_not_yet_down_after_two() -> None:
    """``down_after`` counts collections: two probes of one service failing once are one failed
    sample, not the two in a row that make it down."""
    group = ProbeGroup("web", [HttpProbe("web", HttpProbeSpec(url=f"http://web.test/{p}"), client=_answering(503))
                               for p in ("health", "ready")])
    store = SeriesStore()
    store.append(Sample("web", "probe_ok", NOW - 5, 1.0))
    store.extend(group.collect(NOW))
    assert HealthDetector({"web": Thresholds(down_after=2)}).detect(store, NOW) == []


def test_the_engine_probes_a_service_with_several_probes_through_one_source(tmp_path: Path) -> None:
    data = {"engine": {"state_dir": str(tmp_path / "state"), "host_metrics": False},
            "services": [{"name": "web", "probes": [{"url": "http://127.0.0.1:9/health"},
                                                    {"url": "http://127.0.0.1:9/ready"}]}],
            "builtin_patterns": False}
    config = load_config_data(data, source="test.yaml", base_dir=tmp_path)
    engine = Engine(config, store=Store("sqlite://"))
    probes = [s for s in engine.sources if s.name.startswith("probe:")]
    assert [p.name for p in probes] == ["probe:web"]
