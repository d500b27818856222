"""The authors' answer-matching rules on tricky responses (issue 3: >= 20 per rule)."""

from __future__ import annotations

import pytest

from pipeline.instances import Instance
from pipeline.tasks.scoring import (
    RULES,
    choice_correct,
    contains_correct,
    default_rule,
    letter_correct,
    score,
    truefalse_correct,
)

XNLI_WORDS = {"1": "Entail", "2": "Neutral", "3": "Contradict"}

# XNLI: gold "1", English label words (the authors' ans_lang/en.json).
XNLI_GOLD_1 = [
    ("", False),
    ("(1)", True),
    ("（1）", True),  # full-width parentheses are normalised
    ("1", True),
    ("  1\n", True),  # bare equal after strip
    ("1.", False),  # neither (1), nor bare, nor a label word
    ("(1) Entail", True),
    ("Entail", True),  # the label word alone
    ("entail", False),  # label words are case-sensitive
    ("Entailment", True),  # contains the label word
    ("(1) or (2)", False),
    ("(1) Entail, not Neutral", False),  # another option's label word
    ("Option 1", False),  # the paper's example of a 0 score
    ("The answer is (1).", True),
    ("(2)", False),
    ("2", False),
    ("Neutral", False),
    ("Contradict", False),
    ("(1)(3)", False),
    ("（1） Entail", True),
    ("(11)", False),
    ("[1]", False),
    ("1 Entail", True),
    ("I would say (1), definitely not (3)", False),
    ("（2）", False),
]


@pytest.mark.parametrize("response, expected", XNLI_GOLD_1)
def test_xnli_choice_rule(response: str, expected: bool) -> None:
    assert choice_correct(response, "1", ("1", "2", "3"), XNLI_WORDS) is expected


# The French label words of the release carry their own "(n)\xa0" prefix (a no-break space).
@pytest.mark.parametrize(
    "response, expected",
    [("(3)\xa0Contraire", True), ("(3) Contraire", True), ("Contraire", False), ("(3)", True),
     ("(3) Contraire (1)\xa0Entraîner", False), ("(3) Contraire, pas Entraîner", True)],  # the bare word is not the prefixed label word
)
def test_xnli_choice_rule_with_prefixed_label_words(response: str, expected: bool) -> None:
    words = {"1": "(1)\xa0Entraîner", "2": "(2)\xa0Neutre", "3": "(3)\xa0Contraire"}
    assert choice_correct(response, "3", ("1", "2", "3"), words) is expected


def test_empty_label_word_is_ignored() -> None:
    assert choice_correct("whatever", "1", ("1", "2"), {"1": ""}) is False


# XCOPA: gold "2", options (1)/(2), no label words.
XCOPA_GOLD_2 = [
    ("(2)", True),
    ("2", True),
    (" 2 ", True),
    ("（2）", True),
    ("Option 2", False),
    ("(1)", False),
    ("(1) (2)", False),
    ("", False),
    ("2)", False),
    ("(2) The baby soiled his diaper.", True),
    ("Answer: (2)", True),
    ("12", False),
    ("(2).", True),
    ("２", False),  # a full-width digit is not normalised
    ("(２)", False),
    ("(2) not (1)", False),
    ("1", False),
    ("(22)", False),
    ("two", False),
    ("(2)\n(2)", True),
    ("（1）（2）", False),
]


@pytest.mark.parametrize("response, expected", XCOPA_GOLD_2)
def test_xcopa_choice_rule(response: str, expected: bool) -> None:
    assert choice_correct(response, "2", ("1", "2")) is expected


# GlobalOpinionQA / CulturalBench: gold "B" among A-D; every other letter A-Z counts.
LETTER_GOLD_B = [
    ("(B)", True),
    ("b", True),  # upper-cased before matching
    ("(b)", True),
    (" B ", True),
    ("(B) No", True),
    ("B.", False),
    ("(A)", False),
    ("(A) (B)", False),
    ("(B) or (C)", False),
    ("(E)", False),
    ("(B) (E)", False),  # a letter outside the options still counts as another option
    ("（B）", False),  # no full-width normalisation in this rule
    ("Option B", False),
    ("", False),
    ("I choose (b), final", True),
    ("(B)(Z)", False),
    ("BB", False),
    ("(BB)", False),
    ("(B) A", True),  # a bare A inside text is not the whole response
    ("(Β)", False),  # Greek capital beta
    ("A", False),
    ("\n(B)\n", True),
]


@pytest.mark.parametrize("response, expected", LETTER_GOLD_B)
def test_letter_rule(response: str, expected: bool) -> None:
    assert letter_correct(response, "B") is expected


# CulturalBench-Hard: one true/false judgement per question-option pair.
TRUEFALSE = [
    ("True", "True", True),
    ("true", "True", True),
    ("TRUE.", "True", True),
    (" True, because red envelopes are given.", "True", True),
    ("False", "True", False),
    ("True or False", "True", False),  # both named: no judgement
    ("It is not false, it is true", "True", False),
    ("", "True", False),
    ("Yes", "True", False),
    ("Correct", "True", False),
    ("untrue", "False", False),  # a word, not a substring
    ("Truth", "True", False),
    ("False", "False", True),
    ("false!", "False", True),
    ("The answer is false.", "False", True),
    ("FALSE", "False", True),
    ("(False)", "False", True),
    ("True", "False", False),
    ("Falsely", "False", False),
    ("1", "True", False),  # no numeric judgements
    ("My answer would be: True\nHuman:", "True", True),
    ("true-ish", "True", True),  # "true" stands as a word before the hyphen
    ("false\nfalse", "False", True),
]


@pytest.mark.parametrize("response, gold, expected", TRUEFALSE)
def test_truefalse_rule(response: str, gold: str, expected: bool) -> None:
    assert truefalse_correct(response, gold) is expected


# XQuAD: gold contained, lower-cased; MKQA: any alias.
CONTAINS = [
    ("1907", ["1907"], True),
    ("In 1907.", ["1907"], True),
    ("", ["1907"], False),
    ("1906", ["1907"], False),
    ("19 07", ["1907"], False),
    ("MEDITERRANEAN", ["Mediterranean"], True),
    ("The Mediterranean Sea", ["Mediterranean"], True),
    ("mediterran", ["Mediterranean"], False),
    ("答案是地中海。", ["地中海"], True),
    ("地中 海", ["地中海"], False),
    ("May 18, 2017", ["2017", "2017-05-18"], True),
    ("18/05/2017", ["2017-05-18", "18/05/2017"], True),
    ("hafthor julius bjornsson", ["Hafþór Júlíus Björnsson", "Hafthor Julius Bjornsson"], True),
    ("Thor", ["Hafþór Júlíus Björnsson", "Hafthor Julius Bjornsson"], False),
    ("abc", ["x", ""], False),  # an empty alias never matches
    ("İSTANBUL", ["İstanbul"], True),
    ("STRASSE", ["Straße"], False),  # lower(), not casefold(): the authors' rule
    ("new england patriots", ["New England Patriots"], True),
    ("New England", ["New England Patriots"], False),
    ("  308 points", ["308"], True),
    ("three hundred eight", ["308"], False),
    ("Beyoncé", ["Beyonce"], False),
]


@pytest.mark.parametrize("response, answers, expected", CONTAINS)
def test_contains_rule(response: str, answers: list[str], expected: bool) -> None:
    assert contains_correct(response, answers) is expected


def test_score_dispatches_on_rule_and_instance_fields() -> None:
    mc = Instance("a", "de", "p", "s", "1", choices=("1", "2", "3"), choice_aliases={"1": "Folgerung"})
    qa = Instance("b", "de", "p", "s", "1907", aliases=("neunzehnhundertsieben",))
    assert score("choice", mc, "Folgerung") and not score("choice", mc, "(2)")
    assert score("letter", Instance("c", "de", "p", "s", "A", choices=("A", "B")), "a")
    assert score("contains", qa, "Neunzehnhundertsieben!")
    assert default_rule(mc) == "choice" and default_rule(qa) == "contains"
    assert set(RULES) == {"choice", "letter", "contains", "truefalse"}
    judgement = Instance("d", "pl", "p", "s", "False", choices=("True", "False"))
    assert score("truefalse", judgement, "False.") and not score("truefalse", judgement, "True")
    with pytest.raises(ValueError, match=r"needs answer True or False"):
        score("truefalse", mc, "True")
    with pytest.raises(ValueError):
        score("choice", qa, "1907")
    with pytest.raises(ValueError):
        score("fuzzy", qa, "1907")
