"""Finding -> decision latency with the SQLite (file) store and 1,000 open incidents.

    python benchmarks/decide.py --json

Builds an engine over fakes (FakeClock, FakeActuator, no sources) on a SQLite file store,
pre-creates ``--open`` unclosed incidents (awaiting approval, one per service), then for each of
``--n`` new findings on other services measures, with ``time.perf_counter``, from
``Engine.ingest`` of the finding to its Decision being stored (ingest, diagnose, decide: the two
``reconcile_incident`` steps the loop would run at once). Policy autonomy is ``auto``; once the
rate budget or blast radius is spent the decisions are denials, which are measured the same.
Prints ``{"p50_ms", "p99_ms", "open_incidents", ...}``.

    python benchmarks/decide.py --history 0,10000,100000 --json

The same with a year of past actions in the store: for each size, a fresh store holding that many
actions (each with its outcome, created over the 365 days before the first finding, spread over
the measured services, the benchmark's one pattern, mostly succeeded, some failed, rolled back,
escalated or cancelled; each with its approval, one in 20 a person's, and an engine's denial
beside it), and before each measured finding, outside the timing, one more action ending
(recorded verifying, then succeeded with its outcome, through the store, as the executor does):
the steady state of a fleet where actions end between decisions, so that nothing the engine
caches until an action ends is measured as if it lasted. Prints one line
``{"history": {"0": {"p50_ms", "p99_ms", ...}, ...}}``. ``--ladder`` turns earned autonomy on,
so each decision also reads its pattern's record on the service.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy.engine import make_url

from autonomic.config import Config, load_config_data
from autonomic.engine import Engine
from autonomic.knowledge import Store
from autonomic.model import (
    Action,
    ActionSpec,
    ActionState,
    Decision,
    Finding,
    FindingKind,
    GateResult,
    Incident,
    IncidentState,
    Level,
    Outcome,
    Resolution,
    Severity,
    Verdict,
    VerifyVerdict,
)
from autonomic.oversight.notify import Dispatcher
from autonomic.registry import Registry
from autonomic.testing import FakeActuator, FakeClock, FakeNotifier, fake_registry

T0 = 1_700_000_000.0
PATTERN = """
id: fake-down-poke
match: {cause: down, kind: state}
action: {type: fake, params: {op: poke}}
prior_confidence: 0.9
rollback_safe: true
verify: {metric: up, min: 1, window_s: 10, delay_s: 3, min_samples: 3}
"""


def build_config(tmp: Path, services: int, registry: Registry, policy: dict[str, Any] | None = None,
                 engine: dict[str, Any] | None = None) -> Config:
    pdir = tmp / "patterns"
    pdir.mkdir(exist_ok=True)
    (pdir / "fake.yaml").write_text(PATTERN)
    data = {
        "engine": {"interval_s": 1, "state_dir": str(tmp / "state"), "host_metrics": False, "settle_s": 0,
                   "resolve_after_s": 30, "stop_services_on_exit": False, **(engine or {})},
        "services": [{"name": f"svc{i:05d}", "actuators": {"fake": {"name": "x"}}} for i in range(services)],
        "patterns": [str(pdir)],
        "builtin_patterns": False,
        "policy": {"autonomy": "auto", "confidence_threshold": 0.5, **(policy or {})},
    }
    return load_config_data(data, source="bench.yaml", base_dir=tmp, registry=registry)


def build_engine(config: Config, registry: Registry, clock: FakeClock, store: Store) -> Engine:
    return Engine(config, registry=registry, clock=clock, store=store,
                  notifiers=Dispatcher([(FakeNotifier(), Level.INFO)], synchronous=True, dedup_s=0), sources=[],
                  detectors=[])


def finding(service: str, ts: float, cause: str = "down") -> Finding:
    return Finding(service=service, metric="up", kind=FindingKind.STATE, cause=cause, severity=Severity.CRITICAL,
                   confidence=0.95, ts=ts, value=0.0, threshold=1.0, summary=f"{service} is down")


_YEAR = 365 * 86400.0
# how the past actions ended, in turn (one in ten not a success)
_ENDS = [ActionState.SUCCEEDED] * 6 + [ActionState.FAILED, ActionState.ROLLED_BACK, ActionState.ESCALATED,
                                      ActionState.CANCELLED]


def past_decision(service: str, at: float, verdict: Verdict, by: str = "engine") -> Decision:
    """A decision on an incident of ``service`` with the benchmark's pattern, made at ``at``."""
    return Decision(incident_id="past", diagnosis_id="past", ts=at, verdict=verdict, decided_by=by,
                    action=ActionSpec(type="fake", target=service, params={"op": "poke"}), pattern_id="fake-down-poke",
                    gates=[] if verdict == Verdict.APPROVED else [GateResult(gate="rate_limit", passed=False,
                                                                             reason="20 of 20 today")])


def past_action(service: str, at: float, state: ActionState) -> tuple[Action, Outcome | None]:
    """An action of the benchmark's pattern on ``service``, created at ``at`` and ended in
    ``state`` a minute later, and its outcome (None for a cancelled one, which never ran)."""
    action = Action(decision_id="past", incident_id="past", service=service, type="fake",
                    params={"op": "poke"}, idempotency_key=f"past-{service}-{at}", state=state,
                    pattern_id="fake-down-poke", created_at=at, updated_at=at + 60.0)
    if state == ActionState.CANCELLED:
        return action, None
    verdict = VerifyVerdict.PASS if state == ActionState.SUCCEEDED else (
        VerifyVerdict.INCONCLUSIVE if state == ActionState.ESCALATED else VerifyVerdict.FAIL)
    return action, Outcome(action_id=action.id, incident_id="past", ts=at + 60.0, verdict=verdict, reason="past",
                           rolled_back=state == ActionState.ROLLED_BACK, duration_s=60.0)


def fill_history(store: Store, count: int, services: list[str], end: float) -> None:
    """``count`` past actions (and outcomes) over the year before ``end``, spread over ``services``,
    each with the engine's approval and one denial by the engine beside it (a decision on another
    incident), and for one in 20 a person's approval: written through the store (each with its
    audit event) in transactions of 2,000."""
    for start in range(0, count, 2000):
        with store.unit():
            for i in range(start, min(count, start + 2000)):
                at = end - _YEAR + _YEAR * i / max(count, 1)
                service = services[i % len(services)]
                action, outcome = past_action(service, at, _ENDS[i % len(_ENDS)])
                decisions = [past_decision(service, at, Verdict.APPROVED, "person:ann" if i % 20 == 0 else "engine"),
                             past_decision(service, at + 1.0, Verdict.DENIED)]
                store.record(action, *([outcome] if outcome else []), *decisions, actor="bench", event="action.past",
                             subject=action.id)


def measure(args: argparse.Namespace, history: int | None) -> dict[str, Any]:
    """One run of the benchmark on a fresh store (with ``history`` past actions, or the plain
    benchmark when None)."""
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        clock = FakeClock(T0)
        registry = fake_registry(FakeActuator())
        election = {"leader_election": {"enabled": True}} if args.leader_election else None
        ladder = {"autonomy_ladder": {"enabled": True, "max_level": "auto"}} if args.ladder else None
        config = build_config(tmp, args.open + args.n, registry, engine=election, policy=ladder)
        store = Store(args.database or f"sqlite:///{tmp / 'bench.db'}")
        measured = [f"svc{args.open + j:05d}" for j in range(args.n)]
        if history:
            fill_history(store, history, measured, T0)
        for i in range(args.open):  # unclosed incidents a person has not answered yet
            inc = Incident(service=f"svc{i:05d}", cause="down", state=IncidentState.AWAITING_APPROVAL,
                           severity=Severity.CRITICAL, kind=FindingKind.STATE, opened_at=T0, updated_at=T0,
                           last_finding_at=T0, summary="down", resolution=Resolution.ESCALATED)
            store.record(finding(inc.service, T0).model_copy(update={"incident_id": inc.id}), inc,
                         actor="bench", event="incident.opened", subject=inc.id)
        engine = build_engine(config, registry, clock, store)
        if engine.elector is not None and not engine.elector.attempt():
            raise SystemExit("could not take the lease")
        engine.start()
        open_before = sum(1 for i in store.incidents(limit=100_000) if i.closed_at is None)
        latencies = []
        verdicts: dict[str, int] = {}
        for j in range(args.n):
            if engine.elector is not None and j % 100 == 0:
                engine.elector.attempt()  # the renewal the lease thread would make, outside the timing
            clock.advance(0.01)
            now = clock.now()
            if history is not None:  # an action ends between two decisions, outside the timing
                action, outcome = past_action(measured[(j + 1) % len(measured)], now - 120.0, ActionState.SUCCEEDED)
                store.record(action.model_copy(update={"state": ActionState.VERIFYING}), actor="bench",
                             event="action.applied", subject=action.id)
                store.record(action, *([outcome] if outcome else []), actor="bench", event="action.verified",
                             subject=action.id)
            f = finding(measured[j], now)
            t0 = time.perf_counter()
            opened = engine.ingest(f, now)
            assert opened is not None
            engine.reconcile_incident(opened.id)  # open -> diagnosed
            engine.reconcile_incident(opened.id)  # diagnosed -> decision stored
            latencies.append(time.perf_counter() - t0)
            (decision,) = store.decisions(opened.id)
            verdicts[decision.verdict.value] = verdicts.get(decision.verdict.value, 0) + 1
        engine.shutdown()
    ms = np.asarray(latencies) * 1000
    return {"p50_ms": round(float(np.percentile(ms, 50)), 3), "p99_ms": round(float(np.percentile(ms, 99)), 3),
            "open_incidents": open_before, "measured": args.n, "verdicts": verdicts}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="finding -> decision latency")
    ap.add_argument("--open", type=int, default=1000, help="open incidents before measuring")
    ap.add_argument("--n", type=int, default=500, help="new incidents measured")
    ap.add_argument("--database", default=None,
                    help="store URL (an empty database, e.g. postgresql+psycopg://...); default: a SQLite file")
    ap.add_argument("--leader-election", action="store_true",
                    help="the engine leads by lease: every write also checks the fence (see README, Replicas)")
    ap.add_argument("--history", default=None, metavar="N[,N...]",
                    help="past actions in the store, one run per size (e.g. 0,10000,100000); an action "
                         "then also ends before each measured finding")
    ap.add_argument("--ladder", action="store_true",
                    help="earned autonomy on (policy.autonomy_ladder): each decision also weighs its pattern's record")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)

    where = {"store": make_url(args.database).get_backend_name() if args.database else "sqlite file",
             "leader_election": args.leader_election, "ladder": args.ladder}
    if args.history is None:
        result: dict[str, Any] = {**measure(args, None), **where}
    else:
        sizes = [int(n) for n in args.history.split(",")]
        result = {"history": {str(n): measure(args, n) for n in sizes}, **where}
    if args.json:
        print(json.dumps(result))
    else:
        for k, v in result.items():
            print(f"{k:>15}: {v}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
