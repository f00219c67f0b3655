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
from autonomic.oversight.explain import explain_incident, render_text

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


def _failure(transport: httpx.MockTransport, url: str = "http://web.test/health", timeout_s: float = 1.0) -> str | None:
    probe = HttpProbe("web", HttpProbeSpec(url=url, timeout_s=timeout_s), client=httpx.Client(transport=transport))
    probe.collect(NOW)
    return probe.failure


def test_a_failing_probe_says_why_it_failed_and_a_passing_one_says_nothing() -> None:
    assert _failure(httpx.MockTransport(lambda r: httpx.Response(503))) == \
        "GET http://web.test/health: answered 503, expected 200"
    assert _failure(httpx.MockTransport(lambda r: httpx.Response(200))) is None

    def refused(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("[Errno 111] Connection refused", request=request)

    assert _failure(httpx.MockTransport(refused)) == \
        "GET http://web.test/health: ConnectError: [Errno 111] Connection refused"

    def hung(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    assert _failure(httpx.MockTransport(hung), timeout_s=2) == \
        "GET http://web.test/health: no answer within 2 s (ReadTimeout)"
    slow = _failure(httpx.MockTransport(lambda r: httpx.Response(200, stream=_Trickle(20, 0.05))), timeout_s=0.2)
    assert slow is not None and "more than 0.2 s" in slow


def test_a_probe_failure_does_not_show_the_urls_credentials() -> None:
    url = "http://probe:s3cret-pass-word@web.test/health?token=tok-1234567890"

    def refused(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError(f"cannot reach {url}", request=request)

    failure = _failure(httpx.MockTransport(refused), url=url)
    assert failure is not None and "web.test/health" in failure
    assert "s3cret-pass-word" not in failure and "tok-1234567890" not in failure


def test_a_probe_group_says_which_of_its_probes_failed() -> None:
    group = ProbeGroup("web", [HttpProbe("web", HttpProbeSpec(url="http://web.test/health"), client=_answering(200)),
                               HttpProbe("web", HttpProbeSpec(url="http://web.test/ready"), client=_answering(503))])
    group.collect(NOW)
    assert group.failure == "GET http://web.test/ready: answered 503, expected 200"


def test_a_down_finding_from_a_real_closed_port_carries_the_probes_reason(tmp_path: Path) -> None:
    """Through the engine, against a real loopback port nobody listens on: the stored ``down``
    finding's evidence says the connection was refused, not only that the probe read 0."""
    import socket

    from autonomic.clock import ManualClock

    with socket.socket() as s:  # a port that was free a moment ago: nothing listens on it
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    data = {"engine": {"state_dir": str(tmp_path / "state"), "host_metrics": False, "interval_s": 5},
            "services": [{"name": "web", "probes": [{"url": f"http://127.0.0.1:{port}/health"}]}],
            "builtin_patterns": False}
    config = load_config_data(data, source="test.yaml", base_dir=tmp_path)
    clock = ManualClock()
    store = Store("sqlite://")
    engine = Engine(config, store=store, clock=clock)
    for _ in range(4):
        engine.tick()
        clock.advance(5)
    incidents = store.incidents()
    assert incidents, "no incident opened for a service nobody answers for"
    findings = store.findings(incidents[0].id)
    reasons = [f.evidence.get("probe") for f in findings if f.cause == "down"]
    assert reasons and all(isinstance(r, str) and r.startswith(f"GET http://127.0.0.1:{port}/health: ConnectError")
                           for r in reasons), reasons
    page = render_text(explain_incident(store, incidents[0].id))
    assert f"    probe: {reasons[0]}\n" in page  # whole, on its own line
