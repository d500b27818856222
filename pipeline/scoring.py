"""The authors' answer-matching rules, exactly as in their evaluation scripts.

XTransplant scores a free-form generation (20 new tokens by default) against the gold answer with
string rules, not by option likelihood. Three rules cover the six benchmarks:

* ``choice`` (XNLI, XCOPA, ``task=jsonl`` with ``choices``): after normalising full-width
  parentheses, the response must name the gold option as ``(g)``, equal ``g`` after strip, or
  contain g's label word, and must name no other option in any of those forms.
* ``letter`` (GlobalOpinionQA, CulturalBench): on the upper-cased response, ``(G)`` or a bare
  ``G``, and no ``(X)`` / bare ``X`` for any other letter A-Z (not only the listed options).
* ``contains`` (XQuAD, MKQA, ``task=jsonl`` without ``choices``): the gold answer (or, for MKQA,
  one of its aliases), lower-cased, is a substring of the lower-cased response.

The rules are strict on purpose: the paper notes that "Option 1 ..." scores 0 under the choice
rule; do not loosen them.
"""

from __future__ import annotations

import string
from collections.abc import Iterable, Mapping

from pipeline.instances import Instance

RULES = ("choice", "letter", "contains")

_FULL_WIDTH = str.maketrans({"（": "(", "）": ")"})


def choice_correct(
    response: str,
    gold: str,
    choices: Iterable[str],
    aliases: Mapping[str, str] | None = None,
) -> bool:
    """The authors' XNLI / XCOPA rule (``match`` in their ``pilot_eval_xnli.py``).

    Args:
        response: the generated text.
        gold: the gold option label, e.g. "2".
        choices: every option label, e.g. ("1", "2", "3").
        aliases: option label -> label word in the prompt's language (XNLI's "Entail" ...);
            empty words are ignored (an empty word would be contained in every response).

    Returns:
        True iff the gold option is named and no other option is.
    """
    text = response.translate(_FULL_WIDTH)
    words = {label: word for label, word in (aliases or {}).items() if word}

    def names(label: str) -> bool:
        return (
            f"({label})" in text
            or text.strip() == label
            or (label in words and words[label] in text)
        )

    return names(gold) and not any(names(other) for other in choices if other != gold)


def letter_correct(response: str, gold: str) -> bool:
    """The authors' GlobalOpinionQA rule (``match`` in their ``pilot_eval_global_opinion.py``).

    Args:
        response: the generated text; compared upper-cased, without full-width normalisation.
        gold: the gold letter, "A".."Z".

    Returns:
        True iff ``(G)`` is contained or the stripped response equals G, and no other letter
        A-Z appears as ``(X)`` or as the whole stripped response.
    """
    text = response.upper()

    def names(letter: str) -> bool:
        return f"({letter})" in text or text.strip() == letter

    return names(gold) and not any(names(other) for other in string.ascii_uppercase if other != gold)


def contains_correct(response: str, answers: Iterable[str]) -> bool:
    """The authors' XQuAD rule, extended to MKQA's aliases: any answer contained, case-insensitive.

    Args:
        response: the generated text.
        answers: the gold answer and its accepted aliases; empty strings never match.

    Returns:
        True iff some non-empty answer, lower-cased, is a substring of the lower-cased response.
    """
    lowered = response.lower()
    return any(answer.lower() in lowered for answer in answers if answer)


def score(rule: str, instance: Instance, response: str) -> bool:
    """Applies ``rule`` (one of :data:`RULES`) to ``response`` for ``instance``.

    Raises:
        ValueError: for an unknown rule or a choice rule on an instance without ``choices``.
    """
    if rule == "choice":
        if not instance.choices:
            raise ValueError(f"instance {instance.id!r}: the choice rule needs choices")
        return choice_correct(response, instance.answer, instance.choices, instance.choice_aliases)
    if rule == "letter":
        return letter_correct(response, instance.answer)
    if rule == "contains":
        return contains_correct(response, (instance.answer, *instance.aliases))
    raise ValueError(f"unknown scoring rule {rule!r}; valid: {', '.join(RULES)}")


def default_rule(instance: Instance) -> str:
    """The rule of the JSONL task format (issue 2): ``choice`` with choices, else ``contains``."""
    return "choice" if instance.choices else "contains"
