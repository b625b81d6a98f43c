"""The HTTP API (`/api/v1`): a thin FastAPI layer over `cerebelum.Engine`."""

from cerebelum.entrypoints.http.app import create_app

__all__ = ["create_app"]
