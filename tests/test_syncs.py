"""No operator of a steady training step waits for a CUDA GPU, checked on the CPU for every loss."""

from __future__ import annotations

import pytest
import torch

from dmlviz.config import RunConfig
from dmlviz.engine import setup
from dmlviz.losses import loss_names
from dmlviz.syncs import STEP_VARIANTS, SyncCounter

VARIANTS = [(name, {}) for name in loss_names()] + list(STEP_VARIANTS)


def test_the_counter_finds_what_waits_for_a_gpu_and_nothing_else():
    x, labels = torch.randn(8, 3), torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])
    with SyncCounter() as counter:
        x @ x.T, torch.where(x > 0, x, 0), x.sum(0)  # noqa: B018 — elementwise and reductions never wait
    assert counter.found == {}
    with SyncCounter() as counter:
        x.sum().item()
        x[x > 0]
        torch.bincount(labels)
        torch.zeros(3).index_add_(0, labels, x[:, 0])
    found = {name for name, _ in counter.found}
    assert {"aten::_local_scalar_dense", "aten::bincount", "aten::index_add_"} <= found
    assert found & {"aten::index", "aten::nonzero"}  # the boolean mask
    assert all(where == "?" for _, where in counter.found)  # no line of dmlviz called them
    with SyncCounter(deterministic=False) as counter:
        torch.zeros(3).index_add_(0, labels, x[:, 0])  # waits only under deterministic algorithms
    assert counter.found == {}


@pytest.mark.parametrize(("loss", "loss_params"), VARIANTS)
def test_a_steady_training_step_waits_for_nothing(loss, loss_params, tmp_path, one_thread):
    config = RunConfig.from_dict({"dataset": "digits", "device": "cpu", "loss": loss, "loss_params": loss_params,
                                  "steps": 100, "probe_size": 100, "feature_dim": 16})
    trainer = setup(config, tmp_path)
    for _ in range(3):  # the first steps build the optimiser's state
        trainer.train_step()
    with SyncCounter() as counter:
        for _ in range(20):
            trainer.train_step()
    assert counter.waits() == {}
