"""The demo service as a real process on 127.0.0.1: metrics, config reloads, faults, signals."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import httpx
import psutil
import pytest
from prometheus_client.parser import text_string_to_metric_families

from autonomic.demo import faults

T = TypeVar("T")

GAUGES = [
    "demo_up",
    "demo_pool_size",
    "demo_pool_in_use",
    "demo_pool_utilization",
    "demo_error_rate",
    "demo_latency_ms",
    "demo_config_generation",
    "demo_fast_path",
]
COUNTERS = ["demo_requests_total", "demo_errors_total"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def write_config(path: Path, size: int = 50, fast_path: bool = False) -> None:
    path.write_text(f"pool:\n  size: {size}\nfeatures:\n  fast_path: {str(fast_path).lower()}\n")


def wait_for(check: Callable[[], T | None], timeout: float = 5.0, what: str = "condition") -> T:
    """Poll ``check`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.05)
    pytest.fail(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


@dataclass
class Demo:
    proc: subprocess.Popen[bytes]
    base: str
    config: Path
    log: Path

    def metrics(self) -> dict[str, float]:
        text = httpx.get(f"{self.base}/metrics", timeout=5).text
        return {s.name: s.value for fam in text_string_to_metric_families(text) for s in fam.samples}

    def metric(self, name: str) -> float:
        return self.metrics()[name]

    def health(self) -> httpx.Response:
        return httpx.get(f"{self.base}/health", timeout=5)

    def post_fault(self, content: bytes) -> httpx.Response:
        return httpx.post(f"{self.base}/fault", content=content, timeout=5)

    def sighup(self) -> None:
        self.proc.send_signal(signal.SIGHUP)


@pytest.fixture
def start_demo(tmp_path: Path) -> Iterator[Callable[..., Demo]]:
    """Start demo services as subprocesses; every one is killed at teardown."""
    procs: list[subprocess.Popen[bytes]] = []

    def start(*extra: str, size: int = 50, fast_path: bool = False, traffic: float = 200,
              window: float = 1.0, config: Path | None = None, name: str = "web") -> Demo:
        if config is None:
            config = tmp_path / f"{name}.yaml"
            write_config(config, size, fast_path)
        port = free_port()
        log = tmp_path / f"{name}-{len(procs)}.log"
        argv = [sys.executable, "-m", "autonomic.demo.service", "--name", name, "--port", str(port),
                "--config", str(config), "--traffic", str(traffic), "--window", str(window), *extra]
        with log.open("wb") as err:
            proc = subprocess.Popen(argv, stderr=err)
        procs.append(proc)
        demo = Demo(proc, f"http://127.0.0.1:{port}", config, log)

        def ready() -> bool:
            assert proc.poll() is None, f"service exited {proc.returncode}: {log.read_text()}"
            try:
                return demo.health().status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(ready, what="/health")
        return demo

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait(5)


def test_metrics_expose_every_gauge_and_counter_with_pool_size_from_config(start_demo):
    demo = start_demo(size=50)
    assert demo.health().json() == {"status": "ok", "name": "web"}

    values = wait_for(lambda: (m := demo.metrics())["demo_requests_total"] > 0 and m, what="traffic")

    for name in GAUGES + COUNTERS:
        assert name in values, name
    assert values["demo_up"] == 1
    assert values["demo_pool_size"] == 50
    assert 8 <= values["demo_pool_in_use"] <= 12
    assert values["demo_pool_utilization"] == pytest.approx(values["demo_pool_in_use"] / 50 * 100)
    assert values["demo_error_rate"] == 0
    assert 20 <= values["demo_latency_ms"] <= 30
    assert values["demo_config_generation"] == 1
    assert values["demo_fast_path"] == 0


def test_sighup_reloads_pool_size_and_a_broken_config_keeps_the_old_one(start_demo):
    demo = start_demo(size=50)
    write_config(demo.config, size=60)
    demo.sighup()
    wait_for(lambda: demo.metric("demo_pool_size") == 60, what="pool size 60")
    assert demo.metric("demo_config_generation") == 2

    demo.config.write_text("pool:\n  size: lots\n")
    demo.sighup()
    wait_for(lambda: "reload failed" in demo.log.read_text(), what="reload error in the log")
    assert "pool.size" in demo.log.read_text()
    values = demo.metrics()
    assert values["demo_pool_size"] == 60
    assert values["demo_config_generation"] == 2
    assert demo.health().status_code == 200


def test_error_spike_raises_error_rate_to_the_ratio_and_clearing_returns_it_to_zero(start_demo):
    demo = start_demo(window=1.0)
    answer = faults.inject(demo.base, "error_spike", ratio=0.3)
    assert answer["faults"] == {"error_spike": {"ratio": 0.3}}
    assert faults.status(demo.base)["faults"] == {"error_spike": {"ratio": 0.3}}

    time.sleep(1.0)  # let the 1 s window fill with post-injection requests
    wait_for(lambda: 0.2 <= demo.metric("demo_error_rate") <= 0.4, what="error rate near 0.3")
    assert demo.metric("demo_errors_total") > 0

    faults.clear(demo.base)
    assert faults.status(demo.base)["faults"] == {}
    wait_for(lambda: demo.metric("demo_error_rate") == 0, timeout=3, what="error rate back to 0")


def test_work_endpoint_serves_one_request_and_fails_with_500_under_a_full_error_spike(start_demo):
    demo = start_demo(traffic=0)
    ok = httpx.get(f"{demo.base}/work", timeout=5)
    assert ok.status_code == 200 and ok.json()["ok"] is True
    assert demo.metric("demo_requests_total") == 1

    faults.inject(demo.base, "error_spike", ratio=1.0)
    failed = httpx.get(f"{demo.base}/work", timeout=5)
    assert failed.status_code == 500
    assert failed.json() == {"ok": False, "error": "injected error"}
    assert demo.metric("demo_errors_total") == 1


def test_conn_leak_grows_pool_in_use_until_exhausted_and_a_bigger_pool_heals_it(start_demo):
    demo = start_demo(size=50)
    faults.inject(demo.base, "conn_leak", rate=30, limit=45)

    seen: list[float] = []

    def exhausted() -> bool:
        seen.append(demo.metric("demo_pool_in_use"))
        return seen[-1] >= 50

    wait_for(exhausted, what="pool exhausted")
    assert len(set(seen)) > 2, f"pool use should grow steadily, saw {seen}"
    assert demo.health().status_code == 503
    time.sleep(1.0)
    values = demo.metrics()
    assert values["demo_pool_utilization"] == 100
    assert values["demo_error_rate"] == 1.0

    write_config(demo.config, size=60)
    demo.sighup()
    wait_for(lambda: demo.health().status_code == 200, what="healthy with pool 60")
    time.sleep(1.0)
    values = demo.metrics()
    assert 53 <= values["demo_pool_in_use"] <= 57  # baseline ~10 + 45 leaked, plateaued
    assert values["demo_error_rate"] == 0
    assert faults.status(demo.base)["leaked_connections"] == 45


def test_memory_leak_grows_real_rss_by_more_than_20_mb(start_demo):
    demo = start_demo()
    process = psutil.Process(demo.proc.pid)
    before = process.memory_info().rss
    faults.inject(demo.base, "memory_leak", rate_mb=100, limit_mb=60)
    wait_for(lambda: process.memory_info().rss - before > 20 * 1024 * 1024, timeout=4, what="RSS +20 MB")
    wait_for(lambda: faults.status(demo.base)["leaked_mb"] == 60, timeout=4, what="leak capped at 60 MB")
    time.sleep(0.3)
    assert faults.status(demo.base)["leaked_mb"] == 60


def test_latency_fault_raises_p95_and_fast_path_halves_it_but_fails_30_percent(start_demo):
    demo = start_demo(window=1.0)
    faults.inject(demo.base, "latency", ms=400)
    wait_for(lambda: demo.metric("demo_latency_ms") > 400, what="latency above 400 ms")
    assert demo.metric("demo_error_rate") == 0

    write_config(demo.config, size=50, fast_path=True)
    demo.sighup()
    wait_for(lambda: demo.metric("demo_fast_path") == 1, what="fast_path on")
    time.sleep(1.0)
    wait_for(lambda: 200 < demo.metric("demo_latency_ms") < 250, what="latency halved")
    wait_for(lambda: 0.2 <= demo.metric("demo_error_rate") <= 0.4, what="fast_path error rate ~0.3")


def test_fast_path_in_the_starting_config_raises_the_error_rate(start_demo):
    demo = start_demo(fast_path=True)
    time.sleep(1.0)
    wait_for(lambda: 0.2 <= demo.metric("demo_error_rate") <= 0.4, what="error rate ~0.3")
    assert demo.metric("demo_fast_path") == 1


def test_crash_fault_answers_202_then_exits_with_code_3(start_demo):
    demo = start_demo()
    response = httpx.post(f"{demo.base}/fault", json={"fault": "crash"}, timeout=5)
    assert response.status_code == 202
    assert demo.proc.wait(5) == 3
    assert "crashing" in demo.log.read_text()


def test_sigterm_with_shutdown_delay_keeps_serving_then_exits_zero(start_demo):
    demo = start_demo("--shutdown-delay", "1")
    started = time.monotonic()
    demo.proc.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    assert demo.proc.poll() is None
    assert demo.health().status_code == 200
    assert demo.proc.wait(5) == 0
    assert 0.9 <= time.monotonic() - started < 3


def test_sigterm_without_delay_exits_promptly_with_zero(start_demo):
    demo = start_demo()
    started = time.monotonic()
    demo.proc.send_signal(signal.SIGTERM)
    assert demo.proc.wait(5) == 0
    assert time.monotonic() - started < 2.0
    assert "stopped" in demo.log.read_text()


def test_starts_log_gets_one_json_line_per_start(start_demo, tmp_path):
    starts = tmp_path / "starts.jsonl"
    first = start_demo("--starts-log", str(starts))
    first.proc.send_signal(signal.SIGTERM)
    first.proc.wait(5)
    second = start_demo("--starts-log", str(starts))

    lines = [json.loads(line) for line in starts.read_text().splitlines()]
    assert [line["pid"] for line in lines] == [first.proc.pid, second.proc.pid]
    assert all(line["name"] == "web" and line["ts"] > 0 for line in lines)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b"{not json", "body"),
        (b"[1, 2]", "body"),
        (b'{"ratio": 0.3}', "fault"),
        (b'{"fault": "meltdown"}', "fault"),
        (b'{"fault": "error_spike", "ratio": "high"}', "ratio"),
        (b'{"fault": "error_spike", "ratio": 1.5}', "ratio"),
        (b'{"fault": "conn_leak", "limit": 4.5}', "limit"),
        (b'{"fault": "latency", "seconds": 2}', "seconds"),
    ],
)
def test_bad_fault_bodies_get_400_naming_the_field(start_demo, body: bytes, field: str):
    demo = start_demo(traffic=0)
    response = demo.post_fault(body)
    assert response.status_code == 400
    assert response.json()["error"].startswith(f"{field}:")
    assert faults.status(demo.base)["faults"] == {}
    assert demo.health().status_code == 200


def test_oversized_fault_body_gets_413_and_the_service_keeps_running(start_demo):
    demo = start_demo(traffic=0)
    response = demo.post_fault(b"x" * (64 * 1024 + 1))
    assert response.status_code == 413
    assert demo.health().status_code == 200
    assert demo.post_fault(b'{"fault": "none"}').status_code == 200


def test_fault_client_raises_with_the_servers_message(start_demo):
    demo = start_demo(traffic=0)
    with pytest.raises(faults.FaultRequestError, match="ratio") as info:
        faults.inject(demo.base, "error_spike", ratio=-1)
    assert info.value.status == 400


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--port", "nope", "--config", "{config}"], "--port"),
        (["--port", "0", "--config", "{tmp}/missing.yaml"], "missing.yaml"),
        (["--port", "0", "--config", "{bad}"], "pool.size"),
        (["--port", "0", "--config", "{config}", "--traffic", "-1"], "--traffic"),
    ],
)
def test_bad_arguments_exit_2_with_a_clear_message(tmp_path: Path, args: list[str], message: str):
    config, bad = tmp_path / "ok.yaml", tmp_path / "bad.yaml"
    write_config(config)
    bad.write_text("pool:\n  size: 0\n")
    argv = [a.format(config=config, bad=bad, tmp=tmp_path) for a in args]
    result = subprocess.run([sys.executable, "-m", "autonomic.demo.service", "--name", "web", *argv],
                            capture_output=True, text=True, timeout=10)
    assert result.returncode == 2
    assert message in result.stderr


def test_a_service_fails_with_its_upstream_and_recovers_with_it(start_demo):
    """web calls api's /call ten times a second: api's error spike reaches web's own error
    rate (the demo's cascade), and clearing it on api clears web too."""
    api = start_demo(name="api", window=1.0)
    web = start_demo("--upstream", f"{api.base}/call", name="web", window=1.0)
    time.sleep(1.0)
    assert web.metric("demo_error_rate") == 0
    faults.inject(api.base, "error_spike", ratio=1.0)
    wait_for(lambda: web.metric("demo_error_rate") > 0.5, what="web failing with api")
    assert httpx.get(f"{api.base}/call", timeout=5).status_code == 500
    faults.clear(api.base)
    wait_for(lambda: web.metric("demo_error_rate") == 0, timeout=6, what="web recovered with api")
    api.proc.kill()
    api.proc.wait(5)
    wait_for(lambda: web.metric("demo_error_rate") > 0.5, what="web failing while api is gone")
