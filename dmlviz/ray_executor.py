"""Runs on a Ray cluster: the runner's queue and cap stay on this machine, the training goes to Ray.

Each job (a run, or a comparison's runs) is a Ray task that asks for one GPU where the cluster has GPUs,
else ``cpus`` CPUs. Its commands (pause, step, stop, speed, "watched") go through a small Ray actor that
the task's gate polls. The task sends what it records back as a stream (a Ray generator task): the
server alone writes its store, so a cluster needs no shared disk, only the datasets on each node
(``$DMLVIZ_DATA_DIR``). A worker that dies, or a cluster that is lost, ends the job's runs as failed with
what they recorded.

``$DMLVIZ_RAY_ADDRESS`` says which cluster: ``auto`` (one started with ``ray start --head`` on this
machine or reached through its environment), ``ray://host:10001`` (Ray Client), or unset for a Ray
started inside this process.
"""

from __future__ import annotations

import os
import queue
import socket
import threading
import time
from typing import Any

from dmlviz.runner import PAUSE, RUN, WorkerGate, _describe, _set_status, kept
from dmlviz.status import RunStatus
from dmlviz.store import RunStore

RAY_ADDRESS_ENV = "DMLVIZ_RAY_ADDRESS"
_STATE_EVERY = 0.05  # seconds a running task trusts the command it last read (no round trip per step)


class RayUnavailable(RuntimeError):
    """Ray is not installed, or its cluster cannot be reached; the message says which and how to fix it."""


def connect(address: str | None = None, cpus: int | None = None) -> None:
    """Join the cluster at ``address`` (or ``$DMLVIZ_RAY_ADDRESS``), or start a Ray in this process."""
    try:
        import ray
    except ImportError as error:
        raise RayUnavailable("the Ray executor needs Ray: pip install -r requirements-ray.txt") from error
    if ray.is_initialized():
        return
    address = address or os.environ.get(RAY_ADDRESS_ENV) or None
    failed: list[BaseException] = []
    ready = threading.Event()

    def keep() -> None:
        # The processes of a Ray started here die with the thread that started them (Linux's parent-death
        # signal is per thread), and a Streamlit page runs in a thread that ends with its rerun: this one
        # lives as long as the process.
        try:
            ray.init(address=address, num_cpus=None if address else cpus, include_dashboard=False,
                     log_to_driver=False, configure_logging=False)
        except Exception as error:  # noqa: BLE001 — Ray raises many kinds for an unreachable cluster
            failed.append(error)
        finally:
            ready.set()
        if not failed:
            threading.Event().wait()

    threading.Thread(target=keep, name="dmlviz-ray", daemon=True).start()
    ready.wait()
    if failed:
        where = f"the Ray cluster at {address}" if address else "a Ray in this process"
        raise RayUnavailable(f"cannot start or reach {where}: {failed[0]}") from failed[0]


class _Commands:
    """The Ray actor that holds one job's commands: the runner writes, the job's gate reads."""

    def __init__(self) -> None:
        self.command, self.credits, self.pace, self.watched_until = RUN, 0, 0.0, 0.0

    def send(self, command: int) -> None:
        self.command = command

    def add_steps(self, steps: int) -> None:
        self.credits += steps
        self.command = PAUSE

    def set_pace(self, seconds_per_step: float) -> None:
        self.pace = seconds_per_step

    def watch(self, seconds: float) -> None:
        self.watched_until = time.monotonic() + seconds  # the actor's own clock: nodes' clocks differ

    def state(self) -> tuple[int, float, bool]:
        return self.command, self.pace, self.watched_until > time.monotonic()

    def take_credit(self) -> bool:
        if self.credits > 0:
            self.credits -= 1
            return True
        return False


class RayControl:
    """The runner's side of a job's control on Ray: each command is one message to the job's actor."""

    def __init__(self, actor: Any) -> None:
        self.actor = actor

    def send(self, command: int) -> None:
        self.actor.send.remote(command)

    def add_steps(self, steps: int) -> None:
        self.actor.add_steps.remote(steps)

    def set_pace(self, seconds_per_step: float) -> None:
        self.actor.set_pace.remote(seconds_per_step)

    def watch(self, seconds: float) -> None:
        self.actor.watch.remote(seconds)


class RayGate(WorkerGate):
    """The task's gate: reads the job's actor (at most every ``_STATE_EVERY`` seconds while running) and
    sends pauses back with the records."""

    def __init__(self, actor: Any, events: queue.Queue) -> None:
        super().__init__()
        self.actor, self.events = actor, events
        self._state, self._read_at = (RUN, 0.0, False), -1.0

    def _read(self) -> tuple[int, float, bool]:
        import ray

        now = time.monotonic()
        if self.paused or now - self._read_at >= _STATE_EVERY:
            self._state, self._read_at = ray.get(self.actor.state.remote()), now
        return self._state

    def command(self) -> int:
        return self._read()[0]

    def pace(self) -> float:
        return self._state[1]

    def watched(self) -> bool:
        return self._state[2]

    def take_credit(self) -> bool:
        import ray

        return ray.get(self.actor.take_credit.remote())

    def announce(self, status: RunStatus) -> None:
        self.events.put(("status", status))


class _QueueSink:
    """A run's records, put on the task's queue for the stream back to the server."""

    def __init__(self, index: int, events: queue.Queue) -> None:
        self.index, self.events = index, events

    def started(self, info: dict[str, Any]) -> None:
        self.events.put(("info", self.index, info))

    def snapshot(self, snapshot: Any) -> None:
        self.events.put(("snapshot", self.index, snapshot))


def _train(configs: list[dict[str, Any]], data_dir: str, actor: Any, threads: int):
    """The Ray task: train in a thread, and yield what it records as it comes (a Ray generator)."""
    from dmlviz.config import RunConfig
    from dmlviz.engine import train_together

    events: queue.Queue = queue.Queue()

    def work() -> None:
        try:
            train_together([RunConfig.from_dict(c) for c in configs], data_dir,
                           [_QueueSink(i, events) for i in range(len(configs))], RayGate(actor, events),
                           threads=threads, on_end=lambda i, result: events.put(("ended", i, result.outcome,
                                                                                  result.error)))
            events.put(("done",))
        except Exception as error:  # noqa: BLE001 — any failure ends up in the runs' records
            events.put(("failed", _describe(error)))

    yield ("worker", {"pid": os.getpid(), "node": socket.gethostname()})
    threading.Thread(target=work, name="dmlviz-ray-train", daemon=True).start()
    while True:
        event = events.get()
        yield event
        if event[0] in ("done", "failed"):
            return


class RayHandle:
    """A job on Ray as the server sees it: a thread that writes the job's stream into the store."""

    def __init__(self, stream: Any, actor: Any, store: RunStore, run_ids: list[int]) -> None:
        self.stream, self.actor, self.store, self.run_ids = stream, actor, store, run_ids
        self.lost: str | None = None
        self._thread = threading.Thread(target=self._write, name=f"dmlviz-ray-{run_ids[0]}", daemon=True)
        self._thread.start()

    def _write(self) -> None:
        import ray

        try:
            for ref in self.stream:
                self._record(ray.get(ref))
        except Exception as error:  # noqa: BLE001 — a dead worker or a lost cluster: the runner records it
            self.lost = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
        finally:
            ray.kill(self.actor)

    def _record(self, event: tuple) -> None:
        kind = event[0]
        if kind == "worker":
            for run_id in self.run_ids:
                self.store.put_info(run_id, "ray_worker", event[1])
        elif kind == "info":
            for key, value in event[2].items():
                self.store.put_info(self.run_ids[event[1]], key, value)
        elif kind == "snapshot":
            self.store.add_snapshot(self.run_ids[event[1]], event[2])
        elif kind == "status":
            _set_status(self.store, self.run_ids, event[1])
        elif kind == "ended":
            self.store.set_status(self.run_ids[event[1]], event[2], error=event[3])
        elif kind == "failed":
            _set_status(self.store, self.run_ids, RunStatus.FAILED, event[1])

    def done(self) -> bool:
        return not self._thread.is_alive()

    def exit_message(self, summary: dict[str, float]) -> str:
        return f"the Ray worker was lost ({self.lost or 'its stream ended early'}){kept(summary)}"

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)

    def kill(self) -> None:
        import ray

        ray.cancel(self.stream, force=True)
        self._thread.join(5.0)


class _Ended:
    """A job that ended before it started."""

    def done(self) -> bool:
        return True

    def exit_message(self, summary: dict[str, float]) -> str:
        return "it never started"

    def join(self, timeout: float) -> None:
        pass

    def kill(self) -> None:
        pass


class RayExecutor:
    """Jobs as Ray tasks: one GPU each where the cluster has GPUs, else ``cpus`` CPUs and as many threads."""

    places_runs = True  # Ray gives each task its GPU (CUDA_VISIBLE_DEVICES)

    def __init__(self, store: RunStore, data_dir: os.PathLike[str] | str, address: str | None = None,
                 cpus: int = 1, local_cpus: int | None = None) -> None:
        connect(address, local_cpus)
        import ray

        self.store, self.data_dir, self.cpus = store, str(data_dir), cpus
        self.gpus = int(ray.cluster_resources().get("GPU", 0))
        self._commands = ray.remote(num_cpus=0)(_Commands)
        self._train = ray.remote(_train)

    def slots(self) -> int:
        """How many jobs the cluster can train at once: its GPUs, or its CPUs over ``cpus``."""
        import ray

        return self.gpus or max(1, int(ray.cluster_resources().get("CPU", 1)) // self.cpus)

    def control(self) -> RayControl:
        return RayControl(self._commands.remote())

    def start(self, run_ids: list[int], configs: list[dict[str, Any]], control: RayControl) -> RayHandle | _Ended:
        # The runs are the server's: its pid marks them as live, as for a local worker. A run stopped while
        # it waited (``runs stop``) does not start, nor do the runs queued with it.
        if not all([self.store.set_status(run_id, RunStatus.RUNNING, pid=os.getpid(), was={RunStatus.QUEUED})
                    for run_id in run_ids]):
            _set_status(self.store, run_ids, RunStatus.STOPPED, "stopped from the command line before it started")
            return _Ended()
        resources = {"num_gpus": 1, "num_cpus": 1} if self.gpus else {"num_cpus": self.cpus}
        if self.gpus:
            configs = [{**config, "device": "cuda"} if config.get("device") in ("auto", None) else config
                       for config in configs]
        # No retries: a job trained again from its start would record its steps a second time.
        stream = self._train.options(max_retries=0, **resources).remote(configs, self.data_dir, control.actor,
                                                                        self.cpus)
        return RayHandle(stream, control.actor, self.store, run_ids)

