"""Helpers for users' test suites: replay production histories against new code.

    from cerebelum.testing import replay_bundle

    def test_histories_still_replay():
        for path in sorted(Path("tests/histories").glob("*.json")):
            replay_bundle(path, "myapp.handlers")

A bundle is written by `cerebelum export EXEC_ID -o FILE` (docs/histories.md).
No database is involved: the bundle carries the definition and the log.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from cerebelum.application.handlers import HandlerRegistry, default_registry
from cerebelum.application.histories import bundle_from_text, replay_history
from cerebelum.application.replay_execution import ReplayReport
from cerebelum.bootstrap import offline_adapters
from cerebelum.infrastructure.documents import import_handlers

Handlers = HandlerRegistry | Mapping[str, Callable[..., Any]] | str | Path | Iterable[str | Path] | None


def _registry(handlers: Handlers) -> HandlerRegistry:
    """A registry from what a test has at hand: a registry; a mapping name -> function;
    module names or .py paths (imported: their `@cerebelum.handler`s register in the
    default registry); None: the default registry as it is."""
    if handlers is None:
        return default_registry
    if isinstance(handlers, HandlerRegistry):
        return handlers
    if isinstance(handlers, Mapping):
        registry = HandlerRegistry()
        for name, func in handlers.items():
            registry.register(name, func)
        return registry
    for spec in [handlers] if isinstance(handlers, str | Path) else handlers:
        import_handlers(str(spec))
    return default_registry


def replay_bundle(path: str | Path, handlers: Handlers = None, strict: bool = True) -> ReplayReport:
    """Replay the bundle at `path` with `handlers`; AssertionError with the first
    divergence (where, why, the logged and the replayed event) if it does not
    replay identically. `strict` (the default here) re-invokes every handler with
    the recorded time and randomness and compares its output with the log's."""
    path = Path(path)
    bundle = bundle_from_text(path.read_text(encoding="utf-8"), str(path))
    compiler, clock, scope = offline_adapters()
    report = asyncio.run(
        replay_history(bundle, compiler, strict=strict, handlers=_registry(handlers), clock=clock, step_scope=scope)
    )
    if not report.identical:
        d = report.divergence
        assert d is not None
        raise AssertionError(
            f"{path}: execution {report.execution_id} diverges at sequence {d.sequence} (node {d.node_id or '-'}): "
            f"{d.reason}\n  log:    {json.dumps(d.recorded, ensure_ascii=False)}\n"
            f"  replay: {json.dumps(d.replayed, ensure_ascii=False)}"
        )
    return report
