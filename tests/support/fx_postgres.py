"""PostgreSQL fixtures plug-in: a throw-away database per test, and `db_url` over both backends.

GATE_TEST_POSTGRES_URL names a server (and a database to connect to for CREATE/DROP DATABASE), e.g.
postgresql+psycopg://postgres@127.0.0.1:5432/test. Without it, or when the server does not answer,
PostgreSQL tests skip locally and fail under CI (tests.support.probes.missing).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql
from sqlalchemy.engine import URL, make_url

from tests.support.probes import missing

ENV = "GATE_TEST_POSTGRES_URL"


def _libpq_kwargs(url: URL) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"host": url.host or "127.0.0.1", "dbname": url.database or "postgres"}
    if url.port:
        kwargs["port"] = url.port
    if url.username:
        kwargs["user"] = url.username
    if url.password:
        kwargs["password"] = url.password
    return kwargs


@pytest.fixture(scope="session")
def postgres_server_url() -> str:
    """The server URL from GATE_TEST_POSTGRES_URL, checked to answer; skips (or fails in CI) otherwise."""
    url = os.environ.get(ENV, "").strip()
    if not url:
        missing("postgres", f"{ENV} is not set")
    try:
        with psycopg.connect(**_libpq_kwargs(make_url(url)), connect_timeout=5) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as e:
        missing("postgres", f"cannot connect to {ENV}: {e}")
    return url


@pytest.fixture
def postgres_url(postgres_server_url: str) -> Iterator[str]:
    """A freshly created, uniquely named database on that server; dropped after the test."""
    server = make_url(postgres_server_url)
    name = f"gate_test_{uuid.uuid4().hex[:12]}"
    admin = _libpq_kwargs(server)
    # CREATE/DROP DATABASE cannot run inside a transaction block, hence autocommit.
    with psycopg.connect(**admin, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield server.set(drivername="postgresql+psycopg", database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(**admin, autocommit=True) as conn:
            # WITH (FORCE) ends sessions a failed test may have leaked (PostgreSQL 13+).
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty (unmigrated) database URL: a SQLite file under tmp_path, or a fresh PostgreSQL db."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'gate.db'}"
    return str(request.getfixturevalue("postgres_url"))
