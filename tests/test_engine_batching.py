"""Batching must not change results: mixed-length instances, chunk sizes, OOM halving, (i, i)."""

from __future__ import annotations

import pytest
import torch
from conftest import tiny_pair
from reference import reference_generate

from pipeline.transplant.engine import EngineOptions, TransplantEngine
from pipeline.transplant.padding import prefill_pieces
from pipeline.instances import Instance

MAX_NEW = 8
GRANS = ["attn", "ffn", "block", "attn_released"]

MIXED = [
    Instance("short", "de", "Ja?", "Yes? Answer in a full sentence, please.", "ja"),
    Instance("long", "es", "Pregunta larga: ¿cuál es la capital de Francia y por qué es famosa?", "Capital?", "París"),
    Instance("mid", "zh", "中国的首都是哪里？", "What is the capital of China?", "北京"),
    Instance("one", "ru", "Да", "Yes", "да"),
]


def key(gen):
    c = gen.config
    return (c.instance, c.granularity, c.source_layer, c.target_layer)


def run(model, tok, instances, **opts):
    engine = TransplantEngine(model, tok, EngineOptions(max_new_tokens=MAX_NEW, **opts))
    pairs = [(i, j) for i in range(engine.n_layers) for j in range(engine.n_layers)]
    return {key(g): g for g in engine.run(instances, GRANS, pairs)}


@pytest.fixture(scope="module")
def tiny():
    model, _, tok = tiny_pair("qwen2", n_layers=3, init_range=0.3, seed=5)
    return model, tok


def test_mixed_lengths_batched_equal_alone(tiny):
    model, tok = tiny
    together = run(model, tok, MIXED, instance_batch=4, chunk_size=40)
    for n, inst in enumerate(MIXED):
        alone = run(model, tok, [inst], instance_batch=1, chunk_size=1000)
        for (inst_idx, *rest), gen in alone.items():
            other = together[(n, *rest)]
            assert other.token_ids == gen.token_ids, (inst.id, rest)
            assert other.logprob_sum == pytest.approx(gen.logprob_sum, abs=1e-4)


def test_instance_batches_group_similar_lengths(tiny):
    """Length-aware planning: a long context is batched with long prompts, not with short ones."""
    model, tok = tiny
    engine = TransplantEngine(model, tok, EngineOptions(instance_batch=2))
    lengths = [300, 12, 290, 15, 40, 35]  # longer of (source, target prefix) per instance
    tokens = [([1] * n, [1] * 5) for n in lengths]
    batches = engine.instance_batches(tokens)
    assert sorted(n for b in batches for n in b) == list(range(len(lengths)))
    assert batches == [[1, 3], [5, 4], [2, 0]]
    # In input order the batches would pad 12 -> 300, 15 -> 290 and 35 -> 40 tokens.
    padded = sum(len(b) * max(lengths[n] for n in b) for b in batches)
    assert padded == 2 * 15 + 2 * 40 + 2 * 300


@pytest.mark.parametrize("chunk_size", [1, 5, 64])
def test_chunk_size_does_not_change_results(tiny, chunk_size):
    model, tok = tiny
    base = run(model, tok, MIXED[:2], chunk_size=1000)
    other = run(model, tok, MIXED[:2], chunk_size=chunk_size)
    assert base.keys() == other.keys()
    assert all(base[k].token_ids == other[k].token_ids for k in base)


def test_out_of_memory_halves_chunk_and_keeps_results(tiny, caplog):
    model, tok = tiny
    base = run(model, tok, MIXED[:2], chunk_size=1000)
    squeezed = run(model, tok, MIXED[:2], chunk_size=64, simulate_oom_above=9)
    # a chunk holds whole instances (37 rows each); an instance cut in 3 pieces of 13, then 13 -> 6
    assert "out of memory on a chunk of 37 rows; retrying with chunk_size=18" in caplog.text
    assert "out of memory on a chunk of 13 rows; retrying with chunk_size=6" in caplog.text
    assert base.keys() == squeezed.keys()
    assert all(base[k].token_ids == squeezed[k].token_ids for k in base)


def test_out_of_memory_in_the_prefill_splits_the_piece_and_keeps_results(tiny, caplog):
    """One padded prefill forward of 8 sequences, out of memory above 2 rows: 8 -> 4 + 4 -> 2 + 2 + 2 + 2."""
    model, tok = tiny
    base = run(model, tok, MIXED, instance_batch=4, chunk_size=1000, prefill_slack=float("inf"))
    squeezed = run(model, tok, MIXED, instance_batch=4, chunk_size=1000, prefill_slack=float("inf"),
                   simulate_oom_above=2)  # fmt: skip
    assert "out of memory on a prefill piece of 8 sequences; retrying in halves" in caplog.text
    assert "out of memory on a prefill piece of 4 sequences" in caplog.text
    assert "out of memory on a chunk of 148 rows; retrying with chunk_size=74" in caplog.text  # 4 instances x 37 rows
    assert "out of memory on a chunk of 3 rows; retrying with chunk_size=1" in caplog.text
    assert base.keys() == squeezed.keys()
    assert all(base[k].token_ids == squeezed[k].token_ids for k in base)
    assert all(base[k].logprob_sum == pytest.approx(squeezed[k].logprob_sum, abs=1e-4) for k in base)


def test_out_of_memory_on_one_sequence_is_raised(tiny):
    model, tok = tiny
    with pytest.raises(torch.OutOfMemoryError):
        run(model, tok, MIXED[:1], instance_batch=1, prefill_slack=float("inf"), simulate_oom_above=0)


@pytest.mark.parametrize("arch", ["llama", "mistral", "qwen2"])
def test_same_prompt_diagonal_reproduces_vanilla(arch):
    """Source prompt = target prompt: config (i, i) puts back the value that was there.

    Not for attn_released: its vector h + a written over a makes the stream 2h + a (by design).
    """
    model, ref_model, tok = tiny_pair(arch, n_layers=4, init_range=0.3, seed=7)
    text = "Premise: it rains. Hypothesis: the street is wet. (1) Entail (2) Neutral (3) Contradict"
    inst = Instance("same", "en", text, text, "1")
    gens = run(model, tok, [inst])
    vanilla = gens[(0, None, None, None)].token_ids
    ref = reference_generate(ref_model, tok, text, None, None, None, None, MAX_NEW, [tok.eos_token_id])
    assert min(ref.margins) > 1e-4  # no near-tie: equality below is exact, not luck
    assert vanilla == ref.token_ids
    for g in ("attn", "ffn", "block"):
        for i in range(4):
            assert gens[(0, g, i, i)].token_ids == vanilla, (g, i)


def test_prefill_pieces_bound_the_padding():
    lengths = [83, 503, 160, 125, 86, 1111, 0]  # the benchmark's three instances, plus an empty prefix
    assert prefill_pieces(lengths, 0.25) == [[0, 4], [3, 2], [1], [5]]
    for piece in prefill_pieces(lengths, 0.25):
        real = sum(lengths[r] for r in piece)
        assert max(lengths[r] for r in piece) * len(piece) <= 1.25 * real
    assert prefill_pieces(lengths, float("inf")) == [[0, 4, 3, 2, 1, 5]]  # one padded forward
    assert prefill_pieces([0, 0], 0.25) == []


def test_prefill_in_pieces_equals_one_padded_forward(tiny):
    """Every source prompt and prefix alone (slack 0) vs all in one padded forward (slack inf)."""
    model, tok = tiny
    one = run(model, tok, MIXED, instance_batch=4, chunk_size=64, prefill_slack=float("inf"))
    pieces = run(model, tok, MIXED, instance_batch=4, chunk_size=64, prefill_slack=0.0)
    assert one.keys() == pieces.keys()
    for k, gen in one.items():
        assert pieces[k].token_ids == gen.token_ids, k
        assert pieces[k].logprob_sum == pytest.approx(gen.logprob_sum, abs=1e-4)
