"""The engine against the naive per-config method (tests/reference.py): same greedy outputs.

For each of the paper's architectures (LLaMA, Mistral, Qwen2; tiny random configs) x
attn/ffn/block/attn_released x all N^2 (source, target) pairs and vanilla, in float32: generated ids identical, except after a
step where the reference's top-2 logit margin is below 1e-4 (a true near-tie, where float
reassociation may legitimately flip the argmax).
"""

from __future__ import annotations

import pytest
from conftest import tiny_pair
from reference import reference_generate

from pipeline.transplant.engine import EngineOptions, TransplantEngine
from pipeline.instances import Instance

NEAR_TIE = 1e-4
MAX_NEW = 10

INSTANCES = [
    Instance("de-1", "de", "Frage: Ist der Himmel blau? Antwort:", "Question: Is the sky blue? Answer:", "ja"),
    Instance("zh-1", "zh", "问题：天空是蓝色的吗？", "Question: is the sky blue?", "是"),
    Instance("fr-1", "fr", "Oui ou non ?", "Yes or no? Please answer with one word only.", "oui"),
]


def assert_same_or_near_tie(got: list[int], ref, what: str) -> bool:
    """True if identical; a divergence is allowed only right after a reference near-tie."""
    if got == ref.token_ids:
        return True
    k = next((n for n, (a, b) in enumerate(zip(got, ref.token_ids)) if a != b), min(len(got), len(ref.token_ids)))
    assert min(ref.margins[: k + 1]) < NEAR_TIE, f"{what}: engine {got} != reference {ref.token_ids} at step {k}"
    return False


def pick_eos(ref_model, tok) -> int:
    """A token the model actually generates early, so some rows stop before max_new_tokens."""
    ref = reference_generate(ref_model, tok, INSTANCES[0].prompt, None, None, None, None, MAX_NEW, [])
    return ref.token_ids[3]


@pytest.mark.parametrize("arch,seed", [("llama", 1), ("mistral", 2), ("qwen2", 3)])
def test_engine_matches_per_config_generate(arch, seed):
    model, ref_model, tok = tiny_pair(arch, n_layers=3, init_range=0.3, seed=seed)
    eos = [tok.eos_token_id, pick_eos(ref_model, tok)]
    engine = TransplantEngine(model, tok, EngineOptions(max_new_tokens=MAX_NEW, chunk_size=13, instance_batch=2), eos)
    n = engine.n_layers
    pairs = [(i, j) for i in range(n) for j in range(n)]
    grans = ["attn", "ffn", "block", "attn_released"]
    gens = list(engine.run(INSTANCES, grans, pairs))
    assert len(gens) == len(INSTANCES) * (1 + len(grans) * n * n)
    exact = stopped_early = 0
    for gen in gens:
        c = gen.config
        x = INSTANCES[c.instance]
        ref = reference_generate(ref_model, tok, x.prompt, x.source_prompt, c.granularity, c.source_layer,
                                 c.target_layer, MAX_NEW, eos)
        if assert_same_or_near_tie(gen.token_ids, ref, f"{arch} {c}"):
            exact += 1
            assert gen.logprob_sum == pytest.approx(ref.logprob_sum, abs=1e-3)
            assert gen.entropy_first == pytest.approx(ref.entropy_first, abs=1e-4)
            assert gen.entropy_mean == pytest.approx(ref.entropy_mean, abs=1e-4)
        stopped_early += len(gen.token_ids) < MAX_NEW
    # The check is only meaningful if nearly all rows are exact and EOS handling was exercised.
    assert exact >= 0.95 * len(gens)
    assert stopped_early > 0
    # Transplants must change something, or the comparison proves little.
    vanilla = {g.config.instance: g.token_ids for g in gens if g.config.granularity is None}
    assert sum(g.token_ids != vanilla[g.config.instance] for g in gens) > len(gens) // 4
    # attn_released must be a different transplant from attn (it adds the source layer's input).
    by_key = {(c.instance, c.granularity, c.source_layer, c.target_layer): g.token_ids
              for g in gens for c in [g.config]}
    differ = sum(by_key[(x, "attn", i, j)] != by_key[(x, "attn_released", i, j)]
                 for x in range(len(INSTANCES)) for i, j in pairs)
    assert differ > 0
