"""Benchmark of the transplant engine against the per-config reference loop (issue 6).

    python benchmarks/bench_engine.py [--quick] [--tables compare,layers,length,chunk,granularity]
        [--threads T] [--instances N] [--repeats R] [--doc docs/performance.md | --no-doc] [--json F]

Model: LLaMA architecture built in code (hidden 256, 8 layers, 8k vocabulary, float32, CPU; see
``workload.py``); prompts of about 200 tokens from the bundled sample; 20 new tokens; every
config (vanilla + 3 granularities x N^2) of every instance. Each measurement runs in a fresh
child process (``cells.py``). The engine run is repeated (median and min-max reported); the
reference loop runs once over the same configs, each config timed. Both outputs are compared
(same greedy ids, except after a reference step whose top-2 logit margin is below 1e-4, the
equivalence test's near-tie rule); a mismatch makes the command fail. Nothing about time is
asserted. A full run rewrites the measured section of the performance document.
"""

from __future__ import annotations

import argparse
import datetime
import json
import multiprocessing
import os
import platform
import subprocess
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import cells  # noqa: E402
from cost_model import cost_tables  # noqa: E402
from measure import cpu_counters, other_load  # noqa: E402
from report import format_results, write_doc  # noqa: E402

NEAR_TIE = 1e-4
ALL_GRANS = ["attn", "ffn", "block"]
TABLES = ("compare", "layers", "length", "chunk", "granularity")


def in_child(fn, params: dict) -> dict:
    """Runs ``fn(params)`` in a fresh spawned process (own peak RSS, no state carried over)."""
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(fn, (params,))


def compare(engine_ids: dict, ref: dict) -> dict:
    """Counts configs with identical ids, near-tie divergences and real mismatches."""
    exact = near_tie = 0
    mismatches = []
    for key, ref_ids in ref["ids"].items():
        got = engine_ids[key]
        if got == ref_ids:
            exact += 1
            continue
        k = next((n for n, (a, b) in enumerate(zip(got, ref_ids)) if a != b), min(len(got), len(ref_ids)))
        if min(ref["margins"][key][: k + 1]) < NEAR_TIE:
            near_tie += 1
        else:
            mismatches.append(key)
    return {"checked": len(ref["ids"]), "exact": exact, "near_tie": near_tie, "mismatches": mismatches}


def machine() -> dict:
    lscpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines()
    model = next((line.split(":", 1)[1].strip() for line in lscpu if line.startswith("Model name")),
                 platform.processor())
    return {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="minutes"),
        "cpu": model,
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "load_before": os.getloadavg(),
        "cpu_start": cpu_counters(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="one instance, fewer cells, no document")
    parser.add_argument("--tables", default=",".join(TABLES), help=f"comma list of {', '.join(TABLES)}")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(),
                        help="torch threads per cell (default: torch's, i.e. all cores)")
    parser.add_argument("--instances", type=int, default=None, help="instances per cell (default 2; quick 1)")
    parser.add_argument("--repeats", type=int, default=None, help="engine repeats per cell (default 3; quick 2)")
    parser.add_argument("--chunk-size", type=int, default=256)
    parser.add_argument("--ref-sample", type=int, default=24, help="reference configs timed per scaling cell")
    parser.add_argument("--doc", default=str(Path(__file__).resolve().parents[1] / "docs" / "performance.md"))
    parser.add_argument("--no-doc", action="store_true")
    parser.add_argument("--json", default=None, help="also write the raw results here")
    args = parser.parse_args()
    tables = [t for t in args.tables.split(",") if t]
    if unknown := set(tables) - set(TABLES):
        parser.error(f"unknown tables {sorted(unknown)}; valid: {', '.join(TABLES)}")
    n_inst = args.instances or (1 if args.quick else 2)
    repeats = args.repeats or (2 if args.quick else 3)
    info = machine() | {"threads": args.threads, "quick": args.quick, "command": " ".join(sys.argv)}

    def workload(**kw) -> dict:
        return {"n_layers": 8, "prompt_tokens": 200, "n_instances": n_inst, "max_new_tokens": 20} | kw

    def engine(wl: dict, grans=ALL_GRANS, chunk=args.chunk_size, return_ids=False) -> dict:
        print(f"  engine    {wl} {'/'.join(grans)} chunk={chunk}", flush=True)
        return in_child(cells.engine_cell, {"workload": wl, "granularities": grans, "chunk_size": chunk,
                                            "instance_batch": 8, "repeats": repeats, "threads": args.threads,
                                            "return_ids": return_ids})

    def reference(wl: dict, sample: int | None) -> dict:
        print(f"  reference {wl} sample={sample or 'all'}", flush=True)
        return in_child(cells.reference_cell, {"workload": wl, "granularities": ALL_GRANS, "sample": sample,
                                               "threads": args.threads})

    results: dict = {"machine": info, "tables": {}}
    ref_sample = 8 if args.quick else args.ref_sample
    if "compare" in tables:
        print("compare: engine vs per-config reference loop", flush=True)
        eng = engine(workload(), return_ids=True)
        ref = reference(workload(), 3 * 8 + 1 if args.quick else None)
        check = compare(eng.pop("ids"), ref)
        results["compare"] = {"engine": eng, "reference": {k: v for k, v in ref.items() if k not in ("ids", "margins")},
                              "check": check}
    grids = {
        "layers": [("n_layers", n) for n in ((4, 8) if args.quick else (4, 8, 16))],
        "length": [("prompt_tokens", n) for n in ((100, 400) if args.quick else (100, 400, 1600))],
        "chunk": [("chunk", n) for n in ((64, 256) if args.quick else (16, 64, 256, 1024))],
        "granularity": [("granularity", g) for g in (["attn", "all"] if args.quick else [*ALL_GRANS, "all"])],
    }
    for table in [t for t in tables if t in grids]:
        print(f"{table}:", flush=True)
        rows = []
        for name, value in grids[table]:
            if name in ("n_layers", "prompt_tokens"):
                wl = workload(**{name: value})
                row = {"value": value, "engine": engine(wl), "reference": reference(wl, ref_sample)}
            elif name == "chunk":
                row = {"value": value, "engine": engine(workload(), chunk=value)}
            else:
                row = {"value": value, "engine": engine(workload(), grans=ALL_GRANS if value == "all" else [value])}
            row["reference"] = row.get("reference") or results.get("compare", {}).get("reference")
            if row["reference"] is not None:
                row["reference"] = {k: v for k, v in row["reference"].items() if k not in ("ids", "margins")}
            rows.append(row)
        results["tables"][table] = rows
    info["load_after"] = os.getloadavg()
    info["other_load"] = other_load(info.pop("cpu_start"), cpu_counters())
    results["cost_model"] = cost_tables()
    text = format_results(results)
    print(text)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1, default=str))
    if not args.quick and not args.no_doc:
        write_doc(Path(args.doc), text)
        print(f"wrote {args.doc}")
    if results.get("compare", {}).get("check", {}).get("mismatches"):
        raise SystemExit(f"engine and reference outputs differ: {results['compare']['check']['mismatches'][:5]}")


if __name__ == "__main__":
    main()
