"""Fault: a grader that counts a wrong answer as right, in evaluation (accuracy) or in the filter (training data).

A corpus of tricky outputs goes through the real grading path (``grade_sample`` and ``summarize``) and the real
filter (``filter_traces`` with the Qwen3 tokenizer); every gold of the shipped data sets is read back through both
extractors. What must hold: wrong answers counted right 0, wrong traces kept 0, an unreadable answer line counted
as a format error exactly as a missing one is, and every shipped gold equal to itself.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import OmegaConf

from training.common.jsonl import iter_jsonl
from training.data.problems import Problem, _package_file, load_pool
from training.evaluation.evaluate import grade_sample, summarize
from training.evaluation.generation import Generated
from training.grading.answers import extract_flexible, extract_strict, is_correct
from training.grading.filtering import filter_traces
from training.models.tokens import TokenCounter

REPO = Path(__file__).resolve().parents[2]
THINK = "<think>\nc=48/2=24\u2192a=48+c=72\n</think>\n"

# (answer text after the think block, gold, flexible reads, strict reads). A None read is unreadable.
CORPUS = [
    ("#### 72", "72", "72", "72"),
    ("#### 0.45", "0.5", "0.45", "0.45"),  # rounds to the gold: still wrong
    ("#### 2.54", "2.5", "2.54", "2.54"),
    ("#### $12.49", "12.5", "12.49", None),
    ("#### .5", "5", "0.5", "0.5"),
    ("#### 48 + 24 = 72", "48", "72", None),
    ("#### 48 + 24 = 73", "72", None, None),  # the equation does not hold
    ("#### 5-7", "5", None, None),
    ("#### 5-3", "2", None, None),
    ("#### 7.2e1", "7.2", "72", None),
    ("#### \\frac{3}{4}", "4", "3/4", None),
    ("#### 24\nWait, that was half: 48 + 24 = 72.\n#### 72", "24", "72", "72"),
    ("#### 7 or 8", "7", None, None),
    ("#### seventy-two", "72", None, None),
    ("The answer is 72.", "72", "72", None),  # no answer line: a format error, graded as lm-eval's flexible
]


@pytest.fixture(scope="module")
def counter() -> TokenCounter:
    return TokenCounter()


def test_the_grader_counts_no_wrong_answer_right_and_unreadable_as_a_format_error(counter: TokenCounter) -> None:
    rows = []
    for index, (answer, gold, flexible, strict) in enumerate(CORPUS):
        problem = Problem(f"p{index}", "q", "", gold)
        row = grade_sample(problem, [{"role": "user", "content": "q"}], Generated(THINK + answer, 9, True), counter)
        assert (row["extracted"], row["extracted_strict"]) == (flexible, strict), answer
        assert row["correct"] is (flexible is not None and is_correct(flexible, gold)), answer
        # A line the grader cannot read is a format error, exactly as a missing line is.
        assert row["format_ok"] is (answer.startswith("####") and flexible is not None), answer
        rows.append(row)
    # Right: "#### 72" and, as lm-eval's flexible grades it, "The answer is 72." for gold 72; nothing else.
    assert {r["id"] for r in rows if r["correct"]} == {"p0", f"p{len(CORPUS) - 1}"}
    assert {r["id"] for r in rows if r["correct_strict"]} == {"p0"}
    metrics = summarize(rows)
    assert metrics["n_correct"] == 2 and metrics["accuracy_strict"] == round(1 / len(CORPUS), 5)
    unreadable_or_missing = sum(not a.startswith("####") or f is None for a, _, f, _ in CORPUS)
    assert metrics["format_error_rate"] == round(unreadable_or_missing / len(CORPUS), 5)


def test_the_filter_keeps_no_wrong_trace(counter: TokenCounter) -> None:
    traces = [{"problem_id": f"p{i}", "sample": 0, "question": "q", "gold": gold, "completion": THINK + answer,
               "error": None} for i, (answer, gold, _, _) in enumerate(CORPUS)]
    result = filter_traces(traces, counter)
    assert [row["problem_id"] for row in result.kept] == ["p0"]
    assert all(is_correct(row["completion"].rsplit("#### ", 1)[1], row["gold"]) for row in result.kept)
    dropped = result.report["dropped"]
    assert sum(dropped.values()) == len(CORPUS) - 1
    assert dropped["wrong_answer"] >= 5 and dropped["unparseable_answer"] >= 4


def _raw_golds(cfg: dict) -> dict[str, str]:
    """Problem id -> the gold as the data file writes it ("5.0", "1.20 (dollars)"), for the evaluation split."""
    split = cfg["eval_split"]
    file = _package_file(cfg, split)
    fields = cfg["fields"]
    golds = {}
    for index, (_, row) in enumerate(iter_jsonl(file)):
        problem_id = str(row[fields["id"]]) if fields["id"] else f"{cfg['name']}-{split}-{index}"
        golds.setdefault(problem_id, str(row[fields["answer"]]) if fields["answer"] else row["answer"].rpartition("####")[2])
    return golds


@pytest.mark.parametrize("name", ["gsm8k", "svamp", "asdiv"])
def test_every_shipped_gold_reads_back_as_itself(name: str) -> None:
    cfg = OmegaConf.to_container(OmegaConf.load(REPO / "conf" / "data" / f"{name}.yaml"))
    problems = load_pool(cfg, cfg["eval_split"]).problems
    assert len(problems) > 900
    for problem in problems:
        gold = problem.answer
        assert is_correct(extract_flexible(f"{THINK}#### {gold}"), gold), gold
        if "/" not in gold:  # lm-eval's strict characters cannot write a fraction
            assert is_correct(extract_strict(f"{THINK}#### {gold}"), gold), gold
    # Canonicalising never moves a value: SVAMP's "5.0" is 5, ASDiv's "1.20 (dollars)" is 1.2.
    raw = _raw_golds(cfg)
    for problem in problems:
        assert is_correct(problem.answer, raw[problem.id].split(" (")[0]), (problem.id, raw[problem.id])
