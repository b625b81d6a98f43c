"""The console's pure modules, run in the browser: the SSE parser, the diff and the graph layout."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from playwright.sync_api import Page

from tests.browser.conftest import Server

pytestmark = pytest.mark.browser

EXAMPLES = Path(__file__).parents[2] / "examples"


@pytest.fixture
def server(console_server: Server) -> Server:
    return console_server  # only to serve the modules


def test_the_sse_parser_reassembles_split_chunks(server: Server, page: Page) -> None:
    page.goto(server.base + "/")
    messages = page.evaluate(
        """async () => {
            const { sseMessages } = await import("./console/js/sse.js");
            // Lines split across chunks, CRLF and CR endings, a comment, a multi-line data field.
            const chunks = [
                "id: 4\\nevent: node_star", "ted\\ndata: {\\"a\\"", ":1}\\n\\n: keep-alive\\n\\n",
                "id: 5\\r\\nevent: x\\r\\ndata: one\\r\\ndata: two\\r\\n\\r\\n", "id:6\\rdata:{}\\r\\r", "data: tail",
            ];
            const body = new ReadableStream({ start(c) {
                for (const t of chunks) c.enqueue(new TextEncoder().encode(t));
                c.close();
            } });
            const out = [];
            for await (const m of sseMessages(body)) out.push(m);
            return out;
        }"""
    )
    assert messages == [
        {"id": "4", "event": "node_started", "data": '{"a":1}'},
        {"id": "5", "event": "x", "data": "one\ntwo"},
        {"id": "6", "data": "{}"},
    ]  # the unterminated last message is not delivered


def test_the_line_diff_pairs_changes_side_by_side(server: Server, page: Page) -> None:
    page.goto(server.base + "/")
    rows = page.evaluate(
        """async () => {
            const { diffLines, sideBySide } = await import("./console/js/diff.js");
            return sideBySide(diffLines(["a", "b", "c", "d"], ["a", "B", "c", "d", "e"])).map((r) => r.kind);
        }"""
    )
    assert rows == ["same", "changed", "same", "same", "add"]


@pytest.mark.parametrize("example", ["order/workflow.json", "approval/workflow.json"])
def test_the_layout_places_every_node_without_overlap(server: Server, page: Page, example: str) -> None:
    definition = json.loads((EXAMPLES / example).read_text())
    page.goto(server.base + "/")
    placed = page.evaluate(
        """async (definition) => {
            const { readDefinition } = await import("./console/js/definition.js");
            const { drawGraph } = await import("./console/js/graph.js");
            const box = document.createElement("div");
            document.body.append(box);
            const spec = readDefinition(definition);
            drawGraph(box, spec);
            const rect = (el) => { const r = el.getBoundingClientRect(); return [r.left, r.top, r.right, r.bottom]; };
            const top = [...box.querySelectorAll(".nodes > .gnode")]
                .map((g) => [g.dataset.path, rect(g.querySelector(".shape"))]);
            const edges = [...box.querySelectorAll(".edge")]
                .map((e) => [e.dataset.from, e.dataset.to, e.classList.contains("back")]);
            return { top, edges, labels: [...box.querySelectorAll(".edge-label text")].map((t) => t.textContent) };
        }""",
        definition,
    )
    boxes = dict(placed["top"])
    assert set(boxes) == set(definition["nodes"])
    for a, (al, at, ar, ab) in boxes.items():
        for b, (bl, bt, br, bb) in boxes.items():
            assert a == b or ar <= bl or br <= al or ab <= bt or bb <= at, f"{a} overlaps {b}"
    assert sorted((f, t) for f, t, _ in placed["edges"]) == sorted((e["from"], e["to"]) for e in definition["edges"])
    entry = definition["entrypoint"]
    assert all(boxes[entry][1] <= box[1] for box in boxes.values()), "the entrypoint is on the top layer"
    for source, target, back in placed["edges"]:
        if not back:
            assert boxes[source][3] <= boxes[target][1], f"{source} -> {target} points down"
    if example.startswith("approval"):
        assert [(f, t) for f, t, back in placed["edges"] if back] == [("revise", "review")], "the loop is a back edge"
        assert "!data.approved (\u2264 5\u00d7)" in placed["labels"]  # at most 5 times
