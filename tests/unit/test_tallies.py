"""Each pattern's measured record, kept in step with the store's writes (knowledge/tallies.py):
always what the store's grouped query over the whole history says, on a real store of each
back end, and read from the store once rather than after every action that ends."""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import pytest

from autonomic.knowledge import Store
from autonomic.knowledge.tallies import PatternTallies
from autonomic.model import Action, ActionState, Outcome, VerifyVerdict

_ENDS = [ActionState.SUCCEEDED, ActionState.FAILED, ActionState.ROLLED_BACK, ActionState.ESCALATED,
         ActionState.CANCELLED]


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    s = Store(store_url)
    yield s
    s.close()


def _action(i: int, rng: random.Random) -> Action:
    return Action(decision_id=f"d{i}", incident_id=f"i{i}", service=rng.choice(["api", "web", "db"]),
                  type="restart", idempotency_key=f"k{i}", created_at=float(i), updated_at=float(i),
                  pattern_id=rng.choice(["mem-leak", "disk-full", None]))


def _outcome(action: Action, verdict: VerifyVerdict, rolled_back: bool = False) -> Outcome:
    return Outcome(action_id=action.id, incident_id=action.incident_id, ts=action.updated_at, verdict=verdict,
                   reason="test", rolled_back=rolled_back)


def _end(action: Action, rng: random.Random) -> tuple[Any, ...]:
    """``action`` in a state it ends in, with the outcome the executor writes beside it."""
    state = rng.choice(_ENDS)
    ended = action.model_copy(update={"state": state, "updated_at": action.updated_at + 1})
    if state == ActionState.SUCCEEDED:
        return ended, _outcome(ended, VerifyVerdict.PASS)
    if state == ActionState.ROLLED_BACK:
        return ended, _outcome(ended, VerifyVerdict.FAIL, rolled_back=True)
    if state == ActionState.FAILED:
        return ended, _outcome(ended, VerifyVerdict.FAIL)
    if state == ActionState.ESCALATED:  # an undo that failed, inconclusive, or no verdict at all
        verdict = rng.choice([VerifyVerdict.FAIL, VerifyVerdict.INCONCLUSIVE, None])
        return (ended,) if verdict is None else (ended, _outcome(ended, verdict))
    return (ended,)  # cancelled: never ran


def _whole_history(store: Store) -> tuple[dict[str, tuple[int, int]], dict[str, dict[str, tuple[int, int]]]]:
    """The record computed from every action and outcome stored, in Python (the definition)."""
    totals: dict[str, tuple[int, int]] = {}
    per_service: dict[str, dict[str, tuple[int, int]]] = {}
    for a in store.actions():
        if not a.pattern_id or a.state not in (ActionState.SUCCEEDED, ActionState.FAILED, ActionState.ROLLED_BACK,
                                               ActionState.ESCALATED):
            continue
        failed = a.state in (ActionState.FAILED, ActionState.ROLLED_BACK) or (
            a.state == ActionState.ESCALATED and any(o.verdict == "fail" for o in store.outcomes(action_id=a.id)))
        ok, bad = int(a.state == ActionState.SUCCEEDED), int(failed)
        s, f = totals.get(a.pattern_id, (0, 0))
        totals[a.pattern_id] = (s + ok, f + bad)
        here = per_service.setdefault(a.service, {})
        s, f = here.get(a.pattern_id, (0, 0))
        here[a.pattern_id] = (s + ok, f + bad)
    return totals, per_service


def _as_dicts(read: tuple[Any, Any]) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    totals, per_service = read
    return dict(totals), {k: dict(v) for k, v in per_service.items()}


def test_the_kept_record_equals_the_whole_histories_after_every_write_of_many_actions_lives(store: Store) -> None:
    """120 actions, some already ended before the record is first read, the rest in flight and
    ending in turn (succeeded, failed, rolled back, escalated with or without a failed outcome,
    cancelled; some without a pattern): after every write the kept record is the store's grouped
    query and the computation from every action stored, and the store was read once."""
    rng = random.Random(7)
    tallies = PatternTallies(store)
    store.on_record(tallies.follow)
    before = [_action(i, rng) for i in range(20)]
    for a in before:  # history from before this process started
        store.record(a, actor="engine", event="action.intent", subject=a.id)
        store.record(*_end(a, rng), actor="engine", event="action.ended", subject=a.id)
    in_flight = [_action(i, rng) for i in range(20, 25)]
    for a in in_flight:
        store.record(a, actor="engine", event="action.intent", subject=a.id)
    assert _as_dicts(tallies.read()) == _whole_history(store)
    next_id = 25
    steps = 0
    while in_flight or next_id < 120:
        if next_id < 120 and (not in_flight or rng.random() < 0.5):
            a = _action(next_id, rng)
            next_id += 1
            store.record(a, actor="engine", event="action.intent", subject=a.id)
            in_flight.append(a)
        else:
            a = in_flight.pop(rng.randrange(len(in_flight)))
            if rng.random() < 0.5:  # a step before its end changes nothing
                store.record(a.model_copy(update={"state": ActionState.VERIFYING}), actor="engine",
                             event="action.applied", subject=a.id)
            store.record(*_end(a, rng), actor="engine", event="action.ended", subject=a.id)
        steps += 1
        totals, per_service = _whole_history(store)
        assert _as_dicts(tallies.read()) == (totals, per_service), f"after step {steps}"
        grouped = store.pattern_tallies_by_service()
        assert {(p, s): t for s, by in per_service.items() for p, t in by.items()} == grouped
    assert tallies.reads == 1


def test_a_new_process_rebuilds_the_same_record_from_the_store(store: Store) -> None:
    rng = random.Random(11)
    first = PatternTallies(store)
    store.on_record(first.follow)
    first.read()
    for i in range(30):
        a = _action(i, rng)
        store.record(a, actor="engine", event="action.intent", subject=a.id)
        store.record(*_end(a, rng), actor="engine", event="action.ended", subject=a.id)
    assert _as_dicts(PatternTallies(store).read()) == _as_dicts(first.read()) == _whole_history(store)


def test_a_write_it_cannot_place_makes_it_read_the_store_again_never_count_twice(store: Store) -> None:
    """An action heard ending that it never saw in flight (written ended at once), an ended action
    written again, a failed outcome for an escalation already counted: the record is read again
    from the store, and stays equal to it."""
    tallies = PatternTallies(store)
    store.on_record(tallies.follow)
    base = Action(decision_id="d", incident_id="i", service="api", type="restart", idempotency_key="k",
                  created_at=1.0, updated_at=1.0, pattern_id="mem-leak")
    tallies.read()
    done = base.model_copy(update={"state": ActionState.SUCCEEDED})
    store.record(done, actor="engine", event="action.ended", subject=done.id)  # never seen in flight
    assert _as_dicts(tallies.read()) == _whole_history(store) == ({"mem-leak": (1, 0)}, {"api": {"mem-leak": (1, 0)}})
    store.record(done, actor="engine", event="action.ended", subject=done.id)  # the same end, written again
    assert _as_dicts(tallies.read()) == _whole_history(store)
    escalated = base.model_copy(update={"id": "e1", "idempotency_key": "k2", "state": ActionState.PENDING})
    store.record(escalated, actor="engine", event="action.intent", subject="e1")
    store.record(escalated.model_copy(update={"state": ActionState.ESCALATED}), actor="engine",
                 event="action.escalated", subject="e1")
    assert _as_dicts(tallies.read()) == _whole_history(store) == ({"mem-leak": (1, 0)}, {"api": {"mem-leak": (1, 0)}})
    store.record(_outcome(escalated, VerifyVerdict.FAIL), actor="engine", event="outcome.late", subject="e1")
    assert _as_dicts(tallies.read()) == _whole_history(store) == ({"mem-leak": (1, 1)}, {"api": {"mem-leak": (1, 1)}})
    assert tallies.reads == 4


def test_an_escalation_whose_failed_outcome_was_written_before_it_counts_as_a_failure(store: Store) -> None:
    tallies = PatternTallies(store)
    store.on_record(tallies.follow)
    tallies.read()
    a = Action(decision_id="d", incident_id="i", service="api", type="restart", idempotency_key="k",
               created_at=1.0, updated_at=1.0, pattern_id="mem-leak")
    store.record(a, actor="engine", event="action.intent", subject=a.id)
    store.record(a.model_copy(update={"state": ActionState.ROLLING_BACK}), _outcome(a, VerifyVerdict.FAIL),
                 actor="engine", event="action.verify_failed", subject=a.id)
    store.record(a.model_copy(update={"state": ActionState.ESCALATED}), actor="engine", event="action.undo_failed",
                 subject=a.id)
    assert _as_dicts(tallies.read()) == _whole_history(store) == ({"mem-leak": (0, 1)}, {"api": {"mem-leak": (0, 1)}})
    assert tallies.reads == 1


def test_a_store_read_that_fails_while_an_action_ends_drops_the_record_instead_of_losing_the_action(
        store: Store, raw_sql: Any) -> None:
    """An escalation's outcome is looked up in the store as its write is heard, after that write
    committed. When that read failed (the store gone for a moment), the error came out of the
    write that had succeeded, and the action, no longer in flight and never added, was missing
    from the record for the rest of the process's life. Now the record is dropped (read again
    whole at its next use) and the write returns."""
    tallies = PatternTallies(store)
    store.on_record(tallies.follow)
    tallies.read()
    a = Action(decision_id="d", incident_id="i", service="api", type="restart", idempotency_key="k",
               created_at=1.0, updated_at=1.0, pattern_id="mem-leak")
    store.record(a, actor="engine", event="action.intent", subject=a.id)
    store.record(a.model_copy(update={"state": ActionState.ROLLING_BACK}), _outcome(a, VerifyVerdict.FAIL),
                 actor="engine", event="action.verify_failed", subject=a.id)
    raw_sql("ALTER TABLE outcomes RENAME TO outcomes_away")  # the escalation's outcome read fails
    try:
        store.record(a.model_copy(update={"state": ActionState.ESCALATED}), actor="engine",
                     event="action.undo_failed", subject=a.id)
    finally:
        raw_sql("ALTER TABLE outcomes_away RENAME TO outcomes")
    assert store.get(Action, a.id).state == ActionState.ESCALATED  # type: ignore[union-attr]
    assert _as_dicts(tallies.read()) == _whole_history(store) == ({"mem-leak": (0, 1)}, {"api": {"mem-leak": (0, 1)}})
    assert tallies.reads == 2
