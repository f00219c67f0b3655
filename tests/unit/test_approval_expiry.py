"""An approval request that expires unanswered is told to people, not closed in silence.

Through the real engine (test_engine's Harness: a fake clock ticked by hand, a replayed series, the
fake actuator, a real SQLite store, every notification caught by autonomic.testing's FakeNotifier
behind a synchronous Dispatcher): the expiry is told once, as an alert while the trouble is still
on and for information once it has cleared, and not again after a restart; a request made again
for the same trouble says which one it is."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from test_engine import ERRORS_POKE, Harness, _replicas

from autonomic.clock import utc_stamp
from autonomic.engine import LateApproval, answer_approval, approval_key
from autonomic.knowledge import Store
from autonomic.knowledge.lease import LeaderElector
from autonomic.model import Decision, Incident, IncidentState, Level, Notification, Verdict
from autonomic.oversight.explain import explain_incident, render_text

TTL_S = 20


def _harness(tmp_path: Path, name: str = "h", store: Store | None = None, start_at: float | None = None,
             elector: LeaderElector | None = None) -> Harness:
    """Approve autonomy, svc's error_rate line at 0.2, requests expiring ``TTL_S`` after they are
    made, incidents closed after 30 s without a finding (each harness its own folder under
    ``tmp_path``: a second one over the same store stands for the engine restarted)."""
    folder = tmp_path / name
    folder.mkdir()
    engine = {"interval_s": 1, "state_dir": str(folder / "state"), "host_metrics": False, "settle_s": 0,
              "resolve_after_s": 30, "approval_ttl_s": TTL_S}
    services = [{"name": "svc", "actuators": {"fake": {"name": "x"}},
                 "thresholds": {"down_after": 2, "sustain": 2, "error_rate": 0.2}}]
    extra: dict[str, Any] = {"engine": engine, "services": services}
    kwargs: dict[str, Any] = {} if start_at is None else {"start_at": start_at}
    return Harness(folder, policy={"autonomy": "approve"}, patterns=ERRORS_POKE, extra=extra, store=store,
                   elector=elector, **kwargs)


def _expired(h: Harness) -> list[Notification]:
    return [n for n in h.notifier.sent if n.title.startswith("approval request expired")]


def _requests(h: Harness) -> list[Notification]:
    return [n for n in h.notifier.sent if n.level == Level.APPROVAL_REQUESTED]


def _asked(h: Harness) -> tuple[Incident, Decision]:
    """The newest incident and the approval request it waits on."""
    inc = h.incident()
    assert inc.state == IncidentState.AWAITING_APPROVAL, inc.state
    asked = h.store.decisions(inc.id)[-1]
    assert asked.verdict == Verdict.NEEDS_APPROVAL and asked.expires_at is not None
    return inc, asked


def test_a_request_that_expires_with_the_trouble_on_is_told_once_as_an_alert_saying_what_and_what_next(
        tmp_path: Path) -> None:
    """Before, the incident closed as expired and nobody was told: the person asked (through a
    channel maybe nobody read) and whoever is on call did not learn that nothing was done while
    the errors went on. Now one alert (the level the paging routes take) names the incident, what
    was asked and when, when it expired, that nothing was done, the metric now beside its
    threshold, and what the engine does next."""
    h = _harness(tmp_path)
    h.feed("error_rate", 0.01, 3)
    h.feed("error_rate", 0.5, 4)
    inc, asked = _asked(h)
    assert asked.expires_at is not None
    h.run_until(lambda: h.store.get(Incident, inc.id).closed_at is not None,  # type: ignore[union-attr]
                "error_rate", 0.5, limit=TTL_S + 5)
    assert h.store.get(Incident, inc.id).state == IncidentState.EXPIRED  # type: ignore[union-attr]
    h.feed("error_rate", 0.5, 5)  # still on; the next request is not due to expire yet
    (told,) = _expired(h)
    assert told.level == Level.ALERT and told.incident_id == inc.id and told.service == "svc"
    assert "fake poke on svc" in told.title
    body = told.body
    assert f"incident {inc.id[:8]} (" in body
    assert (f"the request to run fake poke on svc, asked at {utc_stamp(asked.ts)}, expired at "
            f"{utc_stamp(asked.expires_at)}; nobody answered it, so nothing was done") in body, body
    assert "The trouble is still on: error_rate 0.5 now (its threshold 0.2), its last finding 0 s ago" in body, body
    assert ("At its next finding the engine opens a new incident and decides it again through every gate; "
            "should that ask a person again, it is request 2 for this trouble") in body, body
    # and that is what it did: a new incident, asking again
    assert len(_requests(h)) == 2
    again, _ = _asked(h)
    assert again.id != inc.id
    # the expiry's audit entry keeps what the next request reads
    expiry = [e for e in h.store.audit_events(subject=inc.id) if e.kind == "approval.expired"]
    assert [(e.data["trouble_on"], e.data["request"], e.data["since"]) for e in expiry] == [(True, 1, asked.ts)]


def test_an_expiry_is_told_once_across_engine_restarts_on_the_same_store(tmp_path: Path) -> None:
    """The write that closes the incident is the point of truth: the engine restarted before the
    request expires tells of the expiry once, and one restarted after it does not tell it again
    (the incident is closed: nothing of it is looked at again)."""
    db = f"sqlite:///{tmp_path / 'autonomic.db'}"
    first = _harness(tmp_path, "first", store=Store(db))
    first.feed("error_rate", 0.01, 3)
    first.feed("error_rate", 0.5, 4)
    inc, asked = _asked(first)
    first.engine.shutdown()
    second = _harness(tmp_path, "second", store=Store(db), start_at=first.clock.now())
    second.run_until(lambda: second.store.get(Incident, inc.id).closed_at is not None,  # type: ignore[union-attr]
                     "error_rate", 0.5, limit=TTL_S + 5)
    second.engine.shutdown()
    third = _harness(tmp_path, "third", store=Store(db), start_at=second.clock.now())
    third.feed("error_rate", 0.5, 5)
    told = [n for h in (first, second, third) for n in _expired(h) if n.incident_id == inc.id]
    assert [n.level for n in told] == [Level.ALERT]
    assert told == _expired(second)


def test_with_replicas_only_the_leader_that_closes_the_incident_tells_of_the_expiry(tmp_path: Path) -> None:
    """Two replicas over one SQLite file (leader election). A leads and asks, then freezes; B takes
    the lease over and closes the incident when the request expires, telling of it once. A wakes
    still believing it leads and finds the request expired too: its write is refused by the fence,
    so it tells nobody (a notification follows the write that closes the incident)."""
    (sa, ea, ma), (sb, eb, mb) = _replicas(tmp_path)
    assert ea.attempt()
    a = _harness(tmp_path, "a", store=sa, elector=ea)
    assert not eb.attempt()
    a.feed("error_rate", 0.01, 3)
    a.feed("error_rate", 0.5, 4)
    inc, _ = _asked(a)
    mb.t += 16  # A froze: B has watched the lease go unrenewed for lease_s
    assert eb.attempt()
    b = _harness(tmp_path, "b", store=sb, elector=eb, start_at=a.clock.now())
    b.run_until(lambda: sb.get(Incident, inc.id).closed_at is not None,  # type: ignore[union-attr]
                "error_rate", 0.5, limit=TTL_S + 5)
    ma.t += 5  # A wakes; on its own clock it renewed 5 s ago, so it still believes it leads
    assert ea.leading
    a.feed("error_rate", 0.5, TTL_S + 5)  # past the request's expiry by A's clock too
    told = [n for h in (a, b) for n in _expired(h) if n.incident_id == inc.id]
    assert [n.level for n in told] == [Level.ALERT] and told == _expired(b)
    assert [e.actor for e in sb.audit_events(subject=inc.id) if e.kind == "approval.expired"] == ["engine"]


def test_an_approval_the_engine_finds_given_after_the_expiry_is_told_as_late_not_as_unanswered(
        tmp_path: Path) -> None:
    """The engine was down past the request's expiry and finds an approval given after it (stored
    by an older CLI): nothing is done, and the expiry says who approved, too late."""
    h = _harness(tmp_path)
    h.feed("error_rate", 0.01, 3)
    h.feed("error_rate", 0.5, 4)
    inc, asked = _asked(h)
    h.clock.advance(TTL_S + 5)
    h.store.set_state(approval_key(inc.id), {"verdict": "approve", "actor": "person:ann", "comment": "",
                                             "ts": asked.ts + TTL_S + 2, "decision": asked.id},
                      actor="person:ann", event="approval.approve")
    h.feed("error_rate", 0.5, 2)
    assert h.actuator.calls == []
    (told,) = _expired(h)
    assert told.incident_id == inc.id and told.level == Level.ALERT
    assert "; person:ann approved it only after that, so nothing was done." in told.body, told.body


def test_an_approval_refused_as_late_before_the_engine_closed_the_incident_is_told_in_the_expiry_as_late(
        tmp_path: Path) -> None:
    """The request expired between two of the engine's looks and ann approved meanwhile: refused as
    late (nothing stored to act on). The expiry the engine then tells says ann approved too late,
    not that nobody answered (which the refusal it tells beside it would contradict)."""
    h = _harness(tmp_path)
    h.feed("error_rate", 0.01, 3)
    h.feed("error_rate", 0.5, 4)
    inc, asked = _asked(h)
    h.clock.advance(TTL_S + 5)
    with pytest.raises(LateApproval):
        answer_approval(h.store, inc.id, "approve", actor="person:ann", comment="", now=h.clock.now(),
                        approval_ttl_s=TTL_S, answers=asked.id)
    h.feed("error_rate", 0.5, 2)
    assert h.actuator.calls == []
    (told,) = _expired(h)
    assert "; person:ann approved it only after that, so nothing was done." in told.body, told.body
    assert "nobody answered" not in told.body
    [expired] = [e for e in h.store.audit_events(subject=inc.id) if e.kind == "approval.expired"]
    assert expired.data["approved_late_by"] == "person:ann"


def test_a_request_that_expires_after_the_trouble_cleared_is_told_for_information(tmp_path: Path) -> None:
    """The errors stopped while the person was asked: the expiry still says nothing was done, as
    information (nobody needs paging for a trouble that is gone), with the metric now and that a
    return is decided afresh; and a return after the quiet time is a first request again."""
    h = _harness(tmp_path)
    h.feed("error_rate", 0.01, 3)
    h.feed("error_rate", 0.5, 4)
    inc, asked = _asked(h)
    h.run_until(lambda: h.store.get(Incident, inc.id).closed_at is not None,  # type: ignore[union-attr]
                "error_rate", 0.01, limit=TTL_S + 5)
    assert h.store.get(Incident, inc.id).state == IncidentState.EXPIRED  # type: ignore[union-attr]
    (told,) = _expired(h)
    assert told.level == Level.INFO and told.incident_id == inc.id
    assert "nobody answered it, so nothing was done" in told.body
    assert "The trouble has cleared: error_rate 0.01 now (its threshold 0.2)" in told.body, told.body
    assert "Should it come back, a new incident opens and is decided afresh" in told.body
    h.feed("error_rate", 0.01, 35)  # past resolve_after_s: another trouble, should it come
    h.feed("error_rate", 0.5, 4)
    _asked(h)
    latest = _requests(h)[-1]
    assert latest.title.startswith("approval needed: ") and "request 2" not in latest.body


def test_a_request_made_again_for_the_same_trouble_says_which_it_is_until_a_denial_stops_the_asking(
        tmp_path: Path) -> None:
    """The trouble goes on past two expiries: each new request is a new incident (the expired one
    is closed), and says it is the 2nd, 3rd... for this trouble since the first was asked, naming
    the incident of the last; each expiry says which request expired. A denial ends the asking:
    the incident stays with a person (escalated, open) while the trouble goes on."""
    h = _harness(tmp_path)
    h.feed("error_rate", 0.01, 3)
    h.feed("error_rate", 0.5, 4)
    first, asked = _asked(h)
    h.run_until(lambda: len(_requests(h)) == 2, "error_rate", 0.5, limit=TTL_S + 5)
    second, _ = _asked(h)
    request = _requests(h)[-1]
    assert request.title.startswith("approval needed (request 2): fake poke on svc"), request.title
    assert (f"This is request 2 for this trouble since {utc_stamp(asked.ts)}: the last one (incident "
            f"{first.id[:8]}) expired at ") in request.body, request.body
    assert "Deny it to stop being asked" in request.body
    h.run_until(lambda: len(_requests(h)) == 3, "error_rate", 0.5, limit=TTL_S + 5)
    third, _ = _asked(h)
    assert "(request 3)" in _requests(h)[-1].title
    assert f"the last one (incident {second.id[:8]})" in _requests(h)[-1].body
    assert [n.incident_id for n in _expired(h)] == [first.id, second.id]
    assert f"It was request 2 for this trouble since {utc_stamp(asked.ts)}." in _expired(h)[1].body
    assert "it is request 3 for this trouble" in _expired(h)[1].body
    answer_approval(h.store, third.id, "deny", actor="person:ann", comment="on it", now=h.clock.now(),
                    approval_ttl_s=TTL_S)
    h.feed("error_rate", 0.5, 2 * TTL_S)
    assert len(_requests(h)) == 3 and len(_expired(h)) == 2
    held = h.store.get(Incident, third.id)
    assert held is not None and held.state == IncidentState.ESCALATED and held.closed_at is None


def test_explain_says_an_unanswered_request_expired_when_and_that_nothing_was_done(tmp_path: Path) -> None:
    """autonomic explain (and the dashboard, from the same ruled_by) of an incident closed by its
    request's expiry: "expired unanswered at <when it expired, UTC>; nothing done"."""
    h = _harness(tmp_path)
    h.feed("error_rate", 0.01, 3)
    h.feed("error_rate", 0.5, 4)
    inc, asked = _asked(h)
    assert asked.expires_at is not None
    h.run_until(lambda: h.store.get(Incident, inc.id).closed_at is not None,  # type: ignore[union-attr]
                "error_rate", 0.5, limit=TTL_S + 5)
    chain = explain_incident(h.store, inc.id)
    said = f"expired unanswered at {utc_stamp(asked.expires_at)}; nothing done"
    assert chain["decisions"][-1]["ruled_by"] == f"by engine; {said}"
    assert said in render_text(chain)



def test_explain_still_says_a_request_expired_once_retention_pruned_its_audit_entries(tmp_path: Path) -> None:
    """The audit log is kept for a week, closed incidents for 90 days (retention allows both), so
    the audit entries of an incident whose request expired are archived and pruned while the
    incident stays. Its request's recorded expiry still tells: "expired at <when>; nothing done",
    and that its audit entries were pruned. Before, explain found no approval.expired entry and
    said "the trouble cleared on its own before an answer", which is not what happened."""
    import time

    from autonomic.knowledge.archive import CHUNK
    from autonomic.knowledge.retention import DAY_S, RetentionSpec, prune

    h = _harness(tmp_path)
    h.feed("error_rate", 0.01, 3)
    h.feed("error_rate", 0.5, 4)
    inc, asked = _asked(h)
    assert asked.expires_at is not None
    h.run_until(lambda: h.store.get(Incident, inc.id).closed_at is not None,  # type: ignore[union-attr]
                "error_rate", 0.5, limit=TTL_S + 5)
    for n in range(CHUNK):  # a whole chunk after the incident's entries, so theirs can go
        h.store.audit("person:ann", "note", "elsewhere", {"n": n})
    spec = RetentionSpec(findings_days=None, incidents_days=90, audit_days=7)
    pruned = prune(h.store, spec, h.clock.now(), tmp_path / "archive", wall_now=time.time() + 8 * DAY_S)
    assert pruned.counts["audit_events"] == CHUNK and pruned.counts["incidents"] == 0
    assert h.store.audit_events(subject=inc.id) == []

    chain = explain_incident(h.store, inc.id)
    ruled_by = chain["decisions"][-1]["ruled_by"]
    assert ruled_by.startswith(f"by engine; expired at {utc_stamp(asked.expires_at)}; nothing done"), ruled_by
    assert "pruned by retention" in ruled_by and "cleared" not in ruled_by


def test_an_approval_refused_as_late_is_told_once_naming_the_request_that_waits_now(tmp_path: Path) -> None:
    """Before, an approval given after the request expired was refused to the person who gave it
    and audited, and nobody else was told. Now the engine that leads tells it once (for
    information): who approved which request, how late, that nothing was done, and the request
    asked again for the same trouble that waits now; the person refused is pointed at it too. The
    same person approving again is refused again and audited, not told of again (before, each
    click sent people another notice); another person's late approval is. An engine restarted
    afterwards does not tell it again."""
    db = f"sqlite:///{tmp_path / 'autonomic.db'}"
    h = _harness(tmp_path, store=Store(db))
    h.feed("error_rate", 0.01, 3)
    h.feed("error_rate", 0.5, 4)
    first, asked = _asked(h)
    h.run_until(lambda: len(_requests(h)) == 2, "error_rate", 0.5, limit=TTL_S + 5)
    second, _ = _asked(h)
    late_at = h.clock.now()
    with pytest.raises(LateApproval) as refused:
        answer_approval(h.store, first.id, "approve", actor="person:ann", comment="go", now=late_at,
                        approval_ttl_s=TTL_S, answers=asked.id)
    assert (f"the engine has asked again: incident {second.id[:8]} awaits approval (autonomic approve "
            f"{second.id[:8]})") in str(refused.value), str(refused.value)
    h.feed("error_rate", 0.5, 3)
    told = [n for n in h.notifier.sent if n.title.startswith("approval refused as late")]
    assert [(n.level, n.incident_id, n.title) for n in told] == [
        (Level.INFO, first.id, "approval refused as late: fake poke on svc")]
    assert asked.expires_at is not None
    assert (f"person:ann approved incident {first.id[:8]}'s request to run fake poke on svc at {utc_stamp(late_at)}, "
            f"{late_at - asked.expires_at:.0f} s after it expired at {utc_stamp(asked.expires_at)}: refused, nothing "
            "was done on it") in told[0].body, told[0].body
    # the engine's notification names the command with the engine's config (typed from any folder)
    assert (f"the engine has asked again: incident {second.id[:8]} awaits approval ({h.engine.config.command} "
            f"approve {second.id[:8]})") in told[0].body
    assert h.engine.config.command.startswith("autonomic -c /")
    assert [e.kind for e in h.store.audit_events() if e.kind.startswith("approval.late")] == [
        "approval.late_queued", "approval.late", "approval.late_told"]
    for _ in range(3):  # ann clicks approve again, and again: refused each time, told of once
        with pytest.raises(LateApproval):
            answer_approval(h.store, first.id, "approve", actor="person:ann", comment="go!", now=h.clock.now(),
                            approval_ttl_s=TTL_S, answers=asked.id)
    with pytest.raises(LateApproval):  # another person's late approval is told of, once
        answer_approval(h.store, first.id, "approve", actor="person:bob", comment="go", now=h.clock.now(),
                        approval_ttl_s=TTL_S, answers=asked.id)
    h.feed("error_rate", 0.5, 3)
    told = [n for n in h.notifier.sent if n.title.startswith("approval refused as late")]
    assert [n.body.split(" approved ")[0] for n in told] == ["person:ann", "person:bob"], [n.body for n in told]
    assert sum(e.kind == "approval.late" for e in h.store.audit_events()) == 5  # every attempt audited
    h.engine.shutdown()
    again = _harness(tmp_path, "again", store=Store(db), start_at=h.clock.now())
    again.feed("error_rate", 0.5, 3)
    assert not [n for n in again.notifier.sent if n.title.startswith("approval refused as late")]
