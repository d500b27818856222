"""The cache route: config rows decode on the model's own attention and its own cache.

For families the shared-prefix kernel cannot reach (their attention does not go through
transformers' ``AttentionInterface``: BLOOM's ALiBi, Falcon, XGLM, MPT) and for hybrid layers
whose state is not keys and values (LFM2's short convolutions, Qwen3-Next's linear attention),
see :mod:`pipeline.models.layouts`. Each instance's target prefix is run once, at batch 1, with the model's own
cache; a chunk of that instance's config rows starts from copies of it (``Cache.reorder_cache``,
the beam-search primitive, repeats the single row), and every step is the model's own cached
forward. Nothing is padded (a chunk holds one instance's rows), so positions, ALiBi biases and
convolution states are exactly what ``generate()`` computes; the cost is one copy of the prefix
state per row instead of one per instance.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from torch import nn

from pipeline.transplant.host import upload


def prefix_cache(decoder: nn.Module, prefix: list[int], device: torch.device):
    """The model's own cache after reading ``prefix`` (batch 1), or None for an empty prefix."""
    if not prefix:
        return None
    ids = upload([prefix], device)[0][None, :]
    out = decoder(input_ids=ids, use_cache=True)
    return out.cache


class CacheSteps:
    """Lockstep greedy steps of one instance's rows on the model's own cache.

    Args:
        model: the causal LM.
        cache: the instance's prefix cache (batch 1; left untouched), or None.
        n_rows: rows of the chunk.
        prefix_len: P, the prefix length (the last prompt token sits at position P).
    """

    def __init__(self, model: nn.Module, cache, n_rows: int, prefix_len: int):
        self.model = model
        self.prefix_len = prefix_len
        self.rows: list[int] = list(range(n_rows))
        self.cache = None
        self.t = 0
        if cache is not None:
            self.cache = copy.deepcopy(cache)
            self.cache.reorder_cache(torch.zeros(n_rows, dtype=torch.long, device=next(model.parameters()).device))

    def plan(self, t: int, rows: Sequence[int], _segments, arrays: list):
        """Adds the rows to keep (when some finished) to the step's upload; returns its receiver."""
        self.t = t
        if len(rows) == len(self.rows):
            return lambda _tensors: None
        position = {r: k for k, r in enumerate(self.rows)}
        arrays.append([position[r] for r in rows])
        self.rows = list(rows)
        at = len(arrays) - 1

        def receive(tensors):
            if self.cache is not None:
                self.cache.reorder_cache(tensors[at])

        return receive

    def logits(self, tokens: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """[B, V] float32 next-token logits after feeding ``tokens`` [B] (positions follow the cache).

        No attention mask: nothing is padded, and a mask of ones would make transformers check
        it on the host at every step (a synchronisation).
        """
        out = self.model(input_ids=tokens[:, None], cache=self.cache, use_cache=True, logits_to_keep=1)
        self.cache = out.cache
        return out.logits[:, -1].float()
