"""The audit chain: canonical hashing, redaction of secrets, and verification.

Every audit event carries the hash of the one before it, so editing, deleting or inserting
an entry breaks the chain. An entry's hash is the SHA-256 of the canonical JSON (sorted keys,
no spaces, UTF-8) of ``{seq, ts, actor, kind, subject, data, prev_hash}``. The first entry has
``seq`` 1 and ``prev_hash`` ``"0" * 64``. The store keeps a one-row head (last seq and hash),
updated in the same transaction as each append, so removing the tail is detectable too.

This module is pure: no I/O. The store feeds it rows and stores what it returns.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from pydantic_core import to_jsonable_python

from autonomic.model import AuditEvent
from autonomic.printable import counted

GENESIS_HASH = "0" * 64
REDACTED = "[redacted]"

_SECRET_KEY = re.compile(
    r"password|passwd|secret|token|api[_-]?key|authorization|cookie|private[_-]?key", re.IGNORECASE
)


@dataclass(frozen=True)
class AuditReport:
    """The result of verifying the whole chain. ``ok`` is True only when ``problems`` is empty.
    ``anchor_seq`` and ``anchor_hash``: where the verified events start from, the last event
    pruned by retention (0 and the genesis hash when the chain is checked from its first event);
    ``last_seq`` and ``last_hash``: the last event checked (the anchor's when none was)."""

    ok: bool
    checked: int
    problems: list[str]
    anchor_seq: int = 0
    anchor_hash: str = GENESIS_HASH
    last_seq: int = field(default=0, compare=False)
    last_hash: str = field(default=GENESIS_HASH, compare=False)

    def summary(self) -> str:
        """One line for people: how many entries, from where."""
        entries = counted(self.checked, "entry", "entries")
        if self.anchor_seq == 0:
            return f"{entries} (seq 1..{self.last_seq}, from the first entry)"
        return (f"{entries} (seq {self.anchor_seq + 1}..{self.last_seq}); verified from the "
                f"retention anchor: seq 1..{self.anchor_seq} were pruned into the audit archive, the last "
                f"ending in hash {self.anchor_hash[:16]}")


def canonical_json(value: Any) -> str:
    """The one serialisation every hash is computed over."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def redact(value: Any) -> Any:
    """A copy of ``value`` where every dict entry whose key names a secret (password, token,
    api_key, authorization, cookie, ...; case-insensitive) has its value replaced by
    ``"[redacted]"``, recursively through dicts and lists."""
    if isinstance(value, dict):
        return {k: REDACTED if _SECRET_KEY.search(str(k)) else redact(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact(v) for v in value]
    return value


def plain_data(data: Any) -> Any:
    """``data`` as plain JSON values: enums, models, tuples and sets converted, NaN/inf as null,
    anything else (an exception, a path) as its text, and bytes as the text they are, each byte
    that is not UTF-8 written as ``\\xNN`` (raw output is kept, not refused)."""
    try:
        return to_jsonable_python(data, inf_nan_mode="null", fallback=str)
    except UnicodeDecodeError:  # bytes that are not UTF-8
        return to_jsonable_python(_bytes_as_text(data), inf_nan_mode="null", fallback=str)


def _bytes_as_text(value: Any) -> Any:
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("utf-8", errors="backslashreplace")
    if isinstance(value, dict):
        return {_bytes_as_text(k): _bytes_as_text(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_bytes_as_text(v) for v in value]
    return value


NUL_STORED = "\ufffd"
"""What U+0000 is stored as in every JSON value (see :func:`without_nul`)."""


def without_nul(value: Any) -> Any:
    """``value`` (plain JSON values) with U+0000 in its strings, keys included, as U+FFFD. JSON
    writes it ``\\u0000``, which PostgreSQL's json operators refuse to turn into text: a read of
    any field of a document holding one failed for as long as the row was there. So no JSON
    value the store writes holds one, on either back end."""
    if isinstance(value, str):
        return value.replace("\x00", NUL_STORED)
    if isinstance(value, dict):
        return {without_nul(k): without_nul(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [without_nul(v) for v in value]
    return value


def prepare_data(data: dict[str, Any] | None) -> dict[str, Any]:
    """Audit data as it will be stored and hashed: plain JSON values (:func:`plain_data`),
    secrets redacted, U+0000 as U+FFFD (:func:`without_nul`), and exactly what a JSON round trip
    gives back (so the hash recomputed from the stored row matches)."""
    if not data:
        return {}
    text = canonical_json(redact(plain_data(data)))
    result: dict[str, Any] = json.loads(text)
    return without_nul(result) if "\\u0000" in text else result


def event_hash(
    *, seq: int, ts: float, actor: str, kind: str, subject: str, data: dict[str, Any], prev_hash: str
) -> str:
    """SHA-256 (hex) of the canonical JSON of the event's fields."""
    fields = {
        "seq": seq,
        "ts": ts,
        "actor": actor,
        "kind": kind,
        "subject": subject,
        "data": data,
        "prev_hash": prev_hash,
    }
    return hashlib.sha256(canonical_json(fields).encode("utf-8")).hexdigest()


def make_event(
    *, seq: int, ts: float, actor: str, kind: str, subject: str, data: dict[str, Any] | None, prev_hash: str
) -> AuditEvent:
    """The next event of the chain, with its data redacted and its hash computed."""
    clean = prepare_data(data)
    digest = event_hash(
        seq=seq, ts=ts, actor=actor, kind=kind, subject=subject, data=clean, prev_hash=prev_hash
    )
    return AuditEvent(
        seq=seq, ts=ts, actor=actor, kind=kind, subject=subject, data=clean, prev_hash=prev_hash, hash=digest
    )


def verify_chain(events: Iterable[AuditEvent], head: tuple[int, str] | None,
                 anchor: tuple[int, str] = (0, GENESIS_HASH)) -> AuditReport:
    """Check every event's hash, the prev-hash links, seq continuity from the anchor (the last
    event retention pruned, whose seq and hash the store keeps; seq 0 and the genesis hash when
    none was: the chain then starts at seq 1), and that the head row (last seq, last hash)
    matches the end of the chain. ``events`` must be in seq order."""
    report = verify_links(events, anchor)
    problems = list(report.problems)
    last_seq, last_hash = report.last_seq, report.last_hash
    if head is None:
        problems.append("audit head row missing")
    else:
        head_seq, head_hash = head
        if head_seq > last_seq:
            problems.append(f"head says seq {head_seq}, chain ends at {last_seq} (tail deleted)")
        elif head_seq < last_seq:
            problems.append(f"head says seq {head_seq}, chain ends at {last_seq} (appended without head)")
        elif head_hash != last_hash:
            problems.append(f"head hash does not match seq {last_seq} (tail replaced)")
    return AuditReport(ok=not problems, checked=report.checked, problems=problems, anchor_seq=anchor[0],
                       anchor_hash=anchor[1], last_seq=last_seq, last_hash=last_hash)


def verify_links(events: Iterable[AuditEvent], anchor: tuple[int, str] = (0, GENESIS_HASH)) -> AuditReport:
    """Check every event's hash, the prev-hash links and seq continuity, starting after
    ``anchor`` (seq, hash): a stretch of the chain on its own (an archive file), with no head."""
    problems: list[str] = []
    checked = 0
    last_seq, last_hash = anchor
    for ev in events:
        checked += 1
        recomputed = event_hash(
            seq=ev.seq,
            ts=ev.ts,
            actor=ev.actor,
            kind=ev.kind,
            subject=ev.subject,
            data=ev.data,
            prev_hash=ev.prev_hash,
        )
        if recomputed != ev.hash:
            problems.append(f"seq {ev.seq}: hash mismatch (entry edited)")
        if ev.seq != last_seq + 1:
            if ev.seq <= last_seq:
                problems.append(f"seq {ev.seq}: out of order after seq {last_seq}")
            elif ev.seq == last_seq + 2:
                problems.append(f"seq {last_seq + 1} missing (entry deleted)")
            else:
                problems.append(f"seq {last_seq + 1}..{ev.seq - 1} missing (entries deleted)")
        elif ev.prev_hash != last_hash:
            problems.append(f"seq {ev.seq}: prev_hash does not match seq {last_seq} (chain broken)")
        last_seq, last_hash = ev.seq, ev.hash
    return AuditReport(ok=not problems, checked=checked, problems=problems, anchor_seq=anchor[0],
                       anchor_hash=anchor[1], last_seq=last_seq, last_hash=last_hash)
