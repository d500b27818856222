"""What a decode step costs a GPU, counted on the CPU: host synchronisations and dispatched ops.

``pipeline.transplant.counting.StepCosts`` counts every read of a tensor's value on the host and
every aten op dispatched, and cuts them into decode steps at each forward of the output
embedding. These counts are deterministic, so they are assertions here, not timings:

- every decode step reads the device at most twice (the engine: once, the chosen tokens; the
  step that ends a chunk once more, its statistics), whatever the number of layers, instances and
  sharing groups, with shared lower layers on and off, on the shared-prefix kernel and on the
  model's own cache;
- a decode step dispatches at most 1.5x the ops of HF ``generate()``'s decode step on the same
  model and a batch of 8 rows, and the same number whether the chunk holds 1, 4 or 16 instances
  (the prefix attention of all of them is one batched computation). That is the GPU's setting
  (``shared_attention=slots``, ``dead_slot_share=0.5``, what ``auto`` picks on CUDA); the CPU's
  (``rows``, 0) spends up to 3 more ops per shared layer to attend for fewer rows, and stays
  within 1.6x.

Models: the issue's 8-layer tiny LLaMA, Gemma 3 (sliding-window layers), Gemma 2 (logit
soft-capping, eager attention), BLOOM (the cache route: ALiBi, the model's own cache).
"""

from __future__ import annotations

import functools

import pytest
import torch
from conftest import tiny_pair
from families import tiny_family
from transformers import GenerationConfig

from pipeline.instances import Instance
from pipeline.transplant.counting import StepCosts
from pipeline.transplant.engine import EngineOptions, TransplantEngine

MAX_NEW = 12
INSTANCE_COUNTS = (1, 4, 16)


def _instances(n: int) -> list[Instance]:
    return [
        Instance(f"de-{k}", "de", f"Frage {k}: Ist der Himmel blau? Antwort:", f"Question {k}: Is the sky blue?", "ja")
        for k in range(n)
    ]


@functools.cache
def _model(name: str):
    if name == "llama8":
        model, reference, tok = tiny_pair("llama", n_layers=8, init_range=0.3, seed=1)
    else:
        model, reference, tok = tiny_family(name)
    return model, reference, tok


@functools.cache
def _generate_step_ops(name: str) -> float:
    """HF ``generate()``'s ops per decode step: 8 rows, greedy, no processors."""
    _, reference, tok = _model(name)
    batch = tok([x.prompt for x in _instances(8)], return_tensors="pt", padding=True)
    config = GenerationConfig(do_sample=False, max_new_tokens=MAX_NEW, pad_token_id=tok.pad_token_id)
    with torch.inference_mode(), StepCosts(reference) as costs:
        reference.generate(**batch, generation_config=config)
    assert costs.steps == MAX_NEW
    return costs.decode_step_ops


GPU = {"shared_attention": "slots", "dead_slot_share": 0.5}  # what EngineOptions' auto picks on CUDA
CPU = {"shared_attention": "rows", "dead_slot_share": 0.0}  # ... and on the CPU


def _engine_costs(name: str, n_instances: int, share: bool, setting: dict) -> StepCosts:
    model, _, tok = _model(name)
    options = EngineOptions(max_new_tokens=MAX_NEW, share_layers=share, **setting)
    engine = TransplantEngine(model, tok, options, [tok.eos_token_id])
    pairs = [(i, j) for i in range(engine.n_layers) for j in range(engine.n_layers)]
    with StepCosts(model) as costs:
        gens = list(engine.run(_instances(n_instances), ["attn", "ffn"], pairs))
    assert len(gens) == n_instances * (1 + 2 * len(pairs))
    return costs


@pytest.mark.parametrize("setting,factor", [(GPU, 1.5), (CPU, 1.6)], ids=["gpu", "cpu"])
@pytest.mark.parametrize(
    "name,share",
    [("llama8", True), ("llama8", False), ("gemma3_text", True), ("gemma2", True), ("bloom", False)],
)
def test_a_decode_step_syncs_at_most_twice_and_dispatches_what_generate_does(name, share, setting, factor):
    limit = factor * _generate_step_ops(name)
    step_ops = {}
    for n in INSTANCE_COUNTS:
        costs = _engine_costs(name, n, share, setting)
        decode = costs.decode_step_syncs
        assert len(decode) >= costs.steps - 2 * n and max(decode) <= 2, (n, costs.step_syncs)
        assert sum(costs.syncs.values()) <= 2 * costs.steps, (n, dict(costs.syncs))
        assert not {"nonzero", "_unique2", "unique_dim", "unique_consecutive", "cpu"} & set(costs.syncs), costs.syncs
        step_ops[n] = costs.decode_step_ops
    assert max(step_ops.values()) <= limit, (step_ops, limit)
    assert step_ops[1] == step_ops[4] == step_ops[16], step_ops


def test_the_counter_sees_what_a_gpu_waits_for():
    """The counting itself: each kind of host read is one sync, views and arithmetic are none."""
    model, _, _ = _model("llama8")
    x = torch.arange(6.0)
    with StepCosts(model) as costs:
        y = (x * 2).view(2, 3)  # mul, view: ops, no sync
        y.tolist()
        bool(y[0, 0] > 0)
        y.nonzero()
        y[y > 3]  # a boolean mask
        torch.tensor([1, 2], device=y.device)  # a blocking upload
    assert dict(costs.syncs) == {"tolist": 1, "__bool__": 1, "nonzero": 1, "index": 1, "tensor": 1}
    assert costs.ops["mul"] == 1 and costs.ops["view"] == 1
