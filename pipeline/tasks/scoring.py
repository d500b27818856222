"""The authors' answer-matching rules, as in their released evaluation scripts.

XTransplant scores a free-form generation (20 new tokens by default) against the gold answer with
string rules, not by option likelihood. The release holds one script per PilotSet task,
``evaluation/XNLI.py``, ``evaluation/XQuAD.py`` and ``evaluation/GlobalOpinionQA.py`` (and their
``upper_*`` variants); it has none for XCOPA, MKQA or CulturalBench, whose rules here follow the
paper's "Evaluations" paragraph (Sec. 3: a multiple-choice response must contain the correct
option and no other; a generated answer must contain the gold answer):

* ``choice`` (XNLI, XCOPA, ``task=jsonl`` with ``choices``): after normalising full-width
  parentheses, the response must name the gold option as ``(g)``, equal ``g`` after strip, or
  contain g's label word, and must name no other option in any of those forms (``match`` in
  ``evaluation/XNLI.py``; XCOPA has no label words).
* ``letter`` (GlobalOpinionQA, CulturalBench-Easy): on the upper-cased response, ``(G)`` or a bare
  ``G``, and no ``(X)`` / bare ``X`` for any other letter A-Z (``match`` in
  ``evaluation/GlobalOpinionQA.py``).
* ``contains`` (XQuAD, MKQA, ``task=jsonl`` without ``choices``): the gold answer (or, for MKQA,
  one of its aliases), lower-cased, is a substring of the lower-cased response
  (``evaluation/XQuAD.py``).
* ``truefalse`` (CulturalBench-Hard, one row per question-option pair): the response judges the
  option as the gold does, naming "true" or "false" as a word (any case) and not the other. The
  dataset card's question-level score (all judgements of a question right) is
  :func:`pipeline.tasks.culturalbench.question_correct`.

The rules are strict on purpose: the paper notes that "Option 1 ..." scores 0 under the choice
rule; do not loosen them.
"""

from __future__ import annotations

import re
import string
from collections.abc import Iterable, Mapping

from pipeline.instances import Instance

RULES = ("choice", "letter", "contains", "truefalse")
TRUE_FALSE = ("True", "False")

_FULL_WIDTH = str.maketrans({"（": "(", "）": ")"})


def choice_correct(
    response: str,
    gold: str,
    choices: Iterable[str],
    aliases: Mapping[str, str] | None = None,
) -> bool:
    """The authors' XNLI rule (``match`` in their ``evaluation/XNLI.py``), also used for XCOPA.

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
    """The authors' GlobalOpinionQA rule (``match`` in their ``evaluation/GlobalOpinionQA.py``).

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
    """The authors' XQuAD rule (``evaluation/XQuAD.py``), extended to MKQA's aliases: any answer contained.

    Args:
        response: the generated text.
        answers: the gold answer and its accepted aliases; empty strings never match.

    Returns:
        True iff some non-empty answer, lower-cased, is a substring of the lower-cased response.
    """
    lowered = response.lower()
    return any(answer.lower() in lowered for answer in answers if answer)


def truefalse_correct(response: str, gold: str) -> bool:
    """CulturalBench-Hard's binary judgement of one question-option pair.

    Args:
        response: the generated text.
        gold: "True" or "False" (the dataset's ``answer``).

    Returns:
        True iff the response names the gold judgement as a word, case-insensitively ("TRUE",
        "true.", "False," count; "untrue" does not), and does not name the other one.
    """
    named = {word.lower() for word in re.findall(r"\b(true|false)\b", response, flags=re.IGNORECASE)}
    return named == {gold.lower()}


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
    if rule == "truefalse":
        if instance.answer not in TRUE_FALSE:
            raise ValueError(f"instance {instance.id!r}: the truefalse rule needs answer True or False")
        return truefalse_correct(response, instance.answer)
    raise ValueError(f"unknown scoring rule {rule!r}; valid: {', '.join(RULES)}")


def default_rule(instance: Instance) -> str:
    """The rule of the JSONL task format (issue 2): ``choice`` with choices, else ``contains``."""
    return "choice" if instance.choices else "contains"
