from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from pydantic import ValidationError

from autonomic.model import (
    TROUBLE_CLEARED,
    ActionSpec,
    Autonomy,
    Decision,
    GateResult,
    Outcome,
    Verdict,
    VerifyVerdict,
)
from autonomic.plan.autonomy import earned_effective, earned_level, ladder_event, people_evidence, wilson_lower
from autonomic.plan.policy import AutonomyLadder, PolicyConfig

LADDER = AutonomyLadder(enabled=True)


@dataclass(frozen=True)
class Out:
    verdict: str
    rolled_back: bool = False


OK = Out("pass")
FAIL = Out("fail")
MEH = Out("inconclusive")
ROLLBACK = Out("fail", rolled_back=True)


def test_no_record_stays_at_the_start() -> None:
    assert earned_level([], Autonomy.SUGGEST, LADDER) == (Autonomy.SUGGEST, "at suggest: no outcomes yet")


def test_five_verified_successes_promote_one_level_with_the_numbers() -> None:
    level, why = earned_level([OK] * 5, Autonomy.SUGGEST, LADDER)
    assert level == Autonomy.APPROVE
    assert why == "promoted to approve after 5 verified successes (100% of 5)"


def test_four_successes_are_not_enough() -> None:
    level, why = earned_level([OK] * 4, Autonomy.SUGGEST, LADDER)
    assert level == Autonomy.SUGGEST and why == "at suggest: 4 of 4 outcomes verified, 4 verified successes in a row"


def test_success_rate_over_the_window_must_reach_the_bar() -> None:
    # after one failure, 5 successes in a row are 6 of 7 (86%): not yet; 8 are 9 of 10 (90%)
    assert earned_level([OK, FAIL] + [OK] * 7, Autonomy.SUGGEST, LADDER)[0] == Autonomy.SUGGEST
    assert earned_level([OK, FAIL] + [OK] * 8, Autonomy.SUGGEST, LADDER) == (
        Autonomy.APPROVE,
        "promoted to approve after 8 verified successes (90% of 10)",
    )


def test_rate_is_measured_over_the_last_twenty_only() -> None:
    # six unverified outcomes hold it back until enough of them leave the last 20
    record = [FAIL] + [MEH] * 5 + [OK] * 18
    assert earned_level(record[:-1], Autonomy.SUGGEST, LADDER)[0] == Autonomy.SUGGEST  # 17 of 20
    assert earned_level(record, Autonomy.SUGGEST, LADDER) == (
        Autonomy.APPROVE,
        "promoted to approve after 18 verified successes (90% of 20)",
    )


def test_the_streak_restarts_after_a_promotion() -> None:
    assert earned_level([OK] * 9, Autonomy.OBSERVE, LADDER)[0] == Autonomy.SUGGEST
    assert earned_level([OK] * 10, Autonomy.OBSERVE, LADDER)[0] == Autonomy.APPROVE


def test_never_above_max_level_auto_must_be_configured() -> None:
    assert earned_level([OK] * 50, Autonomy.APPROVE, LADDER) == (
        Autonomy.APPROVE,
        "at approve: 50 of 50 outcomes verified, the most allowed",
    )
    to_auto = AutonomyLadder(enabled=True, max_level=Autonomy.AUTO)
    level, why = earned_level([OK] * 5, Autonomy.APPROVE, to_auto)
    assert level == Autonomy.AUTO and why.startswith("promoted to auto after 5 verified successes")


def test_a_rollback_demotes_one_level_at_once() -> None:
    level, why = earned_level([OK, ROLLBACK], Autonomy.AUTO, LADDER)
    assert (level, why) == (Autonomy.APPROVE, "demoted to approve after a rollback")


def test_two_failures_in_the_last_five_demote_once() -> None:
    level, why = earned_level([FAIL, OK, FAIL], Autonomy.APPROVE, LADDER)
    assert (level, why) == (Autonomy.SUGGEST, "demoted to suggest after 2 failures in the last 3")
    # the same two failures do not demote again; two new ones do
    assert earned_level([FAIL, OK, FAIL, OK], Autonomy.APPROVE, LADDER)[0] == Autonomy.SUGGEST
    assert earned_level([FAIL, OK, FAIL, FAIL, FAIL], Autonomy.APPROVE, LADDER)[0] == Autonomy.OBSERVE
    # failures further apart than the window do not demote
    assert earned_level([FAIL, OK, OK, OK, OK, FAIL], Autonomy.APPROVE, LADDER)[0] == Autonomy.APPROVE


def test_never_below_observe() -> None:
    assert earned_level([ROLLBACK] * 5, Autonomy.SUGGEST, LADDER)[0] == Autonomy.OBSERVE


def test_inconclusive_breaks_a_streak_but_is_no_failure() -> None:
    assert earned_level([OK, OK, MEH, OK, OK, OK], Autonomy.SUGGEST, LADDER)[0] == Autonomy.SUGGEST
    assert earned_level([MEH] * 5, Autonomy.APPROVE, LADDER)[0] == Autonomy.APPROVE


def test_model_outcomes_are_read_directly() -> None:
    def out(v: VerifyVerdict, rb: bool = False) -> Outcome:
        return Outcome(action_id="a", incident_id="i", ts=0, verdict=v, reason="", rolled_back=rb)

    assert earned_level([out(VerifyVerdict.PASS)] * 5, Autonomy.SUGGEST, LADDER)[0] == Autonomy.APPROVE
    assert earned_level([out(VerifyVerdict.FAIL, True)], Autonomy.SUGGEST, LADDER)[0] == Autonomy.OBSERVE


def test_wilson_lower_bound_can_hold_back_a_small_record() -> None:
    assert wilson_lower(0, 0) == 0.0
    assert 0.56 < wilson_lower(5, 5) < 0.57
    assert wilson_lower(95, 100) > 0.88
    strict = AutonomyLadder(enabled=True, min_lower_bound=0.8)
    assert earned_level([OK] * 5, Autonomy.SUGGEST, strict)[0] == Autonomy.SUGGEST
    assert earned_level([OK] * 15, Autonomy.SUGGEST, strict)[0] == Autonomy.SUGGEST
    level, why = earned_level([OK] * 16, Autonomy.SUGGEST, strict)
    assert (level, why) == (
        Autonomy.APPROVE,
        "promoted to approve after 16 verified successes (100% of 16, lower bound 81%)",
    )


def test_ladder_event_kinds() -> None:
    assert ladder_event(Autonomy.SUGGEST, Autonomy.APPROVE) == "pattern.promoted"
    assert ladder_event(Autonomy.APPROVE, Autonomy.OBSERVE) == "pattern.demoted"
    assert ladder_event(Autonomy.AUTO, Autonomy.AUTO) is None


def test_earned_effective_is_off_by_default_and_respects_the_service_cap() -> None:
    off = PolicyConfig.model_validate({"autonomy": "suggest"})
    eff = off.effective("process", "p", "api")
    assert earned_effective(eff, off, "p", "api", [OK] * 5) == (eff, None)

    on = PolicyConfig.model_validate(
        {
            "autonomy": "suggest",
            "autonomy_ladder": {"enabled": True, "max_level": "auto"},
            "services": {"payments": {"autonomy": "approve"}},
        }
    )
    new, why = earned_effective(on.effective("process", "p", "api"), on, "p", "api", [OK] * 10)
    assert new.autonomy == Autonomy.AUTO and why is not None
    assert new.autonomy_from.startswith("earned by pattern p on api: promoted to auto")
    capped, why = earned_effective(on.effective("process", "p", "payments"), on, "p", "payments", [OK] * 10)
    assert capped.autonomy == Autonomy.APPROVE
    assert why is not None and why.endswith("capped at approve by service payments")
    # no pattern (a fallback action): nothing to earn
    assert earned_effective(eff, on, None, "api", [OK] * 10)[1] is None


@pytest.mark.parametrize(
    ("bad", "field"),
    [
        ({"promote_after": 0}, ("autonomy_ladder", "promote_after")),
        ({"max_level": "yolo"}, ("autonomy_ladder", "max_level")),
        ({"min_success_rate": 1.5}, ("autonomy_ladder", "min_success_rate")),
        ({"demote_failures": 6}, ("autonomy_ladder",)),
    ],
)
def test_ladder_config_errors_name_the_field(bad: dict[str, object], field: tuple[str, ...]) -> None:
    with pytest.raises(ValidationError) as exc:
        PolicyConfig.model_validate({"autonomy_ladder": bad})
    assert [e["loc"] for e in exc.value.errors()] == [field]


def _decision(ts: float, verdict: str, by: str = "person:ana", gates: bool = True, pattern: str = "p",
              target: str = "api") -> Any:
    return Decision(incident_id="i", diagnosis_id="d", ts=ts, verdict=Verdict(verdict), decided_by=by,
                    pattern_id=pattern, action=ActionSpec(type="restart", target=target),
                    gates=[GateResult(gate="autonomy", passed=True, reason="approved by a person")] if gates else [])


def test_a_persons_approvals_and_denials_are_evidence_in_time_order() -> None:
    decisions = [
        _decision(3, "denied", gates=False),  # a person said no
        _decision(1, "approved"),  # a person said yes and the gates agreed
        _decision(2, "denied"),  # a person said yes, then a gate (say the rate limit) said no
        _decision(4, "approved", by="engine"),  # the engine alone: no person's evidence
        _decision(5, "approved", pattern="other"),
        _decision(6, "approved", target="web"),
    ]
    ev = people_evidence(decisions, "p", "api")
    assert [(e.ts, e.verdict) for e in ev] == [(1, "pass"), (2, "pass"), (3, "fail")]
    assert all(e.by == "person:ana" for e in ev)


def test_an_approval_never_acted_on_because_the_trouble_cleared_counts_neither_way() -> None:
    """A person approved, but the trouble cleared on its own before the engine could act (a blip):
    the answer is recorded as a decision, whose one gate says so. It says nothing of the remedy,
    which ran nowhere: counted as a success, a pattern whose troubles heal themselves would climb
    the ladder on blips; nor did the person say no."""
    cleared = Decision(incident_id="i", diagnosis_id="d", ts=2, verdict=Verdict.DENIED, decided_by="person:ana",
                       pattern_id="p", action=ActionSpec(type="restart", target="api"),
                       gates=[GateResult(gate=TROUBLE_CLEARED, passed=False, reason="cleared before it was acted on")])
    assert cleared.never_acted_on and not cleared.person_said_no and cleared.person_evidence is None
    ev = people_evidence([_decision(1, "approved"), cleared, _decision(3, "approved")], "p", "api")
    assert [(e.ts, e.verdict) for e in ev] == [(1, "pass"), (3, "pass")]


def test_a_persons_denials_demote_like_failures() -> None:
    denials = people_evidence([_decision(t, "denied", gates=False) for t in (1, 2)], "p", "api")
    level, reason = earned_level(denials, Autonomy.APPROVE, LADDER)
    assert level == Autonomy.SUGGEST and "2 failures" in reason


def test_the_ladder_says_one_success_one_failure_and_one_outcome_in_the_singular() -> None:
    one = AutonomyLadder(enabled=True, promote_after=1, demote_failures=1, demote_window=1)
    assert earned_level([OK], Autonomy.SUGGEST, one) == (
        Autonomy.APPROVE, "promoted to approve after 1 verified success (100% of 1)")
    assert earned_level([FAIL], Autonomy.APPROVE, one) == (
        Autonomy.SUGGEST, "demoted to suggest after 1 failure in the last 1")
    two = AutonomyLadder(enabled=True, promote_after=2, demote_failures=2, demote_window=2)
    assert earned_level([OK], Autonomy.SUGGEST, two) == (
        Autonomy.SUGGEST, "at suggest: 1 of 1 outcome verified, 1 verified success in a row")
    assert earned_level([OK, OK], Autonomy.SUGGEST, two) == (
        Autonomy.APPROVE, "promoted to approve after 2 verified successes (100% of 2)")
    assert earned_level([FAIL, FAIL], Autonomy.APPROVE, two) == (
        Autonomy.SUGGEST, "demoted to suggest after 2 failures in the last 2")
    assert earned_level([FAIL, OK], Autonomy.SUGGEST, two) == (
        Autonomy.SUGGEST, "at suggest: 1 of 2 outcomes verified, 1 verified success in a row")


def test_a_promotion_partly_earned_by_approvals_says_how_many_fixes_were_verified() -> None:
    """At ``approve`` each fix is a person's approval and then its outcome, two successes on the
    record: the fifth success in a row came after only two verified fixes, and the promotion to
    ``auto`` (audited, told to people) used to say "after 5 verified successes". It now says how
    many were verified and how many were a person's approval."""
    cfg = AutonomyLadder(enabled=True, max_level=Autonomy.AUTO)
    approval = people_evidence([_decision(1, "approved")], "p", "api")[0]
    record = [approval, OK, approval, OK, approval]
    level, reason = earned_level(record, Autonomy.APPROVE, cfg)
    assert level == Autonomy.AUTO
    assert reason == "promoted to auto after 5 successes (2 verified, 3 approvals by a person) (100% of 5)"
    level, reason = earned_level(record[:3], Autonomy.APPROVE, cfg)
    assert level == Autonomy.APPROVE
    assert reason.endswith("3 successes (1 verified, 2 approvals by a person) in a row")
