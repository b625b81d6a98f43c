"""`/api/v1/queues`: queues and their limits (spec section 9)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Path, Response

from cerebelum.application.queues import delete_queue, list_queues, set_queue, show_queue
from cerebelum.engine import Engine
from cerebelum.entrypoints.http.schemas import QUEUE_PATTERN, QueueIn, QueueList, QueueOut

QueueName = Annotated[str, Path(pattern=QUEUE_PATTERN, description="Queue name: 1-100 characters of [A-Za-z0-9_.:-]")]
Errors = Callable[..., dict[int | str, dict[str, Any]]]


def queue_routes(engine: Engine, errors: Errors) -> APIRouter:
    """The routes; `errors(*statuses)` documents their error answers (app.py's `_errors`)."""
    router = APIRouter(prefix="/queues", tags=["queues"])
    call, store = engine.host.call, engine.store

    @router.get("", response_model=QueueList, responses=errors(503), summary="Every queue with settings or live executions")
    async def queues() -> dict[str, Any]:
        return {"items": [view.to_json() for view in await call(list_queues, store)]}

    @router.put(
        "/{name}",
        response_model=QueueOut,
        responses=errors(400, 413, 415, 503),
        summary="Set a queue's limits (null = unlimited); the next claim obeys them",
    )
    async def put_queue(name: QueueName, body: QueueIn) -> dict[str, Any]:
        limits = (body.concurrency, body.per_key_concurrency, body.rate)
        return (await call(set_queue, store, name, *limits)).to_json()

    @router.get(
        "/{name}",
        response_model=QueueOut,
        responses=errors(503),
        summary="A queue: limits, waiting, running, oldest waiting (422 for a queue with no settings and no executions)",
    )
    async def get_queue(name: QueueName) -> dict[str, Any]:
        return (await call(show_queue, store, name)).to_json()

    @router.delete(
        "/{name}",
        status_code=204,
        response_class=Response,
        responses=errors(404, 503),
        summary="Forget a queue's limits: unlimited from the next claim on",
    )
    async def delete(name: QueueName) -> Response:
        await call(delete_queue, store, name)
        return Response(status_code=204)

    return router
