"""Lessons: a sequence of steps a teacher runs in front of a class, each a picture and a sentence or two.

A lesson is a YAML file: a ``title``, a ``summary`` and ``steps``. Each step has a ``title``, a ``text``
(what to look for; Markdown, LaTeX between dollars), what to train — a Train page preset (``preset:
center-loss``), run settings as ``RunConfig`` reads them (``run: {loss: arcface, feature_dim: 3}``) or a
comparison (``compare: sphere-margins``, or its settings as the Compare page's link writes them:
``{loss1: softmax, loss2: center, feature_dim: 2}``) —, how to show it (``view``: the fields of
``ViewOptions``, e.g. ``{regions: true}``) and optionally the step of the snapshot to stop at
(``stop_at``). The built-in lessons are in ``dmlviz/builtin_lessons/``; a teacher's own go in the data
folder's ``lessons/``. A file that cannot be read is named with the line of its mistake, and the other
lessons still load.

A recorded step plays as a video (``movie``): a browser starts an H.264 file at once, where the
interactive plotly replay first has to load and run plotly.js (over a second on a slow projector laptop).
The video is made when the step is recorded and kept in the store folder's ``lesson-movies/``.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dmlviz import settings
from dmlviz.comparison import COMPARISON_PRESETS, Comparison
from dmlviz.config import ConfigError, RunConfig, yaml_document
from dmlviz.presets import PRESETS
from dmlviz.status import RunStatus
from dmlviz.store import RunStore
from dmlviz.view import ViewOptions

if TYPE_CHECKING:
    from dmlviz.engine import Control

BUILTIN = Path(__file__).with_name("builtin_lessons")
USER_FOLDER = "lessons"  # in the data folder
MAX_LESSON_CHARS = 262_144  # a lesson of twenty steps is under 10,000
STEP_KEYS = ("title", "text", "preset", "run", "compare", "view", "stop_at")
TRAINS = ("preset", "run", "compare")  # a step names exactly one of these
_VIEW_FIELDS = {f.name for f in fields(ViewOptions)}
MOVIE_FOLDER = "lesson-movies"  # in the store folder
REPLAY_FRAMES = 60  # a replay's snapshots: enough to see the space form, few enough to start at once
MOVIE_FPS = 12  # 60 frames in five seconds


class LessonError(ValueError):
    """A lesson file that cannot be used; ``problems`` has one message per mistake, each with its line."""

    def __init__(self, path: Path, problems: list[str]) -> None:
        self.path = path
        self.problems = problems
        super().__init__(f"{path.name}: " + "; ".join(problems))


@dataclass(frozen=True)
class LessonStep:
    """One step: its words, what it trains (one run, or a comparison of two to four), and how to show it."""

    title: str
    text: str
    view: dict[str, Any]  # the ViewOptions fields the lesson sets; the run's own view gives the others
    run: RunConfig | None = None
    comparison: Comparison | None = None
    stop_at: int | None = None

    def configs(self) -> list[RunConfig]:
        """The runs the step trains: its one run, or the comparison's."""
        return [self.run] if self.run is not None else self.comparison.configs()


@dataclass(frozen=True)
class Lesson:
    key: str  # the file's name without .yaml: the lesson's name in links
    title: str
    summary: str
    steps: tuple[LessonStep, ...]
    path: Path


def load(path: Path) -> Lesson:
    """The lesson in ``path``; a ``LessonError`` naming every mistake with its line."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise LessonError(path, [f"cannot be read as text: {error}"]) from None
    try:
        data, lines = yaml_document(text, MAX_LESSON_CHARS)
    except ConfigError as error:
        raise LessonError(path, error.errors) from None
    problems: list[str] = []
    if not isinstance(data, dict):
        raise LessonError(path, ["a lesson is a mapping with a title, a summary and steps"])
    for key in sorted(set(data) - {"title", "summary", "steps"}, key=str):
        problems.append(f"line {lines.get((key,), 1)}: unknown key {key!r}; a lesson has title, summary and steps")
    title, summary = data.get("title"), data.get("summary", "")
    if not isinstance(title, str) or not title.strip():
        problems.append(f"line {lines.get(('title',), 1)}: a lesson needs a title (text)")
    if not isinstance(summary, str):
        problems.append(f"line {lines.get(('summary',), 1)}: summary must be text")
    raw_steps = data.get("steps")
    if not isinstance(raw_steps, list) or not raw_steps:
        problems.append(f"line {lines.get(('steps',), 1)}: a lesson needs steps: a list of one or more")
        raw_steps = []
    steps = []
    for number, raw in enumerate(raw_steps, start=1):
        line = lines.get(("steps", number - 1), 1)
        step, wrong = _step(raw, line, lambda key, n=number - 1, at=line: lines.get(("steps", n, key), at))
        problems += [f"line {where}: step {number}: {message}" for where, message in wrong]
        if step is not None:
            steps.append(step)
    if problems:
        raise LessonError(path, problems)
    return Lesson(path.stem, title.strip(), summary.strip(), tuple(steps), path)


def _step(raw: Any, line: int, line_of: Any) -> tuple[LessonStep | None, list[tuple[int, str]]]:
    """A step and what is wrong with it, each problem with its line."""
    if not isinstance(raw, dict):
        return None, [(line, "a step is a mapping with a title, a text and what it trains")]
    problems = [(line_of(key), f"unknown key {key!r}; a step has {', '.join(STEP_KEYS)}")
                for key in raw if key not in STEP_KEYS]
    for key in ("title", "text"):
        if not isinstance(raw.get(key), str) or not raw[key].strip():
            problems.append((line_of(key), f"a step needs a {key} (text)"))
    named = [key for key in TRAINS if key in raw]
    if len(named) != 1:
        problems.append((line, f"a step trains one thing: give one of {', '.join(TRAINS)}, got "
                               f"{', '.join(named) or 'none'}"))
    run = comparison = None
    try:
        if named == ["preset"]:
            run = _preset(raw["preset"])
        elif named == ["run"]:
            if not isinstance(raw["run"], dict):
                raise ConfigError(["run is a mapping of settings, e.g. {loss: arcface, feature_dim: 3}"])
            run = RunConfig.from_dict(raw["run"])
        elif named == ["compare"]:
            comparison = _comparison(raw["compare"])
    except ConfigError as error:
        problems += [(line_of(named[0]), message) for message in error.errors]
    view = raw.get("view", {})
    if not isinstance(view, dict) or set(view) - _VIEW_FIELDS:
        problems.append((line_of("view"), f"view is a mapping of {', '.join(sorted(_VIEW_FIELDS))}"))
    else:
        try:
            ViewOptions(**view)
        except (TypeError, ValueError) as error:
            problems.append((line_of("view"), str(error)))
    stop_at = raw.get("stop_at")
    if stop_at is not None and (isinstance(stop_at, bool) or not isinstance(stop_at, int) or stop_at < 0):
        problems.append((line_of("stop_at"), f"stop_at must be a step number ≥ 0, got {stop_at!r}"))
    if problems:
        return None, problems
    return LessonStep(raw["title"].strip(), raw["text"].strip(), dict(view), run, comparison, stop_at), []


def _preset(key: Any) -> RunConfig:
    for preset in PRESETS:
        if preset.key == key:
            return preset.config()
    raise ConfigError([f"unknown preset {key!r}; choose one of {', '.join(p.key for p in PRESETS)}"])


def _comparison(value: Any) -> Comparison:
    if isinstance(value, str):
        for preset in COMPARISON_PRESETS:
            if preset.key == value:
                return preset.comparison()
        raise ConfigError([f"unknown comparison {value!r}; choose one of "
                           f"{', '.join(p.key for p in COMPARISON_PRESETS)}, or give its settings"])
    if not isinstance(value, dict):
        raise ConfigError(["compare is a comparison preset or its settings, e.g. {loss1: softmax, loss2: center}"])
    return Comparison.from_query({str(k): str(v) for k, v in value.items()})


def all_lessons(data_dir: Path | None = None) -> tuple[list[Lesson], list[LessonError]]:
    """The built-in lessons, then the teacher's own (``<data dir>/lessons/*.yaml``), by file name; and the
    files that could not be used, each with its problems."""
    folders = [BUILTIN, settings.data_dir(data_dir) / USER_FOLDER]
    found, broken = [], []
    for folder in folders:
        for path in sorted(folder.glob("*.yaml")) if folder.is_dir() else []:
            try:
                found.append(load(path))
            except LessonError as error:
                broken.append(error)
    return found, broken


def recording(store: RunStore, step: LessonStep) -> list[int] | None:
    """The step's ready replay: for each run it trains, the newest finished run of the store with the same
    settings (``RunConfig.config_hash``: the name aside); None while one of them has none."""
    finished = store.list_runs([RunStatus.FINISHED])  # newest first
    found = []
    for config in step.configs():
        wanted = config.config_hash()
        match = next((run.id for run in finished if run.config_hash == wanted), None)
        if match is None:
            return None
        found.append(match)
    return found


def record(step: LessonStep, name: str, store: RunStore, data_dir: Path | None, control: Control) -> list[str]:
    """Train the step's runs (together, for a comparison) into ``store`` as its ready replay; their outcomes.
    Every way out is recorded: a failure with its reason, a stop by ``control`` as stopped."""
    from dmlviz.engine import train_together
    from dmlviz.runner import StoreSink

    configs = step.configs()
    ids = [store.create_run(config.to_dict(), name=f"{name} · {config.loss}" if len(configs) > 1 else name,
                            config_hash=config.config_hash(), status=RunStatus.RUNNING, pid=os.getpid())
           for config in configs]
    try:
        results = train_together(configs, settings.data_dir(data_dir), [StoreSink(store, i) for i in ids], control)
    except Exception as error:  # noqa: BLE001 — recorded with the run, then said by the caller
        for run_id in ids:
            store.set_status(run_id, RunStatus.FAILED, error=str(error))
        raise
    for run_id, result in zip(ids, results, strict=True):
        store.set_status(run_id, result.outcome, error=result.error)
    if all(result.outcome == RunStatus.FINISHED for result in results):
        make_movie(store, ids, step)
    return [result.outcome for result in results]


def movie_path(store: RunStore, run_id: int, step: LessonStep) -> Path:
    """Where the video of ``run_id`` as ``step`` shows it lives; a run recorded again under the same id, or
    a step whose view changed, gets a file of its own."""
    drawn = json.dumps([store.get_run(run_id).finished_at, sorted(step.view.items()), step.stop_at], default=str)
    return store.root / MOVIE_FOLDER / f"run-{run_id}-{hashlib.sha1(drawn.encode()).hexdigest()[:12]}.mp4"


def movie(store: RunStore, ids: list[int], step: LessonStep) -> Path | None:
    """The recorded step's video if it has been made: one run's replay (a comparison is drawn side by side,
    not played)."""
    if len(ids) != 1:
        return None
    path = movie_path(store, ids[0], step)
    return path if path.is_file() else None


def make_movie(store: RunStore, ids: list[int], step: LessonStep) -> Path | None:
    """Make the recorded step's video (a few seconds: matplotlib draws each frame); None for a comparison or
    a store that cannot be written. Written beside its place and then moved in, so no one plays half a file."""
    from dmlviz.export import write_movie

    if len(ids) != 1 or store.read_only:
        return None
    path = movie_path(store, ids[0], step)
    path.parent.mkdir(exist_ok=True)
    partial = path.with_name(f".{path.stem}-{os.getpid()}.mp4")
    try:
        write_movie(store, ids[0], partial, "mp4", max_frames=REPLAY_FRAMES, fps=MOVIE_FPS, until=step.stop_at,
                    view=step.view)
        partial.replace(path)
    finally:
        partial.unlink(missing_ok=True)
    return path
