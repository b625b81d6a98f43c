"""`GET /api/v1/executions/{id}/export`: an execution as a portable history bundle
(the same document as `cerebelum export`; docs/histories.md)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, Field

from cerebelum.application.histories import export_history
from cerebelum.domain.history import FORMAT, FORMAT_VERSION
from cerebelum.engine import Engine
from cerebelum.entrypoints.http.common import ExecutionId, error_answers
from cerebelum.entrypoints.http.pages import SafeJSONResponse
from cerebelum.entrypoints.http.schemas import EventOut, ExecutionOut


class BundleWorkflow(BaseModel):
    name: str
    version: int
    digest: str = Field(description="sha256 of the definition (apart from its version); checked on import")
    created_at: str
    definition: dict[str, Any]


class BundleEvent(EventOut):
    id: str


class HistoryBundleOut(BaseModel):
    format: str = Field(description=f"Always {FORMAT!r}")
    format_version: int = Field(description=f"{FORMAT_VERSION} today")
    exported_at: str = Field(description="RFC 3339, UTC")
    engine_version: str | None
    workflow: BundleWorkflow = Field(description="The definition of the version the execution ran")
    execution: ExecutionOut
    events: list[BundleEvent] = Field(description="Every event of its log, in order")


def history_routes(engine: Engine) -> APIRouter:
    router = APIRouter(prefix="/executions", tags=["executions"])

    @router.get(
        "/{execution_id}/export",
        response_model=None,  # documented below, not re-validated: a log may hold many events
        responses={200: {"model": HistoryBundleOut, "description": "The bundle"}, **error_answers(404, 503)},
        summary="Export as a portable history bundle",
    )
    async def export(execution_id: ExecutionId) -> Any:
        bundle = await engine.host.call(export_history, engine.store, execution_id)
        document = bundle.to_json(engine.clock.now(), engine.host.settings.engine_version)
        response = SafeJSONResponse(document)
        response.headers["Content-Disposition"] = f'attachment; filename="{bundle.execution.id}.json"'
        return response

    return router

