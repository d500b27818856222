"""MKQA: the paper's out-of-distribution generation task (target = non-English, source = the pivot).

Open-domain questions with answers in 26 locales; correct iff the gold answer or one of its
aliases, lower-cased, is contained in the lower-cased response (the XQuAD rule extended to
aliases, :func:`pipeline.tasks.scoring.contains_correct`). Records whose answer in the target locale has
no text (``unanswerable``, ``long_answer``) cannot be scored this way and are left out.

Only a hub source exists, and the Hub repo ``apple/mkqa`` is script-only, which ``datasets`` >= 4
refuses to load: point ``task.hub.data_files`` at ``mkqa.jsonl.gz`` (one record per line:
``example_id``, ``queries`` and ``answers`` per locale; ``entity``/``aliases`` often missing, ``text``
null for long/unanswerable answers). MKQA's Chinese is ``zh_cn``; the locale ``no`` must be
quoted in YAML (``'no'``).
"""

from __future__ import annotations

from typing import Any

from pipeline.errors import PipelineError
from pipeline.instances import Instance
from pipeline.tasks.common import BuiltinTask
from pipeline.tasks.languages import ROLES, dialogue
from pipeline.tasks.pilotset import Record
from pipeline.tasks.sources import hub_rows

LOCALE = {"zh": "zh_cn"}

# Our translations of the paper's MKQA template: instruction, question caption, answer lead.
PHRASES: dict[str, tuple[str, str, str]] = {
    "en": ("Please answer the following question.", "Question", "My answer would be:"),
    "ar": ("يرجى الإجابة عن السؤال التالي.", "السؤال", "ستكون إجابتي:"),
    "de": ("Bitte beantworten Sie die folgende Frage.", "Frage", "Meine Antwort wäre:"),
    "es": ("Por favor, responde la siguiente pregunta.", "Pregunta", "Mi respuesta sería:"),
    "fr": ("Veuillez répondre à la question suivante.", "Question", "Ma réponse serait :"),
    "ja": ("次の質問に答えてください。", "質問", "私の答えは："),
    "zh": ("请回答以下问题。", "问题", "我的回答是："),
    "it": ("Rispondi alla seguente domanda.", "Domanda", "La mia risposta sarebbe:"),
    "ko": ("다음 질문에 답해 주세요.", "질문", "제 답변은:"),
    "pt": ("Por favor, responda à seguinte pergunta.", "Pergunta", "Minha resposta seria:"),
    "tr": ("Lütfen aşağıdaki soruyu yanıtlayın.", "Soru", "Cevabım şu olurdu:"),
    "vi": ("Hãy trả lời câu hỏi sau.", "Câu hỏi", "Câu trả lời của tôi sẽ là:"),
    "fi": ("Vastaa seuraavaan kysymykseen.", "Kysymys", "Vastaukseni olisi:"),
    "he": ("אנא ענה על השאלה הבאה.", "שאלה", "התשובה שלי תהיה:"),
    "hu": ("Kérem, válaszoljon a következő kérdésre.", "Kérdés", "A válaszom ez lenne:"),
    "nl": ("Beantwoord de volgende vraag.", "Vraag", "Mijn antwoord zou zijn:"),
    "no": ("Vennligst svar på følgende spørsmål.", "Spørsmål", "Svaret mitt ville vært:"),
}


def render(lang: str, question: str) -> str:
    """The MKQA prompt in ``lang`` (our translation of the paper's open-QA template)."""
    instruction, caption, lead = PHRASES[lang]
    return dialogue(lang, f"{instruction}\n\n{caption}{ROLES[lang][2]}{question}", lead)


def gold_answers(entries: Any) -> list[str]:
    """Answer texts then aliases of one locale's answers, deduplicated, in order; [] if none has text."""
    texts = [e["text"] for e in entries or [] if isinstance(e, dict) and isinstance(e.get("text"), str) and e["text"]]
    if not texts:
        return []
    aliases = [a for e in entries for a in (e.get("aliases") or []) if isinstance(a, str) and a]
    return list(dict.fromkeys([*texts, *aliases]))


class MkqaTask(BuiltinTask):
    """MKQA (Longpre et al., 2021) as parallel instances; see the module docstring."""

    NAME = "mkqa"
    KIND = "multilingual"
    RULE = "contains"
    LANGS = ("ar", "de", "en", "es", "fr", "ja", "zh", "it", "ko", "pt", "tr", "vi", "fi", "he", "hu", "nl", "no")
    TEMPLATE_LANGS = tuple(PHRASES)

    def _validate(self) -> None:
        hub = self.config["hub"]
        if not hub["data_files"] and hub["path"] == "apple/mkqa":
            raise PipelineError(
                "task mkqa: the Hub repo apple/mkqa is script-only and datasets>=4 cannot load it; "
                "download mkqa.jsonl.gz and set task.hub.data_files=FILE"
            )

    def _hub_records(self) -> list[Record]:
        rows = hub_rows(self.config["hub"], None, "MKQA")
        pivot_locale = LOCALE.get(self.pivot, self.pivot)
        by_lang: dict[str, list[Record]] = {lang: [] for lang in self.langs}
        for number, row in enumerate(rows):
            if not {"example_id", "queries", "answers"} <= set(row):
                raise PipelineError(
                    f"MKQA row {number}: columns {sorted(row)} are not MKQA's (example_id, queries, answers)"
                )
            source_question = (row["queries"] or {}).get(pivot_locale)
            if not source_question:
                continue
            item = f"mkqa-{row['example_id']}"
            for lang in self.langs:
                locale = LOCALE.get(lang, lang)
                question = (row["queries"] or {}).get(locale)
                answers = gold_answers((row["answers"] or {}).get(locale))
                if not question or not answers:
                    continue
                by_lang[lang].append(Record(item, Instance(
                    id=f"{item}-{lang}",
                    lang=lang,
                    prompt=render(lang, question),
                    source_prompt=render(self.pivot, source_question),
                    answer=answers[0],
                    aliases=tuple(answers[1:]),
                    response_lang=lang,
                )))
        return [record for lang in self.langs for record in by_lang[lang]]
