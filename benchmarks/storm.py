"""An alert storm: 10,000 findings a second for 60 seconds across 1,000 services.

    python benchmarks/storm.py --json

An engine over fakes (FakeClock, FakeActuator so actions are cheap, no sources) on a SQLite
file store, policy autonomy ``auto`` with a rate budget of ``--budget`` actions a day. Each
simulated second ``--rate`` findings (random service of ``--services``, random cause of three,
one of them matched by a pattern that acts) go in through ``Engine.submit`` and one
``Engine.tick`` ingests, correlates, diagnoses, decides and acts; the fake clock then moves one
second. ``seconds`` is the engine's wall time (``submit`` + ``tick``; building the Finding
objects, the source's work, is left out and reported as ``wall_s_with_generation``). Prints
``{"findings", "seconds", "incidents", "actions", "budget", "max_rss_mb", "findings_per_s",
"first_second_s" (the opening burst: every incident opened, diagnosed and decided),
"steady_findings_per_s" (after it), ...}``; the storm is sustained when ``seconds`` <= ``simulated_s``.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import sys
import tempfile
import time
from pathlib import Path

from decide import T0, build_config, build_engine, fake_registry

from autonomic.knowledge import Store
from autonomic.model import ActionState, Finding, FindingKind, Severity
from autonomic.testing import FakeActuator, FakeClock

CAUSES = (("down", "up", FindingKind.STATE), ("latency", "latency_p99", FindingKind.THRESHOLD),
          ("errors", "error_rate", FindingKind.THRESHOLD))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="alert storm through the engine")
    ap.add_argument("--rate", type=int, default=10_000, help="findings per simulated second")
    ap.add_argument("--seconds", type=int, default=60, help="simulated seconds")
    ap.add_argument("--services", type=int, default=1000)
    ap.add_argument("--budget", type=int, default=50, help="actions per day (policy rate limit)")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    rng = random.Random(args.seed)

    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        clock = FakeClock(T0)
        actuator = FakeActuator()
        registry = fake_registry(actuator)
        policy = {"rate_limits": {"per_day": args.budget, "per_week": args.budget * 7,
                                  "per_service_day": 10, "per_service_week": 30},
                  "blast_radius": {"max_in_flight": 1000, "max_group_percent": 100}}
        config = build_config(tmp, args.services, registry, policy=policy, engine={"resolve_after_s": 30})
        store = Store(f"sqlite:///{tmp / 'storm.db'}")
        engine = build_engine(config, registry, clock, store)
        engine.start()
        names = [f"svc{i:05d}" for i in range(args.services)]
        per_second: list[float] = []  # engine time (submit + tick) of each simulated second
        started = time.perf_counter()
        for _ in range(args.seconds):
            now = clock.now()
            batch = []
            for _ in range(args.rate):
                svc = names[rng.randrange(len(names))]
                cause, metric, kind = CAUSES[rng.randrange(3)]
                batch.append(Finding(service=svc, metric=metric, kind=kind, cause=cause,
                                     severity=Severity.CRITICAL, confidence=0.9, ts=now, value=0.0,
                                     summary=f"{svc} {cause}"))
            second = time.perf_counter()
            engine.submit(batch)
            engine.tick()
            per_second.append(time.perf_counter() - second)
            clock.advance(1.0)
        wall = time.perf_counter() - started
        actions = [a for a in store.actions() if a.state != ActionState.CANCELLED]
        incidents = len(store.incidents(limit=10_000_000))
        engine.shutdown()
    findings = args.rate * args.seconds
    # ru_maxrss is in KiB on Linux
    engine_s = sum(per_second)
    steady = per_second[1:] or per_second
    result = {"findings": findings, "seconds": round(engine_s, 2), "incidents": incidents, "actions": len(actions),
              "budget": args.budget, "max_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
              "findings_per_s": round(findings / engine_s), "simulated_s": args.seconds,
              "first_second_s": round(per_second[0], 2),
              "steady_findings_per_s": round(args.rate * len(steady) / sum(steady)),
              "steady_worst_second_s": round(max(steady), 3), "wall_s_with_generation": round(wall, 2),
              "actuator_applies": len(actuator.calls)}
    if len(actions) > args.budget:
        print(f"BUDGET EXCEEDED: {len(actions)} actions > {args.budget}", file=sys.stderr)
    if args.json:
        print(json.dumps(result))
    else:
        for k, v in result.items():
            print(f"{k:>16}: {v}")
    return 1 if len(actions) > args.budget else 0


if __name__ == "__main__":
    sys.exit(main())
