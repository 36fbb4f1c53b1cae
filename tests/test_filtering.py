"""The filter's reasons, selection and report, on literal completions."""

import pytest

from training.answers import is_correct
from training.filtering import REASONS, filter_traces, judge
from training.tokens import TokenCounter

COUNTER = TokenCounter()


@pytest.mark.parametrize(
    ("completion", "reason"),
    [
        ("<think>\nc=48/2=24→a=48+c=72\n</think>\n#### 72", None),
        ("<think>\nc=48/2=24→a=48+c=72\n</think>\n#### 72.00\nThanks!", None),
        ("", "empty_output"),
        ("   \n", "empty_output"),
        ("48+24=72\n#### 72", "no_think_block"),
        ("<think>\n48+24=72\n#### 72", "unclosed_think"),
        ("48+24=72\n</think>\n#### 72", "unclosed_think"),
        ("Sure!<think>\n48+24\n</think>\n#### 72", "unclosed_think"),  # text before the block
        ("</think><think>\n48+24=72\n#### 72", "unclosed_think"),
        ("<think>a</think><think>b</think>\n#### 72", "multiple_think_blocks"),
        ("<think>\n\n</think>\n#### 72", "empty_think"),
        ("<think>\n48+24=72\n</think>\nThe answer is 72.", "no_final_answer"),
        ("<think>\n#### 72\n</think>\nI think so.", "no_final_answer"),  # answer inside the think block
        ("<think>\n48+24=72\n</think>\n#### 72\n#### 73", "multiple_final_answers"),
        ("<think>\n48+24=72\n</think>\n#### seventy-two", "unparseable_answer"),
        ("<think>\n48+24=73\n</think>\n#### 73", "wrong_answer"),
    ],
)
def test_judge_reasons(completion, reason):
    assert judge(completion, "72").reason == reason


def test_teacher_error_and_empty_think_option():
    assert judge("<think>\nx\n</think>\n#### 72", "72", error="no marks").reason == "teacher_error"
    assert judge("<think>\n</think>\n#### 72", "72", allow_empty_think=True).reason is None


def test_other_delimiters():
    verdict = judge("<reasoning>\n2+2=4\n</reasoning>\n#### 4", "4", open_tag="<reasoning>", close_tag="</reasoning>")
    assert verdict.reason is None and verdict.think == "2+2=4"


def _row(pid, sample, completion, gold="72", error=None):
    return {"problem_id": pid, "sample": sample, "completion": completion, "gold": gold, "error": error,
            "question": "q", "teacher": "t", "level": 4}


def test_filter_counts_every_reason_and_keeps_only_correct():
    rows = [
        _row("a", 0, "<think>\nlong chain of thought here 48+24=72\n</think>\n#### 72"),
        _row("a", 1, "<think>\n48+24=72\n</think>\n#### 72"),
        _row("a", 2, "<think>\n48+24=73\n</think>\n#### 73"),
        _row("b", 0, "", error="no calculator marks"),
        _row("c", 0, "<think>\n1+1=2\n</think>\n#### 2", gold="2"),
        _row("d", 0, "no structure at all 5", gold="5"),
    ]
    result = filter_traces(rows, COUNTER)
    assert result.report["dropped"] == {"teacher_error": 1, "no_think_block": 1, "wrong_answer": 1}
    assert (result.report["kept_traces"], result.report["kept_problems"], result.report["n_problems"]) == (3, 2, 4)
    assert result.report["problems_without_correct_trace"] == 2 and result.report["keep_rate"] == 0.5
    assert all(is_correct(k["completion"].rsplit("#### ", 1)[1], k["gold"]) for k in result.kept)
    assert result.report["think_chars"]["max"] == len("long chain of thought here 48+24=72")
    assert set(result.report["dropped"]) <= set(REASONS)

    shortest = filter_traces(rows, COUNTER, select="shortest")
    kept_a = [k for k in shortest.kept if k["problem_id"] == "a"]
    assert [k["sample"] for k in kept_a] == [1] and shortest.report["dropped"]["not_shortest"] == 1

    # Qwen3 splits digits: "48+24=72" is 8 tokens, the long trace more.
    assert COUNTER.count(["48+24=72"]) == [8]
    capped = filter_traces(rows, COUNTER, max_think_tokens=8)
    assert capped.report["dropped"]["too_long"] == 1 and all(k["think_tokens"] <= 8 for k in capped.kept)


def test_kept_completion_is_canonical():
    rows = [_row("a", 0, "<think>\n  48+24=72  \n</think>\n####   $72.00  \nextra words")]
    (kept,) = filter_traces(rows, COUNTER).kept
    assert kept["completion"] == "<think>\n48+24=72\n</think>\n#### 72.00"
    assert (kept["think_chars"], kept["think_tokens"]) == (8, COUNTER.count(["48+24=72"])[0])


def test_unknown_selection_is_a_config_error():
    from training.errors import ConfigError

    with pytest.raises(ConfigError, match="filter.select"):
        filter_traces([], COUNTER, select="longest")
