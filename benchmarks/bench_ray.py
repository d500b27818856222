"""Ray overhead: the same sweep through Ray workers vs in-process, on this machine (issue 4).

    python benchmarks/bench_ray.py [--instances 48] [--repeats 2]

Both runs are fresh `python -m pipeline.sweep` processes on the tiny model over a generated JSONL
task (all three granularities, full 4-layer grid: 49 configs per instance incl. vanilla). Reported:
whole-command wall time (Ray start and worker model loads included) and the ratio. With 2 CPU
cores, in-process uses torch's 2 threads; Ray runs 2 single-threaded worker actors.
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def write_task(path: Path, n: int) -> None:
    words = ["Wasser", "Himmel", "Haus", "Baum", "Stadt", "Fluss", "Berg", "Straße"]
    with path.open("w") as fh:
        for k in range(n):
            w = words[k % len(words)]
            fh.write(json.dumps({
                "id": f"q{k}", "lang": "de",
                "prompt": f"Frage {k}: Was ist ein {w}? Antworte kurz und genau in einem Satz. Antwort:",
                "source_prompt": f"Question {k}: what is a {w}? Answer briefly and precisely in one sentence. Answer:",
                "answer": w.lower(),
            }, ensure_ascii=False) + "\n")


def sweep(task: Path, out: Path, cluster: str) -> float:
    args = [sys.executable, "-m", "pipeline.sweep", "task=jsonl", f"task.path={task}", f"out_dir={out}",
            "granularity=[attn,ffn,block]", "shard_size=4", f"cluster={cluster}"]
    start = time.perf_counter()
    proc = subprocess.run(args, cwd=REPO, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(proc.stderr[-3000:])
    assert re.search(r"\[sweep\] done", proc.stdout)
    return wall


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--instances", type=int, default=48)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    configs = args.instances * 49
    times: dict[str, list[float]] = {"inprocess": [], "local": []}
    with tempfile.TemporaryDirectory() as tmp:
        task = Path(tmp) / "task.jsonl"
        write_task(task, args.instances)
        for r in range(args.repeats):
            for cluster in times:
                times[cluster].append(sweep(task, Path(tmp) / f"{cluster}-{r}", cluster))
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"machine: {platform.processor() or platform.machine()}, {platform.system()}, python {platform.python_version()}")
    print(f"{args.instances} instances x 49 configs = {configs} configs, tiny model, 20 new tokens")
    for k, v in times.items():
        print(f"{k:10s} wall {med[k]:6.1f}s (runs: {', '.join(f'{x:.1f}' for x in v)})  {configs / med[k]:.1f} configs/s")
    print(f"ray / in-process wall-time ratio: {med['local'] / med['inprocess']:.2f}")


if __name__ == "__main__":
    main()
