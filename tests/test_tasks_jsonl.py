"""``task=jsonl`` (the JSONL task format and its bad inputs) and ``task=sample`` (the bundled demo)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.errors import PipelineError
from pipeline.instances import Instance
from pipeline.tasks import load_task
from pipeline.tasks.jsonl import read_jsonl, to_record, write_jsonl
from pipeline.tasks.sample import SAMPLE_DIR

GOOD = [
    {"id": "x1", "lang": "de", "prompt": "P1", "source_prompt": "S1", "answer": "2",
     "choices": ["1", "2", "3"], "choice_aliases": {"1": "Folgerung", "2": "Neutral", "3": "Widerspruch"}},
    {"id": "q1", "lang": "zh", "prompt": "P2", "source_prompt": "S2", "answer": "地中海", "aliases": ["地中海海域"]},
    {"id": "g1", "lang": "ja", "prompt": "P3", "source_prompt": "S3", "answer": "B", "choices": ["A", "B"],
     "response_lang": "en", "scoring": "letter"},
]


def write(path: Path, rows: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r, ensure_ascii=False)) + "\n" for r in rows),
                    encoding="utf-8")
    return path


def test_reads_the_format_and_scores_by_its_rules(tmp_path: Path) -> None:
    task = load_task({"name": "jsonl", "path": str(write(tmp_path / "t.jsonl", GOOD))})
    mc, qa, letter = task.instances()
    assert mc.choices == ("1", "2", "3") and mc.choice_aliases["2"] == "Neutral" and mc.response_lang is None
    assert qa.aliases == ("地中海海域",) and letter.response_lang == "en"
    assert task.score(mc, "Neutral") and task.score(mc, "（2）") and not task.score(mc, "Neutral (3)")
    assert task.score(qa, "答案是地中海") and not task.score(qa, "红海")
    assert task.score(letter, "b") and not task.score(letter, "(B) (C)")
    assert task.max_new_tokens is None and dict(task.groups) == {"High": ["de", "zh", "ja"]}
    assert dict(load_task({"name": "jsonl", "path": str(tmp_path / "t.jsonl"), "groups": {"G": ["de"]}}).groups) == {
        "G": ["de"]}


def test_blank_lines_are_skipped(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    path.write_text("\n" + json.dumps(GOOD[1]) + "\n\n   \n", encoding="utf-8")
    assert [instance.id for instance, _ in read_jsonl(path)] == ["q1"]


def bad(tmp_path: Path, row: object) -> Path:
    return write(tmp_path / "bad.jsonl", [GOOD[1], row])


@pytest.mark.parametrize(
    "row, message",
    [
        ({k: v for k, v in GOOD[1].items() if k != "prompt"}, r"line 2: missing field 'prompt'"),
        ({k: v for k, v in GOOD[1].items() if k != "source_prompt"}, r"line 2: missing field 'source_prompt'"),
        ({**GOOD[1], "id": 7}, r"line 2: field 'id' must be a string, got int"),
        ({**GOOD[1], "id": "q1"}, r"line 2: duplicate id 'q1' \(first on line 1\)"),
        ({**GOOD[1], "id": "q2", "prompt": "  "}, r"line 2: field 'prompt' is empty"),
        ({**GOOD[1], "id": "q2", "source_prompt": ""}, r"line 2: field 'source_prompt' is empty"),
        ({**GOOD[1], "id": "q2", "answer": ""}, r"line 2: field 'answer' is empty"),
        ({**GOOD[0], "choices": "123"}, r"line 2: field 'choices' must be a list of non-empty strings"),
        ({**GOOD[0], "answer": "4"}, r"line 2: field 'answer' '4' is not one of choices"),
        ({**GOOD[0], "choices": ["1", "1"], "choice_aliases": None}, r"at least two distinct labels"),
        ({**GOOD[0], "choice_aliases": {"9": "x"}}, r"'choice_aliases' has keys that are not in 'choices'"),
        ({**GOOD[0], "choice_aliases": ["x"]}, r"'choice_aliases' must map option labels"),
        ({**GOOD[1], "id": "q2", "aliases": "x"}, r"field 'aliases' must be a list"),
        ({**GOOD[1], "id": "q2", "scoring": "fuzzy"}, r"field 'scoring' 'fuzzy' is not one of choice, letter"),
        ({**GOOD[1], "id": "q2", "scoring": "choice"}, r"'scoring' is 'choice' but there are no 'choices'"),
        ({**GOOD[1], "id": "q2", "choise": ["1"]}, r"unknown field 'choise'; valid fields: id, lang"),
        ({**GOOD[1], "id": "q2", "response_lang": 3}, r"field 'response_lang' must be a string"),
        (["not", "an", "object"], r"line 2: expected a JSON object, got list"),
        ('{"id": "q2", "lang": ', r"line 2: invalid JSON \("),
    ],
)
def test_bad_lines_name_file_line_and_field(tmp_path: Path, row: object, message: str) -> None:
    path = bad(tmp_path, row)
    with pytest.raises(PipelineError, match=rf"bad\.jsonl {message}" if message.startswith("line") else message):
        load_task({"name": "jsonl", "path": str(path)})


def test_missing_and_empty_files(tmp_path: Path) -> None:
    with pytest.raises(PipelineError, match=r"task file not found: .*nope\.jsonl"):
        load_task({"name": "jsonl", "path": str(tmp_path / "nope.jsonl")})
    (tmp_path / "empty.jsonl").write_text("\n", encoding="utf-8")
    with pytest.raises(PipelineError, match=r"empty\.jsonl: no instances"):
        load_task({"name": "jsonl", "path": str(tmp_path / "empty.jsonl")})
    for path in (None, "???"):
        with pytest.raises(PipelineError, match=r"task\.path is required"):
            load_task({"name": "jsonl", "path": path})
    with pytest.raises(PipelineError, match=r"task jsonl: unknown key 'file'"):
        load_task({"name": "jsonl", "file": "x"})


def test_write_then_read_round_trips(tmp_path: Path) -> None:
    rows = [(instance, rule) for instance, rule in read_jsonl(write(tmp_path / "t.jsonl", GOOD))]
    assert write_jsonl(tmp_path / "out" / "copy.jsonl", rows) == 3
    assert (tmp_path / "out" / "copy.jsonl").read_bytes() == (tmp_path / "t.jsonl").read_bytes()
    assert to_record(rows[1][0], "contains") == GOOD[1]


def test_write_refuses_invalid_instances_and_leaves_the_target_alone(tmp_path: Path) -> None:
    target = tmp_path / "out.jsonl"
    target.write_text("previous\n", encoding="utf-8")
    good = Instance("a", "de", "p", "s", "x")
    for rows, message in [
        ([(good, "contains"), (good, "contains")], r"duplicate id 'a'; nothing written"),
        ([(Instance("b", "de", "", "s", "x"), "contains")], r"instance 1 \('b'\): field 'prompt' is empty"),
        ([], r"no instances to write"),
    ]:
        with pytest.raises(PipelineError, match=message):
            write_jsonl(target, rows)
    assert target.read_text(encoding="utf-8") == "previous\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.jsonl"]


# ---------------------------------------------------------------- the bundled sample


def test_sample_loads_with_no_arguments() -> None:
    task = load_task({"name": "sample"})
    instances = task.instances()
    assert len(instances) == 18
    assert [i.id.split("-")[0] for i in instances] == ["xnli"] * 6 + ["xquad"] * 6 + ["globalopinionqa"] * 6
    assert len({i.id for i in instances}) == 18
    assert all(len(i.prompt) < 400 and len(i.source_prompt) < 400 for i in instances)
    assert dict(task.groups) == {"High": ["de", "zh", "ja"], "Mid": ["ru", "tr"], "Low": ["sw"]}
    assert task.max_new_tokens is None


def test_sample_subsets_keep_their_rules() -> None:
    task = load_task({"name": "sample"})
    by_subset = {i.id.split("-")[0]: i for i in task.instances()}
    xnli, xquad, goqa = by_subset["xnli"], by_subset["xquad"], by_subset["globalopinionqa"]
    assert task.score(xnli, xnli.choice_aliases[xnli.answer]) and not task.score(xnli, "Option " + xnli.answer)
    assert task.score(xquad, f"Answer: {xquad.answer.upper()}")
    assert task.score(goqa, goqa.answer.lower()) and goqa.response_lang == "en" and goqa.prompt.startswith("Human:")
    assert not task.score(goqa, f"({goqa.answer}) or (Z)")


def test_sample_files_are_valid_task_files_in_three_styles() -> None:
    styles = {"xnli": {"de", "sw", "zh"}, "xquad": {"de", "ru", "zh"}, "globalopinionqa": {"de", "ja", "tr"}}
    for subset, langs in styles.items():
        parsed = read_jsonl(SAMPLE_DIR / f"{subset}.jsonl")
        assert {instance.lang for instance, _ in parsed} == langs and len(parsed) == 6
    assert load_task({"name": "sample", "subsets": ["xquad"]}).instances()[0].id == "xquad-de-1"
    with pytest.raises(PipelineError, match=r"unknown subset 'mkqa'; valid: xnli, xquad, globalopinionqa"):
        load_task({"name": "sample", "subsets": ["mkqa"]})
    with pytest.raises(PipelineError, match=r"task sample: unknown key 'path'"):
        load_task({"name": "sample", "path": "x"})
