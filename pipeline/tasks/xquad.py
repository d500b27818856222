"""XQuAD: the paper's multilingual generation task (target = non-English, source = the pivot).

A context paragraph and a question; correct iff the gold answer, lower-cased, is contained in
the lower-cased response (the authors' rule, :func:`pipeline.scoring.contains_correct`).

Sources: the authors' release (``XQuAD/XQuAD_{sample,unseen}/{split,ans}/xquad.<lang>.json``)
and the original dataset (``google/xquad``, configs ``xquad.<lang>``, split ``validation``, or the
raw SQuAD-format files via ``task.hub.data_files``, flattened here). Questions are paired with the
pivot's by their id, which is the same in all twelve languages.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from pipeline.errors import PipelineError
from pipeline.instances import Instance
from pipeline.tasks.common import SPLIT_OF_SUBSET, BuiltinTask
from pipeline.tasks.languages import ROLES, dialogue
from pipeline.tasks.pilotset import Record
from pipeline.tasks.sources import check_paired, expect_str, hub_defaults, hub_rows, read_json_lines, require_file

# Our translations of the paper's XQuAD template: instruction, context and question captions,
# the answer lead.
PHRASES: dict[str, tuple[str, str, str, str]] = {
    "en": (
        "Please answer these questions only based on the given context.",
        "Context",
        "Question",
        "My answer would be:",
    ),
    "ar": ("يرجى الإجابة عن هذه الأسئلة بالاعتماد على السياق المعطى فقط.", "السياق", "السؤال", "ستكون إجابتي:"),
    "de": (
        "Bitte beantworten Sie diese Fragen ausschließlich auf Grundlage des gegebenen Kontexts.",
        "Kontext",
        "Frage",
        "Meine Antwort wäre:",
    ),
    "el": (
        "Παρακαλώ απαντήστε σε αυτές τις ερωτήσεις με βάση μόνο το δοσμένο κείμενο.",
        "Κείμενο",
        "Ερώτηση",
        "Η απάντησή μου θα ήταν:",
    ),
    "es": (
        "Responde a estas preguntas basándote solo en el contexto dado.",
        "Contexto",
        "Pregunta",
        "Mi respuesta sería:",
    ),
    "hi": ("कृपया इन प्रश्नों के उत्तर केवल दिए गए संदर्भ के आधार पर दें।", "संदर्भ", "प्रश्न", "मेरा उत्तर होगा:"),
    "ro": (
        "Vă rog să răspundeți la aceste întrebări numai pe baza contextului dat.",
        "Context",
        "Întrebare",
        "Răspunsul meu ar fi:",
    ),
    "ru": (
        "Пожалуйста, отвечайте на эти вопросы, опираясь только на данный контекст.",
        "Контекст",
        "Вопрос",
        "Мой ответ был бы:",
    ),
    "th": ("โปรดตอบคำถามเหล่านี้โดยอิงจากบริบทที่ให้มาเท่านั้น", "บริบท", "คำถาม", "คำตอบของฉันคือ:"),
    "tr": ("Lütfen bu soruları yalnızca verilen bağlama dayanarak yanıtlayın.", "Bağlam", "Soru", "Cevabım şu olurdu:"),
    "vi": (
        "Hãy trả lời các câu hỏi này chỉ dựa trên ngữ cảnh đã cho.",
        "Ngữ cảnh",
        "Câu hỏi",
        "Câu trả lời của tôi sẽ là:",
    ),
    "zh": ("请仅根据给定的上下文回答这些问题。", "上下文", "问题", "我的回答是："),
}


def render(lang: str, context: str, question: str) -> str:
    """The XQuAD prompt in ``lang`` (our translation of the paper's template)."""
    instruction, context_caption, question_caption, lead = PHRASES[lang]
    colon = ROLES[lang][2]
    body = f"{instruction}\n\n{context_caption}{colon}{context}\n{question_caption}{colon}{question}"
    return dialogue(lang, body, lead)


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
    TEMPLATE_LANGS = tuple(PHRASES)
    HUB = hub_defaults("google/xquad", "xquad.{lang}", "validation")

    def _validate(self) -> None:
        if self.source == "release":
            for subset in self.release_subsets():
                base = self.release_dir(subset)
                for lang in dict.fromkeys([*self.langs, self.pivot]):
                    require_file(base / "split" / f"xquad.{lang}.json", f"XQuAD {lang} prompt file")
                for lang in self.langs:
                    require_file(base / "ans" / f"xquad.{lang}.json", f"XQuAD {lang} answer file")

    def _release_records(self, subset: str) -> list[Record]:
        base = self.release_dir(subset)
        split = SPLIT_OF_SUBSET[subset]
        pivot_file = base / "split" / f"xquad.{self.pivot}.json"
        sources = read_json_lines(pivot_file, self.limit)
        records = []
        for lang in self.langs:
            prompt_file, answer_file = base / "split" / f"xquad.{lang}.json", base / "ans" / f"xquad.{lang}.json"
            check_paired([prompt_file, pivot_file])
            check_paired([prompt_file, answer_file])
            prompts = read_json_lines(prompt_file, self.limit)
            answers = read_json_lines(answer_file, self.limit)
            for k, (prompt, source, answer) in enumerate(zip(prompts, sources, answers)):
                item = f"xquad-{split}-{k:05d}"
                records.append(Record(item, Instance(
                    id=f"{item}-{lang}",
                    lang=lang,
                    prompt=expect_str(prompt, prompt_file, k + 1),
                    source_prompt=expect_str(source, pivot_file, k + 1),
                    answer=expect_str(answer, answer_file, k + 1, "a JSON string answer"),
                    response_lang=lang,
                )))
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
