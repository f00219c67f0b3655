"""Retention: pruning a large history from a SQLite file store, in bounded transactions.

    python benchmarks/retention.py --json [--incidents 10000] [--findings-per 10] [--kept 1000]

Seeds a SQLite file store with ``--incidents`` closed incidents 200 days old (each with
``--findings-per`` findings, a diagnosis, a person's approval, an action with a pattern and an
outcome: 100,000 findings at the defaults) and ``--kept`` recent ones, every write through
``Store.record`` with its audit event (so the audit log holds one entry per incident too). Then
prunes with the default retention (findings 30 days, closed incidents 90, audit 365) as the
engine does, the audit log judged from a wall clock two years on, and reports:

* ``prune_s``, ``rows``, ``rows_per_s``: the whole prune, every kind of row;
* ``transactions``, ``longest_transaction_ms`` (also per kind), ``transaction_ms_p50`` / ``_p99``:
  the write transactions' times (how long the engine's own writes may wait behind a prune; a
  commit that runs SQLite's WAL checkpoint is the longest);
* ``size_mb_*``: the file (with its WAL checkpointed) before, after the prune, after seeding the
  same history again (SQLite reuses the pages a prune freed: the file does not grow), and after
  a VACUUM for comparison (what ``sqlite3 autonomic.db VACUUM`` with the engine stopped gives).
  With ``--database`` (an empty PostgreSQL database): ``pg_database_size``, a plain VACUUM (what
  autovacuum does) before the refill, VACUUM FULL for the last;
* ``same_record``: the pattern tallies and autonomy records read the same after the prune.

Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from autonomic.knowledge import Store
from autonomic.knowledge.retention import DAY_S, RetentionSpec, prune
from autonomic.model import (
    Action,
    ActionSpec,
    ActionState,
    Decision,
    Diagnosis,
    Finding,
    FindingKind,
    GateResult,
    Incident,
    IncidentState,
    Outcome,
    Severity,
    Verdict,
    VerifyVerdict,
)
from autonomic.plan.autonomy import people_evidence

NOW = 1_800_000_000.0


def seed(store: Store, n: int, findings_per: int, at: float, per_unit: int = 50) -> None:
    """``n`` closed incidents from around ``at``, each with its whole chain."""
    for start in range(0, n, per_unit):
        with store.unit():
            for i in range(start, min(n, start + per_unit)):
                t = at + i * 60.0
                service = f"svc-{i % 30}"
                inc = Incident(service=service, cause="down", severity=Severity.CRITICAL, kind=FindingKind.STATE,
                               opened_at=t, updated_at=t + 600, last_finding_at=t + 300, summary="svc is down",
                               state=IncidentState.RESOLVED, closed_at=t + 600, finding_count=findings_per)
                findings = [Finding(service=service, metric="up", kind=FindingKind.STATE, cause="down",
                                    severity=Severity.CRITICAL, confidence=1.0, ts=t + k, value=0.0, threshold=1.0,
                                    summary="probe failed", evidence={"status": 503, "latency_ms": 1200.0 + k},
                                    incident_id=inc.id) for k in range(findings_per)]
                spec = ActionSpec(type="process", target=service, params={"operation": "restart"})
                pattern = ("process-down-restart", "memory-leak-graceful-restart")[i % 2]
                dia = Diagnosis(incident_id=inc.id, ts=t + 1, pattern_id=pattern, action=spec, confidence=0.9,
                                rationale="the probe fails and the process is gone")
                dec = Decision(incident_id=inc.id, diagnosis_id=dia.id, ts=t + 2, verdict=Verdict.APPROVED,
                               gates=[GateResult(gate="confidence", passed=True, reason="0.90 >= 0.60")],
                               action=spec, decided_by="alice" if i % 5 == 0 else "engine", pattern_id=pattern)
                ok = i % 7 != 0
                act = Action(decision_id=dec.id, incident_id=inc.id, service=service, type="process",
                             params={"operation": "restart"}, idempotency_key=f"{inc.id}:process",
                             state=ActionState.SUCCEEDED if ok else ActionState.ROLLED_BACK, pattern_id=pattern,
                             created_at=t + 3, updated_at=t + 90)
                out = Outcome(action_id=act.id, incident_id=inc.id, ts=t + 90,
                              verdict=VerifyVerdict.PASS if ok else VerifyVerdict.FAIL, reason="up",
                              rolled_back=not ok, before={"up": 0.0}, after={"up": 1.0}, duration_s=60.0)
                store.record(*findings, inc, dia, dec, act, out, actor="engine", event="incident.resolved",
                             subject=inc.id)


def size_mb(path: Path | None, url: str) -> float:
    """The SQLite file (its WAL checkpointed first), or the PostgreSQL database, in MB."""
    if path is None:
        engine = create_engine(url, poolclass=NullPool)
        with engine.connect() as conn:
            size = conn.execute(text("SELECT pg_database_size(current_database())")).scalar_one()
        engine.dispose()
        return round(size / 1e6, 2)
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    wal = path.with_name(path.name + "-wal")
    return round((path.stat().st_size + (wal.stat().st_size if wal.exists() else 0)) / 1e6, 2)


def vacuum(path: Path | None, url: str, full: bool) -> None:
    """SQLite: VACUUM (the file rewritten). PostgreSQL: VACUUM (what autovacuum does: dead rows'
    space reusable), or VACUUM FULL (the tables rewritten) with ``full``."""
    if path is not None:
        with sqlite3.connect(path) as db:
            db.execute("VACUUM")
        return
    engine = create_engine(url, poolclass=NullPool, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text("VACUUM FULL" if full else "VACUUM"))
    engine.dispose()


def records(store: Store) -> Any:
    """The tallies, and each pair's autonomy record as the engine builds it (Engine._earned)."""
    ladder = []
    for pattern, service in sorted(store.pattern_tallies_by_service()):
        outcomes, answers = store.pattern_record(pattern, service)
        record = [(ts, v, r) for ts, v, r in outcomes]
        record += [(e.ts, e.verdict, e.rolled_back) for e in people_evidence(answers, pattern, service)]
        ladder.append(sorted(record, key=lambda item: item[0]))
    return store.pattern_tallies_by_service(), ladder


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--incidents", type=int, default=10_000)
    parser.add_argument("--findings-per", type=int, default=10)
    parser.add_argument("--kept", type=int, default=1_000)
    parser.add_argument("--batch", type=int, default=RetentionSpec().batch, help="retention.batch")
    parser.add_argument("--database", default=None,
                        help="store URL (an empty PostgreSQL database); default: a SQLite file")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        url = args.database or f"sqlite:///{Path(tmp) / 'autonomic.db'}"
        path = None if args.database else Path(tmp) / "autonomic.db"
        store = Store(url)
        started = time.perf_counter()
        seed(store, args.incidents, args.findings_per, NOW - 200 * DAY_S)
        seed(store, args.kept, args.findings_per, NOW - 5 * DAY_S)
        seed_s = time.perf_counter() - started
        before = size_mb(path, url)
        record_before = records(store)
        started = time.perf_counter()
        result = prune(store, RetentionSpec(batch=args.batch), NOW, Path(tmp) / "audit-archive",
                       wall_now=time.time() + 730 * DAY_S)
        prune_s = time.perf_counter() - started
        after = size_mb(path, url)
        same = records(store) == record_before
        if path is None:
            vacuum(path, url, full=False)  # autovacuum's part on PostgreSQL
        seed(store, args.incidents, args.findings_per, NOW - 100 * DAY_S)  # as much history again
        refilled = size_mb(path, url)
        store.close()
        vacuum(path, url, full=True)
        vacuumed = size_mb(path, url)
    rows = result.total
    out = {
        "benchmark": "retention", "store": make_url(url).get_backend_name(), "incidents": args.incidents,
        "findings": args.incidents * args.findings_per,
        "kept_incidents": args.kept, "batch": args.batch, "seed_s": round(seed_s, 1),
        "prune_s": round(prune_s, 2), "rows": rows,
        "counts": result.counts, "rows_per_s": round(rows / prune_s), "transactions": result.transactions,
        "longest_transaction_ms": round(result.longest_transaction_s * 1000, 1),
        "longest_ms_by_kind": {k: round(v * 1000, 1) for k, v in result.longest_s.items()},
        "transaction_ms_p50": round(float(np.percentile(result.took_s, 50)) * 1000, 1),
        "transaction_ms_p99": round(float(np.percentile(result.took_s, 99)) * 1000, 1),
        "archives": len(result.archives), "size_mb_before": before, "size_mb_after_prune": after,
        "size_mb_after_refill": refilled, "size_mb_after_vacuum": vacuumed, "same_record": same,
    }
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    sys.exit(0 if main()["same_record"] else 1)
