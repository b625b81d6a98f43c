"""Use case CreateWorkflow: validate, then store a new version or reuse one."""

from __future__ import annotations

import dataclasses
import random
import threading
import weakref
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from typing import Any

from cerebelum.domain.errors import Conflict, NotFound, Problem, ValidationError
from cerebelum.domain.nodes import WorkflowNode, nested_nodes
from cerebelum.domain.ports import Clock, ExpressionCompiler, IdSource, WorkflowRepository
from cerebelum.domain.validation import read_workflow
from cerebelum.domain.workflow import StoredWorkflow, Workflow, content_digest


def create_workflow(
    document: Any,
    workflows: WorkflowRepository,
    compiler: ExpressionCompiler,
    clock: Clock,
    ids: IdSource,
    handler_names: Collection[str] | None = None,
    defer: bool = False,
) -> tuple[StoredWorkflow, Workflow, bool]:
    """Validate `document` (raising ValidationError with every problem) and store it;
    return the stored version, its compiled form (compiled once, here) and
    whether it is new. With `defer`, a new version is not stored but returned
    for the caller to store with its first execution, in one transaction.

    Without a `version`: reuse the stored version whose definition is identical
    apart from `version`, else store the next version. With a `version`: an
    identical re-create is accepted as is; a different definition under an
    existing (name, version) raises Conflict.
    """
    workflow = read_workflow(document, compiler, handler_names)
    check_children(workflow, workflows)
    added: list[StoredWorkflow] = []

    def add(new: StoredWorkflow) -> StoredWorkflow:
        stored = new if defer else workflows.add(new)
        added.append(stored)
        return stored

    stored = _store(document, workflow, workflows, clock, ids, add)
    compiled = dataclasses.replace(workflow, version=stored.version, definition=stored.definition)
    return stored, compiled, bool(added) and added[-1] is stored


def check_children(workflow: Workflow, workflows: WorkflowRepository) -> None:
    """Every `workflow` node names a stored workflow (or this one: recursion), and an
    existing version if it gives one; every problem at once, located."""
    problems: list[Problem] = []
    for node in nested_nodes(workflow.nodes.values()):
        if not isinstance(node, WorkflowNode) or (node.workflow == workflow.name and node.version is None):
            continue
        try:
            stored = workflows.get(node.workflow, node.version)
        except NotFound:
            suffix = f" version {node.version}" if node.version is not None else ""
            message = f"unknown workflow '{node.workflow}'{suffix}: store it first"
            problems.append(Problem(f"{node.location}.config.workflow", message))
            continue
        if stored.deleted:
            message = f"workflow {node.workflow} version {node.version} was deleted"
            problems.append(Problem(f"{node.location}.config.version", message))
    if problems:
        raise ValidationError(problems)


def _store(
    document: Any,
    workflow: Workflow,
    workflows: WorkflowRepository,
    clock: Clock,
    ids: IdSource,
    add: Callable[[StoredWorkflow], StoredWorkflow],
) -> StoredWorkflow:
    digest = content_digest(document)
    if workflow.version is not None:
        try:
            existing = workflows.get(workflow.name, workflow.version)
        except NotFound:
            return add(_stored(document, workflow.name, workflow.version, digest, clock, ids))
        if existing.digest != digest:
            raise Conflict(
                f"workflow {workflow.name} version {workflow.version} already exists with a different definition"
            )
        return existing
    with _name_lock(workflow.name):  # creates in this process take turns; other processes: the retries below
        for attempt in range(CREATE_ATTEMPTS):  # another writer may take the next version first
            versions = workflows.versions(workflow.name)
            for stored in reversed(versions):
                if stored.digest == digest:
                    return stored
            version = max((w.version for w in versions), default=0) + 1
            try:
                return add(_stored(document, workflow.name, version, digest, clock, ids))
            except Conflict:
                # back off a little, at random, so that racing writers stop colliding
                clock.sleep(_jitter.uniform(0, min(0.2, 0.005 * 2 ** min(attempt, 6))))
    raise Conflict(f"could not assign a version to workflow {workflow.name}: too many concurrent creates")


CREATE_ATTEMPTS = 50  # at most ~8 s of back-off: enough for dozens of processes creating one name at once
_jitter = random.SystemRandom()  # never an intercepted or seeded generator
_locks_guard = threading.Lock()
_locks: weakref.WeakValueDictionary[str, threading.Lock] = weakref.WeakValueDictionary()


@contextmanager
def _name_lock(name: str) -> Iterator[None]:
    with _locks_guard:
        lock = _locks.get(name)
        if lock is None:
            lock = _locks[name] = threading.Lock()
    with lock:
        yield


def _stored(document: dict[str, Any], name: str, version: int, digest: str, clock: Clock, ids: IdSource) -> StoredWorkflow:
    definition = {**document, "version": version}
    return StoredWorkflow(ids.new_id(), name, version, definition, digest, clock.now())
