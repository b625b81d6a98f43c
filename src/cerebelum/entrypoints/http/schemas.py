"""Request and response bodies of the HTTP API, as documented in /openapi.json.

The shapes are those of the domain objects' `to_json` (the same as the CLI's
`--json`); these models only describe them.
"""

from __future__ import annotations

from types import UnionType
from typing import Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

QUEUE_PATTERN = r"^[A-Za-z0-9_.:-]{1,100}$"


class JsonBody(BaseModel):
    """A request body taken as JSON typed it: `true` is not 1, "7" is not 7 and 1 is
    not `true` (pydantic's lax mode would take all three). An integral number
    such as 2.0 is still an integer, as JSON Schema counts it."""

    model_config = ConfigDict(extra="forbid")

    @field_validator("*", mode="before")
    @classmethod
    def _as_json_typed_it(cls, value: Any, info: ValidationInfo) -> Any:
        assert info.field_name is not None
        annotation = cls.model_fields[info.field_name].annotation
        kinds = set(get_args(annotation)) if get_origin(annotation) in (Union, UnionType) else {annotation}
        if kinds & {int, float} and isinstance(value, bool | str) and type(value) not in kinds:
            raise ValueError("must be a JSON number")
        if bool in kinds and value is not None and not isinstance(value, bool):
            raise ValueError("must be true or false")
        return value
ExecutionStatusName = Literal["pending", "running", "completed", "failed", "paused"]


class ErrorDetail(BaseModel):
    location: str = Field(description="Where the problem is: a dotted path into the definition or the request")
    message: str


class ErrorInfo(BaseModel):
    code: str = Field(description="A stable, machine-readable error code")
    message: str
    details: list[ErrorDetail] = Field(default_factory=list)


class ErrorBody(BaseModel):
    error: ErrorInfo


class WorkflowOut(BaseModel):
    id: str
    name: str
    version: int
    definition: dict[str, Any]
    created_at: str = Field(description="RFC 3339, UTC")


class WorkflowPage(BaseModel):
    items: list[WorkflowOut]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null on the last page")


class WorkflowVersions(BaseModel):
    items: list[WorkflowOut]


class ExecutionIn(JsonBody):

    workflow: str | dict[str, Any] = Field(description="A stored workflow's name, or a definition document")
    version: int | None = Field(default=None, ge=1, le=2**31 - 1, description="A stored version; the latest when omitted")
    input: Any = Field(default=None, description="The execution's input ({} when omitted)")
    key: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        description="Idempotency key: a second start with the same key, workflow and input returns the first execution "
        "(200) and starts nothing; with other arguments, 409",
    )
    seed: int | None = Field(
        default=None, ge=-(2**63), le=2**63 - 1, description="Seed of the execution's randomness (default: from its id)"
    )
    virtual_time: bool | None = Field(default=None, description="Delays, sleeps and retry backoffs advance a virtual clock")
    timeout_s: float | None = Field(
        default=None, gt=0, le=10**9, description="Deadline of the whole execution in seconds (wins over the definition's)"
    )
    queue: str | None = Field(
        default=None,
        pattern=QUEUE_PATTERN,
        description="The queue it waits on (default: the definition's top-level `queue`, else `default`)",
    )
    priority: int | None = Field(
        default=None, ge=1, le=1000, description="1 (first) to 1000 (last), default 500; then oldest first"
    )
    concurrency_key: str | None = Field(
        default=None, min_length=1, max_length=200, description="Its key for the queue's `per_key_concurrency`"
    )


class ScheduleRef(BaseModel):
    name: str = Field(description="The schedule that started the execution")
    tick: str = Field(description="The tick it was started for (RFC 3339, UTC)")


class ExecutionOut(BaseModel):
    execution_id: str
    workflow: str
    version: int
    status: ExecutionStatusName
    input: Any
    output: Any
    error: dict[str, Any] | None
    seed: int | None
    virtual_time: bool
    created_at: str
    started_at: str | None
    completed_at: str | None
    last_sequence: int
    requested: str | None = Field(description="A pause, resume or cancel request not yet carried out")
    key: str | None = Field(default=None, description="The idempotency key it was started with")
    schedule: ScheduleRef | None = Field(default=None, description="The schedule tick that started it, if any")
    timeout_s: float | None = Field(default=None, description="The deadline given at start, in seconds")
    forked_from: dict[str, Any] | None = Field(default=None, description="`{execution_id, sequence}` of a fork's source")
    parent: dict[str, Any] | None = Field(default=None, description="A child: `{execution_id, node}` of its parent")
    code_version: str | None = Field(default=None, description="The latest code version that ran it (null: none yet)")
    versioning: Literal["upgrade", "pinned"] = Field(default="upgrade", description="Its definition's `versioning`")
    waiting_for_code_version: str | None = Field(
        default=None, description="Pinned and not ended: only processes with this code version continue it"
    )
    queue: str = Field(default="default", description="The queue it belongs to")
    priority: int = Field(default=500, description="1 (first) to 1000 (last)")
    concurrency_key: str | None = Field(default=None, description="Its key for the queue's per-key concurrency")


class ExecutionSummary(ExecutionOut):
    omitted: list[Literal["input", "output"]] = Field(
        default_factory=list,
        description="Fields left out of this list item (null here) because their JSON is over 4 KB: "
        "GET /executions/{id} has them",
    )


class ExecutionPage(BaseModel):
    items: list[ExecutionSummary]
    next_cursor: str | None


class EventOut(BaseModel):
    sequence: int
    type: str
    node_id: str | None
    payload: Any
    timestamp: str = Field(description="RFC 3339, UTC")
    engine_version: str | None
    workflow_version: int | None
    code_version: str | None = Field(default=None, description="The code version of the process that wrote it")


class EventList(BaseModel):
    items: list[EventOut]
    next_from: int | None = Field(
        default=None,
        description="More events remain: pass this as `from` for the next page; null when this page ends the log (or `to`)",
    )


class StateOut(BaseModel):
    model_config = ConfigDict(extra="allow")

    execution_id: str
    sequence: int
    status: str
    workflow: str
    version: int | None
    input: Any
    results: Any
    data: Any
    output: Any
    error: Any
    position: dict[str, Any]


class Divergence(BaseModel):
    sequence: int | None
    node_id: str | None
    reason: str
    recorded: Any
    replayed: Any
    code_version: str | None = Field(default=None, description="The code version that recorded the original event")


class ReplayOut(BaseModel):
    execution_id: str
    identical: bool
    strict: bool
    events_checked: int
    from_sequence: int
    divergence: Divergence | None


class Health(BaseModel):
    status: str


class QueueIn(JsonBody):

    concurrency: int | None = Field(
        default=None, ge=1, le=1_000_000, description="At most N executions started and not ended; null = unlimited"
    )
    per_key_concurrency: int | None = Field(
        default=None, ge=1, le=1_000_000, description="At most N per `concurrency_key`; null = unlimited"
    )
    rate: str | None = Field(
        default=None,
        pattern=r"^\s*0*([1-9][0-9]{0,5}|1000000)\s*/\s*[smh]\s*$",
        description="At most N starts per second, minute or hour (`60/m`), a sliding window; null = unlimited",
    )


class QueueOut(BaseModel):
    name: str
    concurrency: int | None
    per_key_concurrency: int | None
    rate: str | None = Field(description="`N/s`, `N/m` or `N/h`; null = unlimited")
    waiting: int = Field(description="Executions waiting for a slot")
    running: int = Field(description="Executions holding a slot: started and not ended (parked and paused ones included)")
    oldest_waiting: str | None = Field(description="Creation time of the oldest waiting execution, RFC 3339")


class QueueList(BaseModel):
    items: list[QueueOut]
class SignalIn(JsonBody):

    payload: Any = Field(default=None, description="Any JSON value (null when omitted): what the `wait` node outputs")
    key: str | None = Field(
        default=None, min_length=1, max_length=200, description="Idempotency key: a repeated signal is not appended again"
    )


class SignalOut(BaseModel):
    execution_id: str
    signal: str
    sequence: int = Field(description="The sequence of its `signal_received` event (the first one's, for a repeated key)")


class ForkIn(JsonBody):

    at: int | None = Field(
        default=None, ge=0, le=2**31 - 1, description="Keep the log up to this sequence (default: just before the failure)"
    )
