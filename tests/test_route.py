"""Per-task routing on hand-made eval samples whose per-type results are known."""

import pytest

from analysis.__main__ import main
from analysis.route import format_routing, route
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
