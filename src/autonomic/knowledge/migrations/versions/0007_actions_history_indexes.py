"""Reads of an action's recent past that stay as fast after years of actions as on the first day.

Two reads every decision makes read a service's or an action type's whole history, so their
cost grew with every action ever stored (with 100,000 actions, about 40 ms a decision on SQLite):

* the rate-limit counts (``type = ? OR service = ? OR (multi AND ...)``, created in the last
  week): each term's index found every action of the type (or service) ever created, and each
  row was then read to compare ``created_at``. Now each term has an index on (term, created_at):
  only the week's actions are read;
* the busy check (:meth:`Store.service_activity`: an action in flight on the service, and when
  its last one ended): it read every action of the service and its JSON body. Now an index on
  (service, state) finds the live ones, and a new ``ended_at`` column (the action's
  ``updated_at`` once it ended, other than cancelled; NULL before) with an index on (service,
  ended_at) gives the last end at once.

``ended_at`` is filled here from the body of every action already stored.

Revision ID: 0007
Revises: 0005
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ACTIONS = sa.table("actions", sa.column("state", sa.String()), sa.column("ended_at", sa.Float()),
                    sa.column("body", sa.JSON()))
# the states an action ends in, cancelled (it never ran) aside: as tables.ENDED
_ENDED = ("succeeded", "failed", "rolled_back", "escalated")
_INDEXES = {
    "ix_actions_type_created_at": ["type", "created_at"],
    "ix_actions_service_created_at": ["service", "created_at"],
    "ix_actions_multi_created_at": ["multi", "created_at"],
    "ix_actions_service_state": ["service", "state"],
    "ix_actions_service_ended_at": ["service", "ended_at"],
}


def upgrade() -> None:
    op.add_column("actions", sa.Column("ended_at", sa.Float(), nullable=True))
    op.execute(sa.update(_ACTIONS).where(_ACTIONS.c.state.in_(_ENDED))
               .values(ended_at=_ACTIONS.c.body["updated_at"].as_float()))
    for name, columns in _INDEXES.items():
        op.create_index(name, "actions", columns)


def downgrade() -> None:
    for name in _INDEXES:
        op.drop_index(name, table_name="actions")
    op.drop_column("actions", "ended_at")
