"""The audit archive: audit events retention pruned from the store, as gzip JSONL files.

Events are pruned in whole chunks of :data:`CHUNK` (seq 1..1000, 1001..2000, ...), each written
first to its own file ``audit-<first seq>-<last seq>.jsonl.gz`` (12-digit, zero-padded: the
names sort in chain order), one event per line as the store held it (its hash included). A file
is written to a temporary name, fsynced, renamed into place and its folder fsynced before the
store deletes a single event of it; the store then keeps the last pruned event's seq and hash
as the anchor its chain verifies from (:meth:`Store.verify_audit`). Chunks are fixed, so a
prune that crashed between the file and the delete writes the very same file again next time
(same name, same bytes): nothing is archived twice under two names, nothing is lost. A file
already there with other events in it (a store restored from an older backup) is never written
over: the prune is refused (AuditChainError), naming it.

Each file verifies on its own (every hash, every link inside it), and the files in order form
the chain from its first event to the store's anchor: :func:`verify_archive`.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import zlib
from collections.abc import Sequence
from pathlib import Path

from autonomic.errors import AuditChainError
from autonomic.knowledge.audit import GENESIS_HASH, AuditReport, canonical_json, verify_links
from autonomic.model import AuditEvent

CHUNK = 1000
"""Audit events per archive file (and per delete transaction). Fixed: see the module docstring."""

_NAME = re.compile(r"^audit-(\d{12})-(\d{12})\.jsonl\.gz$")


def chunk_of(seq: int) -> tuple[int, int]:
    """The first and last seq of the archive chunk ``seq`` falls in."""
    first = (seq - 1) // CHUNK * CHUNK + 1
    return first, first + CHUNK - 1


def archive_path(folder: Path, first: int, last: int) -> Path:
    return folder / f"audit-{first:012d}-{last:012d}.jsonl.gz"


def write_archive(folder: Path, events: Sequence[AuditEvent]) -> Path:
    """Write ``events`` (one chunk, in seq order) to their archive file and make it durable (the
    file and its folder fsynced) before returning its path. The bytes depend on the events only
    (no time stamp in the gzip header): writing a chunk again gives the same file."""
    created = _make_folder(folder)
    path = archive_path(folder, events[0].seq, events[-1].seq)
    body = "".join(canonical_json(e.model_dump(mode="json")) + "\n" for e in events).encode("utf-8")
    _same_or_absent(path, events)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as raw:
            with gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as gz:
                gz.write(body)
            raw.flush()
            os.fsync(raw.fileno())
        os.replace(tmp, path)
    except BaseException:  # the disk full, say: what was written of it would keep the space
        tmp.unlink(missing_ok=True)
        raise
    for made in (folder, *created):  # the file's name in its folder, and each folder made in its parent
        _fsync_folder(made)
    return path


def _make_folder(folder: Path) -> list[Path]:
    """Make ``folder`` (and its missing parents); the parents of the folders it made, deepest
    first: their entries must be made durable too, or a crash could lose the whole folder after
    the store deleted what it holds."""
    missing = [p for p in (folder, *folder.parents) if not p.exists()]
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    return [p.parent for p in missing]


def _fsync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _same_or_absent(path: Path, events: Sequence[AuditEvent]) -> None:
    """Nothing when there is no file at ``path`` or it holds ``events`` (a prune killed after the
    file, written again; the same seqs and hashes, whatever version serialised them);
    AuditChainError, the file left alone, when it holds anything else: other events under these
    seqs (the store was restored from a backup taken before the file was written, and went on
    with another history), or a file that cannot be read. It is the only record of the events it
    holds: never written over."""
    try:
        with gzip.open(path, "rt", encoding="utf-8") as f:
            held = [(int(e["seq"]), str(e["hash"])) for e in map(json.loads, f)]
    except FileNotFoundError:
        return
    except (gzip.BadGzipFile, EOFError, zlib.error, ValueError, KeyError, TypeError) as exc:
        # (any other OSError: it cannot be written either)
        raise AuditChainError(f"the audit archive {path} cannot be read ({exc}), so it is not written over: nothing "
                              "was archived or pruned; move it away (keep it) and prune again") from None
    if held != [(e.seq, e.hash) for e in events]:
        raise AuditChainError(f"the audit archive {path} holds other events for these seqs than the store does (was "
                              "the store restored from a backup older than the archive?): it is not written over "
                              "and nothing was archived or pruned; keep the file (it is the only record of the "
                              "events it holds), move it out of the archive folder, and prune again")


def read_archive(path: Path) -> list[AuditEvent]:
    """The events of one archive file, in the order written."""
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return [AuditEvent.model_validate(json.loads(line)) for line in f if line.strip()]


def archive_files(folder: Path) -> list[Path]:
    """The archive files in ``folder``, in chain order (temporary files of a write that did not
    finish are not archive files)."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if _NAME.match(p.name))


def verify_archive(folder: Path) -> AuditReport:
    """Verify every archive file in ``folder`` and that they join: each file's events against
    their hashes and links, the first file from seq 1 and the genesis hash, each next one from
    where the one before ended. The report's ``last_seq`` and ``last_hash`` are where the
    archive ends: the store's anchor, when it is complete."""
    problems: list[str] = []
    checked = 0
    anchor = (0, GENESIS_HASH)
    for path in archive_files(folder):
        try:
            events = read_archive(path)
        except (OSError, ValueError, EOFError) as exc:
            problems.append(f"{path.name}: unreadable ({exc})")
            break
        report = verify_links(events, anchor)
        problems.extend(f"{path.name}: {p}" for p in report.problems)
        checked += report.checked
        anchor = (report.last_seq, report.last_hash)
    return AuditReport(ok=not problems, checked=checked, problems=problems, last_seq=anchor[0],
                       last_hash=anchor[1])
