"""Language consistency (Table 1) with a tiny fastText language-ID model trained on the fly."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest
from reduce_rows import example_rows, write_shard

from pipeline import reduce
from pipeline.errors import PipelineError
from pipeline.langid import LanguageIdentifier, normalize_code

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
