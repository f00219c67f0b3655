"""An indexed ``closed_at`` column on incidents, filled from each incident's body.

Whether an incident is closed was only in its JSON body, so finding the unclosed ones (engine
start, ``autonomic status``, the API's overview and incident list) meant reading the newest
1,000 or 10,000 incidents and filtering them (time growing with history, and an unclosed
incident older than those never found), and a report read every incident ever stored. With
this column those reads ask the index: ``closed_at IS NULL``, or ``closed_at >= start``.

Revision ID: 0003
Revises: 0002
Create Date: 2025-02-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_INCIDENTS = sa.table("incidents", sa.column("closed_at", sa.Float()), sa.column("body", sa.JSON()))


def upgrade() -> None:
    op.add_column("incidents", sa.Column("closed_at", sa.Float(), nullable=True))
    op.execute(sa.update(_INCIDENTS).values(closed_at=_INCIDENTS.c.body["closed_at"].as_float()))
    op.create_index("ix_incidents_closed_at", "incidents", ["closed_at"])


def downgrade() -> None:
    op.drop_index("ix_incidents_closed_at", table_name="incidents")
    op.drop_column("incidents", "closed_at")
