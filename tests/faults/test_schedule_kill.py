"""Schedules under faults: two `cerebelum worker` processes fire one
every-second schedule; one is killed with SIGKILL mid-run. Each tick still
starts exactly one execution, no tick between the first and the last is
lost (catchup `all`), and every execution completes once."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

from tests.faults.cluster import Cluster, wait_until
from tests.helpers import definition, fn

from cerebelum.application.schedules import create_schedule


def test_a_killed_worker_changes_nothing_about_the_ticks(cluster: Cluster) -> None:
    engine = cluster.engine
    engine.create_workflow(definition("ticking", {"a": fn("step")}))
    ports = engine.host.schedule_ports()
    create_schedule({"name": "every-second", "workflow": "ticking", "every_s": 1, "overlap": "allow", "catchup": "all"}, ports)

    def scheduled() -> list:  # type: ignore[type-arg]
        return [e for e in engine.executions(limit=10_000) if e.schedule_name == "every-second"]

    first, second = cluster.spawn(concurrency=4), cluster.spawn(concurrency=4)
    wait_until(lambda: len(scheduled()) >= 3, 30, "three ticks")
    cluster.kill(first)
    before = len(scheduled())
    wait_until(lambda: len(scheduled()) >= before + 3, 30, "three more ticks after the kill")
    assert cluster.stop(second) == 0, cluster.logs()
    runs = scheduled()
    late = cluster.spawn(concurrency=4)  # takes over what the killed worker held (its leases lapse)
    rows = cluster.wait_terminal([e.id for e in runs], timeout=60)
    assert cluster.stop(late) == 0, cluster.logs()
    ticks = sorted(e.schedule_tick for e in rows)
    assert Counter(e.key for e in rows).most_common(1)[0][1] == 1
    assert ticks == [ticks[0] + timedelta(seconds=i) for i in range(len(ticks))], ticks  # none lost, none doubled
    for row in rows:
        assert row.status == "completed", row
        cluster.check_completed_once(row)
