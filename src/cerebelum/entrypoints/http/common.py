"""What every router of the HTTP API shares: error answers in OpenAPI, body checks, path parameters."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Path, Request

from cerebelum.entrypoints.http.errors import RequestProblem
from cerebelum.entrypoints.http.schemas import ErrorBody

ExecutionId = Annotated[str, Path(description="An execution id")]


def error_answers(*statuses: int, auth: bool = True) -> dict[int | str, dict[str, Any]]:
    descriptions = {
        400: "The body is not valid JSON",
        401: "Missing or invalid bearer token (when the server requires one)",
        404: "Unknown workflow or execution",
        409: "Illegal transition, or a conflicting version",
        413: "Request body too large",
        415: "The body's content type is neither JSON nor YAML",
        422: "Invalid request or definition",
        503: "Database unavailable",
    }
    # 422 always: it replaces FastAPI's own validation-error schema with the shared body.
    return {s: {"model": ErrorBody, "description": descriptions[s]} for s in sorted({422, *statuses, *([401] if auth else [])})}


def located(location: str, message: str) -> dict[str, str]:
    return {"location": location, "message": message}


def content_type_of(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


def is_json(content_type: str) -> bool:
    """JSON by content type (a missing one is taken as JSON)."""
    suffixed = content_type.startswith("application/") and content_type.endswith("+json")
    return content_type in ("", "application/json") or suffixed


def unsupported(content_type: str, accepted: str) -> RequestProblem:
    message = f"unsupported content type '{content_type}': send {accepted}"
    return RequestProblem(415, "unsupported_media_type", message, [located("header.content-type", message)])


async def json_body(request: Request) -> None:
    """A JSON body only: any other content type is 415 (before the body is parsed)."""
    content_type = content_type_of(request)
    if not is_json(content_type):
        raise unsupported(content_type, "application/json")


