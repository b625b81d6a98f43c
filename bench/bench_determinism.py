"""Benchmarks of deterministic execution: folding, replay, virtual time.

    .venv/bin/python bench/bench_determinism.py [--iterations N] [--delays N]

1. Builds a ~100,000-event history by running a real workflow in virtual time
   on `memory://` (a loop: a function node that draws randomness, then a
   one-second delay, `--iterations` times; a checkpoint every 1,000 events),
   then measures how many events per second `fold` turns into a state.
2. Replays that history with `Engine.replay`: from the last checkpoint (the
   default) and from the start.
3. Runs a workflow of `--delays` one-day delays in virtual time and reports
   the simulated days against the wall time.

Prints a small table; asserts nothing. The default run takes well under two
minutes on a laptop.
"""

from __future__ import annotations

import argparse
import random
import time
from collections.abc import Callable
from typing import Any

import cerebelum
from cerebelum.domain.events import parse_rfc3339
from cerebelum.domain.state import fold

DAY = 86_400


def loop_workflow(iterations: int) -> dict[str, Any]:
    """work -> tick (1 s delay) -> work ..., `iterations` times round, then done.

    Eight events per round: node_started/node_completed of work, edge_taken,
    node_started/timer_started/timer_fired/node_completed of tick, edge_taken.
    """
    return {
        "name": "bench_history",
        "entrypoint": "work",
        "nodes": {
            "work": {"type": "function", "config": {"handler": "work"}},
            "tick": {"type": "delay", "config": {"seconds": 1}},
            "done": {"type": "function", "config": {"handler": "done"}},
        },
        "edges": [
            {"from": "work", "to": "tick"},
            {"from": "tick", "to": "work", "max_iterations": iterations},
            {"from": "tick", "to": "done"},
        ],
    }


def delays_workflow(delays: int) -> dict[str, Any]:
    """A one-day delay that loops back to itself: `delays` delays in all."""
    return {
        "name": "bench_days",
        "entrypoint": "day",
        "nodes": {
            "day": {"type": "delay", "config": {"seconds": DAY}},
            "done": {"type": "function", "config": {"handler": "done"}},
        },
        "edges": [
            {"from": "day", "to": "day", "max_iterations": delays - 1},
            {"from": "day", "to": "done"},
        ],
    }


def registry() -> cerebelum.HandlerRegistry:
    handlers = cerebelum.HandlerRegistry()

    async def work(ctx: cerebelum.StepContext) -> dict[str, Any]:
        previous = ctx.data if isinstance(ctx.data, dict) else {}
        return {"n": previous.get("n", 0) + 1, "r": random.randint(0, 9)}  # intercepted: deterministic

    async def done(ctx: cerebelum.StepContext) -> Any:
        return ctx.data

    handlers.register("work", work)
    handlers.register("done", done)
    return handlers


def timed(func: Callable[[], Any], repeat: int = 1) -> tuple[float, Any]:
    """Best wall time of `repeat` calls, and the last result."""
    times, result = [], None
    for _ in range(repeat):
        started = time.perf_counter()
        result = func()
        times.append(time.perf_counter() - started)
    return min(times), result


def row(name: str, value: str, note: str = "") -> None:
    print(f"{name:<44} {value:>16}  {note}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--iterations", type=int, default=12_500, help="loop rounds of the history (8 events each)")
    parser.add_argument("--checkpoint-every", type=int, default=1000, help="checkpoint cadence while building it")
    parser.add_argument("--delays", type=int, default=1000, help="one-day delays of the virtual-time run")
    parser.add_argument("--repeat", type=int, default=3, help="repetitions of the fold and replay timings (best kept)")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)

    handlers = registry()
    print(f"cerebelum {cerebelum.__version__}, memory:// store, virtual time, seed {args.seed}\n")
    row("measure", "figure", "note")
    row("-" * 44, "-" * 16, "-" * 30)
    with cerebelum.Engine(
        "memory://", handlers=handlers, virtual_time=True, seed=args.seed, checkpoint_every=args.checkpoint_every
    ) as engine:
        build, execution = timed(lambda: engine.run(loop_workflow(args.iterations), {}))
        log = engine.events(execution.id)
        checkpoints = [e for e in log if e.type == "checkpoint_created"]
        row("history: events", f"{len(log):,}", f"{execution.status}, {len(checkpoints)} checkpoints")
        row("history: built in (wall)", f"{build:.2f} s", f"{len(log) / build:,.0f} events/s written")

        # 1. folding
        fold_time, state = timed(lambda: fold(log), args.repeat)
        assert state.sequence == len(log) - 1
        row("fold: whole history", f"{fold_time * 1000:.1f} ms", f"best of {args.repeat}")
        row("fold: events per second", f"{len(log) / fold_time:,.0f}", "")

        # 2. replay from the last checkpoint vs from the start
        from_cp, report_cp = timed(lambda: engine.replay(execution.id), args.repeat)
        from_start, report_full = timed(lambda: engine.replay(execution.id, from_start=True), args.repeat)
        before = log[report_cp.from_sequence - 1].type if report_cp.from_sequence else "-"
        row(
            "replay: from last checkpoint",
            f"{from_cp * 1000:.1f} ms",
            f"from seq {report_cp.from_sequence} (after {before}), {report_cp.checked:,} events, identical={report_cp.identical}",
        )
        row(
            "replay: from the start",
            f"{from_start * 1000:.1f} ms",
            f"{report_full.checked:,} events, identical={report_full.identical}, "
            f"{report_full.checked / from_start:,.0f} events/s",
        )
        row("replay: checkpoint / full (time)", f"{from_cp / from_start:.4f}", f"{from_start / from_cp:,.0f}x faster")
        if not report_cp.identical and report_cp.divergence is not None:
            print(f"   note: replay from the checkpoint diverged: {report_cp.divergence.to_json()}")

    # 3. a thousand one-day delays in virtual time
    with cerebelum.Engine("memory://", handlers=handlers, virtual_time=True, seed=args.seed) as engine:
        wall, execution = timed(lambda: engine.run(delays_workflow(args.delays), {"start": True}))
        log = engine.events(execution.id)
        fired = [e for e in log if e.type == "timer_fired"]
        simulated = parse_rfc3339(fired[-1].payload["clock"]) - parse_rfc3339(log[0].payload["started_at"])
    days = simulated.total_seconds() / DAY
    row(f"virtual time: {args.delays:,} one-day delays", f"{wall:.2f} s", f"{execution.status}, {len(log):,} events")
    row("virtual time: simulated days", f"{days:,.0f}", f"{days / wall:,.0f} simulated days per wall second")
    row("virtual time: wall per delay", f"{wall / max(len(fired), 1) * 1000:.2f} ms", "")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
