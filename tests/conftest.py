"""Shared fixtures: tiny models built in code (no download), and paths to ../shared data."""

from __future__ import annotations

import copy
import logging
import os
import secrets
import sys
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# The private local Ray that pipeline.sweep.workers sets up (loopback only, token auth): Ray reads these
# once at import, and a test module may import ray before pipeline.sweep.workers.
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("RAY_AUTH_MODE", "token")
os.environ.setdefault("RAY_AUTH_TOKEN", secrets.token_hex(32))

sys.path.insert(0, str(Path(__file__).resolve().parent))

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    assert SHARED.is_dir(), f"../shared is expected beside the repo at {SHARED}"
    return SHARED


def tiny_pair(arch: str, **kw):
    """(engine model, independent reference copy, tokenizer) of a seeded tiny model."""
    from pipeline.models.tiny import TinySpec, build_tiny

    model, tok = build_tiny(TinySpec(arch=arch, **kw))
    return model, copy.deepcopy(model), tok


@pytest.fixture(autouse=True)
def _restore_logging():
    """Removes logging handlers a test's in-process Hydra app installed (Hydra's job logging binds
    a handler to the sys.stdout of that moment: pytest's capture stream, closed after the test, so
    a later test's log line would print "--- Logging error ---" into its captured stderr)."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in [h for h in root.handlers if h not in handlers]:
        root.removeHandler(handler)
    root.setLevel(level)
