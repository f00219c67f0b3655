"""Retention: what is pruned, what never is, the pattern record kept exact, and the audit chain
archived first and verified from its anchor. Real SQLite files and a real PostgreSQL server."""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from autonomic.errors import AuditChainError, ConfigError
from autonomic.knowledge import Store
from autonomic.knowledge.archive import CHUNK, archive_files, read_archive, verify_archive
from autonomic.knowledge.retention import DAY_S, RetentionSpec, dry_run, prune
from autonomic.knowledge.store import IdLookupError
from autonomic.model import (
    TROUBLE_CLEARED,
    Action,
    ActionSpec,
    ActionState,
    Autonomy,
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
from autonomic.plan.autonomy import Evidence, earned_level, people_evidence
from autonomic.plan.policy import AutonomyLadder

NOW = 1_800_000_000.0  # the engine's clock in these tests
KEEP = RetentionSpec(findings_days=30, incidents_days=90, audit_days=None)
OLD = NOW - 200 * DAY_S  # older than every cut-off above
RECENT = NOW - 2 * DAY_S


@pytest.fixture
def store(store_url: str) -> Any:
    s = Store(store_url)
    yield s
    s.close()


def _finding(incident_id: str, ts: float, service: str = "api") -> Finding:
    return Finding(service=service, metric="up", kind=FindingKind.THRESHOLD, cause="down",
                   severity=Severity.CRITICAL, confidence=1.0, ts=ts, value=0.0, threshold=1.0,
                   summary="down", incident_id=incident_id)


def _incident_with_history(store: Store, *, opened: float, closed: float | None, service: str = "api",
                           pattern: str = "restart-it", action_state: ActionState = ActionState.SUCCEEDED,
                           verdict: VerifyVerdict | None = VerifyVerdict.PASS, rolled_back: bool = False,
                           by: str = "engine", said: Verdict = Verdict.APPROVED,
                           action_created: float | None = None) -> Incident:
    """One incident with a finding, a diagnosis, a decision, an action and (with ``verdict``) an
    outcome, written as the engine writes them."""
    state = IncidentState.RESOLVED if closed is not None else IncidentState.VERIFYING
    inc = Incident(service=service, cause="down", severity=Severity.CRITICAL, kind=FindingKind.THRESHOLD,
                   opened_at=opened, updated_at=closed or opened, last_finding_at=opened, summary="down",
                   state=state, closed_at=closed, finding_count=1)
    spec = ActionSpec(type="restart", target=service)
    diagnosis = Diagnosis(incident_id=inc.id, ts=opened + 1, pattern_id=pattern, action=spec, confidence=0.9,
                          rationale="down")
    gates = [] if by != "engine" and said == Verdict.DENIED else [GateResult(gate="enabled", passed=True,
                                                                            reason="on")]
    decision = Decision(incident_id=inc.id, diagnosis_id=diagnosis.id, ts=opened + 2, verdict=said, gates=gates,
                        action=spec, decided_by=by, pattern_id=pattern)
    created = opened + 3 if action_created is None else action_created
    act = Action(decision_id=decision.id, incident_id=inc.id, service=service, type="restart",
                 idempotency_key=f"{inc.id}:restart", state=action_state, pattern_id=pattern,
                 created_at=created, updated_at=created + 1)
    nouns: list[Any] = [_finding(inc.id, opened), inc, diagnosis, decision, act]
    if verdict is not None:
        nouns.append(Outcome(action_id=act.id, incident_id=inc.id, ts=created + 2, verdict=verdict, reason="r",
                             rolled_back=rolled_back))
    store.record(*nouns, actor="engine", event="incident.opened", subject=inc.id)
    return inc


def _everything_of(store: Store, inc: Incident) -> tuple[Any, ...]:
    return (store.get(Incident, inc.id), store.findings(inc.id), store.diagnoses(inc.id), store.decisions(inc.id),
            store.actions(incident_id=inc.id), store.outcomes(incident_id=inc.id))


def test_a_closed_incident_past_its_retention_goes_with_everything_hanging_off_it(store: Store) -> None:
    old = _incident_with_history(store, opened=OLD, closed=OLD + 60)
    result = prune(store, KEEP, NOW, Path("unused"))
    assert _everything_of(store, old) == (None, [], [], [], [], [])
    assert {k: v for k, v in result.counts.items() if v} == {
        "incidents": 1, "findings": 1, "diagnoses": 1, "decisions": 1, "actions": 1, "outcomes": 1}
    pruned = [e for e in store.audit_events() if e.kind == "retention.pruned"]
    assert [e.data["counts"]["incidents"] for e in pruned] == [1]
    assert pruned[0].data["closed_before"] == NOW - 90 * DAY_S
    assert store.verify_audit().ok


def test_open_acting_recent_or_recently_acted_on_incidents_are_never_pruned(store: Store) -> None:
    still_open = _incident_with_history(store, opened=OLD, closed=None, verdict=None,
                                        action_state=ActionState.VERIFYING)
    live_action = _incident_with_history(store, opened=OLD, closed=OLD + 60, verdict=None,
                                         action_state=ActionState.RUNNING)  # closed, but its action is not done
    recent = _incident_with_history(store, opened=RECENT, closed=RECENT + 60)
    acted_lately = _incident_with_history(store, opened=OLD, closed=OLD + 60, action_created=RECENT)
    incidents = (still_open, live_action, recent, acted_lately)
    kept = [_everything_of(store, i) for i in incidents]

    result = prune(store, KEEP.model_copy(update={"findings_days": None}), NOW, Path("unused"))

    assert result.total == 0 and [_everything_of(store, i) for i in incidents] == kept


def test_old_findings_of_a_kept_incident_go_and_explain_says_so(store: Store) -> None:
    from autonomic.oversight.explain import explain_incident, render_text

    inc = _incident_with_history(store, opened=NOW - 60 * DAY_S, closed=NOW - 50 * DAY_S)  # kept 90 days
    also = _finding(inc.id, NOW - 51 * DAY_S)
    store.record(also, actor="engine", event="incident.updated", subject=inc.id)
    open_one = _incident_with_history(store, opened=NOW - 60 * DAY_S, closed=None, verdict=None,
                                      action_state=ActionState.VERIFYING)

    result = prune(store, KEEP, NOW, Path("unused"))

    assert result.counts["findings"] == 2 and store.findings(inc.id) == []
    assert len(store.findings(open_one.id)) == 1  # an open incident keeps its evidence, however old
    assert store.get(Incident, inc.id) is not None and len(store.actions(incident_id=inc.id)) == 1
    text = render_text(explain_incident(store, inc.id))
    assert "its findings from before" in text and "were pruned by retention" in text


def test_explain_says_findings_were_pruned_only_of_an_incident_whose_findings_were(store: Store) -> None:
    """A repeating finding is stored only now and then (its incident's count stays exact), so an
    incident holds fewer stored findings than its count without any pruned. Once retention had
    pruned any findings, explain said of every such incident 'N findings from before ... were
    pruned by retention', N its count less what is stored, retention never having touched it."""
    from autonomic.oversight.explain import explain_incident, render_text

    kept = _incident_with_history(store, opened=NOW - 60 * DAY_S, closed=NOW - 50 * DAY_S)  # its findings go
    recent = _incident_with_history(store, opened=RECENT, closed=RECENT + 60)
    counted = store.get(Incident, recent.id).model_copy(update={"finding_count": 40})  # type: ignore[union-attr]
    store.record(counted, actor="engine", event="incident.updated", subject=recent.id)
    assert prune(store, KEEP, NOW, Path("unused")).counts["findings"] == 1 and store.findings(kept.id) == []

    text = render_text(explain_incident(store, recent.id))
    assert "40 findings" in text and "pruned" not in text
    assert len(store.findings(recent.id)) == 1


def test_a_pruned_incident_is_named_as_pruned_when_looked_up(store: Store) -> None:
    old = _incident_with_history(store, opened=OLD, closed=OLD + 60)
    with pytest.raises(IdLookupError) as before:
        store.resolve_id(Incident, "zzzz")
    assert "retention" not in str(before.value)
    prune(store, KEEP, NOW, Path("unused"))
    with pytest.raises(IdLookupError, match="retention pruned closed incidents before"):
        store.resolve_id(Incident, old.id[:8])


def test_a_page_after_an_incident_pruned_since_the_last_page_says_retention_pruned_it(store: Store) -> None:
    """Paging the incident list (``before`` = the last id listed) while retention prunes that one:
    the refusal says why the id is gone, as a lookup of it does (it said only 'no incident')."""
    old = _incident_with_history(store, opened=OLD, closed=OLD + 60)
    assert store.incidents(before=old.id) == []
    prune(store, KEEP, NOW, Path("unused"))
    with pytest.raises(IdLookupError, match="retention pruned closed incidents before"):
        store.incidents(before=old.id)


def _ladder_record(store: Store, pattern: str, service: str) -> list[tuple[float, str, bool, float]]:
    """The record the engine's _earned builds (outcomes, then people's answers, by time), each
    with when it was acted on (what a changed pattern's record is cut at: an outcome's action's
    creation, an answer's own time)."""
    outcomes, answers = store.pattern_record(pattern, service)
    record = [(ts, v, r, acted) for ts, v, r, acted in outcomes]
    record += [(e.ts, e.verdict, e.rolled_back, e.ts) for e in people_evidence(answers, pattern, service)]
    return sorted(record, key=lambda item: item[0])


def test_pruning_changes_no_patterns_tallies_record_or_earned_autonomy(store: Store) -> None:
    """What the diagnosis (tallies) and the autonomy ladder (the record in order, each item with
    when it was acted on) read is the same after a prune as before, for every pattern and
    service, whatever was pruned."""
    shapes = [  # (action state, verdict, rolled back, decided by, verdict given)
        (ActionState.SUCCEEDED, VerifyVerdict.PASS, False, "engine", Verdict.APPROVED),
        (ActionState.SUCCEEDED, VerifyVerdict.PASS, False, "alice", Verdict.APPROVED),
        (ActionState.ROLLED_BACK, VerifyVerdict.FAIL, True, "engine", Verdict.APPROVED),
        (ActionState.FAILED, VerifyVerdict.FAIL, False, "engine", Verdict.APPROVED),
        (ActionState.ESCALATED, VerifyVerdict.FAIL, False, "engine", Verdict.APPROVED),
        (ActionState.ESCALATED, VerifyVerdict.INCONCLUSIVE, False, "engine", Verdict.APPROVED),
        (ActionState.CANCELLED, None, False, "bob", Verdict.DENIED),
        (ActionState.SUCCEEDED, VerifyVerdict.PASS, False, "engine", Verdict.APPROVED),
    ]
    for i in range(48):
        state, verdict, rolled, by, said = shapes[i % len(shapes)]
        # old incidents (pruned) and recent ones (kept) interleave in time: some kept ones
        # opened long ago and closed lately
        opened = OLD + i * 3600 if i % 3 else NOW - 150 * DAY_S + i * 3600
        closed = opened + 600 if i % 3 else RECENT
        _incident_with_history(store, opened=opened, closed=closed, service=("api", "db")[i % 2],
                               pattern=("restart-it", "scale-it")[i // 24], action_state=state, verdict=verdict,
                               rolled_back=rolled, by=by, said=said)
    pairs = [(p, s) for p in ("restart-it", "scale-it") for s in ("api", "db")]
    ladder = AutonomyLadder(promote_after=2, window=6, min_success_rate=0.5, demote_failures=2, demote_window=3,
                            max_level=Autonomy.AUTO)
    before_tallies = store.pattern_tallies_by_service()
    before = {pair: _ladder_record(store, *pair) for pair in pairs}

    result = prune(store, KEEP, NOW, Path("unused"))

    assert result.counts["incidents"] == 32 and len(store.incidents(limit=None)) == 16
    assert store.pattern_tallies_by_service() == before_tallies
    assert {pair: _ladder_record(store, *pair) for pair in pairs} == before
    for pair in pairs:
        assert (earned_level([Evidence(*r[:3]) for r in before[pair]], Autonomy.SUGGEST, ladder)
                == earned_level([Evidence(*r[:3]) for r in _ladder_record(store, *pair)], Autonomy.SUGGEST, ladder))
    # and again (nothing more to prune): nothing is counted twice
    prune(store, KEEP, NOW + 1, Path("unused"))
    assert store.pattern_tallies_by_service() == before_tallies
    assert {pair: _ladder_record(store, *pair) for pair in pairs} == before


def test_pruning_an_approval_never_acted_on_adds_nothing_to_the_ladders_record(store: Store) -> None:
    """A person's approval the engine did not act on, the trouble having cleared first, counts
    neither way on the ladder; pruning its incident must not turn it into a person's yes in the
    kept evidence (it was copied as 'pass', the check being only 'not a denial')."""
    inc = Incident(service="api", cause="down", severity=Severity.CRITICAL, kind=FindingKind.THRESHOLD,
                   opened_at=OLD, updated_at=OLD + 60, last_finding_at=OLD, summary="down",
                   state=IncidentState.EXPIRED, closed_at=OLD + 60, finding_count=1)
    spec = ActionSpec(type="restart", target="api")
    diagnosis = Diagnosis(incident_id=inc.id, ts=OLD + 1, pattern_id="restart-it", action=spec, confidence=0.9,
                          rationale="down")
    never = Decision(incident_id=inc.id, diagnosis_id=diagnosis.id, ts=OLD + 50, verdict=Verdict.DENIED,
                     gates=[GateResult(gate=TROUBLE_CLEARED, passed=False, reason="cleared")], action=spec,
                     decided_by="person:ana", pattern_id="restart-it")
    store.record(_finding(inc.id, OLD), inc, diagnosis, never, actor="engine", event="incident.cleared",
                 subject=inc.id)
    _incident_with_history(store, opened=OLD + 100, closed=OLD + 200)  # a run of the remedy beside it
    before = _ladder_record(store, "restart-it", "api")
    assert [v for _, v, _, _ in before] == ["pass"]  # the run's outcome alone

    assert prune(store, KEEP, NOW, Path("unused")).counts["decisions"] == 2

    assert _ladder_record(store, "restart-it", "api") == before


def test_a_dry_run_counts_what_a_prune_deletes_and_deletes_nothing(store: Store) -> None:
    for i in range(3):
        _incident_with_history(store, opened=OLD + i, closed=OLD + 60)
    kept = _incident_with_history(store, opened=NOW - 60 * DAY_S, closed=NOW - 50 * DAY_S)  # its finding goes
    seq = store.audit_events(newest=True, limit=1)[0].seq

    counted = dry_run(store, KEEP, NOW)

    assert store.audit_events(newest=True, limit=1)[0].seq == seq and len(store.incidents(limit=None)) == 4
    done = prune(store, KEEP, NOW, Path("unused"))
    assert counted.counts == {**done.counts, "audit_events": 0}
    assert counted.counts["findings"] == 4 and store.get(Incident, kept.id) is not None


def test_batches_are_bounded_and_a_caller_may_stop_and_go_on(store: Store) -> None:
    for i in range(7):
        _incident_with_history(store, opened=OLD + i, closed=OLD + 60)
    spec = KEEP.model_copy(update={"batch": 3})
    first = prune(store, spec, NOW, Path("unused"), max_transactions=2)
    assert not first.finished and first.counts["incidents"] == 6 and first.transactions == 2
    rest = prune(store, spec, NOW, Path("unused"))
    assert rest.finished and rest.counts["incidents"] == 1 and store.incidents(limit=None) == []
    assert [e.data["counts"]["incidents"] for e in store.audit_events() if e.kind == "retention.pruned"] == [3, 3, 1]


# --- the audit log ---------------------------------------------------------------------------

AUDIT = RetentionSpec(findings_days=None, incidents_days=None, audit_days=30)
LATER = time.time() + 60 * DAY_S  # the wall clock two months on: every entry written now is old


def _fill_audit(store: Store, n: int) -> None:
    with store.unit():
        for i in range(n):
            store.audit("alice", "pause.set", f"svc-{i}", {"reason": "maintenance", "i": i})


def test_the_oldest_audit_entries_are_archived_then_pruned_and_both_parts_verify(store: Store,
                                                                                 tmp_path: Path) -> None:
    _fill_audit(store, 2 * CHUNK + 500)
    head = store.audit_events(newest=True, limit=1)[0]
    archive = tmp_path / "archive"

    result = prune(store, AUDIT, NOW, archive, wall_now=LATER)

    assert result.counts["audit_events"] == 2 * CHUNK
    assert [p.name for p in archive_files(archive)] == ["audit-000000000001-000000001000.jsonl.gz",
                                                        "audit-000000001001-000000002000.jsonl.gz"]
    report = store.verify_audit()
    assert report.ok, report.problems
    assert (report.anchor_seq, report.last_seq) == (2 * CHUNK, head.seq + 2)  # two retention.audit_pruned
    assert "verified from the retention anchor: seq 1..2000 were pruned" in report.summary()
    kept = verify_archive(archive)
    assert kept.ok and kept.checked == 2 * CHUNK
    assert (kept.last_seq, kept.last_hash) == (report.anchor_seq, report.anchor_hash)  # the two join
    assert store.audit_events(limit=1)[0].seq == 2 * CHUNK + 1
    events = [e for e in store.audit_events() if e.kind == "retention.audit_pruned"]
    assert [(e.data["first_seq"], e.data["last_seq"]) for e in events] == [(1, CHUNK), (CHUNK + 1, 2 * CHUNK)]
    assert read_archive(archive_files(archive)[0])[0].data == {"reason": "maintenance", "i": 0}


@pytest.mark.parametrize("extra", [0, 1, CHUNK - 1, CHUNK, CHUNK + 1])
def test_a_dry_run_counts_the_audit_entries_a_prune_archives_when_every_entry_is_old(
        store: Store, tmp_path: Path, extra: int) -> None:
    """Each chunk pruned appends its own (recent) entry, which lets the last old chunk go too:
    with exactly two chunks of old entries, both are pruned, and the dry run says so."""
    _fill_audit(store, CHUNK + extra)
    counted = dry_run(store, AUDIT, NOW, wall_now=LATER)
    done = prune(store, AUDIT, NOW, tmp_path, wall_now=LATER)
    assert counted.counts["audit_events"] == done.counts["audit_events"]
    assert done.counts["audit_events"] == (0 if extra == 0 else CHUNK if extra < CHUNK else 2 * CHUNK)


def test_the_audit_chunk_with_the_head_or_a_recent_entry_stays(store: Store, tmp_path: Path) -> None:
    _fill_audit(store, CHUNK)  # exactly one chunk: its last entry is the head
    assert prune(store, AUDIT, NOW, tmp_path, wall_now=LATER).counts["audit_events"] == 0
    assert prune(store, AUDIT, NOW, tmp_path).counts["audit_events"] == 0  # all recent by the wall clock
    assert archive_files(tmp_path) == [] and store.audit_anchor()[0] == 0


def test_a_tampered_audit_chunk_is_neither_archived_nor_pruned(store: Store, store_url: str, raw_sql: Any,
                                                               tmp_path: Path) -> None:
    _fill_audit(store, CHUNK + 10)
    raw_sql("UPDATE audit SET actor = 'mallory' WHERE seq = 7")
    with pytest.raises(AuditChainError, match="seq 7: hash mismatch"):
        prune(store, AUDIT, NOW, tmp_path, wall_now=LATER)
    assert archive_files(tmp_path) == [] and len(store.audit_events()) == CHUNK + 10


_CRASH = """
import os, sys
from pathlib import Path
from autonomic.knowledge import Store
from autonomic.knowledge.retention import RetentionSpec, prune

def crash(*args, **kwargs):
    os._exit(9)  # killed between the archive file and the delete

Store.prune_audit = crash
prune(Store(sys.argv[1]), RetentionSpec(findings_days=None, incidents_days=None, audit_days=30), 0.0,
      Path(sys.argv[2]), wall_now=float(sys.argv[3]))
"""


def test_a_prune_killed_between_archive_and_delete_loses_nothing_and_archives_the_chunk_once(
        store: Store, store_url: str, tmp_path: Path) -> None:
    _fill_audit(store, CHUNK + 10)
    archive = tmp_path / "archive"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    crashed = subprocess.run([sys.executable, "-c", _CRASH, store_url, str(archive), str(LATER)], env=env,
                             capture_output=True, text=True, timeout=120)
    assert crashed.returncode == 9, crashed.stderr
    (orphan,) = archive_files(archive)
    orphan_bytes = orphan.read_bytes()
    assert len(store.audit_events()) == CHUNK + 10 and store.audit_anchor()[0] == 0  # nothing deleted
    assert store.verify_audit().ok

    result = prune(store, AUDIT, NOW, archive, wall_now=LATER)  # the next prune, after the restart

    assert result.counts["audit_events"] == CHUNK
    assert archive_files(archive) == [orphan] and orphan.read_bytes() == orphan_bytes  # the same file, once
    assert [p.name for p in archive.iterdir()] == [orphan.name]  # no temporary file left either
    report = store.verify_audit()
    assert report.ok and report.anchor_seq == CHUNK
    kept = verify_archive(archive)
    assert kept.ok and (kept.last_seq, kept.last_hash) == (report.anchor_seq, report.anchor_hash)


def test_an_archive_file_edited_or_missing_is_reported(store: Store, tmp_path: Path) -> None:
    _fill_audit(store, 2 * CHUNK + 1)
    prune(store, AUDIT, NOW, tmp_path, wall_now=LATER)
    first, second = archive_files(tmp_path)
    lines = gzip.decompress(second.read_bytes()).decode().splitlines()
    lines[3] = lines[3].replace("maintenance", "nothing to see")
    second.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))
    assert verify_archive(tmp_path).problems == [f"{second.name}: seq {CHUNK + 4}: hash mismatch (entry edited)"]
    first.unlink()
    assert f"{second.name}: seq 1..{CHUNK} missing (entries deleted)" in verify_archive(tmp_path).problems


def test_an_archive_file_holding_other_events_is_neither_overwritten_nor_pruned_over(tmp_path: Path) -> None:
    """A store restored from a backup taken before a prune writes new events under the seqs the
    archive already holds (another history). The next prune rewrote that archive file with them,
    so the archived events, the only record left of what happened, were gone without a word. It is
    refused now, naming the file; the file and the store are left as they were. Real SQLite files:
    the backup is SQLite's own (``.backup``)."""
    import sqlite3

    db, backup, archive = tmp_path / "autonomic.db", tmp_path / "before.db", tmp_path / "archive"
    store = Store(f"sqlite:///{db}")
    _fill_audit(store, 10)
    live, copy = sqlite3.connect(db), sqlite3.connect(backup)
    live.backup(copy)
    live.close()
    copy.close()
    _fill_audit(store, CHUNK + 10)
    prune(store, AUDIT, NOW, archive, wall_now=LATER)
    store.close()
    (archived,) = archive_files(archive)
    before = archived.read_bytes()
    for leftover in (tmp_path / "autonomic.db-wal", tmp_path / "autonomic.db-shm"):
        leftover.unlink(missing_ok=True)
    backup.replace(db)  # the restore, the engine stopped
    restored = Store(f"sqlite:///{db}")
    with restored.unit():
        for i in range(CHUNK + 10):
            restored.audit("bob", "pause.lifted", f"svc-{i}", {"i": i})

    with pytest.raises(AuditChainError, match=f"{archived.name}.*other events"):
        prune(restored, AUDIT, NOW, archive, wall_now=LATER)

    assert archived.read_bytes() == before and [p.name for p in archive.iterdir()] == [archived.name]
    assert restored.audit_anchor()[0] == 0 and len(restored.audit_events()) == CHUNK + 20
    restored.close()


def test_a_chunks_file_an_older_version_wrote_with_the_same_events_in_other_bytes_is_taken_as_it(
        store: Store, tmp_path: Path) -> None:
    """A prune killed between the file and the delete, then an upgrade: the new version writes the
    chunk again, maybe in other bytes (another compression, another key order) for the same
    events. Those are the events it holds (the same seqs and hashes), so the prune goes on."""
    import json

    _fill_audit(store, CHUNK + 10)
    archive = tmp_path / "archive"
    archive.mkdir()
    chunk = store.audit_events(limit=CHUNK)
    lines = "".join(json.dumps(e.model_dump(mode="json"), indent=None) + "\n" for e in chunk)
    (archive / "audit-000000000001-000000001000.jsonl.gz").write_bytes(gzip.compress(lines.encode(), 1))

    assert prune(store, AUDIT, NOW, archive, wall_now=LATER).counts["audit_events"] == CHUNK
    assert store.verify_audit().ok and verify_archive(archive).ok


def test_an_unreadable_file_where_a_chunk_is_archived_is_left_alone_and_named(store: Store, tmp_path: Path) -> None:
    """A file at a chunk's name that is not gzip (a copy cut short, bytes flipped on the disk) is
    not written over either: what it held may be all there is of those entries."""
    _fill_audit(store, CHUNK + 10)
    archive = tmp_path / "archive"
    archive.mkdir()
    garbled = archive / "audit-000000000001-000000001000.jsonl.gz"
    garbled.write_bytes(b"not gzip at all")

    with pytest.raises(AuditChainError, match=f"{garbled.name} cannot be read"):
        prune(store, AUDIT, NOW, archive, wall_now=LATER)

    assert garbled.read_bytes() == b"not gzip at all" and store.audit_anchor()[0] == 0


def test_an_archive_folder_made_for_the_first_chunk_is_made_durable_in_its_parent_too(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The file and its folder were fsynced, but not the folder's own entry in its parent when the
    first prune made it (``archive_dir`` did not exist yet): a power cut then could lose the
    whole folder after the store deleted the entries in it. Which directories are fsynced is
    read from the real calls (the path of each descriptor, from /proc)."""
    from autonomic.knowledge import archive as archive_module
    from autonomic.knowledge.audit import GENESIS_HASH, make_event

    synced: list[str] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr(archive_module.os, "fsync", fsync)
    folder = tmp_path / "state" / "audit-archive"
    event = make_event(seq=1, ts=1.0, actor="engine", kind="tick", subject="s", data={}, prev_hash=GENESIS_HASH)

    path = archive_module.write_archive(folder, [event])

    assert path.exists() and set(synced) >= {str(folder), str(tmp_path / "state"), str(tmp_path)}


_FULL_DISK = """
import resource, signal, sys
from pathlib import Path
from autonomic.knowledge.archive import write_archive
from autonomic.knowledge.audit import GENESIS_HASH, make_event

events, prev = [], GENESIS_HASH
for seq in range(1, 1001):
    events.append(make_event(seq=seq, ts=float(seq), actor="engine", kind="tick", subject=f"s{seq}",
                             data={"noise": __import__("os").urandom(64).hex()}, prev_hash=prev))
    prev = events[-1].hash
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (4096, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
try:
    write_archive(Path(sys.argv[1]), events)
except OSError as exc:
    print(exc.errno)
"""


def test_an_archive_write_that_fails_for_want_of_space_leaves_no_temporary_file(tmp_path: Path) -> None:
    """A file that cannot grow (the disk full; a real process whose file size limit is 4 KiB, so
    the write fails with EFBIG as it would with ENOSPC) fails the archive write, and the part of
    the temporary file written before is removed: it kept the space on a disk already full, and
    each restart (another pid) left one more."""
    archive = tmp_path / "archive"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run([sys.executable, "-c", _FULL_DISK, str(archive)], env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(__import__("errno").EFBIG)
    assert list(archive.iterdir()) == []


# --- configuration ---------------------------------------------------------------------------


def _load(data: dict[str, Any], tmp_path: Path) -> Any:
    from autonomic.config import load_config_data

    return load_config_data(data, source="autonomic.yaml", base_dir=tmp_path)


def test_retention_shorter_than_what_the_engine_reads_is_refused_naming_the_field(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        _load({"retention": {"incidents_days": 3, "audit_days": 2, "findings_days": 0.5}}, tmp_path)
    fields = {p.field: p.message for p in caught.value.problems}
    assert set(fields) == {"retention.incidents_days", "retention.audit_days", "retention.findings_days"}
    assert "3 days is shorter than the 7 days the engine still reads" in fields["retention.incidents_days"]
    assert "weekly report" in fields["retention.audit_days"]
    with pytest.raises(ConfigError, match="policy.breaker.open_s"):
        _load({"retention": {"incidents_days": 10}, "policy": {"breaker": {"open_s": 20 * DAY_S}}}, tmp_path)


def test_retention_shorter_than_a_patterns_after_actions_window_is_refused(tmp_path: Path) -> None:
    pattern = tmp_path / "loop.yaml"
    pattern.write_text("""
id: slow-crash-loop
version: 1
match: {cause: down, kind: state, after_actions: {patterns: [process-down-restart], count: 3, within_s: 2592000}}
prior_confidence: 0.9
""")
    with pytest.raises(ConfigError, match="pattern slow-crash-loop counts actions of the last 30 days"):
        _load({"patterns": [str(pattern)], "retention": {"incidents_days": 10}}, tmp_path)
    assert _load({"patterns": [str(pattern)], "retention": {"incidents_days": 30}}, tmp_path)


def test_null_or_zero_keeps_a_kind_of_history_for_ever(store: Store, tmp_path: Path) -> None:
    cfg = _load({"retention": {"incidents_days": None, "findings_days": 0, "audit_days": None}}, tmp_path)
    old = _incident_with_history(store, opened=OLD - 3000 * DAY_S, closed=OLD)
    _fill_audit(store, CHUNK + 1)
    result = prune(store, cfg.spec.retention, NOW, tmp_path, wall_now=LATER + 3000 * DAY_S)
    assert result.total == 0 and len(store.findings(old.id)) == 1 and archive_files(tmp_path) == []
    assert RetentionSpec().model_dump() == {"findings_days": 30.0, "incidents_days": 90.0, "audit_days": 365.0,
                                            "interval_s": 3600.0, "batch": 200, "archive_dir": None}
    assert cfg.archive_dir == tmp_path / ".autonomic" / "audit-archive"


def test_the_weekly_report_reads_the_same_after_pruning_at_the_shortest_retention_allowed(
        store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Retention refuses less than the week the weekly report reads, so a report over what
    remains is the report over everything: incidents, interventions, notable events."""
    from autonomic.oversight.reports import build_report, render_markdown

    now = time.time()
    with monkeypatch.context() as m:  # a month of history before this week, audited a month ago
        # (audit times are the store's clock: the server's on PostgreSQL, this host's on SQLite)
        m.setattr(Store, "_now_in", lambda self, conn: now - 30 * DAY_S)
        for i in range(5):
            _incident_with_history(store, opened=now - 30 * DAY_S + i, closed=now - 29 * DAY_S)
        _fill_audit(store, CHUNK)
    for i, state in enumerate((ActionState.SUCCEEDED, ActionState.ROLLED_BACK, ActionState.SUCCEEDED)):
        _incident_with_history(store, opened=now - (3 + i) * DAY_S, closed=now - 2 * DAY_S, action_state=state,
                               verdict=VerifyVerdict.PASS if state == ActionState.SUCCEEDED else VerifyVerdict.FAIL,
                               rolled_back=state == ActionState.ROLLED_BACK)
    store.audit("alice", "pause.set", "web", {"reason": "deploy"})
    at = time.time() + 1  # the report's end: after that entry
    before = render_markdown(build_report(store, "weekly", at))

    shortest = RetentionSpec(findings_days=1, incidents_days=7, audit_days=7)
    result = prune(store, shortest, now, tmp_path)

    assert result.counts["incidents"] == 5 and result.counts["audit_events"] == CHUNK
    assert render_markdown(build_report(store, "weekly", at)) == before
    assert "deploy" in before and "Rollbacks" in before


def test_retention_too_short_says_one_day_and_half_a_day_in_words(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        _load({"retention": {"findings_days": 0.5}}, tmp_path)
    [problem] = caught.value.problems
    assert problem.message.startswith("0.5 days is shorter than the 1 day the engine still reads: ")
