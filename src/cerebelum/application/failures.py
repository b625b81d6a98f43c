"""What a handler's exception becomes in the log: its user traceback, and
whether it may be retried (spec: interaction.md section 11)."""

from __future__ import annotations

import traceback
from collections.abc import Iterable
from pathlib import Path

from cerebelum.domain.errors import NonRetryable

TRACEBACK_LIMIT = 8 * 1024  # characters kept; the last frames are the ones kept

_PACKAGE = str(Path(__file__).resolve().parents[1])  # src/cerebelum: the engine's own frames
# The machinery between the engine and the handler: event loop, threads, context copies.
_MACHINERY = ("asyncio", "concurrent", "threading.py", "contextvars")
_STDLIB = str(Path(traceback.__file__).resolve().parent)


def _engine_frame(filename: str) -> bool:
    path = str(Path(filename).resolve()) if filename and not filename.startswith("<") else filename
    if path.startswith(_PACKAGE):
        return True
    if path.startswith(_STDLIB):
        rest = path[len(_STDLIB) :].lstrip("/\\")
        return rest.startswith(_MACHINERY)
    return False


def _strip(summary: traceback.TracebackException, seen: set[int]) -> None:
    if id(summary) in seen:
        return
    seen.add(id(summary))
    summary.stack = traceback.StackSummary.from_list([f for f in summary.stack if not _engine_frame(f.filename)])
    for chained in (summary.__cause__, summary.__context__):
        if chained is not None:
            _strip(chained, seen)


def user_traceback(exc: BaseException, limit: int = TRACEBACK_LIMIT) -> str:
    """The exception's traceback with the engine's own frames dropped, at most
    `limit` characters (keeping the end: the frames nearest the raise)."""
    summary = traceback.TracebackException.from_exception(exc, capture_locals=False)
    _strip(summary, set())
    text = "".join(summary.format())
    if len(text) > limit:
        tail = text[-(limit - 100) :]
        tail = tail[tail.find("\n") + 1 :]  # from a line start
        text = f"Traceback (most recent call last):\n  ... {len(text) - len(tail)} characters of earlier frames cut\n{tail}"
        text = text[-limit:]
    return text


def last_frame(exc: BaseException) -> str | None:
    """`file:line` of the innermost user frame, if any."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if not _engine_frame(f.filename)]
    return f"{frames[-1].filename}:{frames[-1].lineno}" if frames else None


def class_names(kind: type) -> Iterable[str]:
    """The names an exception class answers to in `retry.non_retryable`: for every
    class of its MRO, its name, qualified name and module-qualified name."""
    for cls in kind.__mro__:
        yield cls.__name__
        yield cls.__qualname__
        yield f"{cls.__module__}.{cls.__qualname__}"


def non_retryable(exc: BaseException, names: Iterable[str]) -> bool:
    """Whether `exc` must fail its node at once: a `cerebelum.NonRetryable`, or an
    instance of a class named in `names` (or of a subclass)."""
    if isinstance(exc, NonRetryable):
        return True
    wanted = set(names)
    return bool(wanted) and any(name in wanted for name in class_names(type(exc)))
