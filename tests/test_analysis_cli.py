"""``python -m analysis``: report files, W&B, storages, errors, the chooser's exit codes, and the browser check."""

import csv
import json
import shutil
from pathlib import Path

import optuna
import pytest

from analysis.__main__ import main
from analysis.eval_sets import eval_sets
from analysis.render_check import check_render, drawn_markers
from analysis.trials import load_trials
from sweep.search.study import open_storage
from tests.run_dirs import demo_like_sweep, write_run_dir
from training.common.errors import CotParetoError


@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> Path:
    return demo_like_sweep(tmp_path_factory.mktemp("analysis") / "sweep")


@pytest.fixture(scope="module")
def report_dir(sweep, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("report")
    assert main(["report", str(sweep), "--out", str(out), "--wandb", "offline"]) == 0
    return out


def test_report_writes_its_files_and_counts_skipped_trials(sweep, tmp_path, capsys):
    assert main(["report", str(sweep), "--out", str(tmp_path), "--wandb", "disabled"]) == 0
    out = capsys.readouterr().out
    assert "10 completed trials (skipped 1 failed, 1 incomplete); baseline base_L1" in out
    assert "hypervolume 22.4 (44.8% of ideal" in out
    front = list(csv.DictReader((tmp_path / "pareto.csv").open()))
    assert [row["trial"] for row in front] == ["L5_r8", "L3_r8", "L2_r8", "L1_r8"]
    trials = list(csv.DictReader((tmp_path / "trials.csv").open()))
    assert len(trials) == 11 and sum(row["on_front"] == "True" for row in trials) == 4
    assert (tmp_path / "pareto.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    summary = json.loads((tmp_path / "report.json").read_text())["series"][0]
    assert summary["skipped"] == {"failed": 1, "incomplete": 1} and summary["hypervolume"] == pytest.approx(22.4)
    page = (tmp_path / "report.html").read_text()
    assert "Plotly.newPlot" in page and "<script src=" not in page  # plotly.js inlined: no network needed
    assert "train.lora_r=32" in page and "a=3+4=7" in page  # hover params and example outputs
    assert "Paired comparison against the best point" in page and "n to decide" in page and "McNemar p" in page
    assert "all 11 trials were graded on the same 100 eval problems" in out


def test_report_carries_the_paired_table(sweep, tmp_path, capsys):
    assert main(["report", str(sweep), "--out", str(tmp_path), "--wandb", "disabled", "--margin", "0.2"]) == 0
    assert "not significantly worse than the best L1_r8 (paired 95 % CI lower bound >= -0.2): L3_r8, L2_r8, L1_r8" \
        in capsys.readouterr().out
    paired = json.loads((tmp_path / "report.json").read_text())["series"][0]["paired"]
    assert paired["all_trials_share_problems"] and paired["shared_problems"] == 100 and paired["left_out"] == []
    assert paired["best"] == "L1_r8" and paired["margin"] == 0.2
    rows = {row["trial"]: row for row in paired["rows"]}
    assert list(rows) == ["L5_r8", "L3_r8", "L2_r8", "L1_r8", "base_L1"]  # the front by think tokens, then the baseline
    l3 = rows["L3_r8"]
    assert (l3["n"], l3["only_this"], l3["only_best"], l3["delta_accuracy"]) == (100, 0, 10, pytest.approx(-0.1))
    assert l3["ci_low"] < -0.1 < l3["ci_high"] and l3["mcnemar_p"] == pytest.approx(2 / 1024)
    assert l3["verdict"] == "non-inferior" and l3["not_significantly_worse"] and l3["n_to_decide"] == 100
    assert rows["L1_r8"]["verdict"] == "reference" and rows["base_L1"]["role"] == "baseline"
    assert rows["L5_r8"]["verdict"] == "inferior" and not rows["L5_r8"]["not_significantly_worse"]


def test_report_says_which_trials_are_left_out_of_pairing(sweep, tmp_path, capsys):
    mixed = tmp_path / "mixed"
    for name in ("L1_r8", "L2_r8"):
        shutil.copytree(sweep / name, mixed / name)
    (mixed / "L2_r8" / "eval_samples.jsonl").unlink()
    assert main(["report", str(mixed), "--out", str(tmp_path / "out"), "--wandb", "disabled"]) == 0
    assert "1 of 2 trials were graded on the same 100 eval problems; left out of the paired tests: L2_r8: no " \
           "eval_samples.jsonl in its run dir" in capsys.readouterr().out
    paired = json.loads((tmp_path / "out" / "report.json").read_text())["series"][0]["paired"]
    assert paired["left_out"] == [{"trial": "L2_r8", "reason": "no eval_samples.jsonl in its run dir"}]
    assert "not paired: no eval_samples.jsonl" in (tmp_path / "out" / "report.html").read_text()


def test_report_is_logged_to_wandb_offline(report_dir):
    runs = list((report_dir / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and any(runs[0].glob("*.wandb"))


def test_comparison_gives_each_sweep_its_own_front(sweep, tmp_path, capsys):
    other = tmp_path / "other"
    write_run_dir(other, "L4", 4, 0.7, 8.0)
    assert main(["report", str(sweep), str(other), "--label", "teacher-a", "--label", "teacher-b",
                 "--out", str(tmp_path / "cmp"), "--wandb", "disabled"]) == 0
    out = capsys.readouterr().out
    assert "teacher-a: 10 completed trials" in out and "teacher-b: 1 completed trials" in out
    rows = list(csv.DictReader((tmp_path / "cmp" / "pareto.csv").open()))
    assert {row["series"] for row in rows} == {"teacher-a", "teacher-b"} and len(rows) == 5


@pytest.mark.parametrize("path, message", [("missing", "does not exist"), ("empty", "holds no trials")])
def test_missing_or_empty_path_is_one_line_error(tmp_path, capsys, path, message):
    (tmp_path / "empty").mkdir()
    assert main(["report", str(tmp_path / path), "--wandb", "disabled"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and message in err


def test_choose_prints_the_non_inferiority_rule_and_the_paired_evidence(sweep, capsys):
    assert main(["choose", str(sweep)]) == 0
    out = capsys.readouterr().out
    assert "recommended: level 1 (L1_r8" in out and "non-inferiority at margin 0.02" in out
    assert "no front point with fewer think tokens than the best can be shown non-inferior" in out
    assert "all 11 trials were graded on the same 100 eval problems" in out
    assert "Δ acc vs best [95 % CI]" in out and "McNemar p" in out and "n to decide" in out
    assert "L3 L3_r8      13.0   0.500  -0.100 [" in out and "decided (n=100)" in out
    assert main(["choose", str(sweep), "--margin", "0.2"]) == 0
    assert "recommended: level 3 (L3_r8" in capsys.readouterr().out


def test_choose_answers_each_constraint_and_explains_infeasible(sweep, capsys):
    assert main(["choose", str(sweep), "--min-accuracy", "0.55"]) == 0
    out = capsys.readouterr().out
    assert "recommended: level 2 (L2_r8" in out
    assert "paired evidence against the best L1_r8: accuracy -0.020 [" in out and "n to decide: " in out
    assert main(["choose", str(sweep), "--max-think-tokens", "15"]) == 0
    assert "recommended: level 3 (L3_r8" in capsys.readouterr().out
    assert main(["choose", str(sweep), "--max-accuracy-drop", "0.05"]) == 0
    assert "recommended: level 2 (L2_r8" in capsys.readouterr().out
    assert main(["choose", str(sweep), "--min-accuracy", "0.95"]) == 1
    out = capsys.readouterr().out
    assert "binding: accuracy >= 0.95" in out and "closest point:\nlevel 1 (L1_r8" in out


def test_report_from_an_optuna_storage(tmp_path, sweep):
    """A study's trials carry run dir and metrics as user attributes; failed and repeated ones are skipped."""
    journal = tmp_path / "optuna.journal"
    study = optuna.create_study(study_name="s", storage=open_storage(str(journal), tmp_path),
                                directions=["maximize", "minimize"])
    levels = optuna.distributions.CategoricalDistribution(["2", "5"])
    for name in ("L2_r8", "L5_r8"):
        metrics = json.loads((sweep / name / "metrics.json").read_text())
        study.add_trial(optuna.trial.create_trial(
            params={"+level": name[1]}, distributions={"+level": levels},
            values=[metrics["accuracy"], metrics["mean_think_tokens"]],
            user_attrs={"run_dir": str(sweep / name), "metrics": metrics}))
    study.add_trial(optuna.trial.create_trial(params={"+level": "2"}, distributions={"+level": levels},
                                              values=[0.58, 21.0], user_attrs={"repeat_of": 0}))
    study.add_trial(optuna.trial.create_trial(state=optuna.trial.TrialState.FAIL))
    write_run_dir(tmp_path, "baseline", 1, 0.62, 50.0, adapter="none")  # the sweeper's baseline, beside the journal
    collection = load_trials(str(journal))
    assert [t.name for t in collection.trials] == ["trial_0000", "trial_0001", "baseline"]
    assert collection.trials[2].baseline
    assert collection.trials[0].params == {"level": "2"} and collection.trials[0].run_dir == sweep / "L2_r8"
    assert dict(collection.skipped) == {"repeat": 1, "failed": 1}
    # Storage trials are paired through their run dirs' eval_samples.jsonl; the baseline here has none.
    sets = eval_sets(collection.trials)
    assert sets.reason(collection.trials[0]) is None and sets.reason(collection.trials[2]).startswith("no eval_samples")
    with pytest.raises(CotParetoError, match="has no study 'nope'"):
        load_trials(str(journal), "nope")


def test_a_storage_trial_whose_run_dir_is_gone_is_not_paired(tmp_path, sweep):
    journal = tmp_path / "optuna.journal"
    study = optuna.create_study(study_name="s", storage=open_storage(str(journal), tmp_path),
                                directions=["maximize", "minimize"])
    levels = optuna.distributions.CategoricalDistribution(["1", "2"])
    for name, run_dir in (("L1_r8", sweep / "L1_r8"), ("L2_r8", tmp_path / "deleted")):
        metrics = json.loads((sweep / name / "metrics.json").read_text())
        study.add_trial(optuna.trial.create_trial(
            params={"+level": name[1]}, distributions={"+level": levels},
            values=[metrics["accuracy"], metrics["mean_think_tokens"]],
            user_attrs={"run_dir": str(run_dir), "metrics": metrics}))
    trials = load_trials(str(journal)).trials
    sets = eval_sets(trials)
    assert sets.reason(trials[0]) is None
    assert sets.reason(trials[1]) == "its run dir is unknown or gone (a storage trial without its files)"


def test_report_html_draws_in_headless_chromium(report_dir, tmp_path):
    found = check_render(report_dir / "report.html", tmp_path / "shot.png")
    assert found["markers"] == 11  # ten adapters and the baseline
    assert found["L1"] > 0 and found["L5"] > 0
    # The check can fail: the same page with plotly.js stripped out draws nothing.
    page = (report_dir / "report.html").read_text()
    broken = tmp_path / "broken.html"
    start = page.index("<script>/**")  # the inlined plotly.js
    broken.write_text(page[:start] + page[page.index("</script>", start) + len("</script>"):])
    assert drawn_markers(broken) == 0
