"""SqlStore against real SQLite and PostgreSQL: every test runs on both.

PostgreSQL: each test gets a fresh database created from CEREBELUM_TEST_PG
(default postgresql://postgres@127.0.0.1:5432/test) and dropped afterwards.
An unreachable server fails the tests; it never skips them.
"""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, insert, update
from sqlalchemy.exc import IntegrityError

from cerebelum.domain.errors import ConfigurationError, Conflict, NotFound, StoreUnavailable
from cerebelum.domain.events import Event
from cerebelum.domain.execution import Execution
from cerebelum.domain.ports import Store
from cerebelum.domain.workflow import StoredWorkflow
from cerebelum.infrastructure.sql import SqlStore, schema
from cerebelum.infrastructure.sql.database import normalize_url
from cerebelum.infrastructure.sql.migrate import current_revision, head_revision

PG_ADMIN_URL = os.environ.get("CEREBELUM_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
T0 = datetime(2025, 1, 1, 12, 0, 0, 123456, tzinfo=UTC)
PLUS_TWO = timezone(timedelta(hours=2))


def _fresh_postgres_database() -> Iterator[str]:
    admin_url = normalize_url(PG_ADMIN_URL)
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    name = f"cerebelum_test_{uuid.uuid4().hex[:16]}"
    try:
        with admin.connect() as connection:
            connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
        yield admin_url.set(database=name).render_as_string(hide_password=False)
        with admin.connect() as connection:
            connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'cerebelum.db'}"
    else:
        yield from _fresh_postgres_database()


@pytest.fixture
def store(url: str) -> Iterator[SqlStore]:
    opened = SqlStore(url)
    yield opened
    opened.close()


def workflow(name: str = "order", version: int = 1, created_at: datetime = T0) -> StoredWorkflow:
    definition = {"name": name, "version": version, "nodes": {"b": {"type": "end"}, "a": {"type": "start"}}}
    return StoredWorkflow(str(uuid.uuid4()), name, version, definition, "d" * 64, created_at)


def execution(
    id_: str | None = None, workflow_name: str = "order", created_at: datetime = T0, status: str = "pending"
) -> Execution:
    return Execution(
        id=id_ or f"exec-{uuid.uuid4()}",
        workflow=workflow_name,
        version=1,
        status=status,
        input={"amount": 12.5, "items": [1, 2, 3], "note": "naïve ✓"},
        seed=2**62 + 7,
        virtual_time=True,
        created_at=created_at,
    )


def event(execution_id: str, sequence: int, type_: str = "node_started") -> Event:
    timestamp = (T0 + timedelta(seconds=sequence)).astimezone(PLUS_TWO)
    payload = {"n": sequence, "nested": {"ok": True, "none": None}}
    return Event(str(uuid.uuid4()), execution_id, sequence, type_, f"node-{sequence}", payload, timestamp)


def assert_utc(moment: datetime | None) -> None:
    assert moment is not None and moment.utcoffset() == timedelta(0)


def test_satisfies_store_port(store: SqlStore) -> None:
    port: Store = store
    store.ping()
    assert port.workflows is store.workflows


def test_workflow_roundtrip(store: SqlStore) -> None:
    stored = workflow(created_at=T0.astimezone(PLUS_TWO))
    assert store.workflows.add(stored) == stored
    got = store.workflows.get("order", 1)
    assert got == stored
    assert_utc(got.created_at)


def test_duplicate_workflow_version_is_conflict(store: SqlStore) -> None:
    store.workflows.add(workflow())
    with pytest.raises(Conflict, match="workflow order version 1 already exists"):
        store.workflows.add(workflow())
    assert len(store.workflows.versions("order")) == 1


def test_latest_version_versions_and_not_found(store: SqlStore) -> None:
    for version in (2, 1, 3):
        store.workflows.add(workflow(version=version, created_at=T0 + timedelta(minutes=version)))
    assert store.workflows.get("order").version == 3
    assert store.workflows.get("order", 1).version == 1
    assert [w.version for w in store.workflows.versions("order")] == [1, 2, 3]

    with store.engine.begin() as connection:  # soft-delete v3: no port method does this yet
        connection.execute(update(schema.workflows).where(schema.workflows.c.version == 3).values(deleted_at=T0))
    assert store.workflows.get("order").version == 2
    assert [w.version for w in store.workflows.versions("order")] == [1, 2]
    assert [w.version for w in store.workflows.list()] == [2, 1]

    with pytest.raises(NotFound, match=r"^unknown workflow 'nope'$"):
        store.workflows.get("nope")
    with pytest.raises(NotFound, match=r"^unknown workflow 'order' version 9$"):
        store.workflows.get("order", 9)
    assert store.workflows.versions("nope") == []


def test_a_definition_read_once_is_still_each_caller_s_own(store: SqlStore) -> None:
    """Definitions are cached per process: changing what `get` returned must not
    change what the next caller gets."""
    store.workflows.add(workflow())
    first = store.workflows.get("order")
    first.definition["nodes"]["a"]["type"] = "tampered"
    del first.definition["version"]
    again = store.workflows.get("order", 1)
    assert again.definition == workflow().definition
    assert again.definition is not first.definition


def test_a_naive_creation_time_is_utc(store: SqlStore) -> None:
    """As the UTCDateTime column type took it, whatever the server's time zone."""
    if store.engine.url.get_backend_name() == "postgresql":  # every new session of this database in +05:30
        with store.engine.begin() as connection:
            connection.exec_driver_sql(f"ALTER DATABASE \"{store.engine.url.database}\" SET timezone TO 'Asia/Kolkata'")
        store.engine.dispose()
    naive = execution(created_at=T0.replace(tzinfo=None))
    store.executions.create(naive)
    got = store.executions.get(naive.id)
    assert got.created_at == T0
    assert_utc(got.created_at)


def test_workflow_list_newest_first(store: SqlStore) -> None:
    store.workflows.add(workflow("a", 1, T0))
    store.workflows.add(workflow("b", 1, T0 + timedelta(seconds=1)))
    store.workflows.add(workflow("a", 2, T0 + timedelta(seconds=2)))
    store.workflows.add(workflow("c", 1, T0 + timedelta(seconds=1)))
    listed = [(w.name, w.version) for w in store.workflows.list()]
    assert listed == [("a", 2), ("c", 1), ("b", 1), ("a", 1)]
    assert [(w.name, w.version) for w in store.workflows.list(name="a")] == [("a", 2), ("a", 1)]
    assert [(w.name, w.version) for w in store.workflows.list(limit=2, offset=1)] == [("c", 1), ("b", 1)]


def test_execution_roundtrip_and_duplicates(store: SqlStore) -> None:
    created = execution(created_at=T0.astimezone(PLUS_TWO))
    store.executions.create(created)
    got = store.executions.get(created.id)
    assert got == created
    assert_utc(got.created_at)
    with pytest.raises(Conflict, match="already exists"):
        store.executions.create(created)
    with pytest.raises(NotFound, match=r"^unknown execution 'exec-missing'$"):
        store.executions.get("exec-missing")


def test_execution_list_order_and_filters(store: SqlStore) -> None:
    rows = [
        execution("exec-1", "a", T0, "completed"),
        execution("exec-2", "b", T0 + timedelta(seconds=1), "running"),
        execution("exec-3", "a", T0 + timedelta(seconds=2), "running"),
        execution("exec-4", "a", T0 + timedelta(seconds=2), "failed"),
    ]
    for row in rows:
        store.executions.create(row)
    assert [e.id for e in store.executions.list()] == ["exec-4", "exec-3", "exec-2", "exec-1"]
    assert [e.id for e in store.executions.list(workflow="a")] == ["exec-4", "exec-3", "exec-1"]
    assert [e.id for e in store.executions.list(status="running")] == ["exec-3", "exec-2"]
    assert [e.id for e in store.executions.list(workflow="a", status="running")] == ["exec-3"]
    assert [e.id for e in store.executions.list(limit=2, offset=1)] == ["exec-3", "exec-2"]


def test_events_roundtrip_and_execution_row_update(store: SqlStore) -> None:
    pending = execution()
    store.executions.create(pending)
    running = pending.evolve(status="running", started_at=T0.astimezone(PLUS_TWO), last_sequence=2)
    batch = [event(pending.id, n) for n in range(3)]
    store.events.append(running, batch)

    read = store.events.read(pending.id)
    assert read == batch
    assert all(e.timestamp.utcoffset() == timedelta(0) for e in read)
    assert store.events.read(pending.id, 1, 1) == batch[1:2]
    assert store.events.read(pending.id, 1) == batch[1:]
    assert store.events.read(pending.id, 0, 1) == batch[:2]
    assert store.executions.get(pending.id) == running

    done = running.evolve(status="completed", output={"total": 3}, completed_at=T0 + timedelta(hours=1), last_sequence=3)
    store.events.append(done, [event(pending.id, 3, "execution_completed")])
    assert store.executions.get(pending.id) == done
    assert [e.sequence for e in store.events.read(pending.id)] == [0, 1, 2, 3]
    assert store.events.read("exec-unknown") == []


def test_duplicate_sequence_is_conflict_and_writes_nothing(store: SqlStore) -> None:
    pending = execution()
    store.executions.create(pending)
    running = pending.evolve(status="running", started_at=T0, last_sequence=1)
    store.events.append(running, [event(pending.id, 0), event(pending.id, 1)])

    failed = running.evolve(status="failed", error={"message": "x"}, last_sequence=2)
    for bad in ([event(pending.id, 2), event(pending.id, 1)], [event(pending.id, 1)], [event(pending.id, 5)]):
        with pytest.raises(Conflict, match=pending.id):
            store.events.append(failed, bad)
    assert [e.sequence for e in store.events.read(pending.id)] == [0, 1]
    assert store.executions.get(pending.id) == running


def test_database_enforces_unique_sequence(store: SqlStore) -> None:
    pending = execution()
    store.executions.create(pending)
    store.events.append(pending.evolve(last_sequence=0), [event(pending.id, 0)])
    duplicate = event(pending.id, 0)
    row = {**duplicate.__dict__, "id": str(uuid.uuid4())}
    with pytest.raises(IntegrityError), store.engine.begin() as connection:
        connection.execute(insert(schema.events).values(**row))


def test_append_to_unknown_execution_is_not_found(store: SqlStore) -> None:
    ghost = execution("exec-ghost")
    with pytest.raises(NotFound, match=r"^unknown execution 'exec-ghost'$"):
        store.events.append(ghost, [event(ghost.id, 0)])
    assert store.events.read(ghost.id) == []


def _race(pending: Execution, sequence: int, first: SqlStore, second: SqlStore) -> dict[str, Event]:
    """Two threads append a different event at the same sequence; return the winner's."""
    barrier = threading.Barrier(2)
    candidates = {"first": event(pending.id, sequence), "second": event(pending.id, sequence)}
    outcomes: dict[str, str] = {}

    def append(who: str, target: SqlStore) -> None:
        barrier.wait()
        try:
            target.events.append(pending.evolve(last_sequence=sequence), [candidates[who]])
            outcomes[who] = "ok"
        except Conflict:
            outcomes[who] = "conflict"

    threads = [threading.Thread(target=append, args=(who, target)) for who, target in (("first", first), ("second", second))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes.values()) == ["conflict", "ok"], outcomes
    return {who: candidates[who] for who, outcome in outcomes.items() if outcome == "ok"}


def test_concurrent_appends_exactly_one_wins(url: str, store: SqlStore) -> None:
    other = SqlStore(url)  # a second pool, as a second process would have
    try:
        pending = execution()
        store.executions.create(pending)
        store.events.append(pending.evolve(last_sequence=0), [event(pending.id, 0)])
        for sequence in range(1, 6):
            (winner,) = _race(pending, sequence, store, other).values()
            assert store.events.read(pending.id, sequence, sequence) == [winner]
        assert [e.sequence for e in store.events.read(pending.id)] == list(range(6))
    finally:
        other.close()


def test_reopening_is_idempotent(url: str, store: SqlStore) -> None:
    store.workflows.add(workflow())
    again = SqlStore(url)
    try:
        assert again.workflows.get("order").version == 1
        assert current_revision(again.engine) == head_revision()
    finally:
        again.close()


def test_concurrent_first_opens_migrate_once(url: str) -> None:
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def open_store() -> None:
        barrier.wait()
        try:
            SqlStore(url).close()
        except BaseException as exc:  # reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=open_store) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []


def test_migrations_match_metadata(store: SqlStore) -> None:
    assert current_revision(store.engine) == head_revision()
    with store.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert compare_metadata(context, schema.metadata) == []


def test_unreachable_postgres_is_store_unavailable() -> None:
    with pytest.raises(StoreUnavailable) as caught:
        SqlStore("postgresql://postgres:s3cret@127.0.0.1:1/test")
    message = str(caught.value)
    assert "127.0.0.1:1/test" in message
    assert "s3cret" not in message
    assert "\n" not in message


def test_memory_sqlite_is_shared_across_threads() -> None:
    memory = SqlStore("sqlite:///:memory:")
    try:
        created = execution()
        memory.executions.create(created)
        seen: list[Execution] = []
        thread = threading.Thread(target=lambda: seen.append(memory.executions.get(created.id)))
        thread.start()
        thread.join()
        assert seen == [created]
    finally:
        memory.close()


def test_rejects_unknown_scheme() -> None:
    with pytest.raises(ConfigurationError, match="unsupported"):
        SqlStore("mysql://root@localhost/db")
