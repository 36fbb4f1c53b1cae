"""Grading and summarising a student's outputs: pure functions, literal strings."""

import pytest

from training.common.errors import ConfigError
from training.data.problems import Problem
from training.evaluation.evaluate import format_ok, grade_sample, summarize, wilson_interval
from training.evaluation.generation import Generated
from training.grading.completions import think_text
from training.models.tokens import TokenCounter


def test_wilson_interval_known_values():
    # Reference values from the closed form (Wilson 1927), z = 1.96.
    assert wilson_interval(0, 16) == pytest.approx((0.0, 0.19361), abs=1e-5)
    low, high = wilson_interval(5, 10)
    assert low == pytest.approx(0.23659, abs=1e-5) and high == pytest.approx(0.76341, abs=1e-5)
    assert wilson_interval(10, 10)[1] == 1.0 and wilson_interval(10, 10)[0] == pytest.approx(0.72247, abs=1e-5)
    assert wilson_interval(1, 64)[0] > 0  # one correct answer lifts the lower bound above zero
    assert wilson_interval(0, 0) == (0.0, 0.0)
    with pytest.raises(ValueError):
        wilson_interval(3, 2)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("<think>\na=97-72=25\n</think>\n#### 25", "a=97-72=25"),
        ("<think>a=1+1=2", "a=1+1=2"),  # cut off while thinking: every token so far counts
        ("a=1+1=2</think>\n#### 2", "a=1+1=2"),  # the template pre-filled the opener
        ("#### 2", None),
        ("<think></think>#### 2", ""),
    ],
)
def test_think_text(text, expected):
    assert think_text(text) == expected


@pytest.mark.parametrize(
    ("text", "ok"),
    [
        ("<think>\na=2\n</think>\n#### 2", True),
        ("<think>\na=2\n</think>\n\n#### 2", True),  # Qwen3's template puts a blank line after the block
        ("<think>\na=2\n</think>\nThe answer is 2", False),
        ("<think>\na=2\n#### 2", False),
        ("<think>a</think><think>b</think>#### 2", False),
        ("#### 2", False),
    ],
)
def test_format_ok(text, ok):
    assert format_ok(text) is ok


def graded(output: str, gold: str = "25", tokens: int = 9, stopped: bool = True) -> dict:
    problem = Problem(id="p", question="q", solution="", answer=gold)
    return grade_sample(problem, [{"role": "user", "content": "q"}], Generated(output, tokens, stopped),
                        TokenCounter())


def test_grade_sample_reads_the_answer_outside_the_think_block():
    row = graded("<think>\n25+1=26\n</think>\n#### 25")
    assert row["extracted"] == "25" and row["extracted_strict"] == "25" and row["correct"] and row["correct_strict"]
    assert row["think_tokens"] == 7  # Qwen3 splits digits: 2 5 + 1 = 2 6
    wrong = graded("<think>\n25\n</think>\nso 26")
    assert wrong["extracted"] == "26" and not wrong["correct"] and wrong["extracted_strict"] is None
    assert not wrong["format_ok"]
    unclosed = graded("<think>\n25 25 25", stopped=False)
    assert unclosed["extracted"] is None and not unclosed["correct"] and unclosed["think_tokens"] > 0


def test_summarize():
    rows = [graded("<think>\n1+24=25\n</think>\n#### 25"), graded("<think>\nx\n</think>\n#### 7"),
            graded("The answer is 25", tokens=5), graded("<think>\nloop", tokens=128, stopped=False)]
    metrics = summarize(rows)
    assert metrics["accuracy"] == 0.5 and metrics["accuracy_strict"] == 0.25 and metrics["n_correct"] == 2
    assert metrics["accuracy_ci"] == [round(v, 5) for v in wilson_interval(2, 4)]
    assert metrics["format_error_rate"] == 0.5 and metrics["truncated_rate"] == 0.25
    assert metrics["mean_completion_tokens"] == (9 + 9 + 5 + 128) / 4
    think = sorted(r["think_tokens"] for r in rows)
    assert metrics["median_think_tokens"] == (think[1] + think[2]) / 2
    assert metrics["mean_think_tokens"] == pytest.approx(sum(think) / 4, abs=1e-3)
    strict = summarize(rows, "strict")
    assert strict["accuracy"] == 0.25 and strict["accuracy_extractor"] == "strict"
    with pytest.raises(ConfigError, match="eval split is empty"):
        summarize([])
    with pytest.raises(ConfigError, match="not one of"):
        summarize(rows, "loose")
