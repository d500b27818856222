"""Language consistency (Table 1): the packaged fastText lid.176.ftz (the default) on real sentences
in the paper's languages, and a tiny fastText model trained on the fly for exact expectations."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest
from reduce_rows import example_rows, write_shard

from pipeline import reduce
from pipeline.errors import PipelineError
from pipeline.reduce.langid import LanguageIdentifier, normalize_code, packaged_lid_model

VOCABULARY = {
    "en": "the cat is on the table and the dog sleeps in the house with my friend".split(),
    "de": "der Hund ist in dem Haus und die Katze schläft auf dem Tisch mit meinem Freund".split(),
    "fr": "le chien est dans la maison et le chat dort sur la table avec mon ami".split(),
}
SENTENCE = {lang: " ".join(words[:8]) for lang, words in VOCABULARY.items()}


@pytest.fixture(scope="module")
def lid_model(tmp_path_factory):
    import fasttext

    root = tmp_path_factory.mktemp("lid")
    rng = np.random.default_rng(0)
    lines = [
        f"__label__{lang} " + " ".join(rng.choice(words, size=6))
        for lang, words in VOCABULARY.items()
        for _ in range(40)
    ]
    (root / "train.txt").write_text("\n".join(lines) + "\n")
    model = fasttext.train_supervised(
        input=str(root / "train.txt"), epoch=50, lr=0.5, dim=16, minn=2, maxn=4, thread=1, verbose=0
    )
    model.save_model(str(root / "lid.bin"))
    return root / "lid.bin"


def test_normalize_code():
    assert normalize_code("__label__en") == "en"
    assert normalize_code("zh-CN") == "zh" and normalize_code("pt_BR") == "pt"
    assert normalize_code("") is None and normalize_code(None) is None


def test_identifier_predicts_languages_and_skips_empty(lid_model):
    lid = LanguageIdentifier(lid_model)
    texts = [SENTENCE["de"], SENTENCE["en"], "  ", SENTENCE["fr"] + "\nsecond line"]
    assert lid.identify(texts) == ["de", "en", None, "fr"]
    responses = pa.array([SENTENCE["en"], SENTENCE["en"], "", SENTENCE["fr"]])
    expected = pa.array(["en", "de-DE", "en", "FR"])
    assert lid.consistent(responses, expected).tolist() == [True, False, False, True]


def test_unloadable_model_is_a_clear_error(tmp_path):
    (tmp_path / "junk.bin").write_bytes(b"not a model")
    with pytest.raises(PipelineError, match="cannot load"):
        LanguageIdentifier(tmp_path / "junk.bin")


def test_language_consistency_in_summary(tmp_path, lid_model):
    vanilla_response = {"i0": SENTENCE["en"], "i1": "", "i2": SENTENCE["de"], "i3": SENTENCE["fr"]}
    rows = []
    for r in example_rows():
        r["response_lang"] = "en" if r["lang"] == "a" else "de-DE"
        if r["source_layer"] is None:
            r["response"] = vanilla_response[r["instance_id"]]
        else:
            r["response"] = SENTENCE["de"] if r["instance_id"] == "i2" else SENTENCE["en"]
        rows.append(r)
    write_shard(tmp_path / "run" / "s.parquet", rows)
    reduce.main([f"run={tmp_path / 'run'}", f"report.lid_model={lid_model}", "report.figures=false"])
    entry = json.loads((tmp_path / "run" / "report" / "summary.json").read_text())["runs"][0]
    assert entry["language_consistency"]["status"] == "computed"
    # vanilla: i0 en ok, i1 empty, i2 de ok, i3 fr (expected de) -> 2/4
    assert entry["overall"]["vanilla_language_consistency"] == 0.5
    # configs: i0, i1 in English (ok, 8 rows), i2 in German (ok, 4), i3 in English (expected de, 4) -> 12/16
    assert entry["overall"]["transplant_language_consistency"] == 0.75
    assert entry["by_lang"]["a"]["transplant_language_consistency"] == 1.0
    assert entry["by_lang"]["b"]["transplant_language_consistency"] == 0.5


# One sentence per language of the paper's tasks (XNLI, XQuAD, GlobalOpinionQA, XCOPA, MKQA).
REAL = {
    "en": "The weather is nice today and we are going to the park.",
    "de": "Das Wetter ist heute schön und wir gehen in den Park.",
    "fr": "Il fait beau aujourd'hui et nous allons au parc.",
    "es": "Hoy hace buen tiempo y vamos al parque.",
    "ru": "Сегодня хорошая погода, и мы идём в парк.",
    "zh": "今天天气很好，我们要去公园。",
    "ja": "今日は天気が良いので、公園に行きます。",
    "ar": "الطقس جميل اليوم وسنذهب إلى الحديقة.",
    "tr": "Bugün hava güzel ve parka gidiyoruz.",
    "hi": "आज मौसम अच्छा है और हम पार्क जा रहे हैं।",
    "vi": "Hôm nay thời tiết đẹp và chúng tôi sẽ đi công viên.",
    "el": "Ο καιρός είναι ωραίος σήμερα και πάμε στο πάρκο.",
    "th": "วันนี้อากาศดีและเราจะไปสวนสาธารณะ",
    "bg": "Времето днес е хубаво и отиваме в парка.",
    "ur": "آج موسم اچھا ہے اور ہم پارک جا رہے ہیں۔",
    "sw": "Hali ya hewa ni nzuri leo na tunaenda kwenye bustani.",
}


def test_packaged_lid176_identifies_real_sentences_in_the_papers_languages():
    path = packaged_lid_model()
    assert path is not None and path.name == "lid.176.ftz" and path.stat().st_size > 900_000
    lid = LanguageIdentifier(path)
    assert lid.identify(list(REAL.values())) == list(REAL)
    responses = pa.array([REAL["de"], REAL["zh"], REAL["en"]])
    assert lid.consistent(responses, pa.array(["de-DE", "zh-CN", "fr"])).tolist() == [True, True, False]


def test_report_uses_the_packaged_lid176_by_default_and_names_it(tmp_path):
    rows = []
    for r in example_rows():
        r["response_lang"] = "de"
        r["response"] = REAL["de"] if r["instance_id"] in ("i0", "i1") else REAL["en"]
        rows.append(r)
    write_shard(tmp_path / "run" / "s.parquet", rows)
    reduce.main([f"run={tmp_path / 'run'}", "report.figures=false"])
    report = tmp_path / "run" / "report"
    entry = json.loads((report / "summary.json").read_text())["runs"][0]
    assert entry["language_consistency"]["status"] == "computed"
    assert entry["language_consistency"]["model"] == str(packaged_lid_model())
    assert entry["overall"]["vanilla_language_consistency"] == 0.5  # i0, i1 German; i2, i3 English
    assert f"with `{packaged_lid_model()}`" in (report / "report.md").read_text()


def test_lid_model_none_turns_consistency_off(tmp_path):
    write_shard(tmp_path / "run" / "s.parquet", example_rows())
    reduce.main([f"run={tmp_path / 'run'}", "report.figures=false", "report.lid_model=none"])
    entry = json.loads((tmp_path / "run" / "report" / "summary.json").read_text())["runs"][0]
    assert entry["language_consistency"] == {"status": "skipped", "model": None, "reason": "report.lid_model=none"}
    assert entry["overall"]["vanilla_language_consistency"] is None
