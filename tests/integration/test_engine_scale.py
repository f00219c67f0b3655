"""One metric family of many services through the real engine, fed by a stand-in Prometheus on a
loopback port that answers one family query (``sum by (job) (...)``, each service reading its
series with ``label: job``). Bad input at that scale: series that vanish and come back, series the
config does not name, an answer in another order every time, a label set twice, NaN and +Inf.
No sample may land on another service's series, and the loop must not stop."""

from __future__ import annotations

import json
import random
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from autonomic.config import load_config_data
from autonomic.engine import Engine
from autonomic.knowledge import Store
from autonomic.model import FindingKind
from autonomic.oversight.notify import Dispatcher
from autonomic.testing import FakeClock

T0 = 1_800_000_000.0
STEP = 15.0
N = 300

Answer = list[tuple[dict[str, str], str]]


class _Prometheus:
    """Answers ``/api/v1/query`` with ``self.answer`` (labels, value text), counting requests."""

    def __init__(self) -> None:
        self.answer: Answer = []
        self.requests = 0
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802
                owner.requests += 1
                ts = float(self.path.split("time=")[1].split("&")[0])
                result = [{"metric": labels, "value": [ts, text]} for labels, text in owner.answer]
                body = json.dumps({"status": "success", "data": {"resultType": "vector", "result": result}}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"


@pytest.fixture()
def prometheus() -> Iterator[_Prometheus]:
    prom = _Prometheus()
    thread = threading.Thread(target=prom.server.serve_forever, daemon=True)
    thread.start()
    yield prom
    prom.server.shutdown()
    prom.server.server_close()


def name(i: int) -> str:
    return f"svc-{i:04d}"


def build(tmp_path: Path, url: str) -> tuple[Engine, FakeClock]:
    metric = {"type": "promql", "url": url, "query": "sum by (job) (rate(errors_total[1m]))",
              "metric": "error_rate", "label": "job"}
    anomaly = {"metric": "error_rate", "step_s": STEP,
               "detector": {"members": [{"type": "ewma", "alpha": 0.05, "warmup": 4},
                                         {"type": "cusum", "warmup": 4}],
                            "onset_decay": 0.99, "calib_warmup": 5}}
    data = {"engine": {"interval_s": STEP, "state_dir": str(tmp_path / "state"), "host_metrics": False},
            "services": [{"name": name(i), "metrics": [metric], "anomalies": [anomaly]} for i in range(N)],
            "policy": {"autonomy": "observe"}, "api": {"enabled": False}}
    clock = FakeClock(T0)
    engine = Engine(load_config_data(data, source="t.yaml", base_dir=tmp_path), clock=clock,
                    store=Store("sqlite://"), notifiers=Dispatcher([], synchronous=True))
    engine.start()
    return engine, clock


def usual(i: int, tick: int) -> float:
    """Service i's usual error ratio at ``tick``: its own level (so a swap would show) and noise."""
    return round(0.001 + 0.0001 * i + 0.00002 * random.Random(tick * 100_003 + i).gauss(0, 1), 7)


def run(engine: Engine, clock: FakeClock, prom: _Prometheus, ticks: range,
        shape: Callable[[int, Answer], Answer]) -> list[dict[str, float]]:
    """Tick the engine once per ``STEP``; the answer of each tick is ``shape(tick, usual answer)``.
    Returns, per tick, the value each service got in it (from the store)."""
    got = []
    for tick in ticks:
        base = [({"job": name(i), "namespace": "prod"}, repr(usual(i, tick))) for i in range(N)]
        prom.answer = shape(tick, base)
        engine.tick()
        now = clock.now()
        stored = {}
        for i in range(N):
            latest = engine.series.latest(name(i), "error_rate")
            if latest is not None and latest[0] == now:
                stored[name(i)] = latest[1]
        got.append(stored)
        clock.advance(STEP)
    return got


def test_each_sample_lands_on_its_own_series_whatever_the_answer_holds(tmp_path: Path,
                                                                        prometheus: _Prometheus) -> None:
    engine, clock = build(tmp_path, prometheus.url)
    rng = random.Random(7)
    gone = {name(i) for i in range(10, 20)}

    def messy(tick: int, answer: Answer) -> Answer:
        if tick in (3, 4):  # ten series vanish for two ticks, and come back
            answer = [item for item in answer if item[0]["job"] not in gone]
        if tick >= 2:  # series nobody configured, and a series' label set twice (they are summed)
            answer += [({"job": "stranger", "namespace": "prod"}, "0.5"), ({"namespace": "prod"}, "0.7"),
                       ({"job": name(5), "namespace": "prod"}, "0.0001")]
            answer = [(labels, "NaN" if labels["job"] == name(6) else "+Inf" if labels["job"] == name(7) else v)
                      if "job" in labels else (labels, v) for labels, v in answer]
        rng.shuffle(answer)  # the answer's order carries no meaning
        return answer

    got = run(engine, clock, prometheus, range(8), messy)
    assert prometheus.requests == 8  # one request per collection for the 300 services
    for tick, stored in enumerate(got):
        expected = {name(i): usual(i, tick) for i in range(N)}
        if tick in (3, 4):
            expected = {s: v for s, v in expected.items() if s not in gone}
        if tick >= 2:
            expected[name(5)] += 0.0001
            del expected[name(6)], expected[name(7)]
        assert stored.keys() == expected.keys(), tick
        assert all(stored[s] == pytest.approx(v, abs=1e-12) for s, v in expected.items()), tick
    assert engine.ticks == 8
    assert "stranger" not in engine.series.services()
    ts, _ = engine.series.window(name(12), "error_rate", -1e18)
    assert (ts - T0).tolist() == [0, 15, 30, 75, 90, 105]  # nothing while it was gone
    engine.shutdown()


def test_findings_name_the_service_whose_series_departed_when_the_answer_changes_shape(
        tmp_path: Path, prometheus: _Prometheus) -> None:
    """The anomaly detector and the thresholds see one family; after series vanish, strangers join
    and the order changes, the one series that jumps is the one that gets the finding."""
    engine, clock = build(tmp_path, prometheus.url)
    rng = random.Random(11)
    target = name(123)

    def late_jump(tick: int, answer: Answer) -> Answer:
        if tick >= 15:  # a fifth of the fleet vanishes for good; strangers come
            answer = [item for item in answer if int(item[0]["job"][4:]) % 5 != 1]
            answer += [({"job": f"new-{k}"}, "0.9") for k in range(50)]
        if tick >= 18:
            answer = [(labels, "0.3" if labels["job"] == target else v) for labels, v in answer]
        rng.shuffle(answer)
        return answer

    run(engine, clock, prometheus, range(20), late_jump)
    incidents = engine.store.incidents(limit=None)
    assert [(inc.service, inc.cause) for inc in incidents] == [(target, "errors")]
    kinds = {(f.service, f.kind) for f in engine.store.findings(incidents[0].id)}
    assert kinds <= {(target, FindingKind.ANOMALY), (target, FindingKind.THRESHOLD)}
    assert (target, FindingKind.ANOMALY) in kinds
    engine.shutdown()


def test_the_shared_http_client_sends_no_cookie_one_service_set_to_another_on_the_same_host(
        tmp_path: Path) -> None:
    """Every source shares one HTTP client (one per service is ~40 ms and ~0.8 MB); it keeps no
    cookies, so what one service's answer sets is never sent to another service on this host."""
    seen: list[str | None] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:  # noqa: N802
            seen.append(self.headers.get("Cookie"))
            self.send_response(200)
            self.send_header("Set-Cookie", "session=secret-of-" + self.path.strip("/") + "; Path=/")
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    data = {"engine": {"state_dir": str(tmp_path / "state"), "host_metrics": False}, "api": {"enabled": False},
            "services": [{"name": s, "probes": [{"type": "http", "url": f"{url}/{s}"}]} for s in ("a", "b")]}
    engine = Engine(load_config_data(data, source="t.yaml", base_dir=tmp_path), clock=FakeClock(T0),
                    store=Store("sqlite://"), notifiers=Dispatcher([], synchronous=True))
    try:
        engine.collect(T0)
        engine.collect(T0 + 1)
    finally:
        engine.shutdown()
        server.shutdown()
        server.server_close()
    assert seen == [None, None, None, None]
    assert [engine.series.latest(s, "probe_ok") for s in ("a", "b")] == [(T0 + 1, 1.0)] * 2
