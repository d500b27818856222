"""Learning per-instance (source layer, target layer) selection (issue 11; docs/selection.md).

The paper (Sec. 6, Tables 4, 6, 7) shows instance-aware upper bounds far above vanilla, and names
"learned controllers" as the open challenge; its only instance-aware rule is entropy-based
selection (Appendix F). This package learns the choice from pilot sweeps; what a sweep needs to
compute features and apply a fitted selector is :mod:`pipeline.selector`'s (an earlier stage):

    data.py      sweep runs -> instances x (vanilla, candidate configs) correctness + features
    fit.py       grouped cross-validation, the margin rule's margin, saving the selector
    evaluate.py  exact simulated selection on held-out runs, the comparison table, gap closed
    __main__.py  python -m pipeline.select fit | evaluate
"""
