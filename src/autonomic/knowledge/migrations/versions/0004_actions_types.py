"""A ``types`` column on actions: every action type the action runs, ``|a|b|``.

A multi-step action (a workflow) was stored, counted and broken under its first step's type
only: a workflow whose second step restarts a process did not count towards the ``process``
rate limits. Rate limits now count an action under every type it runs (``types LIKE
'%|process|%'``, among the actions the created_at index already narrowed to a week), so the
column holds its own type and each step's, filled here from the body of every action already
stored.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from autonomic.knowledge.tables import action_types

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ACTIONS = sa.table("actions", sa.column("id", sa.Text()), sa.column("types", sa.Text()),
                    sa.column("body", sa.JSON()))
_BATCH = 5000


def upgrade() -> None:
    op.add_column("actions", sa.Column("types", sa.Text(), nullable=False, server_default=""))
    conn = op.get_bind()
    rows = conn.execute(sa.select(_ACTIONS.c.id, _ACTIONS.c.body)).all()
    # one executemany per batch, not one statement per action: a store with 100,000 actions was
    # migrated in 47 s on PostgreSQL (15 s on SQLite) while every other process opening it gave
    # up after the store's 10 s lock wait
    fill = sa.update(_ACTIONS).where(_ACTIONS.c.id == sa.bindparam("action_id")).values(
        types=sa.bindparam("action_types"))
    for start in range(0, len(rows), _BATCH):
        conn.execute(fill, [{"action_id": action_id, "action_types": action_types(body)}
                            for action_id, body in rows[start:start + _BATCH]])


def downgrade() -> None:
    op.drop_column("actions", "types")
