"""Where the engine's time goes: a torch.profiler run summarised by part of the XTransplant work.

The engine is run under ``torch.profiler`` with ``record_function`` ranges around its phases
(:class:`ProfiledEngine`: the prefill, each chunk's decode) and, inside the decode, around the
model forward, the attention kernel and the LM head (:func:`annotated`: forward hooks and a
wrapping attention kernel, removed on exit). Every aten op's *self* CPU time is assigned to the
innermost range around it:

- ``prefill``: source prompts and target prefixes (activation bank, prefix K/V), once per batch;
- ``decode matmuls``: q/k/v/o projections and the MLP (``aten::mm``/``addmm``... in the forward);
- ``decode other forward ops``: norms, RoPE, activations, residual adds, the transplant write;
- ``attention``: the shared-prefix kernel (prefix and per-row suffix);
- ``unembedding``: the LM head GEMM over the vocabulary (262k for Gemma 3);
- ``token stats``: outside the forward: log-softmax, greedy choice, log p, entropy, processors,
  row bookkeeping;
- ``Python overhead``: wall time not inside any aten op (HF's module code, hooks, the engine's
  loop); the profiler's own per-op cost lands here too, so it is an upper bound.
"""

from __future__ import annotations

import contextlib
import time

import torch
from torch.profiler import ProfilerActivity, profile, record_function
from transformers import AttentionInterface
from transformers.masking_utils import AttentionMaskInterface

from pipeline.transplant import attention
from pipeline.transplant.engine import TransplantEngine

PROFILED_ATTENTION = "xtransplant_profiled"
MATMULS = {"aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm", "aten::matmul", "aten::linear"}
PARTS = ["prefill", "decode matmuls", "decode other forward ops", "attention", "unembedding", "token stats",
         "Python overhead"]
NOTES = {
    "prefill": "source prompts + target prefixes, once per instance batch",
    "decode matmuls": "q/k/v/o projections and MLP of every decode step",
    "decode other forward ops": "norms, RoPE, activations, residual adds, transplant write",
    "attention": "shared-prefix kernel: scores and values over prefix + row suffix",
    "unembedding": "LM head GEMM over the vocabulary",
    "token stats": "log-softmax, greedy choice, log p, entropy, processors, row bookkeeping",
    "Python overhead": "time in no aten op: HF module code, hooks, engine loop, profiler",
}


class ProfiledEngine(TransplantEngine):
    """The engine with its prefill and chunk decodes in named profiler ranges."""

    def _prefill(self, members, tokens):
        with record_function("prefill"):
            return super()._prefill(members, tokens)

    def _run_rows(self, state, rows):
        """The chunks' decodes (``lockstep.ChunkDecode``), each inside the ``decode`` range: a chunk
        decodes whole before its first row is yielded."""
        rows_out = super()._run_rows(state, rows)
        while True:
            with record_function("decode"):
                row = next(rows_out, None)
            if row is None:
                return
            yield row


def _profiled_attention(base: str):
    kernel = attention.make_kernel(base)

    def profiled(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
        with record_function("attention"):
            return kernel(module, query, key, value, attention_mask, scaling=scaling, dropout=dropout, **kwargs)

    return profiled


@contextlib.contextmanager
def annotated(model):
    """Ranges ``forward`` (the model call), ``lm_head`` and ``attention`` while inside; always undone."""
    base = attention.base_implementation(model)
    profiled = _profiled_attention(base)
    AttentionInterface.register(PROFILED_ATTENTION, profiled)
    AttentionMaskInterface.register(PROFILED_ATTENTION, attention.mask_function(base))
    AttentionInterface.register(PROFILED_ATTENTION + attention.DECODE_SUFFIX, profiled)  # decode: no mask (attention.register)
    open_ranges: list = []

    def enter(name):
        def hook(_module, _args):
            rf = record_function(name)
            rf.__enter__()
            open_ranges.append(rf)
        return hook

    def leave(_module, _args, _output):
        open_ranges.pop().__exit__(None, None, None)

    handles = []
    try:
        for name, module in (("forward", model), ("lm_head", model.get_output_embeddings())):
            handles.append(module.register_forward_pre_hook(enter(name)))
            handles.append(module.register_forward_hook(leave))
        model.set_attn_implementation(PROFILED_ATTENTION)
        yield
    finally:
        for handle in handles:
            handle.remove()
        model.set_attn_implementation(attention.register(base))


def _part(event) -> str | None:
    """The part an op's self time belongs to, from the ranges around it (prefill first)."""
    ranges = set()
    node = event.cpu_parent
    while node is not None:
        if node.is_user_annotation:
            ranges.add(node.name)
        node = node.cpu_parent
    for name, part in (("prefill", "prefill"), ("attention", "attention"), ("lm_head", "unembedding")):
        if name in ranges:
            return part
    if "forward" in ranges:
        return "decode matmuls" if event.name in MATMULS else "decode other forward ops"
    return "token stats" if "decode" in ranges else None


def profile_engine(engine: ProfiledEngine, instances, granularities, pairs, table_rows: int = 12) -> dict:
    """Profiles one engine run; returns seconds per part, the wall time and the top-ops table."""
    with annotated(engine.model), profile(activities=[ProfilerActivity.CPU]) as prof:
        start = time.perf_counter()
        n_rows = len(list(engine.run(instances, granularities, pairs)))
        wall = time.perf_counter() - start
    seconds = dict.fromkeys(PARTS, 0.0)
    unassigned = 0.0
    for event in prof.events():
        if event.is_user_annotation or event.device_type != torch.autograd.DeviceType.CPU:
            continue
        part = _part(event)
        if part is None:
            unassigned += event.self_cpu_time_total / 1e6
        else:
            seconds[part] += event.self_cpu_time_total / 1e6
    seconds["Python overhead"] = max(0.0, wall - sum(seconds.values()) - unassigned)
    table = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=table_rows, max_name_column_width=40)
    return {"wall": wall, "configs": n_rows, "seconds": seconds, "unassigned": unassigned, "table": table}
