"""A run's status: the one list of them, shared by the store, the runner, the engine, the CLI and the pages,
and which status may follow which (the store moves a run only along those: ``RunStore.set_status``)."""

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

    @property
    def comes_from(self) -> frozenset[RunStatus]:
        """The statuses a run may reach this one from: a queued or paused run runs, a running one pauses,
        an active one ends. A run that ended stays as it ended (training it again makes a new run), and a
        run is queued only when it is made."""
        if self is RunStatus.QUEUED:
            return frozenset()
        if self is RunStatus.PAUSED:
            return frozenset({RunStatus.RUNNING, RunStatus.PAUSED})
        return ACTIVE


#: The statuses of a run that may still train; every other one is how a run ended.
ACTIVE = frozenset({RunStatus.QUEUED, RunStatus.RUNNING, RunStatus.PAUSED})
