"""GlobalOpinionQA: the paper's cultural task (target = English, source = the culture's language).

"How would someone from <country> answer the following question: ... (A) ... (B) ...". The gold
option is the one most of that country's respondents chose (the largest probability of the
survey's answer distribution); only confident items are kept (largest probability >= 0.8: the
released PilotSet holds 29 items at exactly 0.8, so the bound is inclusive). Scored by the
authors' letter rule (:func:`pipeline.tasks.scoring.letter_correct`).

Sources: the authors' release (``GlobalOpinionQA/GlobalOpinionQA_{sample,unseen}/split/<lang>.json``
objects ``{input_text, label, country}`` and ``translated/<lang>.json`` strings, paired by line)
and the original dataset (``Anthropic/llm_global_opinions``, split ``train``: ``question``,
``selections`` = repr of a defaultdict country -> probabilities, ``options`` = repr of a list)
plus a translations file. A country maps to a language by the release's assignment
(:data:`COUNTRIES`), extendable with ``task.countries``; rows whose probability vector does not
match their options are skipped.
"""

from __future__ import annotations

import ast
import string
from typing import Any

from pipeline.errors import PipelineError
from pipeline.instances import Instance
from pipeline.tasks.common import SPLIT_OF_SUBSET
from pipeline.tasks.cultural import CulturalTask, render_options, slug
from pipeline.tasks.pilotset import Record
from pipeline.tasks.sources import check_paired, expect_str, hub_rows, read_json_lines

# Language -> the survey countries the authors' release files under it.
COUNTRIES: dict[str, tuple[str, ...]] = {
    "am": ("Ethiopia", "Ethiopia (Non-national sample)"),
    "ar": ("Egypt", "Egypt (Non-national sample)", "Iraq", "Jordan", "Kuwait", "Lebanon", "Libya", "Morocco",
           "Morocco (Non-national sample)", "Palest. ter.", "Tunisia"),
    "de": ("Austria", "Germany", "Switzerland"),
    "el": ("Cyprus", "Greece"),
    "en": ("Australia", "Britain", "Canada", "Ghana", "Great Britain", "New Zealand", "Nigeria",
           "Nigeria (Non-national sample)", "Northern Ireland", "S. Africa", "S. Africa (Non-national sample)",
           "Singapore", "Uganda", "United States", "Zimbabwe"),
    "es": ("Argentina", "Bolivia", "Bolivia (Non-national sample)", "Chile", "Colombia", "Ecuador", "El Salvador",
           "Guatemala", "Guatemala (Non-national sample)", "Honduras (Non-national sample)", "Mexico", "Nicaragua",
           "Peru", "Puerto Rico", "Spain", "Uruguay", "Venezuela"),
    "fr": ("Burkina Faso", "France", "Ivory Coast (Non-national sample)", "Mali", "Mali (Non-national sample)",
           "Senegal", "Senegal (Non-national sample)"),
    "hi": ("India (Current national sample)", "India (Non-national sample)", "India (Old national sample)"),
    "id": ("Indonesia", "Indonesia (Non-national sample)"),
    "ja": ("Japan",),
    "pt": ("Angola (Non-national sample)", "Brazil", "Brazil (Non-national sample)", "Portugal"),
    "ru": ("Russia", "Russia (Non-national sample)"),
    "sv": ("Sweden",),
    "sw": ("Kenya", "Tanzania"),
    "tl": ("Philippines",),
    "tr": ("Turkey",),
    "uk": ("Ukraine",),
    "ur": ("Pakistan", "Pakistan (Non-national sample)"),
    "vi": ("Vietnam", "Vietnam (Non-national sample)"),
    "zh-CN": ("China", "China (Non-national sample)", "Hong Kong SAR", "Macau SAR"),
}


def gold_letter(probabilities: list[float]) -> str:
    """The letter of the largest probability (the first on a tie, like ``numpy.argmax``)."""
    return string.ascii_uppercase[probabilities.index(max(probabilities))]


def parse_repr(text: Any, what: str) -> Any:
    """Decodes the dataset's Python-repr strings (``defaultdict(<class 'list'>, {...})``, ``[...]``)."""
    if not isinstance(text, str):
        raise PipelineError(f"{what}: expected a string, got {type(text).__name__}")
    body = text[text.index("{"): text.rindex("}") + 1] if text.startswith("defaultdict") else text
    try:
        return ast.literal_eval(body)
    except (ValueError, SyntaxError) as err:
        raise PipelineError(f"{what}: cannot parse {text[:60]!r} ({type(err).__name__})") from None


class GlobalOpinionQaTask(CulturalTask):
    """GlobalOpinionQA (Durmus et al., 2023) as parallel instances; see the module docstring."""

    NAME = "globalopinionqa"
    LANGS = tuple(COUNTRIES)
    SOURCES = ("release", "hub")
    RELEASE_DIR = "GlobalOpinionQA"
    TEMPLATE_LANGS = ("en",)
    ID_HINT = "globalopinionqa-<row, 5 digits>-<country slug>, e.g. globalopinionqa-00042-s-africa-non-national-sample"
    COUNTRY_LANG = {country: lang for lang, names in COUNTRIES.items() for country in names}

    def _validate(self) -> None:
        super()._validate()
        bound = self.config["min_top_prob"]  # a float, by the schema
        if not 0 <= bound <= 1:
            raise PipelineError(f"task {self.NAME}: task.min_top_prob must be a number in [0, 1], got {bound!r}")
        if self.source == "release":
            self.require_release_files(("split", self.langs, "question file"), ("translated", self.langs, "translation file"))

    def _release_records(self, subset: str) -> list[Record]:
        base = self.release_dir(subset)
        split = SPLIT_OF_SUBSET[subset]
        records = []
        for lang in self.langs:
            question_file, translated_file = base / "split" / f"{lang}.json", base / "translated" / f"{lang}.json"
            check_paired([question_file, translated_file])
            questions = read_json_lines(question_file, self.limit)
            translated = read_json_lines(translated_file, self.limit)
            for k, (question, source) in enumerate(zip(questions, translated)):
                where = f"{question_file} line {k + 1}"
                if not isinstance(question, dict) or not {"input_text", "label"} <= set(question):
                    raise PipelineError(f"{where}: expected an object with input_text and label")
                probabilities = question["label"]
                if not isinstance(probabilities, list) or not 2 <= len(probabilities) <= 26:
                    raise PipelineError(f"{where}: label must be a list of 2-26 option probabilities")
                if max(probabilities) < self.config["min_top_prob"]:
                    continue
                instance_id = f"globalopinionqa-{split}-{lang}-{k:05d}"
                records.append(Record(instance_id, Instance(
                    id=instance_id,
                    lang=lang,
                    prompt=expect_str(question["input_text"], question_file, k + 1, "a non-empty input_text"),
                    source_prompt=expect_str(source, translated_file, k + 1),
                    answer=gold_letter(probabilities),
                    choices=tuple(string.ascii_uppercase[: len(probabilities)]),
                    response_lang=self.response_lang(lang),
                )))
        return records

    def _hub_records(self) -> list[Record]:
        rows = hub_rows(self.config["hub"], None, "GlobalOpinionQA")
        wanted = set(self.langs)
        by_lang: dict[str, list[Record]] = {lang: [] for lang in self.langs}
        for number, row in enumerate(rows):
            where = f"GlobalOpinionQA row {number}"
            if not {"question", "selections", "options"} <= set(row):
                raise PipelineError(f"{where}: columns {sorted(row)} are not question/selections/options")
            options = parse_repr(row["options"], f"{where} options")
            selections = parse_repr(row["selections"], f"{where} selections")
            for country, probabilities in selections.items():
                lang = self.country_lang.get(country)
                if lang not in wanted or len(probabilities) != len(options) or not 2 <= len(options) <= 26:
                    continue
                probabilities = [float(p) for p in probabilities]
                if max(probabilities) < self.config["min_top_prob"]:
                    continue
                instance_id = f"globalopinionqa-{number:05d}-{slug(country)}"
                by_lang[lang].append(Record(instance_id, Instance(
                    id=instance_id,
                    lang=lang,
                    prompt=render_options(row["question"], [str(o) for o in options], country),
                    source_prompt="",
                    answer=gold_letter(probabilities),
                    choices=tuple(string.ascii_uppercase[: len(options)]),
                    response_lang=self.response_lang(lang),
                )))
        return [record for lang in self.langs for record in by_lang[lang]]
