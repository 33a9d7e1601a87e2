"""One parameter type for a run's settings and a loss's hyperparameters: read, checked, written and edited alike."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dmlviz.config import PARAMS, RunConfig
from dmlviz.losses import get_spec, loss_names
from dmlviz.params import Param

EVERY_PARAM = [*PARAMS.values(), *(hp for name in loss_names() for hp in get_spec(name).hparams)]


@pytest.mark.parametrize("param", EVERY_PARAM, ids=lambda p: p.name)
def test_every_default_is_allowed_and_reads_back_from_its_text(param):
    assert param.check(param.default) is None
    assert param.parse(param.to_text(param.default)) == param.default
    assert param.parse(param.widget_value(param.default)) == param.default


def test_a_run_setting_and_a_hyperparameter_speak_alike():
    margin = Param("margin", 0.5, 0.0, 1.5, unit="rad")
    assert margin.check(3.0) == "margin must be between 0 and 1.5 rad, got 3"
    assert PARAMS["lr"].check(20.0) == "lr must be between 1e-06 and 10, got 20"
    assert margin.parse(" 0.25 ") == 0.25 and margin.parse(1) == 1.0 and type(margin.parse(1)) is float
    with pytest.raises(ValueError, match="margin must be a number, got 'wide'"):
        margin.parse("wide")
    with pytest.raises(ValueError, match="seed must be a whole number, got '1.5'"):
        PARAMS["seed"].parse("1.5")
    assert margin.check(float("nan")) == "margin must be a finite number, got nan"
    assert PARAMS["seed"].check(10**400) == "seed must be between 0 and 2147483647, got a number of about 401 digits"


def test_the_widget_kind_follows_the_value():
    assert [PARAMS[name].widget for name in ("optimizer", "feature_dim", "lr", "classes", "device")] == \
        ["select", "int", "float", "classes", "text"]
    assert get_spec("softmax").hparam("bias").widget == "toggle"
    assert get_spec("triplet").hparam("miner").widget == "select"
    assert PARAMS["classes"].widget_value((0, 1, 2)) == "0,1,2" and PARAMS["classes"].widget_value(None) == ""
    assert PARAMS["classes"].parse("") is None and PARAMS["classes"].parse("0, 1,2") == (0, 1, 2)
    assert PARAMS["epochs"].widget_step() == 0.5 and PARAMS["seed"].widget_step() == 1
    assert Param("scale", 64.0).widget_step() == 1.0 and Param("margin", 0.5).widget_step() == 0.01


def test_booleans_read_from_links_and_flags():
    bias = get_spec("softmax").hparam("bias")
    assert [bias.parse(text) for text in ("true", "On", "1", "no", False)] == [True, True, True, False, False]
    with pytest.raises(ValueError, match="bias must be true or false, got 'maybe'"):
        bias.parse("maybe")
    assert RunConfig.from_query({"loss": "softmax", "hp.bias": "yes"}).loss_params == {"bias": True}


@given(st.floats(min_value=1e-6, max_value=10.0, allow_nan=False), st.integers(0, 2**31 - 1))
def test_a_value_survives_a_link(lr, seed):
    config = RunConfig(lr=lr, seed=seed)
    assert RunConfig.from_query(config.to_query()) == config


def test_recommended_settings_name_the_losses_own_parameters():
    for name in loss_names():
        spec = get_spec(name)
        for dim, settings in spec.recommended.items():
            assert not any(key.startswith("hp.") for key in settings), (name, dim)
            assert set(settings.get("loss_params", {})) <= {hp.name for hp in spec.hparams}, (name, dim)
            assert RunConfig.from_dict({"loss": name, **settings}).feature_dim == dim
