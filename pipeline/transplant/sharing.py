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

Per step, :class:`SharedLayers` groups the chunk's rows by (instance, generated history); for each
group one *owner* row (the deepest one, so one owner serves every layer the group shares) runs a
shared layer and every member takes its output. Layer k then runs on the rows that do not share
it plus one owner per group (:class:`LayerShare`). The decoder layer itself is not re-implemented:
a pre-hook selects the rows of every batch-shaped tensor the layer receives (hidden states,
position embeddings, position ids, masks) and a post-hook copies the owners' outputs back to the
full batch; the shared-prefix kernel (``attention.SharedPrefixKV``) writes the owner's key/value
into each member's suffix slot, so a group that splits later still reads its own history.

Exactness: the rows taken from an owner would have computed the same values themselves (up to the
last bits of a GEMM run at another batch size, as any batched decode); token ids match the
per-row path. A layer whose sharing would save fewer than ``min_saving`` of its rows runs all rows
(the gather/scatter would cost more than the rows it saves; ``docs/performance.md``).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass

import torch
from torch import nn

from pipeline.transplant.sites import Replacement


@dataclass(frozen=True)
class LayerShare:
    """Rows of one layer at one step.

    Attributes:
        compute: [b] chunk rows that run the layer (ascending, so still grouped by instance).
        expand: [B] for every chunk row, the index in ``compute`` of the row whose output it takes
            (itself when it does not share the layer).
    """

    compute: torch.Tensor
    expand: torch.Tensor


def share_depths(target_layers: Sequence[int | None], n_layers: int) -> torch.Tensor:
    """[B] depth of a chunk's rows at the last prompt token: j for a transplant row, N for vanilla (None).

    At every later step a transplant row's target layer itself is shared too (depth j + 1, at most
    N), vanilla's stays N: :meth:`SharedLayers.step`.
    """
    return torch.tensor([n_layers if j is None else j for j in target_layers], dtype=torch.long)


def history_groups(instances: torch.Tensor, history: torch.Tensor) -> torch.Tensor:
    """[B] group id of each row: rows with equal instance and equal generated tokens (history [B, t])."""
    keys = torch.cat([instances[:, None], history], dim=1)
    return torch.unique(keys, dim=0, return_inverse=True)[1]


def plan_layers(groups: torch.Tensor, depth: torch.Tensor, n_layers: int, min_saving: float) -> list[LayerShare | None]:
    """Per layer, which rows run it (None: all rows; sharing there would save too little).

    The owner of a group is its deepest row (lowest index among equals): every row that shares
    layer k has depth > k, so the owner shares it too.
    """
    batch = len(groups)
    rows = torch.arange(batch, device=groups.device)
    n_groups = int(groups.max()) + 1 if batch else 0
    # deepest row per group, lowest index among equals: maximise depth * B - row
    score = depth * batch - rows
    best = torch.full((n_groups,), -1, dtype=torch.long, device=groups.device).scatter_reduce(
        0, groups, score, reduce="amax"
    )
    owner_of_row = torch.remainder(-best[groups], batch)  # the row index back from its score
    plan: list[LayerShare | None] = []
    for k in range(n_layers):
        owner = torch.where(depth > k, owner_of_row, rows)
        compute = torch.unique(owner)  # sorted
        saved = batch - len(compute)
        if saved == 0 or saved < min_saving * batch:
            plan.append(None)
            continue
        plan.append(LayerShare(compute=compute, expand=torch.searchsorted(compute, owner)))
    return plan


def at_computed_rows(rep: Replacement, share: LayerShare | None) -> Replacement:
    """``rep`` with its rows as indices into the rows that run the layer (``share.compute``)."""
    if share is None:
        return rep
    return Replacement(rows=share.expand[rep.rows], positions=rep.positions, vectors=rep.vectors)


def layer_steps(plan: Sequence[LayerShare | None], batch: int) -> int:
    """Rows x layers run in one step under ``plan``."""
    return sum(batch if share is None else len(share.compute) for share in plan)


class SharedLayers:
    """The sharing state of one chunk: depths, the per-step plan and the hooks that apply it."""

    def __init__(self, layers: Sequence[nn.Module], target_layers: Sequence[int | None], min_saving: float,
                 device: torch.device):  # fmt: skip
        self.layers = layers
        self.min_saving = min_saving
        self.depth = share_depths(target_layers, len(layers)).to(device)  # at the last prompt token
        self.plan: list[LayerShare | None] = [None] * len(layers)

    def keep(self, rows: torch.Tensor) -> None:
        """Keeps only ``rows`` of the chunk (the ones still generating), in order."""
        self.depth = self.depth.index_select(0, rows)

    def step(self, t: int, instances: torch.Tensor, history: torch.Tensor) -> list[LayerShare | None]:
        """Plans step ``t`` for rows of ``instances`` [B] that generated ``history`` [B, t]."""
        n_layers = len(self.layers)
        depth = self.depth if t == 0 else self.depth + (self.depth < n_layers)  # later: j + 1; vanilla stays N
        self.plan = plan_layers(history_groups(instances, history), depth, n_layers, self.min_saving)
        return self.plan

    @contextmanager
    def applied(self) -> Iterator[None]:
        """Hooks that run each shared layer on its rows only, for the forwards inside the block.

        Enter it inside any ``sites.transplant`` block: its post-hooks must run after the
        transplant's (which index the rows a layer actually runs), its pre-hooks (prepended)
        before.
        """
        with ExitStack() as stack:
            for layer, share in zip(self.layers, self.plan):
                if share is None:
                    continue
                batch = len(share.expand)
                pre = layer.register_forward_pre_hook(_select(share.compute, batch), with_kwargs=True, prepend=True)
                stack.callback(pre.remove)
                post = layer.register_forward_hook(_expand(share.expand, len(share.compute)))
                stack.callback(post.remove)
            yield


def _take(value, rows: torch.Tensor, batch: int):
    """``value`` with the ``rows`` of every tensor whose first dimension is the batch (nested tuples too)."""
    if isinstance(value, torch.Tensor):
        return value.index_select(0, rows) if value.dim() and value.shape[0] == batch else value
    if isinstance(value, tuple):
        return tuple(_take(v, rows, batch) for v in value)
    if isinstance(value, list):
        return [_take(v, rows, batch) for v in value]
    return value


def _select(compute: torch.Tensor, batch: int):
    def pre_hook(_module, args, kwargs):
        return _take(args, compute, batch), {k: _take(v, compute, batch) for k, v in kwargs.items()}

    return pre_hook


def _expand(expand: torch.Tensor, computed: int):
    def hook(_module, _args, output):
        return _take(output, expand, computed)

    return hook
