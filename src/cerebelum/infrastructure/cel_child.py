"""The sandbox process that evaluates CEL expressions for `cel_sandbox`.

Run as a script by path (`python -I cel_child.py MEMORY_MB`), so it imports
only the standard library and `cel`, not the engine: it starts in a fraction
of the time. It reads one JSON request per line on stdin and writes one JSON
answer per line on stdout; `ITIMER_PROF` (SIGPROF's default action ends the
process) bounds each evaluation's CPU time, `RLIMIT_AS` its memory.
"""

from __future__ import annotations

import datetime as dt
import importlib.util
import json
import signal
import sys
from collections import OrderedDict
from typing import Any


def _load_extension(path: str) -> None:
    """Load the library's compiled module alone, as `cel`: its package
    `__init__` also imports a command-line tool that takes ~0.5 s to import."""
    spec = importlib.util.spec_from_file_location("cel", path)
    if spec is None or spec.loader is None:
        return
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    sys.modules["cel"] = module


if __name__ == "__main__" and len(sys.argv) > 2:
    _load_extension(sys.argv[2])

import cel  # noqa: E402

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
EXIT_NO_MEMORY = 3


class NotJson(Exception):
    """A result that cannot be stored as JSON; the adapter makes it an ExpressionError."""


def describe(exc: Exception) -> str:
    """One line from the library's exception; its KeyError text is just the key."""
    if isinstance(exc, KeyError):
        return f"no such key {exc.args[0]!r}" if exc.args else "no such key"
    text = str(exc)
    if text.startswith("Failed to parse expression "):  # we already quote the source
        text = text.split(": ", 1)[-1]
    first = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
    return first


def to_json(value: Any, source: str) -> Any:
    """CEL result -> dict/list/str/int/float/bool/None, so callers can store it as JSON."""
    if isinstance(value, int) and not isinstance(value, bool) and not INT64_MIN <= value <= INT64_MAX:
        raise NotJson(f"{source!r} returned {value}, an integer beyond 64 bits")
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, dt.datetime):  # RFC 3339 in UTC with a 'Z'
        aware = value if value.tzinfo else value.replace(tzinfo=dt.UTC)
        return aware.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            raise NotJson(f"{source!r} returned bytes that are not UTF-8") from None
    if isinstance(value, (list, tuple)):
        return [to_json(item, source) for item in value]
    if isinstance(value, dict):  # CEL keys may be int/uint/bool: name them as json.dumps does
        # Sorted: the library's maps come back in random order, and a stable
        # order keeps event payloads byte-identical from one run to the next.
        named = {key if isinstance(key, str) else json.dumps(key): item for key, item in value.items()}
        return {key: to_json(named[key], source) for key in sorted(named)}
    if isinstance(value, cel.OptionalValue):
        return to_json(value.value(), source) if value.has_value() else None
    raise NotJson(f"{source!r} returned a {type(value).__name__}, which is not JSON")


def _virtual_memory() -> int:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    return 0


def _cap_memory(memory_mb: int) -> None:
    import resource

    try:
        _, hard = resource.getrlimit(resource.RLIMIT_AS)
        soft = _virtual_memory() + memory_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (soft if hard == resource.RLIM_INFINITY else min(soft, hard), hard))
    except (OSError, ValueError):
        pass


def _answer(programs: OrderedDict[str, Any], request: dict[str, Any]) -> dict[str, Any]:
    source = request["source"]
    program = programs.get(source)
    if program is None:
        try:
            program = programs[source] = cel.compile(source)
        except Exception as exc:
            return {"error": f"invalid expression {source!r}: {describe(exc)}"}
        if len(programs) > 256:
            programs.popitem(last=False)
    try:
        result = program.execute(request["variables"])
    except Exception as exc:  # the library raises KeyError/TypeError/RuntimeError/...
        return {"error": f"cannot evaluate {source!r}: {describe(exc)}"}
    try:
        return {"value": to_json(result, source)}
    except NotJson as exc:
        return {"error": str(exc)}


def main() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the engine ends its sandboxes itself
    signal.signal(signal.SIGPROF, signal.SIG_DFL)  # the CPU budget: the kernel ends the process
    _cap_memory(int(sys.argv[1]) if len(sys.argv) > 1 else 256)
    programs: OrderedDict[str, Any] = OrderedDict()
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    stdout.write(b"ready\n")
    stdout.flush()
    for line in stdin:  # EOF (the engine closed the pipe or died): exit
        request = json.loads(line)
        signal.setitimer(signal.ITIMER_PROF, request["cpu_ms"] / 1000)
        try:
            answer = _answer(programs, request)
        except MemoryError:
            sys.exit(EXIT_NO_MEMORY)
        finally:
            signal.setitimer(signal.ITIMER_PROF, 0)
        try:
            text = json.dumps(answer, allow_nan=False)
        except ValueError:
            text = json.dumps({"error": f"{request['source']!r} returned a number that is not JSON (NaN or infinity)"})
        stdout.write(text.encode() + b"\n")
        stdout.flush()


if __name__ == "__main__":
    main()
