"""The Workflow aggregate: a validated, compiled graph of nodes and edges."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from cerebelum.domain.limits import DEFAULT_LIMITS, Limits

if TYPE_CHECKING:
    from cerebelum.domain.expressions import CompiledExpression
    from cerebelum.domain.nodes import Node


@dataclass(frozen=True)
class Edge:
    """`from -> to`, taken when `when` holds; at most `max_iterations` times if set."""

    index: int
    source: str
    target: str
    when: CompiledExpression | None = None
    max_iterations: int | None = None
    on: str = "success"  # "error": taken only after `source` failed for good (spec: failure routing)


@dataclass(frozen=True)
class Workflow:
    """A compiled definition. `definition` is the document it was read from."""

    name: str
    version: int | None
    entrypoint: str
    nodes: dict[str, Node]
    edges: tuple[Edge, ...]
    output: CompiledExpression | None
    definition: dict[str, Any]
    limits: Limits = field(default=DEFAULT_LIMITS, compare=False)  # the limits it was read under
    timeout_s: float | None = None  # the whole execution's deadline (a start's own timeout wins)
    versioning: str = "upgrade"  # what a process with another code version does: "upgrade" or "pinned"
    _outgoing: dict[tuple[str, str], tuple[Edge, ...]] = field(default_factory=dict, init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        outgoing: dict[tuple[str, str], list[Edge]] = {}
        for edge in self.edges:
            outgoing.setdefault((edge.source, edge.on), []).append(edge)
        self._outgoing.update({k: tuple(v) for k, v in outgoing.items()})

    def outgoing(self, node_id: str, on: str = "success") -> tuple[Edge, ...]:
        """Edges leaving `node_id` after a success (or, `on="error"`, a failure), in the order they are listed."""
        return self._outgoing.get((node_id, on), ())


def content_digest(definition: dict[str, Any]) -> str:
    """A stable digest of a definition apart from its `version`, to spot re-creates."""
    body = {k: v for k, v in definition.items() if k != "version"}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True)
class StoredWorkflow:
    """A definition as the WorkflowRepository keeps it (one row per version)."""

    id: str
    name: str
    version: int
    definition: dict[str, Any]
    digest: str
    created_at: datetime
    deleted: bool = False  # soft-deleted: kept for its executions, refused for new ones

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "version": self.version,
            "definition": self.definition,
            "created_at": self.created_at.isoformat().replace("+00:00", "Z"),
        }
