"""Bad input at the engine's edges, with the real engine, supervisor and sources: a service
command that does not exist, and a metrics endpoint that answers garbage or hangs. Each is
named clearly, and the engine keeps running everything else."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from autonomic.config import load_config_data
from autonomic.engine import Engine
from autonomic.model import ActionState


class _Quiet(ThreadingHTTPServer):
    def handle_error(self, request: object, client_address: object) -> None:
        pass


class _Garbage(BaseHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        if self.path == "/hang":
            time.sleep(3)
        body = b"this is { not prometheus text\n" if self.path == "/metrics" else b"ok"
        if self.path == "/relabelled":
            body = b'errors_ratio{region="eu"} 0.5\nlatency_ms 42\n'
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        with contextlib.suppress(OSError):  # the client gave up waiting (the /hang case): that is the point
            self.wfile.write(body)


@pytest.fixture()
def garbage_server() -> Iterator[str]:
    server = _Quiet(("127.0.0.1", 0), _Garbage)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_a_missing_command_and_garbage_metrics_are_named_and_the_loop_carries_on(
    tmp_path: Path, garbage_server: str, caplog: pytest.LogCaptureFixture
) -> None:
    data = {
        "engine": {"interval_s": 0.2, "state_dir": str(tmp_path / "state"), "host_metrics": False,
                   "settle_s": 0, "time_scale": 0.05},
        "services": [
            {"name": "ghost", "actuators": {"process": {"command": [str(tmp_path / "no-such-binary"), "--serve"]}},
             "thresholds": {"down_after": 2}},
            {"name": "noisy", "probes": [{"type": "http", "url": f"{garbage_server}/health", "timeout_s": 0.5}],
             "metrics": [{"type": "prometheus", "url": f"{garbage_server}/metrics", "timeout_s": 0.5},
                         {"type": "prometheus", "url": f"{garbage_server}/hang", "timeout_s": 0.3}]},
        ],
        "policy": {"autonomy": "auto", "confidence_threshold": 0.5},
        "notifiers": [{"type": "jsonl", "path": str(tmp_path / "n.jsonl")}],
    }
    config = load_config_data(data, source="t.yaml", base_dir=tmp_path)
    engine = Engine(config)
    stop = threading.Event()
    thread = threading.Thread(target=engine.run, args=(stop,), daemon=True)
    caplog.set_level("WARNING")
    thread.start()
    try:
        deadline = time.time() + 20
        failed = []
        while time.time() < deadline:
            failed = [a for a in engine.store.actions(service="ghost") if a.state == ActionState.FAILED]
            if failed and engine.ticks > 10:
                break
            time.sleep(0.2)
        assert failed, "the restart of a missing command should have failed"
        assert "no-such-binary" in (failed[0].error or "")
        assert thread.is_alive()  # the engine is still running
        # the healthy-but-noisy service kept being probed while its metrics were garbage
        latest = engine.series.latest("noisy", "probe_ok")
        assert latest is not None and latest[1] == 1.0 and latest[0] > time.time() - 2
        messages = " ".join(r.getMessage() for r in caplog.records)
        assert f"{garbage_server}/metrics" in messages
        assert f"{garbage_server}/hang" in messages
    finally:
        stop.set()
        thread.join(timeout=15)
    assert not thread.is_alive()


def test_a_prometheus_that_hangs_holds_a_collection_for_two_query_timeouts_not_one_per_query(
        tmp_path: Path, garbage_server: str, caplog: pytest.LogCaptureFixture) -> None:
    """A real listening socket that never accepts: each connect completes (the kernel's backlog)
    and no answer ever comes, as from a Prometheus that hangs. Ten queries of 0.3 s to it held each
    collection for 3 s, one timeout after another; after two in a row the rest of the collection
    skips it, saying so (once, as any source's problem). The next collection asks again, and
    another Prometheus (one that answers, if with garbage) is asked as ever."""
    with socket.socket() as hung:
        hung.bind(("127.0.0.1", 0))
        hung.listen(64)
        url = f"http://127.0.0.1:{hung.getsockname()[1]}"
        services: list[dict[str, Any]] = [{"name": f"s{i}", "metrics": [
            {"type": "promql", "url": url, "query": f'sum(rate({family}{{job="s{i}"}}[1m]))', "metric": metric,
             "timeout_s": 0.3} for family, metric in (("errors_total", "error_rate"), ("latency_sum", "latency_ms"))]}
            for i in range(5)]
        services.append({"name": "other", "metrics": [
            {"type": "promql", "url": garbage_server, "query": "up", "metric": "up", "timeout_s": 0.3}]})
        data = {"engine": {"state_dir": str(tmp_path / "state"), "host_metrics": False}, "services": services,
                "builtin_patterns": False}
        engine = Engine(load_config_data(data, source="test.yaml", base_dir=tmp_path))
        logged: list[list[str]] = []
        try:
            for now in (1000.0, 1005.0):  # the next collection asks the hung one again, and skips again
                caplog.clear()
                started = time.monotonic()
                with caplog.at_level("WARNING", logger="autonomic.engine"):
                    engine.collect(now)
                assert time.monotonic() - started < 1.5  # two timeouts (0.6 s), not ten (3 s)
                logged.append([r.getMessage() for r in caplog.records])
        finally:
            engine.shutdown()
    first, again = logged
    assert [m for m in first if "no complete answer within 0.3 s" in m] == [
        f"source promql:s0:error_rate: {url}/api/v1/query: no complete answer within 0.3 s",
        f"source promql:s0:latency_ms: {url}/api/v1/query: no complete answer within 0.3 s"]
    skipped = [m for m in first if "not asked" in m]
    assert len(skipped) == 8 and all(
        m.endswith(f"{url}/api/v1/query: not asked: {url} gave no complete answer to 2 queries in a row in this "
                   "collection (each within its timeout_s); asked again at the next") for m in skipped)
    assert any(m.startswith("source promql:other:up: ") and "not JSON" in m for m in first)  # asked: it answers
    assert again == []  # the same problems: said once


def test_a_scrape_lacking_a_renamed_key_after_a_relabel_is_said_once_and_its_other_samples_are_stored(
        tmp_path: Path, garbage_server: str, caplog: pytest.LogCaptureFixture) -> None:
    """A real /metrics whose ``errors_ratio`` now carries a ``region`` label: the engine says so
    once, naming the key and its metric, and stores the scrape's other samples as ever."""
    url = f"{garbage_server}/relabelled"
    data = {"engine": {"state_dir": str(tmp_path / "state"), "host_metrics": False},
            "services": [{"name": "web", "metrics": [{"type": "prometheus", "url": url, "rename": {
                "errors_ratio": "error_rate", "latency_ms": "latency_ms"}}]}],
            "builtin_patterns": False}
    engine = Engine(load_config_data(data, source="test.yaml", base_dir=tmp_path))
    try:
        with caplog.at_level("WARNING", logger="autonomic.engine"):
            engine.collect(1000.0)
            engine.collect(1005.0)
        assert engine.series.latest("web", "latency_ms") == (1005.0, 42.0)
        assert engine.series.latest("web", "error_rate") is None
    finally:
        engine.shutdown()
    assert [r.getMessage() for r in caplog.records] == [
        f"source prometheus:web: {url}: no sample for rename's errors_ratio (error_rate): the answer has that name "
        "only with other label names (relabelled?); its other samples are kept"]
