"""What the two cultural tasks share: the lettered-options template and the translations file.

Cultural tasks run the other way round from multilingual ones: the target prompt is English, and
the source prompt is the same question in the culture's language, so a culture's knowledge can
flow into the English answer (the paper's "En <- culture language"). An instance is reported
under the culture's language (``lang``); a consistent response is English (``response_lang``).
The Hub data is English only, so the hub source needs the questions in the culture's language
from a translations file (JSONL ``id`` -> ``source_prompt``), keyed by our instance ids.
"""

from __future__ import annotations

import re
import string
from collections.abc import Mapping, Sequence
from dataclasses import replace

from pipeline.errors import PipelineError
from pipeline.tasks.common import BuiltinTask
from pipeline.tasks.pilotset import Record
from pipeline.tasks.sources import attach_translations, read_translations

LEAD = "Assistant: If I had to select one of the options, my answer would be:"


def render_options(question: str, options: Sequence[str], country: str | None = None) -> str:
    """The paper's English multiple-choice template (GlobalOpinionQA, Table 5).

    Args:
        question: the survey / quiz question.
        options: option texts, lettered (A), (B), ... in order.
        country: GlobalOpinionQA asks how "someone from <country>" would answer; None omits it.
    """
    opening = f"How would someone from {country} answer the following question:\n" if country else ""
    lettered = "\n".join(f"({letter}) {text}" for letter, text in zip(string.ascii_uppercase, options))
    return f"Human: {opening}{question}\nHere are the options:\n{lettered}\n{LEAD}"


def slug(text: str) -> str:
    """A lower-case ASCII slug for ids: "S. Africa (Non-national sample)" -> "s-africa-non-national-sample"."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


class CulturalTask(BuiltinTask):
    """Base of GlobalOpinionQA and CulturalBench: country -> language, translations, letter rule."""

    KIND = "cultural"
    RULE = "letter"
    COUNTRY_LANG: dict[str, str] = {}
    ID_HINT = ""  # how instance ids (the keys of the translations file) are formed

    def _validate(self) -> None:
        countries = self.config["countries"]
        if countries is not None and not (
            isinstance(countries, Mapping)
            and all(isinstance(k, str) and isinstance(v, str) for k, v in countries.items())
        ):
            raise PipelineError(f"task {self.NAME}: task.countries must map country names to language codes, got {countries!r}")
        self.country_lang = {**self.COUNTRY_LANG, **(countries or {})}
        self.translations: dict[str, str] = {}
        if self.source == "hub":
            self.translations = read_translations(self.config["translations"], self.NAME, self.ID_HINT)

    def _finalize(self, records: list[Record]) -> list[Record]:
        attach_translations(records, self.translations, self.config["translations"], self.NAME)
        return [
            Record(record.item, replace(record.instance, source_prompt=self.translations[record.instance.id]))
            for record in records
        ]
