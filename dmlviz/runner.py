"""Runs engines in workers, with a queue, a cap on concurrent runs and live control.

The runner keeps the queue and the cap and records how runs ended; an *executor* starts each job
(a run, or a comparison's runs) and gives it a control that pause / resume / step / stop, the speed
and "watched" reach it through. ``LocalExecutor`` (the default) runs a job in a worker process of this
machine: it keeps a crash (or a kill) contained, leaves the Streamlit server free to draw, writes
straight to the store and is controlled through shared memory. ``dmlviz.ray_executor.RayExecutor`` runs
jobs on a Ray cluster, whose workers send what they record back to this process.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import sys
import threading
import time
import traceback
import types
from collections import deque
from dataclasses import dataclass
from multiprocessing.process import BaseProcess
from multiprocessing.sharedctypes import Synchronized
from pathlib import Path
from typing import Any, Protocol

from dmlviz import settings
from dmlviz.config import RunConfig
from dmlviz.engine import Action
from dmlviz.snapshot import Snapshot
from dmlviz.status import RunStatus
from dmlviz.store import RunStore, StoreError, process_alive

RUN, PAUSE, STOP = 0, 1, 2
_POLL = 0.02  # seconds between looks at the control while paused, and the runner's reaping tick
_OWNER_CHECK = 1.0  # seconds between a worker's checks that the process that started it is alive
WATCH_S = 3.0  # how long one sign of a watching page counts
EXECUTOR_ENV = "DMLVIZ_EXECUTOR"  # where a server's runs train: local (default) or ray
EXECUTORS = ("local", "ray")


class StoreSink:
    """Sends what the engine produces to the store."""

    def __init__(self, store: RunStore, run_id: int) -> None:
        self.store = store
        self.run_id = run_id

    def started(self, info: dict[str, Any]) -> None:
        for key, value in info.items():
            self.store.put_info(self.run_id, key, value)

    def snapshot(self, snapshot: Snapshot) -> None:
        self.store.add_snapshot(self.run_id, snapshot)


class OwnerGone(Exception):
    """The process that started this worker has died; the run is left as interrupted."""


class WorkerGate:
    """The worker's side of a job's control: the engine asks ``gate()`` before every step. Where the
    commands come from (``command``, ``take_credit``, ``pace``, ``watched``) and where pauses are announced
    (``announce``) is the executor's: shared memory here, a Ray actor on a cluster."""

    def __init__(self) -> None:
        self._last_step = 0.0
        self.paused = False
        self._announce_pause = False

    def command(self) -> int: ...

    def take_credit(self) -> bool: ...

    def pace(self) -> float: ...

    def watched(self) -> bool: ...

    def announce(self, status: RunStatus) -> None: ...

    def check(self) -> None:
        """Raise if the job must end now, whatever the command (its owner is gone)."""

    def gate(self) -> Action:
        while True:
            self.check()
            command = self.command()
            if command == STOP:
                return "stop"
            if command == RUN:
                if self.paused:
                    self.paused = False
                    if not self._announce_pause:
                        self.announce(RunStatus.RUNNING)
                    self._announce_pause = False
                if self._wait_for_pace():
                    continue
                self._last_step = time.monotonic()
                return "run"
            if not self.paused:
                self.paused = self._announce_pause = True
                return "pause"  # the engine records the step it paused at, then asks again
            if self._announce_pause:
                # Only now: whoever sees "paused" finds the step it paused at already recorded.
                self._announce_pause = False
                self.announce(RunStatus.PAUSED)
            if self.take_credit():
                return "step"
            time.sleep(_POLL)

    def _wait_for_pace(self) -> bool:
        """Slow motion: True (after a short sleep) while the next step is not yet due, so that the
        caller looks at the command again and a pause or stop is obeyed at once."""
        wait = self._last_step + self.pace() - time.monotonic()
        if wait <= 0:
            return False
        time.sleep(min(wait, _POLL * 5))
        return True


class SharedControl(WorkerGate):
    """A worker process's gate: reads the commands the runner writes into shared memory, and records
    pauses in the store itself."""

    def __init__(self, command: Synchronized, credits: Synchronized, store: RunStore, run_ids: list[int],
                 owner_pid: int, pace: Synchronized | None = None, watched_until: Synchronized | None = None) -> None:
        super().__init__()
        self._command = command
        self.credits = credits
        self._pace = pace
        self.watched_until = watched_until
        self.store = store
        self.run_ids = list(run_ids)
        self.owner_pid = owner_pid
        self._owner_checked = time.monotonic()

    def check(self) -> None:
        now = time.monotonic()
        if now - self._owner_checked >= _OWNER_CHECK:
            self._owner_checked = now
            if not process_alive(self.owner_pid):
                raise OwnerGone

    def command(self) -> int:
        return self._command.value

    def take_credit(self) -> bool:
        with self.credits.get_lock():
            if self.credits.value > 0:
                self.credits.value -= 1
                return True
        return False

    def pace(self) -> float:
        return self._pace.value if self._pace is not None else 0.0

    def watched(self) -> bool:
        # time.monotonic() is one clock for all processes of a machine (CLOCK_MONOTONIC, mach time).
        return self.watched_until is not None and self.watched_until.value > time.monotonic()

    def announce(self, status: RunStatus) -> None:
        _set_status(self.store, self.run_ids, status)


def _work(run_ids: list[int], configs: list[dict[str, Any]], store_root: str, data_dir: str,
          command: Synchronized, credits: Synchronized, pace: Synchronized, watched_until: Synchronized,
          owner_pid: int, threads: int) -> None:
    """Entry point of a worker process: train one run, or a comparison's runs in lockstep, and record
    how each ended."""
    store = RunStore(store_root)
    # A run stopped while it waited (`python -m dmlviz runs stop`, which marks it stopped in the store) does
    # not start; nor do the runs queued with it.
    if not all([store.set_status(run_id, RunStatus.RUNNING, pid=os.getpid(), was={RunStatus.QUEUED})
                for run_id in run_ids]):
        _set_status(store, run_ids, RunStatus.STOPPED, "stopped from the command line before it started")
        return

    def ended(index: int, result) -> None:
        store.set_status(run_ids[index], result.outcome, error=result.error)

    # SIGTERM (`python -m dmlviz runs stop` from a shell, or kill) stops the runs cleanly, through their control.
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, lambda signum, frame: setattr(command, "value", STOP))
    try:
        from dmlviz.engine import train_together

        control = SharedControl(command, credits, store, run_ids, owner_pid, pace, watched_until)
        train_together([RunConfig.from_dict(c) for c in configs], Path(data_dir),
                       [StoreSink(store, run_id) for run_id in run_ids], control, threads=threads, on_end=ended)
    except OwnerGone:
        _set_status(store, run_ids, RunStatus.INTERRUPTED,
                              "the app that started this run stopped; what it recorded is kept")
    except Exception as exc:  # noqa: BLE001 — any failure must end up in the run's record, not in a log
        _set_status(store, run_ids, RunStatus.FAILED, _describe(exc))
        traceback.print_exc(file=sys.stderr)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


# What a worker sees as the main module: nothing to import. (See _start.)
_NO_MAIN = types.ModuleType("__main__")


def _start(process: BaseProcess) -> None:
    """Start a worker without running the caller's main script in it.

    A spawn or forkserver child first imports the parent's ``__main__`` from its file. Under
    Streamlit that module is the app script itself (Streamlit installs it as ``__main__`` while a page
    runs), so every worker ran ``app.py``: a page drawn without a browser session (the server log's
    "missing ScriptRunContext" warnings, a dozen per run) and seconds of importing Streamlit before
    training began. A worker needs nothing from it: its target lives here.
    """
    main = sys.modules["__main__"]
    sys.modules["__main__"] = _NO_MAIN
    try:
        process.start()
    finally:
        if sys.modules["__main__"] is _NO_MAIN:  # else a script that started meanwhile installed its own
            sys.modules["__main__"] = main


def _set_status(store: RunStore, run_ids: list[int], status: RunStatus, error: str | None = None) -> None:
    """The status of those runs that may take it: in a comparison, one may have ended (diverged) before the
    others, and keeps how it ended."""
    for run_id in run_ids:
        store.set_status(run_id, status, error=error)


def _describe(exc: BaseException) -> str:
    # Config, data and device problems are raised as ValueError / RuntimeError with messages
    # written for people; anything else is a bug, named by its type.
    if isinstance(exc, RuntimeError | ValueError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


class JobControl(Protocol):
    """The runner's side of a job's control: what a page's buttons send to a running job."""

    def send(self, command: int) -> None:
        """RUN, PAUSE or STOP."""

    def add_steps(self, steps: int) -> None:
        """Credit ``steps`` steps to a paused job (Step)."""

    def set_pace(self, seconds_per_step: float) -> None:
        """At least this long between steps (0: full speed)."""

    def watch(self, seconds: float) -> None:
        """Someone watches the job live for the next ``seconds``."""


class JobHandle(Protocol):
    """A started job, as its executor tracks it."""

    def done(self) -> bool: ...

    def exit_message(self, summary: dict[str, float]) -> str:
        """Why a run the job left active ended (a killed worker, a lost cluster), with what it kept."""

    def join(self, timeout: float) -> None: ...

    def kill(self) -> None: ...


class Executor(Protocol):
    """Where jobs train: ``LocalExecutor`` here, ``ray_executor.RayExecutor`` on a Ray cluster."""

    places_runs: bool  # whether it picks each job's GPU itself (a cluster does); else the runner does

    def control(self) -> JobControl: ...

    def start(self, run_ids: list[int], configs: list[dict[str, Any]], control: JobControl) -> JobHandle:
        """Start training ``configs`` (their runs are in the store as ``run_ids``, queued)."""


@dataclass
class LocalControl:
    """Shared memory a worker process reads its commands from (``SharedControl`` is its side)."""

    command: Synchronized
    credits: Synchronized
    pace: Synchronized  # seconds per step at the least (0: full speed)
    watched_until: Synchronized  # time.monotonic() until which a page watches the run live

    def send(self, command: int) -> None:
        self.command.value = command

    def add_steps(self, steps: int) -> None:
        with self.credits.get_lock():
            self.credits.value += steps
        self.command.value = PAUSE

    def set_pace(self, seconds_per_step: float) -> None:
        self.pace.value = seconds_per_step

    def watch(self, seconds: float) -> None:
        self.watched_until.value = time.monotonic() + seconds


@dataclass
class LocalHandle:
    process: BaseProcess

    def done(self) -> bool:
        return not self.process.is_alive()

    def exit_message(self, summary: dict[str, float]) -> str:
        self.process.join()
        return _exit_message(self.process.exitcode, summary)

    def join(self, timeout: float) -> None:
        self.process.join(timeout)

    def kill(self) -> None:
        if self.process.is_alive():
            self.process.kill()
            self.process.join()


class LocalExecutor:
    """Jobs in worker processes of this machine, forked from a forkserver that has imported torch."""

    places_runs = False

    def __init__(self, store_root: Path, data_dir: Path, threads: int) -> None:
        self.store_root, self.data_dir, self.threads = store_root, data_dir, threads
        # forkserver: workers fork from a clean process that has already imported torch, so they start
        # in a fraction of a second and never inherit the server's threads.
        method = "forkserver" if sys.platform.startswith("linux") else "spawn"
        self._ctx = mp.get_context(method)
        if method == "forkserver":
            # torch._dynamo too: torch.optim imports it on first use, a second per run otherwise; and
            # the retrieval metrics of the first snapshot.
            self._ctx.set_forkserver_preload(["dmlviz.engine", "dmlviz.runner", "torch._dynamo",
                                              "pytorch_metric_learning.utils.accuracy_calculator"])
            # Started now, in the background (its imports take seconds), not when the first run starts.
            from multiprocessing import forkserver

            threading.Thread(target=forkserver.ensure_running, name="dmlviz-forkserver", daemon=True).start()

    def control(self) -> LocalControl:
        return LocalControl(self._ctx.Value("i", RUN), self._ctx.Value("i", 0), self._ctx.Value("d", 0.0),
                            self._ctx.Value("d", 0.0))

    def start(self, run_ids: list[int], configs: list[dict[str, Any]], control: LocalControl) -> LocalHandle:
        process = self._ctx.Process(
            target=_work, name=f"dmlviz-run-{'-'.join(map(str, run_ids))}", daemon=True,
            args=(run_ids, configs, str(self.store_root), str(self.data_dir), control.command, control.credits,
                  control.pace, control.watched_until, os.getpid(), self.threads),
        )
        _start(process)
        return LocalHandle(process)


@dataclass(eq=False)
class _Job:
    """One job: a run, or the runs of a comparison trained in lockstep."""

    run_ids: list[int]
    configs: list[RunConfig]
    control: JobControl
    visitor: str | None = None  # who submitted it from a page (ui.resources.visitor(); None: a script)
    handle: JobHandle | None = None  # once started
    gpu: int | None = None  # the GPU the runner gave it, while it runs


#: Jobs (a run, or a comparison's runs) that one visitor may have queued or running at once: on a
#: shared server, one person's clicks (in any number of tabs) cannot fill the queue ahead of everyone else.
MAX_ACTIVE_PER_VISITOR = 2


class QueueFull(RuntimeError):
    """The server's queue, or a visitor's share of it, is full; the message says what to do."""


def default_max_concurrent() -> int:
    """One run per GPU, or one on a CPU (two runs on two cores only share them); at most the server's
    ``$DMLVIZ_MAX_RUNS``."""
    import torch

    return min(max(1, torch.cuda.device_count()), settings.limits().max_runs or sys.maxsize)


class Runner:
    """A queue of runs and their jobs on an executor (worker processes here by default), at most
    ``max_concurrent`` at a time."""

    def __init__(self, store: RunStore | None = None, data_dir: str | os.PathLike[str] | None = None,
                 max_concurrent: int | None = None, threads: int | None = None,
                 executor: Executor | None = None) -> None:
        self.store = store or RunStore()
        self.data_dir = settings.data_dir(data_dir)
        self.max_concurrent = max_concurrent or default_max_concurrent()
        self.threads = threads or max(1, (os.cpu_count() or 1) // self.max_concurrent)
        self.interrupted = self.store.mark_interrupted()
        self.executor = executor or LocalExecutor(self.store.root, self.data_dir, self.threads)
        self._queue: deque[_Job] = deque()
        self._jobs: dict[int, _Job] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name="dmlviz-runner", daemon=True)
        self._thread.start()

    # -- submitting and controlling -------------------------------------------------------------

    def submit(self, config: RunConfig, *, paused: bool = False, visitor: str | None = None) -> int:
        """Queue a run; it starts when a slot is free. ``paused`` starts it paused at step 0."""
        return self.submit_together([config], paused=paused, visitor=visitor)[0]

    def submit_together(self, configs: list[RunConfig], *, paused: bool = False,
                        visitor: str | None = None) -> list[int]:
        """Queue runs that train together in one worker, in lockstep and under one control (a
        comparison): one slot, one set of controls, snapshots at the same steps. Any of their ids
        controls them all. A page's ``visitor`` may have ``MAX_ACTIVE_PER_VISITOR`` jobs queued or running,
        and the server ``settings.limits().max_queue`` in all (QueueFull beyond); a script passes no visitor
        and is held to neither. The runs are recorded as the visitor's (``RunRecord.owner``)."""
        if not configs:
            raise ValueError("nothing to run")
        limits = settings.limits()
        for config in configs:
            config.check_limits(limits)  # a public server's caps, whichever page or script submits the run
        with self._lock:
            self._check_queue(visitor, limits.max_queue)
            run_ids = [self.store.create_run(config.to_dict(), name=config.name, config_hash=config.config_hash(),
                                             status=RunStatus.QUEUED, pid=os.getpid(), owner=visitor)
                       for config in configs]
            job = _Job(run_ids, list(configs), self.executor.control(), visitor)
            if paused:
                job.control.send(PAUSE)
            for run_id in run_ids:
                self._jobs[run_id] = job
            self._queue.append(job)
        self._wake.set()
        return run_ids

    def _check_queue(self, visitor: str | None, max_queue: int | None) -> None:
        """QueueFull if a page's visitor has its share, or the server its most jobs; the caller holds the lock."""
        if visitor is None:
            return
        jobs = self._unique_jobs()
        if sum(job.visitor == visitor for job in jobs) >= MAX_ACTIVE_PER_VISITOR:
            raise QueueFull(f"you already have {MAX_ACTIVE_PER_VISITOR} runs (or comparisons) queued or running, "
                            "the most one visitor may have on this server so that everyone gets a turn; stop one, "
                            "or wait for one to end")
        if max_queue is not None and len(jobs) >= max_queue:
            raise QueueFull(f"this server already has {len(jobs)} runs (or comparisons) queued or running, the most "
                            "it takes at once; try again when one has ended")

    def visitor_jobs(self, visitor: str) -> list[list[int]]:
        """The run ids of each job that ``visitor`` has queued or running."""
        with self._lock:
            return [job.run_ids for job in self._unique_jobs() if job.visitor == visitor]

    def _unique_jobs(self) -> list[_Job]:
        """Each job once (a comparison's job is filed under each of its runs); the caller holds the lock."""
        return list({id(job): job for job in self._jobs.values()}.values())

    def pause(self, run_id: int) -> None:
        self._job(run_id).control.send(PAUSE)

    def resume(self, run_id: int) -> None:
        self._job(run_id).control.send(RUN)

    def step(self, run_id: int, steps: int = 1) -> None:
        """Train ``steps`` more steps of a paused run (pausing it first if it runs)."""
        self._job(run_id).control.add_steps(steps)

    def set_speed(self, run_id: int, steps_per_second: float | None) -> None:
        """Slow a run down to at most this many steps a second (None: full speed), e.g. for a class
        to follow the features step by step."""
        if steps_per_second is not None and steps_per_second <= 0:
            raise ValueError(f"steps per second must be positive, got {steps_per_second:g}")
        self._job(run_id).control.set_pace(1.0 / steps_per_second if steps_per_second else 0.0)

    def watch(self, run_id: int, seconds: float = WATCH_S) -> None:
        """Someone watches the run live for the next ``seconds``: it snapshots as often as its
        ``snapshot_every`` allows (engine.WATCHED_SNAPSHOT_BUDGET), so the figures move. A page calls
        this on every poll; when it stops (the tab closed), the run goes back to its own budget."""
        self._job(run_id).control.watch(seconds)

    def stop(self, run_id: int) -> None:
        """Stop a run (and the runs training with it): a running one ends after its current step; a
        queued one never starts."""
        job = self._job(run_id)
        job.control.send(STOP)
        with self._lock:
            if job in self._queue:
                self._queue.remove(job)
                for member in job.run_ids:
                    self.store.set_status(member, RunStatus.STOPPED, was={RunStatus.QUEUED})
                    del self._jobs[member]

    def queue_position(self, run_id: int) -> int | None:
        """1 for the next run to start, None if the run is not waiting."""
        with self._lock:
            job = self._jobs.get(run_id)
            return self._queue.index(job) + 1 if job is not None and job in self._queue else None

    def active_runs(self) -> list[int]:
        with self._lock:
            return list(self._jobs)

    def wait(self, run_id: int, timeout: float | None = None) -> RunStatus:
        """Block until the run has ended; return its final status."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            with self._lock:
                done = run_id not in self._jobs
            if done:
                return self.store.get_run(run_id).status
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"run {run_id} did not end within {timeout} s")
            time.sleep(_POLL)

    def shutdown(self, timeout: float = 10.0) -> None:
        """Stop every run and wait for the workers to record how they ended."""
        with self._lock:
            jobs = self._unique_jobs()
            self._closed = True
        for job in jobs:
            self.stop(job.run_ids[0])
        self._wake.set()
        deadline = time.monotonic() + timeout
        for job in jobs:
            if job.handle is not None:
                job.handle.join(max(0.0, deadline - time.monotonic()))
                if not job.handle.done():
                    job.handle.kill()
        self._reap()
        self._thread.join(timeout=1.0)

    def _job(self, run_id: int) -> _Job:
        with self._lock:
            try:
                return self._jobs[run_id]
            except KeyError:
                raise KeyError(f"run {run_id} is not queued or running in this app") from None

    # -- the scheduling loop --------------------------------------------------------------------

    def _loop(self) -> None:
        while not self._closed:
            self._reap()
            self._start_queued()
            self._wake.wait(_POLL * 5)
            self._wake.clear()

    def _start_queued(self) -> None:
        with self._lock:
            running = sum(job.handle is not None for job in self._unique_jobs())
            while self._queue and running < self.max_concurrent and not self._closed:
                job = self._queue.popleft()
                configs = [config.to_dict() for config in self._place(job)]
                job.handle = self.executor.start(job.run_ids, configs, job.control)
                running += 1

    def _place(self, job: _Job) -> list[RunConfig]:
        """With several GPUs, the job's runs on the lowest GPU that no running job has (or the least used one):
        runs asking for "auto" or "cuda"; one asking for "cuda:N" stays there, and N counts as taken. The
        caller holds the lock."""
        import torch

        count = 0 if self.executor.places_runs else torch.cuda.device_count()
        devices = [config.device for config in job.configs]
        if count < 2 or not any(device.startswith("cuda") or device == "auto" for device in devices):
            return job.configs
        asked = next((int(device.split(":")[1]) for device in devices if device.startswith("cuda:")), None)
        running = [other.gpu for other in self._unique_jobs() if other.handle is not None]
        job.gpu = asked if asked is not None else min(range(count), key=lambda gpu: (running.count(gpu), gpu))
        return [config.replace(device=f"cuda:{job.gpu}") if config.device in ("auto", "cuda") else config
                for config in job.configs]

    def _reap(self) -> None:
        with self._lock:
            ended = [job for job in self._unique_jobs() if job.handle is not None and job.handle.done()]
            for job in ended:
                for run_id in job.run_ids:
                    del self._jobs[run_id]
        for job in ended:
            for run_id in job.run_ids:
                try:
                    # Only a run its worker left active: one that recorded its end keeps it.
                    summary = self.store.get_run(run_id).summary
                    self.store.set_status(run_id, RunStatus.FAILED, error=job.handle.exit_message(summary))
                except StoreError as exc:
                    # A full disk or a damaged store must not stop the scheduling of other runs; the
                    # next start marks the run interrupted.
                    print(f"dmlviz: cannot record how run {run_id} ended: {exc}", file=sys.stderr)
        if ended:
            self._wake.set()


def make_runner(store: RunStore, data_dir: str | os.PathLike[str] | None = None,
                executor: str | None = None) -> Runner:
    """A runner on the executor named by ``executor`` (else ``$DMLVIZ_EXECUTOR``): worker processes here
    ("local"), or a Ray cluster ("ray", ``$DMLVIZ_RAY_ADDRESS``) with as many runs at once as it has slots."""
    name = executor or os.environ.get(EXECUTOR_ENV) or "local"
    if name == "local":
        return Runner(store, data_dir)
    if name == "ray":
        from dmlviz.ray_executor import RayExecutor

        cluster = RayExecutor(store, settings.data_dir(data_dir))
        return Runner(store, data_dir, max_concurrent=cluster.slots(), threads=cluster.cpus, executor=cluster)
    raise ValueError(f"no executor {name!r}: {' or '.join(EXECUTORS)}")


def _exit_message(code: int | None, summary: dict[str, float]) -> str:
    if code is not None and code < 0:
        try:
            cause = f"killed by {signal.Signals(-code).name}"
        except ValueError:
            cause = f"killed by signal {-code}"
    else:
        cause = f"exited with code {code}"
    return f"the worker process was {cause}{kept(summary)}"


def kept(summary: dict[str, float]) -> str:
    """"; what it recorded up to step N is kept" for a run that ended early, from its summary."""
    step = summary.get("step")
    return f"; what it recorded up to step {int(step)} is kept" if step is not None else ""
