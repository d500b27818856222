"""The reduce stage: a run's Parquet shards -> tables, ``summary.json``, ``report.md`` and figures.

``python -m pipeline.reduce`` (:mod:`.entry`) checks a run is complete (:mod:`.completeness`),
reads its rows (:mod:`.results`), computes the paper's metrics (:mod:`.metrics`: win/tie/lose
rates, Eq. 3-5 upper bounds, layer-wise gains, bootstrap intervals; :mod:`.langid` for the
response-language check of Sec. 4), writes ``summary.json`` and CSVs (:mod:`.summary`), the report
(:mod:`.report`) and the figures (:mod:`.plots`).

Public pieces: :func:`run`, :func:`main`, :class:`ReduceConfig` and ``REPORT_MARKER`` (imported
on first use: :mod:`.metrics` alone does not pull matplotlib in).
"""

from importlib import import_module

_ENTRY = ("run", "main", "ReduceConfig", "ReportConfig", "REPORT_MARKER")


def __getattr__(name: str):
    if name in _ENTRY:
        return getattr(import_module("pipeline.reduce.entry"), name)
    raise AttributeError(f"module 'pipeline.reduce' has no attribute '{name}'")
