"""Shared-prefix attention state: one copy of each instance's target prefix, a suffix per config row.

Causal attention makes every position before the last target prompt token identical in all N^2
configs and in vanilla (the transplant happens at the last prompt token). So the target prefix is
run once and its keys/values are kept once per instance (:meth:`SharedPrefixKV.record_prefix`,
during the prefill); each config row then carries only its own suffix (the last prompt token and
the tokens it generates).

A decode step attends for every row of a chunk in one batched computation, whatever the number of
instances in the chunk (:meth:`SharedPrefixKV.attend`): the queries go to their slots of a
[G groups, b rows] layout (``slots.SlotLayout``), one GEMM per (group, kv head) multiplies the b x
rep queries of a group with its one prefix, a second GEMM per slot multiplies its queries with its
own suffix, and both score blocks share one softmax. The masks (prefix lengths, sliding windows,
suffix slots not yet written) are additive biases built once per step and shared by every layer.
The step's index tensors (which query each slot takes, where each row's key/value goes, which slot
each row's output comes from) arrive with the step's one upload (:meth:`SharedPrefixKV.plan_step`),
so a step dispatches a fixed number of ops per layer and never waits on the device. The step's
arithmetic (float32 scores and softmax whatever the model dtype) is :mod:`.prefix_kernel`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from pipeline.transplant.host import upload
from pipeline.transplant.precision import Precision
from pipeline.transplant.prefix_kernel import scores, weighted_values
from pipeline.transplant.sharing import Segment
from pipeline.transplant.slots import SlotLayout


@dataclass
class _Indices:
    """One segment's kernel indices for a step (device tensors), over [G, width] slots."""

    width: int  # slots per group: the layout's, or fewer for a segment of shared layers
    queries: torch.Tensor  # [G, 1, width, 1] batch position of each slot's query
    zero: torch.Tensor  # [1, 1, 1, 1] zeros: the query's one position
    out_g: torch.Tensor  # [n] group of each computed row's slot
    out_m: torch.Tensor  # [n] its slot in the group
    source: torch.Tensor | None  # [B] computed-row index of each alive row's key/value; None: identity
    slots: torch.Tensor | None  # [G*kvh*width] each (slot, kv head)'s row in the layout's flat buffers; None: the same


@dataclass(frozen=True)
class _Views:
    """One layer's buffers as the kernel reads them (per layout): prefix K^T [G*kvh, d, P], prefix V
    [G*kvh, P, dv], suffix K [G*kvh*b, T, d] and K^T [G*kvh*b, d, T], suffix V [G*kvh*b, T, dv],
    and the suffix buffers as flat rows [G*kvh*b*T, d] / [.., dv] for the step's writes."""

    k_prefix: torch.Tensor
    v_prefix: torch.Tensor
    k_slots: torch.Tensor
    k_suffix: torch.Tensor
    v_suffix: torch.Tensor
    k_rows: torch.Tensor
    v_rows: torch.Tensor


@dataclass(frozen=True)
class _Heads:
    """Head indices of a layer shape: ``kv`` [1, kvh, 1]; ``query`` [1, kvh, 1, rep] (query head of each)."""

    kv: torch.Tensor
    query: torch.Tensor


class SharedPrefixKV:
    """Keys/values of a batch of instances: one shared prefix per instance, a suffix per row.

    Lifecycle: :meth:`record_prefix` (during the prefill forward), then per chunk of config rows
    :meth:`begin_chunk`, and per step :meth:`plan_step` followed by one forward (each layer calls
    :meth:`attend` once).

    Shapes (G instances of the batch, kvh kv heads, d / dv key / value head dims):
    ``prefix_kt[layer]`` [G, kvh, d, P_max] (keys stored transposed, so both operands of the score
    GEMM are row-major) and ``prefix_v[layer]`` [G, kvh, P_max, dv]; per chunk, in its slot layout
    [Gc groups, b slots], ``suffix_k[layer]`` [Gc, kvh, b, T, d] and ``suffix_v[layer]``
    [Gc, kvh, b, T, dv] (T = max_new_tokens), zero-initialised and written in place.

    Args:
        n_layers: decoder layers.
        device: the model's device.
        precision: :func:`precision_for` the model's dtype.
        dead_share: the suffix buffers are compacted when more than this share of their slots
            belong to finished rows or padding (0: whenever a row finishes).
        shared_attention: at a shared layer, ``rows`` attends for the rows that run it only (their
            suffix slots gathered: fewer FLOPs, a few more ops), ``slots`` for every slot (a row that
            shares reads its owner's query; no gather).
    """

    def __init__(self, n_layers: int, device: torch.device, precision: Precision, dead_share: float = 0.0,
                 shared_attention: str = "rows"):  # fmt: skip
        self.n_layers = n_layers
        self.device = device
        self.precision = precision
        self.dead_share = dead_share
        self.shared_attention = shared_attention
        self.recording = False
        self.prefix_len: list[int] = []
        self.prefix_kt: list[torch.Tensor | None] = [None] * n_layers
        self.prefix_v: list[torch.Tensor | None] = [None] * n_layers
        self._rows = self._slots = torch.empty(0, dtype=torch.long)
        self._piece_width = 0
        self._shape = (0, 0)
        self._head_index: dict[tuple[int, int], _Heads] = {}
        self.kv_heads: dict[int, int] = {}  # layer -> kv heads, seen by the prefill

    # -- prefill -----------------------------------------------------------------------------
    def record_prefix(self, rows: Sequence[int], slots: Sequence[int], lengths: Sequence[int], n_groups: int,
                      width: int) -> None:  # fmt: skip
        """Arms recording: the next forward stores keys/values of its batch ``rows`` as instance groups ``slots``.

        A prefill may take several forwards (pieces of similar length); each records its own
        prefixes into buffers of ``n_groups`` instances and ``width`` positions (the batch's
        longest prefix), allocated by the first one. ``rows`` may be empty (a piece holding only
        source prompts).
        """
        self.recording = True
        self._rows, self._slots = upload([rows, slots], self.device)
        self._piece_width = max(lengths, default=0)
        self._shape = (n_groups, width)
        if len(self.prefix_len) != n_groups:
            self.prefix_len = [0] * n_groups
        for slot, length in zip(slots, lengths):
            self.prefix_len[slot] = length

    def record(self, layer: int, key: torch.Tensor, value: torch.Tensor) -> None:
        """Stores the prefix rows of one prefill forward's keys [B, kvh, L, d] / values [B, kvh, L, dv]."""
        n_groups, width = self._shape
        kvh, d, dv = key.shape[1], key.shape[-1], value.shape[-1]  # dv < d for MLA (DeepSeek V2/V3)
        self.kv_heads[layer] = kvh
        dtype = self.precision.storage
        if self.prefix_kt[layer] is None:  # positions past an instance's length are never read
            self.prefix_kt[layer] = key.new_zeros((n_groups, kvh, d, width), dtype=dtype)
            self.prefix_v[layer] = value.new_zeros((n_groups, kvh, width, dv), dtype=dtype)
        if len(self._rows):
            p = self._piece_width
            keys = key.index_select(0, self._rows).narrow(2, 0, p).transpose(2, 3)
            values = value.index_select(0, self._rows).narrow(2, 0, p)
            self.prefix_kt[layer].narrow(3, 0, p).index_copy_(0, self._slots, keys.to(dtype))
            self.prefix_v[layer].narrow(2, 0, p).index_copy_(0, self._slots, values.to(dtype))

    def stop_recording(self) -> None:
        self.recording = False

    # -- chunks of config rows ---------------------------------------------------------------
    def begin_chunk(self, group_of: Sequence[int], steps: int) -> None:
        """Starts a chunk whose rows belong to instance groups ``group_of`` (ascending)."""
        self.group_of = list(group_of)
        self.steps = steps
        self.layout: SlotLayout | None = None
        self.suffix_k: list[torch.Tensor | None] = [None] * self.n_layers
        self.suffix_v: list[torch.Tensor | None] = [None] * self.n_layers
        self._views: dict[int, _Views] = {}
        self._layout_cache: dict = {}

    def plan_step(self, t: int, rows: Sequence[int], segments: Sequence[Segment], arrays: list):
        """Adds step ``t``'s index arrays to ``arrays`` (the step's upload); returns the function
        that takes the uploaded tensors (in the same order) before the forward.

        ``rows`` are the alive chunk rows in batch order, ``segments`` the step's layer segments
        (one full segment when nothing is shared).
        """
        old = self.layout
        kvh = self._kv_heads()
        if old is None or (kvh is not None and len(rows) < len(old.slot_of) and old.dead_share(len(rows)) > self.dead_share):
            self.layout = SlotLayout.of(rows, self.group_of)
        layout = self.layout
        start = len(arrays)
        relayout = old is not None and layout is not old
        if relayout:
            arrays.append(layout.gather_from(old, kvh))
        if layout is not old:
            arrays.append([self.prefix_len[layout.first_group + g] for g in range(layout.groups)])
        arrays.extend(layout.coordinates(rows))
        subsets = []
        for segment in segments:
            computed = [rows[r] for r in segment.rows]
            if segment.full or self.shared_attention == "slots" or kvh is None:
                subsets.append(None)  # every slot attends; a sharing row's slot reads its owner's query
                arrays.append(layout.queries(rows, segment.source))
                arrays.extend(layout.coordinates(computed))
            else:  # the computed rows' slots only, their suffix gathered from the layout's buffers
                subset = layout.subset(computed)
                subsets.append(subset)
                arrays.extend([subset.queries, subset.g, subset.m, subset.source_m])
            if not segment.full:
                arrays.append(segment.source)

        def receive(tensors: Sequence[torch.Tensor]) -> None:
            it = iter(tensors[start:])
            G, b = layout.groups, layout.width
            if relayout:
                self._relayout(next(it))
            if layout is not old:
                self._views, self._layout_cache = {}, {}
                self._prefix_len = next(it)  # [G] on the device
                self._zero = torch.zeros((1, 1, 1, 1), dtype=torch.long, device=self.device)
            self._write_g, self._write_m = next(it), next(it)
            self.t = t
            self._step_cache: dict = {}
            indices = []
            for segment, subset in zip(segments, subsets):
                width = b if subset is None else subset.width
                queries = next(it).view(G, 1, width, 1)
                out_g, out_m = next(it), next(it)
                slots = None if subset is None else self._slot_rows(next(it).view(G, 1, width), kvh)
                source = None if segment.full else next(it)
                indices.append(_Indices(width, queries, self._zero, out_g, out_m, source, slots))
            self.segment_at = [ix for s, ix in zip(segments, indices) for _ in range(s.first, s.stop)]

        return receive

    def _slot_rows(self, source_m: torch.Tensor, kvh: int) -> torch.Tensor:
        """[G*kvh*w] the row, in the layout's flat buffers [G*kvh*b, ...], of each (group, kv head,
        slot m) whose layout slot is ``source_m`` [G, 1, w]."""
        base = self._layout_cache.get("slot_base")
        if base is None:  # [G, kvh, 1]: the row of slot 0 of (g, kv)
            G, b = self.layout.groups, self.layout.width
            base = self._layout_cache["slot_base"] = torch.arange(G * kvh, device=self.device).view(G, kvh, 1) * b
        return (base + source_m).view(-1)

    def _kv_heads(self) -> int | None:
        """The layers' kv heads when they all have the same number (host-side flat indices), else None."""
        heads = set(self.kv_heads.values())
        return heads.pop() if len(heads) == 1 else None

    def _relayout(self, rows: torch.Tensor) -> None:
        """Moves every layer's suffix slots to the new layout: one row gather per buffer."""
        layout = self.layout
        for layer in range(self.n_layers):
            if self.suffix_k[layer] is None:
                continue
            for buffers in (self.suffix_k, self.suffix_v):
                old = buffers[layer]
                _, kvh, b, T, d = old.shape
                buffers[layer] = old.view(-1, T, d).index_select(0, rows).view(layout.groups, kvh, layout.width, T, d)

    def _heads(self, kvh: int, rep: int) -> _Heads:
        """The head indices of a layer with ``kvh`` kv heads of ``rep`` query heads each (cached)."""
        cached = self._head_index.get((kvh, rep))
        if cached is None:
            kv = torch.arange(kvh, device=self.device)
            query = (kv[:, None] * rep + torch.arange(rep, device=self.device))[None, :, None, :]  # [1, kvh, 1, rep]
            cached = self._head_index[(kvh, rep)] = _Heads(kv=kv[None, :, None], query=query)
        return cached

    # -- the kernel --------------------------------------------------------------------------
    def _layer_views(self, layer: int, key: torch.Tensor, value: torch.Tensor) -> _Views:
        """The views of ``layer``'s prefix and suffix in the current layout (allocating the suffix)."""
        views = self._views.get(layer)
        if views is not None:
            return views
        layout = self.layout
        G, b, T = layout.groups, layout.width, self.steps
        kvh, d, dv = key.shape[1], key.shape[-1], value.shape[-1]
        if self.suffix_k[layer] is None:  # slots are read only once written (the suffix is narrowed to t + 1)
            self.suffix_k[layer] = key.new_empty((G, kvh, b, T, d), dtype=self.precision.storage)
            self.suffix_v[layer] = value.new_empty((G, kvh, b, T, dv), dtype=self.precision.storage)
        lo = layout.first_group
        width = max(self.prefix_len[lo : lo + G])  # the layout's longest prefix, not the batch's
        views = self._views[layer] = _Views(
            k_prefix=self.prefix_kt[layer][lo : lo + G, :, :, :width].view(G * kvh, d, width),
            v_prefix=self.prefix_v[layer][lo : lo + G, :, :width].view(G * kvh, width, dv),
            k_slots=self.suffix_k[layer].view(G * kvh * b, T, d),
            k_suffix=self.suffix_k[layer].view(G * kvh * b, T, d).transpose(1, 2),
            v_suffix=self.suffix_v[layer].view(G * kvh * b, T, dv),
            k_rows=self.suffix_k[layer].view(G * kvh * b * T, d),
            v_rows=self.suffix_v[layer].view(G * kvh * b * T, dv),
        )
        return views

    def _write_rows(self, kvh: int) -> torch.Tensor:
        """[n * kvh] the row of each alive row's (and kv head's) step-t slot in the flat suffix buffers."""
        key = ("write", kvh)
        rows = self._step_cache.get(key)
        if rows is None:
            base = self._layout_cache.get(key)
            if base is None:  # [G, kvh, b]: the flat row of slot (g, kv, m) at step 0
                G, b, T = self.layout.groups, self.layout.width, self.steps
                base = self._layout_cache[key] = torch.arange(G * kvh * b, device=self.device).view(G, kvh, b) * T
            rows = self._step_cache[key] = (base[self._write_g, :, self._write_m] + self.t).view(-1)
        return rows

    def _prefix_bias(self, kvh: int, width: int, window: int | None) -> torch.Tensor:
        """[G*kvh, 1, P] float32: 0 where a prefix key may be read, -inf elsewhere (past the group's
        prefix; before a sliding window's start)."""
        key = ("prefix", kvh)
        bias = self._layout_cache.get(key)
        if bias is None:
            G = self.layout.groups
            valid = torch.arange(width, device=self.device) < self._prefix_len[:, None]  # [G, P]
            bias = torch.zeros(valid.shape, device=self.device).masked_fill_(~valid, float("-inf"))
            bias = self._layout_cache[key] = bias[:, None, None].expand(G, kvh, 1, width).reshape(G * kvh, 1, width)
        if window is None:
            return bias
        step_key = ("window", kvh, window)
        windowed = self._step_cache.get(step_key)
        if windowed is None:  # keys at positions in (q - W, q]: prefix position >= P_g + t - W + 1
            G = self.layout.groups
            start = (self._prefix_len + (self.t - window + 1))[:, None, None].expand(G, kvh, 1).reshape(G * kvh, 1, 1)
            windowed = self._step_cache[step_key] = bias.masked_fill(torch.arange(width, device=self.device) < start,
                                                                      float("-inf"))  # fmt: skip
        return windowed

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
        """Attention of one new token per computed row over its instance's prefix and its own suffix.

        One softmax over both score blocks side by side: the prefix block (a slot against its
        group's prefix, masked by an additive bias) and the suffix block (against its own slots
        0..t). A sliding-window layer (Mistral, Gemma 2/3's local layers, gpt-oss) reads keys at
        positions in (q - W, q] as transformers' mask does: rows decode in lockstep, so at step t
        the window starts at suffix slot t - W + 1 and at prefix position P + t - W + 1.

        Args:
            query: [n, h, 1, d]; key: [n, kvh, 1, d]; value: [n, kvh, 1, dv] of the n rows that run
                this layer (after positions and any q/k norm; dv may be smaller than d).
            scaling: the score scale the attention module passes (head_dim ** -0.5 for LLaMA,
                query_pre_attn_scalar ** -0.5 for Gemma).
            sliding_window: W of a sliding-window layer, None for global attention.
            softcap: Gemma 2's logit soft-capping, scores -> softcap * tanh(scores / softcap).
            sinks: [h] gpt-oss's per-head sink logits: a column in the softmax's denominator
                that attends to no value.

        Returns:
            [n, 1, h, dv], the layout transformers' attention modules expect.
        """
        index = self.segment_at[layer]
        n, heads, _, d = query.shape
        kvh, dv = key.shape[1], value.shape[-1]
        rep = heads // kvh
        G, b, t = self.layout.groups, index.width, self.t
        views = self._layer_views(layer, key, value)
        P = views.k_prefix.shape[-1]
        extra = {"out_dtype": torch.float32} if self.precision.out_dtype else {}
        heads_kv = self._heads(kvh, rep)
        dtype = query.dtype  # the model's: the output goes back to it
        query = self._store(views, index, key, value, query)
        lo = 0 if sliding_window is None else max(0, t - sliding_window + 1)  # the suffix slots read: lo..t
        span = t + 1 - lo
        k_suffix, v_suffix = self._suffix(views, index, lo, span)
        q = query[index.queries, heads_kv.query, index.zero].mul_(scaling)  # [G, kvh, b, rep, d]
        q_groups, q_slots = q.view(G * kvh, b * rep, d), q.view(G * kvh * b, rep, d)
        bias = self._prefix_bias(kvh, P, sliding_window)
        s_prefix, s_suffix = scores(q_groups, q_slots, views.k_prefix, k_suffix, bias, softcap, extra)
        blocks = [s_prefix, s_suffix.view(G * kvh, b * rep, span)]
        if sinks is not None:
            blocks.append(self._sink_column(layer, sinks, kvh, rep, b))
        out = weighted_values(blocks, views.v_prefix, v_suffix, self.precision.storage, extra)
        out = out.view(G, kvh, b, rep * dv)[index.out_g, :, index.out_m]  # [n, kvh, rep * dv]
        out = out.view(n, 1, heads, dv)
        return out if out.dtype == dtype else out.to(dtype)

    def _store(self, views: _Views, index, key: torch.Tensor, value: torch.Tensor, query: torch.Tensor) -> torch.Tensor:
        """Writes the step's keys and values into the computed rows' suffix slots (every alive row
        stores those of the row it shares with); returns the query in the storage dtype."""
        kvh, d, dv = key.shape[1], key.shape[-1], value.shape[-1]
        if index.source is not None:
            key, value = key.index_select(0, index.source), value.index_select(0, index.source)
        storage = self.precision.storage
        if key.dtype != storage:
            key, value, query = key.to(storage), value.to(storage), query.to(storage)
        rows = self._write_rows(kvh)
        views.k_rows.index_copy_(0, rows, key.reshape(-1, d))
        views.v_rows.index_copy_(0, rows, value.reshape(-1, dv))
        return query

    @staticmethod
    def _suffix(views: _Views, index, lo: int, span: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The suffix keys [.., d, span] and values [.., span, dv] a step reads: slots lo..t of every
        slot, or of the computed rows' slots only (gathered) when some rows of the chunk are dead."""
        if index.slots is None:
            return views.k_suffix.narrow(-1, lo, span), views.v_suffix.narrow(1, lo, span)
        k_suffix = views.k_slots.narrow(1, lo, span).index_select(0, index.slots).transpose(1, 2)
        return k_suffix, views.v_suffix.narrow(1, lo, span).index_select(0, index.slots)

    def _sink_column(self, layer: int, sinks: torch.Tensor, kvh: int, rep: int, b: int) -> torch.Tensor:
        """[G*kvh, b*rep, 1] float32: gpt-oss's sink logit of each query's head (per layout and width)."""
        key = ("sink", layer, b)
        column = self._layout_cache.get(key)
        if column is None:
            G = self.layout.groups
            column = sinks.float().view(1, kvh, 1, rep, 1).expand(G, kvh, b, rep, 1).reshape(G * kvh, b * rep, 1)
            self._layout_cache[key] = column
        return column

