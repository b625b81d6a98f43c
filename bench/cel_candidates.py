"""Compare the two CEL packages on PyPI for Cerebelum's expression needs.

    pip install cel-python==0.5.0 common-expression-language==0.10.0
    python bench/cel_candidates.py

Candidates (each is skipped if its package is missing):
  * common-expression-language (module ``cel``, Rust cel-interpreter via PyO3)
  * cel-python (module ``celpy``, pure Python; default interpreted runner and
    its transpiling ``CompiledRunner``)

Reports compile time per expression, evaluation time per call (activation
conversion + evaluation + conversion back to plain Python), a correctness
checklist, the error messages for failing expressions, a thread-safety check
and installed size including dependencies.
"""

from __future__ import annotations

import datetime as dt
import importlib.metadata as md
import logging
import re
import statistics
import threading
import time
from collections.abc import Callable
from typing import Any

try:
    import cel
except ImportError:  # pragma: no cover
    cel = None
try:
    import celpy
except ImportError:  # pragma: no cover
    celpy = None

# celpy's CompiledRunner logs every evaluation error at ERROR level ("Internal error: ...").
logging.getLogger("celpy").setLevel(logging.CRITICAL)

COMPILE_ERROR = "<compile error>"
EVAL_ERROR = "<eval error>"


def rfc3339(value: str) -> dt.datetime:
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))


class Candidate:
    """Uniform face over one library: compile(src) -> program; run(program, activation) -> raw."""

    def __init__(
        self, name: str, dist: str, compile_: Callable[[str], Any], run: Callable[[Any, dict[str, Any]], Any]
    ) -> None:
        self.name, self.dist, self.compile, self.run = name, dist, compile_, run


def candidates() -> list[Candidate]:
    found: list[Candidate] = []
    if cel is not None:
        found.append(Candidate("cel (rust)", "common-expression-language", cel.compile, lambda p, act: p.execute(act)))
    if celpy is not None:
        # celpy keeps ONE global lark parser whose tree class depends on the runner
        # that built it first, so swap a per-runner parser in and out.
        parsers: dict[Any, Any] = {}
        for label, runner in (("celpy interp", celpy.InterpretedRunner), ("celpy compiled", celpy.CompiledRunner)):

            def comp(src: str, runner: Any = runner) -> Any:
                celpy.celparser.CELParser.CEL_PARSER = parsers.get(runner)
                env = celpy.Environment(runner_class=runner)
                parsers[runner] = celpy.celparser.CELParser.CEL_PARSER
                return env.program(env.compile(src))

            found.append(Candidate(label, "cel-python", comp, lambda p, act: p.evaluate(celpy.json_to_cel(act))))
    return found


def to_plain(value: Any) -> Any:
    """What an adapter would do: CEL result -> JSON-able Python (both libs subclass builtins)."""
    if value is None:
        return None
    if isinstance(value, bool) or type(value).__name__ == "BoolType":  # celpy's bool is an int
        return bool(value)
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, str):
        return str(value)
    if isinstance(value, bytes):
        return bytes(value).decode("utf-8")
    if isinstance(value, dict):
        return {str(to_plain(k)): to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_plain(v) for v in value]
    raise TypeError(f"cannot convert {type(value).__name__}")


def same(a: Any, b: Any) -> bool:
    """Equality that also checks types (True != 1, 1 != 1.0)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


ACT: dict[str, Any] = {
    "input": {"name": "order-42", "x": 2, "when": "2026-01-01T00:00:00Z"},
    "results": {
        "validate": {"total": 1500, "items": [{"sku": "a", "qty": 2}, {"sku": "b", "qty": 1}]},
        "ship": ["box-1", "box-2"],
        "charge": True,
        "a": {},
    },
    "data": {"approved": True, "score": 0.75, "count": 3},
    "item": {"sku": "a", "qty": 2},
    "index": 0,
}


def with_data(**kv: Any) -> dict[str, Any]:
    return {**ACT, "data": {**ACT["data"], **kv}}


# (label, expression, activation, expected plain value | COMPILE_ERROR | EVAL_ERROR)
CHECKLIST: list[tuple[str, str, dict[str, Any], Any]] = [
    ("int > int literal", "results.validate.total > 1000", ACT, True),
    ("bool field", "data.approved", ACT, True),
    ("has() guard", "has(data.approved) && data.approved", ACT, True),
    ("has() on missing", "has(data.nope) && data.nope", ACT, False),
    ("size(list)", "size(results.ship)", ACT, 2),
    ("list of dicts", "results.validate.items", ACT, ACT["results"]["validate"]["items"]),
    ("map literal", "{'charged': results.charge, 'shipped': size(results.ship)}", ACT, {"charged": True, "shipped": 2}),
    ("item.qty * 2", "item.qty * 2", ACT, 4),
    ("index == 0", "index == 0", ACT, True),
    ("string concat", "input.name + '-x'", ACT, "order-42-x"),
    ("timestamp()", "timestamp('2026-01-01T00:00:00Z')", ACT, "2026-01-01T00:00:00Z"),
    ("ts + duration", "timestamp(input.when) + duration('90m')", ACT, "2026-01-01T01:30:00Z"),
    ("string(ts) RFC3339", "string(timestamp('2026-01-01T00:00:00Z'))", ACT, rfc3339),
    ("duration()", "duration('1.5s')", ACT, 1.5),
    ("float >= 0.5", "data.score >= 0.5", ACT, True),
    ("int(1) >= 0.5", "data.score >= 0.5", with_data(score=1), True),
    ("int(0) >= 0.5", "data.score >= 0.5", with_data(score=0), False),
    ("int == 1.0", "data.score == 1.0", with_data(score=1), True),
    ("x in [1,2,3]", "input.x in [1,2,3]", ACT, True),
    ("missing key", "results.a.b.c", ACT, EVAL_ERROR),
    ("unknown variable", "nope.x", ACT, EVAL_ERROR),
    ("syntax error", "1 +", ACT, COMPILE_ERROR),
    ("int + string", "data.count + 'x'", ACT, EVAL_ERROR),
]

ERROR_EXPRS = ["results.a.b.c", "1 +", "data.count + 'x'", "nope.x", "timestamp('bad')"]

TIMED = [
    "results.validate.total > 1000",
    "has(data.approved) && data.approved",
    "size(results.ship)",
    "{'charged': results.charge, 'shipped': size(results.ship)}",
    "item.qty * 2",
    "input.name + '-x'",
    "data.score >= 0.5",
]


def matches(got: Any, expected: Any) -> bool:
    if not callable(expected):
        return same(got, expected)
    try:  # a predicate, e.g. "parses as RFC 3339"
        return isinstance(got, str) and expected(got) is not None
    except ValueError:
        return False


def run_checklist(c: Candidate) -> tuple[int, list[str]]:
    failures: list[str] = []
    for label, src, act, expected in CHECKLIST:
        try:
            prog = c.compile(src)
        except Exception as exc:
            got: Any = COMPILE_ERROR
            detail = repr(exc)[:80]
        else:
            try:
                got = to_plain(c.run(prog, act))
                detail = repr(got)
            except Exception as exc:
                got, detail = EVAL_ERROR, f"{type(exc).__name__}"
        if not matches(got, expected):
            failures.append(f"{label}: {src} -> {detail}")
    return len(CHECKLIST) - len(failures), failures


def per_call(fn: Callable[[], Any], min_time: float = 0.2) -> float:
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < min_time:
        fn()
        n += 1
    return (time.perf_counter() - t0) / n


def compile_us(c: Candidate) -> float:
    return statistics.mean(per_call(lambda s=s: c.compile(s), 0.3) for s in TIMED) * 1e6


def eval_us(c: Candidate, act: dict[str, Any]) -> float:
    progs = [c.compile(s) for s in TIMED]
    return statistics.mean(per_call(lambda p=p: to_plain(c.run(p, act)), 0.3) for p in progs) * 1e6


def thread_safe(c: Candidate, threads: int = 8, calls: int = 300) -> str:
    """One shared program, each thread its own activation; any wrong answer means unsafe."""
    prog, bad = c.compile("item.qty * 2"), []

    def work(k: int) -> None:
        act = {**ACT, "item": {"qty": k}}
        for _ in range(calls):
            try:
                if to_plain(c.run(prog, act)) != 2 * k:
                    bad.append("wrong result")
            except Exception as exc:
                bad.append(type(exc).__name__)

    ts = [threading.Thread(target=work, args=(k,)) for k in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return "ok" if not bad else f"NO:{len(bad)}/{threads * calls}"


def install_bytes(dist: str, seen: set[str]) -> tuple[int, list[str]]:
    """Bytes of a distribution's installed files plus its applicable dependencies."""
    key = re.sub(r"[-_.]+", "-", dist).lower()
    if key in seen:
        return 0, []
    seen.add(key)
    try:
        d = md.distribution(dist)
    except md.PackageNotFoundError:
        return 0, []
    size, names = sum((f.size or 0) for f in (d.files or [])), [key]
    for req in d.requires or []:
        name, _, marker = req.partition(";")
        if marker and not marker_applies(marker):
            continue
        s, n = install_bytes(re.split(r"[\s<>=!~\[(]", name.strip(), maxsplit=1)[0], seen)
        size, names = size + s, names + n
    return size, names


def marker_applies(marker: str) -> bool:
    try:
        from packaging.markers import Marker
    except ImportError:  # without packaging, ignore conditional deps
        return False
    return bool(Marker(marker).evaluate({"extra": ""}))


def first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:110]


def main() -> None:
    cands = candidates()
    big = {
        **ACT,
        "results": {**ACT["results"], "rows": [{"id": i, "name": f"row-{i}", "ok": True} for i in range(200)]},
    }
    rows = []
    for c in cands:
        passed, failures = run_checklist(c)
        own = sum((f.size or 0) for f in (md.distribution(c.dist).files or []))
        total, deps = install_bytes(c.dist, set())
        kb = f"{own // 1024}/{total // 1024}"
        rows.append((c, compile_us(c), eval_us(c, ACT), eval_us(c, big), passed, failures, thread_safe(c), kb, deps))

    print(
        f"{'candidate':<16}{'compile us':>11}{'eval us':>9}{'eval us(big)':>13}"
        f"{'checklist':>11}  {'threads':<12}{'install KB own/total':>22}"
    )
    for c, cu, eu, bu, passed, _, ts, kb, _ in rows:
        print(f"{c.name:<16}{cu:>11.1f}{eu:>9.1f}{bu:>13.1f}{passed:>6}/{len(CHECKLIST):<4}  {ts:<12}{kb:>22}")
    print("(eval = convert activation + evaluate + convert result; big = +200-row list in results)")
    if len(rows) > 1:
        base = rows[0]
        for r in rows[1:]:
            print(
                f"ratio {r[0].name} / {base[0].name}: compile x{r[1] / base[1]:.1f}, "
                f"eval x{r[2] / base[2]:.1f}, eval(big) x{r[3] / base[3]:.1f}"
            )
    for c, *_, failures, _ts, _kb, deps in rows:
        print(f"\n[{c.name}] deps: {', '.join(deps)}")
        for f in failures:
            print(f"  FAIL {f}")
        print(
            "  raw result types:",
            ", ".join(
                f"{s!r}->{type(c.run(c.compile(s), ACT)).__name__}"
                for s in ("size(results.ship)", "results.validate.items", "timestamp(input.when)")
            ),
        )
        for src in ERROR_EXPRS:
            try:
                c.run(c.compile(src), ACT)
                print(f"  {src!r}: no error")
            except Exception as exc:
                print(f"  {src!r}: {first_line(exc)}")


if __name__ == "__main__":
    main()
