"""One deadline for a whole HTTP exchange: a server that sends its answer's headers a byte at a
time, each byte well within httpx's per-read timeout, holds no probe, scrape or notification
past its timeout. Tested against a real loopback TCP server that does just that."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from autonomic.deadline import Client, within
from autonomic.errors import SourceError
from autonomic.model import Level, Notification
from autonomic.monitor.probe import HttpProbe, HttpProbeSpec
from autonomic.monitor.prometheus import PrometheusScrape, PrometheusSpec
from autonomic.oversight.notify import NotifierError, SlackNotifier


@pytest.fixture
def trickle() -> Iterator[str]:
    """The URL of a server that answers every request with a status line, then a header a byte
    every 0.05 s (200 bytes: 10 s), then ``ok``: each read is quick, the headers are not."""
    server = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def answer(conn: socket.socket) -> None:
        with conn, contextlib.suppress(OSError):
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 200 OK\r\n")
            for byte in b"X-Slow: " + b"a" * 192:
                if stop.is_set():
                    return
                conn.sendall(bytes([byte]))
                time.sleep(0.05)
            conn.sendall(b"\r\nContent-Length: 2\r\n\r\nok")

    def serve() -> None:
        with contextlib.suppress(OSError):
            while True:
                conn, _ = server.accept()
                threading.Thread(target=answer, args=(conn,), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}/metrics"
    stop.set()
    server.close()


def test_within_bounds_the_whole_exchange_headers_included_and_outside_it_httpx_is_unchanged(trickle: str) -> None:
    client = Client(timeout=1.0)
    started = time.monotonic()
    with pytest.raises(httpx.ReadTimeout), within(0.4):
        client.get(trickle)
    assert time.monotonic() - started < 1.0
    with within(5.0), within(0.3):  # the nearer of two deadlines stands
        started = time.monotonic()
        with pytest.raises(httpx.ReadTimeout):
            client.get(trickle)
        assert time.monotonic() - started < 0.9
    # outside within the client is httpx's: each read within its timeout, it is still reading
    # the headers after twice that (it would for the whole 10 s)
    outcome: list[object] = []

    def get() -> None:
        try:
            outcome.append(client.get(trickle))
        except httpx.HTTPError as exc:
            outcome.append(exc)

    reader = threading.Thread(target=get, daemon=True)
    reader.start()
    reader.join(2.0)
    assert reader.is_alive() and outcome == []


@pytest.mark.parametrize("what", ["probe", "scrape", "slack"])
def test_a_server_trickling_its_headers_holds_no_source_or_notifier_past_its_timeout(
        trickle: str, what: str) -> None:
    """Before, httpx read the headers for the whole 10 s (each byte within the per-read timeout),
    holding a probe or a scrape, and so the engine's collection and loop, or a notifier's worker,
    that long; now each gives up at its timeout and says so."""
    started = time.monotonic()
    if what == "probe":
        probe = HttpProbe("web", HttpProbeSpec(url=trickle, timeout_s=0.3))
        values = {s.metric: s.value for s in probe.collect(1000.0)}
        probe.close()
        assert values["probe_ok"] == 0.0 and probe.failure is not None
        assert "no answer within 0.3 s (ReadTimeout)" in probe.failure
    elif what == "scrape":
        scrape = PrometheusScrape("web", PrometheusSpec(url=trickle, timeout_s=0.3))
        with pytest.raises(SourceError, match="no complete answer within 0.3 s"):
            scrape.collect(1000.0)
        scrape.close()
    else:
        notifier = SlackNotifier(trickle, timeout_s=0.3)
        with pytest.raises(NotifierError, match="timed out after 0.3 s"):
            notifier.send(Notification(level=Level.ALERT, title="web is down", ts=1000.0))
    assert time.monotonic() - started < 1.5
