"""The analysis's pure parts on hand-made run dirs: collecting, the trade-off, and choosing a level."""

import json

import pytest

from analysis.choose import Constraints, choose, format_choice
from analysis.eval_sets import eval_sets
from analysis.paired_table import format_paired_table, paired_evidence
from analysis.tradeoff import pick_baseline, reference_point, tradeoff
from analysis.trials import load_trials, params_from_overrides
from tests.run_dirs import demo_like_sweep, graded, nested, paired_sweep, sample, write_run_dir
from training.common.errors import CotParetoError


@pytest.fixture
def demo(tmp_path):
    collection = load_trials(str(demo_like_sweep(tmp_path / "sweep")))
    return collection, tradeoff(collection.series, collection.trials)


def test_collect_reads_completed_trials_and_counts_the_rest(demo):
    collection, _ = demo
    assert len(collection.trials) == 11  # 10 adapters and the baseline
    assert dict(collection.skipped) == {"failed": 1, "incomplete": 1}
    assert collection.skipped_text() == "skipped 1 failed, 1 incomplete"
    l4 = next(t for t in collection.trials if t.name == "L4_r32")
    assert (l4.level, l4.params, l4.max_new_tokens, l4.seconds_per_problem) == (4, {"level": "4", "train.lora_r": "32"},
                                                                               64, 0.5)


def test_params_leave_out_how_a_trial_ran():
    assert params_from_overrides(["+search=grid", "+level='4'", "train.lora_r=8", "hardware.num_threads=2",
                                  "sampling.temperature=0.2"]) == {"level": "4", "train.lora_r": "8",
                                                                    "sampling.temperature": "0.2"}


def test_front_hypervolume_and_savings(demo):
    _, tr = demo
    assert tr.baseline.name == "base_L1" and all(not t.baseline for t in tr.trials)
    assert [p.trial.name for p in tr.front] == ["L5_r8", "L3_r8", "L2_r8", "L1_r8"]  # L4_r8 ties L3 but longer
    assert tr.reference == (0.0, 50.0) and tr.reference_source == "baseline think tokens"
    # Strips up to (0, 50): 0.6 x 9 + 0.58 x 20 + 0.5 x 8 + 0.2 x 7.
    assert tr.hypervolume == pytest.approx(5.4 + 11.6 + 4.0 + 1.4)
    l2 = tr.front[2]
    assert l2.token_saving == pytest.approx(1 - 21 / 50)
    assert l2.latency_saving == pytest.approx(0.5)  # 0.5 s per problem against the baseline's 1.0 s
    assert l2.accuracy_change == pytest.approx(0.58 - 0.62)


def test_reference_without_a_baseline(tmp_path):
    write_run_dir(tmp_path, "a", 4, 0.3, 10.0)
    trials = load_trials(str(tmp_path)).trials
    assert pick_baseline(trials) is None
    assert reference_point(trials, None) == ((0.0, 64.0), "max_new_tokens")
    assert reference_point(trials, None, tokens=30) == ((0.0, 30.0), "given")
    tr = tradeoff("x", trials)
    assert tr.front[0].token_saving is None and tr.hypervolume == pytest.approx(0.3 * 54)


def test_choose_each_constraint(demo):
    _, tr = demo
    assert choose(tr, Constraints(min_accuracy=0.55)).point.trial.name == "L2_r8"  # fewest tokens reaching 0.55
    assert choose(tr, Constraints(max_think_tokens=15)).point.trial.name == "L3_r8"  # most accurate under 15
    drop = choose(tr, Constraints(max_accuracy_drop=0.05))  # floor 0.62 - 0.05 = 0.57
    assert drop.point.trial.name == "L2_r8" and "baseline 0.620" in drop.rule
    both = choose(tr, Constraints(min_accuracy=0.45, max_think_tokens=20))
    assert both.point.trial.name == "L3_r8"
    text = format_choice(drop)
    assert "level 2 (L2_r8; train.lora_r=8)" in text and "+58% think tokens saved" in text
    assert "CI [0.480, 0.680] reaches below 0.570" in text and "did not constrain" not in text
    loose = choose(tr, Constraints(max_accuracy_drop=0.6))  # floor 0.02: every front point clears it
    assert any("did not constrain the choice" in note and "0.620" in note for note in loose.notes)


def test_choose_without_constraints_says_plainly_when_nothing_shorter_is_non_inferior(demo):
    _, tr = demo
    choice = choose(tr, Constraints())
    assert choice.point.trial.name == "L1_r8"  # L2_r8 trails by exactly the margin: never shown non-inferior
    assert "non-inferiority at margin 0.02" in choice.rule and "the best is L1_r8" in choice.rule
    assert any(note.startswith("no front point with fewer think tokens than the best can be shown non-inferior")
               for note in choice.notes)
    assert any("closest to being shown: L2_r8" in note and "difference equals -margin" in note
               for note in choice.notes)
    # A looser margin admits L3_r8: 10 points behind, paired CI [-0.16, -0.05] within -0.2.
    loose = choose(tr, Constraints(margin=0.2))
    assert loose.point.trial.name == "L3_r8" and not loose.notes


def test_choose_without_constraints_takes_the_shortest_non_inferior_point(tmp_path):
    collection = load_trials(str(paired_sweep(tmp_path)))
    tr = tradeoff(collection.series, collection.trials)
    assert [p.trial.name for p in tr.front] == ["L4", "L3_other", "L2", "L1"]
    choice = choose(tr, Constraints())
    # L2 trails L1 by 1 of 400 with 7 discordant pairs: its paired CI lower bound clears -0.02.
    # L3_other is shorter but graded on other problems, L4 is clearly worse.
    assert choice.point.trial.name == "L2" and not choice.notes
    text = format_choice(choice)
    assert "paired evidence against the best L1: accuracy -0.003 [" in text and "non-inferior at margin 0.02" in text
    assert "3 of 4 trials were graded on the same 400 eval problems" in text
    assert "L3_other: graded on a different eval set (400 problems, 0 of them among the shared 400)" in text
    strict = choose(tr, Constraints(margin=0.005))
    assert strict.point.trial.name == "L1"
    assert any("closest to being shown: L2" in note and "eval problems (data.n_eval) would decide it" in note
               for note in strict.notes)


def test_a_trial_on_other_problems_is_plotted_but_not_paired(tmp_path):
    collection = load_trials(str(paired_sweep(tmp_path)))
    tr = tradeoff(collection.series, collection.trials)
    evidence = paired_evidence(tr)
    other = next(t for t in tr.trials if t.name == "L3_other")
    assert other in [p.trial for p in tr.front]  # still on the front (and so in the plot)
    row = evidence.row(other)
    assert row.result is None and row.excluded.startswith("graded on a different eval set")
    assert not evidence.not_worse(other)
    assert "not paired: graded on a different eval set" in format_paired_table(evidence)


def test_pairing_reasons_for_missing_mismatched_and_strict_results(tmp_path):
    write_run_dir(tmp_path, "none", 1, 0.5, 10.0)  # no eval_samples.jsonl
    write_run_dir(tmp_path, "stale", 2, 0.5, 10.0, samples=graded(nested(0.4, 10)))
    write_run_dir(tmp_path, "dup", 3, 1.0, 10.0, samples=[sample(True, 3, problem="p1")] * 2)
    strict = write_run_dir(tmp_path, "strict", 4, 0.3, 10.0,
                           samples=[sample(True, 3, problem=f"p{i:03d}", strict=i < 3) for i in range(10)])
    metrics = (strict / "metrics.json").read_text().replace('"status"', '"accuracy_extractor": "strict", "status"')
    (strict / "metrics.json").write_text(metrics)
    sets = eval_sets(load_trials(str(tmp_path)).trials)
    reasons = {t.name: sets.reason(t) for t in sets.trials}
    assert reasons["none"] == "no eval_samples.jsonl in its run dir"
    assert reasons["stale"] == "eval_samples.jsonl gives accuracy 0.4000 (correct), metrics.json says 0.5000"
    assert reasons["dup"] == "eval_samples.jsonl grades problem 'p1' twice"
    assert reasons["strict"] is None and sum(sets.results(sets.trials[-1]).values()) == 3  # correct_strict counted
    assert sets.statement().startswith("1 of 4 trials were graded on the same 10 eval problems; left out")


def test_without_per_problem_results_the_chooser_still_answers(tmp_path):
    write_run_dir(tmp_path, "a", 4, 0.3, 10.0)
    write_run_dir(tmp_path, "b", 2, 0.5, 30.0)
    choice = choose(tradeoff("x", load_trials(str(tmp_path)).trials), Constraints())
    assert choice.point.trial.name == "b" and "cannot be tested" in choice.notes[0]
    assert "paired tests unavailable: none of the 2 trials" in format_choice(choice)


def test_choose_explains_an_infeasible_request(demo):
    _, tr = demo
    alone = choose(tr, Constraints(min_accuracy=0.9))
    assert alone.point is None and alone.binding == ["accuracy >= 0.9"] and alone.closest.trial.name == "L1_r8"
    together = choose(tr, Constraints(min_accuracy=0.59, max_think_tokens=20))
    assert together.point is None and "never together" in together.binding[0]
    assert together.closest.trial.name in {"L1_r8", "L2_r8"}
    assert format_choice(alone).startswith("no front point meets the constraints; binding: accuracy >= 0.9")


def test_accuracy_drop_needs_a_baseline(tmp_path):
    write_run_dir(tmp_path, "a", 4, 0.3, 10.0)
    collection = load_trials(str(tmp_path))
    with pytest.raises(CotParetoError, match="no trial evaluated the base model"):
        choose(tradeoff("x", collection.trials), Constraints(max_accuracy_drop=0.05))


def test_missing_and_empty_paths_are_clear_errors(tmp_path):
    with pytest.raises(CotParetoError, match="does not exist"):
        load_trials(str(tmp_path / "nope"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(CotParetoError, match="holds no trials"):
        load_trials(str(tmp_path / "empty"))


def test_when_the_most_accurate_point_cannot_be_paired_the_next_one_is_the_reference(tmp_path):
    sweep = demo_like_sweep(tmp_path / "sweep")
    (sweep / "L1_r8" / "eval_samples.jsonl").unlink()
    collection = load_trials(str(sweep))
    evidence = paired_evidence(tradeoff(collection.series, collection.trials))
    assert evidence.best.name == "L2_r8"
    assert evidence.notes[0] == ("the most accurate front point L1_r8 is left out of the paired tests (no "
                              "eval_samples.jsonl in its run dir); paired against L2_r8 instead")
    assert evidence.row(evidence.best).role == "best"


def test_the_extractor_an_accuracy_counts_is_read_where_the_pipeline_writes_it(tmp_path):
    # metrics.json as run_pipeline writes it: the eval stage's results in "eval", only the headline metrics
    # copied to the top level; which extractor the accuracy counts stays in "eval".
    run_dir = write_run_dir(tmp_path, "strict", 4, 0.3, 10.0)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    metrics["eval"] = {key: metrics[key] for key in ("accuracy", "accuracy_ci", "mean_think_tokens", "n_eval")}
    metrics["eval"]["accuracy_extractor"] = "strict"
    (run_dir / "metrics.json").write_text(json.dumps(metrics))
    [trial] = load_trials(str(tmp_path)).trials
    assert trial.accuracy_extractor == "strict" and trial.accuracy == 0.3 and trial.n_train == 32
