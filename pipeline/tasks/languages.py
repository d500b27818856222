"""Languages shared by every task: resource groups, prompt roles and the chain-of-thought phrase.

The paper reports results per resource group (its Table 3: High / Mid / Low). Issue 3 gives the
XNLI grouping (High = ar de en es fr zh, Mid = hi ru tr vi, Low = bg el sw ur); one table here
extends it to every language of the six tasks, so a language sits in the same group in every
task. The extension (languages XNLI does not cover) is ours and is overridable per task
(``task.groups``). The paper's prompts (its Table 5) are two-role dialogues, "Human: ... Assistant:
...", so every template language needs the two role words; the chain-of-thought comparison
appends "Let's think step by step." in the prompt's language.
"""

from __future__ import annotations

from collections.abc import Iterable

GROUP_NAMES = ("High", "Mid", "Low")

RESOURCE_GROUP = {
    **dict.fromkeys(("ar", "de", "en", "es", "fr", "zh", "zh-CN", "it", "ja", "nl", "pt"), "High"),
    **dict.fromkeys(
        ("hi", "ru", "tr", "vi", "fi", "he", "hu", "id", "ko", "no", "pl", "ro", "sv", "th", "uk"),
        "Mid",
    ),
    **dict.fromkeys(("bg", "el", "sw", "ur", "am", "ht", "ms", "ta", "tl"), "Low"),
}

# Role words of the paper's dialogue templates, and the separator after them
# (": " in most scripts, " : " in French typography, a full-width "：" in Chinese/Japanese).
ROLES: dict[str, tuple[str, str, str]] = {
    "en": ("Human", "Assistant", ": "),
    "ar": ("الإنسان", "المساعد", ": "),
    "bg": ("Човек", "Асистент", ": "),
    "de": ("Mensch", "Assistent", ": "),
    "el": ("Άνθρωπος", "Βοηθός", ": "),
    "es": ("Humano", "Asistente", ": "),
    "fi": ("Ihminen", "Avustaja", ": "),
    "fr": ("Humain", "Assistant", " : "),
    "he": ("אדם", "עוזר", ": "),
    "hi": ("मानव", "सहायक", ": "),
    "ht": ("Moun", "Asistan", ": "),
    "hu": ("Ember", "Asszisztens", ": "),
    "id": ("Manusia", "Asisten", ": "),
    "it": ("Umano", "Assistente", ": "),
    "ja": ("人間", "アシスタント", "："),
    "ko": ("사람", "어시스턴트", ": "),
    "nl": ("Mens", "Assistent", ": "),
    "no": ("Menneske", "Assistent", ": "),
    "pt": ("Humano", "Assistente", ": "),
    "ro": ("Om", "Asistent", ": "),
    "ru": ("Человек", "Ассистент", ": "),
    "sw": ("Binadamu", "Msaidizi", ": "),
    "ta": ("மனிதர்", "உதவியாளர்", ": "),
    "th": ("มนุษย์", "ผู้ช่วย", ": "),
    "tr": ("İnsan", "Asistan", ": "),
    "ur": ("انسان", "معاون", ": "),
    "vi": ("Con người", "Trợ lý", ": "),
    "zh": ("人类", "助手", "："),
}

# "Let's think step by step." (the paper's CoT comparison), in every language a target or
# source prompt of the six tasks can be written in.
COT_PHRASE = {
    "en": "Let's think step by step.",
    "am": "ደረጃ በደረጃ እናስብ።",
    "ar": "لنفكر خطوة بخطوة.",
    "bg": "Нека помислим стъпка по стъпка.",
    "de": "Denken wir Schritt für Schritt nach.",
    "el": "Ας σκεφτούμε βήμα προς βήμα.",
    "es": "Pensemos paso a paso.",
    "fi": "Ajatellaan vaihe vaiheelta.",
    "fr": "Réfléchissons étape par étape.",
    "he": "בואו נחשוב צעד אחר צעד.",
    "hi": "आइए चरण दर चरण सोचें।",
    "ht": "Ann reflechi etap pa etap.",
    "hu": "Gondolkodjunk lépésről lépésre.",
    "id": "Mari kita berpikir langkah demi langkah.",
    "it": "Ragioniamo passo dopo passo.",
    "ja": "段階的に考えてみましょう。",
    "ko": "단계별로 생각해 봅시다.",
    "ms": "Mari kita fikirkan langkah demi langkah.",
    "nl": "Laten we stap voor stap nadenken.",
    "no": "La oss tenke steg for steg.",
    "pl": "Pomyślmy krok po kroku.",
    "pt": "Vamos pensar passo a passo.",
    "ro": "Să gândim pas cu pas.",
    "ru": "Давайте рассуждать шаг за шагом.",
    "sv": "Låt oss tänka steg för steg.",
    "sw": "Hebu tufikirie hatua kwa hatua.",
    "ta": "படிப்படியாக யோசிப்போம்.",
    "th": "ลองคิดทีละขั้นตอน",
    "tl": "Pag-isipan natin ito nang hakbang-hakbang.",
    "tr": "Adım adım düşünelim.",
    "uk": "Давайте міркувати крок за кроком.",
    "ur": "آئیے قدم بہ قدم سوچتے ہیں۔",
    "vi": "Hãy suy nghĩ từng bước một.",
    "zh": "让我们一步一步地思考。",
}

_NO_SPACE_BEFORE_SUFFIX = ("zh", "ja")


def base_code(lang: str) -> str:
    """Maps a dataset's language code onto the code of our tables ("zh-CN" -> "zh")."""
    return "zh" if lang.lower().startswith("zh") else lang


def with_cot(prompt: str, lang: str) -> str:
    """Appends "Let's think step by step." in ``lang`` (the paper's CoT comparison).

    Args:
        prompt: a rendered prompt (target or source side).
        lang: the language the prompt is written in.

    Returns:
        The prompt with the phrase appended after a space (no space for Chinese/Japanese).
    """
    code = base_code(lang)
    separator = "" if code in _NO_SPACE_BEFORE_SUFFIX else " "
    return f"{prompt}{separator}{COT_PHRASE[code]}"


def default_groups(langs: Iterable[str]) -> dict[str, list[str]]:
    """Resource groups (Table 3) of ``langs``, in the order given, empty groups dropped."""
    groups: dict[str, list[str]] = {name: [] for name in GROUP_NAMES}
    for lang in langs:
        group = RESOURCE_GROUP.get(lang) or RESOURCE_GROUP.get(base_code(lang))
        if group is not None:
            groups[group].append(lang)
    return {name: members for name, members in groups.items() if members}


def dialogue(lang: str, human_text: str, assistant_text: str) -> str:
    """Renders the paper's two-role prompt: "Human: <text>\\n\\nAssistant: <lead>" in ``lang``."""
    human, assistant, colon = ROLES[lang]
    return f"{human}{colon}{human_text}\n\n{assistant}{colon}{assistant_text}"
