"""What is pluggable is registered once: models, optimizers and schedules are RunConfig's choices, and every
exporter of the table is offered by the CLI (the Runs page's buttons: tests/test_runs_page.py)."""

import pytest
import torch

from dmlviz import export, models, optim
from dmlviz.cli import build_parser
from dmlviz.config import PARAMS, RunConfig


def choices(name: str) -> tuple[str, ...]:
    return PARAMS[name].choices


def test_the_registries_are_runconfigs_choices_and_help():
    assert choices("model") == ("auto", *(spec.name for spec in models.model_specs()))
    assert choices("optimizer") == optim.optimizer_names()
    assert choices("schedule") == optim.schedule_names() == tuple(spec.name for spec in optim.schedule_specs())
    helps = {name: param.help for name, param in PARAMS.items()}
    assert all(f"{spec.name} ({spec.help})" in helps["model"] for spec in models.model_specs())
    assert all(spec.name in helps["schedule"] for spec in optim.schedule_specs())
    for name in models.model_names():
        assert RunConfig.from_dict({"model": name}).model == name


def test_a_registered_model_is_built_by_name_and_a_name_is_registered_once(monkeypatch):
    monkeypatch.setattr(models, "_MODELS", dict(models._MODELS))  # leave the real registry as it was

    @models.register_model("tiny", "one linear layer")
    def _tiny(in_channels, image_size, feature_dim, *, feature_activation, batch_norm):
        return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(in_channels * image_size ** 2, feature_dim))

    net = models.build_model("tiny", 1, 8, 3)
    assert net(torch.zeros(2, 1, 8, 8)).shape == (2, 3)
    with pytest.raises(ValueError, match="registered twice"):
        models.register_model("tiny", "again")(_tiny)
    with pytest.raises(ValueError, match="unknown model 'huge'; choose one of .*tiny"):
        models.build_model("huge", 1, 8, 3)


def test_schedules_keep_their_factors():
    factor = optim.lr_factor
    assert [factor("constant", p) for p in (0.0, 0.7)] == [1.0, 1.0]
    assert [factor("step", p) for p in (0.0, 0.49, 0.5, 0.75, 0.99)] == [1.0, 1.0, 0.1, 0.01, 0.01]
    assert factor("cosine", 0.0) == 1.0 and factor("cosine", 0.5) == pytest.approx(0.5)
    assert [factor("onecycle", p) for p in (0.0, 0.15)] == pytest.approx([0.04, 0.52])
    assert factor("onecycle", 0.3) == 1.0 and factor("onecycle", 0.65) == pytest.approx(0.5)  # halfway down the cosine


@pytest.mark.parametrize(("name", "kind", "momentum"), [("sgd", torch.optim.SGD, 0.8), ("adam", torch.optim.Adam, None),
                                                         ("adamw", torch.optim.AdamW, None),
                                                         ("rmsprop", torch.optim.RMSprop, 0.8)])
def test_optimizers_are_built_by_name_with_their_groups(name, kind, momentum):
    weight, center = torch.nn.Parameter(torch.zeros(2)), torch.nn.Parameter(torch.zeros(2))
    built = optim.build_optimizer(name, [{"params": [weight]}, {"params": [center], "lr": 0.5}], 0.01, 0.8)
    assert type(built) is kind
    assert [group["lr"] for group in built.param_groups] == [0.01, 0.5]
    assert built.defaults.get("momentum") == momentum


def test_the_cli_offers_every_exporter():
    parser = build_parser()
    commands = next(a for a in parser._actions if a.dest == "command")
    exporting = commands.choices["export"]
    formats = next(a for a in exporting._actions if a.dest == "format")
    assert list(formats.choices) == list(export.EXPORTERS)
    description = exporting.format_help()
    assert all(f"  {fmt} (" in description for fmt in export.EXPORTERS)


def test_exporters_name_their_files_as_before():
    """The CLI's default names (no step) and the Runs page's (with the snapshot's step; a folder is zipped)."""
    table = export.EXPORTERS
    assert [table[f].file_name(3) for f in ("html", "gif", "mp4", "yaml", "csv", "parquet")] == \
        ["run3.html", "run3.gif", "run3.mp4", "run3.yaml", "run3.csv", "run3.parquet"]
    assert table["png"].file_name(3, "histogram") == "run3-histogram.png"
    assert table["tensorboard"].file_name(3) == "run3-projector"
    assert table["png"].file_name(3, "curves", step=40) == "run3-curves-step40.png"
    assert table["parquet"].file_name(3, step=40) == "run3-features-step40.parquet"
    assert table["tensorboard"].file_name(3, step=40) == "run3-projector-step40"
    assert {e.scope for e in table.values()} == {"run", "snapshot"}
    assert [e.format for e in table.values() if e.folder] == ["tensorboard"]
