"""XNLI: the paper's multilingual understanding task (target = non-English, source = the pivot).

A premise/hypothesis pair with three options, (1) entailment, (2) neutral, (3) contradiction,
each printed with a label word in the prompt's language; scored by the authors' choice rule
with those label words (:func:`pipeline.tasks.scoring.choice_correct`). Gold labels are "1"/"2"/"3",
i.e. the Hub's ClassLabel (0 entailment, 1 neutral, 2 contradiction) + 1.

Sources: the authors' release (``XNLI/XNLI_{sample,unseen}/{split,ans,ans_lang}/<lang>.json``)
and the original dataset (``facebook/xnli``, one config per language, or XTREME's TSV files via
``task.hub.data_files``; their test files carry no labels, so use the dev files or the Hub). The
hub source renders each pair with the release's own template of its language
(:data:`TEMPLATES`), so a released item rebuilt from its raw pair is byte-identical to the
released prompt (tests/test_tasks_release_prompts.py), and its label words are the release's.

Two traits of the release are kept as they are: a few released premises/hypotheses end in a
space that XTREME's TSV copy strips, and the German ``XNLI_unseen`` items 210-999 come from the
test row after the English item's: there the German target is not the English source's
translation, and the German gold differs from the English item's in 705 of the 790 items.
"""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.errors import PipelineError
from pipeline.instances import Instance
from pipeline.tasks.common import SPLIT_OF_SUBSET, BuiltinTask
from pipeline.tasks.pilotset import Record
from pipeline.tasks.sources import hub_rows, read_json_lines, release_lines

CHOICES = ("1", "2", "3")
HUB_LABELS = ("entailment", "neutral", "contradiction")


@dataclass(frozen=True)
class XnliTemplate:
    """The authors' XNLI prompt in one language, as their release prints it (paper Table 5).

    Every string is byte-exact, separators included: the role words end in their separator
    (": ", French "\\xa0: ", Chinese "："), captions likewise, and ``options`` are the printed
    option lines (English's first one ends in a space: "(1) Entail "). ``label_words`` are the
    release's ``ans_lang/<lang>.json`` words that the choice rule accepts for each option
    (French's include the "(1)\\xa0" prefix, as released).
    """

    human: str
    question: str
    premise: str
    hypothesis: str
    options: tuple[str, str, str]
    label_words: tuple[str, str, str]
    assistant: str
    lead: str


# The release's templates (XNLI/XNLI_{sample,unseen}/split/<lang>.json, identical in every item).
TEMPLATES: dict[str, XnliTemplate] = {
    "en": XnliTemplate(
        human="Human: ",
        question="What do you think is the relationship between the premise and the hypothesis?",
        premise="Premise: ",
        hypothesis="Hypothesis: ",
        options=("(1) Entail ", "(2) Neutral", "(3) Contradict"),
        label_words=("Entail", "Neutral", "Contradict"),
        assistant="Assistant: ",
        lead="If I had to select one of the options, my answer would be:",
    ),
    "ar": XnliTemplate(
        human="الإنسان: ",
        question="ما هي العلاقة التي تعتقد أنها بين المقدمة والفرضية؟",
        premise="المقدمة: ",
        hypothesis="الفرضية: ",
        options=("(1) يستلزم", "(2) محايد", "(3) يتناقض"),
        label_words=("يستلزم", "محايد", "يتناقض"),
        assistant="المساعد: ",
        lead="إذا كان عليّ اختيار أحد الخيارات، فإن إجابتي ستكون:",
    ),
    "bg": XnliTemplate(
        human="Човек: ",
        question="Каква според теб е връзката между предпоставката и хипотезата?",
        premise="Помещение: ",
        hypothesis="Хипотеза: ",
        options=("(1) Повлича", "(2) Неутрален", "(3) Противоречат"),
        label_words=("Повлича", "Неутрален", "Противоречат"),
        assistant="Асистент: ",
        lead="Ако трябва да избера една от опциите, отговорът ми ще бъде:",
    ),
    "de": XnliTemplate(
        human="Mensch: ",
        question="Was ist Ihrer Meinung nach die Beziehung zwischen der Prämisse und der Hypothese?",
        premise="Prämisse: ",
        hypothesis="Hypothese: ",
        options=("(1) Nach sich ziehen", "(2) Neutral", "(3) Widersprechen"),
        label_words=("Nach sich ziehen", "Neutral", "Widersprechen"),
        assistant="Assistent: ",
        lead="Wenn ich eine der Optionen auswählen müsste, wäre meine Antwort:",
    ),
    "el": XnliTemplate(
        human="Human: ",
        question="Ποια πιστεύετε ότι είναι η σχέση μεταξύ της υπόθεσης και της υπόθεσης;",
        premise="Προϋπόθεση: ",
        hypothesis="Υπόθεση: ",
        options=("(1) Συνεπάγεται", "(2) Ουδέτερο", "(3) Αντίφαση"),
        label_words=("Συνεπάγεται", "Ουδέτερο", "Αντίφαση"),
        assistant="Βοηθός: ",
        lead="Αν έπρεπε να διαλέξω μία από τις επιλογές, η απάντησή μου θα ήταν:",
    ),
    "es": XnliTemplate(
        human="Humano: ",
        question="¿Cuál crees que es la relación entre la premisa y la hipótesis?",
        premise="Premisa: ",
        hypothesis="Hipótesis: ",
        options=("(1) Implica", "(2) Neutral", "(3) Contradice"),
        label_words=("Implica", "Neutral", "Contradice"),
        assistant="Asistente: ",
        lead="Si tuviera que seleccionar una de las opciones, mi respuesta sería:",
    ),
    "fr": XnliTemplate(
        human="Humain\xa0: ",
        question="Selon vous, quelle est la relation entre la prémisse et l'hypothèse\xa0?",
        premise="Prémisse\xa0: ",
        hypothesis="Hypothèse\xa0: ",
        options=("(1)\xa0Entraîner", "(2)\xa0Neutre", "(3)\xa0Contraire"),
        label_words=("(1)\xa0Entraîner", "(2)\xa0Neutre", "(3)\xa0Contraire"),
        assistant="Assistant\xa0: ",
        lead="Si je devais sélectionner l'une des options, ma réponse serait\xa0:",
    ),
    "hi": XnliTemplate(
        human="मानव: ",
        question="आपको क्या लगता है कि आधार और परिकल्पना के बीच क्या संबंध है?",
        premise="आधार: ",
        hypothesis="परिकल्पना: ",
        options=("(1) निहित", "(2) तटस्थ", "(3) विरोधाभास"),
        label_words=("निहित", "तटस्थ", "विरोधाभास"),
        assistant="सहायक: ",
        lead="अगर मुझे विकल्पों में से एक चुनना हो, तो मेरा उत्तर होगा:",
    ),
    "ru": XnliTemplate(
        human="Человек: ",
        question="Как вы думаете, какова связь между предпосылкой и гипотезой?",
        premise="Предпосылка: ",
        hypothesis="Гипотеза: ",
        options=("(1) Следствие", "(2) Нейтральное", "(3) Противоречие"),
        label_words=("Следствие", "Нейтральное", "Противоречие"),
        assistant="Помощник: ",
        lead="Если бы мне пришлось выбрать один из вариантов, мой ответ был бы:",
    ),
    "sw": XnliTemplate(
        human="Binadamu: ",
        question="Unafikiri kuna uhusiano gani kati ya dhana na dhana?",
        premise="Nguzo: ",
        hypothesis="Nadharia: ",
        options=("(1) Inajumuisha", "(2) Kuegemea upande wowote", "(3) Kupingana"),
        label_words=("Inajumuisha", "Kuegemea upande wowote", "Kupingana"),
        assistant="Msaidizi: ",
        lead="Ikiwa ningelazimika kuchagua moja ya chaguzi, jibu langu lingekuwa:",
    ),
    "tr": XnliTemplate(
        human="İnsan: ",
        question="Öncül ile hipotez arasındaki ilişkinin ne olduğunu düşünüyorsunuz?",
        premise="Öncül: ",
        hypothesis="Hipotez: ",
        options=("(1) Gerektirir", "(2) Tarafsız", "(3) Çelişkili"),
        label_words=("Gerektirir", "Tarafsız", "Çelişkili"),
        assistant="Yardımcı: ",
        lead="Seçeneklerden birini seçmek zorunda kalsaydım, cevabım şu olurdu:",
    ),
    "ur": XnliTemplate(
        human="انسان: ",
        question="آپ کے خیال میں بنیاد اور مفروضے کے درمیان کیا تعلق ہے؟",
        premise="بنیاد: ",
        hypothesis="مفروضہ: ",
        options=("(1) داخل کرنا", "(2) غیر جانبدار", "(3) تضاد"),
        label_words=("داخل کرنا", "غیر جانبدار", "تضاد"),
        assistant="اسسٹنٹ: ",
        lead="اگر مجھے آپشنز میں سے کسی ایک کو منتخب کرنا ہوتا تو میرا جواب یہ ہوگا:",
    ),
    "vi": XnliTemplate(
        human="Con người: ",
        question="Bạn nghĩ mối quan hệ giữa tiền đề và giả thuyết là gì?",
        premise="Tiền đề: ",
        hypothesis="Giả thuyết: ",
        options=("(1) Kéo theo", "(2) Trung lập", "(3) Mâu thuẫn"),
        label_words=("Kéo theo", "Trung lập", "Mâu thuẫn"),
        assistant="Trợ lý: ",
        lead="Nếu tôi phải chọn một trong các tùy chọn, câu trả lời của tôi sẽ là:",
    ),
    "zh": XnliTemplate(
        human="人类：",
        question="你认为前提和假设之间的关系是什么？",
        premise="前提：",
        hypothesis="假设：",
        options=("(1) 蕴涵", "(2) 中立", "(3) 矛盾"),
        label_words=("蕴涵", "中立", "矛盾"),
        assistant="助手：",
        lead="如果我必须选择其中一个选项，我的答案是：",
    ),
}


def label_words(lang: str) -> dict[str, str]:
    """Option label -> the release's label word in ``lang`` (its ``ans_lang/<lang>.json``)."""
    return dict(zip(CHOICES, TEMPLATES[lang].label_words))


def render(lang: str, premise: str, hypothesis: str) -> str:
    """The XNLI prompt in ``lang``, byte-identical to the release's prompt for the same pair."""
    t = TEMPLATES[lang]
    options = "\n".join(t.options)
    return (
        f"{t.human}{t.question}\n\n{t.premise}{premise}\n{t.hypothesis}{hypothesis}\n\n{options}"
        f"\n\n{t.assistant}{t.lead}"
    )


class XnliTask(BuiltinTask):
    """XNLI (Conneau et al., 2018) as parallel instances; see the module docstring."""

    NAME = "xnli"
    KIND = "multilingual"
    RULE = "choice"
    LANGS = ("ar", "bg", "de", "el", "en", "es", "fr", "hi", "ru", "sw", "tr", "ur", "vi", "zh")
    SOURCES = ("release", "hub")
    RELEASE_DIR = "XNLI"
    TEMPLATE_LANGS = tuple(TEMPLATES)

    def _validate(self) -> None:
        if self.source == "release":
            self.require_release_files(
                ("split", list(dict.fromkeys([*self.langs, self.pivot])), "prompt file"),
                ("ans", self.langs, "answer file"),
                ("ans_lang", self.langs, "label-word file"),
            )

    def _release_records(self, subset: str) -> list[Record]:
        base = self.release_dir(subset)
        split = SPLIT_OF_SUBSET[subset]
        words = {lang: self._label_words(base, lang) for lang in self.langs}
        records = []
        for line in release_lines(base, self.release_file, self.pivot, self.langs, self.limit):
            if line.answer not in CHOICES:
                raise PipelineError(f"{line.answer_file} line {line.k + 1}: expected \"1\", \"2\" or \"3\", got {line.answer!r}")
            records.append(line.record("xnli", split, line.answer, choices=CHOICES, choice_aliases=words[line.lang]))
        return records

    @staticmethod
    def _label_words(base, lang: str) -> dict[str, str]:
        """``ans_lang/<lang>.json``: the label words of a language (1, 2, 3 -> its words)."""
        words_file = base / "ans_lang" / f"{lang}.json"
        words = (read_json_lines(words_file, 1) or [None])[0]
        if not isinstance(words, dict) or sorted(words) != list(CHOICES):
            raise PipelineError(f"{words_file} line 1: expected an object with keys 1, 2, 3")
        return {label: str(word) for label, word in words.items()}

    def _rows(self, lang: str) -> list[tuple[str, str, str]]:
        rows = hub_rows(self.config["hub"], lang, f"XNLI {lang}", tsv_columns=("premise", "hypothesis", "label"))
        parsed = []
        for number, row in enumerate(rows, start=1):
            label = row.get("label")
            if isinstance(label, str) and label in HUB_LABELS:
                gold = str(HUB_LABELS.index(label) + 1)
            elif isinstance(label, int) and not isinstance(label, bool) and 0 <= label <= 2:
                gold = str(label + 1)
            else:
                raise PipelineError(
                    f"XNLI {lang} row {number}: no usable label ({label!r}); XTREME's test files carry no "
                    "labels, use the dev files (task.hub.data_files=.../dev-{lang}.tsv) or the Hub"
                )
            parsed.append((row["premise"], row["hypothesis"], gold))
        return parsed

    def _hub_records(self) -> list[Record]:
        hub_split = self.hub_tag()
        pivot_rows = self._rows(self.pivot)
        records = []
        for lang in self.langs:
            rows = pivot_rows if lang == self.pivot else self._rows(lang)
            if len(rows) != len(pivot_rows):
                raise PipelineError(
                    f"XNLI: {lang} has {len(rows)} rows but the pivot {self.pivot} has {len(pivot_rows)}"
                )
            for k, ((premise, hypothesis, gold), (p_premise, p_hypothesis, _)) in enumerate(zip(rows, pivot_rows)):
                item = f"xnli-{hub_split}-{k:05d}"
                records.append(Record(item, Instance(
                    id=f"{item}-{lang}",
                    lang=lang,
                    prompt=render(lang, premise, hypothesis),
                    source_prompt=render(self.pivot, p_premise, p_hypothesis),
                    answer=gold,
                    choices=CHOICES,
                    choice_aliases=label_words(lang),
                    response_lang=lang,
                )))
        return records
