"""A small real HTTP service with injectable faults, watched and healed by ``autonomic demo``.

Run it as ``python -m autonomic.demo.service --name NAME --port PORT --config FILE``.

The service simulates its own traffic (``--traffic`` requests per second, no sockets) against a
connection pool whose size comes from a YAML config file, so its metrics move without external
load. Faults are injected over HTTP and live only in memory: a restart clears them, which is what
makes a restart a real fix.

Endpoints:

``GET /health``   200 ``{"status": "ok", "name": ...}``; 503 while the pool is exhausted
``GET /metrics``  Prometheus text: ``demo_up``, ``demo_pool_size``, ``demo_pool_in_use``,
                  ``demo_pool_utilization`` (percent), ``demo_error_rate`` (failed / all requests
                  over the last window), ``demo_latency_ms`` (p95 over the last window),
                  ``demo_requests_total``, ``demo_errors_total``, ``demo_config_generation``,
                  ``demo_fast_path``
``GET /work``     one real request through the simulated pool (sleeps its latency, capped at 2 s)
``GET /call``     one request as a caller sees it: 200 when it succeeded, 5xx when it failed (no sleep)
``GET /fault``    the active faults and the resources they hold
``POST /fault``   ``{"fault": NAME, ...params}`` turns a fault on (or replaces its parameters);
                  ``{"fault": "none"}`` clears every fault and frees what they held

Faults (several may be active at once):

``crash``         answer 202, then exit with code 3
``memory_leak``   ``rate_mb`` (8) MB per second of written bytearrays, capped at ``limit_mb`` (400)
``conn_leak``     ``rate`` (2) leaked connections per second, held forever, up to ``limit`` (45)
``error_spike``   ``ratio`` (0.3) of requests fail with 500
``latency``       ``ms`` (1500) added to every request's latency

Config (``pool.size``, default 50; ``features.fast_path``, default false) is read at start and
re-read on SIGHUP; a bad file on reload keeps the old config. ``fast_path: true`` is a buggy
"performance" switch: it halves the latency fault's added latency but fails 30% of requests.
SIGTERM exits 0, after ``--shutdown-delay`` seconds of continued serving when given.

With ``--upstream URL`` the service depends on another demo service: it calls the upstream's
``/call`` ten times a second, and its own requests fail ("upstream failed") in the proportion
the upstream's calls failed over the last two seconds, as a front end's do when its backend
is down or failing. That is what the demo's cascade scenario and root-cause ranking run on.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import signal
import sys
import threading
import time
import urllib.request
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from autonomic.errors import ConfigError, Problem
from autonomic.signals import on_signals

MAX_BODY_BYTES = 64 * 1024
_DRAIN_LIMIT_BYTES = 1024 * 1024  # an oversized body up to this is read and dropped before 413
_MB = 1024 * 1024
_PAGE = 4096
_UPSTREAM_WINDOW_S = 2.0  # upstream calls counted behind the failure proportion
_TICK_S = 0.1
_BASE_LATENCY_MS = 20.0
_BASELINE_IN_USE = 10
_FAST_PATH_FAILURE_RATIO = 0.3
_WORK_SLEEP_CAP_S = 2.0
_CRASH_EXIT_CODE = 3
_CRASH_DELAY_S = 0.2


def log(name: str, message: str) -> None:
    """One line per notable event on stderr."""
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
    sys.stderr.write(f"{stamp} demo[{name}] {message}\n")
    sys.stderr.flush()


# --- config -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ServiceConfig:
    """The part of the service that lives in a config file under version control."""

    pool_size: int = 50
    fast_path: bool = False


def load_config(path: Path) -> ServiceConfig:
    """Read and validate the YAML config; raise ConfigError naming the file and field."""
    file = str(path)

    def bad(field: str, message: str) -> ConfigError:
        return ConfigError([Problem(file=file, line=None, field=field, message=message)])

    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise bad("", f"cannot read config: {exc.strerror or exc}") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        raise ConfigError([Problem(file=file, line=line, field="", message=f"invalid YAML: {exc}")]) from exc
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise bad("", f"must be a mapping, got {type(data).__name__}")
    unknown = sorted(set(data) - {"pool", "features"})
    if unknown:
        raise bad(str(unknown[0]), "unknown section (expected pool, features)")

    pool = _section(data, "pool", {"size"}, bad)
    features = _section(data, "features", {"fast_path"}, bad)
    size = pool.get("size", ServiceConfig.pool_size)
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise bad("pool.size", f"must be a positive integer, got {size!r}")
    fast_path = features.get("fast_path", ServiceConfig.fast_path)
    if not isinstance(fast_path, bool):
        raise bad("features.fast_path", f"must be true or false, got {fast_path!r}")
    return ServiceConfig(pool_size=size, fast_path=fast_path)


def _section(data: dict[Any, Any], name: str, keys: set[str], bad: Any) -> dict[str, Any]:
    section = data.get(name) or {}
    if not isinstance(section, dict):
        raise bad(name, f"must be a mapping, got {type(section).__name__}")
    unknown = sorted(str(k) for k in set(section) - keys)
    if unknown:
        raise bad(f"{name}.{unknown[0]}", f"unknown key (expected {', '.join(sorted(keys))})")
    return section


# --- faults -------------------------------------------------------------------------------


class FaultError(ValueError):
    """A POST /fault body is invalid; the message names the field."""


# fault name -> {param: (kind, default, lowest, highest)}; kind "float" also accepts ints.
FAULTS: dict[str, dict[str, tuple[str, float, float, float]]] = {
    "crash": {},
    "memory_leak": {"rate_mb": ("float", 8.0, 0.0, 1024.0), "limit_mb": ("float", 400.0, 0.0, 4096.0)},
    "conn_leak": {"rate": ("float", 2.0, 0.0, 10_000.0), "limit": ("int", 45, 0, 1_000_000)},
    "error_spike": {"ratio": ("float", 0.3, 0.0, 1.0)},
    "latency": {"ms": ("float", 1500.0, 0.0, 600_000.0)},
}


def parse_fault(body: object) -> tuple[str, dict[str, float]]:
    """Validate a decoded POST /fault body into (fault name, params with defaults filled in).

    The name ``none`` means "clear every fault" and takes no parameters.
    """
    if not isinstance(body, dict):
        raise FaultError(f"body: must be a JSON object, got {type(body).__name__}")
    name = body.get("fault")
    known = ["none", *FAULTS]
    if not isinstance(name, str):
        raise FaultError(f"fault: required string, one of {', '.join(known)}; got {name!r}")
    if name not in known:
        raise FaultError(f"fault: unknown fault {name!r}; expected one of {', '.join(known)}")
    spec = FAULTS.get(name, {})
    params: dict[str, float] = {}
    for key, value in body.items():
        if key == "fault":
            continue
        if key not in spec:
            expected = ", ".join(spec) or "no parameters"
            raise FaultError(f"{key}: unknown parameter for fault {name!r} (expected {expected})")
        kind, _, lowest, highest = spec[key]
        if kind == "int":
            if isinstance(value, bool) or not isinstance(value, int):
                raise FaultError(f"{key}: must be an integer, got {value!r}")
        elif isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise FaultError(f"{key}: must be a number, got {value!r}")
        if not lowest <= value <= highest:
            raise FaultError(f"{key}: must be between {lowest:g} and {highest:g}, got {value!r}")
        params[key] = value
    for key, (_, default, _, _) in spec.items():
        params.setdefault(key, default)
    return name, params


# --- the simulated service ------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """One simulated request."""

    ok: bool
    latency_ms: float
    error: str | None = None


class DemoService:
    """Pool, traffic, faults and metrics of one demo service; thread-safe."""

    def __init__(
        self, name: str, config_path: Path, window_s: float = 10.0, rng: random.Random | None = None
    ) -> None:
        self.name = name
        self.config_path = config_path
        self.window_s = window_s
        self._rng = rng or random.Random()
        self._lock = threading.Lock()
        self.config = load_config(config_path)
        self.generation = 1
        self._faults: dict[str, dict[str, float]] = {}
        self._leaked_conns = 0.0
        self._leaked_memory: list[bytearray] = []
        self._leaked_mb_owed = 0.0
        self._baseline_in_use = _BASELINE_IN_USE
        self._window: deque[tuple[float, bool, float]] = deque()
        self._upstream: deque[tuple[float, bool]] = deque()  # (monotonic ts, call ok) of upstream calls
        self.requests_total = 0
        self.errors_total = 0
        self.registry = CollectorRegistry()
        self.registry.register(_Collector(self))

    # config

    def reload(self) -> bool:
        """Re-read the config file; on error keep the old config, log it and return False."""
        try:
            config = load_config(self.config_path)
        except ConfigError as exc:
            log(self.name, f"reload failed, keeping pool.size={self.config.pool_size}: {exc}")
            return False
        with self._lock:
            self.config = config
            self.generation += 1
        log(self.name, f"config reloaded (generation {self.generation}): pool.size={config.pool_size} "
            f"fast_path={str(config.fast_path).lower()}")
        return True

    # faults

    def set_fault(self, name: str, params: dict[str, float]) -> None:
        """Turn a fault on (replacing its parameters) or, for ``none``, clear all of them."""
        with self._lock:
            if name == "none":
                self._faults.clear()
                self._leaked_conns = 0.0
                self._leaked_memory.clear()
                self._leaked_mb_owed = 0.0
            elif name != "crash":
                self._faults[name] = dict(params)
        if name == "none":
            log(self.name, "faults cleared")
        else:
            shown = " ".join(f"{k}={v:g}" for k, v in params.items())
            log(self.name, f"fault on: {name} {shown}".rstrip())

    def fault_status(self) -> dict[str, Any]:
        with self._lock:
            return {
                "name": self.name,
                "faults": {name: dict(params) for name, params in self._faults.items()},
                "leaked_connections": int(self._leaked_conns),
                "leaked_mb": len(self._leaked_memory),
            }

    def tick(self, dt: float) -> None:
        """Advance the leaks by ``dt`` seconds and draw a new baseline of pool use."""
        with self._lock:
            self._baseline_in_use = _BASELINE_IN_USE + self._rng.randint(-2, 2)
            conn = self._faults.get("conn_leak")
            if conn is not None:
                self._leaked_conns = min(float(conn["limit"]), self._leaked_conns + conn["rate"] * dt)
            mem = self._faults.get("memory_leak")
            if mem is None:
                return
            room = max(0.0, mem["limit_mb"] - len(self._leaked_memory))
            self._leaked_mb_owed = min(room, self._leaked_mb_owed + mem["rate_mb"] * dt)
            chunks = int(self._leaked_mb_owed)
            self._leaked_mb_owed -= chunks
        for _ in range(chunks):  # allocate outside the lock; 1 MB each, every page written
            chunk = bytearray(_MB)
            chunk[::_PAGE] = b"\x01" * (_MB // _PAGE)
            with self._lock:
                if "memory_leak" in self._faults:  # not cleared meanwhile
                    self._leaked_memory.append(chunk)

    # requests

    def _demand_locked(self) -> int:
        """Connections wanted: the traffic baseline plus the leaked ones."""
        return self._baseline_in_use + int(self._leaked_conns)

    def pool_exhausted(self) -> bool:
        """True when no connection is free for a new request."""
        with self._lock:
            return self._demand_locked() >= self.config.pool_size

    def handle_request(self) -> Outcome:
        """Take a connection, fail according to faults, release it; record the outcome."""
        with self._lock:
            rng = self._rng
            latency = _BASE_LATENCY_MS + rng.uniform(0.0, 8.0)
            fast_path = self.config.fast_path
            added = self._faults.get("latency", {}).get("ms", 0.0)
            latency += added / 2 if fast_path else added
            error: str | None = None
            if self._demand_locked() >= self.config.pool_size:
                error = "pool exhausted"
            elif rng.random() < self._faults.get("error_spike", {}).get("ratio", 0.0):
                error = "injected error"
            elif fast_path and rng.random() < _FAST_PATH_FAILURE_RATIO:
                error = "fast_path failure"
            now = time.monotonic()
            if error is None and rng.random() < self._upstream_failure_locked(now):
                error = "upstream failed"
            self._window.append((now, error is None, latency))
            self._prune_locked(now)
            self.requests_total += 1
            if error is not None:
                self.errors_total += 1
            return Outcome(ok=error is None, latency_ms=latency, error=error)

    def record_upstream(self, ok: bool) -> None:
        """One call to the upstream service and whether it succeeded."""
        with self._lock:
            self._upstream.append((time.monotonic(), ok))

    def _upstream_failure_locked(self, now: float) -> float:
        while self._upstream and self._upstream[0][0] < now - _UPSTREAM_WINDOW_S:
            self._upstream.popleft()
        if not self._upstream:
            return 0.0
        return sum(1 for _, ok in self._upstream if not ok) / len(self._upstream)

    def call_upstream(self, url: str, stop: threading.Event) -> None:
        """Until ``stop``: call ``url`` (an upstream's /call) ten times a second, recording each."""
        while not stop.wait(0.1):
            try:
                with urllib.request.urlopen(url, timeout=0.5) as response:  # noqa: S310 - a loopback URL we were given
                    ok = response.status == 200
            except (OSError, ValueError):  # refused, timed out, 5xx (HTTPError is an OSError)
                ok = False
            self.record_upstream(ok)

    def _prune_locked(self, now: float) -> None:
        while self._window and self._window[0][0] < now - self.window_s:
            self._window.popleft()

    def snapshot(self) -> dict[str, float]:
        """Every metric value at once, consistently."""
        with self._lock:
            self._prune_locked(time.monotonic())
            n = len(self._window)
            failed = sum(1 for _, ok, _ in self._window if not ok)
            latencies = sorted(lat for _, _, lat in self._window)
            p95 = latencies[min(n - 1, math.ceil(0.95 * n) - 1)] if n else 0.0
            size = self.config.pool_size
            in_use = min(size, self._demand_locked())  # a pool hands out at most its size
            return {
                "pool_size": size,
                "pool_in_use": in_use,
                "pool_utilization": in_use / size * 100.0,
                "error_rate": failed / n if n else 0.0,
                "latency_ms": p95,
                "requests_total": self.requests_total,
                "errors_total": self.errors_total,
                "config_generation": self.generation,
                "fast_path": 1.0 if self.config.fast_path else 0.0,
            }

    def metrics_text(self) -> bytes:
        return generate_latest(self.registry)

    # background

    def run_background(self, rps: float, stop: threading.Event) -> None:
        """Until ``stop``: advance leaks and perform ``rps`` simulated requests per second."""
        due = 0.0
        last = time.monotonic()
        while not stop.wait(_TICK_S):
            now = time.monotonic()
            dt, last = now - last, now
            self.tick(dt)
            due += rps * dt
            for _ in range(int(due)):
                self.handle_request()
            due -= int(due)


class _Collector:
    """Reads a DemoService's snapshot on every scrape."""

    _GAUGES = {
        "pool_size": "Connection pool size from the config file.",
        "pool_in_use": "Connections in use, leaked ones included.",
        "pool_utilization": "Connections in use as percent of the pool size.",
        "error_rate": "Failed requests over all requests in the last window (0 when none).",
        "latency_ms": "95th percentile request latency in the last window, milliseconds.",
        "config_generation": "Successful config loads since start.",
        "fast_path": "1 when features.fast_path is on.",
    }

    def __init__(self, service: DemoService) -> None:
        self._service = service

    def collect(self) -> Iterator[Metric]:
        values = self._service.snapshot()
        yield GaugeMetricFamily("demo_up", "1 while the service is running.", value=1)
        for key, doc in self._GAUGES.items():
            yield GaugeMetricFamily(f"demo_{key}", doc, value=values[key])
        yield CounterMetricFamily("demo_requests", "Requests handled.", value=values["requests_total"])
        yield CounterMetricFamily("demo_errors", "Requests that failed.", value=values["errors_total"])


# --- HTTP ---------------------------------------------------------------------------------


class DemoServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], service: DemoService) -> None:
        self.service = service
        super().__init__(address, DemoHandler)


class DemoHandler(BaseHTTPRequestHandler):
    server: DemoServer
    server_version = "autonomic-demo/1"

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: notable events are logged by the service, not every request."""

    def _send(self, status: int, body: bytes, content_type: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _json(self, status: int, payload: dict[str, Any]) -> None:
        self._send(status, json.dumps(payload).encode() + b"\n")

    def do_GET(self) -> None:
        service = self.server.service
        path = self.path.split("?", 1)[0]
        if path == "/health":
            if service.pool_exhausted():
                self._json(503, {"status": "pool exhausted", "name": service.name})
            else:
                self._json(200, {"status": "ok", "name": service.name})
        elif path == "/metrics":
            self._send(200, service.metrics_text(), CONTENT_TYPE_LATEST)
        elif path == "/fault":
            self._json(200, service.fault_status())
        elif path == "/call":
            outcome = service.handle_request()
            if outcome.ok:
                self._json(200, {"ok": True})
            else:
                self._json(503 if outcome.error == "pool exhausted" else 500, {"ok": False, "error": outcome.error})
        elif path == "/work":
            outcome = service.handle_request()
            time.sleep(min(outcome.latency_ms / 1000.0, _WORK_SLEEP_CAP_S))
            if outcome.ok:
                self._json(200, {"ok": True, "latency_ms": round(outcome.latency_ms, 1)})
            else:
                status = 503 if outcome.error == "pool exhausted" else 500
                self._json(status, {"ok": False, "error": outcome.error})
        else:
            self._json(404, {"error": f"no such path: {path}"})

    def do_POST(self) -> None:
        path = self.path.split("?", 1)[0]
        if path != "/fault":
            self._json(404, {"error": f"no such path: {path}"})
            return
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            self._json(400, {"error": "Content-Length: must be an integer"})
            return
        if length < 0:
            self._json(400, {"error": "Content-Length: must not be negative"})
            return
        if length > MAX_BODY_BYTES:
            if length <= _DRAIN_LIMIT_BYTES:
                self.rfile.read(length)  # so the client sees the 413 instead of a reset
            self.close_connection = True
            self._json(413, {"error": f"body: larger than {MAX_BODY_BYTES} bytes ({length})"})
            return
        raw = self.rfile.read(length)
        try:
            body = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            self._json(400, {"error": f"body: not valid JSON ({exc})"})
            return
        try:
            name, params = parse_fault(body)
        except FaultError as exc:
            self._json(400, {"error": str(exc)})
            return
        service = self.server.service
        service.set_fault(name, params)
        if name == "crash":
            self._json(202, {"accepted": "crash", "exit_code": _CRASH_EXIT_CODE})
            self.wfile.flush()
            threading.Timer(_CRASH_DELAY_S, _crash, args=(service.name,)).start()
            return
        self._json(200, service.fault_status())


def _crash(name: str) -> None:
    log(name, f"crashing (exit {_CRASH_EXIT_CODE})")
    sys.stdout.flush()
    os._exit(_CRASH_EXIT_CODE)


# --- command line -------------------------------------------------------------------------


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text!r}")
    return value


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer, got {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be between 0 and 65535, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m autonomic.demo.service",
        description="A demo HTTP service with injectable faults, for autonomic demo.",
    )
    parser.add_argument("--name", required=True, help="service name, shown in /health and logs")
    parser.add_argument("--port", required=True, type=_port, help="TCP port (0 picks a free one)")
    parser.add_argument("--config", required=True, type=Path, help="YAML config (pool.size, features)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--starts-log", type=Path, help="append a JSON line here on every start")
    parser.add_argument("--shutdown-delay", type=_positive_float, default=0.0,
                        help="on SIGTERM keep serving this many seconds, then exit 0")
    parser.add_argument("--traffic", type=_positive_float, default=20.0,
                        help="simulated requests per second (default 20)")
    parser.add_argument("--upstream", help="URL of another demo service's /call that this one depends on")
    parser.add_argument("--window", type=_positive_float, default=10.0,
                        help="seconds of requests behind error_rate and latency_ms (default 10)")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.name.strip():
        parser.error("--name: must not be empty")
    if args.window <= 0:
        parser.error("--window: must be > 0")
    try:
        service = DemoService(args.name, args.config, window_s=args.window)
    except ConfigError as exc:
        parser.error(f"--config: {exc}")
    try:
        server = DemoServer((args.host, args.port), service)
    except OSError as exc:
        log(args.name, f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}")
        return 1

    terminate = threading.Event()
    reload_requested = threading.Event()
    on_signals([signal.SIGTERM, signal.SIGINT, signal.SIGHUP],  # not Event.set in a handler: autonomic.signals
               lambda sig: (reload_requested if sig == signal.SIGHUP else terminate).set())

    stop = threading.Event()
    threading.Thread(target=service.run_background, args=(args.traffic, stop), daemon=True).start()
    if args.upstream:
        threading.Thread(target=service.call_upstream, args=(args.upstream, stop), daemon=True).start()
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True).start()
    port = server.server_address[1]
    if args.starts_log is not None:
        with args.starts_log.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps({"ts": time.time(), "pid": os.getpid(), "name": args.name}) + "\n")
    config = service.config
    log(args.name, f"started pid={os.getpid()} on http://{args.host}:{port} pool.size={config.pool_size} "
        f"fast_path={str(config.fast_path).lower()} traffic={args.traffic:g}/s")

    while not terminate.wait(0.05):
        if reload_requested.is_set():
            reload_requested.clear()
            service.reload()
    if args.shutdown_delay > 0:
        log(args.name, f"terminating in {args.shutdown_delay:g}s, still serving meanwhile")
        deadline = time.monotonic() + args.shutdown_delay
        while time.monotonic() < deadline:
            time.sleep(min(0.05, max(0.0, deadline - time.monotonic())))
    else:
        log(args.name, "terminating")
    stop.set()
    server.shutdown()
    server.server_close()
    log(args.name, "stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
