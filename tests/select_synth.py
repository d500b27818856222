"""Synthetic sweep runs for the selector tests: rows + feature files where the right choice is known.

``write_synthetic_run`` writes a run directory as a ``features=true`` sweep would (row shards in
``pipeline.schema.ROW_SCHEMA`` under ``shards/``, feature files under ``features/``, run.json),
with the correctness of vanilla and of every SourceLast/TargetFirst config drawn by a ``rule``
from the instance's features. No model is involved: the expected selection is known by design.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from reduce_rows import row, write_run_json, write_shard

from pipeline.selector.features import FEATURE_SCHEMA, LAYER_FEATURES

LANGS = ("de", "fr", "sw")


def sl_tf(n_layers: int) -> list[tuple[int, int]]:
    last = n_layers - 1
    return [(last, j) for j in range(n_layers)] + [(i, 0) for i in range(last)]


def signal_rule(features: dict, pair: tuple[int, int] | None, rng) -> bool:
    """cos_block[1] > 0: only (N-1, 2) is right; otherwise only (1, 0); vanilla right 20% of the time."""
    key = features["cos_block"][1] > 0
    n_layers = len(features["cos_block"])
    if pair is None:
        return bool(rng.random() < 0.2)
    if pair == (n_layers - 1, 2):
        return bool(key)
    if pair == (1, 0):
        return bool(not key)
    return bool(rng.random() < 0.05)


def noise_rule(features: dict, pair: tuple[int, int] | None, rng) -> bool:
    """Every config and vanilla right 30% of the time, whatever the features say."""
    return bool(rng.random() < 0.3)


def write_synthetic_run(
    run_dir: Path, n: int, rule=signal_rule, n_layers: int = 4, seed: int = 0, model: str = "tiny",
    granularity: str = "attn", task: str = "xnli", id_prefix: str = "x", pairs=None, config_hash: str = "h1",
    shards: int = 2, with_features: bool = True,
) -> Path:  # fmt: skip
    """A run of ``n`` instances, vanilla + ``pairs`` (default SourceLast + TargetFirst) each."""
    rng = np.random.default_rng(seed)
    pairs = sl_tf(n_layers) if pairs is None else pairs
    feature_rows, rows = [], []
    for k in range(n):
        lang = LANGS[k % len(LANGS)]
        iid = f"{id_prefix}{k}"
        feats = {
            "instance_id": iid, "lang": lang, "task": task, "model": model, "n_layers": n_layers,
            "vanilla_entropy_first": float(rng.random() * 3), "vanilla_top2_margin": float(rng.random()),
            "source_tokens": int(rng.integers(5, 40)), "target_tokens": int(rng.integers(5, 40)),
        }  # fmt: skip
        for name in LAYER_FEATURES:
            feats[name] = rng.uniform(-1, 1, n_layers).astype(np.float32).tolist()
        feature_rows.append(feats)
        common = dict(granularity=granularity, model=model, task=task, n_layers=n_layers, config_hash=config_hash)
        rows.append(row(iid, lang, correct=rule(feats, None, rng), **common))
        for i, j in pairs:
            rows.append(row(iid, lang, i, j, correct=rule(feats, (i, j), rng), **common))
    per_shard = -(-n // shards)
    for s in range(shards):
        name = f"shard-{s:06d}-of-{shards:06d}.parquet"
        ids = {f"{id_prefix}{k}" for k in range(s * per_shard, min(n, (s + 1) * per_shard))}
        write_shard(run_dir / "shards" / name, [r for r in rows if r["instance_id"] in ids])
        if with_features:
            part = [f for f in feature_rows if f["instance_id"] in ids]
            path = run_dir / "features" / name
            path.parent.mkdir(parents=True, exist_ok=True)
            pq.write_table(pa.Table.from_pylist(part, schema=FEATURE_SCHEMA), path)
    write_run_json(
        run_dir, model=model, task=task, n_layers=n_layers, granularities=[granularity], config_hash=config_hash,
        groups={"High": ["de", "fr"], "Low": ["sw"]}, grid="pairs", pairs=[list(p) for p in pairs],
        config={"task": {"name": task, "split": "pilot"}},
    )  # fmt: skip
    return run_dir
