"""Support of the hostile-input tests (core half; imported by its test files,
not a conftest, so the HTTP half keeps its own): limits set through the
environment, as an operator sets them, for the duration of one test."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from cerebelum.domain.limits import ENV, configured


def limits_setter(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., None]]:
    """For a fixture: yields set(max_map_items=5, ...), which sets CEREBELUM_*
    variables re-read by `configured()`; all are undone afterwards."""

    def apply(**values: int) -> None:
        for name, value in values.items():
            monkeypatch.setenv(ENV[name], str(value))
        configured.cache_clear()

    yield apply
    monkeypatch.undo()
    configured.cache_clear()
