"""Property-based tests (Hypothesis) of config parsing: whatever text a person or a link gives, the result
is a ``RunConfig`` or a ``ConfigError`` with short messages, never another exception, and quickly."""

from __future__ import annotations

import json
from datetime import timedelta
from urllib.parse import parse_qs

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dmlviz.config import HP_PREFIX, MAX_CONFIG_CHARS, ConfigError, RunConfig

# deadline: each example within 2 s (most take milliseconds; building a loss for a valid config, tens of
# them) on a shared 2-core machine. database=None: no .hypothesis/ folder in the checkout.
BOUND = settings(deadline=timedelta(seconds=2), max_examples=150, database=None,
                 suppress_health_check=[HealthCheck.too_slow])
LONGEST_MESSAGE = 1000  # every message quotes a short prefix of a bad value, never the whole of it

NAMES = [f for f in RunConfig.__dataclass_fields__] + [f"{HP_PREFIX}{n}" for n in
                                                          ("margin", "scale", "lambda", "center_rule", "hidden")]
LOSSES = ["softmax", "center", "arcface", "fixed-simplex", "adacos", "lsoftmax", "class-adversarial", "triplet"]

scalars = (st.none() | st.booleans() | st.integers() | st.integers(-10, 5000) | st.floats(allow_nan=True)
           | st.text(max_size=30) | st.sampled_from(LOSSES + ["mnist", "digits", "custom:x", "cpu", "0,1,2", "0,0,1",
                                                              "", " ", "none", "1e999", "-1", "true"])
           | st.text(min_size=100, max_size=300))
keys = st.sampled_from(NAMES) | st.text(max_size=20) | st.integers(-3, 3)
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=6) | st.dictionaries(keys, inner, max_size=5),
                      max_leaves=25)
documents = st.dictionaries(keys, values, max_size=8)

# Pieces of YAML syntax, strung together: anchors and aliases, flow and block nesting, tags, merge keys.
YAML_TOKENS = ["[", "]", "{", "}", ", ", ": ", "\n", "- ", "  ", "&a ", "&b ", "*a", "*b", "? ", "<<: ", "---\n",
               "!!binary ", "!!set ", "!!python/object ", "!!int ", "!!float ", "!!timestamp ", "'", '"', "#", "|\n",
               "~", "0", "1", "-1", "1e999", ".nan", "0x1F", "2020-01-01", "99999999999999999999999", "x" * 80,
               *NAMES, *LOSSES]
yaml_texts = st.lists(st.sampled_from(YAML_TOKENS), max_size=60).map("".join)
JSON_TOKENS = ["[", "]", "{", "}", ", ", ": ", '"', "\\", "\\u", "d800", "null", "true", "1", "-0", "1e999", "NaN",
               "Infinity", "9" * 30, *(f'"{n}"' for n in NAMES), *(f'"{n}"' for n in LOSSES)]
json_texts = st.lists(st.sampled_from(JSON_TOKENS), max_size=60).map("".join)


def parses_or_explains(parse, text) -> None:
    try:
        config = parse(text)
    except ConfigError as error:
        assert error.errors and all(isinstance(e, str) and 0 < len(e) <= LONGEST_MESSAGE for e in error.errors), \
            error.errors
    else:
        assert isinstance(config, RunConfig)
        assert config.problems() == []
        assert RunConfig.from_json(config.to_json()) == config  # what is accepted round-trips


@BOUND
@given(st.text(max_size=500))
def test_any_text_as_yaml_or_json(text):
    parses_or_explains(RunConfig.from_yaml, text)
    parses_or_explains(RunConfig.from_json, text)


@BOUND
@given(yaml_texts)
def test_yaml_made_of_its_own_syntax(text):
    parses_or_explains(RunConfig.from_yaml, text)


@BOUND
@given(json_texts)
def test_json_made_of_its_own_syntax(text):
    parses_or_explains(RunConfig.from_json, text)


@BOUND
@given(documents)
def test_any_document_of_settings(document):
    parses_or_explains(RunConfig.from_dict, document)
    text = json.dumps(document, default=str)
    parses_or_explains(RunConfig.from_json, text)
    parses_or_explains(RunConfig.from_yaml, yaml.safe_dump(json.loads(text)))


@BOUND
@given(st.dictionaries(st.sampled_from(NAMES) | st.text(max_size=20),
                       st.text(max_size=40) | st.sampled_from(["", "none", "0,0,1", "1e999", "9" * 5000, "x" * 70000])
                       | st.lists(st.text(max_size=10), max_size=3)))
def test_any_url_query(query):
    parses_or_explains(RunConfig.from_query, query)
    parses_or_explains(lambda q: RunConfig.salvage(q)[0], query)


@BOUND
@given(st.text(max_size=300))
def test_any_url_query_string(text):
    parses_or_explains(RunConfig.from_query, parse_qs(text, keep_blank_values=True))


@settings(deadline=timedelta(seconds=2), max_examples=20, database=None)
@given(st.sampled_from(["[", "{\"a\": ", "- ", "a:\n "]), st.integers(1, MAX_CONFIG_CHARS // 2))
def test_nesting_of_any_depth(opening, depth):
    for parse in (RunConfig.from_yaml, RunConfig.from_json):
        parses_or_explains(parse, opening * depth)
        parses_or_explains(parse, "[" * depth + "]" * depth)
