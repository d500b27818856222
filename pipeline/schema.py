"""The Parquet row contract between the sweep (writer) and the reduce stage (reader).

One row per (instance, config) plus one vanilla row per instance. Vanilla rows have null
``source_layer`` and ``target_layer``. Layers count from 0 (the paper counts from 1).
Every ``*.parquet`` file below a run's ``out_dir``, read together, is the run's result.
"""

from __future__ import annotations

import pyarrow as pa

ROW_SCHEMA = pa.schema(
    [
        pa.field("instance_id", pa.string(), nullable=False),
        pa.field("lang", pa.string(), nullable=False),
        pa.field("response_lang", pa.string(), nullable=False),  # language a consistent answer is in
        pa.field("granularity", pa.string(), nullable=False),  # one of models.layouts.GRANULARITIES
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
