"""The sweep stage: tasks -> instances -> shards -> Parquet (paper Sec. 3's N x N sweeps, resumable).

``python -m pipeline.sweep`` (:mod:`.entry`: ``run(cfg)`` under a thin ``@hydra.main``) plans the
configs every instance gets (:mod:`.plan`: the grid kinds), splits instances into shards
(:mod:`.shards`), runs them on one resident model per worker (:mod:`.runner`, in-process or as
Ray actors in :mod:`.workers` with :mod:`.capacity` checks), turns generations into rows
(:mod:`.rows`) and commits each shard atomically to the run's store (:mod:`pipeline.store`: a local
folder or an object-store URI); :mod:`.progress` reports rates and ETA.

Public pieces: :func:`run` and :func:`main` (imported on first use, so that a submodule such as
:mod:`.plan` can be imported without the entry point's dependencies).
"""

from importlib import import_module

_ENTRY = ("run", "main", "write_shard")


def __getattr__(name: str):
    if name in _ENTRY:
        return getattr(import_module("pipeline.sweep.entry"), name)
    raise AttributeError(f"module 'pipeline.sweep' has no attribute '{name}'")
