"""The unit of work: one parallel (target prompt, source prompt) pair with its gold answer.

Every task (built-in or ``task=jsonl``) yields :class:`Instance` objects; the engine only reads
``prompt`` (the target prompt the model answers) and ``source_prompt`` (the same content in the
other language, whose activations are transplanted). Multilingual tasks: target = non-English,
source = English (the pivot). Cultural tasks: target = English, source = the culture's language.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Instance:
    """One parallel item of a task, in the JSONL task format's field names.

    Attributes:
        id: unique within a run; the key every output row carries.
        lang: the language the instance is reported under (the non-English side for
            multilingual tasks, the culture's language for cultural tasks).
        prompt: the target prompt: what the model reads and answers.
        source_prompt: the parallel prompt whose module outputs are transplanted.
        answer: gold answer (an option label such as "2" or "B", or free text).
        choices: option labels for multiple-choice tasks, e.g. ("1", "2", "3"); None otherwise.
        choice_aliases: option label -> answer word in the target language, e.g. {"1": "Entail"}.
        aliases: further accepted free-text answers (MKQA); empty when there are none.
        response_lang: the language a consistent response is written in (Table 1's
            language consistency); defaults to ``lang``.
    """

    id: str
    lang: str
    prompt: str
    source_prompt: str
    answer: str
    choices: tuple[str, ...] | None = None
    choice_aliases: dict[str, str] | None = None
    aliases: tuple[str, ...] = field(default_factory=tuple)
    response_lang: str | None = None
