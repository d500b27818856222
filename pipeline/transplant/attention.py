"""Shared-prefix attention plugged into transformers: registration, binding, the chunk's decode steps.

The state and the batched computation live in :mod:`.prefix` (``SharedPrefixKV``); this module
plugs it into the public extension point of transformers 5 (``AttentionInterface``): the
model's own attention module still computes q/k/v (fused or not), positions (RoPE, learned
absolute), q/k norms and the output projection; only the kernel that combines them is ours. The
kernel covers what the families' kernels do between the projections: GQA/MQA, sliding windows
(Mistral, Gemma 2/3, gpt-oss), logit soft-capping (Gemma 2), attention sinks (gpt-oss), and value
heads narrower than key heads (MLA: DeepSeek V2/V3).

Two names are registered over each base implementation: the prefill's, paired with the base's mask
function (padding and sliding windows of the right-padded prefill batch), and the decode's, with no
mask function, so that transformers builds no mask at all for a decode step (the kernel masks
with its own per-step biases; building one would cost ops and, from ``position_ids``, a host
synchronisation). :func:`decoding` switches between them.

The :class:`~.prefix.SharedPrefixKV` reaches the kernel through the attention module itself
(:func:`bound`), not through the forward's ``**kwargs``: some decoder layers (StableLM) do not
pass their kwargs on to the attention module. Without a binding the kernel is the implementation
the model was loaded with (``sdpa``, or ``eager`` for classes that refuse sdpa).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import nn
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, eager_mask, sdpa_mask

from pipeline.errors import PipelineError
from pipeline.transplant.prefix import SharedPrefixKV

ATTN_IMPLEMENTATION = "xtransplant_shared_prefix"
BASE_IMPLEMENTATIONS = ("sdpa", "eager")
DECODE_SUFFIX = "_decode"  # the decode's registered name: no mask function
_BINDING = "_xtransplant_kv"  # attribute set on an attention module while bound: (SharedPrefixKV, layer)


def _base_kernel(module: nn.Module, implementation: str):
    """The kernel of the implementation the model was loaded with: transformers' sdpa, or the
    modeling file's own ``eager_attention_forward`` (the one that knows its softcap and sinks)."""
    if implementation == "sdpa":
        return sdpa_attention_forward
    eager = getattr(sys.modules[type(module).__module__], "eager_attention_forward", None)
    if eager is None:
        raise PipelineError(f"{type(module).__name__}: its modeling file has no eager_attention_forward")
    return eager


def make_kernel(implementation: str):
    def shared_prefix_attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
        """The registered kernel: the base implementation, plus recording/reading a :class:`SharedPrefixKV`."""
        kv, layer = getattr(module, _BINDING, (None, None))
        if kv is None or kv.recording:
            if kv is not None:
                kv.record(layer, key, value)
            return _base_kernel(module, implementation)(
                module, query, key, value, attention_mask, scaling=scaling, dropout=dropout, **kwargs
            )
        scale = scaling if scaling is not None else query.shape[-1] ** -0.5
        out = kv.attend(
            layer, query, key, value, scale, kwargs.get("sliding_window"), kwargs.get("softcap"), kwargs.get("s_aux")
        )
        return out, None

    return shared_prefix_attention


def implementation_name(base: str) -> str:
    """The registered name of the kernel over ``base`` (each needs its own mask function)."""
    if base not in BASE_IMPLEMENTATIONS:
        raise PipelineError(f"attention implementation '{base}' has no shared-prefix kernel; valid: sdpa, eager")
    return ATTN_IMPLEMENTATION if base == "sdpa" else f"{ATTN_IMPLEMENTATION}_{base}"


def mask_function(base: str):
    """The mask function transformers pairs with ``base`` (sdpa's boolean mask, eager's additive one)."""
    return sdpa_mask if base == "sdpa" else eager_mask


def register(base: str = "sdpa") -> str:
    """Registers the kernel over ``base``: the prefill's name with its mask function and the
    decode's without one (idempotent); returns the prefill's name."""
    name = implementation_name(base)
    kernel = make_kernel(base)
    AttentionInterface.register(name, kernel)
    AttentionMaskInterface.register(name, mask_function(base))
    AttentionInterface.register(name + DECODE_SUFFIX, kernel)
    return name


@contextmanager
def decoding(model: nn.Module) -> Iterator[None]:
    """Runs the forwards inside the block with the decode's name (no mask built), then restores."""
    name = model.config._attn_implementation
    model.set_attn_implementation(name + DECODE_SUFFIX)
    try:
        yield
    finally:
        model.set_attn_implementation(name)


@contextmanager
def bound(modules: Sequence[nn.Module | None], kv: SharedPrefixKV) -> Iterator[None]:
    """Binds ``kv`` to each layer's attention module (``modules[k]`` of layer k) for the block.

    The kernel finds its :class:`SharedPrefixKV` and layer index there; the bindings are always
    removed, so a later forward runs the plain base kernel.
    """
    try:
        for k, module in enumerate(modules):
            if module is not None:
                object.__setattr__(module, _BINDING, (kv, k))
        yield
    finally:
        for module in modules:
            if module is not None and _BINDING in module.__dict__:
                del module.__dict__[_BINDING]


def base_implementation(model: nn.Module) -> str:
    """The attention implementation ``model`` was loaded with, under any shared-prefix kernel."""
    current = (getattr(model.config, "_attn_implementation", None) or "sdpa").removesuffix(DECODE_SUFFIX)
    if current.startswith(ATTN_IMPLEMENTATION):
        return "eager" if current.endswith("_eager") else "sdpa"
    if current not in BASE_IMPLEMENTATIONS:
        raise PipelineError(
            f"model type {model.config.model_type}: attention implementation '{current}' has no shared-prefix "
            "kernel; load it with sdpa or eager"
        )
    return current


class KernelSteps:
    """Lockstep greedy steps of a chunk on the shared-prefix kernel (:class:`~.prefix.SharedPrefixKV`).

    The step's index tensors reach ``kv`` through :meth:`~.prefix.SharedPrefixKV.plan_step`
    (``lockstep.py``); a step is then one forward under the decode's name (:func:`decoding`).
    """

    def __init__(self, model: nn.Module, attn_modules, kv: SharedPrefixKV, group_of: Sequence[int], steps: int):
        self.model, self.attn_modules, self.kv = model, attn_modules, kv
        kv.begin_chunk(group_of, steps)

    def plan(self, t: int, rows: Sequence[int], segments, arrays: list):
        return self.kv.plan_step(t, rows, segments, arrays)

    def logits(self, tokens: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """[n, V] float32 next-token logits of the step's rows (tokens, positions: [n])."""
        with bound(self.attn_modules, self.kv):
            out = self.model(input_ids=tokens[:, None], position_ids=positions[:, None], use_cache=False, logits_to_keep=1)
        return out.logits[:, -1].float()
