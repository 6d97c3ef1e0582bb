"""The answer-text vocabulary (compose.text) against hand-computed expectations, and the
abstention meanings kept apart on purpose."""

from __future__ import annotations

import pytest

from compose.text import (
    NO_ANSWERS,
    NON_ANSWERS,
    UNKNOWN,
    answer_in,
    answer_tokens,
    choice_label,
    exact_match,
    is_abstention,
    is_unknown_reply,
    normalize_answer,
    token_f1,
)


def test_normalisation_drops_case_punctuation_articles_and_extra_space() -> None:
    assert normalize_answer("  The Eiffel   Tower!! ") == "eiffel tower"
    assert normalize_answer("An apple, a day.") == "apple day"
    assert normalize_answer("Another theater") == "another theater"  # whole words only
    assert normalize_answer("N/A") == "na"
    assert answer_tokens("The New-York  city") == ["newyork", "city"]


def test_exact_match_is_the_best_over_gold_answers() -> None:
    assert exact_match("the Rush.", ["Rush"]) == 1.0
    assert exact_match("Rush band", ["Rush", "Yes"]) == 0.0
    assert exact_match("yes", ["no", "Yes"]) == 1.0
    assert exact_match("anything", []) == 0.0


def test_f1_counts_shared_tokens() -> None:
    # pred: new york (2); gold: new york city (3); P = 1, R = 2/3, F1 = 0.8
    assert token_f1("the New York", ["New York City"]) == pytest.approx(0.8)
    # common 2 of 3 each way: P = R = 2/3
    assert token_f1("Barack Obama, president", ["Barack Hussein Obama"]) == pytest.approx(2 / 3)
    assert token_f1("New York", ["Boston", "New York"]) == 1.0
    assert token_f1("Paris", ["London"]) == 0.0
    assert token_f1("anything", []) == 0.0


def test_f1_yes_no_rule_of_the_official_hotpotqa_script() -> None:
    assert token_f1("yes it is", ["yes"]) == 0.0  # 0.5 without the rule
    assert token_f1("yes", ["yes it is"]) == 0.0
    assert token_f1("yes", ["no"]) == 0.0
    assert token_f1("no", ["no way"]) == 0.0
    assert token_f1("noanswer", ["no answer"]) == 0.0
    assert token_f1("No.", ["no"]) == 1.0
    assert token_f1("yes it is", ["yes sir"]) == pytest.approx(0.4)  # neither side special


@pytest.mark.parametrize(("text", "expected"), [
    ("", True), ("  ", True), ("Unknown.", True), ("The unknown", True), (UNKNOWN, True),
    ("none", False), ("N/A", False), ("Caskel", False),
])
def test_default_abstention_is_empty_or_unknown(text: str, expected: bool) -> None:
    assert is_abstention(text) is expected


def test_wider_word_sets_add_the_non_answers() -> None:
    assert NO_ANSWERS < NON_ANSWERS
    assert all(is_abstention(t, NON_ANSWERS) for t in ("None", "N/A", "N.A.", "unknown", ""))
    assert not is_abstention("Nairobi", NON_ANSWERS)
    assert is_abstention("null", NO_ANSWERS | {"null"}) and not is_abstention("null")


@pytest.mark.parametrize(("reply", "expected"), [
    ("unknown", True), ("Unknown.", True), (" n/a ", True), ("None", True), ("", True),
    ("...", True),
    # not normalised: these were answers for the answer module, and stay answers
    ("The unknown", False), ("Unknown!", False), ("na", False), ("N.A.", False),
])
def test_the_answer_modules_reply_test_is_literal(reply: str, expected: bool) -> None:
    assert is_unknown_reply(reply) is expected


def test_answer_in_text_is_a_normalised_substring_test() -> None:
    assert answer_in("Caskel", "Ilse Ranneth was born in the port town of Caskel.")
    assert answer_in("the Velmora bridge", "Velmora Bridge: designed by Ilse Ranneth")
    assert not answer_in("Oslo", "Bergen is a city in Norway.")
    assert not answer_in("The", "The answer is anywhere")  # normalises to nothing
    assert not answer_in("", "some text")
    assert answer_in("na", "a national park")  # a substring, not a whole-word test


@pytest.mark.parametrize(("text", "label"), [
    ("yes", "yes"), ("Yes.", "yes"), ("NO", "no"), ("Maybe, the data are mixed", "maybe"),
    ("probably", None), ("", None), ("The answer is yes", None),
])
def test_choice_label_names_the_whole_text_or_its_first_word(text: str,
                                                             label: str | None) -> None:
    assert choice_label(text) == label


def test_choice_label_with_own_labels_returns_their_spelling() -> None:
    assert choice_label("b) the second", ["A)", "B)"]) == "B)"
    assert choice_label("Contradiction.", ["Entailment", "Contradiction"]) == "Contradiction"
    assert choice_label("neutral", ["Entailment", "Contradiction"]) is None
