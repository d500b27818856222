"""XQuAD: the paper's multilingual generation task (target = non-English, source = the pivot).

A context paragraph and a question; correct iff the gold answer, lower-cased, is contained in
the lower-cased response (the authors' rule, :func:`pipeline.tasks.scoring.contains_correct`).

Sources: the authors' release (``XQuAD/XQuAD_{sample,unseen}/{split,ans}/xquad.<lang>.json``)
and the original dataset (``google/xquad``, configs ``xquad.<lang>``, split ``validation``, or the
raw SQuAD-format files via ``task.hub.data_files``, flattened here). Questions are paired with the
pivot's by their id, which is the same in all twelve languages. The hub source renders each
question with the release's own template of its language (:data:`TEMPLATES`), so every released
item rebuilt from the raw files is byte-identical to the released prompt
(tests/test_tasks_release_prompts.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from pipeline.errors import PipelineError
from pipeline.instances import Instance
from pipeline.tasks.common import SPLIT_OF_SUBSET, BuiltinTask
from pipeline.tasks.pilotset import Record
from pipeline.tasks.sources import expect_str, hub_rows, release_lines

@dataclass(frozen=True)
class XquadTemplate:
    """The authors' XQuAD prompt in one language, as their release prints it (paper Table 5).

    Byte-exact strings: role words and captions end in their separator (": ", Chinese "：" and,
    for the captions, "： "), as released.
    """

    human: str
    instruction: str
    context: str
    question: str
    assistant: str
    lead: str


# The release's templates (XQuAD/XQuAD_{sample,unseen}/split/xquad.<lang>.json, identical in every item).
TEMPLATES: dict[str, XquadTemplate] = {
    "en": XquadTemplate(
        human="Human: ",
        instruction="Please answer these questions only based on the given context.",
        context="Context: ",
        question="Question: ",
        assistant="Assistant: ",
        lead="My answer would be:",
    ),
    "ar": XquadTemplate(
        human="الإنسان: ",
        instruction="يرجى الإجابة على هذه الأسئلة فقط بناءً على السياق المعطى.",
        context="سياق: ",
        question="سؤال: ",
        assistant="المساعد: ",
        lead="إجابتي ستكون:",
    ),
    "de": XquadTemplate(
        human="Mensch: ",
        instruction="Bitte beantworten Sie diese Fragen nur auf der Grundlage des gegebenen Kontexts.",
        context="Kontext: ",
        question="Frage: ",
        assistant="Assistent: ",
        lead="Meine Antwort wäre:",
    ),
    "el": XquadTemplate(
        human="Άνθρωπος: ",
        instruction="Απαντήστε σε αυτές τις ερωτήσεις μόνο με βάση το δεδομένο πλαίσιο.",
        context="Συμφραζόμενα: ",
        question="Ερώτηση: ",
        assistant="Βοηθός: ",
        lead="Η απάντησή μου θα ήταν:",
    ),
    "es": XquadTemplate(
        human="Humano: ",
        instruction="Por favor, responda estas preguntas basándose únicamente en el contexto dado.",
        context="Contexto: ",
        question="Pregunta: ",
        assistant="Asistente: ",
        lead="Mi respuesta sería:",
    ),
    "hi": XquadTemplate(
        human="मानव: ",
        instruction="कृपया इन प्रश्नों का उत्तर केवल दिए गए संदर्भ के आधार पर दें।",
        context="संदर्भ: ",
        question="प्रश्न: ",
        assistant="सहायक: ",
        lead="मेरा उत्तर होगा:",
    ),
    "ro": XquadTemplate(
        human="Om: ",
        instruction="Vă rugăm să răspundeți la aceste întrebări numai în funcție de contextul dat.",
        context="Context: ",
        question="Întrebare: ",
        assistant="Ajutor: ",
        lead="Răspunsul meu ar fi:",
    ),
    "ru": XquadTemplate(
        human="Человек: ",
        instruction="Пожалуйста, отвечайте на эти вопросы только на основе данного контекста.",
        context="Контекст: ",
        question="Вопрос: ",
        assistant="Помощник: ",
        lead="Мой ответ будет:",
    ),
    "th": XquadTemplate(
        human="มนุษย์: ",
        instruction="โปรดตอบคำถามเหล่านี้ตามบริบทที่กำหนดให้เท่านั้น",
        context="บริบท: ",
        question="คำถาม: ",
        assistant="ผู้ช่วย: ",
        lead="คำตอบของฉันจะเป็น:",
    ),
    "tr": XquadTemplate(
        human="İnsan: ",
        instruction="Lütfen bu soruları yalnızca verilen bağlama göre cevaplayın.",
        context="Bağlam: ",
        question="Soru: ",
        assistant="Yardımcı: ",
        lead="Cevabım şu olurdu:",
    ),
    "vi": XquadTemplate(
        human="Con người: ",
        instruction="Vui lòng trả lời những câu hỏi này chỉ dựa trên ngữ cảnh được đưa ra.",
        context="Bối cảnh: ",
        question="Câu hỏi: ",
        assistant="Người trợ giúp: ",
        lead="Câu trả lời của tôi sẽ là:",
    ),
    "zh": XquadTemplate(
        human="人类：",
        instruction="请仅根据给定的上下文回答这些问题。",
        context="上下文： ",
        question="问题： ",
        assistant="助理：",
        lead="我的回答是：",
    ),
}


def render(lang: str, context: str, question: str) -> str:
    """The XQuAD prompt in ``lang``, byte-identical to the release's prompt for the same question."""
    t = TEMPLATES[lang]
    return f"{t.human}{t.instruction}\n\n{t.context}{context}\n{t.question}{question}\n\n{t.assistant}{t.lead}"


def flatten(rows: list[dict[str, Any]], what: str) -> Iterator[tuple[str, str, str, str]]:
    """Yields (id, context, question, first answer) from Hub rows or raw SQuAD article rows.

    The Hub copy has one row per question with ``answers`` as ``{"text": [...], ...}``; the raw
    release loaded with ``field="data"`` has one row per article (``paragraphs`` -> ``qas``).
    """
    for row in rows:
        if "paragraphs" in row:
            for paragraph in row["paragraphs"]:
                for qa in paragraph["qas"]:
                    answers = qa.get("answers") or []
                    if not answers:
                        raise PipelineError(f"{what}: question {qa.get('id')!r} has no answer")
                    yield qa["id"], paragraph["context"], qa["question"], answers[0]["text"]
        elif {"id", "context", "question", "answers"} <= set(row):
            texts = row["answers"]["text"] if isinstance(row["answers"], dict) else [a["text"] for a in row["answers"]]
            if not texts:
                raise PipelineError(f"{what}: question {row['id']!r} has no answer")
            yield row["id"], row["context"], row["question"], texts[0]
        else:
            raise PipelineError(
                f"{what}: rows have columns {sorted(row)}, not XQuAD's (id, context, question, answers)"
            )


class XquadTask(BuiltinTask):
    """XQuAD (Artetxe et al., 2020) as parallel instances; see the module docstring."""

    NAME = "xquad"
    KIND = "multilingual"
    RULE = "contains"
    LANGS = ("ar", "de", "el", "en", "es", "hi", "ro", "ru", "th", "tr", "vi", "zh")
    SOURCES = ("release", "hub")
    RELEASE_DIR = "XQuAD"
    RELEASE_FILE = "xquad.{lang}.json"
    TEMPLATE_LANGS = tuple(TEMPLATES)

    def _validate(self) -> None:
        if self.source == "release":
            self.require_release_files(
                ("split", list(dict.fromkeys([*self.langs, self.pivot])), "prompt file"), ("ans", self.langs, "answer file")
            )

    def _release_records(self, subset: str) -> list[Record]:
        base = self.release_dir(subset)
        split = SPLIT_OF_SUBSET[subset]
        records = []
        for line in release_lines(base, self.release_file, self.pivot, self.langs, self.limit):
            records.append(line.record("xquad", split, expect_str(line.answer, line.answer_file, line.k + 1,
                                                                   "a JSON string answer")))  # fmt: skip
        return records

    def _questions(self, lang: str) -> dict[str, tuple[str, str, str]]:
        rows = hub_rows(self.config["hub"], lang, f"XQuAD {lang}", json_field="data")
        return {qid: (context, question, answer) for qid, context, question, answer in flatten(rows, f"XQuAD {lang}")}

    def _hub_records(self) -> list[Record]:
        pivot = self._questions(self.pivot)
        records = []
        for lang in self.langs:
            questions = pivot if lang == self.pivot else self._questions(lang)
            for qid, (context, question, answer) in questions.items():
                if qid not in pivot:
                    raise PipelineError(f"XQuAD: question {qid!r} of {lang} is missing from the pivot {self.pivot}")
                p_context, p_question, _ = pivot[qid]
                records.append(Record(f"xquad-{qid}", Instance(
                    id=f"xquad-{qid}-{lang}",
                    lang=lang,
                    prompt=render(lang, context, question),
                    source_prompt=render(self.pivot, p_context, p_question),
                    answer=answer,
                    response_lang=lang,
                )))
        return records
