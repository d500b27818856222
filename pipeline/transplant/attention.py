"""Shared-prefix attention: every config row of an instance reads one copy of the target prefix.

Causal attention makes every position before the last target prompt token identical in all N^2
configs and in vanilla (the transplant happens at the last prompt token). So the target prefix is
run once and its keys/values are kept once per instance; each config row then carries only its
own suffix (the last prompt token and the tokens it generates).

This module plugs into the public extension point of transformers 5 (``AttentionInterface``): the
model's own attention module still computes q/k/v (fused or not), positions (RoPE, learned
absolute), q/k norms and the output projection; only the kernel that combines them is ours. The
kernel covers what the families' kernels do between the projections: GQA/MQA, sliding windows
(Mistral, Gemma 2/3, gpt-oss), logit soft-capping (Gemma 2), attention sinks (gpt-oss), and value
heads narrower than key heads (MLA: DeepSeek V2/V3).

The :class:`SharedPrefixKV` reaches the kernel through the attention module itself
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

ATTN_IMPLEMENTATION = "xtransplant_shared_prefix"
BASE_IMPLEMENTATIONS = ("sdpa", "eager")
_BINDING = "_xtransplant_kv"  # attribute set on an attention module while bound: (SharedPrefixKV, layer)


class SharedPrefixKV:
    """Keys/values of a batch of instances: one shared prefix per instance, a suffix per row.

    Lifecycle: :meth:`record_prefix` (during the prefill forward), then per chunk of config rows
    :meth:`begin_chunk`, one forward per step (each calls :meth:`attend` once per layer), then
    :meth:`advance`; :meth:`keep` drops finished rows.

    Shapes: prefix_kt[layer] is [G, kvh, d, P_max] (G instances, right-padded; keys stored
    transposed so that the prefix score GEMM reads both operands row-major) and prefix_v[layer]
    [G, kvh, P_max, d]; suffix_k[layer] is [B, kvh, T, d] (B rows of the chunk, T =
    max_new_tokens), preallocated and written in place.
    """

    def __init__(self, n_layers: int):
        self.n_layers = n_layers
        self.recording = False
        self.prefix_rows: torch.Tensor | None = None
        self.prefix_len: list[int] = []
        self._slots = torch.empty(0, dtype=torch.long)
        self._piece_width = 0
        self._shape = (0, 0)
        self.prefix_kt: list[torch.Tensor | None] = [None] * n_layers
        self.prefix_v: list[torch.Tensor | None] = [None] * n_layers
        self.suffix_k: list[torch.Tensor] = []
        self.suffix_v: list[torch.Tensor] = []
        self.row_group = torch.empty(0, dtype=torch.long)
        self.groups: list[tuple[int, int, int]] = []
        self.shared: list[tuple[torch.Tensor, torch.Tensor, list[tuple[int, int, int]]] | None] = []
        self.step = 0

    # -- prefill -----------------------------------------------------------------------------
    def record_prefix(self, rows: torch.Tensor, slots: list[int], lengths: list[int], n_groups: int, width: int) -> None:
        """Arms recording: the next forward stores keys/values of its batch ``rows`` as instance groups ``slots``.

        A prefill may take several forwards (pieces of similar length, see
        ``TransplantEngine._prefill``); each records its own prefixes into buffers of ``n_groups``
        instances and ``width`` positions (the batch's longest prefix), allocated by the first one.
        ``rows`` may be empty (a piece holding only source prompts).
        """
        self.recording = True
        self.prefix_rows = rows
        self._slots = torch.tensor(slots, dtype=torch.long, device=rows.device)
        self._piece_width = max(lengths, default=0)
        self._shape = (n_groups, width)
        if len(self.prefix_len) != n_groups:
            self.prefix_len = [0] * n_groups
        for slot, length in zip(slots, lengths):
            self.prefix_len[slot] = length

    def _record(self, layer: int, key: torch.Tensor, value: torch.Tensor) -> None:
        n_groups, width = self._shape
        kvh, d, dv = key.shape[1], key.shape[-1], value.shape[-1]  # dv < d for MLA (DeepSeek V2/V3)
        if self.prefix_kt[layer] is None:  # positions past an instance's length are never read
            self.prefix_kt[layer] = key.new_zeros((n_groups, kvh, d, width))
            self.prefix_v[layer] = value.new_zeros((n_groups, kvh, width, dv))
        if len(self.prefix_rows):
            p = self._piece_width
            self.prefix_kt[layer][self._slots, :, :, :p] = key[self.prefix_rows, :, :p].transpose(2, 3)
            self.prefix_v[layer][self._slots, :, :p] = value[self.prefix_rows, :, :p]

    def stop_recording(self) -> None:
        self.recording = False

    # -- chunks of config rows ---------------------------------------------------------------
    def begin_chunk(self, row_group: torch.Tensor, max_steps: int) -> None:
        """Starts a chunk of rows whose instance indices are ``row_group`` (sorted).

        Suffix buffers ([B, kvh, max_steps, d]) are allocated by each layer's first :meth:`attend`,
        shaped by its keys and values.
        """
        self.suffix_k = [None] * self.n_layers
        self.suffix_v = [None] * self.n_layers
        self._max_steps = max_steps
        self._set_rows(row_group)
        self.step = 0

    def _set_rows(self, row_group: torch.Tensor) -> None:
        self.row_group = row_group
        self.groups = _runs(row_group)
        self.shared = []

    def share(self, plan: Sequence) -> None:
        """This step's shared lower layers (``sharing.LayerShare`` per layer, None: all rows run it).

        At a shared layer the kernel sees only the rows in ``share.compute``; it writes each one's
        key/value into the suffix slot of every row that takes its output (``share.expand``) and
        attends for the computed rows only.
        """
        self.shared = [
            None if s is None else (s.compute, s.expand, _runs(self.row_group.index_select(0, s.compute)))
            for s in plan
        ]

    def keep(self, rows: torch.Tensor) -> None:
        """Keeps only ``rows`` (still generating) of the chunk, in order.

        Copies only the suffix slots up to the current step (at most ``step + 1`` of T), not
        whole buffers.
        """
        written = min(self.step + 1, self._max_steps)
        self.suffix_k = [None if s is None else self._compact(s, rows, written) for s in self.suffix_k]
        self.suffix_v = [None if s is None else self._compact(s, rows, written) for s in self.suffix_v]
        self._set_rows(self.row_group.index_select(0, rows))

    @staticmethod
    def _compact(buffer: torch.Tensor, rows: torch.Tensor, written: int) -> torch.Tensor:
        out = buffer.new_empty((len(rows), *buffer.shape[1:]))
        out[:, :, :written] = buffer[:, :, :written].index_select(0, rows)
        return out

    def advance(self) -> None:
        self.step += 1

    # -- the kernel --------------------------------------------------------------------------
    def attend(
        self,
        layer: int,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        scaling: float,
        sliding_window: int | None,
        softcap: float | None = None,
        sinks: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Attention of one new token per row over its instance's prefix and its own suffix.

        The softmax over [prefix | suffix] is computed in two parts that share one row maximum
        (so no rescaling is needed): the suffix part for all rows of the chunk at once, the prefix
        part per instance with one GEMM per kv head, the chunk's queries of that instance
        ([kvh, b * rep, d]) against the single shared prefix. Scores, exponentials and sums are in
        float32 whatever the model dtype.

        A sliding-window layer (Mistral-style, Gemma 2/3's local layers, gpt-oss) lets the query
        at position q attend only keys at positions in (q - W, q], as transformers' sliding mask
        does: rows decode in lockstep, so at step t every row's window starts at suffix slot
        t - W + 1 and, in its instance's prefix of length P, at position P + t - W + 1.

        Args:
            query: [B, h, 1, d]; key: [B, kvh, 1, d]; value: [B, kvh, 1, dv] (after positions
                and any q/k norm; dv may be smaller than d).
            scaling: the score scale the attention module passes (head_dim ** -0.5 for LLaMA,
                query_pre_attn_scalar ** -0.5 for Gemma).
            sliding_window: W of a sliding-window layer, None for global attention.
            softcap: Gemma 2's logit soft-capping, scores -> softcap * tanh(scores / softcap).
            sinks: [h] gpt-oss's per-head sink logits: a column in the softmax's denominator
                (and maximum) that attends to no value.

        Returns:
            [B, 1, h, dv], the layout transformers' attention modules expect.
        """
        t = self.step
        batch, heads, _, d = query.shape
        kvh, dv = key.shape[1], value.shape[-1]
        rep = heads // kvh
        if self.suffix_k[layer] is None:
            rows = len(self.row_group)
            self.suffix_k[layer] = key.new_empty((rows, kvh, self._max_steps, d))
            self.suffix_v[layer] = value.new_empty((rows, kvh, self._max_steps, dv))
        k_suffix, v_suffix = self.suffix_k[layer], self.suffix_v[layer]  # [B, kvh, T, d], [B, kvh, T, dv]
        lo = 0 if sliding_window is None else max(0, t - sliding_window + 1)  # first suffix slot in the window
        shared = self.shared[layer] if self.shared else None
        groups = self.groups
        if shared is None:
            k_suffix[:, :, t] = key[:, :, 0]
            v_suffix[:, :, t] = value[:, :, 0]
            k_suffix, v_suffix = k_suffix[:, :, lo : t + 1], v_suffix[:, :, lo : t + 1]
        else:  # the batch is the computed rows; every row of the chunk keeps its own suffix
            compute, expand, groups = shared
            k_suffix[:, :, t] = key[:, :, 0].index_select(0, expand)
            v_suffix[:, :, t] = value[:, :, 0].index_select(0, expand)
            k_suffix = k_suffix[:, :, lo : t + 1].index_select(0, compute)
            v_suffix = v_suffix[:, :, lo : t + 1].index_select(0, compute)
        q = query[:, :, 0].reshape(batch, kvh, rep, d) * scaling  # [B, kvh, rep, d], pre-scaled
        s_suffix = _capped(torch.matmul(q, k_suffix.transpose(-1, -2)).float(), softcap)
        m_suffix = s_suffix.amax(-1, keepdim=True)  # [B, kvh, rep, 1]
        if sinks is not None:
            sink = sinks.float().view(1, kvh, rep, 1)
            m_suffix = torch.maximum(m_suffix, sink)
        q_heads = q.permute(1, 0, 2, 3).reshape(kvh, batch * rep, d)  # head-major for the prefix GEMMs
        out = torch.empty((batch, kvh, rep, dv), dtype=torch.float32, device=query.device)
        for start, end, group in groups:
            p = self.prefix_len[group]
            first = 0 if sliding_window is None else max(0, p + t - sliding_window + 1)  # first prefix key in it
            b = end - start
            rows = slice(start, end)
            m = m_suffix[rows]  # becomes the row maximum over prefix, suffix (and sink)
            has_prefix = first < p  # empty for a one-token target prompt without BOS, or out of the window
            if has_prefix:
                k_prefix_t = self.prefix_kt[layer][group, :, :, first:p]  # [kvh, d, p - first]
                v_prefix = self.prefix_v[layer][group, :, first:p]  # [kvh, p - first, dv]
                s_prefix = _capped(torch.bmm(q_heads[:, start * rep : end * rep], k_prefix_t).float(), softcap)
                m_prefix = s_prefix.amax(-1, keepdim=True).view(kvh, b, rep, 1).permute(1, 0, 2, 3)
                m = torch.maximum(m_prefix, m)  # [b, kvh, rep, 1]
                e_prefix = s_prefix.sub_(m.permute(1, 0, 2, 3).reshape(kvh, b * rep, 1)).exp_()
            e_suffix = torch.exp(s_suffix[rows] - m)  # [b, kvh, rep, t+1-lo]
            o = torch.matmul(e_suffix.to(value.dtype), v_suffix[rows]).float()  # [b, kvh, rep, dv]
            total = e_suffix.sum(-1, keepdim=True)
            if has_prefix:
                o = o + torch.bmm(e_prefix.to(value.dtype), v_prefix).float().view(kvh, b, rep, dv).permute(1, 0, 2, 3)
                total = total + e_prefix.sum(-1).view(kvh, b, rep, 1).permute(1, 0, 2, 3)
            if sinks is not None:
                total = total + torch.exp(sink - m)
            torch.div(o, total, out=out[rows])
        return out.view(batch, 1, heads, dv).to(query.dtype)


def _runs(row_group: torch.Tensor) -> list[tuple[int, int, int]]:
    """(start, end, instance group) of each run of equal values in a sorted ``row_group``."""
    values, counts = torch.unique_consecutive(row_group.cpu(), return_counts=True)
    starts = torch.cumsum(counts, 0) - counts
    return [(int(s), int(s + c), int(g)) for s, c, g in zip(starts, counts, values)]


def _capped(scores: torch.Tensor, softcap: float | None) -> torch.Tensor:
    """Gemma 2's soft-capping of attention logits (identity without a cap)."""
    return scores if softcap is None else torch.tanh(scores / softcap) * softcap


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
                kv._record(layer, key, value)
            return _base_kernel(module, implementation)(
                module, query, key, value, attention_mask, scaling=scaling, dropout=dropout, **kwargs
            )
        scale = scaling if scaling is not None else query.shape[-1] ** -0.5
        out = kv.attend(
            layer, query, key, value, scale, kwargs.get("sliding_window"), kwargs.get("softcap"), kwargs.get("s_aux")
        )
        return out, None

    return shared_prefix_attention


def loadable_implementation(config) -> str:
    """``sdpa`` if the config's causal-LM class accepts it, else ``eager`` (Gemma 2, gpt-oss, BLOOM,
    XGLM and MPT refuse sdpa; asking for it blindly makes ``from_pretrained`` raise)."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING

    cls = MODEL_FOR_CAUSAL_LM_MAPPING.get(type(config), None)
    return "sdpa" if cls is None or getattr(cls, "_supports_sdpa", False) else "eager"


def implementation_name(base: str) -> str:
    """The registered name of the kernel over ``base`` (each needs its own mask function)."""
    if base not in BASE_IMPLEMENTATIONS:
        raise PipelineError(f"attention implementation '{base}' has no shared-prefix kernel; valid: sdpa, eager")
    return ATTN_IMPLEMENTATION if base == "sdpa" else f"{ATTN_IMPLEMENTATION}_{base}"


def mask_function(base: str):
    """The mask function transformers pairs with ``base`` (sdpa's boolean mask, eager's additive one)."""
    return sdpa_mask if base == "sdpa" else eager_mask


def register(base: str = "sdpa") -> str:
    """Registers the kernel over ``base`` and its mask function (idempotent); returns its name."""
    name = implementation_name(base)
    AttentionInterface.register(name, make_kernel(base))
    AttentionMaskInterface.register(name, mask_function(base))
    return name


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
    current = getattr(model.config, "_attn_implementation", None) or "sdpa"
    if current.startswith(ATTN_IMPLEMENTATION):
        return "eager" if current.endswith("_eager") else "sdpa"
    if current not in BASE_IMPLEMENTATIONS:
        raise PipelineError(
            f"model type {model.config.model_type}: attention implementation '{current}' has no shared-prefix "
            "kernel; load it with sdpa or eager"
        )
    return current


class KernelSteps:
    """Lockstep greedy steps of a chunk on the shared-prefix kernel (:class:`SharedPrefixKV`)."""

    def __init__(self, model: nn.Module, attn_modules, kv: SharedPrefixKV, group: torch.Tensor, steps: int):
        self.model, self.attn_modules, self.kv = model, attn_modules, kv
        kv.begin_chunk(group, steps)

    def logits(self, tokens: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        with bound(self.attn_modules, self.kv):
            out = self.model(input_ids=tokens[:, None], position_ids=positions[:, None], use_cache=False, logits_to_keep=1)
        return out.logits[:, -1].float()

    def advance(self) -> None:
        self.kv.advance()

    def keep(self, rows: torch.Tensor) -> None:
        self.kv.keep(rows)
