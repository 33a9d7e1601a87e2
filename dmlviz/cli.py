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
from dataclasses import fields
from datetime import datetime
from pathlib import Path
from typing import Any

from dmlviz import export, settings
from dmlviz.config import HP_PREFIX, ConfigError, RunConfig
from dmlviz.engine import Action, FreeRunning
from dmlviz.export import FORMATS, MOVIE_FPS, MOVIE_FRAMES, PNG_FIGURES, REPLAY_FRAMES
from dmlviz.snapshot import Snapshot
from dmlviz.store import RunStore, StoreError, parse_run_id

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


class CliError(Exception):
    """A mistake in what the user asked for: printed as one line, exit status 2."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m dmlviz", description="Train feature-learning losses and "
                                     "keep every run; the app (make run) shows them live.")
    parser.add_argument("--store", metavar="DIR", help=f"run store folder (default ${settings.STORE_DIR_ENV} "
                        "or ~/.local/share/dmlviz)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="{train,runs,export}")

    train = commands.add_parser("train", help="train one run in this process",
                                description="Train one run. Flags override the --config file; unset "
                                "settings take their defaults.")
    train.add_argument("--config", metavar="FILE", type=Path, help="a YAML (or JSON) run config")
    train.add_argument("--hp", metavar="NAME=VALUE", action="append", default=[],
                       help="a hyperparameter of the loss, e.g. --hp lambda=0.1 (repeatable)")
    train.add_argument("--data-dir", metavar="DIR", help=f"dataset cache (default ${settings.DATA_DIR_ENV} or "
                       "~/.cache/dmlviz)")
    train.add_argument("--quiet", action="store_true", help="no progress bar")
    for f in fields(RunConfig):
        if f.name == "loss_params":
            continue
        choices = f.metadata["choices"]
        hint = f" ({', '.join(choices)})" if choices else ""
        train.add_argument(f"--{f.name.replace('_', '-')}", dest=f"set_{f.name}", metavar="VALUE",
                           default=argparse.SUPPRESS, help=f"{f.metadata['help']}{hint} [default: {f.default}]"
                           if not callable(f.default) else f.metadata["help"])

    runs = commands.add_parser("runs", help="list, show or delete stored runs")
    runs_commands = runs.add_subparsers(dest="runs_command", required=True, metavar="{list,show,delete,check}")
    listing = runs_commands.add_parser("list", help="every stored run, newest first")
    listing.add_argument("--status", help="only runs with this status")
    show = runs_commands.add_parser("show", help="one run: config, status, metrics")
    show.add_argument("run_id", type=_run_id, metavar="ID")
    delete = runs_commands.add_parser("delete", help="delete a run and everything it recorded")
    delete.add_argument("run_id", type=_run_id, metavar="ID")
    runs_commands.add_parser("check", help="look for damage in the store file (SQLite's quick_check); "
                             "exit status 1 if there is any")

    exporting = commands.add_parser("export", help="write a stored run in another format",
                                 description="Write the feature space over a run as an animation (gif, mp4), "
                                 "its replay as a standalone page (html), a figure at a snapshot (png), its probe "
                                 "features at a snapshot (csv, parquet), TensorBoard projector files (tensorboard: "
                                 "a folder), or its config (yaml).")
    exporting.add_argument("run_id", type=_run_id, metavar="RUN")
    exporting.add_argument("--format", required=True, choices=FORMATS)
    exporting.add_argument("--snapshot", type=int, metavar="N", help="png, csv, parquet, tensorboard: the "
                        "snapshot's number (0 is the first, -1 the last; default: the last)")
    exporting.add_argument("--figure", choices=PNG_FIGURES, default="features", help="png: the figure to draw "
                        "[default: features]")
    exporting.add_argument("--frames", type=int, metavar="N", help=f"gif, mp4, html: at most N snapshots, spread "
                        f"over the run [default: {MOVIE_FRAMES} for gif and mp4, {REPLAY_FRAMES} for html]")
    exporting.add_argument("--fps", type=int, default=MOVIE_FPS, metavar="N", help=f"gif, mp4: frames a second "
                        f"[default: {MOVIE_FPS}]")
    exporting.add_argument("--out", type=Path, metavar="PATH", help="file (or folder, for tensorboard) to write; "
                        "default: run<RUN>.<format> in the folder exports/ of the run store (see --store)")
    exporting.add_argument("--data-dir", metavar="DIR", help="dataset cache, for the projector's sprite image")
    return parser


def _run_id(text: str) -> int:
    if (value := parse_run_id(text)) is None:
        raise argparse.ArgumentTypeError(f"a run id is a whole number from 1 (see runs list), got {text!r}")
    return value


def config_from_args(args: argparse.Namespace) -> RunConfig:
    data: dict[str, Any] = {}
    if args.config is not None:
        try:
            text = args.config.read_text()
        except OSError as exc:
            raise CliError(f"cannot read the config file {args.config}: {exc.strerror}") from None
        base = RunConfig.from_json(text) if args.config.suffix == ".json" else RunConfig.from_yaml(text)
        data = base.to_dict()
    for key, value in vars(args).items():
        if key.startswith("set_"):
            data[key[4:]] = value
    for item in args.hp:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise CliError(f"--hp takes NAME=VALUE, got {item!r}")
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


class _CtrlC(FreeRunning):
    """Turns the first Ctrl-C into a clean stop after the current step; the run is kept."""

    def __init__(self) -> None:
        self.stopping = False
        signal.signal(signal.SIGINT, self._handle)

    def _handle(self, signum: int, frame: object) -> None:
        if self.stopping:
            raise KeyboardInterrupt
        self.stopping = True

    def gate(self) -> Action:
        return "stop" if self.stopping else "run"


def cmd_train(args: argparse.Namespace, store: RunStore) -> int:
    config = config_from_args(args)
    config.check_limits()  # a public server's caps hold here too, before a run is recorded
    from dmlviz.data import DataError, DatasetUnavailable
    from dmlviz.engine import train

    run_id = store.create_run(config.to_dict(), name=config.name, config_hash=config.config_hash(),
                              status="running", pid=os.getpid())
    print(f"run {run_id}: {config.loss} on {config.dataset}, d = {config.feature_dim}", file=sys.stderr)
    progress = _Progress(store, run_id, args.quiet)
    control = _CtrlC()
    try:
        result = train(config, settings.data_dir(args.data_dir), progress, control)
    except (DataError, DatasetUnavailable, RuntimeError, ValueError) as exc:
        progress.close()
        store.set_status(run_id, "failed", error=str(exc))
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    progress.close()
    store.set_status(run_id, result.outcome, error=result.error)
    record = store.get_run(run_id)
    print(f"run {run_id} {result.outcome} at step {result.step}{_summary_text(record.summary)}", file=sys.stderr)
    if result.error:
        print(f"error: {result.error}", file=sys.stderr)
    return {"finished": EXIT_OK, "stopped": EXIT_INTERRUPTED}.get(result.outcome, EXIT_FAILED)


def _summary_text(summary: dict[str, float]) -> str:
    parts = []
    if "test_acc" in summary:
        parts.append(f"test accuracy {summary['test_acc']:.2%}")
    if "loss" in summary:
        parts.append(f"loss {summary['loss']:.4g}")
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
            acc = f"{r.summary['test_acc']:.2%}" if "test_acc" in r.summary else "-"
            print(f"{r.id:>4}  {r.status:<11} {r.config.get('loss', '?'):<12} {r.config.get('dataset', '?'):<14} "
                  f"{r.config.get('feature_dim', '?'):>3}  {acc:>8}  {_when(r.created_at):<19}  {r.name}")
        return EXIT_OK
    if args.runs_command == "check":
        damage = store.damage()
        for problem in damage:
            print(problem)
        print(f"the run store {store.path} is " + ("damaged: runs on sound pages still read; export what you need, "
              "then move the file aside" if damage else "sound") + f" ({store.size_bytes() / 1e6:.1f} MB)")
        return EXIT_FAILED if damage else EXIT_OK
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
    if record.active and record.pid is not None and record.pid != os.getpid():
        raise CliError(f"run {record.id} is {record.status}; stop it before deleting it")
    store.delete_run(record.id)
    print(f"deleted run {record.id}")
    return EXIT_OK


def cmd_export(args: argparse.Namespace, store: RunStore) -> int:
    from dmlviz.data import DataError, DatasetUnavailable

    suffix = {"tensorboard": "-projector", "png": f"-{args.figure}.png"}.get(args.format, f".{args.format}")
    out = args.out or settings.export_dir(store.root) / f"run{args.run_id}{suffix}"
    for name in ("frames", "fps"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            raise CliError(f"--{name} must be at least 1, got {getattr(args, name)}")
    try:
        if args.out is None:
            out.parent.mkdir(parents=True, exist_ok=True)
        if args.format == "yaml":
            export.write_config(store, args.run_id, out)
        elif args.format == "html":
            export.write_replay(store, args.run_id, out, max_frames=args.frames or REPLAY_FRAMES)
        elif args.format in export.MOVIE_FORMATS:
            export.write_movie(store, args.run_id, out, args.format, max_frames=args.frames or MOVIE_FRAMES,
                               fps=args.fps)
        elif args.format == "png":
            export.write_png(store, args.run_id, out, args.figure, args.snapshot)
        elif args.format == "tensorboard":
            export.write_projector(store, args.run_id, out, args.snapshot, args.data_dir)
        else:
            export.write_features(store, args.run_id, out, args.format, args.snapshot)
    except (DataError, DatasetUnavailable) as exc:
        raise CliError(f"cannot draw the probe images: {exc}") from exc
    except OSError as exc:
        hint = "" if args.out else "; name another place with --out"
        raise CliError(f"cannot write {out}: {exc.strerror or exc}{hint}") from exc
    print(f"wrote {out.resolve()}")  # the whole path: the default folder is not the one the command ran in
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        store = RunStore(settings.store_dir(args.store))
        if args.command == "train":
            return cmd_train(args, store)
        if args.command == "export":
            return cmd_export(args, store)
        return cmd_runs(args, store)
    except (CliError, ConfigError, StoreError, settings.SettingsError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
