"""The arithmetic of one shared-prefix attention step, on tensors already laid out in slots.

:class:`~pipeline.transplant.prefix.SharedPrefixKV` keeps the buffers and plans the indices; these
two functions are the step's math: scores against the group's one prefix and each slot's own
suffix, then one softmax over both blocks side by side and the probability-weighted values. The
scores, the softmax and its sums are float32 whatever the model dtype (:mod:`.precision`); ``extra``
carries ``out_dtype=float32`` where the GEMMs can accumulate into it.
"""

from __future__ import annotations

import torch


def scores(q_groups, q_slots, k_prefix, k_suffix, bias, softcap: float | None, extra: dict):
    """Scores of a step against the group's prefix [G*kvh, b*rep, P] (masked by ``bias``) and each
    slot's own suffix [G*kvh*b, rep, span]; Gemma 2's soft-capping first where it applies (tanh
    would turn a -inf mask into -softcap)."""
    if softcap is None:
        s_prefix = torch.baddbmm(bias, q_groups, k_prefix, **extra)
    else:
        s_prefix = torch.bmm(q_groups, k_prefix, **extra).div_(softcap).tanh_().mul_(softcap).add_(bias)
    s_suffix = torch.bmm(q_slots, k_suffix, **extra)
    if softcap is not None:
        s_suffix = s_suffix.div_(softcap).tanh_().mul_(softcap)
    return s_prefix, s_suffix


def weighted_values(blocks: list[torch.Tensor], v_prefix, v_suffix, storage: torch.dtype, extra: dict) -> torch.Tensor:
    """One softmax over the score ``blocks`` side by side, then the probability-weighted values.

    Args:
        blocks: prefix scores [G*kvh, b*rep, P], suffix scores [G*kvh, b*rep, span], and gpt-oss's
            sink column [G*kvh, b*rep, 1] where the model has sinks (it attends to no value).
        v_prefix: [G*kvh, P, dv], the group's prefix values; v_suffix: [G*kvh*b, span, dv], each slot's.
        storage: the dtype the values are kept in; the probabilities are cast to it for the GEMMs.

    Returns:
        [G*kvh, b*rep, dv]: float32 with ``out_dtype`` in ``extra``, else ``storage``.
    """
    probs = torch.softmax(torch.cat(blocks, -1), -1)  # [G*kvh, b*rep, P + span (+1)] float32
    if probs.dtype != storage:
        probs = probs.to(storage)
    width, span, dv = v_prefix.shape[1], v_suffix.shape[1], v_suffix.shape[-1]
    e_prefix, e_suffix, *_sink = probs.split([width, span] + [1] * (len(blocks) - 2), -1)
    out = torch.bmm(e_suffix.view(v_suffix.shape[0], -1, span), v_suffix, **extra)
    return torch.baddbmm(out.view(*e_prefix.shape[:2], dv), e_prefix, v_prefix, **extra)
