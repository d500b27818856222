"""The result traffic of one shard at the paper's scale, and what committing it costs per store.

    python benchmarks/store_roundtrip.py [--instances 16] [--layers 32] [--repeats 5]

A shard of the paper's main sweep: ``--instances`` instances x (N^2 configs of an N-layer model
+ vanilla) rows, each with 20 generated token ids and a response of about 60 characters (the
engine's ``max_new_tokens`` and a typical short answer). Prints its size in memory (what a worker
returns through Ray's object store) and as Parquet, and the time of the driver's commit
(``pipeline.sweep.write_shard``: write, then read the footer back) into a local folder and into an
S3-compatible server on loopback (moto in server mode, started and stopped here). Needs
``pip install 'moto[server]'``.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs

from pipeline.sweep.runner import ShardResult
from pipeline.schema import ROW_SCHEMA
from pipeline.sweep.shards import Shard
from pipeline.store import Store
from pipeline.sweep import write_shard


def paper_shard(instances: int, layers: int, seed: int = 0) -> pa.Table:
    """A shard's rows in ROW_SCHEMA with realistic contents (random token ids and responses)."""
    rng = np.random.default_rng(seed)
    configs = [(None, None)] + [(i, j) for i in range(layers) for j in range(layers)]
    rows = []
    for n in range(instances):
        for source, target in configs:
            tokens = rng.integers(0, 32000, 20).tolist()
            rows.append({
                "instance_id": f"xnli-de-{n:05d}", "lang": "de", "response_lang": "de", "granularity": "attn",
                "source_layer": source, "target_layer": target, "token_ids": tokens,
                "response": "".join(chr(97 + t % 26) for t in tokens) * 3, "correct": bool(tokens[0] % 2),
                "n_new_tokens": 20, "logprob_sum": float(-rng.random() * 30), "entropy_first": float(rng.random() * 5),
                "entropy_mean": float(rng.random() * 5), "model": "Llama-2-7b-chat-hf", "task": "xnli",
                "n_layers": layers, "config_hash": "0123456789abcdef",
            })  # fmt: skip
    return pa.Table.from_pylist(rows, schema=ROW_SCHEMA)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _commit_times(store: Store, table: pa.Table, repeats: int) -> list[float]:
    shard = Shard(index=0, total=1, instances=())
    result = ShardResult(0, table, None, table.num_rows, 0.0, "bench")
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        write_shard(store, shard, result, table.num_rows)
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=16)
    parser.add_argument("--layers", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    table = paper_shard(args.instances, args.layers)
    with tempfile.TemporaryDirectory() as tmp:
        local = Store.open(Path(tmp) / "run")
        local_times = _commit_times(local, table, args.repeats)
        parquet = local.info("shards/shard-000000-of-000001.parquet").size
    port = _free_port()
    moto = str(Path(sys.executable).parent / "moto_server")
    env = {**os.environ, "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench"}
    os.environ.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench")
    server = subprocess.Popen([moto, "-H", "127.0.0.1", "-p", str(port)], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        query = f"endpoint_override=127.0.0.1:{port}&scheme=http&region=us-east-1"
        for _ in range(100):
            try:
                fs, _ = pafs.FileSystem.from_uri(f"s3://xtbench?{query}&allow_bucket_creation=true")
                fs.create_dir("xtbench")
                break
            except OSError:
                time.sleep(0.1)
        s3_times = _commit_times(Store.open(f"s3://xtbench/run?{query}"), table, args.repeats)
    finally:
        server.kill()
        server.wait()
    rows = table.num_rows
    print(f"shard: {args.instances} instances x ({args.layers}^2 + 1) = {rows:,} rows")
    print(f"in memory (Ray object store): {table.nbytes / 2**20:.2f} MiB = {table.nbytes / rows:.0f} B/row")
    print(f"Parquet: {parquet / 2**20:.2f} MiB = {parquet / rows:.1f} B/row")
    for name, times in (("local folder", local_times), ("S3 (moto, loopback)", s3_times)):
        print(f"commit (write + footer read back) into {name}: median {statistics.median(times) * 1e3:.0f} ms "
              f"(min {min(times) * 1e3:.0f}, max {max(times) * 1e3:.0f}; {args.repeats} runs)")  # fmt: skip


if __name__ == "__main__":
    main()
