"""The run settings as widgets, built from ``RunConfig``'s field metadata and the loss registry.

Widget values live in session state under ``cfg.<field>`` and ``hp.<loss>.<name>`` (a key per loss,
so switching losses never hands one loss's value to another's widget of the same name). The URL is
the settings' other home: :func:`seed` writes a config into the widgets, :func:`read` makes one
from them.
"""

from __future__ import annotations

import math
from dataclasses import fields
from typing import Any

import streamlit as st

from dmlviz import settings
from dmlviz.config import ConfigError, RunConfig
from dmlviz.data import DATASETS, dataset_names
from dmlviz.losses import get_spec, loss_names
from dmlviz.losses.base import FAMILIES, HParam
from dmlviz.presets import PRESETS

PREFIX = "cfg."
MAIN = ("dataset", "classes", "label_noise", "model", "norm", "feature_dim", "loss")
TRAINING = ("optimizer", "lr", "batch_size", "epochs", "seed")
ADVANCED = ("loss_lr", "momentum", "weight_decay", "schedule", "sampler", "train_size", "steps", "probe_size",
            "snapshot_every", "snapshot_budget", "snapshot_steps", "precision", "device", "name")
# Increments of the +/- buttons of float settings; the others step by 1.
_STEPS = {"label_noise": 0.05, "lr": 1e-4, "loss_lr": 1e-4, "momentum": 0.05, "weight_decay": 1e-4,
          "epochs": 0.5, "snapshot_every": 0.1, "snapshot_budget": 0.01}
_FIELDS = {f.name: f for f in fields(RunConfig)}


def hp_key(loss: str, name: str, key_prefix: str = "hp.") -> str:
    return f"{key_prefix}{loss}.{name}"


def _widget_values(config: RunConfig) -> dict[str, Any]:
    values: dict[str, Any] = {PREFIX + name: getattr(config, name) for name in _FIELDS if name != "loss_params"}
    values[PREFIX + "classes"] = ",".join(map(str, config.classes)) if config.classes is not None else ""
    spec = get_spec(config.loss)
    for name, value in config.loss_hparams().items():
        kind = spec.hparam(name).kind
        # A URL says "64" for a float hyperparameter; its widget needs 64.0.
        values[hp_key(config.loss, name)] = kind(value) if kind in (int, float) else value
    return values


def seed(config: RunConfig, overwrite: bool = True) -> None:
    """Put a config into the widgets (all of them, or only those not on the page yet)."""
    for key, value in _widget_values(config).items():
        if overwrite or key not in st.session_state:
            st.session_state[key] = value


def read() -> tuple[RunConfig | None, list[str]]:
    """The config the widgets describe, or the reasons it is not valid or not allowed on this server."""
    state = st.session_state
    data = {name: state[PREFIX + name] for name in (*MAIN, *TRAINING, *ADVANCED) if PREFIX + name in state}
    data["classes"] = data.get("classes") or None
    spec = get_spec(data["loss"])
    defaults = spec.defaults()
    data["loss_params"] = {hp.name: state[hp_key(spec.name, hp.name)] for hp in spec.hparams
                           if state.get(hp_key(spec.name, hp.name), defaults[hp.name]) != defaults[hp.name]}
    try:
        config = RunConfig.from_dict(data)
    except ConfigError as error:
        return None, error.errors
    errors = config.limit_problems()
    return (None, errors) if errors else (config, [])


def show_problems(heading: str, problems: list[str]) -> None:
    """A red box: the heading, then each problem as a bullet (nothing when there are none)."""
    if problems:
        st.error(f"{heading}:\n\n" + "\n".join(f"- {problem}" for problem in problems))


def _apply_preset() -> None:
    title = st.session_state.get("preset")
    for preset in PRESETS:
        if preset.title == title:
            seed(preset.config())
            st.session_state["preset_note"] = (preset.title, preset.what_to_watch)


def render() -> None:
    """Draw every setting (in the current container, normally the sidebar)."""
    st.selectbox("Preset", [p.title for p in PRESETS], index=None, key="preset", on_change=_apply_preset,
                 placeholder="The classic pictures, in one click",
                 help="Settings that reproduce a well-known figure; they stay editable.")
    loss = st.session_state.get(PREFIX + "loss", RunConfig().loss)
    # A new loss's hyperparameters start at their defaults.
    for key, value in _widget_values(RunConfig(loss=loss)).items():
        if key.startswith("hp.") and key not in st.session_state:
            st.session_state[key] = value
    for name in MAIN:
        field_widget(name)
    hparam_widgets(get_spec(st.session_state[PREFIX + "loss"]).hparams)
    st.markdown("**Training**")
    for name in TRAINING:
        field_widget(name)
    with st.expander("Advanced"):
        for name in ADVANCED:
            field_widget(name)


def field_widget(name: str, prefix: str = PREFIX) -> None:
    """The widget of one ``RunConfig`` field, keyed ``<prefix><name>``."""
    f = _FIELDS[name]
    meta = f.metadata
    key = prefix + name
    label = name.replace("_", " ").capitalize()
    current = st.session_state.get(key)
    if name == "dataset":
        # A public server keeps its data folder to itself: only the built-in datasets are offered.
        options = dataset_names(settings.data_dir()) if settings.limits().custom_datasets else list(DATASETS)
        if current not in options:
            options.append(current)
        st.selectbox(label, options, key=key, help=meta["help"],
                     format_func=lambda n: DATASETS[n].display_name if n in DATASETS else n)
    elif name == "classes":
        st.text_input("Classes to train on", key=key, placeholder="all", help=meta["help"])
    elif name == "loss":
        st.selectbox("Loss", loss_names(), key=key, help=meta["help"], format_func=loss_label)
    elif meta["choices"]:
        st.selectbox(label, meta["choices"], key=key, help=meta["help"])
    elif f.type in ("float", "float | None"):
        st.number_input(label, min_value=meta["low"], max_value=meta["high"], step=_STEPS.get(name, 0.1),
                        format="%g", key=key, help=meta["help"], placeholder="default")
    elif f.type in ("int", "int | None"):
        st.number_input(label, min_value=_int(meta["low"]), max_value=_int(meta["high"]), step=1, key=key,
                        help=meta["help"], placeholder="default")
    else:
        st.text_input(label, key=key, help=meta["help"])


def loss_label(name: str) -> str:
    spec = get_spec(name)
    return f"{spec.display_name} · {FAMILIES[spec.family]}"


def hparam_widgets(hparams: tuple[HParam, ...], loss: str | None = None, key_prefix: str = "hp.") -> None:
    """A widget per hyperparameter of ``loss`` (default: the sidebar's), keyed ``<key_prefix><loss>.<name>``."""
    loss = loss or st.session_state[PREFIX + "loss"]
    for hp in hparams:
        key = f"{key_prefix}{loss}.{hp.name}"
        label = f"{hp.name} ({hp.unit})" if hp.unit else hp.name
        if hp.choices:
            st.selectbox(label, hp.choices, key=key, help=hp.help)
        elif hp.kind is bool:
            st.toggle(label, key=key, help=hp.help)
        elif hp.kind is int:
            st.number_input(label, min_value=_int(hp.low), max_value=_int(hp.high), step=1, key=key, help=hp.help)
        else:
            st.number_input(label, min_value=_float(hp.low), max_value=_float(hp.high),
                            step=_float_step(hp.default), format="%g", key=key, help=hp.help)


def _int(value: float | None) -> int | None:
    return None if value is None else int(value)


def _float(value: float | None) -> float | None:
    return None if value is None else float(value)


def _float_step(default: float) -> float:
    """A hundredth of the default's order of magnitude: 0.5 → 0.01, 64 → 1."""
    return 10.0 ** (math.floor(math.log10(abs(default))) - 1) if default else 0.01
