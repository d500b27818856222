"""CulturalBench from the Hub schema (``task.variant=easy|hard``), offline, on synthetic CSVs that
follow the dataset card: Easy one row per question, Hard four true/false rows per question."""

from __future__ import annotations

import os
from pathlib import Path

os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["HF_HUB_OFFLINE"] = "1"

import pytest
from cultural_fixtures import HARD_ROWS, culturalbench_csv, hard_ids, translations

from pipeline.errors import PipelineError
from pipeline.tasks import load_task
from pipeline.tasks.cultural import render_options


@pytest.fixture(autouse=True)
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    import datasets.config
    import huggingface_hub.constants

    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(tmp_path_factory.mktemp("hf_cache"))


def hub(name: str, cache: str, hub_keys: dict, **keys) -> object:
    return load_task({"name": name, "source": "hub", **keys, "hub": {"cache_dir": cache, **hub_keys}})


def test_culturalbench_easy(cache: str, tmp_path: Path) -> None:
    data = culturalbench_csv(tmp_path / "CulturalBench-Easy.csv")
    task = hub("culturalbench", cache, {"data_files": str(data)}, split="all", langs=["zh", "pl"],
               translations=str(translations(tmp_path / "t.jsonl", ["culturalbench-10", "culturalbench-11"])))
    instances = task.instances()
    assert [(i.id, i.lang, i.answer) for i in instances] == [
        ("culturalbench-10", "zh", "A"), ("culturalbench-11", "pl", "B")]
    assert instances[0].prompt == render_options(
        "In China, what is given at New Year?", ["Red envelopes", "Clocks", "Pears", "Knives"])
    assert instances[0].choices == ("A", "B", "C", "D") and instances[0].response_lang == "en"
    assert task.score(instances[1], "(B) Carp") and not task.score(instances[1], "Option B")


def test_culturalbench_hard_schema_prompt_and_scoring(cache: str, tmp_path: Path) -> None:
    from pipeline.tasks.culturalbench import question_correct

    data = culturalbench_csv(tmp_path / "CulturalBench-Hard.csv", hard=True)
    ids = hard_ids([r for r in HARD_ROWS if r[5] in ("China", "Poland")])
    task = hub("culturalbench", cache, {"data_files": str(data)}, variant="hard", split="all", langs=["zh", "pl"],
               translations=str(translations(tmp_path / "t.jsonl", ids)))
    instances = task.instances()
    assert [i.id for i in instances] == ids[:4] + ids[8:] + ids[4:8]  # language by language, file order
    first = instances[0]
    assert first.prompt == (
        "Human: Question: In China, what is given at New Year?\nAnswer: Red envelopes\n"
        "Is this answer true or false for this question? You must choose either True or False.\n"
        "Assistant: My answer would be:")
    assert first.source_prompt == f"[translated] {first.id}" and first.response_lang == "en"
    assert [i.answer for i in instances] == ["True", "False", "False", "False", "True", "True", "False", "False",
                                             "False", "True", "True", "False"]
    assert task.rule(first) == "truefalse" and task.score(first, "True.") and not task.score(first, "True or False")
    assert not task.score(instances[1], "TRUE") and task.score(instances[1], "false")
    # question level (the card's score): right iff all judgements of the question are right
    judged = {i.id: task.score(i, i.answer) for i in instances} | {instances[5].id: False}
    assert question_correct(judged) == {"culturalbench-10": True, "culturalbench-13": False, "culturalbench-11": True}
    assert dict(task.groups) == {"High": ["zh"], "Low": ["pl"]}


def test_culturalbench_hard_pilot_draws_whole_questions(cache: str, tmp_path: Path) -> None:
    data = culturalbench_csv(tmp_path / "CulturalBench-Hard.csv", hard=True)
    task = hub("culturalbench", cache, {"data_files": str(data)}, variant="hard", split="pilot", pilot_size=1,
               langs=["zh"], translations=str(translations(tmp_path / "t.jsonl", hard_ids(HARD_ROWS))))
    drawn = task.instances()
    assert len(drawn) == 4 and len({i.id.rsplit("-", 1)[0] for i in drawn}) == 1
    rest = hub("culturalbench", cache, {"data_files": str(data)}, variant="hard", split="unseen", pilot_size=1,
               langs=["zh"], translations=str(translations(tmp_path / "t2.jsonl", hard_ids(HARD_ROWS)))).instances()
    assert len(rest) == 4 and not {i.id for i in rest} & {i.id for i in drawn}


def test_culturalbench_variant_and_file_must_agree(cache: str, tmp_path: Path) -> None:
    easy, hard = culturalbench_csv(tmp_path / "easy.csv"), culturalbench_csv(tmp_path / "hard.csv", hard=True)
    t = str(translations(tmp_path / "t.jsonl", ["culturalbench-10"]))
    with pytest.raises(PipelineError, match=r"CulturalBench-Easy row 0: columns .* is this CulturalBench-Hard\? "
                                            r"\(task\.variant=hard\)"):
        hub("culturalbench", cache, {"data_files": str(hard)}, langs=["zh"], translations=t).instances()
    with pytest.raises(PipelineError, match=r"CulturalBench-Hard row 0: .*\(task\.variant=easy\)"):
        hub("culturalbench", cache, {"data_files": str(easy)}, variant="hard", langs=["zh"], translations=t).instances()
    with pytest.raises(PipelineError, match=r"task\.variant='medium' is not valid; choose one of: easy, hard"):
        hub("culturalbench", cache, {}, variant="medium", translations=t)
    broken = tmp_path / "broken.csv"
    broken.write_text("data_idx,question_idx,prompt_question,prompt_option,answer,country\n0,1,Q?,A,maybe,China\n")
    with pytest.raises(PipelineError, match=r"CulturalBench-Hard row 0: answer 'maybe' is not TRUE or FALSE"):
        hub("culturalbench", cache, {"data_files": str(broken)}, variant="hard", langs=["zh"], translations=t).instances()
    unreachable = hub("culturalbench", cache, {}, variant="hard", langs=["zh"], translations=t)
    with pytest.raises(PipelineError, match=r"CulturalBench-Hard: could not load \('kellycyy/CulturalBench', "
                                            r"'CulturalBench-Hard'\)"):
        unreachable.instances()
