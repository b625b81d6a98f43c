"""HTTP API benchmark: requests/s and p50/p99 latency of `cerebelum serve` on loopback.

For each backend (SQLite in a temporary directory; PostgreSQL in a fresh
database created from the admin URL and dropped afterwards) it starts
`cerebelum serve --workers W` with a 1-step no-op workflow, then N concurrent
clients send a fixed number of requests:
  1. POST /api/v1/executions        (enqueue; the pool runs them meanwhile)
  2. GET  /api/v1/executions/{id}   (over the ids created in 1)
Prints figures; asserts nothing but the status codes.

Usage: .venv/bin/python bench/bench_http.py [--clients 16] [--requests 2000] [--workers 2] [--backends sqlite,postgresql]
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from perf.common import scratch_postgres

CLI = str(Path(sys.executable).parent / "cerebelum")
HANDLERS = """
import cerebelum


@cerebelum.handler("noop")
def noop(ctx):
    return {"ok": True}
"""
FLOW = {"name": "bench", "entrypoint": "only", "nodes": {"only": {"type": "function", "config": {"handler": "noop"}}}}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def serve(db: str, workdir: Path, workers: int) -> Iterator[str]:
    (workdir / "h.py").write_text(HANDLERS)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    command = [CLI, "serve", "--port", str(port), "--workers", str(workers), "--handlers", "h.py", "--db", db]
    process = subprocess.Popen(command, cwd=workdir, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError("the server did not come up: " + (process.stderr.read().decode() if process.stderr else ""))
            time.sleep(0.2)
        yield base
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()


async def measure(clients: int, requests: int, one: Callable[[int], Awaitable[None]]) -> tuple[float, list[float]]:
    """`requests` calls of `one(i)` from `clients` concurrent workers: (elapsed seconds, latencies in ms)."""
    latencies: list[float] = []
    counter = iter(range(requests))

    async def client() -> None:
        for i in counter:
            began = time.perf_counter()
            await one(i)
            latencies.append((time.perf_counter() - began) * 1000)

    began = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    return time.perf_counter() - began, latencies


def report(backend: str, route: str, elapsed: float, latencies: list[float]) -> None:
    cuts = statistics.quantiles(latencies, n=100)
    print(
        f"{backend:<10} {route:<32} {len(latencies) / elapsed:8.0f} req/s   p50 {cuts[49]:7.1f} ms   p99 {cuts[98]:7.1f} ms"
        f"   ({len(latencies)} requests in {elapsed:.1f}s)"
    )


async def bench(backend: str, base: str, clients: int, requests: int) -> None:
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=base, timeout=60, limits=limits) as client:
        created = await client.post("/api/v1/workflows", json=FLOW)
        assert created.status_code == 201, created.text
        ids: list[str] = []

        async def post(i: int) -> None:
            response = await client.post("/api/v1/executions", json={"workflow": FLOW["name"], "input": {"n": i}})
            assert response.status_code == 202, response.text
            ids.append(response.json()["execution_id"])

        async def get(i: int) -> None:
            response = await client.get(f"/api/v1/executions/{ids[i % len(ids)]}")
            assert response.status_code == 200, response.text

        report(backend, "POST /api/v1/executions", *await measure(clients, requests, post))
        report(backend, "GET /api/v1/executions/{id}", *await measure(clients, requests, get))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=2, help="the server's in-process pool (--workers of serve)")
    parser.add_argument("--backends", default="sqlite,postgresql")
    args = parser.parse_args()
    print(f"cerebelum serve on 127.0.0.1, --workers {args.workers}; {args.clients} clients, {args.requests} requests per route")
    for backend in args.backends.split(","):
        with tempfile.TemporaryDirectory() as tmp:
            if backend == "sqlite":
                with serve(f"sqlite:///{Path(tmp) / 'bench.db'}", Path(tmp), args.workers) as base:
                    asyncio.run(bench(backend, base, args.clients, args.requests))
            elif backend == "postgresql":
                with scratch_postgres("cerebelum_bench_http") as url, serve(url, Path(tmp), args.workers) as base:
                    asyncio.run(bench(backend, base, args.clients, args.requests))
            else:
                raise SystemExit(f"unknown backend {backend!r}")


if __name__ == "__main__":
    main()
