"""A run's status: the one list of them, shared by the store, the runner, the engine, the CLI and the pages."""

from __future__ import annotations

from enum import StrEnum


class RunStatus(StrEnum):
    """Where a run stands. A ``StrEnum``, so its members are the very strings the store keeps in SQLite."""

    QUEUED = "queued"
    RUNNING = "running"
    PAUSED = "paused"
    FINISHED = "finished"
    STOPPED = "stopped"
    FAILED = "failed"
    DIVERGED = "diverged"
    INTERRUPTED = "interrupted"

    @property
    def active(self) -> bool:
        """Whether the run may still train: queued, running or paused."""
        return self in ACTIVE


#: The statuses of a run that may still train; every other one is how a run ended.
ACTIVE = frozenset({RunStatus.QUEUED, RunStatus.RUNNING, RunStatus.PAUSED})
