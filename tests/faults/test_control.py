"""Pause, resume and cancel through the CLI while several worker processes are
busy (spec section 8: pausing stops an execution before its next node starts;
resuming continues where it stopped; cancel is `failed` with kind `cancelled`;
an illegal transition exits 2)."""

from __future__ import annotations

import os
import subprocess
import time

from tests.faults.cluster import CLI, Cluster, wait_until
from tests.helpers import chain, definition, fn, of_type

import cerebelum

STEPS = [f"s{i}" for i in range(10)]


def run_cli(cluster: Cluster, *args: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CEREBELUM_")}
    return subprocess.Popen(
        [str(CLI), *args, "--db", cluster.url],
        cwd=cluster.tmp,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(proc: subprocess.Popen[str]) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=60)
    return proc.returncode, out, err


def cli_all(cluster: Cluster, *commands: tuple[str, ...]) -> list[tuple[int, str, str]]:
    """Run several CLI commands at once (each pays Python's start-up)."""
    return [finish(p) for p in [run_cli(cluster, *command) for command in commands]]


def quiet(cluster: Cluster, execution_id: str, for_s: float = 0.8) -> list[cerebelum.Event]:
    """The log once it stopped growing (nothing in flight any more)."""
    seen: list[int] = []

    def still() -> list[cerebelum.Event] | None:
        log = cluster.engine.events(execution_id)
        seen.append(len(log))
        window = int(for_s / 0.2)
        return log if len(seen) > window and len(set(seen[-window:])) == 1 else None

    return wait_until(still, 20, f"the log of {execution_id} to settle", every=0.2)


def test_pause_resume_cancel_through_the_cli_while_workers_are_busy(cluster: Cluster) -> None:
    engine = cluster.engine
    engine.create_workflow(definition("slow", {s: fn("step") for s in STEPS}, chain(*STEPS)))
    for _ in range(3):
        cluster.spawn(concurrency=3, wait_ready=False)
    for proc in cluster.procs:
        cluster.wait_ready(proc)
    # 1.2 s a step: the executions must outlast six CLI start-ups on a loaded 2-core machine (0.6 s raced them)
    ids = [engine.execute("slow", {"sleep": 1.2}).id for _ in range(9)]
    wait_until(lambda: all(of_type(engine.events(i), "node_started") for i in ids), 30, "every execution to start a node")
    to_pause, to_cancel, untouched = ids[:3], ids[3:6], ids[6:]

    requested = time.monotonic()
    results = cli_all(cluster, *[("pause", i) for i in to_pause], *[("cancel", i) for i in to_cancel])
    print(f"6 CLI requests answered in {time.monotonic() - requested:.2f}s")
    for code, out, err in results:
        assert code == 0, (out, err)

    # cancelled: failed/cancelled, nothing after, no handler started for a node the log does not have
    for execution_id in to_cancel:
        [row] = cluster.wait_terminal([execution_id], timeout=20)
        assert row.status == "failed" and row.error["kind"] == "cancelled", row.error
        log = cluster.check_completed_once(row)
        assert log[-1].type == "execution_failed"
        assert len(of_type(log, "node_completed")) < len(STEPS)
        started = {e.node_id for e in of_type(log, "node_started")}
        time.sleep(0.5)
        assert set(cluster.runs(execution_id)) <= started

    # paused: once the node in flight is done, nothing more starts
    for execution_id in to_pause:
        wait_until(lambda i=execution_id: engine.status(i).status == "paused", 20, f"{execution_id} to pause")
        log = quiet(cluster, execution_id)
        paused_at = log.index(of_type(log, "execution_paused")[0])
        assert not [e for e in log[paused_at:] if e.type == "node_started"]
        assert of_type(log, "node_completed")
        # A handler runs only once its node_started is durable; the commit that made it
        # durable may bring the pause request back, so at most that one node waits for resume.
        started = {e.node_id for e in of_type(log, "node_started")}
        ran = set(cluster.runs(execution_id))
        assert ran <= started and len(started - ran) <= 1, (started, ran)
        cluster.check_completed_once(engine.status(execution_id))
    assert engine.store.queue.counts()["paused"] == 3

    # illegal transitions exit 2: resume a running one, cancel a cancelled one
    running = next((i for i in untouched if engine.status(i).status == "running"), untouched[0])
    [(code_resume, _, err_resume), (code_cancel, _, err_cancel)] = cli_all(cluster, ("resume", running), ("cancel", to_cancel[0]))
    assert (code_resume, code_cancel) == (2, 2), (err_resume, err_cancel)
    assert "Traceback" not in err_resume + err_cancel

    rows = cluster.wait_terminal(untouched, timeout=30)
    assert {r.status for r in rows} == {"completed"}
    for row in rows:
        cluster.check_completed_once(row)
    [(code_cancel, _, _), (code_pause, _, _)] = cli_all(cluster, ("cancel", untouched[0]), ("pause", untouched[1]))
    assert (code_cancel, code_pause) == (2, 2)

    # resume the paused ones: they carry on where they stopped
    for code, out, err in cli_all(cluster, *[("resume", i) for i in to_pause]):
        assert code == 0, (out, err)

    def settled() -> list[cerebelum.Execution] | None:
        rows = [engine.status(i) for i in to_pause]
        ended = all(r.is_terminal or (r.error or {}).get("kind") == "divergence" for r in rows)
        return rows if ended else None

    rows = wait_until(settled, 30, "the resumed executions to end")
    for row in rows:
        assert row.status == "completed", row.error
        log = cluster.check_completed_once(row)
        assert [e.node_id for e in of_type(log, "node_completed")] == STEPS
        types = [e.type for e in log]
        assert types.index("execution_paused") < types.index("execution_resumed")
        runs = cluster.runs(row.id)
        assert all(len(v) == 1 for v in runs.values())  # nothing ran twice across the pause
