"""Retention: what pruning keeps so that nothing it removes changes what the engine decides.

* ``audit_head.pruned_seq`` / ``pruned_hash``: the anchor the kept audit chain starts from, the
  seq and hash of the last event pruned (written to an archive file first); 0 and the genesis
  hash while none was.
* ``pattern_tallies``: per (pattern, service), the succeeded and failed actions pruned, added to
  what the kept actions count (the diagnosis ranks patterns by these).
* ``pattern_evidence``: each pruned outcome, and each pruned person's answer, of a pattern's
  autonomy record, as the ladder reads it (ts, verdict, rolled back): the ladder replays the
  record in order, so items are kept, not a sum.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ID = sa.String(64).with_variant(sa.Text(), "postgresql")
_NAME = sa.String(255).with_variant(sa.Text(), "postgresql")
_SEQ = sa.Integer().with_variant(sa.BigInteger(), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("audit_head") as batch:  # SQLite: a copy of the one-row table
        batch.add_column(sa.Column("pruned_seq", _SEQ, nullable=False, server_default="0"))
        batch.add_column(sa.Column("pruned_hash", sa.String(64), nullable=False, server_default="0" * 64))
    op.create_table(
        "pattern_tallies",
        sa.Column("pattern_id", _NAME, primary_key=True),
        sa.Column("service", _NAME, primary_key=True),
        sa.Column("succeeded", sa.Integer(), nullable=False),
        sa.Column("failed", sa.Integer(), nullable=False),
    )
    op.create_table(
        "pattern_evidence",
        sa.Column("ref", _ID, primary_key=True),
        sa.Column("pattern_id", _NAME, nullable=False),
        sa.Column("service", _NAME, nullable=False),
        sa.Column("ts", sa.Float(), nullable=False),
        sa.Column("verdict", sa.String(32), nullable=False),
        sa.Column("rolled_back", sa.Boolean(), nullable=False),
        sa.Column("person", sa.Boolean(), nullable=False),
    )
    op.create_index("ix_pattern_evidence_pattern_service", "pattern_evidence", ["pattern_id", "service"])


def downgrade() -> None:
    op.drop_index("ix_pattern_evidence_pattern_service", table_name="pattern_evidence")
    op.drop_table("pattern_evidence")
    op.drop_table("pattern_tallies")
    with op.batch_alter_table("audit_head") as batch:
        batch.drop_column("pruned_hash")
        batch.drop_column("pruned_seq")
