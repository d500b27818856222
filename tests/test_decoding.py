"""Decoding as the authors' ``generate(do_sample=False)``: the checkpoint's greedy processors.

Tiny checkpoints are saved to disk with a ``generation_config.json`` and loaded through
``pipeline.models.load_model`` like a real checkpoint. For each, the engine's rows (default
``decoding=checkpoint``) equal HF ``generate()`` per config with the model's generation config and
``do_sample=False`` (tests/reference.py, ``checkpoint=True``) for every (granularity, i, j) and
vanilla; with ``decoding=plain`` some rows differ (the settings bite). The instances' target
prompts have different lengths and share chunks, so per-row prompt ids and ``min_length`` (which
counts the prompt) are exercised. Unsupported settings are refused when the engine starts.
"""

from __future__ import annotations

import copy

import pytest
from reference import reference_generate
from sweeps import compose_sweep
from test_engine_equivalence import assert_same_or_near_tie

from pipeline import sweep
from pipeline.transplant.decoding import check_checkpoint
from pipeline.transplant.engine import EngineOptions, TransplantEngine
from pipeline.errors import PipelineError
from pipeline.instances import Instance
from pipeline.models import ModelSpec, load_model
from pipeline.models.layouts import GRANULARITIES
from pipeline.models.tiny import EOS_ID, TinySpec, build_tiny

MAX_NEW = 8

INSTANCES = [  # target prompts of three different lengths
    Instance("de-1", "de", "Frage: Ist der Himmel blau? Antwort:", "Question: Is the sky blue? Answer:", "ja"),
    Instance("fr-1", "fr", "Oui ou non ?", "Yes or no? Please answer with one word only.", "oui"),
    Instance("es-1", "es", "Pregunta larga: ¿cuál es la capital de Francia y por qué?", "Capital?", "París"),
]


def plain_probe(model, tok) -> list[list[int]]:
    """Vanilla greedy ids of each instance (independent HF generate), to aim the settings."""
    return [reference_generate(model, tok, x.prompt, None, None, None, None, MAX_NEW, [EOS_ID]).token_ids
            for x in INSTANCES]


def repetition(probe, tok):
    return {"repetition_penalty": 4.0}


def ngram(probe, tok):
    return {"no_repeat_ngram_size": 2}


def mixed(probe, tok):
    """Every other supported field, aimed at tokens the model actually generates."""
    first, second = probe[0], probe[1]
    shortest = min(len(tok(x.prompt)["input_ids"]) for x in INSTANCES)
    return {
        "repetition_penalty": 1.3,
        "bad_words_ids": [[first[1], first[2]], [second[3]]],
        "suppress_tokens": [first[4]],
        "begin_suppress_tokens": [second[0]],
        "min_new_tokens": 2,
        "min_length": shortest + 5,  # binds the shortest prompt's rows longer than min_new_tokens
        "remove_invalid_values": True,
        "renormalize_logits": True,
    }


def save_checkpoint(tmp_path, arch: str, seed: int, init_range: float, settings_of) -> tuple[str, list[int]]:
    """A tiny checkpoint whose generation_config.json holds the settings; an early token is EOS too."""
    model, tok = build_tiny(TinySpec(arch=arch, n_layers=2, init_range=init_range, seed=seed))
    probe = plain_probe(model, tok)
    eos = [EOS_ID, probe[0][3]]  # some rows stop early, so min_new_tokens / min_length matter
    model.generation_config.update(eos_token_id=eos, **settings_of(probe, tok))
    path = tmp_path / f"{arch}-{settings_of.__name__}"
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return str(path), eos


def load(path: str):
    loaded = load_model(ModelSpec(name="hf", path=path, dtype="float32", device="cpu"))
    return loaded.model, copy.deepcopy(loaded.model), loaded.tokenizer


def run_engine(model, tok, decoding: str, share_layers: bool = True) -> dict:
    engine = TransplantEngine(model, tok, EngineOptions(max_new_tokens=MAX_NEW, chunk_size=40, instance_batch=3,
                                                        decoding=decoding, share_layers=share_layers))
    pairs = [(i, j) for i in range(engine.n_layers) for j in range(engine.n_layers)]
    return {(c.instance, c.granularity, c.source_layer, c.target_layer): g
            for g in engine.run(INSTANCES, GRANULARITIES, pairs) for c in [g.config]}


# init_range 0.1 for the n-gram case: that seed's random model repeats bigrams, so the ban bites.
@pytest.mark.parametrize("arch,seed,init_range,settings_of", [("qwen2", 3, 0.3, repetition), ("llama", 2, 0.1, ngram),
                                                              ("mistral", 2, 0.3, mixed)])
def test_engine_matches_generate_with_the_checkpoints_processors(tmp_path, arch, seed, init_range, settings_of):
    path, eos = save_checkpoint(tmp_path, arch, seed, init_range, settings_of)
    model, ref_model, tok = load(path)
    assert check_checkpoint(path, None, "checkpoint").keys() == settings_of([[0] * MAX_NEW] * 3, tok).keys()
    gens = run_engine(model, tok, "checkpoint")
    unshared = run_engine(model, tok, "checkpoint", share_layers=False)  # every row through every layer
    assert {k: g.token_ids for k, g in gens.items()} == {k: g.token_ids for k, g in unshared.items()}
    exact = 0
    for (n, g, i, j), gen in gens.items():
        x = INSTANCES[n]
        ref = reference_generate(ref_model, tok, x.prompt, x.source_prompt, g, i, j, MAX_NEW, eos, checkpoint=True)
        if assert_same_or_near_tie(gen.token_ids, ref, f"{arch} {settings_of.__name__} {(n, g, i, j)}"):
            exact += 1
            # the probabilities stay the raw model's, whatever the processors chose
            assert gen.logprob_sum == pytest.approx(ref.logprob_sum, abs=1e-3)
            assert gen.entropy_first == pytest.approx(ref.entropy_first, abs=1e-4)
    assert exact >= 0.95 * len(gens)
    plain = run_engine(model, tok, "plain")
    changed = sum(plain[k].token_ids != gens[k].token_ids for k in gens)
    assert changed >= len(gens) // 4, f"the settings changed only {changed} of {len(gens)} rows"


@pytest.mark.parametrize("field,value", [("sequence_bias", [[[5], 2.0]]), ("num_beams", 4),
                                         ("forced_eos_token_id", 2), ("exponential_decay_length_penalty", (2, 1.5))])
def test_unsupported_setting_is_refused_at_start(tmp_path, field, value):
    model, tok = build_tiny(TinySpec(arch="llama", n_layers=2))
    model.generation_config.update(repetition_penalty=1.1, **{field: value})
    model.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    with pytest.raises(PipelineError, match=f"{field}=.*decoding=plain"):
        check_checkpoint(str(tmp_path), None, "checkpoint")
    loaded = load_model(ModelSpec(name="hf", path=str(tmp_path), dtype="float32", device="cpu"))
    with pytest.raises(PipelineError, match=f"generation_config sets {field}=.*run with decoding=plain"):
        TransplantEngine(loaded.model, loaded.tokenizer, EngineOptions())
    TransplantEngine(loaded.model, loaded.tokenizer, EngineOptions(decoding="plain"))  # the way out works
    assert check_checkpoint(str(tmp_path), None, "plain") == {}


def test_sweep_refuses_an_unsupported_setting_before_writing(tmp_path):
    """The driver reads generation_config.json before run.json or any shard is written."""
    ckpt = tmp_path / "ckpt"
    model, tok = build_tiny(TinySpec(arch="llama", n_layers=2))
    model.generation_config.update(sequence_bias=[[[5], 2.0]])
    model.save_pretrained(ckpt)
    tok.save_pretrained(ckpt)
    out = tmp_path / "out"
    cfg = compose_sweep(["model=hf", f"model.path={ckpt}", f"out_dir={out}", "cluster=inprocess"])
    with pytest.raises(PipelineError, match="sequence_bias=.*decoding=plain"):
        sweep.run(cfg)
    assert not out.exists() or not any(out.rglob("*.json")) and not any(out.rglob("*.parquet"))


def test_sampling_warpers_are_ignored_and_no_generation_config_works():
    """temperature/top_k/top_p do nothing greedy (as in HF); a model without a generation config decodes."""
    model, tok = build_tiny(TinySpec(arch="qwen2", n_layers=2, init_range=0.3, seed=4))
    base = run_engine(model, tok, "plain")
    model.generation_config.update(do_sample=True, temperature=0.7, top_k=20, top_p=0.8)
    assert {k: g.token_ids for k, g in run_engine(model, tok, "checkpoint").items()} == \
        {k: g.token_ids for k, g in base.items()}
    model.generation_config = None
    assert {k: g.token_ids for k, g in run_engine(model, tok, "checkpoint").items()} == \
        {k: g.token_ids for k, g in base.items()}


def test_decoding_knob_is_validated_and_part_of_the_result_identity(tmp_path):
    default = compose_sweep([f"out_dir={tmp_path}"])
    plain = compose_sweep(["decoding=plain", f"out_dir={tmp_path}"])
    assert default.engine.decoding == "checkpoint" and plain.engine.decoding == "plain"
    assert default.result_identity([])["decoding"] == "checkpoint"
    assert default.config_hash([]) != plain.config_hash([])
    with pytest.raises(PipelineError, match="decoding 'greedy' is not valid; valid: checkpoint, plain"):
        compose_sweep(["decoding=greedy", f"out_dir={tmp_path}"])


@pytest.mark.parametrize("rows", [3, 40])  # 40 x 16k float32 goes through the CPU's blocks of rows
def test_token_stats_with_masked_vocabulary(rows):
    """A -inf logit (a model that masks its vocabulary's padding) is a token of probability 0:
    the entropy and log-probability are those of the finite entries alone, not NaN."""
    import torch

    from pipeline.transplant.tokens import token_stats

    torch.manual_seed(0)
    vocab, masked = 16384, 1000
    logits = torch.randn(rows, vocab) * 3
    logits[:, -masked:] = float("-inf")
    choice, logprob, entropy = token_stats(logits)
    finite = logits[:, :-masked].double()
    logp = finite.log_softmax(-1)
    assert torch.equal(choice, finite.argmax(-1))
    torch.testing.assert_close(logprob.double(), logp.max(-1).values, rtol=0, atol=1e-5)
    torch.testing.assert_close(entropy.double(), -(logp.exp() * logp).sum(-1), rtol=0, atol=1e-4)
