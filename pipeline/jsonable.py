"""JSON-safe copies of computed results, for ``summary.json``, a selector's ``cv.json`` and its report.

The metrics are numpy arrays and scalars with NaN where a value is undefined (a config not run, an
empty group); JSON has no NaN, so an undefined value is written as null.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np


def jsonable(value: Any, digits: int | None = None) -> Any:
    """A copy of ``value`` that ``json.dumps`` writes as is: mappings with string keys, tuples as
    lists, numpy scalars as Python numbers, NaN and infinities as None, floats rounded to ``digits``
    decimals when given."""
    if isinstance(value, dict):
        return {str(k): jsonable(v, digits) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v, digits) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        if not math.isfinite(value):
            return None
        return value if digits is None else round(value, digits)
    return value
