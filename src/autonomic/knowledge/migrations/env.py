"""Alembic environment for the knowledge store.

There is no alembic.ini: :class:`autonomic.knowledge.store.Store` builds the Alembic config in
code and hands over its open connection as ``config.attributes["connection"]``, so migrations
run inside the store's own (locked) transaction. Offline (SQL script) mode is not supported.
"""

from __future__ import annotations

from alembic import context

from autonomic.knowledge.tables import Base

connection = context.config.attributes.get("connection")
if connection is None or context.is_offline_mode():
    raise RuntimeError(
        "autonomic migrations run only through Store(url); pass a connection in "
        'config.attributes["connection"]'
    )

context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
