"""The node types of the workflow language (spec section 4; `wait`, `workflow`: interaction.md sections 1 and 4).

Nodes are frozen values built by `validation.read_workflow`; expressions are
already compiled. Composite nodes (parallel, map, sequential) hold inline
child nodes, named in events by a path: `notify.sms`, `notify.sms[1]`, `ship[3]`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cerebelum.domain.expressions import CompiledExpression

NODE_TYPES = ("function", "conditional", "parallel", "map", "sequential", "delay", "wait", "workflow")


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff between attempts of a function node."""

    max_attempts: int = 1
    initial_interval_s: float = 1.0
    backoff: float = 2.0
    max_interval_s: float | None = None
    non_retryable: tuple[str, ...] = ()  # exception class names that fail the node at once

    def delay_after(self, attempt: int) -> float | None:
        """Seconds to wait after failed `attempt` (1-based); None if it was the last."""
        if attempt >= self.max_attempts:
            return None
        delay = self.initial_interval_s * self.backoff ** (attempt - 1)
        if self.max_interval_s is not None:
            delay = min(delay, self.max_interval_s)
        return delay


@dataclass(frozen=True)
class FunctionNode:
    """Calls a registered handler; retries with backoff; optional per-attempt timeout."""

    handler: str
    input: CompiledExpression | None = None
    retry: RetryPolicy = RetryPolicy()
    timeout_s: float | None = None
    type: str = "function"
    location: str = ""  # where the node sits in the definition, for errors


@dataclass(frozen=True)
class ConditionalNode:
    """Routes by its outgoing edges; passes `data` through unchanged."""

    type: str = "conditional"
    location: str = ""  # where the node sits in the definition, for errors


@dataclass(frozen=True)
class ParallelNode:
    """Runs every branch at once; fails fast, cancelling the other branches."""

    branches: tuple[tuple[str, Node], ...]
    max_concurrency: int = 0
    type: str = "parallel"
    location: str = ""  # where the node sits in the definition, for errors


@dataclass(frozen=True)
class MapNode:
    """Runs `node` once per item of `items`; outputs in item order."""

    items: CompiledExpression
    node: Node
    max_concurrency: int = 10
    type: str = "map"
    location: str = ""  # where the node sits in the definition, for errors


@dataclass(frozen=True)
class SequentialNode:
    """Runs steps in order, each getting the previous step's output as `data`."""

    steps: tuple[Node, ...]
    type: str = "sequential"
    location: str = ""  # where the node sits in the definition, for errors


@dataclass(frozen=True)
class DelayNode:
    """A durable timer: `seconds` from now, or `until` an RFC 3339 time."""

    seconds: float | None = None
    until: CompiledExpression | None = None
    type: str = "delay"
    location: str = ""  # where the node sits in the definition, for errors


@dataclass(frozen=True)
class WaitNode:
    """Parks until a signal named `signal` is delivered; its payload is the output.
    With `timeout_s`, fails for good with kind `timeout` when none came in time."""

    signal: str
    timeout_s: float | None = None
    type: str = "wait"
    location: str = ""  # where the node sits in the definition, for errors


@dataclass(frozen=True)
class WorkflowNode:
    """Starts a child execution of a stored workflow and parks until it ends; its
    output is the child's (interaction.md section 4). `version` None: the latest."""

    workflow: str
    version: int | None = None
    input: CompiledExpression | None = None
    type: str = "workflow"
    location: str = ""  # where the node sits in the definition, for errors


Node = FunctionNode | ConditionalNode | ParallelNode | MapNode | SequentialNode | DelayNode | WaitNode | WorkflowNode


def nested_nodes(nodes: Iterable[Node]) -> Iterator[Node]:
    """Every node, inline ones included (depth first)."""
    for node in nodes:
        yield node
        if isinstance(node, ParallelNode):
            yield from nested_nodes(child for _, child in node.branches)
        elif isinstance(node, MapNode):
            yield from nested_nodes([node.node])
        elif isinstance(node, SequentialNode):
            yield from nested_nodes(node.steps)


def child_path(parent: str, key: str | int) -> str:
    """Path of an inline child: `parent.branch` or `parent[index]`."""
    return f"{parent}[{key}]" if isinstance(key, int) else f"{parent}.{key}"


def top_level_id(path: str) -> str:
    """The top-level node a path belongs to (ids never contain '.' or '[')."""
    for i, ch in enumerate(path):
        if ch in ".[":
            return path[:i]
    return path


def is_top_level(path: str) -> bool:
    return "." not in path and "[" not in path
