"""The audit chain: canonical hashing, redaction, tamper detection, two writers on one database
(two Store objects, two threads, two processes), on SQLite and on a real PostgreSQL."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from autonomic.errors import AuditChainError
from autonomic.knowledge import AuditReport, Store
from autonomic.knowledge.audit import GENESIS_HASH, event_hash, redact
from autonomic.model import Severity

RawSql = Callable[..., list[tuple[Any, ...]]]  # the raw_sql fixture (tests/conftest.py)


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "audit.db"


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    s = Store(store_url)
    yield s
    s.close()


def fill(store: Store, n: int) -> None:
    for i in range(n):
        store.audit("engine", "tick", f"subject-{i}", {"i": i})


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


def test_a_chain_s_summary_counts_its_entries_in_words(store: Store) -> None:
    """Before: "1 entries" (``autonomic audit verify`` prints it)."""
    fill(store, 1)
    assert store.verify_audit().summary() == "1 entry (seq 1..1, from the first entry)"
    fill(store, 1)
    assert store.verify_audit().summary() == "2 entries (seq 1..2, from the first entry)"


def test_editing_a_rows_data_is_reported_with_its_seq(store: Store, raw_sql: RawSql) -> None:
    fill(store, 5)
    raw_sql("UPDATE audit SET data = :data WHERE seq = 3", data=json.dumps({"i": 99}))

    report = store.verify_audit()

    assert not report.ok
    assert report.checked == 5
    assert report.problems == ["seq 3: hash mismatch (entry edited)"]


def test_a_row_edited_into_invalid_json_is_reported_not_raised(db_path: Path) -> None:
    """SQLite only: PostgreSQL's json column refuses invalid JSON, so there it cannot happen."""
    store = Store(f"sqlite:///{db_path}")
    fill(store, 3)
    raw = sqlite3.connect(db_path)
    raw.execute("UPDATE audit SET data = 'not json{' WHERE seq = 2")
    raw.commit()
    raw.close()

    report = store.verify_audit()
    store.close()

    assert report.problems == ["seq 2: hash mismatch (entry edited)"]


def test_editing_a_row_and_recomputing_its_hash_breaks_the_next_link(store: Store, raw_sql: RawSql) -> None:
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
    raw_sql("UPDATE audit SET actor = 'mallory', hash = :hash WHERE seq = 2", hash=forged)

    report = store.verify_audit()

    assert not report.ok
    assert any(p.startswith("seq 3: prev_hash") for p in report.problems)


def test_deleting_a_middle_row_is_detected(store: Store, raw_sql: RawSql) -> None:
    fill(store, 6)
    raw_sql("DELETE FROM audit WHERE seq = 4")

    report = store.verify_audit()

    assert not report.ok
    assert report.checked == 5
    assert "seq 4 missing (entry deleted)" in report.problems


def test_deleting_the_last_row_is_detected_through_the_head(store: Store, raw_sql: RawSql) -> None:
    fill(store, 6)
    raw_sql("DELETE FROM audit WHERE seq = 6")

    report = store.verify_audit()

    assert not report.ok
    assert report.problems == ["head says seq 6, chain ends at 5 (tail deleted)"]


def test_a_missing_head_row_is_reported_and_further_appends_refused(store: Store, raw_sql: RawSql) -> None:
    fill(store, 2)
    raw_sql("DELETE FROM audit_head")

    assert store.verify_audit().problems == ["audit head row missing"]
    with pytest.raises(AuditChainError):
        store.audit("engine", "tick", "x")


def test_secrets_are_redacted_before_the_row_is_stored(store: Store, raw_sql: RawSql) -> None:
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

    (stored,) = raw_sql("SELECT CAST(data AS TEXT) FROM audit WHERE seq = :seq", seq=ev.seq)
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


def test_two_stores_on_one_database_appending_alternately_and_at_once_keep_one_valid_chain(
        store_url: str) -> None:
    engine_side = Store(store_url)
    cli_side = Store(store_url)
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


WRITER = """
import sys
from autonomic.knowledge import Store
from autonomic.model import FindingKind, Incident, Severity
url, who, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
store = Store(url)
print("ready", flush=True)
sys.stdin.readline()
for i in range(n):
    if i % 2:
        store.audit(who, "burst", who, {"i": i})
    else:
        inc = Incident(service=who, cause="down", severity=Severity.CRITICAL, kind=FindingKind.STATE,
                       opened_at=float(i), updated_at=float(i), last_finding_at=float(i), summary=who)
        store.record(inc, actor=who, event="incident.opened", subject=inc.id)
store.close()
"""


def test_two_processes_writing_at_once_keep_one_audit_chain_that_verifies_throughout(store: Store,
                                                                                        store_url: str) -> None:
    """The engine and ``autonomic approve`` are two processes on one database: appending at once,
    neither forks the chain (each append reads and moves the head under the write lock), and a
    third reader verifying meanwhile always sees a whole chain."""
    n = 40
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, store_url, who, str(n)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for who in ("engine", "person:alice")]
    try:
        for p in procs:  # both have opened the store (and migrated) before either writes
            assert p.stdout is not None and p.stdout.readline().strip() == "ready", p.stderr
        for p in procs:
            assert p.stdin is not None
            p.stdin.write("go\n")
            p.stdin.close()
        reports = []
        while any(p.poll() is None for p in procs):
            reports.append(store.verify_audit())
        for p in procs:
            assert p.wait(timeout=60) == 0, p.stderr.read() if p.stderr else ""
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()

    assert all(r.ok for r in reports), [r.problems for r in reports if not r.ok]
    events = store.audit_events()
    assert [e.seq for e in events] == list(range(1, 2 * n + 1))
    assert all(b.prev_hash == a.hash for a, b in zip(events, events[1:], strict=False))
    assert {who: sum(e.actor == who for e in events) for who in ("engine", "person:alice")} == {
        "engine": n, "person:alice": n}
    assert len(store.incidents()) == n
    final = store.verify_audit()
    assert final.ok and final.checked == 2 * n


def test_a_secret_inside_a_value_that_is_not_plain_json_is_hidden_in_the_audit_log(store: Store,
                                                                                    raw_sql: RawSql) -> None:
    """The secrets net (Store.hide) looks at strings; an exception, bytes, a path or a set in an
    event's data became text only after it, so a secret quoted in one reached the audit log."""
    from autonomic.redact import Secrets

    secret = "hunter2-secret-value"
    store.hide(Secrets([secret]))
    data = {"error": RuntimeError(f"login as admin:{secret} refused"), "stderr": f"pw={secret}".encode(),
            "file": Path(f"/etc/{secret}"), "seen": {f"x {secret}"}}

    ev = store.audit("engine", "action.failed", "a1", data)

    (stored,) = raw_sql("SELECT CAST(data AS TEXT) FROM audit WHERE seq = :seq", seq=ev.seq)
    assert secret not in str(stored[0])
    assert ev.data == {"error": "login as admin:*** refused", "stderr": "pw=***", "file": "/etc/***",
                       "seen": ["x ***"]}
    assert store.verify_audit().ok


def test_bytes_that_are_not_utf8_in_an_events_data_are_stored_escaped_and_the_chain_verifies(
        store: Store) -> None:
    """A plug-in's raw output (bytes, not UTF-8) in an event's data raised UnicodeDecodeError out
    of Store.audit, which no caller expects of the store (it is not a StoreError): the event was
    lost and the caller's step failed. It is kept, each byte that is not UTF-8 written as \\xNN;
    bytes that are UTF-8 read as the text they are, as before."""
    ev = store.audit("engine", "action.applied", "a1", {"out": b"ok \xff\xfe done", "text": "héllo".encode()})

    assert ev.data == {"out": "ok \\xff\\xfe done", "text": "héllo"}
    assert store.audit_events() == [ev]
    assert store.verify_audit().ok
