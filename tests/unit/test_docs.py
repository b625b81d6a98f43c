"""The docs name only what exists: every `cerebelum <command>` in README.md and
docs/*.md is a command of the Typer app, every `/api/v1/...` route one of the
FastAPI app's (with the method when the doc gives one)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import typer.main

import cerebelum
from cerebelum.entrypoints.cli.app import app as cli_app
from cerebelum.entrypoints.http import create_app

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
GLOBAL_OPTIONS = {"--db": True, "--handlers": True, "--debug": False, "--code-version": True}  # option: takes a value
# `cerebelum` then a command word on the same line (not `cerebelum.handler`, not `'cerebelum[otel]'`)
COMMAND = re.compile(r"(?<![\w./-])cerebelum((?:[ \t]+\S+){1,8})")
ROUTE = re.compile(r"(?:(GET|POST|PUT|PATCH|DELETE)\s+)?(?:/api/v1|\$B)(/[A-Za-z0-9_{}$./-]*)")


def _cli_commands() -> dict[str, set[str]]:
    """Command name -> its subcommands (empty for a plain command)."""
    group = typer.main.get_command(cli_app)
    found: dict[str, set[str]] = {}
    for name, command in getattr(group, "commands", {}).items():
        found[name] = set(getattr(command, "commands", {}))
    assert {"run", "workflows"} <= found.keys() and "list" in found["workflows"]
    return found


def _unknown_sub(word: str, subcommands: set[str]) -> bool:
    return bool(re.fullmatch(r"[a-z][a-z-]*", word)) and word not in subcommands


def _mentions() -> list[tuple[str, int, list[str]]]:
    """(file, line, words after `cerebelum` with the global options skipped)."""
    out = []
    for doc in DOCS:
        for number, line in enumerate(doc.read_text().splitlines(), 1):
            for match in COMMAND.finditer(line):
                words = [w.strip("`'\",;:()") for w in match.group(1).split()]
                i = 0
                while i < len(words) and words[i] in GLOBAL_OPTIONS:
                    i += 2 if GLOBAL_OPTIONS[words[i]] else 1
                words = words[i:]
                if words and re.fullmatch(r"[a-z][a-z-]*", words[0]):
                    out.append((doc.name, number, words))
    return out


def test_every_cli_command_the_docs_mention_exists() -> None:
    commands = _cli_commands()
    mentions = _mentions()
    assert len(mentions) > 30, "the pattern finds the docs' commands"
    wrong = []
    for name, number, words in mentions:
        command = words[0]
        if command not in commands:
            wrong.append(f"{name}:{number}: cerebelum {command}")
        elif commands[command] and len(words) > 1 and _unknown_sub(words[1], commands[command]):
            wrong.append(f"{name}:{number}: cerebelum {command} {words[1]}")
    assert not wrong, "commands the CLI does not have:\n" + "\n".join(wrong)


def _route_patterns() -> list[tuple[str, re.Pattern[str]]]:
    """(method, path pattern) of every /api/v1 route, from the app's own OpenAPI document."""
    with cerebelum.Engine("memory://", workers=0) as engine:
        paths = create_app(engine).openapi()["paths"]
    routes = []
    for path, operations in paths.items():
        if path.startswith("/api/v1"):
            segments = ["[^/]+" if part.startswith("{") else re.escape(part) for part in path[len("/api/v1") :].split("/")]
            routes += [(method.upper(), re.compile("/".join(segments) + "/?")) for method in operations]
    assert len(routes) > 10
    return routes


def test_every_http_route_the_docs_mention_exists() -> None:
    routes = _route_patterns()
    seen = 0
    wrong = []
    for doc in DOCS:
        text = doc.read_text()
        for number, line in enumerate(text.splitlines(), 1):
            for match in ROUTE.finditer(line):
                method, path = match.group(1), match.group(2).rstrip(".")
                path = re.sub(r"\[(/[^\]]*)\]", "", path)  # `versions[/{version}]`: the optional part
                # placeholders: {id}, $ID, exec-...
                path = re.sub(r"\{[^}]*\}|\$\w+|exec-[\w.-]*", "X", path)
                seen += 1
                if not any((method is None or method == m) and pattern.fullmatch(path) for m, pattern in routes):
                    wrong.append(f"{doc.name}:{number}: {method or ''} /api/v1{match.group(2)}".replace(":  ", ": "))
    assert seen >= 8, "the pattern finds the docs' routes"
    assert not wrong, "routes the HTTP API does not have:\n" + "\n".join(wrong)


@pytest.mark.parametrize("bogus", ["cerebelum frobnicate X", "GET /api/v1/frobs", "cerebelum workflows purge X"])
def test_the_checks_catch_a_made_up_name(bogus: str, tmp_path: Path) -> None:
    made_up = tmp_path / "bogus.md"
    made_up.write_text(f"`{bogus}`\n")
    DOCS.append(made_up)
    try:
        cli = "cerebelum" in bogus
        check = test_every_cli_command_the_docs_mention_exists if cli else test_every_http_route_the_docs_mention_exists
        with pytest.raises(AssertionError, match=r"bogus\.md:1"):
            check()
    finally:
        DOCS.remove(made_up)
