"""The registry as a whole: complete entries, valid presets, and docs/LOSSES.md in sync."""

import pytest

from dmlviz.config import RunConfig
from dmlviz.losses import FAMILIES, build_loss, get_spec, loss_names
from dmlviz.losses.catalog import DOC_PATH, markdown, preset


def test_docs_losses_md_is_generated_from_the_registry():
    assert DOC_PATH.read_text() == markdown(), "run: python -m dmlviz.losses.catalog"


@pytest.mark.parametrize("name", loss_names())
def test_every_entry_is_complete_and_its_presets_are_valid_configs(name):
    spec = get_spec(name)
    assert spec.family in FAMILIES
    assert spec.display_name and len(spec.description) > 80 and spec.formula and spec.implementation
    assert spec.paper is not None or spec.name == "softmax"
    assert spec.dims and spec.pitfalls
    assert set(spec.recommended) >= {2, 3}, "recommended settings for 2-D and 3-D"
    for dim in (2, 3):
        config = RunConfig.from_dict(preset(spec, dim))
        assert config.loss == name and config.feature_dim == dim
    for hp in spec.hparams:
        assert hp.check(hp.default) is None, f"default of {hp.name} outside its own range"
        assert hp.help


@pytest.mark.parametrize("name", loss_names())
def test_every_loss_builds_with_its_defaults(name):
    loss = build_loss(name, 4, 3)
    assert loss.num_classes == 4 and loss.dim == 3
