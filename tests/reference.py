"""The naive per-config XTransplant, written independently of the engine (tests only).

One batch-1 forward of the source prompt with a hook that records the module output of the source
layer at the last token; then one HF ``generate()`` of the target prompt with a hook that, on the
prompt pass only, replaces the same module's output of the target layer at the last prompt token.
This is the authors' method (without their per-config model reload).

``attn_released`` follows the authors' released attention wrapper as described in issue 9: the
source vector is decoder layer i's input hidden state plus its self-attention output at the last
source token (a forward pre-hook on the layer grabs the input, a forward hook on ``self_attn`` the
output, and they are added here); on the target side it overwrites ``self_attn``'s output of layer
j at the last prompt token, like ``attn``.

Decoding: ``checkpoint=True`` is what the authors' ``generate(do_sample=False)`` does (the model's
``generation_config`` with its greedy processors, sampling off); ``checkpoint=False`` blanks the
model's generation config for the call, so ``generate`` is pure greedy argmax.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from transformers import GenerationConfig


# The reference's own site lookup (deliberately not the engine's table, pipeline/models/layouts.py):
# the first of the common names that exists, then a per-family exception or two.
LAYER_PATHS = ("model.layers", "model.decoder.layers", "transformer.h", "transformer.blocks", "gpt_neox.layers")
ATTN_NAMES = ("self_attn", "self_attention", "attention", "attn")
FFN_NAMES = ("mlp", "block_sparse_moe", "feed_forward", "ffn", "fc2")


def _path(root, dotted):
    for part in dotted.split("."):
        root = getattr(root, part, None)
    return root


def layers_of(model):
    return next(layers for p in LAYER_PATHS if (layers := _path(model, p)) is not None)


def module_of(model, granularity: str, layer: int):
    block = layers_of(model)[layer]
    if granularity == "block":
        return block
    names = FFN_NAMES if granularity == "ffn" else ATTN_NAMES
    return next(getattr(block, n) for n in names if isinstance(getattr(block, n, None), torch.nn.Module))


def _source_vector(model, src, granularity: str, layer: int) -> torch.Tensor:
    """[H] the source vector at the last source token, from one batch-1 forward."""
    seen = {}

    def grab(_m, _a, out):
        seen["out"] = _tensor(out).reshape(-1, _tensor(out).shape[-1])[-1].clone()  # batch 1: last token

    def grab_input(_m, args, kwargs):
        hidden = args[0] if args else kwargs["hidden_states"]
        seen["in"] = hidden[0, -1].clone()

    handles = [module_of(model, granularity, layer).register_forward_hook(grab)]
    if granularity == "attn_released":
        handles.append(layers_of(model)[layer].register_forward_pre_hook(grab_input, with_kwargs=True))
    try:
        model(src, logits_to_keep=1)  # the hooks need no logits (262k-vocabulary models: most of the cost)
    finally:
        for h in handles:
            h.remove()
    return seen["in"] + seen["out"] if granularity == "attn_released" else seen["out"]


def _tensor(output):
    return output[0] if isinstance(output, tuple) else output


@dataclass
class RefResult:
    token_ids: list[int]
    margins: list[float]  # top-1 minus top-2 processed score at each step
    tops: list[float]  # the top-1 processed score at each step
    logprob_sum: float
    entropy_first: float
    entropy_mean: float


@torch.inference_mode()
def reference_generate(model, tokenizer, target: str, source: str | None, granularity: str | None,
                       source_layer: int | None, target_layer: int | None, max_new_tokens: int,
                       eos_token_ids: list[int], checkpoint: bool = False) -> RefResult:
    handles = []
    saved_config = model.generation_config
    try:
        if granularity is not None:
            src = tokenizer(source, return_tensors="pt").input_ids
            seen = {"v": _source_vector(model, src, granularity, source_layer)}
            first = {"pending": True}

            def put(_m, _a, out):
                if not first["pending"]:
                    return None
                first["pending"] = False
                hidden = _tensor(out).clone()
                hidden.view(-1, hidden.shape[-1])[-1] = seen["v"]  # batch 1: the last prompt token
                return (hidden, *out[1:]) if isinstance(out, tuple) else hidden

            handles.append(module_of(model, granularity, target_layer).register_forward_hook(put))
        ids = tokenizer(target, return_tensors="pt").input_ids
        if checkpoint:
            config = copy.deepcopy(saved_config) if saved_config is not None else GenerationConfig()
        else:  # generate() fills unset fields from model.generation_config: blank it for this call
            model.generation_config = GenerationConfig()
            config = GenerationConfig()
        config.update(do_sample=False, num_beams=1, max_new_tokens=max_new_tokens,
                      eos_token_id=eos_token_ids, pad_token_id=tokenizer.pad_token_id,
                      output_logits=True, output_scores=True, return_dict_in_generate=True)
        gen = model.generate(ids, attention_mask=torch.ones_like(ids), generation_config=config)
    finally:
        model.generation_config = saved_config
        for h in handles:
            h.remove()
    new = gen.sequences[0, ids.shape[1]:].tolist()
    logits = torch.stack([x[0].float() for x in gen.logits])  # [steps, V] raw
    scores = torch.stack([x[0].float() for x in gen.scores])  # [steps, V] processed: the choice
    top2 = scores.topk(2, dim=-1).values
    logp = torch.log_softmax(logits, -1)
    ent = -(logp.exp() * logp).sum(-1)
    chosen = logp.gather(1, torch.tensor(new)[:, None])[:, 0]
    kept = len(new) - 1 if new and new[-1] in eos_token_ids else len(new)
    return RefResult(
        token_ids=new[:kept],
        margins=(top2[:, 0] - top2[:, 1]).tolist(),
        tops=top2[:, 0].tolist(),
        logprob_sum=float(chosen[:kept].sum()),
        entropy_first=float(ent[0]),
        entropy_mean=float(ent.mean()),
    )
