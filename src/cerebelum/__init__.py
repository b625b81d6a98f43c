"""Cerebelum: a durable, event-sourced workflow engine.

    import cerebelum

    @cerebelum.handler("charge_card")
    def charge_card(ctx): ...

    with cerebelum.Engine("sqlite:///cerebelum.db") as engine:
        execution = engine.run(definition, {"total": 12})
"""

from cerebelum.application.context import StepContext
from cerebelum.application.handlers import HandlerRegistry, default_registry, handler
from cerebelum.domain.errors import (
    CerebelumError,
    Conflict,
    ExpressionError,
    HandlerError,
    IllegalTransition,
    NotFound,
    Problem,
    StoreUnavailable,
    ValidationError,
)
from cerebelum.domain.events import Event
from cerebelum.domain.execution import Execution
from cerebelum.engine import Engine

__version__ = "0.1.0"

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
    "NotFound",
    "Problem",
    "StepContext",
    "StoreUnavailable",
    "ValidationError",
    "default_registry",
    "handler",
]
