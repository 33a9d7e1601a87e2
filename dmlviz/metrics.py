"""The metric catalog: what every number a snapshot records means and how it is shown.

The engine records metrics by name (``Snapshot.metrics``, the store's series); the curves, the live
numbers, the comparison table and the CLI read their label, unit, panel and better direction here,
so a metric is added in one place: a row of ``METRICS``. A loss's scheduled hyperparameters are
recorded as ``schedule.<name>``, its terms as ``term.<name>`` and its active shares as ``active.<name>``,
all described by :func:`metric_spec` without a row of their own.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

#: The curve panel of the learning rate and the loss's schedules, each divided by its largest magnitude.
SCHEDULES = "Schedules (÷ max)"
#: How the engine names a loss's scheduled hyperparameter in a snapshot's metrics: ``schedule.margin``.
SCHEDULE_PREFIX = "schedule."
#: The curve panel of a loss's named parts, each with its weight: the center term against the softmax term.
TERMS = "Loss terms"
#: How the engine names a loss's term in a snapshot's metrics: ``term.center``.
TERM_PREFIX = "term."
#: The curve panel of the shares of pairs or triplets that contribute to a mining or hinged loss.
ACTIVE = "Active pairs"
#: How the engine names a loss's active share in a snapshot's metrics: ``active.negative pairs``.
ACTIVE_PREFIX = "active."
#: What losses' schedules were recorded as before they carried the prefix: kept readable in older stores.
_BARE_SCHEDULES = frozenset({"margin", "lambda", "scale", "c", "radius", "lambda_adv"})


@dataclass(frozen=True)
class MetricSpec:
    """One recorded number: its name in the record and everything a page needs to show it."""

    name: str  # the key in a snapshot's metrics and in the store's series
    label: str  # on its own, in the live numbers, tables and comparison panels: "probe accuracy"
    panel: str | None  # the curve panel that draws it; None: never drawn as a curve
    unit: str = ""  # "°"; a fraction has none
    higher_is_better: bool | None = None  # None: neither (a speed, a schedule)
    fraction: bool = False  # a share between 0 and 1
    help: str = ""
    short: str = ""  # its line's name inside its panel ("probe" in "Accuracy"); the label when empty
    live: bool = True  # among the live page's numbers
    kind: Literal["measure", "schedule"] = "measure"  # a schedule is set by the run, not measured

    @property
    def legend(self) -> str:
        """Its line's name among the others of its panel."""
        return self.short or self.label

    @property
    def column(self) -> str:
        """A table column or axis: the label with its unit, "intra-class angle (°)"."""
        return f"{self.label} ({self.unit})" if self.unit else self.label

    @property
    def title(self) -> str:
        """A panel of its own: "Intra-class angle (°)"."""
        return self.column[:1].upper() + self.column[1:]

    def format(self, value: float) -> str:
        """Written out for a sentence or a terminal table: "93.12%", "0.4512", "41.2°"."""
        return f"{value:.2%}" if self.fraction else f"{value:.4g}{self.unit}"


_ACCURACY, _RETRIEVAL, _ANGLES = "Accuracy", "Retrieval", "Angles (°)"

#: Every metric the engine records, in the order the pages show them.
METRICS: dict[str, MetricSpec] = {spec.name: spec for spec in (
    MetricSpec("loss", "loss", "Loss", higher_is_better=False,
               help="The loss averaged over the steps since the previous snapshot."),
    MetricSpec("train_acc", "train accuracy", _ACCURACY, short="train", higher_is_better=True, fraction=True,
               live=False, help="Accuracy on the training batches since the previous snapshot."),
    MetricSpec("probe_acc", "probe accuracy", _ACCURACY, short="probe", higher_is_better=True, fraction=True,
               help="Accuracy on the probe set's training classes (classifier, or nearest class mean)."),
    MetricSpec("test_acc", "test accuracy", _ACCURACY, short="test", higher_is_better=True, fraction=True,
               help="Accuracy on the whole test set, measured once at the end of the run."),
    MetricSpec("p_at_1", "P@1", _RETRIEVAL, higher_is_better=True, fraction=True,
               help="Precision at 1: how often a probe image's nearest neighbour is of its class."),
    MetricSpec("map_at_r", "MAP@R", _RETRIEVAL, higher_is_better=True, fraction=True,
               help="Mean average precision at R (R: the number of images of the query's class)."),
    MetricSpec("fisher_ratio", "Fisher ratio", "Separation (Fisher ratio)", higher_is_better=True,
               help="Between-class over within-class scatter of the probe features."),
    MetricSpec("overlap", "histogram overlap", "Overlap", short="overlap", higher_is_better=False, fraction=True,
               help="Shared area of the within- and between-class distance histograms."),
    MetricSpec("intra_angle", "intra-class angle", _ANGLES, short="intra-class", unit="°", higher_is_better=False,
               live=False, help="Mean angle between features of one class."),
    MetricSpec("inter_angle", "inter-class angle", _ANGLES, short="inter-class", unit="°", higher_is_better=True,
               live=False, help="Mean angle between the means of two classes."),
    MetricSpec("unseen_p_at_1", "unseen P@1", _RETRIEVAL, higher_is_better=True, fraction=True,
               help="P@1 among the classes held out of training: how well the space retrieves what it never saw."),
    MetricSpec("images_per_s", "images/s", None, higher_is_better=True, live=False,
               help="Training images per second since the previous snapshot."),
    MetricSpec("lr", "learning rate", SCHEDULES, short="lr", kind="schedule",
               help="The optimizer's learning rate as its schedule sets it."),
)}
_CATALOG_PANELS = tuple(dict.fromkeys(spec.panel for spec in METRICS.values() if spec.panel))
_AFTER_LOSS = _CATALOG_PANELS.index("Loss") + 1
#: The curve panels in the order they are drawn, a loss's terms and active shares right after the loss;
#: a panel not listed here comes after them.
PANELS: tuple[str, ...] = (*_CATALOG_PANELS[:_AFTER_LOSS], TERMS, ACTIVE, *_CATALOG_PANELS[_AFTER_LOSS:])


def schedule_metric(hparam: str) -> str:
    """The name a loss's scheduled hyperparameter is recorded under: ``schedule.margin``."""
    return SCHEDULE_PREFIX + hparam


def term_metric(name: str) -> str:
    """The name a loss's term is recorded under: ``term.center``."""
    return TERM_PREFIX + name


def active_metric(name: str) -> str:
    """The name a loss's share of contributing pairs or triplets is recorded under: ``active.triplets``."""
    return ACTIVE_PREFIX + name


def metric_spec(name: str) -> MetricSpec:
    """The catalog's row for ``name``; a loss's schedule, term or active share; or, for a name the
    catalog does not know, a plain spec that draws it in a panel of its own."""
    if name in METRICS:
        return METRICS[name]
    if name.startswith(SCHEDULE_PREFIX) or name in _BARE_SCHEDULES:
        hparam = name.removeprefix(SCHEDULE_PREFIX)
        return MetricSpec(name, hparam, SCHEDULES, kind="schedule", help=f"The loss's {hparam} as the run sets it.")
    # Not live: a loss of several terms would crowd the live numbers, which the curves show side by side.
    if name.startswith(TERM_PREFIX):
        term = name.removeprefix(TERM_PREFIX)
        return MetricSpec(name, f"{term} term", TERMS, short=term, higher_is_better=False, live=False,
                          help=f"The loss's {term} term with its weight, averaged over the steps since the "
                          "previous snapshot; the terms add up to the loss.")
    if name.startswith(ACTIVE_PREFIX):
        what = name.removeprefix(ACTIVE_PREFIX)
        return MetricSpec(name, f"active {what}", ACTIVE, short=what, fraction=True, live=False,
                          help=f"The share of the batch's {what} that contribute a non-zero loss, averaged over "
                          "the steps since the previous snapshot.")
    return MetricSpec(name, name, name)


_ORDER = {name: i for i, name in enumerate(METRICS)}


def order(name: str) -> int:
    """Where ``name`` comes among the metrics shown: the catalog's order, others after it."""
    return _ORDER.get(name, len(_ORDER))


def live_numbers(metrics: Mapping[str, float]) -> list[tuple[MetricSpec, float]]:
    """The numbers the live page shows: the catalog's in its order, then schedules and names it does not
    know, as recorded."""
    shown = [(spec, value) for spec, value in ((metric_spec(name), value) for name, value in metrics.items())
             if spec.live]
    return sorted(shown, key=lambda item: order(item[0].name))
