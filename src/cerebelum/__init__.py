"""Cerebelum: a durable, event-sourced workflow engine.

    import cerebelum

    @cerebelum.handler("charge_card")
    def charge_card(ctx): ...

    with cerebelum.Engine("sqlite:///cerebelum.db") as engine:
        execution = engine.run(definition, {"total": 12})
"""

from cerebelum.infrastructure.deterministic.interception import install as _install_interception

_install_interception()  # before any handler module is imported (see docs/determinism.md)

from cerebelum._version import __version__  # noqa: E402
from cerebelum.application.context import StepContext  # noqa: E402
from cerebelum.application.handlers import HandlerRegistry, default_registry, handler  # noqa: E402
from cerebelum.domain.errors import (  # noqa: E402
    CerebelumError,
    Conflict,
    ExpressionError,
    HandlerError,
    IllegalTransition,
    NonRetryable,
    NotFound,
    Problem,
    StoreUnavailable,
    ValidationError,
)
from cerebelum.domain.events import Event  # noqa: E402
from cerebelum.domain.execution import Execution  # noqa: E402
from cerebelum.engine import Engine  # noqa: E402

__all__ = [
    "CerebelumError",
    "Conflict",
    "Engine",
    "Event",
    "Execution",
    "ExpressionError",
    "HandlerError",
    "HandlerRegistry",
    "IllegalTransition",
    "NonRetryable",
    "NotFound",
    "Problem",
    "StepContext",
    "StoreUnavailable",
    "ValidationError",
    "__version__",
    "default_registry",
    "handler",
]
