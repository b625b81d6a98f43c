"""SSE delivery benchmark: how late, and at what database cost, the per-execution
Server-Sent Events stream (GET /api/v1/executions/{id}/stream) delivers events.

    .venv/bin/python bench/bench_sse.py [--only sqlite|postgresql] [--subscribers 50] [--executions 5]
    PYTHONPATH=/path/to/tree/src .venv/bin/python bench/bench_sse.py    # A/B: another source tree

`cerebelum` is imported from whatever comes first on sys.path (PYTHONPATH wins over the
venv's editable install); the path and the tree's git commit are printed at the start and
stored in the JSON, so two trees can be compared with the same script.

Set-up, per backend (SQLite: a file in a temporary directory; PostgreSQL: a fresh database
`cerebelum_bench_sse_<pid>` created from $CEREBELUM_BENCH_PG, else $CEREBELUM_TEST_PG, else
postgresql://postgres@127.0.0.1:5432/test, and dropped at the end). One process holds:

- the server: `create_app(engine, run_workers=True)` (what `cerebelum serve` runs) under
  uvicorn in a thread, on a real loopback socket; the engine's worker pool (`--workers`,
  default 4) runs in uvicorn's loop, as in `cerebelum serve`;
- the clients: `--subscribers` raw HTTP/1.1 connections (asyncio protocols on the main
  thread's loop; no HTTP library), each parsing the chunked body and the SSE frames as the
  bytes arrive and recording `time.perf_counter()` when an event's frame is complete.

The workflow: a `gate` step, then `--steps` (20) function steps in a chain, each an async
handler doing `await ctx.sleep(--step-ms / 1000)` (20 ms), so appends arrive spread out.
The gate blocks (in a step thread) until the bench releases it: the execution is started
over HTTP (POST /api/v1/executions), the clients connect to its stream while it waits at
the gate, and once every client has its response headers and every event appended so far
(execution_started, the gate's node_started), the gate opens. Those first events are
checked like the others but left out of the latency figures (they wait for the connects).

Measured per execution:

- latency: from the moment the engine hands the event to its in-process subscribers
  (`engine.subscribe`, called by the runner just after the append's commit returned, on
  the appending thread; a perf_counter taken first thing in the callback) to the moment
  the SSE frame of that event is complete at a client. Not the event's own `timestamp`
  field: it is the moment the event was decided (for node_completed, when the handler
  returned, before the group commit), in wall-clock time, and the API gives it with
  millisecond precision only, too coarse for a path that should take about a millisecond.
  The subscriber's moment follows the commit by at most a turn of the server's loop; a
  stream woken another way (a poll, a PostgreSQL NOTIFY) can read an event before the
  runner hands it over, so a few latencies can be slightly negative (counted in the JSON).
  Reported: median and p99 over all (event, subscriber) pairs of the execution.
- database reads: the statement counter of bench/perf/common.py (installed before the
  engine opens any connection) counts what this process sends to the database from just
  before the clients connect until the stream is over (+ 0.2 s to settle). The same
  execution is also run with 0 subscribers (the same window, the gate opened at once, the
  end seen through `engine.subscribe`), interleaved with the measured ones. The streaming
  cost is the difference: SELECTs(N subscribers) - SELECTs(0), divided by the events
  delivered (events x subscribers), and by the events appended. Both raw counts are
  reported, and the SELECTs of the connect phase apart. The 0-subscriber run also gives
  the execution's wall time without streaming, to see what streaming costs the execution.

Every client must receive every event of the execution exactly once, in sequence order,
with the right type, and its stream must end cleanly after the terminal event; the
execution must be `completed`. Otherwise the run fails (exit status 1).

Per backend: one warm-up pair (0 and N subscribers, checked, not reported), then
`--executions` pairs. The table gives every execution and the median over them;
bench/results/sse.json (or --json) holds every figure and the machine's description.
The two cores of the machine are shared with PostgreSQL and with the clients (the same
process as the server: they compete for its GIL), so the figures are noisy: compare
runs made close together, and look at every run, not only the medians.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import platform
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
if str(BENCH) not in sys.path:
    sys.path.insert(0, str(BENCH))

from perf.common import METER_CONNECTIONS, StatementCounter, db_cpu_meter, percentile  # noqa: E402

ADMIN = os.environ.get("CEREBELUM_BENCH_PG") or os.environ.get("CEREBELUM_TEST_PG") or "postgresql://postgres@127.0.0.1:5432/test"
BACKENDS = ("sqlite", "postgresql")
SETTLE_S = 0.2  # after the stream is over, before the window's last count
TERMINAL_EVENTS = ("execution_completed", "execution_failed")

# Installed before cerebelum opens any connection: counts every statement of this process.
COUNTER = StatementCounter()

import cerebelum  # noqa: E402  (after the counter; from whatever is first on sys.path)

GATES: dict[str, threading.Event] = {}


@cerebelum.handler("sse_bench_gate", intercept=False)
def gate(ctx: Any) -> dict[str, Any]:
    """Blocks (in a step thread) until the bench has connected its clients."""
    if not GATES[ctx.input["gate"]].wait(120):
        raise TimeoutError("the bench never opened the gate")
    return {}


@cerebelum.handler("sse_bench_step")
async def step(ctx: Any) -> dict[str, Any]:
    await ctx.sleep(ctx.input["step_s"])
    return {}


def flow(steps: int) -> dict[str, Any]:
    names = [f"s{i:02d}" for i in range(1, steps + 1)]
    nodes: dict[str, Any] = {"gate": {"type": "function", "config": {"handler": "sse_bench_gate"}}}
    nodes.update({name: {"type": "function", "config": {"handler": "sse_bench_step"}} for name in names})
    chain = ["gate", *names]
    return {
        "name": f"sse_bench_{steps}",
        "entrypoint": "gate",
        "nodes": nodes,
        "edges": [{"from": a, "to": b} for a, b in itertools.pairwise(chain)],
    }


# -- what the engine hands to its subscribers -------------------------------------------


class Published:
    """Every event the engine publishes in-process, per execution, with the moment."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.events: dict[str, list[tuple[int, str, str | None, float]]] = {}
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = []

    def __call__(self, event: Any) -> None:  # on the appending thread
        now = time.perf_counter()
        with self._lock:
            self.events.setdefault(event.execution_id, []).append((event.sequence, event.type, event.node_id, now))
            waiters = list(self._waiters)
        for loop, flag in waiters:
            loop.call_soon_threadsafe(flag.set)

    def of(self, execution_id: str) -> list[tuple[int, str, str | None, float]]:
        with self._lock:
            return list(self.events.get(execution_id, ()))

    def watch(self, flag: asyncio.Event) -> Any:
        """Set `flag` (in the running loop) whenever an event is published; returns unwatch."""
        waiter = (asyncio.get_running_loop(), flag)
        with self._lock:
            self._waiters.append(waiter)

        def unwatch() -> None:
            with self._lock:
                self._waiters.remove(waiter)

        return unwatch


# -- the SSE client -----------------------------------------------------------------------


class SseClient(asyncio.Protocol):
    """One GET of the stream over a raw socket: HTTP/1.1 chunked body, SSE frames parsed
    as bytes arrive; each event is stamped when its frame is complete."""

    def __init__(self, request: bytes, progress: asyncio.Event) -> None:
        self.request = request
        self.progress = progress
        self.buf = bytearray()
        self.sse = bytearray()
        self.status: int | None = None
        self.error: str | None = None
        self.ended = False  # the terminating chunk arrived
        self.events: list[tuple[int, str, float]] = []  # (id, event type, arrival)
        self.done = asyncio.get_running_loop().create_future()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        now = time.perf_counter()
        self.buf += data
        try:
            self._parse(now)
        except Exception as exc:  # a malformed response fails the run
            self._finish(f"bad response: {exc!r}")
        self.progress.set()

    def _parse(self, now: float) -> None:
        buf = self.buf
        while not self.done.done():
            if self.status is None:
                end = buf.find(b"\r\n\r\n")
                if end < 0:
                    return
                lines = bytes(buf[:end]).decode("latin-1").split("\r\n")
                del buf[: end + 4]
                self.status = int(lines[0].split()[1])
                headers = {k.strip().lower(): v.strip().lower() for k, v in (line.split(":", 1) for line in lines[1:])}
                if self.status != 200:
                    self._finish(f"status {self.status}")
                elif headers.get("transfer-encoding") != "chunked" or not headers.get("content-type", "").startswith(
                    "text/event-stream"
                ):
                    self._finish(f"unexpected headers {headers}")
                continue
            line_end = buf.find(b"\r\n")
            if line_end < 0:
                return
            size = int(bytes(buf[:line_end]).split(b";")[0], 16)
            if size == 0:
                self.ended = True
                self._finish(None)
                return
            if len(buf) < line_end + 2 + size + 2:
                return
            self.sse += buf[line_end + 2 : line_end + 2 + size]
            del buf[: line_end + 4 + size]
            while (cut := self.sse.find(b"\n\n")) >= 0:
                block = bytes(self.sse[:cut]).decode()
                del self.sse[: cut + 2]
                sequence, kind, data = None, None, False
                for line in block.split("\n"):
                    name, _, value = line.partition(":")
                    value = value[1:] if value.startswith(" ") else value
                    if name == "id":
                        sequence = int(value)
                    elif name == "event":
                        kind = value
                    elif name == "data":
                        data = bool(value)
                if sequence is not None and kind is not None and data:
                    self.events.append((sequence, kind, now))
                elif sequence is not None or kind is not None:
                    raise ValueError(f"incomplete frame {block!r}")

    def _finish(self, error: str | None) -> None:
        if not self.done.done():
            self.error = error
            self.done.set_result(None)
        if self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self._finish(f"connection lost before the end of the stream ({exc})")
        self.progress.set()


# -- one execution ------------------------------------------------------------------------


class BenchDefect(Exception):
    """The run did not do what it claims to measure."""


@dataclass
class Run:
    subscribers: int
    events: int = 0  # appended for the execution
    delivered: int = 0  # events received, summed over clients
    latencies_ms: list[float] = field(default_factory=list)
    negative: int = 0
    selects: int = 0  # the whole window
    selects_connect: int = 0  # of which before the gate opened
    statements: int = 0
    round_trips: int = 0
    wall_s: float = 0.0  # gate opened -> terminal event published
    stream_end_s: float = 0.0  # gate opened -> the last client's stream ended
    cpu_s: float = 0.0  # process CPU (server and clients), whole window
    db_cpu_s: float | None = None
    texts: Counter[str] = field(default_factory=Counter)

    def figures(self) -> dict[str, Any]:
        return {
            "subscribers": self.subscribers,
            "events": self.events,
            "delivered": self.delivered,
            "latency_median_ms": statistics.median(self.latencies_ms) if self.latencies_ms else None,
            "latency_p99_ms": percentile(self.latencies_ms, 0.99) if self.latencies_ms else None,
            "latency_max_ms": max(self.latencies_ms) if self.latencies_ms else None,
            "latency_pairs": len(self.latencies_ms),
            "latency_negative": self.negative,
            "selects": self.selects,
            "selects_connect": self.selects_connect,
            "statements": self.statements,
            "round_trips": self.round_trips,
            "wall_s": self.wall_s,
            "stream_end_s": self.stream_end_s,
            "cpu_s": self.cpu_s,
            "db_cpu_s": self.db_cpu_s,
        }


def selects(texts: Counter[str]) -> int:
    return sum(n for text, n in texts.items() if text.lstrip().upper().startswith("SELECT"))


class Bench:
    def __init__(
        self, args: argparse.Namespace, port: int, published: Published, db_spec: dict[str, Any], progress: asyncio.Event
    ) -> None:
        self.progress = progress  # set by the engine's subscriber and by the clients: something happened
        self.args = args
        self.port = port
        self.published = published
        self.db_spec = db_spec

    async def execution(self, http: Any, workflow: str, subscribers: int) -> Run:
        args = self.args
        key = uuid.uuid4().hex
        GATES[key] = threading.Event()
        progress = self.progress
        response = await http.post(
            "/api/v1/executions", json={"workflow": workflow, "input": {"gate": key, "step_s": args.step_ms / 1000}}
        )
        if response.status_code != 202:
            raise BenchDefect(f"POST /api/v1/executions: {response.status_code} {response.text}")
        execution_id = response.json()["execution_id"]
        run = Run(subscribers)
        meter = db_cpu_meter(self.db_spec) if self.db_spec["backend"] == "postgresql" else None
        deadline = time.monotonic() + args.timeout

        async def until(condition: Any, what: str) -> None:
            while not condition():
                progress.clear()
                if condition():
                    return
                left = deadline - time.monotonic()
                if left <= 0:
                    raise BenchDefect(f"timed out waiting for {what} (execution {execution_id})")
                with suppress(TimeoutError):
                    await asyncio.wait_for(progress.wait(), min(left, 1.0))

        def gate_started() -> bool:
            return any(kind == "node_started" and node == "gate" for _, kind, node, _ in self.published.of(execution_id))

        try:
            before = COUNTER.snapshot()
            cpu0 = time.process_time()
            db0 = meter.total() if meter else 0.0
            loop = asyncio.get_running_loop()
            request = (
                f"GET /api/v1/executions/{execution_id}/stream HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\n"
                "Accept: text/event-stream\r\nCache-Control: no-cache\r\n\r\n"
            ).encode()
            clients: list[SseClient] = []
            connects = [
                loop.create_connection(lambda: SseClient(request, progress), "127.0.0.1", self.port) for _ in range(subscribers)
            ]
            for _, protocol in await asyncio.gather(*connects):
                clients.append(protocol)

            def all_caught_up() -> bool:
                if not gate_started():
                    return False
                published = len(self.published.of(execution_id))
                for client in clients:
                    if client.done.done():
                        raise BenchDefect(f"a stream ended before the gate opened: {client.error}")
                    if client.status != 200 or len(client.events) < published:
                        return False
                return True

            await until(all_caught_up, "the clients to connect and the gate to be reached")
            connected = COUNTER.snapshot()
            released = time.perf_counter()
            GATES[key].set()

            def finished() -> bool:
                events = self.published.of(execution_id)
                return bool(events) and events[-1][1] in TERMINAL_EVENTS and all(c.done.done() for c in clients)

            await until(finished, "the execution and its streams to end")
            ended = time.perf_counter()
            await asyncio.sleep(SETTLE_S)
            after = COUNTER.snapshot()
            run.cpu_s = time.process_time() - cpu0
            if meter:
                run.db_cpu_s = meter.total() - db0
        finally:
            GATES.pop(key).set()
            if meter:
                meter.close()

        # -- checks and figures
        events = self.published.of(execution_id)
        run.events = len(events)
        expected = [(sequence, kind) for sequence, kind, _, _ in events]
        if [s for s, _ in expected] != list(range(len(events))):
            raise BenchDefect(f"the engine published {[s for s, _ in expected]}, not 0..{len(events) - 1}")
        status = (await http.get(f"/api/v1/executions/{execution_id}")).json()
        if status.get("status") != "completed":
            raise BenchDefect(f"execution {execution_id} is {status.get('status')}: {status.get('error')}")
        run.wall_s = events[-1][3] - released
        run.stream_end_s = ended - released
        commit_at = {sequence: at for sequence, _, _, at in events}
        for n, client in enumerate(clients):
            got = [(sequence, kind) for sequence, kind, _ in client.events]
            if client.error is not None or not client.ended:
                raise BenchDefect(f"client {n}: {client.error or 'no terminating chunk'}")
            if got != expected:
                raise BenchDefect(f"client {n} got {len(got)} events {got[:3]}...{got[-3:]}, expected {len(expected)}")
            run.delivered += len(got)
            for sequence, _, arrived in client.events:
                if commit_at[sequence] >= released:
                    latency = (arrived - commit_at[sequence]) * 1000
                    run.latencies_ms.append(latency)
                    run.negative += latency < 0
        window = (after[0] - before[0], after[1] - before[1])
        run.texts = window[1]
        run.selects = selects(window[1])
        run.selects_connect = selects(connected[1] - before[1])
        run.statements = window[0]["statements"]
        run.round_trips = window[0]["round_trips"]
        return run


def median(values: list[Any]) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def pair_figures(streamed: Run, quiet: Run) -> dict[str, Any]:
    """The streaming cost: the run with subscribers minus the run without."""
    extra = streamed.selects - quiet.selects
    return {
        "streaming_selects": extra,
        "selects_per_delivered_event": extra / streamed.delivered if streamed.delivered else None,
        "selects_per_appended_event": extra / streamed.events if streamed.events else None,
        "statements_per_delivered_event": (streamed.statements - quiet.statements) / streamed.delivered
        if streamed.delivered
        else None,
        "round_trips_per_delivered_event": (streamed.round_trips - quiet.round_trips) / streamed.delivered
        if streamed.delivered
        else None,
        "selects_connect_per_subscriber": streamed.selects_connect / streamed.subscribers if streamed.subscribers else None,
    }


# -- the server -----------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def server(url: str, workers: int) -> Iterator[tuple[Any, int]]:
    """The HTTP app of `cerebelum serve` (worker pool included) under uvicorn, in a thread."""
    import uvicorn

    from cerebelum.entrypoints.http import create_app

    engine = cerebelum.Engine(url, workers=workers)
    try:
        port = free_port()
        config = uvicorn.Config(
            create_app(engine, run_workers=True), host="127.0.0.1", port=port, log_level="warning", access_log=False
        )
        uv = uvicorn.Server(config)
        thread = threading.Thread(target=uv.run, name="uvicorn", daemon=True)
        thread.start()
        deadline = time.monotonic() + 30
        while not uv.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.01)
        try:
            yield engine, port
        finally:
            uv.should_exit = True
            thread.join(60)
    finally:
        engine.close()


@contextmanager
def database(backend: str, tmp: Path) -> Iterator[dict[str, Any]]:
    if backend == "sqlite":
        yield {"backend": "sqlite", "url": f"sqlite:///{tmp / 'sse.db'}"}
        return
    import psycopg
    from psycopg import sql

    name = f"cerebelum_bench_sse_{os.getpid()}"

    def admin() -> Any:
        connection = psycopg.connect(ADMIN, autocommit=True)
        METER_CONNECTIONS.add(connection)
        return connection

    with admin() as server_connection:
        server_connection.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        server_connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield {"backend": "postgresql", "url": ADMIN.rsplit("/", 1)[0] + "/" + name, "database": name, "admin_url": ADMIN}
    finally:
        with admin() as server_connection:
            server_connection.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


async def run_backend(args: argparse.Namespace, spec: dict[str, Any], port: int, published: Published) -> dict[str, Any]:
    import httpx

    progress = asyncio.Event()
    unwatch = published.watch(progress)
    bench = Bench(args, port, published, spec, progress)
    document = flow(args.steps)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=60) as http:
        created = await http.post("/api/v1/workflows", json=document)
        if created.status_code != 201:
            raise BenchDefect(f"POST /api/v1/workflows: {created.status_code} {created.text}")
        await bench.execution(http, document["name"], 0)  # warm-up, checked
        await bench.execution(http, document["name"], args.subscribers)
        pairs = []
        for i in range(args.executions):
            quiet = await bench.execution(http, document["name"], 0)
            streamed = await bench.execution(http, document["name"], args.subscribers)
            pairs.append((streamed, quiet))
            print(
                f"  {spec['backend']} execution {i + 1}/{args.executions}: latency p50 "
                f"{statistics.median(streamed.latencies_ms):.1f} ms, p99 {percentile(streamed.latencies_ms, 0.99):.1f} ms, "
                f"SELECTs {streamed.selects} vs {quiet.selects} without subscribers",
                flush=True,
            )
    unwatch()
    runs = [{"streamed": s.figures(), "quiet": q.figures(), **pair_figures(s, q)} for s, q in pairs]
    added = Counter[str]()
    for streamed, quiet in pairs:
        added.update(streamed.texts)
        added.subtract(quiet.texts)
    top = [[text, round(n / len(pairs), 1)] for text, n in added.most_common(8) if n > 0]
    return {"runs": runs, "added_statements_per_execution": top, "medians": medians(runs)}


MEDIAN_KEYS = (
    ("streamed", "latency_median_ms"),
    ("streamed", "latency_p99_ms"),
    ("streamed", "selects"),
    ("quiet", "selects"),
    (None, "selects_per_delivered_event"),
    (None, "selects_per_appended_event"),
    (None, "statements_per_delivered_event"),
    (None, "round_trips_per_delivered_event"),
    (None, "selects_connect_per_subscriber"),
    ("streamed", "wall_s"),
    ("quiet", "wall_s"),
    ("streamed", "cpu_s"),
    ("quiet", "cpu_s"),
    ("streamed", "db_cpu_s"),
    ("quiet", "db_cpu_s"),
)


def medians(runs: list[dict[str, Any]]) -> dict[str, float | None]:
    out = {}
    for side, key in MEDIAN_KEYS:
        name = f"{side}.{key}" if side else key
        out[name] = median([(run[side] if side else run)[key] for run in runs])
    return out


ROWS = (
    ("latency p50 ms (commit -> client)", "streamed", "latency_median_ms", "{:.2f}"),
    ("latency p99 ms", "streamed", "latency_p99_ms", "{:.2f}"),
    ("SELECTs, N subscribers (window)", "streamed", "selects", "{:.0f}"),
    ("SELECTs, 0 subscribers (window)", "quiet", "selects", "{:.0f}"),
    ("  of which while connecting", "streamed", "selects_connect", "{:.0f}"),
    ("SELECTs per delivered event", None, "selects_per_delivered_event", "{:.3f}"),
    ("SELECTs per appended event", None, "selects_per_appended_event", "{:.1f}"),
    ("statements per delivered event", None, "statements_per_delivered_event", "{:.3f}"),
    ("round trips per delivered event", None, "round_trips_per_delivered_event", "{:.3f}"),
    ("execution wall s, N subscribers", "streamed", "wall_s", "{:.2f}"),
    ("execution wall s, 0 subscribers", "quiet", "wall_s", "{:.2f}"),
    ("process CPU s, N subscribers", "streamed", "cpu_s", "{:.2f}"),
    ("process CPU s, 0 subscribers", "quiet", "cpu_s", "{:.2f}"),
    ("PostgreSQL CPU s, N subscribers", "streamed", "db_cpu_s", "{:.2f}"),
    ("PostgreSQL CPU s, 0 subscribers", "quiet", "db_cpu_s", "{:.2f}"),
)


def table(backend: str, result: dict[str, Any], args: argparse.Namespace) -> str:
    runs = result["runs"]
    first = runs[0]["streamed"]
    lines = [
        f"{backend}: {args.subscribers} subscribers, {first['events']} events per execution "
        f"({args.steps} steps of {args.step_ms} ms), {len(runs)} executions; median = median over executions",
    ]
    header = f"{'':<36}" + "".join(f"{f'#{i + 1}':>9}" for i in range(len(runs))) + f"{'median':>10}"
    lines += [header, "-" * len(header)]
    for label, side, key, fmt in ROWS:
        values = [(run[side] if side else run)[key] for run in runs]
        if all(v is None for v in values):
            continue
        cells = "".join(f"{fmt.format(v) if v is not None else '-':>9}" for v in values)
        m = median(values)
        lines.append(f"{label:<36}{cells}{fmt.format(m) if m is not None else '-':>10}")
    lines.append("statements added by streaming, per execution (N subscribers minus 0):")
    lines += [f"  {n:>8}  {text}" for text, n in result["added_statements_per_execution"]]
    return "\n".join(lines)


def tree_commit(path: Path) -> str | None:
    try:
        head = subprocess.run(
            ["git", "-C", str(path), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        )
        dirty = subprocess.run(["git", "-C", str(path), "status", "--porcelain", "--", "."], capture_output=True, text=True)
    except (OSError, subprocess.CalledProcessError):
        return None
    return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", action="append", choices=BACKENDS, help="one backend (repeatable; default both)")
    parser.add_argument("--subscribers", type=int, default=50)
    parser.add_argument(
        "--executions", type=int, default=5, help="measured executions per backend (each also run without subscribers)"
    )
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--step-ms", type=float, default=20.0)
    parser.add_argument("--workers", type=int, default=4, help="the server's in-process pool")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds allowed to one execution")
    parser.add_argument("--json", type=Path, default=BENCH / "results" / "sse.json")
    args = parser.parse_args()
    source = Path(cerebelum.__file__).resolve().parent
    commit = tree_commit(source)
    print(f"cerebelum {getattr(cerebelum, '__version__', '?')} from {cerebelum.__file__} (tree at {commit})", flush=True)
    started = time.monotonic()
    meta: dict[str, Any] = {
        "cerebelum_file": cerebelum.__file__,
        "cerebelum_commit": commit,
        "bench_commit": tree_commit(BENCH),
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "cpus": os.cpu_count(),
        "load_before": os.getloadavg(),
    }
    results: dict[str, Any] = {}
    failed = False
    published = Published()
    cerebelum_subscription = None
    for backend in args.only or BACKENDS:
        print(f"{backend}: ...", flush=True)
        try:
            with (
                tempfile.TemporaryDirectory() as tmp,
                database(backend, Path(tmp)) as spec,
                server(spec["url"], args.workers) as (
                    engine,
                    port,
                ),
            ):
                cerebelum_subscription = engine.subscribe(published)
                try:
                    results[backend] = asyncio.run(run_backend(args, spec, port, published))
                finally:
                    cerebelum_subscription()
        except Exception as exc:
            traceback.print_exc()
            print(f"{backend}: FAILED: {exc}", file=sys.stderr, flush=True)
            results[backend] = {"failed": f"{type(exc).__name__}: {exc}"}
            failed = True
    meta["load_after"] = os.getloadavg()
    meta["seconds"] = round(time.monotonic() - started, 1)
    print()
    for backend, result in results.items():
        if "failed" in result:
            print(f"{backend}: FAILED ({result['failed']})\n")
        else:
            print(table(backend, result, args) + "\n")
    print(f"{meta['seconds']} s, load average {meta['load_before'][0]:.1f} before, {meta['load_after'][0]:.1f} after")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"meta": meta, "results": results}, indent=2) + "\n")
    print(f"written: {args.json}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
