"""``EngineOptions(length_aware=False)``: instance batches in input order (the benchmark's A/B of issue 13).

The option only changes which instances share a prefill (and so how much padding it pays); every
row must still match the per-config reference.
"""

from __future__ import annotations

from conftest import tiny_pair
from reference import reference_generate
from test_engine_batching import MIXED
from test_engine_equivalence import assert_same_or_near_tie

from pipeline.transplant.engine import EngineOptions, TransplantEngine

MAX_NEW = 6


def test_input_order_batches_keep_order_and_match_reference():
    model, ref_model, tok = tiny_pair("llama", n_layers=3, init_range=0.3, seed=7)
    engine = TransplantEngine(model, tok, EngineOptions(max_new_tokens=MAX_NEW, instance_batch=2, length_aware=False))
    lengths = [300, 12, 290, 15, 40, 35]
    assert engine.instance_batches([([1] * n, [1] * 5) for n in lengths]) == [[0, 1], [2, 3], [4, 5]]
    eos = sorted(engine.eos_ids)
    pairs = [(2, 0), (0, 1)]
    gens = list(engine.run(MIXED, ["ffn"], pairs))
    assert [g.config.instance for g in gens] == [n for n in range(len(MIXED)) for _ in range(1 + len(pairs))]
    for g in gens:
        c, x = g.config, MIXED[g.config.instance]
        ref = reference_generate(ref_model, tok, x.prompt, x.source_prompt, c.granularity, c.source_layer,
                                 c.target_layer, MAX_NEW, eos)
        assert_same_or_near_tie(g.token_ids, ref, f"{x.id} {c}")
