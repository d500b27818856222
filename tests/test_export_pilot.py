"""``python -m pipeline.export`` and ``python -m pipeline.pilot``: frozen tasks and reproducible PilotSets."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from pipeline import export, pilot
from pipeline.errors import PipelineError
from pipeline.tasks import load_task

ROOT = Path(__file__).resolve().parents[2] / "shared" / "xtransplant-data"
BENCH = Path(__file__).resolve().parents[2] / "shared" / "benchmarks"
REPO = Path(__file__).resolve().parents[1]


def records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.open(encoding="utf-8")]


def test_export_writes_the_task_format_and_reruns_identically(tmp_path: Path) -> None:
    out = tmp_path / "xnli.jsonl"
    export.main(["task=xnli", f"task.root={ROOT}", "task.langs=[de,zh]", f"out={out}"])
    rows = records(out)
    assert len(rows) == 100
    assert list(rows[0]) == ["id", "lang", "prompt", "source_prompt", "answer", "choices", "choice_aliases"]
    original = load_task({"name": "xnli", "source": "release", "root": str(ROOT), "langs": ["de", "zh"]})
    frozen = load_task({"name": "jsonl", "path": str(out)})
    assert len(frozen.instances()) == len(original.instances())
    for a, b in zip(frozen.instances(), original.instances()):
        assert (a.id, a.prompt, a.source_prompt, a.answer, a.choices, a.choice_aliases) == (
            b.id, b.prompt, b.source_prompt, b.answer, b.choices, b.choice_aliases)


def test_exported_globalopinionqa_keeps_its_rule_and_response_language(tmp_path: Path) -> None:
    out = tmp_path / "goqa.jsonl"
    export.main(["task=globalopinionqa", f"task.root={ROOT}", "task.langs=[am]", "task.limit=5", f"out={out}"])
    row = records(out)[0]
    assert row["response_lang"] == "en" and row["scoring"] == "letter" and row["lang"] == "am"
    frozen = load_task({"name": "jsonl", "path": str(out)})
    original = load_task(
        {"name": "globalopinionqa", "source": "release", "root": str(ROOT), "langs": ["am"], "limit": 5})
    for a, b in zip(frozen.instances(), original.instances()):
        assert a == b
        for response in (a.answer.lower(), f"({a.answer}) (Z)", f"（{a.answer}）", "Option " + a.answer):
            assert frozen.score(a, response) == original.score(b, response)


def test_export_errors_are_one_line_and_write_nothing(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "x.jsonl"
    for argv, message in [
        (["task=nope", f"out={out}"], "error: unknown task 'nope'; valid: culturalbench, globalopinionqa, jsonl"),
        ([f"out={out}"], "error: no task given; valid: culturalbench, "),
        (["task=xnli", "task.nokey=1", f"out={out}"], "error: unknown config key 'task.nokey' under 'task'; valid:"),
        (["task=xnli", "task.langs=[de", f"out={out}"], "error: bad option 'task.langs=[de'"),
        (["task=sample", "model=tiny", f"out={out}"], "error: bad option: Could not override 'model'"),
        (["task=xnli", f"out={out}"], "error: task xnli: task.root is required"),
        (["task=xnli", f"task.root={ROOT}"], "error: out=FILE.jsonl is required"),
        (["task=xnli", f"task.root={ROOT}", "task.langs=[th]", f"out={out}"], "error: task xnli: unknown language"),
        (["task=xnli", f"task.root={tmp_path}", f"out={out}"], "error: missing XNLI ar prompt file"),
    ]:
        with pytest.raises(SystemExit) as info:
            export.main(argv)
        assert info.value.code == 2
        err = capsys.readouterr().err
        assert err.startswith(message) and err.count("\n") == 1
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_pilot_is_byte_identical_balanced_and_parallel(tmp_path: Path) -> None:
    argv = ["task=xnli", f"task.root={ROOT}", "task.langs=[de,zh,sw]"]
    pilot.main([*argv, f"out={tmp_path / 'a.jsonl'}"])
    pilot.main([*argv, f"out={tmp_path / 'b.jsonl'}"])
    assert (tmp_path / "a.jsonl").read_bytes() == (tmp_path / "b.jsonl").read_bytes()
    rows = records(tmp_path / "a.jsonl")
    assert Counter(r["lang"] for r in rows) == {"de": 50, "zh": 50, "sw": 50}
    items = {lang: [r["id"].rsplit("-", 1)[0] for r in rows if r["lang"] == lang] for lang in ("de", "zh", "sw")}
    assert items["de"] == items["zh"] == items["sw"]
    assert any("unseen" in item for item in items["de"]) and any("pilot" in item for item in items["de"])
    pilot.main([*argv, "seed=1", "n=5", f"out={tmp_path / 'c.jsonl'}"])
    other = records(tmp_path / "c.jsonl")
    assert len(other) == 15 and {r["id"] for r in other} - {r["id"] for r in rows}


def test_pilot_of_a_hub_task_is_its_pilot_split(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import datasets.config

    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    files = f"task.hub.data_files='{BENCH / 'xnli' / 'dev-{lang}.tsv'}'"  # Hydra needs {lang} quoted
    cache = f"task.hub.cache_dir={tmp_path / 'cache'}"
    pilot.main(["task=xnli", "task.source=hub", files, cache, "task.langs=[de,ur]", f"out={tmp_path / 'p.jsonl'}"])
    hub = {"data_files": str(BENCH / "xnli" / "dev-{lang}.tsv"), "cache_dir": str(tmp_path / "cache")}
    task = load_task({"name": "xnli", "source": "hub", "langs": ["de", "ur"], "hub": hub})
    assert [r["id"] for r in records(tmp_path / "p.jsonl")] == [i.id for i in task.instances()]


def test_pilot_of_a_cultural_task_draws_per_language(tmp_path: Path) -> None:
    out = tmp_path / "goqa.jsonl"
    pilot.main(["task=globalopinionqa", f"task.root={ROOT}", "task.langs=[uk,de]", "n=10", f"out={out}"])
    rows = records(out)
    assert Counter(r["lang"] for r in rows) == {"uk": 10, "de": 10}
    assert all(r["scoring"] == "letter" for r in rows)


@pytest.mark.parametrize("module", ["pipeline.export", "pipeline.pilot"])
def test_command_line_entry_points(module: str, tmp_path: Path) -> None:
    ok = subprocess.run(
        [sys.executable, "-m", module, "task=sample", f"out={tmp_path / 'o.jsonl'}"],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )
    assert ok.returncode == 0, ok.stderr
    assert len(records(tmp_path / "o.jsonl")) == 18
    bad = subprocess.run(
        [sys.executable, "-m", module, "task=xnlii", f"out={tmp_path / 'x.jsonl'}"],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )
    assert bad.returncode == 2 and bad.stderr.startswith("error: unknown task 'xnlii'") and bad.stderr.count("\n") == 1
    assert "Traceback" not in bad.stderr and not (tmp_path / "x.jsonl").exists()


def test_culturalbench_hard_exports_its_rule_and_pilots_whole_questions(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    import datasets.config
    from cultural_fixtures import HARD_ROWS, culturalbench_csv, hard_ids, translations

    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    data = culturalbench_csv(tmp_path / "CulturalBench-Hard.csv", hard=True)
    argv = ["task=culturalbench", "task.variant=hard", "task.split=all", "task.langs=[zh,pl]",
            f"task.hub.data_files={data}", f"task.hub.cache_dir={tmp_path / 'cache'}",
            f"task.translations={translations(tmp_path / 't.jsonl', hard_ids(HARD_ROWS))}"]
    export.main([*argv, f"out={tmp_path / 'hard.jsonl'}"])
    rows = records(tmp_path / "hard.jsonl")
    assert len(rows) == 12 and {r["scoring"] for r in rows} == {"truefalse"}
    frozen = load_task({"name": "jsonl", "path": str(tmp_path / "hard.jsonl")})
    assert [i.answer for i in frozen.instances()] == [r["answer"] for r in rows]
    assert all(frozen.score(i, i.answer) and not frozen.score(i, "True or False") for i in frozen.instances())
    pilot.main([*argv, "n=1", f"out={tmp_path / 'pilot.jsonl'}"])
    drawn = records(tmp_path / "pilot.jsonl")
    questions = {lang: {r["id"].rsplit("-", 1)[0] for r in drawn if r["lang"] == lang} for lang in ("zh", "pl")}
    assert len(drawn) == 8 and all(len(q) == 1 for q in questions.values())  # one whole question per language
    broken = tmp_path / "broken.jsonl"
    unlabelled = {key: value for key, value in rows[0].items() if key != "choices"}
    broken.write_text(json.dumps({**unlabelled, "answer": "maybe"}) + "\n")
    with pytest.raises(PipelineError, match=r"'scoring' is 'truefalse' but 'answer' 'maybe' is not True or False"):
        load_task({"name": "jsonl", "path": str(broken)}).instances()
