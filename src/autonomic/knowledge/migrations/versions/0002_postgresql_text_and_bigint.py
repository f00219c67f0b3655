"""On PostgreSQL: unbounded text for names and ids, 64-bit audit sequence numbers.

Revision 0001 declared names (service, cause, action type, audit actor, kind and subject, state
keys) as VARCHAR(255) and ids as VARCHAR(64), and sequence numbers as INTEGER. SQLite enforces
none of that (its INTEGER is 64-bit and VARCHAR(n) is TEXT of any length), but PostgreSQL does:
an alert label longer than 255 characters would be refused there and accepted on SQLite, and the
audit chain would stop at seq 2**31 - 1. This makes PostgreSQL behave as SQLite does. On SQLite
there is nothing to change, so nothing is done (no table is rebuilt).

Revision ID: 0002
Revises: 0001
Create Date: 2025-01-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NOUNS = ("findings", "incidents", "diagnoses", "decisions", "actions", "outcomes")
# (table, column, type in 0001)
TEXT_COLUMNS: list[tuple[str, str, sa.types.TypeEngine[str]]] = [
    *[(t, "id", sa.String(64)) for t in NOUNS],
    ("findings", "incident_id", sa.String(64)),
    ("findings", "service", sa.String(255)),
    ("findings", "cause", sa.String(255)),
    ("incidents", "service", sa.String(255)),
    ("incidents", "cause", sa.String(255)),
    ("diagnoses", "incident_id", sa.String(64)),
    ("decisions", "incident_id", sa.String(64)),
    ("actions", "incident_id", sa.String(64)),
    ("actions", "decision_id", sa.String(64)),
    ("actions", "service", sa.String(255)),
    ("actions", "type", sa.String(255)),
    ("outcomes", "incident_id", sa.String(64)),
    ("outcomes", "action_id", sa.String(64)),
    ("audit", "actor", sa.String(255)),
    ("audit", "kind", sa.String(255)),
    ("audit", "subject", sa.String(255)),
    ("state", "key", sa.String(255)),
]
BIGINT_COLUMNS = [*[(t, "first_seq") for t in NOUNS], ("audit", "seq"), ("audit_head", "seq")]


def _postgresql() -> bool:
    return op.get_bind().dialect.name == "postgresql"


def upgrade() -> None:
    if not _postgresql():
        return
    for table, column, old in TEXT_COLUMNS:
        op.alter_column(table, column, type_=sa.Text(), existing_type=old)
    for table, column in BIGINT_COLUMNS:
        op.alter_column(table, column, type_=sa.BigInteger(), existing_type=sa.Integer())


def downgrade() -> None:
    if not _postgresql():
        return
    for table, column in BIGINT_COLUMNS:
        op.alter_column(table, column, type_=sa.Integer(), existing_type=sa.BigInteger())
    for table, column, old in TEXT_COLUMNS:
        op.alter_column(table, column, type_=old, existing_type=sa.Text())
