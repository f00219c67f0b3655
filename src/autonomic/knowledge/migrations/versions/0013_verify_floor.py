"""Nothing in the schema: an action's verification (``VerifySpec``) may now hold
``threshold: min``.

A pattern's ``verify`` may say ``min: threshold``: the service's floor for the metric
(``thresholds.minimums``), set when the action is prepared, the action's spec keeping
``threshold="min"`` to say where its number came from. Nouns are read strictly, so an older
autonomic would fail on the first such action it read; this revision makes it refuse the store at
open instead, saying a newer one migrated it.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
