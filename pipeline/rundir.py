"""What a sweep writes inside its out_dir, by name: the one place the sweep (which writes it) and
reduce and select (which read it, through :class:`pipeline.store.Store`) take those names from.

``out_dir/shards/shard-<k>-of-<n>.parquet`` holds the rows of shard k of n; ``features/`` the
per-shard selector features under the same names (``features=true`` or ``grid=selected``);
``run.json`` the run's identity, plan and progress; ``.lock`` who is writing it now.
"""

from __future__ import annotations

import json

from pipeline.errors import PipelineError
from pipeline.store import Store

SHARD_DIR = "shards"
FEATURES_DIR = "features"
RUN_FILE = "run.json"
LOCK_FILE = ".lock"


def shard_name(index: int, total: int) -> str:
    """The file name of shard ``index`` of ``total``: a resume and the reduce find shards by it."""
    return f"shard-{index:06d}-of-{total:06d}.parquet"


def features_rel(name: str) -> str:
    """Where the feature file of the shard named ``name`` goes inside its run's store."""
    return f"{FEATURES_DIR}/{name}"


def read_run(store: Store) -> dict | None:
    """The store's ``run.json``, or None when it has none.

    Raises:
        PipelineError: the file is not valid JSON.
    """
    if not store.is_file(RUN_FILE):
        return None
    try:
        return json.loads(store.read_text(RUN_FILE))
    except json.JSONDecodeError as err:
        raise PipelineError(
            f"{store.describe(RUN_FILE)}: not valid JSON ({err}); move it away or use another out_dir"
        ) from err
