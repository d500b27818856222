"""The naive per-config XTransplant, written independently of the engine (tests only).

One batch-1 forward of the source prompt with a hook that records the module output of the source
layer at the last token; then one HF ``generate()`` of the target prompt with a hook that, on the
prompt pass only, replaces the same module's output of the target layer at the last prompt token.
This is the authors' method (without their per-config model reload).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import GenerationConfig


def module_of(model, granularity: str, layer: int):
    block = model.model.layers[layer]
    return {"attn": block.self_attn, "ffn": block.mlp, "block": block}[granularity]


def _tensor(output):
    return output[0] if isinstance(output, tuple) else output


@dataclass
class RefResult:
    token_ids: list[int]
    margins: list[float]  # top-1 minus top-2 logit at each step
    logprob_sum: float
    entropy_first: float
    entropy_mean: float


@torch.inference_mode()
def reference_generate(model, tokenizer, target: str, source: str | None, granularity: str | None,
                       source_layer: int | None, target_layer: int | None, max_new_tokens: int,
                       eos_token_ids: list[int]) -> RefResult:
    handles = []
    try:
        if granularity is not None:
            src = tokenizer(source, return_tensors="pt").input_ids
            seen = {}

            def grab(_m, _a, out):
                seen["v"] = _tensor(out)[0, -1].clone()

            h = module_of(model, granularity, source_layer).register_forward_hook(grab)
            model(src)
            h.remove()
            first = {"pending": True}

            def put(_m, _a, out):
                if not first["pending"]:
                    return None
                first["pending"] = False
                hidden = _tensor(out).clone()
                hidden[0, -1] = seen["v"]
                return (hidden, *out[1:]) if isinstance(out, tuple) else hidden

            handles.append(module_of(model, granularity, target_layer).register_forward_hook(put))
        ids = tokenizer(target, return_tensors="pt").input_ids
        gen = model.generate(
            ids,
            attention_mask=torch.ones_like(ids),
            generation_config=GenerationConfig(
                do_sample=False, num_beams=1, max_new_tokens=max_new_tokens,
                eos_token_id=eos_token_ids, pad_token_id=tokenizer.pad_token_id,
            ),
            output_logits=True,
            return_dict_in_generate=True,
        )
    finally:
        for h in handles:
            h.remove()
    new = gen.sequences[0, ids.shape[1]:].tolist()
    logits = torch.stack([x[0].float() for x in gen.logits])  # [steps, V]
    top2 = logits.topk(2, dim=-1).values
    logp = torch.log_softmax(logits, -1)
    ent = -(logp.exp() * logp).sum(-1)
    chosen = logp.gather(1, torch.tensor(new)[:, None])[:, 0]
    kept = len(new) - 1 if new and new[-1] in eos_token_ids else len(new)
    return RefResult(
        token_ids=new[:kept],
        margins=(top2[:, 0] - top2[:, 1]).tolist(),
        logprob_sum=float(chosen[:kept].sum()),
        entropy_first=float(ent[0]),
        entropy_mean=float(ent.mean()),
    )
