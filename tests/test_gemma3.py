"""Gemma 3 end to end on a tiny random Gemma 3: the engine against the per-config reference.

Gemma 3 differs from LLaMA in ways the engine must respect: sliding-window layers (here window 8,
every other layer) mixed with global ones, q/k norms, a ``query_pre_attn_scalar`` score scale
(here 2 x head_dim, so head_dim ** -0.5 would be wrong), norms after attention and MLP, and
embeddings scaled by sqrt(hidden). Prompts are longer than the window, and a short one crosses it
while decoding, so the shared-prefix kernel's window is exercised in the prefix and in the suffix.
Same assertion as tests/test_engine_equivalence.py: ids identical except after a reference
near-tie, over every granularity of ``pipeline.models.layouts.GRANULARITIES`` x all N^2 pairs and vanilla.
"""

from __future__ import annotations

import pytest
import torch
from conftest import tiny_pair
from reference import reference_generate
from test_engine_equivalence import INSTANCES as LLAMA_INSTANCES
from test_engine_equivalence import MAX_NEW, assert_same_or_near_tie

from pipeline.transplant.engine import EngineOptions, TransplantEngine
from pipeline.inspect import lens_probs
from pipeline.instances import Instance
from pipeline.models.layouts import GRANULARITIES
from pipeline.models.tiny import TinySpec, build_tiny

WINDOW = 8
SHAPE = dict(n_layers=3, init_range=0.3, seed=4, sliding_window=WINDOW)
SHORT = Instance("en-1", "en", "Yes?", "Ja oder nein? Antworte mit einem Wort.", "yes")
INSTANCES = [LLAMA_INSTANCES[0], LLAMA_INSTANCES[2], SHORT]  # 37, 13 and 5 tokens: the last crosses the window


def test_tiny_gemma3_has_what_makes_gemma3_different():
    model, _ = build_tiny(TinySpec(arch="gemma3", **SHAPE))
    layers = model.model.layers
    assert [layer.self_attn.sliding_window for layer in layers] == [WINDOW, None, WINDOW]
    head_dim = model.config.head_dim
    assert layers[0].self_attn.scaling == pytest.approx((2 * head_dim) ** -0.5)
    assert model.config.attn_logit_softcapping is None and model.config.final_logit_softcapping is None
    assert all(hasattr(layers[0], n) for n in ("post_attention_layernorm", "post_feedforward_layernorm"))


def test_engine_matches_per_config_generate_on_gemma3():
    model, ref_model, tok = tiny_pair("gemma3", **SHAPE)
    first = reference_generate(ref_model, tok, INSTANCES[0].prompt, None, None, None, None, MAX_NEW, [])
    eos = [tok.eos_token_id, first.token_ids[3]]  # a token the model generates, so rows stop early
    engine = TransplantEngine(model, tok, EngineOptions(max_new_tokens=MAX_NEW, chunk_size=17, instance_batch=2), eos)
    n = engine.n_layers
    pairs = [(i, j) for i in range(n) for j in range(n)]
    gens = list(engine.run(INSTANCES, list(GRANULARITIES), pairs))
    assert len(gens) == len(INSTANCES) * (1 + len(GRANULARITIES) * n * n)
    exact = stopped_early = 0
    for gen in gens:
        c = gen.config
        x = INSTANCES[c.instance]
        ref = reference_generate(ref_model, tok, x.prompt, x.source_prompt, c.granularity, c.source_layer,
                                 c.target_layer, MAX_NEW, eos)
        if assert_same_or_near_tie(gen.token_ids, ref, f"gemma3 {c}"):
            exact += 1
            assert gen.logprob_sum == pytest.approx(ref.logprob_sum, abs=1e-3)
            assert gen.entropy_first == pytest.approx(ref.entropy_first, abs=1e-4)
            assert gen.entropy_mean == pytest.approx(ref.entropy_mean, abs=1e-4)
        stopped_early += len(gen.token_ids) < MAX_NEW
    assert exact >= 0.95 * len(gens) and stopped_early > 0
    vanilla = {g.config.instance: g.token_ids for g in gens if g.config.granularity is None}
    assert sum(g.token_ids != vanilla[g.config.instance] for g in gens) > len(gens) // 4


def test_the_window_matters_in_these_prompts():
    """The same weights with the window disabled decode differently: the test above checks it."""
    windowed, tok = build_tiny(TinySpec(arch="gemma3", **SHAPE))
    unbounded, _ = build_tiny(TinySpec(arch="gemma3", **{**SHAPE, "sliding_window": 4096}))
    differ = 0
    for x in INSTANCES:
        a = reference_generate(windowed, tok, x.prompt, None, None, None, None, MAX_NEW, [])
        b = reference_generate(unbounded, tok, x.prompt, None, None, None, None, MAX_NEW, [])
        differ += a.token_ids != b.token_ids
    assert differ >= 2


def next_token_probs(model, tokenizer, text: str) -> torch.Tensor:
    ids = torch.tensor([tokenizer(text)["input_ids"]])
    with torch.inference_mode():
        return torch.softmax(model(input_ids=ids).logits[0, -1].float(), dim=-1)


def test_logit_lens_on_gemma3_reads_the_models_own_predictions():
    """Final norm + tied-or-not unembedding of Gemma 3 make the lens of the last layer the model's
    prediction; a block transplant of the last source layer reads as the source prompt's."""
    model, tok = build_tiny(TinySpec(arch="gemma3", **SHAPE))
    x = INSTANCES[0]
    probs = lens_probs(model, tok, x.prompt, x.source_prompt, "block", source_layer=2, target_layer=1)
    torch.testing.assert_close(probs[0, -1], next_token_probs(model, tok, x.prompt), atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(probs[1, 1], next_token_probs(model, tok, x.source_prompt), atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(probs[1, 0], probs[0, 0])
