"""Lesson files: the built-in ones load and train what they say; a broken one is named with its lines."""

from pathlib import Path

import pytest

from dmlviz import lessons
from dmlviz.cli import main

GOOD = """\
title: My lesson
summary: Two steps.
steps:
  - title: Petals
    text: Softmax draws petals.
    preset: softmax-petals
    view: {regions: true}
  - title: A comparison
    text: Two losses.
    compare: {loss1: softmax, loss2: center, feature_dim: 2, epochs: 1}
    stop_at: 100
"""
BROKEN = """\
title: Broken
steps:
  - title: No training
    text: It names nothing to train.
  - title: Bad run
    text: A run with a wrong learning rate.
    run: {loss: arcface, lr: -1}
  - title: Bad view
    text: An option the view does not have.
    preset: softmax-petals
    view: {zoom: 3}
    colour: red
"""


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text)
    return path


def test_the_built_in_lessons_load_with_every_step_trainable():
    found, broken = lessons.all_lessons(Path("/nonexistent"))
    assert not broken
    titles = [lesson.title for lesson in found]
    assert titles == ["From softmax to margins", "Pairs and proxies", "Classes it has never seen", "Noisy labels"]
    margins = found[0]
    assert [step.configs()[0].loss for step in margins.steps] == [
        "softmax", "center", "normface", "cosface", "arcface", "cam-softmax"]
    assert all(step.configs() for lesson in found for step in lesson.steps)
    assert [len(step.configs()) for step in found[3].steps] == [1, 2]  # softmax vs Cam-Softmax, same noise
    assert {config.label_noise for config in found[3].steps[1].configs()} == {0.3}


def test_a_lesson_reads_its_steps_and_views(tmp_path):
    lesson = lessons.load(write(tmp_path, "mine.yaml", GOOD))
    assert lesson.key == "mine" and lesson.title == "My lesson" and len(lesson.steps) == 2
    first, second = lesson.steps
    assert first.view == {"regions": True} and first.run.loss == "softmax"
    assert [config.loss for config in second.configs()] == ["softmax", "center"] and second.stop_at == 100


def test_a_broken_lesson_names_every_mistake_with_its_line_and_the_others_still_load(tmp_path):
    folder = tmp_path / lessons.USER_FOLDER
    folder.mkdir()
    write(folder, "good.yaml", GOOD)
    write(folder, "broken.yaml", BROKEN)
    write(folder, "not-yaml.yaml", "title: [unclosed\n")
    found, broken = lessons.all_lessons(tmp_path)
    assert "good" in [lesson.key for lesson in found]
    problems = {error.path.name: error.problems for error in broken}
    assert set(problems) == {"broken.yaml", "not-yaml.yaml"}
    text = "\n".join(problems["broken.yaml"])
    assert "line 3: step 1: a step trains one thing: give one of preset, run, compare, got none" in text
    assert "line 7: step 2: lr must be between 1e-06 and 10, got -1" in text
    assert "line 11: step 3: view is a mapping of" in text and "line 12: step 3: unknown key 'colour'" in text
    assert "not valid YAML" in problems["not-yaml.yaml"][0] and "line 2" in problems["not-yaml.yaml"][0]


@pytest.mark.parametrize("text, message", [
    ("- a list\n", "a lesson is a mapping"),
    ("title: t\nsteps: []\n", "a lesson needs steps"),
    ("title: t\nsteps:\n  - title: x\n    text: y\n    preset: nope\n", "unknown preset 'nope'"),
    ("title: t\nsteps:\n  - title: x\n    text: y\n    compare: nope\n", "unknown comparison 'nope'"),
    ("title: t\nsteps:\n  - title: x\n    text: y\n    preset: softmax-petals\n    stop_at: -1\n", "stop_at must be"),
])
def test_each_kind_of_mistake_has_its_message(tmp_path, text, message):
    with pytest.raises(lessons.LessonError, match=message):
        lessons.load(write(tmp_path, "x.yaml", text))


TINY = """\
title: Tiny
steps:
  - title: Softmax on digits
    text: A few steps.
    run: {dataset: digits, device: cpu, steps: 20, probe_size: 100, snapshot_steps: 10}
  - title: Two losses on digits
    text: Side by side.
    compare: {loss1: softmax, loss2: center, dataset: digits, device: cpu, steps: 20, probe_size: 100}
"""


def test_the_command_line_checks_builds_and_lists_the_lessons(tmp_path, capsys, one_thread):
    store = ["--store", str(tmp_path / "store")]
    assert main(["lessons", "check", str(write(tmp_path, "broken.yaml", BROKEN))]) == 2
    error = capsys.readouterr().err
    assert "broken.yaml" in error and "line 7: step 2: lr must be" in error
    folder = tmp_path / "data" / lessons.USER_FOLDER
    folder.mkdir(parents=True)
    write(folder, "tiny.yaml", TINY)
    data = ["--data-dir", str(tmp_path / "data")]
    assert main([*store, "lessons", "build", "tiny", *data]) == 0
    assert "Tiny · 2. Two losses on digits: finished, finished" in capsys.readouterr().err
    assert main([*store, "lessons", "list", *data]) == 0
    listed = capsys.readouterr().out
    assert "From softmax to margins (6 steps" in listed
    assert "1. Softmax on digits  [replay: run 1]" in listed and "2. Two losses on digits  [replay: run 2, 3]" in listed
    movies = sorted((tmp_path / "store" / lessons.MOVIE_FOLDER).glob("*.mp4"))
    assert [path.name.split("-")[1] for path in movies] == ["1"]  # one run's step plays; a comparison is drawn
    movies[0].unlink()
    assert main([*store, "lessons", "build", "tiny", *data]) == 0  # ready: nothing trains again
    assert "Tiny · 1. Softmax on digits: ready; its video made" in capsys.readouterr().err
    assert main([*store, "lessons", "build", "tiny", *data]) == 0
    assert "Tiny · 1. Softmax on digits: ready\n" in capsys.readouterr().err
    assert main([*store, "lessons", "build", "no-such", *data]) == 2


def test_a_recorded_step_s_video_plays_its_snapshots_up_to_its_stop(tmp_path, one_thread):
    import imageio_ffmpeg

    from dmlviz.engine import FreeRunning
    from dmlviz.store import RunStore
    from dmlviz.view import RunView

    run = "{dataset: digits, device: cpu, steps: 40, probe_size: 100, snapshot_steps: 5}"
    lesson = lessons.load(write(tmp_path, "l.yaml", f"title: T\nsteps:\n  - title: A\n    text: B\n    run: {run}\n"
                                f"    view: {{regions: true}}\n    stop_at: 20\n"))
    step = lesson.steps[0]
    store = RunStore(tmp_path / "store")
    try:
        assert lessons.record(step, "A", store, tmp_path / "data", FreeRunning()) == ["finished"]
        ids = lessons.recording(store, step)
        path = lessons.movie(store, ids, step)
        every = [info.step for info in RunView(store, ids[0]).snapshots()]
        frames, _ = imageio_ffmpeg.count_frames_and_secs(str(path))
        assert frames == len([shot for shot in every if shot <= 20]) and frames < len(every)
        # Another view of the same run is another video; a store that cannot be written makes none.
        wider = lessons.LessonStep(step.title, step.text, {"regions": False}, run=step.run)
        assert lessons.movie_path(store, ids[0], wider) != path and lessons.movie(store, ids, wider) is None
        assert lessons.make_movie(RunStore(tmp_path / "store", read_only=True), ids, wider) is None
        assert lessons.make_movie(store, ids, wider).is_file()
        assert lessons.movie(store, [ids[0], ids[0]], step) is None  # a comparison is drawn, not played
    finally:
        store.close()


def test_the_readme_s_example_lesson_loads(tmp_path):
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme.split("## Lessons", 1)[1]
    example = section.split("```yaml\n", 1)[1].split("```", 1)[0]
    lesson = lessons.load(write(tmp_path, "example.yaml", example))
    assert [step.title for step in lesson.steps] == ["NormFace on the sphere", "ArcFace adds an angle", "Side by side"]
    assert lesson.steps[1].stop_at == 400 and lesson.steps[1].run.loss_params["margin"] == 0.25


def test_the_lessons_page_shows_the_step_of_its_link_and_how_to_record_it(tmp_path, monkeypatch):
    from dmlviz import settings
    from tests.pages import page

    monkeypatch.setenv(settings.STORE_DIR_ENV, str(tmp_path / "store"))
    monkeypatch.setenv(settings.DATA_DIR_ENV, str(tmp_path / "data"))
    app = page("lessons", {"lesson": "1-from-softmax-to-margins", "step": "2"})
    assert any(m.value == "### The center loss pulls each petal together" for m in app.markdown)
    assert any("no recording yet" in i.value and "lessons build 1-from-softmax-to-margins" in i.value
               for i in app.info)
    assert app.button(key="lesson_previous").disabled is False and app.button(key="lesson_record")
    app.button(key="lesson_next").click().run()
    assert not app.exception and any(m.value == "### NormFace puts the features on the sphere" for m in app.markdown)
