"""Loading real checkpoints from disk (the path users run), and refusing unsupported architectures."""

from __future__ import annotations

import json
from collections import Counter

import pytest
from sweeps import compose_sweep, rows, write_task

from pipeline.sweep import run
from pipeline.models.tiny import TinySpec, build_tiny

COLS = ["instance_id", "granularity", "source_layer", "target_layer", "token_ids"]


def canonical(table):
    return Counter(tuple(map(repr, r)) for r in zip(*(table.column(c).to_pylist() for c in COLS)))


def test_saved_checkpoint_runs_like_the_model_it_was_saved_from(tmp_path):
    model, tok = build_tiny(TinySpec(arch="mistral", n_layers=2, seed=3))
    ckpt = tmp_path / "ckpt"
    model.save_pretrained(ckpt)
    tok.save_pretrained(ckpt)
    task = write_task(tmp_path / "task.jsonl", n=2)
    common = ["cluster=inprocess", "max_new_tokens=5", "task=jsonl", f"task.path={task}"]
    from_disk = run(compose_sweep([*common, "model=hf", f"model.path={ckpt}", f"out_dir={tmp_path / 'hf'}"]))
    in_code = run(compose_sweep([*common, "model.tiny.arch=mistral", "model.tiny.n_layers=2", "model.tiny.seed=3",
                                 f"out_dir={tmp_path / 'tiny'}"]))
    assert canonical(rows(from_disk)) == canonical(rows(in_code))
    meta = json.loads((from_disk / "run.json").read_text())
    assert meta["n_layers"] == 2 and meta["model_revision"].startswith("local-")


@pytest.mark.parametrize("model_type", ["gemma2", "gpt_oss", "bloom"])
def test_checkpoint_whose_class_refuses_sdpa_loads_and_matches_the_reference(model_type, tmp_path):
    """Gemma 2 and gpt-oss refuse sdpa (softcapping, sinks), BLOOM has no sdpa path: the loader
    asks for the implementation the class accepts, and the rows match the per-config reference."""
    from families import tiny_family
    from reference import reference_generate

    model, ref_model, tok = tiny_family(model_type)
    ckpt = tmp_path / model_type
    model.save_pretrained(ckpt)
    tok.save_pretrained(ckpt)
    task = write_task(tmp_path / "task.jsonl", n=2)
    out = run(compose_sweep(["cluster=inprocess", "model=hf", f"model.path={ckpt}", "task=jsonl", f"task.path={task}",
                             "max_new_tokens=4", "granularity=[attn,block]", f"out_dir={tmp_path / 'out'}"]))
    table = rows(out)
    assert json.loads((out / "run.json").read_text())["n_layers"] == 3
    items = {x["id"]: x for x in map(json.loads, task.read_text().splitlines())}
    assert table.num_rows == 2 * 2 * (1 + 9)
    for r in table.to_pylist():
        x = items[r["instance_id"]]
        granularity = r["granularity"] if r["source_layer"] is not None else None  # vanilla
        ref = reference_generate(ref_model, tok, x["prompt"], x["source_prompt"], granularity, r["source_layer"],
                                 r["target_layer"], 4, [tok.eos_token_id])  # fmt: skip
        assert r["token_ids"] == ref.token_ids, r


def test_injected_out_of_memory_in_a_sweep_changes_nothing(tmp_path):
    task = write_task(tmp_path / "task.jsonl", n=3)
    common = ["cluster=inprocess", "model.tiny.n_layers=3", "max_new_tokens=5", "task=jsonl", f"task.path={task}"]
    plain = run(compose_sweep([*common, f"out_dir={tmp_path / 'plain'}"]))
    squeezed = run(compose_sweep([*common, "debug.simulate_oom_above=4", f"out_dir={tmp_path / 'oom'}"]))
    assert canonical(rows(plain)) == canonical(rows(squeezed))
