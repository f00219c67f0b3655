"""What the engine's start pays to fill the rows an older autonomic wrote after a migration.

    python benchmarks/upgrade.py --history 100000 --json

A fresh store (a SQLite file, or ``--database``) holding ``--history`` past actions, each with
its outcome, its approval and an engine's denial beside it (``decide.py``'s year of history),
then :meth:`Store.fill_derived`, as the engine calls it at every start, timed with
``time.perf_counter``: once with nothing to fill (what every start pays: one read finding
nothing), then after emptying the 0008 columns of the newest ``--old`` actions and decisions
(as a rolling upgrade's old replica leaves them), filling those. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from decide import T0, fill_history
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from autonomic.knowledge import Store


def _timed(store: Store) -> tuple[float, dict[str, int]]:
    t0 = time.perf_counter()
    filled = store.fill_derived(actor="bench")
    return round((time.perf_counter() - t0) * 1000, 1), filled


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="the cost of filling an older autonomic's rows at start")
    ap.add_argument("--history", type=int, default=100_000, help="past actions in the store")
    ap.add_argument("--old", type=int, default=1000, help="newest actions and decisions left unfilled")
    ap.add_argument("--database", default=None, help="store URL (an empty database); default: a SQLite file")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as d:
        url = args.database or f"sqlite:///{Path(d) / 'bench.db'}"
        store = Store(url)
        fill_history(store, args.history, [f"svc{i:03d}" for i in range(100)], T0)
        nothing_ms, _ = _timed(store)
        engine = sa.create_engine(url, poolclass=NullPool)
        with engine.begin() as conn:  # as an older replica writes them: the 0008 columns empty
            for table, values in (("actions", "ended_at = NULL, pattern_id = NULL"),
                                  ("decisions", "pattern_id = NULL, target = NULL, person = false")):
                conn.execute(sa.text(f"UPDATE {table} SET {values} WHERE id IN "
                                     f"(SELECT id FROM {table} ORDER BY first_seq DESC LIMIT {args.old})"))
        engine.dispose()
        some_ms, filled = _timed(store)
        store.close()
    result: dict[str, Any] = {"store": make_url(url).get_backend_name(), "actions": args.history,
                              "decisions": 2 * args.history, "nothing_to_fill_ms": nothing_ms,
                              "filled": filled, "filling_ms": some_ms}
    print(json.dumps(result) if args.json else result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
