"""The HTTP probe's verdict: the expected status within the timeout, measured end to end."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx

from autonomic.monitor.probe import HttpProbe, HttpProbeSpec

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
