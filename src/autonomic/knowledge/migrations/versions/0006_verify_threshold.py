"""Nothing in the schema: an action's verification (``VerifySpec``) may now hold ``threshold``.

A pattern's ``verify: {max: threshold}`` is the service's own line for the metric; the action
keeps the number it was given and ``threshold: max`` to say where it came from. Nouns are read
strictly, so an older autonomic would fail on the first such action it read; this revision makes
it refuse the store at open instead, saying a newer one migrated it.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
