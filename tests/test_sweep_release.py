"""One end-to-end sweep per task on the authors' released data (issue 3), tiny model, in-process.

Two languages x two real instances of XNLI, XQuAD and GlobalOpinionQA (``source=release``,
``../shared/xtransplant-data``): the rows cover exactly the instances the task yields, and every
row's ``correct`` is the task's own rule applied to its ``response``; every row's tokens are
those of the naive per-config ``generate()`` of its instance's real prompts (``reference.py``;
vanilla and one transplanted config per instance, to stay fast).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from reference import reference_generate
from sweeps import compose_sweep, keys, rows

from pipeline.sweep import run
from pipeline.tasks import load_task
from pipeline.models.tiny import build_tiny

ROOT = Path(__file__).resolve().parents[2] / "shared" / "xtransplant-data"
PAIRS = {(0, 1), (1, 0)}
MAX_NEW = 4
NEAR_TIE = 1e-4


@pytest.mark.parametrize("name, langs", [
    ("xnli", ["de", "sw"]),
    ("xquad", ["de", "zh"]),
    ("globalopinionqa", ["de", "ja"]),
])
def test_release_sweep(tmp_path, name, langs):
    task_keys = {"source": "release", "root": str(ROOT), "langs": langs, "limit": 2}
    cfg = compose_sweep([
        "cluster=inprocess", "model.tiny.n_layers=2", f"max_new_tokens={MAX_NEW}", "granularity=attn",
        "grid=pairs", "grid.pairs=[[0,1],[1,0]]", f"task={name}", f"out_dir={tmp_path / 'out'}",
        *(f"task.{key}={value}" for key, value in task_keys.items()),
    ])
    table = rows(run(cfg))
    task = load_task({"name": name, **task_keys})
    instances = {x.id: x for x in task.instances()}
    assert len(instances) == 4 and sorted({x.lang for x in instances.values()}) == sorted(langs)
    assert table.num_rows == len(instances) * (1 + len(PAIRS))
    assert len(set(keys(table))) == table.num_rows
    assert {(s, t) for _, _, s, t in keys(table) if s is not None} == PAIRS
    for row in table.to_pylist():
        instance = instances[row["instance_id"]]
        assert row["lang"] == instance.lang and row["task"] == name and row["n_layers"] == 2
        assert row["response_lang"] == instance.response_lang == ("en" if name == "globalopinionqa" else instance.lang)
        assert row["n_new_tokens"] == len(row["token_ids"]) <= MAX_NEW
        assert row["correct"] == task.score(instance, row["response"])
        # the random tiny model answers nothing right: show the rule can say yes on this instance
        assert task.score(instance, f"({instance.answer})")
    assert set(table.column("instance_id").to_pylist()) == set(instances)
    # vanilla rows tie each row to its instance's prompt, (1, 0) rows to its source prompt as well
    model, tokenizer = build_tiny(cfg.model.tiny)
    for row in table.to_pylist():
        instance, vanilla = instances[row["instance_id"]], row["source_layer"] is None
        if not vanilla and (row["source_layer"], row["target_layer"]) != (1, 0):
            continue
        ref = reference_generate(model, tokenizer, instance.prompt, instance.source_prompt,
                                 None if vanilla else row["granularity"], row["source_layer"], row["target_layer"],
                                 MAX_NEW, [tokenizer.eos_token_id])
        assert row["token_ids"] == ref.token_ids or min(ref.margins) < NEAR_TIE, row
