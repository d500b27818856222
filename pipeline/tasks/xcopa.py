"""XCOPA: the paper's out-of-distribution understanding task (target = non-English, source = the pivot).

A premise, two alternatives and whether the cause or the effect is asked; scored by the choice
rule of the authors' ``evaluation/XNLI.py`` on (1)/(2) without label words
(:func:`pipeline.tasks.scoring.choice_correct`; "Option 1 ..." scores 0, as the paper notes). The
template is our translation of the paper's multiple-choice prompts.

Only a hub source exists (``cambridgeltl/xcopa``, one config per language, or the original
``data/<lang>/{val,test}.<lang>.jsonl`` files via ``task.hub.data_files``). Items are parallel by
``idx``. Two traps of the data are handled here:

* XCOPA has no English. The English side of language L is the dataset's machine translation of L
  into English (config ``translation-<L>``, files ``data-gmt/...``), so each language is paired
  with its own English. This is our choice: the authors' release holds no XCOPA data, prompt or
  evaluation script (only the language list en ht id it sw ta tr vi zh in its ``transplant_attn``
  shell script and an ``XCOPA_unseen`` output folder name in ``transplant_attn.py``). English as
  a *target* needs the original COPA (``task.hub.copa_data_files``, same schema), which is not on
  the Hub with test labels.
* The ``question`` field (cause/effect) is wrong in some languages (th, tr, sw, ...); it is taken
  by ``idx`` from ``task.question_lang`` (default zh, consistent with et, ht, qu, ta and vi).
"""

from __future__ import annotations

from typing import Any

from pipeline.errors import PipelineError
from pipeline.instances import Instance
from pipeline.tasks.common import BuiltinTask
from pipeline.tasks.languages import ROLES
from pipeline.tasks.pilotset import Record
from pipeline.tasks.sources import hub_rows

CHOICES = ("1", "2")

# Our translations of the paper's XCOPA template: task statement, premise and options captions,
# the cause question, the effect question, the answer caption.
PHRASES: dict[str, tuple[str, str, str, str, str, str]] = {
    "en": (
        "You are assigned to complete a two-category classification task.",
        "Premise",
        "Options",
        "Please determine which of the two options is more likely to be the cause of the given premise.",
        "Please determine which of the two options is more likely to be the result of the given premise.",
        "Your Answer",
    ),
    "zh": ("你需要完成一项二分类任务。", "前提", "选项", "请判断两个选项中哪一个更可能是给定前提的原因。", "请判断两个选项中哪一个更可能是给定前提的结果。", "你的答案"),
    "it": (
        "Devi svolgere un compito di classificazione a due categorie.",
        "Premessa",
        "Opzioni",
        "Stabilisci quale delle due opzioni è più probabilmente la causa della premessa data.",
        "Stabilisci quale delle due opzioni è più probabilmente la conseguenza della premessa data.",
        "La tua risposta",
    ),
    "tr": (
        "Size iki kategorili bir sınıflandırma görevi verildi.",
        "Öncül",
        "Seçenekler",
        "Lütfen iki seçenekten hangisinin verilen öncülün nedeni olma olasılığının daha yüksek olduğunu belirleyin.",
        "Lütfen iki seçenekten hangisinin verilen öncülün sonucu olma olasılığının daha yüksek olduğunu belirleyin.",
        "Cevabınız",
    ),
    "vi": (
        "Bạn được giao hoàn thành một nhiệm vụ phân loại hai lớp.",
        "Tiền đề",
        "Lựa chọn",
        "Hãy xác định lựa chọn nào trong hai lựa chọn có khả năng là nguyên nhân của tiền đề đã cho hơn.",
        "Hãy xác định lựa chọn nào trong hai lựa chọn có khả năng là kết quả của tiền đề đã cho hơn.",
        "Câu trả lời của bạn",
    ),
    "ht": (
        "Ou gen pou fè yon travay klasifikasyon ak de kategori.",
        "Premis",
        "Opsyon",
        "Tanpri detèmine kiyès nan de opsyon yo ki gen plis chans pou se kòz premis la.",
        "Tanpri detèmine kiyès nan de opsyon yo ki gen plis chans pou se konsekans premis la.",
        "Repons ou",
    ),
    "id": (
        "Anda ditugaskan menyelesaikan tugas klasifikasi dua kategori.",
        "Premis",
        "Pilihan",
        "Tentukan mana di antara dua pilihan yang lebih mungkin menjadi penyebab dari premis yang diberikan.",
        "Tentukan mana di antara dua pilihan yang lebih mungkin menjadi akibat dari premis yang diberikan.",
        "Jawaban Anda",
    ),
    "sw": (
        "Umepewa kazi ya kuainisha katika makundi mawili.",
        "Dhana",
        "Chaguo",
        "Tafadhali amua ni chaguo lipi kati ya mawili linalowezekana zaidi kuwa sababu ya dhana iliyotolewa.",
        "Tafadhali amua ni chaguo lipi kati ya mawili linalowezekana zaidi kuwa matokeo ya dhana iliyotolewa.",
        "Jibu lako",
    ),
    "ta": (
        "இரண்டு வகைப் பிரிப்புப் பணியை முடிக்க உங்களுக்கு ஒதுக்கப்பட்டுள்ளது.",
        "அடிப்படைக் கூற்று",
        "விருப்பங்கள்",
        "கொடுக்கப்பட்ட கூற்றுக்கு இரண்டு விருப்பங்களில் எது காரணமாக இருக்க அதிக வாய்ப்புள்ளது என்பதைத் தீர்மானிக்கவும்.",
        "கொடுக்கப்பட்ட கூற்றின் விளைவாக இரண்டு விருப்பங்களில் எது இருக்க அதிக வாய்ப்புள்ளது என்பதைத் தீர்மானிக்கவும்.",
        "உங்கள் பதில்",
    ),
}


def render(lang: str, premise: str, choice1: str, choice2: str, question: str) -> str:
    """The XCOPA prompt in ``lang``; ``question`` is "cause" or "effect"."""
    statement, premise_caption, options_caption, ask_cause, ask_effect, answer_caption = PHRASES[lang]
    colon = ROLES[lang][2]
    ask = ask_cause if question == "cause" else ask_effect
    return (
        f"{statement}\n\n{premise_caption}{colon}{premise}\n{options_caption}{colon}(1) {choice1}\n(2) {choice2}"
        f"\n\n{ask}\n\n{answer_caption}{colon.rstrip()}"
    )


class XcopaTask(BuiltinTask):
    """XCOPA (Ponti et al., 2020) as parallel instances; see the module docstring."""

    NAME = "xcopa"
    KIND = "multilingual"
    RULE = "choice"
    LANGS = ("en", "zh", "it", "tr", "vi", "ht", "id", "sw", "ta")
    TEMPLATE_LANGS = tuple(PHRASES)

    def _validate(self) -> None:
        question_lang = self.config["question_lang"]
        if question_lang not in self.LANGS or question_lang == "en":
            raise PipelineError(f"task xcopa: task.question_lang={question_lang!r} must be an XCOPA language other than en")
        if "en" in self.langs and not self.config["hub"]["copa_data_files"]:
            raise PipelineError(
                "task xcopa: XCOPA has no English, so target language en needs the original COPA: "
                "set task.hub.copa_data_files=FILE (XCOPA's jsonl schema) or drop en from task.langs"
            )

    def _table(self, lang: str, kind: str = "xcopa") -> dict[int, dict[str, Any]]:
        hub = self.config["hub"]
        if kind == "copa":
            rows = hub_rows(hub, lang, "COPA (English)", files_key="copa_data_files")
        elif kind == "gmt":
            rows = hub_rows(hub, lang, f"XCOPA {lang} English translation", "english_data_files", "english_name")
        else:
            rows = hub_rows(hub, lang, f"XCOPA {lang}")
        table = {}
        for number, row in enumerate(rows):
            if not {"premise", "choice1", "choice2", "label", "idx"} <= set(row):
                raise PipelineError(f"XCOPA {lang} row {number}: columns {sorted(row)} are not XCOPA's")
            table[int(row["idx"])] = row
        return table

    def _hub_records(self) -> list[Record]:
        questions = {idx: row["question"] for idx, row in self._table(self.config["question_lang"]).items()}
        copa = self._table("en", "copa") if self.config["hub"]["copa_data_files"] else None
        pivot = None if self.pivot == "en" else self._table(self.pivot)
        records = []
        for lang in self.langs:
            rows = copa if lang == "en" else self._table(lang)
            sources = pivot if pivot is not None else (copa if lang == "en" else self._table(lang, "gmt"))
            assert rows is not None and sources is not None
            for idx, row in rows.items():
                if idx not in sources or idx not in questions:
                    raise PipelineError(
                        f"XCOPA: idx {idx} of {lang} has no parallel item in the source or question table"
                    )
                label = row["label"]
                if label not in (0, 1):
                    raise PipelineError(f"XCOPA {lang} idx {idx}: label {label!r} is not 0 or 1")
                source, question = sources[idx], questions[idx]
                item = f"xcopa-{self.hub_tag()}-{idx:05d}"
                records.append(Record(item, Instance(
                    id=f"{item}-{lang}",
                    lang=lang,
                    prompt=render(lang, row["premise"], row["choice1"], row["choice2"], question),
                    source_prompt=render(self.pivot, source["premise"], source["choice1"], source["choice2"], question),
                    answer=CHOICES[label],
                    choices=CHOICES,
                    response_lang=lang,
                )))
        return records
