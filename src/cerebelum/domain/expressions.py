"""The expression ports: compiled CEL expressions are held by nodes and edges,
so they live here, below both, and `ports` re-exports them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol


class CompiledExpression(Protocol):
    """A CEL expression compiled once, at validation time."""

    source: str

    def evaluate(self, activation: Mapping[str, Any]) -> Any:
        """Return a plain JSON value; raise ExpressionError on any failure."""
        ...


class ExpressionCompiler(Protocol):
    def compile(self, source: str) -> CompiledExpression:
        """Raise ExpressionError with a one-line message when `source` is invalid."""
        ...
