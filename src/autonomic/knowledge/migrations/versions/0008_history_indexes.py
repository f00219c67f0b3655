"""Reads of a service's or a pattern's past that stay as fast after years of actions as on the first day.

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

And one read the autonomy ladder makes at every decision it weighs
(:meth:`Store.pattern_record`): the outcomes of a pattern's actions on a service, and the
answers people gave on the pattern. It read every action of the service and every approved or
denied decision ever made, the engine's own denials among them (0.27 s with 100,000 of each).
Now a ``pattern_id`` column on actions, indexed with the service, and on decisions a
``person`` flag (decided_by is not "engine"), the ``pattern_id`` and the ``target`` of its action,
indexed together, read only the pair's rows.

``ended_at``, ``pattern_id``, ``person`` and ``target`` are filled here from the body of every
action and decision already stored, one statement per table. An autonomic from before this revision still
writing beside a newer one (a rolling deploy) leaves them empty on what it writes: its ended
actions then keep no settle time and count in no autonomy ladder until it is replaced.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_NAME = sa.String(255).with_variant(sa.Text(), "postgresql")  # as tables.NAME
_ACTIONS = sa.table("actions", sa.column("state", sa.String()), sa.column("ended_at", sa.Float()),
                    sa.column("pattern_id", _NAME), sa.column("body", sa.JSON()))
_DECISIONS = sa.table("decisions", sa.column("pattern_id", _NAME), sa.column("person", sa.Boolean()),
                      sa.column("target", _NAME), sa.column("body", sa.JSON()))
# the states an action ends in, cancelled (it never ran) aside: as tables.ENDED
_ENDED = ("succeeded", "failed", "rolled_back", "escalated")
_INDEXES = {
    "ix_actions_type_created_at": ["type", "created_at"],
    "ix_actions_service_created_at": ["service", "created_at"],
    "ix_actions_multi_created_at": ["multi", "created_at"],
    "ix_actions_service_state": ["service", "state"],
    "ix_actions_service_ended_at": ["service", "ended_at"],
    "ix_actions_service_pattern_id": ["service", "pattern_id"],
}


def upgrade() -> None:
    op.add_column("actions", sa.Column("ended_at", sa.Float(), nullable=True))
    op.add_column("actions", sa.Column("pattern_id", _NAME, nullable=True))
    op.execute(sa.update(_ACTIONS).values(
        ended_at=sa.case((_ACTIONS.c.state.in_(_ENDED), _ACTIONS.c.body["updated_at"].as_float()), else_=None),
        pattern_id=_ACTIONS.c.body["pattern_id"].as_string()))
    for name, columns in _INDEXES.items():
        op.create_index(name, "actions", columns)
    op.add_column("decisions", sa.Column("pattern_id", _NAME, nullable=True))
    op.add_column("decisions", sa.Column("person", sa.Boolean(), nullable=False, server_default=sa.false()))
    op.add_column("decisions", sa.Column("target", _NAME, nullable=True))
    op.execute(sa.update(_DECISIONS).values(pattern_id=_DECISIONS.c.body["pattern_id"].as_string(),
                                            person=_DECISIONS.c.body["decided_by"].as_string() != "engine",
                                            target=_DECISIONS.c.body[("action", "target")].as_string()))
    op.create_index("ix_decisions_person_pattern_id_target", "decisions", ["person", "pattern_id", "target"])


def downgrade() -> None:
    op.drop_index("ix_decisions_person_pattern_id_target", table_name="decisions")
    op.drop_column("decisions", "target")
    op.drop_column("decisions", "person")
    op.drop_column("decisions", "pattern_id")
    for name in _INDEXES:
        op.drop_index(name, table_name="actions")
    op.drop_column("actions", "pattern_id")
    op.drop_column("actions", "ended_at")
