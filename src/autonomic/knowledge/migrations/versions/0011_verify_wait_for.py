"""Nothing in the schema: an action's verification (``VerifySpec``) may now hold ``fallback_metric``
and ``wait_for``.

A pattern's ``fallback_metric`` is watched instead of its ``metric`` on a service that samples only
it (a unit's ``up`` where no probe samples ``probe_ok``; an action keeps the one it watches, and no
fallback); ``wait_for`` starts the watch once that metric reads 1 (a rollout's
``rollout_complete``). Nouns are read strictly, so an older autonomic would fail on the first such
action it read; this revision makes it refuse the store at open instead, saying a newer one
migrated it.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
