"""The settings of a comparison as widgets: the shared run settings, and two to four losses with
their own hyperparameters.

Shared settings use the Train page's widgets under ``cmp.<field>``; loss ``i`` is ``cmp.loss<i>``
with its hyperparameters under ``cmp<i>.<loss>.<name>`` (a key per slot and loss, so switching a
slot's loss never hands one loss's value to another's widget).
"""

from __future__ import annotations

import streamlit as st

from dmlviz.comparison import COMPARISON_PRESETS, MAX_LOSSES, MIN_LOSSES, Comparison, LossChoice
from dmlviz.config import PARAMS, ConfigError, RunConfig
from dmlviz.losses import get_spec, loss_names
from ui.settings_form import field_widget, hp_key, hparam_widgets, loss_label, param_widget

PREFIX = "cmp."
SHARED = ("dataset", "classes", "label_noise", "model", "feature_dim")
TRAINING = ("optimizer", "lr", "batch_size", "epochs", "seed")
ADVANCED = ("momentum", "weight_decay", "schedule", "train_size", "steps", "probe_size", "snapshot_every",
            "precision", "device", "name")


def _loss_key(slot: int) -> str:
    return f"{PREFIX}loss{slot}"


def _hp_prefix(slot: int) -> str:
    return f"cmp{slot}."


def seed(comparison: Comparison) -> None:
    """Put a comparison into the widgets."""
    state = st.session_state
    for name in (*SHARED, *TRAINING, *ADVANCED):
        state[PREFIX + name] = PARAMS[name].widget_value(getattr(comparison.shared, name))
    state[PREFIX + "count"] = len(comparison.losses)
    for slot, choice in enumerate(comparison.losses, start=1):
        state[_loss_key(slot)] = choice.loss
        for hp in get_spec(choice.loss).hparams:
            state[hp_key(choice.loss, hp.name, _hp_prefix(slot))] = hp.widget_value(choice.params.get(hp.name,
                                                                                                        hp.default))
        state[f"{_hp_prefix(slot)}loss_lr"] = choice.loss_lr


def read() -> tuple[Comparison | None, list[str]]:
    """The comparison the widgets describe, or what is wrong with it or not allowed on this server."""
    state = st.session_state
    data = {name: state[PREFIX + name] for name in (*SHARED, *TRAINING, *ADVANCED) if PREFIX + name in state}
    try:
        shared = RunConfig.from_dict(data)
    except ConfigError as error:
        return None, error.errors
    choices = []
    for slot in range(1, int(state.get(PREFIX + "count", MIN_LOSSES)) + 1):
        loss = state.get(_loss_key(slot))
        if loss is None:
            continue
        spec = get_spec(loss)
        defaults = spec.defaults()
        params = {hp.name: state[key] for hp in spec.hparams
                  if (key := hp_key(loss, hp.name, _hp_prefix(slot))) in state and state[key] != defaults[hp.name]}
        choices.append(LossChoice(loss, params, state.get(f"{_hp_prefix(slot)}loss_lr")))
    comparison = Comparison(shared, tuple(choices))
    try:
        comparison.configs()
    except ConfigError as error:
        return None, error.errors
    errors = shared.limit_problems()  # the losses' own settings change neither the data nor the length
    return (None, errors) if errors else (comparison, [])


def _apply_preset() -> None:
    title = st.session_state.get(PREFIX + "preset")
    for preset in COMPARISON_PRESETS:
        if preset.title == title:
            seed(preset.comparison())
            st.session_state["compare_note"] = (preset.title, preset.what_to_watch)


def render() -> None:
    """Draw the comparison's settings (in the current container, normally the sidebar)."""
    st.selectbox("Comparison preset", [p.title for p in COMPARISON_PRESETS], index=None, key=PREFIX + "preset",
                 on_change=_apply_preset, placeholder="Classic match-ups, in one click",
                 help="Losses and settings for a well-known comparison; they stay editable.")
    st.markdown("**Losses**")
    st.session_state.setdefault(PREFIX + "count", MIN_LOSSES)
    count = st.number_input("How many", MIN_LOSSES, MAX_LOSSES, step=1, key=PREFIX + "count",
                            help="Two to four losses, trained together on the same batches.")
    names = loss_names()
    for slot in range(1, int(count) + 1):
        st.session_state.setdefault(_loss_key(slot), names[min(slot - 1, len(names) - 1)])
        loss = st.selectbox(f"Loss {slot}", names, key=_loss_key(slot), format_func=loss_label)
        spec = get_spec(loss)
        for hp in spec.hparams:
            st.session_state.setdefault(hp_key(loss, hp.name, _hp_prefix(slot)), hp.default)
        st.session_state.setdefault(f"{_hp_prefix(slot)}loss_lr", None)
        with st.expander(f"{spec.display_name}: hyperparameters"):
            hparam_widgets(spec.hparams, loss=loss, key_prefix=_hp_prefix(slot))
            param_widget(PARAMS["loss_lr"], f"{_hp_prefix(slot)}loss_lr", "Learning rate of its own parameters")
    st.markdown("**Shared by all**")
    for name in (*SHARED, *TRAINING):
        st.session_state.setdefault(PREFIX + name, PARAMS[name].widget_value(PARAMS[name].default))
        field_widget(name, PREFIX)
    with st.expander("Advanced"):
        for name in ADVANCED:
            st.session_state.setdefault(PREFIX + name, PARAMS[name].widget_value(PARAMS[name].default))
            field_widget(name, PREFIX)
