"""The Parquet row contract between the sweep (writer) and the reduce stage (reader).

One row per (instance, config) plus one vanilla row per instance. Vanilla rows have null
``source_layer`` and ``target_layer``. Layers count from 0 (the paper counts from 1).
Every ``*.parquet`` file below a run's ``out_dir``, read together, is the run's result.
"""

from __future__ import annotations

import pyarrow as pa

from pipeline.errors import PipelineError

ROW_SCHEMA = pa.schema(
    [
        pa.field("instance_id", pa.string(), nullable=False),
        pa.field("lang", pa.string(), nullable=False),
        pa.field("response_lang", pa.string(), nullable=False),  # language a consistent answer is in
        pa.field("granularity", pa.string(), nullable=False),  # attn | ffn | block | attn_released
        pa.field("source_layer", pa.int32()),  # null on vanilla rows
        pa.field("target_layer", pa.int32()),  # null on vanilla rows
        pa.field("token_ids", pa.list_(pa.int32()), nullable=False),  # generated ids, EOS excluded
        pa.field("response", pa.string(), nullable=False),  # decoded, special tokens skipped
        pa.field("correct", pa.bool_(), nullable=False),
        pa.field("n_new_tokens", pa.int32(), nullable=False),
        pa.field("logprob_sum", pa.float64(), nullable=False),  # sum of log p(generated token)
        pa.field("entropy_first", pa.float64()),  # entropy (nats) of the 1st step's distribution
        pa.field("entropy_mean", pa.float64()),  # mean entropy over generated steps
        pa.field("model", pa.string(), nullable=False),
        pa.field("task", pa.string(), nullable=False),
        pa.field("n_layers", pa.int32(), nullable=False),
        pa.field("config_hash", pa.string(), nullable=False),  # identifies the run configuration
    ]
)

GRANULARITIES = ("attn", "ffn", "block", "attn_released")
"""Transplant sites (``pipeline/transplant/sites.py``): attn = the paper's equation, attn_released = the
authors' released code (layer input + attention output), ffn, block (decoder layer output)."""


def check_granularity(name: str) -> str:
    """``name`` if it is one of :data:`GRANULARITIES`; the one check every entry point and the engine use."""
    if name not in GRANULARITIES:
        raise PipelineError(f"granularity '{name}' is not valid; valid: {', '.join(GRANULARITIES)}")
    return name
