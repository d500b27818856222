"""Shared lower layers (``pipeline.transplant.sharing``): rows of equal history really share.

The plan of one step is checked on a hand-worked case; the engine's own count of decode
layer-steps is checked against a count made here, independently, from the rows it generated
(group rows per step by instance and generated tokens; a group runs a layer once where all of
its rows are still below their target layer). Equivalence of the outputs with sharing on and off
and with the reference is in ``test_families.py`` (every family) and ``test_decoding.py``
(the checkpoint's processors).
"""

from __future__ import annotations

from families import tiny_family
from sweeps import compose_sweep, rows, write_task
from test_families import INSTANCES

from pipeline.sweep import run
from pipeline.transplant.engine import EngineOptions, TransplantEngine
from pipeline.transplant.sharing import plan_segments, transitions


def test_plan_runs_one_owner_per_group_below_each_rows_depth():
    # rows 0, 1 share key A with depths 3 (vanilla of a 3-layer model) and 1; rows 2, 3 share key B, depth 2
    keys, depth = [("A",), ("A",), ("B",), ("B",)], [3, 1, 2, 2]
    segments = plan_segments(keys, depth, n_layers=3, min_saving=0.0)
    assert [(s.first, s.stop, s.rows, s.source) for s in segments] == [
        (0, 1, [0, 2], [0, 0, 1, 1]),  # owners only: row 1 takes row 0's output, row 3 row 2's
        (1, 2, [0, 1, 2], [0, 1, 2, 2]),  # row 1 reached its depth
        (2, 3, [0, 1, 2, 3], [0, 1, 2, 3]),  # nobody shares layer 2: every row runs it
    ]
    assert transitions(segments) == [[0, 2], [0, 0, 1], [0, 1, 2, 2]]
    # a threshold: sharing layer 1 saves 1 of 4 rows, below a 30% floor, so it runs every row
    floored = plan_segments(keys, depth, 3, min_saving=0.3)
    assert [(s.first, s.stop, s.rows) for s in floored] == [(0, 1, [0, 2]), (1, 3, [0, 1, 2, 3])]


def test_rows_of_other_keys_never_share():
    segments = plan_segments([(0, (5, 6)), (0, (5, 7)), (1, (5, 6))], [3, 3, 3], n_layers=3, min_saving=0.0)
    assert len(segments) == 1 and segments[0].full


def _expected_layer_steps(gens, n_layers: int) -> int:
    """Layer-steps of a decode in which rows of equal (instance, history) share their lower layers."""
    total = 0
    longest = max(len(g.token_ids) + 1 for g in gens)
    for t in range(longest):
        alive = [g for g in gens if _steps(g) > t]
        groups: dict[tuple, list[int]] = {}
        for g in alive:
            c = g.config
            j = n_layers if c.target_layer is None else c.target_layer + (t > 0)
            groups.setdefault((c.instance, tuple(g.token_ids[:t])), []).append(j)
        for k in range(n_layers):
            alone = sum(depth <= k for depths in groups.values() for depth in depths)
            shared = sum(any(depth > k for depth in depths) for depths in groups.values())
            total += alone + shared
    return total


def _steps(gen, max_new: int = 6) -> int:
    return min(len(gen.token_ids) + 1, max_new)  # the EOS step counts, none after max_new_tokens


def test_engine_counts_fewer_layer_steps_exactly_as_the_histories_say():
    model, _, tok = tiny_family("llama")
    eos = [tok.eos_token_id]
    counts = {}
    for share in (True, False):
        options = EngineOptions(max_new_tokens=6, chunk_size=1000, instance_batch=2, share_layers=share)
        engine = TransplantEngine(model, tok, options, eos)
        n = engine.n_layers
        gens = list(engine.run(INSTANCES, ["attn", "block"], [(i, j) for i in range(n) for j in range(n)]))
        counts[share] = engine.decode_layer_steps
    assert counts[False] == n * sum(_steps(g) for g in gens)
    assert counts[True] == _expected_layer_steps(gens, n)
    assert counts[True] < 0.8 * counts[False]


def test_share_layers_is_a_sweep_key_and_changes_no_row(tmp_path):
    task = write_task(tmp_path / "task.jsonl", n=2)
    common = ["cluster=inprocess", "max_new_tokens=4", "task=jsonl", f"task.path={task}", "model.tiny.n_layers=3",
              "granularity=[attn,ffn]", "grid=full"]
    on = rows(run(compose_sweep([*common, f"out_dir={tmp_path / 'on'}"])))
    off = rows(run(compose_sweep([*common, "share_layers=false", f"out_dir={tmp_path / 'off'}"])))
    cols = ["instance_id", "granularity", "source_layer", "target_layer", "token_ids", "config_hash"]
    key = lambda table: sorted(zip(*(map(repr, table.column(c).to_pylist()) for c in cols)))  # noqa: E731
    transplants = sum(layer is not None for layer in on.column("source_layer").to_pylist())
    assert transplants == 2 * 2 * 9 and key(on) == key(off)
