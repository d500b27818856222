"""Benchmark on real shapes (issue 13): real models and real released prompts of mixed lengths.

    python benchmarks/bench_real.py [--quick] [--parts real,length] [--models smollm2,gemma3_270m]
        [--grids full,source_last] [--granularity ffn] [--instances N] [--threads T] [--repeats R]
        [--ref-sample K] [--peer-grids source_last] [--peer-batch B] [--profile-instances P]
        [--length-instances M] [--doc docs/performance.md | --no-doc] [--json F]

**real**: for each model (SmolLM2-135M-Instruct, Gemma-3-270M; float32, CPU) and each grid (the
full N x N grid and SourceLast, i = N-1, the paper's Table 4 rows) over N released instances of
mixed lengths (``real_workload.py``), the engine (``pipeline.transplant.engine``, ms per config, repeated),
the per-config reference loop (``tests/reference.py`` on an evenly spaced sample of configs) and
an nnsight peer written as nnsight's documentation recommends (``nnsight_peer.py``; default on the
SourceLast grid only). Engine and peer outputs are checked against the reference (same greedy
ids, except after a reference step whose top-2 margin is below 1e-4); a mismatch fails the run.
A profiled engine run says where the time goes (``engine_profile.py``).

**length**: the issue's real-length workload: the 8-layer architecture of ``bench_engine.py`` on
M released instances through a small BPE vocabulary, all three granularities, full grid; the
engine with length-aware instance batches and with instances in input order (A/B), vs the
reference loop.

Every measurement runs in a fresh child process. Nothing about time is asserted. A full run
(not --quick, not --no-doc) rewrites this benchmark's section of the performance document.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import real_cells  # noqa: E402
from bench_engine import compare, in_child, machine  # noqa: E402
from measure import cpu_counters, other_load  # noqa: E402
from real_report import format_real, write_real_doc  # noqa: E402
from real_workload import BENCH8, DATA  # noqa: E402

PARTS = ("real", "length")
LABELS = {"smollm2": "SmolLM2-135M-Instruct", "gemma3_270m": "Gemma-3-270M", "tiny": "tiny"}


def check(ids: dict, ref: dict) -> dict:
    """``bench_engine.compare`` on the reference configs that ``ids`` also ran."""
    keys = [k for k in ref["ids"] if k in ids]
    return compare(ids, {"ids": {k: ref["ids"][k] for k in keys}, "margins": ref["margins"]})


def _strip(ref: dict) -> dict:
    return {k: v for k, v in ref.items() if k not in ("ids", "margins")}


def _args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help="smoke run: tiny model, 2 instances, 4 layers' grids, 1 repeat; prints only")
    p.add_argument("--parts", default=",".join(PARTS), help=f"comma list of {', '.join(PARTS)}")
    p.add_argument("--models", default=None, help="comma list of conf/model names (default smollm2,gemma3_270m; "
                                                  "quick: tiny)")
    p.add_argument("--grids", default="full,source_last", help="comma list of full, source_last")
    p.add_argument("--granularity", default="ffn", help="comma list of attn, ffn, block (real part)")
    p.add_argument("--instances", type=int, default=None, help="released instances (default 3; quick 2)")
    p.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch threads per cell")
    p.add_argument("--repeats", type=int, default=None, help="engine repeats per cell (default 2; quick 1)")
    p.add_argument("--max-new-tokens", type=int, default=20)
    p.add_argument("--chunk-size", type=int, default=256)
    p.add_argument("--instance-batch", type=int, default=8)
    p.add_argument("--layers", type=int, default=None,
                   help="restrict grids to K evenly spaced layers (smoke runs; quick: 4)")
    p.add_argument("--ref-sample", type=int, default=None,
                   help="reference configs timed per cell (default 16; quick 4)")
    p.add_argument("--peer-grids", default="source_last", help="grids the nnsight peer runs ('' for none)")
    p.add_argument("--peer-batch", type=int, default=None, help="configs per nnsight generate() (default 64; quick 8)")
    p.add_argument("--peer-sample", type=int, default=None, help="evenly spaced configs the peer runs (default all)")
    p.add_argument("--profile-instances", type=int, default=None,
                   help="instances of the profiled engine run per cell (default: 1 on the full grid, all on "
                        "SourceLast; quick 1; 0 = no profile)")
    p.add_argument("--length-instances", type=int, default=None,
                   help="instances of the length part (default 16; quick 4)")
    p.add_argument("--length-granularity", default="attn,ffn,block")
    p.add_argument("--data", default=str(DATA), help="the authors' released data (XNLI/, XQuAD/, GlobalOpinionQA/)")
    p.add_argument("--doc", default=str(Path(__file__).resolve().parents[1] / "docs" / "performance.md"))
    p.add_argument("--no-doc", action="store_true")
    p.add_argument("--json", default=None, help="also write the raw results here")
    args = p.parse_args()
    q = args.quick
    args.models = args.models or ("tiny" if q else "smollm2,gemma3_270m")
    args.instances = args.instances or (2 if q else 3)
    args.repeats = args.repeats or (1 if q else 2)
    args.layers = args.layers or (4 if q else None)
    args.ref_sample = args.ref_sample or (4 if q else 16)
    args.peer_batch = args.peer_batch or (8 if q else 64)
    args.length_instances = args.length_instances or (4 if q else 16)
    for name, value, valid in (("parts", args.parts, PARTS), ("grids", args.grids, ("full", "source_last")),
                               ("peer-grids", args.peer_grids, ("full", "source_last")),
                               ("granularity", args.granularity, ("attn", "ffn", "block")),
                               ("length-granularity", args.length_granularity, ("attn", "ffn", "block"))):
        if unknown := set(filter(None, value.split(","))) - set(valid):
            p.error(f"--{name}: unknown {sorted(unknown)}; valid: {', '.join(valid)}")
    if not Path(args.data).is_dir():
        p.error(f"--data {args.data}: no such directory (the authors' released data)")
    return args


def main() -> None:
    args = _args()
    parts = args.parts.split(",")
    info = machine() | {"threads": args.threads, "quick": args.quick, "command": " ".join(sys.argv)}
    base = {"threads": args.threads, "max_new_tokens": args.max_new_tokens, "chunk_size": args.chunk_size,
            "instance_batch": args.instance_batch, "repeats": args.repeats, "layers": args.layers, "data": args.data}
    results: dict = {"machine": info}
    failures = []

    def run(fn, params: dict, what: str) -> dict:
        print(f"  {what}: {fn.__name__} {json.dumps({k: v for k, v in params.items() if k != 'data'})}", flush=True)
        return in_child(fn, params)

    if "real" in parts:
        grans = args.granularity.split(",")
        results["cells"] = []
        for model in args.models.split(","):
            for grid in args.grids.split(","):
                print(f"{model} {grid}:", flush=True)
                params = base | {"model": model, "grid": grid, "granularities": grans, "n_instances": args.instances}
                profiled = args.profile_instances
                if profiled is None:
                    profiled = 1 if args.quick or grid == "full" else args.instances
                eng = run(real_cells.engine_cell, params | {"return_ids": True, "profile_instances": profiled},
                          "engine")
                ref = run(real_cells.reference_cell, params | {"sample": args.ref_sample}, "reference")
                cell = {"model": model, "label": LABELS.get(model, model), "check": check(eng.pop("ids"), ref)}
                if grid in args.peer_grids.split(","):
                    peer = run(real_cells.peer_cell, params | {"batch": args.peer_batch, "sample": args.peer_sample},
                               "nnsight peer")
                    cell["peer_check"] = check(peer.pop("ids"), ref)
                    cell["peer"] = peer
                cell |= {"engine": eng, "reference": _strip(ref)}
                results["cells"].append(cell)
                for name in ("check", "peer_check"):
                    if name in cell and (cell[name]["mismatches"] or not cell[name]["checked"]):
                        failures.append(f"{model} {grid} {name}: {cell[name]['checked']} configs checked, "
                                        f"mismatches {cell[name]['mismatches'][:5]}")
        results["workload"] = {"instances": results["cells"][0]["engine"]["instances"], "granularities": grans,
                               "max_new_tokens": args.max_new_tokens}
    if "length" in parts:
        print("real-length workload on the bench architecture:", flush=True)
        params = base | {"model": BENCH8, "grid": "full", "granularities": args.length_granularity.split(","),
                         "n_instances": args.length_instances}
        ref = run(real_cells.reference_cell, params | {"sample": args.ref_sample}, "reference")
        runs = []
        for aware in (True, False):
            eng = run(real_cells.engine_cell, params | {"return_ids": True, "length_aware": aware}, "engine")
            runs.append({"engine": eng, "check": check(eng.pop("ids"), ref)})
            if runs[-1]["check"]["mismatches"]:
                failures.append(f"length workload (length_aware={aware}): {runs[-1]['check']['mismatches'][:5]}")
        results["length"] = {"runs": runs, "reference": _strip(ref), "instance_batch": args.instance_batch}
    info["load_after"] = os.getloadavg()
    info["other_load"] = other_load(info.pop("cpu_start"), cpu_counters())
    text = format_real(results)
    print(text)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1, default=str))
    if failures:
        raise SystemExit("outputs differ from the reference (document not written): " + "; ".join(failures))
    if not args.quick and not args.no_doc:
        write_real_doc(Path(args.doc), text)
        print(f"wrote {args.doc}")


if __name__ == "__main__":
    main()
