"""MATH-500: LaTeX golds graded by math-verify, the shipped data set, and the reference teacher's refusal."""

from __future__ import annotations

import json
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from sweep.config_check import check_config
from sweep.pipeline import run_pipeline
from tests.conftest import compose_config
from training.common.errors import ConfigError
from training.common.jsonl import read_jsonl
from training.data.levels import level_from_config
from training.data.problems import Problem, load_problems
from training.evaluation.evaluate import grade_sample
from training.evaluation.generation import Generated
from training.grading import latex
from training.grading.answers import extract_answer, is_correct, is_plain_number
from training.grading.filtering import judge
from training.models.tokens import TokenCounter
from training.teachers.reference import ReferenceTeacher

THINK = "<think>\nx\n</think>\n"
PROMPT = [{"role": "user", "content": "q"}]
# (gold, what the model writes after '####', right): each a way a LaTeX grader can go wrong, and its mirror.
LATEX_ANSWERS = [
    ("\\frac{1}{2}", "0.5", True),
    ("\\frac{1}{2}", "\\dfrac12", True),
    ("\\frac{1}{2}", "1/2", True),
    ("\\frac{1}{2}", "\\frac{1}{3}", False),
    ("\\frac{1}{2}", "0.51", False),
    ("(0,1]", "(0, 1]", True),
    ("(0,1]", "(0,1)", False),  # the open end matters
    ("(0,1]", "[0,1]", False),
    ("\\boxed{6+9i}", "9i+6", True),  # a gold written in \boxed{}
    ("\\boxed{6+9i}", "6-9i", False),
    ("\\left( 3, \\frac{\\pi}{2} \\right)", "(3, \\pi/2)", True),
    ("\\left( 3, \\frac{\\pi}{2} \\right)", "(\\pi/2, 3)", False),  # a point, not a set
    ("-2,1", "1, -2", True),  # MATH writes a set of solutions as a list
]


@pytest.fixture(scope="module")
def counter() -> TokenCounter:
    return TokenCounter()


@pytest.fixture(scope="module")
def math500() -> dict:
    cfg = compose_config("+level=4", "data=math500")
    return {"cfg": cfg, "splits": load_problems(cfg.data)}


@pytest.mark.parametrize(("gold", "answer", "right"), LATEX_ANSWERS)
def test_math_verify_grades_latex_answers(counter: TokenCounter, gold: str, answer: str, right: bool) -> None:
    assert not is_plain_number(gold)
    row = grade_sample(Problem("p", "q", "", gold), PROMPT, Generated(f"{THINK}#### {answer}", 9, True), counter)
    # The answer is the '####' line as written; both extractors read it, and it is well formed either way.
    assert (row["extracted"], row["extracted_strict"], row["format_ok"]) == (answer, answer, True)
    assert (row["correct"], row["correct_strict"]) == (right, right), (gold, answer)
    # The filter keeps the same traces the evaluation counts right.
    assert (judge(f"{THINK}#### {answer}", gold).reason is None) is right


def test_a_latex_answer_outside_the_answer_line(counter: TokenCounter) -> None:
    boxed = f"{THINK}So the answer is $\\boxed{{\\frac{{1}}{{2}}}}$."
    row = grade_sample(Problem("p", "q", "", "\\frac{1}{2}"), PROMPT, Generated(boxed, 9, True), counter)
    # Flexible reads the last \boxed{} (braces nested), strict only a '####' line; no '####' is a format error.
    assert (row["extracted"], row["extracted_strict"]) == ("\\frac{1}{2}", None)
    assert (row["correct"], row["correct_strict"], row["format_ok"]) == (True, False, False)
    thinking = "<think>\n#### \\frac{1}{2}\n</think>\n#### 7"  # only the answer after the think block counts
    assert extract_answer(thinking, gold="\\frac{1}{2}") == "7" and not is_correct("7", "\\frac{1}{2}")
    assert extract_answer(f"{THINK}#### ", "strict", gold="(0,1]") is None
    assert judge(f"{THINK}#### ", "(0,1]").reason == "unparseable_answer"


def test_plain_number_golds_keep_the_exact_grader() -> None:
    # GSM8K's rules hold whatever the data set: "#### 5-7" is unreadable, not a LaTeX expression equal to -2.
    assert is_plain_number("72") and is_plain_number("$1,000") and is_plain_number("0.5")
    assert extract_answer(f"{THINK}#### 5-7", gold="-2") is None
    assert extract_answer(f"{THINK}#### 0.45", gold="0.5") == "0.45" and not is_correct("0.45", "0.5")


def test_grading_off_the_main_thread(caplog: pytest.LogCaptureFixture) -> None:
    # math-verify's alarm works only in the main thread; a worker thread gets the same verdicts.
    with ThreadPoolExecutor(2) as pool:
        verdicts = list(pool.map(lambda case: is_correct(case[1], case[0]), LATEX_ANSWERS))
    assert verdicts == [right for _, _, right in LATEX_ANSWERS]
    # An answer sympy cannot finish in time is wrong, and says so, rather than hold the grader.
    done: list[bool] = []
    with caplog.at_level(logging.WARNING, logger=latex.__name__):
        worker = threading.Thread(target=lambda: done.append(latex.equivalent("1", "10^{3 \\cdot 10^{6}}", 0.05)))
        worker.start()
        worker.join(30)
    assert done == [False] and "counted wrong" in caplog.text


def test_math500_loads_500_problems_with_their_gold(math500: dict) -> None:
    splits = math500["splits"]
    problems = splits.train + splits.eval
    assert (len(splits.train), len(splits.eval), splits.stats["skipped_no_gold"]) == (300, 200, 0)
    assert len({p.id for p in problems}) == 500
    assert {(p.data_set, p.answer_format) for p in problems} == {("math500", "latex")}
    golds = {p.id: p.answer for p in problems}
    assert golds["test/precalculus/807.json"] == "\\left( 3, \\frac{\\pi}{2} \\right)"
    latex_golds = [p for p in problems if not is_plain_number(p.answer)]
    assert len(latex_golds) == 181
    # Every gold, written back as an answer, reads and grades as itself.
    for problem in latex_golds:
        assert is_correct(extract_answer(f"{THINK}#### {problem.answer}", gold=problem.answer), problem.answer), problem.id
    # Plain-number golds are canonical numbers, as in GSM8K ("58,500" -> "58500").
    assert "58500" in golds.values() and all("," not in g for g in golds.values() if is_plain_number(g))


def test_a_bad_answer_format_is_refused_before_any_data_is_read() -> None:
    cfg = compose_config("+level=4", "data=math500", "data.answer_format=tex")
    with pytest.raises(ConfigError, match=r"^data\.answer_format='tex' is not one of number, latex$"):
        check_config(cfg)


def test_the_reference_teacher_refuses_math500_in_one_line(math500: dict, run_dir: Path) -> None:
    level = level_from_config(compose_config("+level=4").level)
    with pytest.raises(ConfigError) as refused:
        ReferenceTeacher().generate(math500["splits"].train, level)
    message = str(refused.value)
    assert "\n" not in message and message.startswith("teacher=reference cannot render data=math500: ")
    # Through a trial: refused at the first stage, nothing written but the failed record.
    with pytest.raises(ConfigError, match="teacher=reference cannot render data=math500"):
        run_pipeline(compose_config("+level=4", "data=math500", "stages=[traces]", "wandb.mode=disabled"), run_dir,
                     group="tests")
    assert sorted(p.name for p in run_dir.iterdir()) == ["metrics.json"]
    assert json.loads((run_dir / "metrics.json").read_text())["status"] == "failed"


def test_the_base_model_evaluates_on_math500(run_dir: Path) -> None:
    summary = run_pipeline(compose_config("+level=4", "data=math500", "data.n_eval=3", "model=tiny-qwen3", "hardware=cpu",
                                          "sampling.max_new_tokens=8", "adapter=none", "stages=[eval]",
                                          "wandb.mode=disabled"), run_dir, group="tests")
    assert summary["eval"]["n_eval"] == 3
    rows = read_jsonl(run_dir / "eval_samples.jsonl")
    # The rows keep the other data sets' columns; the gold is the LaTeX as written, the task type the subject.
    assert set(rows[0]) == {"id", "prompt", "output", "extracted", "extracted_strict", "gold", "correct",
                            "correct_strict", "format_ok", "think_tokens", "completion_tokens", "stopped", "task_type"}
    assert {row["task_type"] for row in rows} <= {"Algebra", "Intermediate Algebra", "Prealgebra", "Number Theory",
                                                  "Precalculus", "Geometry", "Counting & Probability"}
    assert [row["gold"] for row in rows] == ["\\frac{16}{5}", "6", "\\frac{5}{13}"]  # the seeded eval set
