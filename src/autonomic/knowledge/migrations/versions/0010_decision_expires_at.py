"""Nothing in the schema: a decision (``Decision``) may now hold ``expires_at``.

An approval request records when it expires (the asking engine's ``engine.approval_ttl_s`` after
it was asked), so that the CLI, the API and every replica judge an answer by that, not by the TTL
their own config says now (a file edited without restarting the engine, replicas mid-rollout on
different configs). Nouns are read strictly, so an older autonomic would fail on the first such
decision it read; this revision makes it refuse the store at open instead, saying a newer one
migrated it. Requests stored before it have no ``expires_at`` and expire by the reader's TTL.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
