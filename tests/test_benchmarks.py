"""The benchmark harnesses still drive the engine they measure (``make bench`` is not in CI).

``benchmarks/engine_profile.py`` swaps the engine's attention kernel for a profiled one under
its own registered names; when the engine started registering a second name for the decode
(issue 27), the harness broke and only ``make bench-real`` showed it. This runs it on a tiny model.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from conftest import tiny_pair
from families import tiny_family

from pipeline.instances import Instance
from pipeline.transplant.engine import EngineOptions, TransplantEngine

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

INSTANCES = [
    Instance("de-0", "de", "Frage: Ist der Himmel blau? Antwort:", "Question: Is the sky blue?", "ja"),
    Instance("de-1", "de", "Frage: Ist Gras grün?", "Question: Is grass green?", "ja"),
]


@pytest.mark.parametrize("arch", ["llama", "gemma2"])  # sdpa and eager bases
def test_the_profiler_harness_runs_the_engine_and_changes_no_output(arch: str) -> None:
    from engine_profile import ProfiledEngine, profile_engine

    model, _, tok = tiny_pair(arch, n_layers=3, seed=1) if arch == "llama" else tiny_family(arch)
    options = EngineOptions(max_new_tokens=6)
    n = TransplantEngine(model, tok, options).n_layers
    pairs = [(i, j) for i in range(n) for j in range(n)]
    plain = {(g.config.instance, g.config.granularity, g.config.source_layer, g.config.target_layer): g.token_ids
             for g in TransplantEngine(model, tok, options).run(INSTANCES, ["attn", "ffn"], pairs)}  # fmt: skip
    profiled = ProfiledEngine(model, tok, options)
    result = profile_engine(profiled, INSTANCES, ["attn", "ffn"], pairs)
    assert result["configs"] == len(plain) == 2 * (1 + 2 * n * n)
    seconds = result["seconds"]
    # every part has ops in it: the harness's ranges still wrap the engine's phases
    assert all(seconds[part] > 0 for part in ("prefill", "attention", "unembedding", "token stats", "decode matmuls"))
    again = {(g.config.instance, g.config.granularity, g.config.source_layer, g.config.target_layer): g.token_ids
             for g in TransplantEngine(model, tok, options).run(INSTANCES, ["attn", "ffn"], pairs)}  # fmt: skip
    assert again == plain  # the harness restored the engine's own kernel
