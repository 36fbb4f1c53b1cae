"""The reference teacher: renders each level from the data set's own solution, with no model.

Deterministic and fast, it gives every level a faithful trace whose arithmetic
comes from the reference (GSM8K calculator marks, SVAMP equations). A problem it
cannot render gets an empty completion with the reason, for the filter to count.
A data set whose solutions are LaTeX prose (``answer_format: latex``, MATH-500) has
neither marks nor an equation at any step: the teacher refuses it in one line before
rendering anything, rather than drop every problem.
"""

from __future__ import annotations

from collections.abc import Sequence

from training.common.errors import ConfigError
from training.data.levels import Level
from training.data.problems import Problem
from training.data.renderers import RENDER, Rendering
from training.data.solutions import UnrenderableError, parse_reference
from training.grading.completions import THINK_CLOSE, THINK_OPEN, format_completion
from training.teachers.base import Trace


def render_reference(problem: Problem, level: Level) -> Rendering:
    """``problem``'s reference solution rendered at ``level``; raises UnrenderableError."""
    if problem.answer_format == "latex":
        raise UnrenderableError(f"a LaTeX solution ({problem.data_set or 'answer_format=latex'}) has no steps to render")
    return RENDER[level.renderer](parse_reference(problem.solution), problem.question, problem.answer, level)


def refuse_latex(problems: Sequence[Problem]) -> None:
    """ConfigError naming the data set when any problem's solution is LaTeX, which no renderer reads."""
    latex = next((p for p in problems if p.answer_format == "latex"), None)
    if latex is not None:
        name = latex.data_set or "this data set"
        raise ConfigError(f"teacher=reference cannot render data={name}: its solutions are LaTeX prose "
                          "(data.answer_format=latex) with no calculator marks or equation to render at a level; "
                          "use a model teacher (teacher=hf, teacher=self or teacher=openai), or evaluate alone "
                          "(stages=[eval] adapter=none, or adapter=PATH)")


class ReferenceTeacher:
    name = "reference"

    def __init__(self, think_open: str = THINK_OPEN, think_close: str = THINK_CLOSE) -> None:
        self.think_open, self.think_close = think_open, think_close

    def render(self, problem: Problem, level: Level) -> Trace:
        try:
            rendering = render_reference(problem, level)
        except UnrenderableError as err:
            return Trace(problem.id, 0, "", self.name, error=str(err))
        completion = format_completion(rendering.trace, rendering.answer, self.think_open, self.think_close)
        return Trace(problem.id, 0, completion, self.name)

    def generate(
        self, problems: Sequence[Problem], level: Level, *, n_samples: int = 1, seed: int = 0
    ) -> list[list[Trace]]:
        refuse_latex(problems)
        # Deterministic: one trace per problem whatever n_samples asks; more would be duplicates.
        return [[self.render(problem, level)] for problem in problems]
