"""Level renderers on real GSM8K and SVAMP rows."""

import re

import pytest

from tests.conftest import compose_config
from training.data.arithmetic import evaluate, parse_number
from training.data.levels import level_from_config
from training.data.problems import Problem
from training.data.renderers import RENDER, asked_quantity
from training.data.solutions import UnrenderableError, parse_reference
from training.teachers.reference import ReferenceTeacher

LEVELS = {i: level_from_config(compose_config(f"+level={i}").level) for i in range(1, 6)}


def _problem(row: dict, index: int) -> Problem:
    solution, _, gold = row["answer"].rpartition("####")
    return Problem(f"gsm8k-train-{index}", row["question"], solution.strip(), gold.strip().replace(",", ""))


def test_first_gsm8k_row_at_every_level(gsm8k_train_rows):
    problem = _problem(gsm8k_train_rows[0], 0)
    solution = parse_reference(problem.solution)
    traces = {i: RENDER[lv.renderer](solution, problem.question, problem.answer, lv) for i, lv in LEVELS.items()}
    assert traces[1].trace == "Natalia sold 48/2 = 24 clips in May.\nNatalia sold 48+24 = 72 clips altogether in April and May."
    assert traces[2].trace == "clips in May: 48 / 2 = 24\nclips altogether in April: 48 + 24 = 72"
    assert traces[3].trace == "48 / 2 = 24; 48 + 24 = 72"
    assert traces[4].trace == "c=48/2=24→a=48+c=72"
    assert traces[5].trace == "48+24=72"
    assert {r.answer for r in traces.values()} == {"72"}


@pytest.mark.parametrize("level_id", range(1, 6))
def test_level_exemplars_are_the_renderer_output(level_id, gsm8k_train_rows):
    """The few-shot exemplars in conf/level/*.yaml must not drift from what the teacher writes."""
    level = LEVELS[level_id]
    assert len(level.exemplars) == 2
    for index, exemplar in zip((0, 1), level.exemplars):
        problem = _problem(gsm8k_train_rows[index], index)
        assert exemplar.question == problem.question
        rendered = RENDER[level.renderer](parse_reference(problem.solution), problem.question, problem.answer, level)
        assert (exemplar.trace, exemplar.answer) == (rendered.trace, rendered.answer)


@pytest.mark.parametrize("level_id", [2, 3, 4, 5])
def test_compact_levels_invent_no_arithmetic(level_id, gsm8k_train_rows):
    """Every equation in a trace holds, and every number is a given or a stated result."""
    level = LEVELS[level_id]
    for index, row in enumerate(gsm8k_train_rows[:300]):
        problem = _problem(row, index)
        try:
            solution = parse_reference(problem.solution)
            rendered = RENDER[level.renderer](solution, problem.question, problem.answer, level)
        except UnrenderableError:
            continue
        allowed = {parse_number(n) for n in re.findall(r"\d[\d,]*(?:\.\d+)?", problem.question)}
        allowed |= {parse_number(s.result) for s in solution.steps}
        allowed |= {parse_number(n) for s in solution.steps for n in re.findall(r"\d+(?:\.\d+)?|\.\d+", s.expr)}
        for number in re.findall(r"\d+(?:\.\d+)?|\.\d+", rendered.trace):
            assert parse_number(number) in allowed, (index, rendered.trace)
        if level_id == 4:
            # Substitute variables back and check each link of the chain.
            env = {}
            for link in rendered.trace.split("→"):
                var, expr, result = link.split("=")
                value = evaluate(re.sub(r"[a-z]", lambda m: f"({env[m.group(0)]})", expr))
                assert abs(value - parse_number(result)) < 0.01, (index, rendered.trace)
                env[var] = result


def test_wrong_calculator_mark_is_not_rendered():
    with pytest.raises(UnrenderableError, match="evaluates to 15"):
        parse_reference("He has 5*3 = <<5*3=16>>16 apples.")


def test_prose_without_marks_renders_only_at_level_1():
    problem = Problem("p", "Tom has 3 apples and gets 4 more. How many now?", "Tom has 3 + 4 = 7 apples now.", "7")
    teacher = ReferenceTeacher()
    assert teacher.render(problem, LEVELS[1]).completion == "<think>\nTom has 3 + 4 = 7 apples now.\n</think>\n#### 7"
    trace = teacher.render(problem, LEVELS[4])
    assert trace.completion == "" and "no calculator marks" in trace.error


def test_svamp_equation_at_every_level():
    problem = Problem("chal-1", "Randy has 97 blocks. He has 72 left. How many blocks did he use?", "( 97.0 - 72.0 )", "25")
    solution = parse_reference(problem.solution)
    out = {i: RENDER[lv.renderer](solution, problem.question, problem.answer, lv).trace for i, lv in LEVELS.items()}
    assert out[1] == "Let's work through the problem step by step. First, we compute 97 - 72 = 25. So the result is 25."
    assert out[2] == "blocks: 97 - 72 = 25"
    assert out[3] == "97 - 72 = 25"
    assert out[4] == "a=97-72=25"
    assert out[5] == "97-72=25"
    two_step = parse_reference("( 7.0 - ( 3.0 + 2.0 ) )")
    assert RENDER["chain"](two_step, "He had 7, lost 3 and 2.", None, LEVELS[4]).trace == "a=3+2=5→b=7-a=2"


def test_asdiv_formula_with_its_result():
    solution = parse_reference("(5+3)*2=16")
    assert RENDER["chain"](solution, "He had 5 and got 3, twice.", None, LEVELS[4]).trace == "a=5+3=8→b=a*2=16"
    with pytest.raises(UnrenderableError, match="not the stated 17"):
        parse_reference("(5+3)*2=17")
    for formula in ("GCD(18,20)=2", "32/5=6 r2", "5:4=45:36"):  # neither arithmetic we check nor prose
        with pytest.raises(UnrenderableError, match="beyond the reference teacher"):
            parse_reference(formula)


def test_level_5_falls_back_to_the_result_beyond_max_chars():
    solution = parse_reference("Total <<123456+654321+111111=888888>>888888")
    assert RENDER["final"](solution, "", None, LEVELS[5]).trace == "888888"


@pytest.mark.parametrize(
    ("question", "asked"),
    [("How many blocks did he use?", "blocks"), ("How much money does she have left?", "money"),
     ("How many more crayons did he lose than he gave?", "more crayons"), ("How big is each group?", "")],
)
def test_asked_quantity(question, asked):
    assert asked_quantity(question) == asked
