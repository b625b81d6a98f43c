"""One error body for every failure: `{"error": {"code", "message", "details"}}`.

Domain errors are translated to status codes here; anything unexpected becomes
a generic 500 (the traceback goes to the log, never into a response).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cerebelum.domain.errors import (
    CerebelumError,
    Conflict,
    ExpressionError,
    HandlerError,
    IllegalTransition,
    NotFound,
    StoreUnavailable,
    ValidationError,
)
from cerebelum.infrastructure.documents import DocumentError
from cerebelum.infrastructure.redaction import scrub

log = logging.getLogger("cerebelum.http")

# Most specific first: LeaseLost is a Conflict, and so on.
DOMAIN_ERRORS: tuple[tuple[type[CerebelumError], int, str], ...] = (
    (ValidationError, 422, "invalid_definition"),
    (DocumentError, 422, "invalid_document"),
    (ExpressionError, 422, "invalid_expression"),
    (HandlerError, 422, "invalid_handler"),
    (NotFound, 404, "not_found"),
    (IllegalTransition, 409, "illegal_transition"),
    (Conflict, 409, "conflict"),
    (StoreUnavailable, 503, "store_unavailable"),
)

HTTP_CODES = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "invalid_request",
    503: "unavailable",
}


class RequestProblem(Exception):
    """A request the API refuses before reaching the engine (bad body, bad cursor)."""

    def __init__(self, status: int, code: str, message: str, details: Sequence[dict[str, str]] = ()) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.details = status, code, message, list(details)


def error_response(status: int, code: str, message: str, details: Sequence[dict[str, str]] = ()) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message, "details": list(details)}}, status_code=status)


def _location(loc: Sequence[Any]) -> str:
    return ".".join(str(part) for part in loc)


async def _domain_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, CerebelumError)
    status, code = next(((s, c) for kind, s, c in DOMAIN_ERRORS if isinstance(exc, kind)), (422, "invalid_request"))
    details: list[dict[str, str]] = []
    if isinstance(exc, ValidationError):
        details = [{"location": p.location, "message": p.message} for p in exc.problems]
        message = f"the definition has {len(details)} problem(s)"
    else:
        message = scrub(str(exc)) or code.replace("_", " ")  # a driver's message may quote the database URL
        location = getattr(exc, "location", None)  # a located bad setting (domain/queues.InvalidSetting)
        if isinstance(location, str):
            details = [{"location": location, "message": str(getattr(exc, "message", message))}]
    if status >= 500:
        log.warning("%s %s: %s", request.method, request.url.path, exc)
    return error_response(status, code, message, details)


async def _request_problem(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestProblem)
    return error_response(exc.status, exc.code, exc.message, exc.details)


async def _request_validation(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    broken = [e for e in exc.errors() if e.get("type") == "json_invalid"]
    if broken:  # a body that does not parse is a bad request, not an invalid one
        ctx = broken[0].get("ctx") or {}
        where = f" at character {broken[0]['loc'][-1]}" if len(broken[0].get("loc", ())) > 1 else ""
        message = f"the body is not JSON: {ctx.get('error', 'it does not parse')}{where}"
        return error_response(400, "invalid_json", message, [{"location": "body", "message": message}])
    details = [{"location": _location(e.get("loc", ())), "message": str(e.get("msg", "invalid"))} for e in exc.errors()]
    return error_response(422, "invalid_request", "the request is invalid", details)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    status = exc.status_code
    code = "invalid_request" if status == 422 else HTTP_CODES.get(status, "http_error")
    response = error_response(status, code, str(exc.detail))
    if exc.headers:
        response.headers.update(exc.headers)
    if status == 405:  # Starlette names only the first matching route's methods
        response.headers["Allow"] = ", ".join(_allowed_methods(request))
    return response


def _allowed_methods(request: Request) -> list[str]:
    """Every method the OpenAPI document gives this path."""
    methods: set[str] = set()
    for template, operations in request.app.openapi().get("paths", {}).items():
        if re.fullmatch(re.sub(r"\\\{[^}]*\\\}", "[^/]+", re.escape(template)), request.url.path):
            methods |= {method.upper() for method in operations}
    return sorted(methods)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(CerebelumError, _domain_error)
    app.add_exception_handler(RequestProblem, _request_problem)
    app.add_exception_handler(RequestValidationError, _request_validation)
    app.add_exception_handler(StarletteHTTPException, _http_error)


class GuardMiddleware:
    """Refuses bodies over `max_body_bytes` (413, by Content-Length and by the
    bytes actually received) and turns any unhandled exception into a generic
    500 with the shared error body."""

    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracked_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            body_receive = await self._buffer(scope, receive)
            if body_receive is None:
                await self._too_large(scope, receive, tracked_send)
                return
            await self.app(scope, body_receive, tracked_send)
        except Exception:
            log.exception("unhandled error on %s %s", scope.get("method"), scope.get("path"))
            if not started:
                await error_response(500, "internal_error", "internal server error")(scope, receive, send)

    async def _buffer(self, scope: Scope, receive: Receive) -> Receive | None:
        """Read the whole body (within the limit) and replay it; None when too large."""
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        if length is not None:
            try:
                if int(length) > self.max_body_bytes:
                    return None
            except ValueError:
                pass
        if scope.get("method") in ("GET", "HEAD", "OPTIONS") and length is None:
            return receive
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return receive
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                return None
            chunks.append(chunk)
            more = message.get("more_body", False)
        body = b"".join(chunks)
        delivered = False

        async def replay() -> Message:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        return replay

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        message = f"the request body exceeds {self.max_body_bytes} bytes"
        await error_response(413, "payload_too_large", message)(scope, receive, send)
