"""Which operators of a training step would make the CPU wait for a CUDA GPU, found on any device.

A CUDA step is fast while the CPU queues kernels ahead of the GPU; an operator that needs a value back
on the host (``.item()``, a boolean mask, ``nonzero``, ``bincount``'s size) stops the queue until the GPU
has caught up. With ``torch.use_deterministic_algorithms(True)``, as the engine sets on CUDA, scatters
and index additions also go through ``index_put_``, whose range check reads the indices back. These are
what PyTorch's own ``torch.cuda.set_sync_debug_mode`` reports, but that works only on a GPU: this
dispatch mode sees the same operators on a CPU, so a test can hold every loss's step to none.
"""

from __future__ import annotations

import traceback
from collections import Counter
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode

#: Operators that wait for the device whatever the settings: a value read back, or an output whose size
#: depends on the values.
ALWAYS = frozenset({
    "aten::_local_scalar_dense", "aten::item", "aten::is_nonzero", "aten::equal", "aten::nonzero",
    "aten::masked_select", "aten::bincount", "aten::_unique2", "aten::unique_dim", "aten::unique_consecutive",
    "aten::repeat_interleave", "aten::histc",
})
#: Operators that wait for the device under deterministic algorithms on CUDA (through ``index_put_``).
DETERMINISTIC = frozenset({
    "aten::scatter_add", "aten::scatter_add_", "aten::scatter", "aten::scatter_", "aten::scatter_reduce",
    "aten::scatter_reduce_", "aten::index_add", "aten::index_add_", "aten::index_put", "aten::index_put_",
    "aten::_index_put_impl_", "aten::index_copy", "aten::index_copy_",
})
_OURS = ("/dmlviz/", "/pytorch_metric_learning/", "/torch/optim/")
#: Loss settings that change what a step computes (its miner, its mining), each checked beside the defaults.
STEP_VARIANTS = (("triplet", {"miner": "semihard"}), ("triplet", {"miner": "hard"}),
                 ("multi-similarity", {"mining": False}))
#: Callers whose scalar reads never wait for a GPU, and why.
HOST_READS = {
    "optim/": "the optimiser's step counters: host tensors unless it is built capturable or fused",
}


def _boolean_index(name: str, args: tuple) -> bool:
    """``x[mask]`` and ``x[mask] = v``: the mask's count of True decides the size (a ``nonzero`` inside)."""
    if name not in ("aten::index", "aten::index_put", "aten::index_put_", "aten::_index_put_impl_"):
        return False
    indices = args[1] if len(args) > 1 else ()
    return any(isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in indices or ())


def _where() -> str:
    """The innermost frame of dmlviz or pytorch-metric-learning that called the operator."""
    for frame in reversed(traceback.extract_stack()):
        if any(part in frame.filename for part in _OURS) and not frame.filename.endswith("syncs.py"):
            return f"{frame.filename.rsplit('/', 2)[-2]}/{frame.filename.rsplit('/', 1)[-1]}:{frame.lineno}"
    return "?"


class SyncCounter(TorchDispatchMode):
    """Counts the operators that would synchronise a CUDA stream, by operator and calling line.

    ``deterministic``: count too what waits only under deterministic algorithms (the engine's CUDA setting).
    """

    def __init__(self, deterministic: bool = True) -> None:
        super().__init__()
        self.deterministic = deterministic
        self.found: Counter[tuple[str, str]] = Counter()

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        name = func._schema.name
        if (name in ALWAYS or (self.deterministic and name in DETERMINISTIC)
                or _boolean_index(name, args)):
            self.found[(name, _where())] += 1
        return func(*args, **(kwargs or {}))

    def waits(self) -> dict[tuple[str, str], int]:
        """What would wait for a GPU, by operator and line: all that was found but the ``HOST_READS``."""
        return {(name, where): count for (name, where), count in self.found.items()
                if not (name == "aten::_local_scalar_dense" and where.startswith(tuple(HOST_READS)))}
