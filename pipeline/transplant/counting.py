"""What a decode step costs a GPU that a CPU's wall time hides: host synchronisations and dispatched ops.

On a GPU every dispatched op is a kernel launch of a few microseconds, and every read of a device
tensor's value on the host (``.item()``, ``bool(t)``, ``.tolist()``, ``.cpu()``, or an op whose
output shape depends on the data: ``nonzero``, ``unique``, a boolean-mask index) waits until the
GPU has drained its queue. A step that launches thousands of ops or synchronises per layer runs
at the speed of the Python host, not of the GPU. Both counts are deterministic, so the tests
assert them on the CPU (``tests/test_step_costs.py``) and the benchmarks print them.

:class:`StepCosts` counts, while it is entered:

- *syncs*: host reads of tensor values (Python-level ``tolist``/``item``/``cpu``/``numpy``/
  ``__bool__``/``__int__``/``__float__``/``__index__``), the data-dependent
  ops listed in :data:`DATA_DEPENDENT` and boolean-mask indexing (at the aten level), and
  blocking uploads (``torch.tensor(data, device=...)``: a pageable copy that waits for the
  stream on CUDA);
- *ops*: every aten op dispatched (views included: each costs a dispatch on the host);
- *steps*: forwards of the output embedding (``lm_head``): one per decode step, in the engine as
  in ``generate()``, whose prefill produces the first token. The syncs and ops between two steps
  are that step's; a step whose interval holds a forward of more than one position (a prefill)
  is marked, so decode steps can be told apart.

The convention that makes the sync count exact on a CPU: host-side values are Python objects
(lists, ints), never tensors, so any read of a tensor's value is a read of a device tensor.
"""

from __future__ import annotations

import statistics
from collections import Counter
from contextlib import ExitStack

import torch
from torch import nn
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode

HOST_READS = frozenset({"tolist", "item", "cpu", "numpy", "__bool__", "__int__", "__float__", "__index__"})
"""Tensor methods that copy a value to the host (a sync on CUDA). ``.to(device)`` is not among them:
on a CPU run ``.to(model.device)`` is indistinguishable from a copy to the host, so host copies
are written as ``.tolist()`` / ``.cpu()``."""

DATA_DEPENDENT = frozenset({
    "nonzero", "_unique2", "unique_dim", "unique_consecutive", "masked_select", "_local_scalar_dense",
    "equal", "bincount", "is_nonzero",
})  # fmt: skip
"""aten ops whose output shape or value the host must know before going on."""

UPLOADS = frozenset({"tensor", "as_tensor"})
"""Factories from host data: with an explicit ``device=`` they are a blocking host-to-device copy."""


class _Functions(TorchFunctionMode):
    def __init__(self, costs: StepCosts):
        super().__init__()
        self.costs = costs

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = getattr(func, "__name__", "")
        read = name in HOST_READS
        if read or (name in UPLOADS and kwargs.get("device") is not None):
            self.costs.syncs[name] += 1
        if not read:
            return func(*args, **kwargs)
        self.costs._inside += 1  # the aten ops it runs are the same sync, counted once
        try:
            return func(*args, **kwargs)
        finally:
            self.costs._inside -= 1


class _Dispatch(TorchDispatchMode):
    def __init__(self, costs: StepCosts):
        super().__init__()
        self.costs = costs

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.overloadpacket.__name__
        self.costs.ops[name] += 1
        if not self.costs._inside and (name in DATA_DEPENDENT or _bool_index(name, args)):
            self.costs.syncs[name] += 1
        return func(*args, **(kwargs or {}))


def _bool_index(name: str, args) -> bool:
    if name not in ("index", "index_put", "index_put_") or len(args) < 2:
        return False
    return any(isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in args[1])


class StepCosts:
    """Host syncs, dispatched ops and decode steps of the work done inside ``with StepCosts(model):``.

    Attributes:
        syncs: Counter of sync causes (method or op name).
        ops: Counter of dispatched aten ops by name.
        steps: decode steps (forwards of ``model``'s output embedding).
        step_syncs, step_ops: per step, the syncs and ops since the previous step (the first one
            includes the prefill and anything else before it).
        step_prefill: per step, whether its interval ran a forward over more than one position.
    """

    def __init__(self, model: nn.Module):
        self.head = model.get_output_embeddings()
        self.decoder = model.get_decoder()
        self.syncs: Counter[str] = Counter()
        self.ops: Counter[str] = Counter()
        self.steps = 0
        self.step_syncs: list[int] = []
        self.step_ops: list[int] = []
        self.step_prefill: list[bool] = []
        self._prefill = False
        self._inside = 0
        self._stack: ExitStack | None = None
        self._marks = (0, 0)

    def _step(self, *_args) -> None:
        self.steps += 1
        syncs, ops = sum(self.syncs.values()), sum(self.ops.values())
        self.step_syncs.append(syncs - self._marks[0])
        self.step_ops.append(ops - self._marks[1])
        self.step_prefill.append(self._prefill)
        self._marks = (syncs, ops)
        self._prefill = False

    def _forward(self, _module, args, kwargs) -> None:
        ids = kwargs.get("input_ids", args[0] if args else None)
        if ids is None:
            ids = kwargs.get("inputs_embeds")
        if ids is not None and ids.dim() > 1 and ids.shape[1] > 1:
            self._prefill = True

    def __enter__(self) -> StepCosts:
        self._stack = ExitStack()
        handle = self.head.register_forward_hook(self._step)
        self._stack.callback(handle.remove)
        handle = self.decoder.register_forward_pre_hook(self._forward, with_kwargs=True)
        self._stack.callback(handle.remove)
        self._stack.enter_context(_Functions(self))
        self._stack.enter_context(_Dispatch(self))
        return self

    def __exit__(self, *exc) -> None:
        self._stack.close()

    @property
    def syncs_per_step(self) -> float:
        return sum(self.syncs.values()) / max(self.steps, 1)

    @property
    def ops_per_step(self) -> float:
        return sum(self.ops.values()) / max(self.steps, 1)

    @property
    def decode_step_ops(self) -> float:
        """The median of the steps' ops: a decode step's own, without the prefill before the first."""
        return statistics.median(self.step_ops) if self.step_ops else 0.0

    @property
    def decode_step_syncs(self) -> list[int]:
        """The syncs of every step whose interval ran no prefill."""
        return [s for s, prefill in zip(self.step_syncs, self.step_prefill) if not prefill]
