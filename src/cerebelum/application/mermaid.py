"""A workflow drawn as a Mermaid flowchart (`cerebelum graph`)."""

from __future__ import annotations

from cerebelum.domain.nodes import (
    ConditionalNode,
    DelayNode,
    FunctionNode,
    MapNode,
    Node,
    ParallelNode,
    SequentialNode,
    WaitNode,
)
from cerebelum.domain.workflow import Workflow


def _quote(text: str) -> str:
    return '"' + text.replace('"', "#quot;") + '"'


def _describe(node: Node) -> str:
    if isinstance(node, FunctionNode):
        return f"function: {node.handler}"
    if isinstance(node, DelayNode):
        if node.until is not None:
            return f"delay until {node.until.source}"
        return f"delay {node.seconds or 0:g}s"
    if isinstance(node, WaitNode):
        return f"wait for signal {node.signal}" + (f" ({node.timeout_s:g}s)" if node.timeout_s is not None else "")
    if isinstance(node, MapNode):
        return f"map over {node.items.source}: {_describe(node.node)}"
    if isinstance(node, ParallelNode):
        return "parallel: " + ", ".join(name for name, _ in node.branches)
    if isinstance(node, SequentialNode):
        return "sequential: " + " then ".join(_describe(step) for step in node.steps)
    return "conditional"


def _shape(node_id: str, node: Node) -> str:
    label = _quote(f"{node_id}<br/>{_describe(node)}")
    if isinstance(node, ConditionalNode):
        return f"{node_id}{{{label}}}"
    if isinstance(node, (ParallelNode, MapNode, SequentialNode)):
        return f"{node_id}[[{label}]]"
    if isinstance(node, DelayNode | WaitNode):
        return f"{node_id}([{label}])"
    return f"{node_id}[{label}]"


def to_mermaid(workflow: Workflow) -> str:
    lines = ["flowchart TD", f"  start(((start))) --> {workflow.entrypoint}"]
    lines += [f"  {_shape(node_id, node)}" for node_id, node in workflow.nodes.items()]
    for edge in workflow.edges:
        notes = ["on error"] if edge.on == "error" else []
        if edge.when is not None:
            notes.append(edge.when.source)
        if edge.max_iterations is not None:
            notes.append(f"max {edge.max_iterations}x")
        line = "-.->" if edge.on == "error" else "-->"  # error edges dashed
        arrow = f"{line}|{_quote('; '.join(notes))}|" if notes else line
        lines.append(f"  {edge.source} {arrow} {edge.target}")
    return "\n".join(lines) + "\n"
