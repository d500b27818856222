"""Host memory of loading a model as a sweep's worker does (``pipeline.models.load_model``).

    python benchmarks/load_rss.py [--model smollm2] [--device cpu|cuda] [--dtype float32]

Loads once in this process and prints the load time, the parameters' size and the process's peak
RSS (``resource.getrusage``). Workers load with ``device_map={"": device}``: on CUDA the weights
should not pass through host memory as a whole copy, so the peak RSS stays far below the weights.
"""

from __future__ import annotations

import argparse
import resource
import time

from pipeline.models.config import named_model_spec
from pipeline.models import load_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32")
    args = parser.parse_args()
    start = time.perf_counter()
    loaded = load_model(named_model_spec(args.model, device=args.device, dtype=args.dtype))
    seconds = time.perf_counter() - start
    unique = {p.data_ptr(): p.numel() * p.element_size() for p in loaded.model.parameters()}
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{args.model} on {args.device} ({args.dtype}): loaded in {seconds:.1f} s; parameters "
          f"{sum(unique.values()) / 2**20:.0f} MiB; peak RSS {peak:.0f} MiB")


if __name__ == "__main__":
    main()
