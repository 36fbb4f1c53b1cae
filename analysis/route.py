"""Per-task routing (Deimos-A4): for each task type, the setting with the fewest think tokens that meets a bound.

A deployment can pick the compression level (and thinking mode) per request type instead of once for all.
This measures whether that pays on the trials at hand: per task type, each setting's accuracy and mean
think tokens on that type's problems, the cheapest setting that meets the bound (``--max-accuracy-drop X``
below the type's most accurate setting, or ``--min-accuracy Y``), and the paired 95 % CI of its accuracy
minus the type's best on the same problems. The routed policy (each problem answered by its type's
choice) is then compared, paired, with the best single setting over all problems. Everything is read
from the trials' ``eval_samples.jsonl`` (each row's ``task_type``, correctness and think tokens). That
comparison is in-sample (choices made and scored on the same problems), so optimistic: with many settings and
few problems per type the routed policy gains from noise. ``Routing.crossfit`` (``analysis.route_crossfit``:
choose on one half of each type's problems, score on the other) estimates what routing delivers on new problems.

A setting is a trial: its level, its thinking mode (a no-think twin is a setting of its own) or the base
model. Two settings that share a label are named with their trial as well, so the table tells them apart.
``python -m analysis route`` prints the table (``format_routing``); ``python -m analysis report`` puts it
in report.html and report.json (``routing_summary``) and the routed policy on the plots.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from analysis.eval_sets import SAMPLES_FILE, eval_sets, read_samples
from analysis.paired import PairedResult, compare
from analysis.paired_table import DEFAULT_MARGIN, p_text
from analysis.route_crossfit import FOLDS, SEED, CrossFit, cross_fit, crossfit_line, crossfit_summary
from analysis.trials import Trial
from training.common.errors import CotParetoError

MIN_PROBLEMS = 20  # fewer problems of a type than this: its choice is reported, but as too few to decide


@dataclass(frozen=True)
class Setting:
    """One trial's per-problem results: ``problem id -> (correct, think tokens)`` and each problem's type."""

    trial: Trial
    results: dict[str, tuple[bool, float]]
    types: dict[str, str]
    label: str = ""  # set when another setting shares the trial's label: "L4 (trial_0003)"

    @property
    def name(self) -> str:
        return self.label or self.trial.label

    def on(self, problems: Sequence[str]) -> tuple[float, float]:
        """Accuracy and mean think tokens on ``problems``."""
        rows = [self.results[p] for p in problems]
        return sum(ok for ok, _ in rows) / len(rows), sum(t for _, t in rows) / len(rows)

    def correct(self, problems: Sequence[str]) -> dict[str, bool]:
        return {p: self.results[p][0] for p in problems}


@dataclass(frozen=True)
class TypeRoute:
    task_type: str
    n: int
    chosen: Setting
    best: Setting
    accuracy: float
    think_tokens: float
    best_accuracy: float
    paired: PairedResult | None  # None when the chosen setting is the best
    met: bool                    # False: no setting meets the bound; the best is used

    @property
    def decided(self) -> bool:
        return self.n >= MIN_PROBLEMS and (self.paired is None or self.paired.verdict != "undecided")


@dataclass(frozen=True)
class Routing:
    bound: str
    routes: list[TypeRoute]
    accuracy: float
    think_tokens: float
    single: Setting
    single_accuracy: float
    single_think_tokens: float
    paired: PairedResult
    n: int
    left_out: list[str]
    crossfit: CrossFit  # the out-of-sample estimate; the figures above are in-sample, so optimistic


def read_setting(trial: Trial) -> Setting:
    """The trial's per-problem results and task types; CotParetoError says why they cannot be used."""
    flag, rows = read_samples(trial)
    results, types = {}, {}
    for number, row in enumerate(rows, start=1):
        if row.get("task_type") is None:
            raise CotParetoError(f"{SAMPLES_FILE} row {number} has no task_type (evaluated before problems carried "
                                 "one: evaluate it again)")
        key = str(row["id"])
        results[key] = (bool(row[flag]), float(row.get("think_tokens") or 0))
        types[key] = str(row["task_type"])
    return Setting(trial, results, types)


def _cheapest(settings: Sequence[Setting], problems: Sequence[str], floor: float) -> Setting | None:
    scored = [(s, *s.on(problems)) for s in settings]
    meeting = [(tokens, -accuracy, i) for i, (s, accuracy, tokens) in enumerate(scored) if accuracy >= floor - 1e-12]
    return settings[min(meeting)[2]] if meeting else None


def _most_accurate(settings: Sequence[Setting], problems: Sequence[str]) -> Setting:
    return max(settings, key=lambda s: (s.on(problems)[0], -s.on(problems)[1]))


def choose_type(settings: Sequence[Setting], problems: Sequence[str], max_accuracy_drop: float | None,
                min_accuracy: float | None) -> tuple[Setting, Setting, bool]:
    """On one type's ``problems``: the setting routed to, the most accurate, and whether the first meets the bound
    (when none does, the most accurate is routed to). The one rule for ``route`` and its cross-fitted estimate."""
    best = _most_accurate(settings, problems)
    floor = best.on(problems)[0] - max_accuracy_drop if max_accuracy_drop is not None else min_accuracy
    chosen = _cheapest(settings, problems, floor)
    return chosen or best, best, chosen is not None


def _grouped(why_not: list[tuple[str, str]]) -> str:
    """`` (L1 (a), L2 (b): <reason>; ...)``: a sweep evaluated before task types would repeat one reason per trial."""
    by_reason: dict[str, list[str]] = defaultdict(list)
    for who, reason in why_not:
        by_reason[reason].append(who)
    parts = [f"{', '.join(who)}: {reason}" for reason, who in by_reason.items()]
    return f" ({'; '.join(parts)})" if parts else ""


def _named(settings: list[Setting]) -> list[Setting]:
    """Settings of one level from different trials (two adapters of L4, say) are named with their trial too."""
    shared = Counter(s.trial.label for s in settings)
    return [replace(s, label=f"{s.trial.label} ({s.trial.name})") if shared[s.trial.label] > 1 else s
            for s in settings]


def route(trials: Sequence[Trial], max_accuracy_drop: float | None = None, min_accuracy: float | None = None,
          margin: float | None = None, folds: int = FOLDS, seed: int = SEED) -> Routing:
    """The routing table over the trials graded on the shared eval problems (see the module doc). Its routed
    against single is in-sample, so optimistic; ``crossfit`` (``folds`` folds by ``seed``) is the honest estimate.

    Raises :class:`CotParetoError` saying why when fewer than two settings carry task types on those problems:
    with one, the routed policy is that setting and there is nothing to route.
    """
    if (max_accuracy_drop is None) == (min_accuracy is None):
        raise CotParetoError("route needs one bound: --max-accuracy-drop X or --min-accuracy Y")
    sets = eval_sets(trials)
    why_not = [(f"{t.label} ({t.name})", sets.reason(t)) for t in trials if sets.reason(t)]
    settings = []
    for trial in trials:
        if sets.results(trial) is None:
            continue
        try:
            settings.append(read_setting(trial))
        except CotParetoError as err:
            why_not.append((f"{trial.label} ({trial.name})", str(err)))
    if not settings:
        raise CotParetoError("no trial has per-problem results with task types to route on" + _grouped(why_not))
    if len(settings) < 2:
        raise CotParetoError(f"only one setting ({settings[0].name}) has per-problem results with task types on "
                             "the shared eval problems: nothing to route between" + _grouped(why_not))
    left_out = [f"{who}: {reason}" for who, reason in why_not]
    settings = _named(settings)
    margin = margin if margin is not None else (max_accuracy_drop if max_accuracy_drop is not None else DEFAULT_MARGIN)
    by_type: dict[str, list[str]] = defaultdict(list)
    for problem, task_type in sorted(settings[0].types.items()):
        by_type[task_type].append(problem)
    routes, chosen_for = [], {}
    for task_type, problems in sorted(by_type.items()):
        chosen, best, met = choose_type(settings, problems, max_accuracy_drop, min_accuracy)
        accuracy, tokens = chosen.on(problems)
        paired = None if chosen is best else compare(chosen.correct(problems), best.correct(problems), margin)
        routes.append(TypeRoute(task_type, len(problems), chosen, best, accuracy, tokens, best.on(problems)[0],
                                paired, met))
        chosen_for.update({p: chosen for p in problems})
    problems = sorted(chosen_for)
    routed = {p: chosen_for[p].results[p] for p in problems}
    single = _most_accurate(settings, problems)
    single_accuracy, single_tokens = single.on(problems)
    bound = (f"at most {max_accuracy_drop:g} accuracy below the type's most accurate setting"
             if max_accuracy_drop is not None else f"accuracy at least {min_accuracy:g}")
    return Routing(bound=bound, routes=routes, accuracy=sum(ok for ok, _ in routed.values()) / len(problems),
                   think_tokens=sum(t for _, t in routed.values()) / len(problems), single=single,
                   single_accuracy=single_accuracy, single_think_tokens=single_tokens,
                   paired=compare({p: ok for p, (ok, _) in routed.items()}, single.correct(problems), margin),
                   n=len(problems), left_out=left_out,
                   crossfit=cross_fit(by_type, lambda ps: choose_type(settings, ps, max_accuracy_drop, min_accuracy)[0],
                                      lambda ps: _most_accurate(settings, ps), margin, folds, seed))


def decision_text(row: TypeRoute) -> str:
    """The chosen setting against the type's best: paired CI and p, or why it cannot be decided."""
    if not row.met:
        return "no setting meets the bound: the most accurate is used"
    if row.paired is None:
        text = "the most accurate setting"
    else:
        ci = row.paired.ci
        text = f"{row.paired.difference:+.3f} [{ci[0]:+.3f}, {ci[1]:+.3f}], p {p_text(row.paired.p_value)}"
    if row.n < MIN_PROBLEMS:
        return f"{text}; too few problems to decide (n={row.n} < {MIN_PROBLEMS})"
    if row.paired is not None and row.paired.verdict == "undecided":
        return f"{text}; undecided at margin {row.paired.margin:g}, problems to decide: {row.paired.n_to_decide_text()}"
    return text


def format_routing(routing: Routing) -> str:
    header = (f"{'task type':<22} {'n':>4}  {'setting':<16} {'accuracy':>8} {'think tok':>9}  {'best (accuracy)':<24} "
              "chosen - best")
    lines = [f"routing per task type: the fewest think tokens with {routing.bound}; paired 95 % CI of its accuracy "
             "minus the best's on the type's problems", header, "-" * len(header)]
    for row in routing.routes:
        best = f"{row.best.name} ({row.best_accuracy:.3f})"
        lines.append(f"{row.task_type:<22} {row.n:>4}  {row.chosen.name:<16} {row.accuracy:>8.3f} "
                     f"{row.think_tokens:>9.1f}  {best:<24} {decision_text(row)}")
    lines += [routing_line(routing), crossfit_line(routing.crossfit)]
    if routing.left_out:
        lines.append("left out: " + "; ".join(routing.left_out))
    return "\n".join(lines)


def routing_line(routing: Routing) -> str:
    """The routed policy against the best single setting, in one line (in-sample: see ``crossfit_line``)."""
    ci = routing.paired.ci
    return (f"routed policy on {routing.n} problems: accuracy {routing.accuracy:.3f}, think tokens "
            f"{routing.think_tokens:.1f}; best single setting {routing.single.name}: accuracy "
            f"{routing.single_accuracy:.3f}, think tokens {routing.single_think_tokens:.1f}; routed - single "
            f"{routing.paired.difference:+.3f} [{ci[0]:+.3f}, {ci[1]:+.3f}] ({routing.paired.verdict} at margin "
            f"{routing.paired.margin:g})")


def _paired(result: PairedResult | None) -> dict[str, Any]:
    return {"delta_accuracy": None if result is None else result.difference,
            "ci_low": None if result is None else result.ci[0], "ci_high": None if result is None else result.ci[1],
            "mcnemar_p": None if result is None else result.p_value}


def routing_summary(routing: Routing) -> dict[str, Any]:
    """The routing as plain data, for report.json."""
    routes = [{"task_type": r.task_type, "n": r.n, "setting": r.chosen.name, "trial": r.chosen.trial.name,
               "accuracy": r.accuracy, "mean_think_tokens": r.think_tokens, "best": r.best.name,
               "best_trial": r.best.trial.name, "best_accuracy": r.best_accuracy, "meets_bound": r.met,
               "decided": r.decided, **_paired(r.paired), "decision": decision_text(r)} for r in routing.routes]
    return {"bound": routing.bound, "routes": routes,
            "routed": {"n": routing.n, "accuracy": routing.accuracy, "mean_think_tokens": routing.think_tokens},
            "single": {"setting": routing.single.name, "trial": routing.single.trial.name,
                       "accuracy": routing.single_accuracy, "mean_think_tokens": routing.single_think_tokens},
            "routed_vs_single": {**_paired(routing.paired), "verdict": routing.paired.verdict,
                                 "margin": routing.paired.margin},
            "crossfit": crossfit_summary(routing.crossfit), "left_out": routing.left_out}
