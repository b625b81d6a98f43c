"""Use cases ExportHistory, ImportHistory and ReplayHistory: an execution as a
self-contained bundle (domain/history.py) that travels to another database,
or into a test suite that replays it against new handler code without any
database (docs/histories.md)."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

from cerebelum.application.handlers import HandlerRegistry
from cerebelum.application.replay_execution import ReplayReport, StepScope, replay_log
from cerebelum.domain.errors import NotFound, Problem, ValidationError
from cerebelum.domain.execution import Execution
from cerebelum.domain.history import HistoryBundle, read_bundle
from cerebelum.domain.ports import Clock, ExpressionCompiler, IdSource, Store
from cerebelum.domain.validation import read_workflow
from cerebelum.domain.workflow import Workflow


def export_history(store: Store, execution_id: str) -> HistoryBundle:
    """The execution (NotFound if unknown), the version it ran and its log up to
    the row's `last_sequence`: a consistent snapshot even while it runs."""
    execution = store.executions.get(execution_id)
    workflow = store.workflows.get(execution.workflow, execution.version)
    events = store.events.read(execution_id, 0, execution.last_sequence)
    if len(events) != execution.last_sequence + 1:
        raise NotFound(f"execution '{execution_id}' was deleted while it was being exported")
    return HistoryBundle(workflow, execution.evolve(control=None), tuple(events))


def bundle_from_text(text: str, origin: str) -> HistoryBundle:
    """Parse and check a bundle file's text; ValidationError located in it (`origin` names it)."""
    try:
        document: Any = json.loads(text)
    except json.JSONDecodeError as exc:
        where = f"line {exc.lineno} column {exc.colno}"
        ended = exc.pos >= len(text.rstrip()) or exc.msg.startswith("Unterminated string")  # the text stops mid-value
        hint = " (the file is truncated)" if ended else ""
        raise ValidationError([Problem("bundle", f"not valid JSON at {where}: {exc.msg}{hint}")]) from None
    return read_bundle(document)


def compile_bundle(bundle: HistoryBundle, compiler: ExpressionCompiler) -> Workflow:
    """The bundle's definition, compiled; its problems located under `workflow.definition`."""
    try:
        return read_workflow(bundle.workflow.definition, compiler)
    except ValidationError as exc:
        raise ValidationError([Problem(f"workflow.definition.{p.location}", p.message) for p in exc.problems]) from None


def import_history(store: Store, ids: IdSource, compiler: ExpressionCompiler, bundle: HistoryBundle) -> Execution:
    """Load a bundle into this database in one transaction; nothing is written if
    it is refused. Only a finished execution is imported: one that is not may
    still be running where it was exported, and workers here would run it again."""
    compile_bundle(bundle, compiler)
    execution = bundle.execution
    if not execution.is_terminal:
        raise ValidationError(
            [Problem("execution.status", f"{execution.status}: only a finished execution (completed or failed) can be imported")]
        )
    store.executions.import_history(execution, bundle.events, replace(bundle.workflow, id=ids.new_id()))
    return execution


async def replay_history(
    bundle: HistoryBundle,
    compiler: ExpressionCompiler,
    *,
    strict: bool = False,
    handlers: HandlerRegistry | None = None,
    clock: Clock | None = None,
    step_scope: StepScope | None = None,
) -> ReplayReport:
    """Replay a bundle's whole log against its definition, with no store at all
    (`strict`: re-invoke `handlers` with the recorded time and randomness)."""
    return await replay_log(
        compile_bundle(bundle, compiler),
        list(bundle.events),
        None,
        strict=strict,
        handlers=handlers,
        clock=clock,
        step_scope=step_scope,
    )
