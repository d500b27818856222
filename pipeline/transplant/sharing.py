"""Shared lower layers: rows whose generated tokens agree compute their lower layers once.

A config (i, j) changes the model only from the output of target layer j at the last prompt token
onward (paper Sec. 2). So at the last prompt token layers 0..j-1 of every config row are vanilla's,
and at every later step layers 0..j of a row read only keys/values computed from tokens (the prefix,
the last prompt token's layer inputs, the tokens generated so far) that the transplant has not
reached. Two rows of one instance with the same generated history therefore hold identical states
in every layer below their *share depth*:

- vanilla: every layer (depth N);
- a transplant row at target layer j: layers 0..j-1 at the last prompt token (depth j), layers
  0..j at later steps (depth j + 1).

Per step the rows are grouped by (instance, generated history), on the host, from the tokens the
step loop already copied there (:func:`plan_segments`); no device work and no synchronisation.
The group's *owner* is its deepest row (the lowest index among equals), so one owner serves every
layer the group shares. A row that is not an owner computes layer k itself once k reaches its
depth; the rows computing a layer grow with k, so the layers split into *segments* of consecutive
layers run on the same rows. The forward's hidden state carries only a segment's rows from one
layer to the next; at a segment's first layer a pre-hook gathers the new segment's rows from the
previous one (a row that joins takes its owner's output), and after the last layer a post-hook
expands back to every row. The decoder layer itself is not re-implemented; the other batch-shaped
inputs of a layer (position embeddings, position ids) are gathered once per segment. The
shared-prefix kernel (``prefix.SharedPrefixKV``) writes each owner's key/value into the suffix
slot of every row that takes its output, so a group that splits later still reads its own history.

Exactness: the rows taken from an owner would have computed the same values themselves (up to the
last bits of a GEMM run at another batch size, as any batched decode); token ids match the
per-row path. A segment whose sharing would save fewer than ``min_saving`` of its rows runs all
rows.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field

import torch
from torch import nn

from pipeline.transplant.sites import Replacement


@dataclass
class Segment:
    """Layers ``first .. stop - 1`` of one step, run on the same rows.

    Attributes:
        rows: batch positions that run these layers (ascending).
        source: for every batch position, the index into ``rows`` of the row whose state it takes
            (itself when it runs the layers).
        take: device [len(rows)] index into the previous segment's rows (into the full batch for
            the first segment) that builds this segment's hidden state; None when unchanged.
        rows_index: device [len(rows)] ``rows``, to gather the layer's other batch inputs.
    """

    first: int
    stop: int
    rows: list[int]
    source: list[int]
    take: torch.Tensor | None = None
    rows_index: torch.Tensor | None = None
    _inputs: dict[int, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)

    @property
    def full(self) -> bool:
        return len(self.rows) == len(self.source)

    def select(self, value):
        """``value`` with this segment's rows of every batch-shaped tensor (once per tensor and step)."""
        if self.full:
            return value
        if isinstance(value, torch.Tensor):
            if not value.dim() or value.shape[0] != len(self.source):
                return value
            cached = self._inputs.get(id(value))
            if cached is None or cached[0] is not value:
                cached = self._inputs[id(value)] = (value, value.index_select(0, self.rows_index))
            return cached[1]
        if isinstance(value, tuple):
            return tuple(self.select(v) for v in value)
        if isinstance(value, list):
            return [self.select(v) for v in value]
        return value


def share_depth(target_layer: int | None, n_layers: int, t: int) -> int:
    """Layers a row shares with the rows of its history at step ``t`` (vanilla: all N)."""
    if target_layer is None:
        return n_layers
    return min(n_layers, target_layer + (t > 0))


def plan_segments(keys: Sequence[Hashable], depth: Sequence[int], n_layers: int, min_saving: float) -> list[Segment]:
    """The segments of one step for rows with sharing ``keys`` (instance, history) and ``depth``.

    One full segment when nothing is shared. A segment saving fewer than ``min_saving`` of the
    rows runs every row (its neighbours may still share).
    """
    batch = len(keys)
    owner: dict[Hashable, int] = {}
    for r, key in enumerate(keys):
        o = owner.get(key)
        if o is None or depth[r] > depth[o]:
            owner[key] = r
    owner_of = [owner[key] for key in keys]
    joins = sorted({depth[r] for r in range(batch) if owner_of[r] != r and 0 < depth[r] < n_layers})
    bounds = [0, *joins, n_layers]
    everyone = list(range(batch))
    segments: list[Segment] = []
    for first, stop in zip(bounds, bounds[1:]):
        rows = [r for r in range(batch) if owner_of[r] == r or depth[r] <= first]
        if batch - len(rows) < max(1, min_saving * batch):
            rows = everyone
        position = {r: m for m, r in enumerate(rows)}
        source = [position.get(r, position.get(owner_of[r])) for r in range(batch)]
        if segments and rows == segments[-1].rows:
            segments[-1].stop = stop
        else:
            segments.append(Segment(first, stop, rows, source))
    return segments


def layer_steps(segments: Sequence[Segment]) -> int:
    """Rows x layers run in one step."""
    return sum(len(s.rows) * (s.stop - s.first) for s in segments)


def transitions(segments: Sequence[Segment]) -> list[list[int] | None]:
    """Per segment, the index into the previous segment's rows (the batch, for the first) that
    builds its hidden state; None where the rows are the same."""
    out: list[list[int] | None] = []
    previous: Segment | None = None
    for s in segments:
        if previous is None:
            out.append(None if s.full else s.rows)
        else:
            out.append([previous.source[r] for r in s.rows])
        previous = s
    return out


def at_computed_rows(rep: Replacement, source: torch.Tensor) -> Replacement:
    """``rep`` with its rows as indices into the rows that run the layer (``source`` of its segment)."""
    return Replacement(rows=source[rep.rows], positions=rep.positions, vectors=rep.vectors)


class SharedLayers:
    """Hooks that run each step's segments (set with :meth:`set`) on the decoder ``layers``.

    Enter :meth:`applied` inside any ``sites.transplant`` block of the same forward: its post-hook
    must run after the transplant's (which index the rows a layer actually runs), its pre-hooks
    (prepended) before.
    """

    def __init__(self, layers: Sequence[nn.Module]):
        self.layers = layers
        self.segment_at: list[Segment] = []
        self.expand: torch.Tensor | None = None

    def set(self, segments: Sequence[Segment], expand: torch.Tensor | None) -> None:
        """This step's segments (device indices filled in) and the final expansion (None: all rows ran)."""
        self.segment_at = [s for s in segments for _ in range(s.first, s.stop)]
        self.expand = expand

    @contextmanager
    def applied(self) -> Iterator[None]:
        with ExitStack() as stack:
            for k, layer in enumerate(self.layers):
                handle = layer.register_forward_pre_hook(self._pre_hook(k), with_kwargs=True, prepend=True)
                stack.callback(handle.remove)
            handle = self.layers[-1].register_forward_hook(self._post_hook)
            stack.callback(handle.remove)
            yield

    def _pre_hook(self, k: int):
        def hook(_module, args, kwargs):
            segment = self.segment_at[k]
            if segment.full and segment.take is None:
                return None
            if args:
                hidden, args = args[0], args[1:]
            else:
                hidden = kwargs.pop("hidden_states")
            if k == segment.first and segment.take is not None:
                hidden = hidden.index_select(0, segment.take)
            args = segment.select(args)
            kwargs = {name: segment.select(value) for name, value in kwargs.items()}
            return (hidden, *args), kwargs

        return hook

    def _post_hook(self, _module, _args, output):
        if self.expand is None:
            return None
        computed = len(self.segment_at[-1].rows)
        return _take(output, self.expand, computed)


def _take(value, rows: torch.Tensor, batch: int):
    """``value`` with the ``rows`` of every tensor whose first dimension is ``batch`` (nested tuples too)."""
    if isinstance(value, torch.Tensor):
        return value.index_select(0, rows) if value.dim() and value.shape[0] == batch else value
    if isinstance(value, tuple):
        return tuple(_take(v, rows, batch) for v in value)
    if isinstance(value, list):
        return [_take(v, rows, batch) for v in value]
    return value
