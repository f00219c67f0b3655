"""HTTP sources are collected in lanes, one per server: lanes at once, a lane's sources one after
another. Against real HTTP servers on loopback ports (one per service), whose handlers meet at a
barrier: every server answers only once all of them are being asked at the same moment."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from autonomic.clock import ManualClock
from autonomic.config import load_config_data
from autonomic.engine import Engine
from autonomic.knowledge import Store
from autonomic.monitor.probe import origin

SERVICES = 4


@contextmanager
def _servers(count: int, barrier: threading.Barrier, in_flight: list[int]) -> Iterator[list[int]]:
    """``count`` HTTP servers on loopback ports: GET /<anything> waits (at most 2 s) for the
    barrier's other parties, then answers 200, or 503 once the barrier broke. ``in_flight``
    [now, most]: requests being answered at once, over every server."""
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            with lock:
                in_flight[0] += 1
                in_flight[1] = max(in_flight[1], in_flight[0])
            try:
                barrier.wait(timeout=2)
                status = 200
            except threading.BrokenBarrierError:
                status = 503
            finally:
                with lock:
                    in_flight[0] -= 1
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    servers = [ThreadingHTTPServer(("127.0.0.1", 0), Handler) for _ in range(count)]
    threads = [threading.Thread(target=s.serve_forever, daemon=True) for s in servers]
    for t in threads:
        t.start()
    try:
        yield [s.server_address[1] for s in servers]
    finally:
        for s in servers:
            s.shutdown()
            s.server_close()


def _probed(tmp_path: Path, ports: list[int], workers: int) -> list[float | None]:
    """What one collection of an engine probing service ``s<i>`` on ``ports[i]`` read: each
    service's ``probe_ok`` (None: no sample)."""
    data = {"engine": {"state_dir": str(tmp_path / "state"), "host_metrics": False, "collect_workers": workers},
            "services": [{"name": f"s{i}", "probes": [{"url": f"http://127.0.0.1:{port}/health", "timeout_s": 10}]}
                         for i, port in enumerate(ports)],
            "builtin_patterns": False}
    config = load_config_data(data, source="test.yaml", base_dir=tmp_path)
    engine = Engine(config, store=Store("sqlite://"), clock=ManualClock())
    try:
        engine.collect(engine.clock.now())
        latest = [engine.series.latest(f"s{i}", "probe_ok") for i in range(len(ports))]
    finally:
        engine.shutdown()
    return [x[1] if x else None for x in latest]


def test_the_probes_of_services_on_different_servers_are_asked_at_once(tmp_path: Path) -> None:
    """Four servers that answer only when all four are asked at once all read up: their lanes
    ran at the same time (one after another, the first would wait out the barrier's 2 s and
    every probe would read 503)."""
    barrier, in_flight = threading.Barrier(SERVICES), [0, 0]
    with _servers(SERVICES, barrier, in_flight) as ports:
        assert _probed(tmp_path, ports, workers=8) == [1.0] * SERVICES
    assert in_flight[1] == SERVICES


def test_with_one_collect_worker_the_probes_are_asked_one_after_another(tmp_path: Path) -> None:
    """``collect_workers: 1``: the sources one after another, as before lanes: the first server
    is alone at the barrier, which breaks, and every probe reads 503 (0)."""
    barrier, in_flight = threading.Barrier(SERVICES), [0, 0]
    with _servers(SERVICES, barrier, in_flight) as ports:
        assert _probed(tmp_path, ports, workers=1) == [0.0] * SERVICES
    assert in_flight[1] == 1


def test_the_sources_of_one_server_are_asked_one_after_another(tmp_path: Path) -> None:
    """Two services probed on one server are one lane: never two requests to it at once (a
    server in trouble is not asked twice as hard), while the other server's lane runs beside."""
    barrier, in_flight = threading.Barrier(2), [0, 0]
    with _servers(2, barrier, in_flight) as ports:
        # s0 and s2 met at the barrier (lanes at once); s1, after s0 on its server, waited alone
        assert _probed(tmp_path, [ports[0], ports[0], ports[1]], workers=8) == [1.0, 0.0, 1.0]
    assert in_flight[1] == 2


def test_a_sources_lane_is_its_server_with_the_port_spelled_out_and_no_credentials() -> None:
    assert origin("http://user:pw@Web.Example:8080/health?token=x") == "http://web.example:8080"
    assert origin("https://prom.example/api") == "https://prom.example:443"
    assert origin("http://127.0.0.1/metrics") == "http://127.0.0.1:80"
