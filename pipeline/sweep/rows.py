"""Turns the engine's generations of one shard into Parquet rows (``schema.ROW_SCHEMA``).

Decoding and scoring happen here, next to the model, so the driver receives finished Arrow tables
(text, scores and token statistics), never tensors or token ids to decode.
A vanilla generation is computed once per instance and written once per granularity of the run,
so each granularity's rows stand alone in the reports.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import pyarrow as pa
from transformers import PreTrainedTokenizerBase

from pipeline.transplant.engine import Generation
from pipeline.instances import Instance
from pipeline.schema import ROW_SCHEMA
from pipeline.tasks.base import Task


@dataclass(frozen=True)
class RunTags:
    """Columns that are the same on every row of a run."""

    model: str
    task: str
    n_layers: int
    config_hash: str


def shard_table(
    generations: Iterable[Generation],
    instances: Sequence[Instance],
    granularities: Sequence[str],
    task: Task,
    tokenizer: PreTrainedTokenizerBase,
    tags: RunTags,
) -> pa.Table:
    """One row per (instance, config, granularity), vanilla included, as an Arrow table."""
    gens = list(generations)
    texts = tokenizer.batch_decode([g.token_ids for g in gens], skip_special_tokens=True)
    cols: dict[str, list] = {name: [] for name in ROW_SCHEMA.names}
    for gen, text in zip(gens, texts):
        inst = instances[gen.config.instance]
        correct = task.score(inst, text)
        for granularity in [gen.config.granularity] if gen.config.granularity else granularities:
            cols["instance_id"].append(inst.id)
            cols["lang"].append(inst.lang)
            cols["response_lang"].append(inst.response_lang or inst.lang)
            cols["granularity"].append(granularity)
            cols["source_layer"].append(gen.config.source_layer)
            cols["target_layer"].append(gen.config.target_layer)
            cols["token_ids"].append(gen.token_ids)
            cols["response"].append(text)
            cols["correct"].append(correct)
            cols["n_new_tokens"].append(len(gen.token_ids))
            cols["logprob_sum"].append(gen.logprob_sum)
            cols["entropy_first"].append(gen.entropy_first)
            cols["entropy_mean"].append(gen.entropy_mean)
            cols["model"].append(tags.model)
            cols["task"].append(tags.task)
            cols["n_layers"].append(tags.n_layers)
            cols["config_hash"].append(tags.config_hash)
    return pa.table(cols, schema=ROW_SCHEMA)
