"""The checks every entry point runs before Hydra (``pipeline.cli``): one line per problem, few compositions.

A command line is composed once per variant of its sweep (each swept value in turn, the others at
their first), group choices included, and once more only when it adds keys with ``+``. Compositions
are counted by wrapping Hydra's own ``compose``, which still does the work.
"""

from __future__ import annotations

import hydra
import pytest

import pipeline.sweep.config  # noqa: F401  registers the sweep's schema
from pipeline.cli import check_group_choices, check_overrides
from pipeline.errors import PipelineError


@pytest.fixture()
def composed(monkeypatch) -> list[list[str]]:
    """The override lists Hydra composes during the test."""
    calls: list[list[str]] = []
    real = hydra.compose

    def counting(config_name=None, overrides=None, **kwargs):
        calls.append(list(overrides or []))
        return real(config_name, overrides=overrides, **kwargs)

    monkeypatch.setattr(hydra, "compose", counting)
    return calls


def test_a_sweep_is_composed_once_per_variant(composed) -> None:
    check_overrides(["model=tiny,smollm2", "task=sample,jsonl", "task.groups=null", "max_new_tokens=4,8", "decoding=plain"])
    # first values, then smollm2, jsonl and 8 each in turn: 4 compositions, not 2 x 2 x 2 + 4
    assert len(composed) == 4
    assert all("decoding=plain" in overrides and "task.groups=null" in overrides for overrides in composed)
    assert {o for overrides in composed for o in overrides} >= {"model=smollm2", "task=jsonl", "max_new_tokens=8"}


def test_an_added_key_is_checked_against_the_config_without_it(composed) -> None:
    with pytest.raises(PipelineError, match=r"^unknown config key 'granulrity'; valid: chunk_size, cluster"):
        check_overrides(["+granulrity=ffn"])
    composed.clear()
    check_overrides(["++granularity=ffn"])  # exists: ++ sets it
    assert composed == [[], ["++granularity=ffn"]]


@pytest.mark.parametrize(
    "argv, message",
    [
        (["granulrity=ffn", "max_new_tokens=abc"], r"^unknown config key 'granulrity'; valid: "),
        (["task=sample", "task.pth=1"], r"^unknown config key 'task.pth' under 'task'; valid: groups, name, subsets$"),
        (["model=tiny,smollm2", "max_new_tokens=1,abc"], r"^bad option: .*'abc' of type 'str' could not be converted"),
        (["task.limit=3", "task=xnli", "task.limit=abc"], r"^bad option: .*full_key: task.limit"),
        (["+granularity=ffn"], r"^bad option: Could not append to config. An item is already at 'granularity'"),
        (["max_new_tokens=[1"], r"^bad option 'max_new_tokens=\[1'"),
    ],
)
def test_each_problem_is_one_line(argv, message) -> None:
    with pytest.raises(PipelineError, match=message) as err:
        check_group_choices(argv)
        check_overrides(argv)
    assert "\n" not in str(err.value)
