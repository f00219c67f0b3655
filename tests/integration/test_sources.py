"""Sources against real things: psutil on real processes, HTTP servers on 127.0.0.1."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import psutil
import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from pydantic import ValidationError

from autonomic.errors import SourceError
from autonomic.model import PROCESS_METRICS, Sample
from autonomic.monitor import (
    HostSource,
    HttpProbe,
    HttpProbeSpec,
    ProcessSource,
    PrometheusScrape,
    PrometheusSpec,
)
from autonomic.monitor.promquery import PromQuerySource, PromQuerySpec

NOW = 1_000.0
GARBAGE = "<html>" + "x" * 5000 + "</html>"


def _by_metric(samples: Sequence[Sample]) -> dict[str, float]:
    return {s.metric: s.value for s in samples}


def _wait_for(predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


# --- host and process ------------------------------------------------------------------------


def test_host_source_reports_the_four_host_metrics() -> None:
    samples = HostSource().collect(NOW)
    values = _by_metric(samples)
    assert set(values) == {"cpu_percent", "memory_percent", "disk_percent", "load1"}
    assert all(s.service == "host" and s.ts == NOW for s in samples)
    assert 0 < values["memory_percent"] <= 100 and 0 < values["disk_percent"] <= 100
    assert values["load1"] >= 0 and values["cpu_percent"] >= 0


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    yield proc
    if proc.poll() is None:
        proc.kill()
    proc.wait()


def test_process_source_reads_a_live_process_then_up_zero_after_kill(
    sleeper: subprocess.Popen[bytes],
) -> None:
    limit = 512 * 1024 * 1024
    source = ProcessSource(lambda: {"svc": sleeper.pid}, memory_limits={"svc": limit})
    values = _by_metric(source.collect(NOW))
    assert values["up"] == 1.0
    assert values["rss_bytes"] > 0
    assert values["memory_percent"] == pytest.approx(values["rss_bytes"] / limit * 100)
    assert values["threads"] >= 1 and values["open_fds"] >= 0 and values["cpu_percent"] >= 0

    sleeper.kill()  # not yet reaped: a zombie, which is not up
    assert _wait_for(lambda: _by_metric(source.collect(NOW)) == {"up": 0.0})
    sleeper.wait()  # reaped: the pid is gone
    assert _by_metric(source.collect(NOW + 1)) == {"up": 0.0}


def test_process_source_memory_percent_defaults_to_host_total(sleeper: subprocess.Popen[bytes]) -> None:
    values = _by_metric(ProcessSource(lambda: {"svc": sleeper.pid}).collect(NOW))
    total = psutil.virtual_memory().total
    assert values["memory_percent"] == pytest.approx(values["rss_bytes"] / total * 100, rel=0.05)


def test_process_source_samples_what_process_metrics_says_a_config_check_may_count_on(
        sleeper: subprocess.Popen[bytes]) -> None:
    """``autonomic check`` takes PROCESS_METRICS as what a process binding's service is sampled for
    (a goal on another metric is warned of): a real process, live and stopped on purpose, is
    sampled for every one of them, and nothing else."""
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    source = ProcessSource(lambda: {"svc": sleeper.pid, "held": gone.pid}, stopped=lambda: {"held"})
    assert {s.metric for s in source.collect(NOW)} == set(PROCESS_METRICS)


def test_process_source_gives_up_zero_for_no_pid_and_vanished_pid() -> None:
    done = subprocess.Popen([sys.executable, "-c", "pass"])
    done.wait()
    source = ProcessSource(lambda: {"stopped": None, "gone": done.pid})
    samples = source.collect(NOW)
    assert sorted((s.service, s.metric, s.value) for s in samples) == [
        ("gone", "up", 0.0),
        ("stopped", "up", 0.0),
    ]


def _collect_as_nobody(source: ProcessSource) -> dict[str, float]:
    """``source.collect`` in a forked child that runs as ``nobody`` (uid and gid 65534, no other
    group): a real reader without the permission root has to read any process."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: drop to nobody, collect, write the readings, and exit at once
        code = 1
        try:
            os.close(read_end)
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            os.write(write_end, json.dumps(_by_metric(source.collect(NOW))).encode())
            code = 0
        finally:
            os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        data = pipe.read()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, "the reader running as nobody failed"
    return dict(json.loads(data))


def test_process_source_of_another_users_live_process_is_up_with_the_readings_it_may_take(
        sleeper: subprocess.Popen[bytes]) -> None:
    """A live process another user owns (a setuid command; one adopted from a pidfile) does not
    let us read its open fds: it is up, without ``open_fds``, not down (which a remedy would
    restart). Read as ``nobody`` (a forked reader that drops to uid 65534) of this root-owned sleeper."""
    if os.geteuid() != 0:
        pytest.skip("needs root, to fork a reader that runs as another user (nobody)")
    values = _collect_as_nobody(ProcessSource(lambda: {"svc": sleeper.pid}))
    assert values["up"] == 1.0
    assert "open_fds" not in values  # /proc/<pid>/fd is the owner's to read
    assert values["rss_bytes"] > 0 and values["threads"] >= 1 and values["memory_percent"] > 0


def test_process_source_cpu_percent_reflects_a_busy_process() -> None:
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        source = ProcessSource(lambda: {"busy": busy.pid})
        source.collect(NOW)  # first reading primes the cached Process
        assert _wait_for(lambda: _by_metric(source.collect(NOW))["cpu_percent"] > 10.0)
    finally:
        busy.kill()
        busy.wait()


# --- HTTP servers ------------------------------------------------------------------------------


Route = Callable[[BaseHTTPRequestHandler], None]


class _Server:
    """A ThreadingHTTPServer on a free 127.0.0.1 port with canned routes."""

    def __init__(self, routes: dict[str, Route]) -> None:
        self.release = threading.Event()
        routes = dict(routes)

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server API)
                route = routes.get(self.path.partition("?")[0])  # a query string (the query API's) aside
                if route is None:
                    self.send_error(404)
                else:
                    route(self)

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"

    def __enter__(self) -> _Server:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


def _reply(status: int, body: str, content_type: str = "text/plain") -> Route:
    def handle(h: BaseHTTPRequestHandler) -> None:
        data = body.encode()
        h.send_response(status)
        h.send_header("Content-Type", content_type)
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        h.wfile.write(data)

    return handle


def _metrics_text() -> str:
    registry = CollectorRegistry()
    Gauge("demo_error_rate", "errors", registry=registry).set(0.25)
    Gauge("demo_latency_ms", "latency", registry=registry).set(42.0)
    requests = Counter("demo_requests", "requests", ["code", "method"], registry=registry)
    requests.labels(code="200", method="GET").inc(7)
    return generate_latest(registry).decode()


@pytest.fixture
def server() -> Iterator[_Server]:
    holder: dict[str, _Server] = {}

    def hang(h: BaseHTTPRequestHandler) -> None:
        holder["server"].release.wait(10)

    def trickle(h: BaseHTTPRequestHandler) -> None:  # up 1, one byte every 0.1 s (0.5 s in all)
        h.send_response(200)
        h.send_header("Content-Type", "text/plain")
        h.send_header("Content-Length", "5")
        h.end_headers()
        for byte in b"up 1\n":
            if holder["server"].release.wait(0.1):
                return
            h.wfile.write(bytes([byte]))
            h.wfile.flush()

    routes = {
        "/ok": _reply(200, "ok"),
        "/trickle": trickle,
        "/api/v1/query": trickle,
        "/fail": _reply(500, "boom"),
        "/hang": hang,
        "/metrics": _reply(200, _metrics_text(), "text/plain; version=0.0.4"),
        "/garbage": _reply(200, GARBAGE, "text/html"),
        "/nonfinite": _reply(200, "good 1.5\nbad NaN\nworse +Inf\n"),
        "/relabelled": _reply(200, 'errors_ratio{region="eu"} 0.5\nlatency_ms 42\n'
                                   'requests_total{code="200",method="GET"} 7\n'),
        "/error": _reply(503, GARBAGE),
    }
    with _Server(routes) as srv:
        holder["server"] = srv
        yield srv


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _probe(url: str, timeout_s: float = 2.0, expect_status: int = 200) -> dict[str, float]:
    spec = HttpProbeSpec(url=url, timeout_s=timeout_s, expect_status=expect_status)
    probe = HttpProbe("web", spec)
    try:
        samples = probe.collect(NOW)
    finally:
        probe.close()
    assert probe.name == "probe:web"
    assert {(s.service, s.ts) for s in samples} == {("web", NOW)}
    return _by_metric(samples)


def test_probe_ok_on_expected_status(server: _Server) -> None:
    values = _probe(server.url("/ok"))
    assert values["probe_ok"] == 1.0 and values["probe_latency_ms"] > 0


def test_probe_not_ok_on_server_error_unless_expected(server: _Server) -> None:
    assert _probe(server.url("/fail"))["probe_ok"] == 0.0
    assert _probe(server.url("/fail"), expect_status=500)["probe_ok"] == 1.0


def test_probe_not_ok_on_closed_port() -> None:
    values = _probe(f"http://127.0.0.1:{_closed_port()}/health")
    assert values["probe_ok"] == 0.0 and values["probe_latency_ms"] >= 0


def test_probe_not_ok_within_timeout_when_server_never_answers(server: _Server) -> None:
    started = time.monotonic()
    values = _probe(server.url("/hang"), timeout_s=0.3)
    elapsed = time.monotonic() - started
    assert values["probe_ok"] == 0.0
    assert 0.25 <= elapsed < 2.0
    assert values["probe_latency_ms"] >= 250


@pytest.mark.parametrize("url", ["ftp://example.com/x", "not a url", "http:///nohost"])
def test_probe_spec_rejects_non_http_urls_naming_the_field(url: str) -> None:
    with pytest.raises(ValidationError, match="url"):
        HttpProbeSpec(url=url)


def test_probe_spec_rejects_out_of_range_timeout() -> None:
    with pytest.raises(ValidationError, match="timeout_s"):
        HttpProbeSpec(url="http://127.0.0.1/", timeout_s=0)


def _scrape(url: str, rename: dict[str, str] | None = None, timeout_s: float = 2.0) -> list[Sample]:
    scrape = PrometheusScrape("demo", PrometheusSpec(url=url, rename=rename or {}, timeout_s=timeout_s))
    try:
        return list(scrape.collect(NOW))
    finally:
        scrape.close()


def test_prometheus_rename_keeps_only_renamed_metrics_including_labelled(server: _Server) -> None:
    rename = {
        "demo_error_rate": "error_rate",
        'demo_requests_total{code="200",method="GET"}': "requests_ok",
    }
    samples = _scrape(server.url("/metrics"), rename)
    assert {s.service for s in samples} == {"demo"}
    assert _by_metric(samples) == {"error_rate": 0.25, "requests_ok": 7.0}


def test_prometheus_without_rename_keeps_unlabelled_samples_under_their_names(server: _Server) -> None:
    values = _by_metric(_scrape(server.url("/metrics")))
    assert values["demo_error_rate"] == 0.25 and values["demo_latency_ms"] == 42.0
    assert not any("{" in name for name in values)


def test_prometheus_drops_non_finite_values(server: _Server) -> None:
    assert _by_metric(_scrape(server.url("/nonfinite"))) == {"good": 1.5}


def test_prometheus_rename_key_whose_name_now_has_other_labels_is_named_and_the_rest_kept(server: _Server) -> None:
    """A deploy added a label: ``errors_ratio`` is now ``errors_ratio{region="eu"}``, and the
    metric renamed from the old key would go stale without a word (a threshold on it never
    fires). A labelled child not made yet (``code="500"``, before the first error) is not that."""
    url = server.url("/relabelled")
    rename = {"errors_ratio": "error_rate", "latency_ms": "latency_ms",
              'requests_total{code="200",method="GET"}': "requests_ok",
              'requests_total{code="500",method="GET"}': "requests_failed"}
    with pytest.raises(SourceError) as info:
        _scrape(url, rename)
    assert str(info.value) == (f"{url}: no sample for rename's errors_ratio (error_rate): the answer has that name "
                               "only with other label names (relabelled?); its other samples are kept")
    assert _by_metric(info.value.samples) == {"latency_ms": 42.0, "requests_ok": 7.0}
    del rename["errors_ratio"]
    assert _by_metric(_scrape(url, rename)) == {"latency_ms": 42.0, "requests_ok": 7.0}  # code="500": not yet


def test_prometheus_garbage_is_a_source_error_naming_the_url(server: _Server) -> None:
    url = server.url("/garbage")
    with pytest.raises(SourceError) as info:
        _scrape(url)
    message = str(info.value)
    assert url in message and "not Prometheus text" in message
    assert "<html>xxxx" in message and "x" * 201 not in message


def test_prometheus_non_200_is_a_source_error_naming_url_and_status(server: _Server) -> None:
    url = server.url("/error")
    with pytest.raises(SourceError, match="HTTP 503") as info:
        _scrape(url)
    assert url in str(info.value) and "x" * 201 not in str(info.value)


def test_prometheus_hang_is_a_source_error_within_the_timeout(server: _Server) -> None:
    url = server.url("/hang")
    started = time.monotonic()
    with pytest.raises(SourceError) as info:
        _scrape(url, timeout_s=0.3)
    assert time.monotonic() - started < 2.0
    assert url in str(info.value) and "0.3 s" in str(info.value)


def test_prometheus_answer_trickled_past_the_timeout_is_a_source_error_at_about_the_timeout(
        server: _Server) -> None:
    """Each read is quick (0.1 s) but the whole body takes 0.5 s: a 0.2 s timeout must bound the
    whole answer, as the engine's stuck_after_s counts on, not each read."""
    url = server.url("/trickle")
    assert _by_metric(_scrape(url, timeout_s=2.0)) == {"up": 1.0}  # within its timeout: read in full
    started = time.monotonic()
    with pytest.raises(SourceError) as info:
        _scrape(url, timeout_s=0.2)
    assert time.monotonic() - started < 0.45
    assert str(info.value) == f"{url}: no complete answer within 0.2 s"


def test_promql_answer_trickled_past_the_timeout_is_a_source_error_at_about_the_timeout(
        server: _Server) -> None:
    """The query API's answer trickled (0.5 s in all, 0.1 s a read): a 0.2 s timeout bounds it all."""
    source = PromQuerySource("demo", PromQuerySpec(url=server.url(""), query="up", metric="m", timeout_s=0.2))
    started = time.monotonic()
    with pytest.raises(SourceError) as info:
        source.collect(NOW)
    assert time.monotonic() - started < 0.45
    assert str(info.value) == f"{server.url('/api/v1/query')}: no complete answer within 0.2 s"


def test_prometheus_closed_port_is_a_source_error_naming_the_url() -> None:
    url = f"http://127.0.0.1:{_closed_port()}/metrics"
    with pytest.raises(SourceError) as info:
        _scrape(url)
    assert url in str(info.value)
