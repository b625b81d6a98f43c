"""Medians over the repeats, the ratios, the targets, and the one table."""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from perf.common import FLOOR_CONNECTIONS, STEPS, W2_CONCURRENCY, W3_CONCURRENCY

Samples = dict[str, dict[str, dict[str, list[dict[str, Any]]]]]  # backend -> key -> system -> runs
RSS_FLAT_MIB = 5.0


def values_of(runs: list[dict[str, Any]], path: str) -> list[float]:
    """One metric (a dotted path) of every run that has it."""
    values = []
    for run in runs:
        value: Any = run
        for part in path.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        if isinstance(value, int | float) and not math.isnan(value):
            values.append(float(value))
    return values


def median_of(runs: list[dict[str, Any]], path: str) -> float | None:
    values = values_of(runs, path)
    return statistics.median(values) if values else None


def spread_of(runs: list[dict[str, Any]], path: str) -> float | None:
    """Half the range over the repeats, relative to the median: how far to trust it."""
    values = values_of(runs, path)
    if len(values) < 2:
        return None
    middle = statistics.median(values)
    return (max(values) - min(values)) / 2 / abs(middle) if middle else None


@dataclass(frozen=True)
class Row:
    label: str
    key: str  # the measurement (w1, w2c16, ...)
    metric: str  # the value's path in a Cerebelum / DBOS result
    fmt: str
    floor1: str | None = None  # the comparable metric of the 1-connection floor
    floor16: str | None = None
    # target(cerebelum, dbos, floor1) -> (text, met or None when it cannot be judged)
    target: Callable[[float | None, float | None, float | None], tuple[str, bool | None]] | None = None
    ratios: bool = True  # False where a quotient means nothing (a growth that may be negative)


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b not in (None, 0) else None


def _w1_pg(c: float | None, d: float | None, f: float | None) -> tuple[str, bool | None]:
    cd, cf = _ratio(c, d), _ratio(c, f)
    met = None if cd is None or cf is None else (cd <= 0.25 and cf <= 2.0)
    return "≤0.25x DBOS, ≤2x floor", met


def _five_x(c: float | None, d: float | None, _f: float | None) -> tuple[str, bool | None]:
    cd = _ratio(c, d)
    return "≥5x DBOS", None if cd is None else cd >= 5.0


def _w2_pg(c: float | None, d: float | None, f: float | None) -> tuple[str, bool | None]:
    cd, cf = _ratio(c, d), _ratio(c, f)
    met = None if cd is None or cf is None else (cd >= 5.0 and cf > 1.0)
    return "≥5x DBOS, > floor 1c", met


def rows(backend: str) -> list[Row]:
    pg = backend == "postgresql"
    result = [
        Row("W1 ms/step (marginal: 1→10 steps)", "w1", "ms_per_step", "{:.3f}", "ms_per_commit", None, _w1_pg if pg else None),
        Row("W1 ms fixed per execution", "w1", "ms_fixed", "{:.2f}"),
        Row(f"W1 ms per {STEPS}-step execution", "w1", "ms_per_execution_10", "{:.2f}"),
        Row(
            f"W1 steps/s ({STEPS}-step, back to back)",
            "w1",
            "steps_per_s",
            "{:.0f}",
            "commits_per_s",
            None,
            None if pg else _five_x,
        ),
        Row("W1 CPU ms/step (marginal)", "w1", "cpu_ms_per_step", "{:.3f}", "cpu_ms_per_commit"),
    ]
    if pg:
        result.append(Row("W1 server CPU ms/step (marginal)", "w1", "db_cpu_ms_per_step", "{:.3f}", "db_cpu_ms_per_commit"))
    result += [
        Row("W1 statements sent/step (marginal)", "w1", "statements.round_trips.per_step", "{:.1f}"),
        Row("W1 transactions/step (marginal)", "w1", "statements.transactions.per_step", "{:.1f}"),
    ]
    for c in W2_CONCURRENCY:
        key = f"w2c{c}"
        result += [
            Row(f"W2 c={c} steps/s", key, "steps_per_s", "{:.0f}", "commits_per_s", "commits_per_s", _w2_pg if pg else _five_x),
            Row(f"W2 c={c} executions/s", key, "executions_per_s", "{:.1f}"),
            Row(f"W2 c={c} CPU ms/step", key, "cpu_ms_per_step", "{:.3f}", "cpu_ms_per_commit", "cpu_ms_per_commit"),
        ]
        if pg:
            result.append(
                Row(
                    f"W2 c={c} server CPU ms/step",
                    key,
                    "db_cpu_ms_per_step",
                    "{:.3f}",
                    "db_cpu_ms_per_commit",
                    "db_cpu_ms_per_commit",
                )
            )
        result.append(Row(f"W2 c={c} RSS MiB at end", key, "rss_mib_end", "{:.1f}"))
        result.append(Row(f"W2 c={c} RSS growth MiB, 25%→100%", key, "rss_growth_mib", "{:+.1f}", target=_flat, ratios=False))
    result.append(
        Row(f"W3 map, max_concurrency {W3_CONCURRENCY}: items/s", "w3", "items_per_s", "{:.0f}", "commits_per_s", "commits_per_s")
    )
    return result


def _flat(c: float | None, _d: float | None, _f: float | None) -> tuple[str, bool | None]:
    return f"flat (≤{RSS_FLAT_MIB:.0f} MiB)", None if c is None else c <= RSS_FLAT_MIB


def build(samples: Samples) -> dict[str, Any]:
    """Every row of every backend: medians, ratios, target verdicts (also the JSON's 'rows')."""
    built: dict[str, Any] = {}
    for backend, by_key in samples.items():
        out = []
        floor1 = by_key.get("floor1", {}).get("floor", [])
        floor16 = by_key.get(f"floor{FLOOR_CONNECTIONS}", {}).get("floor", [])
        for row in rows(backend):
            runs = by_key.get(row.key, {})
            c = median_of(runs.get("cerebelum", []), row.metric)
            d = median_of(runs.get("dbos", []), row.metric)
            f1 = median_of(floor1, row.floor1) if row.floor1 else None
            f16 = median_of(floor16, row.floor16) if row.floor16 else None
            target, met = row.target(c, d, f1) if row.target else ("", None)
            out.append(
                {
                    "label": row.label,
                    "fmt": row.fmt,
                    "cerebelum": c,
                    "spread": spread_of(runs.get("cerebelum", []), row.metric),
                    "dbos": d,
                    "c_over_dbos": _ratio(c, d) if row.ratios else None,
                    "floor_1": f1,
                    "c_over_floor_1": _ratio(c, f1),
                    f"floor_{FLOOR_CONNECTIONS}": f16,
                    f"c_over_floor_{FLOOR_CONNECTIONS}": _ratio(c, f16),
                    "target": target,
                    "met": met,
                }
            )
        built[backend] = out
    return built


def _cell(value: float | None, fmt: str) -> str:
    return "-" if value is None else fmt.format(value)


def _times(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.2f}x" if value < 10 else f"{value:.1f}x"


LABELS = {"round_trips": "sent"}
TITLES = {"sqlite": "SQLite", "postgresql": "PostgreSQL"}


def table(built: dict[str, Any], samples: Samples, notes: dict[str, str]) -> str:
    f16 = f"floor_{FLOOR_CONNECTIONS}"
    header = (
        f"{'':<40} {'Cerebelum':>15} {'DBOS':>9} {'C/DBOS':>8} {'floor 1c':>9} {'C/f1c':>7} "
        f"{'floor ' + str(FLOOR_CONNECTIONS) + 'c':>9} {'C/f' + str(FLOOR_CONNECTIONS) + 'c':>7}  {'target':<22} met"
    )
    lines: list[str] = []
    for backend, out in built.items():
        lines += ["", f"{TITLES.get(backend, backend)} — {notes.get(backend, '')}", header, "-" * len(header)]
        for row in out:
            spread = f" ±{row['spread'] * 100:.0f}%" if row["spread"] is not None else ""
            met = {True: "yes", False: "NO", None: ""}[row["met"]] if row["target"] else ""
            lines.append(
                f"{row['label']:<40} {_cell(row['cerebelum'], row['fmt']) + spread:>15} {_cell(row['dbos'], row['fmt']):>9} "
                f"{_times(row['c_over_dbos']):>8} {_cell(row['floor_1'], row['fmt']):>9} {_times(row['c_over_floor_1']):>7} "
                f"{_cell(row[f16], row['fmt']):>9} {_times(row['c_over_' + f16]):>7}  {row['target']:<22} {met}"
            )
        lines += floor_lines(samples.get(backend, {}))
    return "\n".join(lines)


def floor_lines(by_key: dict[str, dict[str, list[dict[str, Any]]]]) -> list[str]:
    lines = []
    for key, label in (("floor1", "1 connection"), (f"floor{FLOOR_CONNECTIONS}", f"{FLOOR_CONNECTIONS} connections")):
        runs = by_key.get(key, {}).get("floor", [])
        if not runs:
            continue
        ms, rate = median_of(runs, "ms_per_commit"), median_of(runs, "commits_per_s")
        auto_rate = median_of(runs, "autocommit.commits_per_s")
        lines.append(
            f"  floor, {label}: {rate or 0:.0f} INSERT+COMMIT/s ({ms or 0:.3f} ms each); "
            f"autocommit INSERT alone: {auto_rate or 0:.0f}/s — {runs[0].get('statement', '')}"
        )
    return lines


def statement_lines(samples: Samples) -> list[str]:
    """What each system sends per step and per execution (W1, counted through SQLAlchemy)."""
    lines = [
        "",
        "What each system sends to the database in W1, counted at the driver (psycopg calls, sqlite3 trace); "
        "'sent' includes BEGIN/COMMIT, 'transactions' counts commits, rollbacks and autocommit statements:",
    ]
    for backend, by_key in samples.items():
        for system in ("cerebelum", "dbos"):
            runs = by_key.get("w1", {}).get(system, [])
            if not runs or "statements" not in runs[-1]:
                continue
            profile = runs[-1]["statements"]
            parts = ", ".join(
                f"{LABELS.get(name, name)} {profile[name]['per_step']:.1f}/step + {profile[name]['fixed']:.1f}/execution"
                for name in ("round_trips", "statements", "transactions", "savepoints", "checkouts")
            )
            lines.append(f"  {TITLES.get(backend, backend)} {system}: {parts}")
            for text, count in profile["top_statements_per_10_step_execution"][:6]:
                lines.append(f"      {count:6.2f} x {text}")
    return lines
