"""One measurement of the real-shape benchmark, run in a fresh child process (``bench_real.py``).

Each cell loads its model (``real_workload.load``: float32, CPU) and the released instances,
sets torch's threads, and times one of: the engine (``engine_cell``: repeated, prefill timed
apart, matmul throughput measured in the same process, optionally a profiled run), the
per-config reference loop (``reference_cell``: ``tests/reference.py`` on an evenly spaced sample
of configs) or the nnsight peer (``peer_cell``: ``nnsight_peer.NnsightPeer``). All three use the
same configs, prompts, stop ids and greedy decoding with the checkpoint's settings.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch
from cells import TimedEngine, _key
from measure import matmul_gflops, peak_rss, reset_peak_rss, rss, step_costs
from real_workload import DATA, Shape, load, real_instances

from pipeline.transplant.engine import Config, EngineOptions
from pipeline.sweep.plan import GridSpec, grid_pairs


def _setup(params: dict):
    torch.set_num_threads(params["threads"])
    model, tok, revision = load(params["model"], Path(params.get("data") or DATA))
    insts = real_instances(params["n_instances"], Path(params.get("data") or DATA))
    return model, tok, revision, insts


def stop_ids(model, tok) -> list[int]:
    """The model's own stop ids (generation_config, else the tokenizer's EOS), as the engine takes them."""
    ids = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    if ids is None:
        ids = tok.eos_token_id
    return sorted({ids} if isinstance(ids, int) else set(ids or ()))


def pairs_of(grid: str, n_layers: int, layers: int | None = None) -> list[tuple[int, int]]:
    """The grid's (source, target) pairs; with ``layers`` = K, restricted to K evenly spaced layers
    (first and last included: K^2 pairs for ``full``, K for ``source_last``), for smoke runs."""
    pairs = grid_pairs(GridSpec(kind=grid), n_layers, task="xnli")
    if not layers or layers >= n_layers:
        return pairs
    keep = {round(k * (n_layers - 1) / (layers - 1)) for k in range(layers)} if layers > 1 else {n_layers - 1}
    return [(i, j) for i, j in pairs if (i in keep or grid == "source_last") and j in keep]


def configs_of(n_instances: int, granularities: list[str], pairs) -> list[Config]:
    """Vanilla plus every (granularity, i, j), instance by instance: the engine's order."""
    return [c for n in range(n_instances)
            for c in [Config(n)] + [Config(n, g, i, j) for g in granularities for i, j in pairs]]


def sample(configs: list, k: int | None) -> list:
    """``k`` evenly spaced configs (all when k is None or larger)."""
    if not k or k >= len(configs):
        return list(configs)
    stride = len(configs) / k
    return [configs[int(m * stride)] for m in range(k)]


def _lengths(tok, insts) -> list[tuple[int, int]]:
    return [(len(tok(x.source_prompt).input_ids), len(tok(x.prompt).input_ids)) for x in insts]


def engine_cell(params: dict) -> dict:
    """Times the engine on every config of the grid; returns times, FLOPs, throughput, ids, profile."""
    model, tok, revision, insts = _setup(params)
    eos = stop_ids(model, tok)
    options = EngineOptions(params["max_new_tokens"], params["chunk_size"], params["instance_batch"],
                            length_aware=params.get("length_aware", True))
    engine = TimedEngine(model, tok, options, eos_token_ids=eos)
    grans, pairs = params["granularities"], pairs_of(params["grid"], engine.n_layers, params.get("layers"))
    list(engine.run(insts[:1], grans[:1], pairs[: min(8, len(pairs))]))  # warm-up
    shape = Shape.of(model.config)
    rows = min(params["chunk_size"], len(configs_of(min(params["instance_batch"], len(insts)), grans, pairs)))
    shapes = [(1024, 1024, 1024), (rows, shape.hidden, shape.intermediate)]
    mm_before = matmul_gflops(shapes)
    base_rss = rss()
    reset_peak_rss()
    totals, prefills = [], []
    for _ in range(params["repeats"]):
        engine.prefill_seconds = 0.0
        start = time.perf_counter()
        gens = list(engine.run(insts, grans, pairs))
        totals.append(time.perf_counter() - start)
        prefills.append(engine.prefill_seconds)
    peak = peak_rss()
    mm_after = matmul_gflops(shapes)
    costs = step_costs(engine, model, insts, grans, pairs)
    lengths = _lengths(tok, insts)
    steps = [len(g.token_ids) + (len(g.token_ids) < params["max_new_tokens"]) for g in gens]
    decode_flops = sum(shape.row_flops(lengths[g.config.instance][1] - 1, s) for g, s in zip(gens, steps, strict=True))
    pre_flops = sum(shape.prefill_flops(t - 1) + shape.prefill_flops(s) for s, t in lengths)
    out = {
        "model": params["model"], "revision": revision, "n_layers": engine.n_layers, "grid": params["grid"],
        "granularities": grans, "configs": len(gens), "instances": [x.id for x in insts], "lengths": lengths,
        "tokens": sum(len(g.token_ids) for g in gens), "steps": sum(steps),
        "stopped_early": sum(len(g.token_ids) < params["max_new_tokens"] for g in gens),
        "seconds": totals, "prefill_seconds": prefills, "decode_flops": decode_flops, "prefill_flops": pre_flops,
        "matmul_gflops": {k: max(mm_before[k], mm_after[k]) for k in mm_before},
        "rss_base": base_rss, "rss_peak": peak, "length_aware": options.length_aware, "costs": costs,
        "instance_batches": engine.instance_batches([(list(range(s)), list(range(t))) for s, t in lengths]),
        "ids": {repr(_key(g.config)): g.token_ids for g in gens} if params.get("return_ids") else None,
    }
    if params.get("profile_instances"):
        from engine_profile import ProfiledEngine, profile_engine

        profiled = ProfiledEngine(model, tok, options, eos_token_ids=eos)
        out["profile"] = profile_engine(profiled, insts[: params["profile_instances"]], grans, pairs)
        out["profile"]["instances"] = min(params["profile_instances"], len(insts))
    return out


def reference_cell(params: dict) -> dict:
    """Times ``reference_generate`` per config on an evenly spaced sample of the grid's configs."""
    from reference import reference_generate

    model, tok, _, insts = _setup(params)
    eos = stop_ids(model, tok)
    n_layers = model.config.num_hidden_layers
    pairs = pairs_of(params["grid"], n_layers, params.get("layers"))
    configs = sample(configs_of(len(insts), params["granularities"], pairs), params.get("sample"))

    def one(c: Config):
        x = insts[c.instance]
        return reference_generate(model, tok, x.prompt, x.source_prompt, c.granularity, c.source_layer,
                                  c.target_layer, params["max_new_tokens"], eos, checkpoint=True)

    one(configs[0])  # warm-up
    base_rss = rss()
    reset_peak_rss()
    times, ids, margins = [], {}, {}
    for c in configs:
        start = time.perf_counter()
        result = one(c)
        times.append(time.perf_counter() - start)
        ids[repr(_key(c))] = result.token_ids
        margins[repr(_key(c))] = result.margins
    return {"configs": len(configs), "tokens": sum(len(v) for v in ids.values()), "seconds_per_config": times,
            "rss_base": base_rss, "rss_peak": peak_rss(), "ids": ids, "margins": margins}


def peer_cell(params: dict) -> dict:
    """Times the nnsight peer on the grid's configs (or an evenly spaced sample), batch by batch."""
    from nnsight_peer import NnsightPeer

    model, tok, _, insts = _setup(params)
    eos = stop_ids(model, tok)
    peer = NnsightPeer(model, tok, params["max_new_tokens"], eos, batch=params["batch"])
    tokens = [(tok(x.source_prompt).input_ids, tok(x.prompt).input_ids) for x in insts]
    n_layers = model.config.num_hidden_layers
    pairs = pairs_of(params["grid"], n_layers, params.get("layers"))
    configs = sample(configs_of(len(insts), params["granularities"], pairs), params.get("sample"))
    peer.run(tokens, configs[:2])  # warm-up (trace and generate code paths)
    base_rss = rss()
    reset_peak_rss()
    start = time.perf_counter()
    ids, seconds = peer.run(tokens, configs)
    wall = time.perf_counter() - start
    return {"configs": len(configs), "batch": params["batch"], "seconds": wall, "phases": seconds,
            "tokens": sum(len(v) for v in ids.values()), "rss_base": base_rss, "rss_peak": peak_rss(),
            "ids": {repr(_key(c)): v for c, v in ids.items()}}
