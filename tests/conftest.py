"""Fixtures shared by every test directory: a real PostgreSQL server for the store's tests.

``postgres_server`` is one server for the whole session (started on first use: a run that
selects no PostgreSQL test starts none); ``postgres_url`` is a fresh, empty database on it for
one test, dropped afterwards; ``store_url`` is parametrized over both back ends the store
supports (a SQLite file in ``tmp_path`` and a PostgreSQL database), so a test taking it runs
twice, as ``[sqlite]`` and ``[postgresql]``. When the PostgreSQL binaries or the driver are
missing, the PostgreSQL cases fail with what to install; they are never skipped.
"""

from __future__ import annotations

import itertools
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

sys.path.insert(0, str(Path(__file__).parent / "integration"))  # servers.py, shared with the integration tests

from servers import PostgresServer, start_postgres  # noqa: E402

BACKENDS = ("sqlite", "postgresql")
_database_names = itertools.count(1)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One real PostgreSQL server (initdb + postgres) on a free 127.0.0.1 port for the session."""
    server = start_postgres()
    yield server
    server.stop()


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> Iterator[str]:
    """The SQLAlchemy URL of a new empty database, dropped (connections closed) after the test."""
    name = f"autonomic_test_{next(_database_names)}"
    url = postgres_server.create_database(name)
    yield url
    postgres_server.drop_database(name)


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """``sqlite`` or ``postgresql``: the back end this test case runs against."""
    return str(request.param)


@pytest.fixture
def store_url(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty store database on this case's back end: a SQLite file or a PostgreSQL database."""
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'autonomic.db'}"
    return str(request.getfixturevalue("postgres_url"))


RawSql = Callable[..., list[tuple[Any, ...]]]


@pytest.fixture
def raw_sql(store_url: str) -> Iterator[RawSql]:
    """``raw_sql(sql, **params)``: run one statement (``:name`` parameters) on the store's
    database in its own connection and transaction, behind the store's back (to tamper with it
    or look at it), and return the rows it gave (``[]`` for none)."""
    engine = create_engine(store_url, poolclass=NullPool)

    def run(sql: str, **params: Any) -> list[tuple[Any, ...]]:
        with engine.begin() as conn:
            result = conn.execute(text(sql), params)
            return [tuple(r) for r in result] if result.returns_rows else []

    yield run
    engine.dispose()
