"""People answering one approval request in the same instant, for real: threads released together
by a barrier, each with a Store of its own (as two API replicas, or the API and a person's
`autonomic approve`, each have their own connections), against a SQLite file and a real
PostgreSQL server. Exactly one answer is written and audited; every other one is refused naming
the winner."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Literal

import pytest

from autonomic.engine import answer_approval, approval_key
from autonomic.knowledge import Store
from autonomic.model import (
    ActionSpec,
    Decision,
    Diagnosis,
    FindingKind,
    Incident,
    IncidentState,
    Severity,
    Verdict,
)

T0 = 1_700_000_000.0
PEOPLE = 6
ROUNDS = 8


def _waiting(store: Store) -> tuple[str, str]:
    """An incident awaiting approval; (its id, the decision that asks)."""
    inc = Incident(service="db", cause="down", state=IncidentState.AWAITING_APPROVAL, severity=Severity.CRITICAL,
                   kind=FindingKind.STATE, opened_at=T0, updated_at=T0, last_finding_at=T0, summary="db is down")
    action = ActionSpec(type="process", target="db", params={"op": "restart"})
    diagnosis = Diagnosis(incident_id=inc.id, ts=T0, pattern_id="process-down-restart", action=action,
                          confidence=0.8, rationale="down")
    decision = Decision(incident_id=inc.id, diagnosis_id=diagnosis.id, ts=T0, verdict=Verdict.NEEDS_APPROVAL,
                        action=action)
    store.record(inc, diagnosis, decision, actor="engine", event="decision.needs_approval", subject=inc.id)
    return inc.id, decision.id


@pytest.fixture
def stores(store_url: str) -> Iterator[list[Store]]:
    """One Store per person, over the same database."""
    opened = [Store(store_url) for _ in range(PEOPLE)]
    yield opened
    for s in opened:
        s.close()


def _race(stores: list[Store], incident_id: str,
          verdicts: list[Literal["approve", "deny"]]) -> tuple[list[str], dict[str, str]]:
    """Everyone answers at once; (the actors whose answer was written, actor -> refusal message)."""
    barrier = threading.Barrier(len(stores))
    won: list[str] = []
    refused: dict[str, str] = {}

    def person(i: int) -> None:
        who = f"person:p{i}"
        barrier.wait()
        try:
            answer_approval(stores[i], incident_id, verdicts[i], actor=who, comment=f"from {who}", now=T0 + 1,
                            approval_ttl_s=3600.0)
            won.append(who)
        except ValueError as exc:
            refused[who] = str(exc)

    threads = [threading.Thread(target=person, args=(i,)) for i in range(len(stores))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return won, refused


def _answer_events(store: Store, since: int) -> list[str]:
    return [e.actor for e in store.audit_events() if e.seq > since and e.kind.startswith("approval.")
            and e.kind not in ("approval.cleared",)]


def test_of_simultaneous_approvals_exactly_one_is_written_and_the_others_are_refused_naming_it(
        stores: list[Store]) -> None:
    """Before, the check (is it answered?) and the write were two transactions: several people
    clicking approve in the same instant all read "unanswered" and all won, each audited. Now the
    store decides in one conditional write."""
    store = stores[0]
    incident_id, _ = _waiting(store)
    for _ in range(ROUNDS):
        before = store.audit_events()[-1].seq
        won, refused = _race(stores, incident_id, ["approve"] * PEOPLE)
        assert len(won) == 1, f"{len(won)} answers written: {won}"
        stored = store.get_state(approval_key(incident_id))
        assert stored is not None and stored["actor"] == won[0] and stored["verdict"] == "approve"
        assert len(refused) == PEOPLE - 1
        assert all(f"already answered: approve by {won[0]}" in msg for msg in refused.values())
        assert _answer_events(store, before) == won  # one answer event, the winner's
        store.set_state(approval_key(incident_id), None, actor="test", event="approval.cleared")


def test_of_simultaneous_denials_of_an_approval_exactly_one_replaces_it(stores: list[Store]) -> None:
    """A denial may still stop an approval the engine has not acted on; of several at once one does,
    and an approval racing them never replaces the denial that won."""
    store = stores[0]
    incident_id, decision = _waiting(store)
    for _ in range(ROUNDS):
        answer_approval(store, incident_id, "approve", actor="person:first", comment="", now=T0, approval_ttl_s=3600.0)
        before = store.audit_events()[-1].seq
        verdicts: list[Literal["approve", "deny"]] = ["deny"] * (PEOPLE - 1) + ["approve"]
        won, refused = _race(stores, incident_id, verdicts)
        assert len(won) == 1, f"{len(won)} answers written: {won}"
        stored = store.get_state(approval_key(incident_id))
        assert stored is not None and (stored["actor"], stored["verdict"], stored["decision"]) == (
            won[0], "deny", decision)
        assert all(f"already answered: deny by {won[0]}" in msg or "already answered: approve by person:first" in msg
                   for msg in refused.values())
        assert _answer_events(store, before) == won
        store.set_state(approval_key(incident_id), None, actor="test", event="approval.cleared")


def test_the_engine_takes_an_approval_only_while_it_is_still_the_answer_stored(stores: list[Store]) -> None:
    """The engine's side of "a denial stops an approval": its conditional delete of the approval it
    read deletes nothing (and audits nothing) once a denial has replaced it, on either back end."""
    store = stores[0]
    incident_id, decision = _waiting(store)
    answer_approval(store, incident_id, "approve", actor="person:ann", comment="", now=T0, approval_ttl_s=3600.0)
    read = store.get_state(approval_key(incident_id))
    assert read is not None
    answer_approval(stores[1], incident_id, "deny", actor="person:bob", comment="", now=T0,  # another replica
                    approval_ttl_s=3600.0)
    before = store.audit_events()[-1].seq
    approval = {"verdict": "approve", "actor": read["actor"], "decision": read["decision"]}
    assert not store.delete_state_if(approval_key(incident_id), approval, actor="engine", event="approval.consumed")
    assert store.get_state(approval_key(incident_id))["verdict"] == "deny"  # type: ignore[index]
    assert store.audit_events()[-1].seq == before
    denial = {"verdict": "deny", "actor": "person:bob", "decision": decision}
    assert store.delete_state_if(approval_key(incident_id), denial, actor="engine", event="approval.consumed")
    assert store.get_state(approval_key(incident_id)) is None
    assert [e.kind for e in store.audit_events() if e.seq > before] == ["approval.consumed"]
