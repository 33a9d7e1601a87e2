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


# -- bounds on what a document can make the parser do (issue 15) -----------------------------------

BILLION_LAUGHS = "a0: &a0 lol\n" + "".join(
    f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]\n" for i in range(1, 9)) + "name: *a8\n"


def config_error(parse, text) -> str:
    with pytest.raises(ConfigError) as info:
        parse(text)
    return str(info.value)


def test_billion_laughs_fails_fast_in_little_memory():
    import time
    import tracemalloc

    tracemalloc.start()
    start = time.perf_counter()
    try:
        message = config_error(RunConfig.from_yaml, BILLION_LAUGHS)
        elapsed = time.perf_counter() - start
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert "the config repeats a list or mapping with the YAML alias *a1 (line 3)" in message
    assert elapsed < 1 and peak < 5e6, (elapsed, peak)  # it took 96 s and 11.6 GB


def test_aliases_of_single_values_are_read_within_a_bound():
    assert RunConfig.from_yaml("lr: &x 0.01\nloss_lr: *x\n").loss_lr == 0.01
    text = "a: &a " + "x" * 30_000 + "\nclasses: [" + ", ".join(["*a"] * 5) + "]\n"
    assert "aliases repeat more than 65536 characters" in config_error(RunConfig.from_yaml, text)
    assert "YAML alias *b" in config_error(RunConfig.from_yaml, "base: &b {lr: 0.1}\n<<: *b\n")  # a merge key


@pytest.mark.parametrize("codec", ["yaml", "json"])
def test_deep_nesting_is_refused_before_it_recurses(codec):
    parse = RunConfig.from_yaml if codec == "yaml" else RunConfig.from_json
    assert "nested too deeply: at most 8 levels" in config_error(parse, "[" * 10_000 + "]" * 10_000)
    assert "the config is 200000 characters long; a run config is at most 65536" in config_error(
        parse, "[" * 100_000 + "]" * 100_000)
    assert parse('{"loss_params": {"bias": true}, "classes": [0, 1]}').classes == (0, 1)
    assert "nested too deeply" in config_error(RunConfig.from_yaml, "".join(" " * i + "- \n" for i in range(30)))
    assert RunConfig.from_json('{"name": "[[[[[[[[[[[[\\"[[[[[["}').name == '[[[[[[[[[[[["[[[[[['  # text, not nesting


@pytest.mark.parametrize(("text", "message"), [
    ("1: 2", "setting names are text (like seed), got 1"),
    ("1.5: 2\ntrue: 3", "setting names are text (like seed), got 1.5, True"),
    ("0", "a config must be a mapping of setting to value, got int"),
    ("false", "a config must be a mapping of setting to value, got bool"),
    ("!!int ", "the config is not valid YAML: a value in it cannot be read as the type its tag gives"),
    ("name: 2020-13-45", "the config is not valid YAML: month must be in 1..12"),
    ("seed: " + "1" * 5000, "the config is not valid YAML: a number in it has more than 4300 digits"),
    ("seed: " + "1" * 4000, "seed must be between 0 and 2147483647, got a number of about 4000 digits"),
    ("loss: center\nloss_params: {lambda: " + "9" * 400 + "}", "lambda must be between 0 and 10, got a number of"),
    ("? [a]\n: 1", "the config is not valid YAML: found unhashable key (line 1, column 3)"),
])
def test_documents_python_cannot_read_as_settings_are_config_errors(text, message):
    assert message in config_error(RunConfig.from_yaml, text)


def test_bad_values_are_quoted_by_a_short_prefix():
    long = "x" * 100_000
    for settings, start in [({"dataset": long}, "unknown dataset 'xxxx"), ({"loss": long}, "unknown loss 'xxx"),
                            ({long: 1}, "unknown setting 'xxx"), ({"lr": long}, "lr must be a number, got 'xxx"),
                            ({"name": [long]}, "name must be text, got ['xxx"),
                            ({"loss": "center", "hp.center_rule": long}, "center_rule must be one of paper, sgd"),
                            ({"loss": "center", f"hp.{long}": 1}, "Softmax + center loss has no hyperparameter 'xxx"),
                            ({"classes": long}, "classes must be a list of class numbers like 0,1,2, got 'xxx")]:
        with pytest.raises(ConfigError) as info:
            RunConfig.from_dict(settings)
        (error,) = info.value.errors
        assert error.startswith(start) and len(error) < 300, error
    assert "(100000 characters)" in config_error(RunConfig.from_dict, {"dataset": long})
    assert "name must be at most 200 characters, got 100000" in config_error(RunConfig.from_dict, {"name": long})


def test_quote_cuts_any_value_short():
    from dmlviz.params import quote

    assert quote("ok") == "'ok'"
    assert quote("x" * 1000) == f"'{'x' * 60}'… (1000 characters)"
    assert quote(10**5000) == "a number of about 5001 digits"  # str() of it would raise
    assert len(quote([[["x" * 1000] * 1000] * 1000])) <= 61  # nested: never expanded whole
    assert quote(b"\x00" * 10**6).startswith("b'\\x00")


def test_classes_named_twice_or_not_at_all():
    assert "classes must name each class once, got 0 more than once" in config_error(
        RunConfig.from_dict, {"classes": "0,0,1"})
    assert "classes must name each class once, got 1, 2 more than once" in config_error(
        RunConfig.from_yaml, "classes: [1, 2, 1, 2, 3]")
    assert RunConfig.from_query({"classes": ""}).classes is None  # a link's or the page's empty box: all of them
    assert "at most 1000 classes, got 5000" in config_error(RunConfig.from_query, {"classes": "1," * 5000})
