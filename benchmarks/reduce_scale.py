"""Scale benchmark of the reduce stage (issue 5): a synthetic full PilotSet-size sweep.

Writes ~2.4 million rows (32 layers -> 1,024 configs + vanilla, for 2,346 instances in 23
languages, one granularity) as Parquet shards in ``pipeline.schema.ROW_SCHEMA`` with a run.json,
trains a tiny fastText language-ID model on the synthetic vocabulary so language consistency is
measured too, then runs ``python -m pipeline.reduce`` in a child process and reports its wall time
and peak RSS (``resource.getrusage(RUSAGE_CHILDREN).ru_maxrss``).

    python benchmarks/reduce_scale.py [--dir DIR] [--per-lang 102] [--layers 32] [--no-lid]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from pipeline.schema import ROW_SCHEMA  # noqa: E402

GROUPS = {
    "High": ["de", "fr", "es", "ru", "zh", "ja", "pt", "it"],
    "Mid": ["ar", "tr", "vi", "ko", "id", "nl", "pl", "uk"],
    "Low": ["sw", "ur", "hi", "bn", "te", "th", "el"],
}
LANGS = [x for g in GROUPS.values() for x in g]
RESPONSES_PER_INSTANCE = 16
INSTANCES_PER_SHARD = 128


def vocabulary(lang: str, rng: np.random.Generator) -> list[str]:
    """Twenty made-up words per language, distinct enough for a tiny fastText model to tell apart."""
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    alphabet = rng.choice(letters, size=8, replace=False)
    return [lang + "".join(rng.choice(alphabet, size=5)) for _ in range(20)]


def write_run(out: Path, n_layers: int, per_lang: int, seed: int = 0) -> int:
    """Writes the synthetic run into ``out``; returns the row count."""
    rng = np.random.default_rng(seed)
    vocab = {lang: vocabulary(lang, rng) for lang in LANGS}
    n_configs = n_layers * n_layers
    source = np.repeat(np.arange(n_layers, dtype=np.int32), n_layers)
    target = np.tile(np.arange(n_layers, dtype=np.int32), n_layers)
    # config effect: early target layers help a little, late ones hurt (shape of the paper's Fig. 3)
    effect = 0.08 * np.cos(np.pi * target / n_layers) - 0.02 * (source < n_layers // 4)
    instances = [(f"{lang}-{k:04d}", lang) for lang in LANGS for k in range(per_lang)]
    rows = 0
    for shard, start in enumerate(range(0, len(instances), INSTANCES_PER_SHARD)):
        chunk = instances[start : start + INSTANCES_PER_SHARD]
        n = len(chunk)
        base = rng.uniform(0.2, 0.8, size=n)
        p_config = np.clip(base[:, None] + effect[None, :], 0, 1)  # [n, n_configs]
        p = np.column_stack([base, p_config]).reshape(-1)  # vanilla first, then configs
        total = n * (n_configs + 1)
        is_vanilla = np.tile(np.r_[True, np.zeros(n_configs, bool)], n)
        src = np.tile(np.r_[0, source], n)
        tgt = np.tile(np.r_[0, target], n)
        n_new = rng.integers(0, 21, size=total).astype(np.int32)
        offsets = np.r_[0, np.cumsum(n_new)].astype(np.int32)
        responses = [
            "" if k == 0 else " ".join(rng.choice(vocab[lang] if k % 5 else vocab["de"], size=3)) + f" {k}"
            for _, lang in chunk for k in range(RESPONSES_PER_INSTANCE)
        ]  # fmt: skip
        pick = np.repeat(np.arange(n) * RESPONSES_PER_INSTANCE, n_configs + 1) + rng.integers(
            0, RESPONSES_PER_INSTANCE, size=total
        )
        ids = pa.array([i for i, _ in chunk]).take(pa.array(np.repeat(np.arange(n), n_configs + 1)))
        langs = pa.array([lang for _, lang in chunk]).take(pa.array(np.repeat(np.arange(n), n_configs + 1)))
        table = pa.table(
            {
                "instance_id": ids,
                "lang": langs,
                "response_lang": langs,
                "granularity": pa.array(["attn"] * total),
                "source_layer": pa.array(src, pa.int32(), mask=is_vanilla),
                "target_layer": pa.array(tgt, pa.int32(), mask=is_vanilla),
                "token_ids": pa.ListArray.from_arrays(
                    pa.array(offsets), pa.array(rng.integers(3, 32000, size=offsets[-1], dtype=np.int32))
                ),
                "response": pa.DictionaryArray.from_arrays(pa.array(pick.astype(np.int32)), pa.array(responses)).cast(
                    pa.string()
                ),
                "correct": pa.array(rng.random(total) < p),
                "n_new_tokens": pa.array(n_new),
                "logprob_sum": pa.array(-n_new * rng.exponential(0.6, size=total)),
                "entropy_first": pa.array(rng.exponential(1.0, size=total)),
                "entropy_mean": pa.array(rng.exponential(0.8, size=total)),
                "model": pa.array(["synthetic/Llama-2-7b-chat-hf"] * total),
                "task": pa.array(["xnli"] * total),
                "n_layers": pa.array(np.full(total, n_layers, np.int32)),
                "config_hash": pa.array(["bench0001"] * total),
            },
            schema=ROW_SCHEMA,
        )
        pq.write_table(table, out / f"shard-{shard:05d}.parquet")
        rows += total
    meta = {"model": "synthetic/Llama-2-7b-chat-hf", "task": "xnli", "granularities": ["attn"], "n_layers": n_layers,
            "groups": GROUPS, "config": {"task": {"name": "xnli", "split": "pilot", "prompt": "direct"}},
            "config_hash": "bench0001", "grid": "full", "n_shards": shard + 1}  # fmt: skip
    (out / "run.json").write_text(json.dumps(meta))
    return rows


def train_lid(out: Path, seed: int = 0) -> Path:
    """A tiny fastText supervised language-ID model over the synthetic vocabularies."""
    import fasttext

    rng = np.random.default_rng(seed)
    lines = [f"__label__{lang} " + " ".join(rng.choice(words, size=4)) for lang, words in
             ((x, vocabulary(x, np.random.default_rng(seed))) for x in LANGS) for _ in range(30)]  # fmt: skip
    rng.shuffle(lines)
    train = out / "lid.train.txt"
    train.write_text("\n".join(lines) + "\n")
    model = fasttext.train_supervised(input=str(train), epoch=25, lr=1.0, dim=16, minn=2, maxn=4, verbose=0, thread=1)
    path = out / "lid.bin"
    model.save_model(str(path))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dir", type=Path, help="where to write the run (default: a temporary directory)")
    parser.add_argument("--per-lang", type=int, default=102, help="instances per language (23 languages)")
    parser.add_argument("--layers", type=int, default=32)
    parser.add_argument("--no-lid", action="store_true", help="skip language consistency")
    args = parser.parse_args()
    root = args.dir or Path(tempfile.mkdtemp(prefix="reduce-bench-"))
    run_dir = root / "run"
    run_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    rows = write_run(run_dir, args.layers, args.per_lang)
    print(f"wrote {rows:,} rows in {time.perf_counter() - t0:.1f}s to {run_dir}")
    command = [sys.executable, "-m", "pipeline.reduce", f"run={run_dir}"]
    if not args.no_lid:
        command.append(f"report.lid_model={train_lid(root)}")
    t0 = time.perf_counter()
    subprocess.run(command, check=True, cwd=Path(__file__).resolve().parents[1])
    wall = time.perf_counter() - t0
    peak_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    lid = "without" if args.no_lid else "with"
    print(f"reduce: {rows:,} rows, wall {wall:.1f}s, peak RSS {peak_mib:.0f} MiB ({lid} language ID)")


if __name__ == "__main__":
    main()
