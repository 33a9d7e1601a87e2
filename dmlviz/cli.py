"""``python -m dmlviz``: train from flags or YAML, and list, show or delete stored runs.

The CLI uses the same config, engine and store as the app; its flags are generated from
:class:`~dmlviz.config.RunConfig`, so there is no second list of settings to keep in step.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import textwrap
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from dmlviz import settings
from dmlviz.config import HP_PREFIX, MAX_CONFIG_CHARS, PARAMS, ConfigError, RunConfig
from dmlviz.engine import Action, FreeRunning
from dmlviz.export import EXPORTERS, MOVIE_FPS, MOVIE_FRAMES, PNG_FIGURES, REPLAY_FRAMES, ExportOptions
from dmlviz.metrics import metric_spec
from dmlviz.params import quote
from dmlviz.snapshot import Snapshot
from dmlviz.status import RunStatus
from dmlviz.store import DB_NAME, RunStore, StoreError, StoreFault, StoreFull, parse_run_id, process_alive, salvage

# Exit statuses (README, --help): 2 is for bad input only; a stop by a signal is 128 + its number.
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_STORE, EXIT_DISK_FULL = 0, 1, 2, 3, 4
EXIT_INTERRUPTED = 128 + signal.SIGINT  # 130: Ctrl-C
EXIT_PIPE = 128 + signal.SIGPIPE  # 141: whoever read the output stopped reading (`| head`)
EXIT_STATUSES = f"""exit status:
  0    done (a run finished)
  1    the run failed or diverged (the reason is recorded with it); runs check found damage;
       runs stop could not stop the run
  2    bad input: a flag, a setting, a config file, a run id that does not exist
  3    the run store cannot be used: damaged, unreadable, read-only, busy (the message says which)
  4    the disk that holds the run store is full (a run that was training is recorded failed)
  129, 130, 143
       a run stopped by SIGHUP, Ctrl-C (SIGINT) or SIGTERM (e.g. runs stop): it is kept as stopped
  {EXIT_PIPE}  the output's reader stopped reading (e.g. | head)"""


class CliError(Exception):
    """A mistake in what the user asked for: printed as one line, exit status 2."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m dmlviz", description="Train feature-learning losses and "
                                     "keep every run; the app (make run) shows them live.", epilog=EXIT_STATUSES,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", metavar="DIR", help=f"run store folder (default ${settings.STORE_DIR_ENV} "
                        "or ~/.local/share/dmlviz)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="{train,runs,export,lessons,sweep}")

    train = commands.add_parser("train", help="train one run in this process",
                                description="Train one run. Flags override the --config file; unset "
                                "settings take their defaults.")
    train.add_argument("--config", metavar="FILE", type=Path, help="a YAML (or JSON) run config")
    train.add_argument("--hp", metavar="NAME=VALUE", action="append", default=[],
                       help="a hyperparameter of the loss, e.g. --hp lambda=0.1 (repeatable)")
    train.add_argument("--data-dir", metavar="DIR", help=f"dataset cache (default ${settings.DATA_DIR_ENV} or "
                       "~/.cache/dmlviz)")
    train.add_argument("--quiet", action="store_true", help="no progress bar")
    for name, param in PARAMS.items():
        hint = f" ({', '.join(param.choices)})" if param.choices else ""
        train.add_argument(f"--{name.replace('_', '-')}", dest=f"set_{name}", metavar="VALUE",
                           default=argparse.SUPPRESS,
                           # argparse formats help with %: a setting's own "30 %" must not be read as a field
                           help=f"{param.help}{hint} [default: {param.default}]".replace("%", "%%"))

    runs = commands.add_parser("runs", help="list, show, stop, delete or check stored runs", epilog=EXIT_STATUSES,
                               formatter_class=argparse.RawDescriptionHelpFormatter)
    runs_commands = runs.add_subparsers(dest="runs_command", required=True,
                                        metavar="{list,show,stop,delete,check}")
    listing = runs_commands.add_parser("list", help="every stored run, newest first")
    listing.add_argument("--status", help="only runs with this status")
    show = runs_commands.add_parser("show", help="one run: config, status, metrics")
    show.add_argument("run_id", type=_run_id, metavar="ID")
    stop = runs_commands.add_parser("stop", help="stop a queued, running or paused run (the app's or a "
                                    "command line's); a run whose process is gone is marked interrupted")
    stop.add_argument("run_id", type=_run_id, metavar="ID")
    stop.add_argument("--wait", type=float, default=60.0, metavar="SECONDS", help="how long to wait for the run "
                      "to record its end (it stops after its current step) [default: 60]")
    delete = runs_commands.add_parser("delete", help="delete a run and everything it recorded")
    delete.add_argument("run_id", type=_run_id, metavar="ID")
    check = runs_commands.add_parser("check", help="look for damage in the store file (SQLite's quick_check) and "
                                     "say which runs can still be read; exit status 1 if there is any damage")
    check.add_argument("--salvage", type=Path, metavar="DIR", help="copy every run that can still be read (with "
                       "its id) into a new store in the folder DIR, e.g. of a store that is cut short")

    lessons = commands.add_parser("lessons", help="list, check or record the lessons")
    lessons_commands = lessons.add_subparsers(dest="lessons_command", required=True, metavar="{list,check,build}")
    listing = lessons_commands.add_parser("list", help="every lesson (built in, and yours in the data folder's "
                                          "lessons/) with its steps and whether each has a ready replay, and the "
                                          "files that cannot be used (exit status 2 if any)")
    checking = lessons_commands.add_parser("check", help="check lesson files: each mistake with its line (exit "
                                           "status 2 if any)")
    checking.add_argument("files", nargs="+", type=Path, metavar="FILE", help="a lesson file (YAML)")
    building = lessons_commands.add_parser("build", help="train the steps that have no ready replay yet into the "
                                           "run store (deterministic: each step's own seed) with their videos, so "
                                           "that the Lessons page plays them at once")
    building.add_argument("keys", nargs="*", metavar="LESSON", help="only these lessons (their file names without "
                          ".yaml; default: all)")
    for command in (listing, building):
        command.add_argument("--data-dir", metavar="DIR", help=f"data folder (default ${settings.DATA_DIR_ENV} or "
                             "~/.cache/dmlviz)")
    sweeping = commands.add_parser("sweep", help="train a sweep of losses × settings × seeds and print each cell's "
                                   "mean and 95 %% confidence interval",
                                   description="Train every run of a sweep file that the store does not have yet (a "
                                   "stopped sweep goes on where it stopped), one at a time, then print its table.")
    sweeping.add_argument("file", type=Path, metavar="FILE", help="the sweep (YAML): base, axes and seeds")
    sweeping.add_argument("--dry-run", action="store_true", help="check the file and say how many runs it has")
    sweeping.add_argument("--csv", type=Path, metavar="PATH", help="also write the table as CSV")
    sweeping.add_argument("--executor", choices=("local", "ray"), default="local",
                          help="local: one run at a time in this process (default); ray: as many at once as the "
                          "Ray cluster of $DMLVIZ_RAY_ADDRESS has GPUs (else CPUs), or a Ray started here")
    sweeping.add_argument("--data-dir", metavar="DIR", help=f"dataset cache (default ${settings.DATA_DIR_ENV} or "
                          "~/.cache/dmlviz)")
    exporting = commands.add_parser("export", help="write a stored run in another format",
                                 description=_export_formats(), formatter_class=argparse.RawDescriptionHelpFormatter)
    exporting.add_argument("run_id", type=_run_id, metavar="RUN")
    exporting.add_argument("--format", required=True, choices=list(EXPORTERS))
    snapshot_formats = ", ".join(e.format for e in EXPORTERS.values() if e.scope == "snapshot")
    exporting.add_argument("--snapshot", type=int, metavar="N", help=f"{snapshot_formats}: the snapshot's number "
                        "(0 is the first, -1 the last; default: the last)")
    exporting.add_argument("--figure", choices=PNG_FIGURES, default="features", help="png: the figure to draw "
                        "[default: features]")
    exporting.add_argument("--frames", type=int, metavar="N", help=f"gif, mp4, html: at most N snapshots, spread "
                        f"over the run [default: {MOVIE_FRAMES} for gif and mp4, {REPLAY_FRAMES} for html]")
    exporting.add_argument("--fps", type=int, default=MOVIE_FPS, metavar="N", help=f"gif, mp4: frames a second "
                        f"[default: {MOVIE_FPS}]")
    exporting.add_argument("--regions", action="store_true", help="html, gif, mp4, png: shade the decision regions "
                           "(where the classifier picks each class) and a margin loss's band")
    exporting.add_argument("--forces", action="store_true", help="html, gif, mp4, png: arrows where the loss pushes "
                           "some probe images")
    exporting.add_argument("--out", type=Path, metavar="PATH", help="file (or folder, for tensorboard) to write; "
                        "default: run<RUN>.<format> in the folder exports/ of the run store (see --store)")
    exporting.add_argument("--data-dir", type=Path, metavar="DIR", help="dataset cache, for the projector's "
                        "sprite image")
    return parser


def _export_formats() -> str:
    """The export command's description: each format of the exporters' table with what it writes."""
    lines = ["Write a stored run, or one of its snapshots (--snapshot), in another format:"]
    for e in EXPORTERS.values():
        what = "the run" if e.scope == "run" else "a snapshot"
        lines.append(textwrap.fill(f"{e.format} ({what}{', a folder' if e.folder else ''}): {e.help}", width=79,
                                   initial_indent="  ", subsequent_indent="    "))
    return "\n".join(lines)


def _run_id(text: str) -> int:
    if (value := parse_run_id(text)) is None:
        raise argparse.ArgumentTypeError(f"a run id is a whole number from 1 (see runs list), got {text!r}")
    return value


def read_config_file(path: Path) -> str:
    """The text of a config file, read no further than :data:`MAX_CONFIG_CHARS` bytes (a size check for a
    regular file, a bounded read for a device or a pipe such as /dev/zero), or a :class:`CliError` that says
    what is wrong with it in one line: missing, too large, binary, not UTF-8."""
    try:
        with path.open("rb") as file:
            size = os.fstat(file.fileno()).st_size
            data = b"" if size > MAX_CONFIG_CHARS else file.read(MAX_CONFIG_CHARS + 1)
    except OSError as exc:
        raise CliError(f"cannot read the config file {path}: {exc.strerror or exc}") from None
    if max(size, len(data)) > MAX_CONFIG_CHARS:
        got = f"{size} bytes" if size > MAX_CONFIG_CHARS else f"over {MAX_CONFIG_CHARS} bytes"
        raise CliError(f"the config file {path} is too large ({got}): a run config is at most {MAX_CONFIG_CHARS} "
                       "bytes")
    if b"\0" in data:
        raise CliError(f"the config file {path} is a binary file, not a YAML or JSON text")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise CliError(f"the config file {path} is not UTF-8 text (byte {exc.start + 1} cannot be read): is it "
                       "a YAML or JSON file?") from None


def config_from_args(args: argparse.Namespace) -> RunConfig:
    data: dict[str, Any] = {}
    if args.config is not None:
        text = read_config_file(args.config)
        base = RunConfig.from_json(text) if args.config.suffix == ".json" else RunConfig.from_yaml(text)
        data = base.to_dict()
    for key, value in vars(args).items():
        if key.startswith("set_"):
            data[key[4:]] = value
    if "set_classes" in vars(args) and not args.set_classes.strip():
        # An empty text means "all classes" in a link's or the page's box; on a command line it is a mistake.
        raise ConfigError([f"classes must be a list of class numbers like 0,1,2, got {quote(args.set_classes)}; "
                           "leave --classes out to train on every class"])
    for item in args.hp:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise CliError(f"--hp takes NAME=VALUE, got {quote(item)}")
        data[f"{HP_PREFIX}{name.strip()}"] = value
    return RunConfig.from_dict(data)


class _Progress:
    """Sink that records to the store and keeps a progress bar with loss and accuracy."""

    def __init__(self, store: RunStore, run_id: int, quiet: bool) -> None:
        from dmlviz.runner import StoreSink

        self.sink = StoreSink(store, run_id)
        self.quiet = quiet
        self.bar: Any = None

    def started(self, info: dict[str, Any]) -> None:
        self.sink.started(info)
        if not self.quiet:
            from tqdm import tqdm

            print(f"model {info['model']} on {info['device']} ({info['precision']}), "
                  f"{info['steps_per_epoch']} steps per epoch", file=sys.stderr)
            self.bar = tqdm(total=info["total_steps"], unit="step", dynamic_ncols=True)

    def snapshot(self, snapshot: Snapshot) -> None:
        self.sink.snapshot(snapshot)
        if self.bar is not None:
            self.bar.update(snapshot.step - self.bar.n)
            shown = {k: snapshot.metrics[k] for k in ("loss", "train_acc", "probe_acc", "test_acc")
                     if k in snapshot.metrics}
            self.bar.set_postfix({k: f"{v:.4g}" for k, v in shown.items()}, refresh=False)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class _Abort(BaseException):
    """A second signal while the run was stopping: stop at once, in the middle of the step."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


_STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name))


class _Signals(FreeRunning):
    """Turns the first SIGINT (Ctrl-C), SIGTERM (``runs stop``, ``kill``, a shutdown) or SIGHUP (the terminal
    closed) into a clean stop after the current step, the run kept; a second one stops at once. The handlers
    before it are put back by ``restore``."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self.settled = False  # the run has ended: a signal now must not cut its record short
        self._previous = {signum: signal.signal(signum, self._handle) for signum in _STOP_SIGNALS}

    def _handle(self, signum: int, frame: object) -> None:
        if self.signum is not None and not self.settled:
            raise _Abort(signum)
        self.signum = self.signum or signum

    def gate(self) -> Action:
        return "stop" if self.signum is not None else "run"

    def restore(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)


def _signal_name(signum: int) -> str:
    return signal.Signals(signum).name


def _record_end(store: RunStore, run_id: int, status: RunStatus, error: str | None) -> StoreError | None:
    """Write how the run ended; the StoreError if even that cannot be written (then said on stderr)."""
    try:
        store.set_status(run_id, status, error=error)
    except StoreError as exc:
        print(f"error: run {run_id} could not be recorded as {status} ({exc}); it stays listed as running "
              f"until `python -m dmlviz runs stop {run_id}` (or the app, when it starts) marks it interrupted",
              file=sys.stderr)
        return exc
    return None


def _fault_status(exc: StoreError) -> int:
    return EXIT_DISK_FULL if isinstance(exc, StoreFull) else EXIT_STORE


def cmd_train(args: argparse.Namespace, store: RunStore) -> int:
    config = config_from_args(args)
    config.check_limits()  # a public server's caps hold here too, before a run is recorded
    from dmlviz.engine import train

    control = _Signals()  # before the run exists: from its first row on, every way out is recorded
    try:
        run_id = store.create_run(config.to_dict(), name=config.name, config_hash=config.config_hash(),
                                  status=RunStatus.RUNNING, pid=os.getpid())
        print(f"run {run_id}: {config.loss} on {config.dataset}, d = {config.feature_dim}", file=sys.stderr)
        progress = _Progress(store, run_id, args.quiet)
        try:
            result = train(config, settings.data_dir(args.data_dir), progress, control)
        except BaseException as exc:  # every way out of a run is recorded (_ended), not only the expected ones
            control.settled = True
            progress.close()
            return _ended(store, run_id, exc)
        control.settled = True
        progress.close()
        error = result.error
        if control.signum not in (None, signal.SIGINT) and result.outcome == RunStatus.STOPPED:
            error = (f"the command-line process received {_signal_name(control.signum)} (runs stop, kill or a "
                     f"shutdown); what it recorded up to step {result.step} is kept")
        if (failed := _record_end(store, run_id, result.outcome, error)) is not None:
            return _fault_status(failed)
    finally:
        control.restore()
    record = store.get_run(run_id)
    print(f"run {run_id} {result.outcome} at step {result.step}{_summary_text(record.summary)}", file=sys.stderr)
    if result.error:
        print(f"error: {result.error}", file=sys.stderr)
    if result.outcome == RunStatus.STOPPED:
        return 128 + (control.signum or signal.SIGINT)
    return EXIT_OK if result.outcome == RunStatus.FINISHED else EXIT_FAILED


def _ended(store: RunStore, run_id: int, exc: BaseException) -> int:
    """Record and report a run that ended by an exception; its exit status."""
    from dmlviz.data import DataError, DatasetUnavailable

    try:
        summary = store.get_run(run_id).summary
    except StoreError:
        summary = {}
    step = f" at step {int(summary['step'])}" if "step" in summary else ""
    if isinstance(exc, KeyboardInterrupt | _Abort):
        signum = exc.signum if isinstance(exc, _Abort) else signal.SIGINT
        error = f"stopped at once{step} by a second {_signal_name(signum)}; what it recorded before is kept"
        status, code = RunStatus.STOPPED, 128 + signum
    elif isinstance(exc, MemoryError):
        error = (f"out of memory{step} ({exc or 'MemoryError'}); what it recorded before is kept: try a smaller "
                 "batch, probe set or feature dim")
        status, code = RunStatus.FAILED, EXIT_FAILED
    elif isinstance(exc, StoreError):
        code = _fault_status(exc) if isinstance(exc, StoreFault) else EXIT_FAILED
        error, status = str(exc), RunStatus.FAILED
    elif isinstance(exc, DataError | DatasetUnavailable | RuntimeError | ValueError):
        error, status, code = str(exc), RunStatus.FAILED, EXIT_FAILED  # written for people (see runner._describe)
    elif isinstance(exc, Exception | SystemExit):
        error, status, code = f"{type(exc).__name__}: {exc}", RunStatus.FAILED, EXIT_FAILED
    else:
        raise exc  # GeneratorExit and the like: not a way a run ends
    print(f"error: {error}", file=sys.stderr)
    if (failed := _record_end(store, run_id, status, error)) is not None:
        return _fault_status(failed)
    return code


def _summary_text(summary: dict[str, float]) -> str:
    parts = [f"{spec.label} {spec.format(summary[spec.name])}"
             for spec in map(metric_spec, ("test_acc", "loss")) if spec.name in summary]
    if "elapsed" in summary:
        parts.append(f"{summary['elapsed']:.1f} s")
    return ": " + ", ".join(parts) if parts else ""


def _when(timestamp: float | None) -> str:
    return datetime.fromtimestamp(timestamp).strftime("%Y-%m-%d %H:%M:%S") if timestamp else "-"


def cmd_runs(args: argparse.Namespace, store: RunStore) -> int:
    if args.runs_command == "list":
        records = store.list_runs([args.status] if args.status else None)
        if not records:
            print("no runs stored" + (f" with status {args.status}" if args.status else ""))
            return EXIT_OK
        print(f"{'id':>4}  {'status':<11} {'loss':<12} {'dataset':<14} {'d':>3}  {'test acc':>8}  "
              f"{'created':<19}  name")
        for r in records:
            acc = metric_spec("test_acc").format(r.summary["test_acc"]) if "test_acc" in r.summary else "-"
            print(f"{r.id:>4}  {r.status:<11} {r.config.get('loss', '?'):<12} {r.config.get('dataset', '?'):<14} "
                  f"{r.config.get('feature_dim', '?'):>3}  {acc:>8}  {_when(r.created_at):<19}  {r.name}")
        return EXIT_OK
    record = store.get_run(args.run_id)
    if args.runs_command == "show":
        duration = f"{record.duration:.1f} s" if record.duration is not None else "-"
        print(f"run {record.id}{' (' + record.name + ')' if record.name else ''}: {record.status}")
        if record.error:
            print(f"  error: {record.error}")
        print(f"  created {_when(record.created_at)}, started {_when(record.started_at)}, "
              f"finished {_when(record.finished_at)}, duration {duration}")
        print(f"  snapshots: {store.count_snapshots(record.id)}")
        print("  summary: " + json.dumps({k: round(v, 6) for k, v in record.summary.items()}))
        print("  config:")
        import yaml

        print("    " + yaml.safe_dump(record.config, sort_keys=False).strip().replace("\n", "\n    "))
        return EXIT_OK
    if args.runs_command == "stop":
        return cmd_stop(store, record, args.wait)
    if record.active and process_alive(record.pid, record.updated_at) and record.pid != os.getpid():
        raise CliError(f"run {record.id} is {record.status}; stop it before deleting it "
                       f"(python -m dmlviz runs stop {record.id})")
    store.delete_run(record.id)
    print(f"deleted run {record.id}")
    return EXIT_OK


def cmd_stop(store: RunStore, record: Any, wait: float) -> int:
    """Stop a run of this store, whoever runs it: a queued one is marked stopped (the app's runner then never
    starts it); a running or paused one is sent SIGTERM, which the command line's and the app's workers turn
    into a clean stop after the current step; a run whose process is gone is marked interrupted."""
    run_id = record.id
    if not record.active:
        print(f"run {run_id} is not running: it is {record.status}")
        return EXIT_OK
    if not process_alive(record.pid, record.updated_at):
        store.mark_interrupted([run_id])
        print(f"run {run_id} was {record.status} but its process (pid {record.pid}) is gone: marked interrupted; "
              "what it recorded is kept")
        return EXIT_OK
    before = "stopped from the command line before it started"
    if store.set_status(run_id, RunStatus.STOPPED, error=before, was={RunStatus.QUEUED}):
        print(f"run {run_id} was waiting in the queue of the app (pid {record.pid}): stopped; it will not start")
        return EXIT_OK
    record = store.get_run(run_id)  # it may have started meanwhile: its worker's pid now
    if not record.active:
        print(f"run {run_id} is not running: it is {record.status}")
        return EXIT_OK
    if store.get_info(run_id, "ray_worker") is not None:
        # Its pid is the app server's, which writes what the Ray worker sends: a signal would stop the server.
        raise CliError(f"run {run_id} trains on Ray for the app (pid {record.pid}); stop it from its page")
    try:
        os.kill(record.pid, signal.SIGTERM)
    except ProcessLookupError:
        store.mark_interrupted([run_id])
        print(f"run {run_id}'s process (pid {record.pid}) is gone: marked interrupted; what it recorded is kept")
        return EXIT_OK
    except PermissionError as exc:
        raise StoreFault(f"run {run_id} is trained by process {record.pid} of another user, which this one may "
                         "not signal; stop it from the app or as that user") from exc
    deadline = time.monotonic() + wait
    while (record := store.get_run(run_id)).active:
        if time.monotonic() > deadline:
            print(f"error: run {run_id} (process {record.pid}) was asked to stop but has not recorded its end "
                  f"within {wait:g} s; it stops after its current step", file=sys.stderr)
            return EXIT_FAILED
        time.sleep(0.1)
    step = record.summary.get("step")
    print(f"run {run_id} {record.status}" + (f" at step {int(step)}" if step is not None else ""))
    return EXIT_OK


def cmd_check(args: argparse.Namespace, root: Path) -> int:
    """SQLite's quick_check; for a store that is damaged or will not open, which runs can still be read
    (and, with --salvage, a new store holding them)."""
    path = root / DB_NAME
    try:
        store = RunStore(root, read_only=True)
    except StoreFault as exc:
        damage = [str(exc)]
    else:
        damage = store.damage()
        size = store.size_bytes()
        store.close()
        if not damage:
            print(f"the run store {path} is sound ({size / 1e6:.1f} MB)")
            if args.salvage is not None:
                copied = salvage(path, args.salvage)
                print(f"copied its {len(copied)} run(s) into {args.salvage / DB_NAME}")
            return EXIT_OK
    for problem in damage:
        print(problem)
    if not path.exists():
        return EXIT_STORE
    runs = salvage(path, args.salvage)
    for run in runs:
        print("  " + run.describe())
    whole = sum(run.whole for run in runs)
    partly = sum(run.record and not run.whole and run.snapshots > 0 for run in runs)
    print(f"the run store {path} is damaged: {whole} of {len(runs)} run(s) read whole, {partly} in part; "
          "runs on sound pages still read")
    if args.salvage is not None:
        print(f"copied what could be read into {args.salvage / DB_NAME}; open it with --store {args.salvage} "
              f"(or ${settings.STORE_DIR_ENV}), then move the damaged file aside")
    else:
        print("export what you need, or copy what can be read into a new store with "
              "`python -m dmlviz runs check --salvage DIR`; then move the file aside")
    return EXIT_FAILED


def cmd_export(args: argparse.Namespace, store: RunStore) -> int:
    from dmlviz.data import DataError, DatasetUnavailable

    exporter = EXPORTERS[args.format]
    figure = args.figure if exporter.figures else None
    out = args.out or settings.export_dir(store.root) / exporter.file_name(args.run_id, figure)
    for name in ("frames", "fps"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            raise CliError(f"--{name} must be at least 1, got {getattr(args, name)}")
    try:
        if args.out is None:
            out.parent.mkdir(parents=True, exist_ok=True)
        exporter.write(store, args.run_id, out, ExportOptions(snapshot=args.snapshot, figure=args.figure,
                                                              frames=args.frames, fps=args.fps,
                                                              regions=args.regions, forces=args.forces,
                                                              data_dir=args.data_dir))
    except (DataError, DatasetUnavailable) as exc:
        raise CliError(f"cannot draw the probe images: {exc}") from exc
    except OSError as exc:
        hint = "" if args.out else "; name another place with --out"
        raise CliError(f"cannot write {out}: {exc.strerror or exc}{hint}") from exc
    print(f"wrote {out.resolve()}")  # the whole path: the default folder is not the one the command ran in
    return EXIT_OK


def cmd_sweep(args: argparse.Namespace, store: RunStore) -> int:
    """Train what a sweep lacks, then print (and write) its table of means and confidence intervals."""
    import numpy as np
    import pandas as pd

    from dmlviz import sweep

    plan = sweep.parse(read_config_file(args.file))
    print(f"{len(plan.cells)} cells × {len(plan.seeds)} seeds = {plan.runs} runs", file=sys.stderr)
    if args.dry_run:
        return EXIT_OK
    control = _Signals()
    data_dir = Path(args.data_dir) if args.data_dir else None
    try:
        if args.executor == "ray":
            outcomes = _sweep_on_ray(plan, store, data_dir, control)
        else:
            outcomes = sweep.run(plan, store, data_dir, control, lambda line: print(line, file=sys.stderr))
    finally:
        control.restore()
    # None (an interval of one seed) as NaN in float columns, so that it prints as na_rep and floats as floats
    table = pd.DataFrame(sweep.results(plan, store)).fillna(np.nan).infer_objects()
    print(table.to_string(index=False, na_rep="—", float_format=lambda value: f"{value:.4g}"))
    if args.csv:
        table.to_csv(args.csv, index=False)
    if control.signum is not None:
        return 128 + control.signum
    return EXIT_FAILED if any(outcome != RunStatus.FINISHED for outcome in outcomes) else EXIT_OK


def _sweep_on_ray(plan: Any, store: RunStore, data_dir: Path | None, control: Any) -> list[str]:
    """Queue the sweep's missing runs on a Ray cluster and wait for them; Ctrl-C stops them all."""
    from dmlviz import sweep
    from dmlviz.ray_executor import RayUnavailable
    from dmlviz.runner import make_runner

    try:
        runner = make_runner(store, data_dir, "ray")
    except RayUnavailable as error:
        raise CliError(str(error)) from error
    try:
        ids = [runner.submit(config.replace(name=sweep.run_name(cell, config)))
               for cell, config in sweep.missing(plan, store)]
        print(f"{len(ids)} runs queued on Ray, {runner.max_concurrent} at a time", file=sys.stderr)
        for run_id in ids:
            while control.signum is None and runner.store.get_run(run_id).active:
                time.sleep(0.2)
            print(f"run {run_id}: {store.get_run(run_id).status}", file=sys.stderr)
        return [store.get_run(run_id).status for run_id in ids]
    finally:
        runner.shutdown()


def cmd_lessons_check(files: list[Path]) -> int:
    """Check lesson files; each mistake with its line on stderr."""
    from dmlviz import lessons

    broken = []
    for path in files:
        try:
            lesson = lessons.load(path)
        except lessons.LessonError as error:
            broken.append(error)
        else:
            print(f"{path}: {lesson.title}, {len(lesson.steps)} steps")
    _say_broken(broken)
    return EXIT_USAGE if broken else EXIT_OK


def cmd_lessons(args: argparse.Namespace, store: RunStore) -> int:
    """List the lessons with their ready replays, or record the replays that are missing."""
    from dmlviz import lessons

    found, broken = lessons.all_lessons(Path(args.data_dir) if args.data_dir else None)
    if args.lessons_command == "build":
        if unknown := sorted(set(args.keys) - {lesson.key for lesson in found}):
            known = ", ".join(lesson.key for lesson in found)
            raise CliError(f"no lesson {', '.join(unknown)}; the lessons are {known}")
        return _build_lessons([lesson for lesson in found if not args.keys or lesson.key in args.keys], store,
                              args.data_dir)
    for lesson in found:
        print(f"{lesson.key}: {lesson.title} ({len(lesson.steps)} steps; {lesson.path})")
        for number, step in enumerate(lesson.steps, start=1):
            ready = lessons.recording(store, step)
            print(f"  {number}. {step.title}" + (f"  [replay: run {', '.join(map(str, ready))}]" if ready else ""))
    _say_broken(broken)
    return EXIT_USAGE if broken else EXIT_OK


def _build_lessons(chosen: list, store: RunStore, data_dir: str | None) -> int:
    """Record every step of ``chosen`` that has no ready replay, and its video; Ctrl-C stops after the current
    step's run."""
    from dmlviz import lessons

    control = _Signals()
    try:
        for lesson in chosen:
            for number, step in enumerate(lesson.steps, start=1):
                name = f"{lesson.title} · {number}. {step.title}"
                if ready := lessons.recording(store, step):
                    # A step recorded by the app's Record button, or before videos were made, gets its video.
                    made = lessons.movie(store, ready, step) is None and lessons.make_movie(store, ready, step)
                    print(f"{name}: ready" + ("; its video made" if made else ""), file=sys.stderr)
                    continue
                start = time.monotonic()
                outcomes = lessons.record(step, name, store, Path(data_dir) if data_dir else None, control)
                print(f"{name}: {', '.join(outcomes)} in {time.monotonic() - start:.0f} s", file=sys.stderr)
                if control.signum is not None:
                    return 128 + control.signum
                if any(outcome != RunStatus.FINISHED for outcome in outcomes):
                    return EXIT_FAILED
    finally:
        control.restore()
    return EXIT_OK


def _say_broken(broken: list) -> None:
    for error in broken:
        print(f"error: {error.path}:", file=sys.stderr)
        for problem in error.problems:
            print(f"  {problem}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return _command(args)
    except BrokenPipeError:
        # Whoever read the output stopped (`runs list | head`): no traceback, and none when Python flushes.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_PIPE
    except StoreFault as exc:  # the store's disk, file or folder, not what was asked
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_DISK_FULL if isinstance(exc, StoreFull) else EXIT_STORE
    except (CliError, ConfigError, StoreError, settings.SettingsError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE


def _command(args: argparse.Namespace) -> int:
    if args.command == "lessons" and args.lessons_command == "check":
        return cmd_lessons_check(args.files)
    root = settings.store_dir(args.store)
    if args.command == "runs" and args.runs_command == "check":
        return cmd_check(args, root)
    # Listing and showing only read: they work on a full disk, and change nothing.
    reading = (args.command == "runs" and args.runs_command in ("list", "show")) or \
        (args.command == "lessons" and args.lessons_command == "list")
    store = RunStore(root, read_only=reading)
    if args.command == "train":
        return cmd_train(args, store)
    if args.command == "export":
        return cmd_export(args, store)
    if args.command == "lessons":
        return cmd_lessons(args, store)
    if args.command == "sweep":
        return cmd_sweep(args, store)
    return cmd_runs(args, store)
