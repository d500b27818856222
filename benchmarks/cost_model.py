"""On paper: what the paper's full sweeps cost on GPUs, with this engine and with the authors' method.

    python benchmarks/cost_model.py

Sweep (paper Sec. 3, ``jobs/main.yaml``): 3 models x 2,300 PilotSet instances x N^2 configs x 2
granularities (attn, ffn), 20 new tokens, plus one vanilla row per instance. Every number below
follows from the model shapes (their HF configs) and the assumptions in ``ASSUMPTIONS``; nothing
is measured on a GPU. FLOPs use ``measure.token_flops`` (matmul work only).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from measure import prefill_flops, row_flops  # noqa: E402

from pipeline.models.tiny import TinySpec  # noqa: E402

GB = 1e9


@dataclass(frozen=True)
class Gpu:
    name: str = "A100-SXM 80GB"
    memory_gb: float = 80.0
    bf16_tflops: float = 312.0  # dense tensor-core peak
    hbm_tb_s: float = 2.0


ASSUMPTIONS = {
    "instances": 2300,
    "granularities": 2,
    "new_tokens": 20,
    "source_tokens": 300,  # a few hundred tokens: XNLI/XQuAD/GOQA prompts in the LLaMA tokenizer
    "prefix_tokens": 300,
    "bytes_per_value": 2,  # bfloat16 weights, KV and activations
    "engine_mfu": 0.40,  # share of bf16 peak in the large-batch decode (GEMMs of M = chunk rows)
    "reserve_gb": 6.0,  # CUDA context, allocator slack, prefill activations
    "hf_step_ms": 25.0,  # one batch-1 HF generate() decode step of a 7B model, eager (~40 tokens/s)
    "reload_s": 8.0,  # the authors' per-config model reload (13-15 GB from page cache to GPU)
    # decode layer-steps with shared lower layers / without (issue 20): measured by
    # benchmarks/bench_sharing.py on SmolLM2-135M's full grid (3 released items, 840,364 / 1,616,520)
    "layer_step_share": 0.52,
}

# Shapes from the models' HF configs (paper Sec. 3: LLaMA-2-7B-Chat, Mistral-7B-Instruct-v0.3,
# Qwen2-7B-Instruct). TinySpec is reused as a plain shape record.
MODELS = {
    "LLaMA-2-7B": TinySpec("llama", 32, 4096, 32, 32, 11008, 32000),
    "Mistral-7B-v0.3": TinySpec("mistral", 32, 4096, 32, 8, 14336, 32768),
    "Qwen2-7B": TinySpec("qwen2", 28, 3584, 28, 4, 18944, 152064),
}


def _params(spec: TinySpec) -> float:
    d = spec.hidden_size // spec.n_heads
    per_layer = (2 * spec.hidden_size * spec.n_heads * d + 2 * spec.hidden_size * spec.n_kv_heads * d
                 + 3 * spec.hidden_size * spec.intermediate_size)
    return spec.n_layers * per_layer + 2 * spec.hidden_size * spec.vocab_size  # + embedding and LM head


def model_costs(name: str, spec: TinySpec, a: dict = ASSUMPTIONS, gpu: Gpu = Gpu()) -> dict:
    """FLOPs, memory, chunk size and GPU-hours of one model's sweep (see the module docstring)."""
    b = a["bytes_per_value"]
    d = spec.hidden_size // spec.n_heads
    rows = a["granularities"] * spec.n_layers**2 + 1  # per instance, vanilla included
    p, s, t = a["prefix_tokens"], a["source_tokens"], a["new_tokens"]
    row = row_flops(spec, p, t)
    logits = t * 2 * spec.hidden_size * spec.vocab_size  # the unembedding stays per row
    prefill = prefill_flops(spec, p) + prefill_flops(spec, s)
    per_instance = prefill + rows * row
    shared_instance = prefill + rows * ((row - logits) * a["layer_step_share"] + logits)
    kv_per_token = 2 * spec.n_layers * spec.n_kv_heads * d * b  # keys + values, all layers
    weights = _params(spec) * b
    per_row = (t * kv_per_token  # suffix K/V
               + 3 * 4 * spec.vocab_size  # float32 logits, log-probs, probabilities of one step
               + 4 * b * spec.intermediate_size)  # transient MLP activations of one layer
    free = gpu.memory_gb * GB - weights - 8 * (p + 1) * kv_per_token - a["reserve_gb"] * GB  # 8 prefixes resident
    chunk = int(free // per_row)
    engine_s = per_instance / (a["engine_mfu"] * gpu.bf16_tflops * 1e12)
    shared_s = shared_instance / (a["engine_mfu"] * gpu.bf16_tflops * 1e12)
    # Authors: per config one source forward + one generate (prefill + 20 steps at batch 1).
    prefill_s = prefill / (a["engine_mfu"] * gpu.bf16_tflops * 1e12)
    floor_step_s = weights / (gpu.hbm_tb_s * 1e12)  # batch-1 decode reads every weight once
    gen_floor_s = prefill_s + (t - 1) * floor_step_s
    gen_hf_s = prefill_s + (t - 1) * a["hf_step_ms"] / 1e3
    configs = rows - 1
    n = a["instances"]
    return {
        "model": name,
        "layers": spec.n_layers,
        "rows_per_instance": rows,
        "tflop_per_instance": per_instance / 1e12,
        "prefill_share": prefill / per_instance,
        "weights_gb": weights / GB,
        "prefix_kv_mb": (p + 1) * kv_per_token / 1e6,
        "row_mb": per_row / 1e6,
        "chunk_fits": chunk,
        "engine_s_per_instance": engine_s,
        "engine_gpu_h": n * engine_s / 3600,
        "shared_gpu_h": n * shared_s / 3600,
        "authors_floor_gpu_h": n * configs * gen_floor_s / 3600,
        "authors_hf_gpu_h": n * configs * gen_hf_s / 3600,
        "authors_reload_gpu_h": n * configs * (gen_hf_s + a["reload_s"]) / 3600,
    }


def cost_tables() -> list[dict]:
    return [model_costs(name, spec) for name, spec in MODELS.items()]


def format_costs(costs: list[dict]) -> str:
    head = ("| model | layers | rows/instance | TFLOP/instance (prefill share) | weights GB | prefix K/V MB "
            "| per row MB | rows fitting 80 GB | engine s/instance | engine GPU-h | engine GPU-h, shared layers "
            "| authors GPU-h: HBM floor | HF generate | + reload |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
    lines = [
        f"| {c['model']} | {c['layers']} | {c['rows_per_instance']:,} | {c['tflop_per_instance']:.0f} "
        f"({100 * c['prefill_share']:.2f}%) | {c['weights_gb']:.1f} | {c['prefix_kv_mb']:.0f} | {c['row_mb']:.1f} "
        f"| {c['chunk_fits']:,} | {c['engine_s_per_instance']:.1f} | {c['engine_gpu_h']:.1f} | {c['shared_gpu_h']:.1f} "
        f"| {c['authors_floor_gpu_h']:,.0f} | {c['authors_hf_gpu_h']:,.0f} | {c['authors_reload_gpu_h']:,.0f} |"
        for c in costs
    ]
    total = {k: sum(c[k] for c in costs) for k in ("engine_gpu_h", "shared_gpu_h", "authors_floor_gpu_h",
                                                    "authors_hf_gpu_h", "authors_reload_gpu_h")}
    lines.append(f"| **3 models** | | | | | | | | | **{total['engine_gpu_h']:.0f}** | **{total['shared_gpu_h']:.0f}** "
                 f"| {total['authors_floor_gpu_h']:,.0f} | {total['authors_hf_gpu_h']:,.0f} "
                 f"| {total['authors_reload_gpu_h']:,.0f} |")
    assumptions = ", ".join(f"`{k}={v}`" for k, v in ASSUMPTIONS.items())
    return head + "\n".join(lines) + f"\n\nGPU: {Gpu()}. Assumptions: {assumptions}.\n"


if __name__ == "__main__":
    print(format_costs(cost_tables()))
