"""Padding and grouping of the prefill's sequences (source prompts and target prefixes).

The prefill runs every source prompt and target prefix of an instance batch through the decoder
once (``TransplantEngine._prefill``); these helpers decide how they are padded and which of them
share a forward, so that padding never dominates the work.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def right_pad(seqs: Sequence[list[int]], pad: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Token id lists as one right-padded batch: (ids [B, W], attention mask [B, W]).

    ``pad`` None repeats each row's last token instead of a pad id: the engine's prefill runs
    without a mask (a causal position never reads a later one), and a batch with no pad id in it
    gives transformers nothing to warn about.
    """
    width = max(len(s) for s in seqs)
    rows = [seq + [seq[-1] if pad is None else pad] * (width - len(seq)) for seq in seqs]
    ids = torch.tensor(rows, dtype=torch.long)
    mask = torch.tensor([[1] * len(seq) + [0] * (width - len(seq)) for seq in seqs], dtype=torch.long)
    return ids, mask


def prefill_pieces(lengths: Sequence[int], slack: float) -> list[list[int]]:
    """Sequences of a prefill grouped into forwards that waste at most ``slack`` on padding.

    Non-empty sequences in ascending length order are cut into consecutive pieces; a piece grows
    while (its longest length x its size) <= (1 + slack) x its real tokens. Similar lengths share
    one forward (as many rows as possible per GEMM); a long context gets its own. Empty sequences
    (the prefix of a one-token target prompt) need no forward.
    """
    order = sorted((r for r, length in enumerate(lengths) if length > 0), key=lambda r: lengths[r])
    pieces: list[list[int]] = []
    piece: list[int] = []
    real = 0
    for r in order:
        if piece and lengths[r] * (len(piece) + 1) > (1 + slack) * (real + lengths[r]):
            pieces.append(piece)
            piece, real = [], 0
        piece.append(r)
        real += lengths[r]
    return [*pieces, piece] if piece else pieces
