"""`create_app(engine)`: the HTTP API under `/api/v1` (docs: interfaces.md, "HTTP API").

Every route calls one of the Engine's methods and shapes its answer with the
domain objects' `to_json`; there is no logic of its own here. No app is built
at import time: `cerebelum serve` (or a test) builds one around its engine.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Header, Path, Query, Request, Response
from fastapi.responses import PlainTextResponse, StreamingResponse

from cerebelum._version import __version__
from cerebelum.domain.events import Event
from cerebelum.engine import NO_INPUT, Engine
from cerebelum.entrypoints.http.auth import BearerAuthMiddleware
from cerebelum.entrypoints.http.common import ExecutionId
from cerebelum.entrypoints.http.common import content_type_of as _content_type
from cerebelum.entrypoints.http.common import error_answers as _errors
from cerebelum.entrypoints.http.common import is_json as _is_json
from cerebelum.entrypoints.http.common import json_body as _json_body
from cerebelum.entrypoints.http.common import located as _at
from cerebelum.entrypoints.http.common import unsupported as _unsupported
from cerebelum.entrypoints.http.console import mount_console
from cerebelum.entrypoints.http.errors import GuardMiddleware, RequestProblem, error_response, install_error_handlers
from cerebelum.entrypoints.http.histories import history_routes
from cerebelum.entrypoints.http.interaction import interaction_routes
from cerebelum.entrypoints.http.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from cerebelum.entrypoints.http.metrics import MAX_WORKFLOW_SERIES, Metrics
from cerebelum.entrypoints.http.origin import SameOriginMiddleware
from cerebelum.entrypoints.http.pages import (
    EVENTS_DEFAULT_LIMIT,
    EVENTS_MAX_LIMIT,
    EVENTS_PAGE_BYTES,
    SUMMARY_BODY_BYTES,
    SafeJSONResponse,
    event_page,
    summary,
)
from cerebelum.entrypoints.http.queues import queue_routes
from cerebelum.entrypoints.http.schedules import schedule_routes
from cerebelum.entrypoints.http.schemas import (
    EventList,
    ExecutionIn,
    ExecutionOut,
    ExecutionPage,
    ExecutionStatusName,
    Health,
    ReplayOut,
    StateOut,
    WorkflowOut,
    WorkflowPage,
    WorkflowVersions,
)
from cerebelum.infrastructure.documents import parse_document

YAML_TYPES = ("application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml")
DEFAULT_LIMIT = 50
MAX_LIMIT = 500


Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT, description="Page size")]
MAX_INT = 2**31 - 1  # versions and offsets are 32-bit in the schema
Cursor = Annotated[str | None, Query(pattern=r"^[0-9]{0,9}$", description="`next_cursor` of the previous page")]


def _offset(cursor: str | None) -> int:
    """Cursors are opaque to clients; today they hold an offset."""
    return int(cursor) if cursor else 0  # absent or empty: the first page; the Cursor pattern allows digits only


def _page(rows: list[Any], limit: int, offset: int) -> dict[str, Any]:
    """`rows` was fetched with limit + 1: the extra row says there is a next page."""
    more = len(rows) > limit
    return {"items": [row.to_json() for row in rows[:limit]], "next_cursor": str(offset + limit) if more else None}


def _single_values(*repeatable: str) -> Any:
    """Query parameters given more than once are refused (422), but for `repeatable` ones."""

    async def check(request: Request) -> None:
        for key in request.query_params:
            count = len(request.query_params.getlist(key))
            if count > 1 and key not in repeatable:
                message = f"'{key}' is given {count} times; it takes one value"
                raise RequestProblem(422, "invalid_request", message, [_at(f"query.{key}", message)])

    return Depends(check)


def _invalid_json(exc: json.JSONDecodeError) -> RequestProblem:
    where = f"line {exc.lineno} column {exc.colno}"
    message = f"the body is not JSON: {exc.msg} at {where}"
    return RequestProblem(400, "invalid_json", message, [_at("body", f"{exc.msg} ({where})")])


async def _document(request: Request) -> Any:
    """The request body as a definition document: YAML by content type, else JSON."""
    raw = await request.body()
    content_type = _content_type(request)
    if content_type not in YAML_TYPES and not _is_json(content_type):
        raise _unsupported(content_type, "application/json or application/yaml")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise RequestProblem(422, "invalid_document", "the body is not UTF-8", [_at("body", "not UTF-8")]) from None
    if content_type in YAML_TYPES:
        return parse_document(text, "request body", ".yaml")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise _invalid_json(exc) from None


# OpenAPI 3.1 reads the `schema` of text/event-stream as the schema of each event.
SSE_EVENT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "One log event; comment lines (keep-alives) carry no event",
    "required": ["id", "event", "data"],
    "properties": {
        "id": {"type": "string", "pattern": "^[0-9]+$", "description": "The event's sequence (send it back as Last-Event-ID)"},
        "event": {"type": "string", "description": "The event type, as in the event catalogue"},
        "data": {
            "type": "string",
            "contentMediaType": "application/json",
            "description": "The event as JSON, the same object as an item of `/events`",
        },
    },
}

DEFINITION_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": "A workflow definition (JSON, or YAML with Content-Type application/yaml or text/yaml)",
        "content": {
            "application/json": {"schema": {"type": "object", "additionalProperties": True}},
            "application/yaml": {"schema": {"type": "string"}},
            "text/yaml": {"schema": {"type": "string"}},
        },
    }
}


def _workflow_routes(engine: Engine) -> APIRouter:
    router = APIRouter(prefix="/workflows", tags=["workflows"])

    @router.post(
        "",
        status_code=201,
        response_model=WorkflowOut,
        responses=_errors(400, 409, 413, 415, 422, 503),
        openapi_extra=DEFINITION_BODY,
        summary="Create a workflow (version) from a definition",
    )
    async def create_workflow(request: Request) -> dict[str, Any]:
        stored = await engine.create_workflow_async(await _document(request))
        return stored.to_json()

    @router.get(
        "",
        response_model=WorkflowPage,
        responses=_errors(422, 503),
        dependencies=[_single_values()],
        summary="List workflows, newest first",
    )
    async def list_workflows(
        name: Annotated[str | None, Query(description="Only this workflow's versions")] = None,
        limit: Limit = DEFAULT_LIMIT,
        cursor: Cursor = None,
    ) -> dict[str, Any]:
        offset = _offset(cursor)
        rows = await engine.workflows_async(name, limit + 1, offset)
        return _page(rows, limit, offset)

    @router.get("/{name}", response_model=WorkflowOut, responses=_errors(404, 503), summary="The latest version")
    async def get_workflow(name: str) -> dict[str, Any]:
        return (await engine.get_workflow_async(name)).to_json()

    @router.get("/{name}/versions", response_model=WorkflowVersions, responses=_errors(404, 503), summary="Every version")
    async def workflow_versions(name: str) -> dict[str, Any]:
        rows = await engine.workflow_versions_async(name)
        if not rows:
            await engine.get_workflow_async(name)  # NotFound
        return {"items": [row.to_json() for row in rows]}

    @router.get("/{name}/versions/{version}", response_model=WorkflowOut, responses=_errors(404, 422, 503), summary="One version")
    async def workflow_version(name: str, version: Annotated[int, Path(ge=1, le=MAX_INT)]) -> dict[str, Any]:
        return (await engine.get_workflow_async(name, version)).to_json()

    @router.delete(
        "/{name}/versions/{version}",
        status_code=204,
        response_class=Response,
        responses={
            204: {"description": "Deleted: hidden from lists and new executions, kept for those that reference it"},
            **_errors(404, 409, 422, 503),
        },
        summary="Soft-delete one version (409 while executions of it are not terminal)",
    )
    async def delete_workflow_version(name: str, version: Annotated[int, Path(ge=1, le=MAX_INT)]) -> Response:
        await engine.delete_workflow_async(name, version)
        return Response(status_code=204)

    return router


def _execution_routes(engine: Engine, keepalive: float) -> APIRouter:
    router = APIRouter(prefix="/executions", tags=["executions"])

    @router.post(
        "",
        status_code=202,
        response_model=ExecutionOut,
        responses={
            200: {"model": ExecutionOut, "description": "An earlier start with the same key and arguments: that execution"},
            **_errors(400, 404, 409, 413, 415, 422, 503),
        },
        dependencies=[Depends(_json_body)],
        summary="Enqueue an execution (run by a worker); with a key, at most once",
    )
    async def execute(body: ExecutionIn, response: Response) -> dict[str, Any]:
        given = body.input if "input" in body.model_fields_set else NO_INPUT
        options: dict[str, Any] = {"version": body.version, "seed": body.seed, "virtual_time": body.virtual_time}
        options |= {"queue": body.queue, "priority": body.priority, "concurrency_key": body.concurrency_key}
        options = {name: value for name, value in options.items() if value is not None}
        if body.key is not None:
            options["key"] = body.key
        if body.timeout_s is not None:
            options["timeout_s"] = body.timeout_s
        execution, created = await engine.submit_async(body.workflow, given, **options)
        if not created:
            response.status_code = 200  # an earlier start with this key: nothing started
        return execution.to_json()

    @router.get(
        "",
        response_model=ExecutionPage,
        responses=_errors(422, 503),
        dependencies=[_single_values("status")],
        summary=f"List executions, newest first (input/output over {SUMMARY_BODY_BYTES} bytes left out: see `omitted`)",
    )
    async def list_executions(
        workflow: Annotated[str | None, Query(description="Only this workflow's executions")] = None,
        status: Annotated[
            list[ExecutionStatusName] | None,
            Query(description="Only executions in this status; repeated (`status=failed&status=paused`): in any of them"),
        ] = None,
        parent: Annotated[str | None, Query(max_length=64, description="Only the children of this execution")] = None,
        limit: Limit = DEFAULT_LIMIT,
        cursor: Cursor = None,
    ) -> dict[str, Any]:
        offset = _offset(cursor)
        rows = await engine.executions_async(workflow, set(status) if status else None, limit + 1, offset, parent)
        page = _page(rows, limit, offset)
        page["items"] = [summary(item, SUMMARY_BODY_BYTES) for item in page["items"]]
        return page

    @router.get("/{execution_id}", response_model=ExecutionOut, responses=_errors(404, 503), summary="Status, input, output")
    async def status(execution_id: ExecutionId) -> dict[str, Any]:
        return (await engine.status_async(execution_id)).to_json()

    @router.get(
        "/{execution_id}/events",
        response_model=EventList,
        responses=_errors(404, 422, 503),
        summary="The event log, one page at a time (follow `next_from`)",
    )
    async def events(
        execution_id: ExecutionId,
        start: Annotated[int, Query(alias="from", ge=0, le=MAX_INT, description="First sequence (inclusive)")] = 0,
        end: Annotated[int | None, Query(alias="to", ge=0, le=MAX_INT, description="Last sequence (inclusive)")] = None,
        limit: Annotated[
            int, Query(ge=1, le=EVENTS_MAX_LIMIT, description=f"At most this many events (default {EVENTS_DEFAULT_LIMIT})")
        ] = EVENTS_DEFAULT_LIMIT,
    ) -> Response:
        last = start + limit if end is None else min(end, start + limit)  # one more than a page: are there more?
        log = await engine.events_async(execution_id, start, last)
        return Response(event_page(log, limit, EVENTS_PAGE_BYTES), media_type="application/json")

    @router.get("/{execution_id}/state", response_model=StateOut, responses=_errors(404, 422, 503), summary="State at a sequence")
    async def state(
        execution_id: ExecutionId,
        at: Annotated[int | None, Query(ge=0, le=MAX_INT, description="Sequence number; the latest when omitted")] = None,
    ) -> dict[str, Any]:
        if at is not None:
            last = (await engine.status_async(execution_id)).last_sequence
            if at > last:
                logged = f"sequences 0..{last}" if last >= 0 else "no event yet"
                message = f"at {at} is outside the log of {execution_id}: it has {logged}"
                raise RequestProblem(422, "invalid_request", message, [_at("query.at", message)])
        return await engine.state_at_async(execution_id, at)

    @router.get(
        "/{execution_id}/stream",
        response_class=StreamingResponse,
        responses={
            200: {
                "description": "Server-Sent Events, one per log event (`id`: sequence, `event`: type, "
                "`data`: the event as in `/events`), until the execution is terminal",
                "content": {"text/event-stream": {"schema": SSE_EVENT_SCHEMA}},
            },
            **_errors(404, 422, 503),
        },
        summary="Live events (Server-Sent Events), resumable with Last-Event-ID",
    )
    async def stream(
        execution_id: ExecutionId,
        start: Annotated[int, Query(alias="from", ge=0, le=MAX_INT, description="First sequence (inclusive)")] = 0,
        last_event_id: Annotated[
            str,
            Header(
                pattern=r"^\s*[0-9]{0,18}\s*$",
                description="Resume after this sequence (sent by EventSource on reconnect; wins over `from`)",
            ),
        ] = "",
    ) -> StreamingResponse:
        if last_event_id.strip():  # digits only: the header's pattern is checked before this runs
            start = int(last_event_id) + 1
        await engine.status_async(execution_id)  # 404 before the stream starts
        return StreamingResponse(
            _sse(engine, execution_id, start, keepalive),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    @router.post("/{execution_id}/pause", response_model=ExecutionOut, responses=_errors(404, 409, 503), summary="Pause")
    async def pause(execution_id: ExecutionId) -> dict[str, Any]:
        return (await engine.pause_async(execution_id)).to_json()

    @router.post("/{execution_id}/resume", response_model=ExecutionOut, responses=_errors(404, 409, 503), summary="Resume")
    async def resume(execution_id: ExecutionId) -> dict[str, Any]:
        return (await engine.resume_async(execution_id)).to_json()

    @router.post("/{execution_id}/cancel", response_model=ExecutionOut, responses=_errors(404, 409, 503), summary="Cancel")
    async def cancel(execution_id: ExecutionId) -> dict[str, Any]:
        return (await engine.cancel_async(execution_id)).to_json()

    @router.post("/{execution_id}/replay", response_model=ReplayOut, responses=_errors(404, 422, 503), summary="Replay verdict")
    async def replay(
        execution_id: ExecutionId,
        strict: Annotated[bool, Query(description="Also re-invoke every handler with the recorded time and randomness")] = False,
    ) -> dict[str, Any]:
        return (await engine.replay_async(execution_id, strict)).to_json()

    return router


SSE_KEEPALIVE_S = 15.0
SSE_BUFFER = 256  # events queued for one stream's client
SSE_SLOW_READER_S = 30.0  # a client this far behind is cut off (it resumes with Last-Event-ID)


async def _sse(engine: Engine, execution_id: str, start: int, keepalive: float) -> AsyncIterator[str]:
    """The log from `start` on as Server-Sent Events, until the execution is terminal.

    While nothing happens a comment line goes out every `keepalive` seconds, so
    proxies and load balancers do not close a quiet stream (a parked timer, a
    paused execution); EventSource clients ignore it. A client that stops
    reading holds at most SSE_BUFFER events here (the follower behind it keeps
    a bounded inbox and reads the log again when it overflows); one that falls
    SSE_SLOW_READER_S behind is cut off and resumes with Last-Event-ID.
    """
    events: asyncio.Queue[Event | None] = asyncio.Queue(SSE_BUFFER)

    async def pump() -> None:
        try:
            async for event in engine.follow_async(execution_id, start):
                await asyncio.wait_for(events.put(event), SSE_SLOW_READER_S)
        finally:
            with contextlib.suppress(asyncio.QueueFull):
                events.put_nowait(None)

    pumping = asyncio.ensure_future(pump())
    try:
        while True:
            try:
                event = await asyncio.wait_for(events.get(), keepalive)
            except TimeoutError:
                if pumping.done() and events.empty():
                    break  # the pump gave up on this reader
                yield ": keep-alive\n\n"
                continue
            if event is None:
                break
            data = json.dumps(event.to_json(), separators=(",", ":"))
            yield f"id: {event.sequence}\nevent: {event.type}\ndata: {data}\n\n"
        if not isinstance(pumping.exception() if pumping.done() else None, TimeoutError):
            await pumping  # a failure of the follower ends the stream with its error
    finally:
        pumping.cancel()


def create_app(
    engine: Engine,
    *,
    max_body_bytes: int = 1_000_000,
    run_workers: bool = False,
    tokens: frozenset[str] | None = None,
    require_auth: bool | None = None,
    sse_keepalive: float = SSE_KEEPALIVE_S,
    allowed_hosts: Iterable[str] | None = None,
    metrics_max_workflows: int = MAX_WORKFLOW_SERIES,
) -> FastAPI:
    """The HTTP API bound to `engine` (which the caller owns and closes);
    `run_workers` also runs the engine's worker pool in the server's loop.
    With `require_auth` (by default: when `tokens` are given) every route but
    `/healthz` and `/readyz` needs `Authorization: Bearer <one of tokens>`.
    With `allowed_hosts` (`host`, `host:port` or `*`; `cerebelum serve` always
    gives them) a request naming another `Host` is 403; a state-changing
    request with a foreign `Origin` is 403 in any case (origin.py)."""
    if require_auth is None:
        require_auth = bool(tokens)
    if require_auth and not tokens:
        raise ValueError("require_auth needs at least one token")
    metrics = Metrics(engine, metrics_max_workflows)
    metrics.start()  # at once: in-process test clients do not run the lifespan

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if run_workers and engine.workers > 0:
            await engine.start_worker_async()
        try:
            yield
        finally:
            metrics.stop()
            await engine.close_async()  # stop the pool this loop runs; the engine itself is the caller's

    # No /docs nor /redoc: Swagger UI and ReDoc load from a CDN (blank offline); the
    # OpenAPI document at /openapi.json and the console at / are served by the server itself.
    app = FastAPI(
        title="Cerebelum",
        version=__version__,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        default_response_class=SafeJSONResponse,
    )
    install_error_handlers(app)
    app.add_middleware(GuardMiddleware, max_body_bytes=max_body_bytes)
    if require_auth and tokens:
        app.add_middleware(BearerAuthMiddleware, tokens=tokens)  # refused before the body is read
    mount_console(app)  # the web console at `/`, outside auth so that it can ask for a token
    app.add_middleware(SameOriginMiddleware, allowed_hosts=allowed_hosts)  # outermost: a foreign page learns nothing

    api = APIRouter(prefix="/api/v1")
    api.include_router(_workflow_routes(engine))
    api.include_router(_execution_routes(engine, sse_keepalive))
    api.include_router(history_routes(engine))
    api.include_router(schedule_routes(engine))
    api.include_router(interaction_routes(engine))
    api.include_router(queue_routes(engine, _errors))
    app.include_router(api)

    @app.get("/healthz", response_model=Health, tags=["health"], summary="Liveness")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", response_model=Health, responses=_errors(503, auth=False), tags=["health"], summary="Database reachable")
    async def readyz() -> Any:
        try:
            await engine.workflows_async(None, 1, 0)
        except Exception:
            return error_response(503, "store_unavailable", "the database does not answer")
        return {"status": "ok"}

    @app.get(
        "/metrics",
        response_class=PlainTextResponse,
        responses={
            200: {"description": "Prometheus text format 0.0.4", "content": {"text/plain": {"schema": {"type": "string"}}}},
            **_errors(503),
        },
        tags=["health"],
        summary="Prometheus metrics",
    )
    async def prometheus() -> PlainTextResponse:
        return PlainTextResponse(await metrics.render(), media_type=METRICS_CONTENT_TYPE)

    return app
