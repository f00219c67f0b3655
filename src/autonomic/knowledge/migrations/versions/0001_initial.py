"""Initial schema: noun tables, the hash-chained audit log and its head, and named state.

Revision ID: 0001
Revises:
Create Date: 2024-01-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

GENESIS_HASH = "0" * 64


def _noun_table(name: str, *columns: sa.Column[object], indexed: Sequence[str]) -> None:
    op.create_table(
        name,
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("first_seq", sa.Integer(), nullable=False),
        sa.Column("body", sa.JSON(), nullable=False),
        *columns,
    )
    for col in indexed:
        op.create_index(f"ix_{name}_{col}", name, [col])


def upgrade() -> None:
    _noun_table(
        "findings",
        sa.Column("incident_id", sa.String(64), nullable=True),
        sa.Column("service", sa.String(255), nullable=False),
        sa.Column("cause", sa.String(255), nullable=False),
        sa.Column("ts", sa.Float(), nullable=False),
        indexed=("incident_id", "service", "cause", "ts"),
    )
    _noun_table(
        "incidents",
        sa.Column("service", sa.String(255), nullable=False),
        sa.Column("cause", sa.String(255), nullable=False),
        sa.Column("state", sa.String(32), nullable=False),
        sa.Column("opened_at", sa.Float(), nullable=False),
        indexed=("service", "cause", "state", "opened_at"),
    )
    _noun_table(
        "diagnoses",
        sa.Column("incident_id", sa.String(64), nullable=False),
        sa.Column("ts", sa.Float(), nullable=False),
        indexed=("incident_id", "ts"),
    )
    _noun_table(
        "decisions",
        sa.Column("incident_id", sa.String(64), nullable=False),
        sa.Column("verdict", sa.String(32), nullable=False),
        sa.Column("ts", sa.Float(), nullable=False),
        indexed=("incident_id", "verdict", "ts"),
    )
    _noun_table(
        "actions",
        sa.Column("incident_id", sa.String(64), nullable=False),
        sa.Column("decision_id", sa.String(64), nullable=False),
        sa.Column("service", sa.String(255), nullable=False),
        sa.Column("type", sa.String(255), nullable=False),
        sa.Column("state", sa.String(32), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        indexed=("incident_id", "decision_id", "service", "type", "state", "created_at"),
    )
    _noun_table(
        "outcomes",
        sa.Column("incident_id", sa.String(64), nullable=False),
        sa.Column("action_id", sa.String(64), nullable=False),
        sa.Column("ts", sa.Float(), nullable=False),
        indexed=("incident_id", "action_id", "ts"),
    )

    op.create_table(
        "audit",
        sa.Column("seq", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("ts", sa.Float(), nullable=False),
        sa.Column("actor", sa.String(255), nullable=False),
        sa.Column("kind", sa.String(255), nullable=False),
        sa.Column("subject", sa.String(255), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
    )
    op.create_index("ix_audit_ts", "audit", ["ts"])
    op.create_index("ix_audit_subject", "audit", ["subject"])

    head = op.create_table(
        "audit_head",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
    )
    op.bulk_insert(head, [{"id": 1, "seq": 0, "hash": GENESIS_HASH}])

    op.create_table(
        "state",
        sa.Column("key", sa.String(255), primary_key=True),
        sa.Column("value", sa.JSON(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
    )


def downgrade() -> None:
    for name in (
        "state",
        "audit_head",
        "audit",
        "outcomes",
        "actions",
        "decisions",
        "diagnoses",
        "incidents",
        "findings",
    ):
        op.drop_table(name)
