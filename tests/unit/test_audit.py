"""The audit chain: canonical hashing, redaction, tamper detection, two writers on one file."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from autonomic.errors import AuditChainError
from autonomic.knowledge import AuditReport, Store
from autonomic.knowledge.audit import GENESIS_HASH, event_hash, redact
from autonomic.model import Severity


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "audit.db"


@pytest.fixture
def store(db_path: Path) -> Iterator[Store]:
    s = Store(f"sqlite:///{db_path}")
    yield s
    s.close()


def fill(store: Store, n: int) -> None:
    for i in range(n):
        store.audit("engine", "tick", f"subject-{i}", {"i": i})


def raw_sql(db_path: Path, sql: str, *params: object) -> list[tuple[object, ...]]:
    conn = sqlite3.connect(db_path)
    try:
        rows = conn.execute(sql, params).fetchall()
        conn.commit()
        return rows
    finally:
        conn.close()


def test_redact_replaces_secret_values_recursively_and_leaves_the_rest() -> None:
    data = {
        "user": "alice",
        "Password": "hunter2",
        "headers": {"Authorization": "Bearer x", "Accept": "json", "Set-Cookie": "s=1"},
        "items": [{"api_key": "k1"}, {"apiKey": "k2"}, {"name": "ok", "nested": [{"db_secret": {"a": 1}}]}],
        "github_token": None,
        "private_key": "-----BEGIN",
    }

    out = redact(data)

    assert out == {
        "user": "alice",
        "Password": "[redacted]",
        "headers": {"Authorization": "[redacted]", "Accept": "json", "Set-Cookie": "[redacted]"},
        "items": [
            {"api_key": "[redacted]"},
            {"apiKey": "[redacted]"},
            {"name": "ok", "nested": [{"db_secret": "[redacted]"}]},
        ],
        "github_token": "[redacted]",
        "private_key": "[redacted]",
    }
    assert data["Password"] == "hunter2"  # the input is not modified


def test_event_hash_is_sha256_of_sorted_compact_json_of_the_fields() -> None:
    fields = dict(
        seq=1, ts=1.5, actor="engine", kind="k", subject="s", data={"b": "é", "a": 1}, prev_hash=GENESIS_HASH
    )
    expected = hashlib.sha256(
        json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    ).hexdigest()
    assert event_hash(**fields) == expected  # type: ignore[arg-type]


def test_a_fresh_chain_links_from_genesis_and_verifies(store: Store) -> None:
    assert store.verify_audit() == AuditReport(ok=True, checked=0, problems=[])
    fill(store, 5)

    events = store.audit_events()

    assert [e.seq for e in events] == [1, 2, 3, 4, 5]
    assert events[0].prev_hash == GENESIS_HASH
    assert all(b.prev_hash == a.hash for a, b in zip(events, events[1:], strict=False))
    assert store.verify_audit() == AuditReport(ok=True, checked=5, problems=[])


def test_editing_a_rows_data_is_reported_with_its_seq(store: Store, db_path: Path) -> None:
    fill(store, 5)
    raw_sql(db_path, "UPDATE audit SET data = ? WHERE seq = 3", json.dumps({"i": 99}))

    report = store.verify_audit()

    assert not report.ok
    assert report.checked == 5
    assert report.problems == ["seq 3: hash mismatch (entry edited)"]


def test_a_row_edited_into_invalid_json_is_reported_not_raised(store: Store, db_path: Path) -> None:
    fill(store, 3)
    raw_sql(db_path, "UPDATE audit SET data = 'not json{' WHERE seq = 2")

    report = store.verify_audit()

    assert report.problems == ["seq 2: hash mismatch (entry edited)"]


def test_editing_a_row_and_recomputing_its_hash_breaks_the_next_link(store: Store, db_path: Path) -> None:
    fill(store, 4)
    ev = store.audit_events(since_seq=1, limit=1)[0]
    forged = event_hash(
        seq=2,
        ts=ev.ts,
        actor="mallory",
        kind=ev.kind,
        subject=ev.subject,
        data=ev.data,
        prev_hash=ev.prev_hash,
    )
    raw_sql(db_path, "UPDATE audit SET actor = 'mallory', hash = ? WHERE seq = 2", forged)

    report = store.verify_audit()

    assert not report.ok
    assert any(p.startswith("seq 3: prev_hash") for p in report.problems)


def test_deleting_a_middle_row_is_detected(store: Store, db_path: Path) -> None:
    fill(store, 6)
    raw_sql(db_path, "DELETE FROM audit WHERE seq = 4")

    report = store.verify_audit()

    assert not report.ok
    assert report.checked == 5
    assert "seq 4 missing (entry deleted)" in report.problems


def test_deleting_the_last_row_is_detected_through_the_head(store: Store, db_path: Path) -> None:
    fill(store, 6)
    raw_sql(db_path, "DELETE FROM audit WHERE seq = 6")

    report = store.verify_audit()

    assert not report.ok
    assert report.problems == ["head says seq 6, chain ends at 5 (tail deleted)"]


def test_a_missing_head_row_is_reported_and_further_appends_refused(store: Store, db_path: Path) -> None:
    fill(store, 2)
    raw_sql(db_path, "DELETE FROM audit_head")

    assert store.verify_audit().problems == ["audit head row missing"]
    with pytest.raises(AuditChainError):
        store.audit("engine", "tick", "x")


def test_secrets_are_redacted_before_the_row_is_stored(store: Store, db_path: Path) -> None:
    ev = store.audit(
        "alice",
        "source.configured",
        "prom",
        {
            "url": "http://p:9090",
            "auth": {"headers": [{"Authorization": "Bearer s3cr3t"}]},
            "db": {"password": "hunter2"},
        },
    )

    (stored,) = raw_sql(db_path, "SELECT data FROM audit WHERE seq = ?", ev.seq)
    text = str(stored[0])

    assert "s3cr3t" not in text and "hunter2" not in text
    assert json.loads(text) == {
        "url": "http://p:9090",
        "auth": {"headers": [{"Authorization": "[redacted]"}]},
        "db": {"password": "[redacted]"},
    }
    assert ev.data == json.loads(text)
    assert store.verify_audit().ok


def test_data_with_enums_tuples_and_nan_is_normalised_so_the_hash_still_verifies(store: Store) -> None:
    ev = store.audit("engine", "x", "y", {"severity": Severity.CRITICAL, "pair": (1, 2), "v": float("nan")})
    assert ev.data == {"severity": "critical", "pair": [1, 2], "v": None}
    assert store.audit_events() == [ev]
    assert store.verify_audit().ok


def test_two_stores_on_one_file_appending_alternately_keep_one_valid_chain(db_path: Path) -> None:
    engine_side = Store(f"sqlite:///{db_path}")
    cli_side = Store(f"sqlite:///{db_path}")
    try:
        for i in range(6):
            engine_side.audit("engine", "tick", "engine", {"i": i})
            cli_side.audit("alice", "approve", "cli", {"i": i})
        assert [e.actor for e in engine_side.audit_events()] == ["engine", "alice"] * 6

        def hammer(s: Store, who: str) -> None:
            for i in range(25):
                s.audit(who, "burst", who, {"i": i})

        threads = [
            threading.Thread(target=hammer, args=(s, w))
            for s, w in [(engine_side, "engine"), (cli_side, "alice")]
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=20)

        for s in (engine_side, cli_side):
            report = s.verify_audit()
            assert report.ok, report.problems
            assert report.checked == 62
    finally:
        engine_side.close()
        cli_side.close()
