"""Literal-string tests for training.grading.answers and training.grading.numbers: one row per extraction or scoring rule."""

from __future__ import annotations

from fractions import Fraction

import pytest

from training.grading.answers import (
    EXTRACTORS,
    extract_answer,
    extract_flexible,
    extract_strict,
    is_correct,
    normalize_number,
    read_statement,
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
        (".5", "0.5"),  # a leading point is a decimal, not the 5 after it
        ("-.5", "-0.5"),
        ("7.2e1", "72"),  # an exponent is written out, not cut off
        ("2.5e-1", "0.25"),
        ("1e999", None),  # an exponent too large to write out is no answer
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
        ("7.2e1", Fraction(72)),
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
        # One number, words around it allowed.
        ("72", "72"),
        (" $72.00 ", "72.00"),
        ("72 apples.", "72"),
        ("**72**", "72"),
        ("two-liter bottles: 5", "5"),  # a hyphen between letters is a word's
        ("60 km/h", "60"),
        ("\\sqrt{16}", None),  # 4, not 16: a LaTeX command we do not evaluate
        ("\u221a16", None),
        ("72^2", None),
        ("\\frac{3}{4}", "3/4"),
        ("\\boxed{\\text{18}}", "18"),
        ("1{,}000", "1000"),
        # An equation reads the value after its last "=", and only when the other sides compute it.
        ("48 + 24 = 72", "72"),
        ("t = 48 + 24 = 72", "72"),
        ("Total = $72", "72"),
        ("(48 + 24) / 2 = 36", "36"),
        ("10 -3 = 7", "7"),  # a sign without an operator before it is the operator
        ("3 x 4 = 12", "12"),
        ("3 \\times 4 = 12", "12"),
        ("50% * 40 = 20", "20"),  # as an operand a percent is a share
        ("0.75 = \\frac{3}{4}", "3/4"),
        ("48 + 24 = 73", None),  # the equation does not hold: 72 or 73?
        ("48 + 24 = 72 + 1", None),  # the value side is arithmetic, not a value
        ("48 apples + 24 = 72", None),  # words on the arithmetic side
        ("72 = 48 + 24", None),
        # No single number.
        ("48 + 24", None),  # arithmetic with no stated result
        ("5-7", None),  # a range, or a subtraction: unreadable either way
        ("5 - 3", None),
        ("7 or 8", None),
        ("3:30", None),
        ("1,2,3", None),
        ("2 1/2", None),
        ("x/2", None),
        ("3/0", None),
        ("", None),
        ("I am not sure", None),
    ],
)
def test_read_statement(text: str, expected: str | None) -> None:
    assert read_statement(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("so 2 + 2 = 4\n#### 4", "4"),
        ("#### 1,000", "1000"),
        ("#### -3", "-3"),
        ("#### 18.", "18"),
        ("#### .5", "0.5"),
        ("#### 72 apples", "72"),  # lm-eval's strict regex reads the same
        ("#### 5\nlater #### 6", "6"),  # the last line counts (lm-eval: the first)
        ("#### 6\n####", None),  # the last line states nothing
        ("#### 48 + 24 = 72", None),  # lm-eval: 48; strict wants one plain number
        ("#### 5-7", None),  # lm-eval: 5
        ("#### 7.2e1", None),  # lm-eval: 7.2
        ("#### 1/17", None),  # lm-eval: 1
        ("#### 1,2,3", None),
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
        # 1. The LAST #### line, tolerant to $ and spaces, beats everything below it; read whole.
        ("#### $18", "18"),
        ("####   \\$1,000", "1000"),
        ("The answer is 3.\n#### 4\nThe answer is 5", "4"),
        ("#### 24\nWait, 48 + 24 = 72.\n#### 72", "72"),
        ("#### 24 ... Wait, 24 was half of it ... #### 72", "72"),
        ("#### 72\n#### 7 or 8", None),  # the final statement is unreadable: no falling back to 72
        ("#### 7 \\boxed{8}", None),
        ("####\n72", None),  # an empty answer line: the number under it is not on it
        ("#### \\frac{3}{4}", "3/4"),
        ("#### 7.2e1", "72"),
        ("#### 48 + 24 = 72", "72"),
        # 2. "the answer is": the LAST one, the arithmetic span right after it.
        ("The answer is 5. Wait, the answer is 6. Check: 6 * 2 = 12", "6"),
        ("The final answer is $\\boxed{42}$. Total 100 words.", "42"),
        ("**Answer:** $18.00", "18.00"),
        ("answer: \\(\\frac{1}{2}\\)", "1/2"),
        ("THE ANSWER IS **\u22124**", "-4"),
        ("The answer is 12 but \\boxed{13}", None),  # the statement holds two numbers
        ("The answer is 72 or 73.", None),
        ("The answer is 72. Check: 48 + 24 = 72", "72"),  # the statement ends with its sentence
        ("The answer is .5", "0.5"),
        ("The answer is 48 + 24 = 72 apples.", "72"),
        ("The answer is 5-7 pages", None),
        ("What the answer is depends on it: 9", "9"),  # a cue followed by words is prose
        ("To find the answer is easy: 3 + 4 = 7", "7"),
        # 3. LAST \boxed{...}, one level of nested braces.
        ("\\boxed{1} then \\boxed{2} and 99", "2"),
        ("So $\\boxed{\\frac{1}{2}}$.", "1/2"),
        ("\\boxed{\\$18.00}", "18.00"),
        ("\\boxed{50\\%}", "50"),
        ("\\boxed{1,000}", "1000"),
        ("\\boxed{18 \\text{ dollars}}", "18"),
        ("\\boxed{x = 5}", "5"),
        ("\\boxed{5-7}", None),
        # 4. the last number in the text, unless it is part of bare arithmetic.
        ("She has 3 apples and buys 4 more, so 7 total", "7"),
        ("1,2,3", "3"),
        ("The total is 5.", "5"),
        ("It costs $1,234.50 in all", "1234.50"),
        ("half is 3/4 cup", "3/4"),
        ("went from 10 to \u22122", "-2"),
        ("So 6 * 2 = 12", "12"),
        ("So 6 * 2 = 13", None),
        ("pages 5-7", None),
        ("so it is 5 - 3", None),
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
        ("#### 5\n<think>#### 9</think>", "5"),  # the last #### outside the block
    ],
)
def test_flexible_never_reads_think(text: str, expected: str | None) -> None:
    assert extract_answer(text, mode="flexible") == expected


def test_unknown_mode_raises_naming_valid_modes() -> None:
    with pytest.raises(ValueError, match="flexible, strict"):
        extract_answer("#### 4", mode="lenient")


def test_extractors_registry() -> None:
    assert EXTRACTORS == {"strict": extract_strict, "flexible": extract_flexible}


# Each class of wrong answer a grader could count as right, and its mirror: (output, gold, flexible, strict).
@pytest.mark.parametrize(
    ("output", "gold", "flexible", "strict"),
    [
        # Rounding: no tolerance, whatever decimals the gold was written with.
        ("#### 0.45", "0.5", False, False),
        ("#### 0.5", "0.5", True, True),
        ("#### 2.54", "2.5", False, False),
        ("#### 2.50", "2.5", True, True),
        ("#### $12.49", "12.50", False, False),
        ("#### $12.50", "12.5", True, False),  # strict refuses the "$"
        # A leading point.
        ("#### .5", "5", False, False),
        ("#### .5", "0.5", True, True),
        ("The answer is .5", "5", False, False),
        ("The answer is .5", "0.5", True, False),
        # The value a line states, not its first number.
        ("#### 48 + 24 = 72", "48", False, False),
        ("#### 48 + 24 = 72", "72", True, False),
        ("#### 5-7", "5", False, False),
        ("#### 5-7", "7", False, False),
        ("#### 5-3", "5", False, False),
        ("#### 5-3", "2", False, False),  # bare arithmetic states no result
        ("#### 7.2e1", "7.2", False, False),
        ("#### 7.2e1", "72", True, False),
        # LaTeX.
        ("#### \\frac{3}{4}", "4", False, False),
        ("#### \\frac{3}{4}", "0.75", True, False),
        # Self-correction: the last answer line wins.
        ("#### 24\nWait, that is half. 48 + 24 = 72\n#### 72", "24", False, False),
        ("#### 24\nWait, that is half. 48 + 24 = 72\n#### 72", "72", True, True),
    ],
)
def test_wrong_answers_are_never_counted_right(output: str, gold: str, flexible: bool, strict: bool) -> None:
    assert is_correct(extract_flexible(output), gold) is flexible
    assert is_correct(extract_strict(output), gold) is strict


@pytest.mark.parametrize(
    ("pred", "gold"),
    [
        ("18.00", "18"),
        ("18", "18.00"),
        ("$1,000", "1000"),
        ("1/2", "0.5"),
        ("50%", "50"),
        ("-3", "\u22123"),
        ("3.0", "3"),
        ("5", "5.0"),  # SVAMP writes golds as floats
        ("0.5", ".5"),
        ("72", "7.2e1"),
        ("10/3", "10/3"),
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
        ("3.333", "3.33"),  # no rounding tolerance either way
        ("10/3", "3.33"),
        ("2.665", "2.67"),
        ("3.3", "3.33"),
        ("0.45", "0.5"),
        ("3.4", "3"),
        ("2.9999", "3"),
        ("0.5", "50%"),  # percent is only stripped, not divided by 100
        ("1/0", "0"),
        ("18", "not a number"),
    ],
)
def test_is_correct_not_equivalent(pred: str | None, gold: str) -> None:
    assert not is_correct(pred, gold)
