"""Upgrading a store full of history: what an older autonomic wrote opens migrated, and every
figure the engine derives from the history is what the older version derived from it.

The history in ``tests/fixtures/upgrade/store-<revision>.json`` was run by the older engine
itself and saved with the figures it derived (``make_old_stores.py`` says how to make them
again); here it is written into a database at that schema revision, on both back ends, and
opened with this version. No old code runs here.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
from test_engine import Harness
from test_store import HEAD_REVISION, _downgrade

from autonomic.knowledge import Store

FIXTURES = Path(__file__).parents[1] / "fixtures" / "upgrade"
sys.path.insert(0, str(FIXTURES))

from history import figures, load  # noqa: E402

RawSql = Any
OLD_STORES = sorted(FIXTURES.glob("store-*.json"))


def _old(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def _without_audit(found: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in found.items() if k != "audit"}


def test_there_is_an_old_store_for_each_migration_since_0005() -> None:
    assert [p.name for p in OLD_STORES] == ["store-0005.json", "store-0006.json", "store-0007.json",
                                            "store-0008.json", "store-0009.json"]


@pytest.mark.parametrize("path", OLD_STORES, ids=lambda p: p.stem)
def test_a_store_an_older_autonomic_wrote_opens_migrated_and_derives_every_figure_as_the_older_one_did(
        path: Path, store_url: str, raw_sql: RawSql) -> None:
    """Pattern tallies, each pattern's autonomy ladder record and the level it earns, the
    rate-limit counts, the busy check's settle time, and the audit chain's verification."""
    old = _old(path)
    Store(store_url).close()
    _downgrade(store_url, old["revision"])  # the schema the older autonomic made, by the same migrations
    load(store_url, old["rows"])
    assert raw_sql("SELECT version_num FROM alembic_version") == [(old["revision"],)]

    store = Store(store_url)
    assert raw_sql("SELECT version_num FROM alembic_version") == [(HEAD_REVISION,)]
    assert figures(store, old["now"]) == old["figures"]
    # what the older engine stored of the ladder (the level it earned) reads back as it wrote it
    assert {r["key"] for r in old["rows"]["state"]} <= set(store.states(""))
    store.close()


def test_approval_requests_an_older_autonomic_recorded_read_without_an_expiry_and_expire_by_the_readers_ttl(
        store_url: str) -> None:
    """Before 0010 a request did not record when it expires (``expires_at``): as the 0009 engine
    wrote them, its requests read back without one, and each expires ``approval_ttl_s`` after it
    was asked by the TTL of whoever reads it (the engine, the CLI, the API), as they did then."""
    from autonomic.engine import approval_expires_at
    from autonomic.model import Decision, Incident, Verdict

    old = _old(FIXTURES / "store-0009.json")
    Store(store_url).close()
    _downgrade(store_url, old["revision"])
    load(store_url, old["rows"])
    store = Store(store_url)
    asked = [(d, inc) for inc in store.incidents(limit=None) for d in store.decisions(inc.id)
             if d.verdict == Verdict.NEEDS_APPROVAL]
    # every request the older engine recorded (people answered them: approvals and a denial)
    assert asked and len(asked) == sum(r["verdict"] == "needs_approval" for r in old["rows"]["decisions"])
    assert not any("expires_at" in r["body"] for r in old["rows"]["decisions"])
    for d, inc in asked:
        assert isinstance(d, Decision) and isinstance(inc, Incident) and d.expires_at is None
        assert approval_expires_at(inc, [d], ttl_s=600.0) == d.ts + 600
    store.close()


def test_rows_an_older_autonomic_writes_after_the_migration_are_filled_when_the_engine_starts(
        store_url: str, tmp_path: Path) -> None:
    """A rolling upgrade: the new replica migrated the store, and the old one, still leading
    (or an engine left running while a newer CLI opened the store), writes on without the
    columns 0008 added (an action's pattern and end, a decision's pattern, person and target).
    Its ended actions were missing from the autonomy ladder's record and from the settle time
    for good; the newer engine now fills them from the rows themselves as it starts leading."""
    old = _old(FIXTURES / "store-0007.json")  # the rows exactly as the older engine wrote them
    Store(store_url).close()  # migrated to the newest schema before the older one wrote them
    load(store_url, old["rows"])
    store = Store(store_url)
    missing = figures(store, old["now"])
    # not one of its outcomes or people's answers was in the ladder's record
    assert missing["ladder"]["fake-down-poke@svc"]["record"] == []
    assert missing["busy"]["svc"][1] == 0.0  # nor the end of its last action

    Harness(tmp_path, store=store)  # the newer engine starts (as it does on taking the lease)
    found = figures(store, old["now"])
    assert _without_audit(found) == _without_audit(old["figures"]) and found["audit"]["ok"]
    filled = [e for e in store.audit_events() if e.kind == "store.filled"]
    assert [e.data["rows"] for e in filled] == [{"actions": 5, "decisions": 8}]
    (tmp_path / "again").mkdir()
    Harness(tmp_path / "again", store=store)  # a later start finds nothing left to fill, and says nothing
    assert len([e for e in store.audit_events() if e.kind == "store.filled"]) == 1
    store.close()


def test_a_workflow_an_autonomic_from_before_0004_wrote_after_the_migration_counts_under_every_type_once_filled(
        store_url: str) -> None:
    """A workflow whose second step restarts a process, written by a version that knew no
    ``types`` or ``multi`` column, counted only under its first step's type (the read's fallback);
    once filled it counts under both, as if this version had written it."""
    import sqlalchemy as sa
    from sqlalchemy.pool import NullPool
    from test_store import action

    from autonomic.model import StepSpec

    store = Store(store_url)
    older = action("i1", type="config", workflow=[StepSpec(name="drain", type="config"),
                                                  StepSpec(name="restart", type="process")])
    known = sa.table("actions", *[sa.column(c) for c in ("id", "first_seq", "incident_id", "decision_id", "service",
                                                         "type", "state", "created_at")], sa.column("body", sa.JSON()))
    engine = sa.create_engine(store_url, poolclass=NullPool)
    with engine.begin() as conn:
        conn.execute(sa.insert(known).values(id=older.id, first_seq=1, body=older.model_dump(mode="json"),
                                             incident_id="i1", decision_id=older.decision_id, service="api",
                                             type="config", state=older.state.value, created_at=100.0))
    engine.dispose()
    assert store.count_actions(0.0, type="config") == 1 and store.count_actions(0.0, type="process") == 0
    assert store.fill_derived() == {"actions": 1, "decisions": 0}
    assert store.count_actions(0.0, type="config") == 1 and store.count_actions(0.0, type="process") == 1
    assert store.fill_derived() == {"actions": 0, "decisions": 0}
    store.close()
