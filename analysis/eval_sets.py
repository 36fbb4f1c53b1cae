"""Which trials were graded on the same eval problems, from each run dir's ``eval_samples.jsonl``.

Paired tests compare two trials problem by problem, so they need each trial's per-problem
results and the same problems for all. The shared set is the set of problem ids most trials
were graded on (a tie goes to the set of the most accurate trial). A trial on another set, or
without readable per-problem results, is left out of the pairing with its reason; it is still
plotted and on the front.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from analysis.trials import Trial
from training.common.errors import CotParetoError
from training.common.jsonl import read_jsonl

SAMPLES_FILE = "eval_samples.jsonl"
# metrics.json's ``accuracy_extractor`` -> the eval_samples.jsonl flag its ``accuracy`` counts.
CORRECT_FLAG = {"flexible": "correct", "strict": "correct_strict"}


@dataclass
class EvalSets:
    """Per-problem results of the trials that can be paired, and why the others cannot."""

    trials: list[Trial]
    problems: frozenset[str] = frozenset()
    correct: dict[int, dict[str, bool]] = field(default_factory=dict)  # id(trial) -> problem id -> correct
    excluded: dict[int, str] = field(default_factory=dict)             # id(trial) -> why it is not paired

    def results(self, trial: Trial) -> dict[str, bool] | None:
        return self.correct.get(id(trial))

    def reason(self, trial: Trial) -> str | None:
        return self.excluded.get(id(trial))

    def statement(self) -> str:
        """One sentence: do all trials share the eval problems, and who is left out."""
        total, paired = len(self.trials), len(self.correct)
        if not paired:
            return f"paired tests unavailable: none of the {total} trials has usable per-problem results"
        if paired == total:
            return (f"all {total} trials were graded on the same {len(self.problems)} eval problems "
                    "(eval_samples.jsonl ids)")
        left = "; ".join(f"{t.name}: {self.excluded[id(t)]}" for t in self.trials if id(t) in self.excluded)
        return (f"{paired} of {total} trials were graded on the same {len(self.problems)} eval problems; "
                f"left out of the paired tests: {left}")


def read_samples(trial: Trial) -> tuple[str, list[dict]]:
    """The trial's ``eval_samples.jsonl`` rows, checked for pairing, and the flag its accuracy follows.

    Raises :class:`CotParetoError` saying why the file cannot be used.
    """
    if trial.run_dir is None:
        raise CotParetoError("its run dir is unknown or gone (a storage trial without its files)")
    path = trial.run_dir / SAMPLES_FILE
    if not path.is_file():
        raise CotParetoError(f"no {SAMPLES_FILE} in its run dir")
    flag = CORRECT_FLAG.get(trial.accuracy_extractor)
    if flag is None:
        raise CotParetoError(f"metrics.json names an unknown accuracy_extractor {trial.accuracy_extractor!r}")
    try:
        rows = read_jsonl(path)
    except (CotParetoError, OSError, UnicodeDecodeError) as err:
        raise CotParetoError(f"{SAMPLES_FILE} unreadable: {err}") from None
    seen: set[str] = set()
    for number, row in enumerate(rows, start=1):
        if row.get("id") is None or flag not in row:
            raise CotParetoError(f"{SAMPLES_FILE} row {number} lacks 'id' or '{flag}'")
        key = str(row["id"])
        if key in seen:
            raise CotParetoError(f"{SAMPLES_FILE} grades problem {key!r} twice")
        seen.add(key)
    if not rows:
        raise CotParetoError(f"{SAMPLES_FILE} is empty")
    # A re-evaluation that rewrote one file but not the other would pair the wrong results.
    accuracy = sum(bool(row[flag]) for row in rows) / len(rows)
    if abs(accuracy - trial.accuracy) > 5e-4:
        raise CotParetoError(f"{SAMPLES_FILE} gives accuracy {accuracy:.4f} ({flag}), "
                             f"metrics.json says {trial.accuracy:.4f}")
    return flag, rows


def read_results(trial: Trial) -> dict[str, bool]:
    """``problem id -> correct`` from the trial's ``eval_samples.jsonl``, by the flag its accuracy follows."""
    flag, rows = read_samples(trial)
    return {str(row["id"]): bool(row[flag]) for row in rows}


def eval_sets(trials: Sequence[Trial]) -> EvalSets:
    """Read every trial's results and keep those graded on the shared problem set."""
    sets = EvalSets(trials=list(trials))
    readable: dict[int, dict[str, bool]] = {}
    for trial in trials:
        try:
            readable[id(trial)] = read_results(trial)
        except CotParetoError as err:
            sets.excluded[id(trial)] = str(err)
    if not readable:
        return sets
    counts = Counter(frozenset(results) for results in readable.values())
    best = max((t for t in trials if id(t) in readable), key=lambda t: t.accuracy)
    sets.problems = max(counts, key=lambda ids: (counts[ids], ids == frozenset(readable[id(best)])))
    for trial in trials:
        results = readable.get(id(trial))
        if results is None:
            continue
        ids = frozenset(results)
        if ids == sets.problems:
            sets.correct[id(trial)] = results
        else:
            sets.excluded[id(trial)] = (f"graded on a different eval set ({len(ids)} problems, "
                                        f"{len(ids & sets.problems)} of them among the shared {len(sets.problems)})")
    return sets
