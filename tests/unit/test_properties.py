"""Property-based tests: random valid workflows run, fold and round-trip consistently."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from hypothesis import HealthCheck, Phase, assume, given, settings
from hypothesis import strategies as st

import cerebelum
from cerebelum.domain.errors import Problem
from cerebelum.domain.events import Event, EventType
from cerebelum.domain.nodes import ConditionalNode, DelayNode, FunctionNode, MapNode, Node, ParallelNode, SequentialNode
from cerebelum.domain.orchestrator import decide
from cerebelum.domain.state import ExecutionState, apply, fold
from cerebelum.domain.validation import read_workflow, validate_document
from cerebelum.domain.workflow import Workflow
from cerebelum.infrastructure.expressions import CelCompiler

COMPILER = CelCompiler()
SETTINGS = settings(
    max_examples=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink],  # no slow "explain" tracing
)

# -- handlers: pure functions of ctx.data, mirrored in Python for the oracle ----------

Data = dict[str, Any]
PURE: dict[str, Callable[[Data], Data]] = {
    "inc": lambda d: {"v": d["v"] + 1, "by": "inc"},
    "double": lambda d: {"v": d["v"] * 2, "by": "double"},
    "mod7": lambda d: {"v": d["v"] % 7, "by": "mod7"},
    "add3": lambda d: {"v": d["v"] + 3, "by": "add3"},
    "five": lambda d: {"v": 5, "by": "five", "was": d["v"]},
}


def make_registry() -> cerebelum.HandlerRegistry:
    registry = cerebelum.HandlerRegistry()
    for name, pure in PURE.items():
        if name in ("double", "five"):

            async def handle_async(ctx: cerebelum.StepContext, pure: Callable[[Data], Data] = pure) -> Data:
                return pure(ctx.data)

            registry.register(name, handle_async)
        else:

            def handle(ctx: cerebelum.StepContext, pure: Callable[[Data], Data] = pure) -> Data:
                return pure(ctx.data)

            registry.register(name, handle)

    def loose(ctx: cerebelum.StepContext) -> Any:
        """Accepts any data: for composite and map nodes."""
        data = ctx.data
        if isinstance(data, dict) and isinstance(data.get("v"), int):
            value = data["v"]
        elif isinstance(data, int) and not isinstance(data, bool):
            value = data
        elif isinstance(data, (list, dict, str)):
            value = len(data)
        else:
            value = 0
        moment = ctx.now()  # recorded; in virtual time it is the execution's clock
        return {"v": value + ctx.randint(0, 3), "late": moment.year > 2100, "i": ctx.index}

    def boom(ctx: cerebelum.StepContext) -> Any:
        if ctx.attempt < 2 and ctx.random() < 0.5:
            raise RuntimeError(f"boom on attempt {ctx.attempt}")
        if ctx.random() < 0.2:
            raise ValueError("boom for good")
        return {"v": ctx.attempt}

    registry.register("loose", loose)
    registry.register("boom", boom)
    return registry


REGISTRY = make_registry()

# -- (a) random DAGs of function and conditional nodes, with a Python oracle --------


@dataclass
class Route:
    target: int
    when: str | None
    holds: Callable[[Data, Data, dict[str, Any]], bool] | None


@dataclass
class Plan:
    """A generated workflow and everything the oracle needs to predict its run."""

    doc: dict[str, Any]
    kinds: list[str]
    handlers: list[str | None]
    inputs: list[tuple[str, Callable[[Data, Data], Data]] | None]
    routes: dict[int, list[tuple[int, Route]]] = field(default_factory=dict)  # node -> [(edge index, route)]
    output: tuple[str, Callable[[Data, Data], Any]] | None = None


@st.composite
def conditions(draw: st.DrawFn, node: int) -> tuple[str, Callable[[Data, Data, dict[str, Any]], bool]]:
    kind = draw(st.sampled_from(["gt", "lt", "even", "input", "has", "and"]))
    k = draw(st.integers(0, 30))
    if kind == "gt":
        return f"data.v > {k}", lambda d, i, r: d["v"] > k
    if kind == "lt":
        return f"data.v < {k}", lambda d, i, r: d["v"] < k
    if kind == "even":
        return "data.v % 2 == 0", lambda d, i, r: d["v"] % 2 == 0
    if kind == "input":
        return f"input.v >= {k}", lambda d, i, r: i["v"] >= k
    other = draw(st.integers(0, node))
    if kind == "has":
        return f"has(results.n{other})", lambda d, i, r: f"n{other}" in r
    return (
        f"has(results.n{other}) && data.v != {k}",
        lambda d, i, r: f"n{other}" in r and d["v"] != k,
    )


INPUT_EXPRESSIONS: list[tuple[str, Callable[[Data, Data], Data]]] = [
    ("{'v': data.v + 1}", lambda d, i: {"v": d["v"] + 1}),
    ("input", lambda d, i: i),
    ("{'v': data.v + input.v}", lambda d, i: {"v": d["v"] + i["v"]}),
]


@st.composite
def dag_plans(draw: st.DrawFn) -> Plan:
    n = draw(st.integers(1, 7))
    kinds = [draw(st.sampled_from(["function", "function", "conditional"])) if i < n - 1 else "function" for i in range(n)]
    targets: dict[int, list[int]] = {i: [] for i in range(n)}
    for j in range(1, n):  # every node has an earlier parent: all reachable
        targets[draw(st.integers(0, j - 1))].append(j)
    for i in range(n - 1):
        targets[i] += draw(st.lists(st.integers(i + 1, n - 1), max_size=2))
        while kinds[i] == "conditional" and len(targets[i]) < 2:
            targets[i].append(draw(st.integers(i + 1, n - 1)))
    handlers: list[str | None] = []
    inputs: list[tuple[str, Callable[[Data, Data], Data]] | None] = []
    nodes: dict[str, Any] = {}
    for i, kind in enumerate(kinds):
        if kind == "conditional":
            handlers.append(None)
            inputs.append(None)
            nodes[f"n{i}"] = {"type": "conditional", "config": {}} if draw(st.booleans()) else {"type": "conditional"}
            continue
        handler = draw(st.sampled_from(sorted(PURE)))
        handlers.append(handler)
        config: dict[str, Any] = {"handler": handler}
        chosen = draw(st.none() | st.sampled_from(INPUT_EXPRESSIONS))
        inputs.append(chosen)
        if chosen is not None:
            config["input"] = chosen[0]
        if draw(st.booleans()):
            config["retry"] = {"max_attempts": draw(st.integers(1, 3)), "initial_interval_s": 0.01}
        nodes[f"n{i}"] = {"type": "function", "config": config}
    plan = Plan({}, kinds, handlers, inputs)
    edges: list[dict[str, Any]] = []
    order = draw(st.permutations(list(range(n))))  # edges of different sources interleave freely
    for i in order:
        outs = draw(st.permutations(targets[i]))
        plan.routes[i] = []
        for position, target in enumerate(outs):
            edge: dict[str, Any] = {"from": f"n{i}", "to": f"n{target}"}
            if position < len(outs) - 1:  # every edge but the last has a condition
                source, holds = draw(conditions(i))
                edge["when"] = source
                route = Route(target, source, holds)
            else:
                route = Route(target, None, None)
            plan.routes[i].append((len(edges), route))
            edges.append(edge)
    doc: dict[str, Any] = {"name": "prop-dag", "entrypoint": "n0", "nodes": nodes, "edges": edges}
    if draw(st.booleans()):
        plan.output = draw(
            st.sampled_from(
                [
                    ("{'last': data.v, 'in': input.v}", lambda d, i: {"last": d["v"], "in": i["v"]}),
                    ("data", lambda d, i: d),
                    ("size(results)", None),
                ]
            )
        )
        doc["output"] = plan.output[0]
    plan.doc = doc
    return plan


def simulate(plan: Plan, inp: Data) -> tuple[list[str], list[int], Any]:
    """What the run must do: the top-level nodes started, edges taken, output."""
    data: Data = inp
    results: dict[str, Any] = {}
    path: list[str] = []
    taken: list[int] = []
    current = 0
    while True:
        path.append(f"n{current}")
        if plan.kinds[current] == "function":
            handler = plan.handlers[current]
            assert handler is not None
            chosen = plan.inputs[current]
            seen = chosen[1](data, inp) if chosen is not None else data
            data = PURE[handler](seen)
        results[f"n{current}"] = data
        routes = plan.routes[current]
        if not routes:
            break
        for index, route in routes:
            if route.holds is None or route.holds(data, inp, results):
                taken.append(index)
                current = route.target
                break
    if plan.output is None:
        output: Any = data
    elif plan.output[1] is None:
        output = len(results)
    else:
        output = plan.output[1](data, inp)
    return path, taken, output


def check_log(log: list[Event], row: cerebelum.Execution) -> ExecutionState:
    """Contiguous from 0, started first, terminal last, and the fold equals the row."""
    assert [e.sequence for e in log] == list(range(len(log)))
    assert log[0].type == EventType.EXECUTION_STARTED
    assert log[-1].type in (EventType.EXECUTION_COMPLETED, EventType.EXECUTION_FAILED)
    terminal = [e for e in log if e.type in (EventType.EXECUTION_COMPLETED, EventType.EXECUTION_FAILED)]
    assert terminal == [log[-1]]
    assert all(e.execution_id == row.id for e in log)
    assert len({e.id for e in log}) == len(log)
    state = fold(log)
    assert state.execution_id == row.id
    assert state.status == row.status
    assert state.output == row.output
    assert state.error == row.error
    assert state.started_at == row.started_at
    assert state.completed_at == row.completed_at
    assert state.sequence == row.last_sequence == len(log) - 1
    assert state.input == row.input
    assert (state.workflow, state.version, state.seed) == (row.workflow, row.version, row.seed)
    return state


@SETTINGS
@given(plan=dag_plans(), value=st.integers(0, 20))
def test_random_dags_run_to_completion_as_predicted(plan: Plan, value: int) -> None:
    inp = {"v": value}
    path, taken, output = simulate(plan, inp)
    with cerebelum.Engine("memory://", handlers=REGISTRY) as engine:
        execution = engine.run(plan.doc, inp)
        assert execution.status == "completed", execution.error
        log = engine.events(execution.id)
        row = engine.status(execution.id)
    assert row == execution
    state = check_log(log, row)
    assert log[-1].type == EventType.EXECUTION_COMPLETED
    assert row.output == output
    assert state.status == "completed"
    started = [e.node_id for e in log if e.type == EventType.NODE_STARTED]
    assert started == path
    assert [e.payload["edge"] for e in log if e.type == EventType.EDGE_TAKEN] == taken
    assert [e.node_id for e in log if e.type == EventType.NODE_COMPLETED] == path
    assert state.results == {node: state.results[node] for node in path}
    assert set(state.results) == set(path)


# -- (b) definitions of every node type: parse -> serialise -> parse ----------------

HANDLER_NAMES = ["inc", "double", "loose", "boom"]
NAMES = st.from_regex(r"[A-Za-z0-9_-]{1,12}", fullmatch=True)


@st.composite
def function_nodes(draw: st.DrawFn, runnable: bool = False) -> dict[str, Any]:
    config: dict[str, Any] = {"handler": draw(st.sampled_from(["loose", "boom"] if runnable else HANDLER_NAMES))}
    if draw(st.booleans()):
        config["retry"] = {
            "max_attempts": draw(st.integers(1, 3)),
            "initial_interval_s": draw(st.sampled_from([0, 0.001, 0.01] if runnable else [0, 0.5, 2])),
            "backoff": draw(st.sampled_from([1, 1.5, 2.0])),
        }
        if draw(st.booleans()):
            config["retry"]["max_interval_s"] = draw(st.sampled_from([0, 1, 10.5]))
    if not runnable and draw(st.booleans()):
        config["timeout_s"] = draw(st.sampled_from([0.001, 1, 30.5]))
    if draw(st.booleans()):
        config["input"] = draw(st.sampled_from(["data", "input", "{'v': size(results)}", "[input, data]"]))
    return {"type": "function", "config": config}


@st.composite
def delay_nodes(draw: st.DrawFn) -> dict[str, Any]:
    if draw(st.booleans()):
        return {"type": "delay", "config": {"seconds": draw(st.sampled_from([0, 1, 2.5, 3600, 86400 * 30]))}}
    return {"type": "delay", "config": {"until": "'2020-01-01T00:00:00Z'"}}


def _inline_nodes(runnable: bool) -> st.SearchStrategy[dict[str, Any]]:
    leaves = function_nodes(runnable) | delay_nodes()

    def composites(children: st.SearchStrategy[dict[str, Any]]) -> st.SearchStrategy[dict[str, Any]]:
        parallel = st.builds(
            lambda branches, limit: {
                "type": "parallel",
                "config": {"branches": branches, **({} if limit is None else {"max_concurrency": limit})},
            },
            st.dictionaries(NAMES, children, min_size=1, max_size=3),
            st.none() | st.integers(0, 3),
        )
        each = st.builds(
            lambda items, node, limit: {
                "type": "map",
                "config": {"items": items, "node": node, **({} if limit is None else {"max_concurrency": limit})},
            },
            st.sampled_from(["[1, 2, 3]", "[input.v, input.v + 1]", "[]", "[data]"]),
            children,
            st.none() | st.integers(0, 2),
        )
        sequential = st.builds(
            lambda steps: {"type": "sequential", "config": {"steps": steps}},
            st.lists(children, min_size=1, max_size=3),
        )
        return parallel | each | sequential

    return st.recursive(leaves, composites, max_leaves=5)


INLINE_NODES = {runnable: _inline_nodes(runnable) for runnable in (False, True)}


@st.composite
def definitions(draw: st.DrawFn, runnable: bool = False) -> dict[str, Any]:
    """Valid definitions: a DAG of any node types, plus bounded back edges (loops)."""
    n = draw(st.integers(1, 5))
    kinds = [draw(st.sampled_from(["inline", "inline", "conditional"])) if i < n - 1 else "inline" for i in range(n)]
    nodes: dict[str, Any] = {}
    for i, kind in enumerate(kinds):
        nodes[f"n{i}"] = {"type": "conditional"} if kind == "conditional" else draw(INLINE_NODES[runnable])
    edges: list[dict[str, Any]] = []
    for i in range(n):
        outs = [j for j in range(i + 1, n) if draw(st.booleans())]
        if i + 1 < n and not any(e["to"] == f"n{i + 1}" for e in edges) and (i + 1) not in outs:
            outs.append(i + 1)  # keep every node reachable
        while kinds[i] == "conditional" and len(outs) < 2:
            outs.append(draw(st.integers(i + 1, n - 1)))
        # a back edge (or self-loop), bounded and tried first; only where a forward edge
        # follows, so that an exhausted loop falls through instead of failing with no_route
        loops = [j for j in range(i + 1) if outs and draw(st.integers(0, 4)) == 0]
        for j in loops:
            edges.append({"from": f"n{i}", "to": f"n{j}", "max_iterations": draw(st.integers(1, 2))})
        for position, j in enumerate(outs):
            edge: dict[str, Any] = {"from": f"n{i}", "to": f"n{j}"}
            if position < len(outs) - 1:
                edge["when"] = draw(
                    st.sampled_from(["input.v > 3", f"has(results.n{i})", "input.v % 2 == 0", "size(results) > 1"])
                )
            edges.append(edge)
    doc: dict[str, Any] = {
        "name": draw(st.from_regex(r"[A-Za-z0-9_.-]{1,20}", fullmatch=True)),
        "entrypoint": "n0",
        "nodes": nodes,
    }
    if edges or draw(st.booleans()):
        doc["edges"] = edges
    if not runnable and draw(st.booleans()):
        doc["version"] = draw(st.integers(1, 1000))
    if draw(st.booleans()):
        doc["output"] = draw(st.sampled_from(["results", "input", "{'n': size(results)}"]))
    if not runnable and draw(st.booleans()):
        # any text a definition may hold: no NUL, no lone surrogate (refused on every backend: limits.md)
        doc["description"] = draw(st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00"), max_size=20))
    return doc


def shape(node: Node) -> Any:
    """A comparable view of a compiled node (expressions by their source)."""

    def src(expr: Any) -> str | None:
        return None if expr is None else expr.source

    if isinstance(node, FunctionNode):
        return ("function", node.handler, src(node.input), node.retry, node.timeout_s, node.location)
    if isinstance(node, ConditionalNode):
        return ("conditional", node.location)
    if isinstance(node, DelayNode):
        return ("delay", node.seconds, src(node.until), node.location)
    if isinstance(node, SequentialNode):
        return ("sequential", tuple(shape(s) for s in node.steps), node.location)
    if isinstance(node, ParallelNode):
        return ("parallel", tuple((k, shape(v)) for k, v in node.branches), node.max_concurrency, node.location)
    assert isinstance(node, MapNode)
    return ("map", src(node.items), shape(node.node), node.max_concurrency, node.location)


def structure(workflow: Workflow) -> Any:
    edges = tuple(
        (e.index, e.source, e.target, None if e.when is None else e.when.source, e.max_iterations) for e in workflow.edges
    )
    nodes = {k: shape(v) for k, v in workflow.nodes.items()}
    output = None if workflow.output is None else workflow.output.source
    return (workflow.name, workflow.version, workflow.entrypoint, list(workflow.nodes), nodes, edges, output)


@SETTINGS
@given(doc=definitions())
def test_parse_serialise_parse_is_the_identity(doc: dict[str, Any]) -> None:
    original = copy.deepcopy(doc)
    first = read_workflow(doc, COMPILER, set(HANDLER_NAMES))
    assert doc == original  # reading does not modify the document
    assert first.definition == original
    text = json.dumps(first.definition)
    second = read_workflow(json.loads(text), COMPILER, set(HANDLER_NAMES))
    assert second.definition == first.definition
    assert structure(second) == structure(first)
    assert json.dumps(second.definition) == text
    assert validate_document(json.loads(text), COMPILER) == []


# -- validation is total: any mutation of a valid document gives problems, never a crash

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 3) | st.floats(-2, 2) | st.sampled_from(["", "n0", "data.", "x y", "input"]),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.sampled_from(["type", "config", "a", "n0"]), children, max_size=3)
    ),
    max_leaves=6,
)


def subtree_paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    paths = [prefix]
    if isinstance(value, dict):
        for key, child in value.items():
            paths += subtree_paths(child, (*prefix, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            paths += subtree_paths(child, (*prefix, index))
    return paths


@SETTINGS
@given(doc=definitions(), data=st.data())
def test_validation_reports_problems_and_never_crashes(doc: dict[str, Any], data: st.DataObject) -> None:
    for _ in range(data.draw(st.integers(1, 3))):
        path = data.draw(st.sampled_from(subtree_paths(doc)))
        replacement = data.draw(JSON_VALUES)
        if not path:
            doc = replacement
            break
        parent = doc
        for key in path[:-1]:
            parent = parent[key]
        parent[path[-1]] = replacement
    found = validate_document(doc, COMPILER, set(HANDLER_NAMES))
    assert all(isinstance(p, Problem) and p.location and p.message for p in found)


# -- (c) every prefix folds; incremental and batch folds agree -------------------------


@SETTINGS
@given(doc=definitions(runnable=True), value=st.integers(0, 9), virtual=st.booleans())
def test_every_prefix_folds_and_incremental_equals_batch(doc: dict[str, Any], value: int, virtual: bool) -> None:
    assume(virtual or "delay" not in json.dumps(doc))  # real-time delays would wait for real
    with cerebelum.Engine("memory://", handlers=REGISTRY, virtual_time=virtual) as engine:
        execution = engine.run(doc, {"v": value})
        log = engine.events(execution.id)
        row = engine.status(execution.id)
        workflow = engine.compiled(engine.get_workflow(row.workflow, row.version))
    final = check_log(log, row)
    if execution.status == "failed":
        assert execution.error is not None
        assert {"kind", "message", "node"} <= set(execution.error)
    incremental = ExecutionState()
    previous_json = incremental.to_json()
    assert fold([]).to_json() == previous_json
    for k in range(1, len(log) + 1):
        previous = incremental
        incremental = apply(previous.copy(), log[k - 1])
        assert previous.to_json() == previous_json  # applying to a copy left the earlier state alone
        batch = fold(log[:k])
        batch_json = batch.to_json()
        previous_json = incremental.to_json()
        assert previous_json == batch_json
        # (the JSON view has millisecond timestamps, so compare JSON, not the states)
        assert ExecutionState.from_json(batch_json).to_json() == batch_json
        decide(workflow, batch)  # every prefix is a state the orchestrator can decide on...
        assert batch == incremental  # ...without changing it
    assert incremental == final
    # a terminal state decides nothing more
    assert decide(workflow, final).events == []


# -- determinism: same seed, same input -> the same events per node path ---------------

TIME_KEYS = frozenset({"clock", "started_at", "fires_at", "retry_at"})


def normalise(value: Any) -> Any:
    """Drop wall-clock-derived values (virtual clocks start at the real time)."""
    if isinstance(value, dict):
        if value.get("op") == "now":
            return {"op": "now"}
        return {k: normalise(v) for k, v in value.items() if k not in TIME_KEYS}
    if isinstance(value, list):
        return [normalise(v) for v in value]
    return value


def per_path(log: list[Event]) -> dict[str | None, list[tuple[str, Any]]]:
    paths: dict[str | None, list[tuple[str, Any]]] = {}
    for event in log:
        paths.setdefault(event.node_id, []).append((event.type, normalise(event.payload)))
    return paths


@settings(SETTINGS, max_examples=30)
@given(doc=definitions(runnable=True), value=st.integers(0, 9), seed=st.integers(0, 2**62))
def test_the_same_seed_gives_the_same_events_per_node_path(doc: dict[str, Any], value: int, seed: int) -> None:
    doc = json.loads(json.dumps(doc).replace('"boom"', '"loose"'))  # fail-fast cancellation depends on timing
    with cerebelum.Engine("memory://", handlers=REGISTRY, virtual_time=True, seed=seed) as engine:
        stored = engine.create_workflow(doc)
        first = engine.run(stored.name, {"v": value}, version=stored.version)
        second = engine.run(stored.name, {"v": value}, version=stored.version)
        logs = [engine.events(first.id), engine.events(second.id)]
    assert first.id != second.id
    assert first.seed == second.seed == seed
    assert (first.status, first.output, first.error) == (second.status, second.output, second.error)
    assert per_path(logs[0]) == per_path(logs[1])
