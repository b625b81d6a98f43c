"""Reading definition documents (JSON or YAML) and handler modules from disk."""

from __future__ import annotations

import importlib
import importlib.util
import json
import math
import os
import sys
from pathlib import Path
from typing import Any

import yaml

from cerebelum.domain.errors import CerebelumError


class DocumentError(CerebelumError):
    """A file that cannot be read or parsed; the message names the file and where."""


def load_document(path: str | Path) -> Any:
    """Parse a definition file: JSON for .json, YAML for .yaml/.yml, else JSON then YAML."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise DocumentError(f"{path}: cannot read: {exc.strerror or exc}") from None
    return parse_document(text, str(path), path.suffix.lower())


def parse_document(text: str, origin: str, suffix: str = "") -> Any:
    if suffix in (".yaml", ".yml"):
        return _yaml(text, origin)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        if suffix == ".json":
            raise DocumentError(f"{origin}: invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from None
    return _yaml(text, origin)


class _JsonYamlLoader(yaml.SafeLoader):
    """YAML restricted to what JSON can say (docs/limits.md).

    Anchors and aliases are refused: expanding them lets a few hundred bytes
    stand for millions of nodes. So are values JSON has no form for: dates
    and times, binary, sets, ordered maps and pairs, `.nan` and `.inf`.
    """

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.peek_event()  # type: ignore[no-untyped-call]
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
            raise yaml.composer.ComposerError(
                None, None, "YAML aliases are not supported (nor anchors): write the value out", event.start_mark
            )
        return super().compose_node(parent, index)

    def construct_yaml_float(self, node: Any) -> Any:
        value = super().construct_yaml_float(node)
        if not math.isfinite(value):
            raise yaml.constructor.ConstructorError(
                None, None, f"{node.value!r} is not a JSON number (.nan and .inf are not supported)", node.start_mark
            )
        return value

    def refuse(self, node: Any) -> Any:
        kind = node.tag.rsplit(":", 1)[-1]
        raise yaml.constructor.ConstructorError(
            None, None, f"a YAML {kind} value ({node.tag}) is not JSON: quote it as a string", node.start_mark
        )


_JsonYamlLoader.add_constructor("tag:yaml.org,2002:float", _JsonYamlLoader.construct_yaml_float)
for _tag in ("timestamp", "binary", "set", "omap", "pairs"):
    _JsonYamlLoader.add_constructor(f"tag:yaml.org,2002:{_tag}", _JsonYamlLoader.refuse)


def _yaml(text: str, origin: str) -> Any:
    try:
        return yaml.load(text, Loader=_JsonYamlLoader)  # a SafeLoader, narrowed further
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1} column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise DocumentError(f"{origin}: invalid YAML{where}: {problem}") from None


def parse_json_argument(value: str, option: str) -> Any:
    """`--input`: a JSON text, or @path to a JSON file."""
    origin = option
    if value.startswith("@"):
        origin = value[1:]
        try:
            value = Path(origin).read_text(encoding="utf-8")
        except OSError as exc:
            raise DocumentError(f"{option}: cannot read {origin}: {exc.strerror or exc}") from None
    try:
        return json.loads(value)
    except json.JSONDecodeError as exc:
        raise DocumentError(f"{origin}: not valid JSON (line {exc.lineno} column {exc.colno}: {exc.msg})") from None


def import_handlers(spec: str) -> None:
    """Import a handler module (dotted name from the working directory, or a .py path).

    Importing registers its `@cerebelum.handler`s. Only the operator names
    these modules; nothing from a definition or a request is ever imported.
    """
    path = Path(spec)
    if spec.endswith(".py") or path.is_file():
        if not path.is_file():
            raise DocumentError(f"--handlers {spec}: no such file")
        name = "cerebelum_handlers_" + "_".join(path.resolve().with_suffix("").parts[-3:]).replace("-", "_")
        if name in sys.modules:
            return
        module_spec = importlib.util.spec_from_file_location(name, path)
        if module_spec is None or module_spec.loader is None:
            raise DocumentError(f"--handlers {spec}: cannot load")
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[name] = module
        sys.path.insert(0, str(path.resolve().parent))
        try:
            module_spec.loader.exec_module(module)
        except Exception as exc:
            del sys.modules[name]
            raise DocumentError(f"--handlers {spec}: import failed: {type(exc).__name__}: {exc}") from exc
        return
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        importlib.import_module(spec)
    except ImportError as exc:
        raise DocumentError(f"--handlers {spec}: cannot import: {exc}") from None
