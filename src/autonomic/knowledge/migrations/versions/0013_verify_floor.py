"""An action's verification (``VerifySpec``) may now hold ``threshold: min``; a pruned item of a
pattern's autonomy record keeps when its action was made (``pattern_evidence.acted_at``).

A pattern's ``verify`` may say ``min: threshold``: the service's floor for the metric
(``thresholds.minimums``), set when the action is prepared, the action's spec keeping
``threshold="min"`` to say where its number came from. Nouns are read strictly, so an older
autonomic would fail on the first such action it read; this revision makes it refuse the store at
open instead, saying a newer one migrated it.

The autonomy a pattern earns counts only the record of its remedy as it is now: an action created
before the pattern last changed ran the remedy before, whenever its outcome came. Retention keeps
the ladder's items of what it prunes (0007) with the outcome's time only; ``acted_at`` now keeps
the action's. Items pruned before this revision have it NULL, read as their ``ts`` (the outcome
follows its action by a verification window; a pattern changed inside that window long ago is the
only case that reads differently).

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("pattern_evidence", sa.Column("acted_at", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("pattern_evidence") as batch:  # SQLite: a copy of the table
        batch.drop_column("acted_at")
