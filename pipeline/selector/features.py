"""Per-instance features a selector may look at, at inference cost (issue 11, item 1).

A learned selector (paper Sec. 6 names "learned controllers" as future work) must decide which
(source layer, target layer) config to run *before* running the N x N grid, so its inputs are what
two forwards give: one over the source prompt and one over the full target prompt (right-padded,
batched together). Per instance they are summarised as

* ``cos_<g>[k]``: cosine similarity of the source and target prompts' last-token outputs of layer
  k at granularity g (attn / ffn / block, the sites of ``pipeline.transplant.sites``), for every layer;
* ``log_norm_ratio_<g>[k]``: log(||target output|| / ||source output||) at the same sites;
* ``vanilla_entropy_first``: entropy (nats) of the next-token distribution after the full target
  prompt, which is vanilla's first decoding step (the same number as the vanilla row's
  ``entropy_first``);
* ``vanilla_top2_margin``: p(top-1) - p(top-2) of that distribution;
* ``source_tokens`` / ``target_tokens``: prompt lengths in tokens; plus ``lang`` and ``task``.

A sweep with ``features=true`` writes them per shard to ``out_dir/features/<shard name>``: not a
row file (``pipeline.reduce.results`` skips ``features/``), so the reduce never mistakes them for rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds
import torch
from torch import nn
from transformers import PreTrainedTokenizerBase

from pipeline.transplant.padding import right_pad
from pipeline.errors import PipelineError
from pipeline.instances import Instance
from pipeline.models.layouts import GRANULARITIES
from pipeline.models.prompts import prompt_ids
from pipeline.rundir import FEATURES_DIR
from pipeline.store import Store
from pipeline.transplant.sites import capture_last, decoder_layers
from pipeline.transplant.tokens import entropy

FEATURE_SITES = ("attn", "ffn", "block")
"""The paper's three granularities whose source/target similarity is summarised."""

LAYER_FEATURES = tuple(f"{kind}_{g}" for kind in ("cos", "log_norm_ratio") for g in FEATURE_SITES)
"""List-valued columns, one value per layer: cos_attn, cos_ffn, cos_block, log_norm_ratio_*."""

SCALAR_FEATURES = ("vanilla_entropy_first", "vanilla_top2_margin", "source_tokens", "target_tokens")

FEATURE_SCHEMA = pa.schema(
    [
        pa.field("instance_id", pa.string(), nullable=False),
        pa.field("lang", pa.string(), nullable=False),
        pa.field("task", pa.string(), nullable=False),
        pa.field("model", pa.string(), nullable=False),
        pa.field("n_layers", pa.int32(), nullable=False),
        pa.field("vanilla_entropy_first", pa.float64(), nullable=False),
        pa.field("vanilla_top2_margin", pa.float64(), nullable=False),
        pa.field("source_tokens", pa.int32(), nullable=False),
        pa.field("target_tokens", pa.int32(), nullable=False),
        *(pa.field(name, pa.list_(pa.float32()), nullable=False) for name in LAYER_FEATURES),
    ]
)


class FeatureExtractor:
    """Computes :data:`FEATURE_SCHEMA` rows for instances on a resident model (two forwards each)."""

    def __init__(self, model: nn.Module, tokenizer: PreTrainedTokenizerBase, batch: int = 8):
        self.model = model
        self.tokenizer = tokenizer
        self.batch = max(1, batch)
        self.n_layers = len(decoder_layers(model))
        self.device = next(model.parameters()).device
        self.head = model.get_output_embeddings()
        if self.head is None:
            raise PipelineError(f"model class {type(model).__name__} has no output embeddings (lm_head)")

    def _ids(self, text: str, what: str, instance: Instance) -> list[int]:
        return prompt_ids(self.tokenizer, text, f"instance '{instance.id}': {what}")

    @torch.inference_mode()
    def compute(self, instances: Sequence[Instance], task: str, model_name: str) -> pa.Table:
        """One feature row per instance, in order."""
        parts = [self._batch(instances[s : s + self.batch]) for s in range(0, len(instances), self.batch)]
        cols = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]} if parts else {}
        n = len(instances)
        data = {
            "instance_id": [x.id for x in instances],
            "lang": [x.lang for x in instances],
            "task": [task] * n,
            "model": [model_name] * n,
            "n_layers": [self.n_layers] * n,
        }
        for name in SCALAR_FEATURES:
            data[name] = cols[name].tolist() if n else []
        for name in LAYER_FEATURES:
            data[name] = [row.tolist() for row in cols[name]] if n else []
        return pa.table(data, schema=FEATURE_SCHEMA)

    def _batch(self, batch: Sequence[Instance]) -> dict[str, np.ndarray]:
        """Source prompts and full target prompts in one right-padded forward."""
        sources = [self._ids(x.source_prompt, "source_prompt", x) for x in batch]
        targets = [self._ids(x.prompt, "prompt", x) for x in batch]
        seqs = sources + targets
        ids, mask = right_pad(seqs, self.tokenizer.pad_token_id)
        n = len(batch)
        rows = torch.arange(2 * n, device=self.device)
        last = torch.tensor([len(s) - 1 for s in seqs], device=self.device)
        with capture_last(self.model, rows, last) as bank:  # bank: [2n, G, N, H]
            hidden = self.model.get_decoder()(
                input_ids=ids.to(self.device), attention_mask=mask.to(self.device), use_cache=False
            ).last_hidden_state  # [2n, T, H], after the final norm
        logits = self.head(hidden[rows[n:], last[n:]]).float()  # [n, V]: vanilla's first step
        logp = torch.log_softmax(logits, dim=-1)
        top2 = logp.exp().topk(2, dim=-1).values  # [n, 2]
        source, target = bank[:n].float(), bank[n:].float()  # [n, G, N, H]
        cos = torch.nn.functional.cosine_similarity(source, target, dim=-1, eps=1e-12)  # [n, G, N]
        ratio = torch.log(target.norm(dim=-1).clamp_min(1e-12) / source.norm(dim=-1).clamp_min(1e-12))
        out = {
            "vanilla_entropy_first": entropy(logp).double().cpu().numpy(),
            "vanilla_top2_margin": (top2[:, 0] - top2[:, 1]).double().cpu().numpy(),
            "source_tokens": np.array([len(s) for s in sources], np.int32),
            "target_tokens": np.array([len(t) for t in targets], np.int32),
        }
        for name in FEATURE_SITES:
            g = GRANULARITIES.index(name)
            out[f"cos_{name}"] = cos[:, g].cpu().numpy().astype(np.float32)
            out[f"log_norm_ratio_{name}"] = ratio[:, g].cpu().numpy().astype(np.float32)
        return out


def read_features(run_dir: str | Path) -> pa.Table:
    """Every feature file of a run directory, read together.

    Raises:
        PipelineError: the run has no ``features/`` files (it was swept without ``features=true``)
            or they lack a column of :data:`FEATURE_SCHEMA`.
    """
    store = Store.open(run_dir)
    files = [rel for rel in store.files(FEATURES_DIR, ".parquet", hidden=False) if rel.count("/") == 1]
    if not files:
        raise PipelineError(
            f"run {run_dir} has no feature files ({FEATURES_DIR}/*.parquet); re-run its sweep with features=true"
        )
    table = ds.dataset([store.path(rel) for rel in files], filesystem=store.fs, format="parquet").to_table()
    missing = [name for name in FEATURE_SCHEMA.names if name not in table.schema.names]
    if missing:
        raise PipelineError(f"run {run_dir}: feature files lack column(s) {', '.join(missing)}")
    return table.select(FEATURE_SCHEMA.names)
