"""U+0000 in the JSON values already stored on PostgreSQL, as U+FFFD.

JSON writes U+0000 as ``\\u0000``, which PostgreSQL's json operators refuse to turn into text
("unsupported Unicode escape sequence"), and a read of any field of a document holding one
failed: one action whose error quoted a command's output with a NUL byte in it failed every read
of the patterns' record, the autonomy ladder's and retention's prune, for as long as the row was
there. The store now writes U+FFFD in its place (``Store``'s JSON serializer); this revision does
the same to the nouns and named states stored before, on PostgreSQL (SQLite reads them as they
are; it is left alone). Audit events are not touched: their hashes are over their data as
stored, and nothing reads a field of it inside the database.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-02
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# (table, key column, JSON column)
_COLUMNS = [(t, "id", "body") for t in ("findings", "incidents", "diagnoses", "decisions", "actions", "outcomes")]
_COLUMNS.append(("state", "key", "value"))


def _without_nul(value: Any) -> Any:
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd")
    if isinstance(value, dict):
        return {_without_nul(k): _without_nul(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_without_nul(v) for v in value]
    return value


def upgrade() -> None:
    conn = op.get_bind()
    if conn.dialect.name != "postgresql":
        return
    for table, key, column in _COLUMNS:
        # the six characters \u0000 in the text (a backslash before "u0000" too: parsed to tell)
        found = conn.execute(sa.text(f"SELECT {key}, CAST({column} AS TEXT) FROM {table} "
                                     f"WHERE strpos(CAST({column} AS TEXT), :escape) > 0"),
                             {"escape": "\\u0000"}).all()
        fixed = [{"k": k, "v": json.dumps(_without_nul(json.loads(text)), separators=(",", ":"),
                                          ensure_ascii=False)} for k, text in found]
        if fixed:
            conn.execute(sa.text(f"UPDATE {table} SET {column} = CAST(:v AS JSON) WHERE {key} = :k"), fixed)


def downgrade() -> None:
    pass
