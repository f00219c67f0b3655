"""The knowledge store: every noun, the hash-chained audit log and named state, in one database.

SQLite (WAL) is the embedded default; PostgreSQL works too (``postgresql+psycopg://user:pass@host/db``,
or ``postgresql://...``, with the ``postgres`` extra installed) and is tested against a real server.
The store is the truth: each noun is written together with exactly one audit event in a single
transaction (:meth:`Store.record`), so after a crash the store holds either both or neither.

Concurrency. Each call opens its own Session, so one Store may be shared by threads. Write
transactions are serialised up front, so two processes on one database (the engine and
``autonomic approve``) never interleave the audit chain and a unit of work sees no other writer's
commits while it runs: on SQLite every write transaction starts with ``BEGIN IMMEDIATE`` (taking
the write lock, waiting up to ``busy_timeout`` for it); on PostgreSQL with a transaction-scoped
advisory lock (``pg_advisory_xact_lock``), which also serialises the migrations of Stores opened
at once on an empty database, and the audit head row is read ``FOR UPDATE`` as well. Reads use a
plain ``BEGIN`` on SQLite (under WAL they never block writers) and a read-only ``REPEATABLE READ``
transaction on PostgreSQL, so that a read transaction (:meth:`Store.reading`,
:meth:`Store.verify_audit`) is one snapshot there too, not one per statement.

Replicas. Several engines may share one database only with leader election on
(``engine.leader_election``, :mod:`autonomic.knowledge.lease`): one of them leads and writes, and
while it leads every write transaction of its Store first checks, under the write lock, that the
lease still names it (:meth:`Store.fence`), so a replica that lost the lease cannot write.
Without it, one engine per database (its in-memory caches assume it is the only writer of
incidents and actions); the CLI and the API of other processes may write beside it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from time import monotonic, sleep
from typing import Any, TypeVar

from alembic import command
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError
from pydantic_core import PydanticSerializationError, to_json
from sqlalchemy import (
    Boolean,
    ColumnElement,
    Connection,
    Engine,
    Table,
    Text,
    and_,
    bindparam,
    case,
    cast,
    create_engine,
    delete,
    event,
    func,
    insert,
    or_,
    select,
    true,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, SQLAlchemyError
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.pool import StaticPool
from sqlalchemy.sql.functions import FunctionElement

from autonomic.clock import local_stamp
from autonomic.errors import AuditChainError, NotLeaderError, StoreError, StoreValueError
from autonomic.knowledge.audit import (
    GENESIS_HASH,
    AuditReport,
    make_event,
    plain_data,
    verify_chain,
    without_nul,
)
from autonomic.knowledge.lease import Lease, lease_key
from autonomic.knowledge.tables import (
    DERIVED,
    ENDED,
    NOUN_TABLES,
    ActionRow,
    AuditHeadRow,
    AuditRow,
    Base,
    DecisionRow,
    DiagnosisRow,
    FindingRow,
    IncidentRow,
    NounRow,
    OutcomeRow,
    PatternEvidenceRow,
    PatternTallyRow,
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
from autonomic.redact import Secrets, shown_url

Noun = Finding | Incident | Diagnosis | Decision | Action | Outcome
T = TypeVar("T", bound=Frozen)

_MIGRATIONS = Path(__file__).with_name("migrations")
_WRITE = "autonomic_write"  # execution option: a write transaction (BEGIN IMMEDIATE, or the advisory lock)
log = logging.getLogger(__name__)
# pg_advisory_xact_lock key of the store's write lock (per database): b"autonomi" as a bigint
_PG_WRITE_LOCK = int.from_bytes(b"autonomi", "big")
_PG_WRITE_IDLE_S = 5.0  # a write transaction idle this long between statements is ended by the server
_PG_IDLE_S = 30.0  # any other transaction idle this long between statements is ended by the server
_LOCK_WAIT_S = 10.0  # how long a write waits for the write lock (SQLite's busy_timeout, PostgreSQL's lock_timeout)
_MIGRATION_WAIT_S = 600.0  # how long opening waits for another process's migration to finish
# connection info key: (the server's clock, this host's monotonic clock) as a write transaction
# took the write lock on PostgreSQL (see _install_postgresql_hooks and Store._now_in)
_SERVER_CLOCK_AT_LOCK = "autonomic_server_clock_at_lock"
_HEAD_ID = 1
_HEAD: Table = AuditHeadRow.__table__  # type: ignore[assignment]
_AUDIT: Table = AuditRow.__table__  # type: ignore[assignment]
_AUDIT_INSERT = insert(_AUDIT)
_STATE_BY_KEY = select(StateRow.value).where(StateRow.key == bindparam("key"))
_STATES_BY_KEYS = select(StateRow.key, StateRow.value).where(StateRow.key.in_(bindparam("keys", expanding=True)))
_FINDINGS_OF = (select(FindingRow.body).where(FindingRow.incident_id == bindparam("incident"))
                .order_by(FindingRow.ts, FindingRow.first_seq))
_DIAGNOSES_OF = (select(DiagnosisRow.body).where(DiagnosisRow.incident_id == bindparam("incident"))
                 .order_by(DiagnosisRow.ts, DiagnosisRow.first_seq))
_LIVE = [s.value for s in ActionState if not s.terminal]


def _n(cond: ColumnElement[bool]) -> Any:
    return func.coalesce(func.sum(case((cond, 1), else_=0)), 0)


class _HasText(FunctionElement[bool]):
    """``haystack`` contains ``needle`` as plain text: ``instr(h, n) > 0`` on SQLite,
    ``strpos(h, n) > 0`` on PostgreSQL. Not LIKE: SQLite prepares a statement whose LIKE pattern
    is a bound parameter again at every execution (the pattern could allow an index), which made
    the rate-limit count cost twice what it did; and no wildcard needs escaping."""

    type = Boolean()
    inherit_cache = True
    name = "has_text"


@compiles(_HasText, "sqlite")
def _has_text_sqlite(element: _HasText, compiler: Any, **kw: Any) -> str:
    return f"(instr({compiler.process(element.clauses, **kw)}) > 0)"


@compiles(_HasText, "postgresql")
def _has_text_pg(element: _HasText, compiler: Any, **kw: Any) -> str:
    return f"(strpos({compiler.process(element.clauses, **kw)}) > 0)"


def _of_type(type_text: Any, action_type: Any) -> ColumnElement[bool]:
    """An action counts under every type it runs: its own, and for a workflow of several types
    (``multi``) each one in its ``types`` column. Each term has an index (type; multi), so with
    ``service = ...`` beside it SQLite reads only the matching rows (a multi-index OR), not every
    action of the week. An action written by an autonomic from before migration 0004 or 0005
    still running beside the one that migrated the store (a rolling deploy, a newer CLI beside an
    older engine) has no types or multi: it counts under its own type, as that version counted it."""
    return or_(ActionRow.type == action_type,
               and_(ActionRow.multi == true(), _HasText(ActionRow.types, type_text)))


_IS_TYPE = _of_type(bindparam("type_text"), bindparam("type"))
_IS_SVC = ActionRow.service == bindparam("service")
_DAY, _WEEK = ActionRow.created_at >= bindparam("day"), ActionRow.created_at >= bindparam("week")
_ACTION_COUNTS = select(
    _n(_IS_TYPE & _DAY), _n(_IS_TYPE & _WEEK), _n(_IS_SVC & _DAY), _n(_IS_SVC & _WEEK),
).where(ActionRow.created_at >= bindparam("since"), ActionRow.state != ActionState.CANCELLED.value, _IS_TYPE | _IS_SVC)
_BUSY_SERVICES = select(ActionRow.service).where(ActionRow.state.in_(_LIVE)).distinct()
_LIVE_DECISIONS = select(ActionRow.decision_id).where(ActionRow.state.in_(_LIVE))
_LIVE_ACTIONS = select(ActionRow.id).where(ActionRow.state.in_(_LIVE))
# fields of a stored noun that are inputs, not things shown: an undo puts a snapshot back (an
# action's ``undo``, a workflow step's ``snapshot``) and params are applied again after a crash,
# so the secrets net (Store.hide) leaves them be
_RESTORED = frozenset({"undo", "snapshot", "params"})
# two index lookups whatever the service's history: (service, state) and (service, ended_at)
_SERVICE_ACTIVITY = select(
    select(ActionRow.id).where(ActionRow.service == bindparam("service"), ActionRow.state.in_(_LIVE)).exists(),
    select(func.max(ActionRow.ended_at)).where(ActionRow.service == bindparam("service")).scalar_subquery(),
)
_OK, _BAD = ActionState.SUCCEEDED.value, [ActionState.FAILED.value, ActionState.ROLLED_BACK.value]
_ESCALATED = ActionState.ESCALATED.value
TALLIED_STATES = frozenset({ActionState.SUCCEEDED, ActionState.FAILED, ActionState.ROLLED_BACK,
                            ActionState.ESCALATED})
"""The action states :meth:`Store.pattern_tallies` counts; a write in any other state leaves them as they were."""
_PATTERN_ID = ActionRow.body["pattern_id"].as_string().label("pattern_id")
# an escalated action with a failed outcome made things worse and stayed (its undo failed, or a
# pause held it): a failure; one escalated as inconclusive, or before any verdict, is neither
_ESCALATED_FAILURE = and_(ActionRow.state == _ESCALATED, select(OutcomeRow.id).where(
    OutcomeRow.action_id == ActionRow.id, OutcomeRow.body["verdict"].as_string() == "fail").exists())
_PATTERN_TALLIES = (  # grouped by the label: PostgreSQL binds each copy of the JSON path apart
    select(_PATTERN_ID, ActionRow.service, func.sum(case((ActionRow.state == _OK, 1), else_=0)),
           func.sum(case((or_(ActionRow.state.in_(_BAD), _ESCALATED_FAILURE), 1), else_=0)))
    .where(ActionRow.state.in_([_OK, *_BAD, _ESCALATED]))
    .group_by(_PATTERN_ID, ActionRow.service)
)
PRUNED_KEY = "retention:pruned"
"""Named state: the latest cut-off each kind of history was pruned at (see Store.pruned_before)."""
_TERMINAL_INCIDENTS = [s.value for s in IncidentState if s.terminal]


def _prunable_incidents(closed_before: float) -> Any:
    """SELECT the ids of incidents retention may prune (see Store.prunable_incidents)."""
    kept_action = select(ActionRow.id).where(
        ActionRow.incident_id == IncidentRow.id,
        or_(ActionRow.state.in_(_LIVE), ActionRow.created_at >= closed_before)).exists()
    return select(IncidentRow.id).where(IncidentRow.closed_at < closed_before,
                                        IncidentRow.state.in_(_TERMINAL_INCIDENTS), ~kept_action)


def _prunable_findings(before: float) -> Any:
    """SELECT the ids of findings from before ``before`` whose incident is closed, or that have none."""
    closed = select(IncidentRow.id).where(IncidentRow.id == FindingRow.incident_id,
                                          IncidentRow.closed_at.is_not(None),
                                          IncidentRow.state.in_(_TERMINAL_INCIDENTS)).exists()
    return select(FindingRow.id).where(FindingRow.ts < before, FindingRow.incident_id.is_(None) | closed)


# the columns Store.fill_derived fills: those added after 0003 (what an older autonomic still
# running beside a newer one may leave empty); the rest every version has written
_FILLED = frozenset({"types", "multi", "ended_at", "pattern_id", "person", "target"})
# the autonomy ladder's record of one (pattern, service): see Store.pattern_record
_PAIR_OUTCOMES = (select(OutcomeRow.ts, OutcomeRow.body["verdict"].as_string(),
                         OutcomeRow.body["rolled_back"].as_boolean(), ActionRow.created_at)
                  .join(ActionRow, OutcomeRow.action_id == ActionRow.id)
                  .where(ActionRow.service == bindparam("service"), ActionRow.pattern_id == bindparam("pattern"))
                  .order_by(OutcomeRow.ts, OutcomeRow.first_seq))
_PAIR_ANSWERS = (select(DecisionRow.body)
                 .where(DecisionRow.person == true(), DecisionRow.pattern_id == bindparam("pattern"),
                        DecisionRow.target == bindparam("service"),
                        DecisionRow.verdict.in_([Verdict.APPROVED.value, Verdict.DENIED.value]))
                 .order_by(DecisionRow.ts, DecisionRow.first_seq))
_HEAD_FOR_UPDATE = select(_HEAD.c.seq, _HEAD.c.hash).where(_HEAD.c.id == _HEAD_ID).with_for_update()
_HEAD_UPDATE = (update(_HEAD).where(_HEAD.c.id == _HEAD_ID)
                .values(seq=bindparam("new_seq"), hash=bindparam("new_hash")))
_MIN_PREFIX = 4


def _state_has(fields: Mapping[str, str | None]) -> ColumnElement[bool]:
    """A named state's value has every field of ``fields`` at its value there (a missing field
    counts as None): the condition of Store.set_state_unless and Store.delete_state_if."""
    return and_(true(), *(StateRow.value[field].as_string().is_not_distinct_from(want)
                          for field, want in fields.items()))


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
            cursor.execute(f"PRAGMA busy_timeout={int(_LOCK_WAIT_S * 1000)}")
            _wal(cursor)
            cursor.execute("PRAGMA foreign_keys=ON")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get(_WRITE) else "BEGIN")


def _wal(cursor: Any) -> None:
    """Put the database file in WAL mode (it stays so: a later connection finds it set and does
    nothing). Switching a new file from its rollback journal takes a shared lock, then an
    exclusive one; two connections doing so at the same moment (processes starting together)
    would deadlock, so SQLite answers "database is locked" at once instead of waiting out
    busy_timeout. The switch is therefore tried again for up to 10 s, like any other lock wait
    (the store's tests saw four Stores opened at once fail so about one run in a hundred)."""
    deadline = monotonic() + 10.0  # (imported by name: tests replace this module's `time`)
    while True:
        try:
            if str(cursor.execute("PRAGMA journal_mode").fetchone()[0]).lower() != "wal":
                cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as e:
            if "locked" not in str(e) or monotonic() >= deadline:
                raise
            sleep(0.01)


def _install_postgresql_hooks(engine: Engine) -> None:
    """Every write transaction first takes the store's advisory lock, held until it commits or
    rolls back: PostgreSQL's counterpart of SQLite's BEGIN IMMEDIATE (one writer at a time).

    Two limits keep one stuck writer from stopping every other. A writer waits at most
    ``_LOCK_WAIT_S`` for the lock (then StoreError, as SQLite's busy_timeout). And a writer of
    ours that stops between two statements of its transaction for ``_PG_WRITE_IDLE_S`` (its
    process frozen: a paused VM, SIGSTOP, a partition) is cut off by the server, which rolls the
    transaction back and frees the lock; our write transactions never wait on anything else
    between statements. Without it, a leader frozen mid-write held the lock until the kernel gave
    up on its TCP connection, hours later, and no replica could write, or take its lease over.

    The same statement reads the server's clock as the lock is taken, so that what the transaction
    stamps (audit events, named state) is by the server's clock without another round trip."""

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        if conn.get_execution_options().get(_WRITE):
            conn.exec_driver_sql(f"SET LOCAL idle_in_transaction_session_timeout = {int(_PG_WRITE_IDLE_S * 1000)}")
            conn.exec_driver_sql(f"SET LOCAL lock_timeout = {int(_LOCK_WAIT_S * 1000)}")
            locked = conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_PG_WRITE_LOCK}), "
                                          "extract(epoch FROM clock_timestamp())").one()
            conn.info[_SERVER_CLOCK_AT_LOCK] = (float(locked[1]), monotonic())


_BACKENDS = ("sqlite", "postgresql")
# libpq's network settings unless the URL gives its own: a connection attempt gives up after 10 s;
# a connection whose sent data goes unacknowledged for 30 s (tcp_user_timeout, ms), or whose
# idle peer misses 3 keepalives 5 s apart after 15 s, is dead (a partition, a host gone)
_PG_NETWORK_DEFAULTS = {"connect_timeout": 10, "keepalives": 1, "keepalives_idle": 15,
                        "keepalives_interval": 5, "keepalives_count": 3, "tcp_user_timeout": 30_000}


# the longest a store call on SQLite waits: busy_timeout for the write lock, and as long again
# for the switch to WAL when the file is new (see _wal)
_SQLITE_CALL_LIMIT_S = 2 * _LOCK_WAIT_S


def _pg_call_limit_s(network: Mapping[str, Any]) -> float:
    """The longest one store call over PostgreSQL waits on what can stop answering, with the
    connection settings ``network`` (libpq's, from :data:`_PG_NETWORK_DEFAULTS` and the URL): a
    new connection (``connect_timeout``), the write lock (``_LOCK_WAIT_S``), and a connection
    that went dead under it (``tcp_user_timeout``, else the keepalives). A query the server runs
    for longer is not bounded (no statement_timeout): that is what the engine's watchdog is for."""
    def number(key: str) -> float:
        try:
            return float(network.get(key, _PG_NETWORK_DEFAULTS[key]))
        except (TypeError, ValueError):
            return float(_PG_NETWORK_DEFAULTS[key])

    if "tcp_user_timeout" in network and number("tcp_user_timeout") > 0:
        dead = number("tcp_user_timeout") / 1000
    else:
        dead = number("keepalives_idle") + number("keepalives_interval") * number("keepalives_count")
    connect = number("connect_timeout") or 10.0
    return connect + _LOCK_WAIT_S + dead


def _pg_network_args(query: Mapping[str, Any], libpq: int | None = None) -> dict[str, int]:
    """:data:`_PG_NETWORK_DEFAULTS` the URL's ``query`` does not set itself; ``tcp_user_timeout``
    only for a libpq that knows it (12 and newer: an older one refuses the connection with
    "invalid connection option"). ``libpq``: its version as ``psycopg.pq.version()`` gives it."""
    if libpq is None:
        try:
            import psycopg

            libpq = psycopg.pq.version()
        except ImportError:  # no driver: create_engine says so, naming the extra to install
            libpq = 0
    return {k: v for k, v in _PG_NETWORK_DEFAULTS.items()
            if k not in query and (k != "tcp_user_timeout" or libpq >= 120000)}


def _parse_url(url: str) -> URL:
    """``url`` parsed; ``postgresql://`` means the psycopg (3) driver whatever SQLAlchemy's default
    is. StoreError, naming the URL without its password, for one the store cannot use."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise StoreError(f"the database URL {shown_database_url(str(url))!r} is not a "
                         "SQLAlchemy URL (sqlite:///path/to/file.db or "
                         "postgresql+psycopg://user:password@host:5432/database)") from None
    if parsed.get_backend_name() not in _BACKENDS:
        raise StoreError(f"the database URL {_shown(parsed)!r} names a database the store does not support: "
                         "use sqlite:///path/to/file.db or postgresql+psycopg://user:password@host:5432/database")
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def _shown(url: URL) -> str:
    """The URL as it may be shown or logged (:func:`shown_database_url`; rendered first, so a
    password's special characters are escaped and cannot be mistaken for the host)."""
    return shown_database_url(url.render_as_string(hide_password=False))


def shown_database_url(url: str) -> str:
    """A database URL as it may be shown or logged: the password, and any query value (libpq
    takes ``?password=``), as ``***``; the user name stays (an authentication error is about it)."""
    return shown_url(url, keep_user=True)


_UNPAIRED = ("contains an unpaired UTF-16 surrogate (half of an emoji cut off, sent as a \\ud83d escape in "
             "JSON), which is not text the store can hold; nothing was written")


def sqlite_file(url: str) -> Path | None:
    """The file a SQLite ``url`` names (``~`` expanded), whether or not it is there; None for an
    in-memory SQLite database and for PostgreSQL (a server's database, not a file of this host).
    StoreError, naming the URL without its password, for one the store cannot use."""
    parsed = _parse_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return Path(str(parsed.database)).expanduser()


def _json_text(value: Any) -> str:
    """The JSON text stored for a JSON column's value: compact, NaN and infinities as null,
    U+0000 as U+FFFD (:func:`~autonomic.knowledge.audit.without_nul`). StoreValueError for a
    string that is not Unicode text (an unpaired surrogate, which JSON input may carry): no back
    end can hold it, so the write is refused for good, not retried."""
    try:
        text = to_json(value, inf_nan_mode="null").decode()
        # a U+0000 in it (or a backslash before "u0000": the value is looked at to tell)
        return to_json(without_nul(value), inf_nan_mode="null").decode() if "\\u0000" in text else text
    except PydanticSerializationError as e:
        if "surrogates not allowed" in str(e):
            raise StoreValueError(f"a value {_UNPAIRED}") from None
        raise


def _storable(what: str, values: dict[str, Any]) -> None:
    """StoreValueError naming the field when a text column's value holds a NUL character
    (PostgreSQL text cannot, so neither back end takes it: the same input fails the same way on
    both) or an unpaired surrogate (not UTF-8: no back end can)."""
    for field, value in values.items():
        if not isinstance(value, str):
            continue
        if "\x00" in value:
            raise StoreValueError(f"{what}.{field} contains a NUL character (\\x00), which the store cannot hold; "
                                  "nothing was written")
        if not value.isascii():
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                raise StoreValueError(f"{what}.{field} {_UNPAIRED}") from None


def _lease_in(conn: Connection, key: str) -> Lease | None:
    """The lease stored under ``key``, read in this transaction (under the write lock in a write)."""
    value = conn.execute(_STATE_BY_KEY, {"key": key}).scalar()
    return None if value is None else Lease.from_state(dict(value))


def _kind_and_table(model: type) -> tuple[str, type[NounRow]]:
    try:
        return NOUN_TABLES[model]
    except KeyError:
        names = ", ".join(m.__name__ for m in NOUN_TABLES)
        raise TypeError(
            f"{getattr(model, '__name__', model)!r} is not a stored noun (one of {names})"
        ) from None


def _type_text(action_type: str) -> str:
    """What an action's ``types`` column holds when it runs ``action_type``: ``|type|``."""
    return f"|{action_type}|"


def _index_values(row_cls: type[NounRow], body: dict[str, Any]) -> dict[str, Any]:
    """The indexed copies of a noun's fields: every row column named like a model field, and
    the derived ones (:data:`~autonomic.knowledge.tables.DERIVED`)."""
    derived = DERIVED.get(row_cls, {})
    return {c.key: derived[c.key](body) if c.key in derived else body[c.key]
            for c in row_cls.__table__.columns if c.key not in ("id", "first_seq", "body")}


def _event(row: Any) -> AuditEvent:
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


def _cause(e: SQLAlchemyError) -> Any:
    return e.orig if isinstance(e, DBAPIError) else e.__class__.__name__


def _lock_wait(e: StoreError) -> bool:
    """Whether a store error is a write that gave up waiting for the write lock (SQLite's
    busy_timeout, PostgreSQL's lock_timeout), not a refusal."""
    orig = getattr(e.__cause__, "orig", None)
    if isinstance(orig, sqlite3.OperationalError):
        return "locked" in str(orig)
    return (getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)) == "55P03"  # lock_not_available


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
        migration. ``"sqlite://"`` is a private in-memory database. A URL that cannot be used
        (unparsable, another database, a missing driver, a server that cannot be reached or
        refuses us, a SQLite file whose folder cannot be created) raises StoreError naming the
        URL with its password hidden."""
        parsed = _parse_url(url)
        shown = _shown(parsed)
        sqlite = parsed.get_backend_name() == "sqlite"
        memory = sqlite and parsed.database in (None, "", ":memory:")
        # NaN and infinities become null in every JSON column: PostgreSQL's json type has no
        # token for them, and one serialisation on both back ends reads back the same
        kwargs: dict[str, Any] = {"json_serializer": _json_text}
        network: dict[str, Any] = {}  # libpq's connection settings (PostgreSQL)
        if sqlite:
            kwargs["connect_args"] = {"check_same_thread": False}
            if memory:
                kwargs["poolclass"] = StaticPool
            else:
                folder = Path(str(parsed.database)).expanduser().parent
                try:
                    folder.mkdir(mode=0o700, parents=True, exist_ok=True)  # its owner's alone
                except OSError as e:  # a file in the way, no permission, a read-only file system
                    raise StoreError(f"cannot open the store at {shown}: cannot create its folder "
                                     f"{folder}: {e.strerror or e}") from e
        else:
            # a pooled connection the server closed (a restart, an idle timeout) is replaced,
            # not handed to the next call as an error
            kwargs["pool_pre_ping"] = True
            # any transaction of ours idle between statements this long is ended by the server:
            # a reader frozen in a snapshot (SIGSTOP, a paused VM) otherwise held its locks until
            # TCP gave up, hours later, and a migration or VACUUM waited behind it (writes set
            # their own, shorter limit; see _install_postgresql_hooks). Set at connect: no round trip.
            given = parsed.query.get("options", "")
            options = given if isinstance(given, str) else " ".join(given)
            # a server that cannot be reached must not hang us: with libpq's defaults a connection
            # to a server behind a partition waited for ever (no connect timeout) and a query sent
            # into one waited about 15 minutes (TCP's retransmissions), so a deposed leader hung,
            # neither acting nor exiting to come back as a standby. A URL's own values win.
            given_args = _pg_network_args(parsed.query)
            kwargs["connect_args"] = {"options": f"{options} -c idle_in_transaction_session_timeout="
                                                 f"{int(_PG_IDLE_S * 1000)}".strip(), **given_args}
            network = {**{k: v for k, v in parsed.query.items() if k in _PG_NETWORK_DEFAULTS}, **given_args}
        try:
            engine = create_engine(parsed, **kwargs)
        except ImportError as e:
            raise StoreError(f"cannot open the store at {shown}: its driver is not installed ({e}); "
                             "for PostgreSQL: pip install 'autonomic[postgres]'") from e
        except ArgumentError as e:
            raise StoreError(f"cannot open the store at {shown}: {e}") from e
        self.call_limit_s = _SQLITE_CALL_LIMIT_S if sqlite else _pg_call_limit_s(network)
        if sqlite:
            _install_sqlite_hooks(engine)
            reader: Engine = engine
        else:
            _install_postgresql_hooks(engine)
            # a read transaction is one snapshot (READ COMMITTED would take one per statement)
            reader = engine.execution_options(isolation_level="REPEATABLE READ", postgresql_readonly=True)
        self._engine = engine
        self._reader = reader
        self._writer = engine.execution_options(**{_WRITE: True})
        self._insert: Callable[..., Any] = sqlite_insert if sqlite else pg_insert
        self._upserts: dict[tuple[Any, ...], Any] = {}
        self._bodies: dict[type[NounRow], Any] = {}
        # in-memory SQLite is one shared connection: calls from several threads take turns
        self._lock: threading.RLock | None = threading.RLock() if memory else None
        self._listeners: list[Callable[[tuple[Noun, ...]], None]] = []
        self._reading = threading.local()  # this thread's shared read Session (see reading())
        self._fence: tuple[str, str, int] | None = None  # (lease key, holder, epoch): see fence()
        # the lease as the fence last found it when it refused a write: another replica's (or given up)
        self.fenced_out: Lease | None = None
        self._secrets = Secrets()  # see hide()
        try:
            self._migrate()
        except StoreError as e:
            engine.dispose()
            cause = e.__cause__ if isinstance(e.__cause__, SQLAlchemyError) else None
            raise StoreError(f"cannot open the store at {shown}: "
                             f"{_cause(cause) if cause is not None else e}") from e
        except BaseException:
            engine.dispose()
            raise

    def hide(self, secrets: Secrets) -> None:
        """From now on every noun and audit event this Store object writes has ``secrets`` shown
        as ``***`` (the audit hash is over what is written): the last net under the actuators' and
        sources' own redaction, so a secret quoted in an error never reaches the audit log. An
        action's undo snapshot and params are stored as they are: an undo and a recovery use them."""
        self._secrets = secrets

    def on_record(self, listener: Callable[[tuple[Noun, ...]], None]) -> None:
        """Call ``listener(nouns)`` after every :meth:`record` through this Store object has
        committed (in the writing thread), so an in-process cache can follow the store's writes.
        A listener that raises is a bug; the write has already committed."""
        self._listeners.append(listener)

    def close(self) -> None:
        """Release every pooled connection. The store must not be used afterwards."""
        self._engine.dispose()

    # --- plumbing ----------------------------------------------------------------------------

    def _migrate(self) -> None:
        """Bring the schema to the latest migration. A database stamped with a revision this
        version does not know (a newer autonomic migrated it: a rollback of the deploy) is
        refused with a StoreError saying so, and is left as it is. A schema already at the
        latest revision is only read, without the write lock, so a read-only command
        (``autonomic status``, ``autonomic audit verify``) still opens the store while a writer
        holds the lock (an engine frozen mid-write, a person's ``sqlite3`` session); it used to
        wait out the lock and fail with "database is locked".

        A schema behind is migrated under the write lock. While another process holds it (that
        process migrating the schema: an upgrade's first engine, with a migration that rewrites a
        big table), opening waits for it, up to ``_MIGRATION_WAIT_S``, and is done as soon as the
        schema is found at the latest revision; it used to give up after the lock's 10 s."""
        config = Config()
        config.set_main_option("script_location", str(_MIGRATIONS))
        head = ScriptDirectory.from_config(config).get_current_head()
        deadline = monotonic() + _MIGRATION_WAIT_S
        said = False
        while True:
            with self._read() as conn:
                current = MigrationContext.configure(conn).get_current_revision()
            if current is not None and current == head:
                return
            try:
                with self._write() as conn:
                    if self.shared_clock:  # PostgreSQL: a migration works in Python between statements
                        # (0004 reads every action), longer than a write's idle limit on a big store;
                        # it gets the limit the other processes wait for it
                        conn.exec_driver_sql("SET LOCAL idle_in_transaction_session_timeout = "
                                             f"{int(_MIGRATION_WAIT_S * 1000)}")
                    config.attributes["connection"] = conn
                    try:
                        command.upgrade(config, "head")
                    except CommandError as e:
                        raise StoreError(f"the database's schema is at a revision this version of autonomic does "
                                         f"not know ({e}; this version's newest is {head}): it was migrated by a "
                                         "newer autonomic. Run that version, or restore a backup taken before it; "
                                         "nothing was changed") from None
                return
            except StoreError as e:
                if not _lock_wait(e):
                    raise
                if monotonic() >= deadline:
                    raise StoreError(f"the schema is at revision {current or 'none'} and this version needs "
                                     f"{head}; another process has held the store's write lock for "
                                     f"{_MIGRATION_WAIT_S:.0f} s (migrating it, or stuck mid-write): "
                                     "nothing was changed") from e
                if not said:
                    log.warning("the store's schema is at revision %s, this version needs %s: waiting for the "
                                "process holding the write lock (another one migrating it?)", current or "none", head)
                    said = True

    @contextlib.contextmanager
    def reading(self) -> Iterator[None]:
        """Every read in this thread inside the block shares one connection and one transaction
        (one consistent snapshot, one BEGIN): for a burst of reads on a hot path. No writes
        inside, unless the block is itself inside :meth:`unit` (then it reads the unit's writes)."""
        if getattr(self._reading, "conn", None) is not None or getattr(self._reading, "unit", None) is not None:
            yield
            return
        with self._read() as conn:
            self._reading.conn = conn
            try:
                yield
            finally:
                self._reading.conn = None

    @contextlib.contextmanager
    def unit(self) -> Iterator[None]:
        """Every write (and read) in this thread inside the block is one transaction: one commit,
        all or nothing, each write still its own audit event. :meth:`on_record` listeners hear
        of the writes after the commit, and not at all when it rolls back. Nested units join
        the outer one. Keep the block short and free of other I/O: it holds the write lock."""
        if getattr(self._reading, "unit", None) is not None:
            yield
            return
        heard: list[tuple[Noun, ...]] = []
        with self._write() as conn:
            self._reading.unit, self._reading.heard, self._reading.head = conn, heard, None
            try:
                yield
            finally:
                self._reading.unit, self._reading.heard, self._reading.head = None, None, None
        for nouns in heard:
            for listener in self._listeners:
                listener(nouns)

    @contextlib.contextmanager
    def _read(self) -> Iterator[Connection]:
        """One read transaction on a Core connection (the :meth:`reading` block's, inside one).
        Database errors come out as StoreError (without SQL parameters, which may hold secrets)."""
        shared = getattr(self._reading, "conn", None) or getattr(self._reading, "unit", None)
        if shared is not None:
            try:
                yield shared
            except SQLAlchemyError as e:
                raise StoreError(f"store read failed: {_cause(e)}") from e
            return
        guard = self._lock if self._lock is not None else contextlib.nullcontext()
        with guard:
            try:
                with self._reader.begin() as conn:
                    yield conn
            except SQLAlchemyError as e:
                raise StoreError(f"store read failed: {_cause(e)}") from e

    @contextlib.contextmanager
    def _write(self) -> Iterator[Connection]:
        """One write transaction on a Core connection (BEGIN IMMEDIATE on SQLite, the advisory lock
        on PostgreSQL), committed on success, rolled back on any error; database errors come out
        as StoreError."""
        unit = getattr(self._reading, "unit", None)
        if unit is not None:  # inside Store.unit(): its transaction, committed when the unit ends
            yield unit
            return
        if getattr(self._reading, "conn", None) is not None:
            raise RuntimeError("a store write inside Store.reading()")
        guard = self._lock if self._lock is not None else contextlib.nullcontext()
        with guard:
            try:
                with self._writer.begin() as conn:
                    if self._fence is not None:
                        self._check_fence(conn, self._fence)
                    yield conn
            except SQLAlchemyError as e:
                refused = getattr(e, "orig", None)
                if isinstance(refused, StoreValueError):  # raised by _json_text, inside SQLAlchemy's binding
                    raise refused from None
                raise StoreError(f"store write failed: {_cause(e)}") from e

    def _check_fence(self, conn: Connection, fence: tuple[str, str, int]) -> None:
        key, holder, epoch = fence
        lease = _lease_in(conn, key)
        if lease is None or not lease.held_by(holder, epoch):
            self.fenced_out = lease or Lease(None, 0, 0, 0.0, 0.0)
            now = ("released" if lease is None or lease.holder is None
                   else f"held by {lease.holder}, epoch {lease.epoch}")
            raise NotLeaderError(f"write refused: this replica ({holder}) held {key} at epoch {epoch}; it is {now} now")

    def _head(self, conn: Connection) -> tuple[int, str]:
        """The audit chain's head (seq, hash), locked for this transaction (inside a unit, read
        once: the unit's own appends move it)."""
        if getattr(self._reading, "unit", None) is conn and self._reading.head is not None:
            return self._reading.head
        head = conn.execute(_HEAD_FOR_UPDATE).one_or_none()
        if head is None:
            raise AuditChainError("audit head row is missing (the audit log was tampered with)")
        return int(head[0]), str(head[1])

    def _append(
        self, conn: Connection, head: tuple[int, str], actor: str, kind: str, subject: str,
        data: dict[str, Any] | None
    ) -> AuditEvent:
        _storable("audit event", {"actor": actor, "kind": kind, "subject": subject})
        # made plain JSON first: the secrets net looks at strings, so a secret in an exception,
        # bytes or a path would otherwise become text after it, and reach the audit log
        data = self._secrets.data(plain_data(data)) if data and self._secrets else data
        try:
            ev = make_event(seq=head[0] + 1, ts=self._now_in(conn), actor=actor, kind=kind, subject=subject, data=data,
                            prev_hash=head[1])
        except UnicodeEncodeError:  # the hash is over UTF-8
            raise StoreValueError(f"audit event {kind!r}: its data {_UNPAIRED}") from None
        conn.execute(_AUDIT_INSERT, {"seq": ev.seq, "ts": ev.ts, "actor": ev.actor, "kind": ev.kind,
                                     "subject": ev.subject, "data": ev.data, "prev_hash": ev.prev_hash,
                                     "hash": ev.hash})
        conn.execute(_HEAD_UPDATE, {"new_seq": ev.seq, "new_hash": ev.hash})
        if getattr(self._reading, "unit", None) is conn:
            self._reading.head = (ev.seq, ev.hash)
        return ev

    def _upsert(self, row_cls: type[Base], columns: Iterable[str], keep: tuple[str, ...]) -> Any:
        """INSERT ... ON CONFLICT (primary key) DO UPDATE every column but ``keep`` (SQLite and
        PostgreSQL speak the same clause), built once per column set; values are passed at execute."""
        cols = tuple(columns)
        cached = self._upserts.get((row_cls, cols, keep))
        if cached is None:
            stmt = self._insert(row_cls)
            key = [c.name for c in row_cls.__mapper__.primary_key]
            changed = {k: stmt.excluded[k] for k in cols if k not in keep and k not in key}
            cached = self._upserts[(row_cls, cols, keep)] = stmt.on_conflict_do_update(index_elements=key,
                                                                                     set_=changed)
        return cached

    def _by_id(self, row_cls: type[NounRow]) -> Any:
        stmt = self._bodies.get(row_cls)
        if stmt is None:
            stmt = self._bodies[row_cls] = select(row_cls.body).where(row_cls.id == bindparam("id"))
        return stmt

    def _read_nouns(self, model: type[T], stmt: Any) -> list[T]:
        with self._read() as conn:
            return [model.model_validate(row.body) for row in conn.execute(stmt)]

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
        with self._write() as conn:
            head = self._head(conn)
            for noun, (kind, row_cls) in zip(nouns, tables, strict=True):
                body = self._secrets.data(noun.model_dump(mode="json"), keep=_RESTORED)
                indexed = _index_values(row_cls, body)
                _storable(kind, {"id": noun.id, **indexed})
                values = {"id": noun.id, "first_seq": head[0] + 1, "body": body, **indexed}
                conn.execute(self._upsert(row_cls, values, keep=("first_seq",)), values)
            written = self._append(conn, head, actor, event, subject, payload)
        heard = getattr(self._reading, "heard", None)
        if heard is not None:  # inside Store.unit(): told after its commit
            heard.append(nouns)
            return written
        for listener in self._listeners:
            listener(nouns)
        return written

    def audit(self, actor: str, event: str, subject: str, data: dict[str, Any] | None = None) -> AuditEvent:
        """Append an audit event that writes no noun (a human act, the engine starting, ...)."""
        with self._write() as conn:
            return self._append(conn, self._head(conn), actor, event, subject, data)

    # --- noun reads --------------------------------------------------------------------------

    def get(self, model: type[T], id: str) -> T | None:
        """The noun of this class with exactly this id, or None."""
        _, row_cls = _kind_and_table(model)
        with self._read() as conn:
            body = conn.execute(self._by_id(row_cls), {"id": id}).scalar()
            return None if body is None else model.model_validate(body)

    def resolve_id(self, model: type[Noun], prefix: str) -> str:
        """The full id of the one noun of this class whose id starts with ``prefix`` (at least
        4 characters). Raises KeyError (IdLookupError) when none or several match."""
        kind, row_cls = _kind_and_table(model)
        prefix = prefix.strip()
        if len(prefix) < _MIN_PREFIX:
            raise IdLookupError(
                f"{kind} id prefix {prefix!r} is too short: give at least {_MIN_PREFIX} characters"
            )
        with self._read() as s:
            if s.execute(self._by_id(row_cls), {"id": prefix}).first() is not None:
                return prefix
            found = s.scalars(select(row_cls.id).where(row_cls.id.startswith(prefix, autoescape=True))).all()
        matches = sorted(i for i in found if i.startswith(prefix))  # LIKE ignores case on SQLite
        if not matches:
            raise IdLookupError(f"no {kind} has an id starting with {prefix!r}{self._gone_since(kind)}")
        if len(matches) > 1:
            shown = ", ".join(matches[:5]) + (", ..." if len(matches) > 5 else "")
            raise IdLookupError(f"{kind} id prefix {prefix!r} is ambiguous: {len(matches)} match ({shown})")
        return matches[0]

    def _gone_since(self, kind: str) -> str:
        """For a lookup that found nothing: what retention pruned that it may have been, or ""."""
        pruned = self.pruned_before()
        if kind == "finding" and "findings" in pruned:
            return f" (retention pruned the findings from before {local_stamp(pruned['findings'])})"
        if "incidents" in pruned and kind != "finding":
            what = "closed incidents" if kind == "incident" else f"the {kind}s of incidents closed"
            return f" (retention pruned {what} before {local_stamp(pruned['incidents'])})"
        return ""

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
        self, states: Iterable[IncidentState] | None = None, service: str | None = None, limit: int | None = 200,
        *, unclosed: bool = False, open_since: float | None = None, before: str | None = None,
    ) -> list[Incident]:
        """Incidents, newest opened first (at most ``limit``; None: all), optionally only in
        ``states``, for ``service``, not yet closed (``unclosed``), or open at some moment at or
        after ``open_since`` (unclosed, or closed then or later). The last two are answered by
        the index on ``closed_at``, whatever the history held. ``before`` (an incident's id): only
        those after it in this order, the next page of a list whose last item it was (read from
        the ``opened_at`` index onwards, however far back the page is); KeyError (IdLookupError)
        when no incident has that id."""
        where: list[ColumnElement[bool]] = []
        if before is not None:
            with self._read() as conn:
                mark = conn.execute(select(IncidentRow.opened_at, IncidentRow.first_seq)
                                    .where(IncidentRow.id == before)).first()
            if mark is None:
                raise IdLookupError(f"no incident has the id {before!r}{self._gone_since('incident')}")
            where.append(or_(IncidentRow.opened_at < mark[0],
                             and_(IncidentRow.opened_at == mark[0], IncidentRow.first_seq < mark[1])))
        if states is not None:
            where.append(IncidentRow.state.in_([IncidentState(s).value for s in states]))
        if service is not None:
            where.append(IncidentRow.service == service)
        if unclosed:
            where.append(IncidentRow.closed_at.is_(None))
        if open_since is not None:
            where.append(IncidentRow.closed_at.is_(None) | (IncidentRow.closed_at >= open_since))
        stmt = (
            select(IncidentRow)
            .where(*where)
            .order_by(IncidentRow.opened_at.desc(), IncidentRow.first_seq.desc())
            .limit(limit)
        )
        return self._read_nouns(Incident, stmt)

    def count_incidents(self, *, unclosed: bool = False) -> int:
        """How many incidents are stored (``unclosed``: not yet closed), counted by the store: what a
        list of the newest leaves out."""
        stmt = select(func.count()).select_from(IncidentRow)
        if unclosed:
            stmt = stmt.where(IncidentRow.closed_at.is_(None))
        with self._read() as conn:
            return int(conn.execute(stmt).scalar_one())

    def unclosed_counts(self) -> dict[str, dict[IncidentState, int]]:
        """How many incidents not yet closed each service has, by state: one grouped count on
        the ``closed_at`` index, however many there are (the overview lists only the newest)."""
        stmt = (select(IncidentRow.service, IncidentRow.state, func.count())
                .where(IncidentRow.closed_at.is_(None)).group_by(IncidentRow.service, IncidentRow.state))
        counts: dict[str, dict[IncidentState, int]] = {}
        with self._read() as conn:
            for service, state, n in conn.execute(stmt):
                counts.setdefault(service, {})[IncidentState(state)] = int(n)
        return counts

    def findings(self, incident_id: str) -> list[Finding]:
        """The incident's findings, oldest first."""
        with self._read() as conn:
            return [Finding.model_validate(b) for b in conn.execute(_FINDINGS_OF, {"incident": incident_id}).scalars()]

    def findings_ends(self, incident_id: str, first: int, latest: int) -> tuple[list[Finding], int]:
        """The incident's first ``first`` and latest ``latest`` findings, oldest first, and how
        many of its findings lie between them: three indexed reads, the findings between the two
        ends neither read nor parsed, however long the incident lasted."""
        where = FindingRow.incident_id == incident_id
        order = (FindingRow.ts, FindingRow.first_seq)
        with self.reading(), self._read() as conn:
            total = int(conn.execute(select(func.count()).select_from(FindingRow).where(where)).scalar_one())
            head = list(conn.execute(select(FindingRow.body).where(where).order_by(*order).limit(first)).scalars())
            tail_n = min(latest, max(0, total - len(head)))
            tail = list(conn.execute(select(FindingRow.body).where(where).order_by(*(c.desc() for c in order))
                                     .limit(tail_n)).scalars())[::-1] if tail_n else []
        return [Finding.model_validate(b) for b in head + tail], total - len(head) - len(tail)

    def audit_ends(self, subject: str, first: int, latest: int) -> tuple[list[AuditEvent], int]:
        """The first ``first`` and latest ``latest`` audit events about ``subject``, oldest
        first, and how many lie between them (see :meth:`findings_ends`)."""
        where = AuditRow.subject == subject
        with self.reading(), self._read() as conn:
            total = int(conn.execute(select(func.count()).select_from(AuditRow).where(where)).scalar_one())
            head = list(conn.execute(select(AuditRow).where(where).order_by(AuditRow.seq).limit(first)))
            tail_n = min(latest, max(0, total - len(head)))
            tail = list(conn.execute(select(AuditRow).where(where).order_by(AuditRow.seq.desc())
                                     .limit(tail_n)))[::-1] if tail_n else []
        return [_event(r) for r in head + tail], total - len(head) - len(tail)

    def diagnoses(self, incident_id: str) -> list[Diagnosis]:
        """The incident's diagnoses, oldest first."""
        with self._read() as conn:
            return [Diagnosis.model_validate(b)
                    for b in conn.execute(_DIAGNOSES_OF, {"incident": incident_id}).scalars()]

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
        created_since: float | None = None,
    ) -> list[Action]:
        """Actions, oldest created first, optionally filtered by incident, state, service and
        creation at or after ``created_since``."""
        where: list[ColumnElement[bool]] = []
        if created_since is not None:
            where.append(ActionRow.created_at >= created_since)
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

    def pattern_record(self, pattern_id: str,
                       service: str) -> tuple[list[tuple[float, str, bool, float]], list[Decision]]:
        """What the autonomy ladder weighs for one pattern on one service, in two queries: the
        outcomes of the pattern's actions on the service as ``(ts, verdict, rolled_back,
        acted_at)``, oldest first (only what the ladder reads, so a long record is not parsed into
        models; ``acted_at`` is when the action was created: the remedy it ran is the pattern's as
        it was then), and the approvals and denials a person (not the engine) gave on the pattern
        for an action on the service, oldest first. The first list also holds what retention kept of the pair's pruned
        outcomes and pruned people's answers (``pattern_evidence``: an answer as ``pass`` or
        ``fail``, as :func:`~autonomic.plan.autonomy.people_evidence` reads it), so pruning changes
        no pair's record. Before, the engine read every action of the service, then each action's
        outcomes one query at a time, then every approved or denied decision of every service: 443
        statements and 1.9 s a decision after a few thousand actions. Each query now reads only the
        pair's rows, through an index (migration 0008); the two used to read every action of the
        service and every approved or denied decision ever made (the engine's denials among them):
        0.27 s with 100,000 of each."""
        pair = {"service": service, "pattern": pattern_id}
        kept = (select(PatternEvidenceRow.ts, PatternEvidenceRow.verdict, PatternEvidenceRow.rolled_back,
                       func.coalesce(PatternEvidenceRow.acted_at, PatternEvidenceRow.ts))
                .where(PatternEvidenceRow.pattern_id == pattern_id, PatternEvidenceRow.service == service))
        with self.reading(), self._read() as conn:
            record = [(float(ts), str(verdict), bool(rolled), float(acted))
                      for ts, verdict, rolled, acted in conn.execute(_PAIR_OUTCOMES, pair)]
            pruned = [(float(ts), str(verdict), bool(rolled), float(acted))
                      for ts, verdict, rolled, acted in conn.execute(kept)]
            answers = [Decision.model_validate(body) for body in conn.execute(_PAIR_ANSWERS, pair).scalars()]
        if pruned:  # oldest first, as the ladder replays them
            record = sorted(pruned + record, key=lambda item: item[0])
        return record, answers

    def count_actions(self, since: float, *, type: str | None = None, service: str | None = None) -> int:
        """How many actions were created at or after ``since`` (optionally of one type and/or on one
        service), not counting CANCELLED ones: the numbers rate limits are checked against."""
        where: list[ColumnElement[bool]] = [
            ActionRow.created_at >= since,
            ActionRow.state != ActionState.CANCELLED.value,
        ]
        if type is not None:
            where.append(_of_type(_type_text(type), type))
        if service is not None:
            where.append(ActionRow.service == service)
        with self._read() as s:
            return int(s.scalar(select(func.count()).select_from(ActionRow).where(*where)) or 0)

    def action_counts(self, day_since: float, week_since: float, *, type: str,
                      service: str) -> tuple[int, int, int, int]:
        """The four rate-limit counts in one query: actions of ``type`` created at or after
        ``day_since`` and ``week_since``, and on ``service`` likewise (CANCELLED ones not counted,
        as in :meth:`count_actions`)."""
        params = {"type_text": _type_text(type), "type": type, "service": service, "day": day_since,
                  "week": week_since, "since": min(day_since, week_since)}
        with self._read() as s:
            row = s.execute(_ACTION_COUNTS, params).one()
        return int(row[0]), int(row[1]), int(row[2]), int(row[3])

    def live_decisions(self) -> frozenset[str]:
        """The decisions whose action is not terminal (a half-open breaker's trial is alive while
        its decision is one of them)."""
        with self._read() as s:
            return frozenset(s.execute(_LIVE_DECISIONS).scalars())

    def unended_actions(self) -> frozenset[str]:
        """The ids of the actions that are not terminal (in flight)."""
        with self._read() as s:
            return frozenset(s.execute(_LIVE_ACTIONS).scalars())

    def busy_services(self) -> set[str]:
        """The services (targets) with an action that is not terminal."""
        with self._read() as s:
            return set(s.execute(_BUSY_SERVICES).scalars())

    def service_activity(self, service: str) -> tuple[bool, float]:
        """For one service: whether any action on it is not terminal, and the latest
        ``updated_at`` of its terminal actions other than CANCELLED ones (0.0 when none). Two
        index lookups, however many actions the service had (an action written by an autonomic
        from before migration 0008 has no ``ended_at``: it counts as in flight while it is, but
        not for the settle time after it ended, until the engine's next start fills it: see
        :meth:`fill_derived`)."""
        with self._read() as s:
            row = s.execute(_SERVICE_ACTIVITY, {"service": service}).one()
        return bool(row[0]), float(row[1] or 0.0)

    def pattern_tallies(self) -> dict[str, tuple[int, int]]:
        """Per pattern id, (succeeded, failed or rolled back or escalated with a failed outcome)
        actions: the measured record."""
        totals: dict[str, tuple[int, int]] = {}
        for (pattern, _), (ok, bad) in self.pattern_tallies_by_service().items():
            s, f = totals.get(pattern, (0, 0))
            totals[pattern] = (s + ok, f + bad)
        return totals

    def pattern_tallies_by_service(self) -> dict[tuple[str, str], tuple[int, int]]:
        """:meth:`pattern_tallies` per (pattern id, service acted on), those of actions retention
        pruned included (kept in ``pattern_tallies``)."""
        totals: dict[tuple[str, str], tuple[int, int]] = {}
        with self._read() as s:
            pruned = s.execute(select(PatternTallyRow.pattern_id, PatternTallyRow.service,
                                      PatternTallyRow.succeeded, PatternTallyRow.failed))
            for p, svc, a, b in [*s.execute(_PATTERN_TALLIES), *pruned]:
                if p:
                    ok, bad = totals.get((p, svc), (0, 0))
                    totals[(p, svc)] = (ok + int(a), bad + int(b))
        return totals

    def pattern_tallies_before(self, pattern_id: str, before: float) -> dict[str, tuple[int, int]]:
        """What of ``pattern_id``'s record (:meth:`pattern_tallies_by_service`), per service, its
        actions created before ``before`` make, those retention pruned included (all older than
        what it keeps): the record of the remedy it had before it last changed."""
        totals: dict[str, tuple[int, int]] = {}
        stmt = (select(ActionRow.service, *_PATTERN_TALLIES.selected_columns[2:])
                .where(ActionRow.state.in_([_OK, *_BAD, _ESCALATED]), ActionRow.pattern_id == pattern_id,
                       ActionRow.created_at < before)
                .group_by(ActionRow.service))
        pruned = select(PatternTallyRow.service, PatternTallyRow.succeeded, PatternTallyRow.failed).where(
            PatternTallyRow.pattern_id == pattern_id)
        with self._read() as s:
            for svc, a, b in [*s.execute(stmt), *s.execute(pruned)]:
                ok, bad = totals.get(svc, (0, 0))
                totals[svc] = (ok + int(a or 0), bad + int(b or 0))
        return totals

    def fill_derived(self, *, actor: str = "engine") -> dict[str, int]:
        """Fill the indexed copies of action and decision fields that an older autonomic left
        empty, from each row's own body: per table, how many rows were filled (audited
        ``store.filled`` when any were).

        A migration fills them on every row stored when it runs, but an older autonomic that was
        already running then (a rolling upgrade's old replica, leading until it is replaced; an
        engine left running while a newer CLI opened, and so migrated, the store) goes on writing
        rows that leave them empty: the types an action runs (0004, 0005), when it ended, its
        pattern (0008), a decision's pattern, whether a person made it and its action's target
        (0008). The reads that the engine decides on find rows through those columns (the
        autonomy ladder's record, the settle time after an action, the rate limits of a
        workflow's later steps), so such rows were left out of them for good. The engine calls
        this as it starts leading, when no older replica can write any more (the fence refuses
        it; restarted, it refuses the newer schema). The rows to fill are found in one read
        without the write lock (a scan of each table: 0.1 s on SQLite with 100,000 actions and
        200,000 decisions, nothing to fill); only those are written, in one write transaction."""
        body_pattern = ActionRow.body["pattern_id"].as_string()
        unfilled = {
            ActionRow: or_(ActionRow.types == "",
                           and_(ActionRow.ended_at.is_(None), ActionRow.state.in_(sorted(ENDED))),
                           and_(ActionRow.pattern_id.is_(None), body_pattern.is_not(None))),
            # person and target are read only with the pattern (the ladder's answers): a decision
            # whose pattern is missing has them recomputed with it, and one without a pattern
            # needs none (reading every engine decision's body for its author cost 0.5 s a start)
            DecisionRow: and_(DecisionRow.pattern_id.is_(None),
                              DecisionRow.body["pattern_id"].as_string().is_not(None)),
        }
        with self._read() as conn:
            found = {row_cls: list(conn.execute(select(row_cls.id).where(cond)).scalars())
                     for row_cls, cond in unfilled.items()}
        counts = {row_cls.__tablename__: len(ids) for row_cls, ids in found.items()}
        if not any(counts.values()):
            return counts
        with self._write() as conn:
            for row_cls, ids in found.items():
                for start in range(0, len(ids), 1000):  # one executemany per thousand rows
                    rows = [{"_id": id_, **{k: v for k, v in _index_values(row_cls, body).items() if k in _FILLED}}
                            for id_, body in conn.execute(select(row_cls.id, row_cls.body)
                                                          .where(row_cls.id.in_(ids[start:start + 1000])))]
                    columns: dict[str, Any] = {k: bindparam(k) for k in rows[0] if k != "_id"}
                    conn.execute(update(row_cls).where(row_cls.id == bindparam("_id")).values(columns), rows)
            self._append(conn, self._head(conn), actor, "store.filled", "store",
                         {"rows": counts, "why": "written by an older autonomic after the store was migrated"})
        return counts

    # --- named state -------------------------------------------------------------------------

    def get_state(self, key: str) -> dict[str, Any] | None:
        """The JSON value stored under ``key``, or None."""
        with self._read() as conn:
            value = conn.execute(_STATE_BY_KEY, {"key": key}).scalar()
            return None if value is None else dict(value)

    def get_states(self, keys: Iterable[str]) -> dict[str, dict[str, Any] | None]:
        """Several :meth:`get_state` in one read: every key in ``keys`` mapped to its value or None."""
        wanted = list(dict.fromkeys(keys))
        with self._read() as conn:
            found = {k: dict(v) for k, v in conn.execute(_STATES_BY_KEYS, {"keys": wanted})}
        return {k: found.get(k) for k in wanted}

    def set_state(
        self,
        key: str,
        value: dict[str, Any] | None,
        *,
        actor: str,
        event: str,
        data: dict[str, Any] | None = None,
        audit_value: bool = True,
    ) -> AuditEvent:
        """Store ``value`` under ``key`` (None deletes it) and audit the change (subject ``key``,
        data ``data`` plus ``{"value": value}``, or ``data`` alone without ``audit_value``: a
        bulky value that is only passing through, like received alerts) in the same transaction."""
        if value is not None and not isinstance(value, dict):
            raise TypeError(f"state value for {key!r} must be a dict or None, not {type(value).__name__}")
        _storable("state", {"key": key})
        with self._write() as conn:
            head = self._head(conn)
            if value is None:
                conn.execute(delete(StateRow).where(StateRow.key == key))
            else:
                row = {"key": key, "value": value, "updated_at": self._now_in(conn)}
                conn.execute(self._upsert(StateRow, row, keep=()), row)
            return self._append(conn, head, actor, event, key,
                                {**(data or {}), "value": value} if audit_value else dict(data or {}))

    def keep_states(self, values: Mapping[str, dict[str, Any]]) -> None:
        """Store every value of ``values`` under its key, in one write transaction, not audited.
        For bookkeeping only, which nothing acts on and a person would not look for in the audit
        log (the counts a goal's error budget is kept in, saved every checkpoint): the caller audits
        the transitions in it with :meth:`set_state`. Fenced like every write: a deposed leader's
        is refused. Inside :meth:`unit` it joins the unit's transaction."""
        for key, value in values.items():
            if not isinstance(value, dict):
                raise TypeError(f"state value for {key!r} must be a dict, not {type(value).__name__}")
            _storable("state", {"key": key})
        if not values:
            return
        with self._write() as conn:
            now = self._now_in(conn)
            for key, value in values.items():
                row = {"key": key, "value": value, "updated_at": now}
                conn.execute(self._upsert(StateRow, row, keep=()), row)

    def forget_states(self, keys: Iterable[str]) -> None:
        """Delete the states under ``keys`` (those not there are skipped), in one write
        transaction, not audited: the other half of :meth:`keep_states`, for bookkeeping done with
        (a notification delivered). Fenced like every write."""
        wanted = list(dict.fromkeys(keys))
        if not wanted:
            return
        with self._write() as conn:
            conn.execute(delete(StateRow).where(StateRow.key.in_(wanted)))

    def in_unit(self) -> bool:
        """Whether this thread is inside :meth:`unit` (a write joins its transaction)."""
        return getattr(self._reading, "unit", None) is not None

    def writable_here(self) -> bool:
        """False inside :meth:`reading` (outside a :meth:`unit`), where a write is refused."""
        return getattr(self._reading, "conn", None) is None or self.in_unit()

    def set_state_unless(
        self,
        key: str,
        value: dict[str, Any],
        *,
        kept_if: Mapping[str, str | None],
        actor: str,
        event: str,
        data: dict[str, Any] | None = None,
    ) -> tuple[bool, dict[str, Any]]:
        """Compare-and-set: store ``value`` under ``key`` (audited as :meth:`set_state` audits it)
        when nothing is stored there, or when what is stored does not have every field of
        ``kept_if`` at its value there (a missing field counts as None); otherwise write nothing.
        Returns (written, the value stored under ``key`` afterwards: ours, or the one kept).

        The decision is the database's, not a read before the write: one ``INSERT ... ON CONFLICT
        DO NOTHING``, then one conditional ``UPDATE``, each ``RETURNING`` the row it wrote, which
        says whether this call wrote. Two callers racing (two people answering one request in the same instant, on one
        replica or two over PostgreSQL) cannot both write: the second's statements find the
        first's row and match nothing. Inside :meth:`unit` it joins the unit's transaction."""
        _storable("state", {"key": key})
        with self._write() as conn:
            head = self._head(conn)
            row = {"key": key, "value": value, "updated_at": self._now_in(conn)}
            # the row each statement returns is the one it wrote (psycopg gives no row count for
            # an INSERT ... ON CONFLICT DO NOTHING through SQLAlchemy: -1, written or not)
            written = conn.execute(self._insert(StateRow).values(row).on_conflict_do_nothing(index_elements=["key"])
                                   .returning(StateRow.key)).first() is not None
            if not written:
                kept = _state_has(kept_if)
                written = conn.execute(update(StateRow).where(StateRow.key == key, ~kept)
                                       .values(value=value, updated_at=row["updated_at"])
                                       .returning(StateRow.key)).first() is not None
            if not written:
                stored = conn.execute(_STATE_BY_KEY, {"key": key}).scalar()
                return False, dict(stored) if stored is not None else {}
            self._append(conn, head, actor, event, key, {**(data or {}), "value": value})
            return True, value

    def delete_state_if(
        self,
        key: str,
        expect: Mapping[str, str | None],
        *,
        actor: str,
        event: str,
        data: dict[str, Any] | None = None,
    ) -> bool:
        """Delete ``key`` only when what is stored there still has every field of ``expect`` at its
        value (a missing field counts as None), audited (subject ``key``, ``data``) in the same
        transaction; returns whether it did. One conditional ``DELETE ... RETURNING``: a value
        replaced since the caller read it (a denial replacing an approval the engine is about to
        act on) is neither deleted nor acted on."""
        _storable("state", {"key": key})
        with self._write() as conn:
            head = self._head(conn)
            matches = _state_has(expect)
            gone = conn.execute(delete(StateRow).where(StateRow.key == key, matches)
                                .returning(StateRow.key)).first() is not None
            if gone:
                self._append(conn, head, actor, event, key, {**(data or {}), "value": None})
            return gone

    def first_time(self, prefix: str, token: str, now: float, keep_s: float) -> bool:
        """True, and ``token`` remembered at ``now``, when it is not remembered under ``prefix``
        yet; False, writing nothing, when it is. Tokens remembered before ``now - keep_s`` are
        forgotten in the same write transaction. For "accept this once" checks that every replica
        shares (a signed webhook's signature): the check and the remembering are one transaction
        under the write lock, so two requests racing, on one replica or two, cannot both pass.
        Bookkeeping, not a state change anyone acts on: not audited (the caller audits what it
        accepted). Inside :meth:`unit` it joins the unit's transaction."""
        key = prefix + token
        _storable("state", {"key": key})
        with self._write() as conn:
            conn.execute(delete(StateRow).where(StateRow.key.startswith(prefix, autoescape=True),
                                                StateRow.updated_at < now - keep_s))
            if conn.execute(select(StateRow.key).where(StateRow.key == key)).first() is not None:
                return False
            row = {"key": key, "value": {"at": now}, "updated_at": now}
            conn.execute(self._upsert(StateRow, row, keep=()), row)
            return True

    # --- the server's clock ---------------------------------------------------------------------

    @property
    def shared_clock(self) -> bool:
        """Whether the store has a clock of its own that replicas on other machines share (a
        PostgreSQL server): see :meth:`server_time` and :class:`autonomic.clock.ServerClock`."""
        return self._engine.dialect.name == "postgresql"

    def server_time(self) -> float:
        """The database server's wall clock now, in Unix seconds (PostgreSQL's ``clock_timestamp()``;
        this host's on SQLite, whose every user is on this host). StoreError when it does not answer."""
        if not self.shared_clock:
            return time.time()
        with self._read() as conn:
            return self._server_time_in(conn)

    def _now_in(self, conn: Connection) -> float:
        """When this write transaction writes (an audit event's time, a named state's
        ``updated_at``), by the clock every replica shares: on PostgreSQL the server's, read as the
        transaction took the write lock and moved on by this host's monotonic clock since (no round
        trip; a replica whose own clock is 20 minutes off stamps the same times as the others); on
        SQLite, whose every user is on this host, this host's."""
        taken = conn.info.get(_SERVER_CLOCK_AT_LOCK) if self.shared_clock else None
        if taken is None:
            return time.time()
        server, at = taken
        return float(server) + (monotonic() - at)

    def _server_time_in(self, conn: Connection) -> float:
        """:meth:`server_time`, asked in this transaction."""
        if not self.shared_clock:
            return time.time()
        return float(conn.exec_driver_sql("SELECT extract(epoch FROM clock_timestamp())").scalar_one())

    # --- leases (see autonomic.knowledge.lease) --------------------------------------------------

    def fence(self, name: str, holder: str, epoch: int) -> None:
        """From now on every write transaction through this Store object first checks, under the
        write lock, that lease ``name`` is held by ``holder`` at ``epoch``, and raises
        NotLeaderError (writing nothing) when it is not: a replica that lost its lease cannot write.
        The lease as such a refusal found it is kept in :attr:`fenced_out`."""
        self._fence = (lease_key(name), holder, epoch)
        self.fenced_out = None

    def lease(self, name: str) -> Lease | None:
        """Lease ``name`` as stored, or None when no replica ever took it."""
        value = self.get_state(lease_key(name))
        return None if value is None else Lease.from_state(value)

    def claim_lease(self, name: str, holder: str, *, renew_epoch: int | None = None,
                    take: tuple[str | None, int, int] | None = None, config: str | None = None) -> Lease:
        """One write transaction on lease ``name``; returns the lease as it is afterwards.

        With ``renew_epoch``: renew it when ``holder`` holds it at that epoch (the renewal count
        goes up; no audit event, it is a heartbeat). Otherwise take it when it was never taken,
        was released, or is still exactly ``take`` (the version the caller watched go unrenewed):
        the epoch goes up by one and the change is audited (``lease.acquired``). In every other
        case nothing is written and the caller sees who holds it. ``config`` (the taker's
        Config.fingerprint) is kept in the lease for as long as it holds it."""
        key = lease_key(name)
        _storable("lease", {"name": name, "holder": holder})
        with self._write() as conn:
            current = _lease_in(conn, key)
            now = self._server_time_in(conn)  # the same clock for every replica (for people, not for timing)
            if renew_epoch is not None:
                if current is None or not current.held_by(holder, renew_epoch):
                    return current or Lease(None, 0, 0, 0.0, 0.0)
                return self._put_lease(conn, key, Lease(holder, current.epoch, current.renewals + 1,
                                                        current.acquired_at, now, current.config))
            if current is not None and current.holder is not None and current.version != take:
                return current
            new = self._put_lease(conn, key, Lease(holder, (current.epoch if current else 0) + 1, 0, now, now, config))
            self._append(conn, self._head(conn), holder, "lease.acquired", key,
                         {"epoch": new.epoch, "previous": None if current is None else current.holder})
            return new

    def release_lease(self, name: str, holder: str, epoch: int) -> bool:
        """Give lease ``name`` up when ``holder`` holds it at ``epoch`` (audited ``lease.released``),
        so a standby may take it at once; the epoch stays, the next holder's is one more. Returns
        whether it was released. Clears this Store object's fence."""
        key = lease_key(name)
        self._fence = None
        with self._write() as conn:
            current = _lease_in(conn, key)
            if current is None or not current.held_by(holder, epoch):
                return False
            self._put_lease(conn, key, Lease(None, epoch, current.renewals, current.acquired_at,
                                             self._server_time_in(conn), current.config))
            self._append(conn, self._head(conn), holder, "lease.released", key, {"epoch": epoch})
            return True

    def _put_lease(self, conn: Connection, key: str, lease: Lease) -> Lease:
        """Write ``lease`` under ``key`` in this write transaction (no audit event) and return it."""
        row = {"key": key, "value": lease.to_state(), "updated_at": lease.renewed_at}
        conn.execute(self._upsert(StateRow, row, keep=()), row)
        return lease

    def states(self, prefix: str) -> dict[str, dict[str, Any]]:
        """Every stored key starting with ``prefix`` and its value."""
        with self._read() as conn:
            rows = conn.execute(select(StateRow.key, StateRow.value)
                                .where(StateRow.key.startswith(prefix, autoescape=True))).all()
            return {k: dict(v) for k, v in rows if k.startswith(prefix)}

    # --- retention (see autonomic.knowledge.retention) ------------------------------------------

    def prunable_incidents(self, closed_before: float, limit: int) -> list[str]:
        """Ids of at most ``limit`` incidents retention may prune, oldest closed first: closed
        before ``closed_before``, in a terminal state, and with no action that is not terminal
        or was created at or after ``closed_before``."""
        with self._read() as conn:
            return list(conn.execute(_prunable_incidents(closed_before).order_by(IncidentRow.closed_at)
                                     .limit(limit)).scalars())

    def prune_incidents(self, ids: Iterable[str], closed_before: float, *, actor: str = "engine") -> dict[str, int]:
        """Delete these incidents with everything hanging off them (findings, diagnoses,
        decisions, actions, outcomes) in one write transaction, each one only if it is still
        prunable (:meth:`prunable_incidents`, asked again under the write lock). First, in the
        same transaction, what the pattern statistics read of them is kept: their actions'
        tallies added to ``pattern_tallies``, their outcomes and people's answers copied to
        ``pattern_evidence``. Audited ``retention.pruned`` with the counts and the cut-off.
        Returns the counts (all 0, nothing written, when none was still prunable)."""
        wanted = list(dict.fromkeys(ids))
        counts = dict.fromkeys(("incidents", "findings", "diagnoses", "decisions", "actions", "outcomes"), 0)
        if not wanted:
            return counts
        with self._write() as conn:
            ids = list(conn.execute(_prunable_incidents(closed_before).where(IncidentRow.id.in_(wanted))).scalars())
            if not ids:
                return counts
            self._keep_pattern_record(conn, ids)
            for name, row_cls in (("findings", FindingRow), ("diagnoses", DiagnosisRow), ("decisions", DecisionRow),
                                  ("outcomes", OutcomeRow), ("actions", ActionRow)):
                counts[name] = conn.execute(delete(row_cls).where(row_cls.incident_id.in_(ids))).rowcount
            counts["incidents"] = conn.execute(delete(IncidentRow).where(IncidentRow.id.in_(ids))).rowcount
            self._pruned_before(conn, "incidents", closed_before)
            self._append(conn, self._head(conn), actor, "retention.pruned", "retention",
                         {"what": "incidents", "closed_before": closed_before, "counts": counts})
        return counts

    def _keep_pattern_record(self, conn: Connection, incident_ids: list[str]) -> None:
        """Fold what :meth:`pattern_tallies_by_service` and :meth:`pattern_record` read of these
        incidents into the tables retention keeps, in this write transaction."""
        tallies = conn.execute(_PATTERN_TALLIES.where(ActionRow.incident_id.in_(incident_ids))).all()
        table = self._insert(PatternTallyRow)
        add = table.on_conflict_do_update(
            index_elements=["pattern_id", "service"],
            set_={"succeeded": PatternTallyRow.succeeded + table.excluded.succeeded,
                  "failed": PatternTallyRow.failed + table.excluded.failed})
        for pattern, service, ok, bad in tallies:
            if pattern and (ok or bad):
                conn.execute(add, {"pattern_id": pattern, "service": service, "succeeded": int(ok), "failed": int(bad)})
        evidence: list[dict[str, Any]] = [
            {"ref": ref, "pattern_id": pattern, "service": service, "ts": float(ts), "verdict": str(verdict),
             "rolled_back": bool(rolled), "person": False, "acted_at": float(acted)}
            for ref, pattern, service, ts, verdict, rolled, acted in conn.execute(
                select(OutcomeRow.id, _PATTERN_ID, ActionRow.service, OutcomeRow.ts,
                       OutcomeRow.body["verdict"].as_string(), OutcomeRow.body["rolled_back"].as_boolean(),
                       ActionRow.created_at)
                .join(ActionRow, OutcomeRow.action_id == ActionRow.id)
                .where(OutcomeRow.incident_id.in_(incident_ids), _PATTERN_ID.is_not(None)))]
        answers = (select(DecisionRow.body)
                   .where(DecisionRow.incident_id.in_(incident_ids),
                          DecisionRow.verdict.in_([Verdict.APPROVED.value, Verdict.DENIED.value]),
                          DecisionRow.body["decided_by"].as_string() != "engine"))
        for body in conn.execute(answers).scalars():
            d = Decision.model_validate(body)
            if d.pattern_id and d.action is not None and d.person_evidence is not None:  # what people_evidence counts
                evidence.append({"ref": d.id, "pattern_id": d.pattern_id, "service": d.action.target, "ts": d.ts,
                                 "verdict": d.person_evidence, "rolled_back": False,
                                 "person": True, "acted_at": d.ts})
        if evidence:
            conn.execute(self._insert(PatternEvidenceRow).on_conflict_do_nothing(index_elements=["ref"]), evidence)

    def _pruned_before(self, conn: Connection, kind: str, before: float) -> None:
        """Remember, under :data:`PRUNED_KEY`, the latest cut-off ``kind`` was pruned at (in this
        write transaction, audited with the prune): so a lookup of something gone can say why."""
        value = dict(conn.execute(_STATE_BY_KEY, {"key": PRUNED_KEY}).scalar() or {})
        value[kind] = max(float(value.get(kind) or 0.0), before)
        row = {"key": PRUNED_KEY, "value": value, "updated_at": self._now_in(conn)}
        conn.execute(self._upsert(StateRow, row, keep=()), row)

    def pruned_before(self) -> dict[str, float]:
        """The latest cut-off each kind of history was pruned at (``incidents``: closed before it;
        ``findings``: from before it); a kind never pruned is not in it."""
        return {k: float(v) for k, v in (self.get_state(PRUNED_KEY) or {}).items()}

    def prune_findings(self, before: float, limit: int, *, actor: str = "engine") -> int:
        """Delete at most ``limit`` findings from before ``before`` whose incident is closed (or
        that belong to none), in one write transaction audited ``retention.pruned``; how many."""
        with self._write() as conn:
            ids = list(conn.execute(_prunable_findings(before).limit(limit)).scalars())
            if not ids:
                return 0
            n = int(conn.execute(delete(FindingRow).where(FindingRow.id.in_(ids))).rowcount)
            self._pruned_before(conn, "findings", before)
            self._append(conn, self._head(conn), actor, "retention.pruned", "retention",
                         {"what": "findings", "before": before, "counts": {"findings": n}})
        return n

    def prunable_counts(self, findings_before: float | None, incidents_before: float | None,
                        audit_before: float | None, audit_chunk: int) -> dict[str, int]:
        """What a prune with these cut-offs (None: that kind is kept for ever) would delete now,
        counted in one snapshot: for ``autonomic prune --dry-run``. Audit events go in whole
        chunks of ``audit_chunk`` after the anchor, only while a whole chunk is older than
        ``audit_before`` and the head stays."""
        counts = dict.fromkeys(("incidents", "findings", "diagnoses", "decisions", "actions", "outcomes",
                                "audit_events"), 0)
        with self.reading(), self._read() as conn:
            if incidents_before is not None:
                ids = _prunable_incidents(incidents_before).subquery()
                counts["incidents"] = int(conn.execute(select(func.count()).select_from(ids)).scalar_one())
                for name, row_cls in (("diagnoses", DiagnosisRow), ("decisions", DecisionRow),
                                      ("outcomes", OutcomeRow), ("actions", ActionRow), ("findings", FindingRow)):
                    counts[name] = int(conn.execute(select(func.count()).select_from(row_cls).where(
                        row_cls.incident_id.in_(select(ids.c.id)))).scalar_one())
            if findings_before is not None:
                older = _prunable_findings(findings_before)
                if incidents_before is not None:  # not counted twice
                    older = older.where(FindingRow.incident_id.is_(None) | FindingRow.incident_id.not_in(
                        _prunable_incidents(incidents_before)))
                counts["findings"] += int(conn.execute(select(func.count()).select_from(older.subquery())).scalar_one())
            if audit_before is not None:
                anchor, head = self._anchor_and_head(conn)
                newer = conn.execute(select(func.min(AuditRow.seq)).where(AuditRow.seq > anchor[0],
                                                                          AuditRow.ts >= audit_before)).scalar()
                kept = head[0] - anchor[0]
                if newer is not None:  # the chunks wholly before the first recent entry (the head stays)
                    whole = (int(newer) - 1 - anchor[0]) // audit_chunk
                else:  # every entry old: each chunk pruned appends its (recent) audit entry, which becomes
                    # the head that stays, so the last old chunk goes too, unless it is all there is
                    whole = kept // audit_chunk if kept > audit_chunk else 0
                counts["audit_events"] = whole * audit_chunk
        return counts

    def audit_anchor(self) -> tuple[int, str]:
        """The seq and hash of the last audit event retention pruned: where the kept chain starts
        (0 and the genesis hash while none was)."""
        with self._read() as conn:
            return self._anchor_and_head(conn)[0]

    @staticmethod
    def _anchor_and_head(conn: Connection) -> tuple[tuple[int, str], tuple[int, str]]:
        row = conn.execute(select(_HEAD.c.pruned_seq, _HEAD.c.pruned_hash, _HEAD.c.seq, _HEAD.c.hash)
                           .where(_HEAD.c.id == _HEAD_ID)).one_or_none()
        if row is None:
            raise AuditChainError("audit head row is missing (the audit log was tampered with)")
        return (int(row[0]), str(row[1])), (int(row[2]), str(row[3]))

    def prune_audit(self, events: list[AuditEvent], archive: str, *, actor: str = "engine") -> bool:
        """Delete ``events`` (the oldest kept ones, in seq order, already written to the durable
        archive file ``archive``) and move the anchor to the last of them, in one write
        transaction audited ``retention.audit_pruned``. False, nothing written, when the anchor
        moved meanwhile (another process pruned them). AuditChainError when the stored events
        are not the ones archived, or would leave no event after the anchor."""
        first, last = events[0], events[-1]
        with self._write() as conn:
            head = self._head(conn)
            anchor, _ = self._anchor_and_head(conn)
            if anchor[0] != first.seq - 1:
                return False
            if last.seq >= head[0]:
                raise AuditChainError(f"retention may not prune the audit head (seq {head[0]})")
            stored = conn.execute(select(AuditRow.seq, AuditRow.hash).where(
                AuditRow.seq.in_([first.seq, last.seq]))).all()
            if sorted((int(q), str(h)) for q, h in stored) != [(first.seq, first.hash), (last.seq, last.hash)]:
                raise AuditChainError(f"audit seq {first.seq}..{last.seq} in the store are not the events archived "
                                      f"to {archive}; nothing was pruned")
            n = conn.execute(delete(AuditRow).where(AuditRow.seq >= first.seq, AuditRow.seq <= last.seq)).rowcount
            conn.execute(update(_HEAD).where(_HEAD.c.id == _HEAD_ID).values(pruned_seq=last.seq, pruned_hash=last.hash))
            self._append(conn, head, actor, "retention.audit_pruned", "retention",
                         {"first_seq": first.seq, "last_seq": last.seq, "events": n, "anchor_hash": last.hash,
                          "archive": archive, "before_ts": last.ts})
        return True

    # --- audit reads -------------------------------------------------------------------------

    def audit_events(
        self, since_seq: int = 0, limit: int | None = None, subject: str | None = None, newest: bool = False,
        kinds_not: Iterable[str] = (), kinds: Iterable[str] | None = None,
    ) -> list[AuditEvent]:
        """Audit events with seq greater than ``since_seq``, in order, optionally about one subject,
        of the ``kinds`` given and leaving out the kinds in ``kinds_not``. With ``newest``, the last
        ``limit`` of them (still oldest first), read from the end of the index rather than by
        counting the whole log."""
        stmt = select(AuditRow).where(AuditRow.seq > since_seq)
        if subject is not None:
            stmt = stmt.where(AuditRow.subject == subject)
        if kinds is not None:
            stmt = stmt.where(AuditRow.kind.in_(list(kinds)))
        if kinds_not:
            stmt = stmt.where(AuditRow.kind.not_in(list(kinds_not)))
        stmt = stmt.order_by(AuditRow.seq.desc() if newest else AuditRow.seq)
        if limit is not None:
            stmt = stmt.limit(limit)
        with self._read() as conn:
            events = [_event(r) for r in conn.execute(stmt)]
        return events[::-1] if newest else events

    def verify_audit(self) -> AuditReport:
        """Recompute every hash and check the links, seq continuity and the head row, reading the
        whole chain in one consistent snapshot. The chain is checked from its anchor: the last
        event retention pruned (its seq and hash kept in the head row; the events before it are
        in the audit archive, see :func:`autonomic.knowledge.archive.verify_archive`), or from
        seq 1 while none was."""
        with self._read() as s:
            head = s.execute(select(_HEAD.c.seq, _HEAD.c.hash, _HEAD.c.pruned_seq, _HEAD.c.pruned_hash)
                             .where(_HEAD.c.id == _HEAD_ID)).first()
            head_pair = None if head is None else (int(head[0]), str(head[1]))
            anchor = (0, GENESIS_HASH) if head is None else (int(head[2]), str(head[3]))
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
            return verify_chain(events, head_pair, anchor)
