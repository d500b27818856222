"""Learned per-instance (source layer, target layer) selection (issue 11; docs/selection.md).

The paper (Sec. 6, Tables 4, 6, 7) shows instance-aware upper bounds far above vanilla, and names
"learned controllers" as the open challenge; its only instance-aware rule is entropy-based
selection (Appendix F). This package learns the choice from pilot sweeps:

    features.py  per-instance features at inference cost (two forwards), written by the sweep
    data.py      sweep runs -> instances x (vanilla, candidate configs) correctness + features
    learners.py  scikit-learn scorers of P(correct | instance, candidate)
    fit.py       grouped cross-validation, the margin rule, the saved selector artefact
    evaluate.py  exact simulated selection on held-out runs, the comparison table, gap closed
    apply.py     the sweep side: features per shard, grid=selected
    __main__.py  python -m pipeline.select fit | evaluate
"""
