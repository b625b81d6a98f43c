"""WorkflowValidator: reads a definition document into a Workflow, reporting
EVERY problem with its location (spec section 6), never just the first."""

from __future__ import annotations

import re
from collections.abc import Collection, Iterator
from typing import Any

from cerebelum.domain.errors import ExpressionError, Problem, ValidationError
from cerebelum.domain.execution import Versioning
from cerebelum.domain.limits import Limits, configured
from cerebelum.domain.names import NAME_RE
from cerebelum.domain.nodes import (
    NODE_TYPES,
    ConditionalNode,
    DelayNode,
    FunctionNode,
    MapNode,
    Node,
    ParallelNode,
    RetryPolicy,
    SequentialNode,
    WaitNode,
    WorkflowNode,
)
from cerebelum.domain.ports import CompiledExpression, ExpressionCompiler
from cerebelum.domain.queues import QUEUE_NAME_RE, QUEUE_NAME_RULE
from cerebelum.domain.values import locate_value_problem
from cerebelum.domain.workflow import Edge, Workflow

NODE_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,100}$")
TOP_LEVEL_FIELDS = {
    "name", "version", "entrypoint", "nodes", "edges", "output", "description", "metadata", "timeout_s", "versioning",
    "queue",
}
SIGNAL_NAME_RE = NAME_RE  # signals, like workflows, schedules and queues, are named by one rule
EDGE_FIELDS = {"from", "to", "when", "max_iterations", "on"}
EDGE_ON = ("success", "error")
EXCEPTION_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")


def read_workflow(
    document: Any,
    compiler: ExpressionCompiler,
    handler_names: Collection[str] | None = None,
    limits: Limits | None = None,
) -> Workflow:
    """Return the compiled Workflow, or raise ValidationError with every problem.

    `handler_names`, when given, are the registered handlers: a function node
    naming another one is a problem. When None, handlers are not checked here
    (an unknown one fails its node at run time). `limits` default to the
    process's (`limits.configured()`); the Workflow carries them.
    """
    reader = _Reader(compiler, handler_names, limits or configured())
    workflow = reader.read(document)
    if reader.problems or workflow is None:
        raise ValidationError(reader.problems)
    return workflow


def validate_document(
    document: Any, compiler: ExpressionCompiler, handler_names: Collection[str] | None = None, limits: Limits | None = None
) -> list[Problem]:
    """Every problem of `document`; an empty list when it is valid."""
    try:
        read_workflow(document, compiler, handler_names, limits)
    except ValidationError as error:
        return error.problems
    return []


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


class _Reader:
    def __init__(self, compiler: ExpressionCompiler, handler_names: Collection[str] | None, limits: Limits) -> None:
        self.compiler = compiler
        self.handler_names = handler_names
        self.limits = limits
        self.problems: list[Problem] = []
        self.node_count = 0
        self.depth = 0  # of inline nodes being read

    def problem(self, location: str, message: str) -> None:
        self.problems.append(Problem(location, message))

    def expression(self, source: Any, location: str) -> CompiledExpression | None:
        if not isinstance(source, str) or not source.strip():
            self.problem(location, "must be a non-empty CEL expression string")
            return None
        try:
            return self.compiler.compile(source)
        except ExpressionError as error:
            text = str(error)
            self.problem(location, text if text.startswith("invalid expression") else f"invalid expression: {text}")
            return None

    def number(self, config: dict[str, Any], key: str, location: str, minimum: float, integer: bool = False) -> Any:
        value = config.get(key)
        if value is None:
            return None
        ok = _is_int(value) if integer else _is_number(value)
        if not ok or value < minimum:
            kind = "an integer" if integer else "a number"
            self.problem(f"{location}.{key}", f"must be {kind} >= {minimum:g}")
            return None
        return value

    # -- document -------------------------------------------------------

    def read(self, doc: Any) -> Workflow | None:
        if not isinstance(doc, dict):
            self.problem("(document)", "a workflow definition must be a JSON/YAML object")
            return None
        found = locate_value_problem(doc, self.limits.max_value_depth)
        if found is not None:  # nothing else is read: a deep document must not reach the recursive reader
            where, message = found
            self.problem(where or "(document)", message)
            return None
        for key in doc:
            if key not in TOP_LEVEL_FIELDS:
                self.problem(str(key), "unknown field")
        name = doc.get("name")
        if not isinstance(name, str) or not NAME_RE.match(name):
            self.problem("name", "required: 1-100 characters of [A-Za-z0-9_.-]")
        if "queue" in doc and (not isinstance(doc["queue"], str) or not QUEUE_NAME_RE.match(doc["queue"])):
            self.problem("queue", f"must be a queue name: {QUEUE_NAME_RULE} (executions run on it unless started on another)")
        version = doc.get("version")
        if version is not None and (not _is_int(version) or version < 1):
            self.problem("version", "must be an integer >= 1")
            version = None
        versioning = doc.get("versioning", Versioning.UPGRADE)
        if versioning not in Versioning.ALL:
            self.problem("versioning", f"must be one of {', '.join(repr(v) for v in Versioning.ALL)}, not {versioning!r}")
        nodes = self.read_nodes(doc.get("nodes"))
        entrypoint = doc.get("entrypoint")
        if not isinstance(entrypoint, str) or not entrypoint:
            self.problem("entrypoint", "required: the id of the first node")
        elif isinstance(doc.get("nodes"), dict) and entrypoint not in doc["nodes"]:
            self.problem("entrypoint", f"unknown node '{entrypoint}'")
        raw_nodes = doc.get("nodes")
        node_ids = dict.fromkeys(str(k) for k in raw_nodes) if isinstance(raw_nodes, dict) else {}
        edges = self.read_edges(doc.get("edges", []), node_ids)
        output = self.expression(doc["output"], "output") if "output" in doc else None
        timeout = doc.get("timeout_s")
        if timeout is not None and (not _is_number(timeout) or timeout <= 0):
            self.problem("timeout_s", "must be a number > 0 (seconds the whole execution may take)")
            timeout = None
        raw_map = raw_nodes if isinstance(raw_nodes, dict) else {}
        conditionals = {str(k) for k, v in raw_map.items() if isinstance(v, dict) and v.get("type") == "conditional"}
        self.check_conditionals(conditionals, edges)
        if isinstance(entrypoint, str) and entrypoint in node_ids:
            self.check_reachable(entrypoint, node_ids, edges)
        self.check_cycles(node_ids, edges)
        if self.problems or nodes is None or not isinstance(entrypoint, str) or not isinstance(name, str):
            return None
        return Workflow(
            name=name,
            version=version,
            entrypoint=entrypoint,
            nodes=nodes,
            edges=tuple(edges),
            output=output,
            definition=doc,
            limits=self.limits,
            timeout_s=float(timeout) if timeout is not None else None,
            versioning=versioning,
        )

    def read_nodes(self, raw: Any) -> dict[str, Node] | None:
        if not isinstance(raw, dict) or not raw:
            self.problem("nodes", "required: an object mapping node ids to nodes, with at least one node")
            return None
        nodes: dict[str, Node] = {}
        for node_id, spec in raw.items():
            location = f"nodes.{node_id}"
            if not NODE_ID_RE.match(str(node_id)):
                self.problem(location, "node ids are 1-100 characters of [A-Za-z0-9_-]")
            if self.node_count > self.limits.max_nodes:
                break
            node = self.read_node(spec, location, top_level=True)
            if node is not None:
                nodes[str(node_id)] = node
        return nodes

    def read_node(self, spec: Any, location: str, top_level: bool = False) -> Node | None:
        self.node_count += 1
        if self.node_count == self.limits.max_nodes + 1:
            self.problem(location, f"the definition has more than {self.limits.max_nodes} nodes (inline nodes included)")
        if self.node_count > self.limits.max_nodes:
            return None
        if not top_level and self.depth >= self.limits.max_node_depth:
            self.problem(location, f"inline nodes are nested more than {self.limits.max_node_depth} levels deep")
            return None
        self.depth += 0 if top_level else 1
        try:
            return self.read_node_spec(spec, location, top_level)
        finally:
            self.depth -= 0 if top_level else 1

    def read_node_spec(self, spec: Any, location: str, top_level: bool) -> Node | None:
        if not isinstance(spec, dict):
            self.problem(location, "a node must be an object with 'type' and 'config'")
            return None
        for key in spec:
            if key not in ("type", "config", "description"):
                self.problem(f"{location}.{key}", "unknown field")
        node_type = spec.get("type")
        if node_type not in NODE_TYPES:
            self.problem(f"{location}.type", f"unknown node type {node_type!r}; expected one of {', '.join(NODE_TYPES)}")
            return None
        config = spec.get("config", {})
        if not isinstance(config, dict):
            self.problem(f"{location}.config", "must be an object")
            return None
        where = f"{location}.config"
        if node_type == "function":
            return self.read_function(config, where)
        if node_type == "conditional":
            if not top_level:
                self.problem(location, "conditional nodes route by edges, so they are only allowed at top level")
            self.no_extra_keys(config, set(), where)
            return ConditionalNode(location=location)
        if node_type == "parallel":
            return self.read_parallel(config, where)
        if node_type == "map":
            return self.read_map(config, where)
        if node_type == "sequential":
            return self.read_sequential(config, where)
        if node_type == "wait":
            return self.read_wait(config, where)
        if node_type == "workflow":
            return self.read_workflow_node(config, where)
        return self.read_delay(config, where)

    def no_extra_keys(self, config: dict[str, Any], allowed: set[str], where: str) -> None:
        for key in config:
            if key not in allowed:
                self.problem(f"{where}.{key}", "unknown config field")

    def read_function(self, config: dict[str, Any], where: str) -> Node | None:
        self.no_extra_keys(config, {"handler", "input", "retry", "timeout_s"}, where)
        handler = config.get("handler")
        if not isinstance(handler, str) or not handler:
            self.problem(f"{where}.handler", "required: the name of a registered handler")
        elif self.handler_names is not None and handler not in self.handler_names:
            self.problem(f"{where}.handler", f"unknown handler '{handler}'")
        input_expr = self.expression(config["input"], f"{where}.input") if "input" in config else None
        retry = self.read_retry(config.get("retry"), f"{where}.retry")
        timeout = self.number(config, "timeout_s", where, minimum=0.001)
        if not isinstance(handler, str):
            return None
        return FunctionNode(handler=handler, input=input_expr, retry=retry, timeout_s=timeout, location=where[:-7])

    def read_retry(self, raw: Any, where: str) -> RetryPolicy:
        if raw is None:
            return RetryPolicy()
        if not isinstance(raw, dict):
            self.problem(where, "must be an object")
            return RetryPolicy()
        self.no_extra_keys(raw, {"max_attempts", "initial_interval_s", "backoff", "max_interval_s", "non_retryable"}, where)
        attempts = self.number(raw, "max_attempts", where, minimum=1, integer=True)
        final = self.exception_names(raw.get("non_retryable"), f"{where}.non_retryable")
        initial = self.number(raw, "initial_interval_s", where, minimum=0)
        backoff = self.number(raw, "backoff", where, minimum=1)
        cap = self.number(raw, "max_interval_s", where, minimum=0)
        return RetryPolicy(
            max_attempts=attempts or 1,
            initial_interval_s=1.0 if initial is None else float(initial),
            backoff=2.0 if backoff is None else float(backoff),
            max_interval_s=None if cap is None else float(cap),
            non_retryable=final,
        )

    def exception_names(self, raw: Any, where: str) -> tuple[str, ...]:
        """`retry.non_retryable`: exception class names, plain or dotted (`myapp.errors.Declined`)."""
        if raw is None:
            return ()
        if not isinstance(raw, list):
            self.problem(where, "must be a list of exception class names, e.g. [\"ValueError\", \"myapp.errors.Declined\"]")
            return ()
        names: list[str] = []
        for i, name in enumerate(raw):
            if not isinstance(name, str) or not EXCEPTION_NAME_RE.match(name):
                expected = "an exception class name such as ValueError or myapp.errors.Declined"
                self.problem(f"{where}[{i}]", f"must be {expected}, got {name!r}")
            else:
                names.append(name)
        return tuple(names)

    def read_parallel(self, config: dict[str, Any], where: str) -> Node | None:
        self.no_extra_keys(config, {"branches", "max_concurrency"}, where)
        raw = config.get("branches")
        concurrency = self.number(config, "max_concurrency", where, minimum=0, integer=True)
        if not isinstance(raw, dict) or not raw:
            self.problem(f"{where}.branches", "required: an object mapping branch names to nodes")
            return None
        branches: list[tuple[str, Node]] = []
        for name, spec in raw.items():
            location = f"{where}.branches.{name}"
            if not NODE_ID_RE.match(str(name)):
                self.problem(location, "branch names are 1-100 characters of [A-Za-z0-9_-]")
            node = self.read_node(spec, location)
            if node is not None:
                branches.append((str(name), node))
        return ParallelNode(branches=tuple(branches), max_concurrency=concurrency or 0, location=where[:-7])

    def read_map(self, config: dict[str, Any], where: str) -> Node | None:
        self.no_extra_keys(config, {"items", "node", "max_concurrency"}, where)
        items = self.expression(config.get("items"), f"{where}.items")
        if "node" not in config:
            self.problem(f"{where}.node", "required: the node to run for each item")
            inner = None
        else:
            inner = self.read_node(config["node"], f"{where}.node")
        concurrency = self.number(config, "max_concurrency", where, minimum=0, integer=True)
        if items is None or inner is None:
            return None
        return MapNode(
            items=items,
            node=inner,
            max_concurrency=10 if concurrency is None else concurrency,
            location=where[:-7],
        )

    def read_sequential(self, config: dict[str, Any], where: str) -> Node | None:
        self.no_extra_keys(config, {"steps"}, where)
        raw = config.get("steps")
        if not isinstance(raw, list) or not raw:
            self.problem(f"{where}.steps", "required: a non-empty list of nodes")
            return None
        steps = [self.read_node(spec, f"{where}.steps[{i}]") for i, spec in enumerate(raw)]
        if any(step is None for step in steps):
            return None
        return SequentialNode(steps=tuple(s for s in steps if s is not None), location=where[:-7])

    def read_delay(self, config: dict[str, Any], where: str) -> Node | None:
        self.no_extra_keys(config, {"seconds", "until"}, where)
        if ("seconds" in config) == ("until" in config):
            self.problem(where, "a delay needs exactly one of 'seconds' or 'until'")
            return None
        if "seconds" in config:
            seconds = config["seconds"]
            if not _is_number(seconds) or seconds < 0:
                self.problem(f"{where}.seconds", "must be a number >= 0")
                return None
            return DelayNode(seconds=float(seconds), location=where[:-7])
        until = self.expression(config["until"], f"{where}.until")
        return DelayNode(until=until, location=where[:-7]) if until is not None else None

    def read_workflow_node(self, config: dict[str, Any], where: str) -> Node | None:
        self.no_extra_keys(config, {"workflow", "version", "input"}, where)
        name = config.get("workflow")
        if not isinstance(name, str) or not NAME_RE.match(name):
            self.problem(f"{where}.workflow", "required: a stored workflow's name, 1-100 characters of [A-Za-z0-9_.-]")
            name = None
        version = config.get("version")
        if version is not None and (not _is_int(version) or version < 1):
            self.problem(f"{where}.version", "must be an integer >= 1 (omit it for the latest version)")
            version = None
        input_expr = self.expression(config["input"], f"{where}.input") if "input" in config else None
        if name is None:
            return None
        return WorkflowNode(workflow=name, version=version, input=input_expr, location=where[:-7])

    def read_wait(self, config: dict[str, Any], where: str) -> Node | None:
        self.no_extra_keys(config, {"signal", "timeout_s"}, where)
        signal = config.get("signal")
        if not isinstance(signal, str) or not SIGNAL_NAME_RE.match(signal):
            self.problem(f"{where}.signal", "required: the signal's name, 1-100 characters of [A-Za-z0-9_.-]")
            signal = None
        timeout = config.get("timeout_s")
        if timeout is not None and (not _is_number(timeout) or timeout <= 0):
            self.problem(f"{where}.timeout_s", "must be a number > 0")
            return None
        if signal is None:
            return None
        return WaitNode(signal=signal, timeout_s=float(timeout) if timeout is not None else None, location=where[:-7])

    # -- edges and graph ------------------------------------------------

    def read_edges(self, raw: Any, nodes: Collection[str]) -> list[Edge]:
        if not isinstance(raw, list):
            self.problem("edges", "must be a list of {from, to, when?, max_iterations?, on?}")
            return []
        edges: list[Edge] = []
        for i, spec in enumerate(raw):
            where = f"edges[{i}]"
            if not isinstance(spec, dict):
                self.problem(where, "an edge must be an object")
                continue
            self.no_extra_keys(spec, EDGE_FIELDS, where)
            ends = []
            for key in ("from", "to"):
                value = spec.get(key)
                if not isinstance(value, str):
                    self.problem(f"{where}.{key}", "required: a node id")
                elif value not in nodes:
                    self.problem(f"{where}.{key}", f"unknown node '{value}'")
                ends.append(value)
            when = self.expression(spec["when"], f"{where}.when") if "when" in spec else None
            limit = self.number(spec, "max_iterations", where, minimum=1, integer=True)
            on = spec.get("on", "success")
            if on not in EDGE_ON:
                self.problem(f"{where}.on", f"must be 'success' or 'error', got {on!r}")
                on = "success"
            source, target = ends
            if isinstance(source, str) and isinstance(target, str):
                edges.append(Edge(i, source, target, when, limit, on))
        return edges

    def check_conditionals(self, conditionals: set[str], edges: list[Edge]) -> None:
        for node_id in sorted(conditionals):
            count = sum(1 for e in edges if e.source == node_id and e.on == "success")
            if count < 2:
                self.problem(f"nodes.{node_id}", f"a conditional needs at least 2 outgoing edges, has {count}")

    def check_reachable(self, entrypoint: str, nodes: Collection[str], edges: list[Edge]) -> None:
        seen = {entrypoint}
        frontier = [entrypoint]
        while frontier:
            current = frontier.pop()
            for edge in edges:
                if edge.source == current and edge.target not in seen:
                    seen.add(edge.target)
                    frontier.append(edge.target)
        for node_id in nodes:
            if node_id not in seen:
                self.problem(f"nodes.{node_id}", f"unreachable from entrypoint '{entrypoint}'")

    def check_cycles(self, nodes: Collection[str], edges: list[Edge]) -> None:
        """Report each cycle made only of unbounded edges, at an edge that closes it."""
        unbounded: dict[str, list[Edge]] = {}
        for edge in edges:
            if edge.max_iterations is None:
                unbounded.setdefault(edge.source, []).append(edge)
        state: dict[str, int] = {}  # 1 = on the DFS stack, 2 = finished
        stack: list[str] = []

        def visit(root: str) -> None:  # depth-first, iterative: a long chain must not exhaust the stack
            state[root] = 1
            stack.append(root)
            pending: list[Iterator[Edge]] = [iter(unbounded.get(root, []))]
            while pending:
                edge = next(pending[-1], None)
                if edge is None:
                    pending.pop()
                    state[stack.pop()] = 2
                    continue
                mark = state.get(edge.target)
                if mark == 1:
                    cycle = [*stack[stack.index(edge.target) :], edge.target]
                    self.problem(
                        f"edges[{edge.index}]",
                        f"cycle {' -> '.join(cycle)} has no edge with max_iterations",
                    )
                elif mark is None:
                    state[edge.target] = 1
                    stack.append(edge.target)
                    pending.append(iter(unbounded.get(edge.target, [])))

        for node_id in nodes:
            if node_id not in state:
                visit(node_id)
