"""The knowledge store: nouns round-trip, unit-of-work atomicity, queries, state, migrations."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from autonomic.errors import StoreError
from autonomic.knowledge import Store
from autonomic.knowledge.store import Noun
from autonomic.model import (
    Action,
    ActionSpec,
    ActionState,
    Candidate,
    Decision,
    Diagnosis,
    Finding,
    FindingKind,
    GateResult,
    Incident,
    IncidentState,
    Outcome,
    Severity,
    StepRecord,
    Verdict,
    VerifySpec,
    VerifyVerdict,
)


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "autonomic.db"


@pytest.fixture
def store(db_path: Path) -> Iterator[Store]:
    s = Store(f"sqlite:///{db_path}")
    yield s
    s.close()


def incident(**kw: Any) -> Incident:
    base: dict[str, Any] = dict(
        service="api",
        cause="memory",
        severity=Severity.WARNING,
        kind=FindingKind.FORECAST,
        opened_at=100.0,
        updated_at=100.0,
        last_finding_at=100.0,
        summary="memory will pass 90% in 10 min",
    )
    return Incident(**(base | kw))


def finding(incident_id: str | None, ts: float = 100.0, **kw: Any) -> Finding:
    base: dict[str, Any] = dict(
        service="api",
        metric="memory_percent",
        kind=FindingKind.FORECAST,
        cause="memory",
        severity=Severity.WARNING,
        confidence=0.8,
        ts=ts,
        value=71.5,
        threshold=90.0,
        summary="memory rising",
        evidence={"slope": 0.12, "ema": 70.1, "breach": {"at": 700.0, "interval": [650.0, 760.0]}},
        incident_id=incident_id,
    )
    return Finding(**(base | kw))


def action(incident_id: str, created_at: float = 100.0, **kw: Any) -> Action:
    base: dict[str, Any] = dict(
        decision_id="dec-1",
        incident_id=incident_id,
        service="api",
        type="restart",
        params={"grace_s": 5},
        idempotency_key=f"{incident_id}:restart",
        created_at=created_at,
        updated_at=created_at,
    )
    return Action(**(base | kw))


def test_every_noun_round_trips_through_record_and_get(store: Store) -> None:
    inc = incident()
    fnd = finding(inc.id)
    spec = ActionSpec(type="restart", target="api", params={"grace_s": 5})
    dia = Diagnosis(
        incident_id=inc.id,
        ts=101.0,
        candidates=[Candidate(pattern_id="mem-leak", confidence=0.7, reasons=["rss rising", "no deploy"])],
        pattern_id="mem-leak",
        action=spec,
        confidence=0.7,
        rationale="steady growth",
    )
    dec = Decision(
        incident_id=inc.id,
        diagnosis_id=dia.id,
        ts=102.0,
        verdict=Verdict.NEEDS_APPROVAL,
        gates=[
            GateResult(gate="enabled", passed=True, reason="restart enabled"),
            GateResult(gate="autonomy", passed=False, reason="approve level", needs_approval=True),
        ],
        action=spec,
    )
    act = action(
        inc.id,
        decision_id=dec.id,
        state=ActionState.VERIFYING,
        undo={"pid": 4242},
        steps=[StepRecord(name="apply", ok=True, started_at=103.0, finished_at=103.5, detail={"pid": 4243})],
        pattern_id="mem-leak",
        verify=VerifySpec(metric="memory_percent", max=80.0, window_s=30.0),
        applied_at=103.5,
        verify_until=133.5,
    )
    out = Outcome(
        action_id=act.id,
        incident_id=inc.id,
        ts=140.0,
        verdict=VerifyVerdict.PASS,
        reason="memory back under 80%",
        before={"memory_percent": 88.0},
        after={"memory_percent": 41.0},
        duration_s=36.5,
    )
    nouns: list[Noun] = [inc, fnd, dia, dec, act, out]

    ev = store.record(*nouns, actor="engine", event="test.all", subject=inc.id, data={"why": "round trip"})

    for noun in nouns:
        assert store.get(type(noun), noun.id) == noun
    assert ev.seq == 1
    assert ev.data["why"] == "round trip"
    assert ev.data["nouns"] == [
        {"kind": k, "id": n.id}
        for k, n in zip(
            ["incident", "finding", "diagnosis", "decision", "action", "outcome"], nouns, strict=True
        )
    ]
    assert store.get(Incident, "nope") is None


def test_record_upserts_by_id_and_updates_indexed_columns(store: Store) -> None:
    inc = incident()
    store.record(inc, actor="engine", event="incident.opened", subject=inc.id)
    closed = inc.model_copy(update={"state": IncidentState.RESOLVED, "closed_at": 200.0})

    store.record(closed, actor="engine", event="incident.resolved", subject=inc.id)

    assert store.get(Incident, inc.id) == closed
    assert store.incidents() == [closed]
    assert store.open_incident("api", "memory") is None
    assert store.incidents(states=[IncidentState.RESOLVED]) == [closed]


def test_record_is_atomic_when_a_write_fails(store: Store, db_path: Path) -> None:
    raw = sqlite3.connect(db_path)
    raw.execute("CREATE TRIGGER fail_actions BEFORE INSERT ON actions BEGIN SELECT RAISE(ABORT, 'boom'); END")
    raw.commit()
    inc = incident()

    with pytest.raises(StoreError, match="boom"):
        store.record(inc, action(inc.id), actor="engine", event="action.created", subject=inc.id)

    assert store.get(Incident, inc.id) is None
    assert store.audit_events() == []
    raw.execute("DROP TRIGGER fail_actions")
    raw.commit()
    raw.close()
    ev = store.record(inc, actor="engine", event="incident.opened", subject=inc.id)
    assert ev.seq == 1
    assert store.verify_audit().ok


def test_record_rejects_something_that_is_not_a_noun_and_writes_nothing(store: Store) -> None:
    inc = incident()
    with pytest.raises(TypeError, match="not a stored noun"):
        store.record(inc, "junk", actor="engine", event="x", subject="y")  # type: ignore[arg-type]
    assert store.get(Incident, inc.id) is None
    assert store.audit_events() == []


def test_open_incident_returns_only_the_non_terminal_one(store: Store) -> None:
    old = incident(state=IncidentState.RESOLVED, opened_at=10.0)
    cur = incident(state=IncidentState.ACTING, opened_at=50.0)
    other_cause = incident(cause="cpu")
    store.record(old, cur, other_cause, actor="engine", event="seed", subject="api")

    assert store.open_incident("api", "memory") == cur
    assert store.open_incident("api", "disk") is None
    assert store.open_incident("web", "memory") is None
    store.record(
        cur.model_copy(update={"state": IncidentState.EXPIRED}), actor="e", event="x", subject=cur.id
    )
    assert store.open_incident("api", "memory") is None


def test_incidents_filter_by_state_and_service_newest_opened_first(store: Store) -> None:
    a = incident(opened_at=1.0)
    b = incident(service="web", opened_at=3.0, state=IncidentState.ESCALATED)
    c = incident(cause="cpu", opened_at=2.0, state=IncidentState.DIAGNOSED)
    store.record(a, b, c, actor="engine", event="seed", subject="all")

    assert store.incidents() == [b, c, a]
    assert store.incidents(limit=2) == [b, c]
    assert store.incidents(service="api") == [c, a]
    assert store.incidents(states=[IncidentState.OPEN, IncidentState.ESCALATED]) == [b, a]
    assert store.incidents(states=[IncidentState.DIAGNOSED], service="web") == []


def test_resolve_id_expands_a_unique_prefix_and_rejects_none_ambiguous_or_short(store: Store) -> None:
    store.record(
        incident(id="abcd1111"),
        incident(id="abcd2222"),
        incident(id="ffff0000"),
        actor="engine",
        event="seed",
        subject="all",
    )

    assert store.resolve_id(Incident, "ffff") == "ffff0000"
    assert store.resolve_id(Incident, "abcd2") == "abcd2222"
    assert store.resolve_id(Incident, "abcd1111") == "abcd1111"
    with pytest.raises(KeyError, match="ambiguous"):
        store.resolve_id(Incident, "abcd")
    with pytest.raises(KeyError, match="no incident"):
        store.resolve_id(Incident, "9999")
    with pytest.raises(KeyError, match="no incident"):
        store.resolve_id(Incident, "FFFF")  # case matters even though SQLite LIKE does not
    with pytest.raises(KeyError, match="no action"):
        store.resolve_id(Action, "ffff")
    with pytest.raises(KeyError, match="at least 4"):
        store.resolve_id(Incident, "ab")


def test_findings_diagnoses_decisions_and_outcomes_are_per_incident_oldest_first(store: Store) -> None:
    inc, other = incident(), incident(cause="cpu")
    f_late, f_early, f_other = finding(inc.id, ts=20.0), finding(inc.id, ts=10.0), finding(other.id)
    d1 = Diagnosis(incident_id=inc.id, ts=11.0)
    d2 = Diagnosis(incident_id=inc.id, ts=12.0)
    dec_ok = Decision(incident_id=inc.id, diagnosis_id=d1.id, ts=13.0, verdict=Verdict.APPROVED)
    dec_wait = Decision(incident_id=other.id, diagnosis_id="x", ts=14.0, verdict=Verdict.NEEDS_APPROVAL)
    act = action(inc.id)
    out = Outcome(action_id=act.id, incident_id=inc.id, ts=15.0, verdict=VerifyVerdict.FAIL, reason="worse")
    store.record(
        inc,
        other,
        f_late,
        f_early,
        f_other,
        d2,
        d1,
        dec_wait,
        dec_ok,
        act,
        out,
        actor="engine",
        event="seed",
        subject="all",
    )

    assert store.findings(inc.id) == [f_early, f_late]
    assert store.diagnoses(inc.id) == [d1, d2]
    assert store.decisions() == [dec_ok, dec_wait]
    assert store.decisions(incident_id=inc.id) == [dec_ok]
    assert store.decisions(verdicts=[Verdict.NEEDS_APPROVAL]) == [dec_wait]
    assert store.outcomes(incident_id=inc.id) == [out]
    assert store.outcomes(action_id=act.id) == [out]
    assert store.outcomes(action_id="other") == []


def test_findings_with_equal_timestamps_keep_insertion_order(store: Store) -> None:
    inc = incident()
    first, second = finding(inc.id, id="zzzz"), finding(inc.id, id="aaaa")
    store.record(first, actor="engine", event="finding", subject=inc.id)
    store.record(second, actor="engine", event="finding", subject=inc.id)
    assert store.findings(inc.id) == [first, second]


def test_actions_filter_by_incident_state_and_service_oldest_created_first(store: Store) -> None:
    a1 = action("i1", created_at=30.0, state=ActionState.RUNNING)
    a2 = action("i1", created_at=10.0, state=ActionState.SUCCEEDED, service="web")
    a3 = action("i2", created_at=20.0)
    store.record(a1, a2, a3, actor="engine", event="seed", subject="all")

    assert store.actions() == [a2, a3, a1]
    assert store.actions(incident_id="i1") == [a2, a1]
    assert store.actions(states=[ActionState.PENDING, ActionState.RUNNING]) == [a3, a1]
    assert store.actions(service="web") == [a2]
    assert store.actions(incident_id="i2", service="web") == []


def test_count_actions_windows_by_time_type_and_service_and_excludes_cancelled(store: Store) -> None:
    store.record(
        action("i1", created_at=100.0),
        action("i2", created_at=200.0, type="scale"),
        action("i3", created_at=300.0, service="web"),
        action("i4", created_at=400.0, state=ActionState.CANCELLED),
        action("i5", created_at=500.0, state=ActionState.FAILED),
        actor="engine",
        event="seed",
        subject="all",
    )

    assert store.count_actions(0.0) == 4
    assert store.count_actions(200.0) == 3
    assert store.count_actions(500.0) == 1
    assert store.count_actions(501.0) == 0
    assert store.count_actions(0.0, type="restart") == 3
    assert store.count_actions(0.0, type="scale") == 1
    assert store.count_actions(0.0, service="web") == 1
    assert store.count_actions(150.0, type="restart", service="api") == 1


def test_state_is_set_read_listed_by_prefix_deleted_and_every_change_audited(store: Store) -> None:
    ev = store.set_state(
        "pause:api",
        {"until": 900.0, "by": "ops"},
        actor="alice",
        event="pause.set",
        data={"reason": "deploy"},
    )
    store.set_state("pause:web", {"until": 950.0}, actor="alice", event="pause.set")
    store.set_state("pausefoo", {"x": 1}, actor="alice", event="other.set")
    store.set_state("breaker:restart", {"open": True}, actor="engine", event="breaker.opened")
    store.set_state("pause:api", {"until": 999.0}, actor="bob", event="pause.set")

    assert ev.subject == "pause:api"
    assert ev.data == {"reason": "deploy", "value": {"until": 900.0, "by": "ops"}}
    assert store.get_state("pause:api") == {"until": 999.0}
    assert store.states("pause:") == {"pause:api": {"until": 999.0}, "pause:web": {"until": 950.0}}
    assert store.states("pause_") == {}  # '_' is not a wildcard

    cleared = store.set_state("pause:api", None, actor="bob", event="pause.cleared")

    assert store.get_state("pause:api") is None
    assert cleared.data == {"value": None}
    assert [e.kind for e in store.audit_events(subject="pause:api")] == [
        "pause.set",
        "pause.set",
        "pause.cleared",
    ]
    with pytest.raises(TypeError, match="must be a dict"):
        store.set_state("k", [1, 2], actor="a", event="e")  # type: ignore[arg-type]


def test_audit_events_filter_by_seq_limit_and_subject(store: Store) -> None:
    for i in range(5):
        store.audit("engine", "tick", "a" if i % 2 == 0 else "b", {"i": i})

    assert [e.seq for e in store.audit_events()] == [1, 2, 3, 4, 5]
    assert [e.seq for e in store.audit_events(since_seq=2)] == [3, 4, 5]
    assert [e.seq for e in store.audit_events(since_seq=1, limit=2)] == [2, 3]
    assert [e.seq for e in store.audit_events(subject="b")] == [2, 4]


def test_migrations_run_again_on_reopen_and_the_file_is_in_wal_mode(db_path: Path) -> None:
    first = Store(f"sqlite:///{db_path}")
    inc = incident()
    first.record(inc, actor="engine", event="incident.opened", subject=inc.id)
    first.close()

    for _ in range(2):
        again = Store(f"sqlite:///{db_path}")
        assert again.get(Incident, inc.id) == inc
        assert again.verify_audit().ok
        again.close()

    raw = sqlite3.connect(db_path)
    try:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert raw.execute("SELECT version_num FROM alembic_version").fetchall() == [("0001",)]
        assert raw.execute("SELECT id, seq FROM audit_head").fetchall() == [(1, 1)]
    finally:
        raw.close()


def test_store_creates_the_parent_directory_of_a_sqlite_file(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "er" / "autonomic.db"
    s = Store(f"sqlite:///{path}")
    s.audit("engine", "engine.started", "engine")
    s.close()
    assert path.exists()


@pytest.mark.parametrize("kind", ["memory", "file"])
def test_one_store_is_usable_from_several_threads(kind: str, db_path: Path) -> None:
    s = Store("sqlite://" if kind == "memory" else f"sqlite:///{db_path}")
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            for i in range(10):
                inc = incident(service=f"svc{n}", opened_at=float(i))
                s.record(inc, actor=f"t{n}", event="incident.opened", subject=inc.id)
                assert s.get(Incident, inc.id) == inc
                s.incidents(service=f"svc{n}")
        except BaseException as e:  # collected and re-raised in the main thread
            errors.append(e)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=20)

    assert errors == []
    assert len(s.incidents()) == 40
    report = s.verify_audit()
    assert report.ok and report.checked == 40
    s.close()


def test_a_unit_commits_several_writes_at_once_and_reads_its_own_writes(store: Store, db_path: Path) -> None:
    heard: list[tuple[Any, ...]] = []
    store.on_record(heard.append)
    inc = incident()
    with store.unit():
        store.record(inc, actor="engine", event="incident.opened", subject=inc.id)
        seen_inside = store.get(Incident, inc.id)
        with store.reading():
            assert store.get(Incident, inc.id) == inc  # a read snapshot inside a unit sees the unit
        other = sqlite3.connect(db_path)
        try:
            assert other.execute("select count(*) from incidents").fetchone()[0] == 0  # not committed yet
        finally:
            other.close()
        assert heard == []  # listeners hear after the commit
        store.set_state("k", {"v": 1}, actor="engine", event="state.set")
        store.record(inc.model_copy(update={"state": IncidentState.DIAGNOSED}), actor="engine",
                     event="incident.diagnosed", subject=inc.id)
    assert seen_inside == inc
    assert store.get(Incident, inc.id).state == IncidentState.DIAGNOSED  # type: ignore[union-attr]
    assert store.get_state("k") == {"v": 1}
    assert [len(h) for h in heard] == [1, 1]
    kinds = [e.kind for e in store.audit_events()]
    assert kinds[-3:] == ["incident.opened", "state.set", "incident.diagnosed"]
    assert store.verify_audit().ok


def test_a_unit_that_fails_writes_nothing_and_tells_no_listener(store: Store) -> None:
    heard: list[tuple[Any, ...]] = []
    store.on_record(heard.append)
    before = len(store.audit_events())
    inc = incident()
    with pytest.raises(RuntimeError), store.unit():
        store.record(inc, actor="engine", event="incident.opened", subject=inc.id)
        raise RuntimeError("the step failed half-way")
    assert store.get(Incident, inc.id) is None
    assert len(store.audit_events()) == before and heard == []
    assert store.verify_audit().ok
