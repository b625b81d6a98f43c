"""No request is answered 5xx after it committed something (interaction.md section 12).

The harness: an in-process app around a real Engine (SQLite, PostgreSQL)
whose store fails its k-th write of a request (k = 1, 2, ... until the
request needs no more writes). Every answer that is 5xx must leave the
database exactly as it was before the request: a route that commits in two
steps and fails in the second is found here. Then values that the store
accepts but a naive JSON rendering refuses must not turn into a 500 after
the commit either.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

import cerebelum
from cerebelum.entrypoints.http import create_app
from tests.conftest import empty_pg

WRITES = frozenset(
    {"add", "delete", "create", "create_leased", "request", "release", "claim", "claim_one", "append", "append_many"}
)
TABLES = ("workflows", "executions", "events")


class InjectedFault(RuntimeError):
    pass


class Faults:
    """Counts the store's write calls; the `fail_at`-th raises before it writes."""

    def __init__(self) -> None:
        self.fail_at = 0
        self.calls = 0

    def wrap(self, repository: Any) -> Any:
        faults = self

        class Proxy:
            def __getattr__(self, name: str) -> Any:
                attribute = getattr(repository, name)
                if name not in WRITES or not callable(attribute):
                    return attribute

                def write(*args: Any, **kwargs: Any) -> Any:
                    faults.calls += 1
                    if faults.calls == faults.fail_at:
                        raise InjectedFault(f"injected failure of write {faults.calls} ({name})")
                    return attribute(*args, **kwargs)

                return write

        return Proxy()


@pytest.fixture(params=["sqlite", "postgresql"])
def rig(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[tuple[TestClient, cerebelum.Engine, Faults]]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'rollback.db'}"
    else:
        url = request.getfixturevalue("pg_url")
        empty_pg(url)
    with cerebelum.Engine(url, workers=0) as engine:
        faults = Faults()
        store: Any = engine.store
        for name in ("workflows", "executions", "events", "queue"):
            setattr(store, name, faults.wrap(getattr(store, name)))
        yield TestClient(create_app(engine), raise_server_exceptions=False), engine, faults


def snapshot(engine: cerebelum.Engine) -> dict[str, list[tuple[Any, ...]]]:
    sql_engine = engine.store.engine  # type: ignore[attr-defined]
    with sql_engine.connect() as connection:
        return {t: sorted(map(tuple, connection.execute(text(f"SELECT * FROM {t}"))), key=repr) for t in TABLES}


def flow(name: str) -> dict[str, Any]:
    return {"name": name, "entrypoint": "wait", "nodes": {"wait": {"type": "delay", "config": {"seconds": 3600}}}}


def scenarios(client: TestClient) -> dict[str, Callable[[], tuple[str, str, Any]]]:
    """Each gives a fresh (method, path, JSON body) of a route that writes."""

    def stored() -> str:
        name = f"w{uuid.uuid4().hex[:8]}"
        assert client.post("/api/v1/workflows", json=flow(name)).status_code == 201
        return name

    def started() -> str:
        answer = client.post("/api/v1/executions", json={"workflow": stored()})
        assert answer.status_code == 202, answer.text
        return str(answer.json()["execution_id"])

    return {
        "create a workflow": lambda: ("POST", "/api/v1/workflows", flow(f"w{uuid.uuid4().hex[:8]}")),
        "start by name": lambda: ("POST", "/api/v1/executions", {"workflow": stored(), "input": {"a": 1}}),
        "delete a version": lambda: ("DELETE", f"/api/v1/workflows/{stored()}/versions/1", None),
        "start with a definition": lambda: ("POST", "/api/v1/executions", {"workflow": flow(f"w{uuid.uuid4().hex[:8]}")}),
        "pause": lambda: ("POST", f"/api/v1/executions/{started()}/pause", None),
        "cancel": lambda: ("POST", f"/api/v1/executions/{started()}/cancel", None),
    }


# Found by this harness and fixed: a start with a definition stores its new version in the
# same transaction as the execution's row; pause and cancel absorb a failure after their request.
KNOWN: dict[str, str] = {}


@pytest.mark.parametrize(
    "scenario",
    [pytest.param(s, marks=pytest.mark.xfail(reason=KNOWN[s], strict=True)) if s in KNOWN else s for s in (
        "create a workflow", "start by name", "delete a version", "start with a definition", "pause", "cancel")],
)
def test_a_failed_write_leaves_nothing_behind(rig: tuple[TestClient, cerebelum.Engine, Faults], scenario: str) -> None:
    client, engine, faults = rig
    make = scenarios(client)[scenario]
    for fail_at in range(1, 10):
        method, path, body = make()  # set-up writes are not counted
        before = snapshot(engine)
        faults.calls, faults.fail_at = 0, fail_at
        answer = client.request(method, path, json=body)
        hit = faults.calls >= fail_at
        faults.fail_at = 0
        if answer.status_code >= 500:
            assert hit, answer.text  # the only failure here is the injected one
            assert snapshot(engine) == before, f"{scenario}: answered {answer.status_code} after committing (write {fail_at})"
            assert answer.json()["error"]["code"] == "internal_error" and "Traceback" not in answer.text
        elif hit:
            # Only a request already committed may absorb a later failure: pause and cancel answer
            # the row with their request pending, and the next claim carries it out.
            absorbed = scenario in ("pause", "cancel")
            assert absorbed, f"{scenario}: the injected failure of write {fail_at} was answered {answer.status_code}"
            assert answer.status_code == 200, answer.text
            row = engine.status(answer.json()["execution_id"])
            carried_out = row.status == ("paused" if scenario == "pause" else "failed")
            assert row.control == scenario or carried_out, row  # pending for the next claim, or done
            assert answer.json()["requested"] == row.control and answer.json()["status"] == row.status
        else:
            assert answer.status_code < 300, answer.text
            return  # the request needed fewer writes than fail_at: every one was tried
    pytest.fail(f"{scenario}: more than 9 writes")


@pytest.mark.parametrize("raw", ['{"s": "\\ud800"}', '{"s": "\\udfff tail", "n": 1}'])
def test_a_value_the_store_accepted_never_renders_as_a_500(rig: tuple[TestClient, cerebelum.Engine, Faults], raw: str) -> None:
    """A lone surrogate: valid JSON text, not UTF-8. Refused (422) or accepted and shown, never 500 after commit."""
    client, engine, _ = rig
    assert client.post("/api/v1/workflows", json=flow("surrogates")).status_code == 201
    before = snapshot(engine)
    body = '{"workflow": "surrogates", "input": ' + raw + "}"
    answer = client.post("/api/v1/executions", content=body, headers={"Content-Type": "application/json"})
    assert answer.status_code in (202, 422), answer.text
    if answer.status_code == 422:
        assert snapshot(engine) == before
        return
    shown = answer.json()
    assert shown["input"] == json.loads(raw)
    own = f"/api/v1/executions/{shown['execution_id']}"
    for path in (own, "/api/v1/executions", f"{own}/events"):
        assert client.get(path).status_code == 200, path
