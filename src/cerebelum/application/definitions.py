"""Checking and compiling definitions, apart from any database: what
`Engine.validate`, CreateWorkflow and the CLI's `validate` and `graph` share."""

from __future__ import annotations

from typing import Any

from cerebelum.application.handlers import HandlerRegistry
from cerebelum.domain.errors import Problem
from cerebelum.domain.ports import ExpressionCompiler
from cerebelum.domain.validation import read_workflow, validate_document
from cerebelum.domain.workflow import Workflow


class Definitions:
    def __init__(self, compiler: ExpressionCompiler, handlers: HandlerRegistry) -> None:
        self.compiler = compiler
        self.handlers = handlers

    def handler_names(self) -> frozenset[str] | None:
        """Handlers are checked at validation only when some were loaded."""
        return self.handlers.names() if len(self.handlers) else None

    def validate(self, document: Any) -> list[Problem]:
        """Every problem of a definition document; empty when it is valid."""
        return validate_document(document, self.compiler, self.handler_names())

    def read(self, document: Any) -> Workflow:
        """The compiled workflow (ValidationError with every problem)."""
        return read_workflow(document, self.compiler, self.handler_names())
