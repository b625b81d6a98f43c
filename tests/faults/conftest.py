"""Fixtures of the fault tests: a Cluster (see cluster.py) per test, on SQLite
and PostgreSQL or on PostgreSQL alone; its workers are always terminated at
teardown (SIGTERM, then SIGKILL)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from tests.conftest import empty_pg
from tests.faults.cluster import Cluster


@pytest.fixture
def fault_url(sql_url: str) -> str:
    return sql_url


@pytest.fixture
def cluster_on(tmp_path: Path) -> Iterator[Callable[[str], Cluster]]:
    """cluster_on(url): a Cluster on that database, torn down after the test."""
    made: list[Cluster] = []

    def make(url: str) -> Cluster:
        cluster = Cluster(url, tmp_path)
        made.append(cluster)
        return cluster

    try:
        yield make
    finally:
        for cluster in made:
            cluster.close()


@pytest.fixture
def cluster(cluster_on: Callable[[str], Cluster], fault_url: str) -> Cluster:
    """A Cluster on SQLite, then on PostgreSQL."""
    return cluster_on(fault_url)


@pytest.fixture
def pg_cluster(cluster_on: Callable[[str], Cluster], pg_url: str) -> Cluster:
    empty_pg(pg_url)
    return cluster_on(pg_url)
