"""The store's tables (SQLAlchemy 2 declarative), portable between SQLite and PostgreSQL.

Each noun table keeps the whole noun in ``body`` (``model_dump(mode="json")``) plus indexed
copies of the fields that queries filter or sort on. A noun column with the same name as a
model field is filled from that field (see :data:`NOUN_TABLES`), a derived one by its function
(:data:`DERIVED`: an action's ``types``, ``multi`` and ``ended_at``, a decision's ``person`` and ``target``);
``first_seq`` is the seq of the audit event that first wrote the row and breaks ties in "oldest
first" orderings.

The schema is created by the Alembic migrations in ``migrations/versions``; keep the two in step
(a test compares them on both back ends). Names and ids are TEXT and sequence numbers BIGINT on
PostgreSQL (migration 0002); SQLite keeps 0001's declarations, which it does not enforce (any
length, 64-bit integers), so both back ends accept the same values.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, Float, Index, Integer, String, Text, false
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from autonomic.model import Action, ActionState, Decision, Diagnosis, Finding, Incident, Outcome

ID = String(64).with_variant(Text(), "postgresql")
NAME = String(255).with_variant(Text(), "postgresql")
SEQ = Integer().with_variant(BigInteger(), "postgresql")


class Base(DeclarativeBase):
    pass


class NounRow(Base):
    """Columns every noun table has."""

    __abstract__ = True

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    first_seq: Mapped[int] = mapped_column(SEQ, nullable=False)
    body: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False)


class FindingRow(NounRow):
    __tablename__ = "findings"

    incident_id: Mapped[str | None] = mapped_column(ID, index=True)
    service: Mapped[str] = mapped_column(NAME, index=True)
    cause: Mapped[str] = mapped_column(NAME, index=True)
    ts: Mapped[float] = mapped_column(Float, index=True)


class IncidentRow(NounRow):
    __tablename__ = "incidents"

    service: Mapped[str] = mapped_column(NAME, index=True)
    cause: Mapped[str] = mapped_column(NAME, index=True)
    state: Mapped[str] = mapped_column(String(32), index=True)
    opened_at: Mapped[float] = mapped_column(Float, index=True)
    closed_at: Mapped[float | None] = mapped_column(Float, index=True)  # migration 0003


class DiagnosisRow(NounRow):
    __tablename__ = "diagnoses"

    incident_id: Mapped[str] = mapped_column(ID, index=True)
    ts: Mapped[float] = mapped_column(Float, index=True)


class DecisionRow(NounRow):
    __tablename__ = "decisions"

    incident_id: Mapped[str] = mapped_column(ID, index=True)
    verdict: Mapped[str] = mapped_column(String(32), index=True)
    ts: Mapped[float] = mapped_column(Float, index=True)
    pattern_id: Mapped[str | None] = mapped_column(NAME)  # 0008
    # whether a person decided (decided_by is not "engine"), and the service its action is on
    # (None without one): derived, see DERIVED (0008)
    person: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default=false())
    target: Mapped[str | None] = mapped_column(NAME)

    # the autonomy ladder's read of people's answers on a pattern and service, not of every decision (0008)
    __table_args__ = (Index("ix_decisions_person_pattern_id_target", "person", "pattern_id", "target"),)


class ActionRow(NounRow):
    __tablename__ = "actions"

    incident_id: Mapped[str] = mapped_column(ID, index=True)
    decision_id: Mapped[str] = mapped_column(ID, index=True)
    service: Mapped[str] = mapped_column(NAME, index=True)
    type: Mapped[str] = mapped_column(NAME, index=True)
    state: Mapped[str] = mapped_column(String(32), index=True)
    created_at: Mapped[float] = mapped_column(Float, index=True)
    # every type the action runs, "|a|b|" (its own, then each step's): derived, see DERIVED (0004)
    types: Mapped[str] = mapped_column(Text, nullable=False, server_default="")
    # whether it runs more than one type (a workflow of several): derived, see DERIVED (0005)
    multi: Mapped[bool] = mapped_column(Boolean, index=True, nullable=False, server_default=false())
    # when it ended (its updated_at) once in a state of ENDED; NULL before, and when cancelled (0008)
    ended_at: Mapped[float | None] = mapped_column(Float)
    pattern_id: Mapped[str | None] = mapped_column(NAME)  # 0008

    # a decision's reads of a service's or a type's recent actions, whatever the history (0008)
    __table_args__ = (
        Index("ix_actions_type_created_at", "type", "created_at"),
        Index("ix_actions_service_created_at", "service", "created_at"),
        Index("ix_actions_multi_created_at", "multi", "created_at"),
        Index("ix_actions_service_state", "service", "state"),
        Index("ix_actions_service_ended_at", "service", "ended_at"),
        Index("ix_actions_service_pattern_id", "service", "pattern_id"),
    )


ENDED = frozenset({ActionState.SUCCEEDED.value, ActionState.FAILED.value, ActionState.ROLLED_BACK.value,
                   ActionState.ESCALATED.value})
"""The states an action ends in once it ran (every terminal state but cancelled): its ``ended_at`` is set."""


def ended_at(body: dict[str, Any]) -> float | None:
    """An action's ``ended_at`` column: its ``updated_at`` once its state is one of :data:`ENDED`, else None."""
    return float(body["updated_at"]) if body.get("state") in ENDED else None


def action_types(body: dict[str, Any]) -> str:
    """An action's ``types`` column: its type and each workflow step's, once each, as
    ``|process|config|`` (so finding ``|process|`` in it finds every action that runs a process step)."""
    steps = body.get("workflow") or []
    types = [str(body.get("type", "")), *(str(s.get("type", "")) for s in steps if isinstance(s, dict))]
    return "|" + "|".join(dict.fromkeys(t for t in types if t)) + "|"


class OutcomeRow(NounRow):
    __tablename__ = "outcomes"

    incident_id: Mapped[str] = mapped_column(ID, index=True)
    action_id: Mapped[str] = mapped_column(ID, index=True)
    ts: Mapped[float] = mapped_column(Float, index=True)


class AuditRow(Base):
    """Append-only; never updated or deleted by the store."""

    __tablename__ = "audit"

    seq: Mapped[int] = mapped_column(SEQ, primary_key=True, autoincrement=False)
    ts: Mapped[float] = mapped_column(Float, nullable=False, index=True)
    actor: Mapped[str] = mapped_column(NAME, nullable=False)
    kind: Mapped[str] = mapped_column(NAME, nullable=False)
    subject: Mapped[str] = mapped_column(NAME, nullable=False, index=True)
    data: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False)
    prev_hash: Mapped[str] = mapped_column(String(64), nullable=False)
    hash: Mapped[str] = mapped_column(String(64), nullable=False)


class AuditHeadRow(Base):
    """Exactly one row (id 1): the seq and hash of the last audit event, and the anchor the kept
    chain starts from (migration 0007): the seq and hash of the last event retention pruned (0
    and the genesis hash while none was), so the events after it still verify."""

    __tablename__ = "audit_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    seq: Mapped[int] = mapped_column(SEQ, nullable=False)
    hash: Mapped[str] = mapped_column(String(64), nullable=False)
    pruned_seq: Mapped[int] = mapped_column(SEQ, nullable=False, server_default="0")
    pruned_hash: Mapped[str] = mapped_column(String(64), nullable=False, server_default="0" * 64)


class PatternTallyRow(Base):
    """What retention pruned of a pattern's tallies (see ``Store.pattern_tallies``), per
    (pattern, service acted on): added to what the kept actions count, so pruning changes no
    pattern's record (migration 0007)."""

    __tablename__ = "pattern_tallies"

    pattern_id: Mapped[str] = mapped_column(NAME, primary_key=True)
    service: Mapped[str] = mapped_column(NAME, primary_key=True)
    succeeded: Mapped[int] = mapped_column(Integer, nullable=False)
    failed: Mapped[int] = mapped_column(Integer, nullable=False)


class PatternEvidenceRow(Base):
    """One item of a pattern's autonomy record (``Store.pattern_record``) whose outcome or
    decision retention pruned: ``ref`` is that outcome's or decision's id (so it is kept once),
    ``verdict`` what the ladder reads (pass, fail, inconclusive; a person's answer as pass or
    fail). The ladder replays the whole record in order, so the items are kept, not a count
    (migration 0007). ``acted_at`` is when an outcome's action was created (a person's answer:
    its time), so the ladder can tell which remedy it judged when a pattern changed; NULL in
    items pruned before migration 0013 (read as ``ts``)."""

    __tablename__ = "pattern_evidence"

    ref: Mapped[str] = mapped_column(ID, primary_key=True)
    pattern_id: Mapped[str] = mapped_column(NAME, nullable=False)
    service: Mapped[str] = mapped_column(NAME, nullable=False)
    ts: Mapped[float] = mapped_column(Float, nullable=False)
    verdict: Mapped[str] = mapped_column(String(32), nullable=False)
    rolled_back: Mapped[bool] = mapped_column(Boolean, nullable=False)
    person: Mapped[bool] = mapped_column(Boolean, nullable=False)
    acted_at: Mapped[float | None] = mapped_column(Float, nullable=True)

    __table_args__ = (Index("ix_pattern_evidence_pattern_service", "pattern_id", "service"),)


class StateRow(Base):
    """Small named JSON values: pause flags, breaker state, ..."""

    __tablename__ = "state"

    key: Mapped[str] = mapped_column(NAME, primary_key=True)
    value: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False)
    updated_at: Mapped[float] = mapped_column(Float, nullable=False)


# noun class -> (kind name used in audit data, row class)
NOUN_TABLES: dict[type, tuple[str, type[NounRow]]] = {
    Finding: ("finding", FindingRow),
    Incident: ("incident", IncidentRow),
    Diagnosis: ("diagnosis", DiagnosisRow),
    Decision: ("decision", DecisionRow),
    Action: ("action", ActionRow),
    Outcome: ("outcome", OutcomeRow),
}

# noun row class -> {column: its value from the noun's body}, for indexed columns that are not
# a copy of one model field
DERIVED: dict[type[NounRow], dict[str, Any]] = {
    ActionRow: {"types": action_types, "multi": lambda body: action_types(body).count("|") > 2,
                "ended_at": ended_at},
    DecisionRow: {"person": lambda body: body.get("decided_by", "engine") != "engine",
                  "target": lambda body: (body.get("action") or {}).get("target")},
}
