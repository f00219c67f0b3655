"""Nothing in the schema: a diagnosis (``Diagnosis``) may now hold ``own_failure`` and
``dependencies_down``.

A down service seen dead (its supervised process, its systemd unit, its container, its pods) is
its own fault; the diagnosis keeps how it ended, and what it depends on that was down at the time
(its restart waits for their fix and does not count toward a crash loop). Nouns are read
strictly, so an older autonomic would fail on the first such diagnosis it read; this revision
makes it refuse the store at open instead, saying a newer one migrated it.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
