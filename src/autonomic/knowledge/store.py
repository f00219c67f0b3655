"""The knowledge store: every noun, the hash-chained audit log and named state, in one database.

SQLite (WAL) is the embedded default; the schema is portable to PostgreSQL. The store is the
truth: each noun is written together with exactly one audit event in a single transaction
(:meth:`Store.record`), so after a crash the store holds either both or neither.

Concurrency. Each call opens its own Session, so one Store may be shared by threads. On SQLite
every write transaction starts with ``BEGIN IMMEDIATE`` (taking the write lock up front, waiting
up to ``busy_timeout`` for it) so two processes on one file (the engine and ``autonomic approve``)
never interleave the audit chain; reads use a plain ``BEGIN`` and, under WAL, never block
writers. On other databases the audit head row is read ``FOR UPDATE`` to the same effect.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from alembic import command
from alembic.config import Config
from sqlalchemy import ColumnElement, Engine, Text, cast, create_engine, delete, event, func, select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.orm import Session
from sqlalchemy.pool import StaticPool

from autonomic.errors import AuditChainError, StoreError
from autonomic.knowledge.audit import AuditReport, make_event, verify_chain
from autonomic.knowledge.tables import (
    NOUN_TABLES,
    ActionRow,
    AuditHeadRow,
    AuditRow,
    DecisionRow,
    DiagnosisRow,
    FindingRow,
    IncidentRow,
    NounRow,
    OutcomeRow,
    StateRow,
)
from autonomic.model import (
    Action,
    ActionState,
    AuditEvent,
    Decision,
    Diagnosis,
    Finding,
    Frozen,
    Incident,
    IncidentState,
    Outcome,
    Verdict,
)

Noun = Finding | Incident | Diagnosis | Decision | Action | Outcome
T = TypeVar("T", bound=Frozen)

_MIGRATIONS = Path(__file__).with_name("migrations")
_WRITE = "autonomic_write"  # execution option: this connection begins with BEGIN IMMEDIATE
_HEAD_ID = 1
_MIN_PREFIX = 4


class IdLookupError(KeyError):
    """No id, or more than one, starts with the given prefix. ``str()`` is the plain message."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


def _install_sqlite_hooks(engine: Engine) -> None:
    """WAL, busy timeout and foreign keys on every connection; SQLAlchemy emits BEGIN itself
    (pysqlite's own transaction handling is switched off), IMMEDIATE for write transactions."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("PRAGMA busy_timeout=10000")
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get(_WRITE) else "BEGIN")


def _kind_and_table(model: type) -> tuple[str, type[NounRow]]:
    try:
        return NOUN_TABLES[model]
    except KeyError:
        names = ", ".join(m.__name__ for m in NOUN_TABLES)
        raise TypeError(
            f"{getattr(model, '__name__', model)!r} is not a stored noun (one of {names})"
        ) from None


def _index_values(row_cls: type[NounRow], body: dict[str, Any]) -> dict[str, Any]:
    """The indexed copies of a noun's fields: every row column named like a model field."""
    return {c.key: body[c.key] for c in row_cls.__table__.columns if c.key not in ("id", "first_seq", "body")}


def _event(row: AuditRow) -> AuditEvent:
    return AuditEvent(
        seq=row.seq,
        ts=row.ts,
        actor=row.actor,
        kind=row.kind,
        subject=row.subject,
        data=row.data,
        prev_hash=row.prev_hash,
        hash=row.hash,
    )


def _parse_data(text: str | None) -> Any:
    """Stored audit data as JSON; something that cannot be parsed still gets hashed (and so fails)."""
    try:
        return json.loads(text) if text is not None else None
    except ValueError:
        return {"unreadable": text}


class Store:
    """Persistent knowledge: nouns, the audit chain and named state. See the module docstring."""

    def __init__(self, url: str) -> None:
        """Open (creating if needed) the database at ``url`` and bring its schema to the latest
        migration. ``"sqlite://"`` is a private in-memory database."""
        parsed = make_url(url)
        sqlite = parsed.get_backend_name() == "sqlite"
        memory = sqlite and parsed.database in (None, "", ":memory:")
        kwargs: dict[str, Any] = {}
        if sqlite:
            kwargs["connect_args"] = {"check_same_thread": False}
            if memory:
                kwargs["poolclass"] = StaticPool
            else:
                Path(str(parsed.database)).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(parsed, **kwargs)
        if sqlite:
            _install_sqlite_hooks(engine)
        self._engine = engine
        self._writer = engine.execution_options(**{_WRITE: True})
        # in-memory SQLite is one shared connection: calls from several threads take turns
        self._lock: threading.RLock | None = threading.RLock() if memory else None
        try:
            self._migrate()
        except BaseException:
            engine.dispose()
            raise

    def close(self) -> None:
        """Release every pooled connection. The store must not be used afterwards."""
        self._engine.dispose()

    # --- plumbing ----------------------------------------------------------------------------

    def _migrate(self) -> None:
        config = Config()
        config.set_main_option("script_location", str(_MIGRATIONS))
        with self._session(write=True) as session:
            config.attributes["connection"] = session.connection()
            command.upgrade(config, "head")

    @contextlib.contextmanager
    def _session(self, *, write: bool) -> Iterator[Session]:
        """One Session and one transaction; committed on success, rolled back on any error.
        Database errors come out as StoreError (without SQL parameters, which may hold secrets)."""
        guard = self._lock if self._lock is not None else contextlib.nullcontext()
        with guard:
            try:
                with Session(self._writer if write else self._engine, expire_on_commit=False) as s, s.begin():
                    yield s
            except SQLAlchemyError as e:
                cause = e.orig if isinstance(e, DBAPIError) else e.__class__.__name__
                raise StoreError(f"store {'write' if write else 'read'} failed: {cause}") from e

    @staticmethod
    def _head(session: Session) -> AuditHeadRow:
        head = session.execute(
            select(AuditHeadRow).where(AuditHeadRow.id == _HEAD_ID).with_for_update()
        ).scalar_one_or_none()
        if head is None:
            raise AuditChainError("audit head row is missing (the audit log was tampered with)")
        return head

    @staticmethod
    def _append(
        session: Session, head: AuditHeadRow, actor: str, kind: str, subject: str, data: dict[str, Any] | None
    ) -> AuditEvent:
        ev = make_event(
            seq=head.seq + 1,
            ts=time.time(),
            actor=actor,
            kind=kind,
            subject=subject,
            data=data,
            prev_hash=head.hash,
        )
        session.add(
            AuditRow(
                seq=ev.seq,
                ts=ev.ts,
                actor=ev.actor,
                kind=ev.kind,
                subject=ev.subject,
                data=ev.data,
                prev_hash=ev.prev_hash,
                hash=ev.hash,
            )
        )
        head.seq, head.hash = ev.seq, ev.hash
        return ev

    def _read_nouns(self, model: type[T], stmt: Any) -> list[T]:
        with self._session(write=False) as s:
            return [model.model_validate(row.body) for row in s.scalars(stmt)]

    # --- writes ------------------------------------------------------------------------------

    def record(
        self, *nouns: Noun, actor: str, event: str, subject: str, data: dict[str, Any] | None = None
    ) -> AuditEvent:
        """Upsert every noun by id and append one audit event, all in one transaction: either
        everything is written or nothing. The event's data is ``data`` plus
        ``{"nouns": [{"kind": ..., "id": ...}, ...]}``. Returns the event written."""
        tables = [_kind_and_table(type(n)) for n in nouns]
        payload = {
            **(data or {}),
            "nouns": [{"kind": kind, "id": n.id} for n, (kind, _) in zip(nouns, tables, strict=True)],
        }
        with self._session(write=True) as s:
            head = self._head(s)
            for noun, (_, row_cls) in zip(nouns, tables, strict=True):
                body = noun.model_dump(mode="json")
                values = _index_values(row_cls, body)
                row = s.get(row_cls, noun.id)
                if row is None:
                    s.add(row_cls(id=noun.id, first_seq=head.seq + 1, body=body, **values))
                else:
                    row.body = body
                    for key, value in values.items():
                        setattr(row, key, value)
            return self._append(s, head, actor, event, subject, payload)

    def audit(self, actor: str, event: str, subject: str, data: dict[str, Any] | None = None) -> AuditEvent:
        """Append an audit event that writes no noun (a human act, the engine starting, ...)."""
        with self._session(write=True) as s:
            return self._append(s, self._head(s), actor, event, subject, data)

    # --- noun reads --------------------------------------------------------------------------

    def get(self, model: type[T], id: str) -> T | None:
        """The noun of this class with exactly this id, or None."""
        _, row_cls = _kind_and_table(model)
        with self._session(write=False) as s:
            row = s.get(row_cls, id)
            return None if row is None else model.model_validate(row.body)

    def resolve_id(self, model: type[Noun], prefix: str) -> str:
        """The full id of the one noun of this class whose id starts with ``prefix`` (at least
        4 characters). Raises KeyError (IdLookupError) when none or several match."""
        kind, row_cls = _kind_and_table(model)
        prefix = prefix.strip()
        if len(prefix) < _MIN_PREFIX:
            raise IdLookupError(
                f"{kind} id prefix {prefix!r} is too short: give at least {_MIN_PREFIX} characters"
            )
        with self._session(write=False) as s:
            if s.get(row_cls, prefix) is not None:
                return prefix
            found = s.scalars(select(row_cls.id).where(row_cls.id.startswith(prefix, autoescape=True))).all()
        matches = sorted(i for i in found if i.startswith(prefix))  # LIKE ignores case on SQLite
        if not matches:
            raise IdLookupError(f"no {kind} has an id starting with {prefix!r}")
        if len(matches) > 1:
            shown = ", ".join(matches[:5]) + (", ..." if len(matches) > 5 else "")
            raise IdLookupError(f"{kind} id prefix {prefix!r} is ambiguous: {len(matches)} match ({shown})")
        return matches[0]

    def open_incident(self, service: str, cause: str) -> Incident | None:
        """The non-terminal incident for (service, cause), if any (the newest, should there be two)."""
        terminal = [s.value for s in IncidentState if s.terminal]
        stmt = (
            select(IncidentRow)
            .where(
                IncidentRow.service == service, IncidentRow.cause == cause, IncidentRow.state.not_in(terminal)
            )
            .order_by(IncidentRow.opened_at.desc(), IncidentRow.first_seq.desc())
            .limit(1)
        )
        found = self._read_nouns(Incident, stmt)
        return found[0] if found else None

    def incidents(
        self, states: Iterable[IncidentState] | None = None, service: str | None = None, limit: int = 200
    ) -> list[Incident]:
        """Incidents, newest opened first, optionally only in ``states`` and for ``service``."""
        where: list[ColumnElement[bool]] = []
        if states is not None:
            where.append(IncidentRow.state.in_([IncidentState(s).value for s in states]))
        if service is not None:
            where.append(IncidentRow.service == service)
        stmt = (
            select(IncidentRow)
            .where(*where)
            .order_by(IncidentRow.opened_at.desc(), IncidentRow.first_seq.desc())
            .limit(limit)
        )
        return self._read_nouns(Incident, stmt)

    def findings(self, incident_id: str) -> list[Finding]:
        """The incident's findings, oldest first."""
        stmt = (
            select(FindingRow)
            .where(FindingRow.incident_id == incident_id)
            .order_by(FindingRow.ts, FindingRow.first_seq)
        )
        return self._read_nouns(Finding, stmt)

    def diagnoses(self, incident_id: str) -> list[Diagnosis]:
        """The incident's diagnoses, oldest first."""
        stmt = (
            select(DiagnosisRow)
            .where(DiagnosisRow.incident_id == incident_id)
            .order_by(DiagnosisRow.ts, DiagnosisRow.first_seq)
        )
        return self._read_nouns(Diagnosis, stmt)

    def decisions(
        self, incident_id: str | None = None, verdicts: Iterable[Verdict] | None = None
    ) -> list[Decision]:
        """Decisions, oldest first, optionally for one incident and only with ``verdicts``."""
        where: list[ColumnElement[bool]] = []
        if incident_id is not None:
            where.append(DecisionRow.incident_id == incident_id)
        if verdicts is not None:
            where.append(DecisionRow.verdict.in_([Verdict(v).value for v in verdicts]))
        stmt = select(DecisionRow).where(*where).order_by(DecisionRow.ts, DecisionRow.first_seq)
        return self._read_nouns(Decision, stmt)

    def actions(
        self,
        incident_id: str | None = None,
        states: Iterable[ActionState] | None = None,
        service: str | None = None,
    ) -> list[Action]:
        """Actions, oldest created first, optionally filtered by incident, state and service."""
        where: list[ColumnElement[bool]] = []
        if incident_id is not None:
            where.append(ActionRow.incident_id == incident_id)
        if states is not None:
            where.append(ActionRow.state.in_([ActionState(s).value for s in states]))
        if service is not None:
            where.append(ActionRow.service == service)
        stmt = select(ActionRow).where(*where).order_by(ActionRow.created_at, ActionRow.first_seq)
        return self._read_nouns(Action, stmt)

    def outcomes(self, incident_id: str | None = None, action_id: str | None = None) -> list[Outcome]:
        """Outcomes, oldest first, optionally for one incident and/or one action."""
        where: list[ColumnElement[bool]] = []
        if incident_id is not None:
            where.append(OutcomeRow.incident_id == incident_id)
        if action_id is not None:
            where.append(OutcomeRow.action_id == action_id)
        stmt = select(OutcomeRow).where(*where).order_by(OutcomeRow.ts, OutcomeRow.first_seq)
        return self._read_nouns(Outcome, stmt)

    def count_actions(self, since: float, *, type: str | None = None, service: str | None = None) -> int:
        """How many actions were created at or after ``since`` (optionally of one type and/or on one
        service), not counting CANCELLED ones: the numbers rate limits are checked against."""
        where: list[ColumnElement[bool]] = [
            ActionRow.created_at >= since,
            ActionRow.state != ActionState.CANCELLED.value,
        ]
        if type is not None:
            where.append(ActionRow.type == type)
        if service is not None:
            where.append(ActionRow.service == service)
        with self._session(write=False) as s:
            return int(s.scalar(select(func.count()).select_from(ActionRow).where(*where)) or 0)

    # --- named state -------------------------------------------------------------------------

    def get_state(self, key: str) -> dict[str, Any] | None:
        """The JSON value stored under ``key``, or None."""
        with self._session(write=False) as s:
            row = s.get(StateRow, key)
            return None if row is None else dict(row.value)

    def set_state(
        self,
        key: str,
        value: dict[str, Any] | None,
        *,
        actor: str,
        event: str,
        data: dict[str, Any] | None = None,
    ) -> AuditEvent:
        """Store ``value`` under ``key`` (None deletes it) and audit the change (subject ``key``,
        data ``data`` plus ``{"value": value}``) in the same transaction."""
        if value is not None and not isinstance(value, dict):
            raise TypeError(f"state value for {key!r} must be a dict or None, not {type(value).__name__}")
        with self._session(write=True) as s:
            head = self._head(s)
            if value is None:
                s.execute(delete(StateRow).where(StateRow.key == key))
            else:
                row = s.get(StateRow, key)
                if row is None:
                    s.add(StateRow(key=key, value=value, updated_at=time.time()))
                else:
                    row.value, row.updated_at = value, time.time()
            return self._append(s, head, actor, event, key, {**(data or {}), "value": value})

    def states(self, prefix: str) -> dict[str, dict[str, Any]]:
        """Every stored key starting with ``prefix`` and its value."""
        with self._session(write=False) as s:
            rows = s.scalars(select(StateRow).where(StateRow.key.startswith(prefix, autoescape=True))).all()
            return {r.key: dict(r.value) for r in rows if r.key.startswith(prefix)}

    # --- audit reads -------------------------------------------------------------------------

    def audit_events(
        self, since_seq: int = 0, limit: int | None = None, subject: str | None = None
    ) -> list[AuditEvent]:
        """Audit events with seq greater than ``since_seq``, in order, optionally about one subject."""
        stmt = select(AuditRow).where(AuditRow.seq > since_seq).order_by(AuditRow.seq)
        if subject is not None:
            stmt = stmt.where(AuditRow.subject == subject)
        if limit is not None:
            stmt = stmt.limit(limit)
        with self._session(write=False) as s:
            return [_event(r) for r in s.scalars(stmt)]

    def verify_audit(self) -> AuditReport:
        """Recompute every hash and check the links, seq continuity and the head row, reading the
        whole chain in one consistent snapshot."""
        with self._session(write=False) as s:
            head = s.get(AuditHeadRow, _HEAD_ID)
            head_pair = None if head is None else (head.seq, head.hash)
            cols = [
                getattr(AuditRow, c) for c in ("seq", "ts", "actor", "kind", "subject", "prev_hash", "hash")
            ]
            # data is read as text so a row edited into invalid JSON is reported, not raised
            stmt = select(*cols, cast(AuditRow.data, Text).label("data_text")).order_by(AuditRow.seq)
            rows = s.execute(stmt.execution_options(yield_per=500))
            events = (
                AuditEvent.model_construct(
                    seq=r.seq,
                    ts=r.ts,
                    actor=r.actor,
                    kind=r.kind,
                    subject=r.subject,
                    data=_parse_data(r.data_text),
                    prev_hash=r.prev_hash,
                    hash=r.hash,
                )
                for r in rows
            )
            return verify_chain(events, head_pair)
