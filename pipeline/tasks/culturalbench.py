"""CulturalBench: the paper's out-of-distribution cultural task (target = English, source = culture language).

Questions about a country's culture (Chiu et al., 2024, arXiv 2410.02677), in the two setups of
the dataset card (``kellycyy/CulturalBench``, split ``test``, CSV files read by the csv builder),
chosen with ``task.variant``:

* ``easy`` (config ``CulturalBench-Easy``): one row per question, columns ``data_idx``,
  ``question_idx`` (int), ``prompt_question``, ``prompt_option_a`` .. ``prompt_option_d``,
  ``answer`` (a letter "A".."D") and ``country``. Rendered with the paper's lettered template
  (:func:`~pipeline.tasks.cultural.render_options`) and scored by the GlobalOpinionQA letter rule
  (:func:`pipeline.tasks.scoring.letter_correct`). Instance id ``culturalbench-<question_idx>``.
* ``hard`` (config ``CulturalBench-Hard``, the card's default; the one the authors' ``transplant_ffn``
  script names): the same 1,227 questions as four binary rows each (card: 1,227 x 4 = 4,908),
  columns ``data_idx``, ``question_idx``, ``prompt_question``, ``prompt_option`` (one candidate
  answer), ``answer`` and ``country``. ``answer`` is written TRUE/FALSE in the CSV and read as a
  bool by the csv builder (pandas); a question can have more than one TRUE option. Each row is one
  instance, ``culturalbench-<question_idx>-<data_idx>``, whose prompt asks whether the option
  answers the question, in the CulturalBench paper's wording ("Question: ...\\nAnswer: ...\\nIs
  this answer true or false for this question? You must choose either True or False.") inside
  the paper's Human/Assistant dialogue; gold "True"/"False", scored by
  :func:`pipeline.tasks.scoring.truefalse_correct`. The card scores at question level: a question is
  right iff all its judgements are (:func:`question_correct`, over the rows' ``correct``). A
  PilotSet draws whole questions (``pilot_size`` questions per language).

The questions are English; the source prompts (the same prompt in the culture's language) come
from a translations file keyed by instance id. Countries map to the paper's 16 languages by
:data:`COUNTRIES` (our assignment, not checked against the CSV's spelling of every country:
extend it with ``task.countries``); other countries are left out. The release has no
CulturalBench data or prompt: the Hard template's dialogue frame and lead are ours.
"""

from __future__ import annotations

from collections.abc import Mapping

from pipeline.errors import PipelineError
from pipeline.instances import Instance
from pipeline.tasks.cultural import CulturalTask, render_options
from pipeline.tasks.pilotset import Record
from pipeline.tasks.sources import hub_rows

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


VARIANTS = ("easy", "hard")
HUB_CONFIGS = {"easy": "CulturalBench-Easy", "hard": "CulturalBench-Hard"}
TRUE_FALSE = ("True", "False")
HARD_QUESTION = "Is this answer true or false for this question? You must choose either True or False."
HARD_LEAD = "Assistant: My answer would be:"


def render_true_false(question: str, option: str) -> str:
    """The CulturalBench-Hard prompt for one question-option pair (English, the target side)."""
    return f"Human: Question: {question.strip()}\nAnswer: {option.strip()}\n{HARD_QUESTION}\n{HARD_LEAD}"


def hard_answer(value: object, number: int) -> str:
    """CulturalBench-Hard's ``answer`` (a bool from the csv builder, or TRUE/FALSE text) as "True"/"False"."""
    if isinstance(value, bool):
        return TRUE_FALSE[0] if value else TRUE_FALSE[1]
    text = str(value).strip().lower()
    if text in ("true", "false"):
        return TRUE_FALSE[0] if text == "true" else TRUE_FALSE[1]
    raise PipelineError(f"CulturalBench-Hard row {number}: answer {value!r} is not TRUE or FALSE")


def question_of(instance_id: str) -> str:
    """The question a CulturalBench-Hard instance judges: ``culturalbench-<question_idx>``."""
    return instance_id.rsplit("-", 1)[0]


def question_correct(correct: Mapping[str, bool]) -> dict[str, bool]:
    """The dataset card's question-level score of CulturalBench-Hard.

    Args:
        correct: instance id -> whether that judgement is right (the ``correct`` column of one
            configuration's rows).

    Returns:
        ``culturalbench-<question_idx>`` -> True iff every judgement of the question is right.
    """
    questions: dict[str, bool] = {}
    for instance_id, right in correct.items():
        key = question_of(instance_id)
        questions[key] = questions.get(key, True) and bool(right)
    return questions


class CulturalBenchTask(CulturalTask):
    """CulturalBench (Chiu et al., 2024), Easy or Hard, as parallel instances; see the module docstring."""

    NAME = "culturalbench"
    LANGS = tuple(COUNTRIES)
    SOURCES = ("hub",)
    TEMPLATE_LANGS = ("en",)
    ID_HINT = "culturalbench-<question_idx> (easy), culturalbench-<question_idx>-<data_idx> (hard)"
    COUNTRY_LANG = {country: lang for lang, names in COUNTRIES.items() for country in names}

    def _validate(self) -> None:
        self.variant = self._choice("variant", VARIANTS)
        super()._validate()

    def rule(self, instance: Instance) -> str:
        """``letter`` for Easy, ``truefalse`` for Hard's binary judgements."""
        return "truefalse" if self.variant == "hard" else self.RULE

    def _rows(self) -> list[dict]:
        hub = dict(self.config["hub"])
        hub["name"] = hub["name"] or HUB_CONFIGS[self.variant]
        return hub_rows(hub, None, HUB_CONFIGS[self.variant])

    def _check_columns(self, row: dict, number: int, needed: set[str]) -> None:
        if not needed <= set(row):
            other = "hard" if self.variant == "easy" else "easy"
            raise PipelineError(
                f"{HUB_CONFIGS[self.variant]} row {number}: columns {sorted(row)} are not its "
                f"({', '.join(sorted(needed))}); is this {HUB_CONFIGS[other]}? (task.variant={other})"
            )

    def _hub_records(self) -> list[Record]:
        records = self._hard_records() if self.variant == "hard" else self._easy_records()
        return [record for lang in self.langs for record in records if record.instance.lang == lang]

    def _easy_records(self) -> list[Record]:
        records: list[Record] = []
        seen: set[str] = set()
        for number, row in enumerate(self._rows()):
            self._check_columns(row, number, {"question_idx", "prompt_question", *OPTION_COLUMNS, "answer", "country"})
            lang = self.country_lang.get(str(row["country"]))
            if lang not in self.langs:
                continue
            answer = str(row["answer"]).strip().upper()
            if answer not in LETTERS:
                raise PipelineError(f"CulturalBench row {number}: answer {row['answer']!r} is not one of A B C D")
            instance_id = f"culturalbench-{row['question_idx']}"
            if instance_id in seen:
                raise PipelineError(f"CulturalBench row {number}: duplicate question_idx {row['question_idx']!r}")
            seen.add(instance_id)
            records.append(Record(instance_id, Instance(
                id=instance_id,
                lang=lang,
                prompt=render_options(str(row["prompt_question"]), [str(row[c]) for c in OPTION_COLUMNS]),
                source_prompt="",
                answer=answer,
                choices=LETTERS,
                response_lang=self.response_lang(lang),
            )))
        return records

    def _hard_records(self) -> list[Record]:
        records: list[Record] = []
        seen: set[str] = set()
        asked: dict[str, tuple[str, str]] = {}  # question -> (question text, country)
        for number, row in enumerate(self._rows()):
            self._check_columns(row, number, {"data_idx", "question_idx", "prompt_question", "prompt_option",
                                              "answer", "country"})
            question = f"culturalbench-{row['question_idx']}"
            text, country = str(row["prompt_question"]), str(row["country"])
            if asked.setdefault(question, (text, country)) != (text, country):
                raise PipelineError(
                    f"CulturalBench-Hard row {number}: question_idx {row['question_idx']!r} has another "
                    "prompt_question or country than its first row"
                )
            answer = hard_answer(row["answer"], number)
            lang = self.country_lang.get(country)
            if lang not in self.langs:
                continue
            instance_id = f"{question}-{row['data_idx']}"
            if instance_id in seen:
                raise PipelineError(f"CulturalBench-Hard row {number}: duplicate data_idx {row['data_idx']!r}")
            seen.add(instance_id)
            records.append(Record(question, Instance(
                id=instance_id,
                lang=lang,
                prompt=render_true_false(text, str(row["prompt_option"])),
                source_prompt="",
                answer=answer,
                choices=TRUE_FALSE,
                response_lang=self.response_lang(lang),
            )))
        return records
