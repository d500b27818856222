"""XNLI: the paper's multilingual understanding task (target = non-English, source = the pivot).

A premise/hypothesis pair with three options, (1) entailment, (2) neutral, (3) contradiction,
each printed with a label word in the prompt's language; scored by the authors' choice rule
with those label words (:func:`pipeline.scoring.choice_correct`). Gold labels are "1"/"2"/"3",
i.e. the Hub's ClassLabel (0 entailment, 1 neutral, 2 contradiction) + 1.

Sources: the authors' release (``XNLI/XNLI_{sample,unseen}/{split,ans,ans_lang}/<lang>.json``)
and the original dataset (``facebook/xnli``, one config per language, or XTREME's TSV files via
``task.hub.data_files``; their test files carry no labels, so use the dev files or the Hub).
"""

from __future__ import annotations

from pipeline.errors import PipelineError
from pipeline.instances import Instance
from pipeline.tasks.common import SPLIT_OF_SUBSET, BuiltinTask
from pipeline.tasks.languages import ROLES, dialogue
from pipeline.tasks.pilotset import Record
from pipeline.tasks.sources import check_paired, expect_str, hub_defaults, hub_rows, read_json_lines, require_file

CHOICES = ("1", "2", "3")
HUB_LABELS = ("entailment", "neutral", "contradiction")

# Our translations of the paper's XNLI template (Table 5): question, premise and hypothesis
# captions, the three label words (entailment, neutral, contradiction), the answer lead.
PHRASES: dict[str, tuple[str, str, str, tuple[str, str, str], str]] = {
    "en": (
        "What do you think is the relationship between the premise and the hypothesis?",
        "Premise",
        "Hypothesis",
        ("Entail", "Neutral", "Contradict"),
        "If I had to select one of the options, my answer would be:",
    ),
    "ar": (
        "ما العلاقة بين المقدمة والفرضية في رأيك؟",
        "المقدمة",
        "الفرضية",
        ("استلزام", "محايد", "تناقض"),
        "لو كان عليّ اختيار أحد الخيارات، فستكون إجابتي:",
    ),
    "bg": (
        "Каква според вас е връзката между предпоставката и хипотезата?",
        "Предпоставка",
        "Хипотеза",
        ("Следствие", "Неутрално", "Противоречие"),
        "Ако трябваше да избера една от възможностите, отговорът ми би бил:",
    ),
    "de": (
        "Welche Beziehung besteht Ihrer Meinung nach zwischen der Prämisse und der Hypothese?",
        "Prämisse",
        "Hypothese",
        ("Folgerung", "Neutral", "Widerspruch"),
        "Wenn ich eine der Optionen wählen müsste, wäre meine Antwort:",
    ),
    "el": (
        "Ποια πιστεύετε ότι είναι η σχέση ανάμεσα στην προκείμενη και την υπόθεση;",
        "Προκείμενη",
        "Υπόθεση",
        ("Συνεπαγωγή", "Ουδέτερο", "Αντίφαση"),
        "Αν έπρεπε να διαλέξω μία από τις επιλογές, η απάντησή μου θα ήταν:",
    ),
    "es": (
        "¿Cuál crees que es la relación entre la premisa y la hipótesis?",
        "Premisa",
        "Hipótesis",
        ("Implicación", "Neutral", "Contradicción"),
        "Si tuviera que elegir una de las opciones, mi respuesta sería:",
    ),
    "fr": (
        "Selon vous, quelle est la relation entre la prémisse et l'hypothèse ?",
        "Prémisse",
        "Hypothèse",
        ("Implication", "Neutre", "Contradiction"),
        "Si je devais choisir l'une des options, ma réponse serait :",
    ),
    "hi": (
        "आपके अनुसार आधार-वाक्य और परिकल्पना के बीच क्या संबंध है?",
        "आधार-वाक्य",
        "परिकल्पना",
        ("अनुगमन", "तटस्थ", "विरोधाभास"),
        "यदि मुझे विकल्पों में से एक चुनना हो, तो मेरा उत्तर होगा:",
    ),
    "ru": (
        "Как вы считаете, каково отношение между посылкой и гипотезой?",
        "Посылка",
        "Гипотеза",
        ("Следование", "Нейтрально", "Противоречие"),
        "Если бы мне нужно было выбрать один из вариантов, мой ответ был бы:",
    ),
    "sw": (
        "Unadhani kuna uhusiano gani kati ya dhana ya msingi na nadharia tete?",
        "Dhana ya msingi",
        "Nadharia tete",
        ("Inathibitisha", "Haiegemei upande wowote", "Inapingana"),
        "Ikiwa ningelazimika kuchagua moja ya chaguo, jibu langu lingekuwa:",
    ),
    "tr": (
        "Sizce öncül ile hipotez arasındaki ilişki nedir?",
        "Öncül",
        "Hipotez",
        ("Gerektirme", "Nötr", "Çelişki"),
        "Seçeneklerden birini seçmem gerekseydi cevabım şu olurdu:",
    ),
    "ur": (
        "آپ کے خیال میں مقدمہ اور مفروضے کے درمیان کیا تعلق ہے؟",
        "مقدمہ",
        "مفروضہ",
        ("استلزام", "غیر جانبدار", "تضاد"),
        "اگر مجھے اختیارات میں سے ایک کا انتخاب کرنا ہو تو میرا جواب ہوگا:",
    ),
    "vi": (
        "Theo bạn, mối quan hệ giữa tiền đề và giả thuyết là gì?",
        "Tiền đề",
        "Giả thuyết",
        ("Kéo theo", "Trung lập", "Mâu thuẫn"),
        "Nếu phải chọn một trong các phương án, câu trả lời của tôi sẽ là:",
    ),
    "zh": ("你认为前提和假设之间是什么关系？", "前提", "假设", ("蕴含", "中立", "矛盾"), "如果我必须选择其中一个选项，我的答案是："),
}


def label_words(lang: str) -> dict[str, str]:
    """Option label -> label word of our template in ``lang``."""
    return dict(zip(CHOICES, PHRASES[lang][3]))


def render(lang: str, premise: str, hypothesis: str) -> str:
    """The XNLI prompt in ``lang`` (our translation of the paper's template)."""
    question, premise_caption, hypothesis_caption, words, lead = PHRASES[lang]
    colon = ROLES[lang][2]
    options = "\n".join(f"({label}) {word}" for label, word in zip(CHOICES, words))
    body = (
        f"{question}\n\n{premise_caption}{colon}{premise}\n{hypothesis_caption}{colon}{hypothesis}\n\n{options}"
    )
    return dialogue(lang, body, lead)


class XnliTask(BuiltinTask):
    """XNLI (Conneau et al., 2018) as parallel instances; see the module docstring."""

    NAME = "xnli"
    KIND = "multilingual"
    RULE = "choice"
    LANGS = ("ar", "bg", "de", "el", "en", "es", "fr", "hi", "ru", "sw", "tr", "ur", "vi", "zh")
    SOURCES = ("release", "hub")
    RELEASE_DIR = "XNLI"
    TEMPLATE_LANGS = tuple(PHRASES)
    HUB = hub_defaults("facebook/xnli", "{lang}", "test")

    def _validate(self) -> None:
        if self.source == "release":
            for subset in self.release_subsets():
                base = self.release_dir(subset)
                for lang in dict.fromkeys([*self.langs, self.pivot]):
                    require_file(base / "split" / f"{lang}.json", f"XNLI {lang} prompt file")
                for lang in self.langs:
                    require_file(base / "ans" / f"{lang}.json", f"XNLI {lang} answer file")
                    require_file(base / "ans_lang" / f"{lang}.json", f"XNLI {lang} label-word file")

    def _release_records(self, subset: str) -> list[Record]:
        base = self.release_dir(subset)
        split = SPLIT_OF_SUBSET[subset]
        pivot_file = base / "split" / f"{self.pivot}.json"
        sources = read_json_lines(pivot_file, self.limit)
        records = []
        for lang in self.langs:
            prompt_file, answer_file = base / "split" / f"{lang}.json", base / "ans" / f"{lang}.json"
            check_paired([prompt_file, pivot_file])
            check_paired([prompt_file, answer_file])
            prompts = read_json_lines(prompt_file, self.limit)
            answers = read_json_lines(answer_file, self.limit)
            words_file = base / "ans_lang" / f"{lang}.json"
            words = (read_json_lines(words_file, 1) or [None])[0]
            if not isinstance(words, dict) or sorted(words) != list(CHOICES):
                raise PipelineError(f"{words_file} line 1: expected an object with keys 1, 2, 3")
            for k, (prompt, source, answer) in enumerate(zip(prompts, sources, answers)):
                if answer not in CHOICES:
                    raise PipelineError(f"{answer_file} line {k + 1}: expected \"1\", \"2\" or \"3\", got {answer!r}")
                item = f"xnli-{split}-{k:05d}"
                records.append(Record(item, Instance(
                    id=f"{item}-{lang}",
                    lang=lang,
                    prompt=expect_str(prompt, prompt_file, k + 1),
                    source_prompt=expect_str(source, pivot_file, k + 1),
                    answer=answer,
                    choices=CHOICES,
                    choice_aliases={label: str(word) for label, word in words.items()},
                    response_lang=lang,
                )))
        return records

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
