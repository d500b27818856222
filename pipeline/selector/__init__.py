"""A fitted selector as a sweep uses it: features, the selector, its files, ``grid=selected``.

Instance-aware layer selection (paper Sec. 6) is learned by :mod:`pipeline.select` from what
sweeps wrote; this package holds what a sweep itself needs, so that the sweep never imports the
stage that learns from its output:

    features.py  per-instance features at inference cost (two forwards), written by the sweep
    learners.py  scikit-learn scorers of P(correct | instance, candidate)
    fitted.py    a fitted selector: its scorer, the margin rule, loading it back
    artefact.py  its directory on disk: data, never code (selector.json + estimators.skops)
    apply.py     ``grid=selected`` as a per-instance plan of the sweep
"""
