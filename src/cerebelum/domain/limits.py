"""Limits under hostile input (docs/limits.md): caps with safe defaults.

One small frozen object, read once from the environment (`CEREBELUM_*`
variables, see `ENV`) unless a caller passes its own. A compiled Workflow
carries the limits it was read under, so the orchestrator applies the same
ones to every decision about it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from functools import lru_cache

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1


@dataclass(frozen=True)
class Limits:
    max_nodes: int = 1_000  # nodes per definition, inline nodes included
    max_node_depth: int = 32  # nesting of inline nodes (parallel / map / sequential)
    max_value_depth: int = 128  # nesting of JSON values: input, outputs, definitions
    max_map_items: int = 10_000  # items per map node (else the node fails: limit_exceeded)
    max_events: int = 100_000  # events per execution (else it fails: limit_exceeded)
    max_workflow_depth: int = 16  # nesting of child executions (else the node fails: depth_exceeded)
    max_expression_length: int = 4_096  # characters of one CEL expression
    max_comprehension_depth: int = 3  # nesting of map/filter/all/exists/exists_one
    expression_cpu_ms: int = 100  # CPU time of one sandboxed evaluation
    expression_memory_mb: int = 256  # memory one sandboxed evaluation may add

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Limits:
        """Defaults overridden by `CEREBELUM_<FIELD>` (e.g. CEREBELUM_MAX_NODES=5000)."""
        given: dict[str, int] = {}
        for name, variable in ENV.items():
            raw = env.get(variable)
            if raw is None or not raw.strip():
                continue
            try:
                value = int(raw)
            except ValueError:
                raise ValueError(f"{variable}={raw!r}: must be a positive integer") from None
            if value < 1:
                raise ValueError(f"{variable}={raw!r}: must be a positive integer")
            given[name] = value
        return cls(**given)


ENV: dict[str, str] = {f.name: f"CEREBELUM_{f.name.upper()}" for f in fields(Limits)}
DEFAULT_LIMITS = Limits()


@lru_cache(maxsize=1)
def configured() -> Limits:
    """The process's limits: the defaults, overridden by the environment."""
    return Limits.from_env(os.environ)
