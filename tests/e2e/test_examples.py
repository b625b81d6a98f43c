"""End-to-end runs of the examples in examples/ (order, documents, approval, saga, expense).

Each example's handlers.py registers with `@cerebelum.handler(...)`, i.e. into
the module-level default registry. To keep these tests independent of other
tests that may register handlers of the same names there, each handlers file
is imported exactly once, under a unique module name, with `cerebelum.handler`
pointed at a fresh `HandlerRegistry` for the duration of the import.

Every run uses the in-memory store and virtual time, so sleeps, retries'
backoff and the order example's 2-second delay take no time.
"""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import subprocess
import sys
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
import yaml

import cerebelum
from cerebelum.domain.events import parse_rfc3339

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
DEFINITIONS = {
    "order": "workflow.json",
    "documents": "workflow.yaml",
    "approval": "workflow.json",
    "saga": "workflow.json",
}
_registries: dict[str, cerebelum.HandlerRegistry] = {}


# -- helpers ------------------------------------------------------------------


def handlers_of(example: str) -> cerebelum.HandlerRegistry:
    """The example's handlers, imported once into a registry of their own."""
    if example not in _registries:
        registry = cerebelum.HandlerRegistry()
        spec = importlib.util.spec_from_file_location(f"cerebelum_example_{example}_handlers", EXAMPLES / example / "handlers.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        with mock.patch.object(cerebelum, "handler", registry.handler):
            spec.loader.exec_module(module)
        _registries[example] = registry
    return _registries[example]


def definition_of(example: str) -> dict[str, Any]:
    path = EXAMPLES / example / DEFINITIONS[example]
    text = path.read_text()
    return yaml.safe_load(text) if path.suffix == ".yaml" else json.loads(text)


def input_of(example: str, name: str = "input.json") -> Any:
    return json.loads((EXAMPLES / example / name).read_text())


def run(example: str, input: Any, **options: Any) -> tuple[cerebelum.Execution, list[cerebelum.Event]]:
    """Run the example to its end; check the log's shape; return the execution and its events."""
    with cerebelum.Engine("memory://", handlers=handlers_of(example), virtual_time=True) as engine:
        execution = engine.run(definition_of(example), input, **options)
        events = engine.events(execution.id)
    assert_well_formed(events)
    return execution, events


def assert_well_formed(events: list[cerebelum.Event]) -> None:
    assert [e.sequence for e in events] == list(range(len(events)))
    assert events[0].type == "execution_started"
    assert events[-1].type in ("execution_completed", "execution_failed")
    assert sum(e.type in ("execution_completed", "execution_failed") for e in events) == 1


def of(events: list[cerebelum.Event], type_: str, node: str | None = None) -> list[cerebelum.Event]:
    return [e for e in events if e.type == type_ and (node is None or e.node_id == node)]


def edges_taken(events: list[cerebelum.Event]) -> Counter[int]:
    return Counter(e.payload["edge"] for e in of(events, "edge_taken"))


def started_nodes(events: list[cerebelum.Event]) -> set[str]:
    return {e.node_id for e in of(events, "node_started") if e.node_id is not None}


# -- all examples ---------------------------------------------------------------


@pytest.mark.parametrize("example", sorted(DEFINITIONS))
def test_example_definitions_are_valid(example: str) -> None:
    with cerebelum.Engine("memory://", handlers=handlers_of(example), virtual_time=True) as engine:
        assert engine.validate(definition_of(example)) == []


@pytest.mark.parametrize("example", sorted(DEFINITIONS))
def test_example_readme_has_the_run_command(example: str) -> None:
    command = (
        f"cerebelum run examples/{example}/{DEFINITIONS[example]} "
        f"--handlers examples/{example}/handlers.py --input @examples/{example}/input.json"
    )
    assert command in (EXAMPLES / example / "README.md").read_text()
    assert command in (EXAMPLES / "README.md").read_text()


# -- order ------------------------------------------------------------------------


def test_order_big_goes_through_review_and_ships_every_item() -> None:
    order = input_of("order")
    execution, events = run("order", order)

    assert execution.status == "completed", execution.error
    out = execution.output
    assert out["status"] == "fulfilled"
    assert out["order_id"] == order["order_id"]
    assert out["total"] == pytest.approx(1553.3)
    assert out["reviewed"] is True
    assert out["notified"] == ["email", "sms"]
    assert out["charge_id"].startswith("ch_")
    tracking = out["tracking_numbers"]
    assert len(tracking) == len(order["items"]) == 5
    assert len(set(tracking)) == 5
    assert all(t.split("-")[0] in ("DHL", "UPS", "GLS") for t in tracking)

    # route -> review (edge 1), review -> charge (edge 3); never route -> charge (edge 2)
    taken = edges_taken(events)
    assert taken[1] == 1 and taken[3] == 1 and taken[2] == 0
    assert len(of(events, "node_completed", "review")) == 1
    assert "reject" not in started_nodes(events)

    # exactly-once intent: the charge carries this node run's idempotency key
    (charge,) = of(events, "node_completed", "charge")
    assert charge.payload["output"]["idempotency_key"] == f"{execution.id}/charge/1"
    assert charge.payload["output"]["amount"] == pytest.approx(1553.3)

    # one completion per map item, in item order in the map's output, at most 4 at a time
    for i, item in enumerate(order["items"]):
        (done,) = of(events, "node_completed", f"ship[{i}]")
        assert done.payload["output"]["sku"] == item["sku"]
        assert done.payload["output"]["tracking_number"] == tracking[i]
    (ship,) = of(events, "node_completed", "ship")
    assert [s["sku"] for s in ship.payload["output"]] == [item["sku"] for item in order["items"]]
    running = peak = 0
    for e in events:
        if e.node_id and e.node_id.startswith("ship["):
            running += {"node_started": 1, "node_completed": -1}.get(e.type, 0)
            peak = max(peak, running)
    assert peak == 4

    # one completion per parallel branch; the sms branch waited 2 (virtual) seconds
    for path in ("notify.email", "notify.sms", "notify.sms[0]", "notify.sms[1]", "notify"):
        assert len(of(events, "node_completed", path)) == 1, path
    (timer,) = of(events, "timer_started", "notify.sms[0]")
    (delay_start,) = of(events, "node_started", "notify.sms[0]")
    waited = parse_rfc3339(timer.payload["fires_at"]) - parse_rfc3339(delay_start.payload["clock"])
    assert waited == timedelta(seconds=2)
    assert len(of(events, "timer_fired", "notify.sms[0]")) == 1
    (notify,) = of(events, "node_completed", "notify")
    assert set(notify.payload["output"]) == {"email", "sms"}
    assert notify.payload["output"]["email"]["to"] == order["customer"]["email"]
    assert notify.payload["output"]["sms"]["to"] == order["customer"]["phone"]

    assert events[-1].type == "execution_completed"
    assert events[-1].payload["output"] == out


def test_order_small_skips_review() -> None:
    order = input_of("order", "input_small.json")
    execution, events = run("order", order)

    assert execution.status == "completed", execution.error
    assert execution.output["status"] == "fulfilled"
    assert execution.output["total"] == pytest.approx(68.0)
    assert execution.output["reviewed"] is False
    assert len(execution.output["tracking_numbers"]) == 2
    assert edges_taken(events)[2] == 1  # route -> charge
    assert "review" not in started_nodes(events)
    assert {f"ship[{i}]" for i in range(2)} <= started_nodes(events)
    assert len(of(events, "node_completed", "notify")) == 1


def test_order_refused_by_review_is_never_charged() -> None:
    order = input_of("order")
    order["customer"]["account_age_days"] = 3
    execution, events = run("order", order)

    assert execution.status == "completed", execution.error
    assert execution.output["status"] == "rejected"
    assert "only 3 days old" in execution.output["reason"]
    assert edges_taken(events)[4] == 1  # review -> reject
    assert started_nodes(events).isdisjoint({"charge", "ship", "notify"})


def test_order_is_deterministic_for_a_seed() -> None:
    first, _ = run("order", input_of("order"), seed=42)
    second, _ = run("order", input_of("order"), seed=42)
    assert first.id != second.id
    assert first.output["tracking_numbers"] == second.output["tracking_numbers"]
    assert first.output["charge_id"] == second.output["charge_id"]


# -- documents (YAML) ----------------------------------------------------------


def test_documents_extract_fails_once_then_succeeds_on_retry() -> None:
    execution, events = run("documents", input_of("documents"))

    assert execution.status == "completed", execution.error
    out = execution.output
    assert out["document_id"] == "DOC-7731"
    assert out["pages"] == 5
    assert out["ocr_attempts"] == 2
    assert out["kinds"] == ["delivery_note", "invoice_header", "line_items", "other", "payment_terms"]
    assert out["summary"].startswith("invoice DOC-7731: 5 pages")

    failed = of(events, "attempt_failed")
    assert len(failed) == 1
    (failure,) = failed
    assert failure.node_id == "extract"
    assert failure.payload["attempt"] == 1
    assert failure.payload["error"]["kind"] == "handler_error"
    assert "ConnectionError: OCR service unavailable" in failure.payload["error"]["message"]
    # the retry is due initial_interval_s (0.2 s) after the failed attempt ended
    due = parse_rfc3339(failure.payload["retry_at"]) - parse_rfc3339(failure.payload["clock"])
    assert due == timedelta(seconds=0.2)

    (completed,) = of(events, "node_completed", "extract")
    assert completed.payload["attempt"] == 2
    assert completed.sequence > failure.sequence
    assert of(events, "node_failed") == []

    for page in range(5):
        assert len(of(events, "node_completed", f"classify[{page}]")) == 1
    (summary,) = of(events, "node_completed", "summarise")
    assert summary.payload["output"]["words"] == 82


# -- approval loop ----------------------------------------------------------------

LOOP_EDGE, PUBLISH_EDGE, ESCALATE_EDGE = 3, 2, 4  # indexes in examples/approval/workflow.json


def test_approval_loop_publishes_the_third_revision() -> None:
    definition = definition_of("approval")
    assert definition["edges"][LOOP_EDGE] == {
        "from": "decide",
        "to": "revise",
        "when": "!data.approved",
        "max_iterations": 5,
    }
    execution, events = run("approval", input_of("approval"))

    assert execution.status == "completed", execution.error
    out = execution.output
    assert {k: out[k] for k in ("status", "revision", "reviews")} == {"status": "published", "revision": 3, "reviews": 4}
    assert re.fullmatch(r"https://blog\.example\.com/\d{4}/\d{2}/durable-workflows-without-the-ceremony", out["url"])
    taken = edges_taken(events)
    assert taken[LOOP_EDGE] == 3
    assert taken[PUBLISH_EDGE] == 1
    assert taken[ESCALATE_EDGE] == 0
    loop = [e for e in of(events, "edge_taken") if e.payload["edge"] == LOOP_EDGE]
    assert [e.payload["iteration"] for e in loop] == [1, 2, 3]
    assert [e.payload["run"] for e in of(events, "node_started", "review")] == [1, 2, 3, 4]
    reviews = [e.payload["output"] for e in of(events, "node_completed", "review")]
    assert [r["approved"] for r in reviews] == [False, False, False, True]
    assert [r["revision"] for r in reviews] == [0, 1, 2, 3]
    (published,) = of(events, "node_completed", "publish")
    assert published.payload["output"]["revision"] == 3
    assert "escalate" not in started_nodes(events)


def test_approval_loop_escalates_when_exhausted() -> None:
    execution, events = run("approval", {**input_of("approval"), "approve_at_revision": 10})

    assert execution.status == "completed", execution.error
    assert execution.output == {"status": "escalated", "to": "editor-in-chief", "revision": 5, "reviews": 6}
    taken = edges_taken(events)
    assert taken[LOOP_EDGE] == 5  # max_iterations
    assert taken[ESCALATE_EDGE] == 1
    assert taken[PUBLISH_EDGE] == 0
    assert len(of(events, "node_completed", "revise")) == 5
    assert "publish" not in started_nodes(events)


def test_approval_loop_without_max_iterations_is_rejected() -> None:
    definition = definition_of("approval")
    del definition["edges"][LOOP_EDGE]["max_iterations"]
    with cerebelum.Engine("memory://", handlers=handlers_of("approval"), virtual_time=True) as engine:
        problems = engine.validate(definition)
    assert problems, "an unbounded cycle must not validate"
    assert any("cycle" in p.message and "review" in p.message for p in problems), problems


# -- through the CLI (YAML loading) ------------------------------------------------


def test_documents_yaml_runs_through_the_cli(tmp_path: Path) -> None:
    cli = shutil.which("cerebelum", path=str(Path(sys.executable).parent)) or shutil.which("cerebelum")
    assert cli is not None, "the cerebelum command must be installed (make test installs it)"
    command = [
        cli,
        "--db",
        f"sqlite:///{tmp_path / 'cli.db'}",
        "run",
        "examples/documents/workflow.yaml",
        "--handlers",
        "examples/documents/handlers.py",
        "--input",
        "@examples/documents/input.json",
        "--virtual-time",
        "--json",
    ]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["status"] == "completed"
    assert result["workflow"] == "document_pipeline"
    assert result["output"]["ocr_attempts"] == 2
    assert result["output"]["pages"] == 5


# -- saga: error edges lead to compensations ------------------------------------


def test_saga_full_flight_refunds_the_card_and_cancels_the_hotel() -> None:
    execution, events = run("saga", input_of("saga"))
    assert execution.status == "completed", execution.error
    ran = [e.node_id for e in events if e.type == "node_completed"]
    assert ran == ["reserve_hotel", "charge_card", "refund_card", "cancel_hotel"]
    assert execution.output["booked"] is False
    assert execution.output["undone"]["because"] == "NonRetryable: flight XY123 is full"
    failed = [e for e in events if e.type == "attempt_failed" and e.node_id == "book_flight"]
    assert len(failed) == 1  # non-retryable: one attempt
    routes = [(e.payload["to"], e.payload.get("on")) for e in events if e.type == "edge_taken"]
    assert routes == [("charge_card", None), ("book_flight", None), ("refund_card", "error"), ("cancel_hotel", None)]


def test_saga_declined_card_is_not_retried_and_only_the_hotel_is_cancelled() -> None:
    execution, events = run("saga", {**input_of("saga"), "card": "4000000000000000"})
    assert execution.status == "completed", execution.error
    ran = [e.node_id for e in events if e.type == "node_completed"]
    assert ran == ["reserve_hotel", "cancel_hotel"]
    assert len([e for e in events if e.type == "attempt_failed"]) == 1
    assert "declined" in execution.output["undone"]["because"]


def test_saga_that_works_books_the_trip() -> None:
    execution, _ = run("saga", {**input_of("saga"), "flight_full": False})
    assert execution.status == "completed" and execution.output["booked"] is True
    assert execution.output["ticket"].startswith("T-")


def test_expense_is_paid_when_the_manager_approves() -> None:
    with cerebelum.Engine("memory://", handlers=handlers_of("expense"), workers=2) as engine:
        doc = json.loads((EXAMPLES / "expense" / "workflow.json").read_text())
        engine.create_workflow(doc)
        execution = engine.execute("expense_approval", json.loads((EXAMPLES / "expense" / "input.json").read_text()))
        engine.signal(execution.id, "manager_decision", {"approved": True, "by": "lee"})
        done = engine.wait(execution.id, timeout=15)
        assert done.status == "completed", done.error
        assert done.output["paid"] == 120.5 and done.output["approved_by"] == "lee"
        assert engine.replay(done.id, strict=True).identical


def test_expense_escalates_to_the_director_after_two_days_in_virtual_time() -> None:
    """In virtual time the clock jumps to the next timer as soon as nothing else can
    happen: the manager's two days pass at once, and so would the week's deadline while
    the director's wait has nothing to take, so the director decides ahead (kept until read)."""
    with cerebelum.Engine("memory://", handlers=handlers_of("expense"), workers=2) as engine:
        doc = json.loads((EXAMPLES / "expense" / "workflow.json").read_text())
        engine.create_workflow(doc)
        execution = engine.execute("expense_approval", {"employee": "bo", "amount": 80}, virtual_time=True)
        engine.signal(execution.id, "director_decision", {"approved": False, "by": "dee", "reason": "no receipt"})
        done = engine.wait(execution.id, timeout=15)
        assert done.status == "completed", done.error
        assert done.output == {"rejected": done.output["rejected"], "by": "dee", "reason": "no receipt"}
        log = engine.events(done.id)
        escalated = next(e for e in log if e.type == "edge_taken" and e.payload.get("on") == "error")
        assert escalated.payload["error"]["kind"] == "timeout" and escalated.payload["to"] == "escalate"
        [fired] = [e for e in log if e.type == "timer_fired"]
        started = next(e for e in log if e.type == "node_started" and e.node_id == "escalate")
        assert started.payload["clock"] == fired.payload["clock"]  # two days later on the execution's clock
        assert engine.replay(done.id).identical
