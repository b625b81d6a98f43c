"""Use case ExecuteWorkflow: create a pending execution; and run one to its end."""

from __future__ import annotations

import json
from typing import Any

from cerebelum.application.handlers import HandlerRegistry
from cerebelum.application.runner import ExecutionRunner, Listener
from cerebelum.domain.errors import CerebelumError
from cerebelum.domain.execution import Execution, ExecutionStatus, execution_id_from_uuid, seed_from_id
from cerebelum.domain.ports import Clock, IdSource, Store
from cerebelum.domain.state import fold
from cerebelum.domain.workflow import StoredWorkflow, Workflow


class InvalidInput(CerebelumError):
    """An execution input that is not JSON."""


def start_execution(
    stored: StoredWorkflow,
    input: Any,
    store: Store,
    clock: Clock,
    ids: IdSource,
    seed: int | None = None,
    virtual_time: bool = False,
) -> Execution:
    """Create the execution row, `pending`; a runner (or worker) takes it from there."""
    try:
        input = json.loads(json.dumps(input, allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"the input is not JSON: {exc}") from None
    execution_id = execution_id_from_uuid(ids.new_id())
    execution = Execution(
        id=execution_id,
        workflow=stored.name,
        version=stored.version,
        status=ExecutionStatus.PENDING,
        input=input,
        seed=seed_from_id(execution_id) if seed is None else seed,
        virtual_time=virtual_time,
        created_at=clock.now(),
    )
    store.executions.create(execution)
    return execution


def prepare_runner(
    execution: Execution,
    workflow: Workflow,
    store: Store,
    handlers: HandlerRegistry,
    clock: Clock,
    ids: IdSource,
    **options: Any,
) -> ExecutionRunner:
    """A runner positioned at the end of the execution's log (fresh or recovering)."""
    state = fold(store.events.read(execution.id))
    return ExecutionRunner(workflow, execution, state, store.events, handlers, clock, ids, **options)


__all__ = ["InvalidInput", "Listener", "prepare_runner", "start_execution"]
