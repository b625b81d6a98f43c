"""Routes that talk to executions: signals and forks (interaction.md sections 1 and 8)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Response

from cerebelum.application.fork import OutOfRange
from cerebelum.application.signals import send_signal
from cerebelum.domain.validation import SIGNAL_NAME_RE
from cerebelum.engine import Engine
from cerebelum.entrypoints.http.common import ExecutionId, error_answers, json_body, located
from cerebelum.entrypoints.http.errors import RequestProblem
from cerebelum.entrypoints.http.schemas import ExecutionOut, ForkIn, SignalIn, SignalOut

SignalName = Annotated[str, Path(pattern=SIGNAL_NAME_RE.pattern, description="The signal's name")]


def interaction_routes(engine: Engine) -> APIRouter:
    router = APIRouter(prefix="/executions", tags=["executions"])

    @router.post(
        "/{execution_id}/signals/{name}",
        status_code=202,
        response_model=SignalOut,
        responses={
            200: {"model": SignalOut, "description": "A repeated key: the first signal's sequence, nothing appended"},
            **error_answers(400, 404, 409, 413, 415, 503),
        },
        dependencies=[Depends(json_body)],
        summary="Deliver a signal (a `wait` node consumes it); 409 once the execution has ended",
    )
    async def signal(execution_id: ExecutionId, name: SignalName, response: Response, body: SignalIn | None = None) -> Any:
        body = body or SignalIn()
        sent = await send_signal(engine.host, execution_id, name, body.payload, body.key)
        if sent.repeated:
            response.status_code = 200
        return sent.to_json()

    @router.post(
        "/{execution_id}/fork",
        status_code=202,
        response_model=ExecutionOut,
        responses=error_answers(400, 404, 409, 413, 415, 503),
        dependencies=[Depends(json_body)],
        summary="A new execution from this one's log up to `at` (default: just before its failure), run by a worker",
    )
    async def fork(execution_id: ExecutionId, body: ForkIn | None = None) -> dict[str, Any]:
        at = body.at if body is not None else None
        try:
            return (await engine.fork_async(execution_id, at)).to_json()
        except OutOfRange as exc:
            raise RequestProblem(422, "invalid_request", str(exc), [located("body.at", str(exc))]) from None

    return router
