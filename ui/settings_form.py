"""The run settings as widgets: one widget per :class:`~dmlviz.params.Param`, a run's (``RunConfig``'s
:data:`~dmlviz.config.PARAMS`) or a loss's, through :func:`param_widget`.

Widget values live in session state under ``cfg.<field>`` and ``hp.<loss>.<name>`` (a key per loss,
so switching losses never hands one loss's value to another's widget of the same name). The URL is
the settings' other home: :func:`seed` writes a config into the widgets, :func:`read` makes one
from them.
"""

from __future__ import annotations

from typing import Any

import streamlit as st

from dmlviz import settings
from dmlviz.config import PARAMS, ConfigError, RunConfig
from dmlviz.data import DATASETS, dataset_names
from dmlviz.losses import get_spec, loss_names
from dmlviz.losses.base import FAMILIES
from dmlviz.params import Param
from dmlviz.presets import PRESETS

PREFIX = "cfg."
MAIN = ("dataset", "classes", "label_noise", "model", "norm", "feature_dim", "loss")
TRAINING = ("optimizer", "lr", "batch_size", "epochs", "seed")
ADVANCED = ("loss_lr", "momentum", "weight_decay", "schedule", "sampler", "train_size", "steps", "probe_size",
            "snapshot_every", "snapshot_budget", "snapshot_steps", "precision", "device", "name")


def hp_key(loss: str, name: str, key_prefix: str = "hp.") -> str:
    return f"{key_prefix}{loss}.{name}"


def _widget_values(config: RunConfig) -> dict[str, Any]:
    values = {PREFIX + name: param.widget_value(getattr(config, name)) for name, param in PARAMS.items()}
    spec = get_spec(config.loss)
    values.update({hp_key(config.loss, name): spec.hparam(name).widget_value(value)
                   for name, value in config.loss_hparams().items()})
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
    """The widget of one run setting, keyed ``<prefix><name>``: the dataset and the loss pick from what this
    server has; every other setting is its param's widget."""
    param = PARAMS[name]
    key = prefix + name
    if name == "dataset":
        # A public server keeps its data folder to itself: only the built-in datasets are offered.
        options = dataset_names(settings.data_dir()) if settings.limits().custom_datasets else list(DATASETS)
        if (current := st.session_state.get(key)) not in options:
            options.append(current)
        st.selectbox("Dataset", options, key=key, help=param.help,
                     format_func=lambda n: DATASETS[n].display_name if n in DATASETS else n)
    elif name == "loss":
        st.selectbox("Loss", loss_names(), key=key, help=param.help, format_func=loss_label)
    else:
        label = "Classes to train on" if name == "classes" else name.replace("_", " ").capitalize()
        param_widget(param, key, label)


def loss_label(name: str) -> str:
    spec = get_spec(name)
    return f"{spec.display_name} · {FAMILIES[spec.family]}"


def hparam_widgets(hparams: tuple[Param, ...], loss: str | None = None, key_prefix: str = "hp.") -> None:
    """A widget per hyperparameter of ``loss`` (default: the sidebar's), keyed ``<key_prefix><loss>.<name>``."""
    loss = loss or st.session_state[PREFIX + "loss"]
    for hp in hparams:
        param_widget(hp, hp_key(loss, hp.name, key_prefix), f"{hp.name} ({hp.unit})" if hp.unit else hp.name)


def param_widget(param: Param, key: str, label: str) -> None:
    """The widget that edits ``param``, its value in session state under ``key``."""
    kind = param.widget
    if kind == "select":
        st.selectbox(label, param.choices, key=key, help=param.help)
    elif kind == "toggle":
        st.toggle(label, key=key, help=param.help)
    elif kind in ("int", "float"):
        whole = kind == "int"
        low, high = ((None if bound is None else (int(bound) if whole else float(bound)))
                     for bound in (param.low, param.high))
        st.number_input(label, min_value=low, max_value=high, step=param.widget_step(),
                        format=None if whole else "%g", key=key, help=param.help, placeholder="default")
    else:
        st.text_input(label, key=key, help=param.help, placeholder="all" if kind == "classes" else "")
