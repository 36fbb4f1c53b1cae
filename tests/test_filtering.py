"""The filter's reasons, selection and report, on literal completions."""

import json

import pytest

from training.grading.answers import is_correct
from training.grading.filtering import REASONS, filter_traces, judge
from training.models.tokens import TokenCounter

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
    from training.common.errors import ConfigError

    with pytest.raises(ConfigError, match="filter.select"):
        filter_traces([], COUNTER, select="longest")


@pytest.mark.parametrize(
    ("settings", "message"),
    [({"max_think_tokens": -3}, "filter.max_think_tokens must be null or an integer >= 1, got -3"),
     ({"max_think_tokens": 0}, "filter.max_think_tokens must be null or an integer >= 1, got 0"),
     ({"max_think_tokens": "abc"}, "filter.max_think_tokens must be null or an integer >= 1, got 'abc'"),
     ({"allow_empty_think": "false"}, "filter.allow_empty_think must be true or false, got 'false'"),
     ({"select": "longest"}, "filter.select='longest' is not one of all, shortest")],
)
def test_filter_settings_name_the_key_the_value_and_what_is_allowed(settings, message):
    from training.common.errors import ConfigError
    from training.config.schema import read_group

    with pytest.raises(ConfigError) as caught:
        read_group("filter", settings)
    assert str(caught.value) == message
    read_group("filter", {"select": "shortest", "allow_empty_think": True, "max_think_tokens": 1})


@pytest.mark.parametrize(
    ("change", "message"),
    [({"gold": None}, "traces row has no 'gold' (each row needs problem_id, question, gold and completion)"),
     ({"problem_id": None}, "traces row has no 'problem_id'"),
     ({"completion": ["<think>"]}, "'completion' must be a string or null, got list"),
     ({"gold": ["72"]}, "'gold' must be str or int or float, got list"),
     ({"sample": "0"}, "'sample' must be an integer, got str")],
)
def test_a_malformed_traces_row_names_its_file_and_line(tmp_path, change, message):
    from training.common.errors import DataError
    from training.common.jsonl import read_jsonl

    good = _row("a", 0, "<think>\n48+24=72\n</think>\n#### 72")
    bad = {key: value for key, value in {**good, **change}.items() if value is not None}
    path = tmp_path / "traces.jsonl"
    path.write_text(json.dumps(good) + "\n\n" + json.dumps(bad) + "\n")
    with pytest.raises(DataError) as caught:
        filter_traces(read_jsonl(path), COUNTER)
    assert str(caught.value).startswith(f"{path}:3: {message}")
    # Rows built in memory have no file: they are named by position.
    with pytest.raises(DataError, match=r"^traces row 2: "):
        filter_traces([good, bad], COUNTER)


def test_numeric_ids_and_gold_and_a_missing_sample_are_accepted():
    row = {"problem_id": 7, "gold": 72, "question": "q", "completion": "<think>\n48+24=72\n</think>\n#### 72"}
    (kept,) = filter_traces([row], COUNTER).kept
    assert (kept["problem_id"], kept["gold"], kept["sample"]) == ("7", "72", 0)
