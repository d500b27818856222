"""Hub-built XNLI and XQuAD prompts are byte-identical to the authors' released prompts.

For every released item (``../shared/xtransplant-data``, PilotSet and unseen set, every language)
the raw record is looked up in ``../shared/benchmarks`` by content alone: the released prompt's
premise/hypothesis lines (XNLI) or question line and context (XQuAD) must end with / contain the
raw text. The prompt is then rebuilt through ``task.source=hub`` from that raw record and compared
with the released one byte for byte, with the release's gold answers and (XNLI) label words.
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from pathlib import Path

os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["HF_HUB_OFFLINE"] = "1"

import pytest

from pipeline.tasks import load_task
from pipeline.tasks.xnli import HUB_LABELS, XnliTask
from pipeline.tasks.xquad import XquadTask

SHARED = Path(__file__).resolve().parents[2] / "shared"
BENCH, RELEASE = SHARED / "benchmarks", SHARED / "xtransplant-data"
SUBSETS = ("sample", "unseen")


@pytest.fixture(autouse=True)
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    import datasets.config
    import huggingface_hub.constants

    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)


def lines(path: Path) -> list:
    return [json.loads(line) for line in path.open(encoding="utf-8")]


def suffix_matches(line: str, index: dict[str, list[int]]) -> set[int]:
    """Rows whose text the line ends with (the caption before it is not looked at)."""
    return {row for k in range(len(line)) for row in index.get(line[k:], ())}


# ---------------------------------------------------------------- XNLI


def tsv(lang: str) -> list[list[str]]:
    return [line.rstrip("\n").split("\t") for line in (BENCH / "xnli" / f"test-{lang}.tsv").open(encoding="utf-8")]


def xnli_raw_rows(lang: str, prompts: list[str]) -> list[int | None]:
    """For each released prompt, the test-<lang>.tsv row whose premise and hypothesis it prints."""
    rows = tsv(lang)
    premises, hypotheses = defaultdict(list), defaultdict(list)
    for number, (premise, hypothesis) in enumerate(rows):
        premises[premise].append(number)
        hypotheses[hypothesis].append(number)
    found: list[int | None] = []
    for prompt in prompts:
        premise_line, hypothesis_line = prompt.split("\n")[2:4]
        both = suffix_matches(premise_line, premises) & suffix_matches(hypothesis_line, hypotheses)
        # the longest raw texts win (a caption never ends in part of the sentence)
        found.append(max(both, key=lambda r: (len(rows[r][0]) + len(rows[r][1]), -r)) if both else None)
    return found


def test_hub_xnli_prompts_equal_the_released_prompts(tmp_path: Path) -> None:
    compared, missing, shifted = 0, 0, 0
    for lang in XnliTask.LANGS:
        for subset in SUBSETS:
            base = RELEASE / "XNLI" / f"XNLI_{subset}"
            english, prompts = lines(base / "split" / "en.json"), lines(base / "split" / f"{lang}.json")
            answers, words = lines(base / "ans" / f"{lang}.json"), lines(base / "ans_lang" / f"{lang}.json")[0]
            en_rows, rows = xnli_raw_rows("en", english), xnli_raw_rows(lang, prompts)
            raw, en_raw = tsv(lang), tsv("en")
            kept = [k for k in range(len(prompts)) if rows[k] is not None and en_rows[k] is not None]
            for k in set(range(len(prompts))) - set(kept):  # why a raw record is not found: the space
                assert any(line.endswith(" ") for line in prompts[k].split("\n")[2:4]), (lang, subset, k)
            missing += len(prompts) - len(kept)
            # a row other than the English item's, unless the two rows read the same (duplicates)
            shifted += sum(1 for k in kept if raw[rows[k]] != raw[en_rows[k]] and en_raw[rows[k]] != en_raw[en_rows[k]])
            folder = tmp_path / f"{lang}-{subset}"
            folder.mkdir()
            labelled = lambda table, numbers: "".join(  # noqa: E731
                f"{table[r][0]}\t{table[r][1]}\t{HUB_LABELS[int(answers[k]) - 1]}\n" for k, r in numbers)
            (folder / f"{lang}.tsv").write_text(labelled(raw, [(k, rows[k]) for k in kept]), encoding="utf-8")
            if lang != "en":
                (folder / "en.tsv").write_text(labelled(en_raw, [(k, en_rows[k]) for k in kept]), encoding="utf-8")
            task = load_task({"name": "xnli", "source": "hub", "split": "all", "langs": [lang], "pivot": "en",
                              "hub": {"data_files": str(folder / "{lang}.tsv"), "cache_dir": str(tmp_path / "hf")}})
            instances = task.instances()
            assert len(instances) == len(kept)
            for k, instance in zip(kept, instances):
                assert instance.prompt == prompts[k], (lang, subset, k)
                assert instance.source_prompt == english[k], (lang, subset, k)
                assert instance.answer == answers[k] and instance.choice_aliases == words
            compared += len(kept)
    print(f"\nXNLI: {compared} released prompts rebuilt byte-identically from ../shared/benchmarks; "
          f"{missing} left out (a released premise/hypothesis ends in a space XTREME's TSV lacks); "
          f"{shifted} German items print the test row after the English item's")
    assert compared == 14_693 and missing == 7  # of 14 x 1,050 released items
    assert shifted == 790  # XNLI_unseen de items 210..999 (the release's own misalignment, see xnli.py)


def test_english_xnli_template_keeps_the_trailing_space_after_entail() -> None:
    from pipeline.tasks.xnli import TEMPLATES, render

    assert "\n(1) Entail \n(2) Neutral\n(3) Contradict\n" in render("en", "p", "h")
    assert TEMPLATES["fr"].human == "Humain\xa0: " and TEMPLATES["el"].human == "Human: "  # as released
    for lang, template in TEMPLATES.items():
        words = lines(RELEASE / "XNLI" / "XNLI_unseen" / "ans_lang" / f"{lang}.json")[0]
        assert list(template.label_words) == [words[c] for c in ("1", "2", "3")]
        assert all(word.removeprefix(f"({c})\xa0") in option
                   for c, word, option in zip("123", template.label_words, template.options))


# ---------------------------------------------------------------- XQuAD


def test_hub_xquad_prompts_equal_the_released_prompts(tmp_path: Path) -> None:
    task = load_task({"name": "xquad", "source": "hub", "split": "all", "langs": list(XquadTask.LANGS),
                      "hub": {"data_files": str(BENCH / "xquad" / "xquad.{lang}.json"),
                              "cache_dir": str(tmp_path / "hf")}})
    built = {instance.id: instance for instance in task.instances()}
    compared = 0
    for lang in XquadTask.LANGS:
        raw = json.loads((BENCH / "xquad" / f"xquad.{lang}.json").read_text(encoding="utf-8"))["data"]
        by_question = defaultdict(list)
        for article in raw:
            for paragraph in article["paragraphs"]:
                for qa in paragraph["qas"]:
                    by_question[qa["question"]].append((qa["id"], paragraph["context"]))
        for subset in SUBSETS:
            base = RELEASE / "XQuAD" / f"XQuAD_{subset}"
            prompts = lines(base / "split" / f"xquad.{lang}.json")
            english = lines(base / "split" / "xquad.en.json")
            answers = lines(base / "ans" / f"xquad.{lang}.json")
            for k, prompt in enumerate(prompts):
                question_line = prompt.rsplit("\n\n", 1)[0].rsplit("\n", 1)[1]
                ids = {qid for n in range(len(question_line)) for qid, context in by_question.get(question_line[n:], ())
                       if context in prompt}
                candidates = [built[f"xquad-{qid}-{lang}"] for qid in sorted(ids)]
                if len(candidates) > 1:  # a question text asked twice of a paragraph: English and gold decide
                    candidates = [i for i in candidates if (i.source_prompt, i.answer) == (english[k], answers[k])]
                # ... unless XQuAD asks the very same question twice (same gold): either renders it
                assert candidates and len({(i.prompt, i.source_prompt, i.answer) for i in candidates}) == 1, (
                    lang, subset, k, ids)
                instance = candidates[0]
                assert instance.prompt == prompt, (lang, subset, k)
                assert instance.source_prompt == english[k] and instance.answer == answers[k], (lang, subset, k)
                compared += 1
    print(f"\nXQuAD: {compared} released prompts rebuilt byte-identically from ../shared/benchmarks")
    assert compared == 12 * 1190
