"""Fixtures shared by every tier: a backend per test (memory, SQLite, PostgreSQL).

PostgreSQL is required, never skipped: CI starts it, and a test that cannot
reach it fails. Each test session gets its own database, emptied between tests.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import psycopg
import pytest
from psycopg import sql

import cerebelum

PG_ADMIN_URL = os.environ.get("CEREBELUM_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
BACKENDS = ("memory", "sqlite", "postgresql")


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """A fresh PostgreSQL database for this session (dropped at the end)."""
    name = f"cerebelum_test_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    yield PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def empty_pg(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        exists = conn.execute("SELECT to_regclass('public.events') IS NOT NULL").fetchone()
        if exists and exists[0]:
            conn.execute("TRUNCATE schedule_ticks, schedules, events, executions, workflows, queues CASCADE")


@pytest.fixture(params=BACKENDS)
def store_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    """One database URL per backend; each test starts from an empty store."""
    if request.param == "memory":
        return "memory://"
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path_factory.mktemp('db') / 'cerebelum.db'}"
    url: str = request.getfixturevalue("pg_url")
    empty_pg(url)
    return url


@pytest.fixture(params=["sqlite", "postgresql"])
def sql_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    """SQLite or PostgreSQL, for tests whose processes share the database (memory cannot)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path_factory.mktemp('db') / 'cerebelum.db'}"
    url: str = request.getfixturevalue("pg_url")
    empty_pg(url)
    return url


@pytest.fixture
def registry() -> cerebelum.HandlerRegistry:
    """A handler registry of the test's own (the module default stays untouched)."""
    return cerebelum.HandlerRegistry()


@pytest.fixture
def engine(store_url: str, registry: cerebelum.HandlerRegistry) -> Iterator[cerebelum.Engine]:
    with cerebelum.Engine(store_url, handlers=registry) as engine:
        yield engine
