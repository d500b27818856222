"""What the benchmark measures besides wall time: needed FLOPs, matmul throughput, peak RSS, and
the CPU other processes took during the run.

FLOPs count only the matmul work the XTransplant grid needs (multiply-add = 2 FLOPs; norms,
RoPE, softmax and sampling are not counted). For a decoder with L layers, hidden H, h query heads
and g kv heads of size d, MLP width I, vocabulary V, one token that attends to c positions costs

    F(c) = 2 L (H h d + 2 H g d + h d H + 3 H I)  +  4 L h d c  [+ 2 H V if its logits are needed]

(q, k, v, o projections and the gated MLP; QK^T and PV; the LM head). Needed work per instance:
the source prompt (S tokens) and the target prefix (P tokens) once, without logits; then per
config row, steps k = 0 .. s-1 at c = P + k + 1 with logits (step 0 is the last prompt token,
where the transplant happens; s = tokens generated, plus the EOS step if the row stopped early).
"""

from __future__ import annotations

import os
import resource
import time
from pathlib import Path

import torch

from pipeline.models.tiny import TinySpec


def _linear_macs(spec: TinySpec) -> int:
    d = spec.hidden_size // spec.n_heads
    h, g, hidden = spec.n_heads, spec.n_kv_heads, spec.hidden_size
    per_layer = hidden * h * d + 2 * hidden * g * d + h * d * hidden + 3 * hidden * spec.intermediate_size
    return spec.n_layers * per_layer


def token_flops(spec: TinySpec, context: int, logits: bool) -> float:
    """F(c) of the module docstring."""
    d = spec.hidden_size // spec.n_heads
    flops = 2 * _linear_macs(spec) + 4 * spec.n_layers * spec.n_heads * d * context
    return flops + (2 * spec.hidden_size * spec.vocab_size if logits else 0)


def prefill_flops(spec: TinySpec, n_tokens: int) -> float:
    """A causal forward over ``n_tokens`` (no logits): sum of F(c) for c = 1 .. n."""
    d = spec.hidden_size // spec.n_heads
    return n_tokens * 2 * _linear_macs(spec) + 4 * spec.n_layers * spec.n_heads * d * n_tokens * (n_tokens + 1) / 2


def row_flops(spec: TinySpec, prefix: int, steps: int) -> float:
    """One config row: ``steps`` single-token forwards with logits after a ``prefix``-token prefix."""
    return sum(token_flops(spec, prefix + k + 1, logits=True) for k in range(steps))


def matmul_gflops(shapes: list[tuple[int, int, int]], seconds: float = 0.6) -> dict[str, float]:
    """Best sustained fp32 GFLOP/s of ``x @ w.T`` per (m, k, n) shape, with torch's current threads.

    Each shape runs for about ``seconds`` in 5 slices; the best slice counts (the least disturbed
    by other processes on a shared machine).
    """
    out = {}
    for m, k, n in shapes:
        x, w = torch.randn(m, k), torch.randn(n, k)
        for _ in range(3):
            torch.nn.functional.linear(x, w)
        best = float("inf")
        for _ in range(5):
            start, calls = time.perf_counter(), 0
            while time.perf_counter() - start < seconds / 5:
                torch.nn.functional.linear(x, w)
                calls += 1
            best = min(best, (time.perf_counter() - start) / calls)
        out[f"{m}x{k}x{n}"] = 2 * m * k * n / best / 1e9
    return out


def _status(field: str) -> int:
    """A ``/proc/self/status`` memory field in bytes (0 where /proc is absent)."""
    status = Path("/proc/self/status")
    if not status.exists():
        return 0
    for line in status.read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    return 0


def rss() -> int:
    return _status("VmRSS")


def peak_rss() -> int:
    """Peak resident set size since the process started or since :func:`reset_peak_rss`."""
    return _status("VmHWM")


def reset_peak_rss() -> bool:
    """Resets the kernel's RSS high-water mark to the current RSS (Linux); False if not possible."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def cpu_counters() -> dict:
    """A snapshot for :func:`other_load`: wall clock, the machine's busy CPU seconds, this tree's own.

    Busy = user + nice + system + irq + softirq of /proc/stat's first line (steal excluded: that is
    the hypervisor's); own = this process's CPU time plus that of its children already reaped
    (the benchmark's cells run in child processes that end before the next snapshot).
    """
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq = fields[:7]
    tick = os.sysconf("SC_CLK_TCK")
    own = sum(getattr(resource.getrusage(who), f) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
              for f in ("ru_utime", "ru_stime"))
    return {"wall": time.monotonic(), "busy": (user + nice + system + irq + softirq) / tick, "own": own}


def other_load(start: dict, end: dict) -> dict:
    """CPU seconds other processes used between two :func:`cpu_counters`, and their mean cores.

    The load average cannot say this: during a run it counts the benchmark's own threads.
    """
    seconds = max(0.0, (end["busy"] - start["busy"]) - (end["own"] - start["own"]))
    wall = max(end["wall"] - start["wall"], 1e-9)
    return {"seconds": round(seconds, 1), "wall": round(wall, 1), "cores": round(seconds / wall, 3)}


def step_costs(engine, model, instances, granularities, pairs) -> dict:
    """One more run of the same work under :class:`pipeline.transplant.counting.StepCosts`: what a
    GPU pays per decode step (host syncs, dispatched ops), counted on the CPU (deterministic)."""
    from pipeline.transplant.counting import StepCosts

    with StepCosts(model) as costs:
        list(engine.run(instances, granularities, pairs))
    return {"syncs_per_step": costs.syncs_per_step, "max_decode_syncs": max(costs.decode_step_syncs, default=0),
            "decode_step_ops": costs.decode_step_ops, "ops_per_step": costs.ops_per_step}


def costs_text(cell: dict) -> str:
    """``syncs/step · ops/step`` of a cell (the decode step's median ops), or – when not counted."""
    c = cell.get("costs")
    return f"{c['syncs_per_step']:.2f} · {c['decode_step_ops']:.0f}" if c else "–"
