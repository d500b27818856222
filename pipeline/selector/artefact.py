"""A selector directory on disk: data, never code (issue 28).

Selector directories travel between people (``grid.selector=DIR``), so loading one must not be
able to run anything. The directory holds:

- ``selector.json``: the marker (``kind``), the rule (margin, candidates), the feature vocabulary,
  the learner's hyperparameters and any constant columns, and the training metadata (JSON);
- ``estimators.skops``: the fitted scikit-learn estimators in skops's format, which rebuilds only
  the types it is told to trust. :data:`TRUSTED` is this project's explicit allow-list (the types
  its two learners leave in a fitted model beyond skops's own defaults); a file that names any
  other type is refused before anything in it is constructed;
- ``cv.json`` / ``cv.md``: the cross-validation report.

A selector's *fingerprint* hashes ``selector.json`` and ``estimators.skops``; a sweep records it in
its identity and every worker checks it before it loads the selector, so a directory changed after
the driver looked at it is refused, not used. A directory that holds only a pickle (the format
before this one, ``selector.joblib``) is refused in one line: unpickling can run code.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from pipeline.errors import PipelineError

MARKER = "selector.json"
ESTIMATORS = "estimators.skops"
PICKLE = "selector.joblib"
KIND = "xtransplant-selector"
FORMAT = 2
FILES = frozenset({MARKER, ESTIMATORS, "cv.json", "cv.md"})
"""What ``pipeline.select fit`` writes into its directory (and so may replace)."""

TRUSTED = (
    "functools.partial",
    "numpy.dtype",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "sklearn.utils.validation.check_array",
)
"""Types a fitted selector holds that skops does not trust by default (found by dumping each learner)."""


def write(directory: Path, meta: dict, estimators) -> None:
    """Writes ``selector.json`` (``meta`` + the marker) and ``estimators.skops`` into ``directory``."""
    import skops.io

    skops.io.dump(estimators, directory / ESTIMATORS)
    (directory / MARKER).write_text(json.dumps({"kind": KIND, "format": FORMAT, **meta}, indent=1) + "\n")


def read(path: str | Path, expected: str | None = None) -> tuple[dict, object]:
    """(metadata, estimators) of a selector directory, after checking what it holds.

    Args:
        expected: the fingerprint the directory must have (a sweep's worker passes the driver's).

    Raises:
        PipelineError: not a selector directory, a pickle only, another fingerprint, or a type
            outside :data:`TRUSTED` in the estimators file (named, nothing constructed).
    """
    import skops.io

    path = Path(path)
    if (path / PICKLE).is_file() and not (path / ESTIMATORS).is_file():
        raise PipelineError(
            f"selector {path} holds only a pickle ({PICKLE}), which can run code when loaded; this version "
            f"reads only the data format (selector.json + {ESTIMATORS}): fit the selector again with "
            "python -m pipeline.select fit"
        )
    meta = _meta(path)
    if meta is None:
        raise PipelineError(f"selector {path} is not a selector directory (no {MARKER} of kind {KIND}); "
                            "make one with python -m pipeline.select fit run=DIR out=DIR")  # fmt: skip
    if meta.get("format") != FORMAT or not (path / ESTIMATORS).is_file():
        raise PipelineError(f"selector {path} is of another format ({MARKER} format {meta.get('format')!r}, "
                            f"expected {FORMAT} with {ESTIMATORS}); fit it again with python -m pipeline.select fit")  # fmt: skip
    if expected is not None and fingerprint(path) != expected:
        raise PipelineError(f"selector {path} changed after the sweep started (fingerprint {fingerprint(path)}, "
                            f"expected {expected}); it is not used")  # fmt: skip
    try:
        unknown = sorted(set(skops.io.get_untrusted_types(file=path / ESTIMATORS)) - set(TRUSTED))
        if unknown:
            raise PipelineError(f"selector {path}: {ESTIMATORS} holds types outside the allow-list ({', '.join(unknown)}); "
                                "it is not loaded")  # fmt: skip
        return meta, skops.io.load(path / ESTIMATORS, trusted=list(TRUSTED))
    except PipelineError:
        raise
    except Exception as err:  # noqa: BLE001 - any failure to read the file is a bad artefact
        raise PipelineError(f"selector {path}: cannot read {ESTIMATORS} ({type(err).__name__}: {err})") from err


def is_selector_dir(path: Path) -> bool:
    """Whether ``path`` holds a selector marker (of any format)."""
    return _meta(path) is not None or (path / PICKLE).is_file() and (path / MARKER).is_file()


def _meta(path: Path) -> dict | None:
    try:
        meta = json.loads((path / MARKER).read_text())
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) and meta.get("kind") == KIND else None


def fingerprint(path: str | Path) -> str:
    """Content hash of a selector: its ``selector.json`` and ``estimators.skops``."""
    digest = hashlib.sha256()
    for name in (MARKER, ESTIMATORS):
        digest.update(name.encode() + b"\0" + (Path(path) / name).read_bytes())
    return digest.hexdigest()[:16]
