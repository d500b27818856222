"""Learned selection end to end on the tiny model (issue 11): pilot sweep with features=true ->
fit -> evaluate -> grid=selected sweep -> reduce with the "Learned selection" row.

The tiny model is random, so its answers are scored with the ``contains`` rule against single
characters it emits often: correctness then varies by config and instance, which is all the
plumbing needs. The selector is fitted with margin=-1 (always transplant the best candidate) so the
selected sweep must write config rows.
"""

from __future__ import annotations

import json

import numpy as np
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
import torch
from sweeps import compose_sweep

from pipeline import reduce
from pipeline.reduce.results import shard_files
from pipeline.store import Store
from pipeline.select.__main__ import main as select_main
from pipeline.selector.features import read_features
from pipeline.selector.fitted import load
from pipeline.sweep import run as sweep_run
from pipeline.models.tiny import TinySpec, build_tiny

pytestmark = pytest.mark.slow  # tiny-model sweeps end to end (about 20 s on an idle CPU)

N_LAYERS = 3
PILOT_PAIRS = "[[2,0],[2,1],[2,2],[0,0],[1,0]]"  # SourceLast + TargetFirst of a 3-layer model


def write_chars_task(path, n: int = 16):
    answers = ["0", "b", "1", "3"]
    lines = []
    for k in range(n):
        lang = ("de", "fr")[k % 2]
        item = {"id": f"{lang}-{k}", "lang": lang, "prompt": f"[{lang}] Frage {k}: was ist {k * 7}?",
                "source_prompt": f"Question {k}: what is {k * 7}?", "answer": answers[k % 4]}  # fmt: skip
        lines.append(json.dumps(item))
    path.write_text("\n".join(lines) + "\n")
    return path


def rows_of(run_dir):
    store = Store.open(run_dir)
    return ds.dataset([store.path(rel) for rel in shard_files(store)], format="parquet").to_table().to_pylist()


@pytest.fixture(scope="module")
def flow(tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e")
    task = write_chars_task(root / "task.jsonl")
    base = [f"model.tiny.n_layers={N_LAYERS}", "max_new_tokens=6", "cluster=inprocess", "task=jsonl",
            f"task.path={task}", "shard_size=8"]  # fmt: skip
    pilot = sweep_run(compose_sweep([*base, "granularity=[attn,ffn]", "grid=pairs", f"grid.pairs={PILOT_PAIRS}",
                                     "features=true", f"out_dir={root / 'pilot'}"]))  # fmt: skip
    select_main(["fit", f"run={pilot}", f"out={root / 'selector'}", "folds=2", "threads=1", "margin=-1",
                 "params.hgb.max_leaf_nodes=7", "params.hgb.max_iter=30", "params.hgb.min_samples_leaf=2"])  # fmt: skip
    select_main(["evaluate", f"selector={root / 'selector'}", f"run={pilot}", "threads=1", "n_boot=200"])
    selected_args = [*base, "grid=selected", f"grid.selector={root / 'selector'}", f"out_dir={root / 'selected'}"]
    selected = sweep_run(compose_sweep(selected_args))
    reduce.main([f"run={pilot}", f"run={selected}", f"out={root / 'report'}", "report.figures=false"])
    return {"root": root, "task": task, "pilot": pilot, "selected": selected, "selected_args": selected_args}


def test_features_are_written_per_shard_and_match_an_independent_forward(flow):
    pilot = flow["pilot"]
    names = sorted(p.name for p in (pilot / "shards").iterdir())
    assert sorted(p.name for p in (pilot / "features").iterdir()) == names and len(names) == 2
    features = read_features(pilot).to_pylist()
    assert len(features) == 16 and all(f["n_layers"] == N_LAYERS for f in features)
    vanilla = {r["instance_id"]: r for r in rows_of(pilot) if r["source_layer"] is None}
    model, tok = build_tiny(TinySpec(n_layers=N_LAYERS))
    prompts = {json.loads(x)["id"]: json.loads(x) for x in flow["task"].read_text().splitlines()}
    for f in features:
        item = prompts[f["instance_id"]]
        with torch.inference_mode():
            target = model(**tok(item["prompt"], return_tensors="pt"), output_hidden_states=True)
            source = model(**tok(item["source_prompt"], return_tensors="pt"), output_hidden_states=True)
        logp = torch.log_softmax(target.logits[0, -1].double(), -1)
        entropy = float(-(logp.exp() * logp).sum())
        top = logp.exp().topk(2).values
        assert f["vanilla_entropy_first"] == pytest.approx(entropy, abs=1e-4)
        assert f["vanilla_entropy_first"] == pytest.approx(vanilla[f["instance_id"]]["entropy_first"], abs=1e-4)
        assert f["vanilla_top2_margin"] == pytest.approx(float(top[0] - top[1]), abs=1e-4)
        for k in range(N_LAYERS - 1):  # hidden_states[k + 1]: output of decoder layer k (the last one is normed)
            s, t = source.hidden_states[k + 1][0, -1], target.hidden_states[k + 1][0, -1]
            cos = float(torch.nn.functional.cosine_similarity(s, t, dim=0))
            assert f["cos_block"][k] == pytest.approx(cos, abs=1e-4)
            assert f["log_norm_ratio_block"][k] == pytest.approx(float(torch.log(t.norm() / s.norm())), abs=1e-4)


def test_selected_sweep_runs_vanilla_plus_the_chosen_config(flow):
    selector = load(flow["root"] / "selector")
    features = read_features(flow["selected"])
    choice, _ = selector.choose(features)
    ids = features["instance_id"].to_pylist()
    expected = {iid: (None if k < 0 else selector.candidates[k]) for iid, k in zip(ids, choice, strict=True)}
    assert any(v is not None for v in expected.values())
    selected_rows = rows_of(flow["selected"])
    key_of = lambda r: (r["instance_id"], r["granularity"], r["source_layer"], r["target_layer"])  # noqa: E731
    pilot = {key_of(r): r for r in rows_of(flow["pilot"])}
    configs = {}
    for r in selected_rows:
        key = key_of(r)
        assert r["token_ids"] == pilot[key]["token_ids"] and r["correct"] == pilot[key]["correct"]
        if r["source_layer"] is not None:
            assert r["instance_id"] not in configs
            configs[r["instance_id"]] = (r["granularity"], r["source_layer"], r["target_layer"])
    assert configs == {iid: c for iid, c in expected.items() if c is not None}
    vanilla = [(r["instance_id"], r["granularity"]) for r in selected_rows if r["source_layer"] is None]
    assert sorted(vanilla) == sorted((iid, g) for iid in expected for g in selector.granularities)
    meta = json.loads((flow["selected"] / "run.json").read_text())
    assert meta["grid"] == "selected" and meta["selector"] == str(flow["root"] / "selector") and meta["features"]


def test_reduce_reports_the_learned_row_as_evaluate_computes_it(flow):
    evaluated = json.loads((flow["pilot"] / "selection" / "selection.json").read_text())["tasks"]["jsonl"]
    summary = json.loads((flow["root"] / "report" / "summary.json").read_text())
    by_grid = {(e["run"], e["granularity"]): e for e in summary["runs"]}
    for granularity in ("attn", "ffn"):
        pilot_entry = by_grid[(str(flow["pilot"]), granularity)]
        overall = pilot_entry["overall"]
        assert overall["learned_selection_accuracy"] == pytest.approx(evaluated["methods"]["Learned selection"]["All"])
        assert overall["gap_closed"] == pytest.approx(evaluated["gap_closed"]["All"]["value"])
        low, high = overall["gap_closed_ci"]
        assert low <= overall["gap_closed"] <= high
        for lang in ("de", "fr"):
            assert pilot_entry["by_lang"][lang]["learned_selection_accuracy"] == pytest.approx(
                evaluated["methods"]["Learned selection"][lang])
        assert pilot_entry["learned_selection"]["run"] == str(flow["selected"])
        own = by_grid[(str(flow["selected"]), granularity)]["overall"]
        assert own["learned_selection_accuracy"] == overall["learned_selection_accuracy"] and own["gap_closed"] is None
    report = (flow["root"] / "report" / "report.md").read_text()
    assert "| Learned selection |" in report and "| Gap closed by learned [95% CI] |" in report


def test_selected_sweep_resumes_without_recomputing(flow):
    shards = sorted((flow["selected"] / "shards").glob("*.parquet"))
    before = [p.stat().st_mtime_ns for p in shards]
    kept = pq.read_table(shards[1])
    shards[1].unlink()
    sweep_run(compose_sweep(flow["selected_args"]))
    assert shards[0].stat().st_mtime_ns == before[0]
    assert pq.read_table(shards[1]).num_rows == kept.num_rows
    assert np.all([r["config_hash"] == kept["config_hash"][0].as_py() for r in rows_of(flow["selected"])])


@pytest.mark.slow
def test_selected_sweep_on_ray_equals_in_process(flow):
    """On Ray each worker loads the selector from its directory: the same rows as in-process."""
    args = [a for a in flow["selected_args"] if not a.startswith(("cluster=", "out_dir="))]
    on_ray = sweep_run(compose_sweep([*args, "cluster=local", "cluster.num_workers=2",
                                      f"out_dir={flow['root'] / 'selected-ray'}"]))

    def keyed(run_dir):
        return {(r["instance_id"], r["granularity"], r["source_layer"], r["target_layer"]): r["token_ids"]
                for r in rows_of(run_dir)}

    assert keyed(on_ray) == keyed(flow["selected"])


# -- a selector directory holds data, never code (issue 28) -----------------------------------------
class _Payload:
    """Unpickling this runs a shell command that leaves a marker file (what a hostile pickle would do)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


def test_the_selector_directory_holds_data_and_allowed_types_only(flow):
    import skops.io

    from pipeline.selector import artefact

    directory = flow["root"] / "selector"
    assert {p.name for p in directory.iterdir()} == set(artefact.FILES)
    assert set(skops.io.get_untrusted_types(file=directory / artefact.ESTIMATORS)) <= set(artefact.TRUSTED)


def test_a_pickle_selector_is_refused_without_running_it(flow, tmp_path):
    import pickle

    from pipeline.errors import PipelineError

    hostile = tmp_path / "hostile"
    hostile.mkdir()
    (hostile / "selector.json").write_text(json.dumps({"kind": "xtransplant-selector"}))
    marker = tmp_path / "it-ran"
    (hostile / "selector.joblib").write_bytes(pickle.dumps(_Payload(marker)))
    args = [a for a in flow["selected_args"] if not a.startswith(("grid.selector=", "out_dir="))]
    with pytest.raises(PipelineError, match=r"holds only a pickle \(selector\.joblib\), which can run code"):
        sweep_run(compose_sweep([*args, f"grid.selector={hostile}", f"out_dir={tmp_path / 'out'}"]))
    assert not marker.exists() and not (tmp_path / "out").exists()


def test_a_type_outside_the_allow_list_is_refused_before_it_is_built(flow, tmp_path):
    import os
    import shutil

    import skops.io

    from pipeline.errors import PipelineError

    tampered = tmp_path / "tampered"
    shutil.copytree(flow["root"] / "selector", tampered)
    skops.io.dump({"run": os.system}, tampered / "estimators.skops")
    with pytest.raises(PipelineError, match=r"holds types outside the allow-list \(posix\.system\)"):
        load(tampered)


def test_a_worker_refuses_a_selector_changed_after_the_driver_read_it(flow, tmp_path):
    import shutil

    from pipeline.errors import PipelineError
    from pipeline.selector.apply import SelectedPlan

    copy = tmp_path / "selector"
    shutil.copytree(flow["root"] / "selector", copy)
    plan = SelectedPlan.load(str(copy), N_LAYERS, "tiny")
    meta = json.loads((copy / "selector.json").read_text())
    (copy / "selector.json").write_text(json.dumps({**meta, "margin": 0.9}))  # now it would choose differently
    with pytest.raises(PipelineError, match="changed after the sweep started"):
        plan.portable().resolved()


def test_fit_and_evaluate_replace_only_directories_they_wrote(flow, tmp_path, capsys):
    pilot = flow["pilot"]
    mine = tmp_path / "notes"
    mine.mkdir()
    (mine / "thesis.tex").write_text("years of work")

    def refused(args: list[str]) -> str:
        capsys.readouterr()
        with pytest.raises(SystemExit) as exit_info:
            select_main(args)
        assert exit_info.value.code == 2
        return capsys.readouterr().err.strip()

    assert "is not a selector directory" in refused(["fit", f"run={pilot}", f"out={mine}", "folds=2", "margin=-1"])
    assert "is not a selection report directory" in refused(
        ["evaluate", f"selector={flow['root'] / 'selector'}", f"run={pilot}", f"out={mine}", "n_boot=10"])
    # a directory the tool wrote, with a user's file put into it since
    (flow["root"] / "selector" / "thesis.tex").write_text("years of work")
    (pilot / "selection" / "thesis.tex").write_text("years of work")
    try:
        assert "holds thesis.tex, which this tool did not write" in refused(
            ["fit", f"run={pilot}", f"out={flow['root'] / 'selector'}", "folds=2", "margin=-1"])
        assert "holds thesis.tex, which this tool did not write" in refused(
            ["evaluate", f"selector={flow['root'] / 'selector'}", f"run={pilot}", "n_boot=10"])
    finally:
        (flow["root"] / "selector" / "thesis.tex").unlink()
        (pilot / "selection" / "thesis.tex").unlink()
    assert (mine / "thesis.tex").read_text() == "years of work"
