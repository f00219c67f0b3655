"""API benchmark: mixed reads at a fixed rate against `autonomic run` while the demo loop runs.

Starts the three demo services under a real ``autonomic run`` (engine loop plus the API in
one process, as in production), creates a viewer token, injects a fault so that there is
an incident to read, then sends an open-loop schedule of ``--rate`` requests per second
for ``--seconds`` from this (separate) process over loopback, rotating through the
dashboard's reads: overview, services, incidents, one incident's full chain with its
series, approvals, the audit log, /healthz and /metrics. Latency is measured from each
request's scheduled send time (so a stalled server cannot hide queueing delay).

Prints one JSON line: ``{"rps": ..., "p50_ms": ..., "p99_ms": ..., "errors": N, ...}``.
Usage: ``python benchmarks/api.py --json [--rate 200] [--seconds 30]``
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from autonomic.demo import faults
from autonomic.demo.scenario import FAST, prepare


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait(url: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    return False


def _load(base: str, token: str, paths: list[str], rate: float, seconds: float, workers: int = 16
          ) -> dict[str, Any]:
    """Open loop: request i is due at start + i/rate; worker threads (each with its own
    keep-alive connection) take the due requests in turn. Latency counts from the due time."""
    total = int(rate * seconds)
    start = time.perf_counter() + 0.5
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    next_i = 0

    def worker() -> None:
        nonlocal next_i
        with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=10) as client:
            while True:
                with lock:
                    i = next_i
                    next_i += 1
                if i >= total:
                    return
                due = start + i / rate
                delay = due - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
                path = paths[i % len(paths)]
                error = None
                try:
                    r = client.get(path)
                    if r.status_code != 200:
                        error = f"{path}: HTTP {r.status_code}"
                except httpx.HTTPError as exc:
                    error = f"{path}: {type(exc).__name__}"
                took = (time.perf_counter() - due) * 1000
                with lock:
                    latencies.append(took)
                    if error:
                        errors.append(error)

    threads = [threading.Thread(target=worker) for _ in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    lat = np.asarray(latencies)
    return {"rps": round(len(latencies) / elapsed, 1), "p50_ms": round(float(np.percentile(lat, 50)), 2),
            "p99_ms": round(float(np.percentile(lat, 99)), 2), "max_ms": round(float(lat.max()), 2),
            "errors": len(errors), "requests": len(latencies), "error_samples": errors[:5]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.rate <= 0 or args.seconds <= 0:
        parser.error("--rate and --seconds must be positive")
    work = Path(tempfile.mkdtemp(prefix="autonomic-apibench-"))
    config, urls = prepare(work, FAST)
    port = _free_port()
    config.write_text(config.read_text() + f"\napi: {{port: {port}}}\n")
    base = f"http://127.0.0.1:{port}"
    engine = subprocess.Popen([sys.executable, "-m", "autonomic.cli", "run", "-c", str(config), "--log-level",
                               "warning"], cwd=work, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=open(work / "engine.log", "wb"))  # noqa: SIM115
    try:
        if not _wait(f"{base}/readyz", 60) or not all(_wait(f"{u}/health", 30) for u in urls.values()):
            raise SystemExit(f"the engine or the demo services did not come up; see {work / 'engine.log'}")
        out = subprocess.run([sys.executable, "-m", "autonomic.cli", "token", "create", "--role", "viewer",
                              "--name", "bench", "-c", str(config)], capture_output=True, text=True, check=True)
        token = next(w for w in out.stdout.split() if w.startswith("aut_"))
        faults.inject(urls["api"], "error_spike", ratio=0.3)
        incident = None
        deadline = time.monotonic() + 30
        headers = {"Authorization": f"Bearer {token}"}
        while incident is None and time.monotonic() < deadline:
            items = httpx.get(f"{base}/api/v1/incidents", headers=headers, timeout=5).json()
            incident = items[0]["id"] if items else None
            time.sleep(0.5)
        paths = ["/api/v1/overview", "/api/v1/services", "/api/v1/incidents?all=true", "/api/v1/approvals",
                 "/api/v1/audit?limit=50", "/healthz", "/metrics"]
        if incident:
            paths.append(f"/api/v1/incidents/{incident}")
        result = _load(base, token, paths, args.rate, args.seconds)
        result.update(rate=args.rate, seconds=args.seconds, endpoints=len(paths))
        print(json.dumps(result))
    finally:
        engine.send_signal(signal.SIGTERM)
        try:
            engine.wait(30)
        except subprocess.TimeoutExpired:
            engine.kill()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
