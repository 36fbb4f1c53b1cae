"""What an LLM teacher is asked: the level's style, worked exemplars, then the problem.

The student's SFT prompt is only the level's instruction ("Solve this using Level 4
(Ultra-compact)."); a teacher model has never seen that convention, so its prompt
also spells out the style and target length and shows exemplars. Exemplars sit
inside the system message as text, not as earlier chat turns: Qwen3's chat template
strips the think block from earlier assistant turns, which would show the teacher
answers without the very reasoning it is meant to imitate.

Exemplars come from the level config (``exemplars: level``) or are rendered from
the data set's own solutions by the reference teacher (``exemplars: reference``),
which works for any data set and level without hand-written examples.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from training.common.errors import ConfigError
from training.config.schema import PromptedTeacherSettings
from training.config.settings import read_setting
from training.data.levels import Exemplar, Level, build_prompt, exemplar_text
from training.data.problems import Problem
from training.data.solutions import UnrenderableError
from training.grading.completions import THINK_CLOSE, THINK_OPEN
from training.teachers.reference import render_reference

DEFAULT_SYSTEM = (
    "You write worked solutions to math word problems in a required reasoning style.\n"
    "Style: {style}\n"
    "Keep the reasoning to about {target_chars} characters, inside {open} {close}, "
    "then give the final answer on its own line as '#### <number>'."
)


def teacher_system(template: str | None, level: Level, exemplars: Sequence[Exemplar], open_tag: str = THINK_OPEN,
                   close_tag: str = THINK_CLOSE) -> str:
    """The system message: ``template`` filled with the level's style, then the exemplars as text."""
    try:
        text = (template or DEFAULT_SYSTEM).format(style=level.style, target_chars=level.target_chars,
                                                   open=open_tag, close=close_tag, level=level.id, name=level.name)
    except (KeyError, IndexError) as err:
        raise ConfigError(f"teacher.system has an unknown placeholder {err}; use {{style}}, {{target_chars}}, "
                          "{open}, {close}, {level}, {name}") from None
    return text + exemplar_text(exemplars, open_tag, close_tag)


def reference_exemplars(problems: Sequence[Problem], level: Level, count: int) -> list[tuple[str, Exemplar]]:
    """Up to ``count`` (problem id, exemplar) pairs rendered by the reference teacher from ``problems``."""
    found = []
    for problem in problems:
        if len(found) == count:
            break
        try:
            rendering = render_reference(problem, level)
        except UnrenderableError:
            continue
        found.append((problem.id, Exemplar(problem.question, rendering.trace, rendering.answer)))
    return found


def teacher_prompts(problems: Sequence[Problem], level: Level, *, n_shots: int = 2, exemplars: str = "level",
                    system: str | None = None, open_tag: str = THINK_OPEN,
                    close_tag: str = THINK_CLOSE) -> list[list[dict[str, str]]]:
    """One chat prompt per problem: the teacher system message, then the student's level prompt."""
    exemplars = read_setting(PromptedTeacherSettings, "exemplars", exemplars, "teacher")
    n_shots = read_setting(PromptedTeacherSettings, "n_shots", n_shots, "teacher")
    if exemplars == "level":
        if n_shots > len(level.exemplars):
            raise ConfigError(f"teacher.n_shots={n_shots} but level {level.id} has {len(level.exemplars)} exemplars; "
                              "lower n_shots or use teacher.exemplars=reference")
        shared = teacher_system(system, level, level.exemplars[:n_shots], open_tag, close_tag)
        return [_prompt(level, p, shared) for p in problems]
    # One spare, so a problem that is itself an exemplar is shown the others, never its own solution.
    pool = reference_exemplars(problems, level, n_shots + 1) if n_shots else []
    if len(pool) < min(n_shots, max(len(problems) - 1, 0)):
        raise ConfigError(f"the reference teacher rendered only {len(pool)} of the {n_shots} exemplars asked for at "
                          f"level {level.id}; lower teacher.n_shots or use teacher.exemplars=level")
    prompts = []
    for problem in problems:
        chosen = [ex for pid, ex in pool if pid != problem.id][:n_shots]
        prompts.append(_prompt(level, problem, teacher_system(system, level, chosen, open_tag, close_tag)))
    return prompts


def _prompt(level: Level, problem: Problem, system: str) -> list[dict[str, str]]:
    return build_prompt(dataclasses.replace(level, exemplars=()), problem.question, system, 0)
