"""The default code version of a process: a stable hash of its handler modules' source.

The same code on two machines gives the same version: each module's source
file is hashed by content (line endings normalised), the digests are sorted
and hashed together, so neither the paths nor the module names nor the
order of registration count. A handler with no source file (defined in a
REPL) counts by its qualified name and bytecode.
"""

from __future__ import annotations

import hashlib
import inspect
import sys
from collections.abc import Callable, Iterable
from typing import Any

VERSION_LENGTH = 16  # hex digits of the sha256: short enough to read, long enough never to collide by chance
NO_HANDLERS = "no-handlers"  # a process that loaded none (`status`, `cancel`, ...): it runs no code to version


def _source_of(func: Callable[..., Any]) -> bytes:
    func = inspect.unwrap(func)
    module = sys.modules.get(getattr(func, "__module__", None) or "")
    path = getattr(module, "__file__", None)
    if isinstance(path, str) and path.endswith(".py"):
        try:
            with open(path, "rb") as source:
                return source.read().replace(b"\r\n", b"\n")
        except OSError:
            pass
    code = getattr(func, "__code__", None)
    name = getattr(func, "__qualname__", repr(func)).encode()
    return name + b"\0" + (code.co_code if code is not None else b"")


def source_version(funcs: Iterable[Callable[..., Any]]) -> str:
    """The hash of the source of the modules that define `funcs` (each module once)."""
    by_module: dict[str, Callable[..., Any]] = {}
    loose: list[Callable[..., Any]] = []
    for func in funcs:
        module = getattr(inspect.unwrap(func), "__module__", None)
        if module and module in sys.modules and isinstance(getattr(sys.modules[module], "__file__", None), str):
            by_module.setdefault(module, func)
        else:
            loose.append(func)
    digests = sorted({hashlib.sha256(_source_of(func)).hexdigest() for func in [*by_module.values(), *loose]})
    if not digests:
        return NO_HANDLERS
    return hashlib.sha256("\n".join(digests).encode()).hexdigest()[:VERSION_LENGTH]
