"""Languages shared by every task: resource groups, prompt roles and the chain-of-thought phrase.

The paper reports results per resource group: its Table 3 prints, for each of the six tasks, the
languages of its High, Mid and Low columns (after the lang2tax taxonomy of Joshi et al.: 5 = High,
4 = Mid, the rest Low). :data:`TABLE3_GROUPS` holds those columns exactly as printed, per task;
they differ between tasks only in which languages a task has (no language sits in two groups).
``task=jsonl`` and ``task=sample`` files can hold any languages, so they look a language up in
:data:`RESOURCE_GROUP`, the union of Table 3's columns; a language Table 3 never prints gets no
group. Every task's groups are overridable (``task.groups``). The paper's prompts (its Table 5)
are two-role dialogues, "Human: ... Assistant: ..."; the chain-of-thought comparison appends
"Let's think step by step." in the prompt's language.
"""

from __future__ import annotations

from collections.abc import Iterable

GROUP_NAMES = ("High", "Mid", "Low")

# Paper Table 3, per task: the languages under High, Mid and Low, in the printed order.
# GlobalOpinionQA's "zh" is the release's question language code "zh-CN".
TABLE3_GROUPS: dict[str, dict[str, tuple[str, ...]]] = {
    "xnli": {
        "High": ("ar", "de", "en", "es", "fr", "zh"),
        "Mid": ("hi", "ru", "tr", "vi"),
        "Low": ("bg", "el", "sw", "ur"),
    },
    "xquad": {
        "High": ("ar", "de", "en", "es", "zh"),
        "Mid": ("hi", "ru", "tr", "vi"),
        "Low": ("el", "ro", "th"),
    },
    "globalopinionqa": {
        "High": ("ar", "de", "en", "es", "fr", "ja", "zh-CN"),
        "Mid": ("hi", "pt", "ru", "sv", "tr", "vi"),
        "Low": ("am", "el", "id", "sw", "tl", "uk", "ur"),
    },
    "xcopa": {
        "High": ("en", "zh"),
        "Mid": ("it", "tr", "vi"),
        "Low": ("ht", "id", "sw", "ta"),
    },
    "mkqa": {
        "High": ("ar", "de", "en", "es", "fr", "ja", "zh"),
        "Mid": ("it", "ko", "pt", "tr", "vi"),
        "Low": ("fi", "he", "hu", "nl", "no"),
    },
    "culturalbench": {
        "High": ("ar", "de", "en", "es", "fr", "ja", "zh"),
        "Mid": ("hi", "ko", "ru", "tr", "vi"),
        "Low": ("he", "ms", "pl", "tl"),
    },
}

# Language -> its Table 3 group in any task (the columns never disagree across tasks).
RESOURCE_GROUP: dict[str, str] = {
    lang: group for table in TABLE3_GROUPS.values() for group, langs in table.items() for lang in langs
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


def default_groups(langs: Iterable[str], task: str | None = None) -> dict[str, list[str]]:
    """Resource groups (Table 3) of ``langs``, empty groups dropped.

    Args:
        langs: the languages of a run.
        task: a built-in task name: its own Table 3 columns decide, in the printed order, and a
            language the task's columns lack falls back to :data:`RESOURCE_GROUP`. None (JSONL
            and sample tasks): :data:`RESOURCE_GROUP` only, in the order of ``langs``.

    Returns:
        Group name -> its languages among ``langs``; a language Table 3 never prints is in none.
    """
    langs = list(langs)
    groups: dict[str, list[str]] = {name: [] for name in GROUP_NAMES}
    table = TABLE3_GROUPS.get(task or "", {})
    placed = set()
    for name, members in table.items():
        for lang in members:
            if lang in langs:
                groups[name].append(lang)
                placed.add(lang)
    for lang in langs:
        if lang in placed:
            continue
        group = RESOURCE_GROUP.get(lang) or RESOURCE_GROUP.get(base_code(lang))
        if group is not None:
            groups[group].append(lang)
    return {name: members for name, members in groups.items() if members}


def dialogue(lang: str, human_text: str, assistant_text: str) -> str:
    """Renders the paper's two-role prompt: "Human: <text>\\n\\nAssistant: <lead>" in ``lang``."""
    human, assistant, colon = ROLES[lang]
    return f"{human}{colon}{human_text}\n\n{assistant}{colon}{assistant_text}"
