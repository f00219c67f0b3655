"""``autonomic demo``: three real demo services under the engine, five scenarios played.

Each scenario injects one fault into one service, waits for the first incident the engine
opens on that service, then for its outcome, then clears the fault and waits until the
service is healthy again. A *false intervention* is any action the engine took on a
service that had no injected fault at that moment (including before and between scenarios).
"""

from __future__ import annotations

import json
import logging
import shutil
import socket
import string
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml
from rich.console import Console
from rich.markup import escape

from autonomic.config import load_config
from autonomic.demo import faults
from autonomic.engine import Engine
from autonomic.model import Action, Incident, IncidentState
from autonomic.oversight.metrics import EngineMetrics
from autonomic.oversight.server import ApiServer

_HERE = Path(__file__).resolve().parent  # demo.yaml (the config template) and patterns/ ship with the package
SERVICES = ("web", "api", "worker")
_DONE_STATES = {IncidentState.RESOLVED, IncidentState.ROLLED_BACK, IncidentState.ESCALATED,
                IncidentState.AWAITING_APPROVAL, IncidentState.EXPIRED}


@dataclass(frozen=True)
class Scenario:
    name: str
    service: str
    fault: str
    params: dict[str, float]
    expected: str
    story: str
    cascade: str | None = None  # a service that calls this one: its incident is awaited before the fault clears
    per_interval: tuple[str, ...] = ()  # params given per collection interval: divided by the pace's interval

    def params_at(self, pace: Pace) -> dict[str, float]:
        """The fault's params at ``pace``: a rate given per collection interval becomes per second,
        so the detectors see as many samples of it before the line at every pace."""
        return {k: v / pace.interval if k in self.per_interval else v for k, v in self.params.items()}


SCENARIOS = (
    Scenario("crash", "web", "crash", {}, "resolved",
             "web crashes -> the engine restarts it -> verified up -> resolved"),
    Scenario("memory_leak", "api", "memory_leak", {"rate_mb": 8, "limit_mb": 400}, "prevented",
             "api leaks 8 MB/s -> breach forecast -> graceful restart before it -> prevented"),
    # 2.5 leaked connections per collection interval (5/s --fast, 2.5/s at the normal pace): at a
    # fixed 5/s the normal pace's 1 s samples were too few for a forecast before the line was crossed.
    # The leak stops at 38 held: with the ~10 its traffic uses, over 90% of a pool of 50 (45) and
    # under 90% of 60 (54), so a raise is a real fix here; a leak that never stopped would only be
    # put off by it (and forecast again against the new size)
    Scenario("pool_exhaustion", "worker", "conn_leak", {"rate": 2.5, "limit": 38}, "prevented",
             "worker holds leaked connections, up to 38: pool use grows toward 90% of its size of 50"
             " -> pool raised 50 -> 60 by a git commit -> the leak stops under 90% of 60 -> verified"
             " -> prevented", per_interval=("rate",)),
    Scenario("bad_remedy", "web", "latency", {"ms": 1500}, "rolled_back",
             "web gets slow -> the fast_path flag is switched on -> errors rise -> verification"
             " fails -> the commit is reverted -> a person is alerted"),
    Scenario("novel", "api", "error_spike", {"ratio": 0.3}, "escalated",
             "api starts failing requests for no known reason -> no pattern -> a person is asked;"
             " web, which calls api, fails too -> root cause analysis names api -> web is left alone",
             cascade="web"),
)


@dataclass
class Pace:
    interval: float
    time_scale: float
    settle: float
    resolve: float
    trend_window: float
    scenario_timeout: float


FAST = Pace(interval=0.5, time_scale=0.1, settle=20.0, resolve=15.0, trend_window=10.0, scenario_timeout=60.0)
# time_scale: a 60 s watch is 21 s at the normal pace, 6 s --fast. At 0.25 (15 s) the pool leak,
# forecast early, was still rising for half the watch: too little of it showed where it stopped
NORMAL = Pace(interval=1.0, time_scale=0.35, settle=30.0, resolve=30.0, trend_window=15.0, scenario_timeout=120.0)


@dataclass
class Result:
    name: str
    service: str
    expected: str
    outcome: str = "failed"
    action: str | None = None
    detect_s: float | None = None
    heal_s: float | None = None
    incident: str | None = None
    started: float = 0.0
    ended: float = 0.0
    notes: list[str] = field(default_factory=list)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-c", "user.name=demo", "-c", "user.email=demo@localhost", *args], cwd=repo,
                   check=True, capture_output=True)


def prepare(workdir: Path, pace: Pace) -> tuple[Path, dict[str, str]]:
    """Write the services' config repos and autonomic.yaml; return its path and the base URLs."""
    ports = {name: _free_port() for name in SERVICES}
    for name in SERVICES:
        repo = workdir / name
        repo.mkdir(parents=True)
        (repo / "config.yaml").write_text(yaml.safe_dump({"pool": {"size": 50}, "features": {"fast_path": False}},
                                                        sort_keys=False))
        _git(repo, "init", "-q")
        _git(repo, "add", "config.yaml")
        _git(repo, "commit", "-q", "-m", f"{name}: initial config")
    template = (_HERE / "demo.yaml").read_text()
    text = string.Template(template).substitute(
        INTERVAL=pace.interval, STATE_DIR=str(workdir / "state"), RESOLVE=pace.resolve, SETTLE=pace.settle,
        TIME_SCALE=pace.time_scale, TREND_WINDOW=pace.trend_window, PYTHON=json.dumps(sys.executable),
        DIR=str(workdir), WEB_PORT=ports["web"], API_PORT=ports["api"], WORKER_PORT=ports["worker"],
        DEMO_PATTERNS=str(_HERE / "patterns"),
    )
    path = workdir / "autonomic.yaml"
    path.write_text(text)
    return path, {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}


class Timeline:
    """Prints the audit log as it grows, one line per event, with elapsed time."""

    _SHOWN = ("incident.opened", "incident.diagnosed", "decision.", "action.", "approval.", "breaker.",
              "pause.", "incident.cleared", "incident.closed")

    def __init__(self, console: Console, t0: float) -> None:
        self.console = console
        self.t0 = t0
        self.seq = 0

    def say(self, text: str, style: str = "bold") -> None:
        self.console.print(f"[dim]{time.time() - self.t0:6.1f}s[/] [{style}]{escape(text)}[/]")

    def pump(self, engine: Engine) -> bool:
        """Print new audit events; always False, so it can lead an ``or`` in a wait predicate."""
        for e in engine.store.audit_events(since_seq=self.seq):
            self.seq = e.seq
            if not e.kind.startswith(self._SHOWN):
                continue
            data = e.data
            detail = (data.get("summary") or data.get("rationale") or data.get("why") or data.get("reason")
                      or data.get("describe") or data.get("verdict") or "")
            service = data.get("service", "")
            colour = {"incident.opened": "yellow", "decision.approved": "green", "action.applied": "cyan",
                      "action.verified": "green", "action.rolled_back": "red", "decision.needs_approval": "magenta",
                      "action.verify_failed": "red"}.get(e.kind, "white")
            self.console.print(f"[dim]{e.ts - self.t0:6.1f}s[/] [{colour}]{e.kind:26s}[/] "
                               f"{escape(f'{service:7s} {str(detail)[:110]}')}")
        return False


def _outcome(incident: Incident) -> str:
    if incident.state == IncidentState.RESOLVED:
        return incident.resolution.value if incident.resolution else "resolved"
    if incident.state == IncidentState.ROLLED_BACK:
        return "rolled_back"
    if incident.state in (IncidentState.AWAITING_APPROVAL, IncidentState.ESCALATED):
        return "failed" if incident.resolution and incident.resolution.value == "failed" else "escalated"
    return "failed"


def _wait(predicate: Any, timeout: float, step: float = 0.2) -> Any:
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    return None


def _pump_for(engine: Engine, timeline: Timeline, seconds: float) -> None:
    until = time.time() + seconds
    while time.time() < until:
        timeline.pump(engine)
        time.sleep(0.2)


def _healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/health", timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False


def play(engine: Engine, urls: dict[str, str], pace: Pace, timeline: Timeline,
         scenarios: Sequence[Scenario] = SCENARIOS) -> list[Result]:
    """Play ``scenarios`` in order (the demo's five by default; the soak benchmark plays a random
    sequence of its own), one fault at a time; each result's ``started``..``ended`` is the time
    its fault may explain an action (see :func:`false_interventions`)."""
    store = engine.store
    results = []
    for sc in scenarios:
        timeline.say(f"scenario {sc.name}: {sc.story}", "bold blue")
        res = Result(sc.name, sc.service, sc.expected, started=time.time())
        known = {i.id for i in store.incidents(service=sc.service, limit=1000)}
        try:
            faults.inject(urls[sc.service], sc.fault, **sc.params_at(pace))
        except (faults.FaultRequestError, httpx.HTTPError) as exc:
            res.notes.append(f"inject failed: {exc}")
        inject_ts = res.started

        def first_incident(service: str = sc.service, known: set[str] = known) -> Incident | None:
            new = [i for i in store.incidents(service=service, limit=50) if i.id not in known]
            return min(new, key=lambda i: i.opened_at) if new else None

        inc = _wait(lambda: timeline.pump(engine) or first_incident(), pace.scenario_timeout)
        if inc is not None:
            res.incident = inc.id
            res.detect_s = round(inc.opened_at - inject_ts, 2)

            def finished(inc_id: str = inc.id) -> Incident | None:
                timeline.pump(engine)
                cur = store.get(Incident, inc_id)
                return cur if cur is not None and cur.state in _DONE_STATES else None

            done = _wait(finished, pace.scenario_timeout)
            if done is not None:
                res.outcome = _outcome(done)
                res.heal_s = round(done.updated_at - inject_ts, 2)
                acts = store.actions(incident_id=done.id)
                decisions = store.decisions(done.id)
                if acts:
                    res.action = f"{acts[0].type}:{acts[0].params.get('op', '')}".rstrip(":")
                elif decisions and decisions[-1].action is not None:
                    proposed = decisions[-1].action
                    res.action = f"{proposed.type}:{proposed.params.get('op', '')}".rstrip(":") + " (proposed)"
            else:
                res.notes.append("no outcome before the timeout")
        else:
            res.notes.append("no incident before the timeout")
        timeline.say(f"scenario {sc.name}: {res.outcome} (expected {sc.expected})",
                     "bold green" if res.outcome == sc.expected else "bold red")
        if sc.cascade is not None:  # the dependent service's incident is decided while the fault lasts
            decided = _wait(lambda svc=sc.cascade, since=res.started: timeline.pump(engine)
                            or _decided(store, svc, since), pace.scenario_timeout)
            if decided is None:
                res.notes.append(f"{sc.cascade}: no decided incident before the timeout")
        try:
            if _healthy(urls[sc.service]):
                faults.clear(urls[sc.service])
        except (faults.FaultRequestError, httpx.HTTPError) as exc:
            res.notes.append(f"clear failed: {exc}")
        _wait(lambda svc=sc.service: timeline.pump(engine) or _healthy(urls[svc]), pace.scenario_timeout)
        # let the service settle so its metrics are back to normal before the next fault
        _pump_for(engine, timeline, max(pace.settle * 0.6, 4 * pace.interval))
        res.ended = time.time()
        results.append(res)
    return results


def _decided(store: Any, service: str, since: float) -> Incident | None:
    """An incident of ``service`` with a decision taken at or after ``since``."""
    for inc in store.incidents(service=service, limit=50):
        if any(d.ts >= since for d in store.decisions(inc.id)):
            return inc
    return None


def _left_alone(engine: Engine) -> list[dict[str, Any]]:
    """Incidents not acted on because root-cause analysis found a dependency behind them."""
    found = []
    for inc in engine.store.incidents(limit=1000):
        for d in engine.store.decisions(inc.id):
            if any(g.gate == "root_cause" and not g.passed for g in d.gates):
                found.append({"service": inc.service, "cause": inc.cause,
                              "impacted_by": engine.store.diagnoses(inc.id)[-1].impacted_by})
                break
    return found


def uncovered(actions: list[Action], results: list[Result]) -> list[Action]:
    """The actions on a service that had no injected fault when the action was decided."""
    return [a for a in actions
            if not any(r.service == a.service and r.started <= a.created_at <= r.ended for r in results)]


def false_interventions(actions: list[Action], results: list[Result]) -> int:
    """How many actions were on a service that had no injected fault when decided (:func:`uncovered`)."""
    return len(uncovered(actions, results))


def run_demo(*, fast: bool = False, as_json: bool = False, keep: bool = False,
             workdir: Path | None = None) -> dict[str, Any]:
    """Run the whole demo; return the summary (the JSON printed by ``--json``)."""
    pace = FAST if fast else NORMAL
    console = Console(highlight=False, width=None if sys.stdout.isatty() else 120)
    own_dir = workdir is None
    work = Path(tempfile.mkdtemp(prefix="autonomic-demo-")) if workdir is None else workdir
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("autonomic").setLevel(logging.WARNING)
    t0 = time.time()
    timeline = Timeline(console, t0)
    config_path, urls = prepare(work, pace)
    timeline.say(f"demo folder {work}; services {', '.join(f'{k} {v}' for k, v in urls.items())}")
    config = load_config(config_path)
    metrics = EngineMetrics()
    engine = Engine(config, metrics=metrics)
    server = _start_dashboard(engine, config, metrics, timeline)
    stop = threading.Event()
    thread = threading.Thread(target=engine.run, args=(stop,), name="engine", daemon=True)
    thread.start()
    results: list[Result] = []
    left_alone: list[dict[str, Any]] = []
    try:
        ready = _wait(lambda: all(_healthy(u) for u in urls.values()), 30)
        if not ready:
            raise RuntimeError("the demo services did not become healthy within 30 s; "
                               f"see the logs in {work / 'state' / 'run' / 'logs'}")
        timeline.say("all services healthy; watching a baseline")
        _pump_for(engine, timeline, max(pace.trend_window, 5 * pace.interval))
        results = play(engine, urls, pace, timeline)
        actions = engine.store.actions()
        left_alone = _left_alone(engine)
    finally:
        stop.set()
        thread.join(timeout=30)
        if server is not None:
            server.stop()
        if own_dir and not keep:
            shutil.rmtree(work, ignore_errors=True)
    summary = {
        "scenarios": [{"name": r.name, "expected": r.expected, "outcome": r.outcome, "action": r.action,
                       "detect_s": r.detect_s, "heal_s": r.heal_s} for r in results],
        "false_interventions": false_interventions(actions, results),
        "actions_total": len(actions),
        "left_alone": left_alone,
        "duration_s": round(time.time() - t0, 1),
    }
    _print_summary(console, results, summary)
    if keep or not own_dir:
        console.print(f"kept {work}; try: autonomic incidents --all -c {config_path}")
    return summary


def _start_dashboard(engine: Engine, config: Any, metrics: EngineMetrics, timeline: Timeline) -> ApiServer | None:
    """The API and dashboard for the demo's engine: port 8470 if free, else any free port,
    with an operator token for the person watching (printed once)."""
    from autonomic.oversight.api import ApiContext, create_app
    from autonomic.oversight.auth import create_token

    app = create_app(ApiContext(store=engine.store, config=config, engine=engine, metrics=metrics))
    for port in (8470, 0):
        server = ApiServer(app, host="127.0.0.1", port=port)
        try:
            server.start()
        except RuntimeError:
            continue
        token = create_token(engine.store, "demo", "operator", actor="demo")
        timeline.say(f"dashboard: {server.url}/?token={token}", "bold cyan")
        return server
    timeline.say("dashboard: could not listen on a loopback port; running without it", "yellow")
    return None


def _print_summary(console: Console, results: list[Result], summary: dict[str, Any]) -> None:
    from rich.table import Table

    table = Table(title="autonomic demo")
    for col in ("scenario", "service", "expected", "outcome", "action", "detect s", "heal s"):
        table.add_column(col)
    for r in results:
        ok = r.outcome == r.expected
        table.add_row(r.name, r.service, r.expected, f"[{'green' if ok else 'red'}]{r.outcome}[/]", r.action or "-",
                      f"{r.detect_s}" if r.detect_s is not None else "-",
                      f"{r.heal_s}" if r.heal_s is not None else "-")
    console.print(table)
    console.print(f"actions: {summary['actions_total']}, false interventions: {summary['false_interventions']}, "
                  f"{summary['duration_s']} s")
