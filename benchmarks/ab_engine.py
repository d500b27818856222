"""A/B of the engine between two source trees on the compare workload of ``bench_engine.py``.

    git worktree add ../old COMMIT
    for k in 1 2 3 4 5; do
        python benchmarks/ab_engine.py --repo ../old; python benchmarks/ab_engine.py
    done

Imports the engine, the tiny model and the workload from ``--repo`` (default: this tree; older
trees kept the engine at ``pipeline.engine``), builds the 8-layer bench model, warms up, then times
``--runs`` runs of every config of the workload (2 instances x vanilla + attn/ffn/block x 64 pairs)
and prints one line: median and min of the run, median of its prefill, its grid decode and its CPU
time (which steal time on a VM does not inflate). Run each
tree several times, alternating, on a quiet machine: single runs here spread by +-15%.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repo", type=Path, default=Path(__file__).resolve().parents[1])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    repo = args.repo.resolve()
    sys.path[:0] = [str(repo), str(repo / "benchmarks")]
    import torch
    from workload import Workload, instances

    from pipeline.tiny import EOS_ID, build_tiny

    try:
        from pipeline.transplant.engine import EngineOptions, TransplantEngine
    except ImportError:  # trees before 2026-11-29
        from pipeline.engine import EngineOptions, TransplantEngine

    torch.set_num_threads(args.threads)
    workload = Workload()
    model, tokenizer = build_tiny(workload.spec())
    insts = instances(workload)
    engine = TransplantEngine(model, tokenizer, EngineOptions(workload.max_new_tokens), eos_token_ids=[EOS_ID])
    prefill = [0.0]
    inner = engine._prefill

    def timed_prefill(*a):
        start = time.perf_counter()
        try:
            return inner(*a)
        finally:
            prefill[0] += time.perf_counter() - start

    engine._prefill = timed_prefill
    grans = ["attn", "ffn", "block"]
    pairs = [(i, j) for i in range(workload.n_layers) for j in range(workload.n_layers)]
    list(engine.run(insts[:1], grans[:1], pairs[:16]))  # warm-up
    totals, prefills, cpu = [], [], []
    for _ in range(args.runs):
        prefill[0] = 0.0
        start, cpu_start = time.perf_counter(), time.process_time()
        gens = list(engine.run(insts, grans, pairs))
        totals.append(time.perf_counter() - start)
        cpu.append(time.process_time() - cpu_start)
        prefills.append(prefill[0])
    decodes = [t - p for t, p in zip(totals, prefills)]
    n = len(gens)
    print(
        f"{repo}: {n} configs, {sum(len(g.token_ids) for g in gens)} tokens; "
        f"ms/config median {1e3 * statistics.median(totals) / n:.2f} min {1e3 * min(totals) / n:.2f}; "
        f"prefill s median {statistics.median(prefills):.3f}; grid decode s median {statistics.median(decodes):.3f}; "
        f"CPU s median {statistics.median(cpu):.3f}"
    )


if __name__ == "__main__":
    main()
