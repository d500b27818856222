"""Shared fixtures: tiny models built in code (no download), and paths to ../shared data."""

from __future__ import annotations

import copy
import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

sys.path.insert(0, str(Path(__file__).resolve().parent))

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    assert SHARED.is_dir(), f"../shared is expected beside the repo at {SHARED}"
    return SHARED


def tiny_pair(arch: str, **kw):
    """(engine model, independent reference copy, tokenizer) of a seeded tiny model."""
    from pipeline.tiny import TinySpec, build_tiny

    model, tok = build_tiny(TinySpec(arch=arch, **kw))
    return model, copy.deepcopy(model), tok
