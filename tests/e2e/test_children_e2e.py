"""Sub-workflows through the CLI and HTTP (interaction spec section 4): `run DEF`
runs children in its process, `status` shows both directions, `?parent=` lists them."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx

import cerebelum
from cerebelum.entrypoints.http import create_app

CLI = Path(sys.executable).parent / "cerebelum"
HANDLERS = """
import cerebelum


@cerebelum.handler("double")
def double(ctx):
    return ctx.data * 2
"""
CHILD: dict[str, Any] = {
    "name": "twice", "entrypoint": "d", "nodes": {"d": {"type": "function", "config": {"handler": "double"}}},
}  # fmt: skip
MAP_OF_CHILDREN = {"type": "map", "config": {"items": "input", "node": {"type": "workflow", "config": {"workflow": "twice"}}}}
PARENT: dict[str, Any] = {
    "name": "family",
    "entrypoint": "each",
    "nodes": {"each": MAP_OF_CHILDREN},
}


def cli(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CEREBELUM_")}
    return subprocess.run([str(CLI), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=60, check=False)


def test_run_status_and_the_parent_filter(tmp_path: Path) -> None:
    (tmp_path / "h.py").write_text(HANDLERS)
    (tmp_path / "parent.json").write_text(json.dumps(PARENT))
    orphan = {"name": "orphan", "entrypoint": "x", "nodes": {"x": {"type": "workflow", "config": {"workflow": "missing"}}}}
    (tmp_path / "bad.json").write_text(json.dumps(orphan))
    db = f"sqlite:///{tmp_path / 'f.db'}"
    with cerebelum.Engine(db, workers=0) as engine:
        engine.create_workflow(CHILD)
    ran = cli(tmp_path, "--db", db, "run", "parent.json", "--handlers", "h.py", "--input", "[1, 2, 3]", "--json")
    assert ran.returncode == 0, ran.stderr
    parent = json.loads(ran.stdout)
    assert parent["output"] == [2, 4, 6]
    shown = cli(tmp_path, "--db", db, "status", parent["execution_id"], "--json")
    children = json.loads(shown.stdout)["children"]
    assert sorted(c["node"] for c in children) == ["each[0]", "each[1]", "each[2]"]
    assert {c["status"] for c in children} == {"completed"} and {c["workflow"] for c in children} == {"twice"}
    text = cli(tmp_path, "--db", db, "status", children[0]["execution_id"]).stdout
    assert f"parent: {parent['execution_id']} (node {children[0]['node']})" in text
    assert cli(tmp_path, "--db", db, "status", parent["execution_id"]).stdout.count("child: ") == 3
    refused = cli(tmp_path, "--db", db, "run", "bad.json", "--handlers", "h.py")
    assert refused.returncode == 2 and "nodes.x.config.workflow" in refused.stderr and "missing" in refused.stderr

    async def listed() -> dict[str, Any]:
        engine = cerebelum.Engine(db, workers=0)
        try:
            transport = httpx.ASGITransport(app=create_app(engine))
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
                page = await client.get("/api/v1/executions", params={"parent": parent["execution_id"]})
                child = await client.get(f"/api/v1/executions/{children[0]['execution_id']}")
                return {"page": page.json(), "child": child.json()}
        finally:
            await engine.close_async()
            engine.close()

    answers = asyncio.run(listed())
    assert sorted(item["execution_id"] for item in answers["page"]["items"]) == sorted(c["execution_id"] for c in children)
    assert answers["child"]["parent"] == {"execution_id": parent["execution_id"], "node": children[0]["node"]}
