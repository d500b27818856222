"""One benchmark measurement ("cell"), run in a fresh child process so its peak RSS is its own.

``engine_cell`` times :class:`pipeline.transplant.engine.TransplantEngine` over every config of the
instances (repeated; prefill timed apart from the grid decode) and measures the machine's fp32
matmul throughput in the same process before and after. ``reference_cell`` times the per-config
reference loop of the equivalence test (``tests/reference.py``: one source forward and one HF
``generate()`` per config, batch 1, model resident), on all configs or an evenly spaced sample.
"""

from __future__ import annotations

import statistics
import sys
import time
from dataclasses import asdict
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "benchmarks"))

from measure import matmul_gflops, peak_rss, prefill_flops, reset_peak_rss, row_flops, rss, step_costs  # noqa: E402
from workload import Workload, instances  # noqa: E402

from pipeline.transplant.engine import Config, EngineOptions, TransplantEngine  # noqa: E402
from pipeline.models.tiny import EOS_ID, build_tiny  # noqa: E402


class TimedEngine(TransplantEngine):
    """The engine with its prefill timed, so the grid decode's time is the rest of a run."""

    prefill_seconds = 0.0

    def _prefill(self, members, tokens):
        start = time.perf_counter()
        try:
            return super()._prefill(members, tokens)
        finally:
            self.prefill_seconds += time.perf_counter() - start


def _setup(workload: Workload, threads: int):
    torch.set_num_threads(threads)
    model, tok = build_tiny(workload.spec())
    return model, tok, instances(workload)


def _pairs(n: int) -> list[tuple[int, int]]:
    return [(i, j) for i in range(n) for j in range(n)]


def _key(config: Config) -> tuple:
    return (config.instance, config.granularity, config.source_layer, config.target_layer)


def engine_cell(params: dict) -> dict:
    """Times the engine on all configs of the workload; returns times, FLOPs, RSS, throughput."""
    workload = Workload(**params["workload"])
    model, tok, insts = _setup(workload, params["threads"])
    options = EngineOptions(workload.max_new_tokens, params["chunk_size"], params["instance_batch"])
    engine = TimedEngine(model, tok, options, eos_token_ids=[EOS_ID])
    grans, pairs = params["granularities"], _pairs(workload.n_layers)
    list(engine.run(insts[:1], grans[:1], pairs[: max(1, len(pairs) // 4)]))  # warm-up
    rows = len(engine.configs(len(insts), grans, pairs))
    shapes = [(1024, 1024, 1024), (min(params["chunk_size"], rows), 256, 688)]
    mm_before = matmul_gflops(shapes)
    base_rss = rss()
    reset_peak_rss()
    totals, prefills, cpu = [], [], []
    for _ in range(params["repeats"]):
        engine.prefill_seconds = 0.0
        start, cpu_start = time.perf_counter(), time.process_time()
        gens = list(engine.run(insts, grans, pairs))
        totals.append(time.perf_counter() - start)
        cpu.append(time.process_time() - cpu_start)
        prefills.append(engine.prefill_seconds)
    peak = peak_rss()
    mm_after = matmul_gflops(shapes)
    costs = step_costs(engine, model, insts, grans, pairs)
    spec, steps_max = workload.spec(), workload.max_new_tokens
    prefix = {n: len(tok(x.prompt).input_ids) - 1 for n, x in enumerate(insts)}
    source = {n: len(tok(x.source_prompt).input_ids) for n, x in enumerate(insts)}
    steps = [len(g.token_ids) + (len(g.token_ids) < steps_max) for g in gens]  # + the EOS step
    decode_flops = sum(row_flops(spec, prefix[g.config.instance], s) for g, s in zip(gens, steps))
    pre_flops = sum(prefill_flops(spec, prefix[n]) + prefill_flops(spec, source[n]) for n in prefix)
    return {
        "configs": len(gens),
        "tokens": sum(len(g.token_ids) for g in gens),
        "steps": sum(steps),
        "stopped_early": sum(len(g.token_ids) < steps_max for g in gens),
        "seconds": totals,
        "prefill_seconds": prefills,
        "cpu_seconds": cpu,
        "decode_flops": decode_flops,
        "prefill_flops": pre_flops,
        "matmul_gflops": {k: max(mm_before[k], mm_after[k]) for k in mm_before},
        "rss_base": base_rss,
        "rss_peak": peak,
        "costs": costs,
        "ids": {repr(_key(g.config)): g.token_ids for g in gens} if params.get("return_ids") else None,
        "workload": asdict(workload),
    }


def reference_cell(params: dict) -> dict:
    """Times ``reference_generate`` per config (all, or ``sample`` evenly spaced ones)."""
    from reference import reference_generate

    workload = Workload(**params["workload"])
    model, tok, insts = _setup(workload, params["threads"])
    engine = TransplantEngine(model, tok, EngineOptions(workload.max_new_tokens), eos_token_ids=[EOS_ID])
    configs = engine.configs(len(insts), params["granularities"], _pairs(workload.n_layers))
    if params.get("sample"):
        stride = max(1, len(configs) // params["sample"])
        configs = configs[::stride][: params["sample"]]

    def one(c: Config):
        x = insts[c.instance]
        return reference_generate(model, tok, x.prompt, x.source_prompt, c.granularity, c.source_layer,
                                  c.target_layer, workload.max_new_tokens, [EOS_ID])

    one(configs[-1])  # warm-up
    base_rss = rss()
    reset_peak_rss()
    times, ids, margins = [], {}, {}
    for c in configs:
        start = time.perf_counter()
        result = one(c)
        times.append(time.perf_counter() - start)
        ids[repr(_key(c))] = result.token_ids
        margins[repr(_key(c))] = result.margins
    return {
        "configs": len(configs),
        "tokens": sum(len(v) for v in ids.values()),
        "seconds_per_config": times,
        "median_seconds": statistics.median(times),
        "rss_base": base_rss,
        "rss_peak": peak_rss(),
        "ids": ids,
        "margins": margins,
    }
