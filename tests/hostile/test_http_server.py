"""`cerebelum serve` / `worker` as subprocesses for the HTTP hostile-input tests, and
their secrets: a database URL's password never reaches stderr or an answer.

The PostgreSQL URLs of these tests carry a password (trust auth accepts any),
so every server started here is also checked for never printing it.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.e2e.test_serve import CLI, free_port
from tests.helpers import wait_until_healthy

PASSWORD = "s3cret-Pw9"
DROPPED_ENV = ("CEREBELUM_DB", "CEREBELUM_HANDLERS", "CEREBELUM_API_TOKENS", "CEREBELUM_API_TOKENS_FILE")


def with_password(url: str) -> str:
    """postgresql://postgres@host/db -> postgresql://postgres:PASSWORD@host/db"""
    scheme, rest = url.split("://", 1)
    user, at, where = rest.partition("@")
    assert at, url
    return f"{scheme}://{user}:{PASSWORD}@{where}"


@pytest.fixture
def db_url(sql_url: str) -> str:
    """A database per backend; PostgreSQL's URL has a password in it."""
    return with_password(sql_url) if sql_url.startswith("postgresql") else sql_url


@dataclass
class Running:
    base: str
    port: int
    process: subprocess.Popen[bytes]
    stderr: str = ""
    answers: list[str] = field(default_factory=list)  # every body read through `request`, for the secret check

    @property
    def api(self) -> str:
        return f"{self.base}/api/v1"

    def request(self, method: str, path: str, **options: object) -> httpx.Response:
        response = httpx.request(method, f"{self.base}{path}", timeout=30, **options)  # type: ignore[arg-type]
        self.answers.append(response.text)
        return response


@contextmanager
def serve(workdir: Path, db: str, *args: str, handlers: str | None = None) -> Iterator[Running]:
    """`cerebelum serve` on a free loopback port; on exit it must stop cleanly (exit 0)
    and its stderr and every answer read must be free of PASSWORD."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in DROPPED_ENV}
    command = [CLI, "serve", "--port", str(port), "--db", db, *args]
    if handlers is not None:
        (workdir / "hostile_handlers.py").write_text(handlers)
        command += ["--handlers", str(workdir / "hostile_handlers.py")]
    process = subprocess.Popen(command, cwd=workdir, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    running = Running(f"http://127.0.0.1:{port}", port, process)
    try:
        wait_until_healthy(running.base, process)
        yield running
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            _, err = process.communicate(timeout=40)
        except subprocess.TimeoutExpired:
            process.kill()
            _, err = process.communicate(timeout=10)
        running.stderr = err.decode(errors="replace")
    assert process.returncode == 0, running.stderr[-3000:]
    assert PASSWORD not in running.stderr
    assert not [a for a in running.answers if PASSWORD in a]


FLOW = {"name": "secret_probe", "entrypoint": "a", "nodes": {"a": {"type": "delay", "config": {"seconds": 0}}}}


def test_serve_masks_the_password_in_its_start_line_and_answers(tmp_path: Path, pg_url: str) -> None:
    url = with_password(pg_url)
    with serve(tmp_path, url, "--workers", "1") as server:
        assert server.request("POST", "/api/v1/workflows", json=FLOW).status_code == 201
        # errors of every kind: unknown id, invalid definition, illegal transition, a value PostgreSQL refuses
        assert server.request("GET", "/api/v1/executions/nope").status_code == 404
        assert server.request("POST", "/api/v1/workflows", json={"name": "x"}).status_code == 422
        refused = server.request("POST", "/api/v1/executions", json={"workflow": "secret_probe", "input": {"s": "a\u0000b"}})
        assert refused.status_code in (202, 422), refused.text
        bad = server.request("GET", "/api/v1/executions", params={"limit": "many"})
        assert bad.status_code == 422
    start = next(line for line in server.stderr.splitlines() if "console on" in line)
    assert "postgresql://postgres:***@127.0.0.1" in start, start


def test_worker_masks_the_password_in_its_start_line(tmp_path: Path, pg_url: str) -> None:
    url = with_password(pg_url)
    env = {k: v for k, v in os.environ.items() if k not in DROPPED_ENV}
    worker = subprocess.Popen([CLI, "worker", "--db", url], cwd=tmp_path, env=env, stderr=subprocess.PIPE)
    assert worker.stderr is not None
    try:
        first = worker.stderr.readline().decode()  # the start line (bounded by the test's timeout)
    finally:
        worker.send_signal(signal.SIGTERM)
        _, rest = worker.communicate(timeout=40)
    printed = first + rest.decode()
    assert "postgresql://postgres:***@127.0.0.1" in first, printed
    assert PASSWORD not in printed
    assert worker.returncode == 0, printed


def test_an_unreachable_database_is_reported_without_its_password(tmp_path: Path) -> None:
    port = free_port()  # nothing listens there
    url = f"postgresql://postgres:{PASSWORD}@127.0.0.1:{port}/test"
    env = {k: v for k, v in os.environ.items() if k not in DROPPED_ENV}
    for command in (["serve", "--port", str(free_port())], ["worker"], ["status", "x"]):
        result = subprocess.run([CLI, *command, "--db", url], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
        assert result.returncode != 0, result
        assert "unavailable" in result.stderr, result.stderr
        assert PASSWORD not in result.stderr + result.stdout, result.stderr


def test_the_masking_helper() -> None:
    from cerebelum.infrastructure.redaction import mask_url, scrub

    assert mask_url(f"postgresql://u:{PASSWORD}@h:5432/db") == "postgresql://u:***@h:5432/db"
    assert mask_url(f"postgresql://u:p@{PASSWORD}@h/db") == "postgresql://u:***@h/db"  # an unescaped @ in it
    assert PASSWORD not in mask_url(f"postgresql://h/db?sslmode=require&password={PASSWORD}")
    assert mask_url("sqlite:///x.db") == "sqlite:///x.db"
    message = f'invalid dsn: "postgresql://a:{PASSWORD}@c/d" host=h password={PASSWORD} user=u'
    assert PASSWORD not in scrub(message) and "host=h" in scrub(message) and "user=u" in scrub(message)
    assert scrub("see http://127.0.0.1:8000/ and a == b") == "see http://127.0.0.1:8000/ and a == b"
