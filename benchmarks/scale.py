"""One metric family of N series through the engine: Prometheus query -> findings, per tick.

    python benchmarks/scale.py --json [--series 1000,10000,100000] [--ticks 12] [--form shared]

For each N, a user's config of N services (``svc-000000`` ...), each with one ``promql`` metric
(``error_rate``), an anomaly spec on it (the standard ensemble; ``calib_warmup`` 5 so it alarms
within the run) and the default thresholds (``error_rate`` line 0.05, sustain 2), is loaded with
:func:`autonomic.config.load_config_data` and run by a real :class:`autonomic.engine.Engine`
(sources built from the config, SQLite store in a temporary folder, FakeClock moved by
``interval_s`` 15 s between ticks). The Prometheus is a stand-in in another process on a
loopback port that speaks ``/api/v1/query``: a vector of N series labelled ``{job, namespace}``,
error ratios around 0.01, and from tick ``ticks - 4`` on 5 of the series at 0.3 (so a few
threshold and anomaly findings, a few incidents). ``--form``: ``shared``, each service's
metric is the same family query ``sum by (job) (...)`` with ``label: job`` (the README's shape,
per service); ``per-service``, each asks for its own series (``...{job="svc-000012"}``).

Per tick, split by stage (seconds; ``first`` tick apart, then median and max of the others):
``fetch_parse`` (the sources' collect: HTTP, JSON, validation), ``ingest`` (writing the samples
into the series store), ``detect`` (every detector: health states, trends, anomalies),
``findings`` (the rest of the tick: findings into incidents, the store, diagnosis and decision).
Also ``parse_only_s``: ``json.loads`` and :func:`parse_query_response` on the real bytes of one
N-series answer (the cyclic garbage collector paused, as in the engine's tick); ``config_s`` and
``engine_s`` (loading the config, building the engine); ``rss_per_series_b`` (RSS growth from
before the config to after the run, per series) and ``store_b_per_series`` (the series store's
arrays). The stand-in builds each tick's answer before the tick (a first request), so its JSON
encoding is not in ``fetch_parse``; it still shares the core. Runs whose first tick exceeds
``--max-tick-s`` stop after that tick.
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import multiprocessing as mp
import re
import resource
import socket
import statistics
import sys
import tempfile
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import numpy as np

T0 = 1_800_000_000.0
INTERVAL_S = 15.0
N_ANOMALOUS = 5
QUERY = 'sum by (job) (rate(http_errors_total[1m])) / sum by (job) (rate(http_requests_total[1m]))'
ONE = re.compile(r'job="([^"]+)"')


def name(i: int) -> str:
    return f"svc-{i:06d}"


def values_at(n: int, tick: int, anomalous_from: int) -> np.ndarray:
    """The error ratios of tick ``tick``: noise around 0.01; a few series at 0.3 late in the run."""
    rng = np.random.default_rng(1000 + tick)
    v = np.abs(0.01 + 0.002 * rng.standard_normal(n))
    if tick >= anomalous_from:
        v[np.linspace(0, n - 1, N_ANOMALOUS).astype(int)] = 0.3
    return v


def answer(n: int, tick: int, anomalous_from: int, ts: float, only: str | None = None) -> bytes:
    v = values_at(n, tick, anomalous_from)
    if only is not None:
        i = int(only.split("-")[1])
        items = [(i, v[i])] if 0 <= i < n else []
    else:
        items = list(enumerate(v.tolist()))
    result = [{"metric": {"job": name(i), "namespace": "prod"}, "value": [ts, repr(float(x))]} for i, x in items]
    return json.dumps({"status": "success", "data": {"resultType": "vector", "result": result}}).encode()


def serve(n: int, anomalous_from: int, port_out: Any) -> None:
    """The stand-in Prometheus (run in its own process): answers are cached per evaluation time."""
    cache: dict[float, bytes] = {}

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def setup(self) -> None:
            super().setup()
            # as Prometheus (Go) does: without it, a kept-alive connection waits ~40 ms per answer
            # (the headers and the body are two writes: Nagle's algorithm and delayed ACKs)
            self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def do_GET(self) -> None:  # noqa: N802
            url = urlparse(self.path)
            q = parse_qs(url.query)
            if url.path != "/api/v1/query":
                self.send_error(404)
                return
            ts = float(q["time"][0])
            tick = round((ts - T0) / INTERVAL_S)
            m = ONE.search(q.get("query", [""])[0])
            if m is None:
                body = cache.get(ts)
                if body is None:
                    cache.clear()
                    body = cache[ts] = answer(n, tick, anomalous_from, ts)
            else:
                body = answer(n, tick, anomalous_from, ts, only=m.group(1))
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    port_out.put(server.server_address[1])
    server.serve_forever()


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def run_one(n: int, ticks: int, form: str, max_tick_s: float) -> dict[str, Any]:
    from autonomic.config import load_config_data
    from autonomic.engine import Engine
    from autonomic.knowledge import Store
    from autonomic.monitor.promquery import parse_query_response
    from autonomic.oversight.notify import Dispatcher
    from autonomic.testing import FakeClock

    anomalous_from = ticks - 4
    port_q: Any = mp.Queue()
    server = mp.Process(target=serve, args=(n, anomalous_from, port_q), daemon=True)
    server.start()
    try:
        port = port_q.get(timeout=30)
        base = f"http://127.0.0.1:{port}"
        from autonomic.analyze.detectors import Ensemble

        t0 = time.perf_counter()
        Ensemble().update(np.ones(10))  # loads (or on a new machine compiles) the detector kernels
        kernel_load_s = time.perf_counter() - t0
        rss0 = rss_bytes()
        with tempfile.TemporaryDirectory() as d:
            tmp = Path(d)
            services = []
            for i in range(n):
                query = QUERY if form == "shared" else f'error_ratio{{job="{name(i)}"}}'
                metric: dict[str, Any] = {"type": "promql", "url": base, "query": query, "metric": "error_rate"}
                if form == "shared":
                    metric["label"] = "job"
                services.append({"name": name(i), "metrics": [metric],
                                 "anomalies": [{"metric": "error_rate", "step_s": INTERVAL_S,
                                                "detector": {"members": [{"type": "ewma", "alpha": 0.05},
                                                                         {"type": "cusum"}],
                                                             "onset_decay": 0.99, "calib_warmup": 5}}]})
            data = {"engine": {"interval_s": INTERVAL_S, "state_dir": str(tmp / "state"), "host_metrics": False},
                    "services": services, "builtin_patterns": True, "policy": {"autonomy": "observe"}}
            t0 = time.perf_counter()
            config = load_config_data(data, source="scale.yaml", base_dir=tmp)
            config_s = time.perf_counter() - t0
            clock = FakeClock(T0)
            t0 = time.perf_counter()
            engine = Engine(config, clock=clock, store=Store(f"sqlite:///{tmp / 'scale.db'}"),
                            notifiers=Dispatcher([], synchronous=True))
            engine.start()
            engine_s = time.perf_counter() - t0

            spent = {"ingest": 0.0, "collect": 0.0, "detect": 0.0}
            extend, collect, detect = engine.series.extend, engine.collect, engine.detect

            def timed(stage: str, fn: Any) -> Any:
                def wrapper(*a: Any) -> Any:
                    t = time.perf_counter()
                    try:
                        return fn(*a)
                    finally:
                        spent[stage] += time.perf_counter() - t
                return wrapper

            engine.series.extend = timed("ingest", extend)  # type: ignore[method-assign]
            engine.collect = timed("collect", collect)  # type: ignore[method-assign]
            engine.detect = timed("detect", detect)  # type: ignore[method-assign]
            rows: list[dict[str, float]] = []
            findings = 0
            for tick in range(ticks):
                now = T0 + tick * INTERVAL_S
                with urllib.request.urlopen(f"{base}/api/v1/query?query=x&time={now!r}") as r:  # warm the answer
                    body = r.read()
                for k in spent:
                    spent[k] = 0.0
                before = len(engine.store.incidents(limit=None))
                t = time.perf_counter()
                engine.tick()
                total = time.perf_counter() - t
                findings = len(engine.store.incidents(limit=None)) - before + findings
                rows.append({"total": total, "fetch_parse": spent["collect"] - spent["ingest"],
                             "ingest": spent["ingest"], "detect": spent["detect"],
                             "findings": total - spent["collect"] - spent["detect"]})
                if total > max_tick_s:
                    break
                clock.advance(INTERVAL_S)
            gc.disable()  # as in the engine's tick
            t = time.perf_counter()
            parse_query_response(json.loads(body))
            parse_only = time.perf_counter() - t
            gc.enable()
            incidents = engine.store.incidents(limit=None)
            found = {(inc.service, inc.cause) for inc in incidents}
            family = engine.series._families.get("error_rate")
            store_b = (family.ts.nbytes + family.values.nbytes) / max(1, len(family.rows)) if family else 0
            stored = len(family.rows) if family else 0
            rss = rss_bytes() - rss0
            engine.shutdown()
    finally:
        server.kill()
        server.join()

    def stage(key: str) -> dict[str, float]:
        rest = [r[key] for r in rows[1:]] or [float("nan")]
        return {"first": round(rows[0][key], 4), "median": round(statistics.median(rest), 4),
                "max": round(max(rest), 4)}

    return {"series": n, "form": form, "ticks_run": len(rows), "config_s": round(config_s, 3),
            "engine_s": round(engine_s, 3), "kernel_load_s": round(kernel_load_s, 3),
            "parse_only_s": round(parse_only, 4),
            **{f"tick_{k}_s": stage(k) for k in ("total", "fetch_parse", "ingest", "detect", "findings")},
            "series_stored": stored, "incidents": len(incidents),
            "anomalous_found": sorted(s for s, _ in found),
            "rss_per_series_b": round(rss / n), "store_b_per_series": round(store_b)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="one metric family of N series through the engine")
    ap.add_argument("--series", default="1000,10000,100000", help="comma-separated N")
    ap.add_argument("--ticks", type=int, default=12)
    ap.add_argument("--form", choices=("shared", "per-service"), default="shared")
    ap.add_argument("--max-tick-s", type=float, default=120.0, help="stop a run after a tick this slow")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    logging.disable(logging.WARNING)
    runs = [run_one(int(n), args.ticks, args.form, args.max_tick_s) for n in args.series.split(",")]
    result = {"interval_s": INTERVAL_S, "runs": runs}
    print(json.dumps(result) if args.json else json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
