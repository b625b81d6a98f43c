"""The web console: hand-written ES modules, CSS and SVG served at `/` by `cerebelum serve`.

There is no build step and nothing is fetched from elsewhere: the files under
`static/` are the console, and the browser talks to the same server's
`/api/v1` (docs/console.md). The page and its assets are served without a
token, so that the page can load and ask for one; every API call it makes
still carries `Authorization: Bearer`.
"""

from __future__ import annotations

from pathlib import Path

import anyio
from fastapi import FastAPI
from starlette.datastructures import Headers
from starlette.responses import FileResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

STATIC_DIR = Path(__file__).parent / "static"
ASSET_PREFIX = "/console/"
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".txt": "text/plain; charset=utf-8",
}
# Everything comes from this server: the browser refuses anything else (no CDN can creep in).
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",  # revalidate (ETag): an upgraded server never runs a stale console
}


def console_files(static_dir: Path = STATIC_DIR) -> dict[str, Path]:
    """URL path -> file: `/` is index.html, every other asset is under /console/.
    Only these exact paths are served, so no request can reach outside the folder."""
    files = {"/": static_dir / "index.html"}
    for path in sorted(static_dir.rglob("*")):
        if path.is_file() and path.suffix in CONTENT_TYPES:
            files[ASSET_PREFIX + path.relative_to(static_dir).as_posix()] = path
    return files


class ConsoleMiddleware:
    """Answers GET/HEAD for the console's files and hands every other request on.

    It is the outermost layer (see `mount_console`), so the bearer-token check
    never sees these requests; everything else, the API included, is untouched."""

    def __init__(self, app: ASGIApp, static_dir: Path = STATIC_DIR) -> None:
        self.app = app
        self.files = console_files(static_dir)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope.get("method") in ("GET", "HEAD"):
            file = self.files.get(scope.get("path", ""))
            if file is not None:
                await self._serve(file, scope, receive, send)
                return
        await self.app(scope, receive, send)

    async def _serve(self, file: Path, scope: Scope, receive: Receive, send: Send) -> None:
        stat = await anyio.Path(file).stat()  # given now, so that the ETag is known before sending
        response: Response = FileResponse(file, media_type=CONTENT_TYPES[file.suffix], headers=SECURITY_HEADERS, stat_result=stat)
        etag = response.headers.get("etag", "")
        presented = Headers(scope=scope).get("if-none-match", "")
        if etag and etag in [tag.strip().removeprefix("W/") for tag in presented.split(",")]:
            response = Response(status_code=304, headers={"ETag": etag, **SECURITY_HEADERS})
        await response(scope, receive, send)


def mount_console(app: FastAPI) -> None:
    """Serve the console at `/`. Call it after every other `add_middleware`:
    the last one added is the outermost, and the console must answer before auth."""
    app.add_middleware(ConsoleMiddleware)
