"""Built-in tasks on the authors' released data (``../shared/xtransplant-data``, read-only).

Counts of issue 3, prompts and golds identical to the files, pairing by line with the pivot,
cheap loading of a few languages, and every bad-input case of the release source.
"""

from __future__ import annotations

import json
import shutil
import string
from pathlib import Path

import pytest

from pipeline.errors import PipelineError
from pipeline.tasks import load_task
from pipeline.tasks.languages import COT_PHRASE

ROOT = Path(__file__).resolve().parents[2] / "shared" / "xtransplant-data"


def lines(path: Path) -> list:
    with path.open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle]


def release(name: str, **keys) -> object:
    return load_task({"name": name, "source": "release", "root": str(ROOT), **keys})


@pytest.mark.parametrize(
    "name, split, expected",
    [
        ("xnli", "pilot", 700),
        ("xquad", "pilot", 600),
        ("globalopinionqa", "pilot", 1000),
        ("xnli", "unseen", 14_000),
        ("xquad", "unseen", 13_680),
        ("globalopinionqa", "unseen", 2_928),
    ],
)
def test_counts(name: str, split: str, expected: int) -> None:
    instances = release(name, split=split).instances()
    assert len(instances) == expected
    assert len({instance.id for instance in instances}) == expected


def test_all_is_pilot_then_unseen() -> None:
    task = release("xquad", split="all", langs=["de"])
    assert len(task.instances()) == 50 + 1140
    assert task.instances()[0].id == "xquad-pilot-00000-de"
    assert task.instances()[50].id == "xquad-unseen-00000-de"


@pytest.mark.parametrize("subset, split", [("sample", "pilot"), ("unseen", "unseen")])
def test_xnli_identical_to_files_and_paired_by_line(subset: str, split: str) -> None:
    task = release("xnli", split=split)
    base = ROOT / "XNLI" / f"XNLI_{subset}"
    english = lines(base / "split" / "en.json")
    by_lang: dict[str, list] = {}
    for instance in task.instances():
        by_lang.setdefault(instance.lang, []).append(instance)
    assert sorted(by_lang) == sorted(task.langs)
    for lang, instances in by_lang.items():
        prompts, golds = lines(base / "split" / f"{lang}.json"), lines(base / "ans" / f"{lang}.json")
        words = lines(base / "ans_lang" / f"{lang}.json")[0]
        assert [i.prompt for i in instances] == prompts
        assert [i.source_prompt for i in instances] == english
        assert [i.answer for i in instances] == golds
        assert all(i.choices == ("1", "2", "3") and i.choice_aliases == words for i in instances)
        assert all(i.response_lang == lang for i in instances)


@pytest.mark.parametrize("subset, split", [("sample", "pilot"), ("unseen", "unseen")])
def test_xquad_identical_to_files_and_paired_by_line(subset: str, split: str) -> None:
    task = release("xquad", split=split)
    base = ROOT / "XQuAD" / f"XQuAD_{subset}"
    english = lines(base / "split" / "xquad.en.json")
    for lang in task.langs:
        instances = [i for i in task.instances() if i.lang == lang]
        assert [i.prompt for i in instances] == lines(base / "split" / f"xquad.{lang}.json")
        assert [i.source_prompt for i in instances] == english
        assert [i.answer for i in instances] == lines(base / "ans" / f"xquad.{lang}.json")
        assert all(i.choices is None for i in instances)


@pytest.mark.parametrize("subset, split", [("sample", "pilot"), ("unseen", "unseen")])
def test_globalopinionqa_identical_to_files(subset: str, split: str) -> None:
    task = release("globalopinionqa", split=split)
    base = ROOT / "GlobalOpinionQA" / f"GlobalOpinionQA_{subset}"
    for lang in task.langs:
        instances = [i for i in task.instances() if i.lang == lang]
        questions = lines(base / "split" / f"{lang}.json")
        assert [i.prompt for i in instances] == [q["input_text"] for q in questions]
        assert [i.source_prompt for i in instances] == lines(base / "translated" / f"{lang}.json")
        for instance, question in zip(instances, questions):
            probabilities = question["label"]
            assert instance.answer == string.ascii_uppercase[probabilities.index(max(probabilities))]
            assert instance.choices == tuple(string.ascii_uppercase[: len(probabilities)])
            assert instance.response_lang == "en"


def test_pivot_zh_pairs_with_the_chinese_line() -> None:
    task = release("xnli", langs=["de", "en"], pivot="zh")
    chinese = lines(ROOT / "XNLI" / "XNLI_sample" / "split" / "zh.json")
    assert [i.source_prompt for i in task.instances() if i.lang == "de"] == chinese
    assert [i.source_prompt for i in task.instances() if i.lang == "en"] == chinese


def test_a_few_languages_read_only_their_files(monkeypatch: pytest.MonkeyPatch) -> None:
    import pipeline.tasks.sources as sources
    import pipeline.tasks.xnli as xnli

    opened: list[tuple[str, int | None]] = []
    real = sources.read_json_lines

    def spy(path: Path, limit: int | None = None) -> list:
        opened.append((str(path.relative_to(ROOT)), limit))
        return real(path, limit)

    monkeypatch.setattr(sources, "read_json_lines", spy)  # the paired prompt and answer files
    monkeypatch.setattr(xnli, "read_json_lines", spy)  # the label words
    task = load_task({"name": "xnli", "source": "release", "root": str(ROOT), "split": "pilot", "langs": ["de"]})
    assert len(task.instances()) == 50
    assert {path for path, _ in opened} == {
        "XNLI/XNLI_sample/split/en.json", "XNLI/XNLI_sample/split/de.json",
        "XNLI/XNLI_sample/ans/de.json", "XNLI/XNLI_sample/ans_lang/de.json",
    }
    opened.clear()
    task = release("xnli", split="unseen", langs=["zh"], limit=3)
    assert [i.id for i in task.instances()] == [f"xnli-unseen-0000{k}-zh" for k in range(3)]
    assert {limit for path, limit in opened if "ans_lang" not in path} == {3}


def test_cot_suffix_in_each_prompts_language() -> None:
    task = release("xnli", langs=["de"], prompt="cot", limit=2)
    assert task.max_new_tokens == 200
    plain = release("xnli", langs=["de"], limit=2).instances()
    for instance, base in zip(task.instances(), plain):
        assert instance.prompt == f"{base.prompt} {COT_PHRASE['de']}"
        assert instance.source_prompt == f"{base.source_prompt} {COT_PHRASE['en']}"
    goqa = release("globalopinionqa", langs=["zh-CN"], prompt="cot", limit=1).instances()[0]
    assert goqa.prompt.endswith(" Let's think step by step.") and goqa.source_prompt.endswith(COT_PHRASE["zh"])
    assert release("xnli", langs=["de"], limit=1).max_new_tokens is None


def test_groups_default_to_table_3_and_can_be_overridden() -> None:
    assert {k: list(v) for k, v in release("xnli").groups.items()} == {
        "High": ["ar", "de", "en", "es", "fr", "zh"], "Mid": ["hi", "ru", "tr", "vi"], "Low": ["bg", "el", "sw", "ur"],
    }
    assert dict(release("xnli", langs=["de", "sw"]).groups) == {"High": ["de"], "Low": ["sw"]}
    assert dict(release("xnli", groups={"Mine": ["de"]}).groups) == {"Mine": ["de"]}


def test_scoring_uses_the_release_label_words() -> None:
    instance = release("xnli", langs=["fr"], limit=1).instances()[0]
    task = release("xnli", langs=["fr"], limit=1)
    gold = instance.choice_aliases[instance.answer]
    assert task.score(instance, gold) and task.score(instance, f"({instance.answer})")
    assert not task.score(instance, "Option " + instance.answer)


# ---------------------------------------------------------------- bad input


@pytest.fixture()
def small_root(tmp_path: Path) -> Path:
    """A copy of the XNLI PilotSet files of de and en (50 lines each) to break on purpose."""
    for folder in ("split", "ans", "ans_lang"):
        target = tmp_path / "XNLI" / "XNLI_sample" / folder
        target.mkdir(parents=True)
        for lang in ("de", "en"):
            shutil.copy(ROOT / "XNLI" / "XNLI_sample" / folder / f"{lang}.json", target / f"{lang}.json")
    return tmp_path


def load_small(root: Path, **keys) -> object:
    return load_task({"name": "xnli", "source": "release", "root": str(root), "langs": ["de"], **keys})


def test_small_copy_loads(small_root: Path) -> None:
    assert len(load_small(small_root).instances()) == 50


@pytest.mark.parametrize("root", [None, "???"])
def test_missing_root(root: object) -> None:
    with pytest.raises(PipelineError, match=r"task\.root is required"):
        load_task({"name": "xnli", "source": "release", "root": root})


def test_root_not_a_directory(tmp_path: Path) -> None:
    with pytest.raises(PipelineError, match=r"task\.root directory not found: .*nowhere"):
        load_task({"name": "xnli", "source": "release", "root": str(tmp_path / "nowhere")})


def test_missing_language_file(small_root: Path) -> None:
    (small_root / "XNLI" / "XNLI_sample" / "ans" / "de.json").unlink()
    with pytest.raises(PipelineError, match=r"missing XNLI de answer file: .*ans/de\.json"):
        load_small(small_root)
    with pytest.raises(PipelineError, match=r"missing XNLI fr prompt file"):
        load_small(small_root, langs=["fr"])


def test_unequal_line_counts_name_both_files(small_root: Path) -> None:
    path = small_root / "XNLI" / "XNLI_sample" / "split" / "de.json"
    path.write_text("".join(path.read_text(encoding="utf-8").splitlines(keepends=True)[:49]), encoding="utf-8")
    task = load_small(small_root)
    message = r"unequal line counts .*split/de\.json has 49 lines, .*split/en\.json has 50"
    with pytest.raises(PipelineError, match=message):
        task.instances()


def test_unknown_language_lists_valid_ones() -> None:
    with pytest.raises(PipelineError, match=r"unknown language 'th'; valid: ar bg de .* zh"):
        release("xnli", langs=["th"])
    with pytest.raises(PipelineError, match=r"task\.pivot='xx'"):
        release("xnli", pivot="xx")


def test_invalid_json_line_names_file_and_line(small_root: Path) -> None:
    path = small_root / "XNLI" / "XNLI_sample" / "ans" / "de.json"
    rows = path.read_text(encoding="utf-8").splitlines(keepends=True)
    rows[6] = '"2\n'
    path.write_text("".join(rows), encoding="utf-8")
    with pytest.raises(PipelineError, match=r"ans/de\.json line 7: invalid JSON"):
        load_small(small_root).instances()


def test_bad_gold_label(small_root: Path) -> None:
    path = small_root / "XNLI" / "XNLI_sample" / "ans" / "de.json"
    rows = path.read_text(encoding="utf-8").splitlines(keepends=True)
    rows[0] = '"4"\n'
    path.write_text("".join(rows), encoding="utf-8")
    with pytest.raises(PipelineError, match=r"ans/de\.json line 1: expected \"1\", \"2\" or \"3\""):
        load_small(small_root).instances()


@pytest.mark.parametrize(
    "keys, message",
    [
        ({"split": "test"}, r"task\.split='test' is not valid; choose one of: pilot, unseen, all"),
        ({"source": "web"}, r"task\.source='web' is not valid; choose one of: release, hub"),
        ({"prompt": "fewshot"}, r"task\.prompt='fewshot'"),
        ({"lang": ["de"]}, r"unknown key 'lang'; valid keys: name, source, split, langs"),
        ({"langs": "de"}, r"task\.langs='de' is not of type list\[str\]"),
        ({"langs": []}, r"task\.langs must be a non-empty list"),
        ({"limit": "2"}, None),  # a number given as text, as YAML or the command line may
        ({"limit": "two"}, r"task\.limit='two' is not of type Optional\[int\]"),
        ({"seed": True}, r"task\.seed=True is not of type int"),
        ({"langs": ["de", "de"]}, r"lists a language twice"),
        ({"limit": 0}, r"task\.limit must be >= 1"),
        ({"hub": {"url": "x"}}, r"unknown task\.hub key 'url'"),
        ({"groups": ["High"]}, r"task\.groups=\['High'\] is not of type Optional\[dict\[str, list\[str\]\]\]"),
        ({"groups": {"High": "de"}}, r"task\.groups\.High: Value 'de' \(str\) is incompatible"),
    ],
)
def test_config_errors(keys: dict, message: str | None) -> None:
    if message is None:
        assert release("xnli", **keys).limit == 2
        return
    with pytest.raises(PipelineError, match=message):
        release("xnli", **keys)


def test_tasks_without_release_refuse_it() -> None:
    with pytest.raises(PipelineError, match=r"task\.source='release' is not valid; choose one of: hub"):
        load_task({"name": "xcopa", "source": "release", "root": str(ROOT)})
