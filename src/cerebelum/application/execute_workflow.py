"""Use case ExecuteWorkflow: create a pending execution; and run one to its end."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cerebelum.application.activities import NUL_PROBLEM, has_nul
from cerebelum.application.create_workflow import create_workflow
from cerebelum.application.definitions import Definitions
from cerebelum.application.handlers import HandlerRegistry
from cerebelum.application.replay_execution import replay_log
from cerebelum.application.runner import ExecutionRunner, Listener, started_event
from cerebelum.domain.errors import CerebelumError, Conflict, NotFound
from cerebelum.domain.events import Event, EventType, NewEvent, parse_rfc3339
from cerebelum.domain.execution import Execution, ExecutionStatus, Lease, Versioning, execution_id_from_uuid, seed_from_id
from cerebelum.domain.limits import configured
from cerebelum.domain.orchestrator import error
from cerebelum.domain.ports import Clock, IdSource, Store
from cerebelum.domain.queues import DEFAULT_PRIORITY, DEFAULT_QUEUE, check_concurrency_key, check_priority, check_queue_name
from cerebelum.domain.state import ExecutionState, fold
from cerebelum.domain.values import value_problem
from cerebelum.domain.workflow import StoredWorkflow, Workflow


class InvalidInput(CerebelumError):
    """An execution input that is not JSON."""


class Unloadable(CerebelumError):
    """An execution this engine cannot load; it was paused with the reason."""


MAX_KEY = 200


@dataclass(frozen=True)
class ChildLink:
    """A child execution's start: its derived id and where its parent started it."""

    execution_id: str
    parent_id: str
    parent_node: str
    depth: int


class KeyReused(Conflict):
    """An idempotency key already used to start an execution with other arguments."""


def start_execution(
    stored: StoredWorkflow,
    input: Any,
    store: Store,
    clock: Clock,
    ids: IdSource,
    seed: int | None = None,
    virtual_time: bool = False,
    owner: str | None = None,
    ttl: float = 30.0,
    key: str | None = None,
    new_workflow: bool = False,
    timeout_s: float | None = None,
    child: ChildLink | None = None,
    schedule: tuple[str, datetime] | None = None,
    queue: str | None = None,
    priority: int | None = None,
    concurrency_key: str | None = None,
) -> tuple[Execution, Lease | None]:
    """Create the execution row, `pending`: queued for workers, or already
    leased to `owner` when this process runs it itself (unless its queue has
    limits: then it waits for a slot). `new_workflow`: the stored workflow is
    not stored yet; it is, with the row, in one transaction. `schedule`: the
    (name, tick) of the schedule tick that starts it. `queue`: else the
    definition's top-level `queue`, else `default`."""
    queue = check_queue_name(queue if queue is not None else stored.definition.get("queue", DEFAULT_QUEUE))
    priority = check_priority(DEFAULT_PRIORITY if priority is None else priority)
    concurrency_key = check_concurrency_key(concurrency_key)
    problem = value_problem(input, configured().max_value_depth, "input")  # hostile-core: one check, every backend
    if problem is not None:
        raise InvalidInput(f"the input cannot be stored: {problem}")
    try:
        text = json.dumps(input, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"the input is not JSON: {exc}") from None
    if has_nul(text):
        raise InvalidInput(f"the input holds {NUL_PROBLEM}")
    input = json.loads(text)
    if timeout_s is not None and (isinstance(timeout_s, bool) or not isinstance(timeout_s, int | float) or not timeout_s > 0):
        raise InvalidInput("timeout_s: must be a number > 0 (seconds the whole execution may take)")
    execution_id = child.execution_id if child is not None else execution_id_from_uuid(ids.new_id())
    execution = Execution(
        id=execution_id,
        workflow=stored.name,
        version=stored.version,
        status=ExecutionStatus.PENDING,
        input=input,
        seed=seed_from_id(execution_id) if seed is None else seed,
        virtual_time=virtual_time,
        created_at=clock.now(),
        key=key,
        schedule_name=schedule[0] if schedule else None,
        schedule_tick=schedule[1] if schedule else None,
        timeout_s=float(timeout_s) if timeout_s is not None else None,
        parent_id=child.parent_id if child is not None else None,
        parent_node=child.parent_node if child is not None else None,
        depth=child.depth if child is not None else 0,
        versioning=Versioning.PINNED if stored.definition.get("versioning") == Versioning.PINNED else Versioning.UPGRADE,
        queue=queue,
        priority=priority,
        concurrency_key=concurrency_key,
    )
    workflow = stored if new_workflow else None
    if owner is not None:
        return execution, store.queue.create_leased(execution, owner, ttl, workflow)
    store.executions.create(execution, workflow)
    return execution, None


def check_key(key: str | None) -> None:
    if key is not None and not (isinstance(key, str) and 1 <= len(key) <= MAX_KEY):
        raise InvalidInput(f"key: must be 1-{MAX_KEY} characters")


@dataclass(frozen=True)
class StartRequest:
    """What a caller asks of a new execution (besides its workflow)."""

    input: Any
    seed: int | None = None
    virtual_time: bool = False
    owner: str | None = None  # leased to this process at once (it runs the execution itself)
    ttl: float = 30.0
    key: str | None = None  # idempotency key
    timeout_s: float | None = None  # the whole execution's deadline (wins over the definition's)
    schedule: tuple[str, datetime] | None = None  # started by this schedule tick (name, tick)
    queue: str | None = None  # flow control (spec section 9); None: the definition's, else `default`
    priority: int | None = None  # 1 (first) .. 1000 (last); None: 500
    concurrency_key: str | None = None

    @classmethod
    def of(cls, input: Any, defaults: dict[str, Any], options: dict[str, Any]) -> tuple[int | None, StartRequest]:
        """The `version` and the request from a caller's keyword options (TypeError for unknown
        ones); an option left None takes its value from `defaults` (the Engine's settings)."""
        options = dict(options)
        version = options.pop("version", None)
        unknown = [name for name in options if name not in _REQUEST_OPTIONS]
        if unknown:
            raise TypeError(f"unknown options: {', '.join(unknown)}")
        given = {name: value for name, value in options.items() if value is not None}
        return version, cls(input, **{**defaults, **given})


# What a caller may give (owner and ttl: the Engine).
_REQUEST_OPTIONS = ("seed", "virtual_time", "key", "timeout_s", "queue", "priority", "concurrency_key")


def open_execution(
    workflow: StoredWorkflow | str,
    version: int | None,
    request: StartRequest,
    store: Store,
    clock: Clock,
    ids: IdSource,
    new_workflow: bool = False,
) -> tuple[Execution, Lease | None, bool]:
    """Resolve the workflow (a stored one, or the latest or given version of a
    name: one light query) and create the execution, in one database call.
    With a `key`, a second start with the same workflow name and input returns
    the first execution and creates nothing (the last item is False); with
    other arguments it raises KeyReused. The database's unique index decides
    between concurrent starts."""
    key, input = request.key, request.input
    check_key(key)
    name = workflow.name if isinstance(workflow, StoredWorkflow) else workflow
    if key is not None and (existing := store.executions.find_by_key(key)) is not None:
        return _same_start(existing, name, input, key), None, False
    found = workflow if isinstance(workflow, StoredWorkflow) else store.workflows.get(workflow, version)
    if found.deleted:
        raise NotFound(f"workflow {found.name} version {found.version} was deleted")
    try:
        how = (request.seed, request.virtual_time, request.owner, request.ttl, key, new_workflow, request.timeout_s)
        execution, lease = start_execution(
            found, input, store, clock, ids, *how, schedule=request.schedule,
            queue=request.queue, priority=request.priority, concurrency_key=request.concurrency_key,
        )  # fmt: skip
    except Conflict:
        if key is None or (existing := store.executions.find_by_key(key)) is None:
            if new_workflow and _version_taken(store, found):
                raise VersionTaken(f"workflow {found.name} version {found.version} was stored meanwhile") from None
            raise
        return _same_start(existing, name, input, key), None, False  # a concurrent start took the key first
    return execution, lease, True


def _canonical(value: Any) -> str:
    return json.dumps(value, allow_nan=False, sort_keys=True, separators=(",", ":"))


class VersionTaken(Conflict):
    """A start that stores its definition's new version found it taken meanwhile: resolve again."""


def _version_taken(store: Store, workflow: StoredWorkflow) -> bool:
    try:
        store.workflows.get(workflow.name, workflow.version)
    except NotFound:
        return False
    return True


def open_with_definition(
    document: Any,
    definitions: Definitions,
    request: StartRequest,
    store: Store,
    clock: Clock,
    ids: IdSource,
) -> tuple[tuple[Execution, Lease | None, bool], StoredWorkflow, Workflow | None]:
    """Start an execution of a definition document: validated and compiled once;
    a new version is stored in the same transaction as the execution's row, so
    a start that fails leaves no version behind. Retried when another writer
    stores that version first."""
    for _ in range(CREATE_RETRIES):
        stored, compiled, new = create_workflow(
            document, store.workflows, definitions.compiler, clock, ids, definitions.handler_names(), defer=True
        )
        try:
            opened = open_execution(stored, None, request, store, clock, ids, new)
        except VersionTaken:
            continue
        stored_now = opened[2] or not new  # a key's earlier execution: this new version was never stored
        return opened, stored, compiled if stored_now else None
    raise Conflict(f"could not store a version of workflow {stored.name}: too many concurrent creates")


CREATE_RETRIES = 20


def _same_start(existing: Execution, workflow: str, input: Any, key: str) -> Execution:
    try:  # as JSON text: 1, 1.0 and true are different inputs
        same_input = _canonical(input) == _canonical(existing.input)
    except (TypeError, ValueError):
        same_input = False
    if existing.workflow != workflow or not same_input:
        raise KeyReused(
            f"key '{key}' was already used to start execution {existing.id} with other arguments "
            f"(workflow {existing.workflow} and its input); use another key"
        )
    return existing


def load_history(store: Store, execution_id: str) -> tuple[ExecutionState | None, list[Event]]:
    """The latest checkpoint's state (if any) and the events after it."""
    checkpoint = store.events.last_checkpoint(execution_id)
    if checkpoint is None:
        return None, store.events.read(execution_id)
    state = ExecutionState.from_json(checkpoint.payload["state"])
    return state, store.events.read(execution_id, checkpoint.sequence)


def resume_state(start: ExecutionState | None, events: list[Event]) -> ExecutionState:
    """Fold the history into the state a runner continues from."""
    return fold(events, start.copy() if start is not None else None)


async def check_drift(workflow: Workflow, start: ExecutionState | None, events: list[Event]) -> NewEvent | None:
    """Recovery guard: if the engine no longer decides what the log recorded
    (code or definition drift), the execution must pause, not take another path."""
    if not events or (start is None and len(events) <= 1):
        return None
    report = await replay_log(workflow, events, start.copy() if start is not None else None)
    if report.divergence is None:
        return None
    d = report.divergence
    by = f" (recorded by code version {d.code_version})" if d.code_version else ""
    message = f"replay diverges from the log at sequence {d.sequence}{by}: {d.reason}"
    return NewEvent(
        EventType.EXECUTION_PAUSED,
        None,
        {
            "reason": "divergence",
            "error": {"kind": "divergence", "message": message, "node": d.node_id, "attempt": None, "divergence": d.to_json()},
        },
    )


def set_aside(
    execution: Execution,
    lease: Lease,
    reason: Exception,
    store: Store,
    clock: Clock,
    ids: IdSource,
    engine_version: str | None,
) -> tuple[Unloadable, list[Event]]:
    """Pause, with the reason as its error, an execution this engine cannot load
    (its workflow version is missing, its log does not fold, its definition no
    longer compiles), where it would otherwise be claimed and dropped again
    after every lease lapse, forever. Resuming it tries again."""
    message = f"execution {execution.id} cannot be loaded: {type(reason).__name__}: {reason}"
    failure = error("unloadable", message, None)
    new = [NewEvent(EventType.EXECUTION_PAUSED, None, {"reason": "unloadable", "error": failure})]
    if execution.last_sequence < 0:  # nothing logged yet: a paused execution has started
        new.insert(0, started_event(execution, clock, engine_version))
    first = execution.last_sequence + 1
    events = [
        Event(
            id=ids.new_id(),
            execution_id=execution.id,
            sequence=first + offset,
            type=one.type,
            node_id=None,
            payload=one.payload,
            timestamp=parse_rfc3339(one.payload["started_at"]) if one.type == EventType.EXECUTION_STARTED else clock.now(),
            engine_version=engine_version,
            workflow_version=execution.version,
        )
        for offset, one in enumerate(new)
    ]
    row = execution.evolve(
        status=ExecutionStatus.PAUSED,
        error=failure,
        started_at=execution.started_at or events[0].timestamp,
        last_sequence=events[-1].sequence,
    )
    store.events.append(row, events, lease)
    store.queue.release(lease)
    return Unloadable(message), events


def build_runner(
    execution: Execution,
    workflow: Workflow,
    state: ExecutionState,
    store: Store,
    handlers: HandlerRegistry,
    clock: Clock,
    ids: IdSource,
    **options: Any,
) -> ExecutionRunner:
    """A runner positioned at the end of the execution's log (fresh or recovering)."""
    return ExecutionRunner(workflow, execution, state, store.events, handlers, clock, ids, signals=store.signals, **options)


__all__ = [
    "InvalidInput",
    "KeyReused",
    "Listener",
    "Unloadable",
    "build_runner",
    "check_drift",
    "load_history",
    "open_execution",
    "resume_state",
    "set_aside",
    "start_execution",
]
