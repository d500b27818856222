"""Hand-built sweep rows for the reduce tests: tiny Parquet runs in ``pipeline.schema.ROW_SCHEMA``.

EXAMPLE is the hand-computed example every metric test refers to: N = 2 layers, four instances in
languages "a" and "b". Its expected values are worked out by hand in the test files' comments.
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.schema import ROW_SCHEMA

# instance -> (lang, vanilla correct, correct[source][target])
EXAMPLE = {
    "i0": ("a", True, [[1, 0], [0, 0]]),
    "i1": ("a", False, [[0, 0], [1, 1]]),
    "i2": ("b", False, [[0, 0], [0, 0]]),
    "i3": ("b", True, [[1, 0], [0, 1]]),
}
# entropy_mean of the entropy-selection candidates (source, target) = (0, 0) and (1, 0); None = null
EXAMPLE_ENTROPY_MEAN = {"i0": (0.2, 0.9), "i1": (0.5, 0.1), "i2": (0.3, 0.3), "i3": (None, 0.4)}
EXAMPLE_ENTROPY_FIRST = {"i0": (0.9, 0.1), "i1": (0.1, 0.5), "i2": (0.2, 0.3), "i3": (0.1, 0.5)}
# vanilla rows: (logprob_sum, n_new_tokens)
EXAMPLE_VANILLA_LOGPROB = {"i0": (-2.0, 2), "i1": (0.0, 0), "i2": (-3.0, 3), "i3": (0.0, 1)}


def row(instance_id: str, lang: str, source: int | None = None, target: int | None = None, **fields) -> dict:
    """One row with harmless defaults; ``fields`` override any column."""
    values = {
        "instance_id": instance_id, "lang": lang, "response_lang": lang, "granularity": "attn",
        "source_layer": source, "target_layer": target, "token_ids": [7], "response": "ok",
        "correct": False, "n_new_tokens": 1, "logprob_sum": -1.0, "entropy_first": 1.0,
        "entropy_mean": 1.0, "model": "tiny/llama", "task": "xnli", "n_layers": 2, "config_hash": "h1",
    }  # fmt: skip
    values.update(fields)
    return values


def example_rows(skip: set[tuple[str, int, int]] = frozenset(), **fields) -> list[dict]:
    """The EXAMPLE run as rows (vanilla + all four configs per instance), minus ``skip`` configs."""
    rows = []
    for iid, (lang, vanilla, grid) in EXAMPLE.items():
        logprob, n_new = EXAMPLE_VANILLA_LOGPROB[iid]
        rows.append(
            row(
                iid,
                lang,
                **{"correct": vanilla, "logprob_sum": logprob, "n_new_tokens": n_new, "entropy_mean": 5.0, **fields},
            )
        )
        for s in range(2):
            for t in range(2):
                if (iid, s, t) in skip:
                    continue
                entropy = {}
                if t == 0:
                    entropy = {
                        "entropy_mean": EXAMPLE_ENTROPY_MEAN[iid][s],
                        "entropy_first": EXAMPLE_ENTROPY_FIRST[iid][s],
                    }
                rows.append(row(iid, lang, s, t, **{"correct": bool(grid[s][t]), **entropy, **fields}))
    return rows


def write_shard(path: Path, rows: list[dict]) -> Path:
    """Writes ``rows`` as one Parquet shard (parent directories created)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=ROW_SCHEMA), path)
    return path


def write_run_json(run_dir: Path, **meta) -> Path:
    """A run.json as the sweep writes it, with ``meta`` overriding the defaults."""
    values = {
        "model": "tiny/llama", "model_path": "/models/tiny", "task": "xnli", "granularities": ["attn"],
        "n_layers": 2, "groups": {"G": ["a", "b"]}, "config": {"task": {"name": "xnli", "split": "test"}},
        "config_hash": "h1", "grid": "full", "package_version": "0.1.0", "started": "2026-01-01T00:00:00",
        "finished": "2026-01-01T01:00:00", "n_shards": 1,
    }  # fmt: skip
    values.update(meta)
    path = run_dir / "run.json"
    path.write_text(json.dumps(values))
    return path


def write_example_run(run_dir: Path, split_shards: bool = True, **meta) -> Path:
    """The EXAMPLE run as two shards (one in a subdirectory) plus run.json."""
    rows = example_rows()
    if split_shards:
        write_shard(run_dir / "shard-0.parquet", rows[:7])
        write_shard(run_dir / "worker-1" / "shard-1.parquet", rows[7:])
    else:
        write_shard(run_dir / "shard-0.parquet", rows)
    write_run_json(run_dir, **meta)
    return run_dir


def example_outcomes():
    """EXAMPLE as dense (vanilla, grid) Outcomes and the [n] language array (0 = "a", 1 = "b")."""
    import numpy as np

    from pipeline.reduce.results import Outcomes

    ids = list(EXAMPLE)
    vanilla = Outcomes.allocate((4,), with_consistency=True)
    grid = Outcomes.allocate((4, 2, 2), with_consistency=True)
    for k, iid in enumerate(ids):
        _, correct, cells = EXAMPLE[iid]
        vanilla.present[k] = True
        vanilla.correct[k] = correct
        logprob, n_new = EXAMPLE_VANILLA_LOGPROB[iid]
        vanilla.empty[k] = n_new == 0
        vanilla.perplexity[k] = np.exp(-logprob / n_new) if n_new else np.nan
        grid.present[k] = True
        grid.correct[k] = np.array(cells, bool)
        for s in range(2):
            mean, first = EXAMPLE_ENTROPY_MEAN[iid][s], EXAMPLE_ENTROPY_FIRST[iid][s]
            grid.entropy_mean[k, s, 0] = np.nan if mean is None else mean
            grid.entropy_first[k, s, 0] = first
    lang = np.array([0 if EXAMPLE[i][0] == "a" else 1 for i in ids])
    return vanilla, grid, lang
