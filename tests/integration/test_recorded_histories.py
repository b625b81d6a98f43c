"""The CI recipe of docs/histories.md, applied to this repository: the bundles in
tests/histories/ were exported from runs of the examples, and must keep
replaying strictly against the examples' handlers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from cerebelum.application.handlers import default_registry
from cerebelum.infrastructure.documents import import_handlers
from cerebelum.testing import replay_bundle

ROOT = Path(__file__).resolve().parents[2]
HISTORIES = ROOT / "tests" / "histories"


@pytest.mark.parametrize("name", ["approval", "order", "expense"])
def test_recorded_histories_replay_strictly_with_the_examples_handlers(name: str) -> None:
    report = replay_bundle(HISTORIES / f"{name}.json", ROOT / "examples" / name / "handlers.py")
    assert report.identical and report.strict
    assert report.checked == len(HISTORIES.joinpath(f"{name}.json").read_text().split('"sequence"')) - 1


def test_a_changed_handler_makes_strict_replay_fail_with_the_divergence() -> None:
    import_handlers(str(ROOT / "examples" / "approval" / "handlers.py"))
    handlers: dict[str, Any] = {h.name: h.func for h in default_registry}
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
