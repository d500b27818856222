"""CulturalBench: the paper's out-of-distribution cultural task (target = English, source = culture language).

Four-option questions about a country's culture ("CulturalBench-Easy": one row per question with
``prompt_question``, ``prompt_option_a``..``d``, ``answer`` "A".."D", ``country``), rendered with
the paper's lettered template and scored by the letter rule of GlobalOpinionQA
(:func:`pipeline.scoring.letter_correct`). The Hard variant (four true/false rows per question)
is not a lettered multiple-choice task and is refused. The questions are English; the source
prompts come from a translations file keyed by ``culturalbench-<question_idx>``.

Only a hub source exists (``kellycyy/CulturalBench``, config ``CulturalBench-Easy``, split
``test``; or a local CSV via ``task.hub.data_files``). Countries map to the paper's 16 languages
by :data:`COUNTRIES` (our assignment, not checked against the CSV's spelling of every country:
extend it with ``task.countries``); other countries are left out.
"""

from __future__ import annotations

from pipeline.errors import PipelineError
from pipeline.instances import Instance
from pipeline.tasks.cultural import CulturalTask, render_options
from pipeline.tasks.pilotset import Record
from pipeline.tasks.sources import hub_defaults, hub_rows

LETTERS = ("A", "B", "C", "D")
OPTION_COLUMNS = ("prompt_option_a", "prompt_option_b", "prompt_option_c", "prompt_option_d")

COUNTRIES: dict[str, tuple[str, ...]] = {
    "ar": ("Egypt", "Lebanon", "Morocco", "Saudi Arabia"),
    "de": ("Germany",),
    "en": ("Australia", "Canada", "New Zealand", "Nigeria", "Singapore", "South Africa", "United Kingdom",
           "United States", "Zimbabwe"),
    "es": ("Argentina", "Chile", "Mexico", "Peru", "Spain"),
    "fr": ("France",),
    "ja": ("Japan",),
    "zh": ("China", "Hong Kong", "Taiwan"),
    "hi": ("India",),
    "ko": ("South Korea",),
    "ru": ("Russia",),
    "tr": ("Turkey",),
    "vi": ("Vietnam",),
    "he": ("Israel",),
    "ms": ("Malaysia",),
    "pl": ("Poland",),
    "tl": ("Philippines",),
}


class CulturalBenchTask(CulturalTask):
    """CulturalBench-Easy (Chiu et al., 2024) as parallel instances; see the module docstring."""

    NAME = "culturalbench"
    LANGS = tuple(COUNTRIES)
    SOURCES = ("hub",)
    TEMPLATE_LANGS = ("en",)
    ID_HINT = "culturalbench-<question_idx>"
    COUNTRY_LANG = {country: lang for lang, names in COUNTRIES.items() for country in names}
    HUB = hub_defaults("kellycyy/CulturalBench", "CulturalBench-Easy", "test")

    def _hub_records(self) -> list[Record]:
        rows = hub_rows(self.config["hub"], None, "CulturalBench")
        by_lang: dict[str, list[Record]] = {lang: [] for lang in self.langs}
        seen: set[str] = set()
        for number, row in enumerate(rows):
            needed = {"question_idx", "prompt_question", *OPTION_COLUMNS, "answer", "country"}
            if not needed <= set(row):
                raise PipelineError(
                    f"CulturalBench row {number}: columns {sorted(row)} are not CulturalBench-Easy's "
                    f"({', '.join(sorted(needed))}); the Hard variant is not supported"
                )
            lang = self.country_lang.get(str(row["country"]))
            if lang not in by_lang:
                continue
            answer = str(row["answer"]).strip().upper()
            if answer not in LETTERS:
                raise PipelineError(f"CulturalBench row {number}: answer {row['answer']!r} is not one of A B C D")
            instance_id = f"culturalbench-{row['question_idx']}"
            if instance_id in seen:
                raise PipelineError(f"CulturalBench row {number}: duplicate question_idx {row['question_idx']!r}")
            seen.add(instance_id)
            by_lang[lang].append(Record(instance_id, Instance(
                id=instance_id,
                lang=lang,
                prompt=render_options(str(row["prompt_question"]), [str(row[c]) for c in OPTION_COLUMNS]),
                source_prompt="",
                answer=answer,
                choices=LETTERS,
                response_lang=self.response_lang(lang),
            )))
        return [record for lang in self.langs for record in by_lang[lang]]
