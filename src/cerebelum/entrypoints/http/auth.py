"""Bearer-token authentication for the HTTP API.

Tokens are configured by the operator (env `CEREBELUM_API_TOKENS`, comma
separated, and/or `CEREBELUM_API_TOKENS_FILE`, one per line), compared in
constant time with every configured token, and never logged nor echoed: a
refusal says only that the token is missing or not valid.
"""

from __future__ import annotations

import hmac
import os
from collections.abc import Iterable, Mapping

from starlette.types import ASGIApp, Receive, Scope, Send

from cerebelum.entrypoints.http.errors import error_response

TOKENS_ENV = "CEREBELUM_API_TOKENS"
TOKENS_FILE_ENV = "CEREBELUM_API_TOKENS_FILE"
OPEN_PATHS = frozenset({"/healthz", "/readyz"})


class TokenConfigError(Exception):
    """The token file cannot be read (the message never holds a token)."""


def load_tokens(environ: Mapping[str, str] | None = None) -> frozenset[str] | None:
    """The configured tokens (both sources add up); None when there are none."""
    env = os.environ if environ is None else environ
    tokens = [part.strip() for part in env.get(TOKENS_ENV, "").split(",")]
    path = env.get(TOKENS_FILE_ENV, "").strip()
    if path:
        try:
            with open(path, encoding="utf-8") as handle:
                tokens.extend(line.strip() for line in handle)
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
            raise TokenConfigError(f"cannot read {TOKENS_FILE_ENV} {path}: {reason}") from None
    found = frozenset(t for t in tokens if t and not t.startswith("#"))
    return found or None


class BearerAuthMiddleware:
    """Every HTTP request but the health checks needs `Authorization: Bearer <token>`;
    otherwise 401 with the shared error body and `WWW-Authenticate: Bearer`."""

    def __init__(self, app: ASGIApp, tokens: Iterable[str]) -> None:
        self.app = app
        self._tokens = tuple(token.encode("utf-8") for token in tokens)

    def __repr__(self) -> str:  # never show the tokens, even in a debugger or a log of the stack
        return f"BearerAuthMiddleware({len(self._tokens)} token(s))"

    def _valid(self, presented: bytes) -> bool:
        matched = False
        for token in self._tokens:  # no early exit: the time does not tell which token matched
            matched |= hmac.compare_digest(presented, token)
        return matched

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("path") in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        header = b""
        for name, value in scope.get("headers") or ():
            if name == b"authorization":
                header = value
                break
        scheme, _, presented = header.strip().partition(b" ")
        if scheme.lower() == b"bearer" and presented.strip() and self._valid(presented.strip()):
            await self.app(scope, receive, send)
            return
        if not header:
            message = "this request needs an Authorization: Bearer token"
        else:
            message = "the bearer token is missing or not valid"
        response = error_response(401, "unauthorized", message)
        response.headers["WWW-Authenticate"] = "Bearer"
        await response(scope, receive, send)
