"""The default code version: a stable hash of the handler modules' source
(the same code anywhere gives the same version), and the `versioning` field."""

from __future__ import annotations

import importlib.util
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

import cerebelum
from cerebelum.application.code_versions import CodeVersion
from cerebelum.application.execute_workflow import InvalidInput
from cerebelum.bootstrap import code_version_of, expression_compiler
from cerebelum.domain.validation import validate_document
from cerebelum.infrastructure.code_version import source_version

SOURCE = '''
def price(ctx):
    return {"total": 10}


def tax(ctx):
    return {"tax": 2}
'''


@pytest.fixture
def load(tmp_path: Path) -> Iterator[Any]:
    """load(dir, text, name): import `text` as module `name` from a file in tmp_path/dir."""
    loaded: list[str] = []

    def load(directory: str, text: str, name: str) -> ModuleType:
        path = tmp_path / directory / f"{name}.py"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(text.encode())
        spec = importlib.util.spec_from_file_location(name, path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        loaded.append(name)
        spec.loader.exec_module(module)
        return module

    yield load
    for name in loaded:
        sys.modules.pop(name, None)


def test_the_same_source_on_other_paths_and_names_gives_the_same_version(load):
    here = load("machine_a/app", SOURCE, "handlers_here")
    there = load("elsewhere/deploy/v7", SOURCE.replace("\n", "\r\n"), "handlers_there")  # a Windows checkout too
    assert source_version([here.price, here.tax]) == source_version([there.tax, there.price])
    assert len(source_version([here.price])) == 16


def test_other_source_gives_another_version(load):
    before = load("a", SOURCE, "handlers_before")
    after = load("b", SOURCE.replace('"total": 10', '"total": 12'), "handlers_after")
    assert source_version([before.price]) != source_version([after.price])
    extra = load("c", "def audit(ctx):\n    return None\n", "handlers_extra")
    assert source_version([before.price]) != source_version([before.price, extra.audit])  # one more module counts


def test_the_version_follows_handlers_registered_after_the_engine_is_built(load):
    registry = cerebelum.HandlerRegistry()
    version = CodeVersion(registry, None, source_version)
    empty = version.current()
    assert empty == "no-handlers"
    module = load("late", SOURCE, "handlers_late")
    registry.register("price", module.price)
    assert version.current() != empty
    assert version.current() == source_version([module.price])
    assert CodeVersion(registry, "release-42", source_version).current() == "release-42"


def test_given_version_wins_over_the_environment_and_bad_ones_are_refused(monkeypatch):
    registry = cerebelum.HandlerRegistry()
    monkeypatch.setenv("CEREBELUM_CODE_VERSION", "from-env")
    assert code_version_of(registry).current() == "from-env"
    assert code_version_of(registry, "given").current() == "given"
    with pytest.raises(InvalidInput, match="code_version"):
        code_version_of(registry, "has spaces")
    monkeypatch.setenv("CEREBELUM_CODE_VERSION", "x" * 65)
    with pytest.raises(InvalidInput, match="CEREBELUM_CODE_VERSION"):
        code_version_of(registry)


def test_hashing_fifty_handler_modules_is_cheap(load):
    """Startup cost, printed (the issue asks under 20 ms for 50 modules); not asserted."""
    funcs = [load("many", SOURCE + f"\nN = {i}\n", f"handlers_many_{i}").price for i in range(50)]
    started = time.perf_counter()
    version = source_version(funcs)
    took = (time.perf_counter() - started) * 1000
    print(f"source_version of 50 modules: {took:.2f} ms")
    assert len({source_version(funcs[:i]) for i in range(1, 51)}) == 50  # every module counts
    assert version == source_version(reversed(funcs))


@pytest.mark.parametrize("value", ["upgrade", "pinned"])
def test_versioning_accepts_upgrade_and_pinned(value: str) -> None:
    document = {"name": "w", "entrypoint": "a", "nodes": {"a": {"type": "delay", "config": {"seconds": 0}}}, "versioning": value}
    assert validate_document(document, expression_compiler()) == []


@pytest.mark.parametrize("value", ["sometimes", "", None, ["pinned"], 1])
def test_any_other_versioning_is_a_located_problem(value: Any) -> None:
    document = {"name": "w", "entrypoint": "a", "nodes": {"a": {"type": "delay", "config": {"seconds": 0}}}, "versioning": value}
    problems = validate_document(document, expression_compiler())
    assert [p.location for p in problems] == ["versioning"]
    assert "'upgrade', 'pinned'" in problems[0].message
