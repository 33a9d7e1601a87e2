"""The metric catalog: every number the engine records has one row, and the curves, the live numbers,
the comparison table and the CLI read it from there."""

import numpy as np
import pytest
from sinks import ListSink

from dmlviz import figures
from dmlviz.cli import _summary_text
from dmlviz.config import RunConfig
from dmlviz.engine import train
from dmlviz.metrics import METRICS, PANELS, SCHEDULES, live_numbers, metric_spec, schedule_metric
from dmlviz.view import TABLE_METRICS
from ui.compare import _styled


@pytest.fixture(scope="module")
def recorded() -> dict[str, np.ndarray]:
    """The series of a short digits run with a margin schedule and held-out classes, as the store keeps them."""
    config = RunConfig.from_dict({"dataset": "digits", "device": "cpu", "probe_size": 200, "loss": "arcface",
                                  "classes": "0,1,2,3,4,5,6", "steps": 12, "batch_size": 32, "snapshot_steps": 6})
    sink = ListSink()
    train(config, None, sink)
    names = list(dict.fromkeys(name for snapshot in sink.snapshots for name in snapshot.metrics))
    return {name: np.array([s.metrics.get(name, np.nan) for s in sink.snapshots]) for name in names}


def test_every_recorded_metric_has_a_row_and_every_row_is_recorded(recorded):
    schedules = {name for name in recorded if name not in METRICS}
    assert schedules == {schedule_metric("margin")}, "the loss's schedule is recorded as one"
    assert metric_spec("schedule.margin").kind == "schedule" and metric_spec("schedule.margin").label == "margin"
    assert set(recorded) - schedules == set(METRICS), "a row nothing records, or a number without a row"


def test_the_curve_panels_draw_every_recorded_metric(recorded):
    panels = dict(figures.curve_panels(recorded))
    drawn = [name for names in panels.values() for name in names]
    assert sorted(drawn) == sorted(name for name in recorded if metric_spec(name).panel is not None)
    assert list(panels) == [panel for panel in PANELS if panel in panels]
    assert panels[SCHEDULES] == ["lr", "schedule.margin"]
    assert panels["Retrieval"] == ["p_at_1", "map_at_r", "unseen_p_at_1"], "not mistaken for a schedule"
    title = next(a.text for a in figures.curves_figure(np.arange(len(recorded["lr"])), recorded).layout.annotations
                 if a.text.startswith(SCHEDULES))
    assert "margin = " in title and "lr = " in title


def test_labels_shown_to_people_stay_as_they_were():
    numbers = live_numbers({"lr": 0.1, "schedule.margin": 0.2, "unseen_p_at_1": 0.5, "loss": 1.0, "train_acc": 0.9,
                            "overlap": 0.1, "intra_angle": 30.0, "probe_acc": 0.8, "images_per_s": 500.0})
    assert [spec.label for spec, _ in numbers] == ["loss", "probe accuracy", "histogram overlap", "unseen P@1",
                                                   "learning rate", "margin"]
    assert [metric_spec(name).title for name in figures.COMPARED_METRICS] == [
        "Loss", "Probe accuracy", "P@1", "MAP@R", "Fisher ratio", "Histogram overlap", "Intra-class angle (°)",
        "Inter-class angle (°)"]
    assert [metric_spec(name).legend for name in ("train_acc", "probe_acc", "test_acc", "lr", "overlap")] == \
        ["train", "probe", "test", "lr", "overlap"]
    assert _summary_text({"test_acc": 0.93, "loss": 0.51234, "elapsed": 3.04}) == \
        ": test accuracy 93.00%, loss 0.5123, 3.0 s"


def test_the_table_bolds_the_better_value_the_catalog_names():
    rows = [{"run": "a", "status": "finished", "step": 5, "intra-class angle (°)": 10.0, "P@1": 0.9, "images/s": 100.0},
            {"run": "b", "status": "finished", "step": 5, "intra-class angle (°)": 20.0, "P@1": 0.8, "images/s": 300.0}]
    styler = _styled(rows)
    styler._compute()
    columns = list(styler.data.columns)
    bold = {columns[col]: row for (row, col), styles in styler.ctx.items() if ("font-weight", "bold") in styles}
    assert bold == {"intra-class angle (°)": 0, "P@1": 0, "images/s": 1}
    assert {spec.column: spec.higher_is_better for spec in TABLE_METRICS}["intra-class angle (°)"] is False
    assert all(spec is METRICS[spec.name] for spec in TABLE_METRICS)


def test_a_name_the_catalog_does_not_know_gets_a_panel_of_its_own():
    spec = metric_spec("center_term")
    assert (spec.label, spec.panel, spec.kind, spec.higher_is_better, spec.fraction) == \
        ("center_term", "center_term", "measure", None, False)
    series = {"loss": np.array([2.0, 1.0]), "center_term": np.array([0.5, 0.25])}
    assert figures.curve_panels(series) == [("Loss", ["loss"]), ("center_term", ["center_term"])]
    assert [spec.label for spec, _ in live_numbers({"center_term": 0.5})] == ["center_term"]


def test_schedules_recorded_before_the_prefix_still_read_as_schedules():
    assert metric_spec("margin").kind == "schedule" and metric_spec("margin").panel == SCHEDULES
    assert figures.curve_panels({"lr": np.array([0.1]), "lambda": np.array([5.0])}) == [(SCHEDULES, ["lr", "lambda"])]
