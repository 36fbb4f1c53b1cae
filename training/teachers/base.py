"""The teacher interface: problems + level -> one or more traces per problem.

A teacher is any object with a ``name`` and a ``generate`` method. LLM teachers
batch internally and honour ``n_samples`` and ``seed``; a deterministic teacher
may return a single trace per problem whatever ``n_samples`` says.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Protocol

from training.common.errors import TeacherError
from training.config.schema import TeacherSettings
from training.config.settings import read_setting
from training.data.levels import Level
from training.data.problems import Problem


@dataclass(frozen=True)
class Trace:
    problem_id: str
    sample: int
    completion: str  # what the teacher wrote: "<think>\n...\n</think>\n#### N", graded by the filter
    teacher: str
    error: str | None = None  # why the teacher could not produce a usable completion
    # The error may not recur (a request that failed after its retries), so a rerun should ask again: traces
    # with such errors are incomplete and are not stored. A deterministic one (a reference the reference
    # teacher cannot render) would fail again the same way, and does not keep the traces out of the cache.
    retryable: bool = False

    def to_row(self) -> dict[str, Any]:
        return asdict(self)


class Teacher(Protocol):
    name: str

    def generate(
        self, problems: Sequence[Problem], level: Level, *, n_samples: int = 1, seed: int = 0
    ) -> list[list[Trace]]:
        """One list of traces per problem, in the order of ``problems``."""
        ...


def run_teacher(teacher: Teacher, problems: Sequence[Problem], level: Level, n_samples: int, seed: int) -> list[Trace]:
    """Call a teacher and check its contract, so a broken teacher fails loudly, not silently."""
    n_samples = read_setting(TeacherSettings, "n_samples", n_samples, "teacher")
    results = teacher.generate(problems, level, n_samples=n_samples, seed=seed)
    if len(results) != len(problems):
        raise TeacherError(f"teacher {teacher.name!r} returned {len(results)} results for {len(problems)} problems")
    traces = []
    for problem, samples in zip(problems, results):
        if not samples:
            # No trace at all is still recorded, so the filter can count the problem as dropped.
            samples = [Trace(problem.id, 0, "", teacher.name, error="teacher returned no trace", retryable=True)]
        for trace in samples:
            if trace.problem_id != problem.id:
                raise TeacherError(f"teacher {teacher.name!r} returned a trace for {trace.problem_id} in place of {problem.id}")
        traces.extend(samples)
    return traces
