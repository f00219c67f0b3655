"""Retention: how long the store keeps what the engine wrote, and pruning what is older.

Three kinds of history are pruned, each after its own time (``retention:`` in autonomic.yaml;
null or 0 keeps that kind for ever):

* **findings** of closed incidents, ``findings_days`` after the finding;
* **closed incidents**, ``incidents_days`` after they closed, with everything hanging off them
  (the findings left, diagnoses, decisions, actions, outcomes);
* **audit events**, ``audit_days`` after they were written, written first to the audit archive
  (:mod:`autonomic.knowledge.archive`) and from then on verified from an anchor.

What is never pruned: an incident that is not closed, or not in a terminal state; an incident
with an action that is not terminal, or was created within the incident cut-off; the head of
the audit chain; named state (pauses, breakers, backoff, leases, autonomy levels). What the
pattern statistics read of a pruned incident is kept first, in the same transaction (see
:meth:`Store.prune_incidents`): the diagnosis's tallies and the autonomy ladder's record come
out the same after a prune as before.

Pruning goes in bounded transactions (``batch`` incidents or findings, one archive chunk of
audit events) so a writer never waits long behind it, each audited ``retention.pruned`` or
``retention.audit_pruned`` with its counts and cut-off. The engine prunes every ``interval_s``
while it leads; ``autonomic prune`` does it by hand (``--dry-run``: only count).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from autonomic.errors import AuditChainError
from autonomic.knowledge.archive import CHUNK, write_archive
from autonomic.knowledge.audit import verify_links
from autonomic.knowledge.store import Store

DAY_S = 86_400.0


class RetentionSpec(BaseModel):
    """``retention:``: how long each kind of history is kept, in days (null or 0: for ever)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    findings_days: float | None = Field(default=30.0, ge=0)
    incidents_days: float | None = Field(default=90.0, ge=0)
    audit_days: float | None = Field(default=365.0, ge=0)
    interval_s: float = Field(default=3600.0, gt=0)  # how often the engine prunes
    batch: int = Field(default=200, ge=1, le=100_000)  # incidents, or findings x 10, per transaction
    archive_dir: str | None = None  # default: state_dir/audit-archive (relative: to the config file)

    @staticmethod
    def _seconds(days: float | None) -> float | None:
        return None if not days else days * DAY_S

    @property
    def findings_s(self) -> float | None:
        return self._seconds(self.findings_days)

    @property
    def incidents_s(self) -> float | None:
        return self._seconds(self.incidents_days)

    @property
    def audit_s(self) -> float | None:
        return self._seconds(self.audit_days)


@dataclass(frozen=True)
class Cutoffs:
    """What is older than these times goes (None: that kind is kept). Nouns are dated by the
    engine's clock; audit events by the store's (PostgreSQL's server clock, this host's on SQLite)."""

    findings: float | None
    incidents: float | None
    audit: float | None

    @classmethod
    def of(cls, spec: RetentionSpec, now: float, wall_now: float) -> Cutoffs:
        def before(keep_s: float | None, at: float) -> float | None:
            return None if keep_s is None else at - keep_s

        return cls(before(spec.findings_s, now), before(spec.incidents_s, now), before(spec.audit_s, wall_now))


@dataclass
class PruneResult:
    """What one prune did (or, dry, would do)."""

    cutoffs: Cutoffs
    counts: dict[str, int] = field(default_factory=dict)
    archives: list[str] = field(default_factory=list)
    transactions: int = 0
    longest_transaction_s: float = 0.0
    longest_s: dict[str, float] = field(default_factory=dict)  # per kind pruned (incidents, findings, audit)
    took_s: list[float] = field(default_factory=list)  # each transaction's time, in order
    finished: bool = True  # False: stopped at max_transactions with more to prune

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def add(self, kind: str, counts: dict[str, int], took_s: float) -> None:
        for k, v in counts.items():
            self.counts[k] = self.counts.get(k, 0) + v
        self.transactions += 1
        self.longest_transaction_s = max(self.longest_transaction_s, took_s)
        self.longest_s[kind] = max(self.longest_s.get(kind, 0.0), took_s)
        self.took_s.append(took_s)


_KINDS = ("incidents", "findings", "diagnoses", "decisions", "actions", "outcomes", "audit_events")


def dry_run(store: Store, spec: RetentionSpec, now: float, wall_now: float | None = None) -> PruneResult:
    """What :func:`prune` would delete now, counted, nothing written."""
    cut = Cutoffs.of(spec, now, store.server_time() if wall_now is None else wall_now)
    return PruneResult(cut, store.prunable_counts(cut.findings, cut.incidents, cut.audit, CHUNK))


def prune(store: Store, spec: RetentionSpec, now: float, archive_dir: Path, *, actor: str = "engine",
          wall_now: float | None = None, max_transactions: int | None = None,
          before_transaction: Callable[[], None] | None = None) -> PruneResult:
    """Prune what ``spec`` no longer keeps, in bounded transactions: closed incidents with what
    hangs off them, then findings, then whole chunks of the audit log (each chunk archived in
    ``archive_dir`` and made durable before it is deleted). With ``max_transactions``, stop after
    that many (``finished`` False: call again to go on), so a caller's loop is not held up;
    ``before_transaction`` is called before each (the engine's watchdog: each is one bounded step).
    AuditChainError when the audit events to archive do not verify: they are not archived or
    deleted (``autonomic audit verify`` says what is wrong)."""
    cut = Cutoffs.of(spec, now, store.server_time() if wall_now is None else wall_now)
    result = PruneResult(cut, dict.fromkeys(_KINDS, 0))

    def more() -> bool:
        if max_transactions is not None and result.transactions >= max_transactions:
            result.finished = False
            return False
        if before_transaction is not None:
            before_transaction()
        return True

    if cut.incidents is not None:
        while more():
            ids = store.prunable_incidents(cut.incidents, spec.batch)
            if not ids:
                break
            started = time.perf_counter()
            counts = store.prune_incidents(ids, cut.incidents, actor=actor)
            result.add("incidents", counts, time.perf_counter() - started)
            if not counts["incidents"]:
                break  # taken meanwhile (another process pruning): looked at again next time
    if cut.findings is not None:
        while more():
            started = time.perf_counter()
            n = store.prune_findings(cut.findings, spec.batch * 10, actor=actor)
            if not n:
                break
            result.add("findings", {"findings": n}, time.perf_counter() - started)
    if cut.audit is not None:
        while more():
            archived = _prune_audit_chunk(store, cut.audit, archive_dir, actor, result)
            if archived is None:
                break
    return result


def _prune_audit_chunk(store: Store, before: float, archive_dir: Path, actor: str,
                       result: PruneResult) -> str | None:
    """Archive and delete the next chunk of the audit log after the anchor, when the whole chunk
    is older than ``before`` and the head is not in it; the archive file's path, or None."""
    anchor = store.audit_anchor()
    events = store.audit_events(since_seq=anchor[0], limit=CHUNK + 1)  # one more: the head stays
    if len(events) <= CHUNK or events[CHUNK - 1].ts >= before:
        return None
    chunk = events[:CHUNK]
    checked = verify_links(chunk, anchor)
    if not checked.ok:
        raise AuditChainError(f"audit seq {anchor[0] + 1}..{chunk[-1].seq} do not verify, so they are neither "
                              f"archived nor pruned: {'; '.join(checked.problems[:3])}")
    path = write_archive(archive_dir, chunk)  # durable before anything is deleted
    started = time.perf_counter()
    if not store.prune_audit(chunk, str(path), actor=actor):
        return None  # another process pruned it first: its file is this one, byte for byte
    result.add("audit", {"audit_events": len(chunk)}, time.perf_counter() - started)
    result.archives.append(str(path))
    return str(path)
