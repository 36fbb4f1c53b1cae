"""Literal-string tests for training.answers: one row per extraction or scoring rule."""

from __future__ import annotations

from fractions import Fraction

import pytest

from training.answers import (
    EXTRACTORS,
    extract_answer,
    extract_flexible,
    extract_strict,
    is_correct,
    normalize_number,
    strip_think,
    to_fraction,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (" 18 ", "18"),
        ("$18", "18"),
        ("\\$18.00", "18.00"),
        ("1,000", "1000"),
        ("1,000,000.50", "1000000.50"),
        ("5.", "5"),
        ("\u22123.5", "-3.5"),
        ("+7", "7"),
        ("\\frac{3}{4}", "3/4"),
        ("\\dfrac{-1}{2}", "-1/2"),
        ("50%", "50"),
        ("50\\%", "50"),
        ("18.00", "18.00"),
        ("1,2,3", None),
        ("...", None),
        ("apples", None),
        ("", None),
    ],
)
def test_normalize_number(text: str, expected: str | None) -> None:
    assert normalize_number(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("18", Fraction(18)),
        ("0.5", Fraction(1, 2)),
        ("3/4", Fraction(3, 4)),
        ("$1,000", Fraction(1000)),
        ("50%", Fraction(50)),
        ("\u22123", Fraction(-3)),
        ("1/0", None),
        ("abc", None),
    ],
)
def test_to_fraction(text: str, expected: Fraction | None) -> None:
    assert to_fraction(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a<think>x</think>b<think>y</think>c", "abc"),
        ("answer<think>never finished 12", "answer"),
        ("pre-filled thinking 3</think>final 4", "final 4"),
        ("no tags at all", "no tags at all"),
    ],
)
def test_strip_think(text: str, expected: str) -> None:
    assert strip_think(text) == expected


def test_strip_think_custom_tags() -> None:
    assert strip_think("<reason>9</reason>done", "<reason>", "</reason>") == "done"
    # The extractors honour a model's own delimiters too: the 9 inside its reasoning is not the answer.
    assert extract_answer("<reason>#### 9</reason>\n#### 4", "strict", "<reason>", "</reason>") == "4"
    assert extract_answer("<reason>9</reason> so 4 apples", "flexible", "<reason>", "</reason>") == "4"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("so 2 + 2 = 4\n#### 4", "4"),
        ("#### 1,000", "1000"),
        ("#### -3", "-3"),
        ("#### 18.", "18"),
        ("#### 5\nlater #### 6", "5"),  # first match, as lm-eval
        ("#### $18", None),  # strict does not tolerate a dollar sign
        ("####18", None),  # nor a missing space
        ("The answer is 18", None),
        ("<think>#### 12</think>I am not sure.", None),  # only #### is inside think
        ("<think>#### 12</think>#### 13", "13"),
    ],
)
def test_strict(text: str, expected: str | None) -> None:
    assert extract_strict(text) == expected
    assert extract_answer(text, mode="strict") == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # 1. #### tolerant to $ and spaces, beats everything below it.
        ("#### $18", "18"),
        ("####   \\$1,000", "1000"),
        ("The answer is 3.\n#### 4\nThe answer is 5", "4"),
        ("#### 7 \\boxed{8}", "7"),
        # 2. "the answer is", LAST occurrence, beats \boxed and trailing numbers.
        ("The answer is 5. Wait, the answer is 6. Check: 6 * 2 = 12", "6"),
        ("The final answer is $\\boxed{42}$. Total 100 words.", "42"),
        ("**Answer:** $18.00", "18.00"),
        ("answer: \\(\\frac{1}{2}\\)", "1/2"),
        ("THE ANSWER IS **\u22124**", "-4"),
        ("The answer is 12 but \\boxed{13}", "12"),
        # 3. LAST \boxed{...}, one level of nested braces.
        ("\\boxed{1} then \\boxed{2} and 99", "2"),
        ("So $\\boxed{\\frac{1}{2}}$.", "1/2"),
        ("\\boxed{\\$18.00}", "18.00"),
        ("\\boxed{50\\%}", "50"),
        ("\\boxed{1,000}", "1000"),
        ("\\boxed{18 \\text{ dollars}}", "18"),
        # 4. last number in the text.
        ("She has 3 apples and buys 4 more, so 7 total", "7"),
        ("1,2,3", "3"),
        ("The total is 5.", "5"),
        ("It costs $1,234.50 in all", "1234.50"),
        ("half is 3/4 cup", "3/4"),
        ("went from 10 to \u22122", "-2"),
        ("pages 5-7", "7"),
        ("a 50% discount", "50"),
        ("Hmm...", None),
        ("", None),
    ],
)
def test_flexible(text: str, expected: str | None) -> None:
    assert extract_flexible(text) == expected
    assert extract_answer(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("<think>so 42</think>The answer is 7", "7"),
        ("<think>12 apples", None),  # unclosed: the model never answered
        ("<think>5</think>no numbers here", None),
        ("counting 1 2 3</think>so 10", "10"),  # stray closer from a pre-filled <think>
        ("<think>\\boxed{9}</think>\\boxed{8}", "8"),
        ("<think>The answer is 9</think>maybe 8", "8"),
    ],
)
def test_flexible_never_reads_think(text: str, expected: str | None) -> None:
    assert extract_answer(text, mode="flexible") == expected


def test_unknown_mode_raises_naming_valid_modes() -> None:
    with pytest.raises(ValueError, match="flexible, strict"):
        extract_answer("#### 4", mode="lenient")


def test_extractors_registry() -> None:
    assert EXTRACTORS == {"strict": extract_strict, "flexible": extract_flexible}


@pytest.mark.parametrize(
    ("pred", "gold"),
    [
        ("18.00", "18"),
        ("18", "18.00"),
        ("$1,000", "1000"),
        ("1/2", "0.5"),
        ("50%", "50"),
        ("-3", "\u22123"),
        ("3.333", "3.33"),  # more precise than the gold: round half-up to 2 places
        ("10/3", "3.33"),
        ("2.665", "2.67"),  # half-up: banker's rounding would give 2.66
        ("-2.665", "-2.67"),
        ("3.0", "3"),
    ],
)
def test_is_correct_equivalent(pred: str, gold: str) -> None:
    assert is_correct(pred, gold)


@pytest.mark.parametrize(
    ("pred", "gold"),
    [
        (None, "18"),
        ("abc", "18"),
        ("17", "18"),
        ("3.3", "3.33"),  # less precise than the gold: no rounding
        ("3.4", "3"),  # integer gold: no tolerance
        ("2.9999", "3"),
        ("3.334", "3.34"),
        ("0.5", "50%"),  # percent is only stripped, not divided by 100
        ("1/0", "0"),
        ("18", "not a number"),
    ],
)
def test_is_correct_not_equivalent(pred: str | None, gold: str) -> None:
    assert not is_correct(pred, gold)
