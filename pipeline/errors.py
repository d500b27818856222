"""User-facing errors: one clear line, a non-zero exit, no traceback dump."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import TypeVar

EXIT_USER_ERROR = 2

F = TypeVar("F", bound=Callable)


class PipelineError(Exception):
    """Bad input or configuration, raised before (or instead of) any result is written.

    The message is the whole story: what is wrong and where (file, line, field, valid choices).
    Entry points print it as a single line prefixed with ``error:`` and exit with status 2.
    """


def one_line(message: str) -> str:
    """Folds a message onto one line so it reads well in ``ray job logs`` and CI output."""
    return " ".join(str(message).split())


def exit_on_user_error(fn: F) -> F:
    """Wraps a CLI entry point: a :class:`PipelineError` becomes ``error: ...`` on stderr and exit 2."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except PipelineError as err:
            print(f"error: {one_line(str(err))}", file=sys.stderr)
            sys.exit(EXIT_USER_ERROR)

    return wrapper  # type: ignore[return-value]
