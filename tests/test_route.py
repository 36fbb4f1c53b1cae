"""Per-task routing on hand-made eval samples whose per-type results are known."""

import json
import random

import pytest

from analysis.__main__ import main
from analysis.route import format_routing, route, routing_summary
from analysis.route_crossfit import crossfit_line, crossfit_summary, fold_of
from analysis.trials import load_trials
from tests.run_dirs import sample, write_run_dir
from training.common.errors import CotParetoError

# Per setting: (think tokens, right answers among the 40 Addition, 40 Multiplication and 5 Subtraction problems).
SETTINGS = {"L1": (1, 30, 40, 30, 5), "L5": (5, 5, 39, 10, 1), "base": (1, 50, 20, 32, 5)}
TYPES = (("Addition", 40), ("Multiplication", 40), ("Subtraction", 5))


def rows(think: int, right: tuple[int, ...], typed: bool = True) -> list[dict]:
    out = []
    for (task_type, n), k in zip(TYPES, right):
        for i in range(n):
            row = sample(i < k, think, problem=f"{task_type[:3]}{i:02d}")
            if typed:
                row["task_type"] = task_type
            out.append(row)
    return out


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    root = tmp_path_factory.mktemp("routed")
    for name, (level, think, *right) in SETTINGS.items():
        samples = rows(think, tuple(right))
        accuracy = sum(r["correct"] for r in samples) / len(samples)
        write_run_dir(root, name, level, accuracy, float(think), adapter="none" if name == "base" else "auto",
                      n_eval=len(samples), samples=samples)
    return root


def test_each_type_gets_the_cheapest_setting_within_the_drop(sweep):
    routing = route(load_trials(str(sweep)).trials, max_accuracy_drop=0.05)
    by_type = {row.task_type: row for row in routing.routes}
    assert {t: (r.chosen.name, r.best.name, r.n) for t, r in by_type.items()} == {
        "Addition": ("L5", "L1", 40), "Multiplication": ("L1", "base (L1 prompt)", 40),
        "Subtraction": ("L1", "L1", 5)}
    assert by_type["Addition"].accuracy == 39 / 40 and by_type["Addition"].think_tokens == 5
    assert by_type["Addition"].paired.difference == -1 / 40 and not by_type["Subtraction"].decided
    # Routed: Addition by L5, the rest by L1; the best single setting is L1 (75 of 85).
    assert routing.accuracy == pytest.approx((39 + 30 + 5) / 85)
    assert routing.think_tokens == pytest.approx((40 * 5 + 45 * 30) / 85)
    assert routing.single.name == "L1" and routing.single_accuracy == pytest.approx(75 / 85)
    assert routing.paired.difference == pytest.approx(-1 / 85)
    text = format_routing(routing)
    assert "Subtraction" in text and "too few problems to decide (n=5 < 20)" in text
    assert "routed policy on 85 problems: accuracy 0.871, think tokens 18.2; best single setting L1" in text


def test_a_floor_and_a_type_no_setting_reaches(sweep):
    routing = route(load_trials(str(sweep)).trials, min_accuracy=0.9)
    by_type = {row.task_type: row for row in routing.routes}
    assert by_type["Addition"].chosen.name == "L5" and by_type["Addition"].met
    assert not by_type["Multiplication"].met and by_type["Multiplication"].chosen.name == "base (L1 prompt)"
    assert "no setting meets the bound" in format_routing(routing)


def test_untyped_samples_are_left_out_with_the_reason(tmp_path, sweep, capsys):
    samples = rows(3, (40, 40, 5), typed=False)
    write_run_dir(tmp_path, "old", 2, 1.0, 3.0, n_eval=len(samples), samples=samples)
    with pytest.raises(CotParetoError, match="no task_type"):
        route(load_trials(str(tmp_path)).trials, max_accuracy_drop=0.05)
    assert main(["route", str(sweep), "--max-accuracy-drop", "0.05"]) == 0
    assert "Addition" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["route", str(sweep)])  # a bound is required


def test_settings_that_share_a_label_are_told_apart(tmp_path):
    # Two level-1 adapters: "L1" alone would not say which trial a type is routed to.
    for name, (level, think, *right) in (("L1_r8", SETTINGS["L1"]), ("L1_r32", (1, *SETTINGS["L5"][1:]))):
        samples = rows(think, tuple(right))
        write_run_dir(tmp_path, name, level, sum(r["correct"] for r in samples) / len(samples), float(think),
                      n_eval=len(samples), samples=samples)
    routing = route(load_trials(str(tmp_path)).trials, max_accuracy_drop=0.05)
    assert {row.task_type: row.chosen.name for row in routing.routes} == {
        "Addition": "L1 (L1_r32)", "Multiplication": "L1 (L1_r8)", "Subtraction": "L1 (L1_r8)"}
    assert "Addition                 40  L1 (L1_r32)" in format_routing(routing)


def test_one_setting_is_nothing_to_route(tmp_path):
    samples = rows(3, (30, 30, 5))
    write_run_dir(tmp_path, "L2", 2, 65 / 85, 3.0, n_eval=len(samples), samples=samples)
    write_run_dir(tmp_path, "L3", 3, 0.5, 3.0)  # no eval_samples.jsonl
    with pytest.raises(CotParetoError, match=r"only one setting \(L2\) .* nothing to route between "
                                             r"\(L3 \(L3\): no eval_samples.jsonl in its run dir\)"):
        route(load_trials(str(tmp_path)).trials, max_accuracy_drop=0.05)


def test_the_known_routing_has_a_cross_fitted_line(sweep):
    routing = route(load_trials(str(sweep)).trials, max_accuracy_drop=0.05)
    cf = routing.crossfit
    assert cf.folds == 2 and cf.n == 85 and len(cf.per_fold) == 2 and sum(f["n"] for f in cf.per_fold) == 85
    assert "\ncross-fitted (2 folds: choose on one half, score on the other; out of sample" in format_routing(routing)
    summary = routing_summary(routing)["crossfit"]
    assert json.loads(json.dumps(summary)) == summary and summary["computed"] and summary["n"] == 85


# Cross-fitting: settings of equal cost, so each type is routed to its most accurate setting.
NOISE_TYPES = tuple((t, 20) for t in "ABCDEFGH")


def typed_sweep(root, correct: dict[str, dict[str, list[bool]]], think: int = 10):
    """One run dir per setting; ``correct[setting][task type]`` its results on that type's problems in order."""
    for level, (name, by_type) in enumerate(correct.items(), start=1):
        samples = [{**sample(ok, think, problem=f"{t}{i:02d}"), "task_type": t}
                   for t, oks in by_type.items() for i, ok in enumerate(oks)]
        write_run_dir(root, name, level, sum(r["correct"] for r in samples) / len(samples), float(think),
                      n_eval=len(samples), samples=samples)
    return root


def noise_sweep(root, draw: int):
    """Ten settings whose every answer is a coin (60 % right) drawn independently of the setting."""
    rng = random.Random(draw)
    return typed_sweep(root, {f"s{j}": {t: [rng.random() < 0.6 for _ in range(n)] for t, n in NOISE_TYPES}
                              for j in range(10)})


def test_on_pure_noise_the_in_sample_gain_is_optimism_and_the_cross_fitted_one_is_not(tmp_path):
    # No setting is better than another on any type, so routing can deliver nothing on new problems. In-sample,
    # each type still gets the setting that happened to be lucky on it, and the routed policy "beats" the single.
    # Held out, the choice is as good as any other: the cross-fitted gain is zero up to noise (one draw's sd is
    # about 0.06, so it is averaged over 12 draws: sd about 0.02; the in-sample gain is about 0.11 in every draw).
    in_sample, crossfitted = [], []
    for draw in range(12):
        routing = route(load_trials(str(noise_sweep(tmp_path / str(draw), draw))).trials, max_accuracy_drop=0.05)
        assert routing.paired.difference > 0.05
        in_sample.append(routing.paired.difference)
        crossfitted.append(routing.crossfit.paired.difference)
    in_sample_gain, crossfitted_gain = sum(in_sample) / len(in_sample), sum(crossfitted) / len(crossfitted)
    assert in_sample_gain > 0.08 and crossfitted_gain < 0.04 and in_sample_gain - crossfitted_gain > 0.06


def test_a_real_per_type_advantage_survives_cross_fitting(tmp_path):
    # X is right on 38 of 40 A problems and 10 of 40 B; Y the other way round. In any split, X has at least 18 of
    # a fold's 20 A problems right and Y at most 10, so every fold routes A to X and B to Y, whatever the hash.
    right = {"X": {"A": 38, "B": 10}, "Y": {"A": 10, "B": 38}}
    sweep = typed_sweep(tmp_path, {s: {t: [i < k for i in range(40)] for t, k in by.items()}
                                   for s, by in right.items()})
    routing = route(load_trials(str(sweep)).trials, max_accuracy_drop=0.05)
    cf = routing.crossfit
    assert routing.accuracy == cf.accuracy == 76 / 80 and routing.paired.difference == pytest.approx(28 / 80)
    assert all(fold["routes"] == {"A": "L1", "B": "L2"} for fold in cf.per_fold)
    # The held-out single setting gets at most 20 + 10 of each fold's 40 right: routed - single >= 0.2.
    assert cf.single_accuracy <= 0.75 and cf.paired.difference >= 0.2 and cf.paired.ci[0] > 0.1
    assert "routed 0.950 @ 10.0 tokens vs single" in crossfit_line(cf)


def test_the_folds_are_fixed_by_the_seed_and_split_every_type(tmp_path):
    trials = load_trials(str(noise_sweep(tmp_path, 0))).trials
    first, again, other = (route(trials, max_accuracy_drop=0.05, seed=seed).crossfit for seed in (0, 0, 1))
    assert crossfit_summary(first) == crossfit_summary(again)
    by_type = {t: [f"{t}{i:02d}" for i in range(n)] for t, n in NOISE_TYPES}
    folds = fold_of(by_type, 2, 0)
    assert folds == fold_of(by_type, 2, 0) and folds != fold_of(by_type, 2, 1)
    assert all(sum(folds[p] for p in problems) == 10 for problems in by_type.values())  # 10 of each type per fold
    assert first.n == other.n == 160 and (first.seed, other.seed) == (0, 1)


def test_too_few_problems_per_fold_is_said_not_raised(sweep):
    trials = load_trials(str(sweep)).trials
    routing = route(trials, max_accuracy_drop=0.05, folds=3)  # Subtraction's 5 problems: 1 in some fold of 3
    assert routing.crossfit.paired is None and routing.accuracy == pytest.approx((39 + 30 + 5) / 85)
    assert ("\ncross-fitted estimate (3 folds) not computed: fewer than 2 problems per fold in task type "
            "Subtraction (5)") in format_routing(routing)
    summary = routing_summary(routing)["crossfit"]
    assert json.loads(json.dumps(summary)) == summary and not summary["computed"]
    assert "at least 2 folds" in crossfit_line(route(trials, max_accuracy_drop=0.05, folds=1).crossfit)
