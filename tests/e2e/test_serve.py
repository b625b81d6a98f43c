"""`cerebelum serve` through the installed entry point: API plus in-process workers."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from tests.helpers import wait_until_healthy

CLI = str(Path(sys.executable).parent / "cerebelum")
HANDLERS = """
import cerebelum

@cerebelum.handler("greet")
def greet(ctx):
    return {"hello": ctx.input["who"]}
"""
FLOW = {"name": "greeting", "entrypoint": "g", "nodes": {"g": {"type": "function", "config": {"handler": "greet"}}}}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def call(url: str, body: object | None = None) -> tuple[int, dict]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.status, json.loads(response.read())


def test_serve_runs_the_api_and_a_worker_pool_and_stops_on_sigterm(tmp_path: Path) -> None:
    (tmp_path / "h.py").write_text(HANDLERS)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [CLI, "serve", "--port", str(port), "--handlers", "h.py", "--workers", "2"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        wait_until_healthy(base, server)
        assert call(f"{base}/healthz") == (200, {"status": "ok"})
        deadline = time.monotonic() + 30
        assert call(f"{base}/api/v1/workflows", FLOW)[0] == 201
        status, execution = call(f"{base}/api/v1/executions", {"workflow": "greeting", "input": {"who": "ada"}})
        assert status == 202 and execution["status"] == "pending"
        while execution["status"] != "completed":
            assert time.monotonic() < deadline, execution
            time.sleep(0.2)
            execution = call(f"{base}/api/v1/executions/{execution['execution_id']}")[1]
        assert execution["output"] == {"hello": "ada"}
    finally:
        server.send_signal(signal.SIGTERM)
        _, err = server.communicate(timeout=30)
    assert server.returncode == 0, err.decode()
    assert f"http://127.0.0.1:{port}/api/v1" in err.decode()


def test_serve_refuses_a_non_loopback_address_without_auth(tmp_path: Path) -> None:
    result = subprocess.run([CLI, "serve", "--host", "0.0.0.0"], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "refusing to listen on 0.0.0.0" in result.stderr and "Traceback" not in result.stderr
