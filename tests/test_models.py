"""Loading real checkpoints from disk (the path users run), and refusing unsupported architectures."""

from __future__ import annotations

import json
import sys
from collections import Counter

import pytest
from sweeps import compose_sweep, rows, write_task
from transformers import GPT2Config, GPT2LMHeadModel

from pipeline.errors import PipelineError
from pipeline.models import describe_model
from pipeline.sweep import main as sweep_main
from pipeline.sweep import run
from pipeline.tiny import TinySpec, build_tiny

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


def test_architecture_without_sites_is_refused_before_any_work(tmp_path, monkeypatch, capsys):
    ckpt = tmp_path / "gpt2"
    config = GPT2Config(n_layer=2, n_embd=32, n_head=2, vocab_size=300, bos_token_id=1, eos_token_id=2)
    GPT2LMHeadModel(config).save_pretrained(ckpt)
    capsys.readouterr()  # drop save_pretrained's progress bar
    with pytest.raises(PipelineError, match="GPT2LMHeadModel has no decoder layers at model.model.layers"):
        describe_model(compose_sweep(["model=hf", f"model.path={ckpt}", f"out_dir={tmp_path}"]).model)
    out = tmp_path / "out"
    monkeypatch.setattr(sys, "argv", ["pipeline.sweep", "model=hf", f"model.path={ckpt}", f"out_dir={out}"])
    with pytest.raises(SystemExit) as exit_info:
        sweep_main()
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.startswith("error: model class GPT2LMHeadModel has no decoder layers")
    assert not out.exists()


def test_injected_out_of_memory_in_a_sweep_changes_nothing(tmp_path):
    task = write_task(tmp_path / "task.jsonl", n=3)
    common = ["cluster=inprocess", "model.tiny.n_layers=3", "max_new_tokens=5", "task=jsonl", f"task.path={task}"]
    plain = run(compose_sweep([*common, f"out_dir={tmp_path / 'plain'}"]))
    squeezed = run(compose_sweep([*common, "debug.simulate_oom_above=4", f"out_dir={tmp_path / 'oom'}"]))
    assert canonical(rows(plain)) == canonical(rows(squeezed))
