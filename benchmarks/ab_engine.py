"""A/B of the engine between two source trees on the compare workload of ``bench_engine.py``.

    git worktree add ../old COMMIT
    for k in 1 2 3 4 5; do
        python benchmarks/ab_engine.py --repo ../old; python benchmarks/ab_engine.py
    done

Runs ``--repo``'s own ``cells.engine_cell`` (default: this tree) in this process: the 8-layer bench
model, a warm-up, then ``--runs`` timed runs of every config of the workload (2 instances x vanilla
+ attn/ffn/block x 64 pairs), each tree with its own engine and harness. Prints one line: median
and min ms per config, median prefill, grid decode and CPU time (which steal time on a VM does not
inflate). Run each tree several times, alternating, on a quiet machine: single runs here spread by
+-15%.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from dataclasses import asdict
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repo", type=Path, default=Path(__file__).resolve().parents[1])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    repo = args.repo.resolve()
    sys.path[:0] = [str(repo), str(repo / "benchmarks")]
    import cells
    from workload import Workload

    result = cells.engine_cell({
        "workload": asdict(Workload()), "threads": args.threads, "chunk_size": 256, "instance_batch": 8,
        "granularities": ["attn", "ffn", "block"], "repeats": args.runs,
    })  # fmt: skip
    n, totals, prefills = result["configs"], result["seconds"], result["prefill_seconds"]
    print(
        f"{repo}: {n} configs, {result['tokens']} tokens; "
        f"ms/config median {1e3 * statistics.median(totals) / n:.2f} min {1e3 * min(totals) / n:.2f}; "
        f"prefill s median {statistics.median(prefills):.3f}; "
        f"grid decode s median {statistics.median(t - p for t, p in zip(totals, prefills)):.3f}; "
        f"CPU s median {statistics.median(result['cpu_seconds']):.3f}"
    )


if __name__ == "__main__":
    main()
