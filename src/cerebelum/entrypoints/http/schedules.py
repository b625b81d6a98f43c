"""`/api/v1/schedules`: executions started on a clock (interaction.md section 6).

Each route calls a use case of `application.schedules` in a database thread;
auth, the Origin/Host checks and body limits are the app's middleware, the
same as for every other route.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Response
from pydantic import BaseModel, Field

from cerebelum.application import schedules as use
from cerebelum.domain.errors import ValidationError
from cerebelum.domain.names import NAME_RE
from cerebelum.domain.schedules import MAX_EVERY_S
from cerebelum.engine import Engine
from cerebelum.entrypoints.http.common import json_body, located
from cerebelum.entrypoints.http.errors import RequestProblem
from cerebelum.entrypoints.http.schemas import ErrorBody, ExecutionOut, JsonBody

NAME_PATTERN = NAME_RE.pattern
ScheduleName = Annotated[str, Path(description="The schedule's name")]


class ScheduleIn(JsonBody):

    name: str = Field(pattern=NAME_PATTERN, description="1-100 characters of [A-Za-z0-9_.-]")
    workflow: str = Field(pattern=NAME_PATTERN, description="A stored workflow's name")
    version: int | None = Field(
        default=None, ge=1, le=2**31 - 1, description="A stored version; the latest at each tick when omitted"
    )
    input: Any = Field(default=None, description="Each execution's input ({} when omitted)")
    cron: str | None = Field(
        default=None, max_length=200, description="A 5-field cron expression (exactly one of cron and every_s)"
    )
    every_s: int | None = Field(
        default=None, ge=1, le=MAX_EVERY_S, description="Every N seconds, aligned to the Unix epoch"
    )
    timezone: str = Field(default="UTC", max_length=64, description="IANA time zone in which `cron` is evaluated")
    overlap: Literal["skip", "allow"] = Field(default="skip", description="skip: no tick while the previous execution runs")
    catchup: Literal["latest", "all", "none"] = Field(default="latest", description="Ticks missed while no worker ran")
    state: Literal["active", "paused"] = "active"


class ScheduleTickOut(BaseModel):
    tick: str = Field(description="RFC 3339, UTC")
    outcome: Literal["started", "skipped", "missed", "triggered"]
    execution_id: str | None
    reason: str | None = Field(description="Why a tick was skipped or missed")
    recorded_at: str
    status: str | None = Field(description="The execution's status now")


class ScheduleOut(BaseModel):
    name: str
    workflow: str
    version: int | None
    input: Any
    cron: str | None
    every_s: int | None
    timezone: str
    overlap: Literal["skip", "allow"]
    catchup: Literal["latest", "all", "none"]
    state: Literal["active", "paused"]
    created_at: str
    last_tick: str | None
    next_fire: str | None
    next_fires: list[str] = Field(description="The next fire times (RFC 3339, UTC); empty while paused")
    recent: list[ScheduleTickOut] = Field(description="Recent ticks, newest first")


class ScheduleList(BaseModel):
    items: list[ScheduleOut]


DESCRIPTIONS = {
    400: "The body is not valid JSON",
    401: "Missing or invalid bearer token (when the server requires one)",
    404: "Unknown schedule",
    409: "A schedule with this name exists",
    413: "Request body too large",
    415: "The body's content type is not JSON",
    422: "Invalid schedule: each problem located by its field (bad cron, time zone, unknown workflow...)",
    503: "Database unavailable",
}


def _errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return {s: {"model": ErrorBody, "description": DESCRIPTIONS[s]} for s in sorted({401, 422, 503, *statuses})}


def schedule_routes(engine: Engine) -> APIRouter:
    router = APIRouter(prefix="/schedules", tags=["schedules"])

    async def call(function: Any, *args: Any) -> Any:
        return await engine.host.call(function, *args, engine.host.schedule_ports())

    @router.get("", response_model=ScheduleList, responses=_errors(), summary="Every schedule with its next fire time")
    async def list_schedules() -> dict[str, Any]:
        return {"items": await engine.host.call(use.list_schedules, engine.host.schedule_ports())}

    @router.post(
        "",
        status_code=201,
        response_model=ScheduleOut,
        responses=_errors(400, 409, 413, 415),
        dependencies=[Depends(json_body)],
        summary="Create a schedule",
    )
    async def create(body: ScheduleIn) -> dict[str, Any]:
        document = body.model_dump(exclude_unset=True)
        try:
            schedule = await call(use.create_schedule, document)
        except ValidationError as exc:
            details = [located(f"body.{p.location}", p.message) for p in exc.problems]
            message = "; ".join(f"{p.location}: {p.message}" for p in exc.problems)
            raise RequestProblem(422, "invalid_schedule", message, details) from None
        return await call(use.describe_schedule, schedule.name)  # type: ignore[no-any-return]

    @router.get(
        "/{name}", response_model=ScheduleOut, responses=_errors(404), summary="A schedule, its next fire times and recent ticks"
    )
    async def show(name: ScheduleName) -> dict[str, Any]:
        return await call(use.describe_schedule, name)  # type: ignore[no-any-return]

    @router.delete(
        "/{name}",
        status_code=204,
        response_class=Response,
        responses={204: {"description": "Deleted with its history; its executions stay"}, **_errors(404)},
        summary="Delete a schedule",
    )
    async def delete(name: ScheduleName) -> Response:
        await call(use.delete_schedule, name)
        return Response(status_code=204)

    @router.post("/{name}/pause", response_model=ScheduleOut, responses=_errors(404, 409), summary="Stop firing ticks")
    async def pause(name: ScheduleName) -> dict[str, Any]:
        await call(use.pause_schedule, name)
        return await call(use.describe_schedule, name)  # type: ignore[no-any-return]

    @router.post(
        "/{name}/resume", response_model=ScheduleOut, responses=_errors(404, 409), summary="Fire again from the next tick on"
    )
    async def resume(name: ScheduleName) -> dict[str, Any]:
        await call(use.resume_schedule, name)
        return await call(use.describe_schedule, name)  # type: ignore[no-any-return]

    @router.post(
        "/{name}/trigger",
        status_code=202,
        response_model=ExecutionOut,
        responses=_errors(404, 409),
        summary="Start one execution now (whatever the state and overlap)",
    )
    async def trigger(name: ScheduleName) -> dict[str, Any]:
        execution = await call(use.trigger_schedule, name)
        if engine.workers > 0:
            engine.host.notify_pool()
        return execution.to_json()  # type: ignore[no-any-return]

    return router
