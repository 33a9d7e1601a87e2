"""RunConfig: validation messages a person understands, and lossless round trips."""

import pytest

from dmlviz.config import ConfigError, RunConfig

CUSTOM = RunConfig.from_dict({
    "name": "unseen digits", "dataset": "fashion-mnist", "classes": [0, 1, 2, 3, 4], "label_noise": 0.2,
    "model": "lenetpp", "feature_dim": 3, "loss": "center", "loss_params": {"lambda": 0.5, "center_rule": "sgd"},
    "optimizer": "sgd", "lr": 0.01, "loss_lr": 0.5, "schedule": "cosine", "batch_size": 64, "steps": 500,
    "seed": 7, "device": "cpu", "snapshot_every": 1.0, "probe_size": 500, "train_size": 3000,
})


@pytest.mark.parametrize("codec", ["dict", "json", "yaml", "query"])
def test_round_trips(codec):
    encode, decode = {
        "dict": (RunConfig.to_dict, RunConfig.from_dict),
        "json": (RunConfig.to_json, RunConfig.from_json),
        "yaml": (RunConfig.to_yaml, RunConfig.from_yaml),
        "query": (RunConfig.to_query, RunConfig.from_query),
    }[codec]
    assert decode(encode(CUSTOM)) == CUSTOM
    assert decode(encode(RunConfig())) == RunConfig()


def test_query_is_short_and_textual():
    query = RunConfig.from_dict({"loss": "center", "feature_dim": 3}).to_query()
    assert query == {"feature_dim": "3", "loss": "center"}
    assert all(isinstance(v, str) for v in CUSTOM.to_query().values())
    # Streamlit may hand over repeated keys as lists: the last value wins.
    assert RunConfig.from_query({"seed": ["1", "5"]}).seed == 5


def test_hash_ignores_name_and_spelled_out_defaults():
    plain = RunConfig.from_dict({"loss": "center"})
    assert plain.config_hash() == plain.replace(name="other").config_hash()
    assert plain.config_hash() == plain.replace(loss_params={"lambda": 0.1}).config_hash()
    assert plain.config_hash() != plain.replace(seed=1).config_hash()


@pytest.mark.parametrize(("settings", "message"), [
    ({"lr": "fast"}, "lr must be a number, got 'fast'"),
    ({"batch_size": 0}, "batch_size must be between 2 and 4096, got 0"),
    ({"batch_size": 12.5}, "batch_size must be a whole number, got 12.5"),
    ({"epochs": -1}, "epochs must be between 0.01 and 1000, got -1"),
    ({"label_noise": 0.95}, "label_noise must be between 0 and 0.9, got 0.95"),
    ({"feature_dim": 0}, "feature_dim must be between 1 and 4096, got 0"),
    ({"snapshot_every": 0}, "snapshot_every must be between 0.05 and 3600 s, got 0"),
    ({"optimizer": "lbfgs"}, "optimizer must be one of sgd, adam, adamw, rmsprop, got 'lbfgs'"),
    ({"model": "vgg"}, "model must be one of auto, lenetpp, lenetpp-light, resnet, got 'vgg'"),
    ({"device": "tpu"}, "device must be auto, cpu, cuda, cuda:N or mps, got 'tpu'"),
    ({"classes": "3"}, "classes must name at least 2 different classes"),
    ({"classes": "0,x"}, "classes must be a list of class numbers like 0,1,2, got '0,x'"),
    ({"dataset": "imagenet"}, "unknown dataset 'imagenet'"),
    ({"dataset": "custom:../../etc"}, "custom dataset names are the name of a folder or .npz file in the data "
                                      "folder's custom/ (letters, digits, '.', '_', '-' and spaces; no '..'), got "
                                      "'custom:../../etc'"),
    ({"loss": "sofmax"}, "unknown loss 'sofmax' (did you mean 'softmax'?)"),
    ({"loss": "center", "hp.alpha": "3"}, "alpha must be between 0 and 1, got 3"),
    ({"loss": "center", "hp.lambda": "much"}, "lambda must be a number, got 'much'"),
    ({"loss": "center", "hp.center_rule": "ema"}, "center_rule must be one of paper, sgd, got 'ema'"),
    ({"loss": "softmax", "hp.margin": "0.5"}, "Softmax cross-entropy has no hyperparameter 'margin'"),
    ({"lerning_rate": 1}, "unknown setting 'lerning_rate'"),
    ({"seed": "1.5"}, "seed must be a whole number, got '1.5'"),
])
def test_each_invalid_setting_has_its_message(settings, message):
    with pytest.raises(ConfigError) as info:
        RunConfig.from_dict(settings)
    assert any(message in error for error in info.value.errors), info.value.errors


def test_all_errors_are_reported_together():
    with pytest.raises(ConfigError) as info:
        RunConfig.from_dict({"lr": -1, "batch_size": "many", "loss": "nope"})
    assert len(info.value.errors) == 3


def test_garbage_documents_are_config_errors():
    for text in ("{not json", "[1, 2]"):
        with pytest.raises(ConfigError):
            RunConfig.from_json(text)
    with pytest.raises(ConfigError):
        RunConfig.from_yaml("a: [b")
    assert RunConfig.from_yaml("") == RunConfig()


def test_optional_settings_accept_empty_text():
    config = RunConfig.from_query({"steps": "", "classes": "none", "train_size": "null"})
    assert config.steps is None and config.classes is None and config.train_size is None
