"""The project's own exceptions: every layer raises these, adapters translate into them."""

from __future__ import annotations

from dataclasses import dataclass


class CerebelumError(Exception):
    """Base of every error the engine raises on purpose."""


@dataclass(frozen=True)
class Problem:
    """One validation problem, located by a dotted path into the definition."""

    location: str
    message: str

    def __str__(self) -> str:
        return f"{self.location}: {self.message}"


class ValidationError(CerebelumError):
    """A definition is invalid; carries every problem found, not just the first."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("; ".join(str(p) for p in problems))


class ExpressionError(CerebelumError):
    """A CEL expression failed to compile or to evaluate."""


class ExpressionLimit(ExpressionError):
    """An evaluation exceeded its cost bound (CPU time, memory or result size),
    or an expression exceeds a static limit (length, nesting of macros)."""


class IllegalTransition(CerebelumError):
    """A status change the execution state machine forbids."""


class NotFound(CerebelumError):
    """An unknown workflow or execution."""


class Conflict(CerebelumError):
    """A write that contradicts what is stored (a different definition under an
    existing (name, version), or an event sequence that is already taken)."""


class HandlerError(CerebelumError):
    """A handler is unknown, or returned something that is not JSON."""


class StoreUnavailable(CerebelumError):
    """The database could not be reached; nothing was written."""


class ConfigurationError(CerebelumError):
    """A setting the operator gave is unusable (e.g. an unsupported database URL)."""


class NonRetryable(CerebelumError):
    """Raised by a handler: this attempt's failure is final, retrying cannot help.

    The node fails at once, whatever its `retry.max_attempts`; the same as naming
    the exception's class in the node's `retry.non_retryable`."""


class LeaseLost(Conflict):
    """This worker no longer holds the execution's lease: it must stop writing."""
