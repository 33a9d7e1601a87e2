"""The runner: worker processes, a queue under a cap, live control, and crashes that lose nothing."""

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import types

import pytest

from dmlviz.config import RunConfig
from dmlviz.runner import MAX_ACTIVE_PER_VISITOR, QueueFull, Runner
from dmlviz.store import RunStore


def digits(**settings):
    return RunConfig.from_dict({"dataset": "digits", "device": "cpu", "probe_size": 100, "batch_size": 32,
                                "snapshot_every": 0.1, "snapshot_budget": 1.0, **settings})


def wait_for(condition, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError("condition not met in time")


@pytest.fixture(scope="module")
def runner(tmp_path_factory):
    runner = Runner(RunStore(tmp_path_factory.mktemp("store")), max_concurrent=1)
    yield runner
    runner.shutdown()


def test_a_run_trains_in_a_worker_and_records_everything(runner):
    run_id = runner.submit(digits(steps=40, name="worker run"))
    assert runner.wait(run_id, timeout=60) == "finished"
    record = runner.store.get_run(run_id)
    assert record.name == "worker run" and record.pid != os.getpid()
    assert record.started_at <= record.finished_at and record.summary["step"] == 40
    assert runner.store.latest_snapshot(run_id).kind == "final"
    assert runner.store.get_info(run_id, "model") == "lenetpp-light"


def test_speed_spaces_steps_out_and_a_stop_is_obeyed_at_once(tmp_path):
    import multiprocessing as mp

    from dmlviz.runner import RUN, STOP, SharedControl

    store = RunStore(tmp_path)
    run_id = store.create_run({"loss": "softmax"}, status="running")
    command, credits, pace = mp.Value("i", RUN), mp.Value("i", 0), mp.Value("d", 0.0)
    control = SharedControl(command, credits, store, [run_id], os.getpid(), pace)
    pace.value = 1 / 8  # 8 steps a second
    start = time.monotonic()
    assert [control.gate() for _ in range(5)] == ["run"] * 5
    assert 4 / 8 <= time.monotonic() - start < 4 / 8 + 0.25
    pace.value = 0.0  # full speed
    start = time.monotonic()
    for _ in range(50):
        control.gate()
    assert time.monotonic() - start < 0.1
    pace.value = 1000.0  # the next step is due in a quarter of an hour; a stop must not wait for it
    threading.Timer(0.2, lambda: setattr(command, "value", STOP)).start()
    start = time.monotonic()
    assert control.gate() == "stop" and time.monotonic() - start < 0.5


def test_set_speed_reaches_the_worker_and_refuses_nonsense(runner):
    run_id = runner.submit(digits(steps=100_000), paused=True)
    runner.set_speed(run_id, 4.0)
    assert runner._job(run_id).control.pace.value == 0.25
    runner.set_speed(run_id, None)
    assert runner._job(run_id).control.pace.value == 0.0
    with pytest.raises(ValueError, match="positive"):
        runner.set_speed(run_id, 0)
    runner.stop(run_id)
    assert runner.wait(run_id, timeout=60) == "stopped"


def test_pause_step_resume_stop(runner):
    store = runner.store
    run_id = runner.submit(digits(steps=100_000), paused=True)
    wait_for(lambda: store.get_run(run_id).status == "paused")
    assert store.latest_snapshot(run_id).step == 0
    runner.step(run_id)
    wait_for(lambda: store.latest_snapshot(run_id).step == 1)
    runner.step(run_id, 3)
    wait_for(lambda: store.latest_snapshot(run_id).step == 4)
    time.sleep(0.3)
    assert store.latest_snapshot(run_id).step == 4  # paused: single steps only
    runner.resume(run_id)
    wait_for(lambda: store.get_run(run_id).status == "running")
    wait_for(lambda: store.latest_snapshot(run_id).step > 20)
    runner.pause(run_id)
    wait_for(lambda: store.get_run(run_id).status == "paused")
    held = store.latest_snapshot(run_id).step
    time.sleep(0.3)
    assert store.latest_snapshot(run_id).step == held
    runner.stop(run_id)
    assert runner.wait(run_id, timeout=30) == "stopped"
    assert store.latest_snapshot(run_id).kind == "final"


def test_queue_holds_runs_beyond_the_cap_and_a_queued_run_can_be_stopped(runner):
    first = runner.submit(digits(steps=100_000))
    wait_for(lambda: runner.store.get_run(first).status == "running")
    second = runner.submit(digits(steps=10))
    third = runner.submit(digits(steps=10))
    assert runner.queue_position(first) is None
    assert runner.queue_position(second) == 1 and runner.queue_position(third) == 2
    time.sleep(0.3)
    assert runner.store.get_run(second).status == "queued"
    runner.stop(third)
    assert runner.store.get_run(third).status == "stopped" and runner.queue_position(second) == 1
    runner.stop(first)
    assert runner.wait(second, timeout=60) == "finished"
    assert runner.store.count_snapshots(third) == 0


def test_a_killed_worker_leaves_the_run_failed_with_its_snapshots(runner):
    store = runner.store
    run_id = runner.submit(digits(steps=100_000))
    wait_for(lambda: store.count_snapshots(run_id) >= 3)
    os.kill(store.get_run(run_id).pid, signal.SIGKILL)
    assert runner.wait(run_id, timeout=30) == "failed"
    record = store.get_run(run_id)
    assert "killed by SIGKILL" in record.error and "is kept" in record.error
    kept = store.count_snapshots(run_id)
    assert kept >= 3 and store.get_snapshot(run_id, kept - 1).features.shape == (100, 2)


def test_a_diverging_run_is_marked_diverged(runner):
    run_id = runner.submit(digits(optimizer="sgd", lr=10.0, momentum=0.99, steps=500))
    assert runner.wait(run_id, timeout=60) == "diverged"
    assert "diverged at step" in runner.store.get_run(run_id).error


def test_a_run_that_cannot_start_fails_with_the_reason(runner):
    run_id = runner.submit(RunConfig.from_dict({"dataset": "custom:missing", "device": "cpu"}))
    assert runner.wait(run_id, timeout=60) == "failed"
    assert "missing" in runner.store.get_run(run_id).error


def test_a_worker_does_not_run_the_apps_main_script(runner, tmp_path, monkeypatch):
    """Streamlit installs the app script as ``__main__`` while a page runs; a worker that imported it
    would draw the app without a session ("missing ScriptRunContext" in the server log)."""
    marker = tmp_path / "app ran"
    script = tmp_path / "app.py"
    script.write_text(f"open({str(marker)!r}, 'w').close()\n")
    app = types.ModuleType("__main__")
    app.__file__ = str(script)
    monkeypatch.setitem(sys.modules, "__main__", app)
    run_id = runner.submit(RunConfig.from_dict({"dataset": "custom:missing", "device": "cpu"}))
    assert runner.wait(run_id, timeout=60) == "failed"  # the worker ran, and ended
    assert not marker.exists()
    assert sys.modules["__main__"] is app  # put back for the app


def test_when_the_app_dies_its_runs_become_interrupted(tmp_path):
    """Kill the whole app process mid-run: its worker notices and the run is interrupted, data kept."""
    script = textwrap.dedent(f"""
        import time
        from dmlviz.config import RunConfig
        from dmlviz.runner import Runner
        from dmlviz.store import RunStore
        runner = Runner(RunStore({str(tmp_path)!r}), max_concurrent=1)
        runner.submit(RunConfig.from_dict({{"dataset": "digits", "device": "cpu", "probe_size": 100,
                                            "steps": 100000, "snapshot_every": 0.1, "snapshot_budget": 1.0}}))
        time.sleep(600)
    """)
    app = subprocess.Popen([sys.executable, "-c", script])
    store = RunStore(tmp_path)
    try:
        wait_for(lambda: store.list_runs() and store.count_snapshots(store.list_runs()[0].id) >= 3, timeout=60)
    finally:
        app.kill()
        app.wait()
    run_id = store.list_runs()[0].id
    wait_for(lambda: store.get_run(run_id).status == "interrupted", timeout=30)
    assert store.count_snapshots(run_id) >= 3
    # A later start finds nothing left to mark.
    assert store.mark_interrupted() == []


def test_watching_reaches_the_worker_and_wears_off(tmp_path):
    import multiprocessing as mp

    from dmlviz.runner import RUN, SharedControl

    store = RunStore(tmp_path)
    run_id = store.create_run({"loss": "softmax"}, status="running")
    watched_until = mp.Value("d", 0.0)
    control = SharedControl(mp.Value("i", RUN), mp.Value("i", 0), store, [run_id], os.getpid(), None,
                            watched_until)
    assert not control.watched()
    watched_until.value = time.monotonic() + 0.3  # what Runner.watch writes
    assert control.watched()
    time.sleep(0.35)
    assert not control.watched()


def test_watch_marks_a_run_watched(runner):
    run_id = runner.submit(digits(steps=100_000), paused=True)
    runner.watch(run_id, seconds=60)
    assert runner._job(run_id).control.watched_until.value > time.monotonic() + 50
    runner.stop(run_id)
    assert runner.wait(run_id, timeout=60) == "stopped"
    with pytest.raises(KeyError):
        runner.watch(run_id)


def test_runs_submitted_together_train_in_one_worker_under_one_control(runner):
    ids = runner.submit_together([digits(steps=100_000), digits(steps=100_000, loss="center")], paused=True)
    assert set(ids) <= set(runner.active_runs())
    deadline = time.monotonic() + 60
    while {runner.store.get_run(i).status for i in ids} != {"paused"} and time.monotonic() < deadline:
        time.sleep(0.05)
    runner.step(ids[1])  # any of them steps them all
    while any(runner.store.count_snapshots(i) < 2 for i in ids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [runner.store.snapshot_index(i)[-1].step for i in ids] == [1, 1]
    assert len({runner.store.get_run(i).pid for i in ids}) == 1  # one worker
    runner.stop(ids[0])
    assert [runner.wait(i, timeout=60) for i in ids] == ["stopped", "stopped"]


def test_one_visitor_cannot_fill_the_queue(runner):
    """Each visitor (all their tabs) may have MAX_ACTIVE_PER_VISITOR jobs queued or running; other visitors
    and scripts are not held up by it, an ended job gives its place back, and each run records its visitor."""
    mine = [runner.submit(digits(steps=100_000), paused=True, visitor="browser-a")
            for _ in range(MAX_ACTIVE_PER_VISITOR)]
    recorded = len(runner.store.list_runs())
    with pytest.raises(QueueFull, match="stop one, or wait"):
        runner.submit(digits(steps=10), visitor="browser-a")
    assert len(runner.store.list_runs()) == recorded  # nothing recorded for the refused run
    other = runner.submit(digits(steps=10), visitor="browser-b")
    script = runner.submit(digits(steps=10))
    assert runner.visitor_jobs("browser-b") == [[other]] and runner.visitor_jobs("browser-a") == [[i] for i in mine]
    assert [runner.store.get_run(i).owner for i in (*mine, other, script)] == ["browser-a"] * len(mine) + [
        "browser-b", None]
    for run_id in mine:
        runner.stop(run_id)
    for run_id in (*mine, other, script):
        runner.wait(run_id, timeout=120)
    assert runner.visitor_jobs("browser-a") == []
    again = runner.submit(digits(steps=10), visitor="browser-a")
    assert runner.wait(again, timeout=60) == "finished"


def test_the_server_takes_at_most_max_queue_jobs(runner, monkeypatch):
    """$DMLVIZ_MAX_QUEUE bounds the jobs queued or running, whoever submitted them; a page's submission is
    refused beyond it, a script's (the server owner's) is not, and an ended job gives its place back."""
    monkeypatch.setenv("DMLVIZ_MAX_QUEUE", "2")
    first = runner.submit(digits(steps=100_000), paused=True, visitor="v1")
    script = runner.submit(digits(steps=100_000), paused=True)
    with pytest.raises(QueueFull, match="this server already has 2 runs"):
        runner.submit(digits(steps=10), visitor="v2")
    extra = runner.submit(digits(steps=100_000), paused=True)  # a script is never refused, and counts
    for run_id in (first, script):
        runner.stop(run_id)
        assert runner.wait(run_id, timeout=120) == "stopped"
        wait_for(lambda run_id=run_id: run_id not in runner.active_runs())  # reaped a moment after its end
    second = runner.submit(digits(steps=10), visitor="v2")
    runner.stop(extra)
    assert [runner.wait(i, timeout=120) for i in (extra, second)] == ["stopped", "finished"]


def test_a_server_names_its_executor_and_an_unknown_one_is_refused(tmp_path, monkeypatch):
    from dmlviz.runner import EXECUTOR_ENV, LocalExecutor, make_runner

    store = RunStore(tmp_path / "store")
    monkeypatch.setenv(EXECUTOR_ENV, "slurm")
    with pytest.raises(ValueError, match="no executor 'slurm': local or ray"):
        make_runner(store, tmp_path)
    monkeypatch.delenv(EXECUTOR_ENV)
    runner = make_runner(store, tmp_path)
    try:
        assert isinstance(runner.executor, LocalExecutor)
    finally:
        runner.shutdown()
        store.close()


class _Finishing:
    """A job handle a test ends by hand."""

    def __init__(self) -> None:
        self.ended = False

    def done(self) -> bool:
        return self.ended

    def exit_message(self, summary: dict) -> str:
        return "ended by the test"

    def join(self, timeout: float) -> None:
        pass

    def kill(self) -> None:
        self.ended = True


class _Recording:
    """An executor that starts nothing and remembers the devices it was given, job by job."""

    places_runs = False

    def __init__(self) -> None:
        self.started: list[tuple[list[str], _Finishing]] = []

    def control(self):
        from dmlviz.runner import LocalControl

        return LocalControl(*(types.SimpleNamespace(value=0) for _ in range(4)))

    def start(self, run_ids, configs, control):
        handle = _Finishing()
        self.started.append(([config["device"] for config in configs], handle))
        return handle


def test_each_job_gets_the_lowest_free_gpu_whichever_job_ends_first(tmp_path, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "device_count", lambda: 3)
    store = RunStore(tmp_path / "store")
    executor = _Recording()
    runner = Runner(store, tmp_path, max_concurrent=3, threads=1, executor=executor)
    try:
        def started(count: int) -> list[list[str]]:
            deadline = time.monotonic() + 10
            while len(executor.started) < count:
                assert time.monotonic() < deadline
                time.sleep(0.01)
            return [devices for devices, _ in executor.started]

        for device in ("auto", "cuda", "auto", "cpu", "cuda:2"):
            runner.submit(RunConfig.from_dict({"dataset": "digits", "device": device, "steps": 5}))
        assert started(3) == [["cuda:0"], ["cuda:1"], ["cuda:2"]]
        executor.started[1][1].ended = True  # the job on GPU 1 ends first
        assert started(4)[3] == ["cpu"]  # a CPU run is left where it asked to be
        executor.started[0][1].ended = True
        assert started(5)[4] == ["cuda:2"]  # an explicit GPU too
        runner.submit(RunConfig.from_dict({"dataset": "digits", "device": "auto", "steps": 5}))
        executor.started[3][1].ended = True
        assert started(6)[5] == ["cuda:0"]  # the lowest free one: 0 and 1 are free, 2 runs two jobs
    finally:
        for _, handle in executor.started:
            handle.ended = True
        runner.shutdown()
        store.close()


def test_bf16_is_chosen_only_where_the_run_s_gpu_has_bf16_tensor_cores(monkeypatch):
    import torch

    from dmlviz.engine import bf16_native

    capabilities = {0: (7, 0), 1: (8, 0), 2: (7, 5), 3: (9, 0)}  # V100, A100, T4, H100
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device: capabilities[torch.device(device).index])
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: True)  # what emulation answers
    assert [bf16_native(torch.device(f"cuda:{i}")) for i in range(4)] == [False, True, False, True]
    assert bf16_native(torch.device("mps")) is False


def test_the_probe_geometry_is_computed_where_float64_exists():
    import torch

    from dmlviz.engine import geometry_device

    assert geometry_device(torch.device("mps")) == torch.device("cpu")
    assert geometry_device(torch.device("cuda:1")) == torch.device("cuda:1")
    assert geometry_device(torch.device("cpu")) == torch.device("cpu")
