"""Every model family of the layout table against the naive per-config reference (tests/reference.py).

One tiny random checkpoint per family (tests/families.py), 2 instances x vanilla + attn, ffn,
block and attn_released at all 3x3 (source, target) pairs, float32, with shared lower layers on
(the CPU's and a GPU's kernel settings) and off (``pipeline.transplant.sharing``; identical ids
every way): generated ids identical
except right after a reference near-tie, log-probabilities and entropies within float tolerance,
EOS exercised, and a floor on how many configs differ from vanilla (a family where transplants
change nothing would prove nothing). The reference finds its sites with its own name lookup,
not the engine's table. Hybrid families (LFM2, Qwen3-Next) run block and ffn; attn is refused
there in one line, since their convolution / linear-attention layers have no attention module.
"""

from __future__ import annotations

import math
import sys

import pytest
import torch
from families import FAMILIES, HYBRID, tiny_family
from reference import reference_generate
from test_engine_equivalence import assert_same_or_near_tie
from transformers import AutoConfig, AutoModelForCausalLM, MambaConfig, MambaForCausalLM

from pipeline.errors import PipelineError
from pipeline.instances import Instance
from pipeline.sweep import main as sweep_main
from pipeline.transplant.engine import EngineOptions, TransplantEngine
from pipeline.models.layouts import LAYOUTS

MAX_NEW = 8
INSTANCES = [
    Instance("de-1", "de", "Frage: Ist der Himmel blau? Antwort:", "Question: Is the sky blue? Answer:", "ja"),
    Instance("zh-1", "zh", "问题：天空是蓝色的吗？", "Question: is the sky blue?", "是"),
]


def test_every_family_of_the_table_is_in_the_matrix():
    assert set(LAYOUTS) <= set(FAMILIES)


# The decode's settings: shared lower layers with the CPU's defaults (attend for the rows a shared
# layer runs; compact the suffix slots at every finished row), with a GPU's (attend on every slot;
# compact at half dead), and off.
SETTINGS = {
    "shared, cpu": dict(share_layers=True, shared_attention="rows", dead_slot_share=0.0),
    "shared, gpu": dict(share_layers=True, shared_attention="slots", dead_slot_share=0.5),
    "unshared": dict(share_layers=False),
}


@pytest.mark.parametrize("model_type", FAMILIES)
def test_family_matches_per_config_generate(model_type):
    """Every decode setting against the reference, and against each other."""
    model, ref_model, tok = tiny_family(model_type)
    vanilla_ref = reference_generate(ref_model, tok, INSTANCES[0].prompt, None, None, None, None, MAX_NEW, [])
    eos = [tok.eos_token_id, vanilla_ref.token_ids[2]]  # a token vanilla generates: some rows stop early
    runs = {}
    for name, setting in SETTINGS.items():
        options = EngineOptions(max_new_tokens=MAX_NEW, chunk_size=11, instance_batch=2, **setting)
        engine = TransplantEngine(model, tok, options, eos)
        n = engine.n_layers
        pairs = [(i, j) for i in range(n) for j in range(n)]
        grans = ["block", "ffn"] if model_type in HYBRID else ["attn", "ffn", "block", "attn_released"]
        runs[name] = (list(engine.run(INSTANCES, grans, pairs)), engine.decode_layer_steps)
    gens, shared_steps = runs["shared, cpu"]
    unshared, all_steps = runs["unshared"]
    assert len(gens) == len(INSTANCES) * (1 + len(grans) * n * n)
    ids = {g.config: g.token_ids for g in unshared}
    assert {g.config: g.token_ids for g in gens} == ids
    assert {g.config: g.token_ids for g in runs["shared, gpu"][0]} == ids
    if engine.sites.route == "kernel":  # the cache route decodes every row through every layer
        assert shared_steps < all_steps
    exact = stopped_early = 0
    for gen in gens:
        c = gen.config
        x = INSTANCES[c.instance]
        ref = reference_generate(ref_model, tok, x.prompt, x.source_prompt, c.granularity, c.source_layer,
                                 c.target_layer, MAX_NEW, eos)  # fmt: skip
        if assert_same_or_near_tie(gen.token_ids, ref, f"{model_type} {c}"):
            exact += 1
            assert gen.logprob_sum == pytest.approx(ref.logprob_sum, abs=1e-3)
            assert gen.entropy_first == pytest.approx(ref.entropy_first, abs=1e-4)
            assert gen.entropy_mean == pytest.approx(ref.entropy_mean, abs=1e-4)
        stopped_early += len(gen.token_ids) < MAX_NEW
    assert exact >= 0.95 * len(gens)
    assert stopped_early > 0
    vanilla = {g.config.instance: g.token_ids for g in gens if g.config.granularity is None}
    changed = sum(g.token_ids != vanilla[g.config.instance] for g in gens)
    assert changed >= len(gens) // 3, f"{model_type}: only {changed} of {len(gens)} configs differ from vanilla"


MOE = {"qwen2_moe", "qwen3_moe", "mixtral", "granitemoe", "gpt_oss", "deepseek_v2", "deepseek_v3", "qwen3_next"}
BF16_TIE_ULPS = 4  # a near-tie in bfloat16: top-2 margin within 4 units in the last place of the top score


def _bf16_ulp(x: float) -> float:
    return 2.0 ** (math.floor(math.log2(max(abs(x), 2.0**-126))) - 7)  # 8 significant bits


@pytest.mark.parametrize("model_type", FAMILIES)
def test_family_in_bfloat16_agrees_with_the_bfloat16_reference_up_to_ties(model_type):
    """bfloat16 engine (float32 scores and softmax) against the bfloat16 per-config ``generate()``.

    Both round differently (the reference's attention runs in bfloat16), so ids may part after a
    step whose top-2 margin lies within bfloat16's resolution of the top score; in a dense family
    nowhere else. A mixture of experts also parts after a near-tie of its router (another expert
    chosen), which the output margin does not show: only its agreement rate is asserted.
    """
    model, ref_model, tok = tiny_family(model_type)
    model.to(torch.bfloat16)
    ref_model.to(torch.bfloat16)
    engine = TransplantEngine(model, tok, EngineOptions(max_new_tokens=MAX_NEW, chunk_size=11, instance_batch=2),
                              [tok.eos_token_id])  # fmt: skip
    n = engine.n_layers
    grans = ["block", "ffn"] if model_type in HYBRID else ["attn", "ffn"]
    gens = list(engine.run(INSTANCES, grans, [(i, j) for i in range(n) for j in range(n)]))
    exact = 0
    for gen in gens:
        c = gen.config
        x = INSTANCES[c.instance]
        ref = reference_generate(ref_model, tok, x.prompt, x.source_prompt, c.granularity, c.source_layer,
                                 c.target_layer, MAX_NEW, [tok.eos_token_id])  # fmt: skip
        if gen.token_ids == ref.token_ids:
            exact += 1
            continue
        k = next((m for m, (a, b) in enumerate(zip(gen.token_ids, ref.token_ids)) if a != b),
                 min(len(gen.token_ids), len(ref.token_ids)))  # fmt: skip
        tie = any(ref.margins[m] <= BF16_TIE_ULPS * _bf16_ulp(ref.tops[m]) for m in range(k + 1))
        assert tie or model_type in MOE, f"{model_type} {c}: engine {gen.token_ids} != reference {ref.token_ids}"
    assert exact >= (0.5 if model_type in MOE else 0.65) * len(gens), f"{model_type}: {exact}/{len(gens)} identical"


@pytest.mark.parametrize("model_type", sorted(HYBRID))
def test_hybrid_attn_is_refused_naming_the_layers(model_type):
    model, _, tok = tiny_family(model_type)
    engine = TransplantEngine(model, tok, EngineOptions(max_new_tokens=2))
    with pytest.raises(PipelineError, match=rf"model type {model_type}: granularity attn is not available: "
                                            r"decoder layers 0, 2 of 3 have no module for it"):  # fmt: skip
        list(engine.run(INSTANCES, ["attn"], [(0, 1)]))


def test_unlisted_family_runs_on_the_cache_route_exactly():
    """A family missing from the table (GPT-Neo) is found by the common names and runs exactly."""
    config = AutoConfig.for_model("gpt_neo", vocab_size=320, hidden_size=64, num_layers=3, num_heads=4,
                                  attention_types=[[["global", "local"], 1], [["global"], 1]], window_size=4,
                                  intermediate_size=128, initializer_range=0.3, bos_token_id=1, eos_token_id=2)  # fmt: skip
    from copy import deepcopy

    from pipeline.models.tiny import build_tokenizer

    model = AutoModelForCausalLM.from_config(config).eval()
    ref_model, tok = deepcopy(model), build_tokenizer(320)
    engine = TransplantEngine(model, tok, EngineOptions(max_new_tokens=6), [tok.eos_token_id])
    assert engine.sites.route == "cache" and not engine.sites.listed
    gens = list(engine.run(INSTANCES[:1], ["attn", "ffn", "block"], [(0, 2), (2, 1)]))
    for gen in gens:
        c = gen.config
        x = INSTANCES[c.instance]
        ref = reference_generate(ref_model, tok, x.prompt, x.source_prompt, c.granularity, c.source_layer,
                                 c.target_layer, 6, [tok.eos_token_id])  # fmt: skip
        assert assert_same_or_near_tie(gen.token_ids, ref, f"gpt_neo {c}")


def _save(model, tok, path):
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


def test_model_without_decoder_layers_is_refused_before_run_json(tmp_path, monkeypatch, capsys):
    from pipeline.models.tiny import build_tokenizer

    config = MambaConfig(vocab_size=320, hidden_size=32, num_hidden_layers=2, state_size=4)
    ckpt = _save(MambaForCausalLM(config), build_tokenizer(320), tmp_path / "mamba")
    capsys.readouterr()
    out = tmp_path / "out"
    monkeypatch.setattr(sys, "argv", ["pipeline.sweep", "model=hf", f"model.path={ckpt}", f"out_dir={out}"])
    with pytest.raises(SystemExit) as exit_info:
        sweep_main()
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "error: model type mamba (MambaForCausalLM): no decoder layers at any of model.layers, transformer.h, "
        "gpt_neox.layers, model.decoder.layers, transformer.blocks; add its layout to pipeline/models/layouts.py"
    ]
    assert not out.exists()


def test_hybrid_attn_sweep_is_refused_before_run_json_and_block_runs(tmp_path, monkeypatch, capsys):
    from sweeps import rows, write_task

    model, _, tok = tiny_family("lfm2")
    ckpt = _save(model, tok, tmp_path / "lfm2")
    task = write_task(tmp_path / "task.jsonl", n=2)
    common = ["pipeline.sweep", "cluster=inprocess", "model=hf", f"model.path={ckpt}", "task=jsonl",
              f"task.path={task}", "max_new_tokens=3"]  # fmt: skip
    capsys.readouterr()
    refused = tmp_path / "attn"
    monkeypatch.setattr(sys, "argv", [*common, "granularity=[attn,block]", f"out_dir={refused}"])
    with pytest.raises(SystemExit) as exit_info:
        sweep_main()
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: model type lfm2: granularity attn is not available: decoder layers 0, 2 of 3 have no "
                   "module for it; granularity block works on every layer"]  # fmt: skip
    assert not refused.exists()
    ran = tmp_path / "block"
    monkeypatch.setattr(sys, "argv", [*common, "granularity=block", f"out_dir={ran}"])
    sweep_main()
    assert rows(ran).num_rows == 2 * (1 + 3 * 3)
