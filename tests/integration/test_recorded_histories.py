"""The CI recipe of docs/histories.md, applied to this repository: the bundles in
tests/histories/ were exported from runs of the examples, and must keep
replaying strictly against the examples' handlers."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import pytest

import cerebelum
from cerebelum.application.handlers import default_registry
from cerebelum.testing import replay_bundle

ROOT = Path(__file__).resolve().parents[2]
HISTORIES = ROOT / "tests" / "histories"


@pytest.fixture(autouse=True)
def default_registry_restored() -> Iterator[None]:
    """Importing the examples' handlers registers them in the process's default registry,
    as `@cerebelum.handler` does for users: put it back as it was for the tests after these."""
    before = dict(default_registry._handlers)
    yield
    default_registry._handlers.clear()
    default_registry._handlers.update(before)


@pytest.mark.parametrize("name", ["approval", "order", "expense"])
def test_recorded_histories_replay_strictly_with_the_examples_handlers(name: str) -> None:
    report = replay_bundle(HISTORIES / f"{name}.json", ROOT / "examples" / name / "handlers.py")
    assert report.identical and report.strict
    assert report.checked == len(HISTORIES.joinpath(f"{name}.json").read_text().split('"sequence"')) - 1


def test_a_changed_handler_makes_strict_replay_fail_with_the_divergence() -> None:
    registry = cerebelum.HandlerRegistry()
    spec = importlib.util.spec_from_file_location("recorded_approval_handlers", ROOT / "examples" / "approval" / "handlers.py")
    assert spec is not None and spec.loader is not None
    with mock.patch.object(cerebelum, "handler", registry.handler):  # a module of its own, into a registry of its own
        spec.loader.exec_module(importlib.util.module_from_spec(spec))
    handlers: dict[str, Any] = {h.name: h.func for h in registry}
    review = handlers["review_draft"]

    def stricter_review(ctx: Any) -> Any:  # the editor now wants one more revision
        verdict = review(ctx)
        return {**verdict, "approved": verdict["revision"] >= 4}

    with pytest.raises(AssertionError) as caught:
        replay_bundle(HISTORIES / "approval.json", {**handlers, "review_draft": stricter_review})
    message = str(caught.value)
    assert "approval.json" in message and "diverges at sequence" in message
    assert "node review" in message and "different output" in message
    # a refactoring that returns the same outputs still replays
    replay_bundle(HISTORIES / "approval.json", {**handlers, "review_draft": lambda ctx: review(ctx)})
    # and without strict, handlers are not called at all
    replay_bundle(HISTORIES / "approval.json", {}, strict=False)
